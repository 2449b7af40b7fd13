/* gemm.c - the packed GEMM of conv2d and linear (forward, backward data,
 * backward weight): its micro-kernels, blocking, the drivers shared by the
 * kernels of a module and their split across the thread pool.  Packing is
 * gemm_pack.c's, the padded-width layouts conv_padded.c's, the conv and
 * linear nodes and the choice of method conv.c's.
 *
 * Every product is C[M,N] (+)= A[M,K] B[K,N].  A and B are read through a
 * description (strided, or an implicit im2col of a batch of conv inputs) and
 * packed, block by block, into panels: A into MR-row panels [kc][MR], B into
 * NR-column panels [kc][NR], zero padded.  The micro-kernel keeps an MR x NR
 * tile of C in MR*NR/vw vector registers (6 x 16 = 12 <8 x float> with AVX2)
 * and does one broadcast and NR/vw FMAs per row per k.  Blocking
 * (Goto/BLIS): jc over NC columns, pc over KC, ic over MC rows, then jr over
 * NR and ir over MR, so a B panel stays in L1 while the A block streams from
 * L2.
 *
 * Convs are single GEMMs over the whole batch, the images' pixels laid end
 * to end as one long dimension (column j = image j / PQ, pixel j % PQ):
 *   conv fwd:          y[K, (n,pq)]   = W[K, CRS] im2col(x)[CRS, (n,pq)] (+ b)
 *   conv bwd data:     stride 1: dx = conv(dy, W') with W'[c,k,r,s] =
 *                      W[k,c,R-1-r,S-1-s] and padding R-1-pad: a fwd GEMM;
 *                      strided: per image dcol = W^T dy_n, then col2im
 *   conv bwd weight:   dW[K, CRS] = dy[K, (n,pq)] im2col(x)^T: the batch is
 *                      the reduction dimension
 *   linear fwd:        y  = x W^T (+ b);  bwd data: dx = dy W;
 *   linear bwd weight: dW = dy^T x
 * C's columns may cross images (C(i, j) at i*ldc + (j/cpq)*cimg + j%cpq).
 * Threads split the columns of C (or its rows when there are too few
 * columns); every element of C is computed by one thread in an order that
 * does not depend on the split, so results are bit-identical for any thread
 * count.  1x1 stride-1 unpadded convs see their images as H = 1, W = H*W,
 * which makes every B panel a contiguous load. */
#include "gemm_internal.h"

#include <stdio.h>
#include <stdlib.h>

#include "../../base/pool.h"

void cg_gemm_shape(Cg *cg) {
    /* 16 vector registers (AVX2, SSE): 6 rows x 2 vectors = 12
     * accumulators, 2 B vectors and a broadcast; 32 (AVX-512): 12 x 2 */
    cg->mr = cg->vw >= 16 ? 12 : 6;
    cg->mc = cg->mr * (120 / cg->mr);
    const char *e = getenv("NETC_CPU_MR");   /* tuning experiments */
    if (e && atoi(e) >= 2 && atoi(e) <= 16) cg->mr = atoi(e), cg->mc = cg->mr * ((120 + cg->mr - 1) / cg->mr);
}

/* a multiple of 16 floats, so every thread's block stays 64-byte aligned */
int64_t cg_gemm_scratch_floats(const Cg *cg) {
    /* B packed per block; B_PADROW: A whole, tables, a gathered panel;
     * B_PADT: W^T whole, the C block, tables, the A block (+ a store's spill) */
    int64_t packed = (int64_t)MC * KC + (int64_t)KC * NC, direct = APK + 4 * KC + (int64_t)KC * NR;
    int64_t padt = APK + (int64_t)MC * NC + 4 * KC + (int64_t)MC * KC + 16, most = packed;
    if (most < direct) most = direct;
    if (most < padt) most = padt;
    return most + MR * NR + 2 * (MC + MR) + 64;
}

/* void ukr(float *Ap, float *Bp, float *C, i64 ldc, i64 kc, i64 acc
 *          [, i64 *off]):
 * C[MR, NR] (acc ? += : =) Ap^T Bp over kc packed steps.  Ap is [kc][MR]
 * (UK_PACKED, UK_DIRECT) or MR rows of kc floats, row i at Ap + off[i]
 * (UK_ROWS: B_DYT's A, packed by contiguous copies or read in place).  Bp is
 * [kc][NR], or with UK_DIRECT row k is the NR floats at Bp + off[k] (B read
 * in place, no packing).  UK_KTAB: A's MR floats of step k are the MR
 * consecutive floats at Ap + off[k] (B_PADT's pixels read in place: every
 * load is a broadcast of one float or an aligned vector of the packed B, so
 * none crosses a cache line, which unaligned vector loads of UK_DIRECT do
 * for three rows in seven). */

LLVMValueRef cg_micro_kernel_gen(Cg *cg, int kind) {
    LLVMValueRef *cache = kind == UK_ROWS ? &cg->ukr_rows : kind == UK_DIRECT ? &cg->ukr_direct
                        : kind == UK_KTAB ? &cg->ukr_ktab : &cg->ukr;
    if (*cache) return *cache;
    int rows = kind == UK_ROWS;
    LLVMValueRef save_fn = cg->fn;
    LLVMBasicBlockRef save_bb = LLVMGetInsertBlock(cg->b);
    LLVMTypeRef pt[7] = {cg->pf, cg->pf, cg->pf, cg->i64, cg->i64, cg->i64, LLVMPointerType(cg->i64, 0)};
    static const char *names[4] = {"netc_ukr", "netc_ukr_rows", "netc_ukr_direct", "netc_ukr_ktab"};
    LLVMValueRef f = cg_fn_new(cg, names[kind], LLVMFunctionType(cg->v, pt, kind == UK_PACKED ? 6 : 7, 0), 1);
    for (unsigned i = 0; i < 3; i++) {
        unsigned na = LLVMGetEnumAttributeKindForName("noalias", 7);
        LLVMAddAttributeAtIndex(f, i + 1, LLVMCreateEnumAttribute(cg->ctx, na, 0));
    }
    cg_fn_attr(cg, f, "noinline");   /* one copy for the whole module, not one inlined into every driver */
    LLVMValueRef A = LLVMGetParam(f, 0), B = LLVMGetParam(f, 1), C = LLVMGetParam(f, 2);
    LLVMValueRef ldc = LLVMGetParam(f, 3), kc = LLVMGetParam(f, 4), accf = LLVMGetParam(f, 5);
    int nv = NR / cg->vw;
    LLVMValueRef acc[MR][4];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < nv; j++) acc[i][j] = var(cg, cg->vf, LLVMConstNull(cg->vf));
    LLVMValueRef fma = cg_intrinsic(cg, "llvm.fma", &cg->vf, 1);
    LLVMValueRef arow[MR];
    for (int i = 0; i < MR; i++)
        arow[i] = rows ? gep(cg, A, LLVMBuildLoad2(cg->b, cg->i64, gep64(cg, LLVMGetParam(f, 6), i), "")) : NULL;
    Loop lk;
    LLVMValueRef k = for_begin(cg, &lk, ci64(cg, 0), kc, 1);
    LLVMValueRef bv[4];
    /* UK_DIRECT: row k of B starts at B + off[k]; UK_KTAB: step k of A at A + off[k] */
    LLVMValueRef brow = kind == UK_DIRECT || kind == UK_KTAB
        ? LLVMBuildLoad2(cg->b, cg->i64, LLVMBuildInBoundsGEP2(cg->b, cg->i64, LLVMGetParam(f, 6), &k, 1, ""), "")
        : NULL;
    for (int j = 0; j < nv; j++) {
        if (kind == UK_DIRECT) {
            bv[j] = vld(cg, B, addc(cg, brow, j * cg->vw));
            LLVMSetAlignment(bv[j], 4);
        } else {
            bv[j] = vld(cg, B, addc(cg, mulc(cg, k, NR), j * cg->vw));
            LLVMSetAlignment(bv[j], 32);
        }
    }
    for (int i = 0; i < MR; i++) {
        LLVMValueRef a = splat(cg, rows ? ld(cg, arow[i], k) : kind == UK_KTAB ? ld(cg, A, addc(cg, brow, i))
                                                                : ld(cg, A, addc(cg, mulc(cg, k, MR), i)));
        for (int j = 0; j < nv; j++) {
            LLVMValueRef args[3] = {a, bv[j], get(cg, acc[i][j])};
            set(cg, acc[i][j], cg_call(cg, fma, args, 3));
        }
    }
    for_end(cg, &lk);
    If fa;
    if_begin(cg, &fa, icmp(cg, LLVMIntNE, accf, ci64(cg, 0)));
    for (int i = 0; i < MR; i++) {
        LLVMValueRef row = mul(cg, ci64(cg, i), ldc);
        for (int j = 0; j < nv; j++) {
            LLVMValueRef idx = addc(cg, row, j * cg->vw);
            vst(cg, LLVMBuildFAdd(cg->b, vld(cg, C, idx), get(cg, acc[i][j]), ""), C, idx);
        }
    }
    if_else(cg, &fa);
    for (int i = 0; i < MR; i++) {
        LLVMValueRef row = mul(cg, ci64(cg, i), ldc);
        for (int j = 0; j < nv; j++) vst(cg, get(cg, acc[i][j]), C, addc(cg, row, j * cg->vw));
    }
    if_end(cg, &fa);
    LLVMBuildRetVoid(cg->b);
    *cache = f;
    cg->fn = save_fn;
    if (save_bb) LLVMPositionBuilderAtEnd(cg->b, save_bb);
    return f;
}

/* The C tiles of one block: columns [jc, jc + nc) by rows [ic, ic + mc),
 * k block [pc, pc + kc).  A's panel ir is at abase + ir * astr (B_DYT:
 * abase with its rows in rtab); B's panel jr at bp + jr * kc, or for
 * B_PADROW read in place (tables at bp, see cg_padrow_offsets). */
typedef struct {
    LLVMValueRef ukr, tile, rtab, vn, vq, jend, bp;
    LLVMValueRef jc, nc, ic, mc, kc, acc, accb, abase, astr;
    LLVMValueRef relu;      /* i1: this is the last k block of a GEMM with a ReLU epilogue */
} Tiles;

/* A tile computed into tile[MR][NR] added (or stored) into C where it does
 * not fit C's layout directly: mr < MR rows, nr < NR columns, or columns
 * crossing from image cn into the next (CPQ >= NR: at most one crossing),
 * row by row as two masked NR-lane stores, one per image; the same sums as
 * the element loop it replaces (conv outputs of 12x12 or 6x6 pixels cross
 * an image in one 32-column panel in nine, or in most).  AVX-512 only. */
static void tile_back(Cg *cg, const GemmV *g, const Tiles *t, LLVMValueRef tile, LLVMValueRef crow, LLVMValueRef cn,
                      LLVMValueRef cpix, LLVMValueRef mr, LLVMValueRef nr) {
    LLVMTypeRef vt = LLVMVectorType(cg->f32, (unsigned)NR), pv = LLVMPointerType(vt, 0);
    LLVMValueRef lanes = cg_lane_ids(cg), split = sub(cg, G(CPQ), cpix);
    LLVMValueRef live = LLVMBuildICmp(cg->b, LLVMIntSLT, lanes, cg_vs32(cg, nr), "");
    LLVMValueRef first = LLVMBuildICmp(cg->b, LLVMIntSLT, lanes, cg_vs32(cg, split), "");
    LLVMValueRef m1 = LLVMBuildAnd(cg->b, live, first, ""), m2 = LLVMBuildAnd(cg->b, live, LLVMBuildNot(cg->b, first, ""), "");
    LLVMValueRef zero = LLVMConstNull(vt);
    LLVMTypeRef sovl[2] = {vt, pv};
    LLVMValueRef store = cg_intrinsic(cg, "llvm.masked.store", sovl, 2);
    LLVMValueRef o1 = add(cg, crow, add(cg, mul(cg, cn, G(CIMG)), cpix));
    LLVMValueRef o2 = add(cg, crow, sub(cg, mul(cg, addc(cg, cn, 1), G(CIMG)), split));
    Loop li;
    LLVMValueRef i = for_begin(cg, &li, ci64(cg, 0), mr, 1);
    LLVMValueRef ri = mul(cg, i, G(LDC));
    /* not inbounds: lanes of the second address before the split are off */
    LLVMValueRef i1 = add(cg, o1, ri), i2 = add(cg, o2, ri);
    LLVMValueRef p1 = LLVMBuildBitCast(cg->b, LLVMBuildGEP2(cg->b, cg->f32, G(C), &i1, 1, ""), pv, "");
    LLVMValueRef p2 = LLVMBuildBitCast(cg->b, LLVMBuildGEP2(cg->b, cg->f32, G(C), &i2, 1, ""), pv, "");
    LLVMValueRef tp = LLVMBuildBitCast(cg->b, gep(cg, tile, mulc(cg, i, NR)), pv, "");
    LLVMValueRef tv = LLVMBuildLoad2(cg->b, vt, tp, "");
    LLVMSetAlignment(tv, 4);
    LLVMValueRef old = cg_masked_load(cg, LLVMBuildBitCast(cg->b, p2, cg->pf, ""), m2,
                                      cg_masked_load(cg, LLVMBuildBitCast(cg->b, p1, cg->pf, ""), m1, zero));
    old = LLVMBuildSelect(cg->b, t->accb, old, zero, "");
    LLVMValueRef nv = cg_relu_if(cg, t->relu, LLVMBuildFAdd(cg->b, old, tv, ""));
    LLVMValueRef a1[4] = {nv, p1, ci32(cg, 4), m1}, a2[4] = {nv, p2, ci32(cg, 4), m2};
    cg_call(cg, store, a1, 4);
    cg_call(cg, store, a2, 4);
    for_end(cg, &li);
}

static void emit_tiles(Cg *cg, const GemmV *g, const Tiles *t) {
    BKind bk = g->bk;
    int direct = bk == B_PADROW;
    unsigned nargs = direct || bk == B_DYT ? 7 : 6;
    LLVMValueRef jend = t->jend, kc = t->kc, tile = t->tile;
    Loop ljr, lir;
    LLVMValueRef jr = for_begin(cg, &ljr, ci64(cg, 0), t->nc, NR);
    LLVMValueRef nr = imin(cg, ci64(cg, NR), sub(cg, t->nc, jr));
    LLVMValueRef jg = add(cg, t->jc, jr);
    /* B_PADROW: this panel read in place at x_pad + its first column, or
     * gathered into pbuf when it crosses an image or jend */
    LLVMValueRef bbase = NULL, btab = NULL;
    if (direct) {
        LLVMValueRef boff = LLVMBuildBitCast(cg->b, t->bp, LLVMPointerType(cg->i64, 0), "");
        LLVMValueRef ptab = gep64(cg, boff, KC), pbuf = gep(cg, t->bp, ci64(cg, 4 * KC));
        LLVMValueRef L = G(PQ), im0 = sdiv(cg, jg, L), pw0 = sub(cg, jg, mul(cg, im0, L));
        LLVMValueRef ok = and1(cg, icmp(cg, LLVMIntSLE, addc(cg, jg, NR), jend), icmp(cg, LLVMIntSLE, addc(cg, pw0, NR), L));
        LLVMValueRef vb = var(cg, cg->pf, NULL), vt = var(cg, LLVMPointerType(cg->i64, 0), NULL);
        If fo;
        if_begin(cg, &fo, ok);
        set(cg, vb, gep(cg, G(B), add(cg, mul(cg, im0, G(XIMG)), pw0)));
        set(cg, vt, boff);
        if_else(cg, &fo);
        cg_padrow_gather_panel(cg, g, pbuf, boff, jg, jend, kc);
        set(cg, vb, pbuf);
        set(cg, vt, ptab);
        if_end(cg, &fo);
        bbase = get(cg, vb);
        btab = get(cg, vt);
    }
    LLVMValueRef cn = sdiv(cg, jg, G(CPQ));
    LLVMValueRef cpix = sub(cg, jg, mul(cg, cn, G(CPQ)));
    LLVMValueRef cbase = add(cg, mul(cg, cn, G(CIMG)), cpix);
    LLVMValueRef tilefits = and1(cg, icmp(cg, LLVMIntEQ, nr, ci64(cg, NR)), icmp(cg, LLVMIntSLE, addc(cg, cpix, NR), G(CPQ)));
    LLVMValueRef ir = for_begin(cg, &lir, ci64(cg, 0), t->mc, MR);
    LLVMValueRef mr = imin(cg, ci64(cg, MR), sub(cg, t->mc, ir));
    LLVMValueRef apan = gep(cg, t->abase, mul(cg, ir, t->astr));
    LLVMValueRef bpan = direct ? bbase : gep(cg, t->bp, mul(cg, jr, kc));
    LLVMValueRef utab = direct ? btab : bk == B_DYT ? LLVMBuildInBoundsGEP2(cg->b, cg->i64, t->rtab, &ir, 1, "") : NULL;
    LLVMValueRef crow = mul(cg, add(cg, t->ic, ir), G(LDC));
    LLVMValueRef full = and1(cg, icmp(cg, LLVMIntEQ, mr, ci64(cg, MR)), tilefits);
    If fi;
    if_begin(cg, &fi, full);
    {
        LLVMValueRef cp = gep(cg, G(C), add(cg, crow, cbase));
        LLVMValueRef a[7] = {apan, bpan, cp, G(LDC), kc, t->acc, utab};
        cg_call(cg, t->ukr, a, nargs);
        /* the epilogue on the tile just stored (in L1) */
        If fr;
        if_begin(cg, &fr, t->relu);
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR / cg->vw; j++) {
                LLVMValueRef idx = add(cg, mul(cg, ci64(cg, i), G(LDC)), ci64(cg, j * cg->vw));
                vst(cg, cg_relu(cg, vld(cg, cp, idx)), cp, idx);
            }
        if_end(cg, &fr);
    }
    if_else(cg, &fi);
    {
        LLVMValueRef a[7] = {apan, bpan, tile, ci64(cg, NR), kc, ci64(cg, 0), utab};
        cg_call(cg, t->ukr, a, nargs);
        Loop li, lj;
        /* AVX-512: masked stores are one instruction with a mask register
         * (AVX2's vmaskmovps stores are slow on AMD's cores) */
        If fv;
        if_begin(cg, &fv, cg->vw >= 16 ? icmp(cg, LLVMIntSGE, G(CPQ), ci64(cg, NR)) : LLVMConstInt(cg->i1, 0, 0));
        tile_back(cg, g, t, tile, crow, cn, cpix, mr, nr);
        if_else(cg, &fv);
        set(cg, t->vn, cn);
        set(cg, t->vq, cpix);
        LLVMValueRef j = for_begin(cg, &lj, ci64(cg, 0), nr, 1);
        LLVMValueRef coff = add(cg, crow, add(cg, mul(cg, get(cg, t->vn), G(CIMG)), get(cg, t->vq)));
        LLVMValueRef i = for_begin(cg, &li, ci64(cg, 0), mr, 1);
        LLVMValueRef ci = add(cg, coff, mul(cg, i, G(LDC)));
        LLVMValueRef tv = ld(cg, tile, add(cg, mulc(cg, i, NR), j));
        LLVMValueRef old = LLVMBuildSelect(cg->b, t->accb, ld(cg, G(C), ci), cf32(cg, 0), "");
        st(cg, cg_relu_if(cg, t->relu, LLVMBuildFAdd(cg->b, old, tv, "")), G(C), ci);
        for_end(cg, &li);
        cg_bump2(cg, t->vn, t->vq, G(CPQ));
        for_end(cg, &lj);
        if_end(cg, &fv);
    }
    if_end(cg, &fi);
    for_end(cg, &lir);
    for_end(cg, &ljr);
}

/* k block size at pc: KC, or for B_DYT, blocks that never cross an image (so
 * A's rows can be read in place), an image's remainder between KC and 2 KC
 * in two even halves (small images: KC). */
static LLVMValueRef kblock(Cg *cg, const GemmV *g, LLVMValueRef pc) {
    LLVMValueRef kc = imin(cg, ci64(cg, KC), sub(cg, G(K), pc));
    if (g->bk != B_DYT) return kc;
    LLVMValueRef L = G(PQ), rem = sub(cg, L, srem(cg, pc, L));
    LLVMValueRef half = LLVMBuildAnd(cg->b, addc(cg, sdiv(cg, addc(cg, rem, 1), ci64(cg, 2)), 7), ci64(cg, -8), "");
    LLVMValueRef blk = LLVMBuildSelect(cg->b, icmp(cg, LLVMIntSLE, rem, ci64(cg, KC)), rem,
                                       LLVMBuildSelect(cg->b, icmp(cg, LLVMIntSLT, rem, ci64(cg, 2 * KC)), half, ci64(cg, KC), ""), "");
    return LLVMBuildSelect(cg->b, cg_dyt_small(cg, g), kc, imin(cg, kc, blk), "");
}

/* void netc_gemm<kind>(i64 *args): C[IB:IE, JB:JE] (+)= A B on the calling
 * thread, with cg_gemm_scratch_floats() floats of scratch.
 *
 * Packed kinds block as Goto/BLIS do: jc (NC columns), pc (KC), pack B's
 * block; ic (MC rows), pack A's block; then the tiles.  B_PADROW has no B to
 * pack: A is packed whole once (when it fits APK floats, else block by
 * block: ~4% slower on ResNet-18's and NiN's convs), then jc, ic (MC rows),
 * pc, so that a C block of MC x NC is finished before the next.  B_PADT:
 * cg_padt_body. */
static LLVMValueRef gemm_driver(Cg *cg, BKind bk) {
    char name[32];
    snprintf(name, sizeof name, "netc_gemm%d", (int)bk);
    LLVMValueRef f = LLVMGetNamedFunction(cg->mod, name);
    if (f) return f;
    int direct = bk == B_PADROW;
    LLVMValueRef ukr = cg_micro_kernel_gen(cg, bk == B_DYT ? UK_ROWS : direct ? UK_DIRECT : bk == B_PADT ? UK_KTAB : UK_PACKED);
    LLVMValueRef ukp = bk == B_PADT ? cg_micro_kernel_gen(cg, UK_PACKED) : NULL;
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
    LLVMValueRef beta0 = icmp(cg, LLVMIntNE, G(BETA0), ci64(cg, 0));
    LLVMValueRef relu = icmp(cg, LLVMIntNE, G(RELU), ci64(cg, 0));
    Tiles t = {.ukr = ukr, .jend = G(JE), .vn = var(cg, cg->i64, NULL), .vq = var(cg, cg->i64, NULL)};
    Loop ljc, lpc, lic;
    if (bk == B_PADT) {
        cg_padt_body(cg, g, ukr, ukp);
    } else if (direct) {
        LLVMValueRef ap = G(SCR);
        t.bp = gep(cg, ap, ci64(cg, APK));
        t.tile = gep(cg, t.bp, ci64(cg, 4 * KC + (int64_t)KC * NR));
        LLVMValueRef rows = sub(cg, G(IE), G(IB));
        LLVMValueRef afull = icmp(cg, LLVMIntSLE, mul(cg, mulc(cg, sdiv(cg, addc(cg, rows, MR - 1), ci64(cg, MR)), MR), G(K)),
                                  ci64(cg, APK));
        If fa;
        if_begin(cg, &fa, afull);
        cg_pack_a(cg, g, ap, G(IB), rows, ci64(cg, 0), G(K));
        if_end(cg, &fa);
        t.jc = for_begin(cg, &ljc, G(JB), t.jend, NC);
        t.nc = imin(cg, ci64(cg, NC), sub(cg, t.jend, t.jc));
        t.ic = for_begin(cg, &lic, G(IB), G(IE), MC);
        t.mc = imin(cg, ci64(cg, MC), sub(cg, G(IE), t.ic));
        LLVMValueRef pc = for_begin(cg, &lpc, G(KB), G(K), KC);
        t.kc = kblock(cg, g, pc);
        t.relu = and1(cg, relu, icmp(cg, LLVMIntSGE, add(cg, pc, t.kc), G(K)));
        t.accb = LLVMBuildOr(cg->b, LLVMBuildNot(cg->b, beta0, ""), icmp(cg, LLVMIntNE, pc, G(KB)), "");
        t.acc = LLVMBuildZExt(cg->b, t.accb, cg->i64, "");
        cg_pack_b(cg, g, t.bp, t.jc, t.nc, t.jend, pc, t.kc);   /* the row offset tables */
        LLVMValueRef va = var(cg, cg->pf, NULL), vs = var(cg, cg->i64, NULL);
        if_begin(cg, &fa, afull);
        /* panel (ic - IB + ir) / MR of the whole, at its k = pc */
        set(cg, va, gep(cg, ap, add(cg, mul(cg, sub(cg, t.ic, G(IB)), G(K)), mulc(cg, pc, MR))));
        set(cg, vs, G(K));
        if_else(cg, &fa);
        cg_pack_a(cg, g, ap, t.ic, t.mc, pc, t.kc);
        set(cg, va, ap);
        set(cg, vs, t.kc);
        if_end(cg, &fa);
        t.abase = get(cg, va);
        t.astr = get(cg, vs);
        emit_tiles(cg, g, &t);
        for_end(cg, &lpc);
        for_end(cg, &lic);
        for_end(cg, &ljc);
    } else {
        LLVMValueRef ap = G(SCR);
        t.bp = gep(cg, ap, ci64(cg, (int64_t)MC * KC));
        t.tile = gep(cg, t.bp, ci64(cg, (int64_t)KC * NC));
        t.rtab = LLVMBuildBitCast(cg->b, gep(cg, t.tile, ci64(cg, MR * NR)), LLVMPointerType(cg->i64, 0), "");
        t.jc = for_begin(cg, &ljc, G(JB), t.jend, NC);
        t.nc = imin(cg, ci64(cg, NC), sub(cg, t.jend, t.jc));
        /* the reduction runs over [KB, K): all of it, or one part of a split one */
        LLVMValueRef pc = for_begin(cg, &lpc, G(KB), G(K), KC);
        t.kc = kblock(cg, g, pc);
        t.relu = and1(cg, relu, icmp(cg, LLVMIntSGE, add(cg, pc, t.kc), G(K)));
        /* accumulate unless beta0 and this is the first k block */
        t.accb = LLVMBuildOr(cg->b, LLVMBuildNot(cg->b, beta0, ""), icmp(cg, LLVMIntNE, pc, G(KB)), "");
        t.acc = LLVMBuildZExt(cg->b, t.accb, cg->i64, "");
        cg_pack_b(cg, g, t.bp, t.jc, t.nc, t.jend, pc, t.kc);
        t.ic = for_begin(cg, &lic, G(IB), G(IE), MC);
        t.mc = imin(cg, ci64(cg, MC), sub(cg, G(IE), t.ic));
        t.abase = ap;
        t.astr = t.kc;
        if (bk == B_DYT) {
            /* A's rows at abase + rtab[row in the block].  Stride 1: read
             * in place at x_pad[image] + (c*plane + r*W + s) + the block's
             * first column in the image; strided: packed */
            LLVMValueRef vab = var(cg, cg->pf, NULL), rtab = t.rtab;
            LLVMValueRef mpad = mulc(cg, sdiv(cg, addc(cg, t.mc, MR - 1), ci64(cg, MR)), MR);
            Loop lt;
            If fs;
            if_begin(cg, &fs, and1(cg, and1(cg, icmp(cg, LLVMIntEQ, G(PH), ci64(cg, 1)), icmp(cg, LLVMIntEQ, G(PW), ci64(cg, 1))),
                                   LLVMBuildNot(cg->b, cg_dyt_small(cg, g), "")));
            {
                LLVMValueRef L = G(PQ), im = sdiv(cg, pc, L);
                set(cg, vab, gep(cg, G(A), add(cg, mul(cg, im, G(XIMG)), sub(cg, pc, mul(cg, im, L)))));
                LLVMValueRef RS = mul(cg, G(R), G(S));
                LLVMValueRef j = for_begin(cg, &lt, ci64(cg, 0), mpad, 1);
                /* rows past M (the last panel's padding, discarded) repeat row M-1 */
                LLVMValueRef m = imin(cg, add(cg, t.ic, j), addc(cg, G(M), -1));
                LLVMValueRef c = sdiv(cg, m, RS), rem = sub(cg, m, mul(cg, c, RS));
                LLVMValueRef r = sdiv(cg, rem, G(S)), sx = sub(cg, rem, mul(cg, r, G(S)));
                LLVMValueRef o = add(cg, mul(cg, c, G(ASM)), add(cg, mul(cg, r, G(W)), sx));
                LLVMBuildStore(cg->b, o, LLVMBuildInBoundsGEP2(cg->b, cg->i64, rtab, &j, 1, ""));
                for_end(cg, &lt);
            }
            if_else(cg, &fs);
            {
                cg_pack_a(cg, g, ap, t.ic, t.mc, pc, t.kc);
                set(cg, vab, ap);
                LLVMValueRef j = for_begin(cg, &lt, ci64(cg, 0), mpad, 1);
                LLVMBuildStore(cg->b, mul(cg, j, t.kc), LLVMBuildInBoundsGEP2(cg->b, cg->i64, rtab, &j, 1, ""));
                for_end(cg, &lt);
            }
            if_end(cg, &fs);
            t.abase = get(cg, vab);
            t.astr = ci64(cg, 0);
        } else {
            cg_pack_a(cg, g, ap, t.ic, t.mc, pc, t.kc);
        }
        emit_tiles(cg, g, &t);
        for_end(cg, &lic);
        for_end_at(cg, &lpc, add(cg, pc, t.kc));
        for_end(cg, &ljc);
    }
    LLVMBuildRetVoid(cg->b);
    cg->fn = save_fn;
    LLVMPositionBuilderAtEnd(cg->b, save_bb);
    return f;
}

static void arg_set(Cg *cg, LLVMValueRef args, int i, LLVMValueRef v);

/* The driver's argument array for the constant GEMM g (an alloca in the
 * current function; SCR, IB, IE, JB, JE left to the caller). */
static LLVMValueRef gemm_args(Cg *cg, const Gemm *g, LLVMValueRef A, LLVMValueRef B, LLVMValueRef C) {
    const ConvDims *d = &g->cv;
    int64_t k[GA_COUNT] = {0, 0, 0, 0, 0, 0, 0, 0, g->M, g->N, g->K, g->a_sm, g->a_sk, g->b_sk, g->b_sn, g->ldc,
                           g->cpq ? g->cpq : (g->N ? g->N : 1), g->cimg, g->aimg, g->ximg, g->beta0, d->p * d->q,
                           d->c, d->h, d->w, d->r, d->s, d->sh, d->sw, d->ph, d->pw, d->q, 0, g->relu};
    /* the constants as one global, copied into the alloca */
    LLVMTypeRef at = LLVMArrayType(cg->i64, GA_COUNT);
    LLVMValueRef kv[GA_COUNT];
    for (int i = 0; i < GA_COUNT; i++) kv[i] = ci64(cg, k[i]);
    char name[48];
    snprintf(name, sizeof name, "netc_gargs%d", cg->counter++);
    LLVMValueRef glob = LLVMAddGlobal(cg->mod, at, name);
    LLVMSetInitializer(glob, LLVMConstArray(cg->i64, kv, GA_COUNT));
    LLVMSetGlobalConstant(glob, 1);
    LLVMSetLinkage(glob, LLVMPrivateLinkage);
    LLVMSetUnnamedAddr(glob, 1);
    LLVMValueRef args = var(cg, at, NULL);
    LLVMBuildMemCpy(cg->b, LLVMBuildBitCast(cg->b, args, cg->p8, ""), 8, LLVMBuildBitCast(cg->b, glob, cg->p8, ""), 8,
                    ci64(cg, GA_COUNT * 8));
    LLVMValueRef p = LLVMBuildBitCast(cg->b, args, LLVMPointerType(cg->i64, 0), "");
    arg_set(cg, p, GA_A, A);
    arg_set(cg, p, GA_B, B);
    arg_set(cg, p, GA_C, C);
    return p;
}

static void arg_set(Cg *cg, LLVMValueRef args, int i, LLVMValueRef v) {
    LLVMValueRef idx = ci64(cg, i);
    if (LLVMGetTypeKind(LLVMTypeOf(v)) == LLVMPointerTypeKind) v = LLVMBuildPtrToInt(cg->b, v, cg->i64, "");
    LLVMBuildStore(cg->b, v, LLVMBuildInBoundsGEP2(cg->b, cg->i64, args, &idx, 1, ""));
}

/* A copy of the driver's argument array src in this function (each task
 * sets its own ranges). */
static LLVMValueRef args_copy(Cg *cg, LLVMValueRef src) {
    LLVMTypeRef at = LLVMArrayType(cg->i64, GA_COUNT);
    LLVMValueRef args = LLVMBuildBitCast(cg->b, var(cg, at, NULL), LLVMPointerType(cg->i64, 0), "");
    LLVMBuildMemCpy(cg->b, LLVMBuildBitCast(cg->b, args, cg->p8, ""), 8, LLVMBuildBitCast(cg->b, src, cg->p8, ""), 8,
                    ci64(cg, GA_COUNT * 8));
    return args;
}

/* Calls driver drv on args for C rows [ib, ie), columns [jb, je), with this
 * thread's scratch scr. */
static void call_driver(Cg *cg, LLVMValueRef drv, LLVMValueRef args, LLVMValueRef scr, LLVMValueRef ib, LLVMValueRef ie,
                        LLVMValueRef jb, LLVMValueRef je) {
    arg_set(cg, args, GA_SCR, scr);
    arg_set(cg, args, GA_IB, ib);
    arg_set(cg, args, GA_IE, ie);
    arg_set(cg, args, GA_JB, jb);
    arg_set(cg, args, GA_JE, je);
    cg_call(cg, drv, &args, 1);
}

static LLVMValueRef arg_get(Cg *cg, LLVMValueRef args, int i) {
    LLVMValueRef idx = ci64(cg, i);
    return LLVMBuildLoad2(cg->b, cg->i64, LLVMBuildInBoundsGEP2(cg->b, cg->i64, args, &idx, 1, ""), "");
}

/* Emits a call of the shared driver for the constant GEMM g on rows [ib, ie)
 * and columns [jb, je). */
static void emit_gemm(Cg *cg, const Gemm *g, LLVMValueRef A, LLVMValueRef B, LLVMValueRef C, LLVMValueRef ib,
                      LLVMValueRef ie, LLVMValueRef jbeg, LLVMValueRef jend, LLVMValueRef scr) {
    LLVMValueRef drv = gemm_driver(cg, g->bk);
    LLVMValueRef args = gemm_args(cg, g, A, B, C);
    call_driver(cg, drv, args, scr, ib, ie, jbeg, jend);
}

/* This thread's scratch: base + worker * per_thread floats. */
int64_t cg_round16(int64_t x) { return (x + 15) / 16 * 16; }

LLVMValueRef cg_thread_scratch(Cg *cg, LLVMValueRef base, int64_t per_thread) {
    per_thread = cg_round16(per_thread);
    LLVMValueRef w = LLVMBuildSExt(cg->b, cg_call(cg, cg->rt_worker_index, NULL, 0), cg->i64, "");
    return gep(cg, base, mulc(cg, w, per_thread));
}

/* Scratch for nthreads blocks of per_thread floats after `extra` shared
 * floats (one rt_scratch call per kernel: it may move the block). */
LLVMValueRef cg_scratch_for_threads(Cg *cg, LLVMValueRef nthreads, int64_t per_thread, int64_t extra) {
    per_thread = cg_round16(per_thread);
    LLVMValueRef bytes = addc(cg, mulc(cg, nthreads, per_thread * 4), cg_round16(extra) * 4);
    return LLVMBuildBitCast(cg->b, cg_call(cg, cg->rt_scratch, &bytes, 1), cg->pf, "");
}

/* The whole GEMM g split across the pool: T tasks, by column panels when
 * there are enough of them, else by MR-row blocks.  bias (linear): C rows
 * start at bias[j] (else C = AB when g->beta0, C += AB otherwise).  scr0: the
 * pool's per-thread GEMM scratch.  The body is shared by every GEMM of the
 * same kind: shapes travel in the driver's argument array. */

void cg_par_gemm(Cg *cg, const Gemm *g0, LLVMValueRef A, LLVMValueRef B, LLVMValueRef C, LLVMValueRef bias,
                     LLVMValueRef scr0) {
    /* a 1x1 stride-1 unpadded conv's im2col rows are contiguous runs of its
     * images (channel planes): B_PADROW reads them in place */
    Gemm gd = *g0;
    if (gd.bk == B_CONV_FWD && cg_conv_direct(&gd.cv)) gd.bk = B_PADROW;
    const Gemm *g = &gd;
    int64_t per = cg_gemm_scratch_floats(cg);
    LLVMValueRef nt = cg_nthreads(cg);
    LLVMValueRef drv = gemm_driver(cg, g->bk);
    LLVMValueRef v[4] = {gemm_args(cg, g, A, B, C), bias ? bias : LLVMConstNull(cg->pf), scr0, nt};
    char key[32];
    snprintf(key, sizeof key, "gemm%d_%d", (int)g->bk, bias != NULL);
    Par P;
    LLVMValueRef b, e;
    if (par_begin_shared(cg, &P, key, v, 4, nt, &b, &e)) {
        LLVMValueRef T = v[3];
        LLVMValueRef scr = cg_thread_scratch(cg, v[2], per);
        LLVMValueRef M = arg_get(cg, v[0], GA_M), N = arg_get(cg, v[0], GA_N), ldc = arg_get(cg, v[0], GA_LDC);
        LLVMValueRef panels = sdiv(cg, addc(cg, N, NR - 1), ci64(cg, NR)), mp = sdiv(cg, addc(cg, M, MR - 1), ci64(cg, MR));
        LLVMValueRef args = args_copy(cg, v[0]);
        LLVMValueRef Cp = LLVMBuildIntToPtr(cg->b, arg_get(cg, args, GA_C), cg->pf, "");
        Loop lt;
        LLVMValueRef t = for_begin(cg, &lt, b, e, 1);
        LLVMValueRef bycol = LLVMBuildOr(cg->b, icmp(cg, LLVMIntSGE, panels, mulc(cg, T, 2)),
                                         icmp(cg, LLVMIntSGE, panels, mp), "");
        if (g->bk == B_DYT) /* by rows: each thread packs only its rows of the big A */
            bycol = icmp(cg, LLVMIntSLT, mp, mulc(cg, T, 2));
        if (g->bk == B_PADT) /* by pixels: each thread streams only its part of x */
            bycol = LLVMConstInt(cg->i1, 0, 0);
        LLVMValueRef np = LLVMBuildSelect(cg->b, bycol, panels, mp, "");
        LLVMValueRef lo = sdiv(cg, mul(cg, t, np), T), hi = sdiv(cg, mul(cg, addc(cg, t, 1), np), T);
        LLVMValueRef jb = LLVMBuildSelect(cg->b, bycol, mulc(cg, lo, NR), ci64(cg, 0), "");
        LLVMValueRef je = LLVMBuildSelect(cg->b, bycol, imin(cg, mulc(cg, hi, NR), N), N, "");
        LLVMValueRef ib = LLVMBuildSelect(cg->b, bycol, ci64(cg, 0), mulc(cg, lo, MR), "");
        LLVMValueRef ie = LLVMBuildSelect(cg->b, bycol, M, imin(cg, mulc(cg, hi, MR), M), "");
        If f;
        if_begin(cg, &f, and1(cg, icmp(cg, LLVMIntSLT, ib, ie), icmp(cg, LLVMIntSLT, jb, je)));
        if (g->bk == B_PADT) {
            arg_set(cg, args, GA_AIMG, v[1]);   /* the bias, added by the driver */
        } else if (bias) {
            Loop lm, lj;
            LLVMValueRef m = for_begin(cg, &lm, ib, ie, 1);
            LLVMValueRef j = for_begin(cg, &lj, jb, je, 1);
            st(cg, ld(cg, v[1], j), Cp, add(cg, mul(cg, m, ldc), j));
            for_end(cg, &lj);
            for_end(cg, &lm);
        }
        call_driver(cg, drv, args, scr, ib, ie, jb, je);
        if_end(cg, &f);
        for_end(cg, &lt);
    }
    par_end(cg, &P);
}

/* GEMMs with a long reduction and a small C (the weight gradient of a first
 * conv layer: one input channel, a few dozen filters) leave threads idle
 * when split by columns, or pack all of B on every thread when split by
 * rows: the reduction is cut
 * into KSPLIT parts instead, one task each, C = sum of the parts in part
 * order.  The cut does not depend on the thread count, so neither does the
 * result.  part: KSPLIT * M * ldc floats. */
int cg_gemm_ksplit(const Gemm *g) {
    /* by rows, every thread would pack all of B; the parts cost KSPLIT C's */
    return g->bk == B_DYT && g->M * g->N <= 16384 && g->K >= (int64_t)KSPLIT * KC;
}

void cg_par_gemm_ksplit(Cg *cg, const Gemm *g, LLVMValueRef A, LLVMValueRef B, LLVMValueRef C, LLVMValueRef part,
                            LLVMValueRef scr0) {
    int64_t per = cg_gemm_scratch_floats(cg), csz = g->M * g->ldc;
    LLVMValueRef drv = gemm_driver(cg, g->bk);
    Gemm gp = *g;
    gp.beta0 = 1;
    LLVMValueRef v[3] = {gemm_args(cg, &gp, A, B, part), scr0, ci64(cg, csz)};
    char key[32];
    snprintf(key, sizeof key, "gemmk%d", (int)g->bk);
    Par P;
    LLVMValueRef b, e;
    if (par_begin_shared(cg, &P, key, v, 3, ci64(cg, KSPLIT), &b, &e)) {
        LLVMValueRef scr = cg_thread_scratch(cg, v[1], per);
        LLVMValueRef M = arg_get(cg, v[0], GA_M), N = arg_get(cg, v[0], GA_N), K = arg_get(cg, v[0], GA_K);
        LLVMValueRef args = args_copy(cg, v[0]);
        LLVMValueRef P0 = LLVMBuildIntToPtr(cg->b, arg_get(cg, args, GA_C), cg->pf, "");
        Loop lt;
        LLVMValueRef t = for_begin(cg, &lt, b, e, 1);
        /* part t: [t*K/KSPLIT, (t+1)*K/KSPLIT) rounded to KC */
        LLVMValueRef kb = mulc(cg, sdiv(cg, mul(cg, t, sdiv(cg, K, ci64(cg, KC))), ci64(cg, KSPLIT)), KC);
        LLVMValueRef t1 = addc(cg, t, 1);
        LLVMValueRef ke = LLVMBuildSelect(cg->b, icmp(cg, LLVMIntEQ, t1, ci64(cg, KSPLIT)), K,
                                          mulc(cg, sdiv(cg, mul(cg, t1, sdiv(cg, K, ci64(cg, KC))), ci64(cg, KSPLIT)), KC), "");
        arg_set(cg, args, GA_C, gep(cg, P0, mul(cg, t, v[2])));
        arg_set(cg, args, GA_KB, kb);
        arg_set(cg, args, GA_K, ke);
        call_driver(cg, drv, args, scr, ci64(cg, 0), M, ci64(cg, 0), N);
        for_end(cg, &lt);
    }
    par_end(cg, &P);
    /* C = the parts' sum, in part order */
    LLVMValueRef w[3] = {part, C, ci64(cg, csz)};
    if (par_begin_shared(cg, &P, "ksum", w, 3, ci64(cg, 1), &b, &e)) {
        Loop lt, li;
        LLVMValueRef i = for_begin(cg, &li, ci64(cg, 0), w[2], 1);
        LLVMValueRef acc = var(cg, cg->f32, ld(cg, w[0], i));
        LLVMValueRef t = for_begin(cg, &lt, ci64(cg, 1), ci64(cg, KSPLIT), 1);
        set(cg, acc, LLVMBuildFAdd(cg->b, get(cg, acc), ld(cg, w[0], add(cg, mul(cg, t, w[2]), i)), ""));
        for_end(cg, &lt);
        st(cg, get(cg, acc), w[1], i);
        for_end(cg, &li);
    }
    par_end(cg, &P);
}

void cg_emit_gemm_fn(Cg *cg, const char *name, int64_t M, int64_t N, int64_t K) {
    cg_fn_new(cg, name, LLVMFunctionType(cg->v, (LLVMTypeRef[]){cg->pf, cg->pf, cg->pf}, 3, 0), 0);
    LLVMValueRef f = cg->fn;
    Gemm g = {.M = M, .N = N, .K = K, .a_sm = K, .a_sk = 1, .bk = B_ROW, .b_sk = N, .b_sn = 1, .ldc = N};
    int64_t per = cg_gemm_scratch_floats(cg);
    LLVMValueRef scr = cg_scratch_for_threads(cg, ci64(cg, 1), per, 0);
    emit_gemm(cg, &g, LLVMGetParam(f, 0), LLVMGetParam(f, 1), LLVMGetParam(f, 2), ci64(cg, 0), ci64(cg, M),
              ci64(cg, 0), ci64(cg, N), scr);
    LLVMBuildRetVoid(cg->b);
}
