/* batchnorm.c - batch norm and its gradient, alone or with the elementwise
 * chains the fusion pass puts beside them.
 *
 * Both kernels go channel by channel (a task per channel): the statistics
 * are sums over the channel's rows of every image, in float with two vector
 * accumulators per row and in double across rows, so they are the same
 * bits for any thread count.  A chain after a batch norm (relu, sigmoid,
 * the residual add) is applied as each element is normalised: the
 * normalised tensor is stored only when something else reads it.  A chain
 * before a gradient (relu_bwd, accum) is computed wherever the gradient is
 * read, so the tensor it makes need not exist in memory.  Semantics are
 * codegen/ref_kernels.inc's. */
#include "cg.h"

#include <stdio.h>
#include <string.h>

static LLVMValueRef fext(Cg *cg, LLVMValueRef x) { return LLVMBuildFPExt(cg->b, x, cg->f64, ""); }
static LLVMValueRef ftrunc(Cg *cg, LLVMValueRef x) { return LLVMBuildFPTrunc(cg->b, x, cg->f32, ""); }
/* x (a double) as itself or splat to vw lanes */
static LLVMValueRef dsplat(Cg *cg, LLVMValueRef x, int vec) {
    if (!vec) return x;
    LLVMTypeRef vt = LLVMVectorType(cg->f64, (unsigned)cg->vw);
    LLVMValueRef u = LLVMBuildInsertElement(cg->b, LLVMGetUndef(vt), x, LLVMConstInt(cg->i32, 0, 0), "");
    return LLVMBuildShuffleVector(cg->b, u, LLVMGetUndef(vt), LLVMConstNull(LLVMVectorType(cg->i32, (unsigned)cg->vw)), "");
}
static LLVMValueRef call1(Cg *cg, const char *intr, LLVMTypeRef t, LLVMValueRef x) {
    return cg_call(cg, cg_intrinsic(cg, intr, &t, 1), &x, 1);
}

/* ---- reductions ------------------------------------------------------------- */

/* A tensor the reductions read: a buffer p (images is floats apart, or
 * contiguous when is is NULL: a view of a concat is strided), or chain c
 * computed in place (cp: the body's copies of its buffers; store: store
 * what it makes). */
typedef struct {
    LLVMValueRef p, is;
    const Chain *c;
    LLVMValueRef *cp, key;
    int store;
} Src;

/* the element(s) at off + j; head: the chain's head there (or NULL) */
static LLVMValueRef src_ld(Cg *cg, const Src *s, LLVMValueRef off, LLVMValueRef j, int vec, LLVMValueRef head) {
    LLVMValueRef i = add(cg, off, j);
    if (!s->c) return vec ? vld(cg, s->p, i) : ld(cg, s->p, i);
    return cg_chain_eval(cg, s->c, s->cp, s->key, head, i, vec, s->store);
}

/* With --recompute, the relu gradient in a batch norm gradient's chain
 * reads the sign of the batch norm's output (recompute.c), made here from
 * x as cg_emit_batchnorm makes it, with the channel's gamma, beta, saved
 * mean and inverse std: the same bits. */
typedef struct {
    LLVMValueRef g, b, m, i;
} Sign;

static LLVMValueRef sign_of(Cg *cg, const Sign *s, LLVMValueRef x, int vec) {
    if (!s) return NULL;
    LLVMValueRef g = vec ? splat(cg, s->g) : s->g, b = vec ? splat(cg, s->b) : s->b;
    LLVMValueRef m = vec ? splat(cg, s->m) : s->m, i = vec ? splat(cg, s->i) : s->i;
    return f_add(cg, f_mul(cg, f_mul(cg, g, f_sub(cg, x, m)), i), b);
}

/* The first element of image i's channel ch in s (c channels of hw). */
static LLVMValueRef src_row(Cg *cg, const Src *s, LLVMValueRef i, LLVMValueRef ch, LLVMValueRef c, LLVMValueRef hw) {
    if (s->is) return add(cg, mul(cg, i, s->is), mul(cg, ch, hw));
    return mul(cg, add(cg, mul(cg, i, c), ch), hw);
}

typedef enum { R_SUM, R_SQDEV } RKind;   /* x; (x-m)^2 */

/* sum over j < n of f(p[off+j]) in float with vector accumulators. */
static LLVMValueRef reduce(Cg *cg, RKind k, const Src *p, LLVMValueRef off, LLVMValueRef m, LLVMValueRef n) {
    LLVMValueRef acc[2] = {var(cg, cg->vf, LLVMConstNull(cg->vf)), var(cg, cg->vf, LLVMConstNull(cg->vf))};
    int64_t step = 2 * cg->vw;
    LLVMValueRef nv = LLVMBuildAnd(cg->b, n, ci64(cg, -step), "");
    LLVMValueRef mv = m ? splat(cg, m) : NULL;
    Loop l;
    LLVMValueRef i = for_begin(cg, &l, ci64(cg, 0), nv, step);
    for (int u = 0; u < 2; u++) {
        LLVMValueRef idx = addc(cg, i, u * cg->vw), x = src_ld(cg, p, off, idx, 1, NULL), t;
        if (k == R_SUM) t = x;
        else { t = f_sub(cg, x, mv); t = f_mul(cg, t, t); }
        set(cg, acc[u], f_add(cg, get(cg, acc[u]), t));
    }
    for_end(cg, &l);
    LLVMValueRef s = var(cg, cg->f32, hsum(cg, f_add(cg, get(cg, acc[0]), get(cg, acc[1]))));
    i = for_begin(cg, &l, nv, n, 1);
    LLVMValueRef x = src_ld(cg, p, off, i, 0, NULL), t;
    if (k == R_SUM) t = x;
    else { t = f_sub(cg, x, m); t = f_mul(cg, t, t); }
    set(cg, s, f_add(cg, get(cg, s), t));
    for_end(cg, &l);
    return get(cg, s);
}

/* sum of dy and sum of dy*(x-m) in one pass over dy (x at xoff + j, dy at
 * off + j; each sum's additions in reduce's order; sg: dy's chain reads
 * the sign of x's batch norm). */
static void reduce_pair(Cg *cg, const Src *x, const Src *dy, LLVMValueRef xoff, LLVMValueRef off, LLVMValueRef m,
                        LLVMValueRef n, const Sign *sg, LLVMValueRef *s1, LLVMValueRef *s2) {
    LLVMValueRef acc[2][2];
    for (int a = 0; a < 2; a++)
        for (int u = 0; u < 2; u++) acc[a][u] = var(cg, cg->vf, LLVMConstNull(cg->vf));
    int64_t step = 2 * cg->vw;
    LLVMValueRef nv = LLVMBuildAnd(cg->b, n, ci64(cg, -step), "");
    LLVMValueRef mv = splat(cg, m);
    Loop l;
    LLVMValueRef i = for_begin(cg, &l, ci64(cg, 0), nv, step);
    for (int u = 0; u < 2; u++) {
        LLVMValueRef idx = addc(cg, i, u * cg->vw), xv = src_ld(cg, x, xoff, idx, 1, NULL);
        LLVMValueRef g = src_ld(cg, dy, off, idx, 1, sign_of(cg, sg, xv, 1));
        set(cg, acc[0][u], f_add(cg, get(cg, acc[0][u]), g));
        LLVMValueRef t = f_mul(cg, g, f_sub(cg, xv, mv));
        set(cg, acc[1][u], f_add(cg, get(cg, acc[1][u]), t));
    }
    for_end(cg, &l);
    LLVMValueRef s[2];
    for (int a = 0; a < 2; a++) s[a] = var(cg, cg->f32, hsum(cg, f_add(cg, get(cg, acc[a][0]), get(cg, acc[a][1]))));
    i = for_begin(cg, &l, nv, n, 1);
    LLVMValueRef xv = src_ld(cg, x, xoff, i, 0, NULL), g = src_ld(cg, dy, off, i, 0, sign_of(cg, sg, xv, 0));
    set(cg, s[0], f_add(cg, get(cg, s[0]), g));
    set(cg, s[1], f_add(cg, get(cg, s[1]), f_mul(cg, g, f_sub(cg, xv, m))));
    for_end(cg, &l);
    *s1 = get(cg, s[0]);
    *s2 = get(cg, s[1]);
}

LLVMValueRef cg_reduce_sum(Cg *cg, LLVMValueRef p, LLVMValueRef n) {
    Src s = {.p = p};
    return reduce(cg, R_SUM, &s, ci64(cg, 0), NULL, n);
}

/* sum over images of reduce() of each image's channel row, in double. */
static LLVMValueRef reduce_channel(Cg *cg, RKind k, const Src *p, LLVMValueRef m, LLVMValueRef ch,
                                   LLVMValueRef nb, LLVMValueRef c, LLVMValueRef hw) {
    LLVMValueRef acc = var(cg, cg->f64, cf64(cg, 0));
    Loop l;
    LLVMValueRef i = for_begin(cg, &l, ci64(cg, 0), nb, 1);
    LLVMValueRef r = reduce(cg, k, p, src_row(cg, p, i, ch, c, hw), m, hw);
    set(cg, acc, LLVMBuildFAdd(cg->b, get(cg, acc), fext(cg, r), ""));
    for_end(cg, &l);
    return get(cg, acc);
}

/* reduce_pair() of each image's channel row, summed over images in double. */
static void reduce_channel_pair(Cg *cg, const Src *x, const Src *dy, LLVMValueRef m, LLVMValueRef ch, LLVMValueRef nb,
                                LLVMValueRef c, LLVMValueRef hw, const Sign *sg, LLVMValueRef *s1, LLVMValueRef *s2) {
    LLVMValueRef a1 = var(cg, cg->f64, cf64(cg, 0)), a2 = var(cg, cg->f64, cf64(cg, 0));
    Loop l;
    LLVMValueRef i = for_begin(cg, &l, ci64(cg, 0), nb, 1);
    LLVMValueRef r1, r2;
    reduce_pair(cg, x, dy, src_row(cg, x, i, ch, c, hw), src_row(cg, dy, i, ch, c, hw), m, hw, sg, &r1, &r2);
    set(cg, a1, LLVMBuildFAdd(cg->b, get(cg, a1), fext(cg, r1), ""));
    set(cg, a2, LLVMBuildFAdd(cg->b, get(cg, a2), fext(cg, r2), ""));
    for_end(cg, &l);
    *s1 = get(cg, a1);
    *s2 = get(cg, a2);
}

/* ---- batch norm --------------------------------------------------------------- */

/* the frame's values before a chain's: 8 pointers, the sizes, x's image
 * stride, the gradient's accum (its g, g's and the sum's strides), and the
 * gradient's sign beta */
enum { BN_VALS = 16 };

/* The frame's values after the batch norm's own: the chain's buffers and
 * its key.  Returns their count. */
static int chain_vals(Cg *cg, const Chain *c, LLVMValueRef *v) {
    if (!c) return 0;
    for (int k = 0; k < c->np; k++) v[k] = c->ptr[k];
    v[c->np] = cg_chain_key_value(cg, c);
    return c->np + 1;
}

/* --sync-bn: a training batch norm (or its gradient) as a call of
 * base/syncbn.h's, which sums its statistics over the ranks. */
static void emit_syncbn(Cg *cg, const IrNode *n, int bwd) {
    int xin = bwd ? 1 : 0;
    const IrType *t = ir_type(&cg->p->g, n->in[xin]);
    int64_t nb = cg->p->batch, c = t->d[1], hw = cg_numel(cg, n->in[xin]) / (nb * c), xs;
    LLVMValueRef x = cg_vptr_img(cg, n->in[xin], &xs), null = LLVMConstNull(cg->pf);
    LLVMValueRef o[3];
    for (int k = 0; k < 3; k++) o[k] = k < n->nout && cg_optr(cg, n, k) ? cg_optr(cg, n, k) : null;
    LLVMTypeRef i64 = cg->i64, pf = cg->pf;
    if (!bwd) {
        LLVMTypeRef ps[15] = {cg->p8, pf, i64, pf, pf, pf, pf, pf, pf, pf, i64, i64, i64, cg->f32, cg->f32};
        LLVMValueRef f = LLVMGetNamedFunction(cg->mod, "rt_syncbn_fwd");
        if (!f) f = LLVMAddFunction(cg->mod, "rt_syncbn_fwd", LLVMFunctionType(cg->v, ps, 15, 0));
        LLVMValueRef a[15] = {cg_pool(cg), x, ci64(cg, xs), cg_vptr(cg, n->in[1]), cg_vptr(cg, n->in[2]),
                              cg_vptr(cg, n->in[3]), cg_vptr(cg, n->in[4]), o[0], o[1], o[2],
                              ci64(cg, nb), ci64(cg, c), ci64(cg, hw),
                              LLVMConstReal(cg->f32, n->attr.bn.momentum), LLVMConstReal(cg->f32, n->attr.bn.eps)};
        cg_call(cg, f, a, 15);
    } else {
        LLVMTypeRef ps[13] = {cg->p8, pf, pf, i64, pf, pf, pf, pf, pf, pf, i64, i64, i64};
        LLVMValueRef f = LLVMGetNamedFunction(cg->mod, "rt_syncbn_bwd");
        if (!f) f = LLVMAddFunction(cg->mod, "rt_syncbn_bwd", LLVMFunctionType(cg->v, ps, 13, 0));
        LLVMValueRef a[13] = {cg_pool(cg), cg_vptr(cg, n->in[0]), x, ci64(cg, xs), cg_vptr(cg, n->in[2]),
                              cg_vptr(cg, n->in[3]), cg_vptr(cg, n->in[4]), o[0], o[1], o[2],
                              ci64(cg, nb), ci64(cg, c), ci64(cg, hw)};
        cg_call(cg, f, a, 13);
    }
}

void cg_emit_batchnorm(Cg *cg, const IrNode *n, const Chain *after) {
    if (cg->p->sync_bn && n->attr.bn.mode == IR_TRAIN && !after) {
        emit_syncbn(cg, n, 0);
        return;
    }
    const IrType *t = ir_type(&cg->p->g, n->in[0]);
    int64_t nb = cg->p->batch, c = t->d[1], hw = cg_numel(cg, n->in[0]) / (nb * c);
    float eps = n->attr.bn.eps, mom = n->attr.bn.momentum;
    int train = n->attr.bn.mode == IR_TRAIN, apply = n->attr.bn.mode == IR_BN_APPLY;
    /* the normalised tensor, unless only the chain reads it */
    LLVMValueRef yout = after && !after->head_out ? NULL : cg_vptr(cg, n->out[0]);
    int64_t xs;
    LLVMValueRef v[8] = {cg_vptr_img(cg, n->in[0], &xs), cg_vptr(cg, n->in[1]), cg_vptr(cg, n->in[2]),
                         cg_vptr(cg, n->in[3]), cg_vptr(cg, n->in[4]), yout ? yout : LLVMConstNull(cg->pf),
                         train ? cg_optr(cg, n, 1) : NULL, train ? cg_optr(cg, n, 2) : NULL};
    for (int k = 6; k < 8; k++)
        if (!v[k]) v[k] = LLVMConstNull(cg->pf);
    LLVMValueRef vv[BN_VALS + CHAIN_MAXP + 1] = {v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7],
                                                ci64(cg, nb), ci64(cg, c), ci64(cg, hw), ci64(cg, xs),
                                                LLVMConstNull(cg->pf), ci64(cg, 0), ci64(cg, 0), LLVMConstNull(cg->pf)};
    int nv = BN_VALS + chain_vals(cg, after, vv + BN_VALS);
    unsigned eb, mb;
    memcpy(&eb, &eps, 4);
    memcpy(&mb, &mom, 4);
    char key[160], sig[128] = "";
    if (after) cg_chain_key(after, sig, sizeof sig);
    snprintf(key, sizeof key, "bn%d_%08x_%08x%s%s", n->attr.bn.mode, eb, mb, after && after->head_out ? "y" : "", sig);
    Par P;
    LLVMValueRef b, e;
    if (!par_begin_shared(cg, &P, key, vv, nv, ci64(cg, c), &b, &e)) {
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
    Src x = {.p = v[0], .is = vv[11]};
    Loop lc, li, lj;
    LLVMValueRef ch = for_begin(cg, &lc, b, e, 1);
    LLVMValueRef g = ld(cg, v[1], ch), bt = ld(cg, v[2], ch);
    LLVMValueRef tmean, tinv;
    if (train) {
        LLVMValueRef mean = LLVMBuildFDiv(cg->b, reduce_channel(cg, R_SUM, &x, NULL, ch, NB, C, HW), Mf, "");
        tmean = ftrunc(cg, mean);
        LLVMValueRef var_ = LLVMBuildFDiv(cg->b, reduce_channel(cg, R_SQDEV, &x, tmean, ch, NB, C, HW), Mf, "");
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
    } else if (apply) {   /* the statistics the training batch norm saved */
        tmean = ld(cg, v[3], ch);
        tinv = ld(cg, v[4], ch);
    } else {
        tmean = ld(cg, v[3], ch);
        LLVMValueRef inv = LLVMBuildFDiv(cg->b, cf64(cg, 1.0),
                                         call1(cg, "llvm.sqrt", cg->f64,
                                               LLVMBuildFAdd(cg->b, fext(cg, ld(cg, v[4], ch)), cf64(cg, (double)eps), "")), "");
        tinv = ftrunc(cg, inv);
    }
    LLVMValueRef i = for_begin(cg, &li, ci64(cg, 0), NB, 1);
    LLVMValueRef off = mul(cg, add(cg, mul(cg, i, C), ch), HW);
    LLVMValueRef xp = gep(cg, v[0], src_row(cg, &x, i, ch, C, HW)), yp = gep(cg, v[5], off);
    LLVMValueRef j = for_begin(cg, &lj, ci64(cg, 0), HW, 1);
    LLVMValueRef y = f_add(cg, f_mul(cg, f_mul(cg, g, f_sub(cg, ld(cg, xp, j), tmean)), tinv), bt);
    if (!after || after->head_out) st(cg, y, yp, j);
    if (after) cg_chain_eval(cg, after, vv + BN_VALS, vv[BN_VALS + after->np], y, add(cg, off, j), 0, 1);
    for_end(cg, &lj);
    for_end(cg, &li);
    for_end(cg, &lc);
    par_end(cg, &P);
}

void cg_emit_batchnorm_bwd(Cg *cg, const IrNode *n, const Chain *dyc, const IrNode *acc, const IrNode *sign) {
    /* (dy, x, gamma, mean, invstd) -> dx, dgamma, dbeta */
    if (cg->p->sync_bn && !dyc && !acc && !sign) {
        emit_syncbn(cg, n, 1);
        return;
    }
    const IrType *t = ir_type(&cg->p->g, n->in[1]);
    int64_t nb = cg->p->batch, c = t->d[1], hw = cg_numel(cg, n->in[1]) / (nb * c);
    int64_t xs, gs = c * hw, ds = c * hw;
    LLVMValueRef g0 = LLVMConstNull(cg->pf), dx = acc ? cg_vptr_img(cg, acc->out[0], &ds) : cg_optr(cg, n, 0);
    if (acc) g0 = cg_vptr_img(cg, acc->in[0], &gs);
    LLVMValueRef v[8] = {dyc ? LLVMConstNull(cg->pf) : cg_vptr(cg, n->in[0]), cg_vptr_img(cg, n->in[1], &xs),
                         cg_vptr(cg, n->in[2]), cg_vptr(cg, n->in[3]), cg_vptr(cg, n->in[4]), dx,
                         cg_optr(cg, n, 1), cg_optr(cg, n, 2)};
    for (int k = 5; k < 8; k++)
        if (!v[k]) v[k] = LLVMConstNull(cg->pf);
    LLVMValueRef vv[BN_VALS + CHAIN_MAXP + 1] = {v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7],
                                                ci64(cg, nb), ci64(cg, c), ci64(cg, hw), ci64(cg, xs),
                                                g0, ci64(cg, gs), ci64(cg, ds),
                                                sign ? cg_vptr(cg, sign->in[2]) : LLVMConstNull(cg->pf)};
    int nv = BN_VALS + chain_vals(cg, dyc, vv + BN_VALS);
    char key[160], sig[128] = "";
    if (dyc) cg_chain_key(dyc, sig, sizeof sig);
    snprintf(key, sizeof key, "bnbwd%s%s%s", acc ? "acc" : "", sign ? "sign" : "", sig);
    Par P;
    LLVMValueRef b, e;
    if (!par_begin_shared(cg, &P, key, vv, nv, ci64(cg, c), &b, &e)) {
        par_end(cg, &P);
        return;
    }
    memcpy(v, vv, sizeof v);
    LLVMValueRef NB = vv[8], C = vv[9], HW = vv[10];
    LLVMValueRef Mf = LLVMBuildSIToFP(cg->b, mul(cg, NB, HW), cg->f64, "");
    /* dy: the chain in the sums' pass (storing what it must), then the
     * stored gradient when the chain stores it, else the chain again */
    Src x = {.p = v[1], .is = vv[11]}, dy1 = {.p = v[0]}, dy = dy1;
    if (dyc) {
        LLVMValueRef *cp = vv + BN_VALS;
        int last = dyc->out[dyc->nops - 1];
        dy1 = (Src){.c = dyc, .cp = cp, .key = cp[dyc->np], .store = 1};
        dy = last >= 0 ? (Src){.p = cp[last]} : (Src){.c = dyc, .cp = cp, .key = cp[dyc->np]};
    }
    Loop lc, li, lj;
    LLVMValueRef ch = for_begin(cg, &lc, b, e, 1);
    LLVMValueRef meanf = ld(cg, v[3], ch), invf = ld(cg, v[4], ch);
    LLVMValueRef mean = fext(cg, meanf), inv = fext(cg, invf);
    Sign sg = {sign ? ld(cg, v[2], ch) : NULL, sign ? ld(cg, vv[15], ch) : NULL, meanf, invf};
    const Sign *sgp = sign ? &sg : NULL;
    LLVMValueRef sdy, sdyx;
    reduce_channel_pair(cg, &x, &dy1, meanf, ch, NB, C, HW, sgp, &sdy, &sdyx);
    sdyx = LLVMBuildFMul(cg->b, sdyx, inv, "");
    LLVMValueRef scale = LLVMBuildFDiv(cg->b, LLVMBuildFMul(cg->b, fext(cg, ld(cg, v[2], ch)), inv, ""), Mf, "");
    If f;
    if_begin(cg, &f, LLVMBuildIsNotNull(cg->b, v[5], ""));
    LLVMValueRef i = for_begin(cg, &li, ci64(cg, 0), NB, 1);
    LLVMValueRef off = mul(cg, add(cg, mul(cg, i, C), ch), HW);
    Src gsrc = {.p = vv[12], .is = vv[13]}, dsrc = {.p = v[5], .is = vv[14]};
    LLVMValueRef xp = gep(cg, v[1], src_row(cg, &x, i, ch, C, HW)), dp = gep(cg, v[5], src_row(cg, &dsrc, i, ch, C, HW));
    LLVMValueRef gp = acc ? gep(cg, vv[12], src_row(cg, &gsrc, i, ch, C, HW)) : NULL;
    /* vw elements at a time, then the row's tail one by one: the same
     * operations in double on each element, so the same bits either way */
    LLVMValueRef nvec = LLVMBuildAnd(cg->b, HW, ci64(cg, -cg->vw), "");
    for (int vec = 1; vec >= 0; vec--) {
        LLVMTypeRef dt = vec ? LLVMVectorType(cg->f64, (unsigned)cg->vw) : cg->f64;
        LLVMValueRef dm = dsplat(cg, mean, vec), di = dsplat(cg, inv, vec), dM = dsplat(cg, Mf, vec);
        LLVMValueRef dsy = dsplat(cg, sdy, vec), dsx = dsplat(cg, sdyx, vec), dsc = dsplat(cg, scale, vec);
        LLVMValueRef j = for_begin(cg, &lj, vec ? ci64(cg, 0) : nvec, vec ? nvec : HW, vec ? cg->vw : 1);
        LLVMValueRef xj = vec ? vld(cg, xp, j) : ld(cg, xp, j), hd = dy.c ? sign_of(cg, sgp, xj, vec) : NULL;
        LLVMValueRef xhat = LLVMBuildFMul(cg->b, LLVMBuildFSub(cg->b, LLVMBuildFPExt(cg->b, xj, dt, ""), dm, ""), di, "");
        LLVMValueRef tt = LLVMBuildFSub(
            cg->b, LLVMBuildFMul(cg->b, dM, LLVMBuildFPExt(cg->b, src_ld(cg, &dy, off, j, vec, hd), dt, ""), ""), dsy, "");
        tt = LLVMBuildFSub(cg->b, tt, LLVMBuildFMul(cg->b, xhat, dsx, ""), "");
        LLVMValueRef dxv = LLVMBuildFPTrunc(cg->b, LLVMBuildFMul(cg->b, dsc, tt, ""), vec ? cg->vf : cg->f32, "");
        if (acc) dxv = f_add(cg, vec ? vld(cg, gp, j) : ld(cg, gp, j), dxv);   /* accum's g + dx */
        (vec ? vst : st)(cg, dxv, dp, j);
        for_end(cg, &lj);
    }
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
