/* mem_bw.c - the memory bandwidth this machine gives THREADS threads: the
 * other ceiling of a training step.  Activations of the seed networks at
 * the seed's batch are tens to hundreds of MB, far past the caches, so every
 * elementwise op, batch norm, pool, padding and im2col pass streams them
 * through memory; where this figure is low, adding threads adds little.
 *
 * Every thread runs a triad (b[i] = a[i] * s + b[i]: two streams read, one
 * written) over its own 128 MB; bytes moved count 12 per element.
 *
 * Build:  cc -O2 -march=native -pthread bench/mem_bw.c -o mem_bw
 * Usage:  mem_bw [--json] [THREADS]      default 1 thread
 * Output: mem_bw: 2 threads: 7.1 GB/s
 *         (--json: {"mem_gb_per_sec":7.1,"threads":2})
 * The rate is the best of three passes after one untimed pass. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { MAXTHREADS = 256 };
#define N ((size_t)16 << 20) /* floats per array: 64 MB, two arrays per thread */

typedef struct {
    float *a, *b;
    pthread_barrier_t *bar;
    double best;
} Worker;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *run(void *arg) {
    Worker *w = arg;
    w->best = 1e30;
    for (int pass = 0; pass < 4; pass++) {
        pthread_barrier_wait(w->bar);
        double t0 = now();
        for (size_t i = 0; i < N; i++) w->b[i] = w->a[i] * 1.0001f + w->b[i];
        double dt = now() - t0;
        if (pass > 0 && dt < w->best) w->best = dt;
    }
    return NULL;
}

int main(int argc, char **argv) {
    int json = 0, ai = 1;
    if (argc > 1 && !strcmp(argv[1], "--json")) json = 1, ai = 2;
    int threads = argc > ai ? atoi(argv[ai]) : 1;
    if (threads < 1 || threads > MAXTHREADS) {
        fprintf(stderr, "usage: mem_bw [--json] [THREADS]  (1..%d threads)\n", MAXTHREADS);
        return 2;
    }
    Worker *w = calloc((size_t)threads, sizeof *w);
    pthread_t *tid = calloc((size_t)threads, sizeof *tid);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)threads);
    for (int t = 0; t < threads; t++) {
        w[t].a = malloc(N * sizeof(float));
        w[t].b = malloc(N * sizeof(float));
        if (!w[t].a || !w[t].b) {
            fprintf(stderr, "mem_bw: out of memory\n");
            return 1;
        }
        for (size_t i = 0; i < N; i++) w[t].a[i] = (float)(i & 1023), w[t].b[i] = 0;
        w[t].bar = &bar;
    }
    for (int t = 0; t < threads; t++) pthread_create(&tid[t], NULL, run, &w[t]);
    for (int t = 0; t < threads; t++) pthread_join(tid[t], NULL);
    /* the slowest thread's best pass: all threads streamed at once */
    double dt = 0;
    for (int t = 0; t < threads; t++)
        if (w[t].best > dt) dt = w[t].best;
    double gbs = (double)threads * (double)N * 12.0 / dt / 1e9;
    if (json)
        printf("{\"mem_gb_per_sec\":%.1f,\"threads\":%d}\n", gbs, threads);
    else
        printf("mem_bw: %d thread%s: %.1f GB/s\n", threads, threads > 1 ? "s" : "", gbs);
    return 0;
}
