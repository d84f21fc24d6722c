/*
 * Node liveness: a pure state machine, (state, event, last heard, now) ->
 * state, in the manner of OVS's lib/reconnect.c, so tests drive it with a
 * fake clock and the brain calls it from its run loop.
 *
 *     alive --(silent for suspect_after)--> suspect
 *     suspect --(silent for fail_after)--> failed
 *     any --(a message from the node)--> alive
 *     any --(its etcd lease expired)--> failed
 *
 * "Silent for X" counts from the last message heard, so a node that misses
 * one report is suspect and one that misses several is failed; one message
 * brings it back.
 *
 * Where it sits: aggregate step (the cluster model's health).
 * Thread-safety: pure functions.
 */
#ifndef BRAIN_LIVENESS_H
#define BRAIN_LIVENESS_H

#include <stdint.h>

enum brain_liveness {
    BRAIN_ALIVE = 0,   /* reporting */
    BRAIN_SUSPECT = 1, /* late: still gets tables, not trusted for routing */
    BRAIN_FAILED = 2,  /* gone: dropped from peers' tables */
};

enum brain_liveness_event {
    BRAIN_EV_HEARD,      /* a valid message from the node */
    BRAIN_EV_TICK,       /* time passed */
    BRAIN_EV_LEASE_LOST, /* its membership lease expired */
};

struct brain_liveness_cfg {
    uint64_t suspect_after_us; /* silence before suspect */
    uint64_t fail_after_us;    /* silence before failed (> suspect) */
};

enum brain_liveness brain_liveness_next(enum brain_liveness cur,
                                        enum brain_liveness_event ev,
                                        uint64_t last_heard_us,
                                        uint64_t now_us,
                                        const struct brain_liveness_cfg *);

/* When the state would next change on its own (UINT64_MAX: never). */
uint64_t brain_liveness_deadline(enum brain_liveness cur,
                                 uint64_t last_heard_us,
                                 const struct brain_liveness_cfg *);

const char *brain_liveness_name(enum brain_liveness);

#endif /* BRAIN_LIVENESS_H */
