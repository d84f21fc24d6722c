/* Tests for agent/registry: ids, growth and deletion, per-tier LRU. */
#include <errno.h>

#include "registry.h"
#include "testutil.h"

START_TEST(test_add_find_remove)
{
    struct agent_registry *r;
    struct agent_object *o;

    ck_assert_int_eq(agent_registry_create(&r), 0);
    ck_assert_int_eq(agent_registry_add(r, 0, &o), -EINVAL);
    /* Sequential ids (engine block numbers) and hashes alike; enough to
     * grow the table several times. */
    for (uint64_t id = 1; id <= 20000; id++) {
        ck_assert_int_eq(agent_registry_add(r, id * 7919, &o), 0);
        o->size = id;
    }
    ck_assert_int_eq(agent_registry_add(r, 7919, &o), -EEXIST);
    ck_assert_uint_eq(agent_registry_count(r), 20000);
    /* Remove every third: the others are all still found (deletion keeps
     * probe chains intact). */
    for (uint64_t id = 3; id <= 20000; id += 3) {
        agent_registry_remove(r, agent_registry_find(r, id * 7919));
    }
    for (uint64_t id = 1; id <= 20000; id++) {
        o = agent_registry_find(r, id * 7919);
        if (id % 3 == 0) {
            ck_assert_ptr_null(o);
        } else {
            ck_assert_ptr_nonnull(o);
            ck_assert_uint_eq(o->size, id);
        }
    }
    ck_assert_ptr_null(agent_registry_find(r, 0));
    agent_registry_destroy(r);
    agent_registry_destroy(NULL);
}
END_TEST

START_TEST(test_lru)
{
    struct agent_registry *r;
    struct agent_object *o[4];
    int dram = MCOS__TIER_KIND__TIER_DRAM, nvme = MCOS__TIER_KIND__TIER_NVME;

    ck_assert_int_eq(agent_registry_create(&r), 0);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(agent_registry_add(r, (uint64_t)i + 1, &o[i]), 0);
        agent_registry_set_tier(r, o[i], dram);
    }
    /* Stored 1, 2, 3, 4: 1 is coldest. */
    ck_assert_ptr_eq(agent_registry_coldest(r, dram), o[0]);
    agent_registry_touch(r, o[0]);
    ck_assert_ptr_eq(agent_registry_coldest(r, dram), o[1]);
    /* Moving to another tier takes it off this tier's list. */
    agent_registry_set_tier(r, o[1], nvme);
    ck_assert_ptr_eq(agent_registry_coldest(r, dram), o[2]);
    ck_assert_ptr_eq(agent_registry_coldest(r, nvme), o[1]);
    /* Walk from cold to hot: 3, 4, 1. */
    ck_assert_ptr_eq(o[2]->lru_prev, o[3]);
    ck_assert_ptr_eq(o[3]->lru_prev, o[0]);
    ck_assert_ptr_null(o[0]->lru_prev);
    agent_registry_remove(r, o[2]);
    ck_assert_ptr_eq(agent_registry_coldest(r, dram), o[3]);
    ck_assert_ptr_null(agent_registry_coldest(r, MCOS__TIER_KIND__TIER_HBM));
    ck_assert_ptr_null(agent_registry_coldest(r, 99));
    ck_assert_str_eq(agent_obj_state_name(AGENT_OBJ_MOVING), "moving");
    agent_registry_destroy(r);
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("registry");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_add_find_remove);
    tcase_add_test(tc, test_lru);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
