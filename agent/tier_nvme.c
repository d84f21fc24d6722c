/*
 * NVMe tier: extents inside one preallocated data file, carved by the TLSF
 * allocator in tier.c with a 4 KiB granule, plus an append-only index
 * journal that makes "object id -> extent + checksum" survive a restart.
 *
 * Files in the configured directory:
 *   lock         flock'ed for the tier's lifetime: one agent per directory
 *   data         capacity bytes, fallocate'd; extents are offsets into it
 *   index        64-byte header, then 64-byte PUT / FORGET records, each
 *                with its own XXH3 checksum
 *   index.tmp    a compacted index being written; renamed over index
 *   index.corrupt  the last index in which recovery found bad records
 *
 * The data file is opened with O_DIRECT when the filesystem allows it, so
 * cold objects do not evict hot ones from the page cache; unaligned
 * requests go through an aligned bounce buffer. See docs/tiers.md for the
 * durability rules.
 */
#include "tier.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <endian.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

/* Extent granule and O_DIRECT alignment: a page, and a multiple of every
 * logical block size NVMe devices use (512 B, 4 KiB). */
#define NVME_BLOCK 4096u

#define INDEX_MAGIC   "MCOSNVX1"
#define INDEX_VERSION 1u
#define REC_SIZE      64u
#define REC_MAGIC     0x4345524du /* "MREC" in little-endian */
#define REC_PUT       1u
#define REC_FORGET    2u
#define INDEX_CHUNK   (1024u * REC_SIZE)
#define COMPACT_SLACK 1024u

/* One object the index knows about. */
struct irec {
    uint64_t id;           /* the caller's object id */
    uint64_t seq;          /* journal sequence of the PUT that made it */
    uint64_t off;          /* extent offset in the data file */
    uint64_t len;          /* extent length as allocated */
    uint64_t csum;         /* the caller's checksum of the data */
    struct irec *next_id;  /* chain in by_id */
    struct irec *next_off; /* chain in by_off */
};

/* Index records hashed both by id (lookup, forget) and by extent offset
 * (free refuses recorded extents; one record per extent). */
struct idmap {
    struct irec **by_id;  /* buckets keyed by object id */
    struct irec **by_off; /* buckets keyed by extent offset */
    unsigned bits;        /* log2 of the bucket count of both tables */
    uint64_t count;       /* records in the map */
};

/* The NVMe backend's state; base comes first for AGENT_CONTAINER_OF. */
struct nvme_tier {
    struct agent_tier base;   /* the generic part */
    pthread_mutex_t lock;     /* guards alloc, ids, the journal, counters */
    struct agent_tlsf *alloc; /* extents of the data file */
    struct idmap ids;         /* the live index, mirrored from disk */
    char *dir;                /* owned copy of the directory path */
    int dir_fd;               /* the directory, for *at() and fsync */
    int lock_fd;              /* holds the per-directory flock */
    int data_fd;              /* the data file */
    int index_fd;             /* the index journal */
    bool direct;              /* data_fd has O_DIRECT */
    bool index_failed;        /* a journal sync failed; refuse records */
    uint64_t capacity;        /* bytes of the data file in use */
    uint64_t next_seq;        /* sequence for the next journal record */
    uint64_t index_end;       /* append offset in the journal */
    uint64_t index_records;   /* records in the journal, live or dead */
    uint64_t alloc_fail;      /* allocations refused with -ENOSPC */
    uint64_t io_errors;       /* failed I/O calls; updated atomically */
    uint64_t recovered;       /* objects found at init */
    uint64_t index_bad;       /* records skipped at init */
};

/* A record as it sits on disk, decoded. */
struct drec {
    uint32_t type; /* REC_PUT or REC_FORGET */
    uint64_t seq;  /* journal order */
    uint64_t id;   /* object id */
    uint64_t off;  /* extent offset (PUT) */
    uint64_t len;  /* extent length (PUT) */
    uint64_t csum; /* data checksum (PUT) */
};

static struct nvme_tier *
nvme_of(struct agent_tier *t)
{
    return AGENT_CONTAINER_OF(t, struct nvme_tier, base);
}

static uint64_t
round_block(uint64_t n)
{
    return (n + NVME_BLOCK - 1) & ~(uint64_t)(NVME_BLOCK - 1);
}

static void
count_io_error(struct nvme_tier *d)
{
    __atomic_fetch_add(&d->io_errors, 1, __ATOMIC_RELAXED);
}

/* --- Plain I/O helpers --------------------------------------------------
 */

static int
pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    ssize_t n;

    while (len) {
        n = pread(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO; /* the file is preallocated: EOF means damage */
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static int
pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    ssize_t n;

    while (len) {
        n = pwrite(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* --- The id / offset map ------------------------------------------------
 */

static size_t
slot(uint64_t key, unsigned bits)
{
    return (size_t)((key * 0x9e3779b97f4a7c15ull) >> (64 - bits));
}

static int
idmap_init(struct idmap *m)
{
    memset(m, 0, sizeof(*m));
    m->bits = 8;
    m->by_id = calloc((size_t)1 << m->bits, sizeof(*m->by_id));
    m->by_off = calloc((size_t)1 << m->bits, sizeof(*m->by_off));
    if (!m->by_id || !m->by_off) {
        free(m->by_id);
        free(m->by_off);
        /* Leave a map that idmap_fini can take again. */
        memset(m, 0, sizeof(*m));
        return -ENOMEM;
    }
    return 0;
}

static void
idmap_fini(struct idmap *m)
{
    struct irec *r, *next;
    size_t i;

    for (i = 0; m->by_id && i < ((size_t)1 << m->bits); i++) {
        for (r = m->by_id[i]; r; r = next) {
            next = r->next_id;
            free(r);
        }
    }
    free(m->by_id);
    free(m->by_off);
}

static void
idmap_link(struct idmap *m, struct irec *r)
{
    size_t s = slot(r->id, m->bits), o = slot(r->off / NVME_BLOCK, m->bits);

    r->next_id = m->by_id[s];
    m->by_id[s] = r;
    r->next_off = m->by_off[o];
    m->by_off[o] = r;
}

static void
idmap_grow(struct idmap *m)
{
    struct irec **old = m->by_id, **nid, **noff, *r, *next;
    size_t i, n = (size_t)1 << m->bits;

    /* Growth only shortens chains; on failure keep the old tables. */
    nid = calloc(n * 2, sizeof(*nid));
    noff = calloc(n * 2, sizeof(*noff));
    if (!nid || !noff) {
        free(nid);
        free(noff);
        return;
    }
    free(m->by_off);
    m->by_id = nid;
    m->by_off = noff;
    m->bits++;
    for (i = 0; i < n; i++) {
        for (r = old[i]; r; r = next) {
            next = r->next_id;
            idmap_link(m, r);
        }
    }
    free(old);
}

static struct irec *
idmap_find(const struct idmap *m, uint64_t id)
{
    struct irec *r;

    for (r = m->by_id[slot(id, m->bits)]; r; r = r->next_id)
        if (r->id == id)
            return r;
    return NULL;
}

static struct irec *
idmap_find_off(const struct idmap *m, uint64_t off)
{
    struct irec *r;

    for (r = m->by_off[slot(off / NVME_BLOCK, m->bits)]; r; r = r->next_off)
        if (r->off == off)
            return r;
    return NULL;
}

/* Takes r, allocated by the caller, into the map. */
static void
idmap_insert(struct idmap *m, struct irec *r)
{
    if (m->count >= ((uint64_t)1 << m->bits) && m->bits < 40)
        idmap_grow(m);
    idmap_link(m, r);
    m->count++;
}

/* Unlinks r from both tables without freeing it. */
static void
idmap_unlink(struct idmap *m, struct irec *r)
{
    struct irec **pp;

    for (pp = &m->by_id[slot(r->id, m->bits)]; *pp != r; pp = &(*pp)->next_id)
        ;
    *pp = r->next_id;
    for (pp = &m->by_off[slot(r->off / NVME_BLOCK, m->bits)]; *pp != r;
         pp = &(*pp)->next_off)
        ;
    *pp = r->next_off;
    m->count--;
}

/* --- On-disk format -----------------------------------------------------
 */

static void
put_le32(uint8_t *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, sizeof(v));
}

static void
put_le64(uint8_t *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, sizeof(v));
}

static uint32_t
get_le32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof(v));
    return le32toh(v);
}

static uint64_t
get_le64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return le64toh(v);
}

/* Every header and record ends in the XXH3 of the 56 bytes before it. */
static void
seal(uint8_t *p)
{
    put_le64(p + 56, XXH3_64bits(p, 56));
}

static bool
sealed(const uint8_t *p)
{
    return get_le64(p + 56) == XXH3_64bits(p, 56);
}

static void
encode_header(uint8_t *p, uint64_t capacity)
{
    memset(p, 0, REC_SIZE);
    memcpy(p, INDEX_MAGIC, 8);
    put_le32(p + 8, INDEX_VERSION);
    put_le32(p + 12, REC_SIZE);
    put_le32(p + 16, NVME_BLOCK);
    put_le64(p + 24, capacity);
    seal(p);
}

static void
encode_rec(uint8_t *p, const struct drec *r)
{
    memset(p, 0, REC_SIZE);
    put_le32(p, REC_MAGIC);
    put_le32(p + 4, r->type);
    put_le64(p + 8, r->seq);
    put_le64(p + 16, r->id);
    put_le64(p + 24, r->off);
    put_le64(p + 32, r->len);
    put_le64(p + 40, r->csum);
    seal(p);
}

/* Everything read from disk is checked before it is believed: checksum,
 * magic, type, reserved bytes and that the extent fits the data file. */
static bool
decode_rec(const uint8_t *p, uint64_t capacity, struct drec *r)
{
    if (!sealed(p) || get_le32(p) != REC_MAGIC || get_le64(p + 48) != 0)
        return false;
    r->type = get_le32(p + 4);
    r->seq = get_le64(p + 8);
    r->id = get_le64(p + 16);
    r->off = get_le64(p + 24);
    r->len = get_le64(p + 32);
    r->csum = get_le64(p + 40);
    /* The next sequence number must not wrap. */
    if (r->seq == 0 || r->seq == UINT64_MAX)
        return false;
    if (r->type == REC_FORGET)
        return r->off == 0 && r->len == 0 && r->csum == 0;
    if (r->type != REC_PUT)
        return false;
    return r->len != 0 && r->off % NVME_BLOCK == 0 && r->off <= capacity &&
           r->len <= capacity - r->off &&
           round_block(r->len) <= capacity - r->off;
}

/* --- Journal ------------------------------------------------------------
 */

static int
append_rec(struct nvme_tier *d, const struct drec *r)
{
    uint8_t buf[REC_SIZE];
    int rc;

    if (d->index_failed)
        return -EIO;
    encode_rec(buf, r);
    rc = pwrite_full(d->index_fd, buf, sizeof(buf), d->index_end);
    if (rc == 0 && fdatasync(d->index_fd))
        rc = -errno;
    if (rc < 0) {
        count_io_error(d);
        /* After a failed sync Linux may have dropped the dirty pages and
         * cleared the error, so a retry could "succeed" without the data.
         * Refuse further records until a restart rebuilds the index. */
        d->index_failed = true;
        agent_tier_log("nvme",
                       "index append in %s failed: %s; no more "
                       "records until restart",
                       d->dir, strerror(-rc));
        return rc;
    }
    d->index_end += REC_SIZE;
    d->index_records++;
    return 0;
}

/* Writes the live index to index.tmp and renames it over index, so that a
 * crash at any point leaves either the old or the new index whole. */
static int
rewrite_index(struct nvme_tier *d, bool keep_old)
{
    uint8_t *buf;
    size_t fill = REC_SIZE, i;
    uint64_t pos = 0;
    struct irec *r;
    struct drec dr;
    int fd, rc = 0;

    buf = malloc(INDEX_CHUNK);
    if (!buf)
        return -ENOMEM;
    fd = openat(d->dir_fd, "index.tmp", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC,
                0600);
    if (fd < 0) {
        rc = -errno;
        goto out_buf;
    }
    encode_header(buf, d->capacity);
    for (i = 0; i < ((size_t)1 << d->ids.bits); i++) {
        for (r = d->ids.by_id[i]; r; r = r->next_id) {
            if (fill == INDEX_CHUNK) {
                rc = pwrite_full(fd, buf, fill, pos);
                if (rc < 0)
                    goto out_fd;
                pos += fill;
                fill = 0;
            }
            dr =
                (struct drec){REC_PUT, r->seq, r->id, r->off, r->len, r->csum};
            encode_rec(buf + fill, &dr);
            fill += REC_SIZE;
        }
    }
    rc = pwrite_full(fd, buf, fill, pos);
    if (rc < 0)
        goto out_fd;
    pos += fill;
    if (fdatasync(fd)) {
        rc = -errno;
        goto out_fd;
    }
    if (keep_old) {
        /* Keep the evidence for whoever investigates the corruption. */
        (void)unlinkat(d->dir_fd, "index.corrupt", 0);
        (void)linkat(d->dir_fd, "index", d->dir_fd, "index.corrupt", 0);
    }
    if (renameat(d->dir_fd, "index.tmp", d->dir_fd, "index") ||
        fsync(d->dir_fd)) {
        rc = -errno;
        goto out_fd;
    }
    if (d->index_fd >= 0)
        close(d->index_fd);
    d->index_fd = fd;
    d->index_end = pos;
    d->index_records = d->ids.count;
    free(buf);
    return 0;

out_fd:
    count_io_error(d);
    close(fd);
    (void)unlinkat(d->dir_fd, "index.tmp", 0);
out_buf:
    free(buf);
    return rc;
}

/* Keeps the journal within a constant factor of the live set, so that
 * restart time follows what is stored, not how long the agent ran. */
static void
maybe_compact(struct nvme_tier *d)
{
    if (d->index_records > 4 * d->ids.count + COMPACT_SLACK &&
        rewrite_index(d, false) < 0)
        agent_tier_log("nvme", "%s: index compaction failed; still appending",
                       d->dir);
}

/* Checks the header; > 0 means "usable, but rewrite the index". */
static int
check_header(struct nvme_tier *d, const uint8_t *p)
{
    uint64_t cap;

    if (memcmp(p, INDEX_MAGIC, 8) || !sealed(p)) {
        agent_tier_log("nvme",
                       "%s/index: header is corrupt; recovering "
                       "records that verify on their own",
                       d->dir);
        d->index_bad++;
        return 1;
    }
    if (get_le32(p + 8) != INDEX_VERSION || get_le32(p + 12) != REC_SIZE ||
        get_le32(p + 16) != NVME_BLOCK) {
        agent_tier_log("nvme",
                       "%s/index: version %u, record size %u, "
                       "block %u; this agent reads version %u, %u, %u",
                       d->dir, get_le32(p + 8), get_le32(p + 12),
                       get_le32(p + 16), INDEX_VERSION, REC_SIZE, NVME_BLOCK);
        return -EPROTO;
    }
    cap = get_le64(p + 24);
    if (cap > d->capacity) {
        agent_tier_log("nvme",
                       "%s holds a %llu-byte tier; the configured "
                       "capacity %llu would lose objects",
                       d->dir, (unsigned long long)cap,
                       (unsigned long long)d->capacity);
        return -EINVAL;
    }
    return cap < d->capacity;
}

/* Replays one valid record into the map. Returns > 0 when it made some
 * journal record dead (so compaction is worth it). */
static int
apply_rec(struct nvme_tier *d, const struct drec *dr)
{
    struct irec *r = idmap_find(&d->ids, dr->id);

    if (dr->seq >= d->next_seq)
        d->next_seq = dr->seq + 1;
    if (r && r->seq >= dr->seq)
        return 1; /* older than what we have: out of order, ignore */
    if (dr->type == REC_FORGET) {
        if (r) {
            idmap_unlink(&d->ids, r);
            free(r);
        }
        return 1;
    }
    if (r) {
        idmap_unlink(&d->ids, r);
    } else {
        r = calloc(1, sizeof(*r));
        if (!r)
            return -ENOMEM;
    }
    *r = (struct irec){.id = dr->id,
                       .seq = dr->seq,
                       .off = dr->off,
                       .len = dr->len,
                       .csum = dr->csum};
    idmap_insert(&d->ids, r);
    return 0;
}

/* Reads the journal into d->ids. Bad records are counted and skipped;
 * only an unreadable file or an incompatible format fails the load. */
static int
load_index(struct nvme_tier *d, bool *rewrite)
{
    uint8_t *buf = NULL;
    struct stat st;
    struct drec dr;
    uint64_t pos, n, i;
    int rc;

    d->index_fd =
        openat(d->dir_fd, "index", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (d->index_fd < 0)
        return -errno;
    if (fstat(d->index_fd, &st)) {
        rc = -errno;
        goto fail;
    }
    if (st.st_size < (off_t)REC_SIZE) {
        /* Empty: a new tier. Shorter than a header: a torn first write. */
        if (st.st_size > 0)
            d->index_bad++;
        *rewrite = true;
        return 0;
    }
    buf = malloc(INDEX_CHUNK);
    if (!buf) {
        rc = -ENOMEM;
        goto fail;
    }
    rc = pread_full(d->index_fd, buf, REC_SIZE, 0);
    if (rc < 0)
        goto fail;
    rc = check_header(d, buf);
    if (rc < 0)
        goto fail;
    if (rc > 0)
        *rewrite = true;
    if (((uint64_t)st.st_size - REC_SIZE) % REC_SIZE) {
        /* A torn append at the end; the whole records before it stand. */
        d->index_bad++;
        *rewrite = true;
    }
    for (pos = REC_SIZE; pos + REC_SIZE <= (uint64_t)st.st_size; pos += n) {
        n = (uint64_t)st.st_size - pos;
        n = n > INDEX_CHUNK ? INDEX_CHUNK : n - n % REC_SIZE;
        rc = pread_full(d->index_fd, buf, (size_t)n, pos);
        if (rc < 0)
            goto fail;
        for (i = 0; i < n; i += REC_SIZE) {
            if (!decode_rec(buf + i, d->capacity, &dr)) {
                agent_tier_log("nvme",
                               "%s/index: record at byte %llu is "
                               "torn or corrupt; skipped",
                               d->dir, (unsigned long long)(pos + i));
                d->index_bad++;
                *rewrite = true;
                continue;
            }
            rc = apply_rec(d, &dr);
            if (rc < 0)
                goto fail;
            if (rc > 0)
                *rewrite = true;
        }
    }
    free(buf);
    d->index_end = (uint64_t)st.st_size;
    d->index_records = ((uint64_t)st.st_size - REC_SIZE) / REC_SIZE;
    return 0;

fail:
    free(buf);
    close(d->index_fd);
    d->index_fd = -1;
    return rc;
}

/* Offset order, then journal order; for records and for pointers to them.
 */
static int
cmp_irec(const struct irec *x, const struct irec *y)
{
    if (x->off != y->off)
        return x->off < y->off ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int
cmp_off(const void *a, const void *b)
{
    return cmp_irec(*(const struct irec *const *)a,
                    *(const struct irec *const *)b);
}

static int
cmp_off_val(const void *a, const void *b)
{
    return cmp_irec(a, b);
}

static void
drop_rec(struct nvme_tier *d, struct irec *r, const char *why)
{
    agent_tier_log("nvme",
                   "%s/index: dropping object %#llx at %llu+%llu: "
                   "%s",
                   d->dir, (unsigned long long)r->id,
                   (unsigned long long)r->off, (unsigned long long)r->len,
                   why);
    idmap_unlink(&d->ids, r);
    free(r);
    d->index_bad++;
}

/* Marks every recovered extent allocated. Extents only overlap when a
 * FORGET was lost to corruption; the newer record wins, because the
 * allocator could only have handed the space out again after a free. */
static int
rebuild(struct nvme_tier *d, bool *rewrite)
{
    struct irec **v, *r;
    size_t n = 0, kept = 0, i;
    int rc;

    if (!d->ids.count)
        return 0;
    v = malloc((size_t)d->ids.count * sizeof(*v));
    if (!v)
        return -ENOMEM;
    for (i = 0; i < ((size_t)1 << d->ids.bits); i++)
        for (r = d->ids.by_id[i]; r; r = r->next_id)
            v[n++] = r;
    qsort(v, n, sizeof(*v), cmp_off);
    for (i = 0; i < n; i++) {
        if (kept &&
            v[i]->off < v[kept - 1]->off + round_block(v[kept - 1]->len)) {
            *rewrite = true;
            if (v[i]->seq > v[kept - 1]->seq) {
                drop_rec(d, v[kept - 1], "overlaps a newer record");
                v[kept - 1] = v[i];
            } else {
                drop_rec(d, v[i], "overlaps a newer record");
            }
            continue;
        }
        v[kept++] = v[i];
    }
    for (i = 0; i < kept; i++) {
        rc = agent_tlsf_reserve(d->alloc, v[i]->off, v[i]->len);
        if (rc == -ENOMEM) {
            free(v);
            return rc;
        }
        if (rc < 0) {
            *rewrite = true;
            drop_rec(d, v[i], "extent cannot be reserved");
        }
    }
    free(v);
    d->recovered = d->ids.count;
    return 0;
}

/* --- Init ---------------------------------------------------------------
 */

/* Opens the data file, preferring O_DIRECT, and sizes it to capacity. */
static int
open_data(struct nvme_tier *d, const struct agent_tier_config *cfg,
          bool *created)
{
    int flags = O_RDWR | O_CREAT | O_CLOEXEC, rc;
    struct stat st;
    void *probe;

    *created = fstatat(d->dir_fd, "data", &st, 0) != 0;
    d->direct = cfg->direct_io != AGENT_TIER_DIRECT_OFF;
    d->data_fd =
        openat(d->dir_fd, "data", flags | (d->direct ? O_DIRECT : 0), 0600);
    if (d->data_fd < 0 && errno == EINVAL && d->direct) {
        d->direct = false;
        d->data_fd = openat(d->dir_fd, "data", flags, 0600);
    }
    if (d->data_fd < 0)
        return -errno;
    if (fstat(d->data_fd, &st)) {
        rc = -errno;
        goto fail;
    }
    if ((uint64_t)st.st_size < d->capacity) {
        /* Reserve the blocks now: ENOSPC at start, not in the hot path. */
        if (fallocate(d->data_fd, 0, 0, (off_t)d->capacity)) {
            rc = -errno;
            if (rc != -EOPNOTSUPP ||
                ftruncate(d->data_fd, (off_t)d->capacity)) {
                agent_tier_log("nvme",
                               "cannot size %s/data to %llu bytes: "
                               "%s",
                               d->dir, (unsigned long long)d->capacity,
                               strerror(-rc));
                goto fail;
            }
        }
        if (fsync(d->data_fd)) {
            rc = -errno;
            goto fail;
        }
    }
    /* Some filesystems accept O_DIRECT at open and refuse it at I/O time;
     * one aligned read settles it. */
    if (d->direct) {
        if (posix_memalign(&probe, NVME_BLOCK, NVME_BLOCK)) {
            rc = -ENOMEM;
            goto fail;
        }
        rc = pread_full(d->data_fd, probe, NVME_BLOCK, 0);
        free(probe);
        if (rc == -EINVAL) {
            close(d->data_fd);
            d->direct = false;
            d->data_fd = openat(d->dir_fd, "data", flags, 0600);
            if (d->data_fd < 0)
                return -errno;
        } else if (rc < 0) {
            goto fail;
        }
    }
    if (!d->direct && cfg->direct_io == AGENT_TIER_DIRECT_REQUIRE) {
        agent_tier_log("nvme",
                       "%s does not support O_DIRECT, which the "
                       "configuration requires",
                       d->dir);
        rc = -EINVAL;
        goto fail;
    }
    if (!d->direct && cfg->direct_io == AGENT_TIER_DIRECT_AUTO)
        agent_tier_log("nvme",
                       "%s does not support O_DIRECT; using "
                       "buffered I/O",
                       d->dir);
    return 0;

fail:
    close(d->data_fd);
    d->data_fd = -1;
    return rc;
}

/* Creates the directory if needed and takes its lock: two agents writing
 * one data file would corrupt each other's objects. */
static int
open_dir(struct nvme_tier *d)
{
    int rc;

    if (mkdir(d->dir, 0700) && errno != EEXIST)
        return -errno;
    d->dir_fd = open(d->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d->dir_fd < 0)
        return -errno;
    d->lock_fd = openat(d->dir_fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (d->lock_fd < 0) {
        rc = -errno;
        goto fail_lock;
    }
    if (flock(d->lock_fd, LOCK_EX | LOCK_NB)) {
        rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
        if (rc == -EBUSY)
            agent_tier_log("nvme", "%s is in use by another process", d->dir);
        goto fail_flock;
    }
    return 0;

fail_flock:
    close(d->lock_fd);
fail_lock:
    close(d->dir_fd);
    return rc;
}

static int
nvme_init(struct agent_tier *t, const struct agent_tier_config *cfg)
{
    struct nvme_tier *d = nvme_of(t);
    bool created, rewrite = false;
    uint64_t lost;
    int rc;

    d->index_fd = d->data_fd = d->lock_fd = d->dir_fd = -1;
    d->next_seq = 1;
    if (!cfg->dir || !cfg->dir[0]) {
        agent_tier_log("nvme", "no directory configured");
        return -EINVAL;
    }
    d->capacity = cfg->capacity & ~(uint64_t)(NVME_BLOCK - 1);
    if (d->capacity == 0 || d->capacity > (1ull << 62)) {
        agent_tier_log("nvme",
                       "capacity %llu must be from %u bytes to "
                       "2^62",
                       (unsigned long long)cfg->capacity, NVME_BLOCK);
        return -EINVAL;
    }
    if (cfg->direct_io > AGENT_TIER_DIRECT_REQUIRE)
        return -EINVAL;
    d->dir = strdup(cfg->dir);
    if (!d->dir)
        return -ENOMEM;
    rc = open_dir(d);
    if (rc < 0)
        goto fail_dir;
    rc = open_data(d, cfg, &created);
    if (rc < 0)
        goto fail_data;
    rc = idmap_init(&d->ids);
    if (rc < 0)
        goto fail_ids;
    rc = load_index(d, &rewrite);
    if (rc < 0)
        goto fail_index;
    if (created && d->ids.count) {
        /* The index outlived its data file: none of it can be trusted. */
        lost = d->ids.count;
        agent_tier_log("nvme",
                       "%s/data was missing; dropping %llu index "
                       "records",
                       d->dir, (unsigned long long)lost);
        idmap_fini(&d->ids);
        rc = idmap_init(&d->ids);
        if (rc < 0)
            goto fail_alloc;
        d->index_bad += lost;
        rewrite = true;
    }
    rc = agent_tlsf_create(d->capacity, NVME_BLOCK, &d->alloc);
    if (rc < 0)
        goto fail_alloc;
    rc = rebuild(d, &rewrite);
    if (rc < 0)
        goto fail_rebuild;
    if (rewrite) {
        rc = rewrite_index(d, d->index_bad > 0);
        if (rc < 0) {
            agent_tier_log("nvme", "cannot write %s/index: %s", d->dir,
                           strerror(-rc));
            goto fail_rebuild;
        }
    }
    if (created && fsync(d->dir_fd)) {
        rc = -errno;
        goto fail_rebuild;
    }
    if (d->index_bad)
        agent_tier_log("nvme",
                       "%s: recovered %llu objects, skipped %llu "
                       "bad index records",
                       d->dir, (unsigned long long)d->recovered,
                       (unsigned long long)d->index_bad);
    rc = -pthread_mutex_init(&d->lock, NULL);
    if (rc < 0)
        goto fail_rebuild;
    if (cfg->on_recover) {
        rc = agent_tier_nvme_recover(t, cfg->on_recover, cfg->recover_arg);
        if (rc < 0)
            goto fail_recover;
    }
    return 0;

fail_recover:
    pthread_mutex_destroy(&d->lock);
fail_rebuild:
    agent_tlsf_destroy(d->alloc);
fail_alloc:
    close(d->index_fd);
fail_index:
    idmap_fini(&d->ids);
fail_ids:
    close(d->data_fd);
    /* An empty data file left behind would pair with the old index at the
     * next start and present zeros as the recorded objects. */
    if (created)
        (void)unlinkat(d->dir_fd, "data", 0);
fail_data:
    close(d->lock_fd);
    close(d->dir_fd);
fail_dir:
    free(d->dir);
    return rc;
}

static void
nvme_fini(struct agent_tier *t)
{
    struct nvme_tier *d = nvme_of(t);

    /* Nothing to flush: every record was synced when it was made, and
     * unrecorded data is not promised to survive. */
    pthread_mutex_destroy(&d->lock);
    agent_tlsf_destroy(d->alloc);
    idmap_fini(&d->ids);
    close(d->index_fd);
    close(d->data_fd);
    close(d->lock_fd);
    close(d->dir_fd);
    free(d->dir);
}

/* --- Extents and I/O ----------------------------------------------------
 */

static int
nvme_alloc(struct agent_tier *t, uint64_t len, struct agent_tier_extent *out)
{
    struct nvme_tier *d = nvme_of(t);

    return agent_tlsf_alloc_extent(d->alloc, &d->lock, len, 0, &d->alloc_fail,
                                   out);
}

static int
nvme_free(struct agent_tier *t, const struct agent_tier_extent *e)
{
    struct nvme_tier *d = nvme_of(t);
    int rc;

    pthread_mutex_lock(&d->lock);
    /* Freeing a recorded extent would let the allocator hand out space
     * that the index still promises to another object after a restart. */
    if (agent_tlsf_lookup(d->alloc, e->off, e->len) == 0 &&
        idmap_find_off(&d->ids, e->off))
        rc = -EBUSY;
    else
        rc = agent_tlsf_free(d->alloc, e->off, e->len);
    pthread_mutex_unlock(&d->lock);
    return rc;
}

static bool
inside(const struct nvme_tier *d, const struct agent_tier_extent *e)
{
    return e->off % NVME_BLOCK == 0 && e->off <= d->capacity &&
           e->len <= d->capacity - e->off &&
           round_block(e->len) <= d->capacity - e->off;
}

static bool
aligned(const void *p, uint64_t pos)
{
    return (uintptr_t)p % NVME_BLOCK == 0 && pos % NVME_BLOCK == 0;
}

/* Bounce buffer big enough for [pos, pos + len) rounded out to blocks,
 * capped at AGENT_TIER_BOUNCE. */
static void *
get_bounce(uint64_t pos, size_t len, size_t *size)
{
    uint64_t need = round_block(pos % NVME_BLOCK + len);
    void *p;

    *size = need < AGENT_TIER_BOUNCE ? (size_t)need : AGENT_TIER_BOUNCE;
    if (posix_memalign(&p, NVME_BLOCK, *size))
        return NULL;
    return p;
}

static int
direct_read(struct nvme_tier *d, uint64_t pos, uint8_t *dst, size_t len)
{
    uint64_t start, end;
    size_t n, size;
    uint8_t *bounce;
    int rc;

    if (aligned(dst, pos) && len >= NVME_BLOCK) {
        n = len & ~(size_t)(NVME_BLOCK - 1);
        rc = pread_full(d->data_fd, dst, n, pos);
        if (rc < 0 || n == len)
            return rc;
        pos += n;
        dst += n;
        len -= n;
    }
    bounce = get_bounce(pos, len, &size);
    if (!bounce)
        return -ENOMEM;
    for (rc = 0; len && rc == 0; pos += n, dst += n, len -= n) {
        start = pos & ~(uint64_t)(NVME_BLOCK - 1);
        end = round_block(pos + len);
        if (end - start > size)
            end = start + size;
        n = (size_t)(end - pos) < len ? (size_t)(end - pos) : len;
        rc = pread_full(d->data_fd, bounce, (size_t)(end - start), start);
        if (rc == 0)
            memcpy(dst, bounce + (pos - start), n);
    }
    free(bounce);
    return rc;
}

/* Blocks only partly covered by the write are read first and merged. The
 * partial blocks belong to this extent alone (extents are whole blocks),
 * so the read-modify-write cannot clobber another object. */
static int
direct_write(struct nvme_tier *d, uint64_t pos, const uint8_t *src, size_t len)
{
    uint64_t start, end;
    size_t n, size;
    uint8_t *bounce;
    bool head, tail;
    int rc;

    if (aligned(src, pos) && len >= NVME_BLOCK) {
        n = len & ~(size_t)(NVME_BLOCK - 1);
        rc = pwrite_full(d->data_fd, src, n, pos);
        if (rc < 0 || n == len)
            return rc;
        pos += n;
        src += n;
        len -= n;
    }
    bounce = get_bounce(pos, len, &size);
    if (!bounce)
        return -ENOMEM;
    for (rc = 0; len && rc == 0; pos += n, src += n, len -= n) {
        start = pos & ~(uint64_t)(NVME_BLOCK - 1);
        end = round_block(pos + len);
        if (end - start > size)
            end = start + size;
        n = (size_t)(end - pos) < len ? (size_t)(end - pos) : len;
        head = pos != start;
        tail = pos + n < end;
        if (head)
            rc = pread_full(d->data_fd, bounce, NVME_BLOCK, start);
        if (rc == 0 && tail && !(head && end - NVME_BLOCK == start))
            rc = pread_full(d->data_fd, bounce + (end - NVME_BLOCK - start),
                            NVME_BLOCK, end - NVME_BLOCK);
        if (rc < 0)
            break;
        memcpy(bounce + (pos - start), src, n);
        rc = pwrite_full(d->data_fd, bounce, (size_t)(end - start), start);
    }
    free(bounce);
    return rc;
}

static int
nvme_read(struct agent_tier *t, const struct agent_tier_extent *e,
          uint64_t off, void *dst, size_t len)
{
    struct nvme_tier *d = nvme_of(t);
    int rc;

    if (!inside(d, e))
        return -EINVAL;
    if (d->direct)
        rc = direct_read(d, e->off + off, dst, len);
    else
        rc = pread_full(d->data_fd, dst, len, e->off + off);
    if (rc < 0 && rc != -ENOMEM)
        count_io_error(d);
    return rc;
}

static int
nvme_write(struct agent_tier *t, const struct agent_tier_extent *e,
           uint64_t off, const void *src, size_t len)
{
    struct nvme_tier *d = nvme_of(t);
    int rc;

    if (!inside(d, e))
        return -EINVAL;
    if (d->direct)
        rc = direct_write(d, e->off + off, src, len);
    else
        rc = pwrite_full(d->data_fd, src, len, e->off + off);
    if (rc < 0 && rc != -ENOMEM)
        count_io_error(d);
    return rc;
}

static void *
nvme_map(struct agent_tier *t, const struct agent_tier_extent *e)
{
    /* Mapping the data file would bypass O_DIRECT and the durability
     * rules; copies go through read and write instead. */
    (void)t;
    (void)e;
    return NULL;
}

static void
nvme_stats(struct agent_tier *t, struct agent_tier_stats *out)
{
    struct nvme_tier *d = nvme_of(t);

    pthread_mutex_lock(&d->lock);
    agent_tlsf_stats(d->alloc, out);
    out->alloc_fail = d->alloc_fail;
    out->recovered = d->recovered;
    out->index_bad = d->index_bad;
    pthread_mutex_unlock(&d->lock);
    out->io_errors = __atomic_load_n(&d->io_errors, __ATOMIC_RELAXED);
    out->direct_io = d->direct;
}

static int
nvme_check(struct agent_tier *t)
{
    struct nvme_tier *d = nvme_of(t);
    struct irec *r;
    size_t i;
    int rc;

    pthread_mutex_lock(&d->lock);
    rc = agent_tlsf_check(d->alloc);
    /* Every recorded extent must be allocated with its recorded length. */
    for (i = 0; rc == 0 && i < ((size_t)1 << d->ids.bits); i++)
        for (r = d->ids.by_id[i]; r && rc == 0; r = r->next_id)
            if (agent_tlsf_lookup(d->alloc, r->off, r->len))
                rc = -EUCLEAN;
    pthread_mutex_unlock(&d->lock);
    return rc;
}

const struct agent_tier_ops agent_tier_nvme_ops = {
    .name = "nvme",
    .size = sizeof(struct nvme_tier),
    .init = nvme_init,
    .fini = nvme_fini,
    .alloc = nvme_alloc,
    .free = nvme_free,
    .read = nvme_read,
    .write = nvme_write,
    .map = nvme_map,
    .stats = nvme_stats,
    .check = nvme_check,
};

/* --- Index API ----------------------------------------------------------
 */

static struct nvme_tier *
as_nvme(struct agent_tier *t)
{
    return t && t->ops == &agent_tier_nvme_ops ? nvme_of(t) : NULL;
}

int
agent_tier_nvme_flush(struct agent_tier *t)
{
    struct nvme_tier *d = as_nvme(t);

    if (!d)
        return -EINVAL;
    if (fdatasync(d->data_fd)) {
        count_io_error(d);
        return -errno;
    }
    return 0;
}

int
agent_tier_nvme_record(struct agent_tier *t, uint64_t object_id,
                       const struct agent_tier_extent *e, uint64_t checksum)
{
    struct nvme_tier *d = as_nvme(t);
    struct irec *r, *old, *other;
    struct drec dr;
    int rc;

    if (!d || !e)
        return -EINVAL;
    r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    /* The data must be stable before the index points at it; otherwise a
     * crash could leave a record whose checksum describes lost bytes. The
     * sync runs unlocked so that it does not stall alloc and free. */
    rc = agent_tier_nvme_flush(t);
    if (rc < 0)
        goto out;

    pthread_mutex_lock(&d->lock);
    old = idmap_find(&d->ids, object_id);
    other = idmap_find_off(&d->ids, e->off);
    if (agent_tlsf_lookup(d->alloc, e->off, e->len)) {
        rc = -EINVAL;
    } else if (other && other->id != object_id) {
        rc = -EEXIST; /* one record per extent, or recovery cannot tell */
    } else {
        dr = (struct drec){REC_PUT, d->next_seq, object_id,
                           e->off,  e->len,      checksum};
        rc = append_rec(d, &dr);
    }
    if (rc == 0) {
        d->next_seq++;
        if (old) {
            idmap_unlink(&d->ids, old);
            free(old);
        }
        *r = (struct irec){.id = object_id,
                           .seq = dr.seq,
                           .off = e->off,
                           .len = e->len,
                           .csum = checksum};
        idmap_insert(&d->ids, r);
        r = NULL;
        maybe_compact(d);
    }
    pthread_mutex_unlock(&d->lock);
out:
    free(r);
    return rc;
}

int
agent_tier_nvme_forget(struct agent_tier *t, uint64_t object_id)
{
    struct nvme_tier *d = as_nvme(t);
    struct irec *r;
    struct drec dr;
    int rc;

    if (!d)
        return -EINVAL;
    pthread_mutex_lock(&d->lock);
    r = idmap_find(&d->ids, object_id);
    if (!r) {
        rc = -ENOENT;
    } else {
        dr = (struct drec){REC_FORGET, d->next_seq, object_id, 0, 0, 0};
        rc = append_rec(d, &dr);
    }
    if (rc == 0) {
        d->next_seq++;
        idmap_unlink(&d->ids, r);
        free(r);
        maybe_compact(d);
    }
    pthread_mutex_unlock(&d->lock);
    return rc;
}

int
agent_tier_nvme_lookup(struct agent_tier *t, uint64_t object_id,
                       struct agent_tier_extent *e, uint64_t *checksum)
{
    struct nvme_tier *d = as_nvme(t);
    struct irec *r;
    int rc = -ENOENT;

    if (!d)
        return -EINVAL;
    pthread_mutex_lock(&d->lock);
    r = idmap_find(&d->ids, object_id);
    if (r) {
        if (e)
            *e = (struct agent_tier_extent){r->off, r->len};
        if (checksum)
            *checksum = r->csum;
        rc = 0;
    }
    pthread_mutex_unlock(&d->lock);
    return rc;
}

int
agent_tier_nvme_recover(struct agent_tier *t, agent_tier_recover_cb cb,
                        void *arg)
{
    struct nvme_tier *d = as_nvme(t);
    struct irec *v = NULL, *r;
    struct agent_tier_extent e;
    size_t n = 0, i;
    int rc = 0;

    if (!d || !cb)
        return -EINVAL;
    /* Report from a snapshot, so callbacks run unlocked and may change
     * the index. Offset order makes the walk deterministic. */
    pthread_mutex_lock(&d->lock);
    if (d->ids.count) {
        v = malloc((size_t)d->ids.count * sizeof(*v));
        if (!v)
            rc = -ENOMEM;
    }
    for (i = 0; v && i < ((size_t)1 << d->ids.bits); i++)
        for (r = d->ids.by_id[i]; r; r = r->next_id)
            v[n++] = *r;
    pthread_mutex_unlock(&d->lock);
    if (rc < 0)
        return rc;
    if (n)
        qsort(v, n, sizeof(*v), cmp_off_val);
    for (i = 0; i < n && rc >= 0; i++) {
        e = (struct agent_tier_extent){v[i].off, v[i].len};
        rc = cb(arg, v[i].id, &e, v[i].csum);
    }
    free(v);
    return rc < 0 ? rc : 0;
}
