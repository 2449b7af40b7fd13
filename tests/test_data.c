/* Fashion-MNIST loader: IDX parsing and its errors, resize, shuffle, loader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "runtime/data.h"

#define N_IMG 103
#define SIDE 28

static char tmpdir[256];

/* Writes an IDX file with the given magic and dims, gzip-compressed if gz. */
static void write_idx(const char *name, int gz, uint32_t magic, const uint32_t *dims, int ndims,
                      const uint8_t *data, size_t bytes)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s%s", tmpdir, name, gz ? ".gz" : "");
    uint8_t hdr[16];
    size_t hl = 0;
    uint32_t words[4] = {magic, 0, 0, 0};
    for (int i = 0; i < ndims; i++)
        words[i + 1] = dims[i];
    for (int i = 0; i <= ndims; i++) {
        hdr[hl++] = (uint8_t)(words[i] >> 24);
        hdr[hl++] = (uint8_t)(words[i] >> 16);
        hdr[hl++] = (uint8_t)(words[i] >> 8);
        hdr[hl++] = (uint8_t)words[i];
    }
    if (gz) {
        gzFile f = gzopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(gzwrite(f, hdr, (unsigned)hl), (int)hl);
        if (bytes)
            assert_int_equal(gzwrite(f, data, (unsigned)bytes), (int)bytes);
        assert_int_equal(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(hdr, 1, hl, f), hl);
        if (bytes)
            assert_int_equal(fwrite(data, 1, bytes, f), bytes);
        assert_int_equal(fclose(f), 0);
    }
}

/* Image i has its index in its first two pixels; label i % 10. */
static void write_split(int train, int gz, int n_img, int n_lab)
{
    uint8_t *px = malloc((size_t)n_img * SIDE * SIDE), lab[N_IMG + 10];
    for (int i = 0; i < n_img; i++) {
        uint8_t *p = px + (size_t)i * SIDE * SIDE;
        for (int k = 0; k < SIDE * SIDE; k++)
            p[k] = (uint8_t)(k * 7 + i);
        p[0] = (uint8_t)(i & 255);
        p[1] = (uint8_t)(i >> 8);
    }
    for (int i = 0; i < n_lab; i++)
        lab[i] = (uint8_t)(i % 10);
    uint32_t di[3] = {(uint32_t)n_img, SIDE, SIDE}, dl[1] = {(uint32_t)n_lab};
    write_idx(train ? "train-images-idx3-ubyte" : "t10k-images-idx3-ubyte", gz, 0x803, di, 3, px,
              (size_t)n_img * SIDE * SIDE);
    write_idx(train ? "train-labels-idx1-ubyte" : "t10k-labels-idx1-ubyte", gz, 0x801, dl, 1, lab,
              (size_t)n_lab);
    free(px);
}

static void clean_dir(void)
{
    const char *names[] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                           "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    char path[512];
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, names[i]);
        unlink(path);
        snprintf(path, sizeof path, "%s/%s.gz", tmpdir, names[i]);
        unlink(path);
    }
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/netc_test_data_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    clean_dir();
    rmdir(tmpdir);
    return 0;
}

/* Loading must fail with a message holding both substrings. */
static void expect_fail(int train, const char *want1, const char *want2)
{
    RtDataset ds;
    char err[1024] = "";
    assert_int_equal(rt_dataset_load(&ds, tmpdir, train, err, sizeof err), -1);
    if (!strstr(err, want1) || (want2 && !strstr(err, want2)))
        fail_msg("message \"%s\" lacks \"%s\" / \"%s\"", err, want1, want2 ? want2 : "");
    assert_null(ds.pixels);
    assert_null(ds.labels);
}

static void check_loaded(const RtDataset *ds, int n)
{
    assert_int_equal(ds->n, n);
    assert_int_equal(ds->h, SIDE);
    assert_int_equal(ds->w, SIDE);
    for (int i = 0; i < n; i++) {
        const uint8_t *p = ds->pixels + (size_t)i * SIDE * SIDE;
        assert_int_equal(p[0] | p[1] << 8, i);
        assert_int_equal(p[5], (uint8_t)(5 * 7 + i));
        assert_int_equal(ds->labels[i], i % 10);
    }
}

static void test_load_gz(void **state)
{
    (void)state;
    clean_dir();
    write_split(1, 1, N_IMG, N_IMG);
    write_split(0, 1, 17, 17);
    RtDataset ds;
    char err[512] = "";
    assert_int_equal(rt_dataset_load(&ds, tmpdir, 1, err, sizeof err), 0);
    check_loaded(&ds, N_IMG);
    rt_dataset_free(&ds);
    assert_int_equal(rt_dataset_load(&ds, tmpdir, 0, err, sizeof err), 0);
    check_loaded(&ds, 17);
    rt_dataset_free(&ds);
}

static void test_load_plain(void **state)
{
    (void)state;
    clean_dir();
    write_split(1, 0, N_IMG, N_IMG);
    RtDataset ds;
    char err[512] = "";
    assert_int_equal(rt_dataset_load(&ds, tmpdir, 1, err, sizeof err), 0);
    check_loaded(&ds, N_IMG);
    rt_dataset_free(&ds);
}

static void test_missing(void **state)
{
    (void)state;
    clean_dir();
    RtDataset ds;
    char err[512] = "";
    assert_int_equal(rt_dataset_load(&ds, "/nonexistent/netc_data", 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/netc_data"));
    expect_fail(1, "train-images-idx3-ubyte.gz", "no such file");
    write_split(1, 1, N_IMG, N_IMG);
    char path[512];
    snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte.gz", tmpdir);
    unlink(path);
    expect_fail(1, "train-labels-idx1-ubyte.gz", "no such file");
}

static void truncate_file(const char *name, long keep)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    if (keep < 0) {
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        keep = (long)st.st_size / 2;
    }
    assert_int_equal(truncate(path, keep), 0);
}

static void poke(const char *name, long off, const void *bytes, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, off, SEEK_SET), 0);
    assert_int_equal(fwrite(bytes, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void test_truncated_and_corrupt(void **state)
{
    (void)state;
    clean_dir();
    write_split(1, 1, N_IMG, N_IMG);
    truncate_file("train-images-idx3-ubyte.gz", -1);
    expect_fail(1, "train-images-idx3-ubyte.gz", "truncated");

    /* Only the 8-byte gzip trailer (CRC, length) missing. */
    clean_dir();
    write_split(1, 1, N_IMG, N_IMG);
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte.gz", tmpdir);
    assert_int_equal(stat(path, &st), 0);
    truncate_file("train-labels-idx1-ubyte.gz", (long)st.st_size - 8);
    expect_fail(1, "train-labels-idx1-ubyte.gz", "truncated");

    /* A reserved deflate block type right after the 10-byte gzip header. */
    clean_dir();
    write_split(1, 1, N_IMG, N_IMG);
    uint8_t ff = 0xff;
    poke("train-images-idx3-ubyte.gz", 10, &ff, 1);
    expect_fail(1, "train-images-idx3-ubyte.gz", "corrupt gzip data");

    /* A wrong CRC in the trailer. */
    clean_dir();
    write_split(1, 1, N_IMG, N_IMG);
    snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte.gz", tmpdir);
    assert_int_equal(stat(path, &st), 0);
    uint8_t crc[4] = {1, 2, 3, 4};
    poke("train-labels-idx1-ubyte.gz", (long)st.st_size - 8, crc, 4);
    expect_fail(1, "train-labels-idx1-ubyte.gz", "corrupt gzip data");

    /* A .gz that is no gzip at all. */
    clean_dir();
    write_split(1, 0, N_IMG, N_IMG);
    char plain[512];
    snprintf(plain, sizeof plain, "%s/train-images-idx3-ubyte", tmpdir);
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte.gz", tmpdir);
    assert_int_equal(rename(plain, path), 0);
    expect_fail(1, "train-images-idx3-ubyte.gz", "corrupt gzip data");

    /* A plain file cut short. */
    clean_dir();
    write_split(1, 0, N_IMG, N_IMG);
    truncate_file("train-images-idx3-ubyte", 16 + 100);
    expect_fail(1, "train-images-idx3-ubyte", "truncated");
    truncate_file("train-images-idx3-ubyte", 6);
    expect_fail(1, "train-images-idx3-ubyte", "truncated");
}

static void test_bad_headers(void **state)
{
    (void)state;
    uint8_t px[SIDE * SIDE * 2] = {0}, lab[2] = {0, 1};
    uint32_t di[3] = {2, SIDE, SIDE}, dl[1] = {2};

    clean_dir();
    write_split(1, 1, N_IMG, N_IMG);
    write_idx("train-images-idx3-ubyte", 1, 0x801, di, 3, px, sizeof px);
    expect_fail(1, "train-images-idx3-ubyte.gz", "magic");

    clean_dir();
    write_split(1, 1, N_IMG, N_IMG);
    write_idx("train-labels-idx1-ubyte", 1, 0x803, dl, 1, lab, 2);
    expect_fail(1, "train-labels-idx1-ubyte.gz", "magic");

    clean_dir();
    write_split(1, 1, N_IMG, N_IMG - 3);
    expect_fail(1, "train-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz");

    clean_dir();
    write_split(0, 1, 17, 17);
    uint8_t bad[2] = {3, 10};
    write_idx("t10k-labels-idx1-ubyte", 1, 0x801, dl, 1, bad, 2);
    write_idx("t10k-images-idx3-ubyte", 1, 0x803, di, 3, px, sizeof px);
    expect_fail(0, "t10k-labels-idx1-ubyte.gz", "outside 0..9");

    clean_dir();
    write_split(1, 1, N_IMG, N_IMG);
    uint32_t huge[3] = {2, 2000, 28};
    write_idx("train-images-idx3-ubyte", 1, 0x803, huge, 3, px, sizeof px);
    expect_fail(1, "train-images-idx3-ubyte.gz", "image size");

    /* Data after the last image. */
    clean_dir();
    write_split(1, 1, N_IMG, N_IMG);
    uint32_t one[3] = {1, SIDE, SIDE};
    write_idx("train-images-idx3-ubyte", 1, 0x803, one, 3, px, sizeof px);
    write_idx("train-labels-idx1-ubyte", 1, 0x801, one, 1, lab, 1);
    expect_fail(1, "train-images-idx3-ubyte.gz", "after the last");
}

/* The align_corners=False formula, written out independently in double. */
static double ref_resize_at(const float *src, int h, int w, int oh, int ow, int y, int x)
{
    double sy = ((double)y + 0.5) * h / oh - 0.5, sx = ((double)x + 0.5) * w / ow - 0.5;
    if (sy < 0)
        sy = 0;
    if (sx < 0)
        sx = 0;
    int y0 = (int)floor(sy), x0 = (int)floor(sx);
    int y1 = y0 + 1 < h ? y0 + 1 : h - 1, x1 = x0 + 1 < w ? x0 + 1 : w - 1;
    double ly = sy - y0, lx = sx - x0;
    return (1 - ly) * ((1 - lx) * src[y0 * w + x0] + lx * src[y0 * w + x1]) +
           ly * ((1 - lx) * src[y1 * w + x0] + lx * src[y1 * w + x1]);
}

static void test_resize(void **state)
{
    (void)state;
    /* torch.nn.functional.interpolate(arange(4).view(1,1,2,2), size=4,
     * mode='bilinear', align_corners=False) */
    const float a[4] = {0, 1, 2, 3};
    const float want[16] = {0.0f, 0.25f, 0.75f, 1.0f, 0.5f, 0.75f, 1.25f, 1.5f,
                            1.5f, 1.75f, 2.25f, 2.5f, 2.0f, 2.25f, 2.75f, 3.0f};
    float out[16];
    rt_resize_bilinear(a, 2, 2, out, 4, 4);
    for (int i = 0; i < 16; i++)
        assert_float_equal(out[i], want[i], 1e-6);

    float src[SIDE * SIDE], big[232 * 232], same[SIDE * SIDE];
    for (int i = 0; i < SIDE * SIDE; i++)
        src[i] = (float)((i * 37) % 256) / 255.0f;
    const int sizes[] = {224, 96, 64, 227, 14, 5};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        int r = sizes[s];
        rt_resize_bilinear(src, SIDE, SIDE, big, r, r);
        for (int y = 0; y < r; y += 3)
            for (int x = 0; x < r; x += 5)
                assert_float_equal(big[y * r + x], ref_resize_at(src, SIDE, SIDE, r, r, y, x), 1e-5);
        assert_float_equal(big[(r - 1) * r + r - 1],
                           ref_resize_at(src, SIDE, SIDE, r, r, r - 1, r - 1), 1e-5);
    }
    rt_resize_bilinear(src, SIDE, SIDE, same, SIDE, SIDE);
    assert_memory_equal(src, same, sizeof src);

    float c[SIDE * SIDE];
    for (int i = 0; i < SIDE * SIDE; i++)
        c[i] = 0.3f;
    rt_resize_bilinear(c, SIDE, SIDE, big, 224, 224);
    for (int i = 0; i < 224 * 224; i++)
        assert_float_equal(big[i], 0.3f, 1e-6);
}

static void check_permutation(const int64_t *o, int64_t n)
{
    char *seen = calloc((size_t)n, 1);
    for (int64_t i = 0; i < n; i++) {
        assert_true(o[i] >= 0 && o[i] < n);
        assert_false(seen[o[i]]);
        seen[o[i]] = 1;
    }
    free(seen);
}

static void test_shuffle(void **state)
{
    (void)state;
    enum { N = 1000 };
    int64_t a[N], b[N], c[N], d[N];
    rt_shuffle_order(a, N, 42, 3);
    rt_shuffle_order(b, N, 42, 3);
    rt_shuffle_order(c, N, 42, 4);
    rt_shuffle_order(d, N, 43, 3);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
    assert_memory_not_equal(a, d, sizeof a);
    check_permutation(a, N);
    check_permutation(c, N);
    check_permutation(d, N);
    int fixed = 0;
    for (int i = 0; i < N; i++)
        fixed += a[i] == i;
    assert_true(fixed < 20);
    rt_shuffle_order(a, 1, 42, 0);
    assert_int_equal(a[0], 0);
}

/* Makes an in-memory data set like write_split's. */
static void make_ds(RtDataset *ds, int n)
{
    ds->n = n;
    ds->h = ds->w = SIDE;
    ds->pixels = malloc((size_t)n * SIDE * SIDE);
    ds->labels = malloc((size_t)n);
    for (int i = 0; i < n; i++) {
        uint8_t *p = ds->pixels + (size_t)i * SIDE * SIDE;
        for (int k = 0; k < SIDE * SIDE; k++)
            p[k] = (uint8_t)(k + i);
        p[0] = (uint8_t)(i & 255);
        p[1] = (uint8_t)(i >> 8);
        ds->labels[i] = (uint8_t)(i % 10);
    }
}

/* Runs one epoch and checks that each image comes exactly once; returns the
 * order seen in order[] and the number of batches. */
static int64_t run_epoch(RtLoader *l, int n, int batch, int drop_last, int64_t *order)
{
    float *img = malloc((size_t)batch * SIDE * SIDE * sizeof(float));
    int32_t *lab = malloc((size_t)batch * sizeof(int32_t));
    int64_t seen = 0, nb = 0;
    int count;
    while ((count = rt_loader_next(l, img, lab)) > 0) {
        nb++;
        for (int k = 0; k < count; k++) {
            const float *p = img + (size_t)k * SIDE * SIDE;
            int idx = (int)lrintf(p[0] * 255.0f) | (int)lrintf(p[1] * 255.0f) << 8;
            assert_true(idx >= 0 && idx < n);
            assert_int_equal(lab[k], idx % 10);
            assert_float_equal(p[7], (float)(uint8_t)(7 + idx) / 255.0f, 0);
            order[seen++] = idx;
        }
        for (int k = count; k < batch; k++) {
            assert_int_equal(lab[k], 0);
            assert_float_equal(img[(size_t)k * SIDE * SIDE + 3], 0.0f, 0);
        }
    }
    assert_int_equal(count, 0);
    assert_int_equal(rt_loader_next(l, img, lab), 0);
    assert_int_equal(seen, drop_last ? n / batch * batch : n);
    if (!drop_last)
        check_permutation(order, n);
    free(img);
    free(lab);
    return nb;
}

static void test_loader(void **state)
{
    (void)state;
    RtDataset ds;
    make_ds(&ds, N_IMG);
    int64_t o1[N_IMG], o2[N_IMG], o3[N_IMG], want[N_IMG];

    RtLoader *l = rt_loader_new(&ds, 10, SIDE, 1, 0, 7);
    assert_non_null(l);
    assert_int_equal(rt_loader_batches(l), 11);
    float img[10 * SIDE * SIDE];
    int32_t lab[10];
    assert_int_equal(rt_loader_next(l, img, lab), -1); /* no epoch yet */
    assert_int_equal(rt_loader_begin_epoch(l, 0), 0);
    assert_int_equal(run_epoch(l, N_IMG, 10, 0, o1), 11);
    rt_shuffle_order(want, N_IMG, 7, 0);
    assert_memory_equal(o1, want, sizeof want);
    assert_int_equal(rt_loader_begin_epoch(l, 1), 0);
    run_epoch(l, N_IMG, 10, 0, o2);
    assert_memory_not_equal(o1, o2, sizeof o1);
    /* Same epoch again: same order.  Restarting mid-epoch is fine. */
    assert_int_equal(rt_loader_begin_epoch(l, 1), 0);
    assert_int_equal(rt_loader_next(l, img, lab), 10);
    assert_int_equal(rt_loader_begin_epoch(l, 1), 0);
    run_epoch(l, N_IMG, 10, 0, o3);
    assert_memory_equal(o2, o3, sizeof o2);
    /* Resume at batch 4: the rest of the same order. */
    assert_int_equal(rt_loader_begin_epoch_at(l, 1, 4), 0);
    int64_t k = 0;
    int count;
    while ((count = rt_loader_next(l, img, lab)) > 0)
        for (int i = 0; i < count; i++, k++)
            assert_int_equal(lrintf(img[i * SIDE * SIDE] * 255.0f) |
                                 lrintf(img[i * SIDE * SIDE + 1] * 255.0f) << 8,
                             o2[40 + k]);
    assert_int_equal(k, N_IMG - 40);
    assert_int_equal(rt_loader_begin_epoch_at(l, 1, 12), -1);
    assert_int_equal(rt_loader_begin_epoch_at(l, 1, 11), 0);
    assert_int_equal(rt_loader_next(l, img, lab), 0);
    /* Free mid-epoch, with batches in flight. */
    assert_int_equal(rt_loader_begin_epoch(l, 2), 0);
    assert_int_equal(rt_loader_next(l, img, lab), 10);
    rt_loader_free(l);

    /* drop_last, no shuffle: 0..99 in order, 10 batches. */
    l = rt_loader_new(&ds, 10, SIDE, 0, 1, 7);
    assert_int_equal(rt_loader_batches(l), 10);
    assert_int_equal(rt_loader_begin_epoch(l, 5), 0);
    assert_int_equal(run_epoch(l, N_IMG, 10, 1, o1), 10);
    for (int i = 0; i < 100; i++)
        assert_int_equal(o1[i], i);
    rt_loader_free(l);

    /* Free before any epoch, and a loader that never starts. */
    rt_loader_free(rt_loader_new(&ds, 3, SIDE, 1, 0, 1));
    rt_loader_free(NULL);
    assert_null(rt_loader_new(&ds, 0, SIDE, 1, 0, 1));
    rt_dataset_free(&ds);
}

static void test_loader_resize(void **state)
{
    (void)state;
    RtDataset ds;
    make_ds(&ds, 9);
    memset(ds.pixels, 51, (size_t)9 * SIDE * SIDE); /* 0.2 */
    RtLoader *l = rt_loader_new(&ds, 4, 96, 1, 0, 3);
    float *img = malloc((size_t)4 * 96 * 96 * sizeof(float));
    int32_t lab[4];
    int counts[3], total = 0;
    assert_int_equal(rt_loader_begin_epoch(l, 0), 0);
    for (int b = 0; b < 3; b++) {
        counts[b] = rt_loader_next(l, img, lab);
        total += counts[b];
        for (int i = 0; i < counts[b] * 96 * 96; i++)
            assert_float_equal(img[i], 0.2f, 1e-6);
        for (int i = counts[b] * 96 * 96; i < 4 * 96 * 96; i++)
            assert_float_equal(img[i], 0.0f, 0);
    }
    assert_int_equal(counts[2], 1);
    assert_int_equal(total, 9);
    assert_int_equal(rt_loader_next(l, img, lab), 0);
    free(img);
    rt_loader_free(l);
    rt_dataset_free(&ds);
}


/* The counts of images and labels are compared from the headers, before
 * any data is read: here the images have none, yet the message is the
 * count mismatch. */
static void test_counts_before_data(void **state)
{
    (void)state;
    clean_dir();
    write_split(1, 1, N_IMG, N_IMG - 3);
    uint32_t di[3] = {N_IMG, SIDE, SIDE};
    write_idx("train-images-idx3-ubyte", 1, 0x803, di, 3, NULL, 0);
    expect_fail(1, "labels, but", "train-images-idx3-ubyte.gz");
}

/* A FIFO in place of a data file is refused, not waited on. */
static void test_fifo(void **state)
{
    (void)state;
    clean_dir();
    write_split(1, 1, N_IMG, N_IMG);
    char path[512];
    snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte.gz", tmpdir);
    unlink(path);
    assert_int_equal(mkfifo(path, 0644), 0);
    alarm(10); /* a hang fails the test */
    expect_fail(1, "train-labels-idx1-ubyte.gz", "FIFO");
    char err[512] = "";
    int64_t n;
    int h, w;
    assert_null(rt_idx_read_images(path, 1, &n, &h, &w, err, sizeof err));
    alarm(0);
    assert_non_null(strstr(err, "FIFO"));
    unlink(path);
}

/* rt_idx_read_images must fail with a message naming the file and want. */
static void expect_images_fail(const char *name, const char *want)
{
    char path[512], err[1024] = "";
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    int64_t n;
    int h, w;
    uint8_t *px = rt_idx_read_images(path, 10, &n, &h, &w, err, sizeof err);
    if (px) {
        free(px);
        fail_msg("%s: read, expected \"%s\"", name, want);
    }
    if (!strstr(err, path) || !strstr(err, want))
        fail_msg("message \"%s\" lacks the path or \"%s\"", err, want);
}

/* predict's reader: headers that lie about their sizes, files cut short. */
static void test_idx_images(void **state)
{
    (void)state;
    enum { N = 12 };
    uint8_t *px = malloc(N * SIDE * SIDE);
    for (int i = 0; i < N * SIDE * SIDE; i++)
        px[i] = (uint8_t)(i * 31);
    uint32_t ok[3] = {N, SIDE, SIDE};
    char path[512], err[512] = "";
    for (int gz = 0; gz < 2; gz++) {
        write_idx("img", gz, 0x803, ok, 3, px, N * SIDE * SIDE);
        snprintf(path, sizeof path, "%s/img%s", tmpdir, gz ? ".gz" : "");
        int64_t n = 0;
        int h = 0, w = 0;
        for (int keep = 0; keep <= N + 1; keep += 5) {
            uint8_t *got = rt_idx_read_images(path, keep, &n, &h, &w, err, sizeof err);
            if (!got)
                fail_msg("%s", err);
            assert_int_equal(n, N);
            assert_int_equal(h, SIDE);
            assert_int_equal(w, SIDE);
            int k = keep < N ? keep : N;
            if (k)
                assert_memory_equal(got, px, (size_t)k * SIDE * SIDE);
            free(got);
        }
        unlink(path);
    }
    /* a height of 2^31 (a shift past int once) and other bad sides */
    uint32_t tall[3] = {1, 0x80000000u, SIDE}, wide[3] = {1, SIDE, 0xffffffffu}, zero[3] = {1, 0, SIDE};
    write_idx("tall", 0, 0x803, tall, 3, px, SIDE * SIDE);
    expect_images_fail("tall", "bad image size 2147483648x28");
    write_idx("wide", 1, 0x803, wide, 3, px, SIDE * SIDE);
    expect_images_fail("wide.gz", "bad image size");
    write_idx("zero", 0, 0x803, zero, 3, px, SIDE * SIDE);
    expect_images_fail("zero", "bad image size");
    /* 10^7 images of 1024x1024: 10 TB, refused from the header */
    uint32_t huge[3] = {10000000, 1024, 1024};
    write_idx("huge", 0, 0x803, huge, 3, px, SIDE * SIDE);
    expect_images_fail("huge", "implausible");
    write_idx("huge", 1, 0x803, huge, 3, px, SIDE * SIDE);
    expect_images_fail("huge.gz", "implausible");
    /* 4097 images of 1024x1024 declared, 1 MiB there: plain and gzip */
    uint32_t cut[3] = {4097, 1024, 1024};
    uint8_t *mib = calloc(1, 1 << 20);
    write_idx("cut", 0, 0x803, cut, 3, mib, 1 << 20);
    expect_images_fail("cut", "truncated");
    write_idx("cut", 1, 0x803, cut, 3, mib, 1 << 20);
    expect_images_fail("cut.gz", "truncated");
    /* cut short past the images kept: still an error */
    write_idx("short", 1, 0x803, ok, 3, px, (N - 1) * SIDE * SIDE);
    expect_images_fail("short.gz", "truncated");
    write_idx("short", 0, 0x803, ok, 3, px, (N - 1) * SIDE * SIDE);
    expect_images_fail("short", "truncated");
    /* data after the last image, a wrong magic, no images, a short header */
    uint8_t *more = calloc(1, (N + 1) * SIDE * SIDE);
    write_idx("more", 1, 0x803, ok, 3, more, (N + 1) * SIDE * SIDE);
    expect_images_fail("more.gz", "after the last");
    write_idx("labels", 0, 0x801, ok, 1, px, N);
    expect_images_fail("labels", "magic");
    uint32_t none[3] = {0, SIDE, SIDE};
    write_idx("none", 0, 0x803, none, 3, NULL, 0);
    expect_images_fail("none", "no images");
    write_idx("hdr", 0, 0x803, ok, 2, NULL, 0);
    expect_images_fail("hdr", "truncated");
    expect_images_fail("missing", "cannot open");
    const char *names[] = {"tall", "wide.gz", "zero", "huge", "huge.gz", "cut", "cut.gz", "short", "short.gz",
                           "more.gz", "labels", "none", "hdr"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, names[i]);
        unlink(path);
    }
    free(px);
    free(mib);
    free(more);
}

static void test_real_fashion_mnist(void **state)
{
    (void)state;
    struct stat st;
    if (stat(RT_DATA_DEFAULT_DIR, &st) != 0)
        skip();
    RtDataset tr, te;
    char err[512] = "";
    if (rt_dataset_load(&tr, NULL, 1, err, sizeof err) != 0)
        fail_msg("%s", err);
    if (rt_dataset_load(&te, NULL, 0, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(tr.n, 60000);
    assert_int_equal(te.n, 10000);
    assert_int_equal(tr.h, 28);
    assert_int_equal(te.w, 28);
    int hist[10] = {0};
    for (int64_t i = 0; i < te.n; i++)
        hist[te.labels[i]]++;
    for (int c = 0; c < 10; c++)
        assert_int_equal(hist[c], 1000);
    rt_dataset_free(&tr);
    rt_dataset_free(&te);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_gz),
        cmocka_unit_test(test_load_plain),
        cmocka_unit_test(test_missing),
        cmocka_unit_test(test_truncated_and_corrupt),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_resize),
        cmocka_unit_test(test_shuffle),
        cmocka_unit_test(test_loader),
        cmocka_unit_test(test_loader_resize),
        cmocka_unit_test(test_counts_before_data),
        cmocka_unit_test(test_fifo),
        cmocka_unit_test(test_idx_images),
        cmocka_unit_test(test_real_fashion_mnist),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
