/* Metrics: the epoch line, JSON lines, the SVG plot, the progress bar. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/metrics.h"
#include "runtime/progress.h"

static char tmpdir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/netc_test_metrics_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    const char *names[] = {"m.jsonl", "plot.svg", "one.svg", "big.svg", "legend.svg"};
    char path[512];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, names[i]);
        unlink(path);
    }
    rmdir(tmpdir);
    return 0;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    p[n] = 0;
    fclose(f);
    return p;
}

static int count(const char *s, const char *sub)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, sub)); p += strlen(sub))
        n++;
    return n;
}

static void test_format_epoch(void **state)
{
    (void)state;
    char buf[256];
    rt_format_epoch(buf, sizeof buf, 3, 10, 0.41234, 0.8476, 0.8351, 4149.24);
    assert_string_equal(buf,
                        "epoch 3/10: loss 0.412, train acc 0.848, test acc 0.835, 4149.2 examples/sec");
}

static void test_jsonl(void **state)
{
    (void)state;
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/m.jsonl", tmpdir);
    RtMetrics *m = rt_metrics_open(path, 0, err, sizeof err);
    assert_non_null(m);
    assert_int_equal(rt_metrics_epoch(m, 3, 10, 0.412, 0.848, 0.835, 4149.2, err, sizeof err), 0);
    char *p = slurp(path); /* flushed already */
    assert_string_equal(p, "{\"epoch\":3,\"epochs\":10,\"loss\":0.412,\"train_acc\":0.848,"
                           "\"test_acc\":0.835,\"examples_per_sec\":4149.2}\n");
    free(p);
    assert_int_equal(rt_metrics_epoch(m, 4, 10, NAN, 0.5, INFINITY, 1, err, sizeof err), 0);
    assert_int_equal(rt_metrics_close(m), 0);
    m = rt_metrics_open(path, 1, err, sizeof err);
    assert_int_equal(rt_metrics_epoch(m, 5, 10, 0.25, 0.9, 0.875, 10, err, sizeof err), 0);
    assert_int_equal(rt_metrics_close(m), 0);
    p = slurp(path);
    assert_int_equal(count(p, "\n"), 3);
    assert_non_null(strstr(p, "\"loss\":null,\"train_acc\":0.5,\"test_acc\":null"));
    assert_non_null(strstr(p, "{\"epoch\":5,"));
    free(p);
    m = rt_metrics_open(path, 0, err, sizeof err);
    assert_int_equal(rt_metrics_close(m), 0);
    p = slurp(path);
    assert_string_equal(p, "");
    free(p);

    assert_null(rt_metrics_open("/nonexistent/dir/m.jsonl", 0, err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/dir/m.jsonl"));
    assert_int_equal(rt_metrics_close(NULL), 0);
}

/* Checks the SVG's frame and that it has 3 polylines of `points` points. */
static void check_svg(const char *path, int points)
{
    char *p = slurp(path);
    size_t n = strlen(p);
    assert_true(strncmp(p, "<svg", 4) == 0);
    while (n > 0 && p[n - 1] == '\n')
        p[--n] = 0;
    assert_true(n > 6 && strcmp(p + n - 6, "</svg>") == 0);
    assert_int_equal(count(p, "<polyline"), 3);
    assert_int_equal(count(p, "<"), count(p, ">"));
    for (const char *q = p; (q = strstr(q, "<polyline")); q++) {
        const char *pts = strstr(q, "points=\"");
        assert_non_null(pts);
        pts += 8;
        const char *end = strchr(pts, '"');
        int got = 0;
        for (const char *c = pts; c < end; c++)
            got += *c == ',';
        assert_int_equal(got, points);
    }
    assert_non_null(strstr(p, "train loss"));
    assert_non_null(strstr(p, "train acc"));
    assert_non_null(strstr(p, "test acc"));
    free(p);
}

static void test_plot(void **state)
{
    (void)state;
    double loss[10], tr[10], te[10];
    for (int i = 0; i < 10; i++) {
        loss[i] = 0.9 / (i + 1);
        tr[i] = 0.6 + 0.03 * i;
        te[i] = 0.58 + 0.028 * i;
    }
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/plot.svg", tmpdir);
    assert_int_equal(rt_plot_svg(path, loss, tr, te, 7, 10, "LeNet <fashion> & co", err, sizeof err), 0);
    check_svg(path, 7);
    char *p = slurp(path);
    assert_non_null(strstr(p, "LeNet &lt;fashion&gt; &amp; co"));
    assert_non_null(strstr(p, ">0.2</text>")); /* y ticks 0..1 by 0.2 */
    assert_non_null(strstr(p, ">1</text>"));
    assert_non_null(strstr(p, ">10</text>")); /* x ticks up to epochs_total */
    free(p);

    /* A loss above 1 stretches the y axis. */
    loss[0] = 2.3;
    snprintf(path, sizeof path, "%s/big.svg", tmpdir);
    assert_int_equal(rt_plot_svg(path, loss, tr, te, 10, 10, NULL, err, sizeof err), 0);
    check_svg(path, 10);
    p = slurp(path);
    assert_non_null(strstr(p, ">2.5</text>"));
    free(p);

    snprintf(path, sizeof path, "%s/one.svg", tmpdir);
    assert_int_equal(rt_plot_svg(path, loss, tr, te, 1, 1, "x", err, sizeof err), 0);
    check_svg(path, 1);
    assert_int_equal(rt_plot_svg("/nonexistent/dir/p.svg", loss, tr, te, 1, 1, "x", err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/dir/p.svg"));
}

/* The number after `name="` in s, or NAN. */
static double attr(const char *s, const char *name)
{
    char key[32];
    snprintf(key, sizeof key, " %s=\"", name);
    const char *p = strstr(s, key);
    return p ? strtod(p + strlen(key), NULL) : NAN;
}

/* Whether segment (x0,y0)-(x1,y1) meets the box [bx0,bx1] x [by0,by1]
 * (Liang-Barsky clipping). */
static int segment_meets_box(double x0, double y0, double x1, double y1, double bx0, double by0, double bx1,
                             double by1)
{
    double t0 = 0, t1 = 1, dx = x1 - x0, dy = y1 - y0;
    double p[4] = {-dx, dx, -dy, dy}, q[4] = {x0 - bx0, bx1 - x0, y0 - by0, by1 - y0};
    for (int i = 0; i < 4; i++) {
        if (p[i] == 0) {
            if (q[i] < 0)
                return 0;
            continue;
        }
        double t = q[i] / p[i];
        if (p[i] < 0 && t > t0)
            t0 = t;
        if (p[i] > 0 && t < t1)
            t1 = t;
        if (t0 > t1)
            return 0;
    }
    return 1;
}

/* Fails when the plot's legend box (the translucent rect) lies over a curve
 * (a polyline segment or a lone point, with the stroke's width around it)
 * or outside the picture. */
static void check_legend_clear(const char *path, const char *what)
{
    char *svg = slurp(path);
    const char *r = strstr(svg, "fill-opacity");
    assert_non_null(r);
    while (r > svg && strncmp(r, "<rect", 5))
        r--;
    double lx = attr(r, "x"), ly = attr(r, "y"), lw = attr(r, "width"), lh = attr(r, "height");
    double sw = attr(svg, "width"), sh = attr(svg, "height");
    assert_true(lw > 0 && lh > 0);
    if (lx < 0 || ly < 0 || lx + lw > sw || ly + lh > sh)
        fail_msg("%s: legend [%g, %g] x [%g, %g] outside the %gx%g picture", what, lx, lx + lw, ly, ly + lh, sw, sh);
    const double m = 1.5; /* the curves' stroke width */
    double bx0 = lx - m, by0 = ly - m, bx1 = lx + lw + m, by1 = ly + lh + m;
    for (const char *q = svg; (q = strstr(q, "<polyline")); q++) {
        const char *pts = strstr(q, "points=\"") + 8, *end = strchr(pts, '"');
        double px = NAN, py = NAN, x, y;
        int npts = 0, used;
        for (const char *c = pts; c < end && sscanf(c, "%lf,%lf%n", &x, &y, &used) == 2; c += used) {
            if ((npts == 0 && x >= bx0 && x <= bx1 && y >= by0 && y <= by1) ||
                (npts > 0 && segment_meets_box(px, py, x, y, bx0, by0, bx1, by1)))
                fail_msg("%s: legend [%g, %g] x [%g, %g] lies over the curve at (%g, %g)", what, lx, lx + lw, ly,
                         ly + lh, x, y);
            px = x, py = y, npts++;
        }
    }
    for (const char *q = svg; (q = strstr(q, "<circle")); q++) {
        double cx = attr(q, "cx"), cy = attr(q, "cy"), cr = attr(q, "r");
        if (cx + cr >= bx0 && cx - cr <= bx1 && cy + cr >= by0 && cy - cr <= by1)
            fail_msg("%s: legend lies over the point at (%g, %g)", what, cx, cy);
    }
    free(svg);
}

static double lcg(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0;
}

static void test_plot_legend(void **state)
{
    (void)state;
    double loss[40], tr[40], te[40];
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/legend.svg", tmpdir);
    /* A ten-epoch DenseNet run: accuracies end high on the right, the loss
     * low on the right, both start on the left. */
    static const double dl[10] = {0.52, 0.33, 0.29, 0.27, 0.25, 0.24, 0.23, 0.22, 0.21, 0.2};
    static const double dtr[10] = {0.81, 0.88, 0.89, 0.9, 0.91, 0.915, 0.92, 0.925, 0.93, 0.935};
    static const double dte[10] = {0.85, 0.87, 0.88, 0.89, 0.9, 0.905, 0.91, 0.9, 0.915, 0.92};
    assert_int_equal(rt_plot_svg(path, dl, dtr, dte, 10, 10, "densenet.net", err, sizeof err), 0);
    check_legend_clear(path, "densenet");
    /* the same run stopped after 7 of 10 epochs */
    assert_int_equal(rt_plot_svg(path, dl, dtr, dte, 7, 10, "densenet.net", err, sizeof err), 0);
    check_legend_clear(path, "densenet, 7 of 10");
    /* curves through every corner: loss from top left to bottom right,
     * accuracies from bottom left to top right, and a flat one through the
     * middle of each side */
    for (int i = 0; i < 10; i++) {
        loss[i] = 0.98 - 0.105 * i;
        tr[i] = 0.02 + 0.105 * i;
        te[i] = i % 2 ? 0.97 : 0.03;
    }
    assert_int_equal(rt_plot_svg(path, loss, tr, te, 10, 10, NULL, err, sizeof err), 0);
    check_legend_clear(path, "corners");
    for (int i = 0; i < 10; i++)
        te[i] = 0.5;
    assert_int_equal(rt_plot_svg(path, loss, tr, te, 10, 10, NULL, err, sizeof err), 0);
    check_legend_clear(path, "corners and middle");
    /* a loss above 1 in the top left */
    for (int i = 0; i < 10; i++) {
        loss[i] = 2.3 / (1 + i);
        tr[i] = 0.3 + 0.06 * i;
        te[i] = 0.28 + 0.06 * i;
    }
    assert_int_equal(rt_plot_svg(path, loss, tr, te, 10, 10, NULL, err, sizeof err), 0);
    check_legend_clear(path, "large loss");
    /* one epoch: three points */
    assert_int_equal(rt_plot_svg(path, dl, dtr, dte, 1, 1, NULL, err, sizeof err), 0);
    check_legend_clear(path, "one epoch");
    /* random curves, with gaps */
    uint64_t seed = 42;
    for (int k = 0; k < 300; k++) {
        int n = 1 + (int)(lcg(&seed) * 39), total = n + (int)(lcg(&seed) * 5);
        for (int i = 0; i < n; i++) {
            loss[i] = lcg(&seed) * (k % 3 ? 1.0 : 3.0);
            tr[i] = lcg(&seed) < 0.05 ? NAN : lcg(&seed);
            te[i] = lcg(&seed);
        }
        char what[32];
        snprintf(what, sizeof what, "random %d", k);
        assert_int_equal(rt_plot_svg(path, loss, tr, te, n, total, NULL, err, sizeof err), 0);
        check_legend_clear(path, what);
    }
}

static void test_progress(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    RtProgress p;
    rt_progress_begin(&p, f, "train", 10);
    assert_int_equal(p.tty, 0);
    for (int i = 1; i <= 10; i++)
        rt_progress_update(&p, i, "loss 0.53");
    rt_progress_end(&p);
    assert_int_equal(ftell(f), 0); /* not a terminal: silent */

    rt_progress_begin(&p, f, "train", 10);
    p.tty = 1;
    rt_progress_update(&p, 1, "loss 0.9");
    rt_progress_update(&p, 2, "loss 0.8"); /* within 0.1 s: not drawn */
    rt_progress_update(&p, 10, "loss 0.53");
    rt_progress_end(&p);
    long n = ftell(f);
    char buf[1024] = {0};
    rewind(f);
    assert_int_equal(fread(buf, 1, sizeof buf - 1, f), (size_t)n);
    fclose(f);
    assert_int_equal(count(buf, "\r"), 3);
    assert_null(strstr(buf, "loss 0.8"));
    assert_non_null(strstr(buf, " 10% 1/10"));
    assert_non_null(strstr(buf, "100% 10/10"));
    assert_non_null(strstr(buf, "loss 0.53"));
    assert_non_null(strstr(buf, "[==============================]"));
    assert_int_equal(buf[n - 1], '\n');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_epoch),
        cmocka_unit_test(test_jsonl),
        cmocka_unit_test(test_plot),
        cmocka_unit_test(test_plot_legend),
        cmocka_unit_test(test_progress),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
