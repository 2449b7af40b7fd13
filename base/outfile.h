/* outfile.h - writing a file whole or not at all. */
#ifndef NETC_BASE_OUTFILE_H
#define NETC_BASE_OUTFILE_H

#include <stddef.h>
#include <stdio.h>

/* Writes path atomically: emit(f, ctx, ...) writes the content into the temp
 * file path.tmp.<pid>, which is then flushed, fsynced, closed and renamed over
 * path, and the directory fsynced (best effort).  On any failure the temp file
 * is removed and an existing path is left untouched.  Temp files path.tmp.PID
 * of dead processes (a killed writer's) are removed first.  emit returns 0, or -1
 * having written a message; write errors on f are caught here.  Returns 0, or
 * -1 with a message naming path in err. */
typedef int (*RtEmitFn)(FILE *f, void *ctx, char *err, size_t errlen);
int rt_write_atomic(const char *path, RtEmitFn emit, void *ctx, char *err, size_t errlen);

#endif
