/* A one-line progress bar, redrawn in place on a terminal. */
#include "runtime/progress.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

#define BAR_WIDTH 30

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* mm:ss, or h:mm:ss past an hour. */
static void fmt_time(char *buf, size_t n, double s)
{
    if (!(s >= 0) || s > 360000)
        s = 0;
    int t = (int)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%d:%02d:%02d", t / 3600 % 100, t / 60 % 60, t % 60);
    else
        snprintf(buf, n, "%02d:%02d", t / 60 % 60, t % 60);
}

static void draw(RtProgress *p, double now)
{
    double frac = p->total > 0 ? (double)p->done / (double)p->total : 1.0;
    if (frac < 0)
        frac = 0;
    if (frac > 1)
        frac = 1;
    char bar[BAR_WIDTH + 1];
    int full = (int)(frac * BAR_WIDTH);
    for (int i = 0; i < BAR_WIDTH; i++)
        bar[i] = i < full ? '=' : i == full ? '>' : ' ';
    bar[BAR_WIDTH] = 0;
    double elapsed = now - p->t0;
    double eta = p->done > 0 ? elapsed / (double)p->done * (double)(p->total - p->done) : 0;
    char el[32], et[32];
    fmt_time(el, sizeof el, elapsed);
    fmt_time(et, sizeof et, eta);
    fprintf(p->f, "\r\033[K%s [%s] %3d%% %lld/%lld %s<%s%s%s", p->label, bar, (int)(frac * 100),
            (long long)p->done, (long long)p->total, el, et, p->suffix[0] ? " " : "", p->suffix);
    fflush(p->f);
    p->drawn = 1;
    p->last = now;
}

void rt_progress_begin(RtProgress *p, FILE *f, const char *label, int64_t total)
{
    memset(p, 0, sizeof *p);
    p->f = f;
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->total = total;
    p->tty = f && isatty(fileno(f));
    p->t0 = now_s();
    p->last = p->t0 - 1;
}

void rt_progress_update(RtProgress *p, int64_t done, const char *suffix)
{
    p->done = done;
    if (suffix)
        snprintf(p->suffix, sizeof p->suffix, "%s", suffix);
    if (!p->tty)
        return;
    double now = now_s();
    if (now - p->last < 0.1 && done < p->total)
        return;
    draw(p, now);
}

void rt_progress_end(RtProgress *p)
{
    if (!p->tty)
        return;
    draw(p, now_s());
    fputc('\n', p->f);
    fflush(p->f);
    p->drawn = 0;
}
