/* conv_winograd.c - convs by Winograd F(2x2, 3x3), F(3x3, 3x3), F(4x4,
 * 3x3) and F(2x2, 5x5): the forward product (and so the stride-1 data
 * gradient) and the weight gradient. */
#include "gemm_internal.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- Winograd F(m x m, r x r) -------------------------------------------------
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
 * the weight gradient (cg_wino_bwdw).  Each chunk of tiles is one task, so
 * results do not depend on the thread count; they differ from the direct
 * products by rounding only (the transforms' coefficients are 1 and 1/2).
 * Larger tiles (m = 3, 4 below) are the same code with n = m + 2 inputs a
 * side: a tile row's patches are picked from one wide load (tile l's
 * column q at m l + q), and each row of 8 tiles' outputs is stored as
 * 8 m interleaved floats. */
enum { WG_SLACK = 64 };

/* The transforms: F(2, 3) above; F(3, 3) and F(4, 3) (Toom-Cook points 0,
 * 1, -1, 2 and infinity, and 0, 1, -1, 2, -2 and infinity: 5x5 and 6x6
 * input tiles, 25 products per 3x3 outputs and 36 per 4x4, for 81 and 144);
 * and F(2, 5) (points 0, 1, -1, 2, -2 and infinity; 6x6 input tiles, 36
 * products per tile for 100; its first output row and column do not depend
 * on the patch's last either, but it is taken for even output sides only),
 * n = m + r - 1 inputs per tile side.  F(3, 3) and F(4, 3) are taken only
 * when the tiles cover the output exactly.  The code is written once for
 * all (wlin: a row of constant coefficients, zeros skipped); each transform
 * has its own bodies. */
typedef struct { int m, r, n; float bt[6][6], g[6][5], at[4][6]; const char *name; } WinoT;
static const WinoT wino3 = {2, 3, 4, {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}},
                            {{1, 0, 0}, {.5f, .5f, .5f}, {.5f, -.5f, .5f}, {0, 0, 1}}, {{1, 1, 1, 0}, {0, 1, -1, -1}},
                            "winograd F(2x2, 3x3)"};
static const WinoT wino33 = {3, 3, 5,
                             {{2, -1, -2, 1, 0}, {0, -2, -1, 1, 0}, {0, 2, -3, 1, 0}, {0, -1, 0, 1, 0}, {0, 2, -1, -2, 1}},
                             {{.5f, 0, 0}, {-.5f, -.5f, -.5f}, {-1 / 6.f, 1 / 6.f, -1 / 6.f}, {1 / 6.f, 1 / 3.f, 2 / 3.f}, {0, 0, 1}},
                             {{1, 1, 1, 1, 0}, {0, 1, -1, 2, 0}, {0, 1, 1, 4, 1}},
                             "winograd F(3x3, 3x3)"};
static const WinoT wino43 = {4, 3, 6,
                             {{4, 0, -5, 0, 1, 0}, {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0}, {0, -2, -1, 2, 1, 0},
                              {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}},
                             {{1 / 4.f, 0, 0}, {-1 / 6.f, -1 / 6.f, -1 / 6.f}, {-1 / 6.f, 1 / 6.f, -1 / 6.f},
                              {1 / 24.f, 1 / 12.f, 1 / 6.f}, {1 / 24.f, -1 / 12.f, 1 / 6.f}, {0, 0, 1}},
                             {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}},
                             "winograd F(4x4, 3x3)"};
static const WinoT wino5 = {2, 5, 6,
                            {{4, 0, -5, 0, 1, 0}, {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0}, {0, -2, -1, 2, 1, 0},
                             {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}},
                            {{1 / 4.f, 0, 0, 0, 0}, {-1 / 6.f, -1 / 6.f, -1 / 6.f, -1 / 6.f, -1 / 6.f},
                             {-1 / 6.f, 1 / 6.f, -1 / 6.f, 1 / 6.f, -1 / 6.f},
                             {1 / 24.f, 1 / 12.f, 1 / 6.f, 1 / 3.f, 2 / 3.f},
                             {1 / 24.f, -1 / 12.f, 1 / 6.f, -1 / 3.f, 2 / 3.f}, {0, 0, 0, 0, 1}},
                            {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 1}}, "winograd F(2x2, 5x5)"};

/* Whether n x n transforms of conv d fit every thread's GEMM scratch (at
 * least APK floats for any vector width) with the fewest tiles a chunk
 * takes: the forward product's V and M of 32 tiles (wino_tc), the weight
 * gradient's V and Z of 16 (wbw_tc), rounded up for the widest MR and NR. */
static int wino_fits(const ConvDims *d, int n) {
    int64_t nx = n * n, kp = (d->k + 11) / 12 * 12, cr = (d->c + 11) / 12 * 12, kn = (d->k + 31) / 32 * 32;
    return nx * ((d->c + kp) * 32 + 32) + 2 * d->c + 4 * 32 + 64 <= APK && nx * ((kn + cr) * 16 + 16) + 64 <= APK;
}

/* The output tile side of a 3x3 conv's Winograd product, 0 for none.  In
 * a gradient's product (the data gradient's forward conv, the weight
 * gradient), where the tiles cover the output exactly, F(4, 3), else F(3,
 * 3): ResNet-18's 24x24 to 6x6 gradients 1.1-1.5x faster than by F(2, 3).
 * Not in a forward pass: F(4, 3) rounds some 10x more than F(2, 3), F(3, 3)
 * 4x, and there either moved relu inputs across zero (a small ResNet-34's
 * step outside its bound against ref; ResNet-18 at batch 4 off PyTorch's
 * gradients by 8e-3), while gradients are linear in dy and keep the
 * forward pass's choices.  Not on maps under 6x6 (3x3: 3x slower in the
 * weight gradient than the pixel pairs), nor for a weight gradient whose
 * per-part M (n^2 C K floats, summed into once per chunk of 16 tiles)
 * outgrows the caches (256 channels at 6x6: 1.1x slower).  $NETC_CPU_WINO
 * (2, 3 or 4) caps the tile, for experiments. */
static int wino_m3(const ConvDims *d) {
    const char *e = getenv("NETC_CPU_WINO");
    int m = e ? atoi(e) : 4, big = d->grad && d->p >= 6 && d->q >= 6;
    int w5 = !d->wgrad || 25 * d->c * d->k <= (1 << 20), w6 = !d->wgrad || 36 * d->c * d->k <= (1 << 20);
    if (m >= 4 && big && d->p % 4 == 0 && d->q % 4 == 0 && w6 && wino_fits(d, 6)) return 4;
    if (m >= 3 && big && d->p % 3 == 0 && d->q % 3 == 0 && w5 && wino_fits(d, 5)) return 3;
    return wino_fits(d, 4) ? 2 : 0;
}

static const WinoT *wino_t(const ConvDims *d) {
    if (d->r == 5) return &wino5;
    int m = wino_m3(d);
    return m == 4 ? &wino43 : m == 3 ? &wino33 : &wino3;
}

/* the number of elementwise products per tile: n^2 */
static int64_t wino_nx(const ConvDims *d) {
    const WinoT *T = wino_t(d);
    return (int64_t)T->n * T->n;
}

static int64_t wino_ty(const WinoT *T, const ConvDims *d) { return (d->p + T->m - 1) / T->m; }
static int64_t wino_tx(const WinoT *T, const ConvDims *d) { return (d->q + T->m - 1) / T->m; }

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
 * With 16 channels or more on a side: GoogLeNet's 5x5 gradients (16-48
 * channels in, 32-128 out, 12x12 and 6x6 maps) 85 -> 54-60 ms a step,
 * 1.8-1.9x on the 32 -> 96 at 12x12, for 0.2 s more compile time; at 48 x 16
 * channels on 6x6 the weight gradient is 1.2x slower, every other faster.
 * 3x3 against the direct paths (2 threads): forward 64 -> 64 channels at 24x24
 * 1.6x faster, ResNet-18's 12x12 and 6x6 convs 1.6-2x, NiN's 256 -> 384 at
 * 12x12 1.8x; weight gradients 1.5x (64 -> 64), GoogLeNet's 1.6x in all.
 * Outputs of 3x3 (ResNet-18's last stage: a 4x4 tile grid for 9 outputs)
 * were 1.2-1.4x slower: not taken. */
int cg_conv_wino(const ConvDims *d) {
    int r3 = d->r == 3 && d->s == 3;
    int r5 = d->r == 5 && d->s == 5 && d->p % 2 == 0 && d->q % 2 == 0 && d->c >= 16 && d->k >= 16 && d->grad;
    return ((r3 && wino_m3(d)) || (r5 && wino_fits(d, 6))) && d->sh == 1 && d->sw == 1 && d->ph < d->r &&
           d->pw < d->s && d->p >= 4 && d->q >= 4 && d->c >= 8 && d->k >= 8;
}

const char *cg_wino_name(const ConvDims *d) { return wino_t(d)->name; }

/* tiles per chunk: 64 (32 and 128 measured no faster), fewer when the
 * chunk's V and M would outgrow the GEMM's per-thread scratch */
static int64_t wino_tc(const Cg *cg, const ConvDims *d) {
    int64_t kp = (d->k + MR - 1) / MR * MR, tc = 64, nx = wino_nx(d);
    while (tc > NR && nx * ((d->c + kp) * tc + 32) + 2 * d->c + 4 * tc + 64 > cg_gemm_scratch_floats(cg)) tc /= 2;
    return tc;
}

/* x_pad for the Winograd kernels: cg_emit_pad's, with WG_SLACK + a row of
 * zeros after it for the reads of tiles past the output and of a tile
 * row's last vector */
static int64_t wino_xsz(const ConvDims *d, int64_t nb) { return cg_round16(cg_pad_floats(d, nb) + cg_pad_width(d) + WG_SLACK); }

static void wino_pad(Cg *cg, const ConvDims *d, int64_t nb, LLVMValueRef x, LLVMValueRef xp) {
    int64_t xend = nb * d->c * (d->h + 2 * d->ph) * cg_pad_width(d);
    cg_emit_pad(cg, d, nb, x, xp);
    cg_memset0(cg, gep(cg, xp, ci64(cg, xend)), ci64(cg, wino_xsz(d, nb) - xend));
}

int64_t cg_wino_extra(const Cg *cg, const ConvDims *d, int64_t nb) {
    int64_t kp = (d->k + MR - 1) / MR * MR;
    return wino_xsz(d, nb) + cg_round16(wino_nx(d) * kp * d->c);
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
    snprintf(key, sizeof key, "wino_w%d%d", T->m, r);
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

/* y = conv(x, w) (+ bias) by Winograd; scr: cg_wino_extra() shared floats (x_pad,
 * U), then the threads' GEMM scratch (V, M, tables).  One body for every
 * conv of the module: shapes come as arguments. */
enum { WV_XP, WV_UP, WV_Y, WV_BIAS, WV_TS, WV_C, WV_K, WV_TY, WV_TX, WV_T, WV_TC, WV_HP, WV_WP, WV_P, WV_Q, WV_COUNT };

/* V[xi][c][t - t0] = (B^T d B)[xi] for tiles [t0, t1) by tile-row segments,
 * eight tiles a vector (a segment's last vector spills into slots written
 * later): x_pad has planes of HPWP floats, rows of WP. */
static void wino_in_body(Cg *cg, const WinoT *T, LLVMValueRef xp, LLVMValueRef V, LLVMValueRef VS, LLVMValueRef C,
                         LLVMValueRef TC, LLVMValueRef HPWP, LLVMValueRef WP, LLVMValueRef vTY, LLVMValueRef vTX,
                         LLVMValueRef t0, LLVMValueRef t1) {
    int nn = T->n, m = T->m;
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
                                        add(cg, mul(cg, mulc(cg, ty, m), WP), mulc(cg, tx, m))));
    LLVMValueRef dst = gep(cg, V, add(cg, mul(cg, c, TC), sub(cg, t, t0)));
    LLVMValueRef g = for_begin(cg, &l3, ci64(cg, 0), seg, 8);
    /* rows: h[i][u] = (d_i B)[u], d_i's columns split into even and odd
     * lanes (m 2), or picked from one wide load (column q of lane l at m l +
     * q); then V[a][u] = (B^T h)[a][u] */
    LLVMValueRef h[6][6], col[6];
    for (int i = 0; i < nn; i++) {
        LLVMValueRef rp = gep(cg, base, add(cg, mulc(cg, g, m), mulc(cg, WP, i))), dr[6];
        if (m == 2) {
            for (int q = 0; q < nn; q += 2) {
                LLVMValueRef lo = v8ld(cg, rp, ci64(cg, q)), hi = v8ld(cg, rp, ci64(cg, q + 8));
                dr[q] = shuf8(cg, lo, hi, ev);
                dr[q + 1] = shuf8(cg, lo, hi, od);
            }
        } else {
            unsigned wide = (unsigned)(7 * m + nn + 7) / 8 * 8;
            LLVMTypeRef vw = LLVMVectorType(cg->f32, wide);
            LLVMValueRef row = LLVMBuildLoad2(cg->b, vw, LLVMBuildBitCast(cg->b, rp, LLVMPointerType(vw, 0), ""), "");
            LLVMSetAlignment(row, 4);
            for (int q = 0; q < nn; q++) {
                LLVMValueRef e[8];
                for (int l = 0; l < 8; l++) e[l] = ci32(cg, m * l + q);
                dr[q] = LLVMBuildShuffleVector(cg->b, row, LLVMGetUndef(vw), LLVMConstVector(e, 8), "");
            }
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
    snprintf(name, sizeof name, "netc_wino_in%d%d", T->m, T->r);
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

/* p[0 .. 8m) = the m vectors of eight tiles' outputs o[0..m) interleaved:
 * tile l's output j at m l + j */
static void wino_row_st(Cg *cg, LLVMValueRef *o, int m, LLVMValueRef p) {
    LLVMValueRef v[4];
    int n = m, w = 8;
    for (int j = 0; j < m; j++) v[j] = o[j];
    while (n > 1) {
        LLVMTypeRef vt = LLVMVectorType(cg->f32, (unsigned)w);
        LLVMValueRef e[64];
        for (int i = 0; i < 2 * w; i++) e[i] = ci32(cg, i);
        int h = 0;
        for (int j = 0; j < n; j += 2)
            v[h++] = LLVMBuildShuffleVector(cg->b, v[j], j + 1 < n ? v[j + 1] : LLVMGetUndef(vt), LLVMConstVector(e, (unsigned)(2 * w)), "");
        n = h, w *= 2;
    }
    LLVMValueRef e[32];
    for (int i = 0; i < 8 * m; i++) e[i] = ci32(cg, (i % m) * 8 + i / m);
    LLVMValueRef row = LLVMBuildShuffleVector(cg->b, v[0], LLVMGetUndef(LLVMTypeOf(v[0])), LLVMConstVector(e, (unsigned)(8 * m)), "");
    LLVMTypeRef rt = LLVMVectorType(cg->f32, (unsigned)(8 * m));
    LLVMSetAlignment(LLVMBuildStore(cg->b, row, LLVMBuildBitCast(cg->b, p, LLVMPointerType(rt, 0), "")), 4);
}

void cg_wino_fwd(Cg *cg, const ConvDims *d, int64_t nb, LLVMValueRef w, LLVMValueRef x, LLVMValueRef y,
                     LLVMValueRef bias, LLVMValueRef scr) {
    const WinoT *T = wino_t(d);
    int nn = T->n, nx = nn * nn, mm = T->m;
    int64_t hp = d->h + 2 * d->ph, wp = cg_pad_width(d);
    int64_t TY = wino_ty(T, d), TX = wino_tx(T, d), NT = nb * TY * TX, tc = wino_tc(cg, d);
    LLVMValueRef xp = scr, up = gep(cg, scr, ci64(cg, wino_xsz(d, nb)));
    wino_pad(cg, d, nb, x, xp);
    wino_weights(cg, d, w, up);
    LLVMValueRef ukd = cg_micro_kernel_gen(cg, UK_DIRECT);
    LLVMValueRef v[WV_COUNT] = {xp, up, y, bias ? bias : LLVMConstNull(cg->pf), gep(cg, scr, ci64(cg, cg_wino_extra(cg, d, nb))),
                                ci64(cg, d->c), ci64(cg, d->k), ci64(cg, TY), ci64(cg, TX), ci64(cg, NT), ci64(cg, tc),
                                ci64(cg, hp), ci64(cg, wp), ci64(cg, d->p), ci64(cg, d->q)};
    Par P;
    LLVMValueRef b, e;
    char key[24];
    snprintf(key, sizeof key, "wino%d%d%s", T->m, T->r, cg->relu ? "_relu" : "");
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
    LLVMValueRef ts = cg_thread_scratch(cg, v[WV_TS], cg_gemm_scratch_floats(cg));
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
    /* output offsets and counts (bits 0-7: the tile's columns in y, 8-15:
     * its rows) */
    {
        LLVMValueRef s = for_begin(cg, &l1, ci64(cg, 0), nv, 1);
        LLVMValueRef n, ty, tx;
        wino_tile(cg, add(cg, t0, s), vTY, vTX, &n, &ty, &tx);
        LLVMValueRef o = add(cg, mul(cg, n, mul(cg, K, PQ)), add(cg, mul(cg, mulc(cg, ty, mm), Q), mulc(cg, tx, mm)));
        LLVMValueRef fc = imin(cg, ci64(cg, mm), sub(cg, Q, mulc(cg, tx, mm)));
        LLVMValueRef fr = imin(cg, ci64(cg, mm), sub(cg, v[WV_P], mulc(cg, ty, mm)));
        st64(cg, o, yoff, s);
        st64(cg, LLVMBuildOr(cg->b, fc, LLVMBuildShl(cg->b, fr, ci64(cg, 8), ""), ""), yfl, s);
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
        pf.base = LLVMBuildGEP2(cg->b, cg->f32, v[WV_XP], (LLVMValueRef[]){add(cg, mul(cg, mul(cg, n, C), HPWP), mul(cg, mulc(cg, ty, mm), WP))},
                                1, "");
        pf.stride = HPWP;
        pf.rows = LLVMBuildSelect(cg->b, icmp(cg, LLVMIntSLT, addc(cg, ch, 1), e), C, ci64(cg, 0), "");
        pf.lines = addc(cg, sdiv(cg, mul(cg, addc(cg, mulc(cg, sdiv(cg, TC, vTX), mm), 2 + mm + nn), WP), ci64(cg, 16)), 1);
        pf.per = sdiv(cg, addc(cg, C, nx - 1), ci64(cg, nx));
    }
    /* M[xi] = U[xi] V[xi]: a block of U's rows stays in L2 and a B panel of
     * NR tiles in L1 while U's panels stream through */
    {
        LLVMValueRef xi = for_begin(cg, &l1, ci64(cg, 0), ci64(cg, nx), 1);
        cg_prefetch_slice(cg, &pf, xi);
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
        LLVMValueRef buf = LLVMBuildBitCast(cg->b, var(cg, LLVMArrayType(cg->f32, 8 * 16), NULL), cg->pf, "");
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
        LLVMValueRef mv[36], r[6][4], o[4][4], col[6];
        for (int xi = 0; xi < nx; xi++) mv[xi] = v8ld(cg, mrow, mulc(cg, MS, xi));
        for (int i = 0; i < nn; i++)
            for (int j = 0; j < mm; j++) r[i][j] = wlin(cg, T->at[j], 1, &mv[i * nn], nn);
        for (int j = 0; j < mm; j++) {
            for (int i = 0; i < nn; i++) col[i] = r[i][j];
            for (int a = 0; a < mm; a++) {
                o[a][j] = fadd(cg, wlin(cg, T->at[a], 1, col, nn), bk);
                if (cg->relu) o[a][j] = cg_relu(cg, o[a][j]);
            }
        }
        /* eight whole tiles side by side in a tile row: 8 m outputs a row */
        LLVMValueRef s7 = addc(cg, s, 7), in7 = icmp(cg, LLVMIntSLT, s7, nv);
        LLVMValueRef s7c = LLVMBuildSelect(cg->b, in7, s7, s, "");
        LLVMValueRef o0 = ld64(cg, yoff, s), fl7 = ld64(cg, yfl, s7c);
        LLVMValueRef full = and1(cg, and1(cg, in7, icmp(cg, LLVMIntEQ, sub(cg, ld64(cg, yoff, s7c), o0), ci64(cg, 7 * mm))),
                                 icmp(cg, LLVMIntEQ, LLVMBuildAnd(cg->b, fl7, ci64(cg, 255), ""), ci64(cg, mm)));
        If f;
        if_begin(cg, &f, full);
        {
            LLVMValueRef p0 = gep(cg, yk, o0), nr = LLVMBuildLShr(cg->b, fl7, ci64(cg, 8), "");
            for (int a = 0; a < mm; a++) {
                If fr;
                if (a) if_begin(cg, &fr, icmp(cg, LLVMIntSLT, ci64(cg, a), nr));
                wino_row_st(cg, o[a], mm, gep(cg, p0, mulc(cg, Q, a)));
                if (a) if_end(cg, &fr);
            }
        }
        if_else(cg, &f);
        {
            for (int i = 0; i < mm * mm; i++) v8st(cg, o[i / mm][i % mm], buf, ci64(cg, 8 * i));
            LLVMValueRef l = for_begin(cg, &l3, ci64(cg, 0), imin(cg, ci64(cg, 8), sub(cg, nv, s)), 1);
            LLVMValueRef sl = add(cg, s, l), fl = ld64(cg, yfl, sl);
            LLVMValueRef p0 = gep(cg, yk, ld64(cg, yoff, sl));
            Loop la, lj;
            LLVMValueRef a = for_begin(cg, &la, ci64(cg, 0), LLVMBuildLShr(cg->b, fl, ci64(cg, 8), ""), 1);
            LLVMValueRef j = for_begin(cg, &lj, ci64(cg, 0), LLVMBuildAnd(cg->b, fl, ci64(cg, 255), ""), 1);
            st(cg, ld(cg, buf, add(cg, mulc(cg, j, 8), add(cg, mulc(cg, a, 8 * mm), l))), p0,
               add(cg, mul(cg, a, Q), j));
            for_end(cg, &lj);
            for_end(cg, &la);
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
    int64_t cr = (d->c + MR - 1) / MR * MR, kn = (d->k + NR - 1) / NR * NR, tc = 16, nx = wino_nx(d);
    while (tc * 2 <= 64 && nx * (kn * tc * 2 + cr * tc * 2 + 16) + 64 <= cg_gemm_scratch_floats(cg)) tc *= 2;
    return tc;
}

static int64_t wbw_parts(const Cg *cg, const ConvDims *d, int64_t nb) {
    int64_t T = nb * wino_ty(wino_t(d), d) * wino_tx(wino_t(d), d), tc = wbw_tc(cg, d), nch = (T + tc - 1) / tc;
    return nch < WB_PARTS ? nch : WB_PARTS;
}

int64_t cg_wbw_extra(const Cg *cg, const ConvDims *d, int64_t nb) {
    int64_t cr = (d->c + MR - 1) / MR * MR, kn = (d->k + NR - 1) / NR * NR;
    return wino_xsz(d, nb) + cg_round16(wbw_parts(cg, d, nb) * wino_nx(d) * cr * kn);
}

enum { WB_XP, WB_DY, WB_MP, WB_TS, WB_C, WB_K, WB_TY, WB_TX, WB_T, WB_TC, WB_HP, WB_WP, WB_P, WB_Q, WB_NCH, WB_NPART,
       WB_COUNT };

void cg_wino_bwdw(Cg *cg, const ConvDims *d, int64_t nb, LLVMValueRef dy, LLVMValueRef x, LLVMValueRef dw,
                      LLVMValueRef scr) {
    int64_t hp = d->h + 2 * d->ph, wp = cg_pad_width(d);
    const WinoT *T = wino_t(d);
    int nn = T->n, nx = nn * nn, r = T->r, mm = T->m;
    int64_t TY = wino_ty(T, d), TX = wino_tx(T, d), NT = nb * TY * TX, tc = wbw_tc(cg, d);
    int64_t nch = (NT + tc - 1) / tc, parts = wbw_parts(cg, d, nb);
    LLVMValueRef xp = scr, mp = gep(cg, scr, ci64(cg, wino_xsz(d, nb)));
    wino_pad(cg, d, nb, x, xp);
    LLVMValueRef ukr = cg_micro_kernel_gen(cg, UK_ROWS);
    LLVMValueRef v[WB_COUNT] = {xp, dy, mp, gep(cg, scr, ci64(cg, cg_wbw_extra(cg, d, nb))), ci64(cg, d->c), ci64(cg, d->k),
                                ci64(cg, TY), ci64(cg, TX), ci64(cg, NT), ci64(cg, tc), ci64(cg, hp), ci64(cg, wp),
                                ci64(cg, d->p), ci64(cg, d->q), ci64(cg, nch), ci64(cg, parts)};
    Par P;
    LLVMValueRef b, e;
    char key[20];
    snprintf(key, sizeof key, "wino_bw%d%d", T->m, r);
    if (par_begin_shared(cg, &P, key, v, WB_COUNT, ci64(cg, parts), &b, &e)) {
        LLVMValueRef C = v[WB_C], K = v[WB_K], vTY = v[WB_TY], vTX = v[WB_TX], TC = v[WB_TC], WP = v[WB_WP];
        LLVMValueRef Q = v[WB_Q], PQ = mul(cg, v[WB_P], Q), HPWP = mul(cg, v[WB_HP], WP);
        LLVMValueRef CR = mulc(cg, sdiv(cg, addc(cg, C, MR - 1), ci64(cg, MR)), MR);
        LLVMValueRef KN = mulc(cg, sdiv(cg, addc(cg, K, NR - 1), ci64(cg, NR)), NR);
        LLVMValueRef VS = addc(cg, mul(cg, CR, TC), 16);              /* one xi's V: rows over t */
        LLVMValueRef ZS = mul(cg, KN, TC), MS = mul(cg, CR, KN);      /* Z: NR-filter panels [t][NR] */
        LLVMTypeRef pi64 = LLVMPointerType(cg->i64, 0);
        LLVMValueRef ts = cg_thread_scratch(cg, v[WB_TS], cg_gemm_scratch_floats(cg));
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
            LLVMValueRef cok[4], rok[4];
            for (int i = 0; i < mm; i++) {
                cok[i] = icmp(cg, LLVMIntSLT, addc(cg, mulc(cg, tx, mm), i), Q);
                rok[i] = icmp(cg, LLVMIntSLT, addc(cg, mulc(cg, ty, mm), i), v[WB_P]);
            }
            LLVMValueRef base = gep(cg, v[WB_DY], add(cg, mul(cg, mul(cg, n, K), PQ), add(cg, mul(cg, mulc(cg, ty, mm), Q), mulc(cg, tx, mm))));
            LLVMValueRef offs = LLVMBuildMul(cg->b, lanes, splat8(cg, tr32(cg, PQ)), "");
            LLVMValueRef kg = for_begin(cg, &l2, ci64(cg, 0), KN, 8);
            LLVMValueRef kin = LLVMBuildICmp(cg->b, LLVMIntSLT, LLVMBuildAdd(cg->b, lanes, splat8(cg, tr32(cg, kg)), ""),
                                             splat8(cg, tr32(cg, K)), "");
            LLVMValueRef gb = gep(cg, base, mul(cg, kg, PQ));
            LLVMValueRef gg[4][4];
            for (int i = 0; i < mm; i++)
                for (int j = 0; j < mm; j++) {
                    LLVMValueRef m = kin;
                    if (i) m = LLVMBuildAnd(cg->b, m, splat8(cg, rok[i]), "");
                    if (j) m = LLVMBuildAnd(cg->b, m, splat8(cg, cok[j]), "");
                    gg[i][j] = cg_gather(cg, gep(cg, gb, add(cg, mulc(cg, Q, i), ci64(cg, j))), offs, m, LLVMConstNull(v8));
                }
            /* A g A^T (A = (A^T)^T: n x m) */
            LLVMValueRef hz[4][6], zz[6][6], col[4];
            for (int i = 0; i < mm; i++)
                for (int u = 0; u < nn; u++) hz[i][u] = wlin(cg, &T->at[0][u], 6, gg[i], mm);
            for (int a = 0; a < nn; a++)
                for (int u = 0; u < nn; u++) {
                    for (int i = 0; i < mm; i++) col[i] = hz[i][u];
                    zz[a][u] = wlin(cg, &T->at[0][a], 6, col, mm);
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
    snprintf(key, sizeof key, "wino_bw_out%d%d", T->m, r);
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
