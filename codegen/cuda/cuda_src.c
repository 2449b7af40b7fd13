/* cuda_src.c - CUDA C source text for a Program (contract in cuda_src.h).
 *
 * Every launch is one thread per output element (or per partial sum) with
 * its loops written to add in the order the ref backend adds, so results
 * differ from ref by contraction and libm rounding only.  No atomics:
 * scatters of the backward passes are written as gathers, reductions over
 * many values as per-thread partial sums in scratch and a final launch
 * adding them in a fixed order.  The memory plan's strided views (in-place
 * concat's slots, gradient slices) are indexed where they are read and
 * written, image by image at their buffer's stride (cu_at, NETC_AT); a
 * view some op could not take so would go through a contiguous stand-in
 * in the kernel's scratch (gen_staged), which none of the plan's do. */
#include "cuda_src.h"
#include "gen.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* What every source starts with.  netc_tf32 rounds a float to tf32 as the
 * tensor cores take it: cvt.rna.tf32.f32 where the device has it (sm_80
 * on), the same bits by integer arithmetic elsewhere; emu.h gives the
 * host's.  netc_mma_tf32(d, a, b) is mma.sync.aligned.m16n8k8.row.col
 * .f32.tf32.tf32.f32 with c = d: the warp's 16x8 D += A (16x8) B (8x8),
 * lane l = 4 g + t holding the PTX ISA's fragments
 *     a = {A[g][t], A[g+8][t], A[g][t+4], A[g+8][t+4]},
 *     b = {B[t][g], B[t+4][g]},
 *     d = {D[g][2t], D[g][2t+1], D[g+8][2t], D[g+8][2t+1]};
 * on the emulated device (and before sm_80) each lane gathers by shuffles
 * the row of A and the columns of B its four outputs need and adds the
 * eight products in k's order in fp32 (tf32 operands: exact products).
 * The whole warp must call it together. */
static const char prelude[] =
    "#if defined(__CUDACC__)\n"
    "typedef unsigned long long u64;\n"
    "#define KERNEL extern \"C\" __global__ void\n"
    "#define DEV static __device__ __forceinline__\n"
    "#define NETC_INF __int_as_float(0x7f800000)\n"
    "#define NETC_NAN __int_as_float(0x7fffffff)\n"
    "DEV float netc_tf32(float x) {\n"
    "#if __CUDA_ARCH__ >= 800\n"
    "    unsigned u;\n"
    "    asm(\"cvt.rna.tf32.f32 %0, %1;\" : \"=r\"(u) : \"f\"(x));\n"
    "    return __uint_as_float(u);\n"
    "#else\n"
    "    unsigned u = __float_as_uint(x);\n"
    "    if ((u & 0x7f800000u) != 0x7f800000u) u += 0x1000u;\n"
    "    return __uint_as_float(u & 0xffffe000u);\n"
    "#endif\n"
    "}\n"
    "#else\n"
    "#include \"emu.h\"\n"
    "#endif\n"
    "#define KARGS char *A, char *I, void **S, float lr, u64 seed, u64 step\n"
    "#define NETC_AT(e, per, is) ((e) / (per) * (is) + (e) % (per))\n"
    "DEV void netc_mma_tf32(float *d, const float *a, const float *b) {\n"
    "#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800\n"
    "    asm volatile(\"mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 \"\n"
    "                 \"{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\"\n"
    "                 : \"+f\"(d[0]), \"+f\"(d[1]), \"+f\"(d[2]), \"+f\"(d[3])\n"
    "                 : \"r\"(__float_as_uint(a[0])), \"r\"(__float_as_uint(a[1])), \"r\"(__float_as_uint(a[2])),\n"
    "                   \"r\"(__float_as_uint(a[3])), \"r\"(__float_as_uint(b[0])), \"r\"(__float_as_uint(b[1])));\n"
    "#else\n"
    "    int lane = (int)(threadIdx.x % 32), g = lane >> 2, t = lane & 3;\n"
    "    for (int k = 0; k < 8; k++) {\n"
    "        int hi = k >= 4, src = k & 3;\n"
    "        float alo = __shfl_sync(0xffffffffu, hi ? a[2] : a[0], g * 4 + src);\n"
    "        float ahi = __shfl_sync(0xffffffffu, hi ? a[3] : a[1], g * 4 + src);\n"
    "        float b0 = __shfl_sync(0xffffffffu, hi ? b[1] : b[0], 8 * t + src);\n"
    "        float b1 = __shfl_sync(0xffffffffu, hi ? b[1] : b[0], 8 * t + 4 + src);\n"
    "        d[0] += alo * b0, d[1] += alo * b1, d[2] += ahi * b0, d[3] += ahi * b1;\n"
    "    }\n"
    "#endif\n"
    "}\n"
    "DEV u64 mix64(u64 z) {\n"
    "    z += 0x9e3779b97f4a7c15ull;\n"
    "    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;\n"
    "    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;\n"
    "    return z ^ (z >> 31);\n"
    "}\n"
    "DEV float uniform(u64 seed, u64 stream, u64 step, u64 i) {\n"
    "    u64 k = mix64(seed ^ mix64(stream * 0x100000001b3ull + mix64(step)));\n"
    "    return (float)(mix64(k + i) >> 40) * (1.0f / 16777216.0f);\n"
    "}\n";

const char *cg_cuda_prelude(void) { return prelude; }

void cu_out(Gen *g, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(g->f, fmt, ap);
    va_end(ap);
}

/* The address expression of value v's buffer (of its stand-in when the
 * node being generated stages it). */
void cu_addr(Gen *g, int v, char *buf, size_t n) {
    const Program *p = g->p;
    for (int k = 0; k < g->nst; k++)
        if (g->stv[k] == v) {
            snprintf(buf, n, "(I + %lldLL)", (long long)(g->inner_bytes + g->sto[k]));
            return;
        }
    ValueLoc l;
    program_loc(p, v, &l);   /* a view here is a whole root or at its first image */
    v = l.root;
    long long at = (long long)(l.off * p->elem_bytes);
    const BufPlan *b = &p->buf[v];
    if (b->kind == BUF_PERSIST) snprintf(buf, n, "((char *)S[%d] + %lldLL)", b->slot, at);
    else if (b->kind == BUF_INNER) snprintf(buf, n, "(I + %lldLL)", (long long)g->inner[v] + at);
    else snprintf(buf, n, "(A + %lldLL)", (long long)b->offset + at);
}

/* The index in value v's buffer of its element at e (an expression: the
 * index in v as a tensor of its own): e, or for a view that is a strided
 * part of its root (and not staged), e's image at the root's stride. */
void cu_at(Gen *g, int v, const char *e, char *buf, size_t n) {
    ValueLoc l;
    program_loc(g->p, v, &l);
    for (int k = 0; k < g->nst; k++) l.strided &= g->stv[k] != v;
    if (!l.strided) snprintf(buf, n, "%s", e);
    else snprintf(buf, n, "NETC_AT(%s, %lldLL, %lldLL)", e, (long long)l.per, (long long)l.istride);
}

/* A new launch of this kernel: grid blocks of BLOCK threads. */
static const CudaLaunch *launch(Gen *g, int64_t grid) {
    CudaSource *s = g->s;
    s->launch = ir_xrealloc(s->launch, (size_t)(s->nlaunch + 1) * sizeof(CudaLaunch));
    CudaLaunch *l = &s->launch[s->nlaunch++];
    snprintf(l->name, sizeof l->name, "k%d_%d", g->kernel, g->nl++);
    l->kernel = g->kernel;
    l->block = BLOCK;
    l->grid = (unsigned)(grid > 0 ? grid : 1);
    return l;
}

/* Starts a launch of `threads` threads; `i` is the thread's index. */
void cu_begin(Gen *g, int64_t threads) {
    const CudaLaunch *l = launch(g, (threads + BLOCK - 1) / BLOCK);
    cu_out(g, "KERNEL %s(KARGS) {\n    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n"
           "    (void)A; (void)I; (void)S; (void)lr; (void)seed; (void)step;\n"
           "    if (i >= %lldLL) return;\n", l->name, (long long)threads);
}

void cu_begin_blocks(Gen *g, int64_t blocks) {
    const CudaLaunch *l = launch(g, blocks);
    cu_out(g, "KERNEL %s(KARGS) {\n    (void)A; (void)I; (void)S; (void)lr; (void)seed; (void)step;\n", l->name);
}

void cu_end(Gen *g) { cu_out(g, "}\n"); }

/* Declares `float *name` (or int) for value v. */
void cu_ptr(Gen *g, const char *type, const char *name, int v) {
    char a[64];
    cu_addr(g, v, a, sizeof a);
    cu_out(g, "    %s *%s = (%s *)%s;\n", type, name, type, a);
}

/* Scratch at byte offset off of this kernel's scratch area, as `double *name`. */
void cu_scratch(Gen *g, const char *type, const char *name, int64_t off) {
    cu_out(g, "    %s *%s = (%s *)(I + %lldLL);\n", type, name, type, (long long)(g->inner_bytes + g->sbase + off));
}

void cu_need(Gen *g, int64_t bytes) {
    if (g->sbase + bytes > g->scratch) g->scratch = g->sbase + bytes;
}

void cu_fconst(char *buf, size_t n, float x) { snprintf(buf, n, "%.9ef", (double)x); }

/* ---- ops ---- */

/* body with every "name[i]" made "name[at]" */
static char *subst_index(const char *body, const char *name, const char *at) {
    char from[24];
    snprintf(from, sizeof from, "%s[i]", name);
    size_t nf = strlen(from), na = strlen(at), len = strlen(body) + 1;
    for (const char *q = strstr(body, from); q; q = strstr(q + nf, from)) len += strlen(name) + na + 2;
    char *r = ir_xcalloc(len, 1), *w = r;
    for (const char *q = body, *hit; ; q = hit + nf) {
        hit = strstr(q, from);
        size_t k = hit ? (size_t)(hit - q) : strlen(q);
        memcpy(w, q, k);
        w += k;
        if (!hit) break;
        w += sprintf(w, "%s[%s]", name, at);
    }
    return r;
}

/* body reads a0.. and writes y0.. at i; a strided view among them is read
 * or written at its image stride (every "a0[i]" of it made "a0[NETC_AT(i,
 * ...)]": the ops whose views gen_staged leaves to them index them by i
 * alone). */
void cu_elementwise(Gen *g, const IrNode *n, int64_t cnt, const char *body) {
    cu_begin(g, cnt);
    char nm[16], at[96], *b = ir_xcalloc(strlen(body) + 1, 1);
    strcpy(b, body);
    for (int k = 0; k < n->nin + n->nout; k++) {
        int v = k < n->nin ? n->in[k] : n->out[k - n->nin];
        snprintf(nm, sizeof nm, k < n->nin ? "a%d" : "y%d", k < n->nin ? k : k - n->nin);
        cu_ptr(g, "float", nm, v);
        cu_at(g, v, "i", at, sizeof at);
        if (strcmp(at, "i")) {
            char *t = subst_index(b, nm, at);
            free(b);
            b = t;
        }
    }
    cu_out(g, "%s", b);
    free(b);
    cu_end(g);
}

static void gen_pool(Gen *g, const IrNode *n) {
    const IrGraph *gr = &g->p->g;
    const IrPoolAttr *a = &n->attr.pool;
    int fwd = n->op == IR_OP_MAXPOOL || n->op == IR_OP_AVGPOOL;
    const IrType *x = fwd ? ir_type(gr, n->in[0]) : ir_type(gr, n->out[0]);
    const IrType *y = fwd ? ir_type(gr, n->out[0]) : ir_type(gr, n->in[0]);
    long long B = g->p->batch, C = x->d[1], H = x->d[2], W = x->d[3], P = y->d[2], Q = y->d[3];
    long long kh = a->kh, kw = a->kw, sh = a->sh, sw = a->sw, ph = a->ph, pw = a->pw;
    char inv[32];
    cu_fconst(inv, sizeof inv, 1.0f / (float)(kh * kw));
    /* argmax of window (p, q) of plane xp, as ref's pool_argmax */
    char argmax[1024];
    snprintf(argmax, sizeof argmax,
             "        long long best = -1; float m = -NETC_INF;\n"
             "        for (int u = 0; u < %lld; u++) {\n"
             "            long long ih = p * %lld - %lld + u;\n"
             "            if (ih < 0 || ih >= %lld) continue;\n"
             "            for (int v = 0; v < %lld; v++) {\n"
             "                long long iw = q * %lld - %lld + v;\n"
             "                if (iw < 0 || iw >= %lld) continue;\n"
             "                float xv = xp[ih * %lld + iw];\n"
             "                if (best < 0 || xv > m || xv != xv) { best = ih * %lld + iw; m = xv; }\n"
             "            }\n"
             "        }\n",
             kh, sh, ph, H, kw, sw, pw, W, W, W);
    char yi[96];   /* y may be a strided view (a concat's part), dy likewise */
    cu_at(g, fwd ? n->out[0] : n->in[0], fwd ? "i" : "pl * PQ", yi, sizeof yi);
    if (fwd) {
        cu_begin(g, B * C * P * Q);
        cu_ptr(g, "float", "x", n->in[0]);
        cu_ptr(g, "float", "y", n->out[0]);
        cu_out(g, "    long long q = i %% %lld, p = i / %lld %% %lld, pl = i / %lld;\n    const float *xp = x + pl * %lld;\n",
            Q, Q, P, P * Q, H * W);
        if (n->op == IR_OP_MAXPOOL) {
            cu_out(g, "    {\n%s        y[%s] = best < 0 ? -NETC_INF : xp[best];\n    }\n", argmax, yi);
        } else {
            cu_out(g, "    float acc = 0.0f;\n"
                   "    for (int u = 0; u < %lld; u++) {\n"
                   "        long long ih = p * %lld - %lld + u;\n"
                   "        if (ih < 0 || ih >= %lld) continue;\n"
                   "        for (int v = 0; v < %lld; v++) {\n"
                   "            long long iw = q * %lld - %lld + v;\n"
                   "            if (iw >= 0 && iw < %lld) acc += xp[ih * %lld + iw];\n"
                   "        }\n"
                   "    }\n"
                   "    y[%s] = acc * %s;\n",
                kh, sh, ph, H, kw, sw, pw, W, W, yi, inv);
        }
        cu_end(g);
        return;
    }
    /* backward as a gather: input (ih, iw) adds the windows (p, q), in
     * row-major order as ref scatters them, that cover it (and, for max,
     * whose argmax it is). */
    cu_begin(g, B * C * H * W);
    cu_ptr(g, "float", "dy", n->in[0]);
    if (n->op == IR_OP_MAXPOOL_BWD) cu_ptr(g, "float", "x", n->in[1]);
    cu_ptr(g, "float", "dx", n->out[0]);
    cu_out(g, "    long long jw = i %% %lld, jh = i / %lld %% %lld, pl = i / %lld;\n", W, W, H, H * W);
    if (n->op == IR_OP_MAXPOOL_BWD) cu_out(g, "    const float *xp = x + pl * %lld;\n", H * W);
    cu_out(g, "    const long long PQ = %lldLL;\n    const float *yp = dy + %s;\n    float acc = 0.0f;\n", P * Q, yi);
    cu_out(g, "    long long p0 = jh + %lld - %lld + 1, q0 = jw + %lld - %lld + 1;\n", ph, kh, pw, kw);
    cu_out(g, "    p0 = p0 <= 0 ? 0 : (p0 + %lld - 1) / %lld;\n    q0 = q0 <= 0 ? 0 : (q0 + %lld - 1) / %lld;\n", sh, sh,
        sw, sw);
    cu_out(g, "    for (long long p = p0; p < %lld && p * %lld - %lld <= jh; p++)\n"
           "        for (long long q = q0; q < %lld && q * %lld - %lld <= jw; q++) {\n",
        P, sh, ph, Q, sw, pw);
    if (n->op == IR_OP_MAXPOOL_BWD)
        cu_out(g, "%s        if (best == jh * %lld + jw) acc += yp[p * %lld + q];\n", argmax, W, Q);
    else
        cu_out(g, "            acc += yp[p * %lld + q] * %s;\n", Q, inv);
    cu_out(g, "        }\n    dx[i] = acc;\n");
    cu_end(g);
}

static void gen_global_pool(Gen *g, const IrNode *n) {
    const IrGraph *gr = &g->p->g;
    int fwd = n->op == IR_OP_GAVGPOOL || n->op == IR_OP_GMAXPOOL;
    const IrType *x = fwd ? ir_type(gr, n->in[0]) : ir_type(gr, n->out[0]);
    long long nc = g->p->batch * x->d[1], hw = x->d[2] * x->d[3];
    char b[1024];
    const char *argmax = "    long long best = 0;\n"
                         "    for (long long j = 1; j < %lld; j++) if (xp[j] > xp[best] || xp[j] != xp[j]) best = j;\n";
    switch (n->op) {
    case IR_OP_GAVGPOOL:
        snprintf(b, sizeof b, "    float acc = 0.0f;\n    for (long long j = 0; j < %lld; j++) acc += a0[i * %lld + j];\n"
                              "    y0[i] = acc / (float)%lld;\n", hw, hw, hw);
        cu_elementwise(g, n, nc, b);
        break;
    case IR_OP_GAVGPOOL_BWD:
        snprintf(b, sizeof b, "    y0[i] = a0[i / %lld] / (float)%lld;\n", hw, hw);
        cu_elementwise(g, n, nc * hw, b);
        break;
    case IR_OP_GMAXPOOL: {
        int k = snprintf(b, sizeof b, "    const float *xp = a0 + i * %lld;\n", hw);
        k += snprintf(b + k, sizeof b - (size_t)k, argmax, hw);
        snprintf(b + k, sizeof b - (size_t)k, "    y0[i] = xp[best];\n");
        cu_elementwise(g, n, nc, b);
        break;
    }
    default: {  /* GMAXPOOL_BWD (dy, x) -> dx */
        int k = snprintf(b, sizeof b, "    long long pl = i / %lld;\n    const float *xp = a1 + pl * %lld;\n", hw, hw);
        k += snprintf(b + k, sizeof b - (size_t)k, argmax, hw);
        snprintf(b + k, sizeof b - (size_t)k, "    y0[i] = best == i %% %lld ? a0[pl] : 0.0f;\n", hw);
        cu_elementwise(g, n, nc * hw, b);
    }
    }
}

/* Whether value part lies in value whole's buffer at element off of each
 * of whole's images: a concat input the plan made a view of its output, a
 * slice of its input, a reshape sharing its input's buffer (off 0). */
static int in_place(const Program *p, int part, int whole, int64_t off) {
    ValueLoc a, b;
    program_loc(p, part, &a);
    program_loc(p, whole, &b);
    return a.root == b.root && a.istride == b.istride && a.off == b.off + off;
}

static int gen_node(Gen *g, const IrNode *n, Diag *d) {
    const Program *p = g->p;
    const IrGraph *gr = &p->g;
    int64_t B = p->batch;
    const IrType *tx = n->nin ? ir_type(gr, n->in[0]) : NULL;
    int64_t cnt = tx ? ir_numel(tx, B) : 0;
    char b[2048];
    switch (n->op) {
    case IR_OP_INPUT: case IR_OP_LABELS: case IR_OP_PARAM: return 0;
    case IR_OP_CONV2D: case IR_OP_CONV2D_BWD_DATA: case IR_OP_CONV2D_BWD_WEIGHT: cu_gen_conv(g, n); return 0;
    case IR_OP_LINEAR: case IR_OP_LINEAR_BWD_DATA: case IR_OP_LINEAR_BWD_WEIGHT: cu_gen_linear(g, n); return 0;
    case IR_OP_MAXPOOL: case IR_OP_AVGPOOL: case IR_OP_MAXPOOL_BWD: case IR_OP_AVGPOOL_BWD: gen_pool(g, n); return 0;
    case IR_OP_GAVGPOOL: case IR_OP_GMAXPOOL: case IR_OP_GAVGPOOL_BWD: case IR_OP_GMAXPOOL_BWD:
        gen_global_pool(g, n);
        return 0;
    case IR_OP_BATCHNORM: case IR_OP_BATCHNORM_BWD: cu_gen_bn(g, n); return 0;
    case IR_OP_RELU: cu_elementwise(g, n, cnt, "    y0[i] = a0[i] < 0.0f ? 0.0f : a0[i];\n"); return 0;
    case IR_OP_SIGMOID: cu_elementwise(g, n, cnt, "    y0[i] = 1.0f / (1.0f + expf(-a0[i]));\n"); return 0;
    case IR_OP_RELU_BWD: cu_elementwise(g, n, cnt, "    y0[i] = a1[i] > 0.0f ? a0[i] : 0.0f;\n"); return 0;
    case IR_OP_SIGMOID_BWD: cu_elementwise(g, n, cnt, "    y0[i] = a0[i] * a1[i] * (1.0f - a1[i]);\n"); return 0;
    case IR_OP_ADD: cu_elementwise(g, n, cnt, "    y0[i] = a0[i] + a1[i];\n"); return 0;
    case IR_OP_DROPOUT_BWD: cu_elementwise(g, n, cnt, "    y0[i] = a0[i] * a1[i];\n"); return 0;
    case IR_OP_FLATTEN: case IR_OP_RESHAPE:
        if (!in_place(p, n->out[0], n->in[0], 0)) cu_elementwise(g, n, cnt, "    y0[i] = a0[i];\n");
        return 0;
    case IR_OP_ACCUM: {
        int k = snprintf(b, sizeof b, "    float acc = a0[i];\n");
        for (int j = 1; j < n->nin; j++) k += snprintf(b + k, sizeof b - (size_t)k, "    acc += a%d[i];\n", j);
        snprintf(b + k, sizeof b - (size_t)k, "    y0[i] = acc;\n");
        cu_elementwise(g, n, cnt, b);
        return 0;
    }
    case IR_OP_DROPOUT: {
        float pr = n->attr.dropout.p;
        if (n->attr.dropout.mode != IR_TRAIN) {
            cu_elementwise(g, n, cnt, "    y0[i] = a0[i];\n");
            return 0;
        }
        char keep[32], pc[32];
        cu_fconst(keep, sizeof keep, pr < 1.0f ? 1.0f / (1.0f - pr) : 0.0f);
        cu_fconst(pc, sizeof pc, pr);
        snprintf(b, sizeof b, "    float m = %s && uniform(seed, %lluull, step, (u64)i) < %s ? 0.0f : %s;\n"
                              "    %sy0[i] = a0[i] * m;\n",
                 pr > 0.0f ? "1" : "0", (unsigned long long)n->attr.dropout.index, pc, keep,
                 n->nout > 1 ? "y1[i] = m; " : "");
        cu_elementwise(g, n, cnt, b);
        return 0;
    }
    case IR_OP_CONCAT: {
        /* each input not already in its place in the output (a view the
         * plan put there) copied into it, image by image */
        const IrType *ty = ir_type(gr, n->out[0]);
        long long ctot = ty->d[1], hw = ty->d[2] * ty->d[3], c0 = 0;
        for (int j = 0; j < n->nin; j++) {
            long long ck = ir_type(gr, n->in[j])->d[1];
            if (!in_place(p, n->in[j], n->out[0], c0 * hw)) {
                char e[160], at[256];
                snprintf(e, sizeof e, "i / %lldLL * %lldLL + %lldLL + i %% %lldLL", ck * hw, ctot * hw, c0 * hw, ck * hw);
                cu_at(g, n->out[0], e, at, sizeof at);
                cu_begin(g, B * ck * hw);
                cu_ptr(g, "float", "a", n->in[j]);
                cu_ptr(g, "float", "y", n->out[0]);
                cu_at(g, n->in[j], "i", e, sizeof e);
                cu_out(g, "    y[%s] = a[%s];\n", at, e);
                cu_end(g);
            }
            c0 += ck;
        }
        return 0;
    }
    case IR_OP_SLICE: {
        long long ctot = tx->d[1], hw = tx->d[2] * tx->d[3], c = n->attr.slice.c, c0 = n->attr.slice.c0;
        if (in_place(p, n->out[0], n->in[0], c0 * hw)) return 0;
        snprintf(b, sizeof b, "i / %lldLL * %lldLL + %lldLL + i %% %lldLL", c * hw, ctot * hw, c0 * hw, c * hw);
        char at[256], yi[96];
        cu_at(g, n->in[0], b, at, sizeof at);
        cu_at(g, n->out[0], "i", yi, sizeof yi);
        cu_begin(g, B * c * hw);
        cu_ptr(g, "float", "a", n->in[0]);
        cu_ptr(g, "float", "y", n->out[0]);
        cu_out(g, "    y[%s] = a[%s];\n", yi, at);
        cu_end(g);
        return 0;
    }
    case IR_OP_SGD: cu_elementwise(g, n, cnt, "    a0[i] -= lr * a1[i];\n"); return 0;
    case IR_OP_SOFTMAX_XENT: case IR_OP_SOFTMAX_XENT_BWD: {
        long long K = tx->d[1];
        char rows[1024];
        snprintf(rows, sizeof rows,
                 "        const float *l = lg + r * %lld;\n        int lab = labels[r];\n"
                 "        float mx = l[0], s = 0.0f;\n"
                 "        for (int j = 1; j < %lld; j++) if (l[j] > mx) mx = l[j];\n"
                 "        for (int j = 0; j < %lld; j++) s += expf(l[j] - mx);\n",
                 K, K, K);
        cu_begin(g, n->op == IR_OP_SOFTMAX_XENT ? 1 : B);
        cu_ptr(g, "float", "lg", n->in[0]);
        cu_ptr(g, "int", "labels", n->in[1]);
        cu_ptr(g, "float", "y", n->out[0]);
        if (n->op == IR_OP_SOFTMAX_XENT)
            cu_out(g, "    float acc = 0.0f;\n    for (long long r = 0; r < %lld; r++) {\n%s"
                   "        acc += lab < 0 || lab >= %lld ? NETC_NAN : logf(s) - (l[lab] - mx);\n    }\n"
                   "    y[0] = acc / (float)%lld;\n",
                (long long)B, rows, K, (long long)B);
        else
            cu_out(g, "    long long r = i;\n    {\n%s"
                   "        for (int j = 0; j < %lld; j++)\n"
                   "            y[r * %lld + j] = lab < 0 || lab >= %lld ? NETC_NAN : (expf(l[j] - mx) / s - (j == lab ? 1.0f : 0.0f)) / (float)%lld;\n"
                   "    }\n",
                rows, K, K, K, (long long)B);
        cu_end(g);
        return 0;
    }
    case IR_OP_COUNT: break;
    }
    return diag_error_noloc(d, "no kernel for op %d", (int)n->op);
}

/* A launch copying staged value k between its place and its stand-in. */
static void stage_copy(Gen *g, int k, int in) {
    const Program *p = g->p;
    g->s->nstaged++;
    ValueLoc l;
    program_loc(p, g->stv[k], &l);
    char place[64];
    int nst = g->nst;
    g->nst = 0;
    cu_addr(g, l.root, place, sizeof place);
    cu_begin(g, p->batch * l.per);
    g->nst = nst;
    cu_out(g, "    float *place = (float *)%s + %lldLL, *flat = (float *)(I + %lldLL);\n"
           "    long long at = i / %lldLL * %lldLL + i %% %lldLL;\n"
           "    %s;\n",
        place, (long long)l.off, (long long)(g->inner_bytes + g->sto[k]), (long long)l.per, (long long)l.istride,
        (long long)l.per, in ? "flat[i] = place[at]" : "place[at] = flat[i]");
    cu_end(g);
}

/* Whether gen_node reads or writes operand j of n (inputs, then outputs)
 * at a strided view's image stride itself (cu_at): the operands
 * plan_view_ok lets the plan make views, each op's in its own way. */
static int direct_view(const IrNode *n, int j) {
    switch (n->op) {
    case IR_OP_CONCAT: case IR_OP_SLICE: case IR_OP_ACCUM: case IR_OP_RELU: case IR_OP_ADD: case IR_OP_RELU_BWD:
    case IR_OP_SIGMOID_BWD: case IR_OP_DROPOUT_BWD:
        return 1;
    case IR_OP_BATCHNORM: return j == 0;                     /* x */
    case IR_OP_BATCHNORM_BWD: return j == 1;                 /* x */
    case IR_OP_CONV2D: case IR_OP_MAXPOOL: case IR_OP_AVGPOOL: return j == n->nin;   /* y */
    case IR_OP_CONV2D_BWD_DATA: case IR_OP_CONV2D_BWD_WEIGHT: case IR_OP_MAXPOOL_BWD: case IR_OP_AVGPOOL_BWD:
        return j == 0;                                       /* dy */
    default: return 0;
    }
}

/* Node n with the strided views among its operands that it cannot take as
 * they are (none, as the plan makes them) staged: copied to and from
 * contiguous stand-ins in scratch. */
static int gen_staged(Gen *g, const IrNode *n, Diag *d) {
    const Program *p = g->p;
    g->nst = 0;
    g->sbase = 0;
    for (int j = 0; j < n->nin + n->nout; j++) {
        int v = j < n->nin ? n->in[j] : n->out[j - n->nin], seen = 0, direct = 1;
        if (v < 0) continue;
        ValueLoc l;
        program_loc(p, v, &l);
        for (int k = 0; k < g->nst; k++) seen |= g->stv[k] == v;
        for (int i = 0; i < n->nin + n->nout; i++)
            if ((i < n->nin ? n->in[i] : n->out[i - n->nin]) == v) direct &= direct_view(n, i);
        if (!l.strided || seen || direct) continue;
        g->stv[g->nst] = v;
        g->sto[g->nst++] = g->sbase;
        g->sbase += (p->batch * l.per * p->elem_bytes + 63) / 64 * 64;
    }
    cu_need(g, 0);
    for (int k = 0; k < g->nst; k++)
        for (int j = 0; j < n->nin; j++)
            if (n->in[j] == g->stv[k]) {
                stage_copy(g, k, 1);
                break;
            }
    int rc = gen_node(g, n, d);
    for (int k = 0; k < g->nst && !rc; k++)
        for (int j = 0; j < n->nout; j++)
            if (n->out[j] == g->stv[k]) {
                stage_copy(g, k, 0);
                break;
            }
    g->nst = 0;
    g->sbase = 0;
    return rc;
}

int cg_cuda_source(const Program *p, int tf32, CudaSource *s, Diag *d) {
    memset(s, 0, sizeof *s);
    if (p->elem_bytes != 4) return diag_error_noloc(d, "the cuda backend runs float programs (elem_bytes 4)");
    Gen g = {.p = p, .f = open_memstream(&s->text, &s->len), .s = s, .tf32 = tf32,
             .inner = ir_xcalloc((size_t)p->g.nvalues + 1, sizeof(int64_t))};
    if (!g.f) return diag_error_noloc(d, "out of memory");
    g.inner_bytes = (program_inner_offsets(p, g.inner) + 63) / 64 * 64;
    /* the conv statistics region, between the in-kernel values and scratch */
    g.stats_off = g.inner_bytes;
    g.inner_bytes += cu_stats_bytes(&g);
    g.stats_for = -1;
    fputs(prelude, g.f);
    int rc = 0;
    for (int k = 0; k < p->nkernels && !rc; k++) {
        g.kernel = k;
        g.nl = 0;
        g.stats_for = -1;
        cu_out(&g, "\n/* kernel %d: %s */\n", k, fuse_name(p->kernels[k].pattern));
        for (int j = 0; j < p->kernels[k].nnodes && !rc; j++) {
            const IrNode *n = ir_node(&p->g, p->kernels[k].nodes[j]);
            if (cu_bn_prologue(&g, &p->kernels[k], j)) {   /* the batch norm's statistics, then the conv */
                g.pro = n;
                rc = gen_staged(&g, n, d);
                if (!rc) rc = gen_staged(&g, ir_node(&p->g, p->kernels[k].nodes[2]), d);
                g.pro = NULL;
                break;
            }
            int c = cu_bn_chain(&g, &p->kernels[k], j);
            g.want_stats = cu_conv_stats(&g, &p->kernels[k], j);
            rc = gen_staged(&g, n, d);
            g.want_stats = 0;
            g.nchain = 0;
            j += c;
        }
    }
    fclose(g.f);
    free(g.inner);
    s->side_bytes = g.inner_bytes + g.scratch;
    if (rc) cg_cuda_source_free(s);
    return rc;
}

void cg_cuda_source_free(CudaSource *s) {
    free(s->text);
    free(s->launch);
    memset(s, 0, sizeof *s);
}
