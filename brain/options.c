/* mcos-brain's settings: one table for the config file and the flags. */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "brain.h"
#include "etcd.h"
#include "ids.h"

#define OPT(KEY, FLAG, TYPE, FIELD, MIN, MAX, DEF, HELP)                      \
    {                                                                         \
        KEY, FLAG, TYPE, offsetof(struct brain_config, FIELD), MIN, MAX, DEF, \
            HELP                                                              \
    }

const struct mcos_cfg_opt brain_config_opts[] = {
    OPT("listen", "listen", MCOS_CFG_STRING, listen, 0, 0,
        "tcp://0.0.0.0:7650", "address agents connect to (nng URL)"),
    OPT("http_listen", "http", MCOS_CFG_STRING, http_listen, 0, 0,
        "http://127.0.0.1:7651", "HTTP API and /metrics (\"\" disables)"),
    OPT("state_dir", "state-dir", MCOS_CFG_STRING, state_dir, 0, 0,
        "/var/lib/mcos/brain", "local state directory (embedded mode)"),
    OPT("report_interval_ms", "report-interval-ms", MCOS_CFG_MS,
        report_interval_ms, 10, 3600000, "1000",
        "how often agents report (pushed to them in tables)"),
    OPT("liveness.suspect_after_ms", "suspect-after-ms", MCOS_CFG_MS,
        suspect_after_ms, 10, 86400000, "3000",
        "silence before a node is suspect"),
    OPT("liveness.fail_after_ms", "fail-after-ms", MCOS_CFG_MS, fail_after_ms,
        20, 86400000, "10000", "silence before a node is failed"),
    OPT("policy.high_watermark_pct", "high-watermark-pct", MCOS_CFG_UINT,
        high_watermark_pct, 1, 100, "90", "tier usage that starts demotion"),
    OPT("policy.low_watermark_pct", "low-watermark-pct", MCOS_CFG_UINT,
        low_watermark_pct, 0, 100, "75", "tier usage demotion stops at"),
    OPT("policy.admit_min_hotness_milli", "admit-min-hotness-milli",
        MCOS_CFG_UINT, admit_min_hotness_milli, 0, 1000000, "0",
        "hotness x1000 an object needs to enter a tier"),
    OPT("policy.demote_to_peers", "demote-to-peers", MCOS_CFG_BOOL,
        demote_to_peers, 0, 0, "false",
        "the slowest tier of a node with a data transport demotes into "
        "peers' memory instead of ending the chain"),
    OPT("routing.dram_fetch_milli", "route-dram-fetch-milli", MCOS_CFG_UINT,
        dram_fetch_milli, 0, 1000000, "50",
        "routing: cost of a prefix block held in DRAM, x1000 of computing "
        "it"),
    OPT("routing.nvme_fetch_milli", "route-nvme-fetch-milli", MCOS_CFG_UINT,
        nvme_fetch_milli, 0, 1000000, "250",
        "routing: cost of a prefix block held on NVMe, x1000"),
    OPT("routing.load_weight_milli", "route-load-weight-milli", MCOS_CFG_UINT,
        load_weight_milli, 0, 100000000, "4000",
        "routing: cost of one queued request, in blocks x1000"),
    OPT("routing.peer_fetch_milli", "route-peer-fetch-milli", MCOS_CFG_UINT,
        peer_fetch_milli, 0, 1000000, "100",
        "routing: cost of a prefix block copied from the peer that holds it, "
        "x1000 of computing it (1000 or more: never copy; below, the brain "
        "orders the copy when that wins)"),
    OPT("routing.queue_block_milli", "route-queue-block-milli", MCOS_CFG_UINT,
        queue_block_milli, 0, 100000, "1000",
        "routing: cost of one prefill block queued on a node (engines "
        "report them), x1000 of computing a block"),
    OPT("routing.bound_eps_milli", "route-bound-eps-milli", MCOS_CFG_UINT,
        bound_eps_milli, 0, 100000, "250",
        "routing: bounded-load slack (no node above (1+eps) x mean load)"),
    OPT("routing.route_hold_ms", "route-hold-ms", MCOS_CFG_MS, route_hold_ms,
        100, 3600000, "5000",
        "routing: how long a routed request counts as its node's load when "
        "no engine load report shows it (about a request's life)"),
    OPT("routing.route_transit_ms", "route-transit-ms", MCOS_CFG_MS,
        route_transit_ms, 0, 60000, "50",
        "routing: time a routed request takes to reach its engine; an engine "
        "load report covers the routes made that long before it"),
    OPT("routing.rack_penalty_milli", "route-rack-penalty-milli",
        MCOS_CFG_UINT, rack_penalty_milli, 0, 100000000, "2000",
        "routing: cost of serving a request outside its rack, x1000"),
    OPT("replication.min_hotness_milli", "repl-min-hotness-milli",
        MCOS_CFG_UINT, repl_min_hotness_milli, 0, 1000000000, "2000",
        "replication: decayed accesses x1000 that make a KV block hot"),
    OPT("replication.copies", "repl-copies", MCOS_CFG_UINT, repl_copies, 1, 64,
        "2", "replication: live nodes a hot block is kept on (1 disables)"),
    OPT("replication.budget", "repl-budget", MCOS_CFG_UINT, repl_budget, 0,
        100000, "64", "replication: new copies started per round, at most"),
    OPT("replication.budget_bytes", "repl-budget-bytes", MCOS_CFG_BYTES,
        repl_budget_bytes, 0, 0, "256MiB",
        "replication: bytes of new copies per round, at most (each copy "
        "charged its namespace's largest block)"),
    OPT("replication.candidates", "repl-candidates", MCOS_CFG_UINT,
        repl_candidates, 1, 100000, "256",
        "replication: hottest blocks examined per namespace and round"),
    OPT("replication.interval_ms", "repl-interval-ms", MCOS_CFG_MS,
        repl_interval_ms, 10, 86400000, "5000",
        "replication: how often a round runs"),
    OPT("replication.drop_hits", "repl-drop-hits", MCOS_CFG_UINT,
        repl_drop_hits, 0, 1000000000, "1",
        "replication: a copy with fewer hits than this per window is "
        "dropped (0 never drops)"),
    OPT("replication.drop_after_ms", "repl-drop-after-ms", MCOS_CFG_MS,
        repl_drop_after_ms, 10, 86400000, "60000",
        "replication: the hit window; also how long a copy may take"),
    OPT("placement.admit_pressure_milli", "admit-pressure-milli",
        MCOS_CFG_UINT, admit_pressure_milli, 0, 1000000, "1000",
        "placement: how far admission rises (x1000) as a tier fills from "
        "the low to the high watermark"),
    OPT("prefetch.min_support", "prefetch-min-support", MCOS_CFG_UINT,
        prefetch_min_support, 1, 1000000, "3",
        "prefetch: times an access pair is seen before it becomes a rule"),
    OPT("prefetch.deadline_ms", "prefetch-deadline-ms", MCOS_CFG_MS,
        prefetch_deadline_ms, 1, 60000, "50",
        "prefetch: deadline of the moves a prefetch rule starts"),
    OPT("prefetch.max_rules", "prefetch-max-rules", MCOS_CFG_UINT,
        prefetch_max_rules, 0, 10000, "256",
        "prefetch: rules per node, the best supported (0 disables)"),
    OPT("etcd.endpoints", "etcd", MCOS_CFG_STRING, etcd_endpoints, 0, 0, "",
        "etcd client URLs, comma-separated: leader election among brains, "
        "shared config, node leases (\"\" disables: embedded mode)"),
    OPT("etcd.required", "etcd-required", MCOS_CFG_BOOL, etcd_required, 0, 0,
        "true",
        "exit if etcd cannot be reached at start (false: run embedded)"),
    OPT("etcd.lease_ttl_s", "etcd-lease-ttl-s", MCOS_CFG_UINT,
        etcd_lease_ttl_s, 2, 3600, "5",
        "seconds the leader's lease outlives it (bounds failover)"),
    MCOS_ETCD_TLS_CONFIG_OPTS(OPT),
    OPT("name", "name", MCOS_CFG_STRING, name, 0, 0, "",
        "this brain's name among brains (\"\": the host name)"),
    OPT("advertise", "advertise", MCOS_CFG_STRING, advertise, 0, 0, "",
        "bus URL agents are sent to when this brain leads (\"\": listen)"),
    OPT("log_level", "log-level", MCOS_CFG_STRING, log_level, 0, 0, "info",
        "log levels, e.g. info or info,bus=debug"),
};

const size_t brain_n_config_opts =
    sizeof brain_config_opts / sizeof brain_config_opts[0];

int
brain_config_check(const struct brain_config *c, char *err, size_t errlen)
{
    if (c->fail_after_ms <= c->suspect_after_ms) {
        snprintf(err, errlen,
                 "liveness.fail_after_ms (%llu) must be greater than "
                 "liveness.suspect_after_ms (%llu)",
                 (unsigned long long)c->fail_after_ms,
                 (unsigned long long)c->suspect_after_ms);
        return -EINVAL;
    }
    if (c->suspect_after_ms < c->report_interval_ms) {
        snprintf(err, errlen,
                 "liveness.suspect_after_ms (%llu) must be at least "
                 "report_interval_ms (%llu), or every node is suspect "
                 "between reports",
                 (unsigned long long)c->suspect_after_ms,
                 (unsigned long long)c->report_interval_ms);
        return -EINVAL;
    }
    if (c->low_watermark_pct > c->high_watermark_pct) {
        snprintf(err, errlen,
                 "policy.low_watermark_pct (%llu) must not exceed "
                 "policy.high_watermark_pct (%llu)",
                 (unsigned long long)c->low_watermark_pct,
                 (unsigned long long)c->high_watermark_pct);
        return -EINVAL;
    }
    static const char *const bus_schemes[] = {"tcp", "ipc", NULL};
    static const char *const http_schemes[] = {"http", NULL};

    if (mcos_check_url("listen", c->listen, bus_schemes, err, errlen)) {
        return -EINVAL;
    }
    if (c->http_listen && *c->http_listen &&
        mcos_check_url("http_listen", c->http_listen, http_schemes, err,
                       errlen)) {
        return -EINVAL;
    }
    if (c->advertise && *c->advertise &&
        mcos_check_url("advertise", c->advertise, bus_schemes, err, errlen)) {
        return -EINVAL;
    }
    if (c->name && *c->name && !mcos_node_name_valid(c->name)) {
        snprintf(err, errlen,
                 "name: bad brain name '%s' (1-63 of [A-Za-z0-9._-], "
                 "starting with a letter or digit)",
                 c->name);
        return -EINVAL;
    }
    if (!c->state_dir || !*c->state_dir) {
        snprintf(err, errlen, "state_dir must not be empty");
        return -EINVAL;
    }
    return mcos_etcd_config_check(c->etcd_endpoints, c->etcd_cacert,
                                  c->etcd_cert, c->etcd_key, err, errlen);
}

const char *const brain_config_live_keys[] = {
    "policy.high_watermark_pct",
    "policy.low_watermark_pct",
    "policy.admit_min_hotness_milli",
    "policy.demote_to_peers",
    "routing.dram_fetch_milli",
    "routing.nvme_fetch_milli",
    "routing.load_weight_milli",
    "routing.bound_eps_milli",
    "routing.rack_penalty_milli",
    "routing.queue_block_milli",
    "routing.peer_fetch_milli",
    "routing.route_hold_ms",
    "routing.route_transit_ms",
    "replication.min_hotness_milli",
    "replication.copies",
    "replication.budget",
    "replication.budget_bytes",
    "replication.candidates",
    "replication.interval_ms",
    "replication.drop_hits",
    "replication.drop_after_ms",
    "placement.admit_pressure_milli",
    "prefetch.min_support",
    "prefetch.deadline_ms",
    "prefetch.max_rules",
    NULL,
};
/* brain.live_from_etcd has a bit per live key. */
_Static_assert(
    sizeof brain_config_live_keys / sizeof brain_config_live_keys[0] - 1 <= 32,
    "more live keys than bits in live_from_etcd");

/* The option of live key `key`, or NULL with the reason in err. */
static const struct mcos_cfg_opt *
live_opt(const char *key, int *code, char *err, size_t errlen)
{
    const struct mcos_cfg_opt *o = NULL;

    for (size_t i = 0; i < brain_n_config_opts; i++) {
        if (!strcmp(brain_config_opts[i].key, key)) {
            o = &brain_config_opts[i];
        }
    }
    for (size_t i = 0; o && brain_config_live_keys[i]; i++) {
        if (!strcmp(brain_config_live_keys[i], key)) {
            return o;
        }
    }
    if (!o) {
        snprintf(err, errlen, "unknown config key '%.80s'", key);
        *code = -ENOENT;
    } else {
        snprintf(err, errlen,
                 "config key '%s' cannot be changed on a running cluster "
                 "(set it in the brain's config file); live keys are "
                 "policy.*, routing.*, replication.*, placement.* and "
                 "prefetch.*",
                 key);
        *code = -EPERM;
    }
    return NULL;
}

int
brain_config_live_get(const struct brain_config *c, const char *key, char *buf,
                      size_t len, char *err, size_t errlen)
{
    int code = 0;
    const struct mcos_cfg_opt *o = live_opt(key, &code, err, errlen);

    if (!o) {
        return code;
    }
    if (o->type == MCOS_CFG_BOOL) {
        snprintf(buf, len, "%s",
                 *(const bool *)((const char *)c + o->offset) ? "true"
                                                              : "false");
        return 0;
    }
    snprintf(buf, len, "%" PRIu64,
             *(const uint64_t *)((const char *)c + o->offset));
    return 0;
}

int
brain_config_live_set(struct brain_config *c, const char *key,
                      const char *value, const char *source, char *canon,
                      size_t canonlen, char *err, size_t errlen)
{
    int code = 0;
    const struct mcos_cfg_opt *o = live_opt(key, &code, err, errlen);
    struct brain_config tmp;
    int r;

    if (!o) {
        return code;
    }
    /* Live keys are numbers and booleans: a shallow copy to try the value
     * on is safe (its strings are the original's, and it is never
     * freed). */
    tmp = *c;
    r = mcos_cfg_set(brain_config_opts, brain_n_config_opts, &tmp, key, value,
                     source, err, errlen);
    if (r == 0) {
        r = brain_config_check(&tmp, err, errlen);
    }
    if (r) {
        return -EINVAL;
    }
    if (o->type == MCOS_CFG_BOOL) {
        *(bool *)((char *)c + o->offset) =
            *(const bool *)((const char *)&tmp + o->offset);
    } else {
        *(uint64_t *)((char *)c + o->offset) =
            *(const uint64_t *)((const char *)&tmp + o->offset);
    }
    return brain_config_live_get(c, key, canon, canonlen, err, errlen);
}
