/*
 * Tier backends: one ops table in front of every kind of memory an agent
 * owns (GPU SRAM/L2 hint, HBM, the host DRAM arena, NVMe files).
 *
 * Place in the data flow: this is the bottom of "execute". The executor
 * and the local intent API allocate extents here, move bytes between tiers
 * with agent_tier_copy(), and sample agent_tier_stats() for "observe".
 * Nothing in this module knows about objects, policy or the brain; a tier
 * only hands out extents and moves bytes into and out of them.
 *
 * A backend embeds struct agent_tier as its first member and recovers its
 * own struct with AGENT_CONTAINER_OF(), the way rdma-core providers embed
 * the verbs objects. The generic wrappers below check arguments that do
 * not depend on the backend, then dispatch through t->ops.
 *
 * Thread-safety: agent_tier_create() and agent_tier_destroy() must not race
 * with any other call on the same tier. alloc, free and stats are
 * serialised inside each backend by a mutex. read, write and map take no
 * lock and are safe from any thread as long as concurrent callers touch
 * distinct extents; two writers of one extent, or a write racing a free of
 * the same extent, are the caller's bug, as with memcpy.
 */
#ifndef MCOS_AGENT_TIER_H
#define MCOS_AGENT_TIER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Recovers the enclosing struct from a pointer to one of its members. */
#define AGENT_CONTAINER_OF(ptr, type, member)                                 \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* Tier kinds, numbered exactly like the wire's TierKind (proto/mcos.proto)
 * so that converting between the two is a cast, never a table. */
enum agent_tier_kind {
    AGENT_TIER_SRAM = 1,
    AGENT_TIER_HBM = 2,
    AGENT_TIER_DRAM = 3,
    AGENT_TIER_NVME = 4,
};

/* How the NVMe tier uses O_DIRECT. */
enum agent_tier_direct_io {
    AGENT_TIER_DIRECT_AUTO = 0,    /* probe; fall back to buffered I/O */
    AGENT_TIER_DIRECT_OFF = 1,     /* always buffered (page cache) I/O */
    AGENT_TIER_DIRECT_REQUIRE = 2, /* fail init if O_DIRECT is refused */
};

/* Where an object's bytes live inside one tier. Callers may read off and
 * len; they must hand back exactly what alloc returned. */
struct agent_tier_extent {
    uint64_t off; /* byte offset inside the tier (arena or data file) */
    uint64_t len; /* bytes requested at alloc time, before any rounding */
};

/* Called once per object found in a tier's on-disk index (NVMe). A
 * negative return stops the walk and is passed back to the caller. */
typedef int (*agent_tier_recover_cb)(void *arg, uint64_t object_id,
                                     const struct agent_tier_extent *e,
                                     uint64_t checksum);

/* Configuration for every kind; each backend reads the members it needs
 * and ignores the rest, so a zeroed struct plus a capacity is a valid
 * DRAM configuration. Strings are copied; the caller keeps ownership. */
struct agent_tier_config {
    uint64_t capacity;    /* bytes the tier may hand out; required */
    const char *shm_name; /* DRAM: "/mcos-<node>-dram", NULL for memfd */
    int64_t shm_gid;      /* DRAM, named: group given read/write (mode
                             0660), or -1 (or 0 in a zeroed struct, the
                             root group) for 0600 */
    bool sparse;          /* DRAM: do not reserve backing pages at init */
    uint64_t large_align; /* DRAM: objects this big get 4 KiB alignment;
                             0 means 64 KiB, UINT64_MAX disables */
    const char *dir;      /* NVMe: directory for the data and index files */
    enum agent_tier_direct_io direct_io; /* NVMe: O_DIRECT policy */
    agent_tier_recover_cb on_recover;    /* NVMe: told of each object found
                                            at init; may be NULL */
    void *recover_arg;                   /* NVMe: passed to on_recover */
    int gpu;                             /* HBM: CUDA device ordinal */
    const char *cuda_lib; /* HBM: runtime to dlopen; NULL or "" tries
                             the usual libcudart names */
    bool emulate;         /* HBM: host memory stands in for the device
                             (tests, demo); everything else is identical */
    uint64_t staging;     /* HBM: pinned staging bytes per direction;
                             0 means AGENT_TIER_HBM_STAGING */
};

/* A snapshot of a tier's counters; all sizes in bytes. */
struct agent_tier_stats {
    uint64_t capacity;       /* bytes the allocator manages */
    uint64_t used;           /* sum of allocated block sizes, after rounding
                                each request up to its granule (DRAM: 4 KiB
                                for large objects, else 64 B) */
    uint64_t requested;      /* sum of the lengths callers asked for */
    uint64_t objects;        /* live extents */
    uint64_t alloc_fail;     /* allocations refused with -ENOSPC */
    uint64_t largest_free;   /* biggest single allocation that would succeed */
    uint64_t free_blocks;    /* free fragments; 1 means no fragmentation */
    uint64_t io_errors;      /* failed device or file I/O calls */
    uint64_t recovered;      /* NVMe: objects found in the index at init */
    uint64_t index_bad;      /* NVMe: index records skipped as torn, corrupt
                                or conflicting */
    uint64_t l2_persist_max; /* HBM: the device's persisting L2 bytes;
                                0 when it has none, or when emulated */
    uint64_t l2_window;      /* HBM: bytes under the L2 persisting window
                                set by agent_tier_hbm_l2_hint(); 0: none */
    uint32_t granule;        /* allocation unit and minimum alignment */
    bool direct_io;          /* NVMe: data file opened with O_DIRECT */
    bool emulated;           /* HBM: host memory stands in for the device */
};

struct agent_tier;

/* One backend. Generic code never looks past this table. */
struct agent_tier_ops {
    /* Short backend name for logs and metrics ("dram", "nvme"). */
    const char *name;
    /* Size of the backend's struct, which embeds struct agent_tier first. */
    size_t size;
    /* Sets the tier up in zeroed memory; on failure undoes all it did. */
    int (*init)(struct agent_tier *t, const struct agent_tier_config *cfg);
    /* Releases everything init acquired; the memory itself is freed by
     * the caller. */
    void (*fini)(struct agent_tier *t);
    /* Carves len bytes; -EINVAL for len 0, -ENOSPC when no block fits. */
    int (*alloc)(struct agent_tier *t, uint64_t len,
                 struct agent_tier_extent *out);
    /* Returns an extent; -ENOENT if not allocated, -EINVAL if mismatched. */
    int (*free)(struct agent_tier *t, const struct agent_tier_extent *e);
    /* Copies len bytes at off inside e out to dst. Range already checked. */
    int (*read)(struct agent_tier *t, const struct agent_tier_extent *e,
                uint64_t off, void *dst, size_t len);
    /* Copies len bytes from src to off inside e. Range already checked. */
    int (*write)(struct agent_tier *t, const struct agent_tier_extent *e,
                 uint64_t off, const void *src, size_t len);
    /* Direct pointer to e's first byte, or NULL if not host-mappable. */
    void *(*map)(struct agent_tier *t, const struct agent_tier_extent *e);
    /* Fills every member of out that the backend tracks. */
    void (*stats)(struct agent_tier *t, struct agent_tier_stats *out);
    /* Verifies internal invariants; -EUCLEAN when broken. May be NULL. */
    int (*check)(struct agent_tier *t);
};

/* The base object every backend embeds first. Callers treat it as opaque
 * and go through the functions below; only backends touch the members. */
struct agent_tier {
    const struct agent_tier_ops *ops; /* the backend implementing it */
    enum agent_tier_kind kind;        /* which wire TierKind it serves */
};

/* The backends this module ships. */
extern const struct agent_tier_ops agent_tier_dram_ops;
extern const struct agent_tier_ops agent_tier_nvme_ops;
/* HBM through the CUDA runtime, and the same backend over host memory
 * ("hbm (emulated)"); agent_tier_create() picks by cfg->emulate. */
extern const struct agent_tier_ops agent_tier_hbm_ops;
extern const struct agent_tier_ops agent_tier_hbm_emulated_ops;

/* --- Generic API --------------------------------------------------------
 */

/* Creates a tier of a built-in kind. -EINVAL for an unknown kind or bad
 * configuration. SRAM gives -EOPNOTSUPP: GPU L2 is not a store, only a
 * residency hint on an HBM tier (agent_tier_hbm_l2_hint). HBM gives
 * -EOPNOTSUPP when no CUDA runtime loads, -ENOSYS when it lacks a needed
 * function, -ENODEV when cfg->gpu is not a usable device, and -ENOMEM
 * when the device cannot hold cfg->capacity; cfg->emulate needs none of
 * that. */
int agent_tier_create(enum agent_tier_kind kind,
                      const struct agent_tier_config *cfg,
                      struct agent_tier **out);
/* Creates a tier from any backend, e.g. one loaded at run time. */
int agent_tier_create_ops(const struct agent_tier_ops *ops,
                          enum agent_tier_kind kind,
                          const struct agent_tier_config *cfg,
                          struct agent_tier **out);
/* Finalises and frees a tier; NULL is a no-op. */
void agent_tier_destroy(struct agent_tier *t);

enum agent_tier_kind agent_tier_kind_of(const struct agent_tier *t);
const char *agent_tier_name(const struct agent_tier *t);

int agent_tier_alloc(struct agent_tier *t, uint64_t len,
                     struct agent_tier_extent *out);
int agent_tier_free(struct agent_tier *t, const struct agent_tier_extent *e);
/* Reads len bytes starting off bytes into e; -ERANGE past e's end. */
int agent_tier_read(struct agent_tier *t, const struct agent_tier_extent *e,
                    uint64_t off, void *dst, size_t len);
/* Writes len bytes starting off bytes into e; -ERANGE past e's end. */
int agent_tier_write(struct agent_tier *t, const struct agent_tier_extent *e,
                     uint64_t off, const void *src, size_t len);
/* Pointer to e's bytes, or NULL when the tier is not host-mappable. */
void *agent_tier_map(struct agent_tier *t, const struct agent_tier_extent *e);
void agent_tier_stats(struct agent_tier *t, struct agent_tier_stats *out);
/* True when host memory stands in for the tier's device (an emulated HBM
 * tier); every report that shows the tier must say so. */
bool agent_tier_is_emulated(const struct agent_tier *t);
/* -EOPNOTSUPP when the backend has no checker. */
int agent_tier_check(struct agent_tier *t);

/* Copies the first len bytes of src_ext into the first len bytes of
 * dst_ext. Uses the mapped side directly when either side is mappable,
 * otherwise a bounce buffer of at most AGENT_TIER_BOUNCE bytes. -ERANGE if
 * len exceeds either extent. Tiers may be the same object. */
int agent_tier_copy(struct agent_tier *src, const struct agent_tier_extent *se,
                    struct agent_tier *dst, const struct agent_tier_extent *de,
                    uint64_t len);
/* XXH3-64 of the first len bytes of e, read in bounded chunks; this is the
 * checksum recorded in the NVMe index and used to verify moves. */
int agent_tier_checksum(struct agent_tier *t,
                        const struct agent_tier_extent *e, uint64_t len,
                        uint64_t *out);

/* Bounce buffer size for copies and unaligned O_DIRECT I/O. */
#define AGENT_TIER_BOUNCE (1u << 20)

/* "sram", "hbm", "dram", "nvme"; "unknown" for anything else. */
const char *agent_tier_kind_name(enum agent_tier_kind kind);
/* Parses a kind name (case-insensitive); -EINVAL if unknown. */
int agent_tier_kind_parse(const char *name, enum agent_tier_kind *out);

/* --- DRAM tier extras ---------------------------------------------------
 */

/* The arena as one region, for registering it once with a NIC or GPU
 * (ibv_reg_mr, cudaHostRegister). -EINVAL if t is not a DRAM tier. */
int agent_tier_dram_region(struct agent_tier *t, void **base, uint64_t *len);
/* The POSIX shm name clients open, or NULL for a memfd arena. */
const char *agent_tier_dram_shm_name(struct agent_tier *t);
/* The arena's fd, to pass to clients over a unix socket; -EINVAL if t is
 * not a DRAM tier. The tier keeps ownership. */
int agent_tier_dram_fd(struct agent_tier *t);

/* --- NVMe tier extras ---------------------------------------------------
 */

/* Makes object_id -> (e, checksum) durable in the index. Data written to
 * the tier so far is flushed first, so once this returns the object
 * survives a crash. A second record for the same id replaces the first.
 * -EINVAL if e is not a live extent of t. */
int agent_tier_nvme_record(struct agent_tier *t, uint64_t object_id,
                           const struct agent_tier_extent *e,
                           uint64_t checksum);
/* Durably drops object_id from the index; the extent stays allocated
 * until agent_tier_free(). -ENOENT if the id is not recorded. */
int agent_tier_nvme_forget(struct agent_tier *t, uint64_t object_id);
/* Looks one object up in the index; -ENOENT if absent. */
int agent_tier_nvme_lookup(struct agent_tier *t, uint64_t object_id,
                           struct agent_tier_extent *e, uint64_t *checksum);
/* Calls cb for every object in the index. At init this walk runs once with
 * cfg->on_recover; afterwards it reports what is recorded now. The index
 * lock is not held during callbacks, so cb may call record and forget. */
int agent_tier_nvme_recover(struct agent_tier *t, agent_tier_recover_cb cb,
                            void *arg);
/* Flushes written data to stable storage (fdatasync). */
int agent_tier_nvme_flush(struct agent_tier *t);

/* --- HBM tier extras ----------------------------------------------------
 */

/* Default pinned staging per direction: big enough that a PCIe copy of
 * one half (2 MiB) runs at link speed, small enough to pin per tier. */
#define AGENT_TIER_HBM_STAGING (4u << 20)

/* SRAM/L2 residency hint: asks the GPU to keep the first `bytes` of e in
 * its L2 cache, by setting aside persisting L2 (cudaDeviceSetLimit) and
 * putting a CUDA access-policy window with the given hit_ratio (0..1) on
 * the tier's streams. bytes is clamped to the device's largest window;
 * bytes = 0 removes the window and the set-aside. -ENOTSUP when the
 * device has no persisting L2 (before Ampere, MIG) or the tier is
 * emulated: residency is reported unavailable, never faked. -EINVAL for
 * a non-HBM tier, an extent that is not allocated or a bad ratio, -ERANGE
 * when bytes exceeds e's length. A CUDA window only governs work issued
 * on the stream that carries it; see docs/tiers.md for what that means
 * for engines in other processes. */
int agent_tier_hbm_l2_hint(struct agent_tier *t,
                           const struct agent_tier_extent *e, uint64_t bytes,
                           float hit_ratio);

/* The HBM region as one piece, for registering it once with a NIC: base
 * is a device address (*device true) or, emulated, the host mapping that
 * stands in for it. -EINVAL if t is not an HBM tier. */
int agent_tier_hbm_region(struct agent_tier *t, void **base, uint64_t *len,
                          bool *device);
/* Exports the region as a dma-buf through the CUDA driver
 * (cuMemGetHandleForAddressRange), for ibv_reg_dmabuf_mr: *fd is the
 * caller's to close and covers [base, base + *len), the region rounded
 * up to whole host pages (the tier allocates it so; the rest of the last
 * page holds no extent), so every extent is inside. -EINVAL if t is not an HBM
 * tier, -ENOTSUP for the emulated tier (host memory needs none), -EOPNOTSUPP
 * when no driver with the call loads or the device refuses, another -errno for
 * a CUDA failure; why says which. */
int agent_tier_hbm_dmabuf(struct agent_tier *t, int *fd, uint64_t *len,
                          char *why, size_t whylen);

/* --- For backends only --------------------------------------------------
 *
 * A TLSF (two-level segregated fit) allocator over an external range
 * [0, capacity): it hands out offsets and keeps all of its metadata in
 * ordinary process memory, never inside the range it manages. Not
 * thread-safe; the owning backend holds its lock around every call.
 */
struct agent_tlsf;

/* granule: power of two; every block is a multiple of it and aligned to
 * it. capacity is rounded down to the granule. */
int agent_tlsf_create(uint64_t capacity, uint32_t granule,
                      struct agent_tlsf **out);
void agent_tlsf_destroy(struct agent_tlsf *a);
/* align: 0 or a power of two; values at or below the granule are free.
 * An aligned block's size is rounded up to align as well. -ENOSPC when no
 * free block fits, -ENOMEM when metadata cannot grow. */
int agent_tlsf_alloc(struct agent_tlsf *a, uint64_t len, uint64_t align,
                     uint64_t *off);
/* -ENOENT if no block starts at off, -EINVAL if len differs from the
 * length it was allocated with. */
int agent_tlsf_free(struct agent_tlsf *a, uint64_t off, uint64_t len);
/* The extent calls every backend makes, under the backend's own lock.
 * alloc tries align first when it is nonzero and falls back to the granule
 * on -ENOSPC: alignment is a preference, never a reason to fail. A final
 * -ENOSPC is counted in *fail. */
int agent_tlsf_alloc_extent(struct agent_tlsf *a, pthread_mutex_t *lock,
                            uint64_t len, uint64_t align, uint64_t *fail,
                            struct agent_tier_extent *out);
int agent_tlsf_free_extent(struct agent_tlsf *a, pthread_mutex_t *lock,
                           const struct agent_tier_extent *e);
/* The lock-free paths cannot afford an allocator lookup, but they never
 * touch bytes outside [0, capacity), whatever extent they are handed. */
static inline bool
agent_tier_extent_inside(uint64_t capacity, const struct agent_tier_extent *e)
{
    return e->off <= capacity && e->len <= capacity - e->off;
}
/* Marks [off, off + len) allocated, for rebuilding state from an index.
 * -EEXIST if any of it is already allocated, -EINVAL if misaligned or out
 * of range. Ascending offsets make a rebuild linear overall. */
int agent_tlsf_reserve(struct agent_tlsf *a, uint64_t off, uint64_t len);
/* 0 if a block allocated with exactly len starts at off, else -EINVAL. */
int agent_tlsf_lookup(const struct agent_tlsf *a, uint64_t off, uint64_t len);
/* Fills capacity, used, requested, objects, largest_free, free_blocks and
 * granule; leaves the other members alone. */
void agent_tlsf_stats(const struct agent_tlsf *a,
                      struct agent_tier_stats *out);
/* Walks every block and bitmap; -EUCLEAN at the first broken invariant. */
int agent_tlsf_check(const struct agent_tlsf *a);

/* Logs one line to stderr as "mcos-agent tier-<name>: ...". */
void agent_tier_log(const char *name, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif /* MCOS_AGENT_TIER_H */
