/* outfile.c - atomic replacement of a file (contract in outfile.h). */
#include "base/err.h"
#include "base/outfile.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


/* fsyncs the directory holding path; failures are ignored (some file systems
 * refuse it, and the rename is done by then). */
static void sync_dir(const char *path)
{
    size_t n = strlen(path);
    char *dir = malloc(n + 2);
    if (!dir)
        return;
    memcpy(dir, path, n + 1);
    char *slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = 0;
    else
        *slash = 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

/* Removes path.tmp.PID files left by writers that died (PID is no live
 * process), so that killed runs do not leave them to pile up.  A live
 * writer's file, or one of another user's process, stays. */
static void remove_stale_temps(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t bl = strlen(base);
    char dir[4096];
    if (!slash)
        strcpy(dir, ".");
    else if (slash == path)
        strcpy(dir, "/");
    else if ((size_t)(slash - path) < sizeof dir)
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    else
        return;
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        if (strncmp(n, base, bl) != 0 || strncmp(n + bl, ".tmp.", 5) != 0)
            continue;
        const char *digits = n + bl + 5;
        char *end;
        errno = 0;
        long pid = strtol(digits, &end, 10);
        if (!isdigit((unsigned char)digits[0]) || *end || errno || pid <= 0 || pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
            unlinkat(dirfd(d), n, 0);
    }
    closedir(d);
}

int rt_write_atomic(const char *path, RtEmitFn emit, void *ctx, char *err, size_t errlen)
{
    remove_stale_temps(path);
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp) {
        rt_seterr(err, errlen, "%s: out of memory", path);
        return -1;
    }
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rt_seterr(err, errlen, "%s: cannot create temporary file %s: %s", path, tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        rt_seterr(err, errlen, "%s: cannot write: %s", path, strerror(errno));
        close(fd);
        goto fail;
    }
    if (err && errlen)
        err[0] = 0;
    if (emit(f, ctx, err, errlen) != 0) {
        if (!err || !err[0])
            rt_seterr(err, errlen, "%s: cannot write", path);
        fclose(f);
        goto fail;
    }
    if (ferror(f) || fflush(f) != 0) {
        rt_seterr(err, errlen, "%s: write failed: %s", path, strerror(errno ? errno : EIO));
        fclose(f);
        goto fail;
    }
    if (fsync(fileno(f)) != 0) {
        rt_seterr(err, errlen, "%s: fsync failed: %s", path, strerror(errno));
        fclose(f);
        goto fail;
    }
    if (fclose(f) != 0) {
        rt_seterr(err, errlen, "%s: close failed: %s", path, strerror(errno));
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        rt_seterr(err, errlen, "%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
        goto fail;
    }
    sync_dir(path);
    free(tmp);
    return 0;
fail:
    unlink(tmp);
    free(tmp);
    return -1;
}
