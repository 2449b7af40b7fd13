/* frontend.h - the .net language: lexer and parser (flex + bison, pure and
 * reentrant, with locations), AST, and elaboration into the graph IR. */
#ifndef NETC_FRONTEND_H
#define NETC_FRONTEND_H

#include <stddef.h>
#include <stdint.h>
#include "../ir/ir.h"
#include "../ir/diag.h"

/* A network parameter set on the command line (--param ratio=1): value is
 * the text after `=`, a value written as in the language (1, 0.5, true,
 * [6, 12, 24, 16]), read by the front end against the parameter's default. */
typedef struct { const char *name; const char *value; } FeDefine;

typedef struct {
    IrMode mode;               /* batch norm and dropout mode in the built graph */
    const FeDefine *defines;
    int ndefines;
    int resize;                /* input side, 0: the train section's (--resize) */
    int64_t batch;             /* 0: the train section's (--batch) */
} FeOptions;

/* Parses and elaborates src (len bytes, need not be NUL-terminated) into g:
 * the forward graph of the file's network, with g->input, g->logits,
 * g->labels, g->loss and g->train set, shapes not yet inferred.  g must be
 * ir_init'ed.  Returns 0, or -1 after reporting every error through d. */
int fe_build(const char *src, size_t len, const FeOptions *o, IrGraph *g, Diag *d);

/* Reads path and calls fe_build.  *src_out receives the text (caller frees;
 * g->src points into it).  Unreadable, empty, binary or oversized files are
 * reported as errors. */
int fe_build_file(const char *path, const FeOptions *o, IrGraph *g, char **src_out, Diag *d);

#endif
