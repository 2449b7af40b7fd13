/* diag.h - located user errors.
 *
 *   file:line:col: error: message
 *     12 |   y = x |> conv(64, 3) + z
 *        |                        ^
 *   hint: ...
 *
 * Every user-facing error in the front end and the passes goes through here;
 * broken invariants use IR_ASSERT instead. */
#ifndef NETC_DIAG_H
#define NETC_DIAG_H

#include <stdio.h>
#include "ir.h"

typedef struct {
    const char *file;   /* name as the user gave it */
    const char *src;    /* whole source text (may be NULL) */
    size_t src_len;
    FILE *out;          /* where messages go (stderr by default) */
    int nerrors;
    int max_errors;     /* stop reporting after this many (default 20) */
} Diag;

void diag_init(Diag *d, const char *file, const char *src, size_t len, FILE *out);
/* Report an error at loc.  hint may be NULL.  Returns -1 for convenience. */
int diag_error(Diag *d, IrLoc loc, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* An error with no source location (a file that cannot be read, ...). */
int diag_error_noloc(Diag *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
