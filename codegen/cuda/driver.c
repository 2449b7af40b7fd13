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
                                  "cuModuleGetFunction", "cuLaunchKernel", "cuCtxSynchronize", "cuGetErrorName"};
    void **slot = (void **)&t->init;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!(slot[i] = dlsym(t->lib, names[i]))) {
            cg_cuda_driver_close(t);
            return diag_error_noloc(d, "the CUDA driver (libcuda.so.1) lacks %s", names[i]);
        }
    return 0;
}

void cg_cuda_driver_close(CudaDriver *t) {
    if (t->lib) dlclose(t->lib);
    memset(t, 0, sizeof *t);
}

static const char *err_name(const CudaDriver *t, int rc) {
    const char *s = NULL;
    if (t->error_name && t->error_name(rc, &s) == 0 && s) return s;
    return "unknown CUDA error";
}

static int fail(const CudaDriver *t, Diag *d, const char *call, int rc) {
    return diag_error_noloc(d, "%s failed: %s (%d)", call, err_name(t, rc), rc);
}

int cg_cuda_device_open(const CudaDriver *t, size_t bytes, const void *image, CudaDevice *dev, Diag *d) {
    memset(dev, 0, sizeof *dev);
    dev->t = t;
    int rc, n = 0, device;
    if ((rc = t->init(0))) {
        if (rc == CUDA_ERROR_NO_DEVICE) return diag_error_noloc(d, "no CUDA device");
        return fail(t, d, "cuInit", rc);
    }
    if ((rc = t->device_count(&n))) return fail(t, d, "cuDeviceGetCount", rc);
    if (n == 0) return diag_error_noloc(d, "no CUDA device");
    if ((rc = t->device_get(&device, 0))) return fail(t, d, "cuDeviceGet", rc);
    if ((rc = t->ctx_create(&dev->ctx, 0, device))) {
        dev->ctx = NULL;
        return fail(t, d, "cuCtxCreate", rc);
    }
    if ((rc = t->mem_alloc(&dev->mem, bytes ? bytes : 1))) {
        dev->mem = 0;
        cg_cuda_device_close(dev);
        if (rc == CUDA_ERROR_OUT_OF_MEMORY)
            return diag_error_noloc(d, "out of device memory (%zu bytes for the arena and parameters)", bytes);
        return fail(t, d, "cuMemAlloc", rc);
    }
    dev->bytes = bytes;
    if ((rc = t->module_load(&dev->module, image, 0, NULL, NULL))) {
        dev->module = NULL;
        cg_cuda_device_close(dev);
        return fail(t, d, "cuModuleLoadDataEx", rc);
    }
    return 0;
}

int cg_cuda_device_launch(CudaDevice *dev, const char *name, unsigned grid, unsigned block, void **args, Diag *d) {
    const CudaDriver *t = dev->t;
    void *fn;
    int rc;
    if ((rc = t->module_function(&fn, dev->module, name)))
        return diag_error_noloc(d, "kernel %s: cuModuleGetFunction failed: %s (%d)", name, err_name(t, rc), rc);
    if ((rc = t->launch(fn, grid, 1, 1, block, 1, 1, 0, NULL, args, NULL)))
        return diag_error_noloc(d, "kernel %s: cuLaunchKernel failed: %s (%d)", name, err_name(t, rc), rc);
    if ((rc = t->synchronize()))
        return diag_error_noloc(d, "kernel %s: failed while running: %s (%d)", name, err_name(t, rc), rc);
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
