/* pool.c - the thread pool (see pool.h).  Workers sleep on a condition
 * variable; a job is published with a generation counter and each worker
 * takes its own static chunk. */
#include "pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct ThreadPool {
    int threads;
    pthread_t *tid;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    uint64_t gen;        /* incremented per job */
    int pending;         /* workers still running the current job */
    int quit;
    int64_t n;
    void (*fn)(void *, int64_t, int64_t);
    void *ctx;
};

typedef struct { ThreadPool *p; int index; } WorkerArg;

static _Thread_local int worker_index;

int rt_worker_index(void) { return worker_index; }

static void run_chunk(ThreadPool *p, int t) {
    int64_t b = p->n * t / p->threads, e = p->n * (t + 1) / p->threads;
    if (b < e) p->fn(p->ctx, b, e);
}

static void *worker(void *arg) {
    WorkerArg a = *(WorkerArg *)arg;
    free(arg);
    ThreadPool *p = a.p;
    worker_index = a.index;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->gen == seen && !p->quit) pthread_cond_wait(&p->wake, &p->mu);
        if (p->quit) break;
        seen = p->gen;
        pthread_mutex_unlock(&p->mu);
        run_chunk(p, a.index);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

ThreadPool *rt_pool_new(int threads) {
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)n : 1;
    }
    ThreadPool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->threads = threads;
    p->tid = calloc((size_t)threads, sizeof *p->tid);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    for (int i = 1; i < threads; i++) {
        WorkerArg *a = malloc(sizeof *a);
        a->p = p;
        a->index = i;
        if (pthread_create(&p->tid[i], NULL, worker, a) != 0) {
            free(a);
            p->threads = i;   /* run with the workers we have */
            break;
        }
    }
    return p;
}

void rt_pool_free(ThreadPool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->threads; i++) pthread_join(p->tid[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->tid);
    free(p);
}

int rt_pool_threads(const ThreadPool *p) { return p ? p->threads : 1; }

void rt_parallel_for(ThreadPool *p, int64_t n, void (*fn)(void *ctx, int64_t begin, int64_t end),
                     void *ctx) {
    if (n <= 0) return;
    if (!p || p->threads == 1 || n == 1) {
        fn(ctx, 0, n);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->n = n;
    p->fn = fn;
    p->ctx = ctx;
    p->pending = p->threads - 1;
    p->gen++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    run_chunk(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

static void *scratch;
static int64_t scratch_bytes;

void *rt_scratch(int64_t bytes) {
    if (bytes <= scratch_bytes) return scratch;
    free(scratch);
    int64_t n = (bytes + 63) / 64 * 64;
    scratch = aligned_alloc(64, (size_t)n);
    if (!scratch) abort();
    scratch_bytes = n;
    return scratch;
}

static double *prof_sec;
static int64_t prof_n, prof_cur = -1;
static double prof_t0;

/* NETC_CPU_PROFILE=cpu: process CPU time (all threads) rather than wall time */
static double prof_now(void) {
    static int clk = -1;
    if (clk < 0) {
        const char *e = getenv("NETC_CPU_PROFILE");
        clk = e && strcmp(e, "cpu") == 0 ? (int)CLOCK_PROCESS_CPUTIME_ID : (int)CLOCK_MONOTONIC;
    }
    struct timespec t;
    clock_gettime((clockid_t)clk, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

void rt_prof_mark(int64_t k) {
    double t = prof_now();
    if (prof_cur >= 0 && prof_cur < prof_n) prof_sec[prof_cur] += t - prof_t0;
    if (k >= prof_n) {
        int64_t n = k + 64;
        double *s = realloc(prof_sec, (size_t)n * sizeof *s);
        if (!s) abort();
        memset(s + prof_n, 0, (size_t)(n - prof_n) * sizeof *s);
        prof_sec = s;
        prof_n = n;
    }
    prof_cur = k;
    prof_t0 = prof_now();
}

double rt_prof_total(int64_t k) { return k >= 0 && k < prof_n ? prof_sec[k] : 0.0; }

void rt_prof_reset(void) {
    if (prof_sec) memset(prof_sec, 0, (size_t)prof_n * sizeof *prof_sec);
    prof_cur = -1;
}
