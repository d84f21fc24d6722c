/* Routed work not yet in a node's load reports.  See routed.h. */
#include "routed.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void
pop(struct brain_routed *r)
{
    r->blocks -= r->v[r->head].blocks;
    r->head = (r->head + 1) % r->cap;
    if (--r->n == 0) {
        /* Sums of doubles drift; an empty set is exactly empty. */
        r->blocks = 0;
        r->head = 0;
    }
}

static int
grow(struct brain_routed *r)
{
    size_t cap = r->cap ? 2 * r->cap : 16;
    struct brain_routed_route *v;

    if (cap > BRAIN_ROUTED_MAX) {
        cap = BRAIN_ROUTED_MAX;
    }
    v = malloc(cap * sizeof *v);
    if (!v) {
        return -ENOMEM;
    }
    /* Unwrap the ring into the new array, oldest first. */
    for (size_t i = 0; i < r->n; i++) {
        v[i] = r->v[(r->head + i) % r->cap];
    }
    free(r->v);
    r->v = v;
    r->cap = cap;
    r->head = 0;
    return 0;
}

int
brain_routed_add(struct brain_routed *r, uint64_t now_us, double blocks)
{
    if (r->n == r->cap) {
        if (r->cap < BRAIN_ROUTED_MAX) {
            int e = grow(r);

            if (e) {
                return e;
            }
        } else {
            pop(r);
            r->overflow++;
        }
    }
    r->v[(r->head + r->n) % r->cap] =
        (struct brain_routed_route){now_us, blocks};
    r->n++;
    r->blocks += blocks;
    return 0;
}

void
brain_routed_expire(struct brain_routed *r, uint64_t now_us, uint64_t hold_us)
{
    while (r->n && r->v[r->head].at_us + hold_us <= now_us) {
        pop(r);
    }
}

void
brain_routed_covered(struct brain_routed *r, uint64_t sampled_us,
                     uint64_t transit_us)
{
    if (sampled_us < transit_us) {
        return;
    }
    while (r->n && r->v[r->head].at_us <= sampled_us - transit_us) {
        pop(r);
    }
}

void
brain_routed_peek(const struct brain_routed *r, uint64_t now_us,
                  uint64_t hold_us, size_t *requests, double *blocks)
{
    size_t i = 0;
    double gone = 0;

    while (i < r->n &&
           r->v[(r->head + i) % r->cap].at_us + hold_us <= now_us) {
        gone += r->v[(r->head + i) % r->cap].blocks;
        i++;
    }
    *requests = r->n - i;
    *blocks = *requests ? r->blocks - gone : 0.0;
}

void
brain_routed_clear(struct brain_routed *r)
{
    r->head = r->n = 0;
    r->blocks = 0;
}

void
brain_routed_destroy(struct brain_routed *r)
{
    free(r->v);
    memset(r, 0, sizeof *r);
}
