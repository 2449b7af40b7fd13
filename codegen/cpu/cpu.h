/* cpu.h - the cpu backend's public face (LLVM-free header).
 *
 * backend_cpu compiles a Program through the LLVM C API into machine code for
 * the host and runs it with ORC LLJIT.  cg_cpu_emit_object writes the same
 * code as an object file for `netc compile`. */
#ifndef NETC_CG_CPU_H
#define NETC_CG_CPU_H

#include "../backend.h"

extern const Backend backend_cpu;

/* What --cpu spec (NULL: $NETC_CPU or native) generates code for: the CPU's
 * name, its x86-64 feature level (1..4: SSE2, SSE4.2, AVX2 + FMA, AVX-512
 * F/BW/CD/DQ/VL) and the float vector width (4, 8 or 16) of the kernels. */
typedef struct {
    char name[64];
    int level, vw;
    int hw_gather;   /* gathers as the instruction (Intel cores), else lane by lane */
} CgCpuInfo;
/* 0, or -1 with d reported when the spec is bad or (for_host) this host
 * cannot run that code. */
int cg_cpu_query(const char *spec, int for_host, CgCpuInfo *info, Diag *d);

/* One object file with netc_train_step (from train) and netc_eval_step (from
 * eval; either may be NULL), for the CPU cpu_spec names (--cpu; NULL:
 * $NETC_CPU or the host), position independent.  Both
 * have the NetcStepFn signature of codegen/cpu/aot.h and call only base/pool.h
 * and libm.  Returns 0, or -1 with the LLVM failure reported through d. */
int cg_cpu_emit_object(const Program *train, const Program *eval, const char *cpu_spec, const char *obj_path,
                       Diag *d);

#endif
