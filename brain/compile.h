/*
 * Compile: turns the cluster model and the policy knobs into one node's
 * table.  A pure function of its inputs (the node's hello, the set of
 * nodes that are not failed, the policy), so the same inputs always give
 * the same table, byte for byte, and tests compare dumps against golden
 * text.
 *
 * What a table holds (format 1):
 *   tier/<tier>      watermarks and admission threshold per tier the node
 *                    has (available tiers only)
 *   demotion/<tier>  the demotion chain over the node's tiers, fastest to
 *                    slowest: hbm -> dram -> nvme -> (end)
 *   peer/<node>      every other node that is not failed, with its labels
 *                    and data-plane endpoints (how peers find each other;
 *                    a node the brain has not admitted is never listed)
 *   param/<name>     numeric knobs the agent follows (report interval)
 *   replica/<o>/<p>  copy object o to peer p: operator tasks (POST
 *                    /v1/replicate) and the brain's own (hot prefixes)
 *   drop/<o>         drop this node's copy of o (a brain replica that
 *                    stopped paying; another node holds o)
 *   prefetch/<t>     when t is accessed here, bring these objects up
 *
 * The decide steps (engine nodes en_*.c) hand their choices for one node
 * in struct brain_node_decisions; without them (NULL) a table holds the
 * model-derived rules only.
 *
 * Where it sits: steps 3-4 (decide, compile).  Thread-safety: pure.
 */
#ifndef BRAIN_COMPILE_H
#define BRAIN_COMPILE_H

#include <stddef.h>
#include <stdint.h>

#include "cluster.h"
#include "residency_table.h"
#include "table.h"

struct brain_policy {
    uint32_t high_watermark_pct;      /* demote above this usage */
    uint32_t low_watermark_pct;       /* demote down to this */
    uint32_t admit_min_hotness_milli; /* admission threshold x 1000 */
    uint32_t report_interval_ms;      /* agents' report interval */
    uint32_t demote_to_peers;         /* 1: chains end in peers' memory */
};

/* A learned prefetch: trigger -> objects into tier within deadline_ms. */
struct brain_prefetch {
    uint64_t trigger;        /* the access that fires it */
    const uint64_t *objects; /* what to bring up */
    size_t n_objects;        /* how many (1..MCOS_TABLE_MAX_PREFETCH) */
    int tier;                /* into which tier */
    uint32_t deadline_ms;    /* how soon */
};

/* A turn's reuse class on a node: its prompt's last block (the agent
 * gives the class to the blocks before it in the chain too). */
struct brain_reuse {
    uint64_t object; /* the turn's last block */
    uint32_t cls;    /* its class (< MCOS_RESIDENCY_CLASSES) */
};

/* What the decide steps chose for one node, beside the model. */
struct brain_node_decisions {
    const struct brain_replica *replicas;  /* brain-made copies from here */
    size_t n_replicas;                     /* their count */
    const uint64_t *drops;                 /* replicas to drop here */
    size_t n_drops;                        /* their count */
    const struct brain_prefetch *prefetch; /* learned, sorted by trigger */
    size_t n_prefetch;                     /* their count */
    /* Per-tier admission threshold x1000 from placement; tiers with
     * admit_set false keep the policy's. */
    uint32_t admit_milli[BRAIN_N_TIERS];
    bool admit_set[BRAIN_N_TIERS];
    /* Residency (en_residency): the eviction table (NULL: none, demotion
     * stays LRU), its default class, and the reuse classes of turns
     * routed to the node, sorted by object. */
    const struct mcos_residency_table *residency;
    uint32_t default_class;
    const struct brain_reuse *reuse;
    size_t n_reuse;
};

int brain_compile_node(const struct brain_cluster *, const struct brain_node *,
                       const struct brain_policy *, uint64_t gen,
                       struct mcos_table **out, char *err, size_t errlen);

/* The same with the decide steps' choices (NULL: none).  A brain replica
 * with the key of an operator's task is left out: the operator's wins. */
int brain_compile_node_decided(const struct brain_cluster *,
                               const struct brain_node *,
                               const struct brain_policy *,
                               const struct brain_node_decisions *,
                               uint64_t gen, struct mcos_table **out,
                               char *err, size_t errlen);

#endif /* BRAIN_COMPILE_H */
