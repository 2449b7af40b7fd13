/* bench.h - `netc bench`: timing training steps on random data (bench.c),
 * and --compare-fuse, the fused step against the unfused one (bench_fuse.c). */
#ifndef NETC_TOOLS_BENCH_H
#define NETC_TOOLS_BENCH_H

#include "runtime/cli.h"

int netc_cmd_bench(const RtArgs *a);
int netc_bench_compare_fuse(const RtArgs *a);

/* Seconds on the monotonic clock. */
double netc_bench_now(void);
/* This process's peak resident set size so far, in bytes (getrusage's
 * ru_maxrss: KiB on Linux, bytes on macOS); -1 when unknown. */
long long netc_bench_peak_rss(void);
/* The benchmark's batch: px pixels in [0, 1) from a fixed generator, and B
 * labels cycling through 0..classes-1, so every run times the same data. */
void netc_bench_batch(float *img, int64_t px, int32_t *lab, int64_t B, int classes);

#endif
