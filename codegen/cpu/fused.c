/* fused.c - the cpu backend's body for each kind of fused kernel.
 *
 *   conv_relu                        the conv or linear layer applying the
 *                                    relu as it stores its output (every
 *                                    method: the GEMM's last k block, the
 *                                    Winograd output transform, ...)
 *   conv_bn_relu, conv_bn_add_relu   the conv, then one batch norm kernel
 *                                    that normalises, adds the residual and
 *                                    applies the relu as it goes: only the
 *                                    relu's output is stored
 *   bn_act, bn_relu_conv             the same for a batch norm not after a
 *                                    conv (then the conv reading it)
 *   relu_bn_bwd                      [the conv's data gradient, then] the
 *                                    batch norm gradient computing accum
 *                                    and relu_bwd wherever it reads its
 *                                    incoming gradient (the relu's sign,
 *                                    with --recompute, from the x it reads)
 *   bn_relu_pool_bwd                 the max pool gradient making its
 *                                    input (a recomputed batch norm +
 *                                    relu) plane by plane as it reads it
 *   pool_relu_bwd                    the max pool gradient adding dy only
 *                                    where its input, the relu's output,
 *                                    is positive: the relu's gradient
 *   bn_fold                          (eval) the conv or linear layer with
 *                                    the batch norm folded into its weights
 *                                    and bias, computed at the start of the
 *                                    kernel from the current weights and
 *                                    running statistics, with the relu as
 *                                    its epilogue, or then one loop through
 *                                    the activation (and add)
 *   elementwise                      one loop through the whole chain
 *
 * Every other pattern (and any group these cannot take: too many buffers,
 * a dropout where vectors are needed) runs its nodes one after the other,
 * the values the plan left without memory (BUF_INNER) in a module global.
 * Except for bn_fold, the arithmetic is the unfused kernels', in the same
 * order, so fused and unfused training steps give the same bits; what
 * fusion saves is the memory traffic of the tensors only the group reads. */
#include "cg.h"

#include <stdlib.h>

static const IrNode *knode(const Cg *cg, const Kernel *k, int i) { return ir_node(&cg->p->g, k->nodes[i]); }

static int emit_nodes(Cg *cg, const Kernel *k, int from, int to, Diag *d) {
    for (int i = from; i < to; i++)
        if (cg_emit_node(cg, k->nodes[i], d)) return -1;
    return 0;
}

/* The batch norm at position at with the chain of nodes (at, to) applied to
 * its output; -1 (nothing emitted) when they cannot be fused. */
static int bn_chain(Cg *cg, const Kernel *k, int at, int to) {
    const IrNode *bn = knode(cg, k, at);
    Chain c;
    if (bn->op != IR_OP_BATCHNORM || to <= at + 1 || cg_chain_make(cg, k, at + 1, to, bn->out[0], &c)) return -1;
    cg_emit_batchnorm(cg, bn, &c);
    return 0;
}

/* Node at (a conv or linear layer, or with bn >= 0 the fold of it and the
 * batch norm at bn) with the relu at position at + 1 (+ 1) as its epilogue,
 * writing the relu's output directly; -1 (nothing emitted) when what it
 * skips has memory in the plan (something else reads it). */
static int relu_epilogue(Cg *cg, const Kernel *k, int at, int bn, Diag *d) {
    int last = bn >= 0 ? bn : at;
    const IrNode *r = knode(cg, k, last + 1);
    int v = knode(cg, k, last)->out[0];
    if (r->op != IR_OP_RELU || r->in[0] != v || !cg_inner(cg, v) || (bn >= 0 && !cg_inner(cg, knode(cg, k, at)->out[0])))
        return -1;
    cg->relu = 1;
    cg->y_value = r->out[0];
    int rc = 0;
    if (bn >= 0) cg_emit_folded(cg, knode(cg, k, at), knode(cg, k, bn));
    else rc = cg_emit_node(cg, k->nodes[at], d);
    cg->relu = 0;
    cg->y_value = -1;
    return rc ? -2 : 0;
}

/* The training batch norm whose relu output the one relu gradient among
 * nodes [from, to) reads, when it normalised the x of bn (a batch norm
 * gradient) with the statistics bn reads; *head is then that relu output.
 * NULL otherwise. */
static const IrNode *train_bn_of_relu(const Cg *cg, const Kernel *k, int from, int to, const IrNode *bn, int *head) {
    const IrGraph *g = &cg->p->g;
    const IrNode *rb = NULL;
    for (int i = from; i < to; i++)
        if (knode(cg, k, i)->op == IR_OP_RELU_BWD) {
            if (rb) return NULL;
            rb = knode(cg, k, i);
        }
    if (!rb || ir_value(g, rb->in[1])->node < 0) return NULL;
    const IrNode *r = ir_node(g, ir_value(g, rb->in[1])->node);
    if (r->op != IR_OP_RELU || ir_value(g, r->in[0])->node < 0) return NULL;
    const IrNode *f = ir_node(g, ir_value(g, r->in[0])->node);
    if (f->op != IR_OP_BATCHNORM || f->attr.bn.mode != IR_TRAIN || f->in[0] != bn->in[1] || f->in[1] != bn->in[2] ||
        f->nout < 3 || f->out[1] != bn->in[3] || f->out[2] != bn->in[4])
        return NULL;
    *head = rb->in[1];
    return f;
}

int cg_emit_kernel(Cg *cg, const Kernel *k, Diag *d) {
    int n = k->nnodes;
    Chain c;
    /* NETC_CPU_NODE_BY_NODE=1: every group node by node (its inner values
     * in memory of their own), for tests of that path */
    const char *nbn = getenv("NETC_CPU_NODE_BY_NODE");
    switch (nbn && *nbn == '1' ? FUSE_NONE : k->pattern) {
    case FUSE_CONV_BN_RELU: case FUSE_CONV_BN_ADD_RELU:
        if (cg_emit_node(cg, k->nodes[0], d)) return -1;
        return bn_chain(cg, k, 1, n) ? emit_nodes(cg, k, 1, n, d) : 0;
    case FUSE_BN_ACT:
        if (!bn_chain(cg, k, 0, n)) return 0;
        break;
    case FUSE_BN_RELU_CONV:
        if (!bn_chain(cg, k, 0, n - 1)) return cg_emit_node(cg, k->nodes[n - 1], d);
        break;
    case FUSE_RELU_BN_BWD: {
        /* [the relu's sign: a batch norm of the x the gradient reads,]
         * [the conv's data gradient,] the chain, the batch norm gradient */
        const IrNode *sign = knode(cg, k, 0)->op == IR_OP_BATCHNORM ? knode(cg, k, 0) : NULL;
        int s = sign != NULL, from = s + (knode(cg, k, s)->op == IR_OP_CONV2D_BWD_DATA);
        const IrNode *acc = knode(cg, k, n - 1)->op == IR_OP_ACCUM ? knode(cg, k, n - 1) : NULL;
        int nb = n - (acc != NULL);   /* the batch norm's position + 1 */
        const IrNode *bn = knode(cg, k, nb - 1);
        if (bn->op != IR_OP_BATCHNORM_BWD) break;
        /* without recompute: a relu gradient of relu(the training batch
         * norm of this x) takes its sign from x too, as the recomputed one
         * does (y > 0 exactly where relu(y) > 0), not from the stored relu
         * output: a stream less to read in both passes */
        int head = sign ? sign->out[0] : -1;
        const IrNode *fwd = sign ? NULL : train_bn_of_relu(cg, k, from, nb - 1, bn, &head);
        if (cg_chain_make(cg, k, from, nb - 1, head, &c) ||
            !cg_chain_vec_ok(&c) || c.node[c.nops - 1]->out[0] != bn->in[0] ||
            (acc && (acc->nin != 2 || acc->in[1] != bn->out[0])))
            break;
        if (sign && (c.head_out || sign->in[0] != bn->in[1] || sign->in[1] != bn->in[2] || sign->in[3] != bn->in[3] ||
                     sign->in[4] != bn->in[4]))
            break;
        if (fwd) sign = fwd;   /* its beta is what the gradient's sign reads of it */
        if (from > s && cg_emit_node(cg, k->nodes[s], d)) return -1;
        cg_emit_batchnorm_bwd(cg, bn, &c, acc, sign);
        return 0;
    }
    case FUSE_BN_RELU_POOL_BWD:
        if (n == 3 && cg_inner(cg, knode(cg, k, 0)->out[0]) && cg_inner(cg, knode(cg, k, 1)->out[0]) &&
            !cg_emit_pool_bn(cg, knode(cg, k, 2), knode(cg, k, 0)))
            return 0;
        break;
    case FUSE_POOL_RELU_BWD:
        if (n == 2 && !cg_emit_pool_relu(cg, knode(cg, k, 0), knode(cg, k, 1))) return 0;
        break;
    case FUSE_CONV_RELU: {
        int rc = n == 2 ? relu_epilogue(cg, k, 0, -1, d) : -1;
        if (rc != -1) return rc ? -1 : 0;
        break;
    }
    case FUSE_BN_FOLD: {
        const IrNode *bn = n >= 2 ? knode(cg, k, 1) : NULL;
        if (!bn || bn->op != IR_OP_BATCHNORM || bn->in[0] != knode(cg, k, 0)->out[0] || !cg_inner(cg, bn->in[0]))
            break;
        if (n == 3 && !relu_epilogue(cg, k, 0, 1, d)) return 0;
        if (n > 2 && cg_chain_make(cg, k, 2, n, -1, &c)) break;
        cg_emit_folded(cg, knode(cg, k, 0), bn);
        if (n > 2) cg_emit_chain(cg, &c, cg_numel(cg, knode(cg, k, n - 1)->out[0]));
        return 0;
    }
    case FUSE_ELEMENTWISE:
        if (cg_chain_make(cg, k, 0, n, -1, &c)) break;
        cg_emit_chain(cg, &c, cg_numel(cg, knode(cg, k, n - 1)->out[0]));
        return 0;
    default:
        break;
    }
    return emit_nodes(cg, k, 0, n, d);
}
