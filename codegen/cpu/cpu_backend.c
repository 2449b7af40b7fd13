/* cpu_backend.c - backend_cpu: a Program becomes one LLVM module (one
 * function per kernel, shapes and buffer offsets as constants, plus the
 * netc_step entry), optimised for the host and run through ORC LLJIT.
 * cg_cpu_emit_object writes the same code as an object file for
 * `netc compile`. */
#include "cg.h"

#include <llvm-c/BitReader.h>
#include <llvm-c/BitWriter.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#include "aot.h"
#include "../../base/pool.h"
#include "../../base/outfile.h"

/* NETC_CPU_PROFILE: the JIT entry marks each kernel (rt_prof_mark), kernels
 * of every program numbered from prof_base on. */
static int64_t prof_next;

static int cg_build_program_prof(Cg *cg, const Program *p, const char *entry, const char *prefix,
                                 int64_t prof_base, Diag *d);

/* Kernel functions and the entry are glue: they compute buffer addresses,
 * fill frames and call rt_parallel_for with a body; every loop lives in a
 * body (shared or per kernel), optimised normally.  Glue is marked noinline
 * and optnone, which skips the optimisation pipeline and selects
 * instructions the fast way: hundreds of small functions compile in a
 * fraction of the time and run as fast. */
static void glue_fn(Cg *cg, LLVMValueRef f) {
    static const char *attrs[] = {"noinline", "optnone"};
    for (int i = 0; i < 2; i++) {
        unsigned kind = LLVMGetEnumAttributeKindForName(attrs[i], strlen(attrs[i]));
        LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(cg->ctx, kind, 0));
    }
}

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
        glue_fn(cg, kfn[k]);
        cg->arena = LLVMGetParam(kfn[k], 0);
        cg->slots = LLVMGetParam(kfn[k], 1);
        cg->args = LLVMGetParam(kfn[k], 2);
        rc = cg_emit_kernel(cg, &p->kernels[k], d);
        LLVMBuildRetVoid(cg->b);
    }
    if (rc == 0) {
        LLVMValueRef f = cg_fn_new(cg, entry, cg->kfn_t, 0);
        glue_fn(cg, f);
        LLVMValueRef a[3] = {LLVMGetParam(f, 0), LLVMGetParam(f, 1), LLVMGetParam(f, 2)};
        LLVMValueRef mark = NULL;
        if (prof_base >= 0) {
            LLVMTypeRef ft = LLVMFunctionType(cg->v, &cg->i64, 1, 0);
            mark = LLVMGetNamedFunction(cg->mod, "rt_prof_mark");
            if (!mark) mark = LLVMAddFunction(cg->mod, "rt_prof_mark", ft);
        }
        LLVMValueRef ready = NULL;
        if (p->grad_final) {
            LLVMTypeRef ft = LLVMFunctionType(cg->v, &cg->i64, 1, 0);
            ready = LLVMGetNamedFunction(cg->mod, "rt_grads_ready");
            if (!ready) ready = LLVMAddFunction(cg->mod, "rt_grads_ready", ft);
        }
        for (int k = 0; k < p->nkernels; k++) {
            if (mark) {
                LLVMValueRef kk = ci64(cg, prof_base + k);
                cg_call(cg, mark, &kk, 1);
            }
            cg_call(cg, kfn[k], a, 3);
            if (ready && p->grad_final[k]) { /* base/gradready.h */
                LLVMValueRef kk = ci64(cg, k);
                cg_call(cg, ready, &kk, 1);
            }
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

/* The compiled code: one JIT (and the optimised modules, for dump) shared by
 * the programs compiled together (cpu_compile_pair), freed with the last. */
typedef struct {
    CgJit *jit;
    LLVMContextRef ctx[2];  /* the optimised modules, kept for dump */
    LLVMModuleRef mod[2];
    int refs;
} CpuCode;

typedef struct {
    CpuCode *code;
    NetcStepFn step;
    int64_t prof_base; /* NETC_CPU_PROFILE: first kernel's mark, or -1 */
    int64_t runs;
    char **prof_label; /* per kernel */
    int nkernels;
} CpuState;

static int cmp_prof(const void *a, const void *b) {
    double x = ((const double *)a)[0], y = ((const double *)b)[0];
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The kernels' share of the time, largest first, to stderr: those that make
 * up 99.5% of it, or all with NETC_CPU_PROFILE_ALL. */
static void prof_report(CpuState *s) {
    int all = getenv("NETC_CPU_PROFILE_ALL") != NULL;
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
    for (int i = 0; i < s->nkernels && (all || cum < 0.995 * tot); i++) {
        cum += rows[i][0];
        fprintf(stderr, "  %8.2f ms %5.1f%% %5.1f%%  k%-4d %s\n", rows[i][0] * 1e3, 100 * rows[i][0] / tot,
                100 * cum / tot, (int)rows[i][1], s->prof_label[(int)rows[i][1]]);
    }
    free(rows);
}

static void code_release(CpuCode *c) {
    if (!c || --c->refs > 0) return;
    cg_jit_free(c->jit);
    for (int i = 0; i < 2; i++) {
        if (c->mod[i]) LLVMDisposeModule(c->mod[i]);
        if (c->ctx[i]) LLVMContextDispose(c->ctx[i]);
    }
    free(c);
}

static void cpu_free(void *state) {
    CpuState *s = state;
    if (!s) return;
    prof_report(s);
    for (int k = 0; k < s->nkernels && s->prof_label; k++) free(s->prof_label[k]);
    free(s->prof_label);
    code_release(s->code);
    free(s);
}

/* ---- two-way split compile ---------------------------------------------------
 * The built module is verified, every function given external linkage, and
 * copied (bitcode) into a second context; each function is owned by one of
 * the two copies (greedy by instruction count, optnone glue counted at a
 * third), the other copy keeps only its declaration.  The copies are
 * optimised and compiled to object files on two threads and both objects are
 * linked by the JIT (NETC_CPU_SERIAL=1: one module, one thread).  Nothing
 * is inlined across the split; the only direct calls that may cross it are
 * a GEMM body's calls of its driver and micro-kernel, once per block. */

typedef struct {
    LLVMModuleRef mod;        /* copy 1: parsed in its thread from bc */
    LLVMContextRef ctx;
    LLVMMemoryBufferRef bc;
    LLVMTargetMachineRef tm;
    const char **drop;        /* names of functions the other copy owns */
    int ndrop;
    int opt, rc;
    LLVMMemoryBufferRef obj;
    char err[512];
    double sec;
} Half;

static int64_t fn_weight(LLVMValueRef f) {
    int64_t n = 0;
    for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(f); bb; bb = LLVMGetNextBasicBlock(bb))
        for (LLVMValueRef i = LLVMGetFirstInstruction(bb); i; i = LLVMGetNextInstruction(i)) n++;
    unsigned kind = LLVMGetEnumAttributeKindForName("optnone", 7);
    if (LLVMGetEnumAttributeAtIndex(f, LLVMAttributeFunctionIndex, kind)) n = n / 3 + 1;
    return n;
}

/* Replaces the definitions named in drop by declarations. */
static void drop_bodies(LLVMModuleRef mod, const char **drop, int ndrop) {
    for (int i = 0; i < ndrop; i++) {
        LLVMValueRef f = LLVMGetNamedFunction(mod, drop[i]);
        if (!f || LLVMIsDeclaration(f)) continue;
        LLVMSetValueName2(f, "netc.dropped", 12);
        LLVMValueRef decl = LLVMAddFunction(mod, drop[i], LLVMGlobalGetValueType(f));
        LLVMReplaceAllUsesWith(f, decl);
        LLVMDeleteFunction(f);
    }
}

static int emit_obj(LLVMModuleRef mod, LLVMTargetMachineRef tm, int opt, LLVMMemoryBufferRef *obj, char *err,
                    size_t errsz) {
    Diag d;
    diag_init(&d, "cpu", NULL, 0, NULL);
    if (cg_run_passes(mod, tm, opt, &d)) {
        snprintf(err, errsz, "optimisation passes failed");
        return -1;
    }
    char *msg = NULL;
    if (LLVMTargetMachineEmitToMemoryBuffer(tm, mod, LLVMObjectFile, &msg, obj)) {
        snprintf(err, errsz, "%s", msg ? msg : "object emission failed");
        LLVMDisposeMessage(msg);
        return -1;
    }
    return 0;
}

static void *half_main(void *arg) {
    Half *h = arg;
    double t0 = now_s();
    h->ctx = LLVMContextCreate();
    if (LLVMParseBitcodeInContext2(h->ctx, h->bc, &h->mod)) {
        snprintf(h->err, sizeof h->err, "cannot read back the module's bitcode");
        h->rc = -1;
        return NULL;
    }
    drop_bodies(h->mod, h->drop, h->ndrop);
    h->rc = emit_obj(h->mod, h->tm, h->opt, &h->obj, h->err, sizeof h->err);
    h->sec = now_s() - t0;
    return NULL;
}

static int cmp_w(const void *a, const void *b) {
    int64_t x = ((const int64_t *)a)[0], y = ((const int64_t *)b)[0];
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Optimises and compiles mod (in ctx, verified) into the JIT, on two threads
 * when the module is large enough to gain.  s keeps the modules. */
static int compile_split(CpuCode *s, LLVMContextRef ctx, LLVMModuleRef mod, LLVMTargetMachineRef tm,
                         const CgCpu *cpu, int opt, Diag *d) {
    int nf = 0;
    int64_t total = 0;
    for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f)) nf++;
    int64_t (*w)[2] = calloc((size_t)nf + 1, sizeof *w);
    LLVMValueRef *fns = calloc((size_t)nf + 1, sizeof *fns);
    int n = 0;
    for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f)) {
        if (LLVMIsDeclaration(f)) continue;
        fns[n] = f;
        w[n][0] = fn_weight(f);
        w[n][1] = n;
        total += w[n][0];
        n++;
    }
    int split = getenv("NETC_CPU_SERIAL") == NULL && total > 1000;
    s->ctx[0] = ctx;
    s->mod[0] = mod;
    int rc = 0;
    if (!split) {
        free(w);
        free(fns);
        LLVMMemoryBufferRef obj = NULL;
        char err[512];
        if (emit_obj(mod, tm, opt, &obj, err, sizeof err)) return diag_error_noloc(d, "cpu backend: %s", err);
        return cg_jit_add_object(s->jit, obj, d);
    }
    /* greedy: heaviest first, each to the lighter copy */
    qsort(w, (size_t)n, sizeof *w, cmp_w);
    char *owner = calloc((size_t)n + 1, 1);
    int64_t load[2] = {0, 0};
    for (int i = 0; i < n; i++) {
        int j = (int)w[i][1];
        int t = load[1] < load[0];
        owner[j] = (char)t;
        load[t] += w[i][0];
    }
    const char **drop[2];
    int ndrop[2] = {0, 0};
    drop[0] = calloc((size_t)n + 1, sizeof *drop[0]);
    drop[1] = calloc((size_t)n + 1, sizeof *drop[1]);
    for (int j = 0; j < n; j++) {
        if (LLVMGetLinkage(fns[j]) == LLVMInternalLinkage) {
            LLVMSetLinkage(fns[j], LLVMExternalLinkage);
            LLVMSetVisibility(fns[j], LLVMHiddenVisibility);
        }
        size_t len;
        const char *nm = LLVMGetValueName2(fns[j], &len);
        /* copy 0 drops what copy 1 owns, and the other way round */
        drop[owner[j] ? 0 : 1][ndrop[owner[j] ? 0 : 1]++] = strdup(nm);
    }
    Half h;
    memset(&h, 0, sizeof h);
    h.bc = LLVMWriteBitcodeToMemoryBuffer(mod);
    h.tm = cg_host_tm(cpu, LLVMRelocPIC, d);
    h.drop = drop[1];
    h.ndrop = ndrop[1];
    h.opt = opt;
    pthread_t th;
    int threaded = h.tm && pthread_create(&th, NULL, half_main, &h) == 0;
    if (!h.tm) rc = -1;
    LLVMMemoryBufferRef obj0 = NULL;
    char err[512];
    double t0 = now_s();
    if (rc == 0) {
        drop_bodies(mod, drop[0], ndrop[0]);
        if (emit_obj(mod, tm, opt, &obj0, err, sizeof err)) rc = diag_error_noloc(d, "cpu backend: %s", err);
    }
    double t1 = now_s();
    /* the other half: on its thread, or here when no thread could start */
    if (threaded)
        pthread_join(th, NULL);
    else if (h.tm)
        half_main(&h);
    if (getenv("NETC_CPU_TIMING"))
        fprintf(stderr, "cpu backend: split %lld + %lld: %.2f s and %.2f s\n", (long long)load[0], (long long)load[1],
                t1 - t0, h.sec);
    if (rc == 0 && h.rc) rc = diag_error_noloc(d, "cpu backend: %s", h.err);
    if (rc == 0) rc = cg_jit_add_object(s->jit, obj0, d);
    else if (obj0) LLVMDisposeMemoryBuffer(obj0);
    if (rc == 0) rc = cg_jit_add_object(s->jit, h.obj, d);
    else if (h.obj) LLVMDisposeMemoryBuffer(h.obj);
    s->ctx[1] = h.ctx;
    s->mod[1] = h.mod;
    if (h.bc) LLVMDisposeMemoryBuffer(h.bc);
    if (h.tm) LLVMDisposeTargetMachine(h.tm);
    for (int t = 0; t < 2; t++) {
        for (int i = 0; i < ndrop[t]; i++) free((void *)drop[t][i]);
        free(drop[t]);
    }
    free(owner);
    free(w);
    free(fns);
    return rc;
}

/* NETC_CPU_PROFILE: numbers p's kernels and labels them for the report. */
static void prof_setup(CpuState *s, const Program *p) {
    s->prof_base = -1;
    if (!getenv("NETC_CPU_PROFILE")) return;
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
            const char *m = cg_conv_method(p, n);
            if (m && len < 200) len += snprintf(buf + len, sizeof buf - (size_t)len, " (%s)", m);
        }
        s->prof_label[k] = strdup(buf);
    }
}

/* Compiles the n programs ps into one module and one JIT: kernels of the
 * same shape (a train program's forward and the eval program's) share one
 * body, compiled once.  Program i runs through entry "netc_step<i>". */
static int cpu_compile_many(const Program **ps, int n, const BackendOptions *o, void **states, Diag *d) {
    double tstart = now_s();
    for (int i = 0; i < n; i++)
        if (ps[i]->elem_bytes != 4) return diag_error_noloc(d, "cpu backend: only float programs (elem_bytes 4)");
    CgCpu cpu;
    if (cg_cpu_select(o ? o->cpu : NULL, 1, &cpu, d)) return -1;
    LLVMTargetMachineRef tm = cg_host_tm(&cpu, LLVMRelocPIC, d);
    if (!tm) return -1;
    CpuCode *code = calloc(1, sizeof *code);
    code->jit = cg_jit_new(&cpu, d);
    if (!code->jit) {
        LLVMDisposeTargetMachine(tm);
        free(code);
        return -1;
    }
    CpuState *st[2] = {NULL, NULL};
    IR_ASSERT(n >= 1 && n <= 2);
    for (int i = 0; i < n; i++) {
        st[i] = calloc(1, sizeof *st[i]);
        st[i]->code = code;
        code->refs++;
        prof_setup(st[i], ps[i]);
    }
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("netc", ctx);
    Cg cg;
    cg_init(&cg, ctx, mod, cpu.vw);
    cg.hw_gather = cpu.hw_gather;
    int timing = getenv("NETC_CPU_TIMING") != NULL;
    double t0 = now_s();
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        char entry[32], prefix[16];
        snprintf(entry, sizeof entry, "netc_step%d", i);
        snprintf(prefix, sizeof prefix, "p%d_", i);
        rc = cg_build_program_prof(&cg, ps[i], entry, prefix, st[i]->prof_base, d);
    }
    if (rc == 0 && cg_fault("verify")) {
        /* a block without a terminator */
        LLVMValueRef f = LLVMAddFunction(mod, "netc_fault", LLVMFunctionType(LLVMVoidTypeInContext(ctx), NULL, 0, 0));
        LLVMAppendBasicBlockInContext(ctx, f, "entry");
    }
    cg_dispose(&cg);
    double t1 = now_s();
    if (rc == 0) rc = cg_verify(mod, d);
    if (rc == 0) {
        rc = compile_split(code, ctx, mod, tm, &cpu, o && o->opt_level ? o->opt_level : 3, d);
    } else {
        LLVMDisposeModule(mod);
        LLVMContextDispose(ctx);
    }
    double t2 = now_s();
    LLVMDisposeTargetMachine(tm);
    for (int i = 0; i < n && rc == 0; i++) {
        char entry[32];
        snprintf(entry, sizeof entry, cg_fault("lookup") ? "netc_nosuch%d" : "netc_step%d", i);
        st[i]->step = (NetcStepFn)(uintptr_t)cg_jit_lookup(code->jit, entry, d);
        if (!st[i]->step) rc = -1;
    }
    if (timing)
        fprintf(stderr, "cpu backend: %d program%s, set-up %.2f s, build %.2f s, optimise and codegen %.2f s, "
                "link %.2f s\n", n, n > 1 ? "s" : "", t0 - tstart, t1 - t0, t2 - t1, now_s() - t2);
    for (int i = 0; i < n; i++) {
        if (rc) cpu_free(st[i]);
        states[i] = rc ? NULL : st[i];
    }
    return rc ? -1 : 0;
}

static int cpu_compile(const Program *p, const BackendOptions *o, void **state, Diag *d) {
    return cpu_compile_many(&p, 1, o, state, d);
}

static int cpu_compile_pair(const Program *train, const Program *eval, const BackendOptions *o, void **train_state,
                            void **eval_state, Diag *d) {
    const Program *ps[2] = {train, eval};
    void *st[2] = {NULL, NULL};
    if (cpu_compile_many(ps, 2, o, st, d)) return -1;
    *train_state = st[0];
    *eval_state = st[1];
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
    for (int i = 0; i < 2; i++) {
        if (!s->code->mod[i]) continue;
        char *txt = LLVMPrintModuleToString(s->code->mod[i]);
        fputs(txt, f);
        LLVMDisposeMessage(txt);
    }
    return 0;
}

const Backend backend_cpu = {
    .name = "cpu",
    .desc = "LLVM JIT for the host CPU (vectorised, multithreaded)",
    .compile = cpu_compile,
    .compile_pair = cpu_compile_pair,
    .run = cpu_run,
    .free = cpu_free,
    .dump = cpu_dump,
};

typedef struct {
    const char *p;
    size_t n;
} ObjBytes;

static int write_obj(FILE *f, void *ctx, char *err, size_t errlen) {
    (void)err, (void)errlen;
    const ObjBytes *b = ctx;
    fwrite(b->p, 1, b->n, f); /* rt_write_atomic checks the stream */
    return 0;
}

int cg_cpu_emit_object(const Program *train, const Program *eval, const char *cpu_spec, const char *obj_path,
                       Diag *d) {
    CgCpu cpu;
    if (cg_cpu_select(cpu_spec, 0, &cpu, d)) return -1;
    LLVMTargetMachineRef tm = cg_host_tm(&cpu, LLVMRelocPIC, d);
    if (!tm) return -1;
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("netc", ctx);
    Cg cg;
    cg_init(&cg, ctx, mod, cpu.vw);
    cg.hw_gather = cpu.hw_gather;
    int rc = 0;
    if (train) rc = cg_build_program(&cg, train, "netc_train_step", "t_", d);
    if (rc == 0 && eval) rc = cg_build_program(&cg, eval, "netc_eval_step", "e_", d);
    cg_dispose(&cg);
    if (rc == 0) rc = cg_optimise(mod, tm, 3, d);
    if (rc == 0) {
        /* to memory, then a checked atomic write: LLVM's own file output
         * aborts the process on a full disk and leaves a partial file */
        char *err = NULL, werr[512];
        LLVMMemoryBufferRef buf = NULL;
        if (LLVMTargetMachineEmitToMemoryBuffer(tm, mod, LLVMObjectFile, &err, &buf)) {
            diag_error_noloc(d, "cpu backend: cannot make object file %s: %s", obj_path, err ? err : "?");
            LLVMDisposeMessage(err);
            rc = -1;
        } else {
            ObjBytes ob = {LLVMGetBufferStart(buf), LLVMGetBufferSize(buf)};
            if (rt_write_atomic(obj_path, write_obj, &ob, werr, sizeof werr))
                rc = diag_error_noloc(d, "cannot write object file: %s", werr);
            LLVMDisposeMemoryBuffer(buf);
        }
    }
    LLVMDisposeModule(mod);
    LLVMContextDispose(ctx);
    LLVMDisposeTargetMachine(tm);
    return rc;
}
