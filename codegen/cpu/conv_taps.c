/* conv_taps.c - convs of few input channels computed directly, by taps,
 * with no im2col: the forward product and the weight gradient. */
#include "gemm_internal.h"

#include <stdio.h>

/* ---- convolutions of few input channels --------------------------------------
 * The first conv of a network (one input channel here: AlexNet's and NiN's
 * 11x11 at stride 4, GoogLeNet's and ResNet-18's 7x7 at stride 2, VGG's
 * 3x3 at stride 1) multiplies each im2col element by the K output channels
 * only, so packing it costs more than the products (VGG-11's first weight
 * gradient by GEMM: 121 ms of a 1717 ms step; by taps: 40 ms).  Computed directly instead, image by
 * image: the image's padded input split into its sw column phases,
 * xs[c][phase][row][j] = x_pad[c][row][phase + sw*j], so that tap (r, s) of
 * 2V consecutive outputs of a row is two contiguous vectors of a phase
 * plane; the forward product keeps 6 channels x 2V outputs in registers
 * (5 or 4 when that divides K: no remainder body) and does per tap two
 * loads, six weight broadcasts and twelve FMAs; the weight gradient keeps
 * 2 to 4 channels (4 with AVX-512) x 4 taps of a kernel row in registers, per V outputs
 * three dy loads and four x loads for twelve FMAs, over blocks of
 * TAPS_PB rows, its V lanes summed at the end.  The weight gradient splits
 * the batch into TAPS_CHUNKS fixed chunks summed in order: the same bits
 * for any thread count.  The bias is added after the taps' sum, as the
 * GEMM paths do (ResNet-18's step check, its first conv followed by batch
 * norm, failed with the bias summed first).  No data gradient (the
 * GEMM paths keep it: a first conv has none). */
enum { TAPS_KB = 6, TAPS_CHUNKS = 16, TAPS_PB = 8 };

static int64_t taps_ws(const ConvDims *d) { return d->q + (d->s - 1) / d->sw; }
static int64_t taps_xs(const ConvDims *d) { return cg_round16(d->c * d->sw * (d->h + 2 * d->ph) * taps_ws(d)); }

/* Convs of at most 4 input channels on rows of 32 outputs or more (two
 * vectors of 16 lanes), the phase planes within 1 MB. */
int cg_conv_taps(const ConvDims *d) {
    return d->c <= 4 && d->q >= 32 && taps_xs(d) <= (1 << 18);
}

/* xs = image n's phase planes (see above), zero outside x */
static void taps_split(Cg *cg, const ConvDims *d, LLVMValueRef x, LLVMValueRef n, LLVMValueRef xs) {
    int64_t hp = d->h + 2 * d->ph, ws = taps_ws(d);
    Loop lp, li, lj;
    LLVMValueRef pl = for_begin(cg, &lp, ci64(cg, 0), ci64(cg, d->c * d->sw), 1);
    LLVMValueRef c = sdiv(cg, pl, ci64(cg, d->sw)), ph = srem(cg, pl, ci64(cg, d->sw));
    LLVMValueRef src = gep(cg, x, mulc(cg, add(cg, mulc(cg, n, d->c), c), d->h * d->w));
    LLVMValueRef i = for_begin(cg, &li, ci64(cg, 0), ci64(cg, hp), 1);
    LLVMValueRef ih = addc(cg, i, -d->ph), okh = in_range(cg, ih, d->h);
    LLVMValueRef dst = gep(cg, xs, add(cg, mulc(cg, pl, hp * ws), mulc(cg, i, ws)));
    LLVMValueRef j = for_begin(cg, &lj, ci64(cg, 0), ci64(cg, ws), 1);
    LLVMValueRef iw = add(cg, addc(cg, ph, -d->pw), mulc(cg, j, d->sw));
    LLVMValueRef ok = and1(cg, okh, in_range(cg, iw, d->w));
    LLVMValueRef at = LLVMBuildSelect(cg->b, ok, add(cg, mulc(cg, ih, d->w), iw), ci64(cg, 0), "");
    st(cg, LLVMBuildSelect(cg->b, ok, ld(cg, src, at), cf32(cg, 0), ""), dst, j);
    for_end(cg, &lj);
    for_end(cg, &li);
    for_end(cg, &lp);
}

/* x's 2V outputs of row p from column q0, tap (r, s) of channel c: at xs +
 * taps_at() */
static LLVMValueRef taps_at(Cg *cg, const ConvDims *d, LLVMValueRef c, int64_t s, LLVMValueRef row, LLVMValueRef q0) {
    int64_t hp = d->h + 2 * d->ph, ws = taps_ws(d);
    LLVMValueRef pl = addc(cg, mulc(cg, c, d->sw), s % d->sw);
    return add(cg, mulc(cg, pl, hp * ws), add(cg, mulc(cg, row, ws), addc(cg, q0, s / d->sw)));
}

/* Channels per block: the largest divisor of K from kmax down to kmax - 2,
 * else kmax and a remainder block. */
static int taps_kb(int64_t k, int kmax) {
    for (int kb = kmax; kb >= kmax - 2 && kb >= 1; kb--)
        if (k % kb == 0) return kb;
    return kmax;
}

/* The loops' trip counts, passed to the bodies as values rather than
 * constants: LLVM would unroll the short ones (compile time) */
enum { TL_C, TL_R, TL_P, TL_STRIPS, TL_KFULL, TL_COUNT };

static void taps_limits(Cg *cg, const ConvDims *d, int64_t strips, int64_t kfull, LLVMValueRef *lim) {
    lim[TL_C] = ci64(cg, d->c);
    lim[TL_R] = ci64(cg, d->r);
    lim[TL_P] = ci64(cg, d->p);
    lim[TL_STRIPS] = ci64(cg, strips);
    lim[TL_KFULL] = ci64(cg, kfull);
}

/* y[n, k0 .. k0+kb, p, q0 .. q0+2V] */
static void taps_fwd_block(Cg *cg, const ConvDims *d, LLVMValueRef xs, LLVMValueRef w, LLVMValueRef y, LLVMValueRef bias,
                           LLVMValueRef n, LLVMValueRef p, LLVMValueRef k0, LLVMValueRef q0, const LLVMValueRef *lim, int kb) {
    int V = cg->vw;
    int64_t rs = d->r * d->s;
    LLVMValueRef fma = cg_intrinsic(cg, "llvm.fma", &cg->vf, 1);
    LLVMValueRef acc[TAPS_KB][2];
    for (int i = 0; i < kb; i++)
        for (int h = 0; h < 2; h++) acc[i][h] = var(cg, cg->vf, LLVMConstNull(cg->vf));
    Loop lc, lr;
    LLVMValueRef c = for_begin(cg, &lc, ci64(cg, 0), lim[TL_C], 1);
    LLVMValueRef r = for_begin(cg, &lr, ci64(cg, 0), lim[TL_R], 1);
    LLVMValueRef row = add(cg, mulc(cg, p, d->sh), r);
    LLVMValueRef wrow = gep(cg, w, add(cg, mulc(cg, add(cg, mulc(cg, k0, d->c), c), rs), mulc(cg, r, d->s)));
    LLVMValueRef a[TAPS_KB][2];
    for (int i = 0; i < kb; i++)
        for (int h = 0; h < 2; h++) a[i][h] = get(cg, acc[i][h]);
    for (int64_t s = 0; s < d->s; s++) {
        LLVMValueRef at = taps_at(cg, d, c, s, row, q0);
        LLVMValueRef xv[2] = {vld(cg, xs, at), vld(cg, xs, addc(cg, at, V))};
        for (int i = 0; i < kb; i++) {
            LLVMValueRef wv = splat(cg, ld(cg, wrow, ci64(cg, i * d->c * rs + s)));
            for (int h = 0; h < 2; h++) a[i][h] = cg_call(cg, fma, (LLVMValueRef[]){wv, xv[h], a[i][h]}, 3);
        }
    }
    for (int i = 0; i < kb; i++)
        for (int h = 0; h < 2; h++) set(cg, acc[i][h], a[i][h]);
    for_end(cg, &lr);
    for_end(cg, &lc);
    LLVMValueRef yrow = gep(cg, y, add(cg, mulc(cg, add(cg, mulc(cg, n, d->k), k0), d->p * d->q), add(cg, mulc(cg, p, d->q), q0)));
    for (int i = 0; i < kb; i++) {
        LLVMValueRef b0 = splat(cg, bias ? ld(cg, bias, addc(cg, k0, i)) : cf32(cg, 0));
        for (int h = 0; h < 2; h++)
        {
            LLVMValueRef o = LLVMBuildFAdd(cg->b, get(cg, acc[i][h]), b0, "");
            vst(cg, cg->relu ? cg_relu(cg, o) : o, yrow, ci64(cg, i * d->p * d->q + h * V));
        }
    }
}

/* y = conv(x, w) (+ bias), one task per image; scr: the threads' scratch */
void cg_taps_fwd(Cg *cg, const ConvDims *d, int64_t nb, LLVMValueRef w, LLVMValueRef x, LLVMValueRef y,
                     LLVMValueRef bias, LLVMValueRef scr) {
    int V = cg->vw, kb = taps_kb(d->k, TAPS_KB);
    /* strips of 2V outputs; the last one ends at Q (overlapping its
     * predecessor, whose outputs it recomputes to the same bits) */
    int64_t ns = (d->q + 2 * V - 1) / (2 * V), kfull = d->k / kb * kb;
    LLVMValueRef v[5 + TL_COUNT] = {w, x, y, bias ? bias : LLVMConstNull(cg->pf), scr};
    taps_limits(cg, d, ns, kfull, v + 5);
    /* one body for the train and eval programs' copies of the conv: the
     * key names every constant it holds */
    char key[160];
    snprintf(key, sizeof key, "taps_%lld_%lld_%lld_%lld_%lld_%lld_%lld_%lld_%lld_%lld_%lld_%lld_%lld_%d", (long long)d->c,
             (long long)d->h, (long long)d->w, (long long)d->k, (long long)d->r, (long long)d->s, (long long)d->sh,
             (long long)d->sw, (long long)d->ph, (long long)d->pw, (long long)d->p, (long long)d->q, (long long)nb,
             (bias != NULL) + 2 * cg->relu);
    Par P;
    LLVMValueRef b, e;
    if (!par_begin_shared(cg, &P, key, v, 5 + TL_COUNT, ci64(cg, nb), &b, &e)) {
        par_end(cg, &P);
        return;
    }
    /* for size: LLVM unswitched its loops on the trip counts, doubling the
     * body for no speed (the weight gradient's likewise) */
    cg_fn_attr(cg, P.body, "optsize");
    LLVMValueRef xs = cg_thread_scratch(cg, v[4], cg_gemm_scratch_floats(cg)), *lim = v + 5;
    LLVMValueRef bp = bias ? v[3] : NULL;
    Loop li, lp, lk, ls;
    LLVMValueRef n = for_begin(cg, &li, b, e, 1);
    taps_split(cg, d, v[1], n, xs);
    LLVMValueRef p = for_begin(cg, &lp, ci64(cg, 0), lim[TL_P], 1);
    for (int part = 0; part < 2; part++) {
        int kk = part == 0 ? kb : (int)(d->k - kfull);
        if (kk == 0 || (part == 0 && kfull == 0)) continue;
        LLVMValueRef k0 = part == 0 ? for_begin(cg, &lk, ci64(cg, 0), lim[TL_KFULL], kb) : ci64(cg, kfull);
        LLVMValueRef t = for_begin(cg, &ls, ci64(cg, 0), lim[TL_STRIPS], 1);
        LLVMValueRef q0 = imin(cg, mulc(cg, t, 2 * V), ci64(cg, d->q - 2 * V));
        taps_fwd_block(cg, d, xs, v[0], v[2], bp, n, p, k0, q0, lim, kk);
        for_end(cg, &ls);
        if (part == 0) for_end(cg, &lk);
    }
    for_end(cg, &lp);
    for_end(cg, &li);
    par_end(cg, &P);
}

/* the weight gradient's blocks: up to TAPS_KB2 channels (one less on AVX2) x
 * TAPS_SG taps of a kernel row in registers, a dy load per channel and
 * TAPS_SG loads of x per 12 (AVX2) or 16 FMAs
 * (one channel x 7 taps: 8 loads per 7 FMAs, 1.3x slower) */
enum { TAPS_KB2 = 4, TAPS_SG = 4 };

int64_t cg_taps_bwdw_extra(const Cg *cg, const ConvDims *d) {
    return cg_round16(TAPS_CHUNKS * d->k * d->c * d->r * d->s * cg->vw);
}

/* part[((k0+i)*C + c)*RS + r*S + s][V] += the V lanes of sum over row p and
 * the strips of image n of dy[n, k0+i, p, q] x_pad[n, c, p*sh + r, q*sw + s] */
static void taps_bwdw_block(Cg *cg, const ConvDims *d, LLVMValueRef xs, LLVMValueRef dy, LLVMValueRef part, LLVMValueRef n,
                            LLVMValueRef k0, LLVMValueRef c, LLVMValueRef r, LLVMValueRef pb, const LLVMValueRef *lim, int kb,
                            int64_t s0, int64_t s1) {
    int V = cg->vw;
    int64_t pq = d->p * d->q, rs = d->r * d->s, full = d->q / V;
    LLVMValueRef fma = cg_intrinsic(cg, "llvm.fma", &cg->vf, 1);
    LLVMValueRef acc[TAPS_KB2][TAPS_SG];
    for (int i = 0; i < kb; i++)
        for (int64_t s = s0; s < s1; s++) acc[i][s - s0] = var(cg, cg->vf, LLVMConstNull(cg->vf));
    Loop lp, lq;
    LLVMValueRef p = for_begin(cg, &lp, pb, imin(cg, addc(cg, pb, TAPS_PB), lim[TL_P]), 1);
    LLVMValueRef row = add(cg, mulc(cg, p, d->sh), r);
    LLVMValueRef dyrow = gep(cg, dy, add(cg, mulc(cg, add(cg, mulc(cg, n, d->k), k0), pq), mulc(cg, p, d->q)));
    /* full strips of V, then (Q % V) the last V outputs with the lanes
     * already counted zeroed */
    for (int tail = 0; tail < 2; tail++) {
        if (tail && d->q % V == 0) break;
        LLVMValueRef q0 = tail ? ci64(cg, d->q - V) : mulc(cg, for_begin(cg, &lq, ci64(cg, 0), lim[TL_STRIPS], 1), V);
        LLVMValueRef keep = NULL;
        if (tail) {
            LLVMValueRef m[16];
            for (int l = 0; l < V; l++) m[l] = LLVMConstInt(cg->i1, d->q - V + l >= full * V, 0);
            keep = LLVMConstVector(m, (unsigned)V);
        }
        LLVMValueRef a[TAPS_KB2][TAPS_SG], dv[TAPS_KB2];
        for (int i = 0; i < kb; i++) {
            dv[i] = vld(cg, dyrow, add(cg, ci64(cg, i * pq), q0));
            if (keep) dv[i] = LLVMBuildSelect(cg->b, keep, dv[i], LLVMConstNull(cg->vf), "");
            for (int64_t s = s0; s < s1; s++) a[i][s - s0] = get(cg, acc[i][s - s0]);
        }
        for (int64_t s = s0; s < s1; s++) {
            LLVMValueRef xv = vld(cg, xs, taps_at(cg, d, c, s, row, q0));
            for (int i = 0; i < kb; i++) a[i][s - s0] = cg_call(cg, fma, (LLVMValueRef[]){dv[i], xv, a[i][s - s0]}, 3);
        }
        for (int i = 0; i < kb; i++)
            for (int64_t s = s0; s < s1; s++) set(cg, acc[i][s - s0], a[i][s - s0]);
        if (!tail) for_end(cg, &lq);
    }
    for_end(cg, &lp);
    for (int i = 0; i < kb; i++) {
        LLVMValueRef o = mulc(cg, add(cg, mulc(cg, addc(cg, k0, i), d->c * rs), add(cg, mulc(cg, c, rs), mulc(cg, r, d->s))), V);
        for (int64_t s = s0; s < s1; s++) {
            LLVMValueRef at = addc(cg, o, s * V);
            vst(cg, LLVMBuildFAdd(cg->b, vld(cg, part, at), get(cg, acc[i][s - s0]), ""), part, at);
        }
    }
}

/* dw = the weight gradient of conv d; scr: cg_taps_bwdw_extra() shared floats
 * (the chunks' partial sums), then the threads' scratch */
void cg_taps_bwdw(Cg *cg, const ConvDims *d, int64_t nb, LLVMValueRef dy, LLVMValueRef x, LLVMValueRef dw,
                      LLVMValueRef scr) {
    /* 4 channels on AVX-512 (16 accumulators of its 32 registers; ResNet-18's
     * first weight gradient 30-32 -> 27-28 ms), 3 on AVX2 */
    int V = cg->vw, kb = taps_kb(d->k, V >= 16 ? TAPS_KB2 : TAPS_KB2 - 1);
    int64_t crs = d->c * d->r * d->s, nch = nb < TAPS_CHUNKS ? nb : TAPS_CHUNKS, kfull = d->k / kb * kb;
    {
        LLVMValueRef v[3 + TL_COUNT] = {dy, x, scr}, *lim = v + 3;
        taps_limits(cg, d, d->q / V, kfull, lim);
        Par P;
        LLVMValueRef b, e;
        par_begin(cg, &P, v, 3 + TL_COUNT, ci64(cg, nch), &b, &e);
        cg_fn_attr(cg, P.body, "optsize");
        LLVMValueRef xs = cg_thread_scratch(cg, gep(cg, v[2], ci64(cg, cg_taps_bwdw_extra(cg, d))), cg_gemm_scratch_floats(cg));
        Loop lt, li, lb, lk, lc, lr;
        LLVMValueRef t = for_begin(cg, &lt, b, e, 1);
        LLVMValueRef part = gep(cg, v[2], mulc(cg, t, d->k * crs * V));
        cg_memset0(cg, part, ci64(cg, d->k * crs * V));
        LLVMValueRef n0 = sdiv(cg, mulc(cg, t, nb), ci64(cg, nch)), n1 = sdiv(cg, mulc(cg, addc(cg, t, 1), nb), ci64(cg, nch));
        LLVMValueRef n = for_begin(cg, &li, n0, n1, 1);
        taps_split(cg, d, v[1], n, xs);
        LLVMValueRef pb = for_begin(cg, &lb, ci64(cg, 0), lim[TL_P], TAPS_PB);
        for (int pt = 0; pt < 2; pt++) {
            int kk = pt == 0 ? kb : (int)(d->k - kfull);
            if (kk == 0 || (pt == 0 && kfull == 0)) continue;
            LLVMValueRef k0 = pt == 0 ? for_begin(cg, &lk, ci64(cg, 0), lim[TL_KFULL], kb) : ci64(cg, kfull);
            LLVMValueRef c = for_begin(cg, &lc, ci64(cg, 0), lim[TL_C], 1);
            LLVMValueRef r = for_begin(cg, &lr, ci64(cg, 0), lim[TL_R], 1);
            for (int64_t s0 = 0; s0 < d->s; s0 += TAPS_SG)
                taps_bwdw_block(cg, d, xs, v[0], part, n, k0, c, r, pb, lim, kk, s0, s0 + TAPS_SG < d->s ? s0 + TAPS_SG : d->s);
            for_end(cg, &lr);
            for_end(cg, &lc);
            if (pt == 0) for_end(cg, &lk);
        }
        for_end(cg, &lb);
        for_end(cg, &li);
        for_end(cg, &lt);
        par_end(cg, &P);
    }
    /* dw[i] = the chunks' lanes summed, chunk by chunk */
    LLVMValueRef v[2] = {dw, scr};
    Par P;
    LLVMValueRef b, e;
    par_begin(cg, &P, v, 2, ci64(cg, d->k * crs), &b, &e);
    Loop li, lt;
    LLVMValueRef i = for_begin(cg, &li, b, e, 1);
    LLVMValueRef s = var(cg, cg->f32, cf32(cg, 0));
    LLVMValueRef t = for_begin(cg, &lt, ci64(cg, 0), ci64(cg, nch), 1);
    set(cg, s, LLVMBuildFAdd(cg->b, get(cg, s), hsum(cg, vld(cg, v[1], add(cg, mulc(cg, t, d->k * crs * V), mulc(cg, i, V)))), ""));
    for_end(cg, &lt);
    st(cg, get(cg, s), v[0], i);
    for_end(cg, &li);
    par_end(cg, &P);
}
