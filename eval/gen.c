/*
 * gen: the synthetic workload generator.  An event loop over session
 * arrivals and session turns, in time order, writing one JSONL line per
 * turn until enough requests are written.
 */
#include "gen.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "rng.h"
#include "trace.h"

void
gen_params_default(struct gen_params *p)
{
    memset(p, 0, sizeof *p);
    p->seed = 1;
    p->requests = 12000;
    p->block_tokens = 512;
    p->session_rate = 1.0;
    p->turns_mean = 4.0;
    p->think_ms = 60000.0;
    p->system_prompts = 64;
    p->zipf_s = 1.1;
    p->system_blocks_min = 2;
    p->system_blocks_max = 16;
    p->user_min = 64;
    p->user_max = 4096;
    p->output_min = 16;
    p->output_max = 1024;
    p->max_input = 131072;
    p->burst_every_ms = 300000;
    p->burst_ms = 30000;
    p->burst_factor = 4.0;
}

int
gen_params_validate(const struct gen_params *p, char *err, size_t errlen)
{
#define BAD(...)                                                              \
    do {                                                                      \
        mcos_seterr(err, errlen, __VA_ARGS__);                                \
        return -EINVAL;                                                       \
    } while (0)
    if (p->requests < 1 || p->requests > 100000000) {
        BAD("gen: requests must be in 1..100000000, got %" PRIu64,
            p->requests);
    }
    if (p->block_tokens < 1 || p->block_tokens > 1u << 20) {
        BAD("gen: block_tokens must be in 1..1048576, got %u",
            p->block_tokens);
    }
    if (!(p->session_rate > 0) || !isfinite(p->session_rate)) {
        BAD("gen: session_rate must be a positive number");
    }
    if (!(p->turns_mean >= 1) || !isfinite(p->turns_mean)) {
        BAD("gen: turns_mean must be at least 1");
    }
    if (!(p->think_ms >= 0) || !isfinite(p->think_ms)) {
        BAD("gen: think_ms must be a non-negative number");
    }
    if (p->system_prompts < 1 || p->system_prompts > 1000000) {
        BAD("gen: system_prompts must be in 1..1000000, got %u",
            p->system_prompts);
    }
    if (!(p->zipf_s >= 0) || !isfinite(p->zipf_s)) {
        BAD("gen: zipf_s must be a non-negative number");
    }
    if (p->system_blocks_min < 1 ||
        p->system_blocks_max < p->system_blocks_min ||
        p->system_blocks_max > 4096) {
        BAD("gen: system prompt blocks must satisfy 1 <= min <= max <= "
            "4096, got %u..%u",
            p->system_blocks_min, p->system_blocks_max);
    }
    if (p->user_min < 1 || p->user_max < p->user_min ||
        p->user_max > TRACE_MAX_TOKENS) {
        BAD("gen: user tokens must satisfy 1 <= min <= max <= %u, got "
            "%u..%u",
            TRACE_MAX_TOKENS, p->user_min, p->user_max);
    }
    if (p->output_max < p->output_min || p->output_max > TRACE_MAX_TOKENS) {
        BAD("gen: output tokens must satisfy min <= max <= %u, got %u..%u",
            TRACE_MAX_TOKENS, p->output_min, p->output_max);
    }
    if (p->max_input > TRACE_MAX_TOKENS ||
        p->max_input <
            (uint64_t)p->system_blocks_max * p->block_tokens + p->user_max) {
        BAD("gen: max_input must hold the longest system prompt plus the "
            "longest user message (%" PRIu64 " tokens) and be at most %u, "
            "got %u",
            (uint64_t)p->system_blocks_max * p->block_tokens + p->user_max,
            TRACE_MAX_TOKENS, p->max_input);
    }
    if (p->burst_every_ms &&
        (p->burst_ms > p->burst_every_ms || !(p->burst_factor > 0) ||
         !isfinite(p->burst_factor))) {
        BAD("gen: bursts need burst_ms <= burst_every_ms and a positive "
            "burst_factor");
    }
    return 0;
#undef BAD
}

/* One conversation in progress. */
struct session {
    uint64_t at_us;      /* when its next turn arrives */
    uint64_t seq;        /* creation order, breaks ties in time */
    uint32_t sys;        /* system prompt index */
    uint32_t turns_left; /* turns still to come, this one included */
    uint64_t history;    /* tokens after the system prompt so far */
    uint32_t prev_len;   /* previous prompt's length in tokens */
    uint64_t *ids;       /* previous prompt's block ids */
    uint32_t n_ids;      /* how many */
    uint32_t cap_ids;    /* capacity of ids */
};

/* A binary min-heap of sessions by (at_us, seq). */
struct heap {
    struct session **v; /* the heap array */
    size_t n;           /* sessions in it */
    size_t cap;         /* its capacity */
};

static bool
before(const struct session *a, const struct session *b)
{
    return a->at_us != b->at_us ? a->at_us < b->at_us : a->seq < b->seq;
}

static int
heap_push(struct heap *h, struct session *s)
{
    size_t i;

    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 256;
        struct session **v = realloc(h->v, cap * sizeof *v);

        if (!v) {
            return -ENOMEM;
        }
        h->v = v;
        h->cap = cap;
    }
    i = h->n++;
    while (i > 0 && before(s, h->v[(i - 1) / 2])) {
        h->v[i] = h->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->v[i] = s;
    return 0;
}

static struct session *
heap_pop(struct heap *h)
{
    struct session *top = h->v[0], *last = h->v[--h->n];
    size_t i = 0;

    for (;;) {
        size_t c = 2 * i + 1;

        if (c >= h->n) {
            break;
        }
        if (c + 1 < h->n && before(h->v[c + 1], h->v[c])) {
            c++;
        }
        if (!before(h->v[c], last)) {
            break;
        }
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n) {
        h->v[i] = last;
    }
    return top;
}

static void
session_free(struct session *s)
{
    if (s) {
        free(s->ids);
        free(s);
    }
}

/* Geometric number of turns >= 1 with the given mean. */
static uint32_t
draw_turns(struct rng *r, double mean)
{
    double p = 1.0 / mean;
    uint32_t t = 1;

    while (t < 100000 && rng_uniform(r) >= p) {
        t++;
    }
    return t;
}

/* Index into the Zipf CDF by binary search. */
static uint32_t
draw_zipf(struct rng *r, const double *cdf, uint32_t n)
{
    double u = rng_uniform(r) * cdf[n - 1];
    uint32_t lo = 0, hi = n - 1;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;

        if (cdf[mid] > u) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return lo;
}

/* Gap to the next session arrival from time t (rate depends on whether
 * t falls in a burst). */
static uint64_t
next_gap_us(const struct gen_params *p, struct rng *r, uint64_t t_us)
{
    double rate = p->session_rate;

    if (p->burst_every_ms && (t_us / 1000) % p->burst_every_ms < p->burst_ms) {
        rate *= p->burst_factor;
    }
    return (uint64_t)llround(rng_exp(r, 1e6 / rate));
}

/* Writes one turn of `s` at its time, then updates the session. */
static int
write_turn(const struct gen_params *p, struct rng *r, FILE *out,
           struct session *s, const uint32_t *sys_blocks, uint64_t *next_id)
{
    uint32_t bt = p->block_tokens;
    uint64_t sys_tokens = (uint64_t)sys_blocks[s->sys] * bt;
    uint32_t user = (uint32_t)rng_range(r, p->user_min, p->user_max);
    uint32_t answer = (uint32_t)rng_range(r, p->output_min, p->output_max);
    uint64_t len = sys_tokens + s->history + user;
    uint32_t n, keep;

    if (len > p->max_input) {
        s->turns_left = 0;
        return 0;
    }
    n = (uint32_t)((len + bt - 1) / bt);
    /* Blocks that were full in the previous prompt are unchanged. */
    keep = s->prev_len / bt;
    if (keep > s->n_ids) {
        keep = s->n_ids;
    }
    if (n > s->cap_ids) {
        uint32_t cap = s->cap_ids ? s->cap_ids : 16;
        uint64_t *ids;

        while (cap < n) {
            cap *= 2;
        }
        ids = realloc(s->ids, cap * sizeof *ids);
        if (!ids) {
            return -ENOMEM;
        }
        s->ids = ids;
        s->cap_ids = cap;
    }
    for (uint32_t i = keep; i < n; i++) {
        s->ids[i] = (*next_id)++;
    }
    s->n_ids = n;
    fprintf(out,
            "{\"timestamp\": %" PRIu64 ", \"input_length\": %" PRIu64
            ", \"output_length\": %u, \"hash_ids\": [",
            s->at_us / 1000, len, answer);
    for (uint32_t i = 0; i < n; i++) {
        fprintf(out, i ? ", %" PRIu64 : "%" PRIu64, s->ids[i]);
    }
    fputs("]}\n", out);
    s->history += user + answer;
    s->prev_len = (uint32_t)len;
    s->turns_left--;
    return 1;
}

int
gen_write(const struct gen_params *p, FILE *out, uint64_t *written, char *err,
          size_t errlen)
{
    struct rng rng;
    struct heap heap = {0};
    uint32_t *sys_blocks = NULL;
    uint64_t **sys_ids = NULL;
    double *cdf = NULL;
    uint64_t next_id = 0, next_session_us = 0, seq = 0, done = 0;
    int rc;

    if (written) {
        *written = 0;
    }
    rc = gen_params_validate(p, err, errlen);
    if (rc) {
        return rc;
    }
    rng_seed(&rng, p->seed);
    sys_blocks = calloc(p->system_prompts, sizeof *sys_blocks);
    sys_ids = calloc(p->system_prompts, sizeof *sys_ids);
    cdf = calloc(p->system_prompts, sizeof *cdf);
    if (!sys_blocks || !sys_ids || !cdf) {
        rc = -ENOMEM;
        goto out;
    }
    for (uint32_t k = 0; k < p->system_prompts; k++) {
        sys_blocks[k] = (uint32_t)rng_range(&rng, p->system_blocks_min,
                                            p->system_blocks_max);
        sys_ids[k] = malloc(sys_blocks[k] * sizeof **sys_ids);
        if (!sys_ids[k]) {
            rc = -ENOMEM;
            goto out;
        }
        for (uint32_t i = 0; i < sys_blocks[k]; i++) {
            sys_ids[k][i] = next_id++;
        }
        cdf[k] = (k ? cdf[k - 1] : 0.0) + pow((double)(k + 1), -p->zipf_s);
    }

    while (done < p->requests) {
        struct session *s;

        if (heap.n == 0 || next_session_us < heap.v[0]->at_us) {
            /* A new session arrives; its first turn is due at once. */
            s = calloc(1, sizeof *s);
            if (!s) {
                rc = -ENOMEM;
                goto out;
            }
            s->at_us = next_session_us;
            s->seq = seq++;
            s->sys = draw_zipf(&rng, cdf, p->system_prompts);
            s->turns_left = draw_turns(&rng, p->turns_mean);
            s->n_ids = s->cap_ids = sys_blocks[s->sys];
            s->prev_len = sys_blocks[s->sys] * p->block_tokens;
            s->ids = malloc(s->cap_ids * sizeof *s->ids);
            if (!s->ids) {
                session_free(s);
                rc = -ENOMEM;
                goto out;
            }
            memcpy(s->ids, sys_ids[s->sys], s->n_ids * sizeof *s->ids);
            next_session_us += next_gap_us(p, &rng, next_session_us);
        } else {
            s = heap_pop(&heap);
        }
        rc = write_turn(p, &rng, out, s, sys_blocks, &next_id);
        if (rc < 0) {
            session_free(s);
            goto out;
        }
        done += (uint64_t)rc;
        if (s->turns_left == 0) {
            session_free(s);
            continue;
        }
        s->at_us += (uint64_t)llround(rng_exp(&rng, p->think_ms * 1000.0));
        rc = heap_push(&heap, s);
        if (rc) {
            session_free(s);
            goto out;
        }
    }
    rc = fflush(out) || ferror(out) ? -EIO : 0;
    if (rc) {
        mcos_seterr(err, errlen, "gen: write error: %s", strerror(errno));
    }
out:
    if (rc == -ENOMEM) {
        mcos_seterr(err, errlen, "gen: out of memory");
    }
    if (written) {
        *written = done;
    }
    while (heap.n) {
        session_free(heap_pop(&heap));
    }
    free(heap.v);
    if (sys_ids) {
        for (uint32_t k = 0; k < p->system_prompts; k++) {
            free(sys_ids[k]);
        }
    }
    free(sys_ids);
    free(sys_blocks);
    free(cdf);
    return rc;
}
