/* dump.c - the stable text dump and the Graphviz view of a graph.
 *
 * Text: one line per node, values as %id:
 *   %7 = conv2d(%0, %5, %6) {out=6 kernel=5x5 stride=1x1 pad=0x0 bias} : Nx6x24x24  # conv0
 * Same graph, same bytes: golden tests diff it. */
#include "ir.h"

#include <string.h>

static const char *role_name[] = {"weight", "bias", "gamma", "beta", "running_mean", "running_var"};

static void print_attr(const IrNode *n, FILE *f) {
    const IrAttr *a = &n->attr;
    switch (ir_info(n->op)->attr) {
    case IR_ATTR_none: break;
    case IR_ATTR_input: fprintf(f, " {c=%d h=%d w=%d}", a->input.c, a->input.h, a->input.w); break;
    case IR_ATTR_param: fprintf(f, " {%s}", role_name[a->param.role]); break;
    case IR_ATTR_conv:
        fprintf(f, " {out=%d kernel=%dx%d stride=%dx%d pad=%dx%d%s}", a->conv.out_c, a->conv.kh,
                a->conv.kw, a->conv.sh, a->conv.sw, a->conv.ph, a->conv.pw, a->conv.bias ? " bias" : "");
        break;
    case IR_ATTR_linear: fprintf(f, " {out=%d%s}", a->linear.out, a->linear.bias ? " bias" : ""); break;
    case IR_ATTR_pool:
        fprintf(f, " {kernel=%dx%d stride=%dx%d pad=%dx%d}", a->pool.kh, a->pool.kw, a->pool.sh,
                a->pool.sw, a->pool.ph, a->pool.pw);
        break;
    case IR_ATTR_dropout:
        fprintf(f, " {p=%g %s stream=%d}", a->dropout.p, a->dropout.mode == IR_TRAIN ? "train" : "eval",
                a->dropout.index);
        break;
    case IR_ATTR_bn:
        fprintf(f, " {%s momentum=%g eps=%g}",
                a->bn.mode == IR_TRAIN ? "train" : a->bn.mode == IR_EVAL ? "eval" : "apply", a->bn.momentum,
                a->bn.eps);
        break;
    case IR_ATTR_slice: fprintf(f, " {c0=%d c=%d}", a->slice.c0, a->slice.c); break;
    }
}

void ir_dump(const IrGraph *g, FILE *f) {
    char buf[80];
    fprintf(f, "graph mode=%s nodes=%d values=%d\n", g->mode == IR_TRAIN ? "train" : "eval", g->nnodes,
            g->nvalues);
    for (int i = 0; i < g->nnodes; i++) {
        const IrNode *n = ir_node(g, i);
        fputs("  ", f);
        for (int k = 0; k < n->nout; k++) fprintf(f, "%s%%%d", k ? ", " : "", n->out[k]);
        fprintf(f, "%s%s", n->nout ? " = " : "", ir_info(n->op)->name);
        if (n->op == IR_OP_PARAM) {
            const IrValue *v = ir_value(g, n->out[0]);
            fprintf(f, " %s", v->name ? v->name : "?");
        } else {
            fputc('(', f);
            for (int k = 0; k < n->nin; k++) fprintf(f, "%s%%%d", k ? ", " : "", n->in[k]);
            fputc(')', f);
        }
        print_attr(n, f);
        if (n->nout) fputs(" :", f);
        for (int k = 0; k < n->nout; k++) {
            ir_type_str(ir_type(g, n->out[k]), buf, sizeof buf);
            fprintf(f, "%s %s", k ? "," : "", buf);
        }
        if (n->name && n->op != IR_OP_PARAM) fprintf(f, "  # %s", n->name);
        fputc('\n', f);
    }
    fprintf(f, "  input %%%d, labels %%%d, logits %%%d, loss %%%d\n", g->input, g->labels, g->logits, g->loss);
}

/* Graphviz: one box per non-parameter node, edges along values; parameters
 * are folded into their consumer's label.  group_of_node (may be NULL)
 * colours fusion groups. */
void ir_dump_dot(const IrGraph *g, FILE *f, const int *group_of_node) {
    static const char *palette[] = {"#fde0dd", "#e0ecf4", "#e5f5e0", "#fff7bc", "#efedf5", "#fee6ce"};
    char buf[80];
    fputs("digraph netc {\n  rankdir=TB;\n  node [shape=box, style=filled, fillcolor=white, fontname=\"monospace\", fontsize=10];\n", f);
    for (int i = 0; i < g->nnodes; i++) {
        const IrNode *n = ir_node(g, i);
        if (n->op == IR_OP_PARAM) continue;
        buf[0] = 0;
        if (n->nout) ir_type_str(ir_type(g, n->out[0]), buf, sizeof buf);
        fprintf(f, "  n%d [label=\"%s\\n%s\\n%s\"", i, n->name ? n->name : "", ir_info(n->op)->name, buf);
        if (group_of_node) fprintf(f, ", fillcolor=\"%s\"", palette[group_of_node[i] % 6]);
        else if (ir_info(n->op)->flags & IR_F_BWD) fputs(", fillcolor=\"#e0ecf4\"", f);
        fputs("];\n", f);
    }
    for (int i = 0; i < g->nnodes; i++) {
        const IrNode *n = ir_node(g, i);
        if (n->op == IR_OP_PARAM) continue;
        for (int k = 0; k < n->nin; k++) {
            int src = ir_value(g, n->in[k])->node;
            if (ir_node(g, src)->op == IR_OP_PARAM) continue;
            fprintf(f, "  n%d -> n%d;\n", src, i);
        }
    }
    fputs("}\n", f);
}
