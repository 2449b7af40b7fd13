/* fuzz_safetensors.c - libFuzzer target for the safetensors reader and the
 * checkpoint metadata on top of it.
 *
 *   cmake -DCMAKE_C_COMPILER=clang -DNETC_FUZZ=ON ... && ./fuzz_safetensors corpus/
 *
 * Any input must be read or refused with a message, never a crash, hang or
 * leak: rt_st_parse on the bytes, then for what it accepts the training
 * position (epoch, step, seed), every tensor's accessors, rt_st_get of each
 * into a buffer of its size, and the finiteness scan of F32 data. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/checkpoint.h"
#include "runtime/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    RtSt *s = rt_st_parse(data, size, "fuzz.safetensors", err, sizeof err);
    if (!s) {
        if (!strstr(err, "fuzz.safetensors")) abort(); /* every refusal names the file */
        return 0;
    }
    int epoch;
    uint64_t step, seed;
    rt_checkpoint_position(s, "fuzz.safetensors", &epoch, &step, &seed, err, sizeof err);
    for (int i = 0; i < rt_st_meta_count(s); i++)
        if (!rt_st_meta_key(s, i) || !rt_st_meta_value(s, i)) abort();
    for (int i = 0; i < rt_st_count(s); i++) {
        const char *name = rt_st_name(s, i);
        if (rt_st_find(s, name) != i) abort();
        int64_t bytes = rt_st_bytes(s, i);
        void *buf = malloc((size_t)bytes + 1);
        if (!buf) continue;
        if (rt_st_get(s, name, rt_st_dtype(s, i), rt_st_rank(s, i), rt_st_shape(s, i), buf, err, sizeof err))
            abort(); /* its own dtype and shape always match */
        if (!strcmp(rt_st_dtype(s, i), "F32")) rt_first_nonfinite(buf, bytes / 4);
        free(buf);
    }
    rt_st_free(s);
    return 0;
}
