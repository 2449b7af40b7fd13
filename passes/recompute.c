/* recompute.c - `--recompute bn-relu`: the output of a training batch norm
 * + ReLU is not kept for the backward pass.
 *
 * The backward pass reads that output twice per layer (the conv's weight
 * gradient, and the relu's gradient); kept, it is alive from the forward
 * pass to the backward one, and in DenseNet it is the largest thing alive
 * (Pleiss et al., "Memory-Efficient Implementation of DenseNets", 2017).
 * Here the backward readers get a copy made again just before the first of
 * them: a batch norm in IR_BN_APPLY mode (the saved mean and inverse std,
 * so the same bits) and a relu, which the fusion pass makes one kernel.
 * The forward output then dies at its last forward reader (a conv, or
 * the stem's max pool).  Runs between autodiff and the
 * schedule; the new nodes are placed in the node table where they run. */
#include "program.h"

#include <stdlib.h>
#include <string.h>

static int is_bwd(const IrNode *n) { return (ir_info(n->op)->flags & IR_F_BWD) != 0; }

/* Moves node `from` (the last ones appended) to position `to`, shifting the
 * nodes from `to` on; values' producer ids follow. */
static void move_node(IrGraph *g, int from, int to) {
    IrNode moved = g->nodes[from];
    memmove(&g->nodes[to + 1], &g->nodes[to], sizeof(IrNode) * (size_t)(from - to));
    g->nodes[to] = moved;
    for (int v = 0; v < g->nvalues; v++) {
        int *nd = &g->values[v].node;
        if (*nd == from) *nd = to;
        else if (*nd >= to && *nd < from) (*nd)++;
    }
}

int pass_recompute(IrGraph *g, const PlanOptions *o) {
    if (!o || !o->recompute_bn_relu || g->mode != IR_TRAIN) return 0;
    for (int b = 0; b < g->nnodes; b++) {
        const IrNode *bn = ir_node(g, b);
        if (bn->op != IR_OP_BATCHNORM || bn->attr.bn.mode != IR_TRAIN || bn->nout < 3) continue;
        int t = bn->out[0], relu = -1, nt = 0;
        for (int i = 0; i < g->nnodes; i++)
            if (ir_reads(ir_node(g, i), t)) nt++, relu = i;
        if (nt != 1 || ir_node(g, relu)->op != IR_OP_RELU) continue;
        int r = ir_node(g, relu)->out[0], first = -1;
        for (int i = 0; i < g->nnodes && first < 0; i++)
            if (ir_reads(ir_node(g, i), r) && is_bwd(ir_node(g, i))) first = i;
        if (first < 0) continue;
        /* t2 = batchnorm_apply(x, gamma, beta, mean, invstd); r2 = relu(t2) */
        int in[5] = {bn->in[0], bn->in[1], bn->in[2], bn->out[1], bn->out[2]};
        IrNode bcopy = *bn;
        IrType tt = *ir_type(g, t), tr = *ir_type(g, r);
        char *rname = ir_strdup(ir_node(g, relu)->name ? ir_node(g, relu)->name : "");
        IrLoc rloc = ir_node(g, relu)->loc;
        int a = ir_node_new(g, IR_OP_BATCHNORM, in, 5, 1, bcopy.name, bcopy.loc);
        ir_node(g, a)->attr.bn = bcopy.attr.bn;
        ir_node(g, a)->attr.bn.mode = IR_BN_APPLY;
        int t2 = ir_out(g, a, 0);
        *ir_type(g, t2) = tt;
        int q = ir_node_new(g, IR_OP_RELU, &t2, 1, 1, rname, rloc);
        free(rname);
        int r2 = ir_out(g, q, 0);
        *ir_type(g, r2) = tr;
        for (int i = 0; i < g->nnodes; i++) {
            IrNode *n = ir_node(g, i);
            if (i == a || i == q || !is_bwd(n)) continue;
            for (int j = 0; j < n->nin; j++)
                if (n->in[j] == r) n->in[j] = r2;
        }
        move_node(g, a, first);
        move_node(g, q, first + 1);
    }
    return 0;
}
