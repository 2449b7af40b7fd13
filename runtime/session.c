/* session.c - a train program and an eval program of one network, compiled
 * for one backend, sharing weights and one arena. */
#include "runtime.h"
#include "pool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int lower(const IrGraph *fwd, IrMode mode, Program *p, const RtSessionOptions *o, Diag *d) {
    PipelineOptions po = {mode, o->batch, 4, o->verify, NULL, NULL, o->fuse, o->plan};
    return pass_pipeline(fwd, &po, p, d);
}

static int bind(RtSession *s, Program *p, void ***slots, Diag *d) {
    *slots = ir_xcalloc((size_t)(p->nslots ? p->nslots : 1), sizeof(void *));
    return rt_model_bind(&s->model, p, *slots, d);
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
    BackendOptions bo = {o->threads, 3, 0, o->cpu};
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
    if (o->train && bind(s, &s->train, &s->train_slots, d)) return -1;
    if (bind(s, &s->eval, &s->eval_slots, d)) return -1;
    int64_t bytes = s->eval.arena_bytes;
    if (s->has_train && s->train.arena_bytes > bytes) bytes = s->train.arena_bytes;
    s->arena = aligned_alloc(64, (size_t)((bytes + 63) / 64 * 64 + 64));
    if (!s->arena) return diag_error_noloc(d, "out of memory for the arena (%lld bytes)", (long long)bytes);
    rt_model_init(&s->model, s->has_train ? &s->train : &s->eval, 0);
    const IrType *lt = ir_type(&s->eval.g, s->eval.g.logits);
    s->classes = (int)lt->d[1];
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
    free(s->arena);
    rt_model_free(&s->model);
    if (s->own_pool) rt_pool_free(s->pool);
    memset(s, 0, sizeof *s);
}

void rt_session_set_batch(RtSession *s, const float *images, const int32_t *labels) {
    RtTensor *in = rt_model_find(&s->model, "input"), *lb = rt_model_find(&s->model, "labels");
    memcpy(in->data, images, (size_t)in->bytes);
    memcpy(lb->data, labels, (size_t)lb->bytes);
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

int rt_session_train_step(RtSession *s, double lr, uint64_t seed, uint64_t step, double *loss, int64_t count,
                          int64_t *correct) {
    RunCtx c = {s->arena, s->train_slots, lr, seed, step, s->pool};
    if (s->be->run(s->train_state, &s->train, &c)) return -1;
    *loss = *(const float *)rt_model_find(&s->model, "loss")->data;
    score(s, count, NULL, correct);
    return 0;
}

int rt_session_eval(RtSession *s, int64_t count, double *loss_sum, int64_t *correct) {
    RunCtx c = {s->arena, s->eval_slots, 0, 0, 0, s->pool};
    if (s->be->run(s->eval_state, &s->eval, &c)) return -1;
    score(s, count, loss_sum, correct);
    return 0;
}
