#include "aggregate.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "config.h"
#include "log.h"
#include "wire.h"

MCOS_LOG_MODULE(aggregate);

/* Labels are shown in tables and metrics: printable ASCII, no quotes. */
static bool
label_ok(const char *s)
{
    size_t len = strlen(s);

    if (len > BRAIN_MAX_LABEL) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] <= ' ' || s[i] > '~' || s[i] == '"' || s[i] == '\\') {
            return false;
        }
    }
    return true;
}

static int
check_endpoint(const Mcos__Endpoint *ep, size_t i, char *err, size_t errlen)
{
    if (ep->transport != MCOS__TRANSPORT__TRANSPORT_TCP &&
        ep->transport != MCOS__TRANSPORT__TRANSPORT_VERBS &&
        ep->transport != MCOS__TRANSPORT__TRANSPORT_CONTROL) {
        mcos_seterr(err, errlen, "endpoint %zu: unknown transport %d", i,
                    ep->transport);
        return -EINVAL;
    }
    if (!*ep->address || strlen(ep->address) > 255 || !label_ok(ep->address)) {
        mcos_seterr(err, errlen, "endpoint %zu: bad address", i);
        return -EINVAL;
    }
    if (ep->port == 0 || ep->port > 65535) {
        mcos_seterr(err, errlen, "endpoint %zu: port %u out of range 1-65535",
                    i, ep->port);
        return -EINVAL;
    }
    return 0;
}

/* A generation an agent says it runs (`what` says in which message):
 * -EINVAL above BRAIN_MAX_GEN, which no brain compiles. */
static int
gen_check(const char *what, const char *node, uint64_t gen, char *err,
          size_t errlen)
{
    if (gen <= BRAIN_MAX_GEN) {
        return 0;
    }
    mcos_seterr(err, errlen,
                "%snode %s: applied_gen %" PRIu64
                " is beyond the largest generation, %" PRIu64,
                what, node, gen, BRAIN_MAX_GEN);
    return -EINVAL;
}

int
brain_hello_check(const Mcos__Hello *h, char *err, size_t errlen)
{
    bool seen[BRAIN_N_TIERS] = {false};

    if (!mcos_node_name_valid(h->node)) {
        mcos_seterr(err, errlen,
                    "bad node name '%.64s' (1-63 of [A-Za-z0-9._-], "
                    "starting with a letter or digit)",
                    h->node);
        return -EINVAL;
    }
    if (h->boot_id == 0) {
        mcos_seterr(err, errlen, "node %s: boot_id must not be 0", h->node);
        return -EINVAL;
    }
    if (gen_check("", h->node, h->applied_gen, err, errlen)) {
        return -EINVAL;
    }
    if (h->labels &&
        (!label_ok(h->labels->rack) || !label_ok(h->labels->zone) ||
         !label_ok(h->labels->host))) {
        mcos_seterr(err, errlen,
                    "node %s: labels must be at most %d printable "
                    "characters without spaces or quotes",
                    h->node, BRAIN_MAX_LABEL);
        return -EINVAL;
    }
    if (h->n_tiers > BRAIN_MAX_TIERS || h->n_gpus > BRAIN_MAX_GPUS ||
        h->n_nics > BRAIN_MAX_NICS || h->n_endpoints > BRAIN_MAX_ENDPOINTS) {
        mcos_seterr(err, errlen,
                    "node %s: too many tiers, GPUs, NICs or "
                    "endpoints",
                    h->node);
        return -EINVAL;
    }
    for (size_t i = 0; i < h->n_tiers; i++) {
        int k = h->tiers[i]->kind;

        if (k < MCOS__TIER_KIND__TIER_SRAM || k > MCOS__TIER_KIND__TIER_NVME) {
            mcos_seterr(err, errlen, "node %s: tier %zu has unknown kind %d",
                        h->node, i, k);
            return -EINVAL;
        }
        if (seen[k]) {
            mcos_seterr(err, errlen, "node %s: tier %s listed twice", h->node,
                        mcos_tier_name(k));
            return -EINVAL;
        }
        seen[k] = true;
    }
    for (size_t i = 0; i < h->n_endpoints; i++) {
        int r = check_endpoint(h->endpoints[i], i, err, errlen);

        if (r) {
            return r;
        }
    }
    if (h->n_regions > BRAIN_MAX_ENDPOINTS) {
        mcos_seterr(err, errlen, "node %s: %zu regions (at most %d)", h->node,
                    h->n_regions, BRAIN_MAX_ENDPOINTS);
        return -EINVAL;
    }
    for (size_t i = 0; i < h->n_regions; i++) {
        const Mcos__Region *g = h->regions[i];

        if ((g->transport != MCOS__TRANSPORT__TRANSPORT_TCP &&
             g->transport != MCOS__TRANSPORT__TRANSPORT_VERBS) ||
            g->id == 0 || g->length == 0) {
            mcos_seterr(err, errlen,
                        "region %zu: needs a tcp or verbs transport, an id "
                        "and a length",
                        i);
            return -EINVAL;
        }
        if (!mcos_region_tier_ok(g->tier)) {
            mcos_seterr(err, errlen,
                        "region %zu: covers tier %s; regions cover dram or "
                        "hbm",
                        i, mcos_tier_name(g->tier));
            return -EINVAL;
        }
    }
    if (*h->http_url) {
        static const char *const http[] = {"http", NULL};
        char why[300];

        if (strlen(h->http_url) > 255 ||
            mcos_check_url("http_url", h->http_url, http, why, sizeof why)) {
            mcos_seterr(err, errlen, "node %s: %s", h->node, why);
            return -EINVAL;
        }
    }
    if (strlen(h->version) > 64 || strlen(h->gpu_note) > 512) {
        mcos_seterr(err, errlen, "node %s: version or gpu_note too long",
                    h->node);
        return -EINVAL;
    }
    return 0;
}

/* Whether two hellos differ in what tables are compiled from: everything
 * but the applied generation and boot id, which change on every restart
 * without changing the node's shape. */
static bool
topology_differs(const Mcos__Hello *a, const Mcos__Hello *b)
{
    Mcos__Hello ca = *a, cb = *b;
    size_t la, lb;
    uint8_t *ba, *bb;
    bool differs = true;

    ca.applied_gen = cb.applied_gen = 0;
    ca.boot_id = cb.boot_id = 0;
    la = mcos__hello__get_packed_size(&ca);
    lb = mcos__hello__get_packed_size(&cb);
    if (la != lb) {
        return true;
    }
    ba = malloc(la + 1);
    bb = malloc(lb + 1);
    if (ba && bb) {
        mcos__hello__pack(&ca, ba);
        mcos__hello__pack(&cb, bb);
        differs = memcmp(ba, bb, la) != 0;
    }
    free(ba);
    free(bb);
    return differs;
}

int
brain_aggregate_hello(struct brain_cluster *c, Mcos__Hello **hellop,
                      uint64_t now_us, struct brain_agg_result *res, char *err,
                      size_t errlen)
{
    Mcos__Hello *h = *hellop;
    struct brain_node *n;
    int r;

    memset(res, 0, sizeof *res);
    r = brain_hello_check(h, err, errlen);
    if (r) {
        return r;
    }
    n = brain_cluster_find(c, h->node);
    if (!n) {
        r = brain_cluster_add(c, h->node, &n);
        if (r) {
            mcos_seterr(err, errlen, "cannot add node %s: %s", h->node,
                        strerror(-r));
            return r;
        }
        res->topology_changed = true;
        LOG_INFO("node %s joined (boot %016" PRIx64 ", gen %" PRIu64 ")",
                 h->node, h->boot_id, h->applied_gen);
    } else if (n->boot_id.v != h->boot_id) {
        res->rejoined = true;
        res->topology_changed = true;
        LOG_INFO("node %s rejoined with a new boot %016" PRIx64
                 " (was %016" PRIx64 ", %s)",
                 h->node, h->boot_id, n->boot_id.v,
                 brain_liveness_name(n->live));
        brain_node_reset(n);
    } else if (!n->hello || topology_differs(n->hello, h)) {
        res->topology_changed = true;
    }
    if (n->live == BRAIN_FAILED) {
        res->revived = true;
        res->topology_changed = true;
    }
    if (n->hello) {
        mcos__hello__free_unpacked(n->hello, NULL);
    }
    n->hello = h;
    *hellop = NULL;
    n->boot_id = mcos_boot_id(h->boot_id);
    n->joined_us = now_us;
    n->last_heard_us = now_us;
    n->live = BRAIN_ALIVE;
    for (size_t i = 0; i < h->n_tiers; i++) {
        n->tiers[h->tiers[i]->kind].capacity = h->tiers[i]->capacity_bytes;
    }
    brain_node_ack(n, h->applied_gen);
    res->node = n;
    return 0;
}

/* Finds the node a message is from and checks it is the boot we know. */
static int
lookup(struct brain_cluster *c, const char *name, uint64_t boot_id,
       const char *what, struct brain_node **out, char *err, size_t errlen)
{
    struct brain_node *n;

    if (!mcos_node_name_valid(name)) {
        mcos_seterr(err, errlen, "%s: bad node name '%.64s'", what, name);
        return -EINVAL;
    }
    n = brain_cluster_find(c, name);
    if (!n || !n->hello) {
        mcos_seterr(err, errlen, "%s from unknown node %s: say hello first",
                    what, name);
        return -ENOENT;
    }
    if (n->boot_id.v != boot_id) {
        mcos_seterr(err, errlen,
                    "%s from node %s carries boot %016" PRIx64
                    ", not the current %016" PRIx64 ": say hello again",
                    what, name, boot_id, n->boot_id.v);
        return -ENOENT;
    }
    *out = n;
    return 0;
}

static void
heard(struct brain_node *n, uint64_t now_us, struct brain_agg_result *res)
{
    if (n->live == BRAIN_FAILED) {
        res->revived = true;
        res->topology_changed = true;
        LOG_INFO("node %s is back", n->name);
    } else if (n->live == BRAIN_SUSPECT) {
        LOG_INFO("node %s is alive again", n->name);
    }
    n->live = BRAIN_ALIVE;
    n->last_heard_us = now_us;
}

int
brain_aggregate_report(struct brain_cluster *c, const Mcos__Report *rep,
                       uint64_t now_us, struct brain_agg_result *res,
                       char *err, size_t errlen)
{
    struct brain_node *n;
    int r;

    memset(res, 0, sizeof *res);
    r = lookup(c, rep->node, rep->boot_id, "report", &n, err, errlen);
    if (r) {
        return r;
    }
    if (rep->seq <= n->last_seq) {
        mcos_seterr(err, errlen,
                    "report %" PRIu64 " from node %s is not newer "
                    "than %" PRIu64,
                    rep->seq, rep->node, n->last_seq);
        return -ESTALE;
    }
    if (rep->n_events > BRAIN_MAX_EVENTS || rep->n_tiers > BRAIN_MAX_TIERS ||
        rep->n_links > BRAIN_MAX_LINKS) {
        mcos_seterr(err, errlen,
                    "report from node %s: too many events, tiers or "
                    "links",
                    rep->node);
        return -EINVAL;
    }
    for (size_t i = 0; i < rep->n_tiers; i++) {
        int k = rep->tiers[i]->kind;

        if (k < MCOS__TIER_KIND__TIER_SRAM || k > MCOS__TIER_KIND__TIER_NVME) {
            mcos_seterr(err, errlen, "report from node %s: unknown tier %d",
                        rep->node, k);
            return -EINVAL;
        }
    }
    for (size_t i = 0; i < rep->n_events; i++) {
        int k = rep->events[i]->kind;

        if (k < MCOS__EVENT_KIND__EVENT_STORED ||
            k > MCOS__EVENT_KIND__EVENT_PREFETCH_WASTED) {
            mcos_seterr(err, errlen,
                        "report from node %s: event %zu has unknown "
                        "kind %d",
                        rep->node, i, k);
            return -EINVAL;
        }
    }

    if (gen_check("report from ", rep->node, rep->applied_gen, err, errlen)) {
        return -EINVAL;
    }

    /* Valid: fold it in. */
    heard(n, now_us, res);
    n->last_seq = rep->seq;
    n->reports++;
    n->stale = rep->stale;
    n->events += rep->n_events;
    n->events_dropped += rep->events_dropped;
    for (size_t i = 0; i < rep->n_tiers; i++) {
        struct brain_tier_usage *u = &n->tiers[rep->tiers[i]->kind];

        u->used = rep->tiers[i]->used_bytes;
        u->capacity = rep->tiers[i]->capacity_bytes;
        u->objects = rep->tiers[i]->objects;
    }
    if (rep->load) {
        n->queued_requests = rep->load->queued_requests;
        n->running_requests = rep->load->running_requests;
        n->cpu_load_milli = rep->load->cpu_load_milli;
        n->queued_prefill_blocks = rep->load->queued_prefill_blocks;
        n->engines = rep->load->engines;
    }
    brain_node_ack(n, rep->applied_gen);
    res->node = n;
    for (size_t i = 0; i < rep->n_events; i++) {
        if (rep->events[i]->kind == MCOS__EVENT_KIND__EVENT_STORED &&
            brain_replica_done(c, n->name, rep->events[i]->object_id)) {
            res->replicas_done = true;
        }
    }
    return 0;
}

bool
brain_replica_done(struct brain_cluster *c, const char *peer, uint64_t object)
{
    bool any = false;

    for (size_t i = 0; i < c->n; i++) {
        struct brain_node *src = c->nodes[i];
        size_t j = 0;

        for (size_t k = 0; k < src->n_replicas; k++) {
            const struct brain_replica *r = &src->replicas[k];

            if (r->object == object && !strcmp(r->peer, peer)) {
                any = true;
                src->replicas_ver++;
                continue;
            }
            src->replicas[j++] = *r;
        }
        src->n_replicas = j;
    }
    return any;
}

int
brain_replica_add(struct brain_cluster *c, const char *node, uint64_t object,
                  const char *peer, int tier, char *err, size_t errlen)
{
    struct brain_node *n = brain_cluster_find(c, node);
    struct brain_node *p = brain_cluster_find(c, peer);
    struct brain_replica *v;

    if (!n || !n->hello) {
        mcos_seterr(err, errlen, "unknown node '%s'", node);
        return -ENOENT;
    }
    if (!p || !p->hello) {
        mcos_seterr(err, errlen, "unknown peer '%s'", peer);
        return -ENOENT;
    }
    if (n == p) {
        mcos_seterr(err, errlen, "a node cannot replicate to itself");
        return -EINVAL;
    }
    if (object == 0) {
        mcos_seterr(err, errlen, "object id must not be 0");
        return -EINVAL;
    }
    if (tier != MCOS__TIER_KIND__TIER_HBM &&
        tier != MCOS__TIER_KIND__TIER_DRAM &&
        tier != MCOS__TIER_KIND__TIER_NVME) {
        mcos_seterr(err, errlen, "a replica goes to hbm, dram or nvme");
        return -EINVAL;
    }
    for (size_t i = 0; i < n->n_replicas; i++) {
        if (n->replicas[i].object == object &&
            !strcmp(n->replicas[i].peer, peer)) {
            n->replicas_ver += n->replicas[i].tier != tier;
            n->replicas[i].tier = tier;
            return 0;
        }
    }
    if (n->n_replicas >= BRAIN_MAX_REPLICAS) {
        mcos_seterr(err, errlen, "node %s has %d replication tasks open", node,
                    BRAIN_MAX_REPLICAS);
        return -ENOSPC;
    }
    v = realloc(n->replicas, (n->n_replicas + 1) * sizeof *v);
    if (!v) {
        return -ENOMEM;
    }
    n->replicas = v;
    v = &n->replicas[n->n_replicas++];
    memset(v, 0, sizeof *v);
    v->object = object;
    snprintf(v->peer, sizeof v->peer, "%s", peer);
    v->tier = tier;
    n->replicas_ver++;
    return 0;
}

int
brain_aggregate_watch(struct brain_cluster *c, const Mcos__Watch *w,
                      uint64_t now_us, struct brain_agg_result *res, char *err,
                      size_t errlen)
{
    struct brain_node *n;
    int r;

    memset(res, 0, sizeof *res);
    r = lookup(c, w->node, w->boot_id, "watch", &n, err, errlen);
    if (r) {
        return r;
    }
    if (gen_check("watch from ", w->node, w->applied_gen, err, errlen)) {
        return -EINVAL;
    }
    heard(n, now_us, res);
    brain_node_ack(n, w->applied_gen);
    res->node = n;
    return 0;
}

/* Moves `n` to `next` from a timer or a lease; a failed node holds no
 * watch.  True if it failed (the peers in tables change). */
static bool
set_live(struct brain_node *n, enum brain_liveness next)
{
    n->live = next;
    if (next != BRAIN_FAILED) {
        return false;
    }
    brain_node_drop_watch(n);
    return true;
}

bool
brain_aggregate_tick(struct brain_cluster *c, uint64_t now_us,
                     const struct brain_liveness_cfg *cfg)
{
    bool changed = false;

    for (size_t i = 0; i < c->n; i++) {
        struct brain_node *n = c->nodes[i];
        enum brain_liveness next = brain_liveness_next(
            n->live, BRAIN_EV_TICK, n->last_heard_us, now_us, cfg);

        if (next == n->live) {
            continue;
        }
        LOG_INFO("node %s: %s -> %s after %" PRIu64 " ms of silence", n->name,
                 brain_liveness_name(n->live), brain_liveness_name(next),
                 (now_us - n->last_heard_us) / 1000);
        changed |= set_live(n, next);
    }
    return changed;
}

bool
brain_aggregate_lease_lost(struct brain_node *n)
{
    enum brain_liveness next =
        brain_liveness_next(n->live, BRAIN_EV_LEASE_LOST, 0, 0, NULL);

    if (next == n->live) {
        return false;
    }
    LOG_INFO("node %s: %s -> %s: its etcd membership lease ended", n->name,
             brain_liveness_name(n->live), brain_liveness_name(next));
    set_live(n, next);
    return true;
}
