/*
 * Generic tier dispatch, kind names, cross-tier copy and checksum, and
 * the TLSF allocator shared by the DRAM, NVMe and HBM backends.
 */
#include "tier.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <xxhash.h>

/* --- Logging ------------------------------------------------------------
 */

void
agent_tier_log(const char *name, const char *fmt, ...)
{
    char line[512];
    int n;
    va_list ap;

    /* One fputs per line keeps lines from different threads whole. */
    n = snprintf(line, sizeof(line), "mcos-agent tier-%s: ", name);
    if (n < 0 || (size_t)n >= sizeof(line))
        return;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    strcat(line, "\n");
    fputs(line, stderr);
}

/* --- Kind names ---------------------------------------------------------
 */

static const char *const kind_names[] = {
    [AGENT_TIER_SRAM] = "sram",
    [AGENT_TIER_HBM] = "hbm",
    [AGENT_TIER_DRAM] = "dram",
    [AGENT_TIER_NVME] = "nvme",
};

const char *
agent_tier_kind_name(enum agent_tier_kind kind)
{
    if ((unsigned)kind < sizeof(kind_names) / sizeof(kind_names[0]) &&
        kind_names[kind])
        return kind_names[kind];
    return "unknown";
}

int
agent_tier_kind_parse(const char *name, enum agent_tier_kind *out)
{
    size_t i;

    if (!name || !out)
        return -EINVAL;
    for (i = 0; i < sizeof(kind_names) / sizeof(kind_names[0]); i++) {
        if (kind_names[i] && !strcasecmp(name, kind_names[i])) {
            *out = (enum agent_tier_kind)i;
            return 0;
        }
    }
    return -EINVAL;
}

/* --- Lifetime and dispatch ----------------------------------------------
 */

int
agent_tier_create_ops(const struct agent_tier_ops *ops,
                      enum agent_tier_kind kind,
                      const struct agent_tier_config *cfg,
                      struct agent_tier **out)
{
    struct agent_tier *t;
    int rc;

    if (!ops || !cfg || !out || ops->size < sizeof(struct agent_tier) ||
        !ops->init || !ops->fini || !ops->alloc || !ops->free || !ops->read ||
        !ops->write || !ops->map || !ops->stats)
        return -EINVAL;
    if (!strcmp(agent_tier_kind_name(kind), "unknown"))
        return -EINVAL;
    t = calloc(1, ops->size);
    if (!t)
        return -ENOMEM;
    t->ops = ops;
    t->kind = kind;
    rc = ops->init(t, cfg);
    if (rc < 0) {
        free(t);
        return rc;
    }
    *out = t;
    return 0;
}

int
agent_tier_create(enum agent_tier_kind kind,
                  const struct agent_tier_config *cfg, struct agent_tier **out)
{
    switch (kind) {
    case AGENT_TIER_DRAM:
        return agent_tier_create_ops(&agent_tier_dram_ops, kind, cfg, out);
    case AGENT_TIER_NVME:
        return agent_tier_create_ops(&agent_tier_nvme_ops, kind, cfg, out);
    case AGENT_TIER_HBM:
        return agent_tier_create_ops(cfg && cfg->emulate
                                         ? &agent_tier_hbm_emulated_ops
                                         : &agent_tier_hbm_ops,
                                     kind, cfg, out);
    case AGENT_TIER_SRAM:
        /* GPU L2 holds no objects of its own; it is a residency hint on
         * an HBM tier (agent_tier_hbm_l2_hint). */
        return -EOPNOTSUPP;
    }
    return -EINVAL;
}

void
agent_tier_destroy(struct agent_tier *t)
{
    if (!t)
        return;
    t->ops->fini(t);
    free(t);
}

enum agent_tier_kind
agent_tier_kind_of(const struct agent_tier *t)
{
    return t->kind;
}

const char *
agent_tier_name(const struct agent_tier *t)
{
    return t->ops->name;
}

int
agent_tier_alloc(struct agent_tier *t, uint64_t len,
                 struct agent_tier_extent *out)
{
    if (!t || !out || len == 0)
        return -EINVAL;
    return t->ops->alloc(t, len, out);
}

int
agent_tier_free(struct agent_tier *t, const struct agent_tier_extent *e)
{
    if (!t || !e)
        return -EINVAL;
    return t->ops->free(t, e);
}

/* The one range rule for every backend: [off, off + len) must lie inside
 * the extent, computed without overflow. */
static int
check_range(const struct agent_tier_extent *e, uint64_t off, size_t len)
{
    if (off > e->len || (uint64_t)len > e->len - off)
        return -ERANGE;
    return 0;
}

int
agent_tier_read(struct agent_tier *t, const struct agent_tier_extent *e,
                uint64_t off, void *dst, size_t len)
{
    int rc;

    if (!t || !e || (!dst && len))
        return -EINVAL;
    rc = check_range(e, off, len);
    if (rc < 0 || len == 0)
        return rc;
    return t->ops->read(t, e, off, dst, len);
}

int
agent_tier_write(struct agent_tier *t, const struct agent_tier_extent *e,
                 uint64_t off, const void *src, size_t len)
{
    int rc;

    if (!t || !e || (!src && len))
        return -EINVAL;
    rc = check_range(e, off, len);
    if (rc < 0 || len == 0)
        return rc;
    return t->ops->write(t, e, off, src, len);
}

void *
agent_tier_map(struct agent_tier *t, const struct agent_tier_extent *e)
{
    if (!t || !e)
        return NULL;
    return t->ops->map(t, e);
}

void
agent_tier_stats(struct agent_tier *t, struct agent_tier_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (t)
        t->ops->stats(t, out);
}

bool
agent_tier_is_emulated(const struct agent_tier *t)
{
    return t && t->ops == &agent_tier_hbm_emulated_ops;
}

int
agent_tier_check(struct agent_tier *t)
{
    if (!t)
        return -EINVAL;
    if (!t->ops->check)
        return -EOPNOTSUPP;
    return t->ops->check(t);
}

int
agent_tier_copy(struct agent_tier *src, const struct agent_tier_extent *se,
                struct agent_tier *dst, const struct agent_tier_extent *de,
                uint64_t len)
{
    void *sp, *dp, *bounce;
    uint64_t done, chunk;
    int rc = 0;

    if (!src || !se || !dst || !de)
        return -EINVAL;
    if (len > se->len || len > de->len || len > SIZE_MAX)
        return -ERANGE;
    if (len == 0)
        return 0;
    /* memcpy semantics: overlapping ranges inside one tier are refused.
     * Written as distances so that no sum can wrap. */
    if (src == dst && (se->off >= de->off ? se->off - de->off < len
                                          : de->off - se->off < len))
        return -EINVAL;

    /* A mapped side lets the other side's read or write move the bytes
     * in one call, with no intermediate copy. */
    sp = agent_tier_map(src, se);
    if (sp)
        return agent_tier_write(dst, de, 0, sp, (size_t)len);
    dp = agent_tier_map(dst, de);
    if (dp)
        return agent_tier_read(src, se, 0, dp, (size_t)len);

    /* Page aligned so an O_DIRECT backend can use it without its own
     * bounce buffer. */
    chunk = len < AGENT_TIER_BOUNCE ? len : AGENT_TIER_BOUNCE;
    if (posix_memalign(&bounce, 4096, (size_t)chunk))
        return -ENOMEM;
    for (done = 0; done < len; done += chunk) {
        if (chunk > len - done)
            chunk = len - done;
        rc = agent_tier_read(src, se, done, bounce, (size_t)chunk);
        if (rc < 0)
            break;
        rc = agent_tier_write(dst, de, done, bounce, (size_t)chunk);
        if (rc < 0)
            break;
    }
    free(bounce);
    return rc < 0 ? rc : 0;
}

int
agent_tier_checksum(struct agent_tier *t, const struct agent_tier_extent *e,
                    uint64_t len, uint64_t *out)
{
    XXH3_state_t *st;
    void *p, *buf;
    uint64_t done, chunk;
    int rc = 0;

    if (!t || !e || !out)
        return -EINVAL;
    if (len > e->len || len > SIZE_MAX)
        return -ERANGE;
    p = agent_tier_map(t, e);
    if (p) {
        *out = XXH3_64bits(p, (size_t)len);
        return 0;
    }
    st = XXH3_createState();
    if (!st)
        return -ENOMEM;
    chunk = len < AGENT_TIER_BOUNCE ? len : AGENT_TIER_BOUNCE;
    if (posix_memalign(&buf, 4096, chunk ? (size_t)chunk : 4096)) {
        XXH3_freeState(st);
        return -ENOMEM;
    }
    XXH3_64bits_reset(st);
    for (done = 0; done < len; done += chunk) {
        if (chunk > len - done)
            chunk = len - done;
        rc = agent_tier_read(t, e, done, buf, (size_t)chunk);
        if (rc < 0)
            break;
        XXH3_64bits_update(st, buf, (size_t)chunk);
    }
    if (rc >= 0)
        *out = XXH3_64bits_digest(st);
    free(buf);
    XXH3_freeState(st);
    return rc < 0 ? rc : 0;
}

/* --- TLSF allocator -----------------------------------------------------
 *
 * Two-level segregated fit (Masmano et al., "TLSF: a new dynamic memory
 * allocator for real-time systems", ECRTS 2004). Free blocks sit in
 * FL_COUNT x SL_COUNT lists: the first level is the power of two of the
 * size, the second splits each power of two into SL_COUNT linear classes.
 * Two bitmaps find a non-empty list with one ffs each, so alloc and free
 * are O(1); freed blocks merge with free neighbours at once, so there are
 * never two adjacent free blocks.
 *
 * Unlike the textbook version, the boundary tags live in side nodes (one
 * per block, linked in address order) instead of in headers inside the
 * managed memory. The arena may be mapped by client processes, and the
 * NVMe "arena" is a file: neither may hold the allocator's pointers.
 * Allocated blocks are found by offset through a hash table.
 */

#define SL_LOG2  5
#define SL_COUNT (1u << SL_LOG2)
#define FL_COUNT 64

/* One block of the managed range, free or allocated. */
struct tblock {
    uint64_t off;             /* first byte, a multiple of the granule */
    uint64_t size;            /* bytes, a multiple of the granule */
    uint64_t req;             /* bytes the caller asked for; 0 when free */
    struct tblock *prev_phys; /* block just below, NULL at offset 0 */
    struct tblock *next_phys; /* block just above, NULL at the end */
    struct tblock *prev_free; /* free-list neighbour, when free */
    struct tblock *next_free; /* free-list or spare-list neighbour */
    struct tblock *hnext;     /* hash chain, when allocated */
    bool is_free;             /* true while in a free list */
};

struct agent_tlsf {
    uint64_t capacity;  /* managed bytes, a multiple of the granule */
    uint32_t granule;   /* allocation unit, a power of two */
    unsigned shift;     /* log2(granule) */
    uint64_t fl_bitmap; /* bit f set when any list in row f is used */
    uint32_t sl_bitmap[FL_COUNT]; /* bit s set when heads[f][s] is used */
    struct tblock *heads[FL_COUNT][SL_COUNT]; /* free lists by class */
    struct tblock *first;                     /* the block at offset 0 */
    struct tblock *spare; /* recycled nodes, linked by next_free */
    unsigned spare_count; /* nodes on the spare list */
    struct tblock **hash; /* allocated blocks by offset */
    unsigned hash_bits;   /* log2 of the bucket count */
    uint64_t used;        /* bytes in allocated blocks */
    uint64_t requested;   /* bytes callers asked for */
    uint64_t objects;     /* allocated blocks */
    uint64_t free_blocks; /* free blocks */
    struct tblock *hint;  /* last reserved block, to resume walks */
    uint64_t max_align;   /* largest alignment used; bounds rounding */
};

static void
mapping(uint64_t granules, unsigned *fl, unsigned *sl)
{
    unsigned f;

    if (granules < SL_COUNT) {
        *fl = 0;
        *sl = (unsigned)granules;
        return;
    }
    f = 63u - (unsigned)__builtin_clzll(granules);
    *fl = f - SL_LOG2 + 1;
    *sl = (unsigned)(granules >> (f - SL_LOG2)) - SL_COUNT;
}

static void
insert_free(struct agent_tlsf *a, struct tblock *b)
{
    unsigned fl, sl;

    mapping(b->size >> a->shift, &fl, &sl);
    b->is_free = true;
    b->req = 0;
    b->prev_free = NULL;
    b->next_free = a->heads[fl][sl];
    if (b->next_free)
        b->next_free->prev_free = b;
    a->heads[fl][sl] = b;
    a->sl_bitmap[fl] |= 1u << sl;
    a->fl_bitmap |= 1ull << fl;
    a->free_blocks++;
}

static void
remove_free(struct agent_tlsf *a, struct tblock *b)
{
    unsigned fl, sl;

    mapping(b->size >> a->shift, &fl, &sl);
    if (b->prev_free)
        b->prev_free->next_free = b->next_free;
    else
        a->heads[fl][sl] = b->next_free;
    if (b->next_free)
        b->next_free->prev_free = b->prev_free;
    if (!a->heads[fl][sl]) {
        a->sl_bitmap[fl] &= ~(1u << sl);
        if (!a->sl_bitmap[fl])
            a->fl_bitmap &= ~(1ull << fl);
    }
    b->is_free = false;
    b->prev_free = b->next_free = NULL;
    a->free_blocks--;
}

/* Makes sure n nodes are on hand, so that an operation which splits can
 * fail before it has changed anything. */
static int
stock_nodes(struct agent_tlsf *a, unsigned n)
{
    struct tblock *b;

    while (a->spare_count < n) {
        b = calloc(1, sizeof(*b));
        if (!b)
            return -ENOMEM;
        b->next_free = a->spare;
        a->spare = b;
        a->spare_count++;
    }
    return 0;
}

static struct tblock *
node_get(struct agent_tlsf *a)
{
    struct tblock *b = a->spare;

    a->spare = b->next_free;
    a->spare_count--;
    memset(b, 0, sizeof(*b));
    return b;
}

static void
node_put(struct agent_tlsf *a, struct tblock *b)
{
    /* Keep a bounded reserve; churn should not hold memory forever. */
    if (a->spare_count >= 64) {
        free(b);
        return;
    }
    b->next_free = a->spare;
    a->spare = b;
    a->spare_count++;
}

static size_t
hash_slot(const struct agent_tlsf *a, uint64_t off)
{
    return (size_t)(((off >> a->shift) * 0x9e3779b97f4a7c15ull) >>
                    (64 - a->hash_bits));
}

static void
hash_grow(struct agent_tlsf *a)
{
    struct tblock **nh, *b, *next;
    size_t i, n = (size_t)1 << a->hash_bits;
    unsigned old_bits = a->hash_bits;
    struct tblock **old = a->hash;

    /* Growth is an optimisation: on failure the chains just get longer. */
    nh = calloc(n * 2, sizeof(*nh));
    if (!nh)
        return;
    a->hash = nh;
    a->hash_bits = old_bits + 1;
    for (i = 0; i < n; i++) {
        for (b = old[i]; b; b = next) {
            size_t s = hash_slot(a, b->off);

            next = b->hnext;
            b->hnext = nh[s];
            nh[s] = b;
        }
    }
    free(old);
}

static void
hash_insert(struct agent_tlsf *a, struct tblock *b)
{
    size_t s;

    if (a->objects >= ((uint64_t)1 << a->hash_bits) && a->hash_bits < 40)
        hash_grow(a);
    s = hash_slot(a, b->off);
    b->hnext = a->hash[s];
    a->hash[s] = b;
}

static struct tblock *
hash_find(const struct agent_tlsf *a, uint64_t off)
{
    struct tblock *b;

    for (b = a->hash[hash_slot(a, off)]; b; b = b->hnext)
        if (b->off == off)
            return b;
    return NULL;
}

static void
hash_remove(struct agent_tlsf *a, struct tblock *b)
{
    struct tblock **pp = &a->hash[hash_slot(a, b->off)];

    while (*pp != b)
        pp = &(*pp)->hnext;
    *pp = b->hnext;
    b->hnext = NULL;
}

int
agent_tlsf_create(uint64_t capacity, uint32_t granule, struct agent_tlsf **out)
{
    struct agent_tlsf *a;
    struct tblock *b;

    /* 2^62 keeps every size and offset sum below 2^64. */
    if (!out || granule == 0 || (granule & (granule - 1)) ||
        capacity > (1ull << 62))
        return -EINVAL;
    capacity &= ~(uint64_t)(granule - 1);
    if (capacity == 0)
        return -EINVAL;
    a = calloc(1, sizeof(*a));
    if (!a)
        goto fail_a;
    a->capacity = capacity;
    a->granule = granule;
    a->shift = (unsigned)__builtin_ctz(granule);
    a->hash_bits = 8;
    a->hash = calloc((size_t)1 << a->hash_bits, sizeof(*a->hash));
    if (!a->hash)
        goto fail_hash;
    b = calloc(1, sizeof(*b));
    if (!b)
        goto fail_block;
    b->size = capacity;
    a->first = b;
    insert_free(a, b);
    *out = a;
    return 0;

fail_block:
    free(a->hash);
fail_hash:
    free(a);
fail_a:
    return -ENOMEM;
}

void
agent_tlsf_destroy(struct agent_tlsf *a)
{
    struct tblock *b, *next;

    if (!a)
        return;
    for (b = a->first; b; b = next) {
        next = b->next_phys;
        free(b);
    }
    for (b = a->spare; b; b = next) {
        next = b->next_free;
        free(b);
    }
    free(a->hash);
    free(a);
}

/* Bytes of padding needed before b's start to reach align. */
static uint64_t
align_gap(const struct tblock *b, uint64_t align)
{
    if (align == 0)
        return 0;
    return ((b->off + align - 1) & ~(align - 1)) - b->off;
}

/* Finds a free block that holds size bytes at the given alignment. The
 * fast path rounds the request up to the next class boundary, so that any
 * block in the first non-empty list at or above it fits (good fit, O(1)).
 * When that finds nothing, the request's own class may still hold a big
 * enough block; scanning it makes alloc fail only when nothing fits. */
static struct tblock *
find_free(struct agent_tlsf *a, uint64_t size, uint64_t align)
{
    uint64_t extra = align ? align - a->granule : 0;
    uint64_t g = (size + extra) >> a->shift, r = g;
    uint64_t flmap;
    uint32_t slmap;
    unsigned fl, sl;
    struct tblock *b;

    if (g >= SL_COUNT) {
        unsigned f = 63u - (unsigned)__builtin_clzll(g);

        r = g + ((1ull << (f - SL_LOG2)) - 1);
    }
    mapping(r, &fl, &sl);
    slmap = a->sl_bitmap[fl] & (~0u << sl);
    if (!slmap) {
        flmap = fl + 1 < FL_COUNT ? a->fl_bitmap & (~0ull << (fl + 1)) : 0;
        if (flmap) {
            fl = (unsigned)__builtin_ctzll(flmap);
            slmap = a->sl_bitmap[fl];
        }
    }
    if (slmap)
        return a->heads[fl][__builtin_ctz(slmap)];

    mapping(g, &fl, &sl);
    for (b = a->heads[fl][sl]; b; b = b->next_free)
        if (b->size >= size && b->size - size >= align_gap(b, align))
            return b;
    return NULL;
}

/* Takes [off, off + size) out of free block b, which must contain it,
 * returning the pieces before and after to the free lists. Two spare
 * nodes must be stocked. */
static void
carve(struct agent_tlsf *a, struct tblock *b, uint64_t off, uint64_t size,
      uint64_t req)
{
    struct tblock *f;

    remove_free(a, b);
    if (off > b->off) {
        f = node_get(a);
        f->off = b->off;
        f->size = off - b->off;
        f->prev_phys = b->prev_phys;
        f->next_phys = b;
        if (f->prev_phys)
            f->prev_phys->next_phys = f;
        else
            a->first = f;
        b->prev_phys = f;
        b->size -= f->size;
        b->off = off;
        insert_free(a, f);
    }
    if (b->size > size) {
        f = node_get(a);
        f->off = b->off + size;
        f->size = b->size - size;
        f->prev_phys = b;
        f->next_phys = b->next_phys;
        if (f->next_phys)
            f->next_phys->prev_phys = f;
        b->next_phys = f;
        b->size = size;
        insert_free(a, f);
    }
    b->req = req;
    hash_insert(a, b);
    a->used += size;
    a->requested += req;
    a->objects++;
}

int
agent_tlsf_alloc(struct agent_tlsf *a, uint64_t len, uint64_t align,
                 uint64_t *off)
{
    struct tblock *b;
    uint64_t size, unit;
    int rc;

    if (!a || !off || len == 0 || (align & (align - 1)))
        return -EINVAL;
    if (align <= a->granule)
        align = 0;
    if (len > a->capacity || (align && align > a->capacity))
        return -ENOSPC;
    /* An aligned block is also a whole number of alignment units, so that
     * freed aligned blocks leave aligned holes for the next one instead
     * of unaligned slivers (measured: 4x fewer failed allocations). */
    unit = align ? align : a->granule;
    size = (len + unit - 1) & ~(unit - 1);
    if (align > a->max_align)
        a->max_align = align;
    rc = stock_nodes(a, 2);
    if (rc < 0)
        return rc;
    b = find_free(a, size, align);
    if (!b)
        return -ENOSPC;
    *off = b->off + align_gap(b, align);
    carve(a, b, *off, size, len);
    return 0;
}

int
agent_tlsf_alloc_extent(struct agent_tlsf *a, pthread_mutex_t *lock,
                        uint64_t len, uint64_t align, uint64_t *fail,
                        struct agent_tier_extent *out)
{
    uint64_t off;
    int rc = -ENOSPC;

    pthread_mutex_lock(lock);
    if (align)
        rc = agent_tlsf_alloc(a, len, align, &off);
    if (rc == -ENOSPC)
        rc = agent_tlsf_alloc(a, len, 0, &off);
    if (rc == -ENOSPC)
        (*fail)++;
    pthread_mutex_unlock(lock);
    if (rc < 0)
        return rc;
    out->off = off;
    out->len = len;
    return 0;
}

int
agent_tlsf_free_extent(struct agent_tlsf *a, pthread_mutex_t *lock,
                       const struct agent_tier_extent *e)
{
    int rc;

    pthread_mutex_lock(lock);
    rc = agent_tlsf_free(a, e->off, e->len);
    pthread_mutex_unlock(lock);
    return rc;
}

int
agent_tlsf_free(struct agent_tlsf *a, uint64_t off, uint64_t len)
{
    struct tblock *b, *n;

    if (!a)
        return -EINVAL;
    b = hash_find(a, off);
    if (!b)
        return -ENOENT;
    if (b->req != len)
        return -EINVAL;
    hash_remove(a, b);
    a->used -= b->size;
    a->requested -= b->req;
    a->objects--;
    if (a->hint == b)
        a->hint = NULL;

    n = b->prev_phys;
    if (n && n->is_free) {
        remove_free(a, n);
        n->size += b->size;
        n->next_phys = b->next_phys;
        if (n->next_phys)
            n->next_phys->prev_phys = n;
        node_put(a, b);
        b = n;
    }
    n = b->next_phys;
    if (n && n->is_free) {
        remove_free(a, n);
        b->size += n->size;
        b->next_phys = n->next_phys;
        if (b->next_phys)
            b->next_phys->prev_phys = b;
        node_put(a, n);
    }
    insert_free(a, b);
    return 0;
}

int
agent_tlsf_reserve(struct agent_tlsf *a, uint64_t off, uint64_t len)
{
    struct tblock *b;
    uint64_t size;
    int rc;

    if (!a || len == 0 || (off & (a->granule - 1)) || len > a->capacity)
        return -EINVAL;
    size = (len + a->granule - 1) & ~(uint64_t)(a->granule - 1);
    if (off > a->capacity || size > a->capacity - off)
        return -EINVAL;
    rc = stock_nodes(a, 2);
    if (rc < 0)
        return rc;
    b = a->hint && a->hint->off <= off ? a->hint : a->first;
    while (b && b->off + b->size <= off)
        b = b->next_phys;
    /* Free ranges are maximal, so one free block must hold all of it. */
    if (!b || !b->is_free || off + size > b->off + b->size)
        return -EEXIST;
    carve(a, b, off, size, len);
    a->hint = b;
    return 0;
}

int
agent_tlsf_lookup(const struct agent_tlsf *a, uint64_t off, uint64_t len)
{
    const struct tblock *b;

    if (!a)
        return -EINVAL;
    b = hash_find(a, off);
    return b && b->req == len ? 0 : -EINVAL;
}

void
agent_tlsf_stats(const struct agent_tlsf *a, struct agent_tier_stats *out)
{
    const struct tblock *b;
    uint64_t largest = 0;
    unsigned fl, sl;

    out->capacity = a->capacity;
    out->used = a->used;
    out->requested = a->requested;
    out->objects = a->objects;
    out->free_blocks = a->free_blocks;
    out->granule = a->granule;
    /* The largest block is in the highest non-empty list; that one list
     * is not sorted, so scan it. */
    if (a->fl_bitmap) {
        fl = 63u - (unsigned)__builtin_clzll(a->fl_bitmap);
        sl = 31u - (unsigned)__builtin_clz(a->sl_bitmap[fl]);
        for (b = a->heads[fl][sl]; b; b = b->next_free)
            if (b->size > largest)
                largest = b->size;
    }
    out->largest_free = largest;
}

int
agent_tlsf_check(const struct agent_tlsf *a)
{
    const struct tblock *b, *prev = NULL;
    uint64_t expect = 0, used = 0, req = 0, objects = 0, nfree = 0;
    uint64_t listed = 0, mask = a->granule - 1;
    unsigned fl, sl, f, s;

    for (b = a->first; b; prev = b, b = b->next_phys) {
        if (b->off != expect || b->size == 0 || (b->size & mask) ||
            b->prev_phys != prev)
            return -EUCLEAN;
        if (b->is_free) {
            if ((prev && prev->is_free) || b->req != 0)
                return -EUCLEAN;
            nfree++;
        } else {
            if (b->req == 0 || b->req > b->size ||
                b->size - b->req >=
                    (a->max_align > a->granule ? a->max_align : a->granule) ||
                hash_find(a, b->off) != b)
                return -EUCLEAN;
            used += b->size;
            req += b->req;
            objects++;
        }
        expect += b->size;
    }
    if (expect != a->capacity || used != a->used || req != a->requested ||
        objects != a->objects || nfree != a->free_blocks)
        return -EUCLEAN;

    for (f = 0; f < FL_COUNT; f++) {
        if (!!(a->fl_bitmap & (1ull << f)) != !!a->sl_bitmap[f])
            return -EUCLEAN;
        for (s = 0; s < SL_COUNT; s++) {
            if (!!(a->sl_bitmap[f] & (1u << s)) != !!a->heads[f][s])
                return -EUCLEAN;
            prev = NULL;
            for (b = a->heads[f][s]; b; prev = b, b = b->next_free) {
                mapping(b->size >> a->shift, &fl, &sl);
                if (!b->is_free || fl != f || sl != s || b->prev_free != prev)
                    return -EUCLEAN;
                listed++;
            }
        }
    }
    return listed == nfree ? 0 : -EUCLEAN;
}
