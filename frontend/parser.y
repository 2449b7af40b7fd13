/* parser.y - the grammar of the .net language (see docs/language.md).
 *
 * A pure (reentrant) LALR(1) parser with locations.  Semantic actions only
 * build the AST in the FeParse's arena; `a |> f(args)` is desugared here to
 * the call f(a, args) with `piped` set; `(a, b)` and `[a, b]` are both the
 * list literal AST_LIST (`(a)` stays a, `(a,)` is a one-element list).  The first syntax error stops the
 * parse (no recovery): the arena is freed by the caller, so nothing leaks. */
%define api.pure full
%locations
%define parse.error verbose
%param {yyscan_t scanner}
%parse-param {FeParse *p}

%code requires {
#include "frontend/ast.h"
#ifndef YY_TYPEDEF_YY_SCANNER_T
#define YY_TYPEDEF_YY_SCANNER_T
typedef void *yyscan_t;
#endif
}

%{
/* Deep nesting fails as a located "too deeply nested" error, not a crash. */
#define YYMAXDEPTH 2000
%}

%code {
#include <string.h>
#include "lexer.h"

#define LOC(l) ((IrLoc){ (l).first_line, (l).first_column })
#define NEW(k, l) ast_new(p->arena, (k), LOC(l))

static void yyerror(YYLTYPE *l, yyscan_t scanner, FeParse *p, const char *msg);
static Ast *binary(FeParse *p, YYLTYPE l, int op, Ast *a, Ast *b);
}

%union {
    long long i;
    double f;
    char *s;
    Ast *n;
    AstList l;
}

%token END 0 "end of file"
%token ERROR "invalid token"
%token <i> INT "integer"
%token <f> FLOAT "number"
%token <s> IDENT "identifier"
%token BLOCK "block" NET "net" TRAIN "train" PARAM "param" FOR "for" IN "in"
%token IF "if" ELSE "else" RETURN "return" SCOPE "scope" AS "as" TRUE "true" FALSE "false"
%token PIPE "|>" DOTDOT ".." EQ "==" NE "!=" LE "<=" GE ">=" AND "&&" OR "||"
%token START_EXPR "start of a value"   /* first token of fe_parse_expr's input */

%type <n> item block net train param pdecl stmt if_stmt expr target call arg setting
%type <l> items stmts settings params params_opt args args_opt elems elems_opt names
%type <s> opt_as

%right '?' ':'
%precedence PIPE
%left OR
%left AND
%left EQ NE
%left '<' '>' LE GE
%left '+' '-'
%left '*' '/' '%'
%precedence '!' UMINUS
%precedence '['

%%

program: items                  { p->root = NEW(AST_PROGRAM, @$); p->root->list = $1.head; }
       | START_EXPR expr        { p->root = $2; }
       ;
items: %empty                   { $$ = (AstList){0}; }
     | items item               { $$ = $1; if ($2) ast_list_push(&$$, $2); }
     ;
item: block | net | train | param
    | ';'                       { $$ = NULL; }
    ;

param: PARAM IDENT '=' expr     { $$ = NEW(AST_PARAM, @2); $$->name = $2; $$->a = $4; }
     ;
train: TRAIN '{' settings '}'   { $$ = NEW(AST_TRAIN, @1); $$->list = $3.head; }
     ;
settings: %empty                { $$ = (AstList){0}; }
        | settings setting      { $$ = $1; ast_list_push(&$$, $2); }
        | settings ';'          { $$ = $1; }
        | settings ','          { $$ = $1; }
        ;
setting: IDENT '=' expr         { $$ = NEW(AST_SETTING, @1); $$->name = $1; $$->a = $3; }
       ;

block: BLOCK IDENT '(' params_opt ')' '{' stmts '}'
                                { $$ = NEW(AST_BLOCK, @2); $$->name = $2; $$->list = $4.head;
                                  $$->list2 = $7.head; }
     ;
params_opt: %empty              { $$ = (AstList){0}; }
          | params
          | params ','
          ;
params: pdecl                   { $$ = (AstList){0}; ast_list_push(&$$, $1); }
      | params ',' pdecl        { $$ = $1; ast_list_push(&$$, $3); }
      ;
pdecl: IDENT                    { $$ = NEW(AST_PARAM, @1); $$->name = $1; }
     | IDENT '=' expr           { $$ = NEW(AST_PARAM, @1); $$->name = $1; $$->a = $3; }
     ;

net: NET '{' stmts '}'          { $$ = NEW(AST_NET, @1); $$->list = $3.head; }
   ;

stmts: %empty                   { $$ = (AstList){0}; }
     | stmts stmt               { $$ = $1; if ($2) ast_list_push(&$$, $2); }
     ;
stmt: IDENT '=' expr            { $$ = NEW(AST_ASSIGN, @1); $$->name = $1; $$->a = $3; }
    | FOR IDENT IN expr DOTDOT expr '{' stmts '}'
                                { $$ = NEW(AST_FOR, @1); $$->name = $2; $$->a = $4; $$->b = $6;
                                  $$->list = $8.head; }
    | FOR IDENT IN expr '{' stmts '}'
                                { $$ = NEW(AST_FOR, @1); $$->name = $2; $$->a = $4; $$->list = $6.head; }
    | FOR '(' names ')' IN expr '{' stmts '}'
                                { $$ = NEW(AST_FOR, @1); $$->list2 = $3.head; $$->a = $6; $$->list = $8.head; }
    | FOR IDENT ',' names IN expr '{' stmts '}'
                                { $$ = NEW(AST_FOR, @1); Ast *n = NEW(AST_NAME, @2); n->name = $2;
                                  n->next = $4.head; $$->list2 = n; $$->a = $6; $$->list = $8.head; }
    | if_stmt
    | RETURN expr               { $$ = NEW(AST_RETURN, @1); $$->a = $2; }
    | SCOPE IDENT '{' stmts '}' { $$ = NEW(AST_SCOPE, @2); $$->name = $2; $$->list = $4.head; }
    | ';'                       { $$ = NULL; }
    ;
if_stmt: IF expr '{' stmts '}'  { $$ = NEW(AST_IF, @1); $$->a = $2; $$->list = $4.head; }
       | IF expr '{' stmts '}' ELSE '{' stmts '}'
                                { $$ = NEW(AST_IF, @1); $$->a = $2; $$->list = $4.head;
                                  $$->list2 = $8.head; }
       | IF expr '{' stmts '}' ELSE if_stmt
                                { $$ = NEW(AST_IF, @1); $$->a = $2; $$->list = $4.head;
                                  $$->list2 = $7; }
       ;

expr: INT                       { $$ = NEW(AST_INT, @1); $$->ival = $1; }
    | FLOAT                     { $$ = NEW(AST_FLOAT, @1); $$->fval = $1; }
    | TRUE                      { $$ = NEW(AST_BOOL, @1); $$->ival = 1; }
    | FALSE                     { $$ = NEW(AST_BOOL, @1); $$->ival = 0; }
    | IDENT                     { $$ = NEW(AST_NAME, @1); $$->name = $1; }
    | call
    | '(' expr ')'              { $$ = $2; }
    | '(' expr ',' elems_opt ')'
                                { $$ = NEW(AST_LIST, @1); $2->next = $4.head; $$->list = $2; }
    | '[' elems_opt ']'         { $$ = NEW(AST_LIST, @1); $$->list = $2.head; }
    | expr '[' expr ']'         { $$ = NEW(AST_INDEX, @2); $$->a = $1; $$->b = $3; }
    | expr PIPE target          { $$ = $3; Ast *a = NEW(AST_ARG, @1); a->a = $1;
                                  a->next = $$->list; $$->list = a; $$->piped = 1; }
    | expr '?' expr ':' expr    { $$ = NEW(AST_COND, @2); $$->a = $1; $$->b = $3; $$->c = $5; }
    | expr OR expr              { $$ = binary(p, @2, AST_OP_OR, $1, $3); }
    | expr AND expr             { $$ = binary(p, @2, AST_OP_AND, $1, $3); }
    | expr EQ expr              { $$ = binary(p, @2, AST_OP_EQ, $1, $3); }
    | expr NE expr              { $$ = binary(p, @2, AST_OP_NE, $1, $3); }
    | expr '<' expr             { $$ = binary(p, @2, '<', $1, $3); }
    | expr '>' expr             { $$ = binary(p, @2, '>', $1, $3); }
    | expr LE expr              { $$ = binary(p, @2, AST_OP_LE, $1, $3); }
    | expr GE expr              { $$ = binary(p, @2, AST_OP_GE, $1, $3); }
    | expr '+' expr             { $$ = binary(p, @2, '+', $1, $3); }
    | expr '-' expr             { $$ = binary(p, @2, '-', $1, $3); }
    | expr '*' expr             { $$ = binary(p, @2, '*', $1, $3); }
    | expr '/' expr             { $$ = binary(p, @2, '/', $1, $3); }
    | expr '%' expr             { $$ = binary(p, @2, '%', $1, $3); }
    | '!' expr                  { $$ = NEW(AST_UNARY, @1); $$->op = '!'; $$->a = $2; }
    | '-' expr %prec UMINUS     { $$ = NEW(AST_UNARY, @1); $$->op = '-'; $$->a = $2; }
    ;

/* The elements of a list literal, a trailing comma allowed. */
elems_opt: %empty               { $$ = (AstList){0}; }
         | elems
         | elems ','
         ;
elems: expr                     { $$ = (AstList){0}; ast_list_push(&$$, $1); }
     | elems ',' expr           { $$ = $1; ast_list_push(&$$, $3); }
     ;
/* The names a for loop binds from each element: for (n, c) in conv_arch. */
names: IDENT                    { $$ = (AstList){0}; Ast *n = NEW(AST_NAME, @1); n->name = $1; ast_list_push(&$$, n); }
     | names ',' IDENT          { $$ = $1; Ast *n = NEW(AST_NAME, @3); n->name = $3; ast_list_push(&$$, n); }
     ;

/* After |>, a bare name is a call with no arguments: x |> relu. */
target: call
      | IDENT opt_as            { $$ = NEW(AST_CALL, @1); $$->name = $1; $$->label = $2; }
      ;
call: IDENT '(' args_opt ')' opt_as
                                { $$ = NEW(AST_CALL, @1); $$->name = $1; $$->list = $3.head;
                                  $$->label = $5; }
    ;
opt_as: %empty                  { $$ = NULL; }
      | AS IDENT                { $$ = $2; }
      ;
args_opt: %empty                { $$ = (AstList){0}; }
        | args
        | args ','
        ;
args: arg                       { $$ = (AstList){0}; ast_list_push(&$$, $1); }
    | args ',' arg              { $$ = $1; ast_list_push(&$$, $3); }
    ;
arg: expr                       { $$ = NEW(AST_ARG, @1); $$->a = $1; }
   | IDENT '=' expr             { $$ = NEW(AST_ARG, @1); $$->name = $1; $$->a = $3; }
   | IN '=' expr                { $$ = NEW(AST_ARG, @1); $$->name = "in"; $$->a = $3; }
   ;

%%

static Ast *binary(FeParse *p, YYLTYPE l, int op, Ast *a, Ast *b) {
    Ast *n = NEW(AST_BINARY, l);
    n->op = op;
    n->a = a;
    n->b = b;
    return n;
}

static void yyerror(YYLTYPE *l, yyscan_t scanner, FeParse *p, const char *msg) {
    (void)scanner;
    if (p->lex_errors)
        return;   /* the scanner has reported this one */
    if (strstr(msg, "exhausted")) {
        diag_error(p->d, LOC(*l), "split the expression with named values", "nesting is too deep");
        return;
    }
    const char *hint = NULL;
    if (strstr(msg, "unexpected end of file"))
        hint = "a closing `}`, `)` or `]` may be missing";
    else if (strstr(msg, "unexpected '='"))
        hint = "`=` assigns a name; compare with `==`";
    diag_error(p->d, LOC(*l), hint, "%s", msg);
}

static int parse(const char *src, size_t len, FeArena *ar, Diag *d, int start, Ast **out) {
    FeParse p = { .arena = ar, .d = d, .start = start };
    yyscan_t sc;
    *out = NULL;
    if (yylex_init_extra(&p, &sc))
        return diag_error_noloc(d, "cannot start the scanner");
    YY_BUFFER_STATE b = yy_scan_bytes(src, (int)len, sc);
    int rc = yyparse(sc, &p);
    yy_delete_buffer(b, sc);
    yylex_destroy(sc);
    if (rc != 0 || p.lex_errors || !p.root)
        return -1;
    *out = p.root;
    return 0;
}

int fe_parse(const char *src, size_t len, FeArena *ar, Diag *d, Ast **out) {
    return parse(src, len, ar, d, 0, out);
}

int fe_parse_expr(const char *src, size_t len, FeArena *ar, Diag *d, Ast **out) {
    return parse(src, len, ar, d, START_EXPR, out);
}
