/*
 * The brain's decide/compile graph: the engine nodes of en_*.c wired
 * together (graph.c is the one place that knows the edges).
 *
 *   inputs (sample the model every pass)      derived (run on change)
 *   en_members   hellos, liveness     --+--> en_replication (decide)
 *   en_hot       hottest KV blocks,     |      hot prefixes -> copies,
 *                resampled per interval-+      idle copies -> drops
 *   en_usage     reported tier usage  -----> en_placement (decide)
 *   en_access    learned access pairs -----> en_prefetch (decide)
 *   en_residency routed turns: learned reuse, per node the turns' classes
 *   en_policy    every knob           --+
 *   en_replicas  operator tasks       --+--> en_tables (compile): one
 *   (and every decide node above)  ----+     table per node, only for the
 *                                            nodes whose inputs changed
 *
 * brain_run() calls brain_graph_run() and publishes a new generation when
 * any table changed; a forced recompute (mcos-admin sync --recompute,
 * POST /v1/sync?recompute=1) runs every node from scratch, and must give
 * the same tables byte for byte.
 *
 * Decide nodes with memory (the replication ledger; the access pairs;
 * the residency learner) advance only on their trigger input; a recompute
 * rebuilds their output from that memory, it does not take a second
 * decision.
 *
 * Where it sits: steps 3-4 (decide, compile).  Thread-safety: loop thread.
 */
#ifndef BRAIN_GRAPH_H
#define BRAIN_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster.h"
#include "compile.h"
#include "engine.h"
#include "kvindex.h"

/* Hot-prefix replication knobs (replication.* in the config). */
struct brain_repl_config {
    uint32_t min_hotness_milli; /* a block at least this hot x1000 */
    uint32_t copies;            /* is kept on this many live nodes */
    uint32_t budget;            /* new copies started per round, at most */
    uint64_t budget_bytes;      /* and at most these bytes per round */
    uint32_t candidates;        /* hottest blocks examined per namespace */
    uint64_t interval_us;       /* a round every so often */
    uint32_t drop_hits;         /* a copy with fewer hits than this ... */
    uint64_t drop_after_us;     /* ... over this long is dropped */
};

/* Placement and prefetch knobs (placement.*, prefetch.*). */
struct brain_place_config {
    uint32_t admit_pressure_milli; /* admission rise from low to high mark */
    uint32_t prefetch_min_support; /* times a pair is seen before a rule */
    uint32_t prefetch_deadline_ms; /* deadline in prefetch rules */
    uint32_t prefetch_max_rules;   /* per node, the best supported */
};

/* What the graph reads: the model and the knobs, and the time. */
struct brain_graph_ctx {
    const struct brain_cluster *cluster;    /* the model */
    const struct brain_policy *policy;      /* tier knobs */
    struct brain_kv *kv;                    /* prefix index (read only) */
    const struct brain_repl_config *repl;   /* replication knobs */
    const struct brain_place_config *place; /* placement/prefetch knobs */
    uint64_t now_us;                        /* monotonic now */
};

struct brain_graph;

int brain_graph_create(struct brain_graph **out);
void brain_graph_destroy(struct brain_graph *);

/* One pass (see above); 0 or a negative errno from the node that failed,
 * named in err. */
int brain_graph_run(struct brain_graph *, const struct brain_graph_ctx *,
                    bool recompute, char *err, size_t errlen);

/* The table compiled for the node with small id `idx` (generation 0: the
 * caller restamps it), or NULL for a node with none (failed, no hello). */
const struct mcos_table *brain_graph_table(const struct brain_graph *,
                                           uint16_t idx);

/* How many tables the graph compiled so far (whether or not they came out
 * changed): what "only the nodes whose inputs changed recompile" means. */
uint64_t brain_graph_tables_compiled(const struct brain_graph *);

/* The nodes whose table changed in the last pass. */
const struct brain_nodeset *
brain_graph_tables_changed(const struct brain_graph *);

/* Folds a report's events into what the decide nodes learn from (replica
 * hits, access pairs); called by the brain as each report arrives. */
void brain_graph_report(struct brain_graph *, uint16_t idx,
                        const Mcos__Report *);

/* Folds a routed request into what en_residency learns from: its chain,
 * the answer length it expects, the node it was routed to (small id). */
void brain_graph_route(struct brain_graph *, uint16_t idx,
                       const uint64_t *chain, size_t n, uint64_t output_len,
                       uint64_t now_us);

/* The engine, for stats and tests. */
const struct brain_engine *brain_graph_engine(const struct brain_graph *);

/* One brain-made replica, for the API and the demo. */
struct brain_repl_info {
    uint16_t ns;       /* namespace id */
    uint64_t object;   /* block hash */
    uint16_t source;   /* node copied from (idx) */
    uint16_t target;   /* node copied to (idx) */
    const char *state; /* "copying", "held", "dropping", "dropped" */
    uint32_t hits;     /* accesses on the target this window */
    uint32_t holders;  /* live holders when decided */
    double hotness;    /* block hotness when decided */
    bool other_rack;   /* the target is in a rack no holder was in */
};

/* Calls cb for every replica the brain made and still tracks, in order. */
void brain_graph_replicas(const struct brain_graph *,
                          void (*cb)(const struct brain_repl_info *, void *),
                          void *arg);

#endif /* BRAIN_GRAPH_H */
