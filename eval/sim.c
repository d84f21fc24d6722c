/*
 * sim: the discrete-event cluster simulator (model in sim.h and
 * docs/evaluation.md).
 *
 * Layout: per node a block store (a hash map from block id to an entry,
 * entries in an array, each tier an intrusive LRU list per eviction class
 * of the unpinned entries in it), a FIFO of waiting requests, and the
 * prefill server.
 * One event heap orders prefill ends, decode ends, transfer landings and
 * policy ticks; arrivals come straight from the (sorted) trace and go
 * after heap events of the same instant, so that a block stored or a
 * server freed at t is visible to a request routed at t.
 */
#include "sim.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "u64map.h"

#define NIL        UINT32_MAX
#define FETCH_FLAG 0x80000000u /* in fpins: the fetch inserted the block */

/* ---- Parameters ---- */

void
sim_params_default(struct sim_params *p)
{
    memset(p, 0, sizeof *p);
    p->nodes = 8;
    p->block_tokens = 512;
    p->capacity[SIM_TIER_HBM] = 5860;
    p->capacity[SIM_TIER_DRAM] = 0;
    p->capacity[SIM_TIER_NVME] = 0;
    p->prefill_tps = 8000;
    p->decode_tps = 40;
    p->kv_bytes_per_token = 163840;
    p->fabric_bw = 50.0 * (1u << 30);
    p->fabric_latency_ns = 20000;
    p->tier_bw[SIM_TIER_HBM] = 0;
    p->tier_bw[SIM_TIER_DRAM] = 100.0 * (1u << 30);
    p->tier_bw[SIM_TIER_NVME] = 20.0 * (1u << 30);
    p->sample_ns = 10000000000ULL;
    p->seed = 1;
}

int
sim_params_validate(const struct sim_params *p, char *err, size_t errlen)
{
#define BAD(...)                                                              \
    do {                                                                      \
        mcos_seterr(err, errlen, __VA_ARGS__);                                \
        return -EINVAL;                                                       \
    } while (0)
    uint64_t total = 0;

    if (p->nodes < 1 || p->nodes > SIM_MAX_NODES) {
        BAD("nodes must be in 1..%d, got %u", SIM_MAX_NODES, p->nodes);
    }
    if (p->block_tokens < 1 || p->block_tokens > 1u << 20) {
        BAD("block_tokens must be in 1..1048576, got %u", p->block_tokens);
    }
    if (p->capacity[SIM_TIER_HBM] < 1) {
        BAD("hbm_blocks must be at least 1");
    }
    for (int t = 0; t < SIM_TIERS; t++) {
        total += p->capacity[t];
        if (p->capacity[t] > 1u << 30 || total > 1u << 30) {
            BAD("tier capacities must add up to at most 2^30 blocks per "
                "node");
        }
    }
    if (!(p->prefill_tps > 0) || !isfinite(p->prefill_tps)) {
        BAD("prefill_tps must be positive");
    }
    if (!(p->decode_tps > 0) || !isfinite(p->decode_tps)) {
        BAD("decode_tps must be positive");
    }
    if (p->kv_bytes_per_token < 1 ||
        p->kv_bytes_per_token > (1ULL << 40) / p->block_tokens) {
        BAD("kv_bytes_per_token must be in 1..2^40/block_tokens");
    }
    if (!(p->fabric_bw > 0) || !isfinite(p->fabric_bw)) {
        BAD("fabric_bw must be positive");
    }
    if (p->fabric_latency_ns > 60ULL * 1000000000ULL) {
        BAD("fabric latency must be at most 60 s");
    }
    for (int t = SIM_TIER_DRAM; t < SIM_TIERS; t++) {
        if (p->capacity[t] &&
            (!(p->tier_bw[t] > 0) || !isfinite(p->tier_bw[t]))) {
            BAD("the %s bandwidth must be positive when the tier has "
                "capacity",
                t == SIM_TIER_DRAM ? "DRAM" : "NVMe");
        }
    }
    if (p->sample_ns < 1000000ULL) {
        BAD("the imbalance window must be at least 1 ms");
    }
    return 0;
#undef BAD
}

/* ---- State ---- */

/* One block resident (or being computed) on one node. */
struct entry {
    uint64_t hash;    /* block id */
    uint32_t prev;    /* LRU neighbour towards the LRU end, or NIL */
    uint32_t next;    /* LRU neighbour towards the MRU end, or NIL */
    uint32_t pins;    /* requests and fetches holding it; > 0: not in LRU */
    uint8_t tier;     /* enum sim_tier it occupies */
    uint8_t ready;    /* computed (a prefill still writing it: 0) */
    uint8_t mark;     /* scratch: landed by a fetch for the starting request */
    uint8_t cls;      /* eviction class (sim_set_class); 0 by default */
    uint64_t touched; /* when it last went to its list's MRU end */
};

/* A node's blocks. */
struct store {
    struct u64map map;  /* block id -> entry index */
    struct entry *e;    /* entries; free ones chained via next */
    uint32_t n_e;       /* entries ever used (high-water mark) */
    uint32_t cap_e;     /* capacity of e */
    uint32_t free_list; /* first free entry, or NIL */
    uint32_t lru[SIM_TIERS][SIM_CLASSES]; /* least recently used, per
                                             eviction class */
    uint32_t mru[SIM_TIERS][SIM_CLASSES]; /* most recently used */
    const uint64_t *clock;    /* the simulator's clock, for `touched` */
    uint64_t used[SIM_TIERS]; /* entries in each tier, pinned included */
    uint64_t reserved;        /* HBM blocks held by decoding answers */
};

struct node {
    struct store st;      /* blocks */
    uint32_t q_head;      /* first waiting request, or NIL */
    uint32_t q_tail;      /* last waiting request, or NIL */
    uint32_t serving;     /* request in prefill, or NIL */
    uint64_t busy_since;  /* when that prefill started */
    uint64_t busy_total;  /* ns spent prefilling */
    uint64_t link_in;     /* fabric in-link free from */
    uint64_t link_out;    /* fabric out-link free from */
    uint64_t bus;         /* tier-to-tier copies free from */
    uint64_t est_waiting; /* estimated tokens to prefill, waiting ones */
    double work;          /* queued work integrated over the window */
    struct sim_load load; /* counters the policies read */
    uint32_t *served;     /* requests in prefill start order */
    size_t n_served;      /* how many */
    size_t cap_served;    /* capacity of served */
};

enum phase { PH_NEW, PH_WAITING, PH_SERVING, PH_DECODING, PH_DONE };

/* Per-request run state. */
struct rstate {
    uint32_t next;          /* next in the node's waiting FIFO */
    uint8_t phase;          /* enum phase */
    uint8_t fetches;        /* FETCH transfers not landed yet */
    uint32_t est_tokens;    /* tokens to prefill, estimated at routing */
    uint32_t *pins;         /* per chain position: entry pinned, or NIL */
    uint32_t *fpins;        /* entries pinned by landed fetches */
    uint32_t n_fpins;       /* how many */
    uint32_t cap_fpins;     /* capacity of fpins */
    uint32_t reserved;      /* HBM blocks reserved for the answer */
    struct sim_outcome out; /* what happened */
};

enum ev_type { EV_XFER, EV_PREFILL_DONE, EV_DECODE_DONE, EV_TICK };

struct event {
    uint64_t t;    /* when */
    uint64_t seq;  /* order among events at the same time */
    uint32_t type; /* enum ev_type */
    uint32_t arg;  /* transfer, node or request */
};

/* An order in flight (transfers) or waiting to be carried out. */
struct xfer {
    struct sim_order o; /* the order; o.chain owned */
    uint32_t req;       /* FETCH: the request waiting, else NIL */
    uint64_t bytes;     /* bytes moved */
    bool busy;          /* slot in use */
};

struct sim {
    struct sim_params p;              /* parameters */
    const struct trace *trace;        /* what is replayed */
    const struct sim_policy_ops *ops; /* the policy */
    void *pstate;                     /* its state */
    uint64_t tick_ns;                 /* its tick period, 0 = none */
    uint64_t block_bytes;             /* KV bytes per block */
    struct node *nodes;               /* p.nodes of them */
    struct rstate *rs;                /* one per request */
    uint64_t now;                     /* current time, ns */
    uint32_t routing;                 /* request in route(), else NIL */
    uint32_t fetch[SIM_MAX_FETCHES];  /* xf slots of FETCHes it ordered */
    uint32_t n_fetch;                 /* how many */
    struct event *heap;               /* event min-heap */
    size_t n_heap;                    /* events in it */
    size_t cap_heap;                  /* its capacity */
    uint64_t seq;                     /* next event sequence number */
    struct xfer *xf;                  /* transfers and queued orders */
    size_t n_xf;                      /* slots used (high-water mark) */
    size_t cap_xf;                    /* capacity of xf */
    uint32_t *queued;                 /* xf slots of orders to carry out */
    size_t n_queued;                  /* how many */
    size_t cap_queued;                /* capacity */
    uint64_t t_int;                   /* queued work integrated up to */
    uint64_t next_window;             /* end of the imbalance window */
    double *samples;                  /* max/mean queued work, a window
                                         each */
    size_t n_samples;                 /* how many */
    size_t cap_samples;               /* capacity */
    size_t tick_pending;              /* 1 while a tick is in the heap */
    bool ran;                         /* sim_run() was called */
    bool oom;                         /* an allocation failed mid-run */
    struct sim_result res;            /* the figures */
};

/* ---- Small helpers ---- */

static int
grow(void **p, size_t *cap, size_t need, size_t size)
{
    size_t c = *cap ? *cap : 16;
    void *q;

    if (need <= *cap) {
        return 0;
    }
    while (c < need) {
        c *= 2;
    }
    q = realloc(*p, c * size);
    if (!q) {
        return -ENOMEM;
    }
    *p = q;
    *cap = c;
    return 0;
}

/* Duration of `amount` at `rate` per second, rounded up to whole ns. */
static uint64_t
dur_ns(double amount, double rate)
{
    return amount <= 0 ? 0 : (uint64_t)ceil(amount * 1e9 / rate);
}

static uint64_t
max3(uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t m = a > b ? a : b;

    return m > c ? m : c;
}

/* ---- Events ---- */

static bool
ev_before(const struct event *a, const struct event *b)
{
    return a->t != b->t ? a->t < b->t : a->seq < b->seq;
}

static void
ev_push(struct sim *s, uint64_t t, enum ev_type type, uint32_t arg)
{
    struct event ev = {t, s->seq++, type, arg};
    size_t i;

    if (grow((void **)&s->heap, &s->cap_heap, s->n_heap + 1,
             sizeof *s->heap)) {
        s->oom = true;
        return;
    }
    i = s->n_heap++;
    while (i > 0 && ev_before(&ev, &s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = ev;
}

static struct event
ev_pop(struct sim *s)
{
    struct event top = s->heap[0], last = s->heap[--s->n_heap];
    size_t i = 0;

    for (;;) {
        size_t c = 2 * i + 1;

        if (c >= s->n_heap) {
            break;
        }
        if (c + 1 < s->n_heap && ev_before(&s->heap[c + 1], &s->heap[c])) {
            c++;
        }
        if (!ev_before(&s->heap[c], &last)) {
            break;
        }
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->n_heap) {
        s->heap[i] = last;
    }
    return top;
}

/* ---- Block store ---- */

static uint32_t
st_find(const struct store *st, uint64_t hash)
{
    uint32_t i;

    return u64map_get(&st->map, hash, &i) ? i : NIL;
}

static void
lru_unlink(struct store *st, uint32_t i)
{
    struct entry *e = &st->e[i];
    int t = e->tier;

    if (e->prev != NIL) {
        st->e[e->prev].next = e->next;
    } else {
        st->lru[t][e->cls] = e->next;
    }
    if (e->next != NIL) {
        st->e[e->next].prev = e->prev;
    } else {
        st->mru[t][e->cls] = e->prev;
    }
    e->prev = e->next = NIL;
}

static void
lru_push(struct store *st, uint32_t i)
{
    struct entry *e = &st->e[i];
    int t = e->tier;
    int c = e->cls;

    e->prev = st->mru[t][c];
    e->next = NIL;
    e->touched = *st->clock;
    if (st->mru[t][c] != NIL) {
        st->e[st->mru[t][c]].next = i;
    } else {
        st->lru[t][c] = i;
    }
    st->mru[t][c] = i;
}

/* Makes entry i the most recently used of its tier (if unpinned). */
static void
st_touch(struct store *st, uint32_t i)
{
    if (!st->e[i].pins) {
        lru_unlink(st, i);
        lru_push(st, i);
    }
}

static void
st_pin(struct store *st, uint32_t i)
{
    if (st->e[i].pins++ == 0) {
        lru_unlink(st, i);
    }
}

static void
st_unpin(struct store *st, uint32_t i)
{
    if (--st->e[i].pins == 0) {
        lru_push(st, i);
    }
}

/* Moves entry i to `tier` without checking room. */
static void
st_move(struct store *st, uint32_t i, int tier)
{
    struct entry *e = &st->e[i];

    if (!e->pins) {
        lru_unlink(st, i);
    }
    st->used[e->tier]--;
    e->tier = (uint8_t)tier;
    st->used[tier]++;
    if (!e->pins) {
        lru_push(st, i);
    }
}

/* A new entry for `hash` in `tier` (room already made); NIL on ENOMEM. */
static uint32_t
st_add(struct store *st, uint64_t hash, int tier, bool ready, bool pinned)
{
    uint32_t i;
    struct entry *e;

    if (st->free_list != NIL) {
        i = st->free_list;
        st->free_list = st->e[i].next;
    } else {
        size_t cap = st->cap_e;

        if (st->n_e == UINT32_MAX - 1 ||
            grow((void **)&st->e, &cap, (size_t)st->n_e + 1, sizeof *st->e)) {
            return NIL;
        }
        st->cap_e = (uint32_t)cap;
        i = st->n_e++;
    }
    if (u64map_put(&st->map, hash, i)) {
        st->e[i].next = st->free_list;
        st->free_list = i;
        return NIL;
    }
    e = &st->e[i];
    e->hash = hash;
    e->prev = e->next = NIL;
    e->pins = pinned ? 1 : 0;
    e->tier = (uint8_t)tier;
    e->ready = ready;
    e->mark = 0;
    e->cls = 0;
    st->used[tier]++;
    if (!pinned) {
        lru_push(st, i);
    }
    return i;
}

static void
st_remove(struct store *st, uint32_t i)
{
    struct entry *e = &st->e[i];

    if (!e->pins) {
        lru_unlink(st, i);
    }
    st->used[e->tier]--;
    u64map_del(&st->map, e->hash);
    e->next = st->free_list;
    st->free_list = i;
}

/* The next tier below `t` with capacity, or SIM_TIER_NONE. */
static int
lower_tier(const struct sim *s, int t)
{
    for (int u = t + 1; u < SIM_TIERS; u++) {
        if (s->p.capacity[u]) {
            return u;
        }
    }
    return SIM_TIER_NONE;
}

static bool make_room(struct sim *s, uint32_t n, int tier, uint64_t extra);

/* The entry `tier` of node n gives up when it needs room: the least
 * recently used of the class the policy picks (pick_victim), else of all
 * classes (plain LRU; with every entry in class 0, as the baselines
 * leave them, the tier's LRU entry).  NIL if none is unpinned. */
static uint32_t
victim(struct sim *s, uint32_t n, int tier)
{
    struct store *st = &s->nodes[n].st;
    uint64_t idle[SIM_CLASSES] = {0};
    uint32_t present = 0;
    int c = -1;

    for (int k = 0; k < SIM_CLASSES; k++) {
        uint32_t v = st->lru[tier][k];

        if (v != NIL) {
            present |= 1u << k;
            idle[k] = s->now - st->e[v].touched;
            if (c < 0 || idle[k] > idle[c]) {
                c = k;
            }
        }
    }
    if (c < 0) {
        return NIL;
    }
    if (s->ops->pick_victim && (present & (present - 1))) {
        int p = s->ops->pick_victim(s->pstate, s, n, (enum sim_tier)tier, idle,
                                    present);

        if (p >= 0 && p < SIM_CLASSES && (present & (1u << p))) {
            c = p;
        }
    }
    return st->lru[tier][c];
}

/* Evicts the victim() of `tier` on node n: demotes it one tier down, or
 * drops it.  False if the tier has no unpinned entry. */
static bool
evict_one(struct sim *s, uint32_t n, int tier)
{
    struct store *st = &s->nodes[n].st;
    uint32_t v = victim(s, n, tier);
    int to = lower_tier(s, tier);
    uint64_t hash;

    if (v == NIL) {
        return false;
    }
    hash = st->e[v].hash;
    if (to != SIM_TIER_NONE && make_room(s, n, to, 1)) {
        st_move(st, v, to);
        s->res.demoted_bytes += s->block_bytes;
    } else {
        to = SIM_TIER_NONE;
        st_remove(st, v);
        s->res.dropped_blocks++;
    }
    if (s->ops->on_evict) {
        s->ops->on_evict(s->pstate, s, n, hash, (enum sim_tier)tier,
                         (enum sim_tier)to);
    }
    return true;
}

/* Evicts from `tier` of node n until `extra` more blocks fit.  False if
 * pinned blocks leave no room. */
static bool
make_room(struct sim *s, uint32_t n, int tier, uint64_t extra)
{
    struct store *st = &s->nodes[n].st;

    if (s->p.capacity[tier] < extra) {
        return false;
    }
    while (st->used[tier] + (tier == SIM_TIER_HBM ? st->reserved : 0) + extra >
           s->p.capacity[tier]) {
        if (!evict_one(s, n, tier)) {
            return false;
        }
    }
    return true;
}

/* Moves entry i of node n up or down to `tier`, evicting from it to make
 * room; true if it moved. */
static bool
relocate(struct sim *s, uint32_t n, uint32_t i, int tier)
{
    struct store *st = &s->nodes[n].st;
    int from = st->e[i].tier;

    /* Move first, then trim: a block swapped down can take the slot
     * the moved one left. */
    st_move(st, i, tier);
    if (make_room(s, n, tier, 0)) {
        return true;
    }
    st_move(st, i, from);
    return false;
}

static void
fire_store(struct sim *s, uint32_t n, uint64_t hash, uint64_t parent, int tier,
           enum sim_store_why why)
{
    if (s->ops->on_store) {
        s->ops->on_store(s->pstate, s, n, hash, parent, (enum sim_tier)tier,
                         why);
    }
}

/* ---- The policy's view ---- */

uint32_t
sim_nodes(const struct sim *s)
{
    return s->p.nodes;
}

uint64_t
sim_now_ns(const struct sim *s)
{
    return s->now;
}

const struct sim_params *
sim_params(const struct sim *s)
{
    return &s->p;
}

const struct trace *
sim_trace(const struct sim *s)
{
    return s->trace;
}

uint32_t
sim_match(const struct sim *s, uint32_t node, const uint64_t *chain,
          uint32_t n, uint32_t per_tier[SIM_TIERS])
{
    const struct store *st;
    uint32_t k = 0;

    if (per_tier) {
        memset(per_tier, 0, SIM_TIERS * sizeof *per_tier);
    }
    if (node >= s->p.nodes || !chain) {
        return 0;
    }
    st = &s->nodes[node].st;
    for (; k < n; k++) {
        uint32_t i = st_find(st, chain[k]);

        if (i == NIL || !st->e[i].ready) {
            break;
        }
        if (per_tier) {
            per_tier[st->e[i].tier]++;
        }
    }
    return k;
}

enum sim_tier
sim_where(const struct sim *s, uint32_t node, uint64_t hash)
{
    uint32_t i;

    if (node >= s->p.nodes) {
        return SIM_TIER_NONE;
    }
    i = st_find(&s->nodes[node].st, hash);
    return i == NIL ? SIM_TIER_NONE
                    : (enum sim_tier)s->nodes[node].st.e[i].tier;
}

void
sim_load(const struct sim *s, uint32_t node, struct sim_load *out)
{
    const struct node *nd;

    memset(out, 0, sizeof *out);
    if (node >= s->p.nodes) {
        return;
    }
    nd = &s->nodes[node];
    *out = nd->load;
    for (int t = 0; t < SIM_TIERS; t++) {
        out->used[t] = nd->st.used[t];
    }
    out->used[SIM_TIER_HBM] += nd->st.reserved;
}

/* Copies an order with its chain into a free transfer slot. */
static int
xf_alloc(struct sim *s, const struct sim_order *o, uint32_t req,
         uint32_t *slot)
{
    uint64_t *chain = malloc(o->count * sizeof *chain);
    size_t i;

    if (!chain) {
        return -ENOMEM;
    }
    for (i = 0; i < s->n_xf && s->xf[i].busy; i++) {
    }
    if (i == s->n_xf) {
        if (grow((void **)&s->xf, &s->cap_xf, s->n_xf + 1, sizeof *s->xf)) {
            free(chain);
            return -ENOMEM;
        }
        s->n_xf++;
    }
    memcpy(chain, o->chain, o->count * sizeof *chain);
    s->xf[i].o = *o;
    s->xf[i].o.chain = chain;
    s->xf[i].req = req;
    s->xf[i].bytes = 0;
    s->xf[i].busy = true;
    *slot = (uint32_t)i;
    return 0;
}

static void
xf_free(struct sim *s, uint32_t slot)
{
    free((void *)s->xf[slot].o.chain);
    s->xf[slot].o.chain = NULL;
    s->xf[slot].busy = false;
}

int
sim_set_class(struct sim *s, uint32_t node, uint64_t hash, unsigned cls)
{
    struct store *st;
    uint32_t i;

    if (node >= s->p.nodes || cls >= SIM_CLASSES) {
        return -EINVAL;
    }
    st = &s->nodes[node].st;
    i = st_find(st, hash);
    if (i == NIL) {
        return -ENOENT;
    }
    if (st->e[i].pins) {
        st->e[i].cls = (uint8_t)cls;
        return 0;
    }
    lru_unlink(st, i);
    st->e[i].cls = (uint8_t)cls;
    lru_push(st, i);
    return 0;
}

int
sim_order(struct sim *s, const struct sim_order *o)
{
    uint32_t slot;
    int rc;

    if (!o || !o->chain || o->count < 1 || o->count > TRACE_MAX_BLOCKS) {
        goto bad;
    }
    switch (o->kind) {
    case SIM_ORDER_FETCH:
        if (s->routing == NIL || o->src >= s->p.nodes ||
            s->n_fetch >= SIM_MAX_FETCHES) {
            goto bad;
        }
        /* The chain is copied now: the caller's buffer may not outlive
         * route(). */
        if (xf_alloc(s, o, s->routing, &slot)) {
            s->oom = true;
            return -ENOMEM;
        }
        s->fetch[s->n_fetch++] = slot;
        return 0;
    case SIM_ORDER_REPLICATE:
        if (o->src >= s->p.nodes || o->dst >= s->p.nodes || o->src == o->dst ||
            (int)o->tier >= SIM_TIERS || !s->p.capacity[o->tier]) {
            goto bad;
        }
        break;
    case SIM_ORDER_PROMOTE:
        if (o->dst >= s->p.nodes || (int)o->tier >= SIM_TIERS ||
            !s->p.capacity[o->tier]) {
            goto bad;
        }
        break;
    case SIM_ORDER_DEMOTE:
        if (o->dst >= s->p.nodes || (int)o->tier > SIM_TIER_NONE ||
            o->tier == SIM_TIER_HBM ||
            (o->tier != SIM_TIER_NONE && !s->p.capacity[o->tier])) {
            goto bad;
        }
        break;
    default:
        goto bad;
    }
    rc = xf_alloc(s, o, NIL, &slot);
    if (!rc) {
        rc = grow((void **)&s->queued, &s->cap_queued, s->n_queued + 1,
                  sizeof *s->queued);
        if (rc) {
            xf_free(s, slot);
        }
    }
    if (rc) {
        s->oom = true;
        return rc;
    }
    s->queued[s->n_queued++] = slot;
    return 0;
bad:
    s->res.bad_orders++;
    return -EINVAL;
}

/* ---- Orders ---- */

/* Leading blocks of the order's chain that its source holds, ready. */
static uint32_t
source_run(struct sim *s, const struct sim_order *o)
{
    return sim_match(s, o->src, o->chain, o->count, NULL);
}

/* Starts a fabric transfer (FETCH or REPLICATE) in slot `x`: trims the
 * chain to what the source holds, refreshes those blocks at the source
 * (they were read), books both links and schedules the landing. */
static void
start_transfer(struct sim *s, uint32_t x)
{
    struct xfer *xf = &s->xf[x];
    struct sim_order *o = &xf->o;
    struct store *src = &s->nodes[o->src].st;
    uint32_t k = source_run(s, o);
    uint64_t start, end;

    o->count = k;
    for (uint32_t j = k; j-- > 0;) {
        st_touch(src, st_find(src, o->chain[j]));
        if (sim_where(s, o->dst, o->chain[j]) == SIM_TIER_NONE) {
            xf->bytes += s->block_bytes;
        }
    }
    if (!xf->bytes) {
        ev_push(s, s->now, EV_XFER, x);
        return;
    }
    start = max3(s->now, s->nodes[o->src].link_out, s->nodes[o->dst].link_in);
    end = start + s->p.fabric_latency_ns +
          dur_ns((double)xf->bytes, s->p.fabric_bw);
    s->nodes[o->src].link_out = end;
    s->nodes[o->dst].link_in = end;
    s->res.fabric_bytes += xf->bytes;
    ev_push(s, end, EV_XFER, x);
}

/* Starts a PROMOTE: books the node's tier-to-tier path for the blocks
 * found below the target tier. */
static void
start_promote(struct sim *s, uint32_t x)
{
    struct xfer *xf = &s->xf[x];
    struct node *nd = &s->nodes[xf->o.dst];
    uint64_t ns = 0, start;

    for (uint32_t j = 0; j < xf->o.count; j++) {
        uint32_t i = st_find(&nd->st, xf->o.chain[j]);

        if (i != NIL && nd->st.e[i].tier > xf->o.tier) {
            ns +=
                dur_ns((double)s->block_bytes, s->p.tier_bw[nd->st.e[i].tier]);
            xf->bytes += s->block_bytes;
        }
    }
    start = s->now > nd->bus ? s->now : nd->bus;
    nd->bus = start + ns;
    ev_push(s, start + ns, EV_XFER, x);
}

/* Carries out a DEMOTE at once. */
static void
do_demote(struct sim *s, const struct sim_order *o)
{
    struct store *st = &s->nodes[o->dst].st;

    for (uint32_t j = o->count; j-- > 0;) {
        uint32_t i = st_find(st, o->chain[j]);
        int from;

        if (i == NIL || st->e[i].pins || st->e[i].tier >= o->tier) {
            continue;
        }
        from = st->e[i].tier;
        if (o->tier != SIM_TIER_NONE && relocate(s, o->dst, i, o->tier)) {
            s->res.demoted_bytes += s->block_bytes;
        } else {
            st_remove(st, i);
            s->res.dropped_blocks++;
            if (s->ops->on_evict) {
                s->ops->on_evict(s->pstate, s, o->dst, o->chain[j],
                                 (enum sim_tier)from, SIM_TIER_NONE);
            }
            continue;
        }
        if (s->ops->on_evict) {
            s->ops->on_evict(s->pstate, s, o->dst, o->chain[j],
                             (enum sim_tier)from, o->tier);
        }
    }
}

/* Carries out the orders the policy queued during the last event. */
static void
run_queued(struct sim *s)
{
    /* Orders may queue more orders (from hooks); take them in turn. */
    for (size_t q = 0; q < s->n_queued; q++) {
        uint32_t x = s->queued[q];

        s->res.orders++;
        switch (s->xf[x].o.kind) {
        case SIM_ORDER_REPLICATE:
            start_transfer(s, x);
            break;
        case SIM_ORDER_PROMOTE:
            start_promote(s, x);
            break;
        default: {
            /* A copy: on_evict may order more, which can move s->xf. */
            struct sim_order o = s->xf[x].o;

            do_demote(s, &o);
            xf_free(s, x);
            break;
        }
        }
    }
    s->n_queued = 0;
}

/* Adds entry i to a request's fetch pins. */
static void
add_fpin(struct sim *s, struct rstate *rs, uint32_t i)
{
    size_t cap = rs->cap_fpins;

    if (grow((void **)&rs->fpins, &cap, (size_t)rs->n_fpins + 1,
             sizeof *rs->fpins)) {
        s->oom = true;
        return;
    }
    rs->cap_fpins = (uint32_t)cap;
    rs->fpins[rs->n_fpins++] = i;
}

static void try_start(struct sim *s, uint32_t n);

/* A transfer or promotion landed. */
static void
land(struct sim *s, uint32_t x)
{
    /* Copies: the policy's hooks below may submit orders, and a new order
     * can move s->xf (the chain itself stays put until xf_free). */
    const struct xfer xfc = s->xf[x];
    const struct xfer *xf = &xfc;
    const struct sim_order *o = &xfc.o;
    uint32_t n = o->kind == SIM_ORDER_FETCH ? s->rs[xf->req].out.node : o->dst;
    struct store *st = &s->nodes[n].st;
    int tier = o->kind == SIM_ORDER_FETCH ? SIM_TIER_HBM : (int)o->tier;

    if (o->kind == SIM_ORDER_PROMOTE) {
        s->res.promoted_bytes += xf->bytes;
        for (uint32_t j = o->count; j-- > 0;) {
            uint32_t i = st_find(st, o->chain[j]);

            if (i != NIL && st->e[i].tier > tier && relocate(s, n, i, tier)) {
                fire_store(s, n, o->chain[j], j ? o->chain[j - 1] : o->parent,
                           tier, SIM_STORE_PROMOTED);
            }
        }
        xf_free(s, x);
        return;
    }

    /* FETCH and REPLICATE: insert tail first so the head ends up most
     * recently used (FETCH pins them anyway until the prefill). */
    for (uint32_t j = o->count; j-- > 0;) {
        uint32_t i = st_find(st, o->chain[j]);
        uint64_t parent = j ? o->chain[j - 1] : o->parent;
        bool fetch = o->kind == SIM_ORDER_FETCH;

        if (i == NIL) {
            if (!make_room(s, n, tier, 1)) {
                s->res.uncached_blocks++;
                continue;
            }
            i = st_add(st, o->chain[j], tier, true, fetch);
            if (i == NIL) {
                s->oom = true;
                continue;
            }
            fire_store(s, n, o->chain[j], parent, tier,
                       fetch ? SIM_STORE_FETCHED : SIM_STORE_REPLICATED);
            if (fetch) {
                add_fpin(s, &s->rs[xf->req], i | FETCH_FLAG);
            }
        } else if (fetch) {
            st_pin(st, i);
            add_fpin(s, &s->rs[xf->req], i);
        } else {
            st_touch(st, i);
        }
    }
    if (o->kind == SIM_ORDER_FETCH) {
        struct rstate *rs = &s->rs[xf->req];

        xf_free(s, x);
        if (--rs->fetches == 0) {
            try_start(s, n);
        }
        return;
    }
    xf_free(s, x);
}

/* ---- Requests ---- */

static const struct trace_request *
req_of(const struct sim *s, uint32_t id)
{
    return &s->trace->req[id];
}

/* Starts request `id`'s prefill on node n now. */
static void
start_prefill(struct sim *s, uint32_t n, uint32_t id)
{
    const struct trace_request *r = req_of(s, id);
    struct node *nd = &s->nodes[n];
    struct store *st = &nd->st;
    struct rstate *rs = &s->rs[id];
    uint32_t bt = s->p.block_tokens, k = 0;
    uint64_t hit = 0, promo_ns = 0;

    rs->pins = malloc((r->n_blocks ? r->n_blocks : 1) * sizeof *rs->pins);
    if (!rs->pins) {
        s->oom = true;
        return;
    }
    for (uint32_t f = 0; f < rs->n_fpins; f++) {
        if (rs->fpins[f] & FETCH_FLAG) {
            st->e[rs->fpins[f] & ~FETCH_FLAG].mark = 1;
        }
    }

    /* 1. The reusable prefix: pin it so that nothing below evicts it. */
    for (; k < r->n_blocks; k++) {
        uint32_t i = st_find(st, r->blocks[k]);
        uint32_t tok = trace_block_tokens(r, k, bt);

        if (i == NIL || !st->e[i].ready) {
            break;
        }
        st_pin(st, i);
        rs->pins[k] = i;
        hit += tok;
        if (st->e[i].mark) {
            rs->out.hit_tokens_peer += tok;
        } else {
            rs->out.hit_tokens_tier[st->e[i].tier] += tok;
        }
        if (st->e[i].tier != SIM_TIER_HBM) {
            promo_ns +=
                dur_ns((double)s->block_bytes, s->p.tier_bw[st->e[i].tier]);
            s->res.promoted_bytes += s->block_bytes;
        }
    }
    for (uint32_t f = 0; f < rs->n_fpins; f++) {
        uint32_t i = rs->fpins[f] & ~FETCH_FLAG;

        st->e[i].mark = 0;
        st_unpin(st, i);
    }
    free(rs->fpins);
    rs->fpins = NULL;
    rs->n_fpins = rs->cap_fpins = 0;

    /* 2. Promote the reused blocks found in lower tiers into HBM. */
    for (uint32_t j = 0; j < k; j++) {
        uint32_t i = rs->pins[j];

        if (st->e[i].tier != SIM_TIER_HBM && relocate(s, n, i, SIM_TIER_HBM)) {
            fire_store(s, n, r->blocks[j],
                       j ? r->blocks[j - 1] : SIM_NO_PARENT, SIM_TIER_HBM,
                       SIM_STORE_PROMOTED);
        }
    }

    /* 3. Room in HBM for the blocks to compute. */
    for (uint32_t j = k; j < r->n_blocks; j++) {
        uint32_t i = st_find(st, r->blocks[j]);

        if (i == NIL) {
            i = make_room(s, n, SIM_TIER_HBM, 1)
                    ? st_add(st, r->blocks[j], SIM_TIER_HBM, false, true)
                    : NIL;
            if (i == NIL) {
                s->res.uncached_blocks++;
            }
        } else {
            /* Resident but past the first miss: recomputed in place. */
            st_pin(st, i);
            if (st->e[i].tier != SIM_TIER_HBM) {
                relocate(s, n, i, SIM_TIER_HBM);
            }
        }
        rs->pins[j] = i;
    }

    rs->phase = PH_SERVING;
    rs->out.start_ns = s->now;
    rs->out.hit_blocks = k;
    rs->out.computed_tokens = r->input_tokens - hit;
    nd->serving = id;
    nd->busy_since = s->now;
    nd->load.waiting--;
    nd->load.serving = 1;
    nd->load.busy_until_ns =
        s->now + promo_ns +
        dur_ns((double)rs->out.computed_tokens, s->p.prefill_tps);
    nd->est_waiting -= rs->est_tokens;
    if (grow((void **)&nd->served, &nd->cap_served, nd->n_served + 1,
             sizeof *nd->served)) {
        s->oom = true;
    } else {
        nd->served[nd->n_served++] = id;
    }
    ev_push(s, nd->load.busy_until_ns, EV_PREFILL_DONE, n);
}

/* Starts the first ready waiting request if node n is idle. */
static void
try_start(struct sim *s, uint32_t n)
{
    struct node *nd = &s->nodes[n];
    uint32_t prev = NIL;

    if (nd->serving != NIL) {
        return;
    }
    for (uint32_t id = nd->q_head; id != NIL; id = s->rs[id].next) {
        if (s->rs[id].fetches) {
            prev = id;
            continue;
        }
        if (prev == NIL) {
            nd->q_head = s->rs[id].next;
        } else {
            s->rs[prev].next = s->rs[id].next;
        }
        if (nd->q_tail == id) {
            nd->q_tail = prev;
        }
        s->rs[id].next = NIL;
        start_prefill(s, n, id);
        return;
    }
}

static void
prefill_done(struct sim *s, uint32_t n)
{
    struct node *nd = &s->nodes[n];
    uint32_t id = nd->serving;
    const struct trace_request *r = req_of(s, id);
    struct rstate *rs = &s->rs[id];
    struct store *st = &nd->st;
    uint32_t bt = s->p.block_tokens;
    uint64_t answer = ((uint64_t)r->output_tokens + bt - 1) / bt;

    for (uint32_t j = 0; j < r->n_blocks; j++) {
        uint32_t i = rs->pins[j];

        if (i != NIL && !st->e[i].ready) {
            st->e[i].ready = 1;
            fire_store(s, n, r->blocks[j],
                       j ? r->blocks[j - 1] : SIM_NO_PARENT, st->e[i].tier,
                       SIM_STORE_COMPUTED);
        }
    }
    rs->out.first_token_ns = s->now;
    nd->busy_total += s->now - nd->busy_since;
    nd->serving = NIL;
    nd->load.serving = 0;
    nd->load.busy_until_ns = 0;
    nd->load.prefill_tokens -= r->input_tokens;

    /* Decode: the answer's KV takes HBM until the request ends. */
    for (uint64_t b = 0; b < answer; b++) {
        if (!make_room(s, n, SIM_TIER_HBM, 1)) {
            s->res.uncached_blocks += answer - b;
            break;
        }
        st->reserved++;
        rs->reserved++;
    }
    rs->phase = PH_DECODING;
    nd->load.decoding++;
    ev_push(s, s->now + dur_ns((double)r->output_tokens, s->p.decode_tps),
            EV_DECODE_DONE, id);
    try_start(s, n);
}

static void
decode_done(struct sim *s, uint32_t id)
{
    const struct trace_request *r = req_of(s, id);
    struct rstate *rs = &s->rs[id];
    uint32_t n = rs->out.node;
    struct node *nd = &s->nodes[n];

    /* Unpin tail first: the head of the prompt becomes the most recent. */
    for (uint32_t j = r->n_blocks; j-- > 0;) {
        if (rs->pins[j] != NIL) {
            st_unpin(&nd->st, rs->pins[j]);
        }
    }
    free(rs->pins);
    rs->pins = NULL;
    nd->st.reserved -= rs->reserved;
    rs->reserved = 0;
    rs->phase = PH_DONE;
    rs->out.done_ns = s->now;
    nd->load.decoding--;
    nd->load.inflight--;
    nd->load.active_blocks -= r->n_blocks;
    if (s->ops->on_done) {
        s->ops->on_done(s->pstate, s, id, r, n);
    }
}

static int
arrive(struct sim *s, uint32_t id, char *err, size_t errlen)
{
    const struct trace_request *r = req_of(s, id);
    struct rstate *rs = &s->rs[id];
    struct timespec t0, t1;
    struct node *nd;
    uint32_t node = NIL, k;
    int rc;

    s->routing = id;
    s->n_fetch = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rc = s->ops->route(s->pstate, s, id, r, &node);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    s->routing = NIL;
    s->res.decisions++;
    s->res.route_wall_s += (double)(t1.tv_sec - t0.tv_sec) +
                           (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    if (rc < 0 || node >= s->p.nodes) {
        for (uint32_t f = 0; f < s->n_fetch; f++) {
            xf_free(s, s->fetch[f]);
        }
        s->n_fetch = 0;
    }
    if (rc < 0) {
        mcos_seterr(err, errlen,
                    "policy %s failed to route request %u (trace line %u): "
                    "%s",
                    s->ops->name, id, r->line, mcos_strerror(rc));
        return rc;
    }
    if (node >= s->p.nodes) {
        mcos_seterr(err, errlen,
                    "policy %s routed request %u (trace line %u) to node %u "
                    "of %u",
                    s->ops->name, id, r->line, node, s->p.nodes);
        return -EINVAL;
    }
    /* Orders from route() take effect before the request can start, so
     * that a policy can, say, demote blocks and route in one decision. */
    run_queued(s);
    nd = &s->nodes[node];
    k = sim_match(s, node, r->blocks, r->n_blocks, NULL);
    rs->out.node = node;
    rs->phase = PH_WAITING;
    rs->est_tokens = r->input_tokens -
                     (uint32_t)trace_prefix_tokens(r, k, s->p.block_tokens);
    nd->est_waiting += rs->est_tokens;
    nd->load.waiting++;
    nd->load.inflight++;
    nd->load.prefill_tokens += r->input_tokens;
    nd->load.active_blocks += r->n_blocks;
    rs->next = NIL;
    if (nd->q_tail == NIL) {
        nd->q_head = id;
    } else {
        s->rs[nd->q_tail].next = id;
    }
    nd->q_tail = id;

    for (uint32_t f = 0; f < s->n_fetch; f++) {
        uint32_t x = s->fetch[f];

        if (s->xf[x].o.src == node) {
            /* Fetching from the node itself: nothing to do. */
            s->res.bad_orders++;
            xf_free(s, x);
            continue;
        }
        s->xf[x].o.dst = node;
        s->res.orders++;
        rs->fetches++;
        start_transfer(s, x);
    }
    s->n_fetch = 0;
    try_start(s, node);
    return 0;
}

/* Adds each node's queued prefill work, integrated over time, from the
 * last call up to t (no window boundary in between).  Queued work is the
 * estimated prefill time of the waiting requests plus what remains of the
 * running prefill, which falls linearly to 0 at its end. */
static void
integrate(struct sim *s, uint64_t t)
{
    uint64_t a = s->t_int;
    double dt = (double)(t - a) * 1e-9;

    if (t <= a) {
        return;
    }
    for (uint32_t n = 0; n < s->p.nodes; n++) {
        struct node *nd = &s->nodes[n];
        double w = (double)nd->est_waiting / s->p.prefill_tps * dt;
        uint64_t b = nd->load.busy_until_ns;

        if (nd->serving != NIL && b > a) {
            uint64_t e = b < t ? b : t;

            w += ((double)(b - a) + (double)(b - e)) * 0.5e-9 *
                 (double)(e - a) * 1e-9;
        }
        nd->work += w;
    }
    s->t_int = t;
}

/* Closes an imbalance window: records max/mean over nodes of the queued
 * work integrated over it (if any work was queued), and starts the next. */
static void
close_window(struct sim *s)
{
    double sum = 0, max = 0;

    for (uint32_t n = 0; n < s->p.nodes; n++) {
        sum += s->nodes[n].work;
        if (s->nodes[n].work > max) {
            max = s->nodes[n].work;
        }
        s->nodes[n].work = 0;
    }
    if (sum <= 0) {
        return;
    }
    if (grow((void **)&s->samples, &s->cap_samples, s->n_samples + 1,
             sizeof *s->samples)) {
        s->oom = true;
        return;
    }
    s->samples[s->n_samples++] = max / (sum / s->p.nodes);
}

/* Brings the imbalance accounting up to time t. */
static void
advance(struct sim *s, uint64_t t)
{
    while (s->next_window <= t) {
        integrate(s, s->next_window);
        close_window(s);
        s->next_window += s->p.sample_ns;
    }
    integrate(s, t);
}

/* ---- Lifetime and the run ---- */

static uint64_t
name_seed(const char *name, uint64_t seed)
{
    uint64_t h = 1469598103934665603ULL;

    for (const char *c = name; *c; c++) {
        h = (h ^ (unsigned char)*c) * 1099511628211ULL;
    }
    return h ^ seed;
}

int
sim_create(const struct sim_params *p, const struct trace *trace,
           const struct sim_policy_ops *ops, const void *knobs,
           struct sim **out, char *err, size_t errlen)
{
    struct sim_policy_env env;
    struct sim *s;
    int rc;

    *out = NULL;
    rc = sim_params_validate(p, err, errlen);
    if (rc) {
        return rc;
    }
    if (!trace || !trace->n || !ops || !ops->name || !ops->route) {
        mcos_seterr(err, errlen,
                    "sim: need a non-empty trace and a policy "
                    "with a route function");
        return -EINVAL;
    }
    if (trace->block_tokens != p->block_tokens) {
        mcos_seterr(err, errlen,
                    "sim: the trace was read with %u-token blocks but the "
                    "cluster uses %u",
                    trace->block_tokens, p->block_tokens);
        return -EINVAL;
    }
    if (trace->n >= NIL) {
        mcos_seterr(err, errlen, "sim: too many requests");
        return -EINVAL;
    }
    s = calloc(1, sizeof *s);
    if (!s) {
        goto nomem;
    }
    s->p = *p;
    s->trace = trace;
    s->ops = ops;
    s->routing = NIL;
    s->block_bytes = p->kv_bytes_per_token * p->block_tokens;
    s->nodes = calloc(p->nodes, sizeof *s->nodes);
    s->rs = calloc(trace->n, sizeof *s->rs);
    if (!s->nodes || !s->rs) {
        goto nomem_s;
    }
    for (uint32_t n = 0; n < p->nodes; n++) {
        struct node *nd = &s->nodes[n];

        if (u64map_init(&nd->st.map, 1024)) {
            goto nomem_s;
        }
        nd->st.free_list = NIL;
        for (int t = 0; t < SIM_TIERS; t++) {
            for (int c = 0; c < SIM_CLASSES; c++) {
                nd->st.lru[t][c] = nd->st.mru[t][c] = NIL;
            }
            nd->st.clock = &s->now;
        }
        nd->q_head = nd->q_tail = nd->serving = NIL;
    }
    snprintf(s->res.policy, sizeof s->res.policy, "%s", ops->name);
    env.params = &s->p;
    env.seed = name_seed(ops->name, p->seed);
    env.knobs = knobs;
    if (ops->create) {
        rc = ops->create(&env, &s->pstate, &s->tick_ns, err, errlen);
        if (rc) {
            s->ops = NULL;
            sim_destroy(s);
            return rc;
        }
    }
    *out = s;
    return 0;
nomem_s:
    s->ops = NULL;
    sim_destroy(s);
nomem:
    mcos_seterr(err, errlen, "sim: out of memory");
    return -ENOMEM;
}

void
sim_destroy(struct sim *s)
{
    if (!s) {
        return;
    }
    if (s->ops && s->ops->destroy) {
        s->ops->destroy(s->pstate);
    }
    if (s->nodes) {
        for (uint32_t n = 0; n < s->p.nodes; n++) {
            u64map_free(&s->nodes[n].st.map);
            free(s->nodes[n].st.e);
            free(s->nodes[n].served);
        }
    }
    if (s->rs) {
        for (size_t i = 0; i < s->trace->n; i++) {
            free(s->rs[i].pins);
            free(s->rs[i].fpins);
        }
    }
    for (size_t i = 0; i < s->n_xf; i++) {
        free((void *)s->xf[i].o.chain);
    }
    free(s->xf);
    free(s->queued);
    free(s->heap);
    free(s->samples);
    free(s->nodes);
    free(s->rs);
    free(s);
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

double
sim_percentile(double *v, size_t n, double p)
{
    size_t rank;

    if (!n) {
        return 0;
    }
    qsort(v, n, sizeof *v, cmp_double);
    rank = (size_t)ceil(p * (double)n);
    return v[rank ? rank - 1 : 0];
}

static void
finish(struct sim *s, uint64_t first, uint64_t last)
{
    struct sim_result *res = &s->res;
    const struct trace *t = s->trace;
    double *ttft = malloc(t->n * sizeof *ttft), sum = 0, busy = 0;

    res->requests = t->n;
    for (size_t i = 0; i < t->n; i++) {
        const struct sim_outcome *o = &s->rs[i].out;
        double v = (double)(o->first_token_ns - o->arrival_ns) * 1e-9;

        res->input_tokens += t->req[i].input_tokens;
        res->prefill_tokens += o->computed_tokens;
        res->hit_tokens_peer += o->hit_tokens_peer;
        for (int k = 0; k < SIM_TIERS; k++) {
            res->hit_tokens_tier[k] += o->hit_tokens_tier[k];
        }
        sum += v;
        if (ttft) {
            ttft[i] = v;
        }
    }
    res->hit_tokens = res->input_tokens - res->prefill_tokens;
    res->ttft_mean_s = sum / (double)t->n;
    if (ttft) {
        res->ttft_p50_s = sim_percentile(ttft, t->n, 0.50);
        res->ttft_p99_s = sim_percentile(ttft, t->n, 0.99);
    } else {
        s->oom = true;
    }
    free(ttft);
    res->imbalance_samples = s->n_samples;
    if (s->n_samples) {
        double m = 0;

        for (size_t i = 0; i < s->n_samples; i++) {
            m += s->samples[i];
        }
        res->imbalance_mean = m / (double)s->n_samples;
        res->imbalance_p99 = sim_percentile(s->samples, s->n_samples, 0.99);
    } else {
        res->imbalance_mean = res->imbalance_p99 = 1.0;
    }
    res->makespan_s = (double)(last - first) * 1e-9;
    for (uint32_t n = 0; n < s->p.nodes; n++) {
        busy += (double)s->nodes[n].busy_total * 1e-9;
    }
    res->utilization =
        res->makespan_s > 0 ? busy / (res->makespan_s * s->p.nodes) : 0;
}

int
sim_run(struct sim *s, struct sim_result *res, char *err, size_t errlen)
{
    const struct trace *t = s->trace;
    uint64_t first = t->req[0].arrival_us * 1000, last = first;
    size_t next_arr = 0;
    int rc = 0;

    if (s->ran) {
        mcos_seterr(err, errlen, "sim: already run");
        return -EINVAL;
    }
    s->ran = true;
    s->t_int = first;
    s->next_window = first + s->p.sample_ns;
    if (s->tick_ns) {
        ev_push(s, first + s->tick_ns, EV_TICK, 0);
        s->tick_pending = 1;
    }
    /* The run ends when no arrival is left and nothing but the next tick
     * is pending. */
    while (next_arr < t->n || s->n_heap > s->tick_pending) {
        uint64_t t_arr =
            next_arr < t->n ? t->req[next_arr].arrival_us * 1000 : UINT64_MAX;
        bool from_heap = s->n_heap && s->heap[0].t <= t_arr;
        uint64_t now = from_heap ? s->heap[0].t : t_arr;

        advance(s, now);
        s->now = now;
        if (!from_heap) {
            uint32_t id = (uint32_t)next_arr++;

            s->rs[id].out.arrival_ns = now;
            rc = arrive(s, id, err, errlen);
            if (rc) {
                return rc;
            }
        } else {
            struct event ev = ev_pop(s);

            switch (ev.type) {
            case EV_XFER:
                land(s, ev.arg);
                break;
            case EV_PREFILL_DONE:
                prefill_done(s, ev.arg);
                break;
            case EV_DECODE_DONE:
                decode_done(s, ev.arg);
                break;
            case EV_TICK:
                if (s->ops->on_tick) {
                    s->ops->on_tick(s->pstate, s);
                }
                ev_push(s, now + s->tick_ns, EV_TICK, 0);
                break;
            }
        }
        run_queued(s);
        last = now;
        if (s->oom) {
            mcos_seterr(err, errlen, "sim: out of memory");
            return -ENOMEM;
        }
    }
    finish(s, first, last);
    if (s->oom) {
        mcos_seterr(err, errlen, "sim: out of memory");
        return -ENOMEM;
    }
    *res = s->res;
    return 0;
}

int
sim_outcome(const struct sim *s, uint32_t id, struct sim_outcome *out)
{
    if (id >= s->trace->n) {
        return -EINVAL;
    }
    *out = s->rs[id].out;
    return 0;
}

size_t
sim_served(const struct sim *s, uint32_t node, const uint32_t **ids)
{
    if (node >= s->p.nodes) {
        *ids = NULL;
        return 0;
    }
    *ids = s->nodes[node].served;
    return s->nodes[node].n_served;
}
