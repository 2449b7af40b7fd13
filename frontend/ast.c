/* ast.c - the arena, AST constructors and the S-expression printer. */
#include "ast.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

struct FeChunk { FeChunk *next; size_t cap; _Alignas(16) unsigned char data[]; };

void fe_arena_init(FeArena *a) { memset(a, 0, sizeof *a); }

void fe_arena_free(FeArena *a) {
    for (FeChunk *c = a->head, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    memset(a, 0, sizeof *a);
}

void *fe_arena_alloc(FeArena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (!a->head || a->used + n > a->cap) {
        size_t cap = n > 65536 ? n : 65536;
        FeChunk *c = ir_xmalloc(sizeof *c + cap);
        c->next = a->head;
        c->cap = cap;
        a->head = c;
        a->used = 0;
        a->cap = cap;
    }
    void *p = a->head->data + a->used;
    a->used += n;
    memset(p, 0, n);
    return p;
}

char *fe_arena_strndup(FeArena *a, const char *s, size_t n) {
    char *p = fe_arena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

char *fe_arena_printf(FeArena *a, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char probe[1];
    int n = vsnprintf(probe, sizeof probe, fmt, ap);
    va_end(ap);
    char *p = fe_arena_alloc(a, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

Ast *ast_new(FeArena *ar, AstKind k, IrLoc loc) {
    Ast *n = fe_arena_alloc(ar, sizeof *n);
    n->kind = k;
    n->loc = loc;
    return n;
}

void ast_list_push(AstList *l, Ast *n) {
    if (l->tail)
        l->tail->next = n;
    else
        l->head = n;
    l->tail = n;
}

int ast_list_len(const Ast *n) {
    int k = 0;
    for (; n; n = n->next)
        k++;
    return k;
}

const char *ast_op_str(int op) {
    static char one[128][2];
    switch (op) {
    case AST_OP_EQ: return "==";
    case AST_OP_NE: return "!=";
    case AST_OP_LE: return "<=";
    case AST_OP_GE: return ">=";
    case AST_OP_AND: return "&&";
    case AST_OP_OR: return "||";
    }
    if (op > 0 && op < 128) {
        one[op][0] = (char)op;
        return one[op];
    }
    return "?";
}

static void print_list(const Ast *n, FILE *f) {
    for (; n; n = n->next) {
        fputc(' ', f);
        ast_print(n, f);
    }
}

/* One node per parenthesised form: (kind fields children...). */
void ast_print(const Ast *n, FILE *f) {
    if (!n) {
        fputs("nil", f);
        return;
    }
    switch (n->kind) {
    case AST_INT: fprintf(f, "%lld", n->ival); return;
    case AST_FLOAT: fprintf(f, "%g", n->fval); return;
    case AST_BOOL: fputs(n->ival ? "true" : "false", f); return;
    case AST_NAME: fputs(n->name, f); return;
    case AST_CALL:
        fprintf(f, "(call %s", n->name);
        print_list(n->list, f);
        if (n->label)
            fprintf(f, " as %s", n->label);
        fputc(')', f);
        return;
    case AST_ARG:
        if (!n->name) {
            ast_print(n->a, f);
            return;
        }
        fprintf(f, "%s=", n->name);
        ast_print(n->a, f);
        return;
    case AST_BINARY:
    case AST_UNARY:
        fprintf(f, "(%s ", ast_op_str(n->op));
        ast_print(n->a, f);
        if (n->kind == AST_BINARY) {
            fputc(' ', f);
            ast_print(n->b, f);
        }
        fputc(')', f);
        return;
    case AST_COND:
        fputs("(? ", f);
        ast_print(n->a, f);
        fputc(' ', f);
        ast_print(n->b, f);
        fputc(' ', f);
        ast_print(n->c, f);
        fputc(')', f);
        return;
    case AST_LIST:
        fputs("(list", f);
        print_list(n->list, f);
        fputc(')', f);
        return;
    case AST_INDEX:
        fputs("(index ", f);
        ast_print(n->a, f);
        fputc(' ', f);
        ast_print(n->b, f);
        fputc(')', f);
        return;
    case AST_ASSIGN:
    case AST_PARAM:
    case AST_SETTING:
        fprintf(f, "(%s %s ", n->kind == AST_ASSIGN ? "=" : n->kind == AST_PARAM ? "param" : "set",
                n->name);
        ast_print(n->a, f);
        fputc(')', f);
        return;
    case AST_FOR:
        if (n->list2) {
            fputs("(for (", f);
            for (const Ast *v = n->list2; v; v = v->next)
                fprintf(f, "%s%s", v->name, v->next ? " " : "");
            fputs(") ", f);
        } else {
            fprintf(f, "(for %s ", n->name);
        }
        ast_print(n->a, f);
        if (n->b) {
            fputc(' ', f);
            ast_print(n->b, f);
        }
        print_list(n->list, f);
        fputc(')', f);
        return;
    case AST_IF:
        fputs("(if ", f);
        ast_print(n->a, f);
        fputs(" (then", f);
        print_list(n->list, f);
        fputs(") (else", f);
        print_list(n->list2, f);
        fputs("))", f);
        return;
    case AST_RETURN:
        fputs("(return ", f);
        ast_print(n->a, f);
        fputc(')', f);
        return;
    case AST_SCOPE:
        fprintf(f, "(scope %s", n->name);
        print_list(n->list, f);
        fputc(')', f);
        return;
    case AST_TRAIN:
        fputs("(train", f);
        print_list(n->list, f);
        fputc(')', f);
        return;
    case AST_BLOCK:
        fprintf(f, "(block %s (", n->name);
        for (const Ast *p = n->list; p; p = p->next) {
            fputs(p->name, f);
            if (p->a) {
                fputc('=', f);
                ast_print(p->a, f);
            }
            if (p->next)
                fputc(' ', f);
        }
        fputc(')', f);
        print_list(n->list2, f);
        fputc(')', f);
        return;
    case AST_NET:
        fputs("(net", f);
        print_list(n->list, f);
        fputc(')', f);
        return;
    case AST_PROGRAM:
        fputs("(program", f);
        print_list(n->list, f);
        fputc(')', f);
        return;
    }
}

/* Levenshtein distance of two short names; long ones count as far apart. */
int fe_edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 99;
    int row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}
