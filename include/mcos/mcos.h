/*
 * libmcos: the MCOS intent API.
 *
 * An application (an inference engine, a loader) tells the node's
 * mcos-agent what it intends for each object -- where it should live, how
 * hot it is, when it will be needed -- and the agent carries it out:
 * placement in a tier (HBM, host DRAM, NVMe), moves between tiers,
 * prefetches with deadlines, eviction, pinning.  The agent also reports
 * all of it to the cluster's brain.
 *
 * Data path.  Object bytes never pass through a socket.  The agent's DRAM
 * tier is a shared-memory arena that this library maps on mcos_connect; a
 * put writes straight into the arena (mcos_place + mcos_commit, or
 * mcos_put which does both), and a get returns a read-only view into it
 * (mcos_get) or copies out of it (mcos_get_copy).  Control messages go to
 * the agent over a local nng ipc socket.
 *
 * Object ids are 64-bit and never 0: an engine's KV block hash, or
 * mcos_id_from_name() for named objects (weight tiles, prompt chunks).
 *
 * Errors.  Every call returns 0 (or a count) on success and a negative
 * errno value on failure; mcos_strerror() names it.  Codes callers see:
 *
 *   -EINVAL    a bad argument: id 0, size 0, an unknown tier, class or
 *              policy, a NULL pointer where one is required
 *   -ENOENT    no such object (never stored, or evicted)
 *   -EEXIST    an object with this id exists already
 *   -ENOSPC    no tier the intent allows has room (nothing is evicted to
 *              make room for a put: demotion happens in the background)
 *   -EFBIG     larger than the tier's whole capacity
 *   -EBUSY     pinned, or has views open, and the call would move or drop it
 *   -ETIME     a deadline that has already passed
 *   -ENOTSUP   the tier is not available on this node (no GPU, no NVMe),
 *              or the operation needs the fabric (demote_to_remote)
 *   -EBADMSG   data failed verification (checksum) after a move
 *   -ECONNREFUSED, -ETIMEDOUT  the agent is not there or did not answer
 *
 * On any error nothing already stored is changed or lost.
 *
 * Threads.  A client handle may be used from one thread at a time; open
 * one handle per thread for parallelism (they share nothing).  Views stay
 * valid until released, even across other calls on the handle.
 *
 * Processes.  The messaging library underneath (nng) cannot be used in a
 * child forked from a process that already used it: a child must exec
 * before it connects (or connect before the parent ever does).  A client
 * that exits or crashes holding views or uncommitted placements loses
 * them: the agent releases them when the connection closes.
 *
 * ABI.  Handles are opaque; structs passed in carry their own size
 * (`struct_size`) so later versions can add fields; enum values are fixed.
 */
#ifndef MCOS_MCOS_H
#define MCOS_MCOS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MCOS_API_VERSION 1

typedef struct mcos_client mcos_client_t;
typedef uint64_t mcos_id_t;

/* Tiers, fastest first.  Numbers match the wire protocol. */
enum mcos_tier {
    MCOS_TIER_ANY = 0,    /* no preference: the agent's policy decides */
    MCOS_TIER_SRAM = 1,   /* GPU L2 residency hint (not a place to store) */
    MCOS_TIER_HBM = 2,    /* GPU memory (or emulated, see mcos_stat) */
    MCOS_TIER_DRAM = 3,   /* the node's shared host-memory arena */
    MCOS_TIER_NVME = 4,   /* the node's NVMe tier */
    MCOS_TIER_REMOTE = 5, /* a peer's memory over the fabric */
};

enum mcos_class {
    MCOS_CLASS_OTHER = 0,
    MCOS_CLASS_KV_BLOCK = 1,
    MCOS_CLASS_WEIGHT_TILE = 2,
    MCOS_CLASS_ACTIVATION = 3,
    MCOS_CLASS_PROMPT_CHUNK = 4,
};

enum mcos_state {
    MCOS_STATE_PLACED = 1,   /* reserved, bytes not committed yet */
    MCOS_STATE_RESIDENT = 2, /* verified bytes in `tier` */
    MCOS_STATE_MOVING = 3,   /* resident in `tier`, being copied elsewhere */
};

enum mcos_move_mode {
    MCOS_MOVE_WAIT = 1,  /* return when the move is verified and done */
    MCOS_MOVE_ASYNC = 2, /* return once the move is queued */
};

enum mcos_evict_policy {
    MCOS_EVICT_DROP = 1,             /* delete it: the caller's intent */
    MCOS_EVICT_DEMOTE = 2,           /* move it one tier down its chain */
    MCOS_EVICT_DEMOTE_TO_REMOTE = 3, /* move it to a peer (needs fabric) */
};

/* Placement intent.  Zero-initialise, set struct_size = sizeof, and fill
 * what you know; zero fields mean "no opinion".  For KV blocks (class
 * MCOS_CLASS_KV_BLOCK) the id is the block's prefix-chained hash, and `ns`
 * and `parent` let the cluster's brain index the prefix chain. */
struct mcos_place_opts {
    size_t struct_size;            /* sizeof(struct mcos_place_opts) */
    enum mcos_class cls;           /* what it is */
    double hotness;                /* expected heat, 0.0 (cold) .. 1.0+ */
    uint32_t expected_reuse;       /* accesses expected in the near future */
    enum mcos_tier preferred_tier; /* where it should live */
    enum mcos_tier fallback_tier;  /* where it may go if preferred refuses
                                      (full, or below its admission
                                      threshold); ANY: the demotion chain */
    /* Since API version 1 as well, but read only when struct_size covers
     * them: KV blocks only. */
    const char *ns;   /* namespace (model) of a KV block, <= 63 chars of
                         [A-Za-z0-9._/-]; NULL or "": "default" */
    mcos_id_t parent; /* the block before it in its prefix chain (its
                         hash), 0 for the first block */
};

/* A read-only view of an object's bytes in the shared arena.  It pins the
 * object: it will not move or be evicted until mcos_release(). */
struct mcos_view {
    const void *data; /* the bytes */
    size_t len;       /* how many */
    uint64_t view_id; /* the agent's handle for the pin (internal) */
};

struct mcos_stat {
    size_t struct_size;       /* sizeof(struct mcos_stat), set by caller */
    mcos_id_t id;             /* the object */
    uint64_t size;            /* bytes */
    enum mcos_class cls;      /* its class */
    enum mcos_state state;    /* residency state */
    enum mcos_tier tier;      /* where its verified copy lives */
    enum mcos_tier moving_to; /* with MCOS_STATE_MOVING: the target */
    int emulated;             /* 1 if `tier` is emulated (HBM in DRAM) */
    double hotness;           /* current heat estimate */
    uint32_t expected_reuse;  /* as placed */
    uint32_t pins;            /* explicit pins plus open views */
    uint64_t checksum;        /* XXH3-64 of the bytes */
    uint64_t hits;            /* gets served from DRAM or a prefetch */
    uint64_t misses;          /* gets that had to fetch from a slower tier */
    int prefetched;           /* brought in by a prefetch, not yet used */
    uint64_t age_ms;          /* since it was stored */
    uint64_t idle_ms;         /* since it was last accessed */
};

/* Connects to the node's agent.  `path` is the agent's API address
 * ("ipc:///run/mcos/agent.sock"); NULL means $MCOS_AGENT, else that
 * default.  Maps the DRAM arena.  On success *out is a new handle. */
int mcos_connect(const char *path, mcos_client_t **out);

/* Closes the handle: releases every view it still holds, unmaps the
 * arena.  NULL is a no-op. */
void mcos_close(mcos_client_t *c);

/* The id for a name: a stable 64-bit hash (XXH3), never 0. */
mcos_id_t mcos_id_from_name(const char *name);

/* Creates an object with `len` bytes copied from `data` (into the shared
 * arena, then wherever the placement intent says).  `opts` may be NULL.
 * Returns when the object is resident and verified. */
int mcos_put(mcos_client_t *c, mcos_id_t id, const void *data, size_t len,
             const struct mcos_place_opts *opts);

/* Zero-copy put, step 1: reserves `size` bytes for a new object and sets
 * *buf to where to write them.  Nothing is visible to others until
 * mcos_commit(); mcos_abort() gives the space back. */
int mcos_place(mcos_client_t *c, mcos_id_t id, size_t size,
               const struct mcos_place_opts *opts, void **buf);

/* Zero-copy put, step 2: the bytes are written.  The agent checksums them
 * and admits the object to its intended tier. */
int mcos_commit(mcos_client_t *c, mcos_id_t id);

/* Abandons a placed, uncommitted object. */
int mcos_abort(mcos_client_t *c, mcos_id_t id);

/* Zero-copy read: a pinned view of the object's bytes.  An object not in
 * DRAM is brought there first (a miss).  Release the view when done. */
int mcos_get(mcos_client_t *c, mcos_id_t id, struct mcos_view *view);

/* Releases a view (and its pin).  The view's pointer is invalid after. */
int mcos_release(mcos_client_t *c, struct mcos_view *view);

/* Copy-out read: copies the object into `buf` (at most `cap` bytes; -ERANGE
 * if it does not fit) and sets *len to its size. */
int mcos_get_copy(mcos_client_t *c, mcos_id_t id, void *buf, size_t cap,
                  size_t *len);

/* Asks for the object to be in `target` within `deadline_us`
 * microseconds from now.  Returns once queued; the object's prefetch is
 * reported as hit, late or wasted in telemetry.  -ETIME if deadline_us is
 * 0 (already past). */
int mcos_prefetch(mcos_client_t *c, mcos_id_t id, enum mcos_tier target,
                  uint64_t deadline_us);

/* Moves the object from `src` (MCOS_TIER_ANY: wherever it is) to `dst`.
 * The copy is verified (length and checksum) before the source is freed.
 * -EINVAL if it is not in `src`. */
int mcos_move(mcos_client_t *c, mcos_id_t id, enum mcos_tier src,
              enum mcos_tier dst, enum mcos_move_mode mode);

/* Evicts per `policy`.  DROP deletes the object (the caller's intent);
 * DEMOTE moves it one tier down its demotion chain, and refuses (-ENOSPC)
 * rather than drop the only copy when there is no room below;
 * DEMOTE_TO_REMOTE places the object (from DRAM, HBM or NVMe) in an
 * admitted peer's memory (the peer verifies it before the local copy is
 * freed; reads fetch it back into DRAM), -ENOTSUP on an agent without the
 * fabric. */
int mcos_evict(mcos_client_t *c, mcos_id_t id, enum mcos_evict_policy policy);

/* Pins the object in its tier (no demotion, no eviction) / undoes it.
 * Pins count; each pin needs one unpin. */
int mcos_pin(mcos_client_t *c, mcos_id_t id);
int mcos_unpin(mcos_client_t *c, mcos_id_t id);

/* Where the object lives and what the agent knows about it.  Set
 * st->struct_size before the call. */
int mcos_stat(mcos_client_t *c, mcos_id_t id, struct mcos_stat *st);

/* An inference engine's queue, for the brain's routing. */
struct mcos_load {
    size_t struct_size;             /* sizeof(struct mcos_load), by caller */
    uint32_t queued_requests;       /* waiting, at most 1000000 */
    uint32_t running_requests;      /* being served, at most 1000000 */
    uint64_t queued_prefill_blocks; /* KV blocks the queued and running
                                       requests still have to prefill, at
                                       most 2^32 - 1 */
};

/* Reports the engine's queue (call it whenever it changes, or every
 * scheduler step).  The agent sums the latest report of every connected
 * client into the node's load; a client's share leaves with it.  The
 * brain weighs queued prefill blocks against blocks to compute when it
 * routes (POST /v1/route).  -EINVAL (with nothing recorded) for a value
 * over its bound. */
int mcos_report_load(mcos_client_t *c, const struct mcos_load *load);

/* A description of an error code returned by any call (static string). */
const char *mcos_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif /* MCOS_MCOS_H */
