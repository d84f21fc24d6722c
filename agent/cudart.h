/*
 * The CUDA runtime, loaded with dlopen at run time: the build and the
 * tests never need a GPU, CUDA headers or libcudart, and a node without a
 * GPU runs the same binary.
 *
 * Where it sits: below the HBM tier (agent/tier_hbm.c, "execute") and
 * the GPU probe (agent/gpu.c, "observe"). This is the one module that
 * knows CUDA's names, constants and error space; callers get function
 * pointers and negative errno values.
 *
 * The types and constants below are the few we need from the CUDA
 * runtime headers (driver_types.h), restated so that no CUDA header is
 * needed to build. They match CUDA 11.0 through 13.0: compared with
 * static asserts against the 13.0 headers (the build machine has that
 * toolkit, but no GPU), and with the published 11.x and 12.x headers by
 * reading. See union agent_cuda_window for the one layout that matters.
 *
 * Thread-safety: agent_cuda_open() and agent_cuda_close() must not race
 * on the same struct. The loaded function pointers are the runtime's own
 * and are as thread-safe as CUDA makes them (every call used here is).
 */
#ifndef MCOS_AGENT_CUDA_H
#define MCOS_AGENT_CUDA_H

#include <stdbool.h>
#include <stddef.h>

/* cudaMemcpyKind values. */
#define AGENT_CUDA_COPY_H2D 1 /* cudaMemcpyHostToDevice */
#define AGENT_CUDA_COPY_D2H 2 /* cudaMemcpyDeviceToHost */

/* cudaDeviceAttr values we read (stable since CUDA 11.0). */
#define AGENT_CUDA_ATTR_MAX_PERSISTING_L2 108 /* bytes, 0: unsupported */
#define AGENT_CUDA_ATTR_MAX_WINDOW        109 /* max window num_bytes */

/* cudaLimitPersistingL2CacheSize, for cudaDeviceSetLimit. */
#define AGENT_CUDA_LIMIT_PERSISTING_L2 6
/* cudaStreamAttributeAccessPolicyWindow (CUDA 11) and its CUDA 12 alias
 * cudaLaunchAttributeAccessPolicyWindow have the same value. */
#define AGENT_CUDA_STREAM_ATTR_WINDOW 1
/* cudaStreamNonBlocking: no implicit sync with the legacy stream 0. */
#define AGENT_CUDA_STREAM_NON_BLOCKING 1u
/* cudaHostAllocDefault. */
#define AGENT_CUDA_HOST_ALLOC_DEFAULT 0u

/* cudaAccessProperty values. */
#define AGENT_CUDA_ACCESS_NORMAL     0
#define AGENT_CUDA_ACCESS_STREAMING  1
#define AGENT_CUDA_ACCESS_PERSISTING 2

/* cudaError_t values that the callers and the stand-in runtime name. */
#define AGENT_CUDA_ERR_INVALID_VALUE       1
#define AGENT_CUDA_ERR_MEMORY_ALLOCATION   2
#define AGENT_CUDA_ERR_INSUFFICIENT_DRIVER 35
#define AGENT_CUDA_ERR_NO_DEVICE           100
#define AGENT_CUDA_ERR_INVALID_DEVICE      101
#define AGENT_CUDA_ERR_INVALID_HANDLE      400
#define AGENT_CUDA_ERR_ILLEGAL_ADDRESS     700
#define AGENT_CUDA_ERR_NOT_SUPPORTED       801

/* struct cudaAccessPolicyWindow, member for member (driver_types.h,
 * CUDA 11.0 to 13.0). */
struct agent_cuda_policy {
    void *base_ptr;   /* first device byte of the window */
    size_t num_bytes; /* window size; 0 disables the window */
    float hit_ratio;  /* share of accesses given hit_prop, 0..1 */
    int hit_prop;     /* AGENT_CUDA_ACCESS_*, usually PERSISTING */
    int miss_prop;    /* NORMAL or STREAMING */
};

/* cudaStreamAttrValue. CUDA 11.0-11.7 declare it as a union of the window
 * and an int-sized enum (32 bytes); CUDA 11.8 to 13.0 make it an alias of
 * union cudaLaunchAttributeValue, padded to 64 bytes, with the window at
 * offset 0. A 64-byte union with the window first is therefore a valid
 * argument for every version: the runtime reads only the window. */
union agent_cuda_window {
    char pad[64];                   /* cudaLaunchAttributeValue's size */
    struct agent_cuda_policy value; /* accessPolicyWindow */
};

_Static_assert(sizeof(struct agent_cuda_policy) == 32,
               "cudaAccessPolicyWindow is 32 bytes on LP64");
_Static_assert(sizeof(union agent_cuda_window) == 64,
               "cudaLaunchAttributeValue is 64 bytes");

/* A loaded runtime. Pointers below `probe` are always set after a
 * successful open; the memory ones only when `memory_api` is true. Each
 * returns a cudaError_t (0 is success). */
struct agent_cuda {
    void *lib;       /* dlopen handle (RTLD_NODELETE) */
    char name[128];  /* the name it was opened as, for notes and logs */
    bool memory_api; /* every pointer of the memory section is set */
    const char *first_missing; /* first absent memory symbol, or NULL */

    /* --- probe: device discovery (agent/gpu.c) --- */
    int (*get_device_count)(int *n);
    int (*get_device)(int *dev);
    int (*set_device)(int dev);
    int (*device_get_attribute)(int *v, int attr, int dev);
    int (*mem_get_info)(size_t *free_b, size_t *total_b);
    /* cudaGetDeviceProperties_v2 (CUDA 12), else the CUDA 11 name; the
     * struct starts with char name[256] in every version. */
    int (*get_device_properties)(void *prop, int dev);
    const char *(*get_error_string)(int err);

    /* --- memory: the HBM tier (agent/tier_hbm.c) --- */
    int (*dev_malloc)(void **p, size_t len);
    int (*dev_free)(void *p);
    int (*memcpy_sync)(void *dst, const void *src, size_t len, int kind);
    int (*memcpy_async)(void *dst, const void *src, size_t len, int kind,
                        void *stream);
    int (*stream_create)(void **stream, unsigned flags);
    int (*stream_synchronize)(void *stream);
    int (*stream_destroy)(void *stream);
    int (*host_alloc)(void **p, size_t len, unsigned flags);
    int (*free_host)(void *p);

    /* --- optional: L2 residency; NULL on runtimes before CUDA 11 --- */
    int (*stream_set_attribute)(void *stream, int attr,
                                const union agent_cuda_window *value);
    int (*device_set_limit)(int limit, size_t value);
};

/* Opens the runtime `lib` names, or the usual names when lib is NULL or
 * "", and resolves every symbol. -EOPNOTSUPP when no library loads,
 * -ENOSYS when it lacks a probe function (nothing is kept open on
 * failure). out->name says which name was tried last. */
int agent_cuda_open(const char *lib, struct agent_cuda *out);
/* Drops the handle. The library itself stays mapped (RTLD_NODELETE): an
 * initialised CUDA runtime registers exit handlers and must never be
 * unloaded. NULL or a never-opened struct is a no-op. */
void agent_cuda_close(struct agent_cuda *c);

/* --- The driver API (libcuda), for one thing: dma-buf export ---------
 *
 * The runtime cannot export device memory for a NIC; the driver's
 * cuMemGetHandleForAddressRange (CUDA 11.7, driver 515) can, as a
 * dma-buf fd that ibv_reg_dmabuf_mr takes.  The driver is looked up in
 * the runtime's own library first (a stand-in runtime may provide both;
 * NVIDIA's libcudart does not export cu* symbols), then in libcuda.so.1.
 */

/* CUmemRangeHandleType CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD. */
#define AGENT_CUDA_RANGE_HANDLE_DMA_BUF_FD 1

struct agent_cuda_driver {
    void *lib;      /* dlopen handle (RTLD_NODELETE); NULL: not open */
    char name[128]; /* where the symbols came from, for logs */
    int (*init)(unsigned flags); /* cuInit */
    /* cuMemGetHandleForAddressRange(handle, dptr, size, type, flags) */
    int (*get_handle)(void *handle, unsigned long long dptr, size_t size,
                      int type, unsigned long long flags);
    /* cuGetErrorString(err, &str); may be NULL */
    int (*get_error_string)(int err, const char **str);
};

/* Opens the driver API next to runtime rt (see above). -EOPNOTSUPP when
 * no library with cuInit loads, -ENOSYS when the one found lacks
 * cuMemGetHandleForAddressRange (a driver before CUDA 11.7); out->name
 * says which library was tried last. */
int agent_cuda_driver_open(const struct agent_cuda *rt,
                           struct agent_cuda_driver *out);
/* Drops the handle (the library stays mapped); NULL is a no-op. */
void agent_cuda_driver_close(struct agent_cuda_driver *d);
/* The driver's text for a CUresult, never NULL. */
const char *agent_cuda_driver_strerror(const struct agent_cuda_driver *d,
                                       int err);

/* CUDA error -> negative errno; the one translation of CUDA's error space:
 * out of memory -ENOMEM, no or bad device -ENODEV, invalid value -EINVAL,
 * not supported -EOPNOTSUPP, anything else (launch failures, illegal
 * addresses, a lost device) -EIO. 0 maps to 0. */
int agent_cuda_errno(int err);
/* The runtime's text for err, never NULL. */
const char *agent_cuda_strerror(const struct agent_cuda *c, int err);

#endif /* MCOS_AGENT_CUDA_H */
