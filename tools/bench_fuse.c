/* bench_fuse.c - `netc bench FILE --compare-fuse`: the training step fused
 * as --fuse asks (default all) against the unfused one (--fuse none), in one
 * process.
 *
 * The two sessions get the same weights and running statistics (copied from
 * the fused one into the other), the same batch and thread pool, and are
 * timed in turns: after --warmup untimed steps of each, every one of --steps
 * rounds times one step of each, the order swapped every round, so that a
 * change of the machine's speed and whatever one step leaves in the caches
 * fall on both alike.  The loss of each one's first step (same weights, same
 * batch) is printed beside the other's: they agree when both programs
 * compute the same thing.  Both programs live in this one process, so the
 * peak resident set size reported is the process's, of the two together. */
#include "bench.h"
#include "base/pool.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Relative difference of two first-step losses past which a warning says
 * the two programs disagree. */
#define LOSS_TOLERANCE 1e-4

typedef struct {
    FuseOptions fuse;
    char spec[256];        /* --fuse as a user writes it */
    RtSession s;
    double compile_sec;
    double secs;           /* the timed steps together */
    double first_loss;     /* after the first step, warm-up included */
    int stepped;
} Side;

/* o as --fuse takes it: all, none, or the patterns left on. */
static void fuse_spec(const FuseOptions *o, char *buf, size_t n) {
    unsigned every = 0;
    for (int k = 1; k < FUSE_COUNT; k++) every |= 1u << k;
    if (!(o->off & every)) snprintf(buf, n, "all");
    else if ((o->off & every) == every) snprintf(buf, n, "none");
    else {
        buf[0] = 0;
        for (int k = 1; k < FUSE_COUNT; k++)
            if (!(o->off >> k & 1))
                snprintf(buf + strlen(buf), n - strlen(buf), "%s%s", buf[0] ? "," : "", fuse_name(k));
    }
}

static int open_side(Side *sd, const IrGraph *gt, const IrGraph *ge, const RtArgs *a, ThreadPool *pool, Diag *d) {
    fuse_spec(&sd->fuse, sd->spec, sizeof sd->spec);
    RtSessionOptions so = {a->target, ge->train.batch, a->threads, a->verify, 1, a->cpu, &sd->fuse, pool, &a->plan, 0, 0,
                           a->tf32};
    double t0 = netc_bench_now();
    int rc = rt_session_open(&sd->s, gt, ge, &so, d);
    sd->compile_sec = netc_bench_now() - t0;
    return rc;
}

/* Weights and running statistics of `from` into `to` (same network: every
 * tensor has its twin of the same name and size). */
static int copy_weights(const RtSession *from, RtSession *to, Diag *d) {
    if (rt_session_to_host(from, d)) return -1;
    for (int i = 0; i < from->model.n; i++) {
        const RtTensor *t = &from->model.t[i];
        if (t->kind != SLOT_PARAM && t->kind != SLOT_STATE) continue;
        RtTensor *u = rt_model_find(&to->model, t->name);
        if (!u || u->bytes != t->bytes)
            return diag_error_noloc(d, "internal error: tensor %s differs between the fused and unfused programs",
                                    t->name);
        memcpy(u->data, t->data, (size_t)t->bytes);
    }
    rt_session_host_wrote(to);
    return 0;
}

/* One training step of sd, step number `step` for both sides (dropout). */
static int step(Side *sd, const IrGraph *ge, uint64_t k, int timed) {
    double loss, t0 = netc_bench_now();
    int64_t ok;
    if (rt_session_train_step(&sd->s, ge->train.lr, 0, k, &loss, sd->s.batch, &ok)) return -1;
    if (timed) sd->secs += netc_bench_now() - t0;
    if (!sd->stepped++) sd->first_loss = loss;
    return 0;
}

/* |x - y| relative to the larger; 0 when both are 0, NaN when either is
 * not finite. */
static double rel_diff(double x, double y) {
    if (!isfinite(x) || !isfinite(y)) return NAN;
    double m = fmax(fabs(x), fabs(y));
    return m > 0 ? fabs(x - y) / m : 0;
}

static void report(const RtArgs *a, const Side *f, const Side *u, const IrGraph *ge, int64_t B) {
    const Program *ft = &f->s.train, *ut = &u->s.train;
    double fips = (double)B * a->steps / f->secs, uips = (double)B * a->steps / u->secs;
    double rel = rel_diff(f->first_loss, u->first_loss);
    int agree = rel <= LOSS_TOLERANCE;
    const IrType *ti = ir_type(ge, ge->input);
    long long rss = netc_bench_peak_rss(); /* both sessions' memory together */
    if (a->json) {
        char r[32];
        if (isfinite(rel)) snprintf(r, sizeof r, "%.3g", rel);
        else snprintf(r, sizeof r, "null");
        printf("{\"model\":\"%s\",\"target\":\"%s\",\"threads\":%d,\"batch\":%lld,\"resize\":%lld,\"steps\":%d,"
               "\"warmup\":%d,\"fuse\":\"%s\",\"fused_images_per_sec\":%.2f,\"unfused_images_per_sec\":%.2f,"
               "\"fuse_ratio\":%.6g,\"fused_ms_per_step\":%.3f,\"unfused_ms_per_step\":%.3f,"
               "\"fused_kernels\":%d,\"unfused_kernels\":%d,\"fused_eval_kernels\":%d,\"unfused_eval_kernels\":%d,"
               "\"fused_arena_bytes\":%lld,\"unfused_arena_bytes\":%lld,\"fused_compile_sec\":%.3f,"
               "\"unfused_compile_sec\":%.3f,\"fused_first_loss\":%.6f,\"unfused_first_loss\":%.6f,"
               "\"first_loss_rel_diff\":%s,\"losses_agree\":%s,\"peak_rss_bytes\":%lld}\n",
               a->file, f->s.be->name, a->threads, (long long)B, (long long)ti->d[2], a->steps, a->warmup, f->spec,
               fips, uips, fips / uips, f->secs * 1e3 / a->steps, u->secs * 1e3 / a->steps, ft->nkernels,
               ut->nkernels, f->s.eval.nkernels, u->s.eval.nkernels, (long long)ft->arena_bytes,
               (long long)ut->arena_bytes, f->compile_sec, u->compile_sec, f->first_loss, u->first_loss, r,
               agree ? "true" : "false", rss);
    } else {
        printf("%s on %s: batch %lld, %dx%d; --fuse %s against --fuse none, %d round%s of one step each\n", a->file,
               f->s.be->name, (long long)B, (int)ti->d[2], (int)ti->d[3], f->spec, a->steps, a->steps == 1 ? "" : "s");
        printf("                   fused     unfused\n");
        printf("  images/s    %11.1f %11.1f   fused/unfused %.3fx\n", fips, uips, fips / uips);
        printf("  ms/step     %11.2f %11.2f\n", f->secs * 1e3 / a->steps, u->secs * 1e3 / a->steps);
        printf("  kernels     %11d %11d   training step (eval: %d, %d)\n", ft->nkernels, ut->nkernels,
               f->s.eval.nkernels, u->s.eval.nkernels);
        printf("  arena bytes %11lld %11lld   training step\n", (long long)ft->arena_bytes, (long long)ut->arena_bytes);
        printf("  first loss  %11.6f %11.6f   %s (relative difference %.3g)\n", f->first_loss, u->first_loss,
               agree ? "agree" : "DIFFER", rel);
        printf("  compile s   %11.2f %11.2f\n", f->compile_sec, u->compile_sec);
        printf("  peak RSS %.1f MiB, the process's: both programs together\n", (double)rss / (1 << 20));
    }
    if (!agree)
        fprintf(stderr, "netc bench: warning: the first step's loss is %.6f fused and %.6f unfused (relative difference "
                "%.3g, more than %g): the two programs do not compute the same step\n", f->first_loss, u->first_loss,
                rel, LOSS_TOLERANCE);
}

int netc_bench_compare_fuse(const RtArgs *a) {
    RtSource src = {a->file, NULL, 0};
    IrGraph gt, ge;
    char *text = NULL;
    Diag d;
    Side f, u;
    memset(&f, 0, sizeof f), memset(&u, 0, sizeof u);
    f.fuse = a->fuse;
    u.fuse.off = ~0u;
    ir_init(&ge);
    int rc = rt_build_graph(&src, a, IR_TRAIN, &gt, &text, &d);
    if (!rc) {
        RtSource s2 = {a->file, text, text ? strlen(text) : 0};
        rc = rt_build_graph(text ? &s2 : &src, a, IR_EVAL, &ge, &text, &d);
    }
    fuse_spec(&f.fuse, f.spec, sizeof f.spec);
    if (!rc && !strcmp(f.spec, "none"))
        rc = diag_error_noloc(&d, "--compare-fuse times --fuse (default all) against --fuse none; "
                              "with --fuse none there is nothing to compare");
    ThreadPool *pool = rc ? NULL : rt_pool_new(a->threads);
    if (!rc) rc = open_side(&f, &gt, &ge, a, pool, &d);
    if (!rc) rc = open_side(&u, &gt, &ge, a, pool, &d);
    if (!rc) rc = copy_weights(&f.s, &u.s, &d);
    if (!rc) {
        int64_t B = f.s.batch, px = ir_numel(ir_type(&ge, ge.input), B);
        float *img = ir_xmalloc(sizeof(float) * (size_t)px);
        int32_t *lab = ir_xmalloc(sizeof(int32_t) * (size_t)B);
        netc_bench_batch(img, px, lab, B, f.s.classes);
        rt_session_set_batch(&f.s, img, lab);
        rt_session_set_batch(&u.s, img, lab);
        uint64_t k = 0;
        for (int i = 0; i < a->warmup && !rc; i++, k++) rc = step(&f, &ge, k, 0) || step(&u, &ge, k, 0);
        for (int i = 0; i < a->steps && !rc; i++, k++) {
            Side *first = i % 2 ? &u : &f, *second = i % 2 ? &f : &u;
            rc = step(first, &ge, k, 1) || step(second, &ge, k, 1);
        }
        if (!rc) report(a, &f, &u, &ge, B);
        free(img);
        free(lab);
    }
    rt_session_close(&f.s);
    rt_session_close(&u.s);
    rt_pool_free(pool);
    ir_free(&gt);
    ir_free(&ge);
    free(text);
    return rc ? 1 : 0;
}
