/* cuda_bn.c - batch norm in the CUDA C generator: its statistics, the
 * normalisation with the elementwise nodes a fused group applies after it
 * (bn_store), and where the fusion pass's groups move its work into a
 * conv: the statistics summed in a conv's epilogue (conv_bn_relu,
 * conv_bn_add_relu) and the normalisation done in a conv's gather
 * (bn_relu_conv).  Sums are in double and in a fixed order, as ref's. */
#include "gen.h"

#include <stdlib.h>
#include <string.h>

/* Batch norm statistics, as ref: per channel over m = B*hw values, sums in
 * double: PARTS partial sums per channel (thread t adds elements t, t+PARTS,
 * ...) and one thread per channel adding them in order. */
/* The store of batch norm bn's output v (a float at i), with the chain of
 * elementwise nodes the fusion pass grouped after it (relu, sigmoid, the
 * residual add) applied in the same launch, as their own kernels compute
 * them; each value stored only where the plan gave it memory (a group's
 * inner values have none). */
static void bn_store(Gen *g, const IrNode *bn) {
    int cur = bn->out[0];
    if (!g->nchain || g->p->buf[cur].kind != BUF_INNER) {
        cu_ptr(g, "float", "yb", cur);
        cu_out(g, "    yb[i] = v;\n");
    }
    for (int j = 0; j < g->nchain; j++) {
        const IrNode *c = g->chain[j];
        char nm[16];
        if (c->op == IR_OP_RELU) cu_out(g, "    v = v < 0.0f ? 0.0f : v;\n");
        else if (c->op == IR_OP_SIGMOID) cu_out(g, "    v = 1.0f / (1.0f + expf(-v));\n");
        else {   /* add */
            snprintf(nm, sizeof nm, "o%d", j);
            cu_ptr(g, "float", nm, c->in[0] == cur ? c->in[1] : c->in[0]);
            cu_out(g, c->in[0] == cur ? "    v = v + %s[i];\n" : "    v = %s[i] + v;\n", nm);
        }
        cur = c->out[0];
        if (j == g->nchain - 1 || g->p->buf[cur].kind != BUF_INNER) {
            snprintf(nm, sizeof nm, "z%d", j);
            cu_ptr(g, "float", nm, cur);
            cu_out(g, "    %s[i] = v;\n", nm);
        }
    }
}

/* A training batch norm's statistics launch (one thread a channel i),
 * from the double mean and var it has computed: the saved mean and
 * inverse std, the running statistics (var unbiased over m values). */
static void bn_finish(Gen *g, const IrNode *n, long long m) {
    char eps[32], mom[32];
    cu_fconst(eps, sizeof eps, n->attr.bn.eps);
    cu_fconst(mom, sizeof mom, n->attr.bn.momentum);
    cu_ptr(g, "float", "rmean", n->in[3]);
    cu_ptr(g, "float", "rvar", n->in[4]);
    cu_ptr(g, "float", "smean", n->out[1]);
    cu_ptr(g, "float", "sinv", n->out[2]);
    cu_out(g, "    double invstd = 1.0 / sqrt(var + (double)%s);\n"
           "    double mom = (double)%s, unb = %lld > 1 ? var * (double)%lld / (double)%lld : var;\n"
           "    smean[i] = (float)mean; sinv[i] = (float)invstd;\n"
           "    rmean[i] = (float)((1.0 - mom) * (double)rmean[i] + mom * mean);\n"
           "    rvar[i] = (float)((1.0 - mom) * (double)rvar[i] + mom * unb);\n",
        eps, mom, m, m, m - 1);
    cu_end(g);
}

void cu_gen_bn(Gen *g, const IrNode *n) {
    const IrGraph *gr = &g->p->g;
    const IrType *x = ir_type(gr, n->in[1 * (n->op == IR_OP_BATCHNORM_BWD)]);
    long long B = g->p->batch, C = x->d[1], hw = x->rank == 4 ? x->d[2] * x->d[3] : 1, m = B * hw;
    char elem[128];
    snprintf(elem, sizeof elem, "(j / %lld * %lld + c) * %lld + j %% %lld", hw, C, hw, hw);
    char ch[64];
    snprintf(ch, sizeof ch, "    long long c = i / %lld %% %lld;\n", hw, C);
    /* x may be a strided view (a concat's first channels) */
    int xv = n->in[1 * (n->op == IR_OP_BATCHNORM_BWD)];
    char xe[256], xi[96], xb[96];
    cu_at(g, xv, elem, xe, sizeof xe);
    cu_at(g, xv, "i", xi, sizeof xi);
    cu_at(g, xv, "e", xb, sizeof xb);
    if (n->op == IR_OP_BATCHNORM && n->attr.bn.mode != IR_TRAIN && g->pro == n) {
        /* the conv's gather normalises: apply mode needs nothing, eval
         * mode the inverse std a channel (as below) in scratch */
        if (n->attr.bn.mode == IR_BN_APPLY) return;
        char eps[32];
        cu_fconst(eps, sizeof eps, n->attr.bn.eps);
        cu_need(g, C * 4);
        cu_begin(g, C);
        cu_ptr(g, "float", "rvar", n->in[4]);
        cu_scratch(g, "float", "inv", 0);
        cu_out(g, "    inv[i] = (float)(1.0 / sqrt((double)rvar[i] + (double)%s));\n", eps);
        cu_end(g);
        return;
    }
    if (n->op == IR_OP_BATCHNORM && n->attr.bn.mode != IR_TRAIN) {   /* apply: the saved statistics */
        cu_begin(g, B * C * hw);
        const char *nm[5] = {"a0", "a1", "a2", "a3", "a4"};
        for (int k = 0; k < 5; k++) cu_ptr(g, "float", nm[k], n->in[k]);
        if (n->attr.bn.mode == IR_BN_APPLY) {
            cu_out(g, "%s    float v = a1[c] * (a0[%s] - a3[c]) * a4[c] + a2[c];\n", ch, xi);
        } else {
            char eps[32];
            cu_fconst(eps, sizeof eps, n->attr.bn.eps);
            cu_out(g, "%s    float inv = (float)(1.0 / sqrt((double)a4[c] + (double)%s));\n"
                      "    float v = a1[c] * (a0[%s] - a3[c]) * inv + a2[c];\n", ch, eps, xi);
        }
        bn_store(g, n);
        cu_end(g);
        return;
    }
    int bwd = n->op == IR_OP_BATCHNORM_BWD;
    if (!bwd && g->stats_for == n->in[0]) {
        /* the conv's epilogue summed x and x^2 per channel: their parts
         * added in order, var = E[x^2] - mean^2 (in double) */
        long long np = (long long)g->stats_parts;
        g->stats_for = -1;
        cu_begin(g, C);
        cu_out(g, "    const double *st = (const double *)(I + %lldLL);\n"
               "    double s = 0, q = 0;\n"
               "    for (long long j = 0; j < %lldLL; j++) { s += st[i * %lldLL + j]; q += st[%lldLL + i * %lldLL + j]; }\n"
               "    double mean = s / (double)%lld, var = q / (double)%lld - mean * mean;\n"
               "    if (!(var > 0.0)) var = var == var ? 0.0 : var;\n",
            (long long)g->stats_off, np, np, C * np, np, m, m);
        bn_finish(g, n, m);
        goto normalise;
    }
    cu_need(g, C * PARTS * 16 + C * 16);
    /* pass 1 (train: sum x; bwd: sum dy, sum dy*xhat) */
    cu_begin(g, C * PARTS);
    cu_scratch(g, "double", "part", 0);
    if (!bwd) {
        cu_ptr(g, "float", "x", n->in[0]);
        cu_out(g, "    long long c = i / %d, t = i %% %d;\n    double s = 0;\n"
               "    for (long long j = t; j < %lld; j += %d) s += (double)x[%s];\n    part[i] = s;\n",
            PARTS, PARTS, m, PARTS, xe);
    } else {
        cu_ptr(g, "float", "dy", n->in[0]);
        cu_ptr(g, "float", "x", n->in[1]);
        cu_ptr(g, "float", "mean", n->in[3]);
        cu_ptr(g, "float", "inv", n->in[4]);
        cu_out(g, "    long long c = i / %d, t = i %% %d;\n    double s = 0, sx = 0, mu = (double)mean[c], iv = (double)inv[c];\n"
               "    for (long long j = t; j < %lld; j += %d) {\n"
               "        long long e = %s;\n"
               "        s += (double)dy[e];\n"
               "        sx += (double)dy[e] * ((double)x[%s] - mu) * iv;\n"
               "    }\n    part[i] = s;\n    part[%lld + i] = sx;\n",
            PARTS, PARTS, m, PARTS, elem, xb, C * PARTS);
    }
    cu_end(g);
    if (bwd) {
        cu_begin(g, C);
        cu_scratch(g, "double", "part", 0);
        cu_scratch(g, "double", "tot", C * PARTS * 16);
        cu_ptr(g, "float", "dgamma", n->out[1]);
        cu_ptr(g, "float", "dbeta", n->out[2]);
        cu_out(g, "    double s = 0, sx = 0;\n"
               "    for (int t = 0; t < %d; t++) { s += part[i * %d + t]; sx += part[%lld + i * %d + t]; }\n"
               "    tot[i] = s; tot[%lld + i] = sx;\n    dgamma[i] = (float)sx; dbeta[i] = (float)s;\n",
            PARTS, PARTS, C * PARTS, PARTS, C);
        cu_end(g);
        cu_begin(g, B * C * hw);
        cu_ptr(g, "float", "dy", n->in[0]);
        cu_ptr(g, "float", "x", n->in[1]);
        cu_ptr(g, "float", "gamma", n->in[2]);
        cu_ptr(g, "float", "mean", n->in[3]);
        cu_ptr(g, "float", "inv", n->in[4]);
        cu_ptr(g, "float", "dx", n->out[0]);
        cu_scratch(g, "double", "tot", C * PARTS * 16);
        cu_out(g, "%s    double iv = (double)inv[c], scale = (double)gamma[c] * iv / (double)%lld;\n"
               "    double xhat = ((double)x[%s] - (double)mean[c]) * iv;\n"
               "    dx[i] = (float)(scale * ((double)%lld * (double)dy[i] - tot[c] - xhat * tot[%lld + c]));\n",
            ch, m, xi, m, C);
        cu_end(g);
        return;
    }
    /* train: mean, then sum of squares around it, then y and the stats */
    cu_begin(g, C);
    cu_scratch(g, "double", "part", 0);
    cu_scratch(g, "double", "tot", C * PARTS * 16);
    cu_out(g, "    double s = 0;\n    for (int t = 0; t < %d; t++) s += part[i * %d + t];\n    tot[i] = s / (double)%lld;\n",
        PARTS, PARTS, m);
    cu_end(g);
    cu_begin(g, C * PARTS);
    cu_ptr(g, "float", "x", n->in[0]);
    cu_scratch(g, "double", "part", 0);
    cu_scratch(g, "double", "tot", C * PARTS * 16);
    cu_out(g, "    long long c = i / %d, t = i %% %d;\n    double s = 0, mu = tot[c];\n"
           "    for (long long j = t; j < %lld; j += %d) { double dv = (double)x[%s] - mu; s += dv * dv; }\n"
           "    part[i] = s;\n",
        PARTS, PARTS, m, PARTS, xe);
    cu_end(g);
    cu_begin(g, C);
    cu_scratch(g, "double", "part", 0);
    cu_scratch(g, "double", "tot", C * PARTS * 16);
    cu_out(g, "    double s = 0;\n    for (int t = 0; t < %d; t++) s += part[i * %d + t];\n"
           "    double mean = tot[i], var = s / (double)%lld;\n",
        PARTS, PARTS, m);
    bn_finish(g, n, m);
normalise:
    if (g->pro == n) return;   /* the conv's gather normalises */
    cu_begin(g, B * C * hw);
    cu_ptr(g, "float", "x", n->in[0]);
    cu_ptr(g, "float", "gamma", n->in[1]);
    cu_ptr(g, "float", "beta", n->in[2]);
    cu_ptr(g, "float", "smean", n->out[1]);
    cu_ptr(g, "float", "sinv", n->out[2]);
    cu_out(g, "%s    float v = gamma[c] * (x[%s] - smean[c]) * sinv[c] + beta[c];\n", ch, xi);
    bn_store(g, n);
    cu_end(g);
}

/* A batch norm at position j of kernel k (forward, not its gradient) that
 * a fused group follows with relu, sigmoid or the residual add, each
 * reading the one before: they go into its last launch (g->chain), when
 * none of their values is a strided view.  Returns how many. */
int cu_bn_chain(Gen *g, const Kernel *k, int j) {
    const Program *p = g->p;
    const IrNode *bn = ir_node(&p->g, k->nodes[j]);
    g->nchain = 0;
    if (bn->op != IR_OP_BATCHNORM || k->pattern == FUSE_NONE || k->pattern == FUSE_BN_FOLD) return 0;
    int cur = bn->out[0];
    for (int i = j + 1; i < k->nnodes && g->nchain < 8; i++) {
        const IrNode *c = ir_node(&p->g, k->nodes[i]);
        if ((c->op != IR_OP_RELU && c->op != IR_OP_SIGMOID && c->op != IR_OP_ADD) || !ir_reads(c, cur)) break;
        int strided = 0;
        for (int q = 0; q < c->nin + 1; q++) {
            ValueLoc l;
            program_loc(p, q < c->nin ? c->in[q] : c->out[0], &l);
            strided |= l.strided;
        }
        if (strided || (c->op == IR_OP_ADD && c->in[0] == c->in[1])) break;
        g->chain[g->nchain++] = c;
        cur = c->out[0];
    }
    return g->nchain;
}

/* Whether the conv at position j of kernel k sums its output's channels
 * for the training batch norm after it (conv_bn_relu, conv_bn_add_relu):
 * not with --sync-bn (its statistics are the ranks'), the one-thread-per-
 * output convs, or NETC_CUDA_CONV_STATS=0. */
int cu_conv_stats(const Gen *g, const Kernel *k, int j) {
    const Program *p = g->p;
    const char *e = getenv("NETC_CUDA_CONV_STATS");
    if ((k->pattern != FUSE_CONV_BN_RELU && k->pattern != FUSE_CONV_BN_ADD_RELU) || j + 1 >= k->nnodes ||
        p->sync_bn || (e && !strcmp(e, "0")))
        return 0;
    const IrNode *c = ir_node(&p->g, k->nodes[j]), *bn = ir_node(&p->g, k->nodes[j + 1]);
    return c->op == IR_OP_CONV2D && bn->op == IR_OP_BATCHNORM && bn->attr.bn.mode == IR_TRAIN &&
           bn->in[0] == c->out[0] && cu_conv_stats_parts(g, c) > 0;
}

/* Whether the batch norm at position j of kernel k is a bn_relu_conv's
 * whose relu output no kernel but this one reads (eval programs; training
 * with --recompute bn-relu, where the backward pass makes its own): then
 * the conv normalises and applies the relu while it gathers its input,
 * and that output is never stored.  Not with --sync-bn, the one-thread-
 * per-output convs, or NETC_CUDA_CONV_PROLOGUE=0. */
int cu_bn_prologue(const Gen *g, const Kernel *k, int j) {
    const Program *p = g->p;
    const char *e = getenv("NETC_CUDA_CONV_PROLOGUE");
    if (k->pattern != FUSE_BN_RELU_CONV || k->nnodes != 3 || j != 0 || p->sync_bn || (e && !strcmp(e, "0")))
        return 0;
    const IrNode *bn = ir_node(&p->g, k->nodes[0]), *r = ir_node(&p->g, k->nodes[1]), *c = ir_node(&p->g, k->nodes[2]);
    if (bn->op != IR_OP_BATCHNORM || r->op != IR_OP_RELU || r->in[0] != bn->out[0] || !cu_conv_tiled(c) ||
        c->in[0] != r->out[0])
        return 0;
    const BufPlan *b = &p->buf[r->out[0]];
    int kid = (int)(k - p->kernels);
    return b->kind == BUF_INNER || (b->kind == BUF_ARENA && b->first == kid && b->last == kid);
}

/* The bytes of the largest conv statistics region of p. */
int64_t cu_stats_bytes(const Gen *g) {
    const Program *p = g->p;
    int64_t most = 0;
    for (int k = 0; k < p->nkernels; k++)
        for (int j = 0; j < p->kernels[k].nnodes; j++)
            if (cu_conv_stats(g, &p->kernels[k], j)) {
                const IrNode *c = ir_node(&p->g, p->kernels[k].nodes[j]);
                int64_t b = 2 * 8 * ir_type(&p->g, c->out[0])->d[1] * cu_conv_stats_parts(g, c);
                if (b > most) most = b;
            }
    return (most + 63) / 64 * 64;
}
