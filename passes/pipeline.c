/* pipeline.c - the compiler, as the list of passes DESIGN.md draws:
 *
 *   forward graph -> shapes -> autodiff (train) -> schedule -> fuse -> plan memory
 *
 * with the verifier between passes (debug builds, tests, or o->verify) and
 * --dump-after=PASS printing the graph after the named pass. */
#include "program.h"

#include <stdlib.h>
#include <string.h>

static int verify_all(const PipelineOptions *o) {
#ifdef NETC_VERIFY_ALL
    (void)o;
    return 1;
#else
    return o->verify || getenv("NETC_VERIFY") != NULL;
#endif
}

/* Runs after each pass: verifier, then the optional dump. */
static int after(const char *pass, Program *p, const PipelineOptions *o, Diag *d) {
    if (verify_all(o) && ir_verify(&p->g, d->out)) {
        diag_error_noloc(d, "internal error: the IR is invalid after pass `%s`", pass);
        return -1;
    }
    if (o->dump_after && strcmp(o->dump_after, pass) == 0) {
        FILE *f = o->dump_out ? o->dump_out : stdout;
        fprintf(f, "# after %s\n", pass);
        if (!strcmp(pass, "fuse")) program_dump_kernels(p, f);
        else ir_dump(&p->g, f);
    }
    return 0;
}

/* schedule: one kernel per node that computes something, in graph order
 * (the fusion pass will group nodes here). */
static int pass_schedule(Program *p) {
    IrGraph *g = &p->g;
    p->kernels = ir_xcalloc((size_t)g->nnodes, sizeof(Kernel));
    p->nkernels = 0;
    for (int i = 0; i < g->nnodes; i++) {
        if (ir_info(g->nodes[i].op)->flags & IR_F_LEAF) continue;
        Kernel *k = &p->kernels[p->nkernels++];
        k->nnodes = 1;
        k->nodes = ir_xmalloc(sizeof(int));
        k->nodes[0] = i;
    }
    return 0;
}

/* Removes the SGD nodes (no_update).  They have no outputs, so only the
 * producers recorded in the values of later nodes need renumbering. */
static void drop_updates(IrGraph *g) {
    int k = 0;
    for (int i = 0; i < g->nnodes; i++) {
        if (g->nodes[i].op == IR_OP_SGD) {
            free(g->nodes[i].name);
            continue;
        }
        g->nodes[k] = g->nodes[i];
        for (int j = 0; j < g->nodes[k].nout; j++) g->values[g->nodes[k].out[j]].node = k;
        k++;
    }
    g->nnodes = k;
}

/* Program.grad_final: the kernel of each gradient slot's producer, the
 * last writer of its buffer (an accumulation in place is the producer of
 * the sum; the contributions written before it are views into it). */
static void mark_grad_final(Program *p) {
    int *kernel_of = ir_xmalloc(sizeof(int) * (size_t)(p->g.nnodes + 1));
    for (int i = 0; i < p->g.nnodes; i++) kernel_of[i] = -1;
    for (int k = 0; k < p->nkernels; k++)
        for (int j = 0; j < p->kernels[k].nnodes; j++) kernel_of[p->kernels[k].nodes[j]] = k;
    p->grad_final = ir_xcalloc((size_t)(p->nkernels + 1), sizeof(int));
    p->grad_kernel = ir_xmalloc(sizeof(int) * (size_t)(p->nslots + 1));
    for (int i = 0; i < p->nslots; i++) {
        p->grad_kernel[i] = -1;
        if (p->slots[i].kind != SLOT_GRAD) continue;
        int k = kernel_of[ir_value(&p->g, p->slots[i].value)->node];
        p->grad_kernel[i] = k >= 0 ? k : p->nkernels - 1; /* (a producer without a kernel of its own: a view) */
        p->grad_final[p->grad_kernel[i]]++;
    }
    free(kernel_of);
}

int pass_pipeline(const IrGraph *fwd, const PipelineOptions *o, Program *p, Diag *d) {
    memset(p, 0, sizeof *p);
    ir_clone(&p->g, fwd);
    p->batch = o->batch > 0 ? o->batch : fwd->train.batch;
    p->elem_bytes = o->elem_bytes ? o->elem_bytes : 4;
    p->g.batch = p->batch;
    if (p->g.mode != o->mode) {
        diag_error_noloc(d, "internal error: graph built in %s mode, program asked in %s mode",
                         p->g.mode == IR_TRAIN ? "train" : "eval", o->mode == IR_TRAIN ? "train" : "eval");
        return -1;
    }
    if (pass_infer_shapes(&p->g, d) || after("shapes", p, o, d)) return -1;
    if (o->mode == IR_TRAIN) {
        if (pass_autodiff(&p->g, &p->grad_of)) return -1;
        if (o->no_update) drop_updates(&p->g);
        if (after("autodiff", p, o, d)) return -1;
        if (pass_recompute(&p->g, o->plan) || after("recompute", p, o, d)) return -1;
    }
    if (pass_schedule(p) || after("schedule", p, o, d)) return -1;
    FuseOptions fo = o->fuse ? *o->fuse : (FuseOptions){0};
    if (o->mode == IR_TRAIN && o->sync_bn) {
        /* the patterns that compute a training batch norm's statistics */
        p->sync_bn = 1;
        fo.off |= 1u << FUSE_CONV_BN_RELU | 1u << FUSE_CONV_BN_ADD_RELU | 1u << FUSE_BN_RELU_CONV |
                  1u << FUSE_BN_ACT | 1u << FUSE_RELU_BN_BWD;
    }
    if (pass_fuse(p, &fo) || after("fuse", p, o, d)) return -1;
    if (pass_plan_memory(p, o->plan, d)) return -1;
    if (verify_all(o) && program_check_plan(p, d->out)) {
        diag_error_noloc(d, "internal error: the memory plan is invalid");
        return -1;
    }
    if (o->mode == IR_TRAIN && o->no_update) mark_grad_final(p);
    return 0;
}

static int arena_of(const IrGraph *fwd, const PipelineOptions *o, const PlanOptions *plan, int64_t *bytes, Diag *d) {
    PipelineOptions q = *o;
    q.plan = plan;
    q.dump_after = NULL;
    Program p;
    int rc = pass_pipeline(fwd, &q, &p, d);
    if (!rc) *bytes = p.arena_bytes;
    program_free(&p);
    return rc;
}

int pass_plan_savings(const IrGraph *fwd, const PipelineOptions *o, const Program *p, int64_t *inplace,
                      int64_t *recompute, Diag *d) {
    PlanOptions now = o->plan ? *o->plan : (PlanOptions){0, 0}, other;
    int64_t base = p->arena_bytes, alt;
    *inplace = *recompute = 0;
    if (!now.concat_copy) {
        other = now;
        other.concat_copy = 1;
        if (arena_of(fwd, o, &other, &alt, d)) return -1;
        *inplace = alt - base;
    }
    if (now.recompute_bn_relu && o->mode == IR_TRAIN) {
        other = now;
        other.recompute_bn_relu = 0;
        if (arena_of(fwd, o, &other, &alt, d)) return -1;
        *recompute = alt - base;
    }
    return 0;
}

void program_free(Program *p) {
    for (int k = 0; k < p->nkernels; k++) free(p->kernels[k].nodes);
    for (int s = 0; s < p->nslots; s++) free(p->slots[s].name);
    free(p->kernels);
    free(p->slots);
    free(p->buf);
    free(p->grad_of);
    free(p->view_why);
    free(p->view_why_node);
    free(p->grad_final);
    free(p->grad_kernel);
    ir_free(&p->g);
    memset(p, 0, sizeof *p);
}
