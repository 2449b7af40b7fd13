/* emit.c - small helpers over the LLVM C API builder: constants, arithmetic,
 * loads and stores, loops, ifs, locals and parallel regions.  They keep the
 * kernel generators (kernels.c, gemm.c) close to the C they stand for. */
#include "cg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../base/pool.h"

static LLVMValueRef declare(Cg *cg, const char *name, LLVMTypeRef ret, LLVMTypeRef *params,
                            unsigned n) {
    LLVMValueRef f = LLVMGetNamedFunction(cg->mod, name);
    if (!f) f = LLVMAddFunction(cg->mod, name, LLVMFunctionType(ret, params, n, 0));
    return f;
}

void cg_init(Cg *cg, LLVMContextRef ctx, LLVMModuleRef mod, int vw) {
    memset(cg, 0, sizeof *cg);
    cg->y_value = -1;
    cg->stage_v = -1;
    cg->ctx = ctx;
    cg->mod = mod;
    cg->b = LLVMCreateBuilderInContext(ctx);
    cg->vw = vw;
    cg_gemm_shape(cg);
    cg->v = LLVMVoidTypeInContext(ctx);
    cg->i1 = LLVMInt1TypeInContext(ctx);
    cg->i8 = LLVMInt8TypeInContext(ctx);
    cg->i32 = LLVMInt32TypeInContext(ctx);
    cg->i64 = LLVMInt64TypeInContext(ctx);
    cg->f32 = LLVMFloatTypeInContext(ctx);
    cg->f64 = LLVMDoubleTypeInContext(ctx);
    cg->p8 = LLVMPointerType(cg->i8, 0);
    cg->pp8 = LLVMPointerType(cg->p8, 0);
    cg->pf = LLVMPointerType(cg->f32, 0);
    cg->pi32 = LLVMPointerType(cg->i32, 0);
    cg->vf = LLVMVectorType(cg->f32, (unsigned)vw);
    LLVMTypeRef fields[4] = {cg->f64, cg->i64, cg->i64, cg->p8};
    cg->args_t = LLVMStructCreateNamed(ctx, "NetcStepArgs");
    LLVMStructSetBody(cg->args_t, fields, 4, 0);
    cg->pargs = LLVMPointerType(cg->args_t, 0);
    LLVMTypeRef kp[3] = {cg->p8, cg->pp8, cg->pargs};
    cg->kfn_t = LLVMFunctionType(cg->v, kp, 3, 0);
    LLVMTypeRef bp[3] = {cg->p8, cg->i64, cg->i64};
    cg->body_t = LLVMFunctionType(cg->v, bp, 3, 0);
    LLVMTypeRef pfp[4] = {cg->p8, cg->i64, LLVMPointerType(cg->body_t, 0), cg->p8};
    cg->rt_parallel_for = declare(cg, "rt_parallel_for", cg->v, pfp, 4);
    cg->rt_pool_threads = declare(cg, "rt_pool_threads", cg->i32, &cg->p8, 1);
    cg->rt_worker_index = declare(cg, "rt_worker_index", cg->i32, NULL, 0);
    cg->rt_scratch = declare(cg, "rt_scratch", cg->p8, &cg->i64, 1);
}

void cg_dispose(Cg *cg) {
    if (cg->b) LLVMDisposeBuilder(cg->b);
    cg->b = NULL;
    free(cg->inner_off);
    cg->inner_off = NULL;
}

void cg_fn_attr(Cg *cg, LLVMValueRef f, const char *attr) {
    unsigned kind = LLVMGetEnumAttributeKindForName(attr, strlen(attr));
    LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(cg->ctx, kind, 0));
}

LLVMValueRef cg_const_table(Cg *cg, const char *name, LLVMTypeRef ty, LLVMValueRef *e, int64_t n) {
    LLVMValueRef g = LLVMGetNamedGlobal(cg->mod, name);
    if (!g) {
        g = LLVMAddGlobal(cg->mod, LLVMArrayType(ty, (unsigned)n), name);
        LLVMSetInitializer(g, LLVMConstArray(ty, e, (unsigned)n));
        LLVMSetGlobalConstant(g, 1);
        LLVMSetLinkage(g, LLVMPrivateLinkage);
    }
    return LLVMBuildBitCast(cg->b, g, LLVMPointerType(ty, 0), "");
}

LLVMValueRef cg_fn_new(Cg *cg, const char *name, LLVMTypeRef ty, int internal) {
    LLVMValueRef f = LLVMAddFunction(cg->mod, name, ty);
    if (internal) LLVMSetLinkage(f, LLVMInternalLinkage);
    cg_fn_attr(cg, f, "nounwind");
    LLVMBasicBlockRef bb = LLVMAppendBasicBlockInContext(cg->ctx, f, "entry");
    LLVMPositionBuilderAtEnd(cg->b, bb);
    cg->fn = f;
    return f;
}

LLVMValueRef cg_call(Cg *cg, LLVMValueRef fn, LLVMValueRef *args, unsigned n) {
    return LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(fn), fn, args, n, "");
}

LLVMValueRef cg_intrinsic(Cg *cg, const char *name, LLVMTypeRef *ovl, unsigned novl) {
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    return LLVMGetIntrinsicDeclaration(cg->mod, id, ovl, novl);
}

/* base[off[l]] in lane l where mask is set, else pass.  With cg->hw_gather
 * (Intel cores) the gather instruction: on a 2-core AVX-512 Xeon GoogLeNet's
 * step 7% faster, LeNet-BN's 25%.  Otherwise lane by lane, a scalar load per
 * lane, masked lanes reading base[0] (every caller's base is readable): AMD
 * EPYC runs vgatherdps slower than eight loads and inserts (GoogLeNet's and
 * ResNet-18's steps 5% faster, LeNet-BN's 8%). */
LLVMValueRef cg_gather(Cg *cg, LLVMValueRef base, LLVMValueRef off, LLVMValueRef mask, LLVMValueRef pass) {
    unsigned n = LLVMGetVectorSize(LLVMTypeOf(off));
    if (cg->hw_gather) {
        LLVMValueRef ptrs = LLVMBuildGEP2(cg->b, cg->f32, base, &off, 1, "");
        LLVMTypeRef ovl[2] = {LLVMTypeOf(pass), LLVMTypeOf(ptrs)};
        LLVMValueRef a[4] = {ptrs, LLVMConstInt(cg->i32, 4, 0), mask, pass};
        return cg_call(cg, cg_intrinsic(cg, "llvm.masked.gather", ovl, 2), a, 4);
    }
    LLVMValueRef safe = LLVMBuildSelect(cg->b, mask, off, LLVMConstNull(LLVMTypeOf(off)), "");
    LLVMValueRef v = LLVMGetUndef(LLVMTypeOf(pass));
    for (unsigned l = 0; l < n; l++) {
        LLVMValueRef li = LLVMConstInt(cg->i32, l, 0);
        LLVMValueRef o = LLVMBuildExtractElement(cg->b, safe, li, "");
        LLVMValueRef x = LLVMBuildLoad2(cg->b, cg->f32, LLVMBuildGEP2(cg->b, cg->f32, base, &o, 1, ""), "");
        v = LLVMBuildInsertElement(cg->b, v, x, li, "");
    }
    return LLVMBuildSelect(cg->b, mask, v, pass, "");
}

LLVMValueRef cg_masked_load(Cg *cg, LLVMValueRef p, LLVMValueRef mask, LLVMValueRef pass) {
    LLVMTypeRef vt = LLVMTypeOf(pass), pv = LLVMPointerType(vt, 0);
    LLVMTypeRef ovl[2] = {vt, pv};
    LLVMValueRef a[4] = {LLVMBuildBitCast(cg->b, p, pv, ""), LLVMConstInt(cg->i32, 4, 0), mask, pass};
    return cg_call(cg, cg_intrinsic(cg, "llvm.masked.load", ovl, 2), a, 4);
}

void cg_prefetch(Cg *cg, LLVMValueRef p, int rw, int locality) {
    LLVMTypeRef i8p = LLVMPointerType(LLVMInt8TypeInContext(LLVMGetModuleContext(cg->mod)), 0);
    LLVMValueRef a[4] = {LLVMBuildBitCast(cg->b, p, i8p, ""), LLVMConstInt(cg->i32, (unsigned long long)rw, 0),
                         LLVMConstInt(cg->i32, (unsigned long long)locality, 0), LLVMConstInt(cg->i32, 1, 0)};
    cg_call(cg, cg_intrinsic(cg, "llvm.prefetch", &i8p, 1), a, 4);
}

LLVMValueRef ci64(Cg *cg, int64_t x) { return LLVMConstInt(cg->i64, (unsigned long long)x, 1); }
LLVMValueRef cf32(Cg *cg, float x) { return LLVMConstReal(cg->f32, x); }
LLVMValueRef cf64(Cg *cg, double x) { return LLVMConstReal(cg->f64, x); }
LLVMValueRef ci32(Cg *cg, int64_t x) { return LLVMConstInt(cg->i32, (unsigned long long)x, 1); }
LLVMValueRef add(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildNSWAdd(cg->b, a, b, ""); }
LLVMValueRef sub(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildNSWSub(cg->b, a, b, ""); }
LLVMValueRef mul(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildNSWMul(cg->b, a, b, ""); }
LLVMValueRef sdiv(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildSDiv(cg->b, a, b, ""); }
LLVMValueRef srem(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildSRem(cg->b, a, b, ""); }
LLVMValueRef addc(Cg *cg, LLVMValueRef a, int64_t c) { return c ? add(cg, a, ci64(cg, c)) : a; }
LLVMValueRef mulc(Cg *cg, LLVMValueRef a, int64_t c) { return c == 1 ? a : mul(cg, a, ci64(cg, c)); }
LLVMValueRef icmp(Cg *cg, LLVMIntPredicate p, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildICmp(cg->b, p, a, b, "");
}
LLVMValueRef imin(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildSelect(cg->b, icmp(cg, LLVMIntSLT, a, b), a, b, "");
}
LLVMValueRef and1(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildAnd(cg->b, a, b, ""); }
LLVMValueRef in_range(Cg *cg, LLVMValueRef a, int64_t n) { return icmp(cg, LLVMIntULT, a, ci64(cg, n)); }
LLVMValueRef f_add(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFAdd(cg->b, a, b, ""); }
LLVMValueRef f_sub(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFSub(cg->b, a, b, ""); }
LLVMValueRef f_mul(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFMul(cg->b, a, b, ""); }
LLVMValueRef f_div(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFDiv(cg->b, a, b, ""); }
LLVMValueRef fcmp(Cg *cg, LLVMRealPredicate p, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildFCmp(cg->b, p, a, b, "");
}
LLVMValueRef sel(Cg *cg, LLVMValueRef c, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildSelect(cg->b, c, a, b, "");
}

LLVMValueRef cg_relu(Cg *cg, LLVMValueRef x) {
    LLVMValueRef zero = LLVMConstNull(LLVMTypeOf(x));
    return sel(cg, fcmp(cg, LLVMRealOLT, x, zero), zero, x);
}

LLVMValueRef cg_relu_if(Cg *cg, LLVMValueRef on, LLVMValueRef x) { return sel(cg, on, cg_relu(cg, x), x); }

LLVMValueRef gep(Cg *cg, LLVMValueRef fptr, LLVMValueRef idx) {
    return LLVMBuildInBoundsGEP2(cg->b, cg->f32, fptr, &idx, 1, "");
}
LLVMValueRef ld(Cg *cg, LLVMValueRef fptr, LLVMValueRef idx) {
    return LLVMBuildLoad2(cg->b, cg->f32, gep(cg, fptr, idx), "");
}
void st(Cg *cg, LLVMValueRef val, LLVMValueRef fptr, LLVMValueRef idx) {
    LLVMBuildStore(cg->b, val, gep(cg, fptr, idx));
}
LLVMValueRef vld(Cg *cg, LLVMValueRef fptr, LLVMValueRef idx) {
    LLVMValueRef p = LLVMBuildBitCast(cg->b, gep(cg, fptr, idx), LLVMPointerType(cg->vf, 0), "");
    LLVMValueRef l = LLVMBuildLoad2(cg->b, cg->vf, p, "");
    LLVMSetAlignment(l, 4);
    return l;
}
void vst(Cg *cg, LLVMValueRef val, LLVMValueRef fptr, LLVMValueRef idx) {
    LLVMValueRef p = LLVMBuildBitCast(cg->b, gep(cg, fptr, idx), LLVMPointerType(cg->vf, 0), "");
    LLVMSetAlignment(LLVMBuildStore(cg->b, val, p), 4);
}
LLVMValueRef splat(Cg *cg, LLVMValueRef f) {
    LLVMValueRef u = LLVMGetUndef(cg->vf);
    u = LLVMBuildInsertElement(cg->b, u, f, LLVMConstInt(cg->i32, 0, 0), "");
    LLVMValueRef zero = LLVMConstNull(LLVMVectorType(cg->i32, (unsigned)cg->vw));
    return LLVMBuildShuffleVector(cg->b, u, LLVMGetUndef(cg->vf), zero, "");
}
LLVMValueRef hsum(Cg *cg, LLVMValueRef vec) {
    LLVMValueRef s = LLVMBuildExtractElement(cg->b, vec, LLVMConstInt(cg->i32, 0, 0), "");
    for (int i = 1; i < cg->vw; i++)
        s = LLVMBuildFAdd(cg->b, s, LLVMBuildExtractElement(cg->b, vec, LLVMConstInt(cg->i32, (unsigned)i, 0), ""), "");
    return s;
}

LLVMValueRef gep64(Cg *cg, LLVMValueRef p, int64_t i) {
    LLVMValueRef idx = ci64(cg, i);
    return LLVMBuildInBoundsGEP2(cg->b, cg->i64, p, &idx, 1, "");
}

LLVMValueRef tr32(Cg *cg, LLVMValueRef x) { return LLVMBuildTrunc(cg->b, x, cg->i32, ""); }

LLVMValueRef v8ld(Cg *cg, LLVMValueRef p, LLVMValueRef idx) {
    LLVMTypeRef v8 = LLVMVectorType(cg->f32, 8);
    LLVMValueRef l = LLVMBuildLoad2(cg->b, v8, LLVMBuildBitCast(cg->b, gep(cg, p, idx), LLVMPointerType(v8, 0), ""), "");
    LLVMSetAlignment(l, 4);
    return l;
}

void v8st(Cg *cg, LLVMValueRef v, LLVMValueRef p, LLVMValueRef idx) {
    LLVMTypeRef v8 = LLVMVectorType(cg->f32, 8);
    LLVMSetAlignment(LLVMBuildStore(cg->b, v, LLVMBuildBitCast(cg->b, gep(cg, p, idx), LLVMPointerType(v8, 0), "")), 4);
}

LLVMValueRef shuf8(Cg *cg, LLVMValueRef a, LLVMValueRef b, const int *m) {
    LLVMValueRef e[8];
    for (int i = 0; i < 8; i++) e[i] = ci32(cg, m[i]);
    return LLVMBuildShuffleVector(cg->b, a, b, LLVMConstVector(e, 8), "");
}

/* eight lanes of x (any scalar type) */
LLVMValueRef splat8(Cg *cg, LLVMValueRef x) {
    LLVMTypeRef vt = LLVMVectorType(LLVMTypeOf(x), 8);
    LLVMValueRef u = LLVMBuildInsertElement(cg->b, LLVMGetUndef(vt), x, ci32(cg, 0), "");
    return LLVMBuildShuffleVector(cg->b, u, LLVMGetUndef(vt), LLVMConstNull(LLVMVectorType(cg->i32, 8)), "");
}

void cg_memset0(Cg *cg, LLVMValueRef fptr, LLVMValueRef nfloats) {
    LLVMBuildMemSet(cg->b, LLVMBuildBitCast(cg->b, fptr, cg->p8, ""), LLVMConstInt(cg->i8, 0, 0),
                    mulc(cg, nfloats, 4), 4);
}
void cg_memcpy(Cg *cg, LLVMValueRef dst, LLVMValueRef src, LLVMValueRef nfloats) {
    LLVMBuildMemMove(cg->b, LLVMBuildBitCast(cg->b, dst, cg->p8, ""), 4,
                     LLVMBuildBitCast(cg->b, src, cg->p8, ""), 4, mulc(cg, nfloats, 4));
}

LLVMValueRef var(Cg *cg, LLVMTypeRef ty, LLVMValueRef init) {
    LLVMBasicBlockRef cur = LLVMGetInsertBlock(cg->b);
    LLVMBasicBlockRef entry = LLVMGetEntryBasicBlock(cg->fn);
    LLVMValueRef first = LLVMGetFirstInstruction(entry);
    if (first) LLVMPositionBuilderBefore(cg->b, first);
    else LLVMPositionBuilderAtEnd(cg->b, entry);
    LLVMValueRef a = LLVMBuildAlloca(cg->b, ty, "");
    LLVMPositionBuilderAtEnd(cg->b, cur);
    if (init) LLVMBuildStore(cg->b, init, a);
    return a;
}
LLVMValueRef get(Cg *cg, LLVMValueRef v) { return LLVMBuildLoad2(cg->b, LLVMGetAllocatedType(v), v, ""); }
void set(Cg *cg, LLVMValueRef v, LLVMValueRef val) { LLVMBuildStore(cg->b, val, v); }

LLVMValueRef for_begin(Cg *cg, Loop *l, LLVMValueRef start, LLVMValueRef end, int64_t step) {
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(cg->b);
    l->head = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "for");
    LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "body");
    l->exit = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "done");
    l->step = step;
    l->end = end;
    LLVMBuildBr(cg->b, l->head);
    LLVMPositionBuilderAtEnd(cg->b, l->head);
    l->i = LLVMBuildPhi(cg->b, cg->i64, "i");
    LLVMAddIncoming(l->i, &start, &pre, 1);
    LLVMBuildCondBr(cg->b, icmp(cg, LLVMIntSLT, l->i, end), body, l->exit);
    LLVMPositionBuilderAtEnd(cg->b, body);
    return l->i;
}

void for_end(Cg *cg, Loop *l) {
    LLVMValueRef next = addc(cg, l->i, l->step);
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(cg->b);
    LLVMAddIncoming(l->i, &next, &latch, 1);
    LLVMBuildBr(cg->b, l->head);
    LLVMMoveBasicBlockAfter(l->exit, latch);
    LLVMPositionBuilderAtEnd(cg->b, l->exit);
}

void for_end_at(Cg *cg, Loop *l, LLVMValueRef next) {
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(cg->b);
    LLVMAddIncoming(l->i, &next, &latch, 1);
    LLVMBuildBr(cg->b, l->head);
    LLVMMoveBasicBlockAfter(l->exit, latch);
    LLVMPositionBuilderAtEnd(cg->b, l->exit);
}

void if_begin(Cg *cg, If *f, LLVMValueRef cond) {
    LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "then");
    f->els = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "else");
    f->merge = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "endif");
    f->has_else = 0;
    LLVMBuildCondBr(cg->b, cond, then, f->els);
    LLVMPositionBuilderAtEnd(cg->b, then);
}
void if_else(Cg *cg, If *f) {
    LLVMBuildBr(cg->b, f->merge);
    LLVMMoveBasicBlockAfter(f->els, LLVMGetInsertBlock(cg->b));
    LLVMPositionBuilderAtEnd(cg->b, f->els);
    f->has_else = 1;
}
void if_end(Cg *cg, If *f) {
    if (!f->has_else) if_else(cg, f);
    LLVMBuildBr(cg->b, f->merge);
    LLVMMoveBasicBlockAfter(f->merge, LLVMGetInsertBlock(cg->b));
    LLVMPositionBuilderAtEnd(cg->b, f->merge);
}

LLVMValueRef cg_pool(Cg *cg) {
    LLVMValueRef p = LLVMBuildStructGEP2(cg->b, cg->args_t, cg->args, 3, "");
    return LLVMBuildLoad2(cg->b, cg->p8, p, "pool");
}

LLVMValueRef cg_nthreads(Cg *cg) {
    LLVMValueRef pool = cg_pool(cg);
    return LLVMBuildSExt(cg->b, cg_call(cg, cg->rt_pool_threads, &pool, 1), cg->i64, "");
}

/* The frame: vals stored as i8* (pointers bitcast, integers inttoptr). */
static LLVMTypeRef par_frame(Cg *cg, Par *P, LLVMValueRef *vals, int n, LLVMTypeRef *types) {
    P->outer_fn = cg->fn;
    P->outer_arena = cg->arena;
    P->outer_slots = cg->slots;
    P->outer_args = cg->args;
    LLVMTypeRef fty = LLVMArrayType(cg->p8, (unsigned)(n ? n : 1));
    P->frame = var(cg, fty, NULL);
    IR_ASSERT(n <= 24);
    for (int i = 0; i < n; i++) {
        types[i] = LLVMTypeOf(vals[i]);
        LLVMValueRef slot = LLVMBuildStructGEP2(cg->b, fty, P->frame, (unsigned)i, "");
        LLVMValueRef x = LLVMGetTypeKind(types[i]) == LLVMPointerTypeKind
                             ? LLVMBuildBitCast(cg->b, vals[i], cg->p8, "")
                             : LLVMBuildIntToPtr(cg->b, vals[i], cg->p8, "");
        LLVMBuildStore(cg->b, x, slot);
    }
    P->outer_bb = LLVMGetInsertBlock(cg->b);
    return fty;
}

static void par_body_params(Cg *cg, Par *P, LLVMTypeRef fty, LLVMValueRef *vals, int n, LLVMTypeRef *types,
                            LLVMValueRef *begin, LLVMValueRef *end) {
    LLVMValueRef fr = LLVMBuildBitCast(cg->b, LLVMGetParam(P->body, 0), LLVMPointerType(fty, 0), "");
    for (int i = 0; i < n; i++) {
        LLVMValueRef slot = LLVMBuildStructGEP2(cg->b, fty, fr, (unsigned)i, "");
        LLVMValueRef x = LLVMBuildLoad2(cg->b, cg->p8, slot, "");
        vals[i] = LLVMGetTypeKind(types[i]) == LLVMPointerTypeKind
                      ? LLVMBuildBitCast(cg->b, x, types[i], "")
                      : LLVMBuildPtrToInt(cg->b, x, types[i], "");
    }
    *begin = LLVMGetParam(P->body, 1);
    *end = LLVMGetParam(P->body, 2);
    cg->arena = cg->slots = cg->args = NULL;   /* not reachable from the body */
}

void par_begin(Cg *cg, Par *P, LLVMValueRef *vals, int n, LLVMValueRef ntasks,
               LLVMValueRef *begin, LLVMValueRef *end) {
    LLVMTypeRef types[24];
    LLVMTypeRef fty = par_frame(cg, P, vals, n, types);
    P->ntasks = ntasks;
    P->reused = 0;
    char name[96];
    snprintf(name, sizeof name, "%spar%d", cg->prefix ? cg->prefix : "", cg->counter++);
    P->body = cg_fn_new(cg, name, cg->body_t, 1);
    par_body_params(cg, P, fty, vals, n, types, begin, end);
}

int par_begin_shared(Cg *cg, Par *P, const char *key, LLVMValueRef *vals, int n, LLVMValueRef ntasks,
                     LLVMValueRef *begin, LLVMValueRef *end) {
    LLVMTypeRef types[24];
    LLVMTypeRef fty = par_frame(cg, P, vals, n, types);
    P->ntasks = ntasks;
    char name[160];
    snprintf(name, sizeof name, "netc_sh_%s", key);
    LLVMValueRef f = LLVMGetNamedFunction(cg->mod, name);
    if (f) {
        P->body = f;
        P->reused = 1;
        return 0;
    }
    P->reused = 0;
    P->body = cg_fn_new(cg, name, cg->body_t, 1);
    par_body_params(cg, P, fty, vals, n, types, begin, end);
    return 1;
}

void par_end(Cg *cg, Par *P) {
    if (!P->reused) LLVMBuildRetVoid(cg->b);
    cg->fn = P->outer_fn;
    cg->arena = P->outer_arena;
    cg->slots = P->outer_slots;
    cg->args = P->outer_args;
    LLVMPositionBuilderAtEnd(cg->b, P->outer_bb);
    LLVMValueRef a[4] = {cg_pool(cg), P->ntasks, P->body, LLVMBuildBitCast(cg->b, P->frame, cg->p8, "")};
    cg_call(cg, cg->rt_parallel_for, a, 4);
}

/* cg->inner and cg->inner_off for program cg->p, made on first use. */
static void inner_memory(Cg *cg) {
    const Program *p = cg->p;
    if (cg->inner_p == p && cg->inner) return;
    free(cg->inner_off);
    cg->inner_off = ir_xcalloc((size_t)p->g.nvalues + 1, sizeof(int64_t));
    int64_t size = program_inner_offsets(p, cg->inner_off) + 64;
    char name[96];
    snprintf(name, sizeof name, "%sinner", cg->prefix ? cg->prefix : "netc_");
    LLVMTypeRef t = LLVMArrayType(cg->i64, (unsigned)(size / 8));   /* 8-byte units: up to 32 GiB */
    cg->inner = LLVMAddGlobal(cg->mod, t, name);
    LLVMSetInitializer(cg->inner, LLVMConstNull(t));
    LLVMSetLinkage(cg->inner, LLVMInternalLinkage);
    LLVMSetAlignment(cg->inner, 64);
    cg->inner_p = p;
}

/* The module global behind cg_stage, sized for the largest strided view the
 * program stages: a conv's or pooling's y (or the relu's of its epilogue),
 * or their gradients' dy (the JIT
 * zero-fills globals, so it is resident: no larger than that). */
static void stage_memory(Cg *cg) {
    const Program *p = cg->p;
    if (cg->stage_p == p && cg->stage) return;
    int64_t size = 64;
    for (int i = 0; i < p->g.nnodes; i++) {
        const IrNode *n = ir_node(&p->g, i);
        int v = -1;
        switch (n->op) {
        case IR_OP_CONV2D: case IR_OP_MAXPOOL: case IR_OP_AVGPOOL:
            v = n->out[0];
            break;
        case IR_OP_RELU:   /* when a conv's relu epilogue writes it */
            if (ir_node(&p->g, ir_value(&p->g, n->in[0])->node)->op == IR_OP_CONV2D) v = n->out[0];
            break;
        case IR_OP_CONV2D_BWD_DATA: case IR_OP_CONV2D_BWD_WEIGHT: case IR_OP_MAXPOOL_BWD: case IR_OP_AVGPOOL_BWD:
            v = n->in[0];
            break;
        default: break;
        }
        if (v >= 0 && cg_strided(cg, v) && p->buf[v].bytes + 64 > size) size = p->buf[v].bytes + 64;
    }
    cg->stage_p = p;
    if (cg->stage && cg->stage_bytes >= size) return;
    char name[96];
    snprintf(name, sizeof name, "netc_stage%d", cg->counter++);
    LLVMTypeRef t = LLVMArrayType(cg->i64, (unsigned)((size + 7) / 8));
    LLVMValueRef g = LLVMAddGlobal(cg->mod, t, name);
    LLVMSetInitializer(g, LLVMConstNull(t));
    LLVMSetLinkage(g, LLVMInternalLinkage);
    LLVMSetAlignment(g, 64);
    if (cg->stage) {   /* an earlier program's, too small: its uses move to this one */
        LLVMReplaceAllUsesWith(cg->stage, LLVMConstBitCast(g, LLVMTypeOf(cg->stage)));
        LLVMDeleteGlobal(cg->stage);
    }
    cg->stage = g;
    cg->stage_bytes = size;
}

int cg_strided(const Cg *cg, int v) {
    ValueLoc l;
    program_loc(cg->p, v, &l);
    return l.strided;
}

LLVMValueRef cg_vptr_img(Cg *cg, int v, int64_t *istride) {
    const Program *p = cg->p;
    ValueLoc l;
    program_loc(p, v, &l);
    int r = l.root;
    const BufPlan *bp = &p->buf[r];
    LLVMValueRef raw;
    if (bp->kind == BUF_ARENA) {
        LLVMValueRef off = ci64(cg, bp->offset);
        raw = LLVMBuildInBoundsGEP2(cg->b, cg->i8, cg->arena, &off, 1, "");
    } else if (bp->kind == BUF_PERSIST) {
        LLVMValueRef idx = ci64(cg, bp->slot);
        LLVMValueRef sp = LLVMBuildInBoundsGEP2(cg->b, cg->p8, cg->slots, &idx, 1, "");
        raw = LLVMBuildLoad2(cg->b, cg->p8, sp, "");
    } else if (bp->kind == BUF_INNER) {
        inner_memory(cg);
        LLVMValueRef off = ci64(cg, cg->inner_off[r]);
        raw = LLVMBuildInBoundsGEP2(cg->b, cg->i8, LLVMBuildBitCast(cg->b, cg->inner, cg->p8, ""), &off, 1, "");
    } else {
        IR_ASSERT(!"value has no buffer");
    }
    if (istride) *istride = l.istride;
    LLVMValueRef f = LLVMBuildBitCast(cg->b, raw, cg->pf, "");
    return l.off ? gep(cg, f, ci64(cg, l.off)) : f;
}

LLVMValueRef cg_vptr(Cg *cg, int v) {
    if (cg_strided(cg, v)) {
        IR_ASSERT(v == cg->stage_v && "a strided view where the kernel takes whole buffers");
        return LLVMBuildBitCast(cg->b, cg->stage, cg->pf, "");
    }
    return cg_vptr_img(cg, v, NULL);
}

int cg_stage(Cg *cg, int v, int copy_in) {
    if (v < 0 || !cg_strided(cg, v)) return 0;
    IR_ASSERT(cg->stage_v < 0);
    stage_memory(cg);
    int64_t is = 0, per = cg_numel(cg, v) / cg->p->batch;
    LLVMValueRef at = cg_vptr_img(cg, v, &is);
    cg->stage_v = v;
    if (copy_in) cg_rowcopy(cg, cg_vptr(cg, v), per, at, is, per, cg->p->batch);
    return 1;
}

void cg_unstage(Cg *cg, int copy_out) {
    int v = cg->stage_v;
    if (v < 0) return;
    int64_t is = 0, per = cg_numel(cg, v) / cg->p->batch;
    if (copy_out) {
        LLVMValueRef at = cg_vptr_img(cg, v, &is);
        cg_rowcopy(cg, at, is, cg_vptr(cg, v), per, per, cg->p->batch);
    }
    cg->stage_v = -1;
}

int64_t cg_numel(const Cg *cg, int v) { return ir_numel(ir_type(&cg->p->g, v), cg->p->batch); }
