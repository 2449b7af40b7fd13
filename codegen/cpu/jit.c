/* jit.c - the host target machine, the optimisation pipeline (new pass
 * manager), ORC LLJIT, and object-file emission.  Every LLVM failure is
 * reported through diag_error_noloc with what failed. */
#include "cg.h"

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

#include "../../runtime/pool.h"

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

LLVMTargetMachineRef cg_host_tm(LLVMRelocMode reloc, int *vw, Diag *d) {
    init_llvm();
    char *triple = cg_fault("target") ? LLVMCreateMessage("nosuch-unknown-none") : LLVMGetDefaultTargetTriple();
    char *cpu = LLVMGetHostCPUName();
    char *features = LLVMGetHostCPUFeatures();
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
         * are lane by lane, branch-free: cg_gather.) */
        char feat[8192];
        snprintf(feat, sizeof feat, "%s%s", features,
                 strstr(features, "+avx2") && strlen(features) + 14 < sizeof feat ? ",+fast-gather" : "");
        tm = LLVMCreateTargetMachine(target, triple, cpu, feat, LLVMCodeGenLevelAggressive, reloc,
                                     LLVMCodeModelDefault);
        if (!tm) diag_error_noloc(d, "cpu backend: cannot create a target machine for %s (%s)", triple, cpu);
    }
    if (vw) {
        *vw = 4;
        if (strstr(features, "+avx,") || strstr(features, "+avx2")) *vw = 8;
        if (strstr(features, "+avx512f")) *vw = 16;
    }
    LLVMDisposeMessage(triple);
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(features);
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

CgJit *cg_jit_new(Diag *d) {
    LLVMTargetMachineRef tm = cg_host_tm(LLVMRelocPIC, NULL, d);
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
