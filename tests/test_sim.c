/*
 * Tests for eval/sim (the cluster simulator) and the policies: accounting
 * on tiny hand-made traces where every figure is worked out below, the
 * tiers (demotion, promotion, drops), decode occupancy, fabric orders
 * through a scripted policy, refused orders, the baselines' rules, and
 * determinism (same seed, same figures and the same report bytes).
 *
 * Unless a test says otherwise the cluster is: blocks of 4 tokens,
 * prefill 1000 tokens/s (1 ms a token), 250 KV bytes a token (1000 bytes
 * a block), fabric 1e6 bytes/s (1 ms a block) plus 100 us a transfer,
 * DRAM and NVMe 1e6 bytes/s into HBM (1 ms a block).
 */
#include <errno.h>
#include <stdint.h>

#include "bounds.h"
#include "gen.h"
#include "policy.h"
#include "report.h"
#include "sim.h"
#include "testutil.h"
#include "trace.h"

#define MS 1000000ULL

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
tiny(uint32_t nodes, uint64_t hbm, uint64_t dram, uint64_t nvme)
{
    struct sim_params p;

    sim_params_default(&p);
    p.nodes = nodes;
    p.block_tokens = 4;
    p.capacity[SIM_TIER_HBM] = hbm;
    p.capacity[SIM_TIER_DRAM] = dram;
    p.capacity[SIM_TIER_NVME] = nvme;
    p.prefill_tps = 1000;
    p.decode_tps = 1000;
    p.kv_bytes_per_token = 250;
    p.fabric_bw = 1e6;
    p.fabric_latency_ns = 100000;
    p.tier_bw[SIM_TIER_DRAM] = 1e6;
    p.tier_bw[SIM_TIER_NVME] = 1e6;
    return p;
}

/* Runs `ops` over `t`; keeps the simulator in *sp if asked. */
static struct sim_result
run(const struct sim_params *p, struct trace *t,
    const struct sim_policy_ops *ops, struct sim **sp)
{
    struct policy_knobs k;
    struct sim_result r;
    struct sim *s;

    policy_knobs_default(&k);
    ck_assert_msg(sim_create(p, t, ops, &k, &s, err, sizeof err) == 0, "%s",
                  err);
    ck_assert_msg(sim_run(s, &r, err, sizeof err) == 0, "%s", err);
    if (sp) {
        *sp = s;
    } else {
        sim_destroy(s);
    }
    return r;
}

static uint64_t
ttft(const struct sim *s, uint32_t id)
{
    struct sim_outcome o;

    ck_assert_int_eq(sim_outcome(s, id, &o), 0);
    return o.first_token_ns - o.arrival_ns;
}

START_TEST(test_accounting)
{
    /*
     * accounting.jsonl, 2 nodes of 4 HBM blocks, round robin (requests
     * 0, 2, 4, 6 on node 0; 1, 3, 5 on node 1).
     *
     *  id  t(ms) blocks   node  reused            computed  TTFT
     *   0   0   [1,2]      0    -                 8         8 ms
     *   1   0   [1,3]      1    -                 6         6 ms
     *   2  10   [1,2,4]    0    1,2 = 8 tokens    4         4 ms
     *   3  10   [1,2]      1    1 = 4 (2 missing) 4         4 ms
     *   4  20   [5,6,7]    0    -                 10        10 ms
     *        node 0 holds 1,2,4 (LRU first: 4, 2, 1: a prompt's tail
     *        goes first); 5 fits, 6 evicts 4, 7 evicts 2
     *   5  40   [1,2,4]    1    1,2 = 8           4         4 ms
     *   6  40   [1,2,4]    0    1 = 4 (2 evicted) 8         8 ms
     *
     * Prompt tokens 68, reused 24 (all HBM), computed 44.
     */
    struct trace *t = load("accounting.jsonl");
    struct sim_params p = tiny(2, 4, 0, 0);
    struct sim *s;
    struct sim_result r = run(&p, t, &policy_round_robin, &s);
    const uint64_t want_ttft[] = {8, 6, 4, 4, 10, 4, 8};
    struct sim_outcome o;

    ck_assert_str_eq(r.policy, "round_robin");
    ck_assert_uint_eq(r.requests, 7);
    ck_assert_uint_eq(r.input_tokens, 68);
    ck_assert_uint_eq(r.hit_tokens, 24);
    ck_assert_uint_eq(r.hit_tokens_tier[SIM_TIER_HBM], 24);
    ck_assert_uint_eq(r.hit_tokens_peer, 0);
    ck_assert_uint_eq(r.prefill_tokens, 44);
    ck_assert_uint_eq(r.fabric_bytes, 0);
    /* 4 and 2 make room for 6 and 7; then 7 and 6 for 2 and 4. */
    ck_assert_uint_eq(r.dropped_blocks, 4);
    ck_assert_uint_eq(r.decisions, 7);
    for (uint32_t i = 0; i < 7; i++) {
        ck_assert_uint_eq(ttft(s, i), want_ttft[i] * MS);
    }
    ck_assert_int_eq(sim_outcome(s, 6, &o), 0);
    ck_assert_uint_eq(o.node, 0);
    ck_assert_uint_eq(o.hit_blocks, 1);
    ck_assert_uint_eq(o.start_ns, 40 * MS);
    ck_assert_int_eq(sim_outcome(s, 7, &o), -EINVAL);
    /* Node 0 after request 6: 1, 5, 2, 4. */
    ck_assert_int_eq(sim_where(s, 0, 5), SIM_TIER_HBM);
    ck_assert_int_eq(sim_where(s, 0, 6), SIM_TIER_NONE);
    ck_assert_int_eq(sim_where(s, 0, 7), SIM_TIER_NONE);
    ck_assert_int_eq(sim_where(s, 0, 4), SIM_TIER_HBM);
    /* TTFT: 4, 4, 4, 6, 8, 8, 10 ms sorted; p50 is the 4th, p99 the 7th. */
    ck_assert_double_eq_tol(r.ttft_p50_s, 0.006, 1e-12);
    ck_assert_double_eq_tol(r.ttft_p99_s, 0.010, 1e-12);
    ck_assert_double_eq_tol(r.ttft_mean_s, 0.044 / 7, 1e-12);
    sim_destroy(s);
    trace_destroy(t);
}
END_TEST

START_TEST(test_queueing)
{
    /*
     * queue.jsonl on one node: request 0 [1,2] runs 0-8 ms; request 1
     * [1,2] arrives at 1 ms, waits, reuses both blocks at 8 ms and has
     * nothing to compute (TTFT 7 ms); request 2 [3] arrives at 2 ms and
     * runs 8-12 ms (TTFT 10 ms).
     */
    struct trace *t = load("queue.jsonl");
    struct sim_params p = tiny(1, 8, 0, 0);
    struct sim *s;
    struct sim_result r = run(&p, t, &policy_least_loaded, &s);

    ck_assert_uint_eq(ttft(s, 0), 8 * MS);
    ck_assert_uint_eq(ttft(s, 1), 7 * MS);
    ck_assert_uint_eq(ttft(s, 2), 10 * MS);
    ck_assert_uint_eq(r.hit_tokens, 8);
    ck_assert_uint_eq(r.prefill_tokens, 12);
    /* Busy 12 ms of a 12 ms makespan. */
    ck_assert_double_eq_tol(r.makespan_s, 0.012, 1e-12);
    ck_assert_double_eq_tol(r.utilization, 1.0, 1e-12);
    sim_destroy(s);
    trace_destroy(t);
}
END_TEST

START_TEST(test_decode_occupancy)
{
    /*
     * decode.jsonl, one node of 3 HBM blocks, decode 1000 tokens/s:
     * request 0 [1,2] prefills 0-8 ms, then decodes 4 tokens until 12 ms
     * holding its 2 blocks and 1 more for the answer: HBM is full.
     * Request 1 [3] at 9 ms finds no room: computed, not cached.
     * Request 2 [3] at 20 ms misses and caches it; request 3 [1,2] at
     * 30 ms reuses 8 tokens.
     */
    struct trace *t = load("decode.jsonl");
    struct sim_params p = tiny(1, 3, 0, 0);
    struct sim *s;
    struct sim_result r = run(&p, t, &policy_round_robin, &s);
    struct sim_outcome o;

    ck_assert_uint_eq(r.uncached_blocks, 1);
    ck_assert_uint_eq(r.hit_tokens, 8);
    ck_assert_uint_eq(r.prefill_tokens, 16);
    ck_assert_int_eq(sim_outcome(s, 0, &o), 0);
    ck_assert_uint_eq(o.first_token_ns, 8 * MS);
    ck_assert_uint_eq(o.done_ns, 12 * MS);
    ck_assert_uint_eq(ttft(s, 1), 4 * MS);
    ck_assert_uint_eq(ttft(s, 2), 4 * MS);
    ck_assert_uint_eq(ttft(s, 3), 0);
    sim_destroy(s);
    trace_destroy(t);
}
END_TEST

START_TEST(test_tiers)
{
    /*
     * tiers.jsonl, one node, HBM 2 and DRAM 2 blocks:
     *   0 ms [1,2]: HBM {1,2}.
     *  10 ms [3,4]: 2 then 1 are demoted (tail first): DRAM {2,1}.
     *  20 ms [1,2]: both reused from DRAM (8 tokens), promoted at 1 ms
     *        each: TTFT 2 ms; promoting them demotes 4 and 3.
     *  30 ms [3]:   reused from DRAM (4 tokens), TTFT 1 ms; demotes 2.
     * Demoted 5 blocks (5000 bytes), promoted 3 (3000), dropped none.
     */
    struct trace *t = load("tiers.jsonl");
    struct sim_params p = tiny(1, 2, 2, 0);
    struct sim *s;
    struct sim_result r = run(&p, t, &policy_round_robin, &s);

    ck_assert_uint_eq(r.hit_tokens, 12);
    ck_assert_uint_eq(r.hit_tokens_tier[SIM_TIER_DRAM], 12);
    ck_assert_uint_eq(r.hit_tokens_tier[SIM_TIER_HBM], 0);
    ck_assert_uint_eq(r.prefill_tokens, 16);
    ck_assert_uint_eq(r.demoted_bytes, 5000);
    ck_assert_uint_eq(r.promoted_bytes, 3000);
    ck_assert_uint_eq(r.dropped_blocks, 0);
    ck_assert_uint_eq(ttft(s, 2), 2 * MS);
    ck_assert_uint_eq(ttft(s, 3), 1 * MS);
    ck_assert_int_eq(sim_where(s, 0, 1), SIM_TIER_HBM);
    ck_assert_int_eq(sim_where(s, 0, 3), SIM_TIER_HBM);
    ck_assert_int_eq(sim_where(s, 0, 2), SIM_TIER_DRAM);
    ck_assert_int_eq(sim_where(s, 0, 4), SIM_TIER_DRAM);
    sim_destroy(s);
    trace_destroy(t);
}
END_TEST

START_TEST(test_nvme_and_drops)
{
    /*
     * nvme.jsonl, one node, HBM 1, no DRAM, NVMe 1 (demotion skips the
     * empty tier):
     *   [1]: HBM {1}.  [2]: 1 -> NVMe.  [3]: 2 -> NVMe, 1 dropped.
     *   [1]: miss; 3 -> NVMe, 2 dropped.  [3]: reused from NVMe (4
     *   tokens, 1 ms to promote), 1 -> NVMe.
     * 4 demotions, 2 drops.
     */
    struct trace *t = load("nvme.jsonl");
    struct sim_params p = tiny(1, 1, 0, 1);
    struct sim *s;
    struct sim_result r = run(&p, t, &policy_round_robin, &s);

    ck_assert_uint_eq(r.hit_tokens, 4);
    ck_assert_uint_eq(r.hit_tokens_tier[SIM_TIER_NVME], 4);
    ck_assert_uint_eq(r.dropped_blocks, 2);
    ck_assert_uint_eq(r.demoted_bytes, 4000);
    ck_assert_uint_eq(ttft(s, 4), 1 * MS);
    ck_assert_int_eq(sim_where(s, 0, 3), SIM_TIER_HBM);
    ck_assert_int_eq(sim_where(s, 0, 1), SIM_TIER_NVME);
    sim_destroy(s);
    trace_destroy(t);
}
END_TEST

/* ---- A scripted policy exercising every order ---- */

struct script {
    unsigned stored[4]; /* on_store calls by why */
    unsigned evicted;   /* on_evict calls */
    unsigned dropped;   /* ... with to == SIM_TIER_NONE */
    unsigned done;      /* on_done calls */
    unsigned ticks;     /* on_tick calls */
    int tick_fetch_rc;  /* what a FETCH from on_tick returned */
    int bad_rc;         /* what an order to node 7 returned */
};

static struct script last_script;

static int
sc_create(const struct sim_policy_env *env, void **state, uint64_t *tick_ns,
          char *err_, size_t errlen)
{
    struct script *sc = calloc(1, sizeof *sc);

    if (!sc) {
        return -ENOMEM;
    }
    *tick_ns = 15 * MS;
    *state = sc;
    return 0;
}

static void
sc_destroy(void *state)
{
    if (state) {
        last_script = *(struct script *)state;
    }
    free(state);
}

static int
sc_route(void *state, struct sim *sim, uint32_t id,
         const struct trace_request *req, uint32_t *node)
{
    struct script *sc = state;
    static const uint64_t chain[] = {1, 2, 3};
    struct sim_order o = {.chain = chain, .count = 3, .parent = SIM_NO_PARENT};

    switch (id) {
    case 0:
        *node = 0;
        o.kind = SIM_ORDER_REPLICATE;
        o.src = 0;
        o.dst = 7;
        o.tier = SIM_TIER_HBM;
        sc->bad_rc = sim_order(sim, &o);
        break;
    case 1:
        /* Fetch [1,2,3] from node 0, which holds 1 and 2. */
        *node = 1;
        o.kind = SIM_ORDER_FETCH;
        o.src = 0;
        ck_assert_int_eq(sim_order(sim, &o), 0);
        break;
    case 2:
        /* Copy [1,2,3] from node 1 to node 0, which lacks only 3. */
        *node = 0;
        o.kind = SIM_ORDER_REPLICATE;
        o.src = 1;
        o.dst = 0;
        o.tier = SIM_TIER_HBM;
        ck_assert_int_eq(sim_order(sim, &o), 0);
        break;
    case 3:
        *node = 0;
        break;
    default:
        /* Drop block 1 from node 1 before routing there. */
        *node = 1;
        o.kind = SIM_ORDER_DEMOTE;
        o.dst = 1;
        o.count = 1;
        o.tier = SIM_TIER_NONE;
        ck_assert_int_eq(sim_order(sim, &o), 0);
        break;
    }
    return 0;
}

static void
sc_store(void *state, struct sim *sim, uint32_t node, uint64_t hash,
         uint64_t parent, enum sim_tier tier, enum sim_store_why why)
{
    ((struct script *)state)->stored[why]++;
}

static void
sc_evict(void *state, struct sim *sim, uint32_t node, uint64_t hash,
         enum sim_tier from, enum sim_tier to)
{
    struct script *sc = state;

    sc->evicted++;
    sc->dropped += to == SIM_TIER_NONE;
}

static void
sc_done(void *state, struct sim *sim, uint32_t id,
        const struct trace_request *req, uint32_t node)
{
    ((struct script *)state)->done++;
}

static void
sc_tick(void *state, struct sim *sim)
{
    struct script *sc = state;
    static const uint64_t chain[] = {1};
    struct sim_order o = {.kind = SIM_ORDER_FETCH, .chain = chain, .count = 1};

    sc->ticks++;
    sc->tick_fetch_rc = sim_order(sim, &o);
}

static const struct sim_policy_ops script_ops = {
    .name = "script",
    .create = sc_create,
    .destroy = sc_destroy,
    .route = sc_route,
    .on_store = sc_store,
    .on_evict = sc_evict,
    .on_done = sc_done,
    .on_tick = sc_tick,
};

START_TEST(test_fabric_orders)
{
    /*
     * fabric.jsonl, 2 nodes of 8 HBM blocks, the scripted policy:
     *   0  0 ms [1,2]   node 0, computed 0-8 ms.  (Its REPLICATE to node
     *                   7 is refused.)
     *   1 10 ms [1,2,3] node 1 with FETCH [1,2,3] from node 0: node 0
     *                   holds 1,2, so 2000 bytes move in 0.1 + 2 ms,
     *                   landing at 12.1 ms; then 8 tokens are reused
     *                   ("peer") and 4 computed: TTFT 6.1 ms.
     *   2 20 ms [5]     node 0; REPLICATE [1,2,3] from node 1 to node 0
     *                   moves only block 3 (1000 bytes, lands 21.1 ms).
     *   3 30 ms [1,2,3] node 0 reuses all 12 tokens from HBM.
     *   4 40 ms [1,2]   DEMOTE drops block 1 from node 1, then the request
     *                   runs there and reuses nothing.
     * Fabric 3000 bytes; reused 8 peer + 12 HBM; computed 8+4+4+0+8.
     * Stores: computed 2 (req 0) + 1 (3 on node 1) + 1 (5) + 1 (1 on
     * node 1 again) = 5, fetched 2, replicated 1.  Ticks at 15, 30 and
     * 45 ms; the run ends with request 4 at 48 ms.
     */
    struct trace *t = load("fabric.jsonl");
    struct sim_params p = tiny(2, 8, 0, 0);
    struct sim *s;
    struct sim_result r = run(&p, t, &script_ops, &s);

    ck_assert_uint_eq(r.fabric_bytes, 3000);
    ck_assert_uint_eq(r.hit_tokens_peer, 8);
    ck_assert_uint_eq(r.hit_tokens_tier[SIM_TIER_HBM], 12);
    ck_assert_uint_eq(r.prefill_tokens, 24);
    ck_assert_uint_eq(r.dropped_blocks, 1);
    ck_assert_uint_eq(ttft(s, 1), 6 * MS + 100000);
    ck_assert_uint_eq(ttft(s, 2), 4 * MS);
    ck_assert_uint_eq(ttft(s, 3), 0);
    ck_assert_uint_eq(ttft(s, 4), 8 * MS);
    ck_assert_int_eq(sim_where(s, 1, 1), SIM_TIER_HBM);
    ck_assert_int_eq(sim_where(s, 0, 3), SIM_TIER_HBM);
    /* Orders carried out: FETCH, REPLICATE, DEMOTE; refused: node 7 and
     * the three FETCHes from on_tick. */
    ck_assert_uint_eq(r.orders, 3);
    ck_assert_uint_eq(r.bad_orders, 4);
    sim_destroy(s);

    ck_assert_int_eq(last_script.bad_rc, -EINVAL);
    ck_assert_int_eq(last_script.tick_fetch_rc, -EINVAL);
    ck_assert_uint_eq(last_script.ticks, 3);
    ck_assert_uint_eq(last_script.stored[SIM_STORE_COMPUTED], 5);
    ck_assert_uint_eq(last_script.stored[SIM_STORE_FETCHED], 2);
    ck_assert_uint_eq(last_script.stored[SIM_STORE_REPLICATED], 1);
    ck_assert_uint_eq(last_script.evicted, 1);
    ck_assert_uint_eq(last_script.dropped, 1);
    ck_assert_uint_eq(last_script.done, 5);
    trace_destroy(t);
}
END_TEST

/* ---- Eviction classes: a policy that keeps block 1 ---- */

struct keeper {
    uint64_t idle[SIM_CLASSES];      /* what the last pick_victim saw */
    uint32_t present;                /* ... and which classes it had */
    unsigned picks;                  /* pick_victim calls */
    int rc_node, rc_cls, rc_missing; /* sim_set_class's refusals */
};

static struct keeper last_keeper;

static int
kp_create(const struct sim_policy_env *env, void **state, uint64_t *tick_ns,
          char *err_, size_t errlen)
{
    *state = calloc(1, sizeof(struct keeper));
    return *state ? 0 : -ENOMEM;
}

static void
kp_destroy(void *state)
{
    if (state) {
        last_keeper = *(struct keeper *)state;
    }
    free(state);
}

static int
kp_route(void *state, struct sim *sim, uint32_t id,
         const struct trace_request *req, uint32_t *node)
{
    *node = 0;
    return 0;
}

static void
kp_store(void *state, struct sim *sim, uint32_t node, uint64_t hash,
         uint64_t parent, enum sim_tier tier, enum sim_store_why why)
{
    struct keeper *k = state;

    if (hash == 1) {
        ck_assert_int_eq(sim_set_class(sim, node, 1, 1), 0);
        k->rc_node = sim_set_class(sim, 5, 1, 1);
        k->rc_cls = sim_set_class(sim, node, 1, SIM_CLASSES);
        k->rc_missing = sim_set_class(sim, node, 99, 1);
    }
}

static int
kp_pick(void *state, struct sim *sim, uint32_t node, enum sim_tier tier,
        const uint64_t idle_ns[SIM_CLASSES], uint32_t present)
{
    struct keeper *k = state;

    memcpy(k->idle, idle_ns, sizeof k->idle);
    k->present = present;
    k->picks++;
    return present & 1u ? 0 : 1;
}

static const struct sim_policy_ops keeper_ops = {
    .name = "keeper",
    .create = kp_create,
    .destroy = kp_destroy,
    .route = kp_route,
    .on_store = kp_store,
    .pick_victim = kp_pick,
};

START_TEST(test_eviction_classes)
{
    /*
     * classes.jsonl, one node of 2 HBM blocks, no answers (a request is
     * done, and its block unpinned, when its 4-token prefill ends):
     *   0 ms [1]: computed 0-4 ms; the policy puts 1 in class 1.
     *  10 ms [2]: computed 10-14 ms, class 0.
     *  20 ms [3]: needs room.  LRU evicts 1 (idle since 4 ms); the
     *        policy is asked (two classes: 0 idle 6 ms, 1 idle 16 ms)
     *        and evicts class 0, block 2.
     *  30 ms [1]: reused (4 tokens); nothing to compute, no eviction.
     * Round robin on the same trace (one node, plain LRU) reuses nothing.
     */
    struct trace *t = load("classes.jsonl");
    struct sim_params p = tiny(1, 2, 0, 0);
    struct sim *s;
    struct sim_result r = run(&p, t, &keeper_ops, &s);

    ck_assert_uint_eq(r.hit_tokens, 4);
    ck_assert_uint_eq(r.dropped_blocks, 1);
    ck_assert_int_eq(sim_where(s, 0, 1), SIM_TIER_HBM);
    ck_assert_int_eq(sim_where(s, 0, 2), SIM_TIER_NONE);
    sim_destroy(s);
    ck_assert_uint_eq(last_keeper.picks, 1);
    ck_assert_uint_eq(last_keeper.present, 3);
    ck_assert_uint_eq(last_keeper.idle[0], 6 * MS);
    ck_assert_uint_eq(last_keeper.idle[1], 16 * MS);
    ck_assert_int_eq(last_keeper.rc_node, -EINVAL);
    ck_assert_int_eq(last_keeper.rc_cls, -EINVAL);
    ck_assert_int_eq(last_keeper.rc_missing, -ENOENT);

    r = run(&p, t, &policy_round_robin, NULL);
    ck_assert_uint_eq(r.hit_tokens, 0);
    trace_destroy(t);
}
END_TEST

/* A policy that routes out of range. */
static int
bad_route(void *state, struct sim *sim, uint32_t id,
          const struct trace_request *req, uint32_t *node)
{
    *node = 99;
    return 0;
}

static int
failing_route(void *state, struct sim *sim, uint32_t id,
              const struct trace_request *req, uint32_t *node)
{
    return -ENOTSUP;
}

START_TEST(test_bad_policy_and_params)
{
    static const struct sim_policy_ops bad = {.name = "bad",
                                              .route = bad_route};
    static const struct sim_policy_ops failing = {.name = "failing",
                                                  .route = failing_route};
    static const struct sim_policy_ops none = {.name = "none"};
    struct trace *t = load("queue.jsonl");
    struct sim_params p = tiny(2, 8, 0, 0);
    struct sim_result r;
    struct sim *s;

    ck_assert_int_eq(sim_create(&p, t, &bad, NULL, &s, err, sizeof err), 0);
    ck_assert_err(sim_run(s, &r, err, sizeof err), -EINVAL, err,
                  "policy bad routed request 0 (trace line 1) to node 99");
    sim_destroy(s);
    ck_assert_int_eq(sim_create(&p, t, &failing, NULL, &s, err, sizeof err),
                     0);
    ck_assert_err(sim_run(s, &r, err, sizeof err), -ENOTSUP, err,
                  "failed to route");
    sim_destroy(s);
    ck_assert_int_eq(sim_create(&p, t, &none, NULL, &s, err, sizeof err),
                     -EINVAL);
    sim_destroy(NULL);

    p.capacity[SIM_TIER_HBM] = 0;
    ck_assert_err(sim_params_validate(&p, err, sizeof err), -EINVAL, err,
                  "hbm_blocks");
    p = tiny(0, 8, 0, 0);
    ck_assert_err(sim_params_validate(&p, err, sizeof err), -EINVAL, err,
                  "nodes");
    p = tiny(2, 8, 4, 0);
    p.tier_bw[SIM_TIER_DRAM] = 0;
    ck_assert_err(sim_params_validate(&p, err, sizeof err), -EINVAL, err,
                  "DRAM bandwidth");
    p = tiny(2, 8, 0, 0);
    p.block_tokens = 512;
    ck_assert_err(sim_create(&p, t, &policy_random, NULL, &s, err, sizeof err),
                  -EINVAL, err, "4-token blocks");
    trace_destroy(t);
}
END_TEST

START_TEST(test_baseline_rules)
{
    /*
     * accounting.jsonl on 2 nodes of 4 blocks:
     * least_loaded: requests 0 and 1 arrive together; 0 finds both nodes
     *   idle (a tie), 1 goes to the other one.
     * kv_overlap: request 2 [1,2,4] at 10 ms: the node that ran [1,2]
     *   has overlap 2 (cost 1 + 3 = 4), the other overlap 1 (cost 2 + 3
     *   = 5), so it follows [1,2].
     * cache_aware: request 0 finds two empty trees and takes node 0;
     *   request 1 [1,3] matches 4 of 6 tokens there (0.67 > 0.5) and
     *   follows, and so do 2 [1,2,4] (8/12) and 3 [1,2] (8/8).  Request 4
     *   [5,6,7] matches nothing and goes to the smaller tree: node 1.
     */
    struct trace *t = load("accounting.jsonl");
    struct sim_params p = tiny(2, 4, 0, 0);
    struct sim_outcome o0, o1, o2, o4;
    struct sim *s;

    run(&p, t, &policy_least_loaded, &s);
    sim_outcome(s, 0, &o0);
    sim_outcome(s, 1, &o1);
    ck_assert_uint_ne(o0.node, o1.node);
    sim_destroy(s);

    run(&p, t, &policy_kv_overlap, &s);
    sim_outcome(s, 0, &o0);
    sim_outcome(s, 2, &o2);
    ck_assert_uint_eq(o2.node, o0.node);
    ck_assert_uint_eq(o2.hit_blocks, 2);
    sim_destroy(s);

    run(&p, t, &policy_cache_aware, &s);
    sim_outcome(s, 0, &o0);
    sim_outcome(s, 1, &o1);
    sim_outcome(s, 2, &o2);
    sim_outcome(s, 4, &o4);
    ck_assert_uint_eq(o0.node, 0);
    ck_assert_uint_eq(o1.node, 0);
    ck_assert_uint_eq(o2.node, 0);
    ck_assert_uint_eq(o4.node, 1);
    sim_destroy(s);
    trace_destroy(t);
}
END_TEST

/* A generated trace in memory. */
static struct trace *
generated(uint64_t requests, uint64_t seed)
{
    struct gen_params g;
    struct trace_options o = {0};
    struct trace *t;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    gen_params_default(&g);
    g.requests = requests;
    g.seed = seed;
    g.session_rate = 4;
    ck_assert_int_eq(gen_write(&g, f, NULL, err, sizeof err), 0);
    fclose(f);
    f = fmemopen(buf, len, "r");
    ck_assert_int_eq(trace_load_stream(f, "gen", &o, &t, err, sizeof err), 0);
    fclose(f);
    free(buf);
    return t;
}

/* Report bytes for one trace and every policy, without wall-clock
 * figures. */
static char *
report_bytes(struct trace *t, const struct sim_params *p, size_t *len)
{
    struct report_row rows[8];
    struct report_trace tr = {.rows = rows};
    struct report rep = {.params_text = "x = 1\n",
                         .block_tokens = p->block_tokens,
                         .traces = &tr,
                         .n_traces = 1};
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);

    snprintf(tr.name, sizeof tr.name, "gen");
    tr.requests = t->n;
    tr.input_tokens = t->stats.input_tokens;
    ck_assert_int_eq(bounds_infinite(t, &tr.infinite), 0);
    for (size_t i = 0; i < policy_count; i++) {
        struct report_row *row = &rows[tr.n_rows++];
        struct sim *s;

        memset(row, 0, sizeof *row);
        snprintf(row->policy, sizeof row->policy, "%s", policy_table[i].name);
        if (!policy_table[i].ops) {
            continue;
        }
        row->r = run(p, t, policy_table[i].ops, &s);
        row->available = true;
        ck_assert_int_eq(bounds_belady_sim(s, &row->belady), 0);
        row->have_belady = true;
        sim_destroy(s);
    }
    report_write_md(f, &rep);
    report_write_csv(f, &rep);
    fclose(f);
    return buf;
}

START_TEST(test_deterministic)
{
    struct trace *t = generated(1500, 7);
    struct sim_params p;
    char *a, *b;
    size_t la, lb;

    sim_params_default(&p);
    p.capacity[SIM_TIER_HBM] = 300;
    p.capacity[SIM_TIER_DRAM] = 300;
    p.seed = 42;
    a = report_bytes(t, &p, &la);
    b = report_bytes(t, &p, &lb);
    ck_assert_uint_eq(la, lb);
    ck_assert_int_eq(memcmp(a, b, la), 0);
    /* MCOS is listed first, with figures. */
    ck_assert_ptr_nonnull(strstr(a, "| mcos | "));
    ck_assert_ptr_null(strstr(a, "not yet available"));
    ck_assert_ptr_null(strstr(a, "decisions/s"));
    free(a);
    free(b);

    /* A different seed changes the random policy's routing. */
    {
        struct sim_result r1, r2;

        r1 = run(&p, t, &policy_random, NULL);
        p.seed = 43;
        r2 = run(&p, t, &policy_random, NULL);
        ck_assert(r1.hit_tokens != r2.hit_tokens ||
                  r1.ttft_p99_s != r2.ttft_p99_s);
    }
    trace_destroy(t);
}
END_TEST

/* The report's goals: MCOS's figures beside the 97% target and the best
 * baseline's, with the verdict worked out from the printed digits. */
START_TEST(test_report_goals)
{
    struct report_row rows[3] = {0};
    struct report_trace tr = {.rows = rows, .n_rows = 3};
    struct report rep = {.params_text = "",
                         .block_tokens = 512,
                         .nodes = 8,
                         .hbm_blocks = 5860,
                         .traces = &tr,
                         .n_traces = 1};
    char *buf = NULL;
    size_t len;
    FILE *f;

    snprintf(tr.name, sizeof tr.name, "t");
    tr.infinite.hit_tokens = 1000;
    tr.infinite.input_tokens = 4000;
    snprintf(rows[0].policy, sizeof rows[0].policy, "mcos");
    rows[0].available = true;
    rows[0].r.hit_tokens = 975; /* 97.5% of the bound */
    rows[0].r.input_tokens = 4000;
    rows[0].r.ttft_p99_s = 9.4004;
    rows[0].r.imbalance_p99 = 6.3;
    snprintf(rows[1].policy, sizeof rows[1].policy, "kv_overlap");
    rows[1].available = true;
    rows[1].r.ttft_p99_s = 9.4001; /* prints as 9.400 too: a tie */
    rows[1].r.imbalance_p99 = 5.29;
    snprintf(rows[2].policy, sizeof rows[2].policy, "least_loaded");
    rows[2].available = true;
    rows[2].r.ttft_p99_s = 15.0;
    rows[2].r.imbalance_p99 = 6.1;
    f = open_memstream(&buf, &len);
    report_write_md(f, &rep);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(buf, "(this run: 8 nodes, 3.00 M tokens a "
                                      "node)"));
    ck_assert_ptr_nonnull(
        strstr(buf, "| saves >= 97% of the infinite cache's saving "
                    "(conversation) | 97.5% | | met |\n"));
    ck_assert_ptr_nonnull(
        strstr(buf, "better (synthetic) | 9.400 s | 9.400 s (kv_overlap) | "
                    "ties |\n"));
    ck_assert_ptr_nonnull(strstr(
        buf, "better (synthetic) | 6.30 | 5.29 (kv_overlap) | **loses** |\n"));
    free(buf);

    rows[0].r.hit_tokens = 969;
    rows[0].r.imbalance_p99 = 5.0;
    rows[1].r.ttft_p99_s = 9.5;
    f = open_memstream(&buf, &len);
    report_write_md(f, &rep);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(buf, "| 96.9% | | **not met** |\n"));
    ck_assert_ptr_nonnull(
        strstr(buf, "| 9.400 s | 9.500 s (kv_overlap) | wins |\n"));
    ck_assert_ptr_nonnull(strstr(buf, "| 5.00 | 5.29 (kv_overlap) | wins |"));
    free(buf);

    /* Without an MCOS row there is nothing to state. */
    rows[0].available = false;
    f = open_memstream(&buf, &len);
    report_write_md(f, &rep);
    fclose(f);
    ck_assert_ptr_null(strstr(buf, "Goals"));
    free(buf);
}
END_TEST

START_TEST(test_conservation)
{
    /* On a generated workload with all tiers, every policy's figures add
     * up: reused + computed = prompt, and reuse never beats the infinite
     * cache. */
    struct trace *t = generated(3000, 3);
    struct bounds_result inf;
    struct sim_params p;

    sim_params_default(&p);
    p.capacity[SIM_TIER_HBM] = 200;
    p.capacity[SIM_TIER_DRAM] = 200;
    p.capacity[SIM_TIER_NVME] = 400;
    ck_assert_int_eq(bounds_infinite(t, &inf), 0);
    for (size_t i = 0; i < policy_count; i++) {
        struct sim_result r;

        if (!policy_table[i].ops) {
            continue;
        }
        r = run(&p, t, policy_table[i].ops, NULL);
        ck_assert_uint_eq(r.hit_tokens + r.prefill_tokens, r.input_tokens);
        ck_assert_uint_eq(r.hit_tokens_tier[0] + r.hit_tokens_tier[1] +
                              r.hit_tokens_tier[2] + r.hit_tokens_peer,
                          r.hit_tokens);
        ck_assert_uint_le(r.hit_tokens, inf.hit_tokens);
        ck_assert_uint_eq(r.input_tokens, inf.input_tokens);
        ck_assert_uint_gt(r.imbalance_samples, 0);
        ck_assert(r.ttft_p99_s >= r.ttft_p50_s);
    }
    trace_destroy(t);
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("sim");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_accounting);
    tcase_add_test(tc, test_queueing);
    tcase_add_test(tc, test_decode_occupancy);
    tcase_add_test(tc, test_tiers);
    tcase_add_test(tc, test_nvme_and_drops);
    tcase_add_test(tc, test_fabric_orders);
    tcase_add_test(tc, test_eviction_classes);
    tcase_add_test(tc, test_bad_policy_and_params);
    tcase_add_test(tc, test_baseline_rules);
    tcase_add_test(tc, test_deterministic);
    tcase_add_test(tc, test_report_goals);
    tcase_add_test(tc, test_conservation);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
