/*
 * A hash map from 64-bit keys (block ids) to 32-bit values, for the
 * evaluation harness: the simulator's per-node block tables, the bounds
 * and the cache-aware policy's approximate trees all map block ids to a
 * slot index.
 *
 * Open addressing with linear probing and backward-shift deletion, so
 * there are no tombstones and lookups stay short however many blocks
 * come and go.  Keys are mixed with a 64-bit finaliser first, because
 * trace block ids are small consecutive integers.  Every key is allowed,
 * 0 included (Mooncake traces use block id 0).
 *
 * Thread-safety: none; a map belongs to one simulation run.
 */
#ifndef MCOS_EVAL_U64MAP_H
#define MCOS_EVAL_U64MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct u64map_slot {
    uint64_t key;   /* block id */
    uint32_t value; /* what it maps to */
    uint32_t used;  /* 1 if the slot holds a key */
};

struct u64map {
    struct u64map_slot *slots; /* 2^k slots */
    size_t mask;               /* number of slots - 1 */
    size_t count;              /* keys stored */
};

/* Sets up an empty map sized for `expected` keys without growing.
 * Returns 0 or -ENOMEM. */
int u64map_init(struct u64map *, size_t expected);
/* Frees the slots; the map may be initialised again. */
void u64map_free(struct u64map *);
/* Removes every key and keeps the memory. */
void u64map_clear(struct u64map *);

/* Looks `key` up: true and *value set if present. */
bool u64map_get(const struct u64map *, uint64_t key, uint32_t *value);
/* Inserts or overwrites.  Returns 0 or -ENOMEM (map unchanged). */
int u64map_put(struct u64map *, uint64_t key, uint32_t value);
/* Removes `key`; returns true if it was there. */
bool u64map_del(struct u64map *, uint64_t key);

#endif /* MCOS_EVAL_U64MAP_H */
