#include "election.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "error.h"
#include "etcd.h"
#include "ids.h"
#include "log.h"

MCOS_LOG_MODULE(election);

#define MIN_MARGIN_US   250000u
#define MAX_MARGIN_US   2000000u
#define HEALTH_EVERY_MS 2000u
#define STOP_REVOKE_MS  1000u
#define WATCH_PREFIX    "/mcos/"
#define LEADER_KEY      BRAIN_ELECTION_LEADER_KEY
#define GEN_KEY         BRAIN_ELECTION_GEN_KEY
#define BRAINS_PREFIX   BRAIN_ELECTION_BRAINS_PREFIX
#define CONFIG_PREFIX   BRAIN_ELECTION_CONFIG_PREFIX
#define KLEN(s)         (sizeof(s) - 1)

/* etcd errors repeat every retry while it is unreachable. */
static struct mcos_ratelimit retry_rl = MCOS_RATELIMIT_INIT(5000, 5);

/* ------------------------------------------------------------------------
 * The lease guard. */

uint64_t
brain_elect_margin_us(uint64_t ttl_us)
{
    uint64_t m = ttl_us / 4;

    return m < MIN_MARGIN_US   ? MIN_MARGIN_US
           : m > MAX_MARGIN_US ? MAX_MARGIN_US
                               : m;
}

void
brain_elect_sm_init(struct brain_elect_sm *sm, uint64_t ttl_us)
{
    memset(sm, 0, sizeof *sm);
    sm->state = BRAIN_ELECT_IDLE;
    sm->ttl_us = ttl_us;
    sm->margin_us = brain_elect_margin_us(ttl_us);
}

void
brain_elect_sm_renewed(struct brain_elect_sm *sm, uint64_t deadline_us)
{
    if (deadline_us > sm->deadline_us) {
        sm->deadline_us = deadline_us;
    }
    if (sm->state == BRAIN_ELECT_IDLE) {
        sm->state = BRAIN_ELECT_STANDBY;
    }
}

bool
brain_elect_sm_may_lead(const struct brain_elect_sm *sm, uint64_t now)
{
    return sm->state == BRAIN_ELECT_LEADER &&
           now + sm->margin_us < sm->deadline_us;
}

void
brain_elect_sm_won(struct brain_elect_sm *sm, uint64_t now)
{
    if (sm->state == BRAIN_ELECT_IDLE) {
        return;
    }
    sm->state = BRAIN_ELECT_LEADER;
    if (!brain_elect_sm_may_lead(sm, now)) {
        sm->state = BRAIN_ELECT_STANDBY;
    }
}

void
brain_elect_sm_lost(struct brain_elect_sm *sm)
{
    if (sm->state == BRAIN_ELECT_LEADER) {
        sm->state = BRAIN_ELECT_STANDBY;
    }
}

void
brain_elect_sm_lease_lost(struct brain_elect_sm *sm)
{
    sm->state = BRAIN_ELECT_IDLE;
    sm->deadline_us = 0;
}

bool
brain_elect_sm_tick(struct brain_elect_sm *sm, uint64_t now)
{
    if (sm->state == BRAIN_ELECT_LEADER && !brain_elect_sm_may_lead(sm, now)) {
        brain_elect_sm_lease_lost(sm);
        return true;
    }
    return false;
}

/* ------------------------------------------------------------------------
 * The etcd side. */

struct brain_election {
    uv_loop_t *loop;                /* our loop */
    struct mcos_etcd *etcd;         /* our client */
    char *name;                     /* this brain */
    char *bus;                      /* its bus URL */
    char *http;                     /* its HTTP URL */
    char *endpoints;                /* etcd's */
    uint64_t ttl_s;                 /* lease TTL */
    char *me;                       /* the leader key's value we write */
    struct brain_election_cbs cbs;  /* the brain's callbacks */
    void *arg;                      /* their argument */
    struct brain_elect_sm sm;       /* the lease guard */
    int64_t lease;                  /* our lease, 0 for none */
    uint64_t grant_sent_us;         /* when the grant was asked for */
    struct mcos_etcd_keepalive *ka; /* renewing `lease`, or NULL */
    bool leading;                   /* we told the brain it leads */
    int64_t claim_rev;              /* create_revision of our claim */
    bool campaigning;               /* a campaign txn is in flight */
    struct mcos_etcd_watch *w;      /* the watch on /mcos/, or NULL */
    int64_t next_rev;               /* where the watch resumes, 0: read */
    bool watching;                  /* the watch is established */
    char *leader_name;              /* who leads, NULL: nobody */
    char *leader_bus;               /* its bus URL */
    char *leader_http;              /* its HTTP URL */
    int64_t leader_rev;             /* create_revision of the key */
    json_t *brains;                 /* name -> {"bus", "http"} */
    json_t *health;                 /* the last endpoint health */
    bool health_pending;            /* a status request is in flight */
    uint64_t health_at;             /* loop ms of the last one */
    uv_timer_t retry;               /* runs start_over() */
    unsigned pending;               /* request callbacks still to come */
    bool timer_closed;              /* `retry` is closed */
    bool etcd_closed;               /* the client is closed */
    bool stopping;                  /* brain_election_stop was called */
};

static void start_over(struct brain_election *);
static void campaign(struct brain_election *);
static void read_state(struct brain_election *);

static uint64_t
now_us(const struct brain_election *el)
{
    return uv_now(el->loop) * 1000;
}

static void
free_if_done(struct brain_election *el)
{
    if (el->stopping && el->timer_closed && el->pending == 0) {
        free(el->name);
        free(el->bus);
        free(el->http);
        free(el->endpoints);
        free(el->me);
        free(el->leader_name);
        free(el->leader_bus);
        free(el->leader_http);
        json_decref(el->brains);
        json_decref(el->health);
        free(el);
    }
}

/* Bookkeeping for every one-shot request: true when the election is
 * stopping and the callback must do nothing else. */
static bool
returned(struct brain_election *el)
{
    el->pending--;
    if (el->stopping) {
        free_if_done(el);
        return true;
    }
    return false;
}

static void
on_retry(uv_timer_t *t)
{
    struct brain_election *el = t->data;

    if (!el->lease) {
        start_over(el);
    } else if (!el->w) {
        read_state(el);
    } else if (!el->leader_name && !el->campaigning) {
        campaign(el);
    }
}

static void
retry_later(struct brain_election *el)
{
    if (!el->stopping && !uv_is_active((uv_handle_t *)&el->retry)) {
        uv_timer_start(&el->retry, on_retry, BRAIN_ELECTION_RETRY_MS, 0);
    }
}

static void
set_leader(struct brain_election *el, const char *value, size_t len,
           int64_t create_rev)
{
    json_t *doc = value ? json_loadb(value, len, 0, NULL) : NULL;
    const char *name = json_string_value(json_object_get(doc, "name"));
    const char *bus = json_string_value(json_object_get(doc, "bus"));
    const char *http = json_string_value(json_object_get(doc, "http"));
    bool changed;

    free(el->leader_bus);
    free(el->leader_http);
    el->leader_bus = el->leader_http = NULL;
    if (!value) {
        changed = el->leader_name != NULL;
        free(el->leader_name);
        el->leader_name = NULL;
        el->leader_rev = 0;
        if (changed) {
            LOG_INFO("no brain leads now");
        }
        return;
    }
    /* The key's value comes from another process: take only what reads
     * as ours, and show the rest as unreadable. */
    changed = !el->leader_name || el->leader_rev != create_rev;
    free(el->leader_name);
    el->leader_name = strdup(name && *name ? name : "(unreadable)");
    el->leader_bus = strdup(bus ? bus : "");
    el->leader_http = strdup(http ? http : "");
    el->leader_rev = create_rev;
    json_decref(doc);
    if (changed && create_rev != el->claim_rev) {
        LOG_INFO("brain %s leads (bus %s, HTTP %s)",
                 el->leader_name ? el->leader_name : "?",
                 el->leader_bus ? el->leader_bus : "?",
                 el->leader_http ? el->leader_http : "?");
    }
}

/* We stop leading, for `why`; the brain stops pushing at once. */
static void
depose(struct brain_election *el, const char *why)
{
    brain_elect_sm_lost(&el->sm);
    if (el->claim_rev && el->leader_rev == el->claim_rev) {
        /* The key may outlive us for a while, but it leads no more. */
        set_leader(el, NULL, 0, 0);
    }
    el->claim_rev = 0;
    if (el->leading) {
        el->leading = false;
        LOG_WARN("stepping down: %s", why);
        el->cbs.deposed(el->arg, why);
    }
}

/* The lease is gone or must be given up: stop leading, stop renewing,
 * revoke it (best effort, so the leader key goes at once when etcd can
 * hear us), and start over with a new one. */
static void
drop_lease(struct brain_election *el, const char *why)
{
    depose(el, why);
    brain_elect_sm_lease_lost(&el->sm);
    if (el->ka) {
        mcos_etcd_keepalive_stop(el->ka);
        el->ka = NULL;
    }
    if (el->lease) {
        /* Nobody needs the answer: if etcd cannot hear us, the lease
         * expires by itself. */
        mcos_etcd_lease_revoke(el->etcd, el->lease, NULL, NULL);
        el->lease = 0;
    }
    retry_later(el);
}

static void
on_lease_lost(const struct mcos_etcd_result *res, void *arg)
{
    struct brain_election *el = arg;
    char why[512];

    el->ka = NULL;
    if (el->stopping || res->status == -ECANCELED) {
        return;
    }
    snprintf(why, sizeof why, "lease lost: %s", res->error);
    drop_lease(el, why);
}

/* ------------------------------------------------------------------------
 * Campaign: claim the leader key if nobody holds it. */

static void
on_campaign(const struct mcos_etcd_result *res, void *arg)
{
    struct brain_election *el = arg;
    uint64_t gen = 0;

    el->campaigning = false;
    if (returned(el)) {
        return;
    }
    if (res->status) {
        LOG_WARN_RL(&retry_rl, "campaign failed: %s", res->error);
        retry_later(el);
        return;
    }
    if (!res->succeeded) {
        const struct mcos_etcd_op_result *op = res->n_ops ? &res->ops[0] : 0;

        if (op && op->n_kvs) {
            set_leader(el, op->kvs[0].value, op->kvs[0].value_len,
                       op->kvs[0].create_revision);
        } else {
            /* Gone between the compare and the read: try again. */
            set_leader(el, NULL, 0, 0);
            retry_later(el);
        }
        return;
    }
    /* The put created the key in this transaction's revision. */
    el->claim_rev = res->revision;
    if (res->n_ops >= 2 && res->ops[1].n_kvs) {
        const struct mcos_etcd_kv *kv = &res->ops[1].kvs[0];

        if (kv->value_len == strlen(kv->value) &&
            mcos_parse_uint(kv->value, &gen)) {
            LOG_ERR("%s holds '%.40s', not a generation: starting from 0",
                    GEN_KEY, kv->value);
            gen = 0;
        }
    }
    set_leader(el, el->me, strlen(el->me), res->revision);
    brain_elect_sm_won(&el->sm, now_us(el));
    if (el->sm.state != BRAIN_ELECT_LEADER) {
        drop_lease(el, "won with a lease too close to its expiry");
        return;
    }
    el->leading = true;
    LOG_INFO("elected leader (lease %" PRIx64 ", generation %" PRIu64 ")",
             (uint64_t)el->lease, gen);
    el->cbs.elected(el->arg, gen);
}

static void
campaign(struct brain_election *el)
{
    struct mcos_etcd_compare free_ = {
        .key = LEADER_KEY,
        .key_len = KLEN(LEADER_KEY),
        .target = MCOS_ETCD_CMP_CREATE,
        .result = MCOS_ETCD_CMP_EQUAL,
    };
    struct mcos_etcd_op claim[2] = {
        {.type = MCOS_ETCD_OP_PUT,
         .key = LEADER_KEY,
         .key_len = KLEN(LEADER_KEY),
         .value = el->me,
         .value_len = strlen(el->me),
         .lease = el->lease},
        {.type = MCOS_ETCD_OP_RANGE, .key = GEN_KEY, .key_len = KLEN(GEN_KEY)},
    };
    struct mcos_etcd_op who = {.type = MCOS_ETCD_OP_RANGE,
                               .key = LEADER_KEY,
                               .key_len = KLEN(LEADER_KEY)};
    struct mcos_etcd_txn t = {&free_, 1, claim, 2, &who, 1};

    if (el->campaigning || !el->lease || el->leading) {
        return;
    }
    if (mcos_etcd_txn(el->etcd, &t, on_campaign, el)) {
        LOG_WARN_RL(&retry_rl, "cannot campaign: %s",
                    mcos_etcd_last_error(el->etcd));
        retry_later(el);
        return;
    }
    el->campaigning = true;
    el->pending++;
}

/* ------------------------------------------------------------------------
 * Watching /mcos/: the leader key, the brains, the configuration. */

static void
brain_seen(struct brain_election *el, const struct mcos_etcd_kv *kv, bool gone)
{
    const char *name = kv->key + KLEN(BRAINS_PREFIX);
    json_t *doc;

    if (strlen(name) != kv->key_len - KLEN(BRAINS_PREFIX) ||
        !mcos_node_name_valid(name)) {
        return;
    }
    if (gone) {
        json_object_del(el->brains, name);
        return;
    }
    doc = json_loadb(kv->value, kv->value_len, 0, NULL);
    if (!json_is_object(doc)) {
        json_decref(doc);
        doc = json_pack("{s:s}", "error", "unreadable registration");
    }
    json_object_set_new(el->brains, name, doc);
}

static void
config_seen(struct brain_election *el, const struct mcos_etcd_kv *kv,
            bool gone)
{
    const char *key = kv->key + KLEN(CONFIG_PREFIX);

    if (strlen(key) != kv->key_len - KLEN(CONFIG_PREFIX) ||
        (!gone && strlen(kv->value) != kv->value_len)) {
        LOG_WARN_RL(&retry_rl, "ignoring %.*s: not text", (int)kv->key_len,
                    kv->key);
        return;
    }
    el->cbs.config(el->arg, key, gone ? NULL : kv->value);
}

/* One key under /mcos/, from the first read or the watch. */
static void
key_seen(struct brain_election *el, const struct mcos_etcd_kv *kv, bool gone)
{
    if (kv->key_len == KLEN(LEADER_KEY) &&
        !memcmp(kv->key, LEADER_KEY, kv->key_len)) {
        if (gone) {
            set_leader(el, NULL, 0, 0);
            if (el->leading) {
                depose(el, "the leader key was deleted");
            }
            campaign(el);
        } else {
            set_leader(el, kv->value, kv->value_len, kv->create_revision);
            if (el->leading && kv->create_revision != el->claim_rev) {
                depose(el, "another brain holds the leader key");
            }
        }
    } else if (kv->key_len > KLEN(BRAINS_PREFIX) &&
               !memcmp(kv->key, BRAINS_PREFIX, KLEN(BRAINS_PREFIX))) {
        brain_seen(el, kv, gone);
    } else if (kv->key_len > KLEN(CONFIG_PREFIX) &&
               !memcmp(kv->key, CONFIG_PREFIX, KLEN(CONFIG_PREFIX))) {
        config_seen(el, kv, gone);
    }
}

static void
on_watch(const struct mcos_etcd_result *res, void *arg)
{
    struct brain_election *el = arg;

    if (el->stopping) {
        return;
    }
    if (res->status < 0) {
        el->w = NULL;
        el->watching = false;
        /* After a compaction the history is gone: read everything again. */
        el->next_rev = res->status == -ESTALE ? 0 : res->revision + 1;
        LOG_WARN_RL(&retry_rl, "watch on %s ended (%s); resuming",
                    WATCH_PREFIX, res->error);
        retry_later(el);
        return;
    }
    if (res->created) {
        el->watching = true;
    }
    for (size_t i = 0; i < res->n_events && !el->stopping; i++) {
        key_seen(el, &res->events[i].kv,
                 res->events[i].type == MCOS_ETCD_EVENT_DELETE);
    }
}

static void
watch_from(struct brain_election *el, int64_t rev)
{
    if (mcos_etcd_watch(el->etcd, WATCH_PREFIX, KLEN(WATCH_PREFIX), true, rev,
                        on_watch, el, &el->w)) {
        LOG_WARN_RL(&retry_rl, "cannot watch %s: %s", WATCH_PREFIX,
                    mcos_etcd_last_error(el->etcd));
        el->w = NULL;
        retry_later(el);
        return;
    }
    el->next_rev = rev;
}

/* The first read (and the one after a compaction): the leader, the brains
 * and the configuration at one revision, then a watch from the next. */
static void
on_state(const struct mcos_etcd_result *res, void *arg)
{
    struct brain_election *el = arg;

    if (returned(el)) {
        return;
    }
    if (res->status) {
        LOG_WARN_RL(&retry_rl, "cannot read the cluster state: %s",
                    res->error);
        retry_later(el);
        return;
    }
    json_object_clear(el->brains);
    set_leader(el, NULL, 0, 0);
    for (size_t i = 0; i < res->n_ops && !el->stopping; i++) {
        for (size_t k = 0; k < res->ops[i].n_kvs; k++) {
            key_seen(el, &res->ops[i].kvs[k], false);
        }
    }
    if (el->stopping) {
        return;
    }
    watch_from(el, res->revision + 1);
    if (el->leading && !el->leader_name) {
        depose(el, "the leader key is gone");
    } else if (el->leading && el->leader_rev != el->claim_rev) {
        depose(el, "another brain holds the leader key");
    }
    if (!el->leader_name) {
        campaign(el);
    }
}

static void
read_state(struct brain_election *el)
{
    struct mcos_etcd_op reads[3] = {
        {.type = MCOS_ETCD_OP_RANGE,
         .key = LEADER_KEY,
         .key_len = KLEN(LEADER_KEY)},
        {.type = MCOS_ETCD_OP_RANGE,
         .key = BRAINS_PREFIX,
         .key_len = KLEN(BRAINS_PREFIX),
         .prefix = true},
        {.type = MCOS_ETCD_OP_RANGE,
         .key = CONFIG_PREFIX,
         .key_len = KLEN(CONFIG_PREFIX),
         .prefix = true},
    };
    struct mcos_etcd_txn t = {NULL, 0, reads, 3, NULL, 0};

    if (el->w) {
        return;
    }
    if (el->next_rev) {
        watch_from(el, el->next_rev);
        return;
    }
    if (mcos_etcd_txn(el->etcd, &t, on_state, el)) {
        LOG_WARN_RL(&retry_rl, "cannot read the cluster state: %s",
                    mcos_etcd_last_error(el->etcd));
        retry_later(el);
        return;
    }
    el->pending++;
}

/* ------------------------------------------------------------------------
 * The lease and the registration. */

static void
on_registered(const struct mcos_etcd_result *res, void *arg)
{
    struct brain_election *el = arg;

    if (returned(el)) {
        return;
    }
    if (res->status) {
        LOG_WARN_RL(&retry_rl, "cannot register: %s", res->error);
        drop_lease(el, "cannot register");
        return;
    }
    LOG_INFO("registered as %s%s under lease %" PRIx64 " (TTL %" PRIu64 " s)",
             BRAINS_PREFIX, el->name, (uint64_t)el->lease, el->ttl_s);
    if (el->w) {
        /* The watch survived a lost lease: campaign if nobody leads. */
        if (!el->leader_name) {
            campaign(el);
        }
    } else {
        read_state(el);
    }
}

static void
on_grant(const struct mcos_etcd_result *res, void *arg)
{
    struct brain_election *el = arg;
    char key[KLEN(BRAINS_PREFIX) + MCOS_NODE_NAME_MAX + 1];
    int r;

    if (returned(el)) {
        return;
    }
    if (res->status) {
        LOG_WARN_RL(&retry_rl, "cannot get a lease: %s", res->error);
        retry_later(el);
        return;
    }
    el->lease = res->lease_id;
    brain_elect_sm_renewed(&el->sm,
                           el->grant_sent_us + (uint64_t)res->ttl * 1000000);
    /* Renew four times per TTL, so one lost renewal leaves room before
     * the step-down margin. */
    r = mcos_etcd_keepalive_start(el->etcd, el->lease, res->ttl,
                                  (uint32_t)(res->ttl * 1000 / 4),
                                  on_lease_lost, el, &el->ka);
    if (r) {
        LOG_WARN_RL(&retry_rl, "cannot renew lease %" PRIx64 ": %s",
                    (uint64_t)el->lease, mcos_etcd_last_error(el->etcd));
        drop_lease(el, "cannot renew the lease");
        return;
    }
    snprintf(key, sizeof key, "%s%s", BRAINS_PREFIX, el->name);
    if (mcos_etcd_put(el->etcd, key, strlen(key), el->me, strlen(el->me),
                      el->lease, on_registered, el)) {
        LOG_WARN_RL(&retry_rl, "cannot register: %s",
                    mcos_etcd_last_error(el->etcd));
        drop_lease(el, "cannot register");
        return;
    }
    el->pending++;
}

static void
start_over(struct brain_election *el)
{
    el->grant_sent_us = now_us(el);
    if (mcos_etcd_lease_grant(el->etcd, (int64_t)el->ttl_s, on_grant, el)) {
        LOG_WARN_RL(&retry_rl, "cannot ask for a lease: %s",
                    mcos_etcd_last_error(el->etcd));
        retry_later(el);
        return;
    }
    el->pending++;
}

/* ------------------------------------------------------------------------
 * Health of the endpoints, for status. */

static void
on_health(const struct mcos_etcd_result *res, void *arg)
{
    struct brain_election *el = arg;
    json_t *h;

    el->health_pending = false;
    if (returned(el)) {
        return;
    }
    h = json_array();
    for (size_t i = 0; h && i < res->n_members; i++) {
        const struct mcos_etcd_member *m = &res->members[i];

        json_array_append_new(
            h, json_pack("{s:s, s:b, s:s, s:s, s:b}", "endpoint", m->endpoint,
                         "healthy", m->status == 0 && m->leader != 0, "error",
                         m->status   ? m->error
                         : m->leader ? ""
                                     : "no raft leader",
                         "version", m->version ? m->version : "", "is_leader",
                         m->is_leader));
    }
    if (h) {
        json_decref(el->health);
        el->health = h;
    }
}

void
brain_election_tick(struct brain_election *el)
{
    uint64_t now;

    if (!el || el->stopping) {
        return;
    }
    now = uv_now(el->loop);
    if (el->ka) {
        brain_elect_sm_renewed(&el->sm,
                               mcos_etcd_keepalive_deadline(el->ka) * 1000);
    }
    if (brain_elect_sm_tick(&el->sm, now * 1000)) {
        char why[160];

        snprintf(why, sizeof why,
                 "lease %" PRIx64 " not renewed for longer than its TTL "
                 "less %" PRIu64 " ms: presumed lost",
                 (uint64_t)el->lease, el->sm.margin_us / 1000);
        drop_lease(el, why);
    }
    if (!el->health_pending && now - el->health_at >= HEALTH_EVERY_MS) {
        el->health_at = now;
        if (mcos_etcd_status(el->etcd, on_health, el) == 0) {
            el->health_pending = true;
            el->pending++;
        }
    }
}

/* ------------------------------------------------------------------------
 * Fenced writes. */

struct fenced {
    struct brain_election *el; /* owner */
    brain_election_done_cb cb; /* caller's */
    void *arg;                 /* its argument */
    int64_t claim_rev;         /* the claim the write was fenced on */
};

static void
on_fenced(const struct mcos_etcd_result *res, void *arg)
{
    struct fenced *f = arg;
    struct brain_election *el = f->el;
    brain_election_done_cb cb = f->cb;
    void *cb_arg = f->arg;
    int64_t claim_rev = f->claim_rev;

    free(f);
    if (returned(el)) {
        return;
    }
    if (res->status) {
        cb(cb_arg, res->status, res->error);
        return;
    }
    if (!res->succeeded) {
        /* Only the claim it was fenced on is lost: a write from an
         * earlier term must not depose a newer one. */
        if (claim_rev == el->claim_rev) {
            depose(el, "the leader key is no longer ours");
        }
        cb(cb_arg, -EREMOTE, "this brain no longer leads");
        return;
    }
    cb(cb_arg, 0, "");
}

static int
fenced_put(struct brain_election *el, const char *key, const char *value,
           brain_election_done_cb cb, void *arg)
{
    struct mcos_etcd_compare ours = {
        .key = LEADER_KEY,
        .key_len = KLEN(LEADER_KEY),
        .target = MCOS_ETCD_CMP_CREATE,
        .result = MCOS_ETCD_CMP_EQUAL,
        .number = el->claim_rev,
    };
    struct mcos_etcd_op put = {.type = MCOS_ETCD_OP_PUT,
                               .key = key,
                               .key_len = strlen(key),
                               .value = value,
                               .value_len = strlen(value)};
    struct mcos_etcd_txn t = {&ours, 1, &put, 1, NULL, 0};
    struct fenced *f;
    int r;

    if (!brain_election_leading(el)) {
        return -EREMOTE;
    }
    f = malloc(sizeof *f);
    if (!f) {
        return -ENOMEM;
    }
    *f = (struct fenced){el, cb, arg, el->claim_rev};
    r = mcos_etcd_txn(el->etcd, &t, on_fenced, f);
    if (r) {
        free(f);
        return r;
    }
    el->pending++;
    return 0;
}

int
brain_election_advance(struct brain_election *el, uint64_t gen,
                       brain_election_done_cb cb, void *arg)
{
    char v[24];

    snprintf(v, sizeof v, "%" PRIu64, gen);
    return fenced_put(el, GEN_KEY, v, cb, arg);
}

int
brain_election_config_put(struct brain_election *el, const char *key,
                          const char *value, brain_election_done_cb cb,
                          void *arg)
{
    char k[256];

    if (strlen(key) > 128) {
        return -EINVAL;
    }
    snprintf(k, sizeof k, "%s%s", CONFIG_PREFIX, key);
    return fenced_put(el, k, value, cb, arg);
}

/* ------------------------------------------------------------------------
 * Queries. */

bool
brain_election_leading(const struct brain_election *el)
{
    return el && el->leading &&
           brain_elect_sm_may_lead(&el->sm, uv_now(el->loop) * 1000);
}

const char *
brain_election_leader(const struct brain_election *el)
{
    return el ? el->leader_name : NULL;
}

const char *
brain_election_leader_bus(const struct brain_election *el)
{
    return el && el->leader_name ? el->leader_bus : NULL;
}

const char *
brain_election_leader_http(const struct brain_election *el)
{
    return el && el->leader_name ? el->leader_http : NULL;
}

json_t *
brain_election_status(const struct brain_election *el)
{
    json_t *brains = json_array();
    json_t *leader = json_null();
    json_t *health = el->health ? json_incref(el->health) : json_array();
    const char *name;
    json_t *v;

    json_object_foreach(el->brains, name, v)
    {
        bool is_leader = el->leader_name && !strcmp(name, el->leader_name);

        json_array_append_new(
            brains, json_pack("{s:s, s:O?, s:O?, s:s}", "name", name, "bus",
                              json_object_get(v, "bus"), "http",
                              json_object_get(v, "http"), "role",
                              is_leader ? "leader" : "standby"));
    }
    if (el->leader_name) {
        leader = json_pack("{s:s, s:s, s:s}", "name", el->leader_name, "bus",
                           el->leader_bus, "http", el->leader_http);
    }
    return json_pack("{s:s, s:o, s:o, s:s, s:b, s:b, s:o}", "name", el->name,
                     "leader", leader, "brains", brains, "endpoints",
                     el->endpoints, "watching", el->watching, "lease",
                     el->lease != 0, "health", health);
}

/* ------------------------------------------------------------------------
 * Life cycle. */

struct probe {
    uv_loop_t *loop; /* the private loop */
    bool done;       /* the answer came */
    int status;      /* its status */
    char err[512];   /* its message */
};

static void
on_probe(const struct mcos_etcd_result *res, void *arg)
{
    struct probe *p = arg;

    if (!p->done) {
        p->done = true;
        p->status = res->status;
        snprintf(p->err, sizeof p->err, "%s", res->error);
        uv_stop(p->loop);
    }
}

int
brain_election_probe(const char *endpoints,
                     const struct mcos_etcd_options *eopt, char *err,
                     size_t errlen)
{
    struct mcos_etcd_options opt = {0};
    struct probe p = {0};
    struct mcos_etcd *e;
    uv_loop_t loop;
    int r;

    if (eopt) {
        opt = *eopt;
    }
    opt.request_timeout_ms = 3000;
    p.loop = &loop;
    r = uv_loop_init(&loop);
    if (r) {
        mcos_seterr(err, errlen, "uv_loop_init: %s", uv_strerror(r));
        return r;
    }
    r = mcos_etcd_create(&loop, endpoints, &opt, &e, err, errlen);
    if (r == 0) {
        r = mcos_etcd_get(e, LEADER_KEY, KLEN(LEADER_KEY), false, on_probe,
                          &p);
        if (r) {
            mcos_seterr(err, errlen, "%s", mcos_etcd_last_error(e));
        }
        while (r == 0 && !p.done) {
            uv_run(&loop, UV_RUN_DEFAULT);
        }
        if (r == 0 && p.status) {
            r = p.status;
            mcos_seterr(err, errlen, "%s", p.err);
        }
        mcos_etcd_close(e);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    uv_loop_close(&loop);
    return r;
}

int
brain_election_start(uv_loop_t *loop, const struct mcos_clock *clock,
                     const struct brain_election_cfg *cfg,
                     const struct brain_election_cbs *cbs, void *arg,
                     struct brain_election **out, char *err, size_t errlen)
{
    struct brain_election *el;
    json_t *me;
    int r;

    (void)clock;
    el = calloc(1, sizeof *el);
    if (!el) {
        return -ENOMEM;
    }
    el->loop = loop;
    el->cbs = *cbs;
    el->arg = arg;
    el->ttl_s = cfg->ttl_s;
    el->name = strdup(cfg->name);
    el->bus = strdup(cfg->bus_url);
    el->http = strdup(cfg->http_url ? cfg->http_url : "");
    el->endpoints = strdup(cfg->endpoints);
    el->brains = json_object();
    me = json_pack("{s:s, s:s, s:s}", "name", cfg->name, "bus", cfg->bus_url,
                   "http", el->http ? el->http : "");
    el->me = me ? json_dumps(me, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(me);
    if (!el->name || !el->bus || !el->http || !el->endpoints || !el->brains ||
        !el->me) {
        r = -ENOMEM;
        goto fail;
    }
    brain_elect_sm_init(&el->sm, cfg->ttl_s * 1000000);
    r = mcos_etcd_create(loop, cfg->endpoints, cfg->etcd, &el->etcd, err,
                         errlen);
    if (r) {
        goto fail;
    }
    uv_timer_init(loop, &el->retry);
    el->retry.data = el;
    start_over(el);
    brain_election_tick(el);
    *out = el;
    return 0;

fail:
    el->stopping = true;
    el->timer_closed = true;
    free_if_done(el);
    return r;
}

static void
timer_closed(uv_handle_t *h)
{
    struct brain_election *el = h->data;

    el->timer_closed = true;
    free_if_done(el);
}

/* The last step of stopping: no more I/O. */
static void
finish_stop(struct brain_election *el)
{
    if (el->etcd_closed) {
        return;
    }
    el->etcd_closed = true;
    mcos_etcd_close(el->etcd);
    uv_close((uv_handle_t *)&el->retry, timer_closed);
}

static void
on_stop_timeout(uv_timer_t *t)
{
    finish_stop(t->data);
}

static void
on_revoked(const struct mcos_etcd_result *res, void *arg)
{
    struct brain_election *el = arg;

    if (res->status == 0) {
        LOG_INFO("lease %" PRIx64 " revoked: %s", (uint64_t)el->lease,
                 el->leading ? "the leader key is free" : "registration gone");
    }
    el->pending--;
    finish_stop(el);
    free_if_done(el);
}

void
brain_election_stop(struct brain_election *el)
{
    if (!el || el->stopping) {
        return;
    }
    el->stopping = true;
    if (el->ka) {
        mcos_etcd_keepalive_stop(el->ka);
        el->ka = NULL;
    }
    if (el->w) {
        mcos_etcd_watch_cancel(el->w);
        el->w = NULL;
    }
    /* A clean stop gives the lease back, so a standby need not wait out
     * the TTL; etcd gets STOP_REVOKE_MS to answer. */
    if (el->lease &&
        mcos_etcd_lease_revoke(el->etcd, el->lease, on_revoked, el) == 0) {
        el->pending++;
        uv_timer_start(&el->retry, on_stop_timeout, STOP_REVOKE_MS, 0);
        return;
    }
    finish_stop(el);
}
