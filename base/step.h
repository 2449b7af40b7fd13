/* step.h - the ABI between generated code and the runtime (LLVM-free).
 *
 * The cpu backend compiles a Program into one entry point
 *
 *   void netc_step(void *arena, void **slots, const NetcStepArgs *a);
 *
 * (JIT: "netc_step"; object files from `netc compile`: "netc_train_step" and
 * "netc_eval_step").  arena and slots are RunCtx's; the generated code calls
 * back into the runtime only through rt_parallel_for, rt_pool_threads,
 * rt_worker_index, rt_scratch (base/pool.h), rt_syncbn_fwd and
 * rt_syncbn_bwd (base/syncbn.h, --sync-bn only), rt_grads_ready
 * (base/gradready.h, data-parallel programs only) and libm. */
#ifndef NETC_BASE_STEP_H
#define NETC_BASE_STEP_H

#include <stdint.h>

typedef struct {
    double lr;         /* SGD learning rate */
    uint64_t seed;     /* dropout seed */
    uint64_t step;     /* global step */
    void *pool;        /* ThreadPool *, may be NULL */
} NetcStepArgs;

typedef void (*NetcStepFn)(void *arena, void **slots, const NetcStepArgs *a);

#endif
