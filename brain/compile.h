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
 *
 * Where it sits: steps 3-4 (decide, compile).  Thread-safety: pure.
 */
#ifndef BRAIN_COMPILE_H
#define BRAIN_COMPILE_H

#include <stddef.h>
#include <stdint.h>

#include "cluster.h"
#include "table.h"

struct brain_policy {
    uint32_t high_watermark_pct;      /* demote above this usage */
    uint32_t low_watermark_pct;       /* demote down to this */
    uint32_t admit_min_hotness_milli; /* admission threshold x 1000 */
    uint32_t report_interval_ms;      /* agents' report interval */
};

int brain_compile_node(const struct brain_cluster *, const struct brain_node *,
                       const struct brain_policy *, uint64_t gen,
                       struct mcos_table **out, char *err, size_t errlen);

#endif /* BRAIN_COMPILE_H */
