/* test_badinput.c - every malformed input gets a located error, never a crash.
 *
 * Corpus format: tests/bad/NAME.net is a bad program; tests/bad/NAME.expect
 * holds one line, a prefix of the first line of the expected diagnostic with
 * the file named by its base name:
 *
 *     NAME.net:LINE:COL: error: message (or the start of it)
 *
 * Each file runs through fe_build_file and, if that succeeds, through
 * pass_infer_shapes (shape errors), with the Diag writing to a memory stream.
 * The test checks: status -1, the first line matches, and a source line with
 * a caret follows.  Generated cases (empty, binary, long line, huge file) are
 * written to a temporary directory, not committed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend/frontend.h"
#include "passes/passes.h"

/* Builds path; returns the diagnostic text (caller frees) and the status. */
static char *run_file(const char *path, int *rc) {
    char *out = NULL;
    size_t outlen = 0;
    FILE *mf = open_memstream(&out, &outlen);
    Diag d;
    diag_init(&d, path, NULL, 0, mf);
    IrGraph g;
    ir_init(&g);
    char *src = NULL;
    FeOptions o = { IR_TRAIN, NULL, 0, 0, 0 };
    *rc = fe_build_file(path, &o, &g, &src, &d);
    if (*rc == 0)
        *rc = pass_infer_shapes(&g, &d);
    ir_free(&g);
    free(src);
    fclose(mf);
    return out;
}

static void check_corpus_file(const char *dir, const char *name) {
    char path[1024], epath[1024], expect[1024] = "";
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(epath, sizeof epath, "%s/%.*s.expect", dir, (int)(strlen(name) - 4), name);
    FILE *ef = fopen(epath, "r");
    if (!ef)
        fail_msg("%s: missing .expect file", epath);
    if (!fgets(expect, sizeof expect, ef))
        expect[0] = 0;
    fclose(ef);
    expect[strcspn(expect, "\n")] = 0;
    int rc;
    char *out = run_file(path, &rc);
    /* first line, with the directory part of the file name removed */
    const char *first = out + (strncmp(out, dir, strlen(dir)) == 0 ? strlen(dir) + 1 : 0);
    if (rc != -1 || strncmp(first, expect, strlen(expect)) != 0 || !strstr(out, "\n      | ") ||
        !strchr(strstr(out, "\n      | ") + 1, '^'))
        fail_msg("%s: rc %d\nexpected: %s\ngot:\n%s", name, rc, expect, out);
    free(out);
}

static int is_net(const struct dirent *e) {
    size_t n = strlen(e->d_name);
    return n > 4 && !strcmp(e->d_name + n - 4, ".net");
}

static void test_corpus(void **state) {
    (void)state;
    const char *dir = "tests/bad";
    struct dirent **list;
    int n = scandir(dir, &list, is_net, alphasort);
    assert_true(n >= 40);
    for (int i = 0; i < n; i++) {
        check_corpus_file(dir, list[i]->d_name);
        free(list[i]);
    }
    free(list);
}

/* Writes len bytes (pattern repeated) to a temp file; returns its path. */
static char *temp_file(const char *pattern, size_t plen, size_t len) {
    char *path = strdup("/tmp/netc_bad_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "wb");
    for (size_t i = 0; i < len; i += plen)
        fwrite(pattern, 1, len - i < plen ? len - i : plen, f);
    fclose(f);
    return path;
}

static void expect_error(const char *pattern, size_t plen, size_t len, const char *msg) {
    char *path = temp_file(pattern, plen, len);
    int rc;
    char *out = run_file(path, &rc);
    unlink(path);
    if (rc != -1 || !strstr(out, msg) || strncmp(out, path, strlen(path)))
        fail_msg("expected `%s`, rc %d, got:\n%s", msg, rc, out);
    free(out);
    free(path);
}

static void test_empty(void **state) {
    (void)state;
    expect_error("", 0, 0, ":1:1: error: empty file");
    expect_error(" \n\t\n", 4, 4, ":1:1: error: empty file");
}

static void test_binary(void **state) {
    (void)state;
    expect_error("net {\0}", 7, 7, ":1:6: error: binary file");
    expect_error("net { \xff\xfe }", 10, 10, ":1:7: error: binary file");
    expect_error("\x7f" "ELF\x02\x01\x01", 7, 4096, "binary file");
}

static void test_long_line(void **state) {
    (void)state;
    expect_error("xxxxxxxx", 8, 200000, ":1:1: error: line is too long");
}

static void test_huge_file(void **state) {
    (void)state;
    /* 100 MB of a valid-looking line: rejected before reading it all */
    expect_error("# comment comment comment comment comment comment comment\n", 58, 100u << 20,
                 "error: file is too large");
}

static void test_missing_file(void **state) {
    (void)state;
    int rc;
    char *out = run_file("tests/bad/does_not_exist.net", &rc);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(out, "cannot open"));
    free(out);
}

/* The same corpus through fe_build on memory (no file): still -1, located. */
static void test_memory_build(void **state) {
    (void)state;
    static const char *srcs[] = { "net { x = x |> conv(0, 1) }", "net {", "block b() { return x |> b }\nnet { return x |> b }",
                                  "net { for i in 0..5 { for j in 0..9999999999 { } } }" };
    for (size_t i = 0; i < sizeof srcs / sizeof *srcs; i++) {
        char *out = NULL;
        size_t n = 0;
        FILE *mf = open_memstream(&out, &n);
        Diag d;
        diag_init(&d, "mem.net", srcs[i], strlen(srcs[i]), mf);
        IrGraph g;
        ir_init(&g);
        int rc = fe_build(srcs[i], strlen(srcs[i]), NULL, &g, &d);
        ir_free(&g);
        fclose(mf);
        assert_int_equal(rc, -1);
        assert_true(strncmp(out, "mem.net:1:", 10) == 0);
        free(out);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus),     cmocka_unit_test(test_empty),     cmocka_unit_test(test_binary),
        cmocka_unit_test(test_long_line),  cmocka_unit_test(test_huge_file), cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_memory_build),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
