/*
 * Typed identifiers.  Ids are wrapped in single-member structs passed by
 * value (nng's idiom), so the compiler refuses a generation where an object
 * id was meant.  Node names are validated here, once, for every path they
 * arrive by (wire, config, CLI, HTTP).
 *
 * Thread-safety: pure functions.
 */
#ifndef MCOS_IDS_H
#define MCOS_IDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A policy table generation: increases by one per compile that changes
 * anything (or per forced sync), never goes backward. */
struct mcos_gen {
    uint64_t v; /* 0 means "none yet" */
};

/* A 64-bit object id: from a name, or an engine's block hash. */
struct mcos_object_id {
    uint64_t v; /* 0 is never a valid id */
};

/* Random per agent process start; a new value means the agent restarted. */
struct mcos_boot_id {
    uint64_t v; /* never 0 */
};

static inline struct mcos_gen
mcos_gen(uint64_t v)
{
    return (struct mcos_gen){v};
}

static inline struct mcos_object_id
mcos_object_id(uint64_t v)
{
    return (struct mcos_object_id){v};
}

static inline struct mcos_boot_id
mcos_boot_id(uint64_t v)
{
    return (struct mcos_boot_id){v};
}

/* Longest node name, excluding the terminating NUL. */
#define MCOS_NODE_NAME_MAX 63

/* A node name is 1..63 characters of [A-Za-z0-9._-], starting with a letter
 * or digit: it must be safe in a file name, a URL path, an etcd key and a
 * Prometheus label without escaping. */
bool mcos_node_name_valid(const char *name);

/* A fresh random boot id (getrandom), never 0. */
struct mcos_boot_id mcos_boot_id_new(void);

/* The object id for a name: a stable 64-bit hash, never 0. */
struct mcos_object_id mcos_object_id_from_name(const char *name, size_t len);

/* A 64-bit finaliser (murmur3's fmix64): spreads ids that are small or
 * consecutive over all bits, for hash tables and deterministic spreading. */
static inline uint64_t
mcos_mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

#endif /* MCOS_IDS_H */
