/* netc.c - the command-line driver: check, dump, train, eval, predict, step,
 * compile, bench. */
#include "runtime/cli.h"
#include "runtime/dist.h"
#include "base/pool.h"
#include "codegen/cuda/cuda_src.h"
#include "codegen/cuda/nccl.h"
#include "codegen/cuda/nvrtc.h"
#include "bench.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef NETC_TARGETS
#define NETC_TARGETS "ref"
#endif
#define NETC_VERSION "0.1.0"

#ifdef NETC_HAVE_LLVM
#include "codegen/cpu/cpu.h"
#endif

static const char *usage =
    "usage: netc COMMAND [options] FILE.net\n"
    "\n"
    "commands:\n"
    "  check FILE          parse, elaborate and shape-check; print a summary (with\n"
    "                      the kernel counts of the training and eval steps)\n"
    "  dump FILE           print the IR (--format text|dot, --train for the training\n"
    "                      graph, --memory for the memory plan, --params for the\n"
    "                      parameter list, --llvm for the generated LLVM IR,\n"
    "                      --cuda for the generated CUDA C, --ptx for its PTX\n"
    "                      (NVRTC, compute_90),\n"
    "                      --kernels for the kernels the fusion pass formed,\n"
    "                      --dump-after PASS for the graph after one pass)\n"
    "  train FILE          train on Fashion-MNIST with the file's settings\n"
    "                      (mpirun -np N netc train FILE: data parallel, N ranks)\n"
    "  eval FILE           test loss and accuracy of --weights CHECKPOINT\n"
    "  predict FILE        classes and probabilities of --images IDX_FILE\n"
    "  step FILE           one step on the tensors of --in, all results to --out\n"
    "  compile FILE -o P   a standalone executable P (train, eval, predict): cpu\n"
    "                      code, or with --target cuda the PTX of its kernels\n"
    "                      (needs only the CUDA driver where it runs)\n"
    "  bench FILE          time training steps (images/s, GFLOP/s, ms/step)\n"
    "\n"
    "options:\n"
    "  --param NAME=VALUE  set a network parameter: an integer, real, boolean or\n"
    "                      list (--param ratio=1, --param drop_rate=0.3)\n"
    "  --target T          backend: ref, cpu (default: cpu when built with LLVM),\n"
    "                      cuda (an NVIDIA GPU: needs its driver and NVRTC)\n"
    "  --precision P       cuda: fp32 (default), or tf32: convolutions and linear\n"
    "                      layers multiply tf32 operands on the tensor cores\n"
    "  --cpu NAME[,+F,-F]  cpu target: the CPU to generate code for: native (the\n"
    "                      host, default; or $NETC_CPU), x86-64-v3 (AVX2), x86-64-v4\n"
    "                      (AVX-512), znver3, skylake-avx512, ...; +F/-F add or\n"
    "                      remove LLVM features (native,-avx512f: 8-wide AVX2 code)\n"
    "  --threads N         worker threads (0: all cores)\n"
    "  --fuse all|none|P,...  fusion patterns to form (default all): conv_bn_relu,\n"
    "                      conv_bn_add_relu, conv_relu, bn_relu_conv, bn_act,\n"
    "                      relu_bn_bwd, bn_fold, elementwise, bn_relu_pool_bwd,\n"
    "                      pool_relu_bwd\n"
    "  --concat inplace|copy  inplace (default): concat inputs are written into\n"
    "                      their slots, gradient slices are views, accumulations\n"
    "                      over them are done in place; copy: every concat, slice\n"
    "                      and accumulation copies\n"
    "  --recompute bn-relu|none  bn-relu: the backward pass recomputes the output of\n"
    "                      every training batch norm + relu from its input and\n"
    "                      saved statistics instead of keeping it from the\n"
    "                      forward pass (default none)\n"
    "  --epochs N --lr X --batch N --resize N   override the file's training settings\n"
    "  --seed N            initialisation, shuffling and dropout seed (default 0)\n"
    "  --data DIR          Fashion-MNIST directory (default /usr/share/datasets/fashion-mnist)\n"
    "  --checkpoint PATH   write weights after every epoch (safetensors)\n"
    "  --resume            continue from --checkpoint\n"
    "  --metrics PATH      one JSON line per epoch\n"
    "  --plot PATH         SVG of loss and accuracies per epoch\n"
    "  --max-steps N       stop every epoch after N steps (quick runs)\n"
    "  --sync-bn           train under mpirun: batch-norm statistics over the whole\n"
    "                      batch, every rank's part (default: each rank's own)\n"
    "  --ranks N           compile: an executable for mpirun -np N (each rank\n"
    "                      takes 1/N of the batch)\n"
    "  --weights PATH      checkpoint for eval and predict\n"
    "  --images PATH --limit N   predict: IDX images, how many\n"
    "  --steps N --warmup N --json   bench settings\n"
    "  --compare-fuse      bench: time the step fused as --fuse asks against the\n"
    "                      unfused one (--fuse none), in turns, on the same weights\n"
    "                      and batch; print both images/s, their ratio, kernel\n"
    "                      counts, arena sizes and first-step losses\n"
    "  --verify            run the IR verifier after every pass\n"
    "  --quiet             no progress output\n"
    "  --version, --help\n";

static void register_backends(void) {
#ifdef NETC_HAVE_LLVM
    backend_register(&backend_cpu);
#endif
    backend_register(&backend_cuda);
}

/* The kernels of g's program in `mode` after fusion as --fuse asks, and the
 * nodes they hold (what an unfused program has as many kernels). */
static int count_kernels(const IrGraph *g, IrMode mode, const RtArgs *a, int *kernels, int *nodes, Diag *d) {
    Program p;
    PipelineOptions po = {mode, g->train.batch, 4, a->verify, NULL, NULL, &a->fuse, &a->plan, 0, 0};
    int rc = pass_pipeline(g, &po, &p, d);
    if (!rc) {
        *kernels = p.nkernels;
        *nodes = 0;
        for (int k = 0; k < p.nkernels; k++) *nodes += p.kernels[k].nnodes;
    }
    program_free(&p);
    return rc;
}

static int cmd_check(const RtArgs *a) {
    RtSource src = {a->file, NULL, 0};
    IrGraph g, ge;
    char *text = NULL;
    Diag d;
    int rc = rt_build_graph(&src, a, IR_TRAIN, &g, &text, &d);
    int kt = 0, nt = 0, ke = 0, ne = 0;
    ir_init(&ge);
    if (!rc) {
        RtSource s2 = {a->file, text, text ? strlen(text) : 0};
        rc = rt_build_graph(text ? &s2 : &src, a, IR_EVAL, &ge, &text, &d);
    }
    if (!rc) rc = count_kernels(&g, IR_TRAIN, a, &kt, &nt, &d);
    if (!rc) rc = count_kernels(&ge, IR_EVAL, a, &ke, &ne, &d);
    if (!rc) {
        IrStats st;
        pass_stats(&g, &st);
        int counts[IR_OP_COUNT] = {0};
        for (int i = 0; i < g.nnodes; i++) counts[g.nodes[i].op]++;
        char in[64], out[64];
        ir_type_str(ir_type(&g, g.input), in, sizeof in);
        ir_type_str(ir_type(&g, g.logits), out, sizeof out);
        printf("%s: ok\n", a->file);
        printf("  parameters:  %lld (+ %lld running statistics)\n", (long long)st.params, (long long)st.state);
        printf("  input:       %s\n  output:      %s\n", in, out);
        printf("  layers:      %d (conv %d, linear %d, batchnorm %d)\n", st.layers, counts[IR_OP_CONV2D],
               counts[IR_OP_LINEAR], counts[IR_OP_BATCHNORM]);
        printf("  ops:        ");
        for (int op = 0; op < IR_OP_COUNT; op++)
            if (counts[op] && op != IR_OP_PARAM) printf(" %s %d", ir_op_info[op].name, counts[op]);
        printf("\n");
        printf("  forward:     %.4f GFLOP per image (training step: %.4f)\n", (double)st.fwd_flops / 1e9,
               3.0 * (double)st.fwd_flops / 1e9);
        printf("  training:    lr %g, batch %d, epochs %d, resize %d\n", g.train.lr, g.train.batch, g.train.epochs,
               g.train.resize);
        char ft[48] = "one per node", fe[48] = "one per node";
        if (kt < nt) snprintf(ft, sizeof ft, "fused from %d nodes", nt);
        if (ke < ne) snprintf(fe, sizeof fe, "fused from %d nodes", ne);
        printf("  kernels:     train %d (%s), eval %d (%s)\n", kt, ft, ke, fe);
    }
    ir_free(&g);
    ir_free(&ge);
    free(text);
    return rc ? 1 : 0;
}

static int cmd_dump(const RtArgs *a) {
    RtSource src = {a->file, NULL, 0};
    IrGraph g;
    char *text = NULL;
    Diag d;
    int program = a->train_graph || a->memory || a->llvm || a->cuda || a->ptx || a->dump_after || a->kernels;
    IrMode mode = a->mode && !strcmp(a->mode, "eval") ? IR_EVAL : IR_TRAIN;
    int rc = rt_build_graph(&src, a, mode, &g, &text, &d);
    if (!rc && a->params) {
        for (int i = 0; i < g.nnodes; i++) {
            if (g.nodes[i].op != IR_OP_PARAM) continue;
            char t[64];
            const IrValue *v = ir_value(&g, g.nodes[i].out[0]);
            ir_type_str(&v->type, t, sizeof t);
            int r = g.nodes[i].attr.param.role;
            printf("%s %s %s\n", v->name, t, r >= IR_PARAM_RUNNING_MEAN ? "state" : "param");
        }
    } else if (!rc && !program) {
        if (a->format && !strcmp(a->format, "dot")) ir_dump_dot(&g, stdout, NULL);
        else ir_dump(&g, stdout);
    } else if (!rc) {
        Program p;
        PipelineOptions po = {mode, g.train.batch, 4, 1, a->dump_after, stdout, &a->fuse, &a->plan, 0, 0};
        rc = pass_pipeline(&g, &po, &p, &d);
        if (!rc) {
            int64_t sv_in, sv_re;
            if (a->memory) {
                if (!(rc = pass_plan_savings(&g, &po, &p, &sv_in, &sv_re, &d))) {
                    program_dump_memory(&p, stdout);
                    printf("saved: %lld bytes (%.1f MiB) by in-place concat (against --concat copy), %lld bytes "
                           "(%.1f MiB) by recompute (against --recompute none)\n", (long long)sv_in,
                           (double)sv_in / (1 << 20), (long long)sv_re, (double)sv_re / (1 << 20));
                }
            } else if (a->kernels) program_dump_kernels(&p, stdout);
            else if (a->cuda || a->ptx) {
                /* --ptx: as the cuda backend and `netc compile --target cuda` compile it */
                CudaSource cs;
                if (!(rc = cg_cuda_source(&p, a->tf32, &cs, &d))) {
                    char *ptx = NULL;
                    size_t n = 0;
                    int hit;
                    if (a->cuda) fwrite(cs.text, 1, cs.len, stdout);
                    else if (!(rc = cg_nvrtc_compile_cached(cs.text, "netc.cu", "compute_90", &ptx, &n, &hit, &d)))
                        fputs(ptx, stdout);   /* PTX is text: n counts its NUL */
                    free(ptx);
                    cg_cuda_source_free(&cs);
                }
            }
            else if (a->llvm) {
                const Backend *be = backend_find("cpu");
                void *st = NULL;
                BackendOptions bo = {a->threads, 3, 0, a->cpu, 0, 0};
                if (!be) rc = diag_error_noloc(&d, "this netc was built without LLVM (targets: %s); --llvm needs the cpu backend", NETC_TARGETS);
                else if (!(rc = be->compile(&p, &bo, &st, &d))) {
                    rc = be->dump ? be->dump(st, stdout) : -1;
                    be->free(st);
                }
            } else if (a->train_graph && !a->dump_after) {
                /* dot: each fused kernel in its own colour */
                int *group = ir_xcalloc((size_t)p.g.nnodes + 1, sizeof(int));
                for (int k = 0; k < p.nkernels; k++)
                    for (int j = 0; j < p.kernels[k].nnodes; j++) group[p.kernels[k].nodes[j]] = k;
                if (a->format && !strcmp(a->format, "dot")) ir_dump_dot(&p.g, stdout, group);
                else ir_dump(&p.g, stdout);
                free(group);
            }
        }
        program_free(&p);
    }
    ir_free(&g);
    free(text);
    return rc ? 1 : 0;
}

int netc_cmd_compile(const RtArgs *a);

int main(int argc, char **argv) {
    register_backends();
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("netc %s\ntargets: %s\n", NETC_VERSION, NETC_TARGETS);
#ifndef NETC_HAVE_LLVM
        printf("built without LLVM: the cpu target and `netc compile` are not available; ref runs everything\n");
#else
        /* what --cpu native (or $NETC_CPU) generates code for */
        Diag d;
        diag_init(&d, "netc", NULL, 0, stderr);
        CgCpuInfo c;
        if (cg_cpu_query(NULL, 1, &c, &d)) return 1;
        printf("cpu target: %s, %d-wide vectors (%s)%s\n", c.name, c.vw,
               c.level == 4 ? "AVX-512" : c.level == 3 ? "AVX2" : "SSE",
               c.level < 3 ? "" : c.hw_gather ? ", gathers as instructions" : ", gathers lane by lane");
#endif
        const char *why = NULL;
        int nvrtc = cg_nvrtc_available(&why);
        void *cuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
        printf("cuda target: %s; %s\n", nvrtc ? "NVRTC found" : why,
               cuda ? "CUDA driver (libcuda.so.1) found" : "no CUDA driver (libcuda.so.1) on this machine");
        if (cuda) dlclose(cuda);
        NcclTable nc;
        char nwhy[256];
        int nccl = cg_nccl_open(&nc, nwhy, sizeof nwhy) == 0;
        cg_nccl_close(&nc);
        printf("data parallel: %s", rt_dist_built() ? "MPI (mpirun -np N netc train FILE)"
                                                   : "none (built without MPI: libopenmpi-dev)");
        if (rt_dist_built())
            printf("; --target cuda: %s", nccl ? "NCCL (libnccl.so.2) sums the gradients on the devices"
                                               : "no NCCL (libnccl.so.2): the gradients are summed on the host");
        printf("\n");
        return 0;
    }
    const char *cmd = argv[1];
    const char *common = "param target precision cpu threads batch resize verify quiet";
    char allowed[512];
    RtArgs a;
    RtSource src;
    struct { const char *name, *flags; } cmds[] = {
        {"check", "fuse concat recompute"},
        {"dump", "format memory llvm cuda ptx params train mode dump-after kernels fuse concat recompute"},
        {"train", "epochs lr seed data checkpoint resume metrics plot max-steps fuse concat recompute sync-bn"},
        {"eval", "weights data fuse concat recompute"},
        {"predict", "weights images limit fuse concat recompute"},
        {"step", "in out mode lr seed fuse concat recompute"},
        {"compile", "out fuse concat recompute ranks sync-bn"},
        {"bench", "steps warmup json lr fuse compare-fuse concat recompute sync-bn"},
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        if (strcmp(cmd, cmds[i].name)) continue;
        for (int k = 2; k < argc; k++)
            if (!strcmp(argv[k], "--help") || !strcmp(argv[k], "-h")) { fputs(usage, stdout); return 0; }
        snprintf(allowed, sizeof allowed, "%s %s", common, cmds[i].flags);
        if (rt_args_parse(&a, argc, argv, 2, cmd, allowed, 1)) return 2;
        src = (RtSource){a.file, NULL, 0};
        int rc = 2;
        if (!strcmp(cmd, "check")) rc = cmd_check(&a);
        if (!strcmp(cmd, "dump")) rc = cmd_dump(&a);
        if (!strcmp(cmd, "train")) rc = rt_cmd_train(&src, &a);
        if (!strcmp(cmd, "eval")) rc = rt_cmd_eval(&src, &a);
        if (!strcmp(cmd, "predict")) rc = rt_cmd_predict(&src, &a);
        if (!strcmp(cmd, "step")) rc = rt_cmd_step(&src, &a);
        if (!strcmp(cmd, "compile")) rc = netc_cmd_compile(&a);
        if (!strcmp(cmd, "bench")) rc = netc_cmd_bench(&a);
        for (int k = 0; k < a.ndefines; k++) free((char *)a.defines[k].name);   /* strndup'd by rt_args_parse */
        return rc;
    }
    fprintf(stderr, "netc: unknown command `%s`\n%s", cmd, usage);
    return 2;
}
