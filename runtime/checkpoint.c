/* checkpoint.c - a session's weights and running statistics as safetensors,
 * named by the hierarchical names, with the training position as metadata. */
#include "runtime.h"
#include "safetensors.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static int is_saved(const RtTensor *t) { return t->kind == SLOT_PARAM || t->kind == SLOT_STATE; }

int rt_checkpoint_save(const RtSession *s, const char *path, int epoch, uint64_t step, uint64_t seed, Diag *d) {
    RtTensorOut *out = ir_xcalloc((size_t)s->model.n, sizeof *out);
    int n = 0;
    for (int i = 0; i < s->model.n; i++) {
        const RtTensor *t = &s->model.t[i];
        if (!is_saved(t)) continue;
        RtTensorOut *o = &out[n++];
        o->name = t->name;
        o->dtype = "F32";
        o->rank = t->rank;
        for (int k = 0; k < t->rank; k++) o->shape[k] = t->shape[k];
        o->data = t->data;
        o->bytes = t->bytes;
    }
    char e[32], st[32], sd[32], err[512];
    snprintf(e, sizeof e, "%d", epoch);
    snprintf(st, sizeof st, "%" PRIu64, step);
    snprintf(sd, sizeof sd, "%" PRIu64, seed);
    const char *meta[] = {"format", "netc", "epoch", e, "step", st, "seed", sd, NULL};
    int rc = rt_st_write(path, out, n, meta, err, sizeof err);
    free(out);
    if (rc) return diag_error_noloc(d, "cannot write checkpoint: %s", err);
    return 0;
}

int rt_checkpoint_load(RtSession *s, const char *path, int *epoch, uint64_t *step, uint64_t *seed, Diag *d) {
    char err[512];
    RtSt *st = rt_st_read(path, err, sizeof err);
    if (!st) return diag_error_noloc(d, "cannot read checkpoint: %s", err);
    int rc = 0, found = 0;
    for (int i = 0; i < s->model.n && !rc; i++) {
        RtTensor *t = &s->model.t[i];
        if (!is_saved(t)) continue;
        found++;
        if (rt_st_get(st, t->name, "F32", t->rank, t->shape, t->data, err, sizeof err))
            rc = diag_error_noloc(d, "checkpoint does not match the network: %s", err);
    }
    if (!rc && rt_st_count(st) != found) {
        for (int i = 0; i < rt_st_count(st); i++)
            if (!rt_model_find(&s->model, rt_st_name(st, i))) {
                rc = diag_error_noloc(d, "checkpoint %s has tensor `%s`, which the network does not have", path,
                                      rt_st_name(st, i));
                break;
            }
    }
    const char *v;
    if (!rc && epoch) *epoch = (v = rt_st_meta(st, "epoch")) ? atoi(v) : 0;
    if (!rc && step) *step = (v = rt_st_meta(st, "step")) ? strtoull(v, NULL, 10) : 0;
    if (!rc && seed && (v = rt_st_meta(st, "seed"))) *seed = strtoull(v, NULL, 10);
    rt_st_free(st);
    return rc;
}
