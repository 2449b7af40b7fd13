/* passes.h - the passes over the IR, one file each, one public entry each.
 * A pass returns 0 on success and -1 on a user error it has reported. */
#ifndef NETC_PASSES_H
#define NETC_PASSES_H

#include "../ir/ir.h"
#include "../ir/diag.h"

/* passes/shape.c: infers the type of every value (and the shapes of params
 * from their consumers).  Errors (add of different shapes, a pool larger than
 * its input, linear of the wrong width, ...) are reported at the node's loc. */
int pass_infer_shapes(IrGraph *g, Diag *d);

/* passes/autodiff.c: appends to a forward graph (with loss) the backward
 * graph and one SGD node per trainable parameter.  g->mode must be IR_TRAIN.
 * grad_of[v] (size g->nvalues after the call, caller frees) gives the value
 * id of d(loss)/d(v) or -1. */
int pass_autodiff(IrGraph *g, int **grad_of);

/* Statistics used by `netc check`. */
typedef struct {
    int64_t params;          /* trainable parameter elements */
    int64_t state;           /* running statistics */
    int layers;              /* nodes with parameters (conv, linear, batchnorm) */
    int64_t fwd_flops;       /* per image, 2 x multiply-adds of conv and linear */
} IrStats;
void pass_stats(const IrGraph *g, IrStats *s);

#endif
