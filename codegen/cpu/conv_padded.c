/* conv_padded.c - the padded-width layouts of the conv GEMMs: x_pad (the
 * input zero padded) and the parts of B_PADROW, B_DYT and B_PADT that the
 * generic packing and driver call (tables of row offsets, panels read in
 * place or gathered, B_PADT's whole driver body).
 *
 * Gathering im2col panels costs about a cycle per element, each element then
 * used by only K (output channels) FMAs: with few channels packing
 * dominates.  Two layouts avoid the gathers:
 *   padded width (B_PADROW; stride-1 fwd and bwd data with Q >= 8 pad
 *   columns): x zero padded to Hp x Wp (x_pad, scratch; Wp = W + pw, a
 *   row's right padding being the next row's left) and the output
 *   computed on a grid of width Wp, so that every im2col row is one
 *   contiguous run per image; the GEMM writes y_ext[n, k, p*Wp + q'] and a
 *   pass keeps q' < Q (adding the bias).  B is not packed at all: the
 *   micro-kernel (netc_ukr_direct) loads a panel's row k at x_pad + the
 *   panel's first column + a per-block table of row offsets; only panels
 *   that cross an image or the end are gathered.  1x1 stride-1 unpadded
 *   convs take this path too (their im2col rows are the channel planes).
 *   transposed weight gradient (B_DYT; stride 1 when the padded columns
 *   add at most a sixth or K * pad columns is small, or one input channel
 *   at any stride): dW^T[CRS, K] = im2col(x)[CRS, L] dy^T[L, K], A's rows
 *   read in place from x_pad at stride 1 (contiguous over the padded-width
 *   grid, where dy counts as zero at q' >= Q; k blocks never cross an
 *   image, row offsets in a table; images under DYT_SMALL grid pixels are
 *   packed in full k blocks instead), copied with the stride otherwise
 *   (micro-kernel variant netc_ukr_rows), dy gathered into B once per
 *   block (copied by 8 x 8 transposes where the grid is the output: 1x1
 *   convs); then dW = (dW^T)^T.
 *   transposed padded width (B_PADT, the padded-width forward conv when
 *   the channels round up to NR well): the grid's pixels are the rows and
 *   the channels the columns, a block's pixels packed into MR-pixel panels
 *   by one eight-float copy per panel and step, or read in place by
 *   broadcasts when the channels fit one B panel (B_PADROW's vector loads
 *   of B in place cross a cache line for three rows in seven, and cost it
 *   a fifth of its speed), W^T packed once; each block of pixels is
 *   transposed in 8 x 8 tiles into y, the bias added, so no compaction
 *   pass.  VGG-11's step 19% faster, ResNet-18's 7%.
 *   1x1 stride-1 convs with images of 36 pixels or more take it straight
 *   on x (GoogLeNet 3%). */
#include "gemm_internal.h"

/* The row width of x_pad.  At stride 1 a row's right padding is the next
 * row's left padding: an output column q < Q reads x_pad columns up to
 * W + 2 pw - 1, which for a width of W + pw runs at most pw - 1 into the
 * next row (or the next plane's first row), all zeros; the grid of the
 * padded-width GEMMs (Wp columns per output row, Q of them kept) is then pw
 * columns wider than the output instead of 2 pw.  At least Q wide. */
int64_t cg_pad_width(const ConvDims *d) {
    if (d->sh != 1 || d->sw != 1) return d->w + 2 * d->pw;
    return d->w + d->pw > d->q ? d->w + d->pw : d->q;
}

/* x_pad[plane] = x[plane] zero padded to hp x cg_pad_width() (ph rows, pw
 * columns before each row, zeros after up to the width), plus zeros after
 * the last plane for the rows that run past it. */
void cg_emit_pad(Cg *cg, const ConvDims *d, int64_t nb, LLVMValueRef x, LLVMValueRef xp) {
    int64_t hp = d->h + 2 * d->ph, wp = cg_pad_width(d);
    LLVMValueRef v[8] = {x, xp, ci64(cg, d->h), ci64(cg, d->w), ci64(cg, hp), ci64(cg, wp), ci64(cg, d->ph),
                         ci64(cg, d->pw)};
    Par P;
    LLVMValueRef b, e;
    if (par_begin_shared(cg, &P, "conv_pad", v, 8, ci64(cg, nb * d->c), &b, &e)) {
        LLVMValueRef H = v[2], W = v[3], HP = v[4], WP = v[5], PH = v[6], PW = v[7];
        Loop lp, lr;
        LLVMValueRef pl = for_begin(cg, &lp, b, e, 1);
        LLVMValueRef src = gep(cg, v[0], mul(cg, pl, mul(cg, H, W)));
        LLVMValueRef dst = gep(cg, v[1], mul(cg, pl, mul(cg, HP, WP)));
        LLVMValueRef ih = for_begin(cg, &lr, ci64(cg, 0), HP, 1);
        LLVMValueRef row = gep(cg, dst, mul(cg, ih, WP));
        LLVMValueRef sy = sub(cg, ih, PH);
        If f;
        if_begin(cg, &f, icmp(cg, LLVMIntULT, sy, H));
        cg_memset0(cg, row, PW);
        cg_memcpy(cg, gep(cg, row, PW), gep(cg, src, mul(cg, sy, W)), W);
        cg_memset0(cg, gep(cg, row, add(cg, PW, W)), sub(cg, WP, add(cg, PW, W)));
        if_else(cg, &f);
        cg_memset0(cg, row, WP);
        if_end(cg, &f);
        for_end(cg, &lr);
        for_end(cg, &lp);
    }
    par_end(cg, &P);
    cg_memset0(cg, gep(cg, xp, ci64(cg, nb * d->c * hp * wp)), ci64(cg, d->s + 16));
}

int64_t cg_pad_floats(const ConvDims *d, int64_t nb) {
    return cg_round16(nb * d->c * (d->h + 2 * d->ph) * cg_pad_width(d) + d->s + 16);
}

/* B_DYT: apack[ir*kc + i*kc + kk] = x_pad row (c,r,s) = ic+ir+i at l = pc+kk:
 * per image one contiguous run (zero rows for m >= M). */
void cg_pack_a_rows(Cg *cg, const GemmV *g, LLVMValueRef ap, LLVMValueRef ic, LLVMValueRef mc,
                        LLVMValueRef pc, LLVMValueRef kc) {
    LLVMValueRef L = G(PQ), RS = mul(cg, G(R), G(S));
    LLVMValueRef n0 = sdiv(cg, pc, L), n1 = sdiv(cg, addc(cg, add(cg, pc, kc), -1), L);
    LLVMValueRef pend = add(cg, pc, kc);
    Loop li, ln;
    LLVMValueRef ri = for_begin(cg, &li, ci64(cg, 0), mc, 1);
    LLVMValueRef dst = gep(cg, ap, mul(cg, ri, kc));
    LLVMValueRef m = add(cg, ic, ri);
    If f;
    if_begin(cg, &f, icmp(cg, LLVMIntSLT, m, G(M)));
    {
        LLVMValueRef c = sdiv(cg, m, RS);
        LLVMValueRef rem = sub(cg, m, mul(cg, c, RS));
        LLVMValueRef r = sdiv(cg, rem, G(S));
        LLVMValueRef sx = sub(cg, rem, mul(cg, r, G(S)));
        LLVMValueRef base = gep(cg, G(A), add(cg, mul(cg, c, G(ASM)), add(cg, mul(cg, r, G(W)), sx)));
        If st1;
        if_begin(cg, &st1, and1(cg, icmp(cg, LLVMIntEQ, G(PH), ci64(cg, 1)), icmp(cg, LLVMIntEQ, G(PW), ci64(cg, 1))));
        {
            /* stride 1: one run per image */
            LLVMValueRef n = for_begin(cg, &ln, n0, addc(cg, n1, 1), 1);
            LLVMValueRef nl = mul(cg, n, L);
            LLVMValueRef a = LLVMBuildSelect(cg->b, icmp(cg, LLVMIntSGT, nl, pc), nl, pc, "");
            LLVMValueRef e = imin(cg, add(cg, nl, L), pend);
            cg_memcpy(cg, gep(cg, dst, sub(cg, a, pc)), gep(cg, base, add(cg, mul(cg, n, G(XIMG)), sub(cg, a, nl))),
                      sub(cg, e, a));
            for_end(cg, &ln);
        }
        if_else(cg, &st1);
        {
            /* strided (grid width Q, no padded columns): one strided run per output row */
            LLVMValueRef Gw = G(Q), Pn = sdiv(cg, L, Gw);
            LLVMValueRef t0 = sdiv(cg, pc, Gw), t1 = sdiv(cg, addc(cg, pend, -1), Gw);
            Loop lt, lq;
            LLVMValueRef t = for_begin(cg, &lt, t0, addc(cg, t1, 1), 1);
            LLVMValueRef tg = mul(cg, t, Gw);
            LLVMValueRef a = LLVMBuildSelect(cg->b, icmp(cg, LLVMIntSGT, tg, pc), tg, pc, "");
            LLVMValueRef e = imin(cg, add(cg, tg, Gw), pend);
            LLVMValueRef n = sdiv(cg, t, Pn), p = sub(cg, t, mul(cg, n, Pn));
            LLVMValueRef src = gep(cg, base, add(cg, mul(cg, n, G(XIMG)),
                                                 add(cg, mul(cg, mul(cg, p, G(PH)), G(W)), mul(cg, sub(cg, a, tg), G(PW)))));
            LLVMValueRef d0 = gep(cg, dst, sub(cg, a, pc));
            LLVMValueRef q = for_begin(cg, &lq, ci64(cg, 0), sub(cg, e, a), 1);
            st(cg, ld(cg, src, mul(cg, q, G(PW))), d0, q);
            for_end(cg, &lq);
            for_end(cg, &lt);
        }
        if_end(cg, &st1);
    }
    if_else(cg, &f);
    cg_memset0(cg, dst, kc);
    if_end(cg, &f);
    for_end(cg, &li);
    /* rows past mc up to the panel's MR: zero */
    LLVMValueRef mr_end = mulc(cg, sdiv(cg, addc(cg, mc, MR - 1), ci64(cg, MR)), MR);
    If z;
    if_begin(cg, &z, icmp(cg, LLVMIntSLT, mc, mr_end));
    cg_memset0(cg, gep(cg, ap, mul(cg, mc, kc)), mul(cg, sub(cg, mr_end, mc), kc));
    if_end(cg, &z);
}

/* B_PADROW is not packed: the micro-kernel reads a panel's row k at
 * x_pad + (panel's first column) + boff[k].  boff[kk] = offset of im2col row
 * pc + kk = (c, r, s) in an image: c*H*W + r*W + s, for the block; ptab[kk] =
 * kk*NR, the same for a panel packed at pbuf. */
void cg_padrow_offsets(Cg *cg, const GemmV *g, LLVMValueRef boff, LLVMValueRef ptab, LLVMValueRef c0,
                           LLVMValueRef r0, LLVMValueRef s0, LLVMValueRef kc) {
    LLVMValueRef plane = mul(cg, G(H), G(W));
    LLVMValueRef vc = var(cg, cg->i64, c0), vr = var(cg, cg->i64, r0), vsx = var(cg, cg->i64, s0);
    Loop lk;
    LLVMValueRef kk = for_begin(cg, &lk, ci64(cg, 0), kc, 1);
    LLVMValueRef off = add(cg, mul(cg, get(cg, vc), plane), add(cg, mul(cg, get(cg, vr), G(W)), get(cg, vsx)));
    LLVMBuildStore(cg->b, off, LLVMBuildInBoundsGEP2(cg->b, cg->i64, boff, &kk, 1, ""));
    LLVMBuildStore(cg->b, mulc(cg, kk, NR), LLVMBuildInBoundsGEP2(cg->b, cg->i64, ptab, &kk, 1, ""));
    cg_bump3(cg, vc, vr, vsx, G(R), G(S));
    for_end(cg, &lk);
}

/* B_PADROW: the panel of columns n0.. packed into pbuf [kc][NR] by gathers,
 * for the panels that cross an image or jend (offsets image*XIMG + column in
 * the image, masked past jend). */
void cg_padrow_gather_panel(Cg *cg, const GemmV *g, LLVMValueRef pbuf, LLVMValueRef boff, LLVMValueRef n0,
                                LLVMValueRef jend, LLVMValueRef kc) {
    LLVMValueRef L = G(PQ);
    LLVMValueRef nv = LLVMBuildAdd(cg->b, cg_vs32(cg, n0), cg_lane_ids(cg), "");
    LLVMValueRef nmask = LLVMBuildICmp(cg->b, LLVMIntSLT, nv, cg_vs32(cg, jend), "");
    LLVMValueRef imv = LLVMBuildSDiv(cg->b, nv, cg_vs32(cg, L), "");
    LLVMValueRef pwv = LLVMBuildSub(cg->b, nv, LLVMBuildMul(cg->b, imv, cg_vs32(cg, L), ""), "");
    LLVMValueRef loff = LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, imv, cg_vs32(cg, G(XIMG)), ""), pwv, "");
    loff = LLVMBuildSelect(cg->b, nmask, loff, cg_vsplat_i32(cg, 0), "");
    Loop lk;
    LLVMValueRef kk = for_begin(cg, &lk, ci64(cg, 0), kc, 1);
    LLVMValueRef o = LLVMBuildLoad2(cg->b, cg->i64, LLVMBuildInBoundsGEP2(cg->b, cg->i64, boff, &kk, 1, ""), "");
    cg_vnr_st(cg, cg_vnr_gather(cg, gep(cg, G(B), o), loff, nmask), pbuf, mulc(cg, kk, NR), 32);
    for_end(cg, &lk);
}

/* v[i] = row i of an 8 x 8 tile of floats; afterwards v[i] = column i
 * (unpack, 64-bit shuffle, 128-bit permute: 24 shuffles). */
static void transpose8(Cg *cg, LLVMValueRef *v) {
    static const int lo[8] = {0, 8, 1, 9, 4, 12, 5, 13}, hi[8] = {2, 10, 3, 11, 6, 14, 7, 15};
    static const int s0[8] = {0, 1, 8, 9, 4, 5, 12, 13}, s1[8] = {2, 3, 10, 11, 6, 7, 14, 15};
    static const int p0[8] = {0, 1, 2, 3, 8, 9, 10, 11}, p1[8] = {4, 5, 6, 7, 12, 13, 14, 15};
    LLVMValueRef t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = shuf8(cg, v[2 * i], v[2 * i + 1], lo);
        t[2 * i + 1] = shuf8(cg, v[2 * i], v[2 * i + 1], hi);
    }
    /* u[0..3]: rows 0-3 of columns {0,4}, {1,5}, {2,6}, {3,7}; u[4..7] rows 4-7 */
    for (int h = 0; h < 2; h++) {
        LLVMValueRef *tt = t + 4 * h;
        u[4 * h + 0] = shuf8(cg, tt[0], tt[2], s0);
        u[4 * h + 1] = shuf8(cg, tt[0], tt[2], s1);
        u[4 * h + 2] = shuf8(cg, tt[1], tt[3], s0);
        u[4 * h + 3] = shuf8(cg, tt[1], tt[3], s1);
    }
    for (int i = 0; i < 4; i++) {
        v[i] = shuf8(cg, u[i], u[4 + i], p0);
        v[4 + i] = shuf8(cg, u[i], u[4 + i], p1);
    }
}

/* B_DYT's panel at channel n0 when the grid is the output (1x1 convs: no
 * padded columns): within an image a k block's rows l are contiguous in
 * every channel of dy, so the panel is a transposed copy, eight rows l by
 * eight channels at a time (was a gather per row: 1x1 weight gradients
 * spent a sixth of their time there); each image's last rows, fewer than
 * eight, are gathered. */
void cg_dyt_pack_contig(Cg *cg, const GemmV *g, LLVMValueRef dst, LLVMValueRef n0, LLVMValueRef jend,
                            LLVMValueRef joff, LLVMValueRef nmask, LLVMValueRef pc, LLVMValueRef kc) {
    LLVMValueRef B = G(B), L = G(PQ), end = add(cg, pc, kc);
    Loop li, lt, le;
    LLVMValueRef im = for_begin(cg, &li, sdiv(cg, pc, L), addc(cg, sdiv(cg, addc(cg, end, -1), L), 1), 1);
    LLVMValueRef ib = mul(cg, im, L);
    LLVMValueRef lo = LLVMBuildSelect(cg->b, icmp(cg, LLVMIntSGT, pc, ib), pc, ib, "");
    LLVMValueRef hi = imin(cg, end, add(cg, ib, L));
    LLVMValueRef src = gep(cg, B, add(cg, mul(cg, im, G(AIMG)), sub(cg, lo, ib)));   /* dy at l = lo, channel 0 */
    LLVMValueRef k0 = sub(cg, lo, pc), n8 = LLVMBuildAShr(cg->b, sub(cg, hi, lo), ci64(cg, 3), "");
    LLVMValueRef t = for_begin(cg, &lt, ci64(cg, 0), n8, 1);
    for (int h = 0; h < NR / 8; h++) {
        LLVMValueRef v[8];
        for (int i = 0; i < 8; i++) {
            LLVMValueRef ch = addc(cg, n0, h * 8 + i), ok = icmp(cg, LLVMIntSLT, ch, jend);
            LLVMValueRef row = gep(cg, src, mul(cg, LLVMBuildSelect(cg->b, ok, ch, n0, ""), G(BSN)));
            v[i] = LLVMBuildSelect(cg->b, ok, v8ld(cg, row, mulc(cg, t, 8)), LLVMConstNull(LLVMVectorType(cg->f32, 8)), "");
        }
        transpose8(cg, v);
        LLVMValueRef kt = add(cg, k0, mulc(cg, t, 8));
        for (int i = 0; i < 8; i++) v8st(cg, v[i], dst, addc(cg, mulc(cg, addc(cg, kt, i), NR), h * 8));
    }
    for_end(cg, &lt);
    LLVMValueRef e = for_begin(cg, &le, add(cg, lo, mulc(cg, n8, 8)), hi, 1);
    cg_vnr_st(cg, cg_vnr_gather(cg, gep(cg, src, sub(cg, e, lo)), joff, nmask), dst, mulc(cg, sub(cg, e, pc), NR), 32);
    for_end(cg, &le);
    for_end(cg, &li);
}

/* B_DYT with images of fewer grid pixels than this (1x1 convs on 12x12,
 * 6x6 and 3x3 maps) packs A's rows across images in full KC blocks: blocks
 * that stop at every image would hold 144, 36 or 9 steps, and the
 * micro-kernel's calls cost more than their multiply-adds (at 144 the
 * packed, contiguous panels are also read faster than six rows in place:
 * the 1x1 weight gradient on 12x12 maps 5-10% faster than at 128). */
enum { DYT_SMALL = 160 };

LLVMValueRef cg_dyt_small(Cg *cg, const GemmV *g) {
    return icmp(cg, LLVMIntSLT, G(PQ), ci64(cg, DYT_SMALL));
}

/* Software prefetch, spread over a block's micro-kernel calls: rows (input
 * or output channels) of `lines` cache lines, `stride` floats apart from
 * base; call t prefetches rows [t*per, t*per + per), for writing when rw.
 * A block of the transposed conv reads each of its C channels' rows for
 * only MC pixels, more runs at once than the hardware prefetcher follows:
 * prefetching the next block's rows made 1x1 convs over 54x54 maps (96
 * channels) 35% faster, GoogLeNet's step 4%, 3x3 and 5x5 convs no faster
 * or slower.  (The transposed weight gradient reads six rows at a time,
 * which the hardware follows: prefetching there was no faster.) */

void cg_prefetch_slice(Cg *cg, const Prefetch *s, LLVMValueRef t) {
    LLVMValueRef r0 = mul(cg, t, s->per), r1 = imin(cg, add(cg, r0, s->per), s->rows);
    Loop la, lb;
    LLVMValueRef r = for_begin(cg, &la, r0, r1, 1);
    LLVMValueRef rb = LLVMBuildGEP2(cg->b, cg->f32, s->base, (LLVMValueRef[]){mul(cg, r, s->stride)}, 1, "");
    LLVMValueRef li = for_begin(cg, &lb, ci64(cg, 0), s->lines, 1);
    cg_prefetch(cg, LLVMBuildGEP2(cg->b, cg->f32, rb, (LLVMValueRef[]){mulc(cg, li, 16)}, 1, ""), s->rw, 3);
    for_end(cg, &lb);
    for_end(cg, &la);
}

/* B_PADT: the MR-pixel panel at grid pixel j0 (image *im, its pixel *pix0)
 * can be read in place unless it crosses into the next image (past the last
 * image's grid the reads stay in x_pad's trailing zeros, rows unused). */
static LLVMValueRef padt_inplace(Cg *cg, const GemmV *g, LLVMValueRef j0, LLVMValueRef *im, LLVMValueRef *pix0) {
    LLVMValueRef L = G(PQ);
    *im = sdiv(cg, j0, L);
    *pix0 = sub(cg, j0, mul(cg, *im, L));
    return LLVMBuildOr(cg->b, icmp(cg, LLVMIntSLE, addc(cg, *pix0, MR), L),
                       and1(cg, icmp(cg, LLVMIntNE, G(PH), ci64(cg, 0)), icmp(cg, LLVMIntSGE, mul(cg, addc(cg, *im, 1), L), G(M))),
                       "");
}

/* The B_PADT driver's body (see BKind): pixels [IB, IE) of the grid, all K
 * channels.  Scratch: W^T packed whole [K/NR panels][CRS][NR], the C block
 * [MC][ldc'] (ldc' = K rounded up to NR), the row offset tables, the
 * block's pixels packed [MC/MR][kc][MR].  Packed when there are two B
 * panels or more: read in place, every micro-kernel call touches kc lines
 * for MR floats of each, once per B panel (never packing: GoogLeNet's step
 * 2.7% slower, NiN's 4.2%, paired; always packing: VGG's 5.4%, its first
 * conv having one panel of 16 channels). */
void cg_padt_body(Cg *cg, const GemmV *g, LLVMValueRef ukt, LLVMValueRef ukp) {
    LLVMTypeRef pi64 = LLVMPointerType(cg->i64, 0);
    LLVMValueRef M = G(M), N = G(N), K = G(K), L = G(PQ), Wt = G(B);
    LLVMValueRef ldc = mulc(cg, sdiv(cg, addc(cg, N, NR - 1), ci64(cg, NR)), NR);
    LLVMValueRef bw = G(SCR), cblk = gep(cg, bw, ci64(cg, APK));
    LLVMValueRef boff = LLVMBuildBitCast(cg->b, gep(cg, cblk, ci64(cg, (int64_t)MC * NC)), pi64, "");
    Loop l1, l2, l3;
    /* bw[jr*K + k*NR + jj] = W[jr + jj, k], zero past N */
    {
        LLVMValueRef jr = for_begin(cg, &l1, ci64(cg, 0), ldc, NR);
        LLVMValueRef jj = for_begin(cg, &l2, ci64(cg, 0), ci64(cg, NR), 1);
        LLVMValueRef n = add(cg, jr, jj), dst = gep(cg, bw, add(cg, mul(cg, jr, K), jj));
        If f1;
        if_begin(cg, &f1, icmp(cg, LLVMIntSLT, n, N));
        {
            LLVMValueRef src = gep(cg, Wt, mul(cg, n, G(BSN)));
            LLVMValueRef k = for_begin(cg, &l3, ci64(cg, 0), K, 1);
            st(cg, ld(cg, src, k), dst, mulc(cg, k, NR));
            for_end(cg, &l3);
        }
        if_else(cg, &f1);
        {
            LLVMValueRef k = for_begin(cg, &l3, ci64(cg, 0), K, 1);
            st(cg, cf32(cg, 0), dst, mulc(cg, k, NR));
            for_end(cg, &l3);
        }
        if_end(cg, &f1);
        for_end(cg, &l2);
        for_end(cg, &l1);
    }
    Loop lic, lpc;
    LLVMValueRef ic = for_begin(cg, &lic, G(IB), G(IE), MC);
    LLVMValueRef mc = imin(cg, ci64(cg, MC), sub(cg, G(IE), ic));
    /* the next block's pixels (in the image of its first; not past IE) and
     * the lines of y this block writes */
    Prefetch pf = {0}, pfw = {0};
    LLVMValueRef pft = var(cg, cg->i64, ci64(cg, 0));
    {
        LLVMValueRef jn = addc(cg, ic, MC), imn = sdiv(cg, jn, L);
        /* not inbounds: past the last image these are never dereferenced */
        pf.base = LLVMBuildGEP2(cg->b, cg->f32, G(A), (LLVMValueRef[]){add(cg, mul(cg, imn, G(XIMG)), sub(cg, jn, mul(cg, imn, L)))},
                                1, "");
        pf.stride = mul(cg, G(H), G(W));
        LLVMValueRef C = sdiv(cg, K, mul(cg, G(R), G(S)));
        pf.rows = LLVMBuildSelect(cg->b, icmp(cg, LLVMIntSLT, jn, G(IE)), C, ci64(cg, 0), "");
        /* a row: MC pixels, the kernel's rows below them, a line either side */
        LLVMValueRef span = addc(cg, add(cg, mul(cg, addc(cg, G(R), -1), G(W)), G(S)), MC - 1);
        pf.lines = addc(cg, sdiv(cg, span, ci64(cg, 16)), 2);
        LLVMValueRef ncalls = mul(cg, mul(cg, sdiv(cg, ldc, ci64(cg, NR)), sdiv(cg, addc(cg, mc, MR - 1), ci64(cg, MR))),
                                  sdiv(cg, addc(cg, K, KC - 1), ci64(cg, KC)));
        pf.per = sdiv(cg, add(cg, C, addc(cg, ncalls, -1)), ncalls);
        /* and this block's lines of y, for writing (its stores then miss
         * less: ResNet-18's step 1-4% faster, paired) */
        LLVMValueRef im = sdiv(cg, ic, L), pix = sub(cg, ic, mul(cg, im, L));
        LLVMValueRef pr = sdiv(cg, pix, G(Q)), qq = sub(cg, pix, mul(cg, pr, G(Q)));
        pfw.base = LLVMBuildGEP2(cg->b, cg->f32, G(C), (LLVMValueRef[]){add(cg, mul(cg, im, G(CIMG)), add(cg, mul(cg, pr, G(SW)), qq))},
                                 1, "");
        pfw.stride = G(CPQ);
        pfw.rows = N;
        pfw.lines = ci64(cg, MC / 16 + 2);
        pfw.per = sdiv(cg, add(cg, N, addc(cg, ncalls, -1)), ncalls);
        pfw.rw = 1;
    }
    LLVMValueRef pc = for_begin(cg, &lpc, ci64(cg, 0), K, KC);
    LLVMValueRef kc = imin(cg, ci64(cg, KC), sub(cg, K, pc));
    LLVMValueRef acc = LLVMBuildZExt(cg->b, icmp(cg, LLVMIntNE, pc, ci64(cg, 0)), cg->i64, "");
    {
        LLVMValueRef c0 = sdiv(cg, pc, mul(cg, G(R), G(S)));
        LLVMValueRef r0 = srem(cg, sdiv(cg, pc, G(S)), G(R));
        LLVMValueRef s0 = srem(cg, pc, G(S));
        cg_padrow_offsets(cg, g, boff, gep64(cg, boff, KC), c0, r0, s0, kc);
    }
    Loop ljr, lir;
    /* the block's pixels packed into MR-pixel panels [kc][MR] once, read by
     * every B panel's micro-kernel calls; with one B panel, only the
     * panels that cross an image (the others read in place) */
    LLVMValueRef ablk = gep(cg, cblk, ci64(cg, (int64_t)MC * NC + 4 * KC));
    LLVMValueRef packa = icmp(cg, LLVMIntSGE, ldc, ci64(cg, 2 * NR));
    {
        LLVMValueRef ir = for_begin(cg, &l1, ci64(cg, 0), mc, MR);
        LLVMValueRef im, pix0, inplace = padt_inplace(cg, g, add(cg, ic, ir), &im, &pix0);
        LLVMValueRef dst = gep(cg, ablk, mul(cg, ir, kc));
        If fp, fq;
        if_begin(cg, &fp, inplace);
        if_begin(cg, &fq, packa);
        {
            /* W >= MR floats (W = 8 or 16) ending at the panel's last
             * pixel (starting at its first when that is among the grid's
             * first W - MR: the 1x1 convs' images hold 36 pixels or more,
             * x_pad has zeros after its last), the panel's MR stored with
             * W - MR that the next step or panel overwrites (the last
             * spills into the scratch's slack) */
            int W = MR <= 8 ? 8 : 16;
            LLVMTypeRef vt = LLVMVectorType(cg->f32, (unsigned)W), pvt = LLVMPointerType(vt, 0);
            LLVMValueRef back = icmp(cg, LLVMIntSGE, pix0, ci64(cg, W - MR));
            LLVMValueRef sh = LLVMBuildSelect(cg->b, back, ci64(cg, W - MR), ci64(cg, 0), "");
            LLVMValueRef src = gep(cg, G(A), sub(cg, add(cg, mul(cg, im, G(XIMG)), pix0), sh));
            LLVMValueRef m[16];
            for (int i = 0; i < W; i++) m[i] = ci32(cg, i + W - MR < W ? i + W - MR : i);
            LLVMValueRef mask = LLVMConstVector(m, (unsigned)W);
            LLVMValueRef kk = for_begin(cg, &l2, ci64(cg, 0), kc, 1);
            LLVMValueRef o = LLVMBuildLoad2(cg->b, cg->i64, LLVMBuildInBoundsGEP2(cg->b, cg->i64, boff, &kk, 1, ""), "");
            LLVMValueRef v = LLVMBuildLoad2(cg->b, vt, LLVMBuildBitCast(cg->b, gep(cg, src, o), pvt, ""), "");
            LLVMSetAlignment(v, 4);
            v = LLVMBuildSelect(cg->b, back, LLVMBuildShuffleVector(cg->b, v, v, mask, ""), v, "");
            LLVMSetAlignment(LLVMBuildStore(cg->b, v, LLVMBuildBitCast(cg->b, gep(cg, dst, mulc(cg, kk, MR)), pvt, "")), 4);
            for_end(cg, &l2);
        }
        if_end(cg, &fq);
        if_else(cg, &fp);
        {
            /* dst[kk*MR + i] = pixel j0 + i at row kk, zero past M */
            LLVMValueRef i = for_begin(cg, &l2, ci64(cg, 0), ci64(cg, MR), 1);
            LLVMValueRef j = add(cg, add(cg, ic, ir), i), jim = sdiv(cg, j, L);
            LLVMValueRef ok = icmp(cg, LLVMIntSLT, j, M);
            LLVMValueRef base = gep(cg, G(A), LLVMBuildSelect(cg->b, ok, add(cg, mul(cg, jim, G(XIMG)), sub(cg, j, mul(cg, jim, L))),
                                                             ci64(cg, 0), ""));
            LLVMValueRef kk = for_begin(cg, &l3, ci64(cg, 0), kc, 1);
            LLVMValueRef o = LLVMBuildLoad2(cg->b, cg->i64, LLVMBuildInBoundsGEP2(cg->b, cg->i64, boff, &kk, 1, ""), "");
            st(cg, LLVMBuildSelect(cg->b, ok, ld(cg, base, o), cf32(cg, 0), ""), dst, add(cg, mulc(cg, kk, MR), i));
            for_end(cg, &l3);
            for_end(cg, &l2);
        }
        if_end(cg, &fp);
        for_end(cg, &l1);
    }
    /* jr outer: a B panel stays in L1 while the block's panels stream from
     * L2 */
    LLVMValueRef jr = for_begin(cg, &ljr, ci64(cg, 0), ldc, NR);
    LLVMValueRef bpan = gep(cg, bw, add(cg, mul(cg, jr, K), mulc(cg, pc, NR)));
    LLVMValueRef ir = for_begin(cg, &lir, ci64(cg, 0), mc, MR);
    cg_prefetch_slice(cg, &pf, get(cg, pft));
    cg_prefetch_slice(cg, &pfw, get(cg, pft));
    set(cg, pft, addc(cg, get(cg, pft), 1));
    LLVMValueRef ct = gep(cg, cblk, add(cg, mul(cg, ir, ldc), jr));
    {
        /* packed, or (one B panel) in place unless it crosses an image */
        LLVMValueRef a6[6] = {gep(cg, ablk, mul(cg, ir, kc)), bpan, ct, ldc, kc, acc};
        If fp, fi;
        if_begin(cg, &fp, packa);
        cg_call(cg, ukp, a6, 6);
        if_else(cg, &fp);
        LLVMValueRef im, pix0, inplace = padt_inplace(cg, g, add(cg, ic, ir), &im, &pix0);
        if_begin(cg, &fi, inplace);
        {
            LLVMValueRef a[7] = {gep(cg, G(A), add(cg, mul(cg, im, G(XIMG)), pix0)), bpan, ct, ldc, kc, acc, boff};
            cg_call(cg, ukt, a, 7);
        }
        if_else(cg, &fi);
        cg_call(cg, ukp, a6, 6);
        if_end(cg, &fi);
        if_end(cg, &fp);
    }
    for_end(cg, &lir);
    for_end(cg, &ljr);
    for_end(cg, &lpc);
    /* y[n, k, p, q'] = cblk[j - ic, k] (+ bias[k]) for the block's pixels
     * j = (n, p, q') with q' < Q: by grid rows (global row R = n*P + p), each
     * row's run of pixels in 8 x 8 tiles transposed in registers */
    {
        LLVMValueRef bias = LLVMBuildIntToPtr(cg->b, G(AIMG), cg->pf, "");
        LLVMValueRef hasb = icmp(cg, LLVMIntNE, G(AIMG), ci64(cg, 0));
        LLVMValueRef relu = icmp(cg, LLVMIntNE, G(RELU), ci64(cg, 0));
        LLVMValueRef Wg = G(Q), Qo = G(SW), Pn = sdiv(cg, L, Wg);
        LLVMValueRef jend = add(cg, ic, mc);
        LLVMValueRef N8 = LLVMBuildAnd(cg->b, N, ci64(cg, -8), "");
        Loop lr, lk, lx;
        LLVMValueRef R = for_begin(cg, &lr, sdiv(cg, ic, Wg), addc(cg, sdiv(cg, addc(cg, jend, -1), Wg), 1), 1);
        LLVMValueRef r0 = mul(cg, R, Wg);
        LLVMValueRef a = LLVMBuildSelect(cg->b, icmp(cg, LLVMIntSGT, r0, ic), r0, ic, "");
        LLVMValueRef b = imin(cg, add(cg, r0, Qo), jend);
        If fr;
        if_begin(cg, &fr, icmp(cg, LLVMIntSLT, a, b));
        {
            LLVMValueRef n = sdiv(cg, R, Pn), p = sub(cg, R, mul(cg, n, Pn));
            LLVMValueRef yrow = gep(cg, G(C), add(cg, mul(cg, n, G(CIMG)), add(cg, mul(cg, p, Qo), sub(cg, a, r0))));
            LLVMValueRef crow = gep(cg, cblk, mul(cg, sub(cg, a, ic), ldc));
            LLVMValueRef len = sub(cg, b, a), len8 = LLVMBuildAnd(cg->b, len, ci64(cg, -8), "");
            LLVMTypeRef v8 = LLVMVectorType(cg->f32, 8);
            /* channels k..k+7, pixels x..x+7 */
            LLVMValueRef k = for_begin(cg, &lk, ci64(cg, 0), N8, 8);
            {
                LLVMValueRef bk[8], bvar[8];
                If fb;
                for (int i = 0; i < 8; i++) bvar[i] = var(cg, cg->f32, cf32(cg, 0));
                if_begin(cg, &fb, hasb);
                for (int i = 0; i < 8; i++) set(cg, bvar[i], ld(cg, bias, addc(cg, k, i)));
                if_end(cg, &fb);
                for (int i = 0; i < 8; i++) bk[i] = get(cg, bvar[i]);
                LLVMValueRef x = for_begin(cg, &lx, ci64(cg, 0), len8, 8);
                LLVMValueRef v[8];
                for (int i = 0; i < 8; i++) {
                    LLVMValueRef pp = LLVMBuildBitCast(cg->b, gep(cg, crow, add(cg, mul(cg, addc(cg, x, i), ldc), k)),
                                                       LLVMPointerType(v8, 0), "");
                    v[i] = LLVMBuildLoad2(cg->b, v8, pp, "");
                    LLVMSetAlignment(v[i], 4);
                }
                transpose8(cg, v);
                for (int i = 0; i < 8; i++) {
                    LLVMValueRef o = cg_relu_if(cg, relu, LLVMBuildFAdd(cg->b, v[i], splat8(cg, bk[i]), ""));
                    LLVMValueRef pp = LLVMBuildBitCast(cg->b, gep(cg, yrow, add(cg, mul(cg, addc(cg, k, i), G(CPQ)), x)),
                                                       LLVMPointerType(v8, 0), "");
                    LLVMSetAlignment(LLVMBuildStore(cg->b, o, pp), 4);
                }
                for_end(cg, &lx);
                x = for_begin(cg, &lx, len8, len, 1);
                for (int i = 0; i < 8; i++)
                    st(cg, cg_relu_if(cg, relu, LLVMBuildFAdd(cg->b, ld(cg, crow, add(cg, mul(cg, x, ldc), addc(cg, k, i))), bk[i], "")), yrow,
                       add(cg, mul(cg, addc(cg, k, i), G(CPQ)), x));
                for_end(cg, &lx);
            }
            for_end(cg, &lk);
            /* the last N % 8 channels */
            k = for_begin(cg, &lk, N8, N, 1);
            {
                LLVMValueRef bvar = var(cg, cg->f32, cf32(cg, 0));
                If fb;
                if_begin(cg, &fb, hasb);
                set(cg, bvar, ld(cg, bias, k));
                if_end(cg, &fb);
                LLVMValueRef bb = get(cg, bvar);
                LLVMValueRef x = for_begin(cg, &lx, ci64(cg, 0), len, 1);
                st(cg, cg_relu_if(cg, relu, LLVMBuildFAdd(cg->b, ld(cg, crow, add(cg, mul(cg, x, ldc), k)), bb, "")), yrow,
                   add(cg, mul(cg, k, G(CPQ)), x));
                for_end(cg, &lx);
            }
            for_end(cg, &lk);
        }
        if_end(cg, &fr);
        for_end(cg, &lr);
    }
    for_end(cg, &lic);
}
