#include "routing.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "brain.h"
#include "error.h"

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
    size_t cap = b->cluster.n + 1;
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
    if (!out->cand || !out->score || !out->ranked || !who || !m || !rk) {
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
        out->cand[out->n].load = (double)nd->queued_requests +
                                 (double)nd->running_requests +
                                 (double)nd->routed;
        out->cand[out->n].queued_blocks =
            (double)nd->queued_prefill_blocks + nd->routed_blocks;
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
    best = brain_route_decide(out->cand, out->n, n, rack, &b->weights,
                              out->score);
    out->best = (size_t)best;
    out->chain_len = n;
    who[best]->routed++;
    who[best]->routed_blocks += out->score[best].prefill;
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

        snprintf(out->explain, sizeof out->explain,
                 "%s: holds %u of %zu blocks (%u in hbm, %u more in dram, "
                 "%u more on nvme), %.0f to prefill, load %.0f request(s) "
                 "and %.0f queued block(s); cost %.2f, lowest of %zu live "
                 "node(s)%s",
                 c->name, c->matched, n, c->matched_hbm,
                 c->matched_dram - c->matched_hbm,
                 c->matched - c->matched_dram, s->prefill, c->load,
                 c->queued_blocks, s->cost, out->n,
                 s->over_bound ? " (every node is over the load bound)" : "");
    }
out:
    free(who);
    free(m);
    free(rk);
    if (r) {
        brain_routing_free(out);
    }
    return r;
}
