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
add_tiers(struct rules *rs, const Mcos__Hello *h, const struct brain_policy *p)
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

static int
add_replicas(struct rules *rs, const struct brain_node *n)
{
    for (size_t i = 0; i < n->n_replicas; i++) {
        const struct brain_replica *v = &n->replicas[i];
        char sub[96];
        Mcos__ReplicaRule *rr;
        Mcos__Rule *r;

        snprintf(sub, sizeof sub, "%016" PRIx64 "/%s", v->object, v->peer);
        r = add_rule(rs, "replica/", sub);
        rr = own(rs, sizeof *rr);
        if (!r || !rr) {
            return -ENOMEM;
        }
        mcos__replica_rule__init(rr);
        rr->object_id = v->object;
        rr->peer = (char *)v->peer;
        rr->tier = v->tier;
        r->rule_case = MCOS__RULE__RULE_REPLICA;
        r->replica = rr;
    }
    return 0;
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
    struct rules rs = {0};
    int r;

    if (!n->hello) {
        snprintf(err, errlen, "node %s has not said hello", n->name);
        return -ENOENT;
    }
    r = add_tiers(&rs, n->hello, p);
    if (r == 0) {
        r = add_peers(&rs, c, n);
    }
    if (r == 0) {
        r = add_replicas(&rs, n);
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
