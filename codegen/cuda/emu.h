/* emu.h - the emulated device: what generated CUDA C needs to compile as
 * host C and run on the calling thread.
 *
 * A launch runs its blocks one after another.  The threads of a block run
 * as fibers (ucontext), one at a time: a thread runs until it returns or
 * waits at a barrier (__syncthreads, __syncwarp, a shuffle), and the block
 * goes on with its other threads until the barrier completes.  A fiber
 * whose thread returns takes the next thread not yet started, so a kernel
 * that never waits runs a whole block on one fiber, thread after thread,
 * as plain calls.  Fibers never run at once: a read-modify-write between
 * barriers is atomic, and every write is seen by every later read (the
 * emulation cannot show a race the hardware would, only the missing
 * barriers that sequential order exposes).
 *
 * What CUDA defines is followed as the PTX manual states it:
 *   - __syncthreads waits for every thread of the block that has not
 *     returned (a thread that returned no longer takes part, as on the
 *     hardware); a barrier that can never complete aborts with a message.
 *   - Warps are 32 consecutive threads of the block in x, then y, then z
 *     order; a lane is that index % 32.  __shfl*_sync(mask, v, b[, width])
 *     waits for the lanes of mask that have not returned, then reads the
 *     value the source lane gave to the same call (shfl.sync's lane rules,
 *     width segments included); for float, double and the integer types.
 *     Lanes of one warp waiting at once with different masks abort.
 *   - atomicAdd on float, double, int, unsigned, unsigned long long returns
 *     the old value; the float one flushes subnormal inputs and results to
 *     a signed zero, as atom.add.f32 does on global memory.
 *   - netc_tf32(x) rounds to tf32 (10 mantissa bits, low 13 bits zero) as
 *     cvt.rna.tf32.f32 does: to nearest, ties away from zero; inf and NaN
 *     lose their low 13 bits (what the hardware's code for it does).
 *   - __shared__ arrays are static: blocks run one after another, so one
 *     copy serves every block.  Dynamic (extern) shared memory is not
 *     emulated.
 * One launch at a time per process.  netc_emu_launch (1-D) and
 * netc_emu_launch3 are the entries a host program looks up with dlsym,
 * beside the kernels themselves. */
#ifndef NETC_CUDA_EMU_H
#define NETC_CUDA_EMU_H

/* ucontext and MAP_ANONYMOUS are outside ISO C: -std=c11 hides them.  A
 * fiber is entered the first time by setcontext and after that by
 * _longjmp, which keeps the signal mask (swapcontext makes a system call
 * for it at every switch: a tiled kernel switches twice per thread per
 * slice); _FORTIFY_SOURCE's longjmp check refuses jumps between stacks. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#undef _FORTIFY_SOURCE

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

typedef unsigned long long u64;
typedef struct { unsigned x, y, z; } netc_dim3;

static netc_dim3 threadIdx, blockIdx, blockDim, gridDim;
enum { warpSize = 32 };

#define KERNEL void
#define DEV static inline
#define NETC_INF ((float)INFINITY)
#define NETC_NAN ((float)NAN)
#define __shared__ static

typedef void (*netc_emu_fn)(char *, char *, void **, float, u64, u64);

/* ---- fibers ---- */

enum { NETC_EMU_STACK = 256 << 10 };

typedef struct NetcFiber {
    ucontext_t uc;          /* its start */
    jmp_buf jb;             /* where it waits */
    int started;
    char *map;              /* guard page, then the stack */
    unsigned tid;           /* its thread: linear index in the block */
    struct NetcFiber *next; /* free list */
} NetcFiber;

typedef struct {
    uint32_t live;          /* lanes that have not returned */
    uint32_t arrived, need; /* lanes at the pending barrier; the mask it waits for */
    unsigned gen;           /* barriers completed: a shuffle writes half gen & 1 */
    u64 x[2][32];           /* what each lane gave its shuffle */
    NetcFiber *wait[32];
} NetcWarp;

static struct {
    netc_emu_fn f;
    char *A, *I;
    void **S;
    float lr;
    u64 seed, step;
    unsigned n, next, exited;   /* threads in a block; the next to start; those returned */
    int slow;                   /* a thread of this block has waited (else exited = next - 1) */
    int done;                   /* the last block has finished */
    NetcWarp *warp;             /* (n + 31) / 32 */
    NetcFiber **wait;           /* at __syncthreads, in arrival order */
    unsigned nwait;
    NetcFiber **ready;          /* released, to resume: a ring of n */
    unsigned rhead, rcount;
    NetcFiber *cur, *free;
    NetcFiber **all;            /* every fiber of the launch, to unmap */
    unsigned nall;
    jmp_buf main;               /* the scheduler, between fibers */
} netc_emu;

static void netc_emu_die(const char *why) {
    fprintf(stderr, "netc emu: block (%u,%u,%u): %s\n", blockIdx.x, blockIdx.y, blockIdx.z, why);
    abort();
}

static void netc_emu_ids(unsigned t) {
    threadIdx.x = t % blockDim.x;
    threadIdx.y = t / blockDim.x % blockDim.y;
    threadIdx.z = t / (blockDim.x * blockDim.y);
}

/* The first wait in a block: until now the block's threads ran one after
 * another on one fiber, so those before the waiting one have returned and
 * no barrier is pending; from here on every return is counted. */
static void netc_emu_slow(void) {
    unsigned n = netc_emu.n, t = netc_emu.cur->tid;
    netc_emu.slow = 1;
    netc_emu.exited = t;
    for (unsigned k = 0; k * 32 < n; k++) {
        NetcWarp *w = &netc_emu.warp[k];
        unsigned lo = t > k * 32 ? t - k * 32 : 0, hi = n - k * 32 < 32 ? n - k * 32 : 32;
        w->live = lo >= hi ? 0 : (uint32_t)((1ull << hi) - (1ull << lo)); /* lanes lo..hi-1 */
        w->arrived = 0;
        w->gen = 0;
    }
}

/* The current thread waits: back to the scheduler until released. */
static void netc_emu_yield(void) {
    NetcFiber *self = netc_emu.cur;
    if (!_setjmp(self->jb)) _longjmp(netc_emu.main, 1);
    netc_emu_ids(self->tid);
}

static void netc_emu_wake(NetcFiber *fb) {
    if (fb == netc_emu.cur) return; /* the releasing thread goes on */
    netc_emu.ready[(netc_emu.rhead + netc_emu.rcount++) % netc_emu.n] = fb;
}

static void netc_emu_block_release(void) {
    for (unsigned i = 0; i < netc_emu.nwait; i++) netc_emu_wake(netc_emu.wait[i]);
    netc_emu.nwait = 0;
}

static void netc_emu_warp_release(NetcWarp *w) {
    uint32_t a = w->arrived;
    w->arrived = 0;
    w->gen++;
    for (unsigned l = 0; l < 32; l++)
        if (a >> l & 1) netc_emu_wake(w->wait[l]);
}

static void netc_emu_syncthreads(void) {
    if (!netc_emu.slow) netc_emu_slow();
    netc_emu.wait[netc_emu.nwait++] = netc_emu.cur;
    if (netc_emu.nwait < netc_emu.n - netc_emu.exited) netc_emu_yield();
    else netc_emu_block_release();
}

/* A barrier among the lanes of mask in the current thread's warp. */
static void netc_emu_warp_sync(uint32_t mask) {
    if (!netc_emu.slow) netc_emu_slow();
    unsigned t = netc_emu.cur->tid, lane = t % 32;
    NetcWarp *w = &netc_emu.warp[t / 32];
    if (!w->arrived) w->need = mask;
    else if (w->need != mask) netc_emu_die("lanes of a warp wait at once with different masks (not emulated)");
    w->arrived |= 1u << lane;
    w->wait[lane] = netc_emu.cur;
    if (w->need & w->live & ~w->arrived) netc_emu_yield();
    else netc_emu_warp_release(w);
}

/* Thread t returned (counted once the block is slow): barriers waiting
 * only for it complete. */
static void netc_emu_exit(unsigned t) {
    NetcWarp *w = &netc_emu.warp[t / 32];
    netc_emu.exited++;
    w->live &= ~(1u << t % 32);
    if (w->arrived && !(w->need & w->live & ~w->arrived)) netc_emu_warp_release(w);
    if (netc_emu.nwait && netc_emu.nwait == netc_emu.n - netc_emu.exited) netc_emu_block_release();
}

/* The next block (x fastest), its threads not started; 0 after the last. */
static int netc_emu_advance(void) {
    if (++blockIdx.x == gridDim.x) {
        blockIdx.x = 0;
        if (++blockIdx.y == gridDim.y) {
            blockIdx.y = 0;
            if (++blockIdx.z == gridDim.z) {
                netc_emu.done = 1;
                return 0;
            }
        }
    }
    netc_emu.next = netc_emu.exited = netc_emu.nwait = 0;
    netc_emu.slow = 0;
    return 1;
}

/* A fiber's body: the block's threads not yet started, one after another,
 * and while none of them waits, the next blocks' too; then it is free
 * until the scheduler hands it more.  A fiber lives within one launch, so
 * the launch's arguments stay in locals. */
static void netc_emu_worker(void) {
    netc_emu_fn f = netc_emu.f;
    char *A = netc_emu.A, *I = netc_emu.I;
    void **S = netc_emu.S;
    float lr = netc_emu.lr;
    u64 seed = netc_emu.seed, step = netc_emu.step;
    unsigned n = netc_emu.n;
    int flat = blockDim.y == 1 && blockDim.z == 1;
    for (;;) {
        NetcFiber *self = netc_emu.cur;
        while (netc_emu.next < n) {
            unsigned t = netc_emu.next++;
            self->tid = t;
            if (flat) threadIdx.x = t;
            else netc_emu_ids(t);
            f(A, I, S, lr, seed, step);
            if (netc_emu.slow) netc_emu_exit(t);
        }
        if (!netc_emu.slow && netc_emu_advance()) continue;
        self->next = netc_emu.free;
        netc_emu.free = self;
        if (!_setjmp(self->jb)) _longjmp(netc_emu.main, 1);
    }
}

static NetcFiber *netc_emu_fiber(void) {
    NetcFiber *fb = netc_emu.free;
    if (fb) {
        netc_emu.free = fb->next;
        return fb;
    }
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    fb = calloc(1, sizeof *fb);
    NetcFiber **all = realloc(netc_emu.all, (netc_emu.nall + 1) * sizeof *all);
    char *m = mmap(NULL, page + NETC_EMU_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (!fb || !all || m == MAP_FAILED) netc_emu_die("no memory for a thread's stack");
    netc_emu.all = all;
    all[netc_emu.nall++] = fb;
    fb->map = m;
    mprotect(m, page, PROT_NONE); /* an overflow faults rather than corrupting a neighbour */
    if (getcontext(&fb->uc)) netc_emu_die("getcontext failed");
    fb->uc.uc_stack.ss_sp = m + page;
    fb->uc.uc_stack.ss_size = NETC_EMU_STACK;
    fb->uc.uc_link = NULL; /* the worker never returns */
    makecontext(&fb->uc, netc_emu_worker, 0);
    return fb;
}

/* Resumes released threads, else starts a fiber on the block's next
 * thread; a slow block with neither is finished, or stuck. */
static void netc_emu_schedule(void) {
    while (!netc_emu.done) {
        NetcFiber *fb;
        if (netc_emu.rcount) {
            fb = netc_emu.ready[netc_emu.rhead];
            netc_emu.rhead = (netc_emu.rhead + 1) % netc_emu.n;
            netc_emu.rcount--;
        } else if (netc_emu.next < netc_emu.n) fb = netc_emu_fiber();
        else {
            if (netc_emu.exited < netc_emu.n) {
                char why[96];
                snprintf(why, sizeof why, "%u of %u threads wait at barriers that cannot complete",
                         netc_emu.n - netc_emu.exited, netc_emu.n);
                netc_emu_die(why);
            }
            netc_emu_advance();
            continue;
        }
        netc_emu.cur = fb;
        if (!_setjmp(netc_emu.main)) {
            if (fb->started) _longjmp(fb->jb, 1);
            fb->started = 1;
            setcontext(&fb->uc);
        }
    }
}

static void netc_emu_run(netc_emu_fn f, netc_dim3 grid, netc_dim3 block, char *A, char *I, void **S, float lr,
                         u64 seed, u64 step) {
    unsigned n = block.x * block.y * block.z;
    if (!n || !grid.x || !grid.y || !grid.z) return;
    gridDim = grid, blockDim = block;
    blockIdx.x = blockIdx.y = blockIdx.z = 0;
    threadIdx.x = threadIdx.y = threadIdx.z = 0;
    netc_emu.f = f, netc_emu.A = A, netc_emu.I = I, netc_emu.S = S;
    netc_emu.lr = lr, netc_emu.seed = seed, netc_emu.step = step;
    netc_emu.n = n;
    netc_emu.next = netc_emu.exited = netc_emu.nwait = netc_emu.rhead = netc_emu.rcount = 0;
    netc_emu.slow = netc_emu.done = 0;
    netc_emu.warp = calloc((n + 31) / 32, sizeof *netc_emu.warp);
    netc_emu.wait = calloc(n, sizeof *netc_emu.wait);
    netc_emu.ready = calloc(n, sizeof *netc_emu.ready);
    if (!netc_emu.warp || !netc_emu.wait || !netc_emu.ready) netc_emu_die("out of memory");
    netc_emu_schedule();
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (unsigned i = 0; i < netc_emu.nall; i++) {
        munmap(netc_emu.all[i]->map, page + NETC_EMU_STACK);
        free(netc_emu.all[i]);
    }
    free(netc_emu.all);
    free(netc_emu.warp);
    free(netc_emu.wait);
    free(netc_emu.ready);
    netc_emu.all = NULL, netc_emu.nall = 0, netc_emu.free = netc_emu.cur = NULL;
}

void netc_emu_launch(netc_emu_fn f, unsigned grid, unsigned block, char *A, char *I, void **S, float lr, u64 seed,
                     u64 step);
void netc_emu_launch(netc_emu_fn f, unsigned grid, unsigned block, char *A, char *I, void **S, float lr, u64 seed,
                     u64 step) {
    netc_emu_run(f, (netc_dim3){grid, 1, 1}, (netc_dim3){block, 1, 1}, A, I, S, lr, seed, step);
}

void netc_emu_launch3(netc_emu_fn f, netc_dim3 grid, netc_dim3 block, char *A, char *I, void **S, float lr, u64 seed,
                      u64 step);
void netc_emu_launch3(netc_emu_fn f, netc_dim3 grid, netc_dim3 block, char *A, char *I, void **S, float lr, u64 seed,
                      u64 step) {
    netc_emu_run(f, grid, block, A, I, S, lr, seed, step);
}

/* ---- barriers and shuffles ---- */

#define __syncthreads() netc_emu_syncthreads()

/* __syncwarp() or __syncwarp(mask): the array's last element is the mask
 * given, else the full warp's. */
#define __syncwarp(...)                                                                                                \
    netc_emu_syncwarp((const unsigned[]){0xffffffffu, __VA_ARGS__},                                                  \
                      sizeof((const unsigned[]){0xffffffffu, __VA_ARGS__}) / sizeof(unsigned))
static void netc_emu_syncwarp(const unsigned *m, size_t n) { netc_emu_warp_sync(m[n - 1]); }

enum { NETC_SHFL_IDX, NETC_SHFL_UP, NETC_SHFL_DOWN, NETC_SHFL_XOR };

/* shfl.sync: c = ((32 - width) << 8) | clamp, clamp 0 for up and 31 else
 * (as CUDA's __shfl*_sync pass it); a source outside the lane's segment
 * gives the lane its own value. */
static u64 netc_emu_shfl(int mode, unsigned mask, u64 v, int b, int width) {
    if (!netc_emu.slow) netc_emu_slow(); /* before gen is read: it resets the warps */
    unsigned t = netc_emu.cur->tid;
    int lane = (int)(t % 32);
    NetcWarp *w = &netc_emu.warp[t / 32];
    unsigned half = w->gen & 1; /* a lane already at the next shuffle writes the other half */
    w->x[half][lane] = v;
    netc_emu_warp_sync(mask);
    int seg = (32 - width) & 31, clamp = mode == NETC_SHFL_UP ? 0 : 31, bv = b & 31;
    int maxl = (lane & seg) | (clamp & ~seg), j, ok;
    switch (mode) {
    case NETC_SHFL_UP: j = lane - bv, ok = j >= maxl; break;
    case NETC_SHFL_DOWN: j = lane + bv, ok = j <= maxl; break;
    case NETC_SHFL_XOR: j = lane ^ bv, ok = j <= maxl; break;
    default: j = (lane & seg) | (bv & ~seg), ok = j <= maxl; break;
    }
    return w->x[half][ok ? j : lane];
}

#define NETC_EMU_SHFL_T(name, T)                                                                                       \
    static T name(int mode, unsigned mask, T v, int b, int width) {                                                    \
        u64 u = 0;                                                                                                     \
        memcpy(&u, &v, sizeof v);                                                                                      \
        u = netc_emu_shfl(mode, mask, u, b, width);                                                                    \
        memcpy(&v, &u, sizeof v);                                                                                      \
        return v;                                                                                                      \
    }
NETC_EMU_SHFL_T(netc_emu_shfl_f, float)
NETC_EMU_SHFL_T(netc_emu_shfl_d, double)
NETC_EMU_SHFL_T(netc_emu_shfl_i, int)
NETC_EMU_SHFL_T(netc_emu_shfl_u, unsigned)
NETC_EMU_SHFL_T(netc_emu_shfl_l, long)
NETC_EMU_SHFL_T(netc_emu_shfl_ul, unsigned long)
NETC_EMU_SHFL_T(netc_emu_shfl_ll, long long)
NETC_EMU_SHFL_T(netc_emu_shfl_ull, unsigned long long)

/* The width is optional (32): the trailing 32, 0 fill it when absent. */
#define NETC_EMU_SHFL(mode, m, v, b, w, ...)                                                                           \
    _Generic((v), float: netc_emu_shfl_f, double: netc_emu_shfl_d, int: netc_emu_shfl_i, unsigned: netc_emu_shfl_u,    \
             long: netc_emu_shfl_l, unsigned long: netc_emu_shfl_ul, long long: netc_emu_shfl_ll,                      \
             unsigned long long: netc_emu_shfl_ull)(mode, m, v, b, w)
#define __shfl_sync(...) NETC_EMU_SHFL(NETC_SHFL_IDX, __VA_ARGS__, 32, 0)
#define __shfl_up_sync(...) NETC_EMU_SHFL(NETC_SHFL_UP, __VA_ARGS__, 32, 0)
#define __shfl_down_sync(...) NETC_EMU_SHFL(NETC_SHFL_DOWN, __VA_ARGS__, 32, 0)
#define __shfl_xor_sync(...) NETC_EMU_SHFL(NETC_SHFL_XOR, __VA_ARGS__, 32, 0)

/* ---- atomics ---- */

static float netc_emu_ftz(float x) { return fpclassify(x) == FP_SUBNORMAL ? copysignf(0.0f, x) : x; }
static float netc_emu_atomic_f(float *p, float v) {
    float o = *p;
    *p = netc_emu_ftz(netc_emu_ftz(o) + netc_emu_ftz(v));
    return o;
}
static double netc_emu_atomic_d(double *p, double v) {
    double o = *p;
    *p = o + v;
    return o;
}
static int netc_emu_atomic_i(int *p, int v) {
    int o = *p;
    *p = (int)((unsigned)o + (unsigned)v); /* wraps, as the hardware's */
    return o;
}
static unsigned netc_emu_atomic_u(unsigned *p, unsigned v) {
    unsigned o = *p;
    *p = o + v;
    return o;
}
static unsigned long long netc_emu_atomic_ull(unsigned long long *p, unsigned long long v) {
    unsigned long long o = *p;
    *p = o + v;
    return o;
}
#define atomicAdd(p, v)                                                                                                \
    _Generic((p), float *: netc_emu_atomic_f, double *: netc_emu_atomic_d, int *: netc_emu_atomic_i,                   \
             unsigned *: netc_emu_atomic_u, unsigned long long *: netc_emu_atomic_ull)((p), (v))

/* ---- tf32 ---- */

/* cvt.rna.tf32.f32 as the hardware computes it: a finite x gets half a
 * tf32 ulp added to its bits (the carry runs into the exponent, and past
 * the largest float into inf), then the low 13 bits go. */
DEV float netc_tf32(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7f800000u) != 0x7f800000u) u += 0x1000u;
    u &= 0xffffe000u;
    memcpy(&x, &u, sizeof x);
    return x;
}

#endif
