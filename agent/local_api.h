/*
 * The local intent API: libmcos clients on this node talk to the agent
 * over an nng ipc socket (API_* requests in proto/mcos.proto).  This module
 * decodes and validates each request, hands it to the store, and answers
 * when the store is done -- at once, or after a copy it had to wait for.
 * Object bytes never travel here: they are in the shared DRAM arena.
 *
 * A client whose connection closes has its views released and its
 * uncommitted placements given back.
 *
 * Engines report their queue (API_LOAD); the module keeps each client's
 * latest report and sums them for the node's Load, dropping a client's
 * share when it disconnects.
 *
 * Where it sits: the entry of the execute step.  Thread-safety: loop
 * thread only.
 */
#ifndef AGENT_LOCAL_API_H
#define AGENT_LOCAL_API_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "store.h"

struct agent_local_api;
struct mcos_clock;

/* `clock` stamps the engines' load reports. */
int agent_local_api_create(uv_loop_t *, const struct mcos_clock *clock,
                           const char *url, struct agent_store *,
                           struct agent_local_api **out, char *err,
                           size_t errlen);

/* Stops listening.  Close the store first, so every request waiting on it
 * has been answered. */
void agent_local_api_close(struct agent_local_api *);

struct agent_local_api_counters {
    uint64_t requests;  /* requests decoded */
    uint64_t errors;    /* answered with an error */
    uint64_t malformed; /* refused before reaching the store */
};

void agent_local_api_counters(const struct agent_local_api *,
                              struct agent_local_api_counters *out);

/* The engines' queue on this node: the sum of every connected client's
 * latest mcos_report_load. */
struct agent_engine_load {
    uint32_t engines;               /* clients that reported */
    uint32_t queued_requests;       /* summed (saturating) */
    uint32_t running_requests;      /* summed (saturating) */
    uint64_t queued_prefill_blocks; /* summed */
    uint64_t sample_age_us; /* age of the oldest client's latest report */
};

void agent_local_api_load(const struct agent_local_api *, uint64_t now_us,
                          struct agent_engine_load *out);

/* Fills an ObjectInfo from an object (for the API and the HTTP views). */
void agent_object_info(const struct agent_store *, const struct agent_object *,
                       uint64_t now_us, Mcos__ObjectInfo *out);

#endif /* AGENT_LOCAL_API_H */
