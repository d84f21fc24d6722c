/*
 * Loading the CUDA runtime with dlopen, and translating its errors.
 */
#include "cudart.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Names tried in order when no library is configured: the unversioned
 * development link first (what a CUDA toolkit install provides), then the
 * sonames of the runtimes the agent supports. */
static const char *const default_names[] = {
    "libcudart.so",
    "libcudart.so.13",
    "libcudart.so.12",
    "libcudart.so.11.0",
    "/usr/local/cuda/lib64/libcudart.so",
};

/* Where one symbol goes in struct agent_cuda. */
struct sym {
    const char *name; /* exported symbol */
    size_t offset;    /* offsetof the function pointer member */
};

#define SYM(n, m)                                                             \
    {                                                                         \
        n, offsetof(struct agent_cuda, m)                                     \
    }

/* Without any of these a runtime is useless even for discovery. The
 * properties entry point is resolved separately (it was renamed). */
static const struct sym probe_syms[] = {
    SYM("cudaGetDeviceCount", get_device_count),
    SYM("cudaGetDevice", get_device),
    SYM("cudaSetDevice", set_device),
    SYM("cudaDeviceGetAttribute", device_get_attribute),
    SYM("cudaMemGetInfo", mem_get_info),
    SYM("cudaGetErrorString", get_error_string),
};

/* What the HBM tier needs; every CUDA runtime since 4.0 exports them. */
static const struct sym memory_syms[] = {
    SYM("cudaMalloc", dev_malloc),
    SYM("cudaFree", dev_free),
    SYM("cudaMemcpy", memcpy_sync),
    SYM("cudaMemcpyAsync", memcpy_async),
    SYM("cudaStreamCreateWithFlags", stream_create),
    SYM("cudaStreamSynchronize", stream_synchronize),
    SYM("cudaStreamDestroy", stream_destroy),
    SYM("cudaHostAlloc", host_alloc),
    SYM("cudaFreeHost", free_host),
};

/* L2 persistence arrived in CUDA 11.0; older runtimes lack these. */
static const struct sym l2_syms[] = {
    SYM("cudaStreamSetAttribute", stream_set_attribute),
    SYM("cudaDeviceSetLimit", device_set_limit),
};

/* Resolves n symbols into c; returns the first one missing, or NULL. */
static const char *
resolve(struct agent_cuda *c, const struct sym *s, size_t n)
{
    const char *missing = NULL;
    void *p;
    size_t i;

    for (i = 0; i < n; i++) {
        p = dlsym(c->lib, s[i].name);
        if (!p && !missing)
            missing = s[i].name;
        /* Function pointers and void * have one representation on every
         * platform dlsym exists on (POSIX requires it). */
        memcpy((char *)c + s[i].offset, &p, sizeof(p));
    }
    return missing;
}

int
agent_cuda_open(const char *lib, struct agent_cuda *out)
{
    /* RTLD_NODELETE: see agent_cuda_close(). */
    const int flags = RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE;
    void *props;
    size_t i;

    memset(out, 0, sizeof(*out));
    if (lib && *lib) {
        snprintf(out->name, sizeof(out->name), "%s", lib);
        out->lib = dlopen(lib, flags);
    } else {
        for (i = 0;
             !out->lib && i < sizeof(default_names) / sizeof(default_names[0]);
             i++) {
            snprintf(out->name, sizeof(out->name), "%s", default_names[i]);
            out->lib = dlopen(default_names[i], flags);
        }
    }
    if (!out->lib)
        return -EOPNOTSUPP;

    /* CUDA 12 renamed the entry point and keeps the old one only for old
     * binaries; prefer the new one. */
    props = dlsym(out->lib, "cudaGetDeviceProperties_v2");
    if (!props)
        props = dlsym(out->lib, "cudaGetDeviceProperties");
    memcpy(&out->get_device_properties, &props, sizeof(props));
    if (resolve(out, probe_syms, sizeof(probe_syms) / sizeof(probe_syms[0])) ||
        !props) {
        dlclose(out->lib);
        out->lib = NULL;
        return -ENOSYS;
    }
    out->first_missing = resolve(out, memory_syms,
                                 sizeof(memory_syms) / sizeof(memory_syms[0]));
    out->memory_api = !out->first_missing;
    (void)resolve(out, l2_syms, sizeof(l2_syms) / sizeof(l2_syms[0]));
    return 0;
}

void
agent_cuda_close(struct agent_cuda *c)
{
    /* With RTLD_NODELETE, dlclose only drops our reference: the runtime
     * stays mapped, so its atexit handlers and any context it created
     * remain valid until the process exits. */
    if (c && c->lib) {
        dlclose(c->lib);
        c->lib = NULL;
    }
}

/* Resolves the driver symbols from d->lib; true when cuInit is there. */
static bool
driver_resolve(struct agent_cuda_driver *d)
{
    void *p = dlsym(d->lib, "cuInit");

    if (!p)
        return false;
    memcpy(&d->init, &p, sizeof(p));
    p = dlsym(d->lib, "cuMemGetHandleForAddressRange");
    memcpy(&d->get_handle, &p, sizeof(p));
    p = dlsym(d->lib, "cuGetErrorString");
    memcpy(&d->get_error_string, &p, sizeof(p));
    return true;
}

int
agent_cuda_driver_open(const struct agent_cuda *rt,
                       struct agent_cuda_driver *out)
{
    const int flags = RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE;

    memset(out, 0, sizeof(*out));
    if (rt && rt->lib) {
        /* Our own reference, so that closing rt does not pull it. */
        out->lib = dlopen(rt->name, flags);
        snprintf(out->name, sizeof(out->name), "%s", rt->name);
        if (out->lib && !driver_resolve(out)) {
            dlclose(out->lib);
            out->lib = NULL;
        }
    }
    if (!out->lib) {
        snprintf(out->name, sizeof(out->name), "libcuda.so.1");
        out->lib = dlopen("libcuda.so.1", flags);
        if (!out->lib)
            return -EOPNOTSUPP;
        if (!driver_resolve(out)) {
            dlclose(out->lib);
            out->lib = NULL;
            return -EOPNOTSUPP;
        }
    }
    if (!out->get_handle) {
        dlclose(out->lib);
        out->lib = NULL;
        return -ENOSYS;
    }
    return 0;
}

void
agent_cuda_driver_close(struct agent_cuda_driver *d)
{
    if (d && d->lib) {
        dlclose(d->lib);
        d->lib = NULL;
    }
}

const char *
agent_cuda_driver_strerror(const struct agent_cuda_driver *d, int err)
{
    const char *s = NULL;

    if (d && d->get_error_string && d->get_error_string(err, &s) != 0)
        s = NULL;
    return s ? s : "unknown CUDA driver error";
}

int
agent_cuda_errno(int err)
{
    switch (err) {
    case 0:
        return 0;
    case AGENT_CUDA_ERR_INVALID_VALUE:
        return -EINVAL;
    case AGENT_CUDA_ERR_MEMORY_ALLOCATION:
        return -ENOMEM;
    case AGENT_CUDA_ERR_INSUFFICIENT_DRIVER:
    case AGENT_CUDA_ERR_NO_DEVICE:
    case AGENT_CUDA_ERR_INVALID_DEVICE:
        return -ENODEV;
    case AGENT_CUDA_ERR_NOT_SUPPORTED:
        return -EOPNOTSUPP;
    default:
        return -EIO;
    }
}

const char *
agent_cuda_strerror(const struct agent_cuda *c, int err)
{
    const char *s = NULL;

    if (c && c->get_error_string)
        s = c->get_error_string(err);
    return s ? s : "unknown CUDA error";
}
