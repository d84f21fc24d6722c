/* Tests for common/http: routes on the loop thread, the blocking client. */
#include <errno.h>
#include <pthread.h>
#include <uv.h>

#include "bus.h"
#include "http.h"
#include "testutil.h"

static uv_loop_t loop;
static struct mcos_http_server *srv;
static uv_async_t stop;
static pthread_t loop_thread;
static pthread_t loop_tid;
static char base[64];
static int calls_on_loop_thread;

static void
get_hello(struct mcos_http_request *req, void *arg)
{
    calls_on_loop_thread += pthread_equal(pthread_self(), loop_tid) ? 1 : 0;
    mcos_http_respond_json(req, 200,
                           json_pack("{s:b, s:s}", "ok", 1, "query",
                                     mcos_http_request_query(req)));
}

static void
post_echo(struct mcos_http_request *req, void *arg)
{
    size_t len;
    const char *body = mcos_http_request_body(req, &len);

    if (len == 0) {
        mcos_http_respond_error(req, 400, "empty body (%s)",
                                mcos_http_request_method(req));
        return;
    }
    mcos_http_respond(req, 200, "text/plain", body, len);
}

/* Refuses whatever it is sent, quoting it: request bytes in a message. */
static void
post_refuse(struct mcos_http_request *req, void *arg)
{
    size_t len;
    const char *body = mcos_http_request_body(req, &len);

    mcos_http_respond_error(req, 400, "bad thing '%.*s'", (int)len, body);
}

static void
get_items(struct mcos_http_request *req, void *arg)
{
    const char *p = mcos_http_request_path(req);

    mcos_http_respond(req, 200, "text/plain", p, strlen(p));
}

static void
on_stop(uv_async_t *a)
{
    mcos_http_server_close(srv);
    uv_close((uv_handle_t *)a, NULL);
}

static void *
run_loop(void *arg)
{
    loop_tid = pthread_self();
    uv_run(&loop, UV_RUN_DEFAULT);
    return NULL;
}

static void
setup(void)
{
    char err[256];
    int r = -EADDRINUSE;

    uv_loop_init(&loop);
    /* The port was free a moment ago; another process may take it before
     * we bind, so try a few. */
    for (int attempt = 0; attempt < 5 && r == -EADDRINUSE; attempt++) {
        snprintf(base, sizeof base, "http://127.0.0.1:%d", test_free_port());
        ck_assert_int_eq(
            mcos_http_server_create(&loop, base, &srv, err, sizeof err), 0);
        ck_assert_int_eq(mcos_http_server_route(srv, "GET", "/hello", false,
                                                get_hello, NULL),
                         0);
        ck_assert_int_eq(mcos_http_server_route(srv, "POST", "/echo", false,
                                                post_echo, NULL),
                         0);
        ck_assert_int_eq(mcos_http_server_route(srv, "GET", "/items", true,
                                                get_items, NULL),
                         0);
        ck_assert_int_eq(mcos_http_server_route(srv, "POST", "/refuse", false,
                                                post_refuse, NULL),
                         0);
        r = mcos_http_server_start(srv, err, sizeof err);
        if (r) {
            mcos_http_server_close(srv);
            uv_run(&loop, UV_RUN_DEFAULT);
        }
    }
    ck_assert_msg(r == 0, "%s", err);
    uv_async_init(&loop, &stop, on_stop);
    pthread_create(&loop_thread, NULL, run_loop, NULL);
}

static void
teardown(void)
{
    uv_async_send(&stop);
    pthread_join(loop_thread, NULL);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}

static int
fetch(const char *method, const char *path, const char *body, size_t blen,
      int *status, char **resp)
{
    char url[256], err[256];

    snprintf(url, sizeof url, "%s%s", base, path);
    return mcos_http_fetch(method, url, body, blen, 5000, status, resp, NULL,
                           err, sizeof err);
}

START_TEST(test_routes)
{
    int status;
    char *resp;

    ck_assert_int_eq(fetch("GET", "/hello?x=1", NULL, 0, &status, &resp), 0);
    ck_assert_int_eq(status, 200);
    ck_assert(strstr(resp, "\"query\": \"x=1\""));
    ck_assert_int_eq(calls_on_loop_thread, 1);
    free(resp);

    ck_assert_int_eq(fetch("POST", "/echo", "{\"a\":1}", 7, &status, &resp),
                     0);
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(resp, "{\"a\":1}");
    free(resp);

    ck_assert_int_eq(fetch("POST", "/echo", "", 0, &status, &resp), 0);
    ck_assert_int_eq(status, 400);
    ck_assert(strstr(resp, "\"error\": \"empty body (POST)\""));
    free(resp);

    ck_assert_int_eq(fetch("GET", "/items/a/b", NULL, 0, &status, &resp), 0);
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(resp, "/items/a/b");
    free(resp);

    /* Unclaimed paths and methods answer in JSON like the rest. */
    ck_assert_int_eq(fetch("GET", "/nothing", NULL, 0, &status, &resp), 0);
    ck_assert_int_eq(status, 404);
    ck_assert_str_eq(
        resp, "{\n  \"error\": \"no such resource: GET /nothing\"\n}\n");
    free(resp);
    ck_assert_int_eq(fetch("GET", "/echo", NULL, 0, &status, &resp), 0);
    ck_assert_int_eq(status, 405);
    ck_assert_str_eq(
        resp, "{\n  \"error\": \"method GET is not allowed on /echo\"\n}\n");
    free(resp);
    ck_assert_int_eq(fetch("DELETE", "/items/x", NULL, 0, &status, &resp), 0);
    ck_assert_int_eq(status, 405);
    free(resp);

    /* An error quoting bytes that are not UTF-8 is still the error, with
     * '?' for them (it was a 500 "out of memory": jansson refused the
     * message; found by tests/fuzz/fuzz_brain_http.c). */
    ck_assert_int_eq(
        fetch("POST", "/refuse", "n\xcf\xd0\xc3\xa9\xff", 6, &status, &resp),
        0);
    ck_assert_int_eq(status, 400);
    ck_assert_str_eq(resp,
                     "{\n  \"error\": \"bad thing 'n??\xc3\xa9?'\"\n}\n");
    free(resp);
}
END_TEST

START_TEST(test_utf8_sanitize)
{
    static const struct {
        const char *in, *out;
        size_t replaced;
    } cases[] = {
        {"plain ascii", "plain ascii", 0},
        {"caf\xc3\xa9", "caf\xc3\xa9", 0}, /* U+00E9 */
        {"\xe2\x82\xac \xf0\x9f\x98\x80", "\xe2\x82\xac \xf0\x9f\x98\x80", 0},
        {"cut \xc3", "cut ?", 1}, /* at the end */
        {"cut \xe2\x82", "cut ??", 2},
        {"\xff\xfe", "??", 2},           /* never UTF-8 */
        {"\xc0\xaf", "??", 2},           /* overlong '/' */
        {"\xe0\x80\xaf", "???", 3},      /* overlong */
        {"\xed\xa0\x80", "???", 3},      /* a surrogate */
        {"\xf4\x90\x80\x80", "????", 4}, /* above U+10FFFF */
        {"a\x80"
         "b",
         "a?b", 1}, /* a lone tail */
        {"", "", 0},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[64];

        snprintf(buf, sizeof buf, "%s", cases[i].in);
        ck_assert_uint_eq(mcos_utf8_sanitize(buf), cases[i].replaced);
        ck_assert_str_eq(buf, cases[i].out);
    }
}
END_TEST

START_TEST(test_oversize_body)
{
    size_t len = MCOS_HTTP_MAX_BODY + 10;
    char *big = malloc(len);
    int status;
    char *resp = NULL;
    int rc;

    memset(big, 'a', len);
    rc = fetch("POST", "/echo", big, len, &status, &resp);
    /* nng refuses it before our handler runs: either a 4xx or a reset. */
    if (rc == 0) {
        ck_assert_int_ge(status, 400);
        ck_assert_int_lt(status, 500);
    }
    free(resp);
    free(big);
    /* The server still answers. */
    ck_assert_int_eq(fetch("GET", "/hello", NULL, 0, &status, &resp), 0);
    ck_assert_int_eq(status, 200);
    free(resp);
}
END_TEST

START_TEST(test_client_errors)
{
    char err[256], *resp;
    int status;

    ck_assert_int_eq(mcos_http_fetch("GET", "ftp://x/", NULL, 0, 1000, &status,
                                     &resp, NULL, err, sizeof err),
                     -EINVAL);
    ck_assert_str_eq(err, "bad URL 'ftp://x/' (want http://HOST:PORT/...)");
    ck_assert_int_eq(mcos_http_fetch("GET", "http://127.0.0.1:1/", NULL, 0,
                                     1000, &status, &resp, NULL, err,
                                     sizeof err),
                     -ECONNREFUSED);
    ck_assert(strstr(err, "http://127.0.0.1:1/: Connection refused"));
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("http");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_routes);
    tcase_add_test(tc, test_utf8_sanitize);
    tcase_add_test(tc, test_oversize_body);
    tcase_add_test(tc, test_client_errors);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
