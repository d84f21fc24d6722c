/*
 * Fuzz target: arbitrary bytes as an HTTP request to the brain's API
 * (brain/api.c), answered by the route's own callback on a real brain:
 * nodes, status, sync, route, replicate, replication, config get/set and
 * metrics, and paths or methods no route claims.
 *
 * No sockets: the target is linked with -Wl,--wrap for the HTTP server's
 * functions (tests/fuzz/CMakeLists.txt).  brain_create registers its
 * routes here; each input becomes a request that this file routes as the
 * server would (exact path, or a prefix route's subtree; otherwise 405 on
 * a path some other method serves, else 404) and hands to the callback.
 * The request accessors and the responders are replaced too, keeping the
 * real ones' behaviour (a responder frees the request).  The brain is
 * brain_rig.h's (its bus replaced too), so that agents can say hello.
 *
 * Input: byte 0 picks a route (below); the bytes after it up to the first
 * '\n' are appended to that route's path ('?' starts the query; for the
 * raw entry they are "METHOD /path?query"); the rest is the body.
 *
 * Oracles: every request is answered exactly once, before the callback
 * returns; an error status (>= 400) carries {"error": "..."} with a
 * non-empty message; every JSON answer is a document that dumps and parses
 * back; no JSON answer is a NULL document (the real server would say "out
 * of memory").  Every HEALTH_EVERY inputs a well-formed POST /v1/route and
 * GET /v1/status must still answer 200.
 *
 * One brain lives across inputs, started with three nodes that said hello
 * and one report of four KV blocks (namespace "m", 0xb10c0..0xb10c3 on
 * n1), and is recreated every RESET_EVERY inputs.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "brain.h"
#include "brain_rig.h"
#include "http.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RESET_EVERY  500
#define HEALTH_EVERY 64

/* ------------------------------------------------------------------------
 * The HTTP server, replaced. */

struct mcos_http_request {
    char *method;
    char *path;
    char *query;
    char *body; /* NUL-terminated copy, as the real server makes */
    size_t body_len;
};

struct route {
    char method[8];
    char *path;
    bool prefix;
    mcos_http_cb cb;
    void *arg;
};

int __wrap_mcos_http_server_create(uv_loop_t *, const char *url,
                                   struct mcos_http_server **out, char *err,
                                   size_t errlen);
int __wrap_mcos_http_server_route(struct mcos_http_server *,
                                  const char *method, const char *path,
                                  bool prefix, mcos_http_cb cb, void *arg);
int __wrap_mcos_http_server_start(struct mcos_http_server *, char *err,
                                  size_t errlen);
void __wrap_mcos_http_server_close(struct mcos_http_server *);
const char *__wrap_mcos_http_request_method(const struct mcos_http_request *);
const char *__wrap_mcos_http_request_path(const struct mcos_http_request *);
const char *__wrap_mcos_http_request_query(const struct mcos_http_request *);
const char *__wrap_mcos_http_request_body(const struct mcos_http_request *,
                                          size_t *len);
void __wrap_mcos_http_respond(struct mcos_http_request *, int status,
                              const char *content_type, const void *body,
                              size_t len);
void __wrap_mcos_http_respond_json(struct mcos_http_request *, int status,
                                   json_t *doc);
void __wrap_mcos_http_respond_error(struct mcos_http_request *, int status,
                                    const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool verbose; /* FUZZ_VERBOSE=1: print each request and answer */
static int http_token;
static struct route routes[32];
static size_t n_routes;
static struct mcos_http_request *current; /* the request being answered */
static unsigned answers;                  /* to it */
static int last_status;

int
__wrap_mcos_http_server_create(uv_loop_t *loop, const char *url,
                               struct mcos_http_server **out, char *err,
                               size_t errlen)
{
    *out = (struct mcos_http_server *)(void *)&http_token;
    return 0;
}

int
__wrap_mcos_http_server_route(struct mcos_http_server *srv, const char *method,
                              const char *path, bool prefix, mcos_http_cb cb,
                              void *arg)
{
    struct route *r;

    if (n_routes == sizeof routes / sizeof routes[0]) {
        abort();
    }
    r = &routes[n_routes++];
    snprintf(r->method, sizeof r->method, "%s", method);
    r->path = strdup(path);
    r->prefix = prefix;
    r->cb = cb;
    r->arg = arg;
    if (!r->path) {
        abort();
    }
    return 0;
}

int
__wrap_mcos_http_server_start(struct mcos_http_server *srv, char *err,
                              size_t errlen)
{
    return 0;
}

void
__wrap_mcos_http_server_close(struct mcos_http_server *srv)
{
    if (!srv) {
        return;
    }
    for (size_t i = 0; i < n_routes; i++) {
        free(routes[i].path);
    }
    n_routes = 0;
}

const char *
__wrap_mcos_http_request_method(const struct mcos_http_request *r)
{
    return r->method;
}

const char *
__wrap_mcos_http_request_path(const struct mcos_http_request *r)
{
    return r->path;
}

const char *
__wrap_mcos_http_request_query(const struct mcos_http_request *r)
{
    return r->query;
}

const char *
__wrap_mcos_http_request_body(const struct mcos_http_request *r, size_t *len)
{
    *len = r->body_len;
    return r->body;
}

static void
request_free(struct mcos_http_request *r)
{
    free(r->method);
    free(r->path);
    free(r->query);
    free(r->body);
    free(r);
}

/* Every answer ends here, as in common/http.c: checked, then freed. */
void
__wrap_mcos_http_respond(struct mcos_http_request *r, int status,
                         const char *content_type, const void *body,
                         size_t len)
{
    if (r != current || answers++ || status < 200 || status > 599 ||
        !content_type || (len && !body)) {
        abort(); /* answered twice, or not a request of ours */
    }
    last_status = status;
    if (verbose) {
        fprintf(stderr, "%d %.*s\n", status, (int)(len < 400 ? len : 400),
                (const char *)body);
    }
    if (!strncmp(content_type, "application/json", 16)) {
        json_error_t jerr;
        json_t *doc = json_loadb(body, len, 0, &jerr);
        json_t *e;

        if (!doc) {
            fprintf(stderr, "answer is not JSON: %s: %.*s\n", jerr.text,
                    (int)len, (const char *)body);
            abort();
        }
        if (status >= 400) {
            e = json_object_get(doc, "error");
            if (!json_is_string(e) || !*json_string_value(e)) {
                fprintf(stderr, "error %d without a message: %.*s\n", status,
                        (int)len, (const char *)body);
                abort();
            }
        }
        json_decref(doc);
    } else if (status >= 400) {
        fprintf(stderr, "error %d is not JSON (%s)\n", status, content_type);
        abort();
    }
    current = NULL;
    request_free(r);
}

void
__wrap_mcos_http_respond_json(struct mcos_http_request *r, int status,
                              json_t *doc)
{
    char *text;

    if (!doc) {
        /* The real server answers 500 "out of memory": a document that
         * could not be built (say, a string that is not UTF-8). */
        fprintf(stderr, "HTTP %d with a NULL document (%s %s)\n", status,
                r->method, r->path);
        abort();
    }
    text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(doc);
    if (!text) {
        abort();
    }
    __wrap_mcos_http_respond(r, status, "application/json", text,
                             strlen(text));
    free(text);
}

void
__wrap_mcos_http_respond_error(struct mcos_http_request *r, int status,
                               const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    if (status < 400) {
        abort();
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    mcos_utf8_sanitize(msg); /* as the real one does */
    __wrap_mcos_http_respond_json(r, status, json_pack("{s:s}", "error", msg));
}

/* ------------------------------------------------------------------------
 * The brain: brain_rig.h's, with its HTTP API on the replaced server. */

static unsigned inputs;

static void
brain_stop(void)
{
    rig_stop();
    if (n_routes) {
        abort(); /* closing the brain closes its HTTP server */
    }
}

static void
brain_start(void)
{
    rig_start("http://127.0.0.1:1"); /* never opened */
    if (n_routes == 0) {
        abort(); /* no API */
    }
}

static void
init_once(void)
{
    verbose = getenv("FUZZ_VERBOSE") != NULL;
    rig_init("fuzz_brain_http");
}

/* ------------------------------------------------------------------------
 * Requests. */

static bool
path_matches(const struct route *rt, const char *path)
{
    size_t n = strlen(rt->path);

    if (!strcmp(rt->path, path)) {
        return true;
    }
    return rt->prefix && !strncmp(rt->path, path, n) &&
           (path[n] == '/' || (n && rt->path[n - 1] == '/'));
}

/* Routes and answers one request; returns its status. */
static int
serve(const char *method, const char *target, const char *body, size_t len)
{
    struct mcos_http_request *r = calloc(1, sizeof *r);
    const char *q = strchr(target, '?');
    const struct route *best = NULL;
    bool other_method = false;

    if (!r) {
        abort();
    }
    r->method = strdup(method);
    r->path = q ? strndup(target, (size_t)(q - target)) : strdup(target);
    r->query = strdup(q ? q + 1 : "");
    r->body = malloc(len + 1);
    if (!r->method || !r->path || !r->query || !r->body) {
        abort();
    }
    if (len) {
        memcpy(r->body, body, len);
    }
    r->body[len] = '\0';
    r->body_len = len;

    for (size_t i = 0; i < n_routes; i++) {
        if (!path_matches(&routes[i], r->path)) {
            continue;
        }
        if (strcmp(routes[i].method, method)) {
            other_method = true;
        } else if (!best || strlen(routes[i].path) > strlen(best->path)) {
            best = &routes[i];
        }
    }
    current = r;
    answers = 0;
    last_status = 0;
    if (best) {
        best->cb(r, best->arg);
    } else if (other_method) {
        /* Stand-ins for common/http.c's fallbacks, with their messages. */
        __wrap_mcos_http_respond_error(
            r, 405, "method %s is not allowed on %s", method, target);
    } else {
        __wrap_mcos_http_respond_error(r, 404, "no such resource: %s %s",
                                       method, target);
    }
    if (answers != 1) {
        fprintf(stderr, "%s %s: answered %u times\n", method, target, answers);
        abort();
    }
    if (verbose) {
        fprintf(stderr, "%s %s -> %d\n", method, target, last_status);
    }
    uv_run(&rig.loop, UV_RUN_NOWAIT);
    return last_status;
}

static void
health(void)
{
    static const char route[] =
        "{\"ns\": \"m\", \"blocks\": [\"b10c0\", \"b10c1\", \"0xb10c2\"]}";

    if (serve("POST", "/v1/route", route, strlen(route)) != 200 ||
        serve("GET", "/v1/status", "", 0) != 200) {
        fprintf(stderr, "the brain no longer serves\n");
        abort();
    }
}

static const struct {
    const char *method;
    const char *path;
} templates[16] = {
    {"GET", "/v1/nodes"},
    {"GET", "/v1/status"},
    {"POST", "/v1/sync"},
    {"POST", "/v1/route"},
    {"POST", "/v1/replicate"},
    {"GET", "/v1/replication"},
    {"GET", "/v1/config"},
    {"PUT", "/v1/config/"},
    {"GET", "/metrics"},
    {"POST", "/v1/status"},
    {"GET", "/v1/route"},
    {"DELETE", "/v1/nodes"},
    {"GET", "/v1/bogus"},
    {"PUT", "/v1/config"},
    {"GET", "/"},
    {NULL, NULL}, /* raw: "METHOD /path" */
};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool started;
    const uint8_t *nl;
    char method[8], target[1024];
    const char *line;
    size_t line_len, t;

    if (!started) {
        init_once();
        started = true;
    }
    if (size == 0) {
        return 0;
    }
    nl = memchr(data + 1, '\n', size - 1);
    line = (const char *)data + 1;
    line_len = nl ? (size_t)(nl - data) - 1 : size - 1;
    /* What an HTTP request line can carry in its target. */
    for (size_t i = 0; i < line_len; i++) {
        if ((uint8_t)line[i] < 0x21 || (uint8_t)line[i] == 0x7f) {
            if (!(templates[data[0] & 15].method == NULL && line[i] == ' ')) {
                return -1;
            }
        }
    }
    t = data[0] & 15;
    if (templates[t].method) {
        snprintf(method, sizeof method, "%s", templates[t].method);
        if (strlen(templates[t].path) + line_len >= sizeof target) {
            return -1;
        }
        snprintf(target, sizeof target, "%s%.*s", templates[t].path,
                 (int)line_len, line);
    } else {
        const char *sp = memchr(line, ' ', line_len);
        size_t m = sp ? (size_t)(sp - line) : 0;

        if (!sp || m == 0 || m >= sizeof method ||
            line_len - m - 1 >= sizeof target || m + 1 == line_len ||
            sp[1] != '/' || memchr(sp + 1, ' ', line_len - m - 1)) {
            return -1;
        }
        for (size_t i = 0; i < m; i++) {
            if (line[i] < 'A' || line[i] > 'Z') {
                return -1;
            }
        }
        snprintf(method, sizeof method, "%.*s", (int)m, line);
        snprintf(target, sizeof target, "%.*s", (int)(line_len - m - 1),
                 sp + 1);
    }

    if (inputs++ % RESET_EVERY == 0) {
        brain_stop();
        brain_start();
    }
    serve(method, target, nl ? (const char *)nl + 1 : "",
          nl ? size - (size_t)(nl - data) - 1 : 0);
    if (inputs % HEALTH_EVERY == 0) {
        health();
    }
    return 0;
}
