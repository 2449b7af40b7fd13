/* ref.c - the reference backend: every node of the program, in order,
 * through the plain C kernels of ref_kernels.inc.  Slow and obviously
 * correct; every other backend is tested against it. */
#include "backend.h"
#include "ref_kernels.h"

#include <stdlib.h>
#include <string.h>

/* A run: the program, the step's buffers, and memory of the ref's own for
 * the values a fused kernel keeps in registers (BUF_INNER): the ref runs
 * every kernel node by node, so it needs them; inner[v] is v's offset in
 * `side` (program_inner_offsets). */
typedef struct {
    const Program *p;
    const RunCtx *c;
    char *side;
    int64_t *inner;
} RefRun;

/* The address of value v's buffer in this step. */
static void *ref_addr(const RefRun *r, int v) {
    const Program *p = r->p;
    while (p->buf[v].kind == BUF_ALIAS) v = p->buf[v].alias;
    const BufPlan *b = &p->buf[v];
    if (b->kind == BUF_PERSIST) return r->c->slots[b->slot];
    if (b->kind == BUF_INNER) return r->side + r->inner[v];
    IR_ASSERT(b->kind == BUF_ARENA);
    return (char *)r->c->arena + b->offset;
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

static int ref_compile(const Program *p, const BackendOptions *o, void **state, Diag *d) {
    (void)o;
    if (p->elem_bytes != 4) return diag_error_noloc(d, "the ref backend runs float programs (elem_bytes 4)");
    *state = NULL;
    return 0;
}

static int ref64_compile(const Program *p, const BackendOptions *o, void **state, Diag *d) {
    (void)o;
    if (p->elem_bytes != 8) return diag_error_noloc(d, "the ref64 backend runs double programs (elem_bytes 8)");
    *state = NULL;
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
