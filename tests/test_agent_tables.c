/* Tests for agent/tables: apply through RCU while readers read. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "tables.h"
#include "testutil.h"
#include "wire.h"

/* An update that sets param/n = gen (full when base is 0). */
static Mcos__TableUpdate *
make_update(uint64_t gen, uint64_t base)
{
    static Mcos__TableUpdate u;
    static Mcos__Rule r, *rp = &r;
    static Mcos__ParamRule p;

    mcos__table_update__init(&u);
    mcos__rule__init(&r);
    mcos__param_rule__init(&p);
    p.name = "n";
    p.value = gen;
    r.key = "param/n";
    r.rule_case = MCOS__RULE__RULE_PARAM;
    r.param = &p;
    u.format_version = MCOS_TABLE_FORMAT;
    u.gen = gen;
    u.base_gen = base;
    u.node = "n1";
    u.n_upserts = 1;
    u.upserts = &rp;
    return &u;
}

START_TEST(test_apply_sequence)
{
    struct agent_tables *t;
    char err[MCOS_TABLE_ERR_LEN];
    const struct mcos_table *cur;

    agent_tables_register_thread();
    ck_assert_int_eq(agent_tables_create("bad name", &t), -EINVAL);
    ck_assert_int_eq(agent_tables_create("n1", &t), 0);
    ck_assert_uint_eq(agent_tables_gen(t), 0);
    ck_assert_ptr_null(agent_tables_read_lock(t));
    agent_tables_read_unlock(t);

    ck_assert_int_eq(agent_tables_apply(t, make_update(3, 0), err, sizeof err),
                     0);
    ck_assert_uint_eq(agent_tables_gen(t), 3);
    /* Idempotent. */
    ck_assert_int_eq(agent_tables_apply(t, make_update(3, 0), err, sizeof err),
                     1);
    /* A delta from the wrong base is refused; generation 3 stays. */
    ck_assert_err(agent_tables_apply(t, make_update(5, 4), err, sizeof err),
                  -ESTALE, err,
                  "delta from generation 4 does not apply to generation 3");
    ck_assert_uint_eq(agent_tables_gen(t), 3);
    ck_assert_int_eq(agent_tables_apply(t, make_update(4, 3), err, sizeof err),
                     0);
    cur = agent_tables_read_lock(t);
    ck_assert_uint_eq(mcos_table_param(cur, "n", 0), 4);
    agent_tables_read_unlock(t);
    agent_tables_destroy(t);
    agent_tables_destroy(NULL);
    agent_tables_unregister_thread();
}
END_TEST

struct reader {
    struct agent_tables *t;
    atomic_bool *stop;
    _Atomic uint64_t seen; /* newest generation read */
    uint64_t reads;
    bool monotonic;
    bool consistent;
};

static void *
reader_main(void *arg)
{
    struct reader *r = arg;
    uint64_t last = 0;

    agent_tables_register_thread();
    r->monotonic = r->consistent = true;
    while (!atomic_load(r->stop)) {
        const struct mcos_table *t = agent_tables_read_lock(r->t);

        if (t) {
            uint64_t g = mcos_table_gen(t);

            /* Each snapshot is whole: its content matches its gen. */
            if (mcos_table_param(t, "n", 0) != g) {
                r->consistent = false;
            }
            if (g < last) {
                r->monotonic = false;
            }
            last = g;
            atomic_store(&r->seen, g);
        }
        agent_tables_read_unlock(r->t);
        r->reads++;
    }
    agent_tables_unregister_thread();
    return NULL;
}

/* Readers never lock and never see a torn or freed table while the
 * writer swaps thousands of generations (ASan would catch a free). */
START_TEST(test_concurrent_readers)
{
    struct agent_tables *t;
    atomic_bool stop = false;
    struct reader rd[3];
    pthread_t th[3];
    char err[MCOS_TABLE_ERR_LEN];

    agent_tables_register_thread();
    ck_assert_int_eq(agent_tables_create("n1", &t), 0);
    for (int i = 0; i < 3; i++) {
        rd[i] = (struct reader){t, &stop, 0, 0, true, true};
        pthread_create(&th[i], NULL, reader_main, &rd[i]);
    }
    for (uint64_t g = 1; g <= 3000; g++) {
        ck_assert_int_eq(
            agent_tables_apply(t, make_update(g, g - 1), err, sizeof err), 0);
    }
    /* Each reader must come to see the last generation.  Waiting for it,
     * rather than stopping at once, keeps the test true on a loaded
     * machine where a reader is first scheduled after the writer is done
     * (the tcase timeout bounds the wait). */
    for (int i = 0; i < 3; i++) {
        while (atomic_load(&rd[i].seen) != 3000) {
            sched_yield();
        }
    }
    atomic_store(&stop, true);
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        ck_assert(rd[i].monotonic);
        ck_assert(rd[i].consistent);
        ck_assert_uint_gt(rd[i].reads, 0);
    }
    ck_assert_uint_eq(agent_tables_gen(t), 3000);
    agent_tables_destroy(t);
    agent_tables_unregister_thread();
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("agent_tables");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_apply_sequence);
    tcase_add_test(tc, test_concurrent_readers);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
