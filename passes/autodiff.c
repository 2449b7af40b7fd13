/* autodiff.c - reverse-mode differentiation over the IR.
 *
 * Input: a forward graph in train mode with a loss (softmax_xent).  Output:
 * the same graph followed by the backward graph and one SGD node per
 * trainable parameter, so a whole training step is one graph.  Gradients of
 * values used several times (a residual shortcut, Inception's four branches,
 * DenseNet's concatenations) are summed by one ACCUM node. */
#include "passes.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    int *v;
    int n, cap;
} List;

typedef struct {
    IrGraph *g;
    List *contrib;   /* per forward value: gradient contributions */
    char *needs;     /* per forward value: depends on a trainable parameter */
    int nfwd_values;
} Ad;

static void push(List *l, int v) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 4;
        l->v = ir_xrealloc(l->v, sizeof(int) * (size_t)l->cap);
    }
    l->v[l->n++] = v;
}

static int trainable(const IrGraph *g, int v) {
    const IrNode *n = ir_node(g, ir_value(g, v)->node);
    if (n->op != IR_OP_PARAM) return 0;
    int r = n->attr.param.role;
    return r != IR_PARAM_RUNNING_MEAN && r != IR_PARAM_RUNNING_VAR;
}

/* Appends backward node op(in...) with nout outputs typed as types[]. */
static int emit(Ad *a, IrOp op, const int *in, int nin, int nout, const IrType *types, const IrNode *fwd) {
    IrGraph *g = a->g;
    char *name = ir_strdup(fwd->name);   /* fwd may move when nodes grow */
    IrLoc loc = fwd->loc;
    int id = ir_node_new(g, op, in, nin, nout, name, loc);
    free(name);
    for (int k = 0; k < nout; k++) ir_type(g, ir_out(g, id, k))[0] = types[k];
    return id;
}

static void give(Ad *a, int fwd_value, int grad) {
    if (a->needs[fwd_value]) push(&a->contrib[fwd_value], grad);
}

/* The gradient of forward value v: its single contribution, or their sum. */
static int grad_of(Ad *a, int v, const IrNode *at) {
    List *l = &a->contrib[v];
    if (l->n == 0) return -1;
    if (l->n == 1) return l->v[0];
    IrType t = *ir_type(a->g, v);
    int id = emit(a, IR_OP_ACCUM, l->v, l->n, 1, &t, at);
    l->v[0] = ir_out(a->g, id, 0);
    l->n = 1;
    return l->v[0];
}

static void rule(Ad *a, int node) {
    IrGraph *g = a->g;
    IrNode n = *ir_node(g, node);   /* copy: the node table may grow */
    int y = n.nout ? n.out[0] : -1;
    int x = n.nin ? n.in[0] : -1;
    IrType tx = x >= 0 ? *ir_type(g, x) : (IrType){0};
    int dy = -1;
    if (n.op != IR_OP_SOFTMAX_XENT) {
        if (y < 0 || !a->needs[y]) return;
        dy = grad_of(a, y, &n);
        if (dy < 0) return;
    }
    int id, in[IR_MAX_IN];
    switch (n.op) {
    case IR_OP_SOFTMAX_XENT:
        if (y != g->loss || !a->needs[x]) return;
        in[0] = x, in[1] = n.in[1];
        id = emit(a, IR_OP_SOFTMAX_XENT_BWD, in, 2, 1, &tx, &n);
        give(a, x, ir_out(g, id, 0));
        break;
    case IR_OP_CONV2D: case IR_OP_LINEAR: {
        int conv = n.op == IR_OP_CONV2D, bias = conv ? n.attr.conv.bias : n.attr.linear.bias;
        if (a->needs[x]) {
            in[0] = dy, in[1] = n.in[1];
            id = emit(a, conv ? IR_OP_CONV2D_BWD_DATA : IR_OP_LINEAR_BWD_DATA, in, 2, 1, &tx, &n);
            ir_node(g, id)->attr = n.attr;
            give(a, x, ir_out(g, id, 0));
        }
        if (a->needs[n.in[1]] || (bias && a->needs[n.in[2]])) {
            IrType t[2] = {*ir_type(g, n.in[1]), bias ? *ir_type(g, n.in[2]) : (IrType){0}};
            in[0] = dy, in[1] = x;
            id = emit(a, conv ? IR_OP_CONV2D_BWD_WEIGHT : IR_OP_LINEAR_BWD_WEIGHT, in, 2, 1 + bias, t, &n);
            ir_node(g, id)->attr = n.attr;
            give(a, n.in[1], ir_out(g, id, 0));
            if (bias) give(a, n.in[2], ir_out(g, id, 1));
        }
        break;
    }
    case IR_OP_RELU: case IR_OP_SIGMOID:
        in[0] = dy, in[1] = y;
        id = emit(a, n.op == IR_OP_RELU ? IR_OP_RELU_BWD : IR_OP_SIGMOID_BWD, in, 2, 1, &tx, &n);
        give(a, x, ir_out(g, id, 0));
        break;
    case IR_OP_MAXPOOL: case IR_OP_GMAXPOOL:
        in[0] = dy, in[1] = x;
        id = emit(a, n.op == IR_OP_MAXPOOL ? IR_OP_MAXPOOL_BWD : IR_OP_GMAXPOOL_BWD, in, 2, 1, &tx, &n);
        ir_node(g, id)->attr = n.attr;
        give(a, x, ir_out(g, id, 0));
        break;
    case IR_OP_AVGPOOL: case IR_OP_GAVGPOOL:
        in[0] = dy;
        id = emit(a, n.op == IR_OP_AVGPOOL ? IR_OP_AVGPOOL_BWD : IR_OP_GAVGPOOL_BWD, in, 1, 1, &tx, &n);
        ir_node(g, id)->attr = n.attr;
        give(a, x, ir_out(g, id, 0));
        break;
    case IR_OP_FLATTEN:
        in[0] = dy;
        id = emit(a, IR_OP_RESHAPE, in, 1, 1, &tx, &n);
        give(a, x, ir_out(g, id, 0));
        break;
    case IR_OP_DROPOUT:
        IR_ASSERT(n.nout == 2);
        in[0] = dy, in[1] = n.out[1];
        id = emit(a, IR_OP_DROPOUT_BWD, in, 2, 1, &tx, &n);
        give(a, x, ir_out(g, id, 0));
        break;
    case IR_OP_BATCHNORM: {
        IR_ASSERT(n.nout == 3);
        IrType t[3] = {tx, *ir_type(g, n.in[1]), *ir_type(g, n.in[2])};
        in[0] = dy, in[1] = x, in[2] = n.in[1], in[3] = n.out[1], in[4] = n.out[2];
        id = emit(a, IR_OP_BATCHNORM_BWD, in, 5, 3, t, &n);
        ir_node(g, id)->attr = n.attr;
        give(a, x, ir_out(g, id, 0));
        give(a, n.in[1], ir_out(g, id, 1));
        give(a, n.in[2], ir_out(g, id, 2));
        break;
    }
    case IR_OP_CONCAT: {
        int c0 = 0;
        for (int k = 0; k < n.nin; k++) {
            IrType tk = *ir_type(g, n.in[k]);
            if (a->needs[n.in[k]]) {
                in[0] = dy;
                id = emit(a, IR_OP_SLICE, in, 1, 1, &tk, &n);
                ir_node(g, id)->attr.slice = (IrSliceAttr){c0, (int)tk.d[1]};
                give(a, n.in[k], ir_out(g, id, 0));
            }
            c0 += (int)tk.d[1];
        }
        break;
    }
    case IR_OP_ADD:
        give(a, n.in[0], dy);
        give(a, n.in[1], dy);
        break;
    default:
        IR_ASSERT(!"autodiff: op without a grad rule");
    }
}

int pass_autodiff(IrGraph *g, int **grad_out) {
    IR_ASSERT(g->mode == IR_TRAIN && g->loss >= 0);
    Ad a = {g, NULL, NULL, g->nvalues};
    a.contrib = ir_xcalloc((size_t)g->nvalues, sizeof(List));
    a.needs = ir_xcalloc((size_t)g->nvalues, 1);
    int nfwd = g->nnodes;
    for (int i = 0; i < nfwd; i++) {
        const IrNode *n = ir_node(g, i);
        int need = 0;
        for (int k = 0; k < n->nin; k++) need |= a.needs[n->in[k]];
        if (n->op == IR_OP_PARAM) need = trainable(g, n->out[0]);
        for (int k = 0; k < n->nout; k++) a.needs[n->out[k]] = (char)need;
    }
    for (int i = nfwd - 1; i >= 0; i--) {
        IrOp op = ir_node(g, i)->op;
        if (op == IR_OP_PARAM || op == IR_OP_INPUT || op == IR_OP_LABELS) continue;
        rule(&a, i);
    }
    int *gof = ir_xmalloc(sizeof(int) * (size_t)g->nvalues);
    for (int v = 0; v < g->nvalues; v++) gof[v] = -1;
    /* parameter gradients, named <param>.grad, then one SGD per parameter */
    for (int i = 0; i < nfwd; i++) {
        IrNode n = *ir_node(g, i);
        if (n.op != IR_OP_PARAM || !trainable(g, n.out[0])) continue;
        int dv = grad_of(&a, n.out[0], &n);
        if (dv < 0) continue;
        gof[n.out[0]] = dv;
        char buf[512];
        snprintf(buf, sizeof buf, "%s.grad", ir_value(g, n.out[0])->name);
        ir_set_name(g, dv, buf);
    }
    for (int i = 0; i < nfwd; i++) {
        IrNode n = *ir_node(g, i);
        if (n.op != IR_OP_PARAM || gof[n.out[0]] < 0) continue;
        int in[2] = {n.out[0], gof[n.out[0]]};
        emit(&a, IR_OP_SGD, in, 2, 0, NULL, &n);
    }
    for (int v = 0; v < a.nfwd_values; v++) {
        if (gof[v] < 0 && a.contrib[v].n) gof[v] = a.contrib[v].v[0];
        free(a.contrib[v].v);
    }
    gof = ir_xrealloc(gof, sizeof(int) * (size_t)g->nvalues);
    for (int v = a.nfwd_values; v < g->nvalues; v++) gof[v] = -1;
    free(a.contrib);
    free(a.needs);
    if (grad_out) *grad_out = gof;
    else free(gof);
    return 0;
}
