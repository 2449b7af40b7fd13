/* bench.c - `netc bench`: times training steps of a network on random data. */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

double netc_bench_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

long long netc_bench_peak_rss(void) {
    struct rusage u;
    if (getrusage(RUSAGE_SELF, &u)) return -1;
#ifdef __APPLE__
    return (long long)u.ru_maxrss;
#else
    return (long long)u.ru_maxrss * 1024;
#endif
}

void netc_bench_batch(float *img, int64_t px, int32_t *lab, int64_t B, int classes) {
    uint64_t r = 1;
    for (int64_t i = 0; i < px; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        img[i] = (float)(r >> 40) / 16777216.0f;
    }
    for (int64_t i = 0; i < B; i++) lab[i] = (int32_t)(i % classes);
}

int netc_cmd_bench(const RtArgs *a) {
    if (a->compare_fuse) return netc_bench_compare_fuse(a);
    RtSource src = {a->file, NULL, 0};
    RtSession s;
    IrGraph gt, ge;
    char *text = NULL;
    Diag d;
    double t0 = netc_bench_now();
    int rc = rt_open_session(&src, a, 1, &s, &gt, &ge, &text, &d);
    double compile = netc_bench_now() - t0;
    if (!rc) {
        IrStats st;
        pass_stats(&ge, &st);
        int64_t B = s.batch;
        const IrType *ti = ir_type(&ge, ge.input);
        int64_t px = ir_numel(ti, B);
        float *img = ir_xmalloc(sizeof(float) * (size_t)px);
        int32_t *lab = ir_xmalloc(sizeof(int32_t) * (size_t)B);
        netc_bench_batch(img, px, lab, B, s.classes);
        rt_session_set_batch(&s, img, lab);
        double loss, lr = ge.train.lr;
        int64_t ok;
        for (int i = 0; i < a->warmup && !rc; i++) rc = rt_session_train_step(&s, lr, 0, (uint64_t)i, &loss, B, &ok);
        double t1 = netc_bench_now();
        for (int i = 0; i < a->steps && !rc; i++) rc = rt_session_train_step(&s, lr, 0, (uint64_t)i, &loss, B, &ok);
        double dt = (netc_bench_now() - t1) / a->steps;
        double gflop = 3.0 * (double)st.fwd_flops * (double)B / 1e9;
        /* after the timed steps: the arena, weights, gradients, scratch and
         * compiled code have all been touched by now */
        long long rss = netc_bench_peak_rss();
        int64_t sv_in = 0, sv_re = 0;
        PipelineOptions po = {IR_TRAIN, B, 4, 0, NULL, NULL, &a->fuse, &a->plan, 0, 0};
        if (!rc && a->json) rc = pass_plan_savings(&gt, &po, &s.train, &sv_in, &sv_re, &d);
        char devb[64] = "";
        if (s.be->device_bytes) snprintf(devb, sizeof devb, ",\"device_bytes\":%lld", s.be->device_bytes());
        if (!rc) {
            if (a->json)
                printf("{\"model\":\"%s\",\"target\":\"%s\",\"threads\":%d,\"batch\":%lld,\"resize\":%lld,"
                       "\"images_per_sec\":%.2f,\"gflop_per_sec\":%.2f,\"ms_per_step\":%.2f,\"compile_sec\":%.3f,"
                       "\"train_gflop_per_img\":%.4f,\"arena_bytes\":%lld,\"naive_bytes\":%lld,\"peak_rss_bytes\":%lld,"
                       "\"inplace_saved_bytes\":%lld,\"recompute_saved_bytes\":%lld,\"loss\":%.5f%s}\n",
                       a->file, s.be->name, a->threads, (long long)B, (long long)ti->d[2], (double)B / dt,
                       gflop / dt, dt * 1e3, compile, gflop / (double)B, (long long)s.train.arena_bytes,
                       (long long)s.train.naive_bytes, rss, (long long)sv_in, (long long)sv_re, loss, devb);
            else
                printf("%s on %s: batch %lld, %dx%d: %.1f images/s, %.1f GFLOP/s, %.1f ms/step, compile %.2f s, "
                       "peak RSS %.1f MiB\n",
                       a->file, s.be->name, (long long)B, (int)ti->d[2], (int)ti->d[3], (double)B / dt, gflop / dt,
                       dt * 1e3, compile, (double)rss / (1 << 20));
        }
        free(img);
        free(lab);
    }
    rt_session_close(&s);
    ir_free(&gt);
    ir_free(&ge);
    free(text);
    return rc ? 1 : 0;
}
