#include "cluster.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void
brain_cluster_init(struct brain_cluster *c)
{
    memset(c, 0, sizeof *c);
}

static void
node_free(struct brain_node *n)
{
    brain_node_reset(n);
    if (n->hello) {
        mcos__hello__free_unpacked(n->hello, NULL);
    }
    free(n->replicas);
    brain_routed_destroy(&n->routed);
    free(n);
}

void
brain_cluster_destroy(struct brain_cluster *c)
{
    for (size_t i = 0; i < c->n; i++) {
        node_free(c->nodes[i]);
    }
    free(c->nodes);
    memset(c, 0, sizeof *c);
}

/* Index of `name`, or of where it would go (with *found false). */
static size_t
search(const struct brain_cluster *c, const char *name, bool *found)
{
    size_t lo = 0, hi = c->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int cmp = strcmp(name, c->nodes[mid]->name);

        if (cmp == 0) {
            *found = true;
            return mid;
        }
        if (cmp < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    *found = false;
    return lo;
}

struct brain_node *
brain_cluster_find(const struct brain_cluster *c, const char *name)
{
    bool found;
    size_t i = search(c, name, &found);

    return found ? c->nodes[i] : NULL;
}

int
brain_cluster_add(struct brain_cluster *c, const char *name,
                  struct brain_node **out)
{
    struct brain_node *n;
    bool found;
    size_t i;

    if (!mcos_node_name_valid(name)) {
        return -EINVAL;
    }
    i = search(c, name, &found);
    if (found) {
        return -EEXIST;
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        struct brain_node **grown = realloc(c->nodes, cap * sizeof *grown);

        if (!grown) {
            return -ENOMEM;
        }
        c->nodes = grown;
        c->cap = cap;
    }
    if (c->next_idx >= 4096) {
        return -ENOSPC; /* the prefix index's node id space */
    }
    n = calloc(1, sizeof *n);
    if (!n) {
        return -ENOMEM;
    }
    n->idx = c->next_idx++;
    strcpy(n->name, name);
    memmove(&c->nodes[i + 1], &c->nodes[i], (c->n - i) * sizeof *c->nodes);
    c->nodes[i] = n;
    c->n++;
    *out = n;
    return 0;
}

size_t
brain_cluster_count(const struct brain_cluster *c, enum brain_liveness s)
{
    size_t count = 0;

    for (size_t i = 0; i < c->n; i++) {
        count += c->nodes[i]->live == s;
    }
    return count;
}

/* Frees `t` unless one of the node's table pointers still holds it. */
static void
release(struct brain_node *n, struct mcos_table *t)
{
    if (t && t != n->desired && t != n->previous && t != n->confirmed) {
        mcos_table_free(t);
    }
}

void
brain_node_set_desired(struct brain_node *n, struct mcos_table *t)
{
    struct mcos_table *old_prev = n->previous;

    n->previous = n->desired;
    n->desired = t;
    release(n, old_prev);
}

void
brain_node_ack(struct brain_node *n, uint64_t gen)
{
    struct mcos_table *old = n->confirmed;

    n->applied_gen = gen;
    if (old && mcos_table_gen(old) == gen) {
        return;
    }
    if (n->desired && mcos_table_gen(n->desired) == gen) {
        n->confirmed = n->desired;
    } else if (n->previous && mcos_table_gen(n->previous) == gen) {
        n->confirmed = n->previous;
    } else {
        n->confirmed = NULL;
    }
    release(n, old);
}

void
brain_node_drop_watch(struct brain_node *n)
{
    if (n->watch) {
        mcos_bus_request_drop(n->watch);
        n->watch = NULL;
    }
}

void
brain_node_reset(struct brain_node *n)
{
    struct mcos_table *d = n->desired, *p = n->previous, *c = n->confirmed;

    brain_node_drop_watch(n);
    n->desired = n->previous = n->confirmed = NULL;
    mcos_table_free(d);
    if (p != d) {
        mcos_table_free(p);
    }
    if (c != d && c != p) {
        mcos_table_free(c);
    }
    n->applied_gen = 0;
    n->last_seq = 0;
    n->reports = 0;
    n->events = 0;
    n->events_dropped = 0;
    n->stale = false;
    memset(n->tiers, 0, sizeof n->tiers);
    /* A new boot's engines start with empty queues. */
    brain_routed_clear(&n->routed);
}
