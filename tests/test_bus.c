/* Tests for common/bus: request/reply over nng driven by a libuv loop. */
#include <errno.h>
#include <pthread.h>
#include <unistd.h>
#include <uv.h>

#include "bus.h"
#include "testutil.h"

struct ctx {
    uv_loop_t loop;
    struct mcos_bus_server *srv;
    struct mcos_bus_client *cli;
    struct mcos_bus_request *held; /* a request kept for later */
    int replies;                   /* client callbacks run */
    int last_status;               /* their last status */
    char last_reply[64];           /* and data */
    int server_seen;               /* server callbacks run */
    uv_timer_t timer;              /* answers the held request */
};

static char url[300];
static char *dir;

/* Server: "echo X" -> "pong X"; "hold" -> answered later; "drop" ->
 * dropped without answer. */
static void
on_request(struct mcos_bus_request *req, void *arg)
{
    struct ctx *c = arg;
    size_t len;
    const char *data = mcos_bus_request_data(req, &len);
    char reply[64];

    c->server_seen++;
    if (len >= 4 && !memcmp(data, "hold", 4)) {
        c->held = req;
    } else if (len >= 4 && !memcmp(data, "drop", 4)) {
        mcos_bus_request_drop(req);
    } else {
        int n = snprintf(reply, sizeof reply, "pong %.*s", (int)len, data);

        ck_assert_int_eq(mcos_bus_reply(req, reply, (size_t)n), 0);
    }
}

static void
on_reply(int status, const void *data, size_t len, void *arg)
{
    struct ctx *c = arg;

    c->replies++;
    c->last_status = status;
    snprintf(c->last_reply, sizeof c->last_reply, "%.*s", (int)len,
             (const char *)data);
}

static void
run_until(struct ctx *c, int replies)
{
    for (int i = 0; i < 100000 && c->replies < replies; i++) {
        uv_run(&c->loop, UV_RUN_ONCE);
    }
    ck_assert_int_eq(c->replies, replies);
}

static void
setup_ctx(struct ctx *c)
{
    char err[MCOS_BUS_ERR_LEN];

    memset(c, 0, sizeof *c);
    dir = test_tmpdir();
    snprintf(url, sizeof url, "ipc://%s/bus.sock", dir);
    ck_assert_int_eq(uv_loop_init(&c->loop), 0);
    ck_assert_int_eq(mcos_bus_server_create(&c->loop, url, on_request, c,
                                            &c->srv, err, sizeof err),
                     0);
    ck_assert_int_eq(
        mcos_bus_client_create(&c->loop, url, &c->cli, err, sizeof err), 0);
}

static void
teardown_ctx(struct ctx *c)
{
    mcos_bus_client_close(c->cli);
    mcos_bus_server_close(c->srv);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    /* Every handle was closed and freed. */
    ck_assert_int_eq(uv_loop_close(&c->loop), 0);
    test_rmrf(dir);
    free(dir);
}

START_TEST(test_echo)
{
    struct ctx c;

    setup_ctx(&c);
    ck_assert_int_eq(
        mcos_bus_call(c.cli, "echo 1", 6, 5000, on_reply, &c, NULL), 0);
    ck_assert_int_eq(
        mcos_bus_call(c.cli, "echo 2", 6, 5000, on_reply, &c, NULL), 0);
    run_until(&c, 2);
    ck_assert_int_eq(c.last_status, 0);
    ck_assert(strstr(c.last_reply, "pong echo"));
    ck_assert_int_eq(c.server_seen, 2);
    teardown_ctx(&c);
}
END_TEST

static void
answer_held(uv_timer_t *t)
{
    struct ctx *c = t->data;

    ck_assert_ptr_nonnull(c->held);
    ck_assert_int_eq(mcos_bus_reply(c->held, "later", 5), 0);
    c->held = NULL;
    uv_close((uv_handle_t *)t, NULL);
}

START_TEST(test_held_reply)
{
    struct ctx c;

    setup_ctx(&c);
    /* The held request does not block others: the server keeps
     * receiving while it holds one. */
    ck_assert_int_eq(mcos_bus_call(c.cli, "hold", 4, 5000, on_reply, &c, NULL),
                     0);
    ck_assert_int_eq(
        mcos_bus_call(c.cli, "echo x", 6, 5000, on_reply, &c, NULL), 0);
    run_until(&c, 1);
    ck_assert_str_eq(c.last_reply, "pong echo x");
    uv_timer_init(&c.loop, &c.timer);
    c.timer.data = &c;
    uv_timer_start(&c.timer, answer_held, 50, 0);
    run_until(&c, 2);
    ck_assert_int_eq(c.last_status, 0);
    ck_assert_str_eq(c.last_reply, "later");
    teardown_ctx(&c);
}
END_TEST

START_TEST(test_timeout_and_cancel)
{
    struct ctx c;
    struct mcos_bus_call *call;

    setup_ctx(&c);
    ck_assert_int_eq(mcos_bus_call(c.cli, "drop", 4, 200, on_reply, &c, NULL),
                     0);
    run_until(&c, 1);
    ck_assert_int_eq(c.last_status, -ETIMEDOUT);
    ck_assert_int_eq(mcos_bus_call(c.cli, "hold", 4, 0, on_reply, &c, &call),
                     0);
    while (!c.held) {
        uv_run(&c.loop, UV_RUN_ONCE);
    }
    mcos_bus_call_cancel(call);
    run_until(&c, 2);
    ck_assert_int_eq(c.last_status, -ECANCELED);
    /* The server may still hold it; closing the server frees it. */
    c.held = NULL;
    teardown_ctx(&c);
}
END_TEST

START_TEST(test_no_server)
{
    uv_loop_t loop;
    struct mcos_bus_client *cli;
    struct ctx c;
    char err[MCOS_BUS_ERR_LEN];
    char *d = test_tmpdir();
    char u[300];

    memset(&c, 0, sizeof c);
    snprintf(u, sizeof u, "ipc://%s/nobody.sock", d);
    uv_loop_init(&loop);
    /* Dialing is in the background: creating succeeds, calls time out. */
    ck_assert_int_eq(mcos_bus_client_create(&loop, u, &cli, err, sizeof err),
                     0);
    ck_assert_int_eq(mcos_bus_call(cli, "x", 1, 100, on_reply, &c, NULL), 0);
    while (c.replies == 0) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    ck_assert_int_eq(c.last_status, -ETIMEDOUT);
    mcos_bus_client_close(cli);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    /* A bad URL is refused at once, with the URL in the message. */
    uv_loop_init(&loop);
    ck_assert_int_ne(
        mcos_bus_client_create(&loop, "bogus://x", &cli, err, sizeof err), 0);
    ck_assert(strstr(err, "cannot dial bogus://x"));
    uv_loop_close(&loop);
    test_rmrf(d);
    free(d);
}
END_TEST

START_TEST(test_listen_conflict)
{
    struct mcos_bus_server *first = NULL, *second = NULL;
    char err[MCOS_BUS_ERR_LEN], u[300];
    char *d = test_tmpdir();
    uv_loop_t loop;
    struct ctx c;

    /* Servers only: the conflict is between listeners. */
    memset(&c, 0, sizeof c);
    /* TCP: a bind conflict fails at once.  (nng probes an existing IPC
     * path by connecting to it, asynchronously.) */
    uv_loop_init(&loop);
    for (int attempt = 0; attempt < 5 && !first; attempt++) {
        snprintf(u, sizeof u, "tcp://127.0.0.1:%d", test_free_port());
        mcos_bus_server_create(&loop, u, on_request, &c, &first, err,
                               sizeof err);
    }
    ck_assert_msg(first != NULL, "%s", err);
    /* The same address twice: the second is refused, by address. */
    ck_assert_int_eq(mcos_bus_server_create(&loop, u, on_request, &c, &second,
                                            err, sizeof err),
                     -EADDRINUSE);
    ck_assert(strstr(err, "cannot listen on"));
    ck_assert(strstr(err, u));
    mcos_bus_server_close(first);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    test_rmrf(d);
    free(d);
}
END_TEST

struct sync_arg {
    int rc;
    char reply[64];
};

static void *
sync_thread(void *p)
{
    struct sync_arg *a = p;
    char err[MCOS_BUS_ERR_LEN];
    void *rep = NULL;
    size_t len = 0;

    a->rc = mcos_bus_call_sync(url, "echo s", 6, 5000, &rep, &len, err,
                               sizeof err);
    if (a->rc == 0) {
        snprintf(a->reply, sizeof a->reply, "%.*s", (int)len, (char *)rep);
    }
    free(rep);
    return NULL;
}

START_TEST(test_sync_call)
{
    struct ctx c;
    struct sync_arg a = {0};
    pthread_t t;

    setup_ctx(&c);
    pthread_create(&t, NULL, sync_thread, &a);
    while (c.server_seen == 0) {
        uv_run(&c.loop, UV_RUN_ONCE);
    }
    pthread_join(t, NULL);
    ck_assert_int_eq(a.rc, 0);
    ck_assert_str_eq(a.reply, "pong echo s");
    teardown_ctx(&c);
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("bus");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_echo);
    tcase_add_test(tc, test_held_reply);
    tcase_add_test(tc, test_timeout_and_cancel);
    tcase_add_test(tc, test_no_server);
    tcase_add_test(tc, test_sync_call);
    tcase_add_test(tc, test_listen_conflict);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
