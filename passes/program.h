/* program.h - what the passes hand to a backend.
 *
 * A program is a training step (or an eval step) as an ordered list of
 * kernels.  A kernel is one group of IR nodes that a backend runs as a unit
 * (today: one node each; the fusion pass will group several).  Every value
 * has a buffer: either an offset in the one activation arena, a persistent
 * slot bound by the runtime (weights, gradients, running statistics, the
 * input batch), an alias of another value's buffer (flatten, reshape), or
 * a view: a channel range of another value's buffer (in-place concat). */
#ifndef NETC_PROGRAM_H
#define NETC_PROGRAM_H

#include "passes.h"

/* BUF_INNER: a value its fused kernel keeps in registers (fuse_keeps_inner)
 * and nothing else reads: no memory in the plan.  A backend that runs the
 * kernel's nodes one after the other gives it memory of its own. */
/* BUF_VIEW: a part of another value's buffer, `alias` (the base): element
 * voff of each of its images onward, each image's elements in a row, images
 * as far apart as the root's images are.  Three things make views: a
 * concat's input placed in its slot of the concat (the producer writes
 * there, and the concat copies nothing), a slice of a gradient (its
 * channels of the concat's gradient), and an accumulation done in place
 * (the sum written over its first input). */
typedef enum { BUF_NONE, BUF_ARENA, BUF_PERSIST, BUF_ALIAS, BUF_INNER, BUF_VIEW } BufKind;

typedef enum {
    SLOT_PARAM,      /* trainable parameter, named like "b1.conv0.weight" */
    SLOT_STATE,      /* running mean / var */
    SLOT_GRAD,       /* gradient of a parameter, named "<param>.grad" */
    SLOT_INPUT,      /* images [B, C, H, W] */
    SLOT_LABELS,     /* int32 [B] */
    SLOT_LOGITS,     /* [B, K], read back by the runtime for accuracy */
    SLOT_LOSS,       /* [1] */
} SlotKind;

typedef struct {
    int kind;        /* BufKind */
    int64_t offset;  /* BUF_ARENA: byte offset in the arena */
    int64_t bytes;
    int slot;        /* BUF_PERSIST: index into Program.slots */
    int alias;       /* BUF_ALIAS: value id whose buffer this shares; BUF_VIEW: the base */
    int64_t voff;    /* BUF_VIEW: first element in the base's image */
    int first, last; /* lifetime in kernel indices (inclusive) */
} BufPlan;

typedef struct {
    char *name;
    int kind;        /* SlotKind */
    int value;       /* value id */
    int64_t bytes;
} Slot;

/* The kinds of fused kernel (passes/fuse.def); FUSE_NONE: one node. */
typedef enum {
    FUSE_NONE,
#define FUSE(e, name, what) FUSE_##e,
#include "fuse.def"
#undef FUSE
    FUSE_COUNT
} FusePattern;

typedef struct {
    int nnodes;
    int *nodes;      /* node ids in execution order */
    int pattern;     /* FusePattern */
} Kernel;

/* Which patterns the fusion pass may form: bit (1 << pattern) of `off` set
 * turns that pattern off.  A NULL FuseOptions turns every pattern on. */
typedef struct {
    unsigned off;
} FuseOptions;

typedef struct {
    IrGraph g;       /* owned: the training (or eval) graph, shapes fixed */
    int64_t batch;
    int elem_bytes;  /* 4 (float) or 8 (double, ref64 for gradient checks) */
    Kernel *kernels;
    int nkernels;
    BufPlan *buf;    /* one per value */
    Slot *slots;
    int nslots;
    int64_t arena_bytes;   /* planned */
    int64_t naive_bytes;   /* every arena value in its own buffer */
    int64_t persist_bytes; /* all slots together */
    int *grad_of;          /* value -> gradient value, or NULL (eval) */
    int64_t view_bytes;    /* the values that are views (BUF_VIEW), together */
    /* per value: why the plan did not place this concat input in its slot
     * (NULL: placed, or not a concat input), and the node that kept it out */
    const char **view_why;
    int *view_why_node;
    /* training batch norms take their statistics over every rank of a
     * data-parallel job: backends run them (and their gradients) through
     * base/syncbn.h, and the fusion pass leaves them alone */
    int sync_bn;
    /* no_update: per kernel, how many parameter gradients it wrote last
     * (the backends call rt_grads_ready(k) after kernel k where non-zero,
     * base/gradready.h), and per slot the kernel after which its gradient
     * is final (-1: not a gradient); NULL otherwise */
    int *grad_final, *grad_kernel;
} Program;

/* How the memory plan places values.  A NULL PlanOptions: the defaults. */
typedef struct {
    int concat_copy;       /* 1: every concat, slice and accumulation copies (no views) */
    int recompute_bn_relu; /* 1: the backward pass recomputes batch norm + relu outputs
                              (passes/recompute.c) */
} PlanOptions;

typedef struct {
    IrMode mode;
    int64_t batch;
    int elem_bytes;
    int verify;            /* run ir_verify after every pass */
    const char *dump_after;/* pass name, or NULL */
    FILE *dump_out;
    const FuseOptions *fuse;  /* NULL: every pattern on */
    const PlanOptions *plan;  /* NULL: the defaults */
    int no_update;         /* train: no SGD nodes; the step ends with the gradients in their
                              slots (data parallel: the runtime sums them over the ranks and
                              updates the weights itself) */
    int sync_bn;           /* train: batch-norm statistics over every rank (Program.sync_bn) */
} PipelineOptions;

/* passes/pipeline.c: forward graph (shapes inferred) -> program.  Clones fwd. */
int pass_pipeline(const IrGraph *fwd, const PipelineOptions *o, Program *p, Diag *d);
void program_free(Program *p);
/* What the plan's options save: the arena of p (fwd through o's pipeline)
 * against the same with --concat copy (*inplace) and without --recompute
 * (*recompute); 0 for an option that is off.  0 or -1 (reported through d). */
int pass_plan_savings(const IrGraph *fwd, const PipelineOptions *o, const Program *p, int64_t *inplace,
                      int64_t *recompute, Diag *d);

/* passes/recompute.c: with o->recompute_bn_relu, gives the backward
 * readers of a training batch norm + relu output a copy recomputed from
 * the batch norm's input and saved statistics. */
int pass_recompute(IrGraph *g, const PlanOptions *o);

/* passes/fuse.c: regroups p's kernels (one node each, in schedule order)
 * into fused kernels, each recording its pattern.  A group's nodes are a
 * chain, each consuming the one before; nodes that lie between them in the
 * schedule and do not depend on them run before the group.  Backends
 * without a fused body for a pattern run its nodes one after the other, so
 * results do not depend on fusion. */
int pass_fuse(Program *p, const FuseOptions *o);
/* "conv_bn_relu", ...; "none" for FUSE_NONE. */
const char *fuse_name(int pattern);
/* Parses --fuse: "all", "none" or a comma-separated list of pattern names
 * (those on; the rest off).  0, or -1 with the unknown name in bad[n]. */
int fuse_parse(const char *spec, FuseOptions *o, char *bad, size_t n);
/* One line per kernel: index, pattern, its nodes (op and layer name). */
void program_dump_kernels(const Program *p, FILE *f);
/* Whether the fused body of kernel k's pattern keeps the first output of
 * its node at position pos in registers when no other kernel reads it (a
 * batch norm's output before its relu, a conv's output before the relu of
 * its epilogue, an elementwise chain's inner results): such a value gets
 * no memory (BUF_INNER).  The contract between the pass and the backends'
 * fused bodies. */
int fuse_keeps_inner(const Program *p, const Kernel *k, int pos);
/* Memory for BUF_INNER values, for a backend that runs their kernels node
 * by node: off[v] (nvalues entries) is value v's offset in one block, each
 * kernel's inner values one after another from 0 (one kernel runs at a
 * time, 64-byte aligned); returns the block's size (0: no inner values). */
int64_t program_inner_offsets(const Program *p, int64_t *off);

/* passes/memplan.c.  Buffers of one kind (arena, persistent) may take at
 * most PROGRAM_MAX_BYTES together, the 48-bit address space of x86-64 and
 * arm64; a program past that is a user error at the value that crosses it
 * (shape inference's limits keep each buffer far below). */
#define PROGRAM_MAX_BYTES ((int64_t)1 << 48)
int pass_plan_memory(Program *p, const PlanOptions *o, Diag *d);
/* Where value v's elements are: in root value `root`'s buffer (BUF_ARENA,
 * BUF_PERSIST or BUF_INNER), image n's from element off + n * istride on,
 * per of them in a row.  strided: not the whole root (a view of part of
 * it), so kernels must step images by istride. */
typedef struct {
    int root;
    int64_t off, istride, per;
    int strided;
} ValueLoc;
void program_loc(const Program *p, int v, ValueLoc *l);
/* Whether the plan may make operand `slot` of node `node` a strided view
 * (slot j >= 0: input j; -1 - j: output j): the kernels that read or
 * write it step images by the view's stride.  The contract between the
 * plan and the backends. */
int plan_view_ok(const Program *p, const int *kernel_of, int node, int slot);
/* Checks that no two buffers live at the same kernel overlap in the arena,
 * and, within each buffer, that every kernel reads what the values it
 * reads were given: no write into a buffer's part (a view) lands where a
 * value still to be read lies.  Returns 0 or prints the offending pair to
 * f and returns -1. */
int program_check_plan(const Program *p, FILE *f);
void program_dump_memory(const Program *p, FILE *f);
/* passes/views.c: makes views (BUF_VIEW) of concat inputs, gradient slices
 * and in-place accumulations where plan_view_ok allows, and drops the
 * kernels left with nothing to do (kernel_of is updated). */
void plan_views(Program *p, int *kernel_of, const PlanOptions *o);
/* The replay half of program_check_plan. */
int program_check_views(const Program *p, FILE *f);

#endif
