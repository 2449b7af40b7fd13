/* ir.c - the op table, graph builders and type helpers. */
#include "ir.h"

#include <stdlib.h>
#include <string.h>

const IrOpInfo ir_op_info[IR_OP_COUNT] = {
#define OP(e, name, nin, nout, attr, flags) [IR_OP_##e] = {name, nin, nout, IR_ATTR_##attr, flags},
#include "ops.def"
#undef OP
};

_Noreturn void ir_die(const char *file, int line, const char *what) {
    fprintf(stderr, "netc: internal error at %s:%d: %s\n", file, line, what);
    abort();
}

void *ir_xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) ir_die(__FILE__, __LINE__, "out of memory");
    return p;
}

void *ir_xcalloc(size_t n, size_t m) {
    void *p = calloc(n ? n : 1, m ? m : 1);
    if (!p) ir_die(__FILE__, __LINE__, "out of memory");
    return p;
}

void *ir_xrealloc(void *p, size_t n) {
    p = realloc(p, n ? n : 1);
    if (!p) ir_die(__FILE__, __LINE__, "out of memory");
    return p;
}

char *ir_strdup(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    return memcpy(ir_xmalloc(n), s, n);
}

void ir_init(IrGraph *g) {
    memset(g, 0, sizeof *g);
    g->input = g->labels = g->logits = g->loss = -1;
    g->train = (IrTrain){0.1, 128, 10, 28};
}

void ir_free(IrGraph *g) {
    for (int i = 0; i < g->nnodes; i++) free(g->nodes[i].name);
    for (int i = 0; i < g->nvalues; i++) free(g->values[i].name);
    free(g->nodes);
    free(g->values);
    memset(g, 0, sizeof *g);
}

void ir_clone(IrGraph *dst, const IrGraph *src) {
    *dst = *src;
    dst->node_cap = src->nnodes;
    dst->value_cap = src->nvalues;
    dst->nodes = ir_xmalloc(sizeof(IrNode) * (size_t)(src->nnodes ? src->nnodes : 1));
    dst->values = ir_xmalloc(sizeof(IrValue) * (size_t)(src->nvalues ? src->nvalues : 1));
    memcpy(dst->nodes, src->nodes, sizeof(IrNode) * (size_t)src->nnodes);
    memcpy(dst->values, src->values, sizeof(IrValue) * (size_t)src->nvalues);
    for (int i = 0; i < dst->nnodes; i++) dst->nodes[i].name = ir_strdup(src->nodes[i].name);
    for (int i = 0; i < dst->nvalues; i++) dst->values[i].name = ir_strdup(src->values[i].name);
}

static int value_new(IrGraph *g, int node, int index) {
    if (g->nvalues == g->value_cap) {
        g->value_cap = g->value_cap ? 2 * g->value_cap : 64;
        g->values = ir_xrealloc(g->values, sizeof(IrValue) * (size_t)g->value_cap);
    }
    IrValue *v = &g->values[g->nvalues];
    memset(v, 0, sizeof *v);
    v->node = node;
    v->index = index;
    return g->nvalues++;
}

int ir_node_new(IrGraph *g, IrOp op, const int *in, int nin, int nout, const char *name, IrLoc loc) {
    IR_ASSERT(nin >= 0 && nin <= IR_MAX_IN && nout >= 0 && nout <= IR_MAX_OUT);
    if (g->nnodes == g->node_cap) {
        g->node_cap = g->node_cap ? 2 * g->node_cap : 64;
        g->nodes = ir_xrealloc(g->nodes, sizeof(IrNode) * (size_t)g->node_cap);
    }
    int id = g->nnodes++;
    IrNode *n = &g->nodes[id];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->nin = nin;
    n->nout = nout;
    for (int i = 0; i < nin; i++) {
        IR_ASSERT(in[i] >= 0 && in[i] < g->nvalues);
        n->in[i] = in[i];
    }
    n->name = ir_strdup(name);
    n->loc = loc;
    for (int k = 0; k < nout; k++) {
        int v = value_new(g, id, k);
        g->nodes[id].out[k] = v;
    }
    return id;
}

int ir_out(const IrGraph *g, int node, int k) {
    IR_ASSERT(node >= 0 && node < g->nnodes && k >= 0 && k < g->nodes[node].nout);
    return g->nodes[node].out[k];
}

int ir_param_new(IrGraph *g, const char *layer, const char *suffix, IrParamRole role, IrLoc loc) {
    size_t n = (layer ? strlen(layer) : 0) + strlen(suffix) + 2;
    char *name = ir_xmalloc(n);
    if (layer && *layer)
        snprintf(name, n, "%s.%s", layer, suffix);
    else
        snprintf(name, n, "%s", suffix);
    int id = ir_node_new(g, IR_OP_PARAM, NULL, 0, 1, name, loc);
    g->nodes[id].attr.param.role = (int)role;
    int v = g->nodes[id].out[0];
    g->values[v].name = name;
    return v;
}

void ir_set_name(IrGraph *g, int value, const char *name) {
    free(g->values[value].name);
    g->values[value].name = ir_strdup(name);
}

IrType ir_type_make(IrDType dt, int batched, int rank, const int64_t *d) {
    IrType t;
    memset(&t, 0, sizeof t);
    IR_ASSERT(rank >= 0 && rank <= IR_MAX_RANK);
    t.dtype = (uint8_t)dt;
    t.batched = (uint8_t)batched;
    t.rank = (uint8_t)rank;
    for (int i = 0; i < rank; i++) t.d[i] = d[i];
    return t;
}

int ir_numel_checked(const IrType *t, int64_t batch, int64_t *n) {
    *n = 1;
    for (int i = 0; i < t->rank; i++) {
        int64_t d = (i == 0 && t->batched) ? batch : t->d[i];
        if (d < 0 || __builtin_mul_overflow(*n, d, n)) return -1;
    }
    return 0;
}

int64_t ir_numel(const IrType *t, int64_t batch) {
    int64_t n;
    IR_ASSERT(ir_numel_checked(t, batch, &n) == 0);
    return n;
}

int ir_type_eq(const IrType *a, const IrType *b) {
    if (a->dtype != b->dtype || a->rank != b->rank || a->batched != b->batched) return 0;
    for (int i = 0; i < a->rank; i++)
        if (!(i == 0 && a->batched) && a->d[i] != b->d[i]) return 0;
    return 1;
}

int ir_type_str(const IrType *t, char *buf, int n) {
    int k = 0;
    buf[0] = 0;
    if (t->rank == 0) return snprintf(buf, (size_t)n, "?");
    for (int i = 0; i < t->rank && k < n; i++) {
        const char *sep = i ? "x" : "";
        if (i == 0 && t->batched)
            k += snprintf(buf + k, (size_t)(n - k), "N");
        else
            k += snprintf(buf + k, (size_t)(n - k), "%s%lld", sep, (long long)t->d[i]);
    }
    if (t->dtype == IR_I32 && k < n) k += snprintf(buf + k, (size_t)(n - k), " i32");
    return k;
}
