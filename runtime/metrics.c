/* Training metrics: the seed's epoch line, JSON lines, an SVG plot. */
#include "base/err.h"
#include "runtime/metrics.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/outfile.h"


int rt_format_epoch(char *buf, size_t n, int epoch, int epochs, double loss, double train_acc,
                    double test_acc, double examples_per_sec)
{
    return snprintf(buf, n, "epoch %d/%d: loss %.3f, train acc %.3f, test acc %.3f, %.1f examples/sec",
                    epoch, epochs, loss, train_acc, test_acc, examples_per_sec);
}

/* ---- JSON lines ---- */

struct RtMetrics {
    FILE *f;
    char *path;
};

RtMetrics *rt_metrics_open(const char *path, int append, char *err, size_t errlen)
{
    RtMetrics *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        rt_seterr(err, errlen, "%s: out of memory", path);
        free(m);
        return NULL;
    }
    m->f = fopen(path, append ? "a" : "w");
    if (!m->f) {
        rt_seterr(err, errlen, "%s: cannot open for writing: %s", path, strerror(errno));
        free(m->path);
        free(m);
        return NULL;
    }
    return m;
}

/* A JSON number, %.6g or with one decimal (%.1f), or null when x is NaN or
 * infinite. */
static void json_num(char *buf, size_t n, int one_decimal, double x)
{
    if (isfinite(x) && one_decimal)
        snprintf(buf, n, "%.1f", x);
    else if (isfinite(x))
        snprintf(buf, n, "%.6g", x);
    else
        snprintf(buf, n, "null");
}

int rt_metrics_epoch(RtMetrics *m, int epoch, int epochs, double loss, double train_acc,
                     double test_acc, double examples_per_sec, char *err, size_t errlen)
{
    char l[32], tr[32], te[32], eps[340];
    json_num(l, sizeof l, 0, loss);
    json_num(tr, sizeof tr, 0, train_acc);
    json_num(te, sizeof te, 0, test_acc);
    json_num(eps, sizeof eps, 1, examples_per_sec);
    fprintf(m->f,
            "{\"epoch\":%d,\"epochs\":%d,\"loss\":%s,\"train_acc\":%s,\"test_acc\":%s,"
            "\"examples_per_sec\":%s}\n",
            epoch, epochs, l, tr, te, eps);
    if (fflush(m->f) != 0 || ferror(m->f)) {
        rt_seterr(err, errlen, "%s: write failed: %s", m->path, strerror(errno ? errno : EIO));
        return -1;
    }
    return 0;
}

int rt_metrics_close(RtMetrics *m)
{
    if (!m)
        return 0;
    int rc = ferror(m->f) ? -1 : 0;
    if (fclose(m->f) != 0)
        rc = -1;
    free(m->path);
    free(m);
    return rc;
}

/* ---- SVG plot ---- */

/* Plot geometry, in SVG user units: the picture, the axes, and the legend
 * box with its distance from the axes' sides. */
enum { W = 480, H = 330, PX0 = 60, PX1 = 460, PY0 = 40, PY1 = 275 };
enum { LW = 102, LH = 54, LPAD = 8 };

typedef struct {
    const double *v[3];
    int n, total;
    const char *title;
    double xmin, xmax, ymax, ystep;
    int xstep;
    int width;          /* of the picture: W, or more with the legend beside the axes */
    int lx, ly;         /* the legend box's top left corner */
} Plot;

static const struct {
    const char *label, *color, *dash;
} curves[3] = {
    {"train loss", "#1f77b4", NULL},
    {"train acc", "#bf00bf", "6,4"},
    {"test acc", "#008000", "8,3,2,3"},
};

static double px(const Plot *p, double x)
{
    return PX0 + (x - p->xmin) / (p->xmax - p->xmin) * (PX1 - PX0);
}

static double py(const Plot *p, double y)
{
    return PY1 - y / p->ymax * (PY1 - PY0);
}

/* A step of 1, 2, 2.5 or 5 times a power of ten, at least raw. */
static double nice_step(double raw)
{
    double mag = pow(10, floor(log10(raw)));
    const double m[] = {1, 2, 2.5, 5, 10};
    for (int i = 0; i < 5; i++)
        if (m[i] * mag >= raw * (1 - 1e-9))
            return m[i] * mag;
    return 10 * mag;
}

/* Whether the segment (x0,y0)-(x1,y1) meets the box [bx0,bx1] x [by0,by1]:
 * Liang-Barsky clipping of the segment to the box. */
static int segment_meets_box(double x0, double y0, double x1, double y1, double bx0, double by0,
                             double bx1, double by1)
{
    double t0 = 0, t1 = 1, dx = x1 - x0, dy = y1 - y0;
    const double pq[4][2] = {{-dx, x0 - bx0}, {dx, bx1 - x0}, {-dy, y0 - by0}, {dy, by1 - y0}};
    for (int i = 0; i < 4; i++) {
        double pi = pq[i][0], qi = pq[i][1];
        if (pi == 0) {
            if (qi < 0)
                return 0;
        } else if (pi < 0) {
            t0 = fmax(t0, qi / pi);
        } else {
            t1 = fmin(t1, qi / pi);
        }
        if (t0 > t1)
            return 0;
    }
    return 1;
}

/* Whether a legend box at (x, y) keeps clear of the curves: no line between
 * two drawn points, nor a lone point (drawn as a dot), comes within m units
 * of it. */
static int legend_clear(const Plot *p, double x, double y, double m)
{
    double bx0 = x - m, by0 = y - m, bx1 = x + LW + m, by1 = y + LH + m;
    for (int c = 0; c < 3; c++) {
        int have = 0;
        double x0 = 0, y0 = 0;
        for (int i = 0; i < p->n; i++) {
            double v = p->v[c][i];
            if (!isfinite(v))
                continue;
            double x1 = px(p, i + 1), y1 = py(p, v);
            if (segment_meets_box(have ? x0 : x1, have ? y0 : y1, x1, y1, bx0, by0, bx1, by1))
                return 0;
            x0 = x1, y0 = y1, have = 1;
        }
    }
    return 1;
}

/* Puts the legend where no curve runs: the first clear one of the axes'
 * corners (top right, top left, bottom right, bottom left), else the first
 * clear place along the rows of the axes from the top; first with a wide
 * berth around the curves, then with a narrow one (more than half a
 * stroke, a dot's radius and rounding); else beside the axes on the right,
 * widening the picture. */
static void place_legend(Plot *p)
{
    const int x0 = PX0 + LPAD, x1 = PX1 - LPAD - LW, y0 = PY0 + LPAD, y1 = PY1 - LPAD - LH;
    const int corners[4][2] = {{x1, y0}, {x0, y0}, {x1, y1}, {x0, y1}};
    const double berth[2] = {16, 4};
    p->width = W;
    for (int b = 0; b < 2; b++) {
        for (int k = 0; k < 4; k++)
            if (legend_clear(p, corners[k][0], corners[k][1], berth[b])) {
                p->lx = corners[k][0], p->ly = corners[k][1];
                return;
            }
        for (int y = y0; y <= y1; y += 4)
            for (int x = x1; x >= x0; x -= 4)
                if (legend_clear(p, x, y, berth[b])) {
                    p->lx = x, p->ly = y;
                    return;
                }
    }
    p->lx = PX1 + 12;   /* clear of the last x tick label */
    p->ly = PY0;
    p->width = p->lx + LW + 2 * LPAD;
}

static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default:
            if ((unsigned char)*s >= 0x20 || *s == '\t')
                fputc(*s, f);
        }
    }
}

static int emit_svg(FILE *f, void *ctx, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    const Plot *p = ctx;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" font-family=\"DejaVu Sans, sans-serif\" font-size=\"11\">\n",
            p->width, H, p->width, H);
    fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", p->width, H);
    if (p->title && p->title[0]) {
        fprintf(f, "<text x=\"%d\" y=\"22\" text-anchor=\"middle\" font-size=\"13\">", (PX0 + PX1) / 2);
        xml_text(f, p->title);
        fputs("</text>\n", f);
    }
    /* Gridlines and tick labels. */
    fputs("<g stroke=\"#d0d0d0\" stroke-width=\"0.8\">\n", f);
    for (int k = 0; k * p->ystep <= p->ymax * (1 + 1e-9); k++)
        fprintf(f, "<line x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\"/>\n", PX0, py(p, k * p->ystep),
                PX1, py(p, k * p->ystep));
    for (int x = (int)ceil(p->xmin / p->xstep) * p->xstep; x <= p->xmax; x += p->xstep)
        if (x >= p->xmin)
            fprintf(f, "<line x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\" y2=\"%d\"/>\n", px(p, x), PY0,
                    px(p, x), PY1);
    fputs("</g>\n<g fill=\"black\">\n", f);
    for (int k = 0; k * p->ystep <= p->ymax * (1 + 1e-9); k++)
        fprintf(f, "<text x=\"%d\" y=\"%.2f\" text-anchor=\"end\">%.4g</text>\n", PX0 - 6,
                py(p, k * p->ystep) + 4, k * p->ystep);
    for (int x = (int)ceil(p->xmin / p->xstep) * p->xstep; x <= p->xmax; x += p->xstep)
        if (x >= p->xmin)
            fprintf(f, "<text x=\"%.2f\" y=\"%d\" text-anchor=\"middle\">%d</text>\n", px(p, x),
                    PY1 + 16, x);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">epoch</text>\n</g>\n",
            (PX0 + PX1) / 2, PY1 + 38);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"black\"/>\n",
            PX0, PY0, PX1 - PX0, PY1 - PY0);
    /* Curves. */
    for (int c = 0; c < 3; c++) {
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\"", curves[c].color);
        if (curves[c].dash)
            fprintf(f, " stroke-dasharray=\"%s\"", curves[c].dash);
        fputs(" points=\"", f);
        int first = 1;
        for (int i = 0; i < p->n; i++) {
            double v = p->v[c][i];
            if (!isfinite(v))
                continue;
            fprintf(f, "%s%.2f,%.2f", first ? "" : " ", px(p, i + 1), py(p, v));
            first = 0;
        }
        fputs("\"/>\n", f);
        if (p->n == 1 && isfinite(p->v[c][0]))
            fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"2.5\" fill=\"%s\"/>\n", px(p, 1),
                    py(p, p->v[c][0]), curves[c].color);
    }
    /* Legend, where place_legend found room. */
    int lx = p->lx, ly = p->ly;
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"white\" "
               "fill-opacity=\"0.85\" stroke=\"#c0c0c0\"/>\n", lx, ly, LW, LH);
    for (int c = 0; c < 3; c++) {
        int y = ly + 14 + 16 * c;
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"1.5\"",
                lx + 6, y, lx + 30, y, curves[c].color);
        if (curves[c].dash)
            fprintf(f, " stroke-dasharray=\"%s\"", curves[c].dash);
        fprintf(f, "/>\n<text x=\"%d\" y=\"%d\">%s</text>\n", lx + 36, y + 4, curves[c].label);
    }
    fputs("</svg>\n", f);
    return 0;
}

int rt_plot_svg(const char *path, const double *loss, const double *train_acc,
                const double *test_acc, int n_epochs, int epochs_total, const char *title,
                char *err, size_t errlen)
{
    if (n_epochs < 0 || (n_epochs > 0 && (!loss || !train_acc || !test_acc))) {
        rt_seterr(err, errlen, "%s: bad plot data (%d epochs)", path, n_epochs);
        return -1;
    }
    Plot p = {{loss, train_acc, test_acc}, n_epochs, epochs_total, title, 1, 2, 1, 0.2, 1, W, 0, 0};
    p.xmax = epochs_total > n_epochs ? epochs_total : n_epochs;
    if (p.xmax <= p.xmin)
        p.xmax = p.xmin + 1;
    for (int i = 0; i < n_epochs; i++)
        if (isfinite(loss[i]) && loss[i] > p.ymax)
            p.ymax = loss[i];
    p.ystep = nice_step(p.ymax / 5);
    p.ymax = ceil(p.ymax / p.ystep - 1e-9) * p.ystep;
    p.xstep = (int)nice_step((p.xmax - p.xmin) / 10);
    if (p.xstep < 1)
        p.xstep = 1;
    place_legend(&p);
    return rt_write_atomic(path, emit_svg, &p, err, errlen);
}
