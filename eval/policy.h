/*
 * The routing policies mcos-bench compares, behind struct sim_policy_ops
 * (sim.h).  The baselines, each with per-node LRU tiers (the simulator's
 * default behaviour; they order no movement):
 *
 *   round_robin  requests to nodes in turn
 *   random       a node uniformly at random (seeded)
 *   least_loaded the node with the fewest requests in flight
 *   kv_overlap   Dynamo's KV router: the lowest
 *                w * prefill_blocks + decode_blocks
 *   cache_aware  SGLang's router: the longest prefix match in a per-node
 *                approximate tree, shortest queue under imbalance
 *
 * and MCOS (policy_mcos.c): the brain's own prefix index and route
 * decision, linked as a library, fed from the simulator's block events,
 * with peer fetches, migration of cold copies and optional replication.
 * An entry without ops would be reported as "not yet available".  The
 * sources of each rule are cited in docs/evaluation.md and at the top of
 * each policy_*.c.
 *
 * Thread-safety: the tables are constant; policy state belongs to a run.
 */
#ifndef MCOS_EVAL_POLICY_H
#define MCOS_EVAL_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sim.h"

/* Settings of the built-in policies (sim_policy_env.knobs). */
struct policy_knobs {
    double kv_overlap_weight;    /* Dynamo's overlap_score_weight */
    double sg_cache_threshold;   /* SGLang cache_threshold (0..1) */
    uint64_t sg_balance_abs;     /* SGLang balance_abs_threshold */
    double sg_balance_rel;       /* SGLang balance_rel_threshold */
    uint64_t sg_max_tree_blocks; /* SGLang max_tree_size, in blocks; 0 =
                                    the node's total tier capacity */
    uint64_t sg_eviction_ns;     /* SGLang eviction_interval */
    /* MCOS (policy_mcos.c): the brain's routing weights (brain/route.h;
     * defaults as in brain/options.c) and the adapter's levers. */
    double mcos_dram_fetch;         /* cost of a DRAM-matched block */
    double mcos_nvme_fetch;         /* cost of an NVMe-matched block */
    double mcos_peer_fetch;         /* cost of a block fetched from a peer */
    double mcos_load_weight;        /* cost per unit of load */
    double mcos_queue_block_weight; /* cost per queued prefill block
                                       (the brain's load only) */
    double mcos_bound_eps;          /* bounded-load slack */
    double mcos_rack_penalty;       /* unused here: no racks in the model */
    int mcos_load;                  /* enum policy_mcos_load */
    bool mcos_fetch;                /* FETCH prefixes from peers */
    bool mcos_migrate;              /* drop the other copies of a cold block
                                       once it was fetched */
    double mcos_hot;                /* hotness (decayed accesses) from which a
                                       block is kept on several nodes */
    bool mcos_drop_partial;         /* drop a prompt's partial last block when
                                       its request ends */
    bool mcos_promote;          /* PROMOTE a routed prefix held below HBM */
    bool mcos_residency;        /* evict by the brain's residency table
                                   (brain/residency.h), not LRU */
    bool mcos_pending;          /* count prefixes routed but not yet
                                   stored as matches */
    uint64_t mcos_replicate_bw; /* bytes/s of fabric for replication, 0 =
                                   off */
    uint64_t mcos_tick_ns;      /* period of the replication tick */
};

/* What MCOS feeds into the route's load term. */
enum policy_mcos_load {
    POLICY_MCOS_LOAD_QUEUE = 0,    /* requests queued or prefilling */
    POLICY_MCOS_LOAD_INFLIGHT = 1, /* requests routed and not finished */
    POLICY_MCOS_LOAD_BLOCKS = 2,   /* estimated queued prefill blocks */
    POLICY_MCOS_LOAD_BRAIN = 3,    /* as the brain feeds it: requests queued
                                      or prefilling, and queued blocks
                                      weighed apart */
};

/* The defaults: Dynamo's, SGLang's and the MCOS brain's own. */
void policy_knobs_default(struct policy_knobs *);
/* Checks the knobs; -EINVAL with a message. */
int policy_knobs_validate(const struct policy_knobs *, char *err,
                          size_t errlen);

/* One row of the policy table. */
struct policy_entry {
    const char *name;                 /* as on the command line */
    const struct sim_policy_ops *ops; /* NULL: not available yet */
    const char *rule;                 /* one line: what it does */
};

/* Every policy in report order (MCOS first), and how many. */
extern const struct policy_entry policy_table[];
extern const size_t policy_count;

/* The entry named `name`, or NULL. */
const struct policy_entry *policy_find(const char *name);

/* The built-in baselines. */
extern const struct sim_policy_ops policy_round_robin;
extern const struct sim_policy_ops policy_random;
extern const struct sim_policy_ops policy_least_loaded;
extern const struct sim_policy_ops policy_kv_overlap;
extern const struct sim_policy_ops policy_cache_aware;
/* MCOS: the brain's prefix index and route decision (policy_mcos.c). */
extern const struct sim_policy_ops policy_mcos;

#endif /* MCOS_EVAL_POLICY_H */
