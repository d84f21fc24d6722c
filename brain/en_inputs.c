/*
 * The graph's input nodes: each samples one part of the cluster model on
 * every pass and says what changed since the last pass.
 *
 *   en_members   hello, boot and failed-or-not of every node; any change
 *                touches every table (every table lists the peers)
 *   en_policy    every knob (tier policy, replication, placement,
 *                prefetch); a change touches every table
 *   en_replicas  operators' replication tasks, per source node
 *   en_usage     reported tier usage, per node
 *   en_hot       the hottest KV blocks of every namespace with their
 *                holders, resampled once per replication interval
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "en.h"
#include "prefix_index.h"

struct brain_engine_node *
brain_en_input(const struct brain_engine_node *n, const char *name)
{
    for (size_t i = 0; i < n->n_inputs; i++) {
        if (!strcmp(n->inputs[i]->name, name)) {
            return n->inputs[i];
        }
    }
    return NULL;
}

bool
brain_en_node_up(const struct brain_node *n)
{
    return n && n->hello && n->live != BRAIN_FAILED;
}

static int
zalloc(size_t size, void **out)
{
    *out = calloc(1, size);
    return *out ? 0 : -ENOMEM;
}

/* ------------------------------------------------------------------------
 * en_members */

struct member {
    const void *hello; /* the hello we saw (a new one is a new pointer) */
    uint64_t boot;     /* its boot id */
    bool up;           /* tables are compiled for it */
};

struct members {
    struct member m[BRAIN_PREFIX_MAX_NODES]; /* by idx */
};

static int
members_create(void **out)
{
    return zalloc(sizeof(struct members), out);
}

static int
members_run(struct brain_engine_node *en, bool recompute, void *arg)
{
    struct brain_en_ctx *ctx = arg;
    const struct brain_cluster *c = ctx->g->cluster;
    struct members *d = en->data;

    for (size_t i = 0; i < c->n; i++) {
        const struct brain_node *n = c->nodes[i];
        struct member *was = &d->m[n->idx];
        bool up = brain_en_node_up(n);

        if (was->hello != n->hello || was->boot != n->boot_id.v ||
            was->up != up) {
            was->hello = n->hello;
            was->boot = n->boot_id.v;
            was->up = up;
            brain_nodeset_add_all(&en->changed);
        }
    }
    if (recompute) {
        brain_nodeset_add_all(&en->changed);
    }
    return 0;
}

const struct brain_en_class brain_en_members = {
    "en_members", true, members_run, members_create, free,
};

/* ------------------------------------------------------------------------
 * en_policy */

/* Every knob a decide or compile node reads. */
struct knobs {
    struct brain_policy policy;      /* tier policy */
    struct brain_repl_config repl;   /* replication */
    struct brain_place_config place; /* placement, prefetch */
};

static int
policy_create(void **out)
{
    return zalloc(sizeof(struct knobs), out);
}

static int
policy_run(struct brain_engine_node *en, bool recompute, void *arg)
{
    struct brain_en_ctx *ctx = arg;
    struct knobs *was = en->data;

    /* Byte copies on both sides, so padding compares equal. */
    if (recompute ||
        memcmp(&was->policy, ctx->g->policy, sizeof was->policy) ||
        memcmp(&was->repl, ctx->g->repl, sizeof was->repl) ||
        memcmp(&was->place, ctx->g->place, sizeof was->place)) {
        memcpy(&was->policy, ctx->g->policy, sizeof was->policy);
        memcpy(&was->repl, ctx->g->repl, sizeof was->repl);
        memcpy(&was->place, ctx->g->place, sizeof was->place);
        brain_nodeset_add_all(&en->changed);
    }
    return 0;
}

const struct brain_en_class brain_en_policy = {
    "en_policy", true, policy_run, policy_create, free,
};

/* ------------------------------------------------------------------------
 * en_replicas */

struct replicas {
    uint64_t ver[BRAIN_PREFIX_MAX_NODES]; /* replicas_ver seen, by idx */
};

static int
replicas_create(void **out)
{
    return zalloc(sizeof(struct replicas), out);
}

static int
replicas_run(struct brain_engine_node *en, bool recompute, void *arg)
{
    struct brain_en_ctx *ctx = arg;
    const struct brain_cluster *c = ctx->g->cluster;
    struct replicas *d = en->data;

    for (size_t i = 0; i < c->n; i++) {
        const struct brain_node *n = c->nodes[i];

        if (recompute || d->ver[n->idx] != n->replicas_ver) {
            d->ver[n->idx] = n->replicas_ver;
            brain_nodeset_add(&en->changed, n->idx);
        }
    }
    return 0;
}

const struct brain_en_class brain_en_replicas = {
    "en_replicas", true, replicas_run, replicas_create, free,
};

/* ------------------------------------------------------------------------
 * en_usage */

struct usage {
    uint16_t permille[BRAIN_PREFIX_MAX_NODES][BRAIN_N_TIERS]; /* by idx */
};

static int
usage_create(void **out)
{
    return zalloc(sizeof(struct usage), out);
}

static int
usage_run(struct brain_engine_node *en, bool recompute, void *arg)
{
    struct brain_en_ctx *ctx = arg;
    const struct brain_cluster *c = ctx->g->cluster;
    struct usage *d = en->data;

    for (size_t i = 0; i < c->n; i++) {
        const struct brain_node *n = c->nodes[i];
        bool changed = recompute;

        for (int t = 0; t < BRAIN_N_TIERS; t++) {
            const struct brain_tier_usage *u = &n->tiers[t];
            uint64_t pm = 0;

            if (u->capacity) {
                pm = u->used >= u->capacity
                         ? 1000
                         : (uint64_t)((double)u->used * 1000.0 /
                                      (double)u->capacity);
            }
            if (d->permille[n->idx][t] != pm) {
                d->permille[n->idx][t] = (uint16_t)pm;
                changed = true;
            }
        }
        if (changed) {
            brain_nodeset_add(&en->changed, n->idx);
        }
    }
    return 0;
}

uint32_t
brain_en_usage_permille(const void *data, uint16_t idx, int tier)
{
    const struct usage *d = data;

    if (idx >= BRAIN_PREFIX_MAX_NODES || tier < 0 || tier >= BRAIN_N_TIERS) {
        return 0;
    }
    return d->permille[idx][tier];
}

const struct brain_en_class brain_en_usage = {
    "en_usage", true, usage_run, usage_create, free,
};

/* ------------------------------------------------------------------------
 * en_hot */

struct hot {
    struct brain_hot_block *v;     /* the sample, hottest first */
    size_t n;                      /* its size */
    struct brain_prefix_block *tk; /* top-k scratch */
    size_t tk_cap;                 /* its capacity */
    uint64_t next_us;              /* next sample due */
    bool sampled;                  /* a sample was ever taken */
};

static int
hot_create(void **out)
{
    return zalloc(sizeof(struct hot), out);
}

static void
hot_destroy(void *data)
{
    struct hot *d = data;

    if (d) {
        free(d->v);
        free(d->tk);
        free(d);
    }
}

static int
hot_cmp(const void *a, const void *b)
{
    const struct brain_hot_block *x = a, *y = b;

    if (x->hotness != y->hotness) {
        return x->hotness > y->hotness ? -1 : 1;
    }
    if (x->ns != y->ns) {
        return x->ns < y->ns ? -1 : 1;
    }
    return x->hash < y->hash ? -1 : x->hash > y->hash;
}

/* Appends the sample of one namespace. */
static int
hot_sample_ns(struct hot *d, struct brain_prefix_index *idx, uint16_t ns,
              const struct brain_en_ctx *ctx, size_t *cap)
{
    const struct brain_repl_config *rc = ctx->g->repl;
    double min = rc->min_hotness_milli / 1000.0;
    int k = brain_prefix_index_top_k_hot(idx, ns, ctx->g->now_us, d->tk,
                                         rc->candidates);

    for (int i = 0; i < k && d->tk[i].hotness >= min; i++) {
        struct brain_prefix_holder h[BRAIN_HOT_MAX_HOLDERS];
        struct brain_hot_block *b;
        int nh =
            brain_prefix_index_lookup(idx, ns, d->tk[i].hash, ctx->g->now_us,
                                      NULL, h, BRAIN_HOT_MAX_HOLDERS);

        if (nh <= 0) {
            continue;
        }
        if (d->n == *cap) {
            size_t nc = *cap ? *cap * 2 : 64;
            void *p = realloc(d->v, nc * sizeof *d->v);

            if (!p) {
                return -ENOMEM;
            }
            d->v = p;
            *cap = nc;
        }
        b = &d->v[d->n++];
        memset(b, 0, sizeof *b);
        b->hash = d->tk[i].hash;
        b->hotness = d->tk[i].hotness;
        b->ns = ns;
        b->n_holders =
            (uint8_t)(nh < BRAIN_HOT_MAX_HOLDERS ? nh : BRAIN_HOT_MAX_HOLDERS);
        memcpy(b->holders, h, b->n_holders * sizeof *h);
    }
    return 0;
}

static int
hot_run(struct brain_engine_node *en, bool recompute, void *arg)
{
    struct brain_en_ctx *ctx = arg;
    const struct brain_repl_config *rc = ctx->g->repl;
    struct hot *d = en->data;
    struct brain_prefix_index *idx;
    size_t cap = d->n, nns;

    (void)recompute; /* a sample is taken when due, recompute or not */
    if (d->sampled && ctx->g->now_us < d->next_us) {
        return 0;
    }
    d->sampled = true;
    d->next_us = ctx->g->now_us + rc->interval_us;
    if (d->tk_cap < rc->candidates) {
        void *p = realloc(d->tk, rc->candidates * sizeof *d->tk);

        if (!p) {
            return -ENOMEM;
        }
        d->tk = p;
        d->tk_cap = rc->candidates;
    }
    d->n = 0;
    idx = brain_kv_index(ctx->g->kv);
    nns = brain_kv_n_ns(ctx->g->kv);
    for (size_t ns = 0; ns < nns && rc->candidates; ns++) {
        int r = hot_sample_ns(d, idx, (uint16_t)ns, ctx, &cap);

        if (r) {
            snprintf(ctx->err, ctx->errlen,
                     "en_hot: out of memory sampling hot blocks");
            return r;
        }
    }
    if (d->n) {
        qsort(d->v, d->n, sizeof *d->v, hot_cmp);
    }
    /* A new sample: no per-node meaning, the decide node re-decides. */
    en->changed.any = true;
    return 0;
}

const struct brain_hot_block *
brain_en_hot_blocks(const void *data, size_t *n)
{
    const struct hot *d = data;

    *n = d->n;
    return d->v;
}

const struct brain_en_class brain_en_hot = {
    "en_hot", true, hot_run, hot_create, hot_destroy,
};
