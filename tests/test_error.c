/* Tests for common/error. */
#include <errno.h>

#include "error.h"
#include "testutil.h"

START_TEST(test_strerror)
{
    ck_assert_str_eq(mcos_strerror(0), "success");
    ck_assert_str_eq(mcos_strerror(-ENOENT), "No such file or directory");
    ck_assert_str_eq(mcos_strerror(-EPROTONOSUPPORT),
                     "Protocol not supported");
    ck_assert_str_eq(mcos_strerror(-ESTALE), "Stale file handle");
    ck_assert_str_eq(mcos_strerror(5), "not an error code (positive value)");
    ck_assert_str_eq(mcos_strerror(-100000), "unknown error");
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("error");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_strerror);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
