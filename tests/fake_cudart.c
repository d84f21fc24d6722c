/*
 * A stand-in for the CUDA runtime, loaded by test_gpu and test_tier_hbm
 * through the same dlopen path the agent uses, so the probe and the HBM
 * tier are tested on machines without a GPU.
 *
 * What it models, and how faithfully:
 * - Two devices (FAKE_CUDART_DEVICES=N for another count; 0 answers
 *   cudaErrorNoDevice like a machine with a driver and no GPU). Device 0
 *   has 4 MiB of persisting L2 and a 64 MiB access-policy window limit;
 *   the others have no L2 persistence, like a pre-Ampere GPU.
 * - Device memory is host memory from malloc, tracked by address, so
 *   every copy is checked against its kind: the device side of a copy
 *   must lie inside one live device allocation and the host side outside
 *   all of them; a mismatch is cudaErrorInvalidValue, as from a driver.
 *   With FAKE_CUDART_DEVICE_VA=1, device addresses are like a real GPU's:
 *   a reserved range the CPU (and a NIC without nvidia-peermem) cannot
 *   touch (PROT_NONE), with the bytes in a hidden host buffer that only
 *   the copies below reach.
 * - cudaMemcpyAsync poisons the destination at once and only queues the
 *   copy; cudaStreamSynchronize (or cudaStreamDestroy) runs the queue.
 *   That is the worst a real copy engine may do: the source is read as
 *   late as possible and the destination is garbage until then, so a
 *   caller that refills a staging half too early, reads one before
 *   synchronising, or starts a copy into one it is still draining gets
 *   wrong bytes. Async copies from memory that cudaHostAlloc did not
 *   return are counted as "pageable".
 * - Streams, pinned and device allocations are counted while live, so a
 *   test can assert that a tier gave back everything.
 *
 * Failure injection through the environment, each answering with the
 * cudaError_t a real runtime gives:
 *   FAKE_CUDART_FAIL=1            cudaGetDeviceCount: 35 (old driver)
 *   FAKE_CUDART_MALLOC_FAIL=1     cudaMalloc: 2 (out of memory)
 *   FAKE_CUDART_HOSTALLOC_FAIL=1  cudaHostAlloc: 2 (out of memory)
 *   FAKE_CUDART_STREAM_FAIL=1     cudaStreamCreateWithFlags: 2
 *   FAKE_CUDART_MEMCPY_FAIL=N     the Nth cudaMemcpyAsync of the process
 *                                 and all later ones: 700 (illegal
 *                                 address, sticky like the real one)
 *   FAKE_CUDART_SYNC_FAIL=1       cudaStreamSynchronize: 700
 *
 * It also stands in for the one driver API call the agent makes,
 * cuMemGetHandleForAddressRange (dma-buf export of device memory for a
 * NIC), with cuInit and cuGetErrorString: by default it answers 801
 * (CUDA_ERROR_NOT_SUPPORTED, as on a GPU or driver without dma-buf);
 * with FAKE_CUDART_DMABUF=memfd it returns a memfd of the range's size,
 * an fd that no NIC accepts as a dma-buf, so a caller's fallback runs.
 * A range outside every live device allocation is 1 (invalid value).
 *
 * fake_cudart_count() and fake_cudart_last_window() let tests look inside.
 * Thread-safety: one mutex around all state.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int cudaGetDeviceCount(int *n);
int cudaGetDevice(int *dev);
int cudaSetDevice(int dev);
int cudaDeviceGetAttribute(int *v, int attr, int dev);
int cudaMemGetInfo(size_t *free_b, size_t *total);
int cudaGetDeviceProperties_v2(void *prop, int dev);
const char *cudaGetErrorString(int e);
int cudaMalloc(void **p, size_t len);
int cudaFree(void *p);
int cudaHostAlloc(void **p, size_t len, unsigned flags);
int cudaFreeHost(void *p);
int cudaMemcpy(void *dst, const void *src, size_t len, int kind);
int cudaMemcpyAsync(void *dst, const void *src, size_t len, int kind,
                    void *stream);
int cudaStreamCreateWithFlags(void **stream, unsigned flags);
int cudaStreamSynchronize(void *stream);
int cudaStreamDestroy(void *stream);
int cudaStreamSetAttribute(void *stream, int attr, const void *value);
int cudaDeviceSetLimit(int limit, size_t value);
int cuInit(unsigned flags);
int cuMemGetHandleForAddressRange(void *handle, unsigned long long dptr,
                                  size_t size, int type,
                                  unsigned long long flags);
int cuGetErrorString(int e, const char **s);
long fake_cudart_count(const char *what);
long fake_cudart_last_window(void *out, size_t len);

/* Error codes (driver_types.h). */
enum {
    E_INVALID_VALUE = 1,
    E_MEMORY = 2,
    E_OLD_DRIVER = 35,
    E_NO_DEVICE = 100,
    E_INVALID_DEVICE = 101,
    E_INVALID_HANDLE = 400,
    E_ILLEGAL_ADDRESS = 700,
};

/* One live allocation, device or pinned host. */
struct block {
    uint8_t *p;         /* first byte */
    uint8_t *bytes;     /* where its bytes are: p, or the hidden buffer
                           behind a PROT_NONE device range */
    size_t len;         /* bytes */
    int dev;            /* device it belongs to, -1 for pinned host */
    struct block *next; /* next live allocation */
};

/* One queued async copy. */
struct op {
    void *dst;       /* destination */
    const void *src; /* source, read when the queue runs */
    size_t len;      /* bytes */
    struct op *next; /* next in issue order */
};

/* A stream: a FIFO of copies and the last window set on it. */
struct stream {
    struct op *head, *tail; /* queued copies, oldest first */
    struct stream *next;    /* next live stream */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int current;            /* the current device (per process here) */
static struct block *blocks;   /* live allocations */
static struct stream *streams; /* live streams */
static long n_device, n_host, n_stream;              /* live counts */
static long n_async, n_pageable, n_sync, n_set_attr; /* call counters */
static long l2_limit;                 /* last persisting L2 set-aside */
static unsigned char last_window[32]; /* last cudaAccessPolicyWindow */

/* How many devices the stand-in reports. */
static int
devices(void)
{
    const char *s = getenv("FAKE_CUDART_DEVICES");

    return s ? atoi(s) : 2;
}

/* The live allocation of the given sort (device or pinned host) that
 * holds all of [p, p + len), or NULL. */
static struct block *
find_block(const void *p, size_t len, int device)
{
    struct block *b;
    const uint8_t *q = p;

    for (b = blocks; b; b = b->next) {
        if (q >= b->p && q < b->p + b->len) {
            if ((b->dev >= 0) != device) {
                return NULL;
            }
            return len <= (size_t)(b->p + b->len - q) ? b : NULL;
        }
    }
    return NULL;
}

/* True when p is inside any device allocation. */
static int
on_device(const void *p)
{
    struct block *b;
    const uint8_t *q = p;

    for (b = blocks; b; b = b->next) {
        if (b->dev >= 0 && q >= b->p && q < b->p + b->len) {
            return 1;
        }
    }
    return 0;
}

/* Where the bytes at p are: inside a device block, in its bytes. */
static void *
bytes_at(const void *p)
{
    struct block *b;
    const uint8_t *q = p;

    for (b = blocks; b; b = b->next) {
        if (b->dev >= 0 && q >= b->p && q < b->p + b->len) {
            return b->bytes + (q - b->p);
        }
    }
    return (void *)(uintptr_t)p;
}

/* Checks a copy against its kind: 1 host to device, 2 device to host. */
static int
check_copy(void *dst, const void *src, size_t len, int kind)
{
    if (kind == 1 && find_block(dst, len, 1) && !on_device(src)) {
        return 0;
    }
    if (kind == 2 && find_block(src, len, 1) && !on_device(dst)) {
        return 0;
    }
    return E_INVALID_VALUE;
}

/* The live stream s, or NULL for a handle that is not one. */
static struct stream *
find_stream(void *s)
{
    struct stream *st;

    for (st = streams; st; st = st->next) {
        if (st == s) {
            return st;
        }
    }
    return NULL;
}

/* Performs a stream's queued copies in issue order. */
static void
run_queue(struct stream *st)
{
    struct op *o;

    while ((o = st->head)) {
        memcpy(o->dst, o->src, o->len);
        st->head = o->next;
        free(o);
    }
    st->tail = NULL;
}

int
cudaGetDeviceCount(int *n)
{
    if (getenv("FAKE_CUDART_FAIL")) {
        return E_OLD_DRIVER;
    }
    *n = devices();
    return *n > 0 ? 0 : E_NO_DEVICE;
}

int
cudaGetDevice(int *dev)
{
    *dev = current;
    return 0;
}

int
cudaSetDevice(int dev)
{
    if (dev < 0 || dev >= devices()) {
        return E_INVALID_DEVICE;
    }
    current = dev;
    return 0;
}

int
cudaDeviceGetAttribute(int *v, int attr, int dev)
{
    if (attr == 108) {
        *v = dev == 0 ? 4 << 20 : 0;
    } else if (attr == 109) {
        *v = dev == 0 ? 64 << 20 : 0;
    } else {
        *v = 0;
    }
    return 0;
}

int
cudaMemGetInfo(size_t *free_b, size_t *total)
{
    *total = (size_t)(80 + current) << 30;
    *free_b = *total / 2;
    return 0;
}

int
cudaGetDeviceProperties_v2(void *prop, int dev)
{
    strcpy(prop, dev == 0 ? "Fake H100" : "Fake H100 #2");
    return 0;
}

const char *
cudaGetErrorString(int e)
{
    switch (e) {
    case E_INVALID_VALUE:
        return "invalid argument";
    case E_MEMORY:
        return "out of memory";
    case E_OLD_DRIVER:
        return "CUDA driver version is insufficient for CUDA runtime "
               "version";
    case E_NO_DEVICE:
        return "no CUDA-capable device is detected";
    case E_INVALID_DEVICE:
        return "invalid device ordinal";
    case E_INVALID_HANDLE:
        return "invalid resource handle";
    case E_ILLEGAL_ADDRESS:
        return "an illegal memory access was encountered";
    }
    return "unknown";
}

static int
alloc_block(void **p, size_t len, int dev)
{
    struct block *b = malloc(sizeof(*b));

    if (b && dev >= 0 && getenv("FAKE_CUDART_DEVICE_VA")) {
        b->p = mmap(NULL, len ? len : 1, PROT_NONE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        b->bytes = malloc(len ? len : 1);
        if (b->p == MAP_FAILED || !b->bytes) {
            if (b->p != MAP_FAILED) {
                munmap(b->p, len ? len : 1);
            }
            free(b->bytes);
            free(b);
            return E_MEMORY;
        }
    } else if (!b || !(b->p = b->bytes = malloc(len ? len : 1))) {
        free(b);
        return E_MEMORY;
    }
    b->len = len;
    b->dev = dev;
    pthread_mutex_lock(&mu);
    b->next = blocks;
    blocks = b;
    if (dev >= 0) {
        n_device++;
    } else {
        n_host++;
    }
    pthread_mutex_unlock(&mu);
    *p = b->p;
    return 0;
}

static int
free_block(void *p, int device)
{
    struct block **pp, *b;

    pthread_mutex_lock(&mu);
    for (pp = &blocks; *pp; pp = &(*pp)->next) {
        b = *pp;
        if (b->p == p && (b->dev >= 0) == device) {
            *pp = b->next;
            if (device) {
                n_device--;
            } else {
                n_host--;
            }
            pthread_mutex_unlock(&mu);
            if (b->bytes != b->p) {
                munmap(b->p, b->len ? b->len : 1);
            }
            free(b->bytes);
            free(b);
            return 0;
        }
    }
    pthread_mutex_unlock(&mu);
    return E_INVALID_VALUE;
}

int
cudaMalloc(void **p, size_t len)
{
    if (getenv("FAKE_CUDART_MALLOC_FAIL")) {
        return E_MEMORY;
    }
    return alloc_block(p, len, current);
}

int
cudaFree(void *p)
{
    return p ? free_block(p, 1) : 0;
}

int
cudaHostAlloc(void **p, size_t len, unsigned flags)
{
    if (getenv("FAKE_CUDART_HOSTALLOC_FAIL")) {
        return E_MEMORY;
    }
    if (flags > 15) {
        return E_INVALID_VALUE;
    }
    return alloc_block(p, len, -1);
}

int
cudaFreeHost(void *p)
{
    return p ? free_block(p, 0) : 0;
}

int
cudaMemcpy(void *dst, const void *src, size_t len, int kind)
{
    int e;

    pthread_mutex_lock(&mu);
    e = check_copy(dst, src, len, kind);
    if (!e) {
        memcpy(bytes_at(dst), bytes_at(src), len);
    }
    pthread_mutex_unlock(&mu);
    return e;
}

int
cudaMemcpyAsync(void *dst, const void *src, size_t len, int kind, void *stream)
{
    const char *fail = getenv("FAKE_CUDART_MEMCPY_FAIL");
    struct stream *st;
    struct op *o;
    int e;

    pthread_mutex_lock(&mu);
    n_async++;
    if (fail && n_async >= atol(fail)) {
        e = E_ILLEGAL_ADDRESS;
        goto out;
    }
    st = find_stream(stream);
    if (!st) {
        e = E_INVALID_HANDLE;
        goto out;
    }
    e = check_copy(dst, src, len, kind);
    if (e) {
        goto out;
    }
    if (!find_block(kind == 1 ? src : dst, len, 0)) {
        n_pageable++;
    }
    o = calloc(1, sizeof(*o));
    if (!o) {
        e = E_MEMORY;
        goto out;
    }
    o->dst = bytes_at(dst);
    o->src = bytes_at(src);
    o->len = len;
    /* The destination is undefined until the copy completes: poison it
     * now, so that reading it early, or starting a copy into a buffer
     * that is still being read, shows up as wrong bytes. */
    memset(o->dst, 0xdb, len);
    if (st->tail) {
        st->tail->next = o;
    } else {
        st->head = o;
    }
    st->tail = o;
out:
    pthread_mutex_unlock(&mu);
    return e;
}

int
cudaStreamCreateWithFlags(void **stream, unsigned flags)
{
    struct stream *st;

    if (getenv("FAKE_CUDART_STREAM_FAIL")) {
        return E_MEMORY;
    }
    if (flags > 1) {
        return E_INVALID_VALUE;
    }
    st = calloc(1, sizeof(*st));
    if (!st) {
        return E_MEMORY;
    }
    pthread_mutex_lock(&mu);
    st->next = streams;
    streams = st;
    n_stream++;
    pthread_mutex_unlock(&mu);
    *stream = st;
    return 0;
}

int
cudaStreamSynchronize(void *stream)
{
    struct stream *st;
    int e = 0;

    pthread_mutex_lock(&mu);
    n_sync++;
    st = find_stream(stream);
    if (!st) {
        e = E_INVALID_HANDLE;
    } else if (getenv("FAKE_CUDART_SYNC_FAIL")) {
        e = E_ILLEGAL_ADDRESS;
    } else {
        run_queue(st);
    }
    pthread_mutex_unlock(&mu);
    return e;
}

int
cudaStreamDestroy(void *stream)
{
    struct stream **pp, *st;

    pthread_mutex_lock(&mu);
    for (pp = &streams; *pp; pp = &(*pp)->next) {
        st = *pp;
        if (st == stream) {
            /* Like the real runtime: queued work still completes. */
            run_queue(st);
            *pp = st->next;
            n_stream--;
            pthread_mutex_unlock(&mu);
            free(st);
            return 0;
        }
    }
    pthread_mutex_unlock(&mu);
    return E_INVALID_HANDLE;
}

int
cudaStreamSetAttribute(void *stream, int attr, const void *value)
{
    int e = 0;

    pthread_mutex_lock(&mu);
    if (!find_stream(stream)) {
        e = E_INVALID_HANDLE;
    } else if (attr != 1) {
        e = E_INVALID_VALUE;
    } else {
        memcpy(last_window, value, sizeof(last_window));
        n_set_attr++;
    }
    pthread_mutex_unlock(&mu);
    return e;
}

int
cudaDeviceSetLimit(int limit, size_t value)
{
    if (limit != 6) {
        return E_INVALID_VALUE;
    }
    pthread_mutex_lock(&mu);
    l2_limit = (long)value;
    pthread_mutex_unlock(&mu);
    return 0;
}

/* Test hook: a live count ("device", "host", "stream") or a call counter
 * ("async", "pageable", "sync", "set_attr"), or the last persisting L2
 * set-aside ("l2_limit"); -1 for an unknown name. */
long
fake_cudart_count(const char *what)
{
    static const struct {
        const char *name; /* what the test asks for */
        long *value;      /* where it is kept */
    } table[] = {
        {"device", &n_device},     {"host", &n_host},
        {"stream", &n_stream},     {"async", &n_async},
        {"pageable", &n_pageable}, {"sync", &n_sync},
        {"set_attr", &n_set_attr}, {"l2_limit", &l2_limit},
    };
    long v = -1;

    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (!strcmp(what, table[i].name)) {
            v = *table[i].value;
        }
    }
    pthread_mutex_unlock(&mu);
    return v;
}

/* Test hook: copies the last window set on any stream into out (up to
 * len bytes); returns how many cudaStreamSetAttribute calls succeeded. */
long
fake_cudart_last_window(void *out, size_t len)
{
    long n;

    pthread_mutex_lock(&mu);
    memcpy(out, last_window,
           len < sizeof(last_window) ? len : sizeof(last_window));
    n = n_set_attr;
    pthread_mutex_unlock(&mu);
    return n;
}

/* --- Driver API stand-ins ------------------------------------------------
 */

int
cuInit(unsigned flags)
{
    return flags ? E_INVALID_VALUE : 0;
}

int
cuMemGetHandleForAddressRange(void *handle, unsigned long long dptr,
                              size_t size, int type, unsigned long long flags)
{
    const char *mode = getenv("FAKE_CUDART_DMABUF");
    struct block *b;
    int fd;

    if (!handle || type != 1 || flags || size == 0) {
        return E_INVALID_VALUE;
    }
    pthread_mutex_lock(&mu);
    b = find_block((const void *)(uintptr_t)dptr, size, 1);
    pthread_mutex_unlock(&mu);
    if (!b) {
        return E_INVALID_VALUE;
    }
    if (!mode || strcmp(mode, "memfd")) {
        return 801;
    }
    fd = memfd_create("fake-dmabuf", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
        if (fd >= 0) {
            close(fd);
        }
        return E_MEMORY;
    }
    *(int *)handle = fd;
    return 0;
}

int
cuGetErrorString(int e, const char **s)
{
    switch (e) {
    case 0:
        *s = "no error";
        return 0;
    case E_INVALID_VALUE:
        *s = "invalid argument";
        return 0;
    case 801:
        *s = "operation not supported";
        return 0;
    default:
        *s = NULL;
        return E_INVALID_VALUE;
    }
}
