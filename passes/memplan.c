/* memplan.c - buffers for every value of a program.
 *
 * Weights, gradients, running statistics and the input batch persist across
 * steps (slots bound by the runtime).  Views share their source's buffer.
 * Every other value lives in one arena: its lifetime is [producing kernel,
 * last consuming kernel], and values whose lifetimes overlap get disjoint
 * byte ranges.  Placement is greedy by size (largest first, lowest offset
 * that fits), as TFLite's and ggml-alloc's planners do. */
#include "program.h"

#include <stdlib.h>
#include <string.h>

enum { ALIGN = 64 };

static int64_t align_up(int64_t x) { return (x + ALIGN - 1) / ALIGN * ALIGN; }

/* Adds the bytes of value v to *sum, or reports at v's producer that the
 * program passes PROGRAM_MAX_BYTES. */
static int add_bytes(const Program *p, int v, int64_t bytes, int64_t *sum, const char *what, Diag *d) {
    if (!__builtin_add_overflow(*sum, bytes, sum) && *sum <= PROGRAM_MAX_BYTES) return 0;
    const IrGraph *g = &p->g;
    return diag_error(d, ir_node(g, ir_value(g, v)->node)->loc, "reduce the batch or the input size (resize)",
                      "the %s buffers of the %s step pass 2^48 bytes (256 TiB) here, at batch %lld", what,
                      g->mode == IR_TRAIN ? "training" : "evaluation", (long long)p->batch);
}

static void add_slot(Program *p, int v, SlotKind kind, const char *name) {
    p->slots = ir_xrealloc(p->slots, sizeof(Slot) * (size_t)(p->nslots + 1));
    Slot *s = &p->slots[p->nslots];
    s->name = ir_strdup(name);
    s->kind = (int)kind;
    s->value = v;
    s->bytes = p->buf[v].bytes;
    p->buf[v].kind = BUF_PERSIST;
    p->buf[v].slot = p->nslots++;
}

static int root(const Program *p, int v) {
    while (p->buf[v].kind == BUF_ALIAS || p->buf[v].kind == BUF_VIEW) v = p->buf[v].alias;
    return v;
}

static const Program *sort_prog;
static int by_size_desc(const void *a, const void *b) {
    int64_t x = sort_prog->buf[*(const int *)a].bytes, y = sort_prog->buf[*(const int *)b].bytes;
    if (x != y) return x < y ? 1 : -1;
    return *(const int *)a - *(const int *)b;
}

static int by_life_desc(const void *a, const void *b) {
    const BufPlan *x = &sort_prog->buf[*(const int *)a], *y = &sort_prog->buf[*(const int *)b];
    int lx = x->last - x->first, ly = y->last - y->first;
    if (lx != ly) return ly - lx;
    return by_size_desc(a, b);
}

static int by_first(const void *a, const void *b) {
    const BufPlan *x = &sort_prog->buf[*(const int *)a], *y = &sort_prog->buf[*(const int *)b];
    if (x->first != y->first) return x->first - y->first;
    return by_size_desc(a, b);
}

static int by_start(const void *a, const void *b) {
    int64_t x = ((const int64_t *)a)[0], y = ((const int64_t *)b)[0];
    return (x > y) - (x < y);
}

/* The most bytes alive at any one kernel: no placement beats it. */
static int64_t live_peak(const Program *p, const int *vals, int n) {
    int nk = p->nkernels > 0 ? p->nkernels : 1;
    int64_t *d = ir_xcalloc((size_t)nk + 1, sizeof(int64_t)), cur = 0, peak = 0;
    for (int i = 0; i < n; i++) {
        const BufPlan *b = &p->buf[vals[i]];
        if (b->first < 0) continue;
        d[b->first] += align_up(b->bytes);
        d[b->last + 1] -= align_up(b->bytes);
    }
    for (int k = 0; k < nk; k++) {
        cur += d[k];
        if (cur > peak) peak = cur;
    }
    free(d);
    return peak;
}

/* Places the n arena values of order, in that order, each at the lowest
 * offset where it overlaps nothing placed that lives at the same time;
 * returns the arena's size.  busy: room for n byte ranges. */
static int64_t place(Program *p, const int *order, int n, int64_t (*busy)[2]) {
    int64_t top = 0;
    for (int i = 0; i < n; i++) {
        BufPlan *b = &p->buf[order[i]];
        int nb = 0;   /* byte ranges of placed buffers live at the same time, by offset */
        for (int j = 0; j < i; j++) {
            const BufPlan *q = &p->buf[order[j]];
            if (q->last < b->first || b->last < q->first) continue;
            busy[nb][0] = q->offset;
            busy[nb++][1] = q->offset + align_up(q->bytes);
        }
        qsort(busy, (size_t)nb, sizeof *busy, by_start);
        int64_t off = 0, need = align_up(b->bytes);
        for (int k = 0; k < nb; k++) {   /* first gap that fits */
            if (busy[k][0] >= off + need) break;
            if (busy[k][1] > off) off = busy[k][1];
        }
        b->offset = off;
        if (off + need > top) top = off + need;
    }
    return top;
}

/* A relu_bn_bwd kernel that makes its incoming gradient with a conv's data
 * gradient (dy) writes the batch norm's dx over it: dy is read only there,
 * and every backend reads each element of dy before it writes that element
 * of dx (the batch norm gradient's last pass goes element by element, each
 * channel in one task; run node by node, the relu gradient has read dy
 * before).  DenseNet's transitions: the peak with --recompute. */
static void inplace_bn_bwd(Program *p, const int *kernel_of) {
    const IrGraph *g = &p->g;
    for (int k = 0; k < p->nkernels; k++) {
        const Kernel *kn = &p->kernels[k];
        const IrNode *bn = ir_node(g, kn->nodes[kn->nnodes - 1]), *d = NULL;
        if (kn->pattern != FUSE_RELU_BN_BWD || bn->op != IR_OP_BATCHNORM_BWD) continue;
        for (int j = 0; j < kn->nnodes; j++)
            if (ir_node(g, kn->nodes[j])->op == IR_OP_CONV2D_BWD_DATA) d = ir_node(g, kn->nodes[j]);
        if (!d) continue;
        int v = d->out[0], w = bn->out[0], ok = p->buf[v].kind == BUF_NONE && p->buf[w].kind == BUF_NONE &&
                                               p->buf[v].bytes == p->buf[w].bytes;
        for (int i = 0; ok && i < g->nnodes; i++)
            if (ir_reads(ir_node(g, i), v) && kernel_of[i] != k) ok = 0;
        for (int u = 0; ok && u < g->nvalues; u++)
            if ((p->buf[u].kind == BUF_ALIAS || p->buf[u].kind == BUF_VIEW) && p->buf[u].alias == v) ok = 0;
        if (!ok) continue;
        p->buf[w].kind = BUF_ALIAS;
        p->buf[w].alias = v;
    }
}

int pass_plan_memory(Program *p, const PlanOptions *o, Diag *d) {
    IrGraph *g = &p->g;
    p->buf = ir_xcalloc((size_t)g->nvalues, sizeof(BufPlan));
    int *kernel_of = ir_xmalloc(sizeof(int) * (size_t)g->nnodes);
    for (int i = 0; i < g->nnodes; i++) kernel_of[i] = -1;
    for (int k = 0; k < p->nkernels; k++)
        for (int j = 0; j < p->kernels[k].nnodes; j++) kernel_of[p->kernels[k].nodes[j]] = k;

    for (int v = 0; v < g->nvalues; v++) {
        BufPlan *b = &p->buf[v];
        const IrValue *val = ir_value(g, v);
        /* shape inference bounds every element count by IR_MAX_NUMEL */
        int64_t elem = val->type.dtype == IR_I32 ? 4 : p->elem_bytes;
        IR_ASSERT(!__builtin_mul_overflow(ir_numel(&val->type, p->batch), elem, &b->bytes));
        IR_ASSERT(b->bytes <= PROGRAM_MAX_BYTES);
        b->first = b->last = kernel_of[val->node];
        b->alias = -1;
        b->slot = -1;
    }
    /* persistent values */
    for (int v = 0; v < g->nvalues; v++) {
        const IrValue *val = ir_value(g, v);
        const IrNode *n = ir_node(g, val->node);
        if (n->op == IR_OP_PARAM) {
            int r = n->attr.param.role;
            add_slot(p, v, r == IR_PARAM_RUNNING_MEAN || r == IR_PARAM_RUNNING_VAR ? SLOT_STATE : SLOT_PARAM, val->name);
        } else if (n->op == IR_OP_INPUT) {
            add_slot(p, v, SLOT_INPUT, "input");
        } else if (n->op == IR_OP_LABELS) {
            add_slot(p, v, SLOT_LABELS, "labels");
        }
    }
    if (p->grad_of)
        for (int v = 0; v < g->nvalues; v++) {
            int gv = p->grad_of[v];
            if (gv >= 0 && ir_node(g, ir_value(g, v)->node)->op == IR_OP_PARAM && p->buf[gv].kind == BUF_NONE)
                add_slot(p, gv, SLOT_GRAD, ir_value(g, gv)->name);
        }
    if (g->logits >= 0 && p->buf[g->logits].kind == BUF_NONE) add_slot(p, g->logits, SLOT_LOGITS, "logits");
    if (g->loss >= 0 && p->buf[g->loss].kind == BUF_NONE) add_slot(p, g->loss, SLOT_LOSS, "loss");

    /* views alias their source */
    for (int i = 0; i < g->nnodes; i++) {
        const IrNode *n = ir_node(g, i);
        if ((ir_info(n->op)->flags & IR_F_VIEW) && p->buf[n->out[0]].kind == BUF_NONE) {
            p->buf[n->out[0]].kind = BUF_ALIAS;
            p->buf[n->out[0]].alias = n->in[0];
        }
    }
    /* values a fused kernel keeps in registers: made and read only there,
     * and no view of them */
    {
        int *reader = ir_xmalloc(sizeof(int) * (size_t)(g->nvalues + 1));   /* kernel of the readers, -2: several */
        for (int v = 0; v < g->nvalues; v++) reader[v] = -1;
        for (int i = 0; i < g->nnodes; i++) {
            const IrNode *n = ir_node(g, i);
            for (int j = 0; j < n->nin; j++) {
                int v = n->in[j];
                if (v < 0) continue;
                int k = kernel_of[i];
                reader[v] = reader[v] == -1 || reader[v] == k ? k : -2;
            }
        }
        for (int v = 0; v < g->nvalues; v++)
            if (p->buf[v].kind == BUF_ALIAS) reader[root(p, v)] = -2;
        for (int k = 0; k < p->nkernels; k++)
            for (int j = 0; j < p->kernels[k].nnodes; j++) {
                int v = ir_node(g, p->kernels[k].nodes[j])->out[0];
                if (v >= 0 && p->buf[v].kind == BUF_NONE && reader[v] == k && fuse_keeps_inner(p, &p->kernels[k], j))
                    p->buf[v].kind = BUF_INNER;
            }
        free(reader);
    }
    plan_views(p, kernel_of, o);
    inplace_bn_bwd(p, kernel_of);
    /* lifetimes: from the first kernel that writes or reads a buffer (its
     * own value or a view or alias of it) to the last */
    for (int v = 0; v < g->nvalues; v++) p->buf[v].first = p->buf[v].last = -1;
    for (int i = 0; i < g->nnodes; i++) {
        const IrNode *n = ir_node(g, i);
        int k = kernel_of[i];
        if (k < 0) continue;
        for (int j = 0; j < n->nin + n->nout; j++) {
            int v = j < n->nin ? n->in[j] : n->out[j - n->nin];
            if (v < 0) continue;
            int ids[2] = {v, root(p, v)};
            for (int q = 0; q < 2; q++) {
                BufPlan *b = &p->buf[ids[q]];
                if (b->first < 0 || b->first > k) b->first = k;
                if (b->last < k) b->last = k;
            }
        }
    }
    /* place arena values */
    int *order = ir_xmalloc(sizeof(int) * (size_t)g->nvalues), n = 0;
    p->naive_bytes = p->persist_bytes = p->view_bytes = 0;
    int rc = 0;
    for (int v = 0; v < g->nvalues && !rc; v++)
        if (p->buf[v].kind == BUF_VIEW) {   /* its own buffer, unplanned */
            rc = add_bytes(p, v, align_up(p->buf[v].bytes), &p->naive_bytes, "activation", d);
            p->view_bytes += p->buf[v].bytes;
        } else if (p->buf[v].kind == BUF_NONE) {
            p->buf[v].kind = BUF_ARENA;
            order[n++] = v;
            rc = add_bytes(p, v, align_up(p->buf[v].bytes), &p->naive_bytes, "activation", d);
        } else if (p->buf[v].kind == BUF_PERSIST) {
            rc = add_bytes(p, v, p->buf[v].bytes, &p->persist_bytes, "persistent", d);
        }
    if (rc) {
        free(order);
        free(kernel_of);
        return -1;
    }
    /* every offset below lies in [0, naive_bytes]: no sum can overflow.
     * Greedy placement in three orders (largest first; longest-lived
     * first; earliest first), keeping the one with the smallest arena:
     * each leaves gaps the others fill (DenseNet with recompute: 684 MiB by
     * size alone, 648 longest-lived first, the live set's peak 576 MiB). */
    sort_prog = p;
    int (*const orders[])(const void *, const void *) = {by_size_desc, by_life_desc, by_first};
    int64_t top = -1, *best = ir_xmalloc(sizeof(int64_t) * (size_t)g->nvalues);
    size_t best_s = 0;
    int64_t (*busy)[2] = ir_xmalloc(sizeof *busy * (size_t)(n ? n : 1));
    for (size_t s = 0; s < sizeof orders / sizeof orders[0]; s++) {
        qsort(order, (size_t)n, sizeof(int), orders[s]);
        int64_t t = place(p, order, n, busy);
        if (top < 0 || t < top) {
            top = t;
            best_s = s;
            for (int i = 0; i < n; i++) best[order[i]] = p->buf[order[i]].offset;
        }
    }
    /* then a local search from the best order: a few random swaps, kept when
     * the arena shrinks, until it is the live set's peak (no placement can
     * do better) or the work bound (about 3e7 steps of place()) is spent;
     * a fixed seed, so the same program gets the same plan */
    int64_t lower = live_peak(p, order, n);
    if (top > lower && n > 1) {
        int *trial = ir_xmalloc(sizeof(int) * (size_t)n);
        int64_t iters = 30000000 / ((int64_t)n * n + 1);
        if (iters > 400) iters = 400;
        uint64_t rng = 0x9e3779b97f4a7c15ull;
        qsort(order, (size_t)n, sizeof(int), orders[best_s]);
        for (int64_t it = 0; it < iters && top > lower; it++) {
            memcpy(trial, order, sizeof(int) * (size_t)n);
            for (int s = 0; s < 3; s++) {
                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                int i = (int)((rng >> 33) % (uint64_t)n), j = (int)((rng >> 13) % (uint64_t)n), t = trial[i];
                trial[i] = trial[j];
                trial[j] = t;
            }
            int64_t t = place(p, trial, n, busy);
            if (t < top) {
                top = t;
                memcpy(order, trial, sizeof(int) * (size_t)n);
                for (int i = 0; i < n; i++) best[order[i]] = p->buf[order[i]].offset;
            }
        }
        free(trial);
    }
    for (int i = 0; i < n; i++) p->buf[order[i]].offset = best[order[i]];
    free(best);
    free(busy);
    p->arena_bytes = top;
    free(order);
    free(kernel_of);
    return 0;
}

int program_check_plan(const Program *p, FILE *f) {
    const IrGraph *g = &p->g;
    for (int a = 0; a < g->nvalues; a++) {
        const BufPlan *x = &p->buf[a];
        if (x->kind == BUF_ALIAS && root(p, a) == a) { fprintf(f, "plan: %%%d aliases itself\n", a); return -1; }
        if (x->kind == BUF_PERSIST && (x->slot < 0 || x->slot >= p->nslots)) { fprintf(f, "plan: %%%d bad slot\n", a); return -1; }
        if (x->kind == BUF_INNER && x->first != x->last) {
            fprintf(f, "plan: %%%d kept inside a kernel but live %d..%d\n", a, x->first, x->last);
            return -1;
        }
        if (x->kind != BUF_ARENA) continue;
        if (x->offset < 0 || x->offset + x->bytes > p->arena_bytes || x->offset % ALIGN) {
            fprintf(f, "plan: %%%d [%lld, +%lld) outside the arena of %lld bytes or misaligned\n", a,
                    (long long)x->offset, (long long)x->bytes, (long long)p->arena_bytes);
            return -1;
        }
        for (int b = a + 1; b < g->nvalues; b++) {
            const BufPlan *y = &p->buf[b];
            if (y->kind != BUF_ARENA || x->last < y->first || y->last < x->first) continue;
            if (x->offset < y->offset + y->bytes && y->offset < x->offset + x->bytes) {
                fprintf(f, "plan: %%%d [%lld, +%lld) live %d..%d overlaps %%%d [%lld, +%lld) live %d..%d\n", a,
                        (long long)x->offset, (long long)x->bytes, x->first, x->last, b, (long long)y->offset,
                        (long long)y->bytes, y->first, y->last);
                return -1;
            }
        }
    }
    /* every use lies within its buffer's lifetime */
    for (int k = 0; k < p->nkernels; k++)
        for (int j = 0; j < p->kernels[k].nnodes; j++) {
            const IrNode *n = ir_node(g, p->kernels[k].nodes[j]);
            for (int i = 0; i < n->nin; i++) {
                const BufPlan *x = &p->buf[root(p, n->in[i])];
                if (x->kind == BUF_ARENA && (k < x->first || k > x->last)) {
                    fprintf(f, "plan: kernel %d reads %%%d outside its lifetime %d..%d\n", k, n->in[i], x->first, x->last);
                    return -1;
                }
            }
        }
    return program_check_views(p, f);
}

static void human(int64_t b, char *buf, size_t n) {
    if (b >= (int64_t)1 << 40) snprintf(buf, n, "%.1f TiB", (double)b / (double)((int64_t)1 << 40));
    else if (b >= 1 << 30) snprintf(buf, n, "%.1f GiB", (double)b / (1 << 30));
    else if (b >= 1 << 20) snprintf(buf, n, "%.1f MiB", (double)b / (1 << 20));
    else if (b >= 1024) snprintf(buf, n, "%.1f KiB", (double)b / 1024);
    else snprintf(buf, n, "%lld B", (long long)b);
}

void program_dump_memory(const Program *p, FILE *f) {
    static const char *kinds[] = {"param", "state", "grad", "input", "labels", "logits", "loss"};
    const IrGraph *g = &p->g;
    char a[32], b[32], t[80];
    fprintf(f, "memory plan: batch %lld, %d kernels, %d values\n", (long long)p->batch, p->nkernels, g->nvalues);
    fprintf(f, "  %-7s %-12s %-10s %-12s %-9s %s\n", "value", "kind", "bytes", "offset", "lifetime", "type / name");
    for (int v = 0; v < g->nvalues; v++) {
        const BufPlan *x = &p->buf[v];
        const IrValue *val = ir_value(g, v);
        ir_type_str(&val->type, t, sizeof t);
        const char *name = val->name ? val->name : ir_node(g, val->node)->name;
        if (x->kind == BUF_ARENA)
            fprintf(f, "  %%%-6d %-12s %-10lld %-12lld %4d..%-4d %s %s\n", v, "arena", (long long)x->bytes,
                    (long long)x->offset, x->first, x->last, t, name ? name : "");
        else if (x->kind == BUF_ALIAS)
            fprintf(f, "  %%%-6d %-12s %-10lld %%%-11d %4d..%-4d %s %s\n", v, "view", (long long)x->bytes, x->alias,
                    x->first, x->last, t, name ? name : "");
        else if (x->kind == BUF_PERSIST)
            fprintf(f, "  %%%-6d %-12s %-10lld %-12s %-10s %s %s\n", v, kinds[p->slots[x->slot].kind],
                    (long long)x->bytes, "-", "-", t, name ? name : "");
        else if (x->kind == BUF_VIEW) {
            char at[40];
            snprintf(at, sizeof at, "%%%d+%lld", x->alias, (long long)x->voff);
            fprintf(f, "  %%%-6d %-12s %-10lld %-12s %4d..%-4d %s %s\n", v, "part", (long long)x->bytes, at, x->first,
                    x->last, t, name ? name : "");
        } else if (x->kind == BUF_INNER)
            fprintf(f, "  %%%-6d %-12s %-10lld %-12s %4d..%-4d %s %s\n", v, "in-kernel", (long long)x->bytes, "-",
                    x->first, x->last, t, name ? name : "");
    }
    human(p->arena_bytes, a, sizeof a);
    human(p->naive_bytes, b, sizeof b);
    fprintf(f, "arena: planned %lld bytes (%s), unplanned %lld bytes (%s), %.1f%% of unplanned\n",
            (long long)p->arena_bytes, a, (long long)p->naive_bytes, b,
            p->naive_bytes ? 100.0 * (double)p->arena_bytes / (double)p->naive_bytes : 0.0);
    int nviews = 0, nout = 0;
    for (int v = 0; v < g->nvalues; v++) {
        nviews += p->buf[v].kind == BUF_VIEW;
        nout += p->view_why && p->view_why[v] != NULL;
    }
    human(p->view_bytes, a, sizeof a);
    fprintf(f, "views: %d values (%lld bytes, %s) in parts of other values' buffers (in-place concat, slices, "
            "accumulations)\n", nviews, (long long)p->view_bytes, a);
    for (int v = 0; v < g->nvalues && nout; v++)
        if (p->view_why && p->view_why[v]) {
            const IrNode *n = ir_node(g, p->view_why_node[v]);
            fprintf(f, "  not in its concat slot: %%%d (%s): %s (%s %s)\n", v,
                    ir_node(g, ir_value(g, v)->node)->name ? ir_node(g, ir_value(g, v)->node)->name : "?",
                    p->view_why[v], ir_info(n->op)->name, n->name ? n->name : "?");
        }
    human(p->persist_bytes, a, sizeof a);
    fprintf(f, "persistent: %lld bytes (%s) in %d slots\n", (long long)p->persist_bytes, a, p->nslots);
}
