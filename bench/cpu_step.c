/* cpu_step.c - training-step throughput of the cpu backend on the seed
 * networks at the seed's batch and resolution: compile time, ms/step,
 * images/s, GFLOP/s.  Build (repository root, after building build/):
 *   cc -O2 -I. -Itests -DNETC_SOURCE_DIR=\"$PWD\" bench/cpu_step.c tests/testutil.c \
 *      build/libnetc_cpu.a build/libnetc_core.a -L$(llvm-config-14 --libdir) -lLLVM \
 *      -lz -lm -pthread -o cpu_step
 * Usage: cpu_step MODEL BATCH RESIZE [STEPS [THREADS]] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codegen/cpu/cpu.h"
#include "base/pool.h"
#include "testutil.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 4) return fprintf(stderr, "usage: cpu_step MODEL BATCH RESIZE [STEPS [THREADS]]\n"), 2;
    int64_t batch = atoll(argv[2]);
    int resize = atoi(argv[3]), steps = argc > 4 ? atoi(argv[4]) : 3, threads = argc > 5 ? atoi(argv[5]) : 0;
    char path[512];
    snprintf(path, sizeof path, "%s/models/%s.net", NETC_SOURCE_DIR, argv[1]);
    Program p;
    if (tu_program(path, IR_TRAIN, batch, resize, 4, &p)) return 1;
    IrStats st;
    pass_stats(&p.g, &st);
    void **slots = calloc((size_t)p.nslots, sizeof(void *));
    uint64_t rs = 1;
    for (int i = 0; i < p.nslots; i++) {
        slots[i] = aligned_alloc(64, ((size_t)p.slots[i].bytes + 127) / 64 * 64);
        float *f = slots[i];
        for (int64_t j = 0; j < p.slots[i].bytes / 4; j++) {
            double r = tu_rand(&rs);
            if (p.slots[i].kind == SLOT_LABELS) ((int *)f)[j] = (int)((r + 1) * 5) % 10;
            else f[j] = (float)(p.slots[i].kind == SLOT_PARAM ? 0.05 * r : r > 0 ? r : -r);
        }
    }
    void *arena = aligned_alloc(64, (size_t)(p.arena_bytes + 127) / 64 * 64);
    Diag d;
    diag_init(&d, argv[1], NULL, 0, stderr);
    BackendOptions o = {threads, 3, 0, NULL, 0};
    void *s;
    double t0 = now();
    if (backend_cpu.compile(&p, &o, &s, &d)) return 1;
    double tc = now() - t0;
    ThreadPool *pool = rt_pool_new(threads);
    RunCtx c = {arena, slots, 1e-4, 1, 0, pool, 0};
    backend_cpu.run(s, &p, &c);   /* warm-up */
    t0 = now();
    for (int i = 0; i < steps; i++) {
        c.step = (uint64_t)i + 1;
        backend_cpu.run(s, &p, &c);
    }
    double dt = (now() - t0) / steps;
    double gflop = 3.0 * (double)st.fwd_flops * (double)batch / 1e9;
    printf("%s batch %lld resize %d threads %d: compile %.2f s, %.1f ms/step, %.1f images/s, %.1f GFLOP/s\n",
           argv[1], (long long)batch, resize, rt_pool_threads(pool), tc, dt * 1e3, (double)batch / dt, gflop / dt);
    backend_cpu.free(s);
    rt_pool_free(pool);
    return 0;
}
