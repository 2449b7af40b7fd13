/* test_autodiff.c - every grad rule of the autodiff pass against central
 * finite differences of the whole training graph, in double precision
 * (the ref64 backend).
 *
 * Each case is a small network written in .net; the check perturbs every
 * parameter element (or a sample of them) and the input, re-runs the step
 * with lr 0 and compares d(loss)/d(p) from the graph with
 * (L(p+h) - L(p-h)) / 2h.  Tolerance: |fd - an| <= 1e-5 * max(|fd|, |an|) + 1e-7. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/backend.h"
#include "runtime/runtime.h"
#include "testutil.h"

enum { BATCH = 3 };

typedef struct {
    Program p;
    RtModel m;
    void **slots;
    void *arena;
} Net;

static void net_open(Net *n, const char *src, int size) {
    IrGraph g;
    ir_init(&g);
    Diag d;
    diag_init(&d, "case.net", src, strlen(src), stderr);
    FeOptions o = {IR_TRAIN, NULL, 0, 0, 0};
    assert_int_equal(fe_build(src, strlen(src), &o, &g, &d), 0);
    for (int i = 0; i < g.nnodes; i++)
        if (g.nodes[i].op == IR_OP_INPUT) g.nodes[i].attr.input.h = g.nodes[i].attr.input.w = size;
    assert_int_equal(pass_infer_shapes(&g, &d), 0);
    PipelineOptions po = {IR_TRAIN, BATCH, 8, 1, NULL, NULL, NULL, NULL, 0, 0};
    assert_int_equal(pass_pipeline(&g, &po, &n->p, &d), 0);
    ir_free(&g);
    assert_int_equal(program_check_plan(&n->p, stderr), 0);
    memset(&n->m, 0, sizeof n->m);
    n->slots = calloc((size_t)n->p.nslots, sizeof(void *));
    assert_int_equal(rt_model_bind(&n->m, &n->p, n->slots, &d), 0);
    rt_model_init(&n->m, &n->p, 7);
    n->arena = aligned_alloc(64, (size_t)(n->p.arena_bytes + 64));
    /* inputs in [0, 1), labels 0..K-1, running statistics away from 0/1 */
    uint64_t r = 42;
    RtTensor *in = rt_model_find(&n->m, "input");
    for (int64_t i = 0; i < in->bytes / 8; i++) ((double *)in->data)[i] = 0.5 + 0.5 * tu_rand(&r);
    RtTensor *lb = rt_model_find(&n->m, "labels");
    for (int64_t i = 0; i < lb->bytes / 4; i++) ((int32_t *)lb->data)[i] = (int32_t)(i % 3);
    for (int i = 0; i < n->m.n; i++)   /* biases and beta nonzero so every path matters */
        if (n->m.t[i].kind == SLOT_PARAM && strstr(n->m.t[i].name, ".bias"))
            for (int64_t k = 0; k < n->m.t[i].bytes / 8; k++) ((double *)n->m.t[i].data)[k] = 0.1 * tu_rand(&r);
}

static double loss_of(Net *n) {
    RunCtx c = {n->arena, n->slots, 0.0, 5, 3, NULL, 0};
    assert_int_equal(backend_ref64.run(NULL, &n->p, &c), 0);
    return *(double *)rt_model_find(&n->m, "loss")->data;
}

static void net_close(Net *n) {
    program_free(&n->p);
    rt_model_free(&n->m);
    free(n->slots);
    free(n->arena);
}

/* Checks up to `sample` elements of every parameter. */
static void gradcheck(const char *src, int size, int sample) {
    Net n;
    net_open(&n, src, size);
    loss_of(&n);
    int checked = 0;
    for (int i = 0; i < n.m.n; i++) {
        RtTensor *t = &n.m.t[i];
        if (t->kind != SLOT_PARAM) continue;
        char gname[300];
        snprintf(gname, sizeof gname, "%s.grad", t->name);
        RtTensor *gt = rt_model_find(&n.m, gname);
        assert_non_null(gt);
        int64_t cnt = t->bytes / 8;
        double *an = malloc((size_t)t->bytes);
        loss_of(&n);
        memcpy(an, gt->data, (size_t)t->bytes);
        int64_t stride = cnt > sample ? cnt / sample : 1;
        for (int64_t k = 0; k < cnt; k += stride) {
            double *w = (double *)t->data + k, w0 = *w, h = 1e-6;
            *w = w0 + h;
            double lp = loss_of(&n);
            *w = w0 - h;
            double lm = loss_of(&n);
            *w = w0;
            double fd = (lp - lm) / (2 * h), tol = 1e-5 * fmax(fabs(fd), fabs(an[k])) + 1e-7;
            if (fabs(fd - an[k]) > tol) {
                print_error("%s[%lld]: autodiff %.10g, finite difference %.10g\n", t->name, (long long)k, an[k], fd);
                fail();
            }
            checked++;
        }
        free(an);
    }
    assert_true(checked > 0);
    net_close(&n);
}

/* conv (bias), relu, max pool, flatten, linear, softmax cross-entropy */
static void test_conv_relu_maxpool_linear(void **st) {
    (void)st;
    gradcheck("train { resize = 9 }\n"
              "net { x = x |> conv(4, 3, pad = 1) |> relu |> maxpool(3, stride = 2, pad = 1)\n"
              "      return x |> flatten |> linear(3) }", 9, 40);
}

/* strided conv without padding, sigmoid, average pool, linear without bias */
static void test_sigmoid_avgpool_stride(void **st) {
    (void)st;
    gradcheck("train { resize = 11 }\n"
              "net { x = x |> conv(3, 5, stride = 2, pad = 2, bias = false) |> sigmoid |> avgpool(2, stride = 2)\n"
              "      return x |> flatten |> linear(3, bias = false) }", 11, 40);
}

/* batch norm over channels and over features, in training mode */
static void test_batchnorm(void **st) {
    (void)st;
    gradcheck("train { resize = 6 }\n"
              "net { x = x |> conv(4, 3) |> batchnorm |> relu |> flatten\n"
              "      return x |> linear(5) |> batchnorm |> sigmoid |> linear(3) }", 6, 40);
}

/* residual add with fan-out, global average pool */
static void test_residual(void **st) {
    (void)st;
    gradcheck("train { resize = 6 }\n"
              "net { x = x |> conv(4, 3, pad = 1)\n"
              "      y = x |> batchnorm |> relu |> conv(4, 3, pad = 1)\n"
              "      s = x |> conv(4, 1)\n"
              "      x = relu(y + s + x)\n"
              "      return x |> global_avgpool |> flatten |> linear(3) }", 6, 30);
}

/* dense concatenations (a value used by several concats), global max pool */
static void test_concat(void **st) {
    (void)st;
    gradcheck("train { resize = 5 }\n"
              "block dense(n, g) { for i in 0..n { x = concat(x, x |> batchnorm |> relu |> conv(g, 3, pad = 1)) }\n"
              "                    return x }\n"
              "net { x = x |> conv(3, 1) |> dense(3, 2)\n"
              "      return x |> global_maxpool |> flatten |> linear(3) }", 5, 30);
}

/* Inception-style branches joined by concat, with a max pool branch */
static void test_branches(void **st) {
    (void)st;
    gradcheck("train { resize = 6 }\n"
              "net { x = x |> conv(3, 1)\n"
              "      a = x |> conv(2, 1) |> relu\n"
              "      b = x |> conv(2, 3, pad = 1) |> relu\n"
              "      c = x |> maxpool(3, stride = 1, pad = 1) |> conv(2, 1) |> relu\n"
              "      return concat(a, b, c) |> avgpool(2) |> flatten |> linear(3) }", 6, 30);
}

/* dropout in training mode: the mask is fixed by (seed, stream, step) */
static void test_dropout(void **st) {
    (void)st;
    gradcheck("train { resize = 4 }\n"
              "net { x = x |> flatten |> linear(8) |> relu |> dropout(0.5) |> linear(6) |> relu |> dropout(0.3)\n"
              "      return x |> linear(3) }", 4, 40);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_relu_maxpool_linear),
        cmocka_unit_test(test_sigmoid_avgpool_stride),
        cmocka_unit_test(test_batchnorm),
        cmocka_unit_test(test_residual),
        cmocka_unit_test(test_concat),
        cmocka_unit_test(test_branches),
        cmocka_unit_test(test_dropout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
