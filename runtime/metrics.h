/* Training metrics: the seed's epoch line, JSON lines, an SVG of the curves. */
#ifndef NETC_RUNTIME_METRICS_H
#define NETC_RUNTIME_METRICS_H

#include <stddef.h>

/* The seed's line, without a newline:
 *   epoch 3/10: loss 0.412, train acc 0.848, test acc 0.835, 4149.2 examples/sec
 * Returns what snprintf returns. */
int rt_format_epoch(char *buf, size_t n, int epoch, int epochs, double loss, double train_acc,
                    double test_acc, double examples_per_sec);

/* A JSON-lines file, one object per epoch. */
typedef struct RtMetrics RtMetrics;

/* Opens path, truncating it, or appending to it if append (for --resume).
 * NULL with a message naming path on failure. */
RtMetrics *rt_metrics_open(const char *path, int append, char *err, size_t errlen);

/* Appends and flushes one line:
 *   {"epoch":3,"epochs":10,"loss":0.412,"train_acc":0.848,"test_acc":0.835,"examples_per_sec":4149.2}
 * A NaN or infinite value is written as null.  Returns 0, or -1 with a
 * message naming the file. */
int rt_metrics_epoch(RtMetrics *m, int epoch, int epochs, double loss, double train_acc,
                     double test_acc, double examples_per_sec, char *err, size_t errlen);

/* Closes the file; NULL is fine.  Returns 0, or -1 if the last writes failed. */
int rt_metrics_close(RtMetrics *m);

/* Writes, atomically, an SVG like d2l's training figures: x the epochs
 * 1..epochs_total, y from 0 to max(1, largest loss), gridlines and tick
 * labels, and three curves with a legend: train loss, train acc, test acc,
 * each with n_epochs points (values for epochs 1..n_epochs; NaN or infinite
 * values are left out).  Returns 0, or -1 with a message naming path. */
int rt_plot_svg(const char *path, const double *loss, const double *train_acc,
                const double *test_acc, int n_epochs, int epochs_total, const char *title,
                char *err, size_t errlen);

#endif
