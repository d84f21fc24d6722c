/* Tests for brain/route: the scoring, the bounded-load rule against
 * herding, topology, and ties. */
#include <errno.h>

#include "route.h"
#include "routed.h"
#include "testutil.h"

static const struct brain_route_weights w = {
    .dram_fetch = 0.05,
    .nvme_fetch = 0.25,
    .load_weight = 4.0,
    .queue_block_weight = 1.0,
    .bound_eps = 0.25,
    .rack_penalty = 2.0,
};

START_TEST(test_scores)
{
    /* A 10-block request.  n1 holds 8 (6 in HBM, 2 in DRAM); n2 holds 10
     * but 4 only on NVMe and is busier; n3 holds nothing. */
    struct brain_route_node nodes[] = {
        {"n1", "r1", 6, 8, 8, 1.0, 0, 0},
        {"n2", "r1", 2, 6, 10, 2.0, 0, 0},
        {"n3", "r2", 0, 0, 0, 0.0, 0, 0},
    };
    struct brain_route_score s[3];
    int best = brain_route_decide(nodes, 3, 10, NULL, &w, s);

    /* n1: 2 prefill + 2*0.05 + 4*1 = 6.1
     * n2: 0 prefill + 4*0.05 + 4*0.25 + 4*2 = 9.2
     * n3: 10 prefill + 0 = 10 */
    ck_assert_double_eq_tol(s[0].cost, 6.1, 1e-9);
    ck_assert_double_eq_tol(s[1].cost, 9.2, 1e-9);
    ck_assert_double_eq_tol(s[2].cost, 10.0, 1e-9);
    ck_assert_double_eq_tol(s[0].prefill, 2, 1e-9);
    ck_assert_double_eq_tol(s[1].fetch, 1.2, 1e-9);
    ck_assert_int_eq(best, 0);
    /* Topology: a request for rack r2 pays 2 elsewhere; n3 still loses. */
    best = brain_route_decide(nodes, 3, 10, "r2", &w, s);
    ck_assert_double_eq_tol(s[0].topology, 2.0, 1e-9);
    ck_assert_double_eq_tol(s[2].topology, 0.0, 1e-9);
    ck_assert_int_eq(best, 0);
    /* Matches longer than the chain are clipped. */
    nodes[1].matched = 50;
    brain_route_decide(nodes, 3, 10, NULL, &w, s);
    ck_assert_double_eq_tol(s[1].prefill, 0, 1e-9);
    ck_assert_int_eq(brain_route_decide(nodes, 0, 10, NULL, &w, s), -EINVAL);
}
END_TEST

START_TEST(test_ties_and_bound)
{
    struct brain_route_node nodes[] = {
        {"b", "", 0, 0, 0, 0.0, 0, 0},
        {"a", "", 0, 0, 0, 0.0, 0, 0},
    };
    struct brain_route_score s[2];

    ck_assert_int_eq(brain_route_decide(nodes, 2, 4, NULL, &w, s), 1);
    /* Mean load 2, cap (1.25)(3) = 3.75: a node at load 4 is over. */
    nodes[0].load = 4;
    nodes[0].matched = nodes[0].matched_dram = nodes[0].matched_hbm = 4;
    ck_assert_int_eq(brain_route_decide(nodes, 2, 4, NULL, &w, s), 1);
    ck_assert(s[0].over_bound);
    ck_assert(!s[1].over_bound);
}
END_TEST

/* Peer fetch: a prefix only another node holds costs peer_fetch a block
 * instead of 1 to compute, so an idle node can take a request whose
 * prefix sits on a busy one. */
START_TEST(test_peer_fetch)
{
    /* A 10-block request.  n1 holds 8 but is busy; n2 holds 2 and could
     * copy the other 6 of n1's 8 from it; n3 holds nothing and could copy
     * all 8. */
    struct brain_route_node nodes[] = {
        {"n1", "", 8, 8, 8, 3.0, 0, 0},
        {"n2", "", 2, 2, 2, 0.0, 8, 0},
        {"n3", "", 0, 0, 0, 0.0, 8, 0},
    };
    struct brain_route_weights pw = w;
    struct brain_route_score s[3];
    int best;

    pw.peer_fetch = 0.1;
    best = brain_route_decide(nodes, 3, 10, NULL, &pw, s);
    /* n1: 2 + 3*4 = 14;  n2: 2 + 0.1*6 = 2.6;  n3: 2 + 0.1*8 = 2.8. */
    ck_assert_double_eq_tol(s[0].cost, 14.0, 1e-9);
    ck_assert_double_eq_tol(s[1].cost, 2.6, 1e-9);
    ck_assert_double_eq_tol(s[1].prefill, 2.0, 1e-9);
    ck_assert_double_eq_tol(s[1].fetch, 0.6, 1e-9);
    ck_assert_double_eq_tol(s[2].cost, 2.8, 1e-9);
    ck_assert_int_eq(best, 1);
    /* A peer prefix shorter than the local one changes nothing. */
    nodes[1].matched_peer = 1;
    brain_route_decide(nodes, 3, 10, NULL, &pw, s);
    ck_assert_double_eq_tol(s[1].cost, 8.0, 1e-9);
    ck_assert_double_eq_tol(s[1].fetch, 0.0, 1e-9);
    /* Longer than the chain: clipped to it. */
    nodes[2].matched_peer = 50;
    brain_route_decide(nodes, 3, 10, NULL, &pw, s);
    ck_assert_double_eq_tol(s[2].prefill, 0.0, 1e-9);
    ck_assert_double_eq_tol(s[2].fetch, 1.0, 1e-9);
    /* Moving a block at the price of computing it is never chosen: the
     * peer prefix is ignored, and so it is with the weight left at 0 and
     * no peer prefix given (what callers that cannot fetch pass). */
    pw.peer_fetch = 1.0;
    brain_route_decide(nodes, 3, 10, NULL, &pw, s);
    ck_assert_double_eq_tol(s[2].cost, 10.0, 1e-9);
    nodes[1].matched_peer = nodes[2].matched_peer = 0;
    brain_route_decide(nodes, 3, 10, NULL, &w, s);
    ck_assert_double_eq_tol(s[2].cost, 10.0, 1e-9);
    ck_assert_double_eq_tol(s[1].cost, 8.0, 1e-9);
}
END_TEST

/* Prefill blocks queued on a node cost like blocks to compute: n1 holds
 * 6 more blocks of the prefix but has 10 blocks of other requests' prefill
 * ahead, so n2 (4 to prefill, nothing queued) wins; with 3 queued, n1. */
START_TEST(test_queued_blocks)
{
    struct brain_route_node nodes[] = {
        {"n1", "", 10, 10, 10, 0, 0, 10},
        {"n2", "", 6, 6, 6, 0, 0, 0},
    };
    struct brain_route_score s[2];

    ck_assert_int_eq(brain_route_decide(nodes, 2, 10, NULL, &w, s), 1);
    ck_assert_double_eq_tol(s[0].load, 10.0, 1e-9);
    ck_assert_double_eq_tol(s[0].cost, 10.0, 1e-9);
    ck_assert_double_eq_tol(s[1].cost, 4.0, 1e-9);
    nodes[0].queued_blocks = 3;
    ck_assert_int_eq(brain_route_decide(nodes, 2, 10, NULL, &w, s), 0);
    ck_assert_double_eq_tol(s[0].cost, 3.0, 1e-9);
}
END_TEST

/* Herding: 300 requests for one prefix that only n1 holds.  Pure cost
 * would send every one to n1 (0 blocks to prefill); with load and the
 * bound, they spread, and n1's share stays within the bound. */
START_TEST(test_herding_spreads)
{
    struct brain_route_node nodes[4] = {
        {"n1", "", 64, 64, 64, 0, 0, 0},
        {"n2", "", 0, 0, 0, 0, 0, 0},
        {"n3", "", 0, 0, 0, 0, 0, 0},
        {"n4", "", 0, 0, 0, 0, 0, 0},
    };
    struct brain_route_weights no_load = w;
    struct brain_route_score s[4];
    int count[4] = {0};

    /* Requests stay queued (no completions): the worst case for herding. */
    for (int r = 0; r < 300; r++) {
        int best = brain_route_decide(nodes, 4, 64, NULL, &w, s);

        count[best]++;
        nodes[best].load += 1;
    }
    for (int i = 0; i < 4; i++) {
        ck_assert_int_gt(count[i], 0);
    }
    /* Bounded load: n1 never exceeds (1 + eps) x (mean + 1). */
    ck_assert_int_le(count[0], (int)(1.25 * (300 / 4.0 + 1)) + 1);
    /* Without the load term only the bound protects n1, and it does. */
    memset(count, 0, sizeof count);
    for (int i = 0; i < 4; i++) {
        nodes[i].load = 0;
    }
    no_load.load_weight = 0;
    for (int r = 0; r < 300; r++) {
        int best = brain_route_decide(nodes, 4, 64, NULL, &no_load, s);

        count[best]++;
        nodes[best].load += 1;
    }
    ck_assert_int_le(count[0], (int)(1.25 * (300 / 4.0 + 1)) + 1);
    ck_assert_int_gt(count[0], 300 / 4);
}
END_TEST

/* Routed work: kept in order, dropped from the front by age or by a load
 * report that covers it, sums exact, bounded. */
START_TEST(test_routed)
{
    struct brain_routed r = {0};

    ck_assert_uint_eq(brain_routed_requests(&r), 0);
    ck_assert_double_eq(brain_routed_blocks(&r), 0);
    brain_routed_expire(&r, 1000, 10);    /* empty: nothing to do */
    brain_routed_covered(&r, 1000, 2000); /* before the clock's start */
    for (uint64_t t = 100; t <= 4000; t += 100) {
        ck_assert_int_eq(brain_routed_add(&r, t, 0.5), 0); /* 40 routes */
    }
    ck_assert_uint_eq(brain_routed_requests(&r), 40);
    ck_assert_double_eq_tol(brain_routed_blocks(&r), 20, 1e-12);
    /* Held 1000: at 1450 the routes of 100..400 are past it. */
    brain_routed_expire(&r, 1450, 1000);
    ck_assert_uint_eq(brain_routed_requests(&r), 36);
    /* Exactly hold_us old goes too. */
    brain_routed_expire(&r, 1500, 1000);
    ck_assert_uint_eq(brain_routed_requests(&r), 35);
    /* A report sampled at 2050 with 50 of transit covers up to 2000. */
    brain_routed_covered(&r, 2050, 50);
    ck_assert_uint_eq(brain_routed_requests(&r), 20);
    ck_assert_double_eq_tol(brain_routed_blocks(&r), 10, 1e-12);
    /* A view sees what a route would count, and drops nothing. */
    {
        size_t n;
        double b;

        brain_routed_peek(&r, 4000, 1000, &n, &b); /* 2100..3000 gone */
        ck_assert_uint_eq(n, 10);
        ck_assert_double_eq_tol(b, 5, 1e-12);
        brain_routed_peek(&r, 9000, 1000, &n, &b);
        ck_assert_uint_eq(n, 0);
        ck_assert_double_eq(b, 0);
        ck_assert_uint_eq(brain_routed_requests(&r), 20);
    }
    /* Older reports change nothing. */
    brain_routed_covered(&r, 1000, 0);
    ck_assert_uint_eq(brain_routed_requests(&r), 20);
    /* The ring wraps while routes come and go; the sums stay exact. */
    for (uint64_t t = 4100; t <= 40000; t += 100) {
        ck_assert_int_eq(brain_routed_add(&r, t, 1.0), 0);
        brain_routed_expire(&r, t, 1000);
    }
    ck_assert_uint_eq(brain_routed_requests(&r), 10); /* 39100..40000 */
    ck_assert_double_eq_tol(brain_routed_blocks(&r), 10, 1e-9);
    brain_routed_covered(&r, 50000, 0);
    ck_assert_uint_eq(brain_routed_requests(&r), 0);
    ck_assert_double_eq(brain_routed_blocks(&r), 0);
    /* Bounded: past BRAIN_ROUTED_MAX the oldest stops counting. */
    for (uint64_t i = 0; i < BRAIN_ROUTED_MAX + 3; i++) {
        ck_assert_int_eq(brain_routed_add(&r, 60000 + i, 2.0), 0);
    }
    ck_assert_uint_eq(brain_routed_requests(&r), BRAIN_ROUTED_MAX);
    ck_assert_uint_eq(r.overflow, 3);
    ck_assert_uint_eq(r.v[r.head].at_us, 60003);
    ck_assert_double_eq_tol(brain_routed_blocks(&r), 2.0 * BRAIN_ROUTED_MAX,
                            1e-6);
    brain_routed_clear(&r);
    ck_assert_uint_eq(brain_routed_requests(&r), 0);
    ck_assert_int_eq(brain_routed_add(&r, 70000, 1.0), 0);
    ck_assert_uint_eq(brain_routed_requests(&r), 1);
    brain_routed_destroy(&r);
    brain_routed_destroy(&r); /* twice is harmless */
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("route");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_scores);
    tcase_add_test(tc, test_ties_and_bound);
    tcase_add_test(tc, test_peer_fetch);
    tcase_add_test(tc, test_queued_blocks);
    tcase_add_test(tc, test_herding_spreads);
    tcase_add_test(tc, test_routed);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
