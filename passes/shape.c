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

/* What the graph has used so far of the limits in ir.h: elements of every
 * tensor (at the batch) and forward FLOPs. */
typedef struct {
    int64_t batch;           /* the graph's batch, or its training batch */
    int64_t total, flops;
} Budget;

static const char *size_hint = "reduce the batch, the input size (resize) or the width of the layers";

/* Counts tensor t (of node n, described by what: "conv2d output") against
 * the limits. */
static int charge(Budget *bu, const IrNode *n, const IrType *t, const char *what, Diag *d) {
    int64_t e;
    char a[64];
    if (ir_numel_checked(t, bu->batch, &e) || e > IR_MAX_NUMEL) {
        double x = 1;
        for (int i = 0; i < t->rank; i++) x *= (double)(i == 0 && t->batched ? bu->batch : t->d[i]);
        char at[48] = "";
        if (t->batched) snprintf(at, sizeof at, " at batch %lld", (long long)bu->batch);
        return diag_error(d, n->loc, size_hint, "%s %s has %.3g elements%s; a tensor may hold at most 2^38 (%lld)",
                          what, tstr(t, a), x, at, (long long)IR_MAX_NUMEL);
    }
    bu->total += e;
    if (bu->total > IR_MAX_TOTAL)
        return diag_error(d, n->loc, size_hint,
                          "the network's tensors reach %.3g elements at this %s (batch %lld); together they may hold at most 2^42 (%lld)",
                          (double)bu->total, ir_info(n->op)->name, (long long)bu->batch, (long long)IR_MAX_TOTAL);
    return 0;
}

static int charge_out(Budget *bu, const IrNode *n, const IrType *t, Diag *d) {
    char what[64];
    snprintf(what, sizeof what, n->op == IR_OP_INPUT ? "%s" : "%s output", ir_info(n->op)->name);
    return charge(bu, n, t, what, d);
}

/* Counts 2 x out_elems x macs_per_out FLOPs of node n against IR_MAX_FLOPS. */
static int charge_flops(Budget *bu, const IrNode *n, int64_t out_elems, int64_t macs_per_out, Diag *d) {
    int64_t f, sum;
    if (__builtin_mul_overflow(out_elems, macs_per_out, &f) || __builtin_mul_overflow(f, (int64_t)2, &f) ||
        __builtin_add_overflow(bu->flops, f, &sum) || sum > IR_MAX_FLOPS)
        return diag_error(d, n->loc, size_hint,
                          "the forward pass reaches %.3g FLOPs at this %s (batch %lld); it may take at most 2^60 (%.3g)",
                          (double)bu->flops + 2.0 * (double)out_elems * (double)macs_per_out, ir_info(n->op)->name,
                          (long long)bu->batch, (double)IR_MAX_FLOPS);
    bu->flops = sum;
    return 0;
}

/* Sets param value v's type (checking it was not typed differently) and
 * counts it against the limits the first time; its consumer `at` gives the
 * location. */
static int set_param(IrGraph *g, int v, IrType t, Budget *bu, Diag *d, const IrNode *at) {
    IrValue *val = ir_value(g, v);
    IrNode *p = ir_node(g, val->node);
    if (p->op != IR_OP_PARAM) return 0;
    char a[64], b[64], what[160];
    if (val->type.rank && !ir_type_eq(&val->type, &t))
        return diag_error(d, at->loc, NULL, "parameter %s used with shapes %s and %s",
                          val->name ? val->name : "?", tstr(&val->type, a), tstr(&t, b));
    snprintf(what, sizeof what, "parameter %s", val->name ? val->name : "?");
    if (!val->type.rank && charge(bu, at, &t, what, d)) return -1;
    val->type = t;
    return 0;
}

/* Fans of param v, for its initialisation. */
static void set_fans(IrGraph *g, int v, int64_t fan_in, int64_t fan_out) {
    IrNode *p = ir_node(g, ir_value(g, v)->node);
    if (p->op != IR_OP_PARAM) return;
    p->attr.param.fan_in = fan_in;
    p->attr.param.fan_out = fan_out;
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

static int infer_node(IrGraph *g, int id, Budget *bu, Diag *d) {
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
        int64_t cin = x->d[1], win = (int64_t)c->kh * c->kw;
        if (set_param(g, n->in[1], tvec(4, c->out_c, cin, c->kh, c->kw), bu, d, n)) return -1;
        if (c->bias && set_param(g, n->in[2], tvec(1, c->out_c, 0, 0, 0), bu, d, n)) return -1;
        /* the weight's size is checked: its fans fit */
        int64_t fan_in = cin * win, fan_out = c->out_c * win;
        set_fans(g, n->in[1], fan_in, fan_out);
        if (c->bias) set_fans(g, n->in[2], fan_in, fan_out);
        out = t4(c->out_c, oh, ow);
        if (charge_out(bu, n, &out, d)) return -1;
        if (charge_flops(bu, n, ir_numel(&out, bu->batch), fan_in, d)) return -1;
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
        int64_t fan_in = x->d[1];
        if (set_param(g, n->in[1], tvec(2, l->out, x->d[1], 0, 0), bu, d, n)) return -1;
        if (l->bias && set_param(g, n->in[2], tvec(1, l->out, 0, 0, 0), bu, d, n)) return -1;
        set_fans(g, n->in[1], fan_in, l->out);
        if (l->bias) set_fans(g, n->in[2], fan_in, l->out);
        out = t2(l->out);
        if (charge_out(bu, n, &out, d)) return -1;
        if (charge_flops(bu, n, ir_numel(&out, bu->batch), fan_in, d)) return -1;
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
        int64_t f = 1;   /* at most x's element count, which is checked */
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
        for (int k = 1; k < 5; k++) {
            if (set_param(g, n->in[k], tvec(1, ch, 0, 0, 0), bu, d, n)) return -1;
            set_fans(g, n->in[k], ch, ch);
        }
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
    /* conv and linear have counted their output, with its FLOPs */
    for (int k = n->op == IR_OP_CONV2D || n->op == IR_OP_LINEAR; k < n->nout; k++)
        if (charge_out(bu, n, ir_type(g, n->out[k]), d)) return -1;
    return 0;
}

int pass_infer_shapes(IrGraph *g, Diag *d) {
    /* parameters take the shape their consumer gives them, afresh each run
     * (the input size may have changed since the last) */
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i].op == IR_OP_PARAM) ir_type(g, g->nodes[i].out[0])->rank = 0;
    /* sizes are checked at the batch the program will run: the planned one,
     * else the training setting */
    Budget bu = {g->batch > 0 ? g->batch : g->train.batch > 0 ? g->train.batch : 1, 0, 0};
    for (int i = 0; i < g->nnodes; i++) {
        IrNode *n = ir_node(g, i);
        for (int k = 0; k < n->nin; k++) {
            IrValue *v = ir_value(g, n->in[k]);
            /* an input whose producer failed: stop, the error is reported */
            if (v->type.rank == 0 && ir_node(g, v->node)->op != IR_OP_PARAM) return -1;
        }
        if (infer_node(g, i, &bu, d)) return -1;
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
