/* test_cpu_ops.c - the cpu backend against the ref backend, op by op.
 *
 * Each case builds a one-node Program by hand (every value in its own
 * persistent slot), runs it on ref and on cpu from identical random inputs,
 * and compares every slot afterwards (outputs and state updated in place).
 * Shapes are awkward on purpose: odd sizes, 1x1 and 11x11 kernels, stride 4,
 * padding > 1, channel counts that are not multiples of 8, K dimensions
 * larger than one cache block.
 *
 * Tolerance: normwise relative, max|cpu - ref| <= tol * max(max|ref|, 1e-3)
 * per tensor, tol = 1e-4 for conv/linear/batch norm/loss (fp32 sums in a
 * different order, FMA contraction), 1e-6 for ops that do no arithmetic
 * reordering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codegen/backend.h"
#include "cpu_targets.h"
#include "base/pool.h"

/* The --cpu spec the cases run at: main runs them once per vector width
 * this host can execute. */
static const char *cpu_spec;

typedef struct {
    Program p;
    int op_node;
} Case;

static uint64_t rng = 12345;
static float frand(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rng >> 40) / 16777216.0 * 2.0 - 1.0);
}

static IrType ty4(int batched, int64_t a, int64_t b, int64_t c, int64_t d) {
    int64_t dd[4] = {a, b, c, d};
    int rank = d ? 4 : c ? 3 : b ? 2 : 1;
    return ir_type_make(IR_F32, batched, rank, dd);
}

static int leaf(IrGraph *g, IrType t) {
    int n = ir_node_new(g, IR_OP_PARAM, NULL, 0, 1, "leaf", (IrLoc){0, 0});
    int v = ir_out(g, n, 0);
    *ir_type(g, v) = t;
    return v;
}

static void case_init(Case *c, int64_t batch) {
    memset(c, 0, sizeof *c);
    ir_init(&c->p.g);
    c->p.g.mode = IR_TRAIN;
    c->p.g.batch = batch;
    c->p.batch = batch;
    c->p.elem_bytes = 4;
}

/* Adds the op node (outputs typed by the caller through out_types) and plans
 * every value into its own slot. */
static int case_op(Case *c, IrOp op, const int *in, int nin, const IrType *out_types, int nout, IrAttr attr) {
    IrGraph *g = &c->p.g;
    int n = ir_node_new(g, op, in, nin, nout, "op", (IrLoc){0, 0});
    g->nodes[n].attr = attr;
    for (int k = 0; k < nout; k++) *ir_type(g, ir_out(g, n, k)) = out_types[k];
    c->op_node = n;
    Program *p = &c->p;
    p->nkernels = 1;
    p->kernels = calloc(1, sizeof(Kernel));
    p->kernels[0].nnodes = 1;
    p->kernels[0].nodes = malloc(sizeof(int));
    p->kernels[0].nodes[0] = n;
    p->buf = calloc((size_t)g->nvalues, sizeof(BufPlan));
    p->slots = calloc((size_t)g->nvalues, sizeof(Slot));
    p->nslots = g->nvalues;
    for (int v = 0; v < g->nvalues; v++) {
        p->buf[v].kind = BUF_PERSIST;
        p->buf[v].slot = v;
        p->buf[v].bytes = ir_numel(ir_type(g, v), p->batch) * 4;
        p->slots[v].value = v;
        p->slots[v].bytes = p->buf[v].bytes;
        p->slots[v].kind = SLOT_PARAM;
    }
    return n;
}

static void case_free(Case *c) {
    free(c->p.kernels[0].nodes);
    free(c->p.kernels);
    free(c->p.buf);
    free(c->p.slots);
    ir_free(&c->p.g);
}

typedef void (*Fill)(float *x, int64_t n, int value);

/* Runs c on ref and cpu and compares.  labels_value: value id holding int32
 * labels in [0, classes), or -1.  positive: value id to fill with positive
 * numbers (running variance), or -1. */
/* When set, fills every value's buffer of the next case after the random
 * fill (inputs of a chosen range); one case only. */
static void (*fill_hook)(float *f, int64_t n);

static void run_case(Case *c, double tol, int labels_value, int classes, int positive, int threads) {
    Program *p = &c->p;
    int nv = p->g.nvalues;
    void (*hook)(float *, int64_t) = fill_hook;
    fill_hook = NULL;
    void **a = calloc((size_t)nv, sizeof(void *)), **b = calloc((size_t)nv, sizeof(void *));
    for (int v = 0; v < nv; v++) {
        size_t bytes = (size_t)p->buf[v].bytes + 64;
        a[v] = aligned_alloc(64, (bytes + 63) / 64 * 64);
        b[v] = aligned_alloc(64, (bytes + 63) / 64 * 64);
        int64_t n = p->buf[v].bytes / 4;
        float *f = a[v];
        for (int64_t i = 0; i < n; i++) {
            f[i] = frand();
            if (v == positive) f[i] = fabsf(f[i]) + 0.5f;
            if (v == labels_value) ((int32_t *)f)[i] = (int32_t)((rng >> 33) % (uint64_t)classes), frand();
        }
        if (hook) hook(f, n);
        memcpy(b[v], a[v], (size_t)p->buf[v].bytes);
        memset((char *)b[v] + p->buf[v].bytes, 0xa5, 64);   /* no kernel may write past its buffer */
    }
    Diag d;
    diag_init(&d, "test", NULL, 0, stderr);
    void *sa = NULL, *sb = NULL;
    BackendOptions o = {threads, 3, 0, cpu_spec, 0, 0};
    assert_int_equal(backend_ref.compile(p, &o, &sa, &d), 0);
    assert_int_equal(backend_cpu.compile(p, &o, &sb, &d), 0);
    ThreadPool *pool = threads == 1 ? NULL : rt_pool_new(threads);
    RunCtx ra = {NULL, a, 0.05, 7, 3, NULL, 0}, rb = {NULL, b, 0.05, 7, 3, pool, 0};
    backend_ref.run(sa, p, &ra);
    backend_cpu.run(sb, p, &rb);
    const IrNode *n = ir_node(&p->g, c->op_node);
    int bad = 0;
    for (int v = 0; v < nv; v++) {
        if (v == labels_value) continue;
        int64_t cnt = p->buf[v].bytes / 4;
        const float *x = a[v], *y = b[v];
        double mx = 1e-3, err = 0;
        int64_t at = 0;
        for (int64_t i = 0; i < cnt; i++) mx = fmax(mx, fabs(x[i]));
        for (int64_t i = 0; i < cnt; i++) {
            double e = x[i] == y[i] ? 0 : fabs((double)x[i] - (double)y[i]);   /* equal infinities: 0 */
            if (!(e <= err)) { err = e; at = i; }
        }
        if (!(err <= tol * mx)) {
            fprintf(stderr, "%s: value %d (%lld elements): max error %g at %lld (ref %g, cpu %g), scale %g, tol %g\n",
                    ir_info(n->op)->name, v, (long long)cnt, err, (long long)at, x[at], y[at], mx, tol);
            bad = 1;
        }
    }
    for (int v = 0; v < nv; v++) {
        const unsigned char *tail = (const unsigned char *)b[v] + p->buf[v].bytes;
        for (int i = 0; i < 64; i++)
            if (tail[i] != 0xa5) {
                fprintf(stderr, "%s: value %d written past its end (byte %d)\n", ir_info(n->op)->name, v, i);
                bad = 1;
                break;
            }
    }
    backend_cpu.free(sb);
    backend_ref.free(sa);
    rt_pool_free(pool);
    for (int v = 0; v < nv; v++) {
        free(a[v]);
        free(b[v]);
    }
    free(a);
    free(b);
    assert_false(bad);
}

/* ---- conv -------------------------------------------------------------------- */

typedef struct { int64_t n, c, h, w, k, r, s, sh, sw, ph, pw; int bias; } ConvCase;

static const ConvCase conv_cases[] = {
    {3, 5, 13, 11, 7, 3, 3, 1, 1, 1, 1, 1},      /* odd everything */
    {2, 3, 23, 23, 10, 11, 11, 4, 4, 2, 2, 1},   /* AlexNet-like 11x11 stride 4 */
    {2, 19, 7, 9, 13, 1, 1, 1, 1, 0, 0, 0},      /* 1x1: direct GEMM */
    {2, 4, 12, 10, 9, 5, 5, 2, 2, 3, 3, 1},      /* padding > 1, stride 2 */
    {2, 1, 20, 20, 17, 7, 7, 2, 2, 3, 3, 0},     /* one input channel */
    {2, 37, 6, 6, 70, 3, 3, 1, 1, 1, 1, 1},      /* CRS 333 > KC: two k blocks */
    {1, 16, 18, 18, 130, 3, 3, 1, 1, 1, 1, 0},   /* K 130 > MC */
    {2, 6, 9, 14, 5, 3, 2, 2, 1, 0, 1, 1},       /* non-square kernel and stride */
    {5, 3, 40, 40, 8, 3, 3, 1, 1, 1, 1, 1},      /* PQ 1600 > NC */
    {4, 20, 3, 3, 24, 3, 3, 1, 1, 1, 1, 1},      /* PQ 9 < NR: tiles span images */
    {3, 8, 5, 5, 12, 1, 1, 1, 1, 0, 0, 1},       /* 1x1 with PQ 25: panels span images */
    {2, 5, 9, 9, 6, 5, 5, 1, 1, 2, 2, 0},        /* 5x5 stride 1 pad 2: bwd data as a conv */
    {3, 5, 9, 8, 6, 3, 3, 1, 1, 0, 0, 1},        /* stride 1 unpadded: bwd data padding 2 */
    {3, 7, 6, 6, 9, 3, 3, 1, 1, 2, 2, 1},        /* padding 2 = R-1: bwd data unpadded */
    {3, 300, 4, 4, 7, 3, 3, 1, 1, 1, 1, 1},      /* long reductions: CRS 2700, batch pixels 48 */
    {2, 3, 6, 6, 4, 1, 1, 2, 2, 0, 0, 0},        /* 1x1 stride 2 */
    {2, 3, 20, 37, 5, 3, 5, 1, 1, 0, 2, 1},      /* wide stride 1: fwd and bwd data over the padded width */
    {3, 4, 17, 18, 20, 3, 3, 1, 1, 1, 1, 0},     /* padded-width rows of 340, panels across images */
    {3, 1, 23, 21, 19, 7, 7, 2, 2, 3, 3, 1},     /* first layer: one channel, 7x7 stride 2 */
    {2, 1, 31, 29, 10, 11, 5, 4, 3, 2, 1, 0},    /* one channel, unequal strides */
    {6, 1, 30, 30, 8, 5, 5, 1, 1, 2, 2, 1},      /* weight gradient of a few tiles, reduction split in parts */
    {4, 1, 64, 64, 12, 5, 5, 2, 2, 2, 2, 0},     /* the same at stride 2 */
    {3, 6, 12, 12, 16, 5, 5, 1, 1, 0, 0, 1},     /* LeNet's conv1: bwd data by col2im (wide padding) */
    {2, 3, 11, 10, 5, 7, 5, 1, 1, 1, 0, 0},      /* the same, unequal kernel sides */
    {1, 512, 8, 8, 264, 3, 3, 1, 1, 1, 1, 1},    /* padded width, A (264 x 4608) too big to pack whole */
    {3, 5, 7, 9, 6, 3, 3, 1, 1, 3, 3, 1},        /* padding 3 > R-1: the grid wider than W + pw */
    {2, 4, 10, 10, 24, 3, 3, 1, 1, 1, 1, 1},     /* ResNet-like 3x3 same size, rows sharing a padding column */
    {2, 5, 13, 12, 48, 3, 3, 1, 1, 1, 1, 1},     /* transposed padded width: 169-pixel grids, panels across images */
    {3, 6, 9, 11, 46, 3, 3, 1, 1, 1, 1, 1},      /* the same, 46 channels: 8 x 8 transposes and a scalar rest */
    {3, 10, 7, 8, 40, 1, 1, 1, 1, 0, 0, 1},      /* 1x1 transposed: 56 pixels, panels across images */
    {10, 6, 6, 6, 20, 1, 1, 1, 1, 0, 0, 1},      /* 1x1 weight gradient, small images: k blocks across images */
    {2, 5, 20, 17, 37, 1, 1, 1, 1, 0, 0, 1},     /* 1x1 weight gradient, 340 pixels: k blocks of 176 + 164, dy transposed 8 x 8 and 4 gathered */
    /* Winograd F(2x2, 3x3) (3x3 stride 1, 8+ channels each side, outputs 4x4 or more) */
    {3, 9, 13, 11, 10, 3, 3, 1, 1, 1, 1, 1},     /* odd output sides: tiles half outside y */
    {2, 8, 10, 9, 12, 3, 3, 1, 1, 0, 0, 1},      /* unpadded (bwd data: padding 2), odd width */
    {2, 12, 7, 8, 9, 3, 3, 1, 1, 2, 2, 0},       /* padding 2 (bwd data: unpadded) */
    {5, 300, 9, 9, 20, 3, 3, 1, 1, 1, 1, 1},     /* 300 channels: two reduction blocks; 125 tiles, a partial chunk */
    {1, 8, 34, 34, 8, 3, 3, 1, 1, 1, 1, 1},      /* tile rows of 17: whole vectors of eight tiles and a rest */
    {2, 16, 6, 6, 250, 3, 3, 1, 1, 1, 1, 0},     /* 250 filters: three row blocks of U, the last partial */
    /* Winograd F(3x3, 3x3) (3x3 stride 1, output sides multiples of 3, 6 or more) */
    {2, 9, 24, 24, 11, 3, 3, 1, 1, 1, 1, 1},     /* tile rows of 8: whole vectors of tiles, odd channels */
    {1, 20, 48, 48, 13, 3, 3, 1, 1, 1, 1, 0},    /* tile rows of 16 */
    {3, 16, 12, 12, 24, 3, 3, 1, 1, 1, 1, 1},    /* tile rows of 4: vectors across rows and images */
    {2, 40, 6, 6, 33, 3, 3, 1, 1, 1, 1, 1},      /* 2x2 tiles an image */
    {2, 10, 14, 14, 9, 3, 3, 1, 1, 0, 0, 1},     /* unpadded 12x12 out (bwd data: padding 2, 14x14: F(2x2)) */
    /* Winograd F(4x4, 3x3) (output sides multiples of 4, not of 3) */
    {2, 12, 16, 16, 17, 3, 3, 1, 1, 1, 1, 1},    /* tile rows of 4 */
    {1, 8, 20, 20, 8, 3, 3, 1, 1, 1, 1, 0},      /* tile rows of 5 */
    {3, 24, 8, 8, 20, 3, 3, 1, 1, 1, 1, 1},      /* 2x2 tiles an image, batch 3 */
    /* Winograd F(2x2, 5x5) (5x5 stride 1, even output sides, 16+ channels each side) */
    {2, 64, 12, 12, 70, 5, 5, 1, 1, 2, 2, 1},    /* padding 2: both gradients (the forward stays direct) */
    {2, 64, 10, 14, 64, 5, 5, 1, 1, 2, 2, 0},    /* unequal sides, tile rows of 7 */
    {2, 64, 14, 14, 65, 5, 5, 1, 1, 1, 1, 1},    /* padding 1 (data gradient by col2im) */
    {1, 300, 8, 8, 130, 5, 5, 1, 1, 2, 2, 1},    /* 300 channels: the data gradient's U in three row blocks */
    {2, 96, 26, 26, 256, 5, 5, 1, 1, 2, 2, 1},   /* AlexNet's conv2 */
    {2, 16, 12, 12, 32, 5, 5, 1, 1, 2, 2, 1},    /* GoogLeNet's first 5x5: 16 channels in, the fewest taken */
    {3, 24, 6, 6, 64, 5, 5, 1, 1, 2, 2, 0},      /* its 6x6 ones: 3x3 tiles an image */
    {2, 15, 8, 8, 40, 5, 5, 1, 1, 2, 2, 1},      /* 15 channels in: neither gradient by F(2, 5) */
    /* small maps (16 pixels or fewer in and out, 16+ channels): a GEMM per (output, input) pixel pair */
    {3, 32, 3, 3, 48, 5, 5, 1, 1, 2, 2, 1},      /* 5x5 on 3x3 (GoogLeNet's last stage): every pair */
    {2, 17, 4, 3, 19, 3, 3, 1, 1, 1, 1, 0},      /* 4x3 maps, odd channels */
    {5, 16, 4, 4, 16, 3, 3, 1, 1, 0, 0, 1},      /* unpadded: 2x2 out (bwd data: padding 2, 4x4 out) */
    /* direct by taps (4 input channels or fewer, 32+ outputs a row) */
    {3, 1, 64, 64, 64, 7, 7, 2, 2, 3, 3, 0},     /* ResNet-18's first conv at 64x64 */
    {2, 2, 70, 66, 13, 7, 5, 2, 2, 3, 1, 1},     /* 13 filters (6 + 6 + 1), rows of 33 outputs (two strips overlap) */
    {2, 1, 139, 139, 10, 11, 11, 4, 4, 1, 1, 1}, /* AlexNet's 11x11 at stride 4: 33x33 out, one channel a block */
    {2, 1, 70, 66, 16, 3, 3, 1, 1, 1, 1, 1},     /* VGG's first conv: 3x3 at stride 1 */
    {3, 3, 40, 45, 7, 5, 5, 1, 1, 0, 2, 0},      /* three channels, stride 1, unpadded rows: 41 outputs */
};

static int64_t conv_out(int64_t in, int64_t k, int64_t s, int64_t p) { return (in + 2 * p - k) / s + 1; }

static IrAttr conv_attr(const ConvCase *cc) {
    IrAttr at;
    memset(&at, 0, sizeof at);
    at.conv.out_c = (int)cc->k;
    at.conv.in_c = (int)cc->c;
    at.conv.kh = (int)cc->r;
    at.conv.kw = (int)cc->s;
    at.conv.sh = (int)cc->sh;
    at.conv.sw = (int)cc->sw;
    at.conv.ph = (int)cc->ph;
    at.conv.pw = (int)cc->pw;
    at.conv.bias = cc->bias;
    return at;
}

/* The conv of cc alone: forward (which 0), data gradient (1) or weight
 * gradient (2), with a bias (gradient) when cc->bias. */
static void conv_case_init(Case *c, const ConvCase *cc, int which) {
    case_init(c, cc->n);
    int64_t P = conv_out(cc->h, cc->r, cc->sh, cc->ph), Q = conv_out(cc->w, cc->s, cc->sw, cc->pw);
    IrType tx = ty4(1, cc->n, cc->c, cc->h, cc->w), tw = ty4(0, cc->k, cc->c, cc->r, cc->s);
    IrType ty = ty4(1, cc->n, cc->k, P, Q), tb = ty4(0, cc->k, 0, 0, 0);
    IrAttr at = conv_attr(cc);
    if (which == 0) {
        int in[3] = {leaf(&c->p.g, tx), leaf(&c->p.g, tw), leaf(&c->p.g, tb)};
        case_op(c, IR_OP_CONV2D, in, cc->bias ? 3 : 2, &ty, 1, at);
    } else if (which == 1) {
        int in[2] = {leaf(&c->p.g, ty), leaf(&c->p.g, tw)};
        case_op(c, IR_OP_CONV2D_BWD_DATA, in, 2, &tx, 1, at);
    } else {
        int in[2] = {leaf(&c->p.g, ty), leaf(&c->p.g, tx)};
        IrType outs[2] = {tw, tb};
        case_op(c, IR_OP_CONV2D_BWD_WEIGHT, in, 2, outs, cc->bias ? 2 : 1, at);
    }
}

/* Case c's forward conv or linear node and a relu after it as one conv_relu
 * kernel: the node's output kept in registers (BUF_INNER: read by nothing
 * else), so the cpu backend applies the relu as the product's epilogue and
 * writes only the relu's output, and ref gives it memory of its own. */
static void relu_after(Case *c) {
    Program *p = &c->p;
    IrGraph *g = &p->g;
    int y = ir_out(g, c->op_node, 0);
    int r = ir_node_new(g, IR_OP_RELU, &y, 1, 1, "relu", (IrLoc){0, 0});
    *ir_type(g, ir_out(g, r, 0)) = *ir_type(g, y);
    int nv = g->nvalues;
    p->buf = realloc(p->buf, sizeof(BufPlan) * (size_t)nv);
    p->slots = realloc(p->slots, sizeof(Slot) * (size_t)nv);
    int v = ir_out(g, r, 0);
    p->buf[v] = p->buf[y];
    p->buf[v].slot = v;
    p->slots[v] = p->slots[y];
    p->slots[v].value = v;
    p->nslots = nv;
    p->buf[y].kind = BUF_INNER;   /* as the memory plan marks it: read by the relu alone */
    p->kernels[0].nnodes = 2;
    p->kernels[0].nodes = realloc(p->kernels[0].nodes, 2 * sizeof(int));
    p->kernels[0].nodes[1] = r;
    p->kernels[0].pattern = FUSE_CONV_RELU;
}

static void conv_case(const ConvCase *cc, int which, int threads) {
    Case c;
    conv_case_init(&c, cc, which == 3 ? 0 : which);
    if (which == 3) relu_after(&c);
    run_case(&c, 1e-4, -1, 0, -1, threads);
    case_free(&c);
}

static void test_conv(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof conv_cases / sizeof conv_cases[0]; i++)
        for (int which = 0; which < 4; which++) {
            fprintf(stderr, "conv case %zu, %s\n", i,
                    which == 0 ? "fwd" : which == 1 ? "bwd_data" : which == 2 ? "bwd_weight" : "fwd + relu epilogue");
            conv_case(&conv_cases[i], which, getenv("NETC_TEST_THREADS") ? atoi(getenv("NETC_TEST_THREADS")) : i % 2 ? 2 : 1);
        }
}

/* cpu results of c for `threads` threads from inputs drawn from seed: every
 * slot, concatenated. */
static float *cpu_run_all(Case *c, int threads, uint64_t seed, int64_t *total) {
    Program *p = &c->p;
    int nv = p->g.nvalues;
    void **b = calloc((size_t)nv, sizeof(void *));
    rng = seed;
    int64_t tot = 0;
    for (int v = 0; v < nv; v++) {
        size_t bytes = (size_t)p->buf[v].bytes + 64;
        b[v] = aligned_alloc(64, (bytes + 63) / 64 * 64);
        for (int64_t i = 0; i < p->buf[v].bytes / 4; i++) ((float *)b[v])[i] = frand();
        tot += p->buf[v].bytes / 4;
    }
    Diag d;
    diag_init(&d, "test", NULL, 0, stderr);
    void *sb = NULL;
    BackendOptions o = {threads, 3, 0, cpu_spec, 0, 0};
    assert_int_equal(backend_cpu.compile(p, &o, &sb, &d), 0);
    ThreadPool *pool = threads == 1 ? NULL : rt_pool_new(threads);
    RunCtx rb = {NULL, b, 0.05, 7, 3, pool, 0};
    backend_cpu.run(sb, p, &rb);
    float *all = malloc((size_t)tot * sizeof *all);
    int64_t at = 0;
    for (int v = 0; v < nv; v++) {
        memcpy(all + at, b[v], (size_t)p->buf[v].bytes);
        at += p->buf[v].bytes / 4;
        free(b[v]);
    }
    backend_cpu.free(sb);
    rt_pool_free(pool);
    free(b);
    *total = tot;
    return all;
}

/* Conv results are bit-identical run to run and for 1, 2 and 3 threads
 * (--resume must continue bit-exactly). */
static void test_conv_deterministic(void **state) {
    (void)state;
    static const ConvCase cases[] = {
        {5, 6, 7, 7, 20, 3, 3, 1, 1, 1, 1, 1},
        {3, 300, 4, 4, 7, 3, 3, 1, 1, 1, 1, 1},
        {3, 4, 11, 9, 5, 3, 3, 2, 2, 1, 1, 1},
        {3, 4, 17, 18, 20, 3, 3, 1, 1, 1, 1, 1},
        {3, 1, 23, 21, 19, 7, 7, 2, 2, 3, 3, 1},
        {4, 12, 14, 13, 20, 3, 3, 1, 1, 1, 1, 1},   /* Winograd, chunks of tiles across images */
        {2, 64, 12, 10, 72, 5, 5, 1, 1, 2, 2, 1},   /* Winograd F(2x2, 5x5) */
        {6, 1, 30, 30, 8, 5, 5, 1, 1, 2, 2, 1},
        {4, 1, 64, 64, 12, 5, 5, 2, 2, 2, 2, 0},
        {3, 32, 3, 3, 40, 3, 3, 1, 1, 1, 1, 1},     /* small maps */
        {20, 1, 64, 66, 13, 7, 7, 2, 2, 3, 3, 1},   /* direct by taps: 16 chunks of the batch, 13 = 6+6+1 = 3*4+1 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int which = 0; which < 3; which++) {
            Case c;
            conv_case_init(&c, &cases[i], which);
            int64_t n0, n1;
            float *r0 = cpu_run_all(&c, 1, 99, &n0);
            for (int t = 1; t <= 3; t++) {
                float *r1 = cpu_run_all(&c, t, 99, &n1);
                assert_int_equal(n0, n1);
                assert_memory_equal(r0, r1, (size_t)n0 * sizeof *r0);
                free(r1);
            }
            free(r0);
            case_free(&c);
        }
}

/* ---- linear ------------------------------------------------------------------ */

static void linear_case(int64_t n, int64_t in, int64_t out, int bias, int which, int threads) {
    Case c;
    case_init(&c, n);
    IrType tx = ty4(1, n, in, 0, 0), tw = ty4(0, out, in, 0, 0), ty = ty4(1, n, out, 0, 0), tb = ty4(0, out, 0, 0, 0);
    IrAttr at;
    memset(&at, 0, sizeof at);
    at.linear.out = (int)out;
    at.linear.in = (int)in;
    at.linear.bias = bias;
    if (which == 0 || which == 3) {
        int v[3] = {leaf(&c.p.g, tx), leaf(&c.p.g, tw), leaf(&c.p.g, tb)};
        case_op(&c, IR_OP_LINEAR, v, bias ? 3 : 2, &ty, 1, at);
        if (which == 3) relu_after(&c);
    } else if (which == 1) {
        int v[2] = {leaf(&c.p.g, ty), leaf(&c.p.g, tw)};
        case_op(&c, IR_OP_LINEAR_BWD_DATA, v, 2, &tx, 1, at);
    } else {
        int v[2] = {leaf(&c.p.g, ty), leaf(&c.p.g, tx)};
        IrType outs[2] = {tw, tb};
        case_op(&c, IR_OP_LINEAR_BWD_WEIGHT, v, 2, outs, bias ? 2 : 1, at);
    }
    run_case(&c, 1e-4, -1, 0, -1, threads);
    case_free(&c);
}

static void test_linear(void **state) {
    (void)state;
    for (int which = 0; which < 4; which++) {
        linear_case(5, 37, 29, 1, which, 1);
        linear_case(130, 300, 70, 1, which, 2);
        linear_case(3, 1000, 10, 0, which, 2);
        linear_case(17, 8, 1, 1, which, 1);
    }
}

/* ---- everything else ----------------------------------------------------------- */

static void unary(IrOp op, IrType t, IrType to, IrAttr at, double tol) {
    Case c;
    case_init(&c, t.d[0]);
    int x = leaf(&c.p.g, t);
    case_op(&c, op, &x, 1, &to, 1, at);
    run_case(&c, tol, -1, 0, -1, 2);
    case_free(&c);
}

static void binary(IrOp op, IrType t0, IrType t1, IrType to, IrAttr at, double tol) {
    Case c;
    case_init(&c, t0.d[0]);
    int x[2] = {leaf(&c.p.g, t0), leaf(&c.p.g, t1)};
    case_op(&c, op, x, 2, &to, 1, at);
    run_case(&c, tol, -1, 0, -1, 2);
    case_free(&c);
}

/* -100..100 and both infinities: sigmoid's exp beyond float range */
static void fill_wide(float *f, int64_t n) {
    for (int64_t i = 0; i < n; i++) f[i] = -100.0f + 200.0f * (float)i / (float)(n > 1 ? n - 1 : 1);
    if (n > 2) f[0] = -INFINITY, f[n - 1] = INFINITY;
}

static void test_elementwise(void **state) {
    (void)state;
    IrAttr none;
    memset(&none, 0, sizeof none);
    IrType small = ty4(1, 3, 5, 7, 9), big = ty4(1, 4, 33, 17, 19);
    for (int i = 0; i < 2; i++) {
        IrType t = i ? big : small;
        unary(IR_OP_RELU, t, t, none, 0);
        unary(IR_OP_SIGMOID, t, t, none, 1e-6);
        binary(IR_OP_ADD, t, t, t, none, 0);
        binary(IR_OP_RELU_BWD, t, t, t, none, 0);
        binary(IR_OP_SIGMOID_BWD, t, t, t, none, 1e-6);
        binary(IR_OP_DROPOUT_BWD, t, t, t, none, 0);
    }
    fill_hook = fill_wide;
    unary(IR_OP_SIGMOID, ty4(1, 2, 3, 41, 43), ty4(1, 2, 3, 41, 43), none, 1e-6);
    /* accum of three */
    Case c;
    case_init(&c, 3);
    int x[3] = {leaf(&c.p.g, big), leaf(&c.p.g, big), leaf(&c.p.g, big)};
    case_op(&c, IR_OP_ACCUM, x, 3, &big, 1, none);
    run_case(&c, 0, -1, 0, -1, 2);
    case_free(&c);
    /* sgd updates its first input */
    case_init(&c, 1);
    IrType pw = ty4(0, 70001, 0, 0, 0);
    int s[2] = {leaf(&c.p.g, pw), leaf(&c.p.g, pw)};
    case_op(&c, IR_OP_SGD, s, 2, NULL, 0, none);
    run_case(&c, 1e-6, -1, 0, -1, 2);
    case_free(&c);
    /* flatten, not aliased: a copy */
    unary(IR_OP_FLATTEN, small, ty4(1, 3, 5 * 7 * 9, 0, 0), none, 0);
}

static void test_dropout(void **state) {
    (void)state;
    float ps[3] = {0.5f, 0.0f, 0.3f};
    for (int i = 0; i < 3; i++) {
        Case c;
        case_init(&c, 6);
        IrType t = ty4(1, 6, 1001, 0, 0);
        IrAttr at;
        memset(&at, 0, sizeof at);
        at.dropout.p = ps[i];
        at.dropout.mode = IR_TRAIN;
        at.dropout.index = i + 1;
        int x = leaf(&c.p.g, t);
        IrType outs[2] = {t, t};
        case_op(&c, IR_OP_DROPOUT, &x, 1, outs, 2, at);
        run_case(&c, 1e-6, -1, 0, -1, 2);
        case_free(&c);
    }
}

static void test_pool(void **state) {
    (void)state;
    struct { int64_t n, c, h, w, kh, kw, sh, sw, ph, pw; } pc[] = {
        {2, 3, 13, 11, 3, 3, 2, 2, 1, 1}, {3, 5, 8, 8, 2, 2, 2, 2, 0, 0}, {1, 4, 9, 10, 3, 2, 1, 2, 1, 0},
        {2, 7, 27, 27, 3, 3, 2, 2, 0, 0}, {2, 3, 6, 7, 5, 5, 3, 3, 2, 2}, {2, 3, 12, 29, 3, 3, 1, 1, 1, 1},
        {1, 2, 7, 20, 2, 4, 2, 1, 0, 1},
        /* rows wide enough for the vectorised max pool: strides 2, 3, 4, and
         * rows whose last vector ends at the row's (and the tensor's) end */
        {2, 3, 17, 48, 3, 3, 2, 2, 1, 1}, {1, 2, 9, 53, 3, 3, 3, 3, 0, 0}, {1, 3, 8, 70, 2, 4, 2, 4, 0, 1},
        {2, 2, 6, 34, 2, 2, 2, 2, 0, 0}, {1, 2, 5, 33, 3, 3, 2, 2, 0, 0},
        /* the same at 16 lanes (rows of 48 outputs or more, or planes over
         * 512: smaller ones take the small-plane path there): ResNet-18's
         * and GoogLeNet's stem pool, a VGG pool, a stride-1 one */
        {1, 2, 48, 48, 3, 3, 2, 2, 1, 1}, {1, 3, 20, 100, 2, 2, 2, 2, 0, 0}, {1, 2, 9, 64, 3, 3, 1, 1, 1, 1},
        /* border rows vectorised with their window rows known (two above and
         * two below), and past four border rows all slow */
        {1, 2, 9, 40, 5, 5, 1, 1, 2, 2}, {1, 2, 12, 40, 7, 7, 1, 1, 3, 3}, {2, 3, 10, 26, 3, 3, 2, 2, 1, 1},
        /* stride 9: wide loads would pass 64 floats, so one window at a time */
        {1, 2, 4, 270, 2, 9, 1, 9, 0, 0},
        /* small planes, stride 1, output the input's size (GoogLeNet's
         * branch pools): masked loads at a fixed distance, not gathers */
        {2, 5, 6, 6, 3, 3, 1, 1, 1, 1}, {1, 3, 12, 12, 3, 3, 1, 1, 1, 1}, {3, 4, 3, 3, 3, 3, 1, 1, 1, 1},
        {1, 2, 7, 9, 5, 5, 1, 1, 2, 2},
        /* planes smaller than a vector (GoogLeNet's last blocks at small
         * resolutions): 1x1 and 2x2 outputs, many planes per thread */
        {4, 5, 1, 1, 3, 3, 2, 2, 1, 1}, {3, 6, 2, 2, 3, 3, 1, 1, 1, 1}, {2, 9, 3, 3, 3, 3, 2, 2, 1, 1}};
    for (size_t i = 0; i < sizeof pc / sizeof pc[0]; i++) {
        IrAttr at;
        memset(&at, 0, sizeof at);
        at.pool.kh = (int)pc[i].kh;
        at.pool.kw = (int)pc[i].kw;
        at.pool.sh = (int)pc[i].sh;
        at.pool.sw = (int)pc[i].sw;
        at.pool.ph = (int)pc[i].ph;
        at.pool.pw = (int)pc[i].pw;
        int64_t P = conv_out(pc[i].h, pc[i].kh, pc[i].sh, pc[i].ph), Q = conv_out(pc[i].w, pc[i].kw, pc[i].sw, pc[i].pw);
        IrType tx = ty4(1, pc[i].n, pc[i].c, pc[i].h, pc[i].w), ty = ty4(1, pc[i].n, pc[i].c, P, Q);
        unary(IR_OP_MAXPOOL, tx, ty, at, 0);
        unary(IR_OP_AVGPOOL, tx, ty, at, 1e-6);
        /* exact: both add dy at the argmaxes in output order (a sum in
         * another order is off in the last bits, and fails) */
        binary(IR_OP_MAXPOOL_BWD, ty, tx, tx, at, 0);
        unary(IR_OP_AVGPOOL_BWD, ty, tx, at, 1e-6);
    }
    IrAttr none;
    memset(&none, 0, sizeof none);
    IrType tx = ty4(1, 3, 11, 7, 5), ty = ty4(1, 3, 11, 1, 1);
    unary(IR_OP_GAVGPOOL, tx, ty, none, 1e-6);
    unary(IR_OP_GMAXPOOL, tx, ty, none, 0);
    unary(IR_OP_GAVGPOOL_BWD, ty, tx, none, 1e-6);
    binary(IR_OP_GMAXPOOL_BWD, ty, tx, tx, none, 0);
}

static void test_batchnorm(void **state) {
    (void)state;
    IrType shapes[3] = {ty4(1, 3, 5, 7, 9), ty4(1, 4, 37, 13, 13), ty4(1, 6, 11, 0, 0)};
    for (int i = 0; i < 3; i++) {
        IrType t = shapes[i], tc = ty4(0, t.d[1], 0, 0, 0);
        for (int mode = 0; mode < 2; mode++) {
            Case c;
            case_init(&c, t.d[0]);
            IrAttr at;
            memset(&at, 0, sizeof at);
            at.bn.mode = mode ? IR_EVAL : IR_TRAIN;
            at.bn.momentum = 0.1f;
            at.bn.eps = 1e-5f;
            int in[5] = {leaf(&c.p.g, t), leaf(&c.p.g, tc), leaf(&c.p.g, tc), leaf(&c.p.g, tc), leaf(&c.p.g, tc)};
            IrType outs[3] = {t, tc, tc};
            case_op(&c, IR_OP_BATCHNORM, in, 5, outs, mode ? 1 : 3, at);
            run_case(&c, 1e-4, -1, 0, in[4], 2);
            case_free(&c);
        }
        Case c;
        case_init(&c, t.d[0]);
        IrAttr at;
        memset(&at, 0, sizeof at);
        int in[5] = {leaf(&c.p.g, t), leaf(&c.p.g, t), leaf(&c.p.g, tc), leaf(&c.p.g, tc), leaf(&c.p.g, tc)};
        IrType outs[3] = {t, tc, tc};
        case_op(&c, IR_OP_BATCHNORM_BWD, in, 5, outs, 3, at);
        run_case(&c, 1e-4, -1, 0, in[4], 2);
        case_free(&c);
    }
}

static void test_loss(void **state) {
    (void)state;
    for (int bwd = 0; bwd < 2; bwd++) {
        Case c;
        case_init(&c, 13);
        IrType tl = ty4(1, 13, 10, 0, 0), tlab = ty4(1, 13, 0, 0, 0);
        tlab.dtype = IR_I32;
        int in[2] = {leaf(&c.p.g, tl), leaf(&c.p.g, tlab)};
        IrAttr none;
        memset(&none, 0, sizeof none);
        IrType out = bwd ? tl : ty4(0, 1, 0, 0, 0);
        case_op(&c, bwd ? IR_OP_SOFTMAX_XENT_BWD : IR_OP_SOFTMAX_XENT, in, 2, &out, 1, none);
        run_case(&c, 1e-5, in[1], 10, -1, 1);
        case_free(&c);
    }
}

static void test_concat_slice(void **state) {
    (void)state;
    IrAttr none;
    memset(&none, 0, sizeof none);
    Case c;
    case_init(&c, 3);
    int in[3] = {leaf(&c.p.g, ty4(1, 3, 5, 6, 7)), leaf(&c.p.g, ty4(1, 3, 1, 6, 7)), leaf(&c.p.g, ty4(1, 3, 9, 6, 7))};
    IrType to = ty4(1, 3, 15, 6, 7);
    case_op(&c, IR_OP_CONCAT, in, 3, &to, 1, none);
    run_case(&c, 0, -1, 0, -1, 2);
    case_free(&c);
    IrAttr at = none;
    at.slice.c0 = 5;
    at.slice.c = 3;
    unary(IR_OP_SLICE, ty4(1, 3, 15, 6, 7), ty4(1, 3, 3, 6, 7), at, 0);
}

/* The pool: every index of every job run exactly once, back to back (the
 * workers spinning between jobs) and after pauses longer than the spin
 * (the workers asleep), for 2, 3 and 4 threads. */
typedef struct { int *hits; int64_t job; } PoolJob;

static void pool_job(void *ctx, int64_t b, int64_t e) {
    PoolJob *j = ctx;
    for (int64_t i = b; i < e; i++) j->hits[i] += (int)j->job;
}

static void test_pool_jobs(void **state) {
    (void)state;
    for (int t = 2; t <= 4; t++) {
        ThreadPool *pool = rt_pool_new(t);
        int hits[64];
        for (int64_t job = 1; job <= 3000; job++) {
            int64_t n = 1 + job % 61;
            memset(hits, 0, sizeof hits);
            PoolJob j = {hits, job};
            rt_parallel_for(pool, n, pool_job, &j);
            for (int64_t i = 0; i < 64; i++) assert_int_equal(hits[i], i < n ? (int)job : 0);
            if (job % 1000 == 0) {
                struct timespec ts = {0, 20 * 1000 * 1000};
                nanosleep(&ts, NULL);
            }
        }
        rt_pool_free(pool);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_elementwise), cmocka_unit_test(test_dropout), cmocka_unit_test(test_pool),
        cmocka_unit_test(test_batchnorm), cmocka_unit_test(test_loss), cmocka_unit_test(test_concat_slice),
        cmocka_unit_test(test_linear), cmocka_unit_test(test_conv), cmocka_unit_test(test_conv_deterministic), cmocka_unit_test(test_pool_jobs),
    };
    const char *specs[TU_MAX_CPUS];
    int widths[TU_MAX_CPUS], n = tu_cpu_targets(specs, widths), failed = n ? 0 : 1;
    for (int i = 0; i < n; i++) {
        cpu_spec = specs[i];
        printf("---- --cpu %s (%d-wide)\n", specs[i], widths[i]);
        failed += cmocka_run_group_tests(tests, NULL, NULL);
    }
    /* the gathers (conv packing, Winograd, pooling) in the form this host
     * does not take by default, so both are checked on every machine */
    const struct CMUnitTest gathers[] = {cmocka_unit_test(test_pool), cmocka_unit_test(test_conv)};
    CgCpuInfo ci;
    Diag dg;
    diag_init(&dg, "cpu", NULL, 0, stderr);
    if (n && cg_cpu_query(specs[0], 1, &ci, &dg) == 0 && ci.level >= 3) {
        setenv("NETC_CPU_GATHER", ci.hw_gather ? "lanes" : "hw", 1);
        cpu_spec = specs[0];
        printf("---- --cpu %s (%d-wide), gathers %s\n", specs[0], widths[0],
               ci.hw_gather ? "lane by lane" : "as instructions");
        failed += cmocka_run_group_tests(gathers, NULL, NULL);
        unsetenv("NETC_CPU_GATHER");
    }
    return failed;
}
