/* test_fuse.c - the fusion pass (passes/fuse.c).
 *
 *  - which kernels it forms on the seven networks, train and eval, counted
 *    per pattern against counts read off the architectures (comments give
 *    the count of each);
 *  - every pattern switches off on its own (--fuse), and `none` leaves one
 *    node per kernel;
 *  - the order it leaves is legal: every node after the producers of its
 *    inputs, every node exactly once, no effect (SGD) moved across another
 *    node that reads what it writes;
 *  - results do not depend on it: a training step of ResNet-18, DenseNet
 *    and LeNet-BN fused and unfused gives the same bits on ref (and on cpu
 *    when built with LLVM). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

#include "codegen/backend.h"
#include "base/pool.h"
#include "testutil.h"
#ifdef NETC_HAVE_LLVM
#include "codegen/cpu/cpu.h"
#endif

static int program_of(const char *model, IrMode mode, int64_t batch, int resize, const FuseOptions *fo, Program *p) {
    IrGraph g;
    char *src = NULL, path[256];
    snprintf(path, sizeof path, "models/%s.net", model);
    if (tu_build(path, mode, &g, &src)) return -1;
    if (resize > 0)
        for (int i = 0; i < g.nnodes; i++)
            if (g.nodes[i].op == IR_OP_INPUT) g.nodes[i].attr.input.h = g.nodes[i].attr.input.w = resize;
    Diag d;
    diag_init(&d, path, src, strlen(src), stderr);
    PipelineOptions po = {mode, batch, 4, 1, NULL, NULL, fo, tu_plan, 0, 0};
    int rc = pass_pipeline(&g, &po, p, &d);
    ir_free(&g);
    free(src);
    return rc;
}

static void count(const Program *p, int *c) {
    memset(c, 0, sizeof(int) * FUSE_COUNT);
    for (int k = 0; k < p->nkernels; k++) c[p->kernels[k].pattern]++;
}

/* Every node once; each after its inputs' producers; nodes within a kernel
 * chained (each reads the one before); an SGD's parameter read by no node
 * after it.  Returns 0, or 1 with the failure printed. */
static int check_order(const Program *p) {
    const IrGraph *g = &p->g;
    int *at = calloc((size_t)g->nnodes, sizeof(int)), t = 0, bad = 0;
    for (int i = 0; i < g->nnodes; i++) at[i] = -1;
    for (int k = 0; k < p->nkernels && !bad; k++)
        for (int j = 0; j < p->kernels[k].nnodes && !bad; j++) {
            int id = p->kernels[k].nodes[j];
            if (at[id] >= 0) {
                fprintf(stderr, "node %d scheduled twice\n", id);
                bad = 1;
            }
            at[id] = t++;
        }
    for (int i = 0; i < g->nnodes && !bad; i++) {
        const IrNode *n = ir_node(g, i);
        if (ir_info(n->op)->flags & IR_F_LEAF) continue;
        if (at[i] < 0) {
            fprintf(stderr, "node %d (%s) not scheduled\n", i, ir_info(n->op)->name);
            bad = 1;
        }
        for (int k = 0; k < n->nin && !bad; k++) {
            int src = ir_value(g, n->in[k])->node;
            if (!(ir_info(ir_node(g, src)->op)->flags & IR_F_LEAF) && !(at[src] < at[i])) {
                fprintf(stderr, "%s %s runs before the %s that makes its input %d\n", ir_info(n->op)->name,
                        n->name ? n->name : "", ir_info(ir_node(g, src)->op)->name, k);
                bad = 1;
            }
        }
        if (n->op == IR_OP_SGD)   /* no one reads the weight after it changes */
            for (int r = 0; r < g->nnodes && !bad; r++) {
                const IrNode *m = ir_node(g, r);
                for (int k = 0; k < m->nin; k++)
                    if (r != i && m->in[k] == n->in[0] && at[r] > at[i]) {
                        fprintf(stderr, "%s reads %s after its SGD\n", ir_info(m->op)->name, ir_value(g, n->in[0])->name);
                        bad = 1;
                    }
            }
    }
    for (int k = 0; k < p->nkernels && !bad; k++)
        for (int j = 1; j < p->kernels[k].nnodes; j++) {
            const IrNode *a = ir_node(g, p->kernels[k].nodes[j - 1]), *b = ir_node(g, p->kernels[k].nodes[j]);
            int chained = 0;
            for (int x = 0; x < b->nin; x++) chained |= b->in[x] == a->out[0];
            if (!chained) {
                fprintf(stderr, "kernel %d: %s does not read the %s before it\n", k, ir_info(b->op)->name,
                        ir_info(a->op)->name);
                bad = 1;
            }
        }
    free(at);
    return bad;
}

typedef struct {
    const char *model;
    IrMode mode;
    int kernels;            /* all kernels, fused or not */
    int want[FUSE_COUNT];
} Expect;

/* Counts read off the architectures:
 *  ResNet-18: 17 batch norms, each after a conv; 9 of them then relu (the
 *  stem, every residual's first), 8 then add -> relu (every residual's
 *  second); a relu_bwd -> batchnorm_bwd for each of the 17 relus; eval:
 *  the 17 folded.  DenseNet: the stem's conv -> bn -> relu; 16 conv blocks
 *  and 3 transitions bn -> relu -> conv; the final bn -> relu; 21 relu
 *  gradients into batch norms, 16 of them (the dense layers') then added
 *  to the concat's gradient slice in the same kernel.  LeNet-BN: 4 bn -> sigmoid.  GoogLeNet: 57
 *  convs, all but b2's 3x3 followed by relu.  AlexNet: 5 convs and 2 linear
 *  layers before a relu, and in training the gradients of its 2 dropouts
 *  chained with their relus'.  VGG-11: 8 convs and 2 linear, likewise.
 *  NiN: 12 convs.  The max pools after a relu (AlexNet 3, VGG-11 5, NiN 3,
 *  GoogLeNet's first; ResNet's stem pool follows a batch norm's relu,
 *  which relu_bn_bwd takes): their gradient and the relu's in one kernel
 *  (pool_relu_bwd).  The totals are what the schedule has left (golden: a
 *  lost fusion, or a new kernel, changes them). */
static const Expect expect[] = {
    {"resnet18", IR_TRAIN, 156, {[FUSE_CONV_BN_RELU] = 9, [FUSE_CONV_BN_ADD_RELU] = 8, [FUSE_RELU_BN_BWD] = 17}},
    {"resnet18", IR_EVAL, 25, {[FUSE_BN_FOLD] = 17}},
    {"densenet", IR_TRAIN, 211, {[FUSE_CONV_BN_RELU] = 1, [FUSE_BN_RELU_CONV] = 19, [FUSE_BN_ACT] = 1, [FUSE_RELU_BN_BWD] = 21}},
    {"densenet", IR_EVAL, 45, {[FUSE_BN_FOLD] = 1, [FUSE_BN_RELU_CONV] = 19, [FUSE_BN_ACT] = 1}},
    {"lenet_bn", IR_TRAIN, 52, {[FUSE_BN_ACT] = 4}},
    {"lenet_bn", IR_EVAL, 9, {[FUSE_BN_FOLD] = 4}},
    {"googlenet", IR_TRAIN, 430, {[FUSE_CONV_RELU] = 56, [FUSE_POOL_RELU_BWD] = 1}},
    {"googlenet", IR_EVAL, 83, {[FUSE_CONV_RELU] = 56}},
    {"alexnet", IR_TRAIN, 55, {[FUSE_CONV_RELU] = 7, [FUSE_ELEMENTWISE] = 2, [FUSE_POOL_RELU_BWD] = 3}},
    {"alexnet", IR_EVAL, 15, {[FUSE_CONV_RELU] = 7}},
    {"vgg11", IR_TRAIN, 75, {[FUSE_CONV_RELU] = 10, [FUSE_ELEMENTWISE] = 2, [FUSE_POOL_RELU_BWD] = 5}},
    {"vgg11", IR_EVAL, 20, {[FUSE_CONV_RELU] = 10}},
    {"nin", IR_TRAIN, 82, {[FUSE_CONV_RELU] = 12, [FUSE_POOL_RELU_BWD] = 3}},
    {"extra/relu_pools", IR_TRAIN, 29, {[FUSE_CONV_RELU] = 3, [FUSE_POOL_RELU_BWD] = 3}},
    {"nin", IR_EVAL, 19, {[FUSE_CONV_RELU] = 12}},
};

/* The fusion pass's counts with every concat copying (the memory plan's
 * views take kernels out: test_views counts those). */
static const PlanOptions copy_plan = {1, 0};

static void test_counts(void **st) {
    (void)st;
    tu_plan = &copy_plan;
    for (size_t e = 0; e < sizeof expect / sizeof expect[0]; e++) {
        Program p;
        int res = !strcmp(expect[e].model, "alexnet") || !strcmp(expect[e].model, "vgg11") || !strcmp(expect[e].model, "nin")
                      ? 224 : 0;
        assert_int_equal(program_of(expect[e].model, expect[e].mode, 2, res, NULL, &p), 0);
        int c[FUSE_COUNT];
        count(&p, c);
        for (int k = 1; k < FUSE_COUNT; k++)
            if (c[k] != expect[e].want[k]) {
                print_error("%s %s: %d %s kernels, expected %d\n", expect[e].model,
                            expect[e].mode == IR_TRAIN ? "train" : "eval", c[k], fuse_name(k), expect[e].want[k]);
                fail();
            }
        if (p.nkernels != expect[e].kernels) {
            print_error("%s %s: %d kernels, expected %d\n", expect[e].model,
                        expect[e].mode == IR_TRAIN ? "train" : "eval", p.nkernels, expect[e].kernels);
            fail();
        }
        assert_int_equal(check_order(&p), 0);
        program_free(&p);
    }
    tu_plan = NULL;
}

/* Each pattern alone, and none: only that pattern forms, at least as often
 * as with all on (alone it may take nodes another would have: ResNet's
 * bn -> relu -> conv where conv -> bn -> relu came first), and the order
 * stays legal. */
static void test_switches(void **st) {
    (void)st;
    tu_plan = &copy_plan;
    const char *models[] = {"resnet18", "densenet", "lenet_bn"};
    for (size_t m = 0; m < 3; m++)
        for (int mode = IR_TRAIN; mode <= IR_EVAL; mode++) {
            Program all;
            assert_int_equal(program_of(models[m], (IrMode)mode, 2, 0, NULL, &all), 0);
            int ca[FUSE_COUNT], nnodes = 0;
            count(&all, ca);
            for (int k = 0; k < all.nkernels; k++) nnodes += all.kernels[k].nnodes;
            FuseOptions none;
            char bad[64];
            assert_int_equal(fuse_parse("none", &none, bad, sizeof bad), 0);
            Program p;
            assert_int_equal(program_of(models[m], (IrMode)mode, 2, 0, &none, &p), 0);
            assert_int_equal(p.nkernels, nnodes);
            for (int k = 0; k < p.nkernels; k++) assert_int_equal(p.kernels[k].pattern, FUSE_NONE);
            program_free(&p);
            for (int k = 1; k < FUSE_COUNT; k++) {
                FuseOptions one;
                assert_int_equal(fuse_parse(fuse_name(k), &one, bad, sizeof bad), 0);
                assert_int_equal(program_of(models[m], (IrMode)mode, 2, 0, &one, &p), 0);
                int c[FUSE_COUNT];
                count(&p, c);
                for (int j = 1; j < FUSE_COUNT; j++)
                    if (j == k ? c[j] < ca[k] : c[j] != 0) {
                        print_error("%s, --fuse %s: %d %s kernels\n", models[m], fuse_name(k), c[j], fuse_name(j));
                        fail();
                    }
                assert_int_equal(check_order(&p), 0);
                program_free(&p);
            }
            program_free(&all);
        }
    FuseOptions o;
    char bad[64];
    assert_int_equal(fuse_parse("conv_bn_relu,nosuch", &o, bad, sizeof bad), -1);
    assert_string_equal(bad, "nosuch");
    tu_plan = NULL;
}

/* One training step from the slots of stream 5; every slot afterwards. */
static void **step(const Backend *be, const Program *p, ThreadPool *pool) {
    void **s = tu_slots(p, 5);
    assert_int_equal(tu_step(be, NULL, p, s, pool), 0);
    return s;
}

static void same_bits(const Backend *be, const char *model, int resize) {
    Program a, b;
    FuseOptions none = {~0u};
    assert_int_equal(program_of(model, IR_TRAIN, 2, resize, NULL, &a), 0);
    assert_int_equal(program_of(model, IR_TRAIN, 2, resize, &none, &b), 0);
    assert_true(a.nkernels < b.nkernels);
    assert_int_equal(a.nslots, b.nslots);
    ThreadPool *pool = be == &backend_ref ? NULL : rt_pool_new(2);
    void **x = step(be, &a, pool), **y = step(be, &b, pool);
    for (int i = 0; i < a.nslots; i++) {
        assert_string_equal(a.slots[i].name, b.slots[i].name);
        if (memcmp(x[i], y[i], (size_t)a.slots[i].bytes)) {
            print_error("%s on %s: slot %s differs fused and unfused\n", model, be->name, a.slots[i].name);
            fail();
        }
        free(x[i]), free(y[i]);
    }
    free(x), free(y);
    if (pool) rt_pool_free(pool);
    program_free(&a), program_free(&b);
}

/* Eval with batch norm folded into the conv and linear weights against
 * eval unfused (the ref's arithmetic): every logit within 1e-5 of the
 * unfused one, relative to the largest logit. */
static void folded_logits(const char *model, int resize) {
    Program a, b;
    FuseOptions none = {~0u};
    assert_int_equal(program_of(model, IR_EVAL, 3, resize, NULL, &a), 0);
    assert_int_equal(program_of(model, IR_EVAL, 3, resize, &none, &b), 0);
    int folds = 0;
    for (int k = 0; k < a.nkernels; k++) folds += a.kernels[k].pattern == FUSE_BN_FOLD;
    assert_true(folds > 0);
    ThreadPool *pool = rt_pool_new(2);
    void **x = tu_slots(&a, 9), **y = tu_slots(&b, 9);
    assert_int_equal(tu_step(&backend_cpu, NULL, &a, x, pool), 0);
    assert_int_equal(tu_step(&backend_cpu, NULL, &b, y, pool), 0);
    for (int i = 0; i < a.nslots; i++) {
        if (a.slots[i].kind != SLOT_LOGITS) continue;
        const float *fa = x[i], *fb = y[i];
        int64_t n = a.slots[i].bytes / 4;
        double big = 0, worst = 0;
        for (int64_t j = 0; j < n; j++) big = fmax(big, fabs(fb[j]));
        for (int64_t j = 0; j < n; j++) worst = fmax(worst, fabs(fa[j] - fb[j]) / big);
        if (!(worst <= 1e-5)) {
            print_error("%s eval: folded logits differ by %.3g of the largest\n", model, worst);
            fail();
        }
    }
    tu_slots_free(&a, x), tu_slots_free(&b, y);
    rt_pool_free(pool);
    program_free(&a), program_free(&b);
}

static void test_same_results(void **st) {
    (void)st;
    same_bits(&backend_ref, "lenet_bn", 0);
    same_bits(&backend_ref, "resnet18", 32);
    same_bits(&backend_ref, "densenet", 32);
    same_bits(&backend_ref, "extra/relu_pools", 0);
#ifdef NETC_HAVE_LLVM
    same_bits(&backend_cpu, "lenet_bn", 0);
    same_bits(&backend_cpu, "alexnet", 0);
    same_bits(&backend_cpu, "resnet18", 32);
    same_bits(&backend_cpu, "densenet", 32);
    same_bits(&backend_cpu, "extra/relu_pools", 0);
    /* the groups node by node, their inner values in memory of their own */
    setenv("NETC_CPU_NODE_BY_NODE", "1", 1);
    same_bits(&backend_cpu, "resnet18", 32);
    same_bits(&backend_cpu, "densenet", 32);
    unsetenv("NETC_CPU_NODE_BY_NODE");
    folded_logits("lenet_bn", 0);
    folded_logits("resnet18", 32);
    folded_logits("densenet", 32);
    folded_logits("extra/resnet34", 40);
#endif
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts), cmocka_unit_test(test_switches), cmocka_unit_test(test_same_results),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
