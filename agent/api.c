/*
 * The agent's HTTP API: /metrics (Prometheus), /v1/status, /v1/table.
 * Handlers run on the loop thread; the table is read through RCU like any
 * other reader.
 */
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

    snprintf(boot, sizeof boot, "%016" PRIx64, a->boot_id.v);
    for (size_t i = 0; i < a->gpus.n; i++) {
        json_array_append_new(
            gpus, json_pack("{s:i, s:s, s:I}", "index", a->gpus.gpu[i].index,
                            "name", a->gpus.gpu[i].name, "memory_bytes",
                            (json_int_t)a->gpus.gpu[i].memory_bytes));
    }
    mcos_http_respond_json(
        req, 200,
        json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:b, s:b, s:b, s:I, s:I, "
                  "s:o, s:s, s:{s:I, s:s, s:I, s:I, s:b}}",
                  "node", a->cfg.node, "version", MCOS_VERSION, "boot_id",
                  boot, "brain", a->cfg.brain, "applied_gen",
                  (json_int_t)agent_tables_gen(a->tables), "brain_gen",
                  (json_int_t)a->brain_gen, "registered", a->registered,
                  "connected", a->connected, "stale", a->stale,
                  "last_contact_ms",
                  (json_int_t)((now - a->last_contact_us) / 1000),
                  "report_interval_ms", (json_int_t)a->interval_ms, "gpus",
                  gpus, "gpu_note", a->gpus.note, "tiers", "dram_bytes",
                  (json_int_t)a->cfg.dram_bytes, "nvme_dir", a->cfg.nvme_dir,
                  "nvme_bytes", (json_int_t)a->cfg.nvme_bytes, "hbm_bytes",
                  (json_int_t)a->cfg.emulate_hbm_bytes, "hbm_emulated",
                  a->cfg.emulate_hbm_bytes > 0 && a->gpus.n == 0));
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

static void
metric(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
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
#undef GAUGE
#undef COUNTER
    metric(f, "mcos_agent_tier_capacity_bytes", "gauge",
           "Configured capacity per tier.");
    fprintf(f,
            "mcos_agent_tier_capacity_bytes{node=\"%s\",tier=\"dram\","
            "emulated=\"false\"} %" PRIu64 "\n",
            node, a->cfg.dram_bytes);
    if (*a->cfg.nvme_dir) {
        fprintf(f,
                "mcos_agent_tier_capacity_bytes{node=\"%s\",tier=\"nvme\","
                "emulated=\"false\"} %" PRIu64 "\n",
                node, a->cfg.nvme_bytes);
    }
    if (a->cfg.emulate_hbm_bytes && !a->gpus.n) {
        fprintf(f,
                "mcos_agent_tier_capacity_bytes{node=\"%s\",tier=\"hbm\","
                "emulated=\"true\"} %" PRIu64 "\n",
                node, a->cfg.emulate_hbm_bytes);
    }
    for (size_t i = 0; i < a->gpus.n; i++) {
        fprintf(f,
                "mcos_agent_tier_capacity_bytes{node=\"%s\",tier=\"hbm\","
                "emulated=\"false\",gpu=\"%d\"} %" PRIu64 "\n",
                node, a->gpus.gpu[i].index, a->gpus.gpu[i].memory_bytes);
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
                                    get_table, a))) {
        return r;
    }
    return 0;
}
