/*
 * DRAM tier: one arena of host memory in a shared-memory object, carved by
 * the TLSF allocator in tier.c.
 *
 * The arena is a POSIX shm object when a name is configured (local
 * clients open it by name and address objects by extent offset), or an
 * anonymous memfd otherwise (clients receive the fd over a unix socket).
 * Either way the whole arena is one mapping, so an RDMA or CUDA module can
 * register it once and every extent is already registered memory.
 *
 * The allocator's metadata stays in this process; the arena holds only
 * object bytes, so a client that scribbles over the mapping can damage
 * objects but never the allocator. Contents do not survive the agent: a
 * stale arena left by a dead agent is unlinked at the next start.
 */
#include "tier.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Small objects are aligned to a cache line: no false sharing between
 * objects, and enough for every CPU vector load. */
#define DRAM_GRANULE 64u
/* Big objects start on a page so DMA engines and O_DIRECT writes to the
 * NVMe tier can use them in place. */
#define DRAM_PAGE_ALIGN     4096u
#define DRAM_DEFAULT_LARGE  (64u * 1024u)
#define DRAM_STALE_ATTEMPTS 3

/* The DRAM backend's state; base comes first for AGENT_CONTAINER_OF. */
struct dram_tier {
    struct agent_tier base;   /* the generic part */
    pthread_mutex_t lock;     /* guards the allocator and alloc_fail */
    struct agent_tlsf *alloc; /* block metadata, outside the arena */
    char *shm_name;           /* owned copy of the shm name, or NULL */
    int fd;                   /* shm or memfd backing the arena */
    uint8_t *arena;           /* start of the shared mapping */
    uint64_t map_len;         /* bytes mapped: capacity rounded to a page */
    uint64_t capacity;        /* bytes the allocator hands out */
    uint64_t large_align;     /* requests this big get page alignment */
    uint64_t alloc_fail;      /* allocations refused with -ENOSPC */
};

static struct dram_tier *
dram_of(struct agent_tier *t)
{
    return AGENT_CONTAINER_OF(t, struct dram_tier, base);
}

/* POSIX leaves names with more than a leading slash unspecified, and
 * Linux maps them to files under /dev/shm, so be strict. */
static int
valid_shm_name(const char *name)
{
    size_t n = strlen(name);

    return n >= 2 && n < NAME_MAX && name[0] == '/' && !strchr(name + 1, '/');
}

/* True when name still refers to the object open on fd; an agent racing
 * us may have unlinked it between our create and our lock. */
static bool
same_object(const char *name, int fd)
{
    struct stat a, b;
    int fd2;
    bool same;

    fd2 = shm_open(name, O_RDONLY | O_CLOEXEC, 0);
    if (fd2 < 0)
        return false;
    same = !fstat(fd, &a) && !fstat(fd2, &b) && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
    close(fd2);
    return same;
}

/* Creates the named arena and holds an exclusive flock on it for the
 * tier's lifetime; the lock is how the next agent tells a live arena
 * (-EBUSY) from one left by an agent that died (removed, then recreated).
 */
static int
open_named(const char *name)
{
    int fd, old, attempt;

    for (attempt = 0; attempt < DRAM_STALE_ATTEMPTS; attempt++) {
        fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0) {
            if (!flock(fd, LOCK_EX | LOCK_NB) && same_object(name, fd))
                return fd;
            close(fd);
            continue;
        }
        if (errno != EEXIST)
            return -errno;
        old = shm_open(name, O_RDWR | O_CLOEXEC, 0);
        if (old < 0) {
            if (errno == ENOENT)
                continue;
            return -errno;
        }
        if (flock(old, LOCK_EX | LOCK_NB)) {
            int err = errno;

            close(old);
            if (err == EWOULDBLOCK) {
                agent_tier_log("dram", "arena %s is held by a live process",
                               name);
                return -EBUSY;
            }
            return -err;
        }
        agent_tier_log("dram", "removing stale arena %s", name);
        shm_unlink(name);
        close(old);
    }
    return -EBUSY;
}

static int
dram_init(struct agent_tier *t, const struct agent_tier_config *cfg)
{
    struct dram_tier *d = dram_of(t);
    long page = sysconf(_SC_PAGESIZE);
    int rc;

    d->fd = -1;
    if (cfg->capacity < DRAM_GRANULE || page <= 0) {
        agent_tier_log("dram", "capacity %llu is below %u bytes",
                       (unsigned long long)cfg->capacity, DRAM_GRANULE);
        return -EINVAL;
    }
    if (cfg->capacity > (1ull << 62)) {
        agent_tier_log("dram", "capacity %llu is above 2^62 bytes",
                       (unsigned long long)cfg->capacity);
        return -EINVAL;
    }
    d->capacity = cfg->capacity & ~(uint64_t)(DRAM_GRANULE - 1);
    d->map_len = (cfg->capacity + (uint64_t)page - 1) & ~((uint64_t)page - 1);
    d->large_align = cfg->large_align ? cfg->large_align : DRAM_DEFAULT_LARGE;

    if (cfg->shm_name) {
        if (!valid_shm_name(cfg->shm_name)) {
            agent_tier_log("dram",
                           "shm name \"%s\" must be \"/name\" with no other "
                           "slash",
                           cfg->shm_name);
            return -EINVAL;
        }
        d->shm_name = strdup(cfg->shm_name);
        if (!d->shm_name) {
            rc = -ENOMEM;
            goto fail_name;
        }
        d->fd = open_named(d->shm_name);
        if (d->fd >= 0 && cfg->shm_gid > 0 &&
            (fchown(d->fd, (uid_t)-1, (gid_t)cfg->shm_gid) ||
             fchmod(d->fd, 0660))) {
            rc = -errno;
            agent_tier_log("dram", "cannot give group %lld the arena %s: %s",
                           (long long)cfg->shm_gid, d->shm_name,
                           strerror(-rc));
            shm_unlink(d->shm_name);
            close(d->fd);
            d->fd = -1;
            goto fail_open;
        }
    } else {
        d->fd = memfd_create("mcos-dram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (d->fd < 0)
            d->fd = -errno;
    }
    if (d->fd < 0) {
        rc = d->fd;
        d->fd = -1;
        goto fail_open;
    }

    if (ftruncate(d->fd, (off_t)d->map_len)) {
        rc = -errno;
        goto fail_size;
    }
    /* Reserving the pages now turns "tmpfs is full" into a clear error at
     * start instead of a SIGBUS on first touch in the hot path. */
    if (!cfg->sparse && fallocate(d->fd, 0, 0, (off_t)d->map_len)) {
        rc = -errno;
        if (rc != -EOPNOTSUPP) {
            agent_tier_log("dram", "cannot reserve %llu bytes: %s",
                           (unsigned long long)d->map_len, strerror(-rc));
            goto fail_size;
        }
    }
    /* A client handed the memfd must not be able to shrink it under us
     * (which would SIGBUS the agent). Named shm cannot be sealed; see
     * docs/tiers.md. */
    if (!d->shm_name &&
        fcntl(d->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) {
        rc = -errno;
        goto fail_size;
    }

    d->arena = mmap(NULL, (size_t)d->map_len, PROT_READ | PROT_WRITE,
                    MAP_SHARED, d->fd, 0);
    if (d->arena == MAP_FAILED) {
        rc = -errno;
        d->arena = NULL;
        goto fail_map;
    }
    /* Object bytes make core dumps huge and say nothing about a crash. */
    (void)madvise(d->arena, (size_t)d->map_len, MADV_DONTDUMP);

    rc = agent_tlsf_create(d->capacity, DRAM_GRANULE, &d->alloc);
    if (rc < 0)
        goto fail_alloc;
    rc = -pthread_mutex_init(&d->lock, NULL);
    if (rc < 0)
        goto fail_lock;
    return 0;

fail_lock:
    agent_tlsf_destroy(d->alloc);
fail_alloc:
    munmap(d->arena, (size_t)d->map_len);
fail_map:
fail_size:
    if (d->shm_name)
        shm_unlink(d->shm_name);
    close(d->fd);
fail_open:
    free(d->shm_name);
fail_name:
    return rc;
}

static void
dram_fini(struct agent_tier *t)
{
    struct dram_tier *d = dram_of(t);

    pthread_mutex_destroy(&d->lock);
    agent_tlsf_destroy(d->alloc);
    munmap(d->arena, (size_t)d->map_len);
    /* Clients that still map the arena keep their pages; new clients can
     * no longer find it. Closing the fd drops the liveness lock. */
    if (d->shm_name)
        shm_unlink(d->shm_name);
    close(d->fd);
    free(d->shm_name);
}

static int
dram_alloc(struct agent_tier *t, uint64_t len, struct agent_tier_extent *out)
{
    struct dram_tier *d = dram_of(t);

    /* Requests of large_align bytes or more ask for page alignment;
     * smaller ones pack at the granule. */
    return agent_tlsf_alloc_extent(d->alloc, &d->lock, len,
                                   len >= d->large_align ? DRAM_PAGE_ALIGN : 0,
                                   &d->alloc_fail, out);
}

static int
dram_free(struct agent_tier *t, const struct agent_tier_extent *e)
{
    struct dram_tier *d = dram_of(t);

    return agent_tlsf_free_extent(d->alloc, &d->lock, e);
}

static int
dram_read(struct agent_tier *t, const struct agent_tier_extent *e,
          uint64_t off, void *dst, size_t len)
{
    struct dram_tier *d = dram_of(t);

    if (!agent_tier_extent_inside(d->capacity, e))
        return -EINVAL;
    memcpy(dst, d->arena + e->off + off, len);
    return 0;
}

static int
dram_write(struct agent_tier *t, const struct agent_tier_extent *e,
           uint64_t off, const void *src, size_t len)
{
    struct dram_tier *d = dram_of(t);

    if (!agent_tier_extent_inside(d->capacity, e))
        return -EINVAL;
    memcpy(d->arena + e->off + off, src, len);
    return 0;
}

static void *
dram_map(struct agent_tier *t, const struct agent_tier_extent *e)
{
    struct dram_tier *d = dram_of(t);

    if (!agent_tier_extent_inside(d->capacity, e))
        return NULL;
    return d->arena + e->off;
}

static void
dram_stats(struct agent_tier *t, struct agent_tier_stats *out)
{
    struct dram_tier *d = dram_of(t);

    pthread_mutex_lock(&d->lock);
    agent_tlsf_stats(d->alloc, out);
    out->alloc_fail = d->alloc_fail;
    pthread_mutex_unlock(&d->lock);
}

static int
dram_check(struct agent_tier *t)
{
    struct dram_tier *d = dram_of(t);
    int rc;

    pthread_mutex_lock(&d->lock);
    rc = agent_tlsf_check(d->alloc);
    pthread_mutex_unlock(&d->lock);
    return rc;
}

const struct agent_tier_ops agent_tier_dram_ops = {
    .name = "dram",
    .size = sizeof(struct dram_tier),
    .init = dram_init,
    .fini = dram_fini,
    .alloc = dram_alloc,
    .free = dram_free,
    .read = dram_read,
    .write = dram_write,
    .map = dram_map,
    .stats = dram_stats,
    .check = dram_check,
};

int
agent_tier_dram_region(struct agent_tier *t, void **base, uint64_t *len)
{
    struct dram_tier *d;

    if (!t || t->ops != &agent_tier_dram_ops || !base || !len)
        return -EINVAL;
    d = dram_of(t);
    *base = d->arena;
    *len = d->map_len;
    return 0;
}

const char *
agent_tier_dram_shm_name(struct agent_tier *t)
{
    if (!t || t->ops != &agent_tier_dram_ops)
        return NULL;
    return dram_of(t)->shm_name;
}

int
agent_tier_dram_fd(struct agent_tier *t)
{
    if (!t || t->ops != &agent_tier_dram_ops)
        return -EINVAL;
    return dram_of(t)->fd;
}
