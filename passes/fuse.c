/* fuse.c - the fusion pass: groups the nodes of a scheduled program into
 * kernels, each one pattern of passes/fuse.def.
 *
 * The schedule gives one kernel per node, in an order where every node
 * comes after its inputs' producers.  The pass walks that order; at each
 * node not yet taken it tries the patterns that may start there, in a fixed
 * priority, and takes the first that matches.  A pattern is a chain: each
 * member is the first node after the previous member that has the op the
 * pattern names there and reads the previous member's output (its first
 * output); other readers of that output may come between (batch norm's
 * backward reads the conv output long after the forward group).  The
 * nodes passed over on the way keep their own
 * kernels: those that read nothing the chain made (a residual block's 1x1
 * shortcut conv between its second conv and the add) run before the group,
 * those that do (the shortcut's gradient, reading the gradient the group's
 * relu_bwd made) run after it; none may have effects (SGD writes weights
 * the chain may read).  So every node still runs after its inputs.
 *
 * A value a group produces may still be read by later kernels (batch norm's
 * backward reads the conv output the forward group made); such values stay
 * in memory.  Backends run a group's nodes one after the other until they
 * have a fused body for its pattern, so fusion never changes results. */
#include "program.h"

#include <stdlib.h>
#include <string.h>

static const char *names[FUSE_COUNT] = {
    "none",
#define FUSE(e, name, what) name,
#include "fuse.def"
#undef FUSE
};

const char *fuse_name(int pattern) { return pattern >= 0 && pattern < FUSE_COUNT ? names[pattern] : "?"; }

int fuse_parse(const char *spec, FuseOptions *o, char *bad, size_t n) {
    o->off = 0;
    if (!strcmp(spec, "all")) return 0;
    o->off = ~0u;
    if (!strcmp(spec, "none")) return 0;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", spec);
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int found = 0;
        for (int k = 1; k < FUSE_COUNT; k++)
            if (!strcmp(t, names[k])) o->off &= ~(1u << k), found = 1;
        if (!found) {
            snprintf(bad, n, "%s", t);
            return -1;
        }
    }
    return 0;
}

/* The walk's state: the schedule's nodes in order, which are taken, and
 * the kernels formed so far. */
typedef struct {
    const IrGraph *g;
    int *order, norder;     /* non-leaf nodes in schedule order */
    char *taken;            /* per node */
    char *made;             /* per value: 1 produced by the chain being matched,
                               2 by a node deferred past it */
    Kernel *out;
    int nout;
    int chain[8], nchain;   /* members being matched, in order */
    int skip[64], nskip;    /* nodes passed over that run before the group */
    int defer[64], ndefer;  /* nodes passed over that run after it */
} Fuser;

/* The largest mark (1 chain, 2 deferred) among n's inputs. */
static int reads_made(const Fuser *f, const IrNode *n) {
    int m = 0;
    for (int i = 0; i < n->nin; i++)
        if (f->made[n->in[i]] > m) m = f->made[n->in[i]];
    return m;
}

static void mark(Fuser *f, int pos, char how) {
    const IrNode *n = ir_node(f->g, f->order[pos]);
    for (int o = 0; o < n->nout; o++) f->made[n->out[o]] = how;
}

static void chain_add(Fuser *f, int pos) {
    f->chain[f->nchain++] = pos;
    mark(f, pos, 1);
}

/* The next member after the chain's last: the first untaken node after it
 * with op `op` that reads value v (as input in_at, or any input when in_at
 * < 0) and nothing deferred.  A node passed over on the way that reads
 * what the chain (or a deferred node) made is deferred: it runs after the
 * group; any other is skipped: it runs before.  Neither may have effects.
 * Returns 1 and extends the chain, or 0 and leaves everything as it was. */
static int chain_next(Fuser *f, int v, IrOp op, int in_at) {
    int last = f->chain[f->nchain - 1], nskip = f->nskip, ndefer = f->ndefer;
    if (f->nchain < (int)(sizeof f->chain / sizeof f->chain[0]))
        for (int pos = last + 1; pos < f->norder; pos++) {
            int id = f->order[pos];
            const IrNode *n = ir_node(f->g, id);
            if (f->taken[id]) continue;
            int m = reads_made(f, n);
            if (m < 2 && n->op == op && (in_at < 0 ? ir_reads(n, v) : in_at < n->nin && n->in[in_at] == v)) {
                chain_add(f, pos);
                return 1;
            }
            if (ir_info(n->op)->flags & IR_F_EFFECT) break;
            if (m) {
                if (f->ndefer == (int)(sizeof f->defer / sizeof f->defer[0])) break;
                f->defer[f->ndefer++] = pos;
                mark(f, pos, 2);
            } else {
                if (f->nskip == (int)(sizeof f->skip / sizeof f->skip[0])) break;
                f->skip[f->nskip++] = pos;
            }
        }
    while (f->ndefer > ndefer) mark(f, f->defer[--f->ndefer], 0);
    f->nskip = nskip;
    return 0;
}

/* Undoes the chain back to n members, and the nodes passed over back to
 * nskip skipped and ndefer deferred. */
static void chain_cut(Fuser *f, int n, int nskip, int ndefer) {
    while (f->ndefer > ndefer) mark(f, f->defer[--f->ndefer], 0);
    while (f->nchain > n) mark(f, f->chain[--f->nchain], 0);
    f->nskip = nskip;
}

static int out0(const Fuser *f) { return ir_node(f->g, f->order[f->chain[f->nchain - 1]])->out[0]; }

static int bn_mode(const Fuser *f, int pos) { return ir_node(f->g, f->order[pos])->attr.bn.mode; }

/* conv2d | linear -> relu (no batch norm between) */
static int m_conv_relu(Fuser *f, unsigned off) {
    (void)off;
    return chain_next(f, out0(f), IR_OP_RELU, 0) ? FUSE_CONV_RELU : FUSE_NONE;
}

/* Each matcher starts with the chain holding its first node and returns the
 * pattern it formed (the chain extended), or FUSE_NONE (the chain as it
 * was).  The first node's op is checked by the caller's table. */

/* conv2d -> batchnorm (train) -> relu, or -> add -> relu */
static int m_conv_bn(Fuser *f, unsigned off) {
    int ns = f->nskip, nd = f->ndefer;
    if (!chain_next(f, out0(f), IR_OP_BATCHNORM, 0) || bn_mode(f, f->chain[1]) != IR_TRAIN) {
        chain_cut(f, 1, ns, nd);
        return FUSE_NONE;
    }
    int ns2 = f->nskip, nd2 = f->ndefer;
    if (!(off & 1u << FUSE_CONV_BN_RELU) && chain_next(f, out0(f), IR_OP_RELU, 0)) return FUSE_CONV_BN_RELU;
    chain_cut(f, 2, ns2, nd2);
    if (!(off & 1u << FUSE_CONV_BN_ADD_RELU) && chain_next(f, out0(f), IR_OP_ADD, -1)) {
        if (chain_next(f, out0(f), IR_OP_RELU, 0)) return FUSE_CONV_BN_ADD_RELU;
    }
    chain_cut(f, 1, ns, nd);
    return FUSE_NONE;
}

/* batchnorm -> relu -> conv2d, else batchnorm -> relu | sigmoid (a batch
 * norm not after a conv: pre-activation, or after concat or linear) */
static int m_bn(Fuser *f, unsigned off) {
    int ns = f->nskip, nd = f->ndefer;
    int v = out0(f);
    if (!(off & 1u << FUSE_BN_RELU_CONV) && chain_next(f, v, IR_OP_RELU, 0)) {
        if (chain_next(f, out0(f), IR_OP_CONV2D, 0)) return FUSE_BN_RELU_CONV;
        if (!(off & 1u << FUSE_BN_ACT)) return FUSE_BN_ACT;   /* the relu just found */
        chain_cut(f, 1, ns, nd);
    }
    if (off & 1u << FUSE_BN_ACT) return FUSE_NONE;
    if (chain_next(f, v, IR_OP_RELU, 0) || chain_next(f, v, IR_OP_SIGMOID, 0)) return FUSE_BN_ACT;
    return FUSE_NONE;
}

/* The batch norm (apply mode) whose output the next relu_bwd reading v as
 * its gradient takes for its sign (recompute.c: the relu's input made again
 * from the x the batch norm gradient reads), added to the chain.  1, or 0
 * with the chain as it was. */
static int relu_sign(Fuser *f, int v) {
    for (int pos = f->chain[f->nchain - 1] + 1; pos < f->norder; pos++) {
        const IrNode *r = ir_node(f->g, f->order[pos]);
        if (f->taken[f->order[pos]] || r->op != IR_OP_RELU_BWD || r->in[0] != v) continue;
        int a = f->g->values[r->in[1]].node, n = f->nchain, ns = f->nskip, nd = f->ndefer;
        const IrNode *an = a >= 0 ? ir_node(f->g, a) : NULL;
        if (!an || an->op != IR_OP_BATCHNORM || an->attr.bn.mode != IR_BN_APPLY || f->taken[a]) return 0;
        if (chain_next(f, an->in[0], IR_OP_BATCHNORM, 0) && f->order[f->chain[n]] == a) return 1;
        chain_cut(f, n, ns, nd);
        return 0;
    }
    return 0;
}

/* [batchnorm (apply) ->] [conv2d_bwd_data | accum ->] relu_bwd ->
 * batchnorm_bwd [-> accum]: the gradient reaching a relu that follows a
 * batch norm, from the conv that read the relu or summed over the relu's
 * readers; the relu's sign from a recomputed batch norm (recompute.c; it
 * goes first in the kernel); the batch norm's gradient added to another
 * (accum(g, dx): a dense layer's input gradient, the concat's gradient
 * slice and its own) as it is made */
static int m_relu_bn_bwd(Fuser *f, unsigned off) {
    (void)off;
    int ns = f->nskip, nd = f->ndefer;
    const IrNode *first = ir_node(f->g, f->order[f->chain[0]]);
    int sign = first->op == IR_OP_BATCHNORM;
    if (sign && first->attr.bn.mode != IR_BN_APPLY) return FUSE_NONE;
    if (sign) {
        if (!chain_next(f, out0(f), IR_OP_RELU_BWD, 1)) return FUSE_NONE;
    } else if (first->op != IR_OP_RELU_BWD) {
        int v = out0(f);
        sign = relu_sign(f, v);
        if (!chain_next(f, v, IR_OP_RELU_BWD, 0)) {
            chain_cut(f, 1, ns, nd);
            return FUSE_NONE;
        }
    }
    if (chain_next(f, out0(f), IR_OP_BATCHNORM_BWD, 0)) {
        int n = f->nchain, ns2 = f->nskip, nd2 = f->ndefer;
        if (chain_next(f, out0(f), IR_OP_ACCUM, 1) && ir_node(f->g, f->order[f->chain[n]])->nin != 2)
            chain_cut(f, n, ns2, nd2);
        if (sign && first->op != IR_OP_BATCHNORM) {   /* the sign's batch norm first */
            int a = f->chain[1];
            f->chain[1] = f->chain[0];
            f->chain[0] = a;
        }
        return FUSE_RELU_BN_BWD;
    }
    chain_cut(f, 1, ns, nd);
    return FUSE_NONE;
}

/* batchnorm (apply) -> relu -> maxpool_bwd: a max pool's input recomputed
 * for its gradient (recompute.c), made plane by plane as the gradient reads
 * it, so it need not exist in memory */
static int m_bn_relu_pool_bwd(Fuser *f, unsigned off) {
    (void)off;
    int ns = f->nskip, nd = f->ndefer;
    if (bn_mode(f, f->chain[0]) != IR_BN_APPLY || !chain_next(f, out0(f), IR_OP_RELU, 0)) return FUSE_NONE;
    if (chain_next(f, out0(f), IR_OP_MAXPOOL_BWD, 1)) return FUSE_BN_RELU_POOL_BWD;
    chain_cut(f, 1, ns, nd);
    return FUSE_NONE;
}

/* maxpool_bwd -> relu_bwd where the pool's input is the relu's output (conv
 * -> relu -> maxpool): the pool's gradient lands only where that output is
 * positive, so the relu's gradient is the pool's, masked as it is added.  A
 * relu after a batch norm is left to relu_bn_bwd. */
static int m_pool_relu_bwd(Fuser *f, unsigned off) {
    (void)off;
    const IrNode *pool = ir_node(f->g, f->order[f->chain[0]]);
    int relu = f->g->values[pool->in[1]].node;
    const IrNode *rn = relu >= 0 ? ir_node(f->g, relu) : NULL;
    if (!rn || rn->op != IR_OP_RELU) return FUSE_NONE;
    int src = f->g->values[rn->in[0]].node;
    if (src >= 0 && ir_node(f->g, src)->op == IR_OP_BATCHNORM) return FUSE_NONE;
    int ns = f->nskip, nd = f->ndefer;
    if (!chain_next(f, pool->out[0], IR_OP_RELU_BWD, 0)) return FUSE_NONE;
    if (ir_node(f->g, f->order[f->chain[1]])->in[1] == pool->in[1]) return FUSE_POOL_RELU_BWD;
    chain_cut(f, 1, ns, nd);
    return FUSE_NONE;
}

/* conv2d | linear -> batchnorm (eval) [-> relu | sigmoid | add -> relu] */
static int m_bn_fold(Fuser *f, unsigned off) {
    (void)off;
    int ns = f->nskip, nd = f->ndefer;
    if (!chain_next(f, out0(f), IR_OP_BATCHNORM, 0) || bn_mode(f, f->chain[1]) != IR_EVAL) {
        chain_cut(f, 1, ns, nd);
        return FUSE_NONE;
    }
    int ns2 = f->nskip, nd2 = f->ndefer, v = out0(f);
    if (chain_next(f, v, IR_OP_RELU, 0) || chain_next(f, v, IR_OP_SIGMOID, 0)) return FUSE_BN_FOLD;
    if (chain_next(f, v, IR_OP_ADD, -1) && chain_next(f, out0(f), IR_OP_RELU, 0)) return FUSE_BN_FOLD;
    chain_cut(f, 2, ns2, nd2);
    return FUSE_BN_FOLD;
}

static int is_elementwise(IrOp op) {
    switch (op) {
    case IR_OP_ADD: case IR_OP_RELU: case IR_OP_SIGMOID: case IR_OP_DROPOUT: case IR_OP_ACCUM:
    case IR_OP_RELU_BWD: case IR_OP_SIGMOID_BWD: case IR_OP_DROPOUT_BWD:
        return 1;
    default:
        return 0;
    }
}

/* two or more elementwise ops, each reading the one before */
static int m_elementwise(Fuser *f, unsigned off) {
    (void)off;
    for (;;) {
        int v = out0(f), found = 0;
        int last = f->chain[f->nchain - 1];
        /* the next reader of v, whatever its op: elementwise or the end */
        for (int pos = last + 1; pos < f->norder && !found; pos++) {
            const IrNode *n = ir_node(f->g, f->order[pos]);
            if (!f->taken[f->order[pos]] && ir_reads(n, v)) {
                found = 1;
                if (!is_elementwise(n->op) || !chain_next(f, v, n->op, -1))
                    return f->nchain >= 2 ? FUSE_ELEMENTWISE : FUSE_NONE;
            }
        }
        if (!found) return f->nchain >= 2 ? FUSE_ELEMENTWISE : FUSE_NONE;
    }
}

/* Which matcher may start at an op, in priority order: the first that forms
 * a group wins.  `pattern` is the one the matcher needs switched on (the
 * matcher checks its own variants). */
static const struct {
    IrOp op;
    int pattern, mode;  /* mode: IR_TRAIN or IR_EVAL graphs only, -1 both */
    int (*match)(Fuser *, unsigned);
} starts[] = {
    {IR_OP_CONV2D, -1, IR_TRAIN, m_conv_bn},
    {IR_OP_CONV2D, FUSE_BN_FOLD, IR_EVAL, m_bn_fold},
    {IR_OP_LINEAR, FUSE_BN_FOLD, IR_EVAL, m_bn_fold},
    {IR_OP_CONV2D, FUSE_CONV_RELU, -1, m_conv_relu},
    {IR_OP_LINEAR, FUSE_CONV_RELU, -1, m_conv_relu},
    {IR_OP_BATCHNORM, FUSE_RELU_BN_BWD, IR_TRAIN, m_relu_bn_bwd},
    {IR_OP_BATCHNORM, FUSE_BN_RELU_POOL_BWD, IR_TRAIN, m_bn_relu_pool_bwd},
    {IR_OP_BATCHNORM, -1, -1, m_bn},
    {IR_OP_CONV2D_BWD_DATA, FUSE_RELU_BN_BWD, IR_TRAIN, m_relu_bn_bwd},
    {IR_OP_ACCUM, FUSE_RELU_BN_BWD, IR_TRAIN, m_relu_bn_bwd},
    {IR_OP_RELU_BWD, FUSE_RELU_BN_BWD, IR_TRAIN, m_relu_bn_bwd},
    {IR_OP_MAXPOOL_BWD, FUSE_POOL_RELU_BWD, IR_TRAIN, m_pool_relu_bwd},
};

static void emit(Fuser *f, const int *pos, int n, int pattern) {
    Kernel *k = &f->out[f->nout++];
    k->nnodes = n;
    k->nodes = ir_xmalloc(sizeof(int) * (size_t)n);
    k->pattern = pattern;
    for (int i = 0; i < n; i++) {
        k->nodes[i] = f->order[pos[i]];
        f->taken[k->nodes[i]] = 1;
    }
}

int pass_fuse(Program *p, const FuseOptions *o) {
    unsigned off = o ? o->off : 0;
    const IrGraph *g = &p->g;
    Fuser f;
    memset(&f, 0, sizeof f);
    f.g = g;
    f.order = ir_xmalloc(sizeof(int) * (size_t)(p->nkernels + 1));
    for (int k = 0; k < p->nkernels; k++) {
        IR_ASSERT(p->kernels[k].nnodes == 1);
        f.order[f.norder++] = p->kernels[k].nodes[0];
    }
    f.taken = ir_xcalloc((size_t)g->nnodes + 1, 1);
    f.made = ir_xcalloc((size_t)g->nvalues + 1, 1);
    f.out = ir_xcalloc((size_t)f.norder + 1, sizeof(Kernel));
    for (int pos = 0; pos < f.norder; pos++) {
        int id = f.order[pos];
        if (f.taken[id]) continue;
        const IrNode *n = ir_node(g, id);
        int pattern = FUSE_NONE;
        for (size_t s = 0; s < sizeof starts / sizeof starts[0] && pattern == FUSE_NONE; s++) {
            if (starts[s].op != n->op || (starts[s].mode >= 0 && starts[s].mode != (int)g->mode)) continue;
            if (starts[s].pattern > 0 && (off & 1u << starts[s].pattern)) continue;
            f.nchain = f.nskip = f.ndefer = 0;
            chain_add(&f, pos);
            pattern = starts[s].match(&f, off);
            if (pattern == FUSE_NONE) chain_cut(&f, 0, 0, 0);
        }
        if (pattern == FUSE_NONE && is_elementwise(n->op) && !(off & 1u << FUSE_ELEMENTWISE)) {
            f.nchain = f.nskip = f.ndefer = 0;
            chain_add(&f, pos);
            pattern = m_elementwise(&f, off);
            if (pattern == FUSE_NONE) chain_cut(&f, 0, 0, 0);
        }
        if (pattern == FUSE_NONE) {
            emit(&f, &pos, 1, FUSE_NONE);
            continue;
        }
        for (int s = 0; s < f.nskip; s++) emit(&f, &f.skip[s], 1, FUSE_NONE);
        emit(&f, f.chain, f.nchain, pattern);
        for (int s = 0; s < f.ndefer; s++) emit(&f, &f.defer[s], 1, FUSE_NONE);
        chain_cut(&f, 0, 0, 0);
    }
    for (int k = 0; k < p->nkernels; k++) free(p->kernels[k].nodes);
    free(p->kernels);
    p->kernels = f.out;
    p->nkernels = f.nout;
    free(f.order);
    free(f.taken);
    free(f.made);
    return 0;
}

void program_dump_kernels(const Program *p, FILE *f) {
    const IrGraph *g = &p->g;
    int counts[FUSE_COUNT] = {0};
    for (int k = 0; k < p->nkernels; k++) counts[p->kernels[k].pattern]++;
    fprintf(f, "kernels: %d for %s step, batch %lld\n", p->nkernels, g->mode == IR_TRAIN ? "the training" : "the eval",
            (long long)p->batch);
    for (int c = 1; c < FUSE_COUNT; c++)
        if (counts[c]) fprintf(f, "  %-18s %d\n", names[c], counts[c]);
    fprintf(f, "  %-18s %d\n", "single nodes", counts[FUSE_NONE]);
    for (int k = 0; k < p->nkernels; k++) {
        const Kernel *kk = &p->kernels[k];
        fprintf(f, "k%-4d %-17s", k, names[kk->pattern]);
        for (int i = 0; i < kk->nnodes; i++) {
            const IrNode *n = ir_node(g, kk->nodes[i]);
            fprintf(f, "%s %s%s%s", i ? "," : "", ir_info(n->op)->name, n->name ? " " : "", n->name ? n->name : "");
        }
        fputc('\n', f);
    }
}

int fuse_keeps_inner(const Program *p, const Kernel *k, int pos) {
    const IrGraph *g = &p->g;
    int n = k->nnodes;
    switch (k->pattern) {
    case FUSE_CONV_RELU: case FUSE_POOL_RELU_BWD:
        return pos == 0 && n == 2;
    case FUSE_CONV_BN_RELU: case FUSE_CONV_BN_ADD_RELU:
        return pos >= 1 && pos < n - 1;
    case FUSE_BN_ACT: case FUSE_ELEMENTWISE: case FUSE_BN_RELU_POOL_BWD:
        return pos < n - 1;
    case FUSE_BN_RELU_CONV:
        return pos == 0;
    case FUSE_BN_FOLD:
        return pos == 0 || (pos == 1 && n == 3 && ir_node(g, k->nodes[2])->op == IR_OP_RELU);
    case FUSE_RELU_BN_BWD:   /* the batch norm's dx too, when an accum ends the group */
        return pos < n - 1 && ir_node(g, k->nodes[pos])->op != IR_OP_CONV2D_BWD_DATA;
    default:
        return 0;
    }
}

int64_t program_inner_offsets(const Program *p, int64_t *off) {
    int64_t size = 0;
    for (int k = 0; k < p->nkernels; k++) {
        int64_t at = 0;
        const Kernel *kn = &p->kernels[k];
        for (int j = 0; j < kn->nnodes; j++) {
            const IrNode *n = ir_node(&p->g, kn->nodes[j]);
            for (int o = 0; o < n->nout; o++)
                if (n->out[o] >= 0 && p->buf[n->out[o]].kind == BUF_INNER) {
                    off[n->out[o]] = at;
                    at += (p->buf[n->out[o]].bytes + 63) / 64 * 64;
                }
        }
        if (at > size) size = at;
    }
    return size;
}
