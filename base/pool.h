/* pool.h - a fixed thread pool for data-parallel kernels (LLVM-free: it is
 * part of libnetc_core and of every executable made by `netc compile`).
 *
 * rt_parallel_for(p, n, fn, ctx) runs fn on ranges that cover [0, n) once:
 * with n < 2 T (T = rt_pool_threads(p)) statically, thread t's range [t*n/T,
 * (t+1)*n/T) (empty ones skipped); otherwise each thread takes ranges of
 * about n / 4T in turn from a shared counter, so a thread may run several,
 * and which thread runs a range is not fixed.  fn must compute the same
 * for a range whichever thread runs it (per-thread scratch is fine: a
 * thread runs its ranges one after another).  The caller takes part and
 * returns when every range is done.  With p == NULL it runs fn(ctx, 0, n)
 * on the caller.  Calls must not nest, and one pool serves one caller at a
 * time. */
#ifndef NETC_RUNTIME_POOL_H
#define NETC_RUNTIME_POOL_H

#include <stdint.h>

typedef struct ThreadPool ThreadPool;

ThreadPool *rt_pool_new(int threads);   /* 0: all cores */
void rt_pool_free(ThreadPool *p);
int rt_pool_threads(const ThreadPool *p); /* 1 for NULL */
void rt_parallel_for(ThreadPool *p, int64_t n, void (*fn)(void *ctx, int64_t begin, int64_t end),
                     void *ctx);
/* The index of the calling thread inside rt_parallel_for: 0 for the caller,
 * 1..T-1 for the workers (0 outside any pool). */
int rt_worker_index(void);
/* Scratch memory for generated kernels: a 64-byte aligned block of at least
 * `bytes`, owned by the runtime, reused by every call (its contents are not
 * kept).  Single-threaded: call it outside rt_parallel_for. */
void *rt_scratch(int64_t bytes);

/* Per-kernel profiling for the cpu backend (NETC_CPU_PROFILE): generated code
 * calls rt_prof_mark(k) before kernel k and rt_prof_mark(-1) after the last;
 * the wall time between two marks is added to the earlier kernel's total.
 * rt_prof_total(k) reads it (seconds), rt_prof_reset() clears all. */
void rt_prof_mark(int64_t k);
double rt_prof_total(int64_t k);
void rt_prof_reset(void);

#endif
