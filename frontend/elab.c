/* elab.c - elaboration: runs a parsed .net program and records the graph.
 *
 * Elaboration is an interpreter over the AST.  Values are integers, booleans,
 * reals, lists and tensors (IR value ids); values.c computes with them.
 * `net { }` runs with `x` bound to the INPUT value; every op call appends IR
 * nodes (params first, in the order weight, bias, running stats, right
 * before their consumer), every block call runs the block's body in a fresh
 * frame and naming scope.  The loss (LABELS + SOFTMAX_XENT) is appended
 * after the network's result.
 *
 * Names: inside a scope each op gets `<op><k>` and each block call
 * `<block><k>`, k counting that kind in that scope from 0; `as label` and
 * `scope label { }` choose the local name.  Full name = scope path + "." +
 * local name, e.g. "b3.residual0.conv1"; params add ".weight" etc.
 *
 * Errors stop elaboration at once; the caller frees g. */
#include "elab.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

static int eval(Elab *E, Frame *F, const Ast *n, Val *out);
static int exec_list(Elab *E, Frame *F, const Ast *s);
static int eval_call(Elab *E, Frame *F, const Ast *call, Val *out);

const char *elab_kind_str(VKind k) {
    static const char *s[] = { "nothing", "an integer", "a boolean", "a real number", "a tensor", "a list" };
    return s[k];
}

/* ---- names ------------------------------------------------------------- */

static uint32_t hash_str(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* Adds name to the set; returns 0 if it was already there. */
static int names_add(Elab *E, Names *ns, const char *name) {
    if (2 * (ns->n + 1) > ns->cap) {
        int cap = ns->cap ? 2 * ns->cap : 16;
        const char **set = fe_arena_alloc(&E->ar, sizeof *set * (size_t)cap);
        for (int i = 0; i < ns->cap; i++)
            if (ns->set[i])
                for (uint32_t h = hash_str(ns->set[i]);; h++)
                    if (!set[h & (uint32_t)(cap - 1)]) {
                        set[h & (uint32_t)(cap - 1)] = ns->set[i];
                        break;
                    }
        ns->set = set;
        ns->cap = cap;
    }
    for (uint32_t h = hash_str(name);; h++) {
        const char **slot = &ns->set[h & (uint32_t)(ns->cap - 1)];
        if (!*slot) {
            *slot = name;
            ns->n++;
            return 1;
        }
        if (!strcmp(*slot, name))
            return 0;
    }
}

static Names *names_new(Elab *E, Names *parent, const char *local) {
    Names *ns = fe_arena_alloc(&E->ar, sizeof *ns);
    ns->path = !parent ? "" : !*parent->path ? local : fe_arena_printf(&E->ar, "%s.%s", parent->path, local);
    return ns;
}

/* The full name of a new layer or block instance of `kind` in scope ns:
 * label if given (an error if taken), else the first free <kind><k>. */
const char *elab_layer_name(Elab *E, Names *ns, const char *kind, const char *label, IrLoc loc,
                            const char **local) {
    const char *l = label;
    if (label) {
        if (!names_add(E, ns, label)) {
            diag_error(E->d, loc, "each layer in a scope needs its own name", "duplicate name `%s` in this scope",
                       label);
            return NULL;
        }
    } else {
        struct Count *c = ns->counts;
        while (c && strcmp(c->kind, kind))
            c = c->next;
        if (!c) {
            c = fe_arena_alloc(&E->ar, sizeof *c);
            c->kind = kind;
            c->next = ns->counts;
            ns->counts = c;
        }
        do
            l = fe_arena_printf(&E->ar, "%s%d", kind, c->k++);
        while (!names_add(E, ns, l));
    }
    if (local)
        *local = l;
    return *ns->path ? fe_arena_printf(&E->ar, "%s.%s", ns->path, l) : l;
}

/* ---- variables --------------------------------------------------------- */

static Var *lookup(Elab *E, Frame *F, const char *name) {
    for (Var *v = F->vars; v; v = v->next)
        if (!strcmp(v->name, name))
            return v;
    for (Var *v = E->globals; v; v = v->next)
        if (!strcmp(v->name, name))
            return v;
    return NULL;
}

static void assign(Elab *E, Frame *F, const char *name, Val v) {
    for (Var *p = F->vars; p; p = p->next)
        if (!strcmp(p->name, name)) {
            p->v = v;
            return;
        }
    Var *p = fe_arena_alloc(&E->ar, sizeof *p);
    p->name = name;
    p->v = v;
    p->next = F->vars;
    F->vars = p;
}

static const Ast *find_block(Elab *E, const char *name) {
    for (const Ast *b = E->blocks; b; b = b->next)
        if (b->kind == AST_BLOCK && !strcmp(b->name, name))
            return b;
    return NULL;
}

/* "did you mean `x`?" for the nearest of the names in scope, ops and blocks. */
static const char *suggest(Elab *E, Frame *F, const char *name, int want_calls) {
    const char *best = NULL;
    int bd = (int)strlen(name) / 3 + 1;
    if (bd > 3)
        bd = 3;
#define TRY(s)                                   \
    do {                                         \
        int dd = fe_edit_distance(name, (s));    \
        if (dd <= bd && strcmp(name, (s))) {     \
            bd = dd;                             \
            best = (s);                          \
        }                                        \
    } while (0)
    if (want_calls) {
        for (int i = 0; elab_builtin_name(i); i++)
            TRY(elab_builtin_name(i));
        for (int i = 0; elab_function_name(i); i++)
            TRY(elab_function_name(i));
        for (const Ast *b = E->blocks; b; b = b->next)
            if (b->kind == AST_BLOCK)
                TRY(b->name);
    } else {
        for (Var *v = F ? F->vars : NULL; v; v = v->next)
            TRY(v->name);
        for (Var *v = E->globals; v; v = v->next)
            TRY(v->name);
    }
#undef TRY
    return best ? fe_arena_printf(&E->ar, "did you mean `%s`?", best) : NULL;
}

/* ---- expressions ------------------------------------------------------- */

static int eval_bool(Elab *E, Frame *F, const Ast *n, int *out) {
    Val v;
    if (eval(E, F, n, &v))
        return -1;
    if (v.k != V_BOOL)
        return diag_error(E->d, n->loc, v.k == V_INT ? "compare it, e.g. `n != 0`" : NULL,
                          "expected a boolean, got %s", elab_kind_str(v.k));
    *out = (int)v.i;
    return 0;
}

static int eval_binary(Elab *E, Frame *F, const Ast *n, Val *out) {
    if (n->op == AST_OP_AND || n->op == AST_OP_OR) {
        int a, b = 0;
        if (eval_bool(E, F, n->a, &a))
            return -1;
        if ((n->op == AST_OP_AND) == (a != 0) && eval_bool(E, F, n->b, &b))
            return -1;
        *out = (Val){ V_BOOL, n->op == AST_OP_AND ? a && b : a || b, 0, NULL };
        return 0;
    }
    Val a, b;
    if (eval(E, F, n->a, &a) || eval(E, F, n->b, &b))
        return -1;
    if (n->op == '+' && a.k == V_TENSOR && b.k == V_TENSOR)
        return elab_build_add(E, F, n, a, b, out);
    switch (n->op) {
    case '+': case '-': case '*': case '/': case '%': return elab_arith(E, n, a, b, out);
    default: return elab_compare(E, n, a, b, out);
    }
}

/* [e1, e2, ...] or (e1, e2, ...) */
static int eval_list(Elab *E, Frame *F, const Ast *n, Val *out) {
    int len = ast_list_len(n->list), i = 0;
    Val *items = fe_arena_alloc(&E->ar, sizeof *items * (size_t)(len + 1));
    for (const Ast *e = n->list; e; e = e->next, i++) {
        if (eval(E, F, e, &items[i]))
            return -1;
        if (items[i].k == V_TENSOR)
            return diag_error(E->d, e->loc, "a list holds integers, booleans, reals or lists; `concat(a, b)` joins tensors",
                              "a list element cannot be a tensor");
    }
    return elab_list_new(E, n->loc, items, len, out);
}

/* Evaluates expression n.  Ops and blocks run here (AST_CALL). */
static int eval(Elab *E, Frame *F, const Ast *n, Val *out) {
    int rc = 0;
    if (++E->depth > FE_MAX_DEPTH) {
        E->depth--;
        return diag_error(E->d, n->loc, "split it up with named values", "expression is too deeply nested");
    }
    if (++E->work > FE_MAX_WORK) {
        E->depth--;
        return diag_error(E->d, n->loc, "networks need far less computation to describe",
                          "elaboration evaluates more than %d expressions", FE_MAX_WORK);
    }
    switch (n->kind) {
    case AST_INT: *out = (Val){ V_INT, n->ival, 0, NULL }; break;
    case AST_FLOAT: *out = (Val){ V_FLOAT, 0, n->fval, NULL }; break;
    case AST_BOOL: *out = (Val){ V_BOOL, n->ival, 0, NULL }; break;
    case AST_NAME: {
        Var *v = lookup(E, F, n->name);
        if (v) {
            *out = v->v;
        } else if (elab_find_builtin(n->name) || find_block(E, n->name) || elab_is_function(n->name)) {
            rc = diag_error(E->d, n->loc, NULL, "`%s` is %s: call it, as `x |> %s` or `%s(x)`", n->name,
                            elab_is_function(n->name) ? "a function" : "an op or block", n->name, n->name);
        } else {
            rc = diag_error(E->d, n->loc, suggest(E, F, n->name, 0), "unknown name `%s`", n->name);
        }
        break;
    }
    case AST_UNARY:
        if (n->op == '!') {
            int b;
            rc = eval_bool(E, F, n->a, &b);
            *out = (Val){ V_BOOL, !b, 0, NULL };
            break;
        }
        if ((rc = eval(E, F, n->a, out)))
            break;
        if (out->k == V_FLOAT)
            out->f = -out->f;
        else if (out->k != V_INT)
            rc = diag_error(E->d, n->loc, NULL, "cannot negate %s", elab_kind_str(out->k));
        else if (out->i == LLONG_MIN)
            rc = diag_error(E->d, n->loc, NULL, "integer overflow in `-`");
        else
            out->i = -out->i;
        break;
    case AST_BINARY: rc = eval_binary(E, F, n, out); break;
    case AST_COND: {
        int c;
        rc = eval_bool(E, F, n->a, &c) || eval(E, F, c ? n->b : n->c, out) ? -1 : 0;
        break;
    }
    case AST_CALL: rc = eval_call(E, F, n, out); break;
    case AST_LIST: rc = eval_list(E, F, n, out); break;
    case AST_INDEX: {
        Val a, i;
        rc = eval(E, F, n->a, &a) || eval(E, F, n->b, &i) || elab_index(E, n, a, i, out) ? -1 : 0;
        break;
    }
    default: IR_ASSERT(!"not an expression");
    }
    E->depth--;
    return rc;
}

/* ---- blocks ------------------------------------------------------------ */

/* block name(p1, p2 = default, ...) called with args (args[0] the input
 * tensor).  Binds parameters, runs the body in a new frame and scope; the
 * result is the returned value, or the final `x` without a return. */
static int call_block(Elab *E, Frame *F, const Ast *call, const Ast *blk, Arg *args, int nargs, Val *out) {
    for (Frame *f = F; f; f = f->caller)
        if (f->block == blk) {
            const char *via = F->block && F->block != blk ? fe_arena_printf(&E->ar, "the cycle goes through `%s`", F->block->name) : NULL;
            return diag_error(E->d, call->loc, via, "block `%s` calls itself; recursion is not allowed", blk->name);
        }
    if (E->block_depth >= FE_MAX_BLOCK_DEPTH)
        return diag_error(E->d, call->loc, NULL, "blocks nested more than %d deep", FE_MAX_BLOCK_DEPTH);
    if (nargs == 0 || args[0].v.k != V_TENSOR || args[0].name)
        return diag_error(E->d, call->loc, "pass the input first: `x |> name(...)` or `name(x, ...)`",
                          "block `%s` needs an input tensor", blk->name);
    Frame nf = { .block = blk, .caller = F };
    const char *local;
    const char *full = elab_layer_name(E, F->names, blk->name, call->label, call->loc, &local);
    if (!full)
        return -1;
    nf.names = names_new(E, F->names, local);
    assign(E, &nf, "x", args[0].v);
    /* bind positional, then named, then defaults */
    int np = ast_list_len(blk->list), k = 0;
    const Ast **pd = fe_arena_alloc(&E->ar, sizeof *pd * (size_t)(np + 1));
    char *bound = fe_arena_alloc(&E->ar, (size_t)np + 1);
    for (const Ast *p = blk->list; p; p = p->next)
        pd[k++] = p;
    int pos = 0;
    for (int i = 1; i < nargs; i++) {
        int slot = -1;
        if (args[i].v.k == V_TENSOR)
            return diag_error(E->d, args[i].loc, "a block takes one input tensor, passed first",
                              "block parameters are integers, booleans, reals or lists, not tensors");
        if (!args[i].name) {
            if (pos >= np)
                return diag_error(E->d, args[i].loc, NULL, "too many arguments to block `%s` (it takes %d)",
                                  blk->name, np);
            slot = pos++;
        } else {
            for (int j = 0; j < np; j++)
                if (!strcmp(pd[j]->name, args[i].name))
                    slot = j;
            if (slot < 0) {
                const char *hint = NULL;
                for (int j = 0; j < np && !hint; j++)
                    if (fe_edit_distance(args[i].name, pd[j]->name) <= 2)
                        hint = fe_arena_printf(&E->ar, "did you mean `%s`?", pd[j]->name);
                return diag_error(E->d, args[i].loc, hint, "block `%s` has no parameter `%s`", blk->name,
                                  args[i].name);
            }
        }
        if (bound[slot])
            return diag_error(E->d, args[i].loc, NULL, "parameter `%s` given twice", pd[slot]->name);
        bound[slot] = 1;
        assign(E, &nf, pd[slot]->name, args[i].v);
    }
    for (int j = 0; j < np; j++) {
        if (bound[j])
            continue;
        if (!pd[j]->a)
            return diag_error(E->d, call->loc, NULL, "block `%s` needs a value for `%s`", blk->name, pd[j]->name);
        Val v;
        if (eval(E, &nf, pd[j]->a, &v))
            return -1;
        assign(E, &nf, pd[j]->name, v);
    }
    E->block_depth++;
    int rc = exec_list(E, &nf, blk->list2);
    E->block_depth--;
    if (rc)
        return -1;
    *out = nf.returned ? nf.ret : lookup(E, &nf, "x")->v;
    if (out->k != V_TENSOR)
        return diag_error(E->d, call->loc, NULL, "block `%s` returns %s, not a tensor", blk->name, elab_kind_str(out->k));
    (void)full;
    return 0;
}

static int eval_call(Elab *E, Frame *F, const Ast *call, Val *out) {
    const Builtin *b = elab_find_builtin(call->name);
    const Ast *blk = b ? NULL : find_block(E, call->name);
    int fn = elab_is_function(call->name);
    if (!b && !blk && !fn)
        return diag_error(E->d, call->loc, suggest(E, F, call->name, 1), "unknown op or block `%s`", call->name);
    int nargs = ast_list_len(call->list), i = 0;
    Arg *args = fe_arena_alloc(&E->ar, sizeof *args * (size_t)(nargs + 1));
    for (const Ast *a = call->list; a; a = a->next, i++) {
        args[i].name = a->name;
        args[i].loc = a->a->loc;
        if (i > 0 && !a->name && args[i - 1].name)
            return diag_error(E->d, a->loc, NULL, "positional argument after a named one");
        if (eval(E, F, a->a, &args[i].v))
            return -1;
    }
    if (fn)
        return elab_call_function(E, call, args, nargs, out);
    return b ? elab_run_builtin(E, F, call, b, args, nargs, out) : call_block(E, F, call, blk, args, nargs, out);
}

/* ---- statements -------------------------------------------------------- */

/* for name in xs { } and for (n1, n2, ...) in xs { }: the body once per
 * element, in order; with several names each element is a list of that
 * many values. */
static int exec_for_list(Elab *E, Frame *F, const Ast *s) {
    Val xs;
    if (eval(E, F, s->a, &xs))
        return -1;
    if (xs.k != V_LIST)
        return diag_error(E->d, s->a->loc, xs.k == V_INT ? "a range of integers is written `lo..hi`" : NULL,
                          "`for` runs over a list or a range, got %s", elab_kind_str(xs.k));
    if (xs.l->n > FE_MAX_LOOP)
        return diag_error(E->d, s->loc, "networks need far fewer layers", "loop runs %lld times (limit %d)",
                          (long long)xs.l->n, FE_MAX_LOOP);
    int nnames = ast_list_len(s->list2);
    for (int i = 0; i < xs.l->n && !F->returned; i++) {
        if (++E->steps > FE_MAX_STEPS)
            return diag_error(E->d, s->loc, NULL, "more than %d loop iterations in all", FE_MAX_STEPS);
        Val e = xs.l->item[i];
        if (!nnames) {
            assign(E, F, s->name, e);
        } else {
            if (e.k != V_LIST)
                return diag_error(E->d, s->list2->loc, NULL, "element %d of the list is %s; the loop unpacks %d values",
                                  i, elab_kind_str(e.k), nnames);
            if (e.l->n != nnames)
                return diag_error(E->d, s->list2->loc, NULL, "element %d of the list has %d value%s; the loop unpacks %d",
                                  i, e.l->n, e.l->n == 1 ? "" : "s", nnames);
            int k = 0;
            for (const Ast *nm = s->list2; nm; nm = nm->next)
                assign(E, F, nm->name, e.l->item[k++]);
        }
        if (exec_list(E, F, s->list))
            return -1;
    }
    return 0;
}

static int exec_stmt(Elab *E, Frame *F, const Ast *s) {
    Val v, hi;
    switch (s->kind) {
    case AST_ASSIGN:
        if (eval(E, F, s->a, &v))
            return -1;
        assign(E, F, s->name, v);
        return 0;
    case AST_RETURN:
        if (eval(E, F, s->a, &F->ret))
            return -1;
        F->returned = 1;
        return 0;
    case AST_IF: {
        int c = 0;
        if (eval_bool(E, F, s->a, &c))
            return -1;
        if (c)
            return exec_list(E, F, s->list);
        return exec_list(E, F, s->list2);
    }
    case AST_FOR:
        if (!s->b)
            return exec_for_list(E, F, s);
        if (eval(E, F, s->a, &v) || eval(E, F, s->b, &hi))
            return -1;
        if (v.k != V_INT || hi.k != V_INT)
            return diag_error(E->d, v.k != V_INT ? s->a->loc : s->b->loc,
                              (v.k != V_INT ? v.k : hi.k) == V_FLOAT ? "`int(r)` truncates a real number toward zero" : NULL,
                              "loop bounds must be integers, got %s",
                              elab_kind_str(v.k != V_INT ? v.k : hi.k));
        if (hi.i > v.i && (hi.i - v.i > FE_MAX_LOOP || hi.i - v.i < 0))
            return diag_error(E->d, s->loc, "networks need far fewer layers", "loop runs %lld times (limit %d)",
                              hi.i - v.i, FE_MAX_LOOP);
        for (long long i = v.i; i < hi.i && !F->returned; i++) {
            if (++E->steps > FE_MAX_STEPS)
                return diag_error(E->d, s->loc, NULL, "more than %d loop iterations in all", FE_MAX_STEPS);
            assign(E, F, s->name, (Val){ V_INT, i, 0, NULL });
            if (exec_list(E, F, s->list))
                return -1;
        }
        return 0;
    case AST_SCOPE: {
        Names *saved = F->names;
        const char *local;
        if (!elab_layer_name(E, saved, "scope", s->name, s->loc, &local))
            return -1;
        F->names = names_new(E, saved, local);
        int rc = exec_list(E, F, s->list);
        F->names = saved;
        return rc;
    }
    default: IR_ASSERT(!"not a statement");
    }
}

static int exec_list(Elab *E, Frame *F, const Ast *s) {
    if (++E->depth > FE_MAX_DEPTH) {
        E->depth--;
        return s ? diag_error(E->d, s->loc, NULL, "statements are too deeply nested") : -1;
    }
    int rc = 0;
    for (; s && !F->returned && rc == 0; s = s->next)
        rc = exec_stmt(E, F, s);
    E->depth--;
    return rc;
}

/* ---- the program ------------------------------------------------------- */

/* Replaces *v, the default of network parameter p, by the value the command
 * line gives (a value written as in the language, read and evaluated with
 * the parameters defined so far); it must have the default's kind, except
 * that a real takes an integer and a boolean takes 0 or 1.  Errors in the
 * text are located in it. */
static int define_value(Elab *E, const Ast *p, const FeDefine *def, Val *v) {
    const char *text = def->value ? def->value : "";
    Diag *saved = E->d, dd;
    diag_init(&dd, fe_arena_printf(&E->ar, "--param %s", def->name), text, strlen(text), saved->out);
    Ast *e;
    Val x;
    Frame top = { 0 };
    E->d = &dd;
    int rc = fe_parse_expr(text, strlen(text), &E->ar, &dd, &e) || eval(E, &top, e, &x) ? -1 : 0;
    E->d = saved;
    saved->nerrors += dd.nerrors;
    if (rc)
        return -1;
    if (x.k == V_INT && (v->k == V_FLOAT || (v->k == V_BOOL && (x.i == 0 || x.i == 1))))
        x = v->k == V_FLOAT ? (Val){ V_FLOAT, 0, (double)x.i, NULL } : (Val){ V_BOOL, x.i, 0, NULL };
    if (x.k != v->k)
        return diag_error(E->d, p->loc, NULL, "`%s` is %s; the command line gives %s (`%s`)", p->name,
                          elab_kind_str(v->k), elab_kind_str(x.k), text);
    *v = x;
    return 0;
}

static int define_params(Elab *E, const Ast *prog) {
    const FeOptions *o = E->o;
    Frame top = { 0 };
    for (const Ast *it = prog->list; it; it = it->next) {
        if (it->kind != AST_PARAM)
            continue;
        for (Var *v = E->globals; v; v = v->next)
            if (!strcmp(v->name, it->name))
                return diag_error(E->d, it->loc, NULL, "parameter `%s` is defined twice", it->name);
        Val v;
        if (eval(E, &top, it->a, &v))
            return -1;
        if (v.k == V_TENSOR)
            return diag_error(E->d, it->a->loc, NULL, "a network parameter cannot be a tensor");
        for (int i = 0; o && i < o->ndefines; i++)
            if (o->defines[i].name && !strcmp(o->defines[i].name, it->name) && define_value(E, it, &o->defines[i], &v))
                return -1;
        Var *p = fe_arena_alloc(&E->ar, sizeof *p);
        *p = (Var){ it->name, v, E->globals };
        E->globals = p;
    }
    for (int i = 0; o && i < o->ndefines; i++) {
        const char *name = o->defines[i].name ? o->defines[i].name : "";
        Var *v = E->globals;
        while (v && strcmp(v->name, name))
            v = v->next;
        if (!v) {
            const char *hint = suggest(E, NULL, name, 0);
            return diag_error_noloc(E->d, "the network has no parameter `%s` to set%s%s", name, hint ? "; " : "",
                                    hint ? hint : "");
        }
    }
    return 0;
}

/* train { lr = 0.1, batch = 256, epochs = 10, resize = 28 } */
static int train_settings(Elab *E, const Ast *prog) {
    IrTrain *t = &E->g->train;
    *t = (IrTrain){ .lr = 0.1, .batch = 256, .epochs = 10, .resize = 28 };
    const Ast *seen = NULL;
    Frame top = { 0 };
    for (const Ast *it = prog->list; it; it = it->next) {
        if (it->kind != AST_TRAIN)
            continue;
        if (seen)
            return diag_error(E->d, it->loc, NULL, "a second `train` section");
        seen = it;
        for (const Ast *s = it->list; s; s = s->next) {
            static const char *keys[] = { "lr", "batch", "epochs", "resize" };
            int k = 0;
            while (k < 4 && strcmp(keys[k], s->name))
                k++;
            if (k == 4) {
                const char *hint = "the settings are lr, batch, epochs and resize";
                for (int j = 0; j < 4; j++)
                    if (fe_edit_distance(s->name, keys[j]) <= 2)
                        hint = fe_arena_printf(&E->ar, "did you mean `%s`?", keys[j]);
                return diag_error(E->d, s->loc, hint, "unknown training setting `%s`", s->name);
            }
            Val v;
            if (eval(E, &top, s->a, &v))
                return -1;
            if (k == 0) {
                double lr = v.k == V_FLOAT ? v.f : v.k == V_INT ? (double)v.i : -1;
                if (!(lr > 0) || !isfinite(lr))
                    return diag_error(E->d, s->a->loc, NULL, "`lr` must be a positive number");
                t->lr = lr;
                continue;
            }
            long long hi = k == 3 ? 4096 : 1 << 20;
            if (v.k != V_INT || v.i < 1 || v.i > hi)
                return diag_error(E->d, s->a->loc, NULL, "`%s` must be an integer from 1 to %lld", keys[k], hi);
            if (k == 1) t->batch = (int)v.i;
            if (k == 2) t->epochs = (int)v.i;
            if (k == 3) t->resize = (int)v.i;
        }
    }
    return 0;
}

static int check_blocks(Elab *E, const Ast *prog) {
    for (const Ast *b = prog->list; b; b = b->next) {
        if (b->kind != AST_BLOCK)
            continue;
        if (elab_find_builtin(b->name) || elab_is_function(b->name))
            return diag_error(E->d, b->loc, "choose another name", "block `%s` has the name of a built-in %s", b->name,
                              elab_is_function(b->name) ? "function" : "op");
        if (find_block(E, b->name) != b)
            return diag_error(E->d, b->loc, NULL, "block `%s` is defined twice", b->name);
        for (const Ast *p = b->list; p; p = p->next) {
            if (!strcmp(p->name, "x"))
                return diag_error(E->d, p->loc, "`x` is the block's input tensor", "parameter named `x`");
            for (const Ast *q = b->list; q != p; q = q->next)
                if (!strcmp(q->name, p->name))
                    return diag_error(E->d, p->loc, NULL, "parameter `%s` declared twice", p->name);
        }
    }
    return 0;
}

int fe_elab(const Ast *prog, const FeOptions *o, IrGraph *g, Diag *d) {
    Elab E = { .o = o, .g = g, .d = d, .blocks = prog->list };
    fe_arena_init(&E.ar);
    int rc = -1;
    g->mode = o ? o->mode : IR_TRAIN;
    const Ast *net = NULL;
    for (const Ast *it = prog->list; it; it = it->next)
        if (it->kind == AST_NET) {
            if (net) {
                diag_error(d, it->loc, NULL, "a second `net` section");
                goto out;
            }
            net = it;
        }
    if (check_blocks(&E, prog) || define_params(&E, prog) || train_settings(&E, prog))
        goto out;
    /* before the net runs: height(x) and width(x) see the input's real size */
    if (o && o->resize) g->train.resize = o->resize;
    if (o && o->batch) g->train.batch = (int)o->batch;
    if (!net) {
        diag_error(d, (IrLoc){ 1, 1 }, "write the network as `net { ... }`", "no `net` section in the file");
        goto out;
    }
    int in = ir_node_new(g, IR_OP_INPUT, NULL, 0, 1, "input", net->loc);
    g->nodes[in].attr.input.c = 1;
    g->nodes[in].attr.input.h = g->nodes[in].attr.input.w = g->train.resize;
    g->input = ir_out(g, in, 0);
    Frame top = { .names = names_new(&E, NULL, "") };
    assign(&E, &top, "x", (Val){ V_TENSOR, g->input, 0, NULL });
    if (exec_list(&E, &top, net->list))
        goto out;
    Val res = top.returned ? top.ret : lookup(&E, &top, "x")->v;
    if (res.k != V_TENSOR) {
        diag_error(d, net->loc, NULL, "the network returns %s, not a tensor", elab_kind_str(res.k));
        goto out;
    }
    g->logits = (int)res.i;
    int lab = ir_node_new(g, IR_OP_LABELS, NULL, 0, 1, "labels", net->loc);
    g->labels = ir_out(g, lab, 0);
    int xin[2] = { g->logits, g->labels };
    int loss = ir_node_new(g, IR_OP_SOFTMAX_XENT, xin, 2, 1, "loss", net->loc);
    g->loss = ir_out(g, loss, 0);
    rc = 0;
out:
    fe_arena_free(&E.ar);
    return rc;
}
