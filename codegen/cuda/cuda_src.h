/* cuda_src.h - CUDA C source text for a Program.
 *
 * One extern "C" __global__ function per launch; a program kernel becomes
 * one or more launches, run in order (its nodes one after another; a
 * reduction as a partial-sum launch then a fixed-order final launch, so a
 * step gives the same bits every run).  Every function has the signature
 *
 *   void name(char *A, char *I, void **S, float lr, u64 seed, u64 step)
 *
 * A: the arena (BufPlan offsets), I: the side block (BUF_INNER values,
 * then scratch for partial sums; CudaSource.side_bytes), S: one pointer
 * per Program slot.  Shapes and offsets are constants in the text.  The
 * text compiles with NVRTC, and, with codegen/cuda/emu.h on the include
 * path, with a host C compiler (the emulated device). */
#ifndef NETC_CUDA_SRC_H
#define NETC_CUDA_SRC_H

#include "../../passes/program.h"

typedef struct {
    char name[32];      /* kK_J: program kernel K, launch J */
    int kernel;         /* program kernel index */
    unsigned grid, block;
} CudaLaunch;

typedef struct {
    char *text;         /* NUL-terminated */
    size_t len;
    CudaLaunch *launch;
    int nlaunch;
    int64_t side_bytes; /* size of I */
    int nstaged;        /* launches copying a strided view to or from a
                           contiguous stand-in (0 for the plans netc makes) */
} CudaSource;

/* 0, or -1 with a message in d (an op or element type it cannot emit).
 * tf32: convolutions and linear layers multiply on the tensor cores
 * (mma.sync m16n8k8, operands rounded to tf32, sums in fp32); else fp32. */
int cg_cuda_source(const Program *p, int tf32, CudaSource *s, Diag *d);
void cg_cuda_source_free(CudaSource *s);
/* What every such text starts with: the KERNEL, DEV and KARGS macros, and
 * emu.h on the host (for other generated modules: cuda_dist.c). */
const char *cg_cuda_prelude(void);

#endif
