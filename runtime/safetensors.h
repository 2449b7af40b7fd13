/* Checkpoints in the safetensors format (written whole or not at all,
 * base/outfile.h).
 *
 * A file is: u64 little-endian N, N bytes of JSON header (padded with spaces
 * so that the data starts 8-byte aligned), then the tensors' raw little-endian
 * bytes, contiguous, in data_offsets order:
 *   {"__metadata__":{"k":"v"},"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}
 * Written as Python's safetensors writes it: tensors sorted by dtype (I64, F64,
 * F32, I32, U8) then by name, metadata first. */
#ifndef NETC_RUNTIME_SAFETENSORS_H
#define NETC_RUNTIME_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "base/outfile.h"

#define RT_ST_MAX_RANK 8

/* One tensor to write.  dtype: "F32", "F64", "I32", "I64" or "U8"; bytes must
 * be the shape's product times the dtype's size. */
typedef struct {
    const char *name;
    const char *dtype;
    int rank;
    int64_t shape[RT_ST_MAX_RANK];
    const void *data;
    int64_t bytes;
} RtTensorOut;

/* Writes n tensors and the metadata meta_kv = {k, v, k, v, ..., NULL} (NULL
 * for none) to path, atomically.  Returns 0, or -1 with a message in err. */
int rt_st_write(const char *path, const RtTensorOut *t, int n, const char **meta_kv, char *err,
                size_t errlen);

/* A loaded file: the parsed header and a copy of the data.  Tensors are
 * numbered 0..count-1 in header order. */
typedef struct RtSt RtSt;

/* Reads and validates path.  NULL, with a message naming path, on any
 * problem: a short file, a bad header length, JSON errors, missing or unknown
 * fields, unknown dtypes, sizes that disagree with shapes, offsets out of range,
 * overlapping, or leaving gaps. */
RtSt *rt_st_read(const char *path, char *err, size_t errlen);
/* The same checks on a whole file's bytes in memory; name is for messages. */
RtSt *rt_st_parse(const void *buf, size_t size, const char *name, char *err, size_t errlen);
void rt_st_free(RtSt *s);

int rt_st_count(const RtSt *s);
int rt_st_find(const RtSt *s, const char *name); /* index, or -1 */
const char *rt_st_name(const RtSt *s, int i);
const char *rt_st_dtype(const RtSt *s, int i);
int rt_st_rank(const RtSt *s, int i);
const int64_t *rt_st_shape(const RtSt *s, int i); /* (rank) */
const void *rt_st_data(const RtSt *s, int i);     /* 8-byte aligned if the file is */
int64_t rt_st_bytes(const RtSt *s, int i);

/* Metadata: the value of key, NULL if absent; or the i-th pair. */
const char *rt_st_meta(const RtSt *s, const char *key);
int rt_st_meta_count(const RtSt *s);
const char *rt_st_meta_key(const RtSt *s, int i);
const char *rt_st_meta_value(const RtSt *s, int i);

/* Copies tensor `name` into dst after checking that it exists with this dtype
 * and shape.  Returns 0, or -1 with a message naming the file and tensor. */
int rt_st_get(const RtSt *s, const char *name, const char *dtype, int rank, const int64_t *shape,
              void *dst, char *err, size_t errlen);

#endif
