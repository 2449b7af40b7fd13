/* diag.c - located user errors, chibicc style: file:line:col, the line, a caret. */
#include "diag.h"

#include <stdarg.h>
#include <string.h>

void diag_init(Diag *d, const char *file, const char *src, size_t len, FILE *out) {
    d->file = file ? file : "<input>";
    d->src = src;
    d->src_len = src ? len : 0;
    d->out = out ? out : stderr;
    d->nerrors = 0;
    d->max_errors = 20;
}

/* Prints source line `line` (1-based) and a caret under column col.  Long
 * lines are cut to a window around the caret; control bytes print as '?'. */
static void show_line(Diag *d, int line, int col) {
    if (!d->src || line <= 0) return;
    const char *p = d->src, *end = d->src + d->src_len;
    for (int l = 1; l < line && p < end; l++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) return;
        p = nl + 1;
    }
    const char *e = memchr(p, '\n', (size_t)(end - p));
    if (!e) e = end;
    long len = e - p, c = col > 0 ? col - 1 : 0, from = 0;
    enum { WIDTH = 100 };
    if (c > len) c = len;
    if (len > WIDTH) {
        from = c > WIDTH / 2 ? c - WIDTH / 2 : 0;
        if (from + WIDTH > len) from = len - WIDTH;
    }
    long to = len < from + WIDTH ? len : from + WIDTH;
    fprintf(d->out, "%5d | %s", line, from ? "..." : "");
    for (long i = from; i < to; i++) {
        unsigned char ch = (unsigned char)p[i];
        fputc(ch == '\t' ? ' ' : (ch < 32 || ch == 127) ? '?' : ch, d->out);
    }
    fprintf(d->out, "%s\n      | %s", to < len ? "..." : "", from ? "   " : "");
    for (long i = from; i < c; i++) fputc(' ', d->out);
    fputs("^\n", d->out);
}

int diag_error(Diag *d, IrLoc loc, const char *hint, const char *fmt, ...) {
    d->nerrors++;
    if (d->nerrors > d->max_errors) return -1;
    va_list ap;
    va_start(ap, fmt);
    if (loc.line > 0)
        fprintf(d->out, "%s:%d:%d: error: ", d->file, loc.line, loc.col);
    else
        fprintf(d->out, "%s: error: ", d->file);
    vfprintf(d->out, fmt, ap);
    va_end(ap);
    fputc('\n', d->out);
    show_line(d, loc.line, loc.col);
    if (hint) fprintf(d->out, "hint: %s\n", hint);
    fflush(d->out);
    return -1;
}

int diag_error_noloc(Diag *d, const char *fmt, ...) {
    d->nerrors++;
    va_list ap;
    va_start(ap, fmt);
    fprintf(d->out, "%s: error: ", d->file);
    vfprintf(d->out, fmt, ap);
    va_end(ap);
    fputc('\n', d->out);
    fflush(d->out);
    return -1;
}
