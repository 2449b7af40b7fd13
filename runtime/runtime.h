/* runtime.h - executing programs: the persistent tensors of a model, a
 * session that binds a train and an eval program to one backend, and the
 * train / eval loops. */
#ifndef NETC_RUNTIME_H
#define NETC_RUNTIME_H

#include <stdint.h>
#include "../codegen/backend.h"

/* Named persistent tensors (weights, gradients, running statistics, the
 * input batch).  Programs bind their slots to them by name, so the train and
 * eval programs share weights. */
typedef struct {
    char *name;
    int kind;              /* SlotKind */
    int64_t bytes;
    void *data;            /* 64-byte aligned, zeroed at creation */
    int rank;
    int64_t shape[4];      /* with the batch resolved */
    int newer;             /* with a device backend: RT_HOST_NEWER, RT_DEVICE_NEWER or 0 (the same) */
} RtTensor;

enum { RT_HOST_NEWER = 1, RT_DEVICE_NEWER = 2 };

typedef struct {
    RtTensor *t;
    int n;
} RtModel;

RtTensor *rt_model_find(const RtModel *m, const char *name);
/* Binds every slot of p to the tensor of its name, creating missing ones;
 * slots receives one pointer per slot.  -1 (reported) on a size clash. */
int rt_model_bind(RtModel *m, const Program *p, void **slots, Diag *d);
/* The seed's initialisation: Xavier-uniform conv and linear weights, biases
 * U(+-1/sqrt(fan_in)), gamma 1, beta 0, running mean 0, running var 1. */
void rt_model_init(RtModel *m, const Program *p, uint64_t seed);
void rt_model_free(RtModel *m);

typedef struct {
    Program train, eval;
    int has_train;
    const Backend *be;
    void *train_state, *eval_state;
    void **train_slots, **eval_slots;
    void *arena;                /* max of the two programs' arenas */
    RtModel model;
    ThreadPool *pool;
    int own_pool;               /* pool was made by rt_session_open (else shared) */
    int64_t batch;
    int classes;
    int *train_tensor, *eval_tensor; /* per slot: its tensor in model */
    /* data parallel (RtSessionOptions.dist): the train program stops at the
     * gradients; each step sums them over the ranks in one buffer (with the
     * loss and the correct count) and updates the weights here */
    int dist;
    int nupd;                   /* parameters, in the order their gradients become final */
    int *upd_param, *upd_grad;  /* per parameter: its tensor and its gradient's, in model */
    int *upd_slot;              /* per parameter: its gradient's slot in the train program */
    float *dist_buf;            /* every gradient in that order, then the loss and the correct count */
    int64_t dist_n;             /* floats in dist_buf */
    struct RtBucket *buckets;   /* runtime/dist_step.c */
    int nbuckets;
    double dist_sec;            /* time waiting for the allreduces after the steps, all steps together */
    int dev_sum;                /* the backend sums the gradients and updates the weights itself
                                   (cuda: NCCL; Backend.dist_open); the host sums loss and count */
    /* the next batch, staged while a step runs (rt_session_stage_batch) */
    int staged;
    double step_lr;             /* the learning rate of the step begun */
    void *next_img, *next_lab;  /* its host copy, for the input tensors when it is taken */
} RtSession;

typedef struct {
    const char *target;         /* NULL: backend_default() */
    int64_t batch;
    int threads;
    int verify;
    int train;                  /* also build the training program */
    const char *cpu;            /* cpu target: --cpu spec, NULL: $NETC_CPU or native */
    const FuseOptions *fuse;    /* NULL: every fusion pattern */
    ThreadPool *pool;           /* NULL: a pool of `threads` of its own; else shared with
                                   other sessions run in turn, outliving this one */
    const PlanOptions *plan;    /* NULL: the plan's defaults */
    int dist;                   /* one of rt_dist_size() ranks training one model (runtime/dist.h):
                                   batch is this rank's part of the batch */
    int sync_bn;                /* with dist: training batch norms take the statistics of the
                                   whole batch, over every rank (base/syncbn.h) */
    int tf32;                   /* --precision tf32: the cuda target's tensor cores */
} RtSessionOptions;

/* Compiles fwd_train (train-mode graph, may be NULL when !o->train) and
 * fwd_eval into programs for one backend and allocates their memory. */
int rt_session_open(RtSession *s, const IrGraph *fwd_train, const IrGraph *fwd_eval,
                    const RtSessionOptions *o, Diag *d);
void rt_session_close(RtSession *s);
/* With a device backend: the host copies of every tensor have been written
 * (weights loaded or set by hand), so the next step uploads them. */
void rt_session_host_wrote(RtSession *s);
/* With a device backend: brings every tensor the device changed back to
 * the host (before the host reads weights, gradients or statistics).  0 or
 * -1 (reported through d). */
int rt_session_to_host(const RtSession *s, Diag *d);
/* images [B,C,H,W] and labels [B] go into the input slots. */
void rt_session_set_batch(RtSession *s, const float *images, const int32_t *labels);
/* One SGD step on the batch set; returns the loss, and counts correct
 * predictions among the first `count` rows.  Data parallel: the loss is
 * the mean of the ranks' losses (that of the whole batch) and the count
 * is over every rank's rows, the same on every rank. */
int rt_session_train_step(RtSession *s, double lr, uint64_t seed, uint64_t step, double *loss, int64_t count,
                          int64_t *correct);
/* The same step in halves, so that the host prepares the next batch while
 * a device runs this one: begin uploads what the host wrote and starts the
 * step (a host backend runs all of it there); end waits for it, reads back
 * the loss and logits and scores them.  Between the two,
 * rt_session_stage_batch may give the next batch when rt_session_can_stage
 * (a backend with Backend.put_next, not data parallel, and not switched
 * off with NETC_CUDA_OVERLAP=0): it goes up to the device beside the
 * running step, and the next begin takes it as if rt_session_set_batch had
 * set it.  rt_session_set_batch drops a staged batch. */
int rt_session_train_begin(RtSession *s, double lr, uint64_t seed, uint64_t step);
int rt_session_train_end(RtSession *s, double *loss, int64_t count, int64_t *correct);
int rt_session_can_stage(const RtSession *s);
int rt_session_stage_batch(RtSession *s, const float *images, const int32_t *labels);
/* runtime/dist_step.c, for rt_session_*: the gradient buckets of a
 * data-parallel session, summed as they become final during the step
 * (begin/end bracket the step), then the update. */
int rt_dist_open(RtSession *s, Diag *d);
void rt_dist_step_begin(RtSession *s);
void rt_dist_step_end(RtSession *s);
int rt_dist_update(RtSession *s, double lr, double *loss, int64_t *correct);
void rt_dist_close(RtSession *s);
/* Data parallel: rank 0's weights (params) and running statistics
 * (state) to every rank.  0 or -1 (reported). */
int rt_session_bcast(RtSession *s, int params, int state, Diag *d);
/* Eval-mode forward of the batch set: summed loss and correct count over the
 * first `count` rows. */
int rt_session_eval(RtSession *s, int64_t count, double *loss_sum, int64_t *correct);

/* The training loop of `netc train` and of compiled executables. */
typedef struct {
    int epochs;
    double lr;
    int64_t batch;
    int resize;
    uint64_t seed;
    const char *data_dir;       /* NULL: the default */
    const char *checkpoint;     /* written after every epoch, or NULL */
    int resume;
    const char *metrics;        /* JSON lines, or NULL */
    const char *plot;           /* SVG, or NULL */
    const char *title;
    int max_steps;              /* stop each epoch after this many steps (0: all); for tests */
    int quiet;
} RtTrainOptions;

int rt_train(RtSession *s, const RtTrainOptions *o, Diag *d);
/* Test-set loss and accuracy with the weights in s. */
int rt_evaluate(RtSession *s, const char *data_dir, int resize, double *loss, double *acc, Diag *d);

/* Checkpoints: every param and state tensor, by name, plus metadata. */
int rt_checkpoint_save(const RtSession *s, const char *path, int epoch, uint64_t step, uint64_t seed, Diag *d);
/* Loads weights into s; epoch/step/seed (may be NULL) from the metadata. */
int rt_checkpoint_load(RtSession *s, const char *path, int *epoch, uint64_t *step, uint64_t *seed, Diag *d);

#endif
