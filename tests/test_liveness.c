/* Tests for brain/liveness: the pure state machine, with a fake clock. */
#include "clock.h"
#include "liveness.h"
#include "testutil.h"

static const struct brain_liveness_cfg cfg = {
    .suspect_after_us = 3000,
    .fail_after_us = 10000,
};

START_TEST(test_transitions)
{
    static const struct {
        enum brain_liveness from;
        enum brain_liveness_event ev;
        uint64_t last_heard, now;
        enum brain_liveness to;
    } cases[] = {
        /* Silence: alive -> suspect -> failed at the bounds exactly. */
        {BRAIN_ALIVE, BRAIN_EV_TICK, 1000, 1000, BRAIN_ALIVE},
        {BRAIN_ALIVE, BRAIN_EV_TICK, 1000, 3999, BRAIN_ALIVE},
        {BRAIN_ALIVE, BRAIN_EV_TICK, 1000, 4000, BRAIN_SUSPECT},
        {BRAIN_SUSPECT, BRAIN_EV_TICK, 1000, 10999, BRAIN_SUSPECT},
        {BRAIN_SUSPECT, BRAIN_EV_TICK, 1000, 11000, BRAIN_FAILED},
        /* A long gap between ticks goes straight to failed. */
        {BRAIN_ALIVE, BRAIN_EV_TICK, 1000, 50000, BRAIN_FAILED},
        /* Failed stays failed on ticks, however recent last_heard is. */
        {BRAIN_FAILED, BRAIN_EV_TICK, 1000, 1000, BRAIN_FAILED},
        /* One message brings any state back. */
        {BRAIN_SUSPECT, BRAIN_EV_HEARD, 0, 5000, BRAIN_ALIVE},
        {BRAIN_FAILED, BRAIN_EV_HEARD, 0, 99999, BRAIN_ALIVE},
        /* A lost lease fails a node at once. */
        {BRAIN_ALIVE, BRAIN_EV_LEASE_LOST, 1000, 1000, BRAIN_FAILED},
        /* A clock that went backward is no silence. */
        {BRAIN_ALIVE, BRAIN_EV_TICK, 5000, 1000, BRAIN_ALIVE},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_msg(brain_liveness_next(cases[i].from, cases[i].ev,
                                          cases[i].last_heard, cases[i].now,
                                          &cfg) == cases[i].to,
                      "case %zu", i);
    }
}
END_TEST

/* A node that stops reporting, driven tick by tick by a fake clock. */
START_TEST(test_walk_with_fake_clock)
{
    struct mcos_fake_clock clk;
    enum brain_liveness s = BRAIN_ALIVE;
    uint64_t heard;
    uint64_t suspect_at = 0, failed_at = 0;

    mcos_fake_clock_init(&clk, 100000);
    heard = mcos_clock_now(&clk.base);
    for (int tick = 0; tick < 200; tick++) {
        enum brain_liveness next;

        mcos_fake_clock_advance(&clk, 100);
        next = brain_liveness_next(s, BRAIN_EV_TICK, heard,
                                   mcos_clock_now(&clk.base), &cfg);
        if (next == BRAIN_SUSPECT && s == BRAIN_ALIVE) {
            suspect_at = mcos_clock_now(&clk.base) - heard;
        }
        if (next == BRAIN_FAILED && s != BRAIN_FAILED) {
            failed_at = mcos_clock_now(&clk.base) - heard;
        }
        s = next;
    }
    ck_assert_uint_eq(suspect_at, 3000);
    ck_assert_uint_eq(failed_at, 10000);
    ck_assert_int_eq(s, BRAIN_FAILED);
    s = brain_liveness_next(s, BRAIN_EV_HEARD, heard,
                            mcos_clock_now(&clk.base), &cfg);
    ck_assert_int_eq(s, BRAIN_ALIVE);
}
END_TEST

START_TEST(test_deadline_and_names)
{
    ck_assert_uint_eq(brain_liveness_deadline(BRAIN_ALIVE, 500, &cfg), 3500);
    ck_assert_uint_eq(brain_liveness_deadline(BRAIN_SUSPECT, 500, &cfg),
                      10500);
    ck_assert_uint_eq(brain_liveness_deadline(BRAIN_FAILED, 500, &cfg),
                      UINT64_MAX);
    ck_assert_str_eq(brain_liveness_name(BRAIN_SUSPECT), "suspect");
    ck_assert_str_eq(brain_liveness_name((enum brain_liveness)9), "unknown");
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("liveness");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_transitions);
    tcase_add_test(tc, test_walk_with_fake_clock);
    tcase_add_test(tc, test_deadline_and_names);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
