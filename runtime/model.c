/* model.c - persistent tensors by name, and the seed's initialisation. */
#include "runtime.h"
#include "../codegen/ref_kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

RtTensor *rt_model_find(const RtModel *m, const char *name) {
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->t[i].name, name) == 0) return &m->t[i];
    return NULL;
}

int rt_model_bind(RtModel *m, const Program *p, void **slots, Diag *d) {
    for (int s = 0; s < p->nslots; s++) {
        const Slot *sl = &p->slots[s];
        RtTensor *t = rt_model_find(m, sl->name);
        if (t && t->bytes != sl->bytes)
            return diag_error_noloc(d, "tensor %s is %lld bytes in one program and %lld in another", sl->name,
                                    (long long)t->bytes, (long long)sl->bytes);
        if (!t) {
            m->t = ir_xrealloc(m->t, sizeof(RtTensor) * (size_t)(m->n + 1));
            t = &m->t[m->n++];
            memset(t, 0, sizeof *t);
            t->name = ir_strdup(sl->name);
            t->kind = sl->kind;
            t->bytes = sl->bytes;
            size_t sz = ((size_t)sl->bytes + 63) / 64 * 64;
            t->data = aligned_alloc(64, sz ? sz : 64);
            if (!t->data) return diag_error_noloc(d, "out of memory for %s (%lld bytes)", sl->name, (long long)sl->bytes);
            memset(t->data, 0, sz);
            const IrType *ty = ir_type(&p->g, sl->value);
            t->rank = ty->rank;
            for (int i = 0; i < ty->rank; i++) t->shape[i] = (i == 0 && ty->batched) ? p->batch : ty->d[i];
        }
        slots[s] = t->data;
    }
    return 0;
}

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

void rt_model_init(RtModel *m, const Program *p, uint64_t seed) {
    for (int s = 0; s < p->nslots; s++) {
        const Slot *sl = &p->slots[s];
        if (sl->kind != SLOT_PARAM && sl->kind != SLOT_STATE) continue;
        RtTensor *t = rt_model_find(m, sl->name);
        const IrNode *n = ir_node(&p->g, ir_value(&p->g, sl->value)->node);
        int64_t cnt = ir_numel(ir_type(&p->g, sl->value), p->batch);
        double lo = 0, hi = 0, fill = 0;
        int uniform = 0;
        switch (n->attr.param.role) {
        case IR_PARAM_WEIGHT: {   /* Xavier-uniform: +-sqrt(6 / (fan_in + fan_out)) */
            double a = sqrt(6.0 / (n->attr.param.fan_in + n->attr.param.fan_out));
            lo = -a, hi = a, uniform = 1;
            break;
        }
        case IR_PARAM_BIAS: {     /* PyTorch's default: +-1/sqrt(fan_in) */
            double a = 1.0 / sqrt((double)n->attr.param.fan_in);
            lo = -a, hi = a, uniform = 1;
            break;
        }
        case IR_PARAM_GAMMA: case IR_PARAM_RUNNING_VAR: fill = 1; break;
        default: fill = 0; break;
        }
        uint64_t stream = name_hash(sl->name);
        for (int64_t i = 0; i < cnt; i++) {
            double v = uniform ? lo + (hi - lo) * netc_uniform(seed, stream, 0, (uint64_t)i) : fill;
            if (p->elem_bytes == 8) ((double *)t->data)[i] = v;
            else ((float *)t->data)[i] = (float)v;
        }
    }
}

void rt_model_free(RtModel *m) {
    for (int i = 0; i < m->n; i++) {
        free(m->t[i].name);
        free(m->t[i].data);
    }
    free(m->t);
    memset(m, 0, sizeof *m);
}
