/* verify.c - structural invariants of a graph.  Runs after every pass in
 * debug builds and in the tests. */
#include "ir.h"

#define FAIL(...) do { fprintf(f, "ir_verify: node %d (%s): ", i, ir_info(n->op)->name); \
                        fprintf(f, __VA_ARGS__); fputc('\n', f); return -1; } while (0)

int ir_verify(const IrGraph *g, FILE *f) {
    for (int i = 0; i < g->nnodes; i++) {
        const IrNode *n = ir_node(g, i);
        if ((unsigned)n->op >= IR_OP_COUNT) { fprintf(f, "ir_verify: node %d: bad op %d\n", i, n->op); return -1; }
        const IrOpInfo *info = ir_info(n->op);
        if (info->nin >= 0 && n->nin != info->nin) {
            /* conv2d and linear take an optional bias */
            FAIL("has %d inputs, expected %d", n->nin, info->nin);
        }
        if (info->nout >= 0 && n->nout != info->nout) FAIL("has %d outputs, expected %d", n->nout, info->nout);
        if (n->op == IR_OP_CONV2D && n->nin != 2 + !!n->attr.conv.bias) FAIL("input count does not match bias flag");
        if (n->op == IR_OP_LINEAR && n->nin != 2 + !!n->attr.linear.bias) FAIL("input count does not match bias flag");
        if (n->op == IR_OP_BATCHNORM && n->nout != (n->attr.bn.mode == IR_TRAIN ? 3 : 1)) FAIL("outputs do not match mode");
        if (n->op == IR_OP_DROPOUT && n->nout != (n->attr.dropout.mode == IR_TRAIN ? 2 : 1)) FAIL("outputs do not match mode");
        for (int k = 0; k < n->nin; k++) {
            int v = n->in[k];
            if (v < 0 || v >= g->nvalues) FAIL("input %d is out of range (%d)", k, v);
            if (g->values[v].node >= i) FAIL("input %d (%%%d) is used before it is defined", k, v);
            if (g->values[v].type.rank == 0) FAIL("input %d (%%%d) has no type", k, v);
        }
        for (int k = 0; k < n->nout; k++) {
            int v = n->out[k];
            if (v < 0 || v >= g->nvalues) FAIL("output %d is out of range", k);
            if (g->values[v].node != i || g->values[v].index != k) FAIL("output %d (%%%d) does not point back", k, v);
            if (g->values[v].type.rank == 0) FAIL("output %d (%%%d) has no type", k, v);
        }
        switch (n->op) {
        case IR_OP_ADD:
            if (!ir_type_eq(ir_type(g, n->in[0]), ir_type(g, n->in[1]))) FAIL("operands differ in shape");
            break;
        case IR_OP_ACCUM: case IR_OP_RELU_BWD: case IR_OP_SIGMOID_BWD: case IR_OP_DROPOUT_BWD:
            for (int k = 1; k < n->nin; k++)
                if (ir_numel(ir_type(g, n->in[k]), 1) != ir_numel(ir_type(g, n->in[0]), 1)) FAIL("operands differ in size");
            if (ir_numel(ir_type(g, n->out[0]), 1) != ir_numel(ir_type(g, n->in[0]), 1)) FAIL("output differs in size");
            break;
        case IR_OP_SGD:
            if (!ir_type_eq(ir_type(g, n->in[0]), ir_type(g, n->in[1]))) FAIL("parameter and gradient differ in shape");
            if (ir_node(g, ir_value(g, n->in[0])->node)->op != IR_OP_PARAM) FAIL("updates a value that is not a parameter");
            break;
        case IR_OP_FLATTEN: case IR_OP_RESHAPE:
            if (ir_numel(ir_type(g, n->out[0]), 1) != ir_numel(ir_type(g, n->in[0]), 1)) FAIL("view changes the element count");
            break;
        default:
            break;
        }
    }
    for (int v = 0; v < g->nvalues; v++) {
        int node = g->values[v].node;
        if (node < 0 || node >= g->nnodes) { fprintf(f, "ir_verify: value %%%d has no producer\n", v); return -1; }
    }
    int roots[] = {g->input, g->labels, g->logits, g->loss};
    for (int k = 0; k < 4; k++)
        if (roots[k] >= g->nvalues) { fprintf(f, "ir_verify: graph root %d out of range\n", roots[k]); return -1; }
    return 0;
}
