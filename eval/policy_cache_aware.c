/*
 * cache_aware: the cache-aware load-balancing rule of SGLang's router
 * (sgl-project/sglang, docs/router/router.md; docs.sglang.io, "SGLang
 * Model Gateway", Load Balancing Policies).  As documented:
 *
 *   - The system is imbalanced when both (max_load - min_load) >
 *     balance_abs_threshold and max_load > balance_rel_threshold *
 *     min_load, where a worker's load is its pending requests.  Then the
 *     request goes to the least loaded worker (shortest queue).
 *   - Otherwise the router keeps, per worker, an approximate radix tree
 *     of the prompts it sent there (not the worker's real cache), finds
 *     the worker with the longest prefix match, and if the match rate
 *     (matched / prompt length) exceeds cache_threshold sends it there;
 *     else to the worker with the smallest tree ("most available cache
 *     capacity").
 *   - Every request's prompt is inserted into its worker's tree; every
 *     eviction_interval the trees are trimmed to max_tree_size by
 *     evicting least recently used leaves.
 * Defaults as documented there: cache_threshold 0.5,
 * balance_abs_threshold 32, balance_rel_threshold 1.0001,
 * eviction_interval 60 s.
 *
 * Modelled here: a worker is a node and its load the requests in flight
 * there (routed, not finished); the tree is a set of block ids with LRU
 * order (a prompt's blocks are touched tail first, so trimming takes the
 * leaves first), matched by prefix; the match rate is token-weighted;
 * max_tree_size is counted in blocks (default: the node's total tier
 * capacity; SGLang's 2^24 characters is about 8,000 blocks of 512 tokens
 * at 4 characters a token).  Ties in the longest match are broken at
 * random (SGLang takes whichever tenant its map yields first); ties for
 * the smallest tree go to the less loaded node, and remaining ties, like
 * those for the shortest queue, to the lowest node, as its min search
 * does.
 */
#include <errno.h>
#include <stdlib.h>

#include "error.h"
#include "policy.h"
#include "rng.h"
#include "u64map.h"

#define NIL UINT32_MAX

/* One block in a node's approximate tree. */
struct tnode {
    uint64_t hash; /* block id */
    uint32_t prev; /* towards least recently used, or NIL */
    uint32_t next; /* towards most recently used, or NIL */
};

/* A node's approximate tree: the blocks routed there, in LRU order. */
struct tree {
    struct u64map map; /* block id -> slot */
    struct tnode *v;   /* slots; free ones chained through next */
    uint32_t n_v;      /* slots ever used */
    uint32_t cap_v;    /* capacity */
    uint32_t free;     /* first free slot, or NIL */
    uint32_t lru;      /* least recently used, or NIL */
    uint32_t mru;      /* most recently used, or NIL */
    uint64_t size;     /* blocks in the tree */
};

struct ca {
    struct rng rng;        /* tie-breaks */
    struct policy_knobs k; /* settings */
    uint64_t max_tree;     /* max blocks per tree */
    uint32_t nodes;        /* number of trees */
    struct tree *trees;    /* one per node */
};

static void
t_unlink(struct tree *t, uint32_t i)
{
    struct tnode *e = &t->v[i];

    if (e->prev != NIL) {
        t->v[e->prev].next = e->next;
    } else {
        t->lru = e->next;
    }
    if (e->next != NIL) {
        t->v[e->next].prev = e->prev;
    } else {
        t->mru = e->prev;
    }
}

static void
t_push(struct tree *t, uint32_t i)
{
    t->v[i].prev = t->mru;
    t->v[i].next = NIL;
    if (t->mru != NIL) {
        t->v[t->mru].next = i;
    } else {
        t->lru = i;
    }
    t->mru = i;
}

/* Adds or refreshes one block. */
static int
t_touch(struct tree *t, uint64_t hash)
{
    uint32_t i;

    if (u64map_get(&t->map, hash, &i)) {
        t_unlink(t, i);
        t_push(t, i);
        return 0;
    }
    if (t->free != NIL) {
        i = t->free;
        t->free = t->v[i].next;
    } else {
        if (t->n_v == t->cap_v) {
            uint32_t cap = t->cap_v ? t->cap_v * 2 : 1024;
            struct tnode *v = realloc(t->v, cap * sizeof *v);

            if (!v) {
                return -ENOMEM;
            }
            t->v = v;
            t->cap_v = cap;
        }
        i = t->n_v++;
    }
    if (u64map_put(&t->map, hash, i)) {
        t->v[i].next = t->free;
        t->free = i;
        return -ENOMEM;
    }
    t->v[i].hash = hash;
    t_push(t, i);
    t->size++;
    return 0;
}

static void
t_evict_to(struct tree *t, uint64_t max)
{
    while (t->size > max && t->lru != NIL) {
        uint32_t i = t->lru;

        t_unlink(t, i);
        u64map_del(&t->map, t->v[i].hash);
        t->v[i].next = t->free;
        t->free = i;
        t->size--;
    }
}

static uint32_t
t_match(const struct tree *t, const uint64_t *chain, uint32_t n)
{
    uint32_t k = 0;

    while (k < n && u64map_get(&t->map, chain[k], NULL)) {
        k++;
    }
    return k;
}

static void
ca_destroy(void *state)
{
    struct ca *p = state;

    if (!p) {
        return;
    }
    for (uint32_t n = 0; p->trees && n < p->nodes; n++) {
        u64map_free(&p->trees[n].map);
        free(p->trees[n].v);
    }
    free(p->trees);
    free(p);
}

static int
ca_create(const struct sim_policy_env *env, void **state, uint64_t *tick_ns,
          char *err, size_t errlen)
{
    const struct sim_params *sp = env->params;
    struct ca *p = calloc(1, sizeof *p);

    if (!p) {
        goto nomem;
    }
    if (env->knobs) {
        p->k = *(const struct policy_knobs *)env->knobs;
    } else {
        policy_knobs_default(&p->k);
    }
    rng_seed(&p->rng, env->seed);
    p->max_tree = p->k.sg_max_tree_blocks;
    if (!p->max_tree) {
        for (int t = 0; t < SIM_TIERS; t++) {
            p->max_tree += sp->capacity[t];
        }
    }
    p->nodes = sp->nodes;
    p->trees = calloc(sp->nodes, sizeof *p->trees);
    if (!p->trees) {
        goto nomem;
    }
    for (uint32_t n = 0; n < sp->nodes; n++) {
        p->trees[n].free = p->trees[n].lru = p->trees[n].mru = NIL;
        if (u64map_init(&p->trees[n].map, 1024)) {
            goto nomem;
        }
    }
    *tick_ns = p->k.sg_eviction_ns;
    *state = p;
    return 0;
nomem:
    ca_destroy(p);
    mcos_seterr(err, errlen, "cache_aware: out of memory");
    return -ENOMEM;
}

static int
ca_route(void *state, struct sim *sim, uint32_t id,
         const struct trace_request *req, uint32_t *node)
{
    struct ca *p = state;
    uint32_t nodes = sim_nodes(sim), bt = sim_params(sim)->block_tokens;
    uint32_t best = 0, min_node = 0, ties = 0;
    uint32_t max_load = 0, min_load = UINT32_MAX;
    double best_rate = 0;
    struct tree *t;

    for (uint32_t n = 0; n < nodes; n++) {
        struct sim_load l;

        sim_load(sim, n, &l);
        if (l.inflight > max_load) {
            max_load = l.inflight;
        }
        if (l.inflight < min_load) {
            min_load = l.inflight;
            min_node = n;
        }
    }
    if (max_load - min_load > p->k.sg_balance_abs &&
        (double)max_load > (double)min_load * p->k.sg_balance_rel) {
        best = min_node;
    } else {
        for (uint32_t n = 0; n < nodes; n++) {
            uint32_t m = t_match(&p->trees[n], req->blocks, req->n_blocks);
            double rate = (double)trace_prefix_tokens(req, m, bt) /
                          (double)req->input_tokens;

            if (rate > best_rate) {
                best = n;
                best_rate = rate;
                ties = 1;
            } else if (rate == best_rate && rate > 0 &&
                       rng_below(&p->rng, ++ties) == 0) {
                best = n;
            }
        }
        if (!(best_rate > p->k.sg_cache_threshold)) {
            uint64_t smallest = UINT64_MAX;
            uint32_t load = UINT32_MAX;

            for (uint32_t n = 0; n < nodes; n++) {
                struct sim_load l;

                sim_load(sim, n, &l);
                if (p->trees[n].size < smallest ||
                    (p->trees[n].size == smallest && l.inflight < load)) {
                    smallest = p->trees[n].size;
                    load = l.inflight;
                    best = n;
                }
            }
        }
    }
    t = &p->trees[best];
    for (uint32_t j = req->n_blocks; j-- > 0;) {
        if (t_touch(t, req->blocks[j])) {
            return -ENOMEM;
        }
    }
    *node = best;
    return 0;
}

static void
ca_tick(void *state, struct sim *sim)
{
    struct ca *p = state;

    for (uint32_t n = 0; n < p->nodes; n++) {
        t_evict_to(&p->trees[n], p->max_tree);
    }
}

const struct sim_policy_ops policy_cache_aware = {
    .name = "cache_aware",
    .create = ca_create,
    .destroy = ca_destroy,
    .route = ca_route,
    .on_tick = ca_tick,
};
