/* test_cuda_emu.c - the cuda backend's generated CUDA C on the emulated
 * device (codegen/cuda/emu.h), against the ref backend.
 *
 * The source cg_cuda_source gives for a program is compiled for the host by
 * the C compiler ($CC, else cc) into a shared object, loaded with dlopen,
 * and its launches run in order on the program's buffers.  Whole training
 * and eval steps of the seed networks run on it, on ref (float) and on
 * ref64 (double), from the same weights and batch, and every slot
 * afterwards (logits, loss, gradients, weights after SGD, running
 * statistics) is judged as test_cpu_step judges the cpu backend:
 *
 *     max|emu - ref64| <= FACTOR * max(max|ref - ref64|, FLOOR * scale)
 *
 * per tensor, scale = max(max|ref64|, 1e-2), FACTOR = 8, FLOOR = 1e-6.
 * Planted errors in one generated kernel (a sigmoid, a batch-norm mean) must
 * make the same comparison fail.  With --precision tf32 (tf32 below: the
 * products of convs and linear layers on the emulated tensor cores, their
 * operands rounded to 10 mantissa bits) the oracles round the same operands
 * to tf32 too (ref and ref64 with BackendOptions.tf32), and the bound is the
 * same but for its floor, TF32_FLOOR = 1e-4 of the scale: a value of ref64
 * and of the float step on either side of a tf32 rounding boundary rounds
 * to neighbours 2^-11 apart.
 * Without a C compiler the test is skipped with the reason printed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codegen/backend.h"
#include "codegen/cuda/cuda_src.h"
#include "testutil.h"


typedef void (*EmuLaunch)(void (*)(char *, char *, void **, float, unsigned long long, unsigned long long), unsigned,
                          unsigned, char *, char *, void **, float, unsigned long long, unsigned long long);


/* Compiles text for the host and runs its launches on slots s (lr 0.05,
 * dropout seed 1, step 0, as tu_step).  0, or -1 after printing why. */
static int emu_step(const Program *p, const CudaSource *cs, const char *text, void **s) {
    void *h = tu_host_so(text, NULL);
    if (!h) return -1;
    EmuLaunch launch = (EmuLaunch)dlsym(h, "netc_emu_launch");
    char *arena = aligned_alloc(64, (size_t)p->arena_bytes + 64);
    char *side = aligned_alloc(64, (size_t)cs->side_bytes + 64);
    int rc = launch ? 0 : -1;
    for (int i = 0; i < cs->nlaunch && rc == 0; i++) {
        void *fn = dlsym(h, cs->launch[i].name);
        if (!fn) {
            fprintf(stderr, "emu: no function %s\n", cs->launch[i].name);
            rc = -1;
            break;
        }
        void (*kf)(char *, char *, void **, float, unsigned long long, unsigned long long);
        memcpy(&kf, &fn, sizeof kf);
        launch(kf, cs->launch[i].grid, cs->launch[i].block, arena, side, s, 0.05f, 1, 0);
    }
    free(arena);
    free(side);
    dlclose(h);
    return rc;
}

#define TF32_FLOOR 1e-4
static int tf32;   /* the steps below run with --precision tf32 */

/* Runs a step of model on the emulated device (its source with `from`
 * replaced by `to` when from is not NULL) and judges it; returns the
 * number of slots over their bound. */
static int step_model(const char *model, IrMode mode, int64_t batch, int resize, const char *from, const char *to) {
    Program p, p64;
    char path[512];
    snprintf(path, sizeof path, "%s/models/%s.net", NETC_SOURCE_DIR, model);
    assert_int_equal(tu_program(path, mode, batch, resize, 4, &p), 0);
    assert_int_equal(tu_program(path, mode, batch, resize, 8, &p64), 0);
    Diag d;
    diag_init(&d, "cuda", NULL, 0, stderr);
    CudaSource cs;
    assert_int_equal(cg_cuda_source(&p, tf32, &cs, &d), 0);
    /* every kernel takes the plan's strided views as they are: no copies
     * to contiguous stand-ins */
    assert_int_equal(cs.nstaged, 0);
    char *text = from ? tu_plant(cs.text, from, to) : cs.text;
    assert_non_null(text);
    void **r32 = tu_slots(&p, 99), **r64 = tu_slots(&p64, 99), **emu = tu_slots(&p, 99);
    tu_tf32 = tf32;
    assert_int_equal(tu_step(&backend_ref, NULL, &p, r32, NULL), 0);
    assert_int_equal(tu_step(&backend_ref64, NULL, &p64, r64, NULL), 0);
    tu_tf32 = 0;
    assert_int_equal(emu_step(&p, &cs, text, emu), 0);
    int bad = 0;
    double worst = 0;
    const char *worst_slot = "";
    for (int i = 0; i < p.nslots; i++) {
        if (p.slots[i].kind == SLOT_LABELS) continue;
        double e_emu, e_ref, scale, ratio;
        int within = tu_judge(&p, &p64, r32, r64, emu, i, &e_emu, &e_ref, &scale, &ratio);
        double allowed = TU_FACTOR * fmax(e_ref, TU_FLOOR * scale);
        if (tf32) {
            allowed = TU_FACTOR * fmax(e_ref, TF32_FLOOR * scale);
            within = e_emu <= allowed;
            ratio = e_emu / allowed * TU_FACTOR;
        }
        if (!within) {
            if (!from || bad < 3)
                fprintf(stderr, "%s %s%s: slot %s: emu vs double %g, ref vs double %g, scale %g (allowed %g)\n", model,
                        mode == IR_TRAIN ? "train" : "eval", from ? " (planted)" : "", p.slots[i].name, e_emu, e_ref,
                        scale, allowed);
            bad++;
        }
        if (ratio > worst) worst = ratio, worst_slot = p.slots[i].name;
    }
    printf("%s %s%s%s: %d launches, worst emu/ref error against double %.2f (%s), allowed %d\n", model,
           mode == IR_TRAIN ? "train" : "eval", tf32 ? " tf32" : "", from ? " (planted)" : "", cs.nlaunch, worst,
           worst_slot, TU_FACTOR);
    if (text != cs.text) free(text);
    tu_slots_free(&p, r32);
    tu_slots_free(&p64, r64);
    tu_slots_free(&p, emu);
    cg_cuda_source_free(&cs);
    program_free(&p);
    program_free(&p64);
    return bad;
}

static void test_lenet(void **s) {
    (void)s;
    if (!tu_have_cc()) return;
    assert_int_equal(step_model("lenet_bn", IR_TRAIN, 6, 28, NULL, NULL), 0);
    assert_int_equal(step_model("lenet_bn", IR_EVAL, 6, 28, NULL, NULL), 0);
    /* the simple convolutions, one thread per output */
    setenv("NETC_CUDA_SIMPLE", "1", 1);
    assert_int_equal(step_model("lenet_bn", IR_TRAIN, 6, 28, NULL, NULL), 0);
    assert_int_equal(step_model("resnet18", IR_TRAIN, 2, 32, NULL, NULL), 0);
    assert_int_equal(step_model("extra/densenet_odd", IR_TRAIN, 3, 20, NULL, NULL), 0);   /* views */
    unsetenv("NETC_CUDA_SIMPLE");
}

static void test_resnet(void **s) {
    (void)s;
    if (!tu_have_cc()) return;
    assert_int_equal(step_model("resnet18", IR_TRAIN, 2, 64, NULL, NULL), 0);
    assert_int_equal(step_model("resnet18", IR_EVAL, 2, 64, NULL, NULL), 0);
}

/* The memory plan's views: in place (strided slots and gradient slices,
 * each kernel indexing them at their image stride), with recompute (batch norms in apply mode, the relu's sign),
 * and every concat copying. */
static const PlanOptions copy_plan = {1, 0}, recompute_plan = {0, 1};

static void test_densenet(void **s) {
    (void)s;
    if (!tu_have_cc()) return;
    assert_int_equal(step_model("densenet", IR_TRAIN, 2, 64, NULL, NULL), 0);
    tu_plan = &recompute_plan;
    assert_int_equal(step_model("densenet", IR_TRAIN, 2, 64, NULL, NULL), 0);
    assert_int_equal(step_model("extra/densenet_odd", IR_TRAIN, 3, 100, NULL, NULL), 0);
    tu_plan = &copy_plan;
    assert_int_equal(step_model("densenet", IR_TRAIN, 2, 64, NULL, NULL), 0);
    tu_plan = NULL;
    /* bn_relu_conv in eval: the conv normalises (running statistics) and
     * applies the relu while it gathers a view of the concat */
    assert_int_equal(step_model("extra/densenet_odd", IR_EVAL, 3, 20, NULL, NULL), 0);
    assert_int_equal(step_model("densenet", IR_EVAL, 2, 64, NULL, NULL), 0);
}

/* Overlapping 3x3 max-pool windows (stride 1, padding 1), 1x1 and 5x5
 * convs, concat of four branches. */
static void test_googlenet(void **s) {
    (void)s;
    if (!tu_have_cc()) return;
    assert_int_equal(step_model("googlenet", IR_TRAIN, 2, 64, NULL, NULL), 0);
    assert_int_equal(step_model("googlenet", IR_EVAL, 2, 64, NULL, NULL), 0);
}

/* 11x11 stride-4 and 5x5 convs, 3x3 stride-2 max pools, dropout's mask
 * (the same counter-based formula as ref), global average pooling. */
static void test_nin(void **s) {
    (void)s;
    if (!tu_have_cc()) return;
    assert_int_equal(step_model("nin", IR_TRAIN, 2, 224, NULL, NULL), 0);
}

/* 11x11 stride-4 and 5x5 convs, overlapping 3x3 max pools, dropout and
 * three large linear layers (AlexNet); 3x3 convs in five stages (VGG). */
static void test_alexnet_vgg(void **s) {
    (void)s;
    if (!tu_have_cc()) return;
    assert_int_equal(step_model("alexnet", IR_TRAIN, 1, 224, NULL, NULL), 0);
    assert_int_equal(step_model("vgg11", IR_TRAIN, 1, 224, NULL, NULL), 0);
}

/* --precision tf32: the tiled products on the emulated tensor cores
 * (netc_mma_tf32): conv forward and both gradients, linear layers, odd
 * sizes, against double; a fragment read from the wrong rows, or a shuffle
 * from the wrong lane, must fail. */
static void test_tf32(void **s) {
    (void)s;
    if (!tu_have_cc()) return;
    tf32 = 1;
    assert_int_equal(step_model("lenet_bn", IR_TRAIN, 6, 28, NULL, NULL), 0);
    assert_int_equal(step_model("extra/densenet_odd", IR_TRAIN, 3, 20, NULL, NULL), 0);
    assert_int_equal(step_model("extra/densenet_odd", IR_EVAL, 3, 20, NULL, NULL), 0);   /* the prologue */
    assert_int_equal(step_model("resnet18", IR_EVAL, 2, 32, NULL, NULL), 0);
    /* the conv epilogue's statistics on the tensor cores' fragments, and
     * a butterfly leaving out a lane of each row */
    assert_int_equal(step_model("extra/resnet_odd", IR_TRAIN, 3, 20, NULL, NULL), 0);
    assert_true(step_model("extra/resnet_odd", IR_TRAIN, 3, 20, "for (int o = 1; o < 4; o *= 2)",
                           "for (int o = 2; o < 4; o *= 2)") > 0);
    /* (in the first tiled launch: ResNet-18's stem, 64 rows of A; LeNet's
     * sigmoids at random weights give nearly the same logits for any image,
     * too weak a check) */
    assert_true(step_model("resnet18", IR_EVAL, 2, 32, "af[i0][1] = As[tq][r0 + 8]", "af[i0][1] = As[tq][r0]") > 0);
    assert_true(step_model("resnet18", IR_EVAL, 2, 32, "8 * t + 4 + src", "8 * t + src") > 0);
    assert_true(step_model("extra/densenet_odd", IR_TRAIN, 3, 20, "bf[j0][1] = Bs[tq + 4][c0]", "bf[j0][1] = Bs[tq][c0]") > 0);
    tf32 = 0;
}

/* A wrong sigmoid, a wrong batch-norm mean, a wrong gather of a view or
 * a wrong recomputed batch norm in one kernel must be caught. */
static void test_planted(void **s) {
    (void)s;
    if (!tu_have_cc()) return;
    /* the residual add in a batch norm's last launch off */
    assert_true(step_model("resnet18", IR_TRAIN, 2, 32, "    v = v + o", "    v = v - o") > 0);
    /* (the sigmoid after a batch norm, in the batch norm's last launch) */
    assert_true(step_model("lenet_bn", IR_TRAIN, 6, 28, "v = 1.0f / (1.0f + expf(-v))",
                           "v = 1.001f / (1.0f + expf(-v))") > 0);
    assert_true(step_model("lenet_bn", IR_TRAIN, 6, 28, "tot[i] = s / (double)", "tot[i] = 1e-4 + s / (double)") > 0);
    /* a tiled convolution without its second barrier: the next slice's
     * loads overwrite shared memory the others still read */
    assert_true(step_model("lenet_bn", IR_TRAIN, 6, 28, "        __syncthreads();\n    }\n", "    }\n") > 0);
    /* a strided view's images read or written one element off (every
     * kernel taking a view indexes it through NETC_AT), and a recomputed
     * batch norm off (its first: the last layer's, only whose sign the
     * relu gradient reads) */
    assert_true(step_model("extra/densenet_odd", IR_TRAIN, 3, 20, "(is) + (e) % (per))", "(is) + ((e) + 1) % (per))") > 0);
    tu_plan = &recompute_plan;
    assert_true(step_model("extra/densenet_odd", IR_TRAIN, 3, 20, "a4[c] + a2[c]", "a4[c] + a2[c] + 0.5f") > 0);
    tu_plan = NULL;
    /* the conv epilogue's batch-norm statistics (the stem's): one element
     * of a channel left out of its sum of squares, or the tile's sum over
     * only half the lanes of a row (a small ResNet of odd sizes: partial
     * tiles of rows and of columns, several column tiles a channel) */
    assert_int_equal(step_model("extra/resnet_odd", IR_TRAIN, 3, 20, NULL, NULL), 0);
    assert_true(step_model("extra/resnet_odd", IR_TRAIN, 3, 20, "s += v; q += v * v;", "s += v; q += (n > 0) * v * v;") > 0);
    /* the conv's prologue (bn_relu_conv) with --recompute bn-relu: its
     * relu scaled, its relu gone, the input it normalises shifted (in
     * eval at random weights the logits hardly depend on the first
     * layers, whose inputs the running statistics all but flatten: too
     * weak a check; the gather is the same) */
    tu_plan = &recompute_plan;
    assert_true(step_model("extra/densenet_odd", IR_TRAIN, 3, 20, "+ pb[c]; v = v < 0.0f ? 0.0f : v;",
                           "+ pb[c]; v = v < 0.0f ? 0.0f : 1.001f * v;") > 0);
    assert_true(step_model("extra/densenet_odd", IR_TRAIN, 3, 20, "* ps[c] + pb[c]; v = v < 0.0f ? 0.0f : v;",
                           "* ps[c] + pb[c]; v = v < 0.0f ? v : v;") > 0);
    assert_true(step_model("extra/densenet_odd", IR_TRAIN, 3, 20, "(x[NETC_AT(", "(0.001f + x[NETC_AT(") > 0);
    tu_plan = NULL;
    assert_true(step_model("extra/resnet_odd", IR_TRAIN, 3, 20, "for (int o = 8; o > 0; o /= 2)",
                           "for (int o = 4; o > 0; o /= 2)") > 0);
}

int main(void) {
    const char *f = getenv("NETC_TEST_FILTER");   /* one test (a cmocka pattern) */
    if (f) cmocka_set_test_filter(f);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lenet), cmocka_unit_test(test_resnet), cmocka_unit_test(test_densenet),
        cmocka_unit_test(test_googlenet),
        cmocka_unit_test(test_nin), cmocka_unit_test(test_alexnet_vgg),
        cmocka_unit_test(test_planted), cmocka_unit_test(test_tf32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
