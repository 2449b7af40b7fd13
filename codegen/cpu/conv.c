/* conv.c - conv2d and linear nodes (forward, backward data, backward
 * weight): each product's method (Winograd, pixel pairs, by taps, or a GEMM:
 * transposed or over the padded width, or gathering im2col panels), the
 * GEMMs' shapes and the passes around them (weight flips, col2im, bias,
 * compaction, transposes). */
#include "gemm_internal.h"

#include <stdio.h>
#include <string.h>

static ConvDims conv_dims_p(const Program *p, const IrNode *n, int x, int y) {
    const IrType *tx = ir_type(&p->g, x), *ty = ir_type(&p->g, y);
    ConvDims d = {.c = tx->d[1], .h = tx->d[2], .w = tx->d[3], .k = ty->d[1],
                  .r = n->attr.conv.kh, .s = n->attr.conv.kw, .sh = n->attr.conv.sh,
                  .sw = n->attr.conv.sw, .ph = n->attr.conv.ph, .pw = n->attr.conv.pw,
                  .p = ty->d[2], .q = ty->d[3]};
    return d;
}

static ConvDims conv_dims(Cg *cg, const IrNode *n, int x, int y) { return conv_dims_p(cg->p, n, x, y); }

int cg_conv_direct(const ConvDims *d) {
    return d->r == 1 && d->s == 1 && d->sh == 1 && d->sw == 1 && d->ph == 0 && d->pw == 0;
}

/* 1x1 stride-1 unpadded: the image as one row of H*W pixels. */
static ConvDims conv_flat(ConvDims d) {
    if (cg_conv_direct(&d)) {
        d.w *= d.h;
        d.h = 1;
        d.q *= d.p;
        d.p = 1;
    }
    return d;
}

/* col2im: dx[c, ih, iw] += dcol[(c,r,s), (p,q)] over the valid window. */
static void emit_col2im(Cg *cg, const ConvDims *d, LLVMValueRef dcol, LLVMValueRef dx) {
    Loop lc, lr, ls, lp, lq;
    int64_t pq = d->p * d->q, hw = d->h * d->w;
    LLVMValueRef c = for_begin(cg, &lc, ci64(cg, 0), ci64(cg, d->c), 1);
    LLVMValueRef r = for_begin(cg, &lr, ci64(cg, 0), ci64(cg, d->r), 1);
    LLVMValueRef s = for_begin(cg, &ls, ci64(cg, 0), ci64(cg, d->s), 1);
    LLVMValueRef crs = add(cg, mulc(cg, add(cg, mulc(cg, c, d->r), r), d->s), s);
    LLVMValueRef src = gep(cg, dcol, mulc(cg, crs, pq));
    LLVMValueRef dst = gep(cg, dx, mulc(cg, c, hw));
    /* q range with 0 <= q*sw - pw + s < W: q0 = ceil((pw-s)/sw)+, q1 = floor((W-1+pw-s)/sw)+1 */
    LLVMValueRef first = sub(cg, ci64(cg, d->pw), s);
    LLVMValueRef q0 = LLVMBuildSelect(cg->b, icmp(cg, LLVMIntSLE, first, ci64(cg, 0)), ci64(cg, 0),
                                      sdiv(cg, addc(cg, first, d->sw - 1), ci64(cg, d->sw)), "");
    LLVMValueRef last = sub(cg, ci64(cg, d->w - 1 + d->pw), s);
    LLVMValueRef q1 = LLVMBuildSelect(cg->b, icmp(cg, LLVMIntSLT, last, ci64(cg, 0)), ci64(cg, 0),
                                      addc(cg, sdiv(cg, last, ci64(cg, d->sw)), 1), "");
    q1 = imin(cg, q1, ci64(cg, d->q));
    LLVMValueRef p = for_begin(cg, &lp, ci64(cg, 0), ci64(cg, d->p), 1);
    LLVMValueRef ih = add(cg, addc(cg, mulc(cg, p, d->sh), -d->ph), r);
    If f;
    if_begin(cg, &f, in_range(cg, ih, d->h));
    LLVMValueRef drow = gep(cg, dst, add(cg, mulc(cg, ih, d->w), sub(cg, s, ci64(cg, d->pw))));
    LLVMValueRef srow = gep(cg, src, mulc(cg, p, d->q));
    LLVMValueRef q = for_begin(cg, &lq, q0, q1, 1);
    LLVMValueRef di = mulc(cg, q, d->sw);
    st(cg, LLVMBuildFAdd(cg->b, ld(cg, drow, di), ld(cg, srow, q), ""), drow, di);
    for_end(cg, &lq);
    if_end(cg, &f);
    for_end(cg, &lp);
    for_end(cg, &ls);
    for_end(cg, &lr);
    for_end(cg, &lc);
}

/* p[i], or 0 when p is null (an optional bias) */
LLVMValueRef cg_ld_or0(Cg *cg, LLVMValueRef p, LLVMValueRef i) {
    LLVMValueRef v = var(cg, cg->f32, cf32(cg, 0));
    If f;
    if_begin(cg, &f, LLVMBuildIsNotNull(cg->b, p, ""));
    set(cg, v, ld(cg, p, i));
    if_end(cg, &f);
    return get(cg, v);
}

/* sum of n (i64) contiguous floats, vectorised (two accumulators, scalar tail). */
static LLVMValueRef vec_sum(Cg *cg, LLVMValueRef p, LLVMValueRef n) {
    LLVMValueRef a0 = var(cg, cg->vf, LLVMConstNull(cg->vf)), a1 = var(cg, cg->vf, LLVMConstNull(cg->vf));
    LLVMValueRef nv = LLVMBuildAnd(cg->b, n, ci64(cg, -(int64_t)(2 * cg->vw)), "");
    Loop l;
    LLVMValueRef i = for_begin(cg, &l, ci64(cg, 0), nv, 2 * cg->vw);
    set(cg, a0, LLVMBuildFAdd(cg->b, get(cg, a0), vld(cg, p, i), ""));
    set(cg, a1, LLVMBuildFAdd(cg->b, get(cg, a1), vld(cg, p, addc(cg, i, cg->vw)), ""));
    for_end(cg, &l);
    LLVMValueRef s = var(cg, cg->f32, hsum(cg, LLVMBuildFAdd(cg->b, get(cg, a0), get(cg, a1), "")));
    i = for_begin(cg, &l, nv, n, 1);
    set(cg, s, LLVMBuildFAdd(cg->b, get(cg, s), ld(cg, p, i), ""));
    for_end(cg, &l);
    return get(cg, s);
}

/* A stride-1 forward conv over the padded width (B_PADROW): worth it when
 * im2col panels would need gathers (not 1x1) and the padded columns are at
 * most a quarter of the output's (12x12 maps with padding 1: 17% more
 * multiply-adds, and still ~13% faster than gathering), or when the output
 * channels are so few that a gathered element feeds only a handful of
 * multiply-adds (LeNet's data gradient of conv1, 6 channels over a grid 33%
 * wider: 10.1 ms -> 5.7 ms).  Judged by the width padded on both sides,
 * although the grid shares a padding column between rows (cg_pad_width): by
 * the narrower grid 6x6 maps would qualify, and are 3-7% slower for it. */
static int conv_fwd_padrow(const ConvDims *d) {
    int64_t wp = d->w + 2 * d->pw, extra = wp - d->q;
    return d->sh == 1 && d->sw == 1 && !cg_conv_direct(d) && (extra * 8 <= d->q * 2 || extra * d->k <= 8 * d->q);
}

/* The padded-width conv transposed (B_PADT) when W^T fits the scratch
 * packed whole, the channels one C block, and rounding the channels up to
 * NR wastes at most a sixth more than rounding them to MR does (LeNet's
 * 6-channel convs: 6% slower by NR). */
static int padt_fits(const Cg *cg, const ConvDims *d, int64_t nr, int64_t nc) {
    int64_t kp = (d->k + nr - 1) / nr * nr, km = (d->k + MR - 1) / MR * MR;
    return kp <= nc && kp * d->c * d->r * d->s <= APK && kp * 6 <= km * 7;
}

static int conv_fwd_padt(const Cg *cg, const ConvDims *d) {
    return conv_fwd_padrow(d) && padt_fits(cg, d, NR, NC);
}

/* 1x1 stride-1 unpadded convs transposed too (B_PADT straight on x) when an
 * image has at least 36 pixels: smaller ones leave most panels across two
 * images, packed. */
static int conv_1x1_padt(const Cg *cg, const ConvDims *d) {
    return cg_conv_direct(d) && d->h * d->w >= 36 && padt_fits(cg, d, NR, NC);
}

/* The gather path with images of a pixel count that is not a multiple of
 * NR: most C tiles would span two images and take the micro-kernel's slow
 * exit (a scratch tile added element by element).  The GEMM writes a compact
 * C[K, (n, pq)] instead, copied to y[n, K, pq] (+ bias) by a second pass. */
static int conv_fwd_compact(const Cg *cg, const ConvDims *d) {
    return !conv_fwd_padrow(d) && (d->p * d->q) % NR != 0;
}

static int64_t conv_fwd_extra(const Cg *cg, const ConvDims *d, int64_t nb) {
    if (cg_conv_wino(d)) return cg_wino_extra(cg, d, nb);
    if (cg_conv_small(d)) return cg_small_extra(d, nb);
    if (cg_conv_taps(d)) return 0;
    if (conv_1x1_padt(cg, d)) return 0;
    if (conv_fwd_compact(cg, d)) return cg_round16(nb * d->k * d->p * d->q);
    if (!conv_fwd_padrow(d)) return 0;
    if (conv_fwd_padt(cg, d)) return cg_pad_floats(d, nb);
    return cg_pad_floats(d, nb) + cg_round16(nb * d->k * d->p * cg_pad_width(d));
}

/* y = conv(x, w) (+ bias[k]); scr: conv_fwd_extra() shared floats, then the
 * threads' GEMM scratch.  The gather path (B_CONV_FWD) or the padded-width
 * path: y_ext[n, k, p*Wp + q'] by one GEMM, then y = y_ext's first Q columns
 * of every row (+ bias). */
static void conv_fwd(Cg *cg, const ConvDims *d, int64_t nb, LLVMValueRef w, LLVMValueRef x, LLVMValueRef y,
                     LLVMValueRef bias, LLVMValueRef scr) {
    int64_t crs = d->c * d->r * d->s, pq = d->p * d->q, hw = d->h * d->w;
    if (cg_conv_wino(d)) {
        cg_wino_fwd(cg, d, nb, w, x, y, bias, scr);
        return;
    }
    if (cg_conv_small(d)) {
        cg_small_fwd(cg, d, nb, w, x, y, bias, scr);
        return;
    }
    if (cg_conv_taps(d)) {
        cg_taps_fwd(cg, d, nb, w, x, y, bias, scr);
        return;
    }
    if (conv_1x1_padt(cg, d)) {
        ConvDims t = {.c = d->c, .h = 1, .w = hw, .k = d->k, .r = 1, .s = 1, .sh = 1, .sw = hw, .p = 1, .q = hw};
        Gemm g = {.M = nb * hw, .N = d->k, .K = d->c, .bk = B_PADT, .b_sn = d->c, .cv = t, .ldc = d->k, .cpq = hw,
                  .cimg = d->k * hw, .ximg = d->c * hw, .beta0 = 1, .relu = cg->relu};
        cg_par_gemm(cg, &g, x, w, y, bias, scr);
        return;
    }
    if (conv_fwd_compact(cg, d)) {
        LLVMValueRef ct = scr;
        Gemm g = {.M = d->k, .N = nb * pq, .K = crs, .a_sm = crs, .a_sk = 1, .bk = B_CONV_FWD, .cv = conv_flat(*d),
                  .ldc = nb * pq, .cpq = nb * pq, .cimg = 0, .ximg = d->c * hw, .beta0 = 1};
        cg_par_gemm(cg, &g, w, x, ct, NULL, gep(cg, scr, ci64(cg, conv_fwd_extra(cg, d, nb))));
        /* y[n, k, :] = ct[k, n*pq : (n+1)*pq] (+ b[k]) */
        LLVMValueRef v[6] = {ct, y, bias ? bias : LLVMConstNull(cg->pf), ci64(cg, d->k), ci64(cg, pq), ci64(cg, nb)};
        Par P;
        LLVMValueRef b, e;
        if (par_begin_shared(cg, &P, cg->relu ? "conv_uncompact_relu" : "conv_uncompact", v, 6, ci64(cg, nb * d->k), &b, &e)) {
            LLVMValueRef K = v[3], PQ = v[4], NB = v[5];
            Loop lr, lq;
            LLVMValueRef row = for_begin(cg, &lr, b, e, 1);
            LLVMValueRef img = sdiv(cg, row, K), k = sub(cg, row, mul(cg, img, K));
            LLVMValueRef bb = cg_ld_or0(cg, v[2], k);
            LLVMValueRef src = gep(cg, v[0], add(cg, mul(cg, k, mul(cg, NB, PQ)), mul(cg, img, PQ)));
            LLVMValueRef dst = gep(cg, v[1], mul(cg, row, PQ));
            LLVMValueRef q = for_begin(cg, &lq, ci64(cg, 0), PQ, 1);
            LLVMValueRef o = LLVMBuildFAdd(cg->b, ld(cg, src, q), bb, "");
            st(cg, cg->relu ? cg_relu(cg, o) : o, dst, q);
            for_end(cg, &lq);
            for_end(cg, &lr);
        }
        par_end(cg, &P);
        return;
    }
    if (!conv_fwd_padrow(d)) {
        if (bias) {
            /* y[n, k, :] = b[k], by image */
            LLVMValueRef v[4] = {bias, y, ci64(cg, d->k), ci64(cg, pq)};
            Par P;
            LLVMValueRef b, e;
            if (par_begin_shared(cg, &P, "conv_bias", v, 4, ci64(cg, nb), &b, &e)) {
                Loop li, lk, lq;
                LLVMValueRef img = for_begin(cg, &li, b, e, 1);
                LLVMValueRef k = for_begin(cg, &lk, ci64(cg, 0), v[2], 1);
                LLVMValueRef bv = ld(cg, v[0], k);
                LLVMValueRef row = gep(cg, v[1], mul(cg, add(cg, mul(cg, img, v[2]), k), v[3]));
                LLVMValueRef q = for_begin(cg, &lq, ci64(cg, 0), v[3], 1);
                st(cg, bv, row, q);
                for_end(cg, &lq);
                for_end(cg, &lk);
                for_end(cg, &li);
            }
            par_end(cg, &P);
        }
        Gemm g = {.M = d->k, .N = nb * pq, .K = crs, .a_sm = crs, .a_sk = 1, .bk = B_CONV_FWD, .cv = conv_flat(*d),
                  .ldc = pq, .cpq = pq, .cimg = d->k * pq, .ximg = d->c * hw, .beta0 = bias == NULL, .relu = cg->relu};
        cg_par_gemm(cg, &g, w, x, y, NULL, scr);
        return;
    }
    int64_t hp = d->h + 2 * d->ph, wp = cg_pad_width(d), L = d->p * wp;
    int64_t xsz = cg_pad_floats(d, nb);
    LLVMValueRef xp = scr;
    cg_emit_pad(cg, d, nb, x, xp);
    if (conv_fwd_padt(cg, d)) {
        ConvDims t = {.c = d->c, .h = hp, .w = wp, .k = d->k, .r = d->r, .s = d->s, .sh = 1, .sw = d->q,
                      .ph = 1, .p = d->p, .q = wp};
        Gemm g = {.M = nb * L, .N = d->k, .K = crs, .bk = B_PADT, .b_sn = crs, .cv = t, .ldc = d->k,
                  .cpq = d->p * d->q, .cimg = d->k * d->p * d->q, .ximg = d->c * hp * wp, .beta0 = 1, .relu = cg->relu};
        cg_par_gemm(cg, &g, xp, w, y, bias, gep(cg, scr, ci64(cg, conv_fwd_extra(cg, d, nb))));
        return;
    }
    LLVMValueRef yext = gep(cg, scr, ci64(cg, xsz));
    ConvDims t = {.c = d->c, .h = hp, .w = wp, .k = d->k, .r = d->r, .s = d->s, .sh = 1, .sw = 1, .p = d->p, .q = wp};
    Gemm g = {.M = d->k, .N = nb * L, .K = crs, .a_sm = crs, .a_sk = 1, .bk = B_PADROW, .cv = t, .ldc = L, .cpq = L,
              .cimg = d->k * L, .ximg = d->c * hp * wp, .beta0 = 1};
    cg_par_gemm(cg, &g, w, xp, yext, NULL, gep(cg, scr, ci64(cg, conv_fwd_extra(cg, d, nb))));
    LLVMValueRef v[7] = {yext, y, bias ? bias : LLVMConstNull(cg->pf), ci64(cg, d->k), ci64(cg, d->p),
                         ci64(cg, d->q), ci64(cg, wp)};
    Par P;
    LLVMValueRef b, e;
    if (par_begin_shared(cg, &P, cg->relu ? "conv_compact_relu" : "conv_compact", v, 7, ci64(cg, nb * d->k), &b, &e)) {
        LLVMValueRef K = v[3], Pn = v[4], Q = v[5], WP = v[6];
        Loop lr, lp, lq;
        LLVMValueRef row = for_begin(cg, &lr, b, e, 1);
        LLVMValueRef bb = cg_ld_or0(cg, v[2], srem(cg, row, K));
        LLVMValueRef src = gep(cg, v[0], mul(cg, row, mul(cg, Pn, WP)));
        LLVMValueRef dst = gep(cg, v[1], mul(cg, row, mul(cg, Pn, Q)));
        LLVMValueRef p = for_begin(cg, &lp, ci64(cg, 0), Pn, 1);
        LLVMValueRef sr = gep(cg, src, mul(cg, p, WP)), dr = gep(cg, dst, mul(cg, p, Q));
        LLVMValueRef q = for_begin(cg, &lq, ci64(cg, 0), Q, 1);
        LLVMValueRef o = LLVMBuildFAdd(cg->b, ld(cg, sr, q), bb, "");
        st(cg, cg->relu ? cg_relu(cg, o) : o, dr, q);
        for_end(cg, &lq);
        for_end(cg, &lp);
        for_end(cg, &lr);
    }
    par_end(cg, &P);
}

/* The data gradient of conv d at stride 1 as a forward conv over dy padded
 * by R-1-pad (into *t), unless that padding is wide (an unpadded 5x5: the
 * padded grid is mostly zeros) or negative (pad > R-1: dy's border rows
 * feed no dx); 0 when it is not one. */
static int bwd_data_fwd(const ConvDims *d, ConvDims *t) {
    if (!(d->sh == 1 && d->sw == 1 && d->r - 1 - d->ph < 3 && d->s - 1 - d->pw < 3 && d->ph <= d->r - 1 &&
          d->pw <= d->s - 1))
        return 0;
    *t = (ConvDims){.c = d->k, .h = d->p, .w = d->q, .k = d->c, .r = d->r, .s = d->s, .sh = 1, .sw = 1,
                    .ph = d->r - 1 - d->ph, .pw = d->s - 1 - d->pw, .p = d->h, .q = d->w, .grad = 1};
    return 1;
}

static void emit_conv(Cg *cg, const IrNode *n);

/* A strided y (a concat's slot) or dy (a slice of the concat's gradient)
 * through a contiguous stand-in. */
void cg_emit_conv(Cg *cg, const IrNode *n) {
    int fwd = n->op == IR_OP_CONV2D;
    cg_stage(cg, fwd ? (cg->y_value >= 0 ? cg->y_value : n->out[0]) : n->in[0], !fwd);
    emit_conv(cg, n);
    cg_unstage(cg, fwd);
}

static void emit_conv(Cg *cg, const IrNode *n) {
    int64_t nb = cg->p->batch;
    int64_t per = cg_gemm_scratch_floats(cg);
    LLVMValueRef nt = cg_nthreads(cg);
    if (n->op == IR_OP_CONV2D) {
        int has_bias = n->attr.conv.bias && n->nin > 2;
        ConvDims d = conv_dims(cg, n, n->in[0], n->out[0]);
        LLVMValueRef x = cg_vptr(cg, n->in[0]), w = cg_vptr(cg, n->in[1]);
        LLVMValueRef y = cg_vptr(cg, cg->y_value >= 0 ? cg->y_value : n->out[0]);
        LLVMValueRef scr = cg_scratch_for_threads(cg, nt, per, conv_fwd_extra(cg, &d, nb));
        conv_fwd(cg, &d, nb, w, x, y, has_bias ? cg_vptr(cg, n->in[2]) : NULL, scr);
    } else if (n->op == IR_OP_CONV2D_BWD_DATA) {
        /* (dy, w) -> dx */
        ConvDims d = conv_dims(cg, n, n->out[0], n->in[0]);
        int64_t crs = d.c * d.r * d.s, pq = d.p * d.q, hw = d.h * d.w;
        LLVMValueRef dy = cg_vptr(cg, n->in[0]), w = cg_vptr(cg, n->in[1]), dx = cg_vptr(cg, n->out[0]);
        ConvDims fd;   /* the forward conv of dy */
        if (bwd_data_fwd(&d, &fd)) {
            /* dx = conv(dy, W'), W'[c, k, r, s] = W[k, c, R-1-r, S-1-s], padding R-1-ph */
            int64_t wsz = d.k * crs, rs = d.r * d.s;
            LLVMValueRef scr0 = cg_scratch_for_threads(cg, nt, per, cg_round16(wsz) + conv_fwd_extra(cg, &fd, nb));
            LLVMValueRef wt = scr0;
            {
                LLVMValueRef v[5] = {w, wt, ci64(cg, d.k), ci64(cg, d.c), ci64(cg, rs)};
                Par P;
                LLVMValueRef b, e;
                if (par_begin_shared(cg, &P, "conv_wflip", v, 5, ci64(cg, d.c), &b, &e)) {
                    Loop lc, lk, lx;
                    LLVMValueRef K = v[2], Cn = v[3], RS = v[4];
                    LLVMValueRef c = for_begin(cg, &lc, b, e, 1);
                    LLVMValueRef k = for_begin(cg, &lk, ci64(cg, 0), K, 1);
                    LLVMValueRef src = gep(cg, v[0], mul(cg, add(cg, mul(cg, k, Cn), c), RS));
                    LLVMValueRef dst = gep(cg, v[1], mul(cg, add(cg, mul(cg, c, K), k), RS));
                    LLVMValueRef i = for_begin(cg, &lx, ci64(cg, 0), RS, 1);
                    st(cg, ld(cg, src, sub(cg, addc(cg, RS, -1), i)), dst, i);
                    for_end(cg, &lx);
                    for_end(cg, &lk);
                    for_end(cg, &lc);
                }
                par_end(cg, &P);
            }
            conv_fwd(cg, &fd, nb, wt, dy, dx, NULL, gep(cg, scr0, ci64(cg, cg_round16(wsz))));
        } else {
            /* dcol[n][CRS, PQ] = W^T dy_n for the whole batch in one GEMM (dy seen
             * as 1x1 images), then dx_n = col2im(dcol[n]) by image */
            int64_t dsz = nb * crs * pq;
            LLVMValueRef scr0 = cg_scratch_for_threads(cg, nt, per, dsz);
            LLVMValueRef dcol = scr0;
            ConvDims t = {.c = d.k, .h = 1, .w = pq, .k = crs, .r = 1, .s = 1, .sh = 1, .sw = 1,
                          .ph = 0, .pw = 0, .p = 1, .q = pq};
            Gemm g = {.M = crs, .N = nb * pq, .K = d.k, .a_sm = 1, .a_sk = crs, .bk = B_CONV_FWD, .cv = t,
                      .ldc = pq, .cpq = pq, .cimg = crs * pq, .ximg = d.k * pq, .beta0 = 1};
            cg_par_gemm(cg, &g, w, dy, dcol, NULL, gep(cg, scr0, ci64(cg, cg_round16(dsz))));
            LLVMValueRef v[2] = {dcol, dx};
            Par P;
            LLVMValueRef b, e;
            par_begin(cg, &P, v, 2, ci64(cg, nb), &b, &e);
            Loop li;
            LLVMValueRef img = for_begin(cg, &li, b, e, 1);
            LLVMValueRef dxn = gep(cg, v[1], mulc(cg, img, d.c * hw));
            cg_memset0(cg, dxn, ci64(cg, d.c * hw));
            emit_col2im(cg, &d, gep(cg, v[0], mulc(cg, img, crs * pq)), dxn);
            for_end(cg, &li);
            par_end(cg, &P);
        }
    } else {
        /* CONV2D_BWD_WEIGHT (dy, x) -> dw[, db]: one GEMM, the batch's pixels the reduction */
        ConvDims d = conv_dims(cg, n, n->in[1], n->in[0]);
        d.grad = d.wgrad = 1;
        int64_t crs = d.c * d.r * d.s, pq = d.p * d.q, hw = d.h * d.w;
        LLVMValueRef dy = cg_vptr(cg, n->in[0]), x = cg_vptr(cg, n->in[1]), dw = cg_vptr(cg, n->out[0]);
        int64_t wpad = d.w + 2 * d.pw;
        /* per im2col element, the gather path costs about 1 + K/16 cycles, the
         * transposed one K/16 * wpad/Q (its padded columns are work, its A is
         * read in place): transposed when the padded columns add at most a
         * sixth (ResNet-18's 12x12 convs: 0.8x the time; its 6x6 ones, a
         * third more columns: 1.15-1.2x), or the channels are few; judged
         * by the width padded on both sides, as conv_fwd_padrow */
        int stride1 = d.sh == 1 && d.sw == 1;
        if (cg_conv_small(&d)) {
            cg_small_bwdw(cg, &d, nb, dy, x, dw, cg_scratch_for_threads(cg, nt, per, cg_small_bwdw_extra(&d, nb)));
        } else if (cg_conv_taps(&d)) {
            cg_taps_bwdw(cg, &d, nb, dy, x, dw, cg_scratch_for_threads(cg, nt, per, cg_taps_bwdw_extra(cg, &d)));
        } else if (cg_conv_wino(&d)) {
            LLVMValueRef scr0 = cg_scratch_for_threads(cg, nt, per, cg_wbw_extra(cg, &d, nb));
            cg_wino_bwdw(cg, &d, nb, dy, x, dw, scr0);
        } else if (((stride1 && ((wpad - d.q) * 6 <= d.q || d.k * (wpad - d.q) * 10 < d.q * 128)) || (!stride1 && d.c == 1))) {
            /* stride 1, transposed: dW^T[CRS, K] = im2col(x)[CRS, L] dy^T[L, K] over
             * the padded width: with x_pad the input zero padded to Hp x Wp,
             * row (c,r,s) of im2col at l = (n, p, q'), q' < Wp, is x_pad[n, c]
             * at r*Wp + s + p*Wp + q' - one contiguous run per image - and dy
             * is extended by zeros at q' >= Q.  The big operand packs by
             * copies; dy (few channels) is gathered, once per block. */
            int64_t hp = d.h + 2 * d.ph, wp = cg_pad_width(&d);
            int direct = d.ph == 0 && d.pw == 0 && d.s == 1;   /* x is x_pad, no overrun */
            /* strided (first layers, one input channel): the grid is the output's,
             * rows of A copied with the stride */
            int64_t gw = stride1 ? wp : d.q;
            ConvDims t = {.c = d.c, .h = hp, .w = wp, .k = d.k, .r = d.r, .s = d.s, .sh = 1, .sw = d.q,
                          .ph = d.sh, .pw = d.sw, .p = d.p, .q = gw};
            Gemm g = {.M = crs, .N = d.k, .K = nb * d.p * gw, .a_sm = hp * wp, .bk = B_DYT, .b_sn = pq, .cv = t,
                      .ldc = d.k, .aimg = d.k * pq, .ximg = d.c * hp * wp, .beta0 = 1};
            int ks = cg_gemm_ksplit(&g);
            int64_t csz = cg_round16(crs * d.k), xsz = direct ? 0 : cg_pad_floats(&d, nb);
            int64_t psz = ks ? cg_round16(KSPLIT * crs * d.k) : 0;
            LLVMValueRef scr0 = cg_scratch_for_threads(cg, nt, per, csz + xsz + psz);
            LLVMValueRef ct = scr0, xp = x;
            if (!direct) {
                xp = gep(cg, scr0, ci64(cg, csz));
                cg_emit_pad(cg, &d, nb, x, xp);
            }
            if (ks)
                cg_par_gemm_ksplit(cg, &g, xp, dy, ct, gep(cg, scr0, ci64(cg, csz + xsz)),
                                gep(cg, scr0, ci64(cg, csz + xsz + psz)));
            else
                cg_par_gemm(cg, &g, xp, dy, ct, NULL, gep(cg, scr0, ci64(cg, csz + xsz)));
            /* dW[k, crs] = C^T */
            LLVMValueRef v[4] = {ct, dw, ci64(cg, crs), ci64(cg, d.k)};
            Par P;
            LLVMValueRef b, e;
            if (par_begin_shared(cg, &P, "transpose", v, 4, ci64(cg, d.k), &b, &e)) {
                Loop lk, li;
                LLVMValueRef k = for_begin(cg, &lk, b, e, 1);
                LLVMValueRef drow = gep(cg, v[1], mul(cg, k, v[2]));
                LLVMValueRef i = for_begin(cg, &li, ci64(cg, 0), v[2], 1);
                st(cg, ld(cg, v[0], add(cg, mul(cg, i, v[3]), k)), drow, i);
                for_end(cg, &li);
                for_end(cg, &lk);
            }
            par_end(cg, &P);
        } else {
            Gemm g = {.M = d.k, .N = crs, .K = nb * pq, .a_sm = pq, .a_sk = 1, .aimg = d.k * pq, .bk = B_CONV_BWDW,
                      .cv = conv_flat(d), .ldc = crs, .ximg = d.c * hw, .beta0 = 1};
            cg_par_gemm(cg, &g, dy, x, dw, NULL, cg_scratch_for_threads(cg, nt, per, 0));
        }
        if (n->nout > 1 && n->out[1] >= 0) {
            LLVMValueRef v[5] = {dy, cg_vptr(cg, n->out[1]), ci64(cg, d.k), ci64(cg, pq), ci64(cg, nb)};
            Par P;
            LLVMValueRef b, e;
            if (par_begin_shared(cg, &P, "conv_dbias", v, 5, ci64(cg, d.k), &b, &e)) {
                Loop lk, ln;
                LLVMValueRef k = for_begin(cg, &lk, b, e, 1);
                LLVMValueRef acc = var(cg, cg->f32, cf32(cg, 0));
                LLVMValueRef im = for_begin(cg, &ln, ci64(cg, 0), v[4], 1);
                LLVMValueRef row = gep(cg, v[0], mul(cg, add(cg, mul(cg, im, v[2]), k), v[3]));
                set(cg, acc, LLVMBuildFAdd(cg->b, get(cg, acc), vec_sum(cg, row, v[3]), ""));
                for_end(cg, &ln);
                st(cg, get(cg, acc), v[1], k);
                for_end(cg, &lk);
            }
            par_end(cg, &P);
        }
    }
}

/* ---- linear ---------------------------------------------------------------- */

void cg_emit_linear(Cg *cg, const IrNode *n) {
    int64_t nb = cg->p->batch;
    int64_t in, out;
    int64_t per = cg_gemm_scratch_floats(cg);
    LLVMValueRef scr = cg_scratch_for_threads(cg, cg_nthreads(cg), per, 0);
    if (n->op == IR_OP_LINEAR) {
        in = cg_numel(cg, n->in[0]) / nb;
        out = cg_numel(cg, n->out[0]) / nb;
        int has_bias = n->attr.linear.bias && n->nin > 2;
        Gemm g = {.M = nb, .N = out, .K = in, .a_sm = in, .a_sk = 1, .bk = B_COL, .b_sk = 1, .b_sn = in, .ldc = out,
                  .beta0 = !has_bias, .relu = cg->relu};
        cg_par_gemm(cg, &g, cg_vptr(cg, n->in[0]), cg_vptr(cg, n->in[1]),
                    cg_vptr(cg, cg->y_value >= 0 ? cg->y_value : n->out[0]),
                 has_bias ? cg_vptr(cg, n->in[2]) : NULL, scr);
    } else if (n->op == IR_OP_LINEAR_BWD_DATA) {
        /* (dy, w) -> dx */
        in = cg_numel(cg, n->out[0]) / nb;
        out = cg_numel(cg, n->in[0]) / nb;
        Gemm g = {.M = nb, .N = in, .K = out, .a_sm = out, .a_sk = 1, .bk = B_ROW, .b_sk = in, .b_sn = 1, .ldc = in,
                  .beta0 = 1};
        cg_par_gemm(cg, &g, cg_vptr(cg, n->in[0]), cg_vptr(cg, n->in[1]), cg_vptr(cg, n->out[0]), NULL, scr);
    } else {
        /* (dy, x) -> dw[, db] */
        in = cg_numel(cg, n->in[1]) / nb;
        out = cg_numel(cg, n->in[0]) / nb;
        Gemm g = {.M = out, .N = in, .K = nb, .a_sm = 1, .a_sk = out, .bk = B_ROW, .b_sk = in, .b_sn = 1, .ldc = in,
                  .beta0 = 1};
        LLVMValueRef dy = cg_vptr(cg, n->in[0]);
        cg_par_gemm(cg, &g, dy, cg_vptr(cg, n->in[1]), cg_vptr(cg, n->out[0]), NULL, scr);
        if (n->nout > 1 && n->out[1] >= 0) {
            LLVMValueRef v[2] = {dy, cg_vptr(cg, n->out[1])};
            Par P;
            LLVMValueRef b, e;
            par_begin(cg, &P, v, 2, ci64(cg, out), &b, &e);
            Loop lo, li;
            LLVMValueRef o = for_begin(cg, &lo, b, e, 1);
            LLVMValueRef acc = var(cg, cg->f32, cf32(cg, 0));
            LLVMValueRef i = for_begin(cg, &li, ci64(cg, 0), ci64(cg, nb), 1);
            set(cg, acc, LLVMBuildFAdd(cg->b, get(cg, acc), ld(cg, v[0], add(cg, mulc(cg, i, out), o)), ""));
            for_end(cg, &li);
            st(cg, get(cg, acc), v[1], o);
            for_end(cg, &lo);
            par_end(cg, &P);
        }
    }
}

/* ---- batch norm folded into the weights (eval) --------------------------------- */

/* For the nk filters (rows of len floats) of w, and bias (or NULL), the
 * weights and bias that give eval batch norm bn's output directly: with s =
 * gamma / sqrt(var + eps), wf[k, :] = w[k, :] s[k] and bf[k] = (bias[k] -
 * mean[k]) s[k] + beta[k], in double.  Computed every run: the weights and
 * running statistics change with every step. */
static void emit_fold(Cg *cg, const IrNode *bn, LLVMValueRef w, LLVMValueRef bias, int64_t nk, int64_t len,
                      LLVMValueRef wf, LLVMValueRef bf) {
    LLVMValueRef v[9] = {w, bias ? bias : LLVMConstNull(cg->pf), cg_vptr(cg, bn->in[1]), cg_vptr(cg, bn->in[2]),
                         cg_vptr(cg, bn->in[3]), cg_vptr(cg, bn->in[4]), wf, bf, ci64(cg, len)};
    float eps = bn->attr.bn.eps;
    unsigned eb;
    memcpy(&eb, &eps, 4);
    char key[32];
    snprintf(key, sizeof key, "bnfold_%08x", eb);
    Par P;
    LLVMValueRef b, e;
    if (par_begin_shared(cg, &P, key, v, 9, ci64(cg, nk), &b, &e)) {
        LLVMTypeRef d = cg->f64;
        Loop lk, lj;
        LLVMValueRef k = for_begin(cg, &lk, b, e, 1);
        LLVMValueRef var_ = LLVMBuildFPExt(cg->b, ld(cg, v[5], k), d, "");
        LLVMValueRef sq = cg_call(cg, cg_intrinsic(cg, "llvm.sqrt", &d, 1),
                                  (LLVMValueRef[]){LLVMBuildFAdd(cg->b, var_, cf64(cg, (double)eps), "")}, 1);
        LLVMValueRef sc = LLVMBuildFDiv(cg->b, LLVMBuildFPExt(cg->b, ld(cg, v[2], k), d, ""), sq, "");
        LLVMValueRef b0 = LLVMBuildFPExt(cg->b, cg_ld_or0(cg, v[1], k), d, "");
        LLVMValueRef mean = LLVMBuildFPExt(cg->b, ld(cg, v[4], k), d, "");
        LLVMValueRef bb = LLVMBuildFAdd(cg->b, LLVMBuildFMul(cg->b, LLVMBuildFSub(cg->b, b0, mean, ""), sc, ""),
                                        LLVMBuildFPExt(cg->b, ld(cg, v[3], k), d, ""), "");
        st(cg, LLVMBuildFPTrunc(cg->b, bb, cg->f32, ""), v[7], k);
        LLVMValueRef row = mul(cg, k, v[8]);
        LLVMValueRef j = for_begin(cg, &lj, ci64(cg, 0), v[8], 1);
        LLVMValueRef x = LLVMBuildFPExt(cg->b, ld(cg, v[0], add(cg, row, j)), d, "");
        st(cg, LLVMBuildFPTrunc(cg->b, LLVMBuildFMul(cg->b, x, sc, ""), cg->f32, ""), v[6], add(cg, row, j));
        for_end(cg, &lj);
        for_end(cg, &lk);
    }
    par_end(cg, &P);
}

void cg_emit_folded(Cg *cg, const IrNode *n, const IrNode *bn) {
    int64_t nb = cg->p->batch, per = cg_gemm_scratch_floats(cg);
    LLVMValueRef nt = cg_nthreads(cg), y = cg_vptr(cg, cg->y_value >= 0 ? cg->y_value : bn->out[0]);
    if (n->op == IR_OP_CONV2D) {
        int has_bias = n->attr.conv.bias && n->nin > 2;
        ConvDims d = conv_dims(cg, n, n->in[0], n->out[0]);
        int64_t len = d.c * d.r * d.s, fold = cg_round16(d.k * len) + cg_round16(d.k);
        LLVMValueRef scr = cg_scratch_for_threads(cg, nt, per, fold + conv_fwd_extra(cg, &d, nb));
        LLVMValueRef wf = scr, bf = gep(cg, scr, ci64(cg, cg_round16(d.k * len)));
        emit_fold(cg, bn, cg_vptr(cg, n->in[1]), has_bias ? cg_vptr(cg, n->in[2]) : NULL, d.k, len, wf, bf);
        conv_fwd(cg, &d, nb, wf, cg_vptr(cg, n->in[0]), y, bf, gep(cg, scr, ci64(cg, fold)));
    } else {
        int64_t in = cg_numel(cg, n->in[0]) / nb, out = cg_numel(cg, n->out[0]) / nb;
        int has_bias = n->attr.linear.bias && n->nin > 2;
        int64_t fold = cg_round16(out * in) + cg_round16(out);
        LLVMValueRef scr = cg_scratch_for_threads(cg, nt, per, fold);
        LLVMValueRef wf = scr, bf = gep(cg, scr, ci64(cg, cg_round16(out * in)));
        emit_fold(cg, bn, cg_vptr(cg, n->in[1]), has_bias ? cg_vptr(cg, n->in[2]) : NULL, out, in, wf, bf);
        Gemm g = {.M = nb, .N = out, .K = in, .a_sm = in, .a_sk = 1, .bk = B_COL, .b_sk = 1, .b_sn = in, .ldc = out,
                  .beta0 = 0, .relu = cg->relu};
        cg_par_gemm(cg, &g, cg_vptr(cg, n->in[0]), wf, y, bf, gep(cg, scr, ci64(cg, fold)));
    }
}

const char *cg_conv_method(const Program *p, const IrNode *n) {
    ConvDims d;
    if (n->op == IR_OP_CONV2D) {
        d = conv_dims_p(p, n, n->in[0], n->out[0]);
    } else if (n->op == IR_OP_CONV2D_BWD_DATA) {
        ConvDims f = conv_dims_p(p, n, n->out[0], n->in[0]);
        if (!bwd_data_fwd(&f, &d)) return NULL;
    } else if (n->op == IR_OP_CONV2D_BWD_WEIGHT) {
        d = conv_dims_p(p, n, n->in[1], n->in[0]);
        d.grad = d.wgrad = 1;
    } else {
        return NULL;
    }
    if (cg_conv_small(&d)) return "pixel-pair GEMMs";
    if (cg_conv_taps(&d)) return n->op == IR_OP_CONV2D_BWD_DATA ? NULL : "direct, by taps";
    if (!cg_conv_wino(&d)) return NULL;
    return cg_wino_name(&d);
}
