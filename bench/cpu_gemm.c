/* cpu_gemm.c - GFLOP/s of the cpu backend's generated GEMM (one thread,
 * C[M,N] += A[M,K] B[K,N]), to compare with bench/peak_fma.
 * Build (from the repository root, after building build/):
 *   cc -O2 -I. -I$(llvm-config-14 --includedir) bench/cpu_gemm.c \
 *      build/libnetc_cpu.a build/libnetc_core.a -lLLVM-14 -lz -lm -pthread -o cpu_gemm
 * Usage: [NETC_CPU=spec] cpu_gemm [M N K] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "codegen/cpu/cg.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int64_t M = argc > 3 ? atoll(argv[1]) : 240, N = argc > 3 ? atoll(argv[2]) : 1024,
            K = argc > 3 ? atoll(argv[3]) : 256;
    Diag d;
    diag_init(&d, "cpu_gemm", NULL, 0, stderr);
    CgCpu cpu;
    if (cg_cpu_select(getenv("NETC_CPU"), 1, &cpu, &d)) return 1;
    int vw = cpu.vw;
    LLVMTargetMachineRef tm = cg_host_tm(&cpu, LLVMRelocPIC, &d);
    CgJit *j = cg_jit_new(&cpu, &d);
    if (!tm || !j) return 1;
    LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("gemm", cg_jit_context(j));
    Cg cg;
    cg_init(&cg, cg_jit_context(j), mod, vw);
    cg_emit_gemm_fn(&cg, "gemm", M, N, K);
    cg_dispose(&cg);
    if (cg_optimise(mod, tm, 3, &d) || cg_jit_add(j, mod, &d)) return 1;
    void (*f)(float *, float *, float *) = (void (*)(float *, float *, float *))cg_jit_lookup(j, "gemm", &d);
    float *A = aligned_alloc(64, (size_t)(M * K * 4 + 64)), *B = aligned_alloc(64, (size_t)(K * N * 4 + 64)),
          *C = aligned_alloc(64, (size_t)(M * N * 4 + 64));
    for (int64_t i = 0; i < M * K; i++) A[i] = (float)(i % 7) * 0.1f;
    for (int64_t i = 0; i < K * N; i++) B[i] = (float)(i % 5) * 0.1f;
    for (int64_t i = 0; i < M * N; i++) C[i] = 0;
    f(A, B, C);
    /* check one element */
    double ref = 0;
    for (int64_t k = 0; k < K; k++) ref += (double)A[(M - 1) * K + k] * B[k * N + N - 1];
    /* the fastest of many calls: this machine's neighbours only ever slow it */
    int reps = (int)(4e10 / (2.0 * M * N * K)) + 3;
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        f(A, B, C);
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    printf("gemm %lldx%lldx%lld (vw %d): %.1f GFLOP/s (best of %d), check %g vs %g\n", (long long)M, (long long)N,
           (long long)K, vw, 2.0 * M * N * K / best / 1e9, reps, C[M * N - 1] / (reps + 1), ref);
    return 0;
}
