/*
 * Unit tests for the NVMe tier (agent/tier_nvme.c): extents in a data
 * file, O_DIRECT with its buffered fallback, the on-disk index and what
 * survives a restart, and corruption of that index.
 *
 * Each I/O test runs twice: in a /dev/shm directory (tmpfs) and in a
 * /var/tmp directory (a disk filesystem, so the O_DIRECT and bounce-buffer
 * paths run). tmpfs refused O_DIRECT before Linux 6.6 and accepts it since,
 * so the buffered fallback is driven explicitly: this test is linked with
 * -Wl,--wrap=openat,--wrap=pread (agent/tier.cmake) and the wrappers below
 * make O_DIRECT fail the way such filesystems do, at open or at I/O time.
 */
#include "tier.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/magic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <xxhash.h>

/* --- Simulated filesystems without O_DIRECT -----------------------------
 */

enum refuse {
    REFUSE_NONE,    /* pass everything through */
    REFUSE_AT_OPEN, /* open(O_DIRECT) fails with EINVAL (old tmpfs) */
    REFUSE_AT_IO,   /* open succeeds, I/O on the fd fails with EINVAL */
};

static enum refuse refuse_direct;

int __real_openat(int dirfd, const char *path, int flags, ...);
int __wrap_openat(int dirfd, const char *path, int flags, ...);
ssize_t __real_pread(int fd, void *buf, size_t len, off_t off);
ssize_t __wrap_pread(int fd, void *buf, size_t len, off_t off);

int
__wrap_openat(int dirfd, const char *path, int flags, ...)
{
    mode_t mode = 0;
    va_list ap;

    if (flags & (O_CREAT | O_TMPFILE)) {
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    if (refuse_direct == REFUSE_AT_OPEN && (flags & O_DIRECT)) {
        errno = EINVAL;
        return -1;
    }
    return __real_openat(dirfd, path, flags, mode);
}

ssize_t
__wrap_pread(int fd, void *buf, size_t len, off_t off)
{
    int fl = fcntl(fd, F_GETFL);

    if (refuse_direct == REFUSE_AT_IO && fl >= 0 && (fl & O_DIRECT)) {
        errno = EINVAL;
        return -1;
    }
    return __real_pread(fd, buf, len, off);
}

/* --- Helpers ------------------------------------------------------------
 */

static const char *const bases[] = {"/dev/shm", "/var/tmp"};
#define NBASES (int)(sizeof(bases) / sizeof(bases[0]))

static uint64_t
xorshift(uint64_t *s)
{
    uint64_t x = *s;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void
fill(void *buf, size_t len, uint64_t seed)
{
    uint8_t *p = buf;
    uint64_t s = seed | 1, v = 0;
    size_t i;

    for (i = 0; i < len; i++) {
        if (i % 8 == 0)
            v = xorshift(&s);
        p[i] = (uint8_t)(v >> (8 * (i % 8)));
    }
}

static bool
is_tmpfs(const char *path)
{
    struct statfs fs;

    return statfs(path, &fs) == 0 && fs.f_type == TMPFS_MAGIC;
}

static bool
is_disk_fs(const char *path)
{
    struct statfs fs;

    return statfs(path, &fs) == 0 &&
           (fs.f_type == EXT4_SUPER_MAGIC || fs.f_type == XFS_SUPER_MAGIC ||
            fs.f_type == BTRFS_SUPER_MAGIC);
}

/* One root per base and run, made by the unchecked fixture in the parent
 * process, so that a test that fails in its forked child still has its
 * directories removed. */
static char roots[2][128];

static void
make_roots(void)
{
    int i;

    for (i = 0; i < NBASES; i++) {
        snprintf(roots[i], sizeof(roots[i]), "%s/mcos-tier-test-XXXXXX",
                 bases[i]);
        if (!mkdtemp(roots[i])) {
            perror(roots[i]);
            exit(EXIT_FAILURE);
        }
    }
}

static int
remove_entry(const char *path, const struct stat *st, int flag,
             struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void
remove_roots(void)
{
    int i;

    for (i = 0; i < NBASES; i++)
        if (roots[i][0])
            nftw(roots[i], remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static char *
make_dir(const char *base)
{
    char *dir;
    int i;

    for (i = 0; i < NBASES && strcmp(bases[i], base); i++)
        ;
    ck_assert_int_lt(i, NBASES);
    ck_assert_int_gt(asprintf(&dir, "%s/nvme-XXXXXX", roots[i]), 0);
    ck_assert_ptr_nonnull(mkdtemp(dir));
    return dir;
}

static void
remove_dir(char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[512];

    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        ck_assert_int_eq(unlink(path), 0);
    }
    closedir(d);
    ck_assert_int_eq(rmdir(dir), 0);
    free(dir);
}

static char *
file_in(const char *dir, const char *name)
{
    static char path[512];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return path;
}

static uint64_t
file_size(const char *dir, const char *name)
{
    struct stat st;

    ck_assert_int_eq(stat(file_in(dir, name), &st), 0);
    return (uint64_t)st.st_size;
}

/* Recovered objects, as reported through the callback. */
struct seen {
    uint64_t id;                /* object id */
    struct agent_tier_extent e; /* its extent */
    uint64_t sum;               /* its recorded checksum */
};

struct collect {
    struct seen v[256]; /* objects in callback order */
    int n;              /* how many */
};

static int
collect_cb(void *arg, uint64_t id, const struct agent_tier_extent *e,
           uint64_t sum)
{
    struct collect *c = arg;

    if (c->n == 256)
        return -ENOSPC;
    c->v[c->n++] = (struct seen){id, *e, sum};
    return 0;
}

static const struct seen *
find_seen(const struct collect *c, uint64_t id)
{
    int i;

    for (i = 0; i < c->n; i++)
        if (c->v[i].id == id)
            return &c->v[i];
    return NULL;
}

static struct agent_tier *
open_nvme(const char *dir, uint64_t cap, struct collect *c)
{
    struct agent_tier_config cfg = {
        .capacity = cap,
        .dir = dir,
        .on_recover = c ? collect_cb : NULL,
        .recover_arg = c,
    };
    struct agent_tier *t = NULL;

    if (c)
        c->n = 0;
    ck_assert_int_eq(agent_tier_create(AGENT_TIER_NVME, &cfg, &t), 0);
    return t;
}

/* Allocates, fills with a seeded pattern through an unaligned buffer, and
 * returns the checksum of what was written. */
static uint64_t
store(struct agent_tier *t, uint64_t len, uint64_t seed,
      struct agent_tier_extent *e)
{
    uint8_t *buf = malloc(len + 1);
    uint64_t sum;

    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(agent_tier_alloc(t, len, e), 0);
    fill(buf + 1, len, seed);
    ck_assert_int_eq(agent_tier_write(t, e, 0, buf + 1, len), 0);
    sum = XXH3_64bits(buf + 1, len);
    free(buf);
    return sum;
}

static uint64_t
sum_of(struct agent_tier *t, const struct agent_tier_extent *e)
{
    uint64_t sum;

    ck_assert_int_eq(agent_tier_checksum(t, e, e->len, &sum), 0);
    return sum;
}

/* --- Round trips --------------------------------------------------------
 */

static const uint64_t rt_sizes[] = {
    1, 100, 4095, 4096, 4097, 8192, 65539, (1 << 20) + 5, 3 << 20,
};

START_TEST(test_round_trip)
{
    char *dir = make_dir(bases[_i]);
    struct agent_tier *t = open_nvme(dir, 16 << 20, NULL);
    struct agent_tier_extent e[9];
    struct agent_tier_stats st;
    uint8_t *want, *got, *aligned_got;
    size_t k;

    agent_tier_stats(t, &st);
    /* tmpfs takes O_DIRECT from Linux 6.6 on; disk filesystems always. */
    if (is_disk_fs(bases[_i]))
        ck_assert(st.direct_io);
    printf("nvme round trip in %s (%s): %s I/O\n", bases[_i],
           is_tmpfs(bases[_i]) ? "tmpfs" : "not tmpfs",
           st.direct_io ? "O_DIRECT" : "buffered");
    ck_assert_uint_eq(st.granule, 4096);

    for (k = 0; k < 9; k++) {
        uint64_t len = rt_sizes[k];

        want = malloc(len);
        got = malloc(len + 1);
        ck_assert_int_eq(posix_memalign((void **)&aligned_got, 4096, len), 0);
        fill(want, len, len);
        ck_assert_uint_eq(store(t, len, len, &e[k]), XXH3_64bits(want, len));
        ck_assert_uint_eq(e[k].off % 4096, 0);
        ck_assert_ptr_null(agent_tier_map(t, &e[k]));
        /* Unaligned destination: the bounce path. */
        ck_assert_int_eq(agent_tier_read(t, &e[k], 0, got + 1, len), 0);
        ck_assert_mem_eq(got + 1, want, len);
        /* Aligned destination: straight into the caller's buffer. */
        ck_assert_int_eq(agent_tier_read(t, &e[k], 0, aligned_got, len), 0);
        ck_assert_mem_eq(aligned_got, want, len);
        free(want);
        free(got);
        free(aligned_got);
    }
    for (k = 0; k < 9; k++) {
        want = malloc(e[k].len);
        fill(want, e[k].len, e[k].len);
        ck_assert_uint_eq(sum_of(t, &e[k]), XXH3_64bits(want, e[k].len));
        free(want);
    }
    agent_tier_stats(t, &st);
    ck_assert_uint_eq(st.objects, 9);
    ck_assert_uint_eq(st.io_errors, 0);
    for (k = 0; k < 9; k++)
        ck_assert_int_eq(agent_tier_free(t, &e[k]), 0);
    agent_tier_stats(t, &st);
    ck_assert_uint_eq(st.used, 0);
    ck_assert_uint_eq(st.free_blocks, 1);
    ck_assert_int_eq(agent_tier_check(t), 0);
    agent_tier_destroy(t);
    remove_dir(dir);
}
END_TEST

/* Random partial reads and writes at odd offsets and lengths, from odd
 * buffer addresses, against a mirror in memory: exercises the aligned
 * fast path, the bounce buffer and read-modify-write of edge blocks. */
START_TEST(test_partial_io)
{
    char *dir = make_dir(bases[_i]);
    struct agent_tier *t = open_nvme(dir, 1 << 20, NULL);
    struct agent_tier_extent e, before, after;
    uint64_t len = 3 * 4096 + 100, rng = 42, off, n;
    uint8_t *mirror = calloc(1, len), *buf = malloc(len + 4096 + 1);
    uint8_t *abuf;
    int i;

    ck_assert_int_eq(posix_memalign((void **)&abuf, 4096, len + 4096), 0);
    /* Neighbours on both sides must never be touched. */
    ck_assert_uint_ne(store(t, 5000, 1, &before), 0);
    ck_assert_int_eq(agent_tier_alloc(t, len, &e), 0);
    ck_assert_uint_ne(store(t, 5000, 2, &after), 0);
    ck_assert_int_eq(agent_tier_write(t, &e, 0, mirror, len), 0);

    for (i = 0; i < 300; i++) {
        off = xorshift(&rng) % len;
        n = xorshift(&rng) % (len - off + 1);
        if (i % 3 == 0) {
            /* Block-aligned offset and buffer, odd length. */
            off &= ~4095ull;
            n = xorshift(&rng) % (len - off + 1);
            fill(abuf, n, rng);
            ck_assert_int_eq(agent_tier_write(t, &e, off, abuf, n), 0);
            memcpy(mirror + off, abuf, n);
        } else {
            fill(buf + 1, n, rng);
            ck_assert_int_eq(agent_tier_write(t, &e, off, buf + 1, n), 0);
            memcpy(mirror + off, buf + 1, n);
        }
        off = xorshift(&rng) % len;
        n = xorshift(&rng) % (len - off + 1);
        ck_assert_int_eq(agent_tier_read(t, &e, off, buf + 3, n), 0);
        ck_assert_mem_eq(buf + 3, mirror + off, n);
    }
    ck_assert_int_eq(agent_tier_read(t, &e, 0, abuf, len), 0);
    ck_assert_mem_eq(abuf, mirror, len);
    fill(buf, 5000, 1);
    ck_assert_uint_eq(sum_of(t, &before), XXH3_64bits(buf, 5000));
    fill(buf, 5000, 2);
    ck_assert_uint_eq(sum_of(t, &after), XXH3_64bits(buf, 5000));
    free(abuf);
    free(buf);
    free(mirror);
    agent_tier_destroy(t);
    remove_dir(dir);
}
END_TEST

/* --- Errors -------------------------------------------------------------
 */

START_TEST(test_api_errors)
{
    char *dir = make_dir(bases[_i]);
    struct agent_tier *t = open_nvme(dir, 64 << 10, NULL);
    struct agent_tier *dram;
    struct agent_tier_config dcfg = {.capacity = 4096};
    struct agent_tier_extent a, b, x = {0, 0}, bad;
    struct agent_tier_stats st;
    uint8_t buf[8192] = {0};
    uint64_t sum;
    void *base;
    uint64_t blen;

    ck_assert_int_eq(agent_tier_alloc(t, 0, &x), -EINVAL);
    sum = store(t, 30000, 3, &a);
    ck_assert_uint_ne(store(t, 30000, 4, &b), 0);
    /* 2 x 32 KiB of 64 KiB: one more byte does not fit. */
    ck_assert_int_eq(agent_tier_alloc(t, 1, &x), -ENOSPC);
    ck_assert_int_eq(agent_tier_alloc(t, UINT64_MAX, &x), -ENOSPC);
    agent_tier_stats(t, &st);
    ck_assert_uint_eq(st.alloc_fail, 2);
    ck_assert_uint_eq(st.used, 64 << 10);
    ck_assert_uint_eq(st.requested, 60000);
    ck_assert_uint_eq(sum_of(t, &a), sum);

    ck_assert_int_eq(agent_tier_read(t, &a, 29999, buf, 2), -ERANGE);
    ck_assert_int_eq(agent_tier_write(t, &a, 30001, buf, 0), -ERANGE);
    ck_assert_int_eq(agent_tier_write(t, &a, 1, buf, 30000), -ERANGE);
    ck_assert_int_eq(agent_tier_read(t, &a, 30000, buf, 0), 0);
    ck_assert_uint_eq(sum_of(t, &a), sum);

    bad = (struct agent_tier_extent){a.off, 29999};
    ck_assert_int_eq(agent_tier_free(t, &bad), -EINVAL);
    bad = (struct agent_tier_extent){a.off + 4096, 1};
    ck_assert_int_eq(agent_tier_free(t, &bad), -ENOENT);
    bad = (struct agent_tier_extent){1 << 20, 1};
    ck_assert_int_eq(agent_tier_read(t, &bad, 0, buf, 1), -EINVAL);

    /* Index API misuse. */
    bad = (struct agent_tier_extent){a.off, 29999};
    ck_assert_int_eq(agent_tier_nvme_record(t, 1, &bad, sum), -EINVAL);
    ck_assert_int_eq(agent_tier_nvme_forget(t, 1), -ENOENT);
    ck_assert_int_eq(agent_tier_nvme_lookup(t, 1, &x, &sum), -ENOENT);
    ck_assert_int_eq(agent_tier_nvme_record(t, 1, &a, sum), 0);
    ck_assert_int_eq(agent_tier_nvme_record(t, 2, &a, sum), -EEXIST);
    ck_assert_int_eq(agent_tier_free(t, &a), -EBUSY);
    ck_assert_int_eq(agent_tier_nvme_lookup(t, 1, &x, NULL), 0);
    ck_assert_uint_eq(x.off, a.off);
    ck_assert_uint_eq(x.len, a.len);
    ck_assert_int_eq(agent_tier_nvme_forget(t, 1), 0);
    ck_assert_int_eq(agent_tier_nvme_forget(t, 1), -ENOENT);
    ck_assert_int_eq(agent_tier_free(t, &a), 0);
    ck_assert_int_eq(agent_tier_free(t, &a), -ENOENT);

    /* Kind-specific calls on the wrong kind. */
    ck_assert_int_eq(agent_tier_dram_region(t, &base, &blen), -EINVAL);
    ck_assert_int_eq(agent_tier_dram_fd(t), -EINVAL);
    ck_assert_ptr_null(agent_tier_dram_shm_name(t));
    ck_assert_int_eq(agent_tier_create(AGENT_TIER_DRAM, &dcfg, &dram), 0);
    ck_assert_int_eq(agent_tier_alloc(dram, 10, &x), 0);
    ck_assert_int_eq(agent_tier_nvme_record(dram, 1, &x, 0), -EINVAL);
    ck_assert_int_eq(agent_tier_nvme_forget(dram, 1), -EINVAL);
    ck_assert_int_eq(agent_tier_nvme_flush(dram), -EINVAL);
    ck_assert_int_eq(agent_tier_nvme_recover(dram, collect_cb, NULL), -EINVAL);
    agent_tier_destroy(dram);

    ck_assert_int_eq(agent_tier_nvme_flush(t), 0);
    ck_assert_int_eq(agent_tier_check(t), 0);
    agent_tier_destroy(t);
    remove_dir(dir);
}
END_TEST

START_TEST(test_config_errors)
{
    char *dir = make_dir("/dev/shm");
    struct agent_tier_config cfg = {.capacity = 1 << 20};
    struct agent_tier *t = NULL, *u = NULL;

    ck_assert_int_eq(agent_tier_create(AGENT_TIER_NVME, &cfg, &t), -EINVAL);
    cfg.dir = "";
    ck_assert_int_eq(agent_tier_create(AGENT_TIER_NVME, &cfg, &t), -EINVAL);
    cfg.dir = dir;
    cfg.capacity = 4095;
    ck_assert_int_eq(agent_tier_create(AGENT_TIER_NVME, &cfg, &t), -EINVAL);
    cfg.capacity = 1 << 20;
    cfg.direct_io = 7;
    ck_assert_int_eq(agent_tier_create(AGENT_TIER_NVME, &cfg, &t), -EINVAL);
    cfg.dir = "/proc/no/such/dir";
    cfg.direct_io = AGENT_TIER_DIRECT_AUTO;
    ck_assert_int_eq(agent_tier_create(AGENT_TIER_NVME, &cfg, &t), -ENOENT);

    /* One agent per directory. */
    cfg.dir = dir;
    ck_assert_int_eq(agent_tier_create(AGENT_TIER_NVME, &cfg, &t), 0);
    ck_assert_int_eq(agent_tier_create(AGENT_TIER_NVME, &cfg, &u), -EBUSY);
    ck_assert_ptr_null(u);
    agent_tier_destroy(t);
    remove_dir(dir);
}
END_TEST

START_TEST(test_direct_off)
{
    char *dir = make_dir("/var/tmp");
    struct agent_tier_config cfg = {
        .capacity = 1 << 20,
        .dir = dir,
        .direct_io = AGENT_TIER_DIRECT_OFF,
    };
    struct agent_tier *t;
    struct agent_tier_extent e;
    struct agent_tier_stats st;
    uint64_t sum;

    ck_assert_int_eq(agent_tier_create(AGENT_TIER_NVME, &cfg, &t), 0);
    agent_tier_stats(t, &st);
    ck_assert(!st.direct_io);
    sum = store(t, 10000, 5, &e);
    ck_assert_uint_eq(sum_of(t, &e), sum);
    agent_tier_destroy(t);
    remove_dir(dir);
}
END_TEST

/* A filesystem without O_DIRECT: AUTO falls back to buffered I/O and
 * everything works; REQUIRE refuses to start. Both ways of refusing. */
START_TEST(test_direct_fallback)
{
    char *dir = make_dir("/var/tmp");
    struct agent_tier_config cfg = {
        .capacity = 1 << 20,
        .dir = dir,
        .direct_io = AGENT_TIER_DIRECT_REQUIRE,
    };
    struct agent_tier *t = NULL;
    struct agent_tier_extent e;
    struct agent_tier_stats st;
    struct collect *c = calloc(1, sizeof(*c));
    uint8_t buf[5001];
    uint64_t sum;

    refuse_direct = _i ? REFUSE_AT_IO : REFUSE_AT_OPEN;
    ck_assert_int_eq(agent_tier_create(AGENT_TIER_NVME, &cfg, &t), -EINVAL);
    ck_assert_ptr_null(t);

    t = open_nvme(dir, 1 << 20, NULL);
    agent_tier_stats(t, &st);
    ck_assert(!st.direct_io);
    sum = store(t, 5000, 8, &e);
    ck_assert_int_eq(agent_tier_write(t, &e, 17, "hello", 5), 0);
    ck_assert_int_eq(agent_tier_read(t, &e, 0, buf + 1, 5000), 0);
    ck_assert_mem_eq(buf + 18, "hello", 5);
    sum = XXH3_64bits(buf + 1, 5000);
    ck_assert_int_eq(agent_tier_nvme_record(t, 5, &e, sum), 0);
    agent_tier_stats(t, &st);
    ck_assert_uint_eq(st.io_errors, 0);
    agent_tier_destroy(t);

    /* The same files work with O_DIRECT once the filesystem allows it. */
    refuse_direct = REFUSE_NONE;
    t = open_nvme(dir, 1 << 20, c);
    agent_tier_stats(t, &st);
    if (is_disk_fs("/var/tmp"))
        ck_assert(st.direct_io);
    ck_assert_int_eq(c->n, 1);
    ck_assert_uint_eq(sum_of(t, &c->v[0].e), sum);
    agent_tier_destroy(t);
    free(c);
    remove_dir(dir);
}
END_TEST

/* --- Restart ------------------------------------------------------------
 */

#define NOBJ 20

START_TEST(test_restart)
{
    char *dir = make_dir(bases[_i]);
    struct agent_tier *t = open_nvme(dir, 4 << 20, NULL);
    struct agent_tier_extent e[NOBJ], loose[2], x;
    struct agent_tier_stats st;
    struct collect *c = calloc(1, sizeof(*c));
    uint64_t sum[NOBJ], rng = 7, got;
    bool forgotten[NOBJ] = {false};
    int i, j, round, found;

    for (i = 0; i < NOBJ; i++) {
        sum[i] = store(t, 1 + xorshift(&rng) % 100000, (uint64_t)i, &e[i]);
        ck_assert_int_eq(
            agent_tier_nvme_record(t, 1000 + (uint64_t)i, &e[i], sum[i]), 0);
    }
    /* Allocated but never recorded: not promised to survive. */
    ck_assert_uint_ne(store(t, 50000, 99, &loose[0]), 0);
    ck_assert_uint_ne(store(t, 3, 98, &loose[1]), 0);
    /* Forgotten and freed. */
    for (i = 3; i < NOBJ; i += 6) {
        ck_assert_int_eq(agent_tier_nvme_forget(t, 1000 + (uint64_t)i), 0);
        ck_assert_int_eq(agent_tier_free(t, &e[i]), 0);
        forgotten[i] = true;
    }
    /* Re-recording an id replaces its checksum. */
    sum[0] ^= 0xabcdef;
    ck_assert_int_eq(agent_tier_nvme_record(t, 1000, &e[0], sum[0]), 0);
    agent_tier_destroy(t);

    for (round = 0; round < 2; round++) {
        t = open_nvme(dir, 4 << 20, c);
        found = 0;
        for (i = 0; i < NOBJ; i++) {
            const struct seen *s = find_seen(c, 1000 + (uint64_t)i);

            if (forgotten[i]) {
                ck_assert_ptr_null(s);
                continue;
            }
            ck_assert_ptr_nonnull(s);
            ck_assert_uint_eq(s->e.off, e[i].off);
            ck_assert_uint_eq(s->e.len, e[i].len);
            ck_assert_uint_eq(s->sum, sum[i]);
            got = sum_of(t, &s->e);
            if (i == 0)
                ck_assert_uint_eq(got, sum[0] ^ 0xabcdef);
            else
                ck_assert_uint_eq(got, sum[i]);
            found++;
        }
        ck_assert_int_eq(c->n, found);
        ck_assert_int_eq(found, NOBJ - 3);
        agent_tier_stats(t, &st);
        ck_assert_uint_eq(st.recovered, (uint64_t)found);
        ck_assert_uint_eq(st.objects, (uint64_t)found);
        ck_assert_uint_eq(st.index_bad, 0);
        ck_assert_int_eq(agent_tier_check(t), 0);
        /* Recovered extents are allocated; freeing one needs a forget. */
        ck_assert_int_eq(agent_tier_free(t, &c->v[0].e), -EBUSY);
        agent_tier_destroy(t);
    }

    /* Everything else can be allocated, and never on top of a recovered
     * extent; the unrecorded extents came back as free space. */
    t = open_nvme(dir, 4 << 20, c);
    while (agent_tier_alloc(t, 4096, &x) == 0) {
        for (j = 0; j < c->n; j++)
            ck_assert(x.off + 4096 <= c->v[j].e.off ||
                      x.off >= c->v[j].e.off + c->v[j].e.len);
    }
    agent_tier_stats(t, &st);
    ck_assert_uint_eq(st.used, st.capacity);
    ck_assert_int_eq(agent_tier_check(t), 0);
    agent_tier_destroy(t);
    free(c);
    remove_dir(dir);
}
END_TEST

/* Flips one byte of one record and tears the tail; the rest survives. */
START_TEST(test_corrupt_records)
{
    char *dir = make_dir(bases[_i]);
    struct agent_tier *t = open_nvme(dir, 1 << 20, NULL);
    struct agent_tier_extent e[10];
    struct agent_tier_stats st;
    struct collect *c = calloc(1, sizeof(*c));
    uint64_t sum[10];
    uint8_t byte;
    int fd, i;

    for (i = 0; i < 10; i++) {
        sum[i] = store(t, 5000, (uint64_t)i, &e[i]);
        ck_assert_int_eq(agent_tier_nvme_record(t, (uint64_t)i, &e[i], sum[i]),
                         0);
    }
    agent_tier_destroy(t);

    fd = open(file_in(dir, "index"), O_RDWR);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pread(fd, &byte, 1, 64 + 4 * 64 + 20), 1);
    byte ^= 0x40;
    ck_assert_int_eq(pwrite(fd, &byte, 1, 64 + 4 * 64 + 20), 1);
    ck_assert_int_eq(
        pwrite(fd, "torn-append-garbage-0123456789", 30, 64 + 10 * 64), 30);
    close(fd);

    t = open_nvme(dir, 1 << 20, c);
    agent_tier_stats(t, &st);
    ck_assert_uint_eq(st.index_bad, 2);
    ck_assert_uint_eq(st.recovered, 9);
    ck_assert_int_eq(c->n, 9);
    ck_assert_ptr_null(find_seen(c, 4));
    for (i = 0; i < 10; i++) {
        if (i == 4)
            continue;
        ck_assert_ptr_nonnull(find_seen(c, (uint64_t)i));
        ck_assert_uint_eq(find_seen(c, (uint64_t)i)->sum, sum[i]);
        ck_assert_uint_eq(sum_of(t, &e[i]), sum[i]);
    }
    /* Object 4's space is free again, and the evidence is kept. */
    ck_assert_int_eq(agent_tier_check(t), 0);
    ck_assert_uint_eq(file_size(dir, "index.corrupt"), 64 + 10 * 64 + 30);
    ck_assert_uint_eq(file_size(dir, "index"), 64 + 9 * 64);
    agent_tier_destroy(t);

    /* The rewritten index is clean. */
    t = open_nvme(dir, 1 << 20, c);
    agent_tier_stats(t, &st);
    ck_assert_uint_eq(st.index_bad, 0);
    ck_assert_uint_eq(st.recovered, 9);
    agent_tier_destroy(t);
    free(c);
    remove_dir(dir);
}
END_TEST

/* A corrupt header does not hide records that verify on their own. */
START_TEST(test_corrupt_header)
{
    char *dir = make_dir("/dev/shm");
    struct agent_tier *t = open_nvme(dir, 1 << 20, NULL);
    struct agent_tier_extent e[3];
    struct agent_tier_stats st;
    struct collect *c = calloc(1, sizeof(*c));
    int fd, i;

    for (i = 0; i < 3; i++)
        ck_assert_int_eq(agent_tier_nvme_record(t, (uint64_t)i, &e[i],
                                                store(t, 100, 1, &e[i])),
                         0);
    agent_tier_destroy(t);
    fd = open(file_in(dir, "index"), O_RDWR);
    ck_assert_int_eq(pwrite(fd, "XXXX", 4, 0), 4);
    close(fd);

    t = open_nvme(dir, 1 << 20, c);
    agent_tier_stats(t, &st);
    ck_assert_uint_eq(st.index_bad, 1);
    ck_assert_int_eq(c->n, 3);
    agent_tier_destroy(t);
    free(c);
    remove_dir(dir);
}
END_TEST

/* A lost FORGET makes two live records claim one extent; the newer one
 * is kept, because the space could only be reused after the forget. */
START_TEST(test_lost_forget)
{
    char *dir = make_dir("/dev/shm");
    struct agent_tier *t = open_nvme(dir, 1 << 20, NULL);
    struct agent_tier_extent a, b;
    struct collect *c = calloc(1, sizeof(*c));
    struct agent_tier_stats st;
    uint8_t *img;
    uint64_t size, sb;
    int fd;

    ck_assert_int_eq(agent_tier_nvme_record(t, 1, &a, store(t, 8000, 1, &a)),
                     0);
    ck_assert_int_eq(agent_tier_nvme_forget(t, 1), 0);
    ck_assert_int_eq(agent_tier_free(t, &a), 0);
    sb = store(t, 6000, 2, &b);
    ck_assert_uint_eq(b.off, a.off);
    ck_assert_int_eq(agent_tier_nvme_record(t, 2, &b, sb), 0);
    agent_tier_destroy(t);

    /* Cut the FORGET (the third 64-byte slot) out of the journal. */
    size = file_size(dir, "index");
    ck_assert_uint_eq(size, 4 * 64);
    img = malloc(size);
    fd = open(file_in(dir, "index"), O_RDWR);
    ck_assert_int_eq(pread(fd, img, size, 0), (ssize_t)size);
    ck_assert_int_eq(img[2 * 64 + 4], 2); /* the FORGET's type */
    memmove(img + 2 * 64, img + 3 * 64, 64);
    ck_assert_int_eq(pwrite(fd, img, 3 * 64, 0), 3 * 64);
    ck_assert_int_eq(ftruncate(fd, 3 * 64), 0);
    close(fd);
    free(img);

    t = open_nvme(dir, 1 << 20, c);
    agent_tier_stats(t, &st);
    ck_assert_int_eq(c->n, 1);
    ck_assert_uint_eq(c->v[0].id, 2);
    ck_assert_uint_eq(c->v[0].sum, sb);
    ck_assert_uint_eq(sum_of(t, &c->v[0].e), sb);
    ck_assert_uint_eq(st.index_bad, 1);
    ck_assert_int_eq(agent_tier_check(t), 0);
    agent_tier_destroy(t);
    free(c);
    remove_dir(dir);
}
END_TEST

/* Without its data file an index describes nothing. */
START_TEST(test_missing_data)
{
    char *dir = make_dir("/dev/shm");
    struct agent_tier *t = open_nvme(dir, 1 << 20, NULL);
    struct agent_tier_extent e;
    struct agent_tier_stats st;
    struct collect *c = calloc(1, sizeof(*c));

    ck_assert_int_eq(agent_tier_nvme_record(t, 9, &e, store(t, 10, 1, &e)), 0);
    agent_tier_destroy(t);
    ck_assert_int_eq(unlink(file_in(dir, "data")), 0);
    t = open_nvme(dir, 1 << 20, c);
    agent_tier_stats(t, &st);
    ck_assert_int_eq(c->n, 0);
    ck_assert_uint_eq(st.index_bad, 1);
    ck_assert_uint_eq(st.recovered, 0);
    ck_assert_uint_eq(st.objects, 0);
    ck_assert_uint_eq(file_size(dir, "index"), 64);
    agent_tier_destroy(t);
    free(c);
    remove_dir(dir);
}
END_TEST

START_TEST(test_capacity_change)
{
    char *dir = make_dir("/dev/shm");
    struct agent_tier_config cfg = {.capacity = 512 << 10, .dir = dir};
    struct agent_tier *t = open_nvme(dir, 1 << 20, NULL), *u = NULL;
    struct agent_tier_extent e;
    struct collect *c = calloc(1, sizeof(*c));
    struct agent_tier_stats st;
    uint64_t sum;

    sum = store(t, 1000, 1, &e);
    ck_assert_int_eq(agent_tier_nvme_record(t, 1, &e, sum), 0);
    agent_tier_destroy(t);

    /* Shrinking could orphan objects: refused, and nothing changes. */
    ck_assert_int_eq(agent_tier_create(AGENT_TIER_NVME, &cfg, &u), -EINVAL);
    ck_assert_ptr_null(u);
    /* Growing keeps everything. */
    t = open_nvme(dir, 2 << 20, c);
    agent_tier_stats(t, &st);
    ck_assert_uint_eq(st.capacity, 2 << 20);
    ck_assert_int_eq(c->n, 1);
    ck_assert_uint_eq(sum_of(t, &c->v[0].e), sum);
    agent_tier_destroy(t);
    /* And the new size is now the one on disk. */
    cfg.capacity = 1 << 20;
    ck_assert_int_eq(agent_tier_create(AGENT_TIER_NVME, &cfg, &u), -EINVAL);
    /* A refused start that had to create the data file removes it again,
     * so the next start still sees the data as missing. */
    ck_assert_int_eq(unlink(file_in(dir, "data")), 0);
    ck_assert_int_eq(agent_tier_create(AGENT_TIER_NVME, &cfg, &u), -EINVAL);
    ck_assert_int_eq(access(file_in(dir, "data"), F_OK), -1);
    t = open_nvme(dir, 2 << 20, c);
    agent_tier_stats(t, &st);
    ck_assert_int_eq(c->n, 0);
    ck_assert_uint_eq(st.index_bad, 1);
    agent_tier_destroy(t);
    free(c);
    remove_dir(dir);
}
END_TEST

/* Churn on the index: the journal is compacted and stays small. */
START_TEST(test_compaction)
{
    char *dir = make_dir("/dev/shm");
    struct agent_tier *t = open_nvme(dir, 1 << 20, NULL);
    struct agent_tier_extent keep, e;
    struct collect *c = calloc(1, sizeof(*c));
    uint64_t sum = store(t, 100, 1, &keep);
    int i;

    ck_assert_int_eq(agent_tier_nvme_record(t, 77, &keep, sum), 0);
    ck_assert_int_eq(agent_tier_alloc(t, 100, &e), 0);
    for (i = 0; i < 1500; i++) {
        ck_assert_int_eq(agent_tier_nvme_record(t, 1, &e, (uint64_t)i), 0);
        ck_assert_int_eq(agent_tier_nvme_forget(t, 1), 0);
    }
    ck_assert_int_eq(agent_tier_nvme_record(t, 1, &e, 5), 0);
    ck_assert_uint_lt(file_size(dir, "index"), 64 * 1100);
    agent_tier_destroy(t);
    t = open_nvme(dir, 1 << 20, c);
    ck_assert_int_eq(c->n, 2);
    ck_assert_uint_eq(find_seen(c, 77)->sum, sum);
    ck_assert_uint_eq(find_seen(c, 1)->sum, 5);
    agent_tier_destroy(t);
    free(c);
    remove_dir(dir);
}
END_TEST

/* An index written by a newer format is refused, not misread. */
START_TEST(test_future_version)
{
    char *dir = make_dir("/dev/shm");
    struct agent_tier *t = open_nvme(dir, 1 << 20, NULL), *u = NULL;
    struct agent_tier_config cfg = {.capacity = 1 << 20, .dir = dir};
    uint8_t hdr[64];
    uint64_t sum;
    int fd;

    agent_tier_destroy(t);
    fd = open(file_in(dir, "index"), O_RDWR);
    ck_assert_int_eq(pread(fd, hdr, 64, 0), 64);
    ck_assert_mem_eq(hdr, "MCOSNVX1", 8);
    hdr[8] = 2; /* version, little-endian */
    sum = XXH3_64bits(hdr, 56);
    memcpy(hdr + 56, &sum, 8); /* the test host is little-endian */
    ck_assert_int_eq(pwrite(fd, hdr, 64, 0), 64);
    close(fd);
    ck_assert_int_eq(agent_tier_create(AGENT_TIER_NVME, &cfg, &u), -EPROTO);
    ck_assert_ptr_null(u);
    /* Nothing was rewritten. */
    ck_assert_uint_eq(file_size(dir, "index"), 64);
    remove_dir(dir);
}
END_TEST

/* Enough objects to cross the loader's read chunk and grow both hash
 * tables, recovered exactly. */
START_TEST(test_many_objects)
{
    char *dir = make_dir("/dev/shm");
    struct agent_tier *t = open_nvme(dir, 8 << 20, NULL);
    struct agent_tier_extent e;
    struct agent_tier_stats st;
    struct collect *c = calloc(1, sizeof(*c));
    uint64_t i, sum;

    for (i = 0; i < 1500; i++) {
        ck_assert_int_eq(agent_tier_alloc(t, 1 + i, &e), 0);
        ck_assert_int_eq(agent_tier_write(t, &e, 0, &i, 1), 0);
        ck_assert_int_eq(agent_tier_nvme_record(t, i * 7919, &e, i), 0);
    }
    agent_tier_destroy(t);
    ck_assert_uint_eq(file_size(dir, "index"), 64 * 1501);
    t = open_nvme(dir, 8 << 20, NULL);
    agent_tier_stats(t, &st);
    ck_assert_uint_eq(st.recovered, 1500);
    ck_assert_uint_eq(st.objects, 1500);
    ck_assert_uint_eq(st.index_bad, 0);
    for (i = 0; i < 1500; i++) {
        ck_assert_int_eq(agent_tier_nvme_lookup(t, i * 7919, &e, &sum), 0);
        ck_assert_uint_eq(sum, i);
        ck_assert_uint_eq(e.len, 1 + i);
    }
    ck_assert_int_eq(agent_tier_check(t), 0);
    agent_tier_destroy(t);
    free(c);
    remove_dir(dir);
}
END_TEST

/* A negative return from the init-time callback fails the create. */
static int
refuse_cb(void *arg, uint64_t id, const struct agent_tier_extent *e,
          uint64_t sum)
{
    (void)arg;
    (void)id;
    (void)e;
    (void)sum;
    return -ECANCELED;
}

START_TEST(test_recover_cb_error)
{
    char *dir = make_dir("/dev/shm");
    struct agent_tier *t = open_nvme(dir, 1 << 20, NULL), *u = NULL;
    struct agent_tier_config cfg = {
        .capacity = 1 << 20, .dir = dir, .on_recover = refuse_cb};
    struct agent_tier_extent e;

    ck_assert_int_eq(agent_tier_nvme_record(t, 1, &e, store(t, 10, 1, &e)), 0);
    ck_assert_int_eq(agent_tier_nvme_recover(t, refuse_cb, NULL), -ECANCELED);
    agent_tier_destroy(t);
    ck_assert_int_eq(agent_tier_create(AGENT_TIER_NVME, &cfg, &u), -ECANCELED);
    ck_assert_ptr_null(u);
    /* The failed create released the directory lock. */
    t = open_nvme(dir, 1 << 20, NULL);
    agent_tier_destroy(t);
    remove_dir(dir);
}
END_TEST

/* --- Copies between tiers -----------------------------------------------
 */

START_TEST(test_copy_tiers)
{
    char *dir = make_dir(bases[_i]), *dir2 = make_dir(bases[_i]);
    struct agent_tier *n = open_nvme(dir, 8 << 20, NULL);
    struct agent_tier *n2 = open_nvme(dir2, 8 << 20, NULL);
    struct agent_tier_config dcfg = {.capacity = 8 << 20};
    struct agent_tier *d;
    struct agent_tier_extent de, ne, ne2, de2;
    uint64_t len = (2 << 20) + 12345, sum;

    ck_assert_int_eq(agent_tier_create(AGENT_TIER_DRAM, &dcfg, &d), 0);
    sum = store(d, len, 11, &de);
    /* DRAM -> NVMe: the DRAM side is mapped, no bounce buffer. */
    ck_assert_int_eq(agent_tier_alloc(n, len, &ne), 0);
    ck_assert_int_eq(agent_tier_copy(d, &de, n, &ne, len), 0);
    ck_assert_uint_eq(sum_of(n, &ne), sum);
    /* NVMe -> NVMe: neither side mapped, bounded bounce buffer. */
    ck_assert_int_eq(agent_tier_alloc(n2, len, &ne2), 0);
    ck_assert_int_eq(agent_tier_copy(n, &ne, n2, &ne2, len), 0);
    ck_assert_uint_eq(sum_of(n2, &ne2), sum);
    /* NVMe -> DRAM. */
    ck_assert_int_eq(agent_tier_alloc(d, len, &de2), 0);
    ck_assert_int_eq(agent_tier_copy(n2, &ne2, d, &de2, len), 0);
    ck_assert_uint_eq(sum_of(d, &de2), sum);
    ck_assert_int_eq(agent_tier_copy(n, &ne, n, &ne, 1), -EINVAL);
    agent_tier_destroy(d);
    agent_tier_destroy(n);
    agent_tier_destroy(n2);
    remove_dir(dir);
    remove_dir(dir2);
}
END_TEST

static Suite *
tier_nvme_suite(void)
{
    Suite *s = suite_create("tier_nvme");
    TCase *tc = tcase_create("core");

    tcase_add_loop_test(tc, test_round_trip, 0, NBASES);
    tcase_add_loop_test(tc, test_partial_io, 0, NBASES);
    tcase_add_loop_test(tc, test_api_errors, 0, NBASES);
    tcase_add_test(tc, test_config_errors);
    tcase_add_test(tc, test_direct_off);
    tcase_add_loop_test(tc, test_direct_fallback, 0, 2);
    tcase_add_loop_test(tc, test_restart, 0, NBASES);
    tcase_add_loop_test(tc, test_corrupt_records, 0, NBASES);
    tcase_add_test(tc, test_corrupt_header);
    tcase_add_test(tc, test_lost_forget);
    tcase_add_test(tc, test_missing_data);
    tcase_add_test(tc, test_capacity_change);
    tcase_add_test(tc, test_compaction);
    tcase_add_test(tc, test_recover_cb_error);
    tcase_add_test(tc, test_future_version);
    tcase_add_test(tc, test_many_objects);
    tcase_add_loop_test(tc, test_copy_tiers, 0, NBASES);
    tcase_add_unchecked_fixture(tc, make_roots, remove_roots);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(tier_nvme_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
