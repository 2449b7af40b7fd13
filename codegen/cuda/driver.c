/* driver.c - the Driver API through a function table (contract in driver.h). */
#include "driver.h"

#include <dlfcn.h>
#include <string.h>

enum { CUDA_ERROR_OUT_OF_MEMORY = 2, CUDA_ERROR_NO_DEVICE = 100 };

int cg_cuda_driver_open(CudaDriver *t, Diag *d) {
    memset(t, 0, sizeof *t);
    t->lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!t->lib) return diag_error_noloc(d, "no CUDA driver (libcuda.so.1) on this machine");
    static const char *names[] = {"cuInit", "cuDeviceGetCount", "cuDeviceGet", "cuCtxCreate_v2", "cuCtxDestroy_v2",
                                  "cuMemAlloc_v2", "cuMemFree_v2", "cuModuleLoadDataEx", "cuModuleUnload",
                                  "cuModuleGetFunction", "cuLaunchKernel", "cuCtxSynchronize", "cuGetErrorName",
                                  "cuMemcpyHtoD_v2", "cuMemcpyDtoH_v2", "cuEventCreate", "cuEventRecord",
                                  "cuEventSynchronize", "cuEventElapsedTime", "cuEventDestroy_v2"};
    void **slot = (void **)&t->init;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!(slot[i] = dlsym(t->lib, names[i]))) {
            cg_cuda_driver_close(t);
            return diag_error_noloc(d, "the CUDA driver (libcuda.so.1) lacks %s", names[i]);
        }
    static const char *streams[] = {"cuStreamCreate", "cuStreamDestroy_v2", "cuStreamWaitEvent", "cuEventQuery"};
    void **more = (void **)&t->stream_create;
    for (size_t i = 0; i < sizeof streams / sizeof *streams; i++) more[i] = dlsym(t->lib, streams[i]);
    *(void **)&t->memcpy_htod_async = dlsym(t->lib, "cuMemcpyHtoDAsync_v2");
    return 0;
}

void cg_cuda_driver_close(CudaDriver *t) {
    if (t->lib) dlclose(t->lib);
    memset(t, 0, sizeof *t);
}

const char *cg_cuda_error_name(const CudaDriver *t, int rc) {
    const char *s = NULL;
    if (t->error_name && t->error_name(rc, &s) == 0 && s) return s;
    return "unknown CUDA error";
}

static int fail(const CudaDriver *t, Diag *d, const char *call, int rc) {
    return diag_error_noloc(d, "%s failed: %s (%d)", call, cg_cuda_error_name(t, rc), rc);
}

int cg_cuda_context(const CudaDriver *t, int ordinal, void **ctx, Diag *d) {
    int rc, n = 0, device;
    *ctx = NULL;
    if ((rc = t->init(0))) {
        if (rc == CUDA_ERROR_NO_DEVICE) return diag_error_noloc(d, "no CUDA device");
        return fail(t, d, "cuInit", rc);
    }
    if ((rc = t->device_count(&n))) return fail(t, d, "cuDeviceGetCount", rc);
    if (n == 0) return diag_error_noloc(d, "no CUDA device");
    if ((rc = t->device_get(&device, (ordinal > 0 ? ordinal : 0) % n))) return fail(t, d, "cuDeviceGet", rc);
    if ((rc = t->ctx_create(ctx, 0, device))) {
        *ctx = NULL;
        return fail(t, d, "cuCtxCreate", rc);
    }
    return 0;
}

int cg_cuda_alloc(const CudaDriver *t, size_t bytes, CuPtr *p, Diag *d) {
    int rc = t->mem_alloc(p, bytes ? bytes : 1);
    if (!rc) return 0;
    *p = 0;
    if (rc == CUDA_ERROR_OUT_OF_MEMORY) return diag_error_noloc(d, "out of device memory (%zu bytes)", bytes);
    return fail(t, d, "cuMemAlloc", rc);
}

int cg_cuda_module(const CudaDriver *t, const void *image, void **module, Diag *d) {
    int rc = t->module_load(module, image, 0, NULL, NULL);
    if (!rc) return 0;
    *module = NULL;
    return fail(t, d, "cuModuleLoadDataEx", rc);
}

int cg_cuda_function(const CudaDriver *t, void *module, const char *name, void **fn, Diag *d) {
    int rc = t->module_function(fn, module, name);
    if (!rc) return 0;
    return diag_error_noloc(d, "kernel %s: cuModuleGetFunction failed: %s (%d)", name, cg_cuda_error_name(t, rc), rc);
}

int cg_cuda_copy(const CudaDriver *t, CuPtr dev, void *host, size_t bytes, int up, Diag *d) {
    int rc = up ? t->memcpy_htod(dev, host, bytes) : t->memcpy_dtoh(host, dev, bytes);
    if (!rc) return 0;
    return fail(t, d, up ? "cuMemcpyHtoD" : "cuMemcpyDtoH", rc);
}

int cg_cuda_device_open(const CudaDriver *t, size_t bytes, const void *image, CudaDevice *dev, Diag *d) {
    memset(dev, 0, sizeof *dev);
    dev->t = t;
    if (cg_cuda_context(t, 0, &dev->ctx, d)) return -1;
    if (cg_cuda_alloc(t, bytes, &dev->mem, d)) {
        cg_cuda_device_close(dev);
        return -1;
    }
    dev->bytes = bytes;
    if (cg_cuda_module(t, image, &dev->module, d)) {
        cg_cuda_device_close(dev);
        return -1;
    }
    return 0;
}

int cg_cuda_device_launch(CudaDevice *dev, const char *name, unsigned grid, unsigned block, void **args, Diag *d) {
    const CudaDriver *t = dev->t;
    void *fn;
    int rc;
    if ((rc = t->module_function(&fn, dev->module, name)))
        return diag_error_noloc(d, "kernel %s: cuModuleGetFunction failed: %s (%d)", name, cg_cuda_error_name(t, rc), rc);
    if ((rc = t->launch(fn, grid, 1, 1, block, 1, 1, 0, NULL, args, NULL)))
        return diag_error_noloc(d, "kernel %s: cuLaunchKernel failed: %s (%d)", name, cg_cuda_error_name(t, rc), rc);
    if ((rc = t->synchronize()))
        return diag_error_noloc(d, "kernel %s: failed while running: %s (%d)", name, cg_cuda_error_name(t, rc), rc);
    return 0;
}

void cg_cuda_device_close(CudaDevice *dev) {
    const CudaDriver *t = dev->t;
    if (!t) return;
    if (dev->module) t->module_unload(dev->module);
    if (dev->mem) t->mem_free(dev->mem);
    if (dev->ctx) t->ctx_destroy(dev->ctx);
    memset(dev, 0, sizeof *dev);
}
