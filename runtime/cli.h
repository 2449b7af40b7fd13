/* cli.h - the commands shared by `netc` and the executables `netc compile`
 * makes: argument parsing, building a network from its source, and the
 * train / eval / predict / step commands.  LLVM-free. */
#ifndef NETC_CLI_H
#define NETC_CLI_H

#include <stdint.h>
#include "../frontend/frontend.h"
#include "runtime.h"

enum { RT_MAX_DEFINES = 16 };

typedef struct {
    const char *file;          /* the .net file (netc) */
    const char *target;        /* --target */
    const char *cpu;           /* --cpu NAME[,+feature,...] (cpu target) */
    FuseOptions fuse;          /* --fuse (default: every pattern) */
    PlanOptions plan;          /* --concat (default: inplace) */
    int threads;               /* --threads */
    int epochs;                /* --epochs (0: the file's) */
    double lr;                 /* --lr (0: the file's) */
    int64_t batch;             /* --batch (0: the file's) */
    int resize;                /* --resize (0: the file's) */
    uint64_t seed;             /* --seed */
    const char *data;          /* --data */
    const char *checkpoint;    /* --checkpoint */
    int resume;                /* --resume */
    const char *metrics;       /* --metrics */
    const char *plot;          /* --plot */
    const char *weights;       /* --weights */
    const char *out;           /* -o / --out */
    const char *in;            /* --in */
    const char *mode;          /* --mode train|eval */
    const char *format;        /* --format text|dot */
    const char *dump_after;    /* --dump-after */
    int memory, llvm, params, train_graph, kernels, cuda, ptx; /* dump flags */
    int steps, warmup, json;   /* bench */
    int compare_fuse;          /* bench --compare-fuse */
    int sync_bn;               /* train --sync-bn (under mpirun) */
    int tf32;                  /* --precision tf32 (target cuda) */
    int ranks;                 /* compile --ranks N; in an executable: the ranks it was compiled for */
    int max_steps;             /* --max-steps */
    int verify;                /* --verify */
    int quiet;
    FeDefine defines[RT_MAX_DEFINES];
    int ndefines;
    const char *images;        /* predict: IDX file */
    int limit;                 /* predict: how many */
} RtArgs;

/* Parses argv[first..] into a (defaults set first).  Flags not in `allowed`
 * (a space-separated list of flag names without dashes) are errors.  The
 * first non-flag argument is a->file when want_file.  Returns 0 or -1
 * (message printed).  The names of a->defines are allocated: the caller
 * frees them. */
int rt_args_parse(RtArgs *a, int argc, char **argv, int first, const char *cmd, const char *allowed, int want_file);

/* The model a command runs: a .net source and its name. */
typedef struct {
    const char *name;          /* file name for messages */
    const char *src;           /* NULL: read name from disk */
    size_t len;
} RtSource;

/* Builds the forward graph of src in `mode` with a's defines and resize,
 * shapes inferred.  *text receives the source read from disk (caller frees). */
int rt_build_graph(const RtSource *src, const RtArgs *a, IrMode mode, IrGraph *g, char **text, Diag *d);
/* Builds both graphs and opens a session with a's target, batch, threads. */
int rt_open_session(const RtSource *src, const RtArgs *a, int train, RtSession *s, IrGraph *gt, IrGraph *ge,
                    char **text, Diag *d);

/* The session of `train` (and `bench`): under mpirun, one rank's, its
 * part of the batch in a->batch and its threads in a->threads (checked
 * to match the other ranks' network and settings). */
int rt_open_train_session(const RtSource *src, RtArgs *a, RtSession *s, IrGraph *gt, IrGraph *ge, char **text,
                          Diag *d);
int rt_cmd_train(const RtSource *src, const RtArgs *a);
int rt_cmd_eval(const RtSource *src, const RtArgs *a);
int rt_cmd_predict(const RtSource *src, const RtArgs *a);
int rt_cmd_step(const RtSource *src, const RtArgs *a);

#endif
