/* fuzz_frontend.c - libFuzzer target for the front end.
 *
 *   cmake -DCMAKE_C_COMPILER=clang -DNETC_FUZZ=ON ... && ./fuzz_frontend corpus/
 *
 * Any input must give 0 or -1 with a diagnostic, never a crash, hang or
 * leak: fe_build, then pass_infer_shapes when it succeeds, then free all. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "frontend/frontend.h"
#include "passes/passes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static FILE *null;
    if (!null)
        null = fopen("/dev/null", "w");
    Diag d;
    diag_init(&d, "fuzz.net", (const char *)data, size, null);
    IrGraph g;
    ir_init(&g);
    FeOptions o = { (size & 1) ? IR_EVAL : IR_TRAIN, NULL, 0, 0, 0 };
    if (fe_build((const char *)data, size, &o, &g, &d) == 0)
        pass_infer_shapes(&g, &d);
    ir_free(&g);
    return 0;
}
