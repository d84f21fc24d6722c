#include "gpu.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cudart.h"
#include "log.h"

MCOS_LOG_MODULE(gpu);

void
agent_gpu_probe(const char *lib, struct agent_gpus *out)
{
    struct agent_cuda c;
    int n = 0, e, rc;

    memset(out, 0, sizeof *out);
    rc = agent_cuda_open(lib, &c);
    if (rc == -EOPNOTSUPP) {
        snprintf(out->note, sizeof out->note,
                 "no CUDA runtime (%s not loadable): no GPU tiers",
                 lib && *lib ? lib : "libcudart.so");
        return;
    }
    if (rc < 0) {
        snprintf(out->note, sizeof out->note,
                 "CUDA runtime %s lacks the functions we need", c.name);
        return;
    }
    e = c.get_device_count(&n);
    if (e || n <= 0) {
        snprintf(out->note, sizeof out->note,
                 "CUDA runtime %s found, no usable GPU: %s", c.name,
                 e ? agent_cuda_strerror(&c, e) : "0 devices");
        /* The handle is kept, though the runtime stays loaded anyway
         * (agent_cuda_open): unloading an initialised one is not safe. */
        out->lib = c.lib;
        return;
    }
    for (int d = 0; d < n && out->n < AGENT_MAX_GPUS; d++) {
        struct agent_gpu *g = &out->gpu[out->n];
        static char propbuf[16384];
        size_t free_b = 0, total_b = 0;
        int l2 = 0;

        g->index = d;
        memset(propbuf, 0, sizeof propbuf);
        if (c.get_device_properties(propbuf, d) == 0) {
            snprintf(g->name, sizeof g->name, "%.255s", propbuf);
        }
        if (c.device_get_attribute(&l2, AGENT_CUDA_ATTR_MAX_PERSISTING_L2,
                                   d) == 0 &&
            l2 > 0) {
            g->l2_persist_max = (uint64_t)l2;
        }
        if (c.set_device(d) == 0 && c.mem_get_info(&free_b, &total_b) == 0) {
            g->memory_bytes = total_b;
        }
        out->n++;
    }
    snprintf(out->note, sizeof out->note, "%zu GPU(s) via %s", out->n, c.name);
    out->lib = c.lib;
    LOG_INFO("%s", out->note);
}
