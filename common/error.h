/*
 * Error codes.  Every MCOS function that can fail returns an int: >= 0 on
 * success, a negative errno value on failure (libuv's convention).  The
 * codes used across the project and what they mean here:
 *
 *   -EINVAL          a bad argument or a bad value in a message or config
 *   -ENOENT          unknown node, object, key or file
 *   -EEXIST          already there (duplicate)
 *   -ENOSPC          a tier or table is full
 *   -EMSGSIZE        a message or body over its size limit
 *   -EBADMSG         a message that does not decode
 *   -EPROTONOSUPPORT a protocol or table format major version we do not speak
 *   -EPROTO          a message that decodes but breaks the protocol
 *   -ETIMEDOUT       a deadline passed
 *   -ECONNREFUSED    nobody listens at the address
 *   -ESTALE          a generation or reference that is out of date
 *   -ENOTSUP         a feature not available on this node
 *
 * Each dependency's own error space (nng, protobuf-c, ibverbs, curl) is
 * translated into these in exactly one module.
 *
 * Thread-safety: all functions are thread-safe.
 */
#ifndef MCOS_ERROR_H
#define MCOS_ERROR_H

#include <stddef.h>

/* Formats a message into a caller's error buffer (err may be NULL): the
 * `char *err, size_t errlen` pair that every validating function takes. */
void mcos_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A short description of `err` (negative errno, or 0 for "success").  The
 * string is static and never freed. */
const char *mcos_strerror(int err);

#endif /* MCOS_ERROR_H */
