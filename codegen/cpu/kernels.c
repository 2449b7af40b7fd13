/* kernels.c - every op but conv and linear: elementwise ops, pooling, batch
 * norm, dropout, softmax cross-entropy, SGD, copies.  Plain loops specialised
 * on constant shapes; LLVM vectorises the elementwise ones, reductions use
 * explicit vector accumulators.  Semantics are codegen/ref_kernels.inc's. */
#include "cg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ref_kernels.h"

/* NULL when the output is absent or unplanned. */
static LLVMValueRef optr(Cg *cg, const IrNode *n, int k) {
    if (k >= n->nout || n->out[k] < 0) return NULL;
    int v = n->out[k];
    while (cg->p->buf[v].kind == BUF_ALIAS) v = cg->p->buf[v].alias;
    if (cg->p->buf[v].kind == BUF_NONE) return NULL;
    return cg_vptr(cg, n->out[k]);
}

static LLVMValueRef f_add(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFAdd(cg->b, a, b, ""); }
static LLVMValueRef f_sub(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFSub(cg->b, a, b, ""); }
static LLVMValueRef f_mul(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFMul(cg->b, a, b, ""); }
static LLVMValueRef f_div(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFDiv(cg->b, a, b, ""); }
static LLVMValueRef fcmp(Cg *cg, LLVMRealPredicate p, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildFCmp(cg->b, p, a, b, "");
}
static LLVMValueRef sel(Cg *cg, LLVMValueRef c, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildSelect(cg->b, c, a, b, "");
}
static LLVMValueRef fext(Cg *cg, LLVMValueRef x) { return LLVMBuildFPExt(cg->b, x, cg->f64, ""); }
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

static void emit_copy(Cg *cg, LLVMValueRef dst, LLVMValueRef src, int64_t n) {
    cg_memcpy(cg, dst, src, ci64(cg, n));
}

/* rows copies of len floats: dst + i*dstride <- src + i*sstride, split by
 * rows across threads (concat, slice). */
static void emit_rowcopy(Cg *cg, LLVMValueRef dst, int64_t dstride, LLVMValueRef src, int64_t sstride, int64_t len,
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

/* ---- reductions ------------------------------------------------------------- */

typedef enum { R_SUM, R_SQDEV, R_DOTDEV } RKind;   /* x; (x-m)^2; y*(x-m) */

/* sum over j < n of f(p[j], q[j]) in float with vector accumulators. */
static LLVMValueRef reduce(Cg *cg, RKind k, LLVMValueRef p, LLVMValueRef q, LLVMValueRef m, LLVMValueRef n) {
    LLVMValueRef acc[2] = {var(cg, cg->vf, LLVMConstNull(cg->vf)), var(cg, cg->vf, LLVMConstNull(cg->vf))};
    int64_t step = 2 * cg->vw;
    LLVMValueRef nv = LLVMBuildAnd(cg->b, n, ci64(cg, -step), "");
    LLVMValueRef mv = m ? splat(cg, m) : NULL;
    Loop l;
    LLVMValueRef i = for_begin(cg, &l, ci64(cg, 0), nv, step);
    for (int u = 0; u < 2; u++) {
        LLVMValueRef idx = addc(cg, i, u * cg->vw), x = vld(cg, p, idx), t;
        if (k == R_SUM) t = x;
        else if (k == R_SQDEV) { t = f_sub(cg, x, mv); t = f_mul(cg, t, t); }
        else t = f_mul(cg, vld(cg, q, idx), f_sub(cg, x, mv));
        set(cg, acc[u], f_add(cg, get(cg, acc[u]), t));
    }
    for_end(cg, &l);
    LLVMValueRef s = var(cg, cg->f32, hsum(cg, f_add(cg, get(cg, acc[0]), get(cg, acc[1]))));
    i = for_begin(cg, &l, nv, n, 1);
    LLVMValueRef x = ld(cg, p, i), t;
    if (k == R_SUM) t = x;
    else if (k == R_SQDEV) { t = f_sub(cg, x, m); t = f_mul(cg, t, t); }
    else t = f_mul(cg, ld(cg, q, i), f_sub(cg, x, m));
    set(cg, s, f_add(cg, get(cg, s), t));
    for_end(cg, &l);
    return get(cg, s);
}

/* sum over images of reduce() of each image's channel row, in double. */
static LLVMValueRef reduce_channel(Cg *cg, RKind k, LLVMValueRef p, LLVMValueRef q, LLVMValueRef m,
                                   LLVMValueRef ch, LLVMValueRef nb, LLVMValueRef c, LLVMValueRef hw) {
    LLVMValueRef acc = var(cg, cg->f64, cf64(cg, 0));
    Loop l;
    LLVMValueRef i = for_begin(cg, &l, ci64(cg, 0), nb, 1);
    LLVMValueRef off = mul(cg, add(cg, mul(cg, i, c), ch), hw);
    LLVMValueRef r = reduce(cg, k, gep(cg, p, off), q ? gep(cg, q, off) : NULL, m, hw);
    set(cg, acc, LLVMBuildFAdd(cg->b, get(cg, acc), fext(cg, r), ""));
    for_end(cg, &l);
    return get(cg, acc);
}

/* ---- batch norm --------------------------------------------------------------- */

static void emit_batchnorm(Cg *cg, const IrNode *n) {
    const IrType *t = ir_type(&cg->p->g, n->in[0]);
    int64_t nb = cg->p->batch, c = t->d[1], hw = cg_numel(cg, n->in[0]) / (nb * c);
    float eps = n->attr.bn.eps, mom = n->attr.bn.momentum;
    int train = n->attr.bn.mode == IR_TRAIN;
    LLVMValueRef v[8] = {cg_vptr(cg, n->in[0]), cg_vptr(cg, n->in[1]), cg_vptr(cg, n->in[2]),
                         cg_vptr(cg, n->in[3]), cg_vptr(cg, n->in[4]), cg_vptr(cg, n->out[0]),
                         train ? optr(cg, n, 1) : NULL, train ? optr(cg, n, 2) : NULL};
    for (int k = 6; k < 8; k++)
        if (!v[k]) v[k] = LLVMConstNull(cg->pf);
    LLVMValueRef vv[11] = {v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], ci64(cg, nb), ci64(cg, c), ci64(cg, hw)};
    unsigned eb, mb;
    memcpy(&eb, &eps, 4);
    memcpy(&mb, &mom, 4);
    char key[64];
    snprintf(key, sizeof key, "bn%d_%08x_%08x", train, eb, mb);
    Par P;
    LLVMValueRef b, e;
    if (!par_begin_shared(cg, &P, key, vv, 11, ci64(cg, c), &b, &e)) {
        par_end(cg, &P);
        return;
    }
    memcpy(v, vv, sizeof v);
    LLVMValueRef NB = vv[8], C = vv[9], HW = vv[10];
    LLVMValueRef M = mul(cg, NB, HW);
    LLVMValueRef Mf = LLVMBuildSIToFP(cg->b, M, cg->f64, "");
    LLVMValueRef unbf = LLVMBuildSelect(cg->b, icmp(cg, LLVMIntSGT, M, ci64(cg, 1)),
                                        LLVMBuildFDiv(cg->b, Mf, LLVMBuildSIToFP(cg->b, addc(cg, M, -1), cg->f64, ""), ""),
                                        cf64(cg, 1.0), "");
    Loop lc, li, lj;
    LLVMValueRef ch = for_begin(cg, &lc, b, e, 1);
    LLVMValueRef g = ld(cg, v[1], ch), bt = ld(cg, v[2], ch);
    LLVMValueRef tmean, tinv;
    if (train) {
        LLVMValueRef mean = LLVMBuildFDiv(cg->b, reduce_channel(cg, R_SUM, v[0], NULL, NULL, ch, NB, C, HW),
                                          Mf, "");
        tmean = ftrunc(cg, mean);
        LLVMValueRef var_ = LLVMBuildFDiv(cg->b, reduce_channel(cg, R_SQDEV, v[0], NULL, tmean, ch, NB, C, HW),
                                          Mf, "");
        LLVMValueRef inv = LLVMBuildFDiv(cg->b, cf64(cg, 1.0),
                                         call1(cg, "llvm.sqrt", cg->f64, LLVMBuildFAdd(cg->b, var_, cf64(cg, (double)eps), "")), "");
        tinv = ftrunc(cg, inv);
        If f;
        if_begin(cg, &f, LLVMBuildIsNotNull(cg->b, v[6], ""));
        st(cg, tmean, v[6], ch);
        if_end(cg, &f);
        if_begin(cg, &f, LLVMBuildIsNotNull(cg->b, v[7], ""));
        st(cg, tinv, v[7], ch);
        if_end(cg, &f);
        double md = (double)mom;
        LLVMValueRef unb = LLVMBuildFMul(cg->b, var_, unbf, "");
        LLVMValueRef rm = fext(cg, ld(cg, v[3], ch)), rv = fext(cg, ld(cg, v[4], ch));
        st(cg, ftrunc(cg, LLVMBuildFAdd(cg->b, LLVMBuildFMul(cg->b, cf64(cg, 1.0 - md), rm, ""),
                                       LLVMBuildFMul(cg->b, cf64(cg, md), mean, ""), "")), v[3], ch);
        st(cg, ftrunc(cg, LLVMBuildFAdd(cg->b, LLVMBuildFMul(cg->b, cf64(cg, 1.0 - md), rv, ""),
                                       LLVMBuildFMul(cg->b, cf64(cg, md), unb, ""), "")), v[4], ch);
    } else {
        tmean = ld(cg, v[3], ch);
        LLVMValueRef inv = LLVMBuildFDiv(cg->b, cf64(cg, 1.0),
                                         call1(cg, "llvm.sqrt", cg->f64,
                                               LLVMBuildFAdd(cg->b, fext(cg, ld(cg, v[4], ch)), cf64(cg, (double)eps), "")), "");
        tinv = ftrunc(cg, inv);
    }
    LLVMValueRef i = for_begin(cg, &li, ci64(cg, 0), NB, 1);
    LLVMValueRef off = mul(cg, add(cg, mul(cg, i, C), ch), HW);
    LLVMValueRef xp = gep(cg, v[0], off), yp = gep(cg, v[5], off);
    LLVMValueRef j = for_begin(cg, &lj, ci64(cg, 0), HW, 1);
    LLVMValueRef y = f_add(cg, f_mul(cg, f_mul(cg, g, f_sub(cg, ld(cg, xp, j), tmean)), tinv), bt);
    st(cg, y, yp, j);
    for_end(cg, &lj);
    for_end(cg, &li);
    for_end(cg, &lc);
    par_end(cg, &P);
}

static void emit_batchnorm_bwd(Cg *cg, const IrNode *n) {
    /* (dy, x, gamma, mean, invstd) -> dx, dgamma, dbeta */
    const IrType *t = ir_type(&cg->p->g, n->in[1]);
    int64_t nb = cg->p->batch, c = t->d[1], hw = cg_numel(cg, n->in[1]) / (nb * c);
    int64_t m = nb * hw;
    LLVMValueRef v[8] = {cg_vptr(cg, n->in[0]), cg_vptr(cg, n->in[1]), cg_vptr(cg, n->in[2]),
                         cg_vptr(cg, n->in[3]), cg_vptr(cg, n->in[4]), optr(cg, n, 0), optr(cg, n, 1),
                         optr(cg, n, 2)};
    for (int k = 5; k < 8; k++)
        if (!v[k]) v[k] = LLVMConstNull(cg->pf);
    LLVMValueRef vv[11] = {v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], ci64(cg, nb), ci64(cg, c), ci64(cg, hw)};
    Par P;
    LLVMValueRef b, e;
    if (!par_begin_shared(cg, &P, "bnbwd", vv, 11, ci64(cg, c), &b, &e)) {
        par_end(cg, &P);
        return;
    }
    (void)m;
    memcpy(v, vv, sizeof v);
    LLVMValueRef NB = vv[8], C = vv[9], HW = vv[10];
    LLVMValueRef Mf = LLVMBuildSIToFP(cg->b, mul(cg, NB, HW), cg->f64, "");
    Loop lc, li, lj;
    LLVMValueRef ch = for_begin(cg, &lc, b, e, 1);
    LLVMValueRef meanf = ld(cg, v[3], ch), invf = ld(cg, v[4], ch);
    LLVMValueRef mean = fext(cg, meanf), inv = fext(cg, invf);
    LLVMValueRef sdy = reduce_channel(cg, R_SUM, v[0], NULL, NULL, ch, NB, C, HW);
    LLVMValueRef sdyx = LLVMBuildFMul(cg->b, reduce_channel(cg, R_DOTDEV, v[1], v[0], meanf, ch, NB, C, HW), inv, "");
    LLVMValueRef scale = LLVMBuildFDiv(cg->b, LLVMBuildFMul(cg->b, fext(cg, ld(cg, v[2], ch)), inv, ""), Mf, "");
    If f;
    if_begin(cg, &f, LLVMBuildIsNotNull(cg->b, v[5], ""));
    LLVMValueRef i = for_begin(cg, &li, ci64(cg, 0), NB, 1);
    LLVMValueRef off = mul(cg, add(cg, mul(cg, i, C), ch), HW);
    LLVMValueRef gp = gep(cg, v[0], off), xp = gep(cg, v[1], off), dp = gep(cg, v[5], off);
    LLVMValueRef j = for_begin(cg, &lj, ci64(cg, 0), HW, 1);
    LLVMValueRef xhat = LLVMBuildFMul(cg->b, LLVMBuildFSub(cg->b, fext(cg, ld(cg, xp, j)), mean, ""), inv, "");
    LLVMValueRef tt = LLVMBuildFSub(cg->b, LLVMBuildFMul(cg->b, Mf, fext(cg, ld(cg, gp, j)), ""), sdy, "");
    tt = LLVMBuildFSub(cg->b, tt, LLVMBuildFMul(cg->b, xhat, sdyx, ""), "");
    st(cg, ftrunc(cg, LLVMBuildFMul(cg->b, scale, tt, "")), dp, j);
    for_end(cg, &lj);
    for_end(cg, &li);
    if_end(cg, &f);
    if_begin(cg, &f, LLVMBuildIsNotNull(cg->b, v[6], ""));
    st(cg, ftrunc(cg, sdyx), v[6], ch);
    if_end(cg, &f);
    if_begin(cg, &f, LLVMBuildIsNotNull(cg->b, v[7], ""));
    st(cg, ftrunc(cg, sdy), v[7], ch);
    if_end(cg, &f);
    for_end(cg, &lc);
    par_end(cg, &P);
}

/* The constant <vw x i32> {start, start + step, ...}. */
static LLVMValueRef ivec(Cg *cg, int64_t start, int64_t step) {
    LLVMValueRef e[64];
    for (int l = 0; l < cg->vw; l++) e[l] = LLVMConstInt(cg->i32, (unsigned long long)(start + l * step), 1);
    return LLVMConstVector(e, (unsigned)cg->vw);
}

static LLVMValueRef vsplat_i32(Cg *cg, LLVMValueRef x) {
    LLVMTypeRef vi = LLVMVectorType(cg->i32, (unsigned)cg->vw);
    LLVMValueRef u = LLVMBuildInsertElement(cg->b, LLVMGetUndef(vi), x, LLVMConstInt(cg->i32, 0, 0), "");
    return LLVMBuildShuffleVector(cg->b, u, LLVMGetUndef(vi), LLVMConstNull(vi), "");
}

/* ---- pooling ------------------------------------------------------------------- */

typedef struct { int64_t c, h, w, kh, kw, sh, sw, ph, pw, p, q; } PoolDims;

static PoolDims pool_dims(Cg *cg, const IrNode *n, int x, int y) {
    const IrType *tx = ir_type(&cg->p->g, x), *ty = ir_type(&cg->p->g, y);
    PoolDims d = {tx->d[1], tx->d[2], tx->d[3], n->attr.pool.kh, n->attr.pool.kw, n->attr.pool.sh,
                  n->attr.pool.sw, n->attr.pool.ph, n->attr.pool.pw, ty->d[2], ty->d[3]};
    return d;
}

/* First argmax of window (p, q) in plane xp (index in the plane, -1 if none)
 * and its value; NaN wins. */
static void window_argmax(Cg *cg, const PoolDims *d, LLVMValueRef xp, LLVMValueRef p, LLVMValueRef q,
                          LLVMValueRef best, LLVMValueRef mx) {
    set(cg, best, ci64(cg, -1));
    set(cg, mx, cf32(cg, -INFINITY));
    Loop li, lj;
    LLVMValueRef i = for_begin(cg, &li, ci64(cg, 0), ci64(cg, d->kh), 1);
    LLVMValueRef ih = add(cg, addc(cg, mulc(cg, p, d->sh), -d->ph), i);
    If f;
    if_begin(cg, &f, in_range(cg, ih, d->h));
    LLVMValueRef j = for_begin(cg, &lj, ci64(cg, 0), ci64(cg, d->kw), 1);
    LLVMValueRef iw = add(cg, addc(cg, mulc(cg, q, d->sw), -d->pw), j);
    If g;
    if_begin(cg, &g, in_range(cg, iw, d->w));
    LLVMValueRef idx = add(cg, mulc(cg, ih, d->w), iw);
    LLVMValueRef x = ld(cg, xp, idx);
    LLVMValueRef take = LLVMBuildOr(cg->b, icmp(cg, LLVMIntSLT, get(cg, best), ci64(cg, 0)),
                                    LLVMBuildOr(cg->b, fcmp(cg, LLVMRealOGT, x, get(cg, mx)),
                                                fcmp(cg, LLVMRealUNO, x, x), ""), "");
    set(cg, best, sel(cg, take, idx, get(cg, best)));
    set(cg, mx, sel(cg, take, x, get(cg, mx)));
    if_end(cg, &g);
    for_end(cg, &lj);
    if_end(cg, &f);
    for_end(cg, &li);
}

/* Windows entirely inside the image: unrolled, no bounds checks. */
static void pool_window_fast(Cg *cg, const IrNode *n, const PoolDims *d, LLVMValueRef xp, LLVMValueRef yp,
                             LLVMValueRef xsrc, LLVMValueRef p, LLVMValueRef q, LLVMValueRef o, LLVMValueRef idxbuf) {
    LLVMValueRef idx0 = add(cg, mulc(cg, addc(cg, mulc(cg, p, d->sh), -d->ph), d->w), addc(cg, mulc(cg, q, d->sw), -d->pw));
    if (n->op == IR_OP_MAXPOOL || n->op == IR_OP_MAXPOOL_BWD) {
        LLVMValueRef mx = ld(cg, xsrc, idx0), best = idx0;
        for (int64_t i = 0; i < d->kh; i++)
            for (int64_t j = 0; j < d->kw; j++) {
                if (i == 0 && j == 0) continue;
                LLVMValueRef idx = addc(cg, idx0, i * d->w + j);
                LLVMValueRef x = ld(cg, xsrc, idx);
                LLVMValueRef take = LLVMBuildOr(cg->b, fcmp(cg, LLVMRealOGT, x, mx), fcmp(cg, LLVMRealUNO, x, x), "");
                if (n->op == IR_OP_MAXPOOL_BWD) best = sel(cg, take, idx, best);
                mx = sel(cg, take, x, mx);
            }
        if (n->op == IR_OP_MAXPOOL) st(cg, mx, yp, o);
        else LLVMBuildStore(cg->b, best, LLVMBuildInBoundsGEP2(cg->b, cg->i64, idxbuf, &q, 1, ""));
    } else {
        float inv = 1.0f / (float)(d->kh * d->kw);
        int fwd = n->op == IR_OP_AVGPOOL;
        LLVMValueRef acc = cf32(cg, 0);
        LLVMValueRef gv = fwd ? NULL : f_mul(cg, ld(cg, yp, o), cf32(cg, inv));
        for (int64_t i = 0; i < d->kh; i++)
            for (int64_t j = 0; j < d->kw; j++) {
                LLVMValueRef idx = addc(cg, idx0, i * d->w + j);
                if (fwd) acc = f_add(cg, acc, ld(cg, xp, idx));
                else st(cg, f_add(cg, ld(cg, xp, idx), gv), xp, idx);
            }
        if (fwd) st(cg, f_mul(cg, acc, cf32(cg, inv)), yp, o);
    }
}

/* Windows with bounds checks, for output pixels on the border. */
static void pool_window_slow(Cg *cg, const IrNode *n, const PoolDims *d, LLVMValueRef xp, LLVMValueRef yp,
                             LLVMValueRef xsrc, LLVMValueRef p, LLVMValueRef q, LLVMValueRef o, LLVMValueRef best,
                             LLVMValueRef mx, LLVMValueRef idxbuf) {
    float inv = 1.0f / (float)(d->kh * d->kw);
    Loop li, lj;
    if (n->op == IR_OP_MAXPOOL) {
        window_argmax(cg, d, xp, p, q, best, mx);
        st(cg, get(cg, mx), yp, o);
    } else if (n->op == IR_OP_MAXPOOL_BWD) {
        window_argmax(cg, d, xsrc, p, q, best, mx);
        LLVMBuildStore(cg->b, get(cg, best), LLVMBuildInBoundsGEP2(cg->b, cg->i64, idxbuf, &q, 1, ""));
    } else {
        int fwd = n->op == IR_OP_AVGPOOL;
        LLVMValueRef acc = var(cg, cg->f32, cf32(cg, 0));
        LLVMValueRef gv = fwd ? NULL : f_mul(cg, ld(cg, yp, o), cf32(cg, inv));
        LLVMValueRef i = for_begin(cg, &li, ci64(cg, 0), ci64(cg, d->kh), 1);
        LLVMValueRef ih = add(cg, addc(cg, mulc(cg, p, d->sh), -d->ph), i);
        If f, g;
        if_begin(cg, &f, in_range(cg, ih, d->h));
        LLVMValueRef j = for_begin(cg, &lj, ci64(cg, 0), ci64(cg, d->kw), 1);
        LLVMValueRef iw = add(cg, addc(cg, mulc(cg, q, d->sw), -d->pw), j);
        if_begin(cg, &g, in_range(cg, iw, d->w));
        LLVMValueRef idx = add(cg, mulc(cg, ih, d->w), iw);
        if (fwd) set(cg, acc, f_add(cg, get(cg, acc), ld(cg, xp, idx)));
        else st(cg, f_add(cg, ld(cg, xp, idx), gv), xp, idx);
        if_end(cg, &g);
        for_end(cg, &lj);
        if_end(cg, &f);
        for_end(cg, &li);
        if (fwd) st(cg, f_mul(cg, get(cg, acc), cf32(cg, inv)), yp, o);
    }
}

/* The end of the vectorised part of [qlo, qhi): vw windows at a time, each
 * window element one load of sw*vw floats that must stay inside the row. */
static int64_t pool_vec_end(const PoolDims *d, int64_t qlo, int64_t qhi, int vw) {
    /* the last window q may lead: q*sw - pw + kw - 1 + sw - 1 <= w - 1 */
    int64_t lim = d->w + d->pw - d->kw - d->sw + 1;
    int64_t qmax = lim < 0 ? -1 : lim / d->sw;
    if (qmax > qhi - 1) qmax = qhi - 1;
    int64_t nvec = qmax - qlo + 1 >= vw ? (qmax - qlo + 1) / vw : 0;
    return qlo + nvec * vw;
}

/* Max pool windows q..q+vw-1 of output row p, inside the image along the
 * row: the same comparisons, in the same order, as pool_window_fast,
 * lane-wise, over the window rows i in the bitset rows (all of them inside
 * the image; the first valid element starts the maximum, as in
 * window_argmax).  masked: the wide load of a strided row reads only the
 * lanes it keeps (the last block of a row, whose full load would pass the
 * row's end).  Forward stores the maxima at yp; backward stores the
 * argmaxes (indices in the plane) at idxbuf[q..]. */
static void pool_max_vec(Cg *cg, const IrNode *n, const PoolDims *d, LLVMValueRef xsrc, LLVMValueRef yp,
                         LLVMValueRef p, LLVMValueRef q, LLVMValueRef idxbuf, uint64_t rows, int masked) {
    int vw = cg->vw, bwd = n->op == IR_OP_MAXPOOL_BWD;
    int64_t s = d->sw;
    LLVMTypeRef wide = LLVMVectorType(cg->f32, (unsigned)(s * vw));
    LLVMValueRef lanes = ivec(cg, 0, s);   /* lane l's window starts l*s after lane 0's */
    LLVMValueRef idx0 = add(cg, mulc(cg, addc(cg, mulc(cg, p, d->sh), -d->ph), d->w), addc(cg, mulc(cg, q, s), -d->pw));
    LLVMValueRef ibase = bwd ? LLVMBuildAdd(cg->b, vsplat_i32(cg, LLVMBuildTrunc(cg->b, idx0, cg->i32, "")), lanes, "") : NULL;
    LLVMValueRef mx = NULL, best = NULL, keep = NULL;
    if (s > 1 && masked) {
        LLVMValueRef m[64];
        for (int64_t l = 0; l < s * vw; l++) m[l] = LLVMConstInt(cg->i1, l <= s * (vw - 1), 0);
        keep = LLVMConstVector(m, (unsigned)(s * vw));
    }
    for (int64_t i = 0; i < d->kh; i++) {
        if (!(rows >> i & 1)) continue;
        for (int64_t j = 0; j < d->kw; j++) {
            LLVMValueRef at = addc(cg, idx0, i * d->w + j);
            LLVMValueRef x;
            if (s == 1) {
                x = vld(cg, xsrc, at);
            } else {
                LLVMValueRef l;
                if (keep) {
                    l = cg_masked_load(cg, gep(cg, xsrc, at), keep, LLVMGetUndef(wide));
                } else {
                    LLVMValueRef pw = LLVMBuildBitCast(cg->b, gep(cg, xsrc, at), LLVMPointerType(wide, 0), "");
                    l = LLVMBuildLoad2(cg->b, wide, pw, "");
                    LLVMSetAlignment(l, 4);
                }
                x = LLVMBuildShuffleVector(cg->b, l, LLVMGetUndef(wide), lanes, "");
            }
            LLVMValueRef xi = NULL;
            if (bwd) xi = LLVMBuildAdd(cg->b, ibase, ivec(cg, i * d->w + j, 0), "");
            if (!mx) {
                mx = x;
                best = xi;
                continue;
            }
            LLVMValueRef take = LLVMBuildOr(cg->b, fcmp(cg, LLVMRealOGT, x, mx), fcmp(cg, LLVMRealUNO, x, x), "");
            mx = sel(cg, take, x, mx);
            if (bwd) best = sel(cg, take, xi, best);
        }
    }
    if (!bwd) {
        vst(cg, mx, yp, add(cg, mulc(cg, p, d->q), q));
        return;
    }
    LLVMTypeRef v64 = LLVMVectorType(cg->i64, (unsigned)vw);
    LLVMValueRef b64 = LLVMBuildSExt(cg->b, best, v64, "");
    LLVMValueRef dst = LLVMBuildBitCast(cg->b, LLVMBuildInBoundsGEP2(cg->b, cg->i64, idxbuf, &q, 1, ""),
                                        LLVMPointerType(v64, 0), "");
    LLVMSetAlignment(LLVMBuildStore(cg->b, b64, dst), 8);
}

/* [lo, hi): the outputs whose windows lie inside [0, in) along one axis. */
static void pool_inner(int64_t in, int64_t k, int64_t s, int64_t pad, int64_t out, int64_t *lo, int64_t *hi) {
    int64_t a = (pad + s - 1) / s;
    int64_t b = in - k + pad >= 0 ? (in - k + pad) / s + 1 : 0;
    if (a > out) a = out;
    if (b > out) b = out;
    if (b < a) b = a;
    *lo = a;
    *hi = b;
}

/* Max pool on small planes (rows too short for pool_max_vec): the output
 * plane seen as one run of P*Q outputs, vw at a time; each window element is
 * gathered at offsets from a constant table ([chunk][element][lane]:
 * the index in the input plane, -1 outside the image or past P*Q), or, when
 * the lanes read the input at a fixed distance from the output (stride 1,
 * output the input's size), a masked load (GoogLeNet's branch pools: the
 * whole training step 14% faster than with gathers, which this AMD CPU runs
 * slowly).  The
 * comparisons are window_argmax's: best starts at -1, a valid element is
 * taken when best < 0, when it is greater, or when it is NaN. */
static int pool_flat(const PoolDims *d, int vw) {
    return d->p * d->q <= 512 && d->q < 3 * vw && d->kh * d->kw <= 64;
}

static void emit_maxpool_flat(Cg *cg, const IrNode *n, const PoolDims *d, const char *key, LLVMValueRef *v0,
                              int64_t planes) {
    int vw = cg->vw, bwd = n->op == IR_OP_MAXPOOL_BWD;
    int64_t pq = d->p * d->q, hw = d->h * d->w, ke = d->kh * d->kw, nch = (pq + vw - 1) / vw;
    int64_t nt = nch * ke * vw;
    LLVMValueRef *tab = malloc(sizeof *tab * (size_t)nt);
    /* contig: every window element k reads, in every chunk, the input at a
     * fixed distance delta[k] from the output (stride-1 pools whose output
     * is the input's size): masked loads instead of gathers */
    int contig = d->q == d->w;
    LLVMValueRef *delta = malloc(sizeof *delta * (size_t)ke);
    for (int64_t k = 0; k < ke; k++) delta[k] = ci64(cg, (k / d->kw - d->ph) * d->w + (k % d->kw - d->pw));
    for (int64_t c = 0; c < nch; c++)
        for (int64_t i = 0; i < d->kh; i++)
            for (int64_t j = 0; j < d->kw; j++)
                for (int l = 0; l < vw; l++) {
                    int64_t o = c * vw + l, p = o / d->q, q = o % d->q;
                    int64_t ih = p * d->sh - d->ph + i, iw = q * d->sw - d->pw + j;
                    int64_t at = o < pq && ih >= 0 && ih < d->h && iw >= 0 && iw < d->w ? ih * d->w + iw : -1;
                    if (at >= 0 && at != o + (i - d->ph) * d->w + (j - d->pw)) contig = 0;
                    tab[((c * ke) + i * d->kw + j) * vw + l] = LLVMConstInt(cg->i32, (unsigned long long)at, 1);
                }
    /* the tables are this shape's data; the body is shared by every pool of
     * the module with the same op, window size and kind of load (its
     * sizes come as values): GoogLeNet's dozen shapes compile four bodies */
    char gname[160];
    snprintf(gname, sizeof gname, "netc_tab_%s", key);
    LLVMValueRef g = cg_const_table(cg, gname, cg->i32, tab, nt);
    snprintf(gname, sizeof gname, "netc_delta_%s", key);
    LLVMValueRef gd = cg_const_table(cg, gname, cg->i64, delta, ke);
    free(tab);
    free(delta);
    LLVMValueRef v[8] = {v0[0], v0[1], v0[2], g, gd, ci64(cg, pq), ci64(cg, hw), ci64(cg, nch)};
    char skey[64];
    snprintf(skey, sizeof skey, "flatpool%d_%lld_%d", (int)n->op, (long long)ke, contig);
    Par P;
    LLVMValueRef b, e;
    if (!par_begin_shared(cg, &P, skey, v, 8, ci64(cg, planes), &b, &e)) {
        par_end(cg, &P);
        return;
    }
    LLVMValueRef tab0 = v[3], dtab = v[4], PQ = v[5], HW = v[6], NCH = v[7];
    LLVMTypeRef vi = LLVMVectorType(cg->i32, (unsigned)vw), v64 = LLVMVectorType(cg->i64, (unsigned)vw);
    /* argmaxes of a plane: at most 512 outputs (pool_flat), rounded up to vw */
    LLVMValueRef idxbuf = bwd ? LLVMBuildBitCast(cg->b, var(cg, LLVMArrayType(cg->i64, (unsigned)(512 + vw)), NULL),
                                                 LLVMPointerType(cg->i64, 0), "")
                              : NULL;
    LLVMValueRef dk[64];
    if (contig)
        for (int64_t k = 0; k < ke; k++) {
            LLVMValueRef ki = ci64(cg, k);
            dk[k] = LLVMBuildLoad2(cg->b, cg->i64, LLVMBuildInBoundsGEP2(cg->b, cg->i64, dtab, &ki, 1, ""), "");
        }
    LLVMValueRef ninf = splat(cg, cf32(cg, -INFINITY)), zero = LLVMConstNull(vi);
    Loop ll, lc, lo;
    LLVMValueRef pl = for_begin(cg, &ll, b, e, 1);
    LLVMValueRef xsrc, yp, dx = NULL;
    if (!bwd) {
        xsrc = gep(cg, v[0], mul(cg, pl, HW));
        yp = gep(cg, v[2], mul(cg, pl, PQ));
    } else {
        yp = gep(cg, v[0], mul(cg, pl, PQ));      /* dy */
        xsrc = gep(cg, v[1], mul(cg, pl, HW));    /* x */
        dx = gep(cg, v[2], mul(cg, pl, HW));
        cg_memset0(cg, dx, HW);
    }
    LLVMValueRef c = for_begin(cg, &lc, ci64(cg, 0), NCH, 1);
    LLVMValueRef mx = ninf, best = ivec(cg, -1, 0);
    for (int64_t k = 0; k < ke; k++) {
        LLVMValueRef ti = add(cg, mulc(cg, c, ke * vw), ci64(cg, k * vw));
        LLVMValueRef tp = LLVMBuildBitCast(cg->b, LLVMBuildInBoundsGEP2(cg->b, cg->i32, tab0, &ti, 1, ""),
                                           LLVMPointerType(vi, 0), "");
        LLVMValueRef off = LLVMBuildLoad2(cg->b, vi, tp, "");
        LLVMSetAlignment(off, 4);
        LLVMValueRef valid = LLVMBuildICmp(cg->b, LLVMIntSGE, off, zero, "");
        LLVMValueRef x;
        if (contig) {
            /* lanes off the image are masked: not read (even before the
             * plane, so not an inbounds address) */
            LLVMValueRef at = add(cg, mulc(cg, c, vw), dk[k]);
            x = cg_masked_load(cg, LLVMBuildGEP2(cg->b, cg->f32, xsrc, &at, 1, ""), valid, ninf);
        } else {
            x = cg_gather(cg, xsrc, sel(cg, valid, off, zero), valid, ninf);
        }
        LLVMValueRef take = LLVMBuildOr(cg->b, fcmp(cg, LLVMRealOGT, x, mx), fcmp(cg, LLVMRealUNO, x, x), "");
        if (!bwd) {
            /* the maximum alone: lanes off the image load -inf, never taken,
             * and a window's first valid element is always taken unless it
             * is -inf, the maximum's start value: the same value */
            mx = sel(cg, take, x, mx);
            continue;
        }
        LLVMValueRef first = LLVMBuildICmp(cg->b, LLVMIntSLT, best, zero, "");
        take = LLVMBuildAnd(cg->b, LLVMBuildOr(cg->b, first, take, ""), valid, "");
        mx = sel(cg, take, x, mx);
        best = sel(cg, take, off, best);
    }
    LLVMValueRef o0 = mulc(cg, c, vw);
    if (!bwd) {
        /* lanes past P*Q spill into the next plane's first outputs, which
         * this thread writes next; the last plane of its range stores them
         * masked.  (A masked store to lines not in the cache is slow on
         * this AMD CPU: with every plane's last chunk masked, 512x6x6
         * planes at batch 128 took 9-11 ms, 2.9 ms now.) */
        LLVMTypeRef vf = LLVMTypeOf(mx), pvf = LLVMPointerType(vf, 0);
        LLVMValueRef dst = LLVMBuildBitCast(cg->b, gep(cg, yp, o0), pvf, "");
        If fs;
        if_begin(cg, &fs, icmp(cg, LLVMIntSLT, pl, addc(cg, e, -1)));
        LLVMSetAlignment(LLVMBuildStore(cg->b, mx, dst), 4);
        if_else(cg, &fs);
        {
            LLVMValueRef ov = LLVMBuildAdd(cg->b, vsplat_i32(cg, LLVMBuildTrunc(cg->b, o0, cg->i32, "")), ivec(cg, 0, 1), "");
            LLVMValueRef in = LLVMBuildICmp(cg->b, LLVMIntSLT, ov, vsplat_i32(cg, LLVMBuildTrunc(cg->b, PQ, cg->i32, "")), "");
            LLVMTypeRef ovl[2] = {vf, pvf};
            LLVMValueRef sa[4] = {mx, dst, LLVMConstInt(cg->i32, 4, 0), in};
            cg_call(cg, cg_intrinsic(cg, "llvm.masked.store", ovl, 2), sa, 4);
        }
        if_end(cg, &fs);
    } else {
        LLVMValueRef dst = LLVMBuildBitCast(cg->b, LLVMBuildInBoundsGEP2(cg->b, cg->i64, idxbuf, &o0, 1, ""),
                                            LLVMPointerType(v64, 0), "");
        LLVMSetAlignment(LLVMBuildStore(cg->b, LLVMBuildSExt(cg->b, best, v64, ""), dst), 8);
    }
    for_end(cg, &lc);
    if (bwd) {
        /* dx[argmax] += dy, in output order */
        LLVMValueRef o = for_begin(cg, &lo, ci64(cg, 0), PQ, 1);
        LLVMValueRef bi = LLVMBuildLoad2(cg->b, cg->i64, LLVMBuildInBoundsGEP2(cg->b, cg->i64, idxbuf, &o, 1, ""), "");
        If f;
        if_begin(cg, &f, icmp(cg, LLVMIntSGE, bi, ci64(cg, 0)));
        st(cg, f_add(cg, ld(cg, dx, bi), ld(cg, yp, o)), dx, bi);
        if_end(cg, &f);
        for_end(cg, &lo);
    }
    for_end(cg, &ll);
    par_end(cg, &P);
}

/* Output row p of one plane: border windows with bounds checks, the
 * windows inside the image along the row vw at a time (max pools; rows:
 * the window rows inside the image, 0 for none known, border: p is a
 * border row) with the row's last block overlapping its predecessor, the
 * rest one by one; max pool bwd then adds dy at the row's argmaxes. */
static void pool_row(Cg *cg, const IrNode *n, const PoolDims *d, LLVMValueRef xp, LLVMValueRef yp, LLVMValueRef xsrc,
                     LLVMValueRef p, int64_t qlo, int64_t qhi, uint64_t rows, int border, LLVMValueRef best,
                     LLVMValueRef mx, LLVMValueRef idxbuf) {
    int vw = cg->vw, maxp = n->op == IR_OP_MAXPOOL || n->op == IR_OP_MAXPOOL_BWD;
    Loop lq;
    LLVMValueRef q;
    /* wide loads of at most 64 floats (strides up to 64 / vw) */
    int vec = maxp && rows && qhi - qlo >= vw && d->sw * vw <= 64;
    if (!vec && border) {
        qlo = qhi = d->q;   /* every window slow */
    }
    q = for_begin(cg, &lq, ci64(cg, 0), ci64(cg, qlo), 1);
    pool_window_slow(cg, n, d, xp, yp, xsrc, p, q, add(cg, mulc(cg, p, d->q), q), best, mx, idxbuf);
    for_end(cg, &lq);
    LLVMValueRef src = n->op == IR_OP_MAXPOOL ? xp : xsrc;
    if (vec) {
        /* vw windows side by side: one wide load per window element */
        int64_t qv = pool_vec_end(d, qlo, qhi, vw);
        if (qv > qlo) {
            q = for_begin(cg, &lq, ci64(cg, qlo), ci64(cg, qv), vw);
            pool_max_vec(cg, n, d, src, yp, p, q, idxbuf, rows, 0);
            for_end(cg, &lq);
        }
        if (qv < qhi) pool_max_vec(cg, n, d, src, yp, p, ci64(cg, qhi - vw), idxbuf, rows, 1);
    } else {
        q = for_begin(cg, &lq, ci64(cg, qlo), ci64(cg, qhi), 1);
        pool_window_fast(cg, n, d, xp, yp, xsrc, p, q, add(cg, mulc(cg, p, d->q), q), idxbuf);
        for_end(cg, &lq);
    }
    q = for_begin(cg, &lq, ci64(cg, qhi), ci64(cg, d->q), 1);
    pool_window_slow(cg, n, d, xp, yp, xsrc, p, q, add(cg, mulc(cg, p, d->q), q), best, mx, idxbuf);
    for_end(cg, &lq);
    if (n->op == IR_OP_MAXPOOL_BWD) {
        q = for_begin(cg, &lq, ci64(cg, 0), ci64(cg, d->q), 1);
        LLVMValueRef bi = LLVMBuildLoad2(cg->b, cg->i64, LLVMBuildInBoundsGEP2(cg->b, cg->i64, idxbuf, &q, 1, ""), "");
        If f;
        if_begin(cg, &f, icmp(cg, LLVMIntSGE, bi, ci64(cg, 0)));
        st(cg, f_add(cg, ld(cg, xp, bi), ld(cg, yp, add(cg, mulc(cg, p, d->q), q))), xp, bi);
        if_end(cg, &f);
        for_end(cg, &lq);
    }
}

static void emit_pool(Cg *cg, const IrNode *n) {
    int bwd = n->op == IR_OP_MAXPOOL_BWD || n->op == IR_OP_AVGPOOL_BWD;
    int xv = bwd ? n->out[0] : n->in[0], yv = bwd ? n->in[0] : n->out[0];
    PoolDims d = pool_dims(cg, n, xv, yv);
    int64_t planes = cg->p->batch * d.c, hw = d.h * d.w, pq = d.p * d.q;
    int64_t plo, phi, qlo, qhi;
    pool_inner(d.h, d.kh, d.sh, d.ph, d.p, &plo, &phi);
    pool_inner(d.w, d.kw, d.sw, d.pw, d.q, &qlo, &qhi);
    LLVMValueRef v[3] = {cg_vptr(cg, n->in[0]), n->nin > 1 ? cg_vptr(cg, n->in[1]) : LLVMConstNull(cg->pf),
                         cg_vptr(cg, n->out[0])};
    Par P;
    LLVMValueRef b, e;
    char key[128];
    snprintf(key, sizeof key, "pool%d_%lld_%lld_%lld_%lld_%lld_%lld_%lld_%lld_%lld_%lld", (int)n->op, (long long)d.h,
             (long long)d.w, (long long)d.kh, (long long)d.kw, (long long)d.sh, (long long)d.sw, (long long)d.ph,
             (long long)d.pw, (long long)d.p, (long long)d.q);
    if ((n->op == IR_OP_MAXPOOL || n->op == IR_OP_MAXPOOL_BWD) && pool_flat(&d, cg->vw)) {
        char fkey[140];
        snprintf(fkey, sizeof fkey, "flat%s", key);
        emit_maxpool_flat(cg, n, &d, fkey, v, planes);
        return;
    }
    if (!par_begin_shared(cg, &P, key, v, 3, ci64(cg, planes), &b, &e)) {
        par_end(cg, &P);
        return;
    }
    LLVMValueRef best = var(cg, cg->i64, NULL), mx = var(cg, cg->f32, NULL);
    /* max pool bwd: a row's argmaxes first, then dx[argmax] += dy (keeps the
     * scattered stores away from the loads of x) */
    LLVMValueRef idxbuf = LLVMBuildBitCast(cg->b, var(cg, LLVMArrayType(cg->i64, (unsigned)d.q), NULL),
                                           LLVMPointerType(cg->i64, 0), "");
    Loop ll, lp;
    LLVMValueRef pl = for_begin(cg, &ll, b, e, 1);
    LLVMValueRef xp, yp, xsrc;
    if (n->op == IR_OP_MAXPOOL || n->op == IR_OP_AVGPOOL) {
        xp = gep(cg, v[0], mulc(cg, pl, hw));
        yp = gep(cg, v[2], mulc(cg, pl, pq));
    } else {
        yp = gep(cg, v[0], mulc(cg, pl, pq));     /* dy */
        xp = gep(cg, v[2], mulc(cg, pl, hw));     /* dx */
        cg_memset0(cg, xp, ci64(cg, hw));
    }
    xsrc = n->op == IR_OP_MAXPOOL_BWD ? gep(cg, v[1], mulc(cg, pl, hw)) : xp;
    /* rows in order: the inner ones [plo, phi) in a loop, the border ones
     * one by one, their windows' rows inside the image known here (all
     * windows slow past 4 border rows) */
    int64_t nborder = plo + (d.p - phi);
    uint64_t all = d.kh < 64 ? (1ull << d.kh) - 1 : 0;   /* 0: no vector path */
    for (int64_t pb = 0; pb < d.p; pb++) {
        int border = pb < plo || pb >= phi;
        if (!border && pb != plo) continue;   /* the inner loop, emitted at plo */
        LLVMValueRef p;
        uint64_t rows = all;
        if (!border) {
            p = for_begin(cg, &lp, ci64(cg, plo), ci64(cg, phi), 1);
        } else {
            p = ci64(cg, pb);
            rows = 0;
            for (int64_t i = 0; i < d.kh && i < 64; i++) {
                int64_t ih = pb * d.sh - d.ph + i;
                if (ih >= 0 && ih < d.h) rows |= 1ull << i;
            }
            if (nborder > 4) rows = 0;
        }
        pool_row(cg, n, &d, xp, yp, xsrc, p, qlo, qhi, rows, border, best, mx, idxbuf);
        if (!border) for_end(cg, &lp);
    }
    for_end(cg, &ll);
    par_end(cg, &P);
}

static void emit_global_pool(Cg *cg, const IrNode *n) {
    int fwd = n->op == IR_OP_GAVGPOOL || n->op == IR_OP_GMAXPOOL;
    int xv = fwd ? n->in[0] : n->out[0];
    int64_t nc = cg->p->batch * ir_type(&cg->p->g, xv)->d[1];
    int64_t hwc = cg_numel(cg, xv) / nc;
    LLVMValueRef v[4] = {cg_vptr(cg, n->in[0]), n->nin > 1 ? cg_vptr(cg, n->in[1]) : LLVMConstNull(cg->pf),
                         cg_vptr(cg, n->out[0]), ci64(cg, hwc)};
    char key[32];
    snprintf(key, sizeof key, "gpool%d", (int)n->op);
    Par P;
    LLVMValueRef b, e;
    if (!par_begin_shared(cg, &P, key, v, 4, ci64(cg, nc), &b, &e)) {
        par_end(cg, &P);
        return;
    }
    LLVMValueRef in0 = v[0], in1 = v[1], out = v[2], hw = v[3];
    LLVMValueRef hwf = LLVMBuildSIToFP(cg->b, hw, cg->f32, "");
    Loop li, lj;
    LLVMValueRef i = for_begin(cg, &li, b, e, 1);
    LLVMValueRef plane = mul(cg, i, hw);
    if (n->op == IR_OP_GAVGPOOL) {
        st(cg, f_div(cg, reduce(cg, R_SUM, gep(cg, in0, plane), NULL, NULL, hw), hwf), out, i);
    } else if (n->op == IR_OP_GAVGPOOL_BWD) {
        LLVMValueRef g = f_div(cg, ld(cg, in0, i), hwf);
        LLVMValueRef j = for_begin(cg, &lj, ci64(cg, 0), hw, 1);
        st(cg, g, out, add(cg, plane, j));
        for_end(cg, &lj);
    } else {
        LLVMValueRef xp = gep(cg, n->op == IR_OP_GMAXPOOL ? in0 : in1, plane);
        LLVMValueRef best = var(cg, cg->i64, ci64(cg, 0)), mx = var(cg, cg->f32, ld(cg, xp, ci64(cg, 0)));
        LLVMValueRef j = for_begin(cg, &lj, ci64(cg, 1), hw, 1);
        LLVMValueRef x = ld(cg, xp, j);
        LLVMValueRef take = LLVMBuildOr(cg->b, fcmp(cg, LLVMRealOGT, x, get(cg, mx)), fcmp(cg, LLVMRealUNO, x, x), "");
        set(cg, best, sel(cg, take, j, get(cg, best)));
        set(cg, mx, sel(cg, take, x, get(cg, mx)));
        for_end(cg, &lj);
        if (n->op == IR_OP_GMAXPOOL) {
            st(cg, get(cg, mx), out, i);
        } else {
            LLVMValueRef dxp = gep(cg, out, plane);
            cg_memset0(cg, dxp, hw);
            st(cg, ld(cg, in0, i), dxp, get(cg, best));
        }
    }
    for_end(cg, &li);
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
        LLVMValueRef mask = optr(cg, n, 1);
        if (n->attr.dropout.mode == IR_EVAL || n->nout < 2) {
            emit_copy(cg, y, x, cnt);
            return 0;
        }
        float p = n->attr.dropout.p;
        Ew e = {.op = n->op, .nin = 1, .fp = p, .keep = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f};
        LLVMValueRef seed = LLVMBuildLoad2(cg->b, cg->i64, LLVMBuildStructGEP2(cg->b, cg->args_t, cg->args, 1, ""), "");
        LLVMValueRef step = LLVMBuildLoad2(cg->b, cg->i64, LLVMBuildStructGEP2(cg->b, cg->args_t, cg->args, 2, ""), "");
        LLVMValueRef sm = LLVMBuildAdd(cg->b, LLVMConstInt(cg->i64, (uint64_t)n->attr.dropout.index * 0x100000001b3ull, 0),
                                       mix64(cg, step), "");
        e.key = mix64(cg, LLVMBuildXor(cg->b, seed, mix64(cg, sm), ""));
        emit_ew(cg, &e, cnt, &x, 1, y, mask);
        return 0;
    }
    case IR_OP_BATCHNORM:
        emit_batchnorm(cg, n);
        return 0;
    case IR_OP_BATCHNORM_BWD:
        emit_batchnorm_bwd(cg, n);
        return 0;
    case IR_OP_MAXPOOL: case IR_OP_AVGPOOL: case IR_OP_MAXPOOL_BWD: case IR_OP_AVGPOOL_BWD:
        emit_pool(cg, n);
        return 0;
    case IR_OP_GAVGPOOL: case IR_OP_GMAXPOOL: case IR_OP_GAVGPOOL_BWD: case IR_OP_GMAXPOOL_BWD:
        emit_global_pool(cg, n);
        return 0;
    case IR_OP_SOFTMAX_XENT: case IR_OP_SOFTMAX_XENT_BWD:
        emit_softmax_xent(cg, n);
        return 0;
    case IR_OP_CONCAT: {
        const IrType *ty = ir_type(&cg->p->g, n->out[0]);
        int64_t ctot = ty->d[1], hw = cg_numel(cg, n->out[0]) / (nb * ctot), c0 = 0;
        LLVMValueRef y = cg_vptr(cg, n->out[0]);
        for (int k = 0; k < n->nin; k++) {
            int64_t c = ir_type(&cg->p->g, n->in[k])->d[1];
            emit_rowcopy(cg, gep(cg, y, ci64(cg, c0 * hw)), ctot * hw, cg_vptr(cg, n->in[k]), c * hw, c * hw, nb);
            c0 += c;
        }
        return 0;
    }
    case IR_OP_SLICE: {
        const IrType *tx = ir_type(&cg->p->g, n->in[0]);
        int64_t ctot = tx->d[1], c0 = n->attr.slice.c0, c = n->attr.slice.c;
        int64_t hw = cg_numel(cg, n->in[0]) / (nb * ctot);
        LLVMValueRef x = cg_vptr(cg, n->in[0]), y = cg_vptr(cg, n->out[0]);
        emit_rowcopy(cg, y, c * hw, gep(cg, x, ci64(cg, c0 * hw)), ctot * hw, c * hw, nb);
        return 0;
    }
    default:
        return diag_error_noloc(d, "cpu backend: no kernel for op %d (node %s)", (int)n->op,
                                n->name ? n->name : "?");
    }
}
