/* test_parser.c - AST shapes for small programs (printed as S-expressions by
 * ast_print) and located syntax errors (frontend/parser.y). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/ast.h"

static char diag_buf[4096];

/* Parses src; returns the S-expression (static buffer) or NULL on error. */
static const char *parse(const char *src) {
    static char out[4096];
    FILE *mf = fmemopen(diag_buf, sizeof diag_buf, "w");
    Diag d;
    diag_init(&d, "t.net", src, strlen(src), mf);
    FeArena ar;
    fe_arena_init(&ar);
    Ast *prog;
    int rc = fe_parse(src, strlen(src), &ar, &d, &prog);
    fclose(mf);
    if (rc == 0) {
        FILE *f = fmemopen(out, sizeof out, "w");
        ast_print(prog, f);
        fclose(f);
    }
    fe_arena_free(&ar);
    return rc == 0 ? out : NULL;
}

static void test_pipeline(void **state) {
    (void)state;
    assert_string_equal(parse("net { x = x |> conv(64, 3, pad = 1) |> relu }"),
                        "(program (net (= x (call relu (call conv x 64 3 pad=1)))))");
    assert_string_equal(parse("net { return relu(y + x) }"), "(program (net (return (call relu (+ y x)))))");
    assert_string_equal(parse("net { y = x |> conv(8, 1) as c1 |> batchnorm as bn }"),
                        "(program (net (= y (call batchnorm (call conv x 8 1 as c1) as bn))))");
}

static void test_precedence(void **state) {
    (void)state;
    assert_string_equal(parse("net { n = 1 + 2 * 3 - 4 / 2 % 3 }"), "(program (net (= n (- (+ 1 (* 2 3)) (% (/ 4 2) 3)))))");
    assert_string_equal(parse("net { b = !a && c || d == e }"), "(program (net (= b (|| (&& (! a) c) (== d e)))))");
    assert_string_equal(parse("net { n = p ? 1 : q ? 2 : 3 }"), "(program (net (= n (? p 1 (? q 2 3)))))");
    assert_string_equal(parse("net { y = a + b |> relu }"), "(program (net (= y (call relu (+ a b)))))");
    assert_string_equal(parse("net { n = -(1 - 2) <= 3 }"), "(program (net (= n (<= (- (- 1 2)) 3))))");
}

static void test_statements(void **state) {
    (void)state;
    assert_string_equal(parse("net { for i in 0..n { x = x |> relu } }"),
                        "(program (net (for i 0 n (= x (call relu x)))))");
    assert_string_equal(parse("net { if a { x = 1 } else if b { x = 2 } else { x = 3 } }"),
                        "(program (net (if a (then (= x 1)) (else (if b (then (= x 2)) (else (= x 3)))))))");
    assert_string_equal(parse("net { scope b1 { x = x; } ; }"), "(program (net (scope b1 (= x x))))");
}

static void test_toplevel(void **state) {
    (void)state;
    assert_string_equal(parse("param ratio = 4\ntrain { lr = 0.5, batch = 8; epochs = 2 }\n"
                              "block b(c, s = 1, p = false,) { return x |> conv(c, 3, stride = s, in = 3) }\n"
                              "net { return x }"),
                        "(program (param ratio 4) (train (set lr 0.5) (set batch 8) (set epochs 2)) "
                        "(block b (c s=1 p=false) (return (call conv x c 3 stride=s in=3))) (net (return x)))");
}

/* Error message starts with the expected location and text. */
static void expect_error(const char *src, const char *want) {
    assert_null(parse(src));
    if (strncmp(diag_buf, want, strlen(want)))
        fail_msg("want `%s`, got:\n%s", want, diag_buf);
}

static void test_syntax_errors(void **state) {
    (void)state;
    expect_error("net {\n  x = x |> \n}", "t.net:3:1: error: syntax error, unexpected '}', expecting identifier");
    expect_error("net { x = (1 + 2 }", "t.net:1:18: error: syntax error, unexpected '}'");
    expect_error("net { x = 1 2 }", "t.net:1:13: error: syntax error, unexpected integer");
    expect_error("block b(1) { }", "t.net:1:9: error: syntax error, unexpected integer");
    expect_error("net { x = @ }", "t.net:1:11: error: unexpected character `@`");
    expect_error("x = 1", "t.net:1:1: error: syntax error, unexpected identifier");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipeline),   cmocka_unit_test(test_precedence),    cmocka_unit_test(test_statements),
        cmocka_unit_test(test_toplevel),   cmocka_unit_test(test_syntax_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
