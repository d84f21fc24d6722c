/*
 * The cluster simulator of the evaluation harness: a discrete-event model
 * of N inference nodes, their KV-cache tiers and the fabric between them,
 * driven by a request trace and steered by a routing/placement policy.
 *
 * Where it sits: mcos-bench replays a trace (trace.h) through one
 * simulator per policy.  A policy is a struct sim_policy_ops; the built-in
 * baselines live in policy_*.c, and the MCOS brain's decision code plugs
 * in through the same table as one more implementation (an adapter that
 * feeds the brain's prefix index from on_store/on_evict and routes with
 * its decide step).  Bounds (bounds.h) are computed from a finished run.
 *
 * The model (docs/evaluation.md has it at length):
 *   - Time is in nanoseconds from the trace's first arrival.  Requests
 *     arrive at their timestamps; the policy routes each one on arrival.
 *   - Each node has three tiers with capacities in blocks: HBM, DRAM,
 *     NVMe.  A block lives in at most one tier of a node (exclusive
 *     tiers).  Each tier keeps LRU order; the LRU block of a full tier is
 *     demoted to the next tier down (HBM -> DRAM -> NVMe), or dropped
 *     from the last one or when the next tier has no capacity.
 *   - A node prefills one request at a time at `prefill_tps` tokens/s,
 *     first come first served among requests that are ready (a request
 *     waiting for a fabric fetch is not ready; others may pass it).
 *   - When a request's prefill starts, its prompt's blocks are looked up
 *     on the node: the longest prefix whose blocks are all resident (in
 *     any tier) is reused; blocks found in DRAM or NVMe are promoted to
 *     HBM first, at that tier's bandwidth.  The rest is computed and
 *     stored in HBM.  Service time = promotion time + computed tokens /
 *     prefill_tps.
 *   - TTFT = (prefill end) - arrival: queueing, fetch waits, promotion
 *     and prefill of the tokens not reused.
 *   - Decode: after its prefill a request decodes output_tokens at
 *     `decode_tps` tokens/s (decoding requests do not slow each other or
 *     the prefills).  While it decodes, its prompt's blocks stay pinned
 *     in HBM and ceil(output_tokens / block_tokens) more HBM blocks are
 *     reserved for the answer's KV: that is the decode occupancy.
 *     Pinned blocks are never evicted; a block that finds no room at all
 *     is computed but not cached (counted in uncached_blocks).
 *   - Fabric: each node has one link per direction of `fabric_bw`
 *     bytes/s.  A transfer of b bytes from p to q starts when both p's
 *     out-link and q's in-link are free and takes fabric_latency +
 *     b / fabric_bw.  Transfers happen only when a policy orders them.
 *   - Load imbalance: time is cut into windows of `sample_ns`; in each,
 *     every node's queued prefill work (estimated seconds of prefill
 *     waiting, plus what remains of the running one) is integrated over
 *     time, and the window's figure is max/mean over nodes.  Windows with
 *     no work anywhere are skipped.  The report gives the p99 over
 *     windows.  (An instantaneous max/mean is N whenever exactly one node
 *     has work, which at moderate load is most of the time; averaging
 *     over a window makes the figure tell policies apart.)
 *   - Blocks are ordered into LRU tail first (the last block of a prompt
 *     is the first to go), as vLLM frees a request's blocks in reverse,
 *     so a prefix's head outlives its tail.
 *   - A policy may sort blocks into eviction classes (sim_set_class);
 *     each class of a tier keeps its own LRU order, and the policy's
 *     pick_victim hook says which class gives up its LRU block.  The
 *     baselines do neither, so their tiers are plain LRU.
 * Policies see the state through sim_match() and sim_load() and act
 * through sim_order(); every decision is the policy's, and the simulator
 * only carries it out and does the accounting.
 *
 * Thread-safety: a simulator belongs to one thread.  Separate simulators
 * may run in parallel over the same (read-only) trace.
 */
#ifndef MCOS_EVAL_SIM_H
#define MCOS_EVAL_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trace.h"

#define SIM_MAX_NODES   4096
#define SIM_NO_PARENT   UINT64_MAX
#define SIM_MAX_FETCHES 8
#define SIM_NAME_LEN    32
/* Eviction classes a policy may put blocks in (sim_set_class). */
#define SIM_CLASSES 8

/* Memory tiers, fastest first.  The brain's wire numbers are these + 2
 * (HBM = 2, DRAM = 3, NVMe = 4). */
enum sim_tier {
    SIM_TIER_HBM = 0,
    SIM_TIER_DRAM = 1,
    SIM_TIER_NVME = 2,
    SIM_TIERS = 3,
    SIM_TIER_NONE = 3, /* not resident: dropped, or no tier */
};

/* The cluster and its costs.  Every field has a default
 * (sim_params_default) and a flag in mcos-bench. */
struct sim_params {
    uint32_t nodes;               /* nodes in the cluster */
    uint32_t block_tokens;        /* tokens per block (the trace's) */
    uint64_t capacity[SIM_TIERS]; /* blocks per tier per node; HBM >= 1 */
    double prefill_tps;           /* tokens/s one node prefills */
    double decode_tps;            /* tokens/s one request decodes */
    uint64_t kv_bytes_per_token;  /* KV bytes per token, all layers */
    double fabric_bw;             /* bytes/s per node link and direction */
    uint64_t fabric_latency_ns;   /* fixed cost of one fabric transfer */
    double tier_bw[SIM_TIERS];    /* bytes/s from a tier into HBM; [0]
                                     unused */
    uint64_t sample_ns;           /* load-imbalance window */
    uint64_t seed;                /* seeds the policies' randomness */
};

/* The defaults (docs/evaluation.md explains each). */
void sim_params_default(struct sim_params *);
/* Checks every field; -EINVAL with a message naming the bad one. */
int sim_params_validate(const struct sim_params *, char *err, size_t errlen);

struct sim;

/* ---- The policy interface ---- */

/* Why a block became resident (on_store). */
enum sim_store_why {
    SIM_STORE_COMPUTED = 0,   /* a prefill computed it here */
    SIM_STORE_FETCHED = 1,    /* a FETCH brought it over the fabric */
    SIM_STORE_REPLICATED = 2, /* a REPLICATE brought it over the fabric */
    SIM_STORE_PROMOTED = 3,   /* moved up from a lower tier of this node
                                 (it is no longer there) */
};

/* What a policy may ask for (sim_order()). */
enum sim_order_kind {
    /* route() only: before the routed request's prefill, copy the
     * leading blocks of `chain` that `src` holds into the chosen node's
     * HBM; the request waits for them (not ready until they land). */
    SIM_ORDER_FETCH = 0,
    /* Copy the leading blocks of `chain` that `src` holds into `dst`'s
     * `tier`, in the background (replication before demand). */
    SIM_ORDER_REPLICATE = 1,
    /* Move blocks of `dst` found in a tier below `tier` up to `tier`, in
     * the background at the lower tier's bandwidth (prefetch). */
    SIM_ORDER_PROMOTE = 2,
    /* Move blocks of `dst` found in a tier above `tier` down to it, or
     * drop them when `tier` is SIM_TIER_NONE; at once.  Pinned blocks
     * are left alone. */
    SIM_ORDER_DEMOTE = 3,
};

struct sim_order {
    enum sim_order_kind kind; /* what to do */
    uint32_t src;             /* FETCH, REPLICATE: node that has them */
    uint32_t dst;             /* REPLICATE, PROMOTE, DEMOTE: node acted
                                 on (FETCH: ignored, the routed node) */
    enum sim_tier tier;       /* REPLICATE, PROMOTE, DEMOTE: target */
    const uint64_t *chain;    /* block ids, parents first; copied */
    uint32_t count;           /* blocks in chain */
    uint64_t parent;          /* parent of chain[0], or SIM_NO_PARENT
                                 (passed on to on_store) */
};

/* What a policy is created with. */
struct sim_policy_env {
    const struct sim_params *params; /* the cluster (outlives the policy) */
    uint64_t seed;                   /* this policy's own seed */
    const void *knobs;               /* policy settings; for the built-in
                                        ones a struct policy_knobs */
};

/*
 * A routing/placement policy.  route() is required; the hooks are
 * optional (NULL).  Hooks run inside the simulator's event processing:
 * they may read (sim_match, sim_load, ...) and submit orders, which are
 * carried out after the current event (FETCH only from route()).
 */
struct sim_policy_ops {
    const char *name; /* short name: "kv_overlap" */

    /* Creates the policy's state for one run.  May set *tick_ns to the
     * period of on_tick (0, the default, for none).  0 or -errno with a
     * message. */
    int (*create)(const struct sim_policy_env *env, void **state,
                  uint64_t *tick_ns, char *err, size_t errlen);
    /* Frees the state; NULL is a no-op. */
    void (*destroy)(void *state);

    /* Routes request `id` (req) arriving now: sets *node.  May submit
     * FETCH orders for it (and any other order).  0 or -errno, which
     * aborts the run. */
    int (*route)(void *state, struct sim *sim, uint32_t id,
                 const struct trace_request *req, uint32_t *node);

    /* Block `hash` (parent `parent`, or SIM_NO_PARENT) is now resident
     * in `tier` of `node`. */
    void (*on_store)(void *state, struct sim *sim, uint32_t node,
                     uint64_t hash, uint64_t parent, enum sim_tier tier,
                     enum sim_store_why why);
    /* Block `hash` left tier `from` of `node`: demoted into `to`, or
     * dropped from the node (`to` == SIM_TIER_NONE). */
    void (*on_evict)(void *state, struct sim *sim, uint32_t node,
                     uint64_t hash, enum sim_tier from, enum sim_tier to);
    /* Request `id` finished decoding on `node`. */
    void (*on_done)(void *state, struct sim *sim, uint32_t id,
                    const struct trace_request *req, uint32_t node);
    /* Called every *tick_ns of simulated time while the run lasts. */
    void (*on_tick)(void *state, struct sim *sim);
    /* Eviction: `tier` of `node` needs room and its unpinned blocks are
     * in more than one class (sim_set_class).  idle_ns[c] is how long the
     * least recently used block of class c has been idle (since it last
     * went to its list's most recently used end); bit c of `present` is
     * set when class c has one.  Returns the class that loses its least
     * recently used block; a class not present, or NULL here, evicts the
     * longest idle of them (LRU over the whole tier). */
    int (*pick_victim)(void *state, struct sim *sim, uint32_t node,
                       enum sim_tier tier, const uint64_t idle_ns[SIM_CLASSES],
                       uint32_t present);
};

/* ---- What policies may read ---- */

/* A node's load as the policy sees it at the current time. */
struct sim_load {
    uint32_t waiting;         /* routed here, prefill not started */
    uint32_t serving;         /* 1 while a prefill runs */
    uint32_t decoding;        /* requests decoding */
    uint32_t inflight;        /* routed here and not finished */
    uint64_t prefill_tokens;  /* input tokens of requests routed here
                                 whose prefill has not finished */
    uint64_t active_blocks;   /* prompt blocks of in-flight requests */
    uint64_t busy_until_ns;   /* end of the running prefill, 0 if idle */
    uint64_t used[SIM_TIERS]; /* blocks resident per tier (incl. pinned
                                 and reserved) */
};

/* Number of nodes, current time, parameters, and the run's trace. */
uint32_t sim_nodes(const struct sim *);
uint64_t sim_now_ns(const struct sim *);
const struct sim_params *sim_params(const struct sim *);
const struct trace *sim_trace(const struct sim *);

/* Length of the longest prefix of chain[0..n-1] resident on `node`
 * (computed blocks only: not ones a prefill is still producing).  When
 * per_tier is not NULL, per_tier[t] counts how many of those blocks are
 * in tier t. */
uint32_t sim_match(const struct sim *, uint32_t node, const uint64_t *chain,
                   uint32_t n, uint32_t per_tier[SIM_TIERS]);
/* Where block `hash` is on `node`: its tier, or SIM_TIER_NONE. */
enum sim_tier sim_where(const struct sim *, uint32_t node, uint64_t hash);
/* The load of `node`. */
void sim_load(const struct sim *, uint32_t node, struct sim_load *out);
/* Puts block `hash` of `node` in eviction class `cls` (< SIM_CLASSES)
 * and makes it the most recently used of that class (a pinned block
 * joins it when unpinned).  Blocks start in class 0; a policy that never
 * calls this gets plain LRU tiers.  0, -EINVAL (bad node or class),
 * -ENOENT (not on the node). */
int sim_set_class(struct sim *, uint32_t node, uint64_t hash, unsigned cls);
/* Submits an order (see enum sim_order_kind).  0, or -EINVAL for a bad
 * order (unknown node or tier, empty chain, FETCH outside route(), too
 * many FETCHes for one request); -ENOMEM.  Bad orders are also counted
 * in the result. */
int sim_order(struct sim *, const struct sim_order *);

/* ---- Running ---- */

/* Figures of one run. */
struct sim_result {
    char policy[SIM_NAME_LEN];           /* policy name */
    uint64_t requests;                   /* requests replayed */
    uint64_t input_tokens;               /* prompt tokens */
    uint64_t hit_tokens;                 /* reused: local + peer */
    uint64_t hit_tokens_tier[SIM_TIERS]; /* reused from a local tier */
    uint64_t hit_tokens_peer;            /* reused after a fabric fetch */
    uint64_t prefill_tokens;             /* computed */
    uint64_t fabric_bytes;               /* moved by FETCH/REPLICATE */
    uint64_t promoted_bytes;             /* moved up into HBM */
    uint64_t demoted_bytes;              /* moved down a tier */
    uint64_t dropped_blocks;             /* evicted off a node */
    uint64_t uncached_blocks;            /* computed, no room to keep */
    double ttft_mean_s;                  /* mean TTFT */
    double ttft_p50_s;                   /* median TTFT */
    double ttft_p99_s;                   /* 99th percentile TTFT */
    double imbalance_p99;                /* p99 over windows of max/mean
                                            queued work across nodes */
    double imbalance_mean;               /* mean of the same */
    uint64_t imbalance_samples;          /* windows with work queued */
    double utilization;                  /* prefill busy / capacity */
    double makespan_s;                   /* first arrival to last event */
    uint64_t decisions;                  /* route() calls */
    double route_wall_s;                 /* wall-clock time in route() */
    uint64_t orders;                     /* orders carried out */
    uint64_t bad_orders;                 /* orders refused */
};

/* Per-request outcome, for tests and bounds. */
struct sim_outcome {
    uint32_t node;                       /* where it ran */
    uint64_t arrival_ns;                 /* arrival */
    uint64_t start_ns;                   /* prefill start */
    uint64_t first_token_ns;             /* prefill end */
    uint64_t done_ns;                    /* decode end */
    uint32_t hit_blocks;                 /* prefix blocks reused */
    uint64_t hit_tokens_tier[SIM_TIERS]; /* reused from each local tier */
    uint64_t hit_tokens_peer;            /* reused after a fetch */
    uint64_t computed_tokens;            /* prefilled */
};

/* Creates a simulator for one run of `ops` over `trace` (which must
 * outlive it).  `knobs` is passed to the policy.  0 or -errno with a
 * message (bad parameters, the policy's create failing, -ENOMEM). */
int sim_create(const struct sim_params *, const struct trace *,
               const struct sim_policy_ops *, const void *knobs,
               struct sim **out, char *err, size_t errlen);
/* Replays the whole trace and fills *res.  Once only.  0 or -errno with a
 * message (a policy error or a bad route aborts the run). */
int sim_run(struct sim *, struct sim_result *res, char *err, size_t errlen);
/* After the run: outcome of request `id`; -EINVAL if out of range. */
int sim_outcome(const struct sim *, uint32_t id, struct sim_outcome *out);
/* After the run: the requests `node` served, in prefill start order. */
size_t sim_served(const struct sim *, uint32_t node, const uint32_t **ids);
/* Frees the simulator and the policy state; NULL is a no-op. */
void sim_destroy(struct sim *);

/* The nearest-rank percentile (p in 0..1) of v[0..n-1]; sorts v.  0 if
 * n == 0. */
double sim_percentile(double *v, size_t n, double p);

#endif /* MCOS_EVAL_SIM_H */
