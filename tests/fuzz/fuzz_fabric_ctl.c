/*
 * Fuzz target: an agent's fabric control endpoint (agent/fabric.c) on
 * requests from peers: the bytes of each are handed to
 * agent_fabric_serve (fabric_internal.h), what the endpoint does with a
 * message nng delivered, against a real fabric over a real store with a
 * 1 MiB DRAM arena (TCP transport on 127.0.0.1), whose table admits two
 * peers: "peer" (boot 7) and "peer2" (boot 9).
 *
 * An input is a sequence of requests, each [flags][len][len bytes]:
 *   flags bit 0  the bytes are the message as sent (envelope and all);
 *                else they are a PeerRequest body, adjusted by the other
 *                bits and encoded as a peer would:
 *         bit 1  sender: an admitted peer (boot_id's low bit picks which)
 *         bit 2  handle: one this input was given (handle picks which),
 *                with its object id
 *         bit 3  checksum: that of the reserved bytes, as they are
 *         bits 4-5  op: as decoded, ALLOC, COMMIT, FREE
 *         bit 6  transport TCP, and size 1..64 KiB
 *         bit 7  purpose replica (else hosted), tier DRAM
 * Every reply must decode as a PeerReply; a granted ALLOC's range must
 * lie inside the region it names.  After each input, what it left is
 * given back (FREE for what peers hold, evict for adopted replicas, and
 * reservations expire), and the arena and the hosting counters must be
 * back to zero: no crash, no leak, no bytes lost.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "fabric.h"
#include "fabric_internal.h"
#include "log.h"
#include "store.h"
#include "tables.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SELF     "fz1"
#define ARENA    (1024 * 1024)
#define MAX_KEEP 1024
#define RECREATE 5000
#define TTL_US   (31ULL * 1000 * 1000)

static const struct {
    const char *name;
    uint64_t boot;
} PEERS[2] = {{"peer", 7}, {"peer2", 9}};

static uv_loop_t loop;
static struct mcos_fake_clock clk;
static struct agent_tables *tables;
static struct agent_store *store;
static struct agent_fabric *fab;
static struct agent_tier *dram;
static unsigned uses;

/* What this input was given: reservations (and hosted objects), and the
 * replicas the store adopted. */
static struct keep {
    char owner[64];
    uint64_t boot;
    uint64_t handle;
    uint64_t id;
    uint64_t off, len;
    bool replica;
} keep[MAX_KEEP];
static size_t n_keep;
static uint64_t adopted[MAX_KEEP];
static size_t n_adopted;

/* A port P such that P and P + 1 are free now, as the kernel picks an
 * ephemeral one (the fabric's control endpoint takes P, its TCP
 * transport P + 1). */
static uint16_t
free_pair(void)
{
    for (int tries = 0; tries < 100; tries++) {
        struct sockaddr_in sa = {.sin_family = AF_INET};
        socklen_t sl = sizeof sa;
        int a = socket(AF_INET, SOCK_STREAM, 0), b = -1;
        uint16_t p = 0;

        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (a >= 0 && bind(a, (struct sockaddr *)&sa, sizeof sa) == 0 &&
            getsockname(a, (struct sockaddr *)&sa, &sl) == 0) {
            p = ntohs(sa.sin_port);
            sa.sin_port = htons((uint16_t)(p + 1));
            b = socket(AF_INET, SOCK_STREAM, 0);
            if (p == 65535 || b < 0 ||
                bind(b, (struct sockaddr *)&sa, sizeof sa) != 0) {
                p = 0;
            }
        }
        if (a >= 0) {
            close(a);
        }
        if (b >= 0) {
            close(b);
        }
        if (p) {
            return p;
        }
    }
    return 0;
}

static void
admit_peers(void)
{
    Mcos__Endpoint ep[2], *eps[2] = {&ep[0], &ep[1]};
    Mcos__Region g = MCOS__REGION__INIT, *gs[1] = {&g};
    Mcos__PeerRule pr[2];
    Mcos__Rule rule[2], *rules[2] = {&rule[0], &rule[1]};
    Mcos__TableUpdate u = MCOS__TABLE_UPDATE__INIT;
    char keys[2][32], err[256];

    for (int i = 0; i < 2; i++) {
        mcos__endpoint__init(&ep[i]);
        ep[i].address = "127.0.0.1";
    }
    ep[0].transport = MCOS__TRANSPORT__TRANSPORT_CONTROL;
    ep[0].port = 1;
    ep[1].transport = MCOS__TRANSPORT__TRANSPORT_TCP;
    ep[1].port = 2;
    g.id = 1;
    g.transport = MCOS__TRANSPORT__TRANSPORT_TCP;
    g.address = 0x1000;
    g.length = 1 << 20;
    g.key = 7;
    for (int i = 0; i < 2; i++) {
        mcos__peer_rule__init(&pr[i]);
        pr[i].node = (char *)PEERS[i].name;
        pr[i].boot_id = PEERS[i].boot;
        pr[i].n_endpoints = 2;
        pr[i].endpoints = eps;
        pr[i].n_regions = 1;
        pr[i].regions = gs;
        mcos__rule__init(&rule[i]);
        snprintf(keys[i], sizeof keys[i], "peer/%s", PEERS[i].name);
        rule[i].key = keys[i];
        rule[i].rule_case = MCOS__RULE__RULE_PEER;
        rule[i].peer = &pr[i];
    }
    u.format_version = 1;
    u.gen = 1;
    u.node = SELF;
    u.n_upserts = 2;
    u.upserts = rules;
    if (agent_tables_apply(tables, &u, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_fabric_ctl: table: %s\n", err);
        abort();
    }
    agent_fabric_tables_changed(fab);
}

static void
teardown(void)
{
    agent_store_set_fabric(store, NULL);
    agent_fabric_close(fab);
    agent_store_close(store);
    for (int i = 0; i < 10000 && uv_loop_alive(&loop); i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(100);
    }
    if (uv_loop_close(&loop) != 0) {
        fprintf(stderr, "fuzz_fabric_ctl: the loop still has work\n");
        abort();
    }
    agent_tables_destroy(tables);
    fab = NULL;
}

static void
setup(void)
{
    struct agent_store_config sc = {0};
    struct agent_fabric_config fc = {0};
    struct agent_fabric_hooks hooks;
    char shm[64], err[512];
    int r = -EADDRINUSE;

    if (fab && ++uses < RECREATE) {
        return;
    }
    if (fab) {
        teardown();
    } else {
        mcos_log_set_spec("off");
        agent_tables_register_thread();
        mcos_fake_clock_init(&clk, 1000000000ULL);
    }
    uses = 0;
    snprintf(shm, sizeof shm, "/mcos-fuzz-fabric-%d", getpid());
    sc.node = SELF;
    sc.dram_bytes = ARENA;
    sc.shm_name = shm;
    sc.shm_gid = -1;
    if (uv_loop_init(&loop) != 0 || agent_tables_create(SELF, &tables) != 0 ||
        agent_store_create(&loop, &clk.base, &sc, tables, NULL, &store, err,
                           sizeof err) != 0) {
        fprintf(stderr, "fuzz_fabric_ctl: store: %s\n", err);
        abort();
    }
    /* Nothing else maps the arena: its name goes now, so that a run that
     * ends without closing the store leaves no file in /dev/shm. */
    shm_unlink(shm);
    dram = agent_store_tier(store, MCOS__TIER_KIND__TIER_DRAM);
    agent_store_fabric_hooks(store, &hooks);
    fc.node = SELF;
    fc.boot_id = 0x11;
    fc.address = "127.0.0.1";
    fc.transports = "tcp";
    for (int i = 0; r == -EADDRINUSE && i < 20; i++) {
        fc.port = free_pair();
        r = agent_fabric_create(&loop, &clk.base, &fc, tables, dram, &hooks,
                                &fab, err, sizeof err);
    }
    if (r != 0) {
        fprintf(stderr, "fuzz_fabric_ctl: fabric: %s\n", err);
        abort();
    }
    agent_store_set_fabric(store, fab);
    admit_peers();
}

/* Serves one message; false when no reply came (out of memory), else
 * the decoded reply in m, which the caller frees. */
static bool
serve(const void *msg, size_t len, struct mcos_wire_msg *m)
{
    uint8_t *out = NULL;
    size_t out_len = 0;
    char err[256];

    if (agent_fabric_serve(fab, msg, len, &out, &out_len) != 0) {
        return false; /* the reply could not be encoded: out of memory */
    }
    if (mcos_wire_decode(out, out_len, m, err, sizeof err) != 0 ||
        !mcos_wire_peer_reply(m)) {
        fprintf(stderr, "fuzz_fabric_ctl: a reply that is no PeerReply\n");
        abort();
    }
    free(out);
    return true;
}

/* Notes what a request and its reply left with us to give back. */
static void
note(const Mcos__PeerRequest *q, const Mcos__PeerReply *rep)
{
    if (rep->status != 0) {
        return;
    }
    if (q->op == MCOS__PEER_OP__PEER_ALLOC) {
        if (!rep->region || rep->offset > rep->region->length ||
            q->size > rep->region->length - rep->offset) {
            fprintf(stderr,
                    "fuzz_fabric_ctl: ALLOC granted %llu bytes at "
                    "%llu outside its region\n",
                    (unsigned long long)q->size,
                    (unsigned long long)rep->offset);
            abort();
        }
        if (n_keep < MAX_KEEP) {
            struct keep *k = &keep[n_keep++];

            snprintf(k->owner, sizeof k->owner, "%s", q->node);
            k->boot = q->boot_id;
            k->handle = rep->handle;
            k->id = q->object_id;
            k->off = rep->offset;
            k->len = q->size;
            k->replica = q->purpose == MCOS__PEER_PURPOSE__PURPOSE_REPLICA;
        }
    } else if (q->op == MCOS__PEER_OP__PEER_COMMIT) {
        for (size_t i = 0; i < n_keep; i++) {
            if (keep[i].handle == q->handle && keep[i].replica &&
                !strcmp(keep[i].owner, q->node) && n_adopted < MAX_KEEP) {
                adopted[n_adopted++] = keep[i].id;
            }
        }
    }
}

/* Sends q (adjusted by flags) and notes the outcome. */
static void
send_request(Mcos__PeerRequest *q, unsigned flags)
{
    struct mcos_wire_msg m;
    uint8_t *msg;
    size_t len;
    char *node = q->node; /* unpacked: freed with q */
    int op = (flags >> 4) & 3;

    if (flags & 2) {
        int i = (int)(q->boot_id & 1);

        q->node = (char *)PEERS[i].name;
        q->boot_id = PEERS[i].boot;
    }
    if ((flags & 4) && n_keep) {
        const struct keep *k = &keep[q->handle % n_keep];

        q->handle = k->handle;
        q->object_id = k->id;
        if (flags & 8) {
            struct agent_tier_extent e = {.off = k->off, .len = k->len};

            agent_tier_checksum(dram, &e, e.len, &q->checksum);
        }
    }
    if (op) {
        q->op = op == 1   ? MCOS__PEER_OP__PEER_ALLOC
                : op == 2 ? MCOS__PEER_OP__PEER_COMMIT
                          : MCOS__PEER_OP__PEER_FREE;
    }
    if (flags & 64) {
        q->transport = MCOS__TRANSPORT__TRANSPORT_TCP;
        q->size = q->size % (64 * 1024) + 1;
    }
    if (flags & 128) {
        q->purpose = MCOS__PEER_PURPOSE__PURPOSE_REPLICA;
        q->tier = MCOS__TIER_KIND__TIER_DRAM;
    }
    if (mcos_wire_encode(MCOS__MSG_TYPE__MSG_PEER_REQUEST, &q->base, &msg,
                         &len) == 0) {
        if (serve(msg, len, &m)) {
            note(q, mcos_wire_peer_reply(&m));
            mcos_wire_msg_free(&m);
        }
        free(msg);
    }
    q->node = node;
}

/* Serves the message as it is; notes what it left when it decodes. */
static void
send_raw(const uint8_t *p, size_t n)
{
    struct mcos_wire_msg req, m;
    char err[256];

    if (!serve(p, n, &m)) {
        return;
    }
    if (mcos_wire_decode(p, n, &req, err, sizeof err) == 0) {
        const Mcos__PeerRequest *q = mcos_wire_peer_request(&req);

        if (q && q->node) {
            note(q, mcos_wire_peer_reply(&m));
        }
        mcos_wire_msg_free(&req);
    }
    mcos_wire_msg_free(&m);
}

static void
evicted(struct agent_store_req *req, void *arg)
{
    (void)req;
    *(bool *)arg = true;
}

/* Gives back what the input left, and checks nothing else is held. */
static void
clean(void)
{
    struct agent_fabric_counters fcnt;
    struct agent_store_tier st;

    for (size_t i = 0; i < n_keep; i++) {
        Mcos__PeerRequest q = MCOS__PEER_REQUEST__INIT;
        struct mcos_wire_msg m;
        uint8_t *msg;
        size_t len;

        q.op = MCOS__PEER_OP__PEER_FREE;
        q.node = keep[i].owner;
        q.boot_id = keep[i].boot;
        q.handle = keep[i].handle;
        if (mcos_wire_encode(MCOS__MSG_TYPE__MSG_PEER_REQUEST, &q.base, &msg,
                             &len) == 0) {
            if (serve(msg, len, &m)) {
                mcos_wire_msg_free(&m);
            }
            free(msg);
        }
    }
    for (size_t i = 0; i < n_adopted; i++) {
        struct agent_store_req req = {0};
        bool done = false;

        req.op = MCOS__API_OP__API_EVICT;
        req.id = adopted[i];
        req.policy = 1; /* drop */
        req.done = evicted;
        req.arg = &done;
        agent_store_submit(store, &req);
        for (int k = 0; k < 1000 && !done; k++) {
            uv_run(&loop, UV_RUN_NOWAIT);
        }
    }
    /* Reservations nobody committed expire. */
    mcos_fake_clock_advance(&clk, TTL_US);
    agent_fabric_tick(fab);
    n_keep = 0;
    n_adopted = 0;
    agent_fabric_counters(fab, &fcnt);
    agent_store_tier_usage(store, MCOS__TIER_KIND__TIER_DRAM, &st);
    if (fcnt.hosted_objects || fcnt.hosted_bytes || st.used || st.objects) {
        fprintf(stderr,
                "fuzz_fabric_ctl: left behind: %llu hosted objects, %llu "
                "hosted bytes, %llu arena bytes, %llu objects\n",
                (unsigned long long)fcnt.hosted_objects,
                (unsigned long long)fcnt.hosted_bytes,
                (unsigned long long)st.used, (unsigned long long)st.objects);
        abort();
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;

    setup();
    /* Stops where the notes are full: what is not noted cannot be
     * given back. */
    while (size - off >= 2 && n_keep < MAX_KEEP && n_adopted < MAX_KEEP) {
        unsigned flags = data[off];
        size_t n = data[off + 1];
        const uint8_t *p = data + off + 2;

        off += 2;
        n = n < size - off ? n : size - off;
        off += n;
        if (flags & 1) {
            send_raw(p, n);
        } else {
            Mcos__PeerRequest *u = mcos__peer_request__unpack(NULL, n, p);
            Mcos__PeerRequest q = MCOS__PEER_REQUEST__INIT;

            send_request(u ? u : &q, flags);
            if (u) {
                mcos__peer_request__free_unpacked(u, NULL);
            }
        }
    }
    clean();
    return 0;
}
