/* gemm.c - conv2d and linear (forward, backward data, backward weight) as
 * packed GEMMs.
 *
 * Every product is C[M,N] += A[M,K] B[K,N] with C row-major (leading
 * dimension ldc).  A and B are read through a description (strided, or an
 * implicit im2col of a conv input) and packed, block by block, into panels:
 * A into MR-row panels [kc][MR], B into NR-column panels [kc][NR], zero
 * padded.  The micro-kernel keeps an MR x NR tile of C in MR*NR/vw vector
 * registers (6 x 16 = 12 <8 x float> with AVX2) and does one broadcast and
 * NR/vw FMAs per row per k.  Blocking (Goto/BLIS): jc over NC columns, pc
 * over KC, ic over MC rows, then jr over NR and ir over MR, so a B panel
 * stays in L1 while the A block streams from L2.
 *
 *   conv fwd, per image:   y_n[K, PQ]   = W[K, CRS] im2col(x_n)[CRS, PQ] (+ b)
 *   conv bwd data:         dcol[CRS,PQ] = W^T dy_n, then col2im into dx_n
 *   conv bwd weight:       dW[K, CRS]  += dy_n[K, PQ] im2col(x_n)^T
 *   linear fwd:            y  = x W^T (+ b);  bwd data: dx = dy W;
 *   linear bwd weight:     dW = dy^T x
 * Conv kernels split images across threads (bwd weight into per-thread
 * partial sums reduced afterwards); linear kernels split columns of C.
 * 1x1 stride-1 unpadded convs skip im2col. */
#include "cg.h"

#include <stdio.h>
#include <string.h>

#include "../../runtime/pool.h"

enum { MR = 6, KC = 256, MC = MR * 20 };
#define NR (2 * cg->vw)
#define NC (NR * 64)

typedef enum { B_ROW, B_COL, B_CONV_FWD, B_CONV_BWDW } BKind;

typedef struct {
    int64_t c, h, w, k, r, s, sh, sw, ph, pw, p, q;
} ConvDims;

typedef struct {
    int64_t M, N, K;
    int64_t a_sm, a_sk;     /* A(m,k) = A[m*a_sm + k*a_sk] */
    BKind bk;
    int64_t b_sk, b_sn;     /* B_ROW / B_COL: B(k,n) = B[k*b_sk + n*b_sn] */
    ConvDims cv;            /* B_CONV_*: B is an image x[C, H, W] */
    int64_t ldc;
} Gemm;

/* a multiple of 16 floats, so every thread's block stays 64-byte aligned */
static int64_t gemm_scratch_floats(const Cg *cg) {
    return (int64_t)MC * KC + (int64_t)KC * NC + MR * NR + 64;
}

static LLVMTypeRef vnr(Cg *cg) { return LLVMVectorType(cg->f32, (unsigned)NR); }
static LLVMTypeRef vnri(Cg *cg) { return LLVMVectorType(cg->i32, (unsigned)NR); }
static LLVMValueRef ci32(Cg *cg, int64_t x) { return LLVMConstInt(cg->i32, (unsigned long long)x, 1); }
static LLVMValueRef vsplat_i32(Cg *cg, int64_t x) {
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
static void vnr_st(Cg *cg, LLVMValueRef v, LLVMValueRef fptr, LLVMValueRef idx, unsigned align) {
    LLVMValueRef p = LLVMBuildBitCast(cg->b, gep(cg, fptr, idx), LLVMPointerType(vnr(cg), 0), "");
    LLVMSetAlignment(LLVMBuildStore(cg->b, v, p), align);
}

/* void ukr(float *Ap, float *Bp, float *C, i64 ldc, i64 kc):
 * C[MR, NR] += Ap^T Bp over kc packed steps. */
static LLVMValueRef micro_kernel(Cg *cg) {
    if (cg->ukr) return cg->ukr;
    LLVMValueRef save_fn = cg->fn;
    LLVMBasicBlockRef save_bb = LLVMGetInsertBlock(cg->b);
    LLVMTypeRef pt[5] = {cg->pf, cg->pf, cg->pf, cg->i64, cg->i64};
    LLVMValueRef f = cg_fn_new(cg, "netc_ukr", LLVMFunctionType(cg->v, pt, 5, 0), 1);
    for (unsigned i = 0; i < 3; i++) {
        unsigned kind = LLVMGetEnumAttributeKindForName("noalias", 7);
        LLVMAddAttributeAtIndex(f, i + 1, LLVMCreateEnumAttribute(cg->ctx, kind, 0));
    }
    LLVMValueRef A = LLVMGetParam(f, 0), B = LLVMGetParam(f, 1), C = LLVMGetParam(f, 2);
    LLVMValueRef ldc = LLVMGetParam(f, 3), kc = LLVMGetParam(f, 4);
    int nv = NR / cg->vw;
    LLVMValueRef acc[MR][4];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < nv; j++) acc[i][j] = var(cg, cg->vf, LLVMConstNull(cg->vf));
    LLVMValueRef fma = cg_intrinsic(cg, "llvm.fma", &cg->vf, 1);
    Loop lk;
    LLVMValueRef k = for_begin(cg, &lk, ci64(cg, 0), kc, 1);
    LLVMValueRef bv[4];
    for (int j = 0; j < nv; j++) {
        bv[j] = vld(cg, B, addc(cg, mulc(cg, k, NR), j * cg->vw));
        LLVMSetAlignment(bv[j], 32);
    }
    for (int i = 0; i < MR; i++) {
        LLVMValueRef a = splat(cg, ld(cg, A, addc(cg, mulc(cg, k, MR), i)));
        for (int j = 0; j < nv; j++) {
            LLVMValueRef args[3] = {a, bv[j], get(cg, acc[i][j])};
            set(cg, acc[i][j], cg_call(cg, fma, args, 3));
        }
    }
    for_end(cg, &lk);
    for (int i = 0; i < MR; i++) {
        LLVMValueRef row = mul(cg, ci64(cg, i), ldc);
        for (int j = 0; j < nv; j++) {
            LLVMValueRef idx = addc(cg, row, j * cg->vw);
            vst(cg, LLVMBuildFAdd(cg->b, vld(cg, C, idx), get(cg, acc[i][j]), ""), C, idx);
        }
    }
    LLVMBuildRetVoid(cg->b);
    cg->ukr = f;
    cg->fn = save_fn;
    if (save_bb) LLVMPositionBuilderAtEnd(cg->b, save_bb);
    return f;
}

/* The GEMM driver is one function per B kind, shared by every kernel of the
 * module (shapes arrive as runtime arguments), which keeps compile time low;
 * the micro-kernel does all the arithmetic and does not depend on shapes. */
enum { GA_A, GA_B, GA_C, GA_SCR, GA_JB, GA_JE, GA_M, GA_N, GA_K, GA_ASM, GA_ASK, GA_BSK, GA_BSN, GA_LDC,
       GA_CC, GA_H, GA_W, GA_R, GA_S, GA_SH, GA_SW, GA_PH, GA_PW, GA_Q, GA_COUNT };

typedef struct {
    BKind bk;
    LLVMValueRef v[GA_COUNT];   /* i64 (pointers are loaded as float*) */
} GemmV;

#define G(x) (g->v[GA_##x])

/* apack[ir*kc + kk*MR + i] = A(ic+ir+i, pc+kk), zero for rows >= M. */
static void pack_a(Cg *cg, const GemmV *g, LLVMValueRef ap, LLVMValueRef ic, LLVMValueRef mc,
                   LLVMValueRef pc, LLVMValueRef kc) {
    LLVMValueRef A = G(A);
    Loop li, lk, lr;
    LLVMValueRef ir = for_begin(cg, &li, ci64(cg, 0), mc, MR);
    LLVMValueRef dst = gep(cg, ap, mul(cg, ir, kc));
    LLVMValueRef m0 = add(cg, ic, ir);
    LLVMValueRef full = icmp(cg, LLVMIntSLE, addc(cg, m0, MR), G(M));
    If f;
    if_begin(cg, &f, full);
    {
        LLVMValueRef kk = for_begin(cg, &lk, ci64(cg, 0), kc, 1);
        LLVMValueRef src = gep(cg, A, add(cg, mul(cg, m0, G(ASM)), mul(cg, add(cg, pc, kk), G(ASK))));
        for (int i = 0; i < MR; i++)
            st(cg, ld(cg, src, mulc(cg, G(ASM), i)), dst, addc(cg, mulc(cg, kk, MR), i));
        for_end(cg, &lk);
    }
    if_else(cg, &f);
    {
        LLVMValueRef kk = for_begin(cg, &lk, ci64(cg, 0), kc, 1);
        LLVMValueRef i = for_begin(cg, &lr, ci64(cg, 0), ci64(cg, MR), 1);
        LLVMValueRef m = add(cg, m0, i);
        LLVMValueRef v = var(cg, cg->f32, cf32(cg, 0));
        If g2;
        if_begin(cg, &g2, icmp(cg, LLVMIntSLT, m, G(M)));
        set(cg, v, ld(cg, A, add(cg, mul(cg, m, G(ASM)), mul(cg, add(cg, pc, kk), G(ASK)))));
        if_end(cg, &g2);
        st(cg, get(cg, v), dst, add(cg, mulc(cg, kk, MR), i));
        for_end(cg, &lr);
        for_end(cg, &lk);
    }
    if_end(cg, &f);
    for_end(cg, &li);
}

static LLVMValueRef tr32(Cg *cg, LLVMValueRef x) { return LLVMBuildTrunc(cg->b, x, cg->i32, ""); }
static LLVMValueRef vs32(Cg *cg, LLVMValueRef x64) { return vsplat_dyn_i32(cg, tr32(cg, x64)); }

/* NR values of an image x[C, H, W] at rows ih, columns iw (vectors), channel
 * offsets coff, masked by bounds and nmask; zero elsewhere. */
static LLVMValueRef conv_gather(Cg *cg, const GemmV *g, LLVMValueRef ih, LLVMValueRef iw, LLVMValueRef coff,
                                LLVMValueRef nmask) {
    LLVMValueRef okh = LLVMBuildICmp(cg->b, LLVMIntULT, ih, vs32(cg, G(H)), "");
    LLVMValueRef okw = LLVMBuildICmp(cg->b, LLVMIntULT, iw, vs32(cg, G(W)), "");
    LLVMValueRef mask = LLVMBuildAnd(cg->b, LLVMBuildAnd(cg->b, okh, okw, ""), nmask, "");
    LLVMValueRef off = LLVMBuildAdd(cg->b, coff, LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, ih, vs32(cg, G(W)), ""), iw, ""), "");
    off = LLVMBuildSelect(cg->b, mask, off, vsplat_i32(cg, 0), "");
    LLVMValueRef ptrs = LLVMBuildInBoundsGEP2(cg->b, cg->f32, G(B), &off, 1, "");
    LLVMTypeRef ovl[2] = {vnr(cg), LLVMTypeOf(ptrs)};
    LLVMValueRef gather = cg_intrinsic(cg, "llvm.masked.gather", ovl, 2);
    LLVMValueRef a[4] = {ptrs, ci32(cg, 4), mask, LLVMConstNull(vnr(cg))};
    return cg_call(cg, gather, a, 4);
}

static LLVMValueRef lane_ids(Cg *cg) {
    LLVMValueRef e[64];
    for (int i = 0; i < NR; i++) e[i] = ci32(cg, i);
    return LLVMConstVector(e, (unsigned)NR);
}

/* (a, b) += 1 with b wrapping at bn (counters instead of divisions). */
static void bump2(Cg *cg, LLVMValueRef a, LLVMValueRef b, LLVMValueRef bn) {
    LLVMValueRef nb = addc(cg, get(cg, b), 1);
    LLVMValueRef wrap = icmp(cg, LLVMIntEQ, nb, bn);
    set(cg, b, LLVMBuildSelect(cg->b, wrap, ci64(cg, 0), nb, ""));
    set(cg, a, LLVMBuildSelect(cg->b, wrap, addc(cg, get(cg, a), 1), get(cg, a), ""));
}

/* bpack[jr*kc + kk*NR + jj] = B(pc+kk, jc+jr+jj), zero for columns >= jend. */
static void pack_b(Cg *cg, const GemmV *g, LLVMValueRef bp, LLVMValueRef jc, LLVMValueRef nc,
                   LLVMValueRef jend, LLVMValueRef pc, LLVMValueRef kc) {
    LLVMValueRef B = G(B);
    Loop lj, lk, ln;
    /* counters at pc: (c, r, s) for conv fwd rows, (p, q) for conv bwd-weight rows */
    LLVMValueRef vc = var(cg, cg->i64, NULL), vr = var(cg, cg->i64, NULL), vsx = var(cg, cg->i64, NULL);
    LLVMValueRef c0 = NULL, r0 = NULL, s0 = NULL;
    if (g->bk == B_CONV_FWD) {
        c0 = sdiv(cg, pc, mul(cg, G(R), G(S)));
        r0 = srem(cg, sdiv(cg, pc, G(S)), G(R));
        s0 = srem(cg, pc, G(S));
    } else if (g->bk == B_CONV_BWDW) {
        r0 = sdiv(cg, pc, G(Q));
        s0 = srem(cg, pc, G(Q));
    }
    LLVMValueRef jr = for_begin(cg, &lj, ci64(cg, 0), nc, NR);
    LLVMValueRef dst = gep(cg, bp, mul(cg, jr, kc));
    LLVMValueRef n0 = add(cg, jc, jr);
    LLVMValueRef full = icmp(cg, LLVMIntSLE, addc(cg, n0, NR), jend);
    if (g->bk == B_ROW || g->bk == B_COL) {
        If f;
        if_begin(cg, &f, full);
        if (g->bk == B_ROW) {
            LLVMValueRef kk = for_begin(cg, &lk, ci64(cg, 0), kc, 1);
            LLVMValueRef src = add(cg, mul(cg, add(cg, pc, kk), G(BSK)), n0);
            vnr_st(cg, vnr_ld(cg, B, src, 4), dst, mulc(cg, kk, NR), 32);
            for_end(cg, &lk);
        } else {
            LLVMValueRef jj = for_begin(cg, &ln, ci64(cg, 0), ci64(cg, NR), 1);
            LLVMValueRef col = gep(cg, B, add(cg, mul(cg, add(cg, n0, jj), G(BSN)), pc));
            LLVMValueRef kk = for_begin(cg, &lk, ci64(cg, 0), kc, 1);
            st(cg, ld(cg, col, kk), dst, add(cg, mulc(cg, kk, NR), jj));
            for_end(cg, &lk);
            for_end(cg, &ln);
        }
        if_else(cg, &f);
        {
            LLVMValueRef kk = for_begin(cg, &lk, ci64(cg, 0), kc, 1);
            LLVMValueRef jj = for_begin(cg, &ln, ci64(cg, 0), ci64(cg, NR), 1);
            LLVMValueRef n = add(cg, n0, jj);
            LLVMValueRef v = var(cg, cg->f32, cf32(cg, 0));
            If g2;
            if_begin(cg, &g2, icmp(cg, LLVMIntSLT, n, jend));
            set(cg, v, ld(cg, B, add(cg, mul(cg, add(cg, pc, kk), G(BSK)), mul(cg, n, G(BSN)))));
            if_end(cg, &g2);
            st(cg, get(cg, v), dst, add(cg, mulc(cg, kk, NR), jj));
            for_end(cg, &ln);
            for_end(cg, &lk);
        }
        if_end(cg, &f);
    } else {
        LLVMValueRef nv = LLVMBuildAdd(cg->b, vs32(cg, n0), lane_ids(cg), "");
        LLVMValueRef nmask = LLVMBuildICmp(cg->b, LLVMIntSLT, nv, vs32(cg, jend), "");
        LLVMValueRef hw = mul(cg, G(H), G(W));
        if (g->bk == B_CONV_FWD) {
            /* columns are output pixels (p, q); rows are (c, r, s) */
            LLVMValueRef pv = LLVMBuildSDiv(cg->b, nv, vs32(cg, G(Q)), "");
            LLVMValueRef qv = LLVMBuildSub(cg->b, nv, LLVMBuildMul(cg->b, pv, vs32(cg, G(Q)), ""), "");
            LLVMValueRef hb = LLVMBuildSub(cg->b, LLVMBuildMul(cg->b, pv, vs32(cg, G(SH)), ""), vs32(cg, G(PH)), "");
            LLVMValueRef wb = LLVMBuildSub(cg->b, LLVMBuildMul(cg->b, qv, vs32(cg, G(SW)), ""), vs32(cg, G(PW)), "");
            /* a whole panel in one image row when stride 1 and one output row */
            LLVMValueRef p0 = sdiv(cg, n0, G(Q)), q0 = srem(cg, n0, G(Q));
            LLVMValueRef contig = and1(cg, and1(cg, full, icmp(cg, LLVMIntEQ, G(SW), ci64(cg, 1))),
                                       icmp(cg, LLVMIntSLE, addc(cg, q0, NR), G(Q)));
            LLVMValueRef h0 = sub(cg, mul(cg, p0, G(SH)), G(PH)), w0 = sub(cg, q0, G(PW));
            set(cg, vc, c0);
            set(cg, vr, r0);
            set(cg, vsx, s0);
            LLVMValueRef kk = for_begin(cg, &lk, ci64(cg, 0), kc, 1);
            LLVMValueRef c = get(cg, vc), r = get(cg, vr), s = get(cg, vsx);
            LLVMValueRef ih0 = add(cg, h0, r), iw0 = add(cg, w0, s);
            LLVMValueRef fast = and1(cg, contig, and1(cg, icmp(cg, LLVMIntULT, ih0, G(H)),
                                 and1(cg, icmp(cg, LLVMIntSGE, iw0, ci64(cg, 0)),
                                      icmp(cg, LLVMIntSLE, addc(cg, iw0, NR), G(W)))));
            If f;
            if_begin(cg, &f, fast);
            vnr_st(cg, vnr_ld(cg, B, add(cg, mul(cg, c, hw), add(cg, mul(cg, ih0, G(W)), iw0)), 4),
                   dst, mulc(cg, kk, NR), 32);
            if_else(cg, &f);
            LLVMValueRef v = conv_gather(cg, g, LLVMBuildAdd(cg->b, hb, vs32(cg, r), ""),
                                         LLVMBuildAdd(cg->b, wb, vs32(cg, s), ""), vs32(cg, mul(cg, c, hw)), nmask);
            vnr_st(cg, v, dst, mulc(cg, kk, NR), 32);
            if_end(cg, &f);
            /* s++, carrying into r and c */
            LLVMValueRef ns = addc(cg, s, 1), ws = icmp(cg, LLVMIntEQ, ns, G(S));
            set(cg, vsx, LLVMBuildSelect(cg->b, ws, ci64(cg, 0), ns, ""));
            LLVMValueRef nr = LLVMBuildSelect(cg->b, ws, addc(cg, r, 1), r, "");
            LLVMValueRef wr = icmp(cg, LLVMIntEQ, nr, G(R));
            set(cg, vr, LLVMBuildSelect(cg->b, wr, ci64(cg, 0), nr, ""));
            set(cg, vc, LLVMBuildSelect(cg->b, wr, addc(cg, c, 1), c, ""));
            for_end(cg, &lk);
        } else {
            /* columns are (c, r, s); rows are output pixels (p, q) */
            LLVMValueRef rs = mul(cg, G(R), G(S));
            LLVMValueRef cv = LLVMBuildSDiv(cg->b, nv, vs32(cg, rs), "");
            LLVMValueRef rem = LLVMBuildSub(cg->b, nv, LLVMBuildMul(cg->b, cv, vs32(cg, rs), ""), "");
            LLVMValueRef rv = LLVMBuildSDiv(cg->b, rem, vs32(cg, G(S)), "");
            LLVMValueRef sv = LLVMBuildSub(cg->b, rem, LLVMBuildMul(cg->b, rv, vs32(cg, G(S)), ""), "");
            LLVMValueRef coff = LLVMBuildMul(cg->b, cv, vs32(cg, hw), "");
            set(cg, vr, r0);
            set(cg, vsx, s0);
            LLVMValueRef kk = for_begin(cg, &lk, ci64(cg, 0), kc, 1);
            LLVMValueRef p = get(cg, vr), q = get(cg, vsx);
            LLVMValueRef hb = vs32(cg, sub(cg, mul(cg, p, G(SH)), G(PH)));
            LLVMValueRef wb = vs32(cg, sub(cg, mul(cg, q, G(SW)), G(PW)));
            LLVMValueRef v = conv_gather(cg, g, LLVMBuildAdd(cg->b, hb, rv, ""), LLVMBuildAdd(cg->b, wb, sv, ""), coff, nmask);
            vnr_st(cg, v, dst, mulc(cg, kk, NR), 32);
            bump2(cg, vr, vsx, G(Q));
            for_end(cg, &lk);
        }
    }
    for_end(cg, &lj);
}

/* void netc_gemm<kind>(i64 *args): C[:, jb:je] += A B[:, jb:je] on the
 * calling thread, with gemm_scratch_floats() floats of scratch. */
static LLVMValueRef gemm_driver(Cg *cg, BKind bk) {
    char name[32];
    snprintf(name, sizeof name, "netc_gemm%d", (int)bk);
    LLVMValueRef f = LLVMGetNamedFunction(cg->mod, name);
    if (f) return f;
    LLVMValueRef ukr = micro_kernel(cg);
    LLVMValueRef save_fn = cg->fn;
    LLVMBasicBlockRef save_bb = LLVMGetInsertBlock(cg->b);
    LLVMTypeRef pi64 = LLVMPointerType(cg->i64, 0);
    f = cg_fn_new(cg, name, LLVMFunctionType(cg->v, &pi64, 1, 0), 1);
    GemmV gv = {.bk = bk}, *g = &gv;
    for (int i = 0; i < GA_COUNT; i++) {
        LLVMValueRef idx = ci64(cg, i);
        gv.v[i] = LLVMBuildLoad2(cg->b, cg->i64, LLVMBuildInBoundsGEP2(cg->b, cg->i64, LLVMGetParam(f, 0), &idx, 1, ""), "");
        if (i <= GA_SCR) gv.v[i] = LLVMBuildIntToPtr(cg->b, gv.v[i], cg->pf, "");
    }
    LLVMValueRef ap = G(SCR);
    LLVMValueRef bp = gep(cg, ap, ci64(cg, (int64_t)MC * KC));
    LLVMValueRef tile = gep(cg, bp, ci64(cg, (int64_t)KC * NC));
    LLVMValueRef jend = G(JE);
    Loop ljc, lpc, lic, ljr, lir;
    LLVMValueRef jc = for_begin(cg, &ljc, G(JB), jend, NC);
    LLVMValueRef nc = imin(cg, ci64(cg, NC), sub(cg, jend, jc));
    LLVMValueRef pc = for_begin(cg, &lpc, ci64(cg, 0), G(K), KC);
    LLVMValueRef kc = imin(cg, ci64(cg, KC), sub(cg, G(K), pc));
    pack_b(cg, g, bp, jc, nc, jend, pc, kc);
    LLVMValueRef ic = for_begin(cg, &lic, ci64(cg, 0), G(M), MC);
    LLVMValueRef mc = imin(cg, ci64(cg, MC), sub(cg, G(M), ic));
    pack_a(cg, g, ap, ic, mc, pc, kc);
    LLVMValueRef jr = for_begin(cg, &ljr, ci64(cg, 0), nc, NR);
    LLVMValueRef nr = imin(cg, ci64(cg, NR), sub(cg, nc, jr));
    LLVMValueRef ir = for_begin(cg, &lir, ci64(cg, 0), mc, MR);
    LLVMValueRef mr = imin(cg, ci64(cg, MR), sub(cg, mc, ir));
    LLVMValueRef apan = gep(cg, ap, mul(cg, ir, kc)), bpan = gep(cg, bp, mul(cg, jr, kc));
    LLVMValueRef cidx = add(cg, mul(cg, add(cg, ic, ir), G(LDC)), add(cg, jc, jr));
    LLVMValueRef full = and1(cg, icmp(cg, LLVMIntEQ, mr, ci64(cg, MR)), icmp(cg, LLVMIntEQ, nr, ci64(cg, NR)));
    If fi;
    if_begin(cg, &fi, full);
    {
        LLVMValueRef a[5] = {apan, bpan, gep(cg, G(C), cidx), G(LDC), kc};
        cg_call(cg, ukr, a, 5);
    }
    if_else(cg, &fi);
    {
        cg_memset0(cg, tile, ci64(cg, MR * NR));
        LLVMValueRef a[5] = {apan, bpan, tile, ci64(cg, NR), kc};
        cg_call(cg, ukr, a, 5);
        Loop li, lj;
        LLVMValueRef i = for_begin(cg, &li, ci64(cg, 0), mr, 1);
        LLVMValueRef j = for_begin(cg, &lj, ci64(cg, 0), nr, 1);
        LLVMValueRef ci = add(cg, cidx, add(cg, mul(cg, i, G(LDC)), j));
        LLVMValueRef t = ld(cg, tile, add(cg, mulc(cg, i, NR), j));
        st(cg, LLVMBuildFAdd(cg->b, ld(cg, G(C), ci), t, ""), G(C), ci);
        for_end(cg, &lj);
        for_end(cg, &li);
    }
    if_end(cg, &fi);
    for_end(cg, &lir);
    for_end(cg, &ljr);
    for_end(cg, &lic);
    for_end(cg, &lpc);
    for_end(cg, &ljc);
    LLVMBuildRetVoid(cg->b);
    cg->fn = save_fn;
    LLVMPositionBuilderAtEnd(cg->b, save_bb);
    return f;
}

#undef G

/* Emits a call of the shared driver for the constant GEMM g. */
static void emit_gemm(Cg *cg, const Gemm *g, LLVMValueRef A, LLVMValueRef B, LLVMValueRef C,
                      LLVMValueRef jbeg, LLVMValueRef jend, LLVMValueRef scr) {
    LLVMValueRef drv = gemm_driver(cg, g->bk);
    LLVMTypeRef at = LLVMArrayType(cg->i64, GA_COUNT);
    LLVMValueRef args = var(cg, at, NULL);
    const ConvDims *d = &g->cv;
    LLVMValueRef v[GA_COUNT] = {
        LLVMBuildPtrToInt(cg->b, A, cg->i64, ""), LLVMBuildPtrToInt(cg->b, B, cg->i64, ""),
        LLVMBuildPtrToInt(cg->b, C, cg->i64, ""), LLVMBuildPtrToInt(cg->b, scr, cg->i64, ""),
        jbeg, jend, ci64(cg, g->M), ci64(cg, g->N), ci64(cg, g->K), ci64(cg, g->a_sm), ci64(cg, g->a_sk),
        ci64(cg, g->b_sk), ci64(cg, g->b_sn), ci64(cg, g->ldc), ci64(cg, d->c), ci64(cg, d->h), ci64(cg, d->w),
        ci64(cg, d->r), ci64(cg, d->s), ci64(cg, d->sh), ci64(cg, d->sw), ci64(cg, d->ph), ci64(cg, d->pw),
        ci64(cg, d->q)};
    for (int i = 0; i < GA_COUNT; i++) {
        LLVMValueRef idx[2] = {ci64(cg, 0), ci64(cg, i)};
        LLVMBuildStore(cg->b, v[i], LLVMBuildInBoundsGEP2(cg->b, at, args, idx, 2, ""));
    }
    LLVMValueRef p = LLVMBuildBitCast(cg->b, args, LLVMPointerType(cg->i64, 0), "");
    cg_call(cg, drv, &p, 1);
}

/* This thread's scratch: base + worker * per_thread floats. */
static int64_t round16(int64_t x) { return (x + 15) / 16 * 16; }

static LLVMValueRef thread_scratch(Cg *cg, LLVMValueRef base, int64_t per_thread) {
    per_thread = round16(per_thread);
    LLVMValueRef w = LLVMBuildSExt(cg->b, cg_call(cg, cg->rt_worker_index, NULL, 0), cg->i64, "");
    return gep(cg, base, mulc(cg, w, per_thread));
}

static LLVMValueRef scratch_for_threads(Cg *cg, LLVMValueRef nthreads, int64_t per_thread) {
    per_thread = round16(per_thread);
    LLVMValueRef bytes = mulc(cg, nthreads, per_thread * 4);
    return LLVMBuildBitCast(cg->b, cg_call(cg, cg->rt_scratch, &bytes, 1), cg->pf, "");
}

void cg_emit_gemm_fn(Cg *cg, const char *name, int64_t M, int64_t N, int64_t K) {
    cg_fn_new(cg, name, LLVMFunctionType(cg->v, (LLVMTypeRef[]){cg->pf, cg->pf, cg->pf}, 3, 0), 0);
    LLVMValueRef f = cg->fn;
    Gemm g = {.M = M, .N = N, .K = K, .a_sm = K, .a_sk = 1, .bk = B_ROW, .b_sk = N, .b_sn = 1, .ldc = N};
    int64_t per = gemm_scratch_floats(cg);
    LLVMValueRef scr = scratch_for_threads(cg, ci64(cg, 1), per);
    emit_gemm(cg, &g, LLVMGetParam(f, 0), LLVMGetParam(f, 1), LLVMGetParam(f, 2), ci64(cg, 0), ci64(cg, N), scr);
    LLVMBuildRetVoid(cg->b);
}

/* ---- conv ------------------------------------------------------------------ */

static ConvDims conv_dims(Cg *cg, const IrNode *n, int x, int y) {
    const IrType *tx = ir_type(&cg->p->g, x), *ty = ir_type(&cg->p->g, y);
    ConvDims d = {.c = tx->d[1], .h = tx->d[2], .w = tx->d[3], .k = ty->d[1],
                  .r = n->attr.conv.kh, .s = n->attr.conv.kw, .sh = n->attr.conv.sh,
                  .sw = n->attr.conv.sw, .ph = n->attr.conv.ph, .pw = n->attr.conv.pw,
                  .p = ty->d[2], .q = ty->d[3]};
    return d;
}

static int conv_direct(const ConvDims *d) {
    return d->r == 1 && d->s == 1 && d->sh == 1 && d->sw == 1 && d->ph == 0 && d->pw == 0;
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

/* sum of n contiguous floats, vectorised (two accumulators, scalar tail). */
static LLVMValueRef vec_sum(Cg *cg, LLVMValueRef p, int64_t n) {
    LLVMValueRef a0 = var(cg, cg->vf, LLVMConstNull(cg->vf)), a1 = var(cg, cg->vf, LLVMConstNull(cg->vf));
    int64_t nv = n / (2 * cg->vw) * (2 * cg->vw);
    Loop l;
    LLVMValueRef i = for_begin(cg, &l, ci64(cg, 0), ci64(cg, nv), 2 * cg->vw);
    set(cg, a0, LLVMBuildFAdd(cg->b, get(cg, a0), vld(cg, p, i), ""));
    set(cg, a1, LLVMBuildFAdd(cg->b, get(cg, a1), vld(cg, p, addc(cg, i, cg->vw)), ""));
    for_end(cg, &l);
    LLVMValueRef s = var(cg, cg->f32, hsum(cg, LLVMBuildFAdd(cg->b, get(cg, a0), get(cg, a1), "")));
    i = for_begin(cg, &l, ci64(cg, nv), ci64(cg, n), 1);
    set(cg, s, LLVMBuildFAdd(cg->b, get(cg, s), ld(cg, p, i), ""));
    for_end(cg, &l);
    return get(cg, s);
}

void cg_emit_conv(Cg *cg, const IrNode *n) {
    const IrGraph *gr = &cg->p->g;
    int64_t nb = cg->p->batch;
    int64_t per = gemm_scratch_floats(cg);
    if (n->op == IR_OP_CONV2D) {
        int has_bias = n->attr.conv.bias && n->nin > 2;
        ConvDims d = conv_dims(cg, n, n->in[0], n->out[0]);
        int64_t crs = d.c * d.r * d.s, pq = d.p * d.q, hw = d.h * d.w;
        LLVMValueRef nt = cg_nthreads(cg);
        LLVMValueRef v[5] = {cg_vptr(cg, n->in[0]), cg_vptr(cg, n->in[1]),
                             has_bias ? cg_vptr(cg, n->in[2]) : LLVMConstNull(cg->pf),
                             cg_vptr(cg, n->out[0]), scratch_for_threads(cg, nt, per)};
        Par P;
        LLVMValueRef b, e;
        par_begin(cg, &P, v, 5, ci64(cg, nb), &b, &e);
        LLVMValueRef scr = thread_scratch(cg, v[4], per);
        Gemm g = {.M = d.k, .N = pq, .K = crs, .a_sm = crs, .a_sk = 1, .cv = d, .ldc = pq};
        if (conv_direct(&d)) {
            g.bk = B_ROW;
            g.b_sk = hw;
            g.b_sn = 1;
        } else {
            g.bk = B_CONV_FWD;
        }
        Loop li, lk, lq;
        LLVMValueRef img = for_begin(cg, &li, b, e, 1);
        LLVMValueRef yn = gep(cg, v[3], mulc(cg, img, d.k * pq));
        LLVMValueRef xn = gep(cg, v[0], mulc(cg, img, d.c * hw));
        if (has_bias) {
            LLVMValueRef k = for_begin(cg, &lk, ci64(cg, 0), ci64(cg, d.k), 1);
            LLVMValueRef bias = ld(cg, v[2], k);
            LLVMValueRef row = gep(cg, yn, mulc(cg, k, pq));
            LLVMValueRef q = for_begin(cg, &lq, ci64(cg, 0), ci64(cg, pq), 1);
            st(cg, bias, row, q);
            for_end(cg, &lq);
            for_end(cg, &lk);
        } else {
            cg_memset0(cg, yn, ci64(cg, d.k * pq));
        }
        emit_gemm(cg, &g, v[1], xn, yn, ci64(cg, 0), ci64(cg, pq), scr);
        for_end(cg, &li);
        par_end(cg, &P);
    } else if (n->op == IR_OP_CONV2D_BWD_DATA) {
        /* (dy, w) -> dx */
        ConvDims d = conv_dims(cg, n, n->out[0], n->in[0]);
        int64_t crs = d.c * d.r * d.s, pq = d.p * d.q, hw = d.h * d.w;
        int direct = conv_direct(&d);
        int64_t per2 = per + (direct ? 0 : round16(crs * pq));
        LLVMValueRef nt = cg_nthreads(cg);
        LLVMValueRef v[4] = {cg_vptr(cg, n->in[0]), cg_vptr(cg, n->in[1]), cg_vptr(cg, n->out[0]),
                             scratch_for_threads(cg, nt, per2)};
        Par P;
        LLVMValueRef b, e;
        par_begin(cg, &P, v, 4, ci64(cg, nb), &b, &e);
        LLVMValueRef scr = thread_scratch(cg, v[3], per2);
        LLVMValueRef dcol = gep(cg, scr, ci64(cg, per));
        Gemm g = {.M = crs, .N = pq, .K = d.k, .a_sm = 1, .a_sk = crs, .bk = B_ROW, .b_sk = pq,
                  .b_sn = 1, .ldc = pq};
        Loop li;
        LLVMValueRef img = for_begin(cg, &li, b, e, 1);
        LLVMValueRef dyn = gep(cg, v[0], mulc(cg, img, d.k * pq));
        LLVMValueRef dxn = gep(cg, v[2], mulc(cg, img, d.c * hw));
        cg_memset0(cg, dxn, ci64(cg, d.c * hw));
        if (direct) {
            emit_gemm(cg, &g, v[1], dyn, dxn, ci64(cg, 0), ci64(cg, pq), scr);
        } else {
            cg_memset0(cg, dcol, ci64(cg, crs * pq));
            emit_gemm(cg, &g, v[1], dyn, dcol, ci64(cg, 0), ci64(cg, pq), scr);
            emit_col2im(cg, &d, dcol, dxn);
        }
        for_end(cg, &li);
        par_end(cg, &P);
    } else {
        /* CONV2D_BWD_WEIGHT (dy, x) -> dw[, db] */
        ConvDims d = conv_dims(cg, n, n->in[1], n->in[0]);
        int64_t crs = d.c * d.r * d.s, pq = d.p * d.q, hw = d.h * d.w;
        int64_t wsz = d.k * crs;
        int64_t per2 = per + round16(wsz);
        LLVMValueRef nt = cg_nthreads(cg);
        LLVMValueRef scr0 = scratch_for_threads(cg, nt, per2);
        /* zero every thread's partial sum (threads with no image add nothing) */
        {
            Loop lt;
            LLVMValueRef t = for_begin(cg, &lt, ci64(cg, 0), nt, 1);
            cg_memset0(cg, gep(cg, scr0, addc(cg, mulc(cg, t, per2), per)), ci64(cg, wsz));
            for_end(cg, &lt);
        }
        LLVMValueRef v[3] = {cg_vptr(cg, n->in[0]), cg_vptr(cg, n->in[1]), scr0};
        LLVMValueRef dy = v[0];
        Par P;
        LLVMValueRef b, e;
        par_begin(cg, &P, v, 3, ci64(cg, nb), &b, &e);
        LLVMValueRef scr = thread_scratch(cg, v[2], per2);
        LLVMValueRef part = gep(cg, scr, ci64(cg, per));
        Gemm g = {.M = d.k, .N = crs, .K = pq, .a_sm = pq, .a_sk = 1, .cv = d, .ldc = crs};
        if (conv_direct(&d)) {
            g.bk = B_COL;
            g.b_sk = 1;
            g.b_sn = hw;
        } else {
            g.bk = B_CONV_BWDW;
        }
        Loop li;
        LLVMValueRef img = for_begin(cg, &li, b, e, 1);
        LLVMValueRef dyn = gep(cg, v[0], mulc(cg, img, d.k * pq));
        LLVMValueRef xn = gep(cg, v[1], mulc(cg, img, d.c * hw));
        emit_gemm(cg, &g, dyn, xn, part, ci64(cg, 0), ci64(cg, crs), scr);
        for_end(cg, &li);
        par_end(cg, &P);
        /* dw = sum of the partials */
        LLVMValueRef dw = cg_vptr(cg, n->out[0]);
        Loop lt, lx;
        cg_memcpy(cg, dw, gep(cg, scr0, ci64(cg, per)), ci64(cg, wsz));
        LLVMValueRef t = for_begin(cg, &lt, ci64(cg, 1), nt, 1);
        LLVMValueRef pt = gep(cg, scr0, addc(cg, mulc(cg, t, per2), per));
        LLVMValueRef x = for_begin(cg, &lx, ci64(cg, 0), ci64(cg, wsz), 1);
        st(cg, LLVMBuildFAdd(cg->b, ld(cg, dw, x), ld(cg, pt, x), ""), dw, x);
        for_end(cg, &lx);
        for_end(cg, &lt);
        if (n->nout > 1 && n->out[1] >= 0) {
            LLVMValueRef db = cg_vptr(cg, n->out[1]);
            Loop lk, ln;
            LLVMValueRef k = for_begin(cg, &lk, ci64(cg, 0), ci64(cg, d.k), 1);
            LLVMValueRef acc = var(cg, cg->f32, cf32(cg, 0));
            LLVMValueRef im = for_begin(cg, &ln, ci64(cg, 0), ci64(cg, nb), 1);
            LLVMValueRef row = gep(cg, dy, add(cg, mulc(cg, im, d.k * pq), mulc(cg, k, pq)));
            set(cg, acc, LLVMBuildFAdd(cg->b, get(cg, acc), vec_sum(cg, row, pq), ""));
            for_end(cg, &ln);
            st(cg, get(cg, acc), db, k);
            for_end(cg, &lk);
        }
    }
    (void)gr;
}

/* ---- linear ---------------------------------------------------------------- */

/* Splits the columns [0, N) of one GEMM across threads in NR-wide panels. */
static void par_columns(Cg *cg, const Gemm *g, LLVMValueRef A, LLVMValueRef B, LLVMValueRef C,
                        LLVMValueRef bias) {
    int64_t per = gemm_scratch_floats(cg);
    LLVMValueRef nt = cg_nthreads(cg);
    LLVMValueRef v[5] = {A, B, C, bias ? bias : LLVMConstNull(cg->pf), scratch_for_threads(cg, nt, per)};
    int64_t panels = (g->N + NR - 1) / NR;
    Par P;
    LLVMValueRef b, e;
    par_begin(cg, &P, v, 5, ci64(cg, panels), &b, &e);
    LLVMValueRef scr = thread_scratch(cg, v[4], per);
    LLVMValueRef jb = mulc(cg, b, NR), je = imin(cg, mulc(cg, e, NR), ci64(cg, g->N));
    Loop lm, lj;
    LLVMValueRef m = for_begin(cg, &lm, ci64(cg, 0), ci64(cg, g->M), 1);
    LLVMValueRef j = for_begin(cg, &lj, jb, je, 1);
    st(cg, bias ? ld(cg, v[3], j) : cf32(cg, 0), v[2], add(cg, mulc(cg, m, g->ldc), j));
    for_end(cg, &lj);
    for_end(cg, &lm);
    emit_gemm(cg, g, v[0], v[1], v[2], jb, je, scr);
    par_end(cg, &P);
}

void cg_emit_linear(Cg *cg, const IrNode *n) {
    int64_t nb = cg->p->batch;
    int64_t in, out;
    if (n->op == IR_OP_LINEAR) {
        in = cg_numel(cg, n->in[0]) / nb;
        out = cg_numel(cg, n->out[0]) / nb;
        Gemm g = {.M = nb, .N = out, .K = in, .a_sm = in, .a_sk = 1, .bk = B_COL, .b_sk = 1, .b_sn = in, .ldc = out};
        par_columns(cg, &g, cg_vptr(cg, n->in[0]), cg_vptr(cg, n->in[1]), cg_vptr(cg, n->out[0]),
                    n->attr.linear.bias && n->nin > 2 ? cg_vptr(cg, n->in[2]) : NULL);
    } else if (n->op == IR_OP_LINEAR_BWD_DATA) {
        /* (dy, w) -> dx */
        in = cg_numel(cg, n->out[0]) / nb;
        out = cg_numel(cg, n->in[0]) / nb;
        Gemm g = {.M = nb, .N = in, .K = out, .a_sm = out, .a_sk = 1, .bk = B_ROW, .b_sk = in, .b_sn = 1, .ldc = in};
        par_columns(cg, &g, cg_vptr(cg, n->in[0]), cg_vptr(cg, n->in[1]), cg_vptr(cg, n->out[0]), NULL);
    } else {
        /* (dy, x) -> dw[, db] */
        in = cg_numel(cg, n->in[1]) / nb;
        out = cg_numel(cg, n->in[0]) / nb;
        Gemm g = {.M = out, .N = in, .K = nb, .a_sm = 1, .a_sk = out, .bk = B_ROW, .b_sk = in, .b_sn = 1, .ldc = in};
        LLVMValueRef dy = cg_vptr(cg, n->in[0]);
        par_columns(cg, &g, dy, cg_vptr(cg, n->in[1]), cg_vptr(cg, n->out[0]), NULL);
        if (n->nout > 1 && n->out[1] >= 0) {
            LLVMValueRef db = cg_vptr(cg, n->out[1]);
            Loop lo, li;
            LLVMValueRef o = for_begin(cg, &lo, ci64(cg, 0), ci64(cg, out), 1);
            LLVMValueRef acc = var(cg, cg->f32, cf32(cg, 0));
            LLVMValueRef i = for_begin(cg, &li, ci64(cg, 0), ci64(cg, nb), 1);
            set(cg, acc, LLVMBuildFAdd(cg->b, get(cg, acc), ld(cg, dy, add(cg, mulc(cg, i, out), o)), ""));
            for_end(cg, &li);
            st(cg, get(cg, acc), db, o);
            for_end(cg, &lo);
        }
    }
}
