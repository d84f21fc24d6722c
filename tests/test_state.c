/* Tests for brain/state: the local state directory. */
#include <errno.h>

#include "state.h"
#include "testutil.h"

START_TEST(test_persist_and_lock)
{
    char *dir = test_tmpdir(), sub[512], err[512];
    struct brain_state *a, *b;

    snprintf(sub, sizeof sub, "%s/deep/er", dir);
    ck_assert_int_eq(brain_state_open(sub, &a, err, sizeof err), 0);
    ck_assert_uint_eq(brain_state_gen(a), 0);
    ck_assert_int_eq(brain_state_set_gen(a, 41, err, sizeof err), 0);
    ck_assert_uint_eq(brain_state_gen(a), 41);
    /* A second brain on the same directory is refused. */
    ck_assert_int_eq(brain_state_open(sub, &b, err, sizeof err), -EBUSY);
    ck_assert_msg(strstr(err, "is in use by another brain"), "%s", err);
    brain_state_close(a);
    /* Reopened: the counter survived. */
    ck_assert_int_eq(brain_state_open(sub, &a, err, sizeof err), 0);
    ck_assert_uint_eq(brain_state_gen(a), 41);
    brain_state_close(a);
    brain_state_close(NULL);
    test_rmrf(dir);
    free(dir);
}
END_TEST

START_TEST(test_corrupt)
{
    static const char *const docs[] = {
        "not json",
        "{\"gen\": -3}",
        "{\"gen\": \"7\"}",
        "{}",
    };
    char *dir = test_tmpdir(), path[512], err[512];
    struct brain_state *st;

    snprintf(path, sizeof path, "%s/brain.json", dir);
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        FILE *f = fopen(path, "w");

        fputs(docs[i], f);
        fclose(f);
        ck_assert_int_eq(brain_state_open(dir, &st, err, sizeof err), -EINVAL);
        ck_assert_msg(strstr(err, "is corrupt"), "%s", err);
        ck_assert_msg(strstr(err, "move it away to start over"), "%s", err);
    }
    /* An unusable directory. */
    ck_assert_int_eq(
        brain_state_open("/proc/mcos-nope", &st, err, sizeof err) < 0, 1);
    ck_assert_msg(strstr(err, "cannot create state directory /proc/mcos-nope"),
                  "%s", err);
    test_rmrf(dir);
    free(dir);
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("state");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_persist_and_lock);
    tcase_add_test(tc, test_corrupt);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
