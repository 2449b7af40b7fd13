/* test_overflow.c - the size limits of ir/ir.h: element counts that would
 * wrap in 64 bits are caught, a tensor at the limit passes and one past it is
 * a located error, and a batch given to the pipeline (as --batch does, or
 * larger than the command line allows) is checked the same way before memory
 * planning, whose totals are exact. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* Builds src (train mode) with its shapes inferred at batch (0: the train
 * section's); returns the status and the diagnostics (caller frees). */
static char *build(const char *src, int64_t batch, IrGraph *g, int *rc) {
    char *out = NULL;
    size_t n = 0;
    FILE *mf = open_memstream(&out, &n);
    Diag d;
    diag_init(&d, "mem.net", src, strlen(src), mf);
    ir_init(g);
    FeOptions o = {IR_TRAIN, NULL, 0, 0, 0};
    *rc = fe_build(src, strlen(src), &o, g, &d);
    if (*rc == 0) {
        g->batch = batch;
        *rc = pass_infer_shapes(g, &d);
    }
    fclose(mf);
    return out;
}

/* Runs the pipeline on src at batch; returns the status and the diagnostics. */
static char *pipeline(const char *src, int64_t batch, Program *p, int *rc) {
    IrGraph g;
    char *out = build(src, 0, &g, rc);
    assert_int_equal(*rc, 0);
    free(out);
    out = NULL;
    size_t n = 0;
    FILE *mf = open_memstream(&out, &n);
    Diag d;
    diag_init(&d, "mem.net", src, strlen(src), mf);
    PipelineOptions po = {IR_TRAIN, batch, 4, 1, NULL, NULL, NULL, NULL, 0, 0};
    *rc = pass_pipeline(&g, &po, p, &d);
    fclose(mf);
    ir_free(&g);
    return out;
}

static void test_numel_checked(void **st) {
    (void)st;
    int64_t d[4] = {0, 1 << 20, 1 << 20, 1 << 12}, n;
    IrType t = ir_type_make(IR_F32, 1, 4, d);
    assert_int_equal(ir_numel_checked(&t, 1 << 10, &n), 0);
    assert_true(n == (int64_t)1 << 62);
    assert_int_equal(ir_numel_checked(&t, 1 << 11, &n), -1);     /* 2^63 */
    assert_int_equal(ir_numel_checked(&t, 1 << 12, &n), -1);     /* 2^64: would wrap to 0 */
    assert_int_equal(ir_numel_checked(&t, (int64_t)1 << 40, &n), -1);
    assert_int_equal(ir_numel_checked(&t, -1, &n), -1);
    assert_int_equal(ir_numel_checked(&t, 0, &n), 0);
    assert_true(n == 0);
    assert_true(ir_numel(&t, 3) == (int64_t)3 << 52);
}

/* 256 images of 1024x1024 and 1024 channels: exactly 2^38 elements. */
static const char *at_limit = "train { batch = 256, resize = 1024 }\n"
                              "net {\n"
                              "  x = x |> conv(1024, 1)\n"
                              "  return x |> global_avgpool |> flatten |> linear(10)\n"
                              "}\n";

static void test_tensor_limit(void **st) {
    (void)st;
    IrGraph g;
    int rc;
    char *out = build(at_limit, 0, &g, &rc);
    if (rc) fail_msg("a tensor of 2^38 elements is refused:\n%s", out);
    int conv = 0;
    while (g.nodes[conv].op != IR_OP_CONV2D) conv++;
    assert_true(ir_numel(ir_type(&g, ir_out(&g, conv, 0)), 256) == IR_MAX_NUMEL);
    IrStats s;
    pass_stats(&g, &s);
    assert_true(s.fwd_flops == 2 * (IR_MAX_NUMEL / 256) + 2 * 1024 * 10);
    ir_free(&g);
    free(out);
    /* one image more: located at the conv */
    out = build(at_limit, 257, &g, &rc);
    assert_int_equal(rc, -1);
    if (!strstr(out, "mem.net:3:12: error: conv2d output Nx1024x1024x1024 has 2.76e+11 elements at batch 257") ||
        !strstr(out, "\n      | " "           ^\n")) /* column 12 */
        fail_msg("got:\n%s", out);
    ir_free(&g);
    free(out);
}

/* A batch given to the pipeline is checked by its shape inference: past the
 * limit, far past it, and where N*C*H*W wraps to 0 in 64 bits. */
static void test_pipeline_batch(void **st) {
    (void)st;
    static const char *lenet = "train { batch = 256, resize = 28 }\n"
                               "net {\n"
                               "  x = x |> conv(6, 5, padding = 2) |> sigmoid |> avgpool(2, stride = 2)\n"
                               "  return x |> flatten |> linear(10)\n"
                               "}\n";
    int64_t bad[] = {(int64_t)1 << 29, (int64_t)1 << 52, (int64_t)1 << 62, INT64_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        Program p;
        int rc;
        char *out = pipeline(lenet, bad[i], &p, &rc);
        assert_int_equal(rc, -1);
        if (strncmp(out, "mem.net:2:1: error: input Nx1x28x28 has ", 40) || !strstr(out, "a tensor may hold at most 2^38"))
            fail_msg("batch %lld:\n%s", (long long)bad[i], out);
        program_free(&p);
        free(out);
    }
    /* 2^20 images: every tensor fits; the plan's totals are exact */
    Program p;
    int rc;
    char *out = pipeline(lenet, (int64_t)1 << 20, &p, &rc);
    if (rc) fail_msg("%s", out);
    assert_int_equal(program_check_plan(&p, stderr), 0);
    assert_true(p.arena_bytes > 0 && p.arena_bytes <= p.naive_bytes && p.naive_bytes < PROGRAM_MAX_BYTES);
    int64_t persist = 0;
    for (int s = 0; s < p.nslots; s++) persist += p.slots[s].bytes;
    assert_true(p.persist_bytes == persist);
    assert_true(p.persist_bytes > ((int64_t)28 * 28 * 4) << 20);   /* the input batch alone */
    program_free(&p);
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numel_checked),
        cmocka_unit_test(test_tensor_limit),
        cmocka_unit_test(test_pipeline_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
