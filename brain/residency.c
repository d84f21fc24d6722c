/* Residency: see residency.h. */
#include "residency.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ids.h"

/* Slots probed for one hash. */
#define WINDOW 8

/* One tracked block. */
struct slot {
    uint64_t hash; /* block hash; 0: empty */
    uint64_t t_ns; /* when a turn last named it */
    uint8_t cls;   /* that turn's class */
    uint8_t tail;  /* 1: the last block of that turn, not yet continued */
};

struct brain_residency {
    struct slot *s;                         /* the table */
    uint64_t mask;                          /* slots - 1 */
    uint64_t age_unit_ns;                   /* age bucket 0's width */
    uint32_t decay_turns;                   /* halve after this many turns */
    uint32_t since_decay;                   /* turns since the last halving */
    uint64_t turns[MCOS_RESIDENCY_CLASSES]; /* turns per class */
    uint64_t cont[MCOS_RESIDENCY_CLASSES][MCOS_RESIDENCY_AGES]; /* continued,
                                                       by pause */
};

int
brain_residency_create(const struct brain_residency_options *o,
                       struct brain_residency **out)
{
    struct brain_residency *r;
    uint64_t want = o && o->max_blocks ? o->max_blocks : 1u << 20;
    uint64_t n = WINDOW;

    if (want > 1u << 28) {
        return -EINVAL;
    }
    while (n < want) {
        n <<= 1;
    }
    r = calloc(1, sizeof *r);
    if (!r) {
        return -ENOMEM;
    }
    r->s = calloc(n, sizeof *r->s);
    if (!r->s) {
        free(r);
        return -ENOMEM;
    }
    r->mask = n - 1;
    r->age_unit_ns = o && o->age_unit_ns ? o->age_unit_ns : 10000000000ULL;
    r->decay_turns = o && o->decay_turns ? o->decay_turns : 65536;
    *out = r;
    return 0;
}

void
brain_residency_destroy(struct brain_residency *r)
{
    if (r) {
        free(r->s);
        free(r);
    }
}

static struct slot *
find(const struct brain_residency *r, uint64_t hash)
{
    uint64_t i = mcos_mix64(hash);

    for (int k = 0; k < WINDOW; k++) {
        struct slot *s = &r->s[(i + (uint64_t)k) & r->mask];

        if (s->hash == hash) {
            return s;
        }
    }
    return NULL;
}

/* The slot of `hash`, claimed if need be: an empty one in its window, else
 * the one that changed longest ago (forgotten). */
static struct slot *
claim(struct brain_residency *r, uint64_t hash)
{
    uint64_t i = mcos_mix64(hash);
    struct slot *old = NULL;

    for (int k = 0; k < WINDOW; k++) {
        struct slot *s = &r->s[(i + (uint64_t)k) & r->mask];

        if (s->hash == hash) {
            return s;
        }
        if (!old || (old->hash && (!s->hash || s->t_ns < old->t_ns))) {
            old = s;
        }
    }
    memset(old, 0, sizeof *old);
    old->hash = hash;
    return old;
}

int
brain_residency_request(struct brain_residency *r, const uint64_t *chain,
                        uint32_t n, uint64_t now_ns)
{
    for (uint32_t j = n; j-- > 1;) {
        struct slot *s = find(r, chain[j]);

        if (s && s->tail) {
            uint64_t pause = now_ns > s->t_ns ? now_ns - s->t_ns : 0;

            r->cont[s->cls][mcos_residency_age(r->age_unit_ns, pause)]++;
            s->tail = 0;
            return 1;
        }
    }
    return 0;
}

static void
decay(struct brain_residency *r)
{
    for (int c = 0; c < MCOS_RESIDENCY_CLASSES; c++) {
        r->turns[c] /= 2;
        for (int a = 0; a < MCOS_RESIDENCY_AGES; a++) {
            r->cont[c][a] /= 2;
        }
    }
    r->since_decay = 0;
}

int
brain_residency_turn(struct brain_residency *r, const uint64_t *chain,
                     uint32_t n, uint32_t answer_tokens, uint64_t now_ns)
{
    unsigned c = mcos_residency_class(answer_tokens);

    if (n == 0) {
        return -EINVAL;
    }
    for (uint32_t j = 0; j < n; j++) {
        struct slot *s = claim(r, chain[j]);

        s->t_ns = now_ns;
        s->cls = (uint8_t)c;
        s->tail = 0;
    }
    if (n >= 2) {
        struct slot *s = find(r, chain[n - 1]);

        /* find() cannot miss: the loop above just claimed it. */
        s->tail = 1;
        r->turns[c]++;
        if (++r->since_decay >= r->decay_turns) {
            decay(r);
        }
    }
    return 0;
}

int
brain_residency_class_of(const struct brain_residency *r, uint64_t hash)
{
    const struct slot *s = find(r, hash);

    return s ? s->cls : -ENOENT;
}

void
brain_residency_counts(const struct brain_residency *r, unsigned c,
                       uint64_t *turns,
                       uint64_t continued[MCOS_RESIDENCY_AGES])
{
    *turns = r->turns[c];
    memcpy(continued, r->cont[c], sizeof r->cont[c]);
}

void
brain_residency_table(const struct brain_residency *r,
                      struct mcos_residency_table *out)
{
    out->age_unit_ns = r->age_unit_ns;
    for (int c = 0; c < MCOS_RESIDENCY_CLASSES; c++) {
        uint64_t before = 0, after = 0;

        for (int a = 0; a < MCOS_RESIDENCY_AGES; a++) {
            after += r->cont[c][a];
        }
        for (int a = 0; a < MCOS_RESIDENCY_AGES; a++) {
            uint64_t left = r->turns[c] > before ? r->turns[c] - before : 0;
            double p;

            if (left < after) {
                left = after;
            }
            p = ((double)after + 0.5) / ((double)left + 1.0);
            out->score[c][a] = (uint16_t)(p * 65535.0 + 0.5);
            before += r->cont[c][a];
            after -= r->cont[c][a];
        }
    }
}
