/* fakecuda.h - a fake CUDA driver for tests: device memory is host
 * memory, a module image is the generated CUDA C, compiled for the host
 * with codegen/cuda/emu.h (tu_host_so), and a launch runs it at once
 * (the emulated device).  Counts what is held, so that a test can check
 * that nothing is left; can fail an allocation or a launch on request. */
#ifndef NETC_TESTS_FAKECUDA_H
#define NETC_TESTS_FAKECUDA_H

#include "codegen/cuda/driver.h"

typedef void (*KernelFn)(char *, char *, void **, float, unsigned long long, unsigned long long);
typedef void (*EmuLaunch)(KernelFn, unsigned, unsigned, char *, char *, void **, float, unsigned long long,
                          unsigned long long);

enum { MAX_FNS = 4096 };
typedef struct {
    void *h;
    EmuLaunch launch;
} Module;

typedef struct {
    int ctxs, mems, mods;   /* held now */
    int alloc_left;         /* allocations until one fails (-1: never) */
    int launch_rc;          /* a launch's result (0: it runs) */
    int launches;
    int pending;            /* launches since the last synchronize */
    int async_copies;       /* cuMemcpyHtoDAsync calls, and those made while */
    int async_beside;       /* launches were pending (beside a running step) */
    int nfn;
    struct { void *fn; Module *m; } fn[MAX_FNS];
} FakeCuda;

extern FakeCuda fk;
extern const CudaDriver fake_driver;
/* Nothing held, nothing to fail. */
void fake_reset(void);

#endif
