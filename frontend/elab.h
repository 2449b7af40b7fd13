/* elab.h - what elaboration (elab.c: the interpreter) and the built-in ops
 * (builtins.c: conv, linear, pools, batchnorm, dropout, concat, add) share.
 * Internal to the front end. */
#ifndef NETC_ELAB_H
#define NETC_ELAB_H

#include "ast.h"

typedef enum { V_NONE, V_INT, V_BOOL, V_FLOAT, V_TENSOR } VKind;
typedef struct { VKind k; long long i; double f; } Val;   /* tensor: i = value id */

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
} Elab;

typedef struct { const char *name; Val v; IrLoc loc; } Arg;

typedef struct Builtin Builtin;

/* elab.c */
const char *elab_kind_str(VKind k);
/* The full name of a new layer of `kind` (or `label`) in scope ns. */
const char *elab_layer_name(Elab *E, Names *ns, const char *kind, const char *label, IrLoc loc,
                            const char **local);

/* builtins.c */
const Builtin *elab_find_builtin(const char *name);
const char *elab_builtin_name(int i);        /* NULL past the last */
int elab_build_add(Elab *E, Frame *F, const Ast *n, Val a, Val b, Val *out);
int elab_run_builtin(Elab *E, Frame *F, const Ast *call, const Builtin *b, Arg *args, int nargs, Val *out);

#endif
