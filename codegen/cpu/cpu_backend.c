/* cpu_backend.c - backend_cpu: a Program becomes one LLVM module (one
 * function per kernel, shapes and buffer offsets as constants, plus the
 * netc_step entry), optimised for the host and run through ORC LLJIT.
 * cg_cpu_emit_object writes the same code as an object file for
 * `netc compile`. */
#include "cg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#include "../../runtime/aot.h"
#include "../../runtime/pool.h"

/* NETC_CPU_PROFILE: the JIT entry marks each kernel (rt_prof_mark), kernels
 * of every program numbered from prof_base on. */
static int64_t prof_next;

static int cg_build_program_prof(Cg *cg, const Program *p, const char *entry, const char *prefix,
                                 int64_t prof_base, Diag *d);

int cg_build_program(Cg *cg, const Program *p, const char *entry, const char *prefix, Diag *d) {
    return cg_build_program_prof(cg, p, entry, prefix, -1, d);
}

static int cg_build_program_prof(Cg *cg, const Program *p, const char *entry, const char *prefix,
                                 int64_t prof_base, Diag *d) {
    cg->p = p;
    cg->prefix = prefix;
    LLVMValueRef *kfn = calloc((size_t)(p->nkernels ? p->nkernels : 1), sizeof *kfn);
    int rc = 0;
    for (int k = 0; k < p->nkernels && rc == 0; k++) {
        char name[96];
        snprintf(name, sizeof name, "%sk%d", prefix, k);
        kfn[k] = cg_fn_new(cg, name, cg->kfn_t, 1);
        {
            /* kept out of the entry: one huge function optimises slowly */
            unsigned kind = LLVMGetEnumAttributeKindForName("noinline", 8);
            LLVMAddAttributeAtIndex(kfn[k], LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(cg->ctx, kind, 0));
        }
        cg->arena = LLVMGetParam(kfn[k], 0);
        cg->slots = LLVMGetParam(kfn[k], 1);
        cg->args = LLVMGetParam(kfn[k], 2);
        for (int i = 0; i < p->kernels[k].nnodes && rc == 0; i++) rc = cg_emit_node(cg, p->kernels[k].nodes[i], d);
        LLVMBuildRetVoid(cg->b);
    }
    if (rc == 0) {
        LLVMValueRef f = cg_fn_new(cg, entry, cg->kfn_t, 0);
        LLVMValueRef a[3] = {LLVMGetParam(f, 0), LLVMGetParam(f, 1), LLVMGetParam(f, 2)};
        LLVMValueRef mark = NULL;
        if (prof_base >= 0) {
            LLVMTypeRef ft = LLVMFunctionType(cg->v, &cg->i64, 1, 0);
            mark = LLVMGetNamedFunction(cg->mod, "rt_prof_mark");
            if (!mark) mark = LLVMAddFunction(cg->mod, "rt_prof_mark", ft);
        }
        for (int k = 0; k < p->nkernels; k++) {
            if (mark) {
                LLVMValueRef kk = ci64(cg, prof_base + k);
                cg_call(cg, mark, &kk, 1);
            }
            cg_call(cg, kfn[k], a, 3);
        }
        if (mark) {
            LLVMValueRef kk = ci64(cg, -1);
            cg_call(cg, mark, &kk, 1);
        }
        LLVMBuildRetVoid(cg->b);
    }
    free(kfn);
    return rc;
}

typedef struct {
    CgJit *jit;
    NetcStepFn step;
    char *ir;          /* optimised module text, for dump */
    int64_t prof_base; /* NETC_CPU_PROFILE: first kernel's mark, or -1 */
    int64_t runs;
    char **prof_label; /* per kernel */
    int nkernels;
} CpuState;

static int cmp_prof(const void *a, const void *b) {
    double x = ((const double *)a)[0], y = ((const double *)b)[0];
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The kernels' share of the time, largest first, to stderr. */
static void prof_report(CpuState *s) {
    if (s->prof_base < 0 || s->runs < 2) return;
    double tot = 0;
    double (*rows)[2] = calloc((size_t)s->nkernels + 1, sizeof *rows);
    for (int k = 0; k < s->nkernels; k++) {
        rows[k][0] = rt_prof_total(s->prof_base + k) / (double)(s->runs - 1);
        rows[k][1] = k;
        tot += rows[k][0];
    }
    qsort(rows, (size_t)s->nkernels, sizeof *rows, cmp_prof);
    fprintf(stderr, "cpu profile: %lld runs after the first, %.1f ms per run\n", (long long)s->runs - 1, tot * 1e3);
    double cum = 0;
    for (int i = 0; i < s->nkernels && cum < 0.995 * tot; i++) {
        cum += rows[i][0];
        fprintf(stderr, "  %8.2f ms %5.1f%% %5.1f%%  k%-4d %s\n", rows[i][0] * 1e3, 100 * rows[i][0] / tot,
                100 * cum / tot, (int)rows[i][1], s->prof_label[(int)rows[i][1]]);
    }
    free(rows);
}

static void cpu_free(void *state) {
    CpuState *s = state;
    if (!s) return;
    prof_report(s);
    for (int k = 0; k < s->nkernels && s->prof_label; k++) free(s->prof_label[k]);
    free(s->prof_label);
    cg_jit_free(s->jit);
    free(s->ir);
    free(s);
}

static int cpu_compile(const Program *p, const BackendOptions *o, void **state, Diag *d) {
    if (p->elem_bytes != 4) return diag_error_noloc(d, "cpu backend: only float programs (elem_bytes 4)");
    CpuState *s = calloc(1, sizeof *s);
    int vw = 8;
    LLVMTargetMachineRef tm = cg_host_tm(LLVMRelocPIC, &vw, d);
    if (!tm) {
        free(s);
        return -1;
    }
    s->jit = cg_jit_new(d);
    if (!s->jit) {
        LLVMDisposeTargetMachine(tm);
        free(s);
        return -1;
    }
    LLVMContextRef ctx = cg_jit_context(s->jit);
    LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("netc", ctx);
    Cg cg;
    cg_init(&cg, ctx, mod, vw);
    int timing = getenv("NETC_CPU_TIMING") != NULL;
    double t0 = now_s();
    s->prof_base = -1;
    if (getenv("NETC_CPU_PROFILE")) {
        s->prof_base = prof_next;
        prof_next += p->nkernels;
        s->nkernels = p->nkernels;
        s->prof_label = calloc((size_t)p->nkernels + 1, sizeof *s->prof_label);
        for (int k = 0; k < p->nkernels; k++) {
            char buf[256];
            int len = 0;
            for (int i = 0; i < p->kernels[k].nnodes && len < 200; i++) {
                const IrNode *n = &p->g.nodes[p->kernels[k].nodes[i]];
                const IrType *t = n->nout > 0 && n->out[0] >= 0 ? ir_type(&p->g, n->out[0]) : NULL;
                len += snprintf(buf + len, sizeof buf - (size_t)len, "%s%s", i ? "+" : "", ir_info(n->op)->name);
                if (t && len < 200)
                    len += snprintf(buf + len, sizeof buf - (size_t)len, "[%lld,%lld,%lld,%lld] %s",
                                    (long long)t->d[0], (long long)(t->rank > 1 ? t->d[1] : 0),
                                    (long long)(t->rank > 2 ? t->d[2] : 0), (long long)(t->rank > 3 ? t->d[3] : 0),
                                    n->name ? n->name : "");
            }
            s->prof_label[k] = strdup(buf);
        }
    }
    int rc = cg_build_program_prof(&cg, p, "netc_step", "", s->prof_base, d);
    cg_dispose(&cg);
    double t1 = now_s();
    if (rc == 0) rc = cg_optimise(mod, tm, o && o->opt_level ? o->opt_level : 3, d);
    double t2 = now_s();
    LLVMDisposeTargetMachine(tm);
    if (rc == 0) {
        char *txt = LLVMPrintModuleToString(mod);
        s->ir = strdup(txt);
        LLVMDisposeMessage(txt);
        rc = cg_jit_add(s->jit, mod, d);
    } else {
        LLVMDisposeModule(mod);
    }
    if (rc == 0) {
        s->step = (NetcStepFn)(uintptr_t)cg_jit_lookup(s->jit, "netc_step", d);
        if (!s->step) rc = -1;
    }
    if (timing)
        fprintf(stderr, "cpu backend: build %.2f s, optimise %.2f s, codegen %.2f s\n", t1 - t0, t2 - t1, now_s() - t2);
    if (rc) {
        cpu_free(s);
        return -1;
    }
    *state = s;
    return 0;
}

static int cpu_run(void *state, const Program *p, RunCtx *ctx) {
    (void)p;
    CpuState *s = state;
    NetcStepArgs a = {ctx->lr, ctx->seed, ctx->step, ctx->pool};
    s->step(ctx->arena, ctx->slots, &a);
    /* the profile leaves out the first run (page faults, cold caches) */
    if (s->prof_base >= 0 && s->runs++ == 0) rt_prof_reset();
    return 0;
}

static int cpu_dump(void *state, FILE *f) {
    CpuState *s = state;
    fputs(s->ir ? s->ir : "", f);
    return 0;
}

const Backend backend_cpu = {
    .name = "cpu",
    .desc = "LLVM JIT for the host CPU (vectorised, multithreaded)",
    .compile = cpu_compile,
    .run = cpu_run,
    .free = cpu_free,
    .dump = cpu_dump,
};

int cg_cpu_emit_object(const Program *train, const Program *eval, const char *obj_path, Diag *d) {
    int vw = 8;
    LLVMTargetMachineRef tm = cg_host_tm(LLVMRelocPIC, &vw, d);
    if (!tm) return -1;
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("netc", ctx);
    Cg cg;
    cg_init(&cg, ctx, mod, vw);
    int rc = 0;
    if (train) rc = cg_build_program(&cg, train, "netc_train_step", "t_", d);
    if (rc == 0 && eval) rc = cg_build_program(&cg, eval, "netc_eval_step", "e_", d);
    cg_dispose(&cg);
    if (rc == 0) rc = cg_optimise(mod, tm, 3, d);
    if (rc == 0) {
        char *err = NULL;
        if (LLVMTargetMachineEmitToFile(tm, mod, (char *)obj_path, LLVMObjectFile, &err)) {
            diag_error_noloc(d, "cpu backend: cannot write object file %s: %s", obj_path, err);
            LLVMDisposeMessage(err);
            rc = -1;
        }
    }
    LLVMDisposeModule(mod);
    LLVMContextDispose(ctx);
    LLVMDisposeTargetMachine(tm);
    return rc;
}
