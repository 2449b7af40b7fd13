/* ref_kernels.h - the reference kernels: plain C loops, obviously correct,
 * the oracle for every faster backend.  Each kernel exists in float
 * (ref_f32_*) and double (ref_f64_*) from one template, ref_kernels.inc.
 *
 * Layouts: activations NCHW, contiguous; conv weights [K, C, R, S]; linear
 * weights [out, in] (PyTorch's).  Outputs are overwritten, never accumulated,
 * unless the kernel says so. */
#ifndef NETC_REF_KERNELS_H
#define NETC_REF_KERNELS_H

#include <stdint.h>

typedef struct {
    int64_t n, c, h, w;     /* input */
    int64_t k, r, s;        /* output channels, kernel height, width */
    int64_t sh, sw, ph, pw; /* stride, padding */
    int64_t p, q;           /* output height, width */
} RefConv;

typedef struct {
    int64_t n, c, h, w;     /* input */
    int64_t kh, kw, sh, sw, ph, pw;
    int64_t p, q;           /* output height, width */
} RefPool;

/* Counter-based random numbers for dropout: the same (seed, stream, counter)
 * always gives the same bits, on every backend and thread split. */
static inline uint64_t netc_mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
/* Uniform in [0, 1) with 24 bits, for element i of dropout `stream` at `step`. */
static inline float netc_uniform(uint64_t seed, uint64_t stream, uint64_t step, uint64_t i) {
    uint64_t k = netc_mix64(seed ^ netc_mix64(stream * 0x100000001b3ull + netc_mix64(step)));
    return (float)(netc_mix64(k + i) >> 40) * (1.0f / 16777216.0f);
}

#define REF_DECLARE(T, P) \
    void P##conv2d(const T *x, const T *w, const T *b, T *y, const RefConv *d); \
    void P##conv2d_bwd_data(const T *dy, const T *w, T *dx, const RefConv *d); \
    void P##conv2d_bwd_weight(const T *dy, const T *x, T *dw, T *db, const RefConv *d); \
    void P##linear(const T *x, const T *w, const T *b, T *y, int64_t n, int64_t in, int64_t out); \
    void P##linear_bwd_data(const T *dy, const T *w, T *dx, int64_t n, int64_t in, int64_t out); \
    void P##linear_bwd_weight(const T *dy, const T *x, T *dw, T *db, int64_t n, int64_t in, int64_t out); \
    void P##bias_grad(const T *dy, T *db, int64_t n, int64_t k, int64_t pq); \
    void P##relu(const T *x, T *y, int64_t n); \
    void P##relu_bwd(const T *dy, const T *y, T *dx, int64_t n); \
    void P##sigmoid(const T *x, T *y, int64_t n); \
    void P##sigmoid_bwd(const T *dy, const T *y, T *dx, int64_t n); \
    void P##maxpool(const T *x, T *y, const RefPool *d); \
    void P##maxpool_bwd(const T *dy, const T *x, T *dx, const RefPool *d); \
    void P##avgpool(const T *x, T *y, const RefPool *d); \
    void P##avgpool_bwd(const T *dy, T *dx, const RefPool *d); \
    void P##global_avgpool(const T *x, T *y, int64_t nc, int64_t hw); \
    void P##global_avgpool_bwd(const T *dy, T *dx, int64_t nc, int64_t hw); \
    void P##global_maxpool(const T *x, T *y, int64_t nc, int64_t hw); \
    void P##global_maxpool_bwd(const T *dy, const T *x, T *dx, int64_t nc, int64_t hw); \
    void P##dropout(const T *x, T *y, T *mask, int64_t n, float p, uint64_t seed, uint64_t stream, uint64_t step); \
    void P##dropout_bwd(const T *dy, const T *mask, T *dx, int64_t n); \
    void P##batchnorm_train(const T *x, const T *gamma, const T *beta, T *rmean, T *rvar, T *y, \
                            T *smean, T *sinvstd, int64_t n, int64_t c, int64_t hw, float momentum, float eps); \
    void P##batchnorm_eval(const T *x, const T *gamma, const T *beta, const T *rmean, const T *rvar, \
                           T *y, int64_t n, int64_t c, int64_t hw, float eps); \
    void P##batchnorm_apply(const T *x, const T *gamma, const T *beta, const T *smean, const T *sinvstd, \
                            T *y, int64_t n, int64_t c, int64_t hw); \
    void P##batchnorm_bwd(const T *dy, const T *x, const T *gamma, const T *smean, const T *sinvstd, \
                          T *dx, T *dgamma, T *dbeta, int64_t n, int64_t c, int64_t hw); \
    void P##concat_part(const T *x, T *y, int64_t n, int64_t c, int64_t c0, int64_t ctot, int64_t hw); \
    void P##slice(const T *x, T *y, int64_t n, int64_t c0, int64_t c, int64_t ctot, int64_t hw); \
    void P##add(const T *a, const T *b, T *y, int64_t n); \
    void P##accum(const T *x, T *y, int64_t n); \
    void P##softmax_xent(const T *logits, const int32_t *labels, T *loss, int64_t n, int64_t k); \
    void P##softmax_xent_bwd(const T *logits, const int32_t *labels, T *dlogits, int64_t n, int64_t k); \
    void P##sgd(T *p, const T *g, double lr, int64_t n);

REF_DECLARE(float, ref_f32_)
REF_DECLARE(double, ref_f64_)

#endif
