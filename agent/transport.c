/*
 * Generic half of the data transports: argument checks, the registration
 * table, and dispatch through the backend's ops table.
 */
#include "transport.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct agent_transport_ops *
agent_transport_ops_of(enum agent_transport_kind kind)
{
    switch (kind) {
    case AGENT_TRANSPORT_TCP:
        return &agent_transport_tcp_ops;
    case AGENT_TRANSPORT_VERBS:
        return &agent_transport_verbs_ops;
    }
    return NULL;
}

const char *
agent_transport_kind_name(enum agent_transport_kind kind)
{
    const struct agent_transport_ops *ops = agent_transport_ops_of(kind);

    return ops ? ops->name : "unknown";
}

bool
agent_transport_available(enum agent_transport_kind kind, char *why,
                          size_t whylen)
{
    const struct agent_transport_ops *ops = agent_transport_ops_of(kind);

    if (!ops) {
        snprintf(why, whylen, "unknown transport kind %d", (int)kind);
        return false;
    }
    return ops->available(why, whylen);
}

static bool
node_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    return n > 0 && n < AGENT_TRANSPORT_NODE_MAX;
}

int
agent_transport_create_ops(const struct agent_transport_ops *ops,
                           const struct agent_transport_config *cfg,
                           struct agent_transport **out, char *err,
                           size_t errlen)
{
    struct agent_transport *t;
    pthread_mutex_t *lock;
    int r;

    *out = NULL;
    if (!ops || ops->size < sizeof *t) {
        snprintf(err, errlen, "transport: bad ops table");
        return -EINVAL;
    }
    if (!node_name_ok(cfg->node)) {
        snprintf(err, errlen, "transport: node name must be 1 to %d bytes",
                 AGENT_TRANSPORT_NODE_MAX - 1);
        return -EINVAL;
    }
    if (cfg->address && *cfg->address && !cfg->admit) {
        snprintf(err, errlen,
                 "transport: a listener needs an admit "
                 "callback");
        return -EINVAL;
    }
    if (cfg->n_more_addresses >= AGENT_TRANSPORT_MAX_NICS) {
        snprintf(err, errlen, "transport: %u NIC addresses; at most %d",
                 cfg->n_more_addresses + 1, AGENT_TRANSPORT_MAX_NICS);
        return -EINVAL;
    }
    if (cfg->n_more_addresses && !(cfg->address && *cfg->address)) {
        snprintf(err, errlen,
                 "transport: further NIC addresses need a first address");
        return -EINVAL;
    }
    for (unsigned i = 0; i < cfg->n_more_addresses; i++) {
        if (!cfg->more_addresses[i] || !*cfg->more_addresses[i]) {
            snprintf(err, errlen, "transport: NIC address %u is empty", i + 2);
            return -EINVAL;
        }
    }
    if (cfg->conns > 64) {
        snprintf(err, errlen,
                 "transport: %u connections per peer is more than 64",
                 cfg->conns);
        return -EINVAL;
    }
    if (cfg->slice != 0 &&
        (cfg->slice < 4096 || cfg->slice > (UINT64_C(1) << 30))) {
        snprintf(err, errlen,
                 "transport: slice %llu is outside 4096..1073741824",
                 (unsigned long long)cfg->slice);
        return -EINVAL;
    }
    if (!ops->available(err, errlen)) {
        return -EOPNOTSUPP;
    }
    t = calloc(1, ops->size);
    lock = malloc(sizeof *lock);
    if (!t || !lock) {
        free(t);
        free(lock);
        snprintf(err, errlen, "transport: out of memory");
        return -ENOMEM;
    }
    pthread_mutex_init(lock, NULL);
    t->ops = ops;
    t->regs_lock = lock;
    r = ops->init(t, cfg, err, errlen);
    if (r < 0) {
        pthread_mutex_destroy(lock);
        free(lock);
        free(t);
        return r;
    }
    *out = t;
    return 0;
}

int
agent_transport_create(enum agent_transport_kind kind,
                       const struct agent_transport_config *cfg,
                       struct agent_transport **out, char *err, size_t errlen)
{
    const struct agent_transport_ops *ops = agent_transport_ops_of(kind);

    if (!ops) {
        *out = NULL;
        snprintf(err, errlen, "transport: unknown kind %d", (int)kind);
        return -EINVAL;
    }
    return agent_transport_create_ops(ops, cfg, out, err, errlen);
}

void
agent_transport_destroy(struct agent_transport *t)
{
    if (!t) {
        return;
    }
    t->ops->fini(t);
    for (uint32_t i = 0; i < AGENT_TRANSPORT_MAX_REGIONS; i++) {
        t->regs[i].used = false;
    }
    pthread_mutex_destroy(t->regs_lock);
    free(t->regs_lock);
    free(t);
}

enum agent_transport_kind
agent_transport_kind_of(const struct agent_transport *t)
{
    return t->ops->kind;
}

const char *
agent_transport_name(const struct agent_transport *t)
{
    return t->ops->name;
}

uint16_t
agent_transport_port(struct agent_transport *t)
{
    return t->ops->port(t);
}

/* How one registration is made: plain memory, or a dma-buf. */
struct reg_how {
    int fd;          /* dma-buf, -1: plain */
    uint64_t fd_off; /* where base's bytes start in it */
};

static int
register_with(struct agent_transport *t, void *base, uint64_t len,
              const struct reg_how *how, struct agent_transport_region *out,
              char *err, size_t errlen)
{
    uint32_t i;
    int r;

    if (!base || len == 0) {
        snprintf(err, errlen,
                 "transport: cannot register an empty "
                 "region");
        return -EINVAL;
    }
    if (how->fd >= 0 && !t->ops->reg_dmabuf) {
        snprintf(err, errlen,
                 "transport %s cannot register GPU memory through dma-buf",
                 t->ops->name);
        return -EOPNOTSUPP;
    }
    pthread_mutex_lock(t->regs_lock);
    for (i = 0; i < AGENT_TRANSPORT_MAX_REGIONS; i++) {
        if (!t->regs[i].used && !t->regs[i].leaving) {
            break;
        }
    }
    if (i == AGENT_TRANSPORT_MAX_REGIONS) {
        pthread_mutex_unlock(t->regs_lock);
        snprintf(err, errlen, "transport: all %d region slots are taken",
                 AGENT_TRANSPORT_MAX_REGIONS);
        return -ENOSPC;
    }
    t->regs[i].base = base;
    t->regs[i].len = len;
    t->regs[i].priv = NULL;
    if (how->fd >= 0) {
        r = t->ops->reg_dmabuf(t, i, base, len, how->fd, how->fd_off,
                               &t->regs[i].region, err, errlen);
    } else {
        r = t->ops->reg(t, i, base, len, &t->regs[i].region, err, errlen);
    }
    if (r == 0) {
        t->regs[i].region.id = i + 1;
        t->regs[i].used = true;
        *out = t->regs[i].region;
    }
    pthread_mutex_unlock(t->regs_lock);
    return r;
}

int
agent_transport_register(struct agent_transport *t, void *base, uint64_t len,
                         struct agent_transport_region *out, char *err,
                         size_t errlen)
{
    const struct reg_how plain = {.fd = -1};

    return register_with(t, base, len, &plain, out, err, errlen);
}

int
agent_transport_register_dmabuf(struct agent_transport *t, void *base,
                                uint64_t len, int fd, uint64_t fd_off,
                                struct agent_transport_region *out, char *err,
                                size_t errlen)
{
    const struct reg_how how = {.fd = fd, .fd_off = fd_off};

    if (fd < 0) {
        snprintf(err, errlen, "transport: dma-buf fd %d is not open", fd);
        return -EBADF;
    }
    return register_with(t, base, len, &how, out, err, errlen);
}

bool
agent_transport_device_memory(const struct agent_transport *t)
{
    return t->ops->device_memory;
}

int
agent_transport_deregister(struct agent_transport *t, uint32_t id)
{
    if (id == 0 || id > AGENT_TRANSPORT_MAX_REGIONS) {
        return -ENOENT;
    }
    pthread_mutex_lock(t->regs_lock);
    if (!t->regs[id - 1].used) {
        pthread_mutex_unlock(t->regs_lock);
        return -ENOENT;
    }
    /* No new op finds the slot from now on; the backend may wait for its
     * I/O thread, whose callbacks may post (and take the lock), so it is
     * called unlocked while the slot stays reserved. */
    t->regs[id - 1].used = false;
    t->regs[id - 1].leaving = true;
    pthread_mutex_unlock(t->regs_lock);
    t->ops->dereg(t, id - 1);
    pthread_mutex_lock(t->regs_lock);
    t->regs[id - 1].leaving = false;
    pthread_mutex_unlock(t->regs_lock);
    return 0;
}

static int
find_reg_locked(struct agent_transport *t, const void *p, uint64_t len)
{
    uintptr_t a = (uintptr_t)p;

    for (int i = 0; i < AGENT_TRANSPORT_MAX_REGIONS; i++) {
        const struct agent_transport_reg *g = &t->regs[i];
        uintptr_t b = (uintptr_t)g->base;

        if (g->used && a >= b && len <= g->len && a - b <= g->len - len) {
            return i;
        }
    }
    return -1;
}

const struct agent_transport_reg *
agent_transport_reg_at(struct agent_transport *t, uint32_t index)
{
    return index < AGENT_TRANSPORT_MAX_REGIONS ? &t->regs[index] : NULL;
}

int
agent_transport_connect(struct agent_transport *t,
                        const struct agent_transport_peer *peer,
                        struct agent_transport_conn **out, char *err,
                        size_t errlen)
{
    *out = NULL;
    if (!node_name_ok(peer->node)) {
        snprintf(err, errlen,
                 "transport: peer node name must be 1 to %d bytes",
                 AGENT_TRANSPORT_NODE_MAX - 1);
        return -EINVAL;
    }
    if (!peer->address || !*peer->address || peer->port == 0) {
        snprintf(err, errlen,
                 "transport: peer %s has no data address and port",
                 peer->node);
        return -EINVAL;
    }
    if (peer->n_more >= AGENT_TRANSPORT_MAX_NICS) {
        snprintf(err, errlen, "transport: peer %s has %u NICs; at most %d",
                 peer->node, peer->n_more + 1, AGENT_TRANSPORT_MAX_NICS);
        return -EINVAL;
    }
    for (unsigned i = 0; i < peer->n_more; i++) {
        if (!peer->more[i].address || !*peer->more[i].address ||
            peer->more[i].port == 0) {
            snprintf(err, errlen,
                     "transport: peer %s: NIC %u has no address and port",
                     peer->node, i + 2);
            return -EINVAL;
        }
    }
    return t->ops->connect(t, peer, out, err, errlen);
}

int
agent_transport_conn_status(struct agent_transport *t,
                            struct agent_transport_conn *c, char *err,
                            size_t errlen)
{
    return t->ops->conn_status(c, err, errlen);
}

static int
check_op(struct agent_transport *t, struct agent_transport_op *op)
{
    const struct agent_transport_region *rr = &op->remote;
    int i;

    op->status = 0;
    op->error[0] = '\0';
    if (op->opcode != AGENT_TRANSPORT_READ &&
        op->opcode != AGENT_TRANSPORT_WRITE) {
        snprintf(op->error, sizeof op->error, "unknown opcode %d", op->opcode);
        return op->status = -EINVAL;
    }
    if (op->len == 0 || !op->done) {
        snprintf(op->error, sizeof op->error,
                 "an op needs a length and a callback");
        return op->status = -EINVAL;
    }
    i = find_reg_locked(t, op->local, op->len);
    if (i < 0) {
        snprintf(op->error, sizeof op->error,
                 "local buffer %p+%llu is not in a registered region",
                 op->local, (unsigned long long)op->len);
        return op->status = -EINVAL;
    }
    if (rr->id == 0 || rr->len == 0) {
        snprintf(op->error, sizeof op->error,
                 "remote region %u is not a registered region", rr->id);
        return op->status = -EINVAL;
    }
    if (rr->nkeys > AGENT_TRANSPORT_MAX_NICS) {
        snprintf(op->error, sizeof op->error,
                 "remote region %u carries %u keys; at most %d", rr->id,
                 rr->nkeys, AGENT_TRANSPORT_MAX_NICS);
        return op->status = -EINVAL;
    }
    if (op->len > rr->len || op->remote_off > rr->len - op->len) {
        snprintf(op->error, sizeof op->error,
                 "offset %llu + length %llu is beyond remote region %u "
                 "(%llu bytes)",
                 (unsigned long long)op->remote_off,
                 (unsigned long long)op->len, rr->id,
                 (unsigned long long)rr->len);
        return op->status = -ERANGE;
    }
    op->lregion = (uint32_t)i;
    op->next = NULL;
    op->slices_left = 0;
    return 0;
}

int
agent_transport_post(struct agent_transport *t, struct agent_transport_conn *c,
                     struct agent_transport_op *const *ops, size_t n)
{
    int r = 0;

    if (n == 0) {
        return 0;
    }
    pthread_mutex_lock(t->regs_lock);
    for (size_t i = 0; i < n && r == 0; i++) {
        r = check_op(t, ops[i]);
    }
    pthread_mutex_unlock(t->regs_lock);
    if (r < 0) {
        return r;
    }
    return t->ops->post(c, ops, n);
}

void
agent_transport_disconnect(struct agent_transport *t,
                           struct agent_transport_conn *c)
{
    if (c) {
        t->ops->disconnect(c);
    }
}

void
agent_transport_stats(struct agent_transport *t,
                      struct agent_transport_stats *out)
{
    memset(out, 0, sizeof *out);
    t->ops->stats(t, out);
}

void
agent_transport_op_fail(struct agent_transport_op *op, int status,
                        const char *fmt, ...)
{
    va_list ap;

    op->status = status;
    va_start(ap, fmt);
    vsnprintf(op->error, sizeof op->error, fmt, ap);
    va_end(ap);
    op->done(op, op->arg);
}
