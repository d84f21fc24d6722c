#include "fabric.h"
#include "fabric_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "bus.h"
#include "error.h"
#include "ids.h"
#include "log.h"
#include "wire.h"

MCOS_LOG_MODULE(fabric);

/* Warnings about peers' requests and failed transfers: at most 10 in 5 s
 * each; the counters in /metrics count them all. */
static struct mcos_ratelimit refused_rl = MCOS_RATELIMIT_INIT(5000, 10);
static struct mcos_ratelimit xfer_rl = MCOS_RATELIMIT_INIT(5000, 10);

/* How long a control call may take before the transfer fails. */
#define CONTROL_TIMEOUT_MS 5000
/* A reservation not committed within this is given back. */
#define RESERVE_TTL_US (30 * 1000 * 1000)
/* Peers we keep state for. */
#define MAX_PEERS 1024

enum xfer_kind { XFER_PUT, XFER_GET };

struct peer {
    char name[AGENT_TRANSPORT_NODE_MAX];     /* node */
    uint64_t boot_id;                        /* as the brain admitted it */
    bool present;                            /* in the current table */
    char address[256];                       /* control/transport address */
    uint16_t ctl_port;                       /* control endpoint port */
    uint16_t data_port[3];                   /* per transport kind, 0: none */
    struct agent_transport_region region[3]; /* per transport kind */
    struct agent_fabric_peer_verbs verbs;    /* its verbs NICs */
    struct mcos_bus_client *ctl;             /* to its control endpoint */
    struct agent_transport_conn *conn[3];    /* per transport kind */
    struct agent_fabric_link link;           /* counters */
};

/* A reservation or a hosted object: bytes a peer stored here. */
struct hosted {
    char owner[AGENT_TRANSPORT_NODE_MAX]; /* the peer that stored it */
    uint64_t owner_boot;                  /* its boot id then */
    uint64_t handle;                      /* our name for it */
    uint64_t id;                          /* the object */
    int tier;                             /* where ext is: DRAM or HBM */
    struct agent_tier_extent ext;         /* in that tier */
    bool committed;                       /* verified and kept */
    uint64_t expires_us;                  /* reservations only */
    Mcos__PeerRequest *alloc;             /* the ALLOC, for replicas */
    struct hosted *next;
};

struct xfer {
    struct agent_fabric *f; /* owner */
    enum xfer_kind kind;    /* put or get */
    char peer[AGENT_TRANSPORT_NODE_MAX];
    bool pick;                    /* put: try peers until one has room */
    size_t tried;                 /* put: peers tried so far */
    Mcos__PeerPurpose purpose;    /* put */
    int tier;                     /* put: where the peer keeps it */
    Mcos__PeerRequest meta;       /* put: the object's intent */
    char ns[64];                  /* meta.ns storage */
    uint64_t id, len, sum;        /* object, bytes, checksum */
    int src_tier;                 /* put: the tier ext is in */
    struct agent_tier_extent ext; /* our extent (get: in DRAM) */
    int tkind;                    /* transport used */
    struct agent_transport_op op; /* the one-sided part */
    uint64_t got_sum;             /* get: checksum of what arrived */
    struct agent_fabric_result res;
    agent_fabric_cb cb;
    void *arg;
    bool in_ctl;       /* a control call is out for it */
    struct xfer *next; /* completion queue */
    struct xfer *all_next;
};

struct agent_fabric {
    uv_loop_t *loop;
    const struct mcos_clock *clock;
    char node[AGENT_TRANSPORT_NODE_MAX];
    uint64_t boot_id;
    char address[256];
    char more_addr[AGENT_TRANSPORT_MAX_NICS - 1][64]; /* further NICs */
    unsigned n_more;                                  /* how many */
    uint16_t port;
    struct agent_tables *tables;
    struct agent_tier *dram;
    void *dram_base;
    uint64_t dram_len;
    struct agent_tier *hbm;             /* NULL: no HBM tier */
    void *hbm_base;                     /* its region (device address) */
    uint64_t hbm_len;                   /* its bytes */
    bool hbm_device;                    /* GPU memory, not emulated */
    bool closing;                       /* agent_fabric_close() runs */
    struct agent_fabric_hbm hbm_reg[3]; /* the HBM region, per kind */
    struct agent_fabric_hooks hooks;
    struct mcos_bus_server *ctl;             /* our control endpoint */
    struct agent_transport *tr[3];           /* by kind, NULL: off */
    struct agent_transport_region region[3]; /* the arena, per kind */
    char verbs_note[200];                    /* why verbs is off */
    char names[32];                          /* "tcp verbs" */
    struct peer *peers[MAX_PEERS];
    size_t n_peers;
    size_t rr;                  /* round robin for picks */
    pthread_mutex_t admit_lock; /* guards admitted */
    struct {
        char name[AGENT_TRANSPORT_NODE_MAX];
        uint64_t boot_id;
    } * admitted;
    size_t n_admitted;
    struct hosted *hosted;
    uint64_t next_handle;
    pthread_mutex_t done_lock; /* guards done_q */
    struct xfer *done_q;       /* completed one-sided ops */
    uv_async_t wake;
    struct xfer *all; /* every transfer in flight */
    struct agent_fabric_counters counters;
};

static uint64_t
now_us(const struct agent_fabric *f)
{
    return mcos_clock_now(f->clock);
}

/* The tier a transfer's extent is in, and where its bytes start. */
static struct agent_tier *
tier_of(const struct agent_fabric *f, int tier)
{
    return tier == MCOS__TIER_KIND__TIER_HBM ? f->hbm : f->dram;
}

static void *
tier_base(const struct agent_fabric *f, int tier)
{
    return tier == MCOS__TIER_KIND__TIER_HBM ? f->hbm_base : f->dram_base;
}

/* True when a region announced with this Region.tier covers the DRAM
 * arena (0: a peer from before the field). */
static bool
region_is_dram(int tier)
{
    return tier == MCOS__TIER_KIND__TIER_UNKNOWN ||
           tier == MCOS__TIER_KIND__TIER_DRAM;
}

/* ------------------------------------------------------------------------
 * Peers and admission. */

static struct peer *
peer_find(const struct agent_fabric *f, const char *name)
{
    for (size_t i = 0; i < f->n_peers; i++) {
        if (!strcmp(f->peers[i]->name, name)) {
            return f->peers[i];
        }
    }
    return NULL;
}

static void xfer_finish(struct xfer *x);

static void
peer_disconnect(struct agent_fabric *f, struct peer *p)
{
    struct xfer *x;

    for (int k = 1; k < 3; k++) {
        if (p->conn[k]) {
            agent_transport_disconnect(f->tr[k], p->conn[k]);
            p->conn[k] = NULL;
        }
    }
    if (p->ctl) {
        /* Closing cancels its calls without callbacks: fail the
         * transfers that wait on one. */
        mcos_bus_client_close(p->ctl);
        p->ctl = NULL;
    again:
        for (x = f->all; x; x = x->all_next) {
            if (x->in_ctl && !strcmp(x->peer, p->name)) {
                x->in_ctl = false;
                x->res.status = -ECONNABORTED;
                snprintf(x->res.error, sizeof x->res.error,
                         "peer %s left during the transfer", p->name);
                xfer_finish(x);
                goto again;
            }
        }
    }
}

static bool
admit_cb(void *arg, const char *node, uint64_t boot_id, char *why,
         size_t whylen)
{
    struct agent_fabric *f = arg;
    bool ok = false;

    pthread_mutex_lock(&f->admit_lock);
    for (size_t i = 0; i < f->n_admitted; i++) {
        if (!strcmp(f->admitted[i].name, node)) {
            ok = f->admitted[i].boot_id == boot_id;
            if (!ok) {
                snprintf(why, whylen,
                         "node %s: boot %016" PRIx64
                         " is not the one the brain admitted",
                         node, boot_id);
            }
            pthread_mutex_unlock(&f->admit_lock);
            return ok;
        }
    }
    pthread_mutex_unlock(&f->admit_lock);
    snprintf(why, whylen, "node %s is not an admitted peer of %s", node,
             f->node);
    return false;
}

/* The transport both ends can run, best first; 0 when none. */
static int
pick_transport(const struct agent_fabric *f, const struct peer *p)
{
    if (f->tr[AGENT_TRANSPORT_VERBS] && p->data_port[AGENT_TRANSPORT_VERBS] &&
        p->region[AGENT_TRANSPORT_VERBS].id) {
        return AGENT_TRANSPORT_VERBS;
    }
    if (f->tr[AGENT_TRANSPORT_TCP] && p->data_port[AGENT_TRANSPORT_TCP] &&
        p->region[AGENT_TRANSPORT_TCP].id) {
        return AGENT_TRANSPORT_TCP;
    }
    return 0;
}

static void hosted_drop_owner(struct agent_fabric *f, const char *owner,
                              uint64_t keep_boot);

/* Checks one verbs region of a peer against its n verbs endpoints and
 * copies it into out. */
static int
verbs_region_read(const Mcos__PeerRule *pr, const Mcos__Region *vr, unsigned n,
                  struct agent_transport_region *out, char *err, size_t errlen)
{
    if (vr->n_keys > 0 && vr->n_keys != n) {
        snprintf(err, errlen,
                 "peer %s: verbs region %u carries %zu keys for %u verbs "
                 "endpoints",
                 pr->node, vr->id, vr->n_keys, n);
        return -EINVAL;
    }
    if (vr->n_keys == 0 && n > 1) {
        snprintf(err, errlen,
                 "peer %s: verbs region %u carries one key for %u verbs "
                 "endpoints",
                 pr->node, vr->id, n);
        return -EINVAL;
    }
    if (vr->n_keys > 0 && vr->keys[0] != vr->key) {
        snprintf(err, errlen,
                 "peer %s: verbs region %u: its first key differs from its "
                 "key",
                 pr->node, vr->id);
        return -EINVAL;
    }
    out->id = vr->id;
    out->addr = vr->address;
    out->len = vr->length;
    out->key = vr->key;
    out->nkeys = (uint32_t)vr->n_keys;
    for (size_t i = 0; i < vr->n_keys; i++) {
        out->keys[i] = vr->keys[i];
    }
    return 0;
}

static int
peer_verbs_read(const Mcos__PeerRule *pr, struct agent_fabric_peer_verbs *out,
                char *err, size_t errlen)
{
    const Mcos__Region *vr = NULL, *hr = NULL;
    int r;

    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < pr->n_endpoints; i++) {
        const Mcos__Endpoint *ep = pr->endpoints[i];

        if (ep->transport != MCOS__TRANSPORT__TRANSPORT_VERBS) {
            continue;
        }
        if (out->n == AGENT_TRANSPORT_MAX_NICS) {
            snprintf(err, errlen,
                     "peer %s announces more than %d verbs endpoints",
                     pr->node, AGENT_TRANSPORT_MAX_NICS);
            return -EINVAL;
        }
        if (!ep->address || !*ep->address ||
            strlen(ep->address) >= sizeof out->ep[0].address ||
            ep->port == 0 || ep->port > 65535) {
            snprintf(err, errlen, "peer %s: verbs endpoint %u is malformed",
                     pr->node, out->n + 1);
            return -EINVAL;
        }
        snprintf(out->ep[out->n].address, sizeof out->ep[0].address, "%s",
                 ep->address);
        out->ep[out->n++].port = (uint16_t)ep->port;
    }
    for (size_t i = 0; i < pr->n_regions; i++) {
        const Mcos__Region *g = pr->regions[i];
        const Mcos__Region **slot;

        if (g->transport != MCOS__TRANSPORT__TRANSPORT_VERBS) {
            continue;
        }
        if (region_is_dram(g->tier)) {
            slot = &vr;
        } else if (g->tier == MCOS__TIER_KIND__TIER_HBM) {
            slot = &hr;
        } else {
            snprintf(err, errlen,
                     "peer %s: verbs region %u covers tier %s; regions "
                     "cover dram or hbm",
                     pr->node, g->id, mcos_tier_name(g->tier));
            return -EINVAL;
        }
        if (*slot) {
            snprintf(err, errlen,
                     "peer %s: verbs regions %u and %u both cover %s",
                     pr->node, (*slot)->id, g->id,
                     region_is_dram(g->tier) ? "dram" : "hbm");
            return -EINVAL;
        }
        *slot = g;
    }
    if (!vr || out->n == 0) {
        /* No arena on verbs: the peer is not reached over verbs at all
         * (an HBM region alone is of no use; replies name DRAM too). */
        out->n = 0;
        return 0;
    }
    r = verbs_region_read(pr, vr, out->n, &out->region, err, errlen);
    if (r == 0 && hr) {
        r = verbs_region_read(pr, hr, out->n, &out->hbm, err, errlen);
    }
    return r;
}

int
agent_fabric_peer_verbs(const Mcos__PeerRule *pr,
                        struct agent_fabric_peer_verbs *out, char *err,
                        size_t errlen)
{
    int r = peer_verbs_read(pr, out, err, errlen);

    if (r < 0) {
        memset(out, 0, sizeof *out); /* nothing half read is used */
    }
    return r;
}

static void
peer_update(struct agent_fabric *f, const Mcos__PeerRule *pr)
{
    struct peer *p = peer_find(f, pr->node);
    struct agent_fabric_peer_verbs old;
    uint16_t old_ctl;
    char why[300];

    if (!p) {
        if (f->n_peers == MAX_PEERS || !(p = calloc(1, sizeof *p))) {
            LOG_ERR("no room for peer %s", pr->node);
            return;
        }
        snprintf(p->name, sizeof p->name, "%s", pr->node);
        snprintf(p->link.peer, sizeof p->link.peer, "%s", pr->node);
        f->peers[f->n_peers++] = p;
    } else if (p->boot_id && p->boot_id != pr->boot_id) {
        /* The peer restarted: its memory, and what we put there, is gone;
         * what it stored here belonged to its old self. */
        LOG_INFO("peer %s restarted (boot %016" PRIx64 " -> %016" PRIx64 ")",
                 p->name, p->boot_id, pr->boot_id);
        peer_disconnect(f, p);
        if (f->hooks.peer_lost) {
            f->hooks.peer_lost(f->hooks.arg, p->name, p->boot_id);
        }
        hosted_drop_owner(f, p->name, pr->boot_id);
    }
    p->boot_id = pr->boot_id;
    p->present = true;
    old = p->verbs;
    old_ctl = p->ctl_port;
    memset(p->data_port, 0, sizeof p->data_port);
    memset(p->region, 0, sizeof p->region);
    p->ctl_port = 0;
    for (size_t i = 0; i < pr->n_endpoints; i++) {
        const Mcos__Endpoint *ep = pr->endpoints[i];

        if (ep->transport == MCOS__TRANSPORT__TRANSPORT_CONTROL) {
            /* Only a peer that moved is dialled anew: every table change
             * comes through here, and transfers are under way. */
            if (strcmp(p->address, ep->address) || old_ctl != ep->port) {
                peer_disconnect(f, p);
            }
            snprintf(p->address, sizeof p->address, "%s", ep->address);
            p->ctl_port = (uint16_t)ep->port;
        } else if (ep->transport == MCOS__TRANSPORT__TRANSPORT_TCP) {
            p->data_port[ep->transport] = (uint16_t)ep->port;
        }
    }
    for (size_t i = 0; i < pr->n_regions; i++) {
        const Mcos__Region *g = pr->regions[i];

        if (g->transport == MCOS__TRANSPORT__TRANSPORT_TCP &&
            region_is_dram(g->tier)) {
            p->region[g->transport].id = g->id;
            p->region[g->transport].addr = g->address;
            p->region[g->transport].len = g->length;
            p->region[g->transport].key = g->key;
        }
    }
    if (agent_fabric_peer_verbs(pr, &p->verbs, why, sizeof why) < 0) {
        LOG_WARN("peer %s: verbs not used: %s", p->name, why);
    }
    if (p->conn[AGENT_TRANSPORT_VERBS] &&
        memcmp(&old, &p->verbs, sizeof old)) {
        /* Its NICs or keys changed: the next transfer dials anew. */
        agent_transport_disconnect(f->tr[AGENT_TRANSPORT_VERBS],
                                   p->conn[AGENT_TRANSPORT_VERBS]);
        p->conn[AGENT_TRANSPORT_VERBS] = NULL;
    }
    if (p->verbs.n) {
        p->data_port[AGENT_TRANSPORT_VERBS] = p->verbs.ep[0].port;
        p->region[AGENT_TRANSPORT_VERBS] = p->verbs.region;
    }
    p->link.transport = pick_transport(f, p);
}

void
agent_fabric_tables_changed(struct agent_fabric *f)
{
    const struct mcos_table *t = agent_tables_read_lock(f->tables);
    size_t n = t ? mcos_table_n_rules(t) : 0, na = 0;
    typeof(f->admitted) adm = calloc(n ? n : 1, sizeof *adm);

    for (size_t i = 0; i < f->n_peers; i++) {
        f->peers[i]->present = false;
    }
    for (size_t i = 0; i < n; i++) {
        const Mcos__Rule *r = mcos_table_rule(t, i);

        if (r->rule_case != MCOS__RULE__RULE_PEER) {
            continue;
        }
        peer_update(f, r->peer);
        if (adm) {
            snprintf(adm[na].name, sizeof adm[na].name, "%s", r->peer->node);
            adm[na].boot_id = r->peer->boot_id;
            na++;
        }
    }
    agent_tables_read_unlock(f->tables);
    for (size_t i = 0; i < f->n_peers; i++) {
        struct peer *p = f->peers[i];

        if (!p->present) {
            /* Failed or gone: stop talking to it.  What it stored here is
             * kept until it comes back under a new boot id. */
            peer_disconnect(f, p);
        }
    }
    if (adm) {
        pthread_mutex_lock(&f->admit_lock);
        free(f->admitted);
        f->admitted = adm;
        f->n_admitted = na;
        pthread_mutex_unlock(&f->admit_lock);
    }
}

bool
agent_fabric_has_peer(const struct agent_fabric *f, const char *peer)
{
    const struct peer *p = peer_find(f, peer);

    return p && p->present;
}

/* ------------------------------------------------------------------------
 * Hosting: what peers store here. */

static void
hosted_free(struct agent_fabric *f, struct hosted *h)
{
    agent_tier_free(tier_of(f, h->tier), &h->ext);
    if (h->committed) {
        f->counters.hosted_objects--;
        f->counters.hosted_bytes -= h->ext.len;
    }
    if (h->alloc) {
        mcos__peer_request__free_unpacked(h->alloc, NULL);
    }
    free(h);
}

static void
hosted_drop_owner(struct agent_fabric *f, const char *owner,
                  uint64_t keep_boot)
{
    struct hosted **pp = &f->hosted;
    size_t n = 0;

    while (*pp) {
        struct hosted *h = *pp;

        if (!strcmp(h->owner, owner) && h->owner_boot != keep_boot) {
            *pp = h->next;
            hosted_free(f, h);
            n++;
        } else {
            pp = &h->next;
        }
    }
    if (n) {
        LOG_INFO("dropped %zu objects stored here by %s's previous boot", n,
                 owner);
    }
}

static struct hosted **
hosted_find(struct agent_fabric *f, const char *owner, uint64_t handle)
{
    for (struct hosted **pp = &f->hosted; *pp; pp = &(*pp)->next) {
        if ((*pp)->handle == handle && !strcmp((*pp)->owner, owner)) {
            return pp;
        }
    }
    return NULL;
}

void
agent_fabric_tick(struct agent_fabric *f)
{
    uint64_t now = now_us(f);
    struct hosted **pp = &f->hosted;

    while (*pp) {
        struct hosted *h = *pp;

        if (!h->committed && now >= h->expires_us) {
            LOG_WARN("reservation %" PRIu64 " of %s for object %016" PRIx64
                     " was never committed; given back",
                     h->handle, h->owner, h->id);
            *pp = h->next;
            hosted_free(f, h);
            f->counters.expired++;
        } else {
            pp = &h->next;
        }
    }
}

/* A registration as the wire names it (the keys stay f's). */
static void
region_to_wire(const struct agent_transport_region *g, int k, int tier,
               Mcos__Region *rg)
{
    mcos__region__init(rg);
    rg->id = g->id;
    rg->transport = k;
    rg->address = g->addr;
    rg->length = g->len;
    rg->key = g->key;
    rg->n_keys = g->nkeys;
    rg->keys = (uint64_t *)g->keys;
    rg->tier = tier;
}

static int
serve_alloc(struct agent_fabric *f, const Mcos__PeerRequest *q,
            Mcos__PeerReply *rep, Mcos__Region *rg, char *err, size_t errlen)
{
    struct agent_tier_stats st;
    struct hosted *h;
    int k = q->transport, r;

    if (q->object_id == 0 || q->size == 0) {
        snprintf(err, errlen, "alloc needs an object id and a size");
        return -EINVAL;
    }
    if (q->purpose != MCOS__PEER_PURPOSE__PURPOSE_REPLICA &&
        q->purpose != MCOS__PEER_PURPOSE__PURPOSE_HOSTED) {
        snprintf(err, errlen, "unknown purpose %d", q->purpose);
        return -EINVAL;
    }
    if ((k != AGENT_TRANSPORT_TCP && k != AGENT_TRANSPORT_VERBS) ||
        !f->tr[k]) {
        snprintf(err, errlen, "transport %s is not running on %s",
                 mcos_transport_name(k), f->node);
        return -EPROTONOSUPPORT;
    }
    if (q->purpose == MCOS__PEER_PURPOSE__PURPOSE_REPLICA) {
        if (q->tier != MCOS__TIER_KIND__TIER_HBM &&
            q->tier != MCOS__TIER_KIND__TIER_DRAM &&
            q->tier != MCOS__TIER_KIND__TIER_NVME) {
            snprintf(err, errlen,
                     "a replica goes to hbm, dram or nvme, "
                     "not %s",
                     mcos_tier_name(q->tier));
            return -EINVAL;
        }
        if (f->hooks.holds && f->hooks.holds(f->hooks.arg, q->object_id)) {
            snprintf(err, errlen, "%s already holds object %016" PRIx64,
                     f->node, q->object_id);
            return -EEXIST;
        }
    }
    if (!(h = calloc(1, sizeof *h))) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    /* A replica bound for HBM lands there directly when this transport
     * has our HBM region; else in DRAM, and the store moves it up. */
    h->tier = MCOS__TIER_KIND__TIER_DRAM;
    if (q->purpose == MCOS__PEER_PURPOSE__PURPOSE_REPLICA &&
        q->tier == MCOS__TIER_KIND__TIER_HBM && f->hbm_reg[k].region.id &&
        agent_tier_alloc(f->hbm, q->size, &h->ext) == 0) {
        if (h->ext.off + q->size <= f->hbm_reg[k].region.len) {
            h->tier = MCOS__TIER_KIND__TIER_HBM;
        } else {
            /* Past the registered part: the HBM tier allocates whole
             * pages, so only a registration shorter than the region. */
            agent_tier_free(f->hbm, &h->ext);
        }
    }
    if (h->tier == MCOS__TIER_KIND__TIER_DRAM) {
        agent_tier_stats(f->dram, &st);
        if (q->size > st.capacity) {
            free(h);
            snprintf(err, errlen,
                     "%" PRIu64 " bytes exceed %s's DRAM arena (%" PRIu64 ")",
                     q->size, f->node, st.capacity);
            return -EFBIG;
        }
        r = agent_tier_alloc(f->dram, q->size, &h->ext);
        if (r) {
            free(h);
            snprintf(err, errlen, "no room in %s's DRAM for %" PRIu64 " bytes",
                     f->node, q->size);
            return r;
        }
    }
    if (q->purpose == MCOS__PEER_PURPOSE__PURPOSE_REPLICA) {
        /* Kept (re-encoded) for adopt(): class, namespace, parent. */
        uint8_t *buf = malloc(mcos__peer_request__get_packed_size(q) + 1);

        if (buf) {
            size_t n = mcos__peer_request__pack(q, buf);

            h->alloc = mcos__peer_request__unpack(NULL, n, buf);
            free(buf);
        }
        if (!h->alloc) {
            agent_tier_free(tier_of(f, h->tier), &h->ext);
            free(h);
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
    }
    snprintf(h->owner, sizeof h->owner, "%s", q->node);
    h->owner_boot = q->boot_id;
    h->handle = ++f->next_handle;
    h->id = q->object_id;
    h->expires_us = now_us(f) + RESERVE_TTL_US;
    h->next = f->hosted;
    f->hosted = h;
    f->counters.served_allocs++;
    LOG_DBG("reserved %" PRIu64 " bytes in %s for object %016" PRIx64
            " from %s (handle %" PRIu64 ")",
            q->size, mcos_tier_name(h->tier), q->object_id, q->node,
            h->handle);

    region_to_wire(h->tier == MCOS__TIER_KIND__TIER_HBM ? &f->hbm_reg[k].region
                                                        : &f->region[k],
                   k, h->tier, rg);
    rep->region = rg;
    rep->handle = h->handle;
    rep->offset = h->ext.off;
    return 0;
}

static int
serve_commit(struct agent_fabric *f, const Mcos__PeerRequest *q,
             Mcos__PeerReply *rep, char *err, size_t errlen)
{
    struct hosted **pp = hosted_find(f, q->node, q->handle), *h;
    uint64_t sum = 0;
    int r;

    if (!pp || (*pp)->committed || (*pp)->owner_boot != q->boot_id) {
        snprintf(err, errlen, "no open reservation %" PRIu64 " for %s",
                 q->handle, q->node);
        return -ENOENT;
    }
    h = *pp;
    if (q->object_id != h->id) {
        snprintf(err, errlen,
                 "reservation %" PRIu64 " is for object %016" PRIx64
                 ", not %016" PRIx64,
                 h->handle, h->id, q->object_id);
        return -EINVAL;
    }
    r = agent_tier_checksum(tier_of(f, h->tier), &h->ext, h->ext.len, &sum);
    rep->checksum = sum;
    if (r || sum != q->checksum) {
        *pp = h->next;
        hosted_free(f, h);
        f->counters.checksum_failures++;
        snprintf(err, errlen,
                 "object %016" PRIx64 " arrived with checksum %016" PRIx64
                 ", want %016" PRIx64 "; nothing kept",
                 q->object_id, sum, q->checksum);
        return -EBADMSG;
    }
    f->counters.served_commits++;
    if (h->alloc) {
        /* A replica: the store adopts the bytes as its own object. */
        r = f->hooks.adopt(f->hooks.arg, h->alloc, h->tier, &h->ext, sum, err,
                           errlen);
        *pp = h->next;
        if (r == 0) {
            f->counters.hbm_landed += h->tier == MCOS__TIER_KIND__TIER_HBM;
            mcos__peer_request__free_unpacked(h->alloc, NULL);
            free(h);
        } else {
            hosted_free(f, h);
        }
        return r;
    }
    h->committed = true;
    f->counters.hosted_objects++;
    f->counters.hosted_bytes += h->ext.len;
    return 0;
}

static int
serve_free(struct agent_fabric *f, const Mcos__PeerRequest *q, char *err,
           size_t errlen)
{
    struct hosted **pp = hosted_find(f, q->node, q->handle), *h;

    if (!pp) {
        snprintf(err, errlen,
                 "%s holds nothing under handle %" PRIu64 " for %s", f->node,
                 q->handle, q->node);
        return -ENOENT;
    }
    h = *pp;
    *pp = h->next;
    hosted_free(f, h);
    return 0;
}

/* Encodes the reply into a malloc'd buffer. */
static int
reply(Mcos__PeerReply *rep, uint8_t **out, size_t *out_len)
{
    return mcos_wire_encode(MCOS__MSG_TYPE__MSG_PEER_REPLY, &rep->base, out,
                            out_len);
}

int
agent_fabric_serve(struct agent_fabric *f, const void *data, size_t len,
                   uint8_t **out, size_t *out_len)
{
    Mcos__PeerReply rep = MCOS__PEER_REPLY__INIT;
    Mcos__Region rg;
    struct mcos_wire_msg m;
    const Mcos__PeerRequest *q;
    char err[256] = "";
    int r;

    r = mcos_wire_decode(data, len, &m, err, sizeof err);
    if (r) {
        f->counters.refused++;
        rep.status = r;
        rep.error = err;
        return reply(&rep, out, out_len);
    }
    q = mcos_wire_peer_request(&m);
    if (!q) {
        snprintf(err, sizeof err, "expected a peer request, got a %s",
                 mcos_wire_type_name(m.type));
        r = -EPROTO;
    } else if (!mcos_node_name_valid(q->node)) {
        snprintf(err, sizeof err, "bad sender node name");
        r = -EACCES;
    } else if (!admit_cb(f, q->node, q->boot_id, err, sizeof err)) {
        r = -EACCES;
    } else {
        switch (q->op) {
        case MCOS__PEER_OP__PEER_ALLOC:
            r = serve_alloc(f, q, &rep, &rg, err, sizeof err);
            break;
        case MCOS__PEER_OP__PEER_COMMIT:
            r = serve_commit(f, q, &rep, err, sizeof err);
            break;
        case MCOS__PEER_OP__PEER_FREE:
            r = serve_free(f, q, err, sizeof err);
            break;
        default:
            snprintf(err, sizeof err, "unknown peer op %d", q->op);
            r = -EINVAL;
            break;
        }
    }
    if (r) {
        f->counters.refused++;
        /* Peers' input: a misbehaving one must not flood the log. */
        LOG_WARN_RL(&refused_rl, "peer request from %s refused: %s",
                    q && q->node ? q->node : "?", err);
    }
    rep.status = r;
    rep.error = err;
    r = reply(&rep, out, out_len);
    mcos_wire_msg_free(&m);
    return r;
}

static void
on_request(struct mcos_bus_request *req, void *arg)
{
    const void *data;
    uint8_t *buf;
    size_t len;

    data = mcos_bus_request_data(req, &len);
    if (agent_fabric_serve(arg, data, len, &buf, &len)) {
        mcos_bus_request_drop(req);
        return;
    }
    mcos_bus_reply(req, buf, len);
    free(buf);
}

/* ------------------------------------------------------------------------
 * Transfers. */

static void
ignore_reply(int status, const void *data, size_t len, void *arg)
{
    (void)status;
    (void)data;
    (void)len;
    (void)arg;
}

static int
ctl_call(struct agent_fabric *f, struct peer *p, Mcos__PeerRequest *q,
         mcos_bus_reply_cb cb, void *arg, char *err, size_t errlen)
{
    uint8_t *buf;
    size_t len;
    int r;

    if (!p->ctl) {
        char url[300];

        if (!p->ctl_port) {
            snprintf(err, errlen, "peer %s announced no control endpoint",
                     p->name);
            return -EHOSTUNREACH;
        }
        snprintf(url, sizeof url, "tcp://%s:%u", p->address, p->ctl_port);
        r = mcos_bus_client_create(f->loop, url, &p->ctl, err, errlen);
        if (r) {
            return r;
        }
    }
    q->node = f->node;
    q->boot_id = f->boot_id;
    r = mcos_wire_encode(MCOS__MSG_TYPE__MSG_PEER_REQUEST, &q->base, &buf,
                         &len);
    if (r) {
        snprintf(err, errlen, "cannot encode a peer request");
        return r;
    }
    r = mcos_bus_call(p->ctl, buf, len, CONTROL_TIMEOUT_MS,
                      cb ? cb : ignore_reply, arg, NULL);
    free(buf);
    if (r) {
        snprintf(err, errlen, "cannot call %s: %s", p->name, mcos_strerror(r));
    }
    return r;
}

/* Decodes a peer's reply; fills x->res on failure. */
static Mcos__PeerReply *
ctl_reply(struct xfer *x, int status, const void *data, size_t len,
          struct mcos_wire_msg *m, const char *what)
{
    Mcos__PeerReply *rep;
    char err[200];

    if (status) {
        x->res.status = status;
        snprintf(x->res.error, sizeof x->res.error, "%s to %s: %s", what,
                 x->peer, mcos_strerror(status));
        return NULL;
    }
    if (mcos_wire_decode(data, len, m, err, sizeof err)) {
        x->res.status = -EPROTO;
        snprintf(x->res.error, sizeof x->res.error, "%s reply from %s: %.200s",
                 what, x->peer, err);
        return NULL;
    }
    rep = mcos_wire_peer_reply(m);
    if (!rep) {
        x->res.status = -EPROTO;
        snprintf(x->res.error, sizeof x->res.error, "%s reply from %s is a %s",
                 what, x->peer, mcos_wire_type_name(m->type));
        mcos_wire_msg_free(m);
        return NULL;
    }
    if (rep->status) {
        x->res.status = rep->status > 0 ? -EPROTO : rep->status;
        snprintf(x->res.error, sizeof x->res.error, "%s refused by %s: %s",
                 what, x->peer, rep->error ? rep->error : "");
        mcos_wire_msg_free(m);
        return NULL;
    }
    return rep;
}

/* Runs on the transport's thread. */
static void
op_done(struct agent_transport_op *op, void *arg)
{
    struct xfer *x = arg;
    struct agent_fabric *f = x->f;

    (void)op;
    if (x->kind == XFER_GET && op->status == 0) {
        /* Checksummed here, on the dataplane thread, not on the loop. */
        x->got_sum = XXH3_64bits(op->local, x->len);
    }
    pthread_mutex_lock(&f->done_lock);
    x->next = f->done_q;
    f->done_q = x;
    pthread_mutex_unlock(&f->done_lock);
    uv_async_send(&f->wake);
}

static int
post_op(struct xfer *x, struct peer *p)
{
    struct agent_fabric *f = x->f;
    struct agent_transport_op *op = &x->op;
    struct agent_transport_op *ops[1] = {op};
    int k = x->tkind, r;

    if (!p->conn[k]) {
        struct agent_transport_peer tp = {
            .node = p->name,
            .boot_id = p->boot_id,
            .address = p->address,
            .port = p->data_port[k],
        };

        if (k == AGENT_TRANSPORT_VERBS) {
            /* One path per NIC pair; the first NIC is where it listens
             * for verbs, its further ones follow in announced order. */
            tp.address = p->verbs.ep[0].address;
            tp.n_more = p->verbs.n - 1;
            for (unsigned i = 1; i < p->verbs.n; i++) {
                tp.more[i - 1].address = p->verbs.ep[i].address;
                tp.more[i - 1].port = p->verbs.ep[i].port;
            }
        }

        r = agent_transport_connect(f->tr[k], &tp, &p->conn[k], x->res.error,
                                    sizeof x->res.error);
        if (r) {
            return r;
        }
    }
    r = agent_transport_post(f->tr[k], p->conn[k], ops, 1);
    if (r) {
        snprintf(x->res.error, sizeof x->res.error, "%s", op->error);
    }
    return r;
}

static void commit_cb(int status, const void *data, size_t len, void *arg);
static void alloc_cb(int status, const void *data, size_t len, void *arg);
static int send_alloc(struct xfer *x, struct peer *p);
static bool direct_to(const struct agent_fabric *f, const struct peer *p,
                      int tier, const struct agent_tier_extent *e);

/* The next peer a picked put may go to: admitted, with a transport in
 * common that reaches the put's source extent (any for DRAM; for HBM one
 * that has our HBM region). */
static struct peer *
next_candidate(struct xfer *x)
{
    struct agent_fabric *f = x->f;

    while (x->tried < f->n_peers) {
        struct peer *p = f->peers[(f->rr + x->tried++) % f->n_peers];

        if (p->present && direct_to(f, p, x->src_tier, &x->ext)) {
            return p;
        }
    }
    return NULL;
}

static void
put_fail_or_retry(struct xfer *x)
{
    struct peer *p;

    /* A picked peer that has no room: try the next one. */
    if (x->pick && (x->res.status == -ENOSPC || x->res.status == -EEXIST ||
                    x->res.status == -EFBIG)) {
        while ((p = next_candidate(x))) {
            snprintf(x->peer, sizeof x->peer, "%s", p->name);
            x->res.status = 0;
            if (send_alloc(x, p) == 0) {
                return;
            }
        }
    }
    xfer_finish(x);
}

static void
alloc_cb(int status, const void *data, size_t len, void *arg)
{
    struct xfer *x = arg;
    struct agent_fabric *f = x->f;
    struct peer *p = peer_find(f, x->peer);
    struct mcos_wire_msg m;
    Mcos__PeerReply *rep;
    const Mcos__Region *g;

    x->in_ctl = false;
    rep = ctl_reply(x, status, data, len, &m, "alloc");
    if (!rep) {
        put_fail_or_retry(x);
        return;
    }
    g = rep->region;
    x->res.loc.handle = rep->handle;
    x->res.loc.offset = rep->offset;
    if (!g || g->transport != (Mcos__Transport)x->tkind || !g->id || !p) {
        x->res.status = -EPROTO;
        snprintf(x->res.error, sizeof x->res.error,
                 "alloc reply from %s names no usable region", x->peer);
        mcos_wire_msg_free(&m);
        xfer_finish(x);
        return;
    }
    if (g->n_keys > 0 &&
        (x->tkind != AGENT_TRANSPORT_VERBS || g->n_keys != p->verbs.n)) {
        x->res.status = -EPROTO;
        snprintf(x->res.error, sizeof x->res.error,
                 "alloc reply from %s: region carries %zu keys for %u "
                 "verbs endpoints",
                 x->peer, g->n_keys,
                 x->tkind == AGENT_TRANSPORT_VERBS ? p->verbs.n : 0);
        mcos_wire_msg_free(&m);
        xfer_finish(x);
        return;
    }
    x->res.loc.region.id = g->id;
    x->res.loc.region.addr = g->address;
    x->res.loc.region.len = g->length;
    x->res.loc.region.key = g->key;
    x->res.loc.region.nkeys = (uint32_t)g->n_keys;
    for (size_t i = 0; i < g->n_keys; i++) {
        x->res.loc.region.keys[i] = g->keys[i];
    }
    mcos_wire_msg_free(&m);

    x->op.opcode = AGENT_TRANSPORT_WRITE;
    x->op.local = (char *)tier_base(f, x->src_tier) + x->ext.off;
    x->op.len = x->len;
    x->op.remote = x->res.loc.region;
    x->op.remote_off = x->res.loc.offset;
    x->op.done = op_done;
    x->op.arg = x;
    x->res.status = post_op(x, p);
    if (x->res.status) {
        xfer_finish(x);
    }
}

static int
send_alloc(struct xfer *x, struct peer *p)
{
    Mcos__PeerRequest q = x->meta;

    x->tkind = pick_transport(x->f, p);
    if (!x->tkind) {
        x->res.status = -EPROTONOSUPPORT;
        snprintf(x->res.error, sizeof x->res.error,
                 "peer %s has no transport in common with %s", p->name,
                 x->f->node);
        return x->res.status;
    }
    if (x->src_tier == MCOS__TIER_KIND__TIER_HBM &&
        !x->f->hbm_reg[x->tkind].region.id) {
        /* The store asked agent_fabric_direct first; the table changed
         * since.  The task's retry stages through DRAM. */
        x->res.status = -EOPNOTSUPP;
        snprintf(x->res.error, sizeof x->res.error,
                 "%s reaches peer %s over %s, which has no HBM region here",
                 x->f->node, p->name, agent_transport_kind_name(x->tkind));
        return x->res.status;
    }
    snprintf(x->res.loc.peer, sizeof x->res.loc.peer, "%s", p->name);
    x->res.loc.peer_boot = p->boot_id;
    x->res.loc.transport = x->tkind;
    q.op = MCOS__PEER_OP__PEER_ALLOC;
    q.object_id = x->id;
    q.size = x->len;
    q.purpose = x->purpose;
    q.tier = (Mcos__TierKind)x->tier;
    q.transport = (Mcos__Transport)x->tkind;
    x->res.status =
        ctl_call(x->f, p, &q, alloc_cb, x, x->res.error, sizeof x->res.error);
    x->in_ctl = x->res.status == 0;
    return x->res.status;
}

static void
send_commit(struct xfer *x)
{
    struct peer *p = peer_find(x->f, x->peer);
    Mcos__PeerRequest q = MCOS__PEER_REQUEST__INIT;

    if (!p) {
        x->res.status = -EHOSTUNREACH;
        snprintf(x->res.error, sizeof x->res.error, "peer %s left", x->peer);
        xfer_finish(x);
        return;
    }
    q.op = MCOS__PEER_OP__PEER_COMMIT;
    q.object_id = x->id;
    q.handle = x->res.loc.handle;
    q.checksum = x->sum;
    x->res.status =
        ctl_call(x->f, p, &q, commit_cb, x, x->res.error, sizeof x->res.error);
    x->in_ctl = x->res.status == 0;
    if (x->res.status) {
        xfer_finish(x);
    }
}

static void
commit_cb(int status, const void *data, size_t len, void *arg)
{
    struct xfer *x = arg;
    struct mcos_wire_msg m;
    Mcos__PeerReply *rep;

    x->in_ctl = false;
    rep = ctl_reply(x, status, data, len, &m, "commit");
    if (rep) {
        mcos_wire_msg_free(&m);
    }
    xfer_finish(x);
}

/* A one-sided op finished (on the loop now). */
static void
op_finished(struct xfer *x)
{
    struct agent_fabric *f = x->f;
    struct peer *p = peer_find(f, x->peer);

    if (x->op.status) {
        x->res.status = x->op.status;
        snprintf(x->res.error, sizeof x->res.error, "%s %s: %.200s",
                 x->kind == XFER_PUT ? "write to" : "read from", x->peer,
                 x->op.error);
        /* A broken connection is replaced at the next transfer, which
         * also covers a peer that restarted. */
        if (p && p->conn[x->tkind]) {
            char e[64];

            if (agent_transport_conn_status(f->tr[x->tkind], p->conn[x->tkind],
                                            e, sizeof e)) {
                agent_transport_disconnect(f->tr[x->tkind], p->conn[x->tkind]);
                p->conn[x->tkind] = NULL;
            }
        }
        xfer_finish(x);
        return;
    }
    if (x->kind == XFER_PUT) {
        send_commit(x);
        return;
    }
    if (x->got_sum != x->sum) {
        x->res.status = -EBADMSG;
        snprintf(x->res.error, sizeof x->res.error,
                 "object %016" PRIx64 " read from %s has checksum %016" PRIx64
                 ", want %016" PRIx64,
                 x->id, x->peer, x->got_sum, x->sum);
    }
    xfer_finish(x);
}

static void
on_wake(uv_async_t *h)
{
    struct agent_fabric *f = h->data;
    struct xfer *q, *next;

    pthread_mutex_lock(&f->done_lock);
    q = f->done_q;
    f->done_q = NULL;
    pthread_mutex_unlock(&f->done_lock);
    for (; q; q = next) {
        next = q->next;
        op_finished(q);
    }
}

static void
xfer_unlink(struct xfer *x)
{
    for (struct xfer **pp = &x->f->all; *pp; pp = &(*pp)->all_next) {
        if (*pp == x) {
            *pp = x->all_next;
            return;
        }
    }
}

/* Forgets a transfer that never started (no callback). */
static void
xfer_drop(struct xfer *x)
{
    xfer_unlink(x);
    free(x);
}

/* A transfer's error that says the peer, or the way to it, went away. */
static bool
peer_gone_error(int status)
{
    switch (status) {
    case -ECONNRESET:
    case -ECONNABORTED:
    case -ECONNREFUSED:
    case -ENOTCONN:
    case -EPIPE:
    case -EHOSTUNREACH:
    case -ENETUNREACH:
    case -ESHUTDOWN:
    case -ECANCELED:
        return true;
    default:
        return false;
    }
}

static void
xfer_finish(struct xfer *x)
{
    struct agent_fabric *f = x->f;
    struct peer *p = peer_find(f, x->peer);

    if (f->closing && x->res.status) {
        /* Whatever broke, it is our own close that broke it. */
        x->res.status = -ECANCELED;
        snprintf(x->res.error, sizeof x->res.error,
                 "the agent is shutting down");
    }
    x->res.time_us = now_us(f) - x->res.time_us;
    x->res.bytes = x->res.status ? 0 : x->len;
    if (x->kind == XFER_PUT && x->res.status && x->res.loc.handle && p &&
        p->present && p->ctl && !peer_gone_error(x->res.status)) {
        /* Give the reservation back (the peer also expires it).  Not
         * when its control client is gone (peer_disconnect, shutdown):
         * a new one made here would outlive the fabric.  Nor when the
         * connection to the peer broke: it is stopping or restarting,
         * its expiry covers it, and a request nobody will answer would
         * sit in nng until this agent exits (where LeakSanitizer saw
         * it, with the peer stopped first). */
        Mcos__PeerRequest q = MCOS__PEER_REQUEST__INIT;
        char err[200];

        q.op = MCOS__PEER_OP__PEER_FREE;
        q.object_id = x->id;
        q.handle = x->res.loc.handle;
        ctl_call(f, p, &q, NULL, NULL, err, sizeof err);
    }
    if (p) {
        p->link.busy_us += x->res.time_us;
        if (x->res.status) {
            p->link.errors++;
        } else {
            p->link.transfers++;
            if (x->kind == XFER_PUT) {
                p->link.tx_bytes += x->len;
            } else {
                p->link.rx_bytes += x->len;
            }
        }
    }
    if (x->kind == XFER_PUT) {
        f->counters.puts++;
        f->counters.put_failures += x->res.status != 0;
        f->counters.hbm_puts +=
            x->res.status == 0 && x->src_tier == MCOS__TIER_KIND__TIER_HBM;
    } else {
        f->counters.gets++;
        f->counters.get_failures += x->res.status != 0;
    }
    if (x->res.status && !f->closing) {
        /* A full or departed peer fails a pass's transfers together. */
        LOG_WARN_RL(&xfer_rl, "%s of object %016" PRIx64 " failed: %s",
                    x->kind == XFER_PUT ? "put" : "get", x->id, x->res.error);
    }
    xfer_unlink(x);
    if (x->cb) {
        x->cb(&x->res, x->arg);
    }
    free(x);
}

static struct xfer *
xfer_new(struct agent_fabric *f, enum xfer_kind kind, uint64_t len,
         uint64_t sum, const struct agent_tier_extent *e, agent_fabric_cb cb,
         void *arg)
{
    struct xfer *x = calloc(1, sizeof *x);

    if (!x) {
        return NULL;
    }
    x->f = f;
    x->kind = kind;
    x->len = len;
    x->sum = sum;
    x->ext = *e;
    x->src_tier = MCOS__TIER_KIND__TIER_DRAM;
    x->cb = cb;
    x->arg = arg;
    x->res.time_us = now_us(f);
    x->all_next = f->all;
    f->all = x;
    return x;
}

/* The transport a put to p would take, and whether our region of `tier`
 * on it holds e. */
static bool
direct_to(const struct agent_fabric *f, const struct peer *p, int tier,
          const struct agent_tier_extent *e)
{
    int k = pick_transport(f, p);
    const struct agent_transport_region *g;

    if (!k) {
        return false;
    }
    if (region_is_dram(tier)) {
        return true;
    }
    g = &f->hbm_reg[k].region;
    return tier == MCOS__TIER_KIND__TIER_HBM && g->id && e->off <= g->len &&
           e->len <= g->len - e->off;
}

bool
agent_fabric_direct(const struct agent_fabric *f, const char *peer, int tier,
                    const struct agent_tier_extent *e)
{
    const struct peer *p;

    if (peer) {
        p = peer_find(f, peer);
        return p && p->present && direct_to(f, p, tier, e);
    }
    for (size_t i = 0; i < f->n_peers; i++) {
        p = f->peers[i];
        if (p->present && direct_to(f, p, tier, e)) {
            return true;
        }
    }
    return false;
}

bool
agent_fabric_staged_peers(const struct agent_fabric *f, int tier,
                          const struct agent_tier_extent *e)
{
    for (size_t i = 0; i < f->n_peers; i++) {
        const struct peer *p = f->peers[i];

        if (p->present && pick_transport(f, p) && !direct_to(f, p, tier, e)) {
            return true;
        }
    }
    return false;
}

size_t
agent_fabric_hbm(const struct agent_fabric *f, struct agent_fabric_hbm *out,
                 size_t max)
{
    size_t n = 0;

    for (int k = 1; f->hbm && k < 3 && n < max; k++) {
        if (f->tr[k]) {
            out[n++] = f->hbm_reg[k];
        }
    }
    return n;
}

int
agent_fabric_put(struct agent_fabric *f, const char *peer,
                 Mcos__PeerPurpose purpose, int tier,
                 const Mcos__PeerRequest *meta,
                 const struct agent_tier_extent *e, uint64_t len, uint64_t sum,
                 agent_fabric_cb cb, void *arg, char *err, size_t errlen)
{
    return agent_fabric_put_from(f, peer, purpose, tier, meta,
                                 MCOS__TIER_KIND__TIER_DRAM, e, len, sum, cb,
                                 arg, err, errlen);
}

int
agent_fabric_put_from(struct agent_fabric *f, const char *peer,
                      Mcos__PeerPurpose purpose, int tier,
                      const Mcos__PeerRequest *meta, int src_tier,
                      const struct agent_tier_extent *e, uint64_t len,
                      uint64_t sum, agent_fabric_cb cb, void *arg, char *err,
                      size_t errlen)
{
    struct xfer *x;
    struct peer *p;

    if (len == 0 || len > e->len) {
        snprintf(err, errlen, "bad length %" PRIu64, len);
        return -EINVAL;
    }
    if (src_tier != MCOS__TIER_KIND__TIER_DRAM &&
        (src_tier != MCOS__TIER_KIND__TIER_HBM || !f->hbm)) {
        snprintf(err, errlen, "cannot send from %s: no region of it here",
                 mcos_tier_name(src_tier));
        return -EINVAL;
    }
    if (!(x = xfer_new(f, XFER_PUT, len, sum, e, cb, arg))) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    x->src_tier = src_tier;
    x->purpose = purpose;
    x->tier = tier;
    mcos__peer_request__init(&x->meta);
    if (meta) {
        x->meta.class_ = meta->class_;
        x->meta.parent_id = meta->parent_id;
        x->meta.hotness_milli = meta->hotness_milli;
        snprintf(x->ns, sizeof x->ns, "%s", meta->ns ? meta->ns : "");
    }
    x->meta.ns = x->ns;
    x->id = meta ? meta->object_id : 0;
    if (peer) {
        p = peer_find(f, peer);
        if (!p || !p->present) {
            snprintf(err, errlen, "%s is not an admitted peer of %s", peer,
                     f->node);
            xfer_drop(x);
            return -EHOSTUNREACH;
        }
    } else {
        x->pick = true;
        f->rr++;
        p = next_candidate(x);
        if (!p && src_tier == MCOS__TIER_KIND__TIER_HBM) {
            snprintf(err, errlen,
                     "no peer to send to from hbm: the brain has admitted "
                     "none reached by a transport with our HBM region");
            xfer_drop(x);
            return -EHOSTUNREACH;
        }
        if (!p) {
            snprintf(err, errlen,
                     "no peer to demote to: the brain has admitted none "
                     "with a transport in common");
            xfer_drop(x);
            return -EHOSTUNREACH;
        }
    }
    snprintf(x->peer, sizeof x->peer, "%s", p->name);
    if (send_alloc(x, p)) {
        snprintf(err, errlen, "%s", x->res.error);
        int r = x->res.status;

        xfer_drop(x);
        return r;
    }
    return 0;
}

int
agent_fabric_get(struct agent_fabric *f, const struct agent_fabric_loc *loc,
                 const struct agent_tier_extent *e, uint64_t len, uint64_t sum,
                 agent_fabric_cb cb, void *arg, char *err, size_t errlen)
{
    struct peer *p = peer_find(f, loc->peer);
    struct xfer *x;
    int r;

    if (!p || !p->present || p->boot_id != loc->peer_boot) {
        snprintf(err, errlen, "peer %s that holds the object is %s", loc->peer,
                 p && p->present ? "a new boot" : "not admitted");
        return -EHOSTUNREACH;
    }
    if (!f->tr[loc->transport]) {
        snprintf(err, errlen, "transport %s is off here",
                 mcos_transport_name(loc->transport));
        return -EPROTONOSUPPORT;
    }
    if (!(x = xfer_new(f, XFER_GET, len, sum, e, cb, arg))) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    snprintf(x->peer, sizeof x->peer, "%s", p->name);
    x->tkind = loc->transport;
    x->res.loc = *loc;
    x->op.opcode = AGENT_TRANSPORT_READ;
    x->op.local = (char *)f->dram_base + e->off;
    x->op.len = len;
    x->op.remote = loc->region;
    x->op.remote_off = loc->offset;
    x->op.done = op_done;
    x->op.arg = x;
    r = post_op(x, p);
    if (r) {
        snprintf(err, errlen, "%s", x->res.error);
        xfer_drop(x);
    }
    return r;
}

void
agent_fabric_free(struct agent_fabric *f, const struct agent_fabric_loc *loc,
                  uint64_t id)
{
    struct peer *p = peer_find(f, loc->peer);
    Mcos__PeerRequest q = MCOS__PEER_REQUEST__INIT;
    char err[200];

    if (!p || !p->present || p->boot_id != loc->peer_boot) {
        return; /* it restarted: the copy is gone already */
    }
    q.op = MCOS__PEER_OP__PEER_FREE;
    q.object_id = id;
    q.handle = loc->handle;
    if (ctl_call(f, p, &q, NULL, NULL, err, sizeof err)) {
        LOG_WARN("cannot free object %016" PRIx64 " on %s: %s", id, p->name,
                 err);
    }
}

/* ------------------------------------------------------------------------
 * Set up, tear down, telemetry. */

static void on_closed(uv_handle_t *h);

/* Registers the HBM region with transport k where it reaches GPU memory:
 * through a dma-buf of the GPU memory when the CUDA driver exports one,
 * else plain (nvidia-peermem lets the NIC pin device memory; emulated HBM
 * is host memory).  A failure is logged once, with why, and leaves the
 * region out: HBM objects then go through DRAM staging, as before. */
static void
register_hbm(struct agent_fabric *f, enum agent_transport_kind k)
{
    struct agent_fabric_hbm *hr = &f->hbm_reg[k];
    const char *kn = agent_transport_kind_name(k);
    char why[300], err[300];
    uint64_t len;
    int fd = -1, r;

    memset(hr, 0, sizeof *hr);
    hr->transport = k;
    if (!agent_transport_device_memory(f->tr[k])) {
        snprintf(hr->note, sizeof hr->note,
                 "%s moves bytes with the CPU, which cannot reach GPU "
                 "memory",
                 kn);
        LOG_INFO("HBM region not registered with %s: %s; HBM objects it "
                 "carries are staged through DRAM",
                 kn, hr->note);
        return;
    }
    if (f->hbm_device) {
        r = agent_tier_hbm_dmabuf(f->hbm, &fd, &len, why, sizeof why);
        if (r == 0) {
            r = agent_transport_register_dmabuf(f->tr[k], f->hbm_base, len, fd,
                                                0, &hr->region, err,
                                                sizeof err);
            close(fd);
            if (r == 0) {
                hr->via = "dma-buf";
                LOG_INFO("HBM region (%" PRIu64 " bytes) registered with %s "
                         "through dma-buf",
                         len, kn);
                return;
            }
            snprintf(why, sizeof why, "%s", err);
        }
        LOG_INFO("HBM region: no dma-buf registration with %s (%s); "
                 "registering the device address (needs nvidia-peermem)",
                 kn, why);
    }
    r = agent_transport_register(f->tr[k], f->hbm_base, f->hbm_len,
                                 &hr->region, err, sizeof err);
    if (r) {
        memset(&hr->region, 0, sizeof hr->region);
        snprintf(hr->note, sizeof hr->note, "%s", err);
        LOG_WARN("HBM region not registered with %s: %s; HBM objects are "
                 "staged through DRAM",
                 kn, err);
        return;
    }
    hr->via = f->hbm_device ? "peer-memory" : "host-memory";
    LOG_INFO("HBM region (%" PRIu64 " bytes, %s) registered with %s",
             f->hbm_len, hr->via, kn);
}

static int
start_transport(struct agent_fabric *f, enum agent_transport_kind k,
                const struct agent_fabric_config *cfg, char *err,
                size_t errlen)
{
    struct agent_transport_config tc = {
        .node = cfg->node,
        .boot_id = cfg->boot_id,
        .address = cfg->address,
        .port = (uint16_t)(cfg->port + 1),
        .more_addresses =
            k == AGENT_TRANSPORT_VERBS ? cfg->more_addresses : NULL,
        .n_more_addresses =
            k == AGENT_TRANSPORT_VERBS ? cfg->n_more_addresses : 0,
        .conns = cfg->conns,
        .slice = cfg->slice,
        .admit = admit_cb,
        .admit_arg = f,
    };
    int r = agent_transport_create(k, &tc, &f->tr[k], err, errlen);

    if (r) {
        return r;
    }
    r = agent_transport_register(f->tr[k], f->dram_base, f->dram_len,
                                 &f->region[k], err, errlen);
    if (r) {
        agent_transport_destroy(f->tr[k]);
        f->tr[k] = NULL;
        return r;
    }
    if (f->hbm) {
        register_hbm(f, k);
    }
    return 0;
}

int
agent_fabric_create(uv_loop_t *loop, const struct mcos_clock *clock,
                    const struct agent_fabric_config *cfg,
                    struct agent_tables *tables, struct agent_tier *dram,
                    const struct agent_fabric_hooks *hooks,
                    struct agent_fabric **out, char *err, size_t errlen)
{
    struct agent_fabric *f;
    char url[300], why[200];
    bool want_tcp, want_verbs;
    int r;

    *out = NULL;
    want_tcp =
        !strcmp(cfg->transports, "auto") || !strcmp(cfg->transports, "tcp");
    want_verbs =
        !strcmp(cfg->transports, "auto") || !strcmp(cfg->transports, "verbs");
    if (!want_tcp && !want_verbs) {
        snprintf(err, errlen,
                 "fabric: transports must be auto, tcp or verbs, not '%s'",
                 cfg->transports);
        return -EINVAL;
    }
    if (cfg->port == 0 || cfg->port == 65535) {
        snprintf(err, errlen, "fabric: data port must be 1..65534");
        return -EINVAL;
    }
    if (cfg->n_more_addresses >= AGENT_TRANSPORT_MAX_NICS) {
        snprintf(err, errlen, "fabric: %u data addresses; at most %d",
                 cfg->n_more_addresses + 1, AGENT_TRANSPORT_MAX_NICS);
        return -EINVAL;
    }
    if (!(f = calloc(1, sizeof *f))) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    f->loop = loop;
    f->clock = clock;
    f->tables = tables;
    f->dram = dram;
    f->hooks = *hooks;
    f->boot_id = cfg->boot_id;
    f->port = cfg->port;
    snprintf(f->node, sizeof f->node, "%s", cfg->node);
    snprintf(f->address, sizeof f->address, "%s", cfg->address);
    for (unsigned i = 0; i < cfg->n_more_addresses; i++) {
        snprintf(f->more_addr[i], sizeof f->more_addr[i], "%s",
                 cfg->more_addresses[i]);
    }
    f->n_more = cfg->n_more_addresses;
    pthread_mutex_init(&f->admit_lock, NULL);
    pthread_mutex_init(&f->done_lock, NULL);
    r = agent_tier_dram_region(dram, &f->dram_base, &f->dram_len);
    if (r) {
        snprintf(err, errlen, "fabric: the DRAM tier has no region");
        goto fail_locks;
    }
    if (cfg->hbm && agent_tier_hbm_region(cfg->hbm, &f->hbm_base, &f->hbm_len,
                                          &f->hbm_device)) {
        /* Not the HBM backend: nothing to register; HBM objects are
         * staged, as without a GPU. */
        LOG_WARN("the HBM tier %s has no region to register; HBM objects "
                 "are staged through DRAM",
                 agent_tier_name(cfg->hbm));
    } else {
        f->hbm = cfg->hbm;
    }
    r = uv_async_init(loop, &f->wake, on_wake);
    if (r) {
        snprintf(err, errlen, "fabric: %s", uv_strerror(r));
        goto fail_locks;
    }
    f->wake.data = f;
    snprintf(url, sizeof url, "tcp://%s:%u", cfg->address, cfg->port);
    r = mcos_bus_server_create(loop, url, on_request, f, &f->ctl, err, errlen);
    if (r) {
        goto fail_async;
    }
    if (want_verbs) {
        r = start_transport(f, AGENT_TRANSPORT_VERBS, cfg, why, sizeof why);
        if (r) {
            snprintf(f->verbs_note, sizeof f->verbs_note, "%s", why);
            if (!want_tcp) {
                snprintf(err, errlen, "fabric: %s%s",
                         strncmp(why, "verbs: ", 7) ? "verbs: " : "", why);
                goto fail_transports;
            }
        }
    } else {
        snprintf(f->verbs_note, sizeof f->verbs_note, "off by configuration");
    }
    if (want_tcp) {
        r = start_transport(f, AGENT_TRANSPORT_TCP, cfg, err, errlen);
        if (r) {
            goto fail_transports;
        }
    }
    snprintf(f->names, sizeof f->names, "%s%s%s",
             f->tr[AGENT_TRANSPORT_TCP] ? "tcp" : "",
             f->tr[AGENT_TRANSPORT_TCP] && f->tr[AGENT_TRANSPORT_VERBS] ? " "
                                                                        : "",
             f->tr[AGENT_TRANSPORT_VERBS] ? "verbs" : "");
    LOG_INFO("fabric on %s:%u (control), transports %s%s%s", cfg->address,
             cfg->port, f->names, *f->verbs_note ? "; verbs off: " : "",
             f->verbs_note);
    *out = f;
    return 0;

fail_transports:
    for (int k = 1; k < 3; k++) {
        agent_transport_destroy(f->tr[k]);
    }
    mcos_bus_server_close(f->ctl);
fail_async:
    /* f is freed in the close callback, on the next loop turn. */
    uv_close((uv_handle_t *)&f->wake, on_closed);
    return r ? r : -EINVAL;
fail_locks:
    pthread_mutex_destroy(&f->admit_lock);
    pthread_mutex_destroy(&f->done_lock);
    free(f);
    return r ? r : -EINVAL;
}

static void
on_closed(uv_handle_t *h)
{
    struct agent_fabric *f = h->data;

    pthread_mutex_destroy(&f->admit_lock);
    pthread_mutex_destroy(&f->done_lock);
    free(f);
}

void
agent_fabric_close(struct agent_fabric *f)
{
    if (!f) {
        return;
    }
    /* Disconnecting completes every one-sided op (with -ECANCELED), which
     * queues its transfer; those and the rest fail now, each with "the
     * agent is shutting down" and nothing logged. */
    f->closing = true;
    for (size_t i = 0; i < f->n_peers; i++) {
        peer_disconnect(f, f->peers[i]);
    }
    for (int k = 1; k < 3; k++) {
        agent_transport_destroy(f->tr[k]);
        f->tr[k] = NULL;
    }
    pthread_mutex_lock(&f->done_lock);
    f->done_q = NULL;
    pthread_mutex_unlock(&f->done_lock);
    while (f->all) {
        struct xfer *x = f->all;

        f->all = x->all_next;
        if (x->cb) {
            x->res.status = -ECANCELED;
            snprintf(x->res.error, sizeof x->res.error,
                     "the agent is shutting down");
            x->cb(&x->res, x->arg);
        }
        free(x);
    }
    while (f->hosted) {
        struct hosted *h = f->hosted;

        f->hosted = h->next;
        hosted_free(f, h);
    }
    for (size_t i = 0; i < f->n_peers; i++) {
        free(f->peers[i]);
    }
    free(f->admitted);
    mcos_bus_server_close(f->ctl);
    uv_close((uv_handle_t *)&f->wake, on_closed);
}

size_t
agent_fabric_endpoints(const struct agent_fabric *f, Mcos__Endpoint *eps,
                       size_t max)
{
    size_t n = 0;

    if (n < max) {
        mcos__endpoint__init(&eps[n]);
        eps[n].transport = MCOS__TRANSPORT__TRANSPORT_CONTROL;
        eps[n].address = (char *)f->address;
        eps[n].port = f->port;
        n++;
    }
    for (int k = 1; k < 3 && n < max; k++) {
        if (f->tr[k]) {
            mcos__endpoint__init(&eps[n]);
            eps[n].transport = k;
            eps[n].address = (char *)f->address;
            eps[n].port = agent_transport_port(f->tr[k]);
            n++;
        }
    }
    /* verbs: one endpoint per further NIC, same port, in config order
     * (the order of the region's keys). */
    for (unsigned i = 0;
         f->tr[AGENT_TRANSPORT_VERBS] && i < f->n_more && n < max; i++) {
        mcos__endpoint__init(&eps[n]);
        eps[n].transport = MCOS__TRANSPORT__TRANSPORT_VERBS;
        eps[n].address = (char *)f->more_addr[i];
        eps[n].port = agent_transport_port(f->tr[AGENT_TRANSPORT_VERBS]);
        n++;
    }
    return n;
}

size_t
agent_fabric_regions(const struct agent_fabric *f, Mcos__Region *rs,
                     size_t max)
{
    size_t n = 0;

    /* Per transport, the HBM region before the arena: an agent from
     * before Region.tier takes the last region of a transport as the
     * arena, so it keeps writing into the right one. */
    for (int k = 1; k < 3; k++) {
        if (f->tr[k] && f->hbm_reg[k].region.id && n < max) {
            region_to_wire(&f->hbm_reg[k].region, k, MCOS__TIER_KIND__TIER_HBM,
                           &rs[n++]);
        }
        if (f->tr[k] && n < max) {
            region_to_wire(&f->region[k], k, MCOS__TIER_KIND__TIER_DRAM,
                           &rs[n++]);
        }
    }
    return n;
}

size_t
agent_fabric_links(const struct agent_fabric *f, struct agent_fabric_link *out,
                   size_t max)
{
    size_t n = 0;

    for (size_t i = 0; i < f->n_peers && n < max; i++) {
        out[n++] = f->peers[i]->link;
    }
    return n;
}

void
agent_fabric_counters(const struct agent_fabric *f,
                      struct agent_fabric_counters *out)
{
    *out = f->counters;
}

void
agent_fabric_transport_stats(const struct agent_fabric *f,
                             struct agent_transport_stats *out)
{
    memset(out, 0, sizeof *out);
    for (int k = 1; k < 3; k++) {
        if (f->tr[k]) {
            struct agent_transport_stats s;

            agent_transport_stats(f->tr[k], &s);
            out->ops += s.ops;
            out->op_errors += s.op_errors;
            out->bytes_read += s.bytes_read;
            out->bytes_written += s.bytes_written;
            out->bytes_served += s.bytes_served;
            out->refused += s.refused;
            out->connects += s.connects;
            out->connect_errors += s.connect_errors;
            out->cpu_copy_bytes += s.cpu_copy_bytes;
            out->slice_retries += s.slice_retries;
            for (unsigned i = 0;
                 i < s.n_nics && out->n_nics < AGENT_TRANSPORT_MAX_NICS; i++) {
                out->nic[out->n_nics++] = s.nic[i];
            }
        }
    }
}

const char *
agent_fabric_transports(const struct agent_fabric *f, const char **verbs_note)
{
    if (verbs_note) {
        *verbs_note = f->verbs_note;
    }
    return f->names;
}
