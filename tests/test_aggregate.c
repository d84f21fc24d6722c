/* Tests for brain/aggregate: validation of agents' messages and how they
 * fold into the model. */
#include <errno.h>

#include "aggregate.h"
#include "brainfix.h"

static struct brain_cluster c;
static struct brain_agg_result res;
static char err[256];

static void
setup(void)
{
    brain_cluster_init(&c);
    err[0] = '\0';
}

static void
teardown(void)
{
    brain_cluster_destroy(&c);
}

static int
hello(Mcos__Hello *h, uint64_t now)
{
    int rc = brain_aggregate_hello(&c, &h, now, &res, err, sizeof err);

    if (h) {
        mcos__hello__free_unpacked(h, NULL);
    }
    return rc;
}

/* Each mutation of a good hello, and the exact error it must cause. */
static void
mut_name(Mcos__Hello *h)
{
    h->node[0] = '-';
}
static void
mut_boot(Mcos__Hello *h)
{
    h->boot_id = 0;
}
static void
mut_rack(Mcos__Hello *h)
{
    h->labels->rack[0] = ' ';
}
static void
mut_tier(Mcos__Hello *h)
{
    h->tiers[0]->kind = 9;
}
static void
mut_dup_tier(Mcos__Hello *h)
{
    h->tiers[1]->kind = h->tiers[0]->kind;
}
static void
mut_port(Mcos__Hello *h)
{
    h->endpoints[0]->port = 70000;
}
static void
mut_transport(Mcos__Hello *h)
{
    h->endpoints[0]->transport = 7;
}
static void
mut_addr(Mcos__Hello *h)
{
    h->endpoints[0]->address[0] = '\0';
}

/* Adds one region (freed with the hello) covering `tier`. */
static void
add_region(Mcos__Hello *h, int tier)
{
    Mcos__Region *g = calloc(1, sizeof *g);

    mcos__region__init(g);
    g->id = 1;
    g->transport = MCOS__TRANSPORT__TRANSPORT_VERBS;
    g->length = 1 << 20;
    g->tier = tier;
    h->regions = calloc(1, sizeof *h->regions);
    h->regions[0] = g;
    h->n_regions = 1;
}
static void
mut_region_tier(Mcos__Hello *h)
{
    add_region(h, MCOS__TIER_KIND__TIER_NVME);
}

/* A brain continues above the generation an agent claims and saves its
 * counter as a JSON integer: a claim near 2^64 made it save one it could
 * not read back at its next start (found by fuzz_brain_msgs). */
static void
mut_gen(Mcos__Hello *h)
{
    h->applied_gen = UINT64_MAX - 58;
}

static const struct {
    void (*mutate)(Mcos__Hello *);
    const char *msg;
} bad_hellos[] = {
    {mut_name, "bad node name '-1' (1-63 of [A-Za-z0-9._-], starting with "
               "a letter or digit)"},
    {mut_boot, "node n1: boot_id must not be 0"},
    {mut_rack, "node n1: labels must be at most 63 printable characters "
               "without spaces or quotes"},
    {mut_tier, "node n1: tier 0 has unknown kind 9"},
    {mut_dup_tier, "node n1: tier hbm listed twice"},
    {mut_port, "endpoint 0: port 70000 out of range 1-65535"},
    {mut_transport, "endpoint 0: unknown transport 7"},
    {mut_addr, "endpoint 0: bad address"},
    {mut_region_tier, "region 0: covers tier nvme; regions cover dram or "
                      "hbm"},
    {mut_gen, "node n1: applied_gen 18446744073709551557 is beyond the "
              "largest generation, 4611686018427387904"},
};

START_TEST(test_bad_hello)
{
    Mcos__Hello *h = fix_hello("n1", 1, "r1", true, true, "10.0.0.1", 7653, 0);

    bad_hellos[_i].mutate(h);
    ck_assert_err(hello(h, 1000), -EINVAL, err, bad_hellos[_i].msg);
    /* Nothing was added. */
    ck_assert_uint_eq(c.n, 0);
}
END_TEST

START_TEST(test_join_rejoin)
{
    Mcos__Hello *h =
        fix_hello("n1", 1, "r1", true, false, "10.0.0.1", 7653, 0);

    ck_assert_int_eq(hello(h, 1000), 0);
    ck_assert(res.topology_changed);
    ck_assert_ptr_nonnull(res.node);
    ck_assert_int_eq(res.node->live, BRAIN_ALIVE);
    ck_assert_uint_eq(res.node->tiers[MCOS__TIER_KIND__TIER_HBM].capacity,
                      16ULL << 30);
    /* The same boot saying hello again, unchanged: nothing to recompile. */
    ck_assert_int_eq(
        hello(fix_hello("n1", 1, "r1", true, false, "10.0.0.1", 7653, 3),
              2000),
        0);
    ck_assert(!res.topology_changed);
    ck_assert(!res.rejoined);
    /* A different shape is a topology change. */
    ck_assert_int_eq(
        hello(fix_hello("n1", 1, "r1", true, true, "10.0.0.1", 7653, 3), 2500),
        0);
    ck_assert(res.topology_changed);
    /* A new boot is a rejoin: runtime state starts over. */
    res.node->last_seq = 40;
    ck_assert_int_eq(
        hello(fix_hello("n1", 2, "r1", true, true, "10.0.0.1", 7653, 0), 3000),
        0);
    ck_assert(res.rejoined);
    ck_assert_uint_eq(res.node->last_seq, 0);
    ck_assert_uint_eq(c.n, 1);
}
END_TEST

static Mcos__Report
report(const char *node, uint64_t boot, uint64_t seq, uint64_t applied)
{
    Mcos__Report r = MCOS__REPORT__INIT;

    r.node = (char *)node;
    r.boot_id = boot;
    r.seq = seq;
    r.applied_gen = applied;
    return r;
}

START_TEST(test_reports)
{
    Mcos__Report r;
    Mcos__TierUsage tu = MCOS__TIER_USAGE__INIT, *tup = &tu;
    Mcos__ObjectEvent ev = MCOS__OBJECT_EVENT__INIT, *evp = &ev;

    r = report("n1", 1, 1, 0);
    ck_assert_err(brain_aggregate_report(&c, &r, 100, &res, err, sizeof err),
                  -ENOENT, err,
                  "report from unknown node n1: say hello first");
    ck_assert_int_eq(
        hello(fix_hello("n1", 1, "r1", true, false, "10.0.0.1", 7653, 0),
              1000),
        0);
    r = report("n1", 2, 1, 0);
    ck_assert_err(brain_aggregate_report(&c, &r, 1100, &res, err, sizeof err),
                  -ENOENT, err,
                  "report from node n1 carries boot 0000000000000002, not "
                  "the current 0000000000000001: say hello again");
    r = report("n 1", 1, 1, 0);
    ck_assert_err(brain_aggregate_report(&c, &r, 1100, &res, err, sizeof err),
                  -EINVAL, err, "report: bad node name 'n 1'");

    tu.kind = MCOS__TIER_KIND__TIER_DRAM;
    tu.used_bytes = 123;
    tu.capacity_bytes = 1000;
    r = report("n1", 1, 5, 3);
    r.n_tiers = 1;
    r.tiers = &tup;
    r.stale = true;
    ck_assert_int_eq(
        brain_aggregate_report(&c, &r, 1200, &res, err, sizeof err), 0);
    ck_assert_uint_eq(res.node->applied_gen, 3);
    ck_assert_uint_eq(res.node->tiers[MCOS__TIER_KIND__TIER_DRAM].used, 123);
    ck_assert(res.node->stale);
    ck_assert_uint_eq(res.node->last_heard_us, 1200);

    /* Old and repeated sequence numbers are refused, state unchanged. */
    r = report("n1", 1, 5, 9);
    ck_assert_err(brain_aggregate_report(&c, &r, 1300, &res, err, sizeof err),
                  -ESTALE, err, "report 5 from node n1 is not newer than 5");
    ck_assert_uint_eq(brain_cluster_find(&c, "n1")->applied_gen, 3);

    /* A bad event refuses the whole report. */
    ev.kind = 42;
    r = report("n1", 1, 6, 4);
    r.n_events = 1;
    r.events = &evp;
    ck_assert_err(brain_aggregate_report(&c, &r, 1400, &res, err, sizeof err),
                  -EINVAL, err,
                  "report from node n1: event 0 has unknown kind 42");
    ck_assert_uint_eq(brain_cluster_find(&c, "n1")->applied_gen, 3);
    tu.kind = 0;
    r = report("n1", 1, 6, 4);
    r.n_tiers = 1;
    r.tiers = &tup;
    ck_assert_err(brain_aggregate_report(&c, &r, 1400, &res, err, sizeof err),
                  -EINVAL, err, "report from node n1: unknown tier 0");
    /* A generation the brain could never have compiled (and could not
     * show in JSON) is refused in reports and watches as in hellos. */
    r = report("n1", 1, 6, UINT64_MAX);
    ck_assert_err(brain_aggregate_report(&c, &r, 1400, &res, err, sizeof err),
                  -EINVAL, err,
                  "report from node n1: applied_gen 18446744073709551615 is "
                  "beyond the largest generation, 4611686018427387904");
    ck_assert_uint_eq(brain_cluster_find(&c, "n1")->applied_gen, 3);
    {
        Mcos__Watch w = MCOS__WATCH__INIT;

        w.node = (char *)"n1";
        w.boot_id = 1;
        w.applied_gen = (UINT64_C(1) << 62) + 1;
        ck_assert_err(
            brain_aggregate_watch(&c, &w, 1500, &res, err, sizeof err),
            -EINVAL, err,
            "watch from node n1: applied_gen 4611686018427387905 is beyond "
            "the largest generation, 4611686018427387904");
        ck_assert_uint_eq(brain_cluster_find(&c, "n1")->applied_gen, 3);
        w.applied_gen = 4;
        ck_assert_int_eq(
            brain_aggregate_watch(&c, &w, 1500, &res, err, sizeof err), 0);
        ck_assert_uint_eq(brain_cluster_find(&c, "n1")->applied_gen, 4);
    }
}
END_TEST

START_TEST(test_tick_and_revive)
{
    struct brain_liveness_cfg cfg = {3000, 10000};
    Mcos__Report r;

    ck_assert_int_eq(
        hello(fix_hello("n1", 1, "r1", false, false, "10.0.0.1", 1, 0), 0), 0);
    ck_assert_int_eq(
        hello(fix_hello("n2", 1, "r1", false, false, "10.0.0.2", 1, 0), 0), 0);
    ck_assert(!brain_aggregate_tick(&c, 2999, &cfg));
    /* Suspect does not change tables; failed does. */
    ck_assert(!brain_aggregate_tick(&c, 3000, &cfg));
    ck_assert_int_eq(brain_cluster_find(&c, "n1")->live, BRAIN_SUSPECT);
    r = report("n2", 1, 1, 0);
    ck_assert_int_eq(
        brain_aggregate_report(&c, &r, 5000, &res, err, sizeof err), 0);
    ck_assert(!res.revived);
    ck_assert(brain_aggregate_tick(&c, 10000, &cfg));
    ck_assert_int_eq(brain_cluster_find(&c, "n1")->live, BRAIN_FAILED);
    /* n2 was last heard at 5000: 5 ms of silence makes it suspect. */
    ck_assert_int_eq(brain_cluster_find(&c, "n2")->live, BRAIN_SUSPECT);
    r = report("n1", 1, 1, 0);
    ck_assert_int_eq(
        brain_aggregate_report(&c, &r, 11000, &res, err, sizeof err), 0);
    ck_assert(res.revived);
    ck_assert(res.topology_changed);
    ck_assert_int_eq(res.node->live, BRAIN_ALIVE);
}
END_TEST

START_TEST(test_lease_lost)
{
    struct brain_liveness_cfg cfg = {3000, 10000};
    struct brain_node *n1;
    Mcos__Report r;

    ck_assert_int_eq(
        hello(fix_hello("n1", 1, "r1", false, false, "10.0.0.1", 1, 0), 0), 0);
    n1 = brain_cluster_find(&c, "n1");
    /* Alive by its silence timer, failed by its lease: the lease wins. */
    ck_assert(!brain_aggregate_tick(&c, 100, &cfg));
    ck_assert_int_eq(n1->live, BRAIN_ALIVE);
    ck_assert(brain_aggregate_lease_lost(n1));
    ck_assert_int_eq(n1->live, BRAIN_FAILED);
    /* Twice changes nothing, and neither does a tick. */
    ck_assert(!brain_aggregate_lease_lost(n1));
    ck_assert(!brain_aggregate_tick(&c, 200, &cfg));
    ck_assert_int_eq(n1->live, BRAIN_FAILED);
    /* A message brings it back, as after a silence. */
    r = report("n1", 1, 1, 0);
    ck_assert_int_eq(
        brain_aggregate_report(&c, &r, 300, &res, err, sizeof err), 0);
    ck_assert(res.revived);
    ck_assert_int_eq(n1->live, BRAIN_ALIVE);
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("aggregate");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, test_bad_hello, 0,
                        sizeof bad_hellos / sizeof bad_hellos[0]);
    tcase_add_test(tc, test_join_rejoin);
    tcase_add_test(tc, test_reports);
    tcase_add_test(tc, test_tick_and_revive);
    tcase_add_test(tc, test_lease_lost);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
