/*
 * The control bus: nng request/reply sockets driven from a libuv loop, and
 * the only module that calls nng's socket API or sees its error codes
 * (mcos_bus_err translates them; the HTTP module uses it too).
 *
 * Server (the brain): a REP socket.  Each received request is handed to the
 * loop's callback as a struct mcos_bus_request that owns its nng context
 * until it is answered with mcos_bus_reply or dropped; an answer may be
 * deferred (a long poll), and the server keeps receiving meanwhile.
 *
 * Client (the agent): a REQ socket that dials and redials the server in the
 * background.  mcos_bus_call sends one request and calls back on the loop
 * with the reply, a timeout, or an error; calls run concurrently, each on
 * its own context.
 *
 * nng delivers completions on its own threads.  Those callbacks only queue
 * the result and wake the loop with uv_async_send; every user callback runs
 * on the loop thread.
 *
 * Lifetimes follow libuv: *_close starts shutdown, and memory is freed in
 * the loop's close callback, so the loop must run once more after close.
 *
 * Thread-safety: call everything from the loop thread.
 */
#ifndef MCOS_BUS_H
#define MCOS_BUS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct mcos_bus_server;
struct mcos_bus_request;
struct mcos_bus_client;
struct mcos_bus_call;

#define MCOS_BUS_ERR_LEN 256

/* Translates an nng error code into a negative errno. */
int mcos_bus_err(int nng_err);

typedef void (*mcos_bus_request_cb)(struct mcos_bus_request *, void *arg);

/* Listens on `url` (tcp://host:port, ipc:///path).  `cb` runs on the loop
 * for every request. */
int mcos_bus_server_create(uv_loop_t *, const char *url,
                           mcos_bus_request_cb cb, void *arg,
                           struct mcos_bus_server **out, char *err,
                           size_t errlen);

/* Stops receiving; requests not yet answered are dropped (their memory is
 * freed: the caller must not use them after close). */
void mcos_bus_server_close(struct mcos_bus_server *);

/* The request's bytes, valid until it is answered or dropped. */
const void *mcos_bus_request_data(const struct mcos_bus_request *,
                                  size_t *len);

/* Answers and frees the request.  Returns 0 or a negative errno (the
 * request is freed either way). */
int mcos_bus_reply(struct mcos_bus_request *, const void *data, size_t len);

/* Frees the request without answering (the client will time out). */
void mcos_bus_request_drop(struct mcos_bus_request *);

/* Called on the loop with status 0 and the reply, or a negative errno
 * (-ETIMEDOUT, -ECANCELED, ...) and no data.  `data` is valid only during
 * the callback. */
typedef void (*mcos_bus_reply_cb)(int status, const void *data, size_t len,
                                  void *arg);

/* Dials `url`, retrying in the background until the server is up. */
int mcos_bus_client_create(uv_loop_t *, const char *url,
                           struct mcos_bus_client **out, char *err,
                           size_t errlen);

/* Closes the socket.  Calls in flight are cancelled without callbacks. */
void mcos_bus_client_close(struct mcos_bus_client *);

/* Sends one request.  timeout_ms 0 waits forever.  On success *handle (if
 * not NULL) names the call until its callback has run. */
int mcos_bus_call(struct mcos_bus_client *, const void *data, size_t len,
                  uint32_t timeout_ms, mcos_bus_reply_cb cb, void *arg,
                  struct mcos_bus_call **handle);

/* Cancels a call in flight: its callback runs with -ECANCELED. */
void mcos_bus_call_cancel(struct mcos_bus_call *);

/* A persistent blocking connection for clients that are not event-driven
 * (libmcos, tools): one REQ socket, one request at a time.  Thread-safety:
 * one caller at a time per connection. */
struct mcos_bus_conn;

/* Dials `url` and waits up to timeout_ms for the connection.  Fails with
 * -ECONNREFUSED (or another negative errno) and a message if nobody is
 * there. */
int mcos_bus_conn_open(const char *url, uint32_t timeout_ms,
                       struct mcos_bus_conn **out, char *err, size_t errlen);

/* Sends a request and waits up to the timeout for the reply, which is
 * malloc'd into *rep. */
int mcos_bus_conn_call(struct mcos_bus_conn *, const void *data, size_t len,
                       void **rep, size_t *rep_len, char *err, size_t errlen);

void mcos_bus_conn_close(struct mcos_bus_conn *);

/* Identifies the connection a request came in on (stable for the life of
 * the peer's connection), so state tied to a client can be found again. */
uint32_t mcos_bus_request_peer(const struct mcos_bus_request *);

/* Called on the loop when a peer's connection goes away. */
typedef void (*mcos_bus_peer_gone_cb)(uint32_t peer, void *arg);
void mcos_bus_server_on_peer_gone(struct mcos_bus_server *,
                                  mcos_bus_peer_gone_cb cb, void *arg);

/* One blocking request/reply for command-line tools and tests.  The reply
 * is malloc'd into *rep. */
int mcos_bus_call_sync(const char *url, const void *data, size_t len,
                       uint32_t timeout_ms, void **rep, size_t *rep_len,
                       char *err, size_t errlen);

#endif /* MCOS_BUS_H */
