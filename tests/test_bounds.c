/*
 * Tests for eval/bounds: the infinite global cache and Belady's MIN on
 * hand-made traces (figures worked out in the comments), MIN against the
 * simulator's LRU under the same routing, and bad input.
 */
#include <errno.h>
#include <stdint.h>

#include "bounds.h"
#include "gen.h"
#include "policy.h"
#include "sim.h"
#include "testutil.h"
#include "trace.h"

static char err[512];

static struct trace *
load(const char *name)
{
    char path[1024];
    const char *dir = getenv("MCOS_TEST_DATA");
    struct trace_options o = {.block_tokens = 4};
    struct trace *t;

    snprintf(path, sizeof path, "%s/traces/%s", dir ? dir : "tests/data",
             name);
    ck_assert_msg(trace_load(path, &o, &t, err, sizeof err) == 0, "%s", err);
    return t;
}

static struct sim_params
tiny(uint32_t nodes, uint64_t hbm)
{
    struct sim_params p;

    sim_params_default(&p);
    p.nodes = nodes;
    p.block_tokens = 4;
    p.capacity[SIM_TIER_HBM] = hbm;
    p.prefill_tps = 1000;
    return p;
}

/* Belady over the whole trace in arrival order, as one cache. */
static struct bounds_result
belady_all(const struct trace *t, uint64_t cap)
{
    struct bounds_result b = {0};
    uint32_t ids[64];

    ck_assert_uint_le(t->n, 64);
    for (uint32_t i = 0; i < t->n; i++) {
        ids[i] = i;
    }
    ck_assert_int_eq(bounds_belady(t, ids, t->n, cap, &b), 0);
    return b;
}

START_TEST(test_infinite)
{
    /*
     * accounting.jsonl (blocks of 4 tokens):
     *   [1,2] -; [1,3] 1 seen (4 tokens); [1,2,4] 1,2 (8); [1,2] 1,2
     *   (8); [5,6,7] -; [1,2,4] all 3 (12); [1,2,4] all 3 (12).
     * 44 of 68 tokens, 11 of 18 blocks.
     */
    struct trace *t = load("accounting.jsonl");
    struct bounds_result b;

    ck_assert_int_eq(bounds_infinite(t, &b), 0);
    ck_assert_uint_eq(b.requests, 7);
    ck_assert_uint_eq(b.input_tokens, 68);
    ck_assert_uint_eq(b.hit_tokens, 44);
    ck_assert_uint_eq(b.hit_blocks, 11);
    ck_assert_uint_eq(b.blocks, 18);
    trace_destroy(t);

    /* cyclic.jsonl: [1] [2] [3] [1] [2] [3]: the last three hit. */
    t = load("cyclic.jsonl");
    ck_assert_int_eq(bounds_infinite(t, &b), 0);
    ck_assert_uint_eq(b.hit_tokens, 12);
    trace_destroy(t);
}
END_TEST

START_TEST(test_belady_cyclic)
{
    /*
     * cyclic.jsonl, accesses 1 2 3 1 2 3 (next uses 3 4 5 - - -):
     *   capacity 2: keep 1, 2; 3 is needed later than both: bypass; 1
     *     and 2 hit; 3 bypassed again.  2 hits = 8 tokens.  (LRU: 0.)
     *   capacity 1: keep 1; 2 and 3 bypassed; 1 hits.  4 tokens.
     *   capacity 3: everything fits: 3 hits, 12 tokens.
     *   capacity 0: nothing.
     */
    struct trace *t = load("cyclic.jsonl");

    ck_assert_uint_eq(belady_all(t, 2).hit_tokens, 8);
    ck_assert_uint_eq(belady_all(t, 2).hit_blocks, 2);
    ck_assert_uint_eq(belady_all(t, 1).hit_tokens, 4);
    ck_assert_uint_eq(belady_all(t, 3).hit_tokens, 12);
    ck_assert_uint_eq(belady_all(t, 0).hit_tokens, 0);
    ck_assert_uint_eq(belady_all(t, 2).blocks, 6);
    trace_destroy(t);
}
END_TEST

START_TEST(test_belady_vs_lru)
{
    /*
     * belady.jsonl: [1,2] [3,4] [1,2] [3,4] on one node of 2 blocks.
     * LRU: [3,4] evicts 2 then 1, [1,2] evicts 4 then 3: no reuse.
     * MIN: keeps 1,2 and bypasses 3,4 (needed later): the second [1,2]
     * is a full hit, 8 tokens.  Infinite cache: 16.
     */
    struct trace *t = load("belady.jsonl");
    struct sim_params p = tiny(1, 2);
    struct sim_result r;
    struct bounds_result b, inf;
    struct sim *s;

    ck_assert_int_eq(
        sim_create(&p, t, &policy_round_robin, NULL, &s, err, sizeof err), 0);
    ck_assert_int_eq(sim_run(s, &r, err, sizeof err), 0);
    ck_assert_uint_eq(r.hit_tokens, 0);
    ck_assert_int_eq(bounds_belady_sim(s, &b), 0);
    ck_assert_uint_eq(b.hit_tokens, 8);
    ck_assert_uint_eq(b.input_tokens, 32);
    ck_assert_int_eq(bounds_infinite(t, &inf), 0);
    ck_assert_uint_eq(inf.hit_tokens, 16);
    sim_destroy(s);
    trace_destroy(t);
}
END_TEST

START_TEST(test_belady_per_node)
{
    /*
     * accounting.jsonl, round robin on 2 nodes of 4 blocks.
     * Node 0 serves [1,2] [1,2,4] [5,6,7] [1,2,4]: MIN reuses 1,2 (8),
     * keeps 4 and 5, bypasses 6 and 7 (never used again), then reuses
     * 1,2,4 (12): 20 tokens (LRU got 8 + 4 = 12).
     * Node 1 serves [1,3] [1,2] [1,2,4]: 1 (4), then 1,2 (8): 12 tokens,
     * as LRU.  Total 32.
     */
    struct trace *t = load("accounting.jsonl");
    struct sim_params p = tiny(2, 4);
    struct sim_result r;
    struct bounds_result b;
    const uint32_t *ids;
    struct sim *s;

    ck_assert_int_eq(
        sim_create(&p, t, &policy_round_robin, NULL, &s, err, sizeof err), 0);
    ck_assert_int_eq(sim_run(s, &r, err, sizeof err), 0);
    ck_assert_uint_eq(sim_served(s, 0, &ids), 4);
    ck_assert_uint_eq(ids[3], 6);
    ck_assert_uint_eq(sim_served(s, 1, &ids), 3);
    ck_assert_uint_eq(sim_served(s, 2, &ids), 0);
    ck_assert_int_eq(bounds_belady_sim(s, &b), 0);
    ck_assert_uint_eq(b.hit_tokens, 32);
    ck_assert_uint_eq(r.hit_tokens, 24);
    sim_destroy(s);
    trace_destroy(t);
}
END_TEST

START_TEST(test_prefix_only)
{
    /* [1,2] then [9,2]: block 2 is cached but follows a miss, so it is
     * no prefix hit (the second id breaks the chaining on purpose). */
    static const char text[] =
        "{\"timestamp\": 0, \"input_length\": 8, \"output_length\": 0, "
        "\"hash_ids\": [1, 2]}\n"
        "{\"timestamp\": 1, \"input_length\": 8, \"output_length\": 0, "
        "\"hash_ids\": [9, 2]}\n";
    struct trace_options o = {.block_tokens = 4};
    struct bounds_result b;
    struct trace *t;
    FILE *f = fmemopen((void *)text, sizeof text - 1, "r");

    ck_assert_int_eq(trace_load_stream(f, "mem", &o, &t, err, sizeof err), 0);
    fclose(f);
    b = belady_all(t, 10);
    ck_assert_uint_eq(b.hit_tokens, 0);
    ck_assert_uint_eq(b.hit_blocks, 0);
    ck_assert_int_eq(bounds_infinite(t, &b), 0);
    ck_assert_uint_eq(b.hit_tokens, 0);
    trace_destroy(t);
}
END_TEST

START_TEST(test_bounds_hold)
{
    /* On a generated workload: for every baseline, LRU reuse <= MIN with
     * the same routing <= the infinite cache; MCOS, which also reuses
     * over the fabric, stays under the infinite cache. */
    struct gen_params g;
    struct trace_options o = {0};
    struct bounds_result inf;
    struct sim_params p;
    struct trace *t;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    gen_params_default(&g);
    g.requests = 3000;
    g.session_rate = 3;
    ck_assert_int_eq(gen_write(&g, f, NULL, err, sizeof err), 0);
    fclose(f);
    f = fmemopen(buf, len, "r");
    ck_assert_int_eq(trace_load_stream(f, "gen", &o, &t, err, sizeof err), 0);
    fclose(f);
    free(buf);
    ck_assert_int_eq(bounds_infinite(t, &inf), 0);
    sim_params_default(&p);
    p.capacity[SIM_TIER_HBM] = 400;
    for (size_t i = 0; i < policy_count; i++) {
        struct bounds_result b;
        struct sim_result r;
        struct sim *s;

        if (!policy_table[i].ops) {
            continue;
        }
        ck_assert_int_eq(
            sim_create(&p, t, policy_table[i].ops, NULL, &s, err, sizeof err),
            0);
        ck_assert_int_eq(sim_run(s, &r, err, sizeof err), 0);
        ck_assert_int_eq(bounds_belady_sim(s, &b), 0);
        /* Per-node Belady bounds reuse without a fabric only: MCOS's
         * fetched prefixes are reuse it cannot see. */
        if (r.fabric_bytes == 0) {
            ck_assert_uint_le(r.hit_tokens, b.hit_tokens);
        }
        ck_assert_uint_le(r.hit_tokens, inf.hit_tokens);
        ck_assert_uint_le(b.hit_tokens, inf.hit_tokens);
        ck_assert_uint_eq(b.input_tokens, inf.input_tokens);
        sim_destroy(s);
    }
    trace_destroy(t);
}
END_TEST

START_TEST(test_bad_ids)
{
    struct trace *t = load("cyclic.jsonl");
    struct bounds_result b = {0};
    uint32_t ids[] = {0, 6};

    ck_assert_int_eq(bounds_belady(t, ids, 2, 4, &b), -EINVAL);
    ck_assert_int_eq(bounds_belady(t, ids, 0, 4, &b), 0);
    ck_assert_uint_eq(b.requests, 0);
    trace_destroy(t);
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("bounds");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_infinite);
    tcase_add_test(tc, test_belady_cyclic);
    tcase_add_test(tc, test_belady_vs_lru);
    tcase_add_test(tc, test_belady_per_node);
    tcase_add_test(tc, test_prefix_only);
    tcase_add_test(tc, test_bounds_hold);
    tcase_add_test(tc, test_bad_ids);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
