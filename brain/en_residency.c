/*
 * en_residency (input + decide): which objects each node should keep when
 * a tier must give room, learned from the requests the brain routes.
 *
 * Every routed request (POST /v1/route, the bus's RouteRequest) is folded
 * in as it is decided (brain_graph_route): the brain's reuse prediction
 * (residency.h) learns whether it continues an earlier turn and after how
 * long, and records it as a turn of its answer's class (output_len).  The
 * node it was routed to remembers the turn's last block and class, the
 * most recent MCOS_TABLE_MAX_REUSE turns (a ring; a turn seen again only
 * moves up).
 *
 * A pass publishes, for every node: the compiled residency table (scores
 * per class and idle age, and the default class: the class with the most
 * turns) and the node's turns whose class is not the default, as reuse
 * rules.  The table is republished only when a score moved by at least
 * 1/32 or the default class changed, so routing does not recompile every
 * table on every request; a node's reuse rules change when a turn is
 * routed to it.  Before the first routed request nothing is published
 * (tables carry no residency rule; agents demote by LRU).
 *
 * Like en_access, the learned state advances only as routes arrive; a
 * forced recompute rebuilds the same output from it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "en.h"
#include "residency.h"

/* A score change that republishes the table (of 65535). */
#define REPUBLISH_STEP 2048

/* The turns routed to one node, most recent last. */
struct node_turns {
    struct brain_reuse ring[MCOS_TABLE_MAX_REUSE]; /* turns, a ring */
    size_t n;                                      /* in the ring */
    size_t head;                                   /* oldest */
    struct brain_reuse out[MCOS_TABLE_MAX_REUSE];  /* published, sorted */
    size_t n_out;                                  /* how many */
    bool dirty;                                    /* routed since a pass */
};

struct residency {
    struct brain_residency *r;       /* the learner */
    bool learned;                    /* since the last pass */
    bool have_pub;                   /* a table was published */
    struct mcos_residency_table pub; /* the published table */
    uint32_t pub_default;            /* and its default class */
    struct node_turns *node[BRAIN_PREFIX_MAX_NODES]; /* by idx, lazily */
};

static int
residency_create(void **out)
{
    struct residency *d = calloc(1, sizeof *d);
    struct brain_residency_options o = {.max_blocks = 1u << 18};
    int r;

    if (!d) {
        return -ENOMEM;
    }
    r = brain_residency_create(&o, &d->r);
    if (r) {
        free(d);
        return r;
    }
    *out = d;
    return 0;
}

static void
residency_destroy(void *data)
{
    struct residency *d = data;

    if (!d) {
        return;
    }
    for (size_t i = 0; i < BRAIN_PREFIX_MAX_NODES; i++) {
        free(d->node[i]);
    }
    brain_residency_destroy(d->r);
    free(d);
}

/* Remembers turn (object, cls) on node p: the same object moves up. */
static void
remember(struct node_turns *p, uint64_t object, uint32_t cls)
{
    size_t i;

    for (i = 0; i < p->n; i++) {
        struct brain_reuse *v = &p->ring[(p->head + i) % MCOS_TABLE_MAX_REUSE];

        if (v->object == object) {
            break;
        }
    }
    /* Close the gap it leaves (or drop the oldest when full and new). */
    if (i < p->n) {
        for (; i + 1 < p->n; i++) {
            p->ring[(p->head + i) % MCOS_TABLE_MAX_REUSE] =
                p->ring[(p->head + i + 1) % MCOS_TABLE_MAX_REUSE];
        }
        p->n--;
    } else if (p->n == MCOS_TABLE_MAX_REUSE) {
        p->head = (p->head + 1) % MCOS_TABLE_MAX_REUSE;
        p->n--;
    }
    p->ring[(p->head + p->n) % MCOS_TABLE_MAX_REUSE] =
        (struct brain_reuse){object, cls};
    p->n++;
    p->dirty = true;
}

void
brain_en_residency_route(void *data, uint16_t idx, const uint64_t *chain,
                         size_t n, uint64_t output_len, uint64_t now_us)
{
    struct residency *d = data;
    uint32_t len = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
    uint32_t answer =
        output_len > UINT32_MAX ? UINT32_MAX : (uint32_t)output_len;
    struct node_turns *p;

    if (n == 0 || idx >= BRAIN_PREFIX_MAX_NODES) {
        return;
    }
    brain_residency_request(d->r, chain, len, now_us * 1000);
    brain_residency_turn(d->r, chain, len, answer, now_us * 1000);
    d->learned = true;
    if (n < 2) {
        return; /* no turn end to name (residency.h) */
    }
    p = d->node[idx];
    if (!p) {
        p = d->node[idx] = calloc(1, sizeof *p);
        if (!p) {
            return;
        }
    }
    remember(p, chain[n - 1], mcos_residency_class(answer));
}

static int
reuse_cmp(const void *a, const void *b)
{
    uint64_t x = ((const struct brain_reuse *)a)->object;
    uint64_t y = ((const struct brain_reuse *)b)->object;

    return (x > y) - (x < y);
}

/* The node's reuse rules: its turns not in the default class. */
static void
publish_node(struct residency *d, struct node_turns *p)
{
    p->n_out = 0;
    for (size_t i = 0; i < p->n; i++) {
        const struct brain_reuse *v =
            &p->ring[(p->head + i) % MCOS_TABLE_MAX_REUSE];

        if (v->cls != d->pub_default) {
            p->out[p->n_out++] = *v;
        }
    }
    qsort(p->out, p->n_out, sizeof *p->out, reuse_cmp);
}

/* Publishes the learner's table when it moved enough; true if it did. */
static bool
maybe_publish(struct residency *d)
{
    struct mcos_residency_table t;
    uint64_t most = 0;
    uint32_t def = 0;
    bool moved = !d->have_pub;

    brain_residency_table(d->r, &t);
    for (unsigned c = 0; c < MCOS_RESIDENCY_CLASSES; c++) {
        uint64_t turns, cont[MCOS_RESIDENCY_AGES];

        brain_residency_counts(d->r, c, &turns, cont);
        if (turns > most) {
            most = turns;
            def = c;
        }
        for (unsigned a = 0; a < MCOS_RESIDENCY_AGES && !moved; a++) {
            int diff = (int)t.score[c][a] - (int)d->pub.score[c][a];

            moved = diff >= REPUBLISH_STEP || diff <= -REPUBLISH_STEP;
        }
    }
    if (!moved && def == d->pub_default) {
        return false;
    }
    d->pub = t;
    d->pub_default = def;
    d->have_pub = true;
    return true;
}

static int
residency_run(struct brain_engine_node *en, bool recompute, void *arg)
{
    struct residency *d = en->data;
    bool all = false;

    (void)arg;
    if (d->learned) {
        d->learned = false;
        all = maybe_publish(d);
    }
    if (all) {
        brain_nodeset_add_all(&en->changed);
    }
    for (size_t i = 0; i < BRAIN_PREFIX_MAX_NODES; i++) {
        struct node_turns *p = d->node[i];

        if (p && (p->dirty || all)) {
            publish_node(d, p);
        }
        if (p && (p->dirty || recompute)) {
            p->dirty = false;
            brain_nodeset_add(&en->changed, (uint16_t)i);
        }
    }
    if (recompute && d->have_pub) {
        brain_nodeset_add_all(&en->changed);
    }
    return 0;
}

void
brain_en_residency_decisions(const void *data, uint16_t idx,
                             struct brain_node_decisions *dec)
{
    const struct residency *d = data;
    const struct node_turns *p =
        idx < BRAIN_PREFIX_MAX_NODES ? d->node[idx] : NULL;

    if (!d->have_pub) {
        return;
    }
    dec->residency = &d->pub;
    dec->default_class = d->pub_default;
    if (p) {
        dec->reuse = p->out;
        dec->n_reuse = p->n_out;
    }
}

const struct brain_en_class brain_en_residency = {
    "en_residency", true, residency_run, residency_create, residency_destroy,
};
