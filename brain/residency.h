/*
 * Residency: the brain's prediction of which KV blocks will be read again,
 * compiled into the eviction order agents follow (common/residency_table.h).
 *
 * Where it sits: the decide step.  Recency alone (LRU) keeps every prefix
 * for about as long as the cache's turnover, so a conversation that comes
 * back after a longer pause finds its prefix gone, while prefixes that
 * will never be read again sit until they age out.  What tells them apart
 * is learned from what the brain already sees:
 *
 *   - a request is routed (brain_residency_request()): when its chain
 *     runs through the last block of an earlier turn, that turn
 *     continued, and the pause since it was routed is counted for its
 *     class, once;
 *   - the request is itself a turn (brain_residency_turn()): its prompt's
 *     full blocks, and the answer's (expected) length, the output_len of
 *     /v1/route, which puts the turn in a reuse class
 *     (mcos_residency_class()).  On the Mooncake conversation trace,
 *     5.5% of the turns with answers under 32 tokens (tool calls,
 *     clarifying questions) are continued more than 15 minutes later,
 *     against 0.2-1.6% of the others: recency alone cannot see that.
 *
 * From those counts, per class c and idle-age bucket a, the estimated
 * chance that a turn idle that long is continued later:
 *
 *     (continued after bucket a + 1/2) / (not continued before a + 1)
 *
 * which brain_residency_table() writes into the table.  Executors evict
 * the least recently used object of the class whose score is lowest at
 * its age.  Every block also keeps the class of the last turn whose
 * prompt held it (brain_residency_class_of()): what the brain tells the
 * nodes holding it.
 *
 * Memory is bounded: a fixed table of `max_blocks` entries of 24 bytes
 * (block hash, time, class, tail flag); when a probe window is full the
 * entry that changed longest ago is forgotten.  The counts are halved
 * every `decay_turns` turns so the table follows a changing workload.
 * No clock is read: callers pass `now`.  Deterministic.
 *
 * Thread-safety: none; one owner (the brain's loop, or one simulation).
 */
#ifndef MCOS_BRAIN_RESIDENCY_H
#define MCOS_BRAIN_RESIDENCY_H

#include <stdint.h>

#include "residency_table.h"

struct brain_residency;

struct brain_residency_options {
    uint32_t max_blocks;  /* blocks tracked, rounded up to a power of two;
                             0: 1 << 20 */
    uint64_t age_unit_ns; /* width of age bucket 0; 0: 10 s */
    uint32_t decay_turns; /* halve the counts after this many turns;
                             0: 65536 */
};

/* 0, -EINVAL (max_blocks above 1 << 28), -ENOMEM. */
int brain_residency_create(const struct brain_residency_options *,
                           struct brain_residency **out);
/* NULL is a no-op. */
void brain_residency_destroy(struct brain_residency *);

/* A request with chain[0..n-1] (block hashes, parents first) arrived at
 * now_ns.  Its deepest block (past the first) that was the last of an
 * earlier turn counts that turn as continued after its pause, once.  1 if
 * it counted one, 0 if not. */
int brain_residency_request(struct brain_residency *, const uint64_t *chain,
                            uint32_t n, uint64_t now_ns);

/* A turn at now_ns (routed, in the brain): chain[0..n-1] are its
 * prompt's full blocks and its answer is answer_tokens long.  Every block
 * takes the turn's class; with n >= 2 the last block is remembered as the
 * turn's end (a one-block prompt ends on a block other conversations
 * share).  0, or -EINVAL for n == 0. */
int brain_residency_turn(struct brain_residency *, const uint64_t *chain,
                         uint32_t n, uint32_t answer_tokens, uint64_t now_ns);

/* The class of block `hash`: the last turn's that named it, or -ENOENT
 * when it is not tracked. */
int brain_residency_class_of(const struct brain_residency *, uint64_t hash);

/* The learned counts of class c (< MCOS_RESIDENCY_CLASSES): its turns,
 * and continued[a], the turns continued after a pause in age bucket a. */
void brain_residency_counts(const struct brain_residency *, unsigned c,
                            uint64_t *turns,
                            uint64_t continued[MCOS_RESIDENCY_AGES]);

/* Compiles the current estimate into *out. */
void brain_residency_table(const struct brain_residency *,
                           struct mcos_residency_table *out);

#endif /* MCOS_BRAIN_RESIDENCY_H */
