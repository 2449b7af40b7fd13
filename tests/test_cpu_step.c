/* test_cpu_step.c - whole training and eval steps of the seed networks on the
 * cpu backend against the ref backend: same weights, same batch, every slot
 * (logits, loss, gradients, weights after SGD, running statistics) compared
 * afterwards, normwise relative tolerance 1e-3 per tensor (a full step
 * chains many fp32 reductions done in another order). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/backend.h"
#include "codegen/cpu/cpu.h"
#include "runtime/pool.h"
#include "testutil.h"

static void **alloc_slots(const Program *p, uint64_t *rs) {
    void **s = calloc((size_t)p->nslots, sizeof(void *));
    for (int i = 0; i < p->nslots; i++) {
        size_t b = ((size_t)p->slots[i].bytes + 63) / 64 * 64 + 64;
        s[i] = aligned_alloc(64, b);
        float *f = s[i];
        int64_t n = p->slots[i].bytes / 4;
        for (int64_t j = 0; j < n; j++) {
            double r = tu_rand(rs);
            if (p->slots[i].kind == SLOT_LABELS) ((int32_t *)f)[j] = (int32_t)((r + 1) * 5) % 10;
            else if (p->slots[i].kind == SLOT_STATE && strstr(p->slots[i].name, "var")) f[j] = (float)(1.5 + r);
            else if (p->slots[i].kind == SLOT_PARAM) f[j] = (float)(0.2 * r);
            else f[j] = (float)r;
        }
    }
    return s;
}

static void step_model(const char *model, IrMode mode, int64_t batch, int resize) {
    Program p;
    char path[512];
    snprintf(path, sizeof path, "%s/models/%s.net", NETC_SOURCE_DIR, model);
    assert_int_equal(tu_program(path, mode, batch, resize, 4, &p), 0);
    uint64_t rs = 99;
    void **a = alloc_slots(&p, &rs);
    rs = 99;
    void **b = alloc_slots(&p, &rs);
    void *arena_a = aligned_alloc(64, (size_t)(p.arena_bytes + 64)), *arena_b = aligned_alloc(64, (size_t)(p.arena_bytes + 64));
    Diag d;
    diag_init(&d, model, NULL, 0, stderr);
    BackendOptions o = {2, 3, 0};
    void *sa, *sb;
    assert_int_equal(backend_ref.compile(&p, &o, &sa, &d), 0);
    assert_int_equal(backend_cpu.compile(&p, &o, &sb, &d), 0);
    ThreadPool *pool = rt_pool_new(2);
    RunCtx ra = {arena_a, a, 0.05, 1, 0, NULL}, rb = {arena_b, b, 0.05, 1, 0, pool};
    backend_ref.run(sa, &p, &ra);
    backend_cpu.run(sb, &p, &rb);
    int bad = 0;
    for (int i = 0; i < p.nslots; i++) {
        if (p.slots[i].kind == SLOT_LABELS) continue;
        int64_t n = p.slots[i].bytes / 4;
        const float *x = a[i], *y = b[i];
        double mx = 1e-2, err = 0;
        for (int64_t j = 0; j < n; j++) mx = fmax(mx, fabs(x[j]));
        for (int64_t j = 0; j < n; j++) err = fmax(err, fabs((double)x[j] - y[j]));
        if (!(err <= 1e-3 * mx)) {
            fprintf(stderr, "%s %s: slot %s: max error %g, scale %g\n", model, mode == IR_TRAIN ? "train" : "eval",
                    p.slots[i].name, err, mx);
            bad = 1;
        }
    }
    backend_cpu.free(sb);
    backend_ref.free(sa);
    rt_pool_free(pool);
    for (int i = 0; i < p.nslots; i++) free(a[i]), free(b[i]);
    free(a);
    free(b);
    free(arena_a);
    free(arena_b);
    program_free(&p);
    assert_false(bad);
}

static void test_lenet(void **s) { (void)s; step_model("lenet_bn", IR_TRAIN, 6, 28); step_model("lenet_bn", IR_EVAL, 6, 28); }
/* Batch-norm layers over few values amplify rounding differences, so the
 * deeper networks run at batch 4 and a resolution where the last stage is
 * still a few pixels wide. */
static void test_resnet(void **s) { (void)s; step_model("resnet18", IR_TRAIN, 4, 64); step_model("resnet18", IR_EVAL, 4, 64); }
static void test_densenet(void **s) { (void)s; step_model("densenet", IR_TRAIN, 4, 64); }
static void test_googlenet(void **s) { (void)s; step_model("googlenet", IR_TRAIN, 2, 96); }
/* AlexNet, VGG and NiN only build at 224 (their first linear layer says its
 * input width); batch 2 keeps the ref side to seconds. */
static void test_alexnet(void **s) { (void)s; step_model("alexnet", IR_TRAIN, 2, 224); }
static void test_vgg(void **s) { (void)s; step_model("vgg11", IR_TRAIN, 2, 224); }
static void test_nin(void **s) { (void)s; step_model("nin", IR_TRAIN, 2, 224); step_model("nin", IR_EVAL, 2, 224); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lenet), cmocka_unit_test(test_resnet), cmocka_unit_test(test_densenet),
        cmocka_unit_test(test_googlenet), /* slow on ref: about a minute */
        cmocka_unit_test(test_alexnet), cmocka_unit_test(test_vgg), cmocka_unit_test(test_nin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
