/* kernels.c - every op but conv, linear, pooling and batch norm: elementwise
 * ops and their fused chains, dropout, softmax cross-entropy, SGD, copies.  Plain loops specialised
 * on constant shapes; LLVM vectorises the elementwise ones, reductions use
 * explicit vector accumulators.  Semantics are codegen/ref_kernels.inc's. */
#include "cg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ref_kernels.h"

LLVMValueRef cg_optr(Cg *cg, const IrNode *n, int k) {
    if (k >= n->nout || n->out[k] < 0) return NULL;
    int v = n->out[k];
    while (cg->p->buf[v].kind == BUF_ALIAS) v = cg->p->buf[v].alias;
    if (cg->p->buf[v].kind == BUF_NONE) return NULL;
    return cg_vptr(cg, n->out[k]);
}

static LLVMValueRef ftrunc(Cg *cg, LLVMValueRef x) { return LLVMBuildFPTrunc(cg->b, x, cg->f32, ""); }
static LLVMValueRef call1(Cg *cg, const char *intr, LLVMTypeRef t, LLVMValueRef x) {
    return cg_call(cg, cg_intrinsic(cg, intr, &t, 1), &x, 1);
}

/* ---- elementwise ------------------------------------------------------------ */

typedef struct {
    IrOp op;
    float fp, keep;        /* dropout */
    LLVMValueRef key;      /* dropout: per-step key (i64) */
    LLVMValueRef lr;       /* sgd: float */
    int nin;
} Ew;

static LLVMValueRef mix64(Cg *cg, LLVMValueRef z) {
    LLVMBuilderRef b = cg->b;
    LLVMTypeRef t = cg->i64;
    z = LLVMBuildAdd(b, z, LLVMConstInt(t, 0x9e3779b97f4a7c15ull, 0), "");
    z = LLVMBuildMul(b, LLVMBuildXor(b, z, LLVMBuildLShr(b, z, LLVMConstInt(t, 30, 0), ""), ""),
                     LLVMConstInt(t, 0xbf58476d1ce4e5b9ull, 0), "");
    z = LLVMBuildMul(b, LLVMBuildXor(b, z, LLVMBuildLShr(b, z, LLVMConstInt(t, 27, 0), ""), ""),
                     LLVMConstInt(t, 0x94d049bb133111ebull, 0), "");
    return LLVMBuildXor(b, z, LLVMBuildLShr(b, z, LLVMConstInt(t, 31, 0), ""), "");
}

/* e^x in plain arithmetic, so that the loop vectoriser can widen it (a call
 * of llvm.exp stays one expf call per element): x = n ln2 + f, |f| <= ln2/2
 * (ln2 in two parts), e^f by its degree-7 Taylor polynomial (relative error
 * below 2e-7 on that interval), times 2^n built in the exponent bits.  x is
 * clamped to [-87, 88] (e^x stays a normal float; beyond, expf gives 0 or
 * inf, and sigmoid 0 or 1 either way to within 1e-38); NaN stays NaN. */
static LLVMValueRef fast_exp(Cg *cg, LLVMValueRef x) {
    LLVMValueRef xc = sel(cg, fcmp(cg, LLVMRealOGT, x, cf32(cg, 88.0f)), cf32(cg, 88.0f), x);
    xc = sel(cg, fcmp(cg, LLVMRealOLT, xc, cf32(cg, -87.0f)), cf32(cg, -87.0f), xc);
    xc = sel(cg, fcmp(cg, LLVMRealUNO, x, x), cf32(cg, 0.0f), xc);
    LLVMValueRef n = call1(cg, "llvm.rint", cg->f32, f_mul(cg, xc, cf32(cg, 1.44269504088896341f)));
    LLVMValueRef f = f_sub(cg, xc, f_mul(cg, n, cf32(cg, 0.693359375f)));
    f = f_sub(cg, f, f_mul(cg, n, cf32(cg, -2.12194440e-4f)));
    static const float c[] = {1.0f / 5040, 1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f};
    LLVMValueRef p = cf32(cg, c[0]);
    for (int k = 1; k < 8; k++) p = f_add(cg, f_mul(cg, p, f), cf32(cg, c[k]));
    LLVMValueRef ni = LLVMBuildFPToSI(cg->b, n, cg->i32, "");
    LLVMValueRef bits = LLVMBuildShl(cg->b, LLVMBuildAdd(cg->b, ni, LLVMConstInt(cg->i32, 127, 0), ""),
                                     LLVMConstInt(cg->i32, 23, 0), "");
    LLVMValueRef r = f_mul(cg, p, LLVMBuildBitCast(cg->b, bits, cg->f32, ""));
    return sel(cg, fcmp(cg, LLVMRealUNO, x, x), x, r);
}

/* One element: x[] are the inputs at index i, out2 an optional second output
 * (dropout's mask). */
static LLVMValueRef ew_apply(Cg *cg, const Ew *e, LLVMValueRef *x, LLVMValueRef i, LLVMValueRef *out2) {
    LLVMValueRef zero = cf32(cg, 0), one = cf32(cg, 1);
    switch (e->op) {
    case IR_OP_RELU: return sel(cg, fcmp(cg, LLVMRealOLT, x[0], zero), zero, x[0]);
    case IR_OP_RELU_BWD: return sel(cg, fcmp(cg, LLVMRealOGT, x[1], zero), x[0], zero);
    case IR_OP_SIGMOID:
        return f_div(cg, one, f_add(cg, one, fast_exp(cg, LLVMBuildFNeg(cg->b, x[0], ""))));
    case IR_OP_SIGMOID_BWD: return f_mul(cg, f_mul(cg, x[0], x[1]), f_sub(cg, one, x[1]));
    case IR_OP_ADD: return f_add(cg, x[0], x[1]);
    case IR_OP_ACCUM: {
        LLVMValueRef s = x[0];
        for (int k = 1; k < e->nin; k++) s = f_add(cg, s, x[k]);
        return s;
    }
    case IR_OP_DROPOUT_BWD: return f_mul(cg, x[0], x[1]);
    case IR_OP_SGD: return f_sub(cg, x[0], f_mul(cg, e->lr, x[1]));
    case IR_OP_DROPOUT: {
        LLVMValueRef bits = LLVMBuildLShr(cg->b, mix64(cg, LLVMBuildAdd(cg->b, e->key, i, "")),
                                          LLVMConstInt(cg->i64, 40, 0), "");
        LLVMValueRef u = f_mul(cg, LLVMBuildUIToFP(cg->b, bits, cg->f32, ""), cf32(cg, 1.0f / 16777216.0f));
        LLVMValueRef m = e->fp > 0.0f ? sel(cg, fcmp(cg, LLVMRealOLT, u, cf32(cg, e->fp)), zero, cf32(cg, e->keep))
                                      : cf32(cg, e->keep);
        *out2 = m;
        return f_mul(cg, x[0], m);
    }
    default: IR_ASSERT(!"not an elementwise op");
    }
}

/* y[i] = f(x0[i], ...) for i in [0, n), split across threads when large.
 * The body is shared by every kernel of the same op (n travels in the
 * frame). */
static void emit_ew(Cg *cg, const Ew *e0, int64_t n, LLVMValueRef *in, int nin, LLVMValueRef out,
                    LLVMValueRef out2) {
    Ew e = *e0;
    LLVMValueRef v[IR_MAX_IN + 6];
    int nv = 0;
    for (int k = 0; k < nin; k++) v[nv++] = in[k];
    v[nv++] = out;
    v[nv++] = out2 ? out2 : LLVMConstNull(cg->pf);
    v[nv++] = e.key ? e.key : ci64(cg, 0);
    v[nv++] = e.lr ? LLVMBuildZExt(cg->b, LLVMBuildBitCast(cg->b, e.lr, cg->i32, ""), cg->i64, "") : ci64(cg, 0);
    int par = n >= (1 << 15);
    int64_t chunk = par ? 1024 : (n > 0 ? n : 1);
    v[nv++] = ci64(cg, n);
    v[nv++] = ci64(cg, chunk);
    unsigned fpb, keepb;
    memcpy(&fpb, &e.fp, 4);
    memcpy(&keepb, &e.keep, 4);
    char key[96];
    snprintf(key, sizeof key, "ew%d_%d_%d_%08x_%08x", (int)e.op, nin, out2 != NULL, e.op == IR_OP_DROPOUT ? fpb : 0u,
             e.op == IR_OP_DROPOUT ? keepb : 0u);
    Par P;
    LLVMValueRef b, en;
    if (par_begin_shared(cg, &P, key, v, nv, ci64(cg, (n + chunk - 1) / chunk), &b, &en)) {
        LLVMValueRef N = v[nin + 4], C = v[nin + 5];
        b = mul(cg, b, C);
        en = imin(cg, mul(cg, en, C), N);
        e.key = v[nin + 2];
        e.lr = LLVMBuildBitCast(cg->b, LLVMBuildTrunc(cg->b, v[nin + 3], cg->i32, ""), cg->f32, "");
        Loop l;
        LLVMValueRef i = for_begin(cg, &l, b, en, 1);
        LLVMValueRef x[IR_MAX_IN];
        for (int k = 0; k < nin; k++) x[k] = ld(cg, v[k], i);
        LLVMValueRef m = NULL;
        LLVMValueRef y = ew_apply(cg, &e, x, i, &m);
        st(cg, y, v[nin], i);
        if (out2 && m) st(cg, m, v[nin + 1], i);
        for_end(cg, &l);
    }
    par_end(cg, &P);
}

/* The per-step key of dropout node n's random stream (in a kernel function:
 * it reads the step's seed and counter from a). */
static LLVMValueRef dropout_key(Cg *cg, const IrNode *n) {
    LLVMValueRef seed = LLVMBuildLoad2(cg->b, cg->i64, LLVMBuildStructGEP2(cg->b, cg->args_t, cg->args, 1, ""), "");
    LLVMValueRef step = LLVMBuildLoad2(cg->b, cg->i64, LLVMBuildStructGEP2(cg->b, cg->args_t, cg->args, 2, ""), "");
    LLVMValueRef sm = LLVMBuildAdd(cg->b, LLVMConstInt(cg->i64, (uint64_t)n->attr.dropout.index * 0x100000001b3ull, 0),
                                   mix64(cg, step), "");
    return mix64(cg, LLVMBuildXor(cg->b, seed, mix64(cg, sm), ""));
}

static int dropout_live(const IrNode *n) { return n->attr.dropout.mode != IR_EVAL && n->nout >= 2; }

static Ew dropout_ew(const IrNode *n) {
    float p = n->attr.dropout.p;
    Ew e = {.op = n->op, .nin = 1, .fp = p, .keep = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f};
    return e;
}

/* ---- elementwise chains (see cg.h) ---------------------------------------------- */

static int resolve_buf(const Program *p, int v) {
    while (p->buf[v].kind == BUF_ALIAS) v = p->buf[v].alias;
    return v;
}

int cg_inner(const Cg *cg, int v) { return cg->p->buf[resolve_buf(cg->p, v)].kind == BUF_INNER; }

static int chain_op(IrOp op) {
    switch (op) {
    case IR_OP_RELU: case IR_OP_SIGMOID: case IR_OP_ADD: case IR_OP_ACCUM: case IR_OP_RELU_BWD:
    case IR_OP_SIGMOID_BWD: case IR_OP_DROPOUT_BWD: case IR_OP_DROPOUT:
        return 1;
    default:
        return 0;
    }
}

static int chain_ptr(Chain *c, LLVMValueRef p) {
    for (int k = 0; k < c->np; k++)
        if (c->ptr[k] == p) return k;
    if (c->np == CHAIN_MAXP) return -1;
    c->ptr[c->np] = p;
    return c->np++;
}

int cg_chain_make(Cg *cg, const Kernel *k, int from, int to, int head, Chain *c) {
    memset(c, 0, sizeof *c);
    for (int j = from; j < to; j++) {
        const IrNode *n = ir_node(&cg->p->g, k->nodes[j]);
        if (!chain_op(n->op) || c->nops == CHAIN_MAX) return -1;
        if (n->op == IR_OP_DROPOUT && dropout_live(n)) {
            if (c->dropout) return -1;    /* one random stream per chain */
            c->dropout = n;
        }
        int o = c->nops++;
        c->node[o] = n;
        for (int a = 0; a < n->nin; a++) {
            int v = n->in[a], s = -100;
            if (v == head) s = -1;
            for (int q = 0; q < o && s == -100; q++)
                if (c->node[q]->out[0] == v) s = -2 - q;
            if (s == -100 && (s = chain_ptr(c, cg_vptr(cg, v))) < 0) return -1;
            c->in[o][a] = s;
        }
        c->out[o] = c->out2[o] = -1;
        if (!cg_inner(cg, n->out[0]) && (c->out[o] = chain_ptr(c, cg_vptr(cg, n->out[0]))) < 0)
            return -1;
        if (n->op == IR_OP_DROPOUT && dropout_live(n) && n->out[1] >= 0 &&
            cg->p->buf[resolve_buf(cg->p, n->out[1])].kind != BUF_NONE &&
            (c->out2[o] = chain_ptr(c, cg_vptr(cg, n->out[1]))) < 0)
            return -1;
    }
    c->head_out = head >= 0 && !cg_inner(cg, head);
    return c->nops ? 0 : -1;
}

int cg_chain_vec_ok(const Chain *c) {
    for (int j = 0; j < c->nops; j++)
        switch (c->node[j]->op) {
        case IR_OP_RELU: case IR_OP_ADD: case IR_OP_ACCUM: case IR_OP_RELU_BWD: case IR_OP_SIGMOID_BWD:
        case IR_OP_DROPOUT_BWD:
            break;
        default:
            return 0;
        }
    return 1;
}

void cg_chain_key(const Chain *c, char *buf, size_t n) {
    size_t len = 0;
    buf[0] = 0;
    for (int j = 0; j < c->nops && len + 40 < n; j++) {
        const IrNode *nd = c->node[j];
        len += (size_t)snprintf(buf + len, n - len, "_%d", (int)nd->op);
        for (int a = 0; a < nd->nin; a++) len += (size_t)snprintf(buf + len, n - len, ".%d", c->in[j][a]);
        len += (size_t)snprintf(buf + len, n - len, "o%d", c->out[j]);
        if (nd->op == IR_OP_DROPOUT) {
            Ew e = dropout_ew(nd);
            unsigned fb, kb;
            memcpy(&fb, &e.fp, 4);
            memcpy(&kb, &e.keep, 4);
            len += (size_t)snprintf(buf + len, n - len, "d%d%08x%08x%d", dropout_live(nd), fb, kb, c->out2[j]);
        }
    }
}

/* op on vectors (the ops cg_chain_vec_ok allows), as ew_apply on scalars */
static LLVMValueRef ew_vec(Cg *cg, IrOp op, LLVMValueRef *x, int nin) {
    LLVMValueRef zero = LLVMConstNull(cg->vf);
    switch (op) {
    case IR_OP_RELU: return sel(cg, fcmp(cg, LLVMRealOLT, x[0], zero), zero, x[0]);
    case IR_OP_RELU_BWD: return sel(cg, fcmp(cg, LLVMRealOGT, x[1], zero), x[0], zero);
    case IR_OP_SIGMOID_BWD: return f_mul(cg, f_mul(cg, x[0], x[1]), f_sub(cg, splat(cg, cf32(cg, 1)), x[1]));
    case IR_OP_ADD: return f_add(cg, x[0], x[1]);
    case IR_OP_ACCUM: {
        LLVMValueRef s = x[0];
        for (int k = 1; k < nin; k++) s = f_add(cg, s, x[k]);
        return s;
    }
    case IR_OP_DROPOUT_BWD: return f_mul(cg, x[0], x[1]);
    default: IR_ASSERT(!"not a vector chain op");
    }
}

LLVMValueRef cg_chain_eval(Cg *cg, const Chain *c, LLVMValueRef *p, LLVMValueRef key, LLVMValueRef head,
                           LLVMValueRef i, int vec, int store) {
    LLVMValueRef r[CHAIN_MAX];
    for (int j = 0; j < c->nops; j++) {
        const IrNode *n = c->node[j];
        LLVMValueRef x[IR_MAX_IN];
        for (int a = 0; a < n->nin; a++) {
            int s = c->in[j][a];
            x[a] = s >= 0 ? (vec ? vld(cg, p[s], i) : ld(cg, p[s], i)) : s == -1 ? head : r[-2 - s];
        }
        LLVMValueRef m = NULL;
        if (vec) r[j] = ew_vec(cg, n->op, x, n->nin);
        else if (n->op == IR_OP_DROPOUT && !dropout_live(n)) r[j] = x[0];
        else {
            Ew e = n->op == IR_OP_DROPOUT ? dropout_ew(n) : (Ew){.op = n->op, .nin = n->nin};
            e.key = key;
            r[j] = ew_apply(cg, &e, x, i, &m);
        }
        if (store && c->out[j] >= 0) (vec ? vst : st)(cg, r[j], p[c->out[j]], i);
        if (store && m && c->out2[j] >= 0) st(cg, m, p[c->out2[j]], i);
    }
    return r[c->nops - 1];
}

LLVMValueRef cg_chain_key_value(Cg *cg, const Chain *c) {
    return c->dropout ? dropout_key(cg, c->dropout) : ci64(cg, 0);
}

/* A chain alone (an elementwise kernel): every element through it, split
 * across threads when large.  The body is shared by chains of the same
 * structure. */
void cg_emit_chain(Cg *cg, const Chain *c, int64_t n) {
    LLVMValueRef v[CHAIN_MAXP + 3];
    int np = c->np;
    for (int k = 0; k < np; k++) v[k] = c->ptr[k];
    int par = n >= (1 << 15);
    int64_t chunk = par ? 1024 : (n > 0 ? n : 1);
    v[np] = cg_chain_key_value(cg, c);
    v[np + 1] = ci64(cg, n);
    v[np + 2] = ci64(cg, chunk);
    char key[160] = "chain", sig[150];
    cg_chain_key(c, sig, sizeof sig);
    snprintf(key, sizeof key, "chain%s", sig);
    Par P;
    LLVMValueRef b, e;
    if (par_begin_shared(cg, &P, key, v, np + 3, ci64(cg, (n + chunk - 1) / chunk), &b, &e)) {
        LLVMValueRef N = v[np + 1], C = v[np + 2];
        b = mul(cg, b, C);
        e = imin(cg, mul(cg, e, C), N);
        Loop l;
        LLVMValueRef i = for_begin(cg, &l, b, e, 1);
        cg_chain_eval(cg, c, v, v[np], NULL, i, 0, 1);
        for_end(cg, &l);
    }
    par_end(cg, &P);
}

static void emit_copy(Cg *cg, LLVMValueRef dst, LLVMValueRef src, int64_t n) {
    cg_memcpy(cg, dst, src, ci64(cg, n));
}

void cg_rowcopy(Cg *cg, LLVMValueRef dst, int64_t dstride, LLVMValueRef src, int64_t sstride, int64_t len,
                int64_t rows) {
    LLVMValueRef v[5] = {dst, src, ci64(cg, dstride), ci64(cg, sstride), ci64(cg, len)};
    Par P;
    LLVMValueRef b, e;
    if (par_begin_shared(cg, &P, "rowcopy", v, 5, ci64(cg, rows), &b, &e)) {
        Loop l;
        LLVMValueRef i = for_begin(cg, &l, b, e, 1);
        cg_memcpy(cg, gep(cg, v[0], mul(cg, i, v[2])), gep(cg, v[1], mul(cg, i, v[3])), v[4]);
        for_end(cg, &l);
    }
    par_end(cg, &P);
}

/* An elementwise op over strided views (a concat's slots, slices of its
 * gradient), image by image: every operand's image at its own stride.  out
 * may be in[0] itself (an accumulation in place).  The arithmetic is
 * emit_ew's: the same bits. */
static void emit_ew_img(Cg *cg, const IrNode *n) {
    int64_t nb = cg->p->batch, per = cg_numel(cg, n->out[0]) / nb, is[IR_MAX_IN + 1];
    int m = n->nin;
    LLVMValueRef v[2 * (IR_MAX_IN + 1) + 1];
    for (int k = 0; k <= m; k++) {
        v[k] = cg_vptr_img(cg, k < m ? n->in[k] : n->out[0], &is[k]);
        v[m + 1 + k] = ci64(cg, is[k]);
    }
    v[2 * m + 2] = ci64(cg, per);
    char key[32];
    snprintf(key, sizeof key, "ew_img%d_%d", (int)n->op, m);
    Par P;
    LLVMValueRef b, e;
    if (par_begin_shared(cg, &P, key, v, 2 * m + 3, ci64(cg, nb), &b, &e)) {
        Loop li, lj;
        LLVMValueRef img = for_begin(cg, &li, b, e, 1), row[IR_MAX_IN + 1] = {0}, x[IR_MAX_IN];
        for (int k = 0; k <= m; k++) row[k] = gep(cg, v[k], mul(cg, img, v[m + 1 + k]));
        LLVMValueRef N = v[2 * m + 2];
        LLVMValueRef nv = LLVMBuildAnd(cg->b, N, ci64(cg, -cg->vw), "");
        LLVMValueRef j = for_begin(cg, &lj, ci64(cg, 0), nv, cg->vw);
        for (int k = 0; k < m; k++) x[k] = vld(cg, row[k], j);
        vst(cg, ew_vec(cg, n->op, x, m), row[m], j);
        for_end(cg, &lj);
        j = for_begin(cg, &lj, nv, N, 1);
        for (int k = 0; k < m; k++) x[k] = ld(cg, row[k], j);
        Ew ew = {.op = n->op, .nin = m};
        st(cg, ew_apply(cg, &ew, x, j, NULL), row[m], j);
        for_end(cg, &lj);
        for_end(cg, &li);
    }
    par_end(cg, &P);
}

/* ---- loss -------------------------------------------------------------------- */

/* One task (the batch is small): a shared body, so the kernel function itself
 * stays glue. */
static void emit_softmax_xent(Cg *cg, const IrNode *n) {
    const IrType *t = ir_type(&cg->p->g, n->in[0]);
    int64_t nbc = cg->p->batch, kc = t->d[t->rank - 1];
    int bwd = n->op == IR_OP_SOFTMAX_XENT_BWD;
    LLVMValueRef v[5] = {cg_vptr(cg, n->in[0]), cg_vptr(cg, n->in[1]), cg_vptr(cg, n->out[0]), ci64(cg, nbc),
                         ci64(cg, kc)};
    Par P;
    LLVMValueRef b, e;
    if (!par_begin_shared(cg, &P, bwd ? "xent_bwd" : "xent", v, 5, ci64(cg, 1), &b, &e)) {
        par_end(cg, &P);
        return;
    }
    (void)b;
    (void)e;
    LLVMValueRef l = v[0], out = v[2], nb = v[3], k = v[4];
    LLVMValueRef lab = LLVMBuildBitCast(cg->b, v[1], cg->pi32, "");
    LLVMValueRef nbf = LLVMBuildSIToFP(cg->b, nb, cg->f32, "");
    LLVMValueRef loss = var(cg, cg->f32, cf32(cg, 0));
    Loop li, lj;
    LLVMValueRef i = for_begin(cg, &li, ci64(cg, 0), nb, 1);
    LLVMValueRef row = gep(cg, l, mul(cg, i, k));
    LLVMValueRef lp = LLVMBuildInBoundsGEP2(cg->b, cg->i32, lab, &i, 1, "");
    LLVMValueRef y = LLVMBuildSExt(cg->b, LLVMBuildLoad2(cg->b, cg->i32, lp, ""), cg->i64, "");
    /* a label outside [0, k) reads class 0 rather than memory it does not own */
    y = sel(cg, icmp(cg, LLVMIntULT, y, k), y, ci64(cg, 0));
    LLVMValueRef mx = var(cg, cg->f32, ld(cg, row, ci64(cg, 0)));
    LLVMValueRef j = for_begin(cg, &lj, ci64(cg, 1), k, 1);
    LLVMValueRef x = ld(cg, row, j);
    set(cg, mx, sel(cg, fcmp(cg, LLVMRealOGT, x, get(cg, mx)), x, get(cg, mx)));
    for_end(cg, &lj);
    LLVMValueRef s = var(cg, cg->f32, cf32(cg, 0));
    j = for_begin(cg, &lj, ci64(cg, 0), k, 1);
    set(cg, s, f_add(cg, get(cg, s), call1(cg, "llvm.exp", cg->f32, f_sub(cg, ld(cg, row, j), get(cg, mx)))));
    for_end(cg, &lj);
    LLVMValueRef lse = f_add(cg, get(cg, mx), call1(cg, "llvm.log", cg->f32, get(cg, s)));
    if (!bwd) {
        set(cg, loss, f_add(cg, get(cg, loss), f_sub(cg, lse, ld(cg, row, y))));
    } else {
        LLVMValueRef g = gep(cg, out, mul(cg, i, k));
        j = for_begin(cg, &lj, ci64(cg, 0), k, 1);
        LLVMValueRef pr = call1(cg, "llvm.exp", cg->f32, f_sub(cg, ld(cg, row, j), lse));
        LLVMValueRef hot = sel(cg, icmp(cg, LLVMIntEQ, j, y), cf32(cg, 1), cf32(cg, 0));
        st(cg, f_div(cg, f_sub(cg, pr, hot), nbf), g, j);
        for_end(cg, &lj);
    }
    for_end(cg, &li);
    if (!bwd) st(cg, f_div(cg, get(cg, loss), nbf), out, ci64(cg, 0));
    par_end(cg, &P);
}

/* ---- dispatch ------------------------------------------------------------------ */

static int is_alias(const Cg *cg, int v) { return cg->p->buf[v].kind == BUF_ALIAS; }

int cg_emit_node(Cg *cg, int id, Diag *d) {
    const IrNode *n = ir_node(&cg->p->g, id);
    int64_t nb = cg->p->batch;
    switch (n->op) {
    case IR_OP_INPUT: case IR_OP_LABELS: case IR_OP_PARAM:
        return 0;
    case IR_OP_CONV2D: case IR_OP_CONV2D_BWD_DATA: case IR_OP_CONV2D_BWD_WEIGHT:
        cg_emit_conv(cg, n);
        return 0;
    case IR_OP_LINEAR: case IR_OP_LINEAR_BWD_DATA: case IR_OP_LINEAR_BWD_WEIGHT:
        cg_emit_linear(cg, n);
        return 0;
    case IR_OP_FLATTEN: case IR_OP_RESHAPE:
        if (!is_alias(cg, n->out[0]))
            emit_copy(cg, cg_vptr(cg, n->out[0]), cg_vptr(cg, n->in[0]), cg_numel(cg, n->out[0]));
        return 0;
    case IR_OP_RELU: case IR_OP_SIGMOID: case IR_OP_ADD: case IR_OP_ACCUM: case IR_OP_RELU_BWD:
    case IR_OP_SIGMOID_BWD: case IR_OP_DROPOUT_BWD: {
        int strided = cg_strided(cg, n->out[0]);
        for (int k = 0; k < n->nin; k++) strided |= cg_strided(cg, n->in[k]);
        if (strided) {
            IR_ASSERT(n->op != IR_OP_SIGMOID);
            emit_ew_img(cg, n);
            return 0;
        }
        Ew e = {.op = n->op, .nin = n->nin};
        LLVMValueRef in[IR_MAX_IN];
        for (int k = 0; k < n->nin; k++) in[k] = cg_vptr(cg, n->in[k]);
        emit_ew(cg, &e, cg_numel(cg, n->out[0]), in, n->nin, cg_vptr(cg, n->out[0]), NULL);
        return 0;
    }
    case IR_OP_SGD: {
        LLVMValueRef lrp = LLVMBuildStructGEP2(cg->b, cg->args_t, cg->args, 0, "");
        Ew e = {.op = n->op, .nin = 2, .lr = ftrunc(cg, LLVMBuildLoad2(cg->b, cg->f64, lrp, ""))};
        LLVMValueRef in[2] = {cg_vptr(cg, n->in[0]), cg_vptr(cg, n->in[1])};
        emit_ew(cg, &e, cg_numel(cg, n->in[0]), in, 2, in[0], NULL);
        return 0;
    }
    case IR_OP_DROPOUT: {
        int64_t cnt = cg_numel(cg, n->out[0]);
        LLVMValueRef x = cg_vptr(cg, n->in[0]), y = cg_vptr(cg, n->out[0]);
        LLVMValueRef mask = cg_optr(cg, n, 1);
        if (!dropout_live(n)) {
            emit_copy(cg, y, x, cnt);
            return 0;
        }
        Ew e = dropout_ew(n);
        e.key = dropout_key(cg, n);
        emit_ew(cg, &e, cnt, &x, 1, y, mask);
        return 0;
    }
    case IR_OP_BATCHNORM:
        cg_emit_batchnorm(cg, n, NULL);
        return 0;
    case IR_OP_BATCHNORM_BWD:
        cg_emit_batchnorm_bwd(cg, n, NULL, NULL, NULL);
        return 0;
    case IR_OP_MAXPOOL: case IR_OP_AVGPOOL: case IR_OP_MAXPOOL_BWD: case IR_OP_AVGPOOL_BWD:
        cg_emit_pool(cg, n);
        return 0;
    case IR_OP_GAVGPOOL: case IR_OP_GMAXPOOL: case IR_OP_GAVGPOOL_BWD: case IR_OP_GMAXPOOL_BWD:
        cg_emit_global_pool(cg, n);
        return 0;
    case IR_OP_SOFTMAX_XENT: case IR_OP_SOFTMAX_XENT_BWD:
        emit_softmax_xent(cg, n);
        return 0;
    case IR_OP_CONCAT: {   /* copies the inputs not placed in their slots */
        const IrType *ty = ir_type(&cg->p->g, n->out[0]);
        int64_t ctot = ty->d[1], hw = cg_numel(cg, n->out[0]) / (nb * ctot), c0 = 0, ys, xs;
        LLVMValueRef y = cg_vptr_img(cg, n->out[0], &ys);
        for (int k = 0; k < n->nin; k++) {
            int v = n->in[k];
            int64_t c = ir_type(&cg->p->g, v)->d[1];
            const BufPlan *b = &cg->p->buf[v];
            if (!(b->kind == BUF_VIEW && b->alias == n->out[0])) {
                LLVMValueRef x = cg_vptr_img(cg, v, &xs);
                cg_rowcopy(cg, gep(cg, y, ci64(cg, c0 * hw)), ys, x, xs, c * hw, nb);
            }
            c0 += c;
        }
        return 0;
    }
    case IR_OP_SLICE: {
        const IrType *tx = ir_type(&cg->p->g, n->in[0]);
        int64_t ctot = tx->d[1], c0 = n->attr.slice.c0, c = n->attr.slice.c, xs, ys;
        int64_t hw = cg_numel(cg, n->in[0]) / (nb * ctot);
        LLVMValueRef x = cg_vptr_img(cg, n->in[0], &xs), y = cg_vptr_img(cg, n->out[0], &ys);
        cg_rowcopy(cg, y, ys, gep(cg, x, ci64(cg, c0 * hw)), xs, c * hw, nb);
        return 0;
    }
    default:
        return diag_error_noloc(d, "cpu backend: no kernel for op %d (node %s)", (int)n->op,
                                n->name ? n->name : "?");
    }
}
