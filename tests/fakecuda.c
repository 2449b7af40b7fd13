/* fakecuda.c - the fake CUDA driver (fakecuda.h). */
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fakecuda.h"
#include "testutil.h"

FakeCuda fk;

static int f_init(unsigned f) { (void)f; return 0; }
static int f_count(int *n) { *n = 1; return 0; }
static int f_get(int *dv, int i) { *dv = i; return 0; }
static int f_ctx_create(void **c, unsigned f, int dv) { (void)f, (void)dv; fk.ctxs++; *c = &fk; return 0; }
static int f_ctx_destroy(void *c) { (void)c; fk.ctxs--; return 0; }
static int f_alloc(CuPtr *p, size_t n) {
    if (fk.alloc_left == 0) return 2;
    if (fk.alloc_left > 0) fk.alloc_left--;
    void *m = aligned_alloc(64, (n + 127) / 64 * 64);
    if (!m) return 2;
    memset(m, 0, (n + 127) / 64 * 64);
    fk.mems++;
    *p = (CuPtr)(uintptr_t)m;
    return 0;
}
static int f_free(CuPtr p) { free((void *)(uintptr_t)p); fk.mems--; return 0; }
/* the image is CUDA C source: compiled for the host, as test_cuda_emu does */
static int f_load(void **m, const void *img, unsigned n, int *o, void **v) {
    (void)n, (void)o, (void)v;
    void *h = tu_host_so(img, NULL);
    if (!h) return 218;
    Module *mod = calloc(1, sizeof *mod);
    mod->h = h;
    void *l = dlsym(h, "netc_emu_launch");
    memcpy(&mod->launch, &l, sizeof l);
    fk.mods++;
    *m = mod;
    return 0;
}
static int f_unload(void *m) {
    Module *mod = m;
    for (int i = 0; i < fk.nfn; i++)
        if (fk.fn[i].m == mod) fk.fn[i].m = NULL;
    dlclose(mod->h);
    free(mod);
    fk.mods--;
    return 0;
}
static int f_function(void **fn, void *m, const char *name) {
    Module *mod = m;
    void *f = dlsym(mod->h, name);
    if (!f || fk.nfn == MAX_FNS) return 500;
    fk.fn[fk.nfn].fn = f;
    fk.fn[fk.nfn++].m = mod;
    *fn = f;
    return 0;
}
static int f_launch(void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned sh,
                    void *st, void **args, void **extra) {
    (void)gy, (void)gz, (void)by, (void)bz, (void)sh, (void)st, (void)extra;
    if (fk.launch_rc) return fk.launch_rc;
    Module *mod = NULL;
    for (int i = fk.nfn - 1; i >= 0 && !mod; i--)
        if (fk.fn[i].fn == fn) mod = fk.fn[i].m;
    if (!mod) return 400;
    fk.launches++;
    fk.pending++;
    KernelFn k;
    memcpy(&k, &fn, sizeof k);
    mod->launch(k, gx, bx, (char *)(uintptr_t) * (CuPtr *)args[0], (char *)(uintptr_t) * (CuPtr *)args[1],
                (void **)(uintptr_t) * (CuPtr *)args[2], *(float *)args[3], *(unsigned long long *)args[4],
                *(unsigned long long *)args[5]);
    return 0;
}
static int f_sync(void) { fk.pending = 0; return 0; }
static int f_error_name(int rc, const char **s) {
    *s = rc == 2 ? "CUDA_ERROR_OUT_OF_MEMORY" : rc == 719 ? "CUDA_ERROR_LAUNCH_FAILED" : "CUDA_ERROR_UNKNOWN";
    return 0;
}
static int f_htod(CuPtr d, const void *h, size_t n) { memcpy((void *)(uintptr_t)d, h, n); return 0; }
static int f_dtoh(void *h, CuPtr d, size_t n) { memcpy(h, (const void *)(uintptr_t)d, n); return 0; }

/* events: a counter stands for the time, one unit (1 ms) a launch */
static int f_ev_create(void **e, unsigned f) { (void)f; *e = calloc(1, sizeof(float)); fk.mems++; return 0; }
static int f_ev_record(void *e, void *st) { (void)st; *(float *)e = (float)fk.launches; return 0; }
static int f_ev_sync(void *e) { (void)e; return 0; }
static int f_ev_elapsed(float *ms, void *a, void *b) { *ms = *(float *)b - *(float *)a; return 0; }
static int f_ev_destroy(void *e) { free(e); fk.mems--; return 0; }

/* streams: the launches run at once, in order, so a wait has nothing to do */
static int f_stream_create(void **s, unsigned f) { (void)f; *s = calloc(1, 1); fk.mems++; return 0; }
static int f_stream_destroy(void *s) { free(s); fk.mems--; return 0; }
static int f_stream_wait(void *s, void *e, unsigned f) { (void)s, (void)e, (void)f; return 0; }
static int f_ev_query(void *e) { (void)e; return 0; }
/* an upload on a stream: done at once, and counted (beside a step or not) */
static int f_htod_async(CuPtr d, const void *h, size_t n, void *st) {
    (void)st;
    fk.async_copies++;
    fk.async_beside += fk.pending > 0;
    return f_htod(d, h, n);
}

const CudaDriver fake_driver = {NULL, f_init, f_count, f_get, f_ctx_create, f_ctx_destroy, f_alloc, f_free, f_load,
                                f_unload, f_function, f_launch, f_sync, f_error_name, f_htod, f_dtoh, f_ev_create,
                                f_ev_record, f_ev_sync, f_ev_elapsed, f_ev_destroy, 1, f_stream_create,
                                f_stream_destroy, f_stream_wait, f_ev_query, f_htod_async};

void fake_reset(void) {
    memset(&fk, 0, sizeof fk);
    fk.alloc_left = -1;
}

