/* safetensors reading and writing; atomic file replacement. */
#include "base/err.h"
#include "base/infile.h"
#include "runtime/safetensors.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER (100u << 20) /* as Python's safetensors */


/* ---- dtypes ---- */

/* order: Python's sort key (its Dtype enum order); bigger first in the file. */
static const struct {
    const char *name;
    int size, order;
} dtypes[] = {
    {"U8", 1, 0}, {"I32", 4, 1}, {"F32", 4, 2}, {"F64", 8, 3}, {"I64", 8, 4},
};

static int dtype_find(const char *name)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof *dtypes; i++)
        if (name && strcmp(dtypes[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* Bytes of a tensor of this shape, or -1 on overflow past 2^62. */
static int64_t shape_bytes(const int64_t *shape, int rank, int size)
{
    int64_t n = size;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 0)
            return -1;
        if (shape[i] != 0 && n > (INT64_C(1) << 62) / shape[i])
            return -1;
        n *= shape[i];
    }
    return n;
}

/* ---- writing ---- */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} Buf;

static void buf_put(Buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void buf_printf(Buf *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    buf_put(b, tmp, (size_t)n);
}

/* A JSON string as serde_json writes it. */
static void buf_json_string(Buf *b, const char *s)
{
    buf_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        const char *esc = NULL;
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default: break;
        }
        if (esc)
            buf_put(b, esc, 2);
        else if (c < 0x20)
            buf_printf(b, "\\u%04x", c);
        else
            buf_put(b, (const char *)&c, 1);
    }
    buf_put(b, "\"", 1);
}

typedef struct {
    const RtTensorOut *t;
    int n;
    const int *order; /* (n) tensors in file order */
    const char *header;
    size_t header_len; /* padded */
} StWrite;

static int st_emit(FILE *f, void *ctx, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    StWrite *w = ctx;
    uint8_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)((uint64_t)w->header_len >> (8 * i));
    fwrite(len, 1, 8, f);
    fwrite(w->header, 1, w->header_len, f);
    for (int k = 0; k < w->n; k++) {
        const RtTensorOut *t = &w->t[w->order[k]];
        if (t->bytes > 0)
            fwrite(t->data, 1, (size_t)t->bytes, f);
    }
    return 0;
}

/* A sort key: tensor idx with its dtype order and name, or its offsets. */
typedef struct {
    int idx;
    int order;
    const char *name;
    int64_t begin, end;
} Key;

/* File order of written tensors: bigger dtypes first, then by name. */
static int cmp_write(const void *a, const void *b)
{
    const Key *x = a, *y = b;
    if (x->order != y->order)
        return y->order - x->order;
    return strcmp(x->name, y->name);
}

static int host_is_little_endian(void)
{
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

int rt_st_write(const char *path, const RtTensorOut *t, int n, const char **meta_kv, char *err,
                size_t errlen)
{
    if (!host_is_little_endian()) {
        rt_seterr(err, errlen, "%s: writing safetensors needs a little-endian host", path);
        return -1;
    }
    if (n < 0 || (n > 0 && !t)) {
        rt_seterr(err, errlen, "%s: bad tensor list", path);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        int d = dtype_find(t[i].dtype);
        if (!t[i].name || !t[i].name[0] || strcmp(t[i].name, "__metadata__") == 0) {
            rt_seterr(err, errlen, "%s: tensor %d has a bad name", path, i);
            return -1;
        }
        if (d < 0) {
            rt_seterr(err, errlen, "%s: tensor \"%s\": unknown dtype \"%s\"", path, t[i].name,
                   t[i].dtype ? t[i].dtype : "(null)");
            return -1;
        }
        if (t[i].rank < 0 || t[i].rank > RT_ST_MAX_RANK) {
            rt_seterr(err, errlen, "%s: tensor \"%s\": bad rank %d", path, t[i].name, t[i].rank);
            return -1;
        }
        int64_t want = shape_bytes(t[i].shape, t[i].rank, dtypes[d].size);
        if (want < 0 || want != t[i].bytes || (want > 0 && !t[i].data)) {
            rt_seterr(err, errlen, "%s: tensor \"%s\": %lld bytes given, its shape needs %lld", path,
                   t[i].name, (long long)t[i].bytes, (long long)want);
            return -1;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(t[i].name, t[j].name) == 0) {
                rt_seterr(err, errlen, "%s: tensor \"%s\" given twice", path, t[i].name);
                return -1;
            }
    }
    Key *keys = malloc(sizeof *keys * (size_t)(n > 0 ? n : 1));
    int *order = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    if (!keys || !order) {
        rt_seterr(err, errlen, "%s: out of memory", path);
        free(keys);
        free(order);
        return -1;
    }
    for (int i = 0; i < n; i++)
        keys[i] = (Key){i, dtypes[dtype_find(t[i].dtype)].order, t[i].name, 0, 0};
    qsort(keys, (size_t)n, sizeof *keys, cmp_write);
    for (int i = 0; i < n; i++)
        order[i] = keys[i].idx;
    free(keys);

    Buf b = {0};
    buf_put(&b, "{", 1);
    int first = 1;
    if (meta_kv && meta_kv[0]) {
        buf_put(&b, "\"__metadata__\":{", 16);
        for (int i = 0; meta_kv[i]; i += 2) {
            if (i > 0)
                buf_put(&b, ",", 1);
            buf_json_string(&b, meta_kv[i]);
            buf_put(&b, ":", 1);
            buf_json_string(&b, meta_kv[i + 1] ? meta_kv[i + 1] : "");
            if (!meta_kv[i + 1])
                break;
        }
        buf_put(&b, "}", 1);
        first = 0;
    }
    int64_t off = 0;
    for (int k = 0; k < n; k++) {
        const RtTensorOut *x = &t[order[k]];
        if (!first)
            buf_put(&b, ",", 1);
        first = 0;
        buf_json_string(&b, x->name);
        buf_printf(&b, ":{\"dtype\":\"%s\",\"shape\":[", x->dtype);
        for (int r = 0; r < x->rank; r++)
            buf_printf(&b, r ? ",%lld" : "%lld", (long long)x->shape[r]);
        buf_printf(&b, "],\"data_offsets\":[%lld,", (long long)off);
        off += x->bytes;
        buf_printf(&b, "%lld]}", (long long)off);
    }
    buf_put(&b, "}", 1);
    while (!b.oom && b.len % 8 != 0)
        buf_put(&b, " ", 1);
    if (b.oom) {
        rt_seterr(err, errlen, "%s: out of memory", path);
        free(b.p);
        free(order);
        return -1;
    }
    StWrite w = {t, n, order, b.p, b.len};
    int rc = rt_write_atomic(path, st_emit, &w, err, errlen);
    free(b.p);
    free(order);
    return rc;
}

/* ---- reading ---- */

typedef struct {
    char *name;
    int dtype; /* index into dtypes */
    int rank;
    int64_t shape[RT_ST_MAX_RANK];
    int64_t begin, end;
} Entry;

struct RtSt {
    char *path; /* for messages */
    int seen_meta;
    Entry *e;
    int n, cap;
    char **meta; /* k, v, k, v, ... */
    int nmeta, capmeta;
    uint8_t *data;
    int64_t data_bytes;
};

/* The JSON parser: a cursor over the header, and where errors go. */
typedef struct {
    const char *s;
    size_t pos, len;
    const char *path;
    char *err;
    size_t errlen;
} Json;

static int jfail(Json *j, const char *what)
{
    rt_seterr(j->err, j->errlen, "%s: bad header JSON at byte %zu: %s", j->path, j->pos, what);
    return -1;
}

static void jws(Json *j)
{
    while (j->pos < j->len && (j->s[j->pos] == ' ' || j->s[j->pos] == '\t' ||
                               j->s[j->pos] == '\n' || j->s[j->pos] == '\r'))
        j->pos++;
}

static int jpeek(Json *j)
{
    jws(j);
    return j->pos < j->len ? (unsigned char)j->s[j->pos] : -1;
}

static int jexpect(Json *j, char c)
{
    if (jpeek(j) != c) {
        char msg[32];
        snprintf(msg, sizeof msg, "expected '%c'", c);
        return jfail(j, msg);
    }
    j->pos++;
    return 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int jhex4(Json *j, unsigned *v)
{
    if (j->len - j->pos < 4)
        return jfail(j, "short \\u escape");
    *v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval((unsigned char)j->s[j->pos + i]);
        if (h < 0)
            return jfail(j, "bad \\u escape");
        *v = *v << 4 | (unsigned)h;
    }
    j->pos += 4;
    return 0;
}

static void put_utf8(Buf *b, unsigned cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | cp >> 6);
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | cp >> 12);
        u[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | cp >> 18);
        u[1] = (char)(0x80 | (cp >> 12 & 0x3F));
        u[2] = (char)(0x80 | (cp >> 6 & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    buf_put(b, u, n);
}

/* string: '"' chars '"', with JSON escapes; *out is a new NUL-terminated copy. */
static int jstring(Json *j, char **out)
{
    *out = NULL;
    if (jexpect(j, '"') != 0)
        return -1;
    Buf b = {0};
    buf_put(&b, "", 0);
    for (;;) {
        if (j->pos >= j->len) {
            free(b.p);
            return jfail(j, "unterminated string");
        }
        unsigned char c = (unsigned char)j->s[j->pos++];
        if (c == '"')
            break;
        if (c < 0x20) {
            j->pos--;
            free(b.p);
            return jfail(j, "control character in string");
        }
        if (c != '\\') {
            buf_put(&b, (const char *)&c, 1);
            continue;
        }
        if (j->pos >= j->len) {
            free(b.p);
            return jfail(j, "unterminated string");
        }
        char e = j->s[j->pos++], r = 0;
        switch (e) {
        case '"': r = '"'; break;
        case '\\': r = '\\'; break;
        case '/': r = '/'; break;
        case 'b': r = '\b'; break;
        case 'f': r = '\f'; break;
        case 'n': r = '\n'; break;
        case 'r': r = '\r'; break;
        case 't': r = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (jhex4(j, &cp) != 0) {
                free(b.p);
                return -1;
            }
            if (cp >= 0xD800 && cp < 0xDC00) {
                if (j->len - j->pos < 2 || j->s[j->pos] != '\\' || j->s[j->pos + 1] != 'u') {
                    free(b.p);
                    return jfail(j, "unpaired surrogate in \\u escape");
                }
                j->pos += 2;
                if (jhex4(j, &lo) != 0) {
                    free(b.p);
                    return -1;
                }
                if (lo < 0xDC00 || lo >= 0xE000) {
                    free(b.p);
                    return jfail(j, "unpaired surrogate in \\u escape");
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp < 0xE000) {
                free(b.p);
                return jfail(j, "unpaired surrogate in \\u escape");
            } else if (cp == 0) {
                free(b.p);
                return jfail(j, "\\u0000 in string");
            }
            put_utf8(&b, cp);
            continue;
        }
        default:
            j->pos--;
            free(b.p);
            return jfail(j, "bad escape in string");
        }
        buf_put(&b, &r, 1);
    }
    if (b.oom) {
        free(b.p);
        return jfail(j, "out of memory");
    }
    *out = b.p;
    return 0;
}

/* integer: digits, no sign, no leading zero, below 2^62. */
static int jint(Json *j, int64_t *v)
{
    jws(j);
    size_t start = j->pos;
    *v = 0;
    while (j->pos < j->len && j->s[j->pos] >= '0' && j->s[j->pos] <= '9') {
        if (*v > ((INT64_C(1) << 62) - 9) / 10)
            return jfail(j, "integer too large");
        *v = *v * 10 + (j->s[j->pos++] - '0');
    }
    if (j->pos == start)
        return jfail(j, "expected a non-negative integer");
    if (j->s[start] == '0' && j->pos - start > 1) {
        j->pos = start;
        return jfail(j, "leading zero in integer");
    }
    if (j->pos < j->len && (j->s[j->pos] == '.' || j->s[j->pos] == 'e' || j->s[j->pos] == 'E'))
        return jfail(j, "expected an integer");
    return 0;
}

/* int array: '[' (int (',' int)*)? ']'; at most max values. */
static int jints(Json *j, int64_t *v, int max, int *n)
{
    *n = 0;
    if (jexpect(j, '[') != 0)
        return -1;
    if (jpeek(j) == ']') {
        j->pos++;
        return 0;
    }
    for (;;) {
        if (*n == max)
            return jfail(j, "too many values in array");
        if (jint(j, &v[(*n)++]) != 0)
            return -1;
        int c = jpeek(j);
        j->pos++;
        if (c == ']')
            return 0;
        if (c != ',') {
            j->pos--;
            return jfail(j, "expected ',' or ']'");
        }
    }
}

/* Calls one(j, key, ctx) for each member of an object; one parses the value. */
typedef int (*MemberFn)(Json *j, const char *key, void *ctx);

static int jobject(Json *j, MemberFn one, void *ctx)
{
    if (jexpect(j, '{') != 0)
        return -1;
    if (jpeek(j) == '}') {
        j->pos++;
        return 0;
    }
    for (;;) {
        char *key;
        if (jstring(j, &key) != 0)
            return -1;
        int rc = jexpect(j, ':') == 0 ? one(j, key, ctx) : -1;
        free(key);
        if (rc != 0)
            return -1;
        int c = jpeek(j);
        j->pos++;
        if (c == '}')
            return 0;
        if (c != ',') {
            j->pos--;
            return jfail(j, "expected ',' or '}'");
        }
    }
}

static int meta_member(Json *j, const char *key, void *ctx)
{
    RtSt *s = ctx;
    for (int i = 0; i < s->nmeta; i++)
        if (strcmp(s->meta[2 * i], key) == 0)
            return jfail(j, "metadata key given twice");
    if (s->nmeta == s->capmeta) {
        int cap = s->capmeta ? 2 * s->capmeta : 8;
        char **m = realloc(s->meta, sizeof(char *) * 2 * (size_t)cap);
        if (!m)
            return jfail(j, "out of memory");
        s->meta = m;
        s->capmeta = cap;
    }
    char *v;
    if (jpeek(j) != '"')
        return jfail(j, "metadata values must be strings");
    if (jstring(j, &v) != 0)
        return -1;
    s->meta[2 * s->nmeta] = strdup(key);
    s->meta[2 * s->nmeta + 1] = v;
    s->nmeta++;
    if (!s->meta[2 * s->nmeta - 2])
        return jfail(j, "out of memory");
    return 0;
}

/* The fields of one tensor, and which were seen. */
typedef struct {
    Entry *e;
    int seen_dtype, seen_shape, seen_offsets;
} TensorCtx;

static int tensor_member(Json *j, const char *key, void *ctx)
{
    TensorCtx *t = ctx;
    if (strcmp(key, "dtype") == 0) {
        if (t->seen_dtype++)
            return jfail(j, "\"dtype\" given twice");
        char *d;
        if (jstring(j, &d) != 0)
            return -1;
        t->e->dtype = dtype_find(d);
        if (t->e->dtype < 0) {
            char msg[96];
            snprintf(msg, sizeof msg, "tensor \"%.30s\": unknown dtype \"%.20s\"", t->e->name, d);
            free(d);
            return jfail(j, msg);
        }
        free(d);
        return 0;
    }
    if (strcmp(key, "shape") == 0) {
        if (t->seen_shape++)
            return jfail(j, "\"shape\" given twice");
        return jints(j, t->e->shape, RT_ST_MAX_RANK, &t->e->rank);
    }
    if (strcmp(key, "data_offsets") == 0) {
        if (t->seen_offsets++)
            return jfail(j, "\"data_offsets\" given twice");
        int64_t v[2];
        int n;
        if (jints(j, v, 2, &n) != 0)
            return -1;
        if (n != 2)
            return jfail(j, "\"data_offsets\" needs two values");
        t->e->begin = v[0];
        t->e->end = v[1];
        return 0;
    }
    char msg[96];
    snprintf(msg, sizeof msg, "unknown field \"%.40s\"", key);
    return jfail(j, msg);
}

static int top_member(Json *j, const char *key, void *ctx)
{
    RtSt *s = ctx;
    if (strcmp(key, "__metadata__") == 0) {
        if (s->seen_meta++)
            return jfail(j, "\"__metadata__\" given twice");
        return jobject(j, meta_member, s);
    }
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 16;
        Entry *e = realloc(s->e, sizeof *e * (size_t)cap);
        if (!e)
            return jfail(j, "out of memory");
        s->e = e;
        s->cap = cap;
    }
    Entry *e = &s->e[s->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(key);
    if (!e->name)
        return jfail(j, "out of memory");
    s->n++;
    TensorCtx t = {e, 0, 0, 0};
    if (jobject(j, tensor_member, &t) != 0)
        return -1;
    const char *missing = !t.seen_dtype ? "dtype" : !t.seen_shape ? "shape"
                          : !t.seen_offsets ? "data_offsets" : NULL;
    if (missing) {
        char msg[128];
        snprintf(msg, sizeof msg, "tensor \"%.60s\" lacks \"%s\"", key, missing);
        return jfail(j, msg);
    }
    return 0;
}

static int cmp_offsets(const void *a, const void *b)
{
    const Key *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return x->idx - y->idx;
}

static int cmp_names(const void *a, const void *b)
{
    const Key *x = a, *y = b;
    return strcmp(x->name, y->name);
}

/* Sizes agree with shapes; offsets tile the data exactly, in some order. */
static int check_layout(RtSt *s, const char *path, char *err, size_t errlen)
{
    for (int i = 0; i < s->n; i++) {
        const Entry *e = &s->e[i];
        int64_t want = shape_bytes(e->shape, e->rank, dtypes[e->dtype].size);
        if (e->end < e->begin) {
            rt_seterr(err, errlen, "%s: tensor \"%s\": data_offsets [%lld, %lld] end before they begin",
                   path, e->name, (long long)e->begin, (long long)e->end);
            return -1;
        }
        if (e->end > s->data_bytes) {
            rt_seterr(err, errlen,
                   "%s: tensor \"%s\": data_offsets [%lld, %lld] beyond the %lld bytes of data",
                   path, e->name, (long long)e->begin, (long long)e->end,
                   (long long)s->data_bytes);
            return -1;
        }
        if (want != e->end - e->begin) {
            rt_seterr(err, errlen, "%s: tensor \"%s\": its shape and dtype %s need %lld bytes, "
                   "data_offsets [%lld, %lld] give %lld", path, e->name, dtypes[e->dtype].name,
                   (long long)want, (long long)e->begin, (long long)e->end,
                   (long long)(e->end - e->begin));
            return -1;
        }
    }
    Key *keys = malloc(sizeof *keys * (size_t)(s->n > 0 ? s->n : 1));
    if (!keys) {
        rt_seterr(err, errlen, "%s: out of memory", path);
        return -1;
    }
    for (int i = 0; i < s->n; i++)
        keys[i] = (Key){i, 0, s->e[i].name, s->e[i].begin, s->e[i].end};
    qsort(keys, (size_t)s->n, sizeof *keys, cmp_names);
    for (int k = 1; k < s->n; k++)
        if (strcmp(keys[k - 1].name, keys[k].name) == 0) {
            rt_seterr(err, errlen, "%s: tensor \"%s\" given twice", path, keys[k].name);
            free(keys);
            return -1;
        }
    qsort(keys, (size_t)s->n, sizeof *keys, cmp_offsets);
    int64_t at = 0;
    for (int k = 0; k < s->n; k++) {
        const Entry *e = &s->e[keys[k].idx];
        if (e->begin != at) {
            rt_seterr(err, errlen, "%s: tensor \"%s\": data_offsets [%lld, %lld] %s "
                   "(expected it to begin at %lld)", path, e->name, (long long)e->begin,
                   (long long)e->end, e->begin < at ? "overlap another tensor" : "leave a gap",
                   (long long)at);
            free(keys);
            return -1;
        }
        at = e->end;
    }
    free(keys);
    if (at != s->data_bytes) {
        rt_seterr(err, errlen, "%s: %lld bytes after the last tensor's data", path,
               (long long)(s->data_bytes - at));
        return -1;
    }
    return 0;
}

/* The header length from the first 8 bytes of a file of size bytes. */
static int header_len(const uint8_t *len8, int64_t size, const char *path, uint64_t *hlen, char *err,
                      size_t errlen)
{
    *hlen = 0;
    for (int i = 7; i >= 0; i--)
        *hlen = *hlen << 8 | len8[i];
    if (*hlen > (uint64_t)(size - 8)) {
        rt_seterr(err, errlen, "%s: header length %llu is beyond the end of the file (%lld bytes)",
               path, (unsigned long long)*hlen, (long long)size);
        return -1;
    }
    if (*hlen > ST_MAX_HEADER) {
        rt_seterr(err, errlen, "%s: header length %llu is too large", path, (unsigned long long)*hlen);
        return -1;
    }
    return 0;
}

/* A new RtSt named path, with room for data_bytes of data. */
static RtSt *st_new(const char *path, int64_t data_bytes, char *err, size_t errlen)
{
    RtSt *s = calloc(1, sizeof *s);
    if (s) {
        s->path = strdup(path);
        s->data_bytes = data_bytes;
        s->data = malloc((size_t)data_bytes + 1);
    }
    if (!s || !s->path || !s->data) {
        rt_seterr(err, errlen, "%s: out of memory", path);
        rt_st_free(s);
        return NULL;
    }
    return s;
}

/* Parses the header (hlen bytes, NUL-terminated) into s, whose data is in
 * place, and checks the layout. */
static int st_parse_header(RtSt *s, const char *header, uint64_t hlen, char *err, size_t errlen)
{
    Json j = {header, 0, (size_t)hlen, s->path, err, errlen};
    if (jobject(&j, top_member, s) != 0)
        return -1;
    if (jpeek(&j) != -1)
        return jfail(&j, "trailing characters after the header object");
    return check_layout(s, s->path, err, errlen);
}

RtSt *rt_st_read(const char *path, char *err, size_t errlen)
{
    if (!host_is_little_endian()) {
        rt_seterr(err, errlen, "%s: reading safetensors needs a little-endian host", path);
        return NULL;
    }
    struct stat st;
    FILE *f = rt_fopen_input(path, 0, &st, err, errlen);
    if (!f)
        return NULL;
    RtSt *s = NULL;
    char *header = NULL;
    int64_t size = (int64_t)st.st_size;
    uint8_t len8[8];
    uint64_t hlen;
    if (size < 8 || fread(len8, 1, 8, f) != 8) {
        rt_seterr(err, errlen, "%s: file too short (%lld bytes) for a safetensors header", path,
               (long long)size);
        goto fail;
    }
    if (header_len(len8, size, path, &hlen, err, errlen) != 0)
        goto fail;
    header = malloc((size_t)hlen + 1);
    if (!header) {
        rt_seterr(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    if (!(s = st_new(path, size - 8 - (int64_t)hlen, err, errlen)))
        goto fail;
    if (fread(header, 1, (size_t)hlen, f) != hlen ||
        fread(s->data, 1, (size_t)s->data_bytes, f) != (size_t)s->data_bytes) {
        rt_seterr(err, errlen, "%s: %s", path, ferror(f) ? "read error" : "file shrank while being read");
        goto fail;
    }
    header[hlen] = 0;
    if (st_parse_header(s, header, hlen, err, errlen) != 0)
        goto fail;
    free(header);
    fclose(f);
    return s;
fail:
    free(header);
    rt_st_free(s);
    fclose(f);
    return NULL;
}

RtSt *rt_st_parse(const void *buf, size_t size, const char *name, char *err, size_t errlen)
{
    const uint8_t *p = buf;
    uint64_t hlen;
    if (size < 8) {
        rt_seterr(err, errlen, "%s: file too short (%zu bytes) for a safetensors header", name, size);
        return NULL;
    }
    if (header_len(p, (int64_t)size, name, &hlen, err, errlen) != 0)
        return NULL;
    char *header = malloc((size_t)hlen + 1);
    RtSt *s = header ? st_new(name, (int64_t)(size - 8 - hlen), err, errlen) : NULL;
    if (!header || !s) {
        rt_seterr(err, errlen, "%s: out of memory", name);
        free(header);
        rt_st_free(s);
        return NULL;
    }
    memcpy(header, p + 8, (size_t)hlen);
    header[hlen] = 0;
    memcpy(s->data, p + 8 + hlen, (size_t)s->data_bytes);
    int rc = st_parse_header(s, header, hlen, err, errlen);
    free(header);
    if (rc != 0) {
        rt_st_free(s);
        return NULL;
    }
    return s;
}

void rt_st_free(RtSt *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n; i++)
        free(s->e[i].name);
    for (int i = 0; i < 2 * s->nmeta; i++)
        free(s->meta[i]);
    free(s->e);
    free(s->meta);
    free(s->data);
    free(s->path);
    free(s);
}

int rt_st_count(const RtSt *s)
{
    return s->n;
}

int rt_st_find(const RtSt *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->e[i].name, name) == 0)
            return i;
    return -1;
}

const char *rt_st_name(const RtSt *s, int i)
{
    return s->e[i].name;
}

const char *rt_st_dtype(const RtSt *s, int i)
{
    return dtypes[s->e[i].dtype].name;
}

int rt_st_rank(const RtSt *s, int i)
{
    return s->e[i].rank;
}

const int64_t *rt_st_shape(const RtSt *s, int i)
{
    return s->e[i].shape;
}

const void *rt_st_data(const RtSt *s, int i)
{
    return s->data + s->e[i].begin;
}

int64_t rt_st_bytes(const RtSt *s, int i)
{
    return s->e[i].end - s->e[i].begin;
}

const char *rt_st_meta(const RtSt *s, const char *key)
{
    for (int i = 0; i < s->nmeta; i++)
        if (strcmp(s->meta[2 * i], key) == 0)
            return s->meta[2 * i + 1];
    return NULL;
}

int rt_st_meta_count(const RtSt *s)
{
    return s->nmeta;
}

const char *rt_st_meta_key(const RtSt *s, int i)
{
    return s->meta[2 * i];
}

const char *rt_st_meta_value(const RtSt *s, int i)
{
    return s->meta[2 * i + 1];
}

/* Writes a shape as [a, b, c] into buf. */
static void fmt_shape(char *buf, size_t n, const int64_t *shape, int rank)
{
    size_t at = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < rank && at < n; i++)
        at += (size_t)snprintf(buf + at, n - at, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (at < n)
        snprintf(buf + at, n - at, "]");
}

int rt_st_get(const RtSt *s, const char *name, const char *dtype, int rank, const int64_t *shape,
              void *dst, char *err, size_t errlen)
{
    int i = rt_st_find(s, name);
    if (i < 0) {
        rt_seterr(err, errlen, "%s: no tensor \"%s\"", s->path, name);
        return -1;
    }
    const Entry *e = &s->e[i];
    int same = strcmp(dtypes[e->dtype].name, dtype) == 0 && e->rank == rank;
    for (int k = 0; same && k < rank; k++)
        same = e->shape[k] == shape[k];
    if (!same) {
        char have[128], want[128];
        fmt_shape(have, sizeof have, e->shape, e->rank);
        fmt_shape(want, sizeof want, shape, rank);
        rt_seterr(err, errlen, "%s: tensor \"%s\" is %s %s, expected %s %s", s->path, name,
               dtypes[e->dtype].name, have, dtype, want);
        return -1;
    }
    memcpy(dst, s->data + e->begin, (size_t)(e->end - e->begin));
    return 0;
}
