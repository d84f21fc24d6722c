/*
 * Residency tables: which of a tier's objects to evict first, as the brain
 * compiles it and as agents (and the evaluation's simulator) execute it.
 *
 * Where it sits: the brain's decide step (brain/residency.h) learns, per
 * reuse class, how likely an object idle for a given time is to be read
 * again, and writes that into a struct mcos_residency_table (a few hundred
 * bytes).  Executors keep one LRU list per class in each tier; when a tier
 * needs room they look at the least recently used object of every class
 * and evict the one whose (class, idle age) scores lowest
 * (mcos_residency_pick()).  With every object in one class this is exactly
 * LRU, which is what a node does before it has a table.
 *
 * A class is the length of the answer that last ended a turn on the
 * object's prefix, in powers of two (mcos_residency_class()): the brain
 * learns per class how often and after how long a conversation continues.
 * Age buckets grow by half octaves: bucket 0 is [0, unit), then the
 * bounds go x 3/2 and x 4/3 in turn (unit, 1.5, 2, 3, 4, 6, 8 ... x unit:
 * bucket 2k+1 opens at unit x 2^k); the last one is open-ended.  Whole
 * octaves made the result depend on where the boundaries fell (0.8
 * points on the conversation trace between a 10 s and a 15 s unit).
 *
 * Thread-safety: pure functions over caller-owned data.
 */
#ifndef MCOS_COMMON_RESIDENCY_TABLE_H
#define MCOS_COMMON_RESIDENCY_TABLE_H

#include <stddef.h>
#include <stdint.h>

#define MCOS_RESIDENCY_CLASSES 8
#define MCOS_RESIDENCY_AGES    24
/* Answers shorter than this are class 0; each class doubles it. */
#define MCOS_RESIDENCY_CLASS0_TOKENS 16

/* A compiled residency table. */
struct mcos_residency_table {
    uint64_t age_unit_ns; /* width of age bucket 0; 0: no table (LRU) */
    /* score[c][a]: estimated chance, x 65535, that an object of class c
     * idle for an age in bucket a is read again; lowest goes first. */
    uint16_t score[MCOS_RESIDENCY_CLASSES][MCOS_RESIDENCY_AGES];
};

/* The reuse class of an object whose last turn had an answer of
 * `answer_tokens` tokens. */
unsigned mcos_residency_class(uint32_t answer_tokens);

/* The age bucket of an idle time under `age_unit_ns` (> 0). */
unsigned mcos_residency_age(uint64_t age_unit_ns, uint64_t idle_ns);

/*
 * Picks the class to evict from: idle_ns[c] is the idle time of class
 * c's least recently used object, present has bit c set when class c has
 * one.  Lowest score first; equal scores go to the longer idle, then to
 * the lower class.  Without a table (NULL or age_unit_ns 0) the longest
 * idle wins (LRU over all classes).  The class, or -ENOENT when `present`
 * is 0.
 */
int mcos_residency_pick(const struct mcos_residency_table *,
                        const uint64_t idle_ns[MCOS_RESIDENCY_CLASSES],
                        uint32_t present);

#endif /* MCOS_COMMON_RESIDENCY_TABLE_H */
