/*
 * The object registry: every object this node holds, by 64-bit id, with
 * its residency (state, tier, extent), intent (class, hotness, expected
 * reuse), pins, checksum and access statistics, plus one LRU list per
 * tier that demotion walks from the cold end.
 *
 * The registry only stores; the residency state machine is driven by the
 * store and the executor (agent/store.c), which alone change `state`,
 * `tier` and `ext`.
 *
 * Where it sits: the execute step's bookkeeping.  Thread-safety: loop
 * thread only (the executor thread never touches objects; it copies bytes
 * between extents and reports back).
 */
#ifndef AGENT_REGISTRY_H
#define AGENT_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcos.pb-c.h"
#include "tier.h"

/* Tier kinds indexed directly (TierKind values). */
#define AGENT_N_TIERS 6 /* up to TIER_REMOTE */

enum agent_obj_state {
    AGENT_OBJ_PLACED = MCOS__OBJECT_STATE__OBJ_PLACED,     /* reserved */
    AGENT_OBJ_RESIDENT = MCOS__OBJECT_STATE__OBJ_RESIDENT, /* verified */
    AGENT_OBJ_MOVING = MCOS__OBJECT_STATE__OBJ_MOVING,     /* copy running */
};

struct agent_object {
    uint64_t id;                   /* never 0 */
    uint64_t size;                 /* bytes */
    int cls;                       /* Mcos__ObjectClass */
    uint32_t hotness_milli;        /* intent, x1000 */
    uint32_t expected_reuse;       /* intent */
    char ns[64];                   /* KV blocks: namespace (model) */
    uint64_t parent;               /* KV blocks: previous block id */
    enum agent_obj_state state;    /* residency */
    int tier;                      /* where the verified copy is */
    struct agent_tier_extent ext;  /* its extent in that tier */
    int target_tier;               /* placement: where commit sends it */
    int moving_to;                 /* MOVING: destination tier */
    uint32_t pins;                 /* explicit pins */
    uint32_t views;                /* open zero-copy views */
    uint64_t checksum;             /* XXH3-64 of the bytes */
    uint64_t hits;                 /* gets served without a fetch */
    uint64_t misses;               /* gets that had to fetch */
    bool prefetched;               /* brought by a prefetch, unused yet */
    uint64_t prefetch_deadline;    /* when that prefetch was due, us */
    uint32_t placer;               /* PLACED: the client's connection */
    void *inflight;                /* the store's move in progress, or NULL */
    void *remote;                  /* REMOTE: where (agent_fabric_loc,
                                      malloc'd, freed with the object) */
    uint64_t created_us;           /* stored, monotonic */
    uint64_t last_access_us;       /* last get, monotonic */
    uint64_t reuse_stamp;          /* demotion pass that set reuse_class */
    uint8_t reuse_class;           /* residency class from a reuse rule */
    struct agent_object *lru_prev; /* towards the hot end of tier's list */
    struct agent_object *lru_next; /* towards the cold end */
};

struct agent_registry;

int agent_registry_create(struct agent_registry **out);
/* Frees every object too. */
void agent_registry_destroy(struct agent_registry *);

struct agent_object *agent_registry_find(const struct agent_registry *,
                                         uint64_t id);

/* Allocates a zeroed object with `id`; -EEXIST if present, -EINVAL for 0.
 * It is on no LRU list until agent_registry_set_tier. */
int agent_registry_add(struct agent_registry *, uint64_t id,
                       struct agent_object **out);

/* Removes and frees. */
void agent_registry_remove(struct agent_registry *, struct agent_object *);

/* Puts the object on `tier`'s LRU list (hot end), leaving any other. */
void agent_registry_set_tier(struct agent_registry *, struct agent_object *,
                             int tier);

/* Moves the object to the hot end of its tier's list. */
void agent_registry_touch(struct agent_registry *, struct agent_object *);

/* The coldest object of a tier (NULL if none); walk with ->lru_prev. */
struct agent_object *agent_registry_coldest(const struct agent_registry *,
                                            int tier);

size_t agent_registry_count(const struct agent_registry *);

/* Calls cb for every object, in no particular order; stop by returning
 * non-zero (which is returned).  cb must not add or remove objects. */
int agent_registry_foreach(const struct agent_registry *,
                           int (*cb)(struct agent_object *, void *), void *);

const char *agent_obj_state_name(enum agent_obj_state);

#endif /* AGENT_REGISTRY_H */
