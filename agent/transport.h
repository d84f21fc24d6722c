/*
 * Data transports: one ops table in front of every way an agent moves
 * bytes to and from a peer agent's memory (RDMA verbs through rdma-core,
 * TCP on libuv).
 *
 * Semantics are one-sided, the verbs model: a node registers regions of
 * its own memory (the DRAM arena; on a backend whose NIC moves the bytes,
 * also the HBM region, through dma-buf or directly), peers learn each
 * region's descriptor
 * (address, length, key) through the brain, and then READ from and WRITE
 * into those regions without the owner's CPU deciding anything per
 * transfer.  The TCP backend keeps the same contract: its server side
 * checks key and range, then receives straight into (or sends straight
 * from) the registered memory.
 *
 * Place in the data flow: the bottom of "execute", beside the tiers.  The
 * fabric module (fabric.h) decides what to move and asks the owner for
 * space; a transport only moves bytes between registered memory here and
 * a registered region there, and reports completions.
 *
 * Admission: a transport accepts a connection only when its admit
 * callback says the connecting (node, boot id) is a peer the brain has
 * admitted.  A client names the node and boot id it expects to reach and
 * refuses a server that answers as someone else.
 *
 * A backend embeds struct agent_transport first and recovers its own
 * struct with AGENT_CONTAINER_OF (tier.h), the way rdma-core providers do.
 *
 * Threading: every backend runs its own I/O thread (the fabric's
 * dataplane thread).  create, register, connect, post and disconnect may
 * be called from any thread.  Completion callbacks and the admit callback
 * run on the backend's thread: they must be short, must not block, and
 * must not call disconnect or destroy on their own transport.
 */
#ifndef AGENT_TRANSPORT_H
#define AGENT_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Numbered like the wire's Transport enum, so converting is a cast. */
enum agent_transport_kind {
    AGENT_TRANSPORT_TCP = 1,
    AGENT_TRANSPORT_VERBS = 2,
};

enum agent_transport_opcode {
    AGENT_TRANSPORT_READ = 1,  /* remote region -> local memory */
    AGENT_TRANSPORT_WRITE = 2, /* local memory -> remote region */
};

/* Longest node name carried in a handshake, with its NUL. */
#define AGENT_TRANSPORT_NODE_MAX 64
/* Regions one transport may register. */
#define AGENT_TRANSPORT_MAX_REGIONS 8
/* NICs (RDMA devices) one verbs transport may use, and paths one
 * connection may stripe over. */
#define AGENT_TRANSPORT_MAX_NICS 4
/* Bytes of an error text carried with a failed operation. */
#define AGENT_TRANSPORT_ERR_LEN 160

/* A registered region as peers see it.  The brain relays it verbatim. */
struct agent_transport_region {
    uint32_t id;    /* 1.. within the owner's transport; 0 is invalid */
    uint64_t addr;  /* address peers name (verbs: the MR's virtual address;
                       TCP: the same base address, checked by the server) */
    uint64_t len;   /* bytes */
    uint64_t key;   /* verbs: the MR's rkey; TCP: a random 64-bit secret */
    uint32_t nkeys; /* verbs with several NICs: entries in keys; 0: one
                       NIC, key is its rkey */
    uint64_t keys[AGENT_TRANSPORT_MAX_NICS]; /* keys[i]: the rkey on the
                                                owner's NIC i (its i-th
                                                verbs endpoint) */
};

/* Decides whether a connecting peer may touch our regions.  Runs on the
 * backend's thread.  On refusal, fills `why` (sent back to the peer). */
typedef bool (*agent_transport_admit_cb)(void *arg, const char *node,
                                         uint64_t boot_id, char *why,
                                         size_t whylen);

struct agent_transport_config {
    const char *node;    /* our node name, sent in handshakes; copied */
    uint64_t boot_id;    /* our boot id, sent in handshakes */
    const char *address; /* numeric address to listen on; NULL or "": no
                            listener (a client-only transport) */
    uint16_t port;       /* port to listen on; 0: any (read it back
                            with agent_transport_port) */
    const char *device;  /* verbs: RDMA device to use; NULL or "": the
                            one that owns `address` */
    const char *const *more_addresses; /* verbs: further NICs to listen
                                          on and stripe over, one address
                                          each, on distinct RDMA devices
                                          (needs address); copied */
    unsigned n_more_addresses;      /* entries, < AGENT_TRANSPORT_MAX_NICS */
    unsigned conns;                 /* TCP: sockets per peer, 0: default (4) */
    uint64_t slice;                 /* bytes per slice of a large transfer, 0:
                                       default (1 MiB) */
    agent_transport_admit_cb admit; /* required when listening */
    void *admit_arg;                /* passed to admit */
};

/* Who to connect to.  Strings are copied. */
struct agent_transport_peer {
    const char *node;    /* the node we expect to answer */
    uint64_t boot_id;    /* its boot id; 0 accepts any */
    const char *address; /* where it listens (numeric) */
    uint16_t port;
    /* verbs: the peer's further NIC endpoints, in the order it announced
     * them (its region's keys[1..] belong to them).  Connection path i
     * pairs our NIC i with the peer's NIC i. */
    unsigned n_more;
    struct {
        const char *address; /* numeric */
        uint16_t port;       /* its port */
    } more[AGENT_TRANSPORT_MAX_NICS - 1];
};

struct agent_transport_op;
typedef void (*agent_transport_done_cb)(struct agent_transport_op *,
                                        void *arg);

/* One one-sided operation.  The caller owns it until `done` has run. */
struct agent_transport_op {
    /* Filled by the caller. */
    int opcode;   /* enum agent_transport_opcode */
    void *local;  /* local bytes, inside a region registered here */
    uint64_t len; /* bytes to move, > 0 */
    struct agent_transport_region remote; /* the peer's region */
    uint64_t remote_off;                  /* offset inside it */
    agent_transport_done_cb done; /* runs once, on the backend thread */
    void *arg;                    /* its argument */
    /* Filled before done runs. */
    int status;                          /* 0 or a negative errno */
    char error[AGENT_TRANSPORT_ERR_LEN]; /* why, when status != 0 */
    /* Internal: the generic layer and the backend. */
    uint32_t lregion;                /* index of the local registration */
    uint64_t slices_left;            /* slices not yet completed */
    struct agent_transport_op *next; /* backend queues */
};

struct agent_transport_stats {
    uint64_t ops;            /* operations completed */
    uint64_t op_errors;      /* completed with an error */
    uint64_t bytes_read;     /* READ payload moved, as initiator */
    uint64_t bytes_written;  /* WRITE payload moved, as initiator */
    uint64_t bytes_served;   /* payload peers moved in our regions */
    uint64_t refused;        /* peer requests refused (key, range,
                                handshake, admission) */
    uint64_t connects;       /* sockets (TCP) or QPs (verbs) up, both sides */
    uint64_t connect_errors; /* connections that failed to establish */
    uint64_t cpu_copy_bytes; /* payload bytes the backend copied with the
                                CPU in user space; 0 is the goal */
    uint64_t slice_retries;  /* verbs: slices posted again on another NIC
                                path after theirs failed */
    unsigned n_nics;         /* verbs: NICs (devices) below, in config order */
    struct agent_transport_nic_stats {
        char name[64];               /* RDMA device name */
        uint64_t slices;             /* slices completed as initiator */
        uint64_t bytes;              /* their payload */
        uint64_t slice_errors;       /* slices that failed on this NIC */
    } nic[AGENT_TRANSPORT_MAX_NICS]; /* per NIC */
};

struct agent_transport;
struct agent_transport_conn;

/* One backend.  Generic code never looks past this table.  Arguments are
 * checked by the generic layer before the backend sees them. */
struct agent_transport_ops {
    const char *name;               /* "tcp", "verbs" */
    enum agent_transport_kind kind; /* what it implements */
    size_t size;                    /* backend struct, embeds the base */
    /* True when this machine can run the backend; otherwise fills why. */
    bool (*available)(char *why, size_t whylen);
    /* Sets up in zeroed memory and starts the backend thread (and the
     * listener, when cfg->address is set); undoes everything on failure. */
    int (*init)(struct agent_transport *t,
                const struct agent_transport_config *cfg, char *err,
                size_t errlen);
    /* Disconnects every connection (their ops complete with -ECANCELED),
     * stops the thread, releases everything init acquired. */
    void (*fini)(struct agent_transport *t);
    /* Makes [base, base+len) reachable by admitted peers; fills out. */
    int (*reg)(struct agent_transport *t, uint32_t index, void *base,
               uint64_t len, struct agent_transport_region *out, char *err,
               size_t errlen);
    /* Optional (NULL: the backend cannot): registers GPU memory
     * [base, base+len) exported as the dma-buf `fd` (its bytes from
     * fd_off), so the NIC reaches it without the CPU mapping it.  Fills
     * out like reg; fd stays the caller's. */
    int (*reg_dmabuf)(struct agent_transport *t, uint32_t index, void *base,
                      uint64_t len, int fd, uint64_t fd_off,
                      struct agent_transport_region *out, char *err,
                      size_t errlen);
    /* True when the NIC itself moves the bytes of a registered region
     * (verbs), so a region of GPU memory (registered through reg_dmabuf,
     * or through reg where nvidia-peermem lets the NIC pin it) works like
     * host memory; false when the backend's CPU touches them (TCP). */
    bool device_memory;
    /* Withdraws a registration; peers' later accesses are refused. */
    void (*dereg)(struct agent_transport *t, uint32_t index);
    /* Starts connecting in the background and returns at once; ops
     * posted meanwhile wait.  If the connection fails, they and every
     * later op complete with its error. */
    int (*connect)(struct agent_transport *t,
                   const struct agent_transport_peer *peer,
                   struct agent_transport_conn **out, char *err,
                   size_t errlen);
    /* 0 while connecting or up, else the negative errno that broke it
     * (and its text in err). */
    int (*conn_status)(struct agent_transport_conn *c, char *err,
                       size_t errlen);
    /* Queues ops (all checked).  Each completes exactly once. */
    int (*post)(struct agent_transport_conn *c,
                struct agent_transport_op *const *ops, size_t n);
    /* Closes; ops not yet completed complete with -ECANCELED before this
     * returns, and no callback for c runs after it. */
    void (*disconnect)(struct agent_transport_conn *c);
    /* The port the listener is bound to, 0 without one. */
    uint16_t (*port)(struct agent_transport *t);
    /* Adds the backend's counters into out. */
    void (*stats)(struct agent_transport *t,
                  struct agent_transport_stats *out);
};

/* A registration, as the generic layer tracks it. */
struct agent_transport_reg {
    bool used;                            /* slot taken */
    bool leaving;                         /* being deregistered */
    void *base;                           /* local memory */
    uint64_t len;                         /* bytes */
    struct agent_transport_region region; /* what peers are told */
    void *priv;                           /* backend's (e.g. the MR) */
};

/* The base every backend embeds first. */
struct agent_transport {
    const struct agent_transport_ops *ops; /* the backend */
    struct agent_transport_reg regs[AGENT_TRANSPORT_MAX_REGIONS];
    void *regs_lock; /* pthread_mutex_t *, guards regs */
};

/* The backends this module ships. */
extern const struct agent_transport_ops agent_transport_tcp_ops;
extern const struct agent_transport_ops agent_transport_verbs_ops;

/* --- Generic API ---------------------------------------------------- */

/* The ops of a built-in kind, or NULL. */
const struct agent_transport_ops *
agent_transport_ops_of(enum agent_transport_kind kind);

/* "tcp", "verbs", "unknown". */
const char *agent_transport_kind_name(enum agent_transport_kind kind);

/* True when the kind can run here; else why not (e.g. "no RDMA device"). */
bool agent_transport_available(enum agent_transport_kind kind, char *why,
                               size_t whylen);

/* Creates a transport.  -EINVAL for a bad configuration (err says which
 * member), -EOPNOTSUPP when the backend cannot run here, -EADDRINUSE when
 * the port is taken. */
int agent_transport_create(enum agent_transport_kind kind,
                           const struct agent_transport_config *cfg,
                           struct agent_transport **out, char *err,
                           size_t errlen);
int agent_transport_create_ops(const struct agent_transport_ops *ops,
                               const struct agent_transport_config *cfg,
                               struct agent_transport **out, char *err,
                               size_t errlen);
/* Finalises and frees; NULL is a no-op. */
void agent_transport_destroy(struct agent_transport *t);

enum agent_transport_kind
agent_transport_kind_of(const struct agent_transport *t);
const char *agent_transport_name(const struct agent_transport *t);
uint16_t agent_transport_port(struct agent_transport *t);

/* Registers local memory; -ENOSPC when every slot is taken. */
int agent_transport_register(struct agent_transport *t, void *base,
                             uint64_t len, struct agent_transport_region *out,
                             char *err, size_t errlen);
/* Registers GPU memory exported as a dma-buf (see reg_dmabuf):
 * -EOPNOTSUPP, with err saying so, when the backend cannot. */
int agent_transport_register_dmabuf(struct agent_transport *t, void *base,
                                    uint64_t len, int fd, uint64_t fd_off,
                                    struct agent_transport_region *out,
                                    char *err, size_t errlen);
/* True when regions of GPU memory work on this transport (ops
 * device_memory): the fabric registers the HBM region only there. */
bool agent_transport_device_memory(const struct agent_transport *t);
/* -ENOENT if id is not registered. */
int agent_transport_deregister(struct agent_transport *t, uint32_t id);
/* The registration in slot index (internal; op->lregion). */
const struct agent_transport_reg *
agent_transport_reg_at(struct agent_transport *t, uint32_t index);

int agent_transport_connect(struct agent_transport *t,
                            const struct agent_transport_peer *peer,
                            struct agent_transport_conn **out, char *err,
                            size_t errlen);
int agent_transport_conn_status(struct agent_transport *t,
                                struct agent_transport_conn *c, char *err,
                                size_t errlen);
/* Checks every op first (opcode, length, local range registered here,
 * remote range inside the remote region) and posts none if any is bad:
 * -EINVAL or -ERANGE with the op's error text set.  The transport `t`
 * is the one c belongs to. */
int agent_transport_post(struct agent_transport *t,
                         struct agent_transport_conn *c,
                         struct agent_transport_op *const *ops, size_t n);
void agent_transport_disconnect(struct agent_transport *t,
                                struct agent_transport_conn *c);
void agent_transport_stats(struct agent_transport *t,
                           struct agent_transport_stats *out);

/* For backends: completes op with status and a formatted error text. */
void agent_transport_op_fail(struct agent_transport_op *op, int status,
                             const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif /* AGENT_TRANSPORT_H */
