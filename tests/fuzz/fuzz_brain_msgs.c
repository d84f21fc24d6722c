/*
 * Fuzz target: arbitrary bytes as a bus message from an agent or gateway,
 * handled by a real brain (brain/brain.c) exactly as its bus callback
 * handles a request: mcos_wire_decode, then hello, report, watch or route
 * request into aggregate (every field's validation), the prefix index, the
 * decide/compile graph and routing, then brain_run (compile, push held
 * watches).  Whatever the bytes: no crash, no leak, no undefined
 * behaviour, and every answer a message that decodes.
 *
 * No sockets: the target is linked with -Wl,--wrap for the bus server's
 * functions (tests/fuzz/CMakeLists.txt), so brain_create hands its request
 * callback to this file, which calls it with a request holding the input;
 * replies and drops come back here and are checked and freed.
 *
 * Input bytes that do not decode as a message are used as the body of a
 * well-formed envelope (structure-aware path), byte 0 choosing:
 *   bits 0-2  the type (hello, report, watch, route request, then types
 *             the brain must refuse);
 *   bit 3     for hello/report/watch: speak as one of the known nodes
 *             (its name and boot id, the next report sequence number), so
 *             that the body's fields reach validation and the model;
 *   bits 4-5  which known node;
 *   bits 6-7  how far the brain's clock moves first (liveness).
 *
 * One brain lives across inputs, started with three nodes that said hello
 * and one report of KV blocks, and is recreated every RESET_EVERY inputs
 * so that its state stays bounded, and after any input that made its
 * generation jump (to one an agent claimed): it must start again from
 * the state directory it saved.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "brain.h"
#include "bus.h"
#include "clock.h"
#include "config.h"
#include "log.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RESET_EVERY 500

/* ------------------------------------------------------------------------
 * The bus server, replaced (-Wl,--wrap=...): requests are made here. */

struct mcos_bus_request {
    uint8_t *data; /* a copy of the input, valid until answered */
    size_t len;
};

int __wrap_mcos_bus_server_create(uv_loop_t *, const char *url,
                                  mcos_bus_request_cb cb, void *arg,
                                  struct mcos_bus_server **out, char *err,
                                  size_t errlen);
void __wrap_mcos_bus_server_close(struct mcos_bus_server *);
const void *__wrap_mcos_bus_request_data(const struct mcos_bus_request *,
                                         size_t *len);
int __wrap_mcos_bus_reply(struct mcos_bus_request *, const void *data,
                          size_t len);
void __wrap_mcos_bus_request_drop(struct mcos_bus_request *);

static mcos_bus_request_cb srv_cb;
static void *srv_arg;
static int srv_token;
static size_t open_requests; /* made here, not yet answered or dropped */

int
__wrap_mcos_bus_server_create(uv_loop_t *loop, const char *url,
                              mcos_bus_request_cb cb, void *arg,
                              struct mcos_bus_server **out, char *err,
                              size_t errlen)
{
    srv_cb = cb;
    srv_arg = arg;
    *out = (struct mcos_bus_server *)(void *)&srv_token;
    return 0;
}

void
__wrap_mcos_bus_server_close(struct mcos_bus_server *s)
{
    srv_cb = NULL;
    srv_arg = NULL;
}

const void *
__wrap_mcos_bus_request_data(const struct mcos_bus_request *req, size_t *len)
{
    *len = req->len;
    return req->data;
}

static void
request_free(struct mcos_bus_request *req)
{
    if (!open_requests) {
        abort(); /* answered twice */
    }
    open_requests--;
    free(req->data);
    free(req);
}

int
__wrap_mcos_bus_reply(struct mcos_bus_request *req, const void *data,
                      size_t len)
{
    struct mcos_wire_msg m;
    char err[MCOS_WIRE_ERR_LEN];

    /* Whatever came in, what goes out is a reply that decodes. */
    if (mcos_wire_decode(data, len, &m, err, sizeof err) ||
        (m.type != MCOS__MSG_TYPE__MSG_REPLY &&
         m.type != MCOS__MSG_TYPE__MSG_ROUTE_REPLY)) {
        abort();
    }
    mcos_wire_msg_free(&m);
    request_free(req);
    return 0;
}

void
__wrap_mcos_bus_request_drop(struct mcos_bus_request *req)
{
    request_free(req);
}

/* ------------------------------------------------------------------------
 * The brain. */

static const char *const node_names[] = {"n1", "n2", "n3"};
static const uint64_t node_boots[] = {0x1001, 0x1002, 0x1003};

static uv_loop_t loop;
static struct mcos_fake_clock clk;
static struct brain *brain;
static char state_dir[64];
static unsigned inputs;

/* Delivers one message as the bus would, then lets the loop run what it
 * scheduled. */
static void
deliver(const void *data, size_t len)
{
    struct mcos_bus_request *req = calloc(1, sizeof *req);

    if (!req || !(req->data = malloc(len ? len : 1))) {
        abort();
    }
    memcpy(req->data, data, len);
    req->len = len;
    open_requests++;
    srv_cb(req, srv_arg);
    uv_run(&loop, UV_RUN_NOWAIT);
}

static void
deliver_msg(Mcos__MsgType type, const ProtobufCMessage *body)
{
    uint8_t *buf;
    size_t len;

    if (mcos_wire_encode(type, body, &buf, &len)) {
        abort();
    }
    deliver(buf, len);
    free(buf);
}

static void
hello(size_t i, const char *rack, bool hbm, bool nvme)
{
    Mcos__Hello h = MCOS__HELLO__INIT;
    Mcos__Labels labels = MCOS__LABELS__INIT;
    Mcos__TierInfo tiers[3], *tp[3];
    Mcos__Endpoint ep = MCOS__ENDPOINT__INIT, *epp = &ep;
    size_t n = 0;

    for (int k = 0; k < 3; k++) {
        mcos__tier_info__init(&tiers[k]);
        tp[k] = &tiers[k];
    }
    if (hbm) {
        tiers[n].kind = MCOS__TIER_KIND__TIER_HBM;
        tiers[n].capacity_bytes = 16ULL << 30;
        tiers[n++].available = true;
    }
    tiers[n].kind = MCOS__TIER_KIND__TIER_DRAM;
    tiers[n].capacity_bytes = 64ULL << 30;
    tiers[n++].available = true;
    if (nvme) {
        tiers[n].kind = MCOS__TIER_KIND__TIER_NVME;
        tiers[n].capacity_bytes = 1ULL << 40;
        tiers[n++].available = true;
    }
    labels.rack = (char *)rack;
    labels.zone = "z1";
    labels.host = (char *)node_names[i];
    ep.transport = MCOS__TRANSPORT__TRANSPORT_TCP;
    ep.address = "10.0.0.1";
    ep.port = 7653 + (uint32_t)i;
    h.node = (char *)node_names[i];
    h.boot_id = node_boots[i];
    h.labels = &labels;
    h.n_tiers = n;
    h.tiers = tp;
    h.n_endpoints = 1;
    h.endpoints = &epp;
    h.version = "fuzz";
    deliver_msg(MCOS__MSG_TYPE__MSG_HELLO, &h.base);
}

/* n1 holds a chain of four KV blocks of namespace "m" in HBM. */
static void
report_blocks(void)
{
    Mcos__Report r = MCOS__REPORT__INIT;
    Mcos__ObjectEvent ev[4], *evp[4];

    for (int k = 0; k < 4; k++) {
        mcos__object_event__init(&ev[k]);
        ev[k].kind = MCOS__EVENT_KIND__EVENT_STORED;
        ev[k].object_id = 0xb10c0 + (uint64_t)k;
        ev[k].parent_id = k ? 0xb10c0 + (uint64_t)k - 1 : 0;
        ev[k].class_ = MCOS__OBJECT_CLASS__CLASS_KV_BLOCK;
        ev[k].tier = MCOS__TIER_KIND__TIER_HBM;
        ev[k].size_bytes = 1 << 20;
        ev[k].ns = "m";
        evp[k] = &ev[k];
    }
    r.node = (char *)node_names[0];
    r.boot_id = node_boots[0];
    r.seq = 1;
    r.n_events = 4;
    r.events = evp;
    deliver_msg(MCOS__MSG_TYPE__MSG_REPORT, &r.base);
}

static void
brain_stop(void)
{
    if (!brain) {
        return;
    }
    brain_close(brain);
    brain = NULL;
    for (int i = 0; i < 10; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    if (open_requests) {
        abort(); /* the brain lost a request it was answering */
    }
}

static void
brain_start(void)
{
    struct brain_config c = {0};
    char err[256];

    if (mcos_cfg_defaults(brain_config_opts, brain_n_config_opts, &c, err,
                          sizeof err)) {
        abort();
    }
    free(c.listen);
    free(c.http_listen);
    free(c.state_dir);
    c.listen = strdup("ipc:///nonexistent/fuzz"); /* never opened */
    c.http_listen = strdup("");
    c.state_dir = strdup(state_dir);
    c.report_interval_ms = 100;
    c.suspect_after_ms = 300;
    c.fail_after_ms = 600;
    if (brain_create(&loop, &c, &clk.base, &brain, err, sizeof err)) {
        fprintf(stderr, "fuzz_brain_msgs: %s\n", err);
        abort();
    }
    mcos_cfg_free(brain_config_opts, brain_n_config_opts, &c);
    /* Runs happen when inputs schedule them, not on wall-clock ticks. */
    uv_timer_stop(&brain->tick);
    hello(0, "r1", true, true);
    hello(1, "r1", false, false);
    hello(2, "r2", false, true);
    report_blocks();
    if (brain->counters.hellos != 3 || brain->counters.reports != 1 ||
        brain->counters.bad_messages) {
        abort(); /* the fixture itself was refused */
    }
}

static void
cleanup(void)
{
    char path[128];

    brain_stop();
    uv_loop_close(&loop);
    snprintf(path, sizeof path, "%s/brain.json", state_dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/brain.lock", state_dir);
    unlink(path);
    rmdir(state_dir);
}

static void
init_once(void)
{
    mcos_log_set_spec("off");
    snprintf(state_dir, sizeof state_dir, "/tmp/fuzz_brain_msgs.XXXXXX");
    if (!mkdtemp(state_dir)) {
        abort();
    }
    uv_loop_init(&loop);
    mcos_fake_clock_init(&clk, 1000000);
    atexit(cleanup);
}

/* ------------------------------------------------------------------------
 * Structure-aware path. */

static const Mcos__MsgType types[8] = {
    MCOS__MSG_TYPE__MSG_HELLO,        MCOS__MSG_TYPE__MSG_REPORT,
    MCOS__MSG_TYPE__MSG_WATCH,        MCOS__MSG_TYPE__MSG_ROUTE_REQUEST,
    MCOS__MSG_TYPE__MSG_API_REQUEST,  MCOS__MSG_TYPE__MSG_REPLY,
    MCOS__MSG_TYPE__MSG_PEER_REQUEST, MCOS__MSG_TYPE__MSG_ROUTE_REPLY,
};

/* Rewrites a body to speak as known node `i`; false if it does not decode
 * (it is then sent as it is, to be refused). */
static bool
as_node(Mcos__MsgType type, size_t i, const uint8_t *body, size_t len)
{
    const struct brain_node *n =
        brain_cluster_find(&brain->cluster, node_names[i]);
    ProtobufCMessage *m = NULL;
    char **name = NULL, *was;

    switch (type) {
    case MCOS__MSG_TYPE__MSG_HELLO: {
        Mcos__Hello *h = mcos__hello__unpack(NULL, len, body);

        if (h) {
            name = &h->node;
            h->boot_id = n ? n->boot_id.v : node_boots[i];
            m = &h->base;
        }
        break;
    }
    case MCOS__MSG_TYPE__MSG_REPORT: {
        Mcos__Report *r = mcos__report__unpack(NULL, len, body);

        if (r) {
            name = &r->node;
            r->boot_id = n ? n->boot_id.v : node_boots[i];
            r->seq = n ? n->last_seq + 1 : 1;
            m = &r->base;
        }
        break;
    }
    case MCOS__MSG_TYPE__MSG_WATCH: {
        Mcos__Watch *w = mcos__watch__unpack(NULL, len, body);

        if (w) {
            name = &w->node;
            w->boot_id = n ? n->boot_id.v : node_boots[i];
            m = &w->base;
        }
        break;
    }
    default:
        break;
    }
    if (!m) {
        return false;
    }
    was = *name;
    *name = (char *)node_names[i];
    deliver_msg(type, m);
    *name = was;
    protobuf_c_message_free_unpacked(m, NULL);
    return true;
}

static void
structured(const uint8_t *data, size_t size)
{
    static const uint64_t advance_us[4] = {1000, 100000, 400000, 1000000};
    Mcos__Envelope env = MCOS__ENVELOPE__INIT;
    Mcos__MsgType type = types[data[0] & 7];
    uint8_t *buf;
    size_t len;

    mcos_fake_clock_advance(&clk, advance_us[data[0] >> 6]);
    if ((data[0] & 8) &&
        as_node(type, ((data[0] >> 4) & 3) % 3, data + 1, size - 1)) {
        return;
    }
    env.major = MCOS_PROTO_MAJOR;
    env.minor = MCOS_PROTO_MINOR;
    env.type = type;
    env.body.data = (uint8_t *)data + 1;
    env.body.len = size - 1;
    len = mcos__envelope__get_packed_size(&env);
    buf = malloc(len ? len : 1);
    if (!buf) {
        abort();
    }
    mcos__envelope__pack(&env, buf);
    deliver(buf, len);
    free(buf);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool started;
    struct mcos_wire_msg m;
    char err[MCOS_WIRE_ERR_LEN];
    uint64_t gen;

    if (!started) {
        init_once();
        started = true;
    }
    if (inputs++ % RESET_EVERY == 0) {
        brain_stop();
        brain_start();
    }
    gen = brain->gen;
    if (mcos_wire_decode(data, size, &m, err, sizeof err) == 0) {
        mcos_wire_msg_free(&m);
        mcos_fake_clock_advance(&clk, 1000);
        deliver(data, size);
    } else if (size > 0) {
        structured(data, size);
    } else {
        deliver(data, size);
    }
    if (brain->gen > gen + 1) {
        /* The generation jumped to one an agent claimed, and was saved:
         * a brain must be able to start again from what it saved. */
        brain_stop();
        brain_start();
    }
    return 0;
}
