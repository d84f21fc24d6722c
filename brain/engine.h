/*
 * The incremental processing engine, after OVN's (lib/inc-proc-eng): the
 * decide and compile steps are nodes of a directed acyclic graph, each
 * reading only the nodes it names as inputs.  Input nodes sample the
 * cluster model and say what changed; a derived node runs only when one
 * of its inputs changed in this pass, and then handles just that change
 * (per cluster node, through the brain_nodeset each node publishes).  A
 * forced full recompute runs every node from scratch; it must give exactly
 * the output the incremental path gave, which the tests check after every
 * scenario.
 *
 * Nodes are added in topological order (inputs first), so one pass in
 * insertion order is a valid schedule.  The graph is wired in graph.c;
 * each node lives in its own en_*.c file.
 *
 * Where it sits: steps 3-4 (decide, compile), driven by brain_run().
 * Thread-safety: loop thread only.
 */
#ifndef BRAIN_ENGINE_H
#define BRAIN_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "prefix_index.h"

/* Cluster nodes are named here by their small id (brain_node.idx). */
#define BRAIN_NODESET_WORDS (BRAIN_PREFIX_MAX_NODES / 64)

/* A set of cluster nodes: which ones an engine node's output changed for.
 * `all` stands for every node (a change that touches every table). */
struct brain_nodeset {
    uint64_t bits[BRAIN_NODESET_WORDS]; /* by brain_node.idx */
    bool all;                           /* every node */
    bool any;                           /* at least one bit or all */
};

void brain_nodeset_clear(struct brain_nodeset *);
void brain_nodeset_add(struct brain_nodeset *, uint16_t idx);
void brain_nodeset_add_all(struct brain_nodeset *);
void brain_nodeset_union(struct brain_nodeset *, const struct brain_nodeset *);
bool brain_nodeset_has(const struct brain_nodeset *, uint16_t idx);

#define BRAIN_ENGINE_MAX_INPUTS 8
#define BRAIN_ENGINE_MAX_NODES  32

struct brain_engine_node;

/* Runs a node.  `recompute`: ignore what changed and rebuild the whole
 * output.  The node fills its `changed` set (cleared before the call) and
 * returns 0 or a negative errno (the pass stops; the node keeps its old
 * output). */
typedef int (*brain_engine_run_fn)(struct brain_engine_node *, bool recompute,
                                   void *ctx);

struct brain_engine_node {
    const char *name;        /* for logs, stats and tests */
    brain_engine_run_fn run; /* how it computes its output */
    void *data;              /* its output and state, owned by its file */
    struct brain_engine_node *inputs[BRAIN_ENGINE_MAX_INPUTS]; /* reads */
    size_t n_inputs;                                           /* how many */
    bool is_input;                /* samples the model: runs every pass */
    struct brain_nodeset changed; /* what its last run changed */
    uint64_t runs;                /* times run (incremental or full) */
    uint64_t recomputes;          /* of which full recomputes */
};

struct brain_engine {
    struct brain_engine_node *nodes[BRAIN_ENGINE_MAX_NODES]; /* topo order */
    size_t n;                                                /* how many */
    uint64_t passes; /* runs of the whole graph */
};

/* Adds a node whose inputs were all added before it: -EINVAL if one was
 * not (the graph would not be in topological order), -ENOSPC when full. */
int brain_engine_add(struct brain_engine *, struct brain_engine_node *);

/* One pass: input nodes always run; a derived node runs when an input's
 * `changed` set is not empty, or always with `recompute`.  Returns 0 or the
 * first node's error. */
int brain_engine_run(struct brain_engine *, bool recompute, void *ctx);

/* True when any input of `n` changed in this pass. */
bool brain_engine_inputs_changed(const struct brain_engine_node *);

/* The cluster nodes any input of `n` changed for in this pass. */
void brain_engine_inputs_changed_set(const struct brain_engine_node *,
                                     struct brain_nodeset *out);

/* The node named `name`, or NULL. */
struct brain_engine_node *brain_engine_find(const struct brain_engine *,
                                            const char *name);

#endif /* BRAIN_ENGINE_H */
