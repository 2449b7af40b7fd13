/* gen.h - the CUDA C generator's internals, shared by cuda_src.c (the
 * program, elementwise ops, pooling, staging), cuda_bn.c (batch norm) and
 * cuda_conv.c (convolutions and linear layers). */
#ifndef NETC_CUDA_GEN_H
#define NETC_CUDA_GEN_H

#include <stdio.h>
#include "cuda_src.h"

enum { BLOCK = 256, PARTS = 64 };

typedef struct {
    const Program *p;
    FILE *f;
    CudaSource *s;
    int64_t *inner;      /* BUF_INNER offsets in I */
    int64_t inner_bytes; /* scratch starts here */
    int64_t scratch;     /* scratch bytes this kernel needs */
    int kernel, nl;      /* program kernel, launches so far in it */
    int nst, stv[IR_MAX_IN + IR_MAX_OUT]; /* the node's staged values */
    int64_t sto[IR_MAX_IN + IR_MAX_OUT];  /* their stand-ins' offsets in scratch */
    int64_t sbase;       /* the node's own scratch starts here */
    const IrNode *chain[8]; /* elementwise nodes the batch norm being made applies as it stores */
    int nchain;
    int tf32;            /* products of convs and linear layers on the tensor cores */
    /* conv_bn_relu, conv_bn_add_relu: the conv's epilogue sums each output
     * channel (y and y^2, in double) over its tile into stats_off of I,
     * stats_parts partial sums a channel; the batch norm reading that
     * output (stats_for) finishes them instead of reading it twice */
    int64_t stats_off;
    int want_stats, stats_for;
    int64_t stats_parts;
    /* bn_relu_conv whose relu output only the conv reads: the conv's
     * gather normalises and applies the relu as it stages x (pro, the batch
     * norm; its per-channel inverse std in scratch at 0 in eval mode);
     * the batch norm computes only its statistics */
    const IrNode *pro;
} Gen;

void cu_out(Gen *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The address expression of value v's buffer (its stand-in when staged). */
void cu_addr(Gen *g, int v, char *buf, size_t n);
/* The index in v's buffer of its element at index expression e: e, or for
 * a strided view NETC_AT(e, per, istride), image by image at its root's
 * stride. */
void cu_at(Gen *g, int v, const char *e, char *buf, size_t n);
/* Starts a launch of `threads` threads, one per element; `i` is the
 * thread's index (threads past the end return at once). */
void cu_begin(Gen *g, int64_t threads);
/* Starts a launch of `blocks` blocks of BLOCK threads that all run to the
 * end (they may synchronise); no `i`. */
void cu_begin_blocks(Gen *g, int64_t blocks);
void cu_end(Gen *g);
/* Declares `type *name` for value v. */
void cu_ptr(Gen *g, const char *type, const char *name, int v);
/* `type *name` at byte offset off of this node's scratch. */
void cu_scratch(Gen *g, const char *type, const char *name, int64_t off);
/* This node needs `bytes` of scratch. */
void cu_need(Gen *g, int64_t bytes);
void cu_fconst(char *buf, size_t n, float x);
/* One launch of cnt threads: a0.. the inputs, y0.. the outputs, body per i. */
void cu_elementwise(Gen *g, const IrNode *n, int64_t cnt, const char *body);

/* cuda_bn.c */
/* A batch norm or its gradient: its launches. */
void cu_gen_bn(Gen *g, const IrNode *n);
/* The batch norm at position j of kernel k followed in its group by relu,
 * sigmoid or the residual add: how many of those its last launch applies
 * (in g->chain). */
int cu_bn_chain(Gen *g, const Kernel *k, int j);
/* Whether the conv at position j of kernel k sums the statistics of the
 * training batch norm after it in its epilogue. */
int cu_conv_stats(const Gen *g, const Kernel *k, int j);
/* Whether the batch norm at position j of kernel k is a bn_relu_conv's that
 * its conv applies in its gather. */
int cu_bn_prologue(const Gen *g, const Kernel *k, int j);
/* The bytes of the largest conv statistics region of the program. */
int64_t cu_stats_bytes(const Gen *g);

/* cuda_conv.c */
/* The partial sums a channel of conv n's statistics epilogue: one per
 * 64-column tile (fp32), four (tf32); 0 when the conv is not tiled. */
int64_t cu_conv_stats_parts(const Gen *g, const IrNode *n);
/* Whether conv n is tiled (and so can take a prologue or an epilogue). */
int cu_conv_tiled(const IrNode *n);
void cu_gen_conv(Gen *g, const IrNode *n);
void cu_gen_linear(Gen *g, const IrNode *n);

#endif
