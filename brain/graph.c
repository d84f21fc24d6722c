/*
 * The graph of graph.h, wired here and nowhere else: which engine node
 * reads which.  Adding a decision means one en_*.c file and a few lines
 * below.
 */
#include "graph.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "en.h"

/* The graph, in topological order: each node's inputs come before it. */
static const struct {
    const struct brain_en_class *cls;
    const char *inputs[BRAIN_ENGINE_MAX_INPUTS];
} wiring[] = {
    {&brain_en_members, {NULL}},
    {&brain_en_policy, {NULL}},
    {&brain_en_replicas, {NULL}},
    {&brain_en_usage, {NULL}},
    {&brain_en_hot, {NULL}},
    {&brain_en_access, {NULL}},
    {&brain_en_residency, {NULL}},
    {&brain_en_replication, {"en_hot", "en_members", "en_policy"}},
    {&brain_en_placement, {"en_usage", "en_policy", "en_members"}},
    {&brain_en_prefetch, {"en_access", "en_members", "en_policy"}},
    {&brain_en_tables,
     {"en_members", "en_policy", "en_replicas", "en_replication",
      "en_placement", "en_prefetch", "en_residency"}},
};

#define N_NODES (sizeof wiring / sizeof wiring[0])

struct brain_graph {
    struct brain_engine engine;                              /* the engine */
    struct brain_engine_node nodes[N_NODES];                 /* as wired */
    const struct brain_node *by_idx[BRAIN_PREFIX_MAX_NODES]; /* this pass */
    bool failed; /* last pass failed */
};

int
brain_graph_create(struct brain_graph **out)
{
    struct brain_graph *g = calloc(1, sizeof *g);
    int r = 0;

    if (!g) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < N_NODES && r == 0; i++) {
        struct brain_engine_node *n = &g->nodes[i];

        n->name = wiring[i].cls->name;
        n->run = wiring[i].cls->run;
        n->is_input = wiring[i].cls->is_input;
        for (size_t k = 0; k < BRAIN_ENGINE_MAX_INPUTS && wiring[i].inputs[k];
             k++) {
            n->inputs[k] = brain_engine_find(&g->engine, wiring[i].inputs[k]);
            n->n_inputs++;
        }
        r = wiring[i].cls->create(&n->data);
        if (r == 0) {
            r = brain_engine_add(&g->engine, n);
        }
    }
    if (r) {
        brain_graph_destroy(g);
        return r;
    }
    *out = g;
    return 0;
}

void
brain_graph_destroy(struct brain_graph *g)
{
    if (!g) {
        return;
    }
    for (size_t i = 0; i < N_NODES; i++) {
        if (g->nodes[i].data) {
            wiring[i].cls->destroy(g->nodes[i].data);
        }
    }
    free(g);
}

int
brain_graph_run(struct brain_graph *g, const struct brain_graph_ctx *gc,
                bool recompute, char *err, size_t errlen)
{
    const struct brain_cluster *c = gc->cluster;
    struct brain_en_ctx ctx = {gc, g->by_idx, err, errlen};
    int r;

    memset(g->by_idx, 0, sizeof g->by_idx);
    for (size_t i = 0; i < c->n; i++) {
        g->by_idx[c->nodes[i]->idx] = c->nodes[i];
    }
    if (errlen) {
        err[0] = '\0';
    }
    /* A pass that failed lost what its inputs said changed: the next one
     * recomputes everything. */
    r = brain_engine_run(&g->engine, recompute || g->failed, &ctx);
    g->failed = r != 0;
    return r;
}

static struct brain_engine_node *
node(const struct brain_graph *g, const struct brain_en_class *cls)
{
    for (size_t i = 0; i < N_NODES; i++) {
        if (wiring[i].cls == cls) {
            return (struct brain_engine_node *)&g->nodes[i];
        }
    }
    return NULL;
}

const struct mcos_table *
brain_graph_table(const struct brain_graph *g, uint16_t idx)
{
    return brain_en_tables_get(node(g, &brain_en_tables)->data, idx);
}

uint64_t
brain_graph_tables_compiled(const struct brain_graph *g)
{
    return brain_en_tables_compiled(node(g, &brain_en_tables)->data);
}

const struct brain_nodeset *
brain_graph_tables_changed(const struct brain_graph *g)
{
    return &node(g, &brain_en_tables)->changed;
}

void
brain_graph_report(struct brain_graph *g, uint16_t idx,
                   const Mcos__Report *rep)
{
    brain_en_access_report(node(g, &brain_en_access)->data, idx, rep);
    brain_en_replication_report(node(g, &brain_en_replication)->data, idx,
                                rep);
}

void
brain_graph_route(struct brain_graph *g, uint16_t idx, const uint64_t *chain,
                  size_t n, uint64_t output_len, uint64_t now_us)
{
    brain_en_residency_route(node(g, &brain_en_residency)->data, idx, chain, n,
                             output_len, now_us);
}

const struct brain_engine *
brain_graph_engine(const struct brain_graph *g)
{
    return &g->engine;
}

void
brain_graph_replicas(const struct brain_graph *g,
                     void (*cb)(const struct brain_repl_info *, void *),
                     void *arg)
{
    brain_en_replication_foreach(node(g, &brain_en_replication)->data, cb,
                                 arg);
}
