/* safetensors checkpoints: round trip, Python's layout, every kind of bad
 * file, atomic replacement. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/checkpoint.h"
#include "runtime/safetensors.h"

static char tmpdir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/netc_test_ckpt_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    char path[600];
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", tmpdir, e->d_name);
        if (unlink(path) != 0)
            rmdir(path);
    }
    if (d)
        closedir(d);
    rmdir(tmpdir);
    return 0;
}

static void tpath(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", tmpdir, name);
}

static char *slurp(const char *path, long *size)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)*size + 1);
    assert_int_equal(fread(p, 1, (size_t)*size, f), (size_t)*size);
    p[*size] = 0;
    fclose(f);
    return p;
}

static void spit(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n)
        assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* Writes a file with this header text (length hlen, or its strlen if
 * hlen < 0) followed by ndata bytes 0, 1, 2, ... */
static void write_raw(const char *path, const char *header, long long hlen, size_t ndata)
{
    size_t hl = strlen(header);
    uint64_t n = hlen < 0 ? hl : (uint64_t)hlen;
    size_t total = 8 + hl + ndata;
    uint8_t *buf = malloc(total);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(n >> (8 * i));
    memcpy(buf + 8, header, hl);
    for (size_t i = 0; i < ndata; i++)
        buf[8 + hl + i] = (uint8_t)i;
    spit(path, buf, total);
    free(buf);
}

/* Reading must fail with a message naming the file and holding want. */
static void expect_bad(const char *path, const char *want)
{
    char err[512] = "";
    RtSt *s = rt_st_read(path, err, sizeof err);
    if (s) {
        rt_st_free(s);
        fail_msg("%s: read succeeded, expected \"%s\"", path, want);
    }
    if (!strstr(err, path) || !strstr(err, want))
        fail_msg("message \"%s\" lacks the path or \"%s\"", err, want);
}

static float w1[2 * 1 * 3 * 3];
static float rm[2];
static int64_t step = 123456789012345LL;
static uint8_t u8[5] = {1, 2, 3, 250, 255};
static int32_t i32[3] = {-1, 0, 7};
static double f64[1] = {0.1};

static int make_tensors(RtTensorOut *t)
{
    for (int i = 0; i < 18; i++)
        w1[i] = (float)i * 0.5f - 3.0f;
    rm[0] = 0.25f;
    rm[1] = -1e30f;
    int n = 0;
    t[n++] = (RtTensorOut){"conv1.weight", "F32", 4, {2, 1, 3, 3}, w1, sizeof w1};
    t[n++] = (RtTensorOut){"u8", "U8", 1, {5}, u8, sizeof u8};
    t[n++] = (RtTensorOut){"bn1.running_mean", "F32", 1, {2}, rm, sizeof rm};
    t[n++] = (RtTensorOut){"step", "I64", 0, {0}, &step, sizeof step};
    t[n++] = (RtTensorOut){"i32", "I32", 1, {3}, i32, sizeof i32};
    t[n++] = (RtTensorOut){"lr \"x\"\n", "F64", 1, {1}, f64, sizeof f64};
    t[n++] = (RtTensorOut){"empty", "F32", 2, {0, 4}, NULL, 0};
    return n;
}

static void test_roundtrip(void **state)
{
    (void)state;
    RtTensorOut t[8];
    int n = make_tensors(t);
    const char *meta[] = {"epoch", "3", "note", "caf\xc3\xa9 \"q\" \\ \t", NULL};
    char path[512], err[512] = "";
    tpath(path, sizeof path, "a.safetensors");
    if (rt_st_write(path, t, n, meta, err, sizeof err) != 0)
        fail_msg("%s", err);
    RtSt *s = rt_st_read(path, err, sizeof err);
    if (!s)
        fail_msg("%s", err);
    assert_int_equal(rt_st_count(s), n);
    for (int i = 0; i < n; i++) {
        int k = rt_st_find(s, t[i].name);
        assert_true(k >= 0);
        assert_string_equal(rt_st_name(s, k), t[i].name);
        assert_string_equal(rt_st_dtype(s, k), t[i].dtype);
        assert_int_equal(rt_st_rank(s, k), t[i].rank);
        for (int r = 0; r < t[i].rank; r++)
            assert_int_equal(rt_st_shape(s, k)[r], t[i].shape[r]);
        assert_int_equal(rt_st_bytes(s, k), t[i].bytes);
        if (t[i].bytes)
            assert_memory_equal(rt_st_data(s, k), t[i].data, (size_t)t[i].bytes);
        if (strcmp(t[i].dtype, "U8") != 0)
            assert_int_equal((uintptr_t)rt_st_data(s, k) % 4, 0);
    }
    assert_int_equal(rt_st_find(s, "nope"), -1);
    assert_string_equal(rt_st_meta(s, "epoch"), "3");
    assert_string_equal(rt_st_meta(s, "note"), meta[3]);
    assert_null(rt_st_meta(s, "missing"));
    assert_int_equal(rt_st_meta_count(s), 2);
    assert_string_equal(rt_st_meta_key(s, 1), "note");

    float got[18];
    assert_int_equal(rt_st_get(s, "conv1.weight", "F32", 4, (int64_t[]){2, 1, 3, 3}, got, err,
                               sizeof err), 0);
    assert_memory_equal(got, w1, sizeof w1);
    assert_int_equal(rt_st_get(s, "conv1.weight", "F32", 4, (int64_t[]){2, 1, 3, 4}, got, err,
                               sizeof err), -1);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "[2, 1, 3, 3]"));
    assert_int_equal(rt_st_get(s, "conv2.weight", "F32", 1, (int64_t[]){1}, got, err, sizeof err), -1);
    assert_non_null(strstr(err, "conv2.weight"));
    rt_st_free(s);

    /* No tensors, no metadata. */
    if (rt_st_write(path, NULL, 0, NULL, err, sizeof err) != 0)
        fail_msg("%s", err);
    s = rt_st_read(path, err, sizeof err);
    assert_non_null(s);
    assert_int_equal(rt_st_count(s), 0);
    assert_int_equal(rt_st_meta_count(s), 0);
    rt_st_free(s);
}

/* The bytes Python's safetensors.torch.save_file writes for the same input:
 * metadata first, tensors by dtype (I64, F64, F32, I32, U8) then name, the
 * header padded with spaces to a multiple of 8. */
static void test_python_layout(void **state)
{
    (void)state;
    float a[2] = {1, 2}, b[1] = {3};
    uint8_t z[3] = {4, 5, 6};
    int64_t st = 9;
    RtTensorOut t[] = {
        {"z", "U8", 1, {3}, z, 3},
        {"b", "F32", 1, {1}, b, 4},
        {"a", "F32", 2, {1, 2}, a, 8},
        {"step", "I64", 0, {0}, &st, 8},
    };
    const char *meta[] = {"epoch", "3", NULL};
    char path[512], err[512];
    tpath(path, sizeof path, "py.safetensors");
    assert_int_equal(rt_st_write(path, t, 4, meta, err, sizeof err), 0);
    long size;
    char *p = slurp(path, &size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | (uint8_t)p[i];
    const char *want = "{\"__metadata__\":{\"epoch\":\"3\"},"
                       "\"step\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
                       "\"a\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[8,16]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[16,20]},"
                       "\"z\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[20,23]}}";
    size_t wl = strlen(want);
    assert_int_equal(n % 8, 0);
    assert_true(n >= wl && n < wl + 8);
    assert_memory_equal(p + 8, want, wl);
    for (size_t i = wl; i < n; i++)
        assert_int_equal(p[8 + i], ' ');
    assert_int_equal(size, (long)(8 + n + 23));
    const char *data = p + 8 + n;
    assert_memory_equal(data, &st, 8);
    assert_memory_equal(data + 8, a, 8);
    assert_memory_equal(data + 16, b, 4);
    assert_memory_equal(data + 20, z, 3);
    free(p);
}

static void test_corrupt(void **state)
{
    (void)state;
    char path[512], err[512];
    tpath(path, sizeof path, "bad.safetensors");
    const char *ok1 = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";

    spit(path, "\x05\0\0\0\0", 5);
    expect_bad(path, "too short");
    spit(path, "", 0);
    expect_bad(path, "too short");
    write_raw(path, ok1, 1000, 4);
    expect_bad(path, "beyond the end of the file");
    write_raw(path, ok1, (long long)1 << 62, 4);
    expect_bad(path, "beyond the end of the file");

    write_raw(path, ok1, -1, 4); /* the base case reads */
    RtSt *s = rt_st_read(path, err, sizeof err);
    if (!s)
        fail_msg("%s", err);
    rt_st_free(s);

    static const struct {
        const char *header;
        size_t ndata;
        const char *want;
    } cases[] = {
        {"", 0, "bad header JSON"},
        {"[]", 0, "expected '{'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, "bad header JSON"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}", 4, "bad header JSON"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1] \"data_offsets\":[0,4]}}", 4, "expected ','"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", 4, "trailing"},
        {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "lacks \"shape\""},
        {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "lacks \"dtype\""},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "lacks \"data_offsets\""},
        {"{\"a\":{\"dtype\":\"F17\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4,
         "unknown field"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "integer"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "integer"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", 4, "leading zero"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}", 4,
         "too large"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "two values"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4, "too many"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
         "too many"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}", 4, "beyond the 4 bytes"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, "end before"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "need 8 bytes"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}", 8, "overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12, "gap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "given twice"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 6, "after the last"},
        {"{\"__metadata__\":{\"k\":3},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
         4, "must be strings"},
        {"{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}}", 0, "given twice"},
        {"{\"a\\q\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "bad escape"},
        {"{\"a\\ud800\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "surrogate"},
        {"{\"a\\u00\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "escape"},
        {"{\"a\\u0000\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "u0000"},
        {"{\"a\n\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "control"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} \"b", 4, "trailing"},
        {"{\"abc", 4, "unterminated"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_raw(path, cases[i].header, -1, cases[i].ndata);
        expect_bad(path, cases[i].want);
    }

    /* Escapes decode; data may sit behind an unpadded header. */
    write_raw(path, "{\"a\\u00e9\\ud83d\\ude00\\n\\/\":{\"dtype\":\"U8\",\"shape\":[2],"
              "\"data_offsets\":[0,2]}, \"__metadata__\" : { } }", -1, 2);
    s = rt_st_read(path, err, sizeof err);
    if (!s)
        fail_msg("%s", err);
    assert_string_equal(rt_st_name(s, 0), "a\xc3\xa9\xf0\x9f\x98\x80\n/");
    assert_memory_equal(rt_st_data(s, 0), "\0\1", 2);
    rt_st_free(s);

    char missing[512];
    tpath(missing, sizeof missing, "missing.safetensors");
    expect_bad(missing, "cannot open");
}

static void test_write_errors(void **state)
{
    (void)state;
    char path[512], err[512];
    float x[2] = {0};
    tpath(path, sizeof path, "w.safetensors");
    RtTensorOut bad_bytes = {"x", "F32", 1, {3}, x, 8};
    assert_int_equal(rt_st_write(path, &bad_bytes, 1, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, path));
    RtTensorOut bad_dtype = {"x", "F16", 1, {2}, x, 4};
    assert_int_equal(rt_st_write(path, &bad_dtype, 1, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "F16"));
    RtTensorOut dup[2] = {{"x", "F32", 1, {1}, x, 4}, {"x", "F32", 1, {1}, x, 4}};
    assert_int_equal(rt_st_write(path, dup, 2, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "twice"));
    assert_int_equal(access(path, F_OK), -1);
}

/* No file but path itself is left in the directory. */
static void check_no_temp_files(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp."))
            fail_msg("temp file %s left behind", e->d_name);
    closedir(d);
}

static void check_content(const char *path, float want)
{
    char err[512];
    RtSt *s = rt_st_read(path, err, sizeof err);
    if (!s)
        fail_msg("%s", err);
    float got;
    assert_int_equal(rt_st_get(s, "v", "F32", 1, (int64_t[]){1}, &got, err, sizeof err), 0);
    assert_float_equal(got, want, 0);
    rt_st_free(s);
}

static void test_atomic(void **state)
{
    (void)state;
    char path[512], tmp[600], err[512];
    tpath(path, sizeof path, "atomic.safetensors");
    float v1 = 1, v2 = 2;
    RtTensorOut t1 = {"v", "F32", 1, {1}, &v1, 4}, t2 = {"v", "F32", 1, {1}, &v2, 4};
    assert_int_equal(rt_st_write(path, &t1, 1, NULL, err, sizeof err), 0);
    check_content(path, 1);

    /* The temp file cannot be made: it is a directory. */
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    assert_int_equal(mkdir(tmp, 0755), 0);
    assert_int_equal(rt_st_write(path, &t2, 1, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, path));
    assert_int_equal(rmdir(tmp), 0);
    check_content(path, 1);

    /* An unwritable directory (root writes anyway: skip that part). */
    if (geteuid() != 0) {
        assert_int_equal(chmod(tmpdir, 0555), 0);
        int rc = rt_st_write(path, &t2, 1, NULL, err, sizeof err);
        chmod(tmpdir, 0755);
        assert_int_equal(rc, -1);
        assert_non_null(strstr(err, path));
        check_content(path, 1);
    }
    assert_int_equal(rt_st_write("/nonexistent/dir/x.safetensors", &t2, 1, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/dir/x.safetensors"));

    /* The disk fills mid-write: RLIMIT_FSIZE makes write() fail with EFBIG. */
    enum { BIG = 1 << 20 };
    float *big = calloc(BIG, sizeof(float));
    RtTensorOut tb[2] = {{"v", "F32", 1, {1}, &v2, 4}, {"w", "F32", 1, {BIG}, big, BIG * 4}};
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 65536;
    void (*oldsig)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = rt_st_write(path, tb, 2, NULL, err, sizeof err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, oldsig);
    free(big);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err, path));
    check_content(path, 1);
    check_no_temp_files();

    assert_int_equal(rt_st_write(path, &t2, 1, NULL, err, sizeof err), 0);
    check_content(path, 2);
    check_no_temp_files();
}

/* Every proper prefix of a valid file is rejected, and flipping any byte
 * never crashes. */
static void test_prefixes_and_flips(void **state)
{
    (void)state;
    RtTensorOut t[8];
    int n = make_tensors(t);
    const char *meta[] = {"epoch", "3", NULL};
    char path[512], cut[512], err[512];
    tpath(path, sizeof path, "full.safetensors");
    tpath(cut, sizeof cut, "cut.safetensors");
    assert_int_equal(rt_st_write(path, t, n, meta, err, sizeof err), 0);
    long size;
    char *p = slurp(path, &size);
    for (long len = 0; len < size; len++) {
        spit(cut, p, (size_t)len);
        err[0] = 0;
        RtSt *s = rt_st_read(cut, err, sizeof err);
        if (s) {
            rt_st_free(s);
            fail_msg("prefix of %ld of %ld bytes was accepted", len, size);
        }
        assert_non_null(strstr(err, cut));
    }
    for (long i = 0; i < size; i++) {
        p[i] ^= 0x5a;
        spit(cut, p, (size_t)size);
        RtSt *s = rt_st_read(cut, err, sizeof err);
        rt_st_free(s);
        p[i] ^= 0x5a;
    }
    free(p);
}


/* A checkpoint's metadata {"epoch":E,"step":S,"seed":D}: NULL leaves a key
 * out; misspelt gives the epoch under a wrong key. */
static RtSt *meta_ckpt(const char *path, const char *e, const char *st, const char *sd, int misspelt)
{
    const char *kv[8];
    int n = 0;
    if (e)
        kv[n++] = misspelt ? "epohc" : "epoch", kv[n++] = e;
    if (st)
        kv[n++] = "step", kv[n++] = st;
    if (sd)
        kv[n++] = "seed", kv[n++] = sd;
    kv[n] = NULL;
    float v = 1;
    RtTensorOut t = {"v", "F32", 1, {1}, &v, 4};
    char err[512];
    if (rt_st_write(path, &t, 1, n ? kv : NULL, err, sizeof err) != 0)
        fail_msg("%s", err);
    RtSt *s = rt_st_read(path, err, sizeof err);
    if (!s)
        fail_msg("%s", err);
    return s;
}

/* Every field of the training position must be a plain in-range integer;
 * a bad one is named with the file. */
static void test_position(void **state)
{
    (void)state;
    char path[512], err[512];
    tpath(path, sizeof path, "pos.safetensors");
    int epoch = -7;
    uint64_t pstep = 1, seed = 1;
    RtSt *s = meta_ckpt(path, "100000", "18446744073709551615", "0", 0);
    assert_int_equal(rt_checkpoint_position(s, path, &epoch, &pstep, &seed, err, sizeof err), 0);
    assert_int_equal(epoch, 100000);
    assert_true(pstep == UINT64_MAX);
    assert_true(seed == 0);
    rt_st_free(s);

    static const struct {
        const char *epoch, *step, *seed;
        int misspelt;
        const char *field;
    } bad[] = {
        {"-1", "4", "0", 0, "\"epoch\""},
        {"-100", "4", "0", 0, "\"epoch\""},
        {"99999999999", "4", "0", 0, "\"epoch\""},
        {"2147483647", "4", "0", 0, "\"epoch\""},
        {"100001", "4", "0", 0, "\"epoch\""},
        {"abc", "4", "0", 0, "\"epoch\""},
        {"", "4", "0", 0, "\"epoch\""},
        {" 1", "4", "0", 0, "\"epoch\""},
        {"+1", "4", "0", 0, "\"epoch\""},
        {"1", "4", "0", 1, "\"epoch\" is missing"},
        {NULL, "4", "0", 0, "\"epoch\" is missing"},
        {"1", "-1", "0", 0, "\"step\""},
        {"1", "abc", "0", 0, "\"step\""},
        {"1", "18446744073709551616", "0", 0, "\"step\""},
        {"1", "99999999999999999999999", "0", 0, "\"step\""},
        {"1", NULL, "0", 0, "\"step\" is missing"},
        {"1", "4", "-1", 0, "\"seed\""},
        {"1", "4", "abc", 0, "\"seed\""},
        {"1", "4", "18446744073709551616", 0, "\"seed\""},
        {"1", "4", "1e3", 0, "\"seed\""},
        {"1", "4", NULL, 0, "\"seed\" is missing"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        s = meta_ckpt(path, bad[i].epoch, bad[i].step, bad[i].seed, bad[i].misspelt);
        err[0] = 0;
        epoch = -7;
        int rc = rt_checkpoint_position(s, path, &epoch, &pstep, &seed, err, sizeof err);
        rt_st_free(s);
        if (rc != -1)
            fail_msg("case %zu (epoch \"%s\" step \"%s\" seed \"%s\") accepted: epoch %d", i,
                     bad[i].epoch ? bad[i].epoch : "-", bad[i].step ? bad[i].step : "-",
                     bad[i].seed ? bad[i].seed : "-", epoch);
        if (!strstr(err, path) || !strstr(err, bad[i].field))
            fail_msg("case %zu: message \"%s\" lacks the path or %s", i, err, bad[i].field);
    }
    /* Fields not asked for are not read: eval loads weights of any file. */
    s = meta_ckpt(path, NULL, NULL, NULL, 0);
    assert_int_equal(rt_checkpoint_position(s, path, NULL, NULL, NULL, err, sizeof err), 0);
    rt_st_free(s);
}

static void test_nonfinite(void **state)
{
    (void)state;
    float x[5] = {0, -1e38f, 1e-45f, 3, 4};
    assert_int_equal(rt_first_nonfinite(x, 5), -1);
    x[3] = NAN;
    assert_int_equal(rt_first_nonfinite(x, 5), 3);
    x[1] = -INFINITY;
    assert_int_equal(rt_first_nonfinite(x, 5), 1);
    x[1] = INFINITY;
    assert_int_equal(rt_first_nonfinite(x, 2), 1);
    assert_int_equal(rt_first_nonfinite(x, 1), -1);
}

/* A FIFO nobody writes to is refused at once, not waited on. */
static void test_fifo(void **state)
{
    (void)state;
    char path[512], err[512] = "";
    tpath(path, sizeof path, "fifo.safetensors");
    assert_int_equal(mkfifo(path, 0644), 0);
    alarm(10); /* a hang fails the test */
    assert_null(rt_st_read(path, err, sizeof err));
    alarm(0);
    if (!strstr(err, path) || !strstr(err, "FIFO"))
        fail_msg("message \"%s\" lacks the path or FIFO", err);
    assert_int_equal(rt_checkpoint_claim(path, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a regular file"));
    unlink(path);
    assert_null(rt_st_read(tmpdir, err, sizeof err));
    assert_non_null(strstr(err, "is a directory"));
}

/* A pid that no process has: a child's, after it is reaped. */
static long dead_pid(void)
{
    pid_t p = fork();
    assert_true(p >= 0);
    if (p == 0)
        _exit(0);
    assert_int_equal(waitpid(p, NULL, 0), p);
    return (long)p;
}

/* Temp files of killed writers go on the next write; a live one stays. */
static void test_stale_temps(void **state)
{
    (void)state;
    char path[512], dead[600], live[600], other[600], err[512];
    tpath(path, sizeof path, "stale.safetensors");
    snprintf(dead, sizeof dead, "%s.tmp.%ld", path, dead_pid());
    snprintf(live, sizeof live, "%s.tmp.%ld", path, (long)getppid());
    tpath(other, sizeof other, "stale.safetensors.tmp.x1");
    spit(dead, "x", 1);
    spit(live, "x", 1);
    spit(other, "x", 1);
    float v = 1;
    RtTensorOut t = {"v", "F32", 1, {1}, &v, 4};
    assert_int_equal(rt_st_write(path, &t, 1, NULL, err, sizeof err), 0);
    assert_int_equal(access(dead, F_OK), -1);
    assert_int_equal(access(live, F_OK), 0);
    assert_int_equal(access(other, F_OK), 0);
    unlink(live);
    unlink(other);
    check_content(path, 1);
}

/* A training claims its checkpoint before it starts: a second claim, an
 * unwritable place or a directory are refused with the path named. */
static void test_claim(void **state)
{
    (void)state;
    char path[512], lock[600], err[512] = "";
    tpath(path, sizeof path, "claimed.safetensors");
    snprintf(lock, sizeof lock, "%s.lock", path);
    int fd = rt_checkpoint_claim(path, err, sizeof err);
    if (fd < 0)
        fail_msg("%s", err);
    int fd2 = rt_checkpoint_claim(path, err, sizeof err);
    assert_int_equal(fd2, -1);
    if (!strstr(err, path) || !strstr(err, "in use by another training"))
        fail_msg("message \"%s\"", err);
    char pid[32];
    snprintf(pid, sizeof pid, "process %ld", (long)getpid());
    assert_non_null(strstr(err, pid));
    rt_checkpoint_release(fd);
    fd = rt_checkpoint_claim(path, err, sizeof err);
    assert_true(fd >= 0);
    rt_checkpoint_release(fd);
    check_no_temp_files();
    unlink(lock);

    assert_int_equal(rt_checkpoint_claim("/nonexistent/dir/c.st", err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/dir/c.st"));
    assert_int_equal(rt_checkpoint_claim(tmpdir, err, sizeof err), -1);
    assert_non_null(strstr(err, "is a directory"));
    /* a directory where the temp file would go */
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    assert_int_equal(mkdir(tmp, 0755), 0);
    assert_int_equal(rt_checkpoint_claim(path, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot be written"));
    rmdir(tmp);
    unlink(lock);
}

/* rt_st_parse on memory agrees with rt_st_read on the file. */
static void test_parse_memory(void **state)
{
    (void)state;
    RtTensorOut t[8];
    int n = make_tensors(t);
    const char *meta[] = {"epoch", "3", NULL};
    char path[512], err[512];
    tpath(path, sizeof path, "mem.safetensors");
    assert_int_equal(rt_st_write(path, t, n, meta, err, sizeof err), 0);
    long size;
    char *p = slurp(path, &size);
    RtSt *s = rt_st_parse(p, (size_t)size, "mem", err, sizeof err);
    if (!s)
        fail_msg("%s", err);
    assert_int_equal(rt_st_count(s), n);
    assert_string_equal(rt_st_meta(s, "epoch"), "3");
    rt_st_free(s);
    for (long len = 0; len < size; len += 7) {
        err[0] = 0;
        assert_null(rt_st_parse(p, (size_t)len, "mem", err, sizeof err));
        assert_non_null(strstr(err, "mem"));
    }
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_python_layout),
        cmocka_unit_test(test_corrupt),
        cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_atomic),
        cmocka_unit_test(test_prefixes_and_flips),
        cmocka_unit_test(test_position),
        cmocka_unit_test(test_nonfinite),
        cmocka_unit_test(test_fifo),
        cmocka_unit_test(test_stale_temps),
        cmocka_unit_test(test_claim),
        cmocka_unit_test(test_parse_memory),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
