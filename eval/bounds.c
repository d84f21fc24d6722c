/*
 * bounds: the infinite global cache and Belady's MIN (see bounds.h).
 *
 * MIN runs in O(A log A) for A block accesses: next uses are found in a
 * backward pass, and the cache is a hash map from block id to its next
 * use plus a max-heap of (next use, id) with lazy deletion -- an entry
 * is stale when the map no longer gives the block that next use.
 */
#include "bounds.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "u64map.h"

#define NEVER UINT32_MAX

int
bounds_infinite(const struct trace *t, struct bounds_result *out)
{
    struct u64map seen;

    memset(out, 0, sizeof *out);
    if (u64map_init(&seen, t->stats.blocks ? t->stats.blocks : 16)) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < t->n; i++) {
        const struct trace_request *r = &t->req[i];
        uint32_t k = 0;

        while (k < r->n_blocks && u64map_get(&seen, r->blocks[k], NULL)) {
            k++;
        }
        out->requests++;
        out->input_tokens += r->input_tokens;
        out->hit_tokens += trace_prefix_tokens(r, k, t->block_tokens);
        out->hit_blocks += k;
        out->blocks += r->n_blocks;
        for (uint32_t j = k; j < r->n_blocks; j++) {
            if (u64map_put(&seen, r->blocks[j], 0)) {
                u64map_free(&seen);
                return -ENOMEM;
            }
        }
    }
    u64map_free(&seen);
    return 0;
}

/* A max-heap entry: a block and the next use it was pushed with. */
struct hent {
    uint32_t next; /* next use (access index), NEVER for none */
    uint64_t hash; /* block id */
};

struct heap {
    struct hent *v; /* entries */
    size_t n;       /* how many */
};

static void
heap_push(struct heap *h, struct hent e)
{
    size_t i = h->n++;

    while (i > 0 && h->v[(i - 1) / 2].next < e.next) {
        h->v[i] = h->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->v[i] = e;
}

static void
heap_pop(struct heap *h)
{
    struct hent last = h->v[--h->n];
    size_t i = 0;

    for (;;) {
        size_t c = 2 * i + 1;

        if (c >= h->n) {
            break;
        }
        if (c + 1 < h->n && h->v[c + 1].next > h->v[c].next) {
            c++;
        }
        if (h->v[c].next <= last.next) {
            break;
        }
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n) {
        h->v[i] = last;
    }
}

int
bounds_belady(const struct trace *t, const uint32_t *ids, size_t n,
              uint64_t capacity, struct bounds_result *out)
{
    struct u64map last = {0}, cache = {0};
    struct heap heap = {0};
    uint32_t *next = NULL;
    size_t total = 0, a;
    int rc = -ENOMEM;

    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= t->n) {
            return -EINVAL;
        }
        total += t->req[ids[i]].n_blocks;
    }
    if (total >= NEVER) {
        return -EINVAL;
    }
    next = malloc((total ? total : 1) * sizeof *next);
    heap.v = malloc((total ? total : 1) * sizeof *heap.v);
    if (!next || !heap.v || u64map_init(&last, 1024) ||
        u64map_init(&cache, capacity < total ? capacity : total)) {
        goto out;
    }

    /* Backward pass: the next access of the same block, per access. */
    a = total;
    for (size_t i = n; i-- > 0;) {
        const struct trace_request *r = &t->req[ids[i]];

        for (uint32_t j = r->n_blocks; j-- > 0;) {
            uint32_t nx;

            a--;
            next[a] = u64map_get(&last, r->blocks[j], &nx) ? nx : NEVER;
            if (u64map_put(&last, r->blocks[j], (uint32_t)a)) {
                goto out;
            }
        }
    }
    u64map_free(&last);

    a = 0;
    for (size_t i = 0; i < n; i++) {
        const struct trace_request *r = &t->req[ids[i]];
        bool prefix = true;

        out->requests++;
        out->input_tokens += r->input_tokens;
        out->blocks += r->n_blocks;
        for (uint32_t j = 0; j < r->n_blocks; j++, a++) {
            uint64_t h = r->blocks[j];
            bool hit = u64map_get(&cache, h, NULL);

            if (hit && prefix) {
                out->hit_blocks++;
                out->hit_tokens += trace_block_tokens(r, j, t->block_tokens);
            } else {
                prefix = false;
            }
            if (!hit && capacity == 0) {
                continue;
            }
            if (!hit && cache.count >= capacity) {
                /* Drop stale heap entries, then compare with the block
                 * needed furthest in the future. */
                uint32_t cur;

                while (heap.n && (!u64map_get(&cache, heap.v[0].hash, &cur) ||
                                  cur != heap.v[0].next)) {
                    heap_pop(&heap);
                }
                if (!heap.n || heap.v[0].next <= next[a]) {
                    continue; /* bypass: keep what is needed sooner */
                }
                u64map_del(&cache, heap.v[0].hash);
                heap_pop(&heap);
            }
            if (u64map_put(&cache, h, next[a])) {
                goto out;
            }
            heap_push(&heap, (struct hent){next[a], h});
        }
    }
    rc = 0;
out:
    u64map_free(&last);
    u64map_free(&cache);
    free(heap.v);
    free(next);
    return rc;
}

int
bounds_belady_sim(const struct sim *s, struct bounds_result *out)
{
    const struct sim_params *p = sim_params(s);
    uint64_t cap = 0;

    memset(out, 0, sizeof *out);
    for (int t = 0; t < SIM_TIERS; t++) {
        cap += p->capacity[t];
    }
    for (uint32_t n = 0; n < p->nodes; n++) {
        const uint32_t *ids;
        size_t k = sim_served(s, n, &ids);
        int rc = bounds_belady(sim_trace(s), ids, k, cap, out);

        if (rc) {
            return rc;
        }
    }
    return 0;
}
