/* Tests for agent/observe: the bounded event queue and NIC sampling. */
#include "clock.h"
#include "observe.h"
#include "testutil.h"

START_TEST(test_events_bounded)
{
    struct agent_observe *o;
    Mcos__ObjectEvent **ev;
    uint64_t dropped;
    size_t n;

    ck_assert_int_eq(agent_observe_create(&o), 0);
    for (uint64_t i = 0; i < AGENT_EVENT_QUEUE_MAX + 10; i++) {
        agent_observe_event(o, MCOS__EVENT_KIND__EVENT_STORED, i + 1,
                            MCOS__OBJECT_CLASS__CLASS_KV_BLOCK,
                            MCOS__TIER_KIND__TIER_DRAM, 512,
                            i % 2 ? "llama-70b" : NULL, i);
    }
    n = agent_observe_take_events(o, 100, &ev, &dropped);
    ck_assert_uint_eq(n, 100);
    ck_assert_uint_eq(dropped, 10);
    /* Oldest first. */
    ck_assert_uint_eq(ev[0]->object_id, 1);
    ck_assert_uint_eq(ev[99]->object_id, 100);
    ck_assert_int_eq(ev[0]->class_, MCOS__OBJECT_CLASS__CLASS_KV_BLOCK);
    ck_assert_uint_gt(ev[0]->time_us, 0);
    ck_assert_str_eq(ev[0]->ns, "");
    ck_assert_str_eq(ev[1]->ns, "llama-70b");
    ck_assert_uint_eq(ev[1]->parent_id, 1);
    agent_observe_events_free(ev, n);
    n = agent_observe_take_events(o, AGENT_EVENT_QUEUE_MAX, &ev, &dropped);
    ck_assert_uint_eq(n, AGENT_EVENT_QUEUE_MAX - 100);
    ck_assert_uint_eq(dropped, 0);
    ck_assert_uint_eq(ev[0]->object_id, 101);
    agent_observe_events_free(ev, n);
    n = agent_observe_take_events(o, 10, &ev, &dropped);
    ck_assert_uint_eq(n, 0);
    agent_observe_events_free(ev, n);
    agent_observe_destroy(o);
}
END_TEST

START_TEST(test_nics_and_load)
{
    struct agent_observe *o;
    const struct agent_nic *nics;
    size_t n;

    ck_assert_int_eq(agent_observe_create(&o), 0);
    n = agent_observe_nics(o, &nics);
    /* Whatever this machine has: no loopback, each with an IPv4 address
     * and sane counters. */
    for (size_t i = 0; i < n; i++) {
        ck_assert_str_ne(nics[i].name, "lo");
        ck_assert(strchr(nics[i].address, '.') != NULL);
    }
    agent_observe_sample(o, mcos_clock_now(&mcos_clock_monotonic) + 1000000);
    for (size_t i = 0; i < n; i++) {
        ck_assert_uint_lt(nics[i].rx_bps, 1ULL << 40);
    }
    (void)agent_observe_load_milli();
    agent_observe_destroy(o);
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("observe");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_events_bounded);
    tcase_add_test(tc, test_nics_and_load);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
