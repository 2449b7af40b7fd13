/* gemm.c - conv2d and linear (forward, backward data, backward weight) as
 * packed GEMMs.
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
 * which makes every B panel a contiguous load.
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
 *   on x (GoogLeNet 3%).
 * Small images whose output is the input's size (stride 1) load each
 * image's lanes of a panel with one masked load at a fixed distance instead
 * of gathering them. */
#include "cg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../runtime/pool.h"

enum { MR = 6, KC = 256, MC = MR * 20, APK = 1 << 20 };
#define NR (2 * cg->vw)
#define NC (NR * 64)

/* B_DYT: the stride-1 conv weight gradient transposed (see cg_emit_conv):
 * A = rows (c,r,s) of the zero-padded input x_pad read as one long row per
 * image, B(l, j) = dy of channel j at l = (image, p, q') over the padded
 * width, zero for q' >= Q.  Arguments: ASM = x_pad's plane stride, XIMG its
 * image stride, R, S, W = padded width, Q = the grid's width (padded width
 * at stride 1, else the output's), PQ = P * Q, SW = the output's width Q,
 * PH, PW = strides, BSN = dy's channel stride, AIMG = dy's image stride. */
/* B_PADROW: a stride-1 conv over the padded width: B(k = (c,r,s), l = (image,
 * p, q')) = x_pad[image][c][r*Wp + s + p*Wp + q'], a contiguous run per
 * image (H, W = padded sizes, PQ = P * Wp, XIMG = x_pad's image stride); a
 * 1x1 conv is the case H = 1, W = PQ = the image's pixels, R = S = 1. */
/* B_PADT: B_PADROW's conv transposed, y^T[(image, p, q'), K] = im2col(x_pad)^T
 * W^T: the pixels of the padded-width grid are the rows (MR consecutive
 * pixels of step k at x_pad + the panel's first pixel + a table of row
 * offsets, packed per block into [kc][MR] panels, or with one B panel read
 * in place by netc_ukr_ktab), W^T is packed whole once, and
 * each finished block of MC pixels x all K channels is written to y[n, k,
 * p, q] (q = q' < Q, + bias) from scratch: no compaction pass.  Arguments as
 * B_PADROW's, and SW = the output's width Q, CPQ = P * Q, CIMG = y's image
 * stride, AIMG = the bias (a pointer, or 0), PH = 1 when A is followed by
 * zeros (x_pad) that the last image's partial panel may read, 0 when A is
 * the input itself (1x1 convs: H = 1, W = Q = the image's pixels). */
typedef enum { B_ROW, B_COL, B_CONV_FWD, B_CONV_BWDW, B_DYT, B_PADROW, B_PADT } BKind;

typedef struct {
    int64_t c, h, w, k, r, s, sh, sw, ph, pw, p, q;
    int grad;               /* a gradient's product (the data gradient's forward conv, the weight gradient) */
} ConvDims;

typedef struct {
    int64_t M, N, K;
    int64_t a_sm, a_sk;     /* A(m,k) = A[m*a_sm + k*a_sk]; B_CONV_BWDW: A(m,(n,pq)) = A[m*a_sm + n*aimg + pq] */
    BKind bk;
    int64_t b_sk, b_sn;     /* B_ROW / B_COL: B(k,n) = B[k*b_sk + n*b_sn] */
    ConvDims cv;            /* B_CONV_*: B is a batch of images x[N, C, H, W] */
    int64_t ldc;
    int64_t cpq, cimg;      /* C(i,j) = C[i*ldc + (j/cpq)*cimg + j%cpq]; cpq 0: N */
    int64_t aimg, ximg;     /* image strides of A (B_CONV_BWDW) and of the conv input */
    int beta0;              /* C = AB rather than C += AB */
} Gemm;

/* a multiple of 16 floats, so every thread's block stays 64-byte aligned */
static int64_t gemm_scratch_floats(const Cg *cg) {
    /* B packed per block; B_PADROW: A whole, tables, a gathered panel;
     * B_PADT: W^T whole, the C block, tables, the A block (+ a store's spill) */
    int64_t packed = (int64_t)MC * KC + (int64_t)KC * NC, direct = APK + 4 * KC + (int64_t)KC * NR;
    int64_t padt = APK + (int64_t)MC * NC + 4 * KC + (int64_t)MC * KC + 16, most = packed;
    if (most < direct) most = direct;
    if (most < padt) most = padt;
    return most + MR * NR + 2 * (MC + MR) + 64;
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

static LLVMValueRef gep64(Cg *cg, LLVMValueRef p, int64_t i) {
    LLVMValueRef idx = ci64(cg, i);
    return LLVMBuildInBoundsGEP2(cg->b, cg->i64, p, &idx, 1, "");
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
enum { UK_PACKED, UK_ROWS, UK_DIRECT, UK_KTAB };

static LLVMValueRef micro_kernel_gen(Cg *cg, int kind) {
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

/* The GEMM driver is one function per B kind, shared by every kernel of the
 * module (shapes arrive as runtime arguments), which keeps compile time low;
 * the micro-kernel does all the arithmetic and does not depend on shapes.
 * PQ is the number of output pixels per image of a conv (B_CONV_FWD: columns
 * per image; B_CONV_BWDW: rows of B per image). */
enum { GA_A, GA_B, GA_C, GA_SCR, GA_IB, GA_IE, GA_JB, GA_JE, GA_M, GA_N, GA_K, GA_ASM, GA_ASK, GA_BSK,
       GA_BSN, GA_LDC, GA_CPQ, GA_CIMG, GA_AIMG, GA_XIMG, GA_BETA0, GA_PQ,
       GA_CC, GA_H, GA_W, GA_R, GA_S, GA_SH, GA_SW, GA_PH, GA_PW, GA_Q, GA_KB, GA_COUNT };

typedef struct {
    BKind bk;
    LLVMValueRef v[GA_COUNT];   /* i64 (pointers are loaded as float*) */
} GemmV;

#define G(x) (g->v[GA_##x])

/* (a, b) += 1 with b wrapping at bn (counters instead of divisions). */
static void bump2(Cg *cg, LLVMValueRef a, LLVMValueRef b, LLVMValueRef bn) {
    LLVMValueRef nb = addc(cg, get(cg, b), 1);
    LLVMValueRef wrap = icmp(cg, LLVMIntEQ, nb, bn);
    set(cg, b, LLVMBuildSelect(cg->b, wrap, ci64(cg, 0), nb, ""));
    set(cg, a, LLVMBuildSelect(cg->b, wrap, addc(cg, get(cg, a), 1), get(cg, a), ""));
}

/* (c, r, s) += 1 with s wrapping at sn into r and r wrapping at rn into c:
 * the im2col row counters, stepped without divisions. */
static void bump3(Cg *cg, LLVMValueRef vc, LLVMValueRef vr, LLVMValueRef vs, LLVMValueRef rn, LLVMValueRef sn) {
    LLVMValueRef c = get(cg, vc), r = get(cg, vr);
    LLVMValueRef ns = addc(cg, get(cg, vs), 1), ws = icmp(cg, LLVMIntEQ, ns, sn);
    set(cg, vs, LLVMBuildSelect(cg->b, ws, ci64(cg, 0), ns, ""));
    LLVMValueRef nr = LLVMBuildSelect(cg->b, ws, addc(cg, r, 1), r, "");
    LLVMValueRef wr = icmp(cg, LLVMIntEQ, nr, rn);
    set(cg, vr, LLVMBuildSelect(cg->b, wr, ci64(cg, 0), nr, ""));
    set(cg, vc, LLVMBuildSelect(cg->b, wr, addc(cg, c, 1), c, ""));
}

/* B_DYT: apack[ir*kc + i*kc + kk] = x_pad row (c,r,s) = ic+ir+i at l = pc+kk:
 * per image one contiguous run (zero rows for m >= M). */
static void pack_a_rows(Cg *cg, const GemmV *g, LLVMValueRef ap, LLVMValueRef ic, LLVMValueRef mc,
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

/* apack[ir*kc + kk*MR + i] = A(ic+ir+i, pc+kk), zero for rows >= M. */
static void pack_a(Cg *cg, const GemmV *g, LLVMValueRef ap, LLVMValueRef ic, LLVMValueRef mc,
                   LLVMValueRef pc, LLVMValueRef kc) {
    if (g->bk == B_DYT) {
        pack_a_rows(cg, g, ap, ic, mc, pc, kc);
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
        if (batched) bump2(cg, vn, vq, G(PQ));
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
        if (batched) bump2(cg, vn, vq, G(PQ));
        for_end(cg, &lk);
    }
    if_end(cg, &f);
    for_end(cg, &li);
}

static LLVMValueRef tr32(Cg *cg, LLVMValueRef x) { return LLVMBuildTrunc(cg->b, x, cg->i32, ""); }
static LLVMValueRef vs32(Cg *cg, LLVMValueRef x64) { return vsplat_dyn_i32(cg, tr32(cg, x64)); }

/* NR floats at base[off], zero where mask is clear. */
static LLVMValueRef gather(Cg *cg, LLVMValueRef base, LLVMValueRef off, LLVMValueRef mask) {
    return cg_gather(cg, base, off, mask, LLVMConstNull(vnr(cg)));
}

/* Lanes at image rows ih, columns iw (vectors), offsets coff (image and
 * channel): *mask = inside the image and nmask, *off = the offsets (0 where
 * masked). */
static void conv_lanes(Cg *cg, const GemmV *g, LLVMValueRef ih, LLVMValueRef iw, LLVMValueRef coff, LLVMValueRef nmask,
                       LLVMValueRef *mask, LLVMValueRef *off) {
    LLVMValueRef okh = LLVMBuildICmp(cg->b, LLVMIntULT, ih, vs32(cg, G(H)), "");
    LLVMValueRef okw = LLVMBuildICmp(cg->b, LLVMIntULT, iw, vs32(cg, G(W)), "");
    *mask = LLVMBuildAnd(cg->b, LLVMBuildAnd(cg->b, okh, okw, ""), nmask, "");
    LLVMValueRef o = LLVMBuildAdd(cg->b, coff, LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, ih, vs32(cg, G(W)), ""), iw, ""), "");
    *off = LLVMBuildSelect(cg->b, *mask, o, vsplat_i32(cg, 0), "");
}

/* NR contiguous floats at p, lanes off mask zero (not read). */
static LLVMValueRef masked_load(Cg *cg, LLVMValueRef p, LLVMValueRef mask) {
    return cg_masked_load(cg, p, mask, LLVMConstNull(vnr(cg)));
}

static LLVMValueRef lane_ids(Cg *cg) {
    LLVMValueRef e[64];
    for (int i = 0; i < NR; i++) e[i] = ci32(cg, i);
    return LLVMConstVector(e, (unsigned)NR);
}

static LLVMValueRef vand(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAnd(cg->b, a, b, ""); }

/* B_PADROW is not packed: the micro-kernel reads a panel's row k at
 * x_pad + (panel's first column) + boff[k].  boff[kk] = offset of im2col row
 * pc + kk = (c, r, s) in an image: c*H*W + r*W + s, for the block; ptab[kk] =
 * kk*NR, the same for a panel packed at pbuf. */
static void padrow_offsets(Cg *cg, const GemmV *g, LLVMValueRef boff, LLVMValueRef ptab, LLVMValueRef c0,
                           LLVMValueRef r0, LLVMValueRef s0, LLVMValueRef kc) {
    LLVMValueRef plane = mul(cg, G(H), G(W));
    LLVMValueRef vc = var(cg, cg->i64, c0), vr = var(cg, cg->i64, r0), vsx = var(cg, cg->i64, s0);
    Loop lk;
    LLVMValueRef kk = for_begin(cg, &lk, ci64(cg, 0), kc, 1);
    LLVMValueRef off = add(cg, mul(cg, get(cg, vc), plane), add(cg, mul(cg, get(cg, vr), G(W)), get(cg, vsx)));
    LLVMBuildStore(cg->b, off, LLVMBuildInBoundsGEP2(cg->b, cg->i64, boff, &kk, 1, ""));
    LLVMBuildStore(cg->b, mulc(cg, kk, NR), LLVMBuildInBoundsGEP2(cg->b, cg->i64, ptab, &kk, 1, ""));
    bump3(cg, vc, vr, vsx, G(R), G(S));
    for_end(cg, &lk);
}

/* B_PADROW: the panel of columns n0.. packed into pbuf [kc][NR] by gathers,
 * for the panels that cross an image or jend (offsets image*XIMG + column in
 * the image, masked past jend). */
static void padrow_gather_panel(Cg *cg, const GemmV *g, LLVMValueRef pbuf, LLVMValueRef boff, LLVMValueRef n0,
                                LLVMValueRef jend, LLVMValueRef kc) {
    LLVMValueRef L = G(PQ);
    LLVMValueRef nv = LLVMBuildAdd(cg->b, vs32(cg, n0), lane_ids(cg), "");
    LLVMValueRef nmask = LLVMBuildICmp(cg->b, LLVMIntSLT, nv, vs32(cg, jend), "");
    LLVMValueRef imv = LLVMBuildSDiv(cg->b, nv, vs32(cg, L), "");
    LLVMValueRef pwv = LLVMBuildSub(cg->b, nv, LLVMBuildMul(cg->b, imv, vs32(cg, L), ""), "");
    LLVMValueRef loff = LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, imv, vs32(cg, G(XIMG)), ""), pwv, "");
    loff = LLVMBuildSelect(cg->b, nmask, loff, vsplat_i32(cg, 0), "");
    Loop lk;
    LLVMValueRef kk = for_begin(cg, &lk, ci64(cg, 0), kc, 1);
    LLVMValueRef o = LLVMBuildLoad2(cg->b, cg->i64, LLVMBuildInBoundsGEP2(cg->b, cg->i64, boff, &kk, 1, ""), "");
    vnr_st(cg, gather(cg, gep(cg, G(B), o), loff, nmask), pbuf, mulc(cg, kk, NR), 32);
    for_end(cg, &lk);
}

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

static LLVMValueRef v8ld(Cg *cg, LLVMValueRef p, LLVMValueRef idx);
static void v8st(Cg *cg, LLVMValueRef v, LLVMValueRef p, LLVMValueRef idx);
static void transpose8(Cg *cg, LLVMValueRef *v);

/* B_DYT's panel at channel n0 when the grid is the output (1x1 convs: no
 * padded columns): within an image a k block's rows l are contiguous in
 * every channel of dy, so the panel is a transposed copy, eight rows l by
 * eight channels at a time (was a gather per row: 1x1 weight gradients
 * spent a sixth of their time there); each image's last rows, fewer than
 * eight, are gathered. */
static void dyt_pack_contig(Cg *cg, const GemmV *g, LLVMValueRef dst, LLVMValueRef n0, LLVMValueRef jend,
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
    vnr_st(cg, gather(cg, gep(cg, src, sub(cg, e, lo)), joff, nmask), dst, mulc(cg, sub(cg, e, pc), NR), 32);
    for_end(cg, &le);
    for_end(cg, &li);
}

/* bpack[jr*kc + kk*NR + jj] = B(pc+kk, jc+jr+jj), zero for columns >= jend. */
static void pack_b(Cg *cg, const GemmV *g, LLVMValueRef bp, LLVMValueRef jc, LLVMValueRef nc,
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
        padrow_offsets(cg, g, boff, gep64(cg, boff, KC), c0, r0, s0, kc);
        return;
    }
    if (g->bk == B_ROW) {
        /* full panels row by row (one stream per row), then the last partial one */
        LLVMValueRef nfull = sdiv(cg, nc, ci64(cg, NR));
        LLVMValueRef kk = for_begin(cg, &lk, ci64(cg, 0), kc, 1);
        LLVMValueRef row = gep(cg, B, add(cg, mul(cg, add(cg, pc, kk), G(BSK)), jc));
        LLVMValueRef pj = for_begin(cg, &ln, ci64(cg, 0), nfull, 1);
        vnr_st(cg, vnr_ld(cg, row, mulc(cg, pj, NR), 4), bp, add(cg, mul(cg, mulc(cg, pj, NR), kc), mulc(cg, kk, NR)), 32);
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
        LLVMValueRef nv = LLVMBuildAdd(cg->b, vs32(cg, n0), lane_ids(cg), "");
        LLVMValueRef nmask = LLVMBuildICmp(cg->b, LLVMIntSLT, nv, vs32(cg, jend), "");
        LLVMValueRef joff = LLVMBuildMul(cg->b, nv, vs32(cg, G(BSN)), "");
        joff = LLVMBuildSelect(cg->b, nmask, joff, vsplat_i32(cg, 0), "");
        /* NR is a multiple of 8 (two vectors of 4, 8 or 16 floats) */
        If fc;
        if_begin(cg, &fc, icmp(cg, LLVMIntEQ, G(Q), G(SW)));
        dyt_pack_contig(cg, g, dst, n0, jend, joff, nmask, pc, kc);
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
        vnr_st(cg, gather(cg, base, joff, mask), dst, mulc(cg, kk, NR), 32);
        bump3(cg, vc, vr, vsx, rows, G(Q));   /* q'++, carrying into p and the image */
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
        LLVMValueRef nv = LLVMBuildAdd(cg->b, vs32(cg, n0), lane_ids(cg), "");
        LLVMValueRef nmask = LLVMBuildICmp(cg->b, LLVMIntSLT, nv, vs32(cg, jend), "");
        LLVMValueRef hw = mul(cg, G(H), G(W));
        if (g->bk == B_CONV_FWD) {
            /* columns are (image, p, q); rows are (c, r, s) */
            LLVMValueRef imv = LLVMBuildSDiv(cg->b, nv, vs32(cg, G(PQ)), "");
            LLVMValueRef pix = LLVMBuildSub(cg->b, nv, LLVMBuildMul(cg->b, imv, vs32(cg, G(PQ)), ""), "");
            LLVMValueRef pv = LLVMBuildSDiv(cg->b, pix, vs32(cg, G(Q)), "");
            LLVMValueRef qv = LLVMBuildSub(cg->b, pix, LLVMBuildMul(cg->b, pv, vs32(cg, G(Q)), ""), "");
            LLVMValueRef hb = LLVMBuildSub(cg->b, LLVMBuildMul(cg->b, pv, vs32(cg, G(SH)), ""), vs32(cg, G(PH)), "");
            LLVMValueRef wb = LLVMBuildSub(cg->b, LLVMBuildMul(cg->b, qv, vs32(cg, G(SW)), ""), vs32(cg, G(PW)), "");
            LLVMValueRef ioff = LLVMBuildMul(cg->b, imv, vs32(cg, G(XIMG)), "");
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
            LLVMValueRef first = LLVMBuildICmp(cg->b, LLVMIntSLT, lane_ids(cg), vs32(cg, split), "");
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
                    conv_lanes(cg, g, LLVMBuildAdd(cg->b, hb, vs32(cg, r), ""), LLVMBuildAdd(cg->b, wb, vs32(cg, sx), ""),
                               ioff, nmask, &mask, &off);
                    s1 = add(cg, add(cg, mul(cg, im0, G(XIMG)), pix0), delta);
                    s2 = add(cg, s1, sub(cg, G(XIMG), G(PQ)));
                    m1 = vand(cg, mask, first);
                    m2 = vand(cg, mask, LLVMBuildNot(cg->b, first, ""));
                } else if (path == 0) {
                    /* lanes iw0 + lane in [0, W), row ih0 in [0, H): one masked load */
                    LLVMValueRef ih0 = add(cg, h0, r), iw0 = add(cg, w0, sx);
                    LLVMValueRef iwv = LLVMBuildAdd(cg->b, vs32(cg, iw0), lane_ids(cg), "");
                    LLVMValueRef m = LLVMBuildICmp(cg->b, LLVMIntULT, iwv, vs32(cg, G(W)), "");
                    LLVMValueRef okh = LLVMBuildICmp(cg->b, LLVMIntULT, vs32(cg, ih0), vs32(cg, G(H)), "");
                    mask = vand(cg, m, okh);
                    off = add(cg, mul(cg, ih0, G(W)), iw0);
                } else {
                    conv_lanes(cg, g, LLVMBuildAdd(cg->b, hb, vs32(cg, r), ""), LLVMBuildAdd(cg->b, wb, vs32(cg, sx), ""),
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
                    v = gather(cg, gep(cg, B, mul(cg, c, hw)), off, mask);
                }
                vnr_st(cg, v, dst, mulc(cg, k, NR), 32);
                for_end(cg, &lcc);
                for_end(cg, &lrs);
            }
            if_end(cg, &f2);
            if_end(cg, &f);
        } else {
            /* columns are (c, r, s); rows are (image, p, q) */
            LLVMValueRef rs = mul(cg, G(R), G(S));
            LLVMValueRef cv = LLVMBuildSDiv(cg->b, nv, vs32(cg, rs), "");
            LLVMValueRef rem = LLVMBuildSub(cg->b, nv, LLVMBuildMul(cg->b, cv, vs32(cg, rs), ""), "");
            LLVMValueRef rv = LLVMBuildSDiv(cg->b, rem, vs32(cg, G(S)), "");
            LLVMValueRef sv = LLVMBuildSub(cg->b, rem, LLVMBuildMul(cg->b, rv, vs32(cg, G(S)), ""), "");
            LLVMValueRef coff = LLVMBuildMul(cg->b, cv, vs32(cg, hw), "");
            set(cg, vc, c0);
            set(cg, vr, r0);
            set(cg, vsx, s0);
            LLVMValueRef kk = for_begin(cg, &lk, ci64(cg, 0), kc, 1);
            LLVMValueRef im = get(cg, vc), p = get(cg, vr), q = get(cg, vsx);
            LLVMValueRef hb = vs32(cg, sub(cg, mul(cg, p, G(SH)), G(PH)));
            LLVMValueRef wb = vs32(cg, sub(cg, mul(cg, q, G(SW)), G(PW)));
            LLVMValueRef mask, off;
            conv_lanes(cg, g, LLVMBuildAdd(cg->b, hb, rv, ""), LLVMBuildAdd(cg->b, wb, sv, ""), coff, nmask, &mask, &off);
            vnr_st(cg, gather(cg, gep(cg, B, mul(cg, im, G(XIMG))), off, mask), dst, mulc(cg, kk, NR), 32);
            bump3(cg, vc, vr, vsx, rows, G(Q));   /* q++, carrying into p and the image */
            for_end(cg, &lk);
        }
    }
    for_end(cg, &lj);
}

/* The C tiles of one block: columns [jc, jc + nc) by rows [ic, ic + mc),
 * k block [pc, pc + kc).  A's panel ir is at abase + ir * astr (B_DYT:
 * abase with its rows in rtab); B's panel jr at bp + jr * kc, or for
 * B_PADROW read in place (tables at bp, see padrow_offsets). */
typedef struct {
    LLVMValueRef ukr, tile, rtab, vn, vq, jend, bp;
    LLVMValueRef jc, nc, ic, mc, kc, acc, accb, abase, astr;
} Tiles;

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
        padrow_gather_panel(cg, g, pbuf, boff, jg, jend, kc);
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
        LLVMValueRef a[7] = {apan, bpan, gep(cg, G(C), add(cg, crow, cbase)), G(LDC), kc, t->acc, utab};
        cg_call(cg, t->ukr, a, nargs);
    }
    if_else(cg, &fi);
    {
        LLVMValueRef a[7] = {apan, bpan, tile, ci64(cg, NR), kc, ci64(cg, 0), utab};
        cg_call(cg, t->ukr, a, nargs);
        Loop li, lj;
        set(cg, t->vn, cn);
        set(cg, t->vq, cpix);
        LLVMValueRef j = for_begin(cg, &lj, ci64(cg, 0), nr, 1);
        LLVMValueRef coff = add(cg, crow, add(cg, mul(cg, get(cg, t->vn), G(CIMG)), get(cg, t->vq)));
        LLVMValueRef i = for_begin(cg, &li, ci64(cg, 0), mr, 1);
        LLVMValueRef ci = add(cg, coff, mul(cg, i, G(LDC)));
        LLVMValueRef tv = ld(cg, tile, add(cg, mulc(cg, i, NR), j));
        LLVMValueRef old = LLVMBuildSelect(cg->b, t->accb, ld(cg, G(C), ci), cf32(cg, 0), "");
        st(cg, LLVMBuildFAdd(cg->b, old, tv, ""), G(C), ci);
        for_end(cg, &li);
        bump2(cg, t->vn, t->vq, G(CPQ));
        for_end(cg, &lj);
    }
    if_end(cg, &fi);
    for_end(cg, &lir);
    for_end(cg, &ljr);
}

/* B_DYT with images of fewer grid pixels than this (1x1 convs on 12x12,
 * 6x6 and 3x3 maps) packs A's rows across images in full KC blocks: blocks
 * that stop at every image would hold 144, 36 or 9 steps, and the
 * micro-kernel's calls cost more than their multiply-adds (at 144 the
 * packed, contiguous panels are also read faster than six rows in place:
 * the 1x1 weight gradient on 12x12 maps 5-10% faster than at 128). */
enum { DYT_SMALL = 160 };

static LLVMValueRef dyt_small(Cg *cg, const GemmV *g) {
    return icmp(cg, LLVMIntSLT, G(PQ), ci64(cg, DYT_SMALL));
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
    return LLVMBuildSelect(cg->b, dyt_small(cg, g), kc, imin(cg, kc, blk), "");
}

static LLVMValueRef v8ld(Cg *cg, LLVMValueRef p, LLVMValueRef idx) {
    LLVMTypeRef v8 = LLVMVectorType(cg->f32, 8);
    LLVMValueRef l = LLVMBuildLoad2(cg->b, v8, LLVMBuildBitCast(cg->b, gep(cg, p, idx), LLVMPointerType(v8, 0), ""), "");
    LLVMSetAlignment(l, 4);
    return l;
}

static void v8st(Cg *cg, LLVMValueRef v, LLVMValueRef p, LLVMValueRef idx) {
    LLVMTypeRef v8 = LLVMVectorType(cg->f32, 8);
    LLVMSetAlignment(LLVMBuildStore(cg->b, v, LLVMBuildBitCast(cg->b, gep(cg, p, idx), LLVMPointerType(v8, 0), "")), 4);
}

static LLVMValueRef shuf8(Cg *cg, LLVMValueRef a, LLVMValueRef b, const int *m) {
    LLVMValueRef e[8];
    for (int i = 0; i < 8; i++) e[i] = ci32(cg, m[i]);
    return LLVMBuildShuffleVector(cg->b, a, b, LLVMConstVector(e, 8), "");
}

/* eight lanes of x (any scalar type) */
static LLVMValueRef splat8(Cg *cg, LLVMValueRef x) {
    LLVMTypeRef vt = LLVMVectorType(LLVMTypeOf(x), 8);
    LLVMValueRef u = LLVMBuildInsertElement(cg->b, LLVMGetUndef(vt), x, ci32(cg, 0), "");
    return LLVMBuildShuffleVector(cg->b, u, LLVMGetUndef(vt), LLVMConstNull(LLVMVectorType(cg->i32, 8)), "");
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

/* Software prefetch, spread over a block's micro-kernel calls: rows (input
 * or output channels) of `lines` cache lines, `stride` floats apart from
 * base; call t prefetches rows [t*per, t*per + per), for writing when rw.
 * A block of the transposed conv reads each of its C channels' rows for
 * only MC pixels, more runs at once than the hardware prefetcher follows:
 * prefetching the next block's rows made 1x1 convs over 54x54 maps (96
 * channels) 35% faster, GoogLeNet's step 4%, 3x3 and 5x5 convs no faster
 * or slower.  (The transposed weight gradient reads six rows at a time,
 * which the hardware follows: prefetching there was no faster.) */
typedef struct {
    LLVMValueRef base, stride, rows, lines, per;
    int rw;
} Prefetch;

static void prefetch_slice(Cg *cg, const Prefetch *s, LLVMValueRef t) {
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
static void padt_body(Cg *cg, const GemmV *g, LLVMValueRef ukt, LLVMValueRef ukp) {
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
        padrow_offsets(cg, g, boff, gep64(cg, boff, KC), c0, r0, s0, kc);
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
            /* eight floats ending at the panel's last pixel (starting at its
             * first when that is the grid's first or second: the 1x1 convs'
             * images hold 36 pixels or more, x_pad has zeros after its
             * last), the panel's six stored with two that the next step or
             * panel overwrites (the last spills into the scratch's slack) */
            LLVMValueRef back = icmp(cg, LLVMIntSGE, pix0, ci64(cg, 8 - MR));
            LLVMValueRef sh = LLVMBuildSelect(cg->b, back, ci64(cg, 8 - MR), ci64(cg, 0), "");
            LLVMValueRef src = gep(cg, G(A), sub(cg, add(cg, mul(cg, im, G(XIMG)), pix0), sh));
            int m[8];
            for (int i = 0; i < 8; i++) m[i] = i + 8 - MR < 8 ? i + 8 - MR : i;
            LLVMValueRef kk = for_begin(cg, &l2, ci64(cg, 0), kc, 1);
            LLVMValueRef o = LLVMBuildLoad2(cg->b, cg->i64, LLVMBuildInBoundsGEP2(cg->b, cg->i64, boff, &kk, 1, ""), "");
            LLVMValueRef v = v8ld(cg, src, o);
            v = LLVMBuildSelect(cg->b, back, shuf8(cg, v, v, m), v, "");
            v8st(cg, v, dst, mulc(cg, kk, MR));
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
    prefetch_slice(cg, &pf, get(cg, pft));
    prefetch_slice(cg, &pfw, get(cg, pft));
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
                    LLVMValueRef o = LLVMBuildFAdd(cg->b, v[i], splat8(cg, bk[i]), "");
                    LLVMValueRef pp = LLVMBuildBitCast(cg->b, gep(cg, yrow, add(cg, mul(cg, addc(cg, k, i), G(CPQ)), x)),
                                                       LLVMPointerType(v8, 0), "");
                    LLVMSetAlignment(LLVMBuildStore(cg->b, o, pp), 4);
                }
                for_end(cg, &lx);
                x = for_begin(cg, &lx, len8, len, 1);
                for (int i = 0; i < 8; i++)
                    st(cg, LLVMBuildFAdd(cg->b, ld(cg, crow, add(cg, mul(cg, x, ldc), addc(cg, k, i))), bk[i], ""), yrow,
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
                st(cg, LLVMBuildFAdd(cg->b, ld(cg, crow, add(cg, mul(cg, x, ldc), k)), bb, ""), yrow,
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

/* void netc_gemm<kind>(i64 *args): C[IB:IE, JB:JE] (+)= A B on the calling
 * thread, with gemm_scratch_floats() floats of scratch.
 *
 * Packed kinds block as Goto/BLIS do: jc (NC columns), pc (KC), pack B's
 * block; ic (MC rows), pack A's block; then the tiles.  B_PADROW has no B to
 * pack: A is packed whole once (when it fits APK floats, else block by
 * block: ~4% slower on ResNet-18's and NiN's convs), then jc, ic (MC rows),
 * pc, so that a C block of MC x NC is finished before the next.  B_PADT:
 * padt_body. */
static LLVMValueRef gemm_driver(Cg *cg, BKind bk) {
    char name[32];
    snprintf(name, sizeof name, "netc_gemm%d", (int)bk);
    LLVMValueRef f = LLVMGetNamedFunction(cg->mod, name);
    if (f) return f;
    int direct = bk == B_PADROW;
    LLVMValueRef ukr = micro_kernel_gen(cg, bk == B_DYT ? UK_ROWS : direct ? UK_DIRECT : bk == B_PADT ? UK_KTAB : UK_PACKED);
    LLVMValueRef ukp = bk == B_PADT ? micro_kernel_gen(cg, UK_PACKED) : NULL;
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
    Tiles t = {.ukr = ukr, .jend = G(JE), .vn = var(cg, cg->i64, NULL), .vq = var(cg, cg->i64, NULL)};
    Loop ljc, lpc, lic;
    if (bk == B_PADT) {
        padt_body(cg, g, ukr, ukp);
    } else if (direct) {
        LLVMValueRef ap = G(SCR);
        t.bp = gep(cg, ap, ci64(cg, APK));
        t.tile = gep(cg, t.bp, ci64(cg, 4 * KC + (int64_t)KC * NR));
        LLVMValueRef rows = sub(cg, G(IE), G(IB));
        LLVMValueRef afull = icmp(cg, LLVMIntSLE, mul(cg, mulc(cg, sdiv(cg, addc(cg, rows, MR - 1), ci64(cg, MR)), MR), G(K)),
                                  ci64(cg, APK));
        If fa;
        if_begin(cg, &fa, afull);
        pack_a(cg, g, ap, G(IB), rows, ci64(cg, 0), G(K));
        if_end(cg, &fa);
        t.jc = for_begin(cg, &ljc, G(JB), t.jend, NC);
        t.nc = imin(cg, ci64(cg, NC), sub(cg, t.jend, t.jc));
        t.ic = for_begin(cg, &lic, G(IB), G(IE), MC);
        t.mc = imin(cg, ci64(cg, MC), sub(cg, G(IE), t.ic));
        LLVMValueRef pc = for_begin(cg, &lpc, G(KB), G(K), KC);
        t.kc = kblock(cg, g, pc);
        t.accb = LLVMBuildOr(cg->b, LLVMBuildNot(cg->b, beta0, ""), icmp(cg, LLVMIntNE, pc, G(KB)), "");
        t.acc = LLVMBuildZExt(cg->b, t.accb, cg->i64, "");
        pack_b(cg, g, t.bp, t.jc, t.nc, t.jend, pc, t.kc);   /* the row offset tables */
        LLVMValueRef va = var(cg, cg->pf, NULL), vs = var(cg, cg->i64, NULL);
        if_begin(cg, &fa, afull);
        /* panel (ic - IB + ir) / MR of the whole, at its k = pc */
        set(cg, va, gep(cg, ap, add(cg, mul(cg, sub(cg, t.ic, G(IB)), G(K)), mulc(cg, pc, MR))));
        set(cg, vs, G(K));
        if_else(cg, &fa);
        pack_a(cg, g, ap, t.ic, t.mc, pc, t.kc);
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
        /* accumulate unless beta0 and this is the first k block */
        t.accb = LLVMBuildOr(cg->b, LLVMBuildNot(cg->b, beta0, ""), icmp(cg, LLVMIntNE, pc, G(KB)), "");
        t.acc = LLVMBuildZExt(cg->b, t.accb, cg->i64, "");
        pack_b(cg, g, t.bp, t.jc, t.nc, t.jend, pc, t.kc);
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
                                   LLVMBuildNot(cg->b, dyt_small(cg, g), "")));
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
                pack_a(cg, g, ap, t.ic, t.mc, pc, t.kc);
                set(cg, vab, ap);
                LLVMValueRef j = for_begin(cg, &lt, ci64(cg, 0), mpad, 1);
                LLVMBuildStore(cg->b, mul(cg, j, t.kc), LLVMBuildInBoundsGEP2(cg->b, cg->i64, rtab, &j, 1, ""));
                for_end(cg, &lt);
            }
            if_end(cg, &fs);
            t.abase = get(cg, vab);
            t.astr = ci64(cg, 0);
        } else {
            pack_a(cg, g, ap, t.ic, t.mc, pc, t.kc);
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

#undef G

static void arg_set(Cg *cg, LLVMValueRef args, int i, LLVMValueRef v);

/* The driver's argument array for the constant GEMM g (an alloca in the
 * current function; SCR, IB, IE, JB, JE left to the caller). */
static LLVMValueRef gemm_args(Cg *cg, const Gemm *g, LLVMValueRef A, LLVMValueRef B, LLVMValueRef C) {
    const ConvDims *d = &g->cv;
    int64_t k[GA_COUNT] = {0, 0, 0, 0, 0, 0, 0, 0, g->M, g->N, g->K, g->a_sm, g->a_sk, g->b_sk, g->b_sn, g->ldc,
                           g->cpq ? g->cpq : (g->N ? g->N : 1), g->cimg, g->aimg, g->ximg, g->beta0, d->p * d->q,
                           d->c, d->h, d->w, d->r, d->s, d->sh, d->sw, d->ph, d->pw, d->q, 0};
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
static int64_t round16(int64_t x) { return (x + 15) / 16 * 16; }

static LLVMValueRef thread_scratch(Cg *cg, LLVMValueRef base, int64_t per_thread) {
    per_thread = round16(per_thread);
    LLVMValueRef w = LLVMBuildSExt(cg->b, cg_call(cg, cg->rt_worker_index, NULL, 0), cg->i64, "");
    return gep(cg, base, mulc(cg, w, per_thread));
}

/* Scratch for nthreads blocks of per_thread floats after `extra` shared
 * floats (one rt_scratch call per kernel: it may move the block). */
static LLVMValueRef scratch_for_threads(Cg *cg, LLVMValueRef nthreads, int64_t per_thread, int64_t extra) {
    per_thread = round16(per_thread);
    LLVMValueRef bytes = addc(cg, mulc(cg, nthreads, per_thread * 4), round16(extra) * 4);
    return LLVMBuildBitCast(cg->b, cg_call(cg, cg->rt_scratch, &bytes, 1), cg->pf, "");
}

/* The whole GEMM g split across the pool: T tasks, by column panels when
 * there are enough of them, else by MR-row blocks.  bias (linear): C rows
 * start at bias[j] (else C = AB when g->beta0, C += AB otherwise).  scr0: the
 * pool's per-thread GEMM scratch.  The body is shared by every GEMM of the
 * same kind: shapes travel in the driver's argument array. */
static int conv_direct(const ConvDims *d);

static void par_gemm(Cg *cg, const Gemm *g0, LLVMValueRef A, LLVMValueRef B, LLVMValueRef C, LLVMValueRef bias,
                     LLVMValueRef scr0) {
    /* a 1x1 stride-1 unpadded conv's im2col rows are contiguous runs of its
     * images (channel planes): B_PADROW reads them in place */
    Gemm gd = *g0;
    if (gd.bk == B_CONV_FWD && conv_direct(&gd.cv)) gd.bk = B_PADROW;
    const Gemm *g = &gd;
    int64_t per = gemm_scratch_floats(cg);
    LLVMValueRef nt = cg_nthreads(cg);
    LLVMValueRef drv = gemm_driver(cg, g->bk);
    LLVMValueRef v[4] = {gemm_args(cg, g, A, B, C), bias ? bias : LLVMConstNull(cg->pf), scr0, nt};
    char key[32];
    snprintf(key, sizeof key, "gemm%d_%d", (int)g->bk, bias != NULL);
    Par P;
    LLVMValueRef b, e;
    if (par_begin_shared(cg, &P, key, v, 4, nt, &b, &e)) {
        LLVMValueRef T = v[3];
        LLVMValueRef scr = thread_scratch(cg, v[2], per);
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
enum { KSPLIT = 16 };

static int gemm_ksplit(const Gemm *g) {
    /* by rows, every thread would pack all of B; the parts cost KSPLIT C's */
    return g->bk == B_DYT && g->M * g->N <= 16384 && g->K >= (int64_t)KSPLIT * KC;
}

static void par_gemm_ksplit(Cg *cg, const Gemm *g, LLVMValueRef A, LLVMValueRef B, LLVMValueRef C, LLVMValueRef part,
                            LLVMValueRef scr0) {
    int64_t per = gemm_scratch_floats(cg), csz = g->M * g->ldc;
    LLVMValueRef drv = gemm_driver(cg, g->bk);
    Gemm gp = *g;
    gp.beta0 = 1;
    LLVMValueRef v[3] = {gemm_args(cg, &gp, A, B, part), scr0, ci64(cg, csz)};
    char key[32];
    snprintf(key, sizeof key, "gemmk%d", (int)g->bk);
    Par P;
    LLVMValueRef b, e;
    if (par_begin_shared(cg, &P, key, v, 3, ci64(cg, KSPLIT), &b, &e)) {
        LLVMValueRef scr = thread_scratch(cg, v[1], per);
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
    int64_t per = gemm_scratch_floats(cg);
    LLVMValueRef scr = scratch_for_threads(cg, ci64(cg, 1), per, 0);
    emit_gemm(cg, &g, LLVMGetParam(f, 0), LLVMGetParam(f, 1), LLVMGetParam(f, 2), ci64(cg, 0), ci64(cg, M),
              ci64(cg, 0), ci64(cg, N), scr);
    LLVMBuildRetVoid(cg->b);
}

/* ---- conv ------------------------------------------------------------------ */

static ConvDims conv_dims_p(const Program *p, const IrNode *n, int x, int y) {
    const IrType *tx = ir_type(&p->g, x), *ty = ir_type(&p->g, y);
    ConvDims d = {.c = tx->d[1], .h = tx->d[2], .w = tx->d[3], .k = ty->d[1],
                  .r = n->attr.conv.kh, .s = n->attr.conv.kw, .sh = n->attr.conv.sh,
                  .sw = n->attr.conv.sw, .ph = n->attr.conv.ph, .pw = n->attr.conv.pw,
                  .p = ty->d[2], .q = ty->d[3]};
    return d;
}

static ConvDims conv_dims(Cg *cg, const IrNode *n, int x, int y) { return conv_dims_p(cg->p, n, x, y); }

static int conv_direct(const ConvDims *d) {
    return d->r == 1 && d->s == 1 && d->sh == 1 && d->sw == 1 && d->ph == 0 && d->pw == 0;
}

/* 1x1 stride-1 unpadded: the image as one row of H*W pixels. */
static ConvDims conv_flat(ConvDims d) {
    if (conv_direct(&d)) {
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
static LLVMValueRef ld_or0(Cg *cg, LLVMValueRef p, LLVMValueRef i) {
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

/* The row width of x_pad.  At stride 1 a row's right padding is the next
 * row's left padding: an output column q < Q reads x_pad columns up to
 * W + 2 pw - 1, which for a width of W + pw runs at most pw - 1 into the
 * next row (or the next plane's first row), all zeros; the grid of the
 * padded-width GEMMs (Wp columns per output row, Q of them kept) is then pw
 * columns wider than the output instead of 2 pw.  At least Q wide. */
static int64_t pad_width(const ConvDims *d) {
    if (d->sh != 1 || d->sw != 1) return d->w + 2 * d->pw;
    return d->w + d->pw > d->q ? d->w + d->pw : d->q;
}

/* x_pad[plane] = x[plane] zero padded to hp x pad_width() (ph rows, pw
 * columns before each row, zeros after up to the width), plus zeros after
 * the last plane for the rows that run past it. */
static void emit_pad(Cg *cg, const ConvDims *d, int64_t nb, LLVMValueRef x, LLVMValueRef xp) {
    int64_t hp = d->h + 2 * d->ph, wp = pad_width(d);
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

static int64_t pad_floats(const ConvDims *d, int64_t nb) {
    return round16(nb * d->c * (d->h + 2 * d->ph) * pad_width(d) + d->s + 16);
}

/* A stride-1 forward conv over the padded width (B_PADROW): worth it when
 * im2col panels would need gathers (not 1x1) and the padded columns are at
 * most a quarter of the output's (12x12 maps with padding 1: 17% more
 * multiply-adds, and still ~13% faster than gathering), or when the output
 * channels are so few that a gathered element feeds only a handful of
 * multiply-adds (LeNet's data gradient of conv1, 6 channels over a grid 33%
 * wider: 10.1 ms -> 5.7 ms).  Judged by the width padded on both sides,
 * although the grid shares a padding column between rows (pad_width): by
 * the narrower grid 6x6 maps would qualify, and are 3-7% slower for it. */
static int conv_fwd_padrow(const ConvDims *d) {
    int64_t wp = d->w + 2 * d->pw, extra = wp - d->q;
    return d->sh == 1 && d->sw == 1 && !conv_direct(d) && (extra * 8 <= d->q * 2 || extra * d->k <= 8 * d->q);
}

/* The padded-width conv transposed (B_PADT) when W^T fits the scratch
 * packed whole, the channels one C block, and rounding the channels up to
 * NR wastes at most a sixth more than rounding them to MR does (LeNet's
 * 6-channel convs: 6% slower by NR). */
static int padt_fits(const ConvDims *d, int64_t nr, int64_t nc) {
    int64_t kp = (d->k + nr - 1) / nr * nr, km = (d->k + MR - 1) / MR * MR;
    return kp <= nc && kp * d->c * d->r * d->s <= APK && kp * 6 <= km * 7;
}

static int conv_fwd_padt(const Cg *cg, const ConvDims *d) {
    return conv_fwd_padrow(d) && padt_fits(d, NR, NC);
}

/* 1x1 stride-1 unpadded convs transposed too (B_PADT straight on x) when an
 * image has at least 36 pixels: smaller ones leave most panels across two
 * images, packed. */
static int conv_1x1_padt(const Cg *cg, const ConvDims *d) {
    return conv_direct(d) && d->h * d->w >= 36 && padt_fits(d, NR, NC);
}

/* The gather path with images of a pixel count that is not a multiple of
 * NR: most C tiles would span two images and take the micro-kernel's slow
 * exit (a scratch tile added element by element).  The GEMM writes a compact
 * C[K, (n, pq)] instead, copied to y[n, K, pq] (+ bias) by a second pass. */
static int conv_fwd_compact(const Cg *cg, const ConvDims *d) {
    return !conv_fwd_padrow(d) && (d->p * d->q) % NR != 0;
}

/* ---- Winograd F(2x2, 3x3) and F(2x2, 5x5) ------------------------------------
 * A stride-1 3x3 conv as Y = A^T [(G g G^T) (.) (B^T d B)] A per 2x2 output
 * tile (d: the tile's 4x4 input patch; Lavin & Gray): 16 products per tile
 * and channel pair instead of 36.  The 16 elementwise products summed over
 * the input channels are 16 GEMMs per chunk of Tc tiles,
 *     M[xi][k][t] = sum_c U[xi][k][c] V[xi][c][t],
 * U = G g G^T packed once per call in MR-row panels, V = B^T d B written by
 * the input transform (eight tiles of a tile row per vector, their patches
 * read from x_pad rows and split into even and odd columns), and the output
 * transform adds the bias and scatters each tile's 2x2 outputs into y.
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
 *   G   = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1]
 *   A^T = [1 1 1 0; 0 1 -1 -1]
 * A tile's first output row and column do not depend on its patch's last
 * row and column, so tiles past an odd output size read whatever follows
 * in x_pad (finite: the next row, plane, or trailing zeros) and their
 * outputs are dropped.  Taken by the forward conv and so by the stride-1
 * data gradient (a forward conv of dy with the flipped filters), and by
 * the weight gradient (wino_bwdw).  Each chunk of tiles is one task, so
 * results do not depend on the thread count; they differ from the direct
 * products by rounding only (the transforms' coefficients are 1 and 1/2). */
enum { WG_SLACK = 64 };

/* The transforms: F(2, 3) above, and F(2, 5) (Toom-Cook points 0, 1, -1, 2,
 * -2 and infinity; 6x6 input tiles, 36 products per tile for 100; its first
 * output row and column do not depend on the patch's last either, but it is
 * taken for even output sides only), n = r + 1 inputs per tile side.  The
 * code is written once for both (wlin: a row of constant coefficients,
 * zeros skipped); each r has its own bodies. */
typedef struct { int r, n; float bt[6][6], g[6][5], at[2][6]; } WinoT;
static const WinoT wino3 = {3, 4, {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}},
                            {{1, 0, 0}, {.5f, .5f, .5f}, {.5f, -.5f, .5f}, {0, 0, 1}}, {{1, 1, 1, 0}, {0, 1, -1, -1}}};
static const WinoT wino5 = {5, 6,
                            {{4, 0, -5, 0, 1, 0}, {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0}, {0, -2, -1, 2, 1, 0},
                             {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}},
                            {{1 / 4.f, 0, 0, 0, 0}, {-1 / 6.f, -1 / 6.f, -1 / 6.f, -1 / 6.f, -1 / 6.f},
                             {-1 / 6.f, 1 / 6.f, -1 / 6.f, 1 / 6.f, -1 / 6.f},
                             {1 / 24.f, 1 / 12.f, 1 / 6.f, 1 / 3.f, 2 / 3.f},
                             {1 / 24.f, -1 / 12.f, 1 / 6.f, -1 / 3.f, 2 / 3.f}, {0, 0, 0, 0, 1}},
                            {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 1}}};

static const WinoT *wino_t(const ConvDims *d) { return d->r == 5 ? &wino5 : &wino3; }

static LLVMValueRef fadd(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFAdd(cg->b, a, b, ""); }
static LLVMValueRef fsub(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFSub(cg->b, a, b, ""); }

/* sum over j < n of c[j * stride] x[j], x scalars or vectors of eight */
static LLVMValueRef wlin(Cg *cg, const float *c, int stride, LLVMValueRef *x, int n) {
    LLVMValueRef acc = NULL;
    for (int j = 0; j < n; j++) {
        float k = c[j * stride];
        if (k == 0) continue;
        LLVMValueRef t = x[j];
        if (k != 1 && k != -1) {
            LLVMValueRef kc = cf32(cg, k);
            if (LLVMGetTypeKind(LLVMTypeOf(t)) == LLVMVectorTypeKind) {
                LLVMValueRef e[8];
                for (int i = 0; i < 8; i++) e[i] = kc;
                kc = LLVMConstVector(e, 8);
            }
            t = LLVMBuildFMul(cg->b, t, kc, "");
            k = 1;
        }
        acc = !acc ? (k == 1 ? t : LLVMBuildFNeg(cg->b, t, "")) : k == 1 ? fadd(cg, acc, t) : fsub(cg, acc, t);
    }
    return acc ? acc : LLVMConstNull(LLVMTypeOf(x[0]));
}

/* 5x5, gradients only: NiN's step 1.3x faster (96 <-> 256 channels at
 * 26x26).  F(2, 5) rounds some 20x more than the direct product (3e-6 of
 * the output's scale against 1e-7, in fp32; any choice of points is
 * alike), and in a forward pass that moves max-pool choices between
 * near-equal values away from the reference's (AlexNet's step check
 * failed); gradients are linear in dy and keep the forward pass's choices.
 * With fewer than 64 channels on a side (GoogLeNet's 5x5, 16-48) the gain
 * (1-2% of its step) is smaller than the compile time the F(2, 5) bodies
 * add (0.2 s): not taken.
 * 3x3 against the direct paths (2 threads): forward 64 -> 64 channels at 24x24
 * 1.6x faster, ResNet-18's 12x12 and 6x6 convs 1.6-2x, NiN's 256 -> 384 at
 * 12x12 1.8x; weight gradients 1.5x (64 -> 64), GoogLeNet's 1.6x in all.
 * Outputs of 3x3 (ResNet-18's last stage: a 4x4 tile grid for 9 outputs)
 * were 1.2-1.4x slower: not taken. */
static int conv_wino(const ConvDims *d) {
    int r3 = d->r == 3 && d->s == 3;
    int r5 = d->r == 5 && d->s == 5 && d->p % 2 == 0 && d->q % 2 == 0 && d->c >= 64 && d->k >= 64 && d->grad;
    return (r3 || r5) && d->sh == 1 && d->sw == 1 && d->ph < d->r && d->pw < d->s &&
           d->p >= 4 && d->q >= 4 && d->c >= 8 && d->k >= 8;
}

/* tiles per chunk: 64 (32 and 128 measured no faster), fewer when the
 * chunk's V and M would outgrow the GEMM's per-thread scratch */
static int64_t wino_tc(const Cg *cg, const ConvDims *d) {
    int64_t kp = (d->k + MR - 1) / MR * MR, tc = 2 * NR, nx = (d->r + 1) * (d->r + 1);
    while (tc * 2 <= 64 && nx * ((d->c + kp) * tc * 2 + 32) + 2 * d->c + 8 * tc + 64 <= gemm_scratch_floats(cg)) tc *= 2;
    return tc;
}

/* x_pad for the Winograd kernels: emit_pad's, with WG_SLACK + a row of
 * zeros after it for the reads of tiles past the output and of a tile
 * row's last vector */
static int64_t wino_xsz(const ConvDims *d, int64_t nb) { return round16(pad_floats(d, nb) + pad_width(d) + WG_SLACK); }

static void wino_pad(Cg *cg, const ConvDims *d, int64_t nb, LLVMValueRef x, LLVMValueRef xp) {
    int64_t xend = nb * d->c * (d->h + 2 * d->ph) * pad_width(d);
    emit_pad(cg, d, nb, x, xp);
    cg_memset0(cg, gep(cg, xp, ci64(cg, xend)), ci64(cg, wino_xsz(d, nb) - xend));
}

static int64_t wino_extra(const ConvDims *d, int64_t nb) {
    int64_t kp = (d->k + MR - 1) / MR * MR;
    return wino_xsz(d, nb) + round16((d->r + 1) * (d->r + 1) * kp * d->c);
}

/* Up[xi][k / MR][c][k % MR] = (G w[k, c] G^T)[xi], zero for k >= K */
static void wino_weights(Cg *cg, const ConvDims *d, LLVMValueRef w, LLVMValueRef up) {
    const WinoT *T = wino_t(d);
    int r = T->r, n = T->n;
    int64_t kp = (d->k + MR - 1) / MR * MR;
    LLVMValueRef v[4] = {w, up, ci64(cg, d->c), ci64(cg, d->k)};
    Par P;
    LLVMValueRef b, e;
    char key[16];
    snprintf(key, sizeof key, "wino_w%d", r);
    if (par_begin_shared(cg, &P, key, v, 4, ci64(cg, kp / MR), &b, &e)) {
        LLVMValueRef C = v[2], K = v[3];
        LLVMValueRef KP = mulc(cg, sdiv(cg, addc(cg, K, MR - 1), ci64(cg, MR)), MR);
        Loop lp, lc, li;
        LLVMValueRef pn = for_begin(cg, &lp, b, e, 1);
        LLVMValueRef c = for_begin(cg, &lc, ci64(cg, 0), C, 1);
        LLVMValueRef i = for_begin(cg, &li, ci64(cg, 0), ci64(cg, MR), 1);
        LLVMValueRef k = add(cg, mulc(cg, pn, MR), i);
        LLVMValueRef ok = icmp(cg, LLVMIntSLT, k, K);
        LLVMValueRef src = gep(cg, v[0], mulc(cg, LLVMBuildSelect(cg->b, ok, add(cg, mul(cg, k, C), c), ci64(cg, 0), ""), r * r));
        LLVMValueRef g[25], t[6][5], col[6], u[36], zero = cf32(cg, 0);
        for (int j = 0; j < r * r; j++) g[j] = LLVMBuildSelect(cg->b, ok, ld(cg, src, ci64(cg, j)), zero, "");
        /* t = G g (n x r), u = t G^T */
        for (int a = 0; a < n; a++)
            for (int j = 0; j < r; j++) {
                for (int q = 0; q < r; q++) col[q] = g[q * r + j];
                t[a][j] = wlin(cg, T->g[a], 1, col, r);
            }
        for (int a = 0; a < n; a++)
            for (int bb = 0; bb < n; bb++) u[a * n + bb] = wlin(cg, T->g[bb], 1, t[a], r);
        LLVMValueRef dst = gep(cg, v[1], add(cg, mul(cg, mulc(cg, pn, MR), C), add(cg, mulc(cg, c, MR), i)));
        LLVMValueRef xs = mul(cg, KP, C);
        for (int x = 0; x < n * n; x++) st(cg, u[x], dst, mulc(cg, xs, x));
        for_end(cg, &li);
        for_end(cg, &lc);
        for_end(cg, &lp);
    }
    par_end(cg, &P);
}

/* (n, ty, tx) of tile t */
static void wino_tile(Cg *cg, LLVMValueRef t, LLVMValueRef ty, LLVMValueRef tx, LLVMValueRef *n, LLVMValueRef *y,
                      LLVMValueRef *x) {
    LLVMValueRef row = sdiv(cg, t, tx);
    *x = sub(cg, t, mul(cg, row, tx));
    *n = sdiv(cg, row, ty);
    *y = sub(cg, row, mul(cg, *n, ty));
}

static LLVMValueRef ld64(Cg *cg, LLVMValueRef p, LLVMValueRef i) {
    return LLVMBuildLoad2(cg->b, cg->i64, LLVMBuildInBoundsGEP2(cg->b, cg->i64, p, &i, 1, ""), "");
}

static void st64(Cg *cg, LLVMValueRef v, LLVMValueRef p, LLVMValueRef i) {
    LLVMBuildStore(cg->b, v, LLVMBuildInBoundsGEP2(cg->b, cg->i64, p, &i, 1, ""));
}

/* y = conv(x, w) (+ bias) by Winograd; scr: wino_extra() shared floats (x_pad,
 * U), then the threads' GEMM scratch (V, M, tables).  One body for every
 * conv of the module: shapes come as arguments. */
enum { WV_XP, WV_UP, WV_Y, WV_BIAS, WV_TS, WV_C, WV_K, WV_TY, WV_TX, WV_T, WV_TC, WV_HP, WV_WP, WV_P, WV_Q, WV_COUNT };

/* V[xi][c][t - t0] = (B^T d B)[xi] for tiles [t0, t1) by tile-row segments,
 * eight tiles a vector (a segment's last vector spills into slots written
 * later): x_pad has planes of HPWP floats, rows of WP. */
static void wino_in_body(Cg *cg, const WinoT *T, LLVMValueRef xp, LLVMValueRef V, LLVMValueRef VS, LLVMValueRef C,
                         LLVMValueRef TC, LLVMValueRef HPWP, LLVMValueRef WP, LLVMValueRef vTY, LLVMValueRef vTX,
                         LLVMValueRef t0, LLVMValueRef t1) {
    int nn = T->n;
    Loop l1, l2, l3;
    LLVMValueRef n0, ty0, tx0;
    wino_tile(cg, t0, vTY, vTX, &n0, &ty0, &tx0);
    static const int ev[8] = {0, 2, 4, 6, 8, 10, 12, 14}, od[8] = {1, 3, 5, 7, 9, 11, 13, 15};
    LLVMValueRef c = for_begin(cg, &l1, ci64(cg, 0), C, 1);
    LLVMValueRef vn = var(cg, cg->i64, n0), vy = var(cg, cg->i64, ty0), vx = var(cg, cg->i64, tx0);
    LLVMValueRef t = for_begin(cg, &l2, t0, t1, 1);
    LLVMValueRef n = get(cg, vn), ty = get(cg, vy), tx = get(cg, vx);
    LLVMValueRef seg = imin(cg, sub(cg, vTX, tx), sub(cg, t1, t));
    LLVMValueRef base = gep(cg, xp, add(cg, mul(cg, add(cg, mul(cg, n, C), c), HPWP),
                                        add(cg, mul(cg, mulc(cg, ty, 2), WP), mulc(cg, tx, 2))));
    LLVMValueRef dst = gep(cg, V, add(cg, mul(cg, c, TC), sub(cg, t, t0)));
    LLVMValueRef g = for_begin(cg, &l3, ci64(cg, 0), seg, 8);
    /* rows: h[i][u] = (d_i B)[u], d_i's columns split into even and odd
     * lanes; then V[a][u] = (B^T h)[a][u] */
    LLVMValueRef h[6][6], col[6];
    for (int i = 0; i < nn; i++) {
        LLVMValueRef rp = gep(cg, base, add(cg, mulc(cg, g, 2), mulc(cg, WP, i))), dr[6];
        for (int q = 0; q < nn; q += 2) {
            LLVMValueRef lo = v8ld(cg, rp, ci64(cg, q)), hi = v8ld(cg, rp, ci64(cg, q + 8));
            dr[q] = shuf8(cg, lo, hi, ev);
            dr[q + 1] = shuf8(cg, lo, hi, od);
        }
        for (int u = 0; u < nn; u++) h[i][u] = wlin(cg, T->bt[u], 1, dr, nn);
    }
    for (int a = 0; a < nn; a++)
        for (int u = 0; u < nn; u++) {
            for (int i = 0; i < nn; i++) col[i] = h[i][u];
            v8st(cg, wlin(cg, T->bt[a], 1, col, nn), dst, add(cg, g, mulc(cg, VS, a * nn + u)));
        }
    for_end(cg, &l3);
    LLVMValueRef nx = add(cg, tx, seg), wrap = icmp(cg, LLVMIntEQ, nx, vTX);
    LLVMValueRef ny = LLVMBuildSelect(cg->b, wrap, addc(cg, ty, 1), ty, "");
    LLVMValueRef wy = icmp(cg, LLVMIntEQ, ny, vTY);
    set(cg, vx, LLVMBuildSelect(cg->b, wrap, ci64(cg, 0), nx, ""));
    set(cg, vy, LLVMBuildSelect(cg->b, wy, ci64(cg, 0), ny, ""));
    set(cg, vn, LLVMBuildSelect(cg->b, wy, addc(cg, n, 1), n, ""));
    for_end_at(cg, &l2, add(cg, t, seg));
    for_end(cg, &l1);
}

static void wino_in(Cg *cg, const WinoT *T, LLVMValueRef xp, LLVMValueRef V, LLVMValueRef VS, LLVMValueRef C, LLVMValueRef TC,
                    LLVMValueRef HPWP, LLVMValueRef WP, LLVMValueRef vTY, LLVMValueRef vTX, LLVMValueRef t0,
                    LLVMValueRef t1) {
    /* one function for the module (the forward conv's and the weight
     * gradient's bodies call it): less to compile */
    char name[24];
    snprintf(name, sizeof name, "netc_wino_in%d", T->r);
    LLVMValueRef f = LLVMGetNamedFunction(cg->mod, name);
    LLVMValueRef args[11] = {xp, V, VS, C, TC, HPWP, WP, vTY, vTX, t0, t1};
    if (!f) {
        LLVMValueRef save_fn = cg->fn;
        LLVMBasicBlockRef save_bb = LLVMGetInsertBlock(cg->b);
        LLVMTypeRef pt[11] = {cg->pf, cg->pf, cg->i64, cg->i64, cg->i64, cg->i64, cg->i64, cg->i64, cg->i64, cg->i64, cg->i64};
        f = cg_fn_new(cg, name, LLVMFunctionType(cg->v, pt, 11, 0), 1);
        cg_fn_attr(cg, f, "noinline");
        LLVMValueRef a[11];
        for (unsigned i = 0; i < 11; i++) a[i] = LLVMGetParam(f, i);
        wino_in_body(cg, T, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10]);
        LLVMBuildRetVoid(cg->b);
        cg->fn = save_fn;
        LLVMPositionBuilderAtEnd(cg->b, save_bb);
    }
    cg_call(cg, f, args, 11);
}

static void wino_fwd(Cg *cg, const ConvDims *d, int64_t nb, LLVMValueRef w, LLVMValueRef x, LLVMValueRef y,
                     LLVMValueRef bias, LLVMValueRef scr) {
    const WinoT *T = wino_t(d);
    int nn = T->n, nx = nn * nn;
    int64_t hp = d->h + 2 * d->ph, wp = pad_width(d);
    int64_t TY = (d->p + 1) / 2, TX = (d->q + 1) / 2, NT = nb * TY * TX, tc = wino_tc(cg, d);
    LLVMValueRef xp = scr, up = gep(cg, scr, ci64(cg, wino_xsz(d, nb)));
    wino_pad(cg, d, nb, x, xp);
    wino_weights(cg, d, w, up);
    LLVMValueRef ukd = micro_kernel_gen(cg, UK_DIRECT);
    LLVMValueRef v[WV_COUNT] = {xp, up, y, bias ? bias : LLVMConstNull(cg->pf), gep(cg, scr, ci64(cg, wino_extra(d, nb))),
                                ci64(cg, d->c), ci64(cg, d->k), ci64(cg, TY), ci64(cg, TX), ci64(cg, NT), ci64(cg, tc),
                                ci64(cg, hp), ci64(cg, wp), ci64(cg, d->p), ci64(cg, d->q)};
    Par P;
    LLVMValueRef b, e;
    char key[16];
    snprintf(key, sizeof key, "wino%d", T->r);
    if (!par_begin_shared(cg, &P, key, v, WV_COUNT, ci64(cg, (NT + tc - 1) / tc), &b, &e)) {
        par_end(cg, &P);
        return;
    }
    LLVMValueRef C = v[WV_C], K = v[WV_K], vTY = v[WV_TY], vTX = v[WV_TX], TC = v[WV_TC], WP = v[WV_WP];
    LLVMValueRef Q = v[WV_Q], PQ = mul(cg, v[WV_P], Q), HPWP = mul(cg, v[WV_HP], WP);
    LLVMValueRef KP = mulc(cg, sdiv(cg, addc(cg, K, MR - 1), ci64(cg, MR)), MR);
    /* one xi's V and M, with room for a group's spill */
    LLVMValueRef VS = addc(cg, mul(cg, C, TC), 16), MS = addc(cg, mul(cg, KP, TC), 16);
    LLVMTypeRef pi64 = LLVMPointerType(cg->i64, 0);
    LLVMValueRef ts = thread_scratch(cg, v[WV_TS], gemm_scratch_floats(cg));
    LLVMValueRef V = ts, Mb = gep(cg, V, mulc(cg, VS, nx));
    LLVMValueRef off = LLVMBuildBitCast(cg->b, gep(cg, Mb, mulc(cg, MS, nx)), pi64, "");
    LLVMValueRef yoff = LLVMBuildInBoundsGEP2(cg->b, cg->i64, off, &C, 1, "");
    LLVMValueRef yfl = LLVMBuildInBoundsGEP2(cg->b, cg->i64, yoff, &TC, 1, "");
    LLVMValueRef hasb = LLVMBuildIsNotNull(cg->b, v[WV_BIAS], "");
    Loop l1, l2, l3, l4;
    {
        LLVMValueRef c = for_begin(cg, &l1, ci64(cg, 0), C, 1);
        st64(cg, mul(cg, c, TC), off, c);
        for_end(cg, &l1);
    }
    LLVMValueRef ch = for_begin(cg, &l4, b, e, 1);
    LLVMValueRef t0 = mul(cg, ch, TC), t1 = imin(cg, add(cg, t0, TC), v[WV_T]), nv = sub(cg, t1, t0);
    /* output offsets and flags (bit 0: the tile's second column is in y,
     * bit 1: its second row) */
    {
        LLVMValueRef s = for_begin(cg, &l1, ci64(cg, 0), nv, 1);
        LLVMValueRef n, ty, tx;
        wino_tile(cg, add(cg, t0, s), vTY, vTX, &n, &ty, &tx);
        LLVMValueRef o = add(cg, mul(cg, n, mul(cg, K, PQ)), add(cg, mul(cg, mulc(cg, ty, 2), Q), mulc(cg, tx, 2)));
        LLVMValueRef fc = LLVMBuildZExt(cg->b, icmp(cg, LLVMIntSLT, addc(cg, mulc(cg, tx, 2), 1), Q), cg->i64, "");
        LLVMValueRef fr = LLVMBuildZExt(cg->b, icmp(cg, LLVMIntSLT, addc(cg, mulc(cg, ty, 2), 1), v[WV_P]), cg->i64, "");
        st64(cg, o, yoff, s);
        st64(cg, LLVMBuildOr(cg->b, fc, mulc(cg, fr, 2), ""), yfl, s);
        for_end(cg, &l1);
    }
    /* input transform: V[xi][c][t - t0] by tile-row segments, eight tiles a
     * vector (a segment's last vector spills into slots written later) */
    wino_in(cg, T, v[WV_XP], V, VS, C, TC, HPWP, WP, vTY, vTX, t0, t1);
    /* the next chunk's input rows (this thread's), prefetched a slice of
     * channels per xi while the GEMMs run: a chunk reads a few rows of
     * every channel plane, more runs than the hardware follows (GoogLeNet's
     * step 2.4-2.9% faster, paired; ResNet-18's unchanged) */
    Prefetch pf = {0};
    {
        LLVMValueRef tn = add(cg, t0, TC), n, ty, tx;
        wino_tile(cg, tn, vTY, vTX, &n, &ty, &tx);
        pf.base = LLVMBuildGEP2(cg->b, cg->f32, v[WV_XP], (LLVMValueRef[]){add(cg, mul(cg, mul(cg, n, C), HPWP), mul(cg, mulc(cg, ty, 2), WP))},
                                1, "");
        pf.stride = HPWP;
        pf.rows = LLVMBuildSelect(cg->b, icmp(cg, LLVMIntSLT, addc(cg, ch, 1), e), C, ci64(cg, 0), "");
        pf.lines = addc(cg, sdiv(cg, mul(cg, addc(cg, mulc(cg, sdiv(cg, TC, vTX), 2), 4 + nn), WP), ci64(cg, 16)), 1);
        pf.per = sdiv(cg, addc(cg, C, nx - 1), ci64(cg, nx));
    }
    /* M[xi] = U[xi] V[xi]: a block of U's rows stays in L2 and a B panel of
     * NR tiles in L1 while U's panels stream through */
    {
        LLVMValueRef xi = for_begin(cg, &l1, ci64(cg, 0), ci64(cg, nx), 1);
        prefetch_slice(cg, &pf, xi);
        Loop lic, lpc, lir;
        LLVMValueRef ic = for_begin(cg, &lic, ci64(cg, 0), KP, MC);
        LLVMValueRef pc = for_begin(cg, &lpc, ci64(cg, 0), C, KC);
        LLVMValueRef kc = imin(cg, ci64(cg, KC), sub(cg, C, pc));
        LLVMValueRef acc = LLVMBuildZExt(cg->b, icmp(cg, LLVMIntNE, pc, ci64(cg, 0)), cg->i64, "");
        LLVMValueRef jr = for_begin(cg, &l2, ci64(cg, 0), TC, NR);
        LLVMValueRef bp = gep(cg, V, add(cg, mul(cg, xi, VS), jr));
        LLVMValueRef ir = for_begin(cg, &lir, ic, imin(cg, addc(cg, ic, MC), KP), MR);
        LLVMValueRef a[7] = {gep(cg, v[WV_UP], add(cg, mul(cg, mul(cg, xi, KP), C), add(cg, mul(cg, ir, C), mulc(cg, pc, MR)))),
                             bp, gep(cg, Mb, add(cg, mul(cg, xi, MS), add(cg, mul(cg, ir, TC), jr))), TC, kc, acc,
                             LLVMBuildInBoundsGEP2(cg->b, cg->i64, off, &pc, 1, "")};
        cg_call(cg, ukd, a, 7);
        for_end(cg, &lir);
        for_end(cg, &l2);
        for_end(cg, &lpc);
        for_end(cg, &lic);
        for_end(cg, &l1);
    }
    /* output transform: y's tiles = A^T M A (+ bias) */
    {
        static const int lo[8] = {0, 8, 1, 9, 2, 10, 3, 11}, hi[8] = {4, 12, 5, 13, 6, 14, 7, 15};
        LLVMTypeRef v8 = LLVMVectorType(cg->f32, 8);
        LLVMValueRef buf = LLVMBuildBitCast(cg->b, var(cg, LLVMArrayType(cg->f32, 32), NULL), cg->pf, "");
        LLVMValueRef k = for_begin(cg, &l1, ci64(cg, 0), K, 1);
        LLVMValueRef bv = var(cg, cg->f32, cf32(cg, 0));
        If fb;
        if_begin(cg, &fb, hasb);
        set(cg, bv, ld(cg, v[WV_BIAS], k));
        if_end(cg, &fb);
        LLVMValueRef bk = splat8(cg, get(cg, bv));
        LLVMValueRef yk = gep(cg, v[WV_Y], mul(cg, k, PQ));
        LLVMValueRef s = for_begin(cg, &l2, ci64(cg, 0), nv, 8);
        LLVMValueRef mrow = gep(cg, Mb, add(cg, mul(cg, k, TC), s));
        LLVMValueRef m[36], r[6][2], o[2][2], col[6];
        for (int xi = 0; xi < nx; xi++) m[xi] = v8ld(cg, mrow, mulc(cg, MS, xi));
        for (int i = 0; i < nn; i++)
            for (int j = 0; j < 2; j++) r[i][j] = wlin(cg, T->at[j], 1, &m[i * nn], nn);
        for (int j = 0; j < 2; j++) {
            for (int i = 0; i < nn; i++) col[i] = r[i][j];
            o[0][j] = fadd(cg, wlin(cg, T->at[0], 1, col, nn), bk);
            o[1][j] = fadd(cg, wlin(cg, T->at[1], 1, col, nn), bk);
        }
        /* eight whole tiles side by side in a tile row: 16 outputs a row */
        LLVMValueRef s7 = addc(cg, s, 7), in7 = icmp(cg, LLVMIntSLT, s7, nv);
        LLVMValueRef s7c = LLVMBuildSelect(cg->b, in7, s7, s, "");
        LLVMValueRef o0 = ld64(cg, yoff, s), fl7 = ld64(cg, yfl, s7c);
        LLVMValueRef full = and1(cg, and1(cg, in7, icmp(cg, LLVMIntEQ, sub(cg, ld64(cg, yoff, s7c), o0), ci64(cg, 14))),
                                 icmp(cg, LLVMIntNE, LLVMBuildAnd(cg->b, fl7, ci64(cg, 1), ""), ci64(cg, 0)));
        If f;
        if_begin(cg, &f, full);
        {
            LLVMValueRef p0 = gep(cg, yk, o0);
            v8st(cg, shuf8(cg, o[0][0], o[0][1], lo), p0, ci64(cg, 0));
            v8st(cg, shuf8(cg, o[0][0], o[0][1], hi), p0, ci64(cg, 8));
            If f2;
            if_begin(cg, &f2, icmp(cg, LLVMIntNE, LLVMBuildAnd(cg->b, fl7, ci64(cg, 2), ""), ci64(cg, 0)));
            v8st(cg, shuf8(cg, o[1][0], o[1][1], lo), p0, Q);
            v8st(cg, shuf8(cg, o[1][0], o[1][1], hi), p0, addc(cg, Q, 8));
            if_end(cg, &f2);
        }
        if_else(cg, &f);
        {
            for (int i = 0; i < 4; i++)
                LLVMSetAlignment(LLVMBuildStore(cg->b, o[i / 2][i % 2],
                                                LLVMBuildBitCast(cg->b, gep(cg, buf, ci64(cg, 8 * i)), LLVMPointerType(v8, 0), "")),
                                 4);
            LLVMValueRef l = for_begin(cg, &l3, ci64(cg, 0), imin(cg, ci64(cg, 8), sub(cg, nv, s)), 1);
            LLVMValueRef sl = add(cg, s, l), fl = ld64(cg, yfl, sl);
            LLVMValueRef p0 = gep(cg, yk, ld64(cg, yoff, sl));
            st(cg, ld(cg, buf, l), p0, ci64(cg, 0));
            If g1, g2, g3;
            LLVMValueRef c1 = icmp(cg, LLVMIntNE, LLVMBuildAnd(cg->b, fl, ci64(cg, 1), ""), ci64(cg, 0));
            LLVMValueRef r1 = icmp(cg, LLVMIntNE, LLVMBuildAnd(cg->b, fl, ci64(cg, 2), ""), ci64(cg, 0));
            if_begin(cg, &g1, c1);
            st(cg, ld(cg, buf, addc(cg, l, 8)), p0, ci64(cg, 1));
            if_end(cg, &g1);
            if_begin(cg, &g2, r1);
            st(cg, ld(cg, buf, addc(cg, l, 16)), p0, Q);
            if_begin(cg, &g3, c1);
            st(cg, ld(cg, buf, addc(cg, l, 24)), p0, addc(cg, Q, 1));
            if_end(cg, &g3);
            if_end(cg, &g2);
            for_end(cg, &l3);
        }
        if_end(cg, &f);
        for_end(cg, &l2);
        for_end(cg, &l1);
    }
    for_end(cg, &l4);
    par_end(cg, &P);
}

/* The weight gradient by the same transform: dW[k, c] = G^T M[c][k] G with
 *     M[xi][c][k] = sum over tiles t of V[xi][c][t] Z[xi][k][t],
 * Z = A dy_t A^T (dy's 2x2 tile, zero past y's edges) and V = B^T d B as in
 * the forward conv.  The tiles are cut into at most WB_PARTS parts (a cut
 * that does not depend on the thread count), each summing its chunks into
 * its own M; the parts are added in order, so results are bit-identical
 * for any number of threads.  V's rows over t are read in place (A of
 * netc_ukr_rows), Z is stored in NR-filter panels [t][NR] (its packed B). */
enum { WB_PARTS = 4 };

static int64_t wbw_tc(const Cg *cg, const ConvDims *d) {
    int64_t cr = (d->c + MR - 1) / MR * MR, kn = (d->k + NR - 1) / NR * NR, tc = 16, nx = (d->r + 1) * (d->r + 1);
    while (tc * 2 <= 64 && nx * (kn * tc * 2 + cr * tc * 2 + 16) + 64 <= gemm_scratch_floats(cg)) tc *= 2;
    return tc;
}

static int64_t wbw_parts(const Cg *cg, const ConvDims *d, int64_t nb) {
    int64_t T = nb * ((d->p + 1) / 2) * ((d->q + 1) / 2), tc = wbw_tc(cg, d), nch = (T + tc - 1) / tc;
    return nch < WB_PARTS ? nch : WB_PARTS;
}

static int64_t wbw_extra(const Cg *cg, const ConvDims *d, int64_t nb) {
    int64_t cr = (d->c + MR - 1) / MR * MR, kn = (d->k + NR - 1) / NR * NR;
    return wino_xsz(d, nb) + round16(wbw_parts(cg, d, nb) * (d->r + 1) * (d->r + 1) * cr * kn);
}

enum { WB_XP, WB_DY, WB_MP, WB_TS, WB_C, WB_K, WB_TY, WB_TX, WB_T, WB_TC, WB_HP, WB_WP, WB_P, WB_Q, WB_NCH, WB_NPART,
       WB_COUNT };

static void wino_bwdw(Cg *cg, const ConvDims *d, int64_t nb, LLVMValueRef dy, LLVMValueRef x, LLVMValueRef dw,
                      LLVMValueRef scr) {
    int64_t hp = d->h + 2 * d->ph, wp = pad_width(d);
    const WinoT *T = wino_t(d);
    int nn = T->n, nx = nn * nn, r = T->r;
    int64_t TY = (d->p + 1) / 2, TX = (d->q + 1) / 2, NT = nb * TY * TX, tc = wbw_tc(cg, d);
    int64_t nch = (NT + tc - 1) / tc, parts = wbw_parts(cg, d, nb);
    LLVMValueRef xp = scr, mp = gep(cg, scr, ci64(cg, wino_xsz(d, nb)));
    wino_pad(cg, d, nb, x, xp);
    LLVMValueRef ukr = micro_kernel_gen(cg, UK_ROWS);
    LLVMValueRef v[WB_COUNT] = {xp, dy, mp, gep(cg, scr, ci64(cg, wbw_extra(cg, d, nb))), ci64(cg, d->c), ci64(cg, d->k),
                                ci64(cg, TY), ci64(cg, TX), ci64(cg, NT), ci64(cg, tc), ci64(cg, hp), ci64(cg, wp),
                                ci64(cg, d->p), ci64(cg, d->q), ci64(cg, nch), ci64(cg, parts)};
    Par P;
    LLVMValueRef b, e;
    char key[20];
    snprintf(key, sizeof key, "wino_bw%d", r);
    if (par_begin_shared(cg, &P, key, v, WB_COUNT, ci64(cg, parts), &b, &e)) {
        LLVMValueRef C = v[WB_C], K = v[WB_K], vTY = v[WB_TY], vTX = v[WB_TX], TC = v[WB_TC], WP = v[WB_WP];
        LLVMValueRef Q = v[WB_Q], PQ = mul(cg, v[WB_P], Q), HPWP = mul(cg, v[WB_HP], WP);
        LLVMValueRef CR = mulc(cg, sdiv(cg, addc(cg, C, MR - 1), ci64(cg, MR)), MR);
        LLVMValueRef KN = mulc(cg, sdiv(cg, addc(cg, K, NR - 1), ci64(cg, NR)), NR);
        LLVMValueRef VS = addc(cg, mul(cg, CR, TC), 16);              /* one xi's V: rows over t */
        LLVMValueRef ZS = mul(cg, KN, TC), MS = mul(cg, CR, KN);      /* Z: NR-filter panels [t][NR] */
        LLVMTypeRef pi64 = LLVMPointerType(cg->i64, 0);
        LLVMValueRef ts = thread_scratch(cg, v[WB_TS], gemm_scratch_floats(cg));
        LLVMValueRef Z = ts, V = gep(cg, Z, mulc(cg, ZS, nx));
        LLVMValueRef rt = LLVMBuildBitCast(cg->b, gep(cg, V, mulc(cg, VS, nx)), pi64, "");
        for (int i = 0; i < MR; i++) st64(cg, mulc(cg, TC, i), rt, ci64(cg, i));
        /* V's rows past C are read (MR at a time) and never written */
        {
            Loop lz;
            LLVMValueRef xi = for_begin(cg, &lz, ci64(cg, 0), ci64(cg, nx), 1);
            LLVMValueRef r0 = add(cg, mul(cg, xi, VS), mul(cg, C, TC));
            cg_memset0(cg, gep(cg, V, r0), mul(cg, sub(cg, CR, C), TC));
            for_end(cg, &lz);
        }
        LLVMTypeRef v8 = LLVMVectorType(cg->f32, 8);
        LLVMValueRef lanes;
        {
            LLVMValueRef el[8];
            for (int i = 0; i < 8; i++) el[i] = ci32(cg, i);
            lanes = LLVMConstVector(el, 8);
        }
        Loop lpt, lch, l1, l2, l3;
        LLVMValueRef part = for_begin(cg, &lpt, b, e, 1);
        LLVMValueRef M = gep(cg, v[WB_MP], mul(cg, part, mulc(cg, MS, nx)));
        cg_memset0(cg, M, mulc(cg, MS, nx));
        LLVMValueRef NCH = v[WB_NCH], NPART = v[WB_NPART];
        LLVMValueRef cb = sdiv(cg, mul(cg, part, NCH), NPART), ce = sdiv(cg, mul(cg, addc(cg, part, 1), NCH), NPART);
        LLVMValueRef ch = for_begin(cg, &lch, cb, ce, 1);
        LLVMValueRef t0 = mul(cg, ch, TC), t1 = imin(cg, add(cg, t0, TC), v[WB_T]), nv = sub(cg, t1, t0);
        /* V: the input transform, rows over t as the forward conv's */
        wino_in(cg, T, v[WB_XP], V, VS, C, TC, HPWP, WP, vTY, vTX, t0, t1);
        /* Z: per tile, eight filters a vector (dy's planes gathered lane by
         * lane; zero past y's edges and past K), stored to NR-filter panels */
        {
            LLVMValueRef s = for_begin(cg, &l1, ci64(cg, 0), nv, 1);
            LLVMValueRef n, ty, tx;
            wino_tile(cg, add(cg, t0, s), vTY, vTX, &n, &ty, &tx);
            LLVMValueRef cok = icmp(cg, LLVMIntSLT, addc(cg, mulc(cg, tx, 2), 1), Q);
            LLVMValueRef rok = icmp(cg, LLVMIntSLT, addc(cg, mulc(cg, ty, 2), 1), v[WB_P]);
            LLVMValueRef base = gep(cg, v[WB_DY], add(cg, mul(cg, mul(cg, n, K), PQ), add(cg, mul(cg, mulc(cg, ty, 2), Q), mulc(cg, tx, 2))));
            LLVMValueRef offs = LLVMBuildMul(cg->b, lanes, splat8(cg, tr32(cg, PQ)), "");
            LLVMValueRef kg = for_begin(cg, &l2, ci64(cg, 0), KN, 8);
            LLVMValueRef kin = LLVMBuildICmp(cg->b, LLVMIntSLT, LLVMBuildAdd(cg->b, lanes, splat8(cg, tr32(cg, kg)), ""),
                                             splat8(cg, tr32(cg, K)), "");
            LLVMValueRef gb = gep(cg, base, mul(cg, kg, PQ));
            LLVMValueRef gg[2][2];
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) {
                    LLVMValueRef m = kin;
                    if (i) m = LLVMBuildAnd(cg->b, m, splat8(cg, rok), "");
                    if (j) m = LLVMBuildAnd(cg->b, m, splat8(cg, cok), "");
                    gg[i][j] = cg_gather(cg, gep(cg, gb, i ? addc(cg, Q, j) : ci64(cg, j)), offs, m, LLVMConstNull(v8));
                }
            /* A g A^T (A = (A^T)^T: n x 2) */
            LLVMValueRef hz[2][6], zz[6][6], col[2];
            for (int i = 0; i < 2; i++)
                for (int u = 0; u < nn; u++) hz[i][u] = wlin(cg, &T->at[0][u], 6, gg[i], 2);
            for (int a = 0; a < nn; a++)
                for (int u = 0; u < nn; u++) {
                    col[0] = hz[0][u];
                    col[1] = hz[1][u];
                    zz[a][u] = wlin(cg, &T->at[0][a], 6, col, 2);
                }
            LLVMValueRef kpn = sdiv(cg, kg, ci64(cg, NR));
            LLVMValueRef dst = gep(cg, Z, add(cg, mul(cg, kpn, mulc(cg, TC, NR)), add(cg, mulc(cg, s, NR), sub(cg, kg, mulc(cg, kpn, NR)))));
            for (int xi = 0; xi < nx; xi++) v8st(cg, zz[xi / nn][xi % nn], dst, mulc(cg, ZS, xi));
            for_end(cg, &l2);
            for_end(cg, &l1);
        }
        /* M[xi] += V[xi] Z[xi]^T over the chunk's tiles (M: [c][k]) */
        {
            LLVMValueRef xi = for_begin(cg, &l1, ci64(cg, 0), ci64(cg, nx), 1);
            LLVMValueRef jr = for_begin(cg, &l2, ci64(cg, 0), KN, NR);
            LLVMValueRef bp = gep(cg, Z, add(cg, mul(cg, xi, ZS), mul(cg, jr, TC)));
            LLVMValueRef ir = for_begin(cg, &l3, ci64(cg, 0), CR, MR);
            LLVMValueRef mt = gep(cg, M, add(cg, mul(cg, xi, MS), add(cg, mul(cg, ir, KN), jr)));
            LLVMValueRef a[7] = {gep(cg, V, add(cg, mul(cg, xi, VS), mul(cg, ir, TC))), bp, mt, KN, nv, ci64(cg, 1), rt};
            /* the next tile's rows of M: each part's M (16 x C x K floats,
             * megabytes) is read and written once per chunk, so its tiles
             * come from L3 (Winograd weight gradients 12-20% faster) */
            for (int i = 0; i < MR; i++) cg_prefetch(cg, gep(cg, mt, mul(cg, ci64(cg, MR + i), KN)), 1, 3);
            cg_call(cg, ukr, a, 7);
            for_end(cg, &l3);
            for_end(cg, &l2);
            for_end(cg, &l1);
        }
        for_end(cg, &lch);
        for_end(cg, &lpt);
    }
    par_end(cg, &P);
    /* dW[k, c] = G^T (sum of the parts' M) G */
    int64_t cr = (d->c + MR - 1) / MR * MR, kn = (d->k + NR - 1) / NR * NR;
    LLVMValueRef u[6] = {mp, dw, ci64(cg, d->c), ci64(cg, kn), ci64(cg, parts), ci64(cg, cr * kn)};
    snprintf(key, sizeof key, "wino_bw_out%d", r);
    if (par_begin_shared(cg, &P, key, u, 6, ci64(cg, d->k), &b, &e)) {
        LLVMValueRef C = u[2], KN = u[3], MS = u[5];
        Loop lk, lc, lp;
        LLVMValueRef k = for_begin(cg, &lk, b, e, 1);
        LLVMValueRef c = for_begin(cg, &lc, ci64(cg, 0), C, 1);
        LLVMValueRef src = gep(cg, u[0], add(cg, mul(cg, c, KN), k));
        LLVMValueRef m[36];
        for (int xi = 0; xi < nx; xi++) m[xi] = var(cg, cg->f32, cf32(cg, 0));
        LLVMValueRef pt = for_begin(cg, &lp, ci64(cg, 0), u[4], 1);
        LLVMValueRef ps = gep(cg, src, mul(cg, pt, mulc(cg, MS, nx)));
        for (int xi = 0; xi < nx; xi++) set(cg, m[xi], fadd(cg, get(cg, m[xi]), ld(cg, ps, mulc(cg, MS, xi))));
        for_end(cg, &lp);
        LLVMValueRef mv[36], rr[6][5], col[6];
        for (int xi = 0; xi < nx; xi++) mv[xi] = get(cg, m[xi]);
        for (int t = 0; t < nn; t++)
            for (int bb = 0; bb < r; bb++) rr[t][bb] = wlin(cg, &T->g[0][bb], 5, &mv[t * nn], nn);
        LLVMValueRef dst = gep(cg, u[1], mulc(cg, add(cg, mul(cg, k, C), c), r * r));
        for (int a = 0; a < r; a++)
            for (int bb = 0; bb < r; bb++) {
                for (int t = 0; t < nn; t++) col[t] = rr[t][bb];
                st(cg, wlin(cg, &T->g[0][a], 5, col, nn), dst, ci64(cg, r * a + bb));
            }
        for_end(cg, &lc);
        for_end(cg, &lk);
    }
    par_end(cg, &P);
}

/* ---- convolutions on small maps --------------------------------------------
 * At most 16 pixels in and out (stride 1, 16+ channels each side; Winograd
 * takes 4x4 outputs first): y[., ., o] = sum over the input pixels i of
 * W[., ., tap(o, i)] x[., ., i], one GEMM [K x C] [C x N] over the batch per
 * pair (o, i) whose tap lies inside the kernel (49 pairs for a 3x3 conv on
 * 3x3 maps, where im2col multiplies 81 taps, a third of them padding), on
 * copies x^T[i][c][n] and W^T[tap][k][c] made once, into C[o][k][n], then
 * y = C transposed (+ bias).  The pairs of an output are summed in input
 * order, each GEMM in its own fixed order: the same bits for any thread
 * count.  ResNet-18's last stage (512 channels, 3x3 maps): all three
 * products 1.5-1.9x faster, its step 5%; GoogLeNet's last stage's 3x3 and
 * 5x5 convs 1.1-1.5x. */
static int conv_small(const ConvDims *d) {
    return d->sh == 1 && d->sw == 1 && d->h * d->w <= 16 && d->p * d->q <= 16 && d->r * d->s > 1 && d->c >= 16 &&
           d->k >= 16 && !conv_wino(d);
}

/* the pairs (o, i, tap) in output order, or their count when e is NULL */
static int64_t small_pairs(const ConvDims *d, int *e) {
    int64_t n = 0;
    for (int64_t p = 0; p < d->p; p++)
        for (int64_t q = 0; q < d->q; q++)
            for (int64_t ih = 0; ih < d->h; ih++)
                for (int64_t iw = 0; iw < d->w; iw++) {
                    int64_t r = ih - p + d->ph, sx = iw - q + d->pw;
                    if (r < 0 || r >= d->r || sx < 0 || sx >= d->s) continue;
                    if (e) {
                        e[3 * n] = (int)(p * d->q + q);
                        e[3 * n + 1] = (int)(ih * d->w + iw);
                        e[3 * n + 2] = (int)(r * d->s + sx);
                    }
                    n++;
                }
    return n;
}

/* GEMM g once per pair (o, i, tap) of d, in table order, with A, B and C
 * at their bases plus the pair's field fa, fb, fc (0: o, 1: i, 2: tap)
 * times the strides sa, sb, sc. */
static void small_gemms(Cg *cg, const ConvDims *d, const Gemm *g, LLVMValueRef A, int fa, int64_t sa, LLVMValueRef B,
                        int fb, int64_t sb, LLVMValueRef C, int fc, int64_t sc, LLVMValueRef scr) {
    int64_t np = small_pairs(d, NULL);
    int *tab = malloc(sizeof *tab * (size_t)(3 * np));
    LLVMValueRef *kv = malloc(sizeof *kv * (size_t)(3 * np));
    small_pairs(d, tab);
    for (int64_t i = 0; i < 3 * np; i++) kv[i] = LLVMConstInt(cg->i32, (unsigned long long)tab[i], 0);
    char name[48];
    snprintf(name, sizeof name, "netc_pairs%d", cg->counter++);
    LLVMValueRef tp = cg_const_table(cg, name, cg->i32, kv, 3 * np);
    free(tab);
    free(kv);
    Loop l;
    LLVMValueRef pe = for_begin(cg, &l, ci64(cg, 0), ci64(cg, np), 1);
    LLVMValueRef f[3];
    for (int j = 0; j < 3; j++) {
        LLVMValueRef at = addc(cg, mulc(cg, pe, 3), j);
        f[j] = LLVMBuildSExt(cg->b, LLVMBuildLoad2(cg->b, cg->i32, LLVMBuildInBoundsGEP2(cg->b, cg->i32, tp, &at, 1, ""), ""),
                             cg->i64, "");
    }
    par_gemm(cg, g, gep(cg, A, mulc(cg, f[fa], sa)), gep(cg, B, mulc(cg, f[fb], sb)), gep(cg, C, mulc(cg, f[fc], sc)), NULL,
             scr);
    for_end(cg, &l);
}

static int64_t small_extra(const ConvDims *d, int64_t nb) {
    return round16(d->h * d->w * d->c * nb) + round16(d->r * d->s * d->k * d->c) + round16(d->p * d->q * d->k * nb);
}

/* dst[a][b][c] = src[a*sa + b*sb + c*sc] (+ bias[b]) for a < A, b < B, c <
 * Cn: one body for every permutation of the small-map convs, split over b. */
static void permute3(Cg *cg, LLVMValueRef src, LLVMValueRef dst, int64_t A, int64_t B, int64_t Cn, int64_t sa,
                     int64_t sb, int64_t sc, LLVMValueRef bias) {
    LLVMValueRef v[9] = {src, dst, bias ? bias : LLVMConstNull(cg->pf), ci64(cg, A), ci64(cg, B), ci64(cg, Cn),
                         ci64(cg, sa), ci64(cg, sb), ci64(cg, sc)};
    Par P;
    LLVMValueRef b, e;
    if (par_begin_shared(cg, &P, "permute3", v, 9, ci64(cg, B), &b, &e)) {
        Loop la, lb, lc;
        LLVMValueRef bi = for_begin(cg, &lb, b, e, 1);
        LLVMValueRef bb = ld_or0(cg, v[2], bi);
        LLVMValueRef ai = for_begin(cg, &la, ci64(cg, 0), v[3], 1);
        LLVMValueRef s0 = gep(cg, v[0], add(cg, mul(cg, ai, v[6]), mul(cg, bi, v[7])));
        LLVMValueRef d0 = gep(cg, v[1], mul(cg, add(cg, mul(cg, ai, v[4]), bi), v[5]));
        LLVMValueRef ci = for_begin(cg, &lc, ci64(cg, 0), v[5], 1);
        st(cg, LLVMBuildFAdd(cg->b, ld(cg, s0, mul(cg, ci, v[8])), bb, ""), d0, ci);
        for_end(cg, &lc);
        for_end(cg, &la);
        for_end(cg, &lb);
    }
    par_end(cg, &P);
}

/* rows of len floats at p set to zero, split over the rows */
static void zero_rows(Cg *cg, LLVMValueRef p, int64_t rows, int64_t len) {
    LLVMValueRef v[2] = {p, ci64(cg, len)};
    Par P;
    LLVMValueRef b, e;
    if (par_begin_shared(cg, &P, "zero_rows", v, 2, ci64(cg, rows), &b, &e))
        cg_memset0(cg, gep(cg, v[0], mul(cg, b, v[1])), mul(cg, sub(cg, e, b), v[1]));
    par_end(cg, &P);
}

static void small_fwd(Cg *cg, const ConvDims *d, int64_t nb, LLVMValueRef w, LLVMValueRef x, LLVMValueRef y,
                      LLVMValueRef bias, LLVMValueRef scr) {
    int64_t hw = d->h * d->w, rs = d->r * d->s, pq = d->p * d->q, C = d->c, K = d->k;
    LLVMValueRef xt = scr, wt = gep(cg, xt, ci64(cg, round16(hw * C * nb)));
    LLVMValueRef ct = gep(cg, wt, ci64(cg, round16(rs * K * C)));
    LLVMValueRef gscr = gep(cg, scr, ci64(cg, small_extra(d, nb)));
    permute3(cg, x, xt, hw, C, nb, 1, hw, C * hw, NULL);      /* xt[i][c][n] = x[n][c][i] */
    permute3(cg, w, wt, rs, K, C, 1, C * rs, rs, NULL);       /* wt[t][k][c] = w[k][c][t] */
    zero_rows(cg, ct, pq * K, nb);
    Gemm g = {.M = K, .N = nb, .K = C, .a_sm = C, .a_sk = 1, .bk = B_ROW, .b_sk = nb, .b_sn = 1, .ldc = nb, .beta0 = 0};
    small_gemms(cg, d, &g, wt, 2, K * C, xt, 1, C * nb, ct, 0, K * nb, gscr);
    permute3(cg, ct, y, nb, K, pq, 1, nb, K * nb, bias);      /* y[n][k][o] = ct[o][k][n] (+ b[k]) */
}

/* The weight gradient on small maps: dW[., ., tap] = sum over the pairs
 * (o, i, tap) of dy[., ., o] x[., ., i]^T over the batch, one GEMM [K x N]
 * [N x C] per pair on copies dy^T[o][k][n] and x^T[i][c][n], into
 * dW^T[tap][k][c]. */
static int64_t small_bwdw_extra(const ConvDims *d, int64_t nb) {
    return round16(d->h * d->w * d->c * nb) + round16(d->p * d->q * d->k * nb) + round16(d->r * d->s * d->k * d->c);
}

static void small_bwdw(Cg *cg, const ConvDims *d, int64_t nb, LLVMValueRef dy, LLVMValueRef x, LLVMValueRef dw,
                       LLVMValueRef scr) {
    int64_t hw = d->h * d->w, rs = d->r * d->s, pq = d->p * d->q, C = d->c, K = d->k;
    LLVMValueRef xt = scr, dyt = gep(cg, xt, ci64(cg, round16(hw * C * nb)));
    LLVMValueRef wt = gep(cg, dyt, ci64(cg, round16(pq * K * nb)));
    LLVMValueRef gscr = gep(cg, scr, ci64(cg, small_bwdw_extra(d, nb)));
    permute3(cg, x, xt, hw, C, nb, 1, hw, C * hw, NULL);      /* xt[i][c][n] = x[n][c][i] */
    permute3(cg, dy, dyt, pq, K, nb, 1, pq, K * pq, NULL);    /* dyt[o][k][n] = dy[n][k][o] */
    zero_rows(cg, wt, rs * K, C);
    Gemm g = {.M = K, .N = C, .K = nb, .a_sm = nb, .a_sk = 1, .bk = B_COL, .b_sk = 1, .b_sn = nb, .ldc = C, .beta0 = 0};
    small_gemms(cg, d, &g, dyt, 0, K * nb, xt, 1, C * nb, wt, 2, K * C, gscr);
    permute3(cg, wt, dw, K, C, rs, C, 1, K * C, NULL);        /* dw[k][c][t] = wt[t][k][c] */
}

/* ---- convolutions of few input channels --------------------------------------
 * The first conv of a network (one input channel here, strided: AlexNet's
 * and NiN's 11x11 at stride 4, GoogLeNet's and ResNet-18's 7x7 at stride 2)
 * multiplies each im2col element by the K output channels only, so packing
 * it costs more than the products.  Computed directly instead, image by
 * image: the image's padded input split into its sw column phases,
 * xs[c][phase][row][j] = x_pad[c][row][phase + sw*j], so that tap (r, s) of
 * 2V consecutive outputs of a row is two contiguous vectors of a phase
 * plane; the forward product keeps 6 channels x 2V outputs in registers
 * (5 or 4 when that divides K: no remainder body) and does per tap two
 * loads, six weight broadcasts and twelve FMAs; the weight gradient keeps
 * 3 (or 2) channels x 4 taps of a kernel row in registers, per V outputs
 * three dy loads and four x loads for twelve FMAs, over blocks of
 * TAPS_PB rows, its V lanes summed at the end.  The weight gradient splits
 * the batch into TAPS_CHUNKS fixed chunks summed in order: the same bits
 * for any thread count.  The bias is added after the taps' sum, as the
 * GEMM paths do (ResNet-18's step check, its first conv followed by batch
 * norm, failed with the bias summed first).  No data gradient (the
 * GEMM paths keep it: a first conv has none). */
enum { TAPS_KB = 6, TAPS_CHUNKS = 16, TAPS_PB = 8 };

static int64_t taps_ws(const ConvDims *d) { return d->q + (d->s - 1) / d->sw; }
static int64_t taps_xs(const ConvDims *d) { return round16(d->c * d->sw * (d->h + 2 * d->ph) * taps_ws(d)); }

/* Strided convs of at most 4 input channels on rows of 32 outputs or more
 * (two vectors of 16 lanes), the phase planes within 1 MB. */
static int conv_taps(const ConvDims *d) {
    return d->c <= 4 && (d->sh > 1 || d->sw > 1) && d->q >= 32 && taps_xs(d) <= (1 << 18);
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
            vst(cg, LLVMBuildFAdd(cg->b, get(cg, acc[i][h]), b0, ""), yrow, ci64(cg, i * d->p * d->q + h * V));
    }
}

/* y = conv(x, w) (+ bias), one task per image; scr: the threads' scratch */
static void taps_fwd(Cg *cg, const ConvDims *d, int64_t nb, LLVMValueRef w, LLVMValueRef x, LLVMValueRef y,
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
             bias != NULL);
    Par P;
    LLVMValueRef b, e;
    if (!par_begin_shared(cg, &P, key, v, 5 + TL_COUNT, ci64(cg, nb), &b, &e)) {
        par_end(cg, &P);
        return;
    }
    /* for size: LLVM unswitched its loops on the trip counts, doubling the
     * body for no speed (the weight gradient's likewise) */
    cg_fn_attr(cg, P.body, "optsize");
    LLVMValueRef xs = thread_scratch(cg, v[4], gemm_scratch_floats(cg)), *lim = v + 5;
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

/* the weight gradient's blocks: TAPS_KB2 channels x TAPS_SG taps of a kernel
 * row in registers, TAPS_KB2 dy loads and TAPS_SG loads of x per 12 FMAs
 * (one channel x 7 taps: 8 loads per 7 FMAs, 1.3x slower) */
enum { TAPS_KB2 = 3, TAPS_SG = 4 };

static int64_t taps_bwdw_extra(const Cg *cg, const ConvDims *d) {
    return round16(TAPS_CHUNKS * d->k * d->c * d->r * d->s * cg->vw);
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

/* dw = the weight gradient of conv d; scr: taps_bwdw_extra() shared floats
 * (the chunks' partial sums), then the threads' scratch */
static void taps_bwdw(Cg *cg, const ConvDims *d, int64_t nb, LLVMValueRef dy, LLVMValueRef x, LLVMValueRef dw,
                      LLVMValueRef scr) {
    int V = cg->vw, kb = taps_kb(d->k, TAPS_KB2);
    int64_t crs = d->c * d->r * d->s, nch = nb < TAPS_CHUNKS ? nb : TAPS_CHUNKS, kfull = d->k / kb * kb;
    {
        LLVMValueRef v[3 + TL_COUNT] = {dy, x, scr}, *lim = v + 3;
        taps_limits(cg, d, d->q / V, kfull, lim);
        Par P;
        LLVMValueRef b, e;
        par_begin(cg, &P, v, 3 + TL_COUNT, ci64(cg, nch), &b, &e);
        cg_fn_attr(cg, P.body, "optsize");
        LLVMValueRef xs = thread_scratch(cg, gep(cg, v[2], ci64(cg, taps_bwdw_extra(cg, d))), gemm_scratch_floats(cg));
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

static int64_t conv_fwd_extra(const Cg *cg, const ConvDims *d, int64_t nb) {
    if (conv_wino(d)) return wino_extra(d, nb);
    if (conv_small(d)) return small_extra(d, nb);
    if (conv_taps(d)) return 0;
    if (conv_1x1_padt(cg, d)) return 0;
    if (conv_fwd_compact(cg, d)) return round16(nb * d->k * d->p * d->q);
    if (!conv_fwd_padrow(d)) return 0;
    if (conv_fwd_padt(cg, d)) return pad_floats(d, nb);
    return pad_floats(d, nb) + round16(nb * d->k * d->p * pad_width(d));
}

/* y = conv(x, w) (+ bias[k]); scr: conv_fwd_extra() shared floats, then the
 * threads' GEMM scratch.  The gather path (B_CONV_FWD) or the padded-width
 * path: y_ext[n, k, p*Wp + q'] by one GEMM, then y = y_ext's first Q columns
 * of every row (+ bias). */
static void conv_fwd(Cg *cg, const ConvDims *d, int64_t nb, LLVMValueRef w, LLVMValueRef x, LLVMValueRef y,
                     LLVMValueRef bias, LLVMValueRef scr) {
    int64_t crs = d->c * d->r * d->s, pq = d->p * d->q, hw = d->h * d->w;
    if (conv_wino(d)) {
        wino_fwd(cg, d, nb, w, x, y, bias, scr);
        return;
    }
    if (conv_small(d)) {
        small_fwd(cg, d, nb, w, x, y, bias, scr);
        return;
    }
    if (conv_taps(d)) {
        taps_fwd(cg, d, nb, w, x, y, bias, scr);
        return;
    }
    if (conv_1x1_padt(cg, d)) {
        ConvDims t = {.c = d->c, .h = 1, .w = hw, .k = d->k, .r = 1, .s = 1, .sh = 1, .sw = hw, .p = 1, .q = hw};
        Gemm g = {.M = nb * hw, .N = d->k, .K = d->c, .bk = B_PADT, .b_sn = d->c, .cv = t, .ldc = d->k, .cpq = hw,
                  .cimg = d->k * hw, .ximg = d->c * hw, .beta0 = 1};
        par_gemm(cg, &g, x, w, y, bias, scr);
        return;
    }
    if (conv_fwd_compact(cg, d)) {
        LLVMValueRef ct = scr;
        Gemm g = {.M = d->k, .N = nb * pq, .K = crs, .a_sm = crs, .a_sk = 1, .bk = B_CONV_FWD, .cv = conv_flat(*d),
                  .ldc = nb * pq, .cpq = nb * pq, .cimg = 0, .ximg = d->c * hw, .beta0 = 1};
        par_gemm(cg, &g, w, x, ct, NULL, gep(cg, scr, ci64(cg, conv_fwd_extra(cg, d, nb))));
        /* y[n, k, :] = ct[k, n*pq : (n+1)*pq] (+ b[k]) */
        LLVMValueRef v[6] = {ct, y, bias ? bias : LLVMConstNull(cg->pf), ci64(cg, d->k), ci64(cg, pq), ci64(cg, nb)};
        Par P;
        LLVMValueRef b, e;
        if (par_begin_shared(cg, &P, "conv_uncompact", v, 6, ci64(cg, nb * d->k), &b, &e)) {
            LLVMValueRef K = v[3], PQ = v[4], NB = v[5];
            Loop lr, lq;
            LLVMValueRef row = for_begin(cg, &lr, b, e, 1);
            LLVMValueRef img = sdiv(cg, row, K), k = sub(cg, row, mul(cg, img, K));
            LLVMValueRef bb = ld_or0(cg, v[2], k);
            LLVMValueRef src = gep(cg, v[0], add(cg, mul(cg, k, mul(cg, NB, PQ)), mul(cg, img, PQ)));
            LLVMValueRef dst = gep(cg, v[1], mul(cg, row, PQ));
            LLVMValueRef q = for_begin(cg, &lq, ci64(cg, 0), PQ, 1);
            st(cg, LLVMBuildFAdd(cg->b, ld(cg, src, q), bb, ""), dst, q);
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
                  .ldc = pq, .cpq = pq, .cimg = d->k * pq, .ximg = d->c * hw, .beta0 = bias == NULL};
        par_gemm(cg, &g, w, x, y, NULL, scr);
        return;
    }
    int64_t hp = d->h + 2 * d->ph, wp = pad_width(d), L = d->p * wp;
    int64_t xsz = pad_floats(d, nb);
    LLVMValueRef xp = scr;
    emit_pad(cg, d, nb, x, xp);
    if (conv_fwd_padt(cg, d)) {
        ConvDims t = {.c = d->c, .h = hp, .w = wp, .k = d->k, .r = d->r, .s = d->s, .sh = 1, .sw = d->q,
                      .ph = 1, .p = d->p, .q = wp};
        Gemm g = {.M = nb * L, .N = d->k, .K = crs, .bk = B_PADT, .b_sn = crs, .cv = t, .ldc = d->k,
                  .cpq = d->p * d->q, .cimg = d->k * d->p * d->q, .ximg = d->c * hp * wp, .beta0 = 1};
        par_gemm(cg, &g, xp, w, y, bias, gep(cg, scr, ci64(cg, conv_fwd_extra(cg, d, nb))));
        return;
    }
    LLVMValueRef yext = gep(cg, scr, ci64(cg, xsz));
    ConvDims t = {.c = d->c, .h = hp, .w = wp, .k = d->k, .r = d->r, .s = d->s, .sh = 1, .sw = 1, .p = d->p, .q = wp};
    Gemm g = {.M = d->k, .N = nb * L, .K = crs, .a_sm = crs, .a_sk = 1, .bk = B_PADROW, .cv = t, .ldc = L, .cpq = L,
              .cimg = d->k * L, .ximg = d->c * hp * wp, .beta0 = 1};
    par_gemm(cg, &g, w, xp, yext, NULL, gep(cg, scr, ci64(cg, conv_fwd_extra(cg, d, nb))));
    LLVMValueRef v[7] = {yext, y, bias ? bias : LLVMConstNull(cg->pf), ci64(cg, d->k), ci64(cg, d->p),
                         ci64(cg, d->q), ci64(cg, wp)};
    Par P;
    LLVMValueRef b, e;
    if (par_begin_shared(cg, &P, "conv_compact", v, 7, ci64(cg, nb * d->k), &b, &e)) {
        LLVMValueRef K = v[3], Pn = v[4], Q = v[5], WP = v[6];
        Loop lr, lp, lq;
        LLVMValueRef row = for_begin(cg, &lr, b, e, 1);
        LLVMValueRef bb = ld_or0(cg, v[2], srem(cg, row, K));
        LLVMValueRef src = gep(cg, v[0], mul(cg, row, mul(cg, Pn, WP)));
        LLVMValueRef dst = gep(cg, v[1], mul(cg, row, mul(cg, Pn, Q)));
        LLVMValueRef p = for_begin(cg, &lp, ci64(cg, 0), Pn, 1);
        LLVMValueRef sr = gep(cg, src, mul(cg, p, WP)), dr = gep(cg, dst, mul(cg, p, Q));
        LLVMValueRef q = for_begin(cg, &lq, ci64(cg, 0), Q, 1);
        st(cg, LLVMBuildFAdd(cg->b, ld(cg, sr, q), bb, ""), dr, q);
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

void cg_emit_conv(Cg *cg, const IrNode *n) {
    int64_t nb = cg->p->batch;
    int64_t per = gemm_scratch_floats(cg);
    LLVMValueRef nt = cg_nthreads(cg);
    if (n->op == IR_OP_CONV2D) {
        int has_bias = n->attr.conv.bias && n->nin > 2;
        ConvDims d = conv_dims(cg, n, n->in[0], n->out[0]);
        LLVMValueRef x = cg_vptr(cg, n->in[0]), w = cg_vptr(cg, n->in[1]), y = cg_vptr(cg, n->out[0]);
        LLVMValueRef scr = scratch_for_threads(cg, nt, per, conv_fwd_extra(cg, &d, nb));
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
            LLVMValueRef scr0 = scratch_for_threads(cg, nt, per, round16(wsz) + conv_fwd_extra(cg, &fd, nb));
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
            conv_fwd(cg, &fd, nb, wt, dy, dx, NULL, gep(cg, scr0, ci64(cg, round16(wsz))));
        } else {
            /* dcol[n][CRS, PQ] = W^T dy_n for the whole batch in one GEMM (dy seen
             * as 1x1 images), then dx_n = col2im(dcol[n]) by image */
            int64_t dsz = nb * crs * pq;
            LLVMValueRef scr0 = scratch_for_threads(cg, nt, per, dsz);
            LLVMValueRef dcol = scr0;
            ConvDims t = {.c = d.k, .h = 1, .w = pq, .k = crs, .r = 1, .s = 1, .sh = 1, .sw = 1,
                          .ph = 0, .pw = 0, .p = 1, .q = pq};
            Gemm g = {.M = crs, .N = nb * pq, .K = d.k, .a_sm = 1, .a_sk = crs, .bk = B_CONV_FWD, .cv = t,
                      .ldc = pq, .cpq = pq, .cimg = crs * pq, .ximg = d.k * pq, .beta0 = 1};
            par_gemm(cg, &g, w, dy, dcol, NULL, gep(cg, scr0, ci64(cg, round16(dsz))));
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
        d.grad = 1;
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
        if (conv_small(&d)) {
            small_bwdw(cg, &d, nb, dy, x, dw, scratch_for_threads(cg, nt, per, small_bwdw_extra(&d, nb)));
        } else if (conv_taps(&d)) {
            taps_bwdw(cg, &d, nb, dy, x, dw, scratch_for_threads(cg, nt, per, taps_bwdw_extra(cg, &d)));
        } else if (conv_wino(&d)) {
            LLVMValueRef scr0 = scratch_for_threads(cg, nt, per, wbw_extra(cg, &d, nb));
            wino_bwdw(cg, &d, nb, dy, x, dw, scr0);
        } else if (((stride1 && ((wpad - d.q) * 6 <= d.q || d.k * (wpad - d.q) * 10 < d.q * 128)) || (!stride1 && d.c == 1))) {
            /* stride 1, transposed: dW^T[CRS, K] = im2col(x)[CRS, L] dy^T[L, K] over
             * the padded width: with x_pad the input zero padded to Hp x Wp,
             * row (c,r,s) of im2col at l = (n, p, q'), q' < Wp, is x_pad[n, c]
             * at r*Wp + s + p*Wp + q' - one contiguous run per image - and dy
             * is extended by zeros at q' >= Q.  The big operand packs by
             * copies; dy (few channels) is gathered, once per block. */
            int64_t hp = d.h + 2 * d.ph, wp = pad_width(&d);
            int direct = d.ph == 0 && d.pw == 0 && d.s == 1;   /* x is x_pad, no overrun */
            /* strided (first layers, one input channel): the grid is the output's,
             * rows of A copied with the stride */
            int64_t gw = stride1 ? wp : d.q;
            ConvDims t = {.c = d.c, .h = hp, .w = wp, .k = d.k, .r = d.r, .s = d.s, .sh = 1, .sw = d.q,
                          .ph = d.sh, .pw = d.sw, .p = d.p, .q = gw};
            Gemm g = {.M = crs, .N = d.k, .K = nb * d.p * gw, .a_sm = hp * wp, .bk = B_DYT, .b_sn = pq, .cv = t,
                      .ldc = d.k, .aimg = d.k * pq, .ximg = d.c * hp * wp, .beta0 = 1};
            int ks = gemm_ksplit(&g);
            int64_t csz = round16(crs * d.k), xsz = direct ? 0 : pad_floats(&d, nb);
            int64_t psz = ks ? round16(KSPLIT * crs * d.k) : 0;
            LLVMValueRef scr0 = scratch_for_threads(cg, nt, per, csz + xsz + psz);
            LLVMValueRef ct = scr0, xp = x;
            if (!direct) {
                xp = gep(cg, scr0, ci64(cg, csz));
                emit_pad(cg, &d, nb, x, xp);
            }
            if (ks)
                par_gemm_ksplit(cg, &g, xp, dy, ct, gep(cg, scr0, ci64(cg, csz + xsz)),
                                gep(cg, scr0, ci64(cg, csz + xsz + psz)));
            else
                par_gemm(cg, &g, xp, dy, ct, NULL, gep(cg, scr0, ci64(cg, csz + xsz)));
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
            par_gemm(cg, &g, dy, x, dw, NULL, scratch_for_threads(cg, nt, per, 0));
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
    int64_t per = gemm_scratch_floats(cg);
    LLVMValueRef scr = scratch_for_threads(cg, cg_nthreads(cg), per, 0);
    if (n->op == IR_OP_LINEAR) {
        in = cg_numel(cg, n->in[0]) / nb;
        out = cg_numel(cg, n->out[0]) / nb;
        int has_bias = n->attr.linear.bias && n->nin > 2;
        Gemm g = {.M = nb, .N = out, .K = in, .a_sm = in, .a_sk = 1, .bk = B_COL, .b_sk = 1, .b_sn = in, .ldc = out,
                  .beta0 = !has_bias};
        par_gemm(cg, &g, cg_vptr(cg, n->in[0]), cg_vptr(cg, n->in[1]), cg_vptr(cg, n->out[0]),
                 has_bias ? cg_vptr(cg, n->in[2]) : NULL, scr);
    } else if (n->op == IR_OP_LINEAR_BWD_DATA) {
        /* (dy, w) -> dx */
        in = cg_numel(cg, n->out[0]) / nb;
        out = cg_numel(cg, n->in[0]) / nb;
        Gemm g = {.M = nb, .N = in, .K = out, .a_sm = out, .a_sk = 1, .bk = B_ROW, .b_sk = in, .b_sn = 1, .ldc = in,
                  .beta0 = 1};
        par_gemm(cg, &g, cg_vptr(cg, n->in[0]), cg_vptr(cg, n->in[1]), cg_vptr(cg, n->out[0]), NULL, scr);
    } else {
        /* (dy, x) -> dw[, db] */
        in = cg_numel(cg, n->in[1]) / nb;
        out = cg_numel(cg, n->in[0]) / nb;
        Gemm g = {.M = out, .N = in, .K = nb, .a_sm = 1, .a_sk = out, .bk = B_ROW, .b_sk = in, .b_sn = 1, .ldc = in,
                  .beta0 = 1};
        LLVMValueRef dy = cg_vptr(cg, n->in[0]);
        par_gemm(cg, &g, dy, cg_vptr(cg, n->in[1]), cg_vptr(cg, n->out[0]), NULL, scr);
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

const char *cg_conv_method(const Program *p, const IrNode *n) {
    ConvDims d;
    if (n->op == IR_OP_CONV2D) {
        d = conv_dims_p(p, n, n->in[0], n->out[0]);
    } else if (n->op == IR_OP_CONV2D_BWD_DATA) {
        ConvDims f = conv_dims_p(p, n, n->out[0], n->in[0]);
        if (!bwd_data_fwd(&f, &d)) return NULL;
    } else if (n->op == IR_OP_CONV2D_BWD_WEIGHT) {
        d = conv_dims_p(p, n, n->in[1], n->in[0]);
        d.grad = 1;
    } else {
        return NULL;
    }
    if (conv_small(&d)) return "pixel-pair GEMMs";
    if (conv_taps(&d)) return n->op == IR_OP_CONV2D_BWD_DATA ? NULL : "direct, by taps";
    if (!conv_wino(&d)) return NULL;
    return d.r == 5 ? "winograd F(2x2, 5x5)" : "winograd F(2x2, 3x3)";
}
