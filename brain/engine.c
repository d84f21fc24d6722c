#include "engine.h"

#include <errno.h>
#include <string.h>

void
brain_nodeset_clear(struct brain_nodeset *s)
{
    memset(s, 0, sizeof *s);
}

void
brain_nodeset_add(struct brain_nodeset *s, uint16_t idx)
{
    if (idx < BRAIN_PREFIX_MAX_NODES) {
        s->bits[idx / 64] |= 1ULL << (idx % 64);
        s->any = true;
    }
}

void
brain_nodeset_add_all(struct brain_nodeset *s)
{
    s->all = true;
    s->any = true;
}

void
brain_nodeset_union(struct brain_nodeset *s, const struct brain_nodeset *o)
{
    if (!o->any) {
        return;
    }
    s->any = true;
    s->all |= o->all;
    if (!s->all) {
        for (size_t i = 0; i < BRAIN_NODESET_WORDS; i++) {
            s->bits[i] |= o->bits[i];
        }
    }
}

bool
brain_nodeset_has(const struct brain_nodeset *s, uint16_t idx)
{
    if (s->all) {
        return true;
    }
    return idx < BRAIN_PREFIX_MAX_NODES &&
           (s->bits[idx / 64] >> (idx % 64)) & 1;
}

int
brain_engine_add(struct brain_engine *e, struct brain_engine_node *n)
{
    for (size_t i = 0; i < n->n_inputs; i++) {
        bool found = false;

        for (size_t k = 0; k < e->n && !found; k++) {
            found = e->nodes[k] == n->inputs[i];
        }
        if (!found) {
            return -EINVAL;
        }
    }
    if (e->n == BRAIN_ENGINE_MAX_NODES) {
        return -ENOSPC;
    }
    brain_nodeset_clear(&n->changed);
    e->nodes[e->n++] = n;
    return 0;
}

bool
brain_engine_inputs_changed(const struct brain_engine_node *n)
{
    for (size_t i = 0; i < n->n_inputs; i++) {
        if (n->inputs[i]->changed.any) {
            return true;
        }
    }
    return false;
}

void
brain_engine_inputs_changed_set(const struct brain_engine_node *n,
                                struct brain_nodeset *out)
{
    brain_nodeset_clear(out);
    for (size_t i = 0; i < n->n_inputs; i++) {
        brain_nodeset_union(out, &n->inputs[i]->changed);
    }
}

int
brain_engine_run(struct brain_engine *e, bool recompute, void *ctx)
{
    e->passes++;
    for (size_t i = 0; i < e->n; i++) {
        brain_nodeset_clear(&e->nodes[i]->changed);
    }
    for (size_t i = 0; i < e->n; i++) {
        struct brain_engine_node *n = e->nodes[i];
        int r;

        if (!recompute && !n->is_input && !brain_engine_inputs_changed(n)) {
            continue;
        }
        n->runs++;
        n->recomputes += recompute;
        r = n->run(n, recompute, ctx);
        if (r) {
            return r;
        }
    }
    return 0;
}

struct brain_engine_node *
brain_engine_find(const struct brain_engine *e, const char *name)
{
    for (size_t i = 0; i < e->n; i++) {
        if (!strcmp(e->nodes[i]->name, name)) {
            return e->nodes[i];
        }
    }
    return NULL;
}
