#include "compile.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

/* The fastest-to-slowest order the demotion chain follows.  SRAM is a
 * residency hint over HBM, not a place objects are demoted from. */
static const int chain_order[] = {
    MCOS__TIER_KIND__TIER_HBM,
    MCOS__TIER_KIND__TIER_DRAM,
    MCOS__TIER_KIND__TIER_NVME,
};

/* Storage for the rules of one table while it is built. */
struct rules {
    Mcos__Rule **v;   /* rule pointers, handed to mcos_table_build */
    size_t n;         /* used */
    size_t cap;       /* allocated */
    void **owned;     /* everything to free afterwards */
    size_t n_owned;   /* used */
    size_t cap_owned; /* allocated */
};

static void *
own(struct rules *rs, size_t size)
{
    void *p;

    if (rs->n_owned == rs->cap_owned) {
        size_t cap = rs->cap_owned ? rs->cap_owned * 2 : 32;
        void **grown = realloc(rs->owned, cap * sizeof *grown);

        if (!grown) {
            return NULL;
        }
        rs->owned = grown;
        rs->cap_owned = cap;
    }
    p = calloc(1, size);
    if (p) {
        rs->owned[rs->n_owned++] = p;
    }
    return p;
}

/* prefix + subject, e.g. "tier/" + "dram". */
static char *
own_key(struct rules *rs, const char *prefix, const char *subject)
{
    size_t lp = strlen(prefix), ls = strlen(subject);
    char *s = own(rs, lp + ls + 1);

    if (s) {
        memcpy(s, prefix, lp);
        memcpy(s + lp, subject, ls + 1);
    }
    return s;
}

static Mcos__Rule *
add_rule(struct rules *rs, const char *prefix, const char *subject)
{
    Mcos__Rule *r;

    if (rs->n == rs->cap) {
        size_t cap = rs->cap ? rs->cap * 2 : 16;
        Mcos__Rule **grown = realloc(rs->v, cap * sizeof *grown);

        if (!grown) {
            return NULL;
        }
        rs->v = grown;
        rs->cap = cap;
    }
    r = own(rs, sizeof *r);
    if (!r) {
        return NULL;
    }
    mcos__rule__init(r);
    r->key = own_key(rs, prefix, subject);
    if (!r->key) {
        return NULL;
    }
    rs->v[rs->n++] = r;
    return r;
}

static void
rules_free(struct rules *rs)
{
    for (size_t i = 0; i < rs->n_owned; i++) {
        free(rs->owned[i]);
    }
    free(rs->owned);
    free(rs->v);
}

static bool
has_tier(const Mcos__Hello *h, int kind)
{
    for (size_t i = 0; i < h->n_tiers; i++) {
        if ((int)h->tiers[i]->kind == kind && h->tiers[i]->available) {
            return true;
        }
    }
    return false;
}

static int
add_tiers(struct rules *rs, const Mcos__Hello *h, const struct brain_policy *p,
          const struct brain_node_decisions *dec)
{
    int prev = 0;

    for (size_t i = 0; i < h->n_tiers; i++) {
        const Mcos__TierInfo *ti = h->tiers[i];
        Mcos__TierRule *tr;
        Mcos__Rule *r;

        if (!ti->available) {
            continue;
        }
        r = add_rule(rs, "tier/", mcos_tier_name(ti->kind));
        tr = own(rs, sizeof *tr);
        if (!r || !tr) {
            return -ENOMEM;
        }
        mcos__tier_rule__init(tr);
        tr->tier = ti->kind;
        tr->high_watermark_pct = p->high_watermark_pct;
        tr->low_watermark_pct = p->low_watermark_pct;
        tr->admit_min_hotness_milli = p->admit_min_hotness_milli;
        if (dec && ti->kind < BRAIN_N_TIERS && dec->admit_set[ti->kind]) {
            tr->admit_min_hotness_milli = dec->admit_milli[ti->kind];
        }
        r->rule_case = MCOS__RULE__RULE_TIER;
        r->tier = tr;
    }
    for (size_t i = 0; i < sizeof chain_order / sizeof chain_order[0]; i++) {
        int kind = chain_order[i];
        Mcos__DemotionRule *d;
        Mcos__Rule *r;

        if (!has_tier(h, kind)) {
            continue;
        }
        if (prev) {
            /* Link the previous tier to this one. */
            for (size_t k = 0; k < rs->n; k++) {
                if (rs->v[k]->rule_case == MCOS__RULE__RULE_DEMOTION &&
                    (int)rs->v[k]->demotion->from == prev) {
                    rs->v[k]->demotion->to = kind;
                }
            }
        }
        r = add_rule(rs, "demotion/", mcos_tier_name(kind));
        d = own(rs, sizeof *d);
        if (!r || !d) {
            return -ENOMEM;
        }
        mcos__demotion_rule__init(d);
        d->from = kind;
        d->to = 0;
        r->rule_case = MCOS__RULE__RULE_DEMOTION;
        r->demotion = d;
        prev = kind;
    }
    return 0;
}

/* A node with a data transport (TCP or verbs), not only control. */
static bool
has_fabric(const Mcos__Hello *h)
{
    for (size_t i = 0; h && i < h->n_endpoints; i++) {
        if (h->endpoints[i]->transport == MCOS__TRANSPORT__TRANSPORT_TCP ||
            h->endpoints[i]->transport == MCOS__TRANSPORT__TRANSPORT_VERBS) {
            return true;
        }
    }
    return false;
}

/*
 * policy.demote_to_peers: the end of the node's demotion chain (its
 * slowest tier) demotes into peers' memory (TIER_REMOTE) when the node
 * and at least one peer it is told of have a data transport, instead of
 * ending there.
 */
static void
chain_to_peers(struct rules *rs, const struct brain_cluster *c,
               const struct brain_node *self)
{
    bool peer = false;

    if (!has_fabric(self->hello)) {
        return;
    }
    for (size_t i = 0; i < c->n && !peer; i++) {
        const struct brain_node *n = c->nodes[i];

        peer = n != self && n->live != BRAIN_FAILED && has_fabric(n->hello);
    }
    for (size_t k = 0; peer && k < rs->n; k++) {
        if (rs->v[k]->rule_case == MCOS__RULE__RULE_DEMOTION &&
            rs->v[k]->demotion->to == 0) {
            rs->v[k]->demotion->to = MCOS__TIER_KIND__TIER_REMOTE;
        }
    }
}

static int
add_peers(struct rules *rs, const struct brain_cluster *c,
          const struct brain_node *self)
{
    for (size_t i = 0; i < c->n; i++) {
        const struct brain_node *n = c->nodes[i];
        Mcos__PeerRule *pr;
        Mcos__Rule *r;

        if (n == self || n->live == BRAIN_FAILED || !n->hello) {
            continue;
        }
        r = add_rule(rs, "peer/", n->name);
        pr = own(rs, sizeof *pr);
        if (!r || !pr) {
            return -ENOMEM;
        }
        mcos__peer_rule__init(pr);
        /* The hello outlives the build, which copies what it needs. */
        pr->node = (char *)n->name;
        pr->labels = n->hello->labels;
        pr->n_endpoints = n->hello->n_endpoints;
        pr->endpoints = n->hello->endpoints;
        pr->boot_id = n->boot_id.v;
        pr->n_regions = n->hello->n_regions;
        pr->regions = n->hello->regions;
        r->rule_case = MCOS__RULE__RULE_PEER;
        r->peer = pr;
    }
    return 0;
}

static Mcos__Rule *
add_replica(struct rules *rs, uint64_t object, const char *peer, int tier)
{
    char sub[96];
    Mcos__ReplicaRule *rr;
    Mcos__Rule *r;

    snprintf(sub, sizeof sub, "%016" PRIx64 "/%s", object, peer);
    r = add_rule(rs, "replica/", sub);
    rr = own(rs, sizeof *rr);
    if (!r || !rr) {
        return NULL;
    }
    mcos__replica_rule__init(rr);
    rr->object_id = object;
    rr->peer = (char *)peer;
    rr->tier = tier;
    r->rule_case = MCOS__RULE__RULE_REPLICA;
    r->replica = rr;
    return r;
}

static bool
operator_has(const struct brain_node *n, uint64_t object, const char *peer)
{
    for (size_t i = 0; i < n->n_replicas; i++) {
        if (n->replicas[i].object == object &&
            !strcmp(n->replicas[i].peer, peer)) {
            return true;
        }
    }
    return false;
}

static int
add_replicas(struct rules *rs, const struct brain_node *n,
             const struct brain_node_decisions *d)
{
    for (size_t i = 0; i < n->n_replicas; i++) {
        const struct brain_replica *v = &n->replicas[i];

        if (!add_replica(rs, v->object, v->peer, v->tier)) {
            return -ENOMEM;
        }
    }
    for (size_t i = 0; d && i < d->n_replicas; i++) {
        const struct brain_replica *v = &d->replicas[i];

        if (!operator_has(n, v->object, v->peer) &&
            !add_replica(rs, v->object, v->peer, v->tier)) {
            return -ENOMEM;
        }
    }
    return 0;
}

/* The residency table and the node's reuse classes. */
static int
add_residency(struct rules *rs, const struct brain_node_decisions *d)
{
    enum { N = MCOS_RESIDENCY_CLASSES * MCOS_RESIDENCY_AGES };
    char sub[24];

    if (d->residency) {
        Mcos__ResidencyRule *rr = own(rs, sizeof *rr);
        uint32_t *scores = own(rs, N * sizeof *scores);
        Mcos__Rule *r = add_rule(rs, "residency", "");

        if (!r || !rr || !scores) {
            return -ENOMEM;
        }
        mcos__residency_rule__init(rr);
        rr->age_unit_ms = (uint32_t)(d->residency->age_unit_ns / 1000000);
        for (int i = 0; i < N; i++) {
            scores[i] =
                d->residency
                    ->score[i / MCOS_RESIDENCY_AGES][i % MCOS_RESIDENCY_AGES];
        }
        rr->scores = scores;
        rr->n_scores = N;
        rr->default_class = d->default_class;
        r->rule_case = MCOS__RULE__RULE_RESIDENCY;
        r->residency = rr;
    }
    for (size_t i = 0; i < d->n_reuse; i++) {
        Mcos__ReuseRule *ur = own(rs, sizeof *ur);
        Mcos__Rule *r;

        snprintf(sub, sizeof sub, "%016" PRIx64, d->reuse[i].object);
        r = add_rule(rs, "reuse/", sub);
        if (!r || !ur) {
            return -ENOMEM;
        }
        mcos__reuse_rule__init(ur);
        ur->object_id = d->reuse[i].object;
        ur->reuse_class = d->reuse[i].cls;
        r->rule_case = MCOS__RULE__RULE_REUSE;
        r->reuse = ur;
    }
    return 0;
}

static int
add_decided(struct rules *rs, const struct brain_node_decisions *d)
{
    char sub[24];

    for (size_t i = 0; d && i < d->n_drops; i++) {
        Mcos__DropRule *dr = own(rs, sizeof *dr);
        Mcos__Rule *r;

        snprintf(sub, sizeof sub, "%016" PRIx64, d->drops[i]);
        r = add_rule(rs, "drop/", sub);
        if (!r || !dr) {
            return -ENOMEM;
        }
        mcos__drop_rule__init(dr);
        dr->object_id = d->drops[i];
        r->rule_case = MCOS__RULE__RULE_DROP;
        r->drop = dr;
    }
    for (size_t i = 0; d && i < d->n_prefetch; i++) {
        const struct brain_prefetch *p = &d->prefetch[i];
        Mcos__PrefetchRule *pr = own(rs, sizeof *pr);
        Mcos__Rule *r;

        snprintf(sub, sizeof sub, "%016" PRIx64, p->trigger);
        r = add_rule(rs, "prefetch/", sub);
        if (!r || !pr) {
            return -ENOMEM;
        }
        mcos__prefetch_rule__init(pr);
        pr->trigger = p->trigger;
        /* The build copies what it needs. */
        pr->objects = (uint64_t *)p->objects;
        pr->n_objects = p->n_objects;
        pr->tier = p->tier;
        pr->deadline_ms = p->deadline_ms;
        r->rule_case = MCOS__RULE__RULE_PREFETCH;
        r->prefetch = pr;
    }
    return d ? add_residency(rs, d) : 0;
}

static int
add_param(struct rules *rs, const char *name, uint64_t value)
{
    Mcos__Rule *r = add_rule(rs, "param/", name);
    Mcos__ParamRule *pr = own(rs, sizeof *pr);

    if (!r || !pr) {
        return -ENOMEM;
    }
    mcos__param_rule__init(pr);
    pr->name = (char *)name;
    pr->value = value;
    r->rule_case = MCOS__RULE__RULE_PARAM;
    r->param = pr;
    return 0;
}

int
brain_compile_node(const struct brain_cluster *c, const struct brain_node *n,
                   const struct brain_policy *p, uint64_t gen,
                   struct mcos_table **out, char *err, size_t errlen)
{
    return brain_compile_node_decided(c, n, p, NULL, gen, out, err, errlen);
}

int
brain_compile_node_decided(const struct brain_cluster *c,
                           const struct brain_node *n,
                           const struct brain_policy *p,
                           const struct brain_node_decisions *d, uint64_t gen,
                           struct mcos_table **out, char *err, size_t errlen)
{
    struct rules rs = {0};
    int r;

    if (!n->hello) {
        snprintf(err, errlen, "node %s has not said hello", n->name);
        return -ENOENT;
    }
    r = add_tiers(&rs, n->hello, p, d);
    if (r == 0) {
        r = add_peers(&rs, c, n);
    }
    if (r == 0 && p->demote_to_peers) {
        chain_to_peers(&rs, c, n);
    }
    if (r == 0) {
        r = add_replicas(&rs, n, d);
    }
    if (r == 0) {
        r = add_decided(&rs, d);
    }
    if (r == 0) {
        r = add_param(&rs, "report_interval_ms", p->report_interval_ms);
    }
    if (r == 0) {
        r = mcos_table_build(n->name, gen, (const Mcos__Rule *const *)rs.v,
                             rs.n, out, err, errlen);
    }
    rules_free(&rs);
    return r;
}
