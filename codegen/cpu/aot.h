/* aot.h - steps compiled ahead of time (LLVM-free).
 *
 * backend_aot is a Backend whose compile step just picks the precompiled
 * entry (train or eval, by the Program's mode) registered with
 * rt_aot_register, after checking that the program the runtime rebuilt has
 * the kernels and arena the entry was compiled for (the same source,
 * parameters, batch and --fuse give the same plan; anything else would run
 * the code on a wrong memory layout). */
#ifndef NETC_CPU_AOT_H
#define NETC_CPU_AOT_H

#include "../../base/step.h"


struct Backend;
extern const struct Backend backend_aot;
/* Registers the entry points linked into this executable (either may be
 * NULL) and the plan they were compiled for: plan[0], plan[1] the training
 * program's kernel count and arena bytes, plan[2], plan[3] the eval
 * program's (plan NULL: not checked). */
void rt_aot_register(NetcStepFn train, NetcStepFn eval, const long long *plan);

#endif
