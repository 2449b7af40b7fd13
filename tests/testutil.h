/* testutil.h - shared helpers for the cmocka tests. */
#ifndef NETC_TESTUTIL_H
#define NETC_TESTUTIL_H

#include <stddef.h>
#include "frontend/frontend.h"
#include "passes/program.h"

/* Builds models/<name>.net (relative to the repository root) in the given
 * mode, with shapes inferred.  Returns 0, or -1 after printing errors. */
int tu_build(const char *path, IrMode mode, IrGraph *g, char **src);
/* Builds a model and runs the pipeline at a batch and resize. */
int tu_program(const char *path, IrMode mode, int64_t batch, int resize, int elem_bytes, Program *p);
/* Reads a whole file (NUL-terminated); NULL if unreadable. */
char *tu_read(const char *path, size_t *len);
/* Deterministic uniform numbers in [-1, 1). */
double tu_rand(uint64_t *state);

#endif
