/* backend.h - the backend interface.
 *
 * A backend turns a Program into something it can run, then runs one step of
 * it at a time.  The runtime owns the host memory: it allocates the arena
 * (Program.arena_bytes) and one block per persistent slot, and passes them in
 * a RunCtx.  Host backends (ref, cpu) hold compiled code only and run in
 * that memory; a device backend (cuda) keeps copies of its own, which the
 * runtime brings up to date through put and get. */
#ifndef NETC_BACKEND_H
#define NETC_BACKEND_H

#include <stdint.h>
#include <stdio.h>
#include "../passes/program.h"

typedef struct ThreadPool ThreadPool;

typedef struct {
    void *arena;            /* Program.arena_bytes, 64-byte aligned */
    void **slots;           /* one pointer per Program.slots entry */
    double lr;              /* SGD learning rate for this step */
    uint64_t seed;          /* dropout: mask = f(seed, dropout index, step, element) */
    uint64_t step;          /* global step number, counts from 0 */
    ThreadPool *pool;       /* may be NULL: run on the calling thread */
    int next;               /* start: take the slots put_next uploaded in place of the
                               ones put wrote (0: drop them, if any) */
} RunCtx;

typedef struct {
    int threads;            /* 0: all cores */
    int opt_level;          /* 0..3 */
    int verbose;
    const char *cpu;        /* cpu: --cpu NAME[,+feature,...]; NULL: $NETC_CPU or native */
    int device;             /* cuda: which device (modulo their number); a rank's local rank */
    int tf32;               /* cuda: --precision tf32, conv and linear products on the tensor cores */
} BackendOptions;

/* A data-parallel train program (one that stops at the gradients) as the
 * runtime's step sees it (runtime/dist_step.c): the gradients in the order
 * they become final, packed in buckets. */
typedef struct {
    int rank, size;
    int n;                      /* gradients */
    const int *grad, *param;    /* [n]: slots of p: each gradient and its parameter */
    int nbuckets;
    const int *bucket_end;      /* [nbuckets]: bucket b holds gradients [end[b-1], end[b]) */
    const int *bucket_kernel;   /* [nbuckets]: the kernel after which all of them are final */
    /* the runtime's collectives (MPI): rank 0's bytes to every rank, 0 or
     * -1; -1 when every rank passes the same h, else a rank that differs */
    int (*bcast)(void *buf, int64_t bytes);
    int (*agree)(uint64_t h);
    char why[256];              /* out: why the backend does not sum them itself */
} BackendDist;

typedef struct Backend {
    const char *name;       /* "ref", "cpu", "cuda" */
    const char *desc;
    /* Prepares p for running; *state receives the backend's compiled form. */
    int (*compile)(const Program *p, const BackendOptions *o, void **state, Diag *d);
    /* Runs every kernel of p once, in order. */
    int (*run)(void *state, const Program *p, RunCtx *ctx);
    void (*free)(void *state);
    /* Optional (NULL when absent): prints generated code (LLVM IR, CUDA C). */
    int (*dump)(void *state, FILE *f);
    /* Optional (NULL when absent): compiles a network's train and eval
     * programs together, so that code they share is compiled once. */
    int (*compile_pair)(const Program *train, const Program *eval, const BackendOptions *o, void **train_state,
                        void **eval_state, Diag *d);
    /* Optional (NULL when absent): a backend whose steps run in memory of
     * its own (cuda: the device's), where it keeps the arena and a copy of
     * every slot between runs.  The runtime calls put after it has written
     * slots on the host (the batch; weights it initialised or loaded) and
     * get before it reads them (the loss and logits; weights for a
     * checkpoint): which holds n slot indices of p.  0, or -1 with the
     * message printed. */
    int (*put)(void *state, const Program *p, RunCtx *ctx, const int *which, int n);
    int (*get)(void *state, const Program *p, RunCtx *ctx, const int *which, int n);
    /* Optional: the device memory the backend holds now, in bytes. */
    long long (*device_bytes)(void);
    /* Optional: for a data-parallel train program p (compiled as state),
     * the backend sums the gradients over the ranks itself (cuda: NCCL,
     * each bucket as soon as its kernel has run) and applies the SGD
     * update with the mean gradient in its run, so that the weights stay
     * where they are.  Called on every rank alike.  0: it does; 1: it
     * cannot here, with the reason in bd->why (the same answer on every
     * rank; the runtime then sums on the host); -1: an error, printed. */
    int (*dist_open)(void *state, const Program *p, BackendDist *bd, Diag *d);
    /* Optional (NULL when absent; run then does the whole step): a device
     * backend's run in two halves, so that the host works while the device
     * does.  start queues every kernel of p and returns without waiting;
     * finish waits for them.  Between the two the runtime may call
     * put_next: slot `slot` of p (the next batch) from host memory into a
     * second device copy of it, uploaded beside the running step, which
     * reads the first; the next start with ctx->next set takes the second
     * copy for the slot (the two swap roles).  Each 0, or -1 printed. */
    int (*start)(void *state, const Program *p, RunCtx *ctx);
    int (*finish)(void *state, const Program *p, RunCtx *ctx);
    int (*put_next)(void *state, const Program *p, int slot, const void *host, int64_t bytes);
} Backend;

/* codegen/backend.c: the registry of backends built into this binary. */
const Backend *backend_find(const char *name);
const Backend *backend_default(void);  /* "cpu" when built with LLVM, else "ref" */
int backend_count(void);
const Backend *backend_at(int i);
/* Adds an optional backend (cpu, cuda); called once at start-up by the
 * program that links it.  netc_register_backends() in tools/ does this. */
void backend_register(const Backend *b);

extern const Backend backend_ref;     /* codegen/ref.c, float */
extern const Backend backend_ref64;   /* codegen/ref.c, double (gradient checks) */
extern const Backend backend_cuda;    /* codegen/cuda/cuda_backend.c: NVRTC and libcuda.so.1 at run time */

#endif
