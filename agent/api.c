/*
 * The agent's HTTP API: /metrics (Prometheus), /v1/status, /v1/table.
 * Handlers run on the loop thread; the table is read through RCU like any
 * other reader.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "wire.h"

static void
get_status(struct mcos_http_request *req, void *arg)
{
    struct agent *a = arg;
    uint64_t now = mcos_clock_now(a->clock);
    char boot[20];
    json_t *gpus = json_array();
    json_t *doc;

    uint64_t l2_max, l2_window, l2_obj;
    bool l2 = agent_store_l2(a->store, &l2_max, &l2_window, &l2_obj);
    char l2_id[20];

    snprintf(l2_id, sizeof l2_id, "%016" PRIx64, l2_obj);
    snprintf(boot, sizeof boot, "%016" PRIx64, a->boot_id.v);
    for (size_t i = 0; i < a->gpus.n; i++) {
        json_array_append_new(
            gpus, json_pack("{s:i, s:s, s:I}", "index", a->gpus.gpu[i].index,
                            "name", a->gpus.gpu[i].name, "memory_bytes",
                            (json_int_t)a->gpus.gpu[i].memory_bytes));
    }
    doc = json_pack(
        "{s:s, s:s, s:s, s:s, s:I, s:I, s:b, s:b, s:b, s:I, s:I, "
        "s:o, s:s, s:{s:I, s:s, s:I, s:I, s:b}, "
        "s:{s:b, s:I, s:I, s:s}}",
        "node", a->cfg.node, "version", MCOS_VERSION, "boot_id", boot, "brain",
        a->cfg.brain, "applied_gen", (json_int_t)agent_tables_gen(a->tables),
        "brain_gen", (json_int_t)a->brain_gen, "registered", a->registered,
        "connected", a->connected, "stale", a->stale, "last_contact_ms",
        (json_int_t)((now - a->last_contact_us) / 1000), "report_interval_ms",
        (json_int_t)a->interval_ms, "gpus", gpus, "gpu_note", a->gpus.note,
        "tiers", "dram_bytes", (json_int_t)a->cfg.dram_bytes, "nvme_dir",
        a->cfg.nvme_dir, "nvme_bytes", (json_int_t)a->cfg.nvme_bytes,
        "hbm_bytes", (json_int_t)a->cfg.emulate_hbm_bytes, "hbm_emulated",
        a->cfg.emulate_hbm_bytes > 0 && a->gpus.n == 0, "l2", "available", l2,
        "persist_max_bytes", (json_int_t)l2_max, "window_bytes",
        (json_int_t)l2_window, "object", l2_obj ? l2_id : "");
    if (doc) {
        /* With several brains: the one followed now. */
        json_object_set_new(doc, "brain_url", json_string(a->brain_url));
        json_object_set_new(
            doc, "brain_switches",
            json_integer((json_int_t)a->counters.brain_switches));
    }
    mcos_http_respond_json(req, doc ? 200 : 500,
                           doc ? doc : json_pack("{s:s}", "error", "oom"));
}

static void
get_table(struct mcos_http_request *req, void *arg)
{
    struct agent *a = arg;
    const struct mcos_table *t = agent_tables_read_lock(a->tables);
    char *dump = NULL;
    int r = t ? mcos_table_dump(t, true, &dump) : 0;

    agent_tables_read_unlock(a->tables);
    if (!t) {
        mcos_http_respond_error(req, 404, "no table yet");
        return;
    }
    if (r) {
        mcos_http_respond_error(req, 500, "out of memory");
        return;
    }
    mcos_http_respond(req, 200, "text/plain; charset=utf-8", dump,
                      strlen(dump));
    free(dump);
}

static json_t *
object_json(const struct agent *a, const struct agent_object *o, uint64_t now)
{
    Mcos__ObjectInfo i;
    char id[20], sum[20];

    agent_object_info(a->store, o, now, &i);
    snprintf(id, sizeof id, "%016" PRIx64, i.id);
    snprintf(sum, sizeof sum, "%016" PRIx64, i.checksum);
    return json_pack(
        "{s:s, s:s, s:I, s:s, s:s, s:s, s:b, s:f, s:i, s:i, "
        "s:s, s:I, s:I, s:b, s:I, s:I}",
        "id", id, "node", a->cfg.node, "size", (json_int_t)i.size, "class",
        mcos_class_name(i.class_), "state", agent_obj_state_name(o->state),
        "tier", mcos_tier_name(i.tier), "emulated", i.emulated, "hotness",
        i.hotness_milli / 1000.0, "expected_reuse", (int)i.expected_reuse,
        "pins", (int)i.pins, "checksum", sum, "hits", (json_int_t)i.hits,
        "misses", (json_int_t)i.misses, "prefetched", i.prefetched, "age_ms",
        (json_int_t)i.age_ms, "idle_ms", (json_int_t)i.idle_ms);
}

struct list_ctx {
    const struct agent *a; /* the agent */
    json_t *list;          /* objects so far */
    uint64_t now;          /* for ages */
    size_t max;            /* at most this many */
};

static int
list_one(struct agent_object *o, void *arg)
{
    struct list_ctx *l = arg;

    if (json_array_size(l->list) >= l->max) {
        return 1;
    }
    json_array_append_new(l->list, object_json(l->a, o, l->now));
    return 0;
}

/* GET /v1/objects[?limit=N] and /v1/objects/ID (16 hex digits). */
static void
get_objects(struct mcos_http_request *req, void *arg)
{
    struct agent *a = arg;
    const char *rest = mcos_http_request_path(req) + strlen("/v1/objects");
    uint64_t now = mcos_clock_now(a->clock), limit = 1000;
    const struct agent_object *o;
    const char *q = mcos_http_request_query(req);
    struct list_ctx l;
    char *end;
    uint64_t id;

    if (*rest == '\0' || !strcmp(rest, "/")) {
        if (!strncmp(q, "limit=", 6) &&
            (mcos_parse_uint(q + 6, &limit) || limit == 0)) {
            mcos_http_respond_error(req, 400,
                                    "limit must be a positive "
                                    "integer");
            return;
        }
        l.a = a;
        l.list = json_array();
        l.now = now;
        l.max = limit;
        agent_store_foreach(a->store, list_one, &l);
        mcos_http_respond_json(
            req, 200,
            json_pack("{s:s, s:I, s:o}", "node", a->cfg.node, "total",
                      (json_int_t)agent_store_count(a->store), "objects",
                      l.list));
        return;
    }
    rest++;
    errno = 0;
    id = strtoull(rest, &end, 16);
    if (errno || *end || !*rest || strlen(rest) > 16 || id == 0) {
        mcos_http_respond_error(req, 400,
                                "bad object id '%.40s' (want up "
                                "to 16 hex digits, not 0)",
                                rest);
        return;
    }
    o = agent_store_find(a->store, id);
    if (!o) {
        mcos_http_respond_error(req, 404, "no object %016" PRIx64 " on %s", id,
                                a->cfg.node);
        return;
    }
    mcos_http_respond_json(req, 200, object_json(a, o, now));
}

static void
metric(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Per verbs NIC: what each carried, so striping can be seen. */
static void
nic_metrics(FILE *f, const char *node, const struct agent_transport_stats *ts)
{
    static const struct {
        const char *name; /* metric */
        const char *help; /* its help text */
        size_t off;       /* the counter in agent_transport_nic_stats */
    } m[] = {
        {"mcos_agent_nic_slices_total",
         "Transfer slices each verbs NIC carried, as initiator.",
         offsetof(struct agent_transport_nic_stats, slices)},
        {"mcos_agent_nic_bytes_total", "Payload bytes of those slices.",
         offsetof(struct agent_transport_nic_stats, bytes)},
        {"mcos_agent_nic_slice_errors_total",
         "Slices that failed on each verbs NIC.",
         offsetof(struct agent_transport_nic_stats, slice_errors)},
    };

    for (size_t k = 0; ts->n_nics && k < sizeof m / sizeof m[0]; k++) {
        metric(f, m[k].name, "counter", m[k].help);
        for (unsigned i = 0; i < ts->n_nics; i++) {
            uint64_t v;

            memcpy(&v, (const char *)&ts->nic[i] + m[k].off, sizeof v);
            fprintf(f, "%s{node=\"%s\",nic=\"%s\"} %" PRIu64 "\n", m[k].name,
                    node, ts->nic[i].name, v);
        }
    }
}

/* The regions peers may reach (the DRAM arena, the HBM region where a
 * transport reaches GPU memory), and how the HBM one was registered. */
static void
region_metrics(FILE *f, const char *node, const struct agent_fabric *fab)
{
    Mcos__Region rs[2 * AGENT_TRANSPORT_MAX_REGIONS];
    struct agent_fabric_hbm hb[2];
    size_t n = agent_fabric_regions(fab, rs, sizeof rs / sizeof rs[0]);
    size_t nh = agent_fabric_hbm(fab, hb, 2);

    metric(f, "mcos_agent_fabric_region_bytes", "gauge",
           "Bytes of each region registered with a transport, by the tier "
           "it covers.");
    for (size_t i = 0; i < n; i++) {
        fprintf(f,
                "mcos_agent_fabric_region_bytes{node=\"%s\",transport=\"%s\","
                "tier=\"%s\"} %" PRIu64 "\n",
                node, mcos_transport_name(rs[i].transport),
                mcos_tier_name(rs[i].tier), rs[i].length);
    }
    if (nh == 0) {
        return;
    }
    metric(f, "mcos_agent_fabric_hbm_registered", "gauge",
           "1 when the HBM region is registered with the transport (via: "
           "dma-buf, peer-memory, host-memory), 0 when its HBM objects are "
           "staged through DRAM.");
    for (size_t i = 0; i < nh; i++) {
        fprintf(
            f,
            "mcos_agent_fabric_hbm_registered{node=\"%s\",transport=\"%s\","
            "via=\"%s\"} %d\n",
            node, agent_transport_kind_name(hb[i].transport),
            hb[i].via ? hb[i].via : "", hb[i].region.id != 0);
    }
}

static void
get_metrics(struct mcos_http_request *req, void *arg)
{
    struct agent *a = arg;
    const struct agent_counters *k = &a->counters;
    uint64_t now = mcos_clock_now(a->clock);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    const char *node = a->cfg.node;

    if (!f) {
        mcos_http_respond_error(req, 500, "out of memory");
        return;
    }
#define GAUGE(NAME, HELP, FMT, VAL)                                           \
    metric(f, NAME, "gauge", HELP);                                           \
    fprintf(f, NAME "{node=\"%s\"} " FMT "\n", node, VAL)
#define COUNTER(NAME, HELP, FIELD)                                            \
    metric(f, NAME, "counter", HELP);                                         \
    fprintf(f, NAME "{node=\"%s\"} %" PRIu64 "\n", node, k->FIELD)
    GAUGE("mcos_agent_applied_generation", "Table generation in force.",
          "%" PRIu64, agent_tables_gen(a->tables));
    GAUGE("mcos_agent_brain_generation",
          "Newest generation the brain said it has.", "%" PRIu64,
          a->brain_gen);
    GAUGE("mcos_agent_stale",
          "1 when the brain has not answered for "
          "stale_after_ms.",
          "%d", a->stale ? 1 : 0);
    GAUGE("mcos_agent_brain_connected",
          "1 when the last exchange with the brain succeeded.", "%d",
          a->connected ? 1 : 0);
    GAUGE("mcos_agent_seconds_since_brain_contact",
          "Seconds since the brain last answered.", "%.3f",
          (now - a->last_contact_us) / 1e6);
    GAUGE("mcos_agent_gpus", "GPUs found through the CUDA runtime.", "%zu",
          a->gpus.n);
    {
        struct agent_engine_load el;

        /* What the next report tells the brain of the engines' queues. */
        agent_local_api_load(a->api, now, &el);
        GAUGE("mcos_agent_engines",
              "Clients whose mcos_report_load the reports sum.", "%" PRIu32,
              el.engines);
        GAUGE("mcos_agent_engine_queued_requests",
              "Requests waiting in those engines, summed.", "%" PRIu32,
              el.queued_requests);
        GAUGE("mcos_agent_engine_running_requests",
              "Requests those engines are serving, summed.", "%" PRIu32,
              el.running_requests);
        GAUGE("mcos_agent_engine_queued_prefill_blocks",
              "KV blocks those engines must still prefill, summed.",
              "%" PRIu64, el.queued_prefill_blocks);
        GAUGE("mcos_agent_engine_load_age_seconds",
              "Age of the oldest engine's latest load report (0 without "
              "engines); the brain counts what it routed since on top.",
              "%.3f", el.sample_age_us / 1e6);
    }
    COUNTER("mcos_agent_hellos_sent_total", "Hellos sent.", hellos_sent);
    COUNTER("mcos_agent_reports_sent_total", "Reports sent.", reports_sent);
    COUNTER("mcos_agent_report_failures_total",
            "Reports without a good reply.", report_failures);
    COUNTER("mcos_agent_tables_applied_total", "Table generations applied.",
            tables_applied);
    COUNTER("mcos_agent_table_errors_total", "Table updates refused.",
            table_errors);
    COUNTER("mcos_agent_brain_errors_total", "Error replies from the brain.",
            brain_errors);
    COUNTER("mcos_agent_brain_switches_total",
            "Times the agent followed another brain.", brain_switches);
#undef GAUGE
#undef COUNTER
    metric(f, "mcos_agent_tier_capacity_bytes", "gauge", "Capacity per tier.");
    metric(f, "mcos_agent_tier_used_bytes", "gauge",
           "Bytes allocated per tier.");
    metric(f, "mcos_agent_tier_objects", "gauge", "Objects per tier.");
    for (int kind = MCOS__TIER_KIND__TIER_HBM;
         kind <= MCOS__TIER_KIND__TIER_NVME; kind++) {
        struct agent_store_tier u;
        const char *lbl;

        agent_store_tier_usage(a->store, kind, &u);
        if (!u.present) {
            continue;
        }
        lbl = u.emulated ? "true" : "false";
        fprintf(f,
                "mcos_agent_tier_capacity_bytes{node=\"%s\",tier=\"%s\","
                "emulated=\"%s\"} %" PRIu64 "\n"
                "mcos_agent_tier_used_bytes{node=\"%s\",tier=\"%s\","
                "emulated=\"%s\"} %" PRIu64 "\n"
                "mcos_agent_tier_objects{node=\"%s\",tier=\"%s\","
                "emulated=\"%s\"} %" PRIu64 "\n",
                node, mcos_tier_name(kind), lbl, u.capacity, node,
                mcos_tier_name(kind), lbl, u.used, node, mcos_tier_name(kind),
                lbl, u.objects);
    }
    {
        struct agent_store_counters sc;
        struct agent_local_api_counters ac;

        agent_store_counters(a->store, &sc);
        agent_local_api_counters(a->api, &ac);
#define SCOUNTER(NAME, HELP, VAL)                                             \
    metric(f, NAME, "counter", HELP);                                         \
    fprintf(f, NAME "{node=\"%s\"} %" PRIu64 "\n", node, (uint64_t)(VAL))
        SCOUNTER("mcos_agent_puts_total", "Objects committed.", sc.puts);
        SCOUNTER("mcos_agent_gets_total", "Views handed out.", sc.gets);
        SCOUNTER("mcos_agent_get_hits_total",
                 "Gets served from DRAM without a fetch.", sc.hits);
        SCOUNTER("mcos_agent_get_misses_total",
                 "Gets that had to fetch from a slower tier.", sc.misses);
        SCOUNTER("mcos_agent_moves_total", "Verified moves between tiers.",
                 sc.moves);
        SCOUNTER("mcos_agent_move_failures_total",
                 "Moves that failed or did not verify.", sc.move_failures);
        SCOUNTER("mcos_agent_demotions_total",
                 "Watermark demotions (down the chain, peers included).",
                 sc.demotions);
        SCOUNTER("mcos_agent_prefetch_hits_total",
                 "Prefetched objects then used.", sc.prefetch_hits);
        SCOUNTER("mcos_agent_prefetch_late_total",
                 "Prefetches finished after their deadline.",
                 sc.prefetch_late);
        SCOUNTER("mcos_agent_prefetch_wasted_total",
                 "Prefetched objects evicted unused.", sc.prefetch_wasted);
        SCOUNTER("mcos_agent_drops_total", "Objects evicted by intent.",
                 sc.drops);
        SCOUNTER("mcos_agent_remote_demotions_total",
                 "Objects demoted to a peer's memory, verified there.",
                 sc.remote_demotions);
        SCOUNTER("mcos_agent_remote_demotions_staged_total",
                 "Remote demotions sent from a dram staging copy of an hbm "
                 "or nvme object, because the transport cannot reach it "
                 "where it is.",
                 sc.remote_staged);
        SCOUNTER("mcos_agent_remote_demotions_from_hbm_total",
                 "Remote demotions sent straight from the HBM region, "
                 "unstaged.",
                 sc.remote_from_hbm);
        SCOUNTER("mcos_agent_remote_fetches_total",
                 "Objects brought back from a peer, verified.",
                 sc.remote_fetches);
        SCOUNTER("mcos_agent_remote_lost_total",
                 "Objects lost because the peer holding them restarted.",
                 sc.remote_lost);
        SCOUNTER("mcos_agent_replicas_sent_total",
                 "Replication tasks whose copy the peer verified.",
                 sc.replicas_sent);
        SCOUNTER("mcos_agent_replica_failures_total",
                 "Replication attempts that failed (retried with backoff).",
                 sc.replica_failures);
        SCOUNTER("mcos_agent_replicas_adopted_total",
                 "Replicas peers sent here, verified and kept.",
                 sc.replicas_adopted);
        SCOUNTER("mcos_agent_replicas_staged_total",
                 "Replica attempts that first copied the object from hbm or "
                 "nvme into registered dram, because the transport cannot "
                 "reach it where it is.",
                 sc.replicas_staged);
        SCOUNTER("mcos_agent_rule_drops_total",
                 "Objects dropped by the brain's drop rules (unused "
                 "replicas).",
                 sc.rule_drops);
        SCOUNTER("mcos_agent_rule_prefetches_total",
                 "Moves started by prefetch rules when their trigger was "
                 "read.",
                 sc.rule_prefetches);
        SCOUNTER("mcos_agent_residency_demotions_total",
                 "Watermark demotions ordered by the brain's residency "
                 "rule (the least likely to be read again first).",
                 sc.residency_demotions);
        SCOUNTER("mcos_agent_remote_demotion_backoffs_total",
                 "Pauses of watermark demotion to peers after one failed "
                 "(no admitted peer, no room on any, peer gone); 1 s "
                 "doubling to 30 s, reset by a success.",
                 sc.remote_demotion_backoffs);
        SCOUNTER("mcos_agent_api_requests_total", "Local API requests.",
                 ac.requests);
        SCOUNTER("mcos_agent_api_errors_total",
                 "Local API requests answered with an error.", ac.errors);
        SCOUNTER("mcos_agent_api_malformed_total",
                 "Local API requests refused as malformed.", ac.malformed);
        if (a->fabric) {
            struct agent_fabric_counters fc;
            struct agent_transport_stats ts;
            struct agent_fabric_link links[AGENT_MAX_PEER_LINKS];
            size_t nl;

            agent_fabric_counters(a->fabric, &fc);
            agent_fabric_transport_stats(a->fabric, &ts);
            SCOUNTER("mcos_agent_fabric_puts_total",
                     "Transfers to peers (replicas and demotions).", fc.puts);
            SCOUNTER("mcos_agent_fabric_put_failures_total",
                     "Transfers to peers that failed.", fc.put_failures);
            SCOUNTER("mcos_agent_fabric_gets_total", "Transfers from peers.",
                     fc.gets);
            SCOUNTER("mcos_agent_fabric_get_failures_total",
                     "Transfers from peers that failed.", fc.get_failures);
            SCOUNTER("mcos_agent_fabric_allocs_served_total",
                     "Reservations granted to peers (ALLOC).",
                     fc.served_allocs);
            SCOUNTER("mcos_agent_fabric_refused_total",
                     "Peer control requests refused.", fc.refused);
            SCOUNTER("mcos_agent_fabric_checksum_failures_total",
                     "Peer commits whose bytes did not match.",
                     fc.checksum_failures);
            SCOUNTER("mcos_agent_fabric_expired_total",
                     "Peer reservations never committed.", fc.expired);
            SCOUNTER("mcos_agent_fabric_bytes_served",
                     "Payload bytes peers moved in our regions.",
                     ts.bytes_served);
            SCOUNTER("mcos_agent_fabric_transport_refused_total",
                     "Transport requests refused (key, range, handshake).",
                     ts.refused);
            SCOUNTER("mcos_agent_fabric_slice_retries_total",
                     "Slices posted again on another NIC after theirs "
                     "failed.",
                     ts.slice_retries);
            SCOUNTER("mcos_agent_fabric_cpu_copy_bytes",
                     "Payload bytes the transports copied in user space.",
                     ts.cpu_copy_bytes);
            metric(f, "mcos_agent_fabric_hosted_objects", "gauge",
                   "Objects peers demoted to this node.");
            fprintf(f,
                    "mcos_agent_fabric_hosted_objects{node=\"%s\"} %" PRIu64
                    "\n",
                    node, fc.hosted_objects);
            SCOUNTER("mcos_agent_fabric_hbm_puts_total",
                     "Puts sent straight from the HBM region, unstaged.",
                     fc.hbm_puts);
            SCOUNTER("mcos_agent_fabric_hbm_landed_total",
                     "Replicas peers wrote straight into the HBM region.",
                     fc.hbm_landed);
            nic_metrics(f, node, &ts);
            region_metrics(f, node, a->fabric);
            nl = agent_fabric_links(a->fabric, links, AGENT_MAX_PEER_LINKS);
            metric(f, "mcos_agent_peer_bytes_total", "counter",
                   "Verified bytes moved to (tx) and from (rx) each peer.");
            for (size_t i = 0; i < nl; i++) {
                fprintf(f,
                        "mcos_agent_peer_bytes_total{node=\"%s\",peer=\"%s\","
                        "dir=\"tx\"} %" PRIu64 "\n"
                        "mcos_agent_peer_bytes_total{node=\"%s\",peer=\"%s\","
                        "dir=\"rx\"} %" PRIu64 "\n",
                        node, links[i].peer, links[i].tx_bytes, node,
                        links[i].peer, links[i].rx_bytes);
            }
            metric(f, "mcos_agent_peer_transfers_total", "counter",
                   "Verified transfers with each peer.");
            for (size_t i = 0; i < nl; i++) {
                fprintf(f,
                        "mcos_agent_peer_transfers_total{node=\"%s\","
                        "peer=\"%s\"} %" PRIu64 "\n",
                        node, links[i].peer, links[i].transfers);
            }
            metric(f, "mcos_agent_peer_transfer_errors_total", "counter",
                   "Failed transfers with each peer.");
            for (size_t i = 0; i < nl; i++) {
                fprintf(f,
                        "mcos_agent_peer_transfer_errors_total{node=\"%s\","
                        "peer=\"%s\"} %" PRIu64 "\n",
                        node, links[i].peer, links[i].errors);
            }
            metric(f, "mcos_agent_peer_transfer_seconds_total", "counter",
                   "Time spent in transfers with each peer.");
            for (size_t i = 0; i < nl; i++) {
                fprintf(f,
                        "mcos_agent_peer_transfer_seconds_total{node=\"%s\","
                        "peer=\"%s\"} %.6f\n",
                        node, links[i].peer, links[i].busy_us / 1e6);
            }
        }
#undef SCOUNTER
        metric(f, "mcos_agent_objects", "gauge", "Objects held.");
        fprintf(f, "mcos_agent_objects{node=\"%s\"} %zu\n", node,
                agent_store_count(a->store));
    }
    fclose(f);
    mcos_http_respond(req, 200, "text/plain; version=0.0.4", buf, len);
    free(buf);
}

int
agent_api_register(struct agent *a)
{
    int r;

    if ((r = mcos_http_server_route(a->http, "GET", "/metrics", false,
                                    get_metrics, a)) ||
        (r = mcos_http_server_route(a->http, "GET", "/v1/status", false,
                                    get_status, a)) ||
        (r = mcos_http_server_route(a->http, "GET", "/v1/table", false,
                                    get_table, a)) ||
        (r = mcos_http_server_route(a->http, "GET", "/v1/objects", true,
                                    get_objects, a))) {
        return r;
    }
    return 0;
}
