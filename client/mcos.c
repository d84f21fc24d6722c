/*
 * libmcos: the client side of the intent API (include/mcos/mcos.h).
 *
 * A handle holds one persistent request/reply connection to the agent
 * (common/bus's blocking connection) and a mapping of the agent's DRAM
 * arena.  Control messages are ApiRequest/ApiReply (proto/mcos.proto);
 * object bytes are read and written in the mapping, never sent.
 *
 * Thread-safety: one thread at a time per handle (documented in mcos.h).
 */
#include "mcos/mcos.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bus.h"
#include "error.h"
#include "ids.h"
#include "wire.h"

#define DEFAULT_AGENT "ipc:///run/mcos/agent.sock"
/* struct mcos_place_opts as first published, before ns and parent. */
#define PLACE_OPTS_V1_SIZE offsetof(struct mcos_place_opts, ns)
/* Long enough for a get that must fetch from NVMe, or a waited move. */
#define CALL_TIMEOUT_MS 60000

struct mcos_client {
    struct mcos_bus_conn *conn; /* to the agent */
    uint8_t *arena;             /* the mapped DRAM arena */
    size_t arena_len;           /* its length */
    uint64_t *views;            /* view ids still open, for close */
    size_t n_views, cap_views;  /* their count, capacity */
};

/* Sends one request.  When a reply arrives *rep points into `m` (free it
 * with mcos_wire_msg_free) and its status is returned; otherwise *rep is
 * NULL and the transport or decoding error is returned. */
static int
call(mcos_client_t *c, Mcos__ApiRequest *q, struct mcos_wire_msg *m,
     Mcos__ApiReply **rep)
{
    char err[MCOS_BUS_ERR_LEN];
    uint8_t *buf;
    size_t len, rlen;
    void *r = NULL;
    int rc;

    *rep = NULL;
    rc = mcos_wire_encode(MCOS__MSG_TYPE__MSG_API_REQUEST, &q->base, &buf,
                          &len);
    if (rc) {
        return rc;
    }
    rc = mcos_bus_conn_call(c->conn, buf, len, &r, &rlen, err, sizeof err);
    free(buf);
    if (rc) {
        return rc;
    }
    rc = mcos_wire_decode(r, rlen, m, err, sizeof err);
    free(r);
    if (rc) {
        return rc;
    }
    *rep = mcos_wire_api_reply(m);
    if (!*rep) {
        mcos_wire_msg_free(m);
        return -EPROTO;
    }
    return (*rep)->status;
}

/* A request that only needs its status back. */
static int
simple(mcos_client_t *c, Mcos__ApiRequest *q)
{
    struct mcos_wire_msg m;
    Mcos__ApiReply *rep;
    int rc = call(c, q, &m, &rep);

    if (rep) {
        mcos_wire_msg_free(&m);
    }
    return rc;
}

static bool
tier_valid(enum mcos_tier t)
{
    return t >= MCOS_TIER_ANY && t <= MCOS_TIER_REMOTE;
}

int
mcos_connect(const char *path, mcos_client_t **out)
{
    mcos_client_t *c;
    Mcos__ApiRequest q = MCOS__API_REQUEST__INIT;
    struct mcos_wire_msg m;
    Mcos__ApiReply *rep = NULL;
    const char *env = getenv("MCOS_AGENT");
    char err[MCOS_BUS_ERR_LEN];
    int rc, fd;

    if (!out) {
        return -EINVAL;
    }
    if (!path) {
        path = env && *env ? env : DEFAULT_AGENT;
    }
    c = calloc(1, sizeof *c);
    if (!c) {
        return -ENOMEM;
    }
    rc = mcos_bus_conn_open(path, CALL_TIMEOUT_MS, &c->conn, err, sizeof err);
    if (rc) {
        free(c);
        return rc;
    }
    q.op = MCOS__API_OP__API_ATTACH;
    rc = call(c, &q, &m, &rep);
    if (rc) {
        if (rep) {
            mcos_wire_msg_free(&m);
        }
        goto fail;
    }
    fd = shm_open(rep->shm_name, O_RDWR, 0);
    if (fd < 0) {
        rc = -errno;
        mcos_wire_msg_free(&m);
        goto fail;
    }
    c->arena_len = rep->shm_size;
    mcos_wire_msg_free(&m);
    c->arena =
        mmap(NULL, c->arena_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    rc = c->arena == MAP_FAILED ? -errno : 0;
    close(fd);
    if (rc) {
        c->arena = NULL;
        goto fail;
    }
    *out = c;
    return 0;

fail:
    mcos_bus_conn_close(c->conn);
    free(c);
    return rc;
}

void
mcos_close(mcos_client_t *c)
{
    if (!c) {
        return;
    }
    /* The agent releases a departed client's views itself; saying so
     * explicitly frees them at once. */
    for (size_t i = 0; i < c->n_views; i++) {
        Mcos__ApiRequest q = MCOS__API_REQUEST__INIT;

        q.op = MCOS__API_OP__API_RELEASE;
        q.view_id = c->views[i];
        simple(c, &q);
    }
    free(c->views);
    if (c->arena) {
        munmap(c->arena, c->arena_len);
    }
    mcos_bus_conn_close(c->conn);
    free(c);
}

mcos_id_t
mcos_id_from_name(const char *name)
{
    return name ? mcos_object_id_from_name(name, strlen(name)).v : 0;
}

static void
fill_place(Mcos__ApiRequest *q, mcos_id_t id, size_t size,
           const struct mcos_place_opts *o)
{
    q->op = MCOS__API_OP__API_PLACE;
    q->object_id = id;
    q->size = size;
    if (o) {
        double h = o->hotness < 0 ? 0 : o->hotness > 4e6 ? 4e6 : o->hotness;

        q->class_ = (Mcos__ObjectClass)o->cls;
        q->hotness_milli = (uint32_t)(h * 1000.0 + 0.5);
        q->expected_reuse = o->expected_reuse;
        q->tier = (Mcos__TierKind)o->preferred_tier;
        q->fallback_tier = (Mcos__TierKind)o->fallback_tier;
        if (o->struct_size >= sizeof *o) {
            q->ns = (char *)(o->ns ? o->ns : "");
            q->parent_id = o->parent;
        }
    }
}

static int
check_opts(const struct mcos_place_opts *o)
{
    if (!o) {
        return 0;
    }
    /* Callers built against the first header (without ns and parent)
     * pass the smaller size; that is fine. */
    if (o->struct_size < PLACE_OPTS_V1_SIZE ||
        !tier_valid(o->preferred_tier) || !tier_valid(o->fallback_tier) ||
        o->hotness != o->hotness) {
        return -EINVAL;
    }
    return 0;
}

int
mcos_place(mcos_client_t *c, mcos_id_t id, size_t size,
           const struct mcos_place_opts *opts, void **buf)
{
    Mcos__ApiRequest q = MCOS__API_REQUEST__INIT;
    struct mcos_wire_msg m;
    Mcos__ApiReply *rep = NULL;
    int rc;

    if (!c || !buf || id == 0 || size == 0 || check_opts(opts)) {
        return -EINVAL;
    }
    fill_place(&q, id, size, opts);
    rc = call(c, &q, &m, &rep);
    if (!rep) {
        return rc;
    }
    if (rc == 0 && (rep->offset > c->arena_len ||
                    rep->length > c->arena_len - rep->offset)) {
        rc = -EPROTO; /* an extent outside the arena: never write there */
    }
    if (rc == 0) {
        *buf = c->arena + rep->offset;
    }
    mcos_wire_msg_free(&m);
    return rc;
}

static int
id_op(mcos_client_t *c, mcos_id_t id, Mcos__ApiOp op)
{
    Mcos__ApiRequest q = MCOS__API_REQUEST__INIT;

    if (!c || id == 0) {
        return -EINVAL;
    }
    q.op = op;
    q.object_id = id;
    return simple(c, &q);
}

int
mcos_commit(mcos_client_t *c, mcos_id_t id)
{
    return id_op(c, id, MCOS__API_OP__API_COMMIT);
}

int
mcos_abort(mcos_client_t *c, mcos_id_t id)
{
    return id_op(c, id, MCOS__API_OP__API_ABORT);
}

int
mcos_put(mcos_client_t *c, mcos_id_t id, const void *data, size_t len,
         const struct mcos_place_opts *opts)
{
    void *buf;
    int rc;

    if (!data) {
        return -EINVAL;
    }
    rc = mcos_place(c, id, len, opts, &buf);
    if (rc) {
        return rc;
    }
    memcpy(buf, data, len);
    rc = mcos_commit(c, id);
    if (rc) {
        mcos_abort(c, id);
    }
    return rc;
}

static int
remember_view(mcos_client_t *c, uint64_t view)
{
    if (c->n_views == c->cap_views) {
        size_t cap = c->cap_views ? c->cap_views * 2 : 16;
        uint64_t *g = realloc(c->views, cap * sizeof *g);

        if (!g) {
            return -ENOMEM;
        }
        c->views = g;
        c->cap_views = cap;
    }
    c->views[c->n_views++] = view;
    return 0;
}

int
mcos_get(mcos_client_t *c, mcos_id_t id, struct mcos_view *view)
{
    Mcos__ApiRequest q = MCOS__API_REQUEST__INIT;
    struct mcos_wire_msg m;
    Mcos__ApiReply *rep = NULL;
    int rc;

    if (!c || !view || id == 0) {
        return -EINVAL;
    }
    q.op = MCOS__API_OP__API_GET;
    q.object_id = id;
    rc = call(c, &q, &m, &rep);
    if (!rep) {
        return rc;
    }
    if (rc == 0 && (rep->offset > c->arena_len ||
                    rep->length > c->arena_len - rep->offset)) {
        rc = -EPROTO;
    }
    if (rc == 0) {
        view->data = c->arena + rep->offset;
        view->len = rep->length;
        view->view_id = rep->view_id;
        rc = remember_view(c, rep->view_id);
    }
    mcos_wire_msg_free(&m);
    return rc;
}

int
mcos_release(mcos_client_t *c, struct mcos_view *view)
{
    Mcos__ApiRequest q = MCOS__API_REQUEST__INIT;
    int rc;

    if (!c || !view || view->view_id == 0) {
        return -EINVAL;
    }
    q.op = MCOS__API_OP__API_RELEASE;
    q.view_id = view->view_id;
    rc = simple(c, &q);
    for (size_t i = 0; i < c->n_views; i++) {
        if (c->views[i] == view->view_id) {
            c->views[i] = c->views[--c->n_views];
            break;
        }
    }
    if (rc == 0) {
        view->data = NULL;
        view->len = 0;
        view->view_id = 0;
    }
    return rc;
}

int
mcos_get_copy(mcos_client_t *c, mcos_id_t id, void *buf, size_t cap,
              size_t *len)
{
    struct mcos_view v;
    int rc;

    if (!buf || !len) {
        return -EINVAL;
    }
    rc = mcos_get(c, id, &v);
    if (rc) {
        return rc;
    }
    *len = v.len;
    if (v.len > cap) {
        rc = -ERANGE;
    } else {
        memcpy(buf, v.data, v.len);
    }
    mcos_release(c, &v);
    return rc;
}

int
mcos_prefetch(mcos_client_t *c, mcos_id_t id, enum mcos_tier target,
              uint64_t deadline_us)
{
    Mcos__ApiRequest q = MCOS__API_REQUEST__INIT;

    if (!c || id == 0 || !tier_valid(target) || target == MCOS_TIER_ANY) {
        return -EINVAL;
    }
    if (deadline_us == 0) {
        return -ETIME;
    }
    q.op = MCOS__API_OP__API_PREFETCH;
    q.object_id = id;
    q.tier = (Mcos__TierKind)target;
    q.deadline_us = deadline_us;
    return simple(c, &q);
}

int
mcos_move(mcos_client_t *c, mcos_id_t id, enum mcos_tier src,
          enum mcos_tier dst, enum mcos_move_mode mode)
{
    Mcos__ApiRequest q = MCOS__API_REQUEST__INIT;

    if (!c || id == 0 || !tier_valid(src) || !tier_valid(dst) ||
        dst == MCOS_TIER_ANY ||
        (mode != MCOS_MOVE_WAIT && mode != MCOS_MOVE_ASYNC)) {
        return -EINVAL;
    }
    q.op = MCOS__API_OP__API_MOVE;
    q.object_id = id;
    q.src_tier = (Mcos__TierKind)src;
    q.tier = (Mcos__TierKind)dst;
    q.mode = (uint32_t)mode;
    return simple(c, &q);
}

int
mcos_evict(mcos_client_t *c, mcos_id_t id, enum mcos_evict_policy policy)
{
    Mcos__ApiRequest q = MCOS__API_REQUEST__INIT;

    if (!c || id == 0 || policy < MCOS_EVICT_DROP ||
        policy > MCOS_EVICT_DEMOTE_TO_REMOTE) {
        return -EINVAL;
    }
    q.op = MCOS__API_OP__API_EVICT;
    q.object_id = id;
    q.policy = (uint32_t)policy;
    return simple(c, &q);
}

int
mcos_pin(mcos_client_t *c, mcos_id_t id)
{
    return id_op(c, id, MCOS__API_OP__API_PIN);
}

int
mcos_unpin(mcos_client_t *c, mcos_id_t id)
{
    return id_op(c, id, MCOS__API_OP__API_UNPIN);
}

int
mcos_report_load(mcos_client_t *c, const struct mcos_load *load)
{
    Mcos__ApiRequest q = MCOS__API_REQUEST__INIT;

    if (!c || !load || load->struct_size < sizeof *load) {
        return -EINVAL;
    }
    q.op = MCOS__API_OP__API_LOAD;
    q.queued_requests = load->queued_requests;
    q.running_requests = load->running_requests;
    q.queued_prefill_blocks = load->queued_prefill_blocks;
    return simple(c, &q);
}

int
mcos_stat(mcos_client_t *c, mcos_id_t id, struct mcos_stat *st)
{
    Mcos__ApiRequest q = MCOS__API_REQUEST__INIT;
    struct mcos_wire_msg m;
    Mcos__ApiReply *rep = NULL;
    const Mcos__ObjectInfo *i;
    int rc;

    if (!c || !st || id == 0 || st->struct_size < sizeof *st) {
        return -EINVAL;
    }
    q.op = MCOS__API_OP__API_STAT;
    q.object_id = id;
    rc = call(c, &q, &m, &rep);
    if (!rep) {
        return rc;
    }
    if (rc == 0 && !(i = rep->object)) {
        rc = -EPROTO;
    }
    if (rc == 0) {
        st->id = i->id;
        st->size = i->size;
        st->cls = (enum mcos_class)i->class_;
        st->state = (enum mcos_state)i->state;
        st->tier = (enum mcos_tier)i->tier;
        st->moving_to = (enum mcos_tier)i->moving_to;
        st->emulated = i->emulated;
        st->hotness = i->hotness_milli / 1000.0;
        st->expected_reuse = i->expected_reuse;
        st->pins = i->pins;
        st->checksum = i->checksum;
        st->hits = i->hits;
        st->misses = i->misses;
        st->prefetched = i->prefetched;
        st->age_ms = i->age_ms;
        st->idle_ms = i->idle_ms;
    }
    mcos_wire_msg_free(&m);
    return rc;
}
