/* kernels.c - every op but conv, linear and pooling: elementwise ops, batch
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

LLVMValueRef cg_reduce_sum(Cg *cg, LLVMValueRef p, LLVMValueRef n) { return reduce(cg, R_SUM, p, NULL, NULL, n); }

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
        cg_emit_pool(cg, n);
        return 0;
    case IR_OP_GAVGPOOL: case IR_OP_GMAXPOOL: case IR_OP_GAVGPOOL_BWD: case IR_OP_GMAXPOOL_BWD:
        cg_emit_global_pool(cg, n);
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
