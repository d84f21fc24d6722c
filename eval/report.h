/*
 * The evaluation report: what mcos-bench writes after replaying traces
 * through the policies and computing the bounds.
 *
 *   - Markdown (eval.md): the parameters, then per trace one table with a
 *     row per policy (MCOS first, "not yet available" until its adapter
 *     is plugged in) and one for the infinite-cache bound, then the
 *     issue's goals (MCOS's figures beside the 97% target and the best
 *     baseline's TTFT p99 and imbalance), then the capacity sweep.
 *   - CSV (eval.csv, eval_sweep.csv): the same figures, one row per trace
 *     and policy (and capacity), for scripts.
 *   - gnuplot scripts and data (eval_*.gp, eval_*.dat) that render
 *     eval_hit.png (hit ratio per policy), eval_ttft_<trace>.png (TTFT
 *     p50/p99 per policy) and eval_sweep_<trace>.png (hit ratio against
 *     per-node HBM capacity); scripts/bench-eval runs them.
 *
 * Figures that depend on the machine (decisions per second) are left out
 * when `timing` is false, so that the same seed gives the same bytes.
 *
 * Thread-safety: none needed.
 */
#ifndef MCOS_EVAL_REPORT_H
#define MCOS_EVAL_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "bounds.h"
#include "sim.h"

/* One policy's row for one trace. */
struct report_row {
    char policy[SIM_NAME_LEN];   /* policy name */
    bool available;              /* false: no implementation yet */
    struct sim_result r;         /* its figures (if available) */
    bool have_belady;            /* belady is filled in */
    struct bounds_result belady; /* Belady MIN per node, same routing */
};

/* Everything about one trace. */
struct report_trace {
    char name[128];                /* label (file name without folders) */
    uint64_t requests;             /* requests replayed */
    uint64_t input_tokens;         /* their prompt tokens */
    uint64_t skipped;              /* malformed lines skipped */
    struct bounds_result infinite; /* the infinite global cache */
    struct report_row *rows;       /* one per policy */
    size_t n_rows;                 /* how many */
};

/* One point of the capacity sweep. */
struct report_sweep {
    size_t trace;              /* index into report.traces */
    uint64_t hbm_blocks;       /* per-node HBM capacity */
    char policy[SIM_NAME_LEN]; /* policy, or "belady:<policy>" */
    double hit_ratio;          /* token-weighted prefix hit ratio */
    double saved_share;        /* hit tokens / the infinite cache's */
    double ttft_p50_s;         /* TTFT median (0 for a bound) */
    double ttft_p99_s;         /* TTFT p99 (0 for a bound) */
};

struct report {
    const char *params_text;     /* the parameters, one "flag = value" a
                                    line, rendered by the caller */
    uint32_t block_tokens;       /* tokens per block (for the sweep axis) */
    uint32_t nodes;              /* nodes in the cluster (for the goals) */
    uint64_t hbm_blocks;         /* HBM per node, blocks (for the goals) */
    struct report_trace *traces; /* per trace */
    size_t n_traces;             /* how many */
    struct report_sweep *sweep;  /* sweep points */
    size_t n_sweep;              /* how many */
    bool timing;                 /* include machine-dependent figures */
};

/* Token-weighted hit ratio of a result, and its share of the infinite
 * cache's saving (1 when that saves nothing). */
double report_hit_ratio(const struct sim_result *);
double report_saved_share(const struct sim_result *,
                          const struct bounds_result *infinite);

/* A plain-text table of one trace, for the terminal. */
void report_write_text(FILE *, const struct report *, size_t trace);
/* The Markdown report. */
void report_write_md(FILE *, const struct report *);
/* The per-policy CSV. */
void report_write_csv(FILE *, const struct report *);
/* The sweep CSV. */
void report_write_sweep_csv(FILE *, const struct report *);
/* Writes the gnuplot data files and scripts into `dir`; each script
 * writes its PNG next to itself.  0 or -errno with a message. */
int report_write_gnuplot(const char *dir, const struct report *, char *err,
                         size_t errlen);

#endif /* MCOS_EVAL_REPORT_H */
