/* builtins.c - the built-in ops of the language: each binds its arguments
 * by position or name, checks them, and appends IR nodes (params first, in
 * the order weight, bias, running statistics). */
#include "elab.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* ---- built-in ops ------------------------------------------------------ */

typedef int (*BuildFn)(Elab *E, Frame *F, const Ast *call, const Builtin *b, Arg *args, int nargs, Val *out);
struct Builtin {
    const char *name;
    IrOp op;
    BuildFn build;
    int nreq;                 /* required parameters after the input */
    const char *params[6];    /* positional order */
    const char *sig;          /* for hints */
};
typedef struct { int present; Val v; IrLoc loc; } Slot;

static int build_conv(Elab *, Frame *, const Ast *, const Builtin *, Arg *, int, Val *);
static int build_linear(Elab *, Frame *, const Ast *, const Builtin *, Arg *, int, Val *);
static int build_pool(Elab *, Frame *, const Ast *, const Builtin *, Arg *, int, Val *);
static int build_simple(Elab *, Frame *, const Ast *, const Builtin *, Arg *, int, Val *);
static int build_bn(Elab *, Frame *, const Ast *, const Builtin *, Arg *, int, Val *);
static int build_dropout(Elab *, Frame *, const Ast *, const Builtin *, Arg *, int, Val *);
static int build_concat(Elab *, Frame *, const Ast *, const Builtin *, Arg *, int, Val *);

static const Builtin builtins[] = {
    { "conv", IR_OP_CONV2D, build_conv, 2, { "out", "kernel", "stride", "pad", "bias", "in" },
      "conv(out, kernel, stride = 1, pad = 0, bias = true, in = <inferred>)" },
    { "linear", IR_OP_LINEAR, build_linear, 1, { "out", "bias", "in" },
      "linear(out, bias = true, in = <inferred>)" },
    { "maxpool", IR_OP_MAXPOOL, build_pool, 1, { "kernel", "stride", "pad" }, "maxpool(kernel, stride = kernel, pad = 0)" },
    { "avgpool", IR_OP_AVGPOOL, build_pool, 1, { "kernel", "stride", "pad" }, "avgpool(kernel, stride = kernel, pad = 0)" },
    { "relu", IR_OP_RELU, build_simple, 0, { 0 }, "relu" },
    { "sigmoid", IR_OP_SIGMOID, build_simple, 0, { 0 }, "sigmoid" },
    { "flatten", IR_OP_FLATTEN, build_simple, 0, { 0 }, "flatten" },
    { "global_avgpool", IR_OP_GAVGPOOL, build_simple, 0, { 0 }, "global_avgpool" },
    { "global_maxpool", IR_OP_GMAXPOOL, build_simple, 0, { 0 }, "global_maxpool" },
    { "batchnorm", IR_OP_BATCHNORM, build_bn, 0, { 0 }, "batchnorm" },
    { "dropout", IR_OP_DROPOUT, build_dropout, 0, { "p" }, "dropout(p = 0.5)" },
    { "concat", IR_OP_CONCAT, build_concat, 0, { 0 }, "concat(a, b, ...)" },
    { "add", IR_OP_ADD, build_concat, 0, { 0 }, "add(a, b)" },
};

const Builtin *elab_find_builtin(const char *name) {
    for (int i = 0; i < (int)(sizeof builtins / sizeof *builtins); i++)
        if (!strcmp(builtins[i].name, name))
            return &builtins[i];
    return NULL;
}

int elab_run_builtin(Elab *E, Frame *F, const Ast *call, const Builtin *b, Arg *args, int nargs, Val *out) {
    return b->build(E, F, call, b, args, nargs, out);
}

const char *elab_builtin_name(int i) {
    return i < (int)(sizeof builtins / sizeof *builtins) ? builtins[i].name : NULL;
}

/* Refuses graphs past FE_MAX_NODES (room for one layer and its params). */
static int room(Elab *E, IrLoc loc) {
    if (E->g->nnodes + 8 > FE_MAX_NODES)
        return diag_error(E->d, loc, NULL, "the network has more than %d nodes", FE_MAX_NODES);
    return 0;
}

/* The new layer's name (from its label, or kind + counter), NULL with the
 * error reported when the name is taken or the graph is full. */
static const char *new_layer(Elab *E, Frame *F, const char *kind, const char *label, IrLoc loc) {
    const char *name = elab_layer_name(E, F->names, kind, label, loc, NULL);
    return name && !room(E, loc) ? name : NULL;
}

/* The input tensor: the first positional argument (from |> or written). */
static int take_input(Elab *E, const Ast *call, const Builtin *b, Arg *args, int nargs) {
    if (nargs == 0 || args[0].name || args[0].v.k != V_TENSOR)
        return diag_error(E->d, call->loc, fe_arena_printf(&E->ar, "write `x |> %s` or `%s(x, ...)`", b->sig, b->name),
                          "`%s` needs an input tensor", b->name);
    return 0;
}

/* Binds args[1..] to b's parameters by position, then by name. */
static int bind(Elab *E, const Ast *call, const Builtin *b, Arg *args, int nargs, Slot *slots) {
    int np = 0, pos = 0;
    while (np < 6 && b->params[np])
        np++;
    for (int i = 1; i < nargs; i++) {
        int k = -1;
        if (!args[i].name) {
            if (pos >= np)
                return diag_error(E->d, args[i].loc, b->sig, "too many arguments to `%s` (it takes %d)", b->name, np);
            k = pos++;
        } else {
            const char *nm = args[i].name;
            if (!strcmp(nm, "padding")) nm = "pad";
            if (!strcmp(nm, "kernel_size")) nm = "kernel";
            if (!strcmp(nm, "strides")) nm = "stride";
            for (int j = 0; j < np; j++)
                if (!strcmp(b->params[j], nm))
                    k = j;
            if (k < 0) {
                const char *hint = b->sig;
                for (int j = 0; j < np; j++)
                    if (fe_edit_distance(nm, b->params[j]) <= 2)
                        hint = fe_arena_printf(&E->ar, "did you mean `%s`?", b->params[j]);
                return diag_error(E->d, args[i].loc, hint, "`%s` has no parameter `%s`", b->name, args[i].name);
            }
        }
        if (slots[k].present)
            return diag_error(E->d, args[i].loc, NULL, "parameter `%s` given twice", b->params[k]);
        slots[k] = (Slot){ 1, args[i].v, args[i].loc };
    }
    for (int j = 0; j < b->nreq; j++)
        if (!slots[j].present)
            return diag_error(E->d, call->loc, b->sig, "`%s` needs `%s`", b->name, b->params[j]);
    return 0;
}

/* An integer parameter in [lo, FE_MAX_DIM], dflt when absent. */
static int slot_int(Elab *E, const Builtin *b, Slot *s, int k, long long dflt, long long lo, int *out) {
    if (!s[k].present) {
        *out = (int)dflt;
        return 0;
    }
    if (s[k].v.k != V_INT) {
        VKind got = s[k].v.k;
        const char *hint = got == V_FLOAT ? "`int(r)` truncates a real number" : got == V_LIST ? "pick an element: `xs[i]`"
                         : b->sig;
        return diag_error(E->d, s[k].loc, hint, "`%s` of `%s` must be an integer, got %s", b->params[k], b->name,
                          elab_kind_str(got));
    }
    if (s[k].v.i < lo)
        return diag_error(E->d, s[k].loc, NULL, "`%s` of `%s` must be %s, got %lld", b->params[k], b->name,
                          lo > 0 ? "positive" : "non-negative", s[k].v.i);
    if (s[k].v.i > FE_MAX_DIM)
        return diag_error(E->d, s[k].loc, NULL, "`%s` of `%s` is too large (%lld > %d)", b->params[k], b->name,
                          s[k].v.i, FE_MAX_DIM);
    *out = (int)s[k].v.i;
    return 0;
}

static int slot_bool(Elab *E, const Builtin *b, Slot *s, int k, int dflt, int *out) {
    if (!s[k].present) {
        *out = dflt;
        return 0;
    }
    if (s[k].v.k != V_BOOL)
        return diag_error(E->d, s[k].loc, NULL, "`%s` of `%s` must be true or false, got %s", b->params[k], b->name,
                          elab_kind_str(s[k].v.k));
    *out = (int)s[k].v.i;
    return 0;
}

/* conv(out, kernel, stride = 1, pad = 0, bias = true, in = inferred):
 * inputs (x, <name>.weight [, <name>.bias]). */
static int build_conv(Elab *E, Frame *F, const Ast *call, const Builtin *b, Arg *args, int nargs, Val *out) {
    Slot s[6] = { 0 };
    int oc = 0, k = 0, st = 1, pad = 0, bias = 1, ic = 0;
    if (take_input(E, call, b, args, nargs) || bind(E, call, b, args, nargs, s) || slot_int(E, b, s, 0, 0, 1, &oc) ||
        slot_int(E, b, s, 1, 0, 1, &k) || slot_int(E, b, s, 2, 1, 1, &st) || slot_int(E, b, s, 3, 0, 0, &pad) ||
        slot_bool(E, b, s, 4, 1, &bias) || slot_int(E, b, s, 5, 0, 1, &ic))
        return -1;
    const char *name = new_layer(E, F, b->name, call->label, call->loc);
    if (!name)
        return -1;
    int in[3] = { (int)args[0].v.i, ir_param_new(E->g, name, "weight", IR_PARAM_WEIGHT, call->loc), -1 };
    if (bias)
        in[2] = ir_param_new(E->g, name, "bias", IR_PARAM_BIAS, call->loc);
    int n = ir_node_new(E->g, b->op, in, bias ? 3 : 2, 1, name, call->loc);
    IrNode *nd = &E->g->nodes[n];
    nd->attr.conv.out_c = oc;
    nd->attr.conv.in_c = ic;
    nd->attr.conv.kh = nd->attr.conv.kw = k;
    nd->attr.conv.sh = nd->attr.conv.sw = st;
    nd->attr.conv.ph = nd->attr.conv.pw = pad;
    nd->attr.conv.bias = bias;
    *out = (Val){ V_TENSOR, ir_out(E->g, n, 0), 0, NULL };
    return 0;
}


/* linear(out, bias = true, in = inferred): inputs (x, weight [out, in] [, bias]). */
static int build_linear(Elab *E, Frame *F, const Ast *call, const Builtin *b, Arg *args, int nargs, Val *out) {
    Slot s[6] = { 0 };
    int oc = 0, bias = 1, ic = 0;
    if (take_input(E, call, b, args, nargs) || bind(E, call, b, args, nargs, s) || slot_int(E, b, s, 0, 0, 1, &oc) ||
        slot_bool(E, b, s, 1, 1, &bias) || slot_int(E, b, s, 2, 0, 1, &ic))
        return -1;
    const char *name = new_layer(E, F, b->name, call->label, call->loc);
    if (!name)
        return -1;
    int in[3] = { (int)args[0].v.i, ir_param_new(E->g, name, "weight", IR_PARAM_WEIGHT, call->loc), -1 };
    if (bias)
        in[2] = ir_param_new(E->g, name, "bias", IR_PARAM_BIAS, call->loc);
    int n = ir_node_new(E->g, b->op, in, bias ? 3 : 2, 1, name, call->loc);
    E->g->nodes[n].attr.linear.out = oc;
    E->g->nodes[n].attr.linear.in = ic;
    E->g->nodes[n].attr.linear.bias = bias;
    *out = (Val){ V_TENSOR, ir_out(E->g, n, 0), 0, NULL };
    return 0;
}

/* maxpool / avgpool (kernel, stride = kernel, pad = 0), as PyTorch. */
static int build_pool(Elab *E, Frame *F, const Ast *call, const Builtin *b, Arg *args, int nargs, Val *out) {
    Slot s[6] = { 0 };
    int k = 0, st = 1, pad = 0;
    if (take_input(E, call, b, args, nargs) || bind(E, call, b, args, nargs, s) || slot_int(E, b, s, 0, 0, 1, &k) ||
        slot_int(E, b, s, 1, k, 1, &st) || slot_int(E, b, s, 2, 0, 0, &pad))
        return -1;
    if (2 * pad > k)
        return diag_error(E->d, s[2].loc, "PyTorch allows at most half the kernel", "padding %d is too large for kernel %d",
                          pad, k);
    const char *name = new_layer(E, F, b->name, call->label, call->loc);
    if (!name)
        return -1;
    int x = (int)args[0].v.i;
    int n = ir_node_new(E->g, b->op, &x, 1, 1, name, call->loc);
    IrNode *nd = &E->g->nodes[n];
    nd->attr.pool.kh = nd->attr.pool.kw = k;
    nd->attr.pool.sh = nd->attr.pool.sw = st;
    nd->attr.pool.ph = nd->attr.pool.pw = pad;
    *out = (Val){ V_TENSOR, ir_out(E->g, n, 0), 0, NULL };
    return 0;
}

/* relu, sigmoid, flatten, global_avgpool, global_maxpool: one input, no parameters. */
static int build_simple(Elab *E, Frame *F, const Ast *call, const Builtin *b, Arg *args, int nargs, Val *out) {
    Slot s[6] = { 0 };
    if (take_input(E, call, b, args, nargs) || bind(E, call, b, args, nargs, s))
        return -1;
    const char *name = new_layer(E, F, b->name, call->label, call->loc);
    if (!name)
        return -1;
    int x = (int)args[0].v.i;
    int n = ir_node_new(E->g, b->op, &x, 1, 1, name, call->loc);
    *out = (Val){ V_TENSOR, ir_out(E->g, n, 0), 0, NULL };
    return 0;
}

/* batchnorm: inputs (x, weight=gamma, bias=beta, running_mean, running_var);
 * train -> (y, saved_mean, saved_invstd), eval -> y.  Channels or features
 * come from x's shape. */
static int build_bn(Elab *E, Frame *F, const Ast *call, const Builtin *b, Arg *args, int nargs, Val *out) {
    Slot s[6] = { 0 };
    if (take_input(E, call, b, args, nargs) || bind(E, call, b, args, nargs, s))
        return -1;
    const char *name = new_layer(E, F, b->name, call->label, call->loc);
    if (!name)
        return -1;
    IrGraph *g = E->g;
    int in[5] = { (int)args[0].v.i, ir_param_new(g, name, "weight", IR_PARAM_GAMMA, call->loc),
                  ir_param_new(g, name, "bias", IR_PARAM_BETA, call->loc),
                  ir_param_new(g, name, "running_mean", IR_PARAM_RUNNING_MEAN, call->loc),
                  ir_param_new(g, name, "running_var", IR_PARAM_RUNNING_VAR, call->loc) };
    int n = ir_node_new(g, b->op, in, 5, g->mode == IR_TRAIN ? 3 : 1, name, call->loc);
    g->nodes[n].attr.bn.mode = (int)g->mode;
    g->nodes[n].attr.bn.momentum = 0.1f;
    g->nodes[n].attr.bn.eps = 1e-5f;
    *out = (Val){ V_TENSOR, ir_out(g, n, 0), 0, NULL };
    return 0;
}

/* dropout(p = 0.5), 0 <= p < 1: train -> (y, mask), eval -> y. */
static int build_dropout(Elab *E, Frame *F, const Ast *call, const Builtin *b, Arg *args, int nargs, Val *out) {
    Slot s[6] = { 0 };
    if (take_input(E, call, b, args, nargs) || bind(E, call, b, args, nargs, s))
        return -1;
    double p = 0.5;
    if (s[0].present) {
        p = s[0].v.k == V_FLOAT ? s[0].v.f : s[0].v.k == V_INT ? (double)s[0].v.i : -1;
        if (s[0].v.k != V_FLOAT && s[0].v.k != V_INT)
            return diag_error(E->d, s[0].loc, NULL, "`p` of `dropout` must be a real number, got %s", elab_kind_str(s[0].v.k));
        if (!(p >= 0 && p < 1))
            return diag_error(E->d, s[0].loc, NULL, "`p` of `dropout` must be in [0, 1), got %g", p);
    }
    const char *name = new_layer(E, F, b->name, call->label, call->loc);
    if (!name)
        return -1;
    IrGraph *g = E->g;
    int x = (int)args[0].v.i;
    int n = ir_node_new(g, b->op, &x, 1, g->mode == IR_TRAIN ? 2 : 1, name, call->loc);
    g->nodes[n].attr.dropout.p = (float)p;
    g->nodes[n].attr.dropout.mode = (int)g->mode;
    g->nodes[n].attr.dropout.index = E->ndropout++;
    *out = (Val){ V_TENSOR, ir_out(g, n, 0), 0, NULL };
    return 0;
}

/* concat(a, b, ...) along channels (2 to IR_MAX_IN tensors); add(a, b). */
static int build_concat(Elab *E, Frame *F, const Ast *call, const Builtin *b, Arg *args, int nargs, Val *out) {
    int in[IR_MAX_IN];
    int lo = 2, hi = b->op == IR_OP_ADD ? 2 : IR_MAX_IN;
    if (nargs < lo || nargs > hi)
        return diag_error(E->d, call->loc, b->sig, "`%s` takes %s%d tensors, got %d", b->name, lo == hi ? "" : "2 to ",
                          hi, nargs);
    for (int i = 0; i < nargs; i++) {
        if (args[i].name)
            return diag_error(E->d, args[i].loc, b->sig, "`%s` has no named parameters", b->name);
        if (args[i].v.k != V_TENSOR)
            return diag_error(E->d, args[i].loc, NULL, "`%s` takes tensors, got %s", b->name, elab_kind_str(args[i].v.k));
        in[i] = (int)args[i].v.i;
    }
    const char *name = new_layer(E, F, b->name, call->label, call->loc);
    if (!name)
        return -1;
    int n = ir_node_new(E->g, b->op, in, nargs, 1, name, call->loc);
    *out = (Val){ V_TENSOR, ir_out(E->g, n, 0), 0, NULL };
    return 0;
}

/* a + b on two tensors: an ADD node named add<k>, located at the `+`. */
int elab_build_add(Elab *E, Frame *F, const Ast *n, Val a, Val b, Val *out) {
    const char *name = new_layer(E, F, "add", NULL, n->loc);
    if (!name)
        return -1;
    int in[2] = { (int)a.i, (int)b.i };
    int id = ir_node_new(E->g, IR_OP_ADD, in, 2, 1, name, n->loc);
    *out = (Val){ V_TENSOR, ir_out(E->g, id, 0), 0, NULL };
    return 0;
}
