/* syncbn.c - batch norm over the ranks of a data-parallel job (syncbn.h). */
#include "syncbn.h"
#include "pool.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static RtSumFn sum_fn;

void rt_syncbn_set_sum(RtSumFn f) { sum_fn = f; }

typedef struct {
    const float *x, *dy, *gamma, *beta, *mean, *inv;
    float *y, *dx;
    int64_t nb, c, hw, xs;
    double *acc; /* 2c sums, then the element count */
    float *tmean, *tinv;
} Job;

static double *acc_new(int64_t c) {
    double *a = calloc((size_t)(2 * c + 1), sizeof(double));
    if (!a) {
        fprintf(stderr, "netc: error: out of memory in a synchronised batch norm\n");
        exit(1);
    }
    return a;
}

/* sums of x - K and (x - K)^2 per channel, K the running mean */
static void fwd_sums(void *ctx, int64_t b, int64_t e) {
    const Job *j = ctx;
    for (int64_t ch = b; ch < e; ch++) {
        double k = j->mean[ch], s = 0, q = 0;
        for (int64_t i = 0; i < j->nb; i++) {
            const float *r = j->x + i * j->xs + ch * j->hw;
            for (int64_t t = 0; t < j->hw; t++) {
                double d = (double)r[t] - k;
                s += d, q += d * d;
            }
        }
        j->acc[ch] = s, j->acc[j->c + ch] = q;
    }
}

static void fwd_apply(void *ctx, int64_t b, int64_t e) {
    const Job *j = ctx;
    for (int64_t ch = b; ch < e; ch++) {
        float g = j->gamma[ch], bt = j->beta[ch], m = j->tmean[ch], v = j->tinv[ch];
        for (int64_t i = 0; i < j->nb; i++) {
            const float *r = j->x + i * j->xs + ch * j->hw;
            float *o = j->y + (i * j->c + ch) * j->hw;
            for (int64_t t = 0; t < j->hw; t++) o[t] = g * (r[t] - m) * v + bt;
        }
    }
}

void rt_syncbn_fwd(void *pool, const float *x, int64_t xs, const float *gamma, const float *beta, float *rmean,
                   float *rvar, float *y, float *smean, float *sinvstd, int64_t nb, int64_t c, int64_t hw,
                   float momentum, float eps) {
    Job j = {.x = x, .gamma = gamma, .beta = beta, .mean = rmean, .y = y, .nb = nb, .c = c, .hw = hw, .xs = xs};
    j.acc = acc_new(c);
    j.tmean = malloc(sizeof(float) * (size_t)(2 * c));
    if (!j.tmean) exit(1);
    j.tinv = j.tmean + c;
    rt_parallel_for((ThreadPool *)pool, c, fwd_sums, &j);
    j.acc[2 * c] = (double)(nb * hw);
    if (sum_fn) sum_fn(j.acc, 2 * c + 1);
    double M = j.acc[2 * c], unb = M > 1 ? M / (M - 1) : 1, mom = momentum;
    for (int64_t ch = 0; ch < c; ch++) {
        double ds = j.acc[ch] / M, var = j.acc[c + ch] / M - ds * ds, mean = rmean[ch] + ds;
        if (var < 0) var = 0;
        double inv = 1.0 / sqrt(var + (double)eps);
        j.tmean[ch] = (float)mean, j.tinv[ch] = (float)inv;
        if (smean) smean[ch] = (float)mean;
        if (sinvstd) sinvstd[ch] = (float)inv;
        rmean[ch] = (float)((1 - mom) * rmean[ch] + mom * mean);
        rvar[ch] = (float)((1 - mom) * rvar[ch] + mom * var * unb);
    }
    if (y) rt_parallel_for((ThreadPool *)pool, c, fwd_apply, &j);
    free(j.tmean);
    free(j.acc);
}

/* sums of dy and dy * (x - mean) per channel */
static void bwd_sums(void *ctx, int64_t b, int64_t e) {
    const Job *j = ctx;
    for (int64_t ch = b; ch < e; ch++) {
        double m = j->mean[ch], s = 0, q = 0;
        for (int64_t i = 0; i < j->nb; i++) {
            const float *r = j->x + i * j->xs + ch * j->hw, *g = j->dy + (i * j->c + ch) * j->hw;
            for (int64_t t = 0; t < j->hw; t++) s += g[t], q += (double)g[t] * ((double)r[t] - m);
        }
        j->acc[ch] = s, j->acc[j->c + ch] = q;
    }
}

/* dx = gamma * inv / M * (M dy - sum dy - xhat * sum dy xhat), in double */
static void bwd_dx(void *ctx, int64_t b, int64_t e) {
    const Job *j = ctx;
    double M = j->acc[2 * j->c];
    for (int64_t ch = b; ch < e; ch++) {
        double m = j->mean[ch], inv = j->inv[ch], sdy = j->acc[ch], sdyx = j->acc[j->c + ch] * inv;
        double scale = (double)j->gamma[ch] * inv / M;
        for (int64_t i = 0; i < j->nb; i++) {
            const float *r = j->x + i * j->xs + ch * j->hw, *g = j->dy + (i * j->c + ch) * j->hw;
            float *o = j->dx + (i * j->c + ch) * j->hw;
            for (int64_t t = 0; t < j->hw; t++) {
                double xhat = ((double)r[t] - m) * inv;
                o[t] = (float)(scale * (M * (double)g[t] - sdy - xhat * sdyx));
            }
        }
    }
}

void rt_syncbn_bwd(void *pool, const float *dy, const float *x, int64_t xs, const float *gamma, const float *smean,
                   const float *sinvstd, float *dx, float *dgamma, float *dbeta, int64_t nb, int64_t c, int64_t hw) {
    Job j = {.x = x, .dy = dy, .gamma = gamma, .mean = smean, .inv = sinvstd, .dx = dx,
             .nb = nb, .c = c, .hw = hw, .xs = xs};
    j.acc = acc_new(c);
    rt_parallel_for((ThreadPool *)pool, c, bwd_sums, &j);
    for (int64_t ch = 0; ch < c; ch++) {
        if (dgamma) dgamma[ch] = (float)(j.acc[c + ch] * (double)sinvstd[ch]);
        if (dbeta) dbeta[ch] = (float)j.acc[ch];
    }
    j.acc[2 * c] = (double)(nb * hw);
    if (sum_fn) sum_fn(j.acc, 2 * c + 1);
    if (dx) rt_parallel_for((ThreadPool *)pool, c, bwd_dx, &j);
    free(j.acc);
}
