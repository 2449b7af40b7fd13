/* fuzz_idx.c - libFuzzer target for the IDX readers: predict's
 * rt_idx_read_images and the data set loader, on plain and gzip files.
 *
 *   cmake -DCMAKE_C_COMPILER=clang -DNETC_FUZZ=ON ... && ./fuzz_idx corpus/
 *
 * An input is: one flag byte (bit 0: the data set's files are named .gz),
 * a big-endian u32 L, then L bytes of an image file and the rest, a label
 * file.  Both readers must load or refuse with a message naming the file,
 * never crash, hang, leak or take memory out of proportion to the input
 * (the header's counts alone must not size an allocation). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[4096];

static void put(const char *name, const uint8_t *p, size_t n) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (n && fwrite(p, 1, n, f) != n) abort();
    if (fclose(f)) abort();
}

static void clear(void) {
    static const char *names[] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                  "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"};
    char path[4200];
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
}

static void remove_dir(void) {
    clear();
    rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "%s/netc_fuzz_idx_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        if (!mkdtemp(dir)) abort();
        atexit(remove_dir);
    }
    if (size < 5) return 0;
    int gz = data[0] & 1;
    size_t len = (size_t)data[1] << 24 | (size_t)data[2] << 16 | (size_t)data[3] << 8 | data[4];
    data += 5, size -= 5;
    if (len > size) len = size;
    clear();
    put(gz ? "train-images-idx3-ubyte.gz" : "train-images-idx3-ubyte", data, len);
    put(gz ? "train-labels-idx1-ubyte.gz" : "train-labels-idx1-ubyte", data + len, size - len);

    char path[4200], err[1024];
    snprintf(path, sizeof path, "%s/%s", dir, gz ? "train-images-idx3-ubyte.gz" : "train-images-idx3-ubyte");
    int64_t n;
    int h, w;
    uint8_t *px = rt_idx_read_images(path, 3, &n, &h, &w, err, sizeof err);
    if (px) {
        if (n < 1 || h < 1 || w < 1 || h > 1024 || w > 1024) abort();
        free(px);
    } else if (!strstr(err, path)) {
        abort();
    }
    RtDataset ds;
    if (rt_dataset_load(&ds, dir, 1, err, sizeof err) == 0) {
        for (int64_t i = 0; i < ds.n; i++)
            if (ds.labels[i] > 9) abort();
        rt_dataset_free(&ds);
    } else if (!strstr(err, dir)) {
        abort();
    }
    return 0;
}
