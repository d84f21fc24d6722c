/* Tests for common/clock. */
#include "clock.h"
#include "testutil.h"

START_TEST(test_fake)
{
    struct mcos_fake_clock f;

    mcos_fake_clock_init(&f, 1000);
    ck_assert_uint_eq(mcos_clock_now(&f.base), 1000);
    mcos_fake_clock_advance(&f, 250);
    ck_assert_uint_eq(mcos_clock_now(&f.base), 1250);
}
END_TEST

START_TEST(test_monotonic)
{
    uint64_t a = mcos_clock_now(&mcos_clock_monotonic);
    uint64_t b = mcos_clock_now(&mcos_clock_monotonic);

    ck_assert_uint_ge(b, a);
    /* Wall time is after 2020 and in microseconds. */
    ck_assert_uint_gt(mcos_wall_us(), 1577836800ULL * 1000000);
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("clock");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_fake);
    tcase_add_test(tc, test_monotonic);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
