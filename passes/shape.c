/* shape.c - shape inference.
 *
 * Walks the nodes in order (builders append in topological order) and sets
 * the type of every output; parameters get their shapes from the layer that
 * consumes them.  Every mismatch is a user error at the node's source
 * location.  Backward nodes are typed by autodiff when built; here they are
 * left as they are. */
#include "passes.h"

#include <string.h>

static IrType t4(int64_t c, int64_t h, int64_t w) {
    int64_t d[4] = {0, c, h, w};
    return ir_type_make(IR_F32, 1, 4, d);
}

static IrType t2(int64_t f) {
    int64_t d[2] = {0, f};
    return ir_type_make(IR_F32, 1, 2, d);
}

static IrType tvec(int rank, int64_t a, int64_t b, int64_t c, int64_t e) {
    int64_t d[4] = {a, b, c, e};
    return ir_type_make(IR_F32, 0, rank, d);
}

static const char *tstr(const IrType *t, char *buf) {
    ir_type_str(t, buf, 64);
    return buf;
}

/* Sets param value v's type, fans and checks it was not typed differently. */
static int set_param(IrGraph *g, int v, IrType t, int fan_in, int fan_out, Diag *d, IrLoc loc) {
    IrValue *val = ir_value(g, v);
    IrNode *p = ir_node(g, val->node);
    if (p->op != IR_OP_PARAM) return 0;
    if (val->type.rank && !ir_type_eq(&val->type, &t)) {
        char a[64], b[64];
        return diag_error(d, loc, NULL, "parameter %s used with shapes %s and %s",
                          val->name ? val->name : "?", tstr(&val->type, a), tstr(&t, b));
    }
    val->type = t;
    p->attr.param.fan_in = fan_in;
    p->attr.param.fan_out = fan_out;
    return 0;
}

static int need_rank(IrGraph *g, IrNode *n, int k, int rank, Diag *d, const char *what, const char *hint) {
    IrType *t = ir_type(g, n->in[k]);
    if (t->rank == rank) return 0;
    char a[64];
    return diag_error(d, n->loc, hint, "%s expects %s input; got %s", ir_info(n->op)->name, what,
                      tstr(t, a));
}

/* Output size of a window of k with stride s and padding p over n, or an
 * error when the window does not fit. */
static int window(IrGraph *g, IrNode *n, int64_t h, int64_t w, int kh, int kw, int sh, int sw,
                  int ph, int pw, int64_t *oh, int64_t *ow, Diag *d) {
    (void)g;
    if (kh <= 0 || kw <= 0 || sh <= 0 || sw <= 0 || ph < 0 || pw < 0)
        return diag_error(d, n->loc, NULL, "%s: kernel and stride must be positive, padding non-negative",
                          ir_info(n->op)->name);
    if (h + 2 * ph < kh || w + 2 * pw < kw)
        return diag_error(d, n->loc, "reduce the kernel or the number of downsampling layers before it",
                          "%s window %dx%d is larger than its input %lldx%lld (padding %d)",
                          ir_info(n->op)->name, kh, kw, (long long)h, (long long)w, ph);
    if ((n->op == IR_OP_MAXPOOL || n->op == IR_OP_AVGPOOL) && (2 * ph > kh || 2 * pw > kw))
        return diag_error(d, n->loc, NULL, "%s padding %d must be at most half the window %d",
                          ir_info(n->op)->name, ph, kh);
    *oh = (h + 2 * ph - kh) / sh + 1;
    *ow = (w + 2 * pw - kw) / sw + 1;
    return 0;
}

static int infer_node(IrGraph *g, int id, Diag *d) {
    IrNode *n = ir_node(g, id);
    char a[64], b[64];
    IrType *x = n->nin ? ir_type(g, n->in[0]) : NULL;
    IrType out = {0};
    switch (n->op) {
    case IR_OP_INPUT: {
        int c = n->attr.input.c, h = n->attr.input.h, w = n->attr.input.w;
        if (c <= 0 || h <= 0 || w <= 0)
            return diag_error(d, n->loc, NULL, "input size must be positive, got %dx%dx%d", c, h, w);
        out = t4(c, h, w);
        break;
    }
    case IR_OP_LABELS: {
        int64_t dd[1] = {0};
        out = ir_type_make(IR_I32, 1, 1, dd);
        break;
    }
    case IR_OP_PARAM:
        return 0; /* typed by its consumer */
    case IR_OP_CONV2D: {
        const IrConvAttr *c = &n->attr.conv;
        if (need_rank(g, n, 0, 4, d, "an image-shaped [N, C, H, W]", NULL)) return -1;
        if (c->out_c <= 0) return diag_error(d, n->loc, NULL, "conv: output channels must be positive, got %d", c->out_c);
        if (c->in_c && c->in_c != x->d[1])
            return diag_error(d, n->loc, NULL, "conv expects %d input channels; its input %s has %lld",
                              c->in_c, tstr(x, a), (long long)x->d[1]);
        int64_t oh, ow;
        if (window(g, n, x->d[2], x->d[3], c->kh, c->kw, c->sh, c->sw, c->ph, c->pw, &oh, &ow, d)) return -1;
        int64_t cin = x->d[1];
        int fan_in = (int)(cin * c->kh * c->kw), fan_out = c->out_c * c->kh * c->kw;
        if (set_param(g, n->in[1], tvec(4, c->out_c, cin, c->kh, c->kw), fan_in, fan_out, d, n->loc)) return -1;
        if (c->bias && set_param(g, n->in[2], tvec(1, c->out_c, 0, 0, 0), fan_in, fan_out, d, n->loc)) return -1;
        out = t4(c->out_c, oh, ow);
        break;
    }
    case IR_OP_LINEAR: {
        const IrLinearAttr *l = &n->attr.linear;
        if (x->rank != 2)
            return diag_error(d, n->loc, x->rank == 4 ? "insert `flatten` before it" : NULL,
                              "linear expects a flat input [N, features]; got %s", tstr(x, a));
        if (l->out <= 0) return diag_error(d, n->loc, NULL, "linear: output features must be positive, got %d", l->out);
        if (l->in && l->in != x->d[1])
            return diag_error(d, n->loc, NULL, "linear expects %d input features; its input %s has %lld",
                              l->in, tstr(x, a), (long long)x->d[1]);
        int fan_in = (int)x->d[1];
        if (set_param(g, n->in[1], tvec(2, l->out, x->d[1], 0, 0), fan_in, l->out, d, n->loc)) return -1;
        if (l->bias && set_param(g, n->in[2], tvec(1, l->out, 0, 0, 0), fan_in, l->out, d, n->loc)) return -1;
        out = t2(l->out);
        break;
    }
    case IR_OP_RELU: case IR_OP_SIGMOID:
        out = *x;
        break;
    case IR_OP_MAXPOOL: case IR_OP_AVGPOOL: {
        const IrPoolAttr *p = &n->attr.pool;
        if (need_rank(g, n, 0, 4, d, "an image-shaped [N, C, H, W]", NULL)) return -1;
        int64_t oh, ow;
        if (window(g, n, x->d[2], x->d[3], p->kh, p->kw, p->sh, p->sw, p->ph, p->pw, &oh, &ow, d)) return -1;
        out = t4(x->d[1], oh, ow);
        break;
    }
    case IR_OP_GAVGPOOL: case IR_OP_GMAXPOOL:
        if (need_rank(g, n, 0, 4, d, "an image-shaped [N, C, H, W]", NULL)) return -1;
        out = t4(x->d[1], 1, 1);
        break;
    case IR_OP_FLATTEN: {
        if (x->rank < 2) return diag_error(d, n->loc, NULL, "flatten expects a batched tensor; got %s", tstr(x, a));
        int64_t f = 1;
        for (int i = 1; i < x->rank; i++) f *= x->d[i];
        out = t2(f);
        break;
    }
    case IR_OP_DROPOUT:
        if (!(n->attr.dropout.p >= 0 && n->attr.dropout.p < 1))
            return diag_error(d, n->loc, NULL, "dropout probability must be in [0, 1), got %g", n->attr.dropout.p);
        out = *x;
        if (n->nout > 1) ir_type(g, n->out[1])[0] = *x;
        break;
    case IR_OP_BATCHNORM: {
        if (x->rank != 4 && x->rank != 2)
            return diag_error(d, n->loc, NULL, "batchnorm expects [N, C, H, W] or [N, F]; got %s", tstr(x, a));
        int64_t ch = x->d[1];
        for (int k = 1; k < 5; k++)
            if (set_param(g, n->in[k], tvec(1, ch, 0, 0, 0), (int)ch, (int)ch, d, n->loc)) return -1;
        for (int k = 1; k < n->nout; k++) ir_type(g, n->out[k])[0] = tvec(1, ch, 0, 0, 0);
        out = *x;
        break;
    }
    case IR_OP_CONCAT: {
        if (n->nin < 1) return diag_error(d, n->loc, NULL, "concat needs at least one input");
        int64_t ch = 0;
        for (int k = 0; k < n->nin; k++) {
            IrType *t = ir_type(g, n->in[k]);
            if (t->rank != 4)
                return diag_error(d, n->loc, NULL, "concat joins [N, C, H, W] tensors along channels; input %d is %s",
                                  k + 1, tstr(t, a));
            if (t->d[2] != x->d[2] || t->d[3] != x->d[3])
                return diag_error(d, n->loc, "every input of concat must have the same height and width",
                                  "concat of %s and %s: sizes differ", tstr(x, a), tstr(t, b));
            ch += t->d[1];
        }
        out = t4(ch, x->d[2], x->d[3]);
        break;
    }
    case IR_OP_ADD: {
        IrType *y = ir_type(g, n->in[1]);
        if (!ir_type_eq(x, y))
            return diag_error(d, n->loc, "project one side, e.g. with a 1x1 conv of the right channels and stride",
                              "add of different shapes %s and %s", tstr(x, a), tstr(y, b));
        out = *x;
        break;
    }
    case IR_OP_SOFTMAX_XENT:
        if (x->rank != 2)
            return diag_error(d, n->loc, "end the network with flatten and a linear layer, or a global pool and flatten",
                              "the network's output must be [N, classes] for the loss; got %s", tstr(x, a));
        if (x->d[1] < 2)
            return diag_error(d, n->loc, NULL, "the network's output has %lld classes; need at least 2", (long long)x->d[1]);
        out = tvec(1, 1, 0, 0, 0);
        break;
    default:
        /* backward ops: typed by autodiff */
        for (int k = 0; k < n->nout; k++)
            IR_ASSERT(ir_type(g, n->out[k])->rank > 0);
        return 0;
    }
    ir_type(g, n->out[0])[0] = out;
    return 0;
}

int pass_infer_shapes(IrGraph *g, Diag *d) {
    /* parameters take the shape their consumer gives them, afresh each run
     * (the input size may have changed since the last) */
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i].op == IR_OP_PARAM) ir_type(g, g->nodes[i].out[0])->rank = 0;
    for (int i = 0; i < g->nnodes; i++) {
        IrNode *n = ir_node(g, i);
        for (int k = 0; k < n->nin; k++) {
            IrValue *v = ir_value(g, n->in[k]);
            /* an input whose producer failed: stop, the error is reported */
            if (v->type.rank == 0 && ir_node(g, v->node)->op != IR_OP_PARAM) return -1;
        }
        if (infer_node(g, i, d)) return -1;
    }
    return 0;
}

void pass_stats(const IrGraph *g, IrStats *s) {
    memset(s, 0, sizeof *s);
    for (int i = 0; i < g->nnodes; i++) {
        const IrNode *n = ir_node(g, i);
        const IrType *y = n->nout ? ir_type(g, n->out[0]) : NULL;
        switch (n->op) {
        case IR_OP_PARAM: {
            int64_t e = ir_numel(y, 1);
            int role = n->attr.param.role;
            if (role == IR_PARAM_RUNNING_MEAN || role == IR_PARAM_RUNNING_VAR)
                s->state += e;
            else
                s->params += e;
            break;
        }
        case IR_OP_CONV2D:
            s->layers++;
            s->fwd_flops += 2 * ir_numel(y, 1) * ir_type(g, n->in[0])->d[1] * n->attr.conv.kh * n->attr.conv.kw;
            break;
        case IR_OP_LINEAR:
            s->layers++;
            s->fwd_flops += 2 * ir_numel(y, 1) * ir_type(g, n->in[0])->d[1];
            break;
        case IR_OP_BATCHNORM:
            s->layers++;
            break;
        default:
            break;
        }
    }
}
