/* cuda_dist.h - a data-parallel train step that sums its gradients on the
 * devices with NCCL and updates the weights there (cuda_dist.c).  The cuda
 * backend calls these from its run; the runtime only sums loss and count. */
#ifndef NETC_CUDA_DIST_H
#define NETC_CUDA_DIST_H

#include "../backend.h"
#include "driver.h"
#include "nccl.h"

typedef struct CudaDist CudaDist;

/* The communicator of every rank (nc NULL: NCCL is not there, for the
 * reason in why), a stream for its sums, and the update kernel for p's
 * gradients.  Collective: every rank calls it.  0 with *out; 1 when the
 * ranks cannot all use it, the reason in bd->why; -1 on an error. */
int cg_cuda_dist_open(const CudaDriver *drv, const NcclTable *nc, const char *why, const Program *p, BackendDist *bd,
                      CudaDist **out, Diag *d);
/* Kernel k of the step has just been launched (its last launch): the
 * buckets it completes start their sums on the NCCL stream once it has
 * run.  addr: the device address of every slot of p. */
int cg_cuda_dist_after(CudaDist *c, int k, const CuPtr *addr, Diag *d);
/* After the step's last launch: the buckets not started yet, then the
 * update w -= lr * (sum / ranks) (args: cuLaunchKernel's, as the step's),
 * waited for at most $NETC_DIST_TIMEOUT seconds (default 300). */
int cg_cuda_dist_finish(CudaDist *c, const CuPtr *addr, void **args, Diag *d);
/* The generated update's source (for dumps and tests). */
const char *cg_cuda_dist_source(const CudaDist *c);
/* The update kernel netc_dist_sgd for bd's gradients of p (malloc'd);
 * *total: the floats it updates, one thread each. */
char *cg_cuda_dist_update_source(const Program *p, const BackendDist *bd, int64_t *total);
void cg_cuda_dist_close(CudaDist *c);

#endif
