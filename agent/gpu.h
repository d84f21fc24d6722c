/*
 * GPU discovery through the CUDA runtime, loaded with dlopen at run time:
 * the build and the tests never need a GPU or CUDA, and an agent on a node
 * without one says so in its hello (gpu_note) instead of failing.
 *
 * Where it sits: observe (what the node has).  Thread-safety: call once at
 * start-up.
 */
#ifndef AGENT_GPU_H
#define AGENT_GPU_H

#include <stddef.h>
#include <stdint.h>

#define AGENT_MAX_GPUS 16

struct agent_gpu {
    int index;               /* CUDA device ordinal */
    char name[256];          /* device name */
    uint64_t memory_bytes;   /* total device memory */
    uint64_t l2_persist_max; /* max persisting L2 bytes, 0 if unsupported */
};

struct agent_gpus {
    size_t n;                             /* GPUs found */
    struct agent_gpu gpu[AGENT_MAX_GPUS]; /* their descriptions */
    char note[256];                       /* how probed, or why none */
    void *lib;                            /* the runtime's dlopen handle */
};

/* Probes for GPUs.  `lib` names the runtime library ("" or NULL: try the
 * usual names).  Never fails: no runtime or no device gives n = 0 and a
 * note saying why. */
void agent_gpu_probe(const char *lib, struct agent_gpus *out);

#endif /* AGENT_GPU_H */
