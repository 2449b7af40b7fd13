/* aot.c - backend_aot: runs step functions compiled ahead of time by the cpu
 * backend (cg_cpu_emit_object) and linked into the executable. */
#include "aot.h"

#include <stdlib.h>

#include "../codegen/backend.h"
#include "pool.h"

static NetcStepFn aot_train, aot_eval;

void rt_aot_register(NetcStepFn train, NetcStepFn eval) {
    aot_train = train;
    aot_eval = eval;
}

static int aot_compile(const Program *p, const BackendOptions *o, void **state, Diag *d) {
    (void)o;
    NetcStepFn fn = p->g.mode == IR_TRAIN ? aot_train : aot_eval;
    if (!fn)
        return diag_error_noloc(d, "aot backend: no precompiled %s step in this executable",
                                p->g.mode == IR_TRAIN ? "training" : "eval");
    *state = (void *)fn;
    return 0;
}

static int aot_run(void *state, const Program *p, RunCtx *ctx) {
    (void)p;
    NetcStepArgs a = {ctx->lr, ctx->seed, ctx->step, ctx->pool};
    ((NetcStepFn)state)(ctx->arena, ctx->slots, &a);
    return 0;
}

static void aot_free(void *state) { (void)state; }

const Backend backend_aot = {
    .name = "aot",
    .desc = "precompiled step functions (netc compile)",
    .compile = aot_compile,
    .run = aot_run,
    .free = aot_free,
    .dump = NULL,
};
