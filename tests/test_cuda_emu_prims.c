/* test_cuda_emu_prims.c - the emulated device's CUDA primitives
 * (codegen/cuda/emu.h) in hand-written kernels of the generator's form
 * (KERNEL name(KARGS), after the generator's own prelude), each checked
 * exactly against a host reference:
 *
 *   - a block-wide tree reduction in shared memory, 256 threads per block,
 *     against a plain sum (integer values: every order gives the same sum);
 *   - a 64x64 matrix product through 32x32 shared tiles (1024 threads per
 *     block, 2-D blocks and grid) against a naive loop;
 *   - threadIdx, blockIdx, blockDim and gridDim in a 3-D launch, read after
 *     a __syncthreads (each thread keeps its own ids across the wait);
 *   - warp shuffles: a __shfl_down_sync sum, a __shfl_xor_sync all-reduce
 *     (int), __shfl_sync broadcasts (width 32 and 16), a __shfl_up_sync
 *     prefix sum, a double exchange, and __syncwarp over shared memory;
 *   - atomicAdd on int, unsigned, float and double (counts, every old
 *     value returned once, a shared counter between barriers, and the
 *     float flush of subnormals that atom.add.f32 does on global memory);
 *   - netc_tf32 on specials (ties, negatives, subnormals, overflow to inf,
 *     inf, NaN) and random bit patterns against integer rounding here;
 *   - threads that return early no longer hold up a __syncthreads or a
 *     shuffle, and a barrier that cannot complete aborts rather than hangs.
 *
 * Planted errors must fail the same checks: a __syncthreads or __syncwarp
 * dropped from a kernel, a wrong lane, and in the header a one-buffer
 * shuffle exchange, a __syncthreads that does not wait and tf32 ties
 * rounding down.  Where NVRTC is present the same kernels compile for
 * compute_90 (so they are CUDA as well as C) and netc_tf32 is the
 * cvt.rna.tf32.f32 instruction there.  Without a host C compiler the
 * emulator tests are skipped with the reason printed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codegen/cuda/cuda_src.h"
#include "codegen/cuda/nvrtc.h"
#include "testutil.h"

typedef unsigned long long u64;
typedef struct { unsigned x, y, z; } Dim3;
typedef void (*EmuKernel)(char *, char *, void **, float, u64, u64);
typedef void (*Launch)(EmuKernel, unsigned, unsigned, char *, char *, void **, float, u64, u64);
typedef void (*Launch3)(EmuKernel, Dim3, Dim3, char *, char *, void **, float, u64, u64);

/* Every kernel reads and writes regions of the arena A: region k is the
 * REGION bytes from A + k * REGION. */
enum { REGION = 65536, NREGION = 8, NTF = 8192 };

static const char kernels[] =
    "#define REG(k) (A + (k) * 65536)\n"
    "KERNEL reduce256(KARGS) {\n"
    "    __shared__ float part[256];\n"
    "    float *x = (float *)REG(0), *sum = (float *)REG(1);\n"
    "    unsigned t = threadIdx.x;\n"
    "    part[t] = x[blockIdx.x * 256 + t];\n"
    "    __syncthreads();\n"
    "    for (unsigned s = 128; s > 0; s >>= 1) {\n"
    "        if (t < s) part[t] += part[t + s];\n"
    "        __syncthreads();\n"
    "    }\n"
    "    if (t == 0) sum[blockIdx.x] = part[0];\n"
    "}\n"
    "KERNEL matmul64(KARGS) {\n"
    "    __shared__ float ta[32][32], tb[32][32];\n"
    "    float *a = (float *)REG(0), *b = (float *)REG(1), *c = (float *)REG(2);\n"
    "    int tx = threadIdx.x, ty = threadIdx.y;\n"
    "    int row = blockIdx.y * 32 + ty, col = blockIdx.x * 32 + tx;\n"
    "    float acc = 0.0f;\n"
    "    for (int k0 = 0; k0 < 64; k0 += 32) {\n"
    "        ta[ty][tx] = a[row * 64 + k0 + tx];\n"
    "        tb[ty][tx] = b[(k0 + ty) * 64 + col];\n"
    "        __syncthreads();\n"
    "        for (int k = 0; k < 32; k++) acc += ta[ty][k] * tb[k][tx];\n"
    "        __syncthreads(); /* tiles read */\n"
    "    }\n"
    "    c[row * 64 + col] = acc;\n"
    "}\n"
    "KERNEL ids3(KARGS) {\n"
    "    unsigned b = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;\n"
    "    unsigned t = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;\n"
    "    __syncthreads();\n"
    "    int *r = (int *)REG(0) + (b * blockDim.x * blockDim.y * blockDim.z + t) * 12;\n"
    "    r[0] = threadIdx.x, r[1] = threadIdx.y, r[2] = threadIdx.z;\n"
    "    r[3] = blockIdx.x, r[4] = blockIdx.y, r[5] = blockIdx.z;\n"
    "    r[6] = blockDim.x, r[7] = blockDim.y, r[8] = blockDim.z;\n"
    "    r[9] = gridDim.x, r[10] = gridDim.y, r[11] = gridDim.z;\n"
    "}\n"
    "KERNEL warp(KARGS) {\n"
    "    __shared__ float sw[64];\n"
    "    float *x = (float *)REG(0);\n"
    "    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n"
    "    unsigned lane = threadIdx.x % 32;\n"
    "    float v = x[i];\n"
    "    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);\n"
    "    if (lane == 0) ((float *)REG(1))[i / 32] = v;\n"
    "    int s = (int)x[i];\n"
    "    for (int o = 1; o < 32; o <<= 1) s += __shfl_xor_sync(0xffffffffu, s, o);\n"
    "    ((int *)REG(2))[i] = s;\n"
    "    ((float *)REG(3))[i] = __shfl_sync(0xffffffffu, x[i], 5);\n"
    "    ((float *)REG(4))[i] = __shfl_sync(0xffffffffu, x[i], 3, 16);\n"
    "    float p = x[i];\n"
    "    for (int d = 1; d < 32; d <<= 1) {\n"
    "        float q = __shfl_up_sync(0xffffffffu, p, d);\n"
    "        if (lane >= d) p += q;\n"
    "    }\n"
    "    ((float *)REG(5))[i] = p;\n"
    "    ((double *)REG(6))[i] = __shfl_xor_sync(0xffffffffu, (double)x[i] * 0.5, 1);\n"
    "    sw[threadIdx.x] = x[i];\n"
    "    __syncwarp();\n"
    "    ((float *)REG(7))[i] = sw[threadIdx.x ^ 31];\n"
    "}\n"
    "KERNEL atomics(KARGS) {\n"
    "    __shared__ int inblock;\n"
    "    int *cnt = (int *)REG(0), *seen = (int *)REG(1), *blocks = (int *)REG(2);\n"
    "    float *f = (float *)REG(3);\n"
    "    unsigned *u = (unsigned *)REG(4);\n"
    "    double *d = (double *)REG(5);\n"
    "    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n"
    "    int old = atomicAdd(&cnt[0], 1);\n"
    "    atomicAdd(&seen[old], 1);\n"
    "    atomicAdd(&cnt[1 + i % 7], 1);\n"
    "    atomicAdd(&f[0], 0.25f);\n"
    "    atomicAdd(&u[0], 2u);\n"
    "    atomicAdd(&d[0], 0.5);\n"
    "    if (threadIdx.x == blockDim.x - 1) inblock = 0;\n"
    "    __syncthreads(); /* zeroed */\n"
    "    atomicAdd(&inblock, 1);\n"
    "    __syncthreads();\n"
    "    if (threadIdx.x == 0) blocks[blockIdx.x] = inblock;\n"
    "    if (i == 0) {\n"
    "        f[1] = atomicAdd(&f[2], 1e-40f);\n"
    "        f[3] = atomicAdd(&f[4], -1.5e-38f);\n"
    "    }\n"
    "}\n"
    "KERNEL tf32(KARGS) {\n"
    "    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n"
    "    ((float *)REG(1))[i] = netc_tf32(((float *)REG(0))[i]);\n"
    "}\n"
    "KERNEL early(KARGS) {\n"
    "    __shared__ float e[128];\n"
    "    unsigned t = threadIdx.x;\n"
    "    if (t < 8 || t >= 108) return; /* before any thread waits, and after */\n"
    "    e[t] = ((float *)REG(0))[t];\n"
    "    __syncthreads();\n"
    "    /* shfl.sync waits for the lanes of its mask that have not exited */\n"
    "    ((float *)REG(1))[t] = e[115 - t] + __shfl_xor_sync(0xffffffffu, e[t], 1);\n"
    "}\n"
    "KERNEL stuck(KARGS) {\n"
    "    if (threadIdx.x == 0) __syncthreads();\n"
    "    else __syncwarp();\n"
    "}\n";

/* The generator's prelude: its source for a small program up to the
 * first kernel, so these kernels see what generated ones see. */
static char *prelude(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/models/lenet_bn.net", NETC_SOURCE_DIR);
    Program p;
    assert_int_equal(tu_program(path, IR_EVAL, 1, 28, 4, &p), 0);
    Diag d;
    diag_init(&d, "cuda", NULL, 0, stderr);
    CudaSource cs;
    assert_int_equal(cg_cuda_source(&p, 0, &cs, &d), 0);
    char *end = strstr(cs.text, "\n/* kernel ");
    assert_non_null(end);
    size_t n = (size_t)(end - cs.text) + 1;
    char *r = malloc(n + 1);
    memcpy(r, cs.text, n);
    r[n] = 0;
    cg_cuda_source_free(&cs);
    program_free(&p);
    return r;
}

/* The prelude and kernel text `k` compiled into a shared object and
 * loaded; a planted header (emu.h with hfrom replaced by hto) when hfrom
 * is not NULL. */
typedef struct {
    void *h;
    Launch launch;
    Launch3 launch3;
    char *A;
} Emu;

static void emu_open(Emu *e, const char *k, const char *hfrom, const char *hto) {
    char *pre = prelude(), *ph = NULL;
    size_t n = strlen(pre) + strlen(k) + 1;
    char *text = malloc(n);
    snprintf(text, n, "%s%s", pre, k);
    if (hfrom) { /* "emu.h" is found beside the source first */
        char path[600];
        snprintf(path, sizeof path, "%s/codegen/cuda/emu.h", NETC_SOURCE_DIR);
        char *h = tu_read(path, NULL);
        ph = h ? tu_plant(h, hfrom, hto) : NULL;
        assert_non_null(ph);
        free(h);
    }
    e->h = tu_host_so(text, ph);
    free(pre), free(text), free(ph);
    assert_non_null(e->h);
    void *l = dlsym(e->h, "netc_emu_launch"), *l3 = dlsym(e->h, "netc_emu_launch3");
    assert_non_null(l);
    assert_non_null(l3);
    memcpy(&e->launch, &l, sizeof l);
    memcpy(&e->launch3, &l3, sizeof l3);
    e->A = calloc(NREGION, REGION);
}

static void emu_close(Emu *e) {
    free(e->A);
    dlclose(e->h);
}

static EmuKernel kernel(Emu *e, const char *name) {
    void *f = dlsym(e->h, name);
    assert_non_null(f);
    EmuKernel k;
    memcpy(&k, &f, sizeof k);
    return k;
}

static void *reg(Emu *e, int k) { return e->A + (size_t)k * REGION; }

static void run(Emu *e, const char *name, unsigned grid, unsigned block) {
    e->launch(kernel(e, name), grid, block, e->A, NULL, NULL, 0.0f, 0, 0);
}

static void run3(Emu *e, const char *name, Dim3 grid, Dim3 block) {
    e->launch3(kernel(e, name), grid, block, e->A, NULL, NULL, 0.0f, 0, 0);
}

/* ---- the checks: each returns the number of wrong values ---- */

static int check_reduce(Emu *e) {
    memset(e->A, 0, (size_t)NREGION * REGION);
    float *x = reg(e, 0), *sum = reg(e, 1);
    for (int i = 0; i < 4 * 256; i++) x[i] = (float)(i * 7 % 13 - 6);
    run(e, "reduce256", 4, 256);
    int bad = 0;
    for (int b = 0; b < 4; b++) {
        float s = 0;
        for (int t = 0; t < 256; t++) s += x[b * 256 + t];
        if (sum[b] != s) bad++;
    }
    printf("reduce256: %d of 4 block sums wrong\n", bad);
    return bad;
}

static int check_matmul(Emu *e) {
    memset(e->A, 0, (size_t)NREGION * REGION);
    float *a = reg(e, 0), *b = reg(e, 1), *c = reg(e, 2);
    for (int i = 0; i < 64 * 64; i++) a[i] = (float)(i * 5 % 9 - 4), b[i] = (float)(i * 11 % 7 - 3);
    run3(e, "matmul64", (Dim3){2, 2, 1}, (Dim3){32, 32, 1});
    int bad = 0;
    for (int i = 0; i < 64; i++)
        for (int j = 0; j < 64; j++) {
            float s = 0;
            for (int k = 0; k < 64; k++) s += a[i * 64 + k] * b[k * 64 + j];
            if (c[i * 64 + j] != s) bad++;
        }
    printf("matmul64: %d of 4096 elements wrong\n", bad);
    return bad;
}

static int check_ids(Emu *e) {
    memset(e->A, 0, (size_t)NREGION * REGION);
    const Dim3 g = {2, 3, 2}, bl = {4, 2, 5}; /* 40 threads: one whole and one partial warp */
    run3(e, "ids3", g, bl);
    const int *r = reg(e, 0);
    int bad = 0, k = 0;
    for (unsigned bz = 0; bz < g.z; bz++)
        for (unsigned by = 0; by < g.y; by++)
            for (unsigned bx = 0; bx < g.x; bx++)
                for (unsigned tz = 0; tz < bl.z; tz++)
                    for (unsigned ty = 0; ty < bl.y; ty++)
                        for (unsigned tx = 0; tx < bl.x; tx++, k++) {
                            const unsigned want[12] = {tx, ty, tz, bx, by, bz, bl.x, bl.y, bl.z, g.x, g.y, g.z};
                            for (int f = 0; f < 12; f++) bad += (unsigned)r[k * 12 + f] != want[f];
                        }
    printf("ids3: %d of %d ids wrong\n", bad, k * 12);
    return bad;
}

static int check_warp(Emu *e) {
    memset(e->A, 0, (size_t)NREGION * REGION);
    enum { N = 128 }; /* 2 blocks of 64: 4 warps */
    float *x = reg(e, 0), *down = reg(e, 1), *bc = reg(e, 3), *half = reg(e, 4), *scan = reg(e, 5), *sw = reg(e, 7);
    int *xr = reg(e, 2);
    double *dx = reg(e, 6);
    for (int i = 0; i < N; i++) x[i] = (float)(i * 5 % 11 - 5);
    run(e, "warp", 2, 64);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        int w = i / 32 * 32, lane = i % 32;
        float s = 0, pre = 0;
        for (int l = 0; l < 32; l++) s += x[w + l];
        for (int l = 0; l <= lane; l++) pre += x[w + l];
        if (lane == 0) bad += down[i / 32] != s;
        bad += xr[i] != (int)s;
        bad += bc[i] != x[w + 5];
        bad += half[i] != x[w + lane / 16 * 16 + 3];
        bad += scan[i] != pre;
        bad += dx[i] != (double)x[i ^ 1] * 0.5;
        bad += sw[i] != x[w + (31 - lane)];
    }
    printf("warp: %d of %d shuffled values wrong\n", bad, N * 6 + N / 32);
    return bad;
}

static int check_atomics(Emu *e) {
    memset(e->A, 0, (size_t)NREGION * REGION);
    enum { N = 4 * 256 };
    int *cnt = reg(e, 0), *seen = reg(e, 1), *blocks = reg(e, 2);
    float *f = reg(e, 3);
    unsigned *u = reg(e, 4);
    double *d = reg(e, 5);
    f[4] = 2e-38f;
    run(e, "atomics", 4, 256);
    int bad = cnt[0] != N;
    for (int i = 0; i < N; i++) bad += seen[i] != 1; /* each old value returned once */
    for (int r = 0; r < 7; r++) bad += cnt[1 + r] != (N - r + 6) / 7;
    for (int b = 0; b < 4; b++) bad += blocks[b] != 256;
    bad += f[0] != N * 0.25f;
    bad += u[0] != 2u * N;
    bad += d[0] != N * 0.5;
    /* subnormal input and result flushed to +0; the old values returned */
    uint32_t b2, b4;
    memcpy(&b2, &f[2], 4);
    memcpy(&b4, &f[4], 4);
    bad += f[1] != 0.0f || b2 != 0;
    bad += f[3] != 2e-38f || b4 != 0;
    printf("atomics: %d wrong (count %d, in block %d, float %g, flushed %g %g)\n", bad, cnt[0], blocks[0],
           (double)f[0], (double)f[2], (double)f[4]);
    return bad;
}

/* 28 of 128 threads return, 8 before any other waits, at a __syncthreads
 * and a shuffle: the others go on without them. */
static int check_early(Emu *e) {
    memset(e->A, 0, (size_t)NREGION * REGION);
    float *x = reg(e, 0), *y = reg(e, 1);
    for (int i = 0; i < 128; i++) x[i] = (float)(i * 3 % 17);
    run(e, "early", 2, 128);
    int bad = 0;
    for (int t = 0; t < 128; t++) bad += y[t] != (t >= 8 && t < 108 ? x[115 - t] + x[t ^ 1] : 0.0f);
    printf("early: %d of 128 wrong\n", bad);
    return bad;
}

/* cvt.rna.tf32.f32 by integer rounding: keep 10 mantissa bits, and when
 * the 13 dropped are half a tf32 ulp or more, add one (away from zero, the
 * carry running into the exponent).  The hardware adds only to finite
 * values and then clears the low 13 bits, so inf and NaN are truncated. */
static uint32_t ref_tf32(uint32_t u) {
    uint32_t sign = u & 0x80000000u, mag = u & 0x7fffffffu;
    if (mag >= 0x7f800000u) return u & 0xffffe000u;
    uint32_t keep = mag >> 13;
    if ((mag & 0x1fffu) >= 0x1000u) keep++;
    return sign | keep << 13;
}

static int check_tf32(Emu *e) {
    memset(e->A, 0, (size_t)NREGION * REGION);
    static const uint32_t special[] = {
        0x00000000u, 0x80000000u, 0x3f800000u, /* 0, -0, 1 */
        0x3f801000u, 0x3f800fffu, 0x3f801001u, 0x3f803000u, /* a tie (even kept bit: up anyway), below, above */
        0xbf801000u, 0xbf800fffu, 0xc0fff000u,              /* negative tie, below; a carry into the exponent */
        0x00001000u, 0x00000fffu, 0x00000001u, 0x80001000u, 0x807ff000u, /* subnormals, one up to normal */
        0x7f7fffffu, 0x7f7fefffu, 0xff7ff000u,              /* past the largest float: inf; below it */
        0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc01234u, 0x7fbfffffu, 0x7f800001u, /* infs, NaNs */
    };
    uint32_t *x = reg(e, 0), *y = reg(e, 1);
    int ns = (int)(sizeof special / sizeof special[0]);
    uint64_t st = 12345;
    for (int i = 0; i < NTF; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t r = (uint32_t)(st >> 32);
        x[i] = i < ns ? special[i] : i % 2 ? r : (r & ~0x1fffu) | 0x1000u; /* half of them ties */
    }
    run(e, "tf32", NTF / 256, 256);
    int bad = 0;
    for (int i = 0; i < NTF; i++)
        if (y[i] != ref_tf32(x[i])) {
            if (bad < 5) printf("tf32(%08x) = %08x, want %08x\n", x[i], y[i], ref_tf32(x[i]));
            bad++;
        }
    printf("tf32: %d of %d wrong\n", bad, NTF);
    return bad;
}

/* ---- the tests ---- */

static void with_emu(int (*check)(Emu *)) {
    if (!tu_have_cc()) return;
    Emu e;
    emu_open(&e, kernels, NULL, NULL);
    assert_int_equal(check(&e), 0);
    emu_close(&e);
}

static void test_reduce(void **s) { (void)s, with_emu(check_reduce); }
static void test_matmul(void **s) { (void)s, with_emu(check_matmul); }
static void test_ids(void **s) { (void)s, with_emu(check_ids); }
static void test_warp(void **s) { (void)s, with_emu(check_warp); }
static void test_atomics(void **s) { (void)s, with_emu(check_atomics); }
static void test_tf32(void **s) { (void)s, with_emu(check_tf32); }
static void test_early(void **s) { (void)s, with_emu(check_early); }

/* Thread 0 waits at __syncthreads while the rest of its warp waits at
 * __syncwarp for it: the launch must abort with a message, not hang. */
static void test_stuck(void **s) {
    (void)s;
    if (!tu_have_cc()) return;
    Emu e;
    emu_open(&e, kernels, NULL, NULL);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(20);
        run(&e, "stuck", 1, 64);
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    printf("stuck: %s (the message above is expected)\n", WIFSIGNALED(st) ? strsignal(WTERMSIG(st)) : "exited");
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    emu_close(&e);
}

/* The kernels are CUDA too, and netc_tf32 is the hardware instruction. */
static void test_nvrtc(void **s) {
    (void)s;
    const char *why;
    if (!cg_nvrtc_available(&why)) {
        printf("skipped: %s\n", why);
        return;
    }
    char *pre = prelude();
    size_t n = strlen(pre) + strlen(kernels) + 1;
    char *text = malloc(n);
    snprintf(text, n, "%s%s", pre, kernels);
    Diag d;
    diag_init(&d, "cuda", NULL, 0, stderr);
    char *ptx;
    size_t len;
    assert_int_equal(cg_nvrtc_compile(text, "prims", "compute_90", &ptx, &len, &d), 0);
    printf("nvrtc: %zu bytes of PTX, cvt.rna.tf32.f32 %s\n", len, strstr(ptx, "cvt.rna.tf32.f32") ? "present" : "absent");
    assert_non_null(strstr(ptx, "cvt.rna.tf32.f32"));
    assert_non_null(strstr(ptx, "shfl.sync.bfly"));
    assert_non_null(strstr(ptx, "bar.sync"));
    free(ptx);
    free(text);
    free(pre);
}

/* A plant in the kernels (kfrom -> kto) or in the header (hfrom -> hto)
 * must make check find wrong values. */
static void planted(int (*check)(Emu *), const char *kfrom, const char *kto, const char *hfrom, const char *hto) {
    char *k = kfrom ? tu_plant(kernels, kfrom, kto) : (char *)kernels;
    assert_non_null(k);
    Emu e;
    emu_open(&e, k, hfrom, hto);
    printf("planted %s: ", kfrom ? kfrom : hfrom);
    assert_true(check(&e) > 0);
    emu_close(&e);
    if (k != kernels) free(k);
}

static void test_planted(void **s) {
    (void)s;
    if (!tu_have_cc()) return;
    /* the kernels: a barrier dropped, a wrong lane */
    planted(check_reduce, "part[t + s];\n        __syncthreads();", "part[t + s];", NULL, NULL);
    planted(check_matmul, "__syncthreads(); /* tiles read */", "", NULL, NULL);
    planted(check_atomics, "__syncthreads(); /* zeroed */", "", NULL, NULL);
    planted(check_warp, "__syncwarp();", "", NULL, NULL);
    planted(check_warp, "__shfl_xor_sync(0xffffffffu, s, o)", "__shfl_xor_sync(0xffffffffu, s, o ^ 1)", NULL, NULL);
    /* the header: one exchange buffer (a lane overwrites its value before
     * the others read it), a __syncthreads that does not wait, ties down */
    planted(check_warp, NULL, NULL, "unsigned half = w->gen & 1;", "unsigned half = 0;");
    planted(check_reduce, NULL, NULL, "static void netc_emu_syncthreads(void) {",
            "static void netc_emu_syncthreads(void) {\n    return;");
    planted(check_tf32, NULL, NULL, "u += 0x1000u;", "u += 0x0fffu;");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reduce), cmocka_unit_test(test_matmul), cmocka_unit_test(test_ids),
        cmocka_unit_test(test_warp),   cmocka_unit_test(test_atomics), cmocka_unit_test(test_tf32),
        cmocka_unit_test(test_early),  cmocka_unit_test(test_stuck),   cmocka_unit_test(test_nvrtc),
        cmocka_unit_test(test_planted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
