/* cuda_backend.c - `--target cuda`: a Program's CUDA C (cuda_src.c) through
 * NVRTC to PTX, loaded and launched with the Driver API (driver.c).
 *
 * One device context per process, shared by every program compiled for it
 * (a session's train and eval steps, the two sessions of `bench
 * --compare-fuse`).  The arena and the side block (in-kernel values and
 * partial sums) are shared too and grow to the largest program's: what
 * they hold lives for one step.  Every slot gets device memory of its own
 * the first time a program runs with it, found again by its host address,
 * so programs that share a tensor on the host share it on the device; the
 * runtime moves slots between the two with put and get (backend.h).  A
 * step's launches go to the default stream, one after another, and the run
 * waits for the last; only what the runtime asks for comes back.
 * In a data-parallel step the gradients are summed over the ranks with
 * NCCL as the kernels finish them, and the weights updated on the device
 * (cuda_dist.c).
 * NETC_CUDA_PROFILE=1 times every launch with CUDA events (one before each
 * and one after the last), sums them per program kernel over the runs
 * after the first and prints the table when the program is freed. */
#include "../backend.h"
#include "cuda_dist.h"
#include "cuda_src.h"
#include "driver.h"
#include "nvrtc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const Backend backend_cuda;

static CudaDriver real;          /* libcuda.so.1, opened on first use */
static const CudaDriver *drv;    /* the table in use: a test's, or &real */
static NcclTable real_nccl;      /* libnccl.so.2, opened on first use */
static const NcclTable *nccl;    /* a test's table, or NULL */

typedef struct {
    void *host;
    CuPtr dev;
    size_t bytes;
    int refs;                    /* programs bound to it */
} DevSlot;

static struct {
    void *ctx;
    int users;                   /* programs compiled and not yet freed */
    CuPtr arena, side;
    size_t arena_bytes, side_bytes;
    DevSlot *slot;
    int nslot;
    size_t held;                 /* bytes of device memory held (arena, side, slots, tables) */
} dev;

/* A slot's second device copy: put_next uploads the next step's data into
 * it while the step reads the first; start swaps the two. */
typedef struct {
    CuPtr p;
    size_t bytes;
    int full;                    /* holds data the next start may take */
} NextCopy;

typedef struct {
    CudaSource src;
    void *module;
    void **fn;                   /* per launch */
    int bound;                   /* the slots have device memory */
    int nbound;                  /* slots holding a reference (slot_of) */
    int *slot_of;                /* per Program slot: its DevSlot */
    CuPtr table;                 /* the device's array of slot addresses (S) */
    size_t table_bytes;
    void **ev;                   /* NETC_CUDA_PROFILE: nlaunch + 1 events */
    double *prof;                /* per program kernel: seconds, summed */
    char **label;                /* per program kernel */
    int nkernels, runs;
    CudaDist *dist;              /* a data-parallel step summing with NCCL */
    CuPtr *addr;                 /* per slot: its device address (bound) */
    NextCopy *next;              /* per slot: its second copy (put_next), or NULL */
    void *copy_stream, *copied;  /* put_next's stream, and the event after its last copy */
    int started;                 /* start queued the step; finish has not waited for it */
} CudaState;

/* Tests install a fake driver table (NULL: the real one again). */
void cg_cuda_use_driver(const CudaDriver *t);
void cg_cuda_use_driver(const CudaDriver *t) { drv = t; }
/* and a fake NCCL (NULL: the real one, which a fake driver never uses) */
void cg_cuda_use_nccl(const NcclTable *t);
void cg_cuda_use_nccl(const NcclTable *t) { nccl = t; }

static void say(Diag *d) { diag_init(d, "cuda", NULL, 0, stderr); }

/* Device memory, counted in dev.held. */
static int dalloc(size_t bytes, CuPtr *p, Diag *d) {
    if (cg_cuda_alloc(drv, bytes, p, d)) return -1;
    dev.held += bytes;
    return 0;
}

static void dfree(CuPtr p, size_t bytes) {
    if (!p) return;
    drv->mem_free(p);
    dev.held -= bytes;
}

/* Grows a shared block to at least `bytes` (its contents are one step's). */
static int grow(CuPtr *p, size_t *have, size_t bytes, Diag *d) {
    if (bytes <= *have && *p) return 0;
    dfree(*p, *have);
    *p = 0;
    *have = 0;
    if (dalloc(bytes, p, d)) return -1;
    *have = bytes;
    return 0;
}

static void release_device(void) {
    if (dev.users > 0) return;
    dfree(dev.arena, dev.arena_bytes);
    dfree(dev.side, dev.side_bytes);
    if (dev.ctx) drv->ctx_destroy(dev.ctx);
    free(dev.slot);
    memset(&dev, 0, sizeof dev);
}

static int cmp_desc(const void *a, const void *b) {
    double x = ((const double *)a)[0], y = ((const double *)b)[0];
    return (x < y) - (x > y);
}

static void prof_report(const CudaState *st) {
    if (!st->prof || st->runs < 2) return;
    double (*rows)[2] = calloc((size_t)st->nkernels + 1, sizeof *rows), tot = 0;
    for (int k = 0; k < st->nkernels; k++) {
        rows[k][0] = st->prof[k] / (st->runs - 1);
        rows[k][1] = k;
        tot += rows[k][0];
    }
    qsort(rows, (size_t)st->nkernels, sizeof *rows, cmp_desc);
    fprintf(stderr, "cuda profile: %d runs after the first, %.3f ms per run on the device\n", st->runs - 1, tot * 1e3);
    double cum = 0;
    for (int i = 0; i < st->nkernels && cum < 0.995 * tot; i++) {
        cum += rows[i][0];
        fprintf(stderr, "  %9.3f ms %5.1f%% %5.1f%%  k%-4d %s\n", rows[i][0] * 1e3, 100 * rows[i][0] / tot,
                100 * cum / tot, (int)rows[i][1], st->label[(int)rows[i][1]]);
    }
    free(rows);
}

/* Event timing for st (NETC_CUDA_PROFILE=1), and each kernel's name. */
static int prof_init(CudaState *st, const Program *p, Diag *d) {
    const char *e = getenv("NETC_CUDA_PROFILE");
    if (!e || strcmp(e, "1")) return 0;
    st->nkernels = p->nkernels;
    st->prof = ir_xcalloc((size_t)p->nkernels + 1, sizeof(double));
    st->label = ir_xcalloc((size_t)p->nkernels + 1, sizeof(char *));
    for (int k = 0; k < p->nkernels; k++) {
        char buf[256];
        size_t n = (size_t)snprintf(buf, sizeof buf, "%s", fuse_name(p->kernels[k].pattern));
        for (int j = 0; j < p->kernels[k].nnodes && n + 8 < sizeof buf; j++) {
            const IrNode *nd = ir_node(&p->g, p->kernels[k].nodes[j]);
            n += (size_t)snprintf(buf + n, sizeof buf - n, "%s %s%s%s", j ? "," : ":", ir_info(nd->op)->name,
                                  nd->name ? " " : "", nd->name ? nd->name : "");
        }
        st->label[k] = ir_strdup(buf);
    }
    st->ev = ir_xcalloc((size_t)st->src.nlaunch + 1, sizeof(void *));
    for (int i = 0; i <= st->src.nlaunch; i++)
        if (drv->event_create(&st->ev[i], 0)) {
            st->ev[i] = NULL;
            return diag_error_noloc(d, "NETC_CUDA_PROFILE: cuEventCreate failed");
        }
    return 0;
}

static void prof_free(CudaState *st) {
    prof_report(st);
    for (int i = 0; st->ev && i <= st->src.nlaunch; i++)
        if (st->ev[i]) drv->event_destroy(st->ev[i]);
    for (int k = 0; st->label && k < st->nkernels; k++) free(st->label[k]);
    free(st->ev), free(st->prof), free(st->label);
}

static void cuda_free(void *state) {
    CudaState *st = state;
    if (!st) return;
    if (st->started) drv->synchronize();
    if (st->copied) drv->event_synchronize(st->copied), drv->event_destroy(st->copied);
    if (st->copy_stream) drv->stream_destroy(st->copy_stream);
    for (int i = 0; st->next && i < st->nbound; i++) dfree(st->next[i].p, st->next[i].bytes);
    free(st->next);
    prof_free(st);
    cg_cuda_dist_close(st->dist);
    free(st->addr);
    if (st->module) drv->module_unload(st->module);
    dfree(st->table, st->table_bytes);
    for (int i = 0; i < st->nbound; i++) {
        DevSlot *s = &dev.slot[st->slot_of[i]];
        if (--s->refs == 0 && s->dev) {
            dfree(s->dev, s->bytes);
            s->dev = 0;
            s->host = NULL;
        }
    }
    free(st->slot_of);
    free(st->fn);
    cg_cuda_source_free(&st->src);
    free(st);
    dev.users--;
    release_device();
}

static int cuda_compile(const Program *p, const BackendOptions *o, void **state, Diag *d) {
    *state = NULL;
    if (!drv) {
        if (cg_cuda_driver_open(&real, d)) return -1;
        drv = &real;
    }
    if (!dev.ctx && cg_cuda_context(drv, o->device, &dev.ctx, d)) return -1;
    CudaState *st = ir_xcalloc(1, sizeof *st);
    dev.users++;
    int rc = cg_cuda_source(p, o->tf32, &st->src, d);
    char *ptx = NULL;
    size_t len = 0;
    int hit = 0;
    if (!rc && !drv->source) rc = cg_nvrtc_compile_cached(st->src.text, "netc.cu", "compute_90", &ptx, &len, &hit, d);
    if (!rc) rc = cg_cuda_module(drv, drv->source ? st->src.text : ptx, &st->module, d);
    free(ptx);
    st->fn = ir_xcalloc((size_t)st->src.nlaunch + 1, sizeof(void *));
    for (int i = 0; !rc && i < st->src.nlaunch; i++)
        rc = cg_cuda_function(drv, st->module, st->src.launch[i].name, &st->fn[i], d);
    if (!rc) rc = grow(&dev.arena, &dev.arena_bytes, (size_t)p->arena_bytes + 64, d);
    if (!rc) rc = grow(&dev.side, &dev.side_bytes, (size_t)st->src.side_bytes + 64, d);
    st->table_bytes = sizeof(CuPtr) * (size_t)(p->nslots + 1);
    if (!rc) rc = dalloc(st->table_bytes, &st->table, d);
    if (!rc) rc = prof_init(st, p, d);
    if (rc) {
        cuda_free(st);
        return -1;
    }
    *state = st;
    return 0;
}

/* Device memory for every slot of p (the host's tensors at ctx->slots),
 * shared with the programs bound to the same host tensors, and the table
 * of their addresses; a slot seen for the first time is uploaded. */
static int bind(CudaState *st, const Program *p, RunCtx *ctx, Diag *d) {
    if (st->bound) return 0;
    if (st->nbound) return diag_error_noloc(d, "the device memory of an earlier step failed");
    free(st->slot_of);
    free(st->addr);
    st->slot_of = ir_xcalloc((size_t)p->nslots + 1, sizeof(int));
    st->addr = ir_xcalloc((size_t)p->nslots + 1, sizeof(CuPtr));
    CuPtr *table = ir_xcalloc((size_t)p->nslots + 1, sizeof(CuPtr));
    int rc = 0;
    for (int i = 0; i < p->nslots && !rc; i++) {
        int k = -1;
        for (int j = 0; j < dev.nslot && k < 0; j++)
            if (dev.slot[j].dev && dev.slot[j].host == ctx->slots[i]) k = j;
        if (k >= 0 && dev.slot[k].bytes < (size_t)p->slots[i].bytes) {
            rc = diag_error_noloc(d, "internal error: slot %s is bigger than its tensor on the device", p->slots[i].name);
            break;
        }
        if (k < 0) {
            for (int j = 0; j < dev.nslot && k < 0; j++)
                if (!dev.slot[j].dev) k = j;
            if (k < 0) {
                dev.slot = ir_xrealloc(dev.slot, sizeof(DevSlot) * (size_t)(dev.nslot + 1));
                k = dev.nslot++;
            }
            DevSlot *s = &dev.slot[k];
            memset(s, 0, sizeof *s);
            s->bytes = (size_t)p->slots[i].bytes;
            if ((rc = dalloc(s->bytes, &s->dev, d))) break;
            s->host = ctx->slots[i];
            rc = cg_cuda_copy(drv, s->dev, s->host, s->bytes, 1, d);
        }
        dev.slot[k].refs++;
        st->slot_of[i] = k;
        st->nbound = i + 1;
        table[i] = st->addr[i] = dev.slot[k].dev;
    }
    if (!rc) rc = cg_cuda_copy(drv, st->table, table, sizeof(CuPtr) * (size_t)(p->nslots + 1), 1, d);
    free(table);
    st->bound = !rc;
    return rc;
}

static int move(void *state, const Program *p, RunCtx *ctx, const int *which, int n, int up) {
    CudaState *st = state;
    Diag d;
    say(&d);
    if (bind(st, p, ctx, &d)) return -1;
    for (int i = 0; i < n; i++) {
        const DevSlot *s = &dev.slot[st->slot_of[which[i]]];
        if (cg_cuda_copy(drv, s->dev, ctx->slots[which[i]], (size_t)p->slots[which[i]].bytes, up, &d)) return -1;
    }
    return 0;
}

static int cuda_put(void *state, const Program *p, RunCtx *ctx, const int *which, int n) {
    return move(state, p, ctx, which, n, 1);
}

static int cuda_get(void *state, const Program *p, RunCtx *ctx, const int *which, int n) {
    return move(state, p, ctx, which, n, 0);
}

/* ---- double-buffered slots (the next batch) -----------------------------------
 * put_next uploads into a slot's second copy on a stream of its own (non-
 * blocking: the step's launches on the default stream do not wait for it),
 * and records an event after it.  The next start with ctx->next set waits
 * for that event (long past, normally) and swaps the copies in the shared
 * DevSlot; every program bound to the slot then finds it moved and uploads
 * its address table again before it runs (refresh_table).  A start without
 * ctx->next drops what was put. */

static int cuda_put_next(void *state, const Program *p, int slot, const void *host, int64_t bytes) {
    CudaState *st = state;
    Diag d;
    say(&d);
    if (!st->bound || slot < 0 || slot >= p->nslots || bytes != p->slots[slot].bytes)
        return diag_error_noloc(&d, "internal error: put_next of slot %d before a run or at the wrong size", slot);
    if (!st->next) st->next = ir_xcalloc((size_t)p->nslots + 1, sizeof(NextCopy));
    NextCopy *n = &st->next[slot];
    const DevSlot *s = &dev.slot[st->slot_of[slot]];
    if (!n->p) {
        if (dalloc(s->bytes, &n->p, &d)) return -1;
        n->bytes = s->bytes;
    }
    int rc = 0;
    if (drv->memcpy_htod_async && drv->stream_create) {
        if (!st->copy_stream && (rc = drv->stream_create(&st->copy_stream, 1 /* CU_STREAM_NON_BLOCKING */)))
            st->copy_stream = NULL;
        if (!rc && !st->copied && (rc = drv->event_create(&st->copied, 2 /* CU_EVENT_DISABLE_TIMING */)))
            st->copied = NULL;
        if (!rc) rc = drv->memcpy_htod_async(n->p, host, (size_t)bytes, st->copy_stream);
        if (!rc) rc = drv->event_record(st->copied, st->copy_stream);
    } else {
        rc = drv->memcpy_htod(n->p, host, (size_t)bytes);
    }
    if (rc)
        return diag_error_noloc(&d, "the upload of %s for the next step failed: %s (%d)", p->slots[slot].name,
                                cg_cuda_error_name(drv, rc), rc);
    n->full = 1;
    return 0;
}

/* The copies put_next filled become the slots (take), or are dropped. */
static int take_next(CudaState *st, const Program *p, int take, Diag *d) {
    int any = 0;
    for (int i = 0; st->next && i < p->nslots; i++) any |= st->next[i].full;
    if (!any) return 0;
    int rc = take && st->copied ? drv->event_synchronize(st->copied) : 0;
    if (rc) return diag_error_noloc(d, "the upload for this step failed: %s (%d)", cg_cuda_error_name(drv, rc), rc);
    for (int i = 0; i < p->nslots; i++) {
        NextCopy *n = &st->next[i];
        if (!n->full) continue;
        n->full = 0;
        if (!take) continue;
        DevSlot *s = &dev.slot[st->slot_of[i]];
        CuPtr t = s->dev;
        s->dev = n->p;
        n->p = t;
    }
    return 0;
}

/* p's table of slot addresses, uploaded again when a slot moved. */
static int refresh_table(CudaState *st, const Program *p, Diag *d) {
    int moved = 0;
    for (int i = 0; i < p->nslots; i++) {
        CuPtr a = dev.slot[st->slot_of[i]].dev;
        if (st->addr[i] != a) st->addr[i] = a, moved = 1;
    }
    return moved ? cg_cuda_copy(drv, st->table, st->addr, sizeof(CuPtr) * (size_t)(p->nslots + 1), 1, d) : 0;
}

static int cuda_start(void *state, const Program *p, RunCtx *ctx);
static int cuda_finish(void *state, const Program *p, RunCtx *ctx);

static int cuda_run(void *state, const Program *p, RunCtx *ctx) {
    return cuda_start(state, p, ctx) ? -1 : cuda_finish(state, p, ctx);
}

static int cuda_start(void *state, const Program *p, RunCtx *ctx) {
    CudaState *st = state;
    Diag d;
    say(&d);
    if (bind(st, p, ctx, &d) || take_next(st, p, ctx->next, &d) || refresh_table(st, p, &d)) return -1;
    float lr = (float)ctx->lr;
    unsigned long long seed = ctx->seed, step = ctx->step;
    void *args[6] = {&dev.arena, &dev.side, &st->table, &lr, &seed, &step};
    for (int i = 0; i < st->src.nlaunch; i++) {
        const CudaLaunch *l = &st->src.launch[i];
        if (st->ev) drv->event_record(st->ev[i], NULL);
        int rc = drv->launch(st->fn[i], l->grid, 1, 1, l->block, 1, 1, 0, NULL, args, NULL);
        if (rc)
            return diag_error_noloc(&d, "kernel %s: cuLaunchKernel failed: %s (%d)", l->name,
                                    cg_cuda_error_name(drv, rc), rc);
        int last = i + 1 == st->src.nlaunch || st->src.launch[i + 1].kernel != l->kernel;
        if (st->dist && last && cg_cuda_dist_after(st->dist, l->kernel, st->addr, &d)) return -1;
    }
    if (st->ev) drv->event_record(st->ev[st->src.nlaunch], NULL);
    if (st->dist && cg_cuda_dist_finish(st->dist, st->addr, args, &d)) return -1;
    st->started = 1;
    return 0;
}

static int cuda_finish(void *state, const Program *p, RunCtx *ctx) {
    CudaState *st = state;
    (void)p, (void)ctx;
    if (!st->started) return 0;
    st->started = 0;
    Diag d;
    say(&d);
    int rc = drv->synchronize();
    if (rc) return diag_error_noloc(&d, "the step failed on the device: %s (%d)", cg_cuda_error_name(drv, rc), rc);
    if (st->ev && st->runs++ > 0)
        for (int i = 0; i < st->src.nlaunch; i++) {
            float ms = 0;
            if (!drv->event_elapsed(&ms, st->ev[i], st->ev[i + 1])) st->prof[st->src.launch[i].kernel] += ms * 1e-3;
        }
    return 0;
}

static int cuda_dump(void *state, FILE *f) {
    const CudaState *st = state;
    fputs(st->src.text, f);
    if (st->dist) fputs(cg_cuda_dist_source(st->dist), f);
    return 0;
}

static long long cuda_device_bytes(void) { return (long long)dev.held; }

static int cuda_dist_open(void *state, const Program *p, BackendDist *bd, Diag *d) {
    CudaState *st = state;
    const NcclTable *t = nccl;
    char why[200] = "";
    const char *e = getenv("NETC_NCCL");
    if (e && !strcmp(e, "0")) snprintf(why, sizeof why, "NETC_NCCL=0");
    else if (!t && drv->source) snprintf(why, sizeof why, "no NCCL for an emulated device");
    else if (!t && (real_nccl.lib || !cg_nccl_open(&real_nccl, why, sizeof why))) t = &real_nccl;
    if (why[0]) t = NULL;
    return cg_cuda_dist_open(drv, t, why, p, bd, &st->dist, d);
}

const Backend backend_cuda = {
    "cuda", "CUDA C per kernel, NVRTC to PTX, run through the CUDA Driver API (needs libcuda.so.1 and a GPU)",
    cuda_compile, cuda_run, cuda_free, cuda_dump, NULL, cuda_put, cuda_get, cuda_device_bytes, cuda_dist_open,
    cuda_start, cuda_finish, cuda_put_next,
};
