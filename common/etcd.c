#include "etcd.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "error.h"
#include "log.h"

MCOS_LOG_MODULE(etcd);

#define DEFAULT_REQUEST_TIMEOUT_MS 5000
#define DEFAULT_CONNECT_TIMEOUT_MS 1000
#define DEFAULT_WATCH_IDLE_MS      30000
#define DEFAULT_MAX_RESPONSE       (64u << 20)

/* What etcd adds to a request's key and value before it compares the size
 * with --max-request-bytes (protobuf framing, the raft request header).
 * Generous, so that what we let through is never refused for size. */
#define REQUEST_OVERHEAD 64

/* Room for one message (an error naming endpoints, op and key). */
#define MSG_LEN 1024

/* Longest endpoint URL, path excluded. */
#define MAX_URL 256

/* ------------------------------------------------------------------------
 * Small buffers and an arena for results. */

struct buf {
    char *p;    /* bytes, NUL-terminated once allocated */
    size_t len; /* bytes used */
    size_t cap; /* bytes allocated */
};

static int
buf_append(struct buf *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        char *p;

        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        p = realloc(b->p, cap);
        if (!p) {
            return -ENOMEM;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static void
buf_free(struct buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* Everything a result points to, freed in one go after the callback. */
struct arena {
    void **ptrs;   /* blocks allocated */
    size_t n;      /* how many */
    size_t cap;    /* room in ptrs */
    char why[256]; /* why decoding failed, for the message */
};

static void *
arena_alloc(struct arena *a, size_t size)
{
    void *m;

    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 16;
        void **p = realloc(a->ptrs, cap * sizeof *p);

        if (!p) {
            return NULL;
        }
        a->ptrs = p;
        a->cap = cap;
    }
    m = calloc(1, size ? size : 1);
    if (m) {
        a->ptrs[a->n++] = m;
    }
    return m;
}

static char *
arena_strdup(struct arena *a, const char *s)
{
    size_t n = strlen(s);
    char *p = arena_alloc(a, n + 1);

    if (p) {
        memcpy(p, s, n + 1);
    }
    return p;
}

static void
arena_free(struct arena *a)
{
    for (size_t i = 0; i < a->n; i++) {
        free(a->ptrs[i]);
    }
    free(a->ptrs);
    memset(a, 0, sizeof *a);
}

/* Records why a document did not decode and returns -EBADMSG. */
static int bad(struct arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
bad(struct arena *a, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(a->why, sizeof a->why, fmt, ap);
    va_end(ap);
    return -EBADMSG;
}

/* ------------------------------------------------------------------------
 * Base64 (etcd's JSON carries keys and values as standard base64). */

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Encodes into a malloc'd NUL-terminated string. */
static char *
b64_encode(const void *data, size_t len, size_t *out_len)
{
    const unsigned char *s = data;
    size_t n = 4 * ((len + 2) / 3);
    char *out = malloc(n + 1);
    size_t o = 0;

    if (!out) {
        return NULL;
    }
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;

        if (i + 1 < len) {
            v |= (uint32_t)s[i + 1] << 8;
        }
        if (i + 2 < len) {
            v |= s[i + 2];
        }
        out[o++] = b64chars[(v >> 18) & 63];
        out[o++] = b64chars[(v >> 12) & 63];
        out[o++] = i + 1 < len ? b64chars[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? b64chars[v & 63] : '=';
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

static int
b64_value(char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    return -1;
}

/* Decodes into `out` (room for len * 3 / 4 + 1 bytes), padding optional.
 * Returns the decoded length or -EBADMSG. */
static ssize_t
b64_decode(const char *s, size_t len, unsigned char *out)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;

    while (len > 0 && s[len - 1] == '=') {
        len--;
    }
    if (len % 4 == 1) {
        return -EBADMSG;
    }
    for (size_t i = 0; i < len; i++) {
        int v = b64_value(s[i]);

        if (v < 0) {
            return -EBADMSG;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return (ssize_t)o;
}

/* ------------------------------------------------------------------------
 * Client state. */

/* Kinds of HTTP request; all share struct req and its completion path. */
enum req_kind {
    REQ_USER,      /* a caller's one-shot request: result to its cb */
    REQ_MEMBER,    /* one endpoint's part of mcos_etcd_status */
    REQ_KEEPALIVE, /* a keepalive's renewal */
    REQ_PROBE,     /* a silent watch's liveness probe */
    REQ_WATCH,     /* a watch's stream */
};

struct req;
typedef int (*parse_fn)(json_t *doc, struct mcos_etcd_result *,
                        struct arena *);

struct req {
    struct req *next;       /* link in e->reqs (USER, MEMBER) */
    struct req **prevp;     /* back link; NULL when not linked */
    struct mcos_etcd *e;    /* owner */
    enum req_kind kind;     /* what completion does with it */
    CURL *easy;             /* the transfer; NULL once detached */
    bool in_multi;          /* added to e->multi */
    const char *path;       /* "/v3/kv/put" */
    char *body;             /* JSON request, kept for retries */
    size_t body_len;        /* its length */
    char what[160];         /* "put \"key\"", for messages */
    char url[MAX_URL + 64]; /* endpoint + path of this attempt */
    size_t ep;              /* endpoint index of this attempt */
    size_t tried;           /* endpoints tried so far */
    bool pinned;            /* never move to another endpoint */
    uint64_t deadline;      /* loop ms the whole request ends, 0: none */
    uint64_t sent_at;       /* loop ms of the first attempt */
    struct buf resp;        /* the answer (or a non-200 stream's body) */
    int write_err;          /* why the write callback stopped curl */
    char curl_err[CURL_ERROR_SIZE]; /* curl's detail for the last error */
    char notes[MSG_LEN]; /* failed attempts, for the final message */
    parse_fn parse;      /* decodes a 200 answer into the result */
    mcos_etcd_cb cb;     /* USER: the caller's callback */
    void *arg;           /* its argument */
    void *owner;         /* watch, keepalive or status aggregate */
    size_t index;        /* MEMBER: slot in the aggregate */
};

/* A socket curl asked us to watch. */
struct sock {
    uv_poll_t poll;      /* readiness of fd */
    curl_socket_t fd;    /* curl's socket */
    struct mcos_etcd *e; /* owner */
    int events;          /* UV_READABLE/UV_WRITABLE curl wants */
    bool closed;         /* curl removed it; freed when closed */
    struct sock *next;   /* link in e->socks */
    struct sock **prevp; /* back link */
};

struct mcos_etcd_watch {
    struct mcos_etcd_watch *next;   /* link in e->watches */
    struct mcos_etcd_watch **prevp; /* back link; NULL once released */
    struct mcos_etcd *e;            /* owner */
    struct req *req;                /* the stream */
    struct req *probe;              /* liveness probe in flight, or NULL */
    uv_timer_t idle;                /* checks for silence */
    char *key;                      /* copy of the key, for the probe */
    size_t key_len;                 /* its length */
    bool prefix;                    /* the watch covers a prefix */
    int64_t next_rev;               /* first revision not yet delivered */
    uint64_t last_rx;               /* loop ms of the last byte received */
    struct buf in;                  /* stream bytes not yet parsed */
    size_t in_off;                  /* bytes of `in` already parsed */
    bool pending;                   /* `in` holds a complete line */
    bool created;                   /* the server confirmed the watch */
    bool dead;                      /* released: no more callbacks */
    mcos_etcd_cb cb;                /* caller's callback */
    void *arg;                      /* its argument */
};

struct mcos_etcd_keepalive {
    struct mcos_etcd_keepalive *next;   /* link in e->keepalives */
    struct mcos_etcd_keepalive **prevp; /* back link; NULL once released */
    struct mcos_etcd *e;                /* owner */
    int64_t id;                         /* the lease */
    int64_t ttl_s;                      /* TTL last granted */
    uint32_t interval_ms;               /* fixed period, 0: ttl / 3 */
    uint64_t deadline;  /* loop ms after which the lease is presumed gone */
    uint64_t next_send; /* loop ms of the next renewal */
    uv_timer_t timer;   /* fires at min(next_send, deadline) */
    struct req *req;    /* renewal in flight, or NULL */
    char last_err[MSG_LEN]; /* why the last renewal failed */
    bool dead;              /* released: no more callbacks */
    mcos_etcd_cb cb;        /* the caller's lost callback */
    void *arg;              /* its argument */
};

/* mcos_etcd_status: one request per endpoint, one callback for all. */
struct status_agg {
    size_t left;                      /* parts not yet answered */
    size_t n;                         /* endpoints */
    struct mcos_etcd_member *members; /* one per endpoint */
    struct arena arena;               /* their strings */
    int64_t revision;                 /* from the first that answered */
    mcos_etcd_cb cb;                  /* the caller's callback */
    void *arg;                        /* its argument */
};

struct mcos_etcd {
    uv_loop_t *loop;            /* the loop everything runs on */
    CURLM *multi;               /* every transfer; NULL once closed */
    uv_timer_t timer;           /* curl's timeout */
    struct curl_slist *headers; /* Content-Type, no Expect */
    char *endpoints[MCOS_ETCD_MAX_ENDPOINTS]; /* normalised URLs */
    size_t n_endpoints;                       /* how many */
    size_t current;                           /* the one tried first */
    struct mcos_etcd_options opt;             /* with defaults filled in */
    char *tls[3];     /* copies of opt's ca, cert and key files, or NULL */
    struct req *reqs; /* one-shot requests in flight */
    struct mcos_etcd_watch *watches;        /* live watches */
    struct mcos_etcd_keepalive *keepalives; /* live keepalives */
    struct sock *socks;                     /* sockets being polled */
    struct mcos_etcd_stats stats;           /* counters */
    struct mcos_ratelimit rl; /* for repeated transient warnings */
    bool closing;             /* mcos_etcd_close was called */
    char last_error[MSG_LEN]; /* see mcos_etcd_last_error */
};

static void process(struct mcos_etcd *e);
static void req_finish(struct req *r, int status, json_t *doc,
                       const char *msg);

/* Records a synchronous failure for mcos_etcd_last_error. */
static int fail(struct mcos_etcd *e, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(struct mcos_etcd *e, int err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(e->last_error, sizeof e->last_error, fmt, ap);
    va_end(ap);
    return err;
}

/* A key as it appears in messages: quoted, escaped, shortened. */
static void
fmt_key(const void *key, size_t len, char *out, size_t outlen)
{
    const unsigned char *k = key;
    size_t o = 0;

    if (outlen < 16) {
        snprintf(out, outlen, "%s", "\"...\"");
        return;
    }
    out[o++] = '"';
    for (size_t i = 0; i < len; i++) {
        if (o + 9 >= outlen || i >= 64) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (k[i] >= 0x20 && k[i] < 0x7f && k[i] != '"' && k[i] != '\\') {
            out[o++] = (char)k[i];
        } else {
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", k[i]);
        }
    }
    out[o++] = '"';
    out[o] = '\0';
}

/* ------------------------------------------------------------------------
 * Error translation: the only place curl, HTTP and etcd errors become
 * errno values.  docs/etcd.md has the same table. */

static int
curl_errno(CURLcode rc, long os_errno)
{
    switch (rc) {
    case CURLE_OK:
        return 0;
    case CURLE_COULDNT_CONNECT:
        switch (os_errno) {
        case EHOSTUNREACH:
        case ENETUNREACH:
        case ETIMEDOUT:
        case EADDRNOTAVAIL:
        case ECONNRESET:
            return -(int)os_errno;
        default:
            return -ECONNREFUSED;
        }
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return -EHOSTUNREACH;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return -ECONNRESET;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return -EPROTO;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLE_URL_MALFORMAT:
        return -EINVAL;
    case CURLE_FILESIZE_EXCEEDED:
        return -EMSGSIZE;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
        return -EACCES;
    default:
        return -EIO;
    }
}

/* etcd's messages say more than its gRPC codes (a compacted revision and a
 * future one are both OUT_OF_RANGE), so they are matched first. */
static const struct {
    const char *needle; /* substring of etcd's message */
    int err;            /* what it means here */
} etcd_messages[] = {
    {"lease not found", -ENOENT},
    {"required revision has been compacted", -ESTALE},
    {"required revision is a future revision", -ERANGE},
    {"request is too large", -EMSGSIZE},
    {"permission denied", -EACCES},
    {"authentication failed", -EACCES},
    {"invalid auth token", -EACCES},
    {"user name is empty", -EACCES},
    {"too many requests", -EBUSY},
    {"no leader", -EAGAIN},
    {"leader changed", -EAGAIN},
    {"not capable", -ENOTSUP},
    {"request timed out", -ETIMEDOUT},
    {"database space exceeded", -ENOSPC},
    {"lease already exists", -EEXIST},
    {"key not found", -ENOENT},
};

static int
grpc_errno(long code, const char *message)
{
    for (size_t i = 0;
         message && i < sizeof etcd_messages / sizeof etcd_messages[0]; i++) {
        if (strstr(message, etcd_messages[i].needle)) {
            return etcd_messages[i].err;
        }
    }
    switch (code) {
    case 1: /* CANCELLED */
        return -ECANCELED;
    case 3:  /* INVALID_ARGUMENT */
    case 11: /* OUT_OF_RANGE */
        return -EINVAL;
    case 4: /* DEADLINE_EXCEEDED */
        return -ETIMEDOUT;
    case 5: /* NOT_FOUND */
        return -ENOENT;
    case 6: /* ALREADY_EXISTS */
        return -EEXIST;
    case 7:  /* PERMISSION_DENIED */
    case 16: /* UNAUTHENTICATED */
        return -EACCES;
    case 8: /* RESOURCE_EXHAUSTED */
        return -ENOSPC;
    case 9: /* FAILED_PRECONDITION */
        return -EPROTO;
    case 10: /* ABORTED */
        return -ECONNABORTED;
    case 12: /* UNIMPLEMENTED */
        return -ENOTSUP;
    case 14: /* UNAVAILABLE */
        return -EAGAIN;
    default: /* UNKNOWN, INTERNAL, DATA_LOSS, ... */
        return -EIO;
    }
}

/* For answers that are not etcd's JSON (a proxy, the wrong server). */
static int
http_errno(long status)
{
    switch (status) {
    case 401:
    case 403:
        return -EACCES;
    case 404:
    case 405:
        return -EPROTONOSUPPORT;
    case 408:
    case 504:
        return -ETIMEDOUT;
    case 413:
        return -EMSGSIZE;
    case 429:
        return -EBUSY;
    case 503:
        return -EAGAIN;
    default:
        return status >= 500 ? -EIO : -EPROTO;
    }
}

/* Decodes an etcd error object: the flat {"error", "code", "message"} of
 * unary calls or the {"grpc_code", "http_code", "message"} of streams.
 * Returns the errno, or 0 when `obj` is not an error object. */
static int
etcd_error(json_t *obj, long http, char *why, size_t whylen)
{
    json_t *code = json_object_get(obj, "code");
    json_t *status = json_object_get(obj, "http_code");
    const char *msg = json_string_value(json_object_get(obj, "message"));

    if (!code) {
        code = json_object_get(obj, "grpc_code");
    }
    if (!msg) {
        msg = json_string_value(json_object_get(obj, "error"));
    }
    if (!msg && !json_is_integer(code)) {
        return 0;
    }
    if (!msg || !*msg) {
        msg = "(no message)";
    }
    if (json_is_integer(status)) {
        /* A stream's error says what status it stands for. */
        http = (long)json_integer_value(status);
    }
    snprintf(why, whylen, "%s (gRPC code %lld, HTTP %ld)", msg,
             json_is_integer(code) ? (long long)json_integer_value(code)
                                   : -1LL,
             http);
    return grpc_errno(
        json_is_integer(code) ? (long)json_integer_value(code) : 2, msg);
}

/* ------------------------------------------------------------------------
 * JSON helpers.  int64 fields arrive as strings (proto3 JSON), absent
 * fields mean zero. */

static int
get_i64(json_t *obj, const char *name, int64_t *out, struct arena *a)
{
    json_t *v = json_object_get(obj, name);

    *out = 0;
    if (!v || json_is_null(v)) {
        return 0;
    }
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        long long x;

        errno = 0;
        x = strtoll(s, &end, 10);
        if (*s && !*end && errno == 0) {
            *out = x;
            return 0;
        }
    }
    return bad(a, "field '%s' is not an int64", name);
}

/* Member ids are uint64 and often above INT64_MAX. */
static int
get_u64(json_t *obj, const char *name, uint64_t *out, struct arena *a)
{
    json_t *v = json_object_get(obj, name);

    *out = 0;
    if (!v || json_is_null(v)) {
        return 0;
    }
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        unsigned long long x;

        errno = 0;
        x = strtoull(s, &end, 10);
        if (*s >= '0' && *s <= '9' && !*end && errno == 0) {
            *out = x;
            return 0;
        }
    }
    return bad(a, "field '%s' is not a uint64", name);
}

static int
get_bool(json_t *obj, const char *name, bool *out, struct arena *a)
{
    json_t *v = json_object_get(obj, name);

    *out = false;
    if (!v || json_is_null(v)) {
        return 0;
    }
    if (!json_is_boolean(v)) {
        return bad(a, "field '%s' is not a boolean", name);
    }
    *out = json_is_true(v);
    return 0;
}

/* A base64 field, decoded into the arena (NUL-terminated). */
static int
get_bytes(json_t *obj, const char *name, const char **out, size_t *len,
          struct arena *a)
{
    json_t *v = json_object_get(obj, name);
    unsigned char *p;
    ssize_t n;

    *out = "";
    *len = 0;
    if (!v || json_is_null(v)) {
        return 0;
    }
    if (!json_is_string(v)) {
        return bad(a, "field '%s' is not a string", name);
    }
    p = arena_alloc(a, json_string_length(v) * 3 / 4 + 4);
    if (!p) {
        return -ENOMEM;
    }
    n = b64_decode(json_string_value(v), json_string_length(v), p);
    if (n < 0) {
        return bad(a, "field '%s' is not base64", name);
    }
    p[n] = '\0';
    *out = (const char *)p;
    *len = (size_t)n;
    return 0;
}

static int
get_header_revision(json_t *doc, int64_t *rev, struct arena *a)
{
    json_t *h = json_object_get(doc, "header");

    *rev = 0;
    if (!h) {
        return 0;
    }
    if (!json_is_object(h)) {
        return bad(a, "field 'header' is not an object");
    }
    return get_i64(h, "revision", rev, a);
}

static int
parse_kv(json_t *o, struct mcos_etcd_kv *kv, struct arena *a)
{
    int r;

    if (!json_is_object(o)) {
        return bad(a, "a key-value pair is not an object");
    }
    if ((r = get_bytes(o, "key", &kv->key, &kv->key_len, a)) ||
        (r = get_bytes(o, "value", &kv->value, &kv->value_len, a)) ||
        (r = get_i64(o, "create_revision", &kv->create_revision, a)) ||
        (r = get_i64(o, "mod_revision", &kv->mod_revision, a)) ||
        (r = get_i64(o, "version", &kv->version, a)) ||
        (r = get_i64(o, "lease", &kv->lease, a))) {
        return r;
    }
    return 0;
}

static int
parse_kvs(json_t *arr, const struct mcos_etcd_kv **out, size_t *n,
          struct arena *a)
{
    struct mcos_etcd_kv *kvs;
    size_t count;

    *out = NULL;
    *n = 0;
    if (!arr || json_is_null(arr)) {
        return 0;
    }
    if (!json_is_array(arr)) {
        return bad(a, "field 'kvs' is not an array");
    }
    count = json_array_size(arr);
    kvs = arena_alloc(a, count * sizeof *kvs);
    if (!kvs) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < count; i++) {
        int r = parse_kv(json_array_get(arr, i), &kvs[i], a);

        if (r) {
            return r;
        }
    }
    *out = kvs;
    *n = count;
    return 0;
}

/* Request bodies. */

static int
set_bytes(json_t *o, const char *name, const void *p, size_t len)
{
    size_t n;
    char *s = b64_encode(p, len, &n);
    int r;

    if (!s) {
        return -ENOMEM;
    }
    r = json_object_set_new(o, name, json_stringn(s, n));
    free(s);
    return r ? -ENOMEM : 0;
}

static int
set_i64(json_t *o, const char *name, int64_t v)
{
    char s[24];

    snprintf(s, sizeof s, "%" PRId64, v);
    return json_object_set_new(o, name, json_string(s)) ? -ENOMEM : 0;
}

static int
set_bool(json_t *o, const char *name, bool v)
{
    return json_object_set_new(o, name, json_boolean(v)) ? -ENOMEM : 0;
}

/* Sets key and range_end for one key, a prefix, or [key, end). */
static int
set_range(json_t *o, const void *key, size_t key_len, bool prefix,
          const void *end, size_t end_len)
{
    int r;

    if (prefix && key_len == 0) {
        /* Every key: from "\0" to the "\0" that means "no end". */
        if ((r = set_bytes(o, "key", "", 1)) ||
            (r = set_bytes(o, "range_end", "", 1))) {
            return r;
        }
        return 0;
    }
    if ((r = set_bytes(o, "key", key, key_len))) {
        return r;
    }
    if (prefix) {
        char *pe = malloc(key_len);
        size_t n;

        if (!pe) {
            return -ENOMEM;
        }
        n = mcos_etcd_prefix_end(key, key_len, pe);
        r = set_bytes(o, "range_end", pe, n);
        free(pe);
        return r;
    }
    if (end) {
        return set_bytes(o, "range_end", end, end_len);
    }
    return 0;
}

size_t
mcos_etcd_prefix_end(const char *key, size_t len, char *out)
{
    for (size_t i = len; i > 0; i--) {
        if ((unsigned char)key[i - 1] != 0xff) {
            memcpy(out, key, i);
            out[i - 1] = (char)((unsigned char)key[i - 1] + 1);
            return i;
        }
    }
    out[0] = '\0';
    return 1;
}

/* ------------------------------------------------------------------------
 * curl on the loop: sockets to uv_poll_t, the timeout to uv_timer_t. */

static void
handle_free_cb(uv_handle_t *h)
{
    free(h->data);
}

static void
sock_close(struct sock *s)
{
    *s->prevp = s->next;
    if (s->next) {
        s->next->prevp = s->prevp;
    }
    s->closed = true;
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, handle_free_cb);
}

static void
on_poll(uv_poll_t *h, int status, int events)
{
    struct sock *s = h->data;
    struct mcos_etcd *e = s->e;
    int flags = 0;
    int running;

    if (!e->multi) {
        return;
    }
    if (status < 0) {
        /* libuv stops the handle on POLLERR; curl reads SO_ERROR. */
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE) {
            flags |= CURL_CSELECT_IN;
        }
        if (events & UV_WRITABLE) {
            flags |= CURL_CSELECT_OUT;
        }
    }
    /* curl may remove the socket in here; `s` stays allocated until its
     * close callback, so s->closed can still be read. */
    curl_multi_socket_action(e->multi, s->fd, flags, &running);
    if (status < 0 && !s->closed && e->multi) {
        /* curl kept the socket with the same wish, so it will not ask
         * again: poll it again ourselves. */
        uv_poll_start(&s->poll, s->events, on_poll);
    }
    process(e);
}

static int
on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp,
               void *socketp)
{
    struct mcos_etcd *e = userp;
    struct sock *s = socketp;
    int events = 0;
    int r;

    LOG_DBG("curl socket %d: %s%s", (int)fd,
            what == CURL_POLL_REMOVE  ? "remove"
            : what == CURL_POLL_INOUT ? "in+out"
            : what == CURL_POLL_IN    ? "in"
                                      : "out",
            s ? "" : " (new)");
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            sock_close(s);
            if (e->multi) {
                curl_multi_assign(e->multi, fd, NULL);
            }
        }
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) {
            return -1;
        }
        r = uv_poll_init_socket(e->loop, &s->poll, fd);
        if (r) {
            LOG_ERR("cannot poll curl's socket %d: %s", (int)fd,
                    uv_strerror(r));
            free(s);
            return -1;
        }
        s->poll.data = s;
        s->fd = fd;
        s->e = e;
        s->next = e->socks;
        if (e->socks) {
            e->socks->prevp = &s->next;
        }
        s->prevp = &e->socks;
        e->socks = s;
        curl_multi_assign(e->multi, fd, s);
    }
    if (what & CURL_POLL_IN) {
        events |= UV_READABLE;
    }
    if (what & CURL_POLL_OUT) {
        events |= UV_WRITABLE;
    }
    s->events = events;
    r = uv_poll_start(&s->poll, events, on_poll);
    if (r) {
        LOG_ERR("cannot poll curl's socket %d: %s", (int)fd, uv_strerror(r));
        return -1;
    }
    return 0;
}

static void
on_timeout(uv_timer_t *t)
{
    struct mcos_etcd *e = t->data;
    int running;

    if (!e->multi) {
        return;
    }
    curl_multi_socket_action(e->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    process(e);
}

static int
on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct mcos_etcd *e = userp;

    if (e->closing) {
        return 0;
    }
    LOG_DBG("curl timer: %ld ms", timeout_ms);
    if (timeout_ms < 0) {
        uv_timer_stop(&e->timer);
    } else {
        /* Even 0 goes through the loop: curl must not be re-entered from
         * its own callback. */
        uv_timer_start(&e->timer, on_timeout, (uint64_t)timeout_ms, 0);
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Requests. */

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
    struct req *r = arg;
    size_t len = size * n;

    if (r->resp.len + len > r->e->opt.max_response_bytes) {
        r->write_err = -EMSGSIZE;
        return CURL_WRITEFUNC_ERROR;
    }
    if (buf_append(&r->resp, p, len)) {
        r->write_err = -ENOMEM;
        return CURL_WRITEFUNC_ERROR;
    }
    return len;
}

/* A watch stream: bytes are only buffered here; lines are parsed and
 * delivered from process(), outside curl, because callers may call back
 * into this module. */
static size_t
on_stream(char *p, size_t size, size_t n, void *arg)
{
    struct req *r = arg;
    struct mcos_etcd_watch *w = r->owner;
    size_t len = size * n;
    long http = 0;

    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &http);
    if (http != 200) {
        return on_body(p, size, n, arg);
    }
    w->last_rx = uv_now(r->e->loop);
    if (w->in.len - w->in_off + len > r->e->opt.max_response_bytes) {
        r->write_err = -EMSGSIZE;
        return CURL_WRITEFUNC_ERROR;
    }
    if (buf_append(&w->in, p, len)) {
        r->write_err = -ENOMEM;
        return CURL_WRITEFUNC_ERROR;
    }
    if (memchr(p, '\n', len)) {
        w->pending = true;
    }
    return len;
}

static void
req_detach(struct req *r)
{
    if (!r || !r->easy) {
        return;
    }
    if (r->in_multi && r->e->multi) {
        curl_multi_remove_handle(r->e->multi, r->easy);
    }
    r->in_multi = false;
    curl_easy_cleanup(r->easy);
    r->easy = NULL;
}

static void
req_unlink(struct req *r)
{
    if (r->prevp) {
        *r->prevp = r->next;
        if (r->next) {
            r->next->prevp = r->prevp;
        }
        r->prevp = NULL;
        r->next = NULL;
    }
}

static void
req_free(struct req *r)
{
    if (!r) {
        return;
    }
    req_unlink(r);
    req_detach(r);
    buf_free(&r->resp);
    free(r->body);
    free(r);
}

/* A request with its JSON body (the reference to `body` is taken). */
static struct req *
req_new(struct mcos_etcd *e, enum req_kind kind, const char *path,
        json_t *body, const char *what)
{
    struct req *r = calloc(1, sizeof *r);

    if (r) {
        r->body = json_dumps(body, JSON_COMPACT);
        if (!r->body) {
            free(r);
            r = NULL;
        }
    }
    json_decref(body);
    if (!r) {
        return NULL;
    }
    r->body_len = strlen(r->body);
    r->e = e;
    r->kind = kind;
    r->path = path;
    snprintf(r->what, sizeof r->what, "%s", what);
    return r;
}

/* Starts (or restarts, on the next endpoint) a request's transfer. */
static int
req_attempt(struct req *r)
{
    struct mcos_etcd *e = r->e;
    uint64_t now = uv_now(e->loop);
    CURL *c = r->easy;
    bool stream = r->kind == REQ_WATCH;

    if (!c) {
        c = curl_easy_init();
        if (!c) {
            return -ENOMEM;
        }
        r->easy = c;
    }
    snprintf(r->url, sizeof r->url, "%s%s", e->endpoints[r->ep], r->path);
    r->resp.len = 0;
    r->write_err = 0;
    r->curl_err[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, r->url);
    curl_easy_setopt(c, CURLOPT_PRIVATE, r);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->curl_err);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    /* An http_proxy in the environment must not catch cluster traffic. */
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, e->headers);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, stream ? on_stream : on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)e->opt.connect_timeout_ms);
    if (!strncmp(r->url, "https:", 6)) {
        /* Verification stays on (curl's default); only where from. */
        if (e->opt.ca_file) {
            curl_easy_setopt(c, CURLOPT_CAINFO, e->opt.ca_file);
        }
        if (e->opt.cert_file) {
            curl_easy_setopt(c, CURLOPT_SSLCERT, e->opt.cert_file);
            curl_easy_setopt(c, CURLOPT_SSLKEY, e->opt.key_file);
        }
    }
    if (r->deadline) {
        long left = r->deadline > now ? (long)(r->deadline - now) : 1;

        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, left);
    }
    if (stream) {
        /* The kernel notices a peer that vanished without a FIN. */
        long idle = (long)(e->opt.watch_idle_ms / 1000);

        curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(c, CURLOPT_TCP_KEEPIDLE, idle > 0 ? idle : 1L);
        curl_easy_setopt(c, CURLOPT_TCP_KEEPINTVL, idle > 0 ? idle : 1L);
    }
    if (curl_multi_add_handle(e->multi, c) != CURLM_OK) {
        return -ENOMEM;
    }
    r->in_multi = true;
    LOG_DBG("%s: POST %s", r->what, r->url);
    return 0;
}

/* Starts a request on the current endpoint (or r->ep when pinned). */
static int
req_start(struct req *r)
{
    struct mcos_etcd *e = r->e;

    if (!r->pinned) {
        r->ep = e->current;
    }
    r->tried = 1;
    /* The loop's cached time may be old when called between runs. */
    uv_update_time(e->loop);
    r->sent_at = uv_now(e->loop);
    if (r->kind != REQ_WATCH && !r->deadline) {
        r->deadline = r->sent_at + e->opt.request_timeout_ms;
    }
    return req_attempt(r);
}

/* Links a one-shot request into e->reqs and starts it. */
static int
req_submit(struct req *r)
{
    struct mcos_etcd *e = r->e;
    int err;

    r->next = e->reqs;
    if (e->reqs) {
        e->reqs->prevp = &r->next;
    }
    r->prevp = &e->reqs;
    e->reqs = r;
    err = req_start(r);
    if (err) {
        fail(e, err, "etcd: %s: cannot start the request: %s", r->what,
             mcos_strerror(err));
        req_free(r);
        return err;
    }
    e->stats.requests++;
    return 0;
}

/* Appends `s` to the string in msg[len], cutting it if it does not fit
 * (messages are bounded on purpose). */
static void
msg_append(char *msg, size_t len, const char *s)
{
    size_t used = strnlen(msg, len);
    size_t n = strlen(s);

    if (used + 1 >= len) {
        return;
    }
    if (n > len - used - 1) {
        n = len - used - 1;
    }
    memcpy(msg + used, s, n);
    msg[used + n] = '\0';
}

/* The message for a failed request: the endpoint(s), what, why. */
static void
req_message(const struct req *r, char *msg, size_t len, const char *why)
{
    msg[0] = '\0';
    if (r->notes[0]) {
        msg_append(msg, len, "etcd: ");
        msg_append(msg, len, r->what);
        msg_append(msg, len, ": no endpoint answered: ");
        msg_append(msg, len, r->notes);
    } else {
        msg_append(msg, len, "etcd ");
    }
    msg_append(msg, len, r->e->endpoints[r->ep]);
    msg_append(msg, len, ": ");
    if (!r->notes[0]) {
        msg_append(msg, len, r->what);
        msg_append(msg, len, ": ");
    }
    msg_append(msg, len, why);
}

/* Whether a transfer that failed may be repeated on the next endpoint:
 * only when it never reached a server. */
static bool
req_may_fail_over(struct req *r, CURLcode rc)
{
    struct mcos_etcd *e = r->e;
    long sent = 0;

    if (r->pinned || r->tried >= e->n_endpoints) {
        return false;
    }
    if (r->deadline && uv_now(e->loop) >= r->deadline) {
        return false;
    }
    if (rc != CURLE_COULDNT_CONNECT && rc != CURLE_COULDNT_RESOLVE_HOST &&
        rc != CURLE_OPERATION_TIMEDOUT) {
        return false;
    }
    curl_easy_getinfo(r->easy, CURLINFO_REQUEST_SIZE, &sent);
    return sent == 0;
}

/* Why a transfer failed, as errno and text. */
static int
transfer_error(struct req *r, CURLcode rc, char *why, size_t len)
{
    long os_errno = 0;
    int err;

    if (rc == CURLE_WRITE_ERROR && r->write_err) {
        err = r->write_err;
        if (err == -EMSGSIZE) {
            snprintf(why, len, "answer over %zu bytes",
                     r->e->opt.max_response_bytes);
        } else {
            snprintf(why, len, "%s", mcos_strerror(err));
        }
        return err;
    }
    curl_easy_getinfo(r->easy, CURLINFO_OS_ERRNO, &os_errno);
    err = curl_errno(rc, os_errno);
    if (err == -ETIMEDOUT && r->deadline) {
        snprintf(why, len, "%s: no answer within %" PRIu64 " ms (%s)",
                 mcos_strerror(err), r->deadline - r->sent_at,
                 r->curl_err[0] ? r->curl_err : curl_easy_strerror(rc));
    } else {
        snprintf(why, len, "%s (%s)", mcos_strerror(err),
                 r->curl_err[0] ? r->curl_err : curl_easy_strerror(rc));
    }
    return err;
}

/* Tries the next endpoint after a connection failure.  Returns true if
 * the request is on its way again. */
static bool
req_fail_over(struct req *r, const char *why)
{
    struct mcos_etcd *e = r->e;
    size_t used = strlen(r->notes);

    snprintf(r->notes + used, sizeof r->notes - used, "%s: %s; ",
             e->endpoints[r->ep], why);
    if (r->in_multi) {
        curl_multi_remove_handle(e->multi, r->easy);
        r->in_multi = false;
    }
    r->ep = (r->ep + 1) % e->n_endpoints;
    r->tried++;
    e->stats.failovers++;
    LOG_WARN_RL(&e->rl, "%s: %s failed (%s), trying %s", r->what,
                e->endpoints[(r->ep + e->n_endpoints - 1) % e->n_endpoints],
                why, e->endpoints[r->ep]);
    return req_attempt(r) == 0;
}

static void watch_stream_done(struct mcos_etcd_watch *w, CURLcode rc);

/* A transfer ended (curl's CURLMSG_DONE). */
static void
req_done(struct req *r, CURLcode rc)
{
    struct mcos_etcd *e = r->e;
    char why[MSG_LEN / 2];
    char msg[MSG_LEN];
    json_t *doc;
    json_error_t jerr;
    long http = 0;
    int err;

    curl_multi_remove_handle(e->multi, r->easy);
    r->in_multi = false;
    LOG_DBG("%s: %s done: %s after %" PRIu64 " ms", r->what, r->url,
            curl_easy_strerror(rc), uv_now(e->loop) - r->sent_at);
    if (r->kind == REQ_WATCH) {
        watch_stream_done(r->owner, rc);
        return;
    }
    if (rc != CURLE_OK) {
        err = transfer_error(r, rc, why, sizeof why);
        if (req_may_fail_over(r, rc) && req_fail_over(r, why)) {
            return;
        }
        req_message(r, msg, sizeof msg, why);
        req_finish(r, err, NULL, msg);
        return;
    }
    if (!r->pinned) {
        e->current = r->ep;
    }
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &http);
    doc = json_loadb(r->resp.p ? r->resp.p : "", r->resp.len, 0, &jerr);
    if (http != 200) {
        err = doc ? etcd_error(doc, http, why, sizeof why) : 0;
        if (!err) {
            err = http_errno(http);
            snprintf(why, sizeof why, "HTTP %ld: %.200s", http,
                     r->resp.len ? r->resp.p : "(empty body)");
            /* One line is enough in a message. */
            why[strcspn(why, "\r\n")] = '\0';
        }
        json_decref(doc);
        req_message(r, msg, sizeof msg, why);
        req_finish(r, err, NULL, msg);
        return;
    }
    if (!json_is_object(doc)) {
        snprintf(why, sizeof why, "malformed answer: %s",
                 doc ? "not a JSON object" : jerr.text);
        json_decref(doc);
        req_message(r, msg, sizeof msg, why);
        req_finish(r, -EBADMSG, NULL, msg);
        return;
    }
    req_finish(r, 0, doc, "");
    json_decref(doc);
}

/* ------------------------------------------------------------------------
 * Completions of one-shot requests. */

static void status_part_done(struct req *r, int status, json_t *doc,
                             const char *msg);
static void keepalive_reply(struct req *r, int status, json_t *doc,
                            const char *msg);
static void probe_done(struct req *r, int status, const char *msg);

/* Delivers a request's outcome and frees it.  doc is the 200 answer, or
 * NULL with status < 0 and msg saying why. */
static void
req_finish(struct req *r, int status, json_t *doc, const char *msg)
{
    struct mcos_etcd *e = r->e;
    struct mcos_etcd_result res = {0};
    struct arena arena = {0};
    char buf[MSG_LEN];
    char bad_why[300];

    switch (r->kind) {
    case REQ_MEMBER:
        status_part_done(r, status, doc, msg);
        return;
    case REQ_KEEPALIVE:
        keepalive_reply(r, status, doc, msg);
        return;
    case REQ_PROBE:
        probe_done(r, status, msg);
        return;
    case REQ_WATCH:
        return; /* never: streams end in watch_stream_done */
    case REQ_USER:
        break;
    }
    req_unlink(r);
    res.status = status;
    res.error = msg;
    res.endpoint = e->endpoints[r->ep];
    if (status == 0 && r->parse) {
        int err = r->parse(doc, &res, &arena);

        if (err) {
            const char *why = arena.why[0] ? arena.why : mcos_strerror(err);

            memset(&res, 0, sizeof res);
            res.status = err;
            res.endpoint = e->endpoints[r->ep];
            if (err == -EBADMSG) {
                snprintf(bad_why, sizeof bad_why, "malformed answer: %s", why);
                why = bad_why;
            }
            req_message(r, buf, sizeof buf, why);
            res.error = buf;
        }
    }
    if (res.status) {
        e->stats.failed++;
    }
    if (r->cb) {
        r->cb(&res, r->arg);
    }
    arena_free(&arena);
    req_free(r);
}

/* Parsers of 200 answers, one per operation. */

static int
parse_header_only(json_t *doc, struct mcos_etcd_result *res, struct arena *a)
{
    return get_header_revision(doc, &res->revision, a);
}

static int
parse_range_body(json_t *doc, const struct mcos_etcd_kv **kvs, size_t *n,
                 int64_t *count, bool *more, struct arena *a)
{
    int r;

    if ((r = parse_kvs(json_object_get(doc, "kvs"), kvs, n, a)) ||
        (r = get_i64(doc, "count", count, a)) ||
        (r = get_bool(doc, "more", more, a))) {
        return r;
    }
    return 0;
}

static int
parse_range(json_t *doc, struct mcos_etcd_result *res, struct arena *a)
{
    int r = get_header_revision(doc, &res->revision, a);

    return r ? r
             : parse_range_body(doc, &res->kvs, &res->n_kvs, &res->count,
                                &res->more, a);
}

static int
parse_delete(json_t *doc, struct mcos_etcd_result *res, struct arena *a)
{
    int r = get_header_revision(doc, &res->revision, a);

    return r ? r : get_i64(doc, "deleted", &res->deleted, a);
}

static int
parse_txn(json_t *doc, struct mcos_etcd_result *res, struct arena *a)
{
    json_t *arr = json_object_get(doc, "responses");
    struct mcos_etcd_op_result *ops;
    size_t n;
    int r;

    if ((r = get_header_revision(doc, &res->revision, a)) ||
        (r = get_bool(doc, "succeeded", &res->succeeded, a))) {
        return r;
    }
    if (!arr || json_is_null(arr)) {
        return 0;
    }
    if (!json_is_array(arr)) {
        return bad(a, "field 'responses' is not an array");
    }
    n = json_array_size(arr);
    ops = arena_alloc(a, n * sizeof *ops);
    if (!ops) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(arr, i);
        json_t *v;
        bool more;

        if ((v = json_object_get(o, "response_range"))) {
            ops[i].type = MCOS_ETCD_OP_RANGE;
            r = parse_range_body(v, &ops[i].kvs, &ops[i].n_kvs, &ops[i].count,
                                 &more, a);
        } else if (json_object_get(o, "response_put")) {
            ops[i].type = MCOS_ETCD_OP_PUT;
        } else if ((v = json_object_get(o, "response_delete_range"))) {
            ops[i].type = MCOS_ETCD_OP_DELETE;
            r = get_i64(v, "deleted", &ops[i].count, a);
        } else {
            return bad(a, "txn response %zu has no known operation", i);
        }
        if (r) {
            return r;
        }
    }
    res->ops = ops;
    res->n_ops = n;
    return 0;
}

static int
parse_lease_grant(json_t *doc, struct mcos_etcd_result *res, struct arena *a)
{
    const char *err = json_string_value(json_object_get(doc, "error"));
    int r;

    if (err && *err) {
        snprintf(a->why, sizeof a->why, "%s", err);
        return grpc_errno(2, err);
    }
    if ((r = get_header_revision(doc, &res->revision, a)) ||
        (r = get_i64(doc, "ID", &res->lease_id, a)) ||
        (r = get_i64(doc, "TTL", &res->ttl, a))) {
        return r;
    }
    if (res->lease_id == 0 || res->ttl <= 0) {
        return bad(a, "lease grant without an ID or a TTL");
    }
    return 0;
}

static int
parse_lease_ttl(json_t *doc, struct mcos_etcd_result *res, struct arena *a)
{
    int r;

    if ((r = get_header_revision(doc, &res->revision, a)) ||
        (r = get_i64(doc, "ID", &res->lease_id, a)) ||
        (r = get_i64(doc, "TTL", &res->ttl, a))) {
        return r;
    }
    if (res->ttl < 0) {
        snprintf(a->why, sizeof a->why, "lease %" PRId64 " not found",
                 res->lease_id);
        return -ENOENT;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Public one-shot operations. */

static int
check_client(struct mcos_etcd *e)
{
    if (e->closing) {
        return fail(e, -ESHUTDOWN, "etcd: the client is closing");
    }
    return 0;
}

static int
check_key(struct mcos_etcd *e, const char *op, const void *key, size_t key_len,
          bool may_be_empty)
{
    if (!key && key_len) {
        return fail(e, -EINVAL, "etcd: %s: key is NULL", op);
    }
    if (key_len == 0 && !may_be_empty) {
        return fail(e, -EINVAL, "etcd: %s: empty key", op);
    }
    return 0;
}

static int
check_size(struct mcos_etcd *e, const char *what, size_t bytes)
{
    if (bytes + REQUEST_OVERHEAD > e->opt.max_request_bytes) {
        return fail(e, -EMSGSIZE,
                    "etcd: %s: %zu bytes of keys and values, over the "
                    "%zu-byte request limit",
                    what, bytes, e->opt.max_request_bytes);
    }
    return 0;
}

/* Builds the message prefix "op \"key\"". */
static void
what_key(char *out, size_t len, const char *op, const void *key,
         size_t key_len, bool prefix)
{
    char k[100];

    fmt_key(key, key_len, k, sizeof k);
    snprintf(out, len, "%s %s%s", op, k, prefix ? " (prefix)" : "");
}

/* Submits a user request, or reports why it could not be built. */
static int
submit_user(struct mcos_etcd *e, const char *path, json_t *body, int built,
            const char *what, parse_fn parse, mcos_etcd_cb cb, void *arg)
{
    struct req *r;

    if (built) {
        json_decref(body);
        return fail(e, built, "etcd: %s: %s", what, mcos_strerror(built));
    }
    r = req_new(e, REQ_USER, path, body, what);
    if (!r) {
        return fail(e, -ENOMEM, "etcd: %s: out of memory", what);
    }
    r->parse = parse;
    r->cb = cb;
    r->arg = arg;
    return req_submit(r);
}

int
mcos_etcd_put(struct mcos_etcd *e, const void *key, size_t key_len,
              const void *value, size_t value_len, int64_t lease,
              mcos_etcd_cb cb, void *arg)
{
    char what[160];
    json_t *body;
    int r;

    if ((r = check_client(e)) ||
        (r = check_key(e, "put", key, key_len, false))) {
        return r;
    }
    what_key(what, sizeof what, "put", key, key_len, false);
    if (!value && value_len) {
        return fail(e, -EINVAL, "etcd: %s: value is NULL", what);
    }
    if (lease < 0) {
        return fail(e, -EINVAL, "etcd: %s: negative lease %" PRId64, what,
                    lease);
    }
    if ((r = check_size(e, what, key_len + value_len))) {
        return r;
    }
    body = json_object();
    r = body ? 0 : -ENOMEM;
    if (!r && !(r = set_bytes(body, "key", key, key_len)) &&
        !(r = set_bytes(body, "value", value ? value : "", value_len)) &&
        lease) {
        r = set_i64(body, "lease", lease);
    }
    return submit_user(e, "/v3/kv/put", body, r, what, parse_header_only, cb,
                       arg);
}

static int
range_body(const struct mcos_etcd_range *q, json_t *body)
{
    int r;

    if ((r = set_range(body, q->key, q->key_len, q->prefix, q->range_end,
                       q->range_end_len))) {
        return r;
    }
    if (q->limit && (r = set_i64(body, "limit", q->limit))) {
        return r;
    }
    if (q->revision && (r = set_i64(body, "revision", q->revision))) {
        return r;
    }
    if (q->keys_only && (r = set_bool(body, "keys_only", true))) {
        return r;
    }
    if (q->count_only && (r = set_bool(body, "count_only", true))) {
        return r;
    }
    return 0;
}

int
mcos_etcd_range(struct mcos_etcd *e, const struct mcos_etcd_range *q,
                mcos_etcd_cb cb, void *arg)
{
    char what[160];
    json_t *body;
    int r;

    if ((r = check_client(e))) {
        return r;
    }
    if (!q) {
        return fail(e, -EINVAL, "etcd: range: no request");
    }
    if ((r = check_key(e, "range", q->key, q->key_len, q->prefix))) {
        return r;
    }
    what_key(what, sizeof what, "range", q->key, q->key_len, q->prefix);
    if (q->limit < 0 || q->revision < 0) {
        return fail(e, -EINVAL, "etcd: %s: negative limit or revision", what);
    }
    if (!q->range_end && q->range_end_len) {
        return fail(e, -EINVAL, "etcd: %s: range_end is NULL", what);
    }
    if ((r = check_size(e, what, q->key_len + q->range_end_len))) {
        return r;
    }
    body = json_object();
    r = body ? range_body(q, body) : -ENOMEM;
    return submit_user(e, "/v3/kv/range", body, r, what, parse_range, cb, arg);
}

int
mcos_etcd_get(struct mcos_etcd *e, const void *key, size_t key_len,
              bool prefix, mcos_etcd_cb cb, void *arg)
{
    struct mcos_etcd_range q = {
        .key = key, .key_len = key_len, .prefix = prefix};

    return mcos_etcd_range(e, &q, cb, arg);
}

int
mcos_etcd_delete(struct mcos_etcd *e, const void *key, size_t key_len,
                 bool prefix, mcos_etcd_cb cb, void *arg)
{
    char what[160];
    json_t *body;
    int r;

    if ((r = check_client(e)) ||
        (r = check_key(e, "delete", key, key_len, prefix))) {
        return r;
    }
    what_key(what, sizeof what, "delete", key, key_len, prefix);
    if ((r = check_size(e, what, key_len))) {
        return r;
    }
    body = json_object();
    r = body ? set_range(body, key, key_len, prefix, NULL, 0) : -ENOMEM;
    return submit_user(e, "/v3/kv/deleterange", body, r, what, parse_delete,
                       cb, arg);
}

static const char *const cmp_targets[] = {"VERSION", "CREATE", "MOD", "VALUE",
                                          "LEASE"};
static const char *const cmp_fields[] = {"version", "create_revision",
                                         "mod_revision", "value", "lease"};
static const char *const cmp_results[] = {"EQUAL", "GREATER", "LESS",
                                          "NOT_EQUAL"};

static json_t *
txn_compare(const struct mcos_etcd_compare *c)
{
    json_t *o = json_object();
    int r;

    if (!o) {
        return NULL;
    }
    r = set_bytes(o, "key", c->key, c->key_len);
    if (!r) {
        r = json_object_set_new(o, "target",
                                json_string(cmp_targets[c->target]));
    }
    if (!r) {
        r = json_object_set_new(o, "result",
                                json_string(cmp_results[c->result]));
    }
    if (!r) {
        r = c->target == MCOS_ETCD_CMP_VALUE
                ? set_bytes(o, "value", c->value ? c->value : "", c->value_len)
                : set_i64(o, cmp_fields[c->target], c->number);
    }
    if (r) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *
txn_op(const struct mcos_etcd_op *op)
{
    json_t *o = json_object();
    json_t *inner = json_object();
    const char *name = NULL;
    int r = (o && inner) ? 0 : -ENOMEM;

    if (!r) {
        switch (op->type) {
        case MCOS_ETCD_OP_PUT:
            name = "request_put";
            r = set_bytes(inner, "key", op->key, op->key_len);
            if (!r) {
                r = set_bytes(inner, "value", op->value ? op->value : "",
                              op->value_len);
            }
            if (!r && op->lease) {
                r = set_i64(inner, "lease", op->lease);
            }
            break;
        case MCOS_ETCD_OP_RANGE:
            name = "request_range";
            r = set_range(inner, op->key, op->key_len, op->prefix, NULL, 0);
            break;
        case MCOS_ETCD_OP_DELETE:
            name = "request_delete_range";
            r = set_range(inner, op->key, op->key_len, op->prefix, NULL, 0);
            break;
        }
    }
    if (!r && json_object_set(o, name, inner)) {
        r = -ENOMEM;
    }
    json_decref(inner);
    if (r) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Checks one branch of a transaction; adds its bytes to *bytes. */
static int
txn_check_ops(struct mcos_etcd *e, const char *branch,
              const struct mcos_etcd_op *ops, size_t n, size_t *bytes)
{
    if (n && !ops) {
        return fail(e, -EINVAL, "etcd: txn: %s operations are NULL", branch);
    }
    for (size_t i = 0; i < n; i++) {
        const struct mcos_etcd_op *op = &ops[i];

        if ((unsigned)op->type > MCOS_ETCD_OP_DELETE) {
            return fail(e, -EINVAL, "etcd: txn: %s operation %zu: bad type",
                        branch, i);
        }
        if ((!op->key && op->key_len) ||
            (op->key_len == 0 &&
             !(op->prefix && op->type != MCOS_ETCD_OP_PUT))) {
            return fail(e, -EINVAL, "etcd: txn: %s operation %zu: empty key",
                        branch, i);
        }
        if (op->type == MCOS_ETCD_OP_PUT &&
            ((!op->value && op->value_len) || op->lease < 0)) {
            return fail(e, -EINVAL,
                        "etcd: txn: %s operation %zu: bad value or lease",
                        branch, i);
        }
        *bytes += op->key_len + op->value_len + REQUEST_OVERHEAD;
    }
    return 0;
}

static int
txn_add_ops(json_t *body, const char *name, const struct mcos_etcd_op *ops,
            size_t n)
{
    json_t *arr;

    if (!n) {
        return 0;
    }
    arr = json_array();
    if (!arr) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        if (json_array_append_new(arr, txn_op(&ops[i]))) {
            json_decref(arr);
            return -ENOMEM;
        }
    }
    return json_object_set_new(body, name, arr) ? -ENOMEM : 0;
}

int
mcos_etcd_txn(struct mcos_etcd *e, const struct mcos_etcd_txn *t,
              mcos_etcd_cb cb, void *arg)
{
    char what[160];
    size_t bytes = 0;
    json_t *body;
    json_t *arr;
    int r;

    if ((r = check_client(e))) {
        return r;
    }
    if (!t || (t->n_compare && !t->compare)) {
        return fail(e, -EINVAL, "etcd: txn: no transaction or no compares");
    }
    for (size_t i = 0; i < t->n_compare; i++) {
        const struct mcos_etcd_compare *c = &t->compare[i];

        if (!c->key || c->key_len == 0) {
            return fail(e, -EINVAL, "etcd: txn: compare %zu: empty key", i);
        }
        if ((unsigned)c->target > MCOS_ETCD_CMP_LEASE ||
            (unsigned)c->result > MCOS_ETCD_CMP_NOT_EQUAL) {
            return fail(e, -EINVAL,
                        "etcd: txn: compare %zu: bad target or result", i);
        }
        if (c->target == MCOS_ETCD_CMP_VALUE && !c->value && c->value_len) {
            return fail(e, -EINVAL, "etcd: txn: compare %zu: value is NULL",
                        i);
        }
        bytes += c->key_len + c->value_len + REQUEST_OVERHEAD;
    }
    if ((r = txn_check_ops(e, "success", t->success, t->n_success, &bytes)) ||
        (r = txn_check_ops(e, "failure", t->failure, t->n_failure, &bytes))) {
        return r;
    }
    if (t->n_compare) {
        what_key(what, sizeof what, "txn on", t->compare[0].key,
                 t->compare[0].key_len, false);
    } else {
        snprintf(what, sizeof what, "txn");
    }
    if ((r = check_size(e, what, bytes))) {
        return r;
    }
    body = json_object();
    arr = json_array();
    r = (body && arr) ? 0 : -ENOMEM;
    for (size_t i = 0; !r && i < t->n_compare; i++) {
        if (json_array_append_new(arr, txn_compare(&t->compare[i]))) {
            r = -ENOMEM;
        }
    }
    if (!r && t->n_compare && json_object_set(body, "compare", arr)) {
        r = -ENOMEM;
    }
    json_decref(arr);
    if (!r) {
        r = txn_add_ops(body, "success", t->success, t->n_success);
    }
    if (!r) {
        r = txn_add_ops(body, "failure", t->failure, t->n_failure);
    }
    return submit_user(e, "/v3/kv/txn", body, r, what, parse_txn, cb, arg);
}

int
mcos_etcd_lease_grant(struct mcos_etcd *e, int64_t ttl_s, mcos_etcd_cb cb,
                      void *arg)
{
    char what[64];
    json_t *body;
    int r;

    if ((r = check_client(e))) {
        return r;
    }
    snprintf(what, sizeof what, "lease grant (TTL %" PRId64 " s)", ttl_s);
    if (ttl_s <= 0) {
        return fail(e, -EINVAL, "etcd: %s: TTL must be positive", what);
    }
    body = json_object();
    r = body ? set_i64(body, "TTL", ttl_s) : -ENOMEM;
    return submit_user(e, "/v3/lease/grant", body, r, what, parse_lease_grant,
                       cb, arg);
}

static int
lease_op(struct mcos_etcd *e, const char *op, const char *path,
         int64_t lease_id, parse_fn parse, mcos_etcd_cb cb, void *arg)
{
    char what[64];
    json_t *body;
    int r;

    if ((r = check_client(e))) {
        return r;
    }
    snprintf(what, sizeof what, "%s %" PRId64, op, lease_id);
    if (lease_id <= 0) {
        return fail(e, -EINVAL, "etcd: %s: lease ids are positive", what);
    }
    body = json_object();
    r = body ? set_i64(body, "ID", lease_id) : -ENOMEM;
    return submit_user(e, path, body, r, what, parse, cb, arg);
}

int
mcos_etcd_lease_revoke(struct mcos_etcd *e, int64_t lease_id, mcos_etcd_cb cb,
                       void *arg)
{
    return lease_op(e, "lease revoke", "/v3/lease/revoke", lease_id,
                    parse_header_only, cb, arg);
}

int
mcos_etcd_lease_ttl(struct mcos_etcd *e, int64_t lease_id, mcos_etcd_cb cb,
                    void *arg)
{
    return lease_op(e, "lease ttl", "/v3/lease/timetolive", lease_id,
                    parse_lease_ttl, cb, arg);
}

int
mcos_etcd_compact(struct mcos_etcd *e, int64_t revision, mcos_etcd_cb cb,
                  void *arg)
{
    char what[64];
    json_t *body;
    int r;

    if ((r = check_client(e))) {
        return r;
    }
    snprintf(what, sizeof what, "compact to revision %" PRId64, revision);
    if (revision <= 0) {
        return fail(e, -EINVAL, "etcd: %s: revisions are positive", what);
    }
    body = json_object();
    r = body ? set_i64(body, "revision", revision) : -ENOMEM;
    return submit_user(e, "/v3/kv/compaction", body, r, what,
                       parse_header_only, cb, arg);
}

/* ------------------------------------------------------------------------
 * Status of every endpoint. */

static void status_deliver(struct status_agg *g);

static void
status_part_done(struct req *r, int status, json_t *doc, const char *msg)
{
    struct status_agg *g = r->owner;
    struct mcos_etcd_member *m = &g->members[r->index];
    struct arena tmp = {0};
    int err = status;

    req_unlink(r);
    if (!err) {
        json_t *h = json_object_get(doc, "header");
        const char *v = json_string_value(json_object_get(doc, "version"));
        int64_t rev = 0;

        if ((err = get_header_revision(doc, &rev, &tmp)) ||
            (err = get_u64(h, "member_id", &m->member_id, &tmp)) ||
            (err = get_u64(doc, "leader", &m->leader, &tmp)) ||
            (err = get_i64(doc, "dbSize", &m->db_size, &tmp)) ||
            (err = get_i64(doc, "dbSizeInUse", &m->db_size_inuse, &tmp)) ||
            (err = get_i64(doc, "raftTerm", &m->raft_term, &tmp)) ||
            (err = get_i64(doc, "raftIndex", &m->raft_index, &tmp))) {
            char buf[MSG_LEN];
            char why[300];

            snprintf(why, sizeof why, "malformed answer: %s", tmp.why);
            req_message(r, buf, sizeof buf, why);
            m->error = arena_strdup(&g->arena, buf);
        } else {
            m->version = arena_strdup(&g->arena, v ? v : "");
            m->is_leader = m->leader != 0 && m->leader == m->member_id;
            if (!g->revision) {
                g->revision = rev;
            }
        }
    } else {
        m->error = arena_strdup(&g->arena, msg);
    }
    m->status = err;
    if (!m->error) {
        m->error = "";
    }
    if (!m->version) {
        m->version = "";
    }
    arena_free(&tmp);
    req_free(r);
    if (--g->left == 0) {
        status_deliver(g);
    }
}

static void
status_deliver(struct status_agg *g)
{
    {
        struct mcos_etcd_result res = {0};

        res.status = g->members[0].status;
        res.error = g->members[0].error;
        for (size_t i = 0; i < g->n; i++) {
            if (g->members[i].status == 0) {
                res.status = 0;
                res.error = "";
                res.endpoint = g->members[i].endpoint;
                break;
            }
        }
        res.revision = g->revision;
        res.members = g->members;
        res.n_members = g->n;
        if (g->cb) {
            g->cb(&res, g->arg);
        }
        arena_free(&g->arena);
        free(g->members);
        free(g);
    }
}

int
mcos_etcd_status(struct mcos_etcd *e, mcos_etcd_cb cb, void *arg)
{
    struct status_agg *g;
    struct req *parts[MCOS_ETCD_MAX_ENDPOINTS] = {0};
    int r;

    if ((r = check_client(e))) {
        return r;
    }
    g = calloc(1, sizeof *g);
    if (!g || !(g->members = calloc(e->n_endpoints, sizeof *g->members))) {
        free(g);
        return fail(e, -ENOMEM, "etcd: status: out of memory");
    }
    g->n = g->left = e->n_endpoints;
    g->cb = cb;
    g->arg = arg;
    /* Build every part first, so a failure leaves nothing started. */
    for (size_t i = 0; i < e->n_endpoints; i++) {
        json_t *body = json_object();

        parts[i] = body ? req_new(e, REQ_MEMBER, "/v3/maintenance/status",
                                  body, "status")
                        : NULL;
        if (!parts[i]) {
            for (size_t j = 0; j < i; j++) {
                req_free(parts[j]);
            }
            free(g->members);
            free(g);
            return fail(e, -ENOMEM, "etcd: status: out of memory");
        }
        parts[i]->owner = g;
        parts[i]->index = i;
        parts[i]->pinned = true;
        parts[i]->ep = i;
        g->members[i].endpoint = e->endpoints[i];
    }
    for (size_t i = 0; i < e->n_endpoints; i++) {
        struct req *p = parts[i];

        p->next = e->reqs;
        if (e->reqs) {
            e->reqs->prevp = &p->next;
        }
        p->prevp = &e->reqs;
        e->reqs = p;
        r = req_start(p);
        if (r) {
            /* Reported in this endpoint's slot when the others answer. */
            char msg[MSG_LEN];

            req_message(p, msg, sizeof msg, "cannot start the request");
            g->members[i].status = r;
            g->members[i].error = arena_strdup(&g->arena, msg);
            g->members[i].version = "";
            if (!g->members[i].error) {
                g->members[i].error = "";
            }
            req_free(p);
            g->left--;
        }
    }
    if (g->left == 0) {
        /* Nothing started: no callback will come. */
        arena_free(&g->arena);
        free(g->members);
        free(g);
        return fail(e, -ENOMEM, "etcd: status: cannot start the requests");
    }
    e->stats.requests++;
    return 0;
}

/* ------------------------------------------------------------------------
 * Keepalives. */

static void
keepalive_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Ends a keepalive: no more I/O, no more callbacks; freed when its timer
 * has closed. */
static void
keepalive_release(struct mcos_etcd_keepalive *ka)
{
    if (ka->dead) {
        return;
    }
    ka->dead = true;
    *ka->prevp = ka->next;
    if (ka->next) {
        ka->next->prevp = ka->prevp;
    }
    req_free(ka->req);
    ka->req = NULL;
    uv_timer_stop(&ka->timer);
    uv_close((uv_handle_t *)&ka->timer, keepalive_closed);
}

static void
keepalive_end(struct mcos_etcd_keepalive *ka, int status, const char *msg)
{
    struct mcos_etcd_result res = {0};
    mcos_etcd_cb cb = ka->cb;
    void *arg = ka->arg;

    res.status = status;
    res.error = msg;
    res.lease_id = ka->id;
    res.ttl = ka->ttl_s;
    res.endpoint = ka->e->endpoints[ka->e->current];
    if (status != -ECANCELED) {
        ka->e->stats.leases_lost++;
        LOG_WARN("%s", msg);
    }
    keepalive_release(ka);
    if (cb) {
        cb(&res, arg);
    }
}

static uint64_t
keepalive_period(const struct mcos_etcd_keepalive *ka)
{
    uint64_t p =
        ka->interval_ms ? ka->interval_ms : (uint64_t)ka->ttl_s * 1000 / 3;

    return p < 50 ? 50 : p;
}

static void on_keepalive_timer(uv_timer_t *t);

static void
keepalive_arm(struct mcos_etcd_keepalive *ka)
{
    uint64_t now = uv_now(ka->e->loop);
    uint64_t due = ka->deadline;

    /* While a renewal is out only the deadline matters: its answer re-arms
     * the timer.  Arming for a next_send already past would fire the timer
     * again at once, and libuv runs a due timer again in the same loop
     * iteration: the loop would spin and never poll (seen when a renewal
     * outlasted its period while etcd restarted). */
    if (!ka->req && ka->next_send < due) {
        due = ka->next_send;
    }

    uv_timer_start(&ka->timer, on_keepalive_timer, due > now ? due - now : 0,
                   0);
}

static void
keepalive_send(struct mcos_etcd_keepalive *ka)
{
    struct mcos_etcd *e = ka->e;
    uint64_t now = uv_now(e->loop);
    char what[64];
    json_t *body = json_object();
    struct req *r;

    snprintf(what, sizeof what, "keepalive of lease %" PRId64, ka->id);
    ka->next_send = now + keepalive_period(ka);
    if (body && set_i64(body, "ID", ka->id)) {
        json_decref(body);
        body = NULL;
    }
    r = body ? req_new(e, REQ_KEEPALIVE, "/v3/lease/keepalive", body, what)
             : NULL;
    if (!r) {
        snprintf(ka->last_err, sizeof ka->last_err, "etcd: %s: %s", what,
                 mcos_strerror(-ENOMEM));
        return;
    }
    r->owner = ka;
    /* A renewal that answers after the deadline is no use. */
    r->deadline = now + e->opt.request_timeout_ms;
    if (r->deadline > ka->deadline) {
        r->deadline = ka->deadline;
    }
    if (req_start(r)) {
        req_free(r);
        snprintf(ka->last_err, sizeof ka->last_err,
                 "etcd: %s: cannot start the request", what);
        return;
    }
    ka->req = r;
}

static void
on_keepalive_timer(uv_timer_t *t)
{
    struct mcos_etcd_keepalive *ka = t->data;
    uint64_t now = uv_now(ka->e->loop);

    if (now >= ka->deadline) {
        char msg[MSG_LEN];

        snprintf(msg, sizeof msg,
                 "etcd: lease %" PRId64 ": not renewed within its TTL of "
                 "%" PRId64 " s, presumed expired (last error: %.600s)",
                 ka->id, ka->ttl_s, ka->last_err[0] ? ka->last_err : "none");
        keepalive_end(ka, -ETIMEDOUT, msg);
        return;
    }
    if (!ka->req && now >= ka->next_send) {
        keepalive_send(ka);
    }
    keepalive_arm(ka);
}

/* A renewal's answer: {"result": {"ID", "TTL"}} or a stream error. */
static void
keepalive_reply(struct req *r, int status, json_t *doc, const char *msg)
{
    struct mcos_etcd_keepalive *ka = r->owner;
    struct mcos_etcd *e = r->e;
    uint64_t sent_at = r->sent_at;
    uint64_t now = uv_now(e->loop);
    struct arena tmp = {0};
    char buf[MSG_LEN];
    int64_t ttl = 0;

    ka->req = NULL;
    if (status == 0) {
        json_t *res = json_object_get(doc, "result");
        json_t *err = json_object_get(doc, "error");

        if (json_is_object(err)) {
            status = etcd_error(err, 200, tmp.why, sizeof tmp.why);
            if (!status) {
                status = -EBADMSG;
                snprintf(tmp.why, sizeof tmp.why, "malformed error object");
            }
        } else if (!json_is_object(res)) {
            status = bad(&tmp, "malformed answer: no 'result' object");
        } else {
            status = get_i64(res, "TTL", &ttl, &tmp);
        }
        if (status) {
            req_message(r, buf, sizeof buf, tmp.why);
            msg = buf;
        }
    }
    if (status == 0 && ttl <= 0) {
        status = -ENOENT;
        snprintf(buf, sizeof buf,
                 "etcd %s: lease %" PRId64 " has expired or was revoked",
                 e->endpoints[r->ep], ka->id);
        msg = buf;
    }
    req_free(r);
    arena_free(&tmp);
    if (status == -ENOENT) {
        keepalive_end(ka, -ENOENT, msg);
        return;
    }
    if (status) {
        /* Transient: retry sooner, the deadline decides when to give up. */
        uint64_t retry = keepalive_period(ka) / 4;

        e->stats.keepalive_errors++;
        snprintf(ka->last_err, sizeof ka->last_err, "%s", msg);
        LOG_WARN_RL(&e->rl, "%s", msg);
        ka->next_send = now + (retry < 50 ? 50 : retry);
    } else {
        e->stats.keepalives++;
        ka->ttl_s = ttl;
        ka->deadline = sent_at + (uint64_t)ttl * 1000;
        ka->last_err[0] = '\0';
        ka->next_send = sent_at + keepalive_period(ka);
    }
    keepalive_arm(ka);
}

int
mcos_etcd_keepalive_start(struct mcos_etcd *e, int64_t lease_id, int64_t ttl_s,
                          uint32_t interval_ms, mcos_etcd_cb lost_cb,
                          void *arg, struct mcos_etcd_keepalive **out)
{
    struct mcos_etcd_keepalive *ka;
    uint64_t now;
    int r;

    if ((r = check_client(e))) {
        return r;
    }
    if (lease_id <= 0 || ttl_s <= 0 || !out) {
        return fail(e, -EINVAL,
                    "etcd: keepalive of lease %" PRId64 " (TTL %" PRId64
                    " s): bad lease id, TTL or handle",
                    lease_id, ttl_s);
    }
    if (interval_ms && interval_ms >= (uint64_t)ttl_s * 1000) {
        return fail(e, -EINVAL,
                    "etcd: keepalive of lease %" PRId64 ": interval %u ms "
                    "is not shorter than the TTL",
                    lease_id, interval_ms);
    }
    ka = calloc(1, sizeof *ka);
    if (!ka) {
        return fail(e, -ENOMEM, "etcd: keepalive: out of memory");
    }
    r = uv_timer_init(e->loop, &ka->timer);
    if (r) {
        free(ka);
        return fail(e, r, "etcd: keepalive: uv_timer_init: %s",
                    uv_strerror(r));
    }
    now = uv_now(e->loop);
    ka->timer.data = ka;
    ka->e = e;
    ka->id = lease_id;
    ka->ttl_s = ttl_s;
    ka->interval_ms = interval_ms;
    /* The lease was granted or renewed no later than now. */
    ka->deadline = now + (uint64_t)ttl_s * 1000;
    ka->next_send = now;
    ka->cb = lost_cb;
    ka->arg = arg;
    ka->next = e->keepalives;
    if (e->keepalives) {
        e->keepalives->prevp = &ka->next;
    }
    ka->prevp = &e->keepalives;
    e->keepalives = ka;
    keepalive_arm(ka);
    *out = ka;
    return 0;
}

uint64_t
mcos_etcd_keepalive_deadline(const struct mcos_etcd_keepalive *ka)
{
    return ka->deadline;
}

void
mcos_etcd_keepalive_stop(struct mcos_etcd_keepalive *ka)
{
    if (ka) {
        keepalive_release(ka);
    }
}

/* ------------------------------------------------------------------------
 * Watches. */

static void
watch_closed(uv_handle_t *h)
{
    struct mcos_etcd_watch *w = h->data;

    req_free(w->req);
    buf_free(&w->in);
    free(w->key);
    free(w);
}

/* Ends a watch: no more I/O, no more callbacks.  The memory stays until
 * the idle timer has closed, so code still holding `w` may test w->dead. */
static void
watch_release(struct mcos_etcd_watch *w)
{
    if (w->dead) {
        return;
    }
    w->dead = true;
    *w->prevp = w->next;
    if (w->next) {
        w->next->prevp = w->prevp;
    }
    req_detach(w->req);
    req_free(w->probe);
    w->probe = NULL;
    uv_timer_stop(&w->idle);
    uv_close((uv_handle_t *)&w->idle, watch_closed);
}

static void
watch_end(struct mcos_etcd_watch *w, int status, const char *msg,
          int64_t compact_revision)
{
    struct mcos_etcd_result res = {0};
    mcos_etcd_cb cb = w->cb;
    void *arg = w->arg;

    res.status = status;
    res.error = msg;
    res.endpoint = w->e->endpoints[w->req->ep];
    res.revision = w->next_rev > 0 ? w->next_rev - 1 : 0;
    res.compact_revision = compact_revision;
    if (status != -ECANCELED) {
        w->e->stats.watches_broken++;
        LOG_WARN("%s", msg);
    }
    watch_release(w);
    cb(&res, arg);
}

static void
watch_fail(struct mcos_etcd_watch *w, int status, const char *why,
           int64_t compact_revision)
{
    char msg[MSG_LEN];

    req_message(w->req, msg, sizeof msg, why);
    watch_end(w, status, msg, compact_revision);
}

static int
parse_event(json_t *o, struct mcos_etcd_event *ev, struct arena *a)
{
    const char *type = json_string_value(json_object_get(o, "type"));
    json_t *prev = json_object_get(o, "prev_kv");
    int r;

    if (!json_is_object(o)) {
        return bad(a, "an event is not an object");
    }
    if (!type || !strcmp(type, "PUT")) {
        ev->type = MCOS_ETCD_EVENT_PUT;
    } else if (!strcmp(type, "DELETE")) {
        ev->type = MCOS_ETCD_EVENT_DELETE;
    } else {
        return bad(a, "unknown event type '%.40s'", type);
    }
    if ((r = parse_kv(json_object_get(o, "kv"), &ev->kv, a))) {
        return r;
    }
    if (prev && !json_is_null(prev)) {
        ev->has_prev = true;
        return parse_kv(prev, &ev->prev_kv, a);
    }
    return 0;
}

/* One line of the stream. */
static void
watch_message(struct mcos_etcd_watch *w, json_t *doc)
{
    struct mcos_etcd_result res = {0};
    struct arena a = {0};
    json_t *err = json_object_get(doc, "error");
    json_t *body = json_object_get(doc, "result");
    json_t *arr;
    struct mcos_etcd_event *evs = NULL;
    bool canceled = false;
    size_t n = 0;
    int r;

    if (err) {
        r = json_is_object(err) ? etcd_error(err, 200, a.why, sizeof a.why)
                                : 0;
        if (!r) {
            r = -EBADMSG;
            snprintf(a.why, sizeof a.why, "malformed error in the stream");
        }
        watch_fail(w, r, a.why, 0);
        arena_free(&a);
        return;
    }
    if (!json_is_object(body)) {
        watch_fail(w, -EBADMSG, "malformed stream line: no 'result' object",
                   0);
        return;
    }
    arr = json_object_get(body, "events");
    if ((r = get_header_revision(body, &res.revision, &a)) ||
        (r = get_bool(body, "created", &res.created, &a)) ||
        (r = get_bool(body, "canceled", &canceled, &a)) ||
        (r = get_i64(body, "compact_revision", &res.compact_revision, &a))) {
        goto malformed;
    }
    if (arr && !json_is_null(arr)) {
        if (!json_is_array(arr)) {
            r = bad(&a, "field 'events' is not an array");
            goto malformed;
        }
        n = json_array_size(arr);
        evs = arena_alloc(&a, n * sizeof *evs);
        if (!evs) {
            r = -ENOMEM;
            goto malformed;
        }
        for (size_t i = 0; i < n; i++) {
            if ((r = parse_event(json_array_get(arr, i), &evs[i], &a))) {
                goto malformed;
            }
        }
    }
    if (canceled) {
        char why[MSG_LEN / 2];
        const char *reason =
            json_string_value(json_object_get(body, "cancel_reason"));

        if (res.compact_revision > 0) {
            snprintf(why, sizeof why,
                     "watch from revision %" PRId64
                     " failed: history compacted up to revision %" PRId64,
                     w->next_rev, res.compact_revision);
            watch_fail(w, -ESTALE, why, res.compact_revision);
        } else {
            snprintf(why, sizeof why, "watch cancelled by the server: %.200s",
                     reason && *reason ? reason : "no reason given");
            watch_fail(w, grpc_errno(1, reason), why, 0);
        }
        arena_free(&a);
        return;
    }
    if (!res.created && n == 0) {
        /* A progress notification: everything up to here was seen. */
        if (res.revision + 1 > w->next_rev) {
            w->next_rev = res.revision + 1;
        }
        arena_free(&a);
        return;
    }
    if (res.created) {
        w->created = true;
        if (w->next_rev == 0) {
            w->next_rev = res.revision + 1;
        }
    }
    if (n) {
        w->next_rev = evs[n - 1].kv.mod_revision + 1;
        w->e->stats.watch_events += n;
    }
    res.events = evs;
    res.n_events = n;
    res.error = "";
    res.endpoint = w->e->endpoints[w->req->ep];
    w->cb(&res, w->arg);
    arena_free(&a);
    return;

malformed : {
    char why[MSG_LEN / 2];

    snprintf(why, sizeof why, "malformed stream line: %s",
             r == -EBADMSG ? a.why : mcos_strerror(r));
    watch_fail(w, r == -ENOMEM ? r : -EBADMSG, why, 0);
    arena_free(&a);
}
}

/* Parses and delivers the complete lines buffered for a watch. */
static void
watch_deliver(struct mcos_etcd_watch *w)
{
    struct mcos_etcd *e = w->e;

    w->pending = false;
    while (!w->dead && !e->closing) {
        char *start = w->in.p + w->in_off;
        size_t avail = w->in.len - w->in_off;
        char *nl = avail ? memchr(start, '\n', avail) : NULL;
        size_t len;
        json_t *doc;
        json_error_t jerr;

        if (!nl) {
            break;
        }
        len = (size_t)(nl - start);
        w->in_off += len + 1;
        if (strspn(start, " \t\r") >= len) {
            continue;
        }
        doc = json_loadb(start, len, 0, &jerr);
        if (!doc) {
            char why[MSG_LEN / 2];

            snprintf(why, sizeof why, "malformed stream line: %s", jerr.text);
            watch_fail(w, -EBADMSG, why, 0);
            break;
        }
        watch_message(w, doc);
        json_decref(doc);
    }
    if (!w->dead && w->in_off) {
        /* Keep only the partial line. */
        memmove(w->in.p, w->in.p + w->in_off, w->in.len - w->in_off);
        w->in.len -= w->in_off;
        w->in.p[w->in.len] = '\0';
        w->in_off = 0;
    }
}

static void
watch_stream_done(struct mcos_etcd_watch *w, CURLcode rc)
{
    struct req *r = w->req;
    char why[MSG_LEN / 2];
    long http = 0;
    int err;

    /* Lines that arrived with the end come first. */
    watch_deliver(w);
    if (w->dead || w->e->closing) {
        return;
    }
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &http);
    if (rc == CURLE_OK && http != 200) {
        json_error_t jerr;
        json_t *doc =
            json_loadb(r->resp.p ? r->resp.p : "", r->resp.len, 0, &jerr);

        err = doc ? etcd_error(doc, http, why, sizeof why) : 0;
        json_decref(doc);
        if (!err) {
            err = http_errno(http);
            snprintf(why, sizeof why, "watch refused: HTTP %ld", http);
        }
        watch_fail(w, err, why, 0);
        return;
    }
    if (rc != CURLE_OK) {
        char detail[MSG_LEN / 2];

        err = transfer_error(r, rc, detail, sizeof detail);
        if (!w->created && req_may_fail_over(r, rc) &&
            req_fail_over(r, detail)) {
            return;
        }
        if (w->created && (err == -ETIMEDOUT || err == -ECONNRESET)) {
            err = -ECONNRESET;
        }
        snprintf(why, sizeof why, "%s: %.480s",
                 w->created ? "watch stream broken"
                            : "cannot open the watch stream",
                 detail);
        watch_fail(w, err, why, 0);
        return;
    }
    watch_fail(w, -ECONNRESET, "watch stream ended by the server", 0);
}

static void
probe_done(struct req *r, int status, const char *msg)
{
    struct mcos_etcd_watch *w = r->owner;
    char why[MSG_LEN];

    w->probe = NULL;
    if (status == 0) {
        /* The endpoint answers: the stream is presumed alive. */
        w->last_rx = uv_now(w->e->loop);
        req_free(r);
        return;
    }
    snprintf(why, sizeof why,
             "watch stream silent for %u ms and its endpoint does not "
             "answer: %.700s",
             w->e->opt.watch_idle_ms, msg);
    req_free(r);
    /* A dead server's stream is dead: report it as broken. */
    watch_fail(w, status == -ETIMEDOUT ? -ETIMEDOUT : -ECONNRESET, why, 0);
}

static void
on_watch_idle(uv_timer_t *t)
{
    struct mcos_etcd_watch *w = t->data;
    struct mcos_etcd *e = w->e;
    char what[160];
    json_t *body;
    struct req *r;

    if (w->probe || !w->req->in_multi ||
        uv_now(e->loop) - w->last_rx < e->opt.watch_idle_ms) {
        return;
    }
    /* A linearizable count needs a quorum: it fails on a hung server and
     * on a member cut off from the others. */
    what_key(what, sizeof what, "watch probe", w->key, w->key_len, w->prefix);
    body = json_object();
    if (!body || set_range(body, w->key, w->key_len, w->prefix, NULL, 0) ||
        set_bool(body, "count_only", true)) {
        json_decref(body);
        return;
    }
    r = req_new(e, REQ_PROBE, "/v3/kv/range", body, what);
    if (!r) {
        return;
    }
    r->owner = w;
    r->pinned = true;
    r->ep = w->req->ep;
    if (req_start(r)) {
        req_free(r);
        return;
    }
    w->probe = r;
}

int
mcos_etcd_watch(struct mcos_etcd *e, const void *key, size_t key_len,
                bool prefix, int64_t start_revision, mcos_etcd_cb cb,
                void *arg, struct mcos_etcd_watch **out)
{
    struct mcos_etcd_watch *w;
    json_t *body;
    json_t *create;
    char what[160];
    uint32_t tick;
    int r;

    if ((r = check_client(e)) ||
        (r = check_key(e, "watch", key, key_len, prefix))) {
        return r;
    }
    what_key(what, sizeof what, "watch", key, key_len, prefix);
    if (!cb || !out || start_revision < 0) {
        return fail(e, -EINVAL,
                    "etcd: %s: needs a callback, a handle and a start "
                    "revision >= 0",
                    what);
    }
    if ((r = check_size(e, what, 2 * key_len))) {
        return r;
    }
    w = calloc(1, sizeof *w);
    if (!w || !(w->key = malloc(key_len ? key_len : 1))) {
        free(w);
        return fail(e, -ENOMEM, "etcd: %s: out of memory", what);
    }
    if (key_len) {
        memcpy(w->key, key, key_len);
    }
    w->key_len = key_len;
    w->prefix = prefix;
    w->e = e;
    w->cb = cb;
    w->arg = arg;
    w->next_rev = start_revision;
    body = json_object();
    create = json_object();
    r = (body && create) ? 0 : -ENOMEM;
    if (!r) {
        r = set_range(create, key, key_len, prefix, NULL, 0);
    }
    if (!r && start_revision) {
        r = set_i64(create, "start_revision", start_revision);
    }
    if (!r) {
        r = set_bool(create, "prev_kv", true);
    }
    if (!r) {
        /* Servers started with a short progress interval then keep a
         * quiet stream from looking idle. */
        r = set_bool(create, "progress_notify", true);
    }
    if (!r && json_object_set(body, "create_request", create)) {
        r = -ENOMEM;
    }
    json_decref(create);
    if (r) {
        json_decref(body);
        free(w->key);
        free(w);
        return fail(e, r, "etcd: %s: out of memory", what);
    }
    w->req = req_new(e, REQ_WATCH, "/v3/watch", body, what);
    if (!w->req) {
        free(w->key);
        free(w);
        return fail(e, -ENOMEM, "etcd: %s: out of memory", what);
    }
    w->req->owner = w;
    r = uv_timer_init(e->loop, &w->idle);
    if (r) {
        req_free(w->req);
        free(w->key);
        free(w);
        return fail(e, r, "etcd: %s: uv_timer_init: %s", what, uv_strerror(r));
    }
    w->idle.data = w;
    w->next = e->watches;
    if (e->watches) {
        e->watches->prevp = &w->next;
    }
    w->prevp = &e->watches;
    e->watches = w;
    w->last_rx = uv_now(e->loop);
    r = req_start(w->req);
    if (r) {
        watch_release(w);
        return fail(e, r, "etcd: %s: cannot start the request", what);
    }
    tick = e->opt.watch_idle_ms / 4;
    uv_timer_start(&w->idle, on_watch_idle, tick ? tick : 1, tick ? tick : 1);
    *out = w;
    return 0;
}

void
mcos_etcd_watch_cancel(struct mcos_etcd_watch *w)
{
    if (w) {
        watch_release(w);
    }
}

/* ------------------------------------------------------------------------
 * The dispatcher: after each call into curl, deliver what completed.  User
 * callbacks run only from here (and from the close callback), never from
 * inside curl. */

static void
process(struct mcos_etcd *e)
{
    CURLMsg *m;
    int left;
    bool again = true;

    while (!e->closing && (m = curl_multi_info_read(e->multi, &left))) {
        if (m->msg == CURLMSG_DONE) {
            void *r = NULL;
            CURLcode rc = m->data.result;

            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &r);
            req_done(r, rc);
        }
    }
    /* Watches with complete lines.  A callback may cancel any watch, so
     * restart from the head after each one delivered. */
    while (again && !e->closing) {
        again = false;
        for (struct mcos_etcd_watch *w = e->watches; w; w = w->next) {
            if (w->pending) {
                watch_deliver(w);
                again = true;
                break;
            }
        }
    }
}

/* ------------------------------------------------------------------------
 * Create and close. */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void
curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Checks and normalises one endpoint URL into a malloc'd string. */
static int
parse_endpoint(const char *s, size_t len, char **out, char *err, size_t errlen)
{
    char *url = strndup(s, len);
    CURLU *u = NULL;
    char *scheme = NULL, *host = NULL, *path = NULL, *query = NULL;
    int r = -EINVAL;

    if (!url) {
        return -ENOMEM;
    }
    u = curl_url();
    if (!u) {
        free(url);
        return -ENOMEM;
    }
    if (len > MAX_URL) {
        mcos_seterr(err, errlen, "etcd endpoint '%.60s...' is too long", url);
    } else if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
               curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
               curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
               !*host) {
        mcos_seterr(err, errlen,
                    "etcd endpoint '%s' is not a URL (want "
                    "http://host:port)",
                    url);
    } else if (strcmp(scheme, "http") && strcmp(scheme, "https")) {
        mcos_seterr(err, errlen,
                    "etcd endpoint '%s': scheme '%s' is not http or https",
                    url, scheme);
    } else if ((curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK &&
                strcmp(path, "/") && *path) ||
               curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK) {
        mcos_seterr(err, errlen,
                    "etcd endpoint '%s' has a path or query (want "
                    "http://host:port)",
                    url);
    } else {
        /* Without the trailing slash: paths are appended as "/v3/...". */
        while (len > 0 && url[len - 1] == '/') {
            url[--len] = '\0';
        }
        *out = url;
        url = NULL;
        r = 0;
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(path);
    curl_free(query);
    curl_url_cleanup(u);
    free(url);
    return r;
}

static void
free_endpoints(struct mcos_etcd *e)
{
    for (size_t i = 0; i < e->n_endpoints; i++) {
        free(e->endpoints[i]);
    }
    e->n_endpoints = 0;
}

static int
parse_endpoints(struct mcos_etcd *e, const char *list, char *err,
                size_t errlen)
{
    const char *p = list;

    while (*p) {
        size_t len;
        int r;

        p += strspn(p, " \t,");
        len = strcspn(p, ",");
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t')) {
            len--;
        }
        if (len == 0) {
            continue;
        }
        if (e->n_endpoints == MCOS_ETCD_MAX_ENDPOINTS) {
            mcos_seterr(err, errlen, "more than %d etcd endpoints",
                        MCOS_ETCD_MAX_ENDPOINTS);
            return -EINVAL;
        }
        r = parse_endpoint(p, len, &e->endpoints[e->n_endpoints], err, errlen);
        if (r) {
            return r;
        }
        e->n_endpoints++;
        p += len;
    }
    if (e->n_endpoints == 0) {
        mcos_seterr(err, errlen, "no etcd endpoints given");
        return -EINVAL;
    }
    return 0;
}

static void
free_tls(struct mcos_etcd *e)
{
    for (size_t i = 0; i < 3; i++) {
        free(e->tls[i]);
        e->tls[i] = NULL;
    }
}

/* Checks the TLS files in e->opt (copied from the caller), copies them and
 * points e->opt at the copies.  Needs the endpoints parsed. */
static int
setup_tls(struct mcos_etcd *e, char *err, size_t errlen)
{
    const char **f[3] = {&e->opt.ca_file, &e->opt.cert_file, &e->opt.key_file};
    static const char *const what[3] = {"CA file", "client certificate",
                                        "client key"};
    bool any = false, https = false;

    for (size_t i = 0; i < 3; i++) {
        if (*f[i] && !**f[i]) {
            *f[i] = NULL;
        }
        any |= *f[i] != NULL;
    }
    if (!any) {
        return 0;
    }
    if (!e->opt.cert_file != !e->opt.key_file) {
        mcos_seterr(err, errlen,
                    "etcd TLS: a client certificate needs its key and a key "
                    "its certificate (got only the %s)",
                    e->opt.cert_file ? "certificate" : "key");
        return -EINVAL;
    }
    for (size_t i = 0; i < e->n_endpoints; i++) {
        https |= !strncmp(e->endpoints[i], "https:", 6);
    }
    if (!https) {
        mcos_seterr(err, errlen,
                    "etcd TLS files are set but no etcd endpoint is https://");
        return -EINVAL;
    }
    for (size_t i = 0; i < 3; i++) {
        struct stat st;
        int fd;

        if (!*f[i]) {
            continue;
        }
        /* Readable now, so a typo is caught at start, not at the first
         * connection (curl would report it per request). */
        fd = open(*f[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            mcos_seterr(err, errlen, "etcd TLS %s '%s': %s", what[i], *f[i],
                        strerror(errno));
            return -EINVAL;
        }
        if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
            close(fd);
            mcos_seterr(err, errlen, "etcd TLS %s '%s': not a regular file",
                        what[i], *f[i]);
            return -EINVAL;
        }
        close(fd);
        e->tls[i] = strdup(*f[i]);
        if (!e->tls[i]) {
            mcos_seterr(err, errlen, "etcd: out of memory");
            return -ENOMEM;
        }
        *f[i] = e->tls[i];
    }
    return 0;
}

int
mcos_etcd_create(uv_loop_t *loop, const char *endpoints,
                 const struct mcos_etcd_options *opt, struct mcos_etcd **out,
                 char *err, size_t errlen)
{
    struct mcos_etcd *e;
    struct curl_slist *h;
    int r;

    if (!loop || !endpoints || !out) {
        mcos_seterr(err, errlen, "etcd: no loop, endpoints or handle");
        return -EINVAL;
    }
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK) {
        mcos_seterr(err, errlen, "curl_global_init: %s",
                    curl_easy_strerror(curl_init_rc));
        return -ENOMEM;
    }
    e = calloc(1, sizeof *e);
    if (!e) {
        mcos_seterr(err, errlen, "etcd: out of memory");
        return -ENOMEM;
    }
    e->loop = loop;
    e->rl = (struct mcos_ratelimit)MCOS_RATELIMIT_INIT(5000, 5);
    if (opt) {
        e->opt = *opt;
    }
    if (!e->opt.request_timeout_ms) {
        e->opt.request_timeout_ms = DEFAULT_REQUEST_TIMEOUT_MS;
    }
    if (!e->opt.connect_timeout_ms) {
        e->opt.connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    }
    if (!e->opt.watch_idle_ms) {
        e->opt.watch_idle_ms = DEFAULT_WATCH_IDLE_MS;
    }
    if (!e->opt.max_request_bytes) {
        e->opt.max_request_bytes = MCOS_ETCD_MAX_REQUEST_BYTES;
    }
    if (!e->opt.max_response_bytes) {
        e->opt.max_response_bytes = DEFAULT_MAX_RESPONSE;
    }
    r = parse_endpoints(e, endpoints, err, errlen);
    if (r) {
        goto fail_endpoints;
    }
    r = setup_tls(e, err, errlen);
    if (r) {
        goto fail_endpoints;
    }
    h = curl_slist_append(NULL, "Content-Type: application/json");
    /* No "Expect: 100-continue" round trip before larger bodies. */
    e->headers = h ? curl_slist_append(h, "Expect:") : NULL;
    if (!e->headers) {
        curl_slist_free_all(h);
        r = -ENOMEM;
        mcos_seterr(err, errlen, "etcd: out of memory");
        goto fail_endpoints;
    }
    e->multi = curl_multi_init();
    if (!e->multi) {
        r = -ENOMEM;
        mcos_seterr(err, errlen, "etcd: curl_multi_init failed");
        goto fail_headers;
    }
    curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(e->multi, CURLMOPT_SOCKETDATA, e);
    curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(e->multi, CURLMOPT_TIMERDATA, e);
    r = uv_timer_init(loop, &e->timer);
    if (r) {
        mcos_seterr(err, errlen, "etcd: uv_timer_init: %s", uv_strerror(r));
        goto fail_multi;
    }
    e->timer.data = e;
    *out = e;
    return 0;

fail_multi:
    curl_multi_cleanup(e->multi);
fail_headers:
    curl_slist_free_all(e->headers);
fail_endpoints:
    free_tls(e);
    free_endpoints(e);
    free(e);
    return r;
}

int
mcos_etcd_check(const char *endpoints, const struct mcos_etcd_options *opt,
                char *err, size_t errlen)
{
    struct mcos_etcd *e = calloc(1, sizeof *e);
    int r;

    if (!e) {
        mcos_seterr(err, errlen, "etcd: out of memory");
        return -ENOMEM;
    }
    if (opt) {
        e->opt = *opt;
    }
    r = parse_endpoints(e, endpoints ? endpoints : "", err, errlen);
    if (r == 0) {
        r = setup_tls(e, err, errlen);
    }
    free_tls(e);
    free_endpoints(e);
    free(e);
    return r;
}

int
mcos_etcd_config_check(const char *endpoints, const char *ca_file,
                       const char *cert_file, const char *key_file, char *err,
                       size_t errlen)
{
    struct mcos_etcd_options o =
        mcos_etcd_tls_options(ca_file, cert_file, key_file);

    if (!endpoints || !*endpoints) {
        if ((ca_file && *ca_file) || (cert_file && *cert_file) ||
            (key_file && *key_file)) {
            mcos_seterr(err, errlen,
                        "etcd TLS files are set but etcd.endpoints is empty");
            return -EINVAL;
        }
        return 0;
    }
    return mcos_etcd_check(endpoints, &o, err, errlen);
}

/* Runs on the loop after mcos_etcd_close: every operation left gets its
 * -ECANCELED callback, then the client is freed. */
static void
client_closed(uv_handle_t *h)
{
    struct mcos_etcd *e = h->data;

    while (e->reqs) {
        struct req *r = e->reqs;
        char msg[MSG_LEN];

        req_unlink(r);
        snprintf(msg, sizeof msg, "etcd: %s: cancelled: client closed",
                 r->what);
        req_finish(r, -ECANCELED, NULL, msg);
    }
    while (e->watches) {
        struct mcos_etcd_watch *w = e->watches;
        char msg[MSG_LEN];

        snprintf(msg, sizeof msg, "etcd: %s: cancelled: client closed",
                 w->req->what);
        watch_end(w, -ECANCELED, msg, 0);
    }
    while (e->keepalives) {
        struct mcos_etcd_keepalive *ka = e->keepalives;
        char msg[MSG_LEN];

        snprintf(msg, sizeof msg,
                 "etcd: keepalive of lease %" PRId64
                 ": cancelled: client closed",
                 ka->id);
        keepalive_end(ka, -ECANCELED, msg);
    }
    curl_slist_free_all(e->headers);
    free_tls(e);
    free_endpoints(e);
    free(e);
}

void
mcos_etcd_close(struct mcos_etcd *e)
{
    if (!e || e->closing) {
        return;
    }
    e->closing = true;
    /* Stop every transfer now; callbacks come from client_closed. */
    for (struct req *r = e->reqs; r; r = r->next) {
        req_detach(r);
    }
    for (struct mcos_etcd_watch *w = e->watches; w; w = w->next) {
        req_detach(w->req);
        req_free(w->probe);
        w->probe = NULL;
        uv_timer_stop(&w->idle);
    }
    for (struct mcos_etcd_keepalive *ka = e->keepalives; ka; ka = ka->next) {
        req_free(ka->req);
        ka->req = NULL;
        uv_timer_stop(&ka->timer);
    }
    curl_multi_cleanup(e->multi);
    e->multi = NULL;
    while (e->socks) {
        sock_close(e->socks);
    }
    uv_timer_stop(&e->timer);
    uv_close((uv_handle_t *)&e->timer, client_closed);
}

const char *
mcos_etcd_last_error(const struct mcos_etcd *e)
{
    return e ? e->last_error : "etcd: no client";
}

void
mcos_etcd_get_stats(const struct mcos_etcd *e, struct mcos_etcd_stats *out)
{
    *out = e->stats;
}
