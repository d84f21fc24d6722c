/*
 * Benchmark of brain/prefix_index against a naive baseline in the same run.
 *
 * Workload: request traces (Mooncake JSONL: hash_ids are per-trace ids of
 * 512-token prefix-chained blocks) turned into chained 64-bit hashes,
 * h_i = mix64(h_{i-1} ^ id_i), replayed through a small cluster model:
 * each request is a find_matches() lookup, routed to the best-matching
 * node (or a lightly loaded one), then an agent report of ACCESSED events
 * for the matched blocks, STORED(HBM) for the new ones, and the demotions
 * and evictions (HBM FIFO -> DRAM FIFO -> gone) that keep every node's
 * capacity.  The op stream is recorded once and then replayed, identical,
 * into this index and into the naive one; their answers are checksummed
 * and must agree.
 *
 * Phases: (1) mixed replay into an empty index (fits in CPU cache);
 * (2) synthetic fill to --blocks blocks over --nodes nodes; (3) mixed
 * replay on top of that; (4) lookup latency, per call, for the trace's
 * chains and for random cold filler chains; (5) the same for the naive
 * baseline; (6) a dependent random-load loop over a buffer the size of
 * the table, the memory latency floor.  Ratios are printed against the
 * baselines measured in this run; nothing here passes or fails on time.
 *
 * Without trace files it falls back to a synthetic generator (multi-turn
 * sessions sharing system-prompt prefixes, Zipf popularity) and says so.
 */
#include "prefix_index.h"

#include <errno.h>
#include <glob.h>
#include <inttypes.h>
#include <malloc.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_TRACE_GLOB "../shared/traces/mooncake/*.jsonl"
#define DEFAULT_CSV        "build/bench/bench_prefix_index.csv"
#define MAX_TRACES         16
#define MAX_REPORTED_BAD   10
#define TRACE_NS           0
#define FILL_NS            1
#define MAX_RES            256
#define REPLAYS_BIG        3
#define SHORT_WALK         32

/* ---------------------------------------------------------------------- */
/* small utilities                                                         */

static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t
mix64(uint64_t x)
{
    /* splitmix64's finalizer: the chain hash of the trace converter. */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

struct rng {
    uint64_t s; /* xorshift64* state, never 0 */
};

static uint64_t
rng_next(struct rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545f4914f6cdd1dull;
}

static double
rng_unit(struct rng *r)
{
    return (double)(rng_next(r) >> 11) / 9007199254740992.0;
}

static void *
xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, "bench_prefix_index: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return q;
}

static long
rss_bytes(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
        rss = 0;
    fclose(f);
    return rss * sysconf(_SC_PAGESIZE);
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

struct pct {
    double p50, p99, p999, max, mean; /* nanoseconds */
};

static struct pct
percentiles(uint64_t *v, size_t n)
{
    struct pct p = {0};
    double sum = 0;
    if (n == 0)
        return p;
    qsort(v, n, sizeof(*v), cmp_u64);
    for (size_t i = 0; i < n; i++)
        sum += (double)v[i];
    p.p50 = (double)v[n / 2];
    p.p99 = (double)v[(size_t)((double)n * 0.99)];
    p.p999 = (double)v[(size_t)((double)n * 0.999)];
    p.max = (double)v[n - 1];
    p.mean = sum / (double)n;
    return p;
}

/* ---------------------------------------------------------------------- */
/* traces                                                                  */

/* All requests of all sources, chains stored back to back. */
struct trace {
    uint64_t *hashes; /* chained block hashes */
    size_t nhashes;   /* used */
    size_t hcap;      /* allocated */
    size_t *off;      /* request i is hashes[off[i] .. off[i + 1]) */
    uint64_t *ts_us;  /* request i's timestamp */
    size_t nreq;      /* requests */
    size_t rcap;      /* allocated */
    size_t max_len;   /* longest chain */
    size_t bad_lines; /* malformed lines skipped */
    int files;        /* trace files read */
    bool synthetic;   /* generated, not read */
};

static void
trace_push_hash(struct trace *t, uint64_t h)
{
    if (t->nhashes == t->hcap) {
        t->hcap = t->hcap ? t->hcap * 2 : 1 << 16;
        t->hashes = xrealloc(t->hashes, t->hcap * sizeof(*t->hashes));
    }
    t->hashes[t->nhashes++] = h;
}

static void
trace_end_request(struct trace *t, size_t start, uint64_t ts_us)
{
    if (t->nreq + 2 > t->rcap) {
        t->rcap = t->rcap ? t->rcap * 2 : 1 << 12;
        t->off = xrealloc(t->off, t->rcap * sizeof(*t->off));
        t->ts_us = xrealloc(t->ts_us, t->rcap * sizeof(*t->ts_us));
    }
    t->off[t->nreq] = start;
    t->ts_us[t->nreq] = ts_us;
    t->nreq++;
    t->off[t->nreq] = t->nhashes;
    if (t->nhashes - start > t->max_len)
        t->max_len = t->nhashes - start;
}

/* A minimal JSON reader for one line: enough to skip what we ignore. */
struct jp {
    const char *p;   /* next character */
    const char *end; /* end of the line */
};

static void
jp_ws(struct jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\r'))
        j->p++;
}

static bool
jp_lit(struct jp *j, char c)
{
    jp_ws(j);
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return true;
    }
    return false;
}

/* A string, escapes skipped over, not decoded (keys are plain ASCII). */
static bool
jp_string(struct jp *j, const char **s, size_t *len)
{
    if (!jp_lit(j, '"'))
        return false;
    *s = j->p;
    while (j->p < j->end && *j->p != '"') {
        if (*j->p == '\\')
            j->p++;
        j->p++;
    }
    if (j->p >= j->end)
        return false;
    *len = (size_t)(j->p - *s);
    j->p++;
    return true;
}

static bool
jp_number(struct jp *j, double *out)
{
    char buf[64];
    size_t n = 0;
    jp_ws(j);
    while (j->p < j->end && n + 1 < sizeof(buf) &&
           strchr("+-0123456789.eE", *j->p))
        buf[n++] = *j->p++;
    buf[n] = '\0';
    if (n == 0)
        return false;
    char *e;
    *out = strtod(buf, &e);
    return *e == '\0';
}

static bool
jp_skip(struct jp *j, int depth)
{
    const char *s;
    size_t len;
    double d;

    if (depth > 32)
        return false;
    jp_ws(j);
    if (j->p >= j->end)
        return false;
    switch (*j->p) {
    case '"':
        return jp_string(j, &s, &len);
    case '[':
        j->p++;
        if (jp_lit(j, ']'))
            return true;
        do {
            if (!jp_skip(j, depth + 1))
                return false;
        } while (jp_lit(j, ','));
        return jp_lit(j, ']');
    case '{':
        j->p++;
        if (jp_lit(j, '}'))
            return true;
        do {
            if (!jp_string(j, &s, &len) || !jp_lit(j, ':') ||
                !jp_skip(j, depth + 1))
                return false;
        } while (jp_lit(j, ','));
        return jp_lit(j, '}');
    case 't':
    case 'f':
    case 'n': {
        static const char *const words[] = {"true", "false", "null"};
        for (int i = 0; i < 3; i++) {
            size_t wl = strlen(words[i]);
            if ((size_t)(j->end - j->p) >= wl &&
                memcmp(j->p, words[i], wl) == 0) {
                j->p += wl;
                return true;
            }
        }
        return false;
    }
    default:
        return jp_number(j, &d);
    }
}

/*
 * Parses one trace line into t (a new request).  On failure returns false
 * with *why set, and t is as before.
 */
static bool
parse_line(struct trace *t, const char *line, size_t len, uint64_t salt,
           uint64_t *last_ts, const char **why)
{
    struct jp j = {line, line + len};
    size_t start = t->nhashes;
    bool have_ids = false;
    double ts = (double)*last_ts / 1000.0;
    const char *k;
    size_t klen;

    *why = "expected an object";
    if (!jp_lit(&j, '{'))
        goto fail;
    if (!jp_lit(&j, '}')) {
        do {
            *why = "expected a key";
            if (!jp_string(&j, &k, &klen) || !jp_lit(&j, ':'))
                goto fail;
            if (klen == 8 && memcmp(k, "hash_ids", 8) == 0) {
                uint64_t h = salt;
                *why = "hash_ids must be an array of non-negative integers";
                if (have_ids || !jp_lit(&j, '['))
                    goto fail;
                have_ids = true;
                if (!jp_lit(&j, ']')) {
                    do {
                        double d;
                        if (!jp_number(&j, &d) || d < 0 || d != floor(d) ||
                            d > 9.0e15)
                            goto fail;
                        h = mix64(h ^ (uint64_t)d);
                        trace_push_hash(t, h);
                    } while (jp_lit(&j, ','));
                    if (!jp_lit(&j, ']'))
                        goto fail;
                }
            } else if (klen == 9 && memcmp(k, "timestamp", 9) == 0) {
                *why = "timestamp must be a non-negative number";
                if (!jp_number(&j, &ts) || ts < 0 || ts > 1e15)
                    goto fail;
            } else {
                *why = "bad value";
                if (!jp_skip(&j, 0))
                    goto fail;
            }
        } while (jp_lit(&j, ','));
        *why = "expected , or }";
        if (!jp_lit(&j, '}'))
            goto fail;
    }
    jp_ws(&j);
    *why = "trailing characters";
    if (j.p != j.end)
        goto fail;
    *why = "no hash_ids";
    if (!have_ids)
        goto fail;
    *why = "empty hash_ids";
    if (t->nhashes == start)
        goto fail;
    *last_ts = (uint64_t)(ts * 1000.0);
    trace_end_request(t, start, *last_ts);
    return true;
fail:
    t->nhashes = start;
    return false;
}

/* Reads one JSONL file; malformed lines are reported and skipped. */
static int
load_trace(struct trace *t, const char *path, int file_index, size_t cap)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, bad = 0, lineno = 0, nreq0 = t->nreq;
    uint64_t last_ts = 0;

    if (!f)
        return -errno;
    for (;;) {
        buf = xrealloc(buf, len + (1 << 20) + 1);
        size_t got = fread(buf + len, 1, 1 << 20, f);
        len += got;
        if (got == 0)
            break;
    }
    int err = ferror(f) ? -EIO : 0;
    fclose(f);
    if (err) {
        free(buf);
        return err;
    }
    buf[len] = '\0';
    /* Per-file salt: ids are per trace, so traces must not collide. */
    uint64_t salt = mix64(0x7472616365ull + (uint64_t)file_index);
    for (char *p = buf; p < buf + len && t->nreq - nreq0 < cap;) {
        char *nl = memchr(p, '\n', (size_t)(buf + len - p));
        char *e = nl ? nl : buf + len;
        const char *why;
        lineno++;
        const char *q = p;
        while (q < e && (*q == ' ' || *q == '\t' || *q == '\r'))
            q++;
        if (q < e &&
            !parse_line(t, p, (size_t)(e - p), salt, &last_ts, &why)) {
            if (bad < MAX_REPORTED_BAD)
                fprintf(stderr, "%s:%zu: malformed line skipped: %s\n", path,
                        lineno, why);
            bad++;
        }
        p = e + 1;
    }
    if (bad > MAX_REPORTED_BAD)
        fprintf(stderr, "%s: %zu malformed lines skipped in all\n", path, bad);
    t->bad_lines += bad;
    t->files++;
    free(buf);
    return 0;
}

/*
 * Fallback workload: multi-turn sessions over shared system prompts,
 * prompts and sessions drawn with Zipf popularity.
 */
static void
synth_trace(struct trace *t, size_t nreq, uint64_t seed)
{
    enum { NSYS = 64, NSESS = 4000, MAXTURN = 8 };
    struct rng r = {seed | 1};
    static uint64_t sys_id[NSYS][16];
    static int sys_len[NSYS];
    uint64_t next_id = 1;
    double zs[NSYS], zsess[NSESS], acc = 0;
    struct sess {
        uint64_t *ids; /* block ids of the chain so far */
        int len;       /* blocks so far */
        int turns;     /* turns left */
    } *ss = calloc(NSESS, sizeof(*ss));

    if (!ss) {
        fprintf(stderr, "bench_prefix_index: out of memory\n");
        exit(1);
    }
    for (int i = 0; i < NSYS; i++) {
        sys_len[i] = 2 + (int)(rng_next(&r) % 11);
        for (int b = 0; b < sys_len[i]; b++)
            sys_id[i][b] = next_id++;
        acc += 1.0 / pow(i + 1, 1.1);
        zs[i] = acc;
    }
    for (int i = 0; i < NSYS; i++)
        zs[i] /= acc;
    acc = 0;
    for (int i = 0; i < NSESS; i++) {
        acc += 1.0 / pow(i + 1, 0.8);
        zsess[i] = acc;
    }
    for (int i = 0; i < NSESS; i++)
        zsess[i] /= acc;
    for (size_t q = 0; q < nreq; q++) {
        double u = rng_unit(&r);
        int s = 0;
        while (s < NSESS - 1 && zsess[s] < u)
            s++;
        struct sess *x = &ss[s];
        if (x->turns == 0) {
            /* A new conversation in this session slot. */
            u = rng_unit(&r);
            int p = 0;
            while (p < NSYS - 1 && zs[p] < u)
                p++;
            x->ids = xrealloc(x->ids, (16 + MAXTURN * 24) * sizeof(*x->ids));
            memcpy(x->ids, sys_id[p], (size_t)sys_len[p] * sizeof(*x->ids));
            x->len = sys_len[p];
            x->turns = 1 + (int)(rng_next(&r) % MAXTURN);
        }
        int add = 1 + (int)(rng_next(&r) % 20);
        for (int b = 0; b < add; b++)
            x->ids[x->len++] = next_id++;
        x->turns--;
        size_t start = t->nhashes;
        uint64_t h = mix64(0x73796e7468ull);
        for (int b = 0; b < x->len; b++) {
            h = mix64(h ^ x->ids[b]);
            trace_push_hash(t, h);
        }
        trace_end_request(t, start, q * 100000ull);
        if (x->turns == 0)
            x->len = 0;
    }
    for (int i = 0; i < NSESS; i++)
        free(ss[i].ids);
    free(ss);
    t->synthetic = true;
}

/* ---------------------------------------------------------------------- */
/* the implementations under test, behind one small vtable                 */

struct impl {
    const char *name;
    void *ctx;
    int (*apply)(void *ctx, const struct brain_prefix_event *ev, size_t n,
                 uint64_t now_us);
    int (*find)(void *ctx, uint16_t ns, const uint64_t *chain, size_t n,
                struct brain_prefix_match *out, size_t cap);
};

static int
ours_apply(void *ctx, const struct brain_prefix_event *ev, size_t n,
           uint64_t now_us)
{
    return brain_prefix_index_apply(ctx, ev, n, now_us);
}

static int
ours_find(void *ctx, uint16_t ns, const uint64_t *chain, size_t n,
          struct brain_prefix_match *out, size_t cap)
{
    return brain_prefix_index_find_matches(ctx, ns, chain, n, out, cap);
}

/*
 * The naive baseline: what one writes first.  Chained hash table with a
 * malloc'ed entry per block and a malloc'ed holder array; find_matches
 * walks the chain once per candidate node, one probe per block.  Same
 * semantics as the index, so the answers can be compared.
 */
struct nv_entry {
    struct nv_entry *next;         /* bucket chain */
    uint64_t hash;                 /* block hash */
    uint64_t parent;               /* parent hash */
    uint64_t hot_us;               /* last hotness update */
    double hot;                    /* decayed access count */
    struct brain_prefix_holder *h; /* holders */
    uint32_t nh;                   /* holders used */
    uint32_t caph;                 /* holders allocated */
    uint16_t ns;                   /* namespace */
};

struct naive {
    struct nv_entry **b; /* buckets */
    size_t nb;           /* bucket count, a power of two */
    size_t n;            /* entries */
};

static size_t
nv_bucket(const struct naive *nv, uint16_t ns, uint64_t hash)
{
    return (size_t)(((hash ^ ((uint64_t)ns << 48)) * 0x9e3779b97f4a7c15ull) >>
                    (64 - __builtin_ctzll(nv->nb)));
}

static struct nv_entry *
nv_get(const struct naive *nv, uint16_t ns, uint64_t hash)
{
    for (struct nv_entry *e = nv->b[nv_bucket(nv, ns, hash)]; e; e = e->next)
        if (e->hash == hash && e->ns == ns)
            return e;
    return NULL;
}

static void
nv_grow(struct naive *nv)
{
    struct naive bigger = {calloc(nv->nb * 2, sizeof(void *)), nv->nb * 2,
                           nv->n};
    if (!bigger.b) {
        fprintf(stderr, "bench_prefix_index: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < nv->nb; i++) {
        struct nv_entry *e = nv->b[i], *next;
        for (; e; e = next) {
            next = e->next;
            size_t k = nv_bucket(&bigger, e->ns, e->hash);
            e->next = bigger.b[k];
            bigger.b[k] = e;
        }
    }
    free(nv->b);
    *nv = bigger;
}

static int
nv_store(struct naive *nv, const struct brain_prefix_event *ev)
{
    struct nv_entry *e = nv_get(nv, ev->ns, ev->hash);
    uint8_t bit = (uint8_t)BRAIN_PREFIX_TIER_BIT(ev->tier);
    if (!e) {
        if (nv->n >= nv->nb)
            nv_grow(nv);
        e = calloc(1, sizeof(*e));
        if (!e)
            exit(1);
        e->hash = ev->hash;
        e->ns = ev->ns;
        e->parent = ev->parent;
        size_t k = nv_bucket(nv, ev->ns, ev->hash);
        e->next = nv->b[k];
        nv->b[k] = e;
        nv->n++;
    }
    for (uint32_t i = 0; i < e->nh; i++) {
        if (e->h[i].node == ev->node) {
            if (e->h[i].tiers & bit)
                return 0;
            e->h[i].tiers |= bit;
            return 1;
        }
    }
    if (e->nh == e->caph) {
        e->caph = e->caph ? e->caph * 2 : 2;
        e->h = xrealloc(e->h, e->caph * sizeof(*e->h));
    }
    e->h[e->nh].node = ev->node;
    e->h[e->nh].tiers = bit;
    e->nh++;
    return 1;
}

static int
nv_remove(struct naive *nv, const struct brain_prefix_event *ev)
{
    size_t k = nv_bucket(nv, ev->ns, ev->hash);
    struct nv_entry **pp = &nv->b[k], *e;
    uint8_t bit = (uint8_t)BRAIN_PREFIX_TIER_BIT(ev->tier);

    for (; (e = *pp); pp = &e->next)
        if (e->hash == ev->hash && e->ns == ev->ns)
            break;
    if (!e)
        return 0;
    for (uint32_t i = 0; i < e->nh; i++) {
        if (e->h[i].node != ev->node)
            continue;
        if (!(e->h[i].tiers & bit))
            return 0;
        e->h[i].tiers &= (uint8_t)~bit;
        if (e->h[i].tiers == 0)
            e->h[i] = e->h[--e->nh];
        if (e->nh == 0) {
            *pp = e->next;
            free(e->h);
            free(e);
            nv->n--;
        }
        return 1;
    }
    return 0;
}

static int
naive_apply(void *ctx, const struct brain_prefix_event *ev, size_t n,
            uint64_t now_us)
{
    struct naive *nv = ctx;
    int changed = 0;
    for (size_t i = 0; i < n; i++) {
        switch (ev[i].type) {
        case BRAIN_PREFIX_EV_STORED:
            changed += nv_store(nv, &ev[i]);
            break;
        case BRAIN_PREFIX_EV_REMOVED:
            changed += nv_remove(nv, &ev[i]);
            break;
        default: {
            struct nv_entry *e = nv_get(nv, ev[i].ns, ev[i].hash);
            if (!e)
                break;
            if (now_us > e->hot_us)
                e->hot *= exp2(-(double)(now_us - e->hot_us) / 60e6);
            e->hot += 1;
            e->hot_us = now_us > e->hot_us ? now_us : e->hot_us;
            changed++;
        }
        }
    }
    return changed;
}

static int
match_cmp(const void *a, const void *b)
{
    const struct brain_prefix_match *x = a, *y = b;
    for (int t = BRAIN_PREFIX_TIER_MAX; t >= 1; t--)
        if (x->matched[t] != y->matched[t])
            return x->matched[t] > y->matched[t] ? -1 : 1;
    return (int)x->node - (int)y->node;
}

static int
naive_find(void *ctx, uint16_t ns, const uint64_t *chain, size_t n,
           struct brain_prefix_match *out, size_t cap)
{
    struct naive *nv = ctx;
    struct brain_prefix_match res[BRAIN_PREFIX_MAX_NODES];
    struct nv_entry *e0 = nv_get(nv, ns, chain[0]);
    size_t nres = 0;

    if (!e0)
        return 0;
    for (uint32_t j = 0; j < e0->nh; j++) {
        uint16_t node = e0->h[j].node;
        struct brain_prefix_match *r = &res[nres++];
        memset(r, 0, sizeof(*r));
        r->node = node;
        /* Per node, per tier: the obvious nested walk. */
        for (unsigned t = 1; t <= BRAIN_PREFIX_TIER_MAX; t++) {
            uint32_t len = 0;
            while (len < n) {
                struct nv_entry *e = nv_get(nv, ns, chain[len]);
                uint8_t tiers = 0;
                for (uint32_t k = 0; e && k < e->nh; k++)
                    if (e->h[k].node == node)
                        tiers = e->h[k].tiers;
                if ((tiers & ((1u << t) - 1)) == 0)
                    break;
                len++;
            }
            r->matched[t] = len;
        }
    }
    qsort(res, nres, sizeof(res[0]), match_cmp);
    memcpy(out, res, (nres < cap ? nres : cap) * sizeof(*out));
    return (int)nres;
}

static void
naive_free(struct naive *nv)
{
    for (size_t i = 0; i < nv->nb; i++) {
        struct nv_entry *e = nv->b[i], *next;
        for (; e; e = next) {
            next = e->next;
            free(e->h);
            free(e);
        }
    }
    free(nv->b);
}

/* ---------------------------------------------------------------------- */
/* the op stream: lookups and agent reports, recorded once                 */

struct op {
    uint32_t req;    /* LOOKUP: request index; EVENTS: the request's */
    uint32_t ev_off; /* EVENTS: first event */
    uint32_t ev_n;   /* EVENTS: count; 0 means this op is a LOOKUP */
};

struct stream {
    struct op *ops;                /* in order */
    size_t nops, opcap;            /* used, allocated */
    struct brain_prefix_event *ev; /* every batch, back to back */
    size_t nev, evcap;             /* used, allocated */
    size_t lookups, events;        /* op counts by kind */
};

static void
stream_op(struct stream *s, uint32_t req, uint32_t off, uint32_t n)
{
    if (s->nops == s->opcap) {
        s->opcap = s->opcap ? s->opcap * 2 : 1 << 14;
        s->ops = xrealloc(s->ops, s->opcap * sizeof(*s->ops));
    }
    s->ops[s->nops++] = (struct op){req, off, n};
    if (n == 0)
        s->lookups++;
    else
        s->events += n;
}

static void
stream_ev(struct stream *s, uint8_t type, uint16_t node, uint8_t tier,
          uint64_t hash, uint64_t parent)
{
    if (s->nev == s->evcap) {
        s->evcap = s->evcap ? s->evcap * 2 : 1 << 16;
        s->ev = xrealloc(s->ev, s->evcap * sizeof(*s->ev));
    }
    s->ev[s->nev++] = (struct brain_prefix_event){
        .hash = hash,
        .parent = parent,
        .ns = TRACE_NS,
        .node = node,
        .type = type,
        .tier = tier,
    };
}

/* A node's FIFO of block hashes in one tier: the eviction model. */
struct fifo {
    uint64_t *h; /* ring */
    size_t cap;  /* ring size, a power of two */
    size_t head; /* next to pop */
    size_t n;    /* queued */
};

static void
fifo_push(struct fifo *f, uint64_t h)
{
    if (f->n == f->cap) {
        size_t ncap = f->cap ? f->cap * 2 : 64;
        uint64_t *nh = xrealloc(NULL, ncap * sizeof(*nh));
        for (size_t i = 0; i < f->n; i++)
            nh[i] = f->h[(f->head + i) & (f->cap - 1)];
        free(f->h);
        f->h = nh;
        f->cap = ncap;
        f->head = 0;
    }
    f->h[(f->head + f->n) & (f->cap - 1)] = h;
    f->n++;
}

static uint64_t
fifo_pop(struct fifo *f)
{
    uint64_t h = f->h[f->head];
    f->head = (f->head + 1) & (f->cap - 1);
    f->n--;
    return h;
}

/*
 * Runs the cluster model once against a scratch index and records what
 * it did.  Routing: the best-matching node when it holds at least half
 * of the chain, else the less loaded of two hashed candidates.
 */
static void
record_stream(const struct trace *t, int nodes, size_t hbm_cap,
              size_t dram_cap, struct stream *s)
{
    struct brain_prefix_index *idx;
    struct brain_prefix_match res[MAX_RES];
    struct fifo *hbm = calloc((size_t)nodes, sizeof(*hbm));
    struct fifo *dram = calloc((size_t)nodes, sizeof(*dram));
    uint64_t *load = calloc((size_t)nodes, sizeof(*load));

    if (!hbm || !dram || !load || brain_prefix_index_create(NULL, &idx) < 0) {
        fprintf(stderr, "bench_prefix_index: cannot set up the model\n");
        exit(1);
    }
    for (size_t q = 0; q < t->nreq; q++) {
        const uint64_t *chain = t->hashes + t->off[q];
        size_t n = t->off[q + 1] - t->off[q];
        int k = brain_prefix_index_find_matches(idx, TRACE_NS, chain, n, res,
                                                MAX_RES);
        uint16_t node;
        uint32_t m = 0;

        stream_op(s, (uint32_t)q, 0, 0);
        if (k > 0 && (size_t)res[0].matched[BRAIN_PREFIX_TIER_NVME] * 2 >= n) {
            node = res[0].node;
            m = res[0].matched[BRAIN_PREFIX_TIER_NVME];
        } else {
            uint64_t x = mix64(q + 0x51);
            uint16_t a = (uint16_t)(x % (uint64_t)nodes);
            uint16_t b = (uint16_t)((x >> 32) % (uint64_t)nodes);
            node = load[a] <= load[b] ? a : b;
            for (int i = 0; i < k && i < MAX_RES; i++)
                if (res[i].node == node)
                    m = res[i].matched[BRAIN_PREFIX_TIER_NVME];
        }
        load[node] += n;
        size_t first = s->nev;
        for (size_t i = 0; i < m; i++)
            stream_ev(s, BRAIN_PREFIX_EV_ACCESSED, node, 0, chain[i], 0);
        for (size_t i = m; i < n; i++) {
            stream_ev(s, BRAIN_PREFIX_EV_STORED, node, BRAIN_PREFIX_TIER_HBM,
                      chain[i], i ? chain[i - 1] : 0);
            fifo_push(&hbm[node], chain[i]);
        }
        while (hbm[node].n > hbm_cap) {
            uint64_t h = fifo_pop(&hbm[node]);
            stream_ev(s, BRAIN_PREFIX_EV_STORED, node, BRAIN_PREFIX_TIER_DRAM,
                      h, 0);
            stream_ev(s, BRAIN_PREFIX_EV_REMOVED, node, BRAIN_PREFIX_TIER_HBM,
                      h, 0);
            fifo_push(&dram[node], h);
        }
        while (dram[node].n > dram_cap)
            stream_ev(s, BRAIN_PREFIX_EV_REMOVED, node, BRAIN_PREFIX_TIER_DRAM,
                      fifo_pop(&dram[node]), 0);
        size_t cnt = s->nev - first;
        if (cnt > 0) {
            brain_prefix_index_apply(idx, s->ev + first, cnt, t->ts_us[q]);
            stream_op(s, (uint32_t)q, (uint32_t)first, (uint32_t)cnt);
        }
    }
    brain_prefix_index_destroy(idx);
    for (int i = 0; i < nodes; i++) {
        free(hbm[i].h);
        free(dram[i].h);
    }
    free(hbm);
    free(dram);
    free(load);
}

/* The stream moved to namespace ns: a fresh replay on a full index. */
static void
stream_set_ns(struct stream *s, uint16_t ns)
{
    for (size_t i = 0; i < s->nev; i++)
        s->ev[i].ns = ns;
}

struct replay_result {
    double secs;        /* wall time of the whole replay */
    double lookup_secs; /* part spent in find_matches */
    double event_secs;  /* part spent in apply */
    uint64_t checksum;  /* of every answer, to compare implementations */
};

static struct replay_result
replay(const struct impl *im, const struct trace *t, const struct stream *s,
       uint16_t ns)
{
    struct brain_prefix_match res[MAX_RES];
    struct replay_result rr = {0};
    uint64_t sum = 0, tl = 0, te = 0;
    uint64_t t0 = now_ns();

    for (size_t i = 0; i < s->nops; i++) {
        const struct op *o = &s->ops[i];
        uint64_t a = now_ns();
        if (o->ev_n == 0) {
            const uint64_t *chain = t->hashes + t->off[o->req];
            size_t n = t->off[o->req + 1] - t->off[o->req];
            int k = im->find(im->ctx, ns, chain, n, res, MAX_RES);
            tl += now_ns() - a;
            sum = sum * 31 + (uint64_t)k;
            for (int j = 0; j < k && j < 4; j++)
                sum = sum * 31 + res[j].node * 7919u +
                      res[j].matched[4] * 131u + res[j].matched[2];
        } else {
            int r = im->apply(im->ctx, s->ev + o->ev_off, o->ev_n,
                              t->ts_us[o->req]);
            te += now_ns() - a;
            sum = sum * 31 + (uint64_t)r;
        }
    }
    rr.secs = (double)(now_ns() - t0) / 1e9;
    rr.lookup_secs = (double)tl / 1e9;
    rr.event_secs = (double)te / 1e9;
    rr.checksum = sum;
    return rr;
}

/* ---------------------------------------------------------------------- */
/* synthetic fill: chains spread over the nodes, deterministic by chain   */

/* Chain c of the filler: length 1..32 and its block hashes. */
static size_t
fill_chain(uint64_t seed, uint64_t c, uint64_t *out)
{
    uint64_t x = mix64(seed ^ (c * 0x9e3779b97f4a7c15ull));
    size_t len = 1 + (size_t)(x % 32);
    uint64_t h = x;
    for (size_t i = 0; i < len; i++) {
        h = mix64(h ^ (i + 1));
        out[i] = h;
    }
    return len;
}

/* Holders of filler chain c: 70 % one node, 25 % two, 5 % three to 8. */
static int
fill_holders(uint64_t seed, uint64_t c, int nodes, uint16_t *node,
             uint8_t *tier, size_t *len_frac)
{
    struct rng r = {mix64(seed + c * 31 + 7) | 1};
    double u = rng_unit(&r);
    int k = u < 0.70 ? 1 : u < 0.95 ? 2 : 3 + (int)(rng_next(&r) % 6);
    if (k > nodes)
        k = nodes;
    for (int i = 0; i < k; i++) {
        node[i] = (uint16_t)(rng_next(&r) % (uint64_t)nodes);
        for (int j = 0; j < i; j++)
            if (node[j] == node[i])
                node[i] = (uint16_t)((node[i] + 1) % nodes), j = -1;
        double v = rng_unit(&r);
        tier[i] = v < 0.05 ? 1 : v < 0.45 ? 2 : v < 0.85 ? 3 : 4;
        /* Replicas beyond the first hold a prefix of the chain. */
        len_frac[i] = i == 0 ? 100 : 25 + (size_t)(rng_next(&r) % 76);
    }
    return k;
}

/* Fills im with >= blocks distinct blocks; returns chains used. */
static uint64_t
fill(const struct impl *im, uint64_t seed, size_t blocks, int nodes,
     size_t *events_out, double *secs_out)
{
    enum { BATCH = 512 };
    struct brain_prefix_event ev[BATCH + 40 * 8];
    uint64_t chain[32];
    uint16_t node[8];
    uint8_t tier[8];
    size_t frac[8], nev = 0, total_blocks = 0, events = 0;
    uint64_t c = 0, t0 = now_ns();

    while (total_blocks < blocks) {
        size_t len = fill_chain(seed, c, chain);
        int k = fill_holders(seed, c, nodes, node, tier, frac);
        for (int j = 0; j < k; j++) {
            size_t l = (len * frac[j] + 99) / 100;
            for (size_t i = 0; i < l; i++)
                ev[nev++] = (struct brain_prefix_event){
                    .hash = chain[i],
                    .parent = i ? chain[i - 1] : 0,
                    .ns = FILL_NS,
                    .node = node[j],
                    .type = BRAIN_PREFIX_EV_STORED,
                    .tier = tier[j],
                };
        }
        total_blocks += len;
        c++;
        if (nev >= BATCH || total_blocks >= blocks) {
            if (im->apply(im->ctx, ev, nev, 0) < 0) {
                fprintf(stderr, "bench_prefix_index: fill failed\n");
                exit(1);
            }
            events += nev;
            nev = 0;
        }
    }
    *events_out = events;
    *secs_out = (double)(now_ns() - t0) / 1e9;
    return c;
}

struct lat {
    struct pct all;       /* every call */
    struct pct shorter;   /* calls whose best match is <= SHORT_WALK */
    size_t nshort;        /* how many of those */
    double len;           /* mean chain length */
    double match;         /* mean best match */
    double ns_per_block;  /* total time / total blocks walked */
    struct pct per_block; /* each call's time / the blocks it walked */
    struct pct jumps;     /* index only: off-run steps per call (not ns) */
    double jump_frac;     /* index only: hash probes / blocks walked */
    double hint_frac;     /* index only: hints followed / blocks walked */
    double skip_frac;     /* index only: blocks passed along alike
                           * stretches (no holder work) / blocks walked */
};

/* Per-call latency of find_matches over trace chains or cold chains. */
static struct lat
lookup_latency(const struct impl *im, struct brain_prefix_index *ix,
               const struct trace *t, bool cold, uint64_t seed,
               uint64_t nchains, size_t count)
{
    uint64_t *lat = xrealloc(NULL, count * sizeof(*lat));
    uint64_t *sl = xrealloc(NULL, count * sizeof(*sl));
    uint64_t *pb = xrealloc(NULL, count * sizeof(*pb));
    uint64_t *jp = xrealloc(NULL, count * sizeof(*jp));
    struct brain_prefix_index_stats s0 = {0}, s1 = {0};
    uint64_t jump_sum = 0, hint_sum = 0, walk_sum = 0, skip_sum = 0;
    struct brain_prefix_match res[MAX_RES];
    uint64_t chain[32];
    struct rng r = {seed * 3 + 1};
    double len_sum = 0, match_sum = 0, walked = 0, total = 0;
    struct lat out = {0};

    for (size_t i = 0; i < count; i++) {
        const uint64_t *ch;
        size_t n;
        uint16_t ns;
        if (cold) {
            n = fill_chain(seed, rng_next(&r) % nchains, chain);
            ch = chain;
            ns = FILL_NS;
        } else {
            size_t q = i % t->nreq;
            ch = t->hashes + t->off[q];
            n = t->off[q + 1] - t->off[q];
            ns = TRACE_NS;
        }
        if (ix)
            brain_prefix_index_stats(ix, &s0);
        uint64_t a = now_ns();
        int k = im->find(im->ctx, ns, ch, n, res, MAX_RES);
        lat[i] = now_ns() - a;
        if (ix) {
            brain_prefix_index_stats(ix, &s1);
            uint64_t h = s1.lookup_hints - s0.lookup_hints;
            jp[i] = s1.lookup_jumps - s0.lookup_jumps;
            jump_sum += jp[i];
            hint_sum += h;
            skip_sum += s1.lookup_skipped - s0.lookup_skipped;
            jp[i] += h;
            walk_sum += s1.lookup_blocks - s0.lookup_blocks;
        }
        uint32_t best = k > 0 ? res[0].matched[BRAIN_PREFIX_TIER_NVME] : 0;
        len_sum += (double)n;
        match_sum += best;
        /* The walk reads the matched blocks and the one that ended it. */
        size_t w = best < n ? best + 1 : best;
        walked += (double)w;
        /* Per block, in picoseconds so short walks keep their digits. */
        pb[i] = lat[i] * 1000 / (w ? w : 1);
        total += (double)lat[i];
        if (best <= SHORT_WALK)
            sl[out.nshort++] = lat[i];
    }
    out.shorter = percentiles(sl, out.nshort);
    out.all = percentiles(lat, count);
    out.len = len_sum / (double)count;
    out.match = match_sum / (double)count;
    out.ns_per_block = total / walked;
    out.per_block = percentiles(pb, count);
    out.per_block.p50 /= 1000;
    out.per_block.p99 /= 1000;
    out.per_block.p999 /= 1000;
    out.per_block.max /= 1000;
    out.per_block.mean /= 1000;
    if (ix) {
        out.jumps = percentiles(jp, count);
        out.jump_frac = walk_sum ? (double)jump_sum / (double)walk_sum : 0;
        out.hint_frac = walk_sum ? (double)hint_sum / (double)walk_sum : 0;
        out.skip_frac = walk_sum ? (double)skip_sum / (double)walk_sum : 0;
    }
    free(lat);
    free(sl);
    free(pb);
    free(jp);
    return out;
}

/* Dependent random loads over `bytes`: one memory latency per load. */
static double
memory_latency_ns(size_t bytes, size_t loads, uint64_t seed)
{
    size_t n = bytes / 64;
    void *mem = mmap(NULL, n * 64, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return NAN;
    (void)madvise(mem, n * 64, MADV_HUGEPAGE);
    uint64_t *lines = mem;
    struct rng r = {seed | 1};
    /* Sattolo's shuffle: one cycle through every line. */
    for (size_t i = 0; i < n; i++)
        lines[i * 8] = i;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)(rng_next(&r) % i);
        uint64_t tmp = lines[i * 8];
        lines[i * 8] = lines[j * 8];
        lines[j * 8] = tmp;
    }
    uint64_t p = 0, t0 = now_ns();
    for (size_t i = 0; i < loads; i++)
        p = lines[p * 8];
    double ns = (double)(now_ns() - t0) / (double)loads;
    /* Keep the chase from being optimized away. */
    if (p == UINT64_MAX)
        printf("#");
    munmap(mem, n * 64);
    return ns;
}

static double
timer_overhead_ns(void)
{
    uint64_t v[10001];
    for (int i = 0; i < 10001; i++) {
        uint64_t a = now_ns();
        v[i] = now_ns() - a;
    }
    return percentiles(v, 10001).p50;
}

/* ---------------------------------------------------------------------- */

/*
 * One line of the report: the metric, the index's figure, the naive
 * baseline's (NAN = none) and naive over index (NAN = computed here, for
 * latencies where larger is worse), to stdout and, if open, to the CSV.
 */
/* Where the report goes; `section` prefixes the CSV's metric names. */
struct report {
    FILE *csv;           /* NULL: stdout only */
    const char *section; /* e.g. "trace lookups" */
};

static void
row(const struct report *rp, const char *metric, int prec, double ours,
    double naive, double ratio, const char *target)
{
    if (isnan(ratio) && !isnan(naive))
        ratio = naive / ours;
    printf("%-44s %12.*f", metric, prec, ours);
    if (isnan(naive))
        printf(" %12s %8s", "", "");
    else
        printf(" %12.*f %7.1fx", prec, naive, ratio);
    printf("%s%s\n", *target ? " " : "", target);
    if (!rp->csv)
        return;
    /* The CSV names the metric without the report's indentation. */
    while (*metric == ' ')
        metric++;
    fprintf(rp->csv, "\"%s: %s\",%.*f,", rp->section, metric, prec + 1, ours);
    if (!isnan(naive))
        fprintf(rp->csv, "%.*f,%.2f", prec + 1, naive, ratio);
    else
        fprintf(rp->csv, ",");
    fprintf(rp->csv, ",\"%s\"\n", target);
}

static void
usage(FILE *f)
{
    fprintf(
        f, "usage: bench_prefix_index [--trace PATH]... [--blocks N]\n"
           "                          [--nodes N] [--csv PATH] [--quick]\n"
           "                          [--seed N]\n"
           "  --trace PATH  Mooncake-style JSONL trace (repeatable); default\n"
           "                " DEFAULT_TRACE_GLOB ",\n"
           "                synthetic sessions when none can be read\n"
           "  --blocks N    blocks indexed for the latency runs (10000000)\n"
           "  --nodes N     nodes in the cluster model (64)\n"
           "  --csv PATH    also write the figures as CSV to PATH (default:\n"
           "                " DEFAULT_CSV " when build/bench/ exists)\n"
           "  --quick       small sizes: a smoke run, figures meaningless\n"
           "  --seed N      seed of the synthetic parts (1)\n");
}

static bool
parse_size(const char *s, size_t max, size_t *out)
{
    char *e;
    errno = 0;
    unsigned long long v = strtoull(s, &e, 10);
    if (errno || e == s || *e || v == 0 || v > max)
        return false;
    *out = (size_t)v;
    return true;
}

int
main(int argc, char **argv)
{
    const char *paths[MAX_TRACES];
    int npaths = 0;
    size_t blocks = 10000000, nodes = 64, seed = 1;
    bool quick = false, blocks_set = false;
    const char *csv_path = NULL;
    struct trace tr = {0};
    glob_t g = {0};

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool more = i + 1 < argc;
        if (strcmp(a, "--trace") == 0 && more) {
            if (npaths == MAX_TRACES) {
                fprintf(stderr, "bench_prefix_index: at most %d traces\n",
                        MAX_TRACES);
                return 2;
            }
            paths[npaths++] = argv[++i];
        } else if (strcmp(a, "--blocks") == 0 && more) {
            if (!parse_size(argv[++i], (size_t)1 << 34, &blocks)) {
                fprintf(stderr, "bench_prefix_index: bad --blocks '%s'\n",
                        argv[i]);
                return 2;
            }
            blocks_set = true;
        } else if (strcmp(a, "--nodes") == 0 && more) {
            if (!parse_size(argv[++i], BRAIN_PREFIX_MAX_NODES, &nodes)) {
                fprintf(stderr,
                        "bench_prefix_index: bad --nodes '%s' (1..%d)\n",
                        argv[i], BRAIN_PREFIX_MAX_NODES);
                return 2;
            }
        } else if (strcmp(a, "--seed") == 0 && more) {
            if (!parse_size(argv[++i], SIZE_MAX, &seed)) {
                fprintf(stderr, "bench_prefix_index: bad --seed '%s'\n",
                        argv[i]);
                return 2;
            }
        } else if (strcmp(a, "--csv") == 0 && more) {
            csv_path = argv[++i];
        } else if (strcmp(a, "--quick") == 0) {
            quick = true;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "bench_prefix_index: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (quick && !blocks_set)
        blocks = 100000;
    /* scripts/bench keeps results in build/bench/: the CSV goes there. */
    struct stat sb;
    if (!csv_path && !quick && stat("build/bench", &sb) == 0 &&
        S_ISDIR(sb.st_mode))
        csv_path = DEFAULT_CSV;
    size_t req_cap = quick ? 1500 : SIZE_MAX;

    /* --- workload ----------------------------------------------------- */
    if (npaths == 0 && glob(DEFAULT_TRACE_GLOB, 0, NULL, &g) == 0)
        for (size_t i = 0; i < g.gl_pathc && npaths < MAX_TRACES; i++)
            paths[npaths++] = g.gl_pathv[i];
    for (int i = 0; i < npaths; i++) {
        int r = load_trace(&tr, paths[i], i, req_cap);
        if (r < 0)
            fprintf(stderr, "bench_prefix_index: %s: %s (skipped)\n", paths[i],
                    strerror(-r));
    }
    if (tr.nreq == 0) {
        printf("NOTE: no trace could be read: using the SYNTHETIC "
               "generator (sessions sharing system prompts, Zipf)\n");
        synth_trace(&tr, quick ? 2000 : 12000, seed);
    }
    printf("workload: %s, %zu requests, %zu blocks in chains (longest %zu), "
           "%zu malformed lines skipped\n",
           tr.synthetic ? "synthetic" : "trace files", tr.nreq, tr.nhashes,
           tr.max_len, tr.bad_lines);
    for (int i = 0; i < npaths && !tr.synthetic; i++)
        printf("  trace: %s\n", paths[i]);

    size_t hbm_cap = quick ? 256 : 1024, dram_cap = quick ? 1024 : 4096;
    struct stream st = {0};
    record_stream(&tr, (int)nodes, hbm_cap, dram_cap, &st);
    printf("model: %zu nodes, per node HBM %zu + DRAM %zu blocks (FIFO); "
           "stream: %zu lookups + %zu events = %zu ops\n",
           nodes, hbm_cap, dram_cap, st.lookups, st.events,
           st.lookups + st.events);
    double tov = timer_overhead_ns();
    printf("timer overhead (clock_gettime pair, p50): %.0f ns, included "
           "in latencies\n\n",
           tov);

    /* --- (1) mixed replay, empty index, best of several ----------------- */
    int reps = quick ? 1 : 5;
    struct replay_result best_o = {0}, best_n = {0};
    for (int rep = 0; rep < reps; rep++) {
        struct brain_prefix_index *idx;
        struct naive nv = {calloc(1024, sizeof(void *)), 1024, 0};
        if (brain_prefix_index_create(NULL, &idx) < 0 || !nv.b)
            return 1;
        struct impl o = {"index", idx, ours_apply, ours_find};
        struct impl n = {"naive", &nv, naive_apply, naive_find};
        struct replay_result a = replay(&o, &tr, &st, TRACE_NS);
        struct replay_result b = replay(&n, &tr, &st, TRACE_NS);
        if (rep == 0 || a.secs < best_o.secs)
            best_o = a;
        if (rep == 0 || b.secs < best_n.secs)
            best_n = b;
        brain_prefix_index_destroy(idx);
        naive_free(&nv);
    }
    double nops = (double)(st.lookups + st.events);
    bool agree_small = best_o.checksum == best_n.checksum;

    /* --- (2) fill, (3) mixed on top, (4) latency: ours ------------------- */
    struct brain_prefix_index *idx;
    struct brain_prefix_index_stats ist;
    long rss0 = rss_bytes();
    if (brain_prefix_index_create(NULL, &idx) < 0)
        return 1;
    struct impl o = {"index", idx, ours_apply, ours_find};
    size_t fill_ev;
    double fill_s;
    uint64_t nchains = fill(&o, seed, blocks, (int)nodes, &fill_ev, &fill_s);
    brain_prefix_index_stats(idx, &ist);
    long rss1 = rss_bytes();
    double bpb = (double)ist.memory_bytes / (double)ist.blocks;
    double rss_bpb = (double)(rss1 - rss0) / (double)ist.blocks;
    uint64_t filled_blocks = ist.blocks;
    /*
     * The mixed replay changes the index, so repeats go to fresh
     * namespaces (the trace's first, so the latency run below sees it).
     */
    struct replay_result big_o[REPLAYS_BIG];
    for (int r = 0; r < REPLAYS_BIG; r++) {
        uint16_t ns = r == 0 ? TRACE_NS : (uint16_t)(FILL_NS + r);
        stream_set_ns(&st, ns);
        big_o[r] = replay(&o, &tr, &st, ns);
        if (r == 0) {
            /* Latency right after the first: the trace's blocks are in. */
            stream_set_ns(&st, TRACE_NS);
        }
    }
    stream_set_ns(&st, TRACE_NS);
    size_t nlook = quick ? 2000 : 100000;
    struct lat lt = lookup_latency(&o, idx, &tr, false, seed, nchains, nlook);
    struct lat lc = lookup_latency(&o, idx, &tr, true, seed, nchains, nlook);
    brain_prefix_index_stats(idx, &ist);
    size_t table_bytes = ist.memory_bytes;
    brain_prefix_index_destroy(idx);

    /* --- (5) the naive baseline on the same data ------------------------ */
    struct mallinfo2 mi0 = mallinfo2();
    struct naive nv = {calloc(1024, sizeof(void *)), 1024, 0};
    if (!nv.b)
        return 1;
    struct impl n = {"naive", &nv, naive_apply, naive_find};
    size_t nfill_ev;
    double nfill_s;
    fill(&n, seed, blocks, (int)nodes, &nfill_ev, &nfill_s);
    struct mallinfo2 mi1 = mallinfo2();
    double nv_bpb =
        (double)((mi1.uordblks + mi1.hblkhd) - (mi0.uordblks + mi0.hblkhd)) /
        (double)nv.n;
    struct replay_result big_n[REPLAYS_BIG];
    for (int r = 0; r < REPLAYS_BIG; r++) {
        uint16_t ns = r == 0 ? TRACE_NS : (uint16_t)(FILL_NS + r);
        stream_set_ns(&st, ns);
        big_n[r] = replay(&n, &tr, &st, ns);
    }
    stream_set_ns(&st, TRACE_NS);
    size_t nlook_naive = nlook / 4;
    struct lat nlt =
        lookup_latency(&n, NULL, &tr, false, seed, nchains, nlook_naive);
    struct lat nlc =
        lookup_latency(&n, NULL, &tr, true, seed, nchains, nlook_naive);
    naive_free(&nv);
    bool agree_big = true;
    int bo = 0, bn = 0; /* fastest replays */
    for (int r = 0; r < REPLAYS_BIG; r++) {
        agree_big = agree_big && big_o[r].checksum == big_n[r].checksum;
        if (big_o[r].secs < big_o[bo].secs)
            bo = r;
        if (big_n[r].secs < big_n[bn].secs)
            bn = r;
    }

    /* --- (6) the memory latency floor ---------------------------------- */
    double mem_ns =
        memory_latency_ns(table_bytes, quick ? 100000 : 2000000, seed);

    /* --- report --------------------------------------------------------- */
    struct report rp = {NULL, "empty index"};
    if (csv_path) {
        rp.csv = fopen(csv_path, "w");
        if (!rp.csv)
            fprintf(stderr, "bench_prefix_index: %s: %s (no CSV written)\n",
                    csv_path, strerror(errno));
        else
            fprintf(rp.csv, "metric,index,naive,naive_over_index,target\n");
    }
    printf("%-44s %12s %12s %8s %s\n", "metric", "index", "naive", "ratio",
           "target");
    row(&rp, "mixed Mops/s, empty index (cache-resident)", 2,
        nops / best_o.secs / 1e6, nops / best_n.secs / 1e6,
        best_n.secs / best_o.secs, "");
    row(&rp, "  of which lookups: Mlookups/s", 2,
        (double)st.lookups / best_o.lookup_secs / 1e6,
        (double)st.lookups / best_n.lookup_secs / 1e6,
        best_n.lookup_secs / best_o.lookup_secs, "");
    row(&rp, "  of which events: Mevents/s", 2,
        (double)st.events / best_o.event_secs / 1e6,
        (double)st.events / best_n.event_secs / 1e6,
        best_n.event_secs / best_o.event_secs, "");
    rp.section = "growth";
    row(&rp, "fill: M STORED events/s (growing)", 2,
        (double)fill_ev / fill_s / 1e6, (double)nfill_ev / nfill_s / 1e6,
        nfill_s / fill_s, "");
    printf("blocks indexed: %" PRIu64 " (%" PRIu64 " filler chains, %zu "
           "STORED events, %zu nodes, filler ns %d, trace ns %d)\n",
           filled_blocks, nchains, fill_ev, nodes, FILL_NS, TRACE_NS);
    rp.section = "full index";
    row(&rp, "mixed Mops/s at that size (best of 3)", 2,
        nops / big_o[bo].secs / 1e6, nops / big_n[bn].secs / 1e6,
        big_n[bn].secs / big_o[bo].secs, ">= 10");
    printf("%-44s", "  each run, index");
    for (int r = 0; r < REPLAYS_BIG; r++)
        printf(" %.2f", nops / big_o[r].secs / 1e6);
    printf("\n");
    row(&rp, "  of which lookups: Mlookups/s", 2,
        (double)st.lookups / big_o[bo].lookup_secs / 1e6,
        (double)st.lookups / big_n[bn].lookup_secs / 1e6,
        big_n[bn].lookup_secs / big_o[bo].lookup_secs, "");
    row(&rp, "  of which events: Mevents/s", 2,
        (double)st.events / big_o[bo].event_secs / 1e6,
        (double)st.events / big_n[bn].event_secs / 1e6,
        big_n[bn].event_secs / big_o[bo].event_secs, "");
    const struct {
        const char *what;
        const struct lat *o, *n;
    } lats[] = {{"trace chains", &lt, &nlt},
                {"cold random filler chains", &lc, &nlc}};
    for (int i = 0; i < 2; i++) {
        const struct lat *a = lats[i].o, *b = lats[i].n;
        rp.section = i == 0 ? "trace lookups" : "cold lookups";
        printf("lookup latency per find_matches call, %s (avg %.1f blocks, "
               "best match avg %.1f):\n",
               lats[i].what, a->len, a->match);
        row(&rp, "  p50 ns", 0, a->all.p50, b->all.p50, NAN, "");
        row(&rp, "  p99 ns", 0, a->all.p99, b->all.p99, NAN,
            i == 0 ? "< 1000 (per call)" : "");
        row(&rp, "  p99.9 ns", 0, a->all.p999, b->all.p999, NAN, "");
        row(&rp, "  max ns (includes preemption)", 0, a->all.max, b->all.max,
            NAN, "");
        printf("  matches <= %d blocks (%.1f %% of calls):\n", SHORT_WALK,
               100.0 * (double)a->nshort / (double)(nlook ? nlook : 1));
        row(&rp, "    p50 ns (those calls)", 0, a->shorter.p50, b->shorter.p50,
            NAN, "");
        row(&rp, "    p99 ns (those calls)", 0, a->shorter.p99, b->shorter.p99,
            NAN, "");
        row(&rp, "  ns per block walked (mean)", 1, a->ns_per_block,
            b->ns_per_block, NAN, "");
        row(&rp, "  per call, ns per block walked: p50", 1, a->per_block.p50,
            b->per_block.p50, NAN, "");
        row(&rp, "  per call, ns per block walked: p99", 1, a->per_block.p99,
            b->per_block.p99, NAN, i == 0 ? "< 1000 (per block)" : "");
        row(&rp, "  run breaks per call: mean", 2, a->jumps.mean, NAN, NAN,
            "");
        row(&rp, "  run breaks per call: p99", 0, a->jumps.p99, NAN, NAN, "");
        row(&rp, "  per block walked: hash probes", 3, a->jump_frac, NAN, NAN,
            "");
        row(&rp, "  per block walked: hints followed", 3, a->hint_frac, NAN,
            NAN, "");
        row(&rp, "  per block walked: passed along alike stretches", 3,
            a->skip_frac, NAN, NAN, "");
    }
    rp.section = "memory";
    row(&rp, "bytes/block (allocated)", 1, bpb, nv_bpb, NAN, "<= 64");
    row(&rp, "bytes/block (RSS growth, incl. transients)", 1, rss_bpb, NAN,
        NAN, "");
    row(&rp, "memory floor: dependent random load, ns", 0, mem_ns, NAN, NAN,
        "");
    row(&rp, "  trace lookup p50 in memory latencies", 1, lt.all.p50 / mem_ns,
        NAN, NAN, "");
    row(&rp, "  trace lookup p99 in memory latencies", 1, lt.all.p99 / mem_ns,
        NAN, NAN, "");
    row(&rp, "  cold lookup p50 in memory latencies", 1, lc.all.p50 / mem_ns,
        NAN, NAN, "");
    if (rp.csv) {
        fclose(rp.csv);
        printf("csv: %s\n", csv_path);
    }
    printf("answers agree with the naive baseline: %s (empty), %s (full)\n",
           agree_small ? "yes" : "NO", agree_big ? "yes" : "NO");
    if (quick)
        printf("(--quick: smoke run, sizes too small for the figures to "
               "mean anything)\n");

    free(st.ops);
    free(st.ev);
    free(tr.hashes);
    free(tr.off);
    free(tr.ts_us);
    globfree(&g);
    return agree_small && agree_big ? 0 : 1;
}
