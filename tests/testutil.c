/* testutil.c - shared helpers for the cmocka tests. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tu_build(const char *path, IrMode mode, IrGraph *g, char **src) {
    Diag d;
    diag_init(&d, path, NULL, 0, stderr);
    FeOptions o = {mode, NULL, 0};
    ir_init(g);
    if (fe_build_file(path, &o, g, src, &d)) return -1;
    diag_init(&d, path, g->src, *src ? strlen(*src) : 0, stderr);
    return pass_infer_shapes(g, &d);
}

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
    PipelineOptions po = {mode, batch, elem_bytes, 1, NULL, NULL, NULL};
    int rc = pass_pipeline(&g, &po, p, &d);
    ir_free(&g);
    free(src);
    return rc;
}

char *tu_read(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[n] = 0;
    if (len) *len = (size_t)n;
    return b;
}

double tu_rand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / (double)(1ull << 53) * 2.0 - 1.0;
}
