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
    FeOptions o = { mode, defs, ndefs, 0, 0 };
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
    FeDefine defs[] = { { "w", "6" }, { "deep", "1" } };
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
    FeDefine bad[] = { { "wdith", "3" } };
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

/* The text dump of src's graph (shapes inferred; caller frees), NULL if it
 * does not build. */
static char *dump_of(const char *src, const FeDefine *defs, int ndefs) {
    IrGraph g;
    if (build(&g, src, IR_TRAIN, defs, ndefs)) {
        ir_free(&g);
        return NULL;
    }
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ir_dump(&g, f);
    fclose(f);
    ir_free(&g);
    return text;
}

/* src builds the same graph (names, ops, attributes, shapes) as ref. */
static void same_graph(const char *src, const char *ref, const FeDefine *defs, int ndefs) {
    char *a = dump_of(src, defs, ndefs);
    if (!a)
        fail_msg("does not build:\n%s", diag_buf);
    char *b = dump_of(ref, NULL, 0);
    if (!b)
        fail_msg("reference does not build:\n%s", diag_buf);
    if (strcmp(a, b))
        fail_msg("graphs differ:\n%s\nexpected:\n%s", a, b);
    free(a);
    free(b);
}

/* The first line of the diagnostic for src, which must not build. */
static void expect_error(const char *src, const FeDefine *defs, int ndefs, const char *want) {
    IrGraph g;
    int rc = build(&g, src, IR_TRAIN, defs, ndefs);
    ir_free(&g);
    if (rc != -1 || strncmp(diag_buf, want, strlen(want)))
        fail_msg("rc %d, want `%s`, got:\n%s", rc, want, diag_buf);
}

static const char *vgg_block = "block vgg_block(num_convs, out_channels) {\n"
                               "  for i in 0..num_convs { x = x |> conv(out_channels, 3, pad = 1) |> relu }\n"
                               "  return x |> maxpool(2, stride = 2)\n}\n";

static void test_lists(void **state) {
    (void)state;
    char src[2048], ref[2048];
    /* VGG's conv_arch as a list of pairs: destructured, indexed, or through a parameter */
    snprintf(ref, sizeof ref, "%snet { x = x |> vgg_block(1, 8) |> vgg_block(2, 16) |> vgg_block(1, 4)\n"
                              " return x |> flatten |> linear(10) }", vgg_block);
    snprintf(src, sizeof src, "%snet { conv_arch = ((1, 8), (2, 16), [1, 4])\n"
                              " for (num_convs, out_channels) in conv_arch { x = x |> vgg_block(num_convs, out_channels) }\n"
                              " return x |> flatten |> linear(10) }", vgg_block);
    same_graph(src, ref, NULL, 0);
    snprintf(src, sizeof src, "%sparam conv_arch = [(1, 8), (2, 16), (1, 4)]\n"
                              "net { for p in conv_arch { x = x |> vgg_block(p[0], p[-1]) }\n"
                              " return x |> flatten |> linear(10) }", vgg_block);
    same_graph(src, ref, NULL, 0);
    snprintf(src, sizeof src, "%snet { arch = [[1, 2, 1], [8, 16, 4]]\n"
                              " for i in 0..len(arch[0]) { x = x |> vgg_block(arch[0][i], arch[1][i]) }\n"
                              " return x |> flatten |> linear(10) }", vgg_block);
    same_graph(src, ref, NULL, 0);
    /* a list as a block parameter, booleans in a list, + joins lists, == compares them */
    same_graph("block stack(widths, acts) { for i in 0..len(widths) { x = x |> conv(widths[i], 1)\n"
               "  if acts[i] { x = x |> relu } }\n return x }\n"
               "net { w = [3] + (5, 7)\n if w == [3, 5, 7] && w != [3, 5] { x = x |> stack(w, [true, false, true]) }\n"
               " return x |> flatten |> linear(10) }",
               "net { scope stack0 { x = x |> conv(3, 1) |> relu |> conv(5, 1) |> conv(7, 1) |> relu }\n"
               " return x |> flatten |> linear(10) }",
               NULL, 0);
    /* a list parameter replaced from the command line; the loop runs over the new one */
    FeDefine d = { "blocks", "[2, 1]" };
    same_graph("param blocks = (6, 12, 24, 16)\nnet { for b in blocks { for i in 0..b { x = x |> relu } }\n"
               " return x |> flatten |> linear(10) }",
               "net { x = x |> relu |> relu |> relu\n return x |> flatten |> linear(10) }", &d, 1);
    /* located errors */
    expect_error("net { xs = [1, 2]\n return x |> conv(xs[2], 3) }", NULL, 0,
                 "t.net:2:22: error: index 2 is out of range for a list of 2 elements");
    expect_error("net { xs = [1, 2]\n n = xs[-3] }", NULL, 0, "t.net:2:9: error: index -3 is out of range");
    expect_error("net { n = len(4) }", NULL, 0, "t.net:1:15: error: `len` needs a list, got an integer");
    expect_error("net { xs = [1, 2]\n return x |> conv(xs, 3) }", NULL, 0,
                 "t.net:2:19: error: `out` of `conv` must be an integer, got a list");
    expect_error("net { for (a, b) in [(1, 2), (3, 4, 5)] { } }", NULL, 0,
                 "t.net:1:12: error: element 1 of the list has 3 values; the loop unpacks 2");
    expect_error("net { xs = [1, x] }", NULL, 0, "t.net:1:16: error: a list element cannot be a tensor");
    expect_error("param blocks = [1]\nnet { }", &(FeDefine){ "blocks", "4" }, 1,
                 "t.net:1:7: error: `blocks` is a list; the command line gives an integer (`4`)");
    expect_error("param blocks = [1]\nnet { }", &(FeDefine){ "blocks", "[1, 2" }, 1,
                 "--param blocks:1:5: error: syntax error, unexpected end of file");
}

static void test_reals(void **state) {
    (void)state;
    IrGraph g;
    /* a real parameter, arithmetic on reals, the training rate from a parameter */
    const char *src = "param drop_rate = 0.3\nparam base_lr = 0.05\ntrain { lr = base_lr * 2 }\n"
                      "block head(p) { return x |> dropout(p) |> linear(10) }\n"
                      "net { half = drop_rate / 2\n n = int(2.9) * 3\n x = x |> conv(n, 3) |> flatten |> dropout(half + 0.1)\n"
                      " return x |> head(drop_rate) }";
    assert_int_equal(build(&g, src, IR_TRAIN, NULL, 0), 0);
    float want[] = { 0.25f, 0.3f };
    int k = 0;
    for (int i = 0; i < g.nnodes; i++) {
        if (g.nodes[i].op == IR_OP_DROPOUT) assert_true(g.nodes[i].attr.dropout.p == want[k++]);
        if (g.nodes[i].op == IR_OP_CONV2D) assert_int_equal(g.nodes[i].attr.conv.out_c, 6);
    }
    assert_int_equal(k, 2);
    assert_true(g.train.lr == 0.1);
    ir_free(&g);
    /* --param gives a real, or an integer where a real is declared */
    FeDefine defs[] = { { "drop_rate", "0.5" }, { "base_lr", "1" } };
    assert_int_equal(build(&g, src, IR_TRAIN, defs, 2), 0);
    for (int i = 0; i < g.nnodes; i++)
        if (g.nodes[i].op == IR_OP_DROPOUT) assert_true(g.nodes[i].attr.dropout.p == 0.5f || g.nodes[i].attr.dropout.p == 0.35f);
    assert_true(g.train.lr == 2.0);
    ir_free(&g);
    /* a real where an integer is needed, from the file or the command line */
    expect_error("param width = 8\nnet { return x |> conv(width * 0.5, 3) }", NULL, 0,
                 "t.net:2:30: error: `out` of `conv` must be an integer, got a real number");
    expect_error("param width = 8\nnet { }", &(FeDefine){ "width", "0.5" }, 1,
                 "t.net:1:7: error: `width` is an integer; the command line gives a real number (`0.5`)");
    expect_error("net { for i in 0..2.5 { } }", NULL, 0, "t.net:1:19: error: loop bounds must be integers, got a real number");
    expect_error("net { xs = [1]\n n = xs[0.0] }", NULL, 0, "t.net:2:9: error: a list index must be an integer, got a real number");
    expect_error("param p = 0.3\nnet { }", &(FeDefine){ "p", "true" }, 1,
                 "t.net:1:7: error: `p` is a real number; the command line gives a boolean (`true`)");
}

static void test_shape_queries(void **state) {
    (void)state;
    /* a residual block that decides its projection from channels(x) */
    const char *residual = "block residual(num_channels, strides = 1) {\n"
                           "  y = x |> conv(num_channels, 3, pad = 1, stride = strides) as conv1 |> relu\n"
                           "  y = y |> conv(num_channels, 3, pad = 1) as conv2\n"
                           "  if channels(x) != num_channels || strides != 1 { x = x |> conv(num_channels, 1, stride = strides) as conv3 }\n"
                           "  return relu(y + x)\n}\n";
    char src[2048];
    snprintf(src, sizeof src, "%snet { x = x |> conv(8, 3) |> residual(8) |> residual(16, strides = 2) |> residual(16)\n"
                              " return x |> flatten |> linear(10) }", residual);
    same_graph(src, "block residual(num_channels, use_1x1conv = false, strides = 1) {\n"
                    "  y = x |> conv(num_channels, 3, pad = 1, stride = strides) as conv1 |> relu\n"
                    "  y = y |> conv(num_channels, 3, pad = 1) as conv2\n"
                    "  if use_1x1conv { x = x |> conv(num_channels, 1, stride = strides) as conv3 }\n"
                    "  return relu(y + x)\n}\n"
                    "net { x = x |> conv(8, 3) |> residual(8) |> residual(16, use_1x1conv = true, strides = 2) |> residual(16)\n"
                    " return x |> flatten |> linear(10) }", NULL, 0);
    /* a transition halving its input's channels; sizes after convs, pools and concats */
    same_graph("block transition() { return x |> conv(channels(x) / 2, 1) |> avgpool(2) }\n"
               "net { x = concat(x |> conv(6, 3), x |> conv(10, 3)) |> transition\n"
               " x = x |> conv(height(x) + width(x) * 100, 1)\n return x |> flatten |> linear(10) }",
               "net { x = concat(x |> conv(6, 3), x |> conv(10, 3))\n scope transition0 { x = x |> conv(8, 1) |> avgpool(2) }\n"
               " x = x |> conv(1313, 1)\n return x |> flatten |> linear(10) }", NULL, 0);
    /* the input's size follows train { resize } */
    same_graph("train { resize = 32 }\nnet { return x |> flatten |> linear(height(x) * width(x) * channels(x)) }",
               "train { resize = 32 }\nnet { return x |> flatten |> linear(1024) }", NULL, 0);
    expect_error("net { x = x |> flatten\n n = height(x) }", NULL, 0,
                 "t.net:2:13: error: `height` needs an image tensor [N, C, H, W], got Nx784");
    expect_error("net { n = channels(3) }", NULL, 0, "t.net:1:11: error: `channels` needs a tensor, got an integer");
    /* a shape error before the query is reported at its op */
    expect_error("net { x = x |> conv(4, 3) |> conv(4, 3, in = 5)\n n = width(x) }", NULL, 0,
                 "t.net:1:30: error: ");
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
        FeOptions o = { IR_TRAIN, NULL, 0, 0, 0 };
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
    FeDefine r1 = { "ratio", "1" };
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
        cmocka_unit_test(test_resnet_param_order), cmocka_unit_test(test_lists),
        cmocka_unit_test(test_reals),          cmocka_unit_test(test_shape_queries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
