/* cpu_targets.h - the --cpu specs the cpu backend's differential tests run:
 * one for each vector width this host can execute, so that one machine
 * checks both the 8-wide (AVX2) and, where it has AVX-512, the 16-wide code.
 * Prints which ran and, when the 16-wide code cannot run here, why not. */
#ifndef NETC_TESTS_CPU_TARGETS_H
#define NETC_TESTS_CPU_TARGETS_H

#include <stdio.h>
#include "codegen/cpu/cpu.h"

enum { TU_MAX_CPUS = 2 };

/* Fills specs[] (at most TU_MAX_CPUS) and returns how many. */
static inline int tu_cpu_targets(const char **specs, int *widths) {
    Diag d;
    diag_init(&d, "cpu", NULL, 0, stderr);
    CgCpuInfo c;
    int n = 0;
    if (cg_cpu_query("native", 1, &c, &d)) return 0;
    specs[n] = "native", widths[n++] = c.vw;
    if (c.vw == 16) {
        if (cg_cpu_query("native,-avx512f", 1, &c, &d) == 0 && c.vw == 8) specs[n] = "native,-avx512f", widths[n++] = 8;
    } else {
        printf("cpu targets: 16-wide (AVX-512) cases skipped: this host has no AVX-512 F/BW/CD/DQ/VL, "
               "so 16-wide code cannot run here\n");
    }
    for (int i = 0; i < n; i++) printf("cpu target %d: --cpu %s, %d-wide vectors\n", i + 1, specs[i], widths[i]);
    return n;
}

#endif
