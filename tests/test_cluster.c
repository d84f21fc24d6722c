/* Tests for brain/cluster: the node set and the table bookkeeping. */
#include <errno.h>

#include "brainfix.h"
#include "cluster.h"
#include "compile.h"

START_TEST(test_add_find_sorted)
{
    struct brain_cluster c;
    struct brain_node *n;
    const char *names[] = {"n3", "a1", "n10", "b2"};

    brain_cluster_init(&c);
    for (size_t i = 0; i < 4; i++) {
        ck_assert_int_eq(brain_cluster_add(&c, names[i], &n), 0);
        ck_assert_str_eq(n->name, names[i]);
    }
    ck_assert_int_eq(brain_cluster_add(&c, "n3", &n), -EEXIST);
    ck_assert_int_eq(brain_cluster_add(&c, "bad name", &n), -EINVAL);
    ck_assert_uint_eq(c.n, 4);
    ck_assert_str_eq(c.nodes[0]->name, "a1");
    ck_assert_str_eq(c.nodes[1]->name, "b2");
    ck_assert_str_eq(c.nodes[2]->name, "n10");
    ck_assert_str_eq(c.nodes[3]->name, "n3");
    ck_assert_ptr_nonnull(brain_cluster_find(&c, "n10"));
    ck_assert_ptr_null(brain_cluster_find(&c, "n1"));
    ck_assert_uint_eq(brain_cluster_count(&c, BRAIN_ALIVE), 4);
    c.nodes[0]->live = BRAIN_FAILED;
    ck_assert_uint_eq(brain_cluster_count(&c, BRAIN_FAILED), 1);
    /* Growth past the first allocation. */
    for (int i = 0; i < 100; i++) {
        char name[16];

        snprintf(name, sizeof name, "x%03d", i);
        ck_assert_int_eq(brain_cluster_add(&c, name, &n), 0);
    }
    ck_assert_uint_eq(c.n, 104);
    ck_assert_ptr_nonnull(brain_cluster_find(&c, "x050"));
    brain_cluster_destroy(&c);
}
END_TEST

/* The acknowledged table is kept as the base for deltas only when its
 * generation matches what the node says it runs. */
START_TEST(test_ack_bookkeeping)
{
    struct brain_cluster c;
    struct brain_node *n;
    struct brain_policy p = {90, 75, 0, 1000, 0};
    struct mcos_table *t5, *t6;
    char err[200];

    brain_cluster_init(&c);
    ck_assert_int_eq(brain_cluster_add(&c, "n1", &n), 0);
    n->hello = fix_hello("n1", 1, "r1", false, false, "10.0.0.1", 7653, 0);
    ck_assert_int_eq(brain_compile_node(&c, n, &p, 5, &t5, err, sizeof err),
                     0);
    brain_node_set_desired(n, t5);
    brain_node_ack(n, 4);
    ck_assert_ptr_null(n->confirmed);
    brain_node_ack(n, 5);
    ck_assert_ptr_eq(n->confirmed, t5);
    ck_assert_int_eq(brain_compile_node(&c, n, &p, 6, &t6, err, sizeof err),
                     0);
    brain_node_set_desired(n, t6);
    ck_assert_ptr_eq(n->confirmed, t5); /* still the base for 5 -> 6 */
    ck_assert_ptr_eq(n->previous, t5);
    brain_node_ack(n, 6);
    ck_assert_ptr_eq(n->confirmed, t6);
    ck_assert_uint_eq(n->applied_gen, 6);
    /* A node one generation behind still has a delta base. */
    ck_assert_int_eq(brain_compile_node(&c, n, &p, 7, &t5, err, sizeof err),
                     0);
    brain_node_set_desired(n, t5);
    ck_assert_int_eq(brain_compile_node(&c, n, &p, 8, &t5, err, sizeof err),
                     0);
    brain_node_set_desired(n, t5);
    brain_node_ack(n, 7);
    ck_assert_ptr_eq(n->confirmed, n->previous);
    ck_assert_uint_eq(mcos_table_gen(n->confirmed), 7);
    brain_node_reset(n);
    ck_assert_ptr_null(n->confirmed);
    ck_assert_ptr_null(n->desired);
    ck_assert_uint_eq(n->applied_gen, 0);
    brain_cluster_destroy(&c);
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("cluster");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_add_find_sorted);
    tcase_add_test(tc, test_ack_bookkeeping);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
