#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *
mcos_strerror(int err)
{
    const char *s;

    if (err == 0) {
        return "success";
    }
    if (err > 0) {
        return "not an error code (positive value)";
    }
    /* strerrordesc_np, unlike strerror, is thread-safe and never builds a
     * string in a shared buffer. */
    s = strerrordesc_np(-err);
    return s ? s : "unknown error";
}

void
mcos_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || !errlen) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}
