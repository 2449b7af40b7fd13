/* Fashion-MNIST loading (IDX through zlib), bilinear resize as PyTorch does
 * it, and a batch loader whose batches are made on a background thread. */
#include "base/err.h"
#include "runtime/data.h"
#include "base/infile.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define IDX_MAGIC_LABELS 0x00000801u
#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAX_SIDE 1024
#define IDX_MAX_BYTES ((uint64_t)1 << 33)


/* ---- IDX files ---- */

/* An open IDX file: path as named in messages, the zlib stream, and what
 * its header declares. */
typedef struct {
    char path[4096];
    int gz;       /* the name ends in .gz: it must hold gzip data */
    gzFile f;
    int64_t size; /* of the file on disk */
    int64_t n;    /* items */
    int h, w;     /* 1, 1 for labels */
    uint64_t at, total; /* bytes read so far, and header and data together (0: unknown yet) */
} IdxFile;

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Opens path (gzip or plain; gzip required when gz) without blocking. */
static int idx_open_path(IdxFile *x, const char *path, int gz, char *err, size_t errlen)
{
    memset(x, 0, sizeof *x);
    snprintf(x->path, sizeof x->path, "%s", path);
    x->gz = gz;
    struct stat st;
    int fd = rt_open_input(x->path, 0, &st, err, errlen);
    if (fd < 0)
        return -1;
    x->size = (int64_t)st.st_size;
    x->f = gzdopen(fd, "rb");
    if (!x->f) {
        rt_seterr(err, errlen, "%s: cannot open: %s", x->path, strerror(errno ? errno : ENOMEM));
        close(fd);
        return -1;
    }
    gzbuffer(x->f, 1 << 17);
    return 0;
}

/* Opens dir/name.gz, or dir/name when there is no .gz. */
static int idx_open(IdxFile *x, const char *dir, const char *name, char *err, size_t errlen)
{
    char gz[4096], plain[4096];
    snprintf(gz, sizeof gz, "%s/%s.gz", dir, name);
    snprintf(plain, sizeof plain, "%s/%s", dir, name);
    if (file_exists(gz))
        return idx_open_path(x, gz, 1, err, errlen);
    if (file_exists(plain))
        return idx_open_path(x, plain, 0, err, errlen);
    memset(x, 0, sizeof *x);
    rt_seterr(err, errlen, "%s: no such file (nor %s)", gz, plain);
    return -1;
}

static void idx_close(IdxFile *x)
{
    if (x->f)
        gzclose_r(x->f);
    x->f = NULL;
}

/* Names a zlib failure: an early end of the stream is "truncated", anything
 * else "corrupt gzip data". */
static void gz_fail(IdxFile *x, char *err, size_t errlen)
{
    int code;
    const char *msg = gzerror(x->f, &code);
    size_t pl = strlen(x->path); /* zlib puts the path in front */
    if (strncmp(msg, x->path, pl) == 0 && strncmp(msg + pl, ": ", 2) == 0)
        msg += pl + 2;
    if (code == Z_BUF_ERROR)
        rt_seterr(err, errlen, "%s: truncated gzip data (%s)", x->path, msg);
    else
        rt_seterr(err, errlen, "%s: corrupt gzip data (%s)", x->path, msg);
}

/* Reads exactly n bytes, in chunks of at most 1 GiB (gzread takes an
 * unsigned and returns an int); a short read is an error. */
static int idx_read(IdxFile *x, void *buf, uint64_t n, char *err, size_t errlen)
{
    uint8_t *p = buf;
    uint64_t done = 0;
    while (done < n) {
        uint64_t want = n - done;
        if (want > (1u << 30))
            want = 1u << 30;
        int r = gzread(x->f, p + done, (unsigned)want);
        if (r < 0) {
            gz_fail(x, err, errlen);
            return -1;
        }
        if (r == 0) {
            int code;
            gzerror(x->f, &code);
            if (code != Z_OK)
                gz_fail(x, err, errlen);
            else
                rt_seterr(err, errlen, "%s: truncated: file ends after %llu of %llu bytes",
                       x->path, (unsigned long long)(x->at + done),
                       (unsigned long long)(x->total ? x->total : x->at + n));
            return -1;
        }
        done += (uint64_t)r;
    }
    x->at += n;
    return 0;
}

/* Reads n bytes into a new buffer that grows as the data comes, so that a
 * header declaring more than the file holds costs no more memory than the
 * file: NULL (message set) if it ends early or memory runs out. */
static uint8_t *idx_read_new(IdxFile *x, uint64_t n, char *err, size_t errlen)
{
    uint64_t cap = n < (1u << 20) ? n : (1u << 20), done = 0;
    uint8_t *buf = malloc((size_t)cap + 1);
    while (buf && done < n) {
        if (done == cap) {
            cap = cap * 2 < n ? cap * 2 : n;
            uint8_t *b = realloc(buf, (size_t)cap + 1);
            if (!b)
                break;
            buf = b;
        }
        if (idx_read(x, buf + done, cap - done, err, errlen) != 0) {
            free(buf);
            return NULL;
        }
        done = cap;
    }
    if (!buf || done < n) {
        rt_seterr(err, errlen, "%s: out of memory for %llu bytes", x->path, (unsigned long long)n);
        free(buf);
        return NULL;
    }
    return buf;
}

/* After the last item: the stream must end here, with a good checksum. */
static int idx_expect_end(IdxFile *x, char *err, size_t errlen)
{
    uint8_t c;
    int r = gzread(x->f, &c, 1);
    int code;
    gzerror(x->f, &code);
    if (r < 0 || code != Z_OK) {
        gz_fail(x, err, errlen);
        return -1;
    }
    if (r > 0) {
        rt_seterr(err, errlen, "%s: unexpected data after the last item", x->path);
        return -1;
    }
    return 0;
}

static uint32_t be32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* Reads and checks the header of labels (rank 1) or images (rank 3) into
 * x->n, h, w: the magic, sizes within limits, the total within
 * IDX_MAX_BYTES, and for a plain file its size. */
static int idx_header(IdxFile *x, int images, char *err, size_t errlen)
{
    uint32_t magic = images ? IDX_MAGIC_IMAGES : IDX_MAGIC_LABELS;
    uint8_t hdr[16];
    size_t hlen = images ? 16 : 8;
    if (idx_read(x, hdr, hlen, err, errlen) != 0)
        return -1;
    if (x->gz && gzdirect(x->f)) {
        rt_seterr(err, errlen, "%s: corrupt gzip data (not a gzip file)", x->path);
        return -1;
    }
    if (be32(hdr) != magic) {
        rt_seterr(err, errlen, "%s: bad IDX magic 0x%08x (expected 0x%08x for %s)", x->path,
               (unsigned)be32(hdr), (unsigned)magic, images ? "images" : "labels");
        return -1;
    }
    x->n = be32(hdr + 4);
    x->h = x->w = 1;
    if (images) {
        uint32_t hh = be32(hdr + 8), ww = be32(hdr + 12);
        if (hh == 0 || ww == 0 || hh > IDX_MAX_SIDE || ww > IDX_MAX_SIDE) {
            rt_seterr(err, errlen, "%s: bad image size %ux%u (expected 28x28, at most %dx%d)",
                   x->path, (unsigned)hh, (unsigned)ww, IDX_MAX_SIDE, IDX_MAX_SIDE);
            return -1;
        }
        x->h = (int)hh;
        x->w = (int)ww;
    }
    if (x->n == 0) {
        rt_seterr(err, errlen, "%s: holds no %s", x->path, images ? "images" : "labels");
        return -1;
    }
    uint64_t bytes = (uint64_t)x->n * (uint64_t)x->h * (uint64_t)x->w;
    if (bytes > IDX_MAX_BYTES) {
        rt_seterr(err, errlen, "%s: implausible header: %lld %s of %dx%d are %llu bytes, more than the %llu "
               "this reads", x->path, (long long)x->n, images ? "images" : "labels", x->h, x->w,
               (unsigned long long)bytes, (unsigned long long)IDX_MAX_BYTES);
        return -1;
    }
    x->total = hlen + bytes;
    if (gzdirect(x->f) && (uint64_t)x->size < hlen + bytes) {
        rt_seterr(err, errlen, "%s: truncated: the header declares %lld %s of %dx%d (%llu bytes), "
               "the file holds %lld", x->path, (long long)x->n, images ? "images" : "labels", x->h, x->w,
               (unsigned long long)bytes, (long long)(x->size - (int64_t)hlen));
        return -1;
    }
    return 0;
}

static uint64_t idx_bytes(const IdxFile *x, int64_t items)
{
    return (uint64_t)items * (uint64_t)x->h * (uint64_t)x->w;
}

/* Reads the items after the header, and checks that the stream ends there. */
static uint8_t *idx_load_data(IdxFile *x, char *err, size_t errlen)
{
    uint8_t *data = idx_read_new(x, idx_bytes(x, x->n), err, errlen);
    if (data && idx_expect_end(x, err, errlen) != 0) {
        free(data);
        data = NULL;
    }
    return data;
}

uint8_t *rt_idx_read_images(const char *path, int64_t keep, int64_t *n, int *h, int *w, char *err, size_t errlen)
{
    IdxFile x;
    uint8_t *px = NULL;
    if (idx_open_path(&x, path, 0, err, errlen) != 0)
        return NULL;
    if (idx_header(&x, 1, err, errlen) != 0)
        goto done;
    if (keep > x.n || keep < 0)
        keep = x.n;
    px = idx_read_new(&x, idx_bytes(&x, keep), err, errlen);
    /* the rest is read through, not kept: a file cut short is an error */
    uint64_t rest = idx_bytes(&x, x.n - keep);
    uint8_t *chunk = px && rest ? malloc(1 << 20) : NULL;
    if (px && rest && !chunk) {
        rt_seterr(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    while (px && rest) {
        uint64_t k = rest < (1u << 20) ? rest : (1u << 20);
        if (idx_read(&x, chunk, k, err, errlen) != 0) {
            free(chunk);
            goto fail;
        }
        rest -= k;
    }
    free(chunk);
    if (px && idx_expect_end(&x, err, errlen) != 0)
        goto fail;
    if (px) {
        *n = x.n;
        *h = x.h;
        *w = x.w;
    }
    goto done;
fail:
    free(px);
    px = NULL;
done:
    idx_close(&x);
    return px;
}

int rt_dataset_load(RtDataset *ds, const char *dir, int train, char *err, size_t errlen)
{
    memset(ds, 0, sizeof *ds);
    if (!dir)
        dir = RT_DATA_DEFAULT_DIR;
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        rt_seterr(err, errlen, "%s: no such data directory", dir);
        return -1;
    }
    const char *img_name = train ? "train-images-idx3-ubyte" : "t10k-images-idx3-ubyte";
    const char *lab_name = train ? "train-labels-idx1-ubyte" : "t10k-labels-idx1-ubyte";
    IdxFile xi, xl;
    memset(&xl, 0, sizeof xl);
    /* both headers first: counts that disagree are found before any data is read */
    if (idx_open(&xi, dir, img_name, err, errlen) != 0)
        return -1;
    if (idx_header(&xi, 1, err, errlen) != 0 || idx_open(&xl, dir, lab_name, err, errlen) != 0 ||
        idx_header(&xl, 0, err, errlen) != 0)
        goto fail;
    if (xi.n != xl.n) {
        rt_seterr(err, errlen, "%s: %lld labels, but %s has %lld images", xl.path, (long long)xl.n,
               xi.path, (long long)xi.n);
        goto fail;
    }
    if (!(ds->pixels = idx_load_data(&xi, err, errlen)) || !(ds->labels = idx_load_data(&xl, err, errlen)))
        goto fail;
    for (int64_t i = 0; i < xl.n; i++) {
        if (ds->labels[i] > 9) {
            rt_seterr(err, errlen, "%s: label %d of item %lld is outside 0..9", xl.path,
                   ds->labels[i], (long long)i);
            goto fail;
        }
    }
    ds->n = xi.n;
    ds->h = xi.h;
    ds->w = xi.w;
    idx_close(&xi);
    idx_close(&xl);
    return 0;
fail:
    idx_close(&xi);
    idx_close(&xl);
    rt_dataset_free(ds);
    return -1;
}

void rt_dataset_free(RtDataset *ds)
{
    if (!ds)
        return;
    free(ds->pixels);
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
}

/* ---- resize ---- */

/* PyTorch's compute_source_index_and_lambda for align_corners=False. */
static void src_index(float scale, int dst, int in, int *i0, int *i1, float *l0, float *l1)
{
    float real = scale * ((float)dst + 0.5f) - 0.5f;
    if (real < 0.0f)
        real = 0.0f;
    int i = (int)real;
    if (i > in - 1)
        i = in - 1;
    *i0 = i;
    *i1 = i + (i < in - 1 ? 1 : 0);
    float lam = real - (float)i;
    if (lam < 0.0f)
        lam = 0.0f;
    if (lam > 1.0f)
        lam = 1.0f;
    *l1 = lam;
    *l0 = 1.0f - lam;
}

/* A resize (h, w) -> (oh, ow) with its source indices and weights worked out
 * once.  It runs in two passes, along rows into tmp (h, ow), then down the
 * columns; each output is (r0[x0]*wx0 + r0[x1]*wx1)*hy0 + (r1[x0]*wx0 +
 * r1[x1]*wx1)*hy1, the same float operations as PyTorch's kernel. */
typedef struct {
    int h, w, oh, ow;
    int *x0, *x1, *y0, *y1;       /* (ow), (ow), (oh), (oh) */
    float *wx0, *wx1, *hy0, *hy1; /* likewise */
    float *tmp;                   /* (h, ow) */
} Resize;

static void resize_free(Resize *r)
{
    free(r->x0);
    free(r->x1);
    free(r->y0);
    free(r->y1);
    free(r->wx0);
    free(r->wx1);
    free(r->hy0);
    free(r->hy1);
    free(r->tmp);
    memset(r, 0, sizeof *r);
}

static int resize_init(Resize *r, int h, int w, int oh, int ow)
{
    memset(r, 0, sizeof *r);
    r->h = h;
    r->w = w;
    r->oh = oh;
    r->ow = ow;
    r->x0 = malloc(sizeof(int) * (size_t)ow);
    r->x1 = malloc(sizeof(int) * (size_t)ow);
    r->wx0 = malloc(sizeof(float) * (size_t)ow);
    r->wx1 = malloc(sizeof(float) * (size_t)ow);
    r->y0 = malloc(sizeof(int) * (size_t)oh);
    r->y1 = malloc(sizeof(int) * (size_t)oh);
    r->hy0 = malloc(sizeof(float) * (size_t)oh);
    r->hy1 = malloc(sizeof(float) * (size_t)oh);
    r->tmp = malloc(sizeof(float) * (size_t)h * (size_t)ow);
    if (!r->x0 || !r->x1 || !r->wx0 || !r->wx1 || !r->y0 || !r->y1 || !r->hy0 || !r->hy1 ||
        !r->tmp) {
        resize_free(r);
        return -1;
    }
    float sw = (float)w / (float)ow, sh = (float)h / (float)oh;
    for (int x = 0; x < ow; x++)
        src_index(sw, x, w, &r->x0[x], &r->x1[x], &r->wx0[x], &r->wx1[x]);
    for (int y = 0; y < oh; y++)
        src_index(sh, y, h, &r->y0[y], &r->y1[y], &r->hy0[y], &r->hy1[y]);
    return 0;
}

static void resize_run(const Resize *r, const float *src, float *dst)
{
    for (int y = 0; y < r->h; y++) {
        const float *row = src + (size_t)y * r->w;
        float *t = r->tmp + (size_t)y * r->ow;
        for (int x = 0; x < r->ow; x++)
            t[x] = row[r->x0[x]] * r->wx0[x] + row[r->x1[x]] * r->wx1[x];
    }
    for (int y = 0; y < r->oh; y++) {
        const float *t0 = r->tmp + (size_t)r->y0[y] * r->ow, *t1 = r->tmp + (size_t)r->y1[y] * r->ow;
        float h0 = r->hy0[y], h1 = r->hy1[y];
        float *out = dst + (size_t)y * r->ow;
        for (int x = 0; x < r->ow; x++)
            out[x] = t0[x] * h0 + t1[x] * h1;
    }
}

void rt_resize_bilinear(const float *src, int h, int w, float *dst, int oh, int ow)
{
    Resize r;
    if (resize_init(&r, h, w, oh, ow) == 0) {
        resize_run(&r, src, dst);
        resize_free(&r);
        return;
    }
    /* Out of memory: the same arithmetic, one output at a time. */
    float sh = (float)h / (float)oh, sw = (float)w / (float)ow;
    for (int y = 0; y < oh; y++) {
        int y0, y1;
        float hy0, hy1;
        src_index(sh, y, h, &y0, &y1, &hy0, &hy1);
        const float *r0 = src + (size_t)y0 * w, *r1 = src + (size_t)y1 * w;
        for (int x = 0; x < ow; x++) {
            int x0, x1;
            float wx0, wx1;
            src_index(sw, x, w, &x0, &x1, &wx0, &wx1);
            float t0 = r0[x0] * wx0 + r0[x1] * wx1;
            float t1 = r1[x0] * wx0 + r1[x1] * wx1;
            dst[(size_t)y * ow + x] = t0 * hy0 + t1 * hy1;
        }
    }
}

/* ---- shuffle ---- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in 0..bound-1, by rejection (no modulo bias). */
static uint64_t below(uint64_t *s, uint64_t bound)
{
    uint64_t lim = UINT64_MAX - UINT64_MAX % bound, r;
    do
        r = splitmix64(s);
    while (r >= lim);
    return r % bound;
}

void rt_shuffle_order(int64_t *order, int64_t n, uint64_t seed, int epoch)
{
    uint64_t s = seed;
    s = splitmix64(&s) ^ ((uint64_t)(int64_t)epoch * 0xD1B54A32D192ED03ull);
    for (int64_t i = 0; i < n; i++)
        order[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)below(&s, (uint64_t)i + 1);
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

/* ---- loader ---- */

#define LOADER_SLOTS 3

typedef struct {
    float *images;   /* (batch, 1, resize, resize) */
    int32_t *labels; /* (batch) */
    int count;
} Slot;

struct RtLoader {
    const RtDataset *ds;
    int batch, resize, shuffle, drop_last;
    int part, parts; /* batch b is images [(b * parts + part) * batch, +batch) of the order */
    uint64_t seed;
    int64_t nbatches;
    int64_t *order;  /* (n) this epoch's order */
    float *scratch;  /* (h, w) one image as floats, producer only */
    Resize rs;       /* (h, w) -> (resize, resize), producer only */
    Slot slots[LOADER_SLOTS]; /* batch b lives in slots[b % LOADER_SLOTS] */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started; /* an epoch was begun */
    int quit;
    int busy;     /* the producer is filling a slot outside the lock */
    uint64_t gen; /* bumped by every begin_epoch: a batch of an old epoch is dropped */
    int64_t prod; /* next batch to make; batches cons..prod-1 are ready */
    int64_t cons; /* next batch to hand out */
};

/* Makes batch b of the current epoch into s.  Runs without the lock: the
 * consumer does not touch s or order while busy is set. */
static void fill_slot(RtLoader *l, Slot *s, int64_t b)
{
    const RtDataset *ds = l->ds;
    size_t img = (size_t)l->resize * l->resize, src = (size_t)ds->h * ds->w;
    int64_t first = (b * l->parts + l->part) * l->batch, count = ds->n - first;
    if (count > l->batch)
        count = l->batch;
    if (count < 0)
        count = 0;
    for (int64_t k = 0; k < count; k++) {
        int64_t idx = l->order[first + k];
        const uint8_t *px = ds->pixels + (size_t)idx * src;
        float *out = s->images + (size_t)k * img;
        int same = l->resize == ds->h && l->resize == ds->w;
        float *f = same ? out : l->scratch;
        for (size_t i = 0; i < src; i++)
            f[i] = (float)px[i] / 255.0f;
        if (!same)
            resize_run(&l->rs, f, out);
        s->labels[k] = ds->labels[idx];
    }
    if (count < l->batch) {
        memset(s->images + (size_t)count * img, 0, (size_t)(l->batch - count) * img * sizeof(float));
        memset(s->labels + count, 0, (size_t)(l->batch - count) * sizeof(int32_t));
    }
    s->count = (int)count;
}

static void *producer(void *arg)
{
    RtLoader *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->quit &&
               !(l->started && l->prod < l->nbatches && l->prod - l->cons < LOADER_SLOTS))
            pthread_cond_wait(&l->cv, &l->mu);
        if (l->quit)
            break;
        int64_t b = l->prod;
        uint64_t gen = l->gen;
        l->busy = 1;
        pthread_mutex_unlock(&l->mu);
        fill_slot(l, &l->slots[b % LOADER_SLOTS], b);
        pthread_mutex_lock(&l->mu);
        l->busy = 0;
        if (gen == l->gen)
            l->prod = b + 1;
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void loader_release(RtLoader *l)
{
    for (int i = 0; i < LOADER_SLOTS; i++) {
        free(l->slots[i].images);
        free(l->slots[i].labels);
    }
    free(l->order);
    free(l->scratch);
    resize_free(&l->rs);
    free(l);
}

RtLoader *rt_loader_new(const RtDataset *ds, int batch, int resize, int shuffle, int drop_last,
                        uint64_t seed)
{
    return rt_loader_new_part(ds, batch, resize, shuffle, drop_last, seed, 0, 1);
}

RtLoader *rt_loader_new_part(const RtDataset *ds, int batch, int resize, int shuffle, int drop_last,
                             uint64_t seed, int part, int parts)
{
    if (!ds || ds->n <= 0 || !ds->pixels || !ds->labels || batch <= 0 || batch > (1 << 20) ||
        resize <= 0 || resize > 4096 || parts < 1 || parts > (1 << 20) / batch || part < 0 || part >= parts)
        return NULL;
    RtLoader *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->ds = ds;
    l->batch = batch;
    l->resize = resize;
    l->shuffle = shuffle;
    l->drop_last = drop_last;
    l->seed = seed;
    l->part = part;
    l->parts = parts;
    int64_t whole = (int64_t)batch * parts;
    l->nbatches = drop_last ? ds->n / whole : (ds->n + whole - 1) / whole;
    l->order = malloc((size_t)ds->n * sizeof *l->order);
    l->scratch = malloc((size_t)ds->h * ds->w * sizeof(float));
    int ok = l->order && l->scratch &&
             resize_init(&l->rs, ds->h, ds->w, resize, resize) == 0;
    for (int i = 0; i < LOADER_SLOTS && ok; i++) {
        l->slots[i].images = malloc((size_t)batch * resize * resize * sizeof(float));
        l->slots[i].labels = malloc((size_t)batch * sizeof(int32_t));
        ok = l->slots[i].images && l->slots[i].labels;
    }
    if (!ok) {
        loader_release(l);
        return NULL;
    }
    if (pthread_mutex_init(&l->mu, NULL) != 0) {
        loader_release(l);
        return NULL;
    }
    if (pthread_cond_init(&l->cv, NULL) != 0) {
        pthread_mutex_destroy(&l->mu);
        loader_release(l);
        return NULL;
    }
    if (pthread_create(&l->thread, NULL, producer, l) != 0) {
        pthread_cond_destroy(&l->cv);
        pthread_mutex_destroy(&l->mu);
        loader_release(l);
        return NULL;
    }
    return l;
}

int rt_loader_begin_epoch_at(RtLoader *l, int epoch, int64_t first_batch)
{
    if (!l || first_batch < 0 || first_batch > l->nbatches)
        return -1;
    pthread_mutex_lock(&l->mu);
    l->gen++;
    while (l->busy)
        pthread_cond_wait(&l->cv, &l->mu);
    if (l->shuffle) {
        rt_shuffle_order(l->order, l->ds->n, l->seed, epoch);
    } else {
        for (int64_t i = 0; i < l->ds->n; i++)
            l->order[i] = i;
    }
    l->prod = l->cons = first_batch;
    l->started = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    return 0;
}

int rt_loader_begin_epoch(RtLoader *l, int epoch)
{
    return rt_loader_begin_epoch_at(l, epoch, 0);
}

int rt_loader_next(RtLoader *l, float *images, int32_t *labels)
{
    if (!l)
        return -1;
    pthread_mutex_lock(&l->mu);
    if (!l->started) {
        pthread_mutex_unlock(&l->mu);
        return -1;
    }
    if (l->cons >= l->nbatches) {
        pthread_mutex_unlock(&l->mu);
        return 0;
    }
    while (l->prod <= l->cons)
        pthread_cond_wait(&l->cv, &l->mu);
    /* The producer leaves this slot alone until cons moves past it. */
    const Slot *s = &l->slots[l->cons % LOADER_SLOTS];
    int count = s->count;
    pthread_mutex_unlock(&l->mu);
    memcpy(images, s->images, (size_t)l->batch * l->resize * l->resize * sizeof(float));
    memcpy(labels, s->labels, (size_t)l->batch * sizeof(int32_t));
    pthread_mutex_lock(&l->mu);
    l->cons++;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    return count;
}

int64_t rt_loader_batches(const RtLoader *l)
{
    return l ? l->nbatches : 0;
}

void rt_loader_free(RtLoader *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    l->quit = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
    loader_release(l);
}
