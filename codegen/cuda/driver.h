/* driver.h - the CUDA Driver API as a table of functions, so that tests can
 * pass a fake driver.  cg_cuda_driver_open fills it from libcuda.so.1 with
 * dlopen; every call below is checked and fails with a message naming the
 * call and the driver's error. */
#ifndef NETC_CUDA_DRIVER_H
#define NETC_CUDA_DRIVER_H

#include <stddef.h>
#include "../../ir/diag.h"

typedef unsigned long long CuPtr;   /* CUdeviceptr */

/* Driver API signatures (CUresult is int; handles are opaque pointers). */
typedef struct {
    void *lib;   /* dlopen handle, NULL for a fake table */
    int (*init)(unsigned);
    int (*device_count)(int *);
    int (*device_get)(int *, int);
    int (*ctx_create)(void **, unsigned, int);
    int (*ctx_destroy)(void *);
    int (*mem_alloc)(CuPtr *, size_t);
    int (*mem_free)(CuPtr);
    int (*module_load)(void **, const void *, unsigned, int *, void **);
    int (*module_unload)(void *);
    int (*module_function)(void **, void *, const char *);
    int (*launch)(void *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void *, void **, void **);
    int (*synchronize)(void);
    int (*error_name)(int, const char **);
    int (*memcpy_htod)(CuPtr, const void *, size_t);
    int (*memcpy_dtoh)(void *, CuPtr, size_t);
    int (*event_create)(void **, unsigned);
    int (*event_record)(void *, void *);
    int (*event_synchronize)(void *);
    int (*event_elapsed)(float *, void *, void *);
    int (*event_destroy)(void *);
    /* A fake table's: the module images it takes are CUDA C source text (an
     * emulated device, for tests), not PTX. */
    int source;
    /* Streams, for the data-parallel step's NCCL sums (cuda_dist.c): NULL
     * in a table that lacks them, which then sums on the host. */
    int (*stream_create)(void **, unsigned);
    int (*stream_destroy)(void *);
    int (*stream_wait_event)(void *, void *, unsigned);
    int (*event_query)(void *);   /* 0 done, 600 (CUDA_ERROR_NOT_READY) not yet */
    /* The next batch's upload beside a running step (cuda_backend.c): NULL
     * in a table that lacks it, which then uploads it before the step. */
    int (*memcpy_htod_async)(CuPtr, const void *, size_t, void *);
} CudaDriver;

/* 0, or -1 with "no CUDA driver (libcuda.so.1) on this machine". */
int cg_cuda_driver_open(CudaDriver *t, Diag *d);
void cg_cuda_driver_close(CudaDriver *t);

typedef struct {
    const CudaDriver *t;
    void *ctx, *module;
    CuPtr mem;          /* one block: arena, side block, slots */
    size_t bytes;
} CudaDevice;

/* cuInit, the first device, a context, `bytes` of device memory and the
 * module `image` (PTX or cubin).  On failure everything acquired is
 * released again; -1 with the message in d ("no CUDA device", "out of
 * device memory (N bytes)", ...). */
int cg_cuda_device_open(const CudaDriver *t, size_t bytes, const void *image, CudaDevice *dev, Diag *d);
/* Launches kernel `name` (grid x block threads, args as cuLaunchKernel
 * takes them) and waits for it. */
int cg_cuda_device_launch(CudaDevice *dev, const char *name, unsigned grid, unsigned block, void **args, Diag *d);
void cg_cuda_device_close(CudaDevice *dev);

/* The pieces of the above, for the cuda backend (codegen/cuda/cuda_backend.c):
 * each 0, or -1 with the message in d. */
/* A context on device `ordinal` modulo the number of devices (0: the first). */
int cg_cuda_context(const CudaDriver *t, int ordinal, void **ctx, Diag *d);
/* The driver's name for error rc ("unknown CUDA error" when it has none). */
const char *cg_cuda_error_name(const CudaDriver *t, int rc);
int cg_cuda_alloc(const CudaDriver *t, size_t bytes, CuPtr *p, Diag *d);
int cg_cuda_module(const CudaDriver *t, const void *image, void **module, Diag *d);
int cg_cuda_function(const CudaDriver *t, void *module, const char *name, void **fn, Diag *d);
/* host -> device (up) or device -> host. */
int cg_cuda_copy(const CudaDriver *t, CuPtr dev, void *host, size_t bytes, int up, Diag *d);

#endif
