/*
 * The object store: what the node holds and where, and the intents that
 * change it (place, commit, get, release, prefetch, move, evict, pin).
 *
 * Objects enter through the DRAM arena (the only tier local clients can
 * map): place reserves an extent there, the client writes the bytes, and
 * commit checksums them (XXH3-64) and admits the object.  If the intent
 * names another tier, the executor moves it there.  Every move is verified
 * (length and checksum of the destination) before the source is freed,
 * and nothing is ever dropped except by an explicit evict-drop: demotion
 * down the chain (from the policy table, or the default hbm -> dram ->
 * nvme) stops when the tier below is full.  A table's chain may end in
 * peers' memory (`-> remote`, with the fabric): a failed demotion there
 * pauses it for a backoff (1 s doubling to 30 s, reset by a success).
 *
 * Requests that must wait for a copy (a get of an object not in DRAM, a
 * move that waits, a demotion) complete through their callback later;
 * every request's callback runs exactly once, on the loop thread.
 *
 * Where it sits: step 6 (execute), under the local API.  Thread-safety:
 * loop thread only.
 */
#ifndef AGENT_STORE_H
#define AGENT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "clock.h"
#include "observe.h"
#include "registry.h"
#include "tables.h"

struct agent_store_config {
    const char *node;                /* for the shm name */
    uint64_t dram_bytes;             /* DRAM arena */
    const char *shm_name;            /* NULL: "/mcos-<node>-dram" */
    int64_t shm_gid;                 /* arena's group (mode 0660), or -1 */
    const char *nvme_dir;            /* NULL or "": no NVMe tier */
    uint64_t nvme_bytes;             /* NVMe capacity */
    uint64_t hbm_bytes;              /* HBM capacity to use (0: none) */
    bool hbm_emulated;               /* HBM is host memory standing in */
    int gpu;                         /* real HBM: CUDA device ordinal */
    const char *cuda_lib;            /* real HBM: runtime to dlopen */
    uint64_t budgets[AGENT_N_TIERS]; /* bytes/s per tier, 0: unlimited */
};

struct agent_store_req;
typedef void (*agent_store_done)(struct agent_store_req *, void *arg);

/* One intent.  Inputs are set by the caller; outputs by the store before
 * `done` runs. */
struct agent_store_req {
    int op;                  /* Mcos__ApiOp */
    uint64_t id;             /* object */
    uint64_t size;           /* place */
    int cls;                 /* place */
    uint32_t hotness_milli;  /* place */
    uint32_t expected_reuse; /* place */
    char ns[64];             /* place: KV block namespace, "" none */
    uint64_t parent;         /* place: previous block of a KV chain */
    int tier;                /* place: preferred; prefetch/move: target */
    int fallback_tier;       /* place */
    int src_tier;            /* move */
    uint64_t deadline_us;    /* prefetch, relative */
    uint32_t mode;           /* move: 1 wait, 2 async */
    uint32_t policy;         /* evict */
    uint64_t view_id;        /* release */
    uint32_t peer;           /* the client's connection */
    agent_store_done done;   /* called once */
    void *arg;               /* its argument */

    int status;              /* out: 0 or a negative errno */
    char error[200];         /* out: why, when status != 0 */
    uint64_t offset;         /* out: place, get: arena offset */
    uint64_t length;         /* out: place, get */
    uint64_t view_out;       /* out: get */
    bool late;               /* out: a move finished after its deadline */
    bool have_obj;           /* out: `obj` is filled */
    struct agent_object obj; /* out: a snapshot of the object */

    struct agent_store_req *next_waiter; /* internal */
};

struct agent_store;

int agent_store_create(uv_loop_t *, const struct mcos_clock *,
                       const struct agent_store_config *,
                       struct agent_tables *, struct agent_observe *,
                       struct agent_store **out, char *err, size_t errlen);

/* Cancels moves in flight (their waiters fail with -ECANCELED), frees. */
void agent_store_close(struct agent_store *);

/* Carries out one intent; req->done runs once, now or later. */
void agent_store_submit(struct agent_store *, struct agent_store_req *);

/* A client's connection closed: its views are released and the objects it
 * placed but never committed are given back. */
void agent_store_peer_gone(struct agent_store *, uint32_t peer);

/* Queues a STORED event for every object held, so a brain that (re)learns
 * about this node gets its full inventory with the next reports. */
void agent_store_inventory(struct agent_store *);

/* Periodic work: watermark demotion, replica retries that are due. */
void agent_store_tick(struct agent_store *);

/* The DRAM arena clients map. */
const char *agent_store_shm_name(const struct agent_store *);
uint64_t agent_store_shm_size(const struct agent_store *);

struct agent_store_tier {
    bool present;      /* the node has this tier */
    bool emulated;     /* host memory standing in (HBM) */
    uint64_t capacity; /* bytes */
    uint64_t used;     /* bytes allocated */
    uint64_t objects;  /* objects resident */
};

void agent_store_tier_usage(const struct agent_store *, int kind,
                            struct agent_store_tier *out);

struct agent_store_counters {
    uint64_t puts;                /* commits */
    uint64_t gets;                /* views given */
    uint64_t hits;                /* gets served from DRAM */
    uint64_t misses;              /* gets that had to fetch */
    uint64_t moves;               /* verified moves */
    uint64_t move_failures;       /* moves that failed or did not verify */
    uint64_t demotions;           /* watermark demotions */
    uint64_t prefetch_late;       /* prefetches done after their deadline */
    uint64_t prefetch_hits;       /* prefetched objects then used */
    uint64_t prefetch_wasted;     /* prefetched objects dropped unused */
    uint64_t drops;               /* objects evicted by intent */
    uint64_t recovered;           /* objects found on NVMe at start */
    uint64_t remote_demotions;    /* objects sent to a peer's memory */
    uint64_t remote_staged;       /* of those, sent from a dram staging
                                     copy (they were in hbm or nvme) */
    uint64_t remote_from_hbm;     /* of those, sent straight from the HBM
                                     region, unstaged */
    uint64_t remote_fetches;      /* objects brought back from a peer */
    uint64_t remote_lost;         /* objects lost with a restarted peer */
    uint64_t replicas_sent;       /* replica tasks verified on the peer */
    uint64_t replica_failures;    /* replica attempts that failed */
    uint64_t replicas_adopted;    /* replicas peers sent here */
    uint64_t replicas_staged;     /* replicas copied to dram to be sent */
    uint64_t rule_drops;          /* objects dropped by drop/ rules */
    uint64_t rule_prefetches;     /* moves started by prefetch/ rules */
    uint64_t residency_demotions; /* watermark demotions in the order of
                                     the table's residency rule */
    uint64_t remote_demotion_backoffs; /* pauses of watermark demotion to
                                          peers after a failure */
};

void agent_store_counters(const struct agent_store *,
                          struct agent_store_counters *out);

size_t agent_store_count(const struct agent_store *);
int agent_store_foreach(const struct agent_store *,
                        int (*cb)(struct agent_object *, void *), void *arg);
const struct agent_object *agent_store_find(const struct agent_store *,
                                            uint64_t id);
bool agent_store_tier_emulated(const struct agent_store *, int kind);

/* The SRAM tier: true when a real GPU's L2 supports persisting windows;
 * then *max_bytes is what the device can persist, *window_bytes what the
 * window covers now and *object the object it covers (0: none). */
bool agent_store_l2(const struct agent_store *, uint64_t *max_bytes,
                    uint64_t *window_bytes, uint64_t *object);

/* --- The fabric (fabric.h) -------------------------------------------- */

struct agent_fabric;
struct agent_fabric_hooks;

/* What the fabric calls back into the store for (replicas arriving,
 * peers restarting). */
void agent_store_fabric_hooks(struct agent_store *,
                              struct agent_fabric_hooks *out);
/* Objects can go to peers from now on; NULL: no fabric. */
void agent_store_set_fabric(struct agent_store *, struct agent_fabric *);
/* A tier the store owns (the fabric registers the DRAM arena). */
struct agent_tier *agent_store_tier(const struct agent_store *, int kind);

/* A new table is in force: drops the objects its drop/ rules name (those
 * at rest: not pinned, viewed or moving; a busy one is looked at again with
 * the next table), takes up its replica rules (and drops tasks whose rule
 * is gone) and starts what is due.  Retries after a backoff start from
 * agent_store_tick.  Replica rules need the fabric; drops do not. */
void agent_store_replicate(struct agent_store *);

#endif /* AGENT_STORE_H */
