/*
 * TCP transport: one-sided READ and WRITE into peers' registered regions
 * over plain TCP, for clusters without RDMA.
 *
 * The backend owns a libuv loop on its own pthread.  Other threads reach
 * it through a command queue under `lock` and a uv_async_t; disconnect,
 * dereg and fini wait on `cond` until the loop has done their part.
 *
 * Client side: a connection to a peer is `conns` sockets.  An op is cut
 * into slices of `slice` bytes, and slices are striped over the sockets
 * with several requests outstanding on each (bounded in count and bytes),
 * so one large op keeps every socket busy.  The op completes when all its
 * slices have been answered; the first slice error is the op's error.
 *
 * Server side: every accepted socket must complete a handshake that the
 * admit callback approves; then each request's region, key and range are
 * checked against this backend's copy of the registration table.
 *
 * Small ops are batched without changing the wire format: the slices one
 * dispatch puts on a socket go out in one uv_write (one writev), the
 * responses a server socket makes during one turn of the loop go out
 * together when the turn's reads are done (a uv_check handle), and a
 * client reads as many response headers at once as it has requests
 * outstanding, up to the first READ (whose payload goes straight to its
 * destination).  Freed slots are refilled once per turn, not once per
 * answer, so the next batch forms.
 *
 * Payload is never copied in user space: the server receives a WRITE
 * straight into the registered region (the read buffer libuv is handed
 * points into the destination and covers exactly the payload still to
 * come, so headers and payload never share a buffer) and sends a READ
 * from the region with uv_write; the client sends from and receives into
 * op->local the same way.  Only headers and error texts are copied.
 * libuv's error codes are negative errnos on Unix, so they pass through.
 *
 * Wire protocol, version 1.  Integers are little-endian.
 *
 *   Client hello, sent as soon as a socket connects:
 *      0  6  magic "MCOSXP"
 *      6  2  version (1)
 *      8  2  name_len: bytes of the client's node name, 1..63
 *     10  2  expect_len: bytes of the node it expects to reach, 1..63
 *     12  8  the client's boot id
 *     20     the client's node name, then the expected node's name
 *
 *   Server hello, the answer:
 *      0  6  magic "MCOSXP"
 *      6  2  version (1)
 *      8  2  status (below); 0 admits the socket
 *     10  2  name_len: bytes of the server's node name, 1..63
 *     12  2  text_len: bytes of the error text, 0..159
 *     14  2  zero
 *     16  8  the server's boot id
 *     24     the server's node name, then the error text
 *   A refused socket is closed once the answer is out; so is one that has
 *   not sent a complete hello within 5 s.  Node names are printable.
 *
 *   Request, 40 bytes; any number may be outstanding on a socket:
 *      0  4  opcode: 1 READ, 2 WRITE
 *      4  4  region id, 1..8
 *      8  8  remote address: the region's addr plus an offset
 *     16  8  length, 1..2^30
 *     24  8  the region's key
 *     32  8  tag, echoed in the response
 *   A WRITE is followed by exactly `length` bytes of payload, also when
 *   it is refused (the server then reads and drops them).
 *
 *   Response, 16 bytes, in request order on each socket:
 *      0  8  tag
 *      8  4  status (below)
 *     12  4  bytes that follow: a READ's payload (its length) when status
 *            is 0, nothing for a WRITE, else the error text (0..159)
 *
 *   Status: 0 ok; 1 not admitted; 2 malformed hello; 3 wrong node;
 *   4 unsupported version; 5 server busy; 6 region not registered;
 *   7 wrong key; 8 outside the region; 9 malformed request (the server
 *   closes the socket after answering); 10 region deregistered during
 *   the write.
 */
#include "transport.h"
#include "tier.h"

#include <errno.h>
#include <pthread.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <uv.h>

#define TCP_MAGIC         "MCOSXP"
#define TCP_MAGIC_LEN     6
#define TCP_VERSION       1
#define TCP_HELLO_LEN     20
#define TCP_WELCOME_LEN   24
#define TCP_REQ_LEN       40
#define TCP_RESP_LEN      16
#define TCP_NAME_MAX      (AGENT_TRANSPORT_NODE_MAX - 1)
#define TCP_TEXT_MAX      (AGENT_TRANSPORT_ERR_LEN - 1)
#define TCP_DEFAULT_CONNS 4
#define TCP_DEFAULT_SLICE (UINT64_C(1) << 20)
/* The largest request: the largest slice the generic layer accepts. */
#define TCP_MAX_LEN (UINT64_C(1) << 30)
/* Requests outstanding per client socket. */
#define TCP_DEPTH 64
/* Payload bytes outstanding per client socket (at least two slices). */
#define TCP_SOCK_BYTES (UINT64_C(4) << 20)
/* A server socket must finish its hello within this. */
#define TCP_HELLO_MS 5000
/* A client socket must connect and be admitted within this. */
#define TCP_CONNECT_MS 10000
/* Responses a server socket may have queued before it stops reading: a
 * client that does not read its answers cannot make us buffer more. */
#define TCP_SRV_PENDING 256
/* Responses a server socket gathers into one write: every response made
 * while the loop handles one batch of reads goes out in one writev. */
#define TCP_OUT_MAX 64
/* Header and error-text bytes one such write can hold. */
#define TCP_OUT_HEADS 4096
/* Server sockets at once; more are answered "busy". */
#define TCP_MAX_SOCKS 1024
/* Where refused WRITE payload is read to be dropped. */
#define TCP_SCRATCH (64 * 1024)
#define TCP_BACKLOG 128

/* Status codes on the wire, for hellos and responses. */
enum tcp_status {
    TCP_ST_OK = 0,
    TCP_ST_NOT_ADMITTED = 1,
    TCP_ST_BAD_HELLO = 2,
    TCP_ST_WRONG_NODE = 3,
    TCP_ST_VERSION = 4,
    TCP_ST_BUSY = 5,
    TCP_ST_NO_REGION = 6,
    TCP_ST_BAD_KEY = 7,
    TCP_ST_RANGE = 8,
    TCP_ST_BAD_REQUEST = 9,
    TCP_ST_WITHDRAWN = 10,
};

/* What a command asks of the loop thread. */
enum tcp_cmd_kind {
    TCP_CMD_CONNECT,    /* open the sockets of a new connection */
    TCP_CMD_DISCONNECT, /* cancel its ops, close it, free it */
    TCP_CMD_STOP,       /* close everything and leave the loop */
};

struct tcp_conn;

/* A request to the loop thread; owned by whoever queued it. */
struct tcp_cmd {
    enum tcp_cmd_kind kind; /* what to do */
    struct tcp_conn *conn;  /* CONNECT, DISCONNECT: the connection */
    bool *done;             /* DISCONNECT: set under lock when finished */
    struct tcp_cmd *next;   /* queue link */
};

/* Our copy of a registration, checked by the server for each request. */
struct tcp_region {
    bool used;     /* registered */
    uint8_t *base; /* local memory */
    uint64_t addr; /* address peers name for base */
    uint64_t len;  /* bytes */
    uint64_t key;  /* secret peers must present */
    unsigned refs; /* server transfers touching the memory now */
    bool withdraw; /* dereg waits for the loop to stop those transfers */
};

/* Counters; relaxed atomics, as any thread may read them. */
struct tcp_counters {
    _Atomic uint64_t ops;            /* ops completed */
    _Atomic uint64_t op_errors;      /* ... with an error */
    _Atomic uint64_t bytes_read;     /* READ payload received */
    _Atomic uint64_t bytes_written;  /* WRITE payload acknowledged */
    _Atomic uint64_t bytes_served;   /* payload peers moved in our regions */
    _Atomic uint64_t refused;        /* hellos and requests refused */
    _Atomic uint64_t connects;       /* sockets admitted (both sides) */
    _Atomic uint64_t connect_errors; /* client sockets that failed to open */
    _Atomic uint64_t cpu_copy_bytes; /* payload copied by the CPU: none */
};

#define COUNT(t, member, v)                                                   \
    atomic_fetch_add_explicit(&(t)->cnt.member, (uint64_t)(v),                \
                              memory_order_relaxed)

/* The TCP backend; base comes first for AGENT_CONTAINER_OF. */
struct tcp_transport {
    struct agent_transport base; /* the generic part */
    /* Set by init, then read-only. */
    char node[AGENT_TRANSPORT_NODE_MAX]; /* our node name */
    uint64_t boot_id;                    /* our boot id */
    unsigned nconns;                     /* sockets per peer */
    uint64_t slice;                      /* bytes per slice */
    uint64_t sock_bytes;            /* payload outstanding per client socket */
    uint16_t port;                  /* listener's port, 0 without one */
    agent_transport_admit_cb admit; /* decides who may connect */
    void *admit_arg;                /* passed to admit */
    pthread_t thread;               /* runs loop */
    /* Shared, under lock. */
    pthread_mutex_t lock; /* guards the members below and conns' shared
                             members */
    pthread_cond_t cond;  /* signalled when a waited-for command is done */
    struct tcp_cmd *cmds; /* commands for the loop, in order */
    struct tcp_cmd **cmds_tail; /* where the next command goes */
    struct tcp_conn *kicked;    /* conns with newly posted ops */
    struct tcp_region regions[AGENT_TRANSPORT_MAX_REGIONS]; /* by index */
    bool stopping; /* fini has begun: refuse new work */
    /* The loop thread's own. */
    uv_loop_t loop;              /* the event loop */
    uv_async_t async;            /* wakes it for commands */
    uv_tcp_t listener;           /* accepts peers */
    uv_check_t flusher;          /* sends gathered writes, once a turn */
    struct srv_sock *flush;      /* sockets with gathered responses */
    struct tcp_conn *redispatch; /* conns with slots freed this turn */
    bool listening;              /* listener is initialised */
    struct tcp_conn *conns;      /* client connections */
    struct srv_sock *socks;      /* accepted sockets */
    unsigned nsocks;             /* ... how many */
    uint8_t *scratch;            /* refused payload is dropped here */
    struct tcp_counters cnt;     /* counters */
};

/* --- Server side state ------------------------------------------------ */

/* What the next bytes on a server socket are. */
enum srv_rx {
    SRX_NONE,        /* closing */
    SRX_HELLO,       /* the fixed part of the client hello */
    SRX_HELLO_NAMES, /* the names that follow it */
    SRX_HDR,         /* a request header */
    SRX_PAYLOAD,     /* a WRITE's payload, into the region */
    SRX_DISCARD,     /* a refused WRITE's payload, dropped */
    SRX_DRAIN,       /* refused: drop all until the peer closes */
};

/* An accepted socket. */
struct srv_sock {
    uv_tcp_t tcp;                 /* the socket */
    uv_timer_t timer;             /* hello (or lingering) deadline */
    uv_shutdown_t shut;           /* our FIN after a refusal */
    struct tcp_transport *t;      /* owner */
    struct srv_sock *prev, *next; /* t->socks */
    int handles_open;             /* tcp and timer not yet closed */
    enum srv_rx rx;               /* what is being read */
    /* The client hello or a request header. */
    uint8_t buf[TCP_HELLO_LEN + 2 * TCP_NAME_MAX];
    uint64_t got;                        /* bytes of the current unit read */
    uint64_t need;                       /* bytes it has */
    uint64_t tag;                        /* current request's tag */
    uint8_t *dst;                        /* PAYLOAD: where it goes */
    uint32_t region;                     /* PAYLOAD: index of the region */
    uint32_t pend_status;                /* DISCARD: the answer once dropped */
    char pend_text[TCP_TEXT_MAX + 1];    /* DISCARD: its text */
    char peer[AGENT_TRANSPORT_NODE_MAX]; /* the client's node name */
    /* READ payloads queued for writing, by region. */
    unsigned reads_from[AGENT_TRANSPORT_MAX_REGIONS];
    unsigned pending;            /* responses not yet written */
    struct srv_out *out;         /* responses gathered, not yet sent */
    struct srv_sock *flush_next; /* t->flush link */
    bool on_flush;               /* on t->flush */
    bool paused;                 /* reading stopped for backpressure */
    bool admitted;               /* hello accepted */
    bool counted;                /* refusal already counted */
    bool ending;                 /* refused: answer, shut down, drain, close */
    bool shut_sent;              /* uv_shutdown called */
    bool closing;                /* uv_close called */
};

/* Server writes: responses (and hello answers) made during one turn of
 * the loop, sent with one uv_write when the turn's reads are done.
 * Headers and texts are copied into `heads`; READ payload is sent in
 * place from its region, whose reference the batch holds. */
struct srv_out {
    uv_write_t req;                /* the write */
    struct srv_sock *s;            /* the socket */
    unsigned n;                    /* responses */
    unsigned nbufs;                /* entries of bufs */
    size_t used;                   /* bytes of heads */
    int region[TCP_OUT_MAX];       /* per response: payload's region, -1 */
    uint64_t payload[TCP_OUT_MAX]; /* per response: payload bytes */
    uv_buf_t bufs[2 * TCP_OUT_MAX];
    uint8_t heads[TCP_OUT_HEADS];
};

/* --- Client side state ------------------------------------------------ */

enum cli_state {
    CS_CONNECTING, /* TCP connect under way */
    CS_HELLO,      /* hello sent, answer awaited */
    CS_UP,         /* admitted: carries requests */
    CS_CLOSED,     /* uv_close called */
};

/* What the next bytes on a client socket are. */
enum cli_rx {
    CRX_NONE,         /* nothing expected yet */
    CRX_WELCOME,      /* the fixed part of the server hello */
    CRX_WELCOME_TAIL, /* its name and text */
    CRX_RESP,         /* a response header */
    CRX_PAYLOAD,      /* a READ's payload, into op->local */
    CRX_ERRTEXT,      /* a refusal's text */
};

struct cli_sock;

/* One request in flight: a slice of an op. */
struct tcp_slot {
    struct agent_transport_op *op; /* the op, NULL when free */
    uint64_t off;                  /* offset of the slice in the op */
    uint64_t len;                  /* its bytes */
    uint64_t tag;                  /* request tag */
    int status;                    /* answer: 0 or a negative errno */
    uint8_t hdr[TCP_REQ_LEN];      /* the request header */
};

/* The requests one dispatch issued on one socket: one uv_write. */
struct cli_out {
    uv_write_t req;               /* the write */
    struct cli_sock *s;           /* the socket */
    unsigned n;                   /* requests (consecutive slots) */
    unsigned nbufs;               /* entries of bufs */
    uv_buf_t bufs[2 * TCP_DEPTH]; /* headers and WRITE payloads */
};

/* Response bytes a client socket reads at once: as many headers as it
 * has requests outstanding (payload never lands here). */
#define CLI_RBUF (TCP_DEPTH * TCP_RESP_LEN)

/* One socket of a connection.  Slots form a ring: `issued`, `answered`
 * and `written` count requests sent, answered and fully written; a slot
 * is done when both answered and written, which happens in order. */
struct cli_sock {
    uv_tcp_t tcp;         /* the socket */
    uv_connect_t creq;    /* the connect */
    uv_timer_t timer;     /* connect and hello deadline */
    uv_write_t hello_req; /* the hello's write */
    struct tcp_conn *c;   /* owner */
    unsigned index;       /* in c->socks */
    int handles_open;     /* tcp and timer not yet closed */
    enum cli_state state; /* see enum */
    enum cli_rx rx;       /* what is being read */
    /* The server hello, response headers, or a refusal's text. */
    uint8_t buf[CLI_RBUF > TCP_WELCOME_LEN + TCP_NAME_MAX + TCP_TEXT_MAX
                    ? CLI_RBUF
                    : TCP_WELCOME_LEN + TCP_NAME_MAX + TCP_TEXT_MAX];
    uint8_t *dst;                     /* PAYLOAD: where it goes */
    uint64_t got;                     /* bytes of the current unit read */
    uint64_t need;                    /* bytes it has */
    int resp_status;                  /* ERRTEXT: the refusal's errno */
    uint64_t issued;                  /* requests sent */
    uint64_t answered;                /* ... answered */
    uint64_t written;                 /* ... whose write completed */
    uint64_t bytes_out;               /* payload bytes of unfinished slots */
    struct cli_out *out;              /* this dispatch's requests */
    struct tcp_slot slots[TCP_DEPTH]; /* ring */
};

/* A connection to one peer, as returned by connect. */
struct tcp_conn {
    struct tcp_transport *t;             /* owner */
    char node[AGENT_TRANSPORT_NODE_MAX]; /* who we expect */
    uint64_t boot_id;                    /* its boot id, 0: any */
    char where[96];                      /* "address:port", for texts */
    struct sockaddr_storage addr;        /* where it listens */
    /* Our hello, the same on every socket. */
    uint8_t hello[TCP_HELLO_LEN + 2 * TCP_NAME_MAX];
    size_t hello_len;   /* its bytes */
    struct tcp_cmd cmd; /* the CONNECT command */
    /* Under t->lock. */
    struct agent_transport_op *incoming;       /* posted, not yet taken */
    struct agent_transport_op **incoming_tail; /* append point */
    bool kicked;                               /* on t->kicked */
    struct tcp_conn *kick_next;                /* t->kicked link */
    bool closing;                              /* disconnect has begun */
    int status;                                /* 0 or why it broke */
    char err[AGENT_TRANSPORT_ERR_LEN];         /* its text */
    /* The loop thread's own (it also writes status and err). */
    struct tcp_conn *prev, *next;           /* t->conns */
    struct tcp_conn *ready_next;            /* this wake's kicked conns */
    struct agent_transport_op *arrived;     /* taken from incoming */
    struct agent_transport_op *queue;       /* ops not fully issued */
    struct agent_transport_op **queue_tail; /* append point */
    uint64_t head_off;                      /* issued bytes of queue head */
    unsigned nsocks;                        /* sockets wanted */
    unsigned open;                          /* sockets not yet freed */
    bool linked;                            /* on t->conns */
    bool freeing;                           /* free when open reaches 0 */
    bool *done;                             /* disconnect's flag */
    bool on_redispatch;                     /* on t->redispatch */
    struct tcp_conn *redispatch_next;       /* t->redispatch link */
    struct cli_sock *socks[64];             /* by index */
};

static struct tcp_transport *
tcp_of(struct agent_transport *t)
{
    return AGENT_CONTAINER_OF(t, struct tcp_transport, base);
}

static struct tcp_conn *
conn_of(struct agent_transport_conn *c)
{
    return (struct tcp_conn *)(void *)c;
}

/* --- Little-endian fields --------------------------------------------- */

static void
put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void
put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void
put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint16_t
get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (unsigned)p[1] << 8);
}

static uint32_t
get32(const uint8_t *p)
{
    uint32_t v = 0;

    for (int i = 3; i >= 0; i--) {
        v = v << 8 | p[i];
    }
    return v;
}

static uint64_t
get64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--) {
        v = v << 8 | p[i];
    }
    return v;
}

/* True for 1..63 printable bytes, the names a handshake may carry. */
static bool
name_ok(const uint8_t *p, size_t n)
{
    if (n == 0 || n > TCP_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (p[i] < 0x20 || p[i] >= 0x7f) {
            return false;
        }
    }
    return true;
}

/* Copies a peer's text for display, replacing control bytes. */
static void
copy_text(char *dst, const uint8_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        dst[i] = src[i] < 0x20 || src[i] >= 0x7f ? '?' : (char)src[i];
    }
    dst[n] = '\0';
}

/* The errno a wire status stands for: the one translation. */
static int
status_errno(uint32_t st)
{
    switch (st) {
    case TCP_ST_NOT_ADMITTED:
    case TCP_ST_BAD_KEY:
        return -EACCES;
    case TCP_ST_BAD_HELLO:
    case TCP_ST_WRONG_NODE:
    case TCP_ST_BAD_REQUEST:
        return -EPROTO;
    case TCP_ST_VERSION:
        return -EPROTONOSUPPORT;
    case TCP_ST_BUSY:
        return -EAGAIN;
    case TCP_ST_NO_REGION:
    case TCP_ST_WITHDRAWN:
        return -ENOENT;
    case TCP_ST_RANGE:
        return -ERANGE;
    }
    return -EIO;
}

static int
parse_addr(const char *address, uint16_t port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (uv_ip4_addr(address, port, (struct sockaddr_in *)ss) == 0) {
        return 0;
    }
    if (uv_ip6_addr(address, port, (struct sockaddr_in6 *)ss) == 0) {
        return 0;
    }
    return -EINVAL;
}

static void
format_where(char *buf, size_t len, const char *address, uint16_t port)
{
    if (strchr(address, ':')) {
        snprintf(buf, len, "[%s]:%u", address, (unsigned)port);
    } else {
        snprintf(buf, len, "%s:%u", address, (unsigned)port);
    }
}

static void
cmd_push(struct tcp_transport *t, struct tcp_cmd *cmd)
{
    cmd->next = NULL;
    *t->cmds_tail = cmd;
    t->cmds_tail = &cmd->next;
}

/* --- Ops ---------------------------------------------------------------- */

static uint64_t
slices_of(const struct tcp_transport *t, uint64_t len)
{
    return (len + t->slice - 1) / t->slice;
}

/* Records the op's first error; later ones are dropped. */
static void op_error(struct agent_transport_op *op, int status,
                     const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
op_error(struct agent_transport_op *op, int status, const char *fmt, ...)
{
    va_list ap;

    if (op->status != 0) {
        return;
    }
    op->status = status;
    va_start(ap, fmt);
    vsnprintf(op->error, sizeof op->error, fmt, ap);
    va_end(ap);
}

static void
op_finish(struct tcp_transport *t, struct agent_transport_op *op)
{
    COUNT(t, ops, 1);
    if (op->status != 0) {
        COUNT(t, op_errors, 1);
    }
    op->next = NULL;
    op->done(op, op->arg);
}

/* Fails ops that never reached the queue (a list through op->next). */
static void
fail_list(struct tcp_transport *t, struct agent_transport_op *ops, int status,
          const char *text)
{
    while (ops) {
        struct agent_transport_op *op = ops;

        ops = op->next;
        op_error(op, status, "%s", text);
        op->slices_left = 0;
        op_finish(t, op);
    }
}

/* --- Server side -------------------------------------------------------- */

static void srv_close(struct srv_sock *s);
static void conn_dispatch(struct tcp_conn *c);
static void srv_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void srv_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void
region_put(struct tcp_transport *t, uint32_t index)
{
    pthread_mutex_lock(&t->lock);
    t->regions[index].refs--;
    pthread_mutex_unlock(&t->lock);
}

/* Checks a request against the registration table.  On success takes a
 * reference on the region (dropped with region_put) and points *ptr at
 * the first byte. */
static uint32_t
region_check(struct tcp_transport *t, uint32_t id, uint64_t addr, uint64_t len,
             uint64_t key, uint8_t **ptr, char *text, size_t textlen)
{
    struct tcp_region *r = NULL;
    uint32_t st = TCP_ST_OK;

    pthread_mutex_lock(&t->lock);
    if (id >= 1 && id <= AGENT_TRANSPORT_MAX_REGIONS) {
        r = &t->regions[id - 1];
    }
    if (!r || !r->used) {
        st = TCP_ST_NO_REGION;
        snprintf(text, textlen, "region %u is not registered", id);
    } else if (key != r->key) {
        st = TCP_ST_BAD_KEY;
        snprintf(text, textlen, "region %u: wrong key", id);
    } else if (addr < r->addr || addr - r->addr > r->len ||
               len > r->len - (addr - r->addr)) {
        st = TCP_ST_RANGE;
        snprintf(text, textlen,
                 "address 0x%llx + %llu is outside region %u "
                 "(0x%llx+%llu)",
                 (unsigned long long)addr, (unsigned long long)len, id,
                 (unsigned long long)r->addr, (unsigned long long)r->len);
    } else {
        *ptr = r->base + (addr - r->addr);
        r->refs++;
    }
    pthread_mutex_unlock(&t->lock);
    return st;
}

static void
srv_shut(uv_shutdown_t *req, int status)
{
    struct srv_sock *s = req->handle->data;

    if (status < 0 && !s->closing) {
        srv_close(s);
    }
}

/* Drops a batch's region references; `sent` counts its payload. */
static void
out_release(struct srv_out *w, bool sent)
{
    struct srv_sock *s = w->s;
    struct tcp_transport *t = s->t;

    for (unsigned i = 0; i < w->n; i++) {
        if (w->region[i] < 0) {
            continue;
        }
        s->reads_from[w->region[i]]--;
        region_put(t, (uint32_t)w->region[i]);
        if (sent) {
            COUNT(t, bytes_served, w->payload[i]);
        }
    }
    s->pending -= w->n;
    free(w);
}

static void
srv_written(uv_write_t *req, int status)
{
    struct srv_out *w = AGENT_CONTAINER_OF(req, struct srv_out, req);
    struct srv_sock *s = w->s;

    out_release(w, status == 0);
    if (s->closing) {
        return;
    }
    if (status < 0) {
        srv_close(s);
        return;
    }
    if (s->ending && s->pending == 0 && !s->shut_sent) {
        /* Half-close and keep reading until the peer closes too:
         * closing with its bytes unread would reset the connection and
         * could destroy our answer before the peer reads it. */
        s->shut_sent = true;
        if (uv_shutdown(&s->shut, (uv_stream_t *)&s->tcp, srv_shut) != 0) {
            srv_close(s);
        }
        return;
    }
    if (s->paused && !s->ending && s->pending <= TCP_SRV_PENDING / 2) {
        s->paused = false;
        if (uv_read_start((uv_stream_t *)&s->tcp, srv_alloc, srv_read) != 0) {
            srv_close(s);
        }
    }
}

/* Sends what the socket has gathered, in one write. */
static void
srv_flush(struct srv_sock *s)
{
    struct srv_out *w = s->out;
    int r;

    if (!w) {
        return;
    }
    s->out = NULL;
    r = uv_write(&w->req, (uv_stream_t *)&s->tcp, w->bufs, w->nbufs,
                 srv_written);
    if (r < 0) {
        out_release(w, false);
        srv_close(s);
    }
}

/* The loop has handled this turn's reads: send every gathered batch. */
static void
flush_cb(uv_check_t *check)
{
    struct tcp_transport *t = check->data;
    struct tcp_conn *c;
    struct srv_sock *s;

    while ((c = t->redispatch) != NULL) {
        t->redispatch = c->redispatch_next;
        c->on_redispatch = false;
        c->redispatch_next = NULL;
        conn_dispatch(c);
    }
    while ((s = t->flush) != NULL) {
        t->flush = s->flush_next;
        s->on_flush = false;
        s->flush_next = NULL;
        srv_flush(s);
    }
    uv_check_stop(check);
}

/* Takes s off t->flush. */
static void
flush_unlink(struct srv_sock *s)
{
    struct srv_sock **pp = &s->t->flush;

    if (!s->on_flush) {
        return;
    }
    while (*pp != s) {
        pp = &(*pp)->flush_next;
    }
    *pp = s->flush_next;
    s->on_flush = false;
    s->flush_next = NULL;
}

/* Queues a header (copied) and optional payload (sent in place, from
 * region `region`, whose reference the write then owns).  It goes out
 * with the other responses of this turn of the loop. */
static int
srv_send(struct srv_sock *s, const void *head, size_t hlen, void *payload,
         uint64_t plen, int region)
{
    struct tcp_transport *t = s->t;
    struct srv_out *w = s->out;

    if (w && (w->n == TCP_OUT_MAX || w->used + hlen > TCP_OUT_HEADS)) {
        srv_flush(s);
        if (s->closing) {
            if (region >= 0) {
                region_put(t, (uint32_t)region);
            }
            return -EPIPE;
        }
        w = NULL;
    }
    if (!w) {
        w = malloc(sizeof *w);
        if (!w) {
            if (region >= 0) {
                region_put(t, (uint32_t)region);
            }
            srv_close(s);
            return -ENOMEM;
        }
        w->s = s;
        w->n = 0;
        w->nbufs = 0;
        w->used = 0;
        s->out = w;
        if (!s->on_flush) {
            uv_check_start(&t->flusher, flush_cb); /* no-op if started */
            s->on_flush = true;
            s->flush_next = t->flush;
            t->flush = s;
        }
    }
    memcpy(w->heads + w->used, head, hlen);
    w->bufs[w->nbufs++] =
        uv_buf_init((char *)w->heads + w->used, (unsigned)hlen);
    w->used += hlen;
    if (plen > 0) {
        w->bufs[w->nbufs++] = uv_buf_init(payload, (unsigned)plen);
    }
    w->region[w->n] = region;
    w->payload[w->n] = plen;
    w->n++;
    if (region >= 0) {
        s->reads_from[region]++;
    }
    s->pending++;
    if (s->pending >= TCP_SRV_PENDING && !s->paused) {
        s->paused = true;
        uv_read_stop((uv_stream_t *)&s->tcp);
    }
    return 0;
}

/* Answers a request with a status and text (empty for success). */
static void
srv_answer(struct srv_sock *s, uint32_t st, const char *text)
{
    uint8_t hdr[TCP_RESP_LEN + TCP_TEXT_MAX];
    size_t tlen = strnlen(text, TCP_TEXT_MAX);

    put64(hdr, s->tag);
    put32(hdr + 8, st);
    put32(hdr + 12, (uint32_t)tlen);
    memcpy(hdr + TCP_RESP_LEN, text, tlen);
    srv_send(s, hdr, TCP_RESP_LEN + tlen, NULL, 0, -1);
}

/* Sends the server hello. */
static void
srv_welcome(struct srv_sock *s, uint16_t st, const char *text)
{
    struct tcp_transport *t = s->t;
    uint8_t hdr[TCP_WELCOME_LEN + TCP_NAME_MAX + TCP_TEXT_MAX];
    size_t nlen = strlen(t->node);
    size_t tlen = strnlen(text, TCP_TEXT_MAX);

    memcpy(hdr, TCP_MAGIC, TCP_MAGIC_LEN);
    put16(hdr + 6, TCP_VERSION);
    put16(hdr + 8, st);
    put16(hdr + 10, (uint16_t)nlen);
    put16(hdr + 12, (uint16_t)tlen);
    put16(hdr + 14, 0);
    put64(hdr + 16, t->boot_id);
    memcpy(hdr + TCP_WELCOME_LEN, t->node, nlen);
    memcpy(hdr + TCP_WELCOME_LEN + nlen, text, tlen);
    srv_send(s, hdr, TCP_WELCOME_LEN + nlen + tlen, NULL, 0, -1);
}

static void srv_hello_timeout(uv_timer_t *timer);

/* After a refusal: read nothing more into buffers that matter, and give
 * the peer TCP_HELLO_MS to read the answer and close. */
static void
srv_end(struct srv_sock *s)
{
    s->rx = SRX_DRAIN;
    s->ending = true;
    if (s->paused) {
        s->paused = false;
        if (uv_read_start((uv_stream_t *)&s->tcp, srv_alloc, srv_read) != 0) {
            srv_close(s);
            return;
        }
    }
    uv_timer_start(&s->timer, srv_hello_timeout, TCP_HELLO_MS, 0);
}

static void srv_refuse(struct srv_sock *s, uint16_t st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Refuses a hello: answers, then ends the socket (srv_end). */
static void
srv_refuse(struct srv_sock *s, uint16_t st, const char *fmt, ...)
{
    char text[TCP_TEXT_MAX + 1];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (!s->counted) {
        s->counted = true;
        COUNT(s->t, refused, 1);
    }
    srv_end(s);
    srv_welcome(s, st, text);
}

static void srv_violation(struct srv_sock *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A request we cannot even frame: answer it, then close the socket. */
static void
srv_violation(struct srv_sock *s, const char *fmt, ...)
{
    char text[TCP_TEXT_MAX + 1];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    COUNT(s->t, refused, 1);
    srv_end(s);
    srv_answer(s, TCP_ST_BAD_REQUEST, text);
}

static void
srv_closed(uv_handle_t *h)
{
    struct srv_sock *s = h->data;
    struct tcp_transport *t = s->t;

    if (--s->handles_open > 0) {
        return;
    }
    if (s->prev) {
        s->prev->next = s->next;
    } else {
        t->socks = s->next;
    }
    if (s->next) {
        s->next->prev = s->prev;
    }
    t->nsocks--;
    free(s);
}

static void
srv_close(struct srv_sock *s)
{
    if (s->closing) {
        return;
    }
    s->closing = true;
    if (!s->admitted && !s->counted) {
        /* Closed before a complete hello: truncated, timed out, or a
         * peer that is not one of us. */
        s->counted = true;
        COUNT(s->t, refused, 1);
    }
    if (s->rx == SRX_PAYLOAD) {
        region_put(s->t, s->region);
    }
    flush_unlink(s);
    if (s->out) {
        out_release(s->out, false);
        s->out = NULL;
    }
    s->rx = SRX_NONE;
    uv_close((uv_handle_t *)&s->tcp, srv_closed);
    uv_close((uv_handle_t *)&s->timer, srv_closed);
}

static void
srv_hello_timeout(uv_timer_t *timer)
{
    srv_close(timer->data);
}

static void
srv_hello_fixed(struct srv_sock *s)
{
    const uint8_t *p = s->buf;
    unsigned version = get16(p + 6);
    unsigned nlen = get16(p + 8);
    unsigned elen = get16(p + 10);

    if (memcmp(p, TCP_MAGIC, TCP_MAGIC_LEN) != 0) {
        srv_refuse(s, TCP_ST_BAD_HELLO, "malformed handshake: bad magic");
    } else if (version != TCP_VERSION) {
        srv_refuse(s, TCP_ST_VERSION,
                   "unsupported protocol version %u (this node speaks %u)",
                   version, TCP_VERSION);
    } else if (nlen < 1 || nlen > TCP_NAME_MAX) {
        srv_refuse(s, TCP_ST_BAD_HELLO,
                   "malformed handshake: node name of %u bytes", nlen);
    } else if (elen < 1 || elen > TCP_NAME_MAX) {
        srv_refuse(s, TCP_ST_BAD_HELLO,
                   "malformed handshake: expected node name of %u bytes",
                   elen);
    } else {
        s->rx = SRX_HELLO_NAMES;
        s->need = TCP_HELLO_LEN + nlen + elen;
    }
}

static void
srv_hello_names(struct srv_sock *s)
{
    struct tcp_transport *t = s->t;
    const uint8_t *p = s->buf;
    size_t nlen = get16(p + 8), elen = get16(p + 10);
    uint64_t boot = get64(p + 12);
    const uint8_t *name = p + TCP_HELLO_LEN, *expect = name + nlen;
    char want[AGENT_TRANSPORT_NODE_MAX];
    char why[TCP_TEXT_MAX + 1] = "";

    if (!name_ok(name, nlen)) {
        srv_refuse(s, TCP_ST_BAD_HELLO,
                   "malformed handshake: node name has a byte that is "
                   "not printable");
        return;
    }
    if (!name_ok(expect, elen)) {
        srv_refuse(s, TCP_ST_BAD_HELLO,
                   "malformed handshake: expected node name has a byte "
                   "that is not printable");
        return;
    }
    memcpy(s->peer, name, nlen);
    s->peer[nlen] = '\0';
    memcpy(want, expect, elen);
    want[elen] = '\0';
    if (strcmp(want, t->node) != 0) {
        srv_refuse(s, TCP_ST_WRONG_NODE, "this is node %s, not %s", t->node,
                   want);
        return;
    }
    if (!t->admit(t->admit_arg, s->peer, boot, why, sizeof why)) {
        if (!why[0]) {
            snprintf(why, sizeof why, "node %s is not admitted", s->peer);
        }
        srv_refuse(s, TCP_ST_NOT_ADMITTED, "%s", why);
        return;
    }
    s->admitted = true;
    uv_timer_stop(&s->timer);
    COUNT(t, connects, 1);
    s->rx = SRX_HDR;
    s->got = 0;
    s->need = TCP_REQ_LEN;
    srv_welcome(s, TCP_ST_OK, "");
}

static void
srv_request(struct srv_sock *s)
{
    struct tcp_transport *t = s->t;
    const uint8_t *p = s->buf;
    uint32_t opcode = get32(p), id = get32(p + 4);
    uint64_t addr = get64(p + 8), len = get64(p + 16);
    uint64_t key = get64(p + 24);
    char text[TCP_TEXT_MAX + 1];
    uint8_t *ptr = NULL;
    uint32_t st;

    s->tag = get64(p + 32);
    s->got = 0;
    if (opcode != AGENT_TRANSPORT_READ && opcode != AGENT_TRANSPORT_WRITE) {
        srv_violation(s, "unknown opcode %u", opcode);
        return;
    }
    if (len == 0 || len > TCP_MAX_LEN) {
        srv_violation(s, "request length %llu is outside 1..%llu",
                      (unsigned long long)len,
                      (unsigned long long)TCP_MAX_LEN);
        return;
    }
    st = region_check(t, id, addr, len, key, &ptr, text, sizeof text);
    if (st != TCP_ST_OK) {
        COUNT(t, refused, 1);
        if (opcode == AGENT_TRANSPORT_WRITE) {
            /* Read its payload into the void so the stream stays in
             * step; answer when it is gone. */
            s->rx = SRX_DISCARD;
            s->need = len;
            s->pend_status = st;
            memcpy(s->pend_text, text, sizeof text);
            return;
        }
        s->rx = SRX_HDR;
        s->need = TCP_REQ_LEN;
        srv_answer(s, st, text);
        return;
    }
    if (opcode == AGENT_TRANSPORT_WRITE) {
        s->rx = SRX_PAYLOAD;
        s->dst = ptr;
        s->region = id - 1;
        s->need = len;
        return;
    }
    s->rx = SRX_HDR;
    s->need = TCP_REQ_LEN;
    {
        uint8_t hdr[TCP_RESP_LEN];

        put64(hdr, s->tag);
        put32(hdr + 8, TCP_ST_OK);
        put32(hdr + 12, (uint32_t)len);
        srv_send(s, hdr, sizeof hdr, ptr, len, (int)(id - 1));
    }
}

static void
srv_payload_done(struct srv_sock *s)
{
    uint64_t len = s->need;

    s->rx = SRX_HDR;
    s->got = 0;
    s->need = TCP_REQ_LEN;
    region_put(s->t, s->region);
    COUNT(s->t, bytes_served, len);
    srv_answer(s, TCP_ST_OK, "");
}

static void
srv_discard_done(struct srv_sock *s)
{
    s->rx = SRX_HDR;
    s->got = 0;
    s->need = TCP_REQ_LEN;
    srv_answer(s, s->pend_status, s->pend_text);
}

static void
srv_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct srv_sock *s = h->data;
    uint64_t left = s->need - s->got;

    (void)hint;
    switch (s->rx) {
    case SRX_HELLO:
    case SRX_HELLO_NAMES:
    case SRX_HDR:
        buf->base = (char *)s->buf + s->got;
        buf->len = left;
        return;
    case SRX_PAYLOAD:
        buf->base = (char *)s->dst + s->got;
        buf->len = left;
        return;
    case SRX_DISCARD:
        buf->base = (char *)s->t->scratch;
        buf->len = left < TCP_SCRATCH ? left : TCP_SCRATCH;
        return;
    case SRX_DRAIN:
        buf->base = (char *)s->t->scratch;
        buf->len = TCP_SCRATCH;
        return;
    case SRX_NONE:
        break;
    }
    buf->base = NULL;
    buf->len = 0;
}

static void
srv_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct srv_sock *s = st->data;

    (void)buf;
    if (nread == 0 || s->closing) {
        return;
    }
    if (nread < 0) {
        srv_close(s);
        return;
    }
    if (s->rx == SRX_DRAIN) {
        return;
    }
    s->got += (uint64_t)nread;
    if (s->got < s->need) {
        return;
    }
    switch (s->rx) {
    case SRX_HELLO:
        srv_hello_fixed(s);
        break;
    case SRX_HELLO_NAMES:
        srv_hello_names(s);
        break;
    case SRX_HDR:
        srv_request(s);
        break;
    case SRX_PAYLOAD:
        srv_payload_done(s);
        break;
    case SRX_DISCARD:
        srv_discard_done(s);
        break;
    case SRX_DRAIN:
    case SRX_NONE:
        break;
    }
}

static void
srv_accept(uv_stream_t *lst, int status)
{
    struct tcp_transport *t = lst->data;
    struct srv_sock *s;

    if (status < 0) {
        return;
    }
    s = calloc(1, sizeof *s);
    if (!s) {
        return; /* it waits in the backlog; the next accept may do */
    }
    s->t = t;
    uv_tcp_init(&t->loop, &s->tcp);
    uv_timer_init(&t->loop, &s->timer);
    s->tcp.data = s;
    s->timer.data = s;
    s->handles_open = 2;
    s->next = t->socks;
    if (t->socks) {
        t->socks->prev = s;
    }
    t->socks = s;
    t->nsocks++;
    if (uv_accept(lst, (uv_stream_t *)&s->tcp) != 0) {
        s->counted = true;
        srv_close(s);
        return;
    }
    uv_tcp_nodelay(&s->tcp, 1);
    s->rx = SRX_HELLO;
    s->need = TCP_HELLO_LEN;
    uv_timer_start(&s->timer, srv_hello_timeout, TCP_HELLO_MS, 0);
    if (uv_read_start((uv_stream_t *)&s->tcp, srv_alloc, srv_read) != 0) {
        srv_close(s);
        return;
    }
    if (t->nsocks > TCP_MAX_SOCKS) {
        srv_refuse(s, TCP_ST_BUSY, "node %s has too many connections",
                   t->node);
    }
}

/* Stops every server transfer that touches region `index`: WRITEs being
 * received drop the rest of their payload, and sockets with READ payload
 * still queued in libuv are closed.  Afterwards nothing touches it. */
static void
withdraw(struct tcp_transport *t, uint32_t index)
{
    for (struct srv_sock *s = t->socks; s; s = s->next) {
        if (s->closing) {
            continue;
        }
        if (s->rx == SRX_PAYLOAD && s->region == index) {
            s->rx = SRX_DISCARD;
            s->pend_status = TCP_ST_WITHDRAWN;
            snprintf(s->pend_text, sizeof s->pend_text,
                     "region %u was deregistered during the write", index + 1);
            region_put(t, index);
        }
        /* Payload gathered but not yet sent, or sent but still in
         * libuv's queue, would be read from the region after it is
         * gone. */
        if (s->reads_from[index] > 0 &&
            (s->out ||
             uv_stream_get_write_queue_size((uv_stream_t *)&s->tcp) > 0)) {
            srv_close(s);
        }
    }
}

/* --- Client side -------------------------------------------------------- */

static void conn_fail(struct tcp_conn *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void conn_redispatch(struct tcp_conn *c);

static void
conn_free(struct tcp_conn *c)
{
    struct tcp_transport *t = c->t;

    if (c->on_redispatch) {
        struct tcp_conn **pp = &t->redispatch;

        while (*pp != c) {
            pp = &(*pp)->redispatch_next;
        }
        *pp = c->redispatch_next;
        c->on_redispatch = false;
    }
    if (c->linked) {
        if (c->prev) {
            c->prev->next = c->next;
        } else {
            t->conns = c->next;
        }
        if (c->next) {
            c->next->prev = c->prev;
        }
    }
    if (c->done) {
        pthread_mutex_lock(&t->lock);
        *c->done = true;
        pthread_cond_broadcast(&t->cond);
        pthread_mutex_unlock(&t->lock);
    }
    free(c);
}

/* Removes a failed op from the queue head, with the slices it will now
 * never issue. */
static void
conn_unqueue(struct tcp_conn *c, struct agent_transport_op *op)
{
    if (c->queue != op) {
        return;
    }
    op->slices_left -= slices_of(c->t, op->len - c->head_off);
    c->head_off = 0;
    c->queue = op->next;
    if (!c->queue) {
        c->queue_tail = &c->queue;
    }
}

/* Fails every queued op with the connection's error. */
static void
conn_drain(struct tcp_conn *c)
{
    struct agent_transport_op *op;

    while ((op = c->queue) != NULL) {
        op_error(op, c->status, "%s", c->err);
        conn_unqueue(c, op);
        if (op->slices_left == 0) {
            op_finish(c->t, op);
        }
    }
}

static void
slot_done(struct cli_sock *s, struct tcp_slot *sl)
{
    struct tcp_transport *t = s->c->t;
    struct agent_transport_op *op = sl->op;

    sl->op = NULL;
    s->bytes_out -= sl->len;
    if (sl->status == 0) {
        if (op->opcode == AGENT_TRANSPORT_READ) {
            COUNT(t, bytes_read, sl->len);
        } else {
            COUNT(t, bytes_written, sl->len);
        }
    }
    if (--op->slices_left == 0) {
        op_finish(t, op);
    }
}

static void
cli_closed(uv_handle_t *h)
{
    struct cli_sock *s = h->data;
    struct tcp_conn *c = s->c;

    if (--s->handles_open > 0) {
        return;
    }
    c->socks[s->index] = NULL;
    free(s);
    c->open--;
    if (c->freeing && c->open == 0) {
        conn_free(c);
    }
}

/* Closes a socket; its unfinished slots fail with the conn's error. */
static void
cli_close(struct cli_sock *s)
{
    struct tcp_conn *c = s->c;
    uint64_t first;

    if (s->state == CS_CLOSED) {
        return;
    }
    s->state = CS_CLOSED;
    s->rx = CRX_NONE;
    free(s->out); /* its slots fail below, as unwritten ones */
    s->out = NULL;
    uv_close((uv_handle_t *)&s->tcp, cli_closed);
    uv_close((uv_handle_t *)&s->timer, cli_closed);
    first = s->answered < s->written ? s->answered : s->written;
    for (uint64_t i = first; i < s->issued; i++) {
        struct tcp_slot *sl = &s->slots[i % TCP_DEPTH];

        if (!sl->op) {
            continue;
        }
        op_error(sl->op, c->status, "%s", c->err);
        sl->status = c->status;
        slot_done(s, sl);
    }
}

static void conn_vfail(struct tcp_conn *c, int status, const char *fmt,
                       va_list ap) __attribute__((format(printf, 3, 0)));

static void
conn_vfail(struct tcp_conn *c, int status, const char *fmt, va_list ap)
{
    if (c->status == 0) {
        char text[AGENT_TRANSPORT_ERR_LEN];

        vsnprintf(text, sizeof text, fmt, ap);
        pthread_mutex_lock(&c->t->lock);
        c->status = status;
        memcpy(c->err, text, sizeof text);
        pthread_mutex_unlock(&c->t->lock);
    }
    for (unsigned i = 0; i < c->nsocks; i++) {
        if (c->socks[i]) {
            cli_close(c->socks[i]);
        }
    }
    conn_drain(c);
}

/* Breaks the connection: every socket closes, every op fails with this
 * error (the first one given), and so will every later op. */
static void
conn_fail(struct tcp_conn *c, int status, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    conn_vfail(c, status, fmt, ap);
    va_end(ap);
}

static void cli_failed(struct cli_sock *s, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A socket failed; before it was admitted that is a connect error. */
static void
cli_failed(struct cli_sock *s, int status, const char *fmt, ...)
{
    va_list ap;

    if (s->state != CS_UP) {
        COUNT(s->c->t, connect_errors, 1);
    }
    va_start(ap, fmt);
    conn_vfail(s->c, status, fmt, ap);
    va_end(ap);
}

static void
cli_lost(struct cli_sock *s, int uverr)
{
    struct tcp_conn *c = s->c;
    const char *why =
        uverr == UV_EOF ? "closed by the peer" : uv_strerror(uverr);

    if (s->state == CS_UP) {
        cli_failed(s, -ECONNRESET, "connection to %s at %s was lost: %s",
                   c->node, c->where, why);
    } else {
        cli_failed(s, -ECONNRESET,
                   "%s at %s closed the connection during the "
                   "handshake: %s",
                   c->node, c->where, why);
    }
}

static void
cli_request_written(uv_write_t *req, int status)
{
    struct cli_out *w = AGENT_CONTAINER_OF(req, struct cli_out, req);
    struct cli_sock *s = w->s;
    unsigned n = w->n;

    free(w);
    if (s->state == CS_CLOSED) {
        return;
    }
    if (status < 0) {
        cli_lost(s, status);
        return;
    }
    while (n-- > 0) {
        uint64_t idx = s->written++;

        if (s->answered > idx) {
            slot_done(s, &s->slots[idx % TCP_DEPTH]);
        }
    }
    if (s->state == CS_UP) {
        conn_redispatch(s->c);
    }
}

/* Sends the requests this dispatch put on s, in one write. */
static int
cli_flush(struct cli_sock *s)
{
    struct cli_out *w = s->out;
    int r;

    if (!w) {
        return 0;
    }
    s->out = NULL;
    r = uv_write(&w->req, (uv_stream_t *)&s->tcp, w->bufs, w->nbufs,
                 cli_request_written);
    if (r < 0) {
        free(w);
        cli_lost(s, r);
    }
    return r;
}

/* Puts one slice of op on s; cli_flush sends it. */
static int
cli_issue(struct cli_sock *s, struct agent_transport_op *op, uint64_t off,
          uint64_t len)
{
    struct tcp_slot *sl = &s->slots[s->issued % TCP_DEPTH];
    struct cli_out *w = s->out;

    if (!w) {
        w = malloc(sizeof *w);
        if (!w) {
            conn_fail(s->c, -ENOMEM, "sending to %s: out of memory",
                      s->c->node);
            return -ENOMEM;
        }
        w->s = s;
        w->n = 0;
        w->nbufs = 0;
        s->out = w;
    }
    sl->op = op;
    sl->off = off;
    sl->len = len;
    sl->tag = s->issued;
    sl->status = 0;
    put32(sl->hdr, (uint32_t)op->opcode);
    put32(sl->hdr + 4, op->remote.id);
    put64(sl->hdr + 8, op->remote.addr + op->remote_off + off);
    put64(sl->hdr + 16, len);
    put64(sl->hdr + 24, op->remote.key);
    put64(sl->hdr + 32, sl->tag);
    w->bufs[w->nbufs++] = uv_buf_init((char *)sl->hdr, TCP_REQ_LEN);
    if (op->opcode == AGENT_TRANSPORT_WRITE) {
        w->bufs[w->nbufs++] =
            uv_buf_init((char *)op->local + off, (unsigned)len);
    }
    w->n++;
    s->issued++;
    s->bytes_out += len;
    return 0;
}

/* The admitted socket with the fewest bytes outstanding that has room
 * for len more, or NULL. */
static struct cli_sock *
conn_pick(struct tcp_conn *c, uint64_t len)
{
    struct cli_sock *best = NULL;

    for (unsigned i = 0; i < c->nsocks; i++) {
        struct cli_sock *s = c->socks[i];
        uint64_t done;

        if (!s || s->state != CS_UP) {
            continue;
        }
        done = s->answered < s->written ? s->answered : s->written;
        if (s->issued - done >= TCP_DEPTH) {
            continue;
        }
        if (s->bytes_out > 0 && s->bytes_out + len > c->t->sock_bytes) {
            continue;
        }
        if (!best || s->bytes_out < best->bytes_out) {
            best = s;
        }
    }
    return best;
}

/* Issues queued slices while some socket has room; each socket's share
 * goes out in one write. */
static void
conn_dispatch(struct tcp_conn *c)
{
    while (c->queue && c->status == 0) {
        struct agent_transport_op *op = c->queue;
        uint64_t off = c->head_off;
        uint64_t len =
            op->len - off < c->t->slice ? op->len - off : c->t->slice;
        struct cli_sock *s = conn_pick(c, len);

        if (!s) {
            break;
        }
        c->head_off += len;
        if (c->head_off == op->len) {
            c->head_off = 0;
            c->queue = op->next;
            if (!c->queue) {
                c->queue_tail = &c->queue;
            }
            op->next = NULL;
        }
        if (cli_issue(s, op, off, len) < 0) {
            return;
        }
    }
    for (unsigned i = 0; i < c->nsocks && c->status == 0; i++) {
        if (c->socks[i] && c->socks[i]->out) {
            cli_flush(c->socks[i]);
        }
    }
}

/* Slots were freed: dispatch once this turn's reads are all handled, so
 * that the requests they make room for go out together. */
static void
conn_redispatch(struct tcp_conn *c)
{
    struct tcp_transport *t = c->t;

    if (c->on_redispatch || !c->queue) {
        return;
    }
    uv_check_start(&t->flusher, flush_cb); /* no-op if started */
    c->on_redispatch = true;
    c->redispatch_next = t->redispatch;
    t->redispatch = c;
}

static void cli_protocol(struct cli_sock *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The peer broke the protocol: the connection cannot be trusted. */
static void
cli_protocol(struct cli_sock *s, const char *fmt, ...)
{
    char text[AGENT_TRANSPORT_ERR_LEN];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    cli_failed(s, -EPROTO, "%s at %s broke the protocol: %s", s->c->node,
               s->c->where, text);
}

/* The response for the oldest unanswered slot has fully arrived. */
static void
slot_answered(struct cli_sock *s, int status, const char *text)
{
    struct tcp_conn *c = s->c;
    uint64_t idx = s->answered++;
    struct tcp_slot *sl = &s->slots[idx % TCP_DEPTH];

    if (status != 0) {
        sl->status = status;
        op_error(sl->op, status, "%s: %s", c->node, text);
        conn_unqueue(c, sl->op);
    }
    if (s->written > idx) {
        slot_done(s, sl);
    }
}

/* Handles the responses in s->buf: every complete one, up to a READ's
 * payload or an error text that has not fully arrived.  A partial header
 * stays at the start of the buffer. */
static void
cli_responses(struct cli_sock *s)
{
    uint64_t pos = 0;

    while (s->state == CS_UP && s->got - pos >= TCP_RESP_LEN) {
        const uint8_t *p = s->buf + pos;
        uint64_t tag = get64(p);
        uint32_t st = get32(p + 8), len = get32(p + 12);
        struct tcp_slot *sl;
        char text[TCP_TEXT_MAX + 1];
        int status;

        pos += TCP_RESP_LEN;
        if (s->answered == s->issued) {
            cli_protocol(s, "a response to no request");
            return;
        }
        sl = &s->slots[s->answered % TCP_DEPTH];
        if (tag != sl->tag) {
            cli_protocol(s, "response tag %llu, expected %llu",
                         (unsigned long long)tag, (unsigned long long)sl->tag);
            return;
        }
        if (st == TCP_ST_OK) {
            uint64_t want =
                sl->op->opcode == AGENT_TRANSPORT_READ ? sl->len : 0;

            if (len != want) {
                cli_protocol(s, "%u bytes answer a request for %llu", len,
                             (unsigned long long)want);
                return;
            }
            if (len == 0) {
                slot_answered(s, 0, NULL);
                continue;
            }
            /* cli_alloc never reads past a READ's response header. */
            s->rx = CRX_PAYLOAD;
            s->dst = (uint8_t *)sl->op->local + sl->off;
            s->got = 0;
            s->need = len;
            return;
        }
        if (len > TCP_TEXT_MAX) {
            cli_protocol(s, "an error text of %u bytes", len);
            return;
        }
        status = status_errno(st);
        if (len == 0) {
            slot_answered(s, status, "refused, no reason given");
            continue;
        }
        if (s->got - pos < len) {
            /* The rest of the text is still to come. */
            memmove(s->buf, s->buf + pos, s->got - pos);
            s->got -= pos;
            s->rx = CRX_ERRTEXT;
            s->resp_status = status;
            s->need = len;
            return;
        }
        copy_text(text, s->buf + pos, len);
        pos += len;
        slot_answered(s, status, text);
    }
    if (s->state != CS_UP) {
        return;
    }
    memmove(s->buf, s->buf + pos, s->got - pos);
    s->got -= pos;
    s->need = TCP_RESP_LEN;
}

/* Bytes to read into s->buf for responses: the minimal response (a bare
 * header) for each outstanding request up to and including the first
 * READ, whose payload must go straight to its destination.  Responses
 * are never shorter, so this never reads past that READ's header. */
static uint64_t
cli_resp_room(const struct cli_sock *s)
{
    uint64_t k = 0;

    for (uint64_t i = s->answered; i < s->issued; i++) {
        k++;
        if (s->slots[i % TCP_DEPTH].op->opcode == AGENT_TRANSPORT_READ) {
            break;
        }
    }
    if (k == 0) {
        k = 1; /* nothing asked: read one header, to refuse it */
    }
    return k * TCP_RESP_LEN;
}

static void
cli_welcome_fixed(struct cli_sock *s)
{
    const uint8_t *p = s->buf;
    unsigned nlen = get16(p + 10), tlen = get16(p + 12);

    if (memcmp(p, TCP_MAGIC, TCP_MAGIC_LEN) != 0 ||
        get16(p + 6) != TCP_VERSION) {
        cli_failed(s, -EPROTO,
                   "%s at %s does not speak this protocol (bad handshake "
                   "reply)",
                   s->c->node, s->c->where);
        return;
    }
    if (nlen < 1 || nlen > TCP_NAME_MAX || tlen > TCP_TEXT_MAX) {
        cli_failed(s, -EPROTO,
                   "%s at %s sent a malformed handshake reply (name %u, "
                   "text %u bytes)",
                   s->c->node, s->c->where, nlen, tlen);
        return;
    }
    s->rx = CRX_WELCOME_TAIL;
    s->need = TCP_WELCOME_LEN + nlen + tlen;
}

static void
cli_welcome(struct cli_sock *s)
{
    struct tcp_conn *c = s->c;
    const uint8_t *p = s->buf;
    unsigned st = get16(p + 8);
    size_t nlen = get16(p + 10), tlen = get16(p + 12);
    uint64_t boot = get64(p + 16);
    char name[AGENT_TRANSPORT_NODE_MAX], text[TCP_TEXT_MAX + 1];
    char expected[AGENT_TRANSPORT_NODE_MAX + 32];

    if (!name_ok(p + TCP_WELCOME_LEN, nlen)) {
        cli_failed(s, -EPROTO,
                   "%s at %s sent a malformed handshake reply (node name)",
                   c->node, c->where);
        return;
    }
    copy_text(name, p + TCP_WELCOME_LEN, nlen);
    copy_text(text, p + TCP_WELCOME_LEN + nlen, tlen);
    if (strcmp(name, c->node) != 0 ||
        (c->boot_id != 0 && boot != c->boot_id)) {
        if (c->boot_id != 0) {
            snprintf(expected, sizeof expected, "%s (boot 0x%llx)", c->node,
                     (unsigned long long)c->boot_id);
        } else {
            snprintf(expected, sizeof expected, "%s", c->node);
        }
        cli_failed(s, -EPROTO,
                   "%s: peer answered as %s (boot 0x%llx), expected %s",
                   c->where, name, (unsigned long long)boot, expected);
        return;
    }
    if (st != TCP_ST_OK) {
        cli_failed(s, status_errno(st), "%s at %s refused us: %s", c->node,
                   c->where, text[0] ? text : "no reason given");
        return;
    }
    s->state = CS_UP;
    uv_timer_stop(&s->timer);
    COUNT(c->t, connects, 1);
    s->rx = CRX_RESP;
    s->got = 0;
    s->need = TCP_RESP_LEN;
}

static void
cli_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct cli_sock *s = h->data;
    uint64_t left = s->need - s->got;

    (void)hint;
    switch (s->rx) {
    case CRX_WELCOME:
    case CRX_WELCOME_TAIL:
    case CRX_ERRTEXT:
        buf->base = (char *)s->buf + s->got;
        buf->len = left;
        return;
    case CRX_RESP:
        buf->base = (char *)s->buf + s->got;
        buf->len = cli_resp_room(s) - s->got;
        return;
    case CRX_PAYLOAD:
        buf->base = (char *)s->dst + s->got;
        buf->len = left;
        return;
    case CRX_NONE:
        break;
    }
    buf->base = NULL;
    buf->len = 0;
}

static void
cli_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct cli_sock *s = st->data;
    char text[TCP_TEXT_MAX + 1];

    (void)buf;
    if (nread == 0 || s->state == CS_CLOSED) {
        return;
    }
    if (nread < 0) {
        cli_lost(s, (int)nread);
        return;
    }
    s->got += (uint64_t)nread;
    if (s->got < s->need) {
        return;
    }
    switch (s->rx) {
    case CRX_WELCOME:
        cli_welcome_fixed(s);
        break;
    case CRX_WELCOME_TAIL:
        cli_welcome(s);
        break;
    case CRX_RESP:
        cli_responses(s);
        break;
    case CRX_PAYLOAD:
        s->rx = CRX_RESP;
        s->got = 0;
        s->need = TCP_RESP_LEN;
        slot_answered(s, 0, NULL);
        break;
    case CRX_ERRTEXT:
        copy_text(text, s->buf, s->need);
        s->rx = CRX_RESP;
        s->got = 0;
        s->need = TCP_RESP_LEN;
        slot_answered(s, s->resp_status, text);
        break;
    case CRX_NONE:
        break;
    }
    if (s->state == CS_UP) {
        conn_redispatch(s->c);
    }
}

static void
cli_hello_written(uv_write_t *req, int status)
{
    struct cli_sock *s = req->data;

    if (s->state != CS_CLOSED && status < 0) {
        cli_lost(s, status);
    }
}

static void
cli_connected(uv_connect_t *req, int status)
{
    struct cli_sock *s = req->data;
    struct tcp_conn *c = s->c;
    uv_buf_t buf;
    int r;

    if (s->state == CS_CLOSED) {
        return;
    }
    if (status < 0) {
        cli_failed(s, status, "cannot connect to %s at %s: %s", c->node,
                   c->where, uv_strerror(status));
        return;
    }
    uv_tcp_nodelay(&s->tcp, 1);
    uv_tcp_keepalive(&s->tcp, 1, 30);
    s->state = CS_HELLO;
    s->rx = CRX_WELCOME;
    s->got = 0;
    s->need = TCP_WELCOME_LEN;
    s->hello_req.data = s;
    buf.base = (char *)c->hello;
    buf.len = c->hello_len;
    r = uv_write(&s->hello_req, (uv_stream_t *)&s->tcp, &buf, 1,
                 cli_hello_written);
    if (r == 0) {
        r = uv_read_start((uv_stream_t *)&s->tcp, cli_alloc, cli_read);
    }
    if (r < 0) {
        cli_failed(s, r, "cannot talk to %s at %s: %s", c->node, c->where,
                   uv_strerror(r));
    }
}

static void
cli_timeout(uv_timer_t *timer)
{
    struct cli_sock *s = timer->data;

    cli_failed(s, -ETIMEDOUT,
               "%s at %s did not complete the handshake within %d s",
               s->c->node, s->c->where, TCP_CONNECT_MS / 1000);
}

/* CONNECT: opens the sockets. */
static void
conn_start(struct tcp_conn *c)
{
    struct tcp_transport *t = c->t;

    c->next = t->conns;
    if (t->conns) {
        t->conns->prev = c;
    }
    t->conns = c;
    c->linked = true;
    for (unsigned i = 0; i < c->nsocks && c->status == 0; i++) {
        struct cli_sock *s = calloc(1, sizeof *s);
        int r;

        if (!s) {
            conn_fail(c, -ENOMEM, "connecting to %s: out of memory", c->node);
            return;
        }
        s->c = c;
        s->index = i;
        uv_tcp_init(&t->loop, &s->tcp);
        uv_timer_init(&t->loop, &s->timer);
        s->tcp.data = s;
        s->timer.data = s;
        s->creq.data = s;
        s->handles_open = 2;
        s->state = CS_CONNECTING;
        c->socks[i] = s;
        c->open++;
        uv_timer_start(&s->timer, cli_timeout, TCP_CONNECT_MS, 0);
        r = uv_tcp_connect(&s->creq, &s->tcp,
                           (const struct sockaddr *)&c->addr, cli_connected);
        if (r < 0) {
            cli_failed(s, r, "cannot connect to %s at %s: %s", c->node,
                       c->where, uv_strerror(r));
        }
    }
}

/* Takes newly posted ops into the queue (or fails them at once). */
static void
conn_absorb(struct tcp_conn *c)
{
    struct agent_transport_op *ops = c->arrived;

    c->arrived = NULL;
    while (ops) {
        struct agent_transport_op *op = ops;

        ops = op->next;
        op->next = NULL;
        op->slices_left = slices_of(c->t, op->len);
        if (c->status != 0) {
            op_error(op, c->status, "%s", c->err);
            op->slices_left = 0;
            op_finish(c->t, op);
            continue;
        }
        *c->queue_tail = op;
        c->queue_tail = &op->next;
    }
    conn_dispatch(c);
}

/* DISCONNECT and STOP: cancels everything, frees c once closed. */
static void
conn_close(struct tcp_conn *c, bool *done, const char *why)
{
    struct tcp_transport *t = c->t;
    struct agent_transport_op *late;

    pthread_mutex_lock(&t->lock);
    late = c->incoming;
    c->incoming = NULL;
    c->incoming_tail = &c->incoming;
    pthread_mutex_unlock(&t->lock);
    c->freeing = true;
    c->done = done;
    conn_fail(c, -ECANCELED, "%s", why);
    fail_list(t, late, -ECANCELED, why);
    if (c->open == 0) {
        conn_free(c);
    }
}

/* --- The loop ----------------------------------------------------------- */

static void
tcp_stop(struct tcp_transport *t)
{
    struct tcp_conn *c, *next;
    char why[AGENT_TRANSPORT_ERR_LEN];

    for (c = t->conns; c; c = next) {
        next = c->next;
        if (c->freeing) {
            continue; /* a disconnect is already closing it */
        }
        snprintf(why, sizeof why,
                 "connection to %s closed: transport is shutting down",
                 c->node);
        conn_close(c, NULL, why);
    }
    for (struct srv_sock *s = t->socks; s; s = s->next) {
        srv_close(s);
    }
    if (t->listening) {
        uv_close((uv_handle_t *)&t->listener, NULL);
    }
    uv_close((uv_handle_t *)&t->flusher, NULL);
    uv_close((uv_handle_t *)&t->async, NULL);
}

static void
tcp_wake(uv_async_t *async)
{
    struct tcp_transport *t = async->data;
    struct tcp_cmd *cmds, *cmd, *next;
    struct tcp_conn *ready = NULL;
    bool withdrawing[AGENT_TRANSPORT_MAX_REGIONS];
    bool any = false;

    pthread_mutex_lock(&t->lock);
    cmds = t->cmds;
    t->cmds = NULL;
    t->cmds_tail = &t->cmds;
    for (struct tcp_conn *c = t->kicked; c; c = c->kick_next) {
        c->kicked = false;
        c->arrived = c->incoming;
        c->incoming = NULL;
        c->incoming_tail = &c->incoming;
        c->ready_next = ready;
        ready = c;
    }
    t->kicked = NULL;
    for (uint32_t i = 0; i < AGENT_TRANSPORT_MAX_REGIONS; i++) {
        withdrawing[i] = t->regions[i].withdraw;
        any |= withdrawing[i];
    }
    pthread_mutex_unlock(&t->lock);

    if (any) {
        for (uint32_t i = 0; i < AGENT_TRANSPORT_MAX_REGIONS; i++) {
            if (withdrawing[i]) {
                withdraw(t, i);
            }
        }
        pthread_mutex_lock(&t->lock);
        for (uint32_t i = 0; i < AGENT_TRANSPORT_MAX_REGIONS; i++) {
            if (withdrawing[i]) {
                t->regions[i].withdraw = false;
            }
        }
        pthread_cond_broadcast(&t->cond);
        pthread_mutex_unlock(&t->lock);
    }
    /* Posts before commands: a disconnect queued after a post must see
     * (and cancel) that post's ops. */
    for (struct tcp_conn *c = ready; c; c = c->ready_next) {
        conn_absorb(c);
    }
    for (cmd = cmds; cmd; cmd = next) {
        next = cmd->next;
        switch (cmd->kind) {
        case TCP_CMD_CONNECT:
            conn_start(cmd->conn);
            break;
        case TCP_CMD_DISCONNECT: {
            char why[AGENT_TRANSPORT_ERR_LEN];

            snprintf(why, sizeof why, "disconnected from %s", cmd->conn->node);
            conn_close(cmd->conn, cmd->done, why);
            break;
        }
        case TCP_CMD_STOP:
            tcp_stop(t);
            break;
        }
    }
}

static void *
tcp_main(void *arg)
{
    struct tcp_transport *t = arg;

    pthread_setname_np(pthread_self(), "mcos-tcp");
    uv_run(&t->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* --- Ops table ---------------------------------------------------------- */

static bool
tcp_available(char *why, size_t whylen)
{
    (void)why;
    (void)whylen;
    return true;
}

static int
tcp_listen(struct tcp_transport *t, const struct agent_transport_config *cfg,
           char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    char where[96];
    int len = sizeof ss;
    int r;

    format_where(where, sizeof where, cfg->address, cfg->port);
    if (parse_addr(cfg->address, cfg->port, &ss) < 0) {
        snprintf(err, errlen,
                 "tcp: listen address '%s' is not an IPv4 or IPv6 address",
                 cfg->address);
        return -EINVAL;
    }
    r = uv_tcp_init(&t->loop, &t->listener);
    if (r < 0) {
        snprintf(err, errlen, "tcp: uv_tcp_init: %s", uv_strerror(r));
        return r;
    }
    t->listening = true;
    t->listener.data = t;
    /* EADDRINUSE may come from bind or, deferred, from listen. */
    r = uv_tcp_bind(&t->listener, (const struct sockaddr *)&ss, 0);
    if (r == 0) {
        r = uv_listen((uv_stream_t *)&t->listener, TCP_BACKLOG, srv_accept);
    }
    if (r == 0) {
        r = uv_tcp_getsockname(&t->listener, (struct sockaddr *)&ss, &len);
    }
    if (r == UV_EADDRINUSE) {
        snprintf(err, errlen,
                 "tcp: cannot listen on %s: the port is already in use",
                 where);
        return -EADDRINUSE;
    }
    if (r < 0) {
        snprintf(err, errlen, "tcp: cannot listen on %s: %s", where,
                 uv_strerror(r));
        return r;
    }
    t->port = ntohs(ss.ss_family == AF_INET6
                        ? ((struct sockaddr_in6 *)&ss)->sin6_port
                        : ((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

static int
tcp_init(struct agent_transport *base,
         const struct agent_transport_config *cfg, char *err, size_t errlen)
{
    struct tcp_transport *t = tcp_of(base);
    sigset_t block, old;
    int r;

    snprintf(t->node, sizeof t->node, "%s", cfg->node);
    t->boot_id = cfg->boot_id;
    t->nconns = cfg->conns ? cfg->conns : TCP_DEFAULT_CONNS;
    t->slice = cfg->slice ? cfg->slice : TCP_DEFAULT_SLICE;
    t->sock_bytes =
        2 * t->slice > TCP_SOCK_BYTES ? 2 * t->slice : TCP_SOCK_BYTES;
    t->admit = cfg->admit;
    t->admit_arg = cfg->admit_arg;
    t->cmds_tail = &t->cmds;
    t->scratch = malloc(TCP_SCRATCH);
    if (!t->scratch) {
        snprintf(err, errlen, "tcp: out of memory");
        return -ENOMEM;
    }
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
    r = uv_loop_init(&t->loop);
    if (r < 0) {
        snprintf(err, errlen, "tcp: uv_loop_init: %s", uv_strerror(r));
        goto fail_loop;
    }
    r = uv_async_init(&t->loop, &t->async, tcp_wake);
    if (r < 0) {
        snprintf(err, errlen, "tcp: uv_async_init: %s", uv_strerror(r));
        goto fail_async;
    }
    t->async.data = t;
    uv_check_init(&t->loop, &t->flusher);
    t->flusher.data = t;
    if (cfg->address && *cfg->address) {
        r = tcp_listen(t, cfg, err, errlen);
        if (r < 0) {
            goto fail_listen;
        }
    }
    /* The I/O thread takes no asynchronous signals; blocking SIGPIPE
     * makes a write to a reset socket return EPIPE instead. */
    sigfillset(&block);
    sigdelset(&block, SIGSEGV);
    sigdelset(&block, SIGBUS);
    sigdelset(&block, SIGFPE);
    sigdelset(&block, SIGILL);
    sigdelset(&block, SIGABRT);
    sigdelset(&block, SIGTRAP);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    r = -pthread_create(&t->thread, NULL, tcp_main, t);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r < 0) {
        snprintf(err, errlen, "tcp: cannot start its thread: %s",
                 strerror(-r));
        goto fail_listen;
    }
    return 0;

fail_listen:
    if (t->listening) {
        uv_close((uv_handle_t *)&t->listener, NULL);
    }
    uv_close((uv_handle_t *)&t->flusher, NULL);
    uv_close((uv_handle_t *)&t->async, NULL);
    uv_run(&t->loop, UV_RUN_DEFAULT);
fail_async:
    uv_loop_close(&t->loop);
fail_loop:
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
    free(t->scratch);
    return r;
}

static void
tcp_fini(struct agent_transport *base)
{
    struct tcp_transport *t = tcp_of(base);
    struct tcp_cmd stop = {.kind = TCP_CMD_STOP};

    pthread_mutex_lock(&t->lock);
    t->stopping = true;
    cmd_push(t, &stop);
    pthread_mutex_unlock(&t->lock);
    uv_async_send(&t->async);
    pthread_join(t->thread, NULL);
    uv_loop_close(&t->loop);
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
    free(t->scratch);
}

static int
tcp_reg(struct agent_transport *base, uint32_t index, void *mem, uint64_t len,
        struct agent_transport_region *out, char *err, size_t errlen)
{
    struct tcp_transport *t = tcp_of(base);
    struct tcp_region *r = &t->regions[index];
    uint64_t key;

    if (getrandom(&key, sizeof key, 0) != (ssize_t)sizeof key) {
        snprintf(err, errlen, "tcp: cannot draw a region key: %s",
                 strerror(errno));
        return -errno;
    }
    pthread_mutex_lock(&t->lock);
    r->used = true;
    r->base = mem;
    r->addr = (uint64_t)(uintptr_t)mem;
    r->len = len;
    r->key = key;
    pthread_mutex_unlock(&t->lock);
    out->addr = r->addr;
    out->len = len;
    out->key = key;
    return 0;
}

static void
tcp_dereg(struct agent_transport *base, uint32_t index)
{
    struct tcp_transport *t = tcp_of(base);
    struct tcp_region *r = &t->regions[index];
    bool busy;

    pthread_mutex_lock(&t->lock);
    r->used = false;
    busy = r->refs > 0;
    pthread_mutex_unlock(&t->lock);
    if (!busy) {
        return; /* no transfer touches it, and none will start */
    }
    if (pthread_equal(pthread_self(), t->thread)) {
        withdraw(t, index);
        return;
    }
    pthread_mutex_lock(&t->lock);
    r->withdraw = true;
    pthread_mutex_unlock(&t->lock);
    uv_async_send(&t->async);
    pthread_mutex_lock(&t->lock);
    while (r->withdraw) {
        pthread_cond_wait(&t->cond, &t->lock);
    }
    pthread_mutex_unlock(&t->lock);
}

static int
tcp_connect(struct agent_transport *base,
            const struct agent_transport_peer *peer,
            struct agent_transport_conn **out, char *err, size_t errlen)
{
    struct tcp_transport *t = tcp_of(base);
    struct tcp_conn *c = calloc(1, sizeof *c);
    size_t nlen = strlen(t->node), elen = strlen(peer->node);

    if (!c) {
        snprintf(err, errlen, "tcp: out of memory");
        return -ENOMEM;
    }
    if (parse_addr(peer->address, peer->port, &c->addr) < 0) {
        snprintf(err, errlen,
                 "tcp: address '%s' of peer %s is not an IPv4 or IPv6 "
                 "address",
                 peer->address, peer->node);
        free(c);
        return -EINVAL;
    }
    c->t = t;
    snprintf(c->node, sizeof c->node, "%s", peer->node);
    c->boot_id = peer->boot_id;
    format_where(c->where, sizeof c->where, peer->address, peer->port);
    c->nsocks = t->nconns;
    c->incoming_tail = &c->incoming;
    c->queue_tail = &c->queue;
    memcpy(c->hello, TCP_MAGIC, TCP_MAGIC_LEN);
    put16(c->hello + 6, TCP_VERSION);
    put16(c->hello + 8, (uint16_t)nlen);
    put16(c->hello + 10, (uint16_t)elen);
    put64(c->hello + 12, t->boot_id);
    memcpy(c->hello + TCP_HELLO_LEN, t->node, nlen);
    memcpy(c->hello + TCP_HELLO_LEN + nlen, peer->node, elen);
    c->hello_len = TCP_HELLO_LEN + nlen + elen;
    c->cmd.kind = TCP_CMD_CONNECT;
    c->cmd.conn = c;
    pthread_mutex_lock(&t->lock);
    if (t->stopping) {
        pthread_mutex_unlock(&t->lock);
        free(c);
        snprintf(err, errlen, "tcp: the transport is shutting down");
        return -ESHUTDOWN;
    }
    cmd_push(t, &c->cmd);
    pthread_mutex_unlock(&t->lock);
    uv_async_send(&t->async);
    *out = (struct agent_transport_conn *)(void *)c;
    return 0;
}

static int
tcp_conn_status(struct agent_transport_conn *conn, char *err, size_t errlen)
{
    struct tcp_conn *c = conn_of(conn);
    int r;

    pthread_mutex_lock(&c->t->lock);
    r = c->status;
    if (r != 0 && err && errlen) {
        snprintf(err, errlen, "%s", c->err);
    }
    pthread_mutex_unlock(&c->t->lock);
    return r;
}

static int
tcp_post(struct agent_transport_conn *conn,
         struct agent_transport_op *const *ops, size_t n)
{
    struct tcp_conn *c = conn_of(conn);
    struct tcp_transport *t = c->t;

    pthread_mutex_lock(&t->lock);
    if (t->stopping || c->closing) {
        pthread_mutex_unlock(&t->lock);
        for (size_t i = 0; i < n; i++) {
            snprintf(ops[i]->error, sizeof ops[i]->error,
                     "connection to %s is closing", c->node);
            ops[i]->status = -ESHUTDOWN;
        }
        return -ESHUTDOWN;
    }
    for (size_t i = 0; i < n; i++) {
        ops[i]->next = NULL;
        *c->incoming_tail = ops[i];
        c->incoming_tail = &ops[i]->next;
    }
    if (!c->kicked) {
        c->kicked = true;
        c->kick_next = t->kicked;
        t->kicked = c;
    }
    pthread_mutex_unlock(&t->lock);
    uv_async_send(&t->async);
    return 0;
}

static void
tcp_disconnect(struct agent_transport_conn *conn)
{
    struct tcp_conn *c = conn_of(conn);
    struct tcp_transport *t = c->t;
    bool done = false;
    struct tcp_cmd cmd = {
        .kind = TCP_CMD_DISCONNECT, .conn = c, .done = &done};

    pthread_mutex_lock(&t->lock);
    c->closing = true;
    cmd_push(t, &cmd);
    pthread_mutex_unlock(&t->lock);
    uv_async_send(&t->async);
    pthread_mutex_lock(&t->lock);
    while (!done) {
        pthread_cond_wait(&t->cond, &t->lock);
    }
    pthread_mutex_unlock(&t->lock);
}

static uint16_t
tcp_port(struct agent_transport *base)
{
    return tcp_of(base)->port;
}

static void
tcp_stats(struct agent_transport *base, struct agent_transport_stats *out)
{
    struct tcp_counters *n = &tcp_of(base)->cnt;

#define ADD(m) out->m += atomic_load_explicit(&n->m, memory_order_relaxed)
    ADD(ops);
    ADD(op_errors);
    ADD(bytes_read);
    ADD(bytes_written);
    ADD(bytes_served);
    ADD(refused);
    ADD(connects);
    ADD(connect_errors);
    ADD(cpu_copy_bytes);
#undef ADD
}

const struct agent_transport_ops agent_transport_tcp_ops = {
    .name = "tcp",
    .kind = AGENT_TRANSPORT_TCP,
    .size = sizeof(struct tcp_transport),
    .available = tcp_available,
    .init = tcp_init,
    .fini = tcp_fini,
    .reg = tcp_reg,
    .dereg = tcp_dereg,
    .connect = tcp_connect,
    .conn_status = tcp_conn_status,
    .post = tcp_post,
    .disconnect = tcp_disconnect,
    .port = tcp_port,
    .stats = tcp_stats,
};
