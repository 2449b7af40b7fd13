/* emu.h - the emulated device: what generated CUDA C needs to compile as
 * host C and run on the calling thread.
 *
 * A launch runs its blocks one after another and, in each block, its
 * threads one after another, each a call of the kernel function with
 * threadIdx set.  The generated kernels synchronise only between launches
 * (no __syncthreads, shuffles or atomics), so running threads in sequence
 * is exact.  netc_emu_launch is the one entry a host program looks up with
 * dlsym, beside the kernels themselves. */
#ifndef NETC_CUDA_EMU_H
#define NETC_CUDA_EMU_H

#include <math.h>

typedef unsigned long long u64;
typedef struct { unsigned x, y, z; } netc_dim3;

static netc_dim3 threadIdx, blockIdx, blockDim, gridDim;

#define KERNEL void
#define DEV static inline
#define NETC_INF ((float)INFINITY)
#define NETC_NAN ((float)NAN)

typedef void (*netc_emu_fn)(char *, char *, void **, float, u64, u64);

void netc_emu_launch(netc_emu_fn f, unsigned grid, unsigned block, char *A, char *I, void **S, float lr, u64 seed,
                     u64 step);
void netc_emu_launch(netc_emu_fn f, unsigned grid, unsigned block, char *A, char *I, void **S, float lr, u64 seed,
                     u64 step) {
    gridDim.x = grid, gridDim.y = gridDim.z = 1;
    blockDim.x = block, blockDim.y = blockDim.z = 1;
    for (unsigned b = 0; b < grid; b++) {
        blockIdx.x = b;
        for (unsigned t = 0; t < block; t++) {
            threadIdx.x = t;
            f(A, I, S, lr, seed, step);
        }
    }
}

#endif
