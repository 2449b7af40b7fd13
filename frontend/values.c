/* values.c - what elaboration computes with besides tensors: arithmetic and
 * comparison on integers, reals and lists, list literals and indexing, and
 * the value functions len, int, channels, height and width.
 *
 * Lists are immutable and arena-owned: a Val of kind V_LIST points at its
 * FeList, so copying a list value copies the pointer.  Building a list costs
 * its length in E->work, so no program builds more than FE_MAX_WORK elements
 * in all; lists nest at most FE_MAX_LIST_DEPTH deep, which bounds every
 * recursion over them. */
#include "elab.h"

#include <limits.h>
#include <math.h>
#include <string.h>

#include "../passes/passes.h"

/* Charges n units of work; an error past FE_MAX_WORK. */
static int charge(Elab *E, IrLoc loc, long n) {
    E->work += n;
    if (E->work > FE_MAX_WORK)
        return diag_error(E->d, loc, "networks need far less computation to describe",
                          "elaboration evaluates more than %d expressions", FE_MAX_WORK);
    return 0;
}

/* ---- lists ------------------------------------------------------------- */

/* A list of the n values items (copied, none a tensor), located at loc for
 * errors. */
int elab_list_new(Elab *E, IrLoc loc, const Val *items, int n, Val *out) {
    int depth = 1;
    for (int i = 0; i < n; i++) {
        if (items[i].k == V_LIST && items[i].l->depth + 1 > depth)
            depth = items[i].l->depth + 1;
    }
    if (depth > FE_MAX_LIST_DEPTH)
        return diag_error(E->d, loc, NULL, "lists nested more than %d deep", FE_MAX_LIST_DEPTH);
    if (charge(E, loc, n))
        return -1;
    FeList *l = fe_arena_alloc(&E->ar, sizeof *l);
    l->n = n;
    l->depth = depth;
    l->item = fe_arena_alloc(&E->ar, sizeof *l->item * (size_t)(n + 1));
    if (n)
        memcpy(l->item, items, sizeof *items * (size_t)n);
    *out = (Val){ .k = V_LIST, .l = l };
    return 0;
}

/* a[b]: b an integer in [-len, len), negative counting from the end as in
 * Python; the error is located at the index. */
int elab_index(Elab *E, const Ast *n, Val a, Val b, Val *out) {
    if (a.k != V_LIST)
        return diag_error(E->d, n->loc,
                          a.k == V_TENSOR ? "channels(x), height(x) and width(x) give a tensor's sizes" : NULL,
                          "cannot index %s; only lists have elements", elab_kind_str(a.k));
    if (b.k != V_INT)
        return diag_error(E->d, n->b->loc, b.k == V_FLOAT ? "convert it with `int(...)`" : NULL,
                          "a list index must be an integer, got %s", elab_kind_str(b.k));
    long long len = a.l->n, i = b.i < 0 ? b.i + len : b.i;
    if (i < 0 || i >= len)
        return diag_error(E->d, n->b->loc, len ? fe_arena_printf(&E->ar, "valid indices are 0 to %lld", len - 1) : NULL,
                          "index %lld is out of range for a list of %lld element%s", b.i, len, len == 1 ? "" : "s");
    *out = a.l->item[i];
    return 0;
}

static int equal(Val a, Val b) {
    if (a.k == V_LIST || b.k == V_LIST) {
        if (a.k != b.k || a.l->n != b.l->n)
            return 0;
        for (int i = 0; i < a.l->n; i++)
            if (!equal(a.l->item[i], b.l->item[i]))
                return 0;
        return 1;
    }
    if (a.k == V_BOOL || b.k == V_BOOL)
        return a.k == b.k && a.i == b.i;
    if (a.k == V_INT && b.k == V_INT)
        return a.i == b.i;
    if ((a.k == V_INT || a.k == V_FLOAT) && (b.k == V_INT || b.k == V_FLOAT))
        return (a.k == V_FLOAT ? a.f : (double)a.i) == (b.k == V_FLOAT ? b.f : (double)b.i);
    return 0;
}

/* ---- arithmetic and comparison ----------------------------------------- */

/* a op b for op one of + - * / %: integers checked for overflow, floor
 * division and modulo as in Python; a real operand makes + - * / real;
 * list + list concatenates. */
int elab_arith(Elab *E, const Ast *n, Val a, Val b, Val *out) {
    long long r = 0, x = a.i, y = b.i;
    int ovf = 0;
    if (a.k == V_LIST && b.k == V_LIST && n->op == '+') {
        long long len = (long long)a.l->n + b.l->n;
        if (len > FE_MAX_WORK)
            return diag_error(E->d, n->loc, NULL, "the list would have %lld elements", len);
        Val *items = fe_arena_alloc(&E->ar, sizeof *items * (size_t)(len + 1));
        memcpy(items, a.l->item, sizeof *items * (size_t)a.l->n);
        memcpy(items + a.l->n, b.l->item, sizeof *items * (size_t)b.l->n);
        return elab_list_new(E, n->loc, items, (int)len, out);
    }
    if (!((a.k == V_INT || a.k == V_FLOAT) && (b.k == V_INT || b.k == V_FLOAT))) {
        const char *hint = a.k == V_TENSOR || b.k == V_TENSOR ? "only `+` applies to two tensors"
                         : a.k == V_LIST || b.k == V_LIST ? "only `+` applies to two lists (it joins them)" : NULL;
        return diag_error(E->d, n->loc, hint, "cannot apply `%s` to %s and %s", ast_op_str(n->op),
                          elab_kind_str(a.k), elab_kind_str(b.k));
    }
    if (a.k == V_FLOAT || b.k == V_FLOAT) {
        double u = a.k == V_FLOAT ? a.f : (double)a.i, w = b.k == V_FLOAT ? b.f : (double)b.i;
        if (n->op == '%' || (n->op == '/' && w == 0))
            return diag_error(E->d, n->loc, NULL, n->op == '%' ? "`%%` needs integers" : "division by zero");
        double v = n->op == '+' ? u + w : n->op == '-' ? u - w : n->op == '*' ? u * w : u / w;
        if (!isfinite(v))
            return diag_error(E->d, n->loc, NULL, "arithmetic overflow");
        *out = (Val){ V_FLOAT, 0, v, NULL };
        return 0;
    }
    switch (n->op) {
    case '+': ovf = __builtin_add_overflow(x, y, &r); break;
    case '-': ovf = __builtin_sub_overflow(x, y, &r); break;
    case '*': ovf = __builtin_mul_overflow(x, y, &r); break;
    case '/':
    case '%':
        if (y == 0)
            return diag_error(E->d, n->loc, NULL, n->op == '/' ? "division by zero" : "modulo by zero");
        if (x == LLONG_MIN && y == -1) {
            ovf = 1;
            break;
        }
        /* floor division and modulo, as in Python (the seed's `//`) */
        r = x / y;
        if ((x % y != 0) && ((x < 0) != (y < 0)))
            r--;
        if (n->op == '%')
            r = x - r * y;
        break;
    }
    if (ovf)
        return diag_error(E->d, n->loc, "values are 64-bit integers", "integer overflow in `%s`",
                          ast_op_str(n->op));
    *out = (Val){ V_INT, r, 0, NULL };
    return 0;
}

/* a op b for op one of == != < > <= >=: numbers compare by value (an
 * integer with a real as reals), booleans and lists only for equality. */
int elab_compare(Elab *E, const Ast *n, Val a, Val b, Val *out) {
    int r;
    int eqop = n->op == AST_OP_EQ || n->op == AST_OP_NE;
    int num_a = a.k == V_INT || a.k == V_FLOAT, num_b = b.k == V_INT || b.k == V_FLOAT;
    if (eqop && ((a.k == V_BOOL && b.k == V_BOOL) || (a.k == V_LIST && b.k == V_LIST))) {
        r = equal(a, b) == (n->op == AST_OP_EQ);
    } else if (num_a && num_b) {
        double u = a.k == V_FLOAT ? a.f : (double)a.i, w = b.k == V_FLOAT ? b.f : (double)b.i;
        int both_int = a.k == V_INT && b.k == V_INT;
        int lt = both_int ? a.i < b.i : u < w, eq = both_int ? a.i == b.i : u == w;
        switch (n->op) {
        case '<': r = lt; break;
        case '>': r = !lt && !eq; break;
        case AST_OP_LE: r = lt || eq; break;
        case AST_OP_GE: r = !lt; break;
        case AST_OP_EQ: r = eq; break;
        default: r = !eq; break;
        }
    } else {
        return diag_error(E->d, n->loc, NULL, "cannot compare %s with %s", elab_kind_str(a.k), elab_kind_str(b.k));
    }
    *out = (Val){ V_BOOL, r, 0, NULL };
    return 0;
}

/* ---- value functions --------------------------------------------------- */

/* The type of tensor x, shapes inferred for the graph built so far (again
 * only when it has grown; each run is charged by the graph's size). */
static int shape_of(Elab *E, const Ast *call, Val x, const IrType **t) {
    if (x.k != V_TENSOR)
        return diag_error(E->d, call->loc, fe_arena_printf(&E->ar, "pass a tensor: `%s(x)`", call->name),
                          "`%s` needs a tensor, got %s", call->name, elab_kind_str(x.k));
    if (E->shaped != E->g->nnodes) {
        if (charge(E, call->loc, E->g->nnodes / 8) || pass_infer_shapes(E->g, E->d))
            return -1;
        E->shaped = E->g->nnodes;
    }
    *t = ir_type(E->g, (int)x.i);
    return 0;
}

static const char *functions[] = { "len", "int", "channels", "height", "width", NULL };

const char *elab_function_name(int i) { return functions[i]; }

int elab_is_function(const char *name) {
    for (int i = 0; functions[i]; i++)
        if (!strcmp(functions[i], name))
            return 1;
    return 0;
}

/* len(list), int(number) (truncated toward zero, as Python's int), and
 * channels(x), height(x), width(x) of an image tensor [N, C, H, W]. */
int elab_call_function(Elab *E, const Ast *call, const Arg *args, int nargs, Val *out) {
    const char *f = call->name;
    if (nargs != 1 || args[0].name)
        return diag_error(E->d, call->loc, NULL, "`%s` takes one value, as `%s(%s)`", f, f,
                          !strcmp(f, "len") ? "xs" : !strcmp(f, "int") ? "r" : "x");
    if (call->label)
        return diag_error(E->d, call->loc, "`as` names layers", "`%s` computes a value, not a layer", f);
    Val v = args[0].v;
    if (!strcmp(f, "len")) {
        if (v.k != V_LIST)
            return diag_error(E->d, args[0].loc, v.k == V_TENSOR ? "channels(x), height(x) and width(x) give its sizes" : NULL,
                              "`len` needs a list, got %s", elab_kind_str(v.k));
        *out = (Val){ V_INT, v.l->n, 0, NULL };
        return 0;
    }
    if (!strcmp(f, "int")) {
        if (v.k == V_INT) {
            *out = v;
            return 0;
        }
        if (v.k != V_FLOAT)
            return diag_error(E->d, args[0].loc, NULL, "`int` needs a real number or an integer, got %s", elab_kind_str(v.k));
        double t = trunc(v.f);
        if (!(t > -9.2e18 && t < 9.2e18))
            return diag_error(E->d, args[0].loc, "values are 64-bit integers", "%g is too large for an integer", v.f);
        *out = (Val){ V_INT, (long long)t, 0, NULL };
        return 0;
    }
    const IrType *t = NULL;
    if (shape_of(E, call, v, &t))
        return -1;
    if (t->rank != 4) {
        char buf[64];
        ir_type_str(t, buf, sizeof buf);
        return diag_error(E->d, args[0].loc, t->rank == 2 ? "a flattened tensor has only features" : NULL,
                          "`%s` needs an image tensor [N, C, H, W], got %s", f, buf);
    }
    int k = !strcmp(f, "channels") ? 1 : !strcmp(f, "height") ? 2 : 3;
    *out = (Val){ V_INT, t->d[k], 0, NULL };
    return 0;
}
