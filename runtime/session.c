/* session.c - a train program and an eval program of one network, compiled
 * for one backend, sharing weights and one arena. */
#include "runtime.h"
#include "dist.h"
#include "../base/pool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int lower(const IrGraph *fwd, IrMode mode, Program *p, const RtSessionOptions *o, Diag *d) {
    PipelineOptions po = {mode, o->batch, 4, o->verify, NULL, NULL, o->fuse, o->plan, mode == IR_TRAIN && o->dist,
                          mode == IR_TRAIN && o->dist && o->sync_bn};
    return pass_pipeline(fwd, &po, p, d);
}

static int bind(RtSession *s, Program *p, void ***slots, int **tensor, Diag *d) {
    *slots = ir_xcalloc((size_t)(p->nslots ? p->nslots : 1), sizeof(void *));
    if (rt_model_bind(&s->model, p, *slots, d)) return -1;
    *tensor = ir_xcalloc((size_t)(p->nslots ? p->nslots : 1), sizeof(int));
    for (int i = 0; i < p->nslots; i++) (*tensor)[i] = (int)(rt_model_find(&s->model, p->slots[i].name) - s->model.t);
    return 0;
}

int rt_session_open(RtSession *s, const IrGraph *fwd_train, const IrGraph *fwd_eval, const RtSessionOptions *o,
                    Diag *d) {
    memset(s, 0, sizeof *s);
    s->be = o->target ? backend_find(o->target) : backend_default();
    if (!s->be) {
        char have[128] = "";
        for (int i = 0; i < backend_count(); i++)
            snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s", i ? ", " : "", backend_at(i)->name);
        return diag_error_noloc(d, "unknown target `%s` (this netc has: %s%s)", o->target, have,
                                strcmp(o->target, "cpu") ? "" : "; cpu needs a build with LLVM");
    }
    s->batch = o->batch;
    s->own_pool = !o->pool;
    s->pool = o->pool ? o->pool : rt_pool_new(o->threads);
    /* tf32: the cuda target's tensor cores, and ref's and ref64's rounding
     * of the same operands (their oracle) */
    if (o->tf32 && strcmp(s->be->name, "cuda") && strcmp(s->be->name, "ref") && strcmp(s->be->name, "ref64"))
        return diag_error_noloc(d, "--precision tf32 is the tensor cores' precision: it needs --target cuda "
                                   "(or ref, its oracle; the %s target computes in fp32)", s->be->name);
    BackendOptions bo = {o->threads, 3, 0, o->cpu, o->dist ? rt_dist_local_rank() : 0, o->tf32};
    if (o->train) {
        if (lower(fwd_train, IR_TRAIN, &s->train, o, d)) return -1;
        s->has_train = 1;
    }
    if (lower(fwd_eval, IR_EVAL, &s->eval, o, d)) return -1;
    if (o->train && s->be->compile_pair) {
        if (s->be->compile_pair(&s->train, &s->eval, &bo, &s->train_state, &s->eval_state, d)) return -1;
    } else {
        if (o->train && s->be->compile(&s->train, &bo, &s->train_state, d)) return -1;
        if (s->be->compile(&s->eval, &bo, &s->eval_state, d)) return -1;
    }
    if (o->train && bind(s, &s->train, &s->train_slots, &s->train_tensor, d)) return -1;
    if (bind(s, &s->eval, &s->eval_slots, &s->eval_tensor, d)) return -1;
    int64_t bytes = s->eval.arena_bytes;
    if (s->has_train && s->train.arena_bytes > bytes) bytes = s->train.arena_bytes;
    s->arena = aligned_alloc(64, (size_t)((bytes + 63) / 64 * 64 + 64));
    if (!s->arena) return diag_error_noloc(d, "out of memory for the arena (%lld bytes)", (long long)bytes);
    rt_model_init(&s->model, s->has_train ? &s->train : &s->eval, 0);
    rt_session_host_wrote(s);
    const IrType *lt = ir_type(&s->eval.g, s->eval.g.logits);
    s->classes = (int)lt->d[1];
    if (o->train && o->dist) return rt_dist_open(s, d);
    return 0;
}

void rt_session_close(RtSession *s) {
    if (s->be) {
        if (s->has_train && s->train_state) s->be->free(s->train_state);
        if (s->eval_state) s->be->free(s->eval_state);
    }
    if (s->has_train) program_free(&s->train);
    if (s->eval.g.nodes) program_free(&s->eval);
    free(s->train_slots);
    free(s->eval_slots);
    free(s->train_tensor);
    free(s->eval_tensor);
    free(s->next_img);
    free(s->next_lab);
    free(s->arena);
    rt_dist_close(s);
    rt_model_free(&s->model);
    if (s->own_pool) rt_pool_free(s->pool);
    memset(s, 0, sizeof *s);
}

void rt_session_set_batch(RtSession *s, const float *images, const int32_t *labels) {
    RtTensor *in = rt_model_find(&s->model, "input"), *lb = rt_model_find(&s->model, "labels");
    memcpy(in->data, images, (size_t)in->bytes);
    memcpy(lb->data, labels, (size_t)lb->bytes);
    in->newer = lb->newer = RT_HOST_NEWER;
    s->staged = 0;
}

int rt_session_can_stage(const RtSession *s) {
    const char *e = getenv("NETC_CUDA_OVERLAP");
    return s->has_train && !s->dist && s->be->start && s->be->put_next && !(e && !strcmp(e, "0"));
}

int rt_session_stage_batch(RtSession *s, const float *images, const int32_t *labels) {
    RtTensor *in = rt_model_find(&s->model, "input"), *lb = rt_model_find(&s->model, "labels");
    if (!rt_session_can_stage(s)) {
        rt_session_set_batch(s, images, labels);
        return 0;
    }
    if (!s->next_img) s->next_img = ir_xmalloc((size_t)in->bytes), s->next_lab = ir_xmalloc((size_t)lb->bytes);
    memcpy(s->next_img, images, (size_t)in->bytes);
    memcpy(s->next_lab, labels, (size_t)lb->bytes);
    s->staged = 0;
    for (int i = 0; i < s->train.nslots; i++) {
        const RtTensor *t = &s->model.t[s->train_tensor[i]];
        if (t != in && t != lb) continue;
        if (s->be->put_next(s->train_state, &s->train, i, t == in ? s->next_img : s->next_lab, t->bytes)) return -1;
    }
    s->staged = 1;
    return 0;
}

/* ---- a device backend's copies ----------------------------------------------
 * Each tensor says which side wrote it last.  Before a program runs, what
 * the host wrote goes up; after it, everything it wrote is newer on the
 * device, and the loss and logits, which every step reads, come down. */

void rt_session_host_wrote(RtSession *s) {
    for (int i = 0; i < s->model.n; i++) s->model.t[i].newer = RT_HOST_NEWER;
}

/* put or get the slots of p whose tensor is newer on the other side. */
static int sync(const RtSession *s, const Program *p, void *state, void **slots, const int *tensor, int up) {
    const Backend *be = s->be;
    if (!be->put) return 0;
    int *which = ir_xcalloc((size_t)(p->nslots ? p->nslots : 1), sizeof(int)), n = 0;
    for (int i = 0; i < p->nslots; i++)
        if (s->model.t[tensor[i]].newer == (up ? RT_HOST_NEWER : RT_DEVICE_NEWER)) which[n++] = i;
    RunCtx c = {s->arena, slots, 0, 0, 0, s->pool, 0};
    int rc = n ? (up ? be->put : be->get)(state, p, &c, which, n) : 0;
    for (int i = 0; i < n && !rc; i++) s->model.t[tensor[which[i]]].newer = 0;
    free(which);
    return rc;
}

/* After p ran: what it wrote is newer on the device (an eval program
 * writes no weights or statistics); the loss and the logits come back. */
static int ran(RtSession *s, const Program *p, void *state, void **slots, const int *tensor) {
    if (!s->be->put) return 0;
    int *which = ir_xcalloc((size_t)(p->nslots ? p->nslots : 1), sizeof(int)), n = 0;
    for (int i = 0; i < p->nslots; i++) {
        const Slot *sl = &p->slots[i];
        RtTensor *t = &s->model.t[tensor[i]];
        if (sl->kind == SLOT_INPUT || sl->kind == SLOT_LABELS) continue;
        if (p->g.mode == IR_EVAL && (sl->kind == SLOT_PARAM || sl->kind == SLOT_STATE)) continue;
        t->newer = RT_DEVICE_NEWER;
        if (!strcmp(sl->name, "loss") || !strcmp(sl->name, "logits")) which[n++] = i, t->newer = 0;
    }
    RunCtx c = {s->arena, slots, 0, 0, 0, s->pool, 0};
    int rc = n ? s->be->get(state, p, &c, which, n) : 0;
    free(which);
    return rc;
}

int rt_session_to_host(const RtSession *s, Diag *d) {
    if (!s->be->put) return 0;
    if ((s->has_train && sync(s, &s->train, s->train_state, s->train_slots, s->train_tensor, 0)) ||
        sync(s, &s->eval, s->eval_state, s->eval_slots, s->eval_tensor, 0))
        return diag_error_noloc(d, "could not read the tensors back from the %s device", s->be->name);
    return 0;
}

/* Correct predictions and (optionally) summed cross-entropy over the first
 * count rows of the logits. */
static void score(const RtSession *s, int64_t count, double *loss_sum, int64_t *correct) {
    const float *z = rt_model_find(&s->model, "logits")->data;
    const int32_t *y = rt_model_find(&s->model, "labels")->data;
    int k = s->classes;
    double ls = 0;
    int64_t ok = 0;
    for (int64_t i = 0; i < count; i++) {
        const float *r = z + i * k;
        int best = 0;
        for (int j = 1; j < k; j++)
            if (r[j] > r[best]) best = j;
        ok += best == y[i];
        double m = r[best], e = 0;
        for (int j = 0; j < k; j++) e += exp((double)r[j] - m);
        ls += m + log(e) - r[y[i]];
    }
    if (loss_sum) *loss_sum = ls;
    *correct = ok;
}

int rt_session_train_begin(RtSession *s, double lr, uint64_t seed, uint64_t step) {
    RtTensor *in = rt_model_find(&s->model, "input"), *lb = rt_model_find(&s->model, "labels");
    int staged = s->staged;
    RunCtx c = {s->arena, s->train_slots, lr, seed, step, s->pool, staged};
    s->staged = 0;
    s->step_lr = lr;
    if (staged) in->newer = lb->newer = 0;   /* on the device already */
    if (sync(s, &s->train, s->train_state, s->train_slots, s->train_tensor, 1)) return -1;
    if (s->dist) rt_dist_step_begin(s);
    int rc = (s->be->start ? s->be->start : s->be->run)(s->train_state, &s->train, &c);
    if (rc && s->dist) rt_dist_step_end(s);
    if (staged && !rc) {   /* the host's copies, while the device runs */
        memcpy(in->data, s->next_img, (size_t)in->bytes);
        memcpy(lb->data, s->next_lab, (size_t)lb->bytes);
    }
    return rc;
}

int rt_session_train_end(RtSession *s, double *loss, int64_t count, int64_t *correct) {
    RunCtx c = {s->arena, s->train_slots, 0, 0, 0, s->pool, 0};
    int rc = s->be->start ? s->be->finish(s->train_state, &s->train, &c) : 0;
    if (s->dist) rt_dist_step_end(s);
    if (rc || ran(s, &s->train, s->train_state, s->train_slots, s->train_tensor)) return -1;
    *loss = *(const float *)rt_model_find(&s->model, "loss")->data;
    score(s, count, NULL, correct);
    return s->dist ? rt_dist_update(s, s->step_lr, loss, correct) : 0;
}

int rt_session_train_step(RtSession *s, double lr, uint64_t seed, uint64_t step, double *loss, int64_t count,
                          int64_t *correct) {
    if (rt_session_train_begin(s, lr, seed, step)) return -1;
    return rt_session_train_end(s, loss, count, correct);
}

int rt_session_bcast(RtSession *s, int params, int state, Diag *d) {
    if (rt_session_to_host(s, d)) return -1; /* (a device backend) */
    for (int i = 0; i < s->model.n; i++) {
        RtTensor *t = &s->model.t[i];
        if (!((params && t->kind == SLOT_PARAM) || (state && t->kind == SLOT_STATE))) continue;
        if (rt_dist_bcast(t->data, t->bytes))
            return diag_error_noloc(d, "could not send rank 0's %s to the other ranks", t->name);
        if (s->be->put) t->newer = RT_HOST_NEWER;
    }
    return 0;
}

int rt_session_eval(RtSession *s, int64_t count, double *loss_sum, int64_t *correct) {
    RunCtx c = {s->arena, s->eval_slots, 0, 0, 0, s->pool, 0};
    if (sync(s, &s->eval, s->eval_state, s->eval_slots, s->eval_tensor, 1)) return -1;
    if (s->be->run(s->eval_state, &s->eval, &c)) return -1;
    if (ran(s, &s->eval, s->eval_state, s->eval_slots, s->eval_tensor)) return -1;
    score(s, count, loss_sum, correct);
    return 0;
}
