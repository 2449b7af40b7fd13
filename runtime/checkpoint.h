/* checkpoint.h - the parts of checkpoint handling that need no session:
 * the training position in a checkpoint's metadata, the finiteness check on
 * what is loaded and saved, and the lock a training holds on its checkpoint. */
#ifndef NETC_RUNTIME_CHECKPOINT_H
#define NETC_RUNTIME_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "safetensors.h"

/* The most epochs a run may have (--epochs), and so a checkpoint's epoch. */
#define RT_MAX_EPOCHS 100000

/* Reads the metadata fields "epoch" (0..RT_MAX_EPOCHS), "step" and "seed"
 * (0..2^64-1), each a string of decimal digits, from checkpoint st read from
 * path.  Any of epoch/step/seed may be NULL (that field is not read).  A
 * missing, empty, signed, non-numeric or out-of-range field is an error:
 * -1 with a message naming path and the field. */
int rt_checkpoint_position(const RtSt *st, const char *path, int *epoch, uint64_t *step, uint64_t *seed,
                           char *err, size_t errlen);

/* The index of the first NaN or infinity among x[0..n-1], or -1. */
int64_t rt_first_nonfinite(const float *x, int64_t n);

/* Claims path for writing checkpoints before a training starts: path must
 * not be a directory or other non-file, its directory must take new files
 * (a temp file is made and removed), and the advisory lock PATH.lock is
 * taken (flock, held until rt_checkpoint_release).  Returns the lock's fd,
 * or -1 with a message naming path: among others when another process holds
 * the lock. */
int rt_checkpoint_claim(const char *path, char *err, size_t errlen);
void rt_checkpoint_release(int lock_fd);

#endif
