/*
 * Tests for brain/residency (the learned reuse prediction) and
 * common/residency_table (classes, age buckets and the victim pick agents
 * and the simulator execute).  Every figure is worked out in the comments.
 *
 * Age buckets with the default unit (10 s), half octaves: 0: [0, 10 s),
 * 1: [10, 15), 2: [15, 20), 3: [20, 30), 4: [30, 40), 5: [40, 60),
 * 6: [60, 80), 7: [80, 120) s, ...
 */
#include <errno.h>
#include <stdint.h>

#include "residency.h"
#include "testutil.h"

#define S 1000000000ULL

START_TEST(test_classes_and_ages)
{
    /* Classes double from 16 answer tokens; the last is open. */
    ck_assert_uint_eq(mcos_residency_class(0), 0);
    ck_assert_uint_eq(mcos_residency_class(15), 0);
    ck_assert_uint_eq(mcos_residency_class(16), 1);
    ck_assert_uint_eq(mcos_residency_class(31), 1);
    ck_assert_uint_eq(mcos_residency_class(32), 2);
    ck_assert_uint_eq(mcos_residency_class(1023), 6);
    ck_assert_uint_eq(mcos_residency_class(1024), 7);
    ck_assert_uint_eq(mcos_residency_class(UINT32_MAX), 7);

    ck_assert_uint_eq(mcos_residency_age(10 * S, 0), 0);
    ck_assert_uint_eq(mcos_residency_age(10 * S, 10 * S - 1), 0);
    ck_assert_uint_eq(mcos_residency_age(10 * S, 10 * S), 1);
    ck_assert_uint_eq(mcos_residency_age(10 * S, 15 * S), 2);
    ck_assert_uint_eq(mcos_residency_age(10 * S, 20 * S), 3);
    ck_assert_uint_eq(mcos_residency_age(10 * S, 29 * S), 3);
    ck_assert_uint_eq(mcos_residency_age(10 * S, 30 * S), 4);
    ck_assert_uint_eq(mcos_residency_age(10 * S, 40 * S), 5);
    ck_assert_uint_eq(mcos_residency_age(10 * S, 60 * S), 6);
    /* Bucket 2k+1 opens at 10 s x 2^k: 10240 s is bucket 21, 20480 s
     * opens 23, the last. */
    ck_assert_uint_eq(mcos_residency_age(10 * S, 10240 * S), 21);
    ck_assert_uint_eq(mcos_residency_age(10 * S, 20479 * S), 22);
    ck_assert_uint_eq(mcos_residency_age(10 * S, 20480 * S), 23);
    ck_assert_uint_eq(mcos_residency_age(10 * S, UINT64_MAX),
                      MCOS_RESIDENCY_AGES - 1);
}
END_TEST

START_TEST(test_pick)
{
    struct mcos_residency_table t = {.age_unit_ns = 10 * S};
    uint64_t idle[MCOS_RESIDENCY_CLASSES] = {0};

    /* Nothing to evict. */
    ck_assert_int_eq(mcos_residency_pick(&t, idle, 0), -ENOENT);
    /* No table: LRU over classes (the longest idle). */
    idle[0] = 5 * S;
    idle[3] = 50 * S;
    ck_assert_int_eq(mcos_residency_pick(NULL, idle, 0x9), 3);
    /* Class 3 at 50 s (bucket 5) scores 900, class 0 at 5 s (bucket 0)
     * 100: class 0 goes although it was used more recently. */
    t.score[0][0] = 100;
    t.score[3][5] = 900;
    ck_assert_int_eq(mcos_residency_pick(&t, idle, 0x9), 0);
    /* Equal scores: the longer idle goes. */
    t.score[3][5] = 100;
    ck_assert_int_eq(mcos_residency_pick(&t, idle, 0x9), 3);
    /* Equal scores and idle times: the lower class. */
    idle[3] = 5 * S;
    t.score[3][0] = 100;
    ck_assert_int_eq(mcos_residency_pick(&t, idle, 0x9), 0);
    /* Only present classes count. */
    ck_assert_int_eq(mcos_residency_pick(&t, idle, 0x8), 3);
}
END_TEST

START_TEST(test_learning)
{
    struct brain_residency *r;
    struct mcos_residency_table t;
    uint64_t turns, cont[MCOS_RESIDENCY_AGES];
    const uint64_t turn1[] = {11, 12, 13};
    const uint64_t next1[] = {11, 12, 13, 14};
    const uint64_t solo[] = {11};

    ck_assert_int_eq(brain_residency_create(NULL, &r), 0);
    ck_assert_int_eq(brain_residency_turn(r, turn1, 0, 5, 0), -EINVAL);
    /* A turn with a 5-token answer (class 0) ends at 100 s. */
    ck_assert_int_eq(brain_residency_turn(r, turn1, 3, 5, 100 * S), 0);
    ck_assert_int_eq(brain_residency_class_of(r, 11), 0);
    ck_assert_int_eq(brain_residency_class_of(r, 13), 0);
    ck_assert_int_eq(brain_residency_class_of(r, 14), -ENOENT);
    /* A request sharing only block 11 is not a continuation. */
    ck_assert_int_eq(brain_residency_request(r, solo, 1, 110 * S), 0);
    /* The next turn, 25 s later (bucket 3), continues it: once. */
    ck_assert_int_eq(brain_residency_request(r, next1, 4, 125 * S), 1);
    ck_assert_int_eq(brain_residency_request(r, next1, 4, 126 * S), 0);
    brain_residency_counts(r, 0, &turns, cont);
    ck_assert_uint_eq(turns, 1);
    ck_assert_uint_eq(cont[3], 1);
    ck_assert_uint_eq(cont[2] + cont[4], 0);

    /* A one-block turn is no tail (its block starts other prompts). */
    ck_assert_int_eq(brain_residency_turn(r, solo, 1, 2000, 130 * S), 0);
    ck_assert_int_eq(brain_residency_class_of(r, 11), 7);
    brain_residency_counts(r, 7, &turns, cont);
    ck_assert_uint_eq(turns, 0);

    /*
     * Class 0: 1 turn, continued in bucket 3.  Buckets 0-3: 1 still to
     * come of 1 left: (1 + 1/2) / (1 + 1) = 0.75 -> 49151 (49151.25
     * rounded).  From bucket 4: 0 of 0: 0.5 / 1 -> 32768 (32767.5
     * rounded up).  A class with no turns: 0.5 everywhere.
     */
    brain_residency_table(r, &t);
    ck_assert_uint_eq(t.age_unit_ns, 10 * S);
    ck_assert_uint_eq(t.score[0][0], 49151);
    ck_assert_uint_eq(t.score[0][3], 49151);
    ck_assert_uint_eq(t.score[0][4], 32768);
    ck_assert_uint_eq(t.score[5][0], 32768);
    brain_residency_destroy(r);
    brain_residency_destroy(NULL);
}
END_TEST

START_TEST(test_bounded_and_decay)
{
    struct brain_residency_options o = {.max_blocks = 8, .decay_turns = 2};
    struct brain_residency *r;
    uint64_t turns, cont[MCOS_RESIDENCY_AGES];

    o.max_blocks = (1u << 28) + 1;
    ck_assert_int_eq(brain_residency_create(&o, &r), -EINVAL);
    o.max_blocks = 8;
    ck_assert_int_eq(brain_residency_create(&o, &r), 0);
    /* Eight slots, one probe window: the ninth block forgets the one
     * that changed longest ago (block 100, at 1 s). */
    for (uint64_t b = 100; b < 109; b++) {
        ck_assert_int_eq(brain_residency_turn(r, &b, 1, 20, b * S), 0);
    }
    ck_assert_int_eq(brain_residency_class_of(r, 100), -ENOENT);
    ck_assert_int_eq(brain_residency_class_of(r, 101), 1);
    ck_assert_int_eq(brain_residency_class_of(r, 108), 1);

    /* Two turns (class 1) reach decay_turns: the counts halve, 2 -> 1. */
    {
        const uint64_t a[] = {1, 2}, b[] = {3, 4};

        ck_assert_int_eq(brain_residency_turn(r, a, 2, 20, 200 * S), 0);
        brain_residency_counts(r, 1, &turns, cont);
        ck_assert_uint_eq(turns, 1);
        ck_assert_int_eq(brain_residency_turn(r, b, 2, 20, 201 * S), 0);
        brain_residency_counts(r, 1, &turns, cont);
        ck_assert_uint_eq(turns, 1);
    }
    brain_residency_destroy(r);
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("residency");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_classes_and_ages);
    tcase_add_test(tc, test_pick);
    tcase_add_test(tc, test_learning);
    tcase_add_test(tc, test_bounded_and_decay);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
