/* cuda_dist.c - the gradients of a data-parallel step summed over the
 * ranks on the devices, with NCCL, as llm.c and DDP do.
 *
 * Every rank opens NCCL alike (or none does: then the runtime sums on the
 * host): rank 0's unique id goes to the others over MPI (BackendDist's
 * bcast), and ncclCommInitRank makes the communicator.  During the step,
 * each bucket's sums wait on an event recorded after the kernel that
 * completes the bucket and run on a stream of their own, one in-place
 * ncclAllReduce per gradient inside a group, while the backward pass goes
 * on on the step's stream.  Then the step's stream waits for the sums and
 * runs one generated kernel that applies w -= lr * (sum * (1 / ranks)) to
 * every parameter, so that weights and gradients never leave the device.
 * The host waits for that kernel by polling its event, at most
 * $NETC_DIST_TIMEOUT seconds (default 300): a rank that died leaves the
 * others' sums unfinished, and the communicator is aborted with a message
 * instead of a hang. */
#include "cuda_dist.h"
#include "cuda_src.h"
#include "nvrtc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { CUDA_ERROR_NOT_READY = 600, SGD_BLOCK = 256 };

struct CudaDist {
    const CudaDriver *drv;
    const NcclTable *nc;
    void *comm, *stream;
    int rank, size;
    int n, nbuckets;
    int *grad, *bucket_end, *bucket_kernel, *started;
    size_t *count;              /* floats per gradient */
    void **ev;                  /* per bucket: its kernel has run */
    void *summed, *updated;     /* the NCCL stream's work; the update */
    char *src;                  /* the update kernel's CUDA C */
    void *module, *fn;
    unsigned grid;
    double timeout;
};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static const char *nccl_err(const NcclTable *nc, int rc) {
    const char *s = nc->error_string ? nc->error_string(rc) : NULL;
    return s ? s : "unknown NCCL error";
}

static int cuda_fail(const CudaDist *c, Diag *d, const char *call, int rc) {
    return diag_error_noloc(d, "%s failed: %s (%d)", call, cg_cuda_error_name(c->drv, rc), rc);
}

/* The update kernel: thread i updates element i of the parameters laid
 * end to end. */
char *cg_cuda_dist_update_source(const Program *p, const BackendDist *bd, int64_t *total) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    fputs(cg_cuda_prelude(), f);
    char scale[32];
    snprintf(scale, sizeof scale, "%.9ef", (double)(1.0f / (float)bd->size));
    fprintf(f, "\n/* w -= lr * (sum of the ranks' gradients * (1 / %d)) */\n"
               "KERNEL netc_dist_sgd(KARGS) {\n"
               "    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n"
               "    (void)A; (void)I; (void)seed; (void)step;\n",
            bd->size);
    *total = 0;
    for (int q = 0; q < bd->n; q++) {
        long long cnt = (long long)(p->slots[bd->param[q]].bytes / (int64_t)sizeof(float));
        fprintf(f, "    if (i < %lldLL) { ((float *)S[%d])[i] -= lr * (((const float *)S[%d])[i] * %s); return; }\n"
                   "    i -= %lldLL;   /* %s */\n",
                cnt, bd->param[q], bd->grad[q], scale, cnt, p->slots[bd->param[q]].name);
        *total += cnt;
    }
    fputs("}\n", f);
    fclose(f);
    return text;
}

/* Every rank's h the same: 1; else 0 with rank r in *r (-2: failed). */
static int all_agree(BackendDist *bd, uint64_t h, int *r) {
    *r = bd->agree(h);
    return *r == -1;
}

static int setup(CudaDist *c, const Program *p, BackendDist *bd, Diag *d) {
    const CudaDriver *drv = c->drv;
    int rc;
    if ((rc = drv->stream_create(&c->stream, 1 /* CU_STREAM_NON_BLOCKING */))) {
        c->stream = NULL;
        return cuda_fail(c, d, "cuStreamCreate", rc);
    }
    c->ev = calloc((size_t)c->nbuckets + 1, sizeof(void *));
    for (int b = 0; b < c->nbuckets; b++)
        if ((rc = drv->event_create(&c->ev[b], 2 /* CU_EVENT_DISABLE_TIMING */))) {
            c->ev[b] = NULL;
            return cuda_fail(c, d, "cuEventCreate", rc);
        }
    if ((rc = drv->event_create(&c->summed, 2))) return c->summed = NULL, cuda_fail(c, d, "cuEventCreate", rc);
    if ((rc = drv->event_create(&c->updated, 2))) return c->updated = NULL, cuda_fail(c, d, "cuEventCreate", rc);
    int64_t total;
    c->src = cg_cuda_dist_update_source(p, bd, &total);
    c->grid = (unsigned)((total + SGD_BLOCK - 1) / SGD_BLOCK);
    char *ptx = NULL;
    size_t len = 0;
    int hit = 0;
    if (!drv->source && cg_nvrtc_compile_cached(c->src, "netc_dist.cu", "compute_90", &ptx, &len, &hit, d)) return -1;
    rc = cg_cuda_module(drv, drv->source ? c->src : ptx, &c->module, d);
    free(ptx);
    if (rc || cg_cuda_function(drv, c->module, "netc_dist_sgd", &c->fn, d)) return -1;
    return 0;
}

int cg_cuda_dist_open(const CudaDriver *drv, const NcclTable *nc, const char *why, const Program *p, BackendDist *bd,
                      CudaDist **out, Diag *d) {
    *out = NULL;
    int have = nc && drv->stream_create && drv->stream_destroy && drv->stream_wait_event && drv->event_query, r;
    if (nc && !have) why = "the CUDA driver lacks the stream calls";
    if (!all_agree(bd, (uint64_t)have + 1, &r)) {
        if (r == -2) return -1;
        snprintf(bd->why, sizeof bd->why, "%s", have ? "some ranks have no NCCL" : why);
        return 1;
    }
    if (!have) {
        snprintf(bd->why, sizeof bd->why, "%s", why ? why : "no NCCL");
        return 1;
    }
    /* rank 0's unique id, and whether it has one */
    struct { int ok; NcclId id; } boot;
    memset(&boot, 0, sizeof boot);
    if (bd->rank == 0) {
        int rc = nc->get_unique_id(&boot.id);
        boot.ok = rc == 0;
        if (rc) snprintf(bd->why, sizeof bd->why, "ncclGetUniqueId failed on rank 0: %s", nccl_err(nc, rc));
    }
    if (bd->bcast(&boot, (int64_t)sizeof boot)) return diag_error_noloc(d, "could not send NCCL's id to the ranks");
    if (!boot.ok) {
        if (bd->rank) snprintf(bd->why, sizeof bd->why, "ncclGetUniqueId failed on rank 0");
        return 1;
    }
    CudaDist *c = calloc(1, sizeof *c);
    c->drv = drv, c->nc = nc, c->rank = bd->rank, c->size = bd->size;
    int rc = nc->comm_init_rank(&c->comm, bd->size, boot.id, bd->rank);
    if (rc) {
        c->comm = NULL;
        snprintf(bd->why, sizeof bd->why, "ncclCommInitRank failed on rank %d: %s", bd->rank, nccl_err(nc, rc));
    }
    if (!all_agree(bd, (uint64_t)(rc == 0) + 1, &r)) {
        if (!rc) snprintf(bd->why, sizeof bd->why, "ncclCommInitRank failed on rank %d", r);
        rc = 1;
    }
    if (rc) {
        if (c->comm) nc->comm_abort(c->comm), c->comm = NULL;
        cg_cuda_dist_close(c);
        return r == -2 ? -1 : 1;
    }
    c->n = bd->n, c->nbuckets = bd->nbuckets;
    c->grad = malloc(sizeof(int) * (size_t)(c->n + 1));
    c->count = malloc(sizeof(size_t) * (size_t)(c->n + 1));
    for (int q = 0; q < c->n; q++) {
        c->grad[q] = bd->grad[q];
        c->count[q] = (size_t)(p->slots[bd->grad[q]].bytes / (int64_t)sizeof(float));
    }
    c->bucket_end = malloc(sizeof(int) * (size_t)(c->nbuckets + 1));
    c->bucket_kernel = malloc(sizeof(int) * (size_t)(c->nbuckets + 1));
    c->started = calloc((size_t)c->nbuckets + 1, sizeof(int));
    memcpy(c->bucket_end, bd->bucket_end, sizeof(int) * (size_t)c->nbuckets);
    memcpy(c->bucket_kernel, bd->bucket_kernel, sizeof(int) * (size_t)c->nbuckets);
    const char *t = getenv("NETC_DIST_TIMEOUT");
    c->timeout = t && atof(t) > 0 ? atof(t) : 300;
    /* a failure here is this rank's alone: it ends the job */
    if (setup(c, p, bd, d)) {
        cg_cuda_dist_close(c);
        return -1;
    }
    *out = c;
    return 0;
}

/* Bucket b's sums, on the NCCL stream once the step's stream is there. */
static int start(CudaDist *c, int b, const CuPtr *addr, Diag *d) {
    const CudaDriver *drv = c->drv;
    const NcclTable *nc = c->nc;
    int rc;
    if ((rc = drv->event_record(c->ev[b], NULL))) return cuda_fail(c, d, "cuEventRecord", rc);
    if ((rc = drv->stream_wait_event(c->stream, c->ev[b], 0))) return cuda_fail(c, d, "cuStreamWaitEvent", rc);
    if ((rc = nc->group_start())) return diag_error_noloc(d, "ncclGroupStart failed: %s", nccl_err(nc, rc));
    for (int q = b ? c->bucket_end[b - 1] : 0; q < c->bucket_end[b] && !rc; q++) {
        void *g = (void *)(uintptr_t)addr[c->grad[q]];
        rc = nc->all_reduce(g, g, c->count[q], NCCL_FLOAT32, NCCL_SUM, c->comm, c->stream);
    }
    int rc2 = nc->group_end();
    if (rc || rc2) return diag_error_noloc(d, "ncclAllReduce failed: %s", nccl_err(nc, rc ? rc : rc2));
    c->started[b] = 1;
    return 0;
}

int cg_cuda_dist_after(CudaDist *c, int k, const CuPtr *addr, Diag *d) {
    for (int b = 0; b < c->nbuckets; b++)
        if (c->bucket_kernel[b] == k && !c->started[b] && start(c, b, addr, d)) return -1;
    return 0;
}

int cg_cuda_dist_finish(CudaDist *c, const CuPtr *addr, void **args, Diag *d) {
    const CudaDriver *drv = c->drv;
    int rc;
    for (int b = 0; b < c->nbuckets; b++)
        if (!c->started[b] && start(c, b, addr, d)) return -1;
    memset(c->started, 0, sizeof(int) * (size_t)c->nbuckets);
    if ((rc = drv->event_record(c->summed, c->stream))) return cuda_fail(c, d, "cuEventRecord", rc);
    if ((rc = drv->stream_wait_event(NULL, c->summed, 0))) return cuda_fail(c, d, "cuStreamWaitEvent", rc);
    if (c->grid && (rc = drv->launch(c->fn, c->grid, 1, 1, SGD_BLOCK, 1, 1, 0, NULL, args, NULL)))
        return cuda_fail(c, d, "cuLaunchKernel (the update)", rc);
    if ((rc = drv->event_record(c->updated, NULL))) return cuda_fail(c, d, "cuEventRecord", rc);
    double t0 = now();
    struct timespec nap = {0, 50000};
    while ((rc = drv->event_query(c->updated)) == CUDA_ERROR_NOT_READY) {
        int async = 0;
        if (c->nc->comm_get_async_error(c->comm, &async) == 0 && async && async != NCCL_IN_PROGRESS) {
            c->nc->comm_abort(c->comm), c->comm = NULL;
            return diag_error_noloc(d, "rank %d: the gradient sums (NCCL) failed: %s", c->rank, nccl_err(c->nc, async));
        }
        if (now() - t0 > c->timeout) {
            c->nc->comm_abort(c->comm), c->comm = NULL;
            return diag_error_noloc(d,
                                    "rank %d: the gradient sums (NCCL) did not finish within %g s "
                                    "(NETC_DIST_TIMEOUT): another rank stopped or died",
                                    c->rank, c->timeout);
        }
        nanosleep(&nap, NULL);
    }
    if (rc) return cuda_fail(c, d, "the step's update (cuEventQuery)", rc);
    return 0;
}

const char *cg_cuda_dist_source(const CudaDist *c) { return c->src; }

void cg_cuda_dist_close(CudaDist *c) {
    if (!c) return;
    const CudaDriver *drv = c->drv;
    if (c->module) drv->module_unload(c->module);
    for (int b = 0; c->ev && b < c->nbuckets; b++)
        if (c->ev[b]) drv->event_destroy(c->ev[b]);
    if (c->summed) drv->event_destroy(c->summed);
    if (c->updated) drv->event_destroy(c->updated);
    if (c->stream) drv->stream_destroy(c->stream);
    if (c->comm) c->nc->comm_destroy(c->comm);
    free(c->ev), free(c->src), free(c->grad), free(c->count);
    free(c->bucket_end), free(c->bucket_kernel), free(c->started);
    free(c);
}
