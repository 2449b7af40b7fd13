/* test_cuda_nvrtc.c - every kernel the cuda backend generates compiles
 * with NVRTC: the train and eval programs of the seven networks at the
 * batch and resolution their files give (the seed's), each program's
 * source to PTX for compute_90 and to SASS for sm_90 (ptxas's limits).  A
 * syntax error planted in a source must give an error carrying NVRTC's
 * log.  Without NVRTC the test is skipped with the reason printed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/cuda/cuda_src.h"
#include "codegen/cuda/nvrtc.h"
#include "testutil.h"

static int have_nvrtc(void) {
    const char *why;
    if (cg_nvrtc_available(&why)) return 1;
    printf("skipped: %s\n", why);
    return 0;
}

/* ptxas's report (-v) of every kernel in log: the largest register count
 * and shared memory, and the spill stores and loads, summed. */
static void ptxas_report(const char *log, long *regs, long *smem, long *spills) {
    *regs = *smem = *spills = 0;
    for (const char *l = log; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : l + strlen(l)) {
        const char *at;
        long v;
        if ((at = strstr(l, "Used ")) && sscanf(at, "Used %ld registers", &v) == 1 && v > *regs) *regs = v;
        const char *eol = strchr(l, '\n');
        for (at = l; (at = strstr(at, " bytes ")) && (!eol || at < eol); at += 7) {
            const char *b = at;
            while (b > l && (b[-1] >= '0' && b[-1] <= '9')) b--;
            v = strtol(b, NULL, 10);
            if (!strncmp(at, " bytes smem", 11) && v > *smem) *smem = v;
            if (!strncmp(at, " bytes spill", 12)) *spills += v;
        }
    }
}

/* The budget every kernel is held to on sm_90 (an H200: 255 registers a
 * thread, 227 KiB of shared memory a block): no spills at all, and the
 * tiles' 4 KiB of shared memory. */
enum { SPILL_BUDGET = 0, SMEM_BUDGET = 4096, REG_LIMIT = 255 };

/* Every kernel of model's train and eval programs (tf32: also the train
 * program with --precision tf32, its convs and linear layers on mma.sync). */
static void compile_model(const char *model, int tf32) {
    char path[512];
    snprintf(path, sizeof path, "%s/models/%s.net", NETC_SOURCE_DIR, model);
    IrGraph g;
    char *src = NULL;
    assert_int_equal(tu_build(path, IR_TRAIN, &g, &src), 0);
    int64_t batch = g.train.batch;
    int resize = g.train.resize;
    ir_free(&g);
    free(src);
    for (int run = 0; run < 2 + tf32; run++) {
        int mode = run == 1, prec = run == 2;
        Program p;
        assert_int_equal(tu_program(path, mode ? IR_EVAL : IR_TRAIN, batch, resize, 4, &p), 0);
        Diag d;
        diag_init(&d, "cuda", NULL, 0, stderr);
        CudaSource cs;
        assert_int_equal(cg_cuda_source(&p, prec, &cs, &d), 0);
        if (prec) assert_non_null(strstr(cs.text, "netc_mma_tf32(acc"));
        const char *arch[] = {"compute_90", "sm_90"};
        for (int a = 0; a < 2; a++) {
            char *bin, *log;
            size_t len;
            int rc = cg_nvrtc_compile_log(cs.text, model, arch[a], a == 1, &bin, &len, &log, &d);
            printf("%s %s%s, batch %lld, resize %d: %d launches, %s: %s (%zu bytes)", model, mode ? "eval" : "train",
                   prec ? " tf32" : "", (long long)batch, resize, cs.nlaunch, arch[a], rc ? "FAILED" : "ok", len);
            assert_int_equal(rc, 0);
            assert_true(len > 0);
            if (a == 1) {   /* ptxas's report */
                long regs, smem, spills;
                ptxas_report(log, &regs, &smem, &spills);
                printf(": at most %ld registers and %ld bytes of shared memory a kernel, %ld bytes spilled", regs,
                       smem, spills);
                assert_true(regs > 0 && regs <= REG_LIMIT);
                assert_true(smem <= SMEM_BUDGET);
                assert_true(spills <= SPILL_BUDGET);
            }
            printf("\n");
            free(bin);
            free(log);
        }
        cg_cuda_source_free(&cs);
        program_free(&p);
    }
}

#define MODEL_TEST(name, file, tf32) \
    static void test_##name(void **s) { (void)s; if (have_nvrtc()) compile_model(file, tf32); }
MODEL_TEST(alexnet, "alexnet", 0)
MODEL_TEST(vgg, "vgg11", 0)
MODEL_TEST(nin, "nin", 0)
MODEL_TEST(googlenet, "googlenet", 0)
MODEL_TEST(lenet, "lenet_bn", 0)
MODEL_TEST(resnet, "resnet18", 1)
MODEL_TEST(densenet, "densenet", 1)

/* A planted syntax error: the message names the failure and holds the log. */
static void test_log(void **s) {
    (void)s;
    if (!have_nvrtc()) return;
    char *msg = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&msg, &n);
    Diag d;
    diag_init(&d, "cuda", NULL, 0, f);
    char *bin;
    size_t len;
    int rc = cg_nvrtc_compile("extern \"C\" __global__ void k(float *x) { x[0] = 1.0f }\n", "planted.cu",
                              "compute_90", &bin, &len, &d);
    fclose(f);
    printf("%s", msg);
    assert_int_equal(rc, -1);
    assert_null(bin);
    assert_non_null(strstr(msg, "NVRTC could not compile planted.cu"));
    assert_non_null(strstr(msg, "planted.cu(1)"));   /* the log's location of the error */
    free(msg);
}

/* The cache: a second compile of the same source is read back, the same
 * bytes; a damaged file is compiled again; NETC_CACHE_DIR= turns it off. */
static void test_cache(void **s) {
    (void)s;
    if (!have_nvrtc()) return;
    char dir[] = "/tmp/netc_cache_XXXXXX";
    assert_non_null(mkdtemp(dir));
    setenv("NETC_CACHE_DIR", dir, 1);
    const char *src = "extern \"C\" __global__ void k(float *x) { x[threadIdx.x] *= 2.0f; }\n";
    Diag d;
    diag_init(&d, "cuda", NULL, 0, stderr);
    char *a, *b, *c;
    size_t la, lb, lc;
    int hit;
    assert_int_equal(cg_nvrtc_compile_cached(src, "k.cu", "compute_90", &a, &la, &hit, &d), 0);
    assert_int_equal(hit, 0);
    assert_int_equal(cg_nvrtc_compile_cached(src, "k.cu", "compute_90", &b, &lb, &hit, &d), 0);
    assert_int_equal(hit, 1);
    assert_true(la == lb && !memcmp(a, b, la));
    /* another arch is another entry */
    assert_int_equal(cg_nvrtc_compile_cached(src, "k.cu", "sm_90", &c, &lc, &hit, &d), 0);
    assert_int_equal(hit, 0);
    free(c);
    /* every file cut short: compiled again */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "for f in %s/*.bin; do head -c 20 \"$f\" > \"$f.x\" && mv \"$f.x\" \"$f\"; done", dir);
    assert_int_equal(system(cmd), 0);
    free(b);
    assert_int_equal(cg_nvrtc_compile_cached(src, "k.cu", "compute_90", &b, &lb, &hit, &d), 0);
    assert_int_equal(hit, 0);
    assert_true(la == lb && !memcmp(a, b, la));
    free(b);
    setenv("NETC_CACHE_DIR", "", 1);
    assert_int_equal(cg_nvrtc_compile_cached(src, "k.cu", "compute_90", &b, &lb, &hit, &d), 0);
    assert_int_equal(hit, 0);
    free(a), free(b);
    unsetenv("NETC_CACHE_DIR");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* Modules compiled ahead of time (an executable's): a source whose key and
 * arch are in the table gets the stored image, whether NVRTC is there or
 * not; any other source is an error naming the module, not a compile. */
static void test_embedded(void **s) {
    (void)s;
    const char *src = "extern \"C\" __global__ void k(float *x) { x[0] = 3.0f; }\n";
    CgNvrtcModule m = {"compute_90", "", "// stored PTX\n", 14};
    char key[33];
    cg_nvrtc_key(src, "compute_90", key);
    assert_int_equal(strlen(key), 32);
    m.key = key;
    assert_false(cg_nvrtc_embedded());
    cg_nvrtc_embed(&m, 1);
    assert_true(cg_nvrtc_embedded());
    char *msg = NULL, *out = NULL;
    size_t n = 0, len = 0;
    FILE *f = open_memstream(&msg, &n);
    Diag d;
    diag_init(&d, "cuda", NULL, 0, f);
    int hit = 0;
    assert_int_equal(cg_nvrtc_compile_cached(src, "k.cu", "compute_90", &out, &len, &hit, &d), 0);
    assert_int_equal(hit, 1);
    assert_int_equal(len, 14);
    assert_string_equal(out, "// stored PTX\n");
    free(out);
    /* another source, or another arch: no entry */
    assert_int_equal(cg_nvrtc_compile_cached("// other\n", "o.cu", "compute_90", &out, &len, &hit, &d), -1);
    assert_int_equal(cg_nvrtc_compile_cached(src, "k.cu", "sm_90", &out, &len, &hit, &d), -1);
    fclose(f);
    printf("%s", msg);
    assert_non_null(strstr(msg, "this executable holds no compute_90 code for o.cu"));
    assert_non_null(strstr(msg, "holds no sm_90 code for k.cu"));
    free(msg);
    cg_nvrtc_embed(NULL, -1);
    assert_false(cg_nvrtc_embedded());
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log), cmocka_unit_test(test_cache), cmocka_unit_test(test_embedded), cmocka_unit_test(test_lenet), cmocka_unit_test(test_alexnet),
        cmocka_unit_test(test_vgg), cmocka_unit_test(test_nin), cmocka_unit_test(test_googlenet),
        cmocka_unit_test(test_resnet), cmocka_unit_test(test_densenet),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
