/*
 * bench_tiers: what the tier layer costs over the plain system call or
 * memcpy it wraps.
 *
 * In one run, for objects of 4 KiB, 64 KiB, 1 MiB and 16 MiB:
 *   (a) the DRAM tier's write and read against memcpy between the same
 *       buffers and a plain malloc'd arena;
 *   (b) the NVMe tier's write and read against raw pwrite and pread on
 *       the tier's own data file, at the same offsets, from the same
 *       page-aligned buffers, with the same O_DIRECT setting the tier
 *       chose;
 *   (c) the emulated HBM tier against the same memcpy baseline. It copies
 *       through its staging buffer exactly as the real tier does, so it
 *       measures the staging loop, not a GPU.
 * Each figure is the best of several passes over many objects (the whole
 * pass is timed; one small copy is below the clock's resolution), with
 * tier and baseline passes interleaved so they see the same machine.
 *
 * Usage: bench_tiers [--quick] [--dir DIR]
 * Files go under DIR (default: a fresh mkdtemp under /var/tmp, removed at
 * the end); within DIR only the per-size NVMe directories this run
 * creates are written, and they are removed as soon as each size is done.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tier.h"

/* One object size and how much data a pass moves at that size. */
struct size_case {
    uint64_t size;     /* object size */
    uint64_t full;     /* bytes per pass in a full run */
    uint64_t quick;    /* bytes per pass with --quick */
    const char *label; /* for the table */
};

static const struct size_case sizes[] = {
    {4u << 10, 16u << 20, 256u << 10, "4 KiB"},
    {64u << 10, 64u << 20, 1u << 20, "64 KiB"},
    {1u << 20, 128u << 20, 2u << 20, "1 MiB"},
    {16u << 20, 256u << 20, 16u << 20, "16 MiB"},
};

#define N_SIZES (sizeof(sizes) / sizeof(sizes[0]))

/* Best (largest) throughput per section, size and direction. */
enum { SEC_DRAM, SEC_NVME, SEC_HBM, SEC_COUNT };
enum { OP_WRITE, OP_READ, OP_COUNT };

/* What one size measured. */
struct result {
    double tier[SEC_COUNT][OP_COUNT]; /* tier GB/s */
    double base[SEC_COUNT][OP_COUNT]; /* baseline GB/s */
};

/* Everything one size needs, so the passes below stay short. */
struct run {
    uint64_t size;                            /* object size */
    uint64_t n;                               /* objects per pass */
    uint8_t *src;                             /* n * size bytes of pattern */
    uint8_t *dst;                             /* n * size bytes read back */
    uint8_t *arena;                           /* memcpy baseline's "tier" */
    struct agent_tier *tier[SEC_COUNT];       /* DRAM, NVMe, HBM */
    struct agent_tier_extent *ext[SEC_COUNT]; /* n extents per tier */
    int raw_fd; /* the NVMe data file, for pread */
};

static uint64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
die(const char *what, int err)
{
    fprintf(stderr, "bench_tiers: %s: %s\n", what, strerror(err));
    exit(1);
}

/* Bytes per nanosecond is GB/s (10^9 bytes per second). */
static double
rate(uint64_t bytes, uint64_t ns)
{
    return ns ? (double)bytes / (double)ns : 0.0;
}

static void
keep_best(double *best, double v)
{
    if (v > *best)
        *best = v;
}

/* One timed pass through a tier; returns GB/s. */
static double
tier_pass(struct run *r, int sec, int op)
{
    uint64_t t0, i;
    int rc;

    t0 = now_ns();
    for (i = 0; i < r->n; i++) {
        if (op == OP_WRITE)
            rc = agent_tier_write(r->tier[sec], &r->ext[sec][i], 0,
                                  r->src + i * r->size, (size_t)r->size);
        else
            rc = agent_tier_read(r->tier[sec], &r->ext[sec][i], 0,
                                 r->dst + i * r->size, (size_t)r->size);
        if (rc < 0)
            die(agent_tier_name(r->tier[sec]), -rc);
    }
    return rate(r->n * r->size, now_ns() - t0);
}

/* The memcpy baseline: same buffers, same object layout. */
static double
memcpy_pass(struct run *r, int op)
{
    uint64_t t0, i, off;

    t0 = now_ns();
    for (i = 0; i < r->n; i++) {
        off = i * r->size;
        if (op == OP_WRITE)
            memcpy(r->arena + off, r->src + off, (size_t)r->size);
        else
            memcpy(r->dst + off, r->arena + off, (size_t)r->size);
    }
    /* Keeps the compiler from treating the arena as dead stores. */
    __asm__ volatile("" : : "r"(r->arena), "r"(r->dst) : "memory");
    return rate(r->n * r->size, now_ns() - t0);
}

/* The raw baseline: the tier's data file at the tier's offsets. */
static double
raw_pass(struct run *r, int op)
{
    const struct agent_tier_extent *e = r->ext[SEC_NVME];
    uint64_t t0, i;
    ssize_t n;

    t0 = now_ns();
    for (i = 0; i < r->n; i++) {
        if (op == OP_WRITE)
            n = pwrite(r->raw_fd, r->src + i * r->size, (size_t)r->size,
                       (off_t)e[i].off);
        else
            n = pread(r->raw_fd, r->dst + i * r->size, (size_t)r->size,
                      (off_t)e[i].off);
        if (n != (ssize_t)r->size)
            die(op == OP_WRITE ? "pwrite" : "pread", n < 0 ? errno : EIO);
    }
    return rate(r->n * r->size, now_ns() - t0);
}

static void
verify(struct run *r, const char *what)
{
    if (memcmp(r->src, r->dst, (size_t)(r->n * r->size))) {
        fprintf(stderr, "bench_tiers: %s read back wrong data\n", what);
        exit(1);
    }
    memset(r->dst, 0, (size_t)(r->n * r->size));
}

/* Removes the files an NVMe tier made in dir, then dir itself. Only this
 * run's per-size directories are ever passed here. */
static void
remove_tier_dir(const char *dir)
{
    struct dirent *de;
    DIR *d = opendir(dir);
    int fd;

    if (!d)
        return;
    fd = dirfd(d);
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            (void)unlinkat(fd, de->d_name, 0);
    closedir(d);
    (void)rmdir(dir);
}

static void *
xalloc(uint64_t len)
{
    void *p;

    /* Page-aligned, so that O_DIRECT can use the buffers in place. */
    if (posix_memalign(&p, 4096, (size_t)len))
        die("posix_memalign", ENOMEM);
    /* Touch every page now, not inside a timed pass. */
    memset(p, 0, (size_t)len);
    return p;
}

static void
make_tiers(struct run *r, const char *nvme_dir, bool *direct)
{
    struct agent_tier_config cfg;
    struct agent_tier_stats st;
    uint64_t vol = r->n * r->size, i;
    int sec, rc;

    for (sec = 0; sec < SEC_COUNT; sec++) {
        memset(&cfg, 0, sizeof(cfg));
        /* Room for the rounding of every object to a page. */
        cfg.capacity = vol + r->n * 4096 + (1u << 20);
        cfg.dir = nvme_dir;
        cfg.emulate = true;
        rc = agent_tier_create(sec == SEC_DRAM   ? AGENT_TIER_DRAM
                               : sec == SEC_NVME ? AGENT_TIER_NVME
                                                 : AGENT_TIER_HBM,
                               &cfg, &r->tier[sec]);
        if (rc < 0)
            die("creating a tier", -rc);
        r->ext[sec] = calloc((size_t)r->n, sizeof(*r->ext[sec]));
        if (!r->ext[sec])
            die("calloc", ENOMEM);
        for (i = 0; i < r->n; i++) {
            rc = agent_tier_alloc(r->tier[sec], r->size, &r->ext[sec][i]);
            if (rc < 0)
                die("allocating an extent", -rc);
        }
    }
    agent_tier_stats(r->tier[SEC_NVME], &st);
    *direct = st.direct_io;
}

static void
free_tiers(struct run *r)
{
    int sec;

    for (sec = 0; sec < SEC_COUNT; sec++) {
        agent_tier_destroy(r->tier[sec]);
        free(r->ext[sec]);
    }
}

static void
bench_size(const struct size_case *c, bool quick, int reps,
           const char *base_dir, struct result *res, bool *direct)
{
    struct run r = {.size = c->size};
    uint64_t vol = quick ? c->quick : c->full;
    char nvme_dir[4096];
    int rep, op, sec;

    r.n = vol / c->size;
    if (r.n == 0)
        r.n = 1;
    vol = r.n * r.size;
    r.src = xalloc(vol);
    r.dst = xalloc(vol);
    r.arena = xalloc(vol);
    for (uint64_t i = 0; i < vol; i++)
        r.src[i] = (uint8_t)(i * 131 + (i >> 12));

    snprintf(nvme_dir, sizeof(nvme_dir), "%s/nvme-%llu", base_dir,
             (unsigned long long)c->size);
    make_tiers(&r, nvme_dir, direct);
    {
        char data[4200];

        snprintf(data, sizeof(data), "%s/data", nvme_dir);
        r.raw_fd = open(data, O_RDWR | O_CLOEXEC | (*direct ? O_DIRECT : 0));
        if (r.raw_fd < 0)
            die(data, errno);
    }

    /* Untimed warm-up: first touches of the arenas and the file. */
    for (sec = 0; sec < SEC_COUNT; sec++) {
        tier_pass(&r, sec, OP_WRITE);
        tier_pass(&r, sec, OP_READ);
        verify(&r, agent_tier_name(r.tier[sec]));
    }
    memcpy_pass(&r, OP_WRITE);
    memcpy_pass(&r, OP_READ);
    verify(&r, "memcpy");

    memset(res, 0, sizeof(*res));
    for (rep = 0; rep < reps; rep++) {
        for (op = 0; op < OP_COUNT; op++) {
            double m = memcpy_pass(&r, op);

            keep_best(&res->base[SEC_DRAM][op], m);
            keep_best(&res->base[SEC_HBM][op], m);
            keep_best(&res->tier[SEC_DRAM][op], tier_pass(&r, SEC_DRAM, op));
            keep_best(&res->tier[SEC_HBM][op], tier_pass(&r, SEC_HBM, op));
            keep_best(&res->tier[SEC_NVME][op], tier_pass(&r, SEC_NVME, op));
            keep_best(&res->base[SEC_NVME][op], raw_pass(&r, op));
        }
        verify(&r, "pread");
    }

    close(r.raw_fd);
    free_tiers(&r);
    remove_tier_dir(nvme_dir);
    free(r.src);
    free(r.dst);
    free(r.arena);
}

static void
usage(FILE *f)
{
    fprintf(f, "usage: bench_tiers [--quick] [--dir DIR]\n"
               "  --quick    small volumes, one pass (a smoke test)\n"
               "  --dir DIR  where the NVMe tier's files go (default: a "
               "new directory\n"
               "             under /var/tmp, removed at the end)\n");
}

int
main(int argc, char **argv)
{
    static const char *const sec_name[SEC_COUNT] = {"dram", "nvme",
                                                    "hbm (emulated)"};
    static const char *const base_name[SEC_COUNT][OP_COUNT] = {
        {"memcpy", "memcpy"}, {"pwrite", "pread"}, {"memcpy", "memcpy"}};
    static const char *const op_name[OP_COUNT] = {"write", "read"};
    struct result res[N_SIZES];
    char tmpl[] = "/var/tmp/mcos-bench-XXXXXX";
    const char *dir = NULL;
    bool quick = false, made = false, direct = false;
    int reps, sec, op;
    size_t i;

    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--quick")) {
            quick = true;
        } else if (!strcmp(argv[a], "--dir") && a + 1 < argc) {
            dir = argv[++a];
        } else if (!strcmp(argv[a], "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "bench_tiers: unknown argument '%s'\n", argv[a]);
            usage(stderr);
            return 2;
        }
    }
    if (!dir) {
        if (!mkdtemp(tmpl))
            die("mkdtemp under /var/tmp", errno);
        dir = tmpl;
        made = true;
    } else {
        struct stat st;

        if (stat(dir, &st) || !S_ISDIR(st.st_mode)) {
            fprintf(stderr, "bench_tiers: --dir %s is not a directory\n", dir);
            return 2;
        }
    }
    reps = quick ? 1 : 5;

    for (i = 0; i < N_SIZES; i++)
        bench_size(&sizes[i], quick, reps, dir, &res[i], &direct);
    if (made)
        (void)rmdir(dir);

    printf("bench_tiers: best of %d pass(es); GB/s = 10^9 bytes/s; NVMe "
           "files in %s, O_DIRECT %s (raw baseline uses the same)\n",
           reps, dir, direct ? "on" : "off (filesystem refused it)");
    printf("%-15s %-7s %-6s %10s %-7s %10s %7s\n", "tier", "size", "op",
           "tier GB/s", "vs", "base GB/s", "ratio");
    for (sec = 0; sec < SEC_COUNT; sec++) {
        for (i = 0; i < N_SIZES; i++) {
            for (op = 0; op < OP_COUNT; op++) {
                double t = res[i].tier[sec][op], b = res[i].base[sec][op];

                printf("%-15s %-7s %-6s %10.2f %-7s %10.2f %7.2f\n",
                       sec_name[sec], sizes[i].label, op_name[op], t,
                       base_name[sec][op], b, b > 0 ? t / b : 0.0);
            }
        }
    }
    printf("ratio = tier / baseline; 1.00 means no overhead. The emulated "
           "HBM tier copies\ntwice (into its staging buffer, then out, as "
           "the real tier must), so expect\nabout 0.5 once objects outgrow "
           "the CPU caches and close to 1 while they fit.\n");
    return 0;
}
