/* ir.h - the graph IR.
 *
 * A graph is two tables: nodes (ops) and values (tensors).  Nodes refer to
 * values and values to nodes by index, never by pointer, so a graph can be
 * copied with memcpy and printed without chasing anything.  Builders
 * (ir_node_new and friends) only record; shape inference, verification,
 * autodiff and planning are passes (passes/). */
#ifndef NETC_IR_H
#define NETC_IR_H

#include <stdint.h>
#include <stdio.h>

typedef enum {
#define OP(e, name, nin, nout, attr, flags) IR_OP_##e,
#include "ops.def"
#undef OP
    IR_OP_COUNT
} IrOp;

enum {
    IR_F_FWD = 1 << 0,
    IR_F_BWD = 1 << 1,
    IR_F_EFFECT = 1 << 2,
    IR_F_VIEW = 1 << 3,
    IR_F_LEAF = 1 << 4,
};

typedef enum { IR_ATTR_none, IR_ATTR_input, IR_ATTR_param, IR_ATTR_conv, IR_ATTR_linear,
               IR_ATTR_pool, IR_ATTR_dropout, IR_ATTR_bn, IR_ATTR_slice } IrAttrKind;

typedef struct {
    const char *name;
    int nin, nout;          /* -1: variadic */
    IrAttrKind attr;
    unsigned flags;
} IrOpInfo;

extern const IrOpInfo ir_op_info[IR_OP_COUNT];

typedef enum { IR_F32, IR_I32 } IrDType;
typedef enum { IR_TRAIN, IR_EVAL } IrMode;

/* A tensor type.  When batched, d[0] is the batch dimension: symbolic ("N")
 * in the forward graph, fixed when a program is planned.  rank 0 means not
 * yet inferred. */
enum { IR_MAX_RANK = 4, IR_MAX_IN = 16, IR_MAX_OUT = 4 };
typedef struct {
    uint8_t dtype, rank, batched;
    int64_t d[IR_MAX_RANK];
} IrType;

typedef struct { int line, col; } IrLoc;   /* 1-based; line 0 = no location */

/* Parameter roles decide initialisation and checkpoint naming. */
typedef enum { IR_PARAM_WEIGHT, IR_PARAM_BIAS, IR_PARAM_GAMMA, IR_PARAM_BETA,
               IR_PARAM_RUNNING_MEAN, IR_PARAM_RUNNING_VAR } IrParamRole;

typedef struct { int c, h, w; } IrInputAttr;                 /* per-image shape */
typedef struct { int role; int64_t fan_in, fan_out; } IrParamAttr; /* fans set by shape inference */
typedef struct { int out_c, in_c, kh, kw, sh, sw, ph, pw, bias; } IrConvAttr; /* in_c 0: inferred */
typedef struct { int out, in, bias; } IrLinearAttr;          /* in 0: inferred */
typedef struct { int kh, kw, sh, sw, ph, pw; } IrPoolAttr;
typedef struct { float p; int mode; int index; } IrDropoutAttr; /* index: n-th dropout, seeds its stream */
/* mode: IR_TRAIN, IR_EVAL, or IR_BN_APPLY: normalise x with given statistics
 * (inputs x, gamma, beta, saved mean, saved invstd; output y), as the
 * training batch norm did: the backward pass recomputing its output. */
enum { IR_BN_APPLY = 2 };
typedef struct { int mode; float momentum, eps; } IrBnAttr;
typedef struct { int c0, c; } IrSliceAttr;

typedef union {
    IrInputAttr input;
    IrParamAttr param;
    IrConvAttr conv;
    IrLinearAttr linear;
    IrPoolAttr pool;
    IrDropoutAttr dropout;
    IrBnAttr bn;
    IrSliceAttr slice;
} IrAttr;

typedef struct {
    IrOp op;
    int nin, nout;
    int in[IR_MAX_IN];       /* value ids */
    int out[IR_MAX_OUT];     /* value ids */
    IrAttr attr;
    char *name;              /* hierarchical layer name, e.g. "b3.residual0.conv1" */
    IrLoc loc;               /* where the source wrote it */
} IrNode;

typedef struct {
    int node, index;         /* producer and which of its outputs */
    IrType type;
    char *name;              /* params: "b1.conv0.weight"; others may be NULL */
} IrValue;

/* Training settings as the source gives them; the CLI may override. */
typedef struct {
    double lr;
    int batch, epochs, resize;
} IrTrain;

typedef struct IrGraph {
    IrNode *nodes;
    int nnodes, node_cap;
    IrValue *values;
    int nvalues, value_cap;
    IrMode mode;
    int64_t batch;           /* 0: symbolic */
    IrTrain train;
    int input, labels;       /* value ids, -1 when absent */
    int logits, loss;        /* value ids, -1 when absent */
    const char *file;        /* for diagnostics; not owned */
    const char *src;         /* the source text; not owned */
} IrGraph;

void ir_init(IrGraph *g);
void ir_free(IrGraph *g);
void ir_clone(IrGraph *dst, const IrGraph *src);

/* Builders.  ir_node_new appends a node with nin inputs and nout fresh output
 * values (types unset) and returns its id.  name is copied. */
int ir_node_new(IrGraph *g, IrOp op, const int *in, int nin, int nout, const char *name, IrLoc loc);
int ir_out(const IrGraph *g, int node, int k);           /* value id of k-th output */
int ir_param_new(IrGraph *g, const char *layer, const char *suffix, IrParamRole role, IrLoc loc);
void ir_set_name(IrGraph *g, int value, const char *name);

static inline const IrOpInfo *ir_info(IrOp op) { return &ir_op_info[op]; }
static inline IrNode *ir_node(const IrGraph *g, int id) { return &g->nodes[id]; }
static inline IrValue *ir_value(const IrGraph *g, int id) { return &g->values[id]; }
static inline IrType *ir_type(const IrGraph *g, int id) { return &g->values[id].type; }
/* Whether node n reads value v. */
static inline int ir_reads(const IrNode *n, int v) {
    for (int i = 0; i < n->nin; i++)
        if (n->in[i] == v) return 1;
    return 0;
}

/* Size limits.  Shape inference (passes/shape.c) rejects, at the layer's
 * source location, a graph that passes any of them, so that every size, byte
 * and FLOP count computed later fits an int64_t with room to spare:
 *   IR_MAX_NUMEL  elements of one tensor, the batch included: 2^38, 1 TiB of
 *                 floats (2 TiB of doubles)
 *   IR_MAX_TOTAL  elements of all forward tensors and parameters together: 2^42
 *   IR_MAX_FLOPS  FLOPs of one forward pass over a batch (conv and linear): 2^60 */
#define IR_MAX_NUMEL ((int64_t)1 << 38)
#define IR_MAX_TOTAL ((int64_t)1 << 42)
#define IR_MAX_FLOPS ((int64_t)1 << 60)

/* Types. */
IrType ir_type_make(IrDType dt, int batched, int rank, const int64_t *d);
/* Elements of t, batch replacing d[0] when batched.  ir_numel aborts if the
 * count overflows (shape inference has ruled that out); ir_numel_checked
 * returns -1 instead, else 0 with the count in *n. */
int64_t ir_numel(const IrType *t, int64_t batch);
int ir_numel_checked(const IrType *t, int64_t batch, int64_t *n);
int ir_type_eq(const IrType *a, const IrType *b);
int ir_type_str(const IrType *t, char *buf, int n);  /* "N×1×28×28" style, ASCII "Nx1x28x28" */

/* Printing (ir/dump.c).  Both are stable: same graph, same bytes. */
void ir_dump(const IrGraph *g, FILE *f);
void ir_dump_dot(const IrGraph *g, FILE *f, const int *group_of_node);

/* Verifier (ir/verify.c): structural invariants (ids in range, arity, every
 * input defined before use, types set and consistent with the op).  Returns 0
 * when valid, else prints the first problem to f and returns -1. */
int ir_verify(const IrGraph *g, FILE *f);

/* Invariant failures abort with file:line. */
#define IR_ASSERT(c) do { if (!(c)) ir_die(__FILE__, __LINE__, #c); } while (0)
_Noreturn void ir_die(const char *file, int line, const char *what);
void *ir_xmalloc(size_t n);
void *ir_xcalloc(size_t n, size_t m);
void *ir_xrealloc(void *p, size_t n);
char *ir_strdup(const char *s);

#endif
