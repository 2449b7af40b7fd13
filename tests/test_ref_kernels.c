/* test_ref_kernels.c - the reference kernels against finite differences,
 * naive formulas and hand computations.
 *
 * Gradient checks run in double (ref_f64_*): L = sum(r .* forward(x)) for a
 * random r, so r is the upstream gradient; central differences with
 * FD_EPS = 1e-6 must match the analytic gradient to
 * |fd - an| <= FD_RTOL * max(|fd|, |an|) + FD_ATOL, with FD_RTOL = 1e-6 and
 * FD_ATOL = 1e-8 (the absolute floor covers round-off in L, ~1e-16*|L|/FD_EPS). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/ref_kernels.h"

#define FD_EPS 1e-6
#define FD_RTOL 1e-6
#define FD_ATOL 1e-8

/* ---- helpers ---------------------------------------------------------------- */

static uint64_t rng_state = 12345;

/* Uniform in [lo, hi). */
static double urand(double lo, double hi) {
    rng_state += 0x9e3779b97f4a7c15ull;
    return lo + (hi - lo) * (double)(netc_mix64(rng_state) >> 11) * (1.0 / 9007199254740992.0);
}

/* n random doubles in [lo, hi), each representable as a float, so that f32 and
 * f64 kernels see the same inputs. */
static double *rvec(int64_t n, double lo, double hi) {
    double *v = malloc((size_t)n * sizeof *v);
    assert_non_null(v);
    for (int64_t i = 0; i < n; i++) v[i] = (double)(float)urand(lo, hi);
    return v;
}

static double *zvec(int64_t n) {
    double *v = calloc((size_t)(n > 0 ? n : 1), sizeof *v);
    assert_non_null(v);
    return v;
}

static float *to_f32(const double *v, int64_t n) {
    float *f = malloc((size_t)(n > 0 ? n : 1) * sizeof *f);
    assert_non_null(f);
    for (int64_t i = 0; i < n; i++) f[i] = (float)v[i];
    return f;
}

/* n distinct values, shuffled, spaced 1/n apart in (-1, 1]: no ties for max. */
static double *distinct_vec(int64_t n) {
    double *v = malloc((size_t)n * sizeof *v);
    assert_non_null(v);
    for (int64_t i = 0; i < n; i++) v[i] = (double)(i + 1) / (double)n * 2.0 - 1.0;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)urand(0, (double)(i + 1));
        double t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
    return v;
}

static double dot(const double *a, const double *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* Every |a[i] - b[i]| <= tol * max(1, |b[i]|). */
static void expect_close(const char *what, const double *a, const double *b, int64_t n, double tol) {
    for (int64_t i = 0; i < n; i++) {
        double err = fabs(a[i] - b[i]), lim = tol * fmax(1.0, fabs(b[i]));
        if (!(err <= lim)) fail_msg("%s[%lld]: %.17g vs %.17g (err %.3g > %.3g)", what, (long long)i, a[i], b[i], err, lim);
    }
}

static void expect_close_f32(const char *what, const float *a, const double *b, int64_t n, double tol) {
    for (int64_t i = 0; i < n; i++) {
        double err = fabs((double)a[i] - b[i]), lim = tol * fmax(1.0, fabs(b[i]));
        if (!(err <= lim)) fail_msg("%s[%lld]: f32 %.9g vs f64 %.17g (err %.3g)", what, (long long)i, (double)a[i], b[i], err);
    }
}

/* L(ctx) = sum(r .* forward(...)) at the current inputs. */
typedef double (*LossFn)(void *ctx);

/* Checks g, the analytic dL/dv for v[0..n), against central differences. */
static void check_grad(const char *what, LossFn loss, void *ctx, double *v, const double *g, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double save = v[i];
        v[i] = save + FD_EPS;
        double lp = loss(ctx);
        v[i] = save - FD_EPS;
        double lm = loss(ctx);
        v[i] = save;
        double fd = (lp - lm) / (2 * FD_EPS);
        double err = fabs(fd - g[i]), lim = FD_RTOL * fmax(fabs(fd), fabs(g[i])) + FD_ATOL;
        if (!(err <= lim))
            fail_msg("%s: d/d[%lld]: finite diff %.12g, analytic %.12g (err %.3g > %.3g)", what, (long long)i, fd, g[i], err, lim);
    }
}

static int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t p) { return (in + 2 * p - k) / s + 1; }

/* ---- convolution -------------------------------------------------------------- */

static RefConv conv_dims(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t r, int64_t s,
                         int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
    RefConv d = {n, c, h, w, k, r, s, sh, sw, ph, pw, out_size(h, r, sh, ph), out_size(w, s, sw, pw)};
    return d;
}

/* Awkward shapes: 11x11 stride 4 pad 2, 1x1, odd channels, windows wholly in
 * the padding, asymmetric stride/padding, stride larger than the kernel. */
static const RefConv conv_shapes[] = {
    {1, 3, 35, 35, 5, 11, 11, 4, 4, 2, 2, 8, 8},
    {2, 5, 7, 9, 3, 1, 1, 1, 1, 0, 0, 7, 9},
    {1, 13, 6, 5, 7, 3, 3, 1, 1, 1, 1, 6, 5},
    {2, 3, 8, 8, 10, 5, 5, 2, 2, 2, 2, 4, 4},
    {1, 2, 5, 7, 3, 3, 2, 3, 1, 0, 1, 1, 8},
    {1, 2, 4, 4, 2, 3, 3, 1, 1, 2, 2, 6, 6},
    {2, 3, 7, 6, 2, 1, 1, 2, 3, 0, 0, 4, 2},
};

static void naive_conv(const double *x, const double *w, const double *b, double *y, const RefConv *d) {
    for (int64_t n = 0; n < d->n; n++)
        for (int64_t k = 0; k < d->k; k++)
            for (int64_t p = 0; p < d->p; p++)
                for (int64_t q = 0; q < d->q; q++) {
                    long double acc = b ? b[k] : 0;
                    for (int64_t c = 0; c < d->c; c++)
                        for (int64_t r = 0; r < d->r; r++)
                            for (int64_t s = 0; s < d->s; s++) {
                                int64_t ih = p * d->sh - d->ph + r, iw = q * d->sw - d->pw + s;
                                if (ih < 0 || ih >= d->h || iw < 0 || iw >= d->w) continue;
                                acc += (long double)x[((n * d->c + c) * d->h + ih) * d->w + iw] *
                                       w[((k * d->c + c) * d->r + r) * d->s + s];
                            }
                    y[((n * d->k + k) * d->p + p) * d->q + q] = (double)acc;
                }
}

static void test_conv_forward_naive(void **state) {
    (void)state;
    for (size_t t = 0; t < sizeof conv_shapes / sizeof conv_shapes[0]; t++) {
        RefConv d = conv_shapes[t];
        assert_int_equal(d.p, out_size(d.h, d.r, d.sh, d.ph));
        assert_int_equal(d.q, out_size(d.w, d.s, d.sw, d.pw));
        int64_t nx = d.n * d.c * d.h * d.w, nw = d.k * d.c * d.r * d.s, ny = d.n * d.k * d.p * d.q;
        double *x = rvec(nx, -1, 1), *w = rvec(nw, -1, 1), *b = rvec(d.k, -1, 1);
        double *y = zvec(ny), *yn = zvec(ny);
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            const double *bb = with_bias ? b : NULL;
            naive_conv(x, w, bb, yn, &d);
            ref_f64_conv2d(x, w, bb, y, &d);
            expect_close("conv2d f64 vs naive", y, yn, ny, 1e-12);
            float *xf = to_f32(x, nx), *wf = to_f32(w, nw), *bf = to_f32(b, d.k), *yf = to_f32(y, ny);
            ref_f32_conv2d(xf, wf, with_bias ? bf : NULL, yf, &d);
            expect_close_f32("conv2d f32 vs f64", yf, y, ny, 1e-4);
            free(xf), free(wf), free(bf), free(yf);
        }
        free(x), free(w), free(b), free(y), free(yn);
    }
}

/* Backward conv in f32 agrees with f64 on the awkward shapes. */
static void test_conv_backward_f32_f64(void **state) {
    (void)state;
    for (size_t t = 0; t < sizeof conv_shapes / sizeof conv_shapes[0]; t++) {
        RefConv d = conv_shapes[t];
        int64_t nx = d.n * d.c * d.h * d.w, nw = d.k * d.c * d.r * d.s, ny = d.n * d.k * d.p * d.q;
        double *x = rvec(nx, -1, 1), *w = rvec(nw, -1, 1), *dy = rvec(ny, -1, 1);
        double *dx = zvec(nx), *dw = zvec(nw), *db = zvec(d.k);
        ref_f64_conv2d_bwd_data(dy, w, dx, &d);
        ref_f64_conv2d_bwd_weight(dy, x, dw, db, &d);
        float *xf = to_f32(x, nx), *wf = to_f32(w, nw), *dyf = to_f32(dy, ny);
        float *dxf = to_f32(dx, nx), *dwf = to_f32(dw, nw), *dbf = to_f32(db, d.k);
        for (int64_t i = 0; i < nx; i++) dxf[i] = NAN; /* must be overwritten */
        for (int64_t i = 0; i < nw; i++) dwf[i] = NAN;
        ref_f32_conv2d_bwd_data(dyf, wf, dxf, &d);
        ref_f32_conv2d_bwd_weight(dyf, xf, dwf, dbf, &d);
        expect_close_f32("conv2d_bwd_data f32 vs f64", dxf, dx, nx, 1e-4);
        expect_close_f32("conv2d_bwd_weight f32 vs f64", dwf, dw, nw, 1e-4);
        expect_close_f32("conv2d db f32 vs f64", dbf, db, d.k, 1e-4);
        free(x), free(w), free(dy), free(dx), free(dw), free(db);
        free(xf), free(wf), free(dyf), free(dxf), free(dwf), free(dbf);
    }
}

typedef struct {
    RefConv d;
    double *x, *w, *b, *y, *r;
} ConvCtx;

static double conv_loss(void *p) {
    ConvCtx *c = p;
    ref_f64_conv2d(c->x, c->w, c->b, c->y, &c->d);
    return dot(c->r, c->y, c->d.n * c->d.k * c->d.p * c->d.q);
}

static void test_conv_grad(void **state) {
    (void)state;
    const RefConv shapes[] = {
        conv_dims(2, 3, 7, 6, 4, 3, 2, 2, 1, 1, 0),
        conv_dims(1, 2, 9, 9, 3, 5, 5, 2, 2, 2, 2),
        conv_dims(2, 3, 5, 7, 2, 1, 1, 2, 2, 0, 0),
        conv_dims(1, 2, 4, 5, 3, 3, 3, 1, 1, 2, 2),
    };
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        ConvCtx c = {.d = shapes[t]};
        RefConv *d = &c.d;
        int64_t nx = d->n * d->c * d->h * d->w, nw = d->k * d->c * d->r * d->s, ny = d->n * d->k * d->p * d->q;
        c.x = rvec(nx, -1, 1), c.w = rvec(nw, -1, 1), c.b = rvec(d->k, -1, 1);
        c.y = zvec(ny), c.r = rvec(ny, -1, 1);
        double *dx = zvec(nx), *dw = zvec(nw), *db = zvec(d->k);
        ref_f64_conv2d_bwd_data(c.r, c.w, dx, d);
        ref_f64_conv2d_bwd_weight(c.r, c.x, dw, db, d);
        check_grad("conv2d dx", conv_loss, &c, c.x, dx, nx);
        check_grad("conv2d dw", conv_loss, &c, c.w, dw, nw);
        check_grad("conv2d db", conv_loss, &c, c.b, db, d->k);
        free(c.x), free(c.w), free(c.b), free(c.y), free(c.r), free(dx), free(dw), free(db);
    }
}

/* ---- linear ------------------------------------------------------------------------ */

static void test_linear_forward(void **state) {
    (void)state;
    const int64_t shapes[][3] = {{1, 1, 1}, {3, 7, 5}, {4, 13, 10}, {2, 9216, 3}};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        int64_t n = shapes[t][0], in = shapes[t][1], out = shapes[t][2];
        double *x = rvec(n * in, -1, 1), *w = rvec(out * in, -1, 1), *b = rvec(out, -1, 1);
        double *y = zvec(n * out), *yn = zvec(n * out);
        for (int64_t i = 0; i < n; i++)
            for (int64_t o = 0; o < out; o++) {
                long double acc = b[o];
                for (int64_t j = 0; j < in; j++) acc += (long double)x[i * in + j] * w[o * in + j];
                yn[i * out + o] = (double)acc;
            }
        ref_f64_linear(x, w, b, y, n, in, out);
        expect_close("linear f64 vs naive", y, yn, n * out, 1e-12);
        float *xf = to_f32(x, n * in), *wf = to_f32(w, out * in), *bf = to_f32(b, out), *yf = to_f32(y, n * out);
        ref_f32_linear(xf, wf, bf, yf, n, in, out);
        /* 9216 terms of size 1: f32 round-off grows like sqrt(in) ulps */
        expect_close_f32("linear f32 vs f64", yf, y, n * out, in > 1000 ? 1e-3 : 1e-4);
        ref_f64_linear(x, w, NULL, y, n, in, out);
        for (int64_t i = 0; i < n * out; i++) yn[i] -= b[i % out];
        expect_close("linear no bias", y, yn, n * out, 1e-12);
        free(x), free(w), free(b), free(y), free(yn), free(xf), free(wf), free(bf), free(yf);
    }
}

typedef struct {
    int64_t n, in, out;
    double *x, *w, *b, *y, *r;
} LinCtx;

static double linear_loss(void *p) {
    LinCtx *c = p;
    ref_f64_linear(c->x, c->w, c->b, c->y, c->n, c->in, c->out);
    return dot(c->r, c->y, c->n * c->out);
}

static void test_linear_grad(void **state) {
    (void)state;
    LinCtx c = {.n = 3, .in = 7, .out = 5};
    c.x = rvec(c.n * c.in, -1, 1), c.w = rvec(c.out * c.in, -1, 1), c.b = rvec(c.out, -1, 1);
    c.y = zvec(c.n * c.out), c.r = rvec(c.n * c.out, -1, 1);
    double *dx = zvec(c.n * c.in), *dw = zvec(c.out * c.in), *db = zvec(c.out);
    ref_f64_linear_bwd_data(c.r, c.w, dx, c.n, c.in, c.out);
    ref_f64_linear_bwd_weight(c.r, c.x, dw, db, c.n, c.in, c.out);
    check_grad("linear dx", linear_loss, &c, c.x, dx, c.n * c.in);
    check_grad("linear dw", linear_loss, &c, c.w, dw, c.out * c.in);
    check_grad("linear db", linear_loss, &c, c.b, db, c.out);
    free(c.x), free(c.w), free(c.b), free(c.y), free(c.r), free(dx), free(dw), free(db);
}

/* ---- activations --------------------------------------------------------------- */

typedef struct {
    int64_t n;
    double *x, *y, *r;
    int sigmoid;
} ActCtx;

static double act_loss(void *p) {
    ActCtx *c = p;
    if (c->sigmoid) ref_f64_sigmoid(c->x, c->y, c->n);
    else ref_f64_relu(c->x, c->y, c->n);
    return dot(c->r, c->y, c->n);
}

static void test_activation_grad(void **state) {
    (void)state;
    for (int sig = 0; sig < 2; sig++) {
        ActCtx c = {.n = 50, .sigmoid = sig};
        c.x = rvec(c.n, -3, 3), c.y = zvec(c.n), c.r = rvec(c.n, -1, 1);
        for (int64_t i = 0; i < c.n; i++) /* keep away from relu's kink */
            if (fabs(c.x[i]) < 0.01) c.x[i] = 0.5;
        double *dx = zvec(c.n);
        act_loss(&c);
        if (sig) ref_f64_sigmoid_bwd(c.r, c.y, dx, c.n);
        else ref_f64_relu_bwd(c.r, c.y, dx, c.n);
        check_grad(sig ? "sigmoid dx" : "relu dx", act_loss, &c, c.x, dx, c.n);
        free(c.x), free(c.y), free(c.r), free(dx);
    }
    /* values by hand, and f32 vs f64 */
    double x[4] = {-2, 0, 0.5, 40}, y[4], ys[4];
    float xf[4] = {-2, 0, 0.5f, 40}, yf[4];
    ref_f64_relu(x, y, 4);
    assert_true(y[0] == 0 && y[1] == 0 && y[2] == 0.5 && y[3] == 40);
    ref_f64_sigmoid(x, ys, 4);
    assert_true(fabs(ys[1] - 0.5) < 1e-15 && fabs(ys[0] - 1 / (1 + exp(2.0))) < 1e-15);
    ref_f32_sigmoid(xf, yf, 4);
    expect_close_f32("sigmoid f32 vs f64", yf, ys, 4, 1e-6);
}

/* ---- pooling --------------------------------------------------------------------- */

static RefPool pool_dims(int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh,
                         int64_t sw, int64_t ph, int64_t pw) {
    RefPool d = {n, c, h, w, kh, kw, sh, sw, ph, pw, out_size(h, kh, sh, ph), out_size(w, kw, sw, pw)};
    return d;
}

typedef struct {
    RefPool d;
    double *x, *y, *r;
    int max;
} PoolCtx;

static double pool_loss(void *p) {
    PoolCtx *c = p;
    if (c->max) ref_f64_maxpool(c->x, c->y, &c->d);
    else ref_f64_avgpool(c->x, c->y, &c->d);
    return dot(c->r, c->y, c->d.n * c->d.c * c->d.p * c->d.q);
}

static void test_pool_grad(void **state) {
    (void)state;
    const RefPool shapes[] = {
        pool_dims(2, 3, 7, 7, 3, 3, 2, 2, 1, 1), /* overlapping, padded */
        pool_dims(1, 2, 6, 5, 2, 2, 2, 2, 0, 0),
        pool_dims(1, 3, 5, 6, 3, 3, 1, 1, 1, 1),
        pool_dims(2, 1, 9, 8, 3, 2, 2, 3, 1, 0),
    };
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++)
        for (int max = 0; max < 2; max++) {
            PoolCtx c = {.d = shapes[t], .max = max};
            int64_t nx = c.d.n * c.d.c * c.d.h * c.d.w, ny = c.d.n * c.d.c * c.d.p * c.d.q;
            c.x = distinct_vec(nx), c.y = zvec(ny), c.r = rvec(ny, -1, 1);
            double *dx = zvec(nx);
            if (max) ref_f64_maxpool_bwd(c.r, c.x, dx, &c.d);
            else ref_f64_avgpool_bwd(c.r, dx, &c.d);
            check_grad(max ? "maxpool dx" : "avgpool dx", pool_loss, &c, c.x, dx, nx);
            /* f32 forward agrees */
            pool_loss(&c);
            float *xf = to_f32(c.x, nx), *yf = to_f32(c.y, ny);
            if (max) ref_f32_maxpool(xf, yf, &c.d);
            else ref_f32_avgpool(xf, yf, &c.d);
            expect_close_f32(max ? "maxpool f32" : "avgpool f32", yf, c.y, ny, 1e-6);
            free(c.x), free(c.y), free(c.r), free(dx), free(xf), free(yf);
        }
}

/* Ties go to the first maximum in scan order; padding is -inf for max and 0
 * (counted in the divisor) for avg. */
static void test_pool_by_hand(void **state) {
    (void)state;
    double x[4] = {-1, -3, -1, -2}; /* [[-1,-3],[-1,-2]] */
    RefPool d = pool_dims(1, 1, 2, 2, 2, 2, 1, 1, 0, 0);
    double y[9], dy[9] = {5, 5, 5, 5, 5, 5, 5, 5, 5}, dx[4];
    ref_f64_maxpool(x, y, &d);
    assert_true(y[0] == -1);
    ref_f64_maxpool_bwd(dy, x, dx, &d);
    assert_true(dx[0] == 5 && dx[1] == 0 && dx[2] == 0 && dx[3] == 0);

    d = pool_dims(1, 1, 2, 2, 2, 2, 1, 1, 1, 1); /* 3x3 out, corners see one input */
    assert_int_equal(d.p, 3);
    ref_f64_maxpool(x, y, &d);
    const double ymax[9] = {-1, -1, -3, -1, -1, -2, -1, -1, -2};
    for (int i = 0; i < 9; i++) assert_true(y[i] == ymax[i]);
    for (int i = 0; i < 9; i++) dy[i] = i + 1;
    ref_f64_maxpool_bwd(dy, x, dx, &d);
    /* windows: 0 ->x0; 1 ->x0 (-1 beats -3); 2 ->x1; 3 ->x0 (tie x0,x2);
     * 4 ->x0 (ties x0,x2); 5 ->x3 (x1=-3,x3=-2); 6 ->x2; 7 ->x2; 8 ->x3 */
    assert_true(dx[0] == 1 + 2 + 4 + 5 && dx[1] == 3 && dx[2] == 7 + 8 && dx[3] == 6 + 9);

    double xa[4] = {1, 2, 3, 4};
    ref_f64_avgpool(xa, y, &d);
    assert_true(y[0] == 0.25 && y[4] == 2.5 && y[8] == 1.0 && y[1] == 0.75);
    ref_f64_avgpool_bwd(dy, dx, &d);
    assert_true(dx[0] == (1 + 2 + 4 + 5) / 4.0 && dx[3] == (5 + 6 + 8 + 9) / 4.0);
}

typedef struct {
    int64_t nc, hw;
    double *x, *y, *r;
    int max;
} GPoolCtx;

static double gpool_loss(void *p) {
    GPoolCtx *c = p;
    if (c->max) ref_f64_global_maxpool(c->x, c->y, c->nc, c->hw);
    else ref_f64_global_avgpool(c->x, c->y, c->nc, c->hw);
    return dot(c->r, c->y, c->nc);
}

static void test_global_pool(void **state) {
    (void)state;
    for (int max = 0; max < 2; max++) {
        GPoolCtx c = {.nc = 6, .hw = 13, .max = max};
        c.x = distinct_vec(c.nc * c.hw), c.y = zvec(c.nc), c.r = rvec(c.nc, -1, 1);
        double *dx = zvec(c.nc * c.hw);
        if (max) ref_f64_global_maxpool_bwd(c.r, c.x, dx, c.nc, c.hw);
        else ref_f64_global_avgpool_bwd(c.r, dx, c.nc, c.hw);
        check_grad(max ? "global_maxpool dx" : "global_avgpool dx", gpool_loss, &c, c.x, dx, c.nc * c.hw);
        free(c.x), free(c.y), free(c.r), free(dx);
    }
    double x[6] = {1, 3, 3, 0, 2, 7}, y[2], dy[2] = {10, 20}, dx[6];
    ref_f64_global_maxpool(x, y, 2, 3);
    assert_true(y[0] == 3 && y[1] == 7);
    ref_f64_global_maxpool_bwd(dy, x, dx, 2, 3);
    assert_true(dx[0] == 0 && dx[1] == 10 && dx[2] == 0 && dx[5] == 20); /* first of the tie */
    ref_f64_global_avgpool(x, y, 2, 3);
    assert_true(y[0] == 7.0 / 3 && y[1] == 3);
}

/* ---- dropout ------------------------------------------------------------------------ */

static void test_dropout(void **state) {
    (void)state;
    const int64_t n = 100000;
    const float p = 0.3f;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    float *m1 = malloc(n * sizeof *m1), *m2 = malloc(n * sizeof *m2), *m3 = malloc(n * sizeof *m3);
    double *md = malloc(n * sizeof *md), *xd = malloc(n * sizeof *xd), *yd = malloc(n * sizeof *yd);
    assert_true(x && y && m1 && m2 && m3 && md && xd && yd);
    for (int64_t i = 0; i < n; i++) x[i] = (float)urand(-1, 1), xd[i] = x[i];

    ref_f32_dropout(x, y, m1, n, p, 42, 3, 7);
    int64_t zeros = 0;
    for (int64_t i = 0; i < n; i++) {
        if (m1[i] == 0) zeros++;
        else assert_true(m1[i] == 1.0f / (1.0f - p));
        assert_true(y[i] == x[i] * m1[i]);
    }
    double frac = (double)zeros / (double)n; /* std ~ 0.0015 */
    if (fabs(frac - p) > 0.01) fail_msg("dropout zero fraction %.4f, expected %.2f", frac, (double)p);

    ref_f32_dropout(x, y, m2, n, p, 42, 3, 7);
    assert_memory_equal(m1, m2, n * sizeof *m1);
    ref_f32_dropout(x, y, m3, n, p, 42, 3, 8);
    int64_t diff = 0;
    for (int64_t i = 0; i < n; i++) diff += (m1[i] == 0) != (m3[i] == 0);
    if (diff < n / 10) fail_msg("dropout masks of steps 7 and 8 differ in only %lld places", (long long)diff);
    ref_f32_dropout(x, y, m3, n, p, 42, 4, 7);
    diff = 0;
    for (int64_t i = 0; i < n; i++) diff += (m1[i] == 0) != (m3[i] == 0);
    assert_true(diff > n / 10);

    /* f64 drops the same elements */
    ref_f64_dropout(xd, yd, md, n, p, 42, 3, 7);
    for (int64_t i = 0; i < n; i++) assert_true((md[i] == 0) == (m1[i] == 0));

    /* p = 0 keeps everything */
    ref_f32_dropout(x, y, m3, n, 0.0f, 42, 3, 7);
    for (int64_t i = 0; i < n; i++) assert_true(m3[i] == 1.0f && y[i] == x[i]);

    /* backward: dx = dy * mask, checked by finite differences of the forward */
    {
        int64_t k = 200;
        double *dy = rvec(k, -1, 1), *dx = zvec(k), *mask = zvec(k), *yy = zvec(k), *xx = rvec(k, -1, 1);
        ref_f64_dropout(xx, yy, mask, k, 0.5f, 1, 2, 3);
        ref_f64_dropout_bwd(dy, mask, dx, k);
        for (int64_t i = 0; i < k; i++) {
            double s = xx[i];
            xx[i] = s + FD_EPS;
            ref_f64_dropout(xx, yy, mask, k, 0.5f, 1, 2, 3);
            double lp = dot(dy, yy, k);
            xx[i] = s - FD_EPS;
            ref_f64_dropout(xx, yy, mask, k, 0.5f, 1, 2, 3);
            double lm = dot(dy, yy, k);
            xx[i] = s;
            double fd = (lp - lm) / (2 * FD_EPS);
            if (!(fabs(fd - dx[i]) <= FD_RTOL * fabs(fd) + FD_ATOL)) fail_msg("dropout dx[%lld]: %g vs %g", (long long)i, fd, dx[i]);
        }
        free(dy), free(dx), free(mask), free(yy), free(xx);
    }
    free(x), free(y), free(m1), free(m2), free(m3), free(md), free(xd), free(yd);
}

/* ---- batch norm -------------------------------------------------------------------- */

typedef struct {
    int64_t n, c, hw;
    double *x, *gamma, *beta, *y, *r, *rmean, *rvar, *smean, *sinv;
} BnCtx;

static double bn_loss(void *p) {
    BnCtx *b = p;
    ref_f64_batchnorm_train(b->x, b->gamma, b->beta, b->rmean, b->rvar, b->y, b->smean, b->sinv, b->n, b->c,
                            b->hw, 0.1f, 1e-5f);
    return dot(b->r, b->y, b->n * b->c * b->hw);
}

static void test_batchnorm_grad(void **state) {
    (void)state;
    const int64_t shapes[][3] = {{3, 2, 5}, {4, 3, 1}, {2, 4, 9}};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        BnCtx b = {.n = shapes[t][0], .c = shapes[t][1], .hw = shapes[t][2]};
        int64_t nx = b.n * b.c * b.hw;
        b.x = rvec(nx, -2, 2), b.gamma = rvec(b.c, 0.5, 1.5), b.beta = rvec(b.c, -1, 1);
        b.y = zvec(nx), b.r = rvec(nx, -1, 1);
        b.rmean = zvec(b.c), b.rvar = zvec(b.c), b.smean = zvec(b.c), b.sinv = zvec(b.c);
        double *dx = zvec(nx), *dg = zvec(b.c), *dbt = zvec(b.c);
        bn_loss(&b);
        ref_f64_batchnorm_bwd(b.r, b.x, b.gamma, b.smean, b.sinv, dx, dg, dbt, b.n, b.c, b.hw);
        check_grad("batchnorm dx", bn_loss, &b, b.x, dx, nx);
        check_grad("batchnorm dgamma", bn_loss, &b, b.gamma, dg, b.c);
        check_grad("batchnorm dbeta", bn_loss, &b, b.beta, dbt, b.c);

        /* f32 forward and backward agree with f64 */
        float *xf = to_f32(b.x, nx), *gf = to_f32(b.gamma, b.c), *bf = to_f32(b.beta, b.c), *yf = to_f32(b.y, nx);
        float *rmf = to_f32(b.rmean, b.c), *rvf = to_f32(b.rvar, b.c), *smf = to_f32(b.smean, b.c);
        float *sif = to_f32(b.sinv, b.c), *rf = to_f32(b.r, nx), *dxf = to_f32(dx, nx);
        float *dgf = to_f32(dg, b.c), *dbf = to_f32(dbt, b.c);
        bn_loss(&b);
        ref_f32_batchnorm_train(xf, gf, bf, rmf, rvf, yf, smf, sif, b.n, b.c, b.hw, 0.1f, 1e-5f);
        expect_close_f32("batchnorm y f32", yf, b.y, nx, 1e-4);
        ref_f32_batchnorm_bwd(rf, xf, gf, smf, sif, dxf, dgf, dbf, b.n, b.c, b.hw);
        expect_close_f32("batchnorm dx f32", dxf, dx, nx, 1e-4);
        expect_close_f32("batchnorm dgamma f32", dgf, dg, b.c, 1e-4);
        free(xf), free(gf), free(bf), free(yf), free(rmf), free(rvf), free(smf), free(sif), free(rf), free(dxf), free(dgf), free(dbf);
        free(b.x), free(b.gamma), free(b.beta), free(b.y), free(b.r), free(b.rmean), free(b.rvar), free(b.smean), free(b.sinv);
        free(dx), free(dg), free(dbt);
    }
}

static void test_batchnorm_by_hand(void **state) {
    (void)state;
    /* n=2, c=1, hw=2: x = 1,2 | 3,6: mean 3, biased var 3.5, unbiased 14/3 */
    double x[4] = {1, 2, 3, 6}, g = 2, bt = 0.5, rm = 0.5, rv = 2, y[4], sm, si;
    ref_f64_batchnorm_train(x, &g, &bt, &rm, &rv, y, &sm, &si, 2, 1, 2, 0.1f, 1e-5f);
    double eps = (double)1e-5f, inv = 1 / sqrt(3.5 + eps), mom = (double)0.1f;
    assert_true(fabs(sm - 3) < 1e-15 && fabs(si - inv) < 1e-15);
    assert_true(fabs(rm - ((1 - mom) * 0.5 + mom * 3)) < 1e-15);
    assert_true(fabs(rv - ((1 - mom) * 2 + mom * 14.0 / 3)) < 1e-15);
    assert_true(fabs(rm - 0.75) < 1e-8 && fabs(rv - 2.2666666667) < 1e-8);
    assert_true(fabs(y[3] - (2 * 3 * inv + 0.5)) < 1e-14 && fabs(y[0] - (-4 * inv + 0.5)) < 1e-14);

    float xf[4] = {1, 2, 3, 6}, gf = 2, bf = 0.5f, rmf = 0.5f, rvf = 2, yf[4], smf, sif;
    ref_f32_batchnorm_train(xf, &gf, &bf, &rmf, &rvf, yf, &smf, &sif, 2, 1, 2, 0.1f, 1e-5f);
    assert_true(fabsf(rmf - 0.75f) < 1e-6f && fabsf(rvf - 2.2666667f) < 1e-6f && smf == 3.0f);

    /* eval uses the running stats: c=2, hw=1 */
    double xe[4] = {1, 2, 3, 4}, ge[2] = {1, 3}, be[2] = {0, -1}, rme[2] = {1, 2}, rve[2] = {4, 0.25}, ye[4];
    ref_f64_batchnorm_eval(xe, ge, be, rme, rve, ye, 2, 2, 1, 1e-5f);
    assert_true(fabs(ye[0] - 0) < 1e-15 && fabs(ye[2] - 2 / sqrt(4 + eps)) < 1e-14);
    assert_true(fabs(ye[3] - (3 * 2 / sqrt(0.25 + eps) - 1)) < 1e-13);
}

/* ---- data movement, arithmetic, sgd ------------------------------------------------ */

static void test_concat_slice_add(void **state) {
    (void)state;
    /* y [2, 5, 3] = concat(a [2, 2, 3], b [2, 3, 3]) */
    double a[12], b[18], y[30], back[18];
    for (int i = 0; i < 12; i++) a[i] = i;
    for (int i = 0; i < 18; i++) b[i] = 100 + i;
    ref_f64_concat_part(a, y, 2, 2, 0, 5, 3);
    ref_f64_concat_part(b, y, 2, 3, 2, 5, 3);
    assert_true(y[0] == 0 && y[5] == 5 && y[6] == 100 && y[14] == 108 && y[15] == 6 && y[21] == 109 && y[29] == 117);
    ref_f64_slice(y, back, 2, 2, 3, 5, 3);
    assert_memory_equal(back, b, sizeof b);
    ref_f64_slice(y, back, 2, 0, 2, 5, 3);
    assert_memory_equal(back, a, sizeof a);

    float fa[3] = {1, 2, 3}, fb[3] = {10, 20, 30}, fy[3];
    ref_f32_add(fa, fb, fy, 3);
    assert_true(fy[0] == 11 && fy[2] == 33);
    ref_f32_accum(fa, fy, 3);
    assert_true(fy[0] == 12 && fy[2] == 36);
    ref_f32_sgd(fy, fa, 0.5, 3);
    assert_true(fy[0] == 11.5f && fy[2] == 34.5f);
    double dp[2] = {1, 1}, dg[2] = {2, -4};
    ref_f64_sgd(dp, dg, 0.1, 2);
    assert_true(fabs(dp[0] - 0.8) < 1e-15 && fabs(dp[1] - 1.4) < 1e-15);
}

/* ---- softmax cross-entropy ------------------------------------------------------------ */

typedef struct {
    int64_t n, k;
    double *logits;
    const int32_t *labels;
} XentCtx;

static double xent_loss(void *p) {
    XentCtx *c = p;
    double l;
    ref_f64_softmax_xent(c->logits, c->labels, &l, c->n, c->k);
    return l;
}

static void test_softmax_xent(void **state) {
    (void)state;
    int32_t labels[5] = {3, 0, 9, 4, 4};
    XentCtx c = {.n = 5, .k = 10, .labels = labels};
    c.logits = rvec(c.n * c.k, -4, 4);
    double *g = zvec(c.n * c.k);
    ref_f64_softmax_xent_bwd(c.logits, labels, g, c.n, c.k);
    check_grad("softmax_xent dlogits", xent_loss, &c, c.logits, g, c.n * c.k);

    float *lf = to_f32(c.logits, c.n * c.k), *gf = to_f32(g, c.n * c.k), lossf;
    ref_f32_softmax_xent(lf, labels, &lossf, c.n, c.k);
    double loss = xent_loss(&c);
    expect_close_f32("softmax_xent f32", &lossf, &loss, 1, 1e-5);
    ref_f32_softmax_xent_bwd(lf, labels, gf, c.n, c.k);
    expect_close_f32("softmax_xent_bwd f32", gf, g, c.n * c.k, 1e-6);
    free(c.logits), free(g), free(lf), free(gf);

    /* by hand: logits (0, ln 3) -> softmax (1/4, 3/4) */
    double l2[2] = {0, log(3.0)}, out, d2[2];
    int32_t lab0 = 0;
    ref_f64_softmax_xent(l2, &lab0, &out, 1, 2);
    assert_true(fabs(out - log(4.0)) < 1e-15);
    ref_f64_softmax_xent_bwd(l2, &lab0, d2, 1, 2);
    assert_true(fabs(d2[0] + 0.75) < 1e-15 && fabs(d2[1] - 0.75) < 1e-15);

    /* numerically stable at huge logits */
    float big[6] = {1000, 1000, -1000, 90, 0, 88};
    int32_t lb[2] = {1, 2};
    float lossb, gb[6];
    ref_f32_softmax_xent(big, lb, &lossb, 2, 3);
    double want = (log(2.0) + (90 + log(1 + exp(-90.0) + exp(-2.0)) - 88)) / 2;
    assert_true(isfinite(lossb) && fabs(lossb - want) < 1e-6);
    ref_f32_softmax_xent_bwd(big, lb, gb, 2, 3);
    for (int i = 0; i < 6; i++) assert_true(isfinite(gb[i]));
    assert_true(fabsf(gb[0] - 0.25f) < 1e-6f && fabsf(gb[1] + 0.25f) < 1e-6f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_forward_naive),
        cmocka_unit_test(test_conv_backward_f32_f64),
        cmocka_unit_test(test_conv_grad),
        cmocka_unit_test(test_linear_forward),
        cmocka_unit_test(test_linear_grad),
        cmocka_unit_test(test_activation_grad),
        cmocka_unit_test(test_pool_grad),
        cmocka_unit_test(test_pool_by_hand),
        cmocka_unit_test(test_global_pool),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_batchnorm_grad),
        cmocka_unit_test(test_batchnorm_by_hand),
        cmocka_unit_test(test_concat_slice_add),
        cmocka_unit_test(test_softmax_xent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
