/*
 * Tests for agent/store's watermark demotion order: plain LRU without a
 * residency rule, the brain's residency and reuse rules with one.  A real
 * store (DRAM arena, NVMe tier in a temp dir, the executor thread) on a
 * loop this test runs, with a fake clock.
 *
 * The node: 1 MiB of DRAM, NVMe below it; the table's tier/dram rule
 * starts demotion above 50% and stops at 25%.  Objects are 64 KiB KV
 * blocks: a chain a1 <- a2 <- a3 stored first (the coldest), then o1..o7.
 * The 9th object (576 KiB, 56%) crosses the high mark, and demotion runs
 * down to 256 KiB: 5 objects go to NVMe.
 */
#include <errno.h>
#include <uv.h>

#include "residency_table.h"
#include "store.h"
#include "table.h"
#include "testutil.h"

#define KiB 1024ULL

static const uint64_t ids[] = {0xa1, 0xa2, 0xa3, 0x01, 0x02,
                               0x03, 0x04, 0x05, 0x06, 0x07};
#define N_IDS (sizeof ids / sizeof ids[0])

struct rig {
    uv_loop_t loop;
    struct mcos_fake_clock clock;
    struct agent_tables *tables;
    struct agent_observe *obs;
    struct agent_store *s;
    char *dir;
};

static void
req_done(struct agent_store_req *req, void *arg)
{
    (void)req;
    *(bool *)arg = true;
}

static int
is_moving(struct agent_object *o, void *arg)
{
    (void)arg;
    return o->state == AGENT_OBJ_MOVING;
}

/* Runs the loop until no object is moving. */
static void
settle(struct rig *r)
{
    for (int i = 0; i < 5000; i++) {
        uv_run(&r->loop, UV_RUN_NOWAIT);
        if (!agent_store_foreach(r->s, is_moving, NULL)) {
            return;
        }
        usleep(1000);
    }
    ck_abort_msg("moves did not finish");
}

static void
submit(struct rig *r, struct agent_store_req *req)
{
    bool done = false;

    req->done = req_done;
    req->arg = &done;
    agent_store_submit(r->s, req);
    for (int i = 0; i < 5000 && !done; i++) {
        uv_run(&r->loop, UV_RUN_NOWAIT);
        usleep(done ? 0 : 1000);
    }
    ck_assert(done);
    ck_assert_msg(req->status == 0, "op %d on %llx: %s", req->op,
                  (unsigned long long)req->id, req->error);
}

/* Places and commits a 64 KiB KV block with `parent`, then lets any
 * demotion it started finish. */
static void
put(struct rig *r, uint64_t id, uint64_t parent)
{
    struct agent_store_req req = {0};

    req.op = MCOS__API_OP__API_PLACE;
    req.id = id;
    req.size = 64 * KiB;
    req.cls = MCOS__OBJECT_CLASS__CLASS_KV_BLOCK;
    req.parent = parent;
    snprintf(req.ns, sizeof req.ns, "m");
    req.tier = MCOS__TIER_KIND__TIER_DRAM;
    submit(r, &req);
    memset(&req, 0, sizeof req);
    req.op = MCOS__API_OP__API_COMMIT;
    req.id = id;
    submit(r, &req);
    settle(r);
}

/* The table: tier/dram 50%/25%, and with `residency` the residency rule
 * (class 0 scores 30000, class 6, the default, 10000, the others 20000)
 * and reuse/00000000000000a3 in class 0. */
static void
apply_table(struct rig *r, bool residency)
{
    enum { N = MCOS_RESIDENCY_CLASSES * MCOS_RESIDENCY_AGES };
    Mcos__TierRule tier = MCOS__TIER_RULE__INIT;
    Mcos__ResidencyRule res = MCOS__RESIDENCY_RULE__INIT;
    Mcos__ReuseRule reuse = MCOS__REUSE_RULE__INIT;
    Mcos__Rule rules[3] = {MCOS__RULE__INIT, MCOS__RULE__INIT,
                           MCOS__RULE__INIT};
    const Mcos__Rule *ptrs[3] = {&rules[0], &rules[1], &rules[2]};
    uint32_t scores[N];
    struct mcos_table *t;
    Mcos__TableUpdate *u;
    char err[MCOS_TABLE_ERR_LEN];

    tier.tier = MCOS__TIER_KIND__TIER_DRAM;
    tier.high_watermark_pct = 50;
    tier.low_watermark_pct = 25;
    rules[0].key = "tier/dram";
    rules[0].rule_case = MCOS__RULE__RULE_TIER;
    rules[0].tier = &tier;
    for (int i = 0; i < N; i++) {
        int c = i / MCOS_RESIDENCY_AGES;

        scores[i] = c == 0 ? 30000 : c == 6 ? 10000 : 20000;
    }
    res.age_unit_ms = 10000;
    res.scores = scores;
    res.n_scores = N;
    res.default_class = 6;
    rules[1].key = "residency";
    rules[1].rule_case = MCOS__RULE__RULE_RESIDENCY;
    rules[1].residency = &res;
    reuse.object_id = 0xa3;
    reuse.reuse_class = 0;
    rules[2].key = "reuse/00000000000000a3";
    rules[2].rule_case = MCOS__RULE__RULE_REUSE;
    rules[2].reuse = &reuse;
    ck_assert_msg(mcos_table_build("t1", 1, ptrs, residency ? 3 : 1, &t, err,
                                   sizeof err) == 0,
                  "%s", err);
    ck_assert_int_eq(mcos_table_diff(NULL, t, &u), 0);
    ck_assert_msg(agent_tables_apply(r->tables, u, err, sizeof err) == 0, "%s",
                  err);
    mcos_table_update_free(u);
    mcos_table_free(t);
}

static void
rig_init(struct rig *r, bool residency)
{
    struct agent_store_config c = {0};
    char nvme[600], shm[64], err[256];

    memset(r, 0, sizeof *r);
    ck_assert_int_eq(uv_loop_init(&r->loop), 0);
    mcos_fake_clock_init(&r->clock, 1000000000ULL);
    r->dir = test_tmpdir();
    snprintf(nvme, sizeof nvme, "%s/nvme", r->dir);
    ck_assert_int_eq(mkdir(nvme, 0755), 0);
    snprintf(shm, sizeof shm, "/mcos-test-store-%d", getpid());
    c.node = "t1";
    c.dram_bytes = 1024 * KiB;
    c.shm_name = shm;
    c.nvme_dir = nvme;
    c.nvme_bytes = 8 * 1024 * KiB;
    ck_assert_int_eq(agent_tables_create("t1", &r->tables), 0);
    ck_assert_int_eq(agent_observe_create(&r->obs), 0);
    apply_table(r, residency);
    ck_assert_msg(agent_store_create(&r->loop, &r->clock.base, &c, r->tables,
                                     r->obs, &r->s, err, sizeof err) == 0,
                  "%s", err);
}

static void
rig_fini(struct rig *r)
{
    agent_store_close(r->s);
    for (int i = 0; i < 100; i++) {
        uv_run(&r->loop, UV_RUN_NOWAIT);
    }
    agent_observe_destroy(r->obs);
    agent_tables_destroy(r->tables);
    uv_loop_close(&r->loop);
    test_rmrf(r->dir);
    free(r->dir);
}

/* Stores a1 <- a2 <- a3, then o1..o7, one second apart, with or without
 * the residency rule; checks which objects ended in NVMe (a bit mask over
 * ids[]) and how many demotions there were, and by which order. */
static void
scenario(bool residency, unsigned want_nvme, uint64_t want_by_residency)
{
    struct agent_store_counters k;
    unsigned mask = 0;
    struct rig r;

    agent_tables_register_thread();
    rig_init(&r, residency);
    for (size_t i = 0; i < N_IDS; i++) {
        uint64_t parent = i > 0 && i < 3 ? ids[i - 1] : 0;

        put(&r, ids[i], parent);
        mcos_fake_clock_advance(&r.clock, 1000000);
    }
    for (size_t i = 0; i < N_IDS; i++) {
        const struct agent_object *o = agent_store_find(r.s, ids[i]);

        ck_assert_ptr_nonnull(o);
        ck_assert_int_eq(o->state, AGENT_OBJ_RESIDENT);
        if (o->tier == MCOS__TIER_KIND__TIER_NVME) {
            mask |= 1u << i;
        } else {
            ck_assert_int_eq(o->tier, MCOS__TIER_KIND__TIER_DRAM);
        }
    }
    ck_assert_uint_eq(mask, want_nvme);
    agent_store_counters(r.s, &k);
    ck_assert_uint_eq(k.demotions, 5);
    ck_assert_uint_eq(k.residency_demotions, want_by_residency);
    rig_fini(&r);
    agent_tables_unregister_thread();
}

/* No residency rule: the 5 coldest (a1, a2, a3, o1, o2) go down. */
START_TEST(test_lru_without_rule)
{
    scenario(false, 0x1f, 0);
}
END_TEST

/*
 * With the rule: a3's reuse rule puts a3 and, through its parents, a2
 * and a1 in class 0 (30000); o1..o6 take the default class 6 (10000).
 * The lowest scores go first, the colder of equals first: o1..o5.
 */
START_TEST(test_residency_order)
{
    scenario(true, 0xf8, 5);
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_lru_without_rule);
    tcase_add_test(tc, test_residency_order);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
