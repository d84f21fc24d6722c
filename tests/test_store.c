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
 *
 * The "remote" cases: evict demote_to_remote of objects that are not in
 * DRAM.  Two agents (stores and fabrics on TCP over loopback, one loop):
 * n1 with an HBM tier on the stand-in CUDA runtime (tests/fake_cudart.c)
 * and an NVMe tier, n2 hosting.  TCP cannot reach HBM, so an HBM or NVMe
 * object is staged through DRAM, verified on n2, and comes back with its
 * bytes; a peer gone before the put leaves it in HBM, readable.
 */
#include <errno.h>
#include <uv.h>

#include "fabric.h"
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

/* ------------------------------------------------------------------------
 * Remote demotion from HBM and NVMe over TCP, which reaches neither: two
 * agents' stores and fabrics on one loop, on loopback. */

/* One agent: its table, store and fabric. */
struct node {
    const char *name;            /* node name */
    uint64_t boot;               /* boot id */
    struct agent_tables *tables; /* its tables */
    struct mcos_table *table;    /* the one in force, NULL: none */
    struct agent_store *s;       /* its store */
    struct agent_fabric *f;      /* its fabric, NULL once closed */
    char *dir;                   /* temp dir (NVMe tier) */
};

struct pair {
    uv_loop_t loop;
    struct node n1, n2; /* n1: HBM (stand-in runtime) and NVMe; n2: DRAM */
};

static void
pair_submit(struct pair *p, struct agent_store *s, struct agent_store_req *req)
{
    bool done = false;

    req->done = req_done;
    req->arg = &done;
    agent_store_submit(s, req);
    for (int i = 0; i < 15000 && !done; i++) {
        uv_run(&p->loop, UV_RUN_NOWAIT);
        usleep(done ? 0 : 1000);
    }
    ck_assert(done);
}

/* Gives `self` a table at `gen` that admits `peer` (NULL: no peer). */
static void
pair_table(struct node *self, const struct node *peer, uint64_t gen)
{
    Mcos__Endpoint eps[AGENT_FABRIC_MAX_ENDPOINTS];
    Mcos__Endpoint *ep_ptrs[AGENT_FABRIC_MAX_ENDPOINTS];
    Mcos__Region regs[4], *reg_ptrs[4];
    Mcos__PeerRule pr = MCOS__PEER_RULE__INIT;
    Mcos__Rule rule = MCOS__RULE__INIT;
    const Mcos__Rule *rules[1] = {&rule};
    struct mcos_table *t;
    Mcos__TableUpdate *u;
    char key[32], err[256];

    if (peer) {
        pr.node = (char *)peer->name;
        pr.boot_id = peer->boot;
        pr.n_endpoints = agent_fabric_endpoints(peer->f, eps, 4);
        pr.n_regions = agent_fabric_regions(peer->f, regs, 4);
        for (size_t i = 0; i < pr.n_endpoints; i++) {
            ep_ptrs[i] = &eps[i];
        }
        for (size_t i = 0; i < pr.n_regions; i++) {
            reg_ptrs[i] = &regs[i];
        }
        pr.endpoints = ep_ptrs;
        pr.regions = reg_ptrs;
        snprintf(key, sizeof key, "peer/%s", peer->name);
        rule.key = key;
        rule.rule_case = MCOS__RULE__RULE_PEER;
        rule.peer = &pr;
    }
    ck_assert_msg(mcos_table_build(self->name, gen, rules, peer ? 1 : 0, &t,
                                   err, sizeof err) == 0,
                  "%s", err);
    ck_assert_int_eq(mcos_table_diff(self->table, t, &u), 0);
    ck_assert_msg(agent_tables_apply(self->tables, u, err, sizeof err) == 0,
                  "%s", err);
    mcos_table_update_free(u);
    mcos_table_free(self->table);
    self->table = t;
    agent_fabric_tables_changed(self->f);
}

static void
node_init(struct pair *p, struct node *n, const char *name, bool hbm)
{
    struct agent_store_config c = {0};
    struct agent_fabric_config fc = {0};
    struct agent_fabric_hooks hooks;
    char nvme[600], shm[64], err[512];
    int r = -EADDRINUSE;

    n->name = name;
    n->boot = hbm ? 0x11 : 0x22;
    n->dir = test_tmpdir();
    snprintf(nvme, sizeof nvme, "%s/nvme", n->dir);
    ck_assert_int_eq(mkdir(nvme, 0755), 0);
    snprintf(shm, sizeof shm, "/mcos-test-store-%s-%d", name, getpid());
    c.node = name;
    c.dram_bytes = 1024 * KiB;
    c.shm_name = shm;
    c.shm_gid = -1;
    if (hbm) {
        c.nvme_dir = nvme;
        c.nvme_bytes = 1024 * KiB;
        c.hbm_bytes = 1024 * KiB;
        c.cuda_lib = FAKE_CUDART;
    }
    ck_assert_int_eq(agent_tables_create(name, &n->tables), 0);
    ck_assert_msg(agent_store_create(&p->loop, &mcos_clock_monotonic, &c,
                                     n->tables, NULL, &n->s, err,
                                     sizeof err) == 0,
                  "%s", err);
    ck_assert_int_eq(
        agent_store_tier_emulated(n->s, MCOS__TIER_KIND__TIER_HBM), false);
    agent_store_fabric_hooks(n->s, &hooks);
    fc.node = name;
    fc.boot_id = n->boot;
    fc.address = "127.0.0.1";
    fc.transports = "tcp";
    fc.hbm = agent_store_tier(n->s, MCOS__TIER_KIND__TIER_HBM);
    /* Ports shared with whatever else runs here: try a few. */
    for (uint16_t port = 29653; r == -EADDRINUSE && port < 29853; port += 2) {
        fc.port = port;
        r = agent_fabric_create(
            &p->loop, &mcos_clock_monotonic, &fc, n->tables,
            agent_store_tier(n->s, MCOS__TIER_KIND__TIER_DRAM), &hooks, &n->f,
            err, sizeof err);
    }
    ck_assert_msg(r == 0, "%d %s", r, err);
    agent_store_set_fabric(n->s, n->f);
}

static void
node_close_fabric(struct node *n)
{
    agent_store_set_fabric(n->s, NULL);
    agent_fabric_close(n->f);
    n->f = NULL;
}

static void
pair_init(struct pair *p)
{
    memset(p, 0, sizeof *p);
    ck_assert_int_eq(uv_loop_init(&p->loop), 0);
    agent_tables_register_thread();
    node_init(p, &p->n1, "n1", true);
    node_init(p, &p->n2, "n2", false);
    pair_table(&p->n1, &p->n2, 1);
    pair_table(&p->n2, &p->n1, 1);
}

static void
pair_fini(struct pair *p)
{
    struct node *ns[2] = {&p->n1, &p->n2};

    for (int i = 0; i < 2; i++) {
        if (ns[i]->f) {
            node_close_fabric(ns[i]);
        }
    }
    for (int i = 0; i < 2; i++) {
        agent_store_close(ns[i]->s);
    }
    ck_assert_int_eq(uv_run(&p->loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(uv_loop_close(&p->loop), 0);
    for (int i = 0; i < 2; i++) {
        mcos_table_free(ns[i]->table);
        agent_tables_destroy(ns[i]->tables);
        test_rmrf(ns[i]->dir);
        free(ns[i]->dir);
    }
    agent_tables_unregister_thread();
}

/* The byte at i of object id's pattern. */
static uint8_t
pattern(uint64_t id, size_t i)
{
    return (uint8_t)(id * 131 + i * 7 + (i >> 9));
}

static uint8_t *
arena(struct agent_store *s)
{
    void *base = NULL;
    uint64_t len = 0;

    ck_assert_int_eq(
        agent_tier_dram_region(agent_store_tier(s, MCOS__TIER_KIND__TIER_DRAM),
                               &base, &len),
        0);
    return base;
}

/* Places a 64 KiB object in `tier` of n1, written with its pattern. */
static void
put_in(struct pair *p, uint64_t id, int tier)
{
    struct agent_store_req req = {0};
    uint8_t *a = arena(p->n1.s);

    req.op = MCOS__API_OP__API_PLACE;
    req.id = id;
    req.size = 64 * KiB;
    req.cls = MCOS__OBJECT_CLASS__CLASS_KV_BLOCK;
    req.tier = tier;
    req.fallback_tier = tier;
    pair_submit(p, p->n1.s, &req);
    ck_assert_msg(req.status == 0, "place: %s", req.error);
    for (size_t i = 0; i < req.length; i++) {
        a[req.offset + i] = pattern(id, i);
    }
    memset(&req, 0, sizeof req);
    req.op = MCOS__API_OP__API_COMMIT;
    req.id = id;
    pair_submit(p, p->n1.s, &req);
    ck_assert_msg(req.status == 0, "commit: %s", req.error);
    for (int i = 0;
         i < 5000 && agent_store_find(p->n1.s, id)->state == AGENT_OBJ_MOVING;
         i++) {
        uv_run(&p->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    ck_assert_int_eq(agent_store_find(p->n1.s, id)->tier, tier);
    ck_assert_int_eq(agent_store_find(p->n1.s, id)->state, AGENT_OBJ_RESIDENT);
}

/* Gets the object from n1 (into DRAM), checks its bytes, releases it. */
static void
get_check(struct pair *p, uint64_t id)
{
    struct agent_store_req req = {0};
    const uint8_t *a = arena(p->n1.s);

    req.op = MCOS__API_OP__API_GET;
    req.id = id;
    req.peer = 1;
    pair_submit(p, p->n1.s, &req);
    ck_assert_msg(req.status == 0, "get: %s", req.error);
    ck_assert_uint_eq(req.length, 64 * KiB);
    for (size_t i = 0; i < req.length; i++) {
        ck_assert_msg(a[req.offset + i] == pattern(id, i),
                      "object %llx differs at byte %zu",
                      (unsigned long long)id, i);
    }
    ck_assert_int_eq(agent_store_find(p->n1.s, id)->tier,
                     MCOS__TIER_KIND__TIER_DRAM);
    req.op = MCOS__API_OP__API_RELEASE;
    req.view_id = req.view_out;
    pair_submit(p, p->n1.s, &req);
    ck_assert_int_eq(req.status, 0);
}

static void
evict_to_remote(struct pair *p, uint64_t id, struct agent_store_req *req)
{
    memset(req, 0, sizeof *req);
    req->op = MCOS__API_OP__API_EVICT;
    req->id = id;
    req->policy = 3;
    pair_submit(p, p->n1.s, req);
}

static uint64_t
tier_used(struct agent_store *s, int kind)
{
    struct agent_store_tier t;

    agent_store_tier_usage(s, kind, &t);
    return t.used;
}

static uint64_t
hosted(struct pair *p)
{
    struct agent_fabric_counters fc;

    agent_fabric_counters(p->n2.f, &fc);
    return fc.hosted_objects;
}

/* Runs the loop until n2 hosts `want` objects (FREE is one-way). */
static void
wait_hosted(struct pair *p, uint64_t want)
{
    for (int i = 0; i < 5000 && hosted(p) != want; i++) {
        uv_run(&p->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    ck_assert_uint_eq(hosted(p), want);
}

/* An object in HBM, and one on NVMe, go to n2 through a DRAM staging copy
 * (TCP cannot reach HBM), verified there; n1's extents are freed, the
 * staging copies too, and each comes back through get with its bytes. */
START_TEST(test_remote_staged)
{
    const int src[2] = {MCOS__TIER_KIND__TIER_HBM, MCOS__TIER_KIND__TIER_NVME};
    struct agent_store_counters k;
    struct agent_fabric_counters fc;
    struct agent_store_req req;
    struct pair p;

    pair_init(&p);
    for (int i = 0; i < 2; i++) {
        uint64_t id = 0x51 + (uint64_t)i;

        put_in(&p, id, src[i]);
        ck_assert_uint_eq(tier_used(p.n1.s, src[i]), 64 * KiB);
        evict_to_remote(&p, id, &req);
        ck_assert_msg(req.status == 0, "evict: %s", req.error);
        ck_assert_int_eq(agent_store_find(p.n1.s, id)->tier,
                         MCOS__TIER_KIND__TIER_REMOTE);
        ck_assert_int_eq(agent_store_find(p.n1.s, id)->state,
                         AGENT_OBJ_RESIDENT);
        /* Its extent and the staging copy are gone (DRAM holds the
         * objects fetched back before); n2 holds it. */
        ck_assert_uint_eq(tier_used(p.n1.s, src[i]), 0);
        ck_assert_uint_eq(tier_used(p.n1.s, MCOS__TIER_KIND__TIER_DRAM),
                          (uint64_t)i * 64 * KiB);
        wait_hosted(&p, 1);
        agent_store_counters(p.n1.s, &k);
        ck_assert_uint_eq(k.remote_demotions, (uint64_t)i + 1);
        ck_assert_uint_eq(k.remote_staged, (uint64_t)i + 1);
        ck_assert_uint_eq(k.remote_from_hbm, 0);
        ck_assert_uint_eq(k.move_failures, 0);
        /* Back through get: into n1's DRAM, verified; n2 frees its copy. */
        get_check(&p, id);
        wait_hosted(&p, 0);
        agent_store_counters(p.n1.s, &k);
        ck_assert_uint_eq(k.remote_fetches, (uint64_t)i + 1);
    }
    agent_fabric_counters(p.n1.f, &fc);
    ck_assert_uint_eq(fc.puts, 2);
    ck_assert_uint_eq(fc.put_failures, 0);
    ck_assert_uint_eq(fc.hbm_puts, 0);
    agent_fabric_counters(p.n2.f, &fc);
    ck_assert_uint_eq(fc.served_commits, 2);
    ck_assert_uint_eq(fc.checksum_failures, 0);
    pair_fini(&p);
}
END_TEST

/* Checks that a failed demotion left object id in HBM, counted nothing
 * but the failure, freed the staging copy (DRAM holds dram_used bytes of
 * other objects), and that the object still reads back. */
static void
check_stayed(struct pair *p, uint64_t id, uint64_t failures,
             uint64_t dram_used)
{
    struct agent_store_counters k;

    ck_assert_int_eq(agent_store_find(p->n1.s, id)->tier,
                     MCOS__TIER_KIND__TIER_HBM);
    ck_assert_int_eq(agent_store_find(p->n1.s, id)->state, AGENT_OBJ_RESIDENT);
    ck_assert_uint_eq(tier_used(p->n1.s, MCOS__TIER_KIND__TIER_HBM), 64 * KiB);
    ck_assert_uint_eq(tier_used(p->n1.s, MCOS__TIER_KIND__TIER_DRAM),
                      dram_used);
    agent_store_counters(p->n1.s, &k);
    ck_assert_uint_eq(k.remote_demotions, 0);
    ck_assert_uint_eq(k.remote_staged, 0);
    ck_assert_uint_eq(k.remote_from_hbm, 0);
    ck_assert_uint_eq(k.move_failures, failures);
    get_check(p, id);
}

/* The peer goes away while the object is being staged (it leaves n1's
 * table), then for good (its fabric stops): each demotion fails with
 * why, and the object stays in HBM, readable. */
START_TEST(test_remote_peer_gone)
{
    struct agent_store_req req = {0};
    bool done = false;
    struct pair p;

    pair_init(&p);
    put_in(&p, 0x61, MCOS__TIER_KIND__TIER_HBM);
    req.op = MCOS__API_OP__API_EVICT;
    req.id = 0x61;
    req.policy = 3;
    req.done = req_done;
    req.arg = &done;
    agent_store_submit(p.n1.s, &req);
    /* The staging copy runs on the dataplane thread; its completion waits
     * for the loop, so n2 is out of the table before the put. */
    ck_assert(!done);
    ck_assert_int_eq(agent_store_find(p.n1.s, 0x61)->state, AGENT_OBJ_MOVING);
    pair_table(&p.n1, NULL, 2);
    for (int i = 0; i < 5000 && !done; i++) {
        uv_run(&p.loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    ck_assert(done);
    ck_assert_int_eq(req.status, -EHOSTUNREACH);
    ck_assert_str_eq(req.error,
                     "no peer to demote to: the brain has admitted none with "
                     "a transport in common; the object stays in hbm");
    check_stayed(&p, 0x61, 1, 0);

    /* n2 back in the table, then stopped: the put cannot reach it. */
    pair_table(&p.n1, &p.n2, 3);
    node_close_fabric(&p.n2);
    put_in(&p, 0x62, MCOS__TIER_KIND__TIER_HBM);
    evict_to_remote(&p, 0x62, &req);
    ck_assert_int_eq(req.status, -ETIMEDOUT);
    ck_assert_str_eq(req.error,
                     "alloc to n2: Connection timed out; the object stays in "
                     "hbm");
    check_stayed(&p, 0x62, 2, 64 * KiB);
    pair_fini(&p);
}
END_TEST

/* No room in DRAM for the staging copy: the evict is refused at once and
 * nothing moves. */
START_TEST(test_remote_no_staging_room)
{
    struct agent_store_counters k;
    struct agent_store_req req = {0};
    struct pair p;

    pair_init(&p);
    put_in(&p, 0x71, MCOS__TIER_KIND__TIER_HBM);
    /* An object placed but not committed holds 1000 of the 1024 KiB, and
     * demotion never moves it. */
    req.op = MCOS__API_OP__API_PLACE;
    req.id = 0x72;
    req.size = 1000 * KiB;
    req.cls = MCOS__OBJECT_CLASS__CLASS_OTHER;
    pair_submit(&p, p.n1.s, &req);
    ck_assert_msg(req.status == 0, "place: %s", req.error);
    evict_to_remote(&p, 0x71, &req);
    ck_assert_int_eq(req.status, -ENOSPC);
    ck_assert_str_eq(req.error, "cannot demote to a peer: no room in dram to "
                                "stage 65536 bytes from hbm");
    ck_assert_int_eq(agent_store_find(p.n1.s, 0x71)->tier,
                     MCOS__TIER_KIND__TIER_HBM);
    ck_assert_int_eq(agent_store_find(p.n1.s, 0x71)->state,
                     AGENT_OBJ_RESIDENT);
    ck_assert_uint_eq(tier_used(p.n1.s, MCOS__TIER_KIND__TIER_DRAM),
                      1000 * KiB);
    agent_store_counters(p.n1.s, &k);
    ck_assert_uint_eq(k.remote_demotions, 0);
    ck_assert_uint_eq(k.move_failures, 0);
    ck_assert_uint_eq(hosted(&p), 0);
    memset(&req, 0, sizeof req);
    req.op = MCOS__API_OP__API_ABORT;
    req.id = 0x72;
    pair_submit(&p, p.n1.s, &req);
    ck_assert_int_eq(req.status, 0);
    get_check(&p, 0x71);
    pair_fini(&p);
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
    tc = tcase_create("remote");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_remote_staged);
    tcase_add_test(tc, test_remote_peer_gone);
    tcase_add_test(tc, test_remote_no_staging_room);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
