#include "membership.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "etcd.h"
#include "ids.h"
#include "log.h"

MCOS_LOG_MODULE(membership);

#define PREFIX_LEN (sizeof MCOS_MEMBERSHIP_PREFIX - 1)

/* ------------------------------------------------------------------------
 * The agent's half: grant a lease, put the key on it, keep it alive, and
 * start over whenever any step fails or the lease is lost.
 */
struct mcos_member {
    struct mcos_etcd *etcd;                        /* our client */
    uv_timer_t retry;                              /* runs register_now() */
    char key[PREFIX_LEN + MCOS_NODE_NAME_MAX + 1]; /* /mcos/nodes/<node> */
    char *value;                                   /* what the key holds */
    int64_t ttl_s;                                 /* lease TTL asked for */
    int64_t lease;                                 /* the last lease granted */
    struct mcos_etcd_keepalive *ka; /* renewing `lease`, or NULL */
    bool stopping;                  /* mcos_member_stop was called */
    bool timer_closed;              /* the retry timer is closed */
    unsigned pending;               /* etcd callbacks still to come */
};

static void register_now(struct mcos_member *);
static void on_retry(uv_timer_t *);

static void
member_free_if_done(struct mcos_member *m)
{
    if (m->stopping && m->timer_closed && m->pending == 0) {
        free(m->value);
        free(m);
    }
}

static void
retry_later(struct mcos_member *m)
{
    if (!m->stopping) {
        uv_timer_start(&m->retry, on_retry, MCOS_MEMBERSHIP_RETRY_MS, 0);
    }
}

static void
on_lost(const struct mcos_etcd_result *res, void *arg)
{
    struct mcos_member *m = arg;

    m->ka = NULL;
    if (m->stopping || res->status == -ECANCELED) {
        return;
    }
    LOG_WARN("%s: lease %" PRIx64 " lost (%s); registering again", m->key,
             (uint64_t)res->lease_id, mcos_strerror(res->status));
    retry_later(m);
}

static void
on_put(const struct mcos_etcd_result *res, void *arg)
{
    struct mcos_member *m = arg;
    int r;

    m->pending--;
    if (m->stopping) {
        member_free_if_done(m);
        return;
    }
    if (res->status) {
        LOG_WARN("%s: cannot write the registration: %s", m->key, res->error);
        retry_later(m);
        return;
    }
    r = mcos_etcd_keepalive_start(m->etcd, m->lease, m->ttl_s, 0, on_lost, m,
                                  &m->ka);
    if (r) {
        LOG_WARN("%s: cannot renew lease %" PRIx64 ": %s", m->key,
                 (uint64_t)m->lease, mcos_strerror(r));
        retry_later(m);
        return;
    }
    LOG_INFO("%s registered under lease %" PRIx64 " (TTL %" PRId64 " s)",
             m->key, (uint64_t)m->lease, m->ttl_s);
}

static void
on_grant(const struct mcos_etcd_result *res, void *arg)
{
    struct mcos_member *m = arg;
    int r;

    m->pending--;
    if (m->stopping) {
        member_free_if_done(m);
        return;
    }
    if (res->status) {
        LOG_WARN("%s: cannot get a lease: %s", m->key, res->error);
        retry_later(m);
        return;
    }
    m->lease = res->lease_id;
    r = mcos_etcd_put(m->etcd, m->key, strlen(m->key), m->value,
                      strlen(m->value), m->lease, on_put, m);
    if (r) {
        LOG_WARN("%s: cannot write the registration: %s", m->key,
                 mcos_etcd_last_error(m->etcd));
        retry_later(m);
        return;
    }
    m->pending++;
}

static void
register_now(struct mcos_member *m)
{
    int r;

    r = mcos_etcd_lease_grant(m->etcd, m->ttl_s, on_grant, m);
    if (r) {
        LOG_WARN("%s: cannot ask for a lease: %s", m->key,
                 mcos_etcd_last_error(m->etcd));
        retry_later(m);
        return;
    }
    m->pending++;
}

static void
on_retry(uv_timer_t *t)
{
    register_now(t->data);
}

static void
member_timer_closed(uv_handle_t *h)
{
    struct mcos_member *m = h->data;

    m->timer_closed = true;
    member_free_if_done(m);
}

int
mcos_member_start(uv_loop_t *loop, const char *endpoints,
                  const struct mcos_etcd_options *opt, const char *node,
                  const char *value, int64_t ttl_s, struct mcos_member **out,
                  char *err, size_t errlen)
{
    struct mcos_member *m;
    int r;

    if (!node || !mcos_node_name_valid(node)) {
        mcos_seterr(err, errlen, "membership: bad node name '%s'",
                    node ? node : "");
        return -EINVAL;
    }
    if (ttl_s < 2 || ttl_s > 3600) {
        mcos_seterr(err, errlen,
                    "membership: lease TTL must be 2 to 3600 s, not %" PRId64,
                    ttl_s);
        return -EINVAL;
    }
    m = calloc(1, sizeof *m);
    if (!m) {
        return -ENOMEM;
    }
    m->value = strdup(value ? value : "");
    if (!m->value) {
        free(m);
        return -ENOMEM;
    }
    snprintf(m->key, sizeof m->key, "%s%s", MCOS_MEMBERSHIP_PREFIX, node);
    m->ttl_s = ttl_s;
    r = mcos_etcd_create(loop, endpoints, opt, &m->etcd, err, errlen);
    if (r) {
        free(m->value);
        free(m);
        return r;
    }
    uv_timer_init(loop, &m->retry);
    m->retry.data = m;
    register_now(m);
    *out = m;
    return 0;
}

void
mcos_member_stop(struct mcos_member *m)
{
    if (!m || m->stopping) {
        return;
    }
    m->stopping = true;
    if (m->ka) {
        mcos_etcd_keepalive_stop(m->ka);
        m->ka = NULL;
    }
    /* Pending grants and puts come back with -ECANCELED; the last frees. */
    mcos_etcd_close(m->etcd);
    uv_close((uv_handle_t *)&m->retry, member_timer_closed);
}

/* ------------------------------------------------------------------------
 * The brain's half: one watch on the prefix, resumed after the last
 * revision it delivered whenever the stream ends.
 */
struct mcos_members_watch {
    struct mcos_etcd *etcd;    /* our client */
    uv_timer_t retry;          /* runs watch_now() */
    struct mcos_etcd_watch *w; /* the stream, or NULL */
    mcos_member_gone_cb cb;    /* the brain's callback */
    void *arg;                 /* its argument */
    int64_t next_rev;          /* where to resume, 0: from now */
    bool watching;             /* the stream is established */
    bool stopping;             /* mcos_members_watch_stop was called */
};

static void watch_now(struct mcos_members_watch *);

static void
on_watch_retry(uv_timer_t *t)
{
    watch_now(t->data);
}

static void
on_watch(const struct mcos_etcd_result *res, void *arg)
{
    struct mcos_members_watch *mw = arg;

    if (mw->stopping) {
        return;
    }
    if (res->status < 0) {
        mw->w = NULL;
        mw->watching = false;
        /* Deletions older than the oldest kept revision are gone; the
         * brain's silence timer covers those nodes. */
        mw->next_rev = res->status == -ESTALE ? 0 : res->revision + 1;
        LOG_WARN("watch on %s ended (%s); resuming from %s",
                 MCOS_MEMBERSHIP_PREFIX, res->error,
                 mw->next_rev ? "the last revision seen" : "now");
        uv_timer_start(&mw->retry, on_watch_retry, MCOS_MEMBERSHIP_RETRY_MS,
                       0);
        return;
    }
    if (res->created) {
        mw->watching = true;
        LOG_INFO("watching %s at revision %" PRId64, MCOS_MEMBERSHIP_PREFIX,
                 res->revision);
    }
    for (size_t i = 0; i < res->n_events; i++) {
        const struct mcos_etcd_event *ev = &res->events[i];
        const char *node;

        if (ev->type != MCOS_ETCD_EVENT_DELETE ||
            ev->kv.key_len <= PREFIX_LEN) {
            continue;
        }
        /* Keys are NUL-terminated; one with a NUL inside is not ours. */
        node = ev->kv.key + PREFIX_LEN;
        if (strlen(node) != ev->kv.key_len - PREFIX_LEN ||
            !mcos_node_name_valid(node)) {
            continue;
        }
        mw->cb(node, mw->arg);
        if (mw->stopping) {
            return;
        }
    }
}

static void
watch_now(struct mcos_members_watch *mw)
{
    int r;

    r = mcos_etcd_watch(mw->etcd, MCOS_MEMBERSHIP_PREFIX, PREFIX_LEN, true,
                        mw->next_rev, on_watch, mw, &mw->w);
    if (r) {
        LOG_WARN("cannot watch %s: %s", MCOS_MEMBERSHIP_PREFIX,
                 mcos_etcd_last_error(mw->etcd));
        uv_timer_start(&mw->retry, on_watch_retry, MCOS_MEMBERSHIP_RETRY_MS,
                       0);
    }
}

int
mcos_members_watch_start(uv_loop_t *loop, const char *endpoints,
                         const struct mcos_etcd_options *opt,
                         mcos_member_gone_cb cb, void *arg,
                         struct mcos_members_watch **out, char *err,
                         size_t errlen)
{
    struct mcos_members_watch *mw;
    int r;

    mw = calloc(1, sizeof *mw);
    if (!mw) {
        return -ENOMEM;
    }
    r = mcos_etcd_create(loop, endpoints, opt, &mw->etcd, err, errlen);
    if (r) {
        free(mw);
        return r;
    }
    mw->cb = cb;
    mw->arg = arg;
    uv_timer_init(loop, &mw->retry);
    mw->retry.data = mw;
    watch_now(mw);
    *out = mw;
    return 0;
}

bool
mcos_members_watching(const struct mcos_members_watch *mw)
{
    return mw && mw->watching;
}

static void
watch_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

void
mcos_members_watch_stop(struct mcos_members_watch *mw)
{
    if (!mw || mw->stopping) {
        return;
    }
    mw->stopping = true;
    if (mw->w) {
        mcos_etcd_watch_cancel(mw->w);
        mw->w = NULL;
    }
    mcos_etcd_close(mw->etcd);
    uv_close((uv_handle_t *)&mw->retry, watch_timer_closed);
}
