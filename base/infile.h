/* infile.h - opening the files a user names (a .net file, data files,
 * checkpoints, weights, images) for reading, without blocking.
 *
 * open(2) of a FIFO with no writer waits for one, forever if none comes; a
 * check after the open comes too late.  So every such path is opened with
 * O_NONBLOCK, checked with fstat, and only then switched to blocking reads. */
#ifndef NETC_RUNTIME_INFILE_H
#define NETC_RUNTIME_INFILE_H

#include <stddef.h>
#include <stdio.h>
#include <sys/stat.h>

/* Also accept a pipe: `netc check <(gen)`, or a .net on stdin.  A named FIFO
 * nobody writes to then reads as empty at once. */
#define RT_INPUT_PIPE 1

/* An fd open for reading path, which must be a regular file (or a pipe with
 * RT_INPUT_PIPE); *st (may be NULL) receives its fstat.  -1, with
 * "PATH: cannot open: why" or "PATH: is a directory" or "PATH: not a regular
 * file (a FIFO)" in err, otherwise. */
int rt_open_input(const char *path, int flags, struct stat *st, char *err, size_t errlen);

/* The same as a stdio stream ("rb"). */
FILE *rt_fopen_input(const char *path, int flags, struct stat *st, char *err, size_t errlen);

#endif
