/* cuda_conv.c - CUDA C for convolutions and linear layers, forward and
 * both gradients (contract in gen.h).
 *
 * Convolutions are implicit GEMMs, C[m][n] = init(m) + sum over k of
 * A(m, k) B(k, n) with the operands gathered from the tensors: a block of
 * BLOCK threads computes a TM x TN tile of C, each thread 4 x 4 of it in
 * registers, through TK-deep slices of A and B staged in shared memory by
 * the block's cooperative loads (a tap in the padding reads 0).  Every
 * output adds its terms in k's order, one after another, as the simple
 * kernels (one thread per output, NETC_CUDA_SIMPLE=1) and ref do, so the
 * two differ by contraction and the padding's zero terms only.  A weight
 * gradient's long reduction is cut into PARTS parts, as in the simple
 * kernel, summed in order by a second launch. */
#include "gen.h"

#include <stdlib.h>
#include <string.h>

enum { TM = 64, TN = 64, TK = 8 };

typedef struct {
    long long M, N, KD;
    int parts;            /* the reduction's parts: 1, or PARTS into scratch */
    const char *a, *b;    /* statements setting float v to A(m, k), B(k, n), both in range */
    const char *init;     /* the accumulator's start: an expression of m */
    const char *store;    /* a statement storing float r, C's (m, n) (of part `part`) */
    int64_t stats_off;    /* > 0: the epilogue's per-row sums of C (and of its squares) */
} Tiled;

/* A weight gradient's PARTS partial sums (in scratch at 0, per weight) added
 * in order, and the bias gradient's, as parts then their sum. */
static void simple_conv_sums(Gen *g, const IrNode *n, long long nw, long long K, long long m, long long PQ) {
    long long len = (m + PARTS - 1) / PARTS;
    cu_begin(g, nw);
    cu_ptr(g, "float", "dw", n->out[0]);
    cu_scratch(g, "float", "part", 0);
    cu_out(g, "    float acc = 0.0f;\n    for (int t = 0; t < %d; t++) acc += part[i * %d + t];\n    dw[i] = acc;\n",
        PARTS, PARTS);
    cu_end(g);
    if (n->nout > 1) {
        char e[128], at[224];   /* dy may be a strided view */
        snprintf(e, sizeof e, "(j / %lld * %lld + k) * %lld + j %% %lld", PQ, K, PQ, PQ);
        cu_at(g, n->in[0], e, at, sizeof at);
        cu_begin(g, K * PARTS);
        cu_ptr(g, "float", "dy", n->in[0]);
        cu_scratch(g, "float", "part", nw * PARTS * 4);
        cu_out(g, "    long long k = i / %d, t = i %% %d;\n    float acc = 0.0f;\n"
               "    long long j1 = (t + 1) * %lldLL < %lldLL ? (t + 1) * %lldLL : %lldLL;\n"
               "    for (long long j = t * %lldLL; j < j1; j++)\n"
               "        acc += dy[%s];\n"
               "    part[i] = acc;\n",
            PARTS, PARTS, len, m, len, m, len, at);
        cu_end(g);
        cu_begin(g, K);
        cu_ptr(g, "float", "db", n->out[1]);
        cu_scratch(g, "float", "part", nw * PARTS * 4);
        cu_out(g, "    float acc = 0.0f;\n    for (int t = 0; t < %d; t++) acc += part[i * %d + t];\n    db[i] = acc;\n",
            PARTS, PARTS);
        cu_end(g);
    }
}

static void simple_conv(Gen *g, const IrNode *n) {
    const IrGraph *gr = &g->p->g;
    const IrConvAttr *a = &n->attr.conv;
    int64_t B = g->p->batch;
    const IrType *x, *y;
    if (n->op == IR_OP_CONV2D) x = ir_type(gr, n->in[0]), y = ir_type(gr, n->out[0]);
    else if (n->op == IR_OP_CONV2D_BWD_DATA) x = ir_type(gr, n->out[0]), y = ir_type(gr, n->in[0]);
    else x = ir_type(gr, n->in[1]), y = ir_type(gr, n->in[0]);
    long long C = x->d[1], H = x->d[2], W = x->d[3], K = y->d[1], P = y->d[2], Q = y->d[3];
    long long R = a->kh, Sw = a->kw, sh = a->sh, sw = a->sw, ph = a->ph, pw = a->pw;
    char e[128], at[224];   /* y (forward) and dy (gradients) may be strided views */
    if (n->op == IR_OP_CONV2D) {
        cu_at(g, n->out[0], "i", at, sizeof at);
        cu_begin(g, B * K * P * Q);
        cu_ptr(g, "float", "x", n->in[0]);
        cu_ptr(g, "float", "w", n->in[1]);
        cu_ptr(g, "float", "y", n->out[0]);
        if (a->bias) cu_ptr(g, "float", "b", n->in[2]);
        cu_out(g, "    long long q = i %% %lld, p = i / %lld %% %lld, k = i / %lld %% %lld, nn = i / %lld;\n", Q, Q, P,
            P * Q, K, K * P * Q);
        cu_out(g, "    float acc = %s;\n", a->bias ? "b[k]" : "0.0f");
        cu_out(g, "    for (int c = 0; c < %lld; c++)\n"
               "        for (int r = 0; r < %lld; r++) {\n"
               "            long long ih = p * %lld - %lld + r;\n"
               "            if (ih < 0 || ih >= %lld) continue;\n"
               "            for (int s = 0; s < %lld; s++) {\n"
               "                long long iw = q * %lld - %lld + s;\n"
               "                if (iw < 0 || iw >= %lld) continue;\n"
               "                acc += w[((k * %lld + c) * %lld + r) * %lld + s] * x[((nn * %lld + c) * %lld + ih) * %lld + iw];\n"
               "            }\n"
               "        }\n"
               "    y[%s] = acc;\n",
            C, R, sh, ph, H, Sw, sw, pw, W, C, R, Sw, C, H, W, at);
        cu_end(g);
    } else if (n->op == IR_OP_CONV2D_BWD_DATA) {
        /* dx[n,c,ih,iw] = sum_k,r,s w[k,c,r,s] dy[n,k,p,q] with p*sh-ph+r = ih */
        snprintf(e, sizeof e, "((nn * %lld + k) * %lld + p) * %lld + q", K, P, Q);
        cu_at(g, n->in[0], e, at, sizeof at);
        cu_begin(g, B * C * H * W);
        cu_ptr(g, "float", "dy", n->in[0]);
        cu_ptr(g, "float", "w", n->in[1]);
        cu_ptr(g, "float", "dx", n->out[0]);
        cu_out(g, "    long long iw = i %% %lld, ih = i / %lld %% %lld, c = i / %lld %% %lld, nn = i / %lld;\n", W, W, H,
            H * W, C, C * H * W);
        cu_out(g, "    float acc = 0.0f;\n"
               "    for (int k = 0; k < %lld; k++)\n"
               "        for (int r = 0; r < %lld; r++) {\n"
               "            long long tp = ih + %lld - r;\n"
               "            if (tp < 0 || tp %% %lld) continue;\n"
               "            long long p = tp / %lld;\n"
               "            if (p >= %lld) continue;\n"
               "            for (int s = 0; s < %lld; s++) {\n"
               "                long long tq = iw + %lld - s;\n"
               "                if (tq < 0 || tq %% %lld) continue;\n"
               "                long long q = tq / %lld;\n"
               "                if (q >= %lld) continue;\n"
               "                acc += w[((k * %lld + c) * %lld + r) * %lld + s] * dy[%s];\n"
               "            }\n"
               "        }\n"
               "    dx[i] = acc;\n",
            K, R, ph, sh, sh, P, Sw, pw, sw, sw, Q, C, R, Sw, at);
        cu_end(g);
    } else {
        /* dw[k,c,r,s]: PARTS partial sums over slices of (n, p, q), then
         * their sum in order; db likewise. */
        long long nw = K * C * R * Sw, m = B * P * Q, len = (m + PARTS - 1) / PARTS;
        snprintf(e, sizeof e, "((nn * %lld + k) * %lld + p) * %lld + q", K, P, Q);
        cu_at(g, n->in[0], e, at, sizeof at);
        cu_need(g, (nw + K) * PARTS * 4);
        cu_begin(g, nw * PARTS);
        cu_ptr(g, "float", "dy", n->in[0]);
        cu_ptr(g, "float", "x", n->in[1]);
        cu_scratch(g, "float", "part", 0);
        cu_out(g, "    long long e = i / %d, t = i %% %d;\n", PARTS, PARTS);
        cu_out(g, "    long long s = e %% %lld, r = e / %lld %% %lld, c = e / %lld %% %lld, k = e / %lld;\n", Sw, Sw, R,
            R * Sw, C, C * R * Sw);
        cu_out(g, "    float acc = 0.0f;\n"
               "    long long j1 = (t + 1) * %lldLL < %lldLL ? (t + 1) * %lldLL : %lldLL;\n"
               "    for (long long j = t * %lldLL; j < j1; j++) {\n"
               "        long long q = j %% %lld, p = j / %lld %% %lld, nn = j / %lld;\n"
               "        long long ih = p * %lld - %lld + r, iw = q * %lld - %lld + s;\n"
               "        if (ih < 0 || ih >= %lld || iw < 0 || iw >= %lld) continue;\n"
               "        acc += dy[%s] * x[((nn * %lld + c) * %lld + ih) * %lld + iw];\n"
               "    }\n"
               "    part[i] = acc;\n",
            len, m, len, m, len, Q, Q, P, P * Q, sh, ph, sw, pw, H, W, at, C, H, W);
        cu_end(g);
        simple_conv_sums(g, n, nw, K, m, P * Q);
    }
}

/* A linear layer's bias gradient (when it has one): one thread per feature
 * adding the batch's rows in order. */
static void linear_bias_grad(Gen *g, const IrNode *n, long long B, long long o) {
    if (n->nout < 2) return;
    cu_begin(g, o);
    cu_ptr(g, "float", "dy", n->in[0]);
    cu_ptr(g, "float", "db", n->out[1]);
    cu_out(g, "    float acc = 0.0f;\n    for (long long r = 0; r < %lld; r++) acc += dy[r * %lld + i];\n"
              "    db[i] = acc;\n",
           B, o);
    cu_end(g);
}

static void simple_linear(Gen *g, const IrNode *n) {
    const IrGraph *gr = &g->p->g;
    long long B = g->p->batch, in, o;
    if (n->op == IR_OP_LINEAR) in = ir_type(gr, n->in[0])->d[1], o = ir_type(gr, n->out[0])->d[1];
    else if (n->op == IR_OP_LINEAR_BWD_DATA) in = ir_type(gr, n->out[0])->d[1], o = ir_type(gr, n->in[0])->d[1];
    else in = ir_type(gr, n->in[1])->d[1], o = ir_type(gr, n->in[0])->d[1];
    if (n->op == IR_OP_LINEAR) {
        cu_begin(g, B * o);
        cu_ptr(g, "float", "x", n->in[0]);
        cu_ptr(g, "float", "w", n->in[1]);
        cu_ptr(g, "float", "y", n->out[0]);
        if (n->attr.linear.bias) cu_ptr(g, "float", "b", n->in[2]);
        cu_out(g, "    long long r = i / %lld, o = i %% %lld;\n    float acc = 0.0f;\n"
               "    for (long long j = 0; j < %lld; j++) acc += x[r * %lld + j] * w[o * %lld + j];\n"
               "    y[i] = %sacc;\n",
            o, o, in, in, in, n->attr.linear.bias ? "b[o] + " : "");
        cu_end(g);
    } else if (n->op == IR_OP_LINEAR_BWD_DATA) {
        cu_begin(g, B * in);
        cu_ptr(g, "float", "dy", n->in[0]);
        cu_ptr(g, "float", "w", n->in[1]);
        cu_ptr(g, "float", "dx", n->out[0]);
        cu_out(g, "    long long r = i / %lld, j = i %% %lld;\n    float acc = 0.0f;\n"
               "    for (long long o = 0; o < %lld; o++) acc += dy[r * %lld + o] * w[o * %lld + j];\n"
               "    dx[i] = acc;\n",
            in, in, o, o, in);
        cu_end(g);
    } else {
        cu_begin(g, o * in);
        cu_ptr(g, "float", "dy", n->in[0]);
        cu_ptr(g, "float", "x", n->in[1]);
        cu_ptr(g, "float", "dw", n->out[0]);
        cu_out(g, "    long long o = i / %lld, j = i %% %lld;\n    float acc = 0.0f;\n"
               "    for (long long r = 0; r < %lld; r++) acc += dy[r * %lld + o] * x[r * %lld + j];\n"
               "    dw[i] = acc;\n",
            in, in, B, o, in);
        cu_end(g);
        linear_bias_grad(g, n, B, o);
    }
}

/* One thread per element of n values: `body` uses i and the pointers. */

/* The operands' pointers of conv or linear node n, by the names the tiled
 * kernels' snippets use. */
static void decl(Gen *g, const IrNode *n) {
    int bias = n->op == IR_OP_CONV2D ? n->attr.conv.bias : n->op == IR_OP_LINEAR ? n->attr.linear.bias : 0;
    switch (n->op) {
    case IR_OP_CONV2D: case IR_OP_LINEAR:
        if (n->op == IR_OP_CONV2D && g->pro) {   /* x: the batch norm's input; its per-channel operands */
            const IrNode *bn = g->pro;
            int train = bn->attr.bn.mode == IR_TRAIN;
            cu_ptr(g, "float", "x", bn->in[0]);
            cu_ptr(g, "float", "pg", bn->in[1]), cu_ptr(g, "float", "pb", bn->in[2]);
            cu_ptr(g, "float", "pm", train ? bn->out[1] : bn->in[3]);
            if (train || bn->attr.bn.mode == IR_BN_APPLY) cu_ptr(g, "float", "ps", train ? bn->out[2] : bn->in[4]);
            else cu_scratch(g, "float", "ps", 0);
        } else
            cu_ptr(g, "float", "x", n->in[0]);
        cu_ptr(g, "float", "w", n->in[1]), cu_ptr(g, "float", "y", n->out[0]);
        if (bias) cu_ptr(g, "float", "bias", n->in[2]);
        break;
    case IR_OP_CONV2D_BWD_DATA: case IR_OP_LINEAR_BWD_DATA:
        cu_ptr(g, "float", "dy", n->in[0]), cu_ptr(g, "float", "w", n->in[1]), cu_ptr(g, "float", "dx", n->out[0]);
        break;
    default:   /* the weight gradients: a conv's parts go to scratch */
        cu_ptr(g, "float", "dy", n->in[0]), cu_ptr(g, "float", "x", n->in[1]);
        if (n->op == IR_OP_CONV2D_BWD_WEIGHT) cu_scratch(g, "float", "partbuf", 0);
        else cu_ptr(g, "float", "dw", n->out[0]);
        break;
    }
}

/* A tiled launch's start: the block's tile (bm, bn) and reduction part, its
 * k range [k0, k1), shared slices As[k][m] and Bs[k][n], and the thread's
 * index t. */
static void tile_head(Gen *g, const Tiled *t, const IrNode *n) {
    long long mt = (t->M + TM - 1) / TM, nt = (t->N + TN - 1) / TN, klen = (t->KD + t->parts - 1) / t->parts;
    cu_begin_blocks(g, mt * nt * t->parts);
    decl(g, n);
    cu_out(g,
           "    __shared__ float As[%d][%d];\n"
           "    __shared__ float Bs[%d][%d];\n"
           "    const int t = threadIdx.x;\n"
           "    const long long bm = blockIdx.x %% %lldLL, bn = blockIdx.x / %lldLL %% %lldLL, part = blockIdx.x / %lldLL;\n"
           "    const long long k0 = part * %lldLL, k1 = k0 + %lldLL < %lldLL ? k0 + %lldLL : %lldLL;\n"
           "    (void)part;\n",
           TK, TM, TK, TN, mt, mt, nt, mt * nt, klen, klen, t->KD, klen, t->KD);
}

/* The loop over k slices, opened: the block gathers the next TK-deep slice
 * of A and B into As and Bs (through `round`: "" or "netc_tf32") and waits
 * for it; the caller's products follow, then tile_stage_end. */
static void tile_stage(Gen *g, const Tiled *t, const char *round) {
    cu_out(g,
           "    for (long long kb = k0; kb < k1; kb += %d) {\n"
           "        for (int u = 0; u < %d; u++) {\n"
           "            int e = t + %d * u, kk = e %% %d, mm = e / %d;\n"
           "            long long m = bm * %d + mm, k = kb + kk;\n"
           "            float v = 0.0f;\n"
           "            if (m < %lldLL && k < k1) { %s }\n"
           "            As[kk][mm] = %s(v);\n"
           "        }\n"
           "        for (int u = 0; u < %d; u++) {\n"
           "            int e = t + %d * u, nn = e %% %d, kk = e / %d;\n"
           "            long long n = bn * %d + nn, k = kb + kk;\n"
           "            float v = 0.0f;\n"
           "            if (n < %lldLL && k < k1) { %s }\n"
           "            Bs[kk][nn] = %s(v);\n"
           "        }\n"
           "        __syncthreads();\n",
           TK, TM * TK / BLOCK, BLOCK, TK, TK, TM, t->M, t->a, round, TN * TK / BLOCK, BLOCK, TN, TN, TN, t->N, t->b,
           round);
}

static void tile_stage_end(Gen *g) { cu_out(g, "        __syncthreads();\n    }\n"); }

/* --precision tf32: the same tiles and staging, the products on the
 * tensor cores.  The block's 8 warps stand 2 x 4 over the 64 x 64 tile,
 * each computing 32 x 16 of it as 2 x 2 mma.sync m16n8k8 per 8-deep slice
 * (netc_mma_tf32: the fragments are read from the staged slices, which hold
 * the operands rounded to tf32); each thread keeps 16 sums, as in fp32. */
static void tiled_tf32(Gen *g, const Tiled *t, const IrNode *n) {
    tile_head(g, t, n);
    cu_out(g,
           "    const int lane = t %% 32, gq = lane / 4, tq = lane %% 4, wm = t / 32 %% 2 * 32, wn = t / 64 * 16;\n"
           "    float acc[2][2][4];\n"
           "    for (int i0 = 0; i0 < 2; i0++)\n"
           "        for (int u = 0; u < 4; u++) {\n"
           "            long long m = bm * %d + wm + i0 * 16 + gq + (u >= 2) * 8;\n"
           "            for (int j0 = 0; j0 < 2; j0++) acc[i0][j0][u] = m < %lldLL ? (%s) : 0.0f;\n"
           "        }\n",
           TM, t->M, t->init);
    tile_stage(g, t, "netc_tf32");
    cu_out(g,
           "        float af[2][4], bf[2][2];\n"
           "        for (int i0 = 0; i0 < 2; i0++) {\n"
           "            int r0 = wm + i0 * 16 + gq;\n"
           "            af[i0][0] = As[tq][r0], af[i0][1] = As[tq][r0 + 8];\n"
           "            af[i0][2] = As[tq + 4][r0], af[i0][3] = As[tq + 4][r0 + 8];\n"
           "        }\n"
           "        for (int j0 = 0; j0 < 2; j0++) {\n"
           "            int c0 = wn + j0 * 8 + gq;\n"
           "            bf[j0][0] = Bs[tq][c0], bf[j0][1] = Bs[tq + 4][c0];\n"
           "        }\n"
           "        for (int i0 = 0; i0 < 2; i0++)\n"
           "            for (int j0 = 0; j0 < 2; j0++) netc_mma_tf32(acc[i0][j0], af[i0], bf[j0]);\n");
    tile_stage_end(g);
    cu_out(g,
           "    for (int i0 = 0; i0 < 2; i0++)\n"
           "        for (int j0 = 0; j0 < 2; j0++)\n"
           "            for (int u = 0; u < 4; u++) {\n"
           "                long long m = bm * %d + wm + i0 * 16 + gq + (u >= 2) * 8;\n"
           "                long long n = bn * %d + wn + j0 * 8 + 2 * tq + (u & 1);\n"
           "                if (m >= %lldLL || n >= %lldLL) continue;\n"
           "                float r = acc[i0][j0][u];\n"
           "                %s\n"
           "            }\n",
           TM, TN, t->M, t->N, t->store);
    if (t->stats_off) {
        /* a thread's 4 rows (i0, upper or lower 8), each over its 4
         * columns, then over the 4 lanes tq of the row by a butterfly;
         * tq 0 stores the warp's: 4 sums a row per tile (t / 64) */
        long long nt = (t->N + TN - 1) / TN;
        cu_out(g,
               "    double *st = (double *)(I + %lldLL);\n"
               "    for (int i0 = 0; i0 < 2; i0++)\n"
               "        for (int hi = 0; hi < 2; hi++) {\n"
               "            long long m = bm * %d + wm + i0 * 16 + gq + hi * 8;\n"
               "            double s = 0, q = 0;\n"
               "            for (int j0 = 0; j0 < 2; j0++)\n"
               "                for (int lo = 0; lo < 2; lo++) {\n"
               "                    long long n = bn * %d + wn + j0 * 8 + 2 * tq + lo;\n"
               "                    if (m < %lldLL && n < %lldLL) { double v = (double)acc[i0][j0][hi * 2 + lo]; s += v; q += v * v; }\n"
               "                }\n"
               "            for (int o = 1; o < 4; o *= 2) {\n"
               "                s += __shfl_xor_sync(0xffffffffu, s, o);\n"
               "                q += __shfl_xor_sync(0xffffffffu, q, o);\n"
               "            }\n"
               "            if (tq == 0 && m < %lldLL) {\n"
               "                st[(m * %lldLL + bn) * 4 + t / 64] = s;\n"
               "                st[%lldLL + (m * %lldLL + bn) * 4 + t / 64] = q;\n"
               "            }\n"
               "        }\n",
               (long long)t->stats_off, TM, TN, t->M, t->N, t->M, nt, t->M * nt * 4, nt);
    }
    cu_end(g);
}

static void tiled(Gen *g, const Tiled *t, const IrNode *n) {
    if (g->tf32) {
        tiled_tf32(g, t, n);
        return;
    }
    tile_head(g, t, n);
    cu_out(g,
           "    const int tm = t / 16, tn = t %% 16;\n"
           "    float acc[4][4];\n"
           "    for (int i0 = 0; i0 < 4; i0++) {\n"
           "        long long m = bm * %d + tm * 4 + i0;\n"
           "        for (int j0 = 0; j0 < 4; j0++) acc[i0][j0] = m < %lldLL ? (%s) : 0.0f;\n"
           "    }\n",
           TM, t->M, t->init);
    tile_stage(g, t, "");
    cu_out(g,
           "        for (int kk = 0; kk < %d; kk++) {\n"
           "            float a[4], b[4];\n"
           "            for (int q = 0; q < 4; q++) a[q] = As[kk][tm * 4 + q], b[q] = Bs[kk][tn * 4 + q];\n"
           "            for (int x0 = 0; x0 < 4; x0++)\n"
           "                for (int y0 = 0; y0 < 4; y0++) acc[x0][y0] += a[x0] * b[y0];\n"
           "        }\n",
           TK);
    tile_stage_end(g);
    cu_out(g,
           "    for (int x0 = 0; x0 < 4; x0++)\n"
           "        for (int y0 = 0; y0 < 4; y0++) {\n"
           "            long long m = bm * %d + tm * 4 + x0, n = bn * %d + tn * 4 + y0;\n"
           "            if (m >= %lldLL || n >= %lldLL) continue;\n"
           "            float r = acc[x0][y0];\n"
           "            %s\n"
           "        }\n",
           TM, TN, t->M, t->N, t->store);
    if (t->stats_off) {
        /* the rows' sums over the thread's 4 columns, then over the 16
         * threads of a row (lanes tn of one half warp) by a butterfly:
         * every lane ends with the same bits; tn 0 stores the tile's */
        long long nt = (t->N + TN - 1) / TN;
        cu_out(g,
               "    double *st = (double *)(I + %lldLL);\n"
               "    for (int x0 = 0; x0 < 4; x0++) {\n"
               "        long long m = bm * %d + tm * 4 + x0;\n"
               "        double s = 0, q = 0;\n"
               "        for (int y0 = 0; y0 < 4; y0++) {\n"
               "            long long n = bn * %d + tn * 4 + y0;\n"
               "            if (m < %lldLL && n < %lldLL) { double v = (double)acc[x0][y0]; s += v; q += v * v; }\n"
               "        }\n"
               "        for (int o = 8; o > 0; o /= 2) {\n"
               "            s += __shfl_xor_sync(0xffffffffu, s, o);\n"
               "            q += __shfl_xor_sync(0xffffffffu, q, o);\n"
               "        }\n"
               "        if (tn == 0 && m < %lldLL) { st[m * %lldLL + bn] = s; st[%lldLL + m * %lldLL + bn] = q; }\n"
               "    }\n",
               (long long)t->stats_off, TM, TN, t->M, t->N, t->M, nt, t->M * nt, nt);
    }
    cu_end(g);
}

static const IrConvAttr *conv_dims(Gen *g, const IrNode *n, long long d[10]) {
    const IrGraph *gr = &g->p->g;
    const IrType *x, *y;
    if (n->op == IR_OP_CONV2D) x = ir_type(gr, n->in[0]), y = ir_type(gr, n->out[0]);
    else if (n->op == IR_OP_CONV2D_BWD_DATA) x = ir_type(gr, n->out[0]), y = ir_type(gr, n->in[0]);
    else x = ir_type(gr, n->in[1]), y = ir_type(gr, n->in[0]);
    const IrConvAttr *a = &n->attr.conv;
    long long v[10] = {x->d[1], x->d[2], x->d[3], y->d[1], y->d[2], y->d[3], a->kh, a->kw, a->sh, a->sw};
    memcpy(d, v, sizeof v);
    return a;
}

static void tiled_conv(Gen *g, const IrNode *n) {
    long long d[10];
    const IrConvAttr *ca = conv_dims(g, n, d);
    long long C = d[0], H = d[1], W = d[2], K = d[3], P = d[4], Q = d[5], R = d[6], S = d[7], sh = d[8], sw = d[9];
    long long ph = ca->ph, pw = ca->pw, B = g->p->batch;
    /* y (forward) and dy (gradients) may be strided views: a concat's part */
    char a[640], b[1024], init[64], store[384], e[160], at[256];
    Tiled t = {0, 0, 0, 1, a, b, init, store, 0};
    if (n->op == IR_OP_CONV2D) {
        /* m: output channel, n: (image, p, q), k: (c, r, s) */
        t.M = K, t.N = B * P * Q, t.KD = C * R * S;
        snprintf(a, sizeof a, "v = w[m * %lldLL + k];", t.KD);
        /* with a prologue: the batch norm's arithmetic and the relu on x
         * (a tap in the padding still reads 0) */
        char xe[96], xat[192], get[320];
        snprintf(xe, sizeof xe, "((img * %lld + c) * %lld + ih) * %lld + iw", C, H, W);
        if (g->pro) {
            cu_at(g, g->pro->in[0], xe, xat, sizeof xat);
            snprintf(get, sizeof get, "{ v = pg[c] * (x[%s] - pm[c]) * ps[c] + pb[c]; v = v < 0.0f ? 0.0f : v; }", xat);
        } else
            snprintf(get, sizeof get, "v = x[%s];", xe);
        snprintf(b, sizeof b,
                 "long long q = n %% %lld, p = n / %lld %% %lld, img = n / %lld;\n"
                 "                long long s = k %% %lld, r = k / %lld %% %lld, c = k / %lld;\n"
                 "                long long ih = p * %lld - %lld + r, iw = q * %lld - %lld + s;\n"
                 "                if (ih >= 0 && ih < %lld && iw >= 0 && iw < %lld) %s",
                 Q, Q, P, P * Q, S, S, R, R * S, sh, ph, sw, pw, H, W, get);
        snprintf(init, sizeof init, "%s", ca->bias ? "bias[m]" : "0.0f");
        snprintf(e, sizeof e, "(n / %lld * %lld + m) * %lld + n %% %lld", P * Q, K, P * Q, P * Q);
        cu_at(g, n->out[0], e, at, sizeof at);
        snprintf(store, sizeof store, "y[%s] = r;", at);
        if (g->want_stats) {
            t.stats_off = g->stats_off;
            g->stats_for = n->out[0];
            g->stats_parts = cu_conv_stats_parts(g, n);
        }
        tiled(g, &t, n);
    } else if (n->op == IR_OP_CONV2D_BWD_DATA) {
        /* m: input channel, n: (image, ih, iw), k: (output channel, r, s) */
        snprintf(e, sizeof e, "((img * %lld + ko) * %lld + tp / %lld) * %lld + tq / %lld", K, P, sh, Q, sw);
        cu_at(g, n->in[0], e, at, sizeof at);
        t.M = C, t.N = B * H * W, t.KD = K * R * S;
        snprintf(a, sizeof a, "long long s = k %% %lld, r = k / %lld %% %lld, ko = k / %lld;\n"
                              "                v = w[((ko * %lld + m) * %lld + r) * %lld + s];",
                 S, S, R, R * S, C, R, S);
        snprintf(b, sizeof b,
                 "long long iw = n %% %lld, ih = n / %lld %% %lld, img = n / %lld;\n"
                 "                long long s = k %% %lld, r = k / %lld %% %lld, ko = k / %lld;\n"
                 "                long long tp = ih + %lld - r, tq = iw + %lld - s;\n"
                 "                if (tp >= 0 && tq >= 0 && tp %% %lld == 0 && tq %% %lld == 0 && tp / %lld < %lld && tq / %lld < %lld)\n"
                 "                    v = dy[%s];",
                 W, W, H, H * W, S, S, R, R * S, ph, pw, sh, sw, sh, P, sw, Q, at);
        snprintf(init, sizeof init, "0.0f");
        snprintf(store, sizeof store, "dx[(n / %lld * %lld + m) * %lld + n %% %lld] = r;", H * W, C, H * W, H * W);
        tiled(g, &t, n);
    } else {
        /* m: output channel, n: (c, r, s), k: (image, p, q) in PARTS parts */
        snprintf(e, sizeof e, "((img * %lld + m) * %lld + p) * %lld + q", K, P, Q);
        cu_at(g, n->in[0], e, at, sizeof at);
        long long nw = K * C * R * S;
        t.M = K, t.N = C * R * S, t.KD = B * P * Q, t.parts = PARTS;
        cu_need(g, (nw + K) * PARTS * 4);
        snprintf(a, sizeof a, "long long q = k %% %lld, p = k / %lld %% %lld, img = k / %lld;\n"
                              "                v = dy[%s];",
                 Q, Q, P, P * Q, at);
        snprintf(b, sizeof b,
                 "long long q = k %% %lld, p = k / %lld %% %lld, img = k / %lld;\n"
                 "                long long s = n %% %lld, r = n / %lld %% %lld, c = n / %lld;\n"
                 "                long long ih = p * %lld - %lld + r, iw = q * %lld - %lld + s;\n"
                 "                if (ih >= 0 && ih < %lld && iw >= 0 && iw < %lld) v = x[((img * %lld + c) * %lld + ih) * %lld + iw];",
                 Q, Q, P, P * Q, S, S, R, R * S, sh, ph, sw, pw, H, W, C, H, W);
        snprintf(init, sizeof init, "0.0f");
        snprintf(store, sizeof store, "partbuf[(m * %lldLL + n) * %d + part] = r;", t.N, PARTS);
        tiled(g, &t, n);
        /* the parts in order, then the bias gradient, as the simple kernel */
        simple_conv_sums(g, n, nw, K, B * P * Q, P * Q);
    }
}

static int simple_only(void) {
    const char *e = getenv("NETC_CUDA_SIMPLE");
    return e && !strcmp(e, "1");
}

int cu_conv_tiled(const IrNode *n) { return n->op == IR_OP_CONV2D && !simple_only(); }

int64_t cu_conv_stats_parts(const Gen *g, const IrNode *n) {
    if (n->op != IR_OP_CONV2D || simple_only()) return 0;
    const IrType *y = ir_type(&g->p->g, n->out[0]);
    int64_t cols = g->p->batch * y->d[2] * y->d[3];
    return (cols + TN - 1) / TN * (g->tf32 ? 4 : 1);
}

void cu_gen_conv(Gen *g, const IrNode *n) {
    if (simple_only()) simple_conv(g, n);
    else tiled_conv(g, n);
}


/* Linear layers as tiled GEMMs (rows r of the batch, in features j, out
 * features o); the bias gradient stays one thread per feature. */
static void tiled_linear(Gen *g, const IrNode *n) {
    const IrGraph *gr = &g->p->g;
    long long B = g->p->batch, in, o;
    if (n->op == IR_OP_LINEAR) in = ir_type(gr, n->in[0])->d[1], o = ir_type(gr, n->out[0])->d[1];
    else if (n->op == IR_OP_LINEAR_BWD_DATA) in = ir_type(gr, n->out[0])->d[1], o = ir_type(gr, n->in[0])->d[1];
    else in = ir_type(gr, n->in[1])->d[1], o = ir_type(gr, n->in[0])->d[1];
    char a[256], b[256], store[256];
    Tiled t = {0, 0, 0, 1, a, b, "0.0f", store, 0};
    if (n->op == IR_OP_LINEAR) {   /* m: o, n: r, k: j */
        t.M = o, t.N = B, t.KD = in;
        snprintf(a, sizeof a, "v = w[m * %lldLL + k];", in);
        snprintf(b, sizeof b, "v = x[n * %lldLL + k];", in);
        snprintf(store, sizeof store, "y[n * %lldLL + m] = %sr;", o, n->attr.linear.bias ? "bias[m] + " : "");
        tiled(g, &t, n);
    } else if (n->op == IR_OP_LINEAR_BWD_DATA) {   /* m: j, n: r, k: o */
        t.M = in, t.N = B, t.KD = o;
        snprintf(a, sizeof a, "v = w[k * %lldLL + m];", in);
        snprintf(b, sizeof b, "v = dy[n * %lldLL + k];", o);
        snprintf(store, sizeof store, "dx[n * %lldLL + m] = r;", in);
        tiled(g, &t, n);
    } else {   /* m: o, n: j, k: r */
        t.M = o, t.N = in, t.KD = B;
        snprintf(a, sizeof a, "v = dy[k * %lldLL + m];", o);
        snprintf(b, sizeof b, "v = x[k * %lldLL + n];", in);
        snprintf(store, sizeof store, "dw[m * %lldLL + n] = r;", in);
        tiled(g, &t, n);
        linear_bias_grad(g, n, B, o);
    }
}

void cu_gen_linear(Gen *g, const IrNode *n) {
    const char *e = getenv("NETC_CUDA_SIMPLE");
    if (e && !strcmp(e, "1")) simple_linear(g, n);
    else tiled_linear(g, n);
}
