/* frontend.c - fe_build and fe_build_file: input checks, parse, elaborate. */
#include "ast.h"
#include "base/infile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static int utf8_len(const unsigned char *s, size_t n) {
    int len = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3 : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
    if (len == 0 || (size_t)len > n || (len == 2 && s[0] < 0xc2))
        return 0;
    for (int i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return len;
}

/* Rejects text that is not a source file: NUL and control bytes, invalid UTF-8, lines
 * over FE_MAX_LINE, or nothing but blanks.  One linear scan.  These errors
 * print no source line (it would be garbage or huge). */
static int check_text(const char *src, size_t len, Diag *d) {
    const unsigned char *s = (const unsigned char *)src;
    int line = 1, blank = 1;
    size_t bol = 0;
    const char *saved = d->src;
    int rc = 0;
    d->src = NULL;
    for (size_t i = 0; i < len;) {
        IrLoc loc = { line, (int)(i - bol) + 1 };
        int ctl = (s[i] < 0x20 && s[i] != '\t' && s[i] != '\n' && s[i] != '\r' && s[i] != '\f') || s[i] == 0x7f;
        int l = ctl ? 0 : utf8_len(s + i, len - i);
        if (l == 0) {
            rc = diag_error(d, loc, "a .net file is UTF-8 text", "binary file (%s byte 0x%02x)",
                            !s[i] ? "NUL" : ctl ? "control" : "invalid UTF-8", s[i]);
            break;
        }
        if (s[i] == '\n') {
            line++;
            bol = i + 1;
        } else if (i - bol >= FE_MAX_LINE) {
            rc = diag_error(d, (IrLoc){ line, 1 }, NULL, "line is too long (over %d bytes)", FE_MAX_LINE);
            break;
        } else if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') {
            blank = 0;
        }
        i += (size_t)l;
    }
    if (rc == 0 && blank)
        rc = diag_error(d, (IrLoc){ 1, 1 }, "write the network as `net { ... }`", "empty file");
    d->src = saved;
    return rc;
}

int fe_build(const char *src, size_t len, const FeOptions *o, IrGraph *g, Diag *d) {
    static const FeOptions defaults = { IR_TRAIN, NULL, 0, 0, 0 };
    if (!o)
        o = &defaults;
    g->src = src;
    if (!g->file)
        g->file = d->file;
    if (len > FE_MAX_FILE)
        return diag_error(d, (IrLoc){1, 1}, "a .net file is a short text; is this the right file?", "file is too large (%zu bytes, limit %d)", len, FE_MAX_FILE);
    if (check_text(src, len, d))
        return -1;
    FeArena ar;
    fe_arena_init(&ar);
    Ast *prog;
    int rc = fe_parse(src, len, &ar, d, &prog);
    if (rc == 0)
        rc = fe_elab(prog, o, g, d);
    fe_arena_free(&ar);
    return rc;
}

int fe_build_file(const char *path, const FeOptions *o, IrGraph *g, char **src_out, Diag *d) {
    *src_out = NULL;
    if (!d->file || !strcmp(d->file, "<input>"))
        d->file = path;
    /* without blocking on a FIFO nobody writes to; pipes are read to the end */
    struct stat st;
    char err[4200];
    FILE *f = rt_fopen_input(path, RT_INPUT_PIPE, &st, err, sizeof err);
    if (!f)
        return diag_error_noloc(d, "%s", err);
    if (S_ISREG(st.st_mode) && st.st_size > FE_MAX_FILE) {
        fclose(f);
        return diag_error(d, (IrLoc){1, 1}, "a .net file is a short text; is this the right file?", "file is too large (%lld bytes, limit %d)",
                                (long long)st.st_size, FE_MAX_FILE);
    }
    /* read at most FE_MAX_FILE + 1 bytes: pipes and growing files too */
    size_t cap = 4096, len = 0;
    char *buf = ir_xmalloc(cap + 1);
    for (;;) {
        if (len == cap) {
            if (cap > FE_MAX_FILE)
                break;
            cap *= 2;
            buf = ir_xrealloc(buf, cap + 1);
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        if (n == 0)
            break;
        len += n;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return diag_error_noloc(d, "cannot read `%s`", path);
    }
    if (len > FE_MAX_FILE) {
        free(buf);
        return diag_error(d, (IrLoc){1, 1}, "a .net file is a short text; is this the right file?", "file is too large (over %d bytes)", FE_MAX_FILE);
    }
    if (len == 0 && S_ISFIFO(st.st_mode)) {
        free(buf);
        return diag_error_noloc(d, "`%s` is a pipe with nothing written to it", path);
    }
    buf[len] = 0;
    *src_out = buf;
    d->src = buf;
    d->src_len = len;
    g->file = path;
    return fe_build(buf, len, o, g, d);
}
