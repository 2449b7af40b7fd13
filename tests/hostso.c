/* hostso.c - generated CUDA C compiled for the host, and whole files read
 * (testutil.h): linked into every test and into the fake libcuda.so.1
 * (fakelibcuda.c). */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "testutil.h"

char *tu_read(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[n] = 0;
    if (len) *len = (size_t)n;
    return b;
}

const char *tu_host_cc(void) {
    const char *cc = getenv("CC");
    return cc && *cc ? cc : "cc";
}

int tu_have_cc(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "%s --version >/dev/null 2>&1", tu_host_cc());
    if (system(cmd) == 0) return 1;
    printf("skipped: no host C compiler (%s) for the emulated device\n", tu_host_cc());
    return 0;
}

static int tu_write(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

void *tu_host_so(const char *text, const char *emu_h) {
    char dir[] = "/tmp/netc_emu_XXXXXX", src[600], so[600], hdr[600], cmd[2048];
    if (!mkdtemp(dir)) return NULL;
    snprintf(src, sizeof src, "%s/k.c", dir);
    snprintf(so, sizeof so, "%s/k.so", dir);
    snprintf(hdr, sizeof hdr, "%s/emu.h", dir);
    void *h = NULL;
    int rc = tu_write(src, text) || (emu_h && tu_write(hdr, emu_h));
    if (!rc) {
        snprintf(cmd, sizeof cmd, "%s -std=c11 -O1 -fPIC -shared -w -I%s/codegen/cuda -o %s %s -lm", tu_host_cc(),
                 NETC_SOURCE_DIR, so, src);
        rc = system(cmd);
        h = rc == 0 ? dlopen(so, RTLD_NOW | RTLD_LOCAL) : NULL;
        if (!h) fprintf(stderr, "emu: %s failed (%s)\n", cmd, rc ? "compile" : dlerror());
    }
    unlink(src), unlink(so), unlink(hdr), rmdir(dir);
    return h;
}

