/* syncbn.h - the training batch norm and its gradient with statistics over
 * every rank of a data-parallel job (--sync-bn), as C functions that the
 * cpu backend's generated code and the ref backend call (LLVM-free: part
 * of libnetc_core and of every executable made by `netc compile`).
 *
 * Each rank sums its part per channel (in double, one thread per channel,
 * so the same bits for any thread count), the sums are summed over the
 * ranks by the function the runtime set (rt_syncbn_set_sum), and every rank
 * goes on with the whole batch's statistics.  Forward: mean and variance of
 * the whole batch (sums of x - K and (x - K)^2, K the running mean, which
 * is the same on every rank, so that the variance does not cancel); the
 * running statistics move with them.  Backward: dx uses the whole batch's
 * sums of dy and dy * (x - mean), as one process of the whole batch would;
 * dgamma and dbeta are this rank's own sums, which the step's gradient
 * allreduce then averages like every other gradient. */
#ifndef NETC_BASE_SYNCBN_H
#define NETC_BASE_SYNCBN_H

#include <stdint.h>

/* Sums n doubles over the ranks in place; must not fail (the runtime's
 * ends the job when it cannot).  NULL: a job of one. */
typedef void (*RtSumFn)(double *buf, int64_t n);
void rt_syncbn_set_sum(RtSumFn f);

/* x: nb images of c channels of hw, image i at x + i * xs; y, smean,
 * sinvstd (either may be NULL) as the training batch norm writes them. */
void rt_syncbn_fwd(void *pool, const float *x, int64_t xs, const float *gamma, const float *beta, float *rmean,
                   float *rvar, float *y, float *smean, float *sinvstd, int64_t nb, int64_t c, int64_t hw,
                   float momentum, float eps);
/* dy (contiguous), x (image stride xs), gamma and the saved statistics ->
 * dx (contiguous; NULL: not wanted), dgamma, dbeta (NULL: not wanted). */
void rt_syncbn_bwd(void *pool, const float *dy, const float *x, int64_t xs, const float *gamma, const float *smean,
                   const float *sinvstd, float *dx, float *dgamma, float *dbeta, int64_t nb, int64_t c, int64_t hw);

#endif
