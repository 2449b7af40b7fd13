/* gemm_internal.h - what the files of the conv and linear products share:
 * gemm.c (the micro-kernels, blocking, drivers and their parallel split),
 * gemm_pack.c (packing), conv_padded.c (the padded-width layouts), conv.c
 * (conv and linear nodes, the choice of method), conv_winograd.c,
 * conv_small.c and conv_taps.c (the other methods).  Sizes and strides are
 * in floats; scr arguments are scratch: shared floats first, then each
 * thread's cg_gemm_scratch_floats(). */
#ifndef NETC_CG_GEMM_INTERNAL_H
#define NETC_CG_GEMM_INTERNAL_H

#include "cg.h"

/* the micro-kernel's tile MR x NR, the blocking (KC, MC, NC) and the
 * packed-A space of B_PADROW and B_PADT (APK); NR and NC need a Cg *cg */
enum { KC = 256, APK = 1 << 20 };
#define MR (cg->mr)
#define MC (cg->mc)
#define NR (2 * cg->vw)
#define NC (NR * 64)

/* How the GEMM reads B (and for B_DYT and B_PADT also A): B_ROW, B_COL:
 * strided; B_CONV_FWD: an implicit im2col of a batch of conv inputs (rows
 * (c, r, s), columns (image, p, q)); B_CONV_BWDW: its transpose (rows
 * (image, p, q), columns (c, r, s)); the padded-width kinds: */
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

/* one conv's shapes: input C x H x W, K filters of R x S, strides, padding,
 * output P x Q */
typedef struct {
    int64_t c, h, w, k, r, s, sh, sw, ph, pw, p, q;
    int grad;               /* a gradient's product (the data gradient's forward conv, the weight gradient) */
    int wgrad;              /* the weight gradient's */
} ConvDims;

/* one product C (+)= A B of constant shapes */
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
    int relu;               /* C = max(C, 0) when the reduction is done (not for k-split parts) */
} Gemm;

/* the micro-kernel variants (see cg_micro_kernel_gen) */
enum { UK_PACKED, UK_ROWS, UK_DIRECT, UK_KTAB };

/* The GEMM driver is one function per B kind, shared by every kernel of the
 * module (shapes arrive as runtime arguments), which keeps compile time low;
 * the micro-kernel does all the arithmetic and does not depend on shapes.
 * PQ is the number of output pixels per image of a conv (B_CONV_FWD: columns
 * per image; B_CONV_BWDW: rows of B per image). */
enum { GA_A, GA_B, GA_C, GA_SCR, GA_IB, GA_IE, GA_JB, GA_JE, GA_M, GA_N, GA_K, GA_ASM, GA_ASK, GA_BSK,
       GA_BSN, GA_LDC, GA_CPQ, GA_CIMG, GA_AIMG, GA_XIMG, GA_BETA0, GA_PQ,
       GA_CC, GA_H, GA_W, GA_R, GA_S, GA_SH, GA_SW, GA_PH, GA_PW, GA_Q, GA_KB, GA_RELU, GA_COUNT };

/* a driver's arguments, loaded in its body */
typedef struct {
    BKind bk;
    LLVMValueRef v[GA_COUNT];   /* i64 (pointers are loaded as float*) */
} GemmV;

/* argument x of the driver, in a function with a `const GemmV *g` */
#define G(x) (g->v[GA_##x])

/* software prefetches spread over a block's calls (see cg_prefetch_slice) */
typedef struct {
    LLVMValueRef base, stride, rows, lines, per;
    int rw;
} Prefetch;

/* the parts of a reduction cut by cg_par_gemm_ksplit */
enum { KSPLIT = 16 };

/* ---- gemm.c ------------------------------------------------------------------ */
/* The per-thread GEMM scratch, a multiple of 16 floats. */
int64_t cg_gemm_scratch_floats(const Cg *cg);
/* x rounded up to a multiple of 16. */
int64_t cg_round16(int64_t x);
/* The micro-kernel variant kind (UK_*), made on first use. */
LLVMValueRef cg_micro_kernel_gen(Cg *cg, int kind);
/* This thread's scratch: base + worker * per_thread (rounded to 16) floats. */
LLVMValueRef cg_thread_scratch(Cg *cg, LLVMValueRef base, int64_t per_thread);
/* Scratch for nthreads blocks of per_thread floats after extra shared ones. */
LLVMValueRef cg_scratch_for_threads(Cg *cg, LLVMValueRef nthreads, int64_t per_thread, int64_t extra);
/* The whole GEMM g0 split across the pool; bias: C's rows start at bias[j]
 * (or NULL); scr0: the pool's per-thread GEMM scratch. */
void cg_par_gemm(Cg *cg, const Gemm *g0, LLVMValueRef A, LLVMValueRef B, LLVMValueRef C, LLVMValueRef bias,
                 LLVMValueRef scr0);
/* Whether GEMM g should cut its reduction into KSPLIT parts. */
int cg_gemm_ksplit(const Gemm *g);
/* GEMM g by KSPLIT parts of its reduction (part: KSPLIT * M * ldc floats),
 * C their sum in part order. */
void cg_par_gemm_ksplit(Cg *cg, const Gemm *g, LLVMValueRef A, LLVMValueRef B, LLVMValueRef C, LLVMValueRef part,
                        LLVMValueRef scr0);

/* ---- gemm_pack.c -------------------------------------------------------------- */
/* The constant <NR x i32> of x in every lane. */
LLVMValueRef cg_vsplat_i32(Cg *cg, int64_t x);
/* The i64 x64 truncated and splat to NR i32 lanes. */
LLVMValueRef cg_vs32(Cg *cg, LLVMValueRef x64);
/* The constant <NR x i32> {0, 1, ..., NR-1}. */
LLVMValueRef cg_lane_ids(Cg *cg);
/* Stores the NR floats v at fptr + idx, aligned to align bytes. */
void cg_vnr_st(Cg *cg, LLVMValueRef v, LLVMValueRef fptr, LLVMValueRef idx, unsigned align);
/* NR floats at base[off], zero where mask is clear. */
LLVMValueRef cg_vnr_gather(Cg *cg, LLVMValueRef base, LLVMValueRef off, LLVMValueRef mask);
/* (a, b) += 1 with b wrapping at bn. */
void cg_bump2(Cg *cg, LLVMValueRef a, LLVMValueRef b, LLVMValueRef bn);
/* (c, r, s) += 1 with s wrapping at sn into r and r wrapping at rn into c. */
void cg_bump3(Cg *cg, LLVMValueRef vc, LLVMValueRef vr, LLVMValueRef vs, LLVMValueRef rn, LLVMValueRef sn);
/* A's rows [ic, ic + mc) of k block [pc, pc + kc) packed at ap. */
void cg_pack_a(Cg *cg, const GemmV *g, LLVMValueRef ap, LLVMValueRef ic, LLVMValueRef mc, LLVMValueRef pc,
               LLVMValueRef kc);
/* B's columns [jc, jc + nc) (zero from jend) of k block [pc, pc + kc) packed
 * at bp (B_PADROW: its row offset tables). */
void cg_pack_b(Cg *cg, const GemmV *g, LLVMValueRef bp, LLVMValueRef jc, LLVMValueRef nc, LLVMValueRef jend,
               LLVMValueRef pc, LLVMValueRef kc);

/* ---- conv_padded.c ------------------------------------------------------------ */
/* The row width of x_pad (at least Q). */
int64_t cg_pad_width(const ConvDims *d);
/* x_pad = x zero padded, for a batch of nb; cg_pad_floats() floats. */
void cg_emit_pad(Cg *cg, const ConvDims *d, int64_t nb, LLVMValueRef x, LLVMValueRef xp);
int64_t cg_pad_floats(const ConvDims *d, int64_t nb);
/* B_DYT: A's rows [ic, ic + mc) of k block [pc, pc + kc) packed at ap. */
void cg_pack_a_rows(Cg *cg, const GemmV *g, LLVMValueRef ap, LLVMValueRef ic, LLVMValueRef mc, LLVMValueRef pc,
                    LLVMValueRef kc);
/* B_PADROW, B_PADT: the row offset tables boff, ptab of k block kc from im2col
 * row (c0, r0, s0). */
void cg_padrow_offsets(Cg *cg, const GemmV *g, LLVMValueRef boff, LLVMValueRef ptab, LLVMValueRef c0,
                       LLVMValueRef r0, LLVMValueRef s0, LLVMValueRef kc);
/* B_PADROW: the panel of columns n0.. (zero from jend) gathered into pbuf. */
void cg_padrow_gather_panel(Cg *cg, const GemmV *g, LLVMValueRef pbuf, LLVMValueRef boff, LLVMValueRef n0,
                            LLVMValueRef jend, LLVMValueRef kc);
/* B_DYT, 1x1 convs: the panel of channels n0.. at dst by 8 x 8 transposes. */
void cg_dyt_pack_contig(Cg *cg, const GemmV *g, LLVMValueRef dst, LLVMValueRef n0, LLVMValueRef jend,
                        LLVMValueRef joff, LLVMValueRef nmask, LLVMValueRef pc, LLVMValueRef kc);
/* B_DYT: whether the images are small (k blocks cross them, A packed). */
LLVMValueRef cg_dyt_small(Cg *cg, const GemmV *g);
/* Call t's slice of the prefetches s. */
void cg_prefetch_slice(Cg *cg, const Prefetch *s, LLVMValueRef t);
/* The B_PADT driver's body; ukt, ukp: the UK_KTAB and UK_PACKED kernels. */
void cg_padt_body(Cg *cg, const GemmV *g, LLVMValueRef ukt, LLVMValueRef ukp);

/* ---- conv.c --------------------------------------------------------------------- */
/* A 1x1 stride-1 unpadded conv. */
int cg_conv_direct(const ConvDims *d);
/* p[i], or 0 when p is null. */
LLVMValueRef cg_ld_or0(Cg *cg, LLVMValueRef p, LLVMValueRef i);

/* ---- conv_winograd.c, conv_small.c, conv_taps.c: the other methods -------------
 * cg_conv_<m>(d): whether conv d (a forward product, or with d->grad a
 * gradient's) is computed by method m; cg_<m>_fwd: y = conv(x, w) (+ bias);
 * cg_<m>_bwdw: dw = the weight gradient of d from dy and x.  scr starts with
 * the shared floats of cg_<m>_extra() or cg_<m>_bwdw_extra() (Winograd's
 * weight gradient: cg_wbw_extra(); the forward taps: none). */
int cg_conv_wino(const ConvDims *d);
const char *cg_wino_name(const ConvDims *d);
int64_t cg_wino_extra(const Cg *cg, const ConvDims *d, int64_t nb);
void cg_wino_fwd(Cg *cg, const ConvDims *d, int64_t nb, LLVMValueRef w, LLVMValueRef x, LLVMValueRef y,
                 LLVMValueRef bias, LLVMValueRef scr);
int64_t cg_wbw_extra(const Cg *cg, const ConvDims *d, int64_t nb);
void cg_wino_bwdw(Cg *cg, const ConvDims *d, int64_t nb, LLVMValueRef dy, LLVMValueRef x, LLVMValueRef dw,
                  LLVMValueRef scr);
int cg_conv_small(const ConvDims *d);
int64_t cg_small_extra(const ConvDims *d, int64_t nb);
void cg_small_fwd(Cg *cg, const ConvDims *d, int64_t nb, LLVMValueRef w, LLVMValueRef x, LLVMValueRef y,
                  LLVMValueRef bias, LLVMValueRef scr);
int64_t cg_small_bwdw_extra(const ConvDims *d, int64_t nb);
void cg_small_bwdw(Cg *cg, const ConvDims *d, int64_t nb, LLVMValueRef dy, LLVMValueRef x, LLVMValueRef dw,
                   LLVMValueRef scr);
int cg_conv_taps(const ConvDims *d);
void cg_taps_fwd(Cg *cg, const ConvDims *d, int64_t nb, LLVMValueRef w, LLVMValueRef x, LLVMValueRef y,
                 LLVMValueRef bias, LLVMValueRef scr);
int64_t cg_taps_bwdw_extra(const Cg *cg, const ConvDims *d);
void cg_taps_bwdw(Cg *cg, const ConvDims *d, int64_t nb, LLVMValueRef dy, LLVMValueRef x, LLVMValueRef dw,
                  LLVMValueRef scr);

#endif
