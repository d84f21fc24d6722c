/*
 * RDMA verbs transport: one-sided READ and WRITE into peers' registered
 * memory through rdma-core (libibverbs for the data path, librdmacm for
 * addressing and connection management).
 *
 * Resources, perftest style, per NIC: a transport uses one RDMA device
 * per listen address (the first address's device, or the configured one,
 * or the first device when there is no listener), and on each device one
 * protection domain, one completion queue with a completion channel, one
 * memory region per registration and one rdma_cm listener on the same
 * port.  A region's descriptor is the MRs' address and their rkeys (one
 * per NIC, in address order); peers then move bytes without our CPU doing
 * anything per transfer, so cpu_copy_bytes stays 0 and bytes_served is
 * not counted.
 *
 * A connection to a peer (a "link", the caller's handle) holds one RC
 * queue pair per path: path i pairs our NIC i with the peer's NIC i, for
 * as many NICs as both have.  Ops wait until every path is up or has
 * failed; then their slices are striped round robin over the paths that
 * are up and have room, each slice with the rkey of the peer's NIC it
 * goes to.  An op completes when all its slices have.  The slices a
 * failed path had in flight are posted again on the paths still up (a
 * READ or WRITE of the same bytes can be repeated while the op runs);
 * an op fails, with the error of the path that failed last (naming its
 * device), only when none of its paths is left, and only once its other
 * slices have come back.  The link fails when its last path has.
 *
 * The dataplane thread owns every state change: it epolls the rdma_cm
 * event channel, the completion channel and an eventfd that other threads
 * write to after queueing work (connect, post, disconnect, fini).  After a
 * completion it polls the CQ for a short while before re-arming it, so a
 * busy connection costs no interrupts.  Verbs calls other threads make are
 * limited to the ones rdma-core documents as thread-safe (MR registration,
 * creating an id and starting address resolution), under our lock.
 *
 * Handshake, carried in the connection's private data (RoCE gives a
 * connect request 56 bytes, so node names are limited to 40 bytes here;
 * the TCP transport carries names of any length):
 *
 *   request  (client -> server): magic, version, name length, boot id,
 *                                node name
 *   accept   (server -> client): magic, version, status 0, name length,
 *                                boot id, node name
 *   reject   (server -> client): magic, version, errno, reason length,
 *                                reason text
 *
 * Integers are big-endian.  The server validates the request, asks the
 * admit callback, and accepts or rejects with a reason; the client checks
 * that the node that accepted is the one it meant to reach.
 *
 * Errors from ibverbs, librdmacm and work completions are translated to
 * negative errno values and a sentence here, and nowhere else.
 */
#include "transport.h"

#include "tier.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

/* "MCOV": MCOS verbs handshake. */
#define VERBS_MAGIC   0x4d434f56u
#define VERBS_VERSION 1
/* Node name bytes that fit a RoCE connect request after our header. */
#define VERBS_REQ_NAME_MAX 40
/* Bytes of reason text a reject carries. */
#define VERBS_REASON_MAX 128

#define VERBS_DEFAULT_SLICE (UINT64_C(1) << 20)
/* Send queue slots per connection and CQ entries per transport. */
#define VERBS_SQ_DEPTH 128
#define VERBS_CQ_DEPTH 4096
/* Outstanding RDMA READs per QP, as initiator and as responder. */
#define VERBS_RD_ATOM_MAX 16
#define VERBS_RESOLVE_MS  2000
/* Transport retries before a silent peer fails a path.  Not 7: soft-RoCE
 * (rxe) takes 7 as "retry forever", and a path whose peer NIC went away
 * would then never fail over. */
#define VERBS_RETRY_COUNT 6
/* Local ACK timeout exponent: 4.096 us * 2^18, about 1.07 s a try, so a
 * dead path is noticed within some 7 s. */
#define VERBS_ACK_TIMEOUT 18
#define VERBS_BACKLOG     64
/* How long the thread keeps polling the CQ after the last completion
 * before it re-arms the completion channel and sleeps. */
#define VERBS_SPIN_NS 50000
/* How long closing waits for flushed work requests to come back. */
#define VERBS_DRAIN_NS   (UINT64_C(2) * 1000000000)
#define VERBS_POST_BATCH 16
#define VERBS_POLL_BATCH 32
#define VERBS_NO_SLOT    UINT32_MAX
/* What an epoll event is about: data.u32. */
#define EV_KICK 0 /* the eventfd */
#define EV_CM   1 /* the rdma_cm event channel */
#define EV_CQ   2 /* EV_CQ + i: NIC i's completion channel */

/* Connect request private data, client -> server (56 bytes). */
struct verbs_hello {
    uint32_t magic;                /* VERBS_MAGIC */
    uint8_t version;               /* VERBS_VERSION */
    uint8_t name_len;              /* bytes of name, 1..40, no NUL */
    uint16_t reserved;             /* 0 */
    uint64_t boot_id;              /* the client's boot id */
    char name[VERBS_REQ_NAME_MAX]; /* the client's node name */
} __attribute__((packed));

/* Accept private data, server -> client. */
struct verbs_welcome {
    uint32_t magic;                      /* VERBS_MAGIC */
    uint8_t version;                     /* VERBS_VERSION */
    uint8_t status;                      /* 0: accepted */
    uint8_t name_len;                    /* bytes of name, no NUL */
    uint8_t reserved;                    /* 0 */
    uint64_t boot_id;                    /* the server's boot id */
    char name[AGENT_TRANSPORT_NODE_MAX]; /* the server's node name */
} __attribute__((packed));

/* Reject private data, server -> client. */
struct verbs_refusal {
    uint32_t magic;                /* VERBS_MAGIC */
    uint8_t version;               /* VERBS_VERSION */
    uint8_t err;                   /* positive errno the client reports */
    uint8_t reason_len;            /* bytes of reason, no NUL */
    uint8_t reserved;              /* 0 */
    char reason[VERBS_REASON_MAX]; /* why, for the client's error text */
} __attribute__((packed));

_Static_assert(sizeof(struct verbs_hello) == 56,
               "a RoCE connect request carries 56 bytes of private data");
_Static_assert(sizeof(struct verbs_refusal) <= 148,
               "an IB CM reject carries 148 bytes of private data");
_Static_assert(sizeof(struct verbs_welcome) <= 196,
               "an IB CM reply carries 196 bytes of private data");

enum conn_state {
    CONN_RESOLVING_ADDR,  /* client: waiting for ADDR_RESOLVED */
    CONN_RESOLVING_ROUTE, /* client: waiting for ROUTE_RESOLVED */
    CONN_CONNECTING,      /* client: REQ sent; server: accepted */
    CONN_UP,              /* established and identity checked */
    CONN_BROKEN,          /* failed; ops fail with error until closed */
    CONN_CLOSING,         /* QP flushed; waiting for the flush to drain */
};

/* One send queue slot: the op a posted slice belongs to. */
struct verbs_slot {
    struct agent_transport_op *op; /* NULL once the path failed it */
    uint64_t off;                  /* the slice's offset in the op */
    uint32_t len;                  /* the slice's payload bytes */
    uint32_t next_free;            /* free list link */
};

/* A slice of a failed path, to be posted again on another. */
struct verbs_retry {
    struct agent_transport_op *op; /* its op */
    uint64_t off;                  /* offset in the op */
    uint32_t len;                  /* bytes */
};

struct verbs_transport;
struct verbs_link;

/* One NIC: an RDMA device and what the transport holds on it. */
struct verbs_dev {
    struct ibv_context *verbs;           /* the device (from vt->devs) */
    char name[IBV_SYSFS_NAME_MAX];       /* its name */
    char address[64];                    /* listen address on it, or "" */
    struct rdma_cm_id *listen;           /* listener, or NULL */
    bool has_src;                        /* src is set */
    struct sockaddr_storage src;         /* source for client ids, port 0 */
    uint32_t max_sq;                     /* device's max_qp_wr */
    uint8_t rd_atom;                     /* responder READ depth */
    uint8_t init_rd_atom;                /* initiator READ depth */
    struct ibv_pd *pd;                   /* its MRs and QPs */
    struct ibv_comp_channel *cc;         /* CQ notifications */
    struct ibv_cq *cq;                   /* every QP's send and recv here */
    int cq_credits;                      /* CQ entries not yet promised */
    struct agent_transport_nic_stats st; /* slices it carried */
};

/* The MRs of one registration, one per NIC. */
struct verbs_mrs {
    struct ibv_mr *mr[AGENT_TRANSPORT_MAX_NICS]; /* by NIC index */
};

/* One queue pair: a path of a client link, or an accepted connection. */
struct verbs_conn {
    struct verbs_transport *vt;          /* owner */
    struct verbs_conn *next;             /* vt->conns */
    struct verbs_link *link;             /* client: the link; else NULL */
    struct verbs_dev *dev;               /* the NIC it runs on */
    uint32_t tag;                        /* high half of our wr_ids */
    bool passive;                        /* accepted by our listener */
    enum conn_state state;               /* see enum conn_state */
    struct rdma_cm_id *cm;               /* NULL once finalized */
    char node[AGENT_TRANSPORT_NODE_MAX]; /* peer's (expected) node name */
    uint64_t boot_id;                    /* expected boot id, 0: any */
    char where[96];                      /* "address:port" for error texts */
    int error;                           /* why it broke, negative errno */
    char why[AGENT_TRANSPORT_ERR_LEN];   /* its text */
    struct verbs_slot *slots;            /* one per send queue entry */
    uint32_t depth;                      /* send queue entries we use */
    uint32_t inflight;                   /* slices posted, not completed */
    uint32_t free_slot;                  /* free list head */
    bool finalized;                      /* QP and id destroyed */
    uint64_t drain_deadline;             /* CLOSING: give up waiting then */
};

/* A client connection to one peer: the caller's handle. */
struct verbs_link {
    struct verbs_transport *vt;                        /* owner */
    struct verbs_link *next;                           /* vt->links */
    struct verbs_conn *path[AGENT_TRANSPORT_MAX_NICS]; /* path i: NIC i */
    unsigned npaths;                                   /* paths */
    unsigned rr;                                       /* next path to try */
    struct agent_transport_op *wait_head; /* ops not fully posted */
    struct agent_transport_op *wait_tail; /* last of them */
    uint64_t head_off;                    /* bytes of wait_head posted */
    uint32_t head_lkey[AGENT_TRANSPORT_MAX_NICS]; /* its local keys */
    bool head_ready;                              /* head_lkey is valid */
    struct verbs_retry *retry; /* slices of failed paths, to repost */
    uint32_t nretry;           /* entries */
    uint32_t retry_cap;        /* room: every path's send queue */
    bool close_req;            /* disconnect asked */
    bool closing;              /* paths are closing */
};

/* The verbs backend; base comes first for AGENT_CONTAINER_OF. */
struct verbs_transport {
    struct agent_transport base;         /* the generic part */
    char node[AGENT_TRANSPORT_NODE_MAX]; /* our node name */
    uint64_t boot_id;                    /* our boot id */
    uint64_t slice;                      /* bytes per work request */
    agent_transport_admit_cb admit;      /* listener's admission */
    void *admit_arg;                     /* its argument */
    struct rdma_event_channel *ec;       /* every id's events */
    struct ibv_context **devs;           /* rdma_get_devices(), held */
    struct verbs_dev dev[AGENT_TRANSPORT_MAX_NICS]; /* our NICs */
    unsigned ndev;                                  /* how many */
    int epfd;                                       /* the thread's epoll */
    int evfd;                                       /* wakes the thread */
    pthread_t thread;                               /* the dataplane thread */
    pthread_mutex_t lock;               /* guards everything below */
    pthread_cond_t closed;              /* a conn was finalized */
    struct verbs_conn *conns;           /* every QP */
    struct verbs_link *links;           /* every client link */
    uint32_t next_tag;                  /* tags handed out */
    bool work;                          /* posts or closes to look at */
    bool kicked;                        /* evfd written, not drained */
    bool stop;                          /* fini asked the thread to end */
    bool stopping;                      /* every conn is closing */
    uint16_t port;                      /* listener's port */
    struct agent_transport_stats stats; /* our counters */
};

/* Ops whose callbacks are due, run by the thread outside the lock. */
struct done_list {
    struct agent_transport_op *head; /* first to run */
    struct agent_transport_op *tail; /* last */
};

static struct verbs_transport *
verbs_of(struct agent_transport *t)
{
    return AGENT_CONTAINER_OF(t, struct verbs_transport, base);
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || errlen == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* rdma-core returns either a positive errno or -1 with errno set. */
static int
neg_errno(int rc)
{
    if (rc > 0) {
        return -rc;
    }
    return errno > 0 ? -errno : -EIO;
}

static uint64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
kick(struct verbs_transport *vt)
{
    uint64_t one = 1;

    vt->work = true;
    if (!vt->kicked) {
        vt->kicked = true;
        if (write(vt->evfd, &one, sizeof one) < 0) {
            /* The counter cannot overflow with one write per drain. */
        }
    }
}

/* --- Translations ---------------------------------------------------- */

/* A failed work completion as an errno and a sentence. */
static int
wc_error(enum ibv_wc_status s, char *buf, size_t len)
{
    switch (s) {
    case IBV_WC_REM_ACCESS_ERR:
        snprintf(buf, len,
                 "remote access error: wrong key or address "
                 "outside the peer's region");
        return -EACCES;
    case IBV_WC_RETRY_EXC_ERR:
        snprintf(buf, len,
                 "peer not responding (transport retries "
                 "exhausted)");
        return -ETIMEDOUT;
    case IBV_WC_RNR_RETRY_EXC_ERR:
        snprintf(buf, len, "peer not ready (RNR retries exhausted)");
        return -ETIMEDOUT;
    case IBV_WC_RESP_TIMEOUT_ERR:
        snprintf(buf, len, "peer's response timed out");
        return -ETIMEDOUT;
    case IBV_WC_WR_FLUSH_ERR:
        snprintf(buf, len,
                 "operation flushed: the connection's queue "
                 "pair went to the error state");
        return -ECANCELED;
    case IBV_WC_LOC_PROT_ERR:
    case IBV_WC_LOC_ACCESS_ERR:
        snprintf(buf, len,
                 "local protection error: the local buffer is "
                 "not in a registered region");
        return -EFAULT;
    case IBV_WC_LOC_LEN_ERR:
        snprintf(buf, len, "local length error");
        return -EMSGSIZE;
    case IBV_WC_REM_INV_REQ_ERR:
        snprintf(buf, len,
                 "remote invalid request: the peer cannot "
                 "serve this length or address");
        return -EINVAL;
    case IBV_WC_REM_OP_ERR:
        snprintf(buf, len, "remote operation error");
        return -EREMOTEIO;
    case IBV_WC_BAD_RESP_ERR:
        snprintf(buf, len, "bad response from the peer");
        return -EPROTO;
    default:
        snprintf(buf, len, "work completion failed: %s", ibv_wc_status_str(s));
        return -EIO;
    }
}

/* The IB CM reject reasons a RoCE peer's kernel can send without a
 * consumer involved (IBTA 12.6.7.2). */
static const char *
reject_reason(int status)
{
    switch (status) {
    case 1:
        return "no QP available";
    case 2:
        return "no EEC available";
    case 3:
        return "no resources";
    case 4:
        return "timeout";
    case 8:
        return "invalid service ID: nothing listens on that port";
    case 10:
        return "stale connection";
    case 28:
        return "rejected by the peer's application";
    default:
        return "rejected";
    }
}

/* --- Completions ------------------------------------------------------ */

static void
done_push(struct done_list *dl, struct agent_transport_op *op)
{
    op->next = NULL;
    if (dl->tail) {
        dl->tail->next = op;
    } else {
        dl->head = op;
    }
    dl->tail = op;
}

static uint64_t
slices_of(const struct verbs_transport *vt, uint64_t len)
{
    return (len + vt->slice - 1) / vt->slice;
}

/* Records op's first failure; it completes once its last slice has. */
static void
op_mark(struct agent_transport_op *op, int status, const char *why)
{
    if (op->status == 0) {
        op->status = status;
        snprintf(op->error, sizeof op->error, "%s", why);
    }
}

/* n of op's slices completed, or will never be posted; after the last,
 * op completes with the status it has. */
static void
op_slices_done(struct verbs_transport *vt, struct agent_transport_op *op,
               uint64_t n, struct done_list *dl)
{
    op->slices_left -= n;
    if (op->slices_left != 0) {
        return;
    }
    vt->stats.ops++;
    if (op->status < 0) {
        vt->stats.op_errors++;
    } else {
        op->error[0] = '\0';
        if (op->opcode == AGENT_TRANSPORT_READ) {
            vt->stats.bytes_read += op->len;
        } else {
            vt->stats.bytes_written += op->len;
        }
    }
    done_push(dl, op);
}

static void
run_done(struct done_list *dl)
{
    struct agent_transport_op *op = dl->head, *nxt;

    while (op) {
        nxt = op->next;
        op->done(op, op->arg);
        op = nxt;
    }
    dl->head = dl->tail = NULL;
}

/* Takes the head op off l's queue; its slices not yet posted never will
 * be. */
static void
link_drop_head(struct verbs_link *l, struct done_list *dl)
{
    struct agent_transport_op *op = l->wait_head;
    uint64_t unposted = slices_of(l->vt, op->len - l->head_off);

    l->wait_head = op->next;
    if (!l->wait_head) {
        l->wait_tail = NULL;
    }
    l->head_off = 0;
    l->head_ready = false;
    op_slices_done(l->vt, op, unposted, dl);
}

/* Fails every op still queued on l (a queued op has slices not posted,
 * so none completes before its in-flight slices have). */
static void
link_fail_queued(struct verbs_link *l, int err, const char *why,
                 struct done_list *dl)
{
    /* Slices waiting to be posted again first: their ops may be queued
     * too (then they complete below, after their last slice). */
    for (uint32_t i = 0; i < l->nretry; i++) {
        op_mark(l->retry[i].op, err, why);
        op_slices_done(l->vt, l->retry[i].op, 1, dl);
    }
    l->nretry = 0;
    while (l->wait_head) {
        op_mark(l->wait_head, err, why);
        link_drop_head(l, dl);
    }
}

static bool
path_down(const struct verbs_conn *c)
{
    return c->state == CONN_BROKEN || c->state == CONN_CLOSING;
}

/* True when another path of c's link is up and the link stays open: c's
 * slices can be posted again there. */
static bool
can_retry(const struct verbs_conn *c)
{
    const struct verbs_link *l = c->link;

    if (!l || l->closing || l->close_req || c->vt->stopping) {
        return false;
    }
    for (unsigned i = 0; i < l->npaths; i++) {
        if (l->path[i] != c && l->path[i]->state == CONN_UP) {
            return true;
        }
    }
    return false;
}

/* c failed: the slices it had in flight are posted again on another path
 * of its link when one is up (RDMA READ and WRITE of the same bytes are
 * idempotent while the op runs); otherwise their ops fail with err once
 * their other slices are back.  Flushed slices that come back later find
 * no op. */
static void
path_drop_ops(struct verbs_conn *c, int err, const char *why,
              struct done_list *dl)
{
    bool retry = can_retry(c);

    for (uint32_t i = 0; i < c->depth; i++) {
        struct agent_transport_op *op = c->slots[i].op;

        if (!op) {
            continue;
        }
        c->slots[i].op = NULL;
        c->dev->st.slice_errors++;
        if (retry && c->link->nretry < c->link->retry_cap) {
            c->link->retry[c->link->nretry++] = (struct verbs_retry){
                .op = op, .off = c->slots[i].off, .len = c->slots[i].len};
            c->vt->stats.slice_retries++;
            continue;
        }
        op_mark(op, err, why);
        op_slices_done(c->vt, op, 1, dl);
    }
}

/* After one of l's paths failed: when none is left, nothing queued can
 * ever be posted. */
static void
link_path_failed(struct verbs_link *l, const struct verbs_conn *c,
                 struct done_list *dl)
{
    for (unsigned i = 0; i < l->npaths; i++) {
        if (!path_down(l->path[i])) {
            return;
        }
    }
    link_fail_queued(l, c->error, c->why, dl);
}

static void
qp_to_error(struct verbs_conn *c)
{
    struct ibv_qp_attr attr = {.qp_state = IBV_QPS_ERR};

    if (c->cm && c->cm->qp) {
        ibv_modify_qp(c->cm->qp, &attr, IBV_QP_STATE);
    }
}

/* The connection (path) failed: its slices fail with err. */
static void conn_fail(struct verbs_conn *c, int err, struct done_list *dl,
                      const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
conn_fail(struct verbs_conn *c, int err, struct done_list *dl, const char *fmt,
          ...)
{
    struct verbs_transport *vt = c->vt;
    bool was_up = c->state == CONN_UP;
    va_list ap;

    if (path_down(c)) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof c->why, fmt, ap);
    va_end(ap);
    c->error = err;
    c->state = CONN_BROKEN;
    if (!was_up) {
        vt->stats.connect_errors++;
    }
    qp_to_error(c);
    if (c->cm && (was_up || c->cm->qp)) {
        rdma_disconnect(c->cm);
    }
    path_drop_ops(c, err, c->why, dl);
    if (c->link) {
        link_path_failed(c->link, c, dl);
    }
}

/* Starts closing c: its slices fail with err, the QP flushes, and the id
 * is destroyed once the flush has drained (finalize). */
static void
begin_close(struct verbs_conn *c, int err, const char *why,
            struct done_list *dl)
{
    bool connected = c->state == CONN_UP ||
                     (c->state == CONN_CONNECTING && c->cm && c->cm->qp);

    if (c->state == CONN_CLOSING) {
        return;
    }
    if (c->state != CONN_BROKEN) {
        c->error = err;
        snprintf(c->why, sizeof c->why, "%s", why);
    }
    qp_to_error(c);
    if (connected) {
        rdma_disconnect(c->cm);
    }
    path_drop_ops(c, err, why, dl);
    c->state = CONN_CLOSING;
    c->drain_deadline = now_ns() + VERBS_DRAIN_NS;
}

/* Closes every path of l; what is queued fails with err. */
static void
link_close(struct verbs_link *l, int err, const char *why,
           struct done_list *dl)
{
    l->closing = true;
    for (unsigned i = 0; i < l->npaths; i++) {
        begin_close(l->path[i], err, why, dl);
    }
    link_fail_queued(l, err, why, dl);
}

static void
conn_unlink(struct verbs_transport *vt, struct verbs_conn *c)
{
    for (struct verbs_conn **pp = &vt->conns; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            return;
        }
    }
}

static void
conn_free(struct verbs_conn *c)
{
    free(c->slots);
    free(c);
}

static void
link_unlink(struct verbs_transport *vt, struct verbs_link *l)
{
    for (struct verbs_link **pp = &vt->links; *pp; pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            return;
        }
    }
}

/* Destroys the QP and id of closing conns whose flush has drained.  Runs
 * at the start of a service round, after the callbacks of the round that
 * began the close, so nothing for c runs after the waiter wakes. */
static void
finalize_closed(struct verbs_transport *vt)
{
    struct verbs_conn *c = vt->conns, *nxt;
    uint64_t now = 0;

    for (; c; c = nxt) {
        nxt = c->next;
        if (c->state != CONN_CLOSING || c->finalized) {
            continue;
        }
        if (c->inflight > 0) {
            if (now == 0) {
                now = now_ns();
            }
            if (now < c->drain_deadline) {
                continue;
            }
        }
        /* Entries still owed by a QP that never flushed are given back
         * here; completions for an unknown tag return nothing. */
        c->dev->cq_credits += (int)c->inflight;
        c->inflight = 0;
        if (c->cm) {
            if (c->cm->qp) {
                rdma_destroy_qp(c->cm);
            }
            rdma_destroy_id(c->cm);
            c->cm = NULL;
        }
        c->finalized = true;
        if (c->passive) {
            conn_unlink(vt, c);
            conn_free(c);
        }
        pthread_cond_broadcast(&vt->closed);
    }
}

static struct verbs_conn *
conn_by_tag(struct verbs_transport *vt, uint32_t tag)
{
    for (struct verbs_conn *c = vt->conns; c; c = c->next) {
        if (c->tag == tag && !c->finalized) {
            return c;
        }
    }
    return NULL;
}

static int
poll_cq(struct verbs_transport *vt, struct verbs_dev *d, struct done_list *dl)
{
    struct ibv_wc wc[VERBS_POLL_BATCH];
    int total = 0, n;

    do {
        n = ibv_poll_cq(d->cq, VERBS_POLL_BATCH, wc);
        if (n < 0) {
            fprintf(stderr,
                    "verbs: polling the completion queue of %s "
                    "failed\n",
                    d->name);
            break;
        }
        for (int i = 0; i < n; i++) {
            struct verbs_conn *c = conn_by_tag(vt, wc[i].wr_id >> 32);
            uint32_t s = (uint32_t)wc[i].wr_id;
            struct agent_transport_op *op;
            char why[AGENT_TRANSPORT_ERR_LEN];
            int err;

            if (!c || s >= c->depth) {
                continue;
            }
            if (wc[i].status != IBV_WC_SUCCESS) {
                /* The first failure breaks the path and fails the ops
                 * with a slice on it, this one's included; the flush of
                 * the rest finds no op. */
                err = wc_error(wc[i].status, why, sizeof why);
                if (err != -ECANCELED || c->error == 0) {
                    conn_fail(c, err, dl, "%s (peer %s at %s)", why, c->node,
                              c->where);
                }
            }
            op = c->slots[s].op;
            c->slots[s].op = NULL;
            c->slots[s].next_free = c->free_slot;
            c->free_slot = s;
            c->inflight--;
            d->cq_credits++;
            if (op) {
                d->st.slices++;
                d->st.bytes += c->slots[s].len;
                op_slices_done(vt, op, 1, dl);
            }
        }
        total += n;
    } while (n == VERBS_POLL_BATCH);
    return total;
}

/* --- Posting ---------------------------------------------------------- */

#define DEREGISTERED                                                          \
    "the local buffer's region was deregistered before the op was posted"

/* Looks up the local keys of op's buffer, one per NIC; false when its
 * region is gone. */
static bool
op_lkeys(struct verbs_transport *vt, const struct agent_transport_op *op,
         uint32_t *lkeys)
{
    const struct agent_transport_reg *g;
    const struct verbs_mrs *m = NULL;
    uintptr_t a = (uintptr_t)op->local, b;

    pthread_mutex_lock(vt->base.regs_lock);
    g = agent_transport_reg_at(&vt->base, op->lregion);
    if (g && g->used && g->priv) {
        b = (uintptr_t)g->base;
        if (a >= b && op->len <= g->len && a - b <= g->len - op->len) {
            m = g->priv;
            for (unsigned i = 0; i < vt->ndev; i++) {
                lkeys[i] = m->mr[i]->lkey;
            }
        }
    }
    pthread_mutex_unlock(vt->base.regs_lock);
    return m != NULL;
}

/* Looks up the local keys of the queue head's buffer. */
static bool
head_keys(struct verbs_transport *vt, struct verbs_link *l,
          struct done_list *dl)
{
    if (!op_lkeys(vt, l->wait_head, l->head_lkey)) {
        op_mark(l->wait_head, -EINVAL, DEREGISTERED);
        link_drop_head(l, dl);
        return false;
    }
    l->head_ready = true;
    return true;
}

/* The paths an op may use: one per key the peer's region carries. */
static unsigned
op_paths(const struct verbs_link *l, const struct agent_transport_op *op)
{
    unsigned n = op->remote.nkeys ? op->remote.nkeys : 1;

    return n < l->npaths ? n : l->npaths;
}

/* The next path (round robin) among the first np that is up and has
 * room, or -1. */
static int
pick_path(struct verbs_link *l, unsigned np, const int *batched)
{
    for (unsigned k = 0; k < np; k++) {
        unsigned i = (l->rr + k) % np;
        struct verbs_conn *p = l->path[i];

        if (p->state == CONN_UP && p->inflight < p->depth &&
            p->dev->cq_credits > 0 && batched[i] < VERBS_POST_BATCH) {
            l->rr = i + 1;
            return (int)i;
        }
    }
    return -1;
}

/* The error of the first of np paths that failed. */
static const struct verbs_conn *
first_failed(const struct verbs_link *l, unsigned np)
{
    for (unsigned i = 0; i < np; i++) {
        if (l->path[i]->state != CONN_UP) {
            return l->path[i];
        }
    }
    return l->path[0];
}

/* Posts one path's batch; on failure the path fails. */
static void
flush_path(struct verbs_conn *c, struct ibv_send_wr *wrs, int n,
           struct done_list *dl)
{
    struct ibv_send_wr *bad = NULL;
    char why[AGENT_TRANSPORT_ERR_LEN];
    int rc, err;

    if (n == 0) {
        return;
    }
    rc = ibv_post_send(c->cm->qp, wrs, &bad);
    if (rc == 0) {
        return;
    }
    err = neg_errno(rc);
    snprintf(why, sizeof why, "cannot post to the send queue of %s: %s",
             c->dev->name, strerror(-err));
    /* What was not posted will never complete. */
    for (int i = bad ? (int)(bad - wrs) : 0; i < n; i++) {
        uint32_t s = (uint32_t)wrs[i].wr_id;
        struct agent_transport_op *op = c->slots[s].op;

        c->slots[s].op = NULL;
        c->slots[s].next_free = c->free_slot;
        c->free_slot = s;
        c->inflight--;
        c->dev->cq_credits++;
        if (op) {
            op_mark(op, err, why);
            op_slices_done(c->vt, op, 1, dl);
        }
    }
    conn_fail(c, err, dl, "%s", why);
}

/* Adds a slice of op (off, len) to path i's batch wrs/sges (*n so far). */
static void
batch_slice(struct verbs_transport *vt, struct verbs_link *l, unsigned i,
            struct agent_transport_op *op, uint64_t off, uint32_t len,
            const uint32_t *lkeys, struct ibv_send_wr *wrs,
            struct ibv_sge *sges, int *n)
{
    struct verbs_conn *p = l->path[i];
    uint64_t key = op->remote.nkeys ? op->remote.keys[i] : op->remote.key;
    uint32_t s = p->free_slot;

    p->free_slot = p->slots[s].next_free;
    p->slots[s].op = op;
    p->slots[s].off = off;
    p->slots[s].len = len;
    p->inflight++;
    p->dev->cq_credits--;
    sges[*n] = (struct ibv_sge){
        .addr = (uintptr_t)op->local + off,
        .length = len,
        .lkey = lkeys[p->dev - vt->dev],
    };
    wrs[*n] = (struct ibv_send_wr){
        .wr_id = (uint64_t)p->tag << 32 | s,
        .sg_list = &sges[*n],
        .num_sge = 1,
        .opcode = op->opcode == AGENT_TRANSPORT_READ ? IBV_WR_RDMA_READ
                                                     : IBV_WR_RDMA_WRITE,
        .send_flags = IBV_SEND_SIGNALED,
        .wr.rdma.remote_addr = op->remote.addr + op->remote_off + off,
        .wr.rdma.rkey = (uint32_t)key,
    };
    if (*n > 0) {
        wrs[*n - 1].next = &wrs[*n];
    }
    (*n)++;
}

/* The path for op's next slice: an index, -1 to wait for room, or -2
 * when none of its paths is left (op is then marked failed). */
static int
slice_path(struct verbs_link *l, struct agent_transport_op *op, const int *n)
{
    unsigned np = op_paths(l, op);
    const struct verbs_conn *f;
    int i = pick_path(l, np, n);

    if (i >= 0) {
        return i;
    }
    for (unsigned k = 0; k < np; k++) {
        if (l->path[k]->state == CONN_UP) {
            return -1; /* room comes back with completions */
        }
    }
    f = first_failed(l, np);
    op_mark(op, f->error ? f->error : -ENOTCONN, f->why);
    return -2;
}

/* Batches the slices of failed paths again, on paths still up. */
static int
batch_retries(struct verbs_transport *vt, struct verbs_link *l,
              struct ibv_send_wr (*wrs)[VERBS_POST_BATCH],
              struct ibv_sge (*sges)[VERBS_POST_BATCH], int *n,
              struct done_list *dl)
{
    uint32_t lkeys[AGENT_TRANSPORT_MAX_NICS];
    uint32_t kept = 0;
    int total = 0;

    for (uint32_t k = 0; k < l->nretry; k++) {
        struct verbs_retry r = l->retry[k];
        int i = r.op->status != 0 ? -2 : slice_path(l, r.op, n);

        if (i == -1) {
            l->retry[kept++] = r;
            continue;
        }
        if (i >= 0 && !op_lkeys(vt, r.op, lkeys)) {
            op_mark(r.op, -EINVAL, DEREGISTERED);
            i = -2;
        }
        if (i == -2) {
            op_slices_done(vt, r.op, 1, dl);
            continue;
        }
        batch_slice(vt, l, (unsigned)i, r.op, r.off, r.len, lkeys, wrs[i],
                    sges[i], &n[i]);
        total++;
    }
    l->nretry = kept;
    return total;
}

/* Posts slices of l's queued ops, striped over its paths, while they
 * have room; slices of failed paths go first.  Nothing is posted while
 * a path is still being set up. */
static void
link_post(struct verbs_transport *vt, struct verbs_link *l,
          struct done_list *dl)
{
    struct ibv_send_wr wrs[AGENT_TRANSPORT_MAX_NICS][VERBS_POST_BATCH];
    struct ibv_sge sges[AGENT_TRANSPORT_MAX_NICS][VERBS_POST_BATCH];
    int n[AGENT_TRANSPORT_MAX_NICS], total;

    for (unsigned i = 0; i < l->npaths; i++) {
        if (l->path[i]->state < CONN_UP) {
            return;
        }
    }
    do {
        memset(n, 0, sizeof n);
        total = batch_retries(vt, l, wrs, sges, n, dl);
        while (l->wait_head) {
            struct agent_transport_op *op = l->wait_head;
            uint64_t len;
            int i;

            if (op->status != 0) {
                link_drop_head(l, dl); /* a slice of it failed */
                continue;
            }
            if (!l->head_ready && !head_keys(vt, l, dl)) {
                continue;
            }
            i = slice_path(l, op, n);
            if (i == -1) {
                break;
            }
            if (i == -2) {
                link_drop_head(l, dl);
                continue;
            }
            len = op->len - l->head_off;
            if (len > vt->slice) {
                len = vt->slice;
            }
            batch_slice(vt, l, (unsigned)i, op, l->head_off, (uint32_t)len,
                        l->head_lkey, wrs[i], sges[i], &n[i]);
            total++;
            l->head_off += len;
            if (l->head_off == op->len) {
                l->wait_head = op->next;
                if (!l->wait_head) {
                    l->wait_tail = NULL;
                }
                l->head_off = 0;
                l->head_ready = false;
            }
        }
        for (unsigned i = 0; i < l->npaths; i++) {
            flush_path(l->path[i], wrs[i], n[i], dl);
        }
    } while (total > 0 && (l->wait_head || l->nretry));
}

/* --- Connection management ------------------------------------------- */

/* An rdma_cm event, copied so that it can be acknowledged at once. */
struct cm_event {
    enum rdma_cm_event_type type; /* what happened */
    struct rdma_cm_id *id;        /* the id it happened to */
    int status;                   /* errno or reject reason */
    uint8_t initiator_depth;      /* CONNECT_REQUEST's */
    uint8_t responder_resources;  /* CONNECT_REQUEST's */
    uint8_t pdata_len;            /* private data bytes */
    uint8_t pdata[256];           /* private data */
};

static void refuse(struct verbs_transport *vt, struct rdma_cm_id *id, int err,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Rejects a connect request with a reason the client reports. */
static void
refuse(struct verbs_transport *vt, struct rdma_cm_id *id, int err,
       const char *fmt, ...)
{
    struct verbs_refusal r = {
        .magic = htobe32(VERBS_MAGIC),
        .version = VERBS_VERSION,
        .err = (uint8_t)err,
    };
    char text[VERBS_REASON_MAX + 1];
    va_list ap;
    size_t n;

    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    n = strlen(text);
    r.reason_len = (uint8_t)n;
    memcpy(r.reason, text, n);
    rdma_reject(id, &r, (uint8_t)(offsetof(struct verbs_refusal, reason) + n));
    rdma_destroy_id(id);
    vt->stats.refused++;
}

static int
create_qp(struct verbs_dev *d, struct rdma_cm_id *id, uint32_t sq_depth)
{
    struct ibv_qp_init_attr attr = {
        .send_cq = d->cq,
        .recv_cq = d->cq,
        .qp_type = IBV_QPT_RC,
        .cap =
            {
                .max_send_wr = sq_depth,
                .max_recv_wr = 1,
                .max_send_sge = 1,
                .max_recv_sge = 1,
            },
    };

    if (rdma_create_qp(id, d->pd, &attr)) {
        return neg_errno(-1);
    }
    return 0;
}

static void
on_connect_request(struct verbs_transport *vt, struct cm_event *e)
{
    struct verbs_hello h;
    struct verbs_welcome w = {
        .magic = htobe32(VERBS_MAGIC),
        .version = VERBS_VERSION,
        .boot_id = htobe64(vt->boot_id),
    };
    struct rdma_conn_param param = {0};
    char name[VERBS_REQ_NAME_MAX + 1];
    char why[VERBS_REASON_MAX] = "";
    struct verbs_conn *c;
    struct verbs_dev *d = NULL;
    uint64_t boot;
    bool ok;
    int r;

    if (vt->stop) {
        refuse(vt, e->id, ECONNREFUSED, "node %s is shutting down", vt->node);
        return;
    }
    if (e->pdata_len < offsetof(struct verbs_hello, name)) {
        refuse(vt, e->id, EPROTO,
               "handshake of %u bytes is shorter than its %zu-byte header",
               e->pdata_len, offsetof(struct verbs_hello, name));
        return;
    }
    memset(&h, 0, sizeof h);
    memcpy(&h, e->pdata, e->pdata_len < sizeof h ? e->pdata_len : sizeof h);
    if (be32toh(h.magic) != VERBS_MAGIC) {
        refuse(vt, e->id, EPROTO,
               "bad handshake magic 0x%08x: not an MCOS verbs peer",
               be32toh(h.magic));
        return;
    }
    if (h.version != VERBS_VERSION) {
        refuse(vt, e->id, EPROTO,
               "handshake version %u; node %s speaks version %u", h.version,
               vt->node, VERBS_VERSION);
        return;
    }
    if (h.name_len == 0 || h.name_len > VERBS_REQ_NAME_MAX ||
        offsetof(struct verbs_hello, name) + h.name_len > e->pdata_len ||
        memchr(h.name, '\0', h.name_len)) {
        refuse(vt, e->id, EPROTO, "bad node name length %u in handshake",
               h.name_len);
        return;
    }
    memcpy(name, h.name, h.name_len);
    name[h.name_len] = '\0';
    boot = be64toh(h.boot_id);
    for (unsigned i = 0; i < vt->ndev; i++) {
        if (e->id->verbs == vt->dev[i].verbs) {
            d = &vt->dev[i];
        }
    }
    if (!d) {
        refuse(vt, e->id, ECONNREFUSED,
               "request arrived on an RDMA device node %s does not use",
               vt->node);
        return;
    }

    /* Admission may consult state the caller guards with its own locks;
     * ours is not held while it runs.  The new id is not known to any
     * other thread yet. */
    pthread_mutex_unlock(&vt->lock);
    ok = vt->admit(vt->admit_arg, name, boot, why, sizeof why);
    pthread_mutex_lock(&vt->lock);
    if (!ok) {
        refuse(vt, e->id, EACCES, "%s",
               why[0] ? why : "not admitted by the brain");
        return;
    }

    c = calloc(1, sizeof *c);
    if (!c) {
        refuse(vt, e->id, ECONNREFUSED, "node %s is out of memory", vt->node);
        return;
    }
    c->vt = vt;
    c->dev = d;
    c->passive = true;
    c->tag = ++vt->next_tag;
    c->cm = e->id;
    c->state = CONN_CONNECTING;
    c->boot_id = boot;
    snprintf(c->node, sizeof c->node, "%s", name);
    snprintf(c->where, sizeof c->where, "%s", "(accepted)");
    r = create_qp(d, e->id, 1);
    if (r < 0) {
        free(c);
        refuse(vt, e->id, ECONNREFUSED,
               "node %s cannot create a queue pair: %s", vt->node,
               strerror(-r));
        return;
    }
    e->id->context = c;
    w.name_len = (uint8_t)strlen(vt->node);
    memcpy(w.name, vt->node, w.name_len);
    param.private_data = &w;
    param.private_data_len =
        (uint8_t)(offsetof(struct verbs_welcome, name) + w.name_len);
    param.responder_resources =
        e->initiator_depth < d->rd_atom ? e->initiator_depth : d->rd_atom;
    param.initiator_depth = e->responder_resources < d->init_rd_atom
                                ? e->responder_resources
                                : d->init_rd_atom;
    param.rnr_retry_count = 7;
    if (rdma_accept(e->id, &param)) {
        rdma_destroy_qp(e->id);
        rdma_destroy_id(e->id);
        free(c);
        vt->stats.connect_errors++;
        return;
    }
    c->next = vt->conns;
    vt->conns = c;
}

static void
on_passive_event(struct verbs_transport *vt, struct verbs_conn *c,
                 struct cm_event *e, struct done_list *dl)
{
    switch (e->type) {
    case RDMA_CM_EVENT_ESTABLISHED:
        if (c->state == CONN_CONNECTING) {
            c->state = CONN_UP;
            vt->stats.connects++;
        }
        break;
    case RDMA_CM_EVENT_CONNECT_ERROR:
    case RDMA_CM_EVENT_UNREACHABLE:
    case RDMA_CM_EVENT_REJECTED:
        if (c->state == CONN_CONNECTING) {
            vt->stats.connect_errors++;
        }
        begin_close(c, -ECONNABORTED, "connection failed", dl);
        break;
    case RDMA_CM_EVENT_DISCONNECTED:
    case RDMA_CM_EVENT_DEVICE_REMOVAL:
        begin_close(c, -ECONNRESET, "peer closed the connection", dl);
        break;
    default:
        break;
    }
}

/* Checks the accept's private data against the node we meant to reach. */
static void
on_established(struct verbs_transport *vt, struct verbs_conn *c,
               struct cm_event *e, struct done_list *dl)
{
    struct verbs_welcome w;
    char name[AGENT_TRANSPORT_NODE_MAX];
    size_t hdr = offsetof(struct verbs_welcome, name);

    memset(&w, 0, sizeof w);
    memcpy(&w, e->pdata, e->pdata_len < sizeof w ? e->pdata_len : sizeof w);
    if (e->pdata_len < hdr || be32toh(w.magic) != VERBS_MAGIC ||
        w.version != VERBS_VERSION || w.status != 0 ||
        w.name_len >= AGENT_TRANSPORT_NODE_MAX ||
        hdr + w.name_len > e->pdata_len) {
        conn_fail(c, -EPROTO, dl,
                  "peer at %s accepted without a valid MCOS handshake",
                  c->where);
        return;
    }
    memcpy(name, w.name, w.name_len);
    name[w.name_len] = '\0';
    if (strcmp(name, c->node) != 0) {
        conn_fail(c, -EPROTO, dl, "peer answered as %s, expected %s", name,
                  c->node);
        return;
    }
    if (c->boot_id != 0 && be64toh(w.boot_id) != c->boot_id) {
        conn_fail(c, -EPROTO, dl,
                  "peer %s answered with boot id %016llx, expected %016llx "
                  "(it restarted)",
                  name, (unsigned long long)be64toh(w.boot_id),
                  (unsigned long long)c->boot_id);
        return;
    }
    c->state = CONN_UP;
    vt->stats.connects++;
}

static void
on_rejected(struct verbs_conn *c, struct cm_event *e, struct done_list *dl)
{
    struct verbs_refusal r;
    size_t hdr = offsetof(struct verbs_refusal, reason);
    int err;

    memset(&r, 0, sizeof r);
    memcpy(&r, e->pdata, e->pdata_len < sizeof r ? e->pdata_len : sizeof r);
    if (e->status == 28 && e->pdata_len >= hdr &&
        be32toh(r.magic) == VERBS_MAGIC && r.reason_len <= VERBS_REASON_MAX &&
        hdr + r.reason_len <= e->pdata_len) {
        err = r.err == EACCES ? -EACCES : -ECONNREFUSED;
        if (r.err == EPROTO) {
            err = -EPROTO;
        }
        conn_fail(c, err, dl, "peer %s refused the connection: %.*s", c->node,
                  (int)r.reason_len, r.reason);
        return;
    }
    conn_fail(c, -ECONNREFUSED, dl,
              "peer %s at %s refused the connection (%s, reason %d)", c->node,
              c->where, reject_reason(e->status), e->status);
}

static void
on_route_resolved(struct verbs_transport *vt, struct verbs_conn *c,
                  struct done_list *dl)
{
    struct verbs_hello h = {
        .magic = htobe32(VERBS_MAGIC),
        .version = VERBS_VERSION,
        .boot_id = htobe64(vt->boot_id),
    };
    struct rdma_conn_param param = {0};
    struct verbs_dev *d = c->dev;
    uint32_t depth = VERBS_SQ_DEPTH;
    uint8_t ack_timeout = VERBS_ACK_TIMEOUT;
    int r;

    if (depth > d->max_sq) {
        depth = d->max_sq;
    }
    r = create_qp(d, c->cm, depth);
    if (r < 0) {
        conn_fail(c, r, dl, "cannot create a queue pair on %s: %s", d->name,
                  strerror(-r));
        return;
    }
    /* The provider may round the queue up; we use what we asked for. */
    c->slots = calloc(depth, sizeof *c->slots);
    if (!c->slots) {
        conn_fail(c, -ENOMEM, dl, "out of memory");
        return;
    }
    c->depth = depth;
    for (uint32_t i = 0; i < depth; i++) {
        c->slots[i].next_free = i + 1 < depth ? i + 1 : VERBS_NO_SLOT;
    }
    c->free_slot = 0;
    h.name_len = (uint8_t)strlen(vt->node);
    memcpy(h.name, vt->node, h.name_len);
    /* Best effort: kernels before 4.19 keep their default. */
    (void)rdma_set_option(c->cm, RDMA_OPTION_ID, RDMA_OPTION_ID_ACK_TIMEOUT,
                          &ack_timeout, sizeof ack_timeout);
    param.private_data = &h;
    param.private_data_len = sizeof h;
    param.responder_resources = d->rd_atom;
    param.initiator_depth = d->init_rd_atom;
    param.retry_count = VERBS_RETRY_COUNT;
    param.rnr_retry_count = 7;
    if (rdma_connect(c->cm, &param)) {
        r = neg_errno(-1);
        conn_fail(c, r, dl, "cannot connect to %s at %s: %s", c->node,
                  c->where, strerror(-r));
        return;
    }
    c->state = CONN_CONNECTING;
}

static void
on_client_event(struct verbs_transport *vt, struct verbs_conn *c,
                struct cm_event *e, struct done_list *dl)
{
    int st = e->status < 0 ? e->status : 0;

    if (c->state == CONN_CLOSING) {
        return;
    }
    switch (e->type) {
    case RDMA_CM_EVENT_ADDR_RESOLVED:
        if (c->state != CONN_RESOLVING_ADDR) {
            break;
        }
        if (c->cm->verbs != c->dev->verbs) {
            conn_fail(c, -EXDEV, dl,
                      "peer %s at %s is reached through RDMA device %s, "
                      "but this transport uses %s",
                      c->node, c->where,
                      c->cm->verbs ? ibv_get_device_name(c->cm->verbs->device)
                                   : "(none)",
                      c->dev->name);
            break;
        }
        if (rdma_resolve_route(c->cm, VERBS_RESOLVE_MS)) {
            st = neg_errno(-1);
            conn_fail(c, st, dl, "cannot resolve a route to %s at %s: %s",
                      c->node, c->where, strerror(-st));
            break;
        }
        c->state = CONN_RESOLVING_ROUTE;
        break;
    case RDMA_CM_EVENT_ROUTE_RESOLVED:
        if (c->state == CONN_RESOLVING_ROUTE) {
            on_route_resolved(vt, c, dl);
        }
        break;
    case RDMA_CM_EVENT_ESTABLISHED:
        if (c->state == CONN_CONNECTING) {
            on_established(vt, c, e, dl);
        }
        break;
    case RDMA_CM_EVENT_REJECTED:
        on_rejected(c, e, dl);
        break;
    case RDMA_CM_EVENT_ADDR_ERROR:
        conn_fail(c, st ? st : -EHOSTUNREACH, dl,
                  "cannot resolve %s (peer %s) to an RDMA address: %s",
                  c->where, c->node, strerror(st ? -st : EHOSTUNREACH));
        break;
    case RDMA_CM_EVENT_ROUTE_ERROR:
        conn_fail(c, st ? st : -ENETUNREACH, dl,
                  "no RDMA route to %s (peer %s): %s", c->where, c->node,
                  strerror(st ? -st : ENETUNREACH));
        break;
    case RDMA_CM_EVENT_UNREACHABLE:
        conn_fail(c, -EHOSTUNREACH, dl,
                  "peer %s at %s is unreachable: no answer to the connect "
                  "request",
                  c->node, c->where);
        break;
    case RDMA_CM_EVENT_CONNECT_ERROR:
        conn_fail(c, st ? st : -ECONNABORTED, dl,
                  "connection to %s at %s failed while being established",
                  c->node, c->where);
        break;
    case RDMA_CM_EVENT_DISCONNECTED:
        conn_fail(c, -ECONNRESET, dl, "peer %s at %s closed the connection",
                  c->node, c->where);
        break;
    case RDMA_CM_EVENT_DEVICE_REMOVAL:
        conn_fail(c, -ENODEV, dl, "RDMA device %s was removed", c->dev->name);
        break;
    case RDMA_CM_EVENT_ADDR_CHANGE:
        conn_fail(c, -ENETRESET, dl,
                  "the local address used to reach %s changed", c->node);
        break;
    default:
        /* TIMEWAIT_EXIT and the rest need nothing. */
        break;
    }
}

static void
handle_cm_events(struct verbs_transport *vt, struct done_list *dl)
{
    struct rdma_cm_event *ev;
    struct cm_event e;
    const void *pd;
    struct verbs_conn *c;

    while (rdma_get_cm_event(vt->ec, &ev) == 0) {
        memset(&e, 0, sizeof e);
        e.type = ev->event;
        e.id = ev->id;
        e.status = ev->status;
        pd = ev->param.conn.private_data;
        if (pd && ev->param.conn.private_data_len) {
            e.pdata_len = ev->param.conn.private_data_len;
            memcpy(e.pdata, pd, e.pdata_len);
        }
        e.initiator_depth = ev->param.conn.initiator_depth;
        e.responder_resources = ev->param.conn.responder_resources;
        rdma_ack_cm_event(ev);

        if (e.type == RDMA_CM_EVENT_CONNECT_REQUEST) {
            on_connect_request(vt, &e);
            continue;
        }
        c = e.id ? e.id->context : NULL;
        if (!c) {
            if (e.type == RDMA_CM_EVENT_DEVICE_REMOVAL) {
                fprintf(stderr,
                        "verbs: an RDMA device of node %s was "
                        "removed\n",
                        vt->node);
            }
            continue;
        }
        if (c->finalized) {
            continue;
        }
        if (c->passive) {
            on_passive_event(vt, c, &e, dl);
        } else {
            on_client_event(vt, c, &e, dl);
        }
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
        fprintf(stderr, "verbs: reading rdma_cm events failed: %s\n",
                strerror(errno));
    }
}

/* --- The dataplane thread -------------------------------------------- */

/* One round of everything: finalize, connection events, requests,
 * completions, posts; then the callbacks, outside the lock.  Returns the
 * number of work completions seen. */
static int
service(struct verbs_transport *vt, bool cm_ready)
{
    struct done_list dl = {0};
    int got;

    pthread_mutex_lock(&vt->lock);
    finalize_closed(vt);
    if (cm_ready) {
        handle_cm_events(vt, &dl);
    }
    if (vt->stop && !vt->stopping) {
        vt->stopping = true;
        for (struct verbs_link *l = vt->links; l; l = l->next) {
            link_close(l, -ECANCELED, "the transport is shutting down", &dl);
        }
        for (struct verbs_conn *c = vt->conns; c; c = c->next) {
            begin_close(c, -ECANCELED, "the transport is shutting down", &dl);
        }
    }
    if (vt->work) {
        vt->work = false;
        for (struct verbs_link *l = vt->links; l; l = l->next) {
            if (l->close_req && !l->closing) {
                link_close(l, -ECANCELED,
                           "disconnected before the op completed", &dl);
            }
        }
    }
    got = 0;
    for (unsigned i = 0; i < vt->ndev; i++) {
        got += poll_cq(vt, &vt->dev[i], &dl);
    }
    for (struct verbs_link *l = vt->links; l; l = l->next) {
        if (l->wait_head || l->nretry) {
            link_post(vt, l, &dl);
        }
    }
    pthread_mutex_unlock(&vt->lock);
    run_done(&dl);
    return got;
}

/* True when the thread should keep spinning: slices in flight. */
static bool
busy(struct verbs_transport *vt)
{
    bool b = false;

    pthread_mutex_lock(&vt->lock);
    for (struct verbs_conn *c = vt->conns; c && !b; c = c->next) {
        b = c->inflight > 0;
    }
    b = b || vt->work;
    pthread_mutex_unlock(&vt->lock);
    return b;
}

/* -1 (sleep until woken) unless something closes on a deadline. */
static int
epoll_timeout(struct verbs_transport *vt, bool *done)
{
    int timeout = -1;

    pthread_mutex_lock(&vt->lock);
    for (struct verbs_conn *c = vt->conns; c; c = c->next) {
        if (c->state == CONN_CLOSING && !c->finalized) {
            timeout = 1;
        }
    }
    if (vt->stopping && timeout < 0) {
        *done = true;
    }
    pthread_mutex_unlock(&vt->lock);
    return timeout;
}

static void
drain_wakeups(struct verbs_transport *vt, const struct epoll_event *evs, int n,
              bool *cm_ready)
{
    struct ibv_cq *cq;
    void *ctx;
    uint64_t v;

    for (int i = 0; i < n; i++) {
        uint32_t what = evs[i].data.u32;

        if (what == EV_KICK) {
            if (read(vt->evfd, &v, sizeof v) < 0) {
                /* EAGAIN: someone else drained it. */
            }
            pthread_mutex_lock(&vt->lock);
            vt->kicked = false;
            pthread_mutex_unlock(&vt->lock);
        } else if (what == EV_CM) {
            *cm_ready = true;
        } else if (what >= EV_CQ && what - EV_CQ < vt->ndev) {
            struct verbs_dev *d = &vt->dev[what - EV_CQ];
            unsigned acks = 0;

            while (ibv_get_cq_event(d->cc, &cq, &ctx) == 0) {
                acks++;
            }
            if (acks) {
                ibv_ack_cq_events(d->cq, acks);
            }
        }
    }
}

static void *
dataplane_main(void *arg)
{
    struct verbs_transport *vt = arg;
    struct epoll_event evs[2 + AGENT_TRANSPORT_MAX_NICS];
    bool cm_ready, done = false;
    uint64_t spin_end, now;
    int n, got, timeout;

    for (;;) {
        timeout = epoll_timeout(vt, &done);
        if (done) {
            break;
        }
        n = epoll_wait(vt->epfd, evs, 2 + AGENT_TRANSPORT_MAX_NICS, timeout);
        cm_ready = false;
        if (n > 0) {
            drain_wakeups(vt, evs, n, &cm_ready);
        }
        spin_end = 0;
        for (;;) {
            got = service(vt, cm_ready);
            cm_ready = false;
            now = now_ns();
            if (got > 0) {
                spin_end = now + VERBS_SPIN_NS;
            }
            if (now < spin_end && busy(vt)) {
                continue;
            }
            /* Arm, then look once more: a completion that landed between
             * the last poll and the arm raises no event. */
            for (unsigned i = 0; i < vt->ndev; i++) {
                ibv_req_notify_cq(vt->dev[i].cq, 0);
            }
            if (service(vt, false) > 0) {
                spin_end = now_ns() + VERBS_SPIN_NS;
                continue;
            }
            break;
        }
    }
    for (unsigned i = 0; i < vt->ndev; i++) {
        if (vt->dev[i].listen) {
            rdma_destroy_id(vt->dev[i].listen);
            vt->dev[i].listen = NULL;
        }
    }
    return NULL;
}

/* --- Ops --------------------------------------------------------------- */

static bool
verbs_available(char *why, size_t whylen)
{
    struct ibv_device **list;
    int n = 0;

    list = ibv_get_device_list(&n);
    if (!list) {
        set_err(why, whylen, "no RDMA device (ibv_get_device_list: %s)",
                strerror(errno));
        return false;
    }
    ibv_free_device_list(list);
    if (n <= 0) {
        set_err(why, whylen,
                "no RDMA device (ibv_get_device_list found none)");
        return false;
    }
    return true;
}

static int
set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        return -errno;
    }
    return 0;
}

static int
resolve(const char *host, uint16_t port, bool passive,
        struct sockaddr_storage *out, char *err, size_t errlen)
{
    struct addrinfo hints =
                        {
                            .ai_family = AF_UNSPEC,
                            .ai_socktype = SOCK_STREAM,
                            .ai_flags =
                                AI_NUMERICSERV | (passive ? AI_PASSIVE : 0),
                        },
                    *ai;
    char ps[8];
    int r;

    snprintf(ps, sizeof ps, "%u", port);
    r = getaddrinfo(host, ps, &hints, &ai);
    if (r != 0) {
        set_err(err, errlen, "verbs: cannot resolve address %s: %s", host,
                gai_strerror(r));
        return -EINVAL;
    }
    memset(out, 0, sizeof *out);
    memcpy(out, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    return 0;
}

/* The listen address of NIC i: cfg->address, then more_addresses. */
static const char *
nic_address(const struct agent_transport_config *cfg, unsigned i)
{
    return i == 0 ? cfg->address : cfg->more_addresses[i - 1];
}

/* Picks the devices: each listener's (the first must be cfg->device when
 * that is set, and no two may share one), or, without a listener,
 * cfg->device or the first. */
static int
pick_devices(struct verbs_transport *vt,
             const struct agent_transport_config *cfg, char *err,
             size_t errlen)
{
    const char *want = cfg->device && *cfg->device ? cfg->device : NULL;
    char have[160] = "";
    size_t used = 0;
    int n = 0;

    vt->devs = rdma_get_devices(&n);
    if (!vt->devs || n == 0) {
        set_err(err, errlen, "verbs: no RDMA device usable by rdma_cm");
        if (vt->devs) {
            rdma_free_devices(vt->devs);
            vt->devs = NULL;
        }
        return -ENODEV;
    }
    if (vt->dev[0].listen) {
        for (unsigned i = 0; i < vt->ndev; i++) {
            struct verbs_dev *d = &vt->dev[i];

            d->verbs = d->listen->verbs;
            if (!d->verbs) {
                set_err(err, errlen,
                        "verbs: address %s is not on an RDMA device",
                        d->address);
                return -EADDRNOTAVAIL;
            }
            snprintf(d->name, sizeof d->name, "%s",
                     ibv_get_device_name(d->verbs->device));
            for (unsigned j = 0; j < i; j++) {
                if (vt->dev[j].verbs == d->verbs) {
                    set_err(err, errlen,
                            "verbs: addresses %s and %s are both on RDMA "
                            "device %s; give one address per NIC",
                            vt->dev[j].address, d->address, d->name);
                    return -EINVAL;
                }
            }
        }
        if (want && strcmp(vt->dev[0].name, want)) {
            set_err(err, errlen,
                    "verbs: address %s is on RDMA device %s, not the "
                    "configured %s",
                    cfg->address, vt->dev[0].name, want);
            return -EINVAL;
        }
        return 0;
    }
    for (int i = 0; i < n; i++) {
        const char *name = ibv_get_device_name(vt->devs[i]->device);

        if (!want || strcmp(name, want) == 0) {
            vt->dev[0].verbs = vt->devs[i];
            snprintf(vt->dev[0].name, sizeof vt->dev[0].name, "%s", name);
            return 0;
        }
        if (used < sizeof have) {
            used += (size_t)snprintf(have + used, sizeof have - used, "%s%s",
                                     i ? ", " : "", name);
        }
    }
    set_err(err, errlen, "verbs: no RDMA device named %s (found: %s)", want,
            have);
    return -ENODEV;
}

/* Binds NIC d's listener to address:port (port 0: any). */
static int
bind_listener(struct verbs_transport *vt, struct verbs_dev *d,
              const char *address, uint16_t port, char *err, size_t errlen)
{
    int r;

    snprintf(d->address, sizeof d->address, "%s", address);
    r = resolve(address, port, true, &d->src, err, errlen);
    if (r < 0) {
        return r;
    }
    if (rdma_create_id(vt->ec, &d->listen, NULL, RDMA_PS_TCP)) {
        r = neg_errno(-1);
        set_err(err, errlen, "verbs: rdma_create_id: %s", strerror(-r));
        return r;
    }
    if (rdma_bind_addr(d->listen, (struct sockaddr *)&d->src)) {
        r = neg_errno(-1);
        if (r == -EADDRINUSE) {
            set_err(err, errlen, "verbs: port %u on %s is in use", port,
                    address);
        } else if (r == -EADDRNOTAVAIL || r == -ENODEV) {
            set_err(err, errlen,
                    "verbs: address %s is not on an RDMA device: %s", address,
                    strerror(-r));
        } else {
            set_err(err, errlen, "verbs: cannot bind %s port %u: %s", address,
                    port, strerror(-r));
        }
        rdma_destroy_id(d->listen);
        d->listen = NULL;
        return r;
    }
    d->has_src = true;
    /* Client ids bind to the listen address with any port. */
    if (d->src.ss_family == AF_INET) {
        ((struct sockaddr_in *)&d->src)->sin_port = 0;
    } else {
        ((struct sockaddr_in6 *)&d->src)->sin6_port = 0;
    }
    return 0;
}

/* Releases what dev_open acquired on d; safe on a partly opened d. */
static void
dev_close(struct verbs_dev *d)
{
    if (d->cq) {
        ibv_destroy_cq(d->cq);
        d->cq = NULL;
    }
    if (d->cc) {
        ibv_destroy_comp_channel(d->cc);
        d->cc = NULL;
    }
    if (d->pd) {
        ibv_dealloc_pd(d->pd);
        d->pd = NULL;
    }
}

/* Opens NIC d's PD, completion channel and CQ; dev_close undoes it. */
static int
dev_open(struct verbs_dev *d, char *err, size_t errlen)
{
    struct ibv_device_attr attr;
    int r, cqe;

    if (ibv_query_device(d->verbs, &attr)) {
        r = neg_errno(-1);
        set_err(err, errlen, "verbs: cannot query %s: %s", d->name,
                strerror(-r));
        return r;
    }
    d->max_sq = attr.max_qp_wr > 0 ? (uint32_t)attr.max_qp_wr : 1;
    d->rd_atom = attr.max_qp_rd_atom < VERBS_RD_ATOM_MAX
                     ? (uint8_t)attr.max_qp_rd_atom
                     : VERBS_RD_ATOM_MAX;
    d->init_rd_atom = attr.max_qp_init_rd_atom < VERBS_RD_ATOM_MAX
                          ? (uint8_t)attr.max_qp_init_rd_atom
                          : VERBS_RD_ATOM_MAX;
    snprintf(d->st.name, sizeof d->st.name, "%s", d->name);
    d->pd = ibv_alloc_pd(d->verbs);
    if (!d->pd) {
        r = neg_errno(-1);
        set_err(err, errlen, "verbs: cannot allocate a PD on %s: %s", d->name,
                strerror(-r));
        return r;
    }
    d->cc = ibv_create_comp_channel(d->verbs);
    if (!d->cc) {
        r = neg_errno(-1);
        set_err(err, errlen,
                "verbs: cannot create a completion channel on %s: %s", d->name,
                strerror(-r));
        goto fail;
    }
    r = set_nonblock(d->cc->fd);
    if (r < 0) {
        set_err(err, errlen, "verbs: completion channel: %s", strerror(-r));
        goto fail;
    }
    cqe = attr.max_cqe < VERBS_CQ_DEPTH ? attr.max_cqe : VERBS_CQ_DEPTH;
    d->cq = ibv_create_cq(d->verbs, cqe, d, d->cc, 0);
    if (!d->cq) {
        r = neg_errno(-1);
        set_err(err, errlen, "verbs: cannot create a %d-entry CQ on %s: %s",
                cqe, d->name, strerror(-r));
        goto fail;
    }
    d->cq_credits = d->cq->cqe < cqe ? d->cq->cqe : cqe;
    r = ibv_req_notify_cq(d->cq, 0);
    if (r) {
        r = neg_errno(r);
        set_err(err, errlen, "verbs: cannot arm the CQ: %s", strerror(-r));
        goto fail;
    }
    return 0;

fail:
    dev_close(d);
    return r;
}

static int
verbs_init(struct agent_transport *t, const struct agent_transport_config *cfg,
           char *err, size_t errlen)
{
    struct verbs_transport *vt = verbs_of(t);
    struct epoll_event ev = {.events = EPOLLIN};
    unsigned naddr =
        cfg->address && *cfg->address ? 1 + cfg->n_more_addresses : 0;
    uint16_t port = cfg->port;
    int r;

    snprintf(vt->node, sizeof vt->node, "%s", cfg->node);
    vt->boot_id = cfg->boot_id;
    vt->slice = cfg->slice ? cfg->slice : VERBS_DEFAULT_SLICE;
    vt->admit = cfg->admit;
    vt->admit_arg = cfg->admit_arg;
    vt->epfd = vt->evfd = -1;
    vt->ndev = naddr ? naddr : 1;
    r = pthread_mutex_init(&vt->lock, NULL);
    if (r) {
        set_err(err, errlen, "verbs: pthread_mutex_init: %s", strerror(r));
        return -r;
    }
    pthread_cond_init(&vt->closed, NULL);

    vt->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (vt->evfd < 0) {
        r = -errno;
        set_err(err, errlen, "verbs: eventfd: %s", strerror(-r));
        goto undo_lock;
    }
    vt->ec = rdma_create_event_channel();
    if (!vt->ec) {
        r = neg_errno(-1);
        set_err(err, errlen, "verbs: cannot open the rdma_cm channel: %s",
                strerror(-r));
        goto undo_evfd;
    }
    r = set_nonblock(vt->ec->fd);
    if (r < 0) {
        set_err(err, errlen, "verbs: rdma_cm channel: %s", strerror(-r));
        goto undo_ec;
    }
    /* Every NIC listens on the same port: the first bind picks it when
     * the configuration says any. */
    for (unsigned i = 0; i < naddr; i++) {
        r = bind_listener(vt, &vt->dev[i], nic_address(cfg, i), port, err,
                          errlen);
        if (r < 0) {
            goto undo_dev;
        }
        if (port == 0) {
            port = be16toh(rdma_get_src_port(vt->dev[i].listen));
        }
    }
    r = pick_devices(vt, cfg, err, errlen);
    if (r < 0) {
        goto undo_dev;
    }
    for (unsigned i = 0; i < vt->ndev; i++) {
        r = dev_open(&vt->dev[i], err, errlen);
        if (r < 0) {
            goto undo_dev;
        }
    }

    vt->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (vt->epfd < 0) {
        r = -errno;
        set_err(err, errlen, "verbs: epoll_create1: %s", strerror(-r));
        goto undo_dev;
    }
    ev.data.u32 = EV_KICK;
    r = epoll_ctl(vt->epfd, EPOLL_CTL_ADD, vt->evfd, &ev);
    ev.data.u32 = EV_CM;
    r = r ? r : epoll_ctl(vt->epfd, EPOLL_CTL_ADD, vt->ec->fd, &ev);
    for (unsigned i = 0; i < vt->ndev && !r; i++) {
        ev.data.u32 = EV_CQ + i;
        r = epoll_ctl(vt->epfd, EPOLL_CTL_ADD, vt->dev[i].cc->fd, &ev);
    }
    if (r) {
        r = -errno;
        set_err(err, errlen, "verbs: epoll_ctl: %s", strerror(-r));
        goto undo_epoll;
    }

    /* Listen only once the PDs and CQs exist: a request may arrive at
     * once. */
    for (unsigned i = 0; i < naddr; i++) {
        if (rdma_listen(vt->dev[i].listen, VERBS_BACKLOG)) {
            r = neg_errno(-1);
            set_err(err, errlen, "verbs: cannot listen on %s port %u: %s",
                    vt->dev[i].address, port, strerror(-r));
            goto undo_epoll;
        }
        vt->port = port;
    }
    r = pthread_create(&vt->thread, NULL, dataplane_main, vt);
    if (r) {
        r = -r;
        set_err(err, errlen, "verbs: cannot start the dataplane thread: %s",
                strerror(-r));
        goto undo_epoll;
    }
    pthread_setname_np(vt->thread, "mcos-verbs");
    return 0;

undo_epoll:
    close(vt->epfd);
undo_dev:
    for (unsigned i = 0; i < vt->ndev; i++) {
        if (vt->dev[i].listen) {
            rdma_destroy_id(vt->dev[i].listen);
        }
        dev_close(&vt->dev[i]);
    }
    if (vt->devs) {
        rdma_free_devices(vt->devs);
    }
undo_ec:
    rdma_destroy_event_channel(vt->ec);
undo_evfd:
    close(vt->evfd);
undo_lock:
    pthread_cond_destroy(&vt->closed);
    pthread_mutex_destroy(&vt->lock);
    return r;
}

static void
mrs_free(struct verbs_transport *vt, struct verbs_mrs *m)
{
    int r;

    for (unsigned i = 0; m && i < vt->ndev; i++) {
        if (m->mr[i] && (r = ibv_dereg_mr(m->mr[i])) != 0) {
            fprintf(stderr, "verbs: cannot deregister a region of %s: %s\n",
                    vt->dev[i].name, strerror(-neg_errno(r)));
        }
    }
    free(m);
}

static void
verbs_fini(struct agent_transport *t)
{
    struct verbs_transport *vt = verbs_of(t);
    struct verbs_conn *c, *nxt;
    struct verbs_link *l, *lnxt;

    pthread_mutex_lock(&vt->lock);
    vt->stop = true;
    kick(vt);
    pthread_mutex_unlock(&vt->lock);
    pthread_join(vt->thread, NULL);

    /* Every conn is finalized; the caller's handles die with us. */
    for (c = vt->conns; c; c = nxt) {
        nxt = c->next;
        conn_free(c);
    }
    vt->conns = NULL;
    for (l = vt->links; l; l = lnxt) {
        lnxt = l->next;
        free(l->retry);
        free(l);
    }
    vt->links = NULL;
    pthread_mutex_lock(t->regs_lock);
    for (int i = 0; i < AGENT_TRANSPORT_MAX_REGIONS; i++) {
        if (t->regs[i].used && t->regs[i].priv) {
            mrs_free(vt, t->regs[i].priv);
            t->regs[i].priv = NULL;
        }
    }
    pthread_mutex_unlock(t->regs_lock);
    close(vt->epfd);
    for (unsigned i = 0; i < vt->ndev; i++) {
        dev_close(&vt->dev[i]);
    }
    rdma_free_devices(vt->devs);
    rdma_destroy_event_channel(vt->ec);
    close(vt->evfd);
    pthread_cond_destroy(&vt->closed);
    pthread_mutex_destroy(&vt->lock);
}

/* One MR per NIC over the same memory; peers get every rkey.  fd >= 0:
 * the memory is GPU memory exported as that dma-buf (bytes from fd_off),
 * registered with its device address as the iova so that ops name it
 * the way they name host memory. */
static int
reg_mrs(struct agent_transport *t, uint32_t index, void *base, uint64_t len,
        int fd, uint64_t fd_off, struct agent_transport_region *out, char *err,
        size_t errlen)
{
    const int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ |
                       IBV_ACCESS_REMOTE_WRITE;
    struct verbs_transport *vt = verbs_of(t);
    struct verbs_mrs *m = calloc(1, sizeof *m);
    int r;

    if (!m) {
        set_err(err, errlen, "verbs: out of memory");
        return -ENOMEM;
    }
    for (unsigned i = 0; i < vt->ndev; i++) {
        if (fd >= 0) {
            m->mr[i] = ibv_reg_dmabuf_mr(vt->dev[i].pd, fd_off, len,
                                         (uintptr_t)base, fd, access);
        } else {
            m->mr[i] = ibv_reg_mr(vt->dev[i].pd, base, len, access);
        }
        if (!m->mr[i]) {
            r = neg_errno(-1);
            set_err(err, errlen,
                    "verbs: cannot register %llu bytes at %p%s with %s: %s%s",
                    (unsigned long long)len, base, fd >= 0 ? " (dma-buf)" : "",
                    vt->dev[i].name, strerror(-r),
                    r == -ENOMEM || r == -EPERM
                        ? " (is RLIMIT_MEMLOCK, ulimit -l, too low?)"
                        : "");
            mrs_free(vt, m);
            return r;
        }
    }
    t->regs[index].priv = m;
    out->addr = (uintptr_t)base;
    out->len = len;
    out->key = m->mr[0]->rkey;
    out->nkeys = vt->ndev > 1 ? vt->ndev : 0;
    for (unsigned i = 0; i < out->nkeys; i++) {
        out->keys[i] = m->mr[i]->rkey;
    }
    return 0;
}

static int
verbs_reg(struct agent_transport *t, uint32_t index, void *base, uint64_t len,
          struct agent_transport_region *out, char *err, size_t errlen)
{
    return reg_mrs(t, index, base, len, -1, 0, out, err, errlen);
}

static int
verbs_reg_dmabuf(struct agent_transport *t, uint32_t index, void *base,
                 uint64_t len, int fd, uint64_t fd_off,
                 struct agent_transport_region *out, char *err, size_t errlen)
{
    return reg_mrs(t, index, base, len, fd, fd_off, out, err, errlen);
}

static void
verbs_dereg(struct agent_transport *t, uint32_t index)
{
    struct verbs_transport *vt = verbs_of(t);

    mrs_free(vt, t->regs[index].priv);
    t->regs[index].priv = NULL;
}

/* Starts path i of l towards dst; the path's failure to start is the
 * caller's to handle. */
static int
path_start(struct verbs_transport *vt, struct verbs_conn *c,
           const struct sockaddr_storage *dst, char *err, size_t errlen)
{
    struct verbs_dev *d = c->dev;
    int r;

    c->tag = ++vt->next_tag;
    if (rdma_create_id(vt->ec, &c->cm, c, RDMA_PS_TCP)) {
        r = neg_errno(-1);
        c->cm = NULL;
        set_err(err, errlen, "verbs: rdma_create_id: %s", strerror(-r));
        return r;
    }
    if (rdma_resolve_addr(c->cm,
                          d->has_src ? (struct sockaddr *)&d->src : NULL,
                          (struct sockaddr *)dst, VERBS_RESOLVE_MS)) {
        r = neg_errno(-1);
        set_err(err, errlen, "verbs: cannot start resolving %s (peer %s): %s",
                c->where, c->node, strerror(-r));
        rdma_destroy_id(c->cm);
        c->cm = NULL;
        return r;
    }
    c->state = CONN_RESOLVING_ADDR;
    return 0;
}

static int
verbs_connect(struct agent_transport *t,
              const struct agent_transport_peer *peer,
              struct agent_transport_conn **out, char *err, size_t errlen)
{
    struct verbs_transport *vt = verbs_of(t);
    struct sockaddr_storage dst[AGENT_TRANSPORT_MAX_NICS];
    struct verbs_link *l;
    size_t nl = strlen(vt->node);
    unsigned n = 1 + peer->n_more;
    int r;

    if (nl > VERBS_REQ_NAME_MAX) {
        set_err(err, errlen,
                "verbs: node name %s is %zu bytes; a RoCE connect request "
                "carries at most %d (the TCP transport carries any length)",
                vt->node, nl, VERBS_REQ_NAME_MAX);
        return -ENAMETOOLONG;
    }
    /* Path i pairs our NIC i with the peer's NIC i. */
    if (n > vt->ndev) {
        n = vt->ndev;
    }
    for (unsigned i = 0; i < n; i++) {
        r = resolve(i ? peer->more[i - 1].address : peer->address,
                    i ? peer->more[i - 1].port : peer->port, false, &dst[i],
                    err, errlen);
        if (r < 0) {
            return r;
        }
    }
    l = calloc(1, sizeof *l);
    for (unsigned i = 0; l && i < n; i++) {
        struct verbs_conn *c = calloc(1, sizeof *c);

        if (!c) {
            break;
        }
        c->vt = vt;
        c->link = l;
        c->dev = &vt->dev[i];
        c->boot_id = peer->boot_id;
        snprintf(c->node, sizeof c->node, "%s", peer->node);
        snprintf(c->where, sizeof c->where, n > 1 ? "%s:%u via %s" : "%s:%u",
                 i ? peer->more[i - 1].address : peer->address,
                 i ? peer->more[i - 1].port : peer->port, c->dev->name);
        l->path[l->npaths++] = c;
    }
    if (l && l->npaths == n) {
        l->retry_cap = n * VERBS_SQ_DEPTH;
        l->retry = calloc(l->retry_cap, sizeof *l->retry);
    }
    if (!l || l->npaths < n || !l->retry) {
        for (unsigned i = 0; l && i < l->npaths; i++) {
            conn_free(l->path[i]);
        }
        if (l) {
            free(l->retry);
        }
        free(l);
        set_err(err, errlen, "verbs: out of memory");
        return -ENOMEM;
    }
    l->vt = vt;

    pthread_mutex_lock(&vt->lock);
    if (vt->stop) {
        pthread_mutex_unlock(&vt->lock);
        r = -ESHUTDOWN;
        set_err(err, errlen, "verbs: the transport is shutting down");
        goto fail;
    }
    r = path_start(vt, l->path[0], &dst[0], err, errlen);
    if (r < 0) {
        pthread_mutex_unlock(&vt->lock);
        goto fail;
    }
    /* A further NIC that cannot even start is a failed path; the link
     * goes on over the others. */
    for (unsigned i = 1; i < n; i++) {
        struct verbs_conn *c = l->path[i];
        char why[AGENT_TRANSPORT_ERR_LEN];

        r = path_start(vt, c, &dst[i], why, sizeof why);
        if (r < 0) {
            c->state = CONN_BROKEN;
            c->error = r;
            snprintf(c->why, sizeof c->why, "%s", why);
            vt->stats.connect_errors++;
        }
    }
    for (unsigned i = 0; i < n; i++) {
        l->path[i]->next = vt->conns;
        vt->conns = l->path[i];
    }
    l->next = vt->links;
    vt->links = l;
    pthread_mutex_unlock(&vt->lock);
    *out = (struct agent_transport_conn *)l;
    return 0;

fail:
    for (unsigned i = 0; i < l->npaths; i++) {
        conn_free(l->path[i]);
    }
    free(l->retry);
    free(l);
    return r;
}

/* 0 while some path is connecting or up; else the first path's error. */
static int
verbs_conn_status(struct agent_transport_conn *conn, char *err, size_t errlen)
{
    struct verbs_link *l = (struct verbs_link *)conn;
    int r;

    pthread_mutex_lock(&l->vt->lock);
    r = l->path[0]->error;
    for (unsigned i = 0; i < l->npaths; i++) {
        if (!path_down(l->path[i])) {
            r = 0;
        }
    }
    if (r < 0) {
        set_err(err, errlen, "%s", l->path[0]->why);
    }
    pthread_mutex_unlock(&l->vt->lock);
    return r;
}

static int
verbs_post(struct agent_transport_conn *conn,
           struct agent_transport_op *const *ops, size_t n)
{
    struct verbs_link *l = (struct verbs_link *)conn;
    struct verbs_transport *vt = l->vt;

    for (size_t i = 0; i < n; i++) {
        const struct agent_transport_region *g = &ops[i]->remote;
        uint64_t bad = g->key;

        for (uint32_t k = 0; k < g->nkeys && bad <= UINT32_MAX; k++) {
            bad = g->keys[k];
        }
        if (bad > UINT32_MAX) {
            snprintf(ops[i]->error, sizeof ops[i]->error,
                     "remote key %#llx of region %u is not an RDMA rkey",
                     (unsigned long long)bad, g->id);
            return ops[i]->status = -EINVAL;
        }
    }
    pthread_mutex_lock(&vt->lock);
    for (size_t i = 0; i < n; i++) {
        struct agent_transport_op *op = ops[i];

        op->slices_left = slices_of(vt, op->len);
        op->next = NULL;
        if (l->wait_tail) {
            l->wait_tail->next = op;
        } else {
            l->wait_head = op;
        }
        l->wait_tail = op;
    }
    kick(vt);
    pthread_mutex_unlock(&vt->lock);
    return 0;
}

static bool
link_finalized(const struct verbs_link *l)
{
    for (unsigned i = 0; i < l->npaths; i++) {
        if (!l->path[i]->finalized) {
            return false;
        }
    }
    return true;
}

static void
verbs_disconnect(struct agent_transport_conn *conn)
{
    struct verbs_link *l = (struct verbs_link *)conn;
    struct verbs_transport *vt = l->vt;

    if (pthread_equal(pthread_self(), vt->thread)) {
        fprintf(stderr, "verbs: disconnect called from a completion "
                        "callback; see transport.h\n");
        abort();
    }
    pthread_mutex_lock(&vt->lock);
    l->close_req = true;
    kick(vt);
    while (!link_finalized(l)) {
        pthread_cond_wait(&vt->closed, &vt->lock);
    }
    for (unsigned i = 0; i < l->npaths; i++) {
        conn_unlink(vt, l->path[i]);
    }
    link_unlink(vt, l);
    pthread_mutex_unlock(&vt->lock);
    for (unsigned i = 0; i < l->npaths; i++) {
        conn_free(l->path[i]);
    }
    free(l->retry);
    free(l);
}

static uint16_t
verbs_port(struct agent_transport *t)
{
    return verbs_of(t)->port;
}

static void
verbs_stats(struct agent_transport *t, struct agent_transport_stats *out)
{
    struct verbs_transport *vt = verbs_of(t);
    const struct agent_transport_stats *s = &vt->stats;

    pthread_mutex_lock(&vt->lock);
    out->ops += s->ops;
    out->op_errors += s->op_errors;
    out->bytes_read += s->bytes_read;
    out->bytes_written += s->bytes_written;
    out->bytes_served += s->bytes_served;
    out->refused += s->refused;
    out->connects += s->connects;
    out->connect_errors += s->connect_errors;
    out->cpu_copy_bytes += s->cpu_copy_bytes;
    out->slice_retries += s->slice_retries;
    for (unsigned i = 0;
         i < vt->ndev && out->n_nics < AGENT_TRANSPORT_MAX_NICS; i++) {
        out->nic[out->n_nics++] = vt->dev[i].st;
    }
    pthread_mutex_unlock(&vt->lock);
}

const struct agent_transport_ops agent_transport_verbs_ops = {
    .name = "verbs",
    .kind = AGENT_TRANSPORT_VERBS,
    .size = sizeof(struct verbs_transport),
    .available = verbs_available,
    .init = verbs_init,
    .fini = verbs_fini,
    .reg = verbs_reg,
    .reg_dmabuf = verbs_reg_dmabuf,
    .device_memory = true,
    .dereg = verbs_dereg,
    .connect = verbs_connect,
    .conn_status = verbs_conn_status,
    .post = verbs_post,
    .disconnect = verbs_disconnect,
    .port = verbs_port,
    .stats = verbs_stats,
};
