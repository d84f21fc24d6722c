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
 * and MCOS, whose adapter (the brain's prefix index and decide step,
 * linked as a library) is not written yet: its entry has no ops, and the
 * report says "not yet available".  The sources of each rule are cited in
 * docs/evaluation.md and at the top of each policy_*.c.
 *
 * Thread-safety: the tables are constant; policy state belongs to a run.
 */
#ifndef MCOS_EVAL_POLICY_H
#define MCOS_EVAL_POLICY_H

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
};

/* The defaults: Dynamo's and SGLang's own. */
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

#endif /* MCOS_EVAL_POLICY_H */
