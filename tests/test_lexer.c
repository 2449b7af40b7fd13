/* test_lexer.c - tokens and their locations (frontend/lexer.l). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/ast.h"
#include "parser.h"
#include "lexer.h"

typedef struct { int tok, line, col; long long i; double f; const char *s; } Tok;

/* Scans src into toks (up to max); returns the count, END included. */
static int scan(const char *src, Tok *toks, int max, int *errors) {
    FeArena ar;
    fe_arena_init(&ar);
    static char buf[4096];
    FILE *mf = fmemopen(buf, sizeof buf, "w");
    Diag d;
    diag_init(&d, "t.net", src, strlen(src), mf);
    FeParse p = { .arena = &ar, .d = &d };
    yyscan_t sc;
    yylex_init_extra(&p, &sc);
    YY_BUFFER_STATE b = yy_scan_bytes(src, (int)strlen(src), sc);
    YYSTYPE v;
    YYLTYPE l = { 1, 1, 1, 1 };
    int n = 0;
    for (;;) {
        int t = yylex(&v, &l, sc);
        if (n < max) {
            toks[n] = (Tok){ t, l.first_line, l.first_column, 0, 0, NULL };
            if (t == INT) toks[n].i = v.i;
            if (t == FLOAT) toks[n].f = v.f;
            if (t == IDENT) toks[n].s = strdup(v.s);
        }
        n++;
        if (t == END || t == ERROR || n > 1000)
            break;
    }
    yy_delete_buffer(b, sc);
    yylex_destroy(sc);
    fe_arena_free(&ar);
    fclose(mf);
    *errors = p.lex_errors;
    return n;
}

static void free_toks(Tok *t, int n) {
    for (int i = 0; i < n; i++)
        free((char *)t[i].s);
}

static void test_tokens(void **state) {
    (void)state;
    Tok t[64];
    int err, n = scan("block net train param for in if else return scope as true false "
                      "|> .. == != <= >= && || + - * / % < > ! ? : = ( ) { } [ ] , ;", t, 64, &err);
    int want[] = { BLOCK, NET, TRAIN, PARAM, FOR, IN, IF, ELSE, RETURN, SCOPE, AS, TRUE, FALSE,
                   PIPE, DOTDOT, EQ, NE, LE, GE, AND, OR, '+', '-', '*', '/', '%', '<', '>', '!', '?', ':',
                   '=', '(', ')', '{', '}', '[', ']', ',', ';', END };
    int nw = (int)(sizeof want / sizeof *want);
    assert_int_equal(err, 0);
    assert_int_equal(n, nw);
    for (int i = 0; i < nw; i++)
        assert_int_equal(t[i].tok, want[i]);
    free_toks(t, n);
}

static void test_literals_and_names(void **state) {
    (void)state;
    Tok t[16];
    int err, n = scan("conv_1 42 0.5 1e-3 0..n blocky", t, 16, &err);
    assert_int_equal(err, 0);
    assert_int_equal(n, 9);
    assert_int_equal(t[0].tok, IDENT);
    assert_string_equal(t[0].s, "conv_1");
    assert_int_equal(t[1].tok, INT);
    assert_int_equal(t[1].i, 42);
    assert_int_equal(t[2].tok, FLOAT);
    assert_true(t[2].f == 0.5);
    assert_int_equal(t[3].tok, FLOAT);
    assert_true(t[3].f == 1e-3);
    assert_int_equal(t[4].tok, INT);      /* 0..n is 0 .. n, not the float 0. */
    assert_int_equal(t[5].tok, DOTDOT);
    assert_int_equal(t[6].tok, IDENT);
    assert_int_equal(t[7].tok, IDENT);    /* keywords need a word boundary */
    assert_string_equal(t[7].s, "blocky");
    free_toks(t, n);
}

static void test_locations(void **state) {
    (void)state;
    Tok t[16];
    int err, n = scan("net {\n  # comment |> ignored\n\tx = 3 # more\n}\n", t, 16, &err);
    assert_int_equal(err, 0);
    assert_int_equal(n, 7);
    int want[][3] = { { NET, 1, 1 }, { '{', 1, 5 }, { IDENT, 3, 2 }, { '=', 3, 4 }, { INT, 3, 6 }, { '}', 4, 1 } };
    for (int i = 0; i < 6; i++) {
        assert_int_equal(t[i].tok, want[i][0]);
        assert_int_equal(t[i].line, want[i][1]);
        assert_int_equal(t[i].col, want[i][2]);
    }
    free_toks(t, n);
}

static void test_errors(void **state) {
    (void)state;
    Tok t[8];
    int err, n = scan("x = 3 $", t, 8, &err);
    assert_int_equal(err, 1);
    assert_int_equal(t[n - 1].tok, ERROR);
    assert_int_equal(t[n - 1].col, 7);
    free_toks(t, n);
    n = scan("123456789012345678901234567890", t, 8, &err);
    assert_int_equal(err, 1);
    assert_int_equal(t[0].tok, ERROR);
    free_toks(t, n);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_literals_and_names),
        cmocka_unit_test(test_locations),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
