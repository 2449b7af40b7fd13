/* elab.h - what elaboration (elab.c: the interpreter), the values
 * (values.c: arithmetic, lists, len/int/channels/height/width) and the
 * built-in ops (builtins.c: conv, linear, pools, batchnorm, dropout, concat,
 * add) share.  Internal to the front end. */
#ifndef NETC_ELAB_H
#define NETC_ELAB_H

#include "ast.h"

typedef enum { V_NONE, V_INT, V_BOOL, V_FLOAT, V_TENSOR, V_LIST } VKind;
typedef struct FeList FeList;
/* int, bool: i; real (V_FLOAT): f; tensor: i = IR value id; list: l */
typedef struct { VKind k; long long i; double f; const FeList *l; } Val;
/* An immutable list: n items, depth 1 + the deepest nested list's. */
struct FeList { int n, depth; Val *item; };
enum { FE_MAX_LIST_DEPTH = 32 };

typedef struct Var { const char *name; Val v; struct Var *next; } Var;

/* A naming scope: its path and the local names already taken in it. */
typedef struct {
    const char *path;
    const char **set;                 /* open-addressing hash set of names */
    int cap, n;
    struct Count { const char *kind; int k; struct Count *next; } *counts;
} Names;

typedef struct Frame {
    Var *vars;
    Names *names;
    const Ast *block;                 /* the block running here (NULL: net) */
    struct Frame *caller;
    int returned;
    Val ret;
} Frame;

typedef struct {
    FeArena ar;
    const FeOptions *o;
    IrGraph *g;
    Diag *d;
    const Ast *blocks;                /* first item of the program; scan for AST_BLOCK */
    Var *globals;                     /* network parameters */
    int depth, block_depth, ndropout;
    long steps;
    long work;                        /* expression evaluations, bounded by FE_MAX_WORK */
    int shaped;                       /* nodes whose shapes are inferred (values.c) */
} Elab;

typedef struct { const char *name; Val v; IrLoc loc; } Arg;

typedef struct Builtin Builtin;

/* elab.c */
const char *elab_kind_str(VKind k);
/* The full name of a new layer of `kind` (or `label`) in scope ns. */
const char *elab_layer_name(Elab *E, Names *ns, const char *kind, const char *label, IrLoc loc,
                            const char **local);

/* values.c */
int elab_list_new(Elab *E, IrLoc loc, const Val *items, int n, Val *out);
int elab_index(Elab *E, const Ast *n, Val a, Val b, Val *out);
int elab_arith(Elab *E, const Ast *n, Val a, Val b, Val *out);
int elab_compare(Elab *E, const Ast *n, Val a, Val b, Val *out);
int elab_is_function(const char *name);
const char *elab_function_name(int i);      /* NULL past the last */
int elab_call_function(Elab *E, const Ast *call, const Arg *args, int nargs, Val *out);

/* builtins.c */
const Builtin *elab_find_builtin(const char *name);
const char *elab_builtin_name(int i);        /* NULL past the last */
int elab_build_add(Elab *E, Frame *F, const Ast *n, Val a, Val b, Val *out);
int elab_run_builtin(Elab *E, Frame *F, const Ast *call, const Builtin *b, Arg *args, int nargs, Val *out);

#endif
