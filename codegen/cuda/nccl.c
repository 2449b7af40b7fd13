/* nccl.c - NCCL through a function table (contract in nccl.h). */
#include "nccl.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

int cg_nccl_open(NcclTable *t, char *why, size_t n) {
    memset(t, 0, sizeof *t);
    t->lib = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!t->lib) {
        snprintf(why, n, "no NCCL (libnccl.so.2) on this machine");
        return -1;
    }
    static const char *names[] = {"ncclGetVersion", "ncclGetUniqueId", "ncclCommInitRank", "ncclCommDestroy",
                                  "ncclCommAbort", "ncclCommGetAsyncError", "ncclGetErrorString", "ncclGroupStart",
                                  "ncclGroupEnd", "ncclAllReduce"};
    void **slot = (void **)&t->get_version;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!(slot[i] = dlsym(t->lib, names[i]))) {
            snprintf(why, n, "NCCL (libnccl.so.2) lacks %s", names[i]);
            cg_nccl_close(t);
            return -1;
        }
    return 0;
}

void cg_nccl_close(NcclTable *t) {
    if (t->lib) dlclose(t->lib);
    memset(t, 0, sizeof *t);
}
