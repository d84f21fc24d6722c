#include "agent.h"

#include <errno.h>
#include <jansson.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "error.h"
#include "etcd.h"
#include "log.h"
#include "membership.h"
#include "wire.h"

MCOS_LOG_MODULE(agent);

/* How long the brain may hold a watch before we ask again. */
#define WATCH_TIMEOUT_MS 30000

/* The shortest time between two switches to another brain. */
#define SWITCH_GAP_MS 100

static struct mcos_ratelimit brain_err_rl = MCOS_RATELIMIT_INIT(5000, 5);

static void send_hello(struct agent *);

/* ------------------------------------------------------------------------
 * Talking to the brain. */

static uint32_t
call_timeout(const struct agent *a)
{
    uint64_t t = a->interval_ms * 2;

    return (uint32_t)(t < 1000 ? 1000 : t > 30000 ? 30000 : t);
}

static void
contact(struct agent *a, bool ok)
{
    if (ok) {
        if (!a->connected) {
            LOG_INFO("connected to the brain at %s", a->brain_url);
        }
        if (a->stale) {
            LOG_INFO("no longer stale: the brain answers again");
        }
        a->connected = true;
        a->stale = false;
        a->last_contact_us = mcos_clock_now(a->clock);
    } else if (a->connected) {
        a->connected = false;
        LOG_WARN("lost contact with the brain at %s; running on table "
                 "generation %" PRIu64,
                 a->brain_url, agent_tables_gen(a->tables));
    }
}

static void
set_interval(struct agent *a, uint64_t ms)
{
    if (ms == 0 || ms == a->interval_ms) {
        return;
    }
    LOG_INFO("report interval %" PRIu64 " ms (was %" PRIu64 ")", ms,
             a->interval_ms);
    a->interval_ms = ms;
    uv_timer_set_repeat(&a->timer, ms);
}

static void
apply_table(struct agent *a, const Mcos__TableUpdate *u)
{
    char err[MCOS_TABLE_ERR_LEN];
    uint64_t before = agent_tables_gen(a->tables);
    int r = agent_tables_apply(a->tables, u, err, sizeof err);

    if (r < 0) {
        a->counters.table_errors++;
        LOG_WARN("refused table generation %" PRIu64 " (base %" PRIu64
                 "): %s; keeping generation %" PRIu64,
                 u->gen, u->base_gen, err, before);
        return;
    }
    if (r == 0) {
        const struct mcos_table *t = agent_tables_read_lock(a->tables);
        uint64_t interval = mcos_table_param(t, "report_interval_ms", 0);

        agent_tables_read_unlock(a->tables);
        a->counters.tables_applied++;
        LOG_INFO("applied table generation %" PRIu64 " (%s, %zu upserts, "
                 "%zu removals)",
                 u->gen, u->base_gen ? "delta" : "full", u->n_upserts,
                 u->n_removed);
        set_interval(a, interval);
        if (a->fabric) {
            agent_fabric_tables_changed(a->fabric);
        }
        agent_store_replicate(a->store);
    }
}

static void
switch_cb(uv_timer_t *t)
{
    struct agent *a = t->data;
    struct mcos_bus_client *bus;
    char *url = a->next_brain;
    char err[256];

    a->next_brain = NULL;
    if (!url || a->closing) {
        free(url);
        return;
    }
    if (mcos_bus_client_create(a->loop, url, &bus, err, sizeof err)) {
        LOG_WARN("cannot follow the brain at %s: %s", url, err);
        free(url);
        return;
    }
    /* Calls in flight on the old client go without callbacks. */
    mcos_bus_client_close(a->bus);
    a->bus = bus;
    a->watch = NULL;
    a->hello_in_flight = false;
    a->report_in_flight = false;
    a->registered = false;
    for (size_t i = 0; i < a->n_brains; i++) {
        if (!strcmp(a->brains[i], url)) {
            a->cur_brain = i;
        }
    }
    LOG_INFO("following the brain at %s (was %s); running table generation "
             "%" PRIu64 " meanwhile",
             url, a->brain_url, agent_tables_gen(a->tables));
    free(a->brain_url);
    a->brain_url = url;
    a->counters.brain_switches++;
    a->last_switch_us = mcos_clock_now(a->clock);
    agent_run(a);
}

static void follow_to(struct agent *a, const char *url, uint64_t delay_ms);

static bool
listed(const struct agent *a, const char *url)
{
    for (size_t i = 0; i < a->n_brains; i++) {
        if (!strcmp(a->brains[i], url)) {
            return true;
        }
    }
    return false;
}

/* Remembers `url`, a leader some brain (or etcd) named, if the list does
 * not name it: when every listed brain has stopped answering, the agent
 * tries it before starting the list over (a list of one brain behind
 * which the others were found, and that brain gone for good). */
static void
learn_leader(struct agent *a, const char *url)
{
    char *copy;

    if (listed(a, url) ||
        (a->learned_brain && !strcmp(a->learned_brain, url))) {
        return;
    }
    copy = strdup(url);
    if (copy) {
        free(a->learned_brain);
        a->learned_brain = copy;
    }
}

/* A read of /mcos/leader in flight.  The agent may close first: then
 * `a` is NULL and the answer is dropped. */
struct leader_lookup {
    struct agent *a;   /* who asked, NULL once it closed */
    uint64_t delay_ms; /* for the switch that follows */
};

/* True if `url`, a leader's bus URL (from a standby's refusal or from
 * etcd), is one an agent can dial.  A wildcard address names no host:
 * that leader did not set its advertise URL. */
static bool
dialable_leader(const char *url)
{
    static const char *const bus_schemes[] = {"tcp", "ipc", NULL};
    char err[256];

    return url && *url && !strstr(url, "://0.0.0.0:") &&
           !strstr(url, "://[::]:") &&
           mcos_check_url("leader", url, bus_schemes, err, sizeof err) == 0;
}

/* The leader's bus URL from /mcos/leader's value (brain/election.c
 * writes {"name", "bus", "http"}), if it is one an agent can dial. */
static bool
leader_bus(const struct mcos_etcd_result *res, char *url, size_t len)
{
    json_t *doc;
    const char *bus;
    bool ok = false;

    if (res->status || res->n_kvs != 1) {
        return false;
    }
    doc = json_loadb(res->kvs[0].value, res->kvs[0].value_len, 0, NULL);
    bus = json_string_value(json_object_get(doc, "bus"));
    if (dialable_leader(bus) && strlen(bus) < len) {
        snprintf(url, len, "%s", bus);
        ok = true;
    }
    json_decref(doc);
    return ok;
}

static void
on_leader(const struct mcos_etcd_result *res, void *arg)
{
    struct leader_lookup *l = arg;
    struct agent *a = l->a;
    char url[512];

    if (a) {
        a->lookup = NULL;
        if (leader_bus(res, url, sizeof url) && strcmp(url, a->brain_url)) {
            LOG_INFO("etcd names the leading brain: %s", url);
            learn_leader(a, url);
            follow_to(a, url, l->delay_ms);
        } else {
            follow_to(a, NULL, l->delay_ms);
        }
    }
    free(l);
}

/* Follows another brain: `url`, or (NULL) the leader etcd names, else the
 * next one in the configured list, after `delay_ms`. */
static void
follow(struct agent *a, const char *url, uint64_t delay_ms)
{
    struct leader_lookup *l;

    if (url || !a->etcd || a->next_brain || a->lookup || a->closing) {
        follow_to(a, url, delay_ms);
        return;
    }
    /* With etcd, ask it first: the leader may be a brain the list does
     * not name (replaced hosts, a list that went stale). */
    l = calloc(1, sizeof *l);
    if (l) {
        l->a = a;
        l->delay_ms = delay_ms;
        if (mcos_etcd_get(a->etcd, "/mcos/leader", strlen("/mcos/leader"),
                          false, on_leader, l) == 0) {
            a->lookup = l;
            return;
        }
        free(l);
    }
    follow_to(a, NULL, delay_ms);
}

/* Follows `url` (NULL: the next one in the configured list) after
 * `delay_ms`.  The switch itself runs from a timer, never from inside a
 * bus callback, because it closes the bus client. */
static void
follow_to(struct agent *a, const char *url, uint64_t delay_ms)
{
    uint64_t since;

    if (a->next_brain || a->closing) {
        return; /* a switch is already coming */
    }
    if (!url) {
        /* Back to the configured list after following a leader's own URL
         * (it may have died: a Service address is the stable way back),
         * else the next brain of the list; at the list's end, the last
         * leader a brain named that the list does not (the list may be
         * one brain, gone for good, behind which the others were found),
         * then the list again. */
        url = a->brains[a->cur_brain];
        if (!strcmp(url, a->brain_url)) {
            size_t next = (a->cur_brain + 1) % a->n_brains;

            url = a->brains[next];
            if (next == 0 && a->learned_brain &&
                strcmp(a->learned_brain, a->brain_url)) {
                url = a->learned_brain;
                a->cur_brain = 0; /* where the list starts over */
                LOG_INFO("no brain of the list answers; trying %s, the "
                         "leader a brain named last",
                         url);
            }
        }
    }
    if (!strcmp(url, a->brain_url)) {
        return; /* nowhere else to go: keep retrying this one */
    }
    /* Two brains with stale views could send us back and forth: at most
     * one switch per SWITCH_GAP_MS. */
    since = (mcos_clock_now(a->clock) - a->last_switch_us) / 1000;
    if (a->counters.brain_switches && since < SWITCH_GAP_MS &&
        delay_ms < SWITCH_GAP_MS - since) {
        delay_ms = SWITCH_GAP_MS - since;
    }
    a->next_brain = strdup(url);
    if (a->next_brain) {
        uv_timer_start(&a->switch_timer, switch_cb, delay_ms, 0);
    }
}

/* A standby refused us, naming the leader (or nobody). */
static void
redirected(struct agent *a, const char *leader)
{
    a->registered = false;
    if (dialable_leader(leader) && strcmp(leader, a->brain_url)) {
        learn_leader(a, leader);
        follow(a, leader, 0);
    } else {
        /* Nobody leads yet, or only the brain we ask: look around, not
         * in a tight loop. */
        follow(a, NULL, a->interval_ms < 500 ? a->interval_ms : 500);
    }
}

/* Decodes a reply; returns its status, or the decode error. */
static int
handle_reply(struct agent *a, int status, const void *data, size_t len,
             const char *what)
{
    struct mcos_wire_msg m;
    char err[MCOS_WIRE_ERR_LEN];
    Mcos__Reply *rep;
    int r;

    if (status) {
        contact(a, false);
        if (status != -ECANCELED) {
            LOG_DBG("%s: %s", what, mcos_strerror(status));
            /* No answer: another brain of the list may lead now. */
            follow(a, NULL, 0);
        }
        return status;
    }
    r = mcos_wire_decode(data, len, &m, err, sizeof err);
    if (r == 0 && !(rep = mcos_wire_reply(&m))) {
        snprintf(err, sizeof err, "unexpected %s message",
                 mcos_wire_type_name(m.type));
        mcos_wire_msg_free(&m);
        r = -EPROTO;
    }
    if (r) {
        a->counters.brain_errors++;
        LOG_WARN_RL(&brain_err_rl, "%s: bad reply from the brain: %s", what,
                    err);
        return r;
    }
    contact(a, true);
    a->brain_gen = rep->desired_gen;
    r = rep->status;
    if (r == -EREMOTE) {
        LOG_INFO("%s: %s", what, rep->error);
        redirected(a, rep->leader);
    } else if (r == -ENOENT) {
        /* The brain does not know us (it restarted): introduce ourselves
         * again; the table we run stays in force meanwhile. */
        LOG_INFO("%s: %s", what, rep->error);
        a->registered = false;
    } else if (r) {
        a->counters.brain_errors++;
        LOG_WARN_RL(&brain_err_rl, "%s refused by the brain: %s", what,
                    rep->error);
    } else if (rep->table) {
        apply_table(a, rep->table);
    }
    mcos_wire_msg_free(&m);
    return r;
}

static int
send_msg(struct agent *a, Mcos__MsgType type, const ProtobufCMessage *body,
         uint32_t timeout_ms, mcos_bus_reply_cb cb,
         struct mcos_bus_call **handle)
{
    uint8_t *buf;
    size_t len;
    int r = mcos_wire_encode(type, body, &buf, &len);

    if (r) {
        LOG_ERR("cannot encode a %s: %s", mcos_wire_type_name(type),
                mcos_strerror(r));
        return r;
    }
    r = mcos_bus_call(a->bus, buf, len, timeout_ms, cb, a, handle);
    free(buf);
    if (r) {
        LOG_ERR("cannot send a %s: %s", mcos_wire_type_name(type),
                mcos_strerror(r));
    }
    return r;
}

static void
watch_cb(int status, const void *data, size_t len, void *arg)
{
    struct agent *a = arg;

    a->watch = NULL;
    /* A timeout here is normal: nothing new for WATCH_TIMEOUT_MS. */
    if (status != -ETIMEDOUT) {
        handle_reply(a, status, data, len, "watch");
    }
    agent_run(a);
}

static void
send_watch(struct agent *a)
{
    Mcos__Watch w = MCOS__WATCH__INIT;

    w.node = a->cfg.node;
    w.boot_id = a->boot_id.v;
    w.applied_gen = agent_tables_gen(a->tables);
    send_msg(a, MCOS__MSG_TYPE__MSG_WATCH, &w.base, WATCH_TIMEOUT_MS, watch_cb,
             &a->watch);
}

static void
hello_cb(int status, const void *data, size_t len, void *arg)
{
    struct agent *a = arg;

    a->hello_in_flight = false;
    if (handle_reply(a, status, data, len, "hello") == 0) {
        a->registered = true;
        /* The brain's object directory is soft state: give it ours. */
        agent_store_inventory(a->store);
        LOG_INFO("registered with the brain (generation %" PRIu64 ")",
                 a->brain_gen);
    }
    agent_run(a);
}

static void
send_hello(struct agent *a)
{
    Mcos__Hello h = MCOS__HELLO__INIT;
    Mcos__Labels labels = MCOS__LABELS__INIT;
    Mcos__TierInfo tiers[4], *tier_ptrs[4];
    Mcos__GpuInfo gpus[AGENT_MAX_GPUS], *gpu_ptrs[AGENT_MAX_GPUS];
    Mcos__NicInfo nics[AGENT_MAX_NICS], *nic_ptrs[AGENT_MAX_NICS];
    Mcos__Endpoint eps[AGENT_FABRIC_MAX_ENDPOINTS];
    Mcos__Endpoint *ep_ptrs[AGENT_FABRIC_MAX_ENDPOINTS];
    Mcos__Region regions[4], *region_ptrs[4];
    size_t n_eps = 0, n_regions = 0;
    const struct agent_nic *nic;
    size_t n_nics = agent_observe_nics(a->obs, &nic);
    uint64_t hbm = 0, l2 = 0;
    char hbm_note[300], sram_note[300];
    size_t nt = 0;

    labels.rack = a->cfg.rack;
    labels.zone = a->cfg.zone;
    labels.host = a->cfg.node;

    for (size_t i = 0; i < a->gpus.n; i++) {
        mcos__gpu_info__init(&gpus[i]);
        gpus[i].index = (uint32_t)a->gpus.gpu[i].index;
        gpus[i].name = a->gpus.gpu[i].name;
        gpus[i].memory_bytes = a->gpus.gpu[i].memory_bytes;
        gpus[i].l2_persist_max_bytes = a->gpus.gpu[i].l2_persist_max;
        gpu_ptrs[i] = &gpus[i];
        hbm += a->gpus.gpu[i].memory_bytes;
        l2 += a->gpus.gpu[i].l2_persist_max;
    }

    /* Tiers, fastest first, as the store has them.  Absent hardware is
     * listed as unavailable with the reason, never faked. */
    for (size_t i = 0; i < 4; i++) {
        mcos__tier_info__init(&tiers[i]);
        tier_ptrs[i] = &tiers[i];
    }
    tiers[nt].kind = MCOS__TIER_KIND__TIER_SRAM;
    {
        uint64_t l2_max, l2_window, l2_obj;

        /* Available only as a residency hint over real HBM on a GPU
         * whose L2 supports persistence; never faked. */
        tiers[nt].available =
            agent_store_l2(a->store, &l2_max, &l2_window, &l2_obj);
        tiers[nt].capacity_bytes = tiers[nt].available ? l2_max : l2;
        snprintf(sram_note, sizeof sram_note, "%s",
                 tiers[nt].available
                     ? "L2 persisting window over the hottest HBM object"
                 : l2 ? "GPU supports L2 persistence, but its HBM tier is off"
                      : "no GPU with L2 persistence");
    }
    tiers[nt++].note = sram_note;
    for (int kind = MCOS__TIER_KIND__TIER_HBM;
         kind <= MCOS__TIER_KIND__TIER_NVME; kind++) {
        struct agent_store_tier u;

        agent_store_tier_usage(a->store, kind, &u);
        if (!u.present && kind != MCOS__TIER_KIND__TIER_HBM) {
            continue;
        }
        tiers[nt].kind = kind;
        tiers[nt].capacity_bytes = u.capacity;
        tiers[nt].available = u.present;
        tiers[nt].emulated = u.emulated;
        if (kind == MCOS__TIER_KIND__TIER_HBM) {
            if (u.emulated) {
                snprintf(hbm_note, sizeof hbm_note,
                         "emulated in host DRAM (--emulate-hbm)");
            } else if (!u.present && hbm) {
                snprintf(hbm_note, sizeof hbm_note,
                         "%s; HBM tier off (tiers.hbm.bytes is 0)",
                         a->gpus.note);
            } else {
                snprintf(hbm_note, sizeof hbm_note, "%s", a->gpus.note);
            }
            tiers[nt].note = hbm_note;
        } else if (kind == MCOS__TIER_KIND__TIER_NVME) {
            tiers[nt].note = a->cfg.nvme_dir;
        } else {
            tiers[nt].note = "";
        }
        nt++;
    }

    for (size_t i = 0; i < n_nics; i++) {
        mcos__nic_info__init(&nics[i]);
        nics[i].name = (char *)nic[i].name;
        nics[i].address = (char *)nic[i].address;
        nics[i].rdma_device = (char *)nic[i].rdma_device;
        nics[i].speed_mbps = nic[i].speed_mbps;
        nic_ptrs[i] = &nics[i];
    }
    /* Peers learn where to reach us, and which memory they may touch,
     * from the brain, which relays this only to nodes it admitted. */
    if (a->fabric) {
        n_eps =
            agent_fabric_endpoints(a->fabric, eps, AGENT_FABRIC_MAX_ENDPOINTS);
        n_regions = agent_fabric_regions(a->fabric, regions, 4);
    }
    for (size_t i = 0; i < n_eps; i++) {
        ep_ptrs[i] = &eps[i];
    }
    for (size_t i = 0; i < n_regions; i++) {
        region_ptrs[i] = &regions[i];
    }

    h.node = a->cfg.node;
    h.boot_id = a->boot_id.v;
    h.labels = &labels;
    h.n_tiers = nt;
    h.tiers = tier_ptrs;
    h.n_gpus = a->gpus.n;
    h.gpus = gpu_ptrs;
    h.n_nics = n_nics;
    h.nics = nic_ptrs;
    h.n_endpoints = n_eps;
    h.endpoints = ep_ptrs;
    h.n_regions = n_regions;
    h.regions = region_ptrs;
    h.applied_gen = agent_tables_gen(a->tables);
    h.version = MCOS_VERSION;
    h.gpu_note = a->gpus.note;
    h.http_url = a->cfg.http_listen;

    if (send_msg(a, MCOS__MSG_TYPE__MSG_HELLO, &h.base, call_timeout(a),
                 hello_cb, NULL) == 0) {
        a->hello_in_flight = true;
        a->counters.hellos_sent++;
    }
}

static void
report_cb(int status, const void *data, size_t len, void *arg)
{
    struct agent *a = arg;

    a->report_in_flight = false;
    if (handle_reply(a, status, data, len, "report")) {
        a->counters.report_failures++;
    }
    agent_run(a);
}

static void
send_report(struct agent *a)
{
    Mcos__Report rep = MCOS__REPORT__INIT;
    Mcos__Load load = MCOS__LOAD__INIT;
    Mcos__TierUsage tiers[4], *tier_ptrs[4];
    Mcos__LinkUsage links[AGENT_MAX_NICS + AGENT_MAX_PEER_LINKS];
    Mcos__LinkUsage *link_ptrs[AGENT_MAX_NICS + AGENT_MAX_PEER_LINKS];
    struct agent_fabric_link fl[AGENT_MAX_PEER_LINKS];
    const struct agent_nic *nic;
    size_t n_nics, n_fl = 0, nt = 0;
    Mcos__ObjectEvent **events;
    uint64_t dropped;
    size_t n_events;

    agent_observe_sample(a->obs, mcos_clock_now(a->clock));
    n_nics = agent_observe_nics(a->obs, &nic);
    for (size_t i = 0; i < n_nics; i++) {
        mcos__link_usage__init(&links[i]);
        links[i].name = (char *)nic[i].name;
        links[i].tx_bytes = nic[i].tx_bytes;
        links[i].rx_bytes = nic[i].rx_bytes;
        links[i].tx_bps = nic[i].tx_bps;
        links[i].rx_bps = nic[i].rx_bps;
        link_ptrs[i] = &links[i];
    }
    /* Peer links: what the fabric moved, verified, per peer. */
    if (a->fabric) {
        n_fl = agent_fabric_links(a->fabric, fl, AGENT_MAX_PEER_LINKS);
    }
    for (size_t i = 0; i < n_fl; i++) {
        Mcos__LinkUsage *l = &links[n_nics + i];

        mcos__link_usage__init(l);
        l->name = fl[i].peer;
        l->tx_bytes = fl[i].tx_bytes;
        l->rx_bytes = fl[i].rx_bytes;
        l->transfers = fl[i].transfers;
        l->errors = fl[i].errors;
        l->busy_us = fl[i].busy_us;
        link_ptrs[n_nics + i] = l;
    }
    for (int kind = MCOS__TIER_KIND__TIER_HBM;
         kind <= MCOS__TIER_KIND__TIER_NVME; kind++) {
        struct agent_store_tier u;

        agent_store_tier_usage(a->store, kind, &u);
        if (!u.present) {
            continue;
        }
        mcos__tier_usage__init(&tiers[nt]);
        tiers[nt].kind = kind;
        tiers[nt].capacity_bytes = u.capacity;
        tiers[nt].used_bytes = u.used;
        tiers[nt].objects = u.objects;
        tier_ptrs[nt] = &tiers[nt];
        nt++;
    }
    load.cpu_load_milli = agent_observe_load_milli();
    {
        struct agent_engine_load el;

        agent_local_api_load(a->api, mcos_clock_now(a->clock), &el);
        load.engines = el.engines;
        load.queued_requests = el.queued_requests;
        load.running_requests = el.running_requests;
        load.queued_prefill_blocks = el.queued_prefill_blocks;
        load.sample_age_us = el.sample_age_us;
    }

    n_events = agent_observe_take_events(a->obs, AGENT_MAX_EVENTS_PER_REPORT,
                                         &events, &dropped);
    rep.node = a->cfg.node;
    rep.boot_id = a->boot_id.v;
    rep.seq = ++a->seq;
    rep.applied_gen = agent_tables_gen(a->tables);
    rep.n_tiers = nt;
    rep.tiers = tier_ptrs;
    rep.n_links = n_nics + n_fl;
    rep.links = link_ptrs;
    rep.load = &load;
    rep.n_events = n_events;
    rep.events = events;
    rep.events_dropped = dropped;
    rep.stale = a->stale;
    if (send_msg(a, MCOS__MSG_TYPE__MSG_REPORT, &rep.base, call_timeout(a),
                 report_cb, NULL) == 0) {
        a->report_in_flight = true;
        a->counters.reports_sent++;
    }
    agent_observe_events_free(events, n_events);
}

/* ------------------------------------------------------------------------
 * The run loop. */

void
agent_run(struct agent *a)
{
    uint64_t now = mcos_clock_now(a->clock);

    if (a->closing) {
        return;
    }
    if (!a->stale && now - a->last_contact_us > a->cfg.stale_after_ms * 1000) {
        a->stale = true;
        LOG_WARN("stale: no answer from the brain for %" PRIu64 " ms; "
                 "still running table generation %" PRIu64,
                 (now - a->last_contact_us) / 1000,
                 agent_tables_gen(a->tables));
    }
    if (a->next_brain) {
        return; /* switching brains: nothing to send until then */
    }
    if (!a->registered) {
        if (a->watch) {
            mcos_bus_call_cancel(a->watch);
        }
        if (!a->hello_in_flight) {
            send_hello(a);
        }
        return;
    }
    if (!a->watch) {
        send_watch(a);
    }
}

static void
timer_cb(uv_timer_t *t)
{
    struct agent *a = t->data;

    agent_store_tick(a->store);
    if (a->fabric) {
        agent_fabric_tick(a->fabric);
    }
    if (a->registered && !a->report_in_flight) {
        send_report(a);
    }
    agent_run(a);
}

/* ------------------------------------------------------------------------
 * Life cycle. */

static int
copy_config(struct agent_config *dst, const struct agent_config *src)
{
    char **d[] = {&dst->api_listen,     &dst->shm_name,
                  &dst->node,           &dst->brain,
                  &dst->http_listen,    &dst->rack,
                  &dst->zone,           &dst->nvme_dir,
                  &dst->data_address,   &dst->cuda_lib,
                  &dst->log_level,      &dst->etcd_endpoints,
                  &dst->etcd_cacert,    &dst->etcd_cert,
                  &dst->etcd_key,       &dst->data_transports,
                  &dst->data_addresses, &dst->api_group};

    *dst = *src;
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) {
        *d[i] = strdup(*d[i] ? *d[i] : "");
    }
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) {
        if (!*d[i]) {
            mcos_cfg_free(agent_config_opts, agent_n_config_opts, dst);
            return -ENOMEM;
        }
    }
    return 0;
}

/* Creates the directory of an ipc:// socket path if it is missing (the
 * default lives in /run/mcos, which systemd's RuntimeDirectory makes). */
static int
make_ipc_dir(const char *url, char *err, size_t errlen)
{
    char path[512], *slash;

    if (strncmp(url, "ipc://", 6)) {
        return 0;
    }
    snprintf(path, sizeof path, "%s", url + 6);
    slash = strrchr(path, '/');
    if (!slash || slash == path) {
        return 0;
    }
    *slash = '\0';
    if (mkdir(path, 0755) && errno != EEXIST) {
        int r = -errno;

        snprintf(err, errlen, "api_listen: cannot create %s: %s", path,
                 strerror(-r));
        return r;
    }
    return 0;
}

/* With api_group: the API's ipc socket becomes group read/write in it
 * (connecting needs write permission), like the DRAM arena. */
static int
share_ipc_socket(const struct agent *a, char *err, size_t errlen)
{
    const char *path = a->cfg.api_listen + 6;

    if (a->api_gid < 0 || strncmp(a->cfg.api_listen, "ipc://", 6)) {
        return 0;
    }
    if (chown(path, (uid_t)-1, (gid_t)a->api_gid) || chmod(path, 0660)) {
        int r = -errno;

        snprintf(err, errlen,
                 "api_group: cannot give group %lld the socket %s: %s",
                 (long long)a->api_gid, path, strerror(-r));
        return r;
    }
    return 0;
}

static int
open_store(struct agent *a, char *err, size_t errlen)
{
    struct agent_store_config sc = {0};

    sc.node = a->cfg.node;
    sc.dram_bytes = a->cfg.dram_bytes;
    sc.shm_name = *a->cfg.shm_name ? a->cfg.shm_name : NULL;
    sc.shm_gid = a->api_gid;
    sc.nvme_dir = a->cfg.nvme_dir;
    sc.nvme_bytes = a->cfg.nvme_bytes;
    /* A GPU's HBM tier needs the CUDA backend; emulation stands in when
     * there is no GPU and the operator asked for it. */
    if (a->gpus.n > 0 && a->cfg.hbm_bytes) {
        /* A real GPU: its HBM through the CUDA backend, on the first GPU
         * (a tier per GPU is future work). */
        sc.hbm_bytes = a->cfg.hbm_bytes;
        sc.gpu = a->gpus.gpu[0].index;
        sc.cuda_lib = a->cfg.cuda_lib;
    } else if (a->cfg.emulate_hbm_bytes) {
        sc.hbm_bytes = a->cfg.emulate_hbm_bytes;
        sc.hbm_emulated = true;
    }
    sc.budgets[MCOS__TIER_KIND__TIER_HBM] = a->cfg.bw_hbm;
    sc.budgets[MCOS__TIER_KIND__TIER_DRAM] = a->cfg.bw_dram;
    sc.budgets[MCOS__TIER_KIND__TIER_NVME] = a->cfg.bw_nvme;
    return agent_store_create(a->loop, a->clock, &sc, a->tables, a->obs,
                              &a->store, err, errlen);
}

/* The fabric: control endpoint and data transports to peer agents, over
 * the store's DRAM arena.  "off" runs the node without one. */
static int
open_fabric(struct agent *a, char *err, size_t errlen)
{
    struct agent_fabric_config fc = {0};
    struct agent_fabric_hooks hooks;
    char addrs[AGENT_TRANSPORT_MAX_NICS][AGENT_DATA_ADDR_LEN];
    const char *more[AGENT_TRANSPORT_MAX_NICS];
    int r;

    if (!strcmp(a->cfg.data_transports, "off")) {
        return 0;
    }
    r = agent_config_data_addresses(&a->cfg, addrs, AGENT_TRANSPORT_MAX_NICS,
                                    err, errlen);
    if (r < 0) {
        return r;
    }
    for (int i = 1; i < r; i++) {
        more[i - 1] = addrs[i];
    }
    fc.more_addresses = more;
    fc.n_more_addresses = r > 1 ? (unsigned)r - 1 : 0;
    fc.node = a->cfg.node;
    fc.boot_id = a->boot_id.v;
    fc.address = a->cfg.data_address;
    fc.port = (uint16_t)a->cfg.data_port;
    fc.transports = a->cfg.data_transports;
    fc.conns = (unsigned)a->cfg.data_conns;
    fc.hbm = agent_store_tier(a->store, MCOS__TIER_KIND__TIER_HBM);
    agent_store_fabric_hooks(a->store, &hooks);
    r = agent_fabric_create(
        a->loop, a->clock, &fc, a->tables,
        agent_store_tier(a->store, MCOS__TIER_KIND__TIER_DRAM), &hooks,
        &a->fabric, err, errlen);
    if (r == 0) {
        agent_store_set_fabric(a->store, a->fabric);
    }
    return r;
}

static void
pick_data_address(struct agent *a)
{
    const struct agent_nic *nic;
    char first[AGENT_DATA_ADDR_LEN];
    size_t n;

    if (*a->cfg.data_address) {
        return;
    }
    /* data.addresses names the first NIC when data.address is unset. */
    n = strcspn(a->cfg.data_addresses, ",");
    snprintf(first, sizeof first, "%.*s", (int)n, a->cfg.data_addresses);
    free(a->cfg.data_address);
    a->cfg.data_address =
        strdup(*first                             ? first
               : agent_observe_nics(a->obs, &nic) ? nic[0].address
                                                  : "127.0.0.1");
}

/* Registers this node in etcd under a lease, so the brain learns of its
 * death within one TTL even when the brain cannot hear from it. */
static int
start_membership(struct agent *a, char *err, size_t errlen)
{
    struct mcos_etcd_options eo;
    char boot[17];
    json_t *v;
    char *s;
    int r;

    snprintf(boot, sizeof boot, "%016" PRIx64, a->boot_id.v);
    v = json_pack("{s:s, s:s, s:s, s:s}", "node", a->cfg.node, "boot_id", boot,
                  "brain", a->cfg.brain, "data_address", a->cfg.data_address);
    s = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (!s) {
        return -ENOMEM;
    }
    eo = mcos_etcd_tls_options(a->cfg.etcd_cacert, a->cfg.etcd_cert,
                               a->cfg.etcd_key);
    r = mcos_member_start(a->loop, a->cfg.etcd_endpoints, &eo, a->cfg.node, s,
                          (int64_t)a->cfg.etcd_lease_ttl_s, &a->member, err,
                          errlen);
    free(s);
    if (r == 0) {
        /* Where to look for the leader when no brain answers. */
        r = mcos_etcd_create(a->loop, a->cfg.etcd_endpoints, &eo, &a->etcd,
                             err, errlen);
        if (r) {
            mcos_member_stop(a->member);
            a->member = NULL;
        }
    }
    return r;
}

int
agent_create(uv_loop_t *loop, const struct agent_config *cfg,
             const struct mcos_clock *clock, struct agent **out, char *err,
             size_t errlen)
{
    struct agent *a;
    int r;

    r = agent_config_check(cfg, err, errlen);
    if (r) {
        return r;
    }
    a = calloc(1, sizeof *a);
    if (!a) {
        return -ENOMEM;
    }
    a->loop = loop;
    a->clock = clock;
    r = copy_config(&a->cfg, cfg);
    if (r) {
        goto fail_free;
    }
    r = agent_brain_list(cfg->brain, &a->brains, &a->n_brains, err, errlen);
    if (r == 0 && !(a->brain_url = strdup(a->brains[0]))) {
        r = -ENOMEM;
    }
    if (r) {
        goto fail_cfg;
    }
    r = agent_config_api_gid(cfg, &a->api_gid, err, errlen);
    if (r) {
        goto fail_cfg;
    }
    a->boot_id = mcos_boot_id_new();
    a->interval_ms = cfg->report_interval_ms;
    a->start_us = a->last_contact_us = mcos_clock_now(clock);

    r = agent_observe_create(&a->obs);
    if (r) {
        snprintf(err, errlen, "cannot start telemetry: %s", mcos_strerror(r));
        goto fail_cfg;
    }
    pick_data_address(a);
    if (!a->cfg.data_address) {
        r = -ENOMEM;
        goto fail_obs;
    }
    agent_gpu_probe(a->cfg.cuda_lib, &a->gpus);
    r = agent_tables_create(a->cfg.node, &a->tables);
    if (r) {
        goto fail_obs;
    }
    r = open_store(a, err, errlen);
    if (r) {
        goto fail_tables;
    }
    r = open_fabric(a, err, errlen);
    if (r) {
        goto fail_store;
    }
    r = make_ipc_dir(cfg->api_listen, err, errlen);
    if (r == 0) {
        r = agent_local_api_create(loop, a->clock, cfg->api_listen, a->store,
                                   &a->api, err, errlen);
    }
    if (r) {
        goto fail_store;
    }
    r = share_ipc_socket(a, err, errlen);
    if (r) {
        goto fail_api;
    }
    r = mcos_bus_client_create(loop, a->brain_url, &a->bus, err, errlen);
    if (r) {
        goto fail_api;
    }
    if (*cfg->http_listen) {
        r = mcos_http_server_create(loop, cfg->http_listen, &a->http, err,
                                    errlen);
        if (r) {
            goto fail_bus;
        }
        r = agent_api_register(a);
        if (r == 0) {
            r = mcos_http_server_start(a->http, err, errlen);
        }
        if (r) {
            goto fail_http;
        }
    }
    if (*a->cfg.etcd_endpoints) {
        r = start_membership(a, err, errlen);
        if (r) {
            goto fail_http;
        }
    }
    uv_timer_init(loop, &a->timer);
    a->timer.data = a;
    uv_timer_init(loop, &a->switch_timer);
    a->switch_timer.data = a;
    uv_timer_start(&a->timer, timer_cb, a->interval_ms, a->interval_ms);
    LOG_INFO("agent %s (boot %016" PRIx64 ") reporting to %s every %" PRIu64
             " ms; %s",
             a->cfg.node, a->boot_id.v, a->brain_url, a->interval_ms,
             a->gpus.note);
    agent_run(a);
    *out = a;
    return 0;

fail_http:
    mcos_http_server_close(a->http);
fail_bus:
    mcos_bus_client_close(a->bus);
fail_api:
    agent_local_api_close(a->api);
fail_store:
    agent_fabric_close(a->fabric);
    agent_store_close(a->store);
fail_tables:
    agent_tables_destroy(a->tables);
fail_obs:
    agent_observe_destroy(a->obs);
fail_cfg:
    agent_brain_list_free(a->brains, a->n_brains);
    free(a->brain_url);
    mcos_cfg_free(agent_config_opts, agent_n_config_opts, &a->cfg);
fail_free:
    free(a);
    return r;
}

static void
closed_cb(uv_handle_t *h)
{
    struct agent *a = h->data;

    if (--a->closing > 0) {
        return;
    }
    agent_tables_destroy(a->tables);
    agent_observe_destroy(a->obs);
    agent_brain_list_free(a->brains, a->n_brains);
    free(a->brain_url);
    free(a->learned_brain);
    free(a->next_brain);
    mcos_cfg_free(agent_config_opts, agent_n_config_opts, &a->cfg);
    free(a);
}

void
agent_close(struct agent *a)
{
    if (!a || a->closing) {
        return;
    }
    a->closing = 2; /* the two timers */
    mcos_member_stop(a->member);
    a->member = NULL;
    if (a->lookup) {
        a->lookup->a = NULL; /* its answer comes, to nobody */
        a->lookup = NULL;
    }
    mcos_etcd_close(a->etcd);
    a->etcd = NULL;
    mcos_http_server_close(a->http);
    /* The fabric, then the store: together they answer every request
     * still waiting on a copy while the API socket can still carry the
     * answers. */
    agent_fabric_close(a->fabric);
    a->fabric = NULL;
    agent_store_close(a->store);
    a->store = NULL;
    agent_local_api_close(a->api);
    mcos_bus_client_close(a->bus);
    a->watch = NULL;
    uv_close((uv_handle_t *)&a->timer, closed_cb);
    uv_close((uv_handle_t *)&a->switch_timer, closed_cb);
}
