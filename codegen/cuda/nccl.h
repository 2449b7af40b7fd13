/* nccl.h - NCCL as a table of functions, opened with dlopen at run time
 * (libnccl.so.2), so that one netc binary runs where it is absent and tests
 * can pass a fake.  Only what the data-parallel step needs (cuda_dist.c):
 * a communicator bootstrapped from rank 0's unique id, in-place float sums,
 * grouped, and the calls that notice and end a communicator that hangs. */
#ifndef NETC_CUDA_NCCL_H
#define NETC_CUDA_NCCL_H

#include <stddef.h>

enum { NCCL_ID_BYTES = 128, NCCL_FLOAT32 = 7, NCCL_SUM = 0, NCCL_IN_PROGRESS = 7 };

typedef struct { char internal[NCCL_ID_BYTES]; } NcclId;   /* ncclUniqueId */

/* Signatures (ncclResult_t is int; ncclComm_t and cudaStream_t opaque). */
typedef struct {
    void *lib;   /* dlopen handle, NULL for a fake table */
    int (*get_version)(int *);
    int (*get_unique_id)(NcclId *);
    int (*comm_init_rank)(void **, int, NcclId, int);
    int (*comm_destroy)(void *);
    int (*comm_abort)(void *);
    int (*comm_get_async_error)(void *, int *);
    const char *(*error_string)(int);
    int (*group_start)(void);
    int (*group_end)(void);
    int (*all_reduce)(const void *, void *, size_t, int, int, void *, void *);
} NcclTable;

/* 0, or -1 with why ("no NCCL (libnccl.so.2) on this machine", or the
 * call it lacks) in why[n]. */
int cg_nccl_open(NcclTable *t, char *why, size_t n);
void cg_nccl_close(NcclTable *t);

#endif
