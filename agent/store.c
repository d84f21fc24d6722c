#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "executor.h"
#include "fabric.h"
#include "log.h"
#include "residency_table.h"
#include "wire.h"

MCOS_LOG_MODULE(store);

/* Policy when the brain has pushed no table yet. */
#define DEFAULT_HIGH_PCT 90
#define DEFAULT_LOW_PCT  75

/* Why a move was started, which decides what its completion means. */
enum move_kind {
    MOVE_PLACE,     /* commit sends the object to its intended tier */
    MOVE_FETCH,     /* a get needs it in DRAM */
    MOVE_EXPLICIT,  /* mcos_move */
    MOVE_DEMOTE,    /* mcos_evict(DEMOTE) */
    MOVE_PREFETCH,  /* mcos_prefetch */
    MOVE_WATERMARK, /* background demotion over the high watermark */
    MOVE_REMOTE     /* mcos_evict(DEMOTE_TO_REMOTE) */
};

/* Replication attempts before a task gives up, and the first backoff. */
#define REPLICA_ATTEMPTS       5
#define REPLICA_BACKOFF_US     (1000 * 1000)
#define REPLICA_BACKOFF_MAX_US (30 * 1000 * 1000)

/* After a watermark demotion to a peer fails, no watermark demotion goes
 * to a peer for this long, doubling with each failure up to the maximum;
 * a demotion to a peer that succeeds resets it.  rebalance() runs after
 * every move, so without the pause a cluster with no room would be asked
 * again and again. */
#define REMOTE_BACKOFF_US     (1000 * 1000)
#define REMOTE_BACKOFF_MAX_US (30 * 1000 * 1000)

/* One replica rule of the table, as this node carries it out. */
struct replica_task {
    char key[128];    /* the rule's key */
    uint64_t object;  /* what to copy */
    char peer[64];    /* to whom */
    int tier;         /* into which of its tiers */
    int attempts;     /* failed so far */
    uint64_t next_us; /* not before (backoff) */
    bool inflight;    /* a put is running */
    bool done;        /* the peer holds a verified copy */
    bool seen;        /* still in the table (refresh marker) */
};

struct move {
    struct agent_exec_job job;       /* the copy */
    struct agent_store *s;           /* owner */
    uint64_t id;                     /* object */
    enum move_kind kind;             /* why */
    uint64_t deadline_us;            /* absolute; UINT64_MAX: none */
    struct agent_store_req *waiters; /* requests to finish after */
    bool remote;                     /* over the fabric, not the executor */
    int from;                        /* tier it leaves (leaving[]) */
    int dst;                         /* remote: REMOTE (demote) or DRAM
                                        (fetch) */
    bool staged;                     /* remote demotion: job copies the
                                        object into a DRAM staging extent
                                        (job.de), which is sent */
    struct agent_fabric_loc loc;     /* fetch: where the copy is */
    uint64_t epoch;                  /* remote: s->remote_epoch at start */
};

struct view {
    uint64_t id;     /* view id */
    uint64_t object; /* object id */
    uint32_t peer;   /* the client's connection */
};

struct agent_store {
    uv_loop_t *loop;                         /* our loop */
    const struct mcos_clock *clock;          /* time */
    struct agent_tier *tiers[AGENT_N_TIERS]; /* by kind; NULL: absent */
    bool emulated[AGENT_N_TIERS];            /* host memory standing in */
    struct agent_registry *reg;              /* objects */
    struct agent_executor *exec;             /* dataplane */
    struct agent_tables *tables;             /* policy (read side) */
    struct agent_observe *obs;               /* events */
    struct view *views;                      /* open views */
    size_t n_views, cap_views;               /* their count, capacity */
    uint64_t next_view;                      /* next view id */
    size_t inflight;                         /* moves running */
    uint64_t leaving[AGENT_N_TIERS];         /* bytes of moves under way
                                                out of each tier */
    uint64_t l2_object;                      /* holds the L2 window, 0: none */
    struct agent_store_counters counters;    /* for /metrics */
    struct agent_fabric *fabric;             /* peers, or NULL */
    char remote_err[200];                    /* why start_remote failed */
    struct replica_task *tasks;              /* replica rules */
    size_t n_tasks;                          /* their count */
    uint64_t reuse_stamp;                    /* demotion passes by the
                                                residency rule */
    uint64_t remote_hold_us;                 /* the last pause of watermark
                                                demotion to peers, 0: none
                                                since the last success */
    uint64_t remote_until_us;                /* no watermark demotion to a
                                                peer before this */
    uint64_t remote_epoch;                   /* pauses begun: a failure of a
                                                move started before the
                                                pause in force is no news */
};

/* ------------------------------------------------------------------------
 * Helpers. */

static bool
tier_ok(int kind)
{
    return kind >= MCOS__TIER_KIND__TIER_HBM &&
           kind <= MCOS__TIER_KIND__TIER_NVME;
}

static const char *
tname(int kind)
{
    return mcos_tier_name(kind);
}

static void finish(struct agent_store *s, struct agent_store_req *req,
                   int status, const struct agent_object *o, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));

static void
finish(struct agent_store *s, struct agent_store_req *req, int status,
       const struct agent_object *o, const char *fmt, ...)
{
    (void)s;
    req->status = status;
    req->error[0] = '\0';
    if (fmt) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(req->error, sizeof req->error, fmt, ap);
        va_end(ap);
    }
    req->have_obj = o != NULL;
    if (o) {
        req->obj = *o;
    }
    req->done(req, req->arg);
}

static void
event(struct agent_store *s, const struct agent_object *o,
      Mcos__EventKind kind, int tier)
{
    if (s->obs) {
        agent_observe_event(s->obs, kind, o->id, (Mcos__ObjectClass)o->cls,
                            (Mcos__TierKind)tier, o->size, o->ns, o->parent);
    }
}

static uint64_t
now_us(const struct agent_store *s)
{
    return mcos_clock_now(s->clock);
}

/* Watermarks and admission for a tier: the policy table's rule, or the
 * defaults when the brain has pushed none. */
static void
policy_tier(struct agent_store *s, int kind, uint32_t *hi, uint32_t *lo,
            uint32_t *admit)
{
    const struct mcos_table *t = agent_tables_read_lock(s->tables);
    const Mcos__TierRule *r = mcos_table_tier_rule(t, kind);

    *hi = r ? r->high_watermark_pct : DEFAULT_HIGH_PCT;
    *lo = r ? r->low_watermark_pct : DEFAULT_LOW_PCT;
    *admit = r ? r->admit_min_hotness_milli : 0;
    agent_tables_read_unlock(s->tables);
}

/* The next tier down from `kind` that this node has, per the table's
 * demotion chain or the default fastest-to-slowest order.  A chain that
 * goes on to TIER_REMOTE (peers' memory) yields it when this agent has
 * the fabric; without one the chain ends there. */
static int
policy_next(struct agent_store *s, int kind)
{
    const struct mcos_table *t = agent_tables_read_lock(s->tables);
    const Mcos__Rule *r = NULL;
    char key[32];
    int next = 0;

    if (t) {
        snprintf(key, sizeof key, "demotion/%s", tname(kind));
        r = mcos_table_find(t, key);
    }
    if (r) {
        next = r->demotion->to;
    } else {
        for (int k = kind + 1; k <= MCOS__TIER_KIND__TIER_NVME; k++) {
            if (s->tiers[k]) {
                next = k;
                break;
            }
        }
    }
    agent_tables_read_unlock(s->tables);
    if (next == MCOS__TIER_KIND__TIER_REMOTE) {
        return s->fabric ? next : 0;
    }
    return next && tier_ok(next) && s->tiers[next] ? next : 0;
}

static void
usage(const struct agent_store *s, int kind, uint64_t *used, uint64_t *cap)
{
    struct agent_tier_stats st;

    agent_tier_stats(s->tiers[kind], &st);
    *used = st.used;
    *cap = st.capacity;
}

/* Frees an extent, first forgetting an NVMe record of it. */
static void
release_extent(struct agent_store *s, int kind, uint64_t id,
               const struct agent_tier_extent *e, bool recorded)
{
    if (kind == MCOS__TIER_KIND__TIER_NVME && recorded) {
        int r = agent_tier_nvme_forget(s->tiers[kind], id);

        if (r) {
            LOG_ERR("object %016" PRIx64 ": cannot forget its NVMe record: "
                    "%s; its space stays reserved",
                    id, mcos_strerror(r));
            return;
        }
    }
    if (agent_tier_free(s->tiers[kind], e)) {
        LOG_ERR("object %016" PRIx64 ": cannot free its %s extent", id,
                tname(kind));
    }
}

/* Submits `job` to copy object o, on the dataplane thread, into the DRAM
 * extent job->de the caller allocated: a staging copy for the fabric,
 * whose checksum `done` compares with the object's. */
static int
stage_submit(struct agent_store *s, struct agent_exec_job *job,
             const struct agent_object *o, uint64_t deadline_us,
             agent_exec_done_cb done, void *arg)
{
    job->deadline_us = deadline_us;
    job->src_kind = o->tier;
    job->dst_kind = MCOS__TIER_KIND__TIER_DRAM;
    job->src = s->tiers[o->tier];
    job->se = o->ext;
    job->dst = s->tiers[MCOS__TIER_KIND__TIER_DRAM];
    job->len = o->size;
    job->done = done;
    job->arg = arg;
    return agent_exec_submit(s->exec, job);
}

static void rebalance(struct agent_store *s);
static bool ns_ok(const char *ns);

/* Hotness from which an object in HBM gets the GPU's L2 persisting window
 * (SRAM tier).  There is one window per stream: the last hot object to
 * arrive in HBM holds it. */
#define L2_HINT_MIN_HOTNESS_MILLI 900

/* The SRAM/L2 residency hint: only on a real GPU whose L2 supports
 * persistence -- on emulated HBM or without support nothing is set (never
 * faked), and a refusal leaves the object where it is. */
static void
l2_hint(struct agent_store *s, const struct agent_object *o)
{
    struct agent_tier *hbm = s->tiers[MCOS__TIER_KIND__TIER_HBM];
    int r;

    if (o->tier != MCOS__TIER_KIND__TIER_HBM || !hbm ||
        s->emulated[MCOS__TIER_KIND__TIER_HBM] ||
        o->hotness_milli < L2_HINT_MIN_HOTNESS_MILLI) {
        return;
    }
    r = agent_tier_hbm_l2_hint(hbm, &o->ext, o->size, 1.0f);
    if (r == 0) {
        s->l2_object = o->id;
    } else if (r != -ENOTSUP) {
        LOG_DBG("object %016" PRIx64 ": no L2 window: %s", o->id,
                mcos_strerror(r));
    }
}

/* ------------------------------------------------------------------------
 * Moves.  The residency state machine: RESIDENT(src) -> MOVING(src->dst)
 * -> RESIDENT(dst) once the copy is verified, or back to RESIDENT(src). */

static void move_done(struct agent_exec_job *job, void *arg);
static void move_end(struct agent_store *s, struct move *m,
                     struct agent_object *o, int status, const char *why,
                     bool late);
static int start_remote(struct agent_store *s, struct agent_object *o, int dst,
                        enum move_kind kind, uint64_t deadline_us,
                        struct move **out);

/* The object's copy to `dst` is under way (executor or fabric). */
static int
moving(struct agent_store *s, struct agent_object *o, int dst, struct move *m,
       struct move **out)
{
    o->state = AGENT_OBJ_MOVING;
    o->moving_to = dst;
    o->inflight = m;
    s->inflight++;
    m->from = o->tier;
    if (tier_ok(o->tier)) {
        s->leaving[o->tier] += o->size;
    }
    if (out) {
        *out = m;
    }
    return 0;
}

static int
start_move(struct agent_store *s, struct agent_object *o, int dst,
           enum move_kind kind, uint64_t deadline_us, struct move **out)
{
    struct move *m = calloc(1, sizeof *m);
    int r;

    if (!m) {
        return -ENOMEM;
    }
    if (o->tier == MCOS__TIER_KIND__TIER_REMOTE ||
        dst == MCOS__TIER_KIND__TIER_REMOTE) {
        free(m);
        return start_remote(s, o, dst, kind, deadline_us, out);
    }
    r = agent_tier_alloc(s->tiers[dst], o->size, &m->job.de);
    if (r) {
        free(m);
        return r;
    }
    m->s = s;
    m->id = o->id;
    m->kind = kind;
    m->deadline_us = deadline_us;
    m->job.deadline_us = deadline_us;
    m->job.src_kind = o->tier;
    m->job.dst_kind = dst;
    m->job.src = s->tiers[o->tier];
    m->job.se = o->ext;
    m->job.dst = s->tiers[dst];
    m->job.len = o->size;
    m->job.done = move_done;
    m->job.arg = m;
    r = agent_exec_submit(s->exec, &m->job);
    if (r) {
        agent_tier_free(s->tiers[dst], &m->job.de);
        free(m);
        return r;
    }
    return moving(s, o, dst, m, out);
}

static void dispatch(struct agent_store *s, struct agent_store_req *req);

static void
move_done(struct agent_exec_job *job, void *arg)
{
    struct move *m = arg;
    struct agent_store *s = m->s;
    struct agent_object *o = agent_registry_find(s->reg, m->id);
    int src = job->src_kind, dst = job->dst_kind;
    int status = job->status;
    char why[160] = "";

    s->inflight--;
    if (!o) {
        /* Cannot happen: objects that are moving are never dropped. */
        LOG_ERR("move of unknown object %016" PRIx64, m->id);
        agent_tier_free(s->tiers[dst], &job->de);
        free(m);
        return;
    }
    if (status == 0 && job->checksum != o->checksum) {
        status = -EBADMSG;
        snprintf(why, sizeof why,
                 "copy to %s failed verification (checksum %016" PRIx64
                 ", want %016" PRIx64 "); the object stays in %s",
                 tname(dst), job->checksum, o->checksum, tname(src));
    } else if (status) {
        snprintf(why, sizeof why,
                 "copy to %s failed: %s; the object stays "
                 "in %s",
                 tname(dst), mcos_strerror(status), tname(src));
    }
    if (status == 0 && dst == MCOS__TIER_KIND__TIER_NVME) {
        /* Recorded before the source goes, so a crash never loses the
         * only copy. */
        status = agent_tier_nvme_record(s->tiers[dst], o->id, &job->de,
                                        o->checksum);
        if (status) {
            snprintf(why, sizeof why,
                     "cannot record the object on NVMe: "
                     "%s; it stays in %s",
                     mcos_strerror(status), tname(src));
        }
    }
    if (status == 0) {
        release_extent(s, src, o->id, &job->se,
                       src == MCOS__TIER_KIND__TIER_NVME);
        o->ext = job->de;
        agent_registry_set_tier(s->reg, o, dst);
        l2_hint(s, o);
        s->counters.moves++;
        event(s, o,
              dst < src ? MCOS__EVENT_KIND__EVENT_PROMOTED
                        : MCOS__EVENT_KIND__EVENT_DEMOTED,
              dst);
        if (m->kind == MOVE_PREFETCH) {
            o->prefetched = true;
            o->prefetch_deadline = m->deadline_us;
            if (job->late) {
                s->counters.prefetch_late++;
                event(s, o, MCOS__EVENT_KIND__EVENT_PREFETCH_LATE, dst);
            }
        }
        if (m->kind == MOVE_WATERMARK) {
            s->counters.demotions++;
        }
    } else {
        agent_tier_free(s->tiers[dst], &job->de);
        s->counters.move_failures++;
        LOG_WARN("object %016" PRIx64 ": %s", o->id, why);
    }
    move_end(s, m, o, status, why, job->late);
}

/* The end of every move: the object is RESIDENT again (where it is now)
 * and the requests that waited for the move go on. */
static void
move_end(struct agent_store *s, struct move *m, struct agent_object *o,
         int status, const char *why, bool late)
{
    struct agent_store_req *w;

    o->state = AGENT_OBJ_RESIDENT;
    o->moving_to = 0;
    o->inflight = NULL;
    if (tier_ok(m->from)) {
        s->leaving[m->from] -= o->size;
    }

    /* Requests that waited for this move. */
    w = m->waiters;
    while (w) {
        struct agent_store_req *next = w->next_waiter;

        w->late = late;
        /* A get that waited for its own fetch fails with it, rather than
         * fetching again and again. */
        if (status &&
            (w->op != MCOS__API_OP__API_GET || m->kind == MOVE_FETCH)) {
            finish(s, w, status, o, "%s", why);
        } else if (w->op == MCOS__API_OP__API_MOVE ||
                   w->op == MCOS__API_OP__API_EVICT) {
            finish(s, w, 0, o, NULL);
        } else {
            /* A get (or another intent) that waited: run it again now. */
            dispatch(s, w);
        }
        w = next;
    }
    free(m);
    rebalance(s);
}

static void
add_waiter(struct agent_object *o, struct agent_store_req *req)
{
    struct move *m = o->inflight;

    req->next_waiter = m->waiters;
    m->waiters = req;
}

/* True while watermark demotion to peers is paused after a failure. */
static bool
remote_paused(const struct agent_store *s)
{
    return s->remote_hold_us && now_us(s) < s->remote_until_us;
}

/* A watermark demotion of object `id` out of tier `from` to a peer failed
 * (`why`): pauses watermark demotion to peers, and says so once per
 * pause.  A failure of a move started before the pause in force (one of
 * the same pass, answered later) starts no new one. */
static void
remote_pause(struct agent_store *s, uint64_t epoch, uint64_t id, int from,
             const char *why)
{
    if (epoch != s->remote_epoch) {
        return;
    }
    s->remote_hold_us =
        s->remote_hold_us ? s->remote_hold_us * 2 : REMOTE_BACKOFF_US;
    if (s->remote_hold_us > REMOTE_BACKOFF_MAX_US) {
        s->remote_hold_us = REMOTE_BACKOFF_MAX_US;
    }
    s->remote_until_us = now_us(s) + s->remote_hold_us;
    s->remote_epoch++;
    s->counters.remote_demotion_backoffs++;
    LOG_WARN("watermark demotion to a peer failed (object %016" PRIx64
             " stays in %s): %s; the next try in %" PRIu64 " s",
             id, tname(from), why, s->remote_hold_us / 1000000);
}

/* Starts the watermark demotion of o to `next`; a failure pauses
 * demotion to peers when `next` is one. */
static int
demote(struct agent_store *s, struct agent_object *o, int next)
{
    int r;

    s->remote_err[0] = '\0';
    r = start_move(s, o, next, MOVE_WATERMARK, UINT64_MAX, NULL);
    if (r && next == MCOS__TIER_KIND__TIER_REMOTE) {
        remote_pause(s, s->remote_epoch, o->id, o->tier,
                     *s->remote_err ? s->remote_err : mcos_strerror(r));
    }
    return r;
}

/* A demotion candidate under the residency rule. */
struct cand {
    struct agent_object *o; /* the object */
    uint32_t score;         /* the table's score at its class and age */
    uint32_t rank;          /* its place from the cold end of the LRU */
};

static int
cand_cmp(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;

    if (x->score != y->score) {
        return x->score < y->score ? -1 : 1;
    }
    return x->rank < y->rank ? -1 : x->rank > y->rank;
}

/* Candidates scanned from a tier's cold end in one demotion pass. */
#define RESIDENCY_SCAN 4096
/* Longest chain a reuse rule walks back through parents. */
#define RESIDENCY_DEPTH 4096

/* The reuse rules' classes: each rule names a turn's last block; it and
 * the blocks before it in its chain (parent links) take the rule's class
 * for this pass.  Rules are walked in key order, so a block two chains
 * share takes the class of the later key. */
static void
mark_reuse(struct agent_store *s, const struct mcos_table *t)
{
    s->reuse_stamp++;
    for (size_t i = 0; i < mcos_table_n_rules(t); i++) {
        const Mcos__Rule *r = mcos_table_rule(t, i);
        struct agent_object *o;

        if (r->rule_case != MCOS__RULE__RULE_REUSE) {
            continue;
        }
        o = agent_registry_find(s->reg, r->reuse->object_id);
        for (int d = 0; o && d < RESIDENCY_DEPTH; d++) {
            o->reuse_class = (uint8_t)r->reuse->reuse_class;
            o->reuse_stamp = s->reuse_stamp;
            o = o->parent ? agent_registry_find(s->reg, o->parent) : NULL;
        }
    }
}

/* Demotes from tier `kind` down to `next` in the order of the residency
 * rule (common/residency_table.h): of the RESIDENCY_SCAN coldest movable
 * objects, the lowest score at its class and idle age first, the colder
 * of equal scores first, until `used` reaches `target`.  Returns -ENOENT
 * when the table has no residency rule (the caller demotes by LRU). */
static int
rebalance_residency(struct agent_store *s, int kind, int next, uint64_t used,
                    uint64_t target)
{
    const struct mcos_table *t = agent_tables_read_lock(s->tables);
    struct mcos_residency_table rt;
    struct cand *c = NULL;
    unsigned def;
    uint64_t now = now_us(s) * 1000;
    size_t n = 0;

    if (mcos_table_residency(t, &rt, &def) != 0) {
        agent_tables_read_unlock(s->tables);
        return -ENOENT;
    }
    mark_reuse(s, t);
    agent_tables_read_unlock(s->tables);
    c = calloc(RESIDENCY_SCAN, sizeof *c);
    if (!c) {
        return -ENOENT; /* out of memory: LRU still works */
    }
    for (struct agent_object *o = agent_registry_coldest(s->reg, kind);
         o && n < RESIDENCY_SCAN; o = o->lru_prev) {
        unsigned cls;
        uint64_t last;

        if (o->state != AGENT_OBJ_RESIDENT || o->pins || o->views ||
            o->tier != kind) {
            continue;
        }
        cls = o->reuse_stamp == s->reuse_stamp ? o->reuse_class : def;
        last = (o->last_access_us > o->created_us ? o->last_access_us
                                                  : o->created_us) *
               1000;
        c[n].o = o;
        c[n].score = rt.score[cls][mcos_residency_age(
            rt.age_unit_ns, now > last ? now - last : 0)];
        c[n].rank = (uint32_t)n;
        n++;
    }
    qsort(c, n, sizeof *c, cand_cmp);
    for (size_t i = 0; i < n && used > target; i++) {
        if (demote(s, c[i].o, next)) {
            break; /* the tier below is full: stop, drop nothing */
        }
        s->counters.residency_demotions++;
        used = used > c[i].o->size ? used - c[i].o->size : 0;
    }
    free(c);
    return 0;
}

/* Background demotion: a tier over its high watermark sends objects down
 * the chain until it is at its low watermark, as far as the tier below
 * has room: in the order of the table's residency rule when it has one,
 * else its coldest unpinned objects first (LRU).  Where the chain goes on
 * to peers' memory, the objects go over the fabric (start_remote), except
 * while a failure has paused that (remote_pause).  Nothing is ever
 * dropped here. */
static void
rebalance(struct agent_store *s)
{
    for (int kind = MCOS__TIER_KIND__TIER_HBM;
         kind <= MCOS__TIER_KIND__TIER_NVME; kind++) {
        uint32_t hi, lo, admit;
        uint64_t used, cap, target;
        struct agent_object *o, *prev;
        int next;

        if (!s->tiers[kind]) {
            continue;
        }
        policy_tier(s, kind, &hi, &lo, &admit);
        usage(s, kind, &used, &cap);
        /* What moves under way will free is as good as free: counting it
         * would demote more each time a pass runs before they land. */
        used = used > s->leaving[kind] ? used - s->leaving[kind] : 0;
        if (used * 100 <= (uint64_t)hi * cap) {
            continue;
        }
        next = policy_next(s, kind);
        if (!next ||
            (next == MCOS__TIER_KIND__TIER_REMOTE && remote_paused(s))) {
            continue;
        }
        target = cap * lo / 100;
        if (rebalance_residency(s, kind, next, used, target) == 0) {
            continue;
        }
        for (o = agent_registry_coldest(s->reg, kind); o && used > target;
             o = prev) {
            prev = o->lru_prev;
            if (o->state != AGENT_OBJ_RESIDENT || o->pins || o->views ||
                o->tier != kind) {
                continue;
            }
            if (demote(s, o, next)) {
                break; /* the tier below is full: stop, drop nothing */
            }
            used = used > o->size ? used - o->size : 0;
        }
    }
}

/* ------------------------------------------------------------------------
 * Remote moves: one hop over the fabric, to a peer (demote) or back into
 * DRAM (fetch).  A demotion sends from where the object is when the
 * transport reaches it (DRAM; HBM whose region it has registered), else
 * from a verified DRAM staging copy.  The fabric verifies every byte
 * before it reports success; only then is the source freed. */

static void remote_done(const struct agent_fabric_result *res, void *arg);
static void remote_staged(struct agent_exec_job *job, void *arg);

/* What a peer learns of an object it receives: its intent. */
static void
peer_meta(const struct agent_object *o, Mcos__PeerRequest *meta)
{
    meta->object_id = o->id;
    meta->class_ = (Mcos__ObjectClass)o->cls;
    meta->ns = (char *)o->ns;
    meta->parent_id = o->parent;
    meta->hotness_milli = o->hotness_milli;
}

/* Hands the bytes at `e` of `tier` (the object's own extent, or its
 * staging copy in DRAM) to the fabric, which picks the peer. */
static int
remote_put(struct agent_store *s, struct move *m, const struct agent_object *o,
           int tier, const struct agent_tier_extent *e)
{
    Mcos__PeerRequest meta = MCOS__PEER_REQUEST__INIT;

    peer_meta(o, &meta);
    return agent_fabric_put_from(s->fabric, NULL,
                                 MCOS__PEER_PURPOSE__PURPOSE_HOSTED, 0, &meta,
                                 tier, e, o->size, o->checksum, remote_done, m,
                                 s->remote_err, sizeof s->remote_err);
}

/* A DRAM staging copy (of an object the transport cannot reach where it
 * is) lives only until its attempt ends: it counts as leaving DRAM, so a
 * watermark pass meanwhile does not demote other objects to make up for
 * it. */
static int
staging_alloc(struct agent_store *s, uint64_t size,
              struct agent_tier_extent *e)
{
    int r = agent_tier_alloc(s->tiers[MCOS__TIER_KIND__TIER_DRAM], size, e);

    if (r == 0) {
        s->leaving[MCOS__TIER_KIND__TIER_DRAM] += e->len;
    }
    return r;
}

static void
staging_free(struct agent_store *s, const struct agent_tier_extent *e)
{
    s->leaving[MCOS__TIER_KIND__TIER_DRAM] -= e->len;
    agent_tier_free(s->tiers[MCOS__TIER_KIND__TIER_DRAM], e);
}

/* The transport cannot reach the object where it is (NVMe; HBM over TCP,
 * or not registered): the executor copies it into a DRAM staging extent
 * first; remote_staged() checks the copy and sends it. */
static int
remote_stage(struct agent_store *s, struct move *m,
             const struct agent_object *o)
{
    int r = staging_alloc(s, o->size, &m->job.de);

    if (r) {
        snprintf(s->remote_err, sizeof s->remote_err,
                 "no room in dram to stage %" PRIu64 " bytes from %s", o->size,
                 tname(o->tier));
        return r;
    }
    r = stage_submit(s, &m->job, o, m->deadline_us, remote_staged, m);
    if (r) {
        snprintf(s->remote_err, sizeof s->remote_err,
                 "cannot stage it from %s: %s", tname(o->tier),
                 mcos_strerror(r));
        staging_free(s, &m->job.de);
        return r;
    }
    m->staged = true;
    return 0;
}

static int
start_remote(struct agent_store *s, struct agent_object *o, int dst,
             enum move_kind kind, uint64_t deadline_us, struct move **out)
{
    struct agent_tier *dram = s->tiers[MCOS__TIER_KIND__TIER_DRAM];
    struct move *m;
    int r;

    s->remote_err[0] = '\0';
    if (!s->fabric) {
        snprintf(s->remote_err, sizeof s->remote_err,
                 "this agent runs without the fabric");
        return -ENOTSUP;
    }
    if (o->tier == MCOS__TIER_KIND__TIER_REMOTE &&
        dst != MCOS__TIER_KIND__TIER_DRAM) {
        snprintf(s->remote_err, sizeof s->remote_err,
                 "objects come back from the fabric into dram only");
        return -ENOTSUP;
    }
    if (!(m = calloc(1, sizeof *m))) {
        return -ENOMEM;
    }
    m->s = s;
    m->id = o->id;
    m->kind = kind;
    m->deadline_us = deadline_us;
    m->remote = true;
    m->dst = dst;
    m->epoch = s->remote_epoch;
    m->job.src_kind = o->tier;
    m->job.dst_kind = dst;
    m->job.se = o->ext;
    if (dst == MCOS__TIER_KIND__TIER_REMOTE &&
        (o->tier == MCOS__TIER_KIND__TIER_DRAM ||
         agent_fabric_direct(s->fabric, NULL, o->tier, &o->ext))) {
        /* DRAM, or HBM whose region a peer's transport reaches. */
        r = remote_put(s, m, o, o->tier, &o->ext);
    } else if (dst == MCOS__TIER_KIND__TIER_REMOTE) {
        r = remote_stage(s, m, o);
    } else {
        r = agent_tier_alloc(dram, o->size, &m->job.de);
        if (r) {
            snprintf(s->remote_err, sizeof s->remote_err,
                     "no room in dram for %" PRIu64 " bytes", o->size);
        } else {
            m->loc = *(const struct agent_fabric_loc *)o->remote;
            r = agent_fabric_get(s->fabric, &m->loc, &m->job.de, o->size,
                                 o->checksum, remote_done, m, s->remote_err,
                                 sizeof s->remote_err);
            if (r) {
                agent_tier_free(dram, &m->job.de);
            }
        }
    }
    if (r) {
        if (kind != MOVE_WATERMARK) { /* else remote_pause() says why */
            LOG_WARN("object %016" PRIx64 ": %s", o->id, s->remote_err);
        }
        free(m);
        return r;
    }
    return moving(s, o, dst, m, out);
}

/* Whether a staging copy out of an object's tier holds its bytes (`want`
 * is the object's checksum): 0, or the error with why in err. */
static int
staged_verified(const struct agent_exec_job *job, uint64_t want, char *err,
                size_t errlen)
{
    if (job->status) {
        snprintf(err, errlen, "staging out of %s: %s", tname(job->src_kind),
                 mcos_strerror(job->status));
        return job->status;
    }
    if (job->checksum != want) {
        snprintf(err, errlen,
                 "staging out of %s: checksum %016" PRIx64
                 ", want %016" PRIx64,
                 tname(job->src_kind), job->checksum, want);
        return -EIO;
    }
    return 0;
}

/* The staging copy is done: send it if its bytes are the object's. */
static void
remote_staged(struct agent_exec_job *job, void *arg)
{
    struct move *m = arg;
    struct agent_store *s = m->s;
    struct agent_object *o = agent_registry_find(s->reg, m->id);
    struct agent_fabric_result res;

    memset(&res, 0, sizeof res);
    if (job->status || o) {
        res.status = staged_verified(job, o ? o->checksum : 0, res.error,
                                     sizeof res.error);
    }
    if (res.status == 0 && o && !s->fabric) {
        res.status = -ECANCELED;
        snprintf(res.error, sizeof res.error, "the fabric is closed");
    } else if (res.status == 0 && o) {
        res.status = remote_put(s, m, o, MCOS__TIER_KIND__TIER_DRAM, &job->de);
        if (res.status == 0) {
            return; /* remote_done runs when the peer answers */
        }
        snprintf(res.error, sizeof res.error, "%s", s->remote_err);
    }
    remote_done(&res, m);
}

/* A put straight from HBM tries only the peers whose transport has our
 * HBM region.  When it failed because none of them had room, a peer
 * reached by another transport may take a DRAM staging copy: the move
 * goes on that way (true), else it fails with the first error. */
static bool
remote_restage(struct agent_store *s, struct move *m, struct agent_object *o,
               const struct agent_fabric_result *res)
{
    if (m->staged || m->dst != MCOS__TIER_KIND__TIER_REMOTE ||
        m->job.src_kind != MCOS__TIER_KIND__TIER_HBM ||
        (res->status != -ENOSPC && res->status != -EFBIG &&
         res->status != -EEXIST) ||
        !s->fabric ||
        !agent_fabric_staged_peers(s->fabric, o->tier, &o->ext)) {
        return false;
    }
    if (remote_stage(s, m, o)) {
        LOG_WARN("object %016" PRIx64 ": %s; no staging copy for the other "
                 "peers either: %s",
                 o->id, res->error, s->remote_err);
        return false;
    }
    LOG_INFO("object %016" PRIx64 ": %s; trying the peers without our HBM "
             "region through a dram staging copy",
             o->id, res->error);
    s->inflight++;
    return true;
}

static void
remote_done(const struct agent_fabric_result *res, void *arg)
{
    struct move *m = arg;
    struct agent_store *s = m->s;
    struct agent_tier *dram = s->tiers[MCOS__TIER_KIND__TIER_DRAM];
    struct agent_object *o = agent_registry_find(s->reg, m->id);
    int src = m->job.src_kind, dst = m->dst;
    int status = res->status;
    char why[260] = "";

    s->inflight--;
    if (m->staged) {
        /* The staging copy was only there to be sent. */
        staging_free(s, &m->job.de);
    }
    if (!o) {
        LOG_ERR("remote move of unknown object %016" PRIx64, m->id);
        if (dst == MCOS__TIER_KIND__TIER_DRAM) {
            agent_tier_free(dram, &m->job.de);
        }
        free(m);
        return;
    }
    if (status && remote_restage(s, m, o, res)) {
        return;
    }
    if (status == 0 && dst == MCOS__TIER_KIND__TIER_REMOTE) {
        struct agent_fabric_loc *loc = malloc(sizeof *loc);

        if (!loc) {
            agent_fabric_free(s->fabric, &res->loc, o->id);
            status = -ENOMEM;
            snprintf(why, sizeof why, "out of memory; the object stays in %s",
                     tname(src));
        } else {
            /* The peer holds a verified copy: ours may go. */
            *loc = res->loc;
            release_extent(s, src, o->id, &m->job.se,
                           src == MCOS__TIER_KIND__TIER_NVME);
            o->remote = loc;
            o->ext.off = loc->offset;
            agent_registry_set_tier(s->reg, o, dst);
            s->counters.moves++;
            s->counters.remote_demotions++;
            s->counters.demotions += m->kind == MOVE_WATERMARK;
            /* Peers take objects again. */
            s->remote_hold_us = 0;
            s->remote_until_us = 0;
            if (m->staged) {
                s->counters.remote_staged++;
            } else if (src == MCOS__TIER_KIND__TIER_HBM) {
                s->counters.remote_from_hbm++;
            }
            event(s, o, MCOS__EVENT_KIND__EVENT_DEMOTED, dst);
            LOG_INFO("object %016" PRIx64 " (%" PRIu64 " bytes) now lives on "
                     "%s, sent from %s%s",
                     o->id, o->size, loc->peer, tname(src),
                     m->staged ? " through a dram staging copy" : "");
        }
    } else if (status == 0) {
        /* Back in our DRAM, verified: the peer's copy may go. */
        agent_fabric_free(s->fabric, &m->loc, o->id);
        free(o->remote);
        o->remote = NULL;
        o->ext = m->job.de;
        agent_registry_set_tier(s->reg, o, dst);
        s->counters.moves++;
        s->counters.remote_fetches++;
        event(s, o, MCOS__EVENT_KIND__EVENT_PROMOTED, dst);
        if (m->kind == MOVE_PREFETCH) {
            o->prefetched = true;
            o->prefetch_deadline = m->deadline_us;
        }
    } else {
        if (dst == MCOS__TIER_KIND__TIER_DRAM) {
            agent_tier_free(dram, &m->job.de);
        }
        snprintf(why, sizeof why, "%.200s; the object stays in %s", res->error,
                 tname(src));
        s->counters.move_failures++;
        if (m->kind == MOVE_WATERMARK && status == -ECANCELED) {
            /* The agent is stopping: nothing to pause or to warn of. */
            LOG_DBG("object %016" PRIx64 ": %s", o->id, why);
        } else if (m->kind == MOVE_WATERMARK) {
            remote_pause(s, m->epoch, o->id, src, res->error);
        } else {
            LOG_WARN("object %016" PRIx64 ": %s", o->id, why);
        }
    }
    move_end(s, m, o, status, why, false);
}

/* ------------------------------------------------------------------------
 * Replication: the table's replica rules, carried out with retries. */

struct replica_ctx {
    struct agent_store *s;     /* owner */
    char key[128];             /* the task's rule key */
    uint64_t object;           /* pinned while it is sent */
    uint64_t checksum;         /* the object's, when the attempt began */
    bool staged;               /* job.de is a DRAM copy to send from */
    struct agent_exec_job job; /* staging copy out of hbm or nvme */
};

static struct replica_task *
task_find(struct agent_store *s, const char *key)
{
    for (size_t i = 0; i < s->n_tasks; i++) {
        if (!strcmp(s->tasks[i].key, key)) {
            return &s->tasks[i];
        }
    }
    return NULL;
}

static void
tasks_compact(struct agent_store *s)
{
    size_t j = 0;

    for (size_t i = 0; i < s->n_tasks; i++) {
        if (s->tasks[i].seen || s->tasks[i].inflight) {
            s->tasks[j++] = s->tasks[i];
        }
    }
    s->n_tasks = j;
}

static void
replica_done(const struct agent_fabric_result *res, void *arg)
{
    struct replica_ctx *c = arg;
    struct agent_store *s = c->s;
    struct agent_object *o = agent_registry_find(s->reg, c->object);
    struct replica_task *t = task_find(s, c->key);

    if (o && o->pins) {
        o->pins--;
    }
    if (t) {
        t->inflight = false;
        if (res->status == 0 || res->status == -EEXIST) {
            t->done = true;
            s->counters.replicas_sent += res->status == 0;
            LOG_INFO("object %016" PRIx64 " replicated to %s (%s)", t->object,
                     t->peer, tname(t->tier));
        } else {
            uint64_t backoff = REPLICA_BACKOFF_US << t->attempts;

            t->attempts++;
            s->counters.replica_failures++;
            t->next_us = now_us(s) + (backoff > REPLICA_BACKOFF_MAX_US
                                          ? REPLICA_BACKOFF_MAX_US
                                          : backoff);
            if (t->attempts >= REPLICA_ATTEMPTS) {
                LOG_ERR("replica of %016" PRIx64 " to %s: giving up after "
                        "%d attempts: %s",
                        t->object, t->peer, t->attempts, res->error);
            }
        }
        tasks_compact(s);
    }
    if (c->staged) {
        staging_free(s, &c->job.de);
    }
    free(c);
    if (o) {
        rebalance(s);
    }
}

/* Ends an attempt that failed before the fabric took it. */
static void replica_failed(struct replica_ctx *c, int status, const char *fmt,
                           ...) __attribute__((format(printf, 3, 4)));

static void
replica_failed(struct replica_ctx *c, int status, const char *fmt, ...)
{
    struct agent_fabric_result res = {.status = status};
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(res.error, sizeof res.error, fmt, ap);
    va_end(ap);
    replica_done(&res, c);
}

/* Hands the bytes at `e` of `tier` (the object's own extent in DRAM or
 * HBM, or a staged DRAM copy) to the fabric. */
static void
replica_send(struct agent_store *s, struct replica_ctx *c,
             struct agent_object *o, int tier,
             const struct agent_tier_extent *e)
{
    struct replica_task *t = task_find(s, c->key);
    Mcos__PeerRequest meta = MCOS__PEER_REQUEST__INIT;
    char err[200];
    int r;

    if (!t) {
        replica_failed(c, -ECANCELED, "the task left the table");
        return;
    }
    peer_meta(o, &meta);
    r = agent_fabric_put_from(s->fabric, t->peer,
                              MCOS__PEER_PURPOSE__PURPOSE_REPLICA, t->tier,
                              &meta, tier, e, o->size, c->checksum,
                              replica_done, c, err, sizeof err);
    if (r) {
        replica_failed(c, r, "%s", err);
    }
}

/* The staging copy is done: send it if its bytes are the object's. */
static void
replica_staged(struct agent_exec_job *job, void *arg)
{
    struct replica_ctx *c = arg;
    struct agent_store *s = c->s;
    struct agent_object *o = agent_registry_find(s->reg, c->object);
    char err[200];
    int r = staged_verified(job, c->checksum, err, sizeof err);

    if (r) {
        replica_failed(c, r, "%s", err);
    } else if (!o) {
        replica_failed(c, -ENOENT, "the object is gone");
    } else if (!s->fabric) {
        replica_failed(c, -ECANCELED, "the fabric is closed");
    } else {
        replica_send(s, c, o, MCOS__TIER_KIND__TIER_DRAM, &job->de);
    }
}

static void
replica_start(struct agent_store *s, struct replica_task *t)
{
    struct agent_object *o = agent_registry_find(s->reg, t->object);
    struct agent_tier *dram = s->tiers[MCOS__TIER_KIND__TIER_DRAM];
    struct replica_ctx *c;
    int r;

    if (!o || o->state != AGENT_OBJ_RESIDENT || !dram) {
        /* Not here, or moving: look again later. */
        t->next_us = now_us(s) + REPLICA_BACKOFF_US;
        return;
    }
    if (!(c = calloc(1, sizeof *c))) {
        return;
    }
    c->s = s;
    c->object = o->id;
    c->checksum = o->checksum;
    snprintf(c->key, sizeof c->key, "%s", t->key);
    /* Pinned while its bytes are read, so nothing moves or frees them. */
    o->pins++;
    t->inflight = true;
    if (o->tier == MCOS__TIER_KIND__TIER_DRAM ||
        agent_fabric_direct(s->fabric, t->peer, o->tier, &o->ext)) {
        /* DRAM, or HBM whose region the peer's transport reaches. */
        replica_send(s, c, o, o->tier, &o->ext);
        return;
    }
    /* The transport cannot reach the object where it is (NVMe; HBM over
     * TCP, or not registered): copy it into registered DRAM first (on
     * the dataplane thread, verified), send the copy, free it when the
     * attempt ends. */
    r = staging_alloc(s, o->size, &c->job.de);
    if (r) {
        replica_failed(c, r, "no room in dram to stage it from %s",
                       tname(o->tier));
        return;
    }
    c->staged = true;
    s->counters.replicas_staged++;
    r = stage_submit(s, &c->job, o, UINT64_MAX, replica_staged, c);
    if (r) {
        replica_failed(c, r, "staging out of %s: %s", tname(o->tier),
                       mcos_strerror(r));
    }
}

/* Starts the tasks that are due: new ones, and retries past their
 * backoff.  Cheap: the table is not read. */
static void
replicas_due(struct agent_store *s)
{
    uint64_t now = now_us(s);

    for (size_t i = 0; i < s->n_tasks; i++) {
        struct replica_task *k = &s->tasks[i];

        if (k->seen && !k->done && !k->inflight &&
            k->attempts < REPLICA_ATTEMPTS && now >= k->next_us) {
            replica_start(s, k);
        }
    }
}

static void drop(struct agent_store *s, struct agent_object *o);

/* The table's drop/ rules: copies the brain made that nobody used (it
 * sends them only while another node holds the object). */
static void
drops_apply(struct agent_store *s)
{
    const struct mcos_table *t = agent_tables_read_lock(s->tables);
    size_t n = t ? mcos_table_n_rules(t) : 0, k = 0;
    uint64_t *ids = calloc(n + 1, sizeof *ids);

    for (size_t i = 0; ids && i < n; i++) {
        const Mcos__Rule *r = mcos_table_rule(t, i);

        if (r->rule_case == MCOS__RULE__RULE_DROP) {
            ids[k++] = r->drop->object_id;
        }
    }
    agent_tables_read_unlock(s->tables);
    for (size_t i = 0; i < k; i++) {
        struct agent_object *o = agent_registry_find(s->reg, ids[i]);

        if (!o || o->state != AGENT_OBJ_RESIDENT || o->pins || o->views ||
            o->tier == MCOS__TIER_KIND__TIER_REMOTE) {
            continue;
        }
        LOG_INFO("object %016" PRIx64 " dropped from %s: the brain's "
                 "replica was not used",
                 o->id, tname(o->tier));
        drop(s, o);
        s->counters.rule_drops++;
    }
    free(ids);
}

/* A prefetch/ rule fires: `trigger` was just read here, so the objects
 * that usually follow it move up now, before they are asked for. */
static void
prefetch_by_rule(struct agent_store *s, uint64_t trigger)
{
    const struct mcos_table *t = agent_tables_read_lock(s->tables);
    uint64_t ids[MCOS_TABLE_MAX_PREFETCH];
    const Mcos__Rule *r = NULL;
    uint32_t deadline_ms = 0;
    size_t n = 0;
    int tier = 0;
    char key[32];

    if (t) {
        snprintf(key, sizeof key, "prefetch/%016" PRIx64, trigger);
        r = mcos_table_find(t, key);
    }
    if (r && r->rule_case == MCOS__RULE__RULE_PREFETCH) {
        n = r->prefetch->n_objects;
        memcpy(ids, r->prefetch->objects, n * sizeof *ids);
        tier = r->prefetch->tier;
        deadline_ms = r->prefetch->deadline_ms;
    }
    agent_tables_read_unlock(s->tables);
    if (n == 0 || !tier_ok(tier) || !s->tiers[tier]) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct agent_object *o = agent_registry_find(s->reg, ids[i]);

        /* Only an object at rest in a slower tier of this node. */
        if (!o || o->state != AGENT_OBJ_RESIDENT || o->pins || o->views ||
            o->tier <= tier || o->tier == MCOS__TIER_KIND__TIER_REMOTE) {
            continue;
        }
        if (start_move(s, o, tier, MOVE_PREFETCH,
                       now_us(s) + (uint64_t)deadline_ms * 1000, NULL) == 0) {
            s->counters.rule_prefetches++;
        }
    }
}

void
agent_store_replicate(struct agent_store *s)
{
    const struct mcos_table *t;
    size_t n;

    drops_apply(s);
    if (!s->fabric) {
        return;
    }
    for (size_t i = 0; i < s->n_tasks; i++) {
        s->tasks[i].seen = false;
    }
    t = agent_tables_read_lock(s->tables);
    n = t ? mcos_table_n_rules(t) : 0;
    for (size_t i = 0; i < n; i++) {
        const Mcos__Rule *r = mcos_table_rule(t, i);
        struct replica_task *k;

        if (r->rule_case != MCOS__RULE__RULE_REPLICA) {
            continue;
        }
        k = task_find(s, r->key);
        if (!k) {
            void *p = realloc(s->tasks, (s->n_tasks + 1) * sizeof *s->tasks);

            if (!p) {
                break;
            }
            s->tasks = p;
            k = &s->tasks[s->n_tasks++];
            memset(k, 0, sizeof *k);
            snprintf(k->key, sizeof k->key, "%s", r->key);
            k->object = r->replica->object_id;
            snprintf(k->peer, sizeof k->peer, "%s", r->replica->peer);
            k->tier = r->replica->tier;
        }
        k->seen = true;
    }
    agent_tables_read_unlock(s->tables);
    tasks_compact(s);
    replicas_due(s);
}

/* ------------------------------------------------------------------------
 * What the fabric asks of the store. */

static int
hook_adopt(void *arg, const Mcos__PeerRequest *a, int tier,
           const struct agent_tier_extent *e, uint64_t sum, char *err,
           size_t errlen)
{
    struct agent_store *s = arg;
    struct agent_object *o;
    int r = agent_registry_add(s->reg, a->object_id, &o);

    if (r) {
        snprintf(err, errlen, "cannot keep object %016" PRIx64 ": %s",
                 a->object_id,
                 r == -EEXIST ? "it is here already" : mcos_strerror(r));
        return r;
    }
    o->size = a->size;
    o->cls = a->class_ >= MCOS__OBJECT_CLASS__CLASS_OTHER &&
                     a->class_ <= MCOS__OBJECT_CLASS__CLASS_PROMPT_CHUNK
                 ? (int)a->class_
                 : MCOS__OBJECT_CLASS__CLASS_OTHER;
    o->hotness_milli = a->hotness_milli;
    if (a->ns && ns_ok(a->ns)) {
        snprintf(o->ns, sizeof o->ns, "%s", a->ns);
    }
    o->parent = a->parent_id;
    o->state = AGENT_OBJ_RESIDENT;
    /* DRAM, or HBM when the peer wrote it straight there. */
    o->tier = tier;
    o->ext = *e;
    o->checksum = sum;
    o->created_us = o->last_access_us = now_us(s);
    agent_registry_set_tier(s->reg, o, tier);
    s->counters.replicas_adopted++;
    event(s, o, MCOS__EVENT_KIND__EVENT_STORED, o->tier);
    if ((int)a->tier != tier && tier_ok(a->tier) && s->tiers[a->tier]) {
        r = start_move(s, o, a->tier, MOVE_EXPLICIT, UINT64_MAX, NULL);
        if (r) {
            LOG_WARN("replica %016" PRIx64 " stays in dram: no room in %s",
                     o->id, tname(a->tier));
        }
    }
    return 0;
}

static bool
hook_holds(void *arg, uint64_t id)
{
    struct agent_store *s = arg;

    return agent_registry_find(s->reg, id) != NULL;
}

struct lost_scan {
    const char *peer;
    uint64_t boot;
    uint64_t *ids;
    size_t n, cap;
};

static int
lost_one(struct agent_object *o, void *arg)
{
    struct lost_scan *ls = arg;
    const struct agent_fabric_loc *loc = o->remote;

    if (o->tier == MCOS__TIER_KIND__TIER_REMOTE && loc &&
        o->state == AGENT_OBJ_RESIDENT && !strcmp(loc->peer, ls->peer) &&
        loc->peer_boot == ls->boot) {
        if (ls->n == ls->cap) {
            size_t cap = ls->cap ? ls->cap * 2 : 64;
            void *p = realloc(ls->ids, cap * sizeof *ls->ids);

            if (!p) {
                return 1;
            }
            ls->ids = p;
            ls->cap = cap;
        }
        ls->ids[ls->n++] = o->id;
    }
    return 0;
}

static void
hook_peer_lost(void *arg, const char *peer, uint64_t old_boot)
{
    struct agent_store *s = arg;
    struct lost_scan ls = {.peer = peer, .boot = old_boot};

    agent_registry_foreach(s->reg, lost_one, &ls);
    for (size_t i = 0; i < ls.n; i++) {
        struct agent_object *o = agent_registry_find(s->reg, ls.ids[i]);

        if (o) {
            event(s, o, MCOS__EVENT_KIND__EVENT_REMOVED, o->tier);
            agent_registry_remove(s->reg, o);
            s->counters.remote_lost++;
        }
    }
    if (ls.n) {
        LOG_WARN("peer %s restarted: %zu objects demoted to it are lost", peer,
                 ls.n);
    }
    free(ls.ids);
}

void
agent_store_fabric_hooks(struct agent_store *s, struct agent_fabric_hooks *out)
{
    out->adopt = hook_adopt;
    out->holds = hook_holds;
    out->peer_lost = hook_peer_lost;
    out->arg = s;
}

void
agent_store_set_fabric(struct agent_store *s, struct agent_fabric *f)
{
    s->fabric = f;
}

struct agent_tier *
agent_store_tier(const struct agent_store *s, int kind)
{
    return kind > 0 && kind < AGENT_N_TIERS ? s->tiers[kind] : NULL;
}

/* ------------------------------------------------------------------------
 * Views. */

static int
view_add(struct agent_store *s, struct agent_object *o, uint32_t peer,
         uint64_t *out)
{
    if (s->n_views == s->cap_views) {
        size_t cap = s->cap_views ? s->cap_views * 2 : 64;
        struct view *grown = realloc(s->views, cap * sizeof *grown);

        if (!grown) {
            return -ENOMEM;
        }
        s->views = grown;
        s->cap_views = cap;
    }
    s->views[s->n_views].id = ++s->next_view;
    s->views[s->n_views].object = o->id;
    s->views[s->n_views].peer = peer;
    s->n_views++;
    o->views++;
    *out = s->next_view;
    return 0;
}

static void
view_drop(struct agent_store *s, size_t i)
{
    struct agent_object *o = agent_registry_find(s->reg, s->views[i].object);

    if (o && o->views) {
        o->views--;
    }
    s->views[i] = s->views[--s->n_views];
}

/* ------------------------------------------------------------------------
 * Intents. */

/* Picks the tier a new object goes to: the preferred tier, else the
 * fallback, else down the chain; each must exist, admit the object's
 * hotness, and have room.  Returns the tier or a negative errno. */
static int
choose_tier(struct agent_store *s, const struct agent_store_req *req,
            char *why, size_t whylen)
{
    int cand[4], n = 0;

    if (req->tier == MCOS__TIER_KIND__TIER_UNKNOWN) {
        /* No preference: it stays in DRAM, where it was written, and the
         * watermarks move it down when DRAM fills.  Nothing goes to HBM
         * without being asked for (place, prefetch, move). */
        for (int k = MCOS__TIER_KIND__TIER_DRAM;
             k <= MCOS__TIER_KIND__TIER_NVME; k++) {
            cand[n++] = k;
        }
    } else {
        cand[n++] = req->tier;
        if (req->fallback_tier) {
            cand[n++] = req->fallback_tier;
        } else {
            for (int k = req->tier + 1; k <= MCOS__TIER_KIND__TIER_NVME; k++) {
                if (n < 4) {
                    cand[n++] = k;
                }
            }
        }
    }
    snprintf(why, whylen, "no tier has room for %" PRIu64 " bytes", req->size);
    for (int i = 0; i < n; i++) {
        int k = cand[i];
        uint32_t hi, lo, admit;
        uint64_t used, cap;

        if (!s->tiers[k]) {
            if (i == 0 && req->tier && !req->fallback_tier &&
                k == MCOS__TIER_KIND__TIER_HBM) {
                snprintf(why, whylen,
                         "tier hbm is not available on this "
                         "node (no GPU, and no emulated HBM)");
            }
            continue;
        }
        policy_tier(s, k, &hi, &lo, &admit);
        if (req->hotness_milli < admit) {
            continue;
        }
        usage(s, k, &used, &cap);
        if (req->size > cap) {
            continue;
        }
        if (used + req->size <= cap) {
            return k;
        }
    }
    return -ENOSPC;
}

/* Namespaces name models: they appear in the brain's index and its API,
 * so keep them to a safe alphabet. */
static bool
ns_ok(const char *ns)
{
    size_t len = strlen(ns);

    if (len > 63) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = ns[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '/' ||
              c == '-')) {
            return false;
        }
    }
    return true;
}

static void
do_place(struct agent_store *s, struct agent_store_req *req)
{
    struct agent_tier *dram = s->tiers[MCOS__TIER_KIND__TIER_DRAM];
    struct agent_tier_stats st;
    struct agent_object *o;
    char why[160];
    int target, r;

    if (req->size == 0) {
        finish(s, req, -EINVAL, NULL, "size must not be 0");
        return;
    }
    if (req->cls < MCOS__OBJECT_CLASS__CLASS_OTHER ||
        req->cls > MCOS__OBJECT_CLASS__CLASS_PROMPT_CHUNK) {
        finish(s, req, -EINVAL, NULL, "unknown object class %d", req->cls);
        return;
    }
    if (req->tier == MCOS__TIER_KIND__TIER_SRAM ||
        req->fallback_tier == MCOS__TIER_KIND__TIER_SRAM) {
        finish(s, req, -EINVAL, NULL,
               "sram is a residency hint over hbm, not a place to store");
        return;
    }
    if (req->tier == MCOS__TIER_KIND__TIER_REMOTE ||
        req->fallback_tier == MCOS__TIER_KIND__TIER_REMOTE) {
        finish(s, req, -ENOTSUP, NULL,
               "objects are placed locally; evict demote_to_remote sends "
               "one to a peer");
        return;
    }
    if ((req->tier && !tier_ok(req->tier)) ||
        (req->fallback_tier && !tier_ok(req->fallback_tier))) {
        finish(s, req, -EINVAL, NULL, "unknown tier %d",
               req->tier && !tier_ok(req->tier) ? req->tier
                                                : req->fallback_tier);
        return;
    }
    if (!ns_ok(req->ns)) {
        finish(s, req, -EINVAL, NULL,
               "bad namespace '%.70s' (at most 63 of [A-Za-z0-9._/-])",
               req->ns);
        return;
    }
    if (agent_registry_find(s->reg, req->id)) {
        finish(s, req, -EEXIST, NULL, "object %016" PRIx64 " exists", req->id);
        return;
    }
    agent_tier_stats(dram, &st);
    if (req->size > st.capacity) {
        finish(s, req, -EFBIG, NULL,
               "%" PRIu64 " bytes exceed the DRAM arena (%" PRIu64 ")",
               req->size, st.capacity);
        return;
    }
    target = choose_tier(s, req, why, sizeof why);
    if (target < 0) {
        finish(s, req, -ENOSPC, NULL, "%s", why);
        return;
    }
    r = agent_registry_add(s->reg, req->id, &o);
    if (r) {
        finish(s, req, r, NULL, "cannot register the object");
        return;
    }
    /* Every object enters through the arena the client can write. */
    r = agent_tier_alloc(dram, req->size, &o->ext);
    if (r) {
        agent_registry_remove(s->reg, o);
        finish(s, req, -ENOSPC, NULL,
               "no room in the DRAM arena to stage %" PRIu64 " bytes",
               req->size);
        return;
    }
    o->size = req->size;
    o->cls = req->cls;
    snprintf(o->ns, sizeof o->ns, "%s", req->ns);
    o->parent = req->parent;
    o->hotness_milli = req->hotness_milli;
    o->expected_reuse = req->expected_reuse;
    o->state = AGENT_OBJ_PLACED;
    o->tier = 0;
    o->target_tier = target;
    o->placer = req->peer;
    o->created_us = o->last_access_us = now_us(s);
    req->offset = o->ext.off;
    req->length = o->size;
    finish(s, req, 0, o, NULL);
}

static struct agent_object *
lookup(struct agent_store *s, struct agent_store_req *req)
{
    struct agent_object *o = agent_registry_find(s->reg, req->id);

    if (!o) {
        finish(s, req, -ENOENT, NULL, "no object %016" PRIx64, req->id);
    }
    return o;
}

static void
do_commit(struct agent_store *s, struct agent_store_req *req)
{
    struct agent_tier *dram = s->tiers[MCOS__TIER_KIND__TIER_DRAM];
    struct agent_object *o = lookup(s, req);
    int r;

    if (!o) {
        return;
    }
    if (o->state != AGENT_OBJ_PLACED) {
        finish(s, req, -EINVAL, o,
               "object %016" PRIx64 " is already "
               "committed",
               o->id);
        return;
    }
    r = agent_tier_checksum(dram, &o->ext, o->size, &o->checksum);
    if (r) {
        finish(s, req, r, o, "cannot read the staged bytes");
        return;
    }
    o->state = AGENT_OBJ_RESIDENT;
    agent_registry_set_tier(s->reg, o, MCOS__TIER_KIND__TIER_DRAM);
    s->counters.puts++;
    event(s, o, MCOS__EVENT_KIND__EVENT_STORED, MCOS__TIER_KIND__TIER_DRAM);
    if (o->target_tier != MCOS__TIER_KIND__TIER_DRAM &&
        start_move(s, o, o->target_tier, MOVE_PLACE, UINT64_MAX, NULL)) {
        /* No room there now: it stays in DRAM, demotion may move it. */
        LOG_DBG("object %016" PRIx64 " stays in dram: %s is full", o->id,
                tname(o->target_tier));
    }
    finish(s, req, 0, o, NULL);
    rebalance(s);
}

static void
do_abort(struct agent_store *s, struct agent_store_req *req)
{
    struct agent_object *o = lookup(s, req);

    if (!o) {
        return;
    }
    if (o->state != AGENT_OBJ_PLACED) {
        finish(s, req, -EINVAL, o,
               "object %016" PRIx64 " is committed; "
               "use evict",
               o->id);
        return;
    }
    agent_tier_free(s->tiers[MCOS__TIER_KIND__TIER_DRAM], &o->ext);
    agent_registry_remove(s->reg, o);
    finish(s, req, 0, NULL, NULL);
}

static void
do_get(struct agent_store *s, struct agent_store_req *req)
{
    struct agent_object *o = lookup(s, req);
    uint64_t view;

    if (!o) {
        return;
    }
    if (o->state == AGENT_OBJ_PLACED) {
        finish(s, req, -ENOENT, NULL,
               "object %016" PRIx64 " is not "
               "committed yet",
               o->id);
        return;
    }
    if (o->state == AGENT_OBJ_MOVING) {
        add_waiter(o, req); /* retried when the move is done */
        return;
    }
    if (o->tier != MCOS__TIER_KIND__TIER_DRAM) {
        /* A miss: fetch it into the arena first, urgently. */
        int r = start_move(s, o, MCOS__TIER_KIND__TIER_DRAM, MOVE_FETCH,
                           now_us(s), NULL);

        if (r) {
            finish(s, req, r == -ENOSPC ? -ENOSPC : r, o,
                   "cannot bring the object from %s into DRAM: %s",
                   tname(o->tier),
                   o->tier == MCOS__TIER_KIND__TIER_REMOTE && *s->remote_err
                       ? s->remote_err
                       : mcos_strerror(r));
            return;
        }
        o->misses++;
        s->counters.misses++;
        req->next_waiter = NULL;
        add_waiter(o, req);
        /* Counted once: the retry below must not count a hit too. */
        req->mode = 1;
        return;
    }
    if (view_add(s, o, req->peer, &view)) {
        finish(s, req, -ENOMEM, o, "out of memory");
        return;
    }
    if (req->mode != 1) {
        o->hits++;
        s->counters.hits++;
    }
    if (o->prefetched) {
        o->prefetched = false;
        s->counters.prefetch_hits++;
        event(s, o, MCOS__EVENT_KIND__EVENT_PREFETCH_HIT, o->tier);
    }
    o->last_access_us = now_us(s);
    agent_registry_touch(s->reg, o);
    s->counters.gets++;
    event(s, o, MCOS__EVENT_KIND__EVENT_ACCESSED, o->tier);
    prefetch_by_rule(s, o->id);
    req->offset = o->ext.off;
    req->length = o->size;
    req->view_out = view;
    finish(s, req, 0, o, NULL);
}

static void
do_release(struct agent_store *s, struct agent_store_req *req)
{
    for (size_t i = 0; i < s->n_views; i++) {
        if (s->views[i].id == req->view_id && s->views[i].peer == req->peer) {
            view_drop(s, i);
            finish(s, req, 0, NULL, NULL);
            rebalance(s);
            return;
        }
    }
    finish(s, req, -ENOENT, NULL, "no open view %" PRIu64, req->view_id);
}

/* Checks a target tier for prefetch and move. */
static bool
target_ok(struct agent_store *s, struct agent_store_req *req, int kind)
{
    if (kind == MCOS__TIER_KIND__TIER_REMOTE) {
        finish(s, req, -ENOTSUP, NULL,
               "objects go to a peer with evict demote_to_remote");
        return false;
    }
    if (!tier_ok(kind)) {
        finish(s, req, -EINVAL, NULL, "unknown tier %d", kind);
        return false;
    }
    if (!s->tiers[kind]) {
        finish(s, req, -ENOTSUP, NULL,
               "tier %s is not available on this "
               "node",
               tname(kind));
        return false;
    }
    return true;
}

static void
do_prefetch(struct agent_store *s, struct agent_store_req *req)
{
    struct agent_object *o;
    int r;

    if (req->deadline_us == 0) {
        finish(s, req, -ETIME, NULL, "the deadline has already passed");
        return;
    }
    if (!target_ok(s, req, req->tier) || !(o = lookup(s, req))) {
        return;
    }
    if (o->state == AGENT_OBJ_PLACED) {
        finish(s, req, -ENOENT, NULL,
               "object %016" PRIx64 " is not "
               "committed yet",
               o->id);
        return;
    }
    if (o->state == AGENT_OBJ_MOVING) {
        finish(s, req, -EBUSY, o, "object is moving to %s",
               tname(o->moving_to));
        return;
    }
    if (o->tier == req->tier) {
        finish(s, req, 0, o, NULL); /* already there */
        return;
    }
    r = start_move(s, o, req->tier, MOVE_PREFETCH,
                   now_us(s) + req->deadline_us, NULL);
    if (r) {
        finish(s, req, r, o, "cannot prefetch into %s: %s", tname(req->tier),
               mcos_strerror(r));
        return;
    }
    finish(s, req, 0, o, NULL);
}

static void
move_common(struct agent_store *s, struct agent_store_req *req,
            struct agent_object *o, int dst, enum move_kind kind, bool wait)
{
    int r;

    if (o->state == AGENT_OBJ_PLACED) {
        finish(s, req, -ENOENT, NULL,
               "object %016" PRIx64 " is not "
               "committed yet",
               o->id);
        return;
    }
    if (o->state == AGENT_OBJ_MOVING) {
        finish(s, req, -EBUSY, o, "object is moving to %s",
               tname(o->moving_to));
        return;
    }
    if (o->pins || o->views) {
        finish(s, req, -EBUSY, o, "object is pinned (%u pins, %u views)",
               o->pins, o->views);
        return;
    }
    if (o->tier == dst) {
        finish(s, req, 0, o, NULL);
        return;
    }
    if (o->tier == MCOS__TIER_KIND__TIER_REMOTE &&
        dst != MCOS__TIER_KIND__TIER_DRAM) {
        finish(s, req, -ENOTSUP, o,
               "an object on a peer comes back to dram first");
        return;
    }
    r = start_move(s, o, dst, kind, UINT64_MAX, NULL);
    if (r && o->tier == MCOS__TIER_KIND__TIER_REMOTE) {
        finish(s, req, r, o, "cannot fetch the object from its peer: %s",
               s->remote_err);
        return;
    }
    if (r && dst == MCOS__TIER_KIND__TIER_REMOTE) {
        /* evict demote where the chain goes on to peers' memory. */
        finish(s, req, r, o, "cannot demote to a peer: %s", s->remote_err);
        return;
    }
    if (r) {
        finish(s, req, r, o,
               "no room in %s for %" PRIu64 " bytes; nothing "
               "changed",
               tname(dst), o->size);
        return;
    }
    if (wait) {
        req->next_waiter = NULL;
        add_waiter(o, req);
    } else {
        finish(s, req, 0, o, NULL);
    }
}

static void
do_move(struct agent_store *s, struct agent_store_req *req)
{
    struct agent_object *o;

    if (req->mode != 1 && req->mode != 2) {
        finish(s, req, -EINVAL, NULL, "unknown move mode %u", req->mode);
        return;
    }
    if (req->src_tier && !tier_ok(req->src_tier) &&
        req->src_tier != MCOS__TIER_KIND__TIER_REMOTE) {
        finish(s, req, -EINVAL, NULL, "unknown tier %d", req->src_tier);
        return;
    }
    if (!target_ok(s, req, req->tier) || !(o = lookup(s, req))) {
        return;
    }
    if (req->src_tier && o->state != AGENT_OBJ_PLACED &&
        o->tier != req->src_tier) {
        finish(s, req, -EINVAL, o, "object is in %s, not %s", tname(o->tier),
               tname(req->src_tier));
        return;
    }
    move_common(s, req, o, req->tier, MOVE_EXPLICIT, req->mode == 1);
}

static void
drop(struct agent_store *s, struct agent_object *o)
{
    if (o->prefetched) {
        s->counters.prefetch_wasted++;
        event(s, o, MCOS__EVENT_KIND__EVENT_PREFETCH_WASTED, o->tier);
    }
    event(s, o, MCOS__EVENT_KIND__EVENT_REMOVED, o->tier);
    if (o->tier == MCOS__TIER_KIND__TIER_REMOTE) {
        agent_fabric_free(s->fabric, o->remote, o->id);
    } else {
        release_extent(s, o->tier, o->id, &o->ext,
                       o->tier == MCOS__TIER_KIND__TIER_NVME);
    }
    agent_registry_remove(s->reg, o);
    s->counters.drops++;
}

/* evict demote_to_remote: the object leaves this node for a peer's
 * memory, and stays readable (a get brings it back). */
static void
evict_to_remote(struct agent_store *s, struct agent_store_req *req,
                struct agent_object *o)
{
    int r;

    if (o->tier == MCOS__TIER_KIND__TIER_REMOTE &&
        o->state == AGENT_OBJ_RESIDENT) {
        finish(s, req, 0, o, NULL);
        return;
    }
    if (!s->fabric) {
        finish(s, req, -ENOTSUP, o,
               "demote_to_remote needs the fabric; this agent runs without "
               "one (fabric.enabled is false)");
        return;
    }
    if (o->state == AGENT_OBJ_MOVING || o->pins || o->views) {
        finish(s, req, -EBUSY, o, "object is %s",
               o->state == AGENT_OBJ_MOVING ? "moving" : "pinned");
        return;
    }
    if (o->prefetched) {
        s->counters.prefetch_wasted++;
        event(s, o, MCOS__EVENT_KIND__EVENT_PREFETCH_WASTED, o->tier);
        o->prefetched = false;
    }
    r = start_remote(s, o, MCOS__TIER_KIND__TIER_REMOTE, MOVE_REMOTE,
                     UINT64_MAX, NULL);
    if (r) {
        finish(s, req, r, o, "cannot demote to a peer: %s", s->remote_err);
        return;
    }
    req->next_waiter = NULL;
    add_waiter(o, req);
}

static void
do_evict(struct agent_store *s, struct agent_store_req *req)
{
    struct agent_object *o;
    int next;

    switch (req->policy) {
    case 1: /* drop */
    case 2: /* demote */
    case 3: /* demote to a peer */
        break;
    default:
        finish(s, req, -EINVAL, NULL, "unknown eviction policy %u",
               req->policy);
        return;
    }
    if (!(o = lookup(s, req))) {
        return;
    }
    if (o->state == AGENT_OBJ_PLACED) {
        finish(s, req, -EINVAL, o,
               "object %016" PRIx64 " is not committed; "
               "use abort",
               o->id);
        return;
    }
    if (req->policy == 3) {
        evict_to_remote(s, req, o);
        return;
    }
    if (req->policy == 1) {
        if (o->state == AGENT_OBJ_MOVING || o->pins || o->views) {
            finish(s, req, -EBUSY, o, "object is %s",
                   o->state == AGENT_OBJ_MOVING ? "moving" : "pinned");
            return;
        }
        drop(s, o);
        finish(s, req, 0, NULL, NULL);
        return;
    }
    next = policy_next(s, o->tier);
    if (!next) {
        finish(s, req, -ENOSPC, o,
               "no tier below %s on this node; the "
               "only copy is never dropped without evict drop",
               tname(o->tier));
        return;
    }
    if (o->prefetched) {
        s->counters.prefetch_wasted++;
        event(s, o, MCOS__EVENT_KIND__EVENT_PREFETCH_WASTED, o->tier);
        o->prefetched = false;
    }
    move_common(s, req, o, next, MOVE_DEMOTE, true);
}

static void
do_pin(struct agent_store *s, struct agent_store_req *req, bool pin)
{
    struct agent_object *o = lookup(s, req);

    if (!o) {
        return;
    }
    if (pin) {
        o->pins++;
    } else if (o->pins == 0) {
        finish(s, req, -EINVAL, o, "object is not pinned");
        return;
    } else {
        o->pins--;
    }
    finish(s, req, 0, o, NULL);
    if (!pin) {
        rebalance(s);
    }
}

static void
dispatch(struct agent_store *s, struct agent_store_req *req)
{
    switch (req->op) {
    case MCOS__API_OP__API_PLACE:
        do_place(s, req);
        break;
    case MCOS__API_OP__API_COMMIT:
        do_commit(s, req);
        break;
    case MCOS__API_OP__API_ABORT:
        do_abort(s, req);
        break;
    case MCOS__API_OP__API_GET:
        do_get(s, req);
        break;
    case MCOS__API_OP__API_RELEASE:
        do_release(s, req);
        break;
    case MCOS__API_OP__API_PREFETCH:
        do_prefetch(s, req);
        break;
    case MCOS__API_OP__API_MOVE:
        do_move(s, req);
        break;
    case MCOS__API_OP__API_EVICT:
        do_evict(s, req);
        break;
    case MCOS__API_OP__API_PIN:
        do_pin(s, req, true);
        break;
    case MCOS__API_OP__API_UNPIN:
        do_pin(s, req, false);
        break;
    case MCOS__API_OP__API_STAT: {
        struct agent_object *o = lookup(s, req);

        if (o) {
            finish(s, req, 0, o, NULL);
        }
        break;
    }
    default:
        finish(s, req, -EINVAL, NULL, "unknown operation %d", req->op);
        break;
    }
}

void
agent_store_submit(struct agent_store *s, struct agent_store_req *req)
{
    req->status = 0;
    req->have_obj = false;
    req->late = false;
    req->next_waiter = NULL;
    if (req->id == 0 && req->op != MCOS__API_OP__API_RELEASE) {
        finish(s, req, -EINVAL, NULL, "object id must not be 0");
        return;
    }
    if (req->op == MCOS__API_OP__API_GET) {
        req->mode = 0; /* hit/miss bookkeeping, see do_get */
    }
    dispatch(s, req);
}

/* ------------------------------------------------------------------------
 * Clients going away, ticks, queries. */

struct placed_by {
    uint32_t peer;     /* the connection that closed */
    uint64_t ids[256]; /* its placed objects found in one pass */
    size_t n;          /* how many */
};

static int
find_placed(struct agent_object *o, void *arg)
{
    struct placed_by *p = arg;

    if (o->state == AGENT_OBJ_PLACED && o->placer == p->peer) {
        p->ids[p->n++] = o->id;
        if (p->n == sizeof p->ids / sizeof p->ids[0]) {
            return 1;
        }
    }
    return 0;
}

void
agent_store_peer_gone(struct agent_store *s, uint32_t peer)
{
    struct placed_by p;
    size_t released = 0, aborted = 0;

    for (size_t i = 0; i < s->n_views;) {
        if (s->views[i].peer == peer) {
            view_drop(s, i);
            released++;
        } else {
            i++;
        }
    }
    do {
        memset(&p, 0, sizeof p);
        p.peer = peer;
        agent_registry_foreach(s->reg, find_placed, &p);
        for (size_t i = 0; i < p.n; i++) {
            struct agent_object *o = agent_registry_find(s->reg, p.ids[i]);

            agent_tier_free(s->tiers[MCOS__TIER_KIND__TIER_DRAM], &o->ext);
            agent_registry_remove(s->reg, o);
            aborted++;
        }
    } while (p.n == sizeof p.ids / sizeof p.ids[0]);
    if (released || aborted) {
        LOG_INFO("client %u gone: released %zu views, gave back %zu "
                 "uncommitted objects",
                 peer, released, aborted);
        rebalance(s);
    }
}

static int
inventory_one(struct agent_object *o, void *arg)
{
    struct agent_store *s = arg;

    if (o->state != AGENT_OBJ_PLACED) {
        event(s, o, MCOS__EVENT_KIND__EVENT_STORED, o->tier);
    }
    return 0;
}

void
agent_store_inventory(struct agent_store *s)
{
    agent_registry_foreach(s->reg, inventory_one, s);
}

void
agent_store_tick(struct agent_store *s)
{
    rebalance(s);
    replicas_due(s);
}

const char *
agent_store_shm_name(const struct agent_store *s)
{
    return agent_tier_dram_shm_name(s->tiers[MCOS__TIER_KIND__TIER_DRAM]);
}

uint64_t
agent_store_shm_size(const struct agent_store *s)
{
    void *base;
    uint64_t len = 0;

    agent_tier_dram_region(s->tiers[MCOS__TIER_KIND__TIER_DRAM], &base, &len);
    return len;
}

void
agent_store_tier_usage(const struct agent_store *s, int kind,
                       struct agent_store_tier *out)
{
    struct agent_tier_stats st;

    memset(out, 0, sizeof *out);
    if (!tier_ok(kind) || !s->tiers[kind]) {
        return;
    }
    agent_tier_stats(s->tiers[kind], &st);
    out->present = true;
    out->emulated = s->emulated[kind];
    out->capacity = st.capacity;
    out->used = st.used;
    out->objects = st.objects;
}

void
agent_store_counters(const struct agent_store *s,
                     struct agent_store_counters *out)
{
    *out = s->counters;
}

size_t
agent_store_count(const struct agent_store *s)
{
    return agent_registry_count(s->reg);
}

int
agent_store_foreach(const struct agent_store *s,
                    int (*cb)(struct agent_object *, void *), void *arg)
{
    return agent_registry_foreach(s->reg, cb, arg);
}

const struct agent_object *
agent_store_find(const struct agent_store *s, uint64_t id)
{
    return agent_registry_find(s->reg, id);
}

bool
agent_store_l2(const struct agent_store *s, uint64_t *max_bytes,
               uint64_t *window_bytes, uint64_t *object)
{
    struct agent_tier *hbm = s->tiers[MCOS__TIER_KIND__TIER_HBM];
    struct agent_tier_stats st;

    *max_bytes = *window_bytes = *object = 0;
    if (!hbm || s->emulated[MCOS__TIER_KIND__TIER_HBM]) {
        return false;
    }
    agent_tier_stats(hbm, &st);
    *max_bytes = st.l2_persist_max;
    *window_bytes = st.l2_window;
    *object = st.l2_window ? s->l2_object : 0;
    return st.l2_persist_max > 0;
}

bool
agent_store_tier_emulated(const struct agent_store *s, int kind)
{
    return tier_ok(kind) && s->emulated[kind];
}

/* ------------------------------------------------------------------------
 * Life cycle. */

/* An object found in the NVMe index at start: it survived the restart. */
static int
on_recover(void *arg, uint64_t id, const struct agent_tier_extent *e,
           uint64_t checksum)
{
    struct agent_store *s = arg;
    struct agent_object *o;
    int r = agent_registry_add(s->reg, id, &o);

    if (r) {
        LOG_WARN("NVMe index lists object %016" PRIx64 " twice; keeping "
                 "the first",
                 id);
        return 0;
    }
    o->size = e->len;
    o->ext = *e;
    o->checksum = checksum;
    o->state = AGENT_OBJ_RESIDENT;
    o->created_us = o->last_access_us = now_us(s);
    agent_registry_set_tier(s->reg, o, MCOS__TIER_KIND__TIER_NVME);
    s->counters.recovered++;
    return 0;
}

int
agent_store_create(uv_loop_t *loop, const struct mcos_clock *clock,
                   const struct agent_store_config *cfg,
                   struct agent_tables *tables, struct agent_observe *obs,
                   struct agent_store **out, char *err, size_t errlen)
{
    struct agent_store *s = calloc(1, sizeof *s);
    struct agent_tier_config tc;
    char shm[96];
    int r;

    if (!s) {
        return -ENOMEM;
    }
    s->loop = loop;
    s->clock = clock;
    s->tables = tables;
    s->obs = obs;
    r = agent_registry_create(&s->reg);
    if (r) {
        goto fail;
    }

    memset(&tc, 0, sizeof tc);
    tc.capacity = cfg->dram_bytes;
    if (cfg->shm_name) {
        snprintf(shm, sizeof shm, "%s", cfg->shm_name);
    } else {
        snprintf(shm, sizeof shm, "/mcos-%s-dram", cfg->node);
    }
    tc.shm_name = shm;
    tc.shm_gid = cfg->shm_gid;
    /* Reserving every page at start would make a 64 GiB arena cost 64 GiB
     * of RAM before the first object; pages are taken as used. */
    tc.sparse = true;
    r = agent_tier_create(AGENT_TIER_DRAM, &tc,
                          &s->tiers[MCOS__TIER_KIND__TIER_DRAM]);
    if (r) {
        mcos_seterr(err, errlen,
                    "cannot create the DRAM arena %s (%" PRIu64 " bytes): %s",
                    shm, cfg->dram_bytes, mcos_strerror(r));
        goto fail;
    }
    if (cfg->hbm_bytes) {
        /* The CUDA backend: one device region carved by the allocator and
         * pinned staging; or, emulated, host memory through the same code
         * path.  Never shown to clients: HBM is not host-mappable. */
        memset(&tc, 0, sizeof tc);
        tc.capacity = cfg->hbm_bytes;
        tc.gpu = cfg->gpu;
        tc.cuda_lib = cfg->cuda_lib;
        tc.emulate = cfg->hbm_emulated;
        r = agent_tier_create(AGENT_TIER_HBM, &tc,
                              &s->tiers[MCOS__TIER_KIND__TIER_HBM]);
        if (r) {
            mcos_seterr(err, errlen,
                        "cannot create the %sHBM tier (%" PRIu64
                        " bytes on GPU %d): %s",
                        cfg->hbm_emulated ? "emulated " : "", cfg->hbm_bytes,
                        cfg->gpu, mcos_strerror(r));
            goto fail;
        }
        s->emulated[MCOS__TIER_KIND__TIER_HBM] =
            agent_tier_is_emulated(s->tiers[MCOS__TIER_KIND__TIER_HBM]);
    }
    if (cfg->nvme_dir && *cfg->nvme_dir) {
        memset(&tc, 0, sizeof tc);
        tc.capacity = cfg->nvme_bytes;
        tc.dir = cfg->nvme_dir;
        tc.on_recover = on_recover;
        tc.recover_arg = s;
        r = agent_tier_create(AGENT_TIER_NVME, &tc,
                              &s->tiers[MCOS__TIER_KIND__TIER_NVME]);
        if (r) {
            mcos_seterr(err, errlen, "cannot open the NVMe tier in %s: %s",
                        cfg->nvme_dir, mcos_strerror(r));
            goto fail;
        }
        if (s->counters.recovered) {
            LOG_INFO("found %" PRIu64 " objects on NVMe in %s",
                     s->counters.recovered, cfg->nvme_dir);
        }
    }
    r = agent_exec_create(loop, clock, cfg->budgets, &s->exec);
    if (r) {
        mcos_seterr(err, errlen, "cannot start the dataplane thread: %s",
                    mcos_strerror(r));
        goto fail;
    }
    *out = s;
    return 0;

fail:
    for (int k = 0; k < AGENT_N_TIERS; k++) {
        agent_tier_destroy(s->tiers[k]);
    }
    agent_registry_destroy(s->reg);
    free(s);
    return r;
}

void
agent_store_close(struct agent_store *s)
{
    if (!s) {
        return;
    }
    /* The fabric is closed before the store (agent.c): a staging copy
     * that completes below must not send through it. */
    s->fabric = NULL;
    /* Completes every queued move (with -ECANCELED), which finishes their
     * waiters, before the tiers go away. */
    agent_exec_close(s->exec);
    for (int k = 0; k < AGENT_N_TIERS; k++) {
        agent_tier_destroy(s->tiers[k]);
    }
    agent_registry_destroy(s->reg);
    free(s->views);
    free(s->tasks);
    free(s);
}
