/*
 * Global prefix index: a block store in arrival order behind a hash table
 * of positions (see docs/prefix-index.md for the design, the costs and
 * measured figures).
 *
 * In one paragraph: every block has one record in the store, split over
 * two parallel arrays: a 16-byte key record (key, namespace, up to three
 * holders), which is all a lookup reads, four to a cache line; and a
 * 16-byte cold record (parent, hotness) read by events and scans.  New
 * blocks are appended, so the blocks of a chain reported together (an
 * agent stores a request's new blocks in order) lie next to each other:
 * find_matches() checks whether chain[i + 1] is the record after
 * chain[i]'s and streams along such runs, going through the hash table
 * only where a run breaks.  A record keeps the block hash itself, so the
 * walk compares the chain's hashes as they are; the hash table is keyed
 * by m = fmix64(hash ^ salt(ns)), computed only to probe it.  It holds
 * 8-byte slots (the top 32 bits of m and the store position), sorted by
 * that tag with the monotone home (tag * cap) >> 32: a miss stops at the
 * first larger tag, a rebuild is one streaming pass, and there is no
 * wrap-around (spare slots follow the home range and the last slot is
 * always empty).  Removed blocks leave holes in the store that a
 * compaction (order kept, so runs stay runs) squeezes out once they pass
 * an eighth of the blocks.  Blocks with more than three holders keep them
 * in a pool of power-of-two arrays.  Holders are sorted by node.  Two bits
 * per store position (link: the next record is this one's child; skip:
 * and held alike) tell the walk, without reading records, how far a run
 * and its stretch of alike holders go: it prefetches them at once and
 * only compares keys along such a stretch.
 */
#include "prefix_index.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Namespace bits of kslot.nsf; the value stored is ns + 1, 0 = hole. */
#define NS_MASK 0x7fffu
/* kslot.nsf flag: the holders live in the pool, not inline. */
#define NSF_OVERFLOW 0x8000u
/* Holder encoding: node in the low 12 bits, tier mask in the high 4. */
#define H_NODE(h)          ((uint16_t)((h)&0x0fffu))
#define H_MASK(h)          ((unsigned)(h) >> 12)
#define H_MAKE(node, mask) ((uint16_t)((node) | ((unsigned)(mask) << 12)))
/* Holders kept inside the record before spilling to the pool. */
#define INLINE_HOLDERS 3
/* Pool arrays hold 4 << class entries; class 10 fits every node. */
#define POOL_CLASSES 11
#define POOL_NONE    UINT32_MAX
/*
 * Pool arrays of TIER_CACHE_MIN .. 64 holders (class 4: 64 entries, so
 * at least three whole TIER_CACHE_SPAN-entry spans of the pool, each one
 * word of pool_tiers) keep their tier bitsets for find_matches() there
 * (see note_holders()): a chain's block 0 is often such a block.
 */
#define TIER_CACHE_MIN  33
#define TIER_CACHE_SPAN 16
/* Hash sizing: grow past 80 % load, by half; never below MIN_CAP. */
#define LOAD_NUM 4
#define LOAD_DEN 5
#define MIN_CAP  64
#define TAIL_MAX 4096
/* Store positions are 32-bit (pos + 1 in a slot, 0 = empty slot). */
#define MAX_RECORDS ((size_t)UINT32_MAX - 1)
/* Store capacity grows by an eighth, in whole pages of records. */
#define STORE_MIN   256
#define STORE_ROUND 256
/* Compact once holes pass 1/COMPACT_DIV of the blocks (and this many). */
#define COMPACT_DIV 8
#define COMPACT_MIN 64
/*
 * Events are pipelined: an event's hash slot is prefetched EV_AHEAD
 * events before it is applied, and its store records EV_AHEAD / 2 before
 * (once its slot has arrived).  EV_AHEAD is a power of two.
 */
#define EV_AHEAD 16
/* find_matches() prefetches the hash slots of blocks 1 .. START_SLOTS. */
#define START_SLOTS 3
/* A chain walk prefetches the store this many lines ahead in a run. */
#define RUN_LINES 4
/* ... and this many when it knows how long the run is. */
#define RUN_AHEAD 24
/* Chains up to this long sort results by one 64-bit key (12-bit fields). */
#define PACK_MAX 0xfffu
/* Low bits of an rmap entry: a result index (< BRAIN_PREFIX_MAX_NODES). */
#define RMAP_INDEX 0xfffu
/* Hotness time is counted in 1/HOT_STEPS of a half-life. */
#define HOT_STEPS 64
/* Arrays at least this large are mmap'ed so they can use huge pages. */
#define MMAP_MIN_BYTES (2u << 20)
/* They are laid out in whole 2 MiB pages, aligned. */
#define HUGE_BYTES           (2u << 20)
#define DEFAULT_HALF_LIFE_US 60000000ull
#define DEFAULT_SEED         0x6d636f732d706978ull

/* A block's key record: what a lookup reads. */
struct kslot {
    uint64_t hash;    /* the block hash (its slot's tag is m's top bits) */
    uint16_t nsf;     /* ns + 1 (0 = hole) | NSF_OVERFLOW */
    uint16_t hold[3]; /* inline holders (0 = none, packed, by node),
                       * or with NSF_OVERFLOW: pool offset lo, hi, count */
};

/* The rest of a block, at the same position in the cold array. */
struct cslot {
    uint64_t parent; /* parent block hash as first reported, 0 = none */
    float hot;       /* decayed access count as of hot_q */
    uint32_t hot_q;  /* time of the last hotness update, in quanta */
};

/* A hash table slot; slots are sorted by tag. */
struct hslot {
    uint32_t tag;  /* m >> 32 */
    uint32_t pos1; /* store position + 1; 0 = empty slot */
};

/*
 * Run summary of 64 store positions: what tells find_matches() how far a
 * run and its stretch of alike holders go without reading the records.
 * Bit p % 64 of `link` says that records p and p + 1 both exist and
 * p + 1's parent is p's block; of `skip`, that they are linked and
 * same_holders() (one namespace, the same holders).  The walk prefetches
 * such a stretch at once and only compares keys along it.  Zero is
 * always safe (the walk then reads the record's holders), so a fresh
 * array needs no initialisation.
 */
struct runbits {
    uint64_t link; /* p + 1 is the child of p */
    uint64_t skip; /* ... and held exactly like p */
};

_Static_assert(sizeof(struct kslot) == 16, "four key records per line");
_Static_assert(offsetof(struct kslot, hold) ==
                       offsetof(struct kslot, nsf) + 2 &&
                   offsetof(struct kslot, nsf) == 8,
               "nsf and hold form the record's second word");
_Static_assert(sizeof(struct cslot) == 16, "cold record stays 16 bytes");
_Static_assert(sizeof(struct hslot) == 8, "eight hash slots per line");

struct brain_prefix_index {
    struct hslot *hs;       /* nslots hash slots, sorted by tag */
    size_t cap;             /* homes are in [0, cap) */
    size_t nslots;          /* cap + tail; slot nslots - 1 is empty */
    size_t grow_at;         /* rebuild before nentries exceeds this */
    struct kslot *ks;       /* store: key records, in arrival order */
    struct cslot *cs;       /* store: cold records, same positions */
    size_t used;            /* store positions handed out */
    size_t scap;            /* store positions allocated (both arrays) */
    size_t kcap;            /* key records allocated */
    size_t ccap;            /* cold records allocated */
    uint32_t *nx;           /* store: continuation hint per position */
    size_t xcap;            /* hints allocated */
    struct runbits *rb;     /* store: link and skip bits, 64 per entry */
    size_t bcap;            /* runbits entries allocated */
    size_t holes;           /* positions below `used` left by removals */
    size_t nentries;        /* blocks (occupied positions) */
    uint64_t seed;          /* salts m so keys are not caller-chosen */
    uint64_t quantum_us;    /* length of one hotness time quantum */
    float decay[HOT_STEPS]; /* decay[i] = 2^(-i / HOT_STEPS) */
    uint16_t *pool;         /* holder arrays of overflowing blocks */
    size_t pool_len;        /* entries handed out (high-water mark) */
    size_t pool_cap;        /* entries allocated */
    /* One word per TIER_CACHE_SPAN pool entries: for an array of
     * TIER_CACHE_MIN .. 64 holders at offset o, the three words from
     * tier_word(o) are tier_bits() of it. */
    uint64_t *pool_tiers;
    uint32_t pool_free[POOL_CLASSES]; /* free list head per size class */
    size_t overflow_blocks;           /* records with NSF_OVERFLOW */
    uint64_t rehashes;                /* hash rebuilds, for stats */
    uint64_t compactions;             /* store compactions */
    uint64_t dead[BRAIN_PREFIX_MAX_NODES / 64]; /* removed, not swept */
    unsigned ndead;                             /* bits set in dead */
    bool sweeping;                              /* a sweep pass is under way */
    size_t sweep_pos; /* store positions below this are swept */
    /* Blocks per node: [0] in any tier, [t] in tier t. */
    uint32_t count[BRAIN_PREFIX_MAX_NODES][BRAIN_PREFIX_TIER_MAX + 1];
    /* find_matches() scratch, kept here so queries never allocate. */
    uint32_t call_tag; /* this call's tag, a multiple of RMAP_INDEX + 1 */
    /* node -> this call's tag | its result index; other tags are stale. */
    uint32_t rmap[BRAIN_PREFIX_MAX_NODES];
    uint16_t rnode[BRAIN_PREFIX_MAX_NODES]; /* result index -> node */
    uint8_t cur[BRAIN_PREFIX_MAX_NODES];    /* fastest tier at block 0 */
    /* matched[t] of each result, written when it stops matching. */
    uint32_t mt[BRAIN_PREFIX_TIER_MAX + 1][BRAIN_PREFIX_MAX_NODES];
    /* Results whose every block so far is in tier t or faster. */
    uint64_t alive[BRAIN_PREFIX_TIER_MAX + 1][BRAIN_PREFIX_MAX_NODES / 64];
    /* Results holding the current block, by their fastest tier. */
    uint64_t held[BRAIN_PREFIX_TIER_MAX + 1][BRAIN_PREFIX_MAX_NODES / 64];
    /* One-word walks: per tier, the results that stopped matching it at
     * a block, and that block, in block order (see walk_one_word()). */
    struct {
        uint64_t mask; /* results (bits) that stopped */
        uint32_t at;   /* the block they stopped at: their matched[t] */
    } ends[64 + 2][BRAIN_PREFIX_TIER_MAX + 1]; /* [entry][tier]: a call's
                                                * first entries share lines */
    uint8_t nends[BRAIN_PREFIX_TIER_MAX + 1];  /* entries in each log */
    union {
        unsigned __int128 wide[BRAIN_PREFIX_MAX_NODES]; /* long chains */
        /* The rest: keys, then the same keys sorted. */
        uint64_t packed[2 * BRAIN_PREFIX_MAX_NODES];
    } keys; /* sort keys */
    /* Counters of the last find_matches() walk, for the benchmark. */
    uint64_t walk_blocks;  /* blocks looked up after block 0, all calls */
    uint64_t walk_jumps;   /* hash probes after block 0, all calls */
    uint64_t walk_hints;   /* hints followed after block 0, all calls */
    uint64_t walk_skipped; /* blocks passed along alike stretches, all */
};

/* --- hashing ----------------------------------------------------------- */

static inline uint64_t
fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return k;
}

static inline uint64_t
ns_salt(const struct brain_prefix_index *idx, uint16_t ns)
{
    return fmix64(idx->seed ^ ((uint64_t)(ns + 1) * 0x9e3779b97f4a7c15ull));
}

static inline uint64_t
key_of(const struct brain_prefix_index *idx, uint16_t ns, uint64_t hash)
{
    return fmix64(hash ^ ns_salt(idx, ns));
}

static inline uint32_t
tag_of(uint64_t m)
{
    return (uint32_t)(m >> 32);
}

/* Monotone in the tag, so sorting slots by tag keeps the table sorted. */
static inline size_t
home_of(size_t cap, uint32_t tag)
{
    return (size_t)(((uint64_t)tag * cap) >> 32);
}

/* --- small helpers ----------------------------------------------------- */

static inline bool
valid_tier(uint8_t tier)
{
    return tier >= 1 && tier <= BRAIN_PREFIX_TIER_MAX;
}

static inline bool
valid_ns(uint16_t ns)
{
    return ns < BRAIN_PREFIX_MAX_NS;
}

static inline bool
is_dead(const struct brain_prefix_index *idx, uint16_t node)
{
    return (idx->dead[node >> 6] >> (node & 63)) & 1;
}

static inline unsigned
fastest_tier(unsigned mask)
{
    return (unsigned)__builtin_ctz(mask) + 1;
}

static inline unsigned
pool_class(uint32_t n)
{
    if (n <= 4)
        return 0;
    return (unsigned)(64 - __builtin_clzll((unsigned long long)n - 1)) - 2;
}

static inline uint32_t
slot_pool_off(const struct kslot *k)
{
    return (uint32_t)k->hold[0] | (uint32_t)k->hold[1] << 16;
}

static inline void
slot_set_pool(struct kslot *k, uint32_t off, uint32_t n)
{
    k->hold[0] = (uint16_t)off;
    k->hold[1] = (uint16_t)(off >> 16);
    k->hold[2] = (uint16_t)n;
}

/* The slot's holder array and its length; valid until the pool moves. */
static inline uint16_t *
holders_of(struct brain_prefix_index *idx, struct kslot *k, uint32_t *n)
{
    if (k->nsf & NSF_OVERFLOW) {
        *n = k->hold[2];
        return idx->pool + slot_pool_off(k);
    }
    *n = k->hold[0] == 0 ? 0 : k->hold[1] == 0 ? 1 : k->hold[2] == 0 ? 2 : 3;
    return k->hold;
}

/*
 * A record's namespace and holders as one word (one load): equal words
 * mean the same holders (inline, or the same pool array), so a block
 * held exactly like the one before it needs no work.
 */
static inline uint64_t
hold_word(const struct kslot *k)
{
    uint64_t w;

    memcpy(&w, (const char *)k + offsetof(struct kslot, nsf), sizeof(w));
    return w;
}

/*
 * Whether records a and b are in one namespace with the same holders:
 * one word compare for inline holders; for pool-held ones (a system
 * prompt replicated everywhere) a compare of their arrays, far cheaper
 * than the walk's work per holder.
 */
static inline bool
same_holders(const struct brain_prefix_index *idx, const struct kslot *a,
             const struct kslot *b)
{
    if (hold_word(a) == hold_word(b))
        return true;
    return (a->nsf & NSF_OVERFLOW) && a->nsf == b->nsf &&
           a->hold[2] == b->hold[2] &&
           memcmp(idx->pool + slot_pool_off(a), idx->pool + slot_pool_off(b),
                  a->hold[2] * sizeof(*idx->pool)) == 0;
}

/* Index of node in h[0..n-1] (sorted by node), or where it would go. */
static inline uint32_t
holder_search(const uint16_t *h, uint32_t n, uint16_t node)
{
    const uint16_t *b = h;

    if (n == 0)
        return 0;
    /*
     * Halving without a branch on the data (a conditional move): the
     * holders a chain walk looks up follow no pattern, and a
     * mispredicted branch per step cost more than the search.
     */
    while (n > 1) {
        uint32_t half = n / 2;
        b = H_NODE(b[half]) < node ? b + half : b;
        n -= half;
    }
    return (uint32_t)(b - h) + (H_NODE(*b) < node);
}

/* hot * 2^(-dq / HOT_STEPS), by table and exponent, without exp2(). */
static inline float
decayed(const struct brain_prefix_index *idx, float hot, uint32_t dq)
{
    if (dq >= HOT_STEPS * 120u)
        return 0.0f;
    return ldexpf(hot * idx->decay[dq % HOT_STEPS], -(int)(dq / HOT_STEPS));
}

static inline uint32_t
quantum_of(const struct brain_prefix_index *idx, uint64_t now_us)
{
    return (uint32_t)(now_us / idx->quantum_us);
}

/* Hotness of c at quantum q; times before the last update count as it. */
static inline float
hot_at(const struct brain_prefix_index *idx, const struct cslot *c, uint32_t q)
{
    int32_t dq = (int32_t)(q - c->hot_q);
    return dq > 0 ? decayed(idx, c->hot, (uint32_t)dq) : c->hot;
}

/* --- holder pool ------------------------------------------------------- */

/*
 * Arrays of 4 << class holders, carved from one growing buffer and
 * recycled through per-class free lists (the link lives in the first two
 * entries).  Shrinking splits an array in place so it cannot fail; a
 * rebuild compacts the pool.
 */
static int
pool_alloc(struct brain_prefix_index *idx, unsigned cls, uint32_t *off)
{
    size_t size = (size_t)4 << cls;

    if (idx->pool_free[cls] != POOL_NONE) {
        uint32_t o = idx->pool_free[cls];
        idx->pool_free[cls] =
            (uint32_t)idx->pool[o] | (uint32_t)idx->pool[o + 1] << 16;
        *off = o;
        return 0;
    }
    if (idx->pool_len + size > idx->pool_cap) {
        size_t ncap = idx->pool_cap ? idx->pool_cap * 2 : 4096;
        while (ncap < idx->pool_len + size)
            ncap *= 2;
        if (ncap > (size_t)UINT32_MAX)
            return -ENOMEM;
        uint16_t *np = realloc(idx->pool, ncap * sizeof(*np));
        if (!np)
            return -ENOMEM;
        idx->pool = np;
        uint64_t *nt =
            realloc(idx->pool_tiers, ncap / TIER_CACHE_SPAN * sizeof(*nt));
        if (!nt)
            return -ENOMEM;
        idx->pool_tiers = nt;
        idx->pool_cap = ncap;
    }
    *off = (uint32_t)idx->pool_len;
    idx->pool_len += size;
    return 0;
}

static void
pool_free(struct brain_prefix_index *idx, unsigned cls, uint32_t off)
{
    uint32_t next = idx->pool_free[cls];

    idx->pool[off] = (uint16_t)next;
    idx->pool[off + 1] = (uint16_t)(next >> 16);
    idx->pool_free[cls] = off;
}

/*
 * An overflowing slot's array of class `cls` now has n live entries at
 * its front: move them inline when they fit, else give back the unused
 * halves.  Never fails.
 */
static void
shrink_holders(struct brain_prefix_index *idx, struct kslot *k, unsigned cls,
               uint32_t n)
{
    uint32_t off = slot_pool_off(k);

    if (n <= INLINE_HOLDERS) {
        const uint16_t *p = idx->pool + off;
        for (uint32_t i = 0; i < INLINE_HOLDERS; i++)
            k->hold[i] = i < n ? p[i] : 0;
        k->nsf &= (uint16_t)~NSF_OVERFLOW;
        pool_free(idx, cls, off);
        idx->overflow_blocks--;
        return;
    }
    while (cls > pool_class(n)) {
        cls--;
        pool_free(idx, cls, off + ((uint32_t)4 << cls));
    }
    k->hold[2] = (uint16_t)n;
}

/* --- arrays ------------------------------------------------------------ */

/* Bytes an array of `bytes` takes: large ones are whole huge pages. */
static size_t
array_bytes(size_t bytes)
{
    if (bytes < MMAP_MIN_BYTES)
        return bytes;
    return (bytes + HUGE_BYTES - 1) & ~(size_t)(HUGE_BYTES - 1);
}

/*
 * A fresh mapping of `len` bytes (a multiple of HUGE_BYTES) that starts
 * on a HUGE_BYTES boundary, so that all of it can be backed by 2 MiB
 * pages: mmap() only promises 4 KiB alignment, and a huge page is only
 * used where a whole aligned 2 MiB range lies inside the mapping.
 */
static void *
huge_map(size_t len)
{
    size_t span = len + HUGE_BYTES;
    char *p = mmap(NULL, span, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED)
        return NULL;
    uintptr_t a =
        ((uintptr_t)p + HUGE_BYTES - 1) & ~(uintptr_t)(HUGE_BYTES - 1);
    size_t head = a - (uintptr_t)p;
    if (head)
        (void)munmap(p, head);
    if (span - head > len)
        (void)munmap((char *)a + len, span - head - len);
    /* Random probes over GBs: 2 MiB pages spare most TLB misses. */
    (void)madvise((void *)a, len, MADV_HUGEPAGE);
    return (void *)a;
}

/* Zeroed memory: zero is an empty slot, so a new table needs no pass. */
static void *
array_alloc(size_t bytes)
{
    if (bytes < MMAP_MIN_BYTES)
        return calloc(1, bytes ? bytes : 1);
    return huge_map(array_bytes(bytes));
}

static void
array_free(void *p, size_t bytes)
{
    if (!p)
        return;
    if (bytes < MMAP_MIN_BYTES)
        free(p);
    else
        munmap(p, array_bytes(bytes));
}

/*
 * Grows an array from `old` to `bytes` (bytes > old), keeping its
 * contents; large arrays are remapped, not copied: in place if the
 * address space after them is free, else moved to a new aligned range
 * (a move to another offset within 2 MiB would split every huge page of
 * the array into 4 KiB pages, as an unaligned MREMAP_MAYMOVE does).
 * NULL on failure, and then the old array is untouched.
 */
static void *
array_grow(void *p, size_t old, size_t bytes)
{
    void *np;

    if (bytes < MMAP_MIN_BYTES)
        return realloc(p, bytes);
    if (old < MMAP_MIN_BYTES) {
        np = array_alloc(bytes);
        if (np && old)
            memcpy(np, p, old);
        if (np)
            free(p);
        return np;
    }
    size_t ob = array_bytes(old), nb = array_bytes(bytes);
    if (nb == ob)
        return p;
    np = mremap(p, ob, nb, 0);
    if (np == MAP_FAILED) {
        void *dst = huge_map(nb);
        if (!dst)
            return NULL;
        np = mremap(p, ob, nb, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
        if (np == MAP_FAILED) {
            munmap(dst, nb);
            return NULL;
        }
    }
    (void)madvise(np, nb, MADV_HUGEPAGE);
    return np;
}

/* --- hash table -------------------------------------------------------- */

static size_t
tail_for(size_t cap)
{
    size_t tail = cap / 4 + 16;
    return tail < TAIL_MAX ? tail : TAIL_MAX;
}

/*
 * Rebuilds the hash table with `cap` homes.  Because the table is sorted
 * and the home map is monotone, each slot goes to max(home, previous + 1):
 * one streaming pass, no probing, and the store is not touched.  -EAGAIN
 * when the tail is too short for this cap (the caller retries larger); on
 * any error the old table is untouched.
 */
static int
rebuild(struct brain_prefix_index *idx, size_t cap)
{
    size_t nslots = cap + tail_for(cap);
    size_t next = 0;
    struct hslot *nh;

    if (cap > (size_t)UINT32_MAX || nslots > SIZE_MAX / sizeof(*nh))
        return -ENOMEM;
    nh = array_alloc(nslots * sizeof(*nh));
    if (!nh)
        return -ENOMEM;
    for (size_t i = 0; i + 1 < idx->nslots; i++) {
        const struct hslot *h = &idx->hs[i];
        if (h->pos1 == 0)
            continue;
        size_t pos = home_of(cap, h->tag);
        if (pos < next)
            pos = next;
        if (pos + 1 >= nslots) {
            array_free(nh, nslots * sizeof(*nh));
            return -EAGAIN;
        }
        nh[pos] = *h;
        next = pos + 1;
    }
    array_free(idx->hs, idx->nslots * sizeof(*idx->hs));
    idx->hs = nh;
    idx->cap = cap;
    idx->nslots = nslots;
    idx->grow_at =
        cap / LOAD_DEN * LOAD_NUM + cap % LOAD_DEN * LOAD_NUM / LOAD_DEN;
    idx->rehashes++;
    return 0;
}

/* Makes room for `want` entries: grows by half, or more if asked. */
static int
grow(struct brain_prefix_index *idx, size_t want)
{
    size_t cap = idx->cap + idx->cap / 2;
    size_t need = want / LOAD_NUM * LOAD_DEN + LOAD_DEN;
    int r = -EAGAIN;

    if (cap < need)
        cap = need;
    if (cap < MIN_CAP)
        cap = MIN_CAP;
    /* Only a hostile key set clusters past the tail; then double. */
    for (int tries = 0; tries < 4 && r == -EAGAIN; tries++) {
        r = rebuild(idx, cap);
        cap *= 2;
    }
    return r == -EAGAIN ? -ENOSPC : r;
}

/* The key record behind a hash slot. */
static inline struct kslot *
slot_rec(const struct brain_prefix_index *idx, const struct hslot *h)
{
    return &idx->ks[h->pos1 - 1];
}

/*
 * The hash slot of (m, nsv) if present (*found), else where it would be
 * inserted.  nsv is ns + 1.  Slots with the key's tag are checked against
 * the store; a tag is 32 bits, so another key shares it about once in
 * 2^32 / probe length lookups.  Terminates on the empty last slot.
 */
static inline size_t
probe(const struct brain_prefix_index *idx, uint64_t m, uint64_t hash,
      uint16_t nsv, bool *found)
{
    uint32_t tag = tag_of(m);
    const struct hslot *h = idx->hs + home_of(idx->cap, tag);

    while (h->pos1 != 0 && h->tag < tag)
        h++;
    for (; h->pos1 != 0 && h->tag == tag; h++) {
        const struct kslot *k = slot_rec(idx, h);
        if (k->hash == hash && (k->nsf & NS_MASK) == nsv) {
            *found = true;
            return (size_t)(h - idx->hs);
        }
    }
    *found = false;
    return (size_t)(h - idx->hs);
}

/*
 * Prefetches the hash slots a probe for m reads: its home and, when the
 * home is near the end of its line, the next line (a displaced entry
 * would otherwise stall on a second miss).
 */
static inline void
prefetch_slots(const struct brain_prefix_index *idx, uint64_t m)
{
    const struct hslot *h = idx->hs + home_of(idx->cap, tag_of(m));
    __builtin_prefetch(h, 0, 3);
    __builtin_prefetch(h + 2, 0, 3);
}

/* Removes hash slot p, pulling the displaced slots after it back. */
static void
hash_delete(struct brain_prefix_index *idx, size_t p)
{
    struct hslot *hs = idx->hs;
    size_t e = p + 1;

    while (hs[e].pos1 != 0 && home_of(idx->cap, hs[e].tag) < e)
        e++;
    memmove(&hs[p], &hs[p + 1], (e - p - 1) * sizeof(*hs));
    memset(&hs[e - 1], 0, sizeof(*hs));
}

/* --- store ------------------------------------------------------------- */

/*
 * One store array, of *cap elements of `size` bytes, grown to ncap
 * elements unless it has them already; NULL when that fails.
 */
static void *
grow_to(void *p, size_t *cap, size_t size, size_t ncap)
{
    if (*cap >= ncap)
        return p;
    void *np = array_grow(p, *cap * size, ncap * size);
    if (np)
        *cap = ncap;
    return np;
}

/* Grows the store so that `want` positions fit. */
static int
store_reserve(struct brain_prefix_index *idx, size_t want)
{
    size_t ncap = idx->scap + idx->scap / 8;

    if (want <= idx->scap)
        return 0;
    if (want > MAX_RECORDS)
        return -ENOMEM;
    if (ncap < want)
        ncap = want;
    if (ncap < STORE_MIN)
        ncap = STORE_MIN;
    ncap = (ncap + STORE_ROUND - 1) / STORE_ROUND * STORE_ROUND;
    if (ncap > MAX_RECORDS)
        ncap = MAX_RECORDS;
    /* Each array keeps its own size, so a failure half way is harmless. */
    struct kslot *nk = grow_to(idx->ks, &idx->kcap, sizeof(*nk), ncap);
    if (!nk)
        return -ENOMEM;
    idx->ks = nk;
    struct cslot *nc = grow_to(idx->cs, &idx->ccap, sizeof(*nc), ncap);
    if (!nc)
        return -ENOMEM;
    idx->cs = nc;
    uint32_t *nx = grow_to(idx->nx, &idx->xcap, sizeof(*nx), ncap);
    if (!nx)
        return -ENOMEM;
    idx->nx = nx;
    size_t obcap = idx->bcap;
    struct runbits *nb =
        grow_to(idx->rb, &idx->bcap, sizeof(*nb), ncap / 64 + 1);
    if (!nb)
        return -ENOMEM;
    /* realloc() does not zero; zero bits are the safe ones. */
    memset(nb + obcap, 0, (idx->bcap - obcap) * sizeof(*nb));
    idx->rb = nb;
    idx->scap = ncap;
    return 0;
}

/* Sets both run bits of position p. */
static inline void
rb_put(struct runbits *rb, size_t p, bool link, bool skip)
{
    uint64_t b = 1ull << (p % 64);
    struct runbits *r = &rb[p / 64];

    r->link = link ? r->link | b : r->link & ~b;
    r->skip = skip ? r->skip | b : r->skip & ~b;
}

/*
 * Recomputes the skip bit of the pair (p, p + 1) from its link bit and
 * the two records' holders.  Every change to a record's holders (pool
 * arrays included) calls this for both its pairs, so the bit is exact.
 */
static void
pair_update(struct brain_prefix_index *idx, size_t p)
{
    uint64_t b = 1ull << (p % 64);
    bool link = p + 1 < idx->used && (idx->rb[p / 64].link & b);
    const struct kslot *k = &idx->ks[p];

    rb_put(idx->rb, p, link, link && same_holders(idx, k, k + 1));
}

/*
 * a[t - 1] |= bit j for each holder h[j] (j < nh <= 64) holding its block
 * in tier t or faster (t = 1..3): block 0's holders as results.  Four
 * holders at a time: their tier masks are 4-bit fields of a word, folded
 * so that bit 0 of each 16-bit lane says "tier t or faster", and a
 * multiply gathers the four lane bits into four adjacent bits.
 */
static inline void
tier_bits(const uint16_t *h, uint32_t nh, uint64_t a[3])
{
    uint32_t j = 0;

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const uint64_t lane = 0x0001000100010001ull;
    /* Lane k's bit 0 goes to bit 48 + k; no other product reaches 48..51. */
    const uint64_t gather = 1ull << 48 | 1ull << 33 | 1ull << 18 | 1ull << 3;
    for (; j + 4 <= nh; j += 4) {
        uint64_t w;
        memcpy(&w, h + j, sizeof(w));
        uint64_t x = w >> 12 & 0x000f000f000f000full;
        uint64_t x1 = x | x >> 1;
        a[0] |= ((x & lane) * gather >> 48) << j;
        a[1] |= ((x1 & lane) * gather >> 48) << j;
        a[2] |= (((x1 | x >> 2) & lane) * gather >> 48) << j;
    }
#endif
    for (; j < nh; j++) {
        unsigned mk = H_MASK(h[j]);
        a[0] |= (uint64_t)(mk & 1) << j;
        a[1] |= (uint64_t)((mk & 3) != 0) << j;
        a[2] |= (uint64_t)((mk & 7) != 0) << j;
    }
}

/*
 * The first pool_tiers word of the array at pool offset off: the first
 * TIER_CACHE_SPAN-entry span wholly inside it (offsets are multiples of
 * 4, an array of 64 entries holds three such spans from there, and no
 * other array overlaps them).
 */
static inline size_t
tier_word(uint32_t off)
{
    return (off + TIER_CACHE_SPAN - 1) / TIER_CACHE_SPAN;
}

/*
 * After any change of record pos's holders: its pairs with both
 * neighbours (the run bits) may change too, and so may the tier bitsets
 * of a pool array of TIER_CACHE_MIN .. 64 holders, which find_matches()
 * reads instead of gathering them when the block is a chain's block 0
 * (a system prompt many nodes hold: work every call would repeat).
 */
static void
note_holders(struct brain_prefix_index *idx, size_t pos)
{
    const struct kslot *k = &idx->ks[pos];

    if (pos > 0)
        pair_update(idx, pos - 1);
    pair_update(idx, pos);
    if ((k->nsf & NSF_OVERFLOW) && k->hold[2] >= TIER_CACHE_MIN &&
        k->hold[2] <= 64) {
        uint32_t off = slot_pool_off(k);
        uint64_t a[3] = {0, 0, 0};
        tier_bits(idx->pool + off, k->hold[2], a);
        memcpy(&idx->pool_tiers[tier_word(off)], a, sizeof(a));
    }
}

/* Live positions below old position p: its position after compaction. */
static inline uint32_t
rank_of(const uint64_t *bits, const uint32_t *before, size_t p)
{
    uint64_t below = bits[p / 64] & ((1ull << (p % 64)) - 1);
    return before[p / 64] + (uint32_t)__builtin_popcountll(below);
}

/*
 * Squeezes the holes out of the store, keeping the order (so runs stay
 * runs), and rewrites the positions in the hash table through a rank
 * structure: a bit per old position and the number of live records
 * before each 64-position word.  -ENOMEM leaves everything as it was.
 */
static int
compact(struct brain_prefix_index *idx)
{
    size_t nw = (idx->used + 63) / 64, dst = 0;
    uint64_t *bits = calloc(nw ? nw : 1, sizeof(*bits));
    uint32_t *before = malloc((nw ? nw : 1) * sizeof(*before));

    if (!bits || !before) {
        free(bits);
        free(before);
        return -ENOMEM;
    }
    for (size_t p = 0; p < idx->used; p++) {
        if (p % 64 == 0)
            before[p / 64] = (uint32_t)dst;
        if (idx->ks[p].nsf == 0)
            continue;
        bits[p / 64] |= 1ull << (p % 64);
        if (dst != p) {
            const struct runbits *r = &idx->rb[p / 64];
            uint64_t b = 1ull << (p % 64);
            idx->ks[dst] = idx->ks[p];
            idx->cs[dst] = idx->cs[p];
            idx->nx[dst] = idx->nx[p];
            /* A record before a hole has clear bits (see drop_rec()), so
             * its bits stay true next to its new neighbour. */
            rb_put(idx->rb, dst, r->link & b, r->skip & b);
        }
        dst++;
    }
    for (size_t p = dst; p < idx->used; p++)
        rb_put(idx->rb, p, false, false);
    /* Hints move with their targets; hints to holes are dropped. */
    for (size_t p = 0; p < dst; p++) {
        size_t q = idx->nx[p];
        if (q == 0)
            continue;
        q--;
        idx->nx[p] = q < idx->used && (bits[q / 64] >> (q % 64) & 1)
                         ? rank_of(bits, before, q) + 1
                         : 0;
    }
    for (size_t i = 0; i + 1 < idx->nslots; i++) {
        struct hslot *h = &idx->hs[i];
        if (h->pos1 == 0)
            continue;
        h->pos1 = rank_of(bits, before, h->pos1 - 1) + 1;
    }
    if (idx->sweeping) {
        /* Positions below the sweep map below its rank: keep its place. */
        size_t p = idx->sweep_pos;
        idx->sweep_pos = p >= idx->used ? dst : rank_of(bits, before, p);
    }
    free(bits);
    free(before);
    idx->used = dst;
    idx->holes = 0;
    idx->compactions++;
    return 0;
}

/*
 * Frees the pool array (if any) and the record at pos, whose hash slot is
 * s.  The position becomes a hole; holes at the end are handed back.
 */
static void
drop_rec(struct brain_prefix_index *idx, size_t s, size_t pos)
{
    struct kslot *k = &idx->ks[pos];

    if (k->nsf & NSF_OVERFLOW) {
        pool_free(idx, pool_class(k->hold[2]), slot_pool_off(k));
        idx->overflow_blocks--;
    }
    memset(k, 0, sizeof(*k));
    idx->nx[pos] = 0;
    /* No pair with a hole is linked. */
    rb_put(idx->rb, pos, false, false);
    if (pos > 0)
        rb_put(idx->rb, pos - 1, false, false);
    hash_delete(idx, s);
    idx->nentries--;
    idx->holes++;
    while (idx->used > 0 && idx->ks[idx->used - 1].nsf == 0) {
        idx->used--;
        idx->holes--;
    }
}

/* --- dead nodes -------------------------------------------------------- */

/* Drops removed nodes' holders from k; returns how many remain. */
static uint32_t
purge_dead(struct brain_prefix_index *idx, struct kslot *k)
{
    uint32_t n, live = 0;
    uint16_t *h = holders_of(idx, k, &n);

    for (uint32_t j = 0; j < n; j++)
        if (!is_dead(idx, H_NODE(h[j])))
            h[live++] = h[j];
    if (live == n)
        return n;
    if (k->nsf & NSF_OVERFLOW) {
        shrink_holders(idx, k, pool_class(n), live);
    } else {
        for (uint32_t j = live; j < INLINE_HOLDERS; j++)
            k->hold[j] = 0;
    }
    note_holders(idx, (size_t)(k - idx->ks));
    return live;
}

int
brain_prefix_index_sweep(struct brain_prefix_index *idx, size_t budget)
{
    if (!idx)
        return -EINVAL;
    while (idx->sweeping && budget > 0) {
        size_t pos = idx->sweep_pos;
        budget--;
        if (pos >= idx->used) {
            memset(idx->dead, 0, sizeof(idx->dead));
            idx->ndead = 0;
            idx->sweeping = false;
            idx->sweep_pos = 0;
            break;
        }
        struct kslot *k = &idx->ks[pos];
        if (k->nsf != 0 && purge_dead(idx, k) == 0) {
            bool found;
            uint16_t nsv = k->nsf & NS_MASK;
            size_t s = probe(idx, key_of(idx, (uint16_t)(nsv - 1), k->hash),
                             k->hash, nsv, &found);
            /* Every record has its slot; a miss would be a bug. */
            if (found)
                drop_rec(idx, s, pos);
        }
        idx->sweep_pos = pos + 1;
    }
    return idx->sweeping ? 1 : 0;
}

int
brain_prefix_index_remove_node(struct brain_prefix_index *idx, uint16_t node)
{
    if (!idx || node >= BRAIN_PREFIX_MAX_NODES)
        return -EINVAL;
    uint32_t held = idx->count[node][0];
    if (held == 0)
        return 0;
    idx->dead[node >> 6] |= 1ull << (node & 63);
    idx->ndead++;
    memset(idx->count[node], 0, sizeof(idx->count[node]));
    /* Start over: a pass already under way may have passed its blocks. */
    idx->sweeping = true;
    idx->sweep_pos = 0;
    return held > INT_MAX ? INT_MAX : (int)held;
}

/* --- lifecycle --------------------------------------------------------- */

int
brain_prefix_index_create(const struct brain_prefix_index_options *opts,
                          struct brain_prefix_index **out)
{
    struct brain_prefix_index_options o = {0};
    struct brain_prefix_index *idx;
    int r;

    if (!out)
        return -EINVAL;
    *out = NULL;
    if (opts)
        o = *opts;
    if (o.half_life_us == 0)
        o.half_life_us = DEFAULT_HALF_LIFE_US;
    if (o.seed == 0)
        o.seed = DEFAULT_SEED;
    if (o.initial_blocks > MAX_RECORDS)
        return -EINVAL;

    idx = calloc(1, sizeof(*idx));
    if (!idx)
        return -ENOMEM;
    idx->seed = o.seed;
    idx->quantum_us = o.half_life_us / HOT_STEPS;
    if (idx->quantum_us == 0)
        idx->quantum_us = 1;
    for (int i = 0; i < HOT_STEPS; i++)
        idx->decay[i] = (float)exp2(-(double)i / HOT_STEPS);
    for (unsigned c = 0; c < POOL_CLASSES; c++)
        idx->pool_free[c] = POOL_NONE;
    idx->call_tag = 0;
    /* A one-slot empty table until the first rebuild sizes it. */
    idx->nslots = 1;
    idx->hs = calloc(1, sizeof(*idx->hs));
    if (!idx->hs) {
        brain_prefix_index_destroy(idx);
        return -ENOMEM;
    }
    r = grow(idx, o.initial_blocks);
    if (r == 0)
        r = store_reserve(idx, o.initial_blocks);
    if (r < 0) {
        brain_prefix_index_destroy(idx);
        return r;
    }
    idx->rehashes = 0;
    *out = idx;
    return 0;
}

void
brain_prefix_index_destroy(struct brain_prefix_index *idx)
{
    if (!idx)
        return;
    array_free(idx->hs, idx->nslots * sizeof(*idx->hs));
    array_free(idx->ks, idx->kcap * sizeof(*idx->ks));
    array_free(idx->cs, idx->ccap * sizeof(*idx->cs));
    array_free(idx->nx, idx->xcap * sizeof(*idx->nx));
    array_free(idx->rb, idx->bcap * sizeof(*idx->rb));
    free(idx->pool);
    free(idx->pool_tiers);
    free(idx);
}

int
brain_prefix_index_reserve(struct brain_prefix_index *idx, size_t blocks)
{
    int r = 0;

    if (!idx || blocks > MAX_RECORDS)
        return -EINVAL;
    if (blocks > idx->grow_at)
        r = grow(idx, blocks);
    if (r == 0)
        r = store_reserve(
            idx,
            idx->used + (blocks > idx->nentries ? blocks - idx->nentries : 0));
    return r;
}

/* --- events ------------------------------------------------------------ */

/*
 * Adds tier bit `bit` for node to k, keeping holders sorted by node (so
 * find_matches() results come out in node order).  Returns 2 if node is a
 * new holder, 1 if it gained a tier, 0 if nothing changed, -ENOMEM.
 */
static int
add_holder(struct brain_prefix_index *idx, struct kslot *k, uint16_t node,
           unsigned bit)
{
    uint32_t n, off;
    uint16_t *h = holders_of(idx, k, &n);
    uint32_t j = holder_search(h, n, node);
    uint16_t v = H_MAKE(node, bit);
    int r;

    if (j < n && H_NODE(h[j]) == node) {
        if (H_MASK(h[j]) & bit)
            return 0;
        h[j] |= (uint16_t)(bit << 12);
        return 1;
    }
    if (!(k->nsf & NSF_OVERFLOW)) {
        if (n < INLINE_HOLDERS) {
            memmove(&h[j + 1], &h[j], (n - j) * sizeof(*h));
            h[j] = v;
            return 2;
        }
        r = pool_alloc(idx, 0, &off);
        if (r < 0)
            return r;
        uint16_t *p = idx->pool + off;
        memcpy(p, k->hold, j * sizeof(*p));
        p[j] = v;
        memcpy(p + j + 1, k->hold + j, (INLINE_HOLDERS - j) * sizeof(*p));
        k->nsf |= NSF_OVERFLOW;
        slot_set_pool(k, off, INLINE_HOLDERS + 1);
        idx->overflow_blocks++;
        return 2;
    }
    unsigned cls = pool_class(n);
    uint32_t cur = slot_pool_off(k);
    if (n == (uint32_t)4 << cls) {
        r = pool_alloc(idx, cls + 1, &off);
        if (r < 0)
            return r;
        /* pool_alloc may have moved the pool: take pointers after it. */
        const uint16_t *src = idx->pool + cur;
        uint16_t *dst = idx->pool + off;
        memcpy(dst, src, j * sizeof(*dst));
        dst[j] = v;
        memcpy(dst + j + 1, src + j, (n - j) * sizeof(*dst));
        pool_free(idx, cls, cur);
        slot_set_pool(k, off, n + 1);
        return 2;
    }
    uint16_t *p = idx->pool + cur;
    memmove(p + j + 1, p + j, (n - j) * sizeof(*p));
    p[j] = v;
    k->hold[2] = (uint16_t)(n + 1);
    return 2;
}

/*
 * Clears tier bit `bit` of node in k.  Returns -ENOENT if it was not set,
 * 1 if the slot still has holders, 0 if it has none left; *gone tells
 * whether node stopped being a holder.
 */
static int
del_holder(struct brain_prefix_index *idx, struct kslot *k, uint16_t node,
           unsigned bit, bool *gone)
{
    uint32_t n;
    uint16_t *h = holders_of(idx, k, &n);
    uint32_t j = holder_search(h, n, node);

    *gone = false;
    if (j >= n || H_NODE(h[j]) != node || !(H_MASK(h[j]) & bit))
        return -ENOENT;
    h[j] &= (uint16_t) ~(bit << 12);
    if (H_MASK(h[j]) != 0)
        return 1;
    *gone = true;
    memmove(&h[j], &h[j + 1], (n - j - 1) * sizeof(*h));
    n--;
    if (k->nsf & NSF_OVERFLOW)
        shrink_holders(idx, k, pool_class(n + 1), n);
    else
        h[n] = 0;
    return n > 0 ? 1 : 0;
}

/*
 * A new block went to store position pos: unless it landed right after
 * its parent (the common case: a report stores a chain's new blocks in
 * order), point the parent's continuation hint at it, so a chain walk
 * that leaves the parent's run jumps here without a hash probe.  The
 * newest child wins; hints are only ever hints (the walk checks the key).
 */
static bool
link_parent(struct brain_prefix_index *idx, uint64_t parent, uint16_t nsv,
            size_t pos)
{
    bool found;

    if (pos > 0 && idx->ks[pos - 1].hash == parent &&
        (idx->ks[pos - 1].nsf & NS_MASK) == nsv)
        return true;
    size_t s = probe(idx, key_of(idx, (uint16_t)(nsv - 1), parent), parent,
                     nsv, &found);
    if (found)
        idx->nx[idx->hs[s].pos1 - 1] = (uint32_t)(pos + 1);
    return false;
}

static int
do_store(struct brain_prefix_index *idx, uint64_t m, uint64_t hash,
         uint16_t nsv, uint16_t node, uint8_t tier, uint64_t parent)
{
    unsigned bit = BRAIN_PREFIX_TIER_BIT(tier);
    bool found;
    size_t s;
    int r;

    if (idx->ndead && is_dead(idx, node))
        (void)brain_prefix_index_sweep(idx, SIZE_MAX);
    s = probe(idx, m, hash, nsv, &found);
    if (found) {
        size_t pos = idx->hs[s].pos1 - 1;
        struct kslot *k = &idx->ks[pos];
        /* If only removed nodes held it, it simply starts over here. */
        if (idx->ndead)
            (void)purge_dead(idx, k);
        r = add_holder(idx, k, node, bit);
        if (r < 0)
            return r;
        if (idx->cs[pos].parent == 0)
            idx->cs[pos].parent = parent;
        if (r == 0)
            return 0;
        note_holders(idx, pos);
        idx->count[node][tier]++;
        if (r == 2)
            idx->count[node][0]++;
        return 1;
    }
    /*
     * A new block: room in the store first (compaction only rewrites
     * positions, so the slot found above stays right), then in the table.
     */
    if (idx->holes >= COMPACT_MIN && idx->holes > idx->nentries / COMPACT_DIV)
        (void)compact(idx); /* on -ENOMEM the store just grows instead */
    r = store_reserve(idx, idx->used + 1);
    if (r < 0)
        return r;
    if (idx->nentries + 1 > idx->grow_at) {
        r = grow(idx, idx->nentries + 1);
        if (r < 0)
            return r;
        s = probe(idx, m, hash, nsv, &found);
    }
    /* Shift the rest of the cluster up by one to keep it sorted. */
    struct hslot *hs = idx->hs;
    size_t e = s;
    while (hs[e].pos1 != 0)
        e++;
    if (e + 1 >= idx->nslots) {
        r = grow(idx, idx->nentries + 1);
        if (r < 0)
            return r;
        return do_store(idx, m, hash, nsv, node, tier, parent);
    }
    memmove(&hs[s + 1], &hs[s], (e - s) * sizeof(*hs));
    size_t pos = idx->used++;
    idx->nx[pos] = 0;
    hs[s] = (struct hslot){.tag = tag_of(m), .pos1 = (uint32_t)(pos + 1)};
    idx->ks[pos] = (struct kslot){.hash = hash, .nsf = nsv};
    idx->ks[pos].hold[0] = H_MAKE(node, bit);
    idx->cs[pos] = (struct cslot){.parent = parent};
    /* The bits of the record before are clear (it was the last one, or
     * its successor was dropped): link them if this is its child. */
    rb_put(idx->rb, pos, false, false);
    if (parent != 0 && link_parent(idx, parent, nsv, pos)) {
        rb_put(idx->rb, pos - 1, true, false);
        pair_update(idx, pos - 1);
    }
    idx->nentries++;
    idx->count[node][tier]++;
    idx->count[node][0]++;
    return 1;
}

static int
do_remove(struct brain_prefix_index *idx, uint64_t m, uint64_t hash,
          uint16_t nsv, uint16_t node, uint8_t tier)
{
    bool found, gone;
    size_t s;
    int r;

    if (idx->ndead && is_dead(idx, node))
        return -ENOENT;
    s = probe(idx, m, hash, nsv, &found);
    if (!found)
        return -ENOENT;
    size_t pos = idx->hs[s].pos1 - 1;
    struct kslot *k = &idx->ks[pos];
    if (idx->ndead)
        (void)purge_dead(idx, k);
    r = del_holder(idx, k, node, BRAIN_PREFIX_TIER_BIT(tier), &gone);
    if (r < 0)
        return r;
    idx->count[node][tier]--;
    if (gone)
        idx->count[node][0]--;
    if (r == 0)
        drop_rec(idx, s, pos);
    else
        note_holders(idx, pos);
    return 0;
}

static int
do_access(struct brain_prefix_index *idx, uint64_t m, uint64_t hash,
          uint16_t nsv, uint32_t q)
{
    bool found;
    size_t s = probe(idx, m, hash, nsv, &found);

    if (!found)
        return -ENOENT;
    struct cslot *c = &idx->cs[idx->hs[s].pos1 - 1];
    int32_t dq = (int32_t)(q - c->hot_q);
    if (dq >= 0) {
        c->hot = decayed(idx, c->hot, (uint32_t)dq) + 1.0f;
        c->hot_q = q;
    } else {
        /* An older event: add it already decayed to the record's time. */
        c->hot += decayed(idx, 1.0f, (uint32_t)-dq);
    }
    return 0;
}
int
brain_prefix_index_store(struct brain_prefix_index *idx, uint16_t ns,
                         uint16_t node, uint8_t tier, uint64_t hash,
                         uint64_t parent)
{
    if (!idx || !valid_ns(ns) || node >= BRAIN_PREFIX_MAX_NODES ||
        !valid_tier(tier))
        return -EINVAL;
    return do_store(idx, key_of(idx, ns, hash), hash, (uint16_t)(ns + 1), node,
                    tier, parent);
}

int
brain_prefix_index_remove(struct brain_prefix_index *idx, uint16_t ns,
                          uint16_t node, uint8_t tier, uint64_t hash)
{
    if (!idx || !valid_ns(ns) || node >= BRAIN_PREFIX_MAX_NODES ||
        !valid_tier(tier))
        return -EINVAL;
    return do_remove(idx, key_of(idx, ns, hash), hash, (uint16_t)(ns + 1),
                     node, tier);
}

int
brain_prefix_index_access(struct brain_prefix_index *idx, uint16_t ns,
                          uint16_t node, uint64_t hash, uint64_t now_us)
{
    if (!idx || !valid_ns(ns) || node >= BRAIN_PREFIX_MAX_NODES)
        return -EINVAL;
    return do_access(idx, key_of(idx, ns, hash), hash, (uint16_t)(ns + 1),
                     quantum_of(idx, now_us));
}

static bool
valid_event(const struct brain_prefix_event *e)
{
    if (!valid_ns(e->ns) || e->node >= BRAIN_PREFIX_MAX_NODES)
        return false;
    switch (e->type) {
    case BRAIN_PREFIX_EV_STORED:
    case BRAIN_PREFIX_EV_REMOVED:
        return valid_tier(e->tier);
    case BRAIN_PREFIX_EV_ACCESSED:
        return true;
    default:
        return false;
    }
}

int
brain_prefix_index_apply(struct brain_prefix_index *idx,
                         const struct brain_prefix_event *ev, size_t n,
                         uint64_t now_us)
{
    uint64_t mk[EV_AHEAD];
    int changed = 0;

    if (!idx || (!ev && n > 0) || n > INT_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!valid_event(&ev[i]))
            return -EINVAL;
    uint32_t q = quantum_of(idx, now_us);
    /*
     * A three-stage pipeline: event i's key is computed and its hash
     * slots prefetched; event i - EV_AHEAD / 2, whose slots have arrived
     * by then, is probed and its store records prefetched; event
     * i - EV_AHEAD is applied (probing again, from cache: an event in
     * between may have moved things).  A report is usually all one
     * namespace, so its salt is cached.
     */
    uint16_t salt_ns = n ? ev[0].ns : 0;
    uint64_t salt = ns_salt(idx, salt_ns);
    for (size_t i = 0; i < n + EV_AHEAD; i++) {
        /* Event i's key goes where event i - EV_AHEAD's was. */
        uint64_t m = mk[i % EV_AHEAD];
        if (i < n) {
            if (ev[i].ns != salt_ns) {
                salt_ns = ev[i].ns;
                salt = ns_salt(idx, salt_ns);
            }
            uint64_t mi = fmix64(ev[i].hash ^ salt);
            prefetch_slots(idx, mi);
            mk[i % EV_AHEAD] = mi;
        }
        size_t mid = i - EV_AHEAD / 2;
        if (i >= EV_AHEAD / 2 && mid < n) {
            bool found;
            size_t s = probe(idx, mk[mid % EV_AHEAD], ev[mid].hash,
                             (uint16_t)(ev[mid].ns + 1), &found);
            if (found) {
                size_t pos = idx->hs[s].pos1 - 1;
                __builtin_prefetch(&idx->ks[pos], 1, 3);
                __builtin_prefetch(&idx->cs[pos], 1, 3);
            }
        }
        if (i < EV_AHEAD)
            continue;
        const struct brain_prefix_event *e = &ev[i - EV_AHEAD];
        uint16_t nsv = (uint16_t)(e->ns + 1);
        int r;

        switch (e->type) {
        case BRAIN_PREFIX_EV_STORED:
            r = do_store(idx, m, e->hash, nsv, e->node, e->tier, e->parent);
            break;
        case BRAIN_PREFIX_EV_REMOVED:
            r = do_remove(idx, m, e->hash, nsv, e->node, e->tier);
            r = r == 0 ? 1 : r;
            break;
        default:
            r = do_access(idx, m, e->hash, nsv, q);
            r = r == 0 ? 1 : r;
            break;
        }
        if (r == -ENOENT)
            continue;
        if (r < 0)
            return r;
        changed += r;
    }
    return changed;
}

/* --- find_matches ------------------------------------------------------ */

/*
 * A chain walk's place: block i - 1 was found at store position pos, so
 * block i is most likely the record after it (the blocks of a chain that
 * were stored together are adjacent).  Only where that fails does the
 * walk go through the hash table: one probe per run of the chain, not
 * one per block.
 */
struct cursor {
    const uint64_t *chain; /* the query */
    size_t n;              /* its length */
    uint64_t salt;         /* its namespace's salt */
    size_t pos;            /* store position of the last block found */
    uint64_t steps;        /* blocks looked up after block 0 */
    uint64_t jumps;        /* of which by hash probe */
    uint64_t hints;        /* of which by continuation hint */
    uint64_t skipped;      /* of which passed over inside a run */
    bool packed;           /* results go to keys.packed, not mt */
    uint16_t nsv;          /* its namespace + 1 */
};

/* Prefetches the key records of a run from position p on. */
static inline void
prefetch_run(const struct brain_prefix_index *idx, size_t p, size_t lines)
{
    uintptr_t a = (uintptr_t)&idx->ks[p];

    for (size_t l = 0; l < lines; l++)
        __builtin_prefetch((const void *)(a + l * 64), 0, 3);
}

/*
 * Distance from position p to the first position q >= p whose bit in
 * `which` (offsetof link or skip) is clear, or `lim` if that is nearer.
 * The last record's bits are clear, so the scan ends inside the store.
 */
static inline size_t
run_len(const struct brain_prefix_index *idx, size_t p, size_t which,
        size_t lim)
{
    const char *base = (const char *)idx->rb + which;
    size_t w = p / 64, d;
    uint64_t z;

    memcpy(&z, base + w * sizeof(struct runbits), sizeof(z));
    z = ~z >> (p % 64);
    if (z)
        return (size_t)__builtin_ctzll(z) < lim ? (size_t)__builtin_ctzll(z)
                                                : lim;
    for (d = 64 - p % 64; d < lim; d += 64) {
        memcpy(&z, base + ++w * sizeof(struct runbits), sizeof(z));
        if (~z)
            return d + (size_t)__builtin_ctzll(~z) < lim
                       ? d + (size_t)__builtin_ctzll(~z)
                       : lim;
    }
    return lim;
}

/*
 * Landing on a run at position p (block i): fetch what the walk will read
 * there at once, not one line after another: the stretch of records held
 * alike (up to RUN_AHEAD lines; the run bits say how long it is), the
 * record after it, and where the run ends as a run: that record and its
 * continuation hint, the likely way to the next run, so that following
 * a hint costs one memory latency, not two.
 */
static inline void
prefetch_landing(const struct brain_prefix_index *idx, const struct cursor *c,
                 size_t p, size_t i)
{
    size_t lim = c->n - 1 - i;

    /* The first lines at once: reading the bits may miss the cache. */
    prefetch_run(idx, p, RUN_LINES + 1);
    __builtin_prefetch(&idx->rb[p / 64], 0, 3);
    size_t q = run_len(idx, p, offsetof(struct runbits, skip), lim);
    size_t e = run_len(idx, p, offsetof(struct runbits, link), lim);
    if (q / 4 + 1 > RUN_LINES + 1)
        prefetch_run(idx, p + 4 * (RUN_LINES + 1),
                     (q < 4 * RUN_AHEAD ? q / 4 + 1 : RUN_AHEAD) -
                         (RUN_LINES + 1));
    __builtin_prefetch(&idx->ks[p + q], 0, 3);
    /* Where the holders change, the next record is the next block. */
    if (q < e)
        __builtin_prefetch(&idx->ks[p + q + 1], 0, 3);
    if (e != q)
        __builtin_prefetch(&idx->ks[p + e], 0, 3);
    if (e < lim)
        __builtin_prefetch(&idx->nx[p + e], 0, 3);
}

/*
 * From block i - 1 at c->pos, passes the following blocks of its run that
 * are held exactly like it: the skip bits give that stretch without
 * reading the records, so the walk knows how far to prefetch (it did on
 * landing) and compares only keys along it, with no holder work.  Every
 * key is compared: a caller's chain need not be prefix-chained (a block
 * replaced in the middle, the later ones kept), and the answer must not
 * depend on that.  Returns how many blocks were passed.
 */
static inline size_t
run_skip(struct brain_prefix_index *idx, struct cursor *c, size_t i)
{
    size_t p = c->pos;
    size_t d = run_len(idx, p, offsetof(struct runbits, skip), c->n - i);
    const struct kslot *k = &idx->ks[p + 1];
    const uint64_t *ch = c->chain + i;
    size_t j;

    /*
     * The records share the namespace: the skip bits compare it.  A
     * stretch of up to RUN_AHEAD lines was prefetched whole on landing,
     * so only longer ones stream ahead, and the common loop carries no
     * branch for it (it mispredicted at every line).
     */
    if (d <= 4 * RUN_AHEAD) {
        for (j = 0; j < d; j++)
            if (k[j].hash != ch[j])
                break;
    } else {
        for (j = 0; j < d; j++) {
            if (((p + 1 + j) & 3) == 0)
                __builtin_prefetch(&k[j + 4 * RUN_AHEAD], 0, 3);
            if (k[j].hash != ch[j])
                break;
        }
    }
    c->pos = p + j;
    c->steps += j;
    c->skipped += j;
    return j;
}

/* Block i's key record, or NULL when the index does not hold it. */
static inline struct kslot *
cur_find(struct brain_prefix_index *idx, struct cursor *c, size_t i)
{
    uint64_t hash = c->chain[i];
    size_t p = c->pos + 1;
    bool found;

    c->steps++;
    if (p < idx->used) {
        struct kslot *k = &idx->ks[p];
        if (k->hash == hash && (k->nsf & NS_MASK) == c->nsv) {
            /* Keep the run streaming RUN_LINES lines ahead. */
            if (p % 4 == 0)
                prefetch_run(idx, p + 4 * RUN_LINES, 1);
            c->pos = p;
            return k;
        }
    }
    /* Off the run: the block that followed this one when it was new? */
    uint32_t q = idx->nx[c->pos];
    if (q != 0 && q - 1 < idx->used) {
        struct kslot *k = &idx->ks[q - 1];
        if (k->hash == hash && (k->nsf & NS_MASK) == c->nsv) {
            c->hints++;
            c->pos = q - 1;
            prefetch_landing(idx, c, c->pos, i);
            return k;
        }
    }
    c->jumps++;
    /* Where one block was scattered, the next may be too. */
    if (i + 1 < c->n)
        prefetch_slots(idx, fmix64(c->chain[i + 1] ^ c->salt));
    size_t s = probe(idx, fmix64(hash ^ c->salt), hash, c->nsv, &found);
    if (!found)
        return NULL;
    c->pos = idx->hs[s].pos1 - 1;
    prefetch_landing(idx, c, c->pos, i);
    return &idx->ks[c->pos];
}

/*
 * Records that the results in `bits` (word w) stop matching tier t at i:
 * straight into their sort keys when the chain is short enough to pack
 * (see sort_packed()), else into mt[t].
 */
static inline void
end_bits(struct brain_prefix_index *idx, const struct cursor *c, unsigned t,
         size_t w, uint64_t bits, uint32_t i)
{
    if (c->packed) {
        uint64_t v = (uint64_t)i << (4 + 12 * t);
        while (bits) {
            idx->keys.packed[w * 64 + (unsigned)__builtin_ctzll(bits)] |= v;
            bits &= bits - 1;
        }
        return;
    }
    while (bits) {
        idx->mt[t][w * 64 + (unsigned)__builtin_ctzll(bits)] = i;
        bits &= bits - 1;
    }
}

/* Logs that the results in `bits` stop matching tier t at block `at`. */
static inline void
end_log(struct brain_prefix_index *idx, unsigned t, uint64_t bits, uint32_t at)
{
    if (bits) {
        idx->ends[idx->nends[t]][t].mask = bits;
        idx->ends[idx->nends[t]++][t].at = at;
    }
}

/*
 * Adds result `bit` to the per-tier bitsets l[] of a block it holds with
 * tier mask m: l[t - 1] when in tier t or faster (t = 1..3), l[3] always.
 */
static inline void
held_bit(uint64_t l[4], uint64_t bit, unsigned m)
{
    l[0] |= bit & -(uint64_t)(m & 1);
    l[1] |= bit & -(uint64_t)((m & 3) != 0);
    l[2] |= bit & -(uint64_t)((m & 7) != 0);
    l[3] |= bit;
}

/*
 * Adds the results holding block h[0..nh-1] to the per-tier bitsets l[],
 * when the results are block 0's holders h0[0..n0-1] themselves (result r
 * is h0[r]; no dead nodes).  Both arrays are sorted by node, so each
 * holder's result is found by a binary search of what is left of h0
 * (a few holders) or by a merge (many), with no node map to fill.
 */
static inline void
held_by(const uint16_t *h0, uint32_t n0, const uint16_t *h, uint32_t nh,
        uint64_t l[4])
{
    bool few = nh * 8 < n0;
    uint32_t r = 0;

    for (uint32_t j = 0; j < nh; j++) {
        uint16_t node = H_NODE(h[j]);
        if (few)
            r += holder_search(h0 + r, n0 - r, node);
        else
            while (r < n0 && H_NODE(h0[r]) < node)
                r++;
        if (r == n0)
            return;
        if (H_NODE(h0[r]) != node)
            continue;
        held_bit(l, 1ull << r++, H_MASK(h[j]));
    }
}

/* held_alive() is used while at most this many results still match. */
#define FEW_ALIVE 8

/*
 * True when `set` has at most FEW_ALIVE bits (no popcount instruction is
 * assumed: the build targets baseline x86-64, where it is a call).
 */
static inline bool
few_bits(uint64_t set)
{
    for (unsigned b = 0; b < FEW_ALIVE && set; b++)
        set &= set - 1;
    return set == 0;
}

/*
 * The same as held_by() when few results still match (`alive`, result r
 * being h0[r]): each of them looks for its node among the holders h
 * instead of each holder searching h0.  Results outside `alive` cannot
 * change the answer (every a<t> is a subset of a4), so their bits are
 * left clear.  Past block 1 or 2 of a chain whose block 0 many nodes
 * hold, one to three results are left and a block has one to three
 * holders: a few compares instead of a binary search of h0 per holder.
 */
static inline void
held_alive(const uint16_t *h0, uint64_t alive, const uint16_t *h, uint32_t nh,
           uint64_t l[4])
{
    for (; alive; alive &= alive - 1) {
        unsigned r = (unsigned)__builtin_ctzll(alive);
        uint16_t node = H_NODE(h0[r]);
        uint32_t j = nh <= 8 ? 0 : holder_search(h, nh, node);
        while (j < nh && H_NODE(h[j]) < node)
            j++;
        if (j == nh || H_NODE(h[j]) != node)
            continue;
        held_bit(l, 1ull << r, H_MASK(h[j]));
    }
}

/*
 * The chain walk of find_matches() for up to 64 results (the common
 * case), with the per-tier bitsets in registers.  a<t> holds the results
 * whose every block so far is in tier t or faster; l<t> the results
 * holding the current block in tier t or faster.  A block costs O(its
 * holders) plus a few word operations, however many nodes still match,
 * and the walk stops when none does.  a0[t - 1] holds the results that
 * hold block 0 in tier t or faster.  Nothing is written per result:
 * each tier's log (idx->ends) gets one entry per block where some
 * results stop matching it, in block order, and emit_all() reads the answer
 * from the logs.  With h0 (no dead nodes) the results are block 0's
 * holders h0[0..nres-1] and holders are matched by held_by(); without,
 * through the node map (rmap, this call's tag).
 */
static void
walk_one_word(struct brain_prefix_index *idx, struct cursor *c,
              const struct kslot *k0, size_t n, size_t nres, uint32_t tag,
              const uint64_t a0[3], const uint16_t *h0)
{
    uint64_t a1 = a0[0], a2 = a0[1], a3 = a0[2];
    uint64_t a4 = nres == 64 ? ~0ull : (1ull << nres) - 1;
    const struct kslot *prev = k0;
    size_t i;

    /* Results not in a tier at block 0 match 0 blocks there. */
    memset(idx->nends, 0, sizeof(idx->nends));
    end_log(idx, 1, a4 & ~a1, 0);
    end_log(idx, 2, a4 & ~a2, 0);
    end_log(idx, 3, a4 & ~a3, 0);
    for (i = 1; i < n; i++) {
        i += run_skip(idx, c, i);
        if (i >= n)
            break;
        struct kslot *k = cur_find(idx, c, i);
        if (!k)
            break;
        /* The same holders as the block before: nothing can change. */
        if (same_holders(idx, k, prev))
            continue;
        prev = k;
        uint64_t l[4] = {0, 0, 0, 0};
        uint32_t nh;
        const uint16_t *h = holders_of(idx, k, &nh);
        if (h0 && few_bits(a4))
            held_alive(h0, a4, h, nh, l);
        else if (h0)
            held_by(h0, (uint32_t)nres, h, nh, l);
        else
            for (uint32_t j = 0; j < nh; j++) {
                uint32_t e = idx->rmap[H_NODE(h[j])];
                if ((e & ~RMAP_INDEX) != tag)
                    continue;
                held_bit(l, 1ull << (e & RMAP_INDEX), H_MASK(h[j]));
            }
        uint64_t l1 = l[0], l2 = l[1], l3 = l[2], l4 = l[3];
        uint64_t d1 = a1 & ~l1, d2 = a2 & ~l2, d3 = a3 & ~l3, d4 = a4 & ~l4;
        if (d1 | d2 | d3 | d4) {
            end_log(idx, 1, d1, (uint32_t)i);
            end_log(idx, 2, d2, (uint32_t)i);
            end_log(idx, 3, d3, (uint32_t)i);
            end_log(idx, 4, d4, (uint32_t)i);
            a1 &= l1;
            a2 &= l2;
            a3 &= l3;
            a4 &= l4;
            if (!a4)
                break;
        }
    }
    /* Whoever is still matching matched up to here. */
    end_log(idx, 1, a1, (uint32_t)i);
    end_log(idx, 2, a2, (uint32_t)i);
    end_log(idx, 3, a3, (uint32_t)i);
    end_log(idx, 4, a4, (uint32_t)i);
}

/*
 * Writes the results in `set` (result r being nodes[r]), which share
 * matched[1..4] = m1..m4, into out[j ..] in result order, up to out[cap -
 * 1]; returns the next free index.  A result is three 8-byte words built
 * in registers (matched[0..1], matched[2..3], matched[4] with the node
 * and the padding).
 */
static inline size_t
emit_group(const uint16_t *nodes, uint64_t set, uint32_t m1, uint32_t m2,
           uint32_t m3, uint32_t m4, struct brain_prefix_match *out, size_t j,
           size_t cap)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const uint64_t w0 = (uint64_t)m1 << 32, w1 = m2 | (uint64_t)m3 << 32;
    char *o = (char *)out;

    for (; set && j < cap; j++, set &= set - 1) {
        uint64_t w2 = m4 | (uint64_t)H_NODE(nodes[__builtin_ctzll(set)]) << 32;
        memcpy(o + j * sizeof(*out), &w0, 8);
        memcpy(o + j * sizeof(*out) + 8, &w1, 8);
        memcpy(o + j * sizeof(*out) + 16, &w2, 8);
    }
#else
    for (; set && j < cap; j++, set &= set - 1)
        out[j] = (struct brain_prefix_match){
            .matched = {0, m1, m2, m3, m4},
            .node = H_NODE(nodes[__builtin_ctzll(set)]),
        };
#endif
    return j;
}

/*
 * Writes the answer of a one-word walk, best first, into out[0 ..
 * cap - 1].  Each result is in exactly one entry of each tier's log, and
 * a log is in block order: so tier 4's entries, newest first, split the
 * results into groups by matched[4] descending, each group is split by
 * tier 3's entries the same way, and so on, and the groups of tier 1 are
 * written in result (= node) order.  The groups are few (a log has an
 * entry only where some results stopped: ~3 for a call with 62
 * results), so the cost is three stores per result plus a few word
 * operations per group; four nested loops, not a recursion, so a group
 * costs no call.
 */
static void
emit_all(const struct brain_prefix_index *idx, const uint16_t *nodes,
         struct brain_prefix_match *out, size_t cap)
{
    size_t j = 0;

    for (unsigned e4 = idx->nends[4]; e4-- > 0;) {
        uint64_t g4 = idx->ends[e4][4].mask;
        uint32_t m4 = idx->ends[e4][4].at;
        for (unsigned e3 = idx->nends[3]; g4 && e3-- > 0;) {
            uint64_t g3 = g4 & idx->ends[e3][3].mask;
            if (!g3)
                continue;
            g4 &= ~g3;
            uint32_t m3 = idx->ends[e3][3].at;
            for (unsigned e2 = idx->nends[2]; g3 && e2-- > 0;) {
                uint64_t g2 = g3 & idx->ends[e2][2].mask;
                if (!g2)
                    continue;
                g3 &= ~g2;
                uint32_t m2 = idx->ends[e2][2].at;
                for (unsigned e1 = idx->nends[1]; g2 && e1-- > 0;) {
                    uint64_t g1 = g2 & idx->ends[e1][1].mask;
                    if (!g1)
                        continue;
                    g2 &= ~g1;
                    j = emit_group(nodes, g1, idx->ends[e1][1].at, m2, m3, m4,
                                   out, j, cap);
                    if (j == cap)
                        return;
                }
            }
        }
    }
}

/* The same for more than 64 results, with the bitsets in idx. */
static void
walk_words(struct brain_prefix_index *idx, struct cursor *c,
           const struct kslot *k0, size_t n, size_t nres, uint32_t tag)
{
    size_t nw = (nres + 63) / 64, i;
    const struct kslot *prev = k0;

    memset(idx->alive, 0, sizeof(idx->alive));
    for (size_t r = 0; r < nres; r++) {
        /* Tiers faster than the fastest at block 0 end at 0. */
        if (c->packed)
            idx->keys.packed[r] = 0xffffu - r;
        else
            for (unsigned t = 1; t < idx->cur[r]; t++)
                idx->mt[t][r] = 0;
        for (unsigned t = idx->cur[r]; t <= BRAIN_PREFIX_TIER_MAX; t++)
            idx->alive[t][r / 64] |= 1ull << (r % 64);
    }
    for (i = 1; i < n; i++) {
        i += run_skip(idx, c, i);
        if (i >= n)
            break;
        struct kslot *k = cur_find(idx, c, i);
        if (!k)
            break;
        if (same_holders(idx, k, prev))
            continue;
        prev = k;
        memset(idx->held, 0, sizeof(idx->held));
        uint32_t nh;
        const uint16_t *h = holders_of(idx, k, &nh);
        for (uint32_t j = 0; j < nh; j++) {
            uint32_t e = idx->rmap[H_NODE(h[j])];
            if ((e & ~RMAP_INDEX) != tag)
                continue;
            uint32_t r = e & RMAP_INDEX;
            idx->held[fastest_tier(H_MASK(h[j]))][r / 64] |= 1ull << (r % 64);
        }
        uint64_t any = 0;
        for (size_t w = 0; w < nw; w++) {
            uint64_t hm = 0;
            for (unsigned t = 1; t <= BRAIN_PREFIX_TIER_MAX; t++) {
                hm |= idx->held[t][w];
                end_bits(idx, c, t, w, idx->alive[t][w] & ~hm, (uint32_t)i);
                idx->alive[t][w] &= hm;
            }
            any |= idx->alive[BRAIN_PREFIX_TIER_MAX][w];
        }
        if (!any)
            break;
    }
    for (unsigned t = 1; t <= BRAIN_PREFIX_TIER_MAX; t++)
        for (size_t w = 0; w < nw; w++)
            end_bits(idx, c, t, w, idx->alive[t][w], (uint32_t)i);
}

static int
key_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

static int
wide_desc(const void *a, const void *b)
{
    unsigned __int128 x = *(const unsigned __int128 *)a;
    unsigned __int128 y = *(const unsigned __int128 *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* For chains too long to pack: keys hold result indices. */
static int
result_desc(const void *a, const void *b, void *arg)
{
    const struct brain_prefix_index *idx = arg;
    uint32_t x = (uint32_t) * (const unsigned __int128 *)a;
    uint32_t y = (uint32_t) * (const unsigned __int128 *)b;

    for (int t = BRAIN_PREFIX_TIER_MAX; t >= 1; t--)
        if (idx->mt[t][x] != idx->mt[t][y])
            return idx->mt[t][x] > idx->mt[t][y] ? -1 : 1;
    return (int)idx->rnode[x] - (int)idx->rnode[y];
}

/* Classes (distinct matched[] values) sort_packed() orders by counting. */
#define SORT_CLASSES 32

/*
 * Orders the results best first, for chains of up to PACK_MAX blocks,
 * into keys.packed[BRAIN_PREFIX_MAX_NODES ..], which it returns.  The
 * walk built each key as matched[4], [3], [2], [1] (12 bits each) above
 * the complement of the result index; results are numbered in node
 * order, so ties fall to the lower node.  Results come in few classes
 * (distinct matched[] values: most nodes hold the first block or two
 * and tie, in one tier or another), interleaved in node order, where an
 * insertion sort would go quadratic: so the classes are collected and
 * sorted, and the results counted into place by class, stably.  More
 * than SORT_CLASSES classes fall back to qsort().
 */
static const uint64_t *
sort_packed(struct brain_prefix_index *idx, size_t nres)
{
    const uint64_t *k = idx->keys.packed;
    uint64_t *out = idx->keys.packed + BRAIN_PREFIX_MAX_NODES;
    uint64_t cls[SORT_CLASSES];
    uint32_t at[SORT_CLASSES];
    uint8_t of[BRAIN_PREFIX_MAX_NODES];
    size_t ncls = 0, last = 0;

    for (size_t r = 0; r < nres; r++) {
        uint64_t v = k[r] >> 16;
        if (ncls == 0 || cls[last] != v) {
            for (last = 0; last < ncls && cls[last] != v; last++)
                ;
            if (last == ncls) {
                if (ncls == SORT_CLASSES) {
                    memcpy(out, k, nres * sizeof(*out));
                    qsort(out, nres, sizeof(*out), key_desc);
                    return out;
                }
                cls[ncls] = v;
                at[ncls++] = 0;
            }
        }
        at[last]++;
        of[r] = (uint8_t)last;
    }
    /* Classes best first, carrying their counts; then counts to starts. */
    uint8_t order[SORT_CLASSES], rank[SORT_CLASSES];
    for (size_t a = 0; a < ncls; a++) {
        size_t b = a;
        while (b > 0 && cls[order[b - 1]] < cls[a]) {
            order[b] = order[b - 1];
            b--;
        }
        order[b] = (uint8_t)a;
    }
    uint32_t start = 0, pos[SORT_CLASSES];
    for (size_t b = 0; b < ncls; b++) {
        rank[order[b]] = (uint8_t)b;
        pos[b] = start;
        start += at[order[b]];
    }
    for (size_t r = 0; r < nres; r++)
        out[pos[rank[of[r]]]++] = k[r];
    return out;
}

/* The same for longer chains, into keys.wide as result indices. */
static void
sort_wide(struct brain_prefix_index *idx, size_t nres, size_t n)
{
    unsigned __int128 *k = idx->keys.wide;

    if (n > 0xffff) {
        for (size_t r = 0; r < nres; r++)
            k[r] = r;
        qsort_r(k, nres, sizeof(*k), result_desc, idx);
    } else {
        for (size_t r = 0; r < nres; r++) {
            uint64_t m = (uint64_t)idx->mt[4][r] << 48 |
                         (uint64_t)idx->mt[3][r] << 32 |
                         (uint64_t)idx->mt[2][r] << 16 | idx->mt[1][r];
            k[r] = (unsigned __int128)m << 16 | (0xffffu - r);
        }
        qsort(k, nres, sizeof(*k), wide_desc);
        for (size_t r = 0; r < nres; r++)
            k[r] = 0xffffu - (uint16_t)k[r];
    }
}

int
brain_prefix_index_find_matches(struct brain_prefix_index *idx, uint16_t ns,
                                const uint64_t *chain, size_t n,
                                struct brain_prefix_match *out, size_t out_cap)
{
    if (!idx || !valid_ns(ns) || !chain || n == 0 || n > UINT32_MAX ||
        (!out && out_cap > 0))
        return -EINVAL;

    uint16_t nsv = (uint16_t)(ns + 1);
    uint64_t salt = ns_salt(idx, ns);
    size_t nres = 0;
    uint32_t nh;
    bool found;

    /*
     * Block 0 is often a shared prefix (a system prompt) with many
     * children, where no run or hint leads on: have the next few blocks'
     * hash slots on the way while block 0 is looked up.
     */
    for (size_t i = 1; i < n && i <= START_SLOTS; i++)
        prefetch_slots(idx, fmix64(chain[i] ^ salt));
    size_t s = probe(idx, fmix64(chain[0] ^ salt), chain[0], nsv, &found);
    if (!found)
        return 0;
    struct cursor c = {
        .chain = chain,
        .n = n,
        .salt = salt,
        .nsv = nsv,
        .packed = n <= PACK_MAX,
    };
    c.pos = idx->hs[s].pos1 - 1;
    if (n > 1)
        prefetch_landing(idx, &c, c.pos, 0);
    const struct kslot *k = &idx->ks[c.pos];

    /* Every holder of block 0 is a result; number them in node order. */
    uint32_t tag = (idx->call_tag += RMAP_INDEX + 1);
    if (tag == 0) {
        /* Tags wrapped (every 2^20 calls): forget every old one. */
        memset(idx->rmap, 0, sizeof(idx->rmap));
        tag = idx->call_tag = RMAP_INDEX + 1;
    }
    const uint16_t *h = holders_of(idx, (struct kslot *)k, &nh);
    /* a[t - 1]: results holding block 0 in tier t or faster (<= 64). */
    uint64_t a[3] = {0, 0, 0};
    /*
     * The common case: no dead nodes and at most 64 holders.  Then the
     * results are block 0's holders in their order (by node): nothing is
     * copied or mapped, the walk matches later holders against h itself.
     */
    const uint16_t *h0 = !idx->ndead && nh <= 64 ? h : NULL;
    if (h0) {
        if ((k->nsf & NSF_OVERFLOW) && nh >= TIER_CACHE_MIN)
            memcpy(a, &idx->pool_tiers[tier_word(slot_pool_off(k))],
                   sizeof(a));
        else
            tier_bits(h, nh, a);
        nres = nh;
    }
    for (uint32_t j = 0; !h0 && j < nh; j++) {
        uint16_t node = H_NODE(h[j]);
        if (idx->ndead && is_dead(idx, node))
            continue;
        unsigned mk = H_MASK(h[j]);
        idx->rnode[nres] = node;
        idx->rmap[node] = tag | (uint32_t)nres;
        if (nh <= 64) {
            uint64_t bit = 1ull << nres;
            a[0] |= bit & -(uint64_t)(mk & 1);
            a[1] |= bit & -(uint64_t)((mk & 3) != 0);
            a[2] |= bit & -(uint64_t)((mk & 7) != 0);
        } else {
            idx->cur[nres] = (uint8_t)fastest_tier(mk);
        }
        nres++;
    }
    if (nres == 0)
        return 0;
    if (nres <= 64) {
        /* Dead holders left few enough: the bitsets from cur[]. */
        for (size_t r = 0; nh > 64 && r < nres; r++)
            for (unsigned t = idx->cur[r]; t < BRAIN_PREFIX_TIER_MAX; t++)
                a[t - 1] |= 1ull << r;
        walk_one_word(idx, &c, k, n, nres, tag, a, h0);
    } else {
        walk_words(idx, &c, k, n, nres, tag);
    }
    idx->walk_blocks += c.steps;
    idx->walk_jumps += c.jumps;
    idx->walk_hints += c.hints;
    idx->walk_skipped += c.skipped;
    if (out_cap == 0)
        return (int)nres;
    if (nres == 1) {
        /* One result is in exactly one entry of each tier's log. */
        out[0] = (struct brain_prefix_match){
            .matched = {0, idx->ends[0][1].at, idx->ends[0][2].at,
                        idx->ends[0][3].at, idx->ends[0][4].at},
            .node = h0 ? H_NODE(h0[0]) : idx->rnode[0],
        };
        return 1;
    }
    if (nres <= 64) {
        emit_all(idx, h0 ? h0 : idx->rnode, out, out_cap);
        return (int)nres;
    }
    size_t nout = nres < out_cap ? nres : out_cap;
    if (c.packed) {
        /* The answer is in the keys themselves. */
        const uint64_t *pk = sort_packed(idx, nres);
        for (size_t j = 0; j < nout; j++) {
            out[j].matched[0] = 0;
            out[j].matched[1] = (uint32_t)(pk[j] >> 16) & PACK_MAX;
            out[j].matched[2] = (uint32_t)(pk[j] >> 28) & PACK_MAX;
            out[j].matched[3] = (uint32_t)(pk[j] >> 40) & PACK_MAX;
            out[j].matched[4] = (uint32_t)(pk[j] >> 52);
            out[j].node = idx->rnode[0xffffu - (pk[j] & 0xffffu)];
        }
        return (int)nres;
    }
    sort_wide(idx, nres, n);
    for (size_t j = 0; j < nout; j++) {
        size_t r = (size_t)idx->keys.wide[j];
        out[j].matched[0] = 0;
        for (unsigned t = 1; t <= BRAIN_PREFIX_TIER_MAX; t++)
            out[j].matched[t] = idx->mt[t][r];
        out[j].node = idx->rnode[r];
    }
    return (int)nres;
}

/* --- other queries ----------------------------------------------------- */

static int
holder_cmp(const void *a, const void *b)
{
    const struct brain_prefix_holder *x = a, *y = b;
    return (int)x->node - (int)y->node;
}

/* Live holders of k, counted (and copied to out when out != NULL). */
static uint32_t
live_holders(struct brain_prefix_index *idx, struct kslot *k,
             struct brain_prefix_holder *out, size_t cap)
{
    uint32_t n, live = 0;
    const uint16_t *h = holders_of(idx, k, &n);

    for (uint32_t j = 0; j < n; j++) {
        if (idx->ndead && is_dead(idx, H_NODE(h[j])))
            continue;
        if (out && live < cap) {
            out[live].node = H_NODE(h[j]);
            out[live].tiers = (uint8_t)H_MASK(h[j]);
        }
        live++;
    }
    return live;
}

static void
fill_block(const struct brain_prefix_index *idx, size_t pos, uint16_t ns,
           uint32_t q, uint32_t live, struct brain_prefix_block *b)
{
    b->hash = idx->ks[pos].hash;
    b->parent = idx->cs[pos].parent;
    b->hotness = hot_at(idx, &idx->cs[pos], q);
    b->nholders = live;
    b->ns = ns;
}

int
brain_prefix_index_lookup(struct brain_prefix_index *idx, uint16_t ns,
                          uint64_t hash, uint64_t now_us,
                          struct brain_prefix_block *info,
                          struct brain_prefix_holder *holders, size_t cap)
{
    bool found;

    if (!idx || !valid_ns(ns) || (!holders && cap > 0))
        return -EINVAL;
    uint64_t salt = ns_salt(idx, ns);
    size_t s =
        probe(idx, fmix64(hash ^ salt), hash, (uint16_t)(ns + 1), &found);
    if (!found)
        return -ENOENT;
    size_t pos = idx->hs[s].pos1 - 1;
    uint32_t live = live_holders(idx, &idx->ks[pos], holders, cap);
    if (live == 0)
        return -ENOENT;
    /* Already in node order; sorting keeps that promise explicit. */
    if (holders)
        qsort(holders, live < cap ? live : cap, sizeof(*holders), holder_cmp);
    if (info)
        fill_block(idx, pos, ns, quantum_of(idx, now_us), live, info);
    return live > INT_MAX ? INT_MAX : (int)live;
}

int
brain_prefix_index_node_blocks(const struct brain_prefix_index *idx,
                               uint16_t node, uint8_t tier, uint64_t *out)
{
    if (!idx || !out || node >= BRAIN_PREFIX_MAX_NODES ||
        tier > BRAIN_PREFIX_TIER_MAX)
        return -EINVAL;
    *out = idx->count[node][tier];
    return 0;
}

/* Orders by hotness, then hash, so top_k_hot() is deterministic. */
static inline bool
hotter(const struct brain_prefix_block *a, const struct brain_prefix_block *b)
{
    if (a->hotness != b->hotness)
        return a->hotness > b->hotness;
    return a->hash < b->hash;
}

/* Min-heap (coldest at the root) sift-down over h[0..n-1]. */
static void
heap_down(struct brain_prefix_block *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && hotter(&h[m], &h[l]))
            m = l;
        if (r < n && hotter(&h[m], &h[r]))
            m = r;
        if (m == i)
            return;
        struct brain_prefix_block t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static void
heap_up(struct brain_prefix_block *h, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hotter(&h[p], &h[i]))
            return;
        struct brain_prefix_block t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

int
brain_prefix_index_top_k_hot(struct brain_prefix_index *idx, uint16_t ns,
                             uint64_t now_us, struct brain_prefix_block *out,
                             size_t k)
{
    if (!idx || !valid_ns(ns) || (!out && k > 0) || k > INT_MAX)
        return -EINVAL;
    uint16_t nsv = (uint16_t)(ns + 1);
    uint32_t q = quantum_of(idx, now_us);
    size_t n = 0;

    if (k == 0)
        return 0;
    for (size_t i = 0; i < idx->used; i++) {
        if ((idx->ks[i].nsf & NS_MASK) != nsv)
            continue;
        float hot = hot_at(idx, &idx->cs[i], q);
        if (n == k && hot < out[0].hotness)
            continue;
        uint32_t live = live_holders(idx, &idx->ks[i], NULL, 0);
        if (live == 0)
            continue;
        struct brain_prefix_block b;
        fill_block(idx, i, ns, q, live, &b);
        if (n < k) {
            out[n] = b;
            heap_up(out, n++);
        } else if (hotter(&b, &out[0])) {
            out[0] = b;
            heap_down(out, n, 0);
        }
    }
    /* Heap sort in place: repeatedly move the coldest to the end. */
    for (size_t end = n; end > 1; end--) {
        struct brain_prefix_block t = out[0];
        out[0] = out[end - 1];
        out[end - 1] = t;
        heap_down(out, end - 1, 0);
    }
    return (int)n;
}

int
brain_prefix_index_for_each_hot(struct brain_prefix_index *idx, uint16_t ns,
                                uint64_t now_us, double min_hotness,
                                brain_prefix_hot_cb cb, void *arg)
{
    if (!idx || !valid_ns(ns) || !cb)
        return -EINVAL;
    uint16_t nsv = (uint16_t)(ns + 1);
    uint32_t q = quantum_of(idx, now_us);
    int calls = 0;

    for (size_t i = 0; i < idx->used; i++) {
        if ((idx->ks[i].nsf & NS_MASK) != nsv)
            continue;
        if (hot_at(idx, &idx->cs[i], q) < min_hotness)
            continue;
        uint32_t live = live_holders(idx, &idx->ks[i], NULL, 0);
        if (live == 0)
            continue;
        struct brain_prefix_block b;
        fill_block(idx, i, ns, q, live, &b);
        int r = cb(&b, arg);
        if (r != 0)
            return r;
        if (calls < INT_MAX)
            calls++;
    }
    return calls;
}

void
brain_prefix_index_stats(const struct brain_prefix_index *idx,
                         struct brain_prefix_index_stats *out)
{
    if (!idx || !out)
        return;
    memset(out, 0, sizeof(*out));
    out->blocks = idx->nentries;
    out->slots = idx->nslots;
    out->overflow_blocks = idx->overflow_blocks;
    out->memory_bytes =
        sizeof(*idx) + idx->nslots * sizeof(*idx->hs) +
        idx->kcap * sizeof(*idx->ks) + idx->ccap * sizeof(*idx->cs) +
        idx->xcap * sizeof(*idx->nx) + idx->bcap * sizeof(*idx->rb) +
        idx->pool_cap * sizeof(*idx->pool) +
        idx->pool_cap / TIER_CACHE_SPAN * sizeof(*idx->pool_tiers);
    out->rehashes = idx->rehashes;
    out->store_holes = idx->holes;
    out->compactions = idx->compactions;
    out->lookup_blocks = idx->walk_blocks;
    out->lookup_jumps = idx->walk_jumps;
    out->lookup_hints = idx->walk_hints;
    out->lookup_skipped = idx->walk_skipped;
    out->dead_nodes = idx->ndead;
}
