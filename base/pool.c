/* pool.c - the thread pool (see pool.h).  A job is published with a
 * generation counter; a job of fewer than two tasks a thread gives each
 * thread one static chunk, a bigger one is taken in grabs of about a
 * quarter of a thread's share from a shared counter, so a thread held up
 * (by the machine, or by a slower part of the tensor) leaves its tasks to
 * the others: the caller's waits for the last chunk, GoogLeNet's 1480 jobs
 * a step, fell from 475-850 ms to 350-710 ms over five steps.  Which
 * thread runs a task never changes what it computes.  Between
 * jobs the workers spin on the counter for a while (SPIN polls, about a
 * millisecond), then sleep on a condition variable; the caller likewise
 * spins on the count of unfinished chunks before it sleeps.  (With more
 * threads than cores nobody spins: a spinning thread would hold the core
 * of one still working.)  A training
 * step runs a few hundred jobs back to back, and waking a sleeping thread
 * costs tens of microseconds, more in a virtual machine. */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { SPIN = 1 << 16 };

struct ThreadPool {
    int threads;
    pthread_t *tid;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    atomic_uint_fast64_t gen; /* incremented per job */
    atomic_int pending;       /* workers still running the current job */
    int sleepers;             /* workers waiting on wake (under mu) */
    int waiting;              /* the caller waits on done (under mu) */
    int spin;                 /* polls before sleeping: 0 with more threads than cores */
    atomic_int quit;
    int64_t n;
    int64_t grain;            /* tasks a grab (0: one static chunk a thread) */
    atomic_int_fast64_t next; /* the next task not yet taken */
    void (*fn)(void *, int64_t, int64_t);
    void *ctx;
};

typedef struct { ThreadPool *p; int index; } WorkerArg;

static _Thread_local int worker_index;
int rt_worker_index(void) { return worker_index; }

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void run_chunk(ThreadPool *p, int t) {
    if (p->grain == 0) {
        int64_t b = p->n * t / p->threads, e = p->n * (t + 1) / p->threads;
        if (b < e) p->fn(p->ctx, b, e);
        return;
    }
    for (;;) {
        int64_t b = atomic_fetch_add_explicit(&p->next, p->grain, memory_order_relaxed);
        if (b >= p->n) break;
        p->fn(p->ctx, b, b + p->grain < p->n ? b + p->grain : p->n);
    }
}

static void *worker(void *arg) {
    WorkerArg a = *(WorkerArg *)arg;
    free(arg);
    ThreadPool *p = a.p;
    worker_index = a.index;
    uint64_t seen = 0;
    for (;;) {
        for (int i = 0; i < p->spin && atomic_load_explicit(&p->gen, memory_order_acquire) == seen; i++) cpu_relax();
        if (atomic_load_explicit(&p->gen, memory_order_acquire) == seen) {
            pthread_mutex_lock(&p->mu);
            p->sleepers++;
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->quit)) pthread_cond_wait(&p->wake, &p->mu);
            p->sleepers--;
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->quit)) break;
        seen = atomic_load_explicit(&p->gen, memory_order_acquire);
        run_chunk(p, a.index);
        if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);
            if (p->waiting) pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

ThreadPool *rt_pool_new(int threads) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (threads <= 0) threads = cores > 0 ? (int)cores : 1;
    ThreadPool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->threads = threads;
    p->spin = cores <= 0 || threads <= cores ? SPIN : 0;
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
    atomic_store(&p->quit, 1);
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
    p->grain = n >= 2 * p->threads ? (n + 4 * p->threads - 1) / (4 * p->threads) : 0;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->pending, p->threads - 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    if (p->sleepers) pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    run_chunk(p, 0);
    for (int i = 0; i < p->spin && atomic_load_explicit(&p->pending, memory_order_acquire) > 0; i++) cpu_relax();
    if (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) {
        pthread_mutex_lock(&p->mu);
        p->waiting = 1;
        while (atomic_load(&p->pending) > 0) pthread_cond_wait(&p->done, &p->mu);
        p->waiting = 0;
        pthread_mutex_unlock(&p->mu);
    }
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
