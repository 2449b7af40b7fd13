/* views.c - values that live in part of another value's buffer.
 *
 * A channel concat costs a copy of every input, and its gradient a copy of
 * every slice; DenseNet's blocks pay them again at every layer.  Here the
 * plan makes them views instead:
 *   - a concat's input whose producer can write into part of a buffer is
 *     placed in its slot of the concat (DenseNet's successive concats nest,
 *     so one buffer holds the whole block and each layer writes its growth
 *     channels into it);
 *   - a slice of a gradient is the gradient's channels in place;
 *   - an accumulation whose first input is such a view and read nowhere
 *     else adds the others into it in place (the concat's gradient becomes
 *     the input's).
 * A kernel that reads or writes a view steps images by the root's image
 * size (ValueLoc.istride); plan_view_ok says which kernels do, and only
 * those get views.  Concats and slices left with nothing to copy are taken
 * out of the program.  Why an input could not be placed is recorded for
 * `netc dump --memory`.
 *
 * The checker's second half lives here too: it replays the program,
 * recording which value last wrote each part of each buffer, and checks
 * that every value a kernel reads still holds what was written for it. */
#include "program.h"

#include <stdlib.h>
#include <string.h>

static int64_t per_image(const Program *p, int v) {
    const IrType *t = ir_type(&p->g, v);
    int64_t n = ir_numel(t, p->batch);
    return t->batched && p->batch > 0 ? n / p->batch : n;
}

static int base_of(const Program *p, int v) {
    int k = p->buf[v].kind;
    return k == BUF_ALIAS || k == BUF_VIEW ? p->buf[v].alias : -1;
}

void program_loc(const Program *p, int v, ValueLoc *l) {
    int64_t off = 0;
    int u = v;
    for (int b; (b = base_of(p, u)) >= 0; u = b)
        if (p->buf[u].kind == BUF_VIEW) off += p->buf[u].voff;
    l->root = u;
    l->off = off;
    l->per = per_image(p, v);
    l->istride = per_image(p, u);
    l->strided = l->per != l->istride;
}

static int nchw(const Program *p, int v) {
    const IrType *t = ir_type(&p->g, v);
    return t->batched && t->rank == 4 && t->dtype == IR_F32;
}

int plan_view_ok(const Program *p, const int *kernel_of, int node, int slot) {
    const IrNode *n = ir_node(&p->g, node);
    const Kernel *k = kernel_of[node] >= 0 ? &p->kernels[kernel_of[node]] : NULL;
    switch (n->op) {
    case IR_OP_CONCAT: case IR_OP_SLICE:
        return 1;
    case IR_OP_BATCHNORM:
        return slot == 0;                 /* x */
    case IR_OP_BATCHNORM_BWD:
        return slot == 1;                 /* x */
    case IR_OP_ACCUM:   /* alone, or adding a batch norm's gradient as it is made */
        return k && (k->nnodes == 1 || (k->pattern == FUSE_RELU_BN_BWD && k->nodes[k->nnodes - 1] == node));
    case IR_OP_RELU:    /* alone, or written by its conv's epilogue */
        return k && (k->nnodes == 1 || (k->pattern == FUSE_CONV_RELU && k->nnodes == 2 && slot == -1));
    case IR_OP_ADD: case IR_OP_RELU_BWD: case IR_OP_SIGMOID_BWD: case IR_OP_DROPOUT_BWD:
        return k && k->nnodes == 1;       /* alone: image by image */
    case IR_OP_CONV2D: case IR_OP_MAXPOOL: case IR_OP_AVGPOOL:
        return slot == -1;                /* y */
    case IR_OP_CONV2D_BWD_DATA: case IR_OP_CONV2D_BWD_WEIGHT: case IR_OP_MAXPOOL_BWD: case IR_OP_AVGPOOL_BWD:
        return slot == 0;                 /* dy */
    default:
        return 0;
    }
}

/* ---- planning ------------------------------------------------------------------ */

typedef struct {
    Program *p;
    int *kernel_of;
} Vp;

static void why(Vp *s, int v, const char *what, int node) {
    if (s->p->view_why[v]) return;
    s->p->view_why[v] = what;
    s->p->view_why_node[v] = node;
}

/* Whether every reader of v (and v's producer, unless made_here) takes v as
 * a strided view; records why not. */
static int readers_ok(Vp *s, int v, int made_here) {
    const IrGraph *g = &s->p->g;
    if (!made_here) {
        int pn = ir_value(g, v)->node;
        const IrNode *n = ir_node(g, pn);
        int j = 0;
        while (j < n->nout && n->out[j] != v) j++;
        if (s->kernel_of[pn] < 0 || !plan_view_ok(s->p, s->kernel_of, pn, -1 - j)) {
            why(s, v, "its producer writes whole buffers only", pn);
            return 0;
        }
    }
    for (int i = 0; i < g->nnodes; i++) {
        const IrNode *n = ir_node(g, i);
        for (int j = 0; j < n->nin; j++)
            if (n->in[j] == v && s->kernel_of[i] >= 0 && !plan_view_ok(s->p, s->kernel_of, i, j)) {
                why(s, v, "read by a kernel that takes whole buffers only", i);
                return 0;
            }
    }
    return 1;
}

static int root_free(const Program *p, int v) {
    ValueLoc l;
    program_loc(p, v, &l);
    return p->buf[l.root].kind == BUF_NONE;
}

static void make_view(Program *p, int v, int base, int64_t voff) {
    p->buf[v].kind = BUF_VIEW;
    p->buf[v].alias = base;
    p->buf[v].voff = voff;
}

static void place_concats(Vp *s) {
    Program *p = s->p;
    const IrGraph *g = &p->g;
    int *uses = ir_xcalloc((size_t)g->nvalues, sizeof(int));   /* concat slots reading each value */
    for (int i = 0; i < g->nnodes; i++)
        if (ir_node(g, i)->op == IR_OP_CONCAT)
            for (int j = 0; j < ir_node(g, i)->nin; j++) uses[ir_node(g, i)->in[j]]++;
    for (int i = 0; i < g->nnodes; i++) {
        const IrNode *n = ir_node(g, i);
        if (n->op != IR_OP_CONCAT || s->kernel_of[i] < 0) continue;
        int y = n->out[0];
        const IrType *ty = ir_type(g, y);
        int64_t hw = ty->d[2] * ty->d[3], c0 = 0;
        for (int j = 0; j < n->nin; j++) {
            int v = n->in[j];
            int64_t c = ir_type(g, v)->d[1];
            if (p->buf[y].kind != BUF_NONE || !nchw(p, y)) why(s, v, "the concat's own buffer is not an activation", i);
            else if (p->buf[v].kind != BUF_NONE) why(s, v, "it is a weight, the input batch, a view or kept in registers", i);
            else if (uses[v] != 1) why(s, v, "it is an input of more than one concat slot", i);
            else if (readers_ok(s, v, 0)) make_view(p, v, y, c0 * hw);
            c0 += c;
        }
    }
    free(uses);
}

static void place_slices(Vp *s) {
    Program *p = s->p;
    const IrGraph *g = &p->g;
    for (int i = 0; i < g->nnodes; i++) {
        const IrNode *n = ir_node(g, i);
        if (n->op != IR_OP_SLICE || s->kernel_of[i] < 0) continue;
        int y = n->out[0], x = n->in[0];
        if (p->buf[y].kind != BUF_NONE || !nchw(p, y) || !nchw(p, x) || !root_free(p, x)) continue;
        const IrType *tx = ir_type(g, x);
        if (readers_ok(s, y, 1)) make_view(p, y, x, n->attr.slice.c0 * tx->d[2] * tx->d[3]);
    }
}

/* A kernel's real read of v: not a concat or slice that only makes views. */
static int real_read(const Program *p, const IrNode *n, int v) {
    if (n->op == IR_OP_SLICE) return p->buf[n->out[0]].kind != BUF_VIEW;
    if (n->op == IR_OP_CONCAT) return !(p->buf[v].kind == BUF_VIEW && p->buf[v].alias == n->out[0]);
    return 1;
}

static int ranges_meet(const ValueLoc *a, const ValueLoc *b) {
    return a->root == b->root && a->off < b->off + b->per && b->off < a->off + a->per;
}

/* accum(a, ...) into a, when a is a view that nothing else reads and no
 * value sharing a's bytes is read at or after the accumulation. */
static void place_accums(Vp *s) {
    Program *p = s->p;
    const IrGraph *g = &p->g;
    for (int i = 0; i < g->nnodes; i++) {
        const IrNode *n = ir_node(g, i);
        int k = s->kernel_of[i];
        if (n->op != IR_OP_ACCUM || k < 0) continue;
        int y = n->out[0], a = n->in[0];
        if (p->buf[y].kind != BUF_NONE || p->buf[a].kind != BUF_VIEW || !nchw(p, y)) continue;
        ValueLoc la;
        program_loc(p, a, &la);
        int ok = p->buf[la.root].kind == BUF_NONE;
        for (int j = 1; j < n->nin && ok; j++) {
            ValueLoc lj;
            program_loc(p, n->in[j], &lj);
            ok = lj.root != la.root;
        }
        /* every other value over a's bytes: its real reads end before k */
        for (int u = 0; u < g->nvalues && ok; u++) {
            if (u == y) continue;
            ValueLoc lu;
            program_loc(p, u, &lu);
            if (!ranges_meet(&la, &lu)) continue;
            for (int r = 0; r < g->nnodes && ok; r++) {
                const IrNode *m = ir_node(g, r);
                int kr = s->kernel_of[r];
                if (kr < 0) continue;
                for (int j = 0; j < m->nin && ok; j++)
                    if (m->in[j] == u && real_read(p, m, u) && (u == a ? r != i : kr >= k)) ok = 0;
            }
        }
        if (ok && readers_ok(s, y, 1)) make_view(p, y, a, 0);
    }
}

/* Drops kernels that are one concat or slice with nothing left to copy. */
static void drop_view_kernels(Vp *s) {
    Program *p = s->p;
    int nk = 0;
    for (int k = 0; k < p->nkernels; k++) {
        Kernel *kk = &p->kernels[k];
        int drop = 0;
        if (kk->nnodes == 1) {
            const IrNode *n = ir_node(&p->g, kk->nodes[0]);
            if (n->op == IR_OP_SLICE) drop = p->buf[n->out[0]].kind == BUF_VIEW;
            if (n->op == IR_OP_CONCAT) {
                drop = 1;
                for (int j = 0; j < n->nin; j++)
                    if (!(p->buf[n->in[j]].kind == BUF_VIEW && p->buf[n->in[j]].alias == n->out[0])) drop = 0;
            }
        }
        if (drop) free(kk->nodes);
        else p->kernels[nk++] = *kk;
    }
    p->nkernels = nk;
    for (int i = 0; i < p->g.nnodes; i++) s->kernel_of[i] = -1;
    for (int k = 0; k < p->nkernels; k++)
        for (int j = 0; j < p->kernels[k].nnodes; j++) s->kernel_of[p->kernels[k].nodes[j]] = k;
}

void plan_views(Program *p, int *kernel_of, const PlanOptions *o) {
    p->view_why = ir_xcalloc((size_t)p->g.nvalues + 1, sizeof(char *));
    p->view_why_node = ir_xcalloc((size_t)p->g.nvalues + 1, sizeof(int));
    if (o && o->concat_copy) {
        for (int i = 0; i < p->g.nnodes; i++) {
            const IrNode *n = ir_node(&p->g, i);
            if (n->op == IR_OP_CONCAT)
                for (int j = 0; j < n->nin; j++)
                    if (!p->view_why[n->in[j]]) {
                        p->view_why[n->in[j]] = "--concat copy";
                        p->view_why_node[n->in[j]] = i;
                    }
        }
        return;
    }
    Vp s = {p, kernel_of};
    place_concats(&s);
    place_slices(&s);
    place_accums(&s);
    drop_view_kernels(&s);
}

/* ---- checking: replay the writes ------------------------------------------------ */

/* For each root, which value wrote each element range of an image last. */
typedef struct { int64_t lo, hi; int tag; } Span;
typedef struct { Span *s; int n, cap; } Spans;

typedef struct {
    const Program *p;
    Spans *by_root;
    FILE *f;
    int kernel;
} Replay;

static void spans_write(Spans *sp, int64_t lo, int64_t hi, int tag) {
    Span *out = ir_xmalloc(sizeof(Span) * (size_t)(sp->n + 2));
    int n = 0;
    for (int i = 0; i < sp->n; i++) {
        Span x = sp->s[i];
        if (x.hi <= lo || x.lo >= hi) { out[n++] = x; continue; }
        if (x.lo < lo) out[n++] = (Span){x.lo, lo, x.tag};
        if (x.hi > hi) out[n++] = (Span){hi, x.hi, x.tag};
    }
    out[n++] = (Span){lo, hi, tag};
    free(sp->s);
    sp->s = out;
    sp->n = n;
}

/* Every element of [lo, hi) was last written as value tag. */
static int spans_hold(const Replay *r, int root, int64_t lo, int64_t hi, int tag, int reader) {
    const Spans *sp = &r->by_root[root];
    int64_t covered = 0;
    for (int i = 0; i < sp->n; i++) {
        const Span *x = &sp->s[i];
        if (x->hi <= lo || x->lo >= hi) continue;
        if (x->tag != tag) {
            fprintf(r->f, "plan: kernel %d reads %%%d, but elements [%lld, %lld) of its images in %%%d's buffer were "
                    "last written as %%%d\n", r->kernel, reader, (long long)(x->lo > lo ? x->lo : lo),
                    (long long)(x->hi < hi ? x->hi : hi), root, x->tag);
            return -1;
        }
        covered += (x->hi < hi ? x->hi : hi) - (x->lo > lo ? x->lo : lo);
    }
    if (covered != hi - lo) {
        fprintf(r->f, "plan: kernel %d reads %%%d before all of it is written (in %%%d's buffer)\n", r->kernel, reader,
                root);
        return -1;
    }
    return 0;
}

/* Elements [lo, hi) (root coordinates) hold what value u's content needs. */
static int holds(const Replay *r, int u, int64_t lo, int64_t hi, int reader, int depth) {
    const Program *p = r->p;
    const IrGraph *g = &p->g;
    if (depth > g->nvalues) {
        fprintf(r->f, "plan: %%%d: views form a cycle\n", u);
        return -1;
    }
    if (p->buf[u].kind == BUF_ALIAS) return holds(r, p->buf[u].alias, lo, hi, reader, depth + 1);
    const IrNode *n = ir_node(g, ir_value(g, u)->node);
    ValueLoc lu;
    program_loc(p, u, &lu);
    if (n->op == IR_OP_SLICE && p->buf[u].kind == BUF_VIEW) return holds(r, n->in[0], lo, hi, reader, depth + 1);
    if (n->op == IR_OP_CONCAT) {
        const IrType *ty = ir_type(g, u);
        int64_t hw = ty->d[2] * ty->d[3], c0 = 0;
        for (int j = 0; j < n->nin; j++) {
            int v = n->in[j];
            int64_t a = lu.off + c0 * hw, b = a + ir_type(g, v)->d[1] * hw;
            c0 += ir_type(g, v)->d[1];
            if (a < lo) a = lo;
            if (b > hi) b = hi;
            if (a >= b) continue;
            int placed = p->buf[v].kind == BUF_VIEW && p->buf[v].alias == u;
            if (placed ? holds(r, v, a, b, reader, depth + 1) : spans_hold(r, lu.root, a, b, u, reader)) return -1;
        }
        return 0;
    }
    return spans_hold(r, lu.root, lo, hi, u, reader);
}

/* The elements kernel node n writes as value v: all of v, or for a concat
 * the slots of the inputs it copies. */
static void replay_write(Replay *r, const IrNode *n, int v) {
    const Program *p = r->p;
    ValueLoc l;
    program_loc(p, v, &l);
    if (p->buf[v].kind == BUF_ALIAS || p->buf[l.root].kind != BUF_ARENA) return;
    if (n->op != IR_OP_CONCAT) {
        spans_write(&r->by_root[l.root], l.off, l.off + l.per, v);
        return;
    }
    const IrType *ty = ir_type(&p->g, v);
    int64_t hw = ty->d[2] * ty->d[3], c0 = 0;
    for (int j = 0; j < n->nin; j++) {
        int x = n->in[j];
        int64_t c = ir_type(&p->g, x)->d[1];
        if (!(p->buf[x].kind == BUF_VIEW && p->buf[x].alias == v))
            spans_write(&r->by_root[l.root], l.off + c0 * hw, l.off + (c0 + c) * hw, v);
        c0 += c;
    }
}

int program_check_views(const Program *p, FILE *f) {
    const IrGraph *g = &p->g;
    for (int v = 0; v < g->nvalues; v++) {
        if (p->buf[v].kind != BUF_VIEW) continue;
        ValueLoc l;
        int u = v, steps = 0;
        while (base_of(p, u) >= 0 && steps++ <= g->nvalues) u = base_of(p, u);
        if (steps > g->nvalues) {
            fprintf(f, "plan: %%%d: views form a cycle\n", v);
            return -1;
        }
        program_loc(p, v, &l);
        /* where its maker says: its slot of the concat, the slice's
         * channels, or over the accumulation's first input */
        int base = p->buf[v].alias;
        const IrNode *m = ir_node(g, ir_value(g, v)->node), *bn = ir_node(g, ir_value(g, base)->node);
        int64_t want = -1;
        if (m->op == IR_OP_SLICE && m->in[0] == base) {
            want = m->attr.slice.c0 * ir_type(g, base)->d[2] * ir_type(g, base)->d[3];
        } else if (m->op == IR_OP_ACCUM && m->in[0] == base) {
            want = 0;
        } else if (bn->op == IR_OP_CONCAT) {
            int64_t c0 = 0;
            for (int j = 0; j < bn->nin && want < 0; j++) {
                if (bn->in[j] == v) want = c0 * ir_type(g, base)->d[2] * ir_type(g, base)->d[3];
                c0 += ir_type(g, bn->in[j])->d[1];
            }
        }
        if (want != p->buf[v].voff) {
            fprintf(f, "plan: view %%%d at element %lld of %%%d's images, where its %s puts it at %lld\n", v,
                    (long long)p->buf[v].voff, base, want < 0 ? "place" : "maker", (long long)want);
            return -1;
        }
        if (p->buf[l.root].kind != BUF_ARENA || p->buf[v].voff < 0 || l.off < 0 || l.off + l.per > l.istride) {
            fprintf(f, "plan: view %%%d (elements [%lld, +%lld) of each image of %%%d) lies outside its root\n", v,
                    (long long)l.off, (long long)l.per, l.root);
            return -1;
        }
    }
    Replay r = {p, ir_xcalloc((size_t)g->nvalues, sizeof(Spans)), f, 0};
    int rc = 0;
    for (int k = 0; k < p->nkernels && !rc; k++) {
        r.kernel = k;
        for (int j = 0; j < p->kernels[k].nnodes && !rc; j++) {
            const IrNode *n = ir_node(g, p->kernels[k].nodes[j]);
            for (int i = 0; i < n->nin && !rc; i++) {
                ValueLoc l;
                program_loc(p, n->in[i], &l);
                if (p->buf[l.root].kind == BUF_ARENA) rc = holds(&r, n->in[i], l.off, l.off + l.per, n->in[i], 0);
            }
            for (int i = 0; i < n->nout && !rc; i++)
                if (n->out[i] >= 0) replay_write(&r, n, n->out[i]);
        }
    }
    for (int v = 0; v < g->nvalues; v++) free(r.by_root[v].s);
    free(r.by_root);
    return rc;
}
