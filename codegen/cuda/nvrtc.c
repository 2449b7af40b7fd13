/* nvrtc.c - NVRTC through dlopen (contract in nvrtc.h).  Only the entry
 * points used here are declared, with NVRTC's documented signatures. */
#include "nvrtc.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct _nvrtcProgram *nvrtcProgram;

static struct {
    void *h;
    const char *(*error_string)(int);
    int (*create)(nvrtcProgram *, const char *, const char *, int, const char *const *, const char *const *);
    int (*compile)(nvrtcProgram, int, const char *const *);
    int (*log_size)(nvrtcProgram, size_t *);
    int (*log)(nvrtcProgram, char *);
    int (*ptx_size)(nvrtcProgram, size_t *);
    int (*ptx)(nvrtcProgram, char *);
    int (*cubin_size)(nvrtcProgram, size_t *);
    int (*cubin)(nvrtcProgram, char *);
    int (*destroy)(nvrtcProgram *);
} nv;
static const char *nv_why;
static pthread_once_t nv_once = PTHREAD_ONCE_INIT;

static void nv_open(void) {
    static const char *names[] = {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"};
    for (size_t i = 0; i < sizeof names / sizeof *names && !nv.h; i++) nv.h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!nv.h) {
        nv_why = "no NVRTC (libnvrtc.so.13, libnvrtc.so.12 or libnvrtc.so) on this machine";
        return;
    }
#define SYM(field, name) \
    if (!(*(void **)&nv.field = dlsym(nv.h, name))) { nv_why = "NVRTC lacks " name; return; }
    SYM(error_string, "nvrtcGetErrorString")
    SYM(create, "nvrtcCreateProgram")
    SYM(compile, "nvrtcCompileProgram")
    SYM(log_size, "nvrtcGetProgramLogSize")
    SYM(log, "nvrtcGetProgramLog")
    SYM(ptx_size, "nvrtcGetPTXSize")
    SYM(ptx, "nvrtcGetPTX")
    SYM(cubin_size, "nvrtcGetCUBINSize")
    SYM(cubin, "nvrtcGetCUBIN")
    SYM(destroy, "nvrtcDestroyProgram")
#undef SYM
}

int cg_nvrtc_available(const char **why) {
    pthread_once(&nv_once, nv_open);
    if (why) *why = nv_why;
    return nv_why == NULL;
}

int cg_nvrtc_compile(const char *src, const char *name, const char *arch, char **out, size_t *len, Diag *d) {
    *out = NULL;
    *len = 0;
    const char *why;
    if (!cg_nvrtc_available(&why)) return diag_error_noloc(d, "%s", why);
    int sass = strncmp(arch, "sm_", 3) == 0;
    char opt_arch[64];
    snprintf(opt_arch, sizeof opt_arch, "--gpu-architecture=%s", arch);
    const char *opts[] = {opt_arch, "--std=c++17", "-default-device"};
    nvrtcProgram prog;
    int rc = nv.create(&prog, src, name, 0, NULL, NULL);
    if (rc) return diag_error_noloc(d, "nvrtcCreateProgram: %s", nv.error_string(rc));
    rc = nv.compile(prog, 3, opts);
    if (rc) {
        size_t n = 0;
        char *log = NULL;
        if (nv.log_size(prog, &n) == 0 && (log = malloc(n + 1)) && nv.log(prog, log) == 0) log[n] = 0;
        diag_error_noloc(d, "NVRTC could not compile %s for %s (%s):\n%s", name, arch, nv.error_string(rc),
                         log ? log : "(no log)");
        free(log);
        nv.destroy(&prog);
        return -1;
    }
    size_t n = 0;
    rc = sass ? nv.cubin_size(prog, &n) : nv.ptx_size(prog, &n);
    char *buf = rc ? NULL : malloc(n + 1);
    if (buf) rc = sass ? nv.cubin(prog, buf) : nv.ptx(prog, buf);
    nv.destroy(&prog);
    if (rc || !buf) {
        free(buf);
        return diag_error_noloc(d, "NVRTC gave no %s for %s", sass ? "cubin" : "PTX", name);
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return 0;
}
