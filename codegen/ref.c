/* ref.c - the reference backend: every node of the program, in order,
 * through the plain C kernels of ref_kernels.inc.  Slow and obviously
 * correct; every other backend is tested against it. */
#include "backend.h"
#include "ref_kernels.h"
#include "../base/syncbn.h"
#include "../base/gradready.h"

#include <stdlib.h>
#include <string.h>

/* A run: the program, the step's buffers, and memory of the ref's own for
 * the values a fused kernel keeps in registers (BUF_INNER): the ref runs
 * every kernel node by node, so it needs them; inner[v] is v's offset in
 * `side` (program_inner_offsets).  A node's strided views (BUF_VIEW) are
 * copied into contiguous stand-ins around it (stage), so the kernels stay
 * the plain ones. */
enum { REF_MAX_STAGE = IR_MAX_IN + IR_MAX_OUT };
typedef struct {
    const Program *p;
    const RunCtx *c;
    int tf32;             /* BackendOptions.tf32: conv and linear operands rounded to tf32 */
    char *side;
    int64_t *inner;
    int nstage;
    int stage_v[REF_MAX_STAGE];
    char *stage[REF_MAX_STAGE];
} RefRun;

/* Value v's first element in this step's memory. */
static char *ref_base(const RefRun *r, int v, ValueLoc *l) {
    const Program *p = r->p;
    program_loc(p, v, l);
    const BufPlan *b = &p->buf[l->root];
    char *at;
    if (b->kind == BUF_PERSIST) at = r->c->slots[b->slot];
    else if (b->kind == BUF_INNER) at = r->side + r->inner[l->root];
    else {
        IR_ASSERT(b->kind == BUF_ARENA);
        at = (char *)r->c->arena + b->offset;
    }
    return at + l->off * p->elem_bytes;
}

/* The address of value v's buffer in this step (its stand-in while staged). */
static void *ref_addr(const RefRun *r, int v) {
    for (int i = 0; i < r->nstage; i++)
        if (r->stage_v[i] == v) return r->stage[i];
    ValueLoc l;
    char *at = ref_base(r, v, &l);
    IR_ASSERT(!l.strided);
    return at;
}

/* Copies image by image between v's strided place and a contiguous block. */
static void ref_stage_copy(const RefRun *r, int v, char *flat, int in) {
    ValueLoc l;
    char *at = ref_base(r, v, &l);
    size_t es = (size_t)r->p->elem_bytes, row = (size_t)l.per * es;
    for (int64_t n = 0; n < r->p->batch; n++) {
        char *img = at + (size_t)(n * l.istride) * es;
        if (in) memcpy(flat + (size_t)n * row, img, row);
        else memcpy(img, flat + (size_t)n * row, row);
    }
}

/* Stand-ins for node n's strided inputs (filled) and outputs; 0 or -1 when
 * out of memory. */
static int ref_stage(RefRun *r, const IrNode *n) {
    r->nstage = 0;
    for (int j = 0; j < n->nin + n->nout; j++) {
        int v = j < n->nin ? n->in[j] : n->out[j - n->nin];
        if (v < 0) continue;
        ValueLoc l;
        program_loc(r->p, v, &l);
        if (!l.strided) continue;
        int seen = 0;
        for (int i = 0; i < r->nstage; i++) seen |= r->stage_v[i] == v;
        if (seen) continue;
        IR_ASSERT(r->nstage < REF_MAX_STAGE);
        char *flat = malloc((size_t)(l.per * r->p->batch) * (size_t)r->p->elem_bytes);
        if (!flat) return -1;
        if (j < n->nin) ref_stage_copy(r, v, flat, 1);
        r->stage_v[r->nstage] = v;
        r->stage[r->nstage++] = flat;
    }
    return 0;
}

/* Writes node n's staged outputs to their places (when write) and frees
 * the stand-ins. */
static void ref_unstage(RefRun *r, const IrNode *n, int write) {
    for (int i = 0; i < r->nstage; i++) {
        for (int j = 0; j < n->nout && write; j++)
            if (n->out[j] == r->stage_v[i]) {
                ref_stage_copy(r, r->stage_v[i], r->stage[i], 0);
                break;
            }
        free(r->stage[i]);
    }
    r->nstage = 0;
}

/* x rounded as cvt.rna.tf32.f32 rounds it (to 10 mantissa bits, to
 * nearest, ties away from zero), from its nearest float. */
static float ref_tf32(double v) {
    float f = (float)v;
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) u += 0x1000u;
    u &= 0xffffe000u;
    memcpy(&f, &u, 4);
    return f;
}

/* Conv dimensions from the input (x) and output (y) types of the forward conv. */
static RefConv ref_conv(const Program *p, const IrNode *n, const IrType *x, const IrType *y) {
    const IrConvAttr *a = &n->attr.conv;
    return (RefConv){p->batch, x->d[1], x->d[2], x->d[3], y->d[1], a->kh, a->kw,
                     a->sh, a->sw, a->ph, a->pw, y->d[2], y->d[3]};
}

static RefPool ref_pool(const Program *p, const IrNode *n, const IrType *x, const IrType *y) {
    const IrPoolAttr *a = &n->attr.pool;
    return (RefPool){p->batch, x->d[1], x->d[2], x->d[3], a->kh, a->kw, a->sh, a->sw, a->ph, a->pw, y->d[2], y->d[3]};
}

#define T float
#define K(name) ref_f32_##name
#include "ref_exec.inc"
#undef T
#undef K
#define T double
#define K(name) ref_f64_##name
#include "ref_exec.inc"
#undef T
#undef K

/* The state: NULL, or &tf32_on with BackendOptions.tf32 (the oracle of
 * the cuda target's --precision tf32: the products of convolutions and
 * linear layers take their operands rounded to tf32, as the tensor cores
 * do, and add in the backend's own type; bias gradients sum dy unrounded). */
static const int tf32_on = 1;

static int ref_compile(const Program *p, const BackendOptions *o, void **state, Diag *d) {
    if (p->elem_bytes != 4) return diag_error_noloc(d, "the ref backend runs float programs (elem_bytes 4)");
    *state = o && o->tf32 ? (void *)&tf32_on : NULL;
    return 0;
}

static int ref64_compile(const Program *p, const BackendOptions *o, void **state, Diag *d) {
    if (p->elem_bytes != 8) return diag_error_noloc(d, "the ref64 backend runs double programs (elem_bytes 8)");
    *state = o && o->tf32 ? (void *)&tf32_on : NULL;
    return 0;
}

static void ref_free(void *state) { (void)state; }

const Backend backend_ref = {
    .name = "ref", .desc = "reference C kernels, float (the oracle)",
    .compile = ref_compile, .run = ref_f32_run, .free = ref_free,
};
const Backend backend_ref64 = {
    .name = "ref64", .desc = "reference C kernels, double (gradient checks)",
    .compile = ref64_compile, .run = ref_f64_run, .free = ref_free,
};
