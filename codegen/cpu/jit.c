/* jit.c - the host target machine, the optimisation pipeline (new pass
 * manager), ORC LLJIT, and object-file emission.  Every LLVM failure is
 * reported through diag_error_noloc with what failed. */
#include "cg.h"
#include "../../base/syncbn.h"
#include "../../base/gradready.h"

#include <llvm-c/Analysis.h>
#include <llvm-c/Support.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../base/pool.h"

static int llvm_err(Diag *d, const char *what, LLVMErrorRef e) {
    char *msg = LLVMGetErrorMessage(e);
    diag_error_noloc(d, "cpu backend: %s: %s", what, msg);
    LLVMDisposeErrorMessage(msg);
    return -1;
}

static void init_llvm(void) {
    static int done;
    if (done) return;
    LLVMInitializeNativeTarget();
    LLVMInitializeNativeAsmPrinter();
    /* NETC_LLVM_ARGS: options for LLVM itself, e.g. "-time-passes" */
    const char *e = getenv("NETC_LLVM_ARGS");
    if (e && *e) {
        static char buf[1024];
        const char *argv[33] = {"netc"};
        int argc = 1;
        snprintf(buf, sizeof buf, "%s", e);
        for (char *t = strtok(buf, " "); t && argc < 32; t = strtok(NULL, " ")) argv[argc++] = t;
        LLVMParseCommandLineOptions(argc, argv, NULL);
    }
    done = 1;
}

int cg_fault(const char *what) {
    const char *f = getenv("NETC_CPU_FAULT");
    return f && !strcmp(f, what);
}

/* The CPUs --cpu names besides `native`, with the x86-64 feature level
 * (1: SSE2, 2: SSE4.2, 3: AVX2 + FMA, 4: AVX-512 F/BW/CD/DQ/VL) that sets
 * the vector width and that the host must reach to run their code. */
static const struct { const char *name; int level; } cpu_names[] = {
    {"x86-64", 1},         {"x86-64-v2", 2},     {"x86-64-v3", 3},      {"x86-64-v4", 4},
    {"haswell", 3},        {"broadwell", 3},     {"skylake", 3},        {"alderlake", 3},
    {"znver1", 3},         {"znver2", 3},        {"znver3", 3},         {"skylake-avx512", 4},
    {"cascadelake", 4},    {"icelake-server", 4}, {"sapphirerapids", 4},
};

/* Intel cores from Skylake on run vgatherdps faster than a load and an
 * insert per lane (a 16-lane gather in about 7.5 cycles on an AVX-512 Xeon);
 * AMD's Zen cores and the generic names take the lane-by-lane form. */
static int intel_core(const char *name) {
    static const char *intel[] = {"skylake", "skylake-avx512", "cascadelake", "cooperlake", "cannonlake",
                                  "icelake-client", "icelake-server", "rocketlake", "tigerlake",
                                  "sapphirerapids", "alderlake", "raptorlake", "meteorlake", "graniterapids",
                                  "emeraldrapids"};
    for (size_t i = 0; i < sizeof intel / sizeof intel[0]; i++)
        if (!strcmp(name, intel[i])) return 1;
    return 0;
}

/* The feature level a feature string reaches (features listed later win). */
static int has_feature(const char *features, const char *f) {
    int on = 0;
    size_t n = strlen(f);
    for (const char *p = features; (p = strstr(p, f)); p += n)
        if (p > features && (p[-1] == '+' || p[-1] == '-') && (p[n] == ',' || p[n] == 0) && (p - 1 == features || p[-2] == ','))
            on = p[-1] == '+';
    return on;
}

static int feature_level(const char *features) {
    if (has_feature(features, "avx512f") && has_feature(features, "avx512bw") && has_feature(features, "avx512vl") &&
        has_feature(features, "avx512dq") && has_feature(features, "avx512cd"))
        return 4;
    if (has_feature(features, "avx2") && has_feature(features, "fma")) return 3;
    if (has_feature(features, "sse4.2")) return 2;
    return 1;
}

int cg_cpu_select(const char *spec, int for_host, CgCpu *c, Diag *d) {
    memset(c, 0, sizeof *c);
    if (!spec || !*spec) spec = getenv("NETC_CPU");
    if (!spec || !*spec) spec = "native";
    char buf[512];
    if (strlen(spec) >= sizeof buf) return diag_error_noloc(d, "--cpu: `%.40s...` is too long", spec);
    snprintf(buf, sizeof buf, "%s", spec);
    char *save = NULL, *name = strtok_r(buf, ",", &save);
    if (!name) name = "native";
    char *host = LLVMGetHostCPUFeatures();
    int host_level = feature_level(host);
    int level = 0, rc = 0;
    if (!strcmp(name, "native")) {
        char *hn = LLVMGetHostCPUName();
        snprintf(c->name, sizeof c->name, "%s", hn);
        LLVMDisposeMessage(hn);
        snprintf(c->features, sizeof c->features, "%s", host);
        level = host_level;
    } else {
        for (size_t i = 0; i < sizeof cpu_names / sizeof cpu_names[0]; i++)
            if (!strcmp(name, cpu_names[i].name)) level = cpu_names[i].level;
        if (!level) {
            char known[512] = "native";
            for (size_t i = 0; i < sizeof cpu_names / sizeof cpu_names[0]; i++)
                snprintf(known + strlen(known), sizeof known - strlen(known), ", %s", cpu_names[i].name);
            rc = diag_error_noloc(d, "--cpu: unknown CPU `%s` (known: %s)", name, known);
        }
        snprintf(c->name, sizeof c->name, "%s", name);
        static const char *implied[5] = {"", "", "+sse4.2,+popcnt", "+avx2,+fma,+f16c,+bmi2",
                                         "+avx2,+fma,+f16c,+bmi2,+avx512f,+avx512bw,+avx512vl,+avx512dq,+avx512cd"};
        snprintf(c->features, sizeof c->features, "%s", implied[level]);
    }
    /* ,+feat and ,-feat items, appended so that they win over what the name
     * implies (LLVM clears the features that imply one turned off) */
    for (char *f = strtok_r(NULL, ",", &save); f && rc == 0; f = strtok_r(NULL, ",", &save)) {
        size_t n = strlen(f);
        if ((f[0] != '+' && f[0] != '-') || n < 2 || n > 40 || strspn(f + 1, "abcdefghijklmnopqrstuvwxyz0123456789.-_") != n - 1)
            rc = diag_error_noloc(d, "--cpu: `%s` is not a feature to add (+name) or remove (-name)", f);
        else if (strlen(c->features) + n + 2 < sizeof c->features)
            snprintf(c->features + strlen(c->features), sizeof c->features - strlen(c->features), "%s%s",
                     c->features[0] ? "," : "", f);
        if (f[0] == '+' && for_host && rc == 0 && !has_feature(host, f + 1))
            rc = diag_error_noloc(d, "--cpu: this host has no %s, so code using it cannot run here "
                                     "(`netc compile --cpu` builds for other machines)", f + 1);
    }
    if (rc == 0) {
        /* native: what the features reach; a name: its level, lowered by
         * features turned off after it */
        int fl = feature_level(c->features);
        if (!strcmp(name, "native") || fl < level) level = fl;
        if (for_host && level > host_level)
            rc = diag_error_noloc(d, "--cpu: %s needs %s, which this host lacks, so its code cannot run here "
                                     "(`netc compile --cpu` builds for other machines)", spec,
                                     level == 4 ? "AVX-512 (F, BW, CD, DQ, VL)" : level == 3 ? "AVX2 and FMA" : "SSE4.2");
        c->level = level;
        c->vw = level == 4 ? 16 : level == 3 ? 8 : 4;
        if (level < 3 && has_feature(c->features, "avx")) c->vw = 8;
        c->hw_gather = level >= 3 && intel_core(c->name);
        const char *g = getenv("NETC_CPU_GATHER");   /* tuning experiments: hw or lanes */
        if (g && (!strcmp(g, "hw") || !strcmp(g, "lanes"))) c->hw_gather = level >= 3 && !strcmp(g, "hw");
    }
    LLVMDisposeMessage(host);
    return rc;
}

int cg_cpu_query(const char *spec, int for_host, CgCpuInfo *info, Diag *d) {
    CgCpu c;
    if (cg_cpu_select(spec, for_host, &c, d)) return -1;
    snprintf(info->name, sizeof info->name, "%s", c.name);
    info->level = c.level;
    info->vw = c.vw;
    info->hw_gather = c.hw_gather;
    return 0;
}

LLVMTargetMachineRef cg_host_tm(const CgCpu *c, LLVMRelocMode reloc, Diag *d) {
    init_llvm();
    char *triple = cg_fault("target") ? LLVMCreateMessage("nosuch-unknown-none") : LLVMGetDefaultTargetTriple();
    char *err = NULL;
    LLVMTargetRef target;
    LLVMTargetMachineRef tm = NULL;
    if (LLVMGetTargetFromTriple(triple, &target, &err)) {
        diag_error_noloc(d, "cpu backend: no LLVM target for %s: %s", triple, err);
        LLVMDisposeMessage(err);
    } else {
        /* AVX2 gathers: LLVM assumes them slow on CPUs it does not tune for
         * gathers (AMD's) and expands every masked gather the vectoriser
         * forms into a branch per lane, slower than the instruction itself:
         * keep the instruction.  (The packing and pooling code's own gathers
         * are cg_gather's: the instruction on Intel cores, else lane by lane,
         * branch-free; CgCpu.hw_gather.) */
        char feat[sizeof c->features + 16];
        snprintf(feat, sizeof feat, "%s%s", c->features, c->level >= 3 ? ",+fast-gather" : "");
        tm = LLVMCreateTargetMachine(target, triple, c->name, feat, LLVMCodeGenLevelAggressive, reloc,
                                     LLVMCodeModelDefault);
        if (!tm) diag_error_noloc(d, "cpu backend: cannot create a target machine for %s (%s)", triple, c->name);
    }
    LLVMDisposeMessage(triple);
    return tm;
}

int cg_verify(LLVMModuleRef mod, Diag *d) {
    char *msg = NULL;
    if (LLVMVerifyModule(mod, LLVMReturnStatusAction, &msg)) {
        diag_error_noloc(d, "cpu backend: generated LLVM IR does not verify: %s", msg);
        LLVMDisposeMessage(msg);
        return -1;
    }
    LLVMDisposeMessage(msg);
    return 0;
}

int cg_optimise(LLVMModuleRef mod, LLVMTargetMachineRef tm, int opt, Diag *d) {
    if (cg_verify(mod, d)) return -1;
    return cg_run_passes(mod, tm, opt, d);
}

int cg_run_passes(LLVMModuleRef mod, LLVMTargetMachineRef tm, int opt, Diag *d) {
    char *triple = LLVMGetTargetMachineTriple(tm);
    LLVMSetTarget(mod, triple);
    LLVMDisposeMessage(triple);
    LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(tm);
    LLVMSetModuleDataLayout(mod, dl);
    LLVMDisposeTargetData(dl);
    char passes[32];
    snprintf(passes, sizeof passes, "default<O%d>", opt < 0 ? 0 : opt > 3 ? 3 : opt);
    LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
    LLVMPassBuilderOptionsSetLoopVectorization(po, opt >= 2);
    LLVMPassBuilderOptionsSetSLPVectorization(po, opt >= 2);
    /* Unrolling and interleaving multiply code size (and compile time) 4-5x
     * for little gain: the hot loop is the micro-kernel, explicit already. */
    LLVMPassBuilderOptionsSetLoopUnrolling(po, 0);
    LLVMPassBuilderOptionsSetLoopInterleaving(po, 0);
    LLVMErrorRef e = LLVMRunPasses(mod, passes, tm, po);
    LLVMDisposePassBuilderOptions(po);
    if (e) return llvm_err(d, "optimisation passes failed", e);
    return 0;
}

struct CgJit {
    LLVMOrcLLJITRef jit;
    LLVMOrcThreadSafeContextRef tsc;
};

/* The runtime entry points generated code calls, bound by address so that
 * they resolve whether or not the executable exports them. */
static int define_runtime(CgJit *j, Diag *d) {
    static const struct { const char *name; void *addr; } syms[] = {
        {"rt_parallel_for", (void *)rt_parallel_for},
        {"rt_pool_threads", (void *)rt_pool_threads},
        {"rt_worker_index", (void *)rt_worker_index},
        {"rt_scratch", (void *)rt_scratch},
        {"rt_prof_mark", (void *)rt_prof_mark},
        {"rt_syncbn_fwd", (void *)rt_syncbn_fwd},
        {"rt_syncbn_bwd", (void *)rt_syncbn_bwd},
        {"rt_grads_ready", (void *)rt_grads_ready},
    };
    enum { N = sizeof syms / sizeof syms[0] };
    LLVMJITCSymbolMapPair pairs[N];
    for (int i = 0; i < N; i++) {
        pairs[i].Name = LLVMOrcLLJITMangleAndIntern(j->jit, syms[i].name);
        pairs[i].Sym.Address = (LLVMOrcJITTargetAddress)(uintptr_t)syms[i].addr;
        pairs[i].Sym.Flags.GenericFlags = LLVMJITSymbolGenericFlagsExported | LLVMJITSymbolGenericFlagsCallable;
        pairs[i].Sym.Flags.TargetFlags = 0;
    }
    LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(j->jit);
    LLVMErrorRef e = LLVMOrcJITDylibDefine(jd, LLVMOrcAbsoluteSymbols(pairs, N));
    if (e) return llvm_err(d, "defining runtime symbols in the JIT", e);
    /* libm and libc (expf, logf, memset, ...) from the process */
    LLVMOrcDefinitionGeneratorRef gen;
    e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(j->jit), NULL, NULL);
    if (e) return llvm_err(d, "creating the process symbol generator", e);
    LLVMOrcJITDylibAddGenerator(jd, gen);
    return 0;
}

CgJit *cg_jit_new(const CgCpu *c, Diag *d) {
    LLVMTargetMachineRef tm = cg_host_tm(c, LLVMRelocPIC, d);
    if (!tm) return NULL;
    CgJit *j = calloc(1, sizeof *j);
    LLVMOrcLLJITBuilderRef jb = LLVMOrcCreateLLJITBuilder();
    LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(jb, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(tm));
    LLVMErrorRef e = LLVMOrcCreateLLJIT(&j->jit, jb);
    if (e) {
        llvm_err(d, "creating the ORC LLJIT", e);
        free(j);
        return NULL;
    }
    if (define_runtime(j, d)) {
        cg_jit_free(j);
        return NULL;
    }
    j->tsc = LLVMOrcCreateNewThreadSafeContext();
    return j;
}

LLVMContextRef cg_jit_context(CgJit *j) { return LLVMOrcThreadSafeContextGetContext(j->tsc); }

int cg_jit_add(CgJit *j, LLVMModuleRef mod, Diag *d) {
    LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(mod, j->tsc);
    LLVMErrorRef e = LLVMOrcLLJITAddLLVMIRModule(j->jit, LLVMOrcLLJITGetMainJITDylib(j->jit), tsm);
    if (e) {
        LLVMOrcDisposeThreadSafeModule(tsm);
        return llvm_err(d, "adding the module to the JIT", e);
    }
    return 0;
}

int cg_jit_add_object(CgJit *j, LLVMMemoryBufferRef obj, Diag *d) {
    LLVMErrorRef e = LLVMOrcLLJITAddObjectFile(j->jit, LLVMOrcLLJITGetMainJITDylib(j->jit), obj);
    if (e) return llvm_err(d, "adding an object file to the JIT", e);
    return 0;
}

void *cg_jit_lookup(CgJit *j, const char *name, Diag *d) {
    LLVMOrcExecutorAddress addr = 0;
    LLVMErrorRef e = LLVMOrcLLJITLookup(j->jit, &addr, name);
    if (e) {
        char what[160];
        snprintf(what, sizeof what, "looking up %s in the JIT", name);
        llvm_err(d, what, e);
        return NULL;
    }
    return (void *)(uintptr_t)addr;
}

void cg_jit_free(CgJit *j) {
    if (!j) return;
    if (j->tsc) LLVMOrcDisposeThreadSafeContext(j->tsc);
    if (j->jit) {
        LLVMErrorRef e = LLVMOrcDisposeLLJIT(j->jit);
        if (e) LLVMConsumeError(e);
    }
    free(j);
}
