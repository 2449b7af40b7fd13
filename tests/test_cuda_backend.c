/* test_cuda_backend.c - `--target cuda` on an emulated device: the backend
 * (codegen/cuda/cuda_backend.c) against a fake driver table whose device
 * memory is host memory and whose modules are the generated CUDA C compiled
 * for the host with codegen/cuda/emu.h.  Everything but NVRTC and the GPU
 * runs as it would on one: device memory per slot shared by host address,
 * the table of slot addresses, the launches in order, put and get, and the
 * runtime's session moving tensors between host and device.
 *   - one step of LeNet-BN (train and eval) and of DenseNet (in place, and
 *     with recompute) judged against the double oracle as test_cuda_emu;
 *   - a session: training steps whose losses are ref's, a checkpoint written
 *     from the device and loaded on ref, a checkpoint loaded into the device
 *     session and trained on from there, as ref does;
 *   - the training loop's overlap: the next batch uploaded into second
 *     copies of the input slots beside each step, swapped in by the next
 *     (losses and weights as ref's, an eval in between, a staged batch
 *     replaced);
 *   - a data-parallel session (gradients summed on the host) as ref's;
 *   - faults: out of device memory at every allocation, a failing launch:
 *     -1, and nothing left allocated;
 *   - the real driver absent: "no CUDA driver (libcuda.so.1)". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codegen/backend.h"
#include "codegen/cuda/cuda_src.h"
#include "codegen/cuda/driver.h"
#include "runtime/runtime.h"
#include "fakecuda.h"
#include "testutil.h"

void cg_cuda_use_driver(const CudaDriver *t);

static int setup(void **s) {
    (void)s;
    fake_reset();
    cg_cuda_use_driver(&fake_driver);
    return 0;
}

static void nothing_left(void) {
    assert_int_equal(backend_cuda.device_bytes(), 0);
    assert_int_equal(fk.ctxs, 0);
    assert_int_equal(fk.mems, 0);
    assert_int_equal(fk.mods, 0);
}

/* ---- one step against the oracle --------------------------------------- */

static void step_model(const char *model, IrMode mode, int64_t batch, int resize) {
    Program p, p64;
    char path[512];
    snprintf(path, sizeof path, "%s/models/%s.net", NETC_SOURCE_DIR, model);
    assert_int_equal(tu_program(path, mode, batch, resize, 4, &p), 0);
    assert_int_equal(tu_program(path, mode, batch, resize, 8, &p64), 0);
    void **r32 = tu_slots(&p, 5), **r64 = tu_slots(&p64, 5), **got = tu_slots(&p, 5);
    assert_int_equal(tu_step(&backend_ref, NULL, &p, r32, NULL), 0);
    assert_int_equal(tu_step(&backend_ref64, NULL, &p64, r64, NULL), 0);
    /* compile, run (binding uploads every slot), get every slot back */
    Diag d;
    diag_init(&d, "cuda", NULL, 0, stderr);
    BackendOptions o = {1, 3, 0, NULL, 0, 0};
    void *st;
    assert_int_equal(backend_cuda.compile(&p, &o, &st, &d), 0);
    RunCtx c = {NULL, got, 0.05, 1, 0, NULL, 0};
    assert_int_equal(backend_cuda.run(st, &p, &c), 0);
    assert_true(backend_cuda.device_bytes() >= p.arena_bytes);
    for (int i = 0; i < p.nslots; i++) memset(got[i], 0xff, (size_t)p.slots[i].bytes);   /* must come back */
    int *all = calloc((size_t)p.nslots + 1, sizeof(int));
    for (int i = 0; i < p.nslots; i++) all[i] = i;
    assert_int_equal(backend_cuda.get(st, &p, &c, all, p.nslots), 0);
    backend_cuda.free(st);
    nothing_left();
    int bad = 0;
    double worst = 0;
    for (int i = 0; i < p.nslots; i++) {
        if (p.slots[i].kind == SLOT_LABELS) continue;
        double err, ref, scale, ratio;
        if (!tu_judge(&p, &p64, r32, r64, got, i, &err, &ref, &scale, &ratio)) {
            fprintf(stderr, "%s: slot %s: device %g, ref %g from double (scale %g)\n", model, p.slots[i].name, err, ref,
                    scale);
            bad++;
        }
        if (ratio > worst) worst = ratio;
    }
    printf("%s %s on the emulated device: worst error %.2f of ref's, allowed %d\n", model,
           mode == IR_TRAIN ? "train" : "eval", worst, TU_FACTOR);
    assert_int_equal(bad, 0);
    free(all);
    tu_slots_free(&p, r32), tu_slots_free(&p64, r64), tu_slots_free(&p, got);
    program_free(&p), program_free(&p64);
}

static const PlanOptions recompute_plan = {0, 1};

static void test_steps(void **s) {
    (void)s;
    if (!tu_have_cc()) return;
    step_model("lenet_bn", IR_TRAIN, 6, 28);
    step_model("lenet_bn", IR_EVAL, 6, 28);
    step_model("densenet", IR_TRAIN, 2, 48);
    tu_plan = &recompute_plan;
    step_model("extra/densenet_odd", IR_TRAIN, 3, 20);
    tu_plan = NULL;
}

/* ---- sessions ------------------------------------------------------------ */

typedef struct {
    RtSession s;
    IrGraph gt, ge;
    char *t1, *t2;
} Net;

/* dist: a data-parallel session (a job of one rank here: no mpirun) */
static void open_net_dist(Net *n, const char *target, int dist) {
    char path[512];
    snprintf(path, sizeof path, "%s/models/lenet_bn.net", NETC_SOURCE_DIR);
    assert_int_equal(tu_build(path, IR_TRAIN, &n->gt, &n->t1), 0);
    assert_int_equal(tu_build(path, IR_EVAL, &n->ge, &n->t2), 0);
    RtSessionOptions o = {target, 8, 1, 0, 1, NULL, NULL, NULL, NULL, dist, 0, 0};
    Diag d;
    diag_init(&d, target, NULL, 0, stderr);
    assert_int_equal(rt_session_open(&n->s, &n->gt, &n->ge, &o, &d), 0);
}

static void open_net(Net *n, const char *target) { open_net_dist(n, target, 0); }

static void close_net(Net *n) {
    rt_session_close(&n->s);
    ir_free(&n->gt), ir_free(&n->ge);
    free(n->t1), free(n->t2);
}

static void make_batch(uint64_t seed, float *img, int32_t *lab) {
    uint64_t r = seed;
    for (size_t i = 0; i < 8 * 28 * 28; i++) img[i] = (float)tu_rand(&r);
    for (int i = 0; i < 8; i++) lab[i] = (int32_t)((seed + (uint64_t)i * 7) % 10);
}

static void batch(Net *n, uint64_t seed) {
    float img[8 * 28 * 28];
    int32_t lab[8];
    make_batch(seed, img, lab);
    rt_session_set_batch(&n->s, img, lab);
}

static double train(Net *n, uint64_t step) {
    double loss;
    int64_t ok;
    batch(n, 100 + step);
    assert_int_equal(rt_session_train_step(&n->s, 0.1, 1, step, &loss, 8, &ok), 0);
    return loss;
}

static void same_loss(double a, double b, const char *what) {
    if (fabs(a - b) > 1e-4 * fmax(1, fabs(b))) {
        fprintf(stderr, "%s: loss %.9g on the device, %.9g on ref\n", what, a, b);
        fail();
    }
}

/* Every param and state tensor of a within 1e-4 of the largest of b's. */
static void same_weights(const Net *a, const Net *b) {
    for (int i = 0; i < b->s.model.n; i++) {
        const RtTensor *t = &b->s.model.t[i];
        if (t->kind != SLOT_PARAM && t->kind != SLOT_STATE) continue;
        const RtTensor *u = rt_model_find(&a->s.model, t->name);
        assert_non_null(u);
        const float *x = t->data, *y = u->data;
        double mx = 1e-2, e = 0;
        for (int64_t j = 0; j < t->bytes / 4; j++) mx = fmax(mx, fabs(x[j])), e = fmax(e, fabs(x[j] - y[j]));
        if (!(e <= 1e-4 * mx)) {
            fprintf(stderr, "tensor %s: %g apart (largest %g)\n", t->name, e, mx);
            fail();
        }
    }
}

static void test_session(void **s) {
    (void)s;
    if (!tu_have_cc()) return;
    char ck[] = "/tmp/netc_cudabe_ckXXXXXX";
    int fd = mkstemp(ck);
    assert_true(fd >= 0);
    close(fd);
    Diag d;
    diag_init(&d, "cuda", NULL, 0, stderr);
    Net dv, rf;
    open_net(&dv, "cuda");
    open_net(&rf, "ref");
    for (uint64_t k = 0; k < 3; k++) same_loss(train(&dv, k), train(&rf, k), "training");
    /* the device's weights, written from the host */
    assert_int_equal(rt_checkpoint_save(&dv.s, ck, 1, 3, 1, &d), 0);
    Net back;
    open_net(&back, "ref");
    assert_int_equal(rt_checkpoint_load(&back.s, ck, NULL, NULL, NULL, &d), 0);
    same_weights(&back, &rf);
    double l1, l2;
    int64_t o1, o2;
    batch(&dv, 7), batch(&rf, 7);
    assert_int_equal(rt_session_eval(&dv.s, 8, &l1, &o1), 0);
    assert_int_equal(rt_session_eval(&rf.s, 8, &l2, &o2), 0);
    same_loss(l1, l2, "eval");
    /* a checkpoint loaded into the device session: it trains on from there */
    for (uint64_t k = 3; k < 5; k++) train(&rf, k);
    assert_int_equal(rt_checkpoint_save(&rf.s, ck, 1, 5, 1, &d), 0);
    assert_int_equal(rt_checkpoint_load(&dv.s, ck, NULL, NULL, NULL, &d), 0);
    same_loss(train(&dv, 5), train(&rf, 5), "training after a load");
    assert_int_equal(rt_session_to_host(&dv.s, &d), 0);
    same_weights(&dv, &rf);
    close_net(&back);
    close_net(&dv);
    close_net(&rf);
    unlink(ck);
    nothing_left();
}

/* The training loop's overlap (runtime/train.c): each step begun, the next
 * batch staged beside it (put_next: the input slots' second copies, on a
 * stream of their own), then the step ended; the next begin swaps the
 * copies in.  The same losses and weights as ref's steps one at a time,
 * every upload issued while the step's launches were pending; an eval
 * between steps (its table of slot addresses must follow the swapped input
 * slot) as ref's; a staged batch that rt_session_set_batch replaces is
 * dropped. */
static void test_staged_session(void **s) {
    (void)s;
    if (!tu_have_cc()) return;
    Diag d;
    diag_init(&d, "cuda", NULL, 0, stderr);
    Net dv, rf;
    open_net(&dv, "cuda");
    open_net(&rf, "ref");
    assert_true(rt_session_can_stage(&dv.s));
    assert_false(rt_session_can_stage(&rf.s));
    float img[8 * 28 * 28];
    int32_t lab[8];
    batch(&dv, 100);
    for (uint64_t k = 0; k < 6; k++) {
        double loss;
        int64_t ok;
        assert_int_equal(rt_session_train_begin(&dv.s, 0.1, 1, k), 0);
        make_batch(101 + k, img, lab);
        assert_int_equal(rt_session_stage_batch(&dv.s, img, lab), 0);
        assert_int_equal(rt_session_train_end(&dv.s, &loss, 8, &ok), 0);
        same_loss(loss, train(&rf, k), "a step beside the next batch's upload");
        if (k == 2) {   /* the staged batch waits while an eval runs */
            double l1, l2;
            int64_t o1, o2;
            float ei[8 * 28 * 28];
            int32_t el[8];
            make_batch(7, ei, el);
            RtTensor *in = rt_model_find(&dv.s.model, "input");
            RtTensor *lb = rt_model_find(&dv.s.model, "labels");
            /* (set as set_batch would, without dropping the staged batch) */
            memcpy(in->data, ei, sizeof ei), memcpy(lb->data, el, sizeof el);
            in->newer = lb->newer = RT_HOST_NEWER;
            assert_int_equal(rt_session_eval(&dv.s, 8, &l1, &o1), 0);
            batch(&rf, 7);
            assert_int_equal(rt_session_eval(&rf.s, 8, &l2, &o2), 0);
            same_loss(l1, l2, "eval between staged steps");
        }
    }
    assert_int_equal(fk.async_copies, 2 * 6);
    assert_int_equal(fk.async_beside, fk.async_copies);
    /* staged, then replaced: the step trains on the batch set */
    make_batch(555, img, lab);
    assert_int_equal(rt_session_stage_batch(&dv.s, img, lab), 0);
    same_loss(train(&dv, 6), train(&rf, 6), "a staged batch replaced");
    assert_int_equal(rt_session_to_host(&dv.s, &d), 0);
    same_weights(&dv, &rf);
    close_net(&dv);
    close_net(&rf);
    nothing_left();
}

/* Data parallel on the device: the step stops at the gradients, which come
 * to the host, are summed there (over one rank here) and update the host's
 * weights, which go back up before the next step: the same losses and
 * weights as ref's ordinary session. */
static void test_dist_session(void **s) {
    (void)s;
    if (!tu_have_cc()) return;
    Diag d;
    diag_init(&d, "cuda", NULL, 0, stderr);
    Net dv, rf;
    open_net_dist(&dv, "cuda", 1);
    open_net(&rf, "ref");
    assert_true(dv.s.dist && dv.s.nupd > 0);
    for (uint64_t k = 0; k < 4; k++) same_loss(train(&dv, k), train(&rf, k), "data-parallel training");
    assert_int_equal(rt_session_to_host(&dv.s, &d), 0);
    same_weights(&dv, &rf);
    close_net(&dv);
    close_net(&rf);
    nothing_left();
}

/* ---- faults ---------------------------------------------------------------- */

static void test_faults(void **s) {
    (void)s;
    if (!tu_have_cc()) return;
    Program p;
    char path[512];
    snprintf(path, sizeof path, "%s/models/lenet_bn.net", NETC_SOURCE_DIR);
    assert_int_equal(tu_program(path, IR_TRAIN, 4, 28, 4, &p), 0);
    void **x = tu_slots(&p, 3);
    BackendOptions o = {1, 3, 0, NULL, 0, 0};
    Diag d;
    char *msg = NULL;
    size_t len;
    /* every allocation in turn fails: compile or the first run says so */
    for (int k = 0; k < 8; k++) {
        fk.alloc_left = k;
        FILE *f = open_memstream(&msg, &len);
        diag_init(&d, "cuda", NULL, 0, f);
        void *st;
        int rc = backend_cuda.compile(&p, &o, &st, &d), ran = 0;
        if (!rc) {   /* the run's own message goes to stderr */
            RunCtx c = {NULL, x, 0.05, 1, 0, NULL, 0};
            ran = backend_cuda.run(st, &p, &c);
            backend_cuda.free(st);
        }
        fclose(f);
        if (rc) assert_non_null(strstr(msg, "out of device memory"));
        if (k < 4) assert_true(rc || ran);   /* arena, side block, slot table: the first slots */
        free(msg);
        msg = NULL;
        nothing_left();
    }
    fk.alloc_left = -1;
    /* a launch the driver refuses */
    fk.launch_rc = 719;
    void *st;
    diag_init(&d, "cuda", NULL, 0, stderr);
    assert_int_equal(backend_cuda.compile(&p, &o, &st, &d), 0);
    RunCtx c = {NULL, x, 0.05, 1, 0, NULL, 0};
    assert_int_equal(backend_cuda.run(st, &p, &c), -1);
    backend_cuda.free(st);
    fk.launch_rc = 0;
    nothing_left();
    tu_slots_free(&p, x);
    program_free(&p);
}

/* NETC_CUDA_PROFILE=1: each launch timed between two events (the fake's
 * clock: 1 ms a launch), per kernel, over the runs after the first. */
static void test_profile(void **s) {
    (void)s;
    if (!tu_have_cc()) return;
    Program p;
    char path[512];
    snprintf(path, sizeof path, "%s/models/lenet_bn.net", NETC_SOURCE_DIR);
    assert_int_equal(tu_program(path, IR_EVAL, 2, 28, 4, &p), 0);
    Diag d;
    diag_init(&d, "cuda", NULL, 0, stderr);
    CudaSource cs;
    assert_int_equal(cg_cuda_source(&p, 0, &cs, &d), 0);
    void **x = tu_slots(&p, 3);
    char log[] = "/tmp/netc_cudabe_profXXXXXX";
    int fd = mkstemp(log), saved = dup(2);
    assert_true(fd >= 0 && saved >= 0);
    setenv("NETC_CUDA_PROFILE", "1", 1);
    fflush(stderr);
    dup2(fd, 2);
    BackendOptions o = {1, 3, 0, NULL, 0, 0};
    void *st;
    int rc = backend_cuda.compile(&p, &o, &st, &d);
    RunCtx c = {NULL, x, 0, 0, 0, NULL, 0};
    for (int i = 0; i < 3 && !rc; i++) rc = backend_cuda.run(st, &p, &c);
    if (!rc) backend_cuda.free(st);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    unsetenv("NETC_CUDA_PROFILE");
    assert_int_equal(rc, 0);
    char *text = tu_read(log, NULL), want[128];
    assert_non_null(text);
    printf("%s", text);
    snprintf(want, sizeof want, "cuda profile: 2 runs after the first, %d.000 ms per run", cs.nlaunch);
    assert_non_null(strstr(text, want));
    assert_non_null(strstr(text, "conv2d conv0"));
    free(text);
    close(fd);
    unlink(log);
    cg_cuda_source_free(&cs);
    tu_slots_free(&p, x);
    program_free(&p);
    nothing_left();
}

/* Without the fake, where the machine has no driver: the message. */
static void test_no_driver(void **s) {
    (void)s;
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (h) {
        dlclose(h);
        printf("skipped: this machine has a CUDA driver\n");
        return;
    }
    cg_cuda_use_driver(NULL);
    Program p;
    char path[512];
    snprintf(path, sizeof path, "%s/models/lenet_bn.net", NETC_SOURCE_DIR);
    assert_int_equal(tu_program(path, IR_EVAL, 2, 28, 4, &p), 0);
    char *msg = NULL;
    size_t len;
    FILE *f = open_memstream(&msg, &len);
    Diag d;
    diag_init(&d, "cuda", NULL, 0, f);
    BackendOptions o = {1, 3, 0, NULL, 0, 0};
    void *st;
    assert_int_equal(backend_cuda.compile(&p, &o, &st, &d), -1);
    fclose(f);
    assert_non_null(strstr(msg, "no CUDA driver (libcuda.so.1) on this machine"));
    free(msg);
    program_free(&p);
    cg_cuda_use_driver(&fake_driver);
}

int main(void) {
    backend_register(&backend_cuda);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_steps, setup),
        cmocka_unit_test_setup(test_session, setup),
        cmocka_unit_test_setup(test_staged_session, setup),
        cmocka_unit_test_setup(test_dist_session, setup),
        cmocka_unit_test_setup(test_faults, setup),
        cmocka_unit_test_setup(test_profile, setup),
        cmocka_unit_test_setup(test_no_driver, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
