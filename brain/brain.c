#include "brain.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aggregate.h"
#include "election.h"
#include "etcd.h"
#include "error.h"
#include "ids.h"
#include "log.h"
#include "membership.h"
#include "routing.h"
#include "wire.h"

MCOS_LOG_MODULE(brain);

#define TICK_MS 100

static struct mcos_ratelimit bad_msg_rl = MCOS_RATELIMIT_INIT(5000, 10);

/* ------------------------------------------------------------------------
 * Replies. */

/* The update that brings `n` from what it acknowledged to its desired
 * table; NULL when it is already there. */
static Mcos__TableUpdate *
update_for(struct brain *b, struct brain_node *n, uint64_t applied)
{
    const struct mcos_table *base = NULL;
    Mcos__TableUpdate *u;

    if (!n->desired || mcos_table_gen(n->desired) <= applied) {
        return NULL;
    }
    if (n->confirmed && mcos_table_gen(n->confirmed) == applied) {
        base = n->confirmed;
    } else if (n->previous && mcos_table_gen(n->previous) == applied) {
        base = n->previous;
    }
    if (mcos_table_diff(base, n->desired, &u)) {
        return NULL;
    }
    b->counters.updates_sent++;
    if (!base) {
        b->counters.full_updates++;
    }
    return u;
}

static void
send_reply(struct brain *b, struct mcos_bus_request *req, int status,
           const char *error, Mcos__TableUpdate *u)
{
    Mcos__Reply rep = MCOS__REPLY__INIT;
    uint8_t *buf;
    size_t len;
    int r;

    rep.status = status;
    rep.error = (char *)(error ? error : "");
    rep.desired_gen = b->gen;
    rep.table = u;
    rep.report_interval_ms = (uint32_t)b->cfg.report_interval_ms;
    r = mcos_wire_encode(MCOS__MSG_TYPE__MSG_REPLY, &rep.base, &buf, &len);
    mcos_table_update_free(u);
    if (r) {
        LOG_ERR("cannot encode a reply: %s", mcos_strerror(r));
        mcos_bus_request_drop(req);
        return;
    }
    r = mcos_bus_reply(req, buf, len);
    if (r) {
        LOG_DBG("reply not sent: %s", mcos_strerror(r));
    }
    free(buf);
}

static void
refuse(struct brain *b, struct mcos_bus_request *req, int status,
       const char *err)
{
    b->counters.bad_messages++;
    if (status != -ENOENT) {
        LOG_WARN_RL(&bad_msg_rl, "refused a message: %s", err);
    } else {
        LOG_DBG("%s", err);
    }
    send_reply(b, req, status, err, NULL);
}

bool
brain_leading(const struct brain *b)
{
    return !b->election || brain_election_leading(b->election);
}

void
brain_not_leader_msg(const struct brain *b, char *buf, size_t len)
{
    const char *leader = brain_election_leader(b->election);

    if (leader) {
        snprintf(buf, len,
                 "brain %s is a standby; the leader is %s (bus %s, HTTP %s)",
                 b->cfg.name, leader, brain_election_leader_bus(b->election),
                 brain_election_leader_http(b->election));
    } else {
        snprintf(buf, len, "brain %s is a standby; no brain leads yet",
                 b->cfg.name);
    }
}

/* Encodes `body` as a `type` message and answers `req` with it. */
static void
answer(struct mcos_bus_request *req, Mcos__MsgType type,
       const ProtobufCMessage *body)
{
    uint8_t *buf;
    size_t len;

    if (mcos_wire_encode(type, body, &buf, &len)) {
        mcos_bus_request_drop(req);
        return;
    }
    if (mcos_bus_reply(req, buf, len)) {
        LOG_DBG("reply not sent");
    }
    free(buf);
}

/* A standby answers agents with -EREMOTE and the leader's bus URL, so
 * they go there at once; they keep running their last table meanwhile.
 * A gateway's routing request gets -EREMOTE too, the leader named in the
 * message (RouteReply has no field for its URL). */
static void
refuse_not_leader(struct brain *b, struct mcos_bus_request *req,
                  Mcos__MsgType asked)
{
    const char *bus = brain_election_leader_bus(b->election);
    char msg[512];

    brain_not_leader_msg(b, msg, sizeof msg);
    if (asked == MCOS__MSG_TYPE__MSG_ROUTE_REQUEST) {
        Mcos__RouteReply rep = MCOS__ROUTE_REPLY__INIT;

        rep.status = -EREMOTE;
        rep.error = msg;
        answer(req, MCOS__MSG_TYPE__MSG_ROUTE_REPLY, &rep.base);
    } else {
        Mcos__Reply rep = MCOS__REPLY__INIT;

        rep.status = -EREMOTE;
        rep.error = msg;
        rep.leader = (char *)(bus ? bus : "");
        answer(req, MCOS__MSG_TYPE__MSG_REPLY, &rep.base);
    }
}

/* ------------------------------------------------------------------------
 * Inputs. */

static void
on_hello(struct brain *b, struct mcos_bus_request *req,
         struct mcos_wire_msg *m)
{
    Mcos__Hello *h = mcos_wire_hello(m);
    uint64_t applied = h->applied_gen;
    struct brain_agg_result res;
    char err[256];
    int r;

    r = brain_aggregate_hello(&b->cluster, &h, mcos_clock_now(b->clock), &res,
                              err, sizeof err);
    if (r) {
        refuse(b, req, r, err);
        return;
    }
    m->body = NULL; /* the cluster owns the hello now */
    b->counters.hellos++;
    /* Whatever the index held for this node is superseded: the agent
     * resends its inventory after every hello. */
    brain_kv_node_gone(b->kv, res.node->idx);
    res.node->kv_gone = false;
    if (applied > b->gen) {
        /* Our counter is behind an agent's table: the state directory was
         * lost or replaced.  Continue above it so generations never go
         * backward for anyone. */
        LOG_WARN("node %s runs generation %" PRIu64 ", ahead of this "
                 "brain's %" PRIu64 ": continuing from there",
                 res.node->name, applied, b->gen);
        b->gen = applied;
        b->force = true;
    }
    send_reply(b, req, 0, NULL, NULL);
    brain_schedule(b);
}

static void
on_report(struct brain *b, struct mcos_bus_request *req,
          struct mcos_wire_msg *m)
{
    Mcos__Report *rep = mcos_wire_report(m);
    struct brain_agg_result res;
    char err[256];
    int r;

    r = brain_aggregate_report(&b->cluster, rep, mcos_clock_now(b->clock),
                               &res, err, sizeof err);
    if (r) {
        refuse(b, req, r, err);
        return;
    }
    b->counters.reports++;
    if (res.revived) {
        /* Its index entries were dropped when it failed: have it say
         * hello again, which brings its full inventory. */
        char msg[160];

        snprintf(msg, sizeof msg,
                 "node %s was marked failed: say hello "
                 "again",
                 res.node->name);
        brain_schedule(b);
        send_reply(b, req, -ENOENT, msg, NULL);
        return;
    }
    brain_kv_report(b->kv, res.node->idx, rep, mcos_clock_now(b->clock));
    brain_graph_report(b->graph, res.node->idx, rep);
    if (rep->load && rep->load->engines) {
        /* Its engines' queues, as old as the report says: the routes made
         * long enough before are in them now. */
        uint64_t now = mcos_clock_now(b->clock),
                 age = rep->load->sample_age_us;

        brain_routed_covered(&res.node->routed, age < now ? now - age : 0,
                             b->cfg.route_transit_ms * 1000);
    }
    if (res.topology_changed || res.replicas_done) {
        brain_schedule(b);
    }
    /* Level-triggered: a node that lags and has no watch open gets its
     * update here, so a lost push heals at the next report. */
    send_reply(b, req, 0, NULL,
               res.node->watch ? NULL
                               : update_for(b, res.node, rep->applied_gen));
}

static void
on_watch(struct brain *b, struct mcos_bus_request *req,
         struct mcos_wire_msg *m)
{
    Mcos__Watch *w = mcos_wire_watch(m);
    struct brain_agg_result res;
    Mcos__TableUpdate *u;
    char err[256];
    int r;

    r = brain_aggregate_watch(&b->cluster, w, mcos_clock_now(b->clock), &res,
                              err, sizeof err);
    if (r) {
        refuse(b, req, r, err);
        return;
    }
    b->counters.watches++;
    if (res.topology_changed) {
        brain_schedule(b);
    }
    u = update_for(b, res.node, w->applied_gen);
    if (u) {
        send_reply(b, req, 0, NULL, u);
        return;
    }
    /* Nothing newer: hold it until there is.  A node has one watch open;
     * an older one is a leftover of a retry. */
    brain_node_drop_watch(res.node);
    res.node->watch = req;
    res.node->watch_gen = w->applied_gen;
}

/* A gateway's routing request over the bus: the same decision as
 * POST /v1/route, without HTTP and JSON in the way. */
static void
on_route(struct brain *b, struct mcos_bus_request *req,
         struct mcos_wire_msg *m)
{
    Mcos__RouteRequest *q = mcos_wire_route_request(m);
    Mcos__RouteReply rep = MCOS__ROUTE_REPLY__INIT;
    Mcos__RouteScore *scores = NULL, **ptrs = NULL;
    struct brain_routing rt;
    char err[256] = "";
    uint8_t *buf;
    size_t len;
    int r;

    r = brain_routing_decide(b, q->ns, q->blocks, q->n_blocks, q->rack, &rt,
                             err, sizeof err);
    if (r == 0) {
        scores = calloc(rt.n, sizeof *scores);
        ptrs = calloc(rt.n, sizeof *ptrs);
        if (!scores || !ptrs) {
            r = -ENOMEM;
            snprintf(err, sizeof err, "out of memory");
        }
    }
    rep.status = r;
    rep.error = err;
    if (r == 0) {
        for (size_t k = 0; k < rt.n; k++) {
            const struct brain_route_node *c = &rt.cand[rt.ranked[k]];
            const struct brain_route_score *sc = &rt.score[rt.ranked[k]];

            mcos__route_score__init(&scores[k]);
            scores[k].node = (char *)c->name;
            scores[k].cost = sc->cost;
            scores[k].prefill_blocks = sc->prefill;
            scores[k].fetch = sc->fetch;
            scores[k].load_cost = sc->load;
            scores[k].topology = sc->topology;
            scores[k].over_bound = sc->over_bound;
            scores[k].matched_hbm = c->matched_hbm;
            scores[k].matched_dram = c->matched_dram;
            scores[k].matched = c->matched;
            ptrs[k] = &scores[k];
        }
        rep.node = (char *)rt.cand[rt.best].name;
        rep.n_ranked = rt.n;
        rep.ranked = ptrs;
        rep.explain = rt.explain;
        rep.replication = rt.replication;
    } else if (r != -EAGAIN) {
        b->counters.bad_messages++;
    }
    r = mcos_wire_encode(MCOS__MSG_TYPE__MSG_ROUTE_REPLY, &rep.base, &buf,
                         &len);
    if (r == 0) {
        mcos_bus_reply(req, buf, len);
        free(buf);
    } else {
        mcos_bus_request_drop(req);
    }
    if (rep.status == 0) {
        brain_routing_learn(b, &rt, q->blocks, q->n_blocks, q->output_len);
        brain_routing_free(&rt);
    }
    free(scores);
    free(ptrs);
}

static void
on_request(struct mcos_bus_request *req, void *arg)
{
    struct brain *b = arg;
    struct mcos_wire_msg m;
    char err[MCOS_WIRE_ERR_LEN];
    const void *data;
    size_t len;
    int r;

    data = mcos_bus_request_data(req, &len);
    r = mcos_wire_decode(data, len, &m, err, sizeof err);
    if (r) {
        refuse(b, req, r, err);
        return;
    }
    if (!brain_leading(b) && (m.type == MCOS__MSG_TYPE__MSG_HELLO ||
                              m.type == MCOS__MSG_TYPE__MSG_REPORT ||
                              m.type == MCOS__MSG_TYPE__MSG_WATCH ||
                              m.type == MCOS__MSG_TYPE__MSG_ROUTE_REQUEST)) {
        refuse_not_leader(b, req, m.type);
        mcos_wire_msg_free(&m);
        return;
    }
    switch (m.type) {
    case MCOS__MSG_TYPE__MSG_HELLO:
        on_hello(b, req, &m);
        break;
    case MCOS__MSG_TYPE__MSG_REPORT:
        on_report(b, req, &m);
        break;
    case MCOS__MSG_TYPE__MSG_WATCH:
        on_watch(b, req, &m);
        break;
    case MCOS__MSG_TYPE__MSG_ROUTE_REQUEST:
        on_route(b, req, &m);
        break;
    default:
        snprintf(err, sizeof err, "unexpected %s message",
                 mcos_wire_type_name(m.type));
        refuse(b, req, -EPROTO, err);
        break;
    }
    mcos_wire_msg_free(&m);
}

/* ------------------------------------------------------------------------
 * Decide, compile, push. */

static int
save_gen(struct brain *b, uint64_t gen)
{
    char err[256];
    int r = brain_state_set_gen(b->state, gen, err, sizeof err);

    if (r) {
        b->counters.state_errors++;
        LOG_ERR("%s; generation %" PRIu64 " not published", err, gen);
    }
    return r;
}

/* Makes `next` (one table per node, by index; NULL where none) the nodes'
 * desired tables at generation `gen`.  Takes the tables it uses. */
static void
publish(struct brain *b, struct mcos_table **next, size_t n, uint64_t gen)
{
    struct brain_cluster *c = &b->cluster;

    b->gen = gen;
    for (size_t i = 0; i < n && i < c->n; i++) {
        if (next[i]) {
            brain_node_set_desired(c->nodes[i], next[i]);
            next[i] = NULL;
        }
    }
    LOG_INFO("generation %" PRIu64 " compiled for %zu nodes", gen,
             c->n - brain_cluster_count(c, BRAIN_FAILED));
}

static void
free_tables(struct mcos_table **t, size_t n)
{
    for (size_t i = 0; t && i < n; i++) {
        mcos_table_free(t[i]);
    }
    free(t);
}

/* The fenced write of /mcos/gen came back: publish, or try again later. */
static void
gen_fenced(void *arg, int status, const char *error)
{
    struct brain *b = arg;
    struct mcos_table **next = b->pending;
    size_t n = b->n_pending;
    uint64_t gen = b->pending_gen;

    b->pending = NULL;
    b->gen_pending = false;
    if (status == 0 && next && brain_leading(b)) {
        publish(b, next, n, gen);
        brain_schedule(b);
    } else {
        if (status == 0 && gen > b->gen) {
            /* Written, but the tables were dropped (we stepped down and
             * maybe up again): never reuse the number. */
            b->gen = gen;
        }
        /* The graph took these tables as published: the next pass must
         * publish again, whatever changed meanwhile. */
        b->force = true;
        if (status) {
            b->counters.state_errors++;
            LOG_ERR("cannot advance %s to %" PRIu64 ": %s; generation not "
                    "published",
                    BRAIN_ELECTION_GEN_KEY, gen, error);
        }
    }
    free_tables(next, n);
}

/* Runs the decide/compile graph; when a table changed (or a sync forced
 * it), makes generation gen+1 for every node that is up: changed tables as
 * compiled, the others restamped.  With etcd the tables wait for the
 * fenced write of the counter (gen_fenced), else the state directory
 * records it first. */
static void
compile_all(struct brain *b)
{
    struct brain_cluster *c = &b->cluster;
    uint64_t start = mcos_clock_now(b->clock);
    uint64_t gen = b->gen + 1;
    struct brain_graph_ctx ctx = {c,        &b->policy, b->kv,
                                  &b->repl, &b->place,  start};
    bool changed = b->force, recompute = b->recompute;
    struct mcos_table **next = NULL;
    char err[256];
    size_t published = 0;

    if (brain_graph_run(b->graph, &ctx, recompute, err, sizeof err)) {
        b->counters.engine_errors++;
        LOG_ERR("%s", err);
    }
    b->recompute = false;
    b->counters.recomputes += recompute;
    changed |= brain_graph_tables_changed(b->graph)->any;
    for (size_t i = 0; i < c->n && !changed; i++) {
        /* A node that restarted lost its desired table. */
        changed = !c->nodes[i]->desired &&
                  brain_graph_table(b->graph, c->nodes[i]->idx);
    }
    b->counters.compiles++;
    if (changed) {
        next = calloc(c->n ? c->n : 1, sizeof *next);
        if (!next) {
            LOG_ERR("out of memory publishing tables");
            b->force = true; /* the next pass tries again */
            return;
        }
    }
    for (size_t i = 0; next && i < c->n; i++) {
        const struct mcos_table *t =
            brain_graph_table(b->graph, c->nodes[i]->idx);

        if (t && mcos_table_restamp(t, gen, &next[i]) == 0) {
            published++;
        }
    }
    if (changed && b->election) {
        /* Fencing: no table of this generation leaves the brain before
         * etcd has agreed that we still lead and moved the counter. */
        b->pending = next;
        b->n_pending = c->n;
        b->pending_gen = gen;
        b->gen_pending = true;
        b->force = false;
        if (brain_election_advance(b->election, gen, gen_fenced, b) == 0) {
            next = NULL;
        } else {
            /* Not on its way: the next pass publishes again. */
            b->pending = NULL;
            b->gen_pending = false;
            b->force = true;
        }
    } else if (changed && save_gen(b, gen) == 0) {
        publish(b, next, c->n, gen);
        b->force = false;
    } else if (changed) {
        b->force = true; /* not saved: the next pass tries again */
    }
    if (changed && recompute) {
        LOG_INFO("generation %" PRIu64 ": full recompute (%zu tables)", gen,
                 published);
    }
    free_tables(next, c->n);
    b->counters.compile_us = mcos_clock_now(b->clock) - start;
}

static void
push_watches(struct brain *b)
{
    for (size_t i = 0; i < b->cluster.n; i++) {
        struct brain_node *n = b->cluster.nodes[i];
        Mcos__TableUpdate *u;
        struct mcos_bus_request *req;

        if (!n->watch) {
            continue;
        }
        u = update_for(b, n, n->watch_gen);
        if (!u) {
            continue;
        }
        req = n->watch;
        n->watch = NULL;
        send_reply(b, req, 0, NULL, u);
    }
}

void
brain_run(struct brain *b)
{
    uint64_t now = mcos_clock_now(b->clock);

    brain_election_tick(b->election);
    if (!brain_leading(b)) {
        return;
    }
    brain_aggregate_tick(&b->cluster, now, &b->live_cfg);
    for (size_t i = 0; i < b->cluster.n; i++) {
        struct brain_node *n = b->cluster.nodes[i];

        if (n->live == BRAIN_FAILED && !n->kv_gone) {
            brain_kv_node_gone(b->kv, n->idx);
            n->kv_gone = true;
        }
    }
    brain_kv_tick(b->kv);
    /* The graph's inputs notice what changed; a pass with no change is a
     * few comparisons per node.  While a fenced generation write is out,
     * the next pass waits for it. */
    if (!b->gen_pending) {
        compile_all(b);
    }
    push_watches(b);
}

static void
run_soon_cb(uv_timer_t *t)
{
    brain_run(t->data);
}

void
brain_schedule(struct brain *b)
{
    if (!b->closing && !uv_is_active((uv_handle_t *)&b->run_soon)) {
        uv_timer_start(&b->run_soon, run_soon_cb, 0, 0);
    }
}

static void
tick_cb(uv_timer_t *t)
{
    brain_run(t->data);
}

int64_t
brain_sync(struct brain *b)
{
    uint64_t before = b->gen;

    if (b->election) {
        bool was_pending = b->gen_pending;

        if (!brain_leading(b)) {
            return -EREMOTE;
        }
        b->force = true;
        brain_run(b);
        if (!b->gen_pending) {
            return -EIO;
        }
        /* A write already out publishes older tables; the forced compile
         * follows it with the next number. */
        return (int64_t)(b->pending_gen + (was_pending ? 1 : 0));
    }

    b->force = true;
    brain_run(b);
    if (b->gen == before) {
        return -EIO;
    }
    return (int64_t)b->gen;
}

bool
brain_converged(const struct brain *b, uint64_t gen)
{
    for (size_t i = 0; i < b->cluster.n; i++) {
        const struct brain_node *n = b->cluster.nodes[i];

        if (n->live != BRAIN_FAILED && n->applied_gen < gen) {
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------------------
 * Life cycle. */

/* etcd deleted a node's registration: its lease ran out, so the agent has
 * not renewed it for a whole TTL (dead, hung or cut off). */
static void
member_gone(const char *node, void *arg)
{
    struct brain *b = arg;
    struct brain_node *n = brain_cluster_find(&b->cluster, node);

    if (!n) {
        return;
    }
    if (brain_aggregate_lease_lost(n)) {
        brain_schedule(b);
    }
}

/* Policy and routing weights follow the configuration. */
static void
derive(struct brain *b)
{
    const struct brain_config *cfg = &b->cfg;

    b->live_cfg.suspect_after_us = cfg->suspect_after_ms * 1000;
    b->live_cfg.fail_after_us = cfg->fail_after_ms * 1000;
    b->policy.high_watermark_pct = (uint32_t)cfg->high_watermark_pct;
    b->policy.low_watermark_pct = (uint32_t)cfg->low_watermark_pct;
    b->policy.admit_min_hotness_milli = (uint32_t)cfg->admit_min_hotness_milli;
    b->policy.report_interval_ms = (uint32_t)cfg->report_interval_ms;
    b->policy.demote_to_peers = cfg->demote_to_peers ? 1 : 0;
    b->weights.dram_fetch = (double)cfg->dram_fetch_milli / 1000.0;
    b->weights.nvme_fetch = (double)cfg->nvme_fetch_milli / 1000.0;
    b->weights.peer_fetch = (double)cfg->peer_fetch_milli / 1000.0;
    b->weights.load_weight = (double)cfg->load_weight_milli / 1000.0;
    b->weights.bound_eps = (double)cfg->bound_eps_milli / 1000.0;
    b->weights.rack_penalty = (double)cfg->rack_penalty_milli / 1000.0;
    b->weights.queue_block_weight = (double)cfg->queue_block_milli / 1000.0;
    b->repl.min_hotness_milli = (uint32_t)cfg->repl_min_hotness_milli;
    b->repl.copies = (uint32_t)cfg->repl_copies;
    b->repl.budget = (uint32_t)cfg->repl_budget;
    b->repl.budget_bytes = cfg->repl_budget_bytes;
    b->repl.candidates = (uint32_t)cfg->repl_candidates;
    b->repl.interval_us = cfg->repl_interval_ms * 1000;
    b->repl.drop_hits = (uint32_t)cfg->repl_drop_hits;
    b->repl.drop_after_us = cfg->repl_drop_after_ms * 1000;
    b->place.admit_pressure_milli = (uint32_t)cfg->admit_pressure_milli;
    b->place.prefetch_min_support = (uint32_t)cfg->prefetch_min_support;
    b->place.prefetch_deadline_ms = (uint32_t)cfg->prefetch_deadline_ms;
    b->place.prefetch_max_rules = (uint32_t)cfg->prefetch_max_rules;
}

int
brain_config_apply(struct brain *b, const char *key, const char *value,
                   const char *source, char *err, size_t errlen)
{
    char local[32], canon[32];
    size_t i;
    int r;

    for (i = 0; brain_config_live_keys[i]; i++) {
        if (!strcmp(brain_config_live_keys[i], key)) {
            break;
        }
    }
    if (!value || !*value) {
        r = brain_config_live_get(&b->local, key, local, sizeof local, err,
                                  errlen);
        if (r) {
            return r;
        }
        value = local;
    }
    r = brain_config_live_set(&b->cfg, key, value, source, canon, sizeof canon,
                              err, errlen);
    if (r) {
        return r;
    }
    if (value == local) {
        b->live_from_etcd &= ~(1u << i);
    } else {
        b->live_from_etcd |= 1u << i;
    }
    LOG_INFO("config %s = %s (%s)", key, canon, source);
    derive(b);
    b->force = true;
    brain_schedule(b);
    return 0;
}

/* Soft state goes when leadership changes hands: a new leader rebuilds it
 * from the agents' hellos and inventories, and a brain that stepped down
 * must not keep answering from a model nobody updates. */
static void
reset_soft_state(struct brain *b)
{
    struct brain_graph *g;
    struct brain_kv *kv;

    for (size_t i = 0; i < b->cluster.n; i++) {
        struct brain_node *n = b->cluster.nodes[i];

        if (n->watch) {
            refuse_not_leader(b, n->watch, MCOS__MSG_TYPE__MSG_WATCH);
            n->watch = NULL;
        }
    }
    if (brain_kv_create(&kv) == 0) {
        brain_kv_destroy(b->kv);
        b->kv = kv;
    } else {
        LOG_ERR("out of memory: keeping the old prefix index");
    }
    if (brain_graph_create(&g) == 0) {
        /* Its ledgers (copies, learned pairs) and tables describe the
         * cluster being dropped. */
        brain_graph_destroy(b->graph);
        b->graph = g;
    } else {
        LOG_ERR("out of memory: keeping the old decide/compile graph");
        b->recompute = true;
    }
    brain_cluster_destroy(&b->cluster);
    brain_cluster_init(&b->cluster);
    free_tables(b->pending, b->n_pending);
    b->pending = NULL;
    b->n_pending = 0;
}

static void
on_elected(void *arg, uint64_t gen)
{
    struct brain *b = arg;

    reset_soft_state(b);
    if (gen > b->gen) {
        b->gen = gen;
    }
    b->failovers++;
    b->force = true;
    LOG_INFO("leading from generation %" PRIu64 "; waiting for the agents' "
             "inventories",
             b->gen);
    brain_schedule(b);
}

static void
on_deposed(void *arg, const char *why)
{
    struct brain *b = arg;

    LOG_WARN("no longer the leader (%s): stopped pushing tables", why);
    reset_soft_state(b);
}

static void
on_config(void *arg, const char *key, const char *value)
{
    struct brain *b = arg;
    char err[512], source[200];

    snprintf(source, sizeof source, "etcd %s%s", BRAIN_ELECTION_CONFIG_PREFIX,
             key);
    if (brain_config_apply(b, key, value, source, err, sizeof err)) {
        LOG_ERR("%s: ignored", err);
    }
}

/* The etcd client options of etcd.cacert, etcd.cert and etcd.key. */
static struct mcos_etcd_options
brain_etcd_options(const struct brain *b)
{
    return mcos_etcd_tls_options(b->cfg.etcd_cacert, b->cfg.etcd_cert,
                                 b->cfg.etcd_key);
}

/* With etcd.endpoints: check etcd answers, then campaign. */
static int
start_ha(struct brain *b, char *err, size_t errlen)
{
    static const struct brain_election_cbs cbs = {on_elected, on_deposed,
                                                  on_config};
    struct mcos_etcd_options eo = brain_etcd_options(b);
    struct brain_election_cfg ec = {
        .endpoints = b->cfg.etcd_endpoints,
        .name = b->cfg.name,
        .bus_url = *b->cfg.advertise ? b->cfg.advertise : b->cfg.listen,
        .http_url = b->cfg.http_listen,
        .ttl_s = b->cfg.etcd_lease_ttl_s,
        .etcd = &eo,
    };
    char why[512];
    int r;

    r = brain_election_probe(b->cfg.etcd_endpoints, &eo, why, sizeof why);
    if (r && b->cfg.etcd_required) {
        mcos_seterr(err, errlen,
                    "etcd.endpoints: cannot reach etcd: %s (set "
                    "etcd.required to false to run embedded without it)",
                    why);
        return r;
    }
    if (r) {
        LOG_WARN("etcd.endpoints: cannot reach etcd: %s; running embedded "
                 "(etcd.required is false)",
                 why);
        b->cfg.etcd_endpoints[0] = '\0';
        return 0;
    }
    if (!*b->cfg.advertise && (strstr(b->cfg.listen, "://0.0.0.0:") ||
                               strstr(b->cfg.listen, "://[::]:"))) {
        LOG_WARN("listen %s is a wildcard address: set advertise to a URL "
                 "agents can dial, or standbys cannot send them here",
                 b->cfg.listen);
    }
    r = brain_election_start(b->loop, b->clock, &ec, &cbs, b, &b->election,
                             err, errlen);
    if (r == 0) {
        LOG_INFO("brain %s: standing by for the leader election (lease TTL "
                 "%" PRIu64 " s)",
                 b->cfg.name, b->cfg.etcd_lease_ttl_s);
    }
    return r;
}

static int
copy_config(struct brain_config *dst, const struct brain_config *src)
{
    *dst = *src;
    dst->listen = strdup(src->listen);
    dst->http_listen = strdup(src->http_listen ? src->http_listen : "");
    dst->state_dir = strdup(src->state_dir);
    dst->log_level = strdup(src->log_level ? src->log_level : "info");
    dst->etcd_endpoints =
        strdup(src->etcd_endpoints ? src->etcd_endpoints : "");
    dst->advertise = strdup(src->advertise ? src->advertise : "");
    dst->etcd_cacert = strdup(src->etcd_cacert ? src->etcd_cacert : "");
    dst->etcd_cert = strdup(src->etcd_cert ? src->etcd_cert : "");
    dst->etcd_key = strdup(src->etcd_key ? src->etcd_key : "");
    if (src->name && *src->name) {
        dst->name = strdup(src->name);
    } else {
        char host[256] = "";

        gethostname(host, sizeof host - 1);
        dst->name = strdup(mcos_node_name_valid(host) ? host : "brain");
    }
    if (!dst->listen || !dst->http_listen || !dst->state_dir ||
        !dst->log_level || !dst->etcd_endpoints || !dst->advertise ||
        !dst->etcd_cacert || !dst->etcd_cert || !dst->etcd_key || !dst->name) {
        mcos_cfg_free(brain_config_opts, brain_n_config_opts, dst);
        return -ENOMEM;
    }
    return 0;
}

int
brain_create(uv_loop_t *loop, const struct brain_config *cfg,
             const struct mcos_clock *clock, struct brain **out, char *err,
             size_t errlen)
{
    struct brain *b;
    int r;

    r = brain_config_check(cfg, err, errlen);
    if (r) {
        return r;
    }
    b = calloc(1, sizeof *b);
    if (!b) {
        return -ENOMEM;
    }
    b->loop = loop;
    b->clock = clock;
    r = copy_config(&b->cfg, cfg);
    if (r) {
        goto fail_free;
    }
    derive(b);
    b->local = b->cfg;
    b->local.listen = b->local.http_listen = b->local.state_dir = NULL;
    b->local.etcd_endpoints = b->local.name = b->local.advertise = NULL;
    b->local.etcd_cacert = b->local.etcd_cert = b->local.etcd_key = NULL;
    b->local.log_level = NULL;
    b->start_us = mcos_clock_now(clock);
    brain_cluster_init(&b->cluster);

    r = brain_kv_create(&b->kv);
    if (r) {
        mcos_seterr(err, errlen, "cannot create the prefix index: %s",
                    mcos_strerror(r));
        goto fail_cfg;
    }
    r = brain_graph_create(&b->graph);
    if (r) {
        mcos_seterr(err, errlen, "cannot create the decide/compile graph: %s",
                    mcos_strerror(r));
        goto fail_kv;
    }
    r = brain_state_open(cfg->state_dir, &b->state, err, errlen);
    if (r) {
        goto fail_graph;
    }
    /* A new brain starts a new generation: what agents run was compiled
     * by another brain, which may have had other inputs. */
    b->gen = brain_state_gen(b->state);
    b->force = true;

    r = mcos_bus_server_create(loop, cfg->listen, on_request, b, &b->bus, err,
                               errlen);
    if (r) {
        goto fail_state;
    }
    if (cfg->http_listen && *cfg->http_listen) {
        r = mcos_http_server_create(loop, cfg->http_listen, &b->http, err,
                                    errlen);
        if (r) {
            goto fail_bus;
        }
        r = brain_api_register(b);
        if (r == 0) {
            r = mcos_http_server_start(b->http, err, errlen);
        }
        if (r) {
            goto fail_http;
        }
    }
    if (*b->cfg.etcd_endpoints) {
        r = start_ha(b, err, errlen);
        if (r) {
            goto fail_http;
        }
    }
    if (*b->cfg.etcd_endpoints) {
        struct mcos_etcd_options eo = brain_etcd_options(b);

        r = mcos_members_watch_start(loop, b->cfg.etcd_endpoints, &eo,
                                     member_gone, b, &b->members, err, errlen);
        if (r) {
            goto fail_election;
        }
    }
    uv_timer_init(loop, &b->tick);
    uv_timer_init(loop, &b->run_soon);
    b->tick.data = b;
    b->run_soon.data = b;
    uv_timer_start(&b->tick, tick_cb, TICK_MS, TICK_MS);
    brain_run(b);
    LOG_INFO("brain listening on %s (HTTP %s), state %s, generation %" PRIu64,
             cfg->listen, b->http ? cfg->http_listen : "off", cfg->state_dir,
             b->gen);
    *out = b;
    return 0;

fail_election:
    brain_election_stop(b->election);
fail_http:
    mcos_http_server_close(b->http);
fail_bus:
    mcos_bus_server_close(b->bus);
fail_state:
    brain_state_close(b->state);
fail_graph:
    brain_graph_destroy(b->graph);
fail_kv:
    brain_kv_destroy(b->kv);
fail_cfg:
    mcos_cfg_free(brain_config_opts, brain_n_config_opts, &b->cfg);
fail_free:
    /* The bus and HTTP servers free themselves in close callbacks that
     * only touch their own memory, so the brain can go now. */
    free(b);
    return r;
}

static void
closed_cb(uv_handle_t *h)
{
    struct brain *b = h->data;

    if (--b->closing == 0) {
        brain_cluster_destroy(&b->cluster);
        brain_graph_destroy(b->graph);
        brain_kv_destroy(b->kv);
        brain_state_close(b->state);
        free_tables(b->pending, b->n_pending);
        mcos_cfg_free(brain_config_opts, brain_n_config_opts, &b->cfg);
        free(b);
    }
}

void
brain_close(struct brain *b)
{
    if (!b || b->closing) {
        return;
    }
    /* Held watches belong to the bus server: release them first. */
    for (size_t i = 0; i < b->cluster.n; i++) {
        brain_node_drop_watch(b->cluster.nodes[i]);
    }
    mcos_members_watch_stop(b->members);
    b->members = NULL;
    brain_election_stop(b->election);
    b->election = NULL;
    brain_api_close(b);
    mcos_http_server_close(b->http);
    mcos_bus_server_close(b->bus);
    b->closing = 2;
    uv_close((uv_handle_t *)&b->tick, closed_cb);
    uv_close((uv_handle_t *)&b->run_soon, closed_cb);
}
