/*
 * Brain high availability: leader election, the brains' registry, the
 * fenced generation counter and the cluster configuration, all in etcd.
 *
 * Every brain started with etcd.endpoints holds a lease of
 * etcd.lease_ttl_s seconds and registers /mcos/brains/<name> on it.  One
 * of them leads: it created /mcos/leader (value: JSON naming the brain, its
 * bus and HTTP URLs and the lease) with a transaction that succeeds only
 * while the key does not exist, attached to its lease.  The others stand
 * by, watching /mcos/: when the leader key goes (its lease expired or was
 * revoked), each standby campaigns again and one wins.
 *
 * Fencing.  The generation counter lives in /mcos/gen.  The leader
 * advances it (brain_election_advance) with a transaction that also
 * compares the leader key's create_revision with the one its own claim
 * made, so a brain that lost the key can never publish a generation.  And
 * a leader whose keepalives have not been acknowledged for (TTL - margin)
 * steps down locally before etcd can expire its lease (struct
 * brain_elect_sm below, a pure function of `now`), so no two brains ever
 * push tables at once.
 *
 * Configuration.  /mcos/config/<key> holds the policy knobs an operator
 * changed with `mcos-admin config set`; every brain watches them and hands
 * each change to the brain (brain_election_cbs.config).
 *
 * Where it sits: between the brain's life cycle (brain.c) and the etcd
 * client (common/etcd.c).  Thread-safety: none; the loop thread only.
 */
#ifndef BRAIN_ELECTION_H
#define BRAIN_ELECTION_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "clock.h"

#define BRAIN_ELECTION_LEADER_KEY    "/mcos/leader"
#define BRAIN_ELECTION_GEN_KEY       "/mcos/gen"
#define BRAIN_ELECTION_BRAINS_PREFIX "/mcos/brains/"
#define BRAIN_ELECTION_CONFIG_PREFIX "/mcos/config/"

/* How long to wait before trying again after an etcd error. */
#define BRAIN_ELECTION_RETRY_MS 500

/* ------------------------------------------------------------------------
 * The leader's lease guard: a pure state machine of (state, event, now).
 */
enum brain_elect_state {
    BRAIN_ELECT_IDLE,    /* no lease: getting one, or etcd unreachable */
    BRAIN_ELECT_STANDBY, /* a lease, someone else leads (or nobody yet) */
    BRAIN_ELECT_LEADER,  /* we hold the leader key */
};

struct brain_elect_sm {
    enum brain_elect_state state; /* where we are */
    uint64_t ttl_us;              /* the lease's TTL */
    uint64_t margin_us;           /* step down this long before expiry */
    uint64_t deadline_us;         /* when etcd may expire our lease, by
                                     our clock (0: no lease) */
};

/* The margin for a TTL: a quarter of it, at least 250 ms, at most 2 s. */
uint64_t brain_elect_margin_us(uint64_t ttl_us);

void brain_elect_sm_init(struct brain_elect_sm *, uint64_t ttl_us);

/* The lease is known to live until `deadline_us` (a grant or renewal sent
 * at t, answered with TTL s: t + s; etcd counts from no earlier than t).
 * The deadline only moves forward. */
void brain_elect_sm_renewed(struct brain_elect_sm *, uint64_t deadline_us);

/* The campaign's outcome.  Winning with a lease that is already too close
 * to its expiry counts as losing. */
void brain_elect_sm_won(struct brain_elect_sm *, uint64_t now);
void brain_elect_sm_lost(struct brain_elect_sm *);

/* The lease is gone (etcd said so, or we gave it up). */
void brain_elect_sm_lease_lost(struct brain_elect_sm *);

/* True while a leader may push tables at `now`: it leads and its lease is
 * more than the margin away from expiring. */
bool brain_elect_sm_may_lead(const struct brain_elect_sm *, uint64_t now);

/* Advances the clock: a leader that may no longer lead steps down (to
 * IDLE: its lease is presumed lost).  Returns true when it did. */
bool brain_elect_sm_tick(struct brain_elect_sm *, uint64_t now);

/* ------------------------------------------------------------------------
 * The etcd side. */
struct brain_election;
struct mcos_etcd_options;

struct brain_election_cfg {
    const char *endpoints; /* etcd client URLs */
    const char *name;      /* this brain's name */
    const char *bus_url;   /* where agents reach it */
    const char *http_url;  /* where operators reach it ("" for none) */
    uint64_t ttl_s;        /* lease TTL */
    const struct mcos_etcd_options *etcd; /* TLS files; NULL: defaults */
};

struct brain_election_cbs {
    /* We lead now; `gen` is the counter in etcd (0 if none yet). */
    void (*elected)(void *arg, uint64_t gen);
    /* We no longer lead; `why` says what happened. */
    void (*deposed)(void *arg, const char *why);
    /* /mcos/config/<key> changed: `value` is the new text, NULL when the
     * key was deleted. */
    void (*config)(void *arg, const char *key, const char *value);
};

/* Asks etcd, blocking, for the leader key on a private loop (start-up
 * only): 0 when a quorum answered, else a negative errno with etcd's
 * message (naming the endpoints tried) in err. */
int brain_election_probe(const char *endpoints,
                         const struct mcos_etcd_options *opt, char *err,
                         size_t errlen);

/* Starts campaigning.  Copies the configuration.  Returns 0, or a negative
 * errno with the reason in err (a bad endpoint list). */
int brain_election_start(uv_loop_t *, const struct mcos_clock *,
                         const struct brain_election_cfg *,
                         const struct brain_election_cbs *, void *arg,
                         struct brain_election **out, char *err,
                         size_t errlen);

/* Stops; no callback runs afterwards.  The lease is left to expire.  The
 * memory goes once the loop has run the etcd client's last callbacks.
 * NULL is a no-op. */
void brain_election_stop(struct brain_election *);

/* Call periodically: steps down when the lease guard says so, and
 * refreshes the etcd endpoints' health now and then. */
void brain_election_tick(struct brain_election *);

/* True while this brain leads and may push tables. */
bool brain_election_leading(const struct brain_election *);

/* The leader's name and URLs, or NULL when no brain leads (as far as this
 * one knows). */
const char *brain_election_leader(const struct brain_election *);
const char *brain_election_leader_bus(const struct brain_election *);
const char *brain_election_leader_http(const struct brain_election *);

/* Writes /mcos/gen = gen, fenced on our claim of the leader key.  `cb`
 * runs once with 0 (the generation may be published), or a negative errno:
 * -EREMOTE when we no longer lead (and `deposed` has run), another code
 * when etcd could not be asked.  Returns 0 or a negative errno at once (no
 * callback), -EREMOTE when we do not lead. */
typedef void (*brain_election_done_cb)(void *arg, int status,
                                       const char *error);
int brain_election_advance(struct brain_election *, uint64_t gen,
                           brain_election_done_cb cb, void *arg);

/* Writes /mcos/config/<key> = value, fenced as above.  The brains apply
 * it when their watch sees it.  Same returns as brain_election_advance. */
int brain_election_config_put(struct brain_election *, const char *key,
                              const char *value, brain_election_done_cb cb,
                              void *arg);

/* For /v1/status: {"role", "leader": {...} or null, "brains": [...],
 * "endpoints": "...", "watching": bool, "health": [...]}. */
json_t *brain_election_status(const struct brain_election *);

#endif /* BRAIN_ELECTION_H */
