/*
 * Unit tests for the HBM tier (agent/tier_hbm.c) and its SRAM/L2 hint.
 *
 * Real mode runs against tests/fake_cudart.c, a stand-in CUDA runtime
 * loaded through the same dlopen path as libcudart: it checks every copy
 * against its kind, runs async copies only at stream synchronisation (so
 * a staging race shows up as wrong bytes), counts live streams, pinned
 * and device allocations, and fails on request (FAKE_CUDART_* variables).
 * Emulated mode needs no runtime at all. Nothing here has run on a GPU.
 */
#include "tier.h"

#include <check.h>
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "cudart.h"
#include "testutil.h"

/* --- Helpers ------------------------------------------------------------
 */

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

/* The stand-in runtime's test hooks, from the same loaded copy the tier
 * uses (dlopen of one path returns one object). */
static long
fake_count(const char *what)
{
    static long (*fn)(const char *);
    void *h;

    if (!fn) {
        h = dlopen(FAKE_CUDART, RTLD_NOW | RTLD_LOCAL);
        ck_assert_ptr_nonnull(h);
        *(void **)&fn = dlsym(h, "fake_cudart_count");
        ck_assert_ptr_nonnull(fn);
    }
    return fn(what);
}

static long
fake_window(struct agent_cuda_policy *out)
{
    static long (*fn)(void *, size_t);
    void *h;

    if (!fn) {
        h = dlopen(FAKE_CUDART, RTLD_NOW | RTLD_LOCAL);
        ck_assert_ptr_nonnull(h);
        *(void **)&fn = dlsym(h, "fake_cudart_last_window");
        ck_assert_ptr_nonnull(fn);
    }
    return fn(out, sizeof(*out));
}

/* Nothing the tier took from the runtime is still held. */
static void
assert_fake_clean(void)
{
    ck_assert_int_eq(fake_count("device"), 0);
    ck_assert_int_eq(fake_count("host"), 0);
    ck_assert_int_eq(fake_count("stream"), 0);
}

/* Real mode on the stand-in runtime, or emulated mode. */
static struct agent_tier *
make_hbm(bool emulate, uint64_t capacity, uint64_t staging)
{
    struct agent_tier_config cfg = {
        .capacity = capacity,
        .cuda_lib = FAKE_CUDART,
        .emulate = emulate,
        .staging = staging,
    };
    struct agent_tier *t = NULL;

    ck_assert_int_eq(agent_tier_create(AGENT_TIER_HBM, &cfg, &t), 0);
    ck_assert_ptr_nonnull(t);
    return t;
}

static void
put_pattern(struct agent_tier *t, const struct agent_tier_extent *e,
            uint64_t seed)
{
    uint8_t *buf = malloc(e->len);

    ck_assert_ptr_nonnull(buf);
    fill(buf, e->len, seed);
    ck_assert_int_eq(agent_tier_write(t, e, 0, buf, e->len), 0);
    free(buf);
}

static void
assert_content(struct agent_tier *t, const struct agent_tier_extent *e,
               uint64_t seed)
{
    uint8_t *want = malloc(e->len), *got = malloc(e->len);

    ck_assert_ptr_nonnull(want);
    ck_assert_ptr_nonnull(got);
    fill(want, e->len, seed);
    memset(got, 0xa5, e->len);
    ck_assert_int_eq(agent_tier_read(t, e, 0, got, e->len), 0);
    ck_assert_mem_eq(want, got, e->len);
    free(want);
    free(got);
}

static void
finish(struct agent_tier *t, bool emulate)
{
    ck_assert_int_eq(agent_tier_check(t), 0);
    agent_tier_destroy(t);
    if (!emulate)
        assert_fake_clean();
}

/* --- Lifetime -----------------------------------------------------------
 */

START_TEST(test_create_destroy)
{
    struct agent_tier *t = make_hbm(false, 1 << 20, 0);
    struct agent_tier_stats st;

    ck_assert_str_eq(agent_tier_name(t), "hbm");
    ck_assert_int_eq(agent_tier_kind_of(t), AGENT_TIER_HBM);
    ck_assert(!agent_tier_is_emulated(t));
    /* One device region, pinned staging and a stream per direction. */
    ck_assert_int_eq(fake_count("device"), 1);
    ck_assert_int_eq(fake_count("host"), 2);
    ck_assert_int_eq(fake_count("stream"), 2);
    agent_tier_stats(t, &st);
    ck_assert_uint_eq(st.capacity, 1 << 20);
    ck_assert_uint_eq(st.granule, 256);
    ck_assert_uint_eq(st.used, 0);
    ck_assert_uint_eq(st.free_blocks, 1);
    ck_assert_uint_eq(st.l2_persist_max, 4 << 20);
    ck_assert_uint_eq(st.l2_window, 0);
    ck_assert(!st.emulated);
    finish(t, false);
    agent_tier_destroy(NULL);
    ck_assert(!agent_tier_is_emulated(NULL));
}
END_TEST

static const struct {
    const char *env;   /* FAKE_CUDART_* variable set to "1", or NULL */
    const char *val;   /* its value, "1" when NULL */
    uint64_t capacity; /* configured capacity */
    int gpu;           /* configured device */
    uint64_t staging;  /* configured staging */
    const char *lib;   /* runtime; NULL means the stand-in */
    int want;          /* expected return */
} create_cases[] = {
    {NULL, NULL, 0, 0, 0, NULL, -EINVAL},
    {NULL, NULL, 255, 0, 0, NULL, -EINVAL},
    {NULL, NULL, (1ull << 62) + 1, 0, 0, NULL, -EINVAL},
    {NULL, NULL, 1 << 20, 0, 4096, NULL, -EINVAL},
    {NULL, NULL, 1 << 20, 0, 2ull << 30, NULL, -EINVAL},
    {NULL, NULL, 1 << 20, -1, 0, NULL, -EINVAL},
    {NULL, NULL, 1 << 20, 2, 0, NULL, -ENODEV},
    {NULL, NULL, 1 << 20, 0, 0, "libcudart-does-not-exist.so", -EOPNOTSUPP},
    /* A library that loads but is no CUDA runtime. */
    {NULL, NULL, 1 << 20, 0, 0, "libm.so.6", -ENOSYS},
    {"FAKE_CUDART_FAIL", NULL, 1 << 20, 0, 0, NULL, -ENODEV},
    {"FAKE_CUDART_DEVICES", "0", 1 << 20, 0, 0, NULL, -ENODEV},
    {"FAKE_CUDART_MALLOC_FAIL", NULL, 1 << 20, 0, 0, NULL, -ENOMEM},
    {"FAKE_CUDART_HOSTALLOC_FAIL", NULL, 1 << 20, 0, 0, NULL, -ENOMEM},
    {"FAKE_CUDART_STREAM_FAIL", NULL, 1 << 20, 0, 0, NULL, -ENOMEM},
};

START_TEST(test_create_errors)
{
    struct agent_tier_config cfg = {
        .capacity = create_cases[_i].capacity,
        .gpu = create_cases[_i].gpu,
        .staging = create_cases[_i].staging,
        .cuda_lib = create_cases[_i].lib ? create_cases[_i].lib : FAKE_CUDART,
    };
    struct agent_tier *t = NULL;

    if (create_cases[_i].env)
        setenv(create_cases[_i].env,
               create_cases[_i].val ? create_cases[_i].val : "1", 1);
    ck_assert_int_eq(agent_tier_create(AGENT_TIER_HBM, &cfg, &t),
                     create_cases[_i].want);
    ck_assert_ptr_null(t);
    if (create_cases[_i].env)
        unsetenv(create_cases[_i].env);
    /* Whatever step failed, everything before it was given back (ASan
     * checks our side, the stand-in's counters the runtime's). */
    assert_fake_clean();
}
END_TEST

START_TEST(test_sram_is_not_a_store)
{
    struct agent_tier_config cfg = {.capacity = 1 << 20};
    struct agent_tier *t = NULL;

    ck_assert_int_eq(agent_tier_create(AGENT_TIER_SRAM, &cfg, &t),
                     -EOPNOTSUPP);
    ck_assert_ptr_null(t);
}
END_TEST

/* --- Round trips, in both modes -----------------------------------------
 */

static const struct {
    uint64_t len;     /* object size */
    uint64_t staging; /* staging configured; 0 is the 4 MiB default */
} rt_cases[] = {
    {1, 64 << 10},
    {255, 64 << 10},
    {256, 64 << 10},
    {257, 64 << 10},
    {4095, 64 << 10},
    {32 << 10, 64 << 10},       /* exactly one staging half */
    {(32 << 10) + 1, 64 << 10}, /* one byte into the second half */
    {64 << 10, 64 << 10},       /* exactly both halves */
    {(64 << 10) + 1, 64 << 10}, /* wraps back to the first half */
    {100001, 64 << 10},         /* odd, four chunks */
    {(1 << 20) + 7, 64 << 10},  /* 33 chunks */
    {(5 << 20) + 3, 0},         /* above the default staging */
    {(2 << 20), 0},             /* exactly one default half */
};

#define RT_CASES (sizeof(rt_cases) / sizeof(rt_cases[0]))

START_TEST(test_round_trip)
{
    bool emulate = _i % 2;
    uint64_t len = rt_cases[_i / 2].len, sum;
    struct agent_tier *t =
        make_hbm(emulate, 16 << 20, rt_cases[_i / 2].staging);
    struct agent_tier_extent e, e2;
    struct agent_tier_stats st;
    uint8_t *want = malloc(len);

    ck_assert_int_eq(agent_tier_alloc(t, len, &e), 0);
    ck_assert_uint_eq(e.len, len);
    ck_assert_uint_eq(e.off % 256, 0);
    /* A neighbour, to see that writes stay inside their extent. */
    ck_assert_int_eq(agent_tier_alloc(t, 4096, &e2), 0);
    put_pattern(t, &e2, 99);
    put_pattern(t, &e, len);
    assert_content(t, &e, len);
    assert_content(t, &e2, 99);
    ck_assert_ptr_null(agent_tier_map(t, &e));
    fill(want, len, len);
    ck_assert_int_eq(agent_tier_checksum(t, &e, len, &sum), 0);
    ck_assert_uint_eq(sum, XXH3_64bits(want, len));
    agent_tier_stats(t, &st);
    ck_assert_uint_eq(st.objects, 2);
    ck_assert_uint_eq(st.requested, len + 4096);
    ck_assert_uint_eq(st.used, ((len + 255) & ~255ull) + 4096);
    ck_assert_uint_eq(st.io_errors, 0);
    ck_assert(st.emulated == emulate);
    if (!emulate)
        /* Every DMA went through pinned staging. */
        ck_assert_int_eq(fake_count("pageable"), 0);
    ck_assert_int_eq(agent_tier_free(t, &e), 0);
    ck_assert_int_eq(agent_tier_free(t, &e2), 0);
    free(want);
    finish(t, emulate);
}
END_TEST

/* Random partial reads and writes at odd offsets, from odd addresses,
 * against a mirror; the neighbours must not change. */
START_TEST(test_unaligned)
{
    bool emulate = _i;
    struct agent_tier *t = make_hbm(emulate, 4 << 20, 64 << 10);
    const size_t len = 300001;
    struct agent_tier_extent lo, e, hi;
    uint8_t *mirror = malloc(len), *buf = malloc(len + 16);
    uint64_t seed = 7, off, n;
    int i;

    ck_assert_int_eq(agent_tier_alloc(t, 1000, &lo), 0);
    ck_assert_int_eq(agent_tier_alloc(t, len, &e), 0);
    ck_assert_int_eq(agent_tier_alloc(t, 1000, &hi), 0);
    put_pattern(t, &lo, 1);
    put_pattern(t, &hi, 2);
    fill(mirror, len, 3);
    ck_assert_int_eq(agent_tier_write(t, &e, 0, mirror, len), 0);
    for (i = 0; i < 200; i++) {
        off = xorshift(&seed) % len;
        n = xorshift(&seed) % (len - off + 1);
        if (i % 2) {
            fill(buf + 3, n, seed);
            ck_assert_int_eq(agent_tier_write(t, &e, off, buf + 3, n), 0);
            memcpy(mirror + off, buf + 3, n);
        } else {
            ck_assert_int_eq(agent_tier_read(t, &e, off, buf + 5, n), 0);
            ck_assert_mem_eq(buf + 5, mirror + off, n);
        }
    }
    ck_assert_int_eq(agent_tier_read(t, &e, 0, buf, len), 0);
    ck_assert_mem_eq(buf, mirror, len);
    assert_content(t, &lo, 1);
    assert_content(t, &hi, 2);
    free(mirror);
    free(buf);
    finish(t, emulate);
}
END_TEST

/* --- Errors -------------------------------------------------------------
 */

START_TEST(test_enospc_keeps_data)
{
    bool emulate = _i;
    struct agent_tier *t = make_hbm(emulate, 1 << 20, 0);
    struct agent_tier_extent e[4], big;
    struct agent_tier_stats st;
    int i;

    for (i = 0; i < 4; i++) {
        ck_assert_int_eq(agent_tier_alloc(t, 256 << 10, &e[i]), 0);
        put_pattern(t, &e[i], (uint64_t)i + 10);
    }
    ck_assert_int_eq(agent_tier_alloc(t, 1, &big), -ENOSPC);
    ck_assert_int_eq(agent_tier_free(t, &e[1]), 0);
    ck_assert_int_eq(agent_tier_alloc(t, (256 << 10) + 1, &big), -ENOSPC);
    ck_assert_int_eq(agent_tier_alloc(t, 0, &big), -EINVAL);
    agent_tier_stats(t, &st);
    ck_assert_uint_eq(st.alloc_fail, 2);
    ck_assert_uint_eq(st.largest_free, 256 << 10);
    for (i = 0; i < 4; i++)
        if (i != 1)
            assert_content(t, &e[i], (uint64_t)i + 10);
    ck_assert_int_eq(agent_tier_alloc(t, 256 << 10, &e[1]), 0);
    put_pattern(t, &e[1], 11);
    for (i = 0; i < 4; i++)
        assert_content(t, &e[i], (uint64_t)i + 10);
    finish(t, emulate);
}
END_TEST

START_TEST(test_ranges)
{
    bool emulate = _i;
    struct agent_tier *t = make_hbm(emulate, 1 << 20, 0);
    struct agent_tier_extent e, bad;
    uint8_t buf[64] = {0};

    ck_assert_int_eq(agent_tier_alloc(t, 1000, &e), 0);
    put_pattern(t, &e, 5);
    ck_assert_int_eq(agent_tier_write(t, &e, 1000, buf, 1), -ERANGE);
    ck_assert_int_eq(agent_tier_write(t, &e, 999, buf, 2), -ERANGE);
    ck_assert_int_eq(agent_tier_write(t, &e, 1001, buf, 0), -ERANGE);
    ck_assert_int_eq(agent_tier_read(t, &e, UINT64_MAX, buf, 2), -ERANGE);
    ck_assert_int_eq(agent_tier_read(t, &e, 990, buf, 11), -ERANGE);
    ck_assert_int_eq(agent_tier_read(t, &e, 1000, buf, 0), 0);
    assert_content(t, &e, 5);
    /* A forged extent outside the region never reaches a copy. */
    bad.off = 1 << 20;
    bad.len = 256;
    ck_assert_int_eq(agent_tier_write(t, &bad, 0, buf, 16), -EINVAL);
    ck_assert_int_eq(agent_tier_read(t, &bad, 0, buf, 16), -EINVAL);
    bad.off = 0;
    bad.len = UINT64_MAX;
    ck_assert_int_eq(agent_tier_read(t, &bad, 0, buf, 16), -EINVAL);
    ck_assert_ptr_null(agent_tier_map(t, &e));
    bad.off = e.off + 256;
    bad.len = 1;
    ck_assert_int_eq(agent_tier_free(t, &bad), -ENOENT);
    bad.off = e.off;
    bad.len = 999;
    ck_assert_int_eq(agent_tier_free(t, &bad), -EINVAL);
    ck_assert_int_eq(agent_tier_free(t, &e), 0);
    ck_assert_int_eq(agent_tier_free(t, &e), -ENOENT);
    finish(t, emulate);
}
END_TEST

/* A copy that fails is an I/O error with the runtime's errno, counted;
 * the tier keeps working once the device does. */
START_TEST(test_copy_failures)
{
    struct agent_tier *t = make_hbm(false, 4 << 20, 64 << 10);
    struct agent_tier_extent e;
    struct agent_tier_stats st;
    uint8_t *buf = malloc(200000);
    char n[32];

    ck_assert_int_eq(agent_tier_alloc(t, 200000, &e), 0);
    put_pattern(t, &e, 1);

    /* Every async copy fails from now on. */
    snprintf(n, sizeof(n), "%ld", fake_count("async") + 1);
    setenv("FAKE_CUDART_MEMCPY_FAIL", n, 1);
    ck_assert_int_eq(agent_tier_write(t, &e, 0, buf, 100), -EIO);
    ck_assert_int_eq(agent_tier_read(t, &e, 0, buf, 100), -EIO);
    agent_tier_stats(t, &st);
    ck_assert_uint_eq(st.io_errors, 2);

    /* The third chunk of a seven-chunk write fails: the first two were
     * in flight and are drained, and the error is counted once. */
    snprintf(n, sizeof(n), "%ld", fake_count("async") + 3);
    setenv("FAKE_CUDART_MEMCPY_FAIL", n, 1);
    fill(buf, 200000, 2);
    ck_assert_int_eq(agent_tier_write(t, &e, 0, buf, 200000), -EIO);
    agent_tier_stats(t, &st);
    ck_assert_uint_eq(st.io_errors, 3);
    unsetenv("FAKE_CUDART_MEMCPY_FAIL");

    /* A failed synchronisation (a kernel fault, a lost device). */
    setenv("FAKE_CUDART_SYNC_FAIL", "1", 1);
    ck_assert_int_eq(agent_tier_read(t, &e, 0, buf, 100), -EIO);
    ck_assert_int_eq(agent_tier_write(t, &e, 0, buf, 100000), -EIO);
    unsetenv("FAKE_CUDART_SYNC_FAIL");
    agent_tier_stats(t, &st);
    ck_assert_uint_eq(st.io_errors, 5);

    put_pattern(t, &e, 3);
    assert_content(t, &e, 3);
    free(buf);
    finish(t, false);
}
END_TEST

/* --- Copies between tiers -----------------------------------------------
 */

/* DRAM -> HBM -> NVMe -> HBM -> DRAM, checksum compared at every hop, on
 * the stand-in runtime (_i = 0) and emulated (_i = 1). */
START_TEST(test_copy_chain)
{
    bool emulate = _i;
    const uint64_t len = (3 << 20) + 123;
    struct agent_tier_config dcfg = {.capacity = 16 << 20};
    struct agent_tier_config ncfg = {.capacity = 16 << 20};
    struct agent_tier *dram = NULL, *nvme = NULL, *hbm;
    struct agent_tier_extent de, de2, he, he2, ne;
    uint64_t want, got;
    char *dir = test_tmpdir();

    ck_assert_ptr_nonnull(dir);
    ncfg.dir = dir;
    ck_assert_int_eq(agent_tier_create(AGENT_TIER_DRAM, &dcfg, &dram), 0);
    ck_assert_int_eq(agent_tier_create(AGENT_TIER_NVME, &ncfg, &nvme), 0);
    hbm = make_hbm(emulate, 16 << 20, 0);
    ck_assert_int_eq(agent_tier_alloc(dram, len, &de), 0);
    ck_assert_int_eq(agent_tier_alloc(dram, len, &de2), 0);
    ck_assert_int_eq(agent_tier_alloc(hbm, len, &he), 0);
    ck_assert_int_eq(agent_tier_alloc(hbm, len, &he2), 0);
    ck_assert_int_eq(agent_tier_alloc(nvme, len, &ne), 0);
    put_pattern(dram, &de, 42);
    ck_assert_int_eq(agent_tier_checksum(dram, &de, len, &want), 0);

    ck_assert_int_eq(agent_tier_copy(dram, &de, hbm, &he, len), 0);
    ck_assert_int_eq(agent_tier_checksum(hbm, &he, len, &got), 0);
    ck_assert_uint_eq(got, want);
    ck_assert_int_eq(agent_tier_copy(hbm, &he, nvme, &ne, len), 0);
    ck_assert_int_eq(agent_tier_checksum(nvme, &ne, len, &got), 0);
    ck_assert_uint_eq(got, want);
    ck_assert_int_eq(agent_tier_copy(nvme, &ne, hbm, &he2, len), 0);
    ck_assert_int_eq(agent_tier_checksum(hbm, &he2, len, &got), 0);
    ck_assert_uint_eq(got, want);
    /* Inside one HBM tier: through the bounce buffer, both lanes. */
    ck_assert_int_eq(agent_tier_copy(hbm, &he2, hbm, &he, len), 0);
    ck_assert_int_eq(agent_tier_copy(hbm, &he, dram, &de2, len), 0);
    ck_assert_int_eq(agent_tier_checksum(dram, &de2, len, &got), 0);
    ck_assert_uint_eq(got, want);
    ck_assert_mem_eq(agent_tier_map(dram, &de), agent_tier_map(dram, &de2),
                     len);
    ck_assert_int_eq(agent_tier_copy(hbm, &he, hbm, &he, 1), -EINVAL);
    ck_assert_int_eq(agent_tier_copy(hbm, &he, dram, &de2, len + 1), -ERANGE);
    if (!emulate)
        ck_assert_int_eq(fake_count("pageable"), 0);

    finish(hbm, emulate);
    agent_tier_destroy(nvme);
    agent_tier_destroy(dram);
    test_rmrf(dir);
    free(dir);
}
END_TEST

/* --- Emulated mode ------------------------------------------------------
 */

START_TEST(test_emulated_flag)
{
    struct agent_tier_config cfg = {
        .capacity = 1 << 20,
        .emulate = true,
        /* Emulation loads no runtime, so a missing one is no error. */
        .cuda_lib = "libcudart-does-not-exist.so",
        .gpu = 7,
    };
    struct agent_tier *t = NULL;
    struct agent_tier_stats st;
    struct agent_tier_extent e;

    ck_assert_int_eq(agent_tier_create(AGENT_TIER_HBM, &cfg, &t), 0);
    ck_assert_str_eq(agent_tier_name(t), "hbm (emulated)");
    ck_assert_int_eq(agent_tier_kind_of(t), AGENT_TIER_HBM);
    ck_assert(agent_tier_is_emulated(t));
    agent_tier_stats(t, &st);
    ck_assert(st.emulated);
    ck_assert_uint_eq(st.l2_persist_max, 0);
    ck_assert_uint_eq(st.capacity, 1 << 20);
    ck_assert_int_eq(agent_tier_alloc(t, 4096, &e), 0);
    /* Never faked: an emulated tier has no L2 to hint. */
    ck_assert_int_eq(agent_tier_hbm_l2_hint(t, &e, 4096, 1.0f), -ENOTSUP);
    ck_assert_int_eq(agent_tier_hbm_l2_hint(t, &e, 0, 0.0f), -ENOTSUP);
    ck_assert_ptr_null(agent_tier_map(t, &e));
    finish(t, true);
    ck_assert_int_eq(fake_count("device"), 0);
}
END_TEST

START_TEST(test_emulated_ops_direct)
{
    struct agent_tier_config cfg = {.capacity = 1 << 20};
    struct agent_tier *t = NULL, *d = NULL;

    /* The table decides, whatever cfg.emulate says. */
    ck_assert_int_eq(agent_tier_create_ops(&agent_tier_hbm_emulated_ops,
                                           AGENT_TIER_HBM, &cfg, &t),
                     0);
    ck_assert(agent_tier_is_emulated(t));
    ck_assert_int_eq(agent_tier_create(AGENT_TIER_DRAM, &cfg, &d), 0);
    ck_assert(!agent_tier_is_emulated(d));
    agent_tier_destroy(d);
    finish(t, true);
}
END_TEST

/* --- SRAM/L2 hint -------------------------------------------------------
 */

START_TEST(test_l2_hint)
{
    struct agent_tier *t = make_hbm(false, 128 << 20, 0);
    struct agent_tier_extent e, big, gone;
    struct agent_tier_stats st;
    struct agent_cuda_policy w;
    long calls = fake_window(&w); /* before this test: 0 when forked */

    ck_assert_int_eq(agent_tier_alloc(t, 8 << 20, &e), 0);
    ck_assert_int_eq(agent_tier_alloc(t, 100 << 20, &big), 0);

    /* Within the set-aside: the ratio is the caller's. */
    ck_assert_int_eq(agent_tier_hbm_l2_hint(t, &e, 1 << 20, 0.6f), 0);
    ck_assert_int_eq(fake_window(&w), calls + 2); /* one per stream */
    ck_assert_ptr_nonnull(w.base_ptr);
    ck_assert_uint_eq(w.num_bytes, 1 << 20);
    ck_assert_float_eq(w.hit_ratio, 0.6f);
    ck_assert_int_eq(w.hit_prop, AGENT_CUDA_ACCESS_PERSISTING);
    ck_assert_int_eq(w.miss_prop, AGENT_CUDA_ACCESS_STREAMING);
    ck_assert_int_eq(fake_count("l2_limit"), 1 << 20);
    agent_tier_stats(t, &st);
    ck_assert_uint_eq(st.l2_window, 1 << 20);

    /* Twice the 4 MiB set-aside: the ratio halves so that persisting
     * lines do not evict each other. */
    ck_assert_int_eq(agent_tier_hbm_l2_hint(t, &e, 8 << 20, 1.0f), 0);
    ck_assert_int_eq(fake_window(&w), calls + 4);
    ck_assert_uint_eq(w.num_bytes, 8 << 20);
    ck_assert_float_eq_tol(w.hit_ratio, 0.5f, 1e-6f);
    ck_assert_int_eq(fake_count("l2_limit"), 4 << 20);

    /* Above the device's 64 MiB window limit: clamped. */
    ck_assert_int_eq(agent_tier_hbm_l2_hint(t, &big, 100 << 20, 1.0f), 0);
    fake_window(&w);
    ck_assert_uint_eq(w.num_bytes, 64 << 20);
    ck_assert_float_eq_tol(w.hit_ratio, 1.0f / 16, 1e-6f);
    agent_tier_stats(t, &st);
    ck_assert_uint_eq(st.l2_window, 64 << 20);

    /* Bad arguments change nothing. */
    ck_assert_int_eq(agent_tier_hbm_l2_hint(t, &e, (8 << 20) + 1, 1.0f),
                     -ERANGE);
    ck_assert_int_eq(agent_tier_hbm_l2_hint(t, &e, 1, 1.5f), -EINVAL);
    ck_assert_int_eq(agent_tier_hbm_l2_hint(t, &e, 1, -0.1f), -EINVAL);
    ck_assert_int_eq(agent_tier_hbm_l2_hint(t, &e, 1, NAN), -EINVAL);
    ck_assert_int_eq(agent_tier_hbm_l2_hint(t, NULL, 1, 1.0f), -EINVAL);
    ck_assert_int_eq(agent_tier_hbm_l2_hint(NULL, &e, 1, 1.0f), -EINVAL);
    ck_assert_int_eq(agent_tier_alloc(t, 4096, &gone), 0);
    ck_assert_int_eq(agent_tier_free(t, &gone), 0);
    ck_assert_int_eq(agent_tier_hbm_l2_hint(t, &gone, 1, 1.0f), -EINVAL);
    ck_assert_int_eq(fake_window(&w), calls + 6);
    agent_tier_stats(t, &st);
    ck_assert_uint_eq(st.l2_window, 64 << 20);

    /* bytes = 0 takes the window and the set-aside away. */
    ck_assert_int_eq(agent_tier_hbm_l2_hint(t, &e, 0, 1.0f), 0);
    fake_window(&w);
    ck_assert_uint_eq(w.num_bytes, 0);
    ck_assert_int_eq(w.hit_prop, AGENT_CUDA_ACCESS_NORMAL);
    ck_assert_int_eq(fake_count("l2_limit"), 0);
    agent_tier_stats(t, &st);
    ck_assert_uint_eq(st.l2_window, 0);

    /* Destroying a tier that set aside L2 gives it back. */
    ck_assert_int_eq(agent_tier_hbm_l2_hint(t, &e, 4096, 1.0f), 0);
    ck_assert_int_eq(fake_count("l2_limit"), 4096);
    finish(t, false);
    ck_assert_int_eq(fake_count("l2_limit"), 0);
}
END_TEST

START_TEST(test_l2_unsupported)
{
    struct agent_tier_config cfg = {
        .capacity = 1 << 20,
        .cuda_lib = FAKE_CUDART,
        .gpu = 1, /* the stand-in's device 1 has no persisting L2 */
    };
    struct agent_tier_config dcfg = {.capacity = 1 << 20};
    struct agent_tier *t = NULL, *d = NULL;
    struct agent_tier_extent e;
    struct agent_tier_stats st;
    long calls = fake_count("set_attr");

    ck_assert_int_eq(agent_tier_create(AGENT_TIER_HBM, &cfg, &t), 0);
    agent_tier_stats(t, &st);
    ck_assert_uint_eq(st.l2_persist_max, 0);
    ck_assert_int_eq(agent_tier_alloc(t, 4096, &e), 0);
    ck_assert_int_eq(agent_tier_hbm_l2_hint(t, &e, 4096, 1.0f), -ENOTSUP);
    ck_assert_int_eq(fake_count("set_attr"), calls);
    put_pattern(t, &e, 8);
    assert_content(t, &e, 8);
    /* Only HBM tiers take the hint. */
    ck_assert_int_eq(agent_tier_create(AGENT_TIER_DRAM, &dcfg, &d), 0);
    ck_assert_int_eq(agent_tier_alloc(d, 4096, &e), 0);
    ck_assert_int_eq(agent_tier_hbm_l2_hint(d, &e, 4096, 1.0f), -EINVAL);
    agent_tier_destroy(d);
    finish(t, false);
}
END_TEST

/* --- A real GPU, when there is one -------------------------------------
 *
 * The one check that uses the host's own CUDA runtime. Without a GPU it
 * says SKIP and why; with one it runs round trips around the staging
 * boundaries and the L2 hint on the device itself.
 */

START_TEST(test_real_gpu)
{
    static const uint64_t sizes[] = {1, 4097, (2 << 20) + 1, (5 << 20) + 3};
    struct agent_tier_config cfg = {.capacity = 64 << 20};
    struct agent_tier *t = NULL;
    struct agent_tier_extent e;
    struct agent_tier_stats st;
    uint64_t sum;
    uint8_t *want;
    size_t i;
    int rc;

    rc = agent_tier_create(AGENT_TIER_HBM, &cfg, &t);
    if (rc == -EOPNOTSUPP || rc == -ENOSYS || rc == -ENODEV) {
        fprintf(stderr,
                "SKIP test_real_gpu: no usable GPU on this machine (%s; "
                "the log line above says why)\n",
                strerror(-rc));
        return;
    }
    ck_assert_int_eq(rc, 0);
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        ck_assert_int_eq(agent_tier_alloc(t, sizes[i], &e), 0);
        put_pattern(t, &e, sizes[i]);
        assert_content(t, &e, sizes[i]);
        want = malloc(sizes[i]);
        ck_assert_ptr_nonnull(want);
        fill(want, sizes[i], sizes[i]);
        ck_assert_int_eq(agent_tier_checksum(t, &e, sizes[i], &sum), 0);
        ck_assert_uint_eq(sum, XXH3_64bits(want, sizes[i]));
        free(want);
        ck_assert_int_eq(agent_tier_free(t, &e), 0);
    }
    agent_tier_stats(t, &st);
    ck_assert(!st.emulated);
    ck_assert_uint_eq(st.io_errors, 0);
    ck_assert_int_eq(agent_tier_alloc(t, 1 << 20, &e), 0);
    rc = agent_tier_hbm_l2_hint(t, &e, 1 << 20, 1.0f);
    ck_assert_int_eq(rc, st.l2_persist_max ? 0 : -ENOTSUP);
    if (rc == 0)
        ck_assert_int_eq(agent_tier_hbm_l2_hint(t, &e, 0, 0.0f), 0);
    ck_assert_int_eq(agent_tier_free(t, &e), 0);
    /* dma-buf export of the region for NICs: works with CUDA 11.7+ and
     * the open kernel modules; else says why (the fabric then tries
     * nvidia-peermem).  Never run here: no GPU. */
    {
        char why[300] = "";
        uint64_t len = 0;
        int fd = -1;

        rc = agent_tier_hbm_dmabuf(t, &fd, &len, why, sizeof why);
        if (rc == 0) {
            ck_assert_int_ge(fd, 0);
            ck_assert_uint_eq(len, 64 << 20);
            close(fd);
        } else {
            ck_assert_int_lt(rc, 0);
            ck_assert_msg(why[0], "no reason given for %d", rc);
            fprintf(stderr, "SKIP test_real_gpu dma-buf: %s\n", why);
        }
    }
    ck_assert_int_eq(agent_tier_check(t), 0);
    agent_tier_destroy(t);
}
END_TEST

/* --- Threads ------------------------------------------------------------
 */

struct worker {
    struct agent_tier *t; /* the shared tier */
    uint64_t seed;        /* this worker's pattern seed */
    int failures;         /* mismatches or errors seen */
};

/* Allocates, writes, reads back and frees, over and over: reads and
 * writes from several threads share the two staging lanes. */
static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    struct agent_tier_extent e;
    uint8_t *a = malloc(150000), *b = malloc(150000);
    uint64_t s = w->seed, len;
    int i;

    for (i = 0; i < 40; i++) {
        len = 1 + xorshift(&s) % 150000;
        if (agent_tier_alloc(w->t, len, &e) < 0) {
            w->failures++;
            continue;
        }
        fill(a, len, s);
        if (agent_tier_write(w->t, &e, 0, a, len) < 0 ||
            agent_tier_read(w->t, &e, 0, b, len) < 0 || memcmp(a, b, len))
            w->failures++;
        if (agent_tier_free(w->t, &e) < 0)
            w->failures++;
    }
    free(a);
    free(b);
    return NULL;
}

START_TEST(test_threads)
{
    bool emulate = _i;
    struct agent_tier *t = make_hbm(emulate, 8 << 20, 32 << 10);
    struct worker w[4];
    pthread_t th[4];
    int i;

    for (i = 0; i < 4; i++) {
        w[i] = (struct worker){.t = t, .seed = (uint64_t)i * 77 + 1};
        ck_assert_int_eq(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(w[i].failures, 0);
    }
    finish(t, emulate);
}
END_TEST

/* --- The region for NICs -------------------------------------------------
 */

START_TEST(test_nic_region)
{
    struct agent_tier *t = make_hbm(false, (1 << 20) + 256, 0);
    struct agent_tier *em = make_hbm(true, 1 << 20, 0);
    struct agent_tier_config dc = {.capacity = 1 << 20};
    struct agent_tier *dram = NULL;
    struct agent_tier_extent e;
    char why[300] = "";
    uint64_t len = 0;
    void *base = NULL;
    bool device = false;
    struct stat st;
    int fd = -1;

    ck_assert_int_eq(agent_tier_hbm_region(t, &base, &len, &device), 0);
    ck_assert_ptr_nonnull(base);
    ck_assert_uint_eq(len, (1 << 20) + 256);
    ck_assert(device);
    ck_assert_int_eq(agent_tier_hbm_region(em, &base, &len, &device), 0);
    ck_assert(!device);
    ck_assert_uint_eq(len, 1 << 20);
    ck_assert_int_eq(agent_tier_create(AGENT_TIER_DRAM, &dc, &dram), 0);
    ck_assert_int_eq(agent_tier_hbm_region(dram, &base, &len, &device),
                     -EINVAL);

    /* Emulated: host memory needs no dma-buf. */
    ck_assert_int_eq(agent_tier_hbm_dmabuf(em, &fd, &len, why, sizeof why),
                     -ENOTSUP);
    ck_assert_str_eq(why, "the emulated HBM tier is host memory");
    ck_assert_int_eq(agent_tier_hbm_dmabuf(dram, &fd, &len, why, sizeof why),
                     -EINVAL);
    ck_assert_str_eq(why, "not an HBM tier");
    /* The stand-in's driver answers as a GPU without dma-buf does. */
    unsetenv("FAKE_CUDART_DMABUF");
    ck_assert_int_eq(agent_tier_hbm_dmabuf(t, &fd, &len, why, sizeof why),
                     -EOPNOTSUPP);
    ck_assert_str_eq(why, "cuMemGetHandleForAddressRange(DMA_BUF_FD) on GPU "
                          "0: operation not supported (CUresult 801)");
    ck_assert_int_eq(fd, -1);
    /* Exported: an fd over the region rounded up to whole pages (the
     * stand-in refuses a range past a live allocation, so the tier
     * allocated the last page whole), the device memory still in use. */
    setenv("FAKE_CUDART_DMABUF", "memfd", 1);
    ck_assert_int_eq(agent_tier_hbm_dmabuf(t, &fd, &len, why, sizeof why), 0);
    unsetenv("FAKE_CUDART_DMABUF");
    ck_assert_int_ge(fd, 0);
    ck_assert_uint_eq(len, (1 << 20) + 4096);
    ck_assert_int_eq(fstat(fd, &st), 0);
    ck_assert_int_eq(st.st_size, (1 << 20) + 4096);
    close(fd);
    /* So every extent, the last one too, lies inside the export. */
    ck_assert_int_eq(agent_tier_alloc(t, (1 << 20) + 256, &e), 0);
    ck_assert_uint_le(e.off + e.len, len);
    put_pattern(t, &e, 5);
    agent_tier_free(t, &e);
    ck_assert_int_eq(agent_tier_alloc(t, 4096, &e), 0);
    put_pattern(t, &e, 6);
    agent_tier_free(t, &e);
    agent_tier_destroy(dram);
    agent_tier_destroy(em);
    agent_tier_destroy(t);
}
END_TEST

/* Device addresses the CPU cannot touch, as on a real GPU: the tier's
 * bytes still round-trip (only CUDA copies reach them), and the region
 * handed to NICs is such an address (the fabric's plain registration
 * then fails without nvidia-peermem: integration/rxe/scenario_hbm.sh). */
START_TEST(test_device_va)
{
    struct agent_tier *t;
    struct agent_tier_extent e;
    uint64_t len;
    void *base;
    bool device;
    int fds[2];

    setenv("FAKE_CUDART_DEVICE_VA", "1", 1);
    t = make_hbm(false, 1 << 20, 0);
    unsetenv("FAKE_CUDART_DEVICE_VA");
    ck_assert_int_eq(agent_tier_alloc(t, 300000, &e), 0);
    put_pattern(t, &e, 9);
    assert_content(t, &e, 9);
    ck_assert_int_eq(agent_tier_hbm_region(t, &base, &len, &device), 0);
    ck_assert(device);
    /* The kernel cannot read it either: write(2) from it is EFAULT. */
    ck_assert_int_eq(pipe(fds), 0);
    errno = 0;
    ck_assert_int_eq(write(fds[1], (char *)base + e.off, 1), -1);
    ck_assert_int_eq(errno, EFAULT);
    close(fds[0]);
    close(fds[1]);
    agent_tier_free(t, &e);
    finish(t, false);
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("tier_hbm");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_create_destroy);
    tcase_add_loop_test(tc, test_create_errors, 0,
                        sizeof(create_cases) / sizeof(create_cases[0]));
    tcase_add_test(tc, test_sram_is_not_a_store);
    tcase_add_loop_test(tc, test_round_trip, 0, 2 * RT_CASES);
    tcase_add_loop_test(tc, test_unaligned, 0, 2);
    tcase_add_loop_test(tc, test_enospc_keeps_data, 0, 2);
    tcase_add_loop_test(tc, test_ranges, 0, 2);
    tcase_add_test(tc, test_copy_failures);
    tcase_add_loop_test(tc, test_copy_chain, 0, 2);
    tcase_add_test(tc, test_emulated_flag);
    tcase_add_test(tc, test_emulated_ops_direct);
    tcase_add_test(tc, test_l2_hint);
    tcase_add_test(tc, test_l2_unsupported);
    tcase_add_loop_test(tc, test_threads, 0, 2);
    tcase_add_test(tc, test_real_gpu);
    tcase_add_test(tc, test_nic_region);
    tcase_add_test(tc, test_device_va);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
