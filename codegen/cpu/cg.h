/* cg.h - the cpu backend's internals (needs the LLVM C headers): LLVM IR emission helpers (emit.c),
 * kernel generators (kernels.c: elementwise, batch norm, loss; pooling.c;
 * conv and linear: conv.c, gemm.c and the files of gemm_internal.h), the
 * JIT and object emission (jit.c).
 *
 * Generated code layout.  Every kernel k of a Program becomes
 *     void <prefix>k<k>(i8 *arena, i8 **slots, NetcStepArgs *a)
 * specialised on its constant shapes and buffer offsets, and the entry
 *     void <entry>(i8 *arena, i8 **slots, NetcStepArgs *a)
 * calls them in order.  Parallel kernels outline a body
 *     void body(i8 *frame, i64 begin, i64 end)
 * and call rt_parallel_for(a->pool, n, body, frame), frame being an array of
 * the pointers and integers the body needs. */
#ifndef NETC_CG_CG_H
#define NETC_CG_CG_H

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

#include "cpu.h"

typedef struct Cg {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMBuilderRef b;
    LLVMTypeRef v, i1, i8, i32, i64, f32, f64, p8, pp8, pf, pi32, vf, args_t, pargs;
    LLVMTypeRef kfn_t, body_t;
    int vw;                   /* floats per host vector: 4, 8 or 16 */
    int hw_gather;            /* cg_gather emits the gather instruction (else lane by lane) */
    int mr, mc;               /* the GEMM micro-kernel's rows and the rows of a packed A block (gemm.c) */
    LLVMValueRef fn;          /* function being emitted */
    LLVMValueRef arena, slots, args; /* the current kernel's parameters */
    LLVMValueRef rt_parallel_for, rt_pool_threads, rt_worker_index, rt_scratch;
    LLVMValueRef ukr;         /* the GEMM micro-kernel (gemm.c), made on first use */
    LLVMValueRef ukr_rows;    /* its variant for A packed as MR rows of kc */
    LLVMValueRef ukr_direct;  /* its variant reading B's rows in place, at a table of offsets */
    LLVMValueRef ukr_ktab;    /* its variant broadcasting A's MR floats of step k at a table of offsets */
    int counter;              /* unique names */
    const Program *p;         /* program being compiled */
    const char *prefix;       /* function name prefix of this program */
    /* The forward conv or linear layer being emitted applies ReLU to its
     * output (conv_relu and bn_fold kernels: the fused epilogue) and writes
     * it to value y_value instead of its own output (when >= 0). */
    int relu, y_value;
    /* Memory for BUF_INNER values, for a fused kernel run node by node (a
     * group its fused body cannot take): a zeroed module global sized for
     * the program's largest kernel, inner_off[v] v's offset in it. */
    LLVMValueRef inner;
    int64_t *inner_off;
    const Program *inner_p;
    /* A strided view (BUF_VIEW) a kernel that takes whole buffers reads or
     * writes through a contiguous stand-in (cg_stage): the value, and a
     * module global sized for the largest of the module's programs (they run
     * one at a time: the train and eval steps share it). */
    int stage_v;
    LLVMValueRef stage;
    const Program *stage_p;
    int64_t stage_bytes;
} Cg;

/* ---- emit.c ------------------------------------------------------------- */
void cg_init(Cg *cg, LLVMContextRef ctx, LLVMModuleRef mod, int vw);
void cg_dispose(Cg *cg);
LLVMValueRef cg_fn_new(Cg *cg, const char *name, LLVMTypeRef ty, int internal);
/* Adds the function attribute attr ("noinline", "optsize", ...) to f. */
void cg_fn_attr(Cg *cg, LLVMValueRef f, const char *attr);
/* The module's constant array `name` of n elements e of type ty (made on
 * first use: later calls with the same name share it), as a pointer to its
 * first element. */
LLVMValueRef cg_const_table(Cg *cg, const char *name, LLVMTypeRef ty, LLVMValueRef *e, int64_t n);
LLVMValueRef cg_call(Cg *cg, LLVMValueRef fn, LLVMValueRef *args, unsigned n);
LLVMValueRef cg_intrinsic(Cg *cg, const char *name, LLVMTypeRef *ovl, unsigned novl);
/* Floats at base[off[l]] (off: a vector of i32) for lanes where mask is
 * set, pass[l] elsewhere (those lanes read base[0], which must be
 * readable); pass's type is the result's. */
LLVMValueRef cg_gather(Cg *cg, LLVMValueRef base, LLVMValueRef off, LLVMValueRef mask, LLVMValueRef pass);
/* The vector of floats at p (any alignment) for lanes where mask is set,
 * pass[l] elsewhere (not read, so p may point outside the tensor there);
 * pass's type is the result's. */
LLVMValueRef cg_masked_load(Cg *cg, LLVMValueRef p, LLVMValueRef mask, LLVMValueRef pass);
/* A software prefetch of the cache line at p (never faults), for writing
 * when rw; locality 0..3 as llvm.prefetch's. */
void cg_prefetch(Cg *cg, LLVMValueRef p, int rw, int locality);

LLVMValueRef ci64(Cg *cg, int64_t x);
LLVMValueRef cf32(Cg *cg, float x);
LLVMValueRef cf64(Cg *cg, double x);
LLVMValueRef ci32(Cg *cg, int64_t x);
LLVMValueRef add(Cg *cg, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef sub(Cg *cg, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef mul(Cg *cg, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef sdiv(Cg *cg, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef srem(Cg *cg, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef addc(Cg *cg, LLVMValueRef a, int64_t c);
LLVMValueRef mulc(Cg *cg, LLVMValueRef a, int64_t c);
LLVMValueRef imin(Cg *cg, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef icmp(Cg *cg, LLVMIntPredicate p, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef and1(Cg *cg, LLVMValueRef a, LLVMValueRef b);
/* a in [0, n): a >= 0 && a < n (one unsigned compare) */
LLVMValueRef in_range(Cg *cg, LLVMValueRef a, int64_t n);
/* float a + b, a - b, a * b, a / b (scalars or vectors alike) */
LLVMValueRef f_add(Cg *cg, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef f_sub(Cg *cg, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef f_mul(Cg *cg, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef f_div(Cg *cg, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef fcmp(Cg *cg, LLVMRealPredicate p, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef sel(Cg *cg, LLVMValueRef c, LLVMValueRef a, LLVMValueRef b);   /* c ? a : b */
/* max(x, 0) as the relu kernel computes it (x < 0 ? 0 : x, so -0 and NaN
 * pass), on a float or a vector */
LLVMValueRef cg_relu(Cg *cg, LLVMValueRef x);
/* cg_relu(x) when on (an i1), else x */
LLVMValueRef cg_relu_if(Cg *cg, LLVMValueRef on, LLVMValueRef x);

LLVMValueRef gep(Cg *cg, LLVMValueRef fptr, LLVMValueRef idx);   /* float* + idx */
LLVMValueRef ld(Cg *cg, LLVMValueRef fptr, LLVMValueRef idx);
void st(Cg *cg, LLVMValueRef val, LLVMValueRef fptr, LLVMValueRef idx);
LLVMValueRef vld(Cg *cg, LLVMValueRef fptr, LLVMValueRef idx);   /* <vw x float>, align 4 */
void vst(Cg *cg, LLVMValueRef val, LLVMValueRef fptr, LLVMValueRef idx);
LLVMValueRef splat(Cg *cg, LLVMValueRef f);
LLVMValueRef hsum(Cg *cg, LLVMValueRef vec);                      /* float */
LLVMValueRef tr32(Cg *cg, LLVMValueRef x);                        /* i64 -> i32 */
LLVMValueRef gep64(Cg *cg, LLVMValueRef p, int64_t i);            /* i64* + i */
/* <8 x float> at p + idx (align 4), and its store */
LLVMValueRef v8ld(Cg *cg, LLVMValueRef p, LLVMValueRef idx);
void v8st(Cg *cg, LLVMValueRef v, LLVMValueRef p, LLVMValueRef idx);
/* the shuffle of a and b (8 lanes each) by the 8 indices m */
LLVMValueRef shuf8(Cg *cg, LLVMValueRef a, LLVMValueRef b, const int *m);
LLVMValueRef splat8(Cg *cg, LLVMValueRef x);                      /* eight lanes of x (any scalar type) */
void cg_memset0(Cg *cg, LLVMValueRef fptr, LLVMValueRef nfloats);
void cg_memcpy(Cg *cg, LLVMValueRef dst, LLVMValueRef src, LLVMValueRef nfloats);

/* Mutable locals: an alloca in the entry block (promoted by mem2reg). */
LLVMValueRef var(Cg *cg, LLVMTypeRef ty, LLVMValueRef init);
LLVMValueRef get(Cg *cg, LLVMValueRef var);
void set(Cg *cg, LLVMValueRef var, LLVMValueRef val);

typedef struct {
    LLVMBasicBlockRef head, exit;
    LLVMValueRef i, end;
    int64_t step;
} Loop;
/* for (i = start; i < end; i += step) { ... } between for_begin and for_end. */
LLVMValueRef for_begin(Cg *cg, Loop *l, LLVMValueRef start, LLVMValueRef end, int64_t step);
void for_end(Cg *cg, Loop *l);
/* for_end with the next value of i computed by the body (a variable step) */
void for_end_at(Cg *cg, Loop *l, LLVMValueRef next);

typedef struct { LLVMBasicBlockRef els, merge; int has_else; } If;
void if_begin(Cg *cg, If *f, LLVMValueRef cond);
void if_else(Cg *cg, If *f);
void if_end(Cg *cg, If *f);

/* Parallel region: vals (pointers or i64) are passed to an outlined body and
 * replaced by the body's copies; *begin, *end receive the chunk. */
typedef struct {
    LLVMValueRef outer_fn, frame, ntasks, body;
    LLVMValueRef outer_arena, outer_slots, outer_args;
    LLVMBasicBlockRef outer_bb;
    int reused;
} Par;
void par_begin(Cg *cg, Par *P, LLVMValueRef *vals, int n, LLVMValueRef ntasks,
               LLVMValueRef *begin, LLVMValueRef *end);
void par_end(Cg *cg, Par *P);
/* A body shared by every kernel that asks with the same key (its shapes
 * must then come through vals, not constants): returns 1 when the body is
 * new and must be emitted between this and par_end, 0 when an existing one
 * is reused (emit nothing; call par_end at once). */
int par_begin_shared(Cg *cg, Par *P, const char *key, LLVMValueRef *vals, int n, LLVMValueRef ntasks,
                     LLVMValueRef *begin, LLVMValueRef *end);
LLVMValueRef cg_pool(Cg *cg);          /* a->pool, in a kernel function */
LLVMValueRef cg_nthreads(Cg *cg);      /* i64 */

/* Output k of node n as float*, NULL when it is absent or unplanned
 * (kernels.c). */
LLVMValueRef cg_optr(Cg *cg, const IrNode *n, int k);
/* Address of value v's buffer as float* (int32 values too: bitcast as needed).
 * A strided view only while it is staged (its stand-in). */
LLVMValueRef cg_vptr(Cg *cg, int v);
/* Value v's first element, views included; *istride: floats from one
 * image to the next (the root's image size). */
LLVMValueRef cg_vptr_img(Cg *cg, int v, int64_t *istride);
/* Whether v is a strided view (program_loc). */
int cg_strided(const Cg *cg, int v);
/* When v is a strided view: makes the next cg_vptr(v) a contiguous stand-in,
 * filled from v when copy_in, and returns 1; else 0.  cg_unstage ends it,
 * writing the stand-in back to v's place when copy_out. */
int cg_stage(Cg *cg, int v, int copy_in);
void cg_unstage(Cg *cg, int copy_out);
/* rows copies of len floats: dst + i*dstride <- src + i*sstride, split by
 * rows across threads. */
void cg_rowcopy(Cg *cg, LLVMValueRef dst, int64_t dstride, LLVMValueRef src, int64_t sstride, int64_t len,
                int64_t rows);
int64_t cg_numel(const Cg *cg, int v);

/* ---- kernels.c ------------------------------------------------------------- */
/* Emits the body of one node into the current kernel function.  Returns 0 or
 * -1 for an op it cannot compile (reported through d). */
int cg_emit_node(Cg *cg, int node, Diag *d);

/* An elementwise chain: a run of a fused kernel's elementwise nodes computed
 * one element at a time in registers.  An op's inputs are buffers read at
 * the element's index, results of earlier ops, or the head (a value the
 * caller computes in the same loop: a batch norm's output); an op's result
 * is stored only when something outside the run reads it.  The arithmetic
 * is the unfused kernels', so results are the same bits. */
enum { CHAIN_MAX = 8, CHAIN_MAXP = 12 };
typedef struct {
    int nops;
    const IrNode *node[CHAIN_MAX];
    int in[CHAIN_MAX][IR_MAX_IN]; /* >= 0: buffer ptr[k]; -1: the head; -2 - j: op j's result */
    int out[CHAIN_MAX], out2[CHAIN_MAX]; /* buffers of the results (out2: dropout's mask), or -1 */
    int np;
    LLVMValueRef ptr[CHAIN_MAXP];
    const IrNode *dropout;        /* the one live dropout, or NULL */
    int head_out;                 /* the head is read elsewhere too: the caller stores it */
} Chain;
/* Whether the plan left value v without memory (BUF_INNER: its fused
 * kernel keeps it in registers, fuse_keeps_inner); every other value a
 * fused body makes is stored. */
int cg_inner(const Cg *cg, int v);
/* The chain of kernel k's nodes [from, to); head: the value id the caller
 * supplies (-1: none).  0, or -1 when they cannot form one. */
int cg_chain_make(Cg *cg, const Kernel *k, int from, int to, int head, Chain *c);
/* Whether cg_chain_eval can evaluate c on vectors. */
int cg_chain_vec_ok(const Chain *c);
/* A name for c's structure (bodies are shared by equal chains). */
void cg_chain_key(const Chain *c, char *buf, size_t n);
/* In a kernel function: the i64 key c's dropout needs (0 without one). */
LLVMValueRef cg_chain_key_value(Cg *cg, const Chain *c);
/* In a body: c at element index i (one float, or cg->vw from i when vec),
 * given p, the body's copies of c->ptr, key (cg_chain_key_value's), and head;
 * stores the results that are needed when store; returns the last op's. */
LLVMValueRef cg_chain_eval(Cg *cg, const Chain *c, LLVMValueRef *p, LLVMValueRef key, LLVMValueRef head,
                           LLVMValueRef i, int vec, int store);
/* A kernel of the chain alone over n elements. */
void cg_emit_chain(Cg *cg, const Chain *c, int64_t n);

/* ---- batchnorm.c ---------------------------------------------------------------- */
/* sum of the n (i64) contiguous floats at p, in float with vector
 * accumulators */
LLVMValueRef cg_reduce_sum(Cg *cg, LLVMValueRef p, LLVMValueRef n);
/* Batch norm node n; after (or NULL): a chain with n's output as head,
 * applied as each element is normalised (the normalised tensor itself is
 * stored only when needed). */
void cg_emit_batchnorm(Cg *cg, const IrNode *n, const Chain *after);
/* Its gradient; dy (or NULL): a chain (cg_chain_vec_ok, no head) whose last
 * result is n's incoming gradient, computed wherever that is read (stored
 * when needed, in the first pass). */
/* acc (or NULL): an accum(g, dx) the gradient dx is added into as it is
 * made (g and the sum may be strided views: a concat's gradient). */
/* sign (or NULL): the batch norm (apply mode) of n's x whose output dy's
 * chain reads (its head): the relu's sign, made from x (recompute.c). */
void cg_emit_batchnorm_bwd(Cg *cg, const IrNode *n, const Chain *dy, const IrNode *acc, const IrNode *sign);

/* ---- fused.c --------------------------------------------------------------------- */
/* Emits kernel k (its pattern's fused body where there is one, else its
 * nodes one after the other) into the current kernel function. */
int cg_emit_kernel(Cg *cg, const Kernel *k, Diag *d);

/* ---- pooling.c --------------------------------------------------------------- */
/* The body of a max or average pool node or of its gradient. */
void cg_emit_pool(Cg *cg, const IrNode *n);
/* A max pool gradient n whose input is relu(bn(x)), bn a batch norm in
 * apply mode (recompute.c), made plane by plane as it reads it; -1
 * (nothing emitted) where it cannot (small planes take another path). */
int cg_emit_pool_bn(Cg *cg, const IrNode *n, const IrNode *bn);
/* A max pool gradient n and the relu_bwd after it whose sign is the pool's
 * input (pool_relu_bwd) in one body writing relu's output; -1 (nothing
 * emitted) where it cannot (the pool's gradient in memory, strided views). */
int cg_emit_pool_relu(Cg *cg, const IrNode *n, const IrNode *relu);
/* The body of a global average or max pool node or of its gradient. */
void cg_emit_global_pool(Cg *cg, const IrNode *n);

/* ---- conv.c, gemm.c ------------------------------------------------------------ */
void cg_emit_conv(Cg *cg, const IrNode *n);
/* "winograd F(2x2, 3x3)" (or F(3x3, 3x3), F(4x4, 3x3), F(2x2, 5x5)) when conv node n of p
 * (forward or either gradient) is computed that way, else NULL (GEMMs):
 * for NETC_CPU_PROFILE's labels. */
const char *cg_conv_method(const Program *p, const IrNode *n);
void cg_emit_linear(Cg *cg, const IrNode *n);
/* Conv or linear node n followed by eval batch norm bn, as one product with
 * bn folded into its weights and bias: writes bn's output. */
void cg_emit_folded(Cg *cg, const IrNode *n, const IrNode *bn);

/* The GEMM kernel, for tests and benchmarks: C[M,N] += A[M,K] B[K,N], all
 * row-major with leading dimensions lda, ldb, ldc, emitted as a function
 * void name(float *A, float *B, float *C) run on one thread. */
void cg_emit_gemm_fn(Cg *cg, const char *name, int64_t M, int64_t N, int64_t K);
/* Sets cg->mr and cg->mc for the vector width: the micro-kernel's tile is
 * mr rows by two vectors, its accumulators filling the register file. */
void cg_gemm_shape(Cg *cg);

/* ---- jit.c ------------------------------------------------------------------ */
/* The CPU code is generated for: a name and LLVM feature string, the x86-64
 * feature level they reach (1..4; 4 is AVX-512) and the float vector width
 * the kernels use (4, 8 or 16). */
typedef struct {
    char name[64];
    char features[8192];
    int level, vw;
    int hw_gather;   /* gathers as the instruction: cg_cpu_select says when */
} CgCpu;
/* Parses a --cpu spec, NAME[,+feature|,-feature...]: NAME is `native` (the
 * host's name and features, queried, not assumed) or one of a table of x86
 * CPUs and levels (x86-64-v3, znver4, ...).  NULL or "" means $NETC_CPU, or
 * native.  With for_host, code that this host cannot run is refused.
 * Returns 0, or -1 with d reported. */
int cg_cpu_select(const char *spec, int for_host, CgCpu *c, Diag *d);
/* A target machine for c.  NULL with d reported. */
LLVMTargetMachineRef cg_host_tm(const CgCpu *c, LLVMRelocMode reloc, Diag *d);
/* Verifies and optimises (new pass manager, default<O{opt}>): cg_verify
 * then cg_run_passes (which sets the module's triple and data layout from tm
 * and is safe to run on several threads at once, one module and one tm
 * each, in distinct contexts). */
int cg_optimise(LLVMModuleRef mod, LLVMTargetMachineRef tm, int opt, Diag *d);
int cg_verify(LLVMModuleRef mod, Diag *d);
int cg_run_passes(LLVMModuleRef mod, LLVMTargetMachineRef tm, int opt, Diag *d);

typedef struct CgJit CgJit;
/* Takes ownership of ctx's module mod (a ThreadSafeContext made by
 * cg_jit_context) and returns the address of each symbol in names. */
CgJit *cg_jit_new(const CgCpu *c, Diag *d);
LLVMContextRef cg_jit_context(CgJit *j);
int cg_jit_add(CgJit *j, LLVMModuleRef mod, Diag *d);
/* An object file in memory (ownership of obj passes to the JIT). */
int cg_jit_add_object(CgJit *j, LLVMMemoryBufferRef obj, Diag *d);
void *cg_jit_lookup(CgJit *j, const char *name, Diag *d);
/* NETC_CPU_FAULT=target|verify|lookup: make that step fail (tests of the
 * error paths). */
int cg_fault(const char *what);
void cg_jit_free(CgJit *j);

/* Builds the whole module for program p, entry function named entry; kernel
 * functions are prefixed with prefix. */
int cg_build_program(Cg *cg, const Program *p, const char *entry, const char *prefix, Diag *d);

#endif
