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
/* Whether NVRTC can be opened; when not, why (static text) in *why. */
int cg_nvrtc_available(const char **why);

#endif
