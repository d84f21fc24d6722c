/*
 * en_prefetch (decide): prefetch rules from learned access pairs.  Inputs:
 * en_access (pairs per node), en_members (which nodes are up), en_policy
 * (the prefetch knobs).
 *
 * For each object a node accessed, the objects that followed it at least
 * prefetch.min_support times (up to BRAIN_PREFETCH_FANOUT, most frequent
 * first) become one rule: trigger -> objects, into DRAM (the tier an
 * agent serves reads from; an object in HBM or NVMe is fetched into DRAM
 * on a get), within prefetch.deadline_ms.  A node gets at most
 * prefetch.max_rules rules, the best supported (the count of the most
 * frequent follower, then the trigger id) kept.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "en.h"

#define BRAIN_PREFETCH_FANOUT 4

struct rule {
    struct brain_prefetch p;              /* as compiled */
    uint64_t objs[BRAIN_PREFETCH_FANOUT]; /* p.objects points here */
    uint32_t support;                     /* best follower's count */
};

struct node_rules {
    struct rule *v;              /* sorted by trigger */
    struct brain_prefetch *view; /* v's p, contiguous, for compile */
    size_t n;                    /* how many */
};

struct prefetch {
    struct node_rules node[BRAIN_PREFIX_MAX_NODES]; /* by idx */
};

static int
prefetch_create(void **out)
{
    *out = calloc(1, sizeof(struct prefetch));
    return *out ? 0 : -ENOMEM;
}

static void
prefetch_destroy(void *data)
{
    struct prefetch *d = data;

    if (!d) {
        return;
    }
    for (size_t i = 0; i < BRAIN_PREFIX_MAX_NODES; i++) {
        free(d->node[i].v);
        free(d->node[i].view);
    }
    free(d);
}

static int
pair_cmp(const void *a, const void *b)
{
    const struct brain_access_pair *x = a, *y = b;

    if (x->from != y->from) {
        return x->from < y->from ? -1 : 1;
    }
    if (x->count != y->count) {
        return x->count > y->count ? -1 : 1;
    }
    return x->to < y->to ? -1 : x->to > y->to;
}

static int
support_cmp(const void *a, const void *b)
{
    const struct rule *x = a, *y = b;

    if (x->support != y->support) {
        return x->support > y->support ? -1 : 1;
    }
    return x->p.trigger < y->p.trigger ? -1 : x->p.trigger > y->p.trigger;
}

static int
trigger_cmp(const void *a, const void *b)
{
    const struct rule *x = a, *y = b;

    return x->p.trigger < y->p.trigger ? -1 : x->p.trigger > y->p.trigger;
}

static bool
same_rules(const struct node_rules *a, const struct rule *v, size_t n)
{
    if (a->n != n) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        const struct brain_prefetch *x = &a->v[i].p, *y = &v[i].p;

        if (x->trigger != y->trigger || x->n_objects != y->n_objects ||
            x->tier != y->tier || x->deadline_ms != y->deadline_ms ||
            memcmp(a->v[i].objs, v[i].objs,
                   x->n_objects * sizeof a->v[i].objs[0])) {
            return false;
        }
    }
    return true;
}

/* The rules of one node from its pairs, into *out (malloc'd). */
static int
derive(const struct brain_en_ctx *ctx, const struct brain_node *node,
       void *access, struct rule **out, size_t *n_out)
{
    const struct brain_place_config *pc = ctx->g->place;
    const struct brain_access_pair *raw;
    size_t n = brain_en_access_pairs(access, node->idx, &raw), nr = 0;
    struct brain_access_pair *p;
    struct rule *v;

    *out = NULL;
    *n_out = 0;
    if (n == 0 || !brain_en_node_up(node) || pc->prefetch_max_rules == 0) {
        return 0;
    }
    p = malloc(n * sizeof *p);
    v = calloc(n, sizeof *v);
    if (!p || !v) {
        free(p);
        free(v);
        return -ENOMEM;
    }
    memcpy(p, raw, n * sizeof *p);
    qsort(p, n, sizeof *p, pair_cmp);
    for (size_t i = 0; i < n;) {
        struct rule *r = &v[nr];
        size_t j = i;

        memset(r, 0, sizeof *r);
        for (; j < n && p[j].from == p[i].from; j++) {
            if (p[j].count >= pc->prefetch_min_support &&
                r->p.n_objects < BRAIN_PREFETCH_FANOUT) {
                r->objs[r->p.n_objects++] = p[j].to;
                if (p[j].count > r->support) {
                    r->support = p[j].count;
                }
            }
        }
        if (r->p.n_objects) {
            r->p.trigger = p[i].from;
            r->p.tier = MCOS__TIER_KIND__TIER_DRAM;
            r->p.deadline_ms = pc->prefetch_deadline_ms;
            nr++;
        }
        i = j;
    }
    free(p);
    if (nr > pc->prefetch_max_rules) {
        qsort(v, nr, sizeof *v, support_cmp);
        nr = pc->prefetch_max_rules;
    }
    qsort(v, nr, sizeof *v, trigger_cmp);
    *out = v;
    *n_out = nr;
    return 0;
}

static int
decide_node(struct prefetch *d, const struct brain_en_ctx *ctx,
            const struct brain_node *node, void *access,
            struct brain_nodeset *changed)
{
    struct node_rules *nr = &d->node[node->idx];
    struct brain_prefetch *view = NULL;
    struct rule *v;
    size_t n;
    int r = derive(ctx, node, access, &v, &n);

    if (r) {
        return r;
    }
    if (same_rules(nr, v, n)) {
        free(v);
        return 0;
    }
    if (n && !(view = calloc(n, sizeof *view))) {
        free(v);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        view[i] = v[i].p;
        view[i].objects = v[i].objs;
    }
    free(nr->v);
    free(nr->view);
    nr->v = v;
    nr->view = view;
    nr->n = n;
    brain_nodeset_add(changed, node->idx);
    return 0;
}

static int
prefetch_run(struct brain_engine_node *en, bool recompute, void *arg)
{
    struct brain_en_ctx *ctx = arg;
    const struct brain_cluster *c = ctx->g->cluster;
    struct brain_engine_node *access = brain_en_input(en, "en_access");
    struct brain_nodeset dirty;

    brain_engine_inputs_changed_set(en, &dirty);
    for (size_t i = 0; i < c->n; i++) {
        const struct brain_node *n = c->nodes[i];

        if ((recompute || brain_nodeset_has(&dirty, n->idx)) &&
            decide_node(en->data, ctx, n, access->data, &en->changed)) {
            snprintf(ctx->err, ctx->errlen, "en_prefetch: out of memory");
            return -ENOMEM;
        }
    }
    if (recompute) {
        brain_nodeset_add_all(&en->changed);
    }
    return 0;
}

void
brain_en_prefetch_decisions(const void *data, uint16_t idx,
                            struct brain_node_decisions *out)
{
    const struct prefetch *d = data;

    out->prefetch = d->node[idx].view;
    out->n_prefetch = d->node[idx].n;
}

const struct brain_en_class brain_en_prefetch = {
    "en_prefetch", false, prefetch_run, prefetch_create, prefetch_destroy,
};
