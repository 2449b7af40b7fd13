/* gemm_pack.c - the GEMM's operands packed block by block into panels: A
 * into MR-row panels [kc][MR], B into NR-column panels [kc][NR], zero
 * padded, from strided matrices (B_ROW, B_COL) or from an implicit im2col of
 * a batch of conv inputs (B_CONV_FWD, B_CONV_BWDW: gathers); the pieces of
 * the padded-width kinds (B_PADROW, B_DYT) are conv_padded.c's.
 * Small images whose output is the input's size (stride 1) load each
 * image's lanes of a panel with one masked load at a fixed distance instead
 * of gathering them. */
#include "gemm_internal.h"

static LLVMTypeRef vnr(Cg *cg) { return LLVMVectorType(cg->f32, (unsigned)NR); }
static LLVMTypeRef vnri(Cg *cg) { return LLVMVectorType(cg->i32, (unsigned)NR); }

LLVMValueRef cg_vsplat_i32(Cg *cg, int64_t x) {
    LLVMValueRef e[64];
    for (int i = 0; i < NR; i++) e[i] = ci32(cg, x);
    return LLVMConstVector(e, (unsigned)NR);
}
static LLVMValueRef vsplat_dyn_i32(Cg *cg, LLVMValueRef x) {
    LLVMTypeRef vt = vnri(cg);
    LLVMValueRef u = LLVMBuildInsertElement(cg->b, LLVMGetUndef(vt), x, ci32(cg, 0), "");
    return LLVMBuildShuffleVector(cg->b, u, LLVMGetUndef(vt), LLVMConstNull(vnri(cg)), "");
}
static LLVMValueRef vnr_ld(Cg *cg, LLVMValueRef fptr, LLVMValueRef idx, unsigned align) {
    LLVMValueRef p = LLVMBuildBitCast(cg->b, gep(cg, fptr, idx), LLVMPointerType(vnr(cg), 0), "");
    LLVMValueRef l = LLVMBuildLoad2(cg->b, vnr(cg), p, "");
    LLVMSetAlignment(l, align);
    return l;
}
void cg_vnr_st(Cg *cg, LLVMValueRef v, LLVMValueRef fptr, LLVMValueRef idx, unsigned align) {
    LLVMValueRef p = LLVMBuildBitCast(cg->b, gep(cg, fptr, idx), LLVMPointerType(vnr(cg), 0), "");
    LLVMSetAlignment(LLVMBuildStore(cg->b, v, p), align);
}

/* (a, b) += 1 with b wrapping at bn (counters instead of divisions). */
void cg_bump2(Cg *cg, LLVMValueRef a, LLVMValueRef b, LLVMValueRef bn) {
    LLVMValueRef nb = addc(cg, get(cg, b), 1);
    LLVMValueRef wrap = icmp(cg, LLVMIntEQ, nb, bn);
    set(cg, b, LLVMBuildSelect(cg->b, wrap, ci64(cg, 0), nb, ""));
    set(cg, a, LLVMBuildSelect(cg->b, wrap, addc(cg, get(cg, a), 1), get(cg, a), ""));
}

/* (c, r, s) += 1 with s wrapping at sn into r and r wrapping at rn into c:
 * the im2col row counters, stepped without divisions. */
void cg_bump3(Cg *cg, LLVMValueRef vc, LLVMValueRef vr, LLVMValueRef vs, LLVMValueRef rn, LLVMValueRef sn) {
    LLVMValueRef c = get(cg, vc), r = get(cg, vr);
    LLVMValueRef ns = addc(cg, get(cg, vs), 1), ws = icmp(cg, LLVMIntEQ, ns, sn);
    set(cg, vs, LLVMBuildSelect(cg->b, ws, ci64(cg, 0), ns, ""));
    LLVMValueRef nr = LLVMBuildSelect(cg->b, ws, addc(cg, r, 1), r, "");
    LLVMValueRef wr = icmp(cg, LLVMIntEQ, nr, rn);
    set(cg, vr, LLVMBuildSelect(cg->b, wr, ci64(cg, 0), nr, ""));
    set(cg, vc, LLVMBuildSelect(cg->b, wr, addc(cg, c, 1), c, ""));
}

/* apack[ir*kc + kk*MR + i] = A(ic+ir+i, pc+kk), zero for rows >= M. */
void cg_pack_a(Cg *cg, const GemmV *g, LLVMValueRef ap, LLVMValueRef ic, LLVMValueRef mc,
                   LLVMValueRef pc, LLVMValueRef kc) {
    if (g->bk == B_DYT) {
        cg_pack_a_rows(cg, g, ap, ic, mc, pc, kc);
        return;
    }
    LLVMValueRef A = G(A);
    int batched = g->bk == B_CONV_BWDW;
    /* batched: k = (n, pq), offset n*AIMG + pq, counted from pc */
    LLVMValueRef vn = NULL, vq = NULL, n0 = NULL, q0 = NULL;
    if (batched) {
        vn = var(cg, cg->i64, NULL);
        vq = var(cg, cg->i64, NULL);
        n0 = sdiv(cg, pc, G(PQ));
        q0 = sub(cg, pc, mul(cg, n0, G(PQ)));
    }
    Loop li, lk, lr;
    LLVMValueRef ir = for_begin(cg, &li, ci64(cg, 0), mc, MR);
    LLVMValueRef dst = gep(cg, ap, mul(cg, ir, kc));
    LLVMValueRef m0 = add(cg, ic, ir);
    LLVMValueRef full = icmp(cg, LLVMIntSLE, addc(cg, m0, MR), G(M));
    If f;
    if_begin(cg, &f, full);
    {
        if (batched) {
            set(cg, vn, n0);
            set(cg, vq, q0);
        }
        LLVMValueRef kk = for_begin(cg, &lk, ci64(cg, 0), kc, 1);
        LLVMValueRef koff = batched ? add(cg, mul(cg, get(cg, vn), G(AIMG)), get(cg, vq))
                                    : mul(cg, add(cg, pc, kk), G(ASK));
        LLVMValueRef src = gep(cg, A, add(cg, mul(cg, m0, G(ASM)), koff));
        for (int i = 0; i < MR; i++)
            st(cg, ld(cg, src, mulc(cg, G(ASM), i)), dst, addc(cg, mulc(cg, kk, MR), i));
        if (batched) cg_bump2(cg, vn, vq, G(PQ));
        for_end(cg, &lk);
    }
    if_else(cg, &f);
    {
        if (batched) {
            set(cg, vn, n0);
            set(cg, vq, q0);
        }
        LLVMValueRef kk = for_begin(cg, &lk, ci64(cg, 0), kc, 1);
        LLVMValueRef koff = batched ? add(cg, mul(cg, get(cg, vn), G(AIMG)), get(cg, vq))
                                    : mul(cg, add(cg, pc, kk), G(ASK));
        LLVMValueRef i = for_begin(cg, &lr, ci64(cg, 0), ci64(cg, MR), 1);
        LLVMValueRef m = add(cg, m0, i);
        LLVMValueRef v = var(cg, cg->f32, cf32(cg, 0));
        If g2;
        if_begin(cg, &g2, icmp(cg, LLVMIntSLT, m, G(M)));
        set(cg, v, ld(cg, A, add(cg, mul(cg, m, G(ASM)), koff)));
        if_end(cg, &g2);
        st(cg, get(cg, v), dst, add(cg, mulc(cg, kk, MR), i));
        for_end(cg, &lr);
        if (batched) cg_bump2(cg, vn, vq, G(PQ));
        for_end(cg, &lk);
    }
    if_end(cg, &f);
    for_end(cg, &li);
}

LLVMValueRef cg_vs32(Cg *cg, LLVMValueRef x64) { return vsplat_dyn_i32(cg, tr32(cg, x64)); }

/* NR floats at base[off], zero where mask is clear. */
LLVMValueRef cg_vnr_gather(Cg *cg, LLVMValueRef base, LLVMValueRef off, LLVMValueRef mask) {
    return cg_gather(cg, base, off, mask, LLVMConstNull(vnr(cg)));
}

/* Lanes at image rows ih, columns iw (vectors), offsets coff (image and
 * channel): *mask = inside the image and nmask, *off = the offsets (0 where
 * masked). */
static void conv_lanes(Cg *cg, const GemmV *g, LLVMValueRef ih, LLVMValueRef iw, LLVMValueRef coff, LLVMValueRef nmask,
                       LLVMValueRef *mask, LLVMValueRef *off) {
    LLVMValueRef okh = LLVMBuildICmp(cg->b, LLVMIntULT, ih, cg_vs32(cg, G(H)), "");
    LLVMValueRef okw = LLVMBuildICmp(cg->b, LLVMIntULT, iw, cg_vs32(cg, G(W)), "");
    *mask = LLVMBuildAnd(cg->b, LLVMBuildAnd(cg->b, okh, okw, ""), nmask, "");
    LLVMValueRef o = LLVMBuildAdd(cg->b, coff, LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, ih, cg_vs32(cg, G(W)), ""), iw, ""), "");
    *off = LLVMBuildSelect(cg->b, *mask, o, cg_vsplat_i32(cg, 0), "");
}

/* NR contiguous floats at p, lanes off mask zero (not read). */
static LLVMValueRef masked_load(Cg *cg, LLVMValueRef p, LLVMValueRef mask) {
    return cg_masked_load(cg, p, mask, LLVMConstNull(vnr(cg)));
}

LLVMValueRef cg_lane_ids(Cg *cg) {
    LLVMValueRef e[64];
    for (int i = 0; i < NR; i++) e[i] = ci32(cg, i);
    return LLVMConstVector(e, (unsigned)NR);
}

static LLVMValueRef vand(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAnd(cg->b, a, b, ""); }

/* B_ROW / B_COL: one panel at dst of columns n0.. element by element, zero
 * for columns >= jend (the last, partial panel). */
static void pack_b_edge(Cg *cg, const GemmV *g, LLVMValueRef dst, LLVMValueRef n0, LLVMValueRef jend,
                        LLVMValueRef pc, LLVMValueRef kc) {
    Loop lk, ln;
    LLVMValueRef kk = for_begin(cg, &lk, ci64(cg, 0), kc, 1);
    LLVMValueRef jj = for_begin(cg, &ln, ci64(cg, 0), ci64(cg, NR), 1);
    LLVMValueRef n = add(cg, n0, jj);
    LLVMValueRef v = var(cg, cg->f32, cf32(cg, 0));
    If f;
    if_begin(cg, &f, icmp(cg, LLVMIntSLT, n, jend));
    set(cg, v, ld(cg, G(B), add(cg, mul(cg, add(cg, pc, kk), G(BSK)), mul(cg, n, G(BSN)))));
    if_end(cg, &f);
    st(cg, get(cg, v), dst, add(cg, mulc(cg, kk, NR), jj));
    for_end(cg, &ln);
    for_end(cg, &lk);
}

/* bpack[jr*kc + kk*NR + jj] = B(pc+kk, jc+jr+jj), zero for columns >= jend. */
void cg_pack_b(Cg *cg, const GemmV *g, LLVMValueRef bp, LLVMValueRef jc, LLVMValueRef nc,
                   LLVMValueRef jend, LLVMValueRef pc, LLVMValueRef kc) {
    LLVMValueRef B = G(B);
    Loop lj, lk, ln;
    /* counters at pc: (c, r, s) for conv fwd rows, (n, p, q) for conv bwd-weight rows */
    LLVMValueRef vc = var(cg, cg->i64, NULL), vr = var(cg, cg->i64, NULL), vsx = var(cg, cg->i64, NULL);
    LLVMValueRef c0 = NULL, r0 = NULL, s0 = NULL, rows = NULL;
    if (g->bk == B_CONV_FWD || g->bk == B_PADROW) {
        c0 = sdiv(cg, pc, mul(cg, G(R), G(S)));
        r0 = srem(cg, sdiv(cg, pc, G(S)), G(R));
        s0 = srem(cg, pc, G(S));
    } else if (g->bk == B_CONV_BWDW || g->bk == B_DYT) {
        c0 = sdiv(cg, pc, G(PQ));
        LLVMValueRef rem = sub(cg, pc, mul(cg, c0, G(PQ)));
        r0 = sdiv(cg, rem, G(Q));
        s0 = sub(cg, rem, mul(cg, r0, G(Q)));
        rows = sdiv(cg, G(PQ), G(Q));   /* output rows per image */
    }
    if (g->bk == B_PADROW) {
        LLVMValueRef boff = LLVMBuildBitCast(cg->b, bp, LLVMPointerType(cg->i64, 0), "");
        cg_padrow_offsets(cg, g, boff, gep64(cg, boff, KC), c0, r0, s0, kc);
        return;
    }
    if (g->bk == B_ROW) {
        /* full panels row by row (one stream per row), then the last partial one */
        LLVMValueRef nfull = sdiv(cg, nc, ci64(cg, NR));
        LLVMValueRef kk = for_begin(cg, &lk, ci64(cg, 0), kc, 1);
        LLVMValueRef row = gep(cg, B, add(cg, mul(cg, add(cg, pc, kk), G(BSK)), jc));
        LLVMValueRef pj = for_begin(cg, &ln, ci64(cg, 0), nfull, 1);
        cg_vnr_st(cg, vnr_ld(cg, row, mulc(cg, pj, NR), 4), bp, add(cg, mul(cg, mulc(cg, pj, NR), kc), mulc(cg, kk, NR)), 32);
        for_end(cg, &ln);
        for_end(cg, &lk);
        LLVMValueRef j0 = mulc(cg, nfull, NR);
        If f;
        if_begin(cg, &f, icmp(cg, LLVMIntSLT, j0, nc));
        pack_b_edge(cg, g, gep(cg, bp, mul(cg, j0, kc)), add(cg, jc, j0), jend, pc, kc);
        if_end(cg, &f);
        return;
    }
    LLVMValueRef jr = for_begin(cg, &lj, ci64(cg, 0), nc, NR);
    LLVMValueRef dst = gep(cg, bp, mul(cg, jr, kc));
    LLVMValueRef n0 = add(cg, jc, jr);
    LLVMValueRef full = icmp(cg, LLVMIntSLE, addc(cg, n0, NR), jend);
    if (g->bk == B_DYT) {
        /* lanes: output channels j; rows l = (image, p, q') over the padded width */
        LLVMValueRef nv = LLVMBuildAdd(cg->b, cg_vs32(cg, n0), cg_lane_ids(cg), "");
        LLVMValueRef nmask = LLVMBuildICmp(cg->b, LLVMIntSLT, nv, cg_vs32(cg, jend), "");
        LLVMValueRef joff = LLVMBuildMul(cg->b, nv, cg_vs32(cg, G(BSN)), "");
        joff = LLVMBuildSelect(cg->b, nmask, joff, cg_vsplat_i32(cg, 0), "");
        /* NR is a multiple of 8 (two vectors of 4, 8 or 16 floats) */
        If fc;
        if_begin(cg, &fc, icmp(cg, LLVMIntEQ, G(Q), G(SW)));
        cg_dyt_pack_contig(cg, g, dst, n0, jend, joff, nmask, pc, kc);
        if_else(cg, &fc);
        set(cg, vc, c0);
        set(cg, vr, r0);
        set(cg, vsx, s0);
        LLVMValueRef kk = for_begin(cg, &lk, ci64(cg, 0), kc, 1);
        LLVMValueRef im = get(cg, vc), p = get(cg, vr), q = get(cg, vsx);
        LLVMValueRef ok = icmp(cg, LLVMIntSLT, q, G(SW));
        LLVMValueRef mask = vand(cg, nmask, LLVMBuildSelect(cg->b, ok, LLVMConstAllOnes(LLVMVectorType(cg->i1, (unsigned)NR)),
                                                             LLVMConstNull(LLVMVectorType(cg->i1, (unsigned)NR)), ""));
        LLVMValueRef qa = LLVMBuildSelect(cg->b, ok, q, ci64(cg, 0), "");
        LLVMValueRef base = gep(cg, B, add(cg, mul(cg, im, G(AIMG)), add(cg, mul(cg, p, G(SW)), qa)));
        cg_vnr_st(cg, cg_vnr_gather(cg, base, joff, mask), dst, mulc(cg, kk, NR), 32);
        cg_bump3(cg, vc, vr, vsx, rows, G(Q));   /* q'++, carrying into p and the image */
        for_end(cg, &lk);
        if_end(cg, &fc);
    } else if (g->bk == B_COL) {
        If f;
        if_begin(cg, &f, full);
        {
            LLVMValueRef jj = for_begin(cg, &ln, ci64(cg, 0), ci64(cg, NR), 1);
            LLVMValueRef col = gep(cg, B, add(cg, mul(cg, add(cg, n0, jj), G(BSN)), pc));
            LLVMValueRef kk = for_begin(cg, &lk, ci64(cg, 0), kc, 1);
            st(cg, ld(cg, col, kk), dst, add(cg, mulc(cg, kk, NR), jj));
            for_end(cg, &lk);
            for_end(cg, &ln);
        }
        if_else(cg, &f);
        pack_b_edge(cg, g, dst, n0, jend, pc, kc);
        if_end(cg, &f);
    } else {
        LLVMValueRef nv = LLVMBuildAdd(cg->b, cg_vs32(cg, n0), cg_lane_ids(cg), "");
        LLVMValueRef nmask = LLVMBuildICmp(cg->b, LLVMIntSLT, nv, cg_vs32(cg, jend), "");
        LLVMValueRef hw = mul(cg, G(H), G(W));
        if (g->bk == B_CONV_FWD) {
            /* columns are (image, p, q); rows are (c, r, s) */
            LLVMValueRef imv = LLVMBuildSDiv(cg->b, nv, cg_vs32(cg, G(PQ)), "");
            LLVMValueRef pix = LLVMBuildSub(cg->b, nv, LLVMBuildMul(cg->b, imv, cg_vs32(cg, G(PQ)), ""), "");
            LLVMValueRef pv = LLVMBuildSDiv(cg->b, pix, cg_vs32(cg, G(Q)), "");
            LLVMValueRef qv = LLVMBuildSub(cg->b, pix, LLVMBuildMul(cg->b, pv, cg_vs32(cg, G(Q)), ""), "");
            LLVMValueRef hb = LLVMBuildSub(cg->b, LLVMBuildMul(cg->b, pv, cg_vs32(cg, G(SH)), ""), cg_vs32(cg, G(PH)), "");
            LLVMValueRef wb = LLVMBuildSub(cg->b, LLVMBuildMul(cg->b, qv, cg_vs32(cg, G(SW)), ""), cg_vs32(cg, G(PW)), "");
            LLVMValueRef ioff = LLVMBuildMul(cg->b, imv, cg_vs32(cg, G(XIMG)), "");
            /* a whole panel in one image row when stride 1 and one output row */
            LLVMValueRef im0 = sdiv(cg, n0, G(PQ));
            LLVMValueRef pix0 = sub(cg, n0, mul(cg, im0, G(PQ)));
            LLVMValueRef p0 = sdiv(cg, pix0, G(Q));
            LLVMValueRef q0 = sub(cg, pix0, mul(cg, p0, G(Q)));
            LLVMValueRef contig = and1(cg, and1(cg, full, icmp(cg, LLVMIntEQ, G(SW), ci64(cg, 1))),
                                       icmp(cg, LLVMIntSLE, addc(cg, q0, NR), G(Q)));
            LLVMValueRef h0 = sub(cg, mul(cg, p0, G(SH)), G(PH)), w0 = sub(cg, q0, G(PW));
            LLVMValueRef base0 = gep(cg, B, mul(cg, im0, G(XIMG)));
            /* (r, s) outer, c inner: the lanes' mask and offsets depend on
             * (r, s) only, so each c costs one load (rows k = c*RS + rs of
             * [pc, pc + kc)) */
            LLVMValueRef RS = mul(cg, G(R), G(S));
            /* stride 1 with the output the input's size: lane l of image
             * im0 reads x at im0*XIMG + (n0 + l - im0*PQ) + (r-PH)*W + (s-PW),
             * contiguous in l, and so do the lanes of the next image: when
             * the panel spans at most two images, two masked loads replace
             * the gather (which this AMD CPU runs slowly) */
            LLVMValueRef split = sub(cg, mul(cg, addc(cg, im0, 1), G(PQ)), n0);
            LLVMValueRef same2 = and1(cg, and1(cg, icmp(cg, LLVMIntEQ, G(SH), ci64(cg, 1)), icmp(cg, LLVMIntEQ, G(SW), ci64(cg, 1))),
                                      and1(cg, and1(cg, icmp(cg, LLVMIntEQ, G(Q), G(W)), icmp(cg, LLVMIntEQ, G(PQ), hw)),
                                           icmp(cg, LLVMIntSGE, add(cg, split, G(PQ)), ci64(cg, NR))));
            LLVMValueRef first = LLVMBuildICmp(cg->b, LLVMIntSLT, cg_lane_ids(cg), cg_vs32(cg, split), "");
            Loop lrs, lcc;
            If f, f2;
            if_begin(cg, &f, contig);
            /* path 0: one image row; 1: same size, two masked loads; 2: gathers */
            for (int path = 0; path < 3; path++) {
                if (path == 1) {
                    if_else(cg, &f);
                    if_begin(cg, &f2, same2);
                }
                if (path == 2) if_else(cg, &f2);
                LLVMValueRef rs = for_begin(cg, &lrs, ci64(cg, 0), RS, 1);
                LLVMValueRef r = sdiv(cg, rs, G(S)), sx = sub(cg, rs, mul(cg, r, G(S)));
                LLVMValueRef clo = sdiv(cg, add(cg, sub(cg, pc, rs), addc(cg, RS, -1)), RS);
                LLVMValueRef t = sub(cg, addc(cg, add(cg, pc, kc), -1), rs);
                LLVMValueRef cend = LLVMBuildSelect(cg->b, icmp(cg, LLVMIntSGE, t, ci64(cg, 0)),
                                                    addc(cg, sdiv(cg, t, RS), 1), ci64(cg, 0), "");
                LLVMValueRef mask, off, s1 = NULL, s2 = NULL, m1 = NULL, m2 = NULL;
                if (path == 1) {
                    LLVMValueRef delta = add(cg, mul(cg, sub(cg, r, G(PH)), G(W)), sub(cg, sx, G(PW)));
                    conv_lanes(cg, g, LLVMBuildAdd(cg->b, hb, cg_vs32(cg, r), ""), LLVMBuildAdd(cg->b, wb, cg_vs32(cg, sx), ""),
                               ioff, nmask, &mask, &off);
                    s1 = add(cg, add(cg, mul(cg, im0, G(XIMG)), pix0), delta);
                    s2 = add(cg, s1, sub(cg, G(XIMG), G(PQ)));
                    m1 = vand(cg, mask, first);
                    m2 = vand(cg, mask, LLVMBuildNot(cg->b, first, ""));
                } else if (path == 0) {
                    /* lanes iw0 + lane in [0, W), row ih0 in [0, H): one masked load */
                    LLVMValueRef ih0 = add(cg, h0, r), iw0 = add(cg, w0, sx);
                    LLVMValueRef iwv = LLVMBuildAdd(cg->b, cg_vs32(cg, iw0), cg_lane_ids(cg), "");
                    LLVMValueRef m = LLVMBuildICmp(cg->b, LLVMIntULT, iwv, cg_vs32(cg, G(W)), "");
                    LLVMValueRef okh = LLVMBuildICmp(cg->b, LLVMIntULT, cg_vs32(cg, ih0), cg_vs32(cg, G(H)), "");
                    mask = vand(cg, m, okh);
                    off = add(cg, mul(cg, ih0, G(W)), iw0);
                } else {
                    conv_lanes(cg, g, LLVMBuildAdd(cg->b, hb, cg_vs32(cg, r), ""), LLVMBuildAdd(cg->b, wb, cg_vs32(cg, sx), ""),
                               ioff, nmask, &mask, &off);
                }
                LLVMValueRef c = for_begin(cg, &lcc, clo, cend, 1);
                LLVMValueRef k = sub(cg, add(cg, mul(cg, c, RS), rs), pc);
                LLVMValueRef v;
                if (path == 0) {
                    v = masked_load(cg, LLVMBuildGEP2(cg->b, cg->f32, gep(cg, base0, mul(cg, c, hw)), &off, 1, ""), mask);
                } else if (path == 1) {
                    LLVMValueRef pl = gep(cg, B, mul(cg, c, hw));
                    LLVMValueRef v1 = masked_load(cg, LLVMBuildGEP2(cg->b, cg->f32, pl, &s1, 1, ""), m1);
                    LLVMValueRef v2 = masked_load(cg, LLVMBuildGEP2(cg->b, cg->f32, pl, &s2, 1, ""), m2);
                    v = LLVMBuildSelect(cg->b, m1, v1, v2, "");
                } else {
                    v = cg_vnr_gather(cg, gep(cg, B, mul(cg, c, hw)), off, mask);
                }
                cg_vnr_st(cg, v, dst, mulc(cg, k, NR), 32);
                for_end(cg, &lcc);
                for_end(cg, &lrs);
            }
            if_end(cg, &f2);
            if_end(cg, &f);
        } else {
            /* columns are (c, r, s); rows are (image, p, q) */
            LLVMValueRef rs = mul(cg, G(R), G(S));
            LLVMValueRef cv = LLVMBuildSDiv(cg->b, nv, cg_vs32(cg, rs), "");
            LLVMValueRef rem = LLVMBuildSub(cg->b, nv, LLVMBuildMul(cg->b, cv, cg_vs32(cg, rs), ""), "");
            LLVMValueRef rv = LLVMBuildSDiv(cg->b, rem, cg_vs32(cg, G(S)), "");
            LLVMValueRef sv = LLVMBuildSub(cg->b, rem, LLVMBuildMul(cg->b, rv, cg_vs32(cg, G(S)), ""), "");
            LLVMValueRef coff = LLVMBuildMul(cg->b, cv, cg_vs32(cg, hw), "");
            set(cg, vc, c0);
            set(cg, vr, r0);
            set(cg, vsx, s0);
            LLVMValueRef kk = for_begin(cg, &lk, ci64(cg, 0), kc, 1);
            LLVMValueRef im = get(cg, vc), p = get(cg, vr), q = get(cg, vsx);
            LLVMValueRef hb = cg_vs32(cg, sub(cg, mul(cg, p, G(SH)), G(PH)));
            LLVMValueRef wb = cg_vs32(cg, sub(cg, mul(cg, q, G(SW)), G(PW)));
            LLVMValueRef mask, off;
            conv_lanes(cg, g, LLVMBuildAdd(cg->b, hb, rv, ""), LLVMBuildAdd(cg->b, wb, sv, ""), coff, nmask, &mask, &off);
            cg_vnr_st(cg, cg_vnr_gather(cg, gep(cg, B, mul(cg, im, G(XIMG))), off, mask), dst, mulc(cg, kk, NR), 32);
            cg_bump3(cg, vc, vr, vsx, rows, G(Q));   /* q++, carrying into p and the image */
            for_end(cg, &lk);
        }
    }
    for_end(cg, &lj);
}
