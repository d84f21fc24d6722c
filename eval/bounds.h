/*
 * Upper bounds on prefix reuse, to put the policies' figures in scale.
 *
 *   - Infinite global cache: one cache of unlimited size shared by the
 *     whole cluster, fed the trace in arrival order.  A request reuses
 *     the longest prefix of its blocks that any earlier request had (a
 *     block seen before is a hit).  No policy can reuse more, whatever it
 *     routes or moves, since a block must have been computed once.
 *   - Belady MIN per node: given where a policy ran each request (the
 *     simulator's routing and its prefill order on each node), the most
 *     prefix reuse any replacement policy could get on each node alone,
 *     with the node's whole capacity (HBM + DRAM + NVMe blocks) as one
 *     cache and no fabric.  Computed with Belady's MIN with bypass: on a
 *     miss, the block is cached unless every cached block is needed
 *     sooner, in which case nothing is kept; when room is needed the
 *     block whose next use is furthest away goes.  Accesses are the
 *     requests' blocks in prefill start order, block by block.
 *
 * MIN maximises block hits.  With prefix-chained ids (a block's id fixes
 * its parent) a parent is always needed no later than its child, so MIN
 * never keeps a child without its parent, block hits are prefix hits, and
 * the figure is the optimum for prefix reuse too (up to the last partial
 * block of a prompt, which weighs its own token count).  For traces that
 * break the chaining the count is still of prefix hits, and is then only
 * a good estimate, not a proven bound.
 *
 * Token weighting is the simulator's: block i of a prompt counts its
 * tokens (trace_block_tokens()).  The bound ignores decode occupancy
 * (pinned and reserved HBM), so it is optimistic by that much.
 *
 * Thread-safety: none needed; the functions only read their inputs.
 */
#ifndef MCOS_EVAL_BOUNDS_H
#define MCOS_EVAL_BOUNDS_H

#include <stddef.h>
#include <stdint.h>

#include "sim.h"
#include "trace.h"

/* Reuse figures of a bound. */
struct bounds_result {
    uint64_t requests;     /* requests counted */
    uint64_t input_tokens; /* their prompt tokens */
    uint64_t hit_tokens;   /* prompt tokens reused (prefix) */
    uint64_t hit_blocks;   /* blocks reused (prefix) */
    uint64_t blocks;       /* block accesses */
};

/* The infinite global cache over the whole trace.  0 or -ENOMEM. */
int bounds_infinite(const struct trace *, struct bounds_result *out);

/* Belady MIN for one cache of `capacity` blocks fed the requests
 * ids[0..n-1] of the trace in that order; adds to *out (so that per-node
 * figures sum).  0, -EINVAL (an id out of range), or -ENOMEM. */
int bounds_belady(const struct trace *, const uint32_t *ids, size_t n,
                  uint64_t capacity, struct bounds_result *out);

/* Belady MIN per node for a finished run, each node's capacity being its
 * three tiers together; *out is the sum over nodes. */
int bounds_belady_sim(const struct sim *, struct bounds_result *out);

#endif /* MCOS_EVAL_BOUNDS_H */
