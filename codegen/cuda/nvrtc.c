/* nvrtc.c - NVRTC through dlopen (contract in nvrtc.h).  Only the entry
 * points used here are declared, with NVRTC's documented signatures. */
#include "nvrtc.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

static char *prog_log(nvrtcProgram prog) {
    size_t n = 0;
    char *log = NULL;
    if (nv.log_size(prog, &n) == 0 && (log = malloc(n + 1)) && nv.log(prog, log) == 0) log[n] = 0;
    return log;
}

int cg_nvrtc_compile(const char *src, const char *name, const char *arch, char **out, size_t *len, Diag *d) {
    return cg_nvrtc_compile_log(src, name, arch, 0, out, len, NULL, d);
}

int cg_nvrtc_compile_log(const char *src, const char *name, const char *arch, int verbose, char **out, size_t *len,
                         char **log_out, Diag *d) {
    *out = NULL;
    *len = 0;
    if (log_out) *log_out = NULL;
    const char *why;
    if (!cg_nvrtc_available(&why)) return diag_error_noloc(d, "%s", why);
    int sass = strncmp(arch, "sm_", 3) == 0;
    char opt_arch[64];
    snprintf(opt_arch, sizeof opt_arch, "--gpu-architecture=%s", arch);
    const char *opts[] = {opt_arch, "--std=c++17", "-default-device", "--ptxas-options=-v"};
    nvrtcProgram prog;
    int rc = nv.create(&prog, src, name, 0, NULL, NULL);
    if (rc) return diag_error_noloc(d, "nvrtcCreateProgram: %s", nv.error_string(rc));
    rc = nv.compile(prog, verbose && sass ? 4 : 3, opts);
    if (rc) {
        char *log = prog_log(prog);
        diag_error_noloc(d, "NVRTC could not compile %s for %s (%s):\n%s", name, arch, nv.error_string(rc),
                         log ? log : "(no log)");
        free(log);
        nv.destroy(&prog);
        return -1;
    }
    if (log_out) *log_out = prog_log(prog);
    size_t n = 0;
    rc = sass ? nv.cubin_size(prog, &n) : nv.ptx_size(prog, &n);
    char *buf = rc ? NULL : malloc(n + 1);
    if (buf) rc = sass ? nv.cubin(prog, buf) : nv.ptx(prog, buf);
    nv.destroy(&prog);
    if (rc || !buf) {
        free(buf);
        if (log_out) free(*log_out), *log_out = NULL;
        return diag_error_noloc(d, "NVRTC gave no %s for %s", sass ? "cubin" : "PTX", name);
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return 0;
}

/* ---- the cache ----------------------------------------------------------
 * A compiled module is stored as NAME-<two 64-bit hashes of arch, NVRTC's
 * options and the source>.bin in the cache folder, written to a temporary
 * file and renamed, so a reader sees a whole file or none; a file of the
 * wrong size (its header gives it) is compiled again. */

static uint64_t fnv(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

int cg_nvrtc_cache_dir(char *buf, size_t n) {
    const char *dir = getenv("NETC_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (dir && !*dir) return -1;   /* NETC_CACHE_DIR= : no cache */
    if (dir) snprintf(buf, n, "%s", dir);
    else if (xdg && *xdg) snprintf(buf, n, "%s/netc", xdg);
    else if (home && *home) snprintf(buf, n, "%s/.cache/netc", home);
    else return -1;
    return 0;
}

void cg_nvrtc_key(const char *src, const char *arch, char key[33]) {
    const char *opts = "--std=c++17 -default-device";
    uint64_t a = fnv(1469598103934665603ull, arch, strlen(arch)), b = fnv(0x9e3779b97f4a7c15ull, arch, strlen(arch));
    a = fnv(a, opts, strlen(opts)), b = fnv(b, opts, strlen(opts));
    a = fnv(a, src, strlen(src)), b = fnv(b ^ 0xa5a5a5a5ull, src, strlen(src));
    snprintf(key, 33, "%016llx%016llx", (unsigned long long)a, (unsigned long long)b);
}

static void cache_path(const char *dir, const char *src, const char *arch, char *buf, size_t n) {
    char key[33];
    cg_nvrtc_key(src, arch, key);
    snprintf(buf, n, "%s/cuda-%s-%s.bin", dir, arch, key);
}

/* ---- modules compiled ahead of time ------------------------------------- */

static const CgNvrtcModule *embed;
static int nembed = -1;

void cg_nvrtc_embed(const CgNvrtcModule *m, int n) {
    embed = m;
    nembed = n;
}

int cg_nvrtc_embedded(void) { return nembed >= 0; }

static int embedded(const char *src, const char *name, const char *arch, char **out, size_t *len, Diag *d) {
    char key[33];
    cg_nvrtc_key(src, arch, key);
    for (int i = 0; i < nembed; i++)
        if (!strcmp(embed[i].arch, arch) && !strcmp(embed[i].key, key)) {
            if (!(*out = malloc(embed[i].len + 1))) return diag_error_noloc(d, "out of memory");
            memcpy(*out, embed[i].image, embed[i].len);
            (*out)[embed[i].len] = 0;
            *len = embed[i].len;
            return 0;
        }
    return diag_error_noloc(d, "this executable holds no %s code for %s (module %s): it was compiled for other programs "
                               "than the ones it rebuilt from its source; compile it again with this netc",
                            arch, name, key);
}

static int mkdirs(const char *dir) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(tmp, 0755);
            *p = '/';
        }
    return mkdir(tmp, 0755) == 0 || access(tmp, W_OK) == 0 ? 0 : -1;
}

/* The cached module at path (malloc'd, NUL-terminated), or NULL. */
static char *cache_read(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned long long n = 0;
    char *buf = NULL;
    if (fread(&n, sizeof n, 1, f) == 1 && n < (1ull << 31) && (buf = malloc((size_t)n + 1)) &&
        fread(buf, 1, (size_t)n, f) == n && fgetc(f) == EOF) {
        buf[n] = 0;
        *len = (size_t)n;
    } else {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

static void cache_write(const char *path, const char *bin, size_t len) {
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return;
    unsigned long long n = len;
    int ok = fwrite(&n, sizeof n, 1, f) == 1 && fwrite(bin, 1, len, f) == len;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path)) unlink(tmp);
}

int cg_nvrtc_compile_cached(const char *src, const char *name, const char *arch, char **out, size_t *len, int *hit,
                            Diag *d) {
    char dir[900], path[1100];
    *hit = 0;
    if (nembed >= 0) {
        *hit = 1;
        return embedded(src, name, arch, out, len, d);
    }
    int cache = cg_nvrtc_cache_dir(dir, sizeof dir) == 0;
    if (cache) {
        cache_path(dir, src, arch, path, sizeof path);
        if ((*out = cache_read(path, len))) {
            *hit = 1;
            return 0;
        }
    }
    if (cg_nvrtc_compile(src, name, arch, out, len, d)) return -1;
    if (cache && mkdirs(dir) == 0) cache_write(path, *out, *len);
    return 0;
}
