#include "registry.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ids.h"

/* Open addressing with linear probing over object pointers; ids are
 * hashes already, but engine block ids may be sequential, so mix them. */
struct agent_registry {
    struct agent_object **slots;              /* NULL or an object */
    size_t cap;                               /* power of two */
    size_t n;                                 /* objects */
    struct agent_object *hot[AGENT_N_TIERS];  /* LRU heads (hot end) */
    struct agent_object *cold[AGENT_N_TIERS]; /* LRU tails (cold end) */
};

int
agent_registry_create(struct agent_registry **out)
{
    struct agent_registry *r = calloc(1, sizeof *r);

    if (!r) {
        return -ENOMEM;
    }
    r->cap = 1024;
    r->slots = calloc(r->cap, sizeof *r->slots);
    if (!r->slots) {
        free(r);
        return -ENOMEM;
    }
    *out = r;
    return 0;
}

void
agent_registry_destroy(struct agent_registry *r)
{
    if (!r) {
        return;
    }
    for (size_t i = 0; i < r->cap; i++) {
        if (r->slots[i]) {
            free(r->slots[i]->remote);
        }
        free(r->slots[i]);
    }
    free(r->slots);
    free(r);
}

static size_t
probe(const struct agent_registry *r, uint64_t id)
{
    size_t i = (size_t)mcos_mix64(id) & (r->cap - 1);

    while (r->slots[i] && r->slots[i]->id != id) {
        i = (i + 1) & (r->cap - 1);
    }
    return i;
}

struct agent_object *
agent_registry_find(const struct agent_registry *r, uint64_t id)
{
    return id ? r->slots[probe(r, id)] : NULL;
}

static int
grow(struct agent_registry *r)
{
    struct agent_object **old = r->slots;
    size_t old_cap = r->cap;

    r->slots = calloc(old_cap * 2, sizeof *r->slots);
    if (!r->slots) {
        r->slots = old;
        return -ENOMEM;
    }
    r->cap = old_cap * 2;
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i]) {
            r->slots[probe(r, old[i]->id)] = old[i];
        }
    }
    free(old);
    return 0;
}

int
agent_registry_add(struct agent_registry *r, uint64_t id,
                   struct agent_object **out)
{
    struct agent_object *o;
    size_t i;

    if (id == 0) {
        return -EINVAL;
    }
    if (r->slots[probe(r, id)]) {
        return -EEXIST;
    }
    /* Keep the load under 1/2 so probes stay short. */
    if ((r->n + 1) * 2 > r->cap && grow(r)) {
        return -ENOMEM;
    }
    o = calloc(1, sizeof *o);
    if (!o) {
        return -ENOMEM;
    }
    o->id = id;
    i = probe(r, id);
    r->slots[i] = o;
    r->n++;
    *out = o;
    return 0;
}

static void
lru_unlink(struct agent_registry *r, struct agent_object *o)
{
    int t = o->tier;

    if (t <= 0 || t >= AGENT_N_TIERS) {
        return;
    }
    if (o->lru_prev) {
        o->lru_prev->lru_next = o->lru_next;
    } else if (r->hot[t] == o) {
        r->hot[t] = o->lru_next;
    }
    if (o->lru_next) {
        o->lru_next->lru_prev = o->lru_prev;
    } else if (r->cold[t] == o) {
        r->cold[t] = o->lru_prev;
    }
    o->lru_prev = o->lru_next = NULL;
}

static void
lru_push_hot(struct agent_registry *r, struct agent_object *o)
{
    int t = o->tier;

    o->lru_prev = NULL;
    o->lru_next = r->hot[t];
    if (r->hot[t]) {
        r->hot[t]->lru_prev = o;
    } else {
        r->cold[t] = o;
    }
    r->hot[t] = o;
}

void
agent_registry_remove(struct agent_registry *r, struct agent_object *o)
{
    size_t i = probe(r, o->id), j;

    lru_unlink(r, o);
    r->slots[i] = NULL;
    r->n--;
    /* Re-insert the rest of the cluster so probes still find them
     * (backward-shift deletion, the simple way). */
    for (j = (i + 1) & (r->cap - 1); r->slots[j]; j = (j + 1) & (r->cap - 1)) {
        struct agent_object *m = r->slots[j];

        r->slots[j] = NULL;
        r->slots[probe(r, m->id)] = m;
    }
    free(o->remote);
    free(o);
}

void
agent_registry_set_tier(struct agent_registry *r, struct agent_object *o,
                        int tier)
{
    lru_unlink(r, o);
    o->tier = tier;
    if (tier > 0 && tier < AGENT_N_TIERS) {
        lru_push_hot(r, o);
    }
}

void
agent_registry_touch(struct agent_registry *r, struct agent_object *o)
{
    if (o->tier > 0 && o->tier < AGENT_N_TIERS && r->hot[o->tier] != o) {
        lru_unlink(r, o);
        lru_push_hot(r, o);
    }
}

struct agent_object *
agent_registry_coldest(const struct agent_registry *r, int tier)
{
    return tier > 0 && tier < AGENT_N_TIERS ? r->cold[tier] : NULL;
}

size_t
agent_registry_count(const struct agent_registry *r)
{
    return r->n;
}

int
agent_registry_foreach(const struct agent_registry *r,
                       int (*cb)(struct agent_object *, void *), void *arg)
{
    for (size_t i = 0; i < r->cap; i++) {
        if (r->slots[i]) {
            int rc = cb(r->slots[i], arg);

            if (rc) {
                return rc;
            }
        }
    }
    return 0;
}

const char *
agent_obj_state_name(enum agent_obj_state s)
{
    switch (s) {
    case AGENT_OBJ_PLACED:
        return "placed";
    case AGENT_OBJ_RESIDENT:
        return "resident";
    case AGENT_OBJ_MOVING:
        return "moving";
    }
    return "unknown";
}
