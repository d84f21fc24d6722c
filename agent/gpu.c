#include "gpu.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

MCOS_LOG_MODULE(gpu);

/* cudaDeviceAttr values we read (stable since CUDA 11). */
#define CUDA_ATTR_MAX_PERSISTING_L2 108

typedef int (*cuda_count_fn)(int *);
typedef int (*cuda_attr_fn)(int *, int, int);
typedef int (*cuda_set_fn)(int);
typedef int (*cuda_meminfo_fn)(size_t *, size_t *);
typedef int (*cuda_props_fn)(void *, int);
typedef const char *(*cuda_errstr_fn)(int);

void
agent_gpu_probe(const char *lib, struct agent_gpus *out)
{
    static const char *const names[] = {
        "libcudart.so",
        "libcudart.so.13",
        "libcudart.so.12",
        "libcudart.so.11.0",
        "/usr/local/cuda/lib64/libcudart.so",
    };
    cuda_count_fn count;
    cuda_attr_fn attr;
    cuda_set_fn set;
    cuda_meminfo_fn meminfo;
    cuda_props_fn props;
    cuda_errstr_fn errstr;
    const char *used = NULL;
    void *h = NULL;
    int n = 0, e;

    memset(out, 0, sizeof *out);
    if (lib && *lib) {
        h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
        used = lib;
    } else {
        for (size_t i = 0; !h && i < sizeof names / sizeof names[0]; i++) {
            h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
            used = names[i];
        }
    }
    if (!h) {
        snprintf(out->note, sizeof out->note,
                 "no CUDA runtime (%s not loadable): no GPU tiers",
                 lib && *lib ? lib : "libcudart.so");
        return;
    }
    count = (cuda_count_fn)dlsym(h, "cudaGetDeviceCount");
    attr = (cuda_attr_fn)dlsym(h, "cudaDeviceGetAttribute");
    set = (cuda_set_fn)dlsym(h, "cudaSetDevice");
    meminfo = (cuda_meminfo_fn)dlsym(h, "cudaMemGetInfo");
    errstr = (cuda_errstr_fn)dlsym(h, "cudaGetErrorString");
    /* CUDA 12 renamed the entry point; the struct's first member has been
     * `char name[256]` in every version, which is all we read of it. */
    props = (cuda_props_fn)dlsym(h, "cudaGetDeviceProperties_v2");
    if (!props) {
        props = (cuda_props_fn)dlsym(h, "cudaGetDeviceProperties");
    }
    if (!count || !attr || !set || !meminfo || !errstr || !props) {
        snprintf(out->note, sizeof out->note,
                 "CUDA runtime %s lacks the functions we need", used);
        dlclose(h);
        return;
    }
    e = count(&n);
    if (e || n <= 0) {
        snprintf(out->note, sizeof out->note,
                 "CUDA runtime %s found, no usable GPU: %s", used,
                 e ? errstr(e) : "0 devices");
        /* Keep the library loaded: unloading an initialised CUDA runtime
         * is not safe. */
        out->lib = h;
        return;
    }
    for (int d = 0; d < n && out->n < AGENT_MAX_GPUS; d++) {
        struct agent_gpu *g = &out->gpu[out->n];
        static char propbuf[16384];
        size_t free_b = 0, total_b = 0;
        int l2 = 0;

        g->index = d;
        memset(propbuf, 0, sizeof propbuf);
        if (props(propbuf, d) == 0) {
            snprintf(g->name, sizeof g->name, "%.255s", propbuf);
        }
        if (attr(&l2, CUDA_ATTR_MAX_PERSISTING_L2, d) == 0 && l2 > 0) {
            g->l2_persist_max = (uint64_t)l2;
        }
        if (set(d) == 0 && meminfo(&free_b, &total_b) == 0) {
            g->memory_bytes = total_b;
        }
        out->n++;
    }
    snprintf(out->note, sizeof out->note, "%zu GPU(s) via %s", out->n, used);
    out->lib = h;
    LOG_INFO("%s", out->note);
}
