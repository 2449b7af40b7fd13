/* program.h - what the passes hand to a backend.
 *
 * A program is a training step (or an eval step) as an ordered list of
 * kernels.  A kernel is one group of IR nodes that a backend runs as a unit
 * (today: one node each; the fusion pass will group several).  Every value
 * has a buffer: either an offset in the one activation arena, a persistent
 * slot bound by the runtime (weights, gradients, running statistics, the
 * input batch), or an alias of another value's buffer (views: flatten,
 * reshape). */
#ifndef NETC_PROGRAM_H
#define NETC_PROGRAM_H

#include "passes.h"

/* BUF_INNER: a value its fused kernel keeps in registers (fuse_keeps_inner)
 * and nothing else reads: no memory in the plan.  A backend that runs the
 * kernel's nodes one after the other gives it memory of its own. */
typedef enum { BUF_NONE, BUF_ARENA, BUF_PERSIST, BUF_ALIAS, BUF_INNER } BufKind;

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
    int alias;       /* BUF_ALIAS: value id whose buffer this shares */
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
} Program;

typedef struct {
    IrMode mode;
    int64_t batch;
    int elem_bytes;
    int verify;            /* run ir_verify after every pass */
    const char *dump_after;/* pass name, or NULL */
    FILE *dump_out;
    const FuseOptions *fuse;  /* NULL: every pattern on */
} PipelineOptions;

/* passes/pipeline.c: forward graph (shapes inferred) -> program.  Clones fwd. */
int pass_pipeline(const IrGraph *fwd, const PipelineOptions *o, Program *p, Diag *d);
void program_free(Program *p);

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
int pass_plan_memory(Program *p, Diag *d);
/* Checks that no two buffers live at the same kernel overlap in the arena.
 * Returns 0 or prints the offending pair to f and returns -1. */
int program_check_plan(const Program *p, FILE *f);
void program_dump_memory(const Program *p, FILE *f);

#endif
