/* fakelibcuda.c - a libcuda.so.1 for tests of programs that open the driver
 * themselves (`netc train --target cuda`, and the executables of `netc
 * compile --target cuda`): the Driver API's entry points over the fake
 * driver of fakecuda.c (device memory is host memory, kernels run on the
 * emulated device).
 *
 * A module image is PTX here.  The source it was compiled from is looked up
 * in the folder $FAKECUDA_MODULES: NAME.ptx beside NAME.cu (what `netc dump
 * --ptx` and `netc dump --cuda` print), and NAME.ptx must be the image byte
 * for byte; NAME.cu is then compiled for the host and run.  An image not
 * found there is refused (CUDA_ERROR_INVALID_PTX, 218).  Each load appends a line
 * to $FAKECUDA_LOG: "load NAME nvrtc=N", N 1 when NVRTC is loaded in the
 * process at that moment. */
#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fakecuda.h"
#include "testutil.h"

#define API __attribute__((visibility("default")))

/* The source (malloc'd) whose PTX in dir is image, and its NAME; NULL if none. */
static char *source_of(const char *image, char *name, size_t nlen) {
    const char *dir = getenv("FAKECUDA_MODULES");
    DIR *dp = dir ? opendir(dir) : NULL;
    if (!dp) return NULL;
    char *src = NULL;
    struct dirent *e;
    size_t ilen = strlen(image);
    while (!src && (e = readdir(dp))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".ptx")) continue;
        char path[4096];
        size_t n;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        char *ptx = tu_read(path, &n);
        if (ptx && n == ilen && !memcmp(ptx, image, n)) {
            snprintf(name, nlen, "%.*s", (int)(l - 4), e->d_name);
            snprintf(path, sizeof path, "%s/%s.cu", dir, name);
            src = tu_read(path, &n);
        }
        free(ptx);
    }
    closedir(dp);
    return src;
}

API int cuModuleLoadDataEx(void **m, const void *image, unsigned n, int *o, void **v) {
    char name[256] = "?";
    char *src = source_of(image, name, sizeof name);
    const char *log = getenv("FAKECUDA_LOG");
    FILE *f = log ? fopen(log, "a") : NULL;
    if (f) {
        void *nv = dlopen("libnvrtc.so.13", RTLD_NOW | RTLD_NOLOAD);
        if (!nv) nv = dlopen("libnvrtc.so", RTLD_NOW | RTLD_NOLOAD);
        fprintf(f, "load %s nvrtc=%d\n", src ? name : "(unknown PTX)", nv != NULL);
        if (nv) dlclose(nv);
        fclose(f);
    }
    if (!src) return 218;
    int rc = fake_driver.module_load(m, src, n, o, v);
    free(src);
    return rc;
}

API int cuInit(unsigned f) { return fake_driver.init(f); }
API int cuDeviceGetCount(int *n) { return fake_driver.device_count(n); }
API int cuDeviceGet(int *dv, int i) { return fake_driver.device_get(dv, i); }
API int cuCtxCreate_v2(void **c, unsigned f, int dv) { return fake_driver.ctx_create(c, f, dv); }
API int cuCtxDestroy_v2(void *c) { return fake_driver.ctx_destroy(c); }
API int cuMemAlloc_v2(CuPtr *p, size_t n) { return fake_driver.mem_alloc(p, n); }
API int cuMemFree_v2(CuPtr p) { return fake_driver.mem_free(p); }
API int cuModuleUnload(void *m) { return fake_driver.module_unload(m); }
API int cuModuleGetFunction(void **fn, void *m, const char *name) { return fake_driver.module_function(fn, m, name); }
API int cuLaunchKernel(void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                       unsigned sh, void *st, void **args, void **extra) {
    return fake_driver.launch(fn, gx, gy, gz, bx, by, bz, sh, st, args, extra);
}
API int cuCtxSynchronize(void) { return fake_driver.synchronize(); }
API int cuGetErrorName(int rc, const char **s) { return fake_driver.error_name(rc, s); }
API int cuMemcpyHtoD_v2(CuPtr d, const void *h, size_t n) { return fake_driver.memcpy_htod(d, h, n); }
API int cuMemcpyDtoH_v2(void *h, CuPtr d, size_t n) { return fake_driver.memcpy_dtoh(h, d, n); }
API int cuEventCreate(void **e, unsigned f) { return fake_driver.event_create(e, f); }
API int cuEventRecord(void *e, void *st) { return fake_driver.event_record(e, st); }
API int cuEventSynchronize(void *e) { return fake_driver.event_synchronize(e); }
API int cuEventElapsedTime(float *ms, void *a, void *b) { return fake_driver.event_elapsed(ms, a, b); }
API int cuEventDestroy_v2(void *e) { return fake_driver.event_destroy(e); }
API int cuStreamCreate(void **s, unsigned f) { return fake_driver.stream_create(s, f); }
API int cuStreamDestroy_v2(void *s) { return fake_driver.stream_destroy(s); }
API int cuStreamWaitEvent(void *s, void *e, unsigned f) { return fake_driver.stream_wait_event(s, e, f); }
API int cuEventQuery(void *e) { return fake_driver.event_query(e); }
/* each upload on a stream appends "htod_async beside=N" to $FAKECUDA_LOG:
 * N 1 when launches were pending (issued while a step ran) */
API int cuMemcpyHtoDAsync_v2(CuPtr d, const void *h, size_t n, void *st) {
    int beside = fk.pending > 0;
    const char *log = getenv("FAKECUDA_LOG");
    FILE *f = log ? fopen(log, "a") : NULL;
    if (f) {
        fprintf(f, "htod_async beside=%d\n", beside);
        fclose(f);
    }
    return fake_driver.memcpy_htod_async(d, h, n, st);
}
/* NVRTC asks a loaded driver for its private tables: there are none
 * (CUDA_ERROR_NOT_SUPPORTED), so it compiles on its own */
API int cuGetExportTable(const void **table, const void *id) {
    (void)id;
    *table = NULL;
    return 801;
}

/* fk's limits (no failures) before the first call */
__attribute__((constructor)) static void fake_start(void) { fake_reset(); }
