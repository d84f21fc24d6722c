/*
 * report: Markdown, CSV and gnuplot writers for the evaluation.
 */
#include "report.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

#define GIB (1024.0 * 1024.0 * 1024.0)

double
report_hit_ratio(const struct sim_result *r)
{
    return r->input_tokens ? (double)r->hit_tokens / (double)r->input_tokens
                           : 0;
}

double
report_saved_share(const struct sim_result *r, const struct bounds_result *inf)
{
    return inf->hit_tokens ? (double)r->hit_tokens / (double)inf->hit_tokens
                           : 1.0;
}

static double
pct(uint64_t part, uint64_t whole)
{
    return whole ? 100.0 * (double)part / (double)whole : 0;
}

static double
belady_ratio(const struct report_row *row)
{
    return row->belady.input_tokens ? (double)row->belady.hit_tokens /
                                          (double)row->belady.input_tokens
                                    : 0;
}

static double
decisions_per_s(const struct sim_result *r)
{
    return r->route_wall_s > 0 ? (double)r->decisions / r->route_wall_s : 0;
}

void
report_write_text(FILE *f, const struct report *rep, size_t ti)
{
    const struct report_trace *tr = &rep->traces[ti];

    fprintf(f, "trace %s: %" PRIu64 " requests, %" PRIu64 " prompt tokens",
            tr->name, tr->requests, tr->input_tokens);
    if (tr->skipped) {
        fprintf(f, ", %" PRIu64 " malformed lines skipped", tr->skipped);
    }
    fprintf(f, "\n%-13s %6s %6s %6s %6s %6s %7s %9s %8s %8s %8s %6s %7s",
            "policy", "hit%", "hbm%", "dram%", "nvme%", "peer%", "of-inf%",
            "prefillMt", "fabricGB", "ttft50s", "ttft99s", "imb99", "belady%");
    if (rep->timing) {
        fprintf(f, " %9s", "decide/s");
    }
    fputc('\n', f);
    for (size_t i = 0; i < tr->n_rows; i++) {
        const struct report_row *row = &tr->rows[i];
        const struct sim_result *r = &row->r;

        if (!row->available) {
            fprintf(f, "%-13s not yet available\n", row->policy);
            continue;
        }
        fprintf(f,
                "%-13s %6.2f %6.2f %6.2f %6.2f %6.2f %7.2f %9.2f %8.1f "
                "%8.3f %8.3f %6.2f ",
                row->policy, pct(r->hit_tokens, r->input_tokens),
                pct(r->hit_tokens_tier[SIM_TIER_HBM], r->input_tokens),
                pct(r->hit_tokens_tier[SIM_TIER_DRAM], r->input_tokens),
                pct(r->hit_tokens_tier[SIM_TIER_NVME], r->input_tokens),
                pct(r->hit_tokens_peer, r->input_tokens),
                100.0 * report_saved_share(r, &tr->infinite),
                (double)r->prefill_tokens / 1e6, (double)r->fabric_bytes / GIB,
                r->ttft_p50_s, r->ttft_p99_s, r->imbalance_p99);
        if (row->have_belady) {
            fprintf(f, "%7.2f", 100.0 * belady_ratio(row));
        } else {
            fprintf(f, "%7s", "-");
        }
        if (rep->timing) {
            fprintf(f, " %9.0f", decisions_per_s(r));
        }
        fputc('\n', f);
    }
    fprintf(f,
            "%-13s %6.2f %34s %7.2f %9.2f  (bound: every block seen "
            "before is a hit)\n",
            "infinite",
            pct(tr->infinite.hit_tokens, tr->infinite.input_tokens), "", 100.0,
            (double)(tr->infinite.input_tokens - tr->infinite.hit_tokens) /
                1e6);
}

static void
md_trace(FILE *f, const struct report *rep, const struct report_trace *tr)
{
    fprintf(f, "## Trace `%s`\n\n", tr->name);
    fprintf(f, "%" PRIu64 " requests, %" PRIu64 " prompt tokens (%.1f M)",
            tr->requests, tr->input_tokens, (double)tr->input_tokens / 1e6);
    if (tr->skipped) {
        fprintf(f, ", %" PRIu64 " malformed lines skipped", tr->skipped);
    }
    fprintf(f, ".\n\n");
    fprintf(f, "| policy | hit ratio | of which HBM / DRAM / NVMe / peer | "
               "share of the infinite cache's saving | prefill tokens (M) "
               "| fabric (GiB) | TTFT p50 (s) | TTFT p99 (s) | imbalance "
               "p99 | prefill utilisation | Belady MIN per node, same "
               "routing |");
    if (rep->timing) {
        fprintf(f, " decisions/s |");
    }
    fprintf(f, "\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    if (rep->timing) {
        fprintf(f, "---:|");
    }
    fputc('\n', f);
    for (size_t i = 0; i < tr->n_rows; i++) {
        const struct report_row *row = &tr->rows[i];
        const struct sim_result *r = &row->r;

        if (!row->available) {
            fprintf(f, "| %s | not yet available | | | | | | | | | |%s\n",
                    row->policy, rep->timing ? " |" : "");
            continue;
        }
        fprintf(f,
                "| %s | %.2f%% | %.1f / %.1f / %.1f / %.1f | %.1f%% | "
                "%.2f | %.1f | %.3f | %.3f | %.2f | %.1f%% | ",
                row->policy, pct(r->hit_tokens, r->input_tokens),
                pct(r->hit_tokens_tier[SIM_TIER_HBM], r->input_tokens),
                pct(r->hit_tokens_tier[SIM_TIER_DRAM], r->input_tokens),
                pct(r->hit_tokens_tier[SIM_TIER_NVME], r->input_tokens),
                pct(r->hit_tokens_peer, r->input_tokens),
                100.0 * report_saved_share(r, &tr->infinite),
                (double)r->prefill_tokens / 1e6, (double)r->fabric_bytes / GIB,
                r->ttft_p50_s, r->ttft_p99_s, r->imbalance_p99,
                100.0 * r->utilization);
        if (row->have_belady) {
            fprintf(f, "%.2f%% |", 100.0 * belady_ratio(row));
        } else {
            fprintf(f, "- |");
        }
        if (rep->timing) {
            fprintf(f, " %.0f |", decisions_per_s(r));
        }
        fputc('\n', f);
    }
    fprintf(f,
            "| *bound: infinite global cache* | %.2f%% | | 100%% | %.2f | "
            "| | | | | |%s\n\n",
            pct(tr->infinite.hit_tokens, tr->infinite.input_tokens),
            (double)(tr->infinite.input_tokens - tr->infinite.hit_tokens) /
                1e6,
            rep->timing ? " |" : "");
}

/* The best baseline (not mcos) by `fig`, lowest first; NULL if none. */
static const struct report_row *
best_baseline(const struct report_trace *tr,
              double (*fig)(const struct sim_result *))
{
    const struct report_row *best = NULL;

    for (size_t i = 0; i < tr->n_rows; i++) {
        const struct report_row *row = &tr->rows[i];

        if (row->available && strcmp(row->policy, "mcos") &&
            (!best || fig(&row->r) < fig(&best->r))) {
            best = row;
        }
    }
    return best;
}

static double
fig_ttft_p99(const struct sim_result *r)
{
    return r->ttft_p99_s;
}

static double
fig_imbalance_p99(const struct sim_result *r)
{
    return r->imbalance_p99;
}

/* "wins", "ties" or "loses": mcos's figure against the best baseline's,
 * lower being better, compared as the table prints them (`decimals`). */
static const char *
verdict(double mine, double theirs, int decimals)
{
    char a[64], b[64];

    snprintf(a, sizeof a, "%.*f", decimals, mine);
    snprintf(b, sizeof b, "%.*f", decimals, theirs);
    if (!strcmp(a, b)) {
        return "ties";
    }
    return mine < theirs ? "wins" : "**loses**";
}

/*
 * The goals of issue 5/6 for one trace: on the Mooncake conversation
 * trace (8 nodes, about 3 M tokens of HBM a node) MCOS saves >= 97% of
 * what the infinite cache saves, with TTFT p99 and load imbalance no
 * worse than the best baseline's; on the synthetic trace it wins on TTFT
 * p99 and balance.  Every trace gets all three lines, each saying which
 * trace the issue sets it for.
 */
static void
md_goals(FILE *f, const struct report *rep, const struct report_trace *tr)
{
    const struct report_row *mcos = NULL, *bt, *bi;
    double share;

    for (size_t i = 0; i < tr->n_rows; i++) {
        if (tr->rows[i].available && !strcmp(tr->rows[i].policy, "mcos")) {
            mcos = &tr->rows[i];
        }
    }
    bt = best_baseline(tr, fig_ttft_p99);
    bi = best_baseline(tr, fig_imbalance_p99);
    if (!mcos || !bt || !bi) {
        return; /* nothing to compare */
    }
    share = 100.0 * report_saved_share(&mcos->r, &tr->infinite);
    fprintf(f,
            "Goals (issue 5/6), set for the Mooncake traces with 8 nodes "
            "and about 3 M tokens of HBM a node (this run: %" PRIu32
            " nodes, %.2f M tokens a node):\n\n",
            rep->nodes,
            (double)rep->hbm_blocks * (double)rep->block_tokens / 1e6);
    fprintf(f, "| goal | mcos | best baseline | verdict |\n"
               "|---|---:|---:|---|\n");
    fprintf(f,
            "| saves >= 97%% of the infinite cache's saving (conversation) "
            "| %.1f%% | | %s |\n",
            share, share >= 97.0 ? "met" : "**not met**");
    fprintf(f,
            "| TTFT p99: no worse than the best baseline (conversation), "
            "better (synthetic) | %.3f s | %.3f s (%s) | %s |\n",
            mcos->r.ttft_p99_s, bt->r.ttft_p99_s, bt->policy,
            verdict(mcos->r.ttft_p99_s, bt->r.ttft_p99_s, 3));
    fprintf(f,
            "| imbalance p99: no worse than the best baseline "
            "(conversation), better (synthetic) | %.2f | %.2f (%s) | %s "
            "|\n\n",
            mcos->r.imbalance_p99, bi->r.imbalance_p99, bi->policy,
            verdict(mcos->r.imbalance_p99, bi->r.imbalance_p99, 2));
}

/* The policies (columns) and HBM capacities (rows) swept for trace ti, in
 * the order they first appear; at most SWEEP_AXIS_MAX of each. */
#define SWEEP_AXIS_MAX 64
struct sweep_axes {
    const char *cols[SWEEP_AXIS_MAX];
    size_t n_cols;
    uint64_t caps[SWEEP_AXIS_MAX];
    size_t n_caps;
};

static void
sweep_axes(const struct report *rep, size_t ti, struct sweep_axes *ax)
{
    ax->n_cols = ax->n_caps = 0;
    for (size_t i = 0; i < rep->n_sweep; i++) {
        const struct report_sweep *p = &rep->sweep[i];
        size_t c;

        if (p->trace != ti) {
            continue;
        }
        for (c = 0; c < ax->n_cols && strcmp(ax->cols[c], p->policy); c++) {
        }
        if (c == ax->n_cols && ax->n_cols < SWEEP_AXIS_MAX) {
            ax->cols[ax->n_cols++] = p->policy;
        }
        for (c = 0; c < ax->n_caps && ax->caps[c] != p->hbm_blocks; c++) {
        }
        if (c == ax->n_caps && ax->n_caps < SWEEP_AXIS_MAX) {
            ax->caps[ax->n_caps++] = p->hbm_blocks;
        }
    }
}

static void
md_sweep(FILE *f, const struct report *rep, size_t ti)
{
    struct sweep_axes ax;
    const char **cols = ax.cols;
    const uint64_t *caps = ax.caps;
    size_t n_cols, n_caps;

    sweep_axes(rep, ti, &ax);
    n_cols = ax.n_cols;
    n_caps = ax.n_caps;
    if (!n_cols) {
        return;
    }
    fprintf(f,
            "### Capacity sweep, `%s`: share of the infinite cache's "
            "saving\n\n| HBM per node (blocks / M tokens) |",
            rep->traces[ti].name);
    for (size_t c = 0; c < n_cols; c++) {
        fprintf(f, " %s |", cols[c]);
    }
    fprintf(f, "\n|---|");
    for (size_t c = 0; c < n_cols; c++) {
        fprintf(f, "---:|");
    }
    fputc('\n', f);
    for (size_t k = 0; k < n_caps; k++) {
        fprintf(f, "| %" PRIu64 " / %.2f |", caps[k],
                (double)caps[k] * rep->block_tokens / 1e6);
        for (size_t c = 0; c < n_cols; c++) {
            bool found = false;

            for (size_t i = 0; i < rep->n_sweep; i++) {
                const struct report_sweep *p = &rep->sweep[i];

                if (p->trace == ti && p->hbm_blocks == caps[k] &&
                    !strcmp(p->policy, cols[c])) {
                    fprintf(f, " %.1f%% |", 100.0 * p->saved_share);
                    found = true;
                    break;
                }
            }
            if (!found) {
                fprintf(f, " |");
            }
        }
        fputc('\n', f);
    }
    fputc('\n', f);
}

void
report_write_md(FILE *f, const struct report *rep)
{
    fprintf(f, "# MCOS trace-driven evaluation\n\n");
    fprintf(f, "Written by `mcos-bench report` (see docs/evaluation.md for "
               "the model, the policies and the bounds).  Hit ratio is "
               "token-weighted prefix reuse; the share of the infinite "
               "cache's saving is prefill tokens saved relative to an "
               "unbounded global cache; imbalance is the p99 over time of "
               "max/mean queued prefill work across nodes; Belady MIN is "
               "the best any per-node replacement could do with the same "
               "routing.\n\n");
    fprintf(f, "## Parameters\n\n```\n%s```\n\n", rep->params_text);
    for (size_t t = 0; t < rep->n_traces; t++) {
        md_trace(f, rep, &rep->traces[t]);
        md_goals(f, rep, &rep->traces[t]);
        md_sweep(f, rep, t);
    }
}

void
report_write_csv(FILE *f, const struct report *rep)
{
    fprintf(f,
            "trace,policy,available,requests,input_tokens,hit_tokens,"
            "hit_ratio,hit_hbm_tokens,hit_dram_tokens,hit_nvme_tokens,"
            "hit_peer_tokens,saved_share,prefill_tokens,fabric_bytes,"
            "promoted_bytes,demoted_bytes,dropped_blocks,"
            "uncached_blocks,ttft_mean_s,ttft_p50_s,ttft_p99_s,"
            "imbalance_p99,imbalance_mean,utilization,belady_hit_ratio,"
            "belady_saved_share%s\n",
            rep->timing ? ",decisions_per_s" : "");
    for (size_t t = 0; t < rep->n_traces; t++) {
        const struct report_trace *tr = &rep->traces[t];

        for (size_t i = 0; i < tr->n_rows; i++) {
            const struct report_row *row = &tr->rows[i];
            const struct sim_result *r = &row->r;

            if (!row->available) {
                fprintf(f, "%s,%s,0,,,,,,,,,,,,,,,,,,,,,,,%s\n", tr->name,
                        row->policy, rep->timing ? "," : "");
                continue;
            }
            fprintf(f,
                    "%s,%s,1,%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%.6f,"
                    "%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%.6f,"
                    "%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64
                    ",%" PRIu64 ",%.6f,%.6f,%.6f,%.4f,%.4f,"
                    "%.4f,",
                    tr->name, row->policy, r->requests, r->input_tokens,
                    r->hit_tokens, report_hit_ratio(r),
                    r->hit_tokens_tier[SIM_TIER_HBM],
                    r->hit_tokens_tier[SIM_TIER_DRAM],
                    r->hit_tokens_tier[SIM_TIER_NVME], r->hit_tokens_peer,
                    report_saved_share(r, &tr->infinite), r->prefill_tokens,
                    r->fabric_bytes, r->promoted_bytes, r->demoted_bytes,
                    r->dropped_blocks, r->uncached_blocks, r->ttft_mean_s,
                    r->ttft_p50_s, r->ttft_p99_s, r->imbalance_p99,
                    r->imbalance_mean, r->utilization);
            if (row->have_belady) {
                fprintf(f, "%.6f,%.6f", belady_ratio(row),
                        tr->infinite.hit_tokens
                            ? (double)row->belady.hit_tokens /
                                  (double)tr->infinite.hit_tokens
                            : 1.0);
            } else {
                fputc(',', f);
            }
            if (rep->timing) {
                fprintf(f, ",%.0f", decisions_per_s(r));
            }
            fputc('\n', f);
        }
        fprintf(f,
                "%s,infinite_cache,1,%" PRIu64 ",%" PRIu64 ",%" PRIu64
                ",%.6f,,,,,1.000000,%" PRIu64 ",,,,,,,,,,,,,%s\n",
                tr->name, tr->infinite.requests, tr->infinite.input_tokens,
                tr->infinite.hit_tokens,
                tr->infinite.input_tokens
                    ? (double)tr->infinite.hit_tokens /
                          (double)tr->infinite.input_tokens
                    : 0,
                tr->infinite.input_tokens - tr->infinite.hit_tokens,
                rep->timing ? "," : "");
    }
}

void
report_write_sweep_csv(FILE *f, const struct report *rep)
{
    fprintf(f, "trace,hbm_blocks,hbm_tokens,policy,hit_ratio,saved_share,"
               "ttft_p50_s,ttft_p99_s\n");
    for (size_t i = 0; i < rep->n_sweep; i++) {
        const struct report_sweep *p = &rep->sweep[i];

        fprintf(f, "%s,%" PRIu64 ",%" PRIu64 ",%s,%.6f,%.6f,%.6f,%.6f\n",
                rep->traces[p->trace].name, p->hbm_blocks,
                p->hbm_blocks * rep->block_tokens, p->policy, p->hit_ratio,
                p->saved_share, p->ttft_p50_s, p->ttft_p99_s);
    }
}

/* ---- gnuplot ---- */

/* A file name fragment from a trace label: [A-Za-z0-9_-] only. */
static void
slug(const char *name, char *out, size_t len)
{
    size_t j = 0;

    for (const char *c = name; *c && j + 1 < len; c++) {
        if (!strcmp(c, ".jsonl")) {
            break;
        }
        out[j++] = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                           (*c >= '0' && *c <= '9') || *c == '-'
                       ? *c
                       : '_';
    }
    out[j] = '\0';
}

static FILE *
open_in(const char *dir, const char *name, char *err, size_t errlen)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "w");
    if (!f) {
        mcos_seterr(err, errlen, "cannot write %s: %s", path, strerror(errno));
    }
    return f;
}

static int
close_file(FILE *f, const char *dir, const char *name, char *err,
           size_t errlen)
{
    if (ferror(f) | fclose(f)) {
        mcos_seterr(err, errlen, "error writing %s/%s", dir, name);
        return -EIO;
    }
    return 0;
}

static const char GP_HEAD[] =
    "set terminal pngcairo size 1100,600 noenhanced font ',10'\n"
    "set grid ytics\n"
    "set key outside right top\n";

static int
gp_hit(const char *dir, const struct report *rep, char *err, size_t errlen)
{
    const struct report_trace *t0 = &rep->traces[0];
    FILE *f = open_in(dir, "eval_hit.dat", err, errlen);
    int rc;

    if (!f) {
        return -EIO;
    }
    fprintf(f, "# policy, then the hit ratio on each trace\n");
    for (size_t i = 0; i <= t0->n_rows; i++) {
        if (i == t0->n_rows) {
            fprintf(f, "\"infinite cache\"");
        } else {
            fprintf(f, "\"%s%s\"", t0->rows[i].policy,
                    t0->rows[i].available ? "" : " (not yet available)");
        }
        for (size_t t = 0; t < rep->n_traces; t++) {
            const struct report_trace *tr = &rep->traces[t];

            if (i == t0->n_rows) {
                fprintf(f, " %.6f",
                        tr->infinite.input_tokens
                            ? (double)tr->infinite.hit_tokens /
                                  (double)tr->infinite.input_tokens
                            : 0);
            } else if (i < tr->n_rows && tr->rows[i].available) {
                fprintf(f, " %.6f", report_hit_ratio(&tr->rows[i].r));
            } else {
                fprintf(f, " 0");
            }
        }
        fputc('\n', f);
    }
    rc = close_file(f, dir, "eval_hit.dat", err, errlen);
    if (rc) {
        return rc;
    }
    f = open_in(dir, "eval_hit.gp", err, errlen);
    if (!f) {
        return -EIO;
    }
    fprintf(f,
            "%sset output 'eval_hit.png'\n"
            "set title 'Token-weighted prefix hit ratio per policy'\n"
            "set style data histogram\n"
            "set style histogram cluster gap 1\n"
            "set style fill solid 0.8 border -1\n"
            "set yrange [0:1]\nset ylabel 'prefix hit ratio'\n"
            "set xtics rotate by -30\nplot ",
            GP_HEAD);
    for (size_t t = 0; t < rep->n_traces; t++) {
        fprintf(f, "%s'eval_hit.dat' using %zu%s title '%s'", t ? ", " : "",
                t + 2, t ? "" : ":xtic(1)", rep->traces[t].name);
    }
    fputc('\n', f);
    return close_file(f, dir, "eval_hit.gp", err, errlen);
}

static int
gp_ttft(const char *dir, const struct report *rep, size_t ti, char *err,
        size_t errlen)
{
    const struct report_trace *tr = &rep->traces[ti];
    char s[96], name[160];
    FILE *f;
    int rc;

    slug(tr->name, s, sizeof s);
    snprintf(name, sizeof name, "eval_ttft_%s.dat", s);
    f = open_in(dir, name, err, errlen);
    if (!f) {
        return -EIO;
    }
    fprintf(f, "# policy ttft_p50_s ttft_p99_s\n");
    for (size_t i = 0; i < tr->n_rows; i++) {
        if (tr->rows[i].available) {
            fprintf(f, "%s %.6f %.6f\n", tr->rows[i].policy,
                    tr->rows[i].r.ttft_p50_s, tr->rows[i].r.ttft_p99_s);
        }
    }
    rc = close_file(f, dir, name, err, errlen);
    if (rc) {
        return rc;
    }
    snprintf(name, sizeof name, "eval_ttft_%s.gp", s);
    f = open_in(dir, name, err, errlen);
    if (!f) {
        return -EIO;
    }
    fprintf(f,
            "%sset output 'eval_ttft_%s.png'\n"
            "set title 'Simulated TTFT per policy, %s'\n"
            "set style data histogram\n"
            "set style histogram cluster gap 1\n"
            "set style fill solid 0.8 border -1\n"
            "set logscale y\nset ylabel 'TTFT (s, log scale)'\n"
            "set xtics rotate by -30\n"
            "plot 'eval_ttft_%s.dat' using 2:xtic(1) title 'p50', '' using "
            "3 title 'p99'\n",
            GP_HEAD, s, tr->name, s);
    return close_file(f, dir, name, err, errlen);
}

static int
gp_sweep(const char *dir, const struct report *rep, size_t ti, char *err,
         size_t errlen)
{
    const struct report_trace *tr = &rep->traces[ti];
    struct sweep_axes ax;
    const char **cols = ax.cols;
    const uint64_t *caps = ax.caps;
    size_t n_cols, n_caps;
    char s[96], name[160];
    FILE *f;
    int rc;

    sweep_axes(rep, ti, &ax);
    n_cols = ax.n_cols;
    n_caps = ax.n_caps;
    if (!n_cols) {
        return 0;
    }
    slug(tr->name, s, sizeof s);
    snprintf(name, sizeof name, "eval_sweep_%s.dat", s);
    f = open_in(dir, name, err, errlen);
    if (!f) {
        return -EIO;
    }
    fprintf(f, "# hbm_mtokens, then the hit ratio of each policy, then the "
               "infinite cache\n");
    for (size_t k = 0; k < n_caps; k++) {
        fprintf(f, "%.4f", (double)caps[k] * rep->block_tokens / 1e6);
        for (size_t c = 0; c < n_cols; c++) {
            double v = 0;

            for (size_t i = 0; i < rep->n_sweep; i++) {
                const struct report_sweep *p = &rep->sweep[i];

                if (p->trace == ti && p->hbm_blocks == caps[k] &&
                    !strcmp(p->policy, cols[c])) {
                    v = p->hit_ratio;
                }
            }
            fprintf(f, " %.6f", v);
        }
        fprintf(f, " %.6f\n",
                tr->infinite.input_tokens
                    ? (double)tr->infinite.hit_tokens /
                          (double)tr->infinite.input_tokens
                    : 0);
    }
    rc = close_file(f, dir, name, err, errlen);
    if (rc) {
        return rc;
    }
    snprintf(name, sizeof name, "eval_sweep_%s.gp", s);
    f = open_in(dir, name, err, errlen);
    if (!f) {
        return -EIO;
    }
    fprintf(f,
            "%sset output 'eval_sweep_%s.png'\n"
            "set title 'Prefix hit ratio against HBM per node, %s'\n"
            "set logscale x 2\nset xlabel 'HBM per node (M tokens)'\n"
            "set ylabel 'prefix hit ratio'\nset yrange [0:1]\n"
            "plot ",
            GP_HEAD, s, tr->name);
    for (size_t c = 0; c < n_cols; c++) {
        fprintf(f,
                "'eval_sweep_%s.dat' using 1:%zu with linespoints title "
                "'%s', ",
                s, c + 2, cols[c]);
    }
    fprintf(f,
            "'eval_sweep_%s.dat' using 1:%zu with lines dashtype 2 "
            "title 'infinite cache'\n",
            s, n_cols + 2);
    return close_file(f, dir, name, err, errlen);
}

int
report_write_gnuplot(const char *dir, const struct report *rep, char *err,
                     size_t errlen)
{
    int rc;

    if (!rep->n_traces) {
        return 0;
    }
    rc = gp_hit(dir, rep, err, errlen);
    for (size_t t = 0; !rc && t < rep->n_traces; t++) {
        rc = gp_ttft(dir, rep, t, err, errlen);
        if (!rc) {
            rc = gp_sweep(dir, rep, t, err, errlen);
        }
    }
    return rc;
}
