/* test_views.c - the memory plan's views (passes/views.c): concat inputs in
 * their slots, gradient slices in place, accumulations over them in place.
 *
 *   - the kernels left (golden): DenseNet keeps no concat and no slice
 *     kernel; the plan checker passes on every network with views;
 *   - planted errors in a plan (a part moved by one channel onto its
 *     neighbour, a slice view moved, a read after an in-place write) fail
 *     the checker;
 *   - --recompute bn-relu: the same bits as keeping the outputs, in a
 *     smaller arena;
 *   - a training step with views is the same bits as with every concat
 *     copying (--concat copy), on ref and on the cpu backend, for DenseNet,
 *     GoogLeNet, DenseNet-121 and a DenseNet at odd channel counts, train
 *     and eval. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/backend.h"
#include "base/pool.h"
#include "testutil.h"

#ifdef NETC_HAVE_LLVM
extern const Backend backend_cpu;
#endif

static const PlanOptions copy_plan = {1, 0};

static void plan(const char *model, IrMode mode, int64_t batch, int resize, const PlanOptions *o, Program *p) {
    char path[512];
    snprintf(path, sizeof path, "%s/models/%s.net", NETC_SOURCE_DIR, model);
    tu_plan = o;
    assert_int_equal(tu_program(path, mode, batch, resize, 4, p), 0);
    tu_plan = NULL;
}

/* Kernels that are one node of op: copies (a concat's, a slice's) or an
 * accumulation alone. */
static int count_op(const Program *p, IrOp op) {
    int c = 0;
    for (int k = 0; k < p->nkernels; k++)
        c += p->kernels[k].nnodes == 1 && ir_node(&p->g, p->kernels[k].nodes[0])->op == op;
    return c;
}

typedef struct {
    const char *model;
    int resize;
    int concat, slice, accum;   /* kernels holding one, training step */
} Expect;

/* DenseNet: every concat input in place (16 concats), every slice a view;
 * the 16 accumulations of a dense layer's input gradient add the batch
 * norm's gradient into the slice as the batch norm's gradient kernel makes
 * it (no kernel of their own).  GoogLeNet: its branches' relus, written by
 * their convs' epilogues, in place (9 concats), the 36 slices views; its 9
 * accumulations (of the four branches' input gradients) stay.  ResNet-18:
 * one accumulation alone (the others start relu_bn_bwd kernels; no
 * views). */
static const Expect expect[] = {
    {"densenet", 32, 0, 0, 0},
    {"extra/densenet_odd", 0, 0, 0, 0},
    {"googlenet", 32, 0, 0, 9},
    {"resnet18", 32, 0, 0, 1},
    {"lenet_bn", 0, 0, 0, 0},
};

static void test_kernels_left(void **st) {
    (void)st;
    for (size_t e = 0; e < sizeof expect / sizeof expect[0]; e++) {
        Program p, q;
        plan(expect[e].model, IR_TRAIN, 2, expect[e].resize, NULL, &p);
        plan(expect[e].model, IR_TRAIN, 2, expect[e].resize, &copy_plan, &q);
        int got[3] = {count_op(&p, IR_OP_CONCAT), count_op(&p, IR_OP_SLICE), count_op(&p, IR_OP_ACCUM)};
        int want[3] = {expect[e].concat, expect[e].slice, expect[e].accum};
        for (int i = 0; i < 3; i++)
            if (got[i] != want[i]) {
                print_error("%s: %d %s kernels, expected %d\n", expect[e].model, got[i],
                            (const char *[]){"concat", "slice", "accum"}[i], want[i]);
                fail();
            }
        assert_int_equal(program_check_plan(&p, stderr), 0);
        assert_true(p.arena_bytes <= q.arena_bytes);
        assert_int_equal(p.naive_bytes, q.naive_bytes);
        program_free(&p), program_free(&q);
    }
    const char *all[] = {"alexnet", "vgg11", "nin", "googlenet", "lenet_bn", "resnet18", "densenet",
                         "extra/densenet121", "extra/densenet_odd"};
    for (size_t m = 0; m < sizeof all / sizeof all[0]; m++)
        for (int mode = IR_TRAIN; mode <= IR_EVAL; mode++) {
            Program p;
            int res = m < 3 ? 224 : m == 4 ? 0 : 32;
            plan(all[m], (IrMode)mode, 2, res, NULL, &p);
            assert_int_equal(program_check_plan(&p, stderr), 0);
            program_free(&p);
        }
}

/* The first value whose view is made by node op (the producer of a part,
 * a slice view, an in-place accumulation), or -1. */
static int view_made_by(const Program *p, IrOp op, int skip) {
    for (int v = 0; v < p->g.nvalues; v++)
        if (p->buf[v].kind == BUF_VIEW && ir_node(&p->g, ir_value(&p->g, v)->node)->op == op && skip-- == 0) return v;
    return -1;
}

static void test_planted(void **st) {
    (void)st;
    FILE *null = fopen("/dev/null", "w");
    Program p;
    plan("densenet", IR_TRAIN, 2, 32, NULL, &p);
    assert_int_equal(program_check_plan(&p, stderr), 0);
    /* a conv's part moved one channel down, onto its neighbour's */
    int v = view_made_by(&p, IR_OP_CONV2D, 1);
    assert_true(v >= 0);
    const IrType *t = ir_type(&p.g, v);
    int64_t hw = t->d[2] * t->d[3];
    p.buf[v].voff -= hw;
    assert_int_equal(program_check_plan(&p, null), -1);
    p.buf[v].voff += hw;
    /* a slice view one channel off */
    for (int k = 0; (v = view_made_by(&p, IR_OP_SLICE, k)) >= 0 && p.buf[v].voff == 0; k++) continue;
    assert_true(v >= 0);
    p.buf[v].voff -= ir_type(&p.g, v)->d[2] * ir_type(&p.g, v)->d[3];
    assert_int_equal(program_check_plan(&p, null), -1);
    p.buf[v].voff += ir_type(&p.g, v)->d[2] * ir_type(&p.g, v)->d[3];
    /* a part that runs past its root */
    v = view_made_by(&p, IR_OP_CONV2D, 0);
    p.buf[v].voff += 1000 * hw;
    assert_int_equal(program_check_plan(&p, null), -1);
    p.buf[v].voff -= 1000 * hw;
    assert_int_equal(program_check_plan(&p, stderr), 0);
    /* the input of an in-place accumulation read again after it: a later
     * kernel made to read it sees the sum */
    v = view_made_by(&p, IR_OP_ACCUM, 0);
    assert_true(v >= 0);
    int a = ir_node(&p.g, ir_value(&p.g, v)->node)->in[0], kv = -1;
    for (int k = 0; k < p.nkernels; k++)
        for (int j = 0; j < p.kernels[k].nnodes; j++)
            if (p.kernels[k].nodes[j] == ir_value(&p.g, v)->node) kv = k;
    assert_true(kv >= 0 && kv + 1 < p.nkernels);
    IrNode *n = ir_node(&p.g, p.kernels[kv + 1].nodes[0]);
    int saved = n->in[0];
    n->in[0] = a;
    assert_int_equal(program_check_plan(&p, null), -1);
    n->in[0] = saved;
    assert_int_equal(program_check_plan(&p, stderr), 0);
    program_free(&p);
    fclose(null);
}

/* One step (train, or eval), views against --concat copy: every slot the
 * same bits. */
static void same_bits(const Backend *be, const char *model, IrMode mode, int64_t batch, int resize) {
    Program a, b;
    plan(model, mode, batch, resize, NULL, &a);
    plan(model, mode, batch, resize, &copy_plan, &b);
    assert_int_equal(a.nslots, b.nslots);
    ThreadPool *pool = be == &backend_ref ? NULL : rt_pool_new(2);
    void **x = tu_slots(&a, 7), **y = tu_slots(&b, 7);
    assert_int_equal(tu_step(be, NULL, &a, x, pool), 0);
    assert_int_equal(tu_step(be, NULL, &b, y, pool), 0);
    for (int i = 0; i < a.nslots; i++) {
        assert_string_equal(a.slots[i].name, b.slots[i].name);
        if (memcmp(x[i], y[i], (size_t)a.slots[i].bytes)) {
            print_error("%s %s on %s: slot %s differs with views and with copies\n", model,
                        mode == IR_TRAIN ? "train" : "eval", be->name, a.slots[i].name);
            fail();
        }
    }
    tu_slots_free(&a, x), tu_slots_free(&b, y);
    if (pool) rt_pool_free(pool);
    program_free(&a), program_free(&b);
}

/* --recompute bn-relu: the same bits as keeping the outputs, in a smaller
 * arena (DenseNet: every dense layer's relu output, and the stem's). */
static void recompute_bits(const Backend *be, const char *model, int64_t batch, int resize) {
    Program a, b;
    PlanOptions ro = {0, 1};
    plan(model, IR_TRAIN, batch, resize, &ro, &a);
    plan(model, IR_TRAIN, batch, resize, NULL, &b);
    assert_true(a.arena_bytes < b.arena_bytes);
    assert_int_equal(program_check_plan(&a, stderr), 0);
    ThreadPool *pool = be == &backend_ref ? NULL : rt_pool_new(2);
    void **x = tu_slots(&a, 7), **y = tu_slots(&b, 7);
    assert_int_equal(tu_step(be, NULL, &a, x, pool), 0);
    assert_int_equal(tu_step(be, NULL, &b, y, pool), 0);
    for (int i = 0; i < a.nslots; i++)
        if (memcmp(x[i], y[i], (size_t)a.slots[i].bytes)) {
            print_error("%s on %s: slot %s differs recomputed and kept\n", model, be->name, a.slots[i].name);
            fail();
        }
    tu_slots_free(&a, x), tu_slots_free(&b, y);
    if (pool) rt_pool_free(pool);
    program_free(&a), program_free(&b);
}

static void test_recompute(void **st) {
    (void)st;
    recompute_bits(&backend_ref, "extra/densenet_odd", 3, 0);
    recompute_bits(&backend_ref, "densenet", 2, 32);
#ifdef NETC_HAVE_LLVM
    recompute_bits(&backend_cpu, "extra/densenet_odd", 3, 0);
    recompute_bits(&backend_cpu, "densenet", 2, 32);
    recompute_bits(&backend_cpu, "resnet18", 2, 32);
    /* a stem pool large enough (25x25) for its gradient to make its input
     * plane by plane (bn_relu_pool_bwd; small planes take another path) */
    recompute_bits(&backend_cpu, "extra/densenet_odd", 2, 100);
#endif
    /* at the seed's batch and resolution: the arenas of bench/README */
    Program a, b, c;
    PlanOptions ro = {0, 1};
    plan("densenet", IR_TRAIN, 256, 96, &ro, &a);
    plan("densenet", IR_TRAIN, 256, 96, NULL, &b);
    plan("densenet", IR_TRAIN, 256, 96, &copy_plan, &c);
    assert_true(b.arena_bytes <= c.arena_bytes * 8 / 10);
    assert_true(a.arena_bytes <= c.arena_bytes * 4 / 10);
    program_free(&a), program_free(&b), program_free(&c);
}

static void test_same_bits(void **st) {
    (void)st;
    const Backend *bes[] = {&backend_ref,
#ifdef NETC_HAVE_LLVM
                            &backend_cpu,
#endif
    };
    for (size_t i = 0; i < sizeof bes / sizeof bes[0]; i++)
        for (int mode = IR_TRAIN; mode <= IR_EVAL; mode++) {
            same_bits(bes[i], "extra/densenet_odd", (IrMode)mode, 3, 0);
            same_bits(bes[i], "extra/densenet_odd", (IrMode)mode, 1, 0);
            same_bits(bes[i], "densenet", (IrMode)mode, 2, 32);
            same_bits(bes[i], "googlenet", (IrMode)mode, 2, 32);
        }
#ifdef NETC_HAVE_LLVM
    same_bits(&backend_cpu, "extra/densenet121", IR_TRAIN, 2, 32);
    setenv("NETC_CPU_NODE_BY_NODE", "1", 1);
    same_bits(&backend_cpu, "densenet", IR_TRAIN, 2, 32);
    unsetenv("NETC_CPU_NODE_BY_NODE");
#endif
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernels_left), cmocka_unit_test(test_planted), cmocka_unit_test(test_recompute),
        cmocka_unit_test(test_same_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
