/* Tests for agent/executor: earliest-deadline-first order under load,
 * bandwidth budgets, late detection, verification checksums, and
 * cancellation on close. */
#include <errno.h>
#include <uv.h>
#include <xxhash.h>

#include "executor.h"
#include "mcos.pb-c.h"
#include "testutil.h"

#define N_JOBS 40
#define LEN    (256u << 10)

struct ctx {
    uv_loop_t loop;
    struct agent_tier *src, *dst;
    struct agent_exec_job jobs[N_JOBS];
    int order[N_JOBS]; /* completion order: job indexes */
    int done;          /* completions so far */
};

static void
on_done(struct agent_exec_job *j, void *arg)
{
    struct ctx *c = arg;

    c->order[c->done++] = (int)(j - c->jobs);
}

static void
setup_ctx(struct ctx *c)
{
    struct agent_tier_config cfg = {0};

    memset(c, 0, sizeof *c);
    uv_loop_init(&c->loop);
    cfg.capacity = 64u << 20;
    ck_assert_int_eq(agent_tier_create(AGENT_TIER_DRAM, &cfg, &c->src), 0);
    ck_assert_int_eq(agent_tier_create(AGENT_TIER_DRAM, &cfg, &c->dst), 0);
}

static void
teardown_ctx(struct ctx *c)
{
    uv_run(&c->loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&c->loop), 0);
    agent_tier_destroy(c->src);
    agent_tier_destroy(c->dst);
}

/* Job i copies a LEN-byte extent of `src` filled with byte i. */
static void
prepare(struct ctx *c, int i, uint64_t deadline)
{
    struct agent_exec_job *j = &c->jobs[i];
    uint8_t *p;

    ck_assert_int_eq(agent_tier_alloc(c->src, LEN, &j->se), 0);
    ck_assert_int_eq(agent_tier_alloc(c->dst, LEN, &j->de), 0);
    p = agent_tier_map(c->src, &j->se);
    memset(p, i, LEN);
    j->src = c->src;
    j->dst = c->dst;
    j->src_kind = MCOS__TIER_KIND__TIER_DRAM;
    j->dst_kind = MCOS__TIER_KIND__TIER_NVME; /* for the budget test */
    j->len = LEN;
    j->deadline_us = deadline;
    j->done = on_done;
    j->arg = c;
}

static void
run_until(struct ctx *c, int n)
{
    while (c->done < n) {
        uv_run(&c->loop, UV_RUN_ONCE);
    }
}

/* With the dataplane throttled, a queue builds up; whatever order jobs
 * are submitted in, they finish earliest deadline first (all but the one
 * already running when the rest arrived). */
START_TEST(test_edf_order_under_load)
{
    struct ctx c;
    struct agent_executor *x;
    uint64_t budgets[AGENT_EXEC_N_TIERS] = {0};
    uint64_t now = mcos_clock_now(&mcos_clock_monotonic);
    uint32_t seed = 12345;

    setup_ctx(&c);
    /* 40 MiB/s: each 256 KiB job takes ~6 ms of budget. */
    budgets[MCOS__TIER_KIND__TIER_NVME] = 40u << 20;
    ck_assert_int_eq(
        agent_exec_create(&c.loop, &mcos_clock_monotonic, budgets, &x), 0);
    for (int i = 0; i < N_JOBS; i++) {
        seed = seed * 1103515245u + 12345u;
        prepare(&c, i, now + 1000000 + (seed >> 8) % 1000000);
    }
    for (int i = 0; i < N_JOBS; i++) {
        ck_assert_int_eq(agent_exec_submit(x, &c.jobs[i]), 0);
    }
    run_until(&c, N_JOBS);
    /* Skip the first few: they may have started before all were queued
     * (the burst lets the first 16 MiB through at once). */
    int inversions = 0;

    for (int k = 1; k < N_JOBS; k++) {
        const struct agent_exec_job *a = &c.jobs[c.order[k - 1]];
        const struct agent_exec_job *b = &c.jobs[c.order[k]];

        inversions +=
            a->deadline_us > b->deadline_us && a->start_us > b->queued_us;
    }
    ck_assert_int_eq(inversions, 0);
    for (int i = 0; i < N_JOBS; i++) {
        uint8_t expect[LEN];

        memset(expect, i, LEN);
        ck_assert_int_eq(c.jobs[i].status, 0);
        ck_assert_uint_eq(c.jobs[i].checksum, XXH3_64bits(expect, LEN));
        ck_assert_int_eq(
            memcmp(agent_tier_map(c.dst, &c.jobs[i].de), expect, LEN), 0);
    }
    agent_exec_close(x);
    teardown_ctx(&c);
}
END_TEST

/* 10 MiB/s and 24 x 256 KiB = 6 MiB beyond the 16 MiB burst... so use a
 * budget small enough that the burst does not cover it: the run takes at
 * least what the rate allows (a lower bound only: a slow machine is never
 * a failure). */
START_TEST(test_budget_and_late)
{
    struct ctx c;
    struct agent_executor *x;
    uint64_t budgets[AGENT_EXEC_N_TIERS] = {0};
    uint64_t t0, elapsed, now;
    struct agent_exec_stats st;

    setup_ctx(&c);
    budgets[MCOS__TIER_KIND__TIER_NVME] = 100u << 20; /* burst 16 MiB */
    ck_assert_int_eq(
        agent_exec_create(&c.loop, &mcos_clock_monotonic, budgets, &x), 0);
    now = mcos_clock_now(&mcos_clock_monotonic);
    /* 40 x 256 KiB = 10 MiB, all within the burst except what the rate
     * must supply: then 20 more MiB at 100 MiB/s take >= ~140 ms. */
    for (int i = 0; i < N_JOBS; i++) {
        prepare(&c, i, i == 0 ? now : UINT64_MAX);
    }
    t0 = mcos_clock_now(&mcos_clock_monotonic);
    for (int round = 0; round < 3; round++) {
        c.done = 0;
        for (int i = 0; i < N_JOBS; i++) {
            ck_assert_int_eq(agent_exec_submit(x, &c.jobs[i]), 0);
        }
        run_until(&c, N_JOBS);
    }
    elapsed = mcos_clock_now(&mcos_clock_monotonic) - t0;
    /* 30 MiB moved, 16 MiB of burst: at least 14 MiB at 100 MiB/s. */
    ck_assert_uint_ge(elapsed, 140000 * 9 / 10);
    /* A deadline already past is late; no deadline never is. */
    ck_assert(c.jobs[0].late);
    ck_assert(!c.jobs[1].late);
    agent_exec_stats(x, &st);
    ck_assert_uint_eq(st.jobs, 3 * N_JOBS);
    ck_assert_uint_eq(st.late, 3);
    ck_assert_uint_eq(st.bytes[MCOS__TIER_KIND__TIER_DRAM],
                      3ull * N_JOBS * LEN);
    agent_exec_close(x);
    teardown_ctx(&c);
}
END_TEST

START_TEST(test_close_cancels_queued)
{
    struct ctx c;
    struct agent_executor *x;
    uint64_t budgets[AGENT_EXEC_N_TIERS] = {0};
    int cancelled = 0;

    setup_ctx(&c);
    budgets[MCOS__TIER_KIND__TIER_NVME] = 1u << 20; /* very slow */
    ck_assert_int_eq(
        agent_exec_create(&c.loop, &mcos_clock_monotonic, budgets, &x), 0);
    for (int i = 0; i < N_JOBS; i++) {
        prepare(&c, i, UINT64_MAX);
        c.jobs[i].len = 1u << 20;
        agent_tier_free(c.src, &c.jobs[i].se);
        agent_tier_free(c.dst, &c.jobs[i].de);
        ck_assert_int_eq(agent_tier_alloc(c.src, 1u << 20, &c.jobs[i].se), 0);
        ck_assert_int_eq(agent_tier_alloc(c.dst, 1u << 20, &c.jobs[i].de), 0);
        ck_assert_int_eq(agent_exec_submit(x, &c.jobs[i]), 0);
    }
    /* 40 MiB at 1 MiB/s with a 16 MiB burst cannot be done yet. */
    agent_exec_close(x);
    /* Every job's callback ran before close returned. */
    ck_assert_int_eq(c.done, N_JOBS);
    for (int i = 0; i < N_JOBS; i++) {
        ck_assert(c.jobs[i].status == 0 || c.jobs[i].status == -ECANCELED);
        cancelled += c.jobs[i].status == -ECANCELED;
    }
    ck_assert_int_gt(cancelled, 0);
    teardown_ctx(&c);
}
END_TEST

START_TEST(test_bad_jobs)
{
    struct ctx c;
    struct agent_executor *x;
    struct agent_exec_job j = {0};

    setup_ctx(&c);
    ck_assert_int_eq(
        agent_exec_create(&c.loop, &mcos_clock_monotonic, NULL, &x), 0);
    ck_assert_int_eq(agent_exec_submit(x, &j), -EINVAL); /* len 0 */
    prepare(&c, 0, UINT64_MAX);
    /* A destination extent reaching past the tier (a forged one): the
     * copy is refused, and the job completes with the error. */
    c.jobs[0].de.off = (64u << 20) - 4096;
    ck_assert_int_eq(agent_exec_submit(x, &c.jobs[0]), 0);
    run_until(&c, 1);
    ck_assert_int_lt(c.jobs[0].status, 0);
    agent_exec_close(x);
    teardown_ctx(&c);
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("executor");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_edf_order_under_load);
    tcase_add_test(tc, test_budget_and_late);
    tcase_add_test(tc, test_close_cancels_queued);
    tcase_add_test(tc, test_bad_jobs);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
