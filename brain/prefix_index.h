/*
 * Global prefix index of KV-cache blocks.
 *
 * What: for every KV block the cluster holds, which nodes hold it, in
 * which tiers, and how hot it is.  Blocks are named by prefix-chained
 * 64-bit hashes (a block's hash covers every block before it), inside a
 * namespace (one per model).  The main query, find_matches(), takes a
 * request's chain of block hashes and answers, per node, how long a prefix
 * of that chain the node can serve from each tier; routing and
 * replication decisions are built on it.
 *
 * Where: the "aggregate" step of the brain.  Agent reports (object events
 * of class kv_block: STORED, REMOVED, ACCESSED) are folded in with
 * brain_prefix_index_apply() or the single-event calls; "decide" reads it
 * through find_matches(), lookup(), top_k_hot() and for_each_hot().  The
 * index is soft state: agents resend their inventory to a new leader.
 *
 * Identifiers: nodes are small integers (0 .. BRAIN_PREFIX_MAX_NODES - 1)
 * that the brain maps node names to; namespaces are small integers
 * (0 .. BRAIN_PREFIX_MAX_NS - 1) that the caller interns model names to.
 * The index never sees names.  Tiers use the wire numbers, faster first.
 *
 * Time: nothing here reads a clock.  Hotness is an exponentially decayed
 * access count, and every call that needs the time takes `now_us`, so
 * tests drive it with a fake clock.
 *
 * Thread-safety: none.  The index is owned by the brain's loop thread.
 * Even the queries write per-index scratch state, so two threads may not
 * call into one index at the same time, not even find_matches().
 *
 * Errors: >= 0 success, -errno failure.  Bad input (unknown tier, node or
 * namespace out of range, empty chain, NULL where data is needed) returns
 * -EINVAL and changes nothing.
 */
#ifndef MCOS_BRAIN_PREFIX_INDEX_H
#define MCOS_BRAIN_PREFIX_INDEX_H

#include <stddef.h>
#include <stdint.h>

/* Node ids are 0 .. BRAIN_PREFIX_MAX_NODES - 1 (12 bits). */
#define BRAIN_PREFIX_MAX_NODES 4096
/* Namespace ids are 0 .. BRAIN_PREFIX_MAX_NS - 1 (15 bits in a slot). */
#define BRAIN_PREFIX_MAX_NS 32767
/* Highest tier number; matched[] arrays are indexed 1 .. this. */
#define BRAIN_PREFIX_TIER_MAX 4
/* Bit of `tier` in a brain_prefix_holder.tiers mask. */
#define BRAIN_PREFIX_TIER_BIT(tier) (1u << ((tier)-1))

/* Memory tiers, fastest first; the numbers are the wire's. */
enum brain_prefix_tier {
    BRAIN_PREFIX_TIER_SRAM = 1,
    BRAIN_PREFIX_TIER_HBM = 2,
    BRAIN_PREFIX_TIER_DRAM = 3,
    BRAIN_PREFIX_TIER_NVME = 4,
};

/* Object event types of class kv_block, as agents report them. */
enum brain_prefix_event_type {
    BRAIN_PREFIX_EV_STORED = 1,
    BRAIN_PREFIX_EV_REMOVED = 2,
    BRAIN_PREFIX_EV_ACCESSED = 3,
};

/* One agent-reported event, for batched ingestion. */
struct brain_prefix_event {
    uint64_t hash;   /* block hash */
    uint64_t parent; /* STORED: parent block hash, 0 = root or unknown */
    uint16_t ns;     /* namespace id */
    uint16_t node;   /* reporting node id */
    uint8_t type;    /* enum brain_prefix_event_type */
    uint8_t tier;    /* STORED/REMOVED: enum brain_prefix_tier */
};

/* Creation options; a zeroed struct (or NULL) gives the defaults. */
struct brain_prefix_index_options {
    size_t initial_blocks; /* blocks to size the table for; 0 = small */
    uint64_t half_life_us; /* hotness half-life; 0 = 60 s */
    uint64_t seed;         /* salts the slot hash; 0 = a fixed default */
};

/*
 * Per-node result of find_matches().  matched[t], for t in 1..4, is the
 * length of the longest prefix of the chain whose every block this node
 * holds in tier t or a faster one (a lower number).  So matched[] never
 * decreases with t, and matched[BRAIN_PREFIX_TIER_NVME] is the node's
 * whole prefix match.  matched[0] is unused and always 0.
 */
struct brain_prefix_match {
    uint32_t matched[BRAIN_PREFIX_TIER_MAX + 1]; /* see above */
    uint16_t node;                               /* node id */
};

/* One holder of a block. */
struct brain_prefix_holder {
    uint16_t node; /* node id */
    uint8_t tiers; /* BRAIN_PREFIX_TIER_BIT() of every tier it holds */
};

/* What the index knows about one block. */
struct brain_prefix_block {
    uint64_t hash;     /* block hash */
    uint64_t parent;   /* parent block hash, 0 = root or unknown */
    double hotness;    /* decayed access count at the query's now_us */
    uint32_t nholders; /* live holders (removed nodes not counted) */
    uint16_t ns;       /* namespace id */
};

/* Cheap counters for the control socket and /metrics. */
struct brain_prefix_index_stats {
    uint64_t blocks;          /* blocks, incl. not-yet-swept ones */
    uint64_t slots;           /* hash table slots allocated */
    uint64_t overflow_blocks; /* blocks with more than 3 holders */
    uint64_t memory_bytes;    /* bytes the index has allocated */
    uint64_t rehashes;        /* hash table rebuilds so far */
    uint32_t dead_nodes;      /* removed nodes whose entries await sweep */
    uint64_t store_holes;     /* removed blocks' records awaiting compaction */
    uint64_t compactions;     /* store compactions so far */
    uint64_t lookup_blocks;   /* blocks find_matches() looked up after the
                               * first, all calls together */
    uint64_t lookup_jumps;    /* of which through a hash probe */
    uint64_t lookup_hints;    /* of which through a continuation hint */
    uint64_t lookup_skipped;  /* of which passed in bulk along a run (one
                               * record read per stretch, not per block) */
};

/* Called by for_each_hot(); a nonzero return stops the walk. */
typedef int (*brain_prefix_hot_cb)(const struct brain_prefix_block *blk,
                                   void *arg);

struct brain_prefix_index;

/* Creates an empty index; opts may be NULL.  -EINVAL, -ENOMEM. */
int brain_prefix_index_create(const struct brain_prefix_index_options *opts,
                              struct brain_prefix_index **out);
/* Frees everything; NULL is a no-op. */
void brain_prefix_index_destroy(struct brain_prefix_index *idx);

/* Grows the table now so that `blocks` blocks fit without a rebuild. */
int brain_prefix_index_reserve(struct brain_prefix_index *idx, size_t blocks);

/*
 * STORED: `node` holds block `hash` in `tier`.  Idempotent (agents resend
 * their inventory).  `parent` is kept if the block had none.  Returns 1
 * if something changed, 0 if it was already recorded.  Storing for a node
 * that was removed and is not yet swept finishes its sweep first, O(table).
 */
int brain_prefix_index_store(struct brain_prefix_index *idx, uint16_t ns,
                             uint16_t node, uint8_t tier, uint64_t hash,
                             uint64_t parent);
/* REMOVED: 0, or -ENOENT when `node` did not hold `hash` in `tier`. */
int brain_prefix_index_remove(struct brain_prefix_index *idx, uint16_t ns,
                              uint16_t node, uint8_t tier, uint64_t hash);
/*
 * ACCESSED: one more access of the block at now_us (hotness is per block,
 * cluster-wide; `node` is validated only).  Events may arrive out of
 * order.  0, or -ENOENT when the block is unknown.
 */
int brain_prefix_index_access(struct brain_prefix_index *idx, uint16_t ns,
                              uint16_t node, uint64_t hash, uint64_t now_us);
/*
 * Applies a batch of events in order (prefetching ahead, so this is the
 * fast path for agent reports); ACCESSED events use now_us.  The whole
 * batch is validated first: one bad event gives -EINVAL and nothing is
 * applied.  REMOVED/ACCESSED of unknown blocks are skipped (reports race).
 * Returns how many events changed the index; -ENOMEM stops the batch with
 * the events before the failing one applied.
 */
int brain_prefix_index_apply(struct brain_prefix_index *idx,
                             const struct brain_prefix_event *ev, size_t n,
                             uint64_t now_us);

/*
 * For the chain chain[0..n-1] in `ns`, writes one result per node holding
 * chain[0] (see struct brain_prefix_match), best first: by matched[4],
 * then matched[3], [2], [1] descending, then node ascending.  Returns the
 * number of such nodes, which may exceed out_cap (then only the first
 * out_cap are written; out may be NULL when out_cap is 0).
 */
int brain_prefix_index_find_matches(struct brain_prefix_index *idx,
                                    uint16_t ns, const uint64_t *chain,
                                    size_t n, struct brain_prefix_match *out,
                                    size_t out_cap);

/*
 * One block: fills *info (may be NULL) and up to cap holders sorted by
 * node.  Returns the number of live holders (may exceed cap), or -ENOENT
 * when no live node holds the block.
 */
int brain_prefix_index_lookup(struct brain_prefix_index *idx, uint16_t ns,
                              uint64_t hash, uint64_t now_us,
                              struct brain_prefix_block *info,
                              struct brain_prefix_holder *holders, size_t cap);

/*
 * A node failed or left: every block it held stops counting at once
 * (queries, counts).  The memory is reclaimed by brain_prefix_index_sweep()
 * (or the next rebuild).  Returns how many blocks the node held; removing a
 * node that holds nothing returns 0.
 */
int brain_prefix_index_remove_node(struct brain_prefix_index *idx,
                                   uint16_t node);
/*
 * Reclaims removed nodes' entries, examining at most `budget` store
 * positions, so the loop can spread the O(blocks) work.  Returns 1 while
 * work remains, 0 when none does.
 */
int brain_prefix_index_sweep(struct brain_prefix_index *idx, size_t budget);

/* Blocks `node` holds in `tier` (0 = in any tier) into *out. */
int brain_prefix_index_node_blocks(const struct brain_prefix_index *idx,
                                   uint16_t node, uint8_t tier, uint64_t *out);

/*
 * The k hottest blocks of `ns` at now_us, hottest first, into out[0..k-1].
 * Returns how many were written (fewer when the namespace is smaller).
 * Scans the whole store: meant for periodic decisions, not per request.
 */
int brain_prefix_index_top_k_hot(struct brain_prefix_index *idx, uint16_t ns,
                                 uint64_t now_us,
                                 struct brain_prefix_block *out, size_t k);
/*
 * Calls cb for each block of `ns` whose hotness at now_us is >=
 * min_hotness, in store order; cb must not modify the index.  Returns the
 * number of calls, or cb's nonzero value when it stopped the walk
 * (a negative value, then, is passed through as an error).
 */
int brain_prefix_index_for_each_hot(struct brain_prefix_index *idx,
                                    uint16_t ns, uint64_t now_us,
                                    double min_hotness, brain_prefix_hot_cb cb,
                                    void *arg);

/* Fills *out with the counters above. */
void brain_prefix_index_stats(const struct brain_prefix_index *idx,
                              struct brain_prefix_index_stats *out);

#endif /* MCOS_BRAIN_PREFIX_INDEX_H */
