/* err.h - user errors: one message into a caller's buffer. */
#ifndef NETC_BASE_ERR_H
#define NETC_BASE_ERR_H

#include <stddef.h>

/* vsnprintf into err (errlen bytes); nothing when err is NULL. */
void rt_seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
