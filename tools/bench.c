/* bench.c - `netc bench`: times training steps of a network on random data. */
#include "bench.h"
#include "runtime/dist.h"

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
    /* under mpirun: every rank times its part of the batch, rank 0 prints */
    RtArgs a1 = *a;
    int rc = rt_open_train_session(&src, &a1, &s, &gt, &ge, &text, &d);
    a = &a1;
    int ranks = s.dist ? rt_dist_size() : 1, lead = rt_dist_rank() == 0;
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
        double t1 = netc_bench_now(), ar0 = s.dist_sec;
        for (int i = 0; i < a->steps && !rc; i++) rc = rt_session_train_step(&s, lr, 0, (uint64_t)i, &loss, B, &ok);
        double dt = (netc_bench_now() - t1) / a->steps, ar = (s.dist_sec - ar0) / a->steps;
        double gflop = 3.0 * (double)st.fwd_flops * (double)B * ranks / 1e9;
        B *= ranks; /* images per step, over the ranks */
        /* after the timed steps: the arena, weights, gradients, scratch and
         * compiled code have all been touched by now */
        long long rss = netc_bench_peak_rss();
        int64_t sv_in = 0, sv_re = 0;
        PipelineOptions po = {IR_TRAIN, s.batch, 4, 0, NULL, NULL, &a->fuse, &a->plan, s.dist, s.dist && a->sync_bn};
        if (!rc && a->json) rc = pass_plan_savings(&gt, &po, &s.train, &sv_in, &sv_re, &d);
        char devb[64] = "";
        if (s.be->device_bytes) snprintf(devb, sizeof devb, ",\"device_bytes\":%lld", s.be->device_bytes());
        char dist[160] = "";
        if (s.dist)
            snprintf(dist, sizeof dist, a->json ? ",\"ranks\":%d,\"allreduce_ms_per_step\":%.3f,\"allreduce_bytes\":%lld"
                                                : ", %d ranks, allreduce %.1f ms/step of %lld bytes",
                     ranks, ar * 1e3, (long long)(s.dist_n * (int64_t)sizeof(float)));
        if (s.dist)
            snprintf(dist + strlen(dist), sizeof dist - strlen(dist), a->json ? ",\"allreduce_buckets\":%d"
                     : " in %d bucket%s (the wait after the backward pass)", s.nbuckets, s.nbuckets == 1 || a->json ? "" : "s");
        if (!rc && lead) {
            if (a->json)
                printf("{\"model\":\"%s\",\"target\":\"%s\",\"precision\":\"%s\",\"threads\":%d,\"batch\":%lld,"
                       "\"resize\":%lld,\"images_per_sec\":%.2f,\"gflop_per_sec\":%.2f,\"ms_per_step\":%.2f,\"compile_sec\":%.3f,"
                       "\"train_gflop_per_img\":%.4f,\"arena_bytes\":%lld,\"naive_bytes\":%lld,\"peak_rss_bytes\":%lld,"
                       "\"inplace_saved_bytes\":%lld,\"recompute_saved_bytes\":%lld,\"loss\":%.5f%s%s}\n",
                       a->file, s.be->name, a->tf32 ? "tf32" : "fp32", a->threads, (long long)B, (long long)ti->d[2], (double)B / dt,
                       gflop / dt, dt * 1e3, compile, gflop / (double)B, (long long)s.train.arena_bytes,
                       (long long)s.train.naive_bytes, rss, (long long)sv_in, (long long)sv_re, loss, devb, dist);
            else
                printf("%s on %s%s: batch %lld, %dx%d: %.1f images/s, %.1f GFLOP/s, %.1f ms/step, compile %.2f s, "
                       "peak RSS %.1f MiB%s\n",
                       a->file, s.be->name, a->tf32 ? " (tf32)" : "", (long long)B, (int)ti->d[2], (int)ti->d[3], (double)B / dt, gflop / dt,
                       dt * 1e3, compile, (double)rss / (1 << 20), dist);
        }
        free(img);
        free(lab);
    }
    rt_session_close(&s);
    ir_free(&gt);
    ir_free(&ge);
    free(text);
    if (!rc) rt_dist_finish();
    return rc ? 1 : 0;
}
