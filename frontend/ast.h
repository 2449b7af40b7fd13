/* ast.h - the abstract syntax tree of the .net language, the arena that owns
 * it, and the internal entry points of the front end (parse, elaborate).
 *
 * Every AST node and every string the parser makes lives in one Arena and is
 * freed at once with fe_arena_free, so error paths never leak. */
#ifndef NETC_AST_H
#define NETC_AST_H

#include <stddef.h>
#include <stdio.h>
#include "frontend.h"

/* A chunked bump allocator. */
typedef struct FeChunk FeChunk;
typedef struct { FeChunk *head; size_t used, cap; } FeArena;

void fe_arena_init(FeArena *a);
void fe_arena_free(FeArena *a);
void *fe_arena_alloc(FeArena *a, size_t n);            /* zeroed, 16-aligned */
char *fe_arena_strndup(FeArena *a, const char *s, size_t n);
char *fe_arena_printf(FeArena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

typedef enum {
    /* expressions */
    AST_INT,      /* ival */
    AST_FLOAT,    /* fval */
    AST_BOOL,     /* ival 0/1 */
    AST_NAME,     /* name */
    AST_CALL,     /* name(list of AST_ARG) [as label]; piped: first arg came from |> */
    AST_ARG,      /* [name =] a */
    AST_BINARY,   /* a op b; op is a token (see parser.y) or a char */
    AST_UNARY,    /* op a */
    AST_COND,     /* a ? b : c */
    AST_LIST,     /* [list] or (list): a list literal, elements linked through next */
    AST_INDEX,    /* a[b] */
    /* statements */
    AST_ASSIGN,   /* name = a */
    AST_FOR,      /* for name in a .. b { list }; b NULL: for name in a (a list);
                     list2 (AST_NAMEs): for (n1, n2, ...) in a, each element unpacked */
    AST_IF,       /* if a { list } else { list2 } (list2 may hold one AST_IF) */
    AST_RETURN,   /* return a */
    AST_SCOPE,    /* scope name { list } */
    /* top level */
    AST_PARAM,    /* param name = a (a network parameter, -D overridable) */
    AST_SETTING,  /* name = a inside train { } */
    AST_TRAIN,    /* train { list of AST_SETTING } */
    AST_BLOCK,    /* block name(list of AST_PARAM) { list2 } */
    AST_NET,      /* net { list } */
    AST_PROGRAM,  /* list of top-level items */
} AstKind;

/* Binary and unary operators that are not single characters. */
enum { AST_OP_EQ = 256, AST_OP_NE, AST_OP_LE, AST_OP_GE, AST_OP_AND, AST_OP_OR };

typedef struct Ast Ast;
struct Ast {
    AstKind kind;
    IrLoc loc;
    int op;
    int piped;
    long long ival;
    double fval;
    const char *name;
    const char *label;       /* `as label` on a call */
    Ast *a, *b, *c;
    Ast *list, *list2;       /* singly linked through next */
    Ast *next;
};

/* A list under construction: O(1) append. */
typedef struct { Ast *head, *tail; } AstList;

Ast *ast_new(FeArena *ar, AstKind k, IrLoc loc);
void ast_list_push(AstList *l, Ast *n);
int ast_list_len(const Ast *first);
/* S-expression text of the tree, for tests and `netc dump --ast`. */
void ast_print(const Ast *n, FILE *f);
const char *ast_op_str(int op);

/* The parser's state, passed to yyparse and reachable from the scanner. */
typedef struct FeParse {
    FeArena *arena;
    Diag *d;
    Ast *root;
    int lex_errors;          /* errors the scanner already reported */
    int start;               /* token the scanner returns first (0: none) */
} FeParse;

/* Parses src into *out (arena-owned).  0, or -1 after a located error. */
int fe_parse(const char *src, size_t len, FeArena *ar, Diag *d, Ast **out);

/* Parses src as one expression (a --param value): *out is the expression. */
int fe_parse_expr(const char *src, size_t len, FeArena *ar, Diag *d, Ast **out);

/* Elaborates a parsed program into g (see fe_build). */
int fe_elab(const Ast *prog, const FeOptions *o, IrGraph *g, Diag *d);

/* Levenshtein distance, capped: for "did you mean" hints. */
int fe_edit_distance(const char *a, const char *b);

/* Limits that keep any input cheap to reject. */
enum {
    FE_MAX_FILE = 16 << 20,      /* bytes */
    FE_MAX_LINE = 64 << 10,      /* bytes per line */
    FE_MAX_DEPTH = 1000,         /* expression / call nesting */
    FE_MAX_BLOCK_DEPTH = 64,     /* nested block calls */
    FE_MAX_LOOP = 100000,        /* iterations of one loop */
    FE_MAX_STEPS = 1000000,      /* loop iterations in all */
    FE_MAX_WORK = 1000000,       /* expression evaluations in all */
    FE_MAX_NODES = 200000,       /* IR nodes in one graph */
    FE_MAX_DIM = 1 << 20,        /* channels, kernel, features */
};

#endif
