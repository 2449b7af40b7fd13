/* test_cpu_step.c - whole training and eval steps of the seed networks on the
 * cpu backend, judged against a double-precision oracle (ref64).
 *
 * One step runs three times from the same weights and batch: on the cpu
 * backend (float, at every vector width this host can execute), on ref
 * (float) and on ref64 (double).  Every slot afterwards (logits, loss,
 * gradients, weights after SGD, running statistics) is compared with the
 * double result.  A full step chains many fp32 reductions, and a batch norm
 * over few values amplifies their rounding, so how close fp32 can get
 * depends on the tensor: ref's own distance from double measures that.  The
 * cpu result passes when
 *
 *     max|cpu - ref64| <= FACTOR * max(max|ref - ref64|, FLOOR * scale)
 *
 * per tensor, scale = max(max|ref64|, 1e-2), FACTOR = 8 (cpu sums in another
 * order, with FMA contraction and wider partial sums), FLOOR = 1e-6 (a few
 * fp32 ulps, for tensors where ref happens to round exactly). */
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
#include "base/pool.h"
#include "cpu_targets.h"
#include "testutil.h"


static const char *cpu_specs[TU_MAX_CPUS];
static int cpu_widths[TU_MAX_CPUS], ncpus;

/* Runs p once on backend be (cpu: at spec) from the slots of stream 99. */
static void **run_on(const Backend *be, const char *spec, const Program *p, ThreadPool *pool) {
    void **s = tu_slots(p, 99);
    assert_int_equal(tu_step(be, spec, p, s, pool), 0);
    return s;
}

static void step_model(const char *model, IrMode mode, int64_t batch, int resize) {
    Program p, p64;
    char path[512];
    snprintf(path, sizeof path, "%s/models/%s.net", NETC_SOURCE_DIR, model);
    assert_int_equal(tu_program(path, mode, batch, resize, 4, &p), 0);
    assert_int_equal(tu_program(path, mode, batch, resize, 8, &p64), 0);
    assert_int_equal(p.nslots, p64.nslots);
    for (int i = 0; i < p.nslots; i++) assert_string_equal(p.slots[i].name, p64.slots[i].name);
    ThreadPool *pool = rt_pool_new(2);
    void **r32 = run_on(&backend_ref, NULL, &p, NULL), **r64 = run_on(&backend_ref64, NULL, &p64, NULL);
    int bad = 0;
    for (int c = 0; c < ncpus; c++) {
        void **cpu = run_on(&backend_cpu, cpu_specs[c], &p, pool);
        double worst = 0;
        const char *worst_slot = "";
        for (int i = 0; i < p.nslots; i++) {
            if (p.slots[i].kind == SLOT_LABELS) continue;
            double e_cpu, e_ref, scale, ratio;
            if (!tu_judge(&p, &p64, r32, r64, cpu, i, &e_cpu, &e_ref, &scale, &ratio)) {
                fprintf(stderr, "%s %s, %d-wide: slot %s: cpu vs double %g, ref vs double %g, scale %g (allowed %g)\n",
                        model, mode == IR_TRAIN ? "train" : "eval", cpu_widths[c], p.slots[i].name, e_cpu, e_ref,
                        scale, TU_FACTOR * fmax(e_ref, TU_FLOOR * scale));
                bad = 1;
            }
            if (ratio > worst) worst = ratio, worst_slot = p.slots[i].name;
        }
        printf("%s %s, %d-wide: worst cpu/ref error against double %.2f (%s), allowed %d\n", model,
               mode == IR_TRAIN ? "train" : "eval", cpu_widths[c], worst, worst_slot, TU_FACTOR);
        tu_slots_free(&p, cpu);
    }
    rt_pool_free(pool);
    tu_slots_free(&p, r32);
    tu_slots_free(&p64, r64);
    program_free(&p);
    program_free(&p64);
    assert_false(bad);
}

static void test_lenet(void **s) { (void)s; step_model("lenet_bn", IR_TRAIN, 6, 28); step_model("lenet_bn", IR_EVAL, 6, 28); }
/* The deeper networks run at batch 4 and a resolution where the last stage
 * is still a few pixels wide. */
static void test_resnet(void **s) { (void)s; step_model("resnet18", IR_TRAIN, 4, 64); step_model("resnet18", IR_EVAL, 4, 64); }
static void test_densenet(void **s) { (void)s; step_model("densenet", IR_TRAIN, 4, 64); }
static void test_googlenet(void **s) { (void)s; step_model("googlenet", IR_TRAIN, 2, 96); }
/* AlexNet, VGG and NiN only build at 224 (their first linear layer says its
 * input width); batch 2 keeps the ref sides to seconds. */
static void test_alexnet(void **s) { (void)s; step_model("alexnet", IR_TRAIN, 2, 224); }
static void test_vgg(void **s) { (void)s; step_model("vgg11", IR_TRAIN, 2, 224); }
static void test_nin(void **s) { (void)s; step_model("nin", IR_TRAIN, 2, 224); step_model("nin", IR_EVAL, 2, 224); }
/* Beyond the seven (models/extra/): a deeper ResNet with bias-free convs and
 * projection shortcuts, trained a step, and DenseNet-121 in eval mode.  Its
 * training step is not judged this way: among its 58 layers' batch-norm +
 * ReLU outputs over 64 values per channel, some ReLU input lies within fp32
 * rounding of zero, so one summation order switches that element's
 * gradient and the difference flows into every layer before it (with three
 * random seeds the layers over the bound moved: a discontinuity, not a
 * kernel, which no per-tensor bound can tell apart). */
static void test_resnet34(void **s) { (void)s; step_model("extra/resnet34", IR_TRAIN, 4, 64); }
static void test_densenet121(void **s) { (void)s; step_model("extra/densenet121", IR_EVAL, 4, 64); }

int main(void) {
    ncpus = tu_cpu_targets(cpu_specs, cpu_widths);
    if (ncpus == 0) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lenet), cmocka_unit_test(test_resnet), cmocka_unit_test(test_densenet),
        cmocka_unit_test(test_googlenet), /* slow on ref: about a minute */
        cmocka_unit_test(test_alexnet), cmocka_unit_test(test_vgg), cmocka_unit_test(test_nin),
        cmocka_unit_test(test_resnet34), cmocka_unit_test(test_densenet121),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
