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
 *
 * The "wm_remote" cases: watermark demotion down a chain that ends in
 * peers' memory (demotion/dram dram -> remote) on the same two agents,
 * n1's store on a fake clock: by LRU, through hbm -> dram -> remote, by
 * the residency rule, the pause after a failure (no admitted peer, a
 * peer without room) walked second by second, and an agent without the
 * fabric, where the chain ends before remote.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <uv.h>

#include "fabric.h"
#include "log.h"
#include "residency_table.h"
#include "store.h"
#include "table.h"
#include "testutil.h"
#include "wire.h"

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

/* A test table's rules, and what they point to. */
#define MAX_RULES 8
struct rules {
    Mcos__TierRule tier[2];    /* tier/<kind> */
    Mcos__DemotionRule dem[2]; /* demotion/<kind> */
    Mcos__ResidencyRule res;   /* residency */
    Mcos__ReuseRule reuse;     /* reuse/<object> */
    uint32_t scores[MCOS_RESIDENCY_CLASSES * MCOS_RESIDENCY_AGES];
    Mcos__Rule r[MAX_RULES];        /* the rules */
    const Mcos__Rule *p[MAX_RULES]; /* pointers to them */
    char keys[MAX_RULES][40];       /* their keys */
    size_t n, n_tier, n_dem;        /* rules, tier and demotion rules */
};

/* Adds a rule of `rule_case` whose key is printf(fmt, ...). */
static Mcos__Rule *rules_add(struct rules *rs, int rule_case, const char *fmt,
                             ...) __attribute__((format(printf, 3, 4)));

static Mcos__Rule *
rules_add(struct rules *rs, int rule_case, const char *fmt, ...)
{
    Mcos__Rule *r = &rs->r[rs->n];
    va_list ap;

    ck_assert_uint_lt(rs->n, MAX_RULES);
    mcos__rule__init(r);
    va_start(ap, fmt);
    vsnprintf(rs->keys[rs->n], sizeof rs->keys[0], fmt, ap);
    va_end(ap);
    r->key = rs->keys[rs->n];
    r->rule_case = rule_case;
    rs->p[rs->n++] = r;
    return r;
}

/* tier/<kind>: demotion from above hi% down to lo%. */
static void
rules_tier(struct rules *rs, int kind, uint32_t hi, uint32_t lo)
{
    Mcos__TierRule *t = &rs->tier[rs->n_tier++];

    mcos__tier_rule__init(t);
    t->tier = kind;
    t->high_watermark_pct = hi;
    t->low_watermark_pct = lo;
    rules_add(rs, MCOS__RULE__RULE_TIER, "tier/%s", mcos_tier_name(kind))
        ->tier = t;
}

/* demotion/<from>: from -> to. */
static void
rules_demotion(struct rules *rs, int from, int to)
{
    Mcos__DemotionRule *d = &rs->dem[rs->n_dem++];

    mcos__demotion_rule__init(d);
    d->from = from;
    d->to = to;
    rules_add(rs, MCOS__RULE__RULE_DEMOTION, "demotion/%s",
              mcos_tier_name(from))
        ->demotion = d;
}

/* The residency rule (class 0 scores 30000, class 6, the default, 10000,
 * the others 20000, at every age) and reuse/<reuse_id> in class 0. */
static void
rules_residency(struct rules *rs, uint64_t reuse_id)
{
    enum { N = MCOS_RESIDENCY_CLASSES * MCOS_RESIDENCY_AGES };

    for (int i = 0; i < N; i++) {
        int c = i / MCOS_RESIDENCY_AGES;

        rs->scores[i] = c == 0 ? 30000 : c == 6 ? 10000 : 20000;
    }
    mcos__residency_rule__init(&rs->res);
    rs->res.age_unit_ms = 10000;
    rs->res.scores = rs->scores;
    rs->res.n_scores = N;
    rs->res.default_class = 6;
    rules_add(rs, MCOS__RULE__RULE_RESIDENCY, "residency")->residency =
        &rs->res;
    mcos__reuse_rule__init(&rs->reuse);
    rs->reuse.object_id = reuse_id;
    rs->reuse.reuse_class = 0;
    rules_add(rs, MCOS__RULE__RULE_REUSE, "reuse/%016" PRIx64, reuse_id)
        ->reuse = &rs->reuse;
}

/* Builds generation `gen` of node's table from rs and applies it over
 * *cur (the table in force, NULL: none), which it replaces. */
static void
rules_apply(const struct rules *rs, struct agent_tables *tables,
            const char *node, uint64_t gen, struct mcos_table **cur)
{
    struct mcos_table *t;
    Mcos__TableUpdate *u;
    char err[MCOS_TABLE_ERR_LEN];

    ck_assert_msg(
        mcos_table_build(node, gen, rs->p, rs->n, &t, err, sizeof err) == 0,
        "%s", err);
    ck_assert_int_eq(mcos_table_diff(*cur, t, &u), 0);
    ck_assert_msg(agent_tables_apply(tables, u, err, sizeof err) == 0, "%s",
                  err);
    mcos_table_update_free(u);
    mcos_table_free(*cur);
    *cur = t;
}

/* The table: tier/dram 50%/25%, and with `residency` the residency rule
 * and reuse/00000000000000a3 in class 0. */
static void
apply_table(struct rig *r, bool residency)
{
    struct rules rs = {0};
    struct mcos_table *t = NULL;

    rules_tier(&rs, MCOS__TIER_KIND__TIER_DRAM, 50, 25);
    if (residency) {
        rules_residency(&rs, 0xa3);
    }
    rules_apply(&rs, r->tables, "t1", 1, &t);
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
    struct mcos_fake_clock clock; /* n1's store's (fabrics: monotonic) */
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

/* Gives `self` a table at `gen` with the rules in rs (NULL: none) and a
 * peer rule that admits `peer` (NULL: no peer), which it adds to rs. */
static void
pair_policy(struct node *self, const struct node *peer, uint64_t gen,
            struct rules *rs)
{
    Mcos__Endpoint eps[AGENT_FABRIC_MAX_ENDPOINTS];
    Mcos__Endpoint *ep_ptrs[AGENT_FABRIC_MAX_ENDPOINTS];
    Mcos__Region regs[4], *reg_ptrs[4];
    Mcos__PeerRule pr = MCOS__PEER_RULE__INIT;
    struct rules none = {0};

    if (!rs) {
        rs = &none;
    }
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
        rules_add(rs, MCOS__RULE__RULE_PEER, "peer/%s", peer->name)->peer =
            &pr;
    }
    rules_apply(rs, self->tables, self->name, gen, &self->table);
    agent_fabric_tables_changed(self->f);
}

/* Gives `self` a table at `gen` that admits `peer` (NULL: no peer). */
static void
pair_table(struct node *self, const struct node *peer, uint64_t gen)
{
    pair_policy(self, peer, gen, NULL);
}

static void
node_init(struct pair *p, struct node *n, const char *name, bool hbm,
          const struct mcos_clock *clock)
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
    ck_assert_msg(agent_store_create(&p->loop, clock, &c, n->tables, NULL,
                                     &n->s, err, sizeof err) == 0,
                  "%s", err);
    ck_assert_int_eq(
        agent_store_tier_emulated(n->s, MCOS__TIER_KIND__TIER_HBM), false);
    agent_store_fabric_hooks(n->s, &hooks);
    fc.node = name;
    fc.boot_id = n->boot;
    fc.address = "127.0.0.1";
    fc.transports = "tcp";
    fc.hbm = agent_store_tier(n->s, MCOS__TIER_KIND__TIER_HBM);
    /* Ports shared with whatever else runs here: 100 pairs from 25653,
     * below the integration tests' 27000-29999 (integration/lib.sh),
     * starting at one the process id picks so that two runs at once do
     * not meet (nor take a port the other just closed). */
    for (int i = 0; r == -EADDRINUSE && i < 100; i++) {
        fc.port = (uint16_t)(25653 + 2 * ((getpid() % 50 * 2 + i) % 100));
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
    mcos_fake_clock_init(&p->clock, 1000000000ULL);
    node_init(p, &p->n1, "n1", true, &p->clock.base);
    node_init(p, &p->n2, "n2", false, &mcos_clock_monotonic);
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
    /* Bounded, and saying what is left, rather than the case's timeout. */
    for (int i = 0; i < 10000 && uv_loop_alive(&p->loop); i++) {
        uv_run(&p->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    if (uv_loop_alive(&p->loop)) {
        uv_print_active_handles(&p->loop, stderr);
        ck_abort_msg("the loop still has work 10 s after the close");
    }
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

/* evict of object id on n1 with `policy` (2 demote, 3 demote_to_remote). */
static void
evict_policy(struct pair *p, uint64_t id, uint32_t policy,
             struct agent_store_req *req)
{
    memset(req, 0, sizeof *req);
    req->op = MCOS__API_OP__API_EVICT;
    req->id = id;
    req->policy = policy;
    pair_submit(p, p->n1.s, req);
}

static void
evict_to_remote(struct pair *p, uint64_t id, struct agent_store_req *req)
{
    evict_policy(p, id, 3, req);
}

/* evict demote_to_remote of object id on n1, not waited for: `done` is
 * set when it ends (evict_wait()). */
static void
evict_to_remote_async(struct pair *p, uint64_t id, struct agent_store_req *req,
                      bool *done)
{
    memset(req, 0, sizeof *req);
    *done = false;
    req->op = MCOS__API_OP__API_EVICT;
    req->id = id;
    req->policy = 3;
    req->done = req_done;
    req->arg = done;
    agent_store_submit(p->n1.s, req);
}

static void
evict_wait(struct pair *p, const bool *done)
{
    for (int i = 0; i < 5000 && !*done; i++) {
        uv_run(&p->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    ck_assert(*done);
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
    evict_to_remote_async(&p, 0x61, &req, &done);
    /* The staging copy runs on the dataplane thread; its completion waits
     * for the loop, so n2 is out of the table before the put. */
    ck_assert(!done);
    ck_assert_int_eq(agent_store_find(p.n1.s, 0x61)->state, AGENT_OBJ_MOVING);
    pair_table(&p.n1, NULL, 2);
    evict_wait(&p, &done);
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

/* A new table that keeps n2 where it was (every report can bring one)
 * leaves the transfer under way alone: the demotion completes.  Before,
 * each table change dialled every peer anew and failed what was in
 * flight ("peer n2 left during the transfer"). */
START_TEST(test_remote_table_change)
{
    struct agent_store_counters k;
    struct agent_store_req req;
    bool done;
    struct pair p;

    pair_init(&p);
    put_in(&p, 0x65, MCOS__TIER_KIND__TIER_DRAM);
    evict_to_remote_async(&p, 0x65, &req, &done);
    ck_assert(!done);
    /* The ALLOC is out (it needs the loop to be answered). */
    for (uint64_t gen = 2; gen <= 4; gen++) {
        pair_table(&p.n1, &p.n2, gen);
        uv_run(&p.loop, UV_RUN_NOWAIT);
    }
    evict_wait(&p, &done);
    ck_assert_msg(req.status == 0, "evict: %s", req.error);
    ck_assert_int_eq(agent_store_find(p.n1.s, 0x65)->tier,
                     MCOS__TIER_KIND__TIER_REMOTE);
    agent_store_counters(p.n1.s, &k);
    ck_assert_uint_eq(k.remote_demotions, 1);
    ck_assert_uint_eq(k.move_failures, 0);
    get_check(&p, 0x65);
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

/* ------------------------------------------------------------------------
 * Watermark demotion to peers: the table's chain ends in `-> remote`. */

/* Runs the loop until no object of n1 is moving. */
static void
pair_settle(struct pair *p)
{
    for (int i = 0; i < 5000; i++) {
        uv_run(&p->loop, UV_RUN_NOWAIT);
        if (!agent_store_foreach(p->n1.s, is_moving, NULL)) {
            return;
        }
        usleep(1000);
    }
    ck_abort_msg("moves did not finish");
}

/* Checks that n1's objects first..last are at rest in `tier`. */
static void
check_in(struct pair *p, uint64_t first, uint64_t last, int tier)
{
    for (uint64_t id = first; id <= last; id++) {
        const struct agent_object *o = agent_store_find(p->n1.s, id);

        ck_assert_ptr_nonnull(o);
        ck_assert_msg(o->tier == tier && o->state == AGENT_OBJ_RESIDENT,
                      "object %" PRIx64 ": tier %d state %d, want tier %d", id,
                      o->tier, (int)o->state, tier);
    }
}

/*
 * A staging copy counts as leaving DRAM.  14 objects in n1's DRAM hold
 * 896 KiB (87.5%, under the default 90% mark); an HBM object's staging
 * copy takes DRAM to 960 KiB (93.75%) while it is sent.  A watermark pass
 * meanwhile demotes nothing to NVMe for it, and DRAM is back at 896 KiB
 * once the object lives on n2.
 */
START_TEST(test_remote_staging_leaves)
{
    struct agent_store_counters k;
    struct agent_store_req req;
    bool done;
    struct pair p;

    pair_init(&p);
    for (uint64_t id = 0x81; id <= 0x8e; id++) {
        put_in(&p, id, MCOS__TIER_KIND__TIER_DRAM);
    }
    put_in(&p, 0x8f, MCOS__TIER_KIND__TIER_HBM);
    ck_assert_uint_eq(tier_used(p.n1.s, MCOS__TIER_KIND__TIER_DRAM),
                      896 * KiB);
    evict_to_remote_async(&p, 0x8f, &req, &done);
    /* The copy is made on the dataplane thread; the loop has not run. */
    ck_assert(!done);
    ck_assert_uint_eq(tier_used(p.n1.s, MCOS__TIER_KIND__TIER_DRAM),
                      960 * KiB);
    agent_store_tick(p.n1.s);
    evict_wait(&p, &done);
    ck_assert_msg(req.status == 0, "evict: %s", req.error);
    pair_settle(&p);
    check_in(&p, 0x81, 0x8e, MCOS__TIER_KIND__TIER_DRAM);
    check_in(&p, 0x8f, 0x8f, MCOS__TIER_KIND__TIER_REMOTE);
    ck_assert_uint_eq(tier_used(p.n1.s, MCOS__TIER_KIND__TIER_DRAM),
                      896 * KiB);
    ck_assert_uint_eq(tier_used(p.n1.s, MCOS__TIER_KIND__TIER_NVME), 0);
    agent_store_counters(p.n1.s, &k);
    ck_assert_uint_eq(k.demotions, 0);
    ck_assert_uint_eq(k.remote_staged, 1);
    ck_assert_uint_eq(k.move_failures, 0);
    pair_fini(&p);
}
END_TEST

/* Puts objects first..last into n1's DRAM, one second apart (the clock
 * moves before each, so a pause that the last one starts is whole). */
static void
put_dram(struct pair *p, uint64_t first, uint64_t last)
{
    for (uint64_t id = first; id <= last; id++) {
        mcos_fake_clock_advance(&p->clock, 1000000);
        put_in(p, id, MCOS__TIER_KIND__TIER_DRAM);
    }
}

/* n1's table at `gen`: admits n2 when `peer`, tier/dram 50%/25% and
 * demotion/dram dram -> remote, with the residency rule keeping
 * `reuse_id` when that is not 0. */
static void
dram_to_remote(struct pair *p, uint64_t gen, bool peer, uint64_t reuse_id)
{
    struct rules rs = {0};

    rules_tier(&rs, MCOS__TIER_KIND__TIER_DRAM, 50, 25);
    rules_demotion(&rs, MCOS__TIER_KIND__TIER_DRAM,
                   MCOS__TIER_KIND__TIER_REMOTE);
    if (reuse_id) {
        rules_residency(&rs, reuse_id);
    }
    pair_policy(&p->n1, peer ? &p->n2 : NULL, gen, &rs);
}

/* Two agents, n1's table dram_to_remote(reuse_id) with n2 admitted, and
 * objects 1..9 put in n1's DRAM, the 9th over the high mark: the pass it
 * starts has put 5 objects on n2. */
static void
wm_pair(struct pair *p, uint64_t reuse_id)
{
    pair_init(p);
    dram_to_remote(p, 2, true, reuse_id);
    put_dram(p, 1, 9);
    pair_settle(p);
    wait_hosted(p, 5);
}

/* Places (never commits) object 0x9999 of `size` bytes on n2, whose
 * fabric then has no room left for that much. */
static void
fill_n2(struct pair *p, uint64_t size)
{
    struct agent_store_req req = {0};

    req.op = MCOS__API_OP__API_PLACE;
    req.id = 0x9999;
    req.size = size;
    req.cls = MCOS__OBJECT_CLASS__CLASS_OTHER;
    pair_submit(p, p->n2.s, &req);
    ck_assert_msg(req.status == 0, "place on n2: %s", req.error);
}

static void
unfill_n2(struct pair *p)
{
    struct agent_store_req req = {0};

    req.op = MCOS__API_OP__API_ABORT;
    req.id = 0x9999;
    pair_submit(p, p->n2.s, &req);
    ck_assert_int_eq(req.status, 0);
}

/*
 * 1 MiB of DRAM, tier/dram 50%/25%, demotion/dram dram -> remote: the 9th
 * 64 KiB object (576 KiB, 56%) crosses the high mark and the 5 coldest
 * (1..5) go to n2, verified there, until DRAM holds 256 KiB; their
 * extents are freed.  A get brings one back with its bytes; evict demote
 * of another sends it to n2 too.
 */
START_TEST(test_wm_remote)
{
    struct agent_store_counters k;
    struct agent_fabric_counters fc;
    struct agent_store_req req;
    struct pair p;

    wm_pair(&p, 0);
    check_in(&p, 1, 5, MCOS__TIER_KIND__TIER_REMOTE);
    check_in(&p, 6, 9, MCOS__TIER_KIND__TIER_DRAM);
    ck_assert_uint_eq(tier_used(p.n1.s, MCOS__TIER_KIND__TIER_DRAM),
                      256 * KiB);
    agent_store_counters(p.n1.s, &k);
    ck_assert_uint_eq(k.remote_demotions, 5);
    ck_assert_uint_eq(k.demotions, 5);
    ck_assert_uint_eq(k.remote_staged, 0);
    ck_assert_uint_eq(k.move_failures, 0);
    ck_assert_uint_eq(k.remote_demotion_backoffs, 0);
    ck_assert_uint_eq(k.residency_demotions, 0);
    agent_fabric_counters(p.n2.f, &fc);
    ck_assert_uint_eq(fc.served_commits, 5);
    ck_assert_uint_eq(fc.checksum_failures, 0);
    /* 320 KiB once it is back: under the high mark, nothing else goes. */
    get_check(&p, 1);
    wait_hosted(&p, 4);
    ck_assert_uint_eq(tier_used(p.n1.s, MCOS__TIER_KIND__TIER_DRAM),
                      320 * KiB);
    agent_store_counters(p.n1.s, &k);
    ck_assert_uint_eq(k.remote_fetches, 1);
    ck_assert_uint_eq(k.remote_demotions, 5);
    /* evict demote follows the same chain: to a peer. */
    evict_policy(&p, 6, 2, &req);
    ck_assert_msg(req.status == 0, "evict: %s", req.error);
    check_in(&p, 6, 6, MCOS__TIER_KIND__TIER_REMOTE);
    wait_hosted(&p, 5);
    agent_store_counters(p.n1.s, &k);
    ck_assert_uint_eq(k.remote_demotions, 6);
    ck_assert_uint_eq(k.demotions, 5);
    pair_fini(&p);
}
END_TEST

/*
 * The chain hbm -> dram -> remote.  With the default watermarks (90%/75%)
 * d1..d4 (0x11..0x14) rest in DRAM (256 KiB) and h1..h9 (0x21..0x29) in
 * HBM (576 KiB).  Then tier/hbm and tier/dram 50%/25%: one pass sends
 * h1..h5 down to DRAM (which reserves their 320 KiB there at once: 576
 * KiB, over the mark), and DRAM sends its coldest, d1..d4, to n2 -- all it
 * has at rest.  HBM ends at 256 KiB, DRAM at 320 KiB (h1..h5).
 */
START_TEST(test_wm_remote_chain)
{
    struct agent_store_counters k;
    struct rules rs = {0};
    struct pair p;

    pair_init(&p);
    for (uint64_t id = 0x11; id <= 0x14; id++) {
        put_in(&p, id, MCOS__TIER_KIND__TIER_DRAM);
    }
    for (uint64_t id = 0x21; id <= 0x29; id++) {
        put_in(&p, id, MCOS__TIER_KIND__TIER_HBM);
    }
    pair_settle(&p);
    check_in(&p, 0x11, 0x14, MCOS__TIER_KIND__TIER_DRAM);
    check_in(&p, 0x21, 0x29, MCOS__TIER_KIND__TIER_HBM);
    rules_tier(&rs, MCOS__TIER_KIND__TIER_HBM, 50, 25);
    rules_tier(&rs, MCOS__TIER_KIND__TIER_DRAM, 50, 25);
    rules_demotion(&rs, MCOS__TIER_KIND__TIER_HBM, MCOS__TIER_KIND__TIER_DRAM);
    rules_demotion(&rs, MCOS__TIER_KIND__TIER_DRAM,
                   MCOS__TIER_KIND__TIER_REMOTE);
    pair_policy(&p.n1, &p.n2, 2, &rs);
    agent_store_tick(p.n1.s);
    pair_settle(&p);
    wait_hosted(&p, 4);
    check_in(&p, 0x11, 0x14, MCOS__TIER_KIND__TIER_REMOTE);
    check_in(&p, 0x21, 0x25, MCOS__TIER_KIND__TIER_DRAM);
    check_in(&p, 0x26, 0x29, MCOS__TIER_KIND__TIER_HBM);
    ck_assert_uint_eq(tier_used(p.n1.s, MCOS__TIER_KIND__TIER_HBM), 256 * KiB);
    ck_assert_uint_eq(tier_used(p.n1.s, MCOS__TIER_KIND__TIER_DRAM),
                      320 * KiB);
    agent_store_counters(p.n1.s, &k);
    ck_assert_uint_eq(k.demotions, 9);
    ck_assert_uint_eq(k.remote_demotions, 4);
    ck_assert_uint_eq(k.move_failures, 0);
    get_check(&p, 0x11);
    get_check(&p, 0x26);
    pair_fini(&p);
}
END_TEST

/*
 * With the residency rule, its order: reuse/0000000000000001 keeps object
 * 1 (class 0, 30000) although it is the coldest; 2..9 score 10000 (the
 * default class), so the colder of them go: 2..6.
 */
START_TEST(test_wm_remote_residency)
{
    struct agent_store_counters k;
    struct pair p;

    wm_pair(&p, 1);
    check_in(&p, 1, 1, MCOS__TIER_KIND__TIER_DRAM);
    check_in(&p, 2, 6, MCOS__TIER_KIND__TIER_REMOTE);
    check_in(&p, 7, 9, MCOS__TIER_KIND__TIER_DRAM);
    agent_store_counters(p.n1.s, &k);
    ck_assert_uint_eq(k.residency_demotions, 5);
    ck_assert_uint_eq(k.remote_demotions, 5);
    pair_fini(&p);
}
END_TEST

/* Sends this process's log (stderr) to a temp file. */
struct logcap {
    int fd;    /* the file */
    int saved; /* stderr before */
};

static void
log_begin(struct logcap *l)
{
    char name[] = "/tmp/test_store_log.XXXXXX";

    l->fd = mkstemp(name);
    ck_assert_int_ge(l->fd, 0);
    unlink(name);
    ck_assert_int_eq(mcos_log_set_spec("info"), 0);
    l->saved = dup(2);
    dup2(l->fd, 2);
}

/* Checks that `needle` is in the log so far `want` times. */
static void
check_log(struct logcap *l, const char *needle, int want)
{
    static char buf[1 << 18];
    ssize_t n = pread(l->fd, buf, sizeof buf - 1, 0);
    int count = 0;

    ck_assert_int_lt(n, (ssize_t)sizeof buf - 1);
    buf[n > 0 ? n : 0] = '\0';
    for (const char *at = buf; (at = strstr(at, needle)); at++) {
        count++;
    }
    ck_assert_msg(count == want, "'%s' %d times, want %d, in the log:\n%s",
                  needle, count, want, buf);
}

static void
log_end(struct logcap *l)
{
    dup2(l->saved, 2);
    close(l->saved);
    close(l->fd);
}

/* Checks n1's pauses and failed moves so far. */
static void
check_pauses(struct pair *p, uint64_t backoffs, uint64_t failures)
{
    struct agent_store_counters k;

    agent_store_counters(p->n1.s, &k);
    ck_assert_uint_eq(k.remote_demotion_backoffs, backoffs);
    ck_assert_uint_eq(k.move_failures, failures);
}

/* Advances n1's clock by `us`, runs its periodic work and lets what that
 * started finish. */
static void
tick_after(struct pair *p, uint64_t us)
{
    mcos_fake_clock_advance(&p->clock, us);
    agent_store_tick(p->n1.s);
    pair_settle(p);
}

#define PAUSE_LOG "|store|WARN|watermark demotion to a peer failed"

/* Two agents, n1's log captured in l and its table dram_to_remote() with
 * no peer admitted; objects 1..9 in its DRAM, the 9th over the high mark:
 * the pass it starts fails at once and pauses demotion to peers. */
static void
no_peer_pair(struct pair *p, struct logcap *l)
{
    pair_init(p);
    log_begin(l);
    dram_to_remote(p, 2, false, 0);
    put_dram(p, 1, 9);
    pair_settle(p);
    check_pauses(p, 1, 0);
}

/*
 * Watermark demotions to a peer still under way when the agent stops (its
 * fabric closes under them, answering "the agent is shutting down"):
 * no pause and no warning from the store or the fabric (only counted as
 * failed moves), and the objects stay in DRAM.
 */
START_TEST(test_wm_remote_shutdown)
{
    struct agent_store_counters k;
    struct logcap l;
    struct pair p;

    pair_init(&p);
    log_begin(&l);
    dram_to_remote(&p, 2, true, 0);
    put_dram(&p, 1, 9);
    /* The pass the 9th started waits for n2's answers, which need the
     * loop: none has come. */
    agent_store_counters(p.n1.s, &k);
    ck_assert_uint_eq(k.remote_demotions, 0);
    node_close_fabric(&p.n1);
    pair_settle(&p);
    check_in(&p, 1, 9, MCOS__TIER_KIND__TIER_DRAM);
    check_log(&l, PAUSE_LOG, 0);
    check_log(&l, "|WARN|", 0);
    check_pauses(&p, 0, 5);
    log_end(&l);
    pair_fini(&p);
}
END_TEST

/*
 * A demotion to peers that fails pauses them: no admitted peer (the put
 * is refused at once), then a peer without room (every ALLOC refused, one
 * pause for the pass's five), each logged once with why; no try before
 * the pause ends (1 s, then 2 s, then 4 s), one right after.  The objects
 * stay in DRAM, readable.  Room again: the demotion succeeds, which
 * resets the pause to 1 s.  evict demote is refused at once, with why.
 */
START_TEST(test_wm_remote_backoff)
{
    struct agent_store_req req;
    struct logcap l;
    struct pair p;

    no_peer_pair(&p, &l);
    check_log(&l,
              PAUSE_LOG " (object 0000000000000001 stays in dram): "
                        "no peer to demote to: the brain has "
                        "admitted none with a transport in common; "
                        "the next try in 1 s\n",
              1);
    check_in(&p, 1, 9, MCOS__TIER_KIND__TIER_DRAM);
    evict_policy(&p, 1, 2, &req);
    ck_assert_int_eq(req.status, -EHOSTUNREACH);
    ck_assert_str_eq(req.error,
                     "cannot demote to a peer: no peer to demote to: the "
                     "brain has admitted none with a transport in common");
    tick_after(&p, 0);
    tick_after(&p, 999999);
    check_pauses(&p, 1, 0);
    tick_after(&p, 1);
    check_pauses(&p, 2, 0);
    check_log(&l, "common; the next try in 2 s\n", 1);

    /* n2 admitted, but with no room: the pass's five ALLOCs (1..5) are
     * refused, one pause (4 s) for all, started by whichever answer came
     * first (their order is the network's). */
    fill_n2(&p, 1000 * KiB);
    dram_to_remote(&p, 3, true, 0);
    tick_after(&p, 1999999);
    check_pauses(&p, 2, 0);
    tick_after(&p, 1);
    check_pauses(&p, 3, 5);
    check_log(&l, PAUSE_LOG, 3);
    check_log(&l,
              " stays in dram): alloc refused by n2: no room in n2's DRAM "
              "for 65536 bytes; the next try in 4 s\n",
              1);
    check_in(&p, 1, 9, MCOS__TIER_KIND__TIER_DRAM);
    ck_assert_uint_eq(tier_used(p.n1.s, MCOS__TIER_KIND__TIER_DRAM),
                      576 * KiB);
    get_check(&p, 1);
    tick_after(&p, 3999999);
    check_pauses(&p, 3, 5);

    /* Room again: 2..6 (1 was just read) go, and the pause is reset. */
    unfill_n2(&p);
    tick_after(&p, 1);
    wait_hosted(&p, 5);
    check_in(&p, 2, 6, MCOS__TIER_KIND__TIER_REMOTE);
    check_pauses(&p, 3, 5);

    /* No room on n2 again (320 KiB hosted + 700 KiB placed): DRAM holds
     * 1 and 7..9; with 10..14 it is at 576 KiB again, the pass (7, 8, 9, 1,
     * 10) fails, and the pause is 1 s again, not 8 s. */
    fill_n2(&p, 700 * KiB);
    put_dram(&p, 10, 14);
    pair_settle(&p);
    check_pauses(&p, 4, 10);
    check_log(&l, "65536 bytes; the next try in 1 s\n", 1);
    tick_after(&p, 999999);
    check_pauses(&p, 4, 10);
    tick_after(&p, 1);
    check_pauses(&p, 5, 15);
    check_log(&l, PAUSE_LOG, 5);
    check_in(&p, 2, 6, MCOS__TIER_KIND__TIER_REMOTE);
    check_in(&p, 7, 14, MCOS__TIER_KIND__TIER_DRAM);
    check_in(&p, 1, 1, MCOS__TIER_KIND__TIER_DRAM);
    get_check(&p, 7);
    get_check(&p, 2);
    unfill_n2(&p);
    log_end(&l);
    pair_fini(&p);
}
END_TEST

/* With no peer admitted, every try fails at once: the pause doubles from
 * 1 s and stops growing at 30 s. */
START_TEST(test_wm_remote_backoff_cap)
{
    static const uint64_t holds[] = {1, 2, 4, 8, 16, 30, 30};
    struct logcap l;
    struct pair p;
    char line[128];

    no_peer_pair(&p, &l);
    for (size_t i = 0; i + 1 < sizeof holds / sizeof holds[0]; i++) {
        tick_after(&p, holds[i] * 1000000 - 1);
        check_pauses(&p, i + 1, 0);
        tick_after(&p, 1);
        check_pauses(&p, i + 2, 0);
        snprintf(line, sizeof line, "common; the next try in %" PRIu64 " s\n",
                 holds[i + 1]);
        /* Each hold once, but 30 s (from i = 4) once per pause since. */
        check_log(&l, line, holds[i + 1] == 30 ? (int)i - 3 : 1);
    }
    check_in(&p, 1, 9, MCOS__TIER_KIND__TIER_DRAM);
    log_end(&l);
    pair_fini(&p);
}
END_TEST

/* Without the fabric, `-> remote` ends the chain: over the high mark,
 * nothing moves, nothing fails, the store logs nothing; evict demote
 * says there is no tier below. */
START_TEST(test_wm_remote_no_fabric)
{
    struct agent_store_counters k;
    struct agent_store_req req = {0};
    struct mcos_table *t = NULL;
    struct rules rs = {0};
    struct logcap l;
    struct rig r;

    agent_tables_register_thread();
    rig_init(&r, false);
    rules_tier(&rs, MCOS__TIER_KIND__TIER_DRAM, 50, 25);
    rules_demotion(&rs, MCOS__TIER_KIND__TIER_DRAM,
                   MCOS__TIER_KIND__TIER_REMOTE);
    rules_apply(&rs, r.tables, "t1", 2, &t);
    log_begin(&l);
    for (size_t i = 0; i < N_IDS; i++) {
        put(&r, ids[i], 0);
    }
    agent_store_tick(r.s);
    settle(&r);
    check_log(&l, "|store|", 0);
    log_end(&l);
    for (size_t i = 0; i < N_IDS; i++) {
        const struct agent_object *o = agent_store_find(r.s, ids[i]);

        ck_assert_int_eq(o->tier, MCOS__TIER_KIND__TIER_DRAM);
        ck_assert_int_eq(o->state, AGENT_OBJ_RESIDENT);
    }
    agent_store_counters(r.s, &k);
    ck_assert_uint_eq(k.demotions, 0);
    ck_assert_uint_eq(k.move_failures, 0);
    ck_assert_uint_eq(k.remote_demotion_backoffs, 0);
    req.op = MCOS__API_OP__API_EVICT;
    req.id = ids[0];
    req.policy = 2;
    req.done = req_done;
    req.arg = &(bool){false};
    agent_store_submit(r.s, &req);
    ck_assert_int_eq(req.status, -ENOSPC);
    ck_assert_str_eq(req.error, "no tier below dram on this node; the only "
                                "copy is never dropped without evict drop");
    mcos_table_free(t);
    rig_fini(&r);
    agent_tables_unregister_thread();
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
    tcase_add_test(tc, test_remote_table_change);
    tcase_add_test(tc, test_remote_no_staging_room);
    tcase_add_test(tc, test_remote_staging_leaves);
    tcase_add_test(tc, test_wm_remote);
    tcase_add_test(tc, test_wm_remote_chain);
    tcase_add_test(tc, test_wm_remote_residency);
    tcase_add_test(tc, test_wm_remote_backoff);
    tcase_add_test(tc, test_wm_remote_shutdown);
    tcase_add_test(tc, test_wm_remote_backoff_cap);
    tcase_add_test(tc, test_wm_remote_no_fabric);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
