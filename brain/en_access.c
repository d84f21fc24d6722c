/*
 * en_access (input): access sequences learned from agents' events.  Each
 * node's ACCESSED events, in the order its reports carry them, form pairs
 * (previous object -> next object); the node keeps a count per pair.  A
 * conversation's next turn touching its previous prefix, or weight tiles
 * read layer after layer, show up as pairs seen again and again, which
 * en_prefetch turns into rules.
 *
 * Reports are folded in as they arrive (brain_graph_report); a pass says
 * which nodes learned something since the last one.  A node keeps at most
 * BRAIN_ACCESS_MAX_PAIRS pairs; when it is full, every count is halved
 * and the pairs that reach 0 are forgotten (old patterns fade, so new
 * ones can be learned).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "en.h"
#include "ids.h"

/* Pairs one node keeps: bounds the learner at about 256 KiB a node. */
#define BRAIN_ACCESS_MAX_PAIRS 8192

struct node_pairs {
    uint64_t last;               /* last object accessed, 0: none */
    struct brain_access_pair *v; /* pairs, in order learned */
    size_t n, cap;               /* used, allocated */
    uint32_t *slots;             /* index + 1 into v, open addressing */
    size_t mask;                 /* slots - 1 */
    bool dirty;                  /* learned since the last pass */
};

struct access {
    struct node_pairs *node[BRAIN_PREFIX_MAX_NODES]; /* by idx, lazily */
    uint64_t dropped; /* pairs not learned: out of memory */
};

static int
access_create(void **out)
{
    *out = calloc(1, sizeof(struct access));
    return *out ? 0 : -ENOMEM;
}

static void
access_destroy(void *data)
{
    struct access *d = data;

    if (!d) {
        return;
    }
    for (size_t i = 0; i < BRAIN_PREFIX_MAX_NODES; i++) {
        if (d->node[i]) {
            free(d->node[i]->v);
            free(d->node[i]->slots);
            free(d->node[i]);
        }
    }
    free(d);
}

static size_t
slot_of(uint64_t from, uint64_t to, size_t mask)
{
    return (size_t)mcos_mix64(from * 0x9e3779b97f4a7c15ULL ^ to) & mask;
}

/* Rebuilds the open-addressing slots for `cap` pairs. */
static int
reindex(struct node_pairs *p, size_t cap)
{
    size_t mask = cap * 2 - 1;
    uint32_t *slots = calloc(mask + 1, sizeof *slots);

    if (!slots) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < p->n; i++) {
        size_t s = slot_of(p->v[i].from, p->v[i].to, mask);

        while (slots[s]) {
            s = (s + 1) & mask;
        }
        slots[s] = (uint32_t)i + 1;
    }
    free(p->slots);
    p->slots = slots;
    p->mask = mask;
    return 0;
}

static int
grow(struct node_pairs *p)
{
    size_t cap = p->cap ? p->cap * 2 : 64;
    void *v = realloc(p->v, cap * sizeof *p->v);

    if (!v) {
        return -ENOMEM;
    }
    p->v = v;
    if (reindex(p, cap)) {
        return -ENOMEM;
    }
    p->cap = cap;
    return 0;
}

/* A full node: halve every count, forget the pairs that reach 0. */
static int
age(struct node_pairs *p)
{
    size_t j = 0;

    for (size_t i = 0; i < p->n; i++) {
        p->v[i].count /= 2;
        if (p->v[i].count) {
            p->v[j++] = p->v[i];
        }
    }
    p->n = j;
    p->dirty = true;
    return reindex(p, p->cap);
}

static void
learn(struct access *d, struct node_pairs *p, uint64_t from, uint64_t to)
{
    size_t s;

    if (p->slots) {
        for (s = slot_of(from, to, p->mask); p->slots[s];
             s = (s + 1) & p->mask) {
            struct brain_access_pair *q = &p->v[p->slots[s] - 1];

            if (q->from == from && q->to == to) {
                if (q->count < UINT32_MAX) {
                    q->count++;
                }
                p->dirty = true;
                return;
            }
        }
    }
    if (p->n >= BRAIN_ACCESS_MAX_PAIRS &&
        (age(p) != 0 || p->n >= BRAIN_ACCESS_MAX_PAIRS)) {
        d->dropped++;
        return;
    }
    if (p->n == p->cap && grow(p) != 0) {
        d->dropped++;
        return;
    }
    for (s = slot_of(from, to, p->mask); p->slots[s]; s = (s + 1) & p->mask) {
    }
    p->v[p->n] = (struct brain_access_pair){from, to, 1};
    p->slots[s] = (uint32_t)++p->n;
    p->dirty = true;
}

void
brain_en_access_report(void *data, uint16_t idx, const Mcos__Report *rep)
{
    struct access *d = data;
    struct node_pairs *p;

    if (idx >= BRAIN_PREFIX_MAX_NODES) {
        return;
    }
    p = d->node[idx];
    for (size_t i = 0; i < rep->n_events; i++) {
        const Mcos__ObjectEvent *e = rep->events[i];

        if (e->kind != MCOS__EVENT_KIND__EVENT_ACCESSED || e->object_id == 0) {
            continue;
        }
        if (!p) {
            p = d->node[idx] = calloc(1, sizeof *p);
            if (!p) {
                return;
            }
        }
        if (p->last && p->last != e->object_id) {
            learn(d, p, p->last, e->object_id);
        }
        p->last = e->object_id;
    }
}

static int
access_run(struct brain_engine_node *en, bool recompute, void *arg)
{
    struct access *d = en->data;

    (void)arg;
    for (size_t i = 0; i < BRAIN_PREFIX_MAX_NODES; i++) {
        struct node_pairs *p = d->node[i];

        if (p && (p->dirty || recompute)) {
            p->dirty = false;
            brain_nodeset_add(&en->changed, (uint16_t)i);
        }
    }
    return 0;
}

size_t
brain_en_access_pairs(void *data, uint16_t idx,
                      const struct brain_access_pair **out)
{
    struct access *d = data;
    struct node_pairs *p = idx < BRAIN_PREFIX_MAX_NODES ? d->node[idx] : NULL;

    *out = p ? p->v : NULL;
    return p ? p->n : 0;
}

const struct brain_en_class brain_en_access = {
    "en_access", true, access_run, access_create, access_destroy,
};
