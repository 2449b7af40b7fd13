/* nvrtc.h - CUDA C to PTX and SASS with NVRTC, opened with dlopen at run
 * time (libnvrtc.so.13, .so.12, .so), so a binary runs where it is absent. */
#ifndef NETC_CUDA_NVRTC_H
#define NETC_CUDA_NVRTC_H

#include <stddef.h>
#include "../../ir/diag.h"

/* Compiles src for arch: "compute_90" gives PTX text (NUL-terminated),
 * "sm_90" a cubin (SASS, through ptxas inside NVRTC).  0 with *out (malloc'd)
 * and *len; -1 with a message in d: NVRTC missing, or its error and the
 * program log. */
int cg_nvrtc_compile(const char *src, const char *name, const char *arch, char **out, size_t *len, Diag *d);
/* The same, keeping NVRTC's program log (malloc'd) in *log; with verbose
 * and an sm_ arch, ptxas reports each kernel's registers, spills and
 * shared memory there (--ptxas-options=-v). */
int cg_nvrtc_compile_log(const char *src, const char *name, const char *arch, int verbose, char **out, size_t *len,
                         char **log, Diag *d);
/* cg_nvrtc_compile through a cache on disk: a source compiled before for
 * the same arch is read back (*hit = 1) instead of compiled.  The folder:
 * $NETC_CACHE_DIR, else $XDG_CACHE_HOME/netc, else ~/.cache/netc; an empty
 * NETC_CACHE_DIR turns the cache off.  Cache faults only cost a compile. */
int cg_nvrtc_compile_cached(const char *src, const char *name, const char *arch, char **out, size_t *len, int *hit,
                            Diag *d);
/* Modules compiled ahead of time (`netc compile --target cuda`): once a
 * table is registered, cg_nvrtc_compile_cached gives each source the image
 * stored under its key and arch, and never opens NVRTC: a source with no
 * entry is an error (the executable was rebuilt from a program other than
 * the one it was compiled for).  The table is not copied. */
typedef struct {
    const char *arch;    /* "compute_90" */
    const char *key;     /* cg_nvrtc_key() of the source */
    const char *image;   /* PTX text */
    size_t len;
} CgNvrtcModule;
void cg_nvrtc_embed(const CgNvrtcModule *m, int n);   /* n < 0: none (compile again) */
/* Whether a table is registered (an executable with its PTX). */
int cg_nvrtc_embedded(void);
/* The key of src compiled for arch: 32 hex digits, two 64-bit hashes of
 * arch, NVRTC's options and the source (the cache's file names too). */
void cg_nvrtc_key(const char *src, const char *arch, char key[33]);
/* The cache folder (0), or -1 when there is none. */
int cg_nvrtc_cache_dir(char *buf, size_t n);
/* Whether NVRTC can be opened; when not, why (static text) in *why. */
int cg_nvrtc_available(const char **why);

#endif
