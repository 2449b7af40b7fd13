/* test_cuda_driver.c - the Driver API layer against a fake driver table:
 * no device, no devices counted, out of device memory, a module the driver
 * refuses, a failing launch, a kernel failing while it runs; each must fail
 * with its message and release everything it acquired (the fake counts
 * live contexts, allocations and modules).  Where libcuda.so.1 is absent,
 * opening the real driver must say so. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/cuda/driver.h"

static struct { int init_rc, count, alloc_rc, load_rc, launch_rc, sync_rc; int ctxs, mems, mods, launches; } fk;

static int f_init(unsigned f) { (void)f; return fk.init_rc; }
static int f_count(int *n) { *n = fk.count; return 0; }
static int f_get(int *dv, int i) { *dv = i; return 0; }
static int f_ctx_create(void **c, unsigned f, int dv) { (void)f, (void)dv; fk.ctxs++; *c = &fk; return 0; }
static int f_ctx_destroy(void *c) { (void)c; fk.ctxs--; return 0; }
static int f_alloc(CuPtr *p, size_t n) { (void)n; if (fk.alloc_rc) return fk.alloc_rc; fk.mems++; *p = 4096; return 0; }
static int f_free(CuPtr p) { (void)p; fk.mems--; return 0; }
static int f_load(void **m, const void *img, unsigned n, int *o, void **v) {
    (void)img, (void)n, (void)o, (void)v;
    if (fk.load_rc) return fk.load_rc;
    fk.mods++;
    *m = &fk;
    return 0;
}
static int f_unload(void *m) { (void)m; fk.mods--; return 0; }
static int f_function(void **fn, void *m, const char *name) { (void)m; *fn = (void *)name; return strcmp(name, "k0_0") ? 500 : 0; }
static int f_launch(void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned sh,
                    void *st, void **args, void **extra) {
    (void)fn, (void)gx, (void)gy, (void)gz, (void)bx, (void)by, (void)bz, (void)sh, (void)st, (void)args, (void)extra;
    fk.launches++;
    return fk.launch_rc;
}
static int f_sync(void) { return fk.sync_rc; }
static int f_error_name(int rc, const char **s) {
    *s = rc == 2 ? "CUDA_ERROR_OUT_OF_MEMORY" : rc == 719 ? "CUDA_ERROR_LAUNCH_FAILED" : rc == 218 ? "CUDA_ERROR_INVALID_PTX"
       : rc == 500 ? "CUDA_ERROR_NOT_FOUND" : "CUDA_ERROR_UNKNOWN";
    return 0;
}

static const CudaDriver fake = {NULL, f_init, f_count, f_get, f_ctx_create, f_ctx_destroy, f_alloc, f_free, f_load,
                                f_unload, f_function, f_launch, f_sync, f_error_name, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL};

static char *msg;
static size_t msglen;

/* Opens the fake device (and launches `kernel` when not NULL) and closes
 * it; returns the first failing status and leaves the message in msg. */
static int attempt(const char *kernel) {
    free(msg);
    msg = NULL;
    FILE *f = open_memstream(&msg, &msglen);
    Diag d;
    diag_init(&d, "cuda", NULL, 0, f);
    CudaDevice dev;
    int rc = cg_cuda_device_open(&fake, 1 << 20, "ptx", &dev, &d);
    if (!rc && kernel) {
        void *args[1] = {NULL};
        rc = cg_cuda_device_launch(&dev, kernel, 4, 256, args, &d);
    }
    if (!rc || kernel) cg_cuda_device_close(&dev);
    fclose(f);
    printf("%s", msg);
    assert_int_equal(fk.ctxs, 0);   /* nothing leaked */
    assert_int_equal(fk.mems, 0);
    assert_int_equal(fk.mods, 0);
    return rc;
}

static int setup(void **s) {
    (void)s;
    memset(&fk, 0, sizeof fk);
    fk.count = 1;
    return 0;
}

static void test_ok(void **s) {
    (void)s;
    assert_int_equal(attempt("k0_0"), 0);
    assert_int_equal(fk.launches, 1);
}

static void test_no_device(void **s) {
    (void)s;
    fk.init_rc = 100;   /* CUDA_ERROR_NO_DEVICE */
    assert_int_equal(attempt(NULL), -1);
    assert_non_null(strstr(msg, "no CUDA device"));
    fk.init_rc = 0, fk.count = 0;
    assert_int_equal(attempt(NULL), -1);
    assert_non_null(strstr(msg, "no CUDA device"));
}

static void test_out_of_memory(void **s) {
    (void)s;
    fk.alloc_rc = 2;
    assert_int_equal(attempt(NULL), -1);
    assert_non_null(strstr(msg, "out of device memory (1048576 bytes"));
}

static void test_bad_module(void **s) {
    (void)s;
    fk.load_rc = 218;
    assert_int_equal(attempt(NULL), -1);
    assert_non_null(strstr(msg, "cuModuleLoadDataEx failed: CUDA_ERROR_INVALID_PTX"));
}

static void test_failing_launch(void **s) {
    (void)s;
    fk.launch_rc = 719;
    assert_int_equal(attempt("k0_0"), -1);
    assert_non_null(strstr(msg, "kernel k0_0: cuLaunchKernel failed: CUDA_ERROR_LAUNCH_FAILED"));
    fk.launch_rc = 0, fk.sync_rc = 719;
    assert_int_equal(attempt("k0_0"), -1);
    assert_non_null(strstr(msg, "kernel k0_0: failed while running: CUDA_ERROR_LAUNCH_FAILED"));
    fk.sync_rc = 0;
    assert_int_equal(attempt("k9_9"), -1);
    assert_non_null(strstr(msg, "kernel k9_9: cuModuleGetFunction failed"));
}

/* The real driver: where it cannot be opened, the message says so. */
static void test_real_driver(void **s) {
    (void)s;
    CudaDriver t;
    char *m = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&m, &n);
    Diag d;
    diag_init(&d, "cuda", NULL, 0, f);
    int rc = cg_cuda_driver_open(&t, &d);
    fclose(f);
    if (rc == 0) {
        printf("libcuda.so.1 opened\n");
        cg_cuda_driver_close(&t);
    } else {
        printf("%s", m);
        assert_true(strstr(m, "no CUDA driver (libcuda.so.1) on this machine") || strstr(m, "lacks"));
    }
    free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_ok, setup), cmocka_unit_test_setup(test_no_device, setup),
        cmocka_unit_test_setup(test_out_of_memory, setup), cmocka_unit_test_setup(test_bad_module, setup),
        cmocka_unit_test_setup(test_failing_launch, setup), cmocka_unit_test(test_real_driver),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(msg);
    return rc;
}
