/*
 * Request routing: which node should serve a request, from where its KV
 * prefix already lives (the prefix index's matches), each node's load, and
 * topology.  A pure function of its inputs, so tests drive it directly and
 * /v1/route explains exactly what it computed.
 *
 * Cost of sending the request to node i (in "blocks to compute" units):
 *
 *     prefill  = chain_len - max(matched_i, peer_i) (blocks still to prefill)
 *     fetch    = dram_fetch * (blocks matched only in DRAM)
 *              + nvme_fetch * (blocks matched only on NVMe)
 *              + peer_fetch * (blocks only a peer holds: peer_i - matched_i)
 *     load     = load_weight * (queued + running + routed, not yet
 *                               reported: brain/routed.h)
 *              + queue_block_weight * (prefill blocks queued on it: what
 *                its engines report through mcos_report_load, plus the
 *                estimate for the requests routed there, not yet reported)
 *     topology = rack_penalty if the request names a rack and i is not in it
 *     cost     = prefill + fetch + load + topology
 *
 * peer_i (matched_peer) is the prefix this node could copy from another
 * node over the fabric before the prefill (0 when the caller cannot order
 * such a fetch); it counts only when peer_fetch < 1, i.e. when moving a
 * block is cheaper than computing it.  Without it a lightly loaded node
 * that lacks a prefix looks as expensive as recomputing the prefix, so
 * locality and balance fight; with it, the prefix can follow the request.
 *
 * Herding: the bounded-load rule of consistent hashing with bounded loads
 * -- a node whose load would exceed (1 + eps) * (mean load + 1) is not
 * chosen unless every node would, so one node holding a popular prefix is
 * not flooded.  Ties go to the node named first.
 *
 * Where it sits: decide step.  Thread-safety: pure.
 */
#ifndef BRAIN_ROUTE_H
#define BRAIN_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct brain_route_weights {
    double dram_fetch;  /* cost of a block matched in DRAM, vs 1 to compute */
    double nvme_fetch;  /* cost of a block matched on NVMe */
    double peer_fetch;  /* cost of a block copied from a peer (>= 1: never) */
    double load_weight; /* cost per unit of load (post_route: a request) */
    double queue_block_weight; /* cost per prefill block queued there */
    double bound_eps;          /* bounded-load slack */
    double rack_penalty;       /* cost of leaving the requested rack */
};

struct brain_route_node {
    const char *name;      /* node name */
    const char *rack;      /* its rack label, "" if none */
    uint32_t matched_hbm;  /* prefix held in HBM (or faster) */
    uint32_t matched_dram; /* prefix held in DRAM or faster */
    uint32_t matched;      /* prefix held anywhere (incl. NVMe) */
    double load;           /* queued + running + routed, not yet reported */
    uint32_t matched_peer; /* prefix fetchable from a peer, 0 if none */
    double queued_blocks;  /* prefill blocks waiting there */
};

struct brain_route_score {
    double cost;     /* total, lower is better */
    double prefill;  /* blocks to compute */
    double fetch;    /* tier and peer fetch cost */
    double load;     /* load cost */
    double topology; /* rack penalty */
    bool over_bound; /* excluded by the bounded-load rule */
};

/* Scores every node and returns the chosen one's index (or -EINVAL for no
 * nodes).  chain_len counts the request's blocks; rack may be NULL. */
int brain_route_decide(const struct brain_route_node *nodes, size_t n,
                       size_t chain_len, const char *rack,
                       const struct brain_route_weights *,
                       struct brain_route_score *scores);

#endif /* BRAIN_ROUTE_H */
