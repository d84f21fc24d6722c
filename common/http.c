#include "http.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>

#include "bus.h"
#include "error.h"
#include "log.h"

MCOS_LOG_MODULE(http);

struct route {
    struct mcos_http_server *srv; /* owner */
    char method[8];               /* GET, POST, ... */
    char *path;                   /* path it serves (owned) */
    bool prefix;                  /* and everything below it */
    mcos_http_cb cb;              /* user callback */
    void *arg;                    /* its argument */
};

struct mcos_http_request {
    struct mcos_http_request *next; /* handoff link */
    nng_aio *aio;                   /* nng's handler aio, finished by us */
    struct route *route;            /* matched route */
    char *method;                   /* copied from the request */
    char *path;                     /* without the query */
    char *query;                    /* after '?', or "" */
    char *body;                     /* NUL-terminated copy */
    size_t body_len;                /* its length */
};

struct mcos_http_server {
    uv_async_t async;                /* wakes the loop */
    pthread_mutex_t mutex;           /* guards queue and closing */
    struct mcos_http_request *queue; /* requests waiting for the loop */
    bool closing;                    /* refuse new requests */
    nng_http_server *http;           /* nng's server */
    struct route **routes;           /* owned */
    size_t n_routes;                 /* count */
    char url[256];                   /* for messages */
};

static void
request_free(struct mcos_http_request *r)
{
    free(r->method);
    free(r->path);
    free(r->query);
    free(r->body);
    free(r);
}

/* Completes nng's aio with a response. */
static void
finish(nng_aio *aio, int status, const char *ctype, const void *body,
       size_t len)
{
    nng_http_res *res;

    if (nng_http_res_alloc(&res)) {
        nng_aio_finish(aio, NNG_ENOMEM);
        return;
    }
    nng_http_res_set_status(res, (uint16_t)status);
    nng_http_res_set_header(res, "Content-Type", ctype);
    nng_http_res_set_header(res, "Cache-Control", "no-store");
    if (len && nng_http_res_copy_data(res, body, len)) {
        nng_http_res_free(res);
        nng_aio_finish(aio, NNG_ENOMEM);
        return;
    }
    nng_aio_set_output(aio, 0, res);
    nng_aio_finish(aio, 0);
}

/* nng thread: copy the request and hand it to the loop. */
static void
handler_cb(nng_aio *aio)
{
    nng_http_req *req = nng_aio_get_input(aio, 0);
    nng_http_handler *h = nng_aio_get_input(aio, 1);
    struct route *route = nng_http_handler_get_data(h);
    struct mcos_http_server *srv = route->srv;
    struct mcos_http_request *r = calloc(1, sizeof *r);
    const char *uri = nng_http_req_get_uri(req);
    const char *q = strchr(uri, '?');
    void *data;
    size_t len;

    if (!r) {
        nng_aio_finish(aio, NNG_ENOMEM);
        return;
    }
    nng_http_req_get_data(req, &data, &len);
    r->aio = aio;
    r->route = route;
    r->method = strdup(nng_http_req_get_method(req));
    r->path = q ? strndup(uri, (size_t)(q - uri)) : strdup(uri);
    r->query = strdup(q ? q + 1 : "");
    r->body = malloc(len + 1);
    if (!r->method || !r->path || !r->query || !r->body) {
        request_free(r);
        nng_aio_finish(aio, NNG_ENOMEM);
        return;
    }
    if (len) {
        memcpy(r->body, data, len);
    }
    r->body[len] = '\0';
    r->body_len = len;

    pthread_mutex_lock(&srv->mutex);
    if (srv->closing) {
        pthread_mutex_unlock(&srv->mutex);
        request_free(r);
        finish(aio, 503, "application/json", "{\"error\":\"shutting down\"}",
               25);
        return;
    }
    r->next = srv->queue;
    srv->queue = r;
    pthread_mutex_unlock(&srv->mutex);
    uv_async_send(&srv->async);
}

static void
async_cb(uv_async_t *async)
{
    struct mcos_http_server *srv = async->data;
    struct mcos_http_request *list, *rev = NULL;

    pthread_mutex_lock(&srv->mutex);
    list = srv->queue;
    srv->queue = NULL;
    pthread_mutex_unlock(&srv->mutex);
    /* The queue is LIFO; answer in arrival order. */
    while (list) {
        struct mcos_http_request *next = list->next;

        list->next = rev;
        rev = list;
        list = next;
    }
    while (rev) {
        struct mcos_http_request *next = rev->next;

        rev->route->cb(rev, rev->route->arg);
        rev = next;
    }
}

int
mcos_http_server_create(uv_loop_t *loop, const char *url,
                        struct mcos_http_server **out, char *err,
                        size_t errlen)
{
    struct mcos_http_server *srv = calloc(1, sizeof *srv);
    nng_url *u;
    int r;

    if (!srv) {
        return -ENOMEM;
    }
    snprintf(srv->url, sizeof srv->url, "%s", url);
    r = nng_url_parse(&u, url);
    if (r || strcmp(u->u_scheme, "http")) {
        mcos_seterr(err, errlen,
                    "bad HTTP listen address '%s' (want http://HOST:PORT)",
                    url);
        if (!r) {
            nng_url_free(u);
        }
        free(srv);
        return -EINVAL;
    }
    r = nng_http_server_hold(&srv->http, u);
    nng_url_free(u);
    if (r) {
        mcos_seterr(err, errlen, "cannot create HTTP server for %s: %s", url,
                    nng_strerror(r));
        free(srv);
        return mcos_bus_err(r);
    }
    pthread_mutex_init(&srv->mutex, NULL);
    r = uv_async_init(loop, &srv->async, async_cb);
    if (r) {
        mcos_seterr(err, errlen, "uv_async_init: %s", uv_strerror(r));
        nng_http_server_release(srv->http);
        pthread_mutex_destroy(&srv->mutex);
        free(srv);
        return r;
    }
    srv->async.data = srv;
    *out = srv;
    return 0;
}

int
mcos_http_server_route(struct mcos_http_server *srv, const char *method,
                       const char *path, bool prefix, mcos_http_cb cb,
                       void *arg)
{
    struct route *route = calloc(1, sizeof *route);
    struct route **grown;
    nng_http_handler *h;
    int r;

    if (!route) {
        return -ENOMEM;
    }
    grown = realloc(srv->routes, (srv->n_routes + 1) * sizeof *grown);
    if (!grown) {
        free(route);
        return -ENOMEM;
    }
    srv->routes = grown;
    route->srv = srv;
    route->cb = cb;
    route->arg = arg;
    route->prefix = prefix;
    snprintf(route->method, sizeof route->method, "%s", method);
    route->path = strdup(path);
    if (!route->path) {
        free(route);
        return -ENOMEM;
    }
    r = nng_http_handler_alloc(&h, path, handler_cb);
    if (r) {
        free(route->path);
        free(route);
        return mcos_bus_err(r);
    }
    nng_http_handler_set_method(h, method);
    nng_http_handler_set_data(h, route, NULL);
    if (prefix) {
        nng_http_handler_set_tree(h);
    }
    nng_http_handler_collect_body(h, true, MCOS_HTTP_MAX_BODY);
    r = nng_http_server_add_handler(srv->http, h);
    if (r) {
        nng_http_handler_free(h);
        free(route->path);
        free(route);
        return mcos_bus_err(r);
    }
    srv->routes[srv->n_routes++] = route;
    return 0;
}

/* Answers paths and methods no route claims with JSON, like every other
 * error of the API, instead of nng's HTML pages. */
static void
not_found(struct mcos_http_request *req, void *arg)
{
    mcos_http_respond_error(req, 404, "no such resource: %s %s",
                            mcos_http_request_method(req),
                            mcos_http_request_path(req));
}

static void
method_not_allowed(struct mcos_http_request *req, void *arg)
{
    mcos_http_respond_error(req, 405, "method %s is not allowed on %s",
                            mcos_http_request_method(req),
                            mcos_http_request_path(req));
}

static bool
route_exists(const struct mcos_http_server *srv, const char *method,
             const char *path)
{
    for (size_t i = 0; i < srv->n_routes; i++) {
        if (!strcmp(srv->routes[i]->method, method) &&
            !strcmp(srv->routes[i]->path, path)) {
            return true;
        }
    }
    return false;
}

static int
add_fallbacks(struct mcos_http_server *srv)
{
    static const char *const methods[] = {"GET", "POST", "PUT", "DELETE",
                                          "PATCH"};
    size_t n = srv->n_routes;
    int r;

    for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
        /* Every other method on a path we serve: 405. */
        for (size_t i = 0; i < n; i++) {
            const struct route *rt = srv->routes[i];

            if (route_exists(srv, methods[m], rt->path)) {
                continue;
            }
            r = mcos_http_server_route(srv, methods[m], rt->path, rt->prefix,
                                       method_not_allowed, NULL);
            if (r) {
                return r;
            }
        }
        /* Everything else: 404. */
        if (!route_exists(srv, methods[m], "/")) {
            r = mcos_http_server_route(srv, methods[m], "/", true, not_found,
                                       NULL);
            if (r) {
                return r;
            }
        }
    }
    return 0;
}

int
mcos_http_server_start(struct mcos_http_server *srv, char *err, size_t errlen)
{
    int r = add_fallbacks(srv);

    if (r) {
        mcos_seterr(err, errlen, "cannot add fallback routes: %s",
                    mcos_strerror(r));
        return r;
    }
    r = nng_http_server_start(srv->http);

    if (r) {
        mcos_seterr(err, errlen, "cannot listen on %s: %s", srv->url,
                    nng_strerror(r));
        return mcos_bus_err(r);
    }
    return 0;
}

static void
closed_cb(uv_handle_t *h)
{
    struct mcos_http_server *srv = h->data;

    for (size_t i = 0; i < srv->n_routes; i++) {
        free(srv->routes[i]->path);
        free(srv->routes[i]);
    }
    free(srv->routes);
    pthread_mutex_destroy(&srv->mutex);
    free(srv);
}

void
mcos_http_server_close(struct mcos_http_server *srv)
{
    struct mcos_http_request *list;

    if (!srv) {
        return;
    }
    pthread_mutex_lock(&srv->mutex);
    srv->closing = true;
    list = srv->queue;
    srv->queue = NULL;
    pthread_mutex_unlock(&srv->mutex);
    while (list) {
        struct mcos_http_request *next = list->next;

        finish(list->aio, 503, "application/json",
               "{\"error\":\"shutting down\"}", 25);
        request_free(list);
        list = next;
    }
    /* Stopping waits for connections to close, so no handler runs after
     * this; the routes can then be freed. */
    nng_http_server_stop(srv->http);
    nng_http_server_release(srv->http);
    uv_close((uv_handle_t *)&srv->async, closed_cb);
}

const char *
mcos_http_request_method(const struct mcos_http_request *r)
{
    return r->method;
}

const char *
mcos_http_request_path(const struct mcos_http_request *r)
{
    return r->path;
}

const char *
mcos_http_request_query(const struct mcos_http_request *r)
{
    return r->query;
}

const char *
mcos_http_request_body(const struct mcos_http_request *r, size_t *len)
{
    *len = r->body_len;
    return r->body;
}

void
mcos_http_respond(struct mcos_http_request *r, int status,
                  const char *content_type, const void *body, size_t len)
{
    finish(r->aio, status, content_type, body, len);
    request_free(r);
}

void
mcos_http_respond_json(struct mcos_http_request *r, int status, json_t *doc)
{
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);

    json_decref(doc);
    if (!text) {
        mcos_http_respond(r, 500, "application/json",
                          "{\"error\":\"out of memory\"}", 25);
        return;
    }
    /* A trailing newline keeps shells and curl output tidy. */
    size_t len = strlen(text);
    char *with_nl = realloc(text, len + 2);

    if (with_nl) {
        text = with_nl;
        text[len++] = '\n';
        text[len] = '\0';
    }
    mcos_http_respond(r, status, "application/json", text, len);
    free(text);
}

void
mcos_http_respond_error(struct mcos_http_request *r, int status,
                        const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* Not UTF-8, jansson would refuse it and the answer would be a 500
     * "out of memory" instead of the error. */
    mcos_utf8_sanitize(msg);
    mcos_http_respond_json(r, status, json_pack("{s:s}", "error", msg));
}

/* Length of the valid UTF-8 sequence at `s`, or 0. */
static size_t
utf8_len(const unsigned char *s)
{
    uint32_t v;
    size_t n;

    if (s[0] < 0x80) {
        return 1;
    }
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        n = 2;
        v = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        n = 3;
        v = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        n = 4;
        v = s[0] & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) { /* the NUL ends it too */
            return 0;
        }
        v = v << 6 | (s[i] & 0x3f);
    }
    if ((n == 3 && v < 0x800) || (n == 4 && v < 0x10000) || v > 0x10ffff ||
        (v >= 0xd800 && v <= 0xdfff)) {
        return 0;
    }
    return n;
}

size_t
mcos_utf8_sanitize(char *s)
{
    size_t replaced = 0, n;

    for (unsigned char *p = (unsigned char *)s; *p; p += n) {
        n = utf8_len(p);
        if (n == 0) {
            *p = '?';
            n = 1;
            replaced++;
        }
    }
    return replaced;
}

int
mcos_http_fetch(const char *method, const char *url, const char *body,
                size_t body_len, unsigned timeout_ms, int *status, char **resp,
                size_t *resp_len, char *err, size_t errlen)
{
    nng_url *u = NULL;
    nng_http_client *cli = NULL;
    nng_http_req *req = NULL;
    nng_http_res *res = NULL;
    nng_aio *aio = NULL;
    void *data;
    size_t len;
    int r;

    r = nng_url_parse(&u, url);
    if (r || strcmp(u->u_scheme, "http")) {
        mcos_seterr(err, errlen, "bad URL '%s' (want http://HOST:PORT/...)",
                    url);
        r = NNG_EINVAL;
        goto out;
    }
    if ((r = nng_http_client_alloc(&cli, u)) ||
        (r = nng_http_req_alloc(&req, u)) || (r = nng_http_res_alloc(&res)) ||
        (r = nng_aio_alloc(&aio, NULL, NULL))) {
        mcos_seterr(err, errlen, "%s", nng_strerror(r));
        goto out;
    }
    nng_http_req_set_method(req, method);
    if (body) {
        nng_http_req_set_header(req, "Content-Type", "application/json");
        /* nng refuses to copy zero bytes; an empty body only needs its
         * length said. */
        r = body_len ? nng_http_req_copy_data(req, body, body_len)
                     : nng_http_req_set_header(req, "Content-Length", "0");
        if (r) {
            mcos_seterr(err, errlen, "%s", nng_strerror(r));
            goto out;
        }
    }
    nng_aio_set_timeout(aio, (nng_duration)timeout_ms);
    nng_http_client_transact(cli, req, res, aio);
    nng_aio_wait(aio);
    r = nng_aio_result(aio);
    if (r) {
        mcos_seterr(err, errlen, "%s: %s", url, nng_strerror(r));
        goto out;
    }
    *status = nng_http_res_get_status(res);
    nng_http_res_get_data(res, &data, &len);
    *resp = malloc(len + 1);
    if (!*resp) {
        r = NNG_ENOMEM;
        goto out;
    }
    if (len) {
        memcpy(*resp, data, len);
    }
    (*resp)[len] = '\0';
    if (resp_len) {
        *resp_len = len;
    }
out:
    /* nng's free functions do not all accept NULL. */
    if (aio) {
        nng_aio_free(aio);
    }
    if (res) {
        nng_http_res_free(res);
    }
    if (req) {
        nng_http_req_free(req);
    }
    if (cli) {
        nng_http_client_free(cli);
    }
    if (u) {
        nng_url_free(u);
    }
    return mcos_bus_err(r);
}
