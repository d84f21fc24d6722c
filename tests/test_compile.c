/* Tests for brain/compile: golden table dumps for small hand-made
 * clusters, and determinism. */
#include <errno.h>

#include "aggregate.h"
#include "brainfix.h"
#include "compile.h"

static const struct brain_policy policy = {90, 75, 250, 1000};

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

static Suite *
suite(void)
{
    Suite *s = suite_create("compile");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_golden);
    tcase_add_test(tc, test_deterministic);
    tcase_add_test(tc, test_no_hello);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
