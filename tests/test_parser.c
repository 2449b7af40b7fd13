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

static void test_lists(void **state) {
    (void)state;
    /* [..] and (a, b, ...) are list literals; (a) stays a, (a,) has one element */
    assert_string_equal(parse("param a = [4, 4, 4, 4]\nparam b = (6, 12, 24, 16,)\nparam c = (1 + 2)\nparam d = (7,)\n"
                              "param e = []\nparam f = ((1, 64), [2, 128])"),
                        "(program (param a (list 4 4 4 4)) (param b (list 6 12 24 16)) (param c (+ 1 2)) "
                        "(param d (list 7)) (param e (list)) (param f (list (list 1 64) (list 2 128))))");
    /* indexing binds tighter than unary minus and arithmetic, and nests */
    assert_string_equal(parse("net { n = -xs[i + 1][0] * 2 }"), "(program (net (= n (* (- (index (index xs (+ i 1)) 0)) 2))))");
    assert_string_equal(parse("net { n = len(xs) + channels(x |> relu) }"),
                        "(program (net (= n (+ (call len xs) (call channels (call relu x))))))");
}

static void test_for_forms(void **state) {
    (void)state;
    assert_string_equal(parse("net { for b in blocks { x = x |> relu } }"),
                        "(program (net (for b blocks (= x (call relu x)))))");
    assert_string_equal(parse("net { for (n, c) in arch { x = x } for n, c in [(1, 2)] { } }"),
                        "(program (net (for (n c) arch (= x x)) (for (n c) (list (list 1 2)))))");
    assert_string_equal(parse("net { for i in 0..len(xs) { } }"), "(program (net (for i 0 (call len xs))))");
}

/* fe_parse_expr reads one value (a --param's text) and nothing else. */
static void test_parse_expr(void **state) {
    (void)state;
    static char out[256];
    const char *ok[] = { "[6, 12, 24, 16]", "0.5", "true", "-3" };
    const char *want[] = { "(list 6 12 24 16)", "0.5", "true", "(- 3)" };
    for (int i = 0; i < 4; i++) {
        FeArena ar;
        fe_arena_init(&ar);
        Diag d;
        diag_init(&d, "v", ok[i], strlen(ok[i]), stderr);
        Ast *e;
        assert_int_equal(fe_parse_expr(ok[i], strlen(ok[i]), &ar, &d, &e), 0);
        FILE *f = fmemopen(out, sizeof out, "w");
        ast_print(e, f);
        fclose(f);
        assert_string_equal(out, want[i]);
        fe_arena_free(&ar);
    }
    const char *bad[] = { "[1,", "net { }", "1 2", "" };
    for (int i = 0; i < 4; i++) {
        FeArena ar;
        fe_arena_init(&ar);
        FILE *mf = fmemopen(diag_buf, sizeof diag_buf, "w");
        Diag d;
        diag_init(&d, "v", bad[i], strlen(bad[i]), mf);
        Ast *e;
        assert_int_equal(fe_parse_expr(bad[i], strlen(bad[i]), &ar, &d, &e), -1);
        fclose(mf);
        assert_non_null(strstr(diag_buf, "syntax error"));
        fe_arena_free(&ar);
    }
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
    expect_error("net { x = [1, 2 }", "t.net:1:17: error: syntax error, unexpected '}', expecting ']'");
    expect_error("net { for (a, 1) in xs { } }", "t.net:1:15: error: syntax error, unexpected integer, expecting identifier");
    expect_error("net { for (a, b) in 0..2 { } }", "t.net:1:22: error: syntax error, unexpected ..");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipeline),   cmocka_unit_test(test_precedence),    cmocka_unit_test(test_statements),
        cmocka_unit_test(test_toplevel),   cmocka_unit_test(test_lists),         cmocka_unit_test(test_for_forms),
        cmocka_unit_test(test_parse_expr), cmocka_unit_test(test_syntax_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
