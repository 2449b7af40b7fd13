/* aot.c - backend_aot: runs step functions compiled ahead of time by the cpu
 * backend (cg_cpu_emit_object) and linked into the executable. */
#include "aot.h"

#include <stdlib.h>

#include "../backend.h"
#include "../../base/pool.h"

static NetcStepFn aot_train, aot_eval;
static const long long *aot_plan;

void rt_aot_register(NetcStepFn train, NetcStepFn eval, const long long *plan) {
    aot_train = train;
    aot_eval = eval;
    aot_plan = plan;
}

static int aot_compile(const Program *p, const BackendOptions *o, void **state, Diag *d) {
    (void)o;
    int train = p->g.mode == IR_TRAIN;
    NetcStepFn fn = train ? aot_train : aot_eval;
    if (!fn)
        return diag_error_noloc(d, "aot backend: no precompiled %s step in this executable", train ? "training" : "eval");
    const long long *want = aot_plan ? aot_plan + (train ? 0 : 2) : NULL;
    if (want && (want[0] != p->nkernels || want[1] != p->arena_bytes))
        return diag_error_noloc(d, "this executable's %s step was compiled for %lld kernels and a %lld-byte arena, "
                                "but its runtime plans %d kernels and %lld bytes; build it again with netc compile",
                                train ? "training" : "eval", want[0], want[1], p->nkernels,
                                (long long)p->arena_bytes);
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
