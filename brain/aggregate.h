/*
 * Aggregate: folds what agents say (hello, report, watch) into the cluster
 * model, after validating every field.  A message that fails validation
 * changes nothing and yields an error naming the problem, which the brain
 * sends back to the agent and counts.
 *
 * Where it sits: step 2 of the data flow (observe -> aggregate).
 * Thread-safety: loop thread only.
 */
#ifndef BRAIN_AGGREGATE_H
#define BRAIN_AGGREGATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster.h"

/* Limits on what one message may carry. */
#define BRAIN_MAX_TIERS     8
#define BRAIN_MAX_GPUS      64
#define BRAIN_MAX_NICS      64
#define BRAIN_MAX_LINKS     128 /* NICs and peer links in a report */
#define BRAIN_MAX_ENDPOINTS 16
#define BRAIN_MAX_EVENTS    65536
#define BRAIN_MAX_LABEL     63

/* Largest generation an agent may say it runs.  A brain continues above
 * the generation an agent claims and saves its counter as a JSON integer
 * (at most INT64_MAX); this leaves room for 2^62 more generations. */
#define BRAIN_MAX_GEN (UINT64_C(1) << 62)

/* What an accepted message changed, for the decide step. */
struct brain_agg_result {
    struct brain_node *node; /* the node it concerned */
    bool topology_changed;   /* membership, tiers or endpoints changed */
    bool rejoined;           /* a new boot of a known node */
    bool revived;            /* a failed node came back */
    bool replicas_done;      /* replication tasks completed */
};

/* Replication tasks open per source node. */
#define BRAIN_MAX_REPLICAS 4096

/* Asks `node` to copy `object` to `peer`'s `tier` (an existing task for
 * the same object and peer is updated).  -ENOENT for an unknown node or
 * peer, -EINVAL for a bad request, -ENOSPC when too many are open. */
int brain_replica_add(struct brain_cluster *, const char *node,
                      uint64_t object, const char *peer, int tier, char *err,
                      size_t errlen);

/* `peer` reported `object` stored: the tasks that asked for it are done.
 * True if any was. */
bool brain_replica_done(struct brain_cluster *, const char *peer,
                        uint64_t object);

/* Validates a hello; 0 or -EINVAL with `err` saying why. */
int brain_hello_check(const Mcos__Hello *, char *err, size_t errlen);

/* Folds a hello in.  On success the node owns `*hello` (set to NULL). */
int brain_aggregate_hello(struct brain_cluster *, Mcos__Hello **hello,
                          uint64_t now_us, struct brain_agg_result *,
                          char *err, size_t errlen);

/* Folds a report in.  -ENOENT: unknown node or an old boot (the agent
 * should say hello again).  -ESTALE: an old or repeated sequence number. */
int brain_aggregate_report(struct brain_cluster *, const Mcos__Report *,
                           uint64_t now_us, struct brain_agg_result *,
                           char *err, size_t errlen);

/* Checks a watch and records the generation it carries. */
int brain_aggregate_watch(struct brain_cluster *, const Mcos__Watch *,
                          uint64_t now_us, struct brain_agg_result *,
                          char *err, size_t errlen);

/* Advances every node's liveness to `now`; true if any node failed or came
 * back (the peers in tables change). */
bool brain_aggregate_tick(struct brain_cluster *, uint64_t now_us,
                          const struct brain_liveness_cfg *);

/* The node's etcd membership lease ended: it is failed now, whatever its
 * silence timer says, until it is heard from again.  True if that changed
 * its state. */
bool brain_aggregate_lease_lost(struct brain_node *);

#endif /* BRAIN_AGGREGATE_H */
