/* exe.c - main() of the executables `netc compile` makes.  The network's
 * source is embedded; the runtime rebuilds the same programs from it (the
 * passes are deterministic) and binds them to the precompiled step
 * functions (--target cpu), or to the PTX compiled for them (--target cuda:
 * the cuda backend finds each module's PTX by the hash of the CUDA C it
 * generates again), so no LLVM and no NVRTC is needed at run time.  Batch,
 * input size, network parameters and the fusion patterns (--fuse) were
 * fixed at compile time. */
#include "../codegen/cpu/aot.h"
#include "../codegen/cuda/nvrtc.h"
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const char *exe_usage =
    "usage: %s COMMAND [options]\n"
    "  a network compiled by netc: %s (batch %lld, input %dx%d)\n"
    "commands:\n"
    "  train    train on Fashion-MNIST: --epochs N --lr X --seed N --data DIR\n"
    "           --checkpoint PATH --resume --metrics PATH --plot PATH --max-steps N\n"
    "  eval     test loss and accuracy: --weights PATH --data DIR\n"
    "  predict  classes and probabilities: --images IDX_FILE --weights PATH --limit N\n"
    "common: --threads N (0: all cores), --quiet\n";

/* fuse_off, plan_flags: FuseOptions.off and PlanOptions (concat_copy, and
 * recompute_bn_relu << 1) of the programs compiled in, sync_bn << 2, tf32
 * << 3 (--precision tf32, cuda), and
 * ranks << 8 (netc compile --ranks: batch is then one rank's); plan: what
 * rt_aot_register checks them against. */
int rt_exe_main(int argc, char **argv, const char *name, const char *src, size_t len, const FeDefine *defs,
                int ndefs, long long batch, int resize, unsigned fuse_off, int plan_flags, const long long *plan, NetcStepFn train,
                NetcStepFn eval);
/* The same for an executable of --target cuda: mods, nmods the PTX of its
 * modules (CgNvrtcModule). */
int rt_exe_main_cuda(int argc, char **argv, const char *name, const char *src, size_t len, const FeDefine *defs,
                     int ndefs, long long batch, int resize, unsigned fuse_off, int plan_flags, const void *mods,
                     int nmods);

static int exe_main(int argc, char **argv, const char *name, const char *src, size_t len, const FeDefine *defs,
                    int ndefs, long long batch, int resize, unsigned fuse_off, int plan_flags, const char *target) {
    const char *cmd = argc > 1 ? argv[1] : NULL;
    if (!cmd || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        fprintf(cmd ? stdout : stderr, exe_usage, argv[0], name, batch, resize, resize);
        return cmd ? 0 : 2;
    }
    struct { const char *name, *flags; int (*run)(const RtSource *, const RtArgs *); } cmds[] = {
        {"train", "threads quiet epochs lr seed data checkpoint resume metrics plot max-steps", rt_cmd_train},
        {"eval", "threads quiet weights data", rt_cmd_eval},
        {"predict", "threads quiet weights images limit", rt_cmd_predict},
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        if (strcmp(cmd, cmds[i].name)) continue;
        for (int j = 2; j < argc; j++)
            if (!strcmp(argv[j], "--help") || !strcmp(argv[j], "-h")) {
                printf(exe_usage, argv[0], name, batch, resize, resize);
                return 0;
            }
        RtArgs a;
        if (rt_args_parse(&a, argc, argv, 2, cmd, cmds[i].flags, 0)) return 2;
        for (int k = 0; k < ndefs && k < RT_MAX_DEFINES; k++) a.defines[k] = defs[k];
        a.ndefines = ndefs < RT_MAX_DEFINES ? ndefs : RT_MAX_DEFINES;
        a.batch = batch;
        a.resize = resize;
        a.fuse.off = fuse_off;
        a.plan.concat_copy = plan_flags & 1;
        a.plan.recompute_bn_relu = (plan_flags >> 1) & 1;
        a.sync_bn = (plan_flags >> 2) & 1;
        a.tf32 = (plan_flags >> 3) & 1;
        a.ranks = plan_flags >> 8;
        a.target = target;
        RtSource s = {name, src, len};
        return cmds[i].run(&s, &a);
    }
    fprintf(stderr, "%s: unknown command `%s`\n", argv[0], cmd);
    fprintf(stderr, exe_usage, argv[0], name, batch, resize, resize);
    return 2;
}

int rt_exe_main(int argc, char **argv, const char *name, const char *src, size_t len, const FeDefine *defs,
                int ndefs, long long batch, int resize, unsigned fuse_off, int plan_flags, const long long *plan, NetcStepFn train,
                NetcStepFn eval) {
    backend_register(&backend_aot);
    rt_aot_register(train, eval, plan);
    return exe_main(argc, argv, name, src, len, defs, ndefs, batch, resize, fuse_off, plan_flags, "aot");
}

int rt_exe_main_cuda(int argc, char **argv, const char *name, const char *src, size_t len, const FeDefine *defs,
                     int ndefs, long long batch, int resize, unsigned fuse_off, int plan_flags, const void *mods,
                     int nmods) {
    backend_register(&backend_cuda);
    cg_nvrtc_embed(mods, nmods);
    return exe_main(argc, argv, name, src, len, defs, ndefs, batch, resize, fuse_off, plan_flags, "cuda");
}
