/* peak_fma.c - peak single-precision FMA rate of this CPU, the arithmetic
 * ceiling the benchmark's "share of peak" is measured against.
 *
 * Every thread runs CHAINS independent vector FMA chains (acc = acc * a + b)
 * held in registers, enough of them to cover the FMA latency on every FMA
 * port, so nothing but the FMA units limits the rate.  The vector width is
 * the widest the compiler is allowed to use: AVX-512 (16 floats), else
 * AVX2+FMA (8 floats), else a portable GCC/Clang vector type that the
 * compiler contracts to the target's FMA (NEON on AArch64, for example).
 *
 * Build:  cc -O2 -march=native -pthread bench/peak_fma.c -o peak_fma
 *         (or -mavx2 -mfma for the AVX2 kernel on any AVX2 machine)
 * Usage:  peak_fma [THREADS [SECONDS]]     default 1 thread, 0.3 s per trial
 *         peak_fma --json [THREADS [SECONDS]]
 * Output: peak_fma: 2 threads, avx2+fma 8-wide: 168.2 GFLOP/s
 *         (--json: {"peak_fma_gflop_per_sec":168.2,"threads":2,"isa":"avx2+fma","width":8})
 * The rate is the best of five trials, each SECONDS long; the threads of a
 * trial start together at a barrier. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#define ISA "avx512f"
#define WIDTH 16
#define CHAINS 24 /* 32 zmm registers: 24 accumulators, a, b */
#define EACH(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) \
    X(12) X(13) X(14) X(15) X(16) X(17) X(18) X(19) X(20) X(21) X(22) X(23)
typedef __m512 vec;
#define VSET(x) _mm512_set1_ps(x)
#define VFMA(acc, a, b) _mm512_fmadd_ps(acc, a, b)
#define VLANE0(v) _mm512_cvtss_f32(v)
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define ISA "avx2+fma"
#define WIDTH 8
#define CHAINS 12 /* 16 ymm registers: 12 accumulators, a, b */
#define EACH(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
typedef __m256 vec;
#define VSET(x) _mm256_set1_ps(x)
#define VFMA(acc, a, b) _mm256_fmadd_ps(acc, a, b)
#define VLANE0(v) _mm256_cvtss_f32(v)
#else
#define ISA "generic"
#define WIDTH 4
#define CHAINS 12
#define EACH(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
typedef float vec __attribute__((vector_size(16)));
#define VSET(x) ((vec){(x), (x), (x), (x)})
#define VFMA(acc, a, b) ((acc) * (a) + (b))
#define VLANE0(v) ((v)[0])
#endif

/* an empty asm that claims to change v: the chains stay in registers and
 * cannot be folded or hoisted out of the loop */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define OPAQUE(v) __asm__ volatile("" : "+x"(v));
#elif defined(__GNUC__) && defined(__aarch64__)
#define OPAQUE(v) __asm__ volatile("" : "+w"(v));
#else
#define OPAQUE(v)
#endif

enum { MAXTHREADS = 1024, BLOCK = 100000 };

static pthread_barrier_t start;
static double seconds = 0.3;

typedef struct {
    long blocks; /* blocks of BLOCK iterations done */
    float sink;
    double t0, t1;
} Work;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *spin(void *arg) {
    Work *w = arg;
    vec a = VSET(0.999999f), b = VSET(1e-7f);
    /* one named variable per chain (an array may be kept in memory) */
#define DECL(i) vec acc##i = VSET((float)(i));
#define STEP(i) acc##i = VFMA(acc##i, a, b);
#define KEEP(i) OPAQUE(acc##i)
#define SUM(i) s += VLANE0(acc##i);
    EACH(DECL)
    pthread_barrier_wait(&start);
    w->t0 = now();
    long blocks = 0;
    do {
        for (long n = 0; n < BLOCK; n++) {
            EACH(STEP)
            EACH(KEEP)
        }
        blocks++;
    } while (now() - w->t0 < seconds);
    w->t1 = now();
    float s = 0;
    EACH(SUM)
    w->sink = s;
    w->blocks = blocks;
    return NULL;
}

/* One trial: every thread spins for `seconds`; the rate is the work of all
 * threads over the span from the first start to the last finish. */
static double trial(int threads) {
    static pthread_t th[MAXTHREADS];
    static Work w[MAXTHREADS];
    pthread_barrier_init(&start, NULL, (unsigned)threads);
    for (int i = 0; i < threads; i++) pthread_create(&th[i], NULL, spin, &w[i]);
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
    double t0 = w[0].t0, t1 = w[0].t1, flop = 0;
    for (int i = 0; i < threads; i++) {
        if (w[i].t0 < t0) t0 = w[i].t0;
        if (w[i].t1 > t1) t1 = w[i].t1;
        flop += 2.0 * WIDTH * CHAINS * (double)BLOCK * (double)w[i].blocks;
    }
    return flop / (t1 - t0) / 1e9;
}

int main(int argc, char **argv) {
    int json = 0, ai = 1;
    if (argc > 1 && !strcmp(argv[1], "--json")) json = 1, ai = 2;
    int threads = argc > ai ? atoi(argv[ai]) : 1;
    if (argc > ai + 1) seconds = atof(argv[ai + 1]);
    if (threads < 1 || threads > MAXTHREADS || !(seconds > 0)) {
        fprintf(stderr, "usage: peak_fma [--json] [THREADS [SECONDS]]  (1..%d threads)\n", MAXTHREADS);
        return 2;
    }
    double best = 0;
    for (int t = 0; t < 5; t++) {
        double r = trial(threads);
        if (r > best) best = r;
    }
    if (json)
        printf("{\"peak_fma_gflop_per_sec\":%.1f,\"threads\":%d,\"isa\":\"%s\",\"width\":%d}\n", best, threads, ISA,
               WIDTH);
    else
        printf("peak_fma: %d thread%s, %s %d-wide: %.1f GFLOP/s\n", threads, threads == 1 ? "" : "s", ISA, WIDTH,
               best);
    return 0;
}
