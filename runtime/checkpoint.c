/* checkpoint.c - a session's weights and running statistics as safetensors,
 * named by the hierarchical names, with the training position as metadata. */
#include "runtime.h"
#include "checkpoint.h"
#include "base/err.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static int is_saved(const RtTensor *t) { return t->kind == SLOT_PARAM || t->kind == SLOT_STATE; }

int64_t rt_first_nonfinite(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return -1;
}

/* Names a non-finite float for messages. */
static const char *nonfinite_name(float v) { return isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf"; }

int rt_checkpoint_save(const RtSession *s, const char *path, int epoch, uint64_t step, uint64_t seed, Diag *d) {
    if (rt_session_to_host(s, d)) return -1;
    /* NaN weights would replace the last good checkpoint: refuse them */
    for (int i = 0; i < s->model.n; i++) {
        const RtTensor *t = &s->model.t[i];
        int64_t k = is_saved(t) ? rt_first_nonfinite(t->data, t->bytes / 4) : -1;
        if (k >= 0)
            return diag_error_noloc(d, "not writing checkpoint %s after epoch %d: tensor `%s` holds %s (element %lld); "
                                    "the previous checkpoint is kept", path, epoch, t->name,
                                    nonfinite_name(((const float *)t->data)[k]), (long long)k);
    }
    RtTensorOut *out = ir_xcalloc((size_t)s->model.n, sizeof *out);
    int n = 0;
    for (int i = 0; i < s->model.n; i++) {
        const RtTensor *t = &s->model.t[i];
        if (!is_saved(t)) continue;
        RtTensorOut *o = &out[n++];
        o->name = t->name;
        o->dtype = "F32";
        o->rank = t->rank;
        for (int k = 0; k < t->rank; k++) o->shape[k] = t->shape[k];
        o->data = t->data;
        o->bytes = t->bytes;
    }
    char e[32], st[32], sd[32], err[512];
    snprintf(e, sizeof e, "%d", epoch);
    snprintf(st, sizeof st, "%" PRIu64, step);
    snprintf(sd, sizeof sd, "%" PRIu64, seed);
    const char *meta[] = {"format", "netc", "epoch", e, "step", st, "seed", sd, NULL};
    int rc = rt_st_write(path, out, n, meta, err, sizeof err);
    free(out);
    if (rc) return diag_error_noloc(d, "cannot write checkpoint: %s", err);
    return 0;
}

/* One metadata field as an integer in 0..max: decimal digits only. */
static int meta_uint(const RtSt *st, const char *path, const char *key, uint64_t max, uint64_t *out, char *err,
                     size_t errlen) {
    const char *v = rt_st_meta(st, key);
    if (!v) {
        rt_seterr(err, errlen, "checkpoint %s: metadata field \"%s\" is missing (not a checkpoint of netc train?)",
                  path, key);
        return -1;
    }
    uint64_t x = 0;
    int ok = v[0] != 0;
    for (const char *p = v; ok && *p; p++) {
        unsigned dgt = (unsigned)(*p - '0');
        if (*p < '0' || *p > '9' || x > (max - dgt) / 10) ok = 0;
        else x = x * 10 + dgt;
    }
    if (!ok) {
        rt_seterr(err, errlen, "checkpoint %s: metadata field \"%s\" is \"%.40s%s\"; expected an integer in 0..%" PRIu64,
                  path, key, v, strlen(v) > 40 ? "..." : "", max);
        return -1;
    }
    *out = x;
    return 0;
}

int rt_checkpoint_position(const RtSt *st, const char *path, int *epoch, uint64_t *step, uint64_t *seed,
                           char *err, size_t errlen) {
    uint64_t e;
    if (epoch) {
        if (meta_uint(st, path, "epoch", RT_MAX_EPOCHS, &e, err, errlen)) return -1;
        *epoch = (int)e;
    }
    if (step && meta_uint(st, path, "step", UINT64_MAX, step, err, errlen)) return -1;
    if (seed && meta_uint(st, path, "seed", UINT64_MAX, seed, err, errlen)) return -1;
    return 0;
}

int rt_checkpoint_load(RtSession *s, const char *path, int *epoch, uint64_t *step, uint64_t *seed, Diag *d) {
    char err[512];
    RtSt *st = rt_st_read(path, err, sizeof err);
    if (!st) return diag_error_noloc(d, "cannot read checkpoint: %s", err);
    int rc = 0, found = 0;
    for (int i = 0; i < s->model.n && !rc; i++) {
        RtTensor *t = &s->model.t[i];
        if (!is_saved(t)) continue;
        found++;
        if (rt_st_get(st, t->name, "F32", t->rank, t->shape, t->data, err, sizeof err)) {
            rc = diag_error_noloc(d, "checkpoint does not match the network: %s", err);
            break;
        }
        int64_t k = rt_first_nonfinite(t->data, t->bytes / 4);
        if (k >= 0)
            rc = diag_error_noloc(d, "checkpoint %s: tensor `%s` holds %s (element %lld of %lld); "
                                  "non-finite weights or statistics are refused", path, t->name,
                                  nonfinite_name(((const float *)t->data)[k]), (long long)k,
                                  (long long)(t->bytes / 4));
        if (rc) break;
    }
    if (!rc && rt_st_count(st) != found) {
        for (int i = 0; i < rt_st_count(st); i++)
            if (!rt_model_find(&s->model, rt_st_name(st, i))) {
                rc = diag_error_noloc(d, "checkpoint %s has tensor `%s`, which the network does not have", path,
                                      rt_st_name(st, i));
                break;
            }
    }
    if (!rc && rt_checkpoint_position(st, path, epoch, step, seed, err, sizeof err))
        rc = diag_error_noloc(d, "%s", err);
    rt_st_free(st);
    rt_session_host_wrote(s);
    return rc;
}

/* ---- claiming a checkpoint path ---- */

/* dir of path into buf ("." when it has none). */
static void dir_of(const char *path, char *buf, size_t n) {
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(buf, n, ".");
    else if (slash == path) snprintf(buf, n, "/");
    else snprintf(buf, n, "%.*s", (int)(slash - path), path);
}

int rt_checkpoint_claim(const char *path, char *err, size_t errlen) {
    struct stat st;
    char dir[4096], lock[4200], tmp[4200];
    if (!path[0] || strlen(path) >= sizeof dir) {
        rt_seterr(err, errlen, "checkpoint %s: bad path", path);
        return -1;
    }
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        rt_seterr(err, errlen, "checkpoint %s: %s", path, S_ISDIR(st.st_mode) ? "is a directory" : "not a regular file");
        return -1;
    }
    dir_of(path, dir, sizeof dir);
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        rt_seterr(err, errlen, "checkpoint %s: directory %s does not exist", path, dir);
        return -1;
    }
    snprintf(lock, sizeof lock, "%s.lock", path);
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0644);
    if (fd < 0) {
        rt_seterr(err, errlen, "checkpoint %s: cannot create its lock file %s: %s", path, lock, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0 && errno != ENOLCK && errno != EOPNOTSUPP) {
        /* (a file system without locks: go on unlocked, the writes stay atomic) */
        int busy = errno == EWOULDBLOCK;
        char who[32] = "";
        ssize_t k = busy ? pread(fd, who, sizeof who - 1, 0) : 0;
        who[k > 0 ? k : 0] = 0;
        who[strcspn(who, "\n")] = 0;
        if (busy)
            rt_seterr(err, errlen, "checkpoint %s is in use by another training (process %s holds %s); "
                      "not training, so that their checkpoints do not mix", path, who[0] ? who : "?", lock);
        else
            rt_seterr(err, errlen, "checkpoint %s: cannot lock %s: %s", path, lock, strerror(errno));
        close(fd);
        return -1;
    }
    char pid[32];
    int pl = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)pl, 0) != pl) {
        /* the lock holds; only the name in a rival's message is lost */
    }
    /* the directory takes new files now, not after the first epoch */
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int t = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (t < 0) {
        rt_seterr(err, errlen, "checkpoint %s cannot be written: %s: %s", path, tmp, strerror(errno));
        close(fd);
        return -1;
    }
    close(t);
    unlink(tmp);
    return fd;
}

void rt_checkpoint_release(int lock_fd) {
    if (lock_fd >= 0) close(lock_fd);
}
