/*
 * en_placement (decide): admission per node and tier, from how full the
 * tier is.  Inputs: en_usage (reported usage), en_policy (watermarks and
 * the base threshold), en_members (which tiers a node has).
 *
 * A tier at or below the low watermark admits what the policy admits
 * (admit_min_hotness).  Above it the bar rises linearly, reaching
 * base + admit_pressure at the high watermark, so a filling tier keeps
 * its room for hotter objects and colder ones go down the demotion chain
 * at once.  The rise is taken in quarter steps, so the small changes of
 * every report do not recompile tables.  The last tier of a node's chain
 * always admits at the base: it is where everything else lands.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "en.h"

struct placement {
    uint32_t admit[BRAIN_PREFIX_MAX_NODES][BRAIN_N_TIERS]; /* x1000 */
    bool set[BRAIN_PREFIX_MAX_NODES][BRAIN_N_TIERS];       /* decided */
};

static int
placement_create(void **out)
{
    *out = calloc(1, sizeof(struct placement));
    return *out ? 0 : -ENOMEM;
}

/* The slowest tier the node has (the end of its demotion chain). */
static int
last_tier(const Mcos__Hello *h)
{
    int last = 0;

    for (size_t i = 0; i < h->n_tiers; i++) {
        int k = h->tiers[i]->kind;

        if (h->tiers[i]->available && k != MCOS__TIER_KIND__TIER_SRAM &&
            k > last && k <= MCOS__TIER_KIND__TIER_NVME) {
            last = k;
        }
    }
    return last;
}

static uint32_t
admit_for(const struct brain_policy *p, uint32_t pressure, uint32_t used_pm)
{
    uint32_t lo = p->low_watermark_pct * 10, hi = p->high_watermark_pct * 10;
    uint32_t steps;

    if (used_pm <= lo || pressure == 0) {
        return p->admit_min_hotness_milli;
    }
    /* Quarters of the way from low to high, rounded down. */
    steps = hi > lo ? (used_pm - lo) * 4 / (hi - lo) : 4;
    if (steps > 4) {
        steps = 4;
    }
    return p->admit_min_hotness_milli + pressure / 4 * steps;
}

static void
decide_node(struct placement *d, const struct brain_en_ctx *ctx,
            const void *usage, const struct brain_node *n,
            struct brain_nodeset *changed)
{
    uint32_t admit[BRAIN_N_TIERS] = {0};
    bool set[BRAIN_N_TIERS] = {false};
    int last;

    if (brain_en_node_up(n)) {
        last = last_tier(n->hello);
        for (size_t i = 0; i < n->hello->n_tiers; i++) {
            int k = n->hello->tiers[i]->kind;

            if (!n->hello->tiers[i]->available || k < 0 ||
                k >= BRAIN_N_TIERS) {
                continue;
            }
            set[k] = true;
            admit[k] =
                k == last
                    ? ctx->g->policy->admit_min_hotness_milli
                    : admit_for(ctx->g->policy,
                                ctx->g->place->admit_pressure_milli,
                                brain_en_usage_permille(usage, n->idx, k));
        }
    }
    if (memcmp(admit, d->admit[n->idx], sizeof admit) ||
        memcmp(set, d->set[n->idx], sizeof set)) {
        memcpy(d->admit[n->idx], admit, sizeof admit);
        memcpy(d->set[n->idx], set, sizeof set);
        brain_nodeset_add(changed, n->idx);
    }
}

static int
placement_run(struct brain_engine_node *en, bool recompute, void *arg)
{
    struct brain_en_ctx *ctx = arg;
    const struct brain_cluster *c = ctx->g->cluster;
    struct brain_engine_node *usage = brain_en_input(en, "en_usage");
    struct brain_nodeset dirty;

    brain_engine_inputs_changed_set(en, &dirty);
    for (size_t i = 0; i < c->n; i++) {
        if (recompute || brain_nodeset_has(&dirty, c->nodes[i]->idx)) {
            decide_node(en->data, ctx, usage->data, c->nodes[i], &en->changed);
        }
    }
    if (recompute) {
        brain_nodeset_add_all(&en->changed);
    }
    return 0;
}

void
brain_en_placement_decisions(const void *data, uint16_t idx,
                             struct brain_node_decisions *out)
{
    const struct placement *d = data;

    memcpy(out->admit_milli, d->admit[idx], sizeof out->admit_milli);
    memcpy(out->admit_set, d->set[idx], sizeof out->admit_set);
}

const struct brain_en_class brain_en_placement = {
    "en_placement", false, placement_run, placement_create, free,
};
