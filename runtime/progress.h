/* A one-line progress bar for a terminal. */
#ifndef NETC_RUNTIME_PROGRESS_H
#define NETC_RUNTIME_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

typedef struct {
    FILE *f;
    char label[64];
    char suffix[128]; /* the last suffix given, redrawn by end */
    int64_t total, done;
    int tty;          /* draw at all: isatty(f), set by begin; callers may override */
    int drawn;        /* something is on the line */
    double t0, last;  /* start and last draw, seconds on the monotonic clock */
} RtProgress;

/* Starts a bar for total steps.  Draws nothing yet. */
void rt_progress_begin(RtProgress *p, FILE *f, const char *label, int64_t total);

/* Records that done steps are finished; on a terminal redraws the line
 *   label [=========>          ]  45% 211/469 00:12<00:15 loss 0.53
 * at most 10 times a second (and always when done reaches total).  suffix may
 * be NULL. */
void rt_progress_update(RtProgress *p, int64_t done, const char *suffix);

/* Finishes the line on a terminal (a final redraw and a newline).  Not on a
 * terminal, nothing was or is written: the caller prints its own lines. */
void rt_progress_end(RtProgress *p);

#endif
