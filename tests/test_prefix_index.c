/*
 * Unit tests for brain/prefix_index: hand-computed matches, tiers, gaps,
 * node removal and sweep, growth against a brute-force reference, hotness
 * decay on a fake clock, namespaces, and exact error codes.  No timing:
 * speed is the benchmark's business.
 */
#include "prefix_index.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SRAM   BRAIN_PREFIX_TIER_SRAM
#define HBM    BRAIN_PREFIX_TIER_HBM
#define DRAM   BRAIN_PREFIX_TIER_DRAM
#define NVME   BRAIN_PREFIX_TIER_NVME
#define BIT(t) BRAIN_PREFIX_TIER_BIT(t)
#define SEC    1000000ull

static struct brain_prefix_index *
new_index(size_t initial, uint64_t half_life_us)
{
    struct brain_prefix_index_options o = {
        .initial_blocks = initial,
        .half_life_us = half_life_us,
    };
    struct brain_prefix_index *idx = NULL;
    ck_assert_int_eq(brain_prefix_index_create(&o, &idx), 0);
    ck_assert_ptr_nonnull(idx);
    return idx;
}

/* Block hashes of the hand-made chain "A": prefix-chained by hand. */
static const uint64_t chain_a[6] = {
    0xa0a0a0a0a0a0a0a0ull, 0xa1a1a1a1a1a1a1a1ull, 0xa2a2a2a2a2a2a2a2ull,
    0xa3a3a3a3a3a3a3a3ull, 0xa4a4a4a4a4a4a4a4ull, 0xa5a5a5a5a5a5a5a5ull,
};

static void
put(struct brain_prefix_index *idx, uint16_t ns, uint16_t node, uint8_t tier,
    const uint64_t *chain, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        ck_assert_int_ge(brain_prefix_index_store(idx, ns, node, tier,
                                                  chain[i],
                                                  i ? chain[i - 1] : 0),
                         0);
}

/*
 * The fixture behind several tests.  Expected matched[SRAM..NVME]:
 *   node 1: HBM 0..5                    -> 0 6 6 6
 *   node 2: HBM 0..2, DRAM 3..4         -> 0 3 5 5
 *   node 3: SRAM 0, NVMe 1..5           -> 1 1 1 6
 *   node 4: DRAM 0, 1, 3 (a gap at 2)   -> 0 0 2 2
 *   node 5: HBM 1..5, not block 0       -> absent
 *   node 6: block 0 in HBM and DRAM, block 1 in DRAM -> 0 1 2 2
 * Order: by matched[4], [3], [2], [1] descending: 1, 3, 2, 6, 4.
 */
static void
fixture_a(struct brain_prefix_index *idx)
{
    put(idx, 0, 1, HBM, chain_a, 0, 6);
    put(idx, 0, 2, HBM, chain_a, 0, 3);
    put(idx, 0, 2, DRAM, chain_a, 3, 5);
    put(idx, 0, 3, SRAM, chain_a, 0, 1);
    put(idx, 0, 3, NVME, chain_a, 1, 6);
    put(idx, 0, 4, DRAM, chain_a, 0, 2);
    put(idx, 0, 4, DRAM, chain_a, 3, 4);
    put(idx, 0, 5, HBM, chain_a, 1, 6);
    put(idx, 0, 6, HBM, chain_a, 0, 1);
    put(idx, 0, 6, DRAM, chain_a, 0, 2);
}

struct want {
    uint16_t node;
    uint32_t m[4]; /* matched[SRAM], [HBM], [DRAM], [NVME] */
};

static void
check_matches(struct brain_prefix_index *idx, uint16_t ns,
              const uint64_t *chain, size_t n, const struct want *w, int nw)
{
    struct brain_prefix_match out[16];
    int r = brain_prefix_index_find_matches(idx, ns, chain, n, out, 16);
    ck_assert_int_eq(r, nw);
    for (int i = 0; i < nw; i++) {
        ck_assert_uint_eq(out[i].node, w[i].node);
        ck_assert_uint_eq(out[i].matched[0], 0);
        for (int t = 1; t <= 4; t++)
            ck_assert_msg(out[i].matched[t] == w[i].m[t - 1],
                          "node %u tier %d: got %u want %u", w[i].node, t,
                          out[i].matched[t], w[i].m[t - 1]);
    }
}

START_TEST(test_create_destroy)
{
    struct brain_prefix_index *idx = (void *)1;
    brain_prefix_index_destroy(NULL);
    ck_assert_int_eq(brain_prefix_index_create(NULL, NULL), -EINVAL);
    ck_assert_int_eq(brain_prefix_index_create(NULL, &idx), 0);
    struct brain_prefix_index_stats st;
    brain_prefix_index_stats(idx, &st);
    ck_assert_uint_eq(st.blocks, 0);
    ck_assert_uint_gt(st.slots, 0);
    ck_assert_uint_gt(st.memory_bytes, 0);
    uint64_t c = 0;
    ck_assert_int_eq(
        brain_prefix_index_find_matches(idx, 0, chain_a, 6, NULL, 0), 0);
    ck_assert_int_eq(brain_prefix_index_node_blocks(idx, 0, 0, &c), 0);
    ck_assert_uint_eq(c, 0);
    brain_prefix_index_destroy(idx);
}
END_TEST

/* Hand-computed cases over fixture A, one chain per row. */
static const struct {
    const char *name;
    uint64_t chain[6];
    size_t n;
    int nw;
    struct want w[6];
} match_cases[] = {
    {"full chain",
     {0xa0a0a0a0a0a0a0a0ull, 0xa1a1a1a1a1a1a1a1ull, 0xa2a2a2a2a2a2a2a2ull,
      0xa3a3a3a3a3a3a3a3ull, 0xa4a4a4a4a4a4a4a4ull, 0xa5a5a5a5a5a5a5a5ull},
     6,
     5,
     {{1, {0, 6, 6, 6}},
      {3, {1, 1, 1, 6}},
      {2, {0, 3, 5, 5}},
      {6, {0, 1, 2, 2}},
      {4, {0, 0, 2, 2}}}},
    {"first four blocks",
     {0xa0a0a0a0a0a0a0a0ull, 0xa1a1a1a1a1a1a1a1ull, 0xa2a2a2a2a2a2a2a2ull,
      0xa3a3a3a3a3a3a3a3ull},
     4,
     5,
     {{1, {0, 4, 4, 4}},
      {2, {0, 3, 4, 4}},
      {3, {1, 1, 1, 4}},
      {6, {0, 1, 2, 2}},
      {4, {0, 0, 2, 2}}}},
    {"one block",
     {0xa0a0a0a0a0a0a0a0ull},
     1,
     5,
     {{3, {1, 1, 1, 1}},
      {1, {0, 1, 1, 1}},
      {2, {0, 1, 1, 1}},
      {6, {0, 1, 1, 1}},
      {4, {0, 0, 1, 1}}}},
    {"unknown block 2 ends every match",
     {0xa0a0a0a0a0a0a0a0ull, 0xa1a1a1a1a1a1a1a1ull, 0x1234ull,
      0xa3a3a3a3a3a3a3a3ull},
     4,
     5,
     {{1, {0, 2, 2, 2}},
      {2, {0, 2, 2, 2}},
      {6, {0, 1, 2, 2}},
      {4, {0, 0, 2, 2}},
      {3, {1, 1, 1, 2}}}},
    {"chain starting past block 0",
     {0xa1a1a1a1a1a1a1a1ull},
     1,
     6,
     {{1, {0, 1, 1, 1}},
      {2, {0, 1, 1, 1}},
      {5, {0, 1, 1, 1}},
      {4, {0, 0, 1, 1}},
      {6, {0, 0, 1, 1}},
      {3, {0, 0, 0, 1}}}},
    {"unknown first block", {0x42ull, 0xa0a0a0a0a0a0a0a0ull}, 2, 0, {{0}}},
};

START_TEST(test_find_matches_table)
{
    struct brain_prefix_index *idx = new_index(0, 0);
    fixture_a(idx);
    check_matches(idx, 0, match_cases[_i].chain, match_cases[_i].n,
                  match_cases[_i].w, match_cases[_i].nw);
    brain_prefix_index_destroy(idx);
}
END_TEST

START_TEST(test_out_cap)
{
    struct brain_prefix_index *idx = new_index(0, 0);
    struct brain_prefix_match out[2];
    fixture_a(idx);
    memset(out, 0xff, sizeof(out));
    /* Returns how many nodes match; writes only the best out_cap. */
    ck_assert_int_eq(
        brain_prefix_index_find_matches(idx, 0, chain_a, 6, out, 2), 5);
    ck_assert_uint_eq(out[0].node, 1);
    ck_assert_uint_eq(out[1].node, 3);
    ck_assert_int_eq(
        brain_prefix_index_find_matches(idx, 0, chain_a, 6, NULL, 0), 5);
    brain_prefix_index_destroy(idx);
}
END_TEST

START_TEST(test_two_tiers)
{
    struct brain_prefix_index *idx = new_index(0, 0);
    struct brain_prefix_holder h[4];
    struct brain_prefix_block b;
    uint64_t c;

    /* Block 0 in HBM and DRAM on node 7, block 1 in DRAM only. */
    ck_assert_int_eq(brain_prefix_index_store(idx, 0, 7, HBM, chain_a[0], 0),
                     1);
    ck_assert_int_eq(brain_prefix_index_store(idx, 0, 7, DRAM, chain_a[0], 0),
                     1);
    /* Idempotent: the same report again changes nothing. */
    ck_assert_int_eq(brain_prefix_index_store(idx, 0, 7, DRAM, chain_a[0], 0),
                     0);
    ck_assert_int_eq(
        brain_prefix_index_store(idx, 0, 7, DRAM, chain_a[1], chain_a[0]), 1);
    ck_assert_int_eq(
        brain_prefix_index_lookup(idx, 0, chain_a[0], 0, &b, h, 4), 1);
    ck_assert_uint_eq(h[0].node, 7);
    ck_assert_uint_eq(h[0].tiers, BIT(HBM) | BIT(DRAM));
    ck_assert_uint_eq(b.hash, chain_a[0]);
    ck_assert_uint_eq(b.parent, 0);
    ck_assert_int_eq(
        brain_prefix_index_lookup(idx, 0, chain_a[1], 0, &b, h, 4), 1);
    ck_assert_uint_eq(b.parent, chain_a[0]);

    check_matches(idx, 0, chain_a, 2, (const struct want[]){{7, {0, 1, 2, 2}}},
                  1);
    ck_assert_int_eq(brain_prefix_index_node_blocks(idx, 7, 0, &c), 0);
    ck_assert_uint_eq(c, 2);
    ck_assert_int_eq(brain_prefix_index_node_blocks(idx, 7, HBM, &c), 0);
    ck_assert_uint_eq(c, 1);
    ck_assert_int_eq(brain_prefix_index_node_blocks(idx, 7, DRAM, &c), 0);
    ck_assert_uint_eq(c, 2);

    /* Demotion: HBM copy dropped, the DRAM one stays. */
    ck_assert_int_eq(brain_prefix_index_remove(idx, 0, 7, HBM, chain_a[0]), 0);
    ck_assert_int_eq(brain_prefix_index_remove(idx, 0, 7, HBM, chain_a[0]),
                     -ENOENT);
    check_matches(idx, 0, chain_a, 2, (const struct want[]){{7, {0, 0, 2, 2}}},
                  1);
    ck_assert_int_eq(brain_prefix_index_node_blocks(idx, 7, 0, &c), 0);
    ck_assert_uint_eq(c, 2);
    ck_assert_int_eq(brain_prefix_index_node_blocks(idx, 7, HBM, &c), 0);
    ck_assert_uint_eq(c, 0);

    /* Last copy gone: the block leaves the index. */
    ck_assert_int_eq(brain_prefix_index_remove(idx, 0, 7, DRAM, chain_a[0]),
                     0);
    ck_assert_int_eq(
        brain_prefix_index_lookup(idx, 0, chain_a[0], 0, NULL, NULL, 0),
        -ENOENT);
    ck_assert_int_eq(
        brain_prefix_index_find_matches(idx, 0, chain_a, 2, NULL, 0), 0);
    struct brain_prefix_index_stats st;
    brain_prefix_index_stats(idx, &st);
    ck_assert_uint_eq(st.blocks, 1);
    brain_prefix_index_destroy(idx);
}
END_TEST

START_TEST(test_gap)
{
    struct brain_prefix_index *idx = new_index(0, 0);
    put(idx, 0, 9, HBM, chain_a, 0, 2);
    put(idx, 0, 9, HBM, chain_a, 3, 6);
    /* Holds 0, 1, 3, 4, 5: the gap at 2 ends the match at 2. */
    check_matches(idx, 0, chain_a, 6, (const struct want[]){{9, {0, 2, 2, 2}}},
                  1);
    put(idx, 0, 9, NVME, chain_a, 2, 3);
    check_matches(idx, 0, chain_a, 6, (const struct want[]){{9, {0, 2, 2, 6}}},
                  1);
    brain_prefix_index_destroy(idx);
}
END_TEST

START_TEST(test_remove_node)
{
    struct brain_prefix_index *idx = new_index(0, 0);
    struct brain_prefix_index_stats st;
    uint64_t c;

    fixture_a(idx);
    brain_prefix_index_stats(idx, &st);
    ck_assert_uint_eq(st.blocks, 6);
    /* Node 1 holds six blocks; gone at once from queries and counts. */
    ck_assert_int_eq(brain_prefix_index_remove_node(idx, 1), 6);
    ck_assert_int_eq(brain_prefix_index_node_blocks(idx, 1, 0, &c), 0);
    ck_assert_uint_eq(c, 0);
    check_matches(idx, 0, chain_a, 6,
                  (const struct want[]){{3, {1, 1, 1, 6}},
                                        {2, {0, 3, 5, 5}},
                                        {6, {0, 1, 2, 2}},
                                        {4, {0, 0, 2, 2}}},
                  4);
    ck_assert_int_eq(brain_prefix_index_remove(idx, 0, 1, HBM, chain_a[0]),
                     -ENOENT);
    /* A node holding nothing: nothing to do. */
    ck_assert_int_eq(brain_prefix_index_remove_node(idx, 1), 0);
    ck_assert_int_eq(brain_prefix_index_remove_node(idx, 100), 0);

    /* Remove the rest except node 3; then sweep everything. */
    ck_assert_int_eq(brain_prefix_index_remove_node(idx, 2), 5);
    ck_assert_int_eq(brain_prefix_index_remove_node(idx, 4), 3);
    ck_assert_int_eq(brain_prefix_index_remove_node(idx, 5), 5);
    ck_assert_int_eq(brain_prefix_index_remove_node(idx, 6), 2);
    brain_prefix_index_stats(idx, &st);
    ck_assert_uint_eq(st.dead_nodes, 5);
    ck_assert_int_eq(brain_prefix_index_sweep(idx, 1), 1);
    while (brain_prefix_index_sweep(idx, 3) == 1)
        ;
    brain_prefix_index_stats(idx, &st);
    ck_assert_uint_eq(st.dead_nodes, 0);
    ck_assert_uint_eq(st.blocks, 6); /* node 3 holds all six */
    ck_assert_int_eq(brain_prefix_index_remove_node(idx, 3), 6);
    ck_assert_int_eq(brain_prefix_index_sweep(idx, SIZE_MAX), 0);
    brain_prefix_index_stats(idx, &st);
    ck_assert_uint_eq(st.blocks, 0);
    ck_assert_int_eq(
        brain_prefix_index_find_matches(idx, 0, chain_a, 6, NULL, 0), 0);

    /* A removed node that comes back before the sweep: sweep, then store. */
    fixture_a(idx);
    ck_assert_int_eq(brain_prefix_index_remove_node(idx, 1), 6);
    put(idx, 0, 1, DRAM, chain_a, 0, 1);
    brain_prefix_index_stats(idx, &st);
    ck_assert_uint_eq(st.dead_nodes, 0);
    ck_assert_int_eq(brain_prefix_index_node_blocks(idx, 1, 0, &c), 0);
    ck_assert_uint_eq(c, 1);
    check_matches(idx, 0, chain_a, 2,
                  (const struct want[]){{2, {0, 2, 2, 2}},
                                        {6, {0, 1, 2, 2}},
                                        {4, {0, 0, 2, 2}},
                                        {3, {1, 1, 1, 2}},
                                        {1, {0, 0, 1, 1}}},
                  5);
    brain_prefix_index_destroy(idx);
}
END_TEST

START_TEST(test_overflow_holders)
{
    struct brain_prefix_index *idx = new_index(0, 0);
    struct brain_prefix_holder h[200];
    struct brain_prefix_index_stats st;

    /* A hot prefix replicated to many nodes spills out of the slot. */
    for (uint16_t node = 0; node < 150; node++)
        put(idx, 0, node, (uint8_t)(1 + node % 4), chain_a, 0,
            (size_t)(1 + node % 6));
    ck_assert_int_eq(
        brain_prefix_index_lookup(idx, 0, chain_a[0], 0, NULL, h, 200), 150);
    for (uint16_t node = 0; node < 150; node++) {
        ck_assert_uint_eq(h[node].node, node);
        ck_assert_uint_eq(h[node].tiers, BIT(1 + node % 4));
    }
    brain_prefix_index_stats(idx, &st);
    ck_assert_uint_ge(st.overflow_blocks, 1);
    struct brain_prefix_match out[200];
    ck_assert_int_eq(
        brain_prefix_index_find_matches(idx, 0, chain_a, 6, out, 200), 150);
    /* Best: node 5 holds all six blocks in HBM (5 % 4 = 1 -> tier 2). */
    ck_assert_uint_eq(out[0].node, 5);
    ck_assert_uint_eq(out[0].matched[NVME], 6);
    for (int i = 0; i < 150; i++) {
        uint16_t node = out[i].node;
        uint32_t len = 1 + node % 6, tier = 1 + node % 4;
        for (uint32_t t = 1; t <= 4; t++)
            ck_assert_uint_eq(out[i].matched[t], t >= tier ? len : 0);
    }
    /* Shrink back below the inline limit. */
    for (uint16_t node = 2; node < 150; node++)
        ck_assert_int_eq(brain_prefix_index_remove(idx, 0, node,
                                                   (uint8_t)(1 + node % 4),
                                                   chain_a[0]),
                         0);
    ck_assert_int_eq(
        brain_prefix_index_lookup(idx, 0, chain_a[0], 0, NULL, h, 200), 2);
    ck_assert_uint_eq(h[0].node, 0);
    ck_assert_uint_eq(h[1].node, 1);
    brain_prefix_index_destroy(idx);
}
END_TEST

START_TEST(test_hotness_decay)
{
    /* Half-life 1 s: hotness halves every second of the fake clock. */
    struct brain_prefix_index *idx = new_index(0, 1 * SEC);
    struct brain_prefix_block b;

    put(idx, 0, 1, HBM, chain_a, 0, 3);
    ck_assert_int_eq(
        brain_prefix_index_lookup(idx, 0, chain_a[0], 0, &b, NULL, 0), 1);
    ck_assert_double_eq(b.hotness, 0.0);

    ck_assert_int_eq(
        brain_prefix_index_access(idx, 0, 1, chain_a[0], 10 * SEC), 0);
    ck_assert_int_eq(
        brain_prefix_index_lookup(idx, 0, chain_a[0], 10 * SEC, &b, NULL, 0),
        1);
    ck_assert_double_eq_tol(b.hotness, 1.0, 1e-6);
    /* Pure in time: asking about the past does not change anything. */
    brain_prefix_index_lookup(idx, 0, chain_a[0], 11 * SEC, &b, NULL, 0);
    ck_assert_double_eq_tol(b.hotness, 0.5, 0.5 * 0.02);
    brain_prefix_index_lookup(idx, 0, chain_a[0], 13 * SEC, &b, NULL, 0);
    ck_assert_double_eq_tol(b.hotness, 0.125, 0.125 * 0.02);
    brain_prefix_index_lookup(idx, 0, chain_a[0], 9 * SEC, &b, NULL, 0);
    ck_assert_double_eq_tol(b.hotness, 1.0, 1e-6);

    /* 1 decayed to 0.5 at 11 s, plus one access. */
    brain_prefix_index_access(idx, 0, 1, chain_a[0], 11 * SEC);
    brain_prefix_index_lookup(idx, 0, chain_a[0], 11 * SEC, &b, NULL, 0);
    ck_assert_double_eq_tol(b.hotness, 1.5, 1.5 * 0.02);
    /* A late event from 10 s counts as 0.5 at 11 s. */
    brain_prefix_index_access(idx, 0, 1, chain_a[0], 10 * SEC);
    brain_prefix_index_lookup(idx, 0, chain_a[0], 11 * SEC, &b, NULL, 0);
    ck_assert_double_eq_tol(b.hotness, 2.0, 2.0 * 0.02);
    /* Long idle: decays to nothing, never negative or NaN. */
    brain_prefix_index_lookup(idx, 0, chain_a[0], 100000 * SEC, &b, NULL, 0);
    ck_assert_double_eq(b.hotness, 0.0);

    /* Ranking: block 2 accessed 3x at 20 s beats block 1 5x at 18 s. */
    for (int i = 0; i < 5; i++)
        brain_prefix_index_access(idx, 0, 1, chain_a[1], 18 * SEC);
    for (int i = 0; i < 3; i++)
        brain_prefix_index_access(idx, 0, 1, chain_a[2], 20 * SEC);
    struct brain_prefix_block top[4];
    ck_assert_int_eq(brain_prefix_index_top_k_hot(idx, 0, 20 * SEC, top, 4),
                     3);
    ck_assert_uint_eq(top[0].hash, chain_a[2]);
    ck_assert_double_eq_tol(top[0].hotness, 3.0, 0.06);
    ck_assert_uint_eq(top[1].hash, chain_a[1]);
    ck_assert_double_eq_tol(top[1].hotness, 1.25, 0.025);
    ck_assert_uint_eq(top[2].hash, chain_a[0]);
    ck_assert_uint_eq(top[2].parent, 0);
    ck_assert_uint_eq(top[1].parent, chain_a[0]);
    ck_assert_uint_eq(top[1].nholders, 1);
    ck_assert_int_eq(brain_prefix_index_top_k_hot(idx, 0, 20 * SEC, top, 1),
                     1);
    ck_assert_uint_eq(top[0].hash, chain_a[2]);
    /* At 40 s: 3 * 2^-20 against 5 * 2^-22; the order holds. */
    ck_assert_int_eq(brain_prefix_index_top_k_hot(idx, 0, 40 * SEC, top, 2),
                     2);
    ck_assert_uint_eq(top[0].hash, chain_a[2]);
    ck_assert_int_eq(brain_prefix_index_access(idx, 0, 1, 0x999, 0), -ENOENT);
    brain_prefix_index_destroy(idx);
}
END_TEST

static int
count_cb(const struct brain_prefix_block *blk, void *arg)
{
    int *seen = arg;
    ck_assert_double_ge(blk->hotness, 1.0);
    (*seen)++;
    return 0;
}

static int
stop_cb(const struct brain_prefix_block *blk, void *arg)
{
    (void)blk;
    (void)arg;
    return 7;
}

START_TEST(test_for_each_hot)
{
    struct brain_prefix_index *idx = new_index(0, 1 * SEC);
    int seen = 0;

    put(idx, 0, 1, HBM, chain_a, 0, 6);
    for (int b = 0; b < 6; b++)
        for (int i = 0; i < b; i++)
            brain_prefix_index_access(idx, 0, 1, chain_a[b], 0);
    /* Blocks 1..5 were accessed b times: those with >= 3 are 3, 4, 5. */
    ck_assert_int_eq(
        brain_prefix_index_for_each_hot(idx, 0, 0, 3.0, count_cb, &seen), 3);
    ck_assert_int_eq(seen, 3);
    ck_assert_int_eq(
        brain_prefix_index_for_each_hot(idx, 0, 0, 1.0, stop_cb, NULL), 7);
    /* Two half-lives later: blocks 4 (4 / 4) and 5 (5 / 4) reach 1. */
    seen = 0;
    ck_assert_int_eq(
        brain_prefix_index_for_each_hot(idx, 0, 2 * SEC, 1.0, count_cb, &seen),
        2);
    brain_prefix_index_destroy(idx);
}
END_TEST

START_TEST(test_namespaces)
{
    struct brain_prefix_index *idx = new_index(0, 0);
    struct brain_prefix_holder h[4];
    struct brain_prefix_block top[8];

    /* The same hashes in two models are different blocks. */
    put(idx, 0, 1, HBM, chain_a, 0, 6);
    put(idx, 1, 2, DRAM, chain_a, 0, 3);
    check_matches(idx, 0, chain_a, 6, (const struct want[]){{1, {0, 6, 6, 6}}},
                  1);
    check_matches(idx, 1, chain_a, 6, (const struct want[]){{2, {0, 0, 3, 3}}},
                  1);
    ck_assert_int_eq(
        brain_prefix_index_find_matches(idx, 2, chain_a, 6, NULL, 0), 0);
    ck_assert_int_eq(brain_prefix_index_remove(idx, 1, 1, HBM, chain_a[0]),
                     -ENOENT);
    ck_assert_int_eq(brain_prefix_index_remove(idx, 1, 2, DRAM, chain_a[0]),
                     0);
    ck_assert_int_eq(
        brain_prefix_index_lookup(idx, 0, chain_a[0], 0, NULL, h, 4), 1);
    ck_assert_uint_eq(h[0].node, 1);
    ck_assert_int_eq(
        brain_prefix_index_lookup(idx, 1, chain_a[0], 0, NULL, h, 4), -ENOENT);
    brain_prefix_index_access(idx, 1, 2, chain_a[1], 0);
    ck_assert_int_eq(brain_prefix_index_top_k_hot(idx, 1, 0, top, 8), 2);
    ck_assert_uint_eq(top[0].hash, chain_a[1]);
    ck_assert_uint_eq(top[0].ns, 1);
    ck_assert_int_eq(brain_prefix_index_top_k_hot(idx, 0, 0, top, 8), 6);
    ck_assert_int_eq(
        brain_prefix_index_top_k_hot(idx, BRAIN_PREFIX_MAX_NS - 1, 0, top, 8),
        0);
    /* The highest namespace id works like any other. */
    put(idx, BRAIN_PREFIX_MAX_NS - 1, 3, SRAM, chain_a, 0, 1);
    check_matches(idx, BRAIN_PREFIX_MAX_NS - 1, chain_a, 6,
                  (const struct want[]){{3, {1, 1, 1, 1}}}, 1);
    brain_prefix_index_destroy(idx);
}
END_TEST

START_TEST(test_apply_batch)
{
    struct brain_prefix_index *idx = new_index(0, 1 * SEC);
    struct brain_prefix_event ev[] = {
        {chain_a[0], 0, 0, 1, BRAIN_PREFIX_EV_STORED, HBM},
        {chain_a[1], chain_a[0], 0, 1, BRAIN_PREFIX_EV_STORED, HBM},
        {chain_a[1], chain_a[0], 0, 1, BRAIN_PREFIX_EV_STORED, HBM},
        {chain_a[1], 0, 0, 1, BRAIN_PREFIX_EV_ACCESSED, 0},
        {chain_a[5], 0, 0, 1, BRAIN_PREFIX_EV_REMOVED, HBM}, /* unknown */
        {chain_a[4], 0, 0, 1, BRAIN_PREFIX_EV_ACCESSED, 0},  /* unknown */
        {chain_a[0], 0, 0, 1, BRAIN_PREFIX_EV_STORED, DRAM},
        {chain_a[0], 0, 0, 1, BRAIN_PREFIX_EV_REMOVED, HBM},
    };
    struct brain_prefix_block b;

    /* Changes: store, store, access, store DRAM, remove HBM = 5. */
    ck_assert_int_eq(brain_prefix_index_apply(idx, ev, 8, 5 * SEC), 5);
    check_matches(idx, 0, chain_a, 2, (const struct want[]){{1, {0, 0, 2, 2}}},
                  1);
    brain_prefix_index_lookup(idx, 0, chain_a[1], 5 * SEC, &b, NULL, 0);
    ck_assert_double_eq_tol(b.hotness, 1.0, 1e-6);
    ck_assert_int_eq(brain_prefix_index_apply(idx, NULL, 0, 0), 0);
    brain_prefix_index_destroy(idx);
}
END_TEST

/* Each row is one malformed call; the index must be left unchanged. */
enum bad_op { B_STORE, B_REMOVE, B_ACCESS, B_FIND, B_APPLY, B_COUNT };

static const struct {
    const char *name;
    enum bad_op op;
    uint16_t ns;
    uint16_t node;
    uint8_t tier;
    size_t n;
    int err;
} bad_cases[] = {
    {"store tier 0", B_STORE, 0, 1, 0, 0, -EINVAL},
    {"store tier 5", B_STORE, 0, 1, 5, 0, -EINVAL},
    {"store node 4096", B_STORE, 0, 4096, HBM, 0, -EINVAL},
    {"store ns too big", B_STORE, BRAIN_PREFIX_MAX_NS, 1, HBM, 0, -EINVAL},
    {"remove tier 0", B_REMOVE, 0, 1, 0, 0, -EINVAL},
    {"remove tier 9", B_REMOVE, 0, 1, 9, 0, -EINVAL},
    {"remove node 65535", B_REMOVE, 0, 65535, HBM, 0, -EINVAL},
    {"remove ns too big", B_REMOVE, 65535, 1, HBM, 0, -EINVAL},
    {"access node 4096", B_ACCESS, 0, 4096, 0, 0, -EINVAL},
    {"access ns too big", B_ACCESS, BRAIN_PREFIX_MAX_NS, 1, 0, 0, -EINVAL},
    {"find n = 0", B_FIND, 0, 0, 0, 0, -EINVAL},
    {"find ns too big", B_FIND, BRAIN_PREFIX_MAX_NS, 0, 0, 3, -EINVAL},
    {"apply bad tier", B_APPLY, 0, 1, 7, 1, -EINVAL},
    {"apply bad node", B_APPLY, 0, 5000, HBM, 1, -EINVAL},
    {"apply bad ns", B_APPLY, 40000, 1, HBM, 1, -EINVAL},
    {"count node 4096", B_COUNT, 0, 4096, 0, 0, -EINVAL},
    {"count tier 5", B_COUNT, 0, 1, 5, 0, -EINVAL},
};

START_TEST(test_bad_input)
{
    struct brain_prefix_index *idx = new_index(0, 0);
    struct brain_prefix_match out[8];
    struct brain_prefix_event ev[2] = {
        {chain_a[0], 0, 0, 20, BRAIN_PREFIX_EV_STORED, SRAM},
        {chain_a[3], 0, bad_cases[_i].ns, bad_cases[_i].node,
         BRAIN_PREFIX_EV_STORED, bad_cases[_i].tier},
    };
    uint64_t c;
    int r = 0;

    fixture_a(idx);
    switch (bad_cases[_i].op) {
    case B_STORE:
        r = brain_prefix_index_store(idx, bad_cases[_i].ns, bad_cases[_i].node,
                                     bad_cases[_i].tier, chain_a[0], 0);
        break;
    case B_REMOVE:
        r = brain_prefix_index_remove(idx, bad_cases[_i].ns,
                                      bad_cases[_i].node, bad_cases[_i].tier,
                                      chain_a[0]);
        break;
    case B_ACCESS:
        r = brain_prefix_index_access(idx, bad_cases[_i].ns,
                                      bad_cases[_i].node, chain_a[0], 0);
        break;
    case B_FIND:
        r = brain_prefix_index_find_matches(idx, bad_cases[_i].ns, chain_a,
                                            bad_cases[_i].n, out, 8);
        break;
    case B_APPLY:
        /* The good first event must not be applied either. */
        r = brain_prefix_index_apply(idx, ev, 2, 0);
        break;
    case B_COUNT:
        r = brain_prefix_index_node_blocks(idx, bad_cases[_i].node,
                                           bad_cases[_i].tier, &c);
        break;
    }
    ck_assert_msg(r == bad_cases[_i].err, "%s: got %d", bad_cases[_i].name, r);
    check_matches(idx, 0, chain_a, 6, match_cases[0].w, match_cases[0].nw);
    brain_prefix_index_destroy(idx);
}
END_TEST

static int
nop_cb(const struct brain_prefix_block *blk, void *arg)
{
    (void)blk;
    (void)arg;
    return 0;
}

START_TEST(test_bad_pointers)
{
    struct brain_prefix_index *idx = new_index(0, 0);
    struct brain_prefix_block b;
    uint64_t c;

    ck_assert_int_eq(brain_prefix_index_find_matches(idx, 0, NULL, 3, NULL, 0),
                     -EINVAL);
    ck_assert_int_eq(
        brain_prefix_index_find_matches(idx, 0, chain_a, 3, NULL, 2), -EINVAL);
    ck_assert_int_eq(
        brain_prefix_index_find_matches(NULL, 0, chain_a, 3, NULL, 0),
        -EINVAL);
    ck_assert_int_eq(brain_prefix_index_apply(idx, NULL, 2, 0), -EINVAL);
    ck_assert_int_eq(brain_prefix_index_lookup(idx, 0, 1, 0, &b, NULL, 2),
                     -EINVAL);
    ck_assert_int_eq(brain_prefix_index_node_blocks(idx, 0, 0, NULL), -EINVAL);
    ck_assert_int_eq(brain_prefix_index_node_blocks(NULL, 0, 0, &c), -EINVAL);
    ck_assert_int_eq(brain_prefix_index_top_k_hot(idx, 0, 0, NULL, 3),
                     -EINVAL);
    ck_assert_int_eq(brain_prefix_index_for_each_hot(idx, 0, 0, 0, NULL, NULL),
                     -EINVAL);
    ck_assert_int_eq(
        brain_prefix_index_for_each_hot(idx, 40000, 0, 0, nop_cb, NULL),
        -EINVAL);
    ck_assert_int_eq(brain_prefix_index_remove_node(idx, 4096), -EINVAL);
    ck_assert_int_eq(brain_prefix_index_remove_node(NULL, 1), -EINVAL);
    ck_assert_int_eq(brain_prefix_index_sweep(NULL, 1), -EINVAL);
    ck_assert_int_eq(brain_prefix_index_store(NULL, 0, 1, HBM, 1, 0), -EINVAL);
    brain_prefix_index_destroy(idx);
}
END_TEST

/* --- randomized comparison against a brute-force reference ------------ */

#define R_NS     2
#define R_CHAINS 60
#define R_LEN    24
#define R_NODES  40
#define R_KEYS   (R_CHAINS * R_LEN)

struct ref {
    uint8_t mask[R_NS][R_KEYS][R_NODES]; /* tier bits per node per key */
};

static uint64_t rng_state;

static uint64_t
rnd(void)
{
    /* xorshift64*: seeded, so a failure reproduces. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static uint64_t
key_hash(int key)
{
    /* Random-looking but fixed hashes; chains are rows of R_LEN keys. */
    uint64_t x = (uint64_t)key * 0x9e3779b97f4a7c15ull + 12345;
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 29;
    return x;
}

static void
ref_matches(const struct ref *ref, int ns, const int *keys, size_t n,
            uint16_t node, uint32_t matched[5])
{
    for (int t = 1; t <= 4; t++) {
        uint32_t len = 0;
        while (len < n) {
            uint8_t m = ref->mask[ns][keys[len]][node];
            if (m == 0 || (unsigned)__builtin_ctz(m) + 1 > (unsigned)t)
                break;
            len++;
        }
        matched[t] = len;
    }
}

static void
ref_verify(struct brain_prefix_index *idx, const struct ref *ref)
{
    struct brain_prefix_holder h[R_NODES];
    struct brain_prefix_match out[R_NODES];
    size_t live_blocks = 0;

    for (int ns = 0; ns < R_NS; ns++) {
        for (int k = 0; k < R_KEYS; k++) {
            int want = 0;
            for (int nd = 0; nd < R_NODES; nd++)
                want += ref->mask[ns][k][nd] != 0;
            int r = brain_prefix_index_lookup(idx, (uint16_t)ns, key_hash(k),
                                              0, NULL, h, R_NODES);
            if (want == 0) {
                ck_assert_int_eq(r, -ENOENT);
                continue;
            }
            live_blocks++;
            ck_assert_int_eq(r, want);
            for (int j = 0; j < r; j++)
                ck_assert_uint_eq(h[j].tiers, ref->mask[ns][k][h[j].node]);
        }
        for (int c = 0; c < R_CHAINS; c++) {
            int keys[R_LEN];
            uint64_t chain[R_LEN];
            size_t n = 1 + rnd() % R_LEN;
            for (size_t i = 0; i < n; i++) {
                keys[i] = c * R_LEN + (int)i;
                chain[i] = key_hash(keys[i]);
            }
            int r = brain_prefix_index_find_matches(idx, (uint16_t)ns, chain,
                                                    n, out, R_NODES);
            int want = 0;
            for (int nd = 0; nd < R_NODES; nd++)
                want += ref->mask[ns][keys[0]][nd] != 0;
            ck_assert_int_eq(r, want);
            for (int j = 0; j < r; j++) {
                uint32_t m[5];
                ref_matches(ref, ns, keys, n, out[j].node, m);
                for (int t = 1; t <= 4; t++)
                    ck_assert_uint_eq(out[j].matched[t], m[t]);
                if (j > 0)
                    ck_assert_uint_ge(out[j - 1].matched[4],
                                      out[j].matched[4]);
            }
        }
    }
    for (int nd = 0; nd < R_NODES; nd++) {
        uint64_t want[5] = {0}, got;
        for (int ns = 0; ns < R_NS; ns++)
            for (int k = 0; k < R_KEYS; k++) {
                uint8_t m = ref->mask[ns][k][nd];
                want[0] += m != 0;
                for (int t = 1; t <= 4; t++)
                    want[t] += (m >> (t - 1)) & 1;
            }
        for (uint8_t t = 0; t <= 4; t++) {
            brain_prefix_index_node_blocks(idx, (uint16_t)nd, t, &got);
            ck_assert_uint_eq(got, want[t]);
        }
    }
    /* Once swept, the table holds exactly the live blocks. */
    struct brain_prefix_index_stats st;
    brain_prefix_index_stats(idx, &st);
    if (st.dead_nodes == 0)
        ck_assert_uint_eq(st.blocks, live_blocks);
}

static const uint64_t random_seeds[] = {1, 42, 0xdeadbeef, 777};

START_TEST(test_random_vs_reference)
{
    struct ref *ref = calloc(1, sizeof(*ref));
    struct brain_prefix_index *idx = new_index(0, 0);
    struct brain_prefix_index_stats st;

    ck_assert_ptr_nonnull(ref);
    rng_state = random_seeds[_i];
    for (int step = 0; step < 60000; step++) {
        uint64_t x = rnd();
        int ns = (int)(x % R_NS);
        /* Skew to a few chains so some blocks get many holders. */
        int c =
            (int)((x >> 8) % 8 == 0 ? (x >> 16) % 3 : (x >> 16) % R_CHAINS);
        int k = c * R_LEN + (int)((x >> 24) % R_LEN);
        uint16_t node = (uint16_t)((x >> 32) % R_NODES);
        uint8_t tier = (uint8_t)(1 + (x >> 40) % 4);
        unsigned op = (unsigned)((x >> 48) % 100);
        uint8_t *m = &ref->mask[ns][k][node];
        int r;

        if (op < 60) {
            r = brain_prefix_index_store(idx, (uint16_t)ns, node, tier,
                                         key_hash(k), 0);
            ck_assert_int_eq(r, (*m & BIT(tier)) ? 0 : 1);
            *m |= (uint8_t)BIT(tier);
        } else if (op < 97) {
            r = brain_prefix_index_remove(idx, (uint16_t)ns, node, tier,
                                          key_hash(k));
            ck_assert_int_eq(r, (*m & BIT(tier)) ? 0 : -ENOENT);
            *m &= (uint8_t)~BIT(tier);
        } else if (op < 98) {
            /* Node failure, swept a little at a time between events. */
            uint64_t held = 0;
            for (int s = 0; s < R_NS; s++)
                for (int kk = 0; kk < R_KEYS; kk++) {
                    held += ref->mask[s][kk][node] != 0;
                    ref->mask[s][kk][node] = 0;
                }
            ck_assert_int_eq(brain_prefix_index_remove_node(idx, node),
                             (int)held);
        } else {
            brain_prefix_index_sweep(idx, 1 + rnd() % 200);
        }
        if (step % 5000 == 4999)
            ref_verify(idx, ref);
    }
    ref_verify(idx, ref);
    ck_assert_int_eq(brain_prefix_index_sweep(idx, SIZE_MAX), 0);
    ref_verify(idx, ref);
    brain_prefix_index_stats(idx, &st);
    ck_assert_uint_gt(st.rehashes, 0);
    brain_prefix_index_destroy(idx);
    free(ref);
}
END_TEST

START_TEST(test_growth_many_blocks)
{
    /* 200k blocks from a tiny start: every one must survive rebuilds. */
    struct brain_prefix_index *idx = new_index(0, 0);
    struct brain_prefix_index_stats st;
    struct brain_prefix_holder h[4];
    struct brain_prefix_block b;
    const int n = 200000;

    for (int i = 0; i < n; i++)
        ck_assert_int_eq(brain_prefix_index_store(
                             idx, (uint16_t)(i % 3), (uint16_t)(i % 4095),
                             (uint8_t)(1 + i % 4), key_hash(i),
                             key_hash(i - 1)),
                         1);
    brain_prefix_index_stats(idx, &st);
    ck_assert_uint_eq(st.blocks, (uint64_t)n);
    ck_assert_uint_ge(st.rehashes, 5);
    /* 32-byte slots at 53-80 % load, plus fixed per-index state. */
    ck_assert_uint_le(st.memory_bytes, (uint64_t)n * 64 + (1u << 20));
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(brain_prefix_index_lookup(idx, (uint16_t)(i % 3),
                                                   key_hash(i), 0, &b, h, 4),
                         1);
        ck_assert_uint_eq(h[0].node, i % 4095);
        ck_assert_uint_eq(b.hash, key_hash(i));
        ck_assert_uint_eq(b.parent, key_hash(i - 1));
        ck_assert_int_eq(
            brain_prefix_index_lookup(idx, (uint16_t)((i + 1) % 3),
                                      key_hash(i), 0, NULL, NULL, 0),
            -ENOENT);
    }
    /* Reserve ahead: no rebuild while the next 100k arrive. */
    ck_assert_int_eq(brain_prefix_index_reserve(idx, (size_t)n + 100000), 0);
    brain_prefix_index_stats(idx, &st);
    uint64_t rh = st.rehashes;
    for (int i = n; i < n + 100000; i++)
        brain_prefix_index_store(idx, 0, 1, HBM, key_hash(i), 0);
    brain_prefix_index_stats(idx, &st);
    ck_assert_uint_eq(st.rehashes, rh);
    brain_prefix_index_destroy(idx);
}
END_TEST

/* Large batches (past the prefetch distance) must equal single calls. */
START_TEST(test_apply_matches_single_calls)
{
    struct brain_prefix_index *a = new_index(0, 1 * SEC);
    struct brain_prefix_index *b = new_index(0, 1 * SEC);
    enum { N = 5000 };
    struct brain_prefix_event *ev = calloc(N, sizeof(*ev));
    int want = 0;

    ck_assert_ptr_nonnull(ev);
    rng_state = 99;
    for (int i = 0; i < N; i++) {
        uint64_t x = rnd();
        ev[i].hash = key_hash((int)(x % 700));
        ev[i].parent = key_hash((int)(x % 700) - 1);
        ev[i].ns = (uint16_t)((x >> 10) % 2);
        ev[i].node = (uint16_t)((x >> 20) % 9);
        ev[i].tier = (uint8_t)(1 + (x >> 30) % 4);
        unsigned op = (unsigned)((x >> 40) % 10);
        ev[i].type = op < 6   ? BRAIN_PREFIX_EV_STORED
                     : op < 9 ? BRAIN_PREFIX_EV_REMOVED
                              : BRAIN_PREFIX_EV_ACCESSED;
    }
    for (int i = 0; i < N; i++) {
        const struct brain_prefix_event *e = &ev[i];
        int r;
        if (e->type == BRAIN_PREFIX_EV_STORED)
            r = brain_prefix_index_store(b, e->ns, e->node, e->tier, e->hash,
                                         e->parent);
        else if (e->type == BRAIN_PREFIX_EV_REMOVED)
            r = brain_prefix_index_remove(b, e->ns, e->node, e->tier,
                                          e->hash) == 0;
        else
            r = brain_prefix_index_access(b, e->ns, e->node, e->hash,
                                          3 * SEC) == 0;
        want += r > 0;
    }
    ck_assert_int_eq(brain_prefix_index_apply(a, ev, N, 3 * SEC), want);
    for (int ns = 0; ns < 2; ns++) {
        for (int k = 0; k < 700; k++) {
            struct brain_prefix_holder ha[16], hb[16];
            struct brain_prefix_block ba, bb;
            int ra = brain_prefix_index_lookup(a, (uint16_t)ns, key_hash(k),
                                               3 * SEC, &ba, ha, 16);
            int rb = brain_prefix_index_lookup(b, (uint16_t)ns, key_hash(k),
                                               3 * SEC, &bb, hb, 16);
            ck_assert_int_eq(ra, rb);
            if (ra <= 0)
                continue;
            for (int j = 0; j < ra && j < 16; j++) {
                ck_assert_uint_eq(ha[j].node, hb[j].node);
                ck_assert_uint_eq(ha[j].tiers, hb[j].tiers);
            }
            ck_assert_uint_eq(ba.parent, bb.parent);
            ck_assert_double_eq(ba.hotness, bb.hotness);
        }
    }
    free(ev);
    brain_prefix_index_destroy(a);
    brain_prefix_index_destroy(b);
}
END_TEST

/* Long chains take the other result paths: 128-bit keys, qsort_r. */
static void
check_long(struct brain_prefix_index *idx, const uint64_t *chain, size_t n,
           const struct want *w)
{
    static struct brain_prefix_match out[128];
    ck_assert_int_eq(
        brain_prefix_index_find_matches(idx, 0, chain, n, out, 128), 103);
    for (int i = 0; i < 103; i++) {
        const struct want x = i < 3 ? w[i]
                                    : (struct want){
                                          (uint16_t)(10 + i - 3),
                                          {0, 1, 1, 1},
                                      };
        ck_assert_uint_eq(out[i].node, x.node);
        for (int t = 1; t <= 4; t++)
            ck_assert_uint_eq(out[i].matched[t], x.m[t - 1]);
    }
}

START_TEST(test_long_chains)
{
    struct brain_prefix_index *idx = new_index(0, 0);
    enum { L = 70000 };
    uint64_t *c = malloc(L * sizeof(*c));

    ck_assert_ptr_nonnull(c);
    for (int i = 0; i < L; i++)
        c[i] = key_hash(100000 + i);
    put(idx, 0, 1, HBM, c, 0, L);
    put(idx, 0, 2, DRAM, c, 0, 5000);
    put(idx, 0, 3, SRAM, c, 0, 4096);
    put(idx, 0, 3, NVME, c, 4096, L);
    /* 100 more holders of block 0: 103 results, past one bitset word. */
    for (uint16_t nd = 10; nd < 110; nd++)
        put(idx, 0, nd, HBM, c, 0, 1);
    check_long(idx, c, L,
               (const struct want[]){{1, {0, L, L, L}},
                                     {3, {4096, 4096, 4096, L}},
                                     {2, {0, 0, 5000, 5000}}});
    check_long(idx, c, 5000,
               (const struct want[]){{1, {0, 5000, 5000, 5000}},
                                     {2, {0, 0, 5000, 5000}},
                                     {3, {4096, 4096, 4096, 5000}}});
    check_long(idx, c, 4095,
               (const struct want[]){{3, {4095, 4095, 4095, 4095}},
                                     {1, {0, 4095, 4095, 4095}},
                                     {2, {0, 0, 4095, 4095}}});
    brain_prefix_index_destroy(idx);
    free(c);
}
END_TEST

/*
 * The results of a call whose block 0 has at most 64 live holders are
 * those holders themselves, matched against later blocks' holders by a
 * binary search (few holders) or a merge (many), and their tier bits
 * are gathered four holders at a time; with a dead node anywhere the
 * walk maps nodes instead.  Both must give the brute-force answer for
 * every holder count around the four-holder groups and the 64-result
 * word, every tier mask, and later blocks held by one, a few or many
 * nodes, some of them not holding block 0.
 */
#define P_LEN   12
#define P_NODES 80

static void
paths_check(struct brain_prefix_index *idx, const uint64_t *chain,
            uint8_t mask[P_LEN][P_NODES], const bool *dead)
{
    struct brain_prefix_match got[P_NODES], want[P_NODES];
    int w = 0;

    for (size_t n = 1; n <= P_LEN; n++) {
        w = 0;
        for (int nd = 0; nd < P_NODES; nd++) {
            if (dead[nd] || mask[0][nd] == 0)
                continue;
            struct brain_prefix_match r = {.node = (uint16_t)nd};
            for (int t = 1; t <= 4; t++) {
                uint32_t len = 0;
                while (len < n && mask[len][nd] != 0 &&
                       (unsigned)__builtin_ctz(mask[len][nd]) < (unsigned)t)
                    len++;
                r.matched[t] = len;
            }
            int j = w++;
            while (j > 0) {
                int t = 4;
                while (t >= 1 && want[j - 1].matched[t] == r.matched[t])
                    t--;
                if (t < 1 || want[j - 1].matched[t] > r.matched[t])
                    break;
                want[j] = want[j - 1];
                j--;
            }
            want[j] = r;
        }
        int r =
            brain_prefix_index_find_matches(idx, 0, chain, n, got, P_NODES);
        ck_assert_int_eq(r, w);
        for (int j = 0; j < r; j++) {
            ck_assert_uint_eq(got[j].node, want[j].node);
            for (int t = 0; t <= 4; t++)
                ck_assert_uint_eq(got[j].matched[t], want[j].matched[t]);
        }
    }
}

START_TEST(test_result_paths)
{
    static const int counts[] = {1, 2, 3, 4, 5, 7, 8, 9, 17, 33, 63, 64, 65};
    static uint8_t mask[P_LEN][P_NODES];
    bool dead[P_NODES] = {false};
    uint64_t chain[P_LEN];

    rng_state = 0x5eed + (uint64_t)_i;
    for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
        struct brain_prefix_index *idx = new_index(0, 0);
        int nb0 = counts[c];
        memset(mask, 0, sizeof(mask));
        memset(dead, 0, sizeof(dead));
        for (int i = 0; i < P_LEN; i++)
            chain[i] = key_hash(500000 + 100 * (int)c + i);
        /* Block 0: nb0 holders spread over the nodes, any tier mask. */
        for (int j = 0; j < nb0; j++)
            mask[0][j + j * 15 / 64] = (uint8_t)(1 + rnd() % 15);
        /* Later blocks: one, two, a few, or many holders; some new. */
        for (int i = 1; i < P_LEN; i++) {
            int many = (int)(rnd() % 4);
            for (int nd = 0; nd < P_NODES; nd++) {
                bool hold = many == 0   ? rnd() % 40 == 0
                            : many == 1 ? rnd() % 8 == 0
                                        : rnd() % 8 != 0;
                if (hold && (mask[0][nd] || rnd() % 4 == 0))
                    mask[i][nd] = (uint8_t)(1 + rnd() % 15);
            }
        }
        /* Stored chain by chain in node order, so runs and hints mix. */
        for (int nd = 0; nd < P_NODES; nd++)
            for (int i = 0; i < P_LEN; i++)
                for (int t = 1; t <= 4; t++)
                    if (mask[i][nd] & BIT(t))
                        ck_assert_int_ge(brain_prefix_index_store(
                                             idx, 0, (uint16_t)nd, (uint8_t)t,
                                             chain[i], i ? chain[i - 1] : 0),
                                         0);
        paths_check(idx, chain, mask, dead);
        /*
         * Block 0's holders change (a tier added, a tier taken away, a
         * holder gone, a new one): block 0's pool array keeps its tier
         * bitsets for the walk, so each change must reach them.
         */
        for (int step = 0; step < 8; step++) {
            int nd = (int)(rnd() % P_NODES);
            uint8_t t = (uint8_t)(1 + rnd() % 4), had = mask[0][nd];
            if (step % 4 == 3 && had) {
                for (uint8_t u = 1; u <= 4; u++)
                    if (had & BIT(u))
                        ck_assert_int_eq(
                            brain_prefix_index_remove(idx, 0, (uint16_t)nd, u,
                                                      chain[0]),
                            0);
                mask[0][nd] = 0;
            } else if (had & BIT(t) && had != BIT(t)) {
                ck_assert_int_eq(brain_prefix_index_remove(
                                     idx, 0, (uint16_t)nd, t, chain[0]),
                                 0);
                mask[0][nd] &= (uint8_t)~BIT(t);
            } else {
                ck_assert_int_ge(brain_prefix_index_store(idx, 0, (uint16_t)nd,
                                                          t, chain[0], 0),
                                 0);
                mask[0][nd] |= (uint8_t)BIT(t);
            }
            paths_check(idx, chain, mask, dead);
        }
        /* A dead node (here one not holding block 0, then one that does):
         * the walk maps nodes instead of searching block 0's holders. */
        ck_assert_int_ge(brain_prefix_index_remove_node(idx, P_NODES - 1), 0);
        dead[P_NODES - 1] = true;
        paths_check(idx, chain, mask, dead);
        ck_assert_int_ge(brain_prefix_index_remove_node(idx, 0), 0);
        dead[0] = true;
        paths_check(idx, chain, mask, dead);
        /* Swept: no dead nodes left, block 0's purged array is read
         * through its tier bitsets again. */
        ck_assert_int_eq(brain_prefix_index_sweep(idx, SIZE_MAX), 0);
        paths_check(idx, chain, mask, dead);
        brain_prefix_index_destroy(idx);
    }
}
END_TEST

/* --- the store's runs, continuation hints and compaction --------------- */

static struct brain_prefix_index_stats
stats_of(const struct brain_prefix_index *idx)
{
    struct brain_prefix_index_stats st;
    brain_prefix_index_stats(idx, &st);
    return st;
}

/* Walk counters of one find_matches(): blocks, hash probes, hints, and
 * blocks passed along stretches of alike records. */
struct walk {
    uint64_t blocks, jumps, hints, skipped;
};

static struct walk
walk_of(struct brain_prefix_index *idx, const uint64_t *chain, size_t n,
        int want_nres)
{
    struct brain_prefix_index_stats a = stats_of(idx), b;
    ck_assert_int_eq(
        brain_prefix_index_find_matches(idx, 0, chain, n, NULL, 0), want_nres);
    b = stats_of(idx);
    return (struct walk){
        b.lookup_blocks - a.lookup_blocks, b.lookup_jumps - a.lookup_jumps,
        b.lookup_hints - a.lookup_hints, b.lookup_skipped - a.lookup_skipped};
}

static void
check_walk(struct walk w, uint64_t blocks, uint64_t jumps, uint64_t hints)
{
    ck_assert_uint_eq(w.blocks, blocks);
    ck_assert_uint_eq(w.jumps, jumps);
    ck_assert_uint_eq(w.hints, hints);
}

START_TEST(test_runs_and_hints)
{
    struct brain_prefix_index *idx = new_index(0, 0);
    uint64_t x[15], y[8], z[10], w[10];

    for (int i = 0; i < 15; i++)
        x[i] = key_hash(1000 + i);
    for (int i = 0; i < 8; i++)
        y[i] = key_hash(2000 + i);
    /* z and w share x's first five blocks, then branch. */
    for (int i = 0; i < 10; i++) {
        z[i] = i < 5 ? x[i] : key_hash(3000 + i);
        w[i] = i < 5 ? x[i] : key_hash(4000 + i);
    }
    /* One report stores x[0..9] in order: one run. */
    put(idx, 0, 1, HBM, x, 0, 10);
    check_walk(walk_of(idx, x, 10, 1), 9, 0, 0);
    /* Another chain, then x's next turn: a second run, reached by hint. */
    put(idx, 0, 2, HBM, y, 0, 8);
    put(idx, 0, 1, HBM, x, 10, 15);
    check_walk(walk_of(idx, x, 15, 1), 14, 0, 1);
    check_matches(idx, 0, x, 15, (const struct want[]){{1, {0, 15, 15, 15}}},
                  1);
    /* A branch at x[4]: z's tail gets the hint of x[4]. */
    put(idx, 0, 2, DRAM, z, 0, 10);
    check_walk(walk_of(idx, z, 10, 2), 9, 0, 1);
    check_matches(
        idx, 0, z, 10,
        (const struct want[]){{2, {0, 0, 10, 10}}, {1, {0, 5, 5, 5}}}, 2);
    /* x itself still runs straight through x[4] -> x[5]. */
    check_walk(walk_of(idx, x, 15, 2), 14, 0, 1);
    /* A newer branch takes the hint: z now needs a hash probe. */
    put(idx, 0, 3, NVME, w, 0, 10);
    check_walk(walk_of(idx, z, 10, 3), 9, 1, 0);
    check_walk(walk_of(idx, w, 10, 3), 9, 0, 1);
    check_matches(idx, 0, z, 10,
                  (const struct want[]){{2, {0, 0, 10, 10}},
                                        {1, {0, 5, 5, 5}},
                                        {3, {0, 0, 0, 5}}},
                  3);
    /* A chain that leaves the index: the walk stops at the unknown block. */
    uint64_t v[6] = {x[0], x[1], x[2], key_hash(9999), x[4], x[5]};
    check_walk(walk_of(idx, v, 6, 3), 3, 1, 0);
    brain_prefix_index_destroy(idx);
}
END_TEST

/* check_walk() plus the blocks passed along alike stretches. */
static void
check_walk_skip(struct walk w, uint64_t blocks, uint64_t jumps, uint64_t hints,
                uint64_t skipped)
{
    check_walk(w, blocks, jumps, hints);
    ck_assert_uint_eq(w.skipped, skipped);
}

/*
 * The run bits (link: the next record is this one's child; skip: and
 * held alike) under every kind of change, pinned by exact walk counters:
 * a stretch of alike records is passed with keys compared only, and
 * ends where the holders change (a demotion, a pool array that differs),
 * at a hole, and at the end of a run; compaction and node removal keep
 * the bits true.  The answers are checked beside the counters.
 */
START_TEST(test_run_bits)
{
    struct brain_prefix_index *idx = new_index(0, 0);
    uint64_t x[20], y[10], v[20];

    for (int i = 0; i < 20; i++)
        x[i] = key_hash(8000 + i);
    for (int i = 0; i < 10; i++)
        y[i] = key_hash(8100 + i);
    /* One report: a run held alike from end to end. */
    put(idx, 0, 1, HBM, x, 0, 20);
    check_walk_skip(walk_of(idx, x, 20, 1), 19, 0, 0, 19);
    /* Demote x[10]: the stretch stops at 9, resumes after 11. */
    ck_assert_int_eq(brain_prefix_index_store(idx, 0, 1, DRAM, x[10], 0), 1);
    ck_assert_int_eq(brain_prefix_index_remove(idx, 0, 1, HBM, x[10]), 0);
    check_walk_skip(walk_of(idx, x, 20, 1), 19, 0, 0, 17);
    check_matches(idx, 0, x, 20, (const struct want[]){{1, {0, 10, 20, 20}}},
                  1);
    /* A second node on the same records keeps the same shape. */
    put(idx, 0, 2, HBM, x, 0, 20);
    check_walk_skip(walk_of(idx, x, 20, 2), 19, 0, 0, 17);
    check_matches(
        idx, 0, x, 20,
        (const struct want[]){{2, {0, 20, 20, 20}}, {1, {0, 10, 20, 20}}}, 2);
    /* A chain that is not prefix-chained (x[15] replaced, the rest kept)
     * still stops at the replaced block: every key is compared. */
    memcpy(v, x, sizeof(v));
    v[15] = key_hash(8999);
    check_walk_skip(walk_of(idx, v, 20, 2), 15, 1, 0, 12);
    check_matches(
        idx, 0, v, 20,
        (const struct want[]){{2, {0, 15, 15, 15}}, {1, {0, 10, 15, 15}}}, 2);
    /* A hole at x[5] ends the stretch before it. */
    ck_assert_int_eq(brain_prefix_index_remove(idx, 0, 1, HBM, x[5]), 0);
    ck_assert_int_eq(brain_prefix_index_remove(idx, 0, 2, HBM, x[5]), 0);
    check_walk_skip(walk_of(idx, x, 20, 2), 5, 1, 0, 4);
    check_matches(idx, 0, x, 20,
                  (const struct want[]){{1, {0, 5, 5, 5}}, {2, {0, 5, 5, 5}}},
                  2);
    /* x[5] again, at the end of the store: hint in, probe back. */
    put(idx, 0, 1, HBM, x, 5, 6);
    check_walk_skip(walk_of(idx, x, 20, 2), 19, 1, 1, 15);
    check_matches(
        idx, 0, x, 20,
        (const struct want[]){{1, {0, 10, 20, 20}}, {2, {0, 5, 5, 5}}}, 2);
    /* Filler, most of it removed: the next new block compacts the store,
     * and the bits move with their records. */
    for (int i = 0; i < 200; i++)
        ck_assert_int_eq(
            brain_prefix_index_store(idx, 0, 7, DRAM, key_hash(9000 + i), 0),
            1);
    for (int i = 0; i < 150; i++)
        ck_assert_int_eq(
            brain_prefix_index_remove(idx, 0, 7, DRAM, key_hash(9000 + i)), 0);
    ck_assert_int_eq(
        brain_prefix_index_store(idx, 0, 7, DRAM, key_hash(9500), 0), 1);
    ck_assert_uint_eq(stats_of(idx).compactions, 1);
    check_walk_skip(walk_of(idx, x, 20, 2), 19, 1, 1, 15);
    check_matches(
        idx, 0, x, 20,
        (const struct want[]){{1, {0, 10, 20, 20}}, {2, {0, 5, 5, 5}}}, 2);
    /* Five holders: pool arrays, alike when their contents are. */
    for (uint16_t nd = 10; nd < 15; nd++)
        put(idx, 0, nd, HBM, y, 0, 10);
    ck_assert_uint_eq(stats_of(idx).overflow_blocks, 10);
    check_walk_skip(walk_of(idx, y, 10, 5), 9, 0, 0, 9);
    /* Node 12 demotes y[3]: that array differs from its neighbours'. */
    ck_assert_int_eq(brain_prefix_index_store(idx, 0, 12, DRAM, y[3], 0), 1);
    ck_assert_int_eq(brain_prefix_index_remove(idx, 0, 12, HBM, y[3]), 0);
    check_walk_skip(walk_of(idx, y, 10, 5), 9, 0, 0, 7);
    check_matches(idx, 0, y, 10,
                  (const struct want[]){{10, {0, 10, 10, 10}},
                                        {11, {0, 10, 10, 10}},
                                        {13, {0, 10, 10, 10}},
                                        {14, {0, 10, 10, 10}},
                                        {12, {0, 3, 10, 10}}},
                  5);
    /* Node 12 fails: it stops counting at once; the sweep drops its
     * entries, and y's records are held alike again. */
    ck_assert_int_eq(brain_prefix_index_remove_node(idx, 12), 10);
    check_walk_skip(walk_of(idx, y, 10, 4), 9, 0, 0, 7);
    ck_assert_int_eq(brain_prefix_index_sweep(idx, SIZE_MAX), 0);
    check_walk_skip(walk_of(idx, y, 10, 4), 9, 0, 0, 9);
    check_matches(idx, 0, y, 10,
                  (const struct want[]){{10, {0, 10, 10, 10}},
                                        {11, {0, 10, 10, 10}},
                                        {13, {0, 10, 10, 10}},
                                        {14, {0, 10, 10, 10}}},
                  4);
    brain_prefix_index_destroy(idx);
}
END_TEST

/*
 * A stretch longer than the walk prefetches on landing (96 records) is
 * compared by a second loop that streams ahead: a chain with a block
 * replaced inside it, the later blocks kept, must still stop there, in
 * either loop and at both ends of the first prefetch window.
 */
START_TEST(test_long_stretch)
{
    struct brain_prefix_index *idx = new_index(0, 0);
    enum { L = 300 };
    uint64_t x[L], v[L];
    static const struct {
        size_t n, at; /* chain length, replaced block (n: none) */
    } cases[] = {{L, L},   {L, 40},  {L, 96},  {L, 97}, {L, 101},
                 {L, 250}, {60, 30}, {97, 96}, {98, 97}};

    for (int i = 0; i < L; i++)
        x[i] = key_hash(30000 + i);
    put(idx, 0, 1, HBM, x, 0, L);
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        size_t n = cases[c].n, at = cases[c].at;
        uint32_t m = (uint32_t)at;
        memcpy(v, x, sizeof(v));
        if (at < n)
            v[at] = key_hash(39999);
        /* Blocks 1 .. at - 1 passed alike, block `at` probed, not found. */
        if (at < n)
            check_walk_skip(walk_of(idx, v, n, 1), at, 1, 0, at - 1);
        else
            check_walk_skip(walk_of(idx, v, n, 1), n - 1, 0, 0, n - 1);
        check_matches(idx, 0, v, n, (const struct want[]){{1, {0, m, m, m}}},
                      1);
    }
    brain_prefix_index_destroy(idx);
}
END_TEST

START_TEST(test_run_split_and_compaction)
{
    struct brain_prefix_index *idx = new_index(0, 0);
    uint64_t x[20];

    for (int i = 0; i < 20; i++)
        x[i] = key_hash(5000 + i);
    put(idx, 0, 1, HBM, x, 0, 20);
    /* Filler after x, so that x's run is not at the end of the store. */
    for (int i = 0; i < 200; i++)
        ck_assert_int_eq(
            brain_prefix_index_store(idx, 0, 7, DRAM, key_hash(6000 + i), 0),
            1);
    /* Evict x[8]: a hole splits the run and ends the match. */
    ck_assert_int_eq(brain_prefix_index_remove(idx, 0, 1, HBM, x[8]), 0);
    ck_assert_uint_eq(stats_of(idx).store_holes, 1);
    check_matches(idx, 0, x, 20, (const struct want[]){{1, {0, 8, 8, 8}}}, 1);
    check_walk(walk_of(idx, x, 20, 1), 8, 1, 0);
    /* Stored again it goes to the end: x[7] -> hint -> x[8] -> probe. */
    put(idx, 0, 1, HBM, x, 8, 9);
    check_matches(idx, 0, x, 20, (const struct want[]){{1, {0, 20, 20, 20}}},
                  1);
    check_walk(walk_of(idx, x, 20, 1), 19, 1, 1);
    /* Remove most filler: holes pass an eighth; the next new block
     * compacts the store, keeping order, positions and hints right. */
    for (int i = 0; i < 150; i++)
        ck_assert_int_eq(
            brain_prefix_index_remove(idx, 0, 7, DRAM, key_hash(6000 + i)), 0);
    ck_assert_uint_eq(stats_of(idx).compactions, 0);
    ck_assert_int_eq(
        brain_prefix_index_store(idx, 0, 7, DRAM, key_hash(7000), 0), 1);
    struct brain_prefix_index_stats st = stats_of(idx);
    ck_assert_uint_eq(st.compactions, 1);
    ck_assert_uint_eq(st.store_holes, 0);
    ck_assert_uint_eq(st.blocks, 20 + 50 + 1);
    check_matches(idx, 0, x, 20, (const struct want[]){{1, {0, 20, 20, 20}}},
                  1);
    check_walk(walk_of(idx, x, 20, 1), 19, 1, 1);
    for (int i = 0; i < 200; i++)
        ck_assert_int_eq(brain_prefix_index_lookup(idx, 0, key_hash(6000 + i),
                                                   0, NULL, NULL, 0),
                         i < 150 ? -ENOENT : 1);
    /* Blocks removed at the end of the store leave no hole behind. */
    ck_assert_int_eq(
        brain_prefix_index_remove(idx, 0, 7, DRAM, key_hash(7000)), 0);
    ck_assert_uint_eq(stats_of(idx).store_holes, 0);
    brain_prefix_index_destroy(idx);
}
END_TEST

/* The index's slot key, replicated so a test can force a tag collision. */
static uint64_t
t_fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return k;
}

static uint64_t
t_unfmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0x9cb4b2f8129337dbull;
    k ^= k >> 33;
    k *= 0x4f74430c22a54005ull;
    k ^= k >> 33;
    return k;
}

/* The block hash whose slot key is m in namespace ns (default seed). */
static uint64_t
hash_with_key(uint16_t ns, uint64_t m)
{
    const uint64_t seed = 0x6d636f732d706978ull;
    uint64_t salt =
        t_fmix64(seed ^ ((uint64_t)(ns + 1) * 0x9e3779b97f4a7c15ull));
    return t_unfmix64(m) ^ salt;
}

START_TEST(test_tag_collisions)
{
    struct brain_prefix_index *idx = new_index(0, 0);
    struct brain_prefix_holder h[2];
    struct brain_prefix_block b;
    uint64_t c[12];

    /* Twelve keys sharing their top 32 bits (the hash slot's tag),
     * stored as one chain in reverse order of key so that the probe must
     * look past equal tags in both directions. */
    for (int i = 0; i < 12; i++)
        c[i] = hash_with_key(0, 0x1234567800000000ull | (uint64_t)(99 - i));
    put(idx, 0, 4, HBM, c, 0, 12);
    /* The same keys in namespace 1 are other blocks. */
    put(idx, 1, 5, DRAM, c, 0, 6);
    check_matches(idx, 0, c, 12, (const struct want[]){{4, {0, 12, 12, 12}}},
                  1);
    check_matches(idx, 1, c, 12, (const struct want[]){{5, {0, 0, 6, 6}}}, 1);
    for (int i = 0; i < 12; i++) {
        ck_assert_int_eq(brain_prefix_index_lookup(idx, 0, c[i], 0, &b, h, 2),
                         1);
        ck_assert_uint_eq(b.hash, c[i]);
        ck_assert_uint_eq(h[0].node, 4);
    }
    /* A key with the tag but absent: a miss, not a false hit. */
    uint64_t absent = hash_with_key(0, 0x1234567800000000ull | 50);
    ck_assert_int_eq(
        brain_prefix_index_lookup(idx, 0, absent, 0, NULL, NULL, 0), -ENOENT);
    /* Remove every other one; the rest stay findable. */
    for (int i = 0; i < 12; i += 2)
        ck_assert_int_eq(brain_prefix_index_remove(idx, 0, 4, HBM, c[i]), 0);
    for (int i = 0; i < 12; i++)
        ck_assert_int_eq(
            brain_prefix_index_lookup(idx, 0, c[i], 0, NULL, NULL, 0),
            i % 2 ? 1 : -ENOENT);
    check_matches(idx, 0, c + 1, 1, (const struct want[]){{4, {0, 1, 1, 1}}},
                  1);

    /* One slot key in two namespaces, stored next to each other: the
     * record after a0 has a1's key but is namespace 1's block. */
    uint64_t a[2] = {hash_with_key(0, 0xabcdef0000000001ull),
                     hash_with_key(0, 0xabcdef0000000002ull)};
    ck_assert_int_eq(brain_prefix_index_store(idx, 0, 4, HBM, a[0], 0), 1);
    ck_assert_int_eq(
        brain_prefix_index_store(idx, 1, 6, HBM,
                                 hash_with_key(1, 0xabcdef0000000002ull), 0),
        1);
    ck_assert_int_eq(brain_prefix_index_store(idx, 0, 4, HBM, a[1], a[0]), 1);
    check_matches(idx, 0, a, 2, (const struct want[]){{4, {0, 2, 2, 2}}}, 1);
    brain_prefix_index_destroy(idx);
}
END_TEST

/*
 * Randomized differential test of chains against a brute-force model.
 * Blocks live on the paths of a prefix tree (each path shares a prefix
 * with an earlier one, then branches), and agents store requests' blocks
 * in chain order, the way reports arrive, so the store gets real runs,
 * branches and continuation hints; evictions punch holes and trigger
 * compactions; demotions, node failures with partial sweeps, scattered
 * single stores and batches are mixed in.  Every so often every path is
 * looked up whole, cut short, and with a foreign block inside, and the
 * complete ordered answer must equal the model's.
 */
#define D_NS    2
#define D_PATHS 48
#define D_LEN   40
#define D_NODES 24
#define D_KEYS  (D_PATHS * D_LEN)

struct dref {
    uint8_t mask[D_NS][D_KEYS][D_NODES]; /* tier bits per node per key */
    int path[D_PATHS][D_LEN];            /* key ids along each path */
};

static void
dref_paths(struct dref *d)
{
    for (int p = 0; p < D_PATHS; p++) {
        int q = p ? (int)(rnd() % (uint64_t)p) : 0;
        int b = p ? (int)(rnd() % D_LEN) : 0;
        for (int i = 0; i < D_LEN; i++)
            d->path[p][i] = i < b ? d->path[q][i] : p * D_LEN + i;
    }
}

/* The model's answer for keys[0..n-1], sorted like find_matches(). */
static int
dref_answer(const struct dref *d, int ns, const int *keys, size_t n,
            struct brain_prefix_match *out)
{
    int nres = 0;

    for (int nd = 0; nd < D_NODES; nd++) {
        if (keys[0] < 0 || d->mask[ns][keys[0]][nd] == 0)
            continue;
        struct brain_prefix_match r = {.node = (uint16_t)nd};
        for (int t = 1; t <= 4; t++) {
            uint32_t len = 0;
            while (len < n && keys[len] >= 0) {
                uint8_t m = d->mask[ns][keys[len]][nd];
                if (m == 0 || (unsigned)__builtin_ctz(m) + 1 > (unsigned)t)
                    break;
                len++;
            }
            r.matched[t] = len;
        }
        /* Insertion into best-first order; nodes come in ascending. */
        int j = nres++;
        while (j > 0) {
            const struct brain_prefix_match *a = &out[j - 1];
            int t = 4;
            while (t >= 1 && a->matched[t] == r.matched[t])
                t--;
            if (t < 1 || a->matched[t] > r.matched[t])
                break;
            out[j] = out[j - 1];
            j--;
        }
        out[j] = r;
    }
    return nres;
}

static void
dref_check(struct brain_prefix_index *idx, const struct dref *d)
{
    struct brain_prefix_match got[D_NODES], want[D_NODES];
    uint64_t chain[D_LEN];
    int keys[D_LEN];

    for (int ns = 0; ns < D_NS; ns++) {
        for (int p = 0; p < D_PATHS; p++) {
            for (int variant = 0; variant < 3; variant++) {
                size_t n = variant == 1 ? 1 + rnd() % D_LEN : D_LEN;
                for (size_t i = 0; i < n; i++)
                    keys[i] = d->path[p][i];
                if (variant == 2)
                    keys[rnd() % n] = -1; /* a block nobody stores */
                for (size_t i = 0; i < n; i++)
                    chain[i] =
                        keys[i] < 0 ? key_hash(D_KEYS + 7) : key_hash(keys[i]);
                int r = brain_prefix_index_find_matches(
                    idx, (uint16_t)ns, chain, n, got, D_NODES);
                int w = dref_answer(d, ns, keys, n, want);
                ck_assert_int_eq(r, w);
                for (int j = 0; j < r; j++) {
                    ck_assert_uint_eq(got[j].node, want[j].node);
                    for (int t = 0; t <= 4; t++)
                        ck_assert_uint_eq(got[j].matched[t],
                                          want[j].matched[t]);
                }
            }
        }
        for (int k = 0; k < D_KEYS; k++) {
            int w = 0;
            for (int nd = 0; nd < D_NODES; nd++)
                w += d->mask[ns][k][nd] != 0;
            ck_assert_int_eq(brain_prefix_index_lookup(idx, (uint16_t)ns,
                                                       key_hash(k), 0, NULL,
                                                       NULL, 0),
                             w ? w : -ENOENT);
        }
    }
}

/* Stores keys path[from..to) for node in order, singly or as a batch. */
static void
dref_request(struct brain_prefix_index *idx, struct dref *d, int ns, int p,
             int from, int to, uint16_t node, uint8_t tier, bool batch)
{
    struct brain_prefix_event ev[D_LEN];
    int want = 0;

    for (int i = from; i < to; i++) {
        int k = d->path[p][i];
        uint8_t *m = &d->mask[ns][k][node];
        int changed = (*m & BIT(tier)) ? 0 : 1;
        uint64_t parent = i ? key_hash(d->path[p][i - 1]) : 0;
        if (batch) {
            ev[i - from] = (struct brain_prefix_event){
                .hash = key_hash(k),
                .parent = parent,
                .ns = (uint16_t)ns,
                .node = node,
                .type = BRAIN_PREFIX_EV_STORED,
                .tier = tier,
            };
        } else {
            ck_assert_int_eq(brain_prefix_index_store(idx, (uint16_t)ns, node,
                                                      tier, key_hash(k),
                                                      parent),
                             changed);
        }
        want += changed;
        *m |= (uint8_t)BIT(tier);
    }
    if (batch)
        ck_assert_int_eq(
            brain_prefix_index_apply(idx, ev, (size_t)(to - from), 0), want);
}

static const uint64_t chain_seeds[] = {3, 1234, 0xfeedface, 99991};

START_TEST(test_chains_vs_reference)
{
    struct dref *d = calloc(1, sizeof(*d));
    struct brain_prefix_index *idx = new_index(0, 0);

    ck_assert_ptr_nonnull(d);
    rng_state = chain_seeds[_i];
    dref_paths(d);
    for (int step = 0; step < 12000; step++) {
        uint64_t x = rnd();
        int ns = (int)(x % D_NS);
        int p = (int)((x >> 4) % D_PATHS);
        uint16_t node = (uint16_t)((x >> 12) % D_NODES);
        uint8_t tier = (uint8_t)(1 + (x >> 20) % 4);
        int a = (int)((x >> 24) % D_LEN);
        int b = a + 1 + (int)((x >> 32) % (uint64_t)(D_LEN - a));
        unsigned op = (unsigned)((x >> 40) % 100);

        if (op < 35) {
            /* A request: its new blocks, in order, often from block 0. */
            dref_request(idx, d, ns, p, (x >> 48) % 3 ? a / 4 : a, b, node,
                         tier, (x >> 52) & 1);
        } else if (op < 70) {
            /* Evictions: a stretch of the path leaves the node's tier. */
            for (int i = a; i < b; i++) {
                int k = d->path[p][i];
                uint8_t *m = &d->mask[ns][k][node];
                ck_assert_int_eq(brain_prefix_index_remove(idx, (uint16_t)ns,
                                                           node, tier,
                                                           key_hash(k)),
                                 (*m & BIT(tier)) ? 0 : -ENOENT);
                *m &= (uint8_t)~BIT(tier);
            }
        } else if (op < 85) {
            /* Demotion of one block: stored lower, removed from HBM. */
            int k = d->path[p][a];
            uint8_t *m = &d->mask[ns][k][node];
            if (*m & BIT(HBM)) {
                ck_assert_int_ge(brain_prefix_index_store(idx, (uint16_t)ns,
                                                          node, DRAM,
                                                          key_hash(k), 0),
                                 0);
                *m |= (uint8_t)BIT(DRAM);
                ck_assert_int_eq(brain_prefix_index_remove(idx, (uint16_t)ns,
                                                           node, HBM,
                                                           key_hash(k)),
                                 0);
                *m &= (uint8_t)~BIT(HBM);
            }
        } else if (op < 95) {
            /* A scattered block with an unknown parent. */
            int k = d->path[p][a];
            uint8_t *m = &d->mask[ns][k][node];
            ck_assert_int_eq(brain_prefix_index_store(idx, (uint16_t)ns, node,
                                                      tier, key_hash(k),
                                                      key_hash(D_KEYS + 1)),
                             (*m & BIT(tier)) ? 0 : 1);
            *m |= (uint8_t)BIT(tier);
        } else if (op < 96) {
            uint64_t held = 0;
            for (int s = 0; s < D_NS; s++)
                for (int k = 0; k < D_KEYS; k++) {
                    held += d->mask[s][k][node] != 0;
                    d->mask[s][k][node] = 0;
                }
            ck_assert_int_eq(brain_prefix_index_remove_node(idx, node),
                             (int)held);
        } else {
            brain_prefix_index_sweep(idx, 1 + rnd() % 300);
        }
        if (step % 1500 == 1499)
            dref_check(idx, d);
    }
    dref_check(idx, d);
    ck_assert_int_eq(brain_prefix_index_sweep(idx, SIZE_MAX), 0);
    dref_check(idx, d);
    /* Every path of the structure was taken, so none can hide a bug. */
    struct brain_prefix_index_stats st = stats_of(idx);
    ck_assert_uint_gt(st.compactions, 0);
    ck_assert_uint_gt(st.rehashes, 0);
    ck_assert_uint_gt(st.lookup_hints, 0);
    ck_assert_uint_gt(st.lookup_jumps, 0);
    ck_assert_uint_gt(st.lookup_blocks,
                      2 * (st.lookup_hints + st.lookup_jumps));
    /* ... and passed stretches of alike records by their run bits. */
    ck_assert_uint_gt(st.lookup_skipped, st.lookup_blocks / 8);
    ck_assert_uint_gt(st.overflow_blocks + st.blocks, 0);
    brain_prefix_index_destroy(idx);
    free(d);
}
END_TEST

static Suite *
prefix_index_suite(void)
{
    Suite *s = suite_create("prefix_index");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_create_destroy);
    tcase_add_loop_test(tc, test_find_matches_table, 0,
                        sizeof(match_cases) / sizeof(match_cases[0]));
    tcase_add_test(tc, test_out_cap);
    tcase_add_test(tc, test_two_tiers);
    tcase_add_test(tc, test_gap);
    tcase_add_test(tc, test_remove_node);
    tcase_add_test(tc, test_overflow_holders);
    tcase_add_test(tc, test_hotness_decay);
    tcase_add_test(tc, test_for_each_hot);
    tcase_add_test(tc, test_namespaces);
    tcase_add_test(tc, test_apply_batch);
    tcase_add_loop_test(tc, test_bad_input, 0,
                        sizeof(bad_cases) / sizeof(bad_cases[0]));
    tcase_add_test(tc, test_bad_pointers);
    tcase_add_loop_test(tc, test_random_vs_reference, 0,
                        sizeof(random_seeds) / sizeof(random_seeds[0]));
    tcase_add_test(tc, test_growth_many_blocks);
    tcase_add_test(tc, test_apply_matches_single_calls);
    tcase_add_test(tc, test_runs_and_hints);
    tcase_add_test(tc, test_run_split_and_compaction);
    tcase_add_test(tc, test_run_bits);
    tcase_add_test(tc, test_long_stretch);
    tcase_add_test(tc, test_tag_collisions);
    tcase_add_test(tc, test_long_chains);
    tcase_add_loop_test(tc, test_result_paths, 0, 3);
    tcase_add_loop_test(tc, test_chains_vs_reference, 0,
                        sizeof(chain_seeds) / sizeof(chain_seeds[0]));
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(prefix_index_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
