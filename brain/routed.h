/*
 * Routed work: the requests the brain routed to one node that the node's
 * load reports do not show yet.  The route counts them as that node's
 * load, so a burst for one hot prefix spreads within the bounded-load rule
 * instead of piling onto the node that holds it.
 *
 * Each route is remembered with when it was made and the blocks it will
 * prefill there.  It stops counting when
 *
 *   - an engine load report covers it: the node's engines reported their
 *     queues (mcos_report_load) at least `transit_us` after the route was
 *     made, by which time the request has reached its engine and the
 *     report counts it (the report says how old its engines' figures are,
 *     so "covered" is exact to the clocks' tick, not to the report
 *     interval); or
 *   - `hold_us` passed without such a report: nothing else says when a
 *     node without reporting engines finishes the work, so it is held for
 *     about a request's life.
 *
 * Routes are kept in the order they were made (the brain's monotonic
 * clock), so both rules drop from the front: O(1) amortised per route.  At
 * most BRAIN_ROUTED_MAX are kept per node; past that the oldest stops
 * counting early (counted in `overflow`).
 *
 * Where it sits: aggregate step (a node's load as the route sees it).
 * Thread-safety: none; the brain's loop thread owns it.
 */
#ifndef BRAIN_ROUTED_H
#define BRAIN_ROUTED_H

#include <stddef.h>
#include <stdint.h>

#define BRAIN_ROUTED_MAX 65536

struct brain_routed_route {
    uint64_t at_us; /* when it was routed */
    double blocks;  /* blocks it will prefill there */
};

struct brain_routed {
    struct brain_routed_route *v; /* ring of routes, oldest at head */
    size_t head, n, cap;          /* ... its front, count, room */
    double blocks;                /* sum of the counted routes' blocks */
    uint64_t overflow;            /* routes dropped early for room */
};

/* Counts a route made at `now_us` (not before the last one added).
 * -ENOMEM leaves it uncounted. */
int brain_routed_add(struct brain_routed *, uint64_t now_us, double blocks);

/* Drops the routes made more than hold_us before now_us. */
void brain_routed_expire(struct brain_routed *, uint64_t now_us,
                         uint64_t hold_us);

/* A load report whose engines' figures date from sampled_us: drops the
 * routes made at or before sampled_us - transit_us. */
void brain_routed_covered(struct brain_routed *, uint64_t sampled_us,
                          uint64_t transit_us);

/* Routes counted now, and the blocks they will prefill. */
static inline size_t
brain_routed_requests(const struct brain_routed *r)
{
    return r->n;
}

static inline double
brain_routed_blocks(const struct brain_routed *r)
{
    return r->blocks; /* exactly 0 whenever none is counted (pop()) */
}

/* What a route decided at now_us would count (the routes made after
 * now_us - hold_us), without dropping anything: for views. */
void brain_routed_peek(const struct brain_routed *, uint64_t now_us,
                       uint64_t hold_us, size_t *requests, double *blocks);

/* Forgets every route (the node restarted or failed); keeps the memory. */
void brain_routed_clear(struct brain_routed *);

void brain_routed_destroy(struct brain_routed *);

#endif /* BRAIN_ROUTED_H */
