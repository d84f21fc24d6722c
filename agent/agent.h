/*
 * mcos-agent: one per node.  Owns the node's tiers, describes the node to
 * the brain (hello), reports on an interval (report), keeps one long poll
 * open for new tables (watch), applies each table generation atomically,
 * and acknowledges it in the next report.
 *
 * Losing the brain changes nothing the node does: the agent keeps its last
 * table and keeps serving, retries in the background, and after
 * stale_after_ms without an answer marks itself stale (in /metrics and in
 * its reports, once they get through again).
 *
 * Several brains (high availability): `brain` may list several bus URLs.
 * A standby refuses with -EREMOTE and names the leader's URL, and the
 * agent follows it at once; a brain that does not answer makes the agent
 * try the next URL in the list.  Either way it says hello to the new
 * leader, which brings its full inventory.
 *
 * Control flow: callbacks (bus replies, timers, HTTP) record what happened;
 * agent_run() -- the one place that acts -- decides what to send next.
 *
 * Thread-safety: loop thread only, except the table read side (tables.h).
 */
#ifndef AGENT_AGENT_H
#define AGENT_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "bus.h"
#include "clock.h"
#include "config.h"
#include "gpu.h"
#include "http.h"
#include "ids.h"
#include "local_api.h"
#include "observe.h"
#include "fabric.h"
#include "store.h"
#include "tables.h"

struct agent_config {
    char *node;                  /* node name */
    char *brain;                 /* brains' bus URLs, comma-separated */
    char *http_listen;           /* /metrics and API, "" for none */
    char *rack;                  /* topology label */
    char *zone;                  /* topology label */
    uint64_t report_interval_ms; /* until the brain says otherwise */
    uint64_t stale_after_ms;     /* without the brain before stale */
    uint64_t dram_bytes;         /* DRAM tier capacity */
    char *nvme_dir;              /* NVMe tier directory, "" for none */
    uint64_t nvme_bytes;         /* NVMe tier capacity */
    uint64_t emulate_hbm_bytes;  /* DRAM-backed HBM for tests, 0: off */
    uint64_t hbm_bytes;          /* GPU memory the HBM tier may use */
    char *data_address;          /* data-plane address peers dial */
    char *data_addresses;        /* NICs for verbs, comma-separated, "":
                                    just data_address */
    uint64_t data_port;          /* fabric control port (+1: transports) */
    char *data_transports;       /* "auto", "tcp", "verbs" or "off" */
    uint64_t data_conns;         /* TCP sockets per peer */
    char *cuda_lib;              /* CUDA runtime to dlopen, "" for usual */
    char *api_listen;            /* local intent API (nng ipc URL) */
    char *api_group;             /* group that may use it, "" for none */
    char *shm_name;              /* DRAM arena's shm name, "" for default */
    uint64_t bw_hbm;             /* bandwidth budgets, bytes/s, 0: none */
    uint64_t bw_dram;
    uint64_t bw_nvme;
    char *etcd_endpoints;      /* membership registration, "" for none */
    uint64_t etcd_lease_ttl_s; /* its lease TTL */
    char *etcd_cacert;         /* TLS: CA bundle, "" for the system's */
    char *etcd_cert;           /* TLS: client certificate, "" for none */
    char *etcd_key;            /* TLS: its key, "" for none */
    char *log_level;           /* log spec */
};

extern const struct mcos_cfg_opt agent_config_opts[];
extern const size_t agent_n_config_opts;

/* Splits a comma-separated list of brain URLs into `out` (malloc'd
 * strings, *n of them).  -EINVAL with the reason in err for an empty list
 * or a URL that is not tcp:// or ipc://. */
int agent_brain_list(const char *list, char ***out, size_t *n, char *err,
                     size_t errlen);
void agent_brain_list_free(char **, size_t n);

/* Checks values that depend on the machine or on each other. */
int agent_config_check(const struct agent_config *, char *err, size_t errlen);

/* The group id api_group names (a name from the group database or a
 * number) in *gid, or -1 when it is "".  -EINVAL with the reason in err. */
int agent_config_api_gid(const struct agent_config *, int64_t *gid, char *err,
                         size_t errlen);

/* Longest data address, with its NUL. */
#define AGENT_DATA_ADDR_LEN 64
/* Splits data.addresses into out (at most max), checking each: numeric,
 * listed once, the first equal to data.address when that is set, several
 * only with the verbs transport.  Returns how many, 0 when unset, or
 * -EINVAL with err naming the problem. */
int agent_config_data_addresses(const struct agent_config *,
                                char (*out)[AGENT_DATA_ADDR_LEN], size_t max,
                                char *err, size_t errlen);

struct agent_counters {
    uint64_t hellos_sent;     /* hellos sent */
    uint64_t reports_sent;    /* reports sent */
    uint64_t report_failures; /* reports with no or an error reply */
    uint64_t tables_applied;  /* generations applied */
    uint64_t table_errors;    /* updates refused */
    uint64_t brain_errors;    /* error replies from the brain */
    uint64_t brain_switches;  /* times it followed another brain */
};

struct mcos_member;

struct agent {
    uv_loop_t *loop;                /* our loop */
    const struct mcos_clock *clock; /* monotonic time */
    struct agent_config cfg;        /* configuration (owned copy) */
    int64_t api_gid;                /* api_group's id, or -1 */
    struct mcos_boot_id boot_id;    /* this process */
    struct agent_gpus gpus;         /* GPUs found */
    struct agent_observe *obs;      /* telemetry sources */
    struct agent_tables *tables;    /* current table */
    struct agent_store *store;      /* objects and tiers */
    struct agent_fabric *fabric;    /* peers, or NULL when off */
    struct agent_local_api *api;    /* libmcos clients */
    struct mcos_bus_client *bus;    /* to the brain */
    struct mcos_http_server *http;  /* /metrics, or NULL */
    uv_timer_t timer;               /* report interval */
    uint64_t interval_ms;           /* current report interval */
    bool registered;                /* the brain accepted our hello */
    bool hello_in_flight;           /* a hello awaits its reply */
    bool report_in_flight;          /* a report awaits its reply */
    struct mcos_bus_call *watch;    /* the open watch, or NULL */
    uint64_t seq;                   /* last report sequence number */
    uint64_t last_contact_us;       /* last reply from the brain */
    uint64_t start_us;              /* start time */
    bool connected;                 /* the last exchange succeeded */
    bool stale;                     /* no brain for stale_after_ms */
    uint64_t brain_gen;             /* newest generation the brain has */
    int closing;                    /* handles still closing */
    struct agent_counters counters; /* for /metrics */
    struct mcos_member *member;     /* etcd registration, or NULL */
    struct mcos_etcd *etcd;         /* reads /mcos/leader, or NULL */
    struct leader_lookup *lookup;   /* the one in flight, or NULL */
    char **brains;                  /* the brains' bus URLs, from cfg */
    size_t n_brains;                /* how many */
    size_t cur_brain;               /* the one `bus` dials, if listed;
                                       else the one to go back to */
    char *brain_url;                /* the URL `bus` dials now */
    char *learned_brain;            /* the last leader a brain or etcd
                                       named that the list does not, or
                                       NULL */
    char *next_brain;               /* where to switch to, or NULL */
    uv_timer_t switch_timer;        /* runs the switch outside callbacks */
    uint64_t last_switch_us;        /* when we last did */
};

int agent_create(uv_loop_t *, const struct agent_config *,
                 const struct mcos_clock *, struct agent **out, char *err,
                 size_t errlen);
void agent_close(struct agent *);
void agent_run(struct agent *);

/* HTTP API (api.c). */
int agent_api_register(struct agent *);

#endif /* AGENT_AGENT_H */
