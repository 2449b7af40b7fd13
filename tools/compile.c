/* compile.c - `netc compile FILE -o PROG`: the training and eval programs as
 * machine code in an object file, linked with the runtime library into a
 * standalone executable that needs no LLVM. */
#include "runtime/cli.h"

#include <stdio.h>

int netc_cmd_compile(const RtArgs *a);

#ifndef NETC_HAVE_LLVM
int netc_cmd_compile(const RtArgs *a) {
    (void)a;
    fprintf(stderr, "netc compile: error: this netc was built without LLVM (targets: %s); "
                    "rebuild with LLVM (apt-get install llvm-dev) to compile executables\n", NETC_TARGETS);
    return 1;
}
#else
#include "codegen/cpu/cpu.h"
int netc_cmd_compile(const RtArgs *a) {
    return cg_cpu_compile_executable(a);
}
#endif
