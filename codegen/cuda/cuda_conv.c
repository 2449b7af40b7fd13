/* cuda_conv.c - CUDA C for convolutions and linear layers, forward and
 * both gradients (contract in gen.h). */
#include "gen.h"

void cu_gen_conv(Gen *g, const IrNode *n) {
    const IrGraph *gr = &g->p->g;
    const IrConvAttr *a = &n->attr.conv;
    int64_t B = g->p->batch;
    const IrType *x, *y;
    if (n->op == IR_OP_CONV2D) x = ir_type(gr, n->in[0]), y = ir_type(gr, n->out[0]);
    else if (n->op == IR_OP_CONV2D_BWD_DATA) x = ir_type(gr, n->out[0]), y = ir_type(gr, n->in[0]);
    else x = ir_type(gr, n->in[1]), y = ir_type(gr, n->in[0]);
    long long C = x->d[1], H = x->d[2], W = x->d[3], K = y->d[1], P = y->d[2], Q = y->d[3];
    long long R = a->kh, Sw = a->kw, sh = a->sh, sw = a->sw, ph = a->ph, pw = a->pw;
    if (n->op == IR_OP_CONV2D) {
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
               "    y[i] = acc;\n",
            C, R, sh, ph, H, Sw, sw, pw, W, C, R, Sw, C, H, W);
        cu_end(g);
    } else if (n->op == IR_OP_CONV2D_BWD_DATA) {
        /* dx[n,c,ih,iw] = sum_k,r,s w[k,c,r,s] dy[n,k,p,q] with p*sh-ph+r = ih */
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
               "                acc += w[((k * %lld + c) * %lld + r) * %lld + s] * dy[((nn * %lld + k) * %lld + p) * %lld + q];\n"
               "            }\n"
               "        }\n"
               "    dx[i] = acc;\n",
            K, R, ph, sh, sh, P, Sw, pw, sw, sw, Q, C, R, Sw, K, P, Q);
        cu_end(g);
    } else {
        /* dw[k,c,r,s]: PARTS partial sums over slices of (n, p, q), then
         * their sum in order; db likewise. */
        long long nw = K * C * R * Sw, m = B * P * Q, len = (m + PARTS - 1) / PARTS;
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
               "        acc += dy[((nn * %lld + k) * %lld + p) * %lld + q] * x[((nn * %lld + c) * %lld + ih) * %lld + iw];\n"
               "    }\n"
               "    part[i] = acc;\n",
            len, m, len, m, len, Q, Q, P, P * Q, sh, ph, sw, pw, H, W, K, P, Q, C, H, W);
        cu_end(g);
        cu_begin(g, nw);
        cu_ptr(g, "float", "dw", n->out[0]);
        cu_scratch(g, "float", "part", 0);
        cu_out(g, "    float acc = 0.0f;\n    for (int t = 0; t < %d; t++) acc += part[i * %d + t];\n    dw[i] = acc;\n",
            PARTS, PARTS);
        cu_end(g);
        if (n->nout > 1) {
            cu_begin(g, K * PARTS);
            cu_ptr(g, "float", "dy", n->in[0]);
            cu_scratch(g, "float", "part", nw * PARTS * 4);
            cu_out(g, "    long long k = i / %d, t = i %% %d;\n    float acc = 0.0f;\n"
                   "    long long j1 = (t + 1) * %lldLL < %lldLL ? (t + 1) * %lldLL : %lldLL;\n"
                   "    for (long long j = t * %lldLL; j < j1; j++)\n"
                   "        acc += dy[(j / %lld * %lld + k) * %lld + j %% %lld];\n"
                   "    part[i] = acc;\n",
                PARTS, PARTS, len, m, len, m, len, P * Q, K, P * Q, P * Q);
            cu_end(g);
            cu_begin(g, K);
            cu_ptr(g, "float", "db", n->out[1]);
            cu_scratch(g, "float", "part", nw * PARTS * 4);
            cu_out(g, "    float acc = 0.0f;\n    for (int t = 0; t < %d; t++) acc += part[i * %d + t];\n    db[i] = acc;\n",
                PARTS, PARTS);
            cu_end(g);
        }
    }
}

void cu_gen_linear(Gen *g, const IrNode *n) {
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
        if (n->nout > 1) {
            cu_begin(g, o);
            cu_ptr(g, "float", "dy", n->in[0]);
            cu_ptr(g, "float", "db", n->out[1]);
            cu_out(g, "    float acc = 0.0f;\n    for (long long r = 0; r < %lld; r++) acc += dy[r * %lld + i];\n"
                   "    db[i] = acc;\n",
                B, o);
            cu_end(g);
        }
    }
}

/* One thread per element of n values: `body` uses i and the pointers. */
