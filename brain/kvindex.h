/*
 * The brain's view of KV blocks: the global prefix index (prefix_index.h)
 * fed by agents' object events of class kv_block, with namespaces (model
 * names) interned to the small ids the index uses.
 *
 * Event mapping: STORED(tier) records the node as a holder in that tier;
 * REMOVED(tier) forgets it there; PROMOTED/DEMOTED(tier) moves the node's
 * holding to that tier; ACCESSED heats the block.  A node that fails or
 * restarts stops counting at once (the agent resends what it holds when
 * it says hello again).
 *
 * Where it sits: aggregate step, read by routing (decide).  Thread-safety:
 * loop thread only.
 */
#ifndef BRAIN_KVINDEX_H
#define BRAIN_KVINDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcos.pb-c.h"
#include "prefix_index.h"

struct brain_kv;

int brain_kv_create(struct brain_kv **out);
void brain_kv_destroy(struct brain_kv *);

/* The id of a namespace ("" is "default"); with `create`, interns it.
 * -ENOENT if unknown and not created, -ENOSPC when the table is full,
 * -EINVAL for a name that is not 1-63 of [A-Za-z0-9._/-]. */
int brain_kv_ns(struct brain_kv *, const char *name, bool create);

/* Folds a report's kv_block events in; returns how many were used. */
size_t brain_kv_report(struct brain_kv *, uint16_t node, const Mcos__Report *,
                       uint64_t now_us);

/* The node left, failed or restarted. */
void brain_kv_node_gone(struct brain_kv *, uint16_t node);

/* See brain_prefix_index_find_matches. */
int brain_kv_match(struct brain_kv *, uint16_t ns, const uint64_t *chain,
                   size_t n, struct brain_prefix_match *out, size_t cap);

/* The index itself, for decide steps that scan it (replication); the
 * caller must not change it.  Namespaces are ids 0 .. brain_kv_n_ns - 1. */
struct brain_prefix_index *brain_kv_index(struct brain_kv *);
size_t brain_kv_n_ns(const struct brain_kv *);
/* The largest block stored in a namespace so far (bytes; 0 unknown): what
 * replication charges a copy against its byte budget. */
uint64_t brain_kv_ns_block_bytes(const struct brain_kv *, uint16_t ns);
/* A namespace's name by id, or NULL. */
const char *brain_kv_ns_name(const struct brain_kv *, uint16_t ns);

/* Spreads the index's cleanup of gone nodes over ticks. */
void brain_kv_tick(struct brain_kv *);

struct brain_kv_stats {
    uint64_t blocks;       /* blocks indexed */
    uint64_t memory_bytes; /* bytes the index holds */
    uint64_t namespaces;   /* namespaces interned */
    uint64_t events;       /* kv_block events folded in */
};

void brain_kv_stats(const struct brain_kv *, struct brain_kv_stats *);

#endif /* BRAIN_KVINDEX_H */
