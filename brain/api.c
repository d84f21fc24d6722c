/*
 * The brain's HTTP/JSON API (explain and query steps): nodes, status,
 * sync, tables, live configuration, and Prometheus metrics.  Handlers run
 * on the loop thread (see http.h) and read the model directly.  A standby
 * brain (etcd mode) answers /v1/status with 503 and refuses what only the
 * leader can do, naming the leader.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregate.h"
#include "brain.h"
#include "election.h"
#include "routing.h"
#include "error.h"
#include "membership.h"
#include "wire.h"

static json_t *
node_json(const struct brain *b, const struct brain_node *n, uint64_t now)
{
    const Mcos__Hello *h = n->hello;
    json_t *tiers = json_array(), *gpus = json_array(), *eps = json_array();
    json_t *regions = json_array();
    char boot[20];
    size_t routed;
    double routed_blocks;

    snprintf(boot, sizeof boot, "%016" PRIx64, n->boot_id.v);
    for (size_t i = 0; h && i < h->n_tiers; i++) {
        const Mcos__TierInfo *t = h->tiers[i];
        const struct brain_tier_usage *u = &n->tiers[t->kind];

        json_array_append_new(
            tiers, json_pack("{s:s, s:I, s:I, s:I, s:b, s:b, s:s}", "tier",
                             mcos_tier_name(t->kind), "capacity",
                             (json_int_t)u->capacity, "used",
                             (json_int_t)u->used, "objects",
                             (json_int_t)u->objects, "emulated", t->emulated,
                             "available", t->available, "note", t->note));
    }
    for (size_t i = 0; h && i < h->n_gpus; i++) {
        json_array_append_new(
            gpus,
            json_pack("{s:i, s:s, s:I, s:I}", "index", (int)h->gpus[i]->index,
                      "name", h->gpus[i]->name, "memory_bytes",
                      (json_int_t)h->gpus[i]->memory_bytes,
                      "l2_persist_max_bytes",
                      (json_int_t)h->gpus[i]->l2_persist_max_bytes));
    }
    for (size_t i = 0; h && i < h->n_endpoints; i++) {
        json_array_append_new(
            eps, json_pack("{s:s, s:s, s:i}", "transport",
                           mcos_transport_name(h->endpoints[i]->transport),
                           "address", h->endpoints[i]->address, "port",
                           (int)h->endpoints[i]->port));
    }
    /* Registered memory peers may reach: which tier each region covers
     * (0 from an agent before Region.tier: the arena). */
    for (size_t i = 0; h && i < h->n_regions; i++) {
        const Mcos__Region *g = h->regions[i];

        json_array_append_new(
            regions,
            json_pack("{s:s, s:i, s:I, s:s}", "transport",
                      mcos_transport_name(g->transport), "id", (int)g->id,
                      "length", (json_int_t)g->length, "tier",
                      g->tier == MCOS__TIER_KIND__TIER_HBM ? "hbm" : "dram"));
    }
    brain_routed_peek(&n->routed, now, b->cfg.route_hold_ms * 1000, &routed,
                      &routed_blocks);
    return json_pack(
        "{s:s, s:s, s:s, s:I, s:I, s:b, s:s, s:s, s:s, s:s, s:I, s:b, s:I, "
        "s:I, s:I, s:o, s:o, s:s, s:o, s:o, "
        "s:{s:i, s:i, s:f, s:I, s:i, s:I, s:f}, s:s}",
        "name", n->name, "state", brain_liveness_name(n->live), "boot_id",
        boot, "applied_gen", (json_int_t)n->applied_gen, "desired_gen",
        (json_int_t)(n->desired ? mcos_table_gen(n->desired) : 0), "in_sync",
        n->live != BRAIN_FAILED && n->applied_gen >= b->gen, "rack",
        h && h->labels ? h->labels->rack : "", "zone",
        h && h->labels ? h->labels->zone : "", "host",
        h && h->labels ? h->labels->host : "", "version", h ? h->version : "",
        "last_seen_ms", (json_int_t)((now - n->last_heard_us) / 1000), "stale",
        n->stale, "reports", (json_int_t)n->reports, "events",
        (json_int_t)n->events, "events_dropped", (json_int_t)n->events_dropped,
        "tiers", tiers, "gpus", gpus, "gpu_note", h ? h->gpu_note : "",
        "endpoints", eps, "regions", regions, "load", "queued",
        (int)n->queued_requests, "running", (int)n->running_requests,
        "cpu_load", n->cpu_load_milli / 1000.0, "queued_prefill_blocks",
        (json_int_t)n->queued_prefill_blocks, "engines", (int)n->engines,
        "routed", (json_int_t)routed, "routed_blocks", routed_blocks,
        "http_url", h ? h->http_url : "");
}

static void
get_nodes(struct mcos_http_request *req, void *arg)
{
    struct brain *b = arg;
    const char *path = mcos_http_request_path(req);
    uint64_t now = mcos_clock_now(b->clock);
    const char *rest = path + strlen("/v1/nodes");
    char name[MCOS_NODE_NAME_MAX + 2];
    const struct brain_node *n;
    const char *slash;
    json_t *list;

    if (*rest == '\0' || !strcmp(rest, "/")) {
        list = json_array();
        for (size_t i = 0; i < b->cluster.n; i++) {
            json_array_append_new(list,
                                  node_json(b, b->cluster.nodes[i], now));
        }
        mcos_http_respond_json(req, 200,
                               json_pack("{s:I, s:o}", "generation",
                                         (json_int_t)b->gen, "nodes", list));
        return;
    }
    /* /v1/nodes/NAME or /v1/nodes/NAME/table */
    rest++;
    slash = strchr(rest, '/');
    if ((size_t)(slash ? slash - rest : (long)strlen(rest)) >= sizeof name) {
        mcos_http_respond_error(req, 400, "bad node name");
        return;
    }
    snprintf(name, sizeof name, "%.*s",
             (int)(slash ? slash - rest : (long)strlen(rest)), rest);
    if (!mcos_node_name_valid(name)) {
        mcos_http_respond_error(req, 400, "bad node name '%s'", name);
        return;
    }
    n = brain_cluster_find(&b->cluster, name);
    if (!n) {
        mcos_http_respond_error(req, 404, "no node named '%s'", name);
        return;
    }
    if (!slash) {
        mcos_http_respond_json(req, 200, node_json(b, n, now));
    } else if (!strcmp(slash, "/table")) {
        char *dump;

        if (!n->desired) {
            mcos_http_respond_error(req, 404,
                                    "node '%s' has no table "
                                    "(failed, or not compiled yet)",
                                    name);
            return;
        }
        if (mcos_table_dump(n->desired, true, &dump)) {
            mcos_http_respond_error(req, 500, "out of memory");
            return;
        }
        mcos_http_respond(req, 200, "text/plain; charset=utf-8", dump,
                          strlen(dump));
        free(dump);
    } else {
        mcos_http_respond_error(req, 404, "no such resource: %s", path);
    }
}

/* Answers 503 naming the leader and returns true on a standby. */
static bool
not_leader(struct mcos_http_request *req, const struct brain *b)
{
    char msg[512];

    if (brain_leading(b)) {
        return false;
    }
    brain_not_leader_msg(b, msg, sizeof msg);
    mcos_http_respond_error(req, 503, "%s", msg);
    return true;
}

static void
get_status(struct mcos_http_request *req, void *arg)
{
    struct brain *b = arg;
    const struct brain_cluster *c = &b->cluster;
    uint64_t min_applied = UINT64_MAX;
    bool leading = brain_leading(b);
    json_t *doc, *etcd, *ha;

    for (size_t i = 0; i < c->n; i++) {
        if (c->nodes[i]->live != BRAIN_FAILED &&
            c->nodes[i]->applied_gen < min_applied) {
            min_applied = c->nodes[i]->applied_gen;
        }
    }
    if (min_applied == UINT64_MAX) {
        min_applied = 0;
    }
    doc = json_pack(
        "{s:s, s:s, s:s, s:s, s:I, s:b, s:I, s:s, s:s, s:I, "
        "s:{s:i, s:i, s:i, s:i}, s:{s:b, s:s, s:b}}",
        "version", MCOS_VERSION, "name", b->cfg.name, "role",
        leading ? "leader" : "standby", "mode",
        b->election ? "etcd" : "embedded", "generation", (json_int_t)b->gen,
        "converged", brain_converged(b, b->gen), "min_applied_gen",
        (json_int_t)min_applied, "listen", b->cfg.listen, "state_dir",
        b->cfg.state_dir, "uptime_s",
        (json_int_t)((mcos_clock_now(b->clock) - b->start_us) / 1000000),
        "nodes", "total", (int)c->n, "alive",
        (int)brain_cluster_count(c, BRAIN_ALIVE), "suspect",
        (int)brain_cluster_count(c, BRAIN_SUSPECT), "failed",
        (int)brain_cluster_count(c, BRAIN_FAILED), "etcd", "configured",
        b->members != NULL, "endpoints", b->cfg.etcd_endpoints, "watching",
        mcos_members_watching(b->members));
    if (!doc) {
        mcos_http_respond_error(req, 500, "out of memory");
        return;
    }
    etcd = json_object_get(doc, "etcd");
    if (b->election && (ha = brain_election_status(b->election))) {
        json_object_set(doc, "leader", json_object_get(ha, "leader"));
        json_object_set(doc, "brains", json_object_get(ha, "brains"));
        json_object_set(etcd, "health", json_object_get(ha, "health"));
        json_object_set(etcd, "election_watching",
                        json_object_get(ha, "watching"));
        json_object_set(etcd, "lease", json_object_get(ha, "lease"));
        json_object_set_new(doc, "failovers",
                            json_integer((json_int_t)b->failovers));
        json_decref(ha);
    } else {
        json_object_set_new(
            doc, "leader",
            json_pack("{s:s, s:s, s:s}", "name", b->cfg.name, "bus",
                      *b->cfg.advertise ? b->cfg.advertise : b->cfg.listen,
                      "http", b->cfg.http_listen));
        json_object_set_new(doc, "brains", json_array());
    }
    /* Readiness: load balancers (the Kubernetes Service) route only to
     * the leader. */
    mcos_http_respond_json(req, leading ? 200 : 503, doc);
}

/* --- Live configuration: GET /v1/config[/KEY], PUT /v1/config/KEY. --- */

struct brain_config_put {
    struct brain *b;               /* owner */
    struct mcos_http_request *req; /* answered when etcd is */
    char key[64];                  /* the key */
    char value[32];                /* its canonical value */
    struct brain_config_put *next; /* in b->config_puts */
};

static json_t *
config_entry(const struct brain *b, size_t i)
{
    const char *key = brain_config_live_keys[i];
    char v[32], err[256];

    if (brain_config_live_get(&b->cfg, key, v, sizeof v, err, sizeof err)) {
        return NULL;
    }
    return json_pack("{s:s, s:s, s:s}", "key", key, "value", v, "source",
                     b->live_from_etcd & (1u << i) ? "etcd" : "local");
}

static void
get_config(struct mcos_http_request *req, void *arg)
{
    struct brain *b = arg;
    const char *path = mcos_http_request_path(req);
    const char *key;
    char v[32], err[256];
    json_t *keys;
    int r;

    if (!strcmp(path, "/v1/config") || !strcmp(path, "/v1/config/")) {
        keys = json_array();
        for (size_t i = 0; brain_config_live_keys[i]; i++) {
            json_array_append_new(keys, config_entry(b, i));
        }
        mcos_http_respond_json(req, 200,
                               json_pack("{s:b, s:o}", "etcd",
                                         b->election != NULL, "keys", keys));
        return;
    }
    if (strncmp(path, "/v1/config/", 11)) {
        mcos_http_respond_error(req, 404, "no such resource: %s", path);
        return;
    }
    key = path + 11;
    r = brain_config_live_get(&b->cfg, key, v, sizeof v, err, sizeof err);
    if (r) {
        mcos_http_respond_error(req, r == -ENOENT ? 404 : 400, "%s", err);
        return;
    }
    for (size_t i = 0; brain_config_live_keys[i]; i++) {
        if (!strcmp(brain_config_live_keys[i], key)) {
            mcos_http_respond_json(req, 200, config_entry(b, i));
            return;
        }
    }
}

static void
config_put_done(void *arg, int status, const char *error)
{
    struct brain_config_put *p = arg, **pp;
    struct brain *b = p->b;

    for (pp = &b->config_puts; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    if (status == -EREMOTE) {
        not_leader(p->req, b);
    } else if (status) {
        mcos_http_respond_error(p->req, 503,
                                "%s: not stored, cannot write etcd: %s",
                                p->key, error);
    } else {
        mcos_http_respond_json(p->req, 200,
                               json_pack("{s:s, s:s, s:s}", "key", p->key,
                                         "value", p->value, "source", "etcd"));
    }
    free(p);
}

static json_t *load_body(struct mcos_http_request *, const char *, size_t);

static void
put_config(struct mcos_http_request *req, void *arg)
{
    struct brain *b = arg;
    const char *path = mcos_http_request_path(req);
    const char *key = path + strlen("/v1/config/");
    size_t len;
    const char *body = mcos_http_request_body(req, &len);
    struct brain_config tmp = b->cfg;
    struct brain_config_put *p;
    char canon[32], err[512], text[32];
    const char *value, *k;
    json_t *doc, *v;
    int r;

    if (strncmp(path, "/v1/config/", 11) || !*key) {
        mcos_http_respond_error(req, 400,
                                "PUT /v1/config/KEY: no key in the path");
        return;
    }
    doc = load_body(req, body, len);
    if (!doc) {
        return;
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        mcos_http_respond_error(req, 400, "body must be a JSON object");
        return;
    }
    json_object_foreach(doc, k, v)
    {
        if (strcmp(k, "value")) {
            mcos_http_respond_error(req, 400, "unknown key '%.64s'", k);
            json_decref(doc);
            return;
        }
    }
    v = json_object_get(doc, "value");
    if (json_is_integer(v)) {
        snprintf(text, sizeof text, "%" JSON_INTEGER_FORMAT,
                 json_integer_value(v));
        value = text;
    } else if (json_is_string(v)) {
        value = json_string_value(v);
    } else {
        json_decref(doc);
        mcos_http_respond_error(req, 400,
                                "'value' must be a string or an integer");
        return;
    }
    /* Validate against the whole configuration before anything is
     * written; the copy is shallow, and only a number changes in it. */
    r = brain_config_live_set(&tmp, key, value, "config set", canon,
                              sizeof canon, err, sizeof err);
    json_decref(doc);
    if (r) {
        mcos_http_respond_error(req, r == -ENOENT ? 404 : 400, "%s", err);
        return;
    }
    if (!b->election) {
        mcos_http_respond_error(req, 409,
                                "config set needs etcd: this brain runs "
                                "without etcd.endpoints (--etcd); change "
                                "its config file instead");
        return;
    }
    if (not_leader(req, b)) {
        return;
    }
    p = calloc(1, sizeof *p);
    if (!p) {
        mcos_http_respond_error(req, 500, "out of memory");
        return;
    }
    p->b = b;
    p->req = req;
    snprintf(p->key, sizeof p->key, "%s", key);
    snprintf(p->value, sizeof p->value, "%s", canon);
    r = brain_election_config_put(b->election, p->key, p->value,
                                  config_put_done, p);
    if (r) {
        free(p);
        if (r == -EREMOTE) {
            not_leader(req, b);
        } else {
            mcos_http_respond_error(req, 503, "%s: not stored: %s", key,
                                    mcos_strerror(r));
        }
        return;
    }
    p->next = b->config_puts;
    b->config_puts = p;
}

void
brain_api_close(struct brain *b)
{
    while (b->config_puts) {
        struct brain_config_put *p = b->config_puts;

        b->config_puts = p->next;
        mcos_http_respond_error(p->req, 503, "the brain is stopping");
        free(p);
    }
}

/* POST /v1/sync[?recompute=1]: a new generation now; with recompute, the
 * decide/compile graph runs every node from scratch. */
static void
post_sync(struct mcos_http_request *req, void *arg)
{
    struct brain *b = arg;
    const char *q = mcos_http_request_query(req);
    bool recompute = !strcmp(q, "recompute=1");
    int64_t gen;

    if (*q && !recompute && strcmp(q, "recompute=0")) {
        mcos_http_respond_error(req, 400,
                                "sync: unknown query '%.64s' (want "
                                "recompute=1 or nothing)",
                                q);
        return;
    }
    if (not_leader(req, b)) {
        return;
    }
    b->recompute = recompute;
    gen = brain_sync(b);
    if (gen < 0) {
        mcos_http_respond_error(req, 500,
                                "could not publish a new "
                                "generation: %s (see the brain's log)",
                                mcos_strerror((int)gen));
        return;
    }
    mcos_http_respond_json(req, 200,
                           json_pack("{s:I, s:b}", "generation",
                                     (json_int_t)gen, "recompute", recompute));
}

struct repl_json {
    struct brain *b; /* for names */
    json_t *list;    /* what we fill */
};

static const char *
idx_name(const struct brain *b, uint16_t idx)
{
    for (size_t i = 0; i < b->cluster.n; i++) {
        if (b->cluster.nodes[i]->idx == idx) {
            return b->cluster.nodes[i]->name;
        }
    }
    return "?";
}

static void
repl_one(const struct brain_repl_info *i, void *arg)
{
    struct repl_json *rj = arg;
    const char *ns = brain_kv_ns_name(rj->b->kv, i->ns);
    char obj[24], why[256];

    snprintf(obj, sizeof obj, "%016" PRIx64, i->object);
    snprintf(why, sizeof why,
             "hotness %.2f >= %.3f with %u live holder(s), below %u "
             "copies; %s",
             i->hotness, rj->b->repl.min_hotness_milli / 1000.0, i->holders,
             rj->b->repl.copies,
             i->other_rack ? "copied into a rack no holder was in"
                           : "no node in another rack could take it");
    json_array_append_new(
        rj->list,
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:f, s:i, s:b, s:s}", "ns",
                  ns ? ns : "?", "object", obj, "source",
                  idx_name(rj->b, i->source), "target",
                  idx_name(rj->b, i->target), "state", i->state, "hits",
                  (int)i->hits, "hotness", i->hotness, "holders",
                  (int)i->holders, "other_rack", i->other_rack, "why", why));
}

/* GET /v1/replication: the copies the brain decided, and why. */
static void
get_replication(struct mcos_http_request *req, void *arg)
{
    struct repl_json rj = {arg, json_array()};

    brain_graph_replicas(rj.b->graph, repl_one, &rj);
    mcos_http_respond_json(
        req, 200,
        json_pack("{s:o, s:i, s:i, s:i}", "replicas", rj.list, "copies",
                  (int)rj.b->repl.copies, "budget", (int)rj.b->repl.budget,
                  "interval_ms", (int)(rj.b->repl.interval_us / 1000)));
}

/* Parses a request body, or answers 400 saying where it is broken. */
static json_t *
load_body(struct mcos_http_request *req, const char *body, size_t len)
{
    json_error_t jerr;
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);

    if (!doc) {
        mcos_http_respond_error(req, 400,
                                "body is not valid JSON: line %d "
                                "column %d: %s",
                                jerr.line, jerr.column, jerr.text);
    }
    return doc;
}

static int
parse_hash(json_t *v, uint64_t *out)
{
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_string(v)) {
        const char *t = json_string_value(v);
        char *end;

        if (!strncmp(t, "0x", 2)) {
            t += 2;
        }
        if (!*t || strlen(t) > 16) {
            return -EINVAL;
        }
        errno = 0;
        *out = strtoull(t, &end, 16);
        return errno || *end ? -EINVAL : 0;
    }
    return -EINVAL;
}

/* POST /v1/replicate {"node": N, "object": "0x..", "peer": P, "tier": T}:
 * a replication task, compiled into N's table until P holds the object. */
static void
post_replicate(struct mcos_http_request *req, void *arg)
{
    struct brain *b = arg;
    size_t len;
    const char *body = mcos_http_request_body(req, &len);
    const char *node = NULL, *peer = NULL, *tier = "dram";
    json_t *doc, *obj = NULL;
    json_error_t jerr;
    uint64_t object;
    char err[256];
    int r, kind;

    if (not_leader(req, b)) {
        return;
    }
    doc = load_body(req, body, len);
    if (!doc) {
        return;
    }
    if (json_unpack_ex(doc, &jerr, JSON_STRICT, "{s:s, s:o, s:s, s?:s}",
                       "node", &node, "object", &obj, "peer", &peer, "tier",
                       &tier)) {
        mcos_http_respond_error(req, 400, "bad replicate request: %s",
                                jerr.text);
        json_decref(doc);
        return;
    }
    if (parse_hash(obj, &object)) {
        mcos_http_respond_error(req, 400,
                                "object: want a hex id (\"0x..\") or an "
                                "integer");
        json_decref(doc);
        return;
    }
    kind = mcos_tier_parse(tier);
    if (kind < 0) {
        mcos_http_respond_error(req, 400, "tier: unknown tier '%s'", tier);
        json_decref(doc);
        return;
    }
    r = brain_replica_add(&b->cluster, node, object, peer, kind, err,
                          sizeof err);
    if (r) {
        mcos_http_respond_error(req, r == -ENOENT ? 404 : 400, "%s", err);
        json_decref(doc);
        return;
    }
    brain_run(b);
    snprintf(err, sizeof err, "%016" PRIx64, object);
    mcos_http_respond_json(req, 200,
                           json_pack("{s:s, s:s, s:s, s:s, s:I}", "node", node,
                                     "object", err, "peer", peer, "tier",
                                     mcos_tier_name(kind), "generation",
                                     (json_int_t)b->gen));
    json_decref(doc);
}

/* POST /v1/route {"blocks": [...], "ns": "...", "output_len": N,
 * "rack": "..."}: the node to serve a request, and why (routing.h). */
static void
post_route(struct mcos_http_request *req, void *arg)
{
    struct brain *b = arg;
    size_t len, chain_len;
    const char *body = mcos_http_request_body(req, &len), *key, *rack = NULL;
    const char *ns_name = "default";
    struct brain_routing rt;
    uint64_t *chain = NULL;
    json_int_t output_len = 0;
    json_t *doc, *blocks = NULL, *v, *list;
    char err[256];
    int r;

    if (not_leader(req, b)) {
        return;
    }
    doc = load_body(req, body, len);
    if (!doc) {
        return;
    }
    if (!json_is_object(doc)) {
        mcos_http_respond_error(req, 400, "body must be a JSON object");
        goto out;
    }
    json_object_foreach(doc, key, v)
    {
        if (!strcmp(key, "blocks")) {
            blocks = v;
        } else if (!strcmp(key, "ns")) {
            if (!json_is_string(v)) {
                mcos_http_respond_error(req, 400, "'ns' must be a string");
                goto out;
            }
            ns_name = json_string_value(v);
        } else if (!strcmp(key, "output_len")) {
            if (!json_is_integer(v) || json_integer_value(v) < 0) {
                mcos_http_respond_error(req, 400,
                                        "'output_len' must be a "
                                        "non-negative integer");
                goto out;
            }
            output_len = json_integer_value(v);
        } else if (!strcmp(key, "rack")) {
            if (!json_is_string(v)) {
                mcos_http_respond_error(req, 400, "'rack' must be a string");
                goto out;
            }
            rack = json_string_value(v);
        } else {
            mcos_http_respond_error(req, 400, "unknown key '%.64s'", key);
            goto out;
        }
    }
    if (!json_is_array(blocks) || json_array_size(blocks) == 0 ||
        json_array_size(blocks) > BRAIN_ROUTE_MAX_BLOCKS) {
        mcos_http_respond_error(req, 400,
                                "'blocks' must be a non-empty "
                                "array of at most %d block hashes",
                                BRAIN_ROUTE_MAX_BLOCKS);
        goto out;
    }
    chain_len = json_array_size(blocks);
    chain = calloc(chain_len, sizeof *chain);
    if (!chain) {
        mcos_http_respond_error(req, 500, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < chain_len; i++) {
        if (parse_hash(json_array_get(blocks, i), &chain[i])) {
            mcos_http_respond_error(req, 400,
                                    "blocks[%zu]: expected a block "
                                    "hash (a non-negative integer or up to "
                                    "16 hex digits)",
                                    i);
            goto out;
        }
    }
    r = brain_routing_decide(b, ns_name, chain, chain_len, rack, &rt, err,
                             sizeof err);
    if (r) {
        mcos_http_respond_error(req,
                                r == -EINVAL   ? 400
                                : r == -EAGAIN ? 503
                                               : 500,
                                "%s", err);
        goto out;
    }
    list = json_array();
    for (size_t k = 0; k < rt.n; k++) {
        const struct brain_route_node *c = &rt.cand[rt.ranked[k]];
        const struct brain_route_score *sc = &rt.score[rt.ranked[k]];

        json_array_append_new(
            list,
            json_pack("{s:s, s:f, s:f, s:f, s:f, s:f, s:b, s:f, s:f, "
                      "s:{s:i, s:i, s:i}}",
                      "node", c->name, "cost", sc->cost, "prefill_blocks",
                      sc->prefill, "fetch", sc->fetch, "load_cost", sc->load,
                      "topology", sc->topology, "over_bound", sc->over_bound,
                      "load", c->load, "queued_blocks", c->queued_blocks,
                      "matched", "hbm", (int)c->matched_hbm, "dram",
                      (int)c->matched_dram, "total", (int)c->matched));
    }
    mcos_http_respond_json(
        req, 200,
        json_pack("{s:s, s:s, s:i, s:I, s:o, s:s, s:s}", "node",
                  rt.cand[rt.best].name, "ns", ns_name, "blocks",
                  (int)chain_len, "output_len", output_len, "ranked", list,
                  "explain", rt.explain, "replication", rt.replication));
    brain_routing_learn(b, &rt, chain, chain_len, (uint64_t)output_len);
    brain_routing_free(&rt);
out:
    free(chain);
    json_decref(doc);
}

static void
metric(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
get_metrics(struct mcos_http_request *req, void *arg)
{
    struct brain *b = arg;
    const struct brain_cluster *c = &b->cluster;
    const struct brain_counters *k = &b->counters;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    if (!f) {
        mcos_http_respond_error(req, 500, "out of memory");
        return;
    }
    metric(f, "mcos_brain_generation", "gauge",
           "Current policy table generation.");
    fprintf(f, "mcos_brain_generation %" PRIu64 "\n", b->gen);
    metric(f, "mcos_brain_leader", "gauge",
           "1 while this brain leads (always 1 when embedded).");
    fprintf(f, "mcos_brain_leader %d\n", brain_leading(b) ? 1 : 0);
    metric(f, "mcos_brain_elections_won_total", "counter",
           "Times this brain became the leader (etcd mode).");
    fprintf(f, "mcos_brain_elections_won_total %" PRIu64 "\n", b->failovers);
    metric(f, "mcos_brain_nodes", "gauge", "Nodes by liveness state.");
    for (int s = BRAIN_ALIVE; s <= BRAIN_FAILED; s++) {
        fprintf(f, "mcos_brain_nodes{state=\"%s\"} %zu\n",
                brain_liveness_name(s), brain_cluster_count(c, s));
    }
    metric(f, "mcos_brain_node_applied_generation", "gauge",
           "Generation each node acknowledged.");
    for (size_t i = 0; i < c->n; i++) {
        fprintf(
            f, "mcos_brain_node_applied_generation{node=\"%s\"} %" PRIu64 "\n",
            c->nodes[i]->name, c->nodes[i]->applied_gen);
    }
    metric(f, "mcos_brain_node_tier_used_bytes", "gauge",
           "Bytes in use per node and tier, as last reported.");
    for (size_t i = 0; i < c->n; i++) {
        for (int t = 1; t < BRAIN_N_TIERS; t++) {
            if (c->nodes[i]->tiers[t].capacity) {
                fprintf(f,
                        "mcos_brain_node_tier_used_bytes{node=\"%s\",tier="
                        "\"%s\"} %" PRIu64 "\n",
                        c->nodes[i]->name, mcos_tier_name(t),
                        c->nodes[i]->tiers[t].used);
            }
        }
    }
    metric(f, "mcos_brain_node_tier_capacity_bytes", "gauge",
           "Capacity per node and tier.");
    for (size_t i = 0; i < c->n; i++) {
        for (int t = 1; t < BRAIN_N_TIERS; t++) {
            if (c->nodes[i]->tiers[t].capacity) {
                fprintf(f,
                        "mcos_brain_node_tier_capacity_bytes{node=\"%s\","
                        "tier=\"%s\"} %" PRIu64 "\n",
                        c->nodes[i]->name, mcos_tier_name(t),
                        c->nodes[i]->tiers[t].capacity);
            }
        }
    }
#define COUNTER(NAME, FIELD, HELP)                                            \
    metric(f, NAME, "counter", HELP);                                         \
    fprintf(f, NAME " %" PRIu64 "\n", k->FIELD)
    COUNTER("mcos_brain_hellos_total", hellos, "Hellos accepted.");
    COUNTER("mcos_brain_reports_total", reports, "Reports accepted.");
    COUNTER("mcos_brain_watches_total", watches, "Watches accepted.");
    COUNTER("mcos_brain_bad_messages_total", bad_messages,
            "Messages refused as malformed, unknown or out of date.");
    COUNTER("mcos_brain_table_updates_total", updates_sent,
            "Table updates sent to agents.");
    COUNTER("mcos_brain_table_full_updates_total", full_updates,
            "Table updates sent as full snapshots.");
    COUNTER("mcos_brain_compiles_total", compiles, "Compile passes.");
    COUNTER("mcos_brain_state_errors_total", state_errors,
            "Failures to save the generation counter.");
    COUNTER("mcos_brain_engine_errors_total", engine_errors,
            "Decide/compile passes that failed (the next one recomputes).");
    COUNTER("mcos_brain_recomputes_total", recomputes,
            "Forced full recomputes of the decide/compile graph.");
    metric(f, "mcos_brain_tables_compiled_total", "counter",
           "Node tables compiled by the decide/compile graph (only those "
           "whose inputs changed).");
    fprintf(f, "mcos_brain_tables_compiled_total %" PRIu64 "\n",
            brain_graph_tables_compiled(b->graph));
#undef COUNTER
    {
        struct brain_kv_stats kv;

        brain_kv_stats(b->kv, &kv);
        metric(f, "mcos_brain_index_blocks", "gauge",
               "KV blocks in the global prefix index.");
        fprintf(f, "mcos_brain_index_blocks %" PRIu64 "\n", kv.blocks);
        metric(f, "mcos_brain_index_bytes", "gauge",
               "Memory held by the prefix index.");
        fprintf(f, "mcos_brain_index_bytes %" PRIu64 "\n", kv.memory_bytes);
        metric(f, "mcos_brain_index_events_total", "counter",
               "kv_block events folded into the index.");
        fprintf(f, "mcos_brain_index_events_total %" PRIu64 "\n", kv.events);
        metric(f, "mcos_brain_routes_total", "counter",
               "Routing decisions made.");
        fprintf(f, "mcos_brain_routes_total %" PRIu64 "\n", b->routes);
    }
    metric(f, "mcos_brain_compile_seconds", "gauge",
           "Duration of the last compile pass.");
    fprintf(f, "mcos_brain_compile_seconds %.6f\n", k->compile_us / 1e6);
    fclose(f);
    mcos_http_respond(req, 200, "text/plain; version=0.0.4", buf, len);
    free(buf);
}

int
brain_api_register(struct brain *b)
{
    static const struct {
        const char *method;
        const char *path;
        bool prefix;
        mcos_http_cb cb;
    } routes[] = {
        {"GET", "/v1/nodes", true, get_nodes},
        {"GET", "/v1/status", false, get_status},
        {"POST", "/v1/sync", false, post_sync},
        {"POST", "/v1/route", false, post_route},
        {"POST", "/v1/replicate", false, post_replicate},
        {"GET", "/v1/replication", false, get_replication},
        {"GET", "/v1/config", true, get_config},
        {"PUT", "/v1/config", true, put_config},
        {"GET", "/metrics", false, get_metrics},
    };

    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        int r =
            mcos_http_server_route(b->http, routes[i].method, routes[i].path,
                                   routes[i].prefix, routes[i].cb, b);

        if (r) {
            return r;
        }
    }
    return 0;
}
