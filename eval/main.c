/*
 * mcos-bench: the trace-driven evaluation harness.
 *
 *   mcos-bench replay --trace FILE [options]   one trace, every policy,
 *                                              a table on stdout
 *   mcos-bench report --traces A,B --out DIR   the full evaluation: every
 *                                              trace, every policy, the
 *                                              bounds and a capacity sweep;
 *                                              Markdown, CSV, gnuplot
 *   mcos-bench gen [options]                   a synthetic trace (JSONL)
 *
 * Every parameter has a default and a flag (and a key for --config FILE);
 * replay and report print them all before running.
 *
 * Exit status: 0 success, 1 runtime error (a trace that does not load, a
 * failed run, a file that cannot be written), 2 bad usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "bounds.h"
#include "config.h"
#include "error.h"
#include "gen.h"
#include "log.h"
#include "policy.h"
#include "report.h"
#include "sim.h"
#include "trace.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE   2
#define MAX_SWEEP    32

MCOS_LOG_MODULE(bench);

/* Options of replay and report. */
struct cli {
    uint64_t nodes;        /* cluster size */
    uint64_t block_tokens; /* tokens per block id */
    uint64_t hbm;          /* HBM blocks per node */
    uint64_t dram;         /* DRAM blocks per node */
    uint64_t nvme;         /* NVMe blocks per node */
    uint64_t prefill_tps;  /* node prefill rate */
    uint64_t decode_tps;   /* per-request decode rate */
    uint64_t kv_bytes;     /* KV bytes per token */
    uint64_t fabric_bw;    /* bytes/s per link */
    uint64_t fabric_us;    /* fabric latency, us */
    uint64_t dram_bw;      /* DRAM -> HBM bytes/s */
    uint64_t nvme_bw;      /* NVMe -> HBM bytes/s */
    uint64_t sample_ms;    /* imbalance sampling period */
    uint64_t seed;         /* random seed */
    char *policies;        /* comma list or "all" */
    char *on_error;        /* refuse | skip */
    uint64_t max_requests; /* 0 = all */
    char *kv_weight;       /* Dynamo overlap_score_weight */
    char *sg_threshold;    /* SGLang cache_threshold */
    uint64_t sg_abs;       /* SGLang balance_abs_threshold */
    char *sg_rel;          /* SGLang balance_rel_threshold */
    uint64_t sg_tree;      /* SGLang max tree, blocks (0 = capacity) */
    uint64_t sg_evict_ms;  /* SGLang eviction interval */
    char *mc_dram;         /* MCOS route weight dram_fetch */
    char *mc_nvme;         /* MCOS route weight nvme_fetch */
    char *mc_peer;         /* MCOS route weight peer_fetch */
    char *mc_load_w;       /* MCOS route weight load_weight */
    char *mc_queue_w;      /* MCOS route weight queue_block_weight */
    char *mc_eps;          /* MCOS route weight bound_eps */
    char *mc_load;         /* MCOS load: queue | inflight | blocks | brain */
    bool mc_fetch;         /* MCOS fetches prefixes from peers */
    bool mc_migrate;       /* MCOS drops cold copies after a fetch */
    char *mc_hot;          /* MCOS hotness of a shared block */
    bool mc_partial;       /* MCOS drops partial last blocks */
    bool mc_promote;       /* MCOS promotes routed prefixes */
    bool mc_residency;     /* MCOS evicts by its residency table */
    bool mc_pending;       /* MCOS counts prefixes on their way */
    uint64_t mc_repl_bw;   /* MCOS replication budget, bytes/s */
    uint64_t mc_tick_ms;   /* MCOS replication tick */
    bool belady;           /* compute Belady per policy */
    bool timing;           /* report wall-clock figures */
    char *log_level;       /* log spec */
    char *trace;           /* replay: the trace */
    char *md;              /* replay: Markdown output, optional */
    char *csv;             /* replay: CSV output, optional */
    char *traces;          /* report: comma list of traces */
    char *out;             /* report: output folder */
    char *sweep_hbm;       /* report: HBM capacities to sweep */
    char *sweep_policies;  /* report: policies in the sweep */
    char *sweep_belady;    /* report: policy whose Belady is swept */
};

#define O(KEY, FLAG, TYPE, FIELD, MIN, MAX, DEF, HELP)                        \
    {                                                                         \
        KEY, FLAG, TYPE, offsetof(struct cli, FIELD), MIN, MAX, DEF, HELP     \
    }

#define COMMON_OPTS                                                           \
    O("nodes", "nodes", MCOS_CFG_UINT, nodes, 1, SIM_MAX_NODES, "8",          \
      "nodes in the simulated cluster"),                                      \
        O("block_tokens", "block-tokens", MCOS_CFG_UINT, block_tokens, 1,     \
          1u << 20, "512", "tokens per trace block id"),                      \
        O("hbm_blocks", "hbm-blocks", MCOS_CFG_UINT, hbm, 1, 1u << 30,        \
          "5860", "HBM capacity per node, blocks (5860 x 512 = 3M tokens)"),  \
        O("dram_blocks", "dram-blocks", MCOS_CFG_UINT, dram, 0, 1u << 30,     \
          "0", "DRAM capacity per node, blocks"),                             \
        O("nvme_blocks", "nvme-blocks", MCOS_CFG_UINT, nvme, 0, 1u << 30,     \
          "0", "NVMe capacity per node, blocks"),                             \
        O("prefill_tps", "prefill-tps", MCOS_CFG_UINT, prefill_tps, 1,        \
          100000000, "8000", "prefill rate of a node, tokens/s"),             \
        O("decode_tps", "decode-tps", MCOS_CFG_UINT, decode_tps, 1,           \
          100000000, "40", "decode rate of one request, tokens/s"),           \
        O("kv_bytes_per_token", "kv-bytes-per-token", MCOS_CFG_BYTES,         \
          kv_bytes, 1, 1u << 30, "160KiB",                                    \
          "KV-cache bytes per token (all layers)"),                           \
        O("fabric_bw", "fabric-bw", MCOS_CFG_BYTES, fabric_bw, 1, 0, "50GiB", \
          "fabric bandwidth per node and direction, bytes/s"),                \
        O("fabric_latency_us", "fabric-latency-us", MCOS_CFG_UINT, fabric_us, \
          0, 60000000, "20", "fixed cost of a fabric transfer"),              \
        O("dram_bw", "dram-bw", MCOS_CFG_BYTES, dram_bw, 1, 0, "100GiB",      \
          "DRAM to HBM bandwidth per node, bytes/s"),                         \
        O("nvme_bw", "nvme-bw", MCOS_CFG_BYTES, nvme_bw, 1, 0, "20GiB",       \
          "NVMe to HBM bandwidth per node, bytes/s"),                         \
        O("imbalance_window", "imbalance-window", MCOS_CFG_MS, sample_ms, 1,  \
          0, "10s", "load-imbalance averaging window"),                       \
        O("seed", "seed", MCOS_CFG_UINT, seed, 0, 0, "1",                     \
          "random seed (policies' tie-breaks, random routing)"),              \
        O("policies", "policies", MCOS_CFG_STRING, policies, 0, 0, "all",     \
          "comma-separated policies, or all"),                                \
        O("on_error", "on-error", MCOS_CFG_STRING, on_error, 0, 0, "refuse",  \
          "malformed trace lines: refuse (fail) or skip"),                    \
        O("max_requests", "max-requests", MCOS_CFG_UINT, max_requests, 0, 0,  \
          "0", "replay only the first N requests (0: all)"),                  \
        O("kv_overlap_weight", "kv-overlap-weight", MCOS_CFG_STRING,          \
          kv_weight, 0, 0, "1.0", "kv_overlap: Dynamo overlap_score_weight"), \
        O("sglang_cache_threshold", "sglang-cache-threshold",                 \
          MCOS_CFG_STRING, sg_threshold, 0, 0, "0.5",                         \
          "cache_aware: SGLang cache_threshold"),                             \
        O("sglang_balance_abs", "sglang-balance-abs", MCOS_CFG_UINT, sg_abs,  \
          0, 0, "32", "cache_aware: SGLang balance_abs_threshold"),           \
        O("sglang_balance_rel", "sglang-balance-rel", MCOS_CFG_STRING,        \
          sg_rel, 0, 0, "1.0001",                                             \
          "cache_aware: SGLang balance_rel_threshold"),                       \
        O("sglang_max_tree_blocks", "sglang-max-tree-blocks", MCOS_CFG_UINT,  \
          sg_tree, 0, 0, "0",                                                 \
          "cache_aware: tree size cap, blocks (0: node capacity)"),           \
        O("sglang_eviction_interval", "sglang-eviction-interval",             \
          MCOS_CFG_MS, sg_evict_ms, 1, 0, "60s",                              \
          "cache_aware: SGLang eviction_interval"),                           \
        O("mcos_dram_fetch", "mcos-dram-fetch", MCOS_CFG_STRING, mc_dram, 0,  \
          0, "0.05", "mcos: route cost of a DRAM block (1 = computing it)"),  \
        O("mcos_nvme_fetch", "mcos-nvme-fetch", MCOS_CFG_STRING, mc_nvme, 0,  \
          0, "0.25", "mcos: route cost of an NVMe block"),                    \
        O("mcos_peer_fetch", "mcos-peer-fetch", MCOS_CFG_STRING, mc_peer, 0,  \
          0, "0.1", "mcos: route cost of a block fetched from a peer"),       \
        O("mcos_load_weight", "mcos-load-weight", MCOS_CFG_STRING, mc_load_w, \
          0, 0, "4.0", "mcos: route cost of one unit of load"),               \
        O("mcos_queue_block_weight", "mcos-queue-block-weight",               \
          MCOS_CFG_STRING, mc_queue_w, 0, 0, "1.0",                           \
          "mcos: route cost of one queued prefill block (--mcos-load "        \
          "brain)"),                                                          \
        O("mcos_bound_eps", "mcos-bound-eps", MCOS_CFG_STRING, mc_eps, 0, 0,  \
          "0.25", "mcos: bounded-load slack"),                                \
        O("mcos_load", "mcos-load", MCOS_CFG_STRING, mc_load, 0, 0, "brain",  \
          "mcos: load term: queue, inflight, blocks or brain"),               \
        O("mcos_fetch", "mcos-fetch", MCOS_CFG_BOOL, mc_fetch, 0, 0, "true",  \
          "mcos: fetch a prefix from a peer when faster than computing"),     \
        O("mcos_migrate", "mcos-migrate", MCOS_CFG_BOOL, mc_migrate, 0, 0,    \
          "true", "mcos: drop other copies of a cold block it fetched"),      \
        O("mcos_hot", "mcos-hot", MCOS_CFG_STRING, mc_hot, 0, 0, "4",         \
          "mcos: hotness from which a block is kept on several nodes"),       \
        O("mcos_drop_partial", "mcos-drop-partial", MCOS_CFG_BOOL,            \
          mc_partial, 0, 0, "true",                                           \
          "mcos: drop a prompt's partial last block when it ends"),           \
        O("mcos_promote", "mcos-promote", MCOS_CFG_BOOL, mc_promote, 0, 0,    \
          "true", "mcos: promote a routed prefix held below HBM at once"),    \
        O("mcos_residency", "mcos-residency", MCOS_CFG_BOOL, mc_residency, 0, \
          0, "true", "mcos: evict by the brain's learned reuse, not LRU"),    \
        O("mcos_pending", "mcos-pending", MCOS_CFG_BOOL, mc_pending, 0, 0,    \
          "true", "mcos: count prefixes routed but not yet stored"),          \
        O("mcos_replicate_bw", "mcos-replicate-bw", MCOS_CFG_BYTES,           \
          mc_repl_bw, 0, 0, "0",                                              \
          "mcos: fabric bytes/s for replicating hot prefixes (0: off)"),      \
        O("mcos_tick", "mcos-tick", MCOS_CFG_MS, mc_tick_ms, 1, 0, "1s",      \
          "mcos: replication period"),                                        \
        O("belady", "belady", MCOS_CFG_BOOL, belady, 0, 0, "true",            \
          "compute Belady MIN per node for each policy's routing"),           \
        O("timing", "timing", MCOS_CFG_BOOL, timing, 0, 0, "true",            \
          "report wall-clock figures (false: byte-identical reruns)"),        \
        O("log_level", "log-level", MCOS_CFG_STRING, log_level, 0, 0, "warn", \
          "log spec, e.g. info or warn,trace=debug")

static const struct mcos_cfg_opt replay_opts[] = {
    O("trace", "trace", MCOS_CFG_STRING, trace, 0, 0, "",
      "Mooncake JSONL trace to replay (required)"),
    O("md", "md", MCOS_CFG_STRING, md, 0, 0, "",
      "also write a Markdown report here"),
    O("csv", "csv", MCOS_CFG_STRING, csv, 0, 0, "",
      "also write a CSV report here"),
    COMMON_OPTS,
};

static const struct mcos_cfg_opt report_opts[] = {
    O("traces", "traces", MCOS_CFG_STRING, traces, 0, 0, "",
      "comma-separated traces (required)"),
    O("out", "out", MCOS_CFG_STRING, out, 0, 0, "build/bench",
      "folder for eval.md, eval.csv, eval_sweep.csv, eval_*.gp"),
    O("sweep_hbm", "sweep-hbm", MCOS_CFG_STRING, sweep_hbm, 0, 0,
      "733,1465,2930,5860,11720,23440",
      "HBM blocks per node for the capacity sweep (empty: none)"),
    O("sweep_policies", "sweep-policies", MCOS_CFG_STRING, sweep_policies, 0,
      0, "all", "policies in the sweep"),
    O("sweep_belady", "sweep-belady", MCOS_CFG_STRING, sweep_belady, 0, 0,
      "kv_overlap", "policy whose Belady bound the sweep plots (empty: none)"),
    COMMON_OPTS,
};

#define N_REPLAY (sizeof replay_opts / sizeof replay_opts[0])
#define N_REPORT (sizeof report_opts / sizeof report_opts[0])

/* Options of gen (fractions as text, checked when converted). */
struct gcli {
    uint64_t seed;         /* random seed */
    uint64_t requests;     /* requests to write */
    uint64_t block_tokens; /* tokens per block id */
    char *session_rate;    /* sessions per second */
    char *turns_mean;      /* mean turns per session */
    uint64_t think_ms;     /* mean think time */
    uint64_t prompts;      /* shared system prompts */
    char *zipf_s;          /* Zipf exponent */
    uint64_t sys_min;      /* system prompt blocks, min */
    uint64_t sys_max;      /* ... max */
    uint64_t user_min;     /* user tokens per turn, min */
    uint64_t user_max;     /* ... max */
    uint64_t out_min;      /* answer tokens, min */
    uint64_t out_max;      /* ... max */
    uint64_t max_input;    /* prompt length cap */
    uint64_t burst_every;  /* burst period, ms */
    uint64_t burst_len;    /* burst length, ms */
    char *burst_factor;    /* rate multiplier in bursts */
    char *out;             /* output file, "-" = stdout */
};

#define G(KEY, FLAG, TYPE, FIELD, MIN, MAX, DEF, HELP)                        \
    {                                                                         \
        KEY, FLAG, TYPE, offsetof(struct gcli, FIELD), MIN, MAX, DEF, HELP    \
    }

static const struct mcos_cfg_opt gen_opts[] = {
    G("seed", "seed", MCOS_CFG_UINT, seed, 0, 0, "1", "random seed"),
    G("requests", "requests", MCOS_CFG_UINT, requests, 1, 100000000, "12000",
      "requests to write"),
    G("block_tokens", "block-tokens", MCOS_CFG_UINT, block_tokens, 1, 1u << 20,
      "512", "tokens per block id"),
    G("session_rate", "session-rate", MCOS_CFG_STRING, session_rate, 0, 0,
      "1.0", "new sessions per second outside bursts"),
    G("turns_mean", "turns-mean", MCOS_CFG_STRING, turns_mean, 0, 0, "4",
      "mean turns per session (geometric)"),
    G("think_ms", "think", MCOS_CFG_MS, think_ms, 0, 0, "60s",
      "mean time between a session's turns (exponential)"),
    G("system_prompts", "system-prompts", MCOS_CFG_UINT, prompts, 1, 1000000,
      "64", "distinct shared system prompts"),
    G("zipf_s", "zipf-s", MCOS_CFG_STRING, zipf_s, 0, 0, "1.1",
      "Zipf exponent of system prompt popularity"),
    G("system_blocks_min", "system-blocks-min", MCOS_CFG_UINT, sys_min, 1,
      4096, "2", "system prompt length, blocks, min"),
    G("system_blocks_max", "system-blocks-max", MCOS_CFG_UINT, sys_max, 1,
      4096, "16", "system prompt length, blocks, max"),
    G("user_min", "user-min", MCOS_CFG_UINT, user_min, 1, TRACE_MAX_TOKENS,
      "64", "new user tokens per turn, min"),
    G("user_max", "user-max", MCOS_CFG_UINT, user_max, 1, TRACE_MAX_TOKENS,
      "4096", "new user tokens per turn, max"),
    G("output_min", "output-min", MCOS_CFG_UINT, out_min, 0, TRACE_MAX_TOKENS,
      "16", "answer tokens per turn, min"),
    G("output_max", "output-max", MCOS_CFG_UINT, out_max, 0, TRACE_MAX_TOKENS,
      "1024", "answer tokens per turn, max"),
    G("max_input", "max-input", MCOS_CFG_UINT, max_input, 1, TRACE_MAX_TOKENS,
      "131072", "a session ends before its prompt exceeds this"),
    G("burst_every", "burst-every", MCOS_CFG_MS, burst_every, 0, 0, "5m",
      "burst period (0: no bursts)"),
    G("burst_len", "burst-len", MCOS_CFG_MS, burst_len, 0, 0, "30s",
      "burst length"),
    G("burst_factor", "burst-factor", MCOS_CFG_STRING, burst_factor, 0, 0, "4",
      "session rate multiplier during a burst"),
    G("out", "out", MCOS_CFG_STRING, out, 0, 0, "-",
      "output file (-: stdout)"),
};

#define N_GEN (sizeof gen_opts / sizeof gen_opts[0])

static void
usage(FILE *f)
{
    fprintf(f, "usage: mcos-bench COMMAND [options]\n"
               "\n"
               "Trace-driven evaluation of KV-cache routing and placement "
               "policies\n"
               "on a simulated cluster (docs/evaluation.md).\n"
               "\n"
               "Commands:\n"
               "  replay --trace FILE   replay one trace through every "
               "policy; print\n"
               "                        the parameters and a table\n"
               "  report --traces A,B   the full evaluation: every trace and "
               "policy,\n"
               "                        bounds, capacity sweep; writes "
               "Markdown, CSV\n"
               "                        and gnuplot scripts into --out\n"
               "  gen                   write a synthetic trace (Mooncake "
               "JSONL)\n"
               "\n"
               "`mcos-bench COMMAND --help` lists a command's options.\n");
}

/* Parses a number in [min, max] for `flag`. */
static int
parse_double(const char *flag, const char *s, double min, double max,
             double *out, char *err, size_t errlen)
{
    char *end;
    double v;

    errno = 0;
    v = s ? strtod(s, &end) : 0;
    if (!s || !*s || errno || *end || !isfinite(v) || v < min || v > max) {
        mcos_seterr(err, errlen,
                    "--%s: expected a number in %g..%g, got "
                    "'%s'",
                    flag, min, max, s ? s : "");
        return -EINVAL;
    }
    *out = v;
    return 0;
}

static int
cli_convert(const struct cli *c, struct sim_params *p, struct policy_knobs *k,
            struct trace_options *to, char *err, size_t errlen)
{
    int rc;

    sim_params_default(p);
    p->nodes = (uint32_t)c->nodes;
    p->block_tokens = (uint32_t)c->block_tokens;
    p->capacity[SIM_TIER_HBM] = c->hbm;
    p->capacity[SIM_TIER_DRAM] = c->dram;
    p->capacity[SIM_TIER_NVME] = c->nvme;
    p->prefill_tps = (double)c->prefill_tps;
    p->decode_tps = (double)c->decode_tps;
    p->kv_bytes_per_token = c->kv_bytes;
    p->fabric_bw = (double)c->fabric_bw;
    p->fabric_latency_ns = c->fabric_us * 1000;
    p->tier_bw[SIM_TIER_DRAM] = (double)c->dram_bw;
    p->tier_bw[SIM_TIER_NVME] = (double)c->nvme_bw;
    p->sample_ns = c->sample_ms * 1000000ULL;
    p->seed = c->seed;
    rc = sim_params_validate(p, err, errlen);
    if (rc) {
        return rc;
    }

    policy_knobs_default(k);
    if ((rc = parse_double("kv-overlap-weight", c->kv_weight, 0, 1e9,
                           &k->kv_overlap_weight, err, errlen)) ||
        (rc = parse_double("sglang-cache-threshold", c->sg_threshold, 0, 1,
                           &k->sg_cache_threshold, err, errlen)) ||
        (rc = parse_double("sglang-balance-rel", c->sg_rel, 0, 1e9,
                           &k->sg_balance_rel, err, errlen))) {
        return rc;
    }
    k->sg_balance_abs = c->sg_abs;
    k->sg_max_tree_blocks = c->sg_tree;
    k->sg_eviction_ns = c->sg_evict_ms * 1000000ULL;
    if ((rc = parse_double("mcos-dram-fetch", c->mc_dram, 0, 1e9,
                           &k->mcos_dram_fetch, err, errlen)) ||
        (rc = parse_double("mcos-nvme-fetch", c->mc_nvme, 0, 1e9,
                           &k->mcos_nvme_fetch, err, errlen)) ||
        (rc = parse_double("mcos-peer-fetch", c->mc_peer, 0, 1e9,
                           &k->mcos_peer_fetch, err, errlen)) ||
        (rc = parse_double("mcos-load-weight", c->mc_load_w, 0, 1e9,
                           &k->mcos_load_weight, err, errlen)) ||
        (rc = parse_double("mcos-queue-block-weight", c->mc_queue_w, 0, 1e9,
                           &k->mcos_queue_block_weight, err, errlen)) ||
        (rc = parse_double("mcos-bound-eps", c->mc_eps, 0, 1e9,
                           &k->mcos_bound_eps, err, errlen)) ||
        (rc = parse_double("mcos-hot", c->mc_hot, 0, 1e9, &k->mcos_hot, err,
                           errlen))) {
        return rc;
    }
    if (!strcmp(c->mc_load, "queue")) {
        k->mcos_load = POLICY_MCOS_LOAD_QUEUE;
    } else if (!strcmp(c->mc_load, "inflight")) {
        k->mcos_load = POLICY_MCOS_LOAD_INFLIGHT;
    } else if (!strcmp(c->mc_load, "blocks")) {
        k->mcos_load = POLICY_MCOS_LOAD_BLOCKS;
    } else if (!strcmp(c->mc_load, "brain")) {
        k->mcos_load = POLICY_MCOS_LOAD_BRAIN;
    } else {
        mcos_seterr(err, errlen,
                    "--mcos-load: expected queue, inflight, blocks or brain, "
                    "got '%s'",
                    c->mc_load);
        return -EINVAL;
    }
    k->mcos_fetch = c->mc_fetch;
    k->mcos_migrate = c->mc_migrate;
    k->mcos_drop_partial = c->mc_partial;
    k->mcos_promote = c->mc_promote;
    k->mcos_residency = c->mc_residency;
    k->mcos_pending = c->mc_pending;
    k->mcos_replicate_bw = c->mc_repl_bw;
    k->mcos_tick_ns = c->mc_tick_ms * 1000000ULL;
    rc = policy_knobs_validate(k, err, errlen);
    if (rc) {
        return rc;
    }

    memset(to, 0, sizeof *to);
    to->block_tokens = p->block_tokens;
    to->max_requests = c->max_requests;
    if (!strcmp(c->on_error, "refuse")) {
        to->on_error = TRACE_REFUSE;
    } else if (!strcmp(c->on_error, "skip")) {
        to->on_error = TRACE_SKIP;
    } else {
        mcos_seterr(err, errlen,
                    "--on-error: expected refuse or skip, got "
                    "'%s'",
                    c->on_error);
        return -EINVAL;
    }
    if (mcos_log_set_spec(c->log_level)) {
        mcos_seterr(err, errlen, "--log-level: bad spec '%s'", c->log_level);
        return -EINVAL;
    }
    return 0;
}

/* Splits a comma list of policy names into entries ("all": every one). */
static int
select_policies(const char *list, const char *flag,
                const struct policy_entry **out, size_t *n, char *err,
                size_t errlen)
{
    char *copy, *save = NULL;

    *n = 0;
    if (!strcmp(list, "all")) {
        for (size_t i = 0; i < policy_count; i++) {
            out[(*n)++] = &policy_table[i];
        }
        return 0;
    }
    copy = strdup(list);
    if (!copy) {
        return -ENOMEM;
    }
    for (char *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        const struct policy_entry *e = policy_find(tok);

        if (!e) {
            mcos_seterr(err, errlen,
                        "--%s: unknown policy '%s' (known: "
                        "mcos, round_robin, random, least_loaded, "
                        "kv_overlap, cache_aware)",
                        flag, tok);
            free(copy);
            return -EINVAL;
        }
        for (size_t i = 0; i < *n; i++) {
            if (out[i] == e) {
                e = NULL;
            }
        }
        if (e) {
            out[(*n)++] = e;
        }
    }
    free(copy);
    if (!*n) {
        mcos_seterr(err, errlen, "--%s: no policy given", flag);
        return -EINVAL;
    }
    return 0;
}

/* "flag = value" for every option, for the run's header. */
static char *
render_params(const struct mcos_cfg_opt *opts, size_t n, const void *target)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    if (!f) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const char *field = (const char *)target + opts[i].offset;

        fprintf(f, "%-26s = ", opts[i].flag);
        switch (opts[i].type) {
        case MCOS_CFG_STRING:
            fprintf(f, "%s",
                    *(char *const *)field ? *(char *const *)field : "");
            break;
        case MCOS_CFG_BOOL:
            fprintf(f, "%s", *(const bool *)field ? "true" : "false");
            break;
        case MCOS_CFG_MS:
            fprintf(f, "%" PRIu64 "ms", *(const uint64_t *)field);
            break;
        case MCOS_CFG_BYTES: {
            static const char *const units[] = {"", "KiB", "MiB", "GiB",
                                                "TiB"};
            uint64_t v = *(const uint64_t *)field;
            int u = 0;

            /* The largest unit that divides it, so it reads as given. */
            while (u < 4 && v && v % 1024 == 0) {
                v /= 1024;
                u++;
            }
            fprintf(f, "%" PRIu64 "%s", v, units[u]);
            break;
        }
        default:
            fprintf(f, "%" PRIu64, *(const uint64_t *)field);
            break;
        }
        fputc('\n', f);
    }
    fclose(f);
    return buf;
}

static double
seconds_since(const struct timespec *t0)
{
    struct timespec t1;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) +
           (double)(t1.tv_nsec - t0->tv_nsec) * 1e-9;
}

/* Replays `t` through each policy (and the bounds) into *tr. */
static int
evaluate(const struct trace *t, const struct sim_params *p,
         const struct policy_knobs *k, const struct policy_entry **pol,
         size_t n_pol, bool belady, struct report_trace *tr, char *err,
         size_t errlen)
{
    const char *base = strrchr(t->name, '/');
    int rc;

    memset(tr, 0, sizeof *tr);
    snprintf(tr->name, sizeof tr->name, "%s", base ? base + 1 : t->name);
    tr->requests = t->n;
    tr->input_tokens = t->stats.input_tokens;
    tr->skipped = t->stats.skipped;
    rc = bounds_infinite(t, &tr->infinite);
    if (rc) {
        mcos_seterr(err, errlen, "infinite-cache bound: %s",
                    mcos_strerror(rc));
        return rc;
    }
    tr->rows = calloc(n_pol, sizeof *tr->rows);
    if (!tr->rows) {
        mcos_seterr(err, errlen, "out of memory");
        return -ENOMEM;
    }
    tr->n_rows = n_pol;
    for (size_t i = 0; i < n_pol; i++) {
        struct report_row *row = &tr->rows[i];
        struct timespec t0;
        struct sim *s;

        snprintf(row->policy, sizeof row->policy, "%s", pol[i]->name);
        if (!pol[i]->ops) {
            continue;
        }
        clock_gettime(CLOCK_MONOTONIC, &t0);
        rc = sim_create(p, t, pol[i]->ops, k, &s, err, errlen);
        if (!rc) {
            rc = sim_run(s, &row->r, err, errlen);
        }
        /* Belady per node bounds reuse without a fabric: a policy that
         * moved blocks between nodes (MCOS's fetches) is not bounded by
         * it, so it gets none rather than a figure below its own. */
        if (!rc && belady && row->r.fabric_bytes == 0) {
            rc = bounds_belady_sim(s, &row->belady);
            if (rc) {
                mcos_seterr(err, errlen, "Belady bound: %s",
                            mcos_strerror(rc));
            }
            row->have_belady = !rc;
        }
        sim_destroy(s);
        if (rc) {
            return rc;
        }
        row->available = true;
        LOG_INFO("%s: %s in %.2f s", tr->name, pol[i]->name,
                 seconds_since(&t0));
    }
    return 0;
}

static void
free_report(struct report *rep)
{
    for (size_t i = 0; i < rep->n_traces; i++) {
        free(rep->traces[i].rows);
    }
    free(rep->traces);
    free(rep->sweep);
}

static int
write_file(const char *path, void (*fn)(FILE *, const struct report *),
           const struct report *rep, char *err, size_t errlen)
{
    FILE *f = fopen(path, "w");

    if (!f) {
        mcos_seterr(err, errlen, "cannot write %s: %s", path, strerror(errno));
        return -EIO;
    }
    fn(f, rep);
    if (ferror(f) | fclose(f)) {
        mcos_seterr(err, errlen, "error writing %s", path);
        return -EIO;
    }
    return 0;
}

/* Parses the sub-command's flags; returns -1 to continue, else the exit
 * status. */
static int
parse(const struct mcos_cfg_opt *opts, size_t n, void *target, int argc,
      char **argv, const char *synopsis)
{
    char err[MCOS_CFG_ERR_LEN];
    bool help, version;

    if (mcos_cfg_defaults(opts, n, target, err, sizeof err) ||
        mcos_cfg_parse_args(opts, n, target, argc, argv, &help, &version, err,
                            sizeof err)) {
        fprintf(stderr, "mcos-bench %s: %s\n", argv[0], err);
        return EXIT_USAGE;
    }
    if (help) {
        printf("usage: mcos-bench %s\n\nOptions:\n", synopsis);
        mcos_cfg_print_help(opts, n, stdout);
        return 0;
    }
    if (version) {
        printf("mcos-bench %s\n", MCOS_VERSION);
        return 0;
    }
    return -1;
}

static int
cmd_replay(int argc, char **argv)
{
    struct cli c = {0};
    struct sim_params p;
    struct policy_knobs k;
    struct trace_options to;
    const struct policy_entry *pol[16];
    struct report rep = {0};
    struct trace *t = NULL;
    char err[512], *params = NULL;
    size_t n_pol;
    int rc, status;

    status = parse(replay_opts, N_REPLAY, &c, argc, argv,
                   "replay --trace FILE [options]");
    if (status >= 0) {
        mcos_cfg_free(replay_opts, N_REPLAY, &c);
        return status;
    }
    status = EXIT_USAGE;
    if (!*c.trace) {
        fprintf(stderr, "mcos-bench replay: --trace FILE is required\n");
        goto out;
    }
    if (cli_convert(&c, &p, &k, &to, err, sizeof err) ||
        select_policies(c.policies, "policies", pol, &n_pol, err,
                        sizeof err)) {
        fprintf(stderr, "mcos-bench replay: %s\n", err);
        goto out;
    }
    status = EXIT_RUNTIME;
    params = render_params(replay_opts, N_REPLAY, &c);
    printf("parameters:\n%s\n", params ? params : "");
    rc = trace_load(c.trace, &to, &t, err, sizeof err);
    if (rc) {
        fprintf(stderr, "mcos-bench replay: %s\n", err);
        goto out;
    }
    rep.params_text = params ? params : "";
    rep.block_tokens = p.block_tokens;
    rep.nodes = p.nodes;
    rep.hbm_blocks = p.capacity[SIM_TIER_HBM];
    rep.timing = c.timing;
    rep.traces = calloc(1, sizeof *rep.traces);
    if (!rep.traces) {
        goto out;
    }
    rep.n_traces = 1;
    rc = evaluate(t, &p, &k, pol, n_pol, c.belady, &rep.traces[0], err,
                  sizeof err);
    if (rc) {
        fprintf(stderr, "mcos-bench replay: %s\n", err);
        goto out;
    }
    report_write_text(stdout, &rep, 0);
    if ((*c.md && write_file(c.md, report_write_md, &rep, err, sizeof err)) ||
        (*c.csv &&
         write_file(c.csv, report_write_csv, &rep, err, sizeof err))) {
        fprintf(stderr, "mcos-bench replay: %s\n", err);
        goto out;
    }
    status = 0;
out:
    free_report(&rep);
    trace_destroy(t);
    free(params);
    mcos_cfg_free(replay_opts, N_REPLAY, &c);
    return status;
}

/* Parses "a,b,c" of block counts. */
static int
parse_caps(const char *s, uint64_t *caps, size_t *n, char *err, size_t errlen)
{
    char *copy = strdup(s), *save = NULL;

    *n = 0;
    if (!copy) {
        return -ENOMEM;
    }
    for (char *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        uint64_t v;

        if (mcos_parse_uint(tok, &v) || v < 1 || v > 1u << 30 ||
            *n == MAX_SWEEP) {
            mcos_seterr(err, errlen,
                        "--sweep-hbm: expected up to %d block "
                        "counts in 1..2^30, got '%s'",
                        MAX_SWEEP, tok);
            free(copy);
            return -EINVAL;
        }
        caps[(*n)++] = v;
    }
    free(copy);
    return 0;
}

/* The capacity sweep of trace `ti`, appended to rep->sweep. */
static int
sweep(struct report *rep, size_t ti, const struct trace *t,
      const struct sim_params *base, const struct policy_knobs *k,
      const struct policy_entry **pol, size_t n_pol, const uint64_t *caps,
      size_t n_caps, const char *belady_of, char *err, size_t errlen)
{
    const struct bounds_result *inf = &rep->traces[ti].infinite;

    for (size_t c = 0; c < n_caps; c++) {
        struct sim_params p = *base;

        p.capacity[SIM_TIER_HBM] = caps[c];
        for (size_t i = 0; i < n_pol; i++) {
            bool want_belady = !strcmp(pol[i]->name, belady_of);
            struct report_sweep *pt;
            struct sim_result r;
            struct bounds_result b;
            struct sim *s;
            int rc;

            if (!pol[i]->ops) {
                continue;
            }
            rc = sim_create(&p, t, pol[i]->ops, k, &s, err, errlen);
            if (!rc) {
                rc = sim_run(s, &r, err, errlen);
            }
            if (!rc && want_belady) {
                rc = bounds_belady_sim(s, &b);
                if (rc) {
                    mcos_seterr(err, errlen, "Belady bound: %s",
                                mcos_strerror(rc));
                }
            }
            sim_destroy(s);
            if (rc) {
                return rc;
            }
            pt = realloc(rep->sweep, (rep->n_sweep + 2) * sizeof *pt);
            if (!pt) {
                mcos_seterr(err, errlen, "out of memory");
                return -ENOMEM;
            }
            rep->sweep = pt;
            pt = &rep->sweep[rep->n_sweep++];
            memset(pt, 0, sizeof *pt);
            pt->trace = ti;
            pt->hbm_blocks = caps[c];
            snprintf(pt->policy, sizeof pt->policy, "%s", pol[i]->name);
            pt->hit_ratio = report_hit_ratio(&r);
            pt->saved_share = report_saved_share(&r, inf);
            pt->ttft_p50_s = r.ttft_p50_s;
            pt->ttft_p99_s = r.ttft_p99_s;
            if (want_belady) {
                pt = &rep->sweep[rep->n_sweep++];
                memset(pt, 0, sizeof *pt);
                pt->trace = ti;
                pt->hbm_blocks = caps[c];
                snprintf(pt->policy, sizeof pt->policy, "belady:%s",
                         pol[i]->name);
                pt->hit_ratio = b.input_tokens ? (double)b.hit_tokens /
                                                     (double)b.input_tokens
                                               : 0;
                pt->saved_share = inf->hit_tokens ? (double)b.hit_tokens /
                                                        (double)inf->hit_tokens
                                                  : 1.0;
            }
        }
    }
    return 0;
}

static int
cmd_report(int argc, char **argv)
{
    struct cli c = {0};
    struct sim_params p;
    struct policy_knobs k;
    struct trace_options to;
    const struct policy_entry *pol[16], *spol[16];
    struct report rep = {0};
    uint64_t caps[MAX_SWEEP];
    size_t n_pol, n_spol = 0, n_caps = 0, n_paths = 0;
    char err[512], *params = NULL, *paths = NULL, *save = NULL, path[4096];
    struct timespec t0;
    int rc, status;

    status = parse(report_opts, N_REPORT, &c, argc, argv,
                   "report --traces A[,B...] [--out DIR] [options]");
    if (status >= 0) {
        mcos_cfg_free(report_opts, N_REPORT, &c);
        return status;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    status = EXIT_USAGE;
    if (!*c.traces) {
        fprintf(stderr, "mcos-bench report: --traces A[,B...] is required\n");
        goto out;
    }
    if (cli_convert(&c, &p, &k, &to, err, sizeof err) ||
        select_policies(c.policies, "policies", pol, &n_pol, err,
                        sizeof err) ||
        (*c.sweep_hbm &&
         (parse_caps(c.sweep_hbm, caps, &n_caps, err, sizeof err) ||
          select_policies(c.sweep_policies, "sweep-policies", spol, &n_spol,
                          err, sizeof err)))) {
        fprintf(stderr, "mcos-bench report: %s\n", err);
        goto out;
    }
    if (*c.sweep_belady && !policy_find(c.sweep_belady)) {
        fprintf(stderr,
                "mcos-bench report: --sweep-belady: unknown policy "
                "'%s'\n",
                c.sweep_belady);
        goto out;
    }
    paths = strdup(c.traces);
    if (!paths) {
        goto out;
    }
    for (char *tok = strtok_r(paths, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        n_paths++;
    }
    free(paths);
    paths = NULL;
    if (!n_paths) {
        fprintf(stderr, "mcos-bench report: --traces names no file\n");
        goto out;
    }
    status = EXIT_RUNTIME;
    if (mkdir(c.out, 0755) && errno != EEXIST) {
        fprintf(stderr, "mcos-bench report: cannot create %s: %s\n", c.out,
                strerror(errno));
        goto out;
    }
    params = render_params(report_opts, N_REPORT, &c);
    printf("parameters:\n%s\n", params ? params : "");
    fflush(stdout);
    rep.params_text = params ? params : "";
    rep.block_tokens = p.block_tokens;
    rep.nodes = p.nodes;
    rep.hbm_blocks = p.capacity[SIM_TIER_HBM];
    rep.timing = c.timing;
    rep.traces = calloc(n_paths, sizeof *rep.traces);
    paths = strdup(c.traces);
    if (!rep.traces || !paths) {
        goto out;
    }
    save = NULL;
    for (char *tok = strtok_r(paths, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        struct trace *t = NULL;
        size_t ti = rep.n_traces;

        rc = trace_load(tok, &to, &t, err, sizeof err);
        if (!rc) {
            rep.n_traces++;
            rc = evaluate(t, &p, &k, pol, n_pol, c.belady, &rep.traces[ti],
                          err, sizeof err);
        }
        if (!rc) {
            report_write_text(stdout, &rep, ti);
            fputc('\n', stdout);
            fflush(stdout);
            rc = sweep(&rep, ti, t, &p, &k, spol, n_spol, caps, n_caps,
                       c.sweep_belady, err, sizeof err);
        }
        trace_destroy(t);
        if (rc) {
            fprintf(stderr, "mcos-bench report: %s\n", err);
            goto out;
        }
        LOG_INFO("%s done after %.1f s", tok, seconds_since(&t0));
    }
    snprintf(path, sizeof path, "%s/eval.md", c.out);
    if (write_file(path, report_write_md, &rep, err, sizeof err)) {
        goto fail;
    }
    snprintf(path, sizeof path, "%s/eval.csv", c.out);
    if (write_file(path, report_write_csv, &rep, err, sizeof err)) {
        goto fail;
    }
    snprintf(path, sizeof path, "%s/eval_sweep.csv", c.out);
    if (write_file(path, report_write_sweep_csv, &rep, err, sizeof err) ||
        report_write_gnuplot(c.out, &rep, err, sizeof err)) {
        goto fail;
    }
    printf("report: %s/eval.md, eval.csv, eval_sweep.csv, eval_*.gp "
           "(%.1f s)\n",
           c.out, seconds_since(&t0));
    status = 0;
    goto out;
fail:
    fprintf(stderr, "mcos-bench report: %s\n", err);
out:
    free_report(&rep);
    free(paths);
    free(params);
    mcos_cfg_free(report_opts, N_REPORT, &c);
    return status;
}

static int
cmd_gen(int argc, char **argv)
{
    struct gcli g = {0};
    struct gen_params p;
    char err[512];
    uint64_t written;
    FILE *f = stdout;
    int status;

    status = parse(gen_opts, N_GEN, &g, argc, argv, "gen [options]");
    if (status >= 0) {
        mcos_cfg_free(gen_opts, N_GEN, &g);
        return status;
    }
    status = EXIT_USAGE;
    gen_params_default(&p);
    p.seed = g.seed;
    p.requests = g.requests;
    p.block_tokens = (uint32_t)g.block_tokens;
    p.think_ms = (double)g.think_ms;
    p.system_prompts = (uint32_t)g.prompts;
    p.system_blocks_min = (uint32_t)g.sys_min;
    p.system_blocks_max = (uint32_t)g.sys_max;
    p.user_min = (uint32_t)g.user_min;
    p.user_max = (uint32_t)g.user_max;
    p.output_min = (uint32_t)g.out_min;
    p.output_max = (uint32_t)g.out_max;
    p.max_input = (uint32_t)g.max_input;
    p.burst_every_ms = g.burst_every;
    p.burst_ms = g.burst_len;
    if (parse_double("session-rate", g.session_rate, 1e-9, 1e9,
                     &p.session_rate, err, sizeof err) ||
        parse_double("turns-mean", g.turns_mean, 1, 1e6, &p.turns_mean, err,
                     sizeof err) ||
        parse_double("zipf-s", g.zipf_s, 0, 100, &p.zipf_s, err, sizeof err) ||
        parse_double("burst-factor", g.burst_factor, 1e-9, 1e9,
                     &p.burst_factor, err, sizeof err) ||
        gen_params_validate(&p, err, sizeof err)) {
        fprintf(stderr, "mcos-bench gen: %s\n", err);
        goto out;
    }
    status = EXIT_RUNTIME;
    if (strcmp(g.out, "-") && !(f = fopen(g.out, "w"))) {
        fprintf(stderr, "mcos-bench gen: cannot write %s: %s\n", g.out,
                strerror(errno));
        goto out;
    }
    if (gen_write(&p, f, &written, err, sizeof err)) {
        fprintf(stderr, "mcos-bench gen: %s\n", err);
    } else {
        status = 0;
    }
    if (f != stdout && fclose(f) && !status) {
        fprintf(stderr, "mcos-bench gen: error writing %s\n", g.out);
        status = EXIT_RUNTIME;
    }
    if (!status) {
        fprintf(stderr, "mcos-bench gen: %" PRIu64 " requests written\n",
                written);
    }
out:
    mcos_cfg_free(gen_opts, N_GEN, &g);
    return status;
}

int
main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
        printf("mcos-bench %s\n", MCOS_VERSION);
        return 0;
    }
    mcos_log_set_spec("warn");
    if (!strcmp(argv[1], "replay")) {
        return cmd_replay(argc - 1, argv + 1);
    }
    if (!strcmp(argv[1], "report")) {
        return cmd_report(argc - 1, argv + 1);
    }
    if (!strcmp(argv[1], "gen")) {
        return cmd_gen(argc - 1, argv + 1);
    }
    fprintf(stderr, "mcos-bench: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
