/*
 * HBM tier: one region of GPU memory, cudaMalloc'd once at init and
 * carved by the TLSF allocator in tier.c, with bytes moved through pinned
 * host staging buffers on dedicated CUDA streams. Also the SRAM/L2
 * residency hint, which is a property of this tier's device.
 *
 * Where it sits: "execute", beside the DRAM and NVMe backends. The CUDA
 * runtime comes from agent/cudart.c (dlopen), so nothing here needs a GPU
 * to build, and the tests run this exact code against a stand-in runtime
 * (tests/fake_cudart.c).
 *
 * Why one region: cudaMalloc and cudaFree synchronise the whole device
 * and take milliseconds; an allocation per object would stall every
 * kernel on the GPU. Carving one region costs what DRAM costs.
 *
 * Why pinned staging: the GPU's copy engines DMA only from page-locked
 * memory. A copy from pageable memory is split by the driver into chunks
 * that it first copies into its own pinned buffer, synchronously, so it
 * is slower and never overlaps with anything. We do the same staging
 * ourselves with buffers we pinned once (cudaHostAlloc), in two halves:
 * while the copy engine moves one half, the CPU fills or drains the
 * other, so the host copy and the DMA overlap. Callers hand us any
 * pointer; registering every caller buffer (cudaHostRegister) would cost
 * more than the copy for the object sizes we see.
 *
 * Emulated mode (cfg->emulate, "hbm (emulated)") runs the same allocator
 * and the same staging loop, with a host mapping standing in for the
 * device region and memcpy for the DMA; stats say emulated = true and the
 * L2 hint answers -ENOTSUP. Nothing else differs.
 *
 * Thread-safety: as for every tier (tier.h). alloc, free, stats, check
 * and the L2 hint take the tier's mutex. Writes share one staging lane
 * (host to device) and reads another (device to host), each behind its
 * own mutex, so a read and a write overlap (the copy engines are full
 * duplex) but two reads, or two writes, take turns.
 */
#include "tier.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cudart.h"

/* cudaMalloc aligns to 256 bytes; so does every object, which keeps each
 * one aligned for the widest vector loads a kernel makes. */
#define HBM_GRANULE 256u
/* Each staging half is at least a page, and a whole number of pages. */
#define HBM_PAGE        4096u
#define HBM_STAGING_MIN (2u * HBM_PAGE)
#define HBM_STAGING_MAX (1u << 30)

/* The two transfer directions, each with its own stream and staging. */
enum { LANE_H2D, LANE_D2H, LANE_COUNT };

/* One direction of transfer. */
struct hbm_lane {
    pthread_mutex_t lock; /* one transfer at a time owns the staging */
    void *stream;         /* cudaStream_t; NULL when emulated */
    uint8_t *stage;       /* pinned staging buffer, two halves */
    size_t half;          /* bytes per half: the chunk of one copy */
    int kind;             /* AGENT_CUDA_COPY_H2D or AGENT_CUDA_COPY_D2H */
    bool ready;           /* lock, stream and staging were set up */
};

/* The HBM backend's state; base comes first for AGENT_CONTAINER_OF. */
struct hbm_tier {
    struct agent_tier base;   /* the generic part */
    pthread_mutex_t lock;     /* guards alloc, alloc_fail and the L2 state */
    struct agent_tlsf *alloc; /* block metadata, outside the region */
    struct agent_cuda cuda;   /* the runtime; all zero when emulated */
    bool emulated;            /* host memory stands in for the device */
    const char *name;         /* log name: "hbm" or "hbm (emulated)" */
    int gpu;                  /* CUDA device ordinal */
    uint8_t *dev;             /* the region: device or host address */
    uint64_t capacity;        /* bytes the allocator hands out */
    uint64_t region_len;      /* capacity rounded up to whole pages: what
                                 is allocated, and what a dma-buf covers,
                                 so a NIC reaches every extent */
    struct hbm_lane lane[LANE_COUNT]; /* write and read staging */
    uint64_t alloc_fail;              /* allocations refused with -ENOSPC */
    uint64_t io_errors;      /* failed CUDA copies; updated atomically */
    uint64_t l2_persist_max; /* device's persisting L2 bytes, 0: none */
    uint64_t l2_window_max;  /* device's largest access-policy window */
    uint64_t l2_window;      /* bytes under the current window */
    bool l2_limit_set;       /* we changed the persisting L2 set-aside */
};

static struct hbm_tier *
hbm_of(struct agent_tier *t)
{
    return AGENT_CONTAINER_OF(t, struct hbm_tier, base);
}

static bool
is_hbm(const struct agent_tier *t)
{
    return t->ops == &agent_tier_hbm_ops ||
           t->ops == &agent_tier_hbm_emulated_ops;
}

/* Logs a failed CUDA call made outside the I/O path and translates it. */
static int
cuda_failed(struct hbm_tier *h, const char *what, int err)
{
    agent_tier_log(h->name, "%s on GPU %d failed: %s (cudaError %d)", what,
                   h->gpu, agent_cuda_strerror(&h->cuda, err), err);
    return agent_cuda_errno(err);
}

/* Counts a failed copy. The log is rate-limited to the 1st, 2nd, 4th,
 * 8th... failure: a lost device fails every copy, and the counter already
 * says how many. */
static int
io_failed(struct hbm_tier *h, const char *what, int err)
{
    uint64_t n = __atomic_add_fetch(&h->io_errors, 1, __ATOMIC_RELAXED);

    if ((n & (n - 1)) == 0)
        agent_tier_log(h->name,
                       "%s on GPU %d failed: %s (cudaError %d; %llu I/O "
                       "errors so far)",
                       what, h->gpu, agent_cuda_strerror(&h->cuda, err), err,
                       (unsigned long long)n);
    return agent_cuda_errno(err);
}

/* --- Device selection ---------------------------------------------------
 *
 * CUDA's current device is per host thread. Setup, teardown and the L2
 * limit need ours current; the copies do not (a copy on a stream runs on
 * the stream's device whatever is current). The caller's current device
 * is put back so that the agent's threads see no side effect.
 */

static int
enter_device(struct hbm_tier *h, int *prev)
{
    int err;

    if (h->cuda.get_device(prev) != 0)
        *prev = -1;
    if (*prev == h->gpu)
        return 0;
    err = h->cuda.set_device(h->gpu);
    if (err)
        return cuda_failed(h, "cudaSetDevice", err);
    return 0;
}

static void
leave_device(struct hbm_tier *h, int prev)
{
    if (prev >= 0 && prev != h->gpu)
        (void)h->cuda.set_device(prev);
}

/* --- Setup --------------------------------------------------------------
 */

/* Loads the runtime and checks that cfg->gpu is a device it can use. */
static int
open_runtime(struct hbm_tier *h, const char *lib)
{
    int n = 0, err, rc;

    rc = agent_cuda_open(lib, &h->cuda);
    if (rc == -EOPNOTSUPP) {
        agent_tier_log(h->name,
                       "no CUDA runtime (%s not loadable): no HBM tier; "
                       "--emulate-hbm gives an emulated one",
                       lib && *lib ? lib : "libcudart.so");
        return rc;
    }
    if (rc < 0) {
        agent_tier_log(h->name,
                       "CUDA runtime %s lacks the device functions we need",
                       h->cuda.name);
        return rc;
    }
    if (!h->cuda.memory_api) {
        agent_tier_log(h->name, "CUDA runtime %s lacks %s", h->cuda.name,
                       h->cuda.first_missing);
        rc = -ENOSYS;
        goto fail;
    }
    err = h->cuda.get_device_count(&n);
    if (err) {
        /* Whatever the reason (no driver, a driver too old, no device),
         * this node has no usable GPU. */
        agent_tier_log(h->name, "CUDA runtime %s: no usable GPU: %s",
                       h->cuda.name, agent_cuda_strerror(&h->cuda, err));
        rc = -ENODEV;
        goto fail;
    }
    if (h->gpu >= n) {
        agent_tier_log(h->name, "GPU %d not found: %s sees %d device(s)",
                       h->gpu, h->cuda.name, n);
        rc = -ENODEV;
        goto fail;
    }
    return 0;

fail:
    agent_cuda_close(&h->cuda);
    return rc;
}

/* Reads the device's L2 persistence limits; a failed query means none. */
static void
read_l2_limits(struct hbm_tier *h)
{
    int persist = 0, window = 0;

    if (!h->cuda.stream_set_attribute || !h->cuda.device_set_limit)
        return;
    if (h->cuda.device_get_attribute(
            &persist, AGENT_CUDA_ATTR_MAX_PERSISTING_L2, h->gpu) != 0 ||
        h->cuda.device_get_attribute(&window, AGENT_CUDA_ATTR_MAX_WINDOW,
                                     h->gpu) != 0 ||
        persist <= 0 || window <= 0)
        return;
    h->l2_persist_max = (uint64_t)persist;
    h->l2_window_max = (uint64_t)window;
}

static int
region_alloc(struct hbm_tier *h)
{
    size_t free_b = 0, total_b = 0;
    void *p;
    int err;

    if (h->emulated) {
        /* Untouched pages cost nothing, like unused device memory. */
        p = mmap(NULL, (size_t)h->region_len, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            agent_tier_log(h->name, "cannot map %llu bytes: %s",
                           (unsigned long long)h->region_len, strerror(errno));
            return -ENOMEM;
        }
        (void)madvise(p, (size_t)h->region_len, MADV_DONTDUMP);
        h->dev = p;
        return 0;
    }
    err = h->cuda.dev_malloc(&p, (size_t)h->region_len);
    if (err) {
        (void)h->cuda.mem_get_info(&free_b, &total_b);
        agent_tier_log(h->name,
                       "cudaMalloc of %llu bytes on GPU %d failed: %s "
                       "(cudaError %d; %zu of %zu bytes free)",
                       (unsigned long long)h->region_len, h->gpu,
                       agent_cuda_strerror(&h->cuda, err), err, free_b,
                       total_b);
        return agent_cuda_errno(err);
    }
    h->dev = p;
    return 0;
}

static void
region_free(struct hbm_tier *h)
{
    int err;

    if (h->emulated) {
        munmap(h->dev, (size_t)h->region_len);
        return;
    }
    err = h->cuda.dev_free(h->dev);
    if (err)
        (void)cuda_failed(h, "cudaFree", err);
}

static void
lane_fini(struct hbm_tier *h, struct hbm_lane *l)
{
    int err;

    if (!l->ready)
        return;
    if (h->emulated) {
        free(l->stage);
    } else {
        /* Every transfer drains its stream before it returns, so there
         * is nothing in flight to wait for. */
        err = h->cuda.stream_destroy(l->stream);
        if (err)
            (void)cuda_failed(h, "cudaStreamDestroy", err);
        err = h->cuda.free_host(l->stage);
        if (err)
            (void)cuda_failed(h, "cudaFreeHost", err);
    }
    pthread_mutex_destroy(&l->lock);
    l->ready = false;
}

static int
lane_init(struct hbm_tier *h, struct hbm_lane *l, int kind, size_t half)
{
    void *p;
    int err, rc;

    l->kind = kind;
    l->half = half;
    rc = -pthread_mutex_init(&l->lock, NULL);
    if (rc < 0)
        return rc;
    if (h->emulated) {
        if (posix_memalign(&p, HBM_PAGE, 2 * half)) {
            rc = -ENOMEM;
            goto fail_stage;
        }
        l->stage = p;
        l->ready = true;
        return 0;
    }
    /* cudaHostAlloc rather than cudaHostRegister on our own buffer: the
     * runtime picks memory it can map for the device in one piece. */
    err = h->cuda.host_alloc(&p, 2 * half, AGENT_CUDA_HOST_ALLOC_DEFAULT);
    if (err) {
        rc = cuda_failed(h, "cudaHostAlloc of the staging buffer", err);
        goto fail_stage;
    }
    l->stage = p;
    /* Non-blocking: a stream created plain synchronises with the legacy
     * stream 0, so any other stream-0 user in the process would stall
     * our copies and be stalled by them. */
    err = h->cuda.stream_create(&l->stream, AGENT_CUDA_STREAM_NON_BLOCKING);
    if (err) {
        rc = cuda_failed(h, "cudaStreamCreateWithFlags", err);
        goto fail_stream;
    }
    l->ready = true;
    return 0;

fail_stream:
    (void)h->cuda.free_host(l->stage);
fail_stage:
    pthread_mutex_destroy(&l->lock);
    return rc;
}

static int
hbm_init(struct agent_tier *t, const struct agent_tier_config *cfg)
{
    struct hbm_tier *h = hbm_of(t);
    uint64_t staging = cfg->staging ? cfg->staging : AGENT_TIER_HBM_STAGING;
    size_t half;
    int rc, prev = -1, i = 0;

    h->emulated = t->ops == &agent_tier_hbm_emulated_ops;
    h->name = t->ops->name;
    h->gpu = cfg->gpu;
    if (cfg->capacity < HBM_GRANULE || cfg->capacity > (1ull << 62)) {
        agent_tier_log(h->name, "capacity %llu is outside [%u, 2^62] bytes",
                       (unsigned long long)cfg->capacity, HBM_GRANULE);
        return -EINVAL;
    }
    if (staging < HBM_STAGING_MIN || staging > HBM_STAGING_MAX) {
        agent_tier_log(h->name, "staging %llu is outside [%u, %u] bytes",
                       (unsigned long long)staging, HBM_STAGING_MIN,
                       HBM_STAGING_MAX);
        return -EINVAL;
    }
    if (cfg->gpu < 0 && !h->emulated) {
        agent_tier_log(h->name, "GPU ordinal %d is negative", cfg->gpu);
        return -EINVAL;
    }
    h->capacity = cfg->capacity & ~(uint64_t)(HBM_GRANULE - 1);
    /* NICs register whole pages (a dma-buf export covers whole pages):
     * allocating the tail page's rest too, unused, lets the
     * registration cover the last extents as well. */
    h->region_len = (h->capacity + HBM_PAGE - 1) & ~(uint64_t)(HBM_PAGE - 1);
    half = (size_t)(staging / 2) & ~(size_t)(HBM_PAGE - 1);

    rc = agent_tlsf_create(h->capacity, HBM_GRANULE, &h->alloc);
    if (rc < 0)
        goto fail_tlsf;
    rc = -pthread_mutex_init(&h->lock, NULL);
    if (rc < 0)
        goto fail_lock;
    if (!h->emulated) {
        rc = open_runtime(h, cfg->cuda_lib);
        if (rc < 0)
            goto fail_runtime;
        rc = enter_device(h, &prev);
        if (rc < 0)
            goto fail_device;
        read_l2_limits(h);
    }
    rc = region_alloc(h);
    if (rc < 0)
        goto fail_region;
    for (i = 0; i < LANE_COUNT; i++) {
        rc = lane_init(
            h, &h->lane[i],
            i == LANE_H2D ? AGENT_CUDA_COPY_H2D : AGENT_CUDA_COPY_D2H, half);
        if (rc < 0)
            goto fail_lanes;
    }
    if (h->emulated) {
        agent_tier_log(h->name,
                       "EMULATED: %llu bytes of host memory stand in for "
                       "HBM; no GPU is used",
                       (unsigned long long)h->capacity);
    } else {
        leave_device(h, prev);
        agent_tier_log(h->name,
                       "GPU %d via %s: %llu bytes, pinned staging %zu bytes "
                       "per direction, "
                       "persisting L2 %llu bytes",
                       h->gpu, h->cuda.name, (unsigned long long)h->capacity,
                       2 * half, (unsigned long long)h->l2_persist_max);
    }
    return 0;

fail_lanes:
    while (i-- > 0)
        lane_fini(h, &h->lane[i]);
    region_free(h);
fail_region:
    if (!h->emulated)
        leave_device(h, prev);
fail_device:
    if (!h->emulated)
        agent_cuda_close(&h->cuda);
fail_runtime:
    pthread_mutex_destroy(&h->lock);
fail_lock:
    agent_tlsf_destroy(h->alloc);
fail_tlsf:
    return rc;
}

static void
hbm_fini(struct agent_tier *t)
{
    struct hbm_tier *h = hbm_of(t);
    int i, prev = -1;

    if (!h->emulated && enter_device(h, &prev) < 0)
        prev = -1;
    /* The set-aside is per device context and outlives the tier; give
     * the L2 back to ordinary accesses. */
    if (h->l2_limit_set)
        (void)h->cuda.device_set_limit(AGENT_CUDA_LIMIT_PERSISTING_L2, 0);
    for (i = LANE_COUNT - 1; i >= 0; i--)
        lane_fini(h, &h->lane[i]);
    region_free(h);
    if (!h->emulated) {
        leave_device(h, prev);
        agent_cuda_close(&h->cuda);
    }
    pthread_mutex_destroy(&h->lock);
    agent_tlsf_destroy(h->alloc);
}

/* --- Extents ------------------------------------------------------------
 */

static int
hbm_alloc(struct agent_tier *t, uint64_t len, struct agent_tier_extent *out)
{
    struct hbm_tier *h = hbm_of(t);

    return agent_tlsf_alloc_extent(h->alloc, &h->lock, len, 0, &h->alloc_fail,
                                   out);
}

static int
hbm_free(struct agent_tier *t, const struct agent_tier_extent *e)
{
    struct hbm_tier *h = hbm_of(t);

    return agent_tlsf_free_extent(h->alloc, &h->lock, e);
}

/* --- Transfers ----------------------------------------------------------
 *
 * A transfer is a loop over chunks of one staging half. Chunk i uses half
 * i % 2, so the CPU's memcpy of one chunk overlaps the copy engine's DMA
 * of the next (reads) or the previous (writes). One stream per lane keeps
 * the copies in order, so synchronising the stream before issuing chunk i
 * proves chunk i - 1 done and its half free again, without events.
 */

static int
lane_copy(struct hbm_tier *h, struct hbm_lane *l, void *dst, const void *src,
          size_t n)
{
    int err;

    if (h->emulated) {
        memcpy(dst, src, n);
        return 0;
    }
    err = h->cuda.memcpy_async(dst, src, n, l->kind, l->stream);
    return err ? io_failed(h, "cudaMemcpyAsync", err) : 0;
}

static int
lane_sync(struct hbm_tier *h, struct hbm_lane *l)
{
    int err;

    if (h->emulated)
        return 0;
    err = h->cuda.stream_synchronize(l->stream);
    return err ? io_failed(h, "cudaStreamSynchronize", err) : 0;
}

/* After a failure: waits for whatever is still in flight, so the next
 * transfer can reuse the staging, without counting the error twice. */
static void
lane_drain(struct hbm_tier *h, struct hbm_lane *l)
{
    if (!h->emulated)
        (void)h->cuda.stream_synchronize(l->stream);
}

static int
hbm_write(struct agent_tier *t, const struct agent_tier_extent *e,
          uint64_t off, const void *src, size_t len)
{
    struct hbm_tier *h = hbm_of(t);
    struct hbm_lane *l = &h->lane[LANE_H2D];
    const uint8_t *s = src;
    uint8_t *dst, *buf;
    size_t done, n;
    unsigned i;
    int rc = 0;

    if (!agent_tier_extent_inside(h->capacity, e))
        return -EINVAL;
    dst = h->dev + e->off + off;
    pthread_mutex_lock(&l->lock);
    for (i = 0, done = 0; done < len && rc == 0; i++, done += n) {
        n = len - done < l->half ? len - done : l->half;
        buf = l->stage + (i & 1) * l->half;
        /* This half's previous chunk (i - 2) finished before chunk i - 1
         * was issued, so it may be refilled while i - 1 is in flight. */
        memcpy(buf, s + done, n);
        if (i > 0)
            rc = lane_sync(h, l);
        if (rc == 0)
            rc = lane_copy(h, l, dst + done, buf, n);
    }
    if (rc == 0)
        rc = lane_sync(h, l);
    else
        lane_drain(h, l);
    pthread_mutex_unlock(&l->lock);
    return rc;
}

static int
hbm_read(struct agent_tier *t, const struct agent_tier_extent *e, uint64_t off,
         void *dst, size_t len)
{
    struct hbm_tier *h = hbm_of(t);
    struct hbm_lane *l = &h->lane[LANE_D2H];
    const uint8_t *src;
    uint8_t *d = dst;
    size_t done, n, next;
    unsigned i;
    int rc;

    if (!agent_tier_extent_inside(h->capacity, e))
        return -EINVAL;
    src = h->dev + e->off + off;
    pthread_mutex_lock(&l->lock);
    n = len < l->half ? len : l->half;
    rc = lane_copy(h, l, l->stage, src, n);
    for (i = 0, done = 0; rc == 0 && done < len; i++, done = next) {
        n = len - done < l->half ? len - done : l->half;
        next = done + n;
        rc = lane_sync(h, l);
        if (rc < 0)
            break;
        /* Chunk i is in; start chunk i + 1 into the other half, whose
         * chunk (i - 1) was drained last round, then drain chunk i. */
        if (next < len)
            rc =
                lane_copy(h, l, l->stage + ((i + 1) & 1) * l->half, src + next,
                          len - next < l->half ? len - next : l->half);
        memcpy(d + done, l->stage + (i & 1) * l->half, n);
    }
    if (rc < 0)
        lane_drain(h, l);
    pthread_mutex_unlock(&l->lock);
    return rc;
}

static void *
hbm_map(struct agent_tier *t, const struct agent_tier_extent *e)
{
    /* Device memory is not host-addressable. The emulated tier refuses
     * too, so that it exercises the same copy paths as the real one. */
    (void)t;
    (void)e;
    return NULL;
}

static void
hbm_stats(struct agent_tier *t, struct agent_tier_stats *out)
{
    struct hbm_tier *h = hbm_of(t);

    pthread_mutex_lock(&h->lock);
    agent_tlsf_stats(h->alloc, out);
    out->alloc_fail = h->alloc_fail;
    out->l2_window = h->l2_window;
    pthread_mutex_unlock(&h->lock);
    out->io_errors = __atomic_load_n(&h->io_errors, __ATOMIC_RELAXED);
    out->l2_persist_max = h->l2_persist_max;
    out->emulated = h->emulated;
}

static int
hbm_check(struct agent_tier *t)
{
    struct hbm_tier *h = hbm_of(t);
    int rc;

    pthread_mutex_lock(&h->lock);
    rc = agent_tlsf_check(h->alloc);
    pthread_mutex_unlock(&h->lock);
    return rc;
}

const struct agent_tier_ops agent_tier_hbm_ops = {
    .name = "hbm",
    .size = sizeof(struct hbm_tier),
    .init = hbm_init,
    .fini = hbm_fini,
    .alloc = hbm_alloc,
    .free = hbm_free,
    .read = hbm_read,
    .write = hbm_write,
    .map = hbm_map,
    .stats = hbm_stats,
    .check = hbm_check,
};

/* The same functions; only the name, and what init sets up, differ. */
const struct agent_tier_ops agent_tier_hbm_emulated_ops = {
    .name = "hbm (emulated)",
    .size = sizeof(struct hbm_tier),
    .init = hbm_init,
    .fini = hbm_fini,
    .alloc = hbm_alloc,
    .free = hbm_free,
    .read = hbm_read,
    .write = hbm_write,
    .map = hbm_map,
    .stats = hbm_stats,
    .check = hbm_check,
};

/* --- The region for NICs ------------------------------------------------
 */

int
agent_tier_hbm_region(struct agent_tier *t, void **base, uint64_t *len,
                      bool *device)
{
    struct hbm_tier *h;

    if (!t || !is_hbm(t) || !base || !len || !device)
        return -EINVAL;
    h = hbm_of(t);
    *base = h->dev;
    *len = h->capacity;
    *device = !h->emulated;
    return 0;
}

int
agent_tier_hbm_dmabuf(struct agent_tier *t, int *fd, uint64_t *len, char *why,
                      size_t whylen)
{
    struct agent_cuda_driver drv;
    struct hbm_tier *h;
    uint64_t n;
    int rc, err, prev = -1, got = -1;

    if (!t || !is_hbm(t) || !fd || !len) {
        snprintf(why, whylen, "not an HBM tier");
        return -EINVAL;
    }
    h = hbm_of(t);
    if (h->emulated) {
        snprintf(why, whylen, "the emulated HBM tier is host memory");
        return -ENOTSUP;
    }
    /* dma-buf export works on whole pages: the region was allocated
     * rounded up to them. */
    n = h->region_len;
    rc = agent_cuda_driver_open(&h->cuda, &drv);
    if (rc == -EOPNOTSUPP) {
        snprintf(why, whylen, "no CUDA driver API (%s not loadable)",
                 drv.name);
        return rc;
    }
    if (rc < 0) {
        snprintf(why, whylen,
                 "CUDA driver %s lacks cuMemGetHandleForAddressRange "
                 "(CUDA 11.7 or later)",
                 drv.name);
        return -EOPNOTSUPP;
    }
    /* cudaSetDevice makes the device's primary context, which owns the
     * region, current on this thread for the driver call. */
    rc = enter_device(h, &prev);
    if (rc < 0) {
        snprintf(why, whylen, "cannot make GPU %d current", h->gpu);
        agent_cuda_driver_close(&drv);
        return rc;
    }
    err = drv.init(0);
    if (!err)
        err = drv.get_handle(&got, (unsigned long long)(uintptr_t)h->dev,
                             (size_t)n, AGENT_CUDA_RANGE_HANDLE_DMA_BUF_FD, 0);
    leave_device(h, prev);
    if (err) {
        snprintf(why, whylen,
                 "cuMemGetHandleForAddressRange(DMA_BUF_FD) on GPU %d: %s "
                 "(CUresult %d)",
                 h->gpu, agent_cuda_driver_strerror(&drv, err), err);
        agent_cuda_driver_close(&drv);
        return agent_cuda_errno(err);
    }
    agent_cuda_driver_close(&drv);
    if (got < 0) {
        snprintf(why, whylen,
                 "cuMemGetHandleForAddressRange returned no descriptor");
        return -EIO;
    }
    *fd = got;
    *len = n;
    return 0;
}

/* --- SRAM/L2 residency hint ---------------------------------------------
 */

int
agent_tier_hbm_l2_hint(struct agent_tier *t, const struct agent_tier_extent *e,
                       uint64_t bytes, float hit_ratio)
{
    union agent_cuda_window w;
    struct hbm_tier *h;
    uint64_t setaside;
    int rc, err, prev, i;

    if (!t || !e || !is_hbm(t))
        return -EINVAL;
    h = hbm_of(t);
    /* Checked before the arguments: callers probe support with any
     * extent, and an emulated tier must never look like it has L2. */
    if (h->emulated || !h->l2_persist_max)
        return -ENOTSUP;
    if (!(hit_ratio >= 0.0f && hit_ratio <= 1.0f))
        return -EINVAL;
    if (bytes > e->len)
        return -ERANGE;

    pthread_mutex_lock(&h->lock);
    if (!agent_tier_extent_inside(h->capacity, e) ||
        agent_tlsf_lookup(h->alloc, e->off, e->len) < 0) {
        rc = -EINVAL;
        goto out;
    }
    if (bytes > h->l2_window_max)
        bytes = h->l2_window_max;
    setaside = bytes < h->l2_persist_max ? bytes : h->l2_persist_max;
    /* A window bigger than the set-aside would have its persisting lines
     * evict each other; the CUDA guide's remedy is to scale the ratio. */
    if (bytes > setaside)
        hit_ratio = hit_ratio * (float)setaside / (float)bytes;

    memset(&w, 0, sizeof(w));
    w.value.base_ptr = bytes ? h->dev + e->off : NULL;
    w.value.num_bytes = (size_t)bytes;
    w.value.hit_ratio = bytes ? hit_ratio : 0.0f;
    w.value.hit_prop =
        bytes ? AGENT_CUDA_ACCESS_PERSISTING : AGENT_CUDA_ACCESS_NORMAL;
    w.value.miss_prop =
        bytes ? AGENT_CUDA_ACCESS_STREAMING : AGENT_CUDA_ACCESS_NORMAL;

    rc = enter_device(h, &prev);
    if (rc < 0)
        goto out;
    err = h->cuda.device_set_limit(AGENT_CUDA_LIMIT_PERSISTING_L2,
                                   (size_t)setaside);
    if (err) {
        rc = cuda_failed(h, "cudaDeviceSetLimit(PersistingL2CacheSize)", err);
        goto leave;
    }
    h->l2_limit_set = setaside > 0;
    for (i = 0; i < LANE_COUNT; i++) {
        err = h->cuda.stream_set_attribute(h->lane[i].stream,
                                           AGENT_CUDA_STREAM_ATTR_WINDOW, &w);
        if (err) {
            rc = cuda_failed(h, "cudaStreamSetAttribute(AccessPolicyWindow)",
                             err);
            goto leave;
        }
    }
    h->l2_window = bytes;
leave:
    leave_device(h, prev);
out:
    pthread_mutex_unlock(&h->lock);
    return rc;
}
