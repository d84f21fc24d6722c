/*
 * The cluster model: every node the brain knows, what it said about itself
 * (hello), its latest telemetry (reports), its health, and its tables (the
 * one compiled for the current generation and the one it acknowledged).
 *
 * This is soft state: agents are the source of truth and resend their full
 * description to a restarted brain, which rebuilds the model from them.
 *
 * Where it sits: filled by the aggregate step, read by decide/compile and
 * the API.  Thread-safety: loop thread only.
 */
#ifndef BRAIN_CLUSTER_H
#define BRAIN_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus.h"
#include "ids.h"
#include "liveness.h"
#include "mcos.pb-c.h"
#include "routed.h"
#include "table.h"

/* Tier kinds indexed directly (TierKind values). */
#define BRAIN_N_TIERS (MCOS__TIER_KIND__TIER_REMOTE + 1)

struct brain_tier_usage {
    uint64_t used;     /* bytes in use */
    uint64_t capacity; /* bytes available in all */
    uint64_t objects;  /* objects held */
};

/* A replication task an operator (or policy) asked for: copy `object`
 * from this node to `peer`'s `tier`.  It is compiled into this node's
 * table until `peer` reports the object stored. */
struct brain_replica {
    uint64_t object;                   /* what */
    char peer[MCOS_NODE_NAME_MAX + 1]; /* to whom */
    int tier;                          /* into which tier there */
};

struct brain_node {
    char name[MCOS_NODE_NAME_MAX + 1]; /* unique node name */
    struct mcos_boot_id boot_id;       /* the agent process we know */
    Mcos__Hello *hello;                /* its last hello (owned) */
    enum brain_liveness live;          /* health */
    uint64_t joined_us;                /* when this boot said hello */
    uint64_t last_heard_us;            /* last valid message, monotonic */
    uint64_t last_seq;                 /* last report sequence number */
    uint64_t applied_gen;              /* generation it acknowledged */
    bool stale;                        /* the agent says it lost us */
    struct brain_tier_usage tiers[BRAIN_N_TIERS]; /* last reported usage */
    uint32_t queued_requests;                     /* last reported load */
    uint32_t running_requests;                    /* last reported load */
    uint32_t cpu_load_milli;                      /* last reported load */
    uint64_t queued_prefill_blocks; /* last reported: engines' queue */
    uint32_t engines;               /* engines that reported it */
    uint64_t reports;               /* reports received this boot */
    uint64_t events;                /* object events received */
    uint64_t events_dropped;        /* events the agent could not send */
    struct mcos_table *desired;     /* compiled for the current gen */
    struct mcos_table *previous;    /* the one desired before: a delta base
                                       for a node that acks a generation
                                       late */
    struct mcos_table *confirmed;   /* the table at applied_gen, or NULL */
    struct mcos_bus_request *watch; /* held long poll, or NULL */
    uint64_t watch_gen;             /* applied gen the watch carried */
    uint16_t idx;                   /* small id for the prefix index */
    bool kv_gone;                   /* its index entries were dropped */
    struct brain_routed routed;     /* requests routed here that its
                                       load reports do not show yet */
    struct brain_replica *replicas; /* tasks with this node as source */
    size_t n_replicas;              /* their count */
    uint64_t replicas_ver;          /* bumped when `replicas` changes */
};

struct brain_cluster {
    struct brain_node **nodes; /* sorted by name */
    size_t n;                  /* number of nodes */
    size_t cap;                /* allocated slots */
    uint16_t next_idx;         /* next node id for the prefix index */
};

void brain_cluster_init(struct brain_cluster *);
void brain_cluster_destroy(struct brain_cluster *);

struct brain_node *brain_cluster_find(const struct brain_cluster *,
                                      const char *name);

/* Adds a node with a valid name; -EEXIST if present. */
int brain_cluster_add(struct brain_cluster *, const char *name,
                      struct brain_node **out);

/* Counts nodes in a state. */
size_t brain_cluster_count(const struct brain_cluster *, enum brain_liveness);

/* Replaces the node's desired table (taking ownership). */
void brain_node_set_desired(struct brain_node *, struct mcos_table *);

/* Records that the node runs `gen`: keeps the matching table as the base
 * for the next delta when we have it. */
void brain_node_ack(struct brain_node *, uint64_t gen);

/* Forgets a node's runtime state after it restarted (new boot id). */
void brain_node_reset(struct brain_node *);

/* Drops a held watch without answering. */
void brain_node_drop_watch(struct brain_node *);

#endif /* BRAIN_CLUSTER_H */
