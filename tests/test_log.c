/* Tests for common/log: level specs and rate limiting. */
#include <errno.h>
#include <unistd.h>

#include "log.h"
#include "testutil.h"

MCOS_LOG_MODULE(test);

static struct mcos_log_module other = {"other", 0, 0};

START_TEST(test_parse_level)
{
    static const struct {
        const char *text;
        int rc;
        enum mcos_log_level level;
    } cases[] = {
        {"off", 0, MCOS_LOG_OFF},        {"err", 0, MCOS_LOG_ERR},
        {"ERROR", 0, MCOS_LOG_ERR},      {"warn", 0, MCOS_LOG_WARN},
        {"info", 0, MCOS_LOG_INFO},      {"debug", 0, MCOS_LOG_DEBUG},
        {"loud", -EINVAL, MCOS_LOG_OFF}, {"", -EINVAL, MCOS_LOG_OFF},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        enum mcos_log_level l = MCOS_LOG_OFF;

        ck_assert_int_eq(mcos_log_parse_level(cases[i].text, &l), cases[i].rc);
        if (cases[i].rc == 0) {
            ck_assert_int_eq(l, cases[i].level);
        }
    }
}
END_TEST

START_TEST(test_spec)
{
    ck_assert_int_eq(mcos_log_set_spec("warn,test=debug"), 0);
    ck_assert(mcos_log_enabled(&mcos_this_log_module, MCOS_LOG_DEBUG));
    ck_assert(!mcos_log_enabled(&other, MCOS_LOG_INFO));
    ck_assert(mcos_log_enabled(&other, MCOS_LOG_WARN));
    /* A bad spec changes nothing. */
    ck_assert_int_eq(mcos_log_set_spec("info,test=shout"), -EINVAL);
    ck_assert_int_eq(mcos_log_set_spec("info,=debug"), -EINVAL);
    ck_assert(mcos_log_enabled(&mcos_this_log_module, MCOS_LOG_DEBUG));
    ck_assert(!mcos_log_enabled(&other, MCOS_LOG_INFO));
    ck_assert_int_eq(mcos_log_set_spec("info"), 0);
    ck_assert(!mcos_log_enabled(&mcos_this_log_module, MCOS_LOG_DEBUG));
    ck_assert(mcos_log_enabled(&other, MCOS_LOG_INFO));
    LOG_INFO("a line from the test, number %d", 1);
}
END_TEST

START_TEST(test_ratelimit)
{
    struct mcos_ratelimit rl = MCOS_RATELIMIT_INIT(60000, 3);
    uint32_t supp = 99;
    int allowed = 0;

    for (int i = 0; i < 10; i++) {
        allowed += mcos_ratelimit_allow(&rl, &supp);
    }
    ck_assert_int_eq(allowed, 3);
    ck_assert_uint_eq(rl.suppressed, 7);

    /* A new window lets one through and reports what was dropped. */
    struct mcos_ratelimit quick = MCOS_RATELIMIT_INIT(1, 1);

    ck_assert(mcos_ratelimit_allow(&quick, &supp));
    ck_assert(!mcos_ratelimit_allow(&quick, &supp));
    ck_assert(!mcos_ratelimit_allow(&quick, &supp));
    usleep(3000);
    ck_assert(mcos_ratelimit_allow(&quick, &supp));
    ck_assert_uint_eq(supp, 2);
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_parse_level);
    tcase_add_test(tc, test_spec);
    tcase_add_test(tc, test_ratelimit);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
