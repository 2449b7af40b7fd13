/* testutil.c - shared helpers for the cmocka tests. */
#include "testutil.h"
#include <dlfcn.h>
#include <unistd.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tu_build(const char *path, IrMode mode, IrGraph *g, char **src) {
    Diag d;
    diag_init(&d, path, NULL, 0, stderr);
    FeOptions o = {mode, NULL, 0, 0, 0};
    ir_init(g);
    if (fe_build_file(path, &o, g, src, &d)) return -1;
    diag_init(&d, path, g->src, *src ? strlen(*src) : 0, stderr);
    return pass_infer_shapes(g, &d);
}

const PlanOptions *tu_plan;
int tu_tf32;

int tu_program(const char *path, IrMode mode, int64_t batch, int resize, int elem_bytes, Program *p) {
    IrGraph g;
    char *src = NULL;
    if (tu_build(path, mode, &g, &src)) {
        free(src);
        ir_free(&g);
        return -1;
    }
    if (resize > 0)
        for (int i = 0; i < g.nnodes; i++)
            if (g.nodes[i].op == IR_OP_INPUT) g.nodes[i].attr.input.h = g.nodes[i].attr.input.w = resize;
    Diag d;
    diag_init(&d, path, src, src ? strlen(src) : 0, stderr);
    PipelineOptions po = {mode, batch, elem_bytes, 1, NULL, NULL, NULL, tu_plan, 0, 0};
    int rc = pass_pipeline(&g, &po, p, &d);
    ir_free(&g);
    free(src);
    return rc;
}

double tu_rand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / (double)(1ull << 53) * 2.0 - 1.0;
}

void **tu_slots(const Program *p, uint64_t seed) {
    uint64_t rs = seed;
    void **s = calloc((size_t)p->nslots, sizeof(void *));
    for (int i = 0; i < p->nslots; i++) {
        const Slot *sl = &p->slots[i];
        int eb = sl->kind == SLOT_LABELS ? 4 : p->elem_bytes;
        int64_t n = sl->bytes / eb;
        s[i] = aligned_alloc(64, ((size_t)sl->bytes + 63) / 64 * 64 + 64);
        for (int64_t j = 0; j < n; j++) {
            double r = tu_rand(&rs);
            float f;
            if (sl->kind == SLOT_LABELS) {
                ((int32_t *)s[i])[j] = (int32_t)((r + 1) * 5) % 10;
                continue;
            }
            if (sl->kind == SLOT_STATE && strstr(sl->name, "var")) f = (float)(1.5 + r);
            else if (sl->kind == SLOT_PARAM) f = (float)(0.2 * r);
            else f = (float)r;
            if (eb == 8) ((double *)s[i])[j] = f;
            else ((float *)s[i])[j] = f;
        }
    }
    return s;
}

void tu_slots_free(const Program *p, void **s) {
    for (int i = 0; i < p->nslots; i++) free(s[i]);
    free(s);
}

int tu_step(const Backend *be, const char *cpu, const Program *p, void **s, ThreadPool *pool) {
    void *arena = aligned_alloc(64, (size_t)(p->arena_bytes + 64));
    Diag d;
    diag_init(&d, be->name, NULL, 0, stderr);
    BackendOptions o = {2, 3, 0, cpu, 0, tu_tf32};
    void *st;
    int rc = be->compile(p, &o, &st, &d);
    if (rc == 0) {
        RunCtx c = {arena, s, 0.05, 1, 0, pool, 0};
        rc = be->run(st, p, &c);
        be->free(st);
    }
    free(arena);
    return rc;
}

static double tu_at(const Program *p, void **s, int i, int64_t j) {
    return p->elem_bytes == 8 ? ((double *)s[i])[j] : ((float *)s[i])[j];
}

int tu_judge(const Program *p, const Program *p64, void **r32, void **r64, void **got, int i, double *err,
             double *ref, double *scale, double *ratio) {
    int64_t n = p->slots[i].bytes / 4;
    double sc = 1e-2, e_ref = 0, e_got = 0;
    for (int64_t j = 0; j < n; j++) {
        double x = tu_at(p64, r64, i, j);
        sc = fmax(sc, fabs(x));
        e_ref = fmax(e_ref, fabs(tu_at(p, r32, i, j) - x));
        double e = fabs(tu_at(p, got, i, j) - x);
        if (!(e <= e_got)) e_got = e;   /* NaN sticks */
    }
    double base = fmax(e_ref, TU_FLOOR * sc);
    if (err) *err = e_got;
    if (ref) *ref = e_ref;
    if (scale) *scale = sc;
    if (ratio) *ratio = e_got / base;
    return e_got <= TU_FACTOR * base;
}

char *tu_plant(const char *text, const char *from, const char *to) {
    const char *at = strstr(text, from);
    if (!at) return NULL;
    size_t a = (size_t)(at - text), lf = strlen(from), lt = strlen(to), n = strlen(text);
    char *r = malloc(n - lf + lt + 1);
    memcpy(r, text, a);
    memcpy(r + a, to, lt);
    memcpy(r + a + lt, at + lf, n - a - lf + 1);
    return r;
}
