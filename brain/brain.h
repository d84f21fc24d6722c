/*
 * mcos-brain: the policy brain.
 *
 * Inputs (agents' hello/report/watch over the bus, operators' HTTP calls)
 * are decoded and validated by their callbacks, folded into the cluster
 * model (aggregate), and then brain_run() -- the one place that decides --
 * advances liveness, compiles a new generation of tables when anything they
 * depend on changed, and pushes each node the difference from what it has
 * acknowledged (answering its held watch).
 *
 * Generations are global, as OVN's nb_cfg: one compile that changes any
 * node's table produces generation N+1 for every node that is not failed,
 * so "every live node runs generation >= N" is a meaningful wait condition
 * (mcos-admin wait --gen N).  The counter is saved in the state directory
 * before any table of a new generation leaves the brain, so generations
 * never go backward across restarts; a brain that finds an agent ahead of
 * its counter (its state was lost) continues above the agent's.
 *
 * Thread-safety: everything runs on the brain's loop thread.
 */
#ifndef BRAIN_BRAIN_H
#define BRAIN_BRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "bus.h"
#include "clock.h"
#include "cluster.h"
#include "compile.h"
#include "config.h"
#include "graph.h"
#include "http.h"
#include "kvindex.h"
#include "route.h"
#include "state.h"

struct brain_config {
    char *listen;                     /* bus URL agents dial */
    char *http_listen;                /* HTTP API URL, "" for none */
    char *state_dir;                  /* local state (embedded default) */
    uint64_t report_interval_ms;      /* what agents are told to use */
    uint64_t suspect_after_ms;        /* silence before suspect */
    uint64_t fail_after_ms;           /* silence before failed */
    uint64_t high_watermark_pct;      /* tier policy */
    uint64_t low_watermark_pct;       /* tier policy */
    uint64_t admit_min_hotness_milli; /* tier policy */
    bool demote_to_peers;             /* tier policy: chains end in peers */
    uint64_t dram_fetch_milli;        /* routing: DRAM block cost x1000 */
    uint64_t nvme_fetch_milli;        /* routing: NVMe block cost x1000 */
    uint64_t load_weight_milli;       /* routing: per queued request x1000 */
    uint64_t queue_block_milli;       /* routing: per queued block x1000 */
    uint64_t peer_fetch_milli;        /* routing: block copied x1000 */
    uint64_t route_hold_ms;          /* routing: a route counts at most this */
    uint64_t route_transit_ms;       /* routing: route to engine, at most */
    uint64_t bound_eps_milli;        /* routing: bounded-load slack x1000 */
    uint64_t rack_penalty_milli;     /* routing: other rack x1000 */
    uint64_t repl_min_hotness_milli; /* replication: hot enough x1000 */
    uint64_t repl_copies;            /* replication: live holders wanted */
    uint64_t repl_budget;            /* replication: new copies a round */
    uint64_t repl_budget_bytes;      /* replication: bytes a round */
    uint64_t repl_candidates;        /* replication: blocks per namespace */
    uint64_t repl_interval_ms;       /* replication: round period */
    uint64_t repl_drop_hits;         /* replication: hits a copy needs */
    uint64_t repl_drop_after_ms;     /* replication: per this window */
    uint64_t admit_pressure_milli;   /* placement: admission rise x1000 */
    uint64_t prefetch_min_support;   /* prefetch: pair seen this often */
    uint64_t prefetch_deadline_ms;   /* prefetch: rules' deadline */
    uint64_t prefetch_max_rules;     /* prefetch: rules per node */
    char *etcd_endpoints;            /* membership leases, "" for none */
    bool etcd_required;        /* no etcd at start: exit, else embedded */
    uint64_t etcd_lease_ttl_s; /* the election lease's TTL */
    char *etcd_cacert;         /* TLS: CA bundle, "" for the system's */
    char *etcd_cert;           /* TLS: client certificate, "" for none */
    char *etcd_key;            /* TLS: its key, "" for none */
    char *name;                /* this brain's name, "" for hostname */
    char *advertise;           /* bus URL agents dial, "" for listen */
    char *log_level;           /* log spec, see log.h */
};

extern const struct mcos_cfg_opt brain_config_opts[];
extern const size_t brain_n_config_opts;

/* Checks rules that span several keys (fail after suspect, low <= high). */
int brain_config_check(const struct brain_config *, char *err, size_t errlen);

/* The policy knobs an operator may change on a running cluster
 * (mcos-admin config set; /mcos/config/<key> in etcd), NULL-terminated. */
extern const char *const brain_config_live_keys[];

/* The current value of live key `key` as text.  -ENOENT with a message in
 * err for a key that is not live. */
int brain_config_live_get(const struct brain_config *, const char *key,
                          char *buf, size_t len, char *err, size_t errlen);

/* Sets live key `key` from `value` (named `source` in messages) if the
 * result passes brain_config_check; else changes nothing.  On success the
 * canonical text of the value is in `canon`.  -ENOENT: unknown key;
 * -EPERM: a key that cannot change while running; -EINVAL: bad value. */
int brain_config_live_set(struct brain_config *, const char *key,
                          const char *value, const char *source, char *canon,
                          size_t canonlen, char *err, size_t errlen);

struct brain_counters {
    uint64_t hellos;        /* hellos accepted */
    uint64_t reports;       /* reports accepted */
    uint64_t watches;       /* watches accepted */
    uint64_t bad_messages;  /* messages refused */
    uint64_t updates_sent;  /* table updates sent */
    uint64_t full_updates;  /* of which full snapshots */
    uint64_t compiles;      /* compile passes */
    uint64_t compile_us;    /* duration of the last compile pass */
    uint64_t state_errors;  /* failures to save the generation */
    uint64_t engine_errors; /* decide/compile passes that failed */
    uint64_t recomputes;    /* forced full recomputes */
};

struct mcos_members_watch;
struct brain_election;
struct brain_config_put;

struct brain {
    uv_loop_t *loop;                    /* our loop */
    const struct mcos_clock *clock;     /* monotonic time source */
    struct brain_config cfg;            /* copy of the configuration (owned) */
    struct brain_liveness_cfg live_cfg; /* derived from cfg */
    struct brain_policy policy;         /* derived from cfg */
    struct brain_cluster cluster;       /* the model */
    struct brain_state *state;          /* the state directory */
    uint64_t gen;                       /* current generation */
    bool force;                         /* next run must bump the generation */
    uint64_t start_us;                  /* for uptime */
    struct mcos_bus_server *bus;        /* agents */
    struct mcos_http_server *http;      /* API, or NULL */
    uv_timer_t tick;                    /* periodic liveness check */
    uv_timer_t run_soon;                /* coalesces runs after inputs */
    int closing;                        /* handles still closing */
    struct brain_kv *kv;                /* global prefix index */
    struct brain_route_weights weights; /* routing knobs, from cfg */
    uint64_t routes;                    /* routing decisions made */
    struct brain_counters counters;     /* for /metrics */
    struct mcos_members_watch *members; /* etcd membership, or NULL */
    struct brain_graph *graph;          /* decide/compile engine */
    struct brain_repl_config repl;      /* replication knobs, from cfg */
    struct brain_place_config place;    /* placement knobs, from cfg */
    bool recompute;                     /* next run: full recompute */
    /* High availability (election.h); all unused in the embedded mode. */
    struct brain_election *election;      /* etcd election, or NULL */
    struct brain_config local;            /* live keys as configured locally
                                             (numbers only; strings NULL) */
    uint32_t live_from_etcd;              /* bit i: live key i set in etcd */
    bool gen_pending;                     /* a fenced /mcos/gen write is out */
    uint64_t pending_gen;                 /* the generation it writes */
    struct mcos_table **pending;          /* tables waiting for it, or NULL */
    size_t n_pending;                     /* entries in `pending` */
    uint64_t failovers;                   /* times this brain became leader */
    struct brain_config_put *config_puts; /* PUT /v1/config awaiting etcd */
};

/* True when this brain may act as the leader: always in the embedded mode,
 * with etcd only while it holds the leader key. */
bool brain_leading(const struct brain *);

/* For a standby: "this brain (NAME) is a standby; the leader is ..." */
void brain_not_leader_msg(const struct brain *, char *buf, size_t len);

/* Applies live key `key` = `value` (validated; "" or NULL: back to the
 * local config) and forces a new generation.  Returns 0 or -errno with
 * the reason in err. */
int brain_config_apply(struct brain *, const char *key, const char *value,
                       const char *source, char *err, size_t errlen);

/* Starts a brain: state directory, bus, HTTP API, timers.  The config is
 * copied. */
int brain_create(uv_loop_t *, const struct brain_config *,
                 const struct mcos_clock *, struct brain **out, char *err,
                 size_t errlen);

/* Stops and frees the brain; the loop must run to finish. */
void brain_close(struct brain *);

/* Decide, compile, push.  Cheap when nothing changed. */
void brain_run(struct brain *);

/* Asks for brain_run() soon, once, after the current callbacks. */
void brain_schedule(struct brain *);

/* Forces a new generation (mcos-admin sync); returns it, or a negative
 * errno if it could not be saved (-EREMOTE: not the leader).  With etcd
 * the generation is returned once its fenced write is on its way.  With
 * b->recompute set first, the decide/compile graph recomputes every node
 * from scratch (sync --recompute), which must give the tables the
 * incremental path gave. */
int64_t brain_sync(struct brain *);

/* True when every node that is not failed runs generation >= gen. */
bool brain_converged(const struct brain *, uint64_t gen);

/* Registers the HTTP API routes (api.c). */
int brain_api_register(struct brain *);

/* Answers the API requests still waiting (503); at close. */
void brain_api_close(struct brain *);

#endif /* BRAIN_BRAIN_H */
