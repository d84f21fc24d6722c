/*
 * mcos: the MCOS brain's decision code, linked as a library, behind the
 * simulator's policy interface.  Nothing here re-implements a brain rule:
 *
 *   - The cluster's KV blocks live in the brain's global prefix index
 *     (brain/prefix_index.h), fed exactly as brain/kvindex.c feeds it from
 *     agent reports: on_store is a STORED event in the block's tier,
 *     on_evict a REMOVED (plus a STORED in the tier it was demoted to),
 *     and a promotion removes the block from the tier it left.  Every
 *     routed request counts as one ACCESSED event on the blocks of its
 *     chain the index knows, as the brain sees the chain in /v1/route.
 *   - Routing is brain_route_decide() (brain/route.h) over candidates
 *     built the way brain_routing_decide() (brain/routing.c, behind
 *     /v1/route) builds them: matched_hbm, matched_dram and matched from
 *     brain_prefix_index_find_matches(), matched_peer (the longest prefix
 *     another node holds, at most BRAIN_ROUTE_MAX_COPY blocks past the
 *     node's own), a load and the queued prefill blocks per node.  Where
 *     the brain orders a replication task to copy that prefix, this
 *     adapter orders the simulator's FETCH (see "fetch" below).
 *
 * Identifiers: trace block ids are prefix-chained already (the id at
 * position i names the whole prompt up to block i, and the simulator
 * passes them through unchanged), so they serve as the index's block
 * hashes; the index mixes them (fmix64 with a salt) before use.  They
 * are shifted by one, because Mooncake's first block id is 0 and the
 * index reads a parent of 0 as "none": id + 1 maps 0..2^63-1 one to one
 * onto 1..2^63.
 *
 * The load: brain_route_decide() adds load_weight x load +
 * queue_block_weight x queued_blocks to a cost counted in blocks to
 * compute, and keeps requests off nodes whose load is over the bound.
 * The default, POLICY_MCOS_LOAD_BRAIN, feeds them as the brain does with
 * its own weights (4 and 1): load = the requests queued or prefilling
 * (agents report them, proto Load; the simulator's nodes are prefill
 * servers and its state is exact, so nothing is "routed since the last
 * report"), queued_blocks = the prefill work queued on the node in
 * blocks: the rest of the running prefill (from its end time) plus, for
 * each request still waiting there, the blocks it was routed to compute
 * (its chain minus its match there), as engines report it
 * (queued_prefill_blocks) and the brain adds for routes not yet reported.
 * The other modes put one figure in load and none in queued_blocks:
 * POLICY_MCOS_LOAD_QUEUE the request count, POLICY_MCOS_LOAD_INFLIGHT
 * the decoding ones too (as a colocated engine's "running" would), and
 * POLICY_MCOS_LOAD_BLOCKS the queued blocks (so that the bound, too, is
 * in blocks).  docs/evaluation.md compares them.
 *
 * The adapter's own levers, each a documented rule on top of the index
 * (each can be switched off; the flags are mcos-bench's --mcos-*):
 *
 *   fetch      After the decision, when the chosen node's prefix is
 *              shorter than a peer's and copying the difference (link
 *              waits as this adapter booked them, latency, bytes at the
 *              fabric rate) takes less time than computing it, FETCH the
 *              prefix from the peer holding the longest one (the least
 *              busy of equals).  The request waits for it.  The route
 *              prices this through matched_peer and peer_fetch.
 *   migrate    When a fetched block lands and the index says it is cold
 *              (hotness below `mcos_hot`), the other copies are dropped:
 *              a conversation's history follows the conversation instead
 *              of being duplicated on every node it visited, which keeps
 *              the cluster's HBM one cache rather than N overlapping ones.
 *              Hot blocks (shared system prompts) keep their replicas.
 *   pending    Blocks a routed request is to compute count as matched on
 *              its node until the node stores them (extend_pending()).
 *   promote    A routed prefix the chosen node holds below HBM is
 *              promoted at once, overlapping the queue wait (prefetch).
 *   partial    When a request ends, its prompt's last block is dropped if
 *              it is partial: a block cut short is reused only by a prompt
 *              identical up to that token (the next turn of a
 *              conversation has a different id there), which is why vLLM
 *              caches full blocks only.
 *   residency  The brain's reuse prediction (brain/residency.h) learns
 *              from every routed request (does it continue an earlier
 *              turn, after how long; its answer's length gives its
 *              class), and the node's blocks take the class the brain
 *              gave them when their request ends, as an agent applies
 *              the class rules of its table.  When a tier needs room the
 *              simulator asks pick_victim, which runs the executors' own
 *              choice (mcos_residency_pick()) on the compiled table.
 *   replicate  Every tick, the hottest blocks (top_k_hot) at or above
 *              `mcos_hot` are copied, with their whole prefix, to the
 *              nodes that lack them, within a fabric budget of
 *              `mcos_replicate_bw` bytes/s (deepest chains first; a chain
 *              covers its ancestors).  Off by default: on the measured
 *              traces on-demand fetches already cover it (the figures are
 *              in docs/evaluation.md).
 *
 * Thread-safety: a policy state belongs to one simulator run.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "policy.h"
#include "prefix_index.h"
#include "residency.h"
#include "routing.h"
#include "u64map.h"

/* The namespace of the simulated model. */
#define NS 0
/* Hot blocks examined per replication tick. */
#define HOT_K 256
/* Longest chain walked back from a hot block. */
#define MAX_DEPTH 4096

/* A replication candidate: a hot block and the length of its chain. */
struct hotc {
    uint32_t depth; /* blocks from the root to it */
    uint32_t i;     /* its rank in p->hot (hottest first) */
};

/* Per node: the estimated prefill blocks of the requests routed there,
 * oldest first (a ring), for POLICY_MCOS_LOAD_BLOCKS. */
struct fifo {
    uint32_t *v;   /* estimates */
    uint32_t head; /* index of the oldest */
    uint32_t n;    /* entries */
    uint32_t cap;  /* capacity, a power of two */
};

_Static_assert(SIM_CLASSES == MCOS_RESIDENCY_CLASSES,
               "the simulator's eviction classes are the residency classes");

struct mcos {
    struct brain_prefix_index *idx;   /* the brain's global index */
    struct brain_residency *res;      /* the brain's reuse prediction */
    struct mcos_residency_table tab;  /* its compiled table */
    bool tab_stale;                   /* res learned since tab was built */
    struct brain_route_weights w;     /* the brain's routing weights */
    struct policy_knobs k;            /* settings */
    uint32_t nodes;                   /* cluster size */
    uint32_t bt;                      /* tokens per block */
    double block_ns;                  /* ns to prefill one full block */
    double xfer_ns;                   /* ns to move one block */
    uint64_t latency_ns;              /* fabric latency */
    uint64_t block_bytes;             /* bytes per block */
    char (*names)[16];                /* node names for the route */
    struct brain_route_node *cand;    /* candidates */
    struct brain_route_score *score;  /* their scores */
    struct brain_prefix_match *m;     /* find_matches results */
    struct fifo *q;                   /* per node, for the BLOCKS load */
    uint64_t *link_in;                /* in-link busy until (ns), booked */
    uint64_t *link_out;               /* out-link busy until (ns), booked */
    uint64_t *chain;                  /* scratch: remapped chain */
    size_t cap_chain;                 /* its capacity */
    uint64_t *ids;                    /* scratch: sim ids of a chain */
    struct brain_prefix_block *hot;   /* scratch: top_k_hot results */
    struct brain_prefix_holder *hold; /* scratch: holders of one block */
    struct hotc *hotc;                /* scratch: replication candidates */
    struct u64map covered;            /* replication: blocks this tick */
    struct u64map on_wire;            /* replication: hash -> ms it lands */
    struct u64map *pend;              /* per node: block id -> request
                                         routed there to compute it */
    uint32_t *pend_lo;                /* per request: first block it is
                                         to compute (pend entries) */
    uint32_t *pend_hi;                /* ... and the end of that range */
};

static inline uint64_t
to_brain(uint64_t id)
{
    return id + 1;
}

static inline uint64_t
to_sim(uint64_t hash)
{
    return hash - 1;
}

static void
mc_destroy(void *state)
{
    struct mcos *p = state;

    if (!p) {
        return;
    }
    brain_prefix_index_destroy(p->idx);
    brain_residency_destroy(p->res);
    for (uint32_t n = 0; p->q && n < p->nodes; n++) {
        free(p->q[n].v);
    }
    u64map_free(&p->covered);
    u64map_free(&p->on_wire);
    for (uint32_t n = 0; p->pend && n < p->nodes; n++) {
        u64map_free(&p->pend[n]);
    }
    free(p->pend);
    free(p->pend_lo);
    free(p->pend_hi);
    free(p->hotc);
    free(p->q);
    free(p->names);
    free(p->cand);
    free(p->score);
    free(p->m);
    free(p->link_in);
    free(p->link_out);
    free(p->chain);
    free(p->ids);
    free(p->hot);
    free(p->hold);
    free(p);
}

static int
mc_create(const struct sim_policy_env *env, void **state, uint64_t *tick_ns,
          char *err, size_t errlen)
{
    const struct sim_params *sp = env->params;
    struct brain_prefix_index_options io = {0};
    struct mcos *p = calloc(1, sizeof *p);
    uint32_t n = sp->nodes;
    int rc;

    if (!p) {
        goto nomem;
    }
    if (env->knobs) {
        p->k = *(const struct policy_knobs *)env->knobs;
    } else {
        policy_knobs_default(&p->k);
    }
    if (n > BRAIN_PREFIX_MAX_NODES) {
        mc_destroy(p);
        mcos_seterr(err, errlen, "mcos: at most %d nodes",
                    BRAIN_PREFIX_MAX_NODES);
        return -EINVAL;
    }
    p->w.dram_fetch = p->k.mcos_dram_fetch;
    p->w.nvme_fetch = p->k.mcos_nvme_fetch;
    p->w.peer_fetch = p->k.mcos_peer_fetch;
    p->w.load_weight = p->k.mcos_load_weight;
    p->w.queue_block_weight = p->k.mcos_queue_block_weight;
    p->w.bound_eps = p->k.mcos_bound_eps;
    p->w.rack_penalty = p->k.mcos_rack_penalty;
    p->nodes = n;
    p->bt = sp->block_tokens;
    p->block_ns = (double)sp->block_tokens * 1e9 / sp->prefill_tps;
    p->block_bytes = sp->kv_bytes_per_token * sp->block_tokens;
    p->xfer_ns = (double)p->block_bytes * 1e9 / sp->fabric_bw;
    p->latency_ns = sp->fabric_latency_ns;
    io.seed = env->seed;
    for (int t = 0; t < SIM_TIERS; t++) {
        io.initial_blocks += sp->capacity[t];
    }
    io.initial_blocks *= n;
    if (io.initial_blocks > 1u << 24) {
        io.initial_blocks = 1u << 24;
    }
    rc = brain_prefix_index_create(&io, &p->idx);
    if (rc) {
        mc_destroy(p);
        mcos_seterr(err, errlen, "mcos: prefix index: %s", mcos_strerror(rc));
        return rc;
    }
    if (p->k.mcos_residency) {
        struct brain_residency_options ro = {0};

        /* Twice the cluster's blocks, so that what it learns about a
         * block outlives the block's stay in any one node. */
        ro.max_blocks = io.initial_blocks * 2 < 1u << 26
                            ? (uint32_t)(io.initial_blocks * 2)
                            : 1u << 26;
        rc = brain_residency_create(&ro, &p->res);
        if (rc) {
            mc_destroy(p);
            mcos_seterr(err, errlen, "mcos: residency: %s", mcos_strerror(rc));
            return rc;
        }
        p->tab_stale = true;
    }
    p->names = calloc(n, sizeof *p->names);
    p->cand = calloc(n, sizeof *p->cand);
    p->score = calloc(n, sizeof *p->score);
    p->m = calloc(n, sizeof *p->m);
    p->q = calloc(n, sizeof *p->q);
    p->link_in = calloc(n, sizeof *p->link_in);
    p->link_out = calloc(n, sizeof *p->link_out);
    p->hot = calloc(HOT_K, sizeof *p->hot);
    p->hotc = calloc(HOT_K, sizeof(struct hotc));
    p->pend = calloc(n, sizeof *p->pend);
    p->hold = calloc(n, sizeof *p->hold);
    p->ids = calloc(MAX_DEPTH, sizeof *p->ids);
    if (!p->names || !p->cand || !p->score || !p->m || !p->q || !p->link_in ||
        !p->link_out || !p->hot || !p->hold || !p->ids || !p->hotc ||
        u64map_init(&p->covered, 1024) || u64map_init(&p->on_wire, 1024)) {
        goto nomem;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (u64map_init(&p->pend[i], 256)) {
            goto nomem;
        }
        /* Zero-padded so that the route's name order is node order. */
        snprintf(p->names[i], sizeof p->names[i], "n%05u", i);
        p->cand[i].name = p->names[i];
        p->cand[i].rack = "";
    }
    if (p->k.mcos_replicate_bw) {
        *tick_ns = p->k.mcos_tick_ns;
    }
    *state = p;
    return 0;
nomem:
    mc_destroy(p);
    mcos_seterr(err, errlen, "mcos: out of memory");
    return -ENOMEM;
}

/* ---- The BLOCKS load ---- */

static int
fifo_push(struct fifo *f, uint32_t v)
{
    if (f->n == f->cap) {
        uint32_t cap = f->cap ? f->cap * 2 : 64;
        uint32_t *nv = malloc(cap * sizeof *nv);

        if (!nv) {
            return -ENOMEM;
        }
        for (uint32_t i = 0; i < f->n; i++) {
            nv[i] = f->v[(f->head + i) & (f->cap - 1)];
        }
        free(f->v);
        f->v = nv;
        f->head = 0;
        f->cap = cap;
    }
    f->v[(f->head + f->n++) & (f->cap - 1)] = v;
    return 0;
}

/*
 * Estimated prefill blocks queued on node n: the running prefill's rest,
 * plus the estimates of the `waiting` most recent requests routed there
 * (the node serves in arrival order, so the older ones have started; a
 * request waiting for a fetch may be passed, which this ignores).
 */
static double
queued_blocks(struct mcos *p, struct sim *sim, uint32_t n,
              const struct sim_load *l)
{
    struct fifo *f = &p->q[n];
    double sum = 0;

    while (f->n > l->waiting) {
        f->head = (f->head + 1) & (f->cap - 1);
        f->n--;
    }
    for (uint32_t i = 0; i < f->n; i++) {
        sum += f->v[(f->head + i) & (f->cap - 1)];
    }
    if (l->serving && l->busy_until_ns > sim_now_ns(sim)) {
        sum += (double)(l->busy_until_ns - sim_now_ns(sim)) / p->block_ns;
    }
    return sum;
}

/* Node n's route inputs for the load mode: its load, and (the brain's
 * mode only) its queued prefill blocks apart. */
static void
node_load(struct mcos *p, struct sim *sim, uint32_t n,
          struct brain_route_node *c)
{
    struct sim_load l;

    sim_load(sim, n, &l);
    c->queued_blocks = 0;
    switch (p->k.mcos_load) {
    case POLICY_MCOS_LOAD_INFLIGHT:
        c->load = (double)l.inflight;
        break;
    case POLICY_MCOS_LOAD_BLOCKS:
        c->load = queued_blocks(p, sim, n, &l);
        break;
    case POLICY_MCOS_LOAD_BRAIN:
        c->load = (double)(l.waiting + l.serving);
        c->queued_blocks = queued_blocks(p, sim, n, &l);
        break;
    default:
        c->load = (double)(l.waiting + l.serving);
        break;
    }
}

/* ---- Routing ---- */

static int
chain_reserve(struct mcos *p, size_t n)
{
    uint64_t *c;

    if (n <= p->cap_chain) {
        return 0;
    }
    c = realloc(p->chain, n * sizeof *c);
    if (!c) {
        return -ENOMEM;
    }
    p->chain = c;
    p->cap_chain = n;
    return 0;
}

/* Books a transfer of `blocks` blocks from src to dst on this adapter's
 * view of the links; returns when it would land. */
static uint64_t
book(struct mcos *p, uint64_t now, uint32_t src, uint32_t dst, uint32_t blocks,
     bool commit)
{
    uint64_t start = now, end;

    if (p->link_out[src] > start) {
        start = p->link_out[src];
    }
    if (p->link_in[dst] > start) {
        start = p->link_in[dst];
    }
    end = start + p->latency_ns + (uint64_t)(blocks * p->xfer_ns);
    if (commit) {
        p->link_out[src] = p->link_in[dst] = end;
    }
    return end;
}

/*
 * The fetch rule: if a peer holds a longer prefix than `dst`, and copying
 * the difference lands sooner than computing it would take, order the
 * FETCH from the holder of the longest prefix whose links free up first.
 * Returns the prefix length dst will have.
 */
static uint32_t
maybe_fetch(struct mcos *p, struct sim *sim, const struct trace_request *req,
            int found, uint32_t dst)
{
    uint32_t have = p->cand[dst].matched, want = p->cand[dst].matched_peer;
    uint32_t src = UINT32_MAX, bt = p->bt;
    uint64_t now = sim_now_ns(sim), land = UINT64_MAX;
    struct sim_order o;

    if (!p->k.mcos_fetch || want <= have) {
        return have;
    }
    for (int r = 0; r < found && r < (int)p->nodes; r++) {
        uint32_t node = p->m[r].node, len;
        uint64_t t;

        len = p->m[r].matched[BRAIN_PREFIX_TIER_NVME];
        if (len < want) {
            break;
        }
        if (node == dst) {
            continue;
        }
        t = book(p, now, node, dst, want - have, false);
        if (t < land) {
            land = t;
            src = node;
        }
    }
    if (src == UINT32_MAX) {
        return have;
    }
    /* Computing the same blocks would take this long. */
    if ((double)(land - now) >= (double)(trace_prefix_tokens(req, want, bt) -
                                         trace_prefix_tokens(req, have, bt)) *
                                    p->block_ns / bt) {
        return have;
    }
    o = (struct sim_order){
        .kind = SIM_ORDER_FETCH,
        .src = src,
        .chain = req->blocks,
        .count = want,
        .parent = SIM_NO_PARENT,
    };
    if (sim_order(sim, &o)) {
        return have;
    }
    book(p, now, src, dst, want - have, true);
    return want;
}

/*
 * Prefixes on their way: the brain knows the chain of every request it
 * routed, so until a node reports a block STORED the brain can count the
 * blocks it sent a request there to compute, the way post_route() counts
 * requests "routed since the last report" into the load.  Without this,
 * requests that share a prefix and arrive while the first is still being
 * prefilled each compute it somewhere (the index has not heard of it
 * yet).  Extends each candidate's match by the blocks pending there.
 */
static void
extend_pending(struct mcos *p, const struct trace_request *req)
{
    for (uint32_t i = 0; i < p->nodes; i++) {
        struct brain_route_node *c = &p->cand[i];
        uint32_t j = c->matched;

        while (j < req->n_blocks &&
               u64map_get(&p->pend[i], req->blocks[j], NULL)) {
            j++;
        }
        if (j == c->matched) {
            continue;
        }
        /* They are computed into HBM. */
        if (c->matched_hbm == c->matched) {
            c->matched_hbm = j;
        }
        if (c->matched_dram == c->matched) {
            c->matched_dram = j;
        }
        c->matched = j;
    }
}

/* Records the blocks request `id` will compute on `node`: from `from` to
 * the end of its chain. */
static int
add_pending(struct mcos *p, struct sim *sim, uint32_t id,
            const struct trace_request *req, uint32_t node, uint32_t from)
{
    if (!p->pend_lo) {
        size_t nreq = sim_trace(sim)->n;

        p->pend_lo = calloc(nreq, sizeof *p->pend_lo);
        p->pend_hi = calloc(nreq, sizeof *p->pend_hi);
        if (!p->pend_lo || !p->pend_hi) {
            return -ENOMEM;
        }
    }
    p->pend_lo[id] = from;
    p->pend_hi[id] = from;
    for (uint32_t j = from; j < req->n_blocks; j++) {
        if (u64map_put(&p->pend[node], req->blocks[j], id)) {
            return -ENOMEM;
        }
        p->pend_hi[id] = j + 1;
    }
    return 0;
}

static void route_turn(struct mcos *p, struct sim *sim,
                       const struct trace_request *req);

static int
mc_route(void *state, struct sim *sim, uint32_t id,
         const struct trace_request *req, uint32_t *node)
{
    struct mcos *p = state;
    uint32_t n = req->n_blocks, got;
    uint64_t now_us = sim_now_ns(sim) / 1000;
    int found = 0, best;

    for (uint32_t i = 0; i < p->nodes; i++) {
        struct brain_route_node *c = &p->cand[i];

        c->matched_hbm = c->matched_dram = c->matched = 0;
        c->matched_peer = 0;
        node_load(p, sim, i, c);
    }
    if (n > 0) {
        if (chain_reserve(p, n)) {
            return -ENOMEM;
        }
        for (uint32_t j = 0; j < n; j++) {
            p->chain[j] = to_brain(req->blocks[j]);
        }
        /* A conversation that continues teaches the residency
         * prediction how long after its last turn it came back. */
        if (p->res) {
            route_turn(p, sim, req);
        }
        /* The brain sees the chain of every request it routes: one
         * access of each block it knows (the rest are not anywhere). */
        for (uint32_t j = 0; j < n; j++) {
            if (brain_prefix_index_access(p->idx, NS, 0, p->chain[j], now_us) <
                0) {
                break;
            }
        }
        found = brain_prefix_index_find_matches(p->idx, NS, p->chain, n, p->m,
                                                p->nodes);
        if (found < 0) {
            return found;
        }
    }
    for (int r = 0; r < found && r < (int)p->nodes; r++) {
        struct brain_route_node *c = &p->cand[p->m[r].node];

        c->matched_hbm = p->m[r].matched[BRAIN_PREFIX_TIER_HBM];
        c->matched_dram = p->m[r].matched[BRAIN_PREFIX_TIER_DRAM];
        c->matched = p->m[r].matched[BRAIN_PREFIX_TIER_NVME];
    }
    if (p->k.mcos_pending) {
        extend_pending(p, req);
    }
    if (p->k.mcos_fetch && found > 0) {
        /* Results are sorted longest first: a node's best peer is the
         * first result that is not itself. */
        for (uint32_t i = 0; i < p->nodes; i++) {
            int r = p->m[0].node == i && found > 1 ? 1 : 0;

            if (p->m[r].node != i) {
                uint32_t own = p->cand[i].matched;
                uint32_t peer = p->m[r].matched[BRAIN_PREFIX_TIER_NVME];

                p->cand[i].matched_peer = peer > own + BRAIN_ROUTE_MAX_COPY
                                              ? own + BRAIN_ROUTE_MAX_COPY
                                              : peer;
            }
        }
    }
    best = brain_route_decide(p->cand, p->nodes, n, NULL, &p->w, p->score);
    if (best < 0) {
        return best;
    }
    got = maybe_fetch(p, sim, req, found, (uint32_t)best);
    if (p->k.mcos_promote &&
        p->cand[best].matched_hbm < p->cand[best].matched) {
        /* Prefetch: the part of the prefix the node keeps below HBM moves
         * up while the request waits in the queue, not after. */
        struct sim_order o = {
            .kind = SIM_ORDER_PROMOTE,
            .dst = (uint32_t)best,
            .tier = SIM_TIER_HBM,
            .chain = req->blocks,
            .count = p->cand[best].matched < n ? p->cand[best].matched : n,
            .parent = SIM_NO_PARENT,
        };

        sim_order(sim, &o);
    }
    if ((p->k.mcos_load == POLICY_MCOS_LOAD_BLOCKS ||
         p->k.mcos_load == POLICY_MCOS_LOAD_BRAIN) &&
        fifo_push(&p->q[best], n - (got < n ? got : n))) {
        return -ENOMEM;
    }
    if (p->k.mcos_pending &&
        add_pending(p, sim, id, req, (uint32_t)best,
                    got > p->cand[best].matched ? got
                                                : p->cand[best].matched)) {
        return -ENOMEM;
    }
    *node = (uint32_t)best;
    return 0;
}

/* ---- Feeding the index ---- */

static void
mc_store(void *state, struct sim *sim, uint32_t node, uint64_t hash,
         uint64_t parent, enum sim_tier tier, enum sim_store_why why)
{
    struct mcos *p = state;
    uint64_t h = to_brain(hash);
    int nh;

    if (why == SIM_STORE_PROMOTED) {
        /* The block left its lower tier (kvindex.c does the same for a
         * PROMOTED event). */
        for (int t = tier + 1; t < SIM_TIERS; t++) {
            brain_prefix_index_remove(p->idx, NS, (uint16_t)node,
                                      (uint8_t)(t + 2), h);
        }
    }
    brain_prefix_index_store(p->idx, NS, (uint16_t)node, (uint8_t)(tier + 2),
                             h,
                             parent == SIM_NO_PARENT ? 0 : to_brain(parent));
    if (p->res) {
        /* A block copied or recomputed here keeps the reuse class the
         * brain learned for it. */
        int c = brain_residency_class_of(p->res, h);

        if (c > 0) {
            sim_set_class(sim, node, hash, (unsigned)c);
        }
    }
    if (why != SIM_STORE_FETCHED || !p->k.mcos_migrate) {
        return;
    }
    /* Migration: a cold block's other copies go once it has landed. */
    {
        struct brain_prefix_block info;

        nh = brain_prefix_index_lookup(p->idx, NS, h, sim_now_ns(sim) / 1000,
                                       &info, p->hold, p->nodes);
        if (nh <= 1 || info.hotness >= p->k.mcos_hot) {
            return;
        }
    }
    for (int i = 0; i < nh && i < (int)p->nodes; i++) {
        struct sim_order o = {
            .kind = SIM_ORDER_DEMOTE,
            .dst = p->hold[i].node,
            .tier = SIM_TIER_NONE,
            .chain = &hash,
            .count = 1,
            .parent = SIM_NO_PARENT,
        };

        if (p->hold[i].node != node) {
            sim_order(sim, &o);
        }
    }
}

static void
mc_evict(void *state, struct sim *sim, uint32_t node, uint64_t hash,
         enum sim_tier from, enum sim_tier to)
{
    struct mcos *p = state;
    uint64_t h = to_brain(hash);

    /* Recorded in the new tier before leaving the old one, so that the
     * block (and its parent) stays known when this node was its only
     * holder. */
    if (to != SIM_TIER_NONE) {
        brain_prefix_index_store(p->idx, NS, (uint16_t)node, (uint8_t)(to + 2),
                                 h, 0);
    }
    brain_prefix_index_remove(p->idx, NS, (uint16_t)node, (uint8_t)(from + 2),
                              h);
}

/* ---- Residency ---- */

/* A request is routed: it continues an earlier turn or not (the brain
 * learns after how long), and it is a turn whose class its answer's
 * length gives (the output_len of /v1/route).  p->chain holds its
 * chain. */
static void
route_turn(struct mcos *p, struct sim *sim, const struct trace_request *req)
{
    uint32_t full = (uint32_t)(req->input_tokens / p->bt);

    if (full > req->n_blocks) {
        full = req->n_blocks;
    }
    brain_residency_request(p->res, p->chain, req->n_blocks, sim_now_ns(sim));
    if (full) {
        brain_residency_turn(p->res, p->chain, full, req->output_tokens,
                             sim_now_ns(sim));
    }
    p->tab_stale = true;
}

/* A request ended on `node`: its prompt's full blocks there take the
 * class the brain gave them, head last (most recently used), so a
 * prefix's head outlives its tail -- what an agent does with the table's
 * class rules. */
static void
turn_end(struct mcos *p, struct sim *sim, const struct trace_request *req,
         uint32_t node)
{
    uint32_t full = (uint32_t)(req->input_tokens / p->bt);
    int c;

    if (full > req->n_blocks) {
        full = req->n_blocks;
    }
    if (full == 0) {
        return;
    }
    c = brain_residency_class_of(p->res, to_brain(req->blocks[full - 1]));
    if (c < 0) {
        return;
    }
    for (uint32_t j = full; j-- > 0;) {
        sim_set_class(sim, node, req->blocks[j], (unsigned)c);
    }
}

static int
mc_pick_victim(void *state, struct sim *sim, uint32_t node, enum sim_tier tier,
               const uint64_t idle_ns[SIM_CLASSES], uint32_t present)
{
    struct mcos *p = state;

    (void)sim;
    (void)node;
    (void)tier;
    if (!p->res) {
        return -ENOENT;
    }
    if (p->tab_stale) {
        brain_residency_table(p->res, &p->tab);
        p->tab_stale = false;
    }
    return mcos_residency_pick(&p->tab, idle_ns, present);
}

/* ---- Partial blocks ---- */

static void
mc_done(void *state, struct sim *sim, uint32_t id,
        const struct trace_request *req, uint32_t node)
{
    struct mcos *p = state;
    uint32_t n = req->n_blocks;

    /* Blocks it was to compute that never became resident (no room). */
    for (uint32_t j = p->pend_lo ? p->pend_lo[id] : 0;
         p->pend_lo && j < p->pend_hi[id]; j++) {
        uint32_t who;

        if (u64map_get(&p->pend[node], req->blocks[j], &who) && who == id) {
            u64map_del(&p->pend[node], req->blocks[j]);
        }
    }
    struct sim_order o = {
        .kind = SIM_ORDER_DEMOTE,
        .dst = node,
        .tier = SIM_TIER_NONE,
        .count = 1,
        .parent = SIM_NO_PARENT,
    };

    if (p->res) {
        turn_end(p, sim, req, node);
    }
    if (!p->k.mcos_drop_partial || n == 0 || req->input_tokens % p->bt == 0 ||
        (uint64_t)n * p->bt < req->input_tokens) {
        return;
    }
    o.chain = &req->blocks[n - 1];
    sim_order(sim, &o);
}

/* ---- Replication ---- */

/* Walks parents from `h` back to the root into p->ids (sim ids, root
 * first); 0 when a parent is unknown (the chain could not be matched
 * anyway). */
static uint32_t
chain_of(struct mcos *p, uint64_t h, uint64_t now_us)
{
    uint32_t d = 0;

    while (h && d < MAX_DEPTH) {
        struct brain_prefix_block b;

        if (brain_prefix_index_lookup(p->idx, NS, h, now_us, &b, NULL, 0) <
            0) {
            return 0;
        }
        p->ids[d++] = to_sim(h);
        h = b.parent;
    }
    if (h) {
        return 0;
    }
    for (uint32_t i = 0; i < d / 2; i++) {
        uint64_t t = p->ids[i];

        p->ids[i] = p->ids[d - 1 - i];
        p->ids[d - 1 - i] = t;
    }
    return d;
}

/* Deepest first (a chain covers its ancestors), then hottest. */
static int
hotc_cmp(const void *a, const void *b)
{
    const struct hotc *x = a, *y = b;

    if (x->depth != y->depth) {
        return x->depth > y->depth ? -1 : 1;
    }
    return (x->i > y->i) - (x->i < y->i);
}

static void
mc_tick(void *state, struct sim *sim)
{
    struct mcos *p = state;
    uint64_t now = sim_now_ns(sim), now_us = now / 1000;
    uint32_t now_ms = (uint32_t)(now / 1000000);
    double budget = (double)p->k.mcos_replicate_bw *
                    (double)p->k.mcos_tick_ns * 1e-9 / (double)p->block_bytes;
    int nhot, nc = 0;

    if (budget <= 0) {
        return;
    }
    nhot = brain_prefix_index_top_k_hot(p->idx, NS, now_us, p->hot, HOT_K);
    for (int i = 0; i < nhot; i++) {
        const struct brain_prefix_block *b = &p->hot[i];
        uint32_t d;

        if (b->hotness < p->k.mcos_hot) {
            break;
        }
        if (b->nholders < p->nodes && (d = chain_of(p, b->hash, now_us))) {
            p->hotc[nc++] = (struct hotc){d, (uint32_t)i};
        }
    }
    qsort(p->hotc, (size_t)nc, sizeof *p->hotc, hotc_cmp);
    u64map_clear(&p->covered);
    for (int c = 0; c < nc && budget > 0; c++) {
        const struct brain_prefix_block *b = &p->hot[p->hotc[c].i];
        uint32_t d, nh, until;
        int rc;

        if (u64map_get(&p->covered, b->hash, NULL) ||
            (u64map_get(&p->on_wire, b->hash, &until) && until >= now_ms)) {
            continue;
        }
        d = chain_of(p, b->hash, now_us);
        rc = brain_prefix_index_lookup(p->idx, NS, b->hash, now_us, NULL,
                                       p->hold, p->nodes);
        if (d == 0 || rc <= 0) {
            continue;
        }
        nh = (uint32_t)rc;
        for (uint32_t j = 0; j < d; j++) {
            u64map_put(&p->covered, to_brain(p->ids[j]), 0);
        }
        until = now_ms;
        for (uint32_t dst = 0, h = 0; dst < p->nodes && budget > 0; dst++) {
            struct sim_order o = {
                .kind = SIM_ORDER_REPLICATE,
                .src = p->hold[0].node,
                .dst = dst,
                .tier = SIM_TIER_HBM,
                .chain = p->ids,
                .count = d,
                .parent = SIM_NO_PARENT,
            };
            uint32_t have;

            while (h < nh && p->hold[h].node < dst) {
                h++;
            }
            if (h < nh && p->hold[h].node == dst) {
                continue;
            }
            /* From the first holder; the simulator moves only the blocks
             * dst lacks. */
            have = sim_match(sim, dst, p->ids, d, NULL);
            if (sim_order(sim, &o) == 0) {
                uint64_t end = book(p, now, o.src, dst, d - have, true);

                if (end / 1000000 + 1 > until) {
                    until = (uint32_t)(end / 1000000 + 1);
                }
                budget -= d - have;
            }
        }
        /* Not again while these copies are on the wire (they are not in
         * the index until they land). */
        u64map_put(&p->on_wire, b->hash, until);
    }
}

const struct sim_policy_ops policy_mcos = {
    .name = "mcos",
    .create = mc_create,
    .destroy = mc_destroy,
    .route = mc_route,
    .on_store = mc_store,
    .pick_victim = mc_pick_victim,
    .on_evict = mc_evict,
    .on_done = mc_done,
    .on_tick = mc_tick,
};
