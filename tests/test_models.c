/* test_models.c - the seven seed networks: parameter counts equal to the
 * seed's PyTorch modules, output shapes, golden IR dumps, a valid training
 * graph and a valid memory plan for each; and the networks of models/extra.
 *
 * Golden files live in tests/golden/<model>.txt; after an intended change to
 * the dump, regenerate them with NETC_UPDATE_GOLDEN=1 and review the diff. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

typedef struct {
    const char *name;
    int64_t params;     /* sum of numel over the seed's module.parameters() */
} Model;

static const Model models[] = {
    {"alexnet", 46764746}, {"vgg11", 43093322}, {"nin", 1992166}, {"googlenet", 5977530},
    {"lenet_bn", 44878},   {"resnet18", 11178378}, {"densenet", 758226},
};

static void path_of(char *buf, size_t n, const char *name) { snprintf(buf, n, "models/%s.net", name); }

/* Builds models/<m->name>.net into *g (shapes inferred) and checks its
 * parameter count against m's. */
static void build_counted(const Model *m, IrGraph *g, char **src) {
    char path[256];
    path_of(path, sizeof path, m->name);
    assert_int_equal(tu_build(path, IR_TRAIN, g, src), 0);
    IrStats s;
    pass_stats(g, &s);
    if (s.params != m->params) {
        print_error("%s: %lld parameters, expected %lld\n", m->name, (long long)s.params, (long long)m->params);
        fail();
    }
}

static void test_param_counts(void **st) {
    (void)st;
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        IrGraph g;
        char *src = NULL;
        build_counted(&models[i], &g, &src);
        const IrType *t = ir_type(&g, g.logits);
        assert_int_equal(t->rank, 2);
        assert_true(t->batched);
        assert_int_equal(t->d[1], 10);
        assert_int_equal(ir_verify(&g, stderr), 0);
        ir_free(&g);
        free(src);
    }
}

static void test_golden_dumps(void **st) {
    (void)st;
    int update = getenv("NETC_UPDATE_GOLDEN") != NULL;
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        char path[256], gpath[256];
        path_of(path, sizeof path, models[i].name);
        snprintf(gpath, sizeof gpath, "tests/golden/%s.txt", models[i].name);
        IrGraph g;
        char *src = NULL, *text = NULL;
        size_t len = 0;
        assert_int_equal(tu_build(path, IR_TRAIN, &g, &src), 0);
        FILE *f = open_memstream(&text, &len);
        ir_dump(&g, f);
        fclose(f);
        if (update) {
            FILE *o = fopen(gpath, "wb");
            assert_non_null(o);
            fwrite(text, 1, len, o);
            fclose(o);
        }
        size_t glen;
        char *golden = tu_read(gpath, &glen);
        if (!golden) {
            print_error("missing %s (run with NETC_UPDATE_GOLDEN=1 to create it)\n", gpath);
            fail();
        }
        if (glen != len || memcmp(golden, text, len)) {
            size_t k = 0;
            while (k < len && k < glen && golden[k] == text[k]) k++;
            int line = 1;
            for (size_t j = 0; j < k; j++) line += text[j] == '\n';
            print_error("%s: dump differs from %s at line %d\n", models[i].name, gpath, line);
            fail();
        }
        free(golden);
        free(text);
        free(src);
        ir_free(&g);
    }
}

/* The training program of every model: the verifier passes after every pass,
 * every parameter has a gradient and an SGD update, and the memory plan
 * checker finds no two live buffers that overlap. */
static void test_training_programs(void **st) {
    (void)st;
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        char path[256];
        path_of(path, sizeof path, models[i].name);
        Program p;
        assert_int_equal(tu_program(path, IR_TRAIN, 2, 0, 4, &p), 0);
        int sgd = 0, params = 0, grads = 0;
        for (int n = 0; n < p.g.nnodes; n++) sgd += p.g.nodes[n].op == IR_OP_SGD;
        for (int s = 0; s < p.nslots; s++) {
            params += p.slots[s].kind == SLOT_PARAM;
            grads += p.slots[s].kind == SLOT_GRAD;
        }
        assert_int_equal(sgd, params);
        assert_int_equal(grads, params);
        assert_int_equal(ir_verify(&p.g, stderr), 0);
        assert_int_equal(program_check_plan(&p, stderr), 0);
        assert_true(p.arena_bytes <= p.naive_bytes);
        assert_true(p.arena_bytes > 0);
        program_free(&p);
        assert_int_equal(tu_program(path, IR_EVAL, 2, 0, 4, &p), 0);
        assert_int_equal(program_check_plan(&p, stderr), 0);
        program_free(&p);
    }
}

/* Networks beyond the seed's, written with lists and shape queries: their
 * parameter counts are torchvision's densenet121 and resnet34 with one input
 * channel and ten classes (7978856 and 21797672 for 3 channels and 1000
 * classes, less 64 * 2 * 7 * 7 in the first conv, with a 10-way head). */
static void test_extra_models(void **st) {
    (void)st;
    static const Model extra[] = { {"extra/densenet121", 6957834}, {"extra/resnet34", 21283530} };
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
        char path[256];
        path_of(path, sizeof path, extra[i].name);
        IrGraph g;
        char *src = NULL;
        build_counted(&extra[i], &g, &src);
        assert_int_equal(ir_type(&g, g.logits)->d[1], 10);
        assert_int_equal(ir_verify(&g, stderr), 0);
        ir_free(&g);
        free(src);
        Program p;
        assert_int_equal(tu_program(path, IR_TRAIN, 2, 0, 4, &p), 0);
        assert_int_equal(program_check_plan(&p, stderr), 0);
        program_free(&p);
    }
}

/* The plan checker must catch an overlap: move one live buffer onto another. */
static void test_plan_checker_catches_overlap(void **st) {
    (void)st;
    Program p;
    assert_int_equal(tu_program("models/lenet_bn.net", IR_TRAIN, 4, 0, 4, &p), 0);
    int a = -1, b = -1;
    for (int v = 0; v < p.g.nvalues && b < 0; v++) {
        if (p.buf[v].kind != BUF_ARENA) continue;
        if (a < 0) { a = v; continue; }
        const BufPlan *x = &p.buf[a], *y = &p.buf[v];
        if (!(x->last < y->first || y->last < x->first)) b = v;
    }
    assert_true(a >= 0 && b >= 0);
    p.buf[b].offset = p.buf[a].offset;
    FILE *null = fopen("/dev/null", "w");
    assert_int_equal(program_check_plan(&p, null), -1);
    fclose(null);
    program_free(&p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_param_counts),
        cmocka_unit_test(test_golden_dumps),
        cmocka_unit_test(test_training_programs),
        cmocka_unit_test(test_plan_checker_catches_overlap),
        cmocka_unit_test(test_extra_models),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
