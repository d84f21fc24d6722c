/*
 * etcd client: etcd's v3 JSON gateway (grpc-gateway, POST /v3/...) over
 * libcurl's multi interface, driven from a libuv loop.
 *
 * Where it sits: under the brain's cluster layer.  etcd holds only what must
 * survive a brain (membership leases, the leader key, configuration,
 * generation counters); this module is the one place that speaks to it and
 * the one place that translates curl, HTTP and etcd errors into negative
 * errno codes (see docs/etcd.md for the table).
 *
 * Every operation is asynchronous: the call validates its input, queues an
 * HTTP request and returns 0, and the callback runs later on the loop thread
 * with a struct mcos_etcd_result.  No call blocks the loop: curl's sockets
 * are polled with uv_poll_t and its timeouts run on a uv_timer_t.  Callbacks
 * never run from inside a call into this module.
 *
 * Endpoints: the client is given a comma-separated list of http:// (or
 * https://) URLs.  A request that cannot connect to one (refused, no route,
 * connect timeout, unresolvable) before anything was sent moves on to the
 * next, within the request's deadline, and the endpoint that answered
 * becomes the first one tried by later requests.  A request that reached a
 * server is never retried: a put whose answer was lost may have been
 * applied, and only the caller knows whether repeating it is safe.
 *
 * Lifetimes follow libuv.  mcos_etcd_close stops all I/O at once; every
 * operation still pending then gets exactly one last callback with
 * -ECANCELED, delivered from the loop (not from inside mcos_etcd_close),
 * and the memory is freed in close callbacks, so the loop must run once more
 * after close.  Watches and keepalives that the caller ended itself
 * (mcos_etcd_watch_cancel, mcos_etcd_keepalive_stop) get no callback at all.
 *
 * Thread-safety: none.  Call everything from the loop thread.
 */
#ifndef MCOS_ETCD_H
#define MCOS_ETCD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct mcos_etcd;
struct mcos_etcd_watch;
struct mcos_etcd_keepalive;

/* Room for a message from mcos_etcd_create. */
#define MCOS_ETCD_ERR_LEN 256

/* etcd's default --max-request-bytes: a put larger than this is refused by
 * the server, so the client refuses it first (-EMSGSIZE). */
#define MCOS_ETCD_MAX_REQUEST_BYTES 1572864u

/* At most this many endpoints in the list given to mcos_etcd_create. */
#define MCOS_ETCD_MAX_ENDPOINTS 16

/* Tunables; zero in any field picks its default.  A NULL options pointer
 * means all defaults. */
struct mcos_etcd_options {
    uint32_t request_timeout_ms; /* whole request, failover included: 5000 */
    uint32_t connect_timeout_ms; /* one connection attempt: 1000 */
    uint32_t watch_idle_ms;      /* stream silence before a probe: 30000 */
    size_t max_request_bytes;    /* server's request limit: 1.5 MiB */
    size_t max_response_bytes;   /* largest answer or stream line: 64 MiB */
    /* TLS, for https:// endpoints (NULL or "" = not set).  The server is
     * always verified: against ca_file when set, else the system's CA
     * store.  cert_file and key_file (PEM) authenticate this client to an
     * etcd run with --client-cert-auth; give both or neither.  The files
     * are checked at create and read again on each new connection, so
     * renewed certificates are picked up without a restart. */
    const char *ca_file;
    const char *cert_file;
    const char *key_file;
};

/* One key-value pair.  Keys and values are arbitrary bytes (NUL included);
 * each is also NUL-terminated for convenience.  Valid only during the
 * callback that delivers it. */
struct mcos_etcd_kv {
    const char *key;         /* key bytes */
    size_t key_len;          /* their length */
    const char *value;       /* value bytes ("" for keys_only/DELETE) */
    size_t value_len;        /* their length */
    int64_t create_revision; /* revision of the key's creation */
    int64_t mod_revision;    /* revision of its last change */
    int64_t version;         /* number of changes since creation */
    int64_t lease;           /* attached lease id, 0 for none */
};

enum mcos_etcd_event_type {
    MCOS_ETCD_EVENT_PUT,    /* key created or changed */
    MCOS_ETCD_EVENT_DELETE, /* key deleted (or its lease expired) */
};

/* One change seen by a watch. */
struct mcos_etcd_event {
    enum mcos_etcd_event_type type; /* what happened */
    struct mcos_etcd_kv kv;         /* the key after the change */
    bool has_prev;                  /* prev_kv is filled in */
    struct mcos_etcd_kv prev_kv;    /* the key before the change */
};

/* The operations a transaction branch may run. */
enum mcos_etcd_op_type {
    MCOS_ETCD_OP_RANGE,  /* read a key or a prefix */
    MCOS_ETCD_OP_PUT,    /* write a key */
    MCOS_ETCD_OP_DELETE, /* delete a key or a prefix */
};

/* The outcome of one operation inside a transaction. */
struct mcos_etcd_op_result {
    enum mcos_etcd_op_type type;    /* which operation */
    const struct mcos_etcd_kv *kvs; /* RANGE: the pairs read */
    size_t n_kvs;                   /* RANGE: how many */
    int64_t count;                  /* RANGE: keys in range; DELETE: gone */
};

/* One endpoint's health, from mcos_etcd_status. */
struct mcos_etcd_member {
    const char *endpoint;  /* the URL asked */
    int status;            /* 0, or why it did not answer */
    const char *error;     /* "" or the message */
    const char *version;   /* etcd's version, "" when unknown */
    uint64_t member_id;    /* the member that answered (etcd ids are
                              unsigned 64-bit) */
    uint64_t leader;       /* the leader it knows of, 0 for none */
    bool is_leader;        /* it is the leader itself */
    int64_t db_size;       /* backend size in bytes */
    int64_t db_size_inuse; /* bytes in use within it */
    int64_t raft_term;     /* current term */
    int64_t raft_index;    /* last committed index */
};

/*
 * What a callback receives.  Only the fields of the operation that ran are
 * set; the rest are zero.  Every pointer, the strings included, is valid
 * only during the callback.
 */
struct mcos_etcd_result {
    int status;           /* 0 or a negative errno (docs/etcd.md) */
    const char *error;    /* "" on success, else names endpoint and op */
    const char *endpoint; /* the endpoint that answered, or last tried */
    int64_t revision;     /* store revision after the op; watch: below */
    /* range, delete */
    const struct mcos_etcd_kv *kvs; /* pairs read */
    size_t n_kvs;                   /* how many */
    int64_t count;                  /* range: keys in range (> n_kvs with
                                       limit or count_only) */
    bool more;                      /* range: limit cut the answer short */
    int64_t deleted;                /* delete: keys removed */
    /* txn */
    bool succeeded;                        /* every compare held */
    const struct mcos_etcd_op_result *ops; /* the branch's results */
    size_t n_ops;                          /* how many */
    /* leases and keepalives */
    int64_t lease_id; /* the lease concerned */
    int64_t ttl;      /* granted or remaining TTL in seconds */
    /* watches */
    bool created;                         /* the stream is established */
    const struct mcos_etcd_event *events; /* changes, oldest first */
    size_t n_events;                      /* how many */
    int64_t compact_revision;             /* -ESTALE: oldest still kept */
    /* status */
    const struct mcos_etcd_member *members; /* one per endpoint, in order */
    size_t n_members;                       /* how many */
};

typedef void (*mcos_etcd_cb)(const struct mcos_etcd_result *, void *arg);

/* Counters that stay on in production (for /metrics). */
struct mcos_etcd_stats {
    uint64_t requests;         /* one-shot requests started */
    uint64_t failed;           /* of those, ended with an error */
    uint64_t failovers;        /* attempts moved on to the next endpoint */
    uint64_t watch_events;     /* events delivered to watches */
    uint64_t watches_broken;   /* watches ended by an error (not cancel) */
    uint64_t keepalives;       /* lease renewals acknowledged */
    uint64_t keepalive_errors; /* renewals that failed (transient) */
    uint64_t leases_lost;      /* keepalives ended: lease gone or expired */
};

/* Creates a client on `loop` for `endpoints` ("http://h:p[,https://h:p]").
 * Nothing is contacted yet.  Returns 0, -EINVAL (bad endpoint list, TLS
 * files that cannot be read, or TLS files set while no endpoint is
 * https://; the reason in err) or -ENOMEM. */
int mcos_etcd_create(uv_loop_t *loop, const char *endpoints,
                     const struct mcos_etcd_options *opt,
                     struct mcos_etcd **out, char *err, size_t errlen);

/* What mcos_etcd_create would refuse in `endpoints` and `opt`, without
 * creating anything: for config checks.  Returns 0 or -EINVAL (-ENOMEM)
 * with the reason in err. */
int mcos_etcd_check(const char *endpoints, const struct mcos_etcd_options *opt,
                    char *err, size_t errlen);

/* The config table entries (common/config.h) of etcd.cacert, etcd.cert and
 * etcd.key, for a daemon whose config struct has char *etcd_cacert,
 * *etcd_cert and *etcd_key; OPT is the daemon's own entry macro. */
#define MCOS_ETCD_TLS_CONFIG_OPTS(OPT)                                        \
    OPT("etcd.cacert", "etcd-cacert", MCOS_CFG_STRING, etcd_cacert, 0, 0, "", \
        "CA bundle (PEM) that verifies https:// etcd endpoints (\"\": the "   \
        "system's)"),                                                         \
        OPT("etcd.cert", "etcd-cert", MCOS_CFG_STRING, etcd_cert, 0, 0, "",   \
            "client certificate (PEM) for an etcd with --client-cert-auth; "  \
            "needs etcd.key"),                                                \
        OPT("etcd.key", "etcd-key", MCOS_CFG_STRING, etcd_key, 0, 0, "",      \
            "private key (PEM) of etcd.cert")

/* A daemon's etcd settings (etcd.endpoints, etcd.cacert, etcd.cert,
 * etcd.key; "" or NULL = not set), checked as mcos_etcd_check does; TLS
 * files without endpoints are refused too. */
int mcos_etcd_config_check(const char *endpoints, const char *ca_file,
                           const char *cert_file, const char *key_file,
                           char *err, size_t errlen);

/* Options with the TLS files of a daemon's etcd.cacert, etcd.cert and
 * etcd.key settings (NULL or "" = not set), defaults otherwise. */
static inline struct mcos_etcd_options
mcos_etcd_tls_options(const char *ca_file, const char *cert_file,
                      const char *key_file)
{
    struct mcos_etcd_options o = {0};

    o.ca_file = ca_file;
    o.cert_file = cert_file;
    o.key_file = key_file;
    return o;
}

/* Stops everything (see the top of this file).  NULL is a no-op. */
void mcos_etcd_close(struct mcos_etcd *);

/* The message for the last call on this client that returned an error at
 * once (bad input, closing, no memory).  Never NULL. */
const char *mcos_etcd_last_error(const struct mcos_etcd *);

void mcos_etcd_get_stats(const struct mcos_etcd *, struct mcos_etcd_stats *);

/* The range end that selects every key starting with key[0..len): the
 * prefix with its last byte below 0xff incremented and the rest dropped;
 * "\0" (length 1, "every key >= key") when there is none.  `out` needs
 * max(len, 1) bytes.  Returns the range end's length. */
size_t mcos_etcd_prefix_end(const char *key, size_t len, char *out);

/*
 * One-shot operations.  Each returns 0 when the request is on its way (the
 * callback then runs exactly once) or a negative errno at once, with no
 * callback: -EINVAL (empty key, bad argument; see mcos_etcd_last_error),
 * -EMSGSIZE (over max_request_bytes), -ESHUTDOWN (client closing),
 * -ENOMEM.  `cb` may be NULL when the caller does not need the answer.
 * Keys and values are copied before the call returns.
 */

/* Writes key = value, attached to `lease` (0 for none).  Result: revision.
 */
int mcos_etcd_put(struct mcos_etcd *, const void *key, size_t key_len,
                  const void *value, size_t value_len, int64_t lease,
                  mcos_etcd_cb cb, void *arg);

/* A read.  Result: kvs, n_kvs, count, more, revision. */
struct mcos_etcd_range {
    const void *key;       /* first key (may be empty only with prefix) */
    size_t key_len;        /* its length */
    const void *range_end; /* end (exclusive); NULL: only `key` */
    size_t range_end_len;  /* its length */
    bool prefix;           /* every key starting with `key` (overrides
                              range_end; an empty key means all keys) */
    int64_t limit;         /* most pairs returned, 0: no limit */
    int64_t revision;      /* read at this revision, 0: the latest */
    bool keys_only;        /* leave the values out */
    bool count_only;       /* only the count */
};
int mcos_etcd_range(struct mcos_etcd *, const struct mcos_etcd_range *,
                    mcos_etcd_cb cb, void *arg);

/* Shorthand for a range on one key or one prefix. */
int mcos_etcd_get(struct mcos_etcd *, const void *key, size_t key_len,
                  bool prefix, mcos_etcd_cb cb, void *arg);

/* Deletes one key, or every key under a prefix.  Result: deleted. */
int mcos_etcd_delete(struct mcos_etcd *, const void *key, size_t key_len,
                     bool prefix, mcos_etcd_cb cb, void *arg);

/* Transactions: if every compare holds, run `success`, else `failure`. */
enum mcos_etcd_cmp_target {
    MCOS_ETCD_CMP_VERSION, /* the key's version (0: it does not exist) */
    MCOS_ETCD_CMP_CREATE,  /* its create_revision (0: does not exist) */
    MCOS_ETCD_CMP_MOD,     /* its mod_revision */
    MCOS_ETCD_CMP_VALUE,   /* its value */
    MCOS_ETCD_CMP_LEASE,   /* its lease id */
};
enum mcos_etcd_cmp_result {
    MCOS_ETCD_CMP_EQUAL,     /* target == operand */
    MCOS_ETCD_CMP_GREATER,   /* target > operand */
    MCOS_ETCD_CMP_LESS,      /* target < operand */
    MCOS_ETCD_CMP_NOT_EQUAL, /* target != operand */
};
struct mcos_etcd_compare {
    const void *key;                  /* the key compared */
    size_t key_len;                   /* its length (> 0) */
    enum mcos_etcd_cmp_target target; /* what of it */
    enum mcos_etcd_cmp_result result; /* how */
    int64_t number;                   /* operand for all but VALUE */
    const void *value;                /* operand for VALUE */
    size_t value_len;                 /* its length */
};
struct mcos_etcd_op {
    enum mcos_etcd_op_type type; /* what to run */
    const void *key;             /* on which key (or prefix) */
    size_t key_len;              /* its length */
    const void *value;           /* PUT: the value */
    size_t value_len;            /* PUT: its length */
    int64_t lease;               /* PUT: lease to attach, 0 for none */
    bool prefix;                 /* RANGE, DELETE: the whole prefix */
};
struct mcos_etcd_txn {
    const struct mcos_etcd_compare *compare; /* conditions, all must hold */
    size_t n_compare;                        /* how many */
    const struct mcos_etcd_op *success;      /* run when they hold */
    size_t n_success;                        /* how many */
    const struct mcos_etcd_op *failure;      /* run when one does not */
    size_t n_failure;                        /* how many */
};
/* Result: succeeded, ops (one per operation of the branch that ran),
 * revision. */
int mcos_etcd_txn(struct mcos_etcd *, const struct mcos_etcd_txn *,
                  mcos_etcd_cb cb, void *arg);

/* Grants a lease of `ttl_s` seconds (the server may round it up).  Result:
 * lease_id, ttl. */
int mcos_etcd_lease_grant(struct mcos_etcd *, int64_t ttl_s, mcos_etcd_cb cb,
                          void *arg);

/* Revokes a lease, deleting every key attached to it.  -ENOENT if there is
 * no such lease. */
int mcos_etcd_lease_revoke(struct mcos_etcd *, int64_t lease_id,
                           mcos_etcd_cb cb, void *arg);

/* A lease's remaining TTL.  Result: lease_id, ttl; -ENOENT if it has
 * expired or never existed. */
int mcos_etcd_lease_ttl(struct mcos_etcd *, int64_t lease_id, mcos_etcd_cb cb,
                        void *arg);

/* Compacts the history up to `revision`: watches and reads at older
 * revisions then fail with -ESTALE. */
int mcos_etcd_compact(struct mcos_etcd *, int64_t revision, mcos_etcd_cb cb,
                      void *arg);

/* Asks every endpoint for its status, in parallel, and calls back once with
 * members/n_members (one per endpoint, in list order).  status is 0 when at
 * least one endpoint answered, else the first endpoint's error. */
int mcos_etcd_status(struct mcos_etcd *, mcos_etcd_cb cb, void *arg);

/*
 * Keepalive: renews lease `lease_id` (granted with `ttl_s` seconds) every
 * `interval_ms` (0: a third of the TTL the server last granted), starting
 * at once.  A renewal that fails (etcd unreachable, timeout) is retried
 * sooner and counted, but not reported.  `lost_cb` runs once, when the
 * keepalive ends by itself:
 *   -ENOENT     etcd says the lease is gone (expired or revoked);
 *   -ETIMEDOUT  no renewal succeeded within the TTL: presumed expired;
 *   -ECANCELED  the client was closed.
 * The result carries lease_id and the last TTL granted.  After lost_cb the
 * handle is gone (stopping it from inside lost_cb is harmless);
 * mcos_etcd_keepalive_stop ends it earlier with no callback.
 */
int mcos_etcd_keepalive_start(struct mcos_etcd *, int64_t lease_id,
                              int64_t ttl_s, uint32_t interval_ms,
                              mcos_etcd_cb lost_cb, void *arg,
                              struct mcos_etcd_keepalive **out);
void mcos_etcd_keepalive_stop(struct mcos_etcd_keepalive *);

/* The loop time (uv_now, ms) until which the lease is known to live: the
 * send time of the last acknowledged renewal plus the TTL granted.  A
 * leader steps down before it (brain/election.h). */
uint64_t mcos_etcd_keepalive_deadline(const struct mcos_etcd_keepalive *);

/*
 * Watch: a long-lived POST /v3/watch on one key or prefix, from
 * `start_revision` (0: from now; older revisions are replayed first).  `cb`
 * runs on the loop:
 *   status 0, created: the stream is established (revision: the store's);
 *   status 0, n_events > 0: changes in order, with prev_kv when the server
 *     still had it (revision: the message's header revision);
 *   status < 0: the watch has ended and the handle is gone.  revision is
 *     the last revision whose events were all delivered: resume with
 *     start_revision = revision + 1.  -ESTALE: start_revision was
 *     compacted (compact_revision is the oldest kept); -ECONNRESET: the
 *     stream broke or the server closed it; -ETIMEDOUT: the stream was
 *     silent for watch_idle_ms and a probe to its endpoint failed;
 *     -EBADMSG: the server sent something that does not decode;
 *     -ECANCELED: the client was closed.
 * There is no overall timeout.  Returns 0 or a negative errno at once (no
 * callback), as the one-shot operations; cb must not be NULL.
 */
int mcos_etcd_watch(struct mcos_etcd *, const void *key, size_t key_len,
                    bool prefix, int64_t start_revision, mcos_etcd_cb cb,
                    void *arg, struct mcos_etcd_watch **out);

/* Ends a watch at once; its callback does not run again.  The handle is
 * gone after the final callback (calling this from inside that callback is
 * harmless, after it is not). */
void mcos_etcd_watch_cancel(struct mcos_etcd_watch *);

#endif /* MCOS_ETCD_H */
