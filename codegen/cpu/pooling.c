/* pooling.c - max and average pooling (windows: forward and backward) and
 * global pooling (a whole plane per output), for cg_emit_node.  Max pools
 * take the first maximum of a window, NaN winning, as
 * codegen/ref_kernels.inc does; their backward kernels add dy at those
 * argmaxes, in output order. */
#include "cg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

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

/* dx[bi] += g where bi (-1: none) is a window's argmax; with relu (the
 * relu_bwd of pool_relu_bwd after it) g is 0 where the input there, the
 * relu's output, is not positive: every window adding to that element
 * adds 0 to the +0 it started as, which is relu_bwd's select of 0 (a
 * select, not a branch: the sign is a coin toss to the predictor). */
static void scatter_add(Cg *cg, LLVMValueRef dx, LLVMValueRef bi, LLVMValueRef g, LLVMValueRef xsrc, int relu) {
    If f;
    if_begin(cg, &f, icmp(cg, LLVMIntSGE, bi, ci64(cg, 0)));
    if (relu) g = sel(cg, fcmp(cg, LLVMRealOGT, ld(cg, xsrc, bi), cf32(cg, 0)), g, cf32(cg, 0));
    st(cg, f_add(cg, ld(cg, dx, bi), g), dx, bi);
    if_end(cg, &f);
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
                              int64_t planes, int relu) {
    int vw = cg->vw, bwd = n->op == IR_OP_MAXPOOL_BWD;
    int64_t pq = d->p * d->q, hw = d->h * d->w, ke = d->kh * d->kw, nch = (pq + vw - 1) / vw;
    /* contig: every window element k reads, in every chunk, the input at a
     * fixed distance delta[k] from the output (stride-1 pools whose output
     * is the input's size): masked loads instead of gathers */
    int contig = d->q == d->w;
    for (int64_t o = 0; o < pq && contig; o++)
        for (int64_t k = 0; k < ke; k++) {
            int64_t i = k / d->kw, j = k % d->kw, p = o / d->q, q = o % d->q;
            int64_t ih = p * d->sh - d->ph + i, iw = q * d->sw - d->pw + j;
            if (ih >= 0 && ih < d->h && iw >= 0 && iw < d->w && ih * d->w + iw != o + (i - d->ph) * d->w + (j - d->pw))
                contig = 0;
        }
    /* rowc: else, with output rows of at most vw, a chunk is an output row
     * (lanes past Q none) and window element k of lane q is read by one
     * masked load of sw*vw floats from the row at delta[k] + p*sh*W,
     * every sw-th lane kept: strided pools (GoogLeNet's 3x3 stride 2
     * between stages, 8-9 GB/s through gathers made lane by lane) */
    int rowc = !contig && d->q <= vw && d->sw * vw <= 64;
    if (rowc) nch = d->p;
    int64_t nt = nch * ke * vw;
    LLVMValueRef *tab = malloc(sizeof *tab * (size_t)nt);
    LLVMValueRef *delta = malloc(sizeof *delta * (size_t)ke);
    for (int64_t k = 0; k < ke; k++) delta[k] = ci64(cg, (k / d->kw - d->ph) * d->w + (k % d->kw - d->pw));
    for (int64_t c = 0; c < nch; c++)
        for (int64_t i = 0; i < d->kh; i++)
            for (int64_t j = 0; j < d->kw; j++)
                for (int l = 0; l < vw; l++) {
                    int64_t o = rowc ? (l < d->q ? c * d->q + l : pq) : c * vw + l, p = o / d->q, q = o % d->q;
                    int64_t ih = p * d->sh - d->ph + i, iw = q * d->sw - d->pw + j;
                    int64_t at = o < pq && ih >= 0 && ih < d->h && iw >= 0 && iw < d->w ? ih * d->w + iw : -1;
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
    LLVMValueRef v[10] = {v0[0], v0[1], v0[2], g, gd, ci64(cg, pq), ci64(cg, hw), ci64(cg, nch), ci64(cg, d->sh * d->w),
                          ci64(cg, rowc ? d->q : vw)};
    char skey[64];
    snprintf(skey, sizeof skey, "flatpool%d_%lld_%d_%lld%s", (int)n->op, (long long)ke, contig, rowc ? (long long)d->sw : 0LL,
             relu ? "_relu" : "");
    Par P;
    LLVMValueRef b, e;
    if (!par_begin_shared(cg, &P, skey, v, 10, ci64(cg, planes), &b, &e)) {
        par_end(cg, &P);
        return;
    }
    LLVMValueRef tab0 = v[3], dtab = v[4], PQ = v[5], HW = v[6], NCH = v[7], SHW = v[8], CQ = v[9];
    LLVMTypeRef vi = LLVMVectorType(cg->i32, (unsigned)vw), v64 = LLVMVectorType(cg->i64, (unsigned)vw);
    /* argmaxes of a plane: at most 512 outputs (pool_flat), rounded up to vw */
    LLVMValueRef idxbuf = bwd ? LLVMBuildBitCast(cg->b, var(cg, LLVMArrayType(cg->i64, (unsigned)(512 + vw)), NULL),
                                                 LLVMPointerType(cg->i64, 0), "")
                              : NULL;
    LLVMValueRef dk[64];
    if (contig || rowc)
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
        } else if (rowc) {
            /* lane e of the wide load is lane e / sw's when e % sw == 0;
             * lanes not read load -inf */
            int64_t s = d->sw;
            LLVMValueRef wm[64], pk[64], wn[64];
            for (int64_t el = 0; el < s * vw; el++) {
                wm[el] = ci32(cg, el % s == 0 ? (int)(el / s) : vw);
                wn[el] = cf32(cg, -INFINITY);
            }
            for (int l = 0; l < vw; l++) pk[l] = ci32(cg, (int)(l * s));
            LLVMValueRef wmask = s == 1 ? valid
                                        : LLVMBuildShuffleVector(cg->b, valid, LLVMConstNull(LLVMTypeOf(valid)),
                                                                 LLVMConstVector(wm, (unsigned)(s * vw)), "");
            LLVMValueRef at = add(cg, mul(cg, c, SHW), dk[k]), wninf = LLVMConstVector(wn, (unsigned)(s * vw));
            x = cg_masked_load(cg, LLVMBuildGEP2(cg->b, cg->f32, xsrc, &at, 1, ""), wmask, wninf);
            if (s > 1) x = LLVMBuildShuffleVector(cg->b, x, LLVMGetUndef(LLVMTypeOf(wninf)), LLVMConstVector(pk, (unsigned)vw), "");
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
    LLVMValueRef o0 = mul(cg, c, CQ);
    if (!bwd) {
        /* lanes past P*Q spill into the next planes' first outputs, which
         * this thread writes next; a chunk that would spill past the planes
         * of its range (into another thread's, or past the tensor: planes
         * smaller than a vector spill over several) stores them masked.
         * (A masked store to lines not in the cache is slow on this AMD
         * CPU: with every plane's last chunk masked, 512x6x6 planes at
         * batch 128 took 9-11 ms, 2.9 ms now.) */
        LLVMTypeRef vf = LLVMTypeOf(mx), pvf = LLVMPointerType(vf, 0);
        LLVMValueRef dst = LLVMBuildBitCast(cg->b, gep(cg, yp, o0), pvf, "");
        If fs;
        if_begin(cg, &fs, icmp(cg, LLVMIntSLE, add(cg, mul(cg, pl, PQ), addc(cg, o0, vw)), mul(cg, e, PQ)));
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
        scatter_add(cg, dx, bi, ld(cg, yp, o), xsrc, relu);
        for_end(cg, &lo);
    }
    for_end(cg, &ll);
    par_end(cg, &P);
}

/* Output row p of one plane: border windows with bounds checks, the
 * windows inside the image along the row vw at a time (max pools; rows:
 * the window rows inside the image, 0 for none known, border: p is a
 * border row) with the row's last block overlapping its predecessor, the
 * rest one by one; max pool bwd stores the row's argmaxes in one half of
 * idxbuf (by p's parity) and then adds the previous row's dy at its
 * argmaxes, from the other half: rows in order as before, the argmaxes
 * read back long after their vector stores (a scalar load of a lane just
 * stored by a vector store waits for the store to retire: ResNet-18's and
 * GoogLeNet's stem pool gradients spent a quarter of their time there). */
static void pool_scatter_row(Cg *cg, const PoolDims *d, LLVMValueRef xp, LLVMValueRef yp, LLVMValueRef xsrc,
                             LLVMValueRef p, LLVMValueRef buf, int relu) {
    Loop lq;
    LLVMValueRef q = for_begin(cg, &lq, ci64(cg, 0), ci64(cg, d->q), 1);
    LLVMValueRef bi = LLVMBuildLoad2(cg->b, cg->i64, LLVMBuildInBoundsGEP2(cg->b, cg->i64, buf, &q, 1, ""), "");
    scatter_add(cg, xp, bi, ld(cg, yp, add(cg, mulc(cg, p, d->q), q)), xsrc, relu);
    for_end(cg, &lq);
}

static LLVMValueRef row_buf(Cg *cg, const PoolDims *d, LLVMValueRef idxbuf, LLVMValueRef p) {
    LLVMValueRef at = mulc(cg, LLVMBuildAnd(cg->b, p, ci64(cg, 1), ""), d->q);
    return LLVMBuildInBoundsGEP2(cg->b, cg->i64, idxbuf, &at, 1, "");
}

static void pool_row(Cg *cg, const IrNode *n, const PoolDims *d, LLVMValueRef xp, LLVMValueRef yp, LLVMValueRef xsrc,
                     LLVMValueRef p, int64_t qlo, int64_t qhi, uint64_t rows, int border, LLVMValueRef best,
                     LLVMValueRef mx, LLVMValueRef idxbuf2, int relu) {
    int vw = cg->vw, maxp = n->op == IR_OP_MAXPOOL || n->op == IR_OP_MAXPOOL_BWD;
    Loop lq;
    LLVMValueRef q;
    LLVMValueRef idxbuf = n->op == IR_OP_MAXPOOL_BWD ? row_buf(cg, d, idxbuf2, p) : idxbuf2;
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
        If f;
        if_begin(cg, &f, icmp(cg, LLVMIntSGT, p, ci64(cg, 0)));
        LLVMValueRef pp = addc(cg, p, -1);
        pool_scatter_row(cg, d, xp, yp, xsrc, pp, row_buf(cg, d, idxbuf2, pp), relu);
        if_end(cg, &f);
    }
}

static void emit_pool(Cg *cg, const IrNode *n, const IrNode *bn, const IrNode *relu);

/* A strided y (a concat's slot) or dy (a slice of the concat's gradient)
 * through a contiguous stand-in. */
void cg_emit_pool(Cg *cg, const IrNode *n) {
    int bwd = n->op == IR_OP_MAXPOOL_BWD || n->op == IR_OP_AVGPOOL_BWD;
    cg_stage(cg, bwd ? n->in[0] : n->out[0], bwd);
    emit_pool(cg, n, NULL, NULL);
    cg_unstage(cg, !bwd);
}

/* A max pool gradient fused with what makes its input (bn) or reads its
 * output (relu), dy through a contiguous stand-in when strided. */
static int pool_bwd_fused(Cg *cg, const IrNode *n, const IrNode *bn, const IrNode *relu) {
    cg_stage(cg, n->in[0], 1);
    emit_pool(cg, n, bn, relu);
    cg_unstage(cg, 0);
    return 0;
}

int cg_emit_pool_relu(Cg *cg, const IrNode *n, const IrNode *relu) {
    if (n->op != IR_OP_MAXPOOL_BWD || relu->op != IR_OP_RELU_BWD || relu->in[0] != n->out[0] ||
        relu->in[1] != n->in[1] || !cg_inner(cg, n->out[0]) || cg_strided(cg, relu->out[0]) ||
        cg_strided(cg, n->in[1]))
        return -1;
    return pool_bwd_fused(cg, n, NULL, relu);
}

/* The largest plane a max pool gradient recomputes its input in (on the
 * worker's stack). */
enum { POOL_BN_MAX_PLANE = 16384 };

int cg_emit_pool_bn(Cg *cg, const IrNode *n, const IrNode *bn) {
    PoolDims d = pool_dims(cg, n, n->out[0], n->in[0]);
    if (n->op != IR_OP_MAXPOOL_BWD || pool_flat(&d, cg->vw) || d.h * d.w > POOL_BN_MAX_PLANE ||
        cg_strided(cg, bn->in[0]))
        return -1;
    return pool_bwd_fused(cg, n, bn, NULL);
}

/* Plane pl (channel ch) of relu(batchnorm_apply(x)) into buf, as
 * cg_emit_batchnorm and cg_relu compute it: the same bits. */
static void pool_bn_plane(Cg *cg, LLVMValueRef buf, LLVMValueRef xp, LLVMValueRef *bv, LLVMValueRef ch, int64_t hw) {
    LLVMValueRef s[4];
    for (int k = 0; k < 4; k++) s[k] = ld(cg, bv[k], ch);   /* gamma, beta, mean, invstd */
    int64_t nv = hw / cg->vw * cg->vw;
    for (int vec = 1; vec >= 0; vec--) {
        LLVMValueRef g = vec ? splat(cg, s[0]) : s[0], b = vec ? splat(cg, s[1]) : s[1];
        LLVMValueRef m = vec ? splat(cg, s[2]) : s[2], i = vec ? splat(cg, s[3]) : s[3];
        Loop l;
        LLVMValueRef j = for_begin(cg, &l, ci64(cg, vec ? 0 : nv), ci64(cg, vec ? nv : hw), vec ? cg->vw : 1);
        LLVMValueRef x = vec ? vld(cg, xp, j) : ld(cg, xp, j);
        LLVMValueRef y = cg_relu(cg, f_add(cg, f_mul(cg, f_mul(cg, g, f_sub(cg, x, m)), i), b));
        if (vec) vst(cg, y, buf, j);
        else st(cg, y, buf, j);
        for_end(cg, &l);
    }
}

static void emit_pool(Cg *cg, const IrNode *n, const IrNode *bn, const IrNode *relu) {
    int bwd = n->op == IR_OP_MAXPOOL_BWD || n->op == IR_OP_AVGPOOL_BWD;
    int xv = bwd ? n->out[0] : n->in[0], yv = bwd ? n->in[0] : n->out[0];
    PoolDims d = pool_dims(cg, n, xv, yv);
    int64_t planes = cg->p->batch * d.c, hw = d.h * d.w, pq = d.p * d.q;
    int64_t plo, phi, qlo, qhi;
    pool_inner(d.h, d.kh, d.sh, d.ph, d.p, &plo, &phi);
    pool_inner(d.w, d.kw, d.sw, d.pw, d.q, &qlo, &qhi);
    /* bn: x's batch norm and relu, made plane by plane, are the max pool
     * gradient's input (its x, gamma, beta, mean and invstd after dy, x
     * and dx) */
    LLVMValueRef v[7] = {cg_vptr(cg, n->in[0]),
                         bn ? cg_vptr(cg, bn->in[0]) : n->nin > 1 ? cg_vptr(cg, n->in[1]) : LLVMConstNull(cg->pf),
                         cg_vptr(cg, relu ? relu->out[0] : n->out[0])};
    for (int k = 0; bn && k < 4; k++) v[3 + k] = cg_vptr(cg, bn->in[k + 1]);
    Par P;
    LLVMValueRef b, e;
    char key[128];
    snprintf(key, sizeof key, "pool%s%d_%lld_%lld_%lld_%lld_%lld_%lld_%lld_%lld_%lld_%lld", bn ? "bn" : relu ? "relu" : "", (int)n->op, (long long)d.h,
             (long long)d.w, (long long)d.kh, (long long)d.kw, (long long)d.sh, (long long)d.sw, (long long)d.ph,
             (long long)d.pw, (long long)d.p, (long long)d.q);
    if ((n->op == IR_OP_MAXPOOL || n->op == IR_OP_MAXPOOL_BWD) && pool_flat(&d, cg->vw)) {
        char fkey[140];
        snprintf(fkey, sizeof fkey, "flat%s", key);
        emit_maxpool_flat(cg, n, &d, fkey, v, planes, relu != NULL);
        return;
    }
    if (!par_begin_shared(cg, &P, key, v, bn ? 7 : 3, ci64(cg, planes), &b, &e)) {
        par_end(cg, &P);
        return;
    }
    LLVMValueRef plane = bn ? LLVMBuildBitCast(cg->b, var(cg, LLVMArrayType(cg->f32, (unsigned)hw), NULL), cg->pf, "")
                            : NULL;
    LLVMValueRef best = var(cg, cg->i64, NULL), mx = var(cg, cg->f32, NULL);
    /* max pool bwd: a row's argmaxes first, then the previous row's dx[argmax]
     * += dy (keeps the scattered stores away from the loads of x), pool_row */
    LLVMValueRef idxbuf = LLVMBuildBitCast(cg->b, var(cg, LLVMArrayType(cg->i64, (unsigned)(2 * d.q)), NULL),
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
    if (bn) {
        pool_bn_plane(cg, plane, xsrc, v + 3, srem(cg, pl, ci64(cg, d.c)), hw);
        xsrc = plane;
    }
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
        pool_row(cg, n, &d, xp, yp, xsrc, p, qlo, qhi, rows, border, best, mx, idxbuf, relu != NULL);
        if (!border) for_end(cg, &lp);
    }
    if (n->op == IR_OP_MAXPOOL_BWD) {   /* the last row's dy */
        LLVMValueRef pl1 = ci64(cg, d.p - 1);
        pool_scatter_row(cg, &d, xp, yp, xsrc, pl1, row_buf(cg, &d, idxbuf, pl1), relu != NULL);
    }
    for_end(cg, &ll);
    par_end(cg, &P);
}

void cg_emit_global_pool(Cg *cg, const IrNode *n) {
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
        st(cg, f_div(cg, cg_reduce_sum(cg, gep(cg, in0, plane), hw), hwf), out, i);
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
