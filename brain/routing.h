/*
 * Routing requests: the one place the brain turns a request's prefix
 * chain into a decision, for every transport that asks (HTTP's
 * POST /v1/route for operators and light gateways, the nng bus for high
 * request rates).  Candidates are the alive nodes; their matches come
 * from the global prefix index, their loads from reports plus what was
 * routed to them since; the decision itself is brain_route_decide().
 *
 * Copies instead of recomputing: with routing.peer_fetch_milli below
 * 1000, a node may be scored with the longest prefix another alive node
 * holds (matched_peer), at peer_fetch per block it lacks.  When the chosen
 * node won that way, the brain orders the copy at once: a replication
 * task (brain_replica_add) per missing block, from the holder to the
 * chosen node's DRAM, which the holder's agent carries out over the
 * fabric (at most BRAIN_ROUTE_MAX_COPY blocks a request).  The answer says
 * so (`replication`).
 *
 * Where it sits: decide step.  Thread-safety: loop thread only.
 */
#ifndef BRAIN_ROUTING_H
#define BRAIN_ROUTING_H

#include <stddef.h>
#include <stdint.h>

#include "route.h"

struct brain;

/* Longest chain a request may carry: 4096 blocks of 512 tokens is a
 * 2M-token context. */
#define BRAIN_ROUTE_MAX_BLOCKS 4096

/* Most blocks one request may have copied from a peer (the rest of a
 * longer peer match is not counted). */
#define BRAIN_ROUTE_MAX_COPY 256

struct brain_routing {
    size_t n;                        /* candidates (alive nodes) */
    struct brain_route_node *cand;   /* their inputs */
    struct brain_route_score *score; /* their scores */
    size_t *ranked;                  /* candidate indexes, best first */
    size_t best;                     /* the chosen candidate */
    size_t chain_len;                /* blocks in the request */
    char explain[512];               /* why, in one sentence */
    size_t copied;                   /* blocks ordered copied to best */
    char replication[200];           /* what was ordered, or "none: ..." */
};

/* Decides and counts the request against the chosen node.  Errors:
 * -EINVAL with `err` for a bad namespace or chain length, -EAGAIN when no
 * node is alive, -ENOMEM.  On success free `out` with
 * brain_routing_free. */
int brain_routing_decide(struct brain *, const char *ns, const uint64_t *chain,
                         size_t n, const char *rack, struct brain_routing *out,
                         char *err, size_t errlen);
void brain_routing_free(struct brain_routing *);

/* After a successful decide: the request is a turn on the chosen node,
 * expecting an answer of output_len tokens; the residency prediction
 * learns from it (en_residency). */
void brain_routing_learn(struct brain *, const struct brain_routing *,
                         const uint64_t *chain, size_t n, uint64_t output_len);

#endif /* BRAIN_ROUTING_H */
