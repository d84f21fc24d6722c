/*
 * Observe: what the agent samples about its node for each report -- NIC
 * counters (from /proc/net/dev), load (getloadavg), tier usage, and a
 * bounded queue of object events (stored, removed, accessed, ...).
 *
 * The event queue is bounded so a burst cannot grow memory without limit:
 * past the bound events are counted as dropped, and the count travels in
 * the next report.
 *
 * Where it sits: step 1 (observe).  Thread-safety: the event queue is
 * guarded by a mutex (events come from the dataplane thread); everything
 * else is loop-thread only.
 */
#ifndef AGENT_OBSERVE_H
#define AGENT_OBSERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcos.pb-c.h"

#define AGENT_MAX_NICS 16
/* Peers whose link counters go into one report. */
#define AGENT_MAX_PEER_LINKS        64
#define AGENT_MAX_EVENTS_PER_REPORT 4096
#define AGENT_EVENT_QUEUE_MAX       65536

struct agent_nic {
    char name[32];        /* interface name */
    char address[64];     /* first IPv4 address */
    char rdma_device[64]; /* RDMA device bound to it, or "" */
    uint32_t speed_mbps;  /* link speed, 0 if unknown */
    uint64_t tx_bytes;    /* cumulative, last sample */
    uint64_t rx_bytes;    /* cumulative, last sample */
    uint64_t tx_bps;      /* over the last interval */
    uint64_t rx_bps;      /* over the last interval */
};

struct agent_observe;

int agent_observe_create(struct agent_observe **out);
void agent_observe_destroy(struct agent_observe *);

/* The NICs found at start-up (non-loopback, with an IPv4 address). */
size_t agent_observe_nics(const struct agent_observe *,
                          const struct agent_nic **nics);

/* Samples NIC counters; `now_us` is monotonic time. */
void agent_observe_sample(struct agent_observe *, uint64_t now_us);

/* 1-minute load average x 1000. */
uint32_t agent_observe_load_milli(void);

/* Queues an object event (any thread).  `ns` (copied; NULL or "" for
 * none) and `parent` describe KV blocks' prefix chains. */
void agent_observe_event(struct agent_observe *, Mcos__EventKind kind,
                         uint64_t object_id, Mcos__ObjectClass cls,
                         Mcos__TierKind tier, uint64_t size, const char *ns,
                         uint64_t parent);

/* Moves up to `max` queued events into a malloc'd array of malloc'd
 * events (each with its own copy of ns) for a report; *dropped receives the
 * count lost since the last take.  Free with agent_observe_events_free. */
size_t agent_observe_take_events(struct agent_observe *, size_t max,
                                 Mcos__ObjectEvent ***out, uint64_t *dropped);
void agent_observe_events_free(Mcos__ObjectEvent **, size_t n);

#endif /* AGENT_OBSERVE_H */
