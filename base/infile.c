/* infile.c - opening user-named files for reading without blocking. */
#include "base/err.h"
#include "base/infile.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static const char *kind(mode_t m) {
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    return "not a plain file";
}

int rt_open_input(const char *path, int flags, struct stat *st_out, char *err, size_t errlen) {
    struct stat st;
    /* O_NONBLOCK: a FIFO opens at once; a regular file does not care */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        if (errno == EISDIR)
            rt_seterr(err, errlen, "%s: is a directory", path);
        else
            rt_seterr(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0) {
        rt_seterr(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    int ok = S_ISREG(st.st_mode) || ((flags & RT_INPUT_PIPE) && S_ISFIFO(st.st_mode));
    if (!ok) {
        if (S_ISDIR(st.st_mode))
            rt_seterr(err, errlen, "%s: is a directory", path);
        else
            rt_seterr(err, errlen, "%s: not a regular file (%s)", path, kind(st.st_mode));
        close(fd);
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        rt_seterr(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (st_out)
        *st_out = st;
    return fd;
}

FILE *rt_fopen_input(const char *path, int flags, struct stat *st, char *err, size_t errlen) {
    int fd = rt_open_input(path, flags, st, err, errlen);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        rt_seterr(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        close(fd);
    }
    return f;
}
