/* test_elab.c - elaboration into the IR (frontend/elab.c): loops,
 * conditionals, block parameters and defaults, names, parameter order,
 * command-line parameters, train/eval modes, and the seven models. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"
#include "passes/passes.h"

static char diag_buf[8192];

static int build(IrGraph *g, const char *src, IrMode mode, const FeDefine *defs, int ndefs) {
    FILE *mf = fmemopen(diag_buf, sizeof diag_buf, "w");
    Diag d;
    diag_init(&d, "t.net", src, strlen(src), mf);
    ir_init(g);
    FeOptions o = { mode, defs, ndefs };
    int rc = fe_build(src, strlen(src), &o, g, &d);
    if (rc == 0)
        rc = pass_infer_shapes(g, &d);
    fclose(mf);
    return rc;
}

static int count_op(const IrGraph *g, IrOp op) {
    int n = 0;
    for (int i = 0; i < g->nnodes; i++)
        n += g->nodes[i].op == op;
    return n;
}

/* Names of the PARAM values, in graph order, joined by spaces. */
static const char *param_names(const IrGraph *g) {
    static char buf[1 << 16];
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i].op == IR_OP_PARAM) {
            int k = snprintf(buf + n, sizeof buf - n, "%s%s", n ? " " : "", g->values[g->nodes[i].out[0]].name);
            assert_true(k > 0 && (size_t)k < sizeof buf - n);
            n += (size_t)k;
        }
    return buf;
}

static void test_graph_frame(void **state) {
    (void)state;
    IrGraph g;
    assert_int_equal(build(&g, "train { lr = 0.5, batch = 8, epochs = 3, resize = 32 }\n"
                               "net { return x |> flatten |> linear(10) }", IR_TRAIN, NULL, 0), 0);
    assert_int_equal(g.nodes[0].op, IR_OP_INPUT);
    assert_int_equal(g.nodes[0].attr.input.c, 1);
    assert_int_equal(g.nodes[0].attr.input.h, 32);
    assert_true(g.train.lr == 0.5 && g.train.batch == 8 && g.train.epochs == 3 && g.train.resize == 32);
    assert_int_equal(g.input, g.nodes[0].out[0]);
    assert_int_equal(g.values[g.logits].type.d[1], 10);
    assert_int_equal(g.nodes[g.values[g.labels].node].op, IR_OP_LABELS);
    assert_int_equal(g.nodes[g.values[g.loss].node].op, IR_OP_SOFTMAX_XENT);
    assert_string_equal(param_names(&g), "linear0.weight linear0.bias");
    ir_free(&g);
}

static void test_loops_and_conditions(void **state) {
    (void)state;
    IrGraph g;
    assert_int_equal(build(&g, "net {\n n = 0\n for i in 0..5 { if i % 2 == 0 { x = x |> relu } else { n = n + 1 } }\n"
                               " for i in 3..1 { x = x |> sigmoid }\n"
                               " x = n == 2 ? x |> sigmoid : x |> relu\n"
                               " return x |> flatten |> linear(10) }", IR_TRAIN, NULL, 0), 0);
    assert_int_equal(count_op(&g, IR_OP_RELU), 3);
    assert_int_equal(count_op(&g, IR_OP_SIGMOID), 1);   /* only the chosen branch is built */
    ir_free(&g);
}

static void test_blocks_and_names(void **state) {
    (void)state;
    IrGraph g;
    const char *src = "block unit(c, k = 3, b = true) { return x |> conv(c, k, pad = k / 2, bias = b) }\n"
                      "block two(c) { x = x |> unit(c) |> unit(c, k = 1, b = false) as last\n return x }\n"
                      "net {\n scope s { x = x |> two(4) |> two(c = 8) }\n x = x |> conv(2, 1) as head\n"
                      " return x |> flatten |> linear(10) }";
    assert_int_equal(build(&g, src, IR_TRAIN, NULL, 0), 0);
    assert_string_equal(param_names(&g), "s.two0.unit0.conv0.weight s.two0.unit0.conv0.bias s.two0.last.conv0.weight "
                                         "s.two1.unit0.conv0.weight s.two1.unit0.conv0.bias s.two1.last.conv0.weight "
                                         "head.weight head.bias linear0.weight linear0.bias");
    int conv = -1;
    for (int i = 0; i < g.nnodes; i++)
        if (g.nodes[i].op == IR_OP_CONV2D && !strcmp(g.nodes[i].name, "s.two1.last.conv0"))
            conv = i;
    assert_true(conv >= 0);
    assert_int_equal(g.nodes[conv].attr.conv.kh, 1);
    assert_int_equal(g.nodes[conv].attr.conv.bias, 0);
    assert_int_equal(g.nodes[conv].attr.conv.out_c, 8);
    assert_int_equal(g.nodes[conv].loc.line, 1);   /* where `conv` is written */
    ir_free(&g);
}

static void test_defines_and_modes(void **state) {
    (void)state;
    IrGraph g;
    const char *src = "param w = 4\nparam deep = false\n"
                      "net { x = x |> conv(w, 3) |> batchnorm |> relu |> dropout(0.25)\n"
                      " if deep { x = x |> conv(w, 3) }\n return x |> flatten |> dropout |> linear(10) }";
    FeDefine defs[] = { { "w", 6 }, { "deep", 1 } };
    assert_int_equal(build(&g, src, IR_EVAL, defs, 2), 0);
    assert_int_equal(count_op(&g, IR_OP_CONV2D), 2);
    for (int i = 0; i < g.nnodes; i++) {
        IrNode *n = &g.nodes[i];
        if (n->op == IR_OP_CONV2D) assert_int_equal(n->attr.conv.out_c, 6);
        if (n->op == IR_OP_BATCHNORM) assert_int_equal(n->nout, 1);
        if (n->op == IR_OP_DROPOUT) assert_int_equal(n->nout, 1);
    }
    ir_free(&g);
    assert_int_equal(build(&g, src, IR_TRAIN, NULL, 0), 0);
    int ndrop = 0;
    for (int i = 0; i < g.nnodes; i++) {
        IrNode *n = &g.nodes[i];
        if (n->op == IR_OP_BATCHNORM) {
            assert_int_equal(n->nout, 3);
            assert_int_equal(n->attr.bn.mode, IR_TRAIN);
            assert_true(n->attr.bn.eps == 1e-5f && n->attr.bn.momentum == 0.1f);
        }
        if (n->op == IR_OP_DROPOUT) {
            assert_int_equal(n->nout, 2);
            assert_int_equal(n->attr.dropout.index, ndrop);
            assert_true(n->attr.dropout.p == (ndrop ? 0.5f : 0.25f));
            ndrop++;
        }
    }
    assert_int_equal(ndrop, 2);
    assert_string_equal(param_names(&g), "conv0.weight conv0.bias batchnorm0.weight batchnorm0.bias "
                                         "batchnorm0.running_mean batchnorm0.running_var linear0.weight linear0.bias");
    ir_free(&g);
    FeDefine bad[] = { { "wdith", 3 } };
    assert_int_equal(build(&g, src, IR_TRAIN, bad, 1), -1);
    assert_non_null(strstr(diag_buf, "no parameter `wdith`"));
    ir_free(&g);
}

static void test_arithmetic(void **state) {
    (void)state;
    IrGraph g;
    /* floor division as in Python; precedence; comparisons; && || ! */
    assert_int_equal(build(&g, "net { a = -7 / 2\n b = -7 % 2\n c = 2 + 3 * 4\n"
                               " ok = a == -4 && b == 1 && c == 14 && !(c < 3) || false\n"
                               " if ok { x = x |> relu }\n return x |> flatten |> linear(10) }", IR_TRAIN, NULL, 0), 0);
    assert_int_equal(count_op(&g, IR_OP_RELU), 1);
    ir_free(&g);
}

typedef struct { const char *file; int64_t params; int convs, bns, nodes; const char *name; } Model;

static void test_models(void **state) {
    (void)state;
    static const Model models[] = {
        { "alexnet", 46764746, 5, 0, 40, "linear2.weight" },
        { "vgg11", 43093322, 8, 0, 54, "vgg_block4.conv1.weight" },
        { "nin", 1992166, 12, 0, 57, "nin_block3.conv2.bias" },
        { "googlenet", 5977530, 57, 0, 257, "b4.inception4.p3_2.weight" },
        { "lenet_bn", 44878, 2, 4, 45, "batchnorm3.running_var" },
        { "resnet18", 11178378, 20, 17, 179, "b3.residual0.conv3.weight" },
        { "densenet", 758226, 20, 21, 214, "dense_block3.conv_block3.conv0.weight" },
    };
    for (size_t m = 0; m < sizeof models / sizeof *models; m++) {
        char path[256];
        snprintf(path, sizeof path, "models/%s.net", models[m].file);
        IrGraph g;
        ir_init(&g);
        Diag d;
        diag_init(&d, path, NULL, 0, stderr);
        char *src = NULL;
        FeOptions o = { IR_TRAIN, NULL, 0 };
        assert_int_equal(fe_build_file(path, &o, &g, &src, &d), 0);
        assert_int_equal(pass_infer_shapes(&g, &d), 0);
        IrStats s;
        pass_stats(&g, &s);
        if (s.params != models[m].params || count_op(&g, IR_OP_CONV2D) != models[m].convs ||
            count_op(&g, IR_OP_BATCHNORM) != models[m].bns || g.nnodes != models[m].nodes)
            fail_msg("%s: params %lld convs %d bns %d nodes %d", path, (long long)s.params,
                     count_op(&g, IR_OP_CONV2D), count_op(&g, IR_OP_BATCHNORM), g.nnodes);
        assert_int_equal(g.values[g.logits].type.rank, 2);
        assert_int_equal(g.values[g.logits].type.d[1], 10);
        assert_non_null(strstr(param_names(&g), models[m].name));
        ir_free(&g);
        free(src);
    }
}

static void test_resnet_param_order(void **state) {
    (void)state;
    IrGraph g;
    Diag d;
    diag_init(&d, "models/resnet18.net", NULL, 0, stderr);
    ir_init(&g);
    char *src = NULL;
    assert_int_equal(fe_build_file("models/resnet18.net", NULL, &g, &src, &d), 0);
    const char *p = param_names(&g);
    const char *order[] = { "b3.residual0.conv1.weight", "b3.residual0.bn1.weight", "b3.residual0.conv2.weight",
                            "b3.residual0.bn2.weight", "b3.residual0.conv3.weight", "b3.residual1.conv1.weight" };
    const char *at = p;
    for (int i = 0; i < 6; i++) {
        const char *q = strstr(at, order[i]);
        if (!q)
            fail_msg("%s missing or out of order", order[i]);
        at = q;
    }
    ir_free(&g);
    free(src);
    /* VGG at full width: ratio=1 */
    FeDefine r1 = { "ratio", 1 };
    assert_int_equal(build(&g, "param ratio = 4\nnet { return x |> conv(64 / ratio, 3) |> flatten |> linear(10) }",
                           IR_TRAIN, &r1, 1), 0);
    assert_int_equal(g.nodes[3].attr.conv.out_c, 64);
    ir_free(&g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_graph_frame),    cmocka_unit_test(test_loops_and_conditions),
        cmocka_unit_test(test_blocks_and_names), cmocka_unit_test(test_defines_and_modes),
        cmocka_unit_test(test_arithmetic),     cmocka_unit_test(test_models),
        cmocka_unit_test(test_resnet_param_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
