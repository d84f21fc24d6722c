/*
 * The fabric: node-to-node movement of objects between agents.
 *
 * Three parts, each in its own lane:
 *  - control: every agent serves PeerRequests (ALLOC, COMMIT, FREE) on an
 *    nng endpoint (its data address, data port) and calls its peers'.
 *    Only peers in the current policy table -- nodes the brain admitted,
 *    at the boot id it admitted -- get an answer.
 *  - data: the bytes move one-sided through a transport (transport.h),
 *    verbs when both ends have an RDMA device, TCP otherwise, between the
 *    registered DRAM arenas, and the HBM regions where a transport
 *    reaches GPU memory (verbs: dma-buf or ibv_reg_mr); the control lane
 *    never carries them.  TCP stages HBM objects through DRAM.
 *  - hosting: what peers stored here (reservations, hosted objects), kept
 *    in the DRAM arena (replicas bound for HBM: in the HBM region) and dropped
 * when their owner comes back with a new boot id.
 *
 * A put (replicate, demote to a peer) is ALLOC -> WRITE -> COMMIT, and the
 * owner checksums the bytes before it answers COMMIT: a put succeeds only
 * when the peer holds a verified copy, so the caller may then drop its
 * own.  A get is a READ whose bytes are checksummed on the dataplane
 * thread before the caller hears of them.
 *
 * Where it sits: step 6 (execute), beside the executor.  Thread-safety:
 * loop thread only, except the transports' admit callback (which reads
 * the admitted set under its own lock).
 */
#ifndef AGENT_FABRIC_H
#define AGENT_FABRIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "clock.h"
#include "mcos.pb-c.h"
#include "tables.h"
#include "tier.h"
#include "transport.h"

struct agent_fabric_config {
    const char *node;                  /* our node name */
    uint64_t boot_id;                  /* our boot id */
    const char *address;               /* data address peers dial */
    const char *const *more_addresses; /* verbs: further NICs' addresses
                                          (data.addresses after the
                                          first); copied */
    unsigned n_more_addresses; /* entries, < AGENT_TRANSPORT_MAX_NICS */
    uint16_t port;             /* control port; transports listen on port+1 */
    const char *transports;    /* "auto", "tcp" or "verbs" */
    unsigned conns;            /* TCP sockets per peer, 0: default */
    uint64_t slice;            /* transfer slice bytes, 0: default */
    struct agent_tier *hbm;    /* the HBM tier (real or emulated), NULL:
                                  none; its region is registered with the
                                  transports that reach GPU memory */
};

/* Endpoints an agent announces: control, tcp, and a verbs one per NIC. */
#define AGENT_FABRIC_MAX_ENDPOINTS (2 + AGENT_TRANSPORT_MAX_NICS)

/* A peer's verbs NICs, as its peer rule announces them. */
struct agent_fabric_peer_verbs {
    unsigned n; /* verbs endpoints, in announced order (0: none) */
    struct {
        char address[256]; /* where NIC i listens */
        uint16_t port;     /* its port */
    } ep[AGENT_TRANSPORT_MAX_NICS];
    struct agent_transport_region region; /* its verbs DRAM region; id 0:
                                             none */
    struct agent_transport_region hbm;    /* its verbs HBM region; id 0:
                                             none (no GPU, not registered,
                                             or a peer before the field) */
};

/* Reads the verbs endpoints and regions of a peer rule (the DRAM arena's,
 * and the HBM region's when the peer announces one: Region.tier), checking
 * that each region carries one key per verbs endpoint (or just `key` for
 * one), and that no tier has two regions.
 * -EINVAL with err naming the problem otherwise; the fabric then uses the
 * peer without verbs. */
int agent_fabric_peer_verbs(const Mcos__PeerRule *pr,
                            struct agent_fabric_peer_verbs *out, char *err,
                            size_t errlen);

/* Where a hosted copy of one of our objects lives on a peer. */
struct agent_fabric_loc {
    char peer[AGENT_TRANSPORT_NODE_MAX];  /* the node that holds it */
    uint64_t peer_boot;                   /* its boot id when it did */
    uint64_t handle;                      /* its name for the copy */
    int transport;                        /* Mcos__Transport used */
    struct agent_transport_region region; /* the peer's region */
    uint64_t offset;                      /* inside it */
};

struct agent_fabric_result {
    int status;                  /* 0 or a negative errno */
    char error[400];             /* why, when status != 0 */
    struct agent_fabric_loc loc; /* put: where the copy is */
    uint64_t bytes;              /* moved */
    uint64_t time_us;            /* start to verified end */
};

typedef void (*agent_fabric_cb)(const struct agent_fabric_result *, void *arg);

/* What the fabric needs from the store, which it must not include. */
struct agent_fabric_hooks {
    /* A replica a peer sent arrived verified in our extent `e` of tier
     * `tier` (DRAM, or HBM when it landed there directly); the store
     * adopts it (and the extent) or returns an error. */
    int (*adopt)(void *arg, const Mcos__PeerRequest *alloc, int tier,
                 const struct agent_tier_extent *e, uint64_t checksum,
                 char *err, size_t errlen);
    /* True when we hold object id already. */
    bool (*holds)(void *arg, uint64_t id);
    /* A peer restarted or left: copies we demoted to it are gone. */
    void (*peer_lost)(void *arg, const char *peer, uint64_t old_boot);
    void *arg;
};

struct agent_fabric_link {
    char peer[AGENT_TRANSPORT_NODE_MAX]; /* peer node */
    int transport;                       /* chosen, 0: none yet */
    uint64_t tx_bytes;                   /* verified bytes written */
    uint64_t rx_bytes;                   /* verified bytes read */
    uint64_t transfers;                  /* verified transfers */
    uint64_t errors;                     /* failed transfers */
    uint64_t busy_us;                    /* time spent in transfers */
};

struct agent_fabric_counters {
    uint64_t puts, put_failures; /* our puts */
    uint64_t gets, get_failures; /* our gets */
    uint64_t served_allocs;      /* ALLOCs granted to peers */
    uint64_t served_commits;     /* COMMITs verified for peers */
    uint64_t refused;            /* peer requests refused */
    uint64_t checksum_failures;  /* COMMITs whose bytes did not match */
    uint64_t hosted_objects;     /* held for peers now */
    uint64_t hosted_bytes;       /* their bytes */
    uint64_t expired;            /* reservations never committed */
    uint64_t hbm_puts;           /* puts sent straight from our HBM */
    uint64_t hbm_landed;         /* replicas peers wrote straight into our
                                    HBM */
};

/* Where our HBM region stands with one transport. */
struct agent_fabric_hbm {
    int transport;                        /* enum agent_transport_kind */
    struct agent_transport_region region; /* id 0: not registered */
    const char *via;                      /* "dma-buf", "peer-memory"
                                             (ibv_reg_mr on device memory),
                                             "host-memory" (emulated);
                                             NULL when not registered */
    char note[300];                       /* why not, when id is 0 */
};

struct agent_fabric;

/* Starts the control endpoint and the transports this node can run, and
 * registers the DRAM arena with each. */
int agent_fabric_create(uv_loop_t *, const struct mcos_clock *,
                        const struct agent_fabric_config *,
                        struct agent_tables *, struct agent_tier *dram,
                        const struct agent_fabric_hooks *,
                        struct agent_fabric **out, char *err, size_t errlen);
/* Fails transfers in flight (-ECANCELED), frees what peers stored here. */
void agent_fabric_close(struct agent_fabric *);

/* The endpoints and regions to announce in the hello. */
size_t agent_fabric_endpoints(const struct agent_fabric *, Mcos__Endpoint *eps,
                              size_t max);
size_t agent_fabric_regions(const struct agent_fabric *, Mcos__Region *rs,
                            size_t max);

/* A new table is in force: refresh peers and the admitted set, and drop
 * what restarted peers had stored here. */
void agent_fabric_tables_changed(struct agent_fabric *);

/* Periodic work: expire reservations nobody committed. */
void agent_fabric_tick(struct agent_fabric *);

/* True when a put to `peer` can send straight from extent e of our tier
 * `tier` (DRAM always; HBM when the transport the peer is reached by has
 * our HBM region registered and e lies inside it).  `peer` NULL: true
 * when some admitted peer can, the ones a put that picks its peer tries. */
bool agent_fabric_direct(const struct agent_fabric *, const char *peer,
                         int tier, const struct agent_tier_extent *e);

/* True when some admitted peer has a transport in common with us but
 * cannot take a put straight from extent e of our tier `tier`: one that a
 * DRAM staging copy would reach where agent_fabric_put_from(..., NULL,
 * tier, e, ...) does not try it. */
bool agent_fabric_staged_peers(const struct agent_fabric *, int tier,
                               const struct agent_tier_extent *e);

/* Our HBM region per transport that runs here; returns how many entries
 * (0 without an HBM tier). */
size_t agent_fabric_hbm(const struct agent_fabric *,
                        struct agent_fabric_hbm *out, size_t max);

/* Like agent_fabric_put, from extent e of our tier src_tier (DRAM, or HBM
 * where agent_fabric_direct says so).  With `peer` NULL and src_tier HBM,
 * only peers that agent_fabric_direct(f, peer, HBM, e) allows are
 * tried. */
int agent_fabric_put_from(struct agent_fabric *, const char *peer,
                          Mcos__PeerPurpose purpose, int tier,
                          const Mcos__PeerRequest *meta, int src_tier,
                          const struct agent_tier_extent *e, uint64_t len,
                          uint64_t sum, agent_fabric_cb cb, void *arg,
                          char *err, size_t errlen);

/* Copies `len` bytes of DRAM extent `e` (checksum `sum`) to a peer:
 * `peer` NULL picks one (any admitted peer with room).  purpose and
 * tier say what the peer does with it.  cb runs once, on the loop. */
int agent_fabric_put(struct agent_fabric *, const char *peer,
                     Mcos__PeerPurpose purpose, int tier,
                     const Mcos__PeerRequest *meta,
                     const struct agent_tier_extent *e, uint64_t len,
                     uint64_t sum, agent_fabric_cb cb, void *arg, char *err,
                     size_t errlen);
/* Reads a hosted copy into DRAM extent `e` and verifies `sum`. */
int agent_fabric_get(struct agent_fabric *, const struct agent_fabric_loc *,
                     const struct agent_tier_extent *e, uint64_t len,
                     uint64_t sum, agent_fabric_cb cb, void *arg, char *err,
                     size_t errlen);
/* Tells the peer to drop a hosted copy (best effort, logged). */
void agent_fabric_free(struct agent_fabric *, const struct agent_fabric_loc *,
                       uint64_t id);

/* True when the peer is in the current table. */
bool agent_fabric_has_peer(const struct agent_fabric *, const char *peer);

size_t agent_fabric_links(const struct agent_fabric *,
                          struct agent_fabric_link *out, size_t max);
void agent_fabric_counters(const struct agent_fabric *,
                           struct agent_fabric_counters *out);
/* Sums the transports' own counters. */
void agent_fabric_transport_stats(const struct agent_fabric *,
                                  struct agent_transport_stats *out);
/* Which transports run here: "tcp", "tcp verbs"; with why verbs is off. */
const char *agent_fabric_transports(const struct agent_fabric *,
                                    const char **verbs_note);

#endif /* AGENT_FABRIC_H */
