/*
 * en_replication (decide): hot prefixes are copied to more nodes before
 * demand reaches them, and copies nobody uses are dropped again.
 *
 * Inputs: en_hot (the hottest blocks and their holders, resampled once per
 * replication interval: a new sample is a new round), en_members and
 * en_policy (a knob change rebuilds the output, it takes no new round).
 *
 * A round, in order:
 *  1. The ledger of copies the brain asked for is brought up to date from
 *     the prefix index: a copy the target now holds is "held" (its hit
 *     window starts); one whose source or target left, or that is not held
 *     after drop_after, is forgotten; a held copy whose window ends with
 *     fewer than drop_hits accesses on the target is "dropping" -- but only
 *     while another live node holds the block; a copy the target no longer
 *     holds is forgotten, except a dropped one, which is remembered (and
 *     counts as a copy, so none is made again) until the block cools
 *     below min_hotness.
 *  2. Blocks of the sample (hottest first) with fewer than `copies` live
 *     holders (copies under way and dropped ones count) get new copies, at
 *     most `budget` copies and `budget_bytes` bytes in the round (a
 *     bandwidth cap: bytes per interval; a copy is charged the largest
 *     block seen in its namespace).  The source is a holder with the block
 *     in DRAM (the agent replicates from DRAM), else the lowest-numbered
 *     holder; targets are live nodes that do not hold it, first those in
 *     racks where no holder (or chosen target) is, then by a hash of
 *     (block, node) so copies of different blocks spread over the
 *     cluster.
 *
 * Output per node: replica/ rules on sources for copies under way, drop/
 * rules on targets for copies being dropped.  A recompute rebuilds these
 * from the ledger without taking a new round.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "en.h"
#include "ids.h"
#include "prefix_index.h"

enum copy_state { COPYING, HELD, DROPPING, DROPPED };

static const char *const state_names[] = {"copying", "held", "dropping",
                                          "dropped"};

struct copy {
    uint64_t hash;     /* block */
    uint64_t since_us; /* decided (copying) or window start (held) */
    double hotness;    /* block hotness when decided */
    uint32_t hits;     /* accesses on the target this window */
    uint32_t holders;  /* live holders when decided */
    uint16_t ns;       /* namespace id */
    uint16_t source;   /* node idx copied from */
    uint16_t target;   /* node idx copied to */
    uint8_t state;     /* enum copy_state */
    bool other_rack;   /* target in a rack no holder was in */
};

/* An output rule: a replica on `node` (object -> peer) or a drop. */
struct out {
    uint16_t node;            /* whose table */
    struct brain_replica rep; /* the task (replica outputs) */
};

struct repl {
    struct copy *v;              /* the ledger, sorted by (hash, target) */
    size_t n, cap;               /* used, allocated */
    struct out *reps;            /* replica outputs, sorted by node, key */
    struct brain_replica *rep_v; /* the same tasks, contiguous */
    size_t n_reps;               /* their count */
    uint64_t *drops;             /* drop outputs' objects, grouped by node */
    uint16_t *drop_node;         /* the node of each drop output */
    size_t n_drops;              /* their count */
};

static int
repl_create(void **out)
{
    *out = calloc(1, sizeof(struct repl));
    return *out ? 0 : -ENOMEM;
}

static void
repl_destroy(void *data)
{
    struct repl *d = data;

    if (d) {
        free(d->v);
        free(d->reps);
        free(d->rep_v);
        free(d->drops);
        free(d->drop_node);
        free(d);
    }
}

static int
copy_cmp(const void *a, const void *b)
{
    const struct copy *x = a, *y = b;

    if (x->hash != y->hash) {
        return x->hash < y->hash ? -1 : 1;
    }
    if (x->ns != y->ns) {
        return x->ns < y->ns ? -1 : 1;
    }
    return (int)x->target - (int)y->target;
}

static const char *
rack_of(const struct brain_node *n)
{
    return n->hello && n->hello->labels && n->hello->labels->rack
               ? n->hello->labels->rack
               : "";
}

static bool
node_up(const struct brain_en_ctx *ctx, uint16_t idx)
{
    return brain_en_node_up(ctx->by_idx[idx]);
}

static bool
has_dram(const struct brain_node *n)
{
    for (size_t i = 0; i < n->hello->n_tiers; i++) {
        if (n->hello->tiers[i]->kind == MCOS__TIER_KIND__TIER_DRAM &&
            n->hello->tiers[i]->available) {
            return true;
        }
    }
    return false;
}

/* ------------------------------------------------------------------------
 * Step 1: the ledger against the index. */

/* Live holders of the copy's block other than its target, and whether the
 * target holds it. */
static void
look(struct brain_prefix_index *idx, const struct brain_en_ctx *ctx,
     const struct copy *c, int *others, bool *target_holds, double *hotness)
{
    struct brain_prefix_holder h[64];
    struct brain_prefix_block info = {0};
    int n = brain_prefix_index_lookup(idx, c->ns, c->hash, ctx->g->now_us,
                                      &info, h, 64);

    *hotness = n > 0 ? info.hotness : 0;
    *others = 0;
    *target_holds = false;
    for (int i = 0; i < n && i < 64; i++) {
        if (h[i].node == c->target) {
            *target_holds = true;
        } else if (node_up(ctx, h[i].node)) {
            (*others)++;
        }
    }
}

static void
update_ledger(struct repl *d, const struct brain_en_ctx *ctx)
{
    const struct brain_repl_config *rc = ctx->g->repl;
    struct brain_prefix_index *idx = brain_kv_index(ctx->g->kv);
    uint64_t now = ctx->g->now_us;
    size_t j = 0;

    for (size_t i = 0; i < d->n; i++) {
        struct copy c = d->v[i];
        bool keep = true, holds;
        double hot;
        int others;

        look(idx, ctx, &c, &others, &holds, &hot);
        switch (c.state) {
        case COPYING:
            if (holds && node_up(ctx, c.target)) {
                c.state = HELD;
                c.since_us = now;
                c.hits = 0;
            } else if (!node_up(ctx, c.source) || !node_up(ctx, c.target) ||
                       now - c.since_us >= rc->drop_after_us) {
                keep = false;
            }
            break;
        case HELD:
            if (!holds || !node_up(ctx, c.target)) {
                keep = false;
            } else if (now - c.since_us >= rc->drop_after_us) {
                if (c.hits < rc->drop_hits && others > 0) {
                    c.state = DROPPING;
                } else {
                    c.since_us = now;
                    c.hits = 0;
                }
            }
            break;
        case DROPPING:
            if (!holds || !node_up(ctx, c.target)) {
                /* Remembered, so a block whose copy nobody used is not
                 * copied again at once. */
                c.state = DROPPED;
                c.since_us = now;
            } else if (others == 0) {
                /* The last copy now: it stays. */
                c.state = HELD;
                c.since_us = now;
                c.hits = 0;
            }
            break;
        case DROPPED:
            /* Until the block cools down: while it stays as hot, another
             * copy would be as idle as this one was. */
            keep = hot >= rc->min_hotness_milli / 1000.0;
            break;
        }
        if (keep) {
            d->v[j++] = c;
        }
    }
    d->n = j;
}

/* ------------------------------------------------------------------------
 * Step 2: new copies of hot blocks. */

static bool
rack_in(const char *const *racks, size_t n, const char *rack)
{
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(racks[i], rack)) {
            return true;
        }
    }
    return false;
}

static bool
is_holder(const struct brain_hot_block *b, uint16_t idx)
{
    for (size_t i = 0; i < b->n_holders; i++) {
        if (b->holders[i].node == idx) {
            return true;
        }
    }
    return false;
}

/* Copies of (ns, hash) under way or recently dropped, with their
 * targets: both count as copies, so a dropped one is not made again until
 * it is forgotten. */
static size_t
pending(const struct repl *d, uint16_t ns, uint64_t hash, uint16_t *targets,
        size_t cap)
{
    size_t n = 0;

    for (size_t i = 0; i < d->n; i++) {
        const struct copy *c = &d->v[i];

        if (c->hash == hash && c->ns == ns &&
            (c->state == COPYING || c->state == DROPPED) && n < cap) {
            targets[n++] = c->target;
        }
    }
    return n;
}

static int
add_copy(struct repl *d, const struct copy *c)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 64;
        void *p = realloc(d->v, cap * sizeof *d->v);

        if (!p) {
            return -ENOMEM;
        }
        d->v = p;
        d->cap = cap;
    }
    d->v[d->n++] = *c;
    return 0;
}

/* The best target for `b` that is not taken: a rack not yet covered
 * first, then the lowest mix(hash, node).  -1 when there is none. */
static int
best_target(const struct brain_en_ctx *ctx, const struct brain_hot_block *b,
            const char *const *racks, size_t n_racks, const uint16_t *taken,
            size_t n_taken, bool *other_rack)
{
    const struct brain_cluster *cl = ctx->g->cluster;
    int best = -1;
    bool best_new = false;
    uint64_t best_mix = 0;

    for (size_t i = 0; i < cl->n; i++) {
        const struct brain_node *n = cl->nodes[i];
        bool is_new, skip = false;
        uint64_t m;

        if (!brain_en_node_up(n) || is_holder(b, n->idx) || !has_dram(n)) {
            continue;
        }
        for (size_t k = 0; k < n_taken && !skip; k++) {
            skip = taken[k] == n->idx;
        }
        if (skip) {
            continue;
        }
        is_new = !rack_in(racks, n_racks, rack_of(n));
        m = mcos_mix64(b->hash ^ ((uint64_t)n->idx << 48) ^ b->ns);
        if (best < 0 || (is_new && !best_new) ||
            (is_new == best_new && m < best_mix)) {
            best = n->idx;
            best_new = is_new;
            best_mix = m;
        }
    }
    *other_rack = best_new;
    return best;
}

/* What is left of a round's budget. */
struct budget {
    uint32_t copies; /* copies */
    uint64_t bytes;  /* bytes */
};

static int
plan_block(struct repl *d, const struct brain_en_ctx *ctx,
           const struct brain_hot_block *b, struct budget *budget)
{
    uint64_t cost = brain_kv_ns_block_bytes(ctx->g->kv, b->ns);
    const struct brain_repl_config *rc = ctx->g->repl;
    const char *racks[BRAIN_HOT_MAX_HOLDERS * 2 + 8];
    uint16_t taken[64];
    size_t n_racks = 0, n_taken, live = 0;
    int source = -1;

    for (size_t i = 0; i < b->n_holders; i++) {
        const struct brain_prefix_holder *h = &b->holders[i];

        if (!node_up(ctx, h->node)) {
            continue;
        }
        live++;
        if (!rack_in(racks, n_racks, rack_of(ctx->by_idx[h->node]))) {
            racks[n_racks++] = rack_of(ctx->by_idx[h->node]);
        }
        if (source < 0 ||
            (h->tiers & BRAIN_PREFIX_TIER_BIT(BRAIN_PREFIX_TIER_DRAM) &&
             !(b->holders[source].tiers &
               BRAIN_PREFIX_TIER_BIT(BRAIN_PREFIX_TIER_DRAM)))) {
            source = (int)i;
        }
    }
    if (live == 0) {
        return 0;
    }
    n_taken = pending(d, b->ns, b->hash, taken, 64);
    for (size_t k = 0; k < n_taken; k++) {
        const char *r = rack_of(ctx->by_idx[taken[k]]);

        if (!rack_in(racks, n_racks, r) &&
            n_racks < sizeof racks / sizeof racks[0]) {
            racks[n_racks++] = r;
        }
    }
    while (live + n_taken < rc->copies && budget->copies > 0 &&
           budget->bytes >= cost && n_taken < 64) {
        struct copy c = {0};
        bool other;
        int t = best_target(ctx, b, racks, n_racks, taken, n_taken, &other);
        int r;

        if (t < 0) {
            break;
        }
        c.hash = b->hash;
        c.ns = b->ns;
        c.since_us = ctx->g->now_us;
        c.hotness = b->hotness;
        c.holders = (uint32_t)live;
        c.source = b->holders[source].node;
        c.target = (uint16_t)t;
        c.state = COPYING;
        c.other_rack = other;
        r = add_copy(d, &c);
        if (r) {
            return r;
        }
        taken[n_taken++] = (uint16_t)t;
        if (n_racks < sizeof racks / sizeof racks[0]) {
            racks[n_racks++] = rack_of(ctx->by_idx[t]);
        }
        budget->copies--;
        budget->bytes -= cost;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Output. */

static int
out_cmp(const void *a, const void *b)
{
    const struct out *x = a, *y = b;

    if (x->node != y->node) {
        return (int)x->node - (int)y->node;
    }
    if (x->rep.object != y->rep.object) {
        return x->rep.object < y->rep.object ? -1 : 1;
    }
    return strcmp(x->rep.peer, y->rep.peer);
}

/* Orders drop outputs by (node, object). */
static int
drop_cmp(uint16_t na, uint64_t oa, uint16_t nb, uint64_t ob)
{
    if (na != nb) {
        return na < nb ? -1 : 1;
    }
    return oa < ob ? -1 : oa > ob;
}

/* Rebuilds the per-node outputs from the ledger; marks in `changed` the
 * nodes whose outputs differ from before. */
static int
build_outputs(struct repl *d, const struct brain_en_ctx *ctx,
              struct brain_nodeset *changed)
{
    struct out *reps = calloc(d->n + 1, sizeof *reps);
    struct brain_replica *rep_v = calloc(d->n + 1, sizeof *rep_v);
    uint64_t *drops = calloc(d->n + 1, sizeof *drops);
    uint16_t *drop_node = calloc(d->n + 1, sizeof *drop_node);
    size_t nr = 0, nd = 0;

    if (!reps || !rep_v || !drops || !drop_node) {
        free(reps);
        free(rep_v);
        free(drops);
        free(drop_node);
        return -ENOMEM;
    }
    for (size_t i = 0; i < d->n; i++) {
        const struct copy *c = &d->v[i];

        if (c->state == COPYING) {
            struct out *o = &reps[nr++];

            o->node = c->source;
            o->rep.object = c->hash;
            snprintf(o->rep.peer, sizeof o->rep.peer, "%s",
                     ctx->by_idx[c->target]->name);
            o->rep.tier = MCOS__TIER_KIND__TIER_DRAM;
        } else if (c->state == DROPPING) {
            /* Insertion keeps (node, object) order: few drops per round. */
            size_t k = nd++;

            while (k > 0 && (drop_node[k - 1] > c->target ||
                             (drop_node[k - 1] == c->target &&
                              drops[k - 1] > c->hash))) {
                drops[k] = drops[k - 1];
                drop_node[k] = drop_node[k - 1];
                k--;
            }
            drops[k] = c->hash;
            drop_node[k] = c->target;
        }
    }
    qsort(reps, nr, sizeof *reps, out_cmp);
    for (size_t i = 0; i < nr; i++) {
        rep_v[i] = reps[i].rep;
    }
    /* What changed: both sides are sorted by (node, rule), so one merge
     * finds the rules only one side has; their nodes changed. */
    for (size_t i = 0, j = 0; i < d->n_reps || j < nr;) {
        int c = i == d->n_reps ? 1
                : j == nr      ? -1
                               : out_cmp(&d->reps[i], &reps[j]);

        if (c < 0) {
            brain_nodeset_add(changed, d->reps[i++].node);
        } else if (c > 0) {
            brain_nodeset_add(changed, reps[j++].node);
        } else {
            if (d->reps[i].rep.tier != reps[j].rep.tier) {
                brain_nodeset_add(changed, reps[j].node);
            }
            i++;
            j++;
        }
    }
    for (size_t i = 0, j = 0; i < d->n_drops || j < nd;) {
        int c = i == d->n_drops ? 1
                : j == nd       ? -1
                                : drop_cmp(d->drop_node[i], d->drops[i],
                                           drop_node[j], drops[j]);

        if (c < 0) {
            brain_nodeset_add(changed, d->drop_node[i++]);
        } else if (c > 0) {
            brain_nodeset_add(changed, drop_node[j++]);
        } else {
            i++;
            j++;
        }
    }
    free(d->reps);
    free(d->rep_v);
    free(d->drops);
    free(d->drop_node);
    d->reps = reps;
    d->rep_v = rep_v;
    d->n_reps = nr;
    d->drops = drops;
    d->drop_node = drop_node;
    d->n_drops = nd;
    return 0;
}

static int
repl_run(struct brain_engine_node *en, bool recompute, void *arg)
{
    struct brain_en_ctx *ctx = arg;
    struct repl *d = en->data;
    struct brain_engine_node *hot = brain_en_input(en, "en_hot");
    int r = 0;

    if (hot->changed.any) {
        const struct brain_hot_block *b;
        struct budget budget = {ctx->g->repl->budget,
                                ctx->g->repl->budget_bytes};
        size_t n;

        update_ledger(d, ctx);
        b = brain_en_hot_blocks(hot->data, &n);
        for (size_t i = 0; i < n && budget.copies > 0 && r == 0; i++) {
            r = plan_block(d, ctx, &b[i], &budget);
        }
        if (d->n) {
            qsort(d->v, d->n, sizeof *d->v, copy_cmp);
        }
    }
    if (r == 0) {
        r = build_outputs(d, ctx, &en->changed);
    }
    if (r) {
        snprintf(ctx->err, ctx->errlen, "en_replication: out of memory");
        return r;
    }
    if (recompute) {
        brain_nodeset_add_all(&en->changed);
    }
    return 0;
}

void
brain_en_replication_report(void *data, uint16_t idx, const Mcos__Report *rep)
{
    struct repl *d = data;

    if (d->n == 0) {
        return;
    }
    for (size_t i = 0; i < rep->n_events; i++) {
        const Mcos__ObjectEvent *e = rep->events[i];
        struct copy key = {0};
        size_t lo = 0, hi = d->n;

        if (e->kind != MCOS__EVENT_KIND__EVENT_ACCESSED ||
            e->class_ != MCOS__OBJECT_CLASS__CLASS_KV_BLOCK) {
            continue;
        }
        key.hash = e->object_id;
        key.target = idx;
        /* The namespace is not resolved here: a hash matches in any. */
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;

            if (d->v[mid].hash < key.hash) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        for (; lo < d->n && d->v[lo].hash == key.hash; lo++) {
            if (d->v[lo].target == idx && d->v[lo].state == HELD) {
                d->v[lo].hits++;
            }
        }
    }
}

void
brain_en_replication_decisions(const void *data, uint16_t idx,
                               struct brain_node_decisions *out)
{
    const struct repl *d = data;
    size_t lo = 0, hi = d->n_reps, k;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;

        if (d->reps[mid].node < idx) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    out->replicas = NULL;
    out->n_replicas = 0;
    if (lo < d->n_reps && d->reps[lo].node == idx) {
        out->replicas = &d->rep_v[lo];
        for (k = lo; k < d->n_reps && d->reps[k].node == idx; k++) {
        }
        out->n_replicas = k - lo;
    }
    out->drops = NULL;
    out->n_drops = 0;
    for (k = 0; k < d->n_drops; k++) {
        if (d->drop_node[k] == idx) {
            size_t e = k;

            while (e < d->n_drops && d->drop_node[e] == idx) {
                e++;
            }
            out->drops = &d->drops[k];
            out->n_drops = e - k;
            break;
        }
    }
}

void
brain_en_replication_foreach(const void *data,
                             void (*cb)(const struct brain_repl_info *,
                                        void *),
                             void *arg)
{
    const struct repl *d = data;

    for (size_t i = 0; i < d->n; i++) {
        const struct copy *c = &d->v[i];
        struct brain_repl_info info = {
            c->ns,
            c->hash,
            c->source,
            c->target,
            state_names[c->state],
            c->hits,
            c->holders,
            c->hotness,
            c->other_rack,
        };

        cb(&info, arg);
    }
}

const struct brain_en_class brain_en_replication = {
    "en_replication", false, repl_run, repl_create, repl_destroy,
};
