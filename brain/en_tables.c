/*
 * en_tables (compile): one table per node that tables are compiled for.
 * Inputs: en_members, en_policy, en_replicas (the model's rules) and the
 * decide nodes en_replication, en_placement, en_prefetch, en_residency.  Only
 * the nodes some input marked changed are compiled again; a table whose rules
 * came out the same is kept (its node is not reported as changed).  Tables are
 * compiled at generation 0: brain_run restamps them with the generation
 * it publishes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "en.h"

struct tables {
    struct mcos_table *t[BRAIN_PREFIX_MAX_NODES]; /* by idx, or NULL */
    uint64_t compiled; /* tables compiled so far (changed or not) */
};

static int
tables_create(void **out)
{
    *out = calloc(1, sizeof(struct tables));
    return *out ? 0 : -ENOMEM;
}

static void
tables_destroy(void *data)
{
    struct tables *d = data;

    if (!d) {
        return;
    }
    for (size_t i = 0; i < BRAIN_PREFIX_MAX_NODES; i++) {
        mcos_table_free(d->t[i]);
    }
    free(d);
}

static void
decisions(const struct brain_engine_node *en, uint16_t idx,
          struct brain_node_decisions *dec)
{
    const struct brain_engine_node *repl =
        brain_en_input(en, "en_replication");
    const struct brain_engine_node *place = brain_en_input(en, "en_placement");
    const struct brain_engine_node *pf = brain_en_input(en, "en_prefetch");
    const struct brain_engine_node *res = brain_en_input(en, "en_residency");

    memset(dec, 0, sizeof *dec);
    brain_en_replication_decisions(repl->data, idx, dec);
    brain_en_placement_decisions(place->data, idx, dec);
    brain_en_prefetch_decisions(pf->data, idx, dec);
    brain_en_residency_decisions(res->data, idx, dec);
}

static int
compile_one(struct brain_engine_node *en, struct brain_en_ctx *ctx,
            const struct brain_node *n)
{
    struct tables *d = en->data;
    struct brain_node_decisions dec;
    struct mcos_table *t;
    char err[MCOS_TABLE_ERR_LEN];
    int r;

    if (!brain_en_node_up(n)) {
        if (d->t[n->idx]) {
            mcos_table_free(d->t[n->idx]);
            d->t[n->idx] = NULL;
            brain_nodeset_add(&en->changed, n->idx);
        }
        return 0;
    }
    decisions(en, n->idx, &dec);
    d->compiled++;
    r = brain_compile_node_decided(ctx->g->cluster, n, ctx->g->policy, &dec, 0,
                                   &t, err, sizeof err);
    if (r) {
        snprintf(ctx->err, ctx->errlen,
                 "en_tables: cannot compile the table of node %s: %s", n->name,
                 err);
        return r;
    }
    if (d->t[n->idx] && mcos_table_same_rules(d->t[n->idx], t)) {
        mcos_table_free(t);
        return 0;
    }
    mcos_table_free(d->t[n->idx]);
    d->t[n->idx] = t;
    brain_nodeset_add(&en->changed, n->idx);
    return 0;
}

static int
tables_run(struct brain_engine_node *en, bool recompute, void *arg)
{
    struct brain_en_ctx *ctx = arg;
    const struct brain_cluster *c = ctx->g->cluster;
    struct brain_nodeset dirty;
    int first = 0;

    brain_engine_inputs_changed_set(en, &dirty);
    for (size_t i = 0; i < c->n; i++) {
        int r;

        if (!recompute && !brain_nodeset_has(&dirty, c->nodes[i]->idx)) {
            continue;
        }
        /* One node failing to compile keeps its last table; the others
         * still get theirs. */
        r = compile_one(en, ctx, c->nodes[i]);
        if (r && !first) {
            first = r;
        }
    }
    return first;
}

const struct mcos_table *
brain_en_tables_get(const void *data, uint16_t idx)
{
    const struct tables *d = data;

    return idx < BRAIN_PREFIX_MAX_NODES ? d->t[idx] : NULL;
}

uint64_t
brain_en_tables_compiled(const void *data)
{
    return ((const struct tables *)data)->compiled;
}

const struct brain_en_class brain_en_tables = {
    "en_tables", false, tables_run, tables_create, tables_destroy,
};
