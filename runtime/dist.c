/* dist.c - the ranks of a data-parallel job and its collectives, over MPI
 * when netc is built with it (NETC_HAVE_MPI), else a job of one.
 *
 * Collectives are MPI's nonblocking ones, waited for by polling with a
 * deadline, so that a rank that died, or stopped answering, ends the job
 * with a message rather than a hang (mpirun also ends the job when a rank
 * exits with an error). */
#include "dist.h"
#include "../base/syncbn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef NETC_HAVE_MPI
#include <errno.h>
#include <mpi.h>
#include <pthread.h>
#include <unistd.h>
#endif

static int started, rank_, size_ = 1, local_ = 1, local_rank_;

uint64_t rt_hash(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* The job size the launcher announced, 0 when not launched as a rank. */
static int launched_size(void) {
    const char *names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = getenv(names[i]);
        if (v && *v) return atoi(v);
    }
    return 0;
}

int rt_dist_rank(void) { return rank_; }
int rt_dist_size(void) { return size_; }
int rt_dist_local_size(void) { return local_; }
int rt_dist_local_rank(void) { return local_rank_; }

#ifdef NETC_HAVE_MPI
static int mpi_on;

int rt_dist_built(void) { return 1; }

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double timeout_s(void) {
    const char *v = getenv("NETC_DIST_TIMEOUT");
    double t = v ? atof(v) : 0;
    return t > 0 ? t : 300;
}

static int mpi_failed(int rc, const char *what) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    fprintf(stderr, "netc: error: rank %d: %s failed: %s\n", rank_, what, msg);
    return -1;
}

/* Waits for r, at most timeout_s(): spins a little, then sleeps 50 us
 * between tests.  Past the deadline the whole job ends. */
static int wait_for(MPI_Request *r, const char *what) {
    double t0 = now(), lim = timeout_s();
    struct timespec nap = {0, 50000};
    for (long spins = 0;; spins++) {
        int done = 0, rc = MPI_Test(r, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_failed(rc, what);
        if (done) return 0;
        if (spins > 2000) {
            if (now() - t0 > lim) {
                fprintf(stderr, "netc: error: rank %d of %d: no answer from the other ranks for %g s in %s (a rank "
                                "died or hangs; NETC_DIST_TIMEOUT sets the limit); ending the job\n",
                        rank_, size_, lim, what);
                fflush(stderr);
                MPI_Abort(MPI_COMM_WORLD, 1);
                exit(1);
            }
            nanosleep(&nap, NULL);
        }
    }
}

static void syncbn_sum(double *buf, int64_t n);

/* MPI_Init waits for every rank of the job: a watchdog ends this one
 * when another never starts. */
static pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t init_cv = PTHREAD_COND_INITIALIZER;
static int init_done;

static void *init_watch(void *arg) {
    (void)arg;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)timeout_s();
    pthread_mutex_lock(&init_mu);
    while (!init_done)
        if (pthread_cond_timedwait(&init_cv, &init_mu, &until) == ETIMEDOUT && !init_done) {
            fprintf(stderr, "netc: error: the other ranks of the job did not start within %g s (NETC_DIST_TIMEOUT "
                            "sets the limit); giving up\n", timeout_s());
            fflush(stderr);
            _exit(1);
        }
    pthread_mutex_unlock(&init_mu);
    return NULL;
}

int rt_dist_start(char *err, size_t n) {
    if (started) return 0;
    started = 1;
    if (launched_size() <= 1) return 0;
    pthread_t w;
    int watching = pthread_create(&w, NULL, init_watch, NULL) == 0;
    int rc = MPI_Init(NULL, NULL);
    pthread_mutex_lock(&init_mu);
    init_done = 1;
    pthread_cond_signal(&init_cv);
    pthread_mutex_unlock(&init_mu);
    if (watching) pthread_join(w, NULL);
    if (rc != MPI_SUCCESS) {
        snprintf(err, n, "MPI_Init failed (code %d): cannot join the job mpirun started", rc);
        return -1;
    }
    mpi_on = 1;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    MPI_Comm node;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        MPI_Comm_size(node, &local_);
        MPI_Comm_rank(node, &local_rank_);
        MPI_Comm_free(&node);
    }
    rt_syncbn_set_sum(syncbn_sum);
    return 0;
}

void rt_dist_finish(void) {
    if (mpi_on) MPI_Finalize();
    mpi_on = 0;
}

void rt_dist_abort(int code) {
    fflush(stdout);
    fflush(stderr);
    if (mpi_on) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

/* MPI counts are ints: sums go in pieces of at most 2^28 elements. */
enum { PIECE = 1 << 28 };

static int sum(void *buf, int64_t n, MPI_Datatype t, size_t esz) {
    if (!mpi_on) return 0;
    for (int64_t i = 0; i < n; i += PIECE) {
        int c = (int)(n - i < PIECE ? n - i : PIECE);
        MPI_Request r;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, (char *)buf + (size_t)i * esz, c, t, MPI_SUM, MPI_COMM_WORLD, &r);
        if (rc != MPI_SUCCESS) return mpi_failed(rc, "allreduce");
        if (wait_for(&r, "an allreduce")) return -1;
    }
    return 0;
}


/* base/syncbn.h's sums, which cannot report a failure: it ends the job */
static void syncbn_sum(double *buf, int64_t n) {
    if (sum(buf, n, MPI_DOUBLE, sizeof(double))) {
        fprintf(stderr, "netc: error: rank %d: could not sum the batch-norm statistics over the ranks\n", rank_);
        rt_dist_abort(1);
    }
}
int rt_dist_sum_f64(double *buf, int64_t n) { return sum(buf, n, MPI_DOUBLE, sizeof(double)); }

/* the sums started and not yet waited for */
enum { MAX_PENDING = 1024 };
static MPI_Request pending[MAX_PENDING];
static int npending;

int rt_dist_isum_f32(float *buf, int64_t n) {
    if (!mpi_on) return MAX_PENDING;
    if (n > PIECE || npending == MAX_PENDING) return sum(buf, n, MPI_FLOAT, sizeof(float)) ? -1 : MAX_PENDING;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &pending[npending]);
    if (rc != MPI_SUCCESS) return mpi_failed(rc, "allreduce");
    return npending++;
}

void rt_dist_progress(void) {
    for (int i = 0; i < npending; i++)
        if (pending[i] != MPI_REQUEST_NULL) {
            int done = 0;
            MPI_Test(&pending[i], &done, MPI_STATUS_IGNORE); /* a failure shows in rt_dist_wait */
        }
}

/* Handles are waited for in the order they were started; the last wait
 * empties the table. */
int rt_dist_wait(int h) {
    if (h == MAX_PENDING) return 0;
    if (h < 0 || h >= npending) return -1;
    int rc = pending[h] == MPI_REQUEST_NULL ? 0 : wait_for(&pending[h], "an allreduce of gradients");
    if (h == npending - 1) npending = 0;
    return rc;
}

int rt_dist_bcast(void *buf, int64_t bytes) {
    if (!mpi_on) return 0;
    for (int64_t i = 0; i < bytes; i += PIECE) {
        int c = (int)(bytes - i < PIECE ? bytes - i : PIECE);
        MPI_Request r;
        int rc = MPI_Ibcast((char *)buf + i, c, MPI_BYTE, 0, MPI_COMM_WORLD, &r);
        if (rc != MPI_SUCCESS) return mpi_failed(rc, "broadcast");
        if (wait_for(&r, "a broadcast from rank 0")) return -1;
    }
    return 0;
}

int rt_dist_agree(uint64_t h) {
    if (!mpi_on) return -1;
    uint64_t *all = calloc((size_t)size_, sizeof *all);
    if (!all) return -2;
    MPI_Request r;
    int rc = MPI_Iallgather(&h, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD, &r);
    if (rc != MPI_SUCCESS) {
        free(all);
        return mpi_failed(rc, "allgather"), -2;
    }
    int who = wait_for(&r, "the start-up check") ? -2 : -1;
    for (int i = 1; i < size_ && who == -1; i++)
        if (all[i] != all[0]) who = i;
    free(all);
    return who;
}

#else /* no MPI: a job of one */

int rt_dist_built(void) { return 0; }

int rt_dist_start(char *err, size_t n) {
    if (started) return 0;
    started = 1;
    int want = launched_size();
    if (want > 1) {
        snprintf(err, n, "started as one of %d ranks of an MPI job, but this netc was built without MPI "
                         "(install libopenmpi-dev and build it again)", want);
        return -1;
    }
    return 0;
}

void rt_dist_finish(void) {}

void rt_dist_abort(int code) {
    fflush(stdout);
    fflush(stderr);
    exit(code);
}

int rt_dist_isum_f32(float *buf, int64_t n) { return (void)buf, (void)n, 0; }
int rt_dist_wait(int handle) { return (void)handle, 0; }
void rt_dist_progress(void) {}
int rt_dist_sum_f64(double *buf, int64_t n) { return (void)buf, (void)n, 0; }
int rt_dist_bcast(void *buf, int64_t bytes) { return (void)buf, (void)bytes, 0; }
int rt_dist_agree(uint64_t h) { return (void)h, -1; }

#endif
