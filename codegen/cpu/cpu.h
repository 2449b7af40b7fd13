/* cpu.h - the cpu backend's public face (LLVM-free header).
 *
 * backend_cpu compiles a Program through the LLVM C API into machine code for
 * the host and runs it with ORC LLJIT.  cg_cpu_emit_object writes the same
 * code as an object file for `netc compile`. */
#ifndef NETC_CG_CPU_H
#define NETC_CG_CPU_H

#include "../backend.h"

extern const Backend backend_cpu;

/* One object file with netc_train_step (from train) and netc_eval_step (from
 * eval; either may be NULL), for the host CPU, position independent.  Both
 * have the NetcStepFn signature of runtime/aot.h and call only runtime/pool.h
 * and libm.  Returns 0, or -1 with the LLVM failure reported through d. */
int cg_cpu_emit_object(const Program *train, const Program *eval, const char *obj_path, Diag *d);

#endif
