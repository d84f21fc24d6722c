/*
 * HTTP/JSON API plumbing on nng's HTTP server and client.
 *
 * Server: routes (method + path, or a path prefix) registered before start.
 * nng runs handlers on its own threads; ours copy the request and hand it
 * to the loop, where the route's callback runs and answers with
 * mcos_http_respond*.  So API handlers read the daemon's state on the loop
 * thread, without locks, like every other input.
 *
 * Client: one blocking transaction, for mcos-admin and tests.
 *
 * nng error codes are translated by the bus module (mcos_bus_err).
 *
 * Thread-safety: server calls from the loop thread; the client is
 * reentrant.
 */
#ifndef MCOS_HTTP_H
#define MCOS_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct mcos_http_server;
struct mcos_http_request;

typedef void (*mcos_http_cb)(struct mcos_http_request *, void *arg);

/* Largest request body the server accepts (larger: 413). */
#define MCOS_HTTP_MAX_BODY (1u << 20)

/* Prepares a server for `url` (http://host:port). */
int mcos_http_server_create(uv_loop_t *, const char *url,
                            struct mcos_http_server **out, char *err,
                            size_t errlen);

/* Adds a route.  `prefix` makes it match every path under `path` too. */
int mcos_http_server_route(struct mcos_http_server *, const char *method,
                           const char *path, bool prefix, mcos_http_cb cb,
                           void *arg);

/* Starts listening. */
int mcos_http_server_start(struct mcos_http_server *, char *err,
                           size_t errlen);

/* Stops the server; requests waiting for the loop are answered 503. */
void mcos_http_server_close(struct mcos_http_server *);

/* The request's method, path (without query), query (or ""), body. */
const char *mcos_http_request_method(const struct mcos_http_request *);
const char *mcos_http_request_path(const struct mcos_http_request *);
const char *mcos_http_request_query(const struct mcos_http_request *);
const char *mcos_http_request_body(const struct mcos_http_request *,
                                   size_t *len);

/* Answers and frees the request. */
void mcos_http_respond(struct mcos_http_request *, int status,
                       const char *content_type, const void *body, size_t len);

/* Answers with a JSON document (steals the reference to `doc`). */
void mcos_http_respond_json(struct mcos_http_request *, int status,
                            json_t *doc);

/* Answers {"error": message} with `status`.  Messages quote requests (a
 * path, a key, cut to fit), so the message is made valid UTF-8 first
 * (mcos_utf8_sanitize): JSON strings must be. */
void mcos_http_respond_error(struct mcos_http_request *, int status,
                             const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Replaces, in place, every byte of `s` that is not part of a valid UTF-8
 * sequence (as jansson checks it: no overlong forms, no surrogates,
 * nothing above U+10FFFF, no character cut short) with '?'.  Returns how
 * many bytes it replaced. */
size_t mcos_utf8_sanitize(char *s);

/* One blocking transaction.  `body` may be NULL for GET.  On success
 * *status is the HTTP status and *resp a NUL-terminated malloc'd body. */
int mcos_http_fetch(const char *method, const char *url, const char *body,
                    size_t body_len, unsigned timeout_ms, int *status,
                    char **resp, size_t *resp_len, char *err, size_t errlen);

#endif /* MCOS_HTTP_H */
