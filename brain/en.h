/*
 * The engine nodes of the brain's graph (graph.h), one file each: what
 * graph.c needs to create them and what downstream nodes read from them.
 * A node reads only the nodes it names as inputs, through these calls.
 *
 * Where it sits: steps 3-4 (decide, compile).  Thread-safety: loop thread.
 */
#ifndef BRAIN_EN_H
#define BRAIN_EN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "graph.h"

/* What every node's run() gets as its ctx. */
struct brain_en_ctx {
    const struct brain_graph_ctx *g;        /* the model, knobs, now */
    const struct brain_node *const *by_idx; /* cluster nodes by small id */
    char *err;                              /* where a failure is told */
    size_t errlen;                          /* its size */
};

/* How graph.c makes a node: an ops table per node kind. */
struct brain_en_class {
    const char *name;           /* "en_members", ... */
    bool is_input;              /* samples the model every pass */
    brain_engine_run_fn run;    /* computes its output */
    int (*create)(void **data); /* its state, or NULL for none */
    void (*destroy)(void *data);
};

/* en_inputs.c */
extern const struct brain_en_class brain_en_members;
extern const struct brain_en_class brain_en_policy;
extern const struct brain_en_class brain_en_replicas;
extern const struct brain_en_class brain_en_usage;
extern const struct brain_en_class brain_en_hot;
/* en_access.c */
extern const struct brain_en_class brain_en_access;
/* en_residency.c */
extern const struct brain_en_class brain_en_residency;
/* en_replication.c, en_placement.c, en_prefetch.c, en_tables.c */
extern const struct brain_en_class brain_en_replication;
extern const struct brain_en_class brain_en_placement;
extern const struct brain_en_class brain_en_prefetch;
extern const struct brain_en_class brain_en_tables;

/* The input of `n` named `name`; NULL if it has none (graph.c wires it). */
struct brain_engine_node *brain_en_input(const struct brain_engine_node *n,
                                         const char *name);

/* True for a node tables are compiled for: said hello, not failed. */
bool brain_en_node_up(const struct brain_node *);

/* en_hot's sample: the hottest blocks, hottest first. */
#define BRAIN_HOT_MAX_HOLDERS 16
struct brain_hot_block {
    uint64_t hash;     /* block */
    double hotness;    /* at the sample */
    uint16_t ns;       /* namespace id */
    uint8_t n_holders; /* live holders (at most BRAIN_HOT_MAX_HOLDERS) */
    struct brain_prefix_holder holders[BRAIN_HOT_MAX_HOLDERS]; /* by node */
};
const struct brain_hot_block *brain_en_hot_blocks(const void *data, size_t *n);

/* en_usage's sample: a tier's use in per mille (0 if unknown). */
uint32_t brain_en_usage_permille(const void *data, uint16_t idx, int tier);

/* en_access: the learned pairs of one node (from -> to, seen count),
 * sorted by from, then count descending, then to. */
struct brain_access_pair {
    uint64_t from;  /* accessed first */
    uint64_t to;    /* accessed next */
    uint32_t count; /* times seen */
};
size_t brain_en_access_pairs(void *data, uint16_t idx,
                             const struct brain_access_pair **out);
/* Folds one report's events in (brain_graph_report). */
void brain_en_access_report(void *data, uint16_t idx, const Mcos__Report *);

/* en_replication: its report hook (hits) and its decisions. */
void brain_en_replication_report(void *data, uint16_t idx,
                                 const Mcos__Report *);
void brain_en_replication_decisions(const void *data, uint16_t idx,
                                    struct brain_node_decisions *);
void brain_en_replication_foreach(const void *data,
                                  void (*cb)(const struct brain_repl_info *,
                                             void *),
                                  void *arg);

/* en_placement and en_prefetch: their decisions for one node. */
void brain_en_placement_decisions(const void *data, uint16_t idx,
                                  struct brain_node_decisions *);
void brain_en_prefetch_decisions(const void *data, uint16_t idx,
                                 struct brain_node_decisions *);

/* en_residency: a routed request folded in (brain_graph_route), and the
 * residency table and reuse rules for one node. */
void brain_en_residency_route(void *data, uint16_t idx, const uint64_t *chain,
                              size_t n, uint64_t output_len, uint64_t now_us);
void brain_en_residency_decisions(const void *data, uint16_t idx,
                                  struct brain_node_decisions *);

/* en_tables: the compiled table of one node (gen 0). */
const struct mcos_table *brain_en_tables_get(const void *data, uint16_t idx);
/* en_tables: how many tables it compiled so far. */
uint64_t brain_en_tables_compiled(const void *data);

#endif /* BRAIN_EN_H */
