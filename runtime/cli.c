/* cli.c - the commands shared by `netc` and compiled executables. */
#include "cli.h"
#include "checkpoint.h"
#include "dist.h"
#include "data.h"
#include "safetensors.h"
#include "../codegen/ref_kernels.h"

#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int arg_error(const char *cmd, const char *fmt, const char *what) {
    fprintf(stderr, "netc %s: error: ", cmd);
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\n(see `--help`)\n");
    return -1;
}

static int allowed_flag(const char *allowed, const char *name) {
    size_t n = strlen(name);
    for (const char *p = allowed; (p = strstr(p, name)); p += n)
        if ((p == allowed || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0)) return 1;
    return 0;
}

static int parse_int(const char *cmd, const char *flag, const char *v, long long lo, long long hi, long long *out) {
    char *end;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || x < lo || x > hi) {
        fprintf(stderr, "netc %s: error: --%s expects an integer in %lld..%lld, got `%s`\n", cmd, flag, lo, hi, v);
        return -1;
    }
    *out = x;
    return 0;
}

int rt_args_parse(RtArgs *a, int argc, char **argv, int first, const char *cmd, const char *allowed, int want_file) {
    memset(a, 0, sizeof *a);
    a->seed = 0;
    a->steps = 5;
    a->warmup = 1;
    a->limit = 10;
    for (int i = first; i < argc; i++) {
        const char *s = argv[i];
        if (s[0] != '-' || !s[1]) {
            if (want_file && !a->file) { a->file = s; continue; }
            return arg_error(cmd, "unexpected argument `%s`", s);
        }
        const char *name = s + (s[1] == '-' ? 2 : 1);
        char key[64];
        const char *val = NULL, *eq = strchr(name, '=');
        size_t kl = eq ? (size_t)(eq - name) : strlen(name);
        if (kl >= sizeof key) return arg_error(cmd, "unknown option `%s`", s);
        memcpy(key, name, kl);
        key[kl] = 0;
        if (strcmp(key, "o") == 0) strcpy(key, "out");
        if (!allowed_flag(allowed, key)) return arg_error(cmd, "unknown option `%s`", s);
        static const char *bools[] = {"resume", "memory", "llvm", "params", "train", "json", "verify", "quiet", "kernels",
                                      "compare-fuse", "cuda", "ptx", "sync-bn", NULL};
        int is_bool = 0;
        for (int b = 0; bools[b]; b++) is_bool |= strcmp(key, bools[b]) == 0;
        if (is_bool) {
            if (eq) return arg_error(cmd, "option `%s` takes no value", s);
            if (!strcmp(key, "resume")) a->resume = 1;
            if (!strcmp(key, "memory")) a->memory = 1;
            if (!strcmp(key, "llvm")) a->llvm = 1;
            if (!strcmp(key, "params")) a->params = 1;
            if (!strcmp(key, "train")) a->train_graph = 1;
            if (!strcmp(key, "json")) a->json = 1;
            if (!strcmp(key, "verify")) a->verify = 1;
            if (!strcmp(key, "quiet")) a->quiet = 1;
            if (!strcmp(key, "kernels")) a->kernels = 1;
            if (!strcmp(key, "cuda")) a->cuda = 1;
            if (!strcmp(key, "ptx")) a->ptx = 1;
            if (!strcmp(key, "compare-fuse")) a->compare_fuse = 1;
            if (!strcmp(key, "sync-bn")) a->sync_bn = 1;
            continue;
        }
        if (eq) val = eq + 1;
        else if (i + 1 < argc) val = argv[++i];
        else return arg_error(cmd, "option `%s` needs a value", s);
        long long x;
        if (!strcmp(key, "target")) a->target = val;
        else if (!strcmp(key, "precision")) {
            if (strcmp(val, "fp32") && strcmp(val, "tf32"))
                return arg_error(cmd, "--precision: `%s` (fp32, or tf32 for the tensor cores of --target cuda)", val);
            a->tf32 = !strcmp(val, "tf32");
        }
        else if (!strcmp(key, "cpu")) a->cpu = val;
        else if (!strcmp(key, "fuse")) {
            char bad[64];
            if (fuse_parse(val, &a->fuse, bad, sizeof bad)) {
                char all[256] = "";
                for (int k = 1; k < FUSE_COUNT; k++) snprintf(all + strlen(all), sizeof all - strlen(all), " %s", fuse_name(k));
                fprintf(stderr, "netc %s: error: --fuse: unknown pattern `%s` (all, none, or a comma-separated list of:%s)\n",
                        cmd, bad, all);
                return -1;
            }
        }
        else if (!strcmp(key, "concat")) {
            if (!strcmp(val, "inplace")) a->plan.concat_copy = 0;
            else if (!strcmp(val, "copy")) a->plan.concat_copy = 1;
            else return arg_error(cmd, "--concat takes inplace or copy, not `%s`", val);
        }
        else if (!strcmp(key, "recompute")) {
            if (!strcmp(val, "bn-relu")) a->plan.recompute_bn_relu = 1;
            else if (!strcmp(val, "none")) a->plan.recompute_bn_relu = 0;
            else return arg_error(cmd, "--recompute takes bn-relu or none, not `%s`", val);
        }
        else if (!strcmp(key, "data")) a->data = val;
        else if (!strcmp(key, "checkpoint")) a->checkpoint = val;
        else if (!strcmp(key, "metrics")) a->metrics = val;
        else if (!strcmp(key, "plot")) a->plot = val;
        else if (!strcmp(key, "weights")) a->weights = val;
        else if (!strcmp(key, "out")) a->out = val;
        else if (!strcmp(key, "in")) a->in = val;
        else if (!strcmp(key, "images")) a->images = val;
        else if (!strcmp(key, "mode")) {
            if (strcmp(val, "train") && strcmp(val, "eval")) return arg_error(cmd, "--mode is train or eval, not `%s`", val);
            a->mode = val;
        } else if (!strcmp(key, "format")) {
            if (strcmp(val, "text") && strcmp(val, "dot")) return arg_error(cmd, "--format is text or dot, not `%s`", val);
            a->format = val;
        } else if (!strcmp(key, "dump-after")) a->dump_after = val;
        else if (!strcmp(key, "lr")) {
            char *end;
            a->lr = strtod(val, &end);
            if (!*val || *end || !(a->lr > 0) || !isfinite(a->lr)) return arg_error(cmd, "--lr expects a positive number, got `%s`", val);
        } else if (!strcmp(key, "param")) {
            /* the value (3, 0.5, true, [6, 12, 24, 16]) is read by the front end */
            const char *e2 = strchr(val, '=');
            if (!e2 || e2 == val || !e2[1]) return arg_error(cmd, "--param expects NAME=VALUE, got `%s`", val);
            if (a->ndefines == RT_MAX_DEFINES) return arg_error(cmd, "too many --param options (at most 16) at `%s`", val);
            char *nm = strndup(val, (size_t)(e2 - val));
            a->defines[a->ndefines++] = (FeDefine){nm, e2 + 1};
        } else {
            struct { const char *k; long long lo, hi; } ints[] = {
                {"epochs", 1, RT_MAX_EPOCHS}, {"batch", 1, 1 << 16}, {"resize", 1, 1024}, {"seed", 0, 1LL << 62},
                {"threads", 0, 1024}, {"steps", 1, 1000000}, {"warmup", 0, 1000}, {"max-steps", 0, 1 << 30},
                {"limit", 1, 1 << 30}, {"ranks", 1, 1 << 16}};
            int found = 0;
            for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
                if (strcmp(key, ints[k].k)) continue;
                found = 1;
                if (parse_int(cmd, key, val, ints[k].lo, ints[k].hi, &x)) return -1;
                if (!strcmp(key, "epochs")) a->epochs = (int)x;
                if (!strcmp(key, "batch")) a->batch = x;
                if (!strcmp(key, "ranks")) a->ranks = (int)x;
                if (!strcmp(key, "resize")) a->resize = (int)x;
                if (!strcmp(key, "seed")) a->seed = (uint64_t)x;
                if (!strcmp(key, "threads")) a->threads = (int)x;
                if (!strcmp(key, "steps")) a->steps = (int)x;
                if (!strcmp(key, "warmup")) a->warmup = (int)x;
                if (!strcmp(key, "max-steps")) a->max_steps = (int)x;
                if (!strcmp(key, "limit")) a->limit = (int)x;
            }
            if (!found) return arg_error(cmd, "unknown option `%s`", s);
        }
    }
    if (want_file && !a->file) return arg_error(cmd, "%s", "no .net file given");
    return 0;
}

int rt_build_graph(const RtSource *src, const RtArgs *a, IrMode mode, IrGraph *g, char **text, Diag *d) {
    FeOptions o = {mode, a->defines, a->ndefines, a->resize, a->batch};
    ir_init(g);
    int rc;
    if (src->src) {
        diag_init(d, src->name, src->src, src->len, stderr);
        rc = fe_build(src->src, src->len, &o, g, d);
        g->file = src->name;
        g->src = src->src;
    } else {
        diag_init(d, src->name, NULL, 0, stderr);
        rc = fe_build_file(src->name, &o, g, text, d);
        if (*text) diag_init(d, src->name, *text, strlen(*text), stderr);
    }
    if (rc) return -1;
    if (a->lr > 0) g->train.lr = a->lr;
    if (a->epochs) g->train.epochs = a->epochs;
    return pass_infer_shapes(g, d);
}

int rt_open_session(const RtSource *src, const RtArgs *a, int train, RtSession *s, IrGraph *gt, IrGraph *ge,
                    char **text, Diag *d) {
    memset(s, 0, sizeof *s);
    ir_init(gt);
    ir_init(ge);
    RtSource s2 = *src;
    if (train) {
        if (rt_build_graph(src, a, IR_TRAIN, gt, text, d)) return -1;
        if (*text) s2.src = *text, s2.len = strlen(*text);
    }
    if (rt_build_graph(&s2, a, IR_EVAL, ge, text, d)) return -1;
    RtSessionOptions so = {a->target, ge->train.batch, a->threads, a->verify, train, a->cpu, &a->fuse, NULL, &a->plan, 0, 0,
                           a->tf32};
    return rt_session_open(s, train ? gt : NULL, ge, &so, d);
}

static void close_all(RtSession *s, IrGraph *gt, IrGraph *ge, char *text) {
    rt_session_close(s);
    ir_free(gt);
    ir_free(ge);
    free(text);
}

/* The threads of one rank of a job: those of the cores it may run on
 * (mpirun binds each rank to its own core or cores), shared among the
 * job's ranks on this machine. */
static int rank_threads(void) {
    cpu_set_t set;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    int mine = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)online;
    int share = (int)(online / rt_dist_local_size());
    int t = mine < share ? mine : share;
    return t > 0 ? t : 1;
}

/* Data parallel (under mpirun): every rank runs the same command.  The
 * batch is split evenly among the ranks, the ranks check at start-up that
 * they run the same network and settings (a hash of the source and the
 * flags), and only rank 0 speaks.  *b receives this rank's batch. */
static int dist_setup(const RtSource *src, RtArgs *a, Diag *d) {
    int ranks = rt_dist_size(), lead = rt_dist_rank() == 0;
    int aot = a->target && !strcmp(a->target, "aot"); /* an executable: its batch is a rank's */
    if (aot && a->ranks <= 1)
        return lead ? diag_error_noloc(d, "this executable was compiled for one process and runs as one of %d ranks; "
                                          "`netc compile --ranks %d` builds one for mpirun -np %d", ranks, ranks,
                                       ranks) : -1;
    if (aot && a->ranks != ranks)
        return lead ? diag_error_noloc(d, "this executable was compiled for %d ranks (netc compile --ranks %d) and "
                                          "runs as %d; start it with mpirun -np %d", a->ranks, a->ranks, ranks,
                                       a->ranks) : -1;
    IrGraph g;
    char *text = NULL;
    if (rt_build_graph(src, a, IR_EVAL, &g, &text, d)) {
        ir_free(&g);
        free(text);
        return -1;
    }
    int64_t B = aot ? g.train.batch * ranks : g.train.batch;
    const char *t = text ? text : src->src;
    size_t len = text ? strlen(text) : src->len;
    uint64_t h = rt_hash(RT_HASH_INIT, t, len);
    char flags[512];
    snprintf(flags, sizeof flags, "%lld %.17g %d %d %llu %u %d %d %s %s %d %d", (long long)B, g.train.lr,
             g.train.epochs, g.train.resize, (unsigned long long)a->seed, a->fuse.off, a->plan.concat_copy,
             a->plan.recompute_bn_relu, a->target ? a->target : "", a->checkpoint ? "ckpt" : "", a->resume,
             a->sync_bn);
    h = rt_hash(h, flags, strlen(flags));
    for (int i = 0; i < a->ndefines; i++) {
        h = rt_hash(h, a->defines[i].name, strlen(a->defines[i].name) + 1);
        h = rt_hash(h, a->defines[i].value, strlen(a->defines[i].value) + 1);
    }
    ir_free(&g);
    free(text);
    int who = rt_dist_agree(h);
    if (who == -2) return -1;
    if (who >= 0)
        return lead ? diag_error_noloc(d, "rank %d runs another network, or the same with other settings, than "
                                          "rank 0; every rank must run the same command on the same .net file",
                                       who) : -1;
    if (B % ranks && !aot)
        return lead ? diag_error_noloc(d, "batch %lld does not split evenly among %d ranks (each takes an equal "
                                          "part of every batch); give --batch %lld or %lld", (long long)B, ranks,
                                       (long long)(B / ranks * ranks > 0 ? B / ranks * ranks : ranks),
                                       (long long)((B / ranks + 1) * ranks)) : -1;
    a->batch = B / ranks;
    if (!a->threads) a->threads = rank_threads();
    return 0;
}

int rt_open_train_session(const RtSource *src, RtArgs *a, RtSession *s, IrGraph *gt, IrGraph *ge, char **text,
                          Diag *d) {
    char err[512];
    memset(s, 0, sizeof *s);
    ir_init(gt), ir_init(ge);
    diag_init(d, src->name, NULL, 0, stderr);
    if (rt_dist_start(err, sizeof err)) return diag_error_noloc(d, "%s", err);
    if (rt_dist_size() == 1 && a->ranks <= 1) return rt_open_session(src, a, 1, s, gt, ge, text, d);
    if (dist_setup(src, a, d)) return -1;
    RtSessionOptions so = {a->target, 0, a->threads, a->verify, 1, a->cpu, &a->fuse, NULL, &a->plan, 1, a->sync_bn, a->tf32};
    if (rt_build_graph(src, a, IR_TRAIN, gt, text, d)) return -1;
    RtSource s2 = {src->name, *text ? *text : src->src, *text ? strlen(*text) : src->len};
    if (rt_build_graph(&s2, a, IR_EVAL, ge, text, d)) return -1;
    so.batch = ge->train.batch;
    return rt_session_open(s, gt, ge, &so, d);
}

int rt_cmd_train(const RtSource *src, const RtArgs *args) {
    RtSession s;
    IrGraph gt, ge;
    char *text = NULL;
    Diag d;
    RtArgs a1 = *args, *a = &a1;
    int rc = rt_open_train_session(src, a, &s, &gt, &ge, &text, &d);
    int ranks = rt_dist_size(), lead = rt_dist_rank() == 0;
    if (!rc) {
        const char *base = strrchr(src->name, '/');
        RtTrainOptions o = {ge.train.epochs, ge.train.lr, ge.train.batch * ranks, ge.train.resize, a->seed, a->data,
                            a->checkpoint, a->resume, a->metrics, a->plot, base ? base + 1 : src->name,
                            a->max_steps, a->quiet};
        if (!a->quiet && lead && ranks > 1)
            fprintf(stderr, "training %s on %s, %d ranks (batch %lld each, %d thread%s each, batch-norm statistics "
                            "%s): lr %g, batch %lld, %d epochs, resize %d, seed %llu\n", o.title, s.be->name, ranks,
                    (long long)ge.train.batch, a->threads, a->threads == 1 ? "" : "s",
                    a->sync_bn ? "over all ranks" : "per rank", o.lr, (long long)o.batch, o.epochs, o.resize,
                    (unsigned long long)o.seed);
        else if (!a->quiet && lead)
            fprintf(stderr, "training %s on %s: lr %g, batch %lld, %d epochs, resize %d, seed %llu\n", o.title,
                    s.be->name, o.lr, (long long)o.batch, o.epochs, o.resize, (unsigned long long)o.seed);
        rc = rt_train(&s, &o, &d);
    }
    close_all(&s, &gt, &ge, text);
    /* a rank that failed leaves without MPI_Finalize (which would wait for
     * the others): mpirun then ends the whole job */
    if (!rc) rt_dist_finish();
    return rc ? 1 : 0;
}

int rt_cmd_eval(const RtSource *src, const RtArgs *a) {
    RtSession s;
    IrGraph gt, ge;
    char *text = NULL;
    Diag d;
    int rc = rt_open_session(src, a, 0, &s, &gt, &ge, &text, &d);
    if (!rc && !a->weights) rc = diag_error_noloc(&d, "eval needs --weights CHECKPOINT");
    if (!rc) rc = rt_checkpoint_load(&s, a->weights, NULL, NULL, NULL, &d);
    double loss, acc;
    if (!rc) rc = rt_evaluate(&s, a->data, ge.train.resize, &loss, &acc, &d);
    if (!rc) printf("test loss %.4f, test acc %.4f\n", loss, acc);
    close_all(&s, &gt, &ge, text);
    return rc ? 1 : 0;
}

int rt_cmd_predict(const RtSource *src, const RtArgs *a) {
    RtSession s;
    IrGraph gt, ge;
    char *text = NULL;
    Diag d;
    int rc = rt_open_session(src, a, 0, &s, &gt, &ge, &text, &d);
    if (!rc && !a->images) rc = diag_error_noloc(&d, "predict needs --images IDX_FILE");
    if (!rc && a->weights) rc = rt_checkpoint_load(&s, a->weights, NULL, NULL, NULL, &d);
    else if (!rc) fprintf(stderr, "warning: no --weights given; predicting with freshly initialised weights\n");
    int64_t n = 0;
    int h = 0, w = 0;
    char err[512];
    uint8_t *px = rc ? NULL : rt_idx_read_images(a->images, a->limit, &n, &h, &w, err, sizeof err);
    if (!rc && !px) rc = diag_error_noloc(&d, "%s", err);
    if (!rc) {
        int R = ge.train.resize;
        int64_t B = s.batch, lim = n < a->limit ? n : a->limit;
        float *img = ir_xcalloc((size_t)(B * R * R), sizeof(float));
        float *tmp = ir_xmalloc(sizeof(float) * (size_t)(h * w));
        int32_t *lab = ir_xcalloc((size_t)B, sizeof(int32_t));
        for (int64_t i0 = 0; i0 < lim && !rc; i0 += B) {
            int64_t cnt = lim - i0 < B ? lim - i0 : B;
            memset(img, 0, sizeof(float) * (size_t)(B * R * R));
            for (int64_t i = 0; i < cnt; i++) {
                for (int k = 0; k < h * w; k++) tmp[k] = px[(i0 + i) * h * w + k] / 255.0f;
                rt_resize_bilinear(tmp, h, w, img + i * R * R, R, R);
            }
            rt_session_set_batch(&s, img, lab);
            double ls;
            int64_t ok;
            rc = rt_session_eval(&s, 0, &ls, &ok);
            const float *z = rt_model_find(&s.model, "logits")->data;
            for (int64_t i = 0; i < cnt && !rc; i++) {
                const float *r = z + i * s.classes;
                int best = 0;
                double m = r[0], sum = 0;
                for (int j = 1; j < s.classes; j++) if (r[j] > r[best]) best = j, m = r[j];
                for (int j = 0; j < s.classes; j++) sum += exp(r[j] - m);
                printf("%lld: class %d  probs", (long long)(i0 + i), best);
                for (int j = 0; j < s.classes; j++) printf(" %.4f", exp(r[j] - m) / sum);
                printf("\n");
            }
        }
        free(img), free(tmp), free(lab);
    }
    free(px);
    close_all(&s, &gt, &ge, text);
    return rc ? 1 : 0;
}

/* netc step: one step on given tensors, every result written out (the
 * PyTorch cross-check drives this). */
int rt_cmd_step(const RtSource *src, const RtArgs *a) {
    RtSession s;
    IrGraph gt, ge;
    char *text = NULL, err[512];
    Diag d;
    int train = !a->mode || !strcmp(a->mode, "train");
    int rc = rt_open_session(src, a, train, &s, &gt, &ge, &text, &d);
    if (!rc && (!a->in || !a->out)) rc = diag_error_noloc(&d, "step needs --in TENSORS and --out TENSORS");
    RtSt *in = NULL;
    if (!rc && !(in = rt_st_read(a->in, err, sizeof err))) rc = diag_error_noloc(&d, "%s", err);
    for (int i = 0; !rc && i < s.model.n; i++) {
        RtTensor *t = &s.model.t[i];
        if (t->kind == SLOT_PARAM || t->kind == SLOT_STATE || t->kind == SLOT_INPUT || t->kind == SLOT_LABELS)
            if (rt_st_get(in, t->name, t->kind == SLOT_LABELS ? "I32" : "F32", t->rank, t->shape, t->data, err,
                          sizeof err))
                rc = diag_error_noloc(&d, "%s", err);
    }
    rt_session_host_wrote(&s);
    double loss = 0;
    int64_t ok;
    uint64_t seed = a->seed, step = 0;
    double lr = ge.train.lr;
    if (!rc && train) rc = rt_session_train_step(&s, lr, seed, step, &loss, s.batch, &ok);
    if (!rc && !train) rc = rt_session_eval(&s, s.batch, &loss, &ok);
    if (!rc) rc = rt_session_to_host(&s, &d);
    if (!rc) {
        const Program *p = train ? &s.train : &s.eval;
        int nout = 0, cap = s.model.n + 16;
        RtTensorOut *out = ir_xcalloc((size_t)cap, sizeof *out);
        char **names = ir_xcalloc((size_t)cap, sizeof(char *));
        void **bufs = ir_xcalloc((size_t)cap, sizeof(void *));
        for (int i = 0; i < s.model.n; i++) {
            RtTensor *t = &s.model.t[i];
            if (t->kind == SLOT_INPUT || t->kind == SLOT_LABELS) continue;
            RtTensorOut *o = &out[nout++];
            o->name = t->name;
            o->dtype = "F32";
            o->rank = t->rank;
            memcpy(o->shape, t->shape, sizeof t->shape);
            o->data = t->data;
            o->bytes = t->bytes;
        }
        /* dropout masks, recomputed from the counter-based generator */
        for (int i = 0; i < p->g.nnodes && nout < cap; i++) {
            const IrNode *n = &p->g.nodes[i];
            if (n->op != IR_OP_DROPOUT || n->attr.dropout.mode != IR_TRAIN) continue;
            const IrType *ty = ir_type(&p->g, n->out[0]);
            int64_t m = ir_numel(ty, s.batch);
            float *mask = ir_xmalloc(sizeof(float) * (size_t)m);
            float pr = n->attr.dropout.p;
            for (int64_t j = 0; j < m; j++)
                mask[j] = netc_uniform(seed, (uint64_t)n->attr.dropout.index, step, (uint64_t)j) < pr ? 0.0f : 1.0f / (1.0f - pr);
            names[nout] = ir_xmalloc(32);
            snprintf(names[nout], 32, "dropout.%d", n->attr.dropout.index);
            RtTensorOut *o = &out[nout];
            o->name = names[nout];
            o->dtype = "F32";
            o->rank = ty->rank;
            for (int k = 0; k < ty->rank; k++) o->shape[k] = k == 0 ? s.batch : ty->d[k];
            o->data = bufs[nout] = mask;
            o->bytes = m * 4;
            nout++;
        }
        if (rt_st_write(a->out, out, nout, NULL, err, sizeof err)) rc = diag_error_noloc(&d, "%s", err);
        for (int i = 0; i < cap; i++) free(names[i]), free(bufs[i]);
        free(out), free(names), free(bufs);
    }
    rt_st_free(in);
    close_all(&s, &gt, &ge, text);
    return rc ? 1 : 0;
}
