/* Tests for brain/brain: a real brain on an ipc bus, driven from the same
 * loop by a client speaking the wire protocol -- hello, watch, report,
 * pushes, acknowledgements, restarts, and malformed input. */
#include <errno.h>
#include <uv.h>

#include "brain.h"
#include "brainfix.h"
#include "table.h"
#include "wire.h"

struct t {
    uv_loop_t loop;
    struct brain *brain;
    struct mcos_bus_client *cli;
    char *dir;
    char url[300];
    int done;               /* replies received */
    int status;             /* transport status of the last reply */
    struct mcos_wire_msg m; /* the last reply, decoded */
    bool have_msg;
    struct mcos_fake_clock *fake; /* the brain's clock, if not monotonic */
};

static struct brain_config
config(const struct t *t)
{
    struct brain_config c = {0};
    char err[256];

    ck_assert_int_eq(mcos_cfg_defaults(brain_config_opts, brain_n_config_opts,
                                       &c, err, sizeof err),
                     0);
    free(c.listen);
    free(c.http_listen);
    free(c.state_dir);
    c.listen = strdup(t->url);
    c.http_listen = strdup("");
    asprintf(&c.state_dir, "%s/state", t->dir);
    c.report_interval_ms = 100;
    c.suspect_after_ms = 300;
    c.fail_after_ms = 600;
    if (t->fake) {
        /* Time moves only when the test says: no node goes silent. */
        c.suspect_after_ms = 3600000;
        c.fail_after_ms = 7200000;
    }
    return c;
}

static void
start_brain(struct t *t)
{
    struct brain_config c = config(t);
    char err[256];

    ck_assert_msg(
        brain_create(&t->loop, &c,
                     t->fake ? &t->fake->base : &mcos_clock_monotonic,
                     &t->brain, err, sizeof err) == 0,
        "%s", err);
    mcos_cfg_free(brain_config_opts, brain_n_config_opts, &c);
}

static void
stop_brain(struct t *t)
{
    brain_close(t->brain);
    t->brain = NULL;
    /* Let the close callbacks run. */
    for (int i = 0; i < 10; i++) {
        uv_run(&t->loop, UV_RUN_NOWAIT);
    }
}

/* A brain on `fake` (NULL: the monotonic clock). */
static void
setup_clock(struct t *t, struct mcos_fake_clock *fake)
{
    char err[256];

    memset(t, 0, sizeof *t);
    t->fake = fake;
    t->dir = test_tmpdir();
    snprintf(t->url, sizeof t->url, "ipc://%s/brain.sock", t->dir);
    uv_loop_init(&t->loop);
    start_brain(t);
    ck_assert_int_eq(
        mcos_bus_client_create(&t->loop, t->url, &t->cli, err, sizeof err), 0);
}

static void
setup_t(struct t *t)
{
    setup_clock(t, NULL);
}

static void
teardown_t(struct t *t)
{
    if (t->have_msg) {
        mcos_wire_msg_free(&t->m);
    }
    mcos_bus_client_close(t->cli);
    if (t->brain) {
        brain_close(t->brain);
    }
    uv_run(&t->loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&t->loop), 0);
    test_rmrf(t->dir);
    free(t->dir);
}

static void
on_reply(int status, const void *data, size_t len, void *arg)
{
    struct t *t = arg;
    char err[MCOS_WIRE_ERR_LEN];

    t->done++;
    t->status = status;
    if (t->have_msg) {
        mcos_wire_msg_free(&t->m);
        t->have_msg = false;
    }
    if (status == 0) {
        ck_assert_msg(mcos_wire_decode(data, len, &t->m, err, sizeof err) == 0,
                      "%s", err);
        t->have_msg = true;
    }
}

static void
send_raw(struct t *t, const void *buf, size_t len)
{
    ck_assert_int_eq(mcos_bus_call(t->cli, buf, len, 5000, on_reply, t, NULL),
                     0);
}

static void
wait_replies(struct t *t, int n)
{
    for (int i = 0; i < 200000 && t->done < n; i++) {
        uv_run(&t->loop, UV_RUN_ONCE);
    }
    ck_assert_int_eq(t->done, n);
    ck_assert_int_eq(t->status, 0);
}

/* Sends a message and waits for its reply. */
static Mcos__Reply *
rpc(struct t *t, Mcos__MsgType type, const ProtobufCMessage *body)
{
    uint8_t *buf;
    size_t len;
    int before = t->done;

    ck_assert_int_eq(mcos_wire_encode(type, body, &buf, &len), 0);
    send_raw(t, buf, len);
    free(buf);
    wait_replies(t, before + 1);
    return mcos_wire_reply(&t->m);
}

static Mcos__Reply *
send_hello(struct t *t, const char *node, uint64_t boot, uint64_t applied)
{
    Mcos__Hello *h =
        fix_hello(node, boot, "r1", false, false, "10.0.0.1", 7653, applied);
    Mcos__Reply *r = rpc(t, MCOS__MSG_TYPE__MSG_HELLO, &h->base);

    mcos__hello__free_unpacked(h, NULL);
    return r;
}

static Mcos__Watch
watch(const char *node, uint64_t boot, uint64_t applied)
{
    Mcos__Watch w = MCOS__WATCH__INIT;

    w.node = (char *)node;
    w.boot_id = boot;
    w.applied_gen = applied;
    return w;
}

START_TEST(test_join_push_ack)
{
    struct t t;
    Mcos__Reply *r;
    Mcos__Watch w;
    Mcos__Report rep = MCOS__REPORT__INIT;
    struct mcos_table *tab = NULL, *next = NULL;
    char err[200];
    uint64_t g;

    setup_t(&t);
    r = send_hello(&t, "n1", 7, 0);
    ck_assert_int_eq(r->status, 0);
    ck_assert_uint_eq(r->report_interval_ms, 100);

    /* The first watch gets a full table at once. */
    w = watch("n1", 7, 0);
    r = rpc(&t, MCOS__MSG_TYPE__MSG_WATCH, &w.base);
    ck_assert_int_eq(r->status, 0);
    ck_assert_ptr_nonnull(r->table);
    ck_assert_uint_eq(r->table->base_gen, 0);
    g = r->table->gen;
    ck_assert_uint_eq(g, t.brain->gen);
    ck_assert_int_eq(
        mcos_table_apply(NULL, r->table, "n1", &tab, err, sizeof err), 0);
    ck_assert(!brain_converged(t.brain, g));

    /* The report acknowledges it. */
    rep.node = "n1";
    rep.boot_id = 7;
    rep.seq = 1;
    rep.applied_gen = g;
    r = rpc(&t, MCOS__MSG_TYPE__MSG_REPORT, &rep.base);
    ck_assert_int_eq(r->status, 0);
    ck_assert_ptr_null(r->table);
    ck_assert(brain_converged(t.brain, g));

    /* A watch at the current generation is held until a sync... */
    w = watch("n1", 7, g);
    {
        uint8_t *buf;
        size_t len;

        mcos_wire_encode(MCOS__MSG_TYPE__MSG_WATCH, &w.base, &buf, &len);
        send_raw(&t, buf, len);
        free(buf);
    }
    while (!brain_cluster_find(&t.brain->cluster, "n1")->watch) {
        uv_run(&t.loop, UV_RUN_ONCE);
    }
    ck_assert_int_eq(t.done, 3);
    ck_assert_int_eq(brain_sync(t.brain), (int64_t)g + 1);
    /* ...which answers it with a delta from what the node acknowledged. */
    wait_replies(&t, 4);
    r = mcos_wire_reply(&t.m);
    ck_assert_ptr_nonnull(r->table);
    ck_assert_uint_eq(r->table->base_gen, g);
    ck_assert_uint_eq(r->table->gen, g + 1);
    ck_assert_int_eq(
        mcos_table_apply(tab, r->table, "n1", &next, err, sizeof err), 0);
    ck_assert(mcos_table_same_rules(tab, next));

    /* A second node joins: n1's table gains a peer in a new generation. */
    send_hello(&t, "n2", 9, 0);
    for (int i = 0; i < 100 && t.brain->gen == g + 1; i++) {
        uv_run(&t.loop, UV_RUN_ONCE);
    }
    ck_assert_uint_eq(t.brain->gen, g + 2);
    w = watch("n1", 7, g + 1);
    r = rpc(&t, MCOS__MSG_TYPE__MSG_WATCH, &w.base);
    ck_assert_uint_eq(r->table->n_upserts, 1);
    ck_assert_str_eq(r->table->upserts[0]->key, "peer/n2");
    mcos_table_free(tab);
    mcos_table_free(next);
    teardown_t(&t);
}
END_TEST

START_TEST(test_report_carries_update_without_watch)
{
    struct t t;
    Mcos__Report rep = MCOS__REPORT__INIT;
    Mcos__Reply *r;

    setup_t(&t);
    send_hello(&t, "n1", 7, 0);
    rep.node = "n1";
    rep.boot_id = 7;
    rep.seq = 1;
    for (int i = 0;
         i < 100 && !brain_cluster_find(&t.brain->cluster, "n1")->desired;
         i++) {
        uv_run(&t.loop, UV_RUN_ONCE);
    }
    r = rpc(&t, MCOS__MSG_TYPE__MSG_REPORT, &rep.base);
    ck_assert_int_eq(r->status, 0);
    ck_assert_ptr_nonnull(r->table);
    ck_assert_uint_eq(r->table->gen, t.brain->gen);
    teardown_t(&t);
}
END_TEST

START_TEST(test_bad_input)
{
    struct t t;
    Mcos__Reply *r;
    Mcos__Report rep = MCOS__REPORT__INIT;
    Mcos__Reply fake = MCOS__REPLY__INIT;
    Mcos__Watch w = watch("n1", 7, 0);
    uint8_t *buf;
    size_t len;
    uint64_t bad_before;

    setup_t(&t);
    bad_before = t.brain->counters.bad_messages;

    send_raw(&t, "\x01\x02\x03", 3);
    wait_replies(&t, 1);
    r = mcos_wire_reply(&t.m);
    ck_assert_err(r->status, -EBADMSG, r->error,
                  "malformed envelope (3 bytes)");

    mcos_wire_encode_version(MCOS__MSG_TYPE__MSG_WATCH, 2, 0, &w.base, &buf,
                             &len);
    send_raw(&t, buf, len);
    free(buf);
    wait_replies(&t, 2);
    r = mcos_wire_reply(&t.m);
    ck_assert_err(r->status, -EPROTONOSUPPORT, r->error,
                  "protocol version 2.0 is not supported");

    r = rpc(&t, MCOS__MSG_TYPE__MSG_REPLY, &fake.base);
    ck_assert_err(r->status, -EPROTO, r->error, "unexpected reply message");

    rep.node = "ghost";
    rep.boot_id = 1;
    rep.seq = 1;
    r = rpc(&t, MCOS__MSG_TYPE__MSG_REPORT, &rep.base);
    ck_assert_err(r->status, -ENOENT, r->error,
                  "report from unknown node ghost: say hello first");

    r = send_hello(&t, "bad/name", 1, 0);
    ck_assert_err(r->status, -EINVAL, r->error, "bad node name 'bad/name'");

    ck_assert_uint_eq(t.brain->counters.bad_messages, bad_before + 5);
    ck_assert_uint_eq(t.brain->cluster.n, 0);
    /* Still serving. */
    r = send_hello(&t, "n1", 7, 0);
    ck_assert_int_eq(r->status, 0);
    teardown_t(&t);
}
END_TEST

START_TEST(test_generations_survive_restart)
{
    struct t t;
    uint64_t before, after;
    Mcos__Reply *r;

    setup_t(&t);
    send_hello(&t, "n1", 7, 0);
    brain_sync(t.brain);
    before = t.brain->gen;
    stop_brain(&t);
    start_brain(&t);
    after = t.brain->gen;
    ck_assert_uint_gt(after, before);

    /* An agent ahead of the brain (its state was lost) pushes the counter
     * up: generations never go backward for the agent. */
    r = send_hello(&t, "n1", 7, after + 100);
    ck_assert_int_eq(r->status, 0);
    for (int i = 0; i < 100 && t.brain->gen <= after + 100; i++) {
        uv_run(&t.loop, UV_RUN_ONCE);
    }
    ck_assert_uint_gt(t.brain->gen, after + 100);
    teardown_t(&t);
}
END_TEST

/* Sends a routing request over the bus; returns the decoded reply. */
static Mcos__RouteReply *
route_out(struct t *t, const char *ns, uint64_t *blocks, size_t n,
          uint64_t output_len)
{
    Mcos__RouteRequest q = MCOS__ROUTE_REQUEST__INIT;
    uint8_t *buf;
    size_t len;
    int before = t->done;

    q.ns = (char *)ns;
    q.blocks = blocks;
    q.n_blocks = n;
    q.output_len = output_len;
    ck_assert_int_eq(mcos_wire_encode(MCOS__MSG_TYPE__MSG_ROUTE_REQUEST,
                                      &q.base, &buf, &len),
                     0);
    send_raw(t, buf, len);
    free(buf);
    wait_replies(t, before + 1);
    return mcos_wire_route_reply(&t->m);
}

static Mcos__RouteReply *
route(struct t *t, const char *ns, uint64_t *blocks, size_t n)
{
    return route_out(t, ns, blocks, n, 0);
}

/* The canonical dump of the table the brain compiled for `node`, once it
 * contains `rule` (the loop runs until then). */
static char *
table_with(struct t *t, const char *node, const char *rule)
{
    const struct brain_node *nd = brain_cluster_find(&t->brain->cluster, node);
    char *d = NULL;

    ck_assert_ptr_nonnull(nd);
    for (int i = 0; i < 500; i++) {
        const struct mcos_table *tb =
            brain_graph_table(t->brain->graph, nd->idx);

        free(d);
        d = NULL;
        if (tb) {
            ck_assert_int_eq(mcos_table_dump(tb, false, &d), 0);
            if (strstr(d, rule)) {
                return d;
            }
        }
        uv_run(&t->loop, UV_RUN_ONCE);
    }
    ck_abort_msg("no %s in %s's table:\n%s", rule, node, d ? d : "(none)");
    return NULL;
}

START_TEST(test_route_over_bus)
{
    struct t t;
    Mcos__RouteReply *r;
    uint64_t chain[3] = {11, 12, 13};

    setup_t(&t);
    r = route(&t, "", chain, 3);
    ck_assert_err(r->status, -EAGAIN, r->error, "no live node to route to");
    send_hello(&t, "n1", 7, 0);
    send_hello(&t, "n2", 8, 0);
    r = route(&t, "", chain, 3);
    ck_assert_int_eq(r->status, 0);
    ck_assert_str_eq(r->node, "n1"); /* a tie goes to the first name */
    ck_assert_uint_eq(r->n_ranked, 2);
    ck_assert_str_eq(r->ranked[0]->node, "n1");
    ck_assert_double_eq_tol(r->ranked[0]->prefill_blocks, 3, 1e-9);
    ck_assert(strstr(r->explain, "n1: holds 0 of 3 blocks"));
    /* The request routed to n1 counts as its load (test_routed_load). */
    r = route(&t, "", chain, 3);
    ck_assert_str_eq(r->node, "n2");
    r = route(&t, "bad ns", chain, 3);
    ck_assert_err(r->status, -EINVAL, r->error,
                  "bad namespace 'bad ns' (1-63 of [A-Za-z0-9._/-])");
    r = route(&t, "", chain, 0);
    ck_assert_err(r->status, -EINVAL, r->error,
                  "'blocks' must be a non-empty array of at most 4096 block "
                  "hashes");
    ck_assert_uint_eq(t.brain->routes, 2);
    teardown_t(&t);
}
END_TEST

/* A report from `node` (boot 7); with engines > 0 it carries their load,
 * sampled `age_us` before it was sent. */
static void
report_load(struct t *t, const char *node, uint64_t seq, uint32_t engines,
            uint32_t queued, uint64_t age_us)
{
    Mcos__Report rep = MCOS__REPORT__INIT;
    Mcos__Load load = MCOS__LOAD__INIT;

    rep.node = (char *)node;
    rep.boot_id = 7;
    rep.seq = seq;
    if (engines) {
        load.engines = engines;
        load.queued_requests = queued;
        load.sample_age_us = age_us;
        rep.load = &load;
    }
    ck_assert_int_eq(rpc(t, MCOS__MSG_TYPE__MSG_REPORT, &rep.base)->status, 0);
}

/* What the brain routed to a node counts as its load until an engine
 * report shows it (made routing.route_transit_ms after the route), or
 * for routing.route_hold_ms -- not just until the node's next report. */
START_TEST(test_routed_load)
{
    struct mcos_fake_clock fake;
    struct t t;
    uint64_t chain[3] = {11, 12, 13};
    const struct brain_node *n1, *n2;

    mcos_fake_clock_init(&fake, 1000000);
    setup_clock(&t, &fake);
    send_hello(&t, "n1", 7, 0);
    send_hello(&t, "n2", 7, 0);
    n1 = brain_cluster_find(&t.brain->cluster, "n1");
    n2 = brain_cluster_find(&t.brain->cluster, "n2");
    ck_assert_str_eq(route(&t, "", chain, 3)->node, "n1"); /* tie: n1 */
    /* A report without engine load says nothing of that request. */
    report_load(&t, "n1", 1, 0, 0, 0);
    ck_assert_uint_eq(brain_routed_requests(&n1->routed), 1);
    ck_assert_double_eq_tol(brain_routed_blocks(&n1->routed), 3, 1e-9);
    ck_assert_str_eq(route(&t, "", chain, 3)->node, "n2");
    ck_assert_str_eq(route(&t, "", chain, 3)->node, "n1");
    ck_assert_uint_eq(brain_routed_requests(&n1->routed), 2);

    /* Held for routing.route_hold_ms (5 s), then forgotten. */
    mcos_fake_clock_advance(&fake, 4999999);
    ck_assert_str_eq(route(&t, "", chain, 3)->node, "n2"); /* 2 vs 1 */
    mcos_fake_clock_advance(&fake, 1);
    /* The first three are 5 s old: only n2's newest counts. */
    ck_assert_str_eq(route(&t, "", chain, 3)->node, "n1");
    ck_assert_uint_eq(brain_routed_requests(&n1->routed), 1);
    ck_assert_uint_eq(brain_routed_requests(&n2->routed), 1);

    /* Engines on n1 report 10 ms after its route: too soon to have it
     * (routing.route_transit_ms is 50 ms), so it still counts. */
    mcos_fake_clock_advance(&fake, 10000);
    report_load(&t, "n1", 2, 1, 0, 0);
    ck_assert_uint_eq(brain_routed_requests(&n1->routed), 1);
    /* 100 ms later: a report whose figures are 60 ms old covers it. */
    mcos_fake_clock_advance(&fake, 100000);
    report_load(&t, "n1", 3, 1, 0, 60000);
    ck_assert_uint_eq(brain_routed_requests(&n1->routed), 0);
    ck_assert_double_eq_tol(brain_routed_blocks(&n1->routed), 0, 1e-9);
    /* ... but figures 100 ms old were sampled 10 ms after n2's route,
     * within the transit time: they do not cover it. */
    report_load(&t, "n2", 1, 1, 0, 100000);
    ck_assert_uint_eq(brain_routed_requests(&n2->routed), 1);
    ck_assert_str_eq(route(&t, "", chain, 3)->node, "n1");
    /* The engines' own figures count in place of the routes they cover. */
    mcos_fake_clock_advance(&fake, 100000);
    report_load(&t, "n1", 4, 1, 5, 0);
    ck_assert_uint_eq(brain_routed_requests(&n1->routed), 0);
    ck_assert_str_eq(route(&t, "", chain, 3)->node, "n2");
    teardown_t(&t);
}
END_TEST

/* Routed requests teach the residency prediction, whichever way they
 * come: a 600-token answer (class 6) routed to n1 and an 8-token one
 * (class 0) to n2 tie at one turn each, so the default is class 0 (the
 * lower); n1's turn, ending on block 13 (0xd), gets a reuse rule. */
START_TEST(test_route_teaches_residency)
{
    struct t t;
    Mcos__RouteReply *r;
    uint64_t chain[3] = {11, 12, 13};
    char *d;

    setup_t(&t);
    send_hello(&t, "n1", 7, 0);
    send_hello(&t, "n2", 8, 0);
    r = route_out(&t, "", chain, 3, 600);
    ck_assert_str_eq(r->node, "n1");
    r = route_out(&t, "", chain, 3, 8);
    ck_assert_str_eq(r->node, "n2");
    d = table_with(&t, "n1", "reuse/000000000000000d class=c6");
    ck_assert_ptr_nonnull(strstr(d, "\nresidency unit=10000ms default=c0 "));
    free(d);
    d = table_with(&t, "n2", "residency unit=10000ms default=c0 ");
    ck_assert_ptr_null(strstr(d, "reuse/"));
    free(d);
    teardown_t(&t);
}
END_TEST

START_TEST(test_config_check)
{
    struct brain_config c = {0};
    char err[256];

    mcos_cfg_defaults(brain_config_opts, brain_n_config_opts, &c, err,
                      sizeof err);
    ck_assert_int_eq(brain_config_check(&c, err, sizeof err), 0);
    c.fail_after_ms = c.suspect_after_ms;
    ck_assert_err(brain_config_check(&c, err, sizeof err), -EINVAL, err,
                  "liveness.fail_after_ms (3000) must be greater than "
                  "liveness.suspect_after_ms (3000)");
    c.fail_after_ms = 10000;
    c.suspect_after_ms = 500;
    ck_assert_err(brain_config_check(&c, err, sizeof err), -EINVAL, err,
                  "liveness.suspect_after_ms (500) must be at least "
                  "report_interval_ms (1000)");
    c.suspect_after_ms = 3000;
    c.low_watermark_pct = 95;
    ck_assert_err(brain_config_check(&c, err, sizeof err), -EINVAL, err,
                  "policy.low_watermark_pct (95) must not exceed "
                  "policy.high_watermark_pct (90)");
    mcos_cfg_free(brain_config_opts, brain_n_config_opts, &c);
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("brain");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_join_push_ack);
    tcase_add_test(tc, test_report_carries_update_without_watch);
    tcase_add_test(tc, test_bad_input);
    tcase_add_test(tc, test_generations_survive_restart);
    tcase_add_test(tc, test_route_over_bus);
    tcase_add_test(tc, test_routed_load);
    tcase_add_test(tc, test_route_teaches_residency);
    tcase_add_test(tc, test_config_check);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
