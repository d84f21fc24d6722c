/*
 * Tests for eval/policy_mcos (the MCOS brain's prefix index and route
 * decision behind the simulator's policy interface): the index is fed
 * from the simulator's events (Mooncake's block id 0 included), a busy
 * holder's prefix is fetched to an idle node and the cold source copy
 * dropped, the load term's units, partial last blocks, eviction by the
 * brain's residency table against LRU, replication of a
 * hot prefix with its whole chain, and the knobs' checks.
 *
 * The cluster: blocks of 4 tokens, prefill 1000 tokens/s (4 ms a block),
 * 250 KV bytes a token (1000 bytes a block), fabric 1e6 bytes/s (1 ms a
 * block) plus 100 us a transfer, answers decoded at once (no output).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>

#include "policy.h"
#include "sim.h"
#include "testutil.h"
#include "trace.h"

static char err[512];

/* A trace from JSONL text. */
static struct trace *
trace_of(const char *text)
{
    struct trace_options o = {.block_tokens = 4};
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    struct trace *t;

    ck_assert_ptr_nonnull(f);
    ck_assert_msg(trace_load_stream(f, "t", &o, &t, err, sizeof err) == 0,
                  "%s", err);
    fclose(f);
    return t;
}

static struct sim_params
tiny(uint32_t nodes)
{
    struct sim_params p;

    sim_params_default(&p);
    p.nodes = nodes;
    p.block_tokens = 4;
    p.capacity[SIM_TIER_HBM] = 1000;
    p.prefill_tps = 1000;
    p.kv_bytes_per_token = 250;
    p.fabric_bw = 1e6;
    p.fabric_latency_ns = 100000;
    return p;
}

/* Runs MCOS with knobs k over t; returns the simulator (to be destroyed
 * by the caller) and fills *r. */
static struct sim *
run(const struct sim_params *p, const struct trace *t,
    const struct policy_knobs *k, struct sim_result *r)
{
    struct sim *s;

    ck_assert_msg(sim_create(p, t, &policy_mcos, k, &s, err, sizeof err) == 0,
                  "%s", err);
    ck_assert_msg(sim_run(s, r, err, sizeof err) == 0, "%s", err);
    return s;
}

static uint32_t
node_of(const struct sim *s, uint32_t id)
{
    struct sim_outcome o;

    ck_assert_int_eq(sim_outcome(s, id, &o), 0);
    return o.node;
}

/* "a, a+1, ..., a+n-1" into buf. */
static const char *
ids(char *buf, size_t cap, int a, int n)
{
    size_t len = 0;

    buf[0] = 0;
    for (int i = 0; i < n; i++) {
        len +=
            (size_t)snprintf(buf + len, cap - len, i ? ", %d" : "%d", a + i);
    }
    return buf;
}

/*
 * A follow-up finds its prefix through the index, block id 0 included.
 * R (100 blocks) keeps node 0 busy for 400 ms, so A (0, 1, 2) goes to
 * node 1; B (A plus one) at 100 ms must follow it there (cost 1) rather
 * than to an idle node that would copy the prefix (1 + 0.1 x 3).
 */
START_TEST(test_index_follows_prefix)
{
    char buf[1024], text[2048];
    struct sim_params p = tiny(4);
    struct policy_knobs k;
    struct sim_outcome o;
    struct sim_result r;
    struct trace *t;
    struct sim *s;

    snprintf(text, sizeof text,
             "{\"timestamp\": 0, \"input_length\": 400, \"output_length\": 0, "
             "\"hash_ids\": [%s]}\n"
             "{\"timestamp\": 0, \"input_length\": 12, \"output_length\": 0, "
             "\"hash_ids\": [0, 1, 2]}\n"
             "{\"timestamp\": 100, \"input_length\": 16, "
             "\"output_length\": 0, \"hash_ids\": [0, 1, 2, 3]}\n",
             ids(buf, sizeof buf, 100, 100));
    t = trace_of(text);
    policy_knobs_default(&k);
    s = run(&p, t, &k, &r);
    ck_assert_uint_eq(node_of(s, 0), 0);
    ck_assert_uint_eq(node_of(s, 1), 1);
    ck_assert_int_eq(sim_outcome(s, 2, &o), 0);
    ck_assert_uint_eq(o.node, 1);
    ck_assert_uint_eq(o.hit_blocks, 3);
    ck_assert_uint_eq(o.hit_tokens_tier[SIM_TIER_HBM], 12);
    ck_assert_uint_eq(r.fabric_bytes, 0);
    sim_destroy(s);
    trace_destroy(t);
}
END_TEST

/*
 * Fetch and migration.  A (blocks 0-3) runs on node 0 and ends at 16 ms;
 * C (100 new blocks) arrives at 100 ms, both nodes idle and neither
 * holding it, and goes to node 0 (ties to the first name), busy until
 * 500 ms.  B (0-3 plus one) arrives at 110 ms: node 0 holds its prefix
 * but has 97.5 blocks of C left (load 4 x 97.5 = 390); node 1 can copy
 * the 4 blocks (cost 1 + 0.1 x 4 = 1.4).  B goes to node 1, the 4 blocks
 * are fetched (4.1 ms, against 16 ms to compute them), and node 0's cold
 * copies are dropped once they land.
 */
#define FETCH_TRACE                                                           \
    "{\"timestamp\": 0, \"input_length\": 16, \"output_length\": 0, "         \
    "\"hash_ids\": [0, 1, 2, 3]}\n"                                           \
    "{\"timestamp\": 100, \"input_length\": 400, \"output_length\": 0, "      \
    "\"hash_ids\": [%s]}\n"                                                   \
    "{\"timestamp\": 110, \"input_length\": 20, \"output_length\": 0, "       \
    "\"hash_ids\": [0, 1, 2, 3, 4]}\n"

static struct trace *
fetch_case(void)
{
    char buf[1024], text[2048];

    snprintf(text, sizeof text, FETCH_TRACE, ids(buf, sizeof buf, 100, 100));
    return trace_of(text);
}

START_TEST(test_fetch_and_migrate)
{
    struct trace *t = fetch_case();
    struct sim_params p = tiny(2);
    struct policy_knobs k;
    struct sim_outcome o;
    struct sim_result r;
    struct sim *s;

    policy_knobs_default(&k);
    s = run(&p, t, &k, &r);
    ck_assert_uint_eq(node_of(s, 0), 0);
    ck_assert_uint_eq(node_of(s, 1), 0);
    ck_assert_int_eq(sim_outcome(s, 2, &o), 0);
    ck_assert_uint_eq(o.node, 1);
    ck_assert_uint_eq(o.hit_tokens_peer, 16);
    ck_assert_uint_eq(o.computed_tokens, 4);
    /* Waited for the fetch: 4 blocks + latency, then 4 ms of prefill. */
    ck_assert_uint_eq(o.first_token_ns - o.arrival_ns, 4100000 + 4000000);
    ck_assert_uint_eq(r.fabric_bytes, 4000);
    /* Migrated: the copies left node 0, node 1 has them. */
    for (uint64_t b = 0; b < 4; b++) {
        ck_assert_int_eq(sim_where(s, 0, b), SIM_TIER_NONE);
        ck_assert_int_eq(sim_where(s, 1, b), SIM_TIER_HBM);
    }
    sim_destroy(s);

    /* Without migration both copies stay. */
    k.mcos_migrate = false;
    s = run(&p, t, &k, &r);
    ck_assert_int_eq(sim_where(s, 0, 0), SIM_TIER_HBM);
    ck_assert_int_eq(sim_where(s, 1, 0), SIM_TIER_HBM);
    sim_destroy(s);

    /* Without fetching, node 1 computes all of B. */
    k.mcos_fetch = false;
    s = run(&p, t, &k, &r);
    ck_assert_int_eq(sim_outcome(s, 2, &o), 0);
    ck_assert_uint_eq(o.node, 1);
    ck_assert_uint_eq(o.hit_tokens_peer, 0);
    ck_assert_uint_eq(o.computed_tokens, 20);
    ck_assert_uint_eq(r.fabric_bytes, 0);
    sim_destroy(s);
    trace_destroy(t);
}
END_TEST

/*
 * Prefixes on their way.  A (50 blocks) starts on node 0 at 0 and takes
 * 200 ms; B (A plus one) arrives at 10 ms, before any of A's blocks is
 * stored.  Counting what was routed to node 0, B's cost there is 1 block
 * to compute plus 47.5 queued (load weight 1, no bound), against 51 on
 * the idle node 1: B waits for A and reuses its 50 blocks.  Without that,
 * node 0 looks like it holds nothing and B computes all 51 on node 1.
 */
START_TEST(test_pending_prefix)
{
    char buf[1024], text[2048];
    struct sim_params p = tiny(2);
    struct policy_knobs k;
    struct sim_outcome o;
    struct sim_result r;
    struct trace *t;
    struct sim *s;

    snprintf(text, sizeof text,
             "{\"timestamp\": 0, \"input_length\": 200, \"output_length\": "
             "0, \"hash_ids\": [%s]}\n",
             ids(buf, sizeof buf, 0, 50));
    snprintf(text + strlen(text), sizeof text - strlen(text),
             "{\"timestamp\": 10, \"input_length\": 204, "
             "\"output_length\": 0, \"hash_ids\": [%s]}\n",
             ids(buf, sizeof buf, 0, 51));
    t = trace_of(text);
    policy_knobs_default(&k);
    k.mcos_load_weight = 1;
    k.mcos_bound_eps = 100;
    s = run(&p, t, &k, &r);
    ck_assert_int_eq(sim_outcome(s, 1, &o), 0);
    ck_assert_uint_eq(o.node, 0);
    ck_assert_uint_eq(o.hit_blocks, 50);
    ck_assert_uint_eq(o.computed_tokens, 4);
    sim_destroy(s);
    k.mcos_pending = false;
    s = run(&p, t, &k, &r);
    ck_assert_int_eq(sim_outcome(s, 1, &o), 0);
    ck_assert_uint_eq(o.node, 1);
    ck_assert_uint_eq(o.hit_blocks, 0);
    sim_destroy(s);
    trace_destroy(t);
}
END_TEST

/*
 * The load's units.  R1 (200 blocks) starts on node 0 at 0; R2 (2
 * blocks) goes to the idle node 1.  R3 (2 blocks), at the same instant,
 * sees one request on each node: counted in requests the nodes tie and
 * R3 goes to node 0 (the first name), behind 800 ms of work; counted in
 * queued blocks node 0 has 200 and node 1 has 2, and R3 goes to node 1.
 * The brain's load (the default) weighs both: node 0 costs 2 to prefill
 * + 4 x 1 request + 1 x 200 queued blocks = 206, node 1 2 + 4 + 2 = 8.
 */
START_TEST(test_load_units)
{
    char buf[2048], text[4096];
    struct trace *t;
    struct sim_params p = tiny(2);
    struct policy_knobs k;
    struct sim_result r;
    struct sim *s;

    snprintf(text, sizeof text,
             "{\"timestamp\": 0, \"input_length\": 800, \"output_length\": 0, "
             "\"hash_ids\": [%s]}\n"
             "{\"timestamp\": 0, \"input_length\": 8, \"output_length\": 0, "
             "\"hash_ids\": [2000, 2001]}\n"
             "{\"timestamp\": 0, \"input_length\": 8, \"output_length\": 0, "
             "\"hash_ids\": [3000, 3001]}\n",
             ids(buf, sizeof buf, 1000, 200));
    t = trace_of(text);
    policy_knobs_default(&k);
    ck_assert_int_eq(k.mcos_load, POLICY_MCOS_LOAD_BRAIN);
    s = run(&p, t, &k, &r);
    ck_assert_uint_eq(node_of(s, 0), 0);
    ck_assert_uint_eq(node_of(s, 1), 1);
    ck_assert_uint_eq(node_of(s, 2), 1);
    sim_destroy(s);
    /* Without the blocks term the brain's load is a request count. */
    k.mcos_queue_block_weight = 0;
    s = run(&p, t, &k, &r);
    ck_assert_uint_eq(node_of(s, 2), 0);
    sim_destroy(s);
    k.mcos_queue_block_weight = 1;
    k.mcos_load = POLICY_MCOS_LOAD_BLOCKS;
    s = run(&p, t, &k, &r);
    ck_assert_uint_eq(node_of(s, 1), 1);
    ck_assert_uint_eq(node_of(s, 2), 1);
    sim_destroy(s);
    k.mcos_load = POLICY_MCOS_LOAD_QUEUE;
    s = run(&p, t, &k, &r);
    ck_assert_uint_eq(node_of(s, 1), 1);
    ck_assert_uint_eq(node_of(s, 2), 0);
    sim_destroy(s);
    k.mcos_load = POLICY_MCOS_LOAD_INFLIGHT;
    s = run(&p, t, &k, &r);
    ck_assert_uint_eq(node_of(s, 2), 0);
    sim_destroy(s);
    trace_destroy(t);
}
END_TEST

/* A prompt of 6 tokens has a full block (7) and a partial one (8); the
 * partial one goes when the request ends, unless told otherwise. */
START_TEST(test_partial_block)
{
    struct trace *t =
        trace_of("{\"timestamp\": 0, \"input_length\": 6, "
                 "\"output_length\": 0, \"hash_ids\": [7, 8]}\n"
                 "{\"timestamp\": 0, \"input_length\": 8, "
                 "\"output_length\": 0, \"hash_ids\": [9, 10]}\n");
    struct sim_params p = tiny(1);
    struct policy_knobs k;
    struct sim_result r;
    struct sim *s;

    policy_knobs_default(&k);
    s = run(&p, t, &k, &r);
    ck_assert_int_eq(sim_where(s, 0, 7), SIM_TIER_HBM);
    ck_assert_int_eq(sim_where(s, 0, 8), SIM_TIER_NONE);
    /* Full blocks stay. */
    ck_assert_int_eq(sim_where(s, 0, 10), SIM_TIER_HBM);
    sim_destroy(s);
    k.mcos_drop_partial = false;
    s = run(&p, t, &k, &r);
    ck_assert_int_eq(sim_where(s, 0, 8), SIM_TIER_HBM);
    sim_destroy(s);
    trace_destroy(t);
}
END_TEST

/*
 * Residency: one node of 8 HBM blocks; answers of 0 tokens are class 0,
 * of 16 tokens class 1 (4 blocks reserved while they decode, 0.4 s at 40
 * tokens/s).  The brain learns as it routes (a turn per request, of its
 * answer's class); blocks take their class when their request ends.
 *   A    0 s    [1,2]     class 0.
 *   B    1 ms   [5,6]     class 1, ends at 416 ms.
 *   C  100 s    [1,2,3]   reuses 8 tokens; it continues A after a pause
 *                         of 100 s (age bucket 7 is 80-120 s).
 *   D  200 s    [7,8]     class 1.  Class 0: 2 turns (A, C), 1 continued
 *                         in bucket 7: (1 + 1/2) / (2 + 1) = 0.5 up to
 *                         bucket 7; class 1: 2 turns (B, D), none: 0.5 / 3.
 *                         Its answer's 4 blocks evict 6, 5 (class 1), then
 *                         3 (LRU would too).  Resident: 1, 2, 7, 8.
 *   E  210 s    [9..13]   class 0 (3 turns: 1.5 / 4 up to bucket 7).  Its
 *                         5 blocks need one slot: LRU evicts 2 (idle since
 *                         100 s); the table compares class 0's 2 (110 s,
 *                         bucket 7: 0.375) with class 1's 8 (9.6 s, bucket
 *                         0: 0.167) and evicts 8.
 *   F  220 s    [1,2,3,4] reuses 1, 2 (8 tokens) with the table, 1 (4
 *                         tokens) with LRU.
 */
START_TEST(test_residency)
{
    struct trace *t = trace_of(
        "{\"timestamp\": 0, \"input_length\": 8, \"output_length\": 0, "
        "\"hash_ids\": [1, 2]}\n"
        "{\"timestamp\": 1, \"input_length\": 8, \"output_length\": 16, "
        "\"hash_ids\": [5, 6]}\n"
        "{\"timestamp\": 100000, \"input_length\": 12, "
        "\"output_length\": 0, \"hash_ids\": [1, 2, 3]}\n"
        "{\"timestamp\": 200000, \"input_length\": 8, "
        "\"output_length\": 16, \"hash_ids\": [7, 8]}\n"
        "{\"timestamp\": 210000, \"input_length\": 20, "
        "\"output_length\": 0, \"hash_ids\": [9, 10, 11, 12, 13]}\n"
        "{\"timestamp\": 220000, \"input_length\": 16, "
        "\"output_length\": 0, \"hash_ids\": [1, 2, 3, 4]}\n");
    struct sim_params p = tiny(1);
    struct policy_knobs k;
    struct sim_outcome o;
    struct sim_result r;
    struct sim *s;

    p.capacity[SIM_TIER_HBM] = 8;
    policy_knobs_default(&k);
    ck_assert(k.mcos_residency);
    s = run(&p, t, &k, &r);
    ck_assert_int_eq(sim_outcome(s, 2, &o), 0);
    ck_assert_uint_eq(o.hit_blocks, 2);
    ck_assert_int_eq(sim_outcome(s, 5, &o), 0);
    ck_assert_uint_eq(o.hit_blocks, 2);
    ck_assert_uint_eq(r.hit_tokens, 16);
    sim_destroy(s);

    k.mcos_residency = false;
    s = run(&p, t, &k, &r);
    ck_assert_int_eq(sim_outcome(s, 5, &o), 0);
    ck_assert_uint_eq(o.hit_blocks, 1);
    ck_assert_uint_eq(r.hit_tokens, 12);
    sim_destroy(s);
    trace_destroy(t);
}
END_TEST

/*
 * Replication.  A puts 0, 1, 2 on node 0; three follow-ups (each with a
 * block of its own) make them hot (3 accesses each, threshold 2), and
 * the next tick copies the chain, root first, to the other nodes: block
 * id 0 must be part of it (the walk from block 2 back through its
 * parents must not stop at id 0's remapped hash).  A last request with
 * the same prefix then finds it wherever it lands.
 */
START_TEST(test_replication)
{
    struct trace *t =
        trace_of("{\"timestamp\": 0, \"input_length\": 12, "
                 "\"output_length\": 0, \"hash_ids\": [0, 1, 2]}\n"
                 "{\"timestamp\": 20, \"input_length\": 16, "
                 "\"output_length\": 0, \"hash_ids\": [0, 1, 2, 11]}\n"
                 "{\"timestamp\": 30, \"input_length\": 16, "
                 "\"output_length\": 0, \"hash_ids\": [0, 1, 2, 12]}\n"
                 "{\"timestamp\": 40, \"input_length\": 16, "
                 "\"output_length\": 0, \"hash_ids\": [0, 1, 2, 13]}\n");
    struct sim_params p = tiny(3);
    struct policy_knobs k;
    struct sim_result r;
    struct sim *s;

    policy_knobs_default(&k);
    k.mcos_hot = 2;
    k.mcos_replicate_bw = 1000000000ULL;
    k.mcos_tick_ns = 10000000ULL;
    s = run(&p, t, &k, &r);
    for (uint32_t n = 0; n < 3; n++) {
        for (uint64_t b = 0; b < 3; b++) {
            ck_assert_msg(sim_where(s, n, b) == SIM_TIER_HBM,
                          "node %u lacks block %llu", n,
                          (unsigned long long)b);
        }
    }
    /* Two copies of three blocks, nothing more. */
    ck_assert_uint_eq(r.fabric_bytes, 6000);
    ck_assert_uint_eq(r.bad_orders, 0);
    sim_destroy(s);

    /* Off by default: no traffic. */
    policy_knobs_default(&k);
    s = run(&p, t, &k, &r);
    ck_assert_uint_eq(r.fabric_bytes, 0);
    sim_destroy(s);
    trace_destroy(t);
}
END_TEST

START_TEST(test_knobs)
{
    struct policy_knobs k;

    policy_knobs_default(&k);
    /* The brain's own defaults (brain/options.c). */
    ck_assert_double_eq(k.mcos_dram_fetch, 0.05);
    ck_assert_double_eq(k.mcos_nvme_fetch, 0.25);
    ck_assert_double_eq(k.mcos_load_weight, 4.0);
    ck_assert_double_eq(k.mcos_queue_block_weight, 1.0);
    ck_assert_double_eq(k.mcos_bound_eps, 0.25);
    ck_assert_int_eq(k.mcos_load, POLICY_MCOS_LOAD_BRAIN);
    ck_assert_double_eq(k.mcos_rack_penalty, 2.0);
    ck_assert_int_eq(policy_knobs_validate(&k, err, sizeof err), 0);
    k.mcos_load_weight = -1;
    ck_assert_err(policy_knobs_validate(&k, err, sizeof err), -EINVAL, err,
                  "mcos weights");
    policy_knobs_default(&k);
    k.mcos_queue_block_weight = -0.5;
    ck_assert_err(policy_knobs_validate(&k, err, sizeof err), -EINVAL, err,
                  "mcos weights");
    policy_knobs_default(&k);
    k.mcos_peer_fetch = 1.0 / 0.0;
    ck_assert_err(policy_knobs_validate(&k, err, sizeof err), -EINVAL, err,
                  "mcos weights");
    policy_knobs_default(&k);
    k.mcos_load = 7;
    ck_assert_err(policy_knobs_validate(&k, err, sizeof err), -EINVAL, err,
                  "mcos load");
    policy_knobs_default(&k);
    k.mcos_replicate_bw = 1;
    k.mcos_tick_ns = 10;
    ck_assert_err(policy_knobs_validate(&k, err, sizeof err), -EINVAL, err,
                  "mcos tick");
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("policy_mcos");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_index_follows_prefix);
    tcase_add_test(tc, test_fetch_and_migrate);
    tcase_add_test(tc, test_pending_prefix);
    tcase_add_test(tc, test_load_units);
    tcase_add_test(tc, test_partial_block);
    tcase_add_test(tc, test_residency);
    tcase_add_test(tc, test_replication);
    tcase_add_test(tc, test_knobs);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
