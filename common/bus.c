#include "bus.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#include "error.h"
#include "log.h"
#include "wire.h"

MCOS_LOG_MODULE(bus);

/* Requests the server keeps posted for receiving at once. */
#define SERVER_RECV_SLOTS 4

int
mcos_bus_err(int e)
{
    switch (e) {
    case 0:
        return 0;
    case NNG_EINTR:
        return -EINTR;
    case NNG_ENOMEM:
        return -ENOMEM;
    case NNG_EINVAL:
        return -EINVAL;
    case NNG_EBUSY:
        return -EBUSY;
    case NNG_ETIMEDOUT:
        return -ETIMEDOUT;
    case NNG_ECONNREFUSED:
        return -ECONNREFUSED;
    case NNG_ECLOSED:
        return -EBADF;
    case NNG_EAGAIN:
        return -EAGAIN;
    case NNG_ENOTSUP:
        return -ENOTSUP;
    case NNG_EADDRINUSE:
        return -EADDRINUSE;
    case NNG_ESTATE:
        return -EPROTO;
    case NNG_ENOENT:
        return -ENOENT;
    case NNG_EPROTO:
        return -EPROTO;
    case NNG_EUNREACHABLE:
        return -EHOSTUNREACH;
    case NNG_EADDRINVAL:
        return -EINVAL;
    case NNG_EPERM:
        return -EPERM;
    case NNG_EMSGSIZE:
        return -EMSGSIZE;
    case NNG_ECONNABORTED:
        return -ECONNABORTED;
    case NNG_ECONNRESET:
        return -ECONNRESET;
    case NNG_ECANCELED:
        return -ECANCELED;
    case NNG_ENOFILES:
        return -EMFILE;
    case NNG_ENOSPC:
        return -ENOSPC;
    case NNG_EEXIST:
        return -EEXIST;
    case NNG_EREADONLY:
    case NNG_EWRITEONLY:
        return -EACCES;
    case NNG_ECRYPTO:
    case NNG_EPEERAUTH:
        return -EACCES;
    case NNG_ENOARG:
    case NNG_EAMBIGUOUS:
    case NNG_EBADTYPE:
        return -EINVAL;
    case NNG_ECONNSHUT:
        return -ESHUTDOWN;
    case NNG_EINTERNAL:
    default:
        if (e & NNG_ESYSERR) {
            return -(e & ~NNG_ESYSERR);
        }
        return -EIO;
    }
}

/* ------------------------------------------------------------------------
 * A queue of completions handed from nng's threads to the loop. */

struct handoff {
    uv_async_t async;      /* wakes the loop */
    pthread_mutex_t mutex; /* guards head/tail */
    void *head;            /* first queued item */
    void **tail;           /* where the next item is linked */
};

/* Items embed `void *next` as their first member. */
static void
handoff_push(struct handoff *h, void *item)
{
    *(void **)item = NULL;
    pthread_mutex_lock(&h->mutex);
    *h->tail = item;
    h->tail = (void **)item;
    pthread_mutex_unlock(&h->mutex);
    uv_async_send(&h->async);
}

static void *
handoff_take_all(struct handoff *h)
{
    void *list;

    pthread_mutex_lock(&h->mutex);
    list = h->head;
    h->head = NULL;
    h->tail = &h->head;
    pthread_mutex_unlock(&h->mutex);
    return list;
}

static int
handoff_init(struct handoff *h, uv_loop_t *loop, uv_async_cb cb, void *data)
{
    int r;

    pthread_mutex_init(&h->mutex, NULL);
    h->head = NULL;
    h->tail = &h->head;
    r = uv_async_init(loop, &h->async, cb);
    if (r) {
        pthread_mutex_destroy(&h->mutex);
        return r;
    }
    h->async.data = data;
    return 0;
}

/* ------------------------------------------------------------------------
 * Server. */

enum slot_state {
    SLOT_RECEIVING, /* posted for a request */
    SLOT_HELD,      /* request handed to the user */
    SLOT_SENDING,   /* reply on its way */
};

struct mcos_bus_request {
    void *next;                         /* handoff link; must be first */
    struct mcos_bus_server *srv;        /* owner */
    nng_ctx ctx;                        /* this request's context */
    nng_aio *aio;                       /* receive, then send */
    nng_msg *msg;                       /* the request once received */
    enum slot_state state;              /* where it is in its life */
    int result;                         /* nng result of the last operation */
    uint32_t peer;                      /* the connection it came in on */
    struct mcos_bus_request *all_next;  /* link in srv->all */
    struct mcos_bus_request **all_prev; /* back link in srv->all */
};

struct mcos_bus_server {
    struct handoff done;           /* completed receives and sends */
    nng_socket sock;               /* REP socket */
    mcos_bus_request_cb cb;        /* user callback */
    void *arg;                     /* its argument */
    bool closing;                  /* close started: post nothing new */
    pthread_mutex_t all_mutex;     /* guards `all` */
    struct mcos_bus_request *all;  /* every slot, to stop them on close */
    char url[256];                 /* for log lines */
    struct handoff gone;           /* peers whose connection closed */
    mcos_bus_peer_gone_cb gone_cb; /* told of each, on the loop */
    void *gone_arg;                /* its argument */
    int open_handles;              /* uv handles not yet closed */
};

/* A closed peer connection on its way to the loop. */
struct gone_peer {
    void *next;  /* handoff link; must be first */
    uint32_t id; /* nng pipe id */
};

static void server_aio_cb(void *arg);

static void
slot_free(struct mcos_bus_request *s)
{
    struct mcos_bus_server *srv = s->srv;

    pthread_mutex_lock(&srv->all_mutex);
    *s->all_prev = s->all_next;
    if (s->all_next) {
        s->all_next->all_prev = s->all_prev;
    }
    pthread_mutex_unlock(&srv->all_mutex);
    /* Safe: never called from this aio's own callback. */
    nng_aio_free(s->aio);
    nng_ctx_close(s->ctx);
    if (s->msg) {
        nng_msg_free(s->msg);
    }
    free(s);
}

static int
slot_post(struct mcos_bus_server *srv)
{
    struct mcos_bus_request *s = calloc(1, sizeof *s);
    int r;

    if (!s) {
        return -ENOMEM;
    }
    s->srv = srv;
    r = nng_ctx_open(&s->ctx, srv->sock);
    if (r) {
        free(s);
        return mcos_bus_err(r);
    }
    r = nng_aio_alloc(&s->aio, server_aio_cb, s);
    if (r) {
        nng_ctx_close(s->ctx);
        free(s);
        return mcos_bus_err(r);
    }
    pthread_mutex_lock(&srv->all_mutex);
    s->all_next = srv->all;
    if (srv->all) {
        srv->all->all_prev = &s->all_next;
    }
    s->all_prev = &srv->all;
    srv->all = s;
    pthread_mutex_unlock(&srv->all_mutex);
    s->state = SLOT_RECEIVING;
    nng_ctx_recv(s->ctx, s->aio);
    return 0;
}

/* nng thread: only record and hand off. */
static void
server_aio_cb(void *arg)
{
    struct mcos_bus_request *s = arg;

    s->result = nng_aio_result(s->aio);
    if (s->state == SLOT_RECEIVING && s->result == 0) {
        s->msg = nng_aio_get_msg(s->aio);
        s->peer = nng_pipe_id(nng_msg_get_pipe(s->msg));
    } else if (s->state == SLOT_SENDING && s->result != 0) {
        /* The reply was not sent; its message is still ours. */
        nng_msg *m = nng_aio_get_msg(s->aio);

        if (m) {
            nng_msg_free(m);
        }
    }
    handoff_push(&s->srv->done, s);
}

static void
server_async_cb(uv_async_t *async)
{
    struct mcos_bus_server *srv = async->data;
    struct mcos_bus_request *s = handoff_take_all(&srv->done);

    while (s) {
        struct mcos_bus_request *next = s->next;

        if (s->state == SLOT_SENDING || srv->closing) {
            if (s->state == SLOT_SENDING && s->result) {
                LOG_DBG("%s: reply not sent: %s", srv->url,
                        nng_strerror(s->result));
            }
            slot_free(s);
        } else if (s->result) {
            /* A failed receive (not a close): post a fresh slot. */
            LOG_DBG("%s: receive failed: %s", srv->url,
                    nng_strerror(s->result));
            slot_free(s);
            if (slot_post(srv)) {
                LOG_ERR("%s: cannot post a receive", srv->url);
            }
        } else {
            /* Keep the number of posted receives constant: the held one is
             * replaced before the user sees it. */
            s->state = SLOT_HELD;
            if (slot_post(srv)) {
                LOG_ERR("%s: cannot post a receive", srv->url);
            }
            srv->cb(s, srv->arg);
        }
        s = next;
    }
}

/* nng thread: a peer's connection is gone. */
static void
pipe_gone(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    struct mcos_bus_server *srv = arg;
    struct gone_peer *g = malloc(sizeof *g);

    (void)ev;
    if (g) {
        g->id = nng_pipe_id(p);
        handoff_push(&srv->gone, g);
    }
}

static void
gone_async_cb(uv_async_t *async)
{
    struct mcos_bus_server *srv = async->data;
    struct gone_peer *g = handoff_take_all(&srv->gone);

    while (g) {
        struct gone_peer *next = g->next;

        if (srv->gone_cb && !srv->closing) {
            srv->gone_cb(g->id, srv->gone_arg);
        }
        free(g);
        g = next;
    }
}

void
mcos_bus_server_on_peer_gone(struct mcos_bus_server *srv,
                             mcos_bus_peer_gone_cb cb, void *arg)
{
    srv->gone_cb = cb;
    srv->gone_arg = arg;
}

uint32_t
mcos_bus_request_peer(const struct mcos_bus_request *req)
{
    return req->peer;
}

int
mcos_bus_server_create(uv_loop_t *loop, const char *url,
                       mcos_bus_request_cb cb, void *arg,
                       struct mcos_bus_server **out, char *err, size_t errlen)
{
    struct mcos_bus_server *srv = calloc(1, sizeof *srv);
    int r;

    if (!srv) {
        return -ENOMEM;
    }
    srv->cb = cb;
    srv->arg = arg;
    snprintf(srv->url, sizeof srv->url, "%s", url);
    pthread_mutex_init(&srv->all_mutex, NULL);

    r = nng_rep0_open(&srv->sock);
    if (r) {
        mcos_seterr(err, errlen, "cannot open a reply socket: %s",
                    nng_strerror(r));
        goto fail_free;
    }
    nng_socket_set_size(srv->sock, NNG_OPT_RECVMAXSZ, MCOS_WIRE_MAX_MSG);
    r = nng_listen(srv->sock, url, NULL, 0);
    if (r) {
        mcos_seterr(err, errlen, "cannot listen on %s: %s", url,
                    nng_strerror(r));
        goto fail_close;
    }
    r = handoff_init(&srv->done, loop, server_async_cb, srv);
    if (r) {
        mcos_seterr(err, errlen, "uv_async_init: %s", uv_strerror(r));
        nng_close(srv->sock);
        pthread_mutex_destroy(&srv->all_mutex);
        free(srv);
        return r;
    }
    srv->open_handles = 1;
    r = handoff_init(&srv->gone, loop, gone_async_cb, srv);
    if (r) {
        mcos_seterr(err, errlen, "uv_async_init: %s", uv_strerror(r));
        mcos_bus_server_close(srv);
        return r;
    }
    srv->open_handles = 2;
    nng_pipe_notify(srv->sock, NNG_PIPE_EV_REM_POST, pipe_gone, srv);
    for (int i = 0; i < SERVER_RECV_SLOTS; i++) {
        r = slot_post(srv);
        if (r) {
            mcos_seterr(err, errlen, "cannot post receives: %s", strerror(-r));
            mcos_bus_server_close(srv);
            return r;
        }
    }
    *out = srv;
    return 0;

fail_close:
    nng_close(srv->sock);
fail_free:
    pthread_mutex_destroy(&srv->all_mutex);
    free(srv);
    return mcos_bus_err(r);
}

static void
server_closed_cb(uv_handle_t *h)
{
    struct mcos_bus_server *srv = h->data;

    if (--srv->open_handles > 0) {
        return;
    }
    pthread_mutex_destroy(&srv->all_mutex);
    pthread_mutex_destroy(&srv->done.mutex);
    pthread_mutex_destroy(&srv->gone.mutex);
    free(srv);
}

void
mcos_bus_server_close(struct mcos_bus_server *srv)
{
    if (!srv) {
        return;
    }
    srv->closing = true;
    nng_close(srv->sock);
    /* First stop every slot's aio: after nng_aio_stop no callback is
     * running or will run.  Only then reset the hand-off queue (its links
     * run through the slots) and free the slots.  `all` changes only on
     * this thread, so it needs no lock here. */
    for (struct mcos_bus_request *s = srv->all; s; s = s->all_next) {
        nng_aio_stop(s->aio);
    }
    handoff_take_all(&srv->done);
    while (srv->all) {
        slot_free(srv->all);
    }
    /* nng_close ran every pipe callback; what they queued is ours. */
    if (srv->open_handles == 2) {
        struct gone_peer *g = handoff_take_all(&srv->gone);

        while (g) {
            struct gone_peer *next = g->next;

            free(g);
            g = next;
        }
        uv_close((uv_handle_t *)&srv->gone.async, server_closed_cb);
    }
    uv_close((uv_handle_t *)&srv->done.async, server_closed_cb);
}

const void *
mcos_bus_request_data(const struct mcos_bus_request *req, size_t *len)
{
    *len = nng_msg_len(req->msg);
    return nng_msg_body(req->msg);
}

/*
 * A message holding a copy of data[0..len), to hand to nng for sending.
 * Every message this module sends is made here, for one reason: nng 1.5
 * frees a message still queued on a pipe in its reaper thread, after
 * nng_close() has returned, and nng_fini() (which would wait for that)
 * races the same teardown and can crash (see git log for
 * mcos_bus_shutdown).  So a message sent just before a daemon exits may
 * still be held by nng when LeakSanitizer looks, and tests/lsan.supp names
 * this function, and nothing else, as the allocation LeakSanitizer may
 * ignore.  noinline keeps its name in the stack.
 */
__attribute__((noinline)) static int
bus_outgoing_msg(const void *data, size_t len, nng_msg **out)
{
    nng_msg *m;
    int r = nng_msg_alloc(&m, 0);

    if (r == 0) {
        r = nng_msg_append(m, data, len);
        if (r) {
            nng_msg_free(m);
        }
    }
    if (r == 0) {
        *out = m;
    }
    return r;
}

int
mcos_bus_reply(struct mcos_bus_request *req, const void *data, size_t len)
{
    nng_msg *m;
    int r;

    r = bus_outgoing_msg(data, len, &m);
    if (r) {
        slot_free(req);
        return mcos_bus_err(r);
    }
    nng_msg_free(req->msg);
    req->msg = NULL;
    req->state = SLOT_SENDING;
    nng_aio_set_msg(req->aio, m);
    nng_ctx_send(req->ctx, req->aio);
    return 0;
}

void
mcos_bus_request_drop(struct mcos_bus_request *req)
{
    if (req) {
        slot_free(req);
    }
}

/* ------------------------------------------------------------------------
 * Client. */

struct mcos_bus_call {
    void *next;                  /* handoff link; must be first */
    struct mcos_bus_client *cli; /* owner */
    nng_ctx ctx;                 /* this call's context */
    nng_aio *aio;                /* send, then receive */
    bool sending;                /* still in the send phase */
    pthread_mutex_t mutex;       /* orders cancel against posting the recv */
    bool cancelled;              /* cancel was asked for; guarded by mutex */
    int result;                  /* nng result */
    nng_msg *reply;              /* the reply when result is 0 */
    uint32_t timeout_ms;         /* per phase */
    mcos_bus_reply_cb cb;        /* user callback */
    void *arg;                   /* its argument */
    struct mcos_bus_call *all_next;  /* link in cli->all */
    struct mcos_bus_call **all_prev; /* back link */
};

struct mcos_bus_client {
    struct handoff done;       /* completed calls */
    nng_socket sock;           /* REQ socket */
    pthread_mutex_t all_mutex; /* guards `all` */
    struct mcos_bus_call *all; /* calls in flight */
};

static void
call_unlink(struct mcos_bus_call *c)
{
    pthread_mutex_lock(&c->cli->all_mutex);
    *c->all_prev = c->all_next;
    if (c->all_next) {
        c->all_next->all_prev = c->all_prev;
    }
    pthread_mutex_unlock(&c->cli->all_mutex);
}

static void
call_free(struct mcos_bus_call *c)
{
    pthread_mutex_destroy(&c->mutex);
    nng_aio_free(c->aio);
    nng_ctx_close(c->ctx);
    if (c->reply) {
        nng_msg_free(c->reply);
    }
    free(c);
}

/* nng thread. */
static void
call_aio_cb(void *arg)
{
    struct mcos_bus_call *c = arg;
    int r = nng_aio_result(c->aio);

    if (c->sending) {
        if (r) {
            nng_msg *m = nng_aio_get_msg(c->aio);

            if (m) {
                nng_msg_free(m);
            }
            c->result = r;
            handoff_push(&c->cli->done, c);
            return;
        }
        c->sending = false;
        /* A cancel that came while the send was finishing would find no
         * operation to cancel: check for it under the lock cancel takes,
         * and post the receive under it too. */
        pthread_mutex_lock(&c->mutex);
        if (c->cancelled) {
            pthread_mutex_unlock(&c->mutex);
            c->result = NNG_ECANCELED;
            handoff_push(&c->cli->done, c);
            return;
        }
        nng_aio_set_timeout(c->aio, c->timeout_ms ? (nng_duration)c->timeout_ms
                                                  : NNG_DURATION_INFINITE);
        nng_ctx_recv(c->ctx, c->aio);
        pthread_mutex_unlock(&c->mutex);
        return;
    }
    c->result = r;
    if (r == 0) {
        c->reply = nng_aio_get_msg(c->aio);
    }
    handoff_push(&c->cli->done, c);
}

static void
client_async_cb(uv_async_t *async)
{
    struct mcos_bus_client *cli = async->data;
    struct mcos_bus_call *c = handoff_take_all(&cli->done);

    while (c) {
        struct mcos_bus_call *next = c->next;

        call_unlink(c);
        if (c->result) {
            c->cb(mcos_bus_err(c->result), NULL, 0, c->arg);
        } else {
            c->cb(0, nng_msg_body(c->reply), nng_msg_len(c->reply), c->arg);
        }
        call_free(c);
        c = next;
    }
}

int
mcos_bus_client_create(uv_loop_t *loop, const char *url,
                       struct mcos_bus_client **out, char *err, size_t errlen)
{
    struct mcos_bus_client *cli = calloc(1, sizeof *cli);
    int r;

    if (!cli) {
        return -ENOMEM;
    }
    pthread_mutex_init(&cli->all_mutex, NULL);
    r = nng_req0_open(&cli->sock);
    if (r) {
        mcos_seterr(err, errlen, "cannot open a request socket: %s",
                    nng_strerror(r));
        goto fail;
    }
    nng_socket_set_size(cli->sock, NNG_OPT_RECVMAXSZ, MCOS_WIRE_MAX_MSG);
    nng_socket_set_ms(cli->sock, NNG_OPT_RECONNMINT, 100);
    nng_socket_set_ms(cli->sock, NNG_OPT_RECONNMAXT, 2000);
    /* We resend on our own schedule (the next report); nng's resend would
     * only duplicate work the brain has to recognise. */
    nng_socket_set_ms(cli->sock, NNG_OPT_REQ_RESENDTIME,
                      NNG_DURATION_INFINITE);
    r = nng_dial(cli->sock, url, NULL, NNG_FLAG_NONBLOCK);
    if (r) {
        mcos_seterr(err, errlen, "cannot dial %s: %s", url, nng_strerror(r));
        nng_close(cli->sock);
        goto fail;
    }
    r = handoff_init(&cli->done, loop, client_async_cb, cli);
    if (r) {
        mcos_seterr(err, errlen, "uv_async_init: %s", uv_strerror(r));
        nng_close(cli->sock);
        pthread_mutex_destroy(&cli->all_mutex);
        free(cli);
        return r;
    }
    *out = cli;
    return 0;

fail:
    pthread_mutex_destroy(&cli->all_mutex);
    free(cli);
    return mcos_bus_err(r);
}

static void
client_closed_cb(uv_handle_t *h)
{
    struct mcos_bus_client *cli = h->data;

    pthread_mutex_destroy(&cli->all_mutex);
    pthread_mutex_destroy(&cli->done.mutex);
    free(cli);
}

void
mcos_bus_client_close(struct mcos_bus_client *cli)
{
    if (!cli) {
        return;
    }
    nng_close(cli->sock);
    /* As for the server: stop all, reset the queue, then free. */
    for (struct mcos_bus_call *c = cli->all; c; c = c->all_next) {
        nng_aio_stop(c->aio);
    }
    handoff_take_all(&cli->done);
    while (cli->all) {
        struct mcos_bus_call *c = cli->all;

        call_unlink(c);
        call_free(c);
    }
    uv_close((uv_handle_t *)&cli->done.async, client_closed_cb);
}

int
mcos_bus_call(struct mcos_bus_client *cli, const void *data, size_t len,
              uint32_t timeout_ms, mcos_bus_reply_cb cb, void *arg,
              struct mcos_bus_call **handle)
{
    struct mcos_bus_call *c = calloc(1, sizeof *c);
    nng_msg *m = NULL;
    int r;

    if (!c) {
        return -ENOMEM;
    }
    c->cli = cli;
    c->cb = cb;
    c->arg = arg;
    c->timeout_ms = timeout_ms;
    c->sending = true;
    pthread_mutex_init(&c->mutex, NULL);
    r = nng_ctx_open(&c->ctx, cli->sock);
    if (r) {
        pthread_mutex_destroy(&c->mutex);
        free(c);
        return mcos_bus_err(r);
    }
    r = nng_aio_alloc(&c->aio, call_aio_cb, c);
    if (r) {
        goto fail_ctx;
    }
    r = bus_outgoing_msg(data, len, &m);
    if (r) {
        goto fail_aio;
    }
    pthread_mutex_lock(&cli->all_mutex);
    c->all_next = cli->all;
    if (cli->all) {
        cli->all->all_prev = &c->all_next;
    }
    c->all_prev = &cli->all;
    cli->all = c;
    pthread_mutex_unlock(&cli->all_mutex);

    nng_aio_set_msg(c->aio, m);
    nng_aio_set_timeout(c->aio, timeout_ms ? (nng_duration)timeout_ms
                                           : NNG_DURATION_INFINITE);
    if (handle) {
        *handle = c;
    }
    nng_ctx_send(c->ctx, c->aio);
    return 0;

fail_aio:
    nng_aio_free(c->aio);
fail_ctx:
    nng_ctx_close(c->ctx);
    pthread_mutex_destroy(&c->mutex);
    free(c);
    return mcos_bus_err(r);
}

void
mcos_bus_call_cancel(struct mcos_bus_call *c)
{
    if (c) {
        pthread_mutex_lock(&c->mutex);
        c->cancelled = true;
        nng_aio_cancel(c->aio);
        pthread_mutex_unlock(&c->mutex);
    }
}

int
mcos_bus_call_sync(const char *url, const void *data, size_t len,
                   uint32_t timeout_ms, void **rep, size_t *rep_len, char *err,
                   size_t errlen)
{
    struct mcos_bus_conn *c;
    int r = mcos_bus_conn_open(url, timeout_ms, &c, err, errlen);

    if (r == 0) {
        r = mcos_bus_conn_call(c, data, len, rep, rep_len, err, errlen);
        mcos_bus_conn_close(c);
    }
    return r;
}

/* ------------------------------------------------------------------------
 * Blocking connection. */

struct mcos_bus_conn {
    nng_socket sock; /* REQ socket */
    char url[256];   /* for messages */
};

int
mcos_bus_conn_open(const char *url, uint32_t timeout_ms,
                   struct mcos_bus_conn **out, char *err, size_t errlen)
{
    struct mcos_bus_conn *c = calloc(1, sizeof *c);
    int r;

    if (!c) {
        return -ENOMEM;
    }
    snprintf(c->url, sizeof c->url, "%s", url);
    r = nng_req0_open(&c->sock);
    if (r) {
        mcos_seterr(err, errlen, "cannot open a request socket: %s",
                    nng_strerror(r));
        free(c);
        return mcos_bus_err(r);
    }
    nng_socket_set_ms(c->sock, NNG_OPT_SENDTIMEO, (nng_duration)timeout_ms);
    nng_socket_set_ms(c->sock, NNG_OPT_RECVTIMEO, (nng_duration)timeout_ms);
    nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ, MCOS_WIRE_MAX_MSG);
    nng_socket_set_ms(c->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    /* A synchronous dial: a missing agent is an error now, not a hang. */
    r = nng_dial(c->sock, url, NULL, 0);
    if (r) {
        mcos_seterr(err, errlen, "cannot connect to %s: %s", url,
                    nng_strerror(r));
        nng_close(c->sock);
        free(c);
        return mcos_bus_err(r);
    }
    *out = c;
    return 0;
}

int
mcos_bus_conn_call(struct mcos_bus_conn *c, const void *data, size_t len,
                   void **rep, size_t *rep_len, char *err, size_t errlen)
{
    nng_msg *m = NULL;
    int r;

    r = bus_outgoing_msg(data, len, &m);
    if (r == 0) {
        r = nng_sendmsg(c->sock, m, 0);
        if (r == 0) {
            m = NULL;
        }
    }
    if (r) {
        mcos_seterr(err, errlen, "cannot send to %s: %s", c->url,
                    nng_strerror(r));
        goto out;
    }
    r = nng_recvmsg(c->sock, &m, 0);
    if (r) {
        mcos_seterr(err, errlen, "no reply from %s: %s", c->url,
                    nng_strerror(r));
        goto out;
    }
    *rep_len = nng_msg_len(m);
    *rep = malloc(*rep_len ? *rep_len : 1);
    if (!*rep) {
        r = NNG_ENOMEM;
        goto out;
    }
    memcpy(*rep, nng_msg_body(m), *rep_len);
out:
    if (m) {
        nng_msg_free(m);
    }
    return mcos_bus_err(r);
}

void
mcos_bus_conn_close(struct mcos_bus_conn *c)
{
    if (c) {
        nng_close(c->sock);
        free(c);
    }
}
