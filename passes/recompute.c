/* recompute.c - `--recompute bn-relu`: the output of a training batch norm
 * + ReLU is not kept for the backward pass.
 *
 * The backward pass reads that output twice per layer (the conv's weight
 * gradient, and the relu's gradient); kept, it is alive from the forward
 * pass to the backward one, and in DenseNet it is the largest thing alive
 * (Pleiss et al., "Memory-Efficient Implementation of DenseNets", 2017).
 * Here it is made again from the batch norm's input and saved statistics
 * (a batch norm in IR_BN_APPLY mode: the same bits):
 *   - the relu's gradient reads the sign of a batch norm of its own, which
 *     the fusion pass puts in the kernel of the batch norm's gradient (that
 *     kernel reads x anyway), so it costs no memory;
 *   - the other backward readers (the conv's weight gradient, the stem's
 *     max pool gradient) get a batch norm + relu before the first of them,
 *     which the fusion pass makes one kernel.  Where that is a conv's weight
 *     gradient, it runs before the conv's data gradient, so the recomputed
 *     tensor and the data gradient are never alive together.
 * The forward output then dies at its last forward reader (a conv, or
 * the stem's max pool).  Runs between autodiff and the schedule; the new
 * nodes are placed in the node table where they run. */
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

/* A batch norm in apply mode of bn's input and saved statistics, moved to
 * node position `to`; its output (of type tt). */
static int bn_apply_at(IrGraph *g, int b, const IrType *tt, int to) {
    const IrNode *bn = ir_node(g, b);
    int in[5] = {bn->in[0], bn->in[1], bn->in[2], bn->out[1], bn->out[2]};
    IrNode bcopy = *bn;
    int a = ir_node_new(g, IR_OP_BATCHNORM, in, 5, 1, bcopy.name, bcopy.loc);
    ir_node(g, a)->attr.bn = bcopy.attr.bn;
    ir_node(g, a)->attr.bn.mode = IR_BN_APPLY;
    int t = ir_out(g, a, 0);
    *ir_type(g, t) = *tt;
    move_node(g, a, to);
    return t;
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
        int r = ir_node(g, relu)->out[0];
        IrType tt = *ir_type(g, t), tr = *ir_type(g, r);
        /* The relu's gradient needs only the sign of its input: it gets a
         * batch norm of its own just before it, which the fusion pass puts
         * in the batch norm gradient's kernel (computed from the x that
         * kernel reads anyway), so the relu's output is not read there. */
        for (int i = 0; i < g->nnodes; i++) {
            const IrNode *n = ir_node(g, i);
            if (n->op != IR_OP_RELU_BWD || n->in[1] != r) continue;
            int t3 = bn_apply_at(g, b, &tt, i);
            ir_node(g, ++i)->in[1] = t3;
        }
        int first = -1;
        for (int i = 0; i < g->nnodes && first < 0; i++)
            if (ir_reads(ir_node(g, i), r) && is_bwd(ir_node(g, i))) first = i;
        if (first < 0) continue;
        /* The other backward readers (a conv's weight gradient, a max pool's
         * gradient): t2 = batchnorm_apply(x, gamma, beta, mean, invstd);
         * r2 = relu(t2), before the first of them.  When that is a conv's
         * weight gradient, it and the recompute go before the conv's data
         * gradient: r2 then dies before the data gradient is made. */
        int at = first, w = -1;
        const IrNode *fn = ir_node(g, first);
        if (fn->op == IR_OP_CONV2D_BWD_WEIGHT && fn->in[1] == r)
            for (int i = 0; i < first; i++) {
                const IrNode *dn = ir_node(g, i);
                if (dn->op == IR_OP_CONV2D_BWD_DATA && dn->in[0] == fn->in[0]) {
                    at = i, w = first;
                    break;
                }
            }
        char *rname = ir_strdup(ir_node(g, relu)->name ? ir_node(g, relu)->name : "");
        IrLoc rloc = ir_node(g, relu)->loc;
        int t2 = bn_apply_at(g, b, &tt, at);
        int q = ir_node_new(g, IR_OP_RELU, &t2, 1, 1, rname, rloc);
        free(rname);
        int r2 = ir_out(g, q, 0);
        *ir_type(g, r2) = tr;
        move_node(g, q, at + 1);
        for (int i = 0; i < g->nnodes; i++) {
            IrNode *n = ir_node(g, i);
            if (i == at || i == at + 1 || !is_bwd(n)) continue;
            for (int j = 0; j < n->nin; j++)
                if (n->in[j] == r) n->in[j] = r2;
        }
        if (w >= 0) move_node(g, w + 2, at + 2);
    }
    return 0;
}
