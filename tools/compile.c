/* compile.c - `netc compile FILE -o PROG`: the training and eval programs as
 * machine code in an object file (LLVM's TargetMachine), linked by the
 * system C compiler with the runtime library (libnetc_core.a, no LLVM) and a
 * generated main that embeds the network's source. */
#include "runtime/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

#ifndef NETC_EXE_LIBS
#define NETC_EXE_LIBS "" /* what the runtime library needs besides zlib, pthreads and libm (MPI) */
#endif

/* The runtime library: $NETC_LIB, else libnetc_core.a beside this netc. */
static int find_runtime_lib(char *buf, size_t n) {
    const char *env = getenv("NETC_LIB");
    if (env) {
        snprintf(buf, n, "%s", env);
        return access(buf, R_OK);
    }
    char exe[2048];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k <= 0) return -1;
    exe[k] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    const char *cands[] = {"%s/libnetc_core.a", "%s/../lib/netc/libnetc_core.a"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(buf, n, cands[i], exe);
        if (access(buf, R_OK) == 0) return 0;
    }
    return -1;
}

/* The generated main's first statement: refuse to run, with a message, on a
 * machine without the instructions the code was generated for (instead of
 * dying of SIGILL in the first step). */
static void cpu_check(FILE *f, const CgCpuInfo *c) {
    /* the features each level's code may use (jit.c builds levels 3 and 4
     * with these) and what to compile with for a machine without them */
    static const char *need[5][9] = {{NULL}, {NULL}, {"sse4.2", "popcnt", NULL},
                                     {"avx2", "fma", "f16c", "bmi2", NULL},
                                     {"avx2", "fma", "f16c", "bmi2", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"}};
    static const char *fallback[5] = {"", "", "x86-64", "x86-64-v2", "x86-64-v3"};
    if (c->level < 2) return;
    fputs("    if (!(1", f);
    for (int i = 0; i < 9 && need[c->level][i]; i++) fprintf(f, " && __builtin_cpu_supports(\"%s\")", need[c->level][i]);
    fprintf(f, ")) {\n        fprintf(stderr, \"%%s: compiled by netc for %s (%s); this machine lacks those "
               "instructions (netc compile --cpu %s builds for older machines)\\n\", argv[0]);\n"
               "        return 1;\n    }\n", c->name, c->level == 4 ? "AVX-512" : c->level == 3 ? "AVX2, FMA" : "SSE4.2",
            fallback[c->level]);
}

static void c_string(FILE *f, const char *s, size_t len) {
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n\"\n\"", f);
        else if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 32 || c > 126) fprintf(f, "\\%03o", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

int netc_cmd_compile(const RtArgs *a) {
    Diag d;
    if (!a->out) {
        fprintf(stderr, "netc compile: error: give the executable's name with -o PROG\n");
        return 2;
    }
    if (a->target && strcmp(a->target, "cpu")) {
        fprintf(stderr, "netc compile: error: --target %s: compiled executables hold cpu code only in this version "
                        "(an executable embedding PTX is not built yet); `netc train --target cuda` runs on a GPU\n",
                a->target);
        return 1;
    }
    RtSource src = {a->file, NULL, 0};
    IrGraph gt, ge;
    char *text = NULL;
    ir_init(&gt), ir_init(&ge);
    int rc = rt_build_graph(&src, a, IR_TRAIN, &gt, &text, &d);
    /* --ranks N: the programs of one rank of N (its part of the batch; the
     * train program stops at the gradients, which the runtime sums) */
    RtArgs ar = *a;
    int ranks = a->ranks > 1 ? a->ranks : 0;
    if (!rc && ranks) {
        int64_t B = gt.train.batch;
        if (B % ranks) rc = diag_error_noloc(&d, "batch %lld does not split evenly among %d ranks", (long long)B, ranks);
        ar.batch = B / ranks;
        ir_free(&gt);
        free(text);
        text = NULL;
        if (!rc) rc = rt_build_graph(&src, &ar, IR_TRAIN, &gt, &text, &d);
    }
    a = &ar;
    RtSource s2 = {a->file, text, text ? strlen(text) : 0};
    if (!rc) rc = rt_build_graph(&s2, a, IR_EVAL, &ge, &text, &d);
    Program pt, pe;
    memset(&pt, 0, sizeof pt), memset(&pe, 0, sizeof pe);
    /* the patterns of --fuse, which the executable's own pipeline is given too */
    PipelineOptions ot = {IR_TRAIN, gt.train.batch, 4, a->verify, NULL, NULL, &a->fuse, &a->plan, ranks > 0,
                          ranks > 0 && a->sync_bn};
    PipelineOptions oe = {IR_EVAL, gt.train.batch, 4, a->verify, NULL, NULL, &a->fuse, &a->plan, 0, 0};
    if (!rc) rc = pass_pipeline(&gt, &ot, &pt, &d);
    if (!rc) rc = pass_pipeline(&ge, &oe, &pe, &d);
    char lib[4096], obj[4200], stub[4200], exe[4200], cmd[24576];
    snprintf(obj, sizeof obj, "%s.netc.o", a->out);
    snprintf(stub, sizeof stub, "%s.netc.c", a->out);
    snprintf(exe, sizeof exe, "%s.netc.tmp", a->out);
    if (!rc && find_runtime_lib(lib, sizeof lib))
        rc = diag_error_noloc(&d, "cannot find the runtime library libnetc_core.a beside netc; set NETC_LIB");
    CgCpuInfo cpu;
    if (!rc) rc = cg_cpu_query(a->cpu, 0, &cpu, &d);
    if (!rc) rc = cg_cpu_emit_object(&pt, &pe, a->cpu, obj, &d);
    if (!rc) {
        FILE *f = fopen(stub, "w");
        if (!f) rc = diag_error_noloc(&d, "cannot write %s: %s", stub, strerror(errno));
        else {
            const char *base = strrchr(a->file, '/');
            fprintf(f, "/* generated by netc compile */\n#include <stddef.h>\n#include <stdio.h>\n"
                       "typedef struct { const char *name; const char *value; } FeDefine;\n"
                       "typedef void (*NetcStepFn)(void *, void **, const void *);\n"
                       "void netc_train_step(void *, void **, const void *);\n"
                       "void netc_eval_step(void *, void **, const void *);\n"
                       "int rt_exe_main(int, char **, const char *, const char *, size_t, const FeDefine *, int,\n"
                       "                long long, int, unsigned, int, const long long *, NetcStepFn, NetcStepFn);\n"
                       "static const char src[] =\n");
            c_string(f, text, strlen(text));
            fprintf(f, ";\nstatic const FeDefine defs[] = {");
            for (int i = 0; i < a->ndefines; i++) {
                fputc('{', f);
                c_string(f, a->defines[i].name, strlen(a->defines[i].name));
                fputs(", ", f);
                c_string(f, a->defines[i].value, strlen(a->defines[i].value));
                fputs("}, ", f);
            }
            /* the plan the object's code was compiled for: kernels and arena bytes, train then eval */
            fprintf(f, "{0, 0}};\nstatic const long long plan[] = {%d, %lldLL, %d, %lldLL};\n", pt.nkernels,
                    (long long)pt.arena_bytes, pe.nkernels, (long long)pe.arena_bytes);
            fprintf(f, "int main(int argc, char **argv) {\n");
            cpu_check(f, &cpu);
            fprintf(f, "    return rt_exe_main(argc, argv, \"%s\", src, sizeof src - 1, defs, %d, %lldLL, %d, %#xu, %d, plan,\n"
                       "                       netc_train_step, netc_eval_step);\n}\n",
                    base ? base + 1 : a->file, a->ndefines, (long long)pt.batch, ge.train.resize, a->fuse.off,
                    a->plan.concat_copy | a->plan.recompute_bn_relu << 1 | (ranks && a->sync_bn) << 2 | ranks << 8);
            if (ferror(f) | fclose(f)) rc = diag_error_noloc(&d, "cannot write %s: %s", stub, strerror(errno));
        }
    }
    if (!rc) {
        const char *cc = getenv("CC") ? getenv("CC") : "cc";
        /* linked beside PROG, then renamed over it: a failed link (a full
         * disk) leaves no partial PROG and keeps an old one */
        snprintf(cmd, sizeof cmd, "%s -O2 -o '%s' '%s' '%s' '%s' %s -lz -lpthread -lm", cc, exe, stub, obj, lib,
                 NETC_EXE_LIBS);
        if (system(cmd) != 0) rc = diag_error_noloc(&d, "linking %s failed: %s", a->out, cmd);
        else if (rename(exe, a->out) != 0)
            rc = diag_error_noloc(&d, "cannot write %s: %s", a->out, strerror(errno));
    }
    remove(exe);
    remove(obj);
    remove(stub);
    if (!rc && !a->quiet && ranks)
        printf("wrote %s (batch %lld on each of %d ranks: run it with mpirun -np %d; batch-norm statistics %s; "
               "input %dx%d, kernels: train %d, eval %d)\n", a->out, (long long)pt.batch, ranks, ranks,
               a->sync_bn ? "over all ranks" : "per rank", ge.train.resize, ge.train.resize, pt.nkernels, pe.nkernels);
    else if (!rc && !a->quiet)
        printf("wrote %s (batch %lld, input %dx%d, kernels: train %d, eval %d)\n", a->out, (long long)pt.batch,
               ge.train.resize, ge.train.resize, pt.nkernels, pe.nkernels);
    if (pt.g.nodes) program_free(&pt);
    if (pe.g.nodes) program_free(&pe);
    ir_free(&gt), ir_free(&ge);
    free(text);
    return rc ? 1 : 0;
}
#endif
