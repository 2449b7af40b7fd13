/* test_cuda_nccl.c - a data-parallel step on `--target cuda` that sums its
 * gradients with NCCL on the devices and updates the weights there
 * (codegen/cuda/cuda_dist.c), on the emulated device (fakecuda.h) with a
 * fake NCCL whose sums are the runtime's MPI sums over host memory.  ctest
 * runs it as 2 ranks under mpirun when netc has MPI (else as 1 rank):
 *   - equivalence: each rank trains LeNet-5 (no batch norm, no dropout) on
 *     its half of every batch; losses and weights after 4 steps are those
 *     of ref's ordinary session on the whole batch, the weights the same
 *     bits on every rank and never downloaded; one allreduce per gradient
 *     and step, of all the gradients' floats; buckets of one kernel each
 *     start during the backward pass and give the same bits;
 *   - the fallbacks, on every rank alike: no NCCL, NETC_NCCL=0, and NCCL
 *     failing to start on one rank: the host sums, with the same results;
 *   - faults: sums that never finish end the step within NETC_DIST_TIMEOUT,
 *     as does an error NCCL reports while they run; nothing is left held. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codegen/backend.h"
#include "codegen/cuda/cuda_dist.h"
#include "codegen/cuda/nccl.h"
#include "codegen/cuda/nvrtc.h"
#include "fakecuda.h"
#include "runtime/dist.h"
#include "runtime/runtime.h"
#include "testutil.h"

void cg_cuda_use_driver(const CudaDriver *t);
void cg_cuda_use_nccl(const NcclTable *t);

enum { BATCH = 8 };

/* ---- the fake NCCL ---------------------------------------------------------- */

static struct {
    int comms;          /* held */
    int ids;
    long long sums, floats;
    int init_rc, init_rank;   /* ncclCommInitRank fails with init_rc on init_rank (-1: every rank) */
    int async_rc;       /* what ncclCommGetAsyncError reports */
    int first_at;       /* fk.launches at the step's first sum (-1: none yet) */
} nf;

static int n_version(int *v) { *v = 22807; return 0; }
static int n_unique_id(NcclId *id) {
    memset(id, 0, sizeof *id);
    snprintf(id->internal, sizeof id->internal, "fake nccl of process %ld", (long)getpid());
    nf.ids++;
    return 0;
}
/* the id must be rank 0's on every rank (a collective over MPI) */
static int n_init(void **comm, int nranks, NcclId id, int rank) {
    if (nranks != rt_dist_size() || rank != rt_dist_rank()) return 4;
    int same = rt_dist_agree(rt_hash(RT_HASH_INIT, id.internal, sizeof id.internal)) == -1;
    if (!same || strncmp(id.internal, "fake nccl", 9)) return 3;
    if (nf.init_rc && (nf.init_rank < 0 || nf.init_rank == rank)) return nf.init_rc;
    *comm = calloc(1, 1);
    nf.comms++;
    return 0;
}
static int n_destroy(void *c) { free(c); nf.comms--; return 0; }
static int n_async(void *c, int *e) { (void)c; *e = nf.async_rc; return 0; }
static const char *n_string(int rc) { return rc == 3 ? "internal error (fake)" : rc == 6 ? "remote error (fake)" : "?"; }
static int n_group(void) { return 0; }
/* the launches before it have run (the fake driver's are synchronous) */
static int n_allreduce(const void *send, void *recv, size_t n, int type, int op, void *comm, void *stream) {
    if (type != NCCL_FLOAT32 || op != NCCL_SUM || !comm || !stream) return 4;
    if (send != recv) memcpy(recv, send, n * sizeof(float));
    nf.sums++;
    nf.floats += (long long)n;
    if (nf.first_at < 0) nf.first_at = fk.launches;
    int h = rt_dist_isum_f32(recv, (int64_t)n);
    return h < 0 || rt_dist_wait(h) ? 3 : 0;
}

static const NcclTable fake_nccl = {NULL, n_version, n_unique_id, n_init, n_destroy, n_destroy, n_async, n_string,
                                    n_group, n_group, n_allreduce};

static int setup(void **s) {
    (void)s;
    fake_reset();
    memset(&nf, 0, sizeof nf);
    cg_cuda_use_driver(&fake_driver);
    cg_cuda_use_nccl(&fake_nccl);
    return 0;
}

static void nothing_left(void) {
    assert_int_equal(backend_cuda.device_bytes(), 0);
    assert_int_equal(fk.ctxs, 0);
    assert_int_equal(fk.mems, 0);
    assert_int_equal(fk.mods, 0);
    assert_int_equal(nf.comms, 0);
}

/* ---- sessions ------------------------------------------------------------------ */

typedef struct {
    RtSession s;
    IrGraph gt, ge;
    char *t1, *t2;
    int64_t batch;
} Net;

static void open_net(Net *n, const char *target, int dist) {
    char path[512];
    snprintf(path, sizeof path, "%s/models/extra/lenet.net", NETC_SOURCE_DIR);
    assert_int_equal(tu_build(path, IR_TRAIN, &n->gt, &n->t1), 0);
    assert_int_equal(tu_build(path, IR_EVAL, &n->ge, &n->t2), 0);
    n->batch = dist ? BATCH / rt_dist_size() : BATCH;
    RtSessionOptions o = {target, n->batch, 1, 0, 1, NULL, NULL, NULL, NULL, dist, 0, 0};
    Diag d;
    diag_init(&d, target, NULL, 0, stderr);
    assert_int_equal(rt_session_open(&n->s, &n->gt, &n->ge, &o, &d), 0);
}

static void close_net(Net *n) {
    rt_session_close(&n->s);
    ir_free(&n->gt), ir_free(&n->ge);
    free(n->t1), free(n->t2);
}

/* Step k's batch of BATCH images; a rank's session gets its part of it. */
static int train(Net *n, uint64_t k, double *loss) {
    float img[BATCH * 28 * 28];
    int32_t lab[BATCH];
    uint64_t r = 100 + k;
    for (size_t i = 0; i < sizeof img / sizeof *img; i++) img[i] = (float)tu_rand(&r);
    for (int i = 0; i < BATCH; i++) lab[i] = (int32_t)((k + (uint64_t)i * 7) % 10);
    int64_t part = n->batch < BATCH ? rt_dist_rank() * n->batch : 0, ok;
    rt_session_set_batch(&n->s, img + part * 28 * 28, lab + part);
    return rt_session_train_step(&n->s, 0.5, 1, k, loss, n->batch, &ok);
}

/* Every parameter of a within 2e-5 of the largest of b's (a's on the host). */
static void same_weights(const Net *a, const Net *b) {
    for (int i = 0; i < b->s.model.n; i++) {
        const RtTensor *t = &b->s.model.t[i];
        if (t->kind != SLOT_PARAM) continue;
        const RtTensor *u = rt_model_find(&a->s.model, t->name);
        assert_non_null(u);
        const float *x = t->data, *y = u->data;
        double mx = 1e-2, e = 0;
        for (int64_t j = 0; j < t->bytes / 4; j++) mx = fmax(mx, fabs(x[j])), e = fmax(e, fabs(x[j] - y[j]));
        if (!(e <= 2e-5 * mx)) {
            fprintf(stderr, "rank %d: tensor %s: %g apart (largest %g)\n", rt_dist_rank(), t->name, e, mx);
            fail();
        }
    }
}

static uint64_t weights_hash(const Net *n) {
    uint64_t h = RT_HASH_INIT;
    for (int i = 0; i < n->s.model.n; i++)
        if (n->s.model.t[i].kind == SLOT_PARAM) h = rt_hash(h, n->s.model.t[i].data, (size_t)n->s.model.t[i].bytes);
    return h;
}

/* Trains a data-parallel device session and ref's whole-batch session 4
 * steps; the device session's weights hash (on the host). */
static uint64_t run_against_ref(int want_dev_sum, int early) {
    Diag d;
    diag_init(&d, "cuda", NULL, 0, stderr);
    Net dv, rf;
    open_net(&dv, "cuda", 1);
    open_net(&rf, "ref", 0);
    assert_int_equal(dv.s.dev_sum, want_dev_sum);
    for (uint64_t k = 0; k < 4; k++) {
        double a, b;
        int before = fk.launches;
        nf.first_at = -1;
        assert_int_equal(train(&dv, k, &a), 0);
        /* early: the first sums started with kernels of the step still to
         * come (more than the update) */
        if (early && !(nf.first_at >= 0 && nf.first_at < fk.launches - 1)) {
            fprintf(stderr, "step %d: the first sum came after launch %d of %d\n", (int)k, nf.first_at - before,
                    fk.launches - before);
            fail();
        }
        assert_int_equal(train(&rf, k, &b), 0);
        if (!(fabs(a - b) <= 2e-5 * fmax(1, fabs(b)))) {
            fprintf(stderr, "rank %d step %d: loss %.9g, ref's %.9g\n", rt_dist_rank(), (int)k, a, b);
            fail();
        }
        /* the weights stay on the device with NCCL */
        const RtTensor *w = rt_model_find(&dv.s.model, "conv0.weight");
        assert_non_null(w);
        if (want_dev_sum) assert_int_equal(w->newer, RT_DEVICE_NEWER);
    }
    assert_int_equal(rt_session_to_host(&dv.s, &d), 0);
    same_weights(&dv, &rf);
    uint64_t h = weights_hash(&dv);
    assert_int_equal(rt_dist_agree(h), -1);   /* the same bits on every rank */
    if (want_dev_sum) {
        int64_t floats = 0;
        for (int q = 0; q < dv.s.nupd; q++) floats += dv.s.model.t[dv.s.upd_grad[q]].bytes / 4;
        assert_int_equal(nf.sums, 4LL * dv.s.nupd);
        assert_int_equal(nf.floats, 4LL * floats);
    }
    close_net(&dv);
    close_net(&rf);
    nothing_left();
    return h;
}

static void test_equivalence(void **s) {
    (void)s;
    if (!tu_have_cc()) return;
    uint64_t one = run_against_ref(1, 0);
    assert_int_equal(nf.ids, rt_dist_rank() == 0);
    printf("rank %d of %d: NCCL sums on the emulated device: losses and weights as ref's on the whole batch\n",
           rt_dist_rank(), rt_dist_size());
    /* a bucket per kernel: the sums start during the backward pass */
    memset(&nf, 0, sizeof nf);
    setenv("NETC_DIST_BUCKET", "1", 1);
    uint64_t many = run_against_ref(1, 1);
    unsetenv("NETC_DIST_BUCKET");
    assert_true(one == many);
}

static void test_fallbacks(void **s) {
    (void)s;
    if (!tu_have_cc()) return;
    setenv("NETC_NCCL", "0", 1);
    uint64_t off = run_against_ref(0, 0);
    unsetenv("NETC_NCCL");
    assert_int_equal(nf.sums, 0);
    cg_cuda_use_nccl(NULL);   /* a fake driver never opens the real NCCL */
    memset(&nf, 0, sizeof nf);
    uint64_t none = run_against_ref(0, 0);
    assert_int_equal(nf.sums, 0);
    cg_cuda_use_nccl(&fake_nccl);
    /* NCCL fails to start on the last rank: every rank sums on the host */
    nf.init_rc = 3, nf.init_rank = rt_dist_size() - 1;
    uint64_t failed = run_against_ref(0, 0);
    assert_int_equal(nf.sums, 0);
    nf.init_rc = 0;
    printf("rank %d: host sums instead (NETC_NCCL=0, no NCCL, NCCL failing on rank %d): %s\n", rt_dist_rank(),
           rt_dist_size() - 1, off == none && none == failed ? "the same bits" : "other bits");
    assert_true(off == none && none == failed);
}

/* The update kernel of ResNet-18's gradients (every parameter) compiles with
 * NVRTC, to PTX and to sm_90 SASS, and covers every float once. */
static void test_update_nvrtc(void **s) {
    (void)s;
    const char *why;
    if (rt_dist_rank() != 0) return;
    if (!cg_nvrtc_available(&why)) {
        printf("skipped: %s\n", why);
        return;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/models/resnet18.net", NETC_SOURCE_DIR);
    Program p;
    assert_int_equal(tu_program(path, IR_TRAIN, 2, 32, 4, &p), 0);
    int *grad = calloc((size_t)p.nslots, sizeof(int)), *param = calloc((size_t)p.nslots, sizeof(int)), k = 0;
    int64_t want = 0;
    for (int i = 0; i < p.nslots; i++) {
        if (p.slots[i].kind != SLOT_GRAD) continue;
        char name[256];
        snprintf(name, sizeof name, "%s", p.slots[i].name);
        name[strlen(name) - 5] = 0;   /* "<param>.grad" */
        for (int j = 0; j < p.nslots; j++)
            if (!strcmp(p.slots[j].name, name)) grad[k] = i, param[k] = j;
        want += p.slots[i].bytes / 4;
        k++;
    }
    assert_true(k >= 60);
    BackendDist bd = {0, 4, k, grad, param, 0, NULL, NULL, NULL, NULL, ""};
    int64_t total;
    char *src = cg_cuda_dist_update_source(&p, &bd, &total), *out;
    assert_int_equal(total, want);
    assert_non_null(strstr(src, "2.500000000e-01f"));
    size_t len;
    Diag d;
    diag_init(&d, "nvrtc", NULL, 0, stderr);
    assert_int_equal(cg_nvrtc_compile(src, "netc_dist.cu", "compute_90", &out, &len, &d), 0);
    free(out);
    assert_int_equal(cg_nvrtc_compile(src, "netc_dist.cu", "sm_90", &out, &len, &d), 0);
    free(out);
    printf("the update of %d parameters (%lld floats) compiles with NVRTC\n", k, (long long)total);
    free(src), free(grad), free(param);
    program_free(&p);
}

/* ---- faults ------------------------------------------------------------------- */

static int q_hang(void *e) { (void)e; return 600; }

/* A step whose update never completes: -1 with msg on stderr. */
static void hung_step(const char *msg) {
    CudaDriver hang = fake_driver;
    hang.event_query = q_hang;
    cg_cuda_use_driver(&hang);
    setenv("NETC_DIST_TIMEOUT", "1", 1);
    Net dv;
    open_net(&dv, "cuda", 1);
    assert_int_equal(dv.s.dev_sum, 1);
    char log[] = "/tmp/netc_nccl_logXXXXXX";
    int fd = mkstemp(log), saved = dup(2);
    assert_true(fd >= 0 && saved >= 0);
    fflush(stderr);
    dup2(fd, 2);
    double loss;
    int rc = train(&dv, 0, &loss);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    setenv("NETC_DIST_TIMEOUT", "60", 1);
    char buf[2048] = "";
    ssize_t got = pread(fd, buf, sizeof buf - 1, 0);
    buf[got > 0 ? got : 0] = 0;
    close(fd);
    unlink(log);
    printf("rank %d: %s", rt_dist_rank(), buf);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(buf, msg));
    close_net(&dv);
    cg_cuda_use_driver(&fake_driver);
    nothing_left();
}

static void test_faults(void **s) {
    (void)s;
    if (!tu_have_cc()) return;
    hung_step("did not finish within 1 s");
    nf.async_rc = 6;
    hung_step("the gradient sums (NCCL) failed: remote error (fake)");
    nf.async_rc = 0;
}

int main(void) {
    char err[256];
    if (rt_dist_start(err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    setenv("NETC_DIST_TIMEOUT", "60", 0);
    backend_register(&backend_cuda);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_equivalence, setup),
        cmocka_unit_test_setup(test_fallbacks, setup),
        cmocka_unit_test_setup(test_faults, setup),
        cmocka_unit_test(test_update_nvrtc),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    /* every rank's verdict: a failure on one fails the job everywhere */
    if (rt_dist_agree((uint64_t)(rc != 0)) != -1) rc = 1;
    rt_dist_finish();
    return rc;
}
