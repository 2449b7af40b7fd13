/* dist.h - data-parallel training over MPI: which process this is, and the
 * few collectives the training loop needs.
 *
 * A process started by mpirun (or any launcher that sets OpenMPI's, PMIx's
 * or MPICH's environment) is one rank of a job; any other process is the
 * only rank of its own and never touches MPI.  Every collective is waited
 * for at most $NETC_DIST_TIMEOUT seconds (default 300): a rank that died
 * or hangs makes the others stop with a message instead of waiting for
 * ever.  A netc built without MPI (no libopenmpi-dev) refuses to run as a
 * rank of a job of two or more. */
#ifndef NETC_RUNTIME_DIST_H
#define NETC_RUNTIME_DIST_H

#include <stddef.h>
#include <stdint.h>

/* Joins the job when launched by mpirun; else one rank of one.  0, or -1
 * with the reason in err.  Safe to call more than once. */
int rt_dist_start(char *err, size_t n);
/* Leaves the job (after the last collective). */
void rt_dist_finish(void);
/* Ends every rank of the job with status `code` (after a message). */
void rt_dist_abort(int code);

int rt_dist_rank(void);
int rt_dist_size(void);
/* Ranks of this job on this machine (for the default thread count). */
int rt_dist_local_size(void);
/* This rank's place among them, from 0 (the device it takes). */
int rt_dist_local_rank(void);
/* Whether this netc was built with MPI. */
int rt_dist_built(void);

/* Sums n doubles over all ranks, in place, on every rank.
 * The order of the sum is MPI's (fixed for a fixed job size with
 * OpenMPI's default algorithms).  0, or -1 with a message printed. */
int rt_dist_sum_f64(double *buf, int64_t n);
/* The same for floats, started now and finished by rt_dist_wait: a handle
 * (>= 0), or -1 with a message printed.  rt_dist_progress lets MPI move
 * the started sums on (call it now and then). */
int rt_dist_isum_f32(float *buf, int64_t n);
int rt_dist_wait(int handle);
void rt_dist_progress(void);
/* Rank 0's bytes to every rank.  0 or -1. */
int rt_dist_bcast(void *buf, int64_t bytes);
/* Compares every rank's h with rank 0's: -1 when all agree, else the
 * first rank that differs (the same answer on every rank); -2 on a
 * failure (printed). */
int rt_dist_agree(uint64_t h);

/* FNV-1a over bytes, chained from h (start with RT_HASH_INIT). */
#define RT_HASH_INIT 0xcbf29ce484222325ull
uint64_t rt_hash(uint64_t h, const void *p, size_t n);

#endif
