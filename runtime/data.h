/* Fashion-MNIST: IDX loading, bilinear resize, shuffled batches made on a
 * background thread. */
#ifndef NETC_RUNTIME_DATA_H
#define NETC_RUNTIME_DATA_H

#include <stddef.h>
#include <stdint.h>

#define RT_DATA_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"

/* One split of an IDX data set, as stored: uint8 pixels and labels. */
typedef struct {
    int64_t n;       /* images */
    int h, w;        /* 28, 28 for Fashion-MNIST */
    uint8_t *pixels; /* (n, h, w) */
    uint8_t *labels; /* (n), each 0..9 */
} RtDataset;

/* Loads the training split (train=1: train-images-idx3-ubyte, ...) or the test
 * split (train=0: t10k-...) from dir (NULL: RT_DATA_DEFAULT_DIR).  Each file is
 * read as NAME.gz through zlib, or as NAME when NAME.gz does not exist.
 * Returns 0, or -1 with a message naming the file in err; ds is then empty. */
int rt_dataset_load(RtDataset *ds, const char *dir, int train, char *err, size_t errlen);
void rt_dataset_free(RtDataset *ds);

/* Reads an IDX image file (gzip or plain) named by the user: checks its
 * header (magic 0x803, sides 1..1024, at most 8 GiB in all, and for a plain
 * file that it holds that much), keeps the first `keep` images (all when
 * keep < 0 or more than there are) and reads through the rest, so that a file
 * cut short or with data after the last image is an error.  Returns the
 * pixels (keep, h, w) with the file's count in *n, or NULL with a message
 * naming path in err. */
uint8_t *rt_idx_read_images(const char *path, int64_t keep, int64_t *n, int *h, int *w, char *err, size_t errlen);

/* Bilinear resize of one float image (h, w) -> (oh, ow) exactly as PyTorch's
 * F.interpolate(mode='bilinear', align_corners=False), no antialias, computed
 * in float as its CPU kernel does. */
void rt_resize_bilinear(const float *src, int h, int w, float *dst, int oh, int ow);

/* The permutation of 0..n-1 used for epoch `epoch` of a loader seeded with
 * `seed`: Fisher-Yates driven by splitmix64, identical on every run. */
void rt_shuffle_order(int64_t *order, int64_t n, uint64_t seed, int epoch);

/* Batches over a data set: images (batch, 1, resize, resize) as floats in
 * [0,1] (pixel/255, then resized), labels (batch) as int32.  Batches are made
 * by a background thread a few ahead of the consumer.  The loader borrows ds,
 * which must outlive it.  Not safe to call from several threads at once. */
typedef struct RtLoader RtLoader;

/* shuffle: reorder the images every epoch (rt_shuffle_order); drop_last: leave
 * out a last partial batch.  NULL on bad arguments or out of memory. */
RtLoader *rt_loader_new(const RtDataset *ds, int batch, int resize, int shuffle,
                        int drop_last, uint64_t seed);
/* One rank's part of each batch, for data-parallel training: the batches
 * are those of a loader of batch * parts images (the same order on every
 * rank), and this loader hands out images [part * batch, (part + 1) * batch)
 * of each (a last partial batch may leave a part with none: count 0). */
RtLoader *rt_loader_new_part(const RtDataset *ds, int batch, int resize, int shuffle,
                             int drop_last, uint64_t seed, int part, int parts);

/* Starts epoch `epoch` (any integer; it picks the order) at batch 0, or at
 * batch first_batch to resume mid-epoch.  Cancels whatever epoch was running.
 * Returns 0, or -1 if first_batch is out of range 0..rt_loader_batches(). */
int rt_loader_begin_epoch(RtLoader *l, int epoch);
int rt_loader_begin_epoch_at(RtLoader *l, int epoch, int64_t first_batch);

/* Copies the next batch into images (batch*resize*resize floats) and labels
 * (batch).  Returns the number of valid images (batch, or fewer for a last
 * partial batch, whose unused tail is zero-filled), 0 at the end of the epoch,
 * -1 if no epoch was begun.  Blocks while the batch is being made. */
int rt_loader_next(RtLoader *l, float *images, int32_t *labels);

/* Batches per epoch: n/batch with drop_last, else ceil(n/batch). */
int64_t rt_loader_batches(const RtLoader *l);
/* (rt_loader_next returns 0 both at the end of an epoch and for an empty
 * part: a part's consumer counts rt_loader_batches() calls.) */

/* Stops the thread (also mid-epoch) and frees everything.  NULL is fine. */
void rt_loader_free(RtLoader *l);

#endif
