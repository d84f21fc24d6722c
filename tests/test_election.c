/*
 * Tests for brain/election: the leader's lease guard (a pure state machine
 * of now, walked with a fake clock) and the live configuration behind
 * `mcos-admin config set` (brain/options.c).  The etcd side is exercised
 * end to end by integration/test_ha.sh against a real etcd.
 */
#include <errno.h>

#include "brain.h"
#include "clock.h"
#include "election.h"
#include "testutil.h"

#define MS 1000u
#define S  1000000u

START_TEST(test_margin)
{
    static const struct {
        uint64_t ttl_us, margin_us;
    } cases[] = {
        {1 * S, 250 * MS},  /* a quarter is below the floor */
        {2 * S, 500 * MS},  /* a quarter */
        {5 * S, 1250 * MS}, /* a quarter */
        {8 * S, 2 * S},     /* a quarter, at the ceiling */
        {60 * S, 2 * S},    /* capped */
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_msg(brain_elect_margin_us(cases[i].ttl_us) ==
                          cases[i].margin_us,
                      "case %zu", i);
    }
}
END_TEST

enum ev { RENEWED, WON, LOST, LEASE_LOST, TICK };

START_TEST(test_transitions)
{
    /* TTL 2 s, margin 0.5 s; every case starts from `from` with the lease
     * known to live until `deadline`. */
    static const struct {
        enum brain_elect_state from;
        uint64_t deadline;
        enum ev ev;
        uint64_t arg; /* RENEWED: the new deadline; WON, TICK: now */
        enum brain_elect_state to;
        bool stepped_down; /* TICK's answer */
    } cases[] = {
        /* A grant or renewal gives an idle brain a lease to stand by on. */
        {BRAIN_ELECT_IDLE, 0, RENEWED, 3 * S, BRAIN_ELECT_STANDBY, false},
        /* Winning with time left leads; too close to expiry does not. */
        {BRAIN_ELECT_STANDBY, 3 * S, WON, 1 * S, BRAIN_ELECT_LEADER, false},
        {BRAIN_ELECT_STANDBY, 3 * S, WON, 2500 * MS, BRAIN_ELECT_STANDBY,
         false},
        /* A win reported without a lease (it was lost meanwhile). */
        {BRAIN_ELECT_IDLE, 0, WON, 1 * S, BRAIN_ELECT_IDLE, false},
        /* Ticks: the leader keeps leading until deadline - margin, and
         * steps down at exactly that instant, before etcd can expire it. */
        {BRAIN_ELECT_LEADER, 3 * S, TICK, 2499 * MS, BRAIN_ELECT_LEADER,
         false},
        {BRAIN_ELECT_LEADER, 3 * S, TICK, 2500 * MS, BRAIN_ELECT_IDLE, true},
        {BRAIN_ELECT_LEADER, 3 * S, TICK, 9 * S, BRAIN_ELECT_IDLE, true},
        /* A standby has nothing to step down from. */
        {BRAIN_ELECT_STANDBY, 3 * S, TICK, 9 * S, BRAIN_ELECT_STANDBY, false},
        /* Losing the key, or the lease. */
        {BRAIN_ELECT_LEADER, 3 * S, LOST, 0, BRAIN_ELECT_STANDBY, false},
        {BRAIN_ELECT_LEADER, 3 * S, LEASE_LOST, 0, BRAIN_ELECT_IDLE, false},
        {BRAIN_ELECT_STANDBY, 3 * S, LEASE_LOST, 0, BRAIN_ELECT_IDLE, false},
        /* A renewal keeps a leader leading; it never moves back. */
        {BRAIN_ELECT_LEADER, 3 * S, RENEWED, 4 * S, BRAIN_ELECT_LEADER, false},
        {BRAIN_ELECT_LEADER, 3 * S, RENEWED, 1 * S, BRAIN_ELECT_LEADER, false},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct brain_elect_sm sm;
        bool down = false;

        brain_elect_sm_init(&sm, 2 * S);
        sm.state = cases[i].from;
        sm.deadline_us = cases[i].deadline;
        switch (cases[i].ev) {
        case RENEWED:
            brain_elect_sm_renewed(&sm, cases[i].arg);
            break;
        case WON:
            brain_elect_sm_won(&sm, cases[i].arg);
            break;
        case LOST:
            brain_elect_sm_lost(&sm);
            break;
        case LEASE_LOST:
            brain_elect_sm_lease_lost(&sm);
            break;
        case TICK:
            down = brain_elect_sm_tick(&sm, cases[i].arg);
            break;
        }
        ck_assert_msg(sm.state == cases[i].to, "case %zu: state %d, want %d",
                      i, sm.state, cases[i].to);
        ck_assert_msg(down == cases[i].stepped_down, "case %zu", i);
    }
}
END_TEST

/*
 * A leader renews every 500 ms (TTL 2 s); each renewal is acknowledged 10
 * ms after it was sent and extends the lease to send time + TTL, as etcd
 * counts it.  At 10 s etcd becomes unreachable.  Ticking every 10 ms, the
 * leader must stop leading no later than last renewal + TTL - margin, which
 * is before etcd's expiry (last renewal + TTL at the earliest), so no other
 * brain can have won the key while this one still pushed.
 */
START_TEST(test_walk_with_fake_clock)
{
    struct mcos_fake_clock clk;
    struct brain_elect_sm sm;
    uint64_t t0, last_sent = 0, stepped_at = 0, expiry;

    mcos_fake_clock_init(&clk, 1000 * S);
    t0 = mcos_clock_now(&clk.base);
    brain_elect_sm_init(&sm, 2 * S);
    brain_elect_sm_renewed(&sm, t0 + 2 * S); /* the grant */
    brain_elect_sm_won(&sm, t0 + 3 * MS);
    ck_assert_int_eq(sm.state, BRAIN_ELECT_LEADER);
    for (uint64_t t = 0; t < 15 * S; t += 10 * MS) {
        uint64_t now;

        mcos_fake_clock_advance(&clk, 10 * MS);
        now = mcos_clock_now(&clk.base);
        if (now - t0 < 10 * S && (now - t0) % (500 * MS) == 10 * MS) {
            last_sent = now - 10 * MS;
            brain_elect_sm_renewed(&sm, last_sent + 2 * S);
        }
        if (brain_elect_sm_tick(&sm, now)) {
            ck_assert_uint_eq(stepped_at, 0);
            stepped_at = now;
        }
        if (!stepped_at) {
            ck_assert_msg(brain_elect_sm_may_lead(&sm, now),
                          "stopped leading at +%llu us with etcd up",
                          (unsigned long long)(now - t0));
        } else {
            ck_assert(!brain_elect_sm_may_lead(&sm, now));
        }
    }
    expiry = last_sent + 2 * S;
    ck_assert_uint_gt(stepped_at, t0 + 10 * S);
    ck_assert_uint_le(stepped_at, last_sent + 2 * S - 500 * MS);
    ck_assert_uint_lt(stepped_at, expiry);
    ck_assert_int_eq(sm.state, BRAIN_ELECT_IDLE);

    /* A late acknowledgement of an old renewal makes it a standby again,
     * never a leader: it must win the key anew. */
    brain_elect_sm_renewed(&sm, mcos_clock_now(&clk.base) + 2 * S);
    ck_assert_int_eq(sm.state, BRAIN_ELECT_STANDBY);
    ck_assert(!brain_elect_sm_may_lead(&sm, mcos_clock_now(&clk.base)));
}
END_TEST

/* --- The live configuration (mcos-admin config set). --- */

static struct brain_config c;
static char err[512];

static void
cfg_setup(void)
{
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(mcos_cfg_defaults(brain_config_opts, brain_n_config_opts,
                                       &c, err, sizeof err),
                     0);
}

static void
cfg_teardown(void)
{
    mcos_cfg_free(brain_config_opts, brain_n_config_opts, &c);
}

START_TEST(test_live_config)
{
    static const struct {
        const char *key, *value;
        int code;
        const char *msg; /* the exact message, or the canonical value */
    } cases[] = {
        {"policy.high_watermark_pct", "80", 0, "80"},
        {"policy.high_watermark_pct", "0x10", -EINVAL,
         "config set: key 'policy.high_watermark_pct': expected a "
         "non-negative integer, got \"0x10\""},
        {"policy.high_watermark_pct", "101", -EINVAL,
         "config set: key 'policy.high_watermark_pct': 101 is out of range "
         "(1 to 100)"},
        {"policy.low_watermark_pct", "81", -EINVAL,
         "policy.low_watermark_pct (81) must not exceed "
         "policy.high_watermark_pct (80)"},
        {"policy.low_watermark_pct", "80", 0, "80"},
        {"routing.load_weight_milli", "0", 0, "0"},
        {"routing.queue_block_milli", "2500", 0, "2500"},
        {"replication.budget_bytes", "1GiB", 0, "1073741824"},
        {"prefetch.max_rules", "0", 0, "0"},
        {"policy.demote_to_peers", "yes", 0, "true"},
        {"policy.demote_to_peers", "maybe", -EINVAL,
         "config set: key 'policy.demote_to_peers': expected true or false, "
         "got \"maybe\""},
        {"routing.rack_penalty_milli", "100000001", -EINVAL,
         "config set: key 'routing.rack_penalty_milli': 100000001 is out of "
         "range (0 to 100000000)"},
        {"listen", "tcp://127.0.0.1:1", -EPERM,
         "config key 'listen' cannot be changed on a running cluster (set it "
         "in the brain's config file); live keys are policy.*, routing.*, "
         "replication.*, placement.* and prefetch.*"},
        {"high-watermark-pct", "80", -ENOENT,
         "unknown config key 'high-watermark-pct'"},
        {"", "1", -ENOENT, "unknown config key ''"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct brain_config before = c;
        char canon[32] = "";
        int r;

        err[0] = '\0';
        r = brain_config_live_set(&c, cases[i].key, cases[i].value,
                                  "config set", canon, sizeof canon, err,
                                  sizeof err);
        ck_assert_msg(r == cases[i].code, "case %zu: %d (%s)", i, r, err);
        if (r == 0) {
            ck_assert_str_eq(canon, cases[i].msg);
        } else {
            ck_assert_str_eq(err, cases[i].msg);
            /* Refused: nothing changed. */
            ck_assert(memcmp(&before, &c, sizeof c) == 0);
        }
    }
    ck_assert_uint_eq(c.high_watermark_pct, 80);
    ck_assert_uint_eq(c.low_watermark_pct, 80);
    ck_assert(c.demote_to_peers);

    char v[32];

    ck_assert_int_eq(brain_config_live_get(&c, "routing.load_weight_milli", v,
                                           sizeof v, err, sizeof err),
                     0);
    ck_assert_str_eq(v, "0");
    ck_assert_int_eq(
        brain_config_live_get(&c, "state_dir", v, sizeof v, err, sizeof err),
        -EPERM);
    /* Every live key is a number or a boolean the table knows. */
    /* struct brain's live_from_etcd has a bit per live key. */
    {
        size_t n = 0;

        while (brain_config_live_keys[n]) {
            n++;
        }
        ck_assert_uint_le(n, 32);
    }
    for (size_t i = 0; brain_config_live_keys[i]; i++) {
        ck_assert_msg(brain_config_live_get(&c, brain_config_live_keys[i], v,
                                            sizeof v, err, sizeof err) == 0,
                      "%s: %s", brain_config_live_keys[i], err);
    }
}
END_TEST

START_TEST(test_ha_options)
{
    free(c.name);
    c.name = strdup("bad name");
    ck_assert_err(brain_config_check(&c, err, sizeof err), -EINVAL, err,
                  "name: bad brain name 'bad name' (1-63 of [A-Za-z0-9._-], "
                  "starting with a letter or digit)");
    free(c.name);
    c.name = strdup("b1");
    free(c.advertise);
    c.advertise = strdup("http://127.0.0.1:7650");
    ck_assert_err(brain_config_check(&c, err, sizeof err), -EINVAL, err,
                  "advertise: 'http://127.0.0.1:7650' is not a valid address");
    free(c.advertise);
    c.advertise = strdup("tcp://10.0.0.5:7650");
    ck_assert_msg(brain_config_check(&c, err, sizeof err) == 0, "%s", err);
    ck_assert(c.etcd_required);
    ck_assert_uint_eq(c.etcd_lease_ttl_s, 5);
    ck_assert_int_eq(mcos_cfg_set(brain_config_opts, brain_n_config_opts, &c,
                                  "etcd.lease_ttl_s", "1", "test", err,
                                  sizeof err),
                     -EINVAL);
    ck_assert_str_eq(err, "test: key 'etcd.lease_ttl_s': 1 is out of range "
                          "(2 to 3600)");
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("election");
    TCase *tc = tcase_create("lease guard");
    TCase *cfg = tcase_create("live config");

    tcase_add_test(tc, test_margin);
    tcase_add_test(tc, test_transitions);
    tcase_add_test(tc, test_walk_with_fake_clock);
    suite_add_tcase(s, tc);
    tcase_add_checked_fixture(cfg, cfg_setup, cfg_teardown);
    tcase_add_test(cfg, test_live_config);
    tcase_add_test(cfg, test_ha_options);
    suite_add_tcase(s, cfg);
    return s;
}

MCOS_TEST_MAIN(suite)
