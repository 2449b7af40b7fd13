/* dist_step.c - the step of one rank of a data-parallel job: the train
 * program stops at the gradients (PipelineOptions.no_update); they are
 * packed into buckets in the order they become final, each bucket's sum
 * over the ranks started as soon as the kernel that completes it has run
 * (rt_grads_ready, called by the step itself), so that it travels while the
 * backward pass goes on; the last bucket, with the loss and the correct
 * count, goes after the step; then every rank applies the same SGD update
 * with the mean gradient.
 *
 * A device backend that sums them itself (cuda with NCCL: Backend.dist_open)
 * gets the buckets and does all of that on the devices; the host then sums
 * only the loss and the count.  On one that does not (no NCCL, or
 * NETC_NCCL=0), whose step does not call back, every bucket goes after the
 * step: the gradients are brought to the host, summed there, and the
 * updated weights go back up before the next step.
 *
 * A bucket closes at a kernel boundary once it holds NETC_DIST_BUCKET bytes
 * (default 4 MiB).  The sums are elementwise, so the bucketing changes no
 * result: with two ranks the bits are those of one allreduce of everything. */
#include "runtime.h"
#include "dist.h"
#include "../base/gradready.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

struct RtBucket {
    int first, n;        /* parameters upd_*[first, first + n) */
    int64_t off, len;    /* floats of dist_buf */
    int kernel;          /* the kernel after which all of them are final */
    int handle;          /* of its sum, while it travels; -1 before */
};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int64_t bucket_bytes(void) {
    const char *v = getenv("NETC_DIST_BUCKET");
    long long b = v ? atoll(v) : 0;
    return b > 0 ? b : 4 << 20;
}

static int bcast(void *buf, int64_t bytes) { return rt_dist_bcast(buf, bytes); }

/* Offers the buckets to the backend (Backend.dist_open). */
static int device_sums(RtSession *s, Diag *d) {
    const Program *p = &s->train;
    int n = s->nupd, *param = ir_xcalloc((size_t)n + 1, sizeof(int));
    int *end = ir_xcalloc((size_t)s->nbuckets + 1, sizeof(int)), *kernel = ir_xcalloc((size_t)s->nbuckets + 1, sizeof(int));
    for (int q = 0; q < n; q++)
        for (int i = 0; i < p->nslots; i++)
            if (s->train_tensor[i] == s->upd_param[q]) param[q] = i;
    for (int b = 0; b < s->nbuckets; b++) end[b] = s->buckets[b].first + s->buckets[b].n, kernel[b] = s->buckets[b].kernel;
    BackendDist bd = {rt_dist_rank(), rt_dist_size(), n, s->upd_slot, param, s->nbuckets, end, kernel, bcast,
                      rt_dist_agree, ""};
    int rc = s->be->dist_open(s->train_state, p, &bd, d);
    free(param), free(end), free(kernel);
    if (rc < 0) return -1;
    s->dev_sum = rc == 0;
    if (rc == 1 && rt_dist_rank() == 0 && rt_dist_size() > 1)
        fprintf(stderr, "netc: note: %s: the gradients are summed over MPI on the host\n", bd.why);
    return 0;
}

int rt_dist_open(RtSession *s, Diag *d) {
    const Program *p = &s->train;
    s->dist = 1;
    const int *fk = p->grad_kernel; /* the pipeline's, with no_update */
    int *order = ir_xmalloc(sizeof(int) * (size_t)(p->nslots + 1)), n = 0;
    for (int i = 0; i < p->nslots; i++)
        if (p->slots[i].kind == SLOT_GRAD) order[n++] = i;
    for (int i = 1; i < n; i++) /* by final kernel, stably */
        for (int j = i; j > 0 && fk[order[j - 1]] > fk[order[j]]; j--) {
            int t = order[j];
            order[j] = order[j - 1], order[j - 1] = t;
        }
    s->upd_param = ir_xcalloc((size_t)(n + 1), sizeof(int));
    s->upd_grad = ir_xcalloc((size_t)(n + 1), sizeof(int));
    s->upd_slot = order; /* (its first n entries) */
    s->buckets = ir_xcalloc((size_t)(n + 1), sizeof(struct RtBucket));
    int64_t off = 0, limit = bucket_bytes() / (int64_t)sizeof(float);
    for (int q = 0; q < n; q++) {
        const Slot *sl = &p->slots[order[q]];
        size_t len = strlen(sl->name);
        char *pname = ir_strdup(sl->name);
        if (len > 5) pname[len - 5] = 0; /* "<param>.grad" */
        RtTensor *w = rt_model_find(&s->model, pname), *g = &s->model.t[s->train_tensor[order[q]]];
        free(pname);
        if (!w || w->bytes != g->bytes) {
            return diag_error_noloc(d, "internal error: no parameter for gradient %s", sl->name);
        }
        s->upd_param[q] = (int)(w - s->model.t), s->upd_grad[q] = (int)(g - s->model.t);
        struct RtBucket *b = &s->buckets[s->nbuckets];
        if (!b->n) b->first = q, b->off = off;
        b->n++;
        b->len += g->bytes / (int64_t)sizeof(float);
        b->kernel = fk[order[q]];
        off += g->bytes / (int64_t)sizeof(float);
        /* close it where the next gradient is final later */
        if (b->len >= limit && (q + 1 == n || fk[order[q + 1]] > b->kernel)) s->nbuckets++;
    }
    if (n == 0 || s->buckets[s->nbuckets].n) s->nbuckets++;
    s->nupd = n;
    s->dist_n = off + 2;
    s->dist_buf = aligned_alloc(64, (size_t)(s->dist_n * (int64_t)sizeof(float) + 63) / 64 * 64);
    if (!s->dist_buf) return diag_error_noloc(d, "out of memory for the gradient buffer");
    return s->be->dist_open ? device_sums(s, d) : 0;
}

void rt_dist_close(RtSession *s) {
    free(s->upd_param);
    free(s->upd_grad);
    free(s->upd_slot);
    free(s->buckets);
    free(s->dist_buf);
}

static void pack(RtSession *s, const struct RtBucket *b) {
    float *dst = s->dist_buf + b->off;
    for (int q = b->first; q < b->first + b->n; q++) {
        const RtTensor *g = &s->model.t[s->upd_grad[q]];
        memcpy(dst, g->data, (size_t)g->bytes);
        dst += g->bytes / (int64_t)sizeof(float);
    }
}

/* rt_grads_ready: kernel k has run; every bucket but the last that it
 * completes starts its sum */
static void ready(void *ctx, int64_t k) {
    RtSession *s = ctx;
    for (int i = 0; i + 1 < s->nbuckets; i++) {
        struct RtBucket *b = &s->buckets[i];
        if (b->kernel != k || b->handle >= 0) continue;
        pack(s, b);
        b->handle = rt_dist_isum_f32(s->dist_buf + b->off, b->len);
        if (b->handle < 0) b->handle = -2; /* reported; rt_dist_update fails */
    }
    rt_dist_progress();
}

void rt_dist_step_begin(RtSession *s) {
    for (int i = 0; i < s->nbuckets; i++) s->buckets[i].handle = -1;
    rt_grads_ready_set(ready, s);
}

void rt_dist_step_end(RtSession *s) { rt_grads_ready_set(NULL, NULL); (void)s; }

int rt_dist_update(RtSession *s, double lr, double *loss, int64_t *correct) {
    float *buf = s->dist_buf;
    int rc = 0;
    if (s->dev_sum) { /* the step summed and updated on the devices */
        double lc[2] = {*loss, (double)*correct};
        double t0 = now();
        if (rt_dist_sum_f64(lc, 2)) return -1;
        s->dist_sec += now() - t0;
        for (int i = 0; i < s->nupd; i++) s->model.t[s->upd_param[i]].newer = RT_DEVICE_NEWER;
        *loss = lc[0] / rt_dist_size();
        *correct = (int64_t)lc[1];
        return 0;
    }
    /* a device backend: the gradients come to the host, are summed over MPI
     * there, and the weights the host updates go back before the next step */
    if (s->be->get) {
        RunCtx c = {s->arena, s->train_slots, 0, 0, 0, s->pool, 0};
        if (s->nupd && s->be->get(s->train_state, &s->train, &c, s->upd_slot, s->nupd)) return -1;
        for (int i = 0; i < s->nupd; i++) s->model.t[s->upd_grad[i]].newer = 0;
    }
    /* the buckets whose kernels did not call (a backend without the hook) */
    for (int i = 0; i + 1 < s->nbuckets; i++)
        if (s->buckets[i].handle == -1) {
            pack(s, &s->buckets[i]);
            s->buckets[i].handle = rt_dist_isum_f32(buf + s->buckets[i].off, s->buckets[i].len);
        }
    struct RtBucket *last = &s->buckets[s->nbuckets - 1];
    pack(s, last);
    buf[s->dist_n - 2] = (float)*loss, buf[s->dist_n - 1] = (float)*correct;
    double t0 = now();
    last->handle = rt_dist_isum_f32(buf + last->off, s->dist_n - last->off);
    for (int i = 0; i < s->nbuckets; i++)
        if (s->buckets[i].handle < 0 || rt_dist_wait(s->buckets[i].handle)) rc = -1;
    s->dist_sec += now() - t0;
    if (rc) return -1;
    float scale = 1.0f / (float)rt_dist_size(), flr = (float)lr;
    int64_t k = 0;
    for (int i = 0; i < s->nupd; i++) {
        RtTensor *w = &s->model.t[s->upd_param[i]];
        float *wd = w->data;
        int64_t n = w->bytes / (int64_t)sizeof(float);
        for (int64_t j = 0; j < n; j++) wd[j] -= flr * (buf[k + j] * scale);
        if (s->be->put) w->newer = RT_HOST_NEWER;
        k += n;
    }
    *loss = (double)buf[k] * (double)scale;
    *correct = (int64_t)buf[k + 1];
    return 0;
}
