/* Tests for brain/compile: golden table dumps for small hand-made
 * clusters, and determinism. */
#include <errno.h>

#include "aggregate.h"
#include "brainfix.h"
#include "compile.h"

static const struct brain_policy policy = {90, 75, 250, 1000, 0};

static void
join(struct brain_cluster *c, Mcos__Hello *h)
{
    struct brain_agg_result res;
    char err[256];

    ck_assert_int_eq(brain_aggregate_hello(c, &h, 0, &res, err, sizeof err),
                     0);
}

/* n1: hbm+dram+nvme in r1; n2: dram in r2; n3: hbm+dram in r1, failed. */
static void
make_cluster(struct brain_cluster *c, bool reverse)
{
    Mcos__Hello *h[3] = {
        fix_hello("n1", 11, "r1", true, true, "10.0.0.1", 7653, 0),
        fix_hello("n2", 12, "r2", false, false, "10.0.0.2", 7653, 0),
        fix_hello("n3", 13, "r1", true, false, "10.0.0.3", 7653, 0),
    };

    brain_cluster_init(c);
    for (int i = 0; i < 3; i++) {
        join(c, h[reverse ? 2 - i : i]);
    }
    brain_cluster_find(c, "n3")->live = BRAIN_FAILED;
}

static char *
compile_dump(struct brain_cluster *c, const char *node, uint64_t gen)
{
    struct mcos_table *t;
    char err[200], *dump;

    ck_assert_int_eq(brain_compile_node(c, brain_cluster_find(c, node),
                                        &policy, gen, &t, err, sizeof err),
                     0);
    ck_assert_int_eq(mcos_table_dump(t, true, &dump), 0);
    mcos_table_free(t);
    return dump;
}

START_TEST(test_golden)
{
    struct brain_cluster c;
    char *d;

    make_cluster(&c, false);
    d = compile_dump(&c, "n1", 7);
    check_golden("compile_n1.txt", d);
    free(d);
    d = compile_dump(&c, "n2", 7);
    check_golden("compile_n2.txt", d);
    free(d);
    brain_cluster_destroy(&c);
}
END_TEST

START_TEST(test_deterministic)
{
    struct brain_cluster a, b;
    char *da, *db;

    make_cluster(&a, false);
    make_cluster(&b, true);
    for (int i = 0; i < 3; i++) {
        const char *node = i == 0 ? "n1" : i == 1 ? "n2" : "n3";

        da = compile_dump(&a, node, 3);
        db = compile_dump(&b, node, 3);
        ck_assert_str_eq(da, db);
        free(da);
        free(db);
    }
    brain_cluster_destroy(&a);
    brain_cluster_destroy(&b);
}
END_TEST

START_TEST(test_no_hello)
{
    struct brain_cluster c;
    struct brain_node *n;
    struct mcos_table *t;
    char err[200];

    brain_cluster_init(&c);
    brain_cluster_add(&c, "ghost", &n);
    ck_assert_err(brain_compile_node(&c, n, &policy, 1, &t, err, sizeof err),
                  -ENOENT, err, "node ghost has not said hello");
    brain_cluster_destroy(&c);
}
END_TEST

/* Where node's table sends objects demoted from `tier` under policy p. */
static int
next_of(struct brain_cluster *c, const char *node,
        const struct brain_policy *p, int tier)
{
    struct mcos_table *t;
    char err[200];
    int next;

    ck_assert_int_eq(brain_compile_node(c, brain_cluster_find(c, node), p, 1,
                                        &t, err, sizeof err),
                     0);
    next = mcos_table_demotion_next(t, tier);
    mcos_table_free(t);
    return next;
}

/* policy.demote_to_peers: the slowest tier's chain ends in peers' memory
 * when the node and a peer it is told of have a data transport. */
START_TEST(test_demote_to_peers)
{
    enum {
        HBM = MCOS__TIER_KIND__TIER_HBM,
        DRAM = MCOS__TIER_KIND__TIER_DRAM,
        NVME = MCOS__TIER_KIND__TIER_NVME,
        REMOTE = MCOS__TIER_KIND__TIER_REMOTE,
    };
    struct brain_policy p = policy;
    struct brain_cluster c;

    make_cluster(&c, false);
    /* Off (the default): chains end at the slowest local tier. */
    ck_assert_int_eq(next_of(&c, "n1", &p, NVME), 0);
    p.demote_to_peers = 1;
    /* n1 (hbm, dram, nvme): nvme -> remote; n2 (dram only): dram. */
    ck_assert_int_eq(next_of(&c, "n1", &p, HBM), DRAM);
    ck_assert_int_eq(next_of(&c, "n1", &p, DRAM), NVME);
    ck_assert_int_eq(next_of(&c, "n1", &p, NVME), REMOTE);
    ck_assert_int_eq(next_of(&c, "n2", &p, DRAM), REMOTE);
    /* n2 failed (n3 is): n1 has no peer left, its chain ends at nvme. */
    brain_cluster_find(&c, "n2")->live = BRAIN_FAILED;
    ck_assert_int_eq(next_of(&c, "n1", &p, NVME), 0);
    brain_cluster_find(&c, "n2")->live = BRAIN_ALIVE;
    /* A node with no data transport (control only) keeps its chain ... */
    brain_cluster_find(&c, "n2")->hello->endpoints[0]->transport =
        MCOS__TRANSPORT__TRANSPORT_CONTROL;
    ck_assert_int_eq(next_of(&c, "n2", &p, DRAM), 0);
    /* ... and so does a node whose only peer has none. */
    ck_assert_int_eq(next_of(&c, "n1", &p, NVME), 0);
    brain_cluster_destroy(&c);
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("compile");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_golden);
    tcase_add_test(tc, test_demote_to_peers);
    tcase_add_test(tc, test_deterministic);
    tcase_add_test(tc, test_no_hello);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
