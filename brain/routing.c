#include "routing.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregate.h"
#include "brain.h"
#include "error.h"
#include "log.h"

MCOS_LOG_MODULE(route);

static struct mcos_ratelimit copy_rl = MCOS_RATELIMIT_INIT(5000, 5);

struct ranked {
    size_t i;    /* candidate */
    double cost; /* its cost, excluded ones last */
};

static int
ranked_cmp(const void *a, const void *b)
{
    const struct ranked *x = a, *y = b;

    return x->cost < y->cost ? -1 : x->cost > y->cost;
}

/* For each candidate, the longest prefix another candidate holds (up to
 * BRAIN_ROUTE_MAX_COPY blocks past its own) and who holds it: the least
 * loaded of the longest. */
static void
peer_matches(struct brain_routing *out, size_t *holder)
{
    for (size_t i = 0; i < out->n; i++) {
        struct brain_route_node *c = &out->cand[i];
        uint32_t best = 0;

        for (size_t j = 0; j < out->n; j++) {
            const struct brain_route_node *h = &out->cand[j];

            if (j == i || h->matched <= c->matched) {
                continue;
            }
            if (h->matched > best ||
                (h->matched == best && h->load < out->cand[holder[i]].load)) {
                best = h->matched;
                holder[i] = j;
            }
        }
        if (best > c->matched + BRAIN_ROUTE_MAX_COPY) {
            best = c->matched + BRAIN_ROUTE_MAX_COPY;
        }
        c->matched_peer = best;
    }
}

/* The chosen node won with blocks a peer holds: order them copied. */
static void
order_copies(struct brain *b, struct brain_routing *out, const size_t *holder,
             const uint64_t *chain)
{
    const struct brain_route_node *c = &out->cand[out->best];
    const struct brain_route_node *h;
    size_t from, to, ordered = 0;
    char err[200];

    if (b->weights.peer_fetch >= 1.0) {
        snprintf(out->replication, sizeof out->replication,
                 "none: copying from peers is off "
                 "(routing.peer_fetch_milli >= 1000)");
        return;
    }
    if (c->matched_peer <= c->matched) {
        snprintf(out->replication, sizeof out->replication,
                 "none: no peer holds more of this prefix than %s", c->name);
        return;
    }
    h = &out->cand[holder[out->best]];
    from = c->matched;
    to = c->matched_peer < out->chain_len ? c->matched_peer : out->chain_len;
    for (size_t k = from; k < to; k++) {
        if (brain_replica_add(&b->cluster, h->name, chain[k], c->name,
                              MCOS__TIER_KIND__TIER_DRAM, err,
                              sizeof err) == 0) {
            ordered++;
        } else {
            LOG_WARN_RL(&copy_rl,
                        "route: cannot order block %016" PRIx64
                        " copied from %s to %s: %s",
                        chain[k], h->name, c->name, err);
        }
    }
    out->copied = ordered;
    if (ordered) {
        brain_schedule(b);
    }
    snprintf(out->replication, sizeof out->replication,
             "ordered %zu of %zu block(s) copied from %s to %s (dram): "
             "cheaper than computing them",
             ordered, to - from, h->name, c->name);
}

void
brain_routing_learn(struct brain *b, const struct brain_routing *rt,
                    const uint64_t *chain, size_t n, uint64_t output_len)
{
    const struct brain_node *nd =
        brain_cluster_find(&b->cluster, rt->cand[rt->best].name);

    if (nd) {
        brain_graph_route(b->graph, nd->idx, chain, n, output_len,
                          mcos_clock_now(b->clock));
    }
}

void
brain_routing_free(struct brain_routing *r)
{
    free(r->cand);
    free(r->score);
    free(r->ranked);
    memset(r, 0, sizeof *r);
}

int
brain_routing_decide(struct brain *b, const char *ns_name,
                     const uint64_t *chain, size_t n, const char *rack,
                     struct brain_routing *out, char *err, size_t errlen)
{
    struct brain_node **who = NULL;
    struct brain_prefix_match *m = NULL;
    struct ranked *rk = NULL;
    size_t *holder = NULL;
    size_t cap = b->cluster.n + 1;
    uint64_t now = mcos_clock_now(b->clock);
    int ns, best, found, r = 0;

    memset(out, 0, sizeof *out);
    if (n == 0 || n > BRAIN_ROUTE_MAX_BLOCKS) {
        mcos_seterr(err, errlen,
                    "'blocks' must be a non-empty array of at "
                    "most %d block hashes",
                    BRAIN_ROUTE_MAX_BLOCKS);
        return -EINVAL;
    }
    ns = brain_kv_ns(b->kv, ns_name, false);
    if (ns == -EINVAL) {
        mcos_seterr(err, errlen,
                    "bad namespace '%.64s' (1-63 of "
                    "[A-Za-z0-9._/-])",
                    ns_name);
        return -EINVAL;
    }
    out->cand = calloc(cap, sizeof *out->cand);
    out->score = calloc(cap, sizeof *out->score);
    out->ranked = calloc(cap, sizeof *out->ranked);
    who = calloc(cap, sizeof *who);
    m = calloc(cap, sizeof *m);
    rk = calloc(cap, sizeof *rk);
    holder = calloc(cap, sizeof *holder);
    if (!out->cand || !out->score || !out->ranked || !who || !m || !rk ||
        !holder) {
        mcos_seterr(err, errlen, "out of memory");
        r = -ENOMEM;
        goto out;
    }
    /* Candidates: alive nodes only (suspect and failed ones are avoided). */
    for (size_t i = 0; i < b->cluster.n; i++) {
        struct brain_node *nd = b->cluster.nodes[i];

        if (nd->live != BRAIN_ALIVE || !nd->hello) {
            continue;
        }
        who[out->n] = nd;
        out->cand[out->n].name = nd->name;
        out->cand[out->n].rack =
            nd->hello->labels ? nd->hello->labels->rack : "";
        brain_routed_expire(&nd->routed, now, b->cfg.route_hold_ms * 1000);
        out->cand[out->n].load = (double)nd->queued_requests +
                                 (double)nd->running_requests +
                                 (double)brain_routed_requests(&nd->routed);
        out->cand[out->n].queued_blocks = (double)nd->queued_prefill_blocks +
                                          brain_routed_blocks(&nd->routed);
        out->n++;
    }
    if (out->n == 0) {
        mcos_seterr(err, errlen, "no live node to route to");
        r = -EAGAIN;
        goto out;
    }
    found =
        ns >= 0 ? brain_kv_match(b->kv, (uint16_t)ns, chain, n, m, cap) : 0;
    for (int k = 0; k < found && k < (int)cap; k++) {
        for (size_t i = 0; i < out->n; i++) {
            if (who[i]->idx == m[k].node) {
                out->cand[i].matched_hbm = m[k].matched[BRAIN_PREFIX_TIER_HBM];
                out->cand[i].matched_dram =
                    m[k].matched[BRAIN_PREFIX_TIER_DRAM];
                out->cand[i].matched = m[k].matched[BRAIN_PREFIX_TIER_NVME];
            }
        }
    }
    if (b->weights.peer_fetch < 1.0) {
        peer_matches(out, holder);
    }
    best = brain_route_decide(out->cand, out->n, n, rack, &b->weights,
                              out->score);
    out->best = (size_t)best;
    out->chain_len = n;
    order_copies(b, out, holder, chain);
    if (brain_routed_add(&who[best]->routed, now, out->score[best].prefill)) {
        /* The decision stands; only its weight on the next ones is lost. */
        LOG_WARN("out of memory counting a route to %s", who[best]->name);
    }
    b->routes++;
    for (size_t i = 0; i < out->n; i++) {
        rk[i].i = i;
        rk[i].cost = out->score[i].over_bound ? 1e300 : out->score[i].cost;
    }
    qsort(rk, out->n, sizeof *rk, ranked_cmp);
    for (size_t i = 0; i < out->n; i++) {
        out->ranked[i] = rk[i].i;
    }
    {
        const struct brain_route_node *c = &out->cand[best];
        const struct brain_route_score *s = &out->score[best];

        char copy[64] = "";

        if (out->copied) {
            snprintf(copy, sizeof copy, ", %zu to copy from %s", out->copied,
                     out->cand[holder[best]].name);
        }
        snprintf(out->explain, sizeof out->explain,
                 "%s: holds %u of %zu blocks (%u in hbm, %u more in dram, "
                 "%u more on nvme)%s, %.0f to prefill, load %.0f request(s) "
                 "and %.0f queued block(s); cost %.2f, lowest of %zu live "
                 "node(s)%s",
                 c->name, c->matched, n, c->matched_hbm,
                 c->matched_dram - c->matched_hbm,
                 c->matched - c->matched_dram, copy, s->prefill, c->load,
                 c->queued_blocks, s->cost, out->n,
                 s->over_bound ? " (every node is over the load bound)" : "");
    }
out:
    free(who);
    free(m);
    free(rk);
    free(holder);
    if (r) {
        brain_routing_free(out);
    }
    return r;
}
