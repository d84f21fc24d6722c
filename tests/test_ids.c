/* Tests for common/ids: node names, boot ids, object ids. */
#include "ids.h"
#include "testutil.h"

START_TEST(test_node_names)
{
    static const struct {
        const char *name;
        bool ok;
    } cases[] = {
        {"n1", true},
        {"gpu-node-07.rack3", true},
        {"A_b", true},
        {"0abc", true},
        {"", false},
        {"-lead", false},
        {".hidden", false},
        {"has space", false},
        {"slash/y", false},
        {"quote\"", false},
        {"ünicode", false},
        {"123456789012345678901234567890123456789012345678901234567890123",
         true},
        {"1234567890123456789012345678901234567890123456789012345678901234",
         false},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_msg(mcos_node_name_valid(cases[i].name) == cases[i].ok,
                      "case %zu '%s'", i, cases[i].name);
    }
    ck_assert(!mcos_node_name_valid(NULL));
}
END_TEST

START_TEST(test_boot_and_object_ids)
{
    struct mcos_boot_id a = mcos_boot_id_new(), b = mcos_boot_id_new();
    struct mcos_object_id x = mcos_object_id_from_name("layer0/tile3", 12);
    struct mcos_object_id y = mcos_object_id_from_name("layer0/tile3", 12);
    struct mcos_object_id z = mcos_object_id_from_name("layer0/tile4", 12);

    ck_assert_uint_ne(a.v, 0);
    ck_assert_uint_ne(a.v, b.v);
    ck_assert_uint_eq(x.v, y.v);
    ck_assert_uint_ne(x.v, z.v);
    ck_assert_uint_ne(mcos_object_id_from_name("", 0).v, 0);
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("ids");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_node_names);
    tcase_add_test(tc, test_boot_and_object_ids);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
