/* A real brain for fuzz targets, without sockets (brain_rig.h). */
#include "brain_rig.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "brainfix.h"
#include "bus.h"
#include "config.h"
#include "log.h"

struct brain_rig rig;
const char *const rig_node_names[3] = {"n1", "n2", "n3"};
const uint64_t rig_node_boots[3] = {0x1001, 0x1002, 0x1003};

/* ------------------------------------------------------------------------
 * The bus server, replaced: requests are made here. */

struct mcos_bus_request {
    uint8_t *data; /* a copy of the message, valid until answered */
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

void
rig_deliver(const void *data, size_t len)
{
    struct mcos_bus_request *req = calloc(1, sizeof *req);

    if (!req || !(req->data = malloc(len ? len : 1))) {
        abort();
    }
    memcpy(req->data, data, len);
    req->len = len;
    open_requests++;
    srv_cb(req, srv_arg);
    uv_run(&rig.loop, UV_RUN_NOWAIT);
}

void
rig_deliver_msg(Mcos__MsgType type, const ProtobufCMessage *body)
{
    uint8_t *buf;
    size_t len;

    if (mcos_wire_encode(type, body, &buf, &len)) {
        abort();
    }
    rig_deliver(buf, len);
    free(buf);
}

static void
hello(size_t i, const char *rack, bool hbm, bool nvme)
{
    Mcos__Hello *h = fix_hello(rig_node_names[i], rig_node_boots[i], rack, hbm,
                               nvme, "10.0.0.1", 7653 + (uint32_t)i, 0);

    if (!h) {
        abort();
    }
    rig_deliver_msg(MCOS__MSG_TYPE__MSG_HELLO, &h->base);
    mcos__hello__free_unpacked(h, NULL);
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
    r.node = (char *)rig_node_names[0];
    r.boot_id = rig_node_boots[0];
    r.seq = 1;
    r.n_events = 4;
    r.events = evp;
    rig_deliver_msg(MCOS__MSG_TYPE__MSG_REPORT, &r.base);
}

void
rig_stop(void)
{
    if (!rig.brain) {
        return;
    }
    brain_close(rig.brain);
    rig.brain = NULL;
    for (int i = 0; i < 10; i++) {
        uv_run(&rig.loop, UV_RUN_NOWAIT);
    }
    if (open_requests) {
        abort(); /* the brain lost a request it was answering */
    }
}

void
rig_start(const char *http_listen)
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
    c.http_listen = strdup(http_listen);
    c.state_dir = strdup(rig.state_dir);
    c.report_interval_ms = 100;
    c.suspect_after_ms = 300;
    c.fail_after_ms = 600;
    if (brain_create(&rig.loop, &c, &rig.clk.base, &rig.brain, err,
                     sizeof err)) {
        fprintf(stderr, "brain_rig: %s\n", err);
        abort();
    }
    mcos_cfg_free(brain_config_opts, brain_n_config_opts, &c);
    /* Runs happen when inputs schedule them, not on wall-clock ticks. */
    uv_timer_stop(&rig.brain->tick);
    hello(0, "r1", true, true);
    hello(1, "r1", false, false);
    hello(2, "r2", false, true);
    report_blocks();
    if (rig.brain->counters.hellos != 3 || rig.brain->counters.reports != 1 ||
        rig.brain->counters.bad_messages) {
        abort(); /* the fixture itself was refused */
    }
}

static void
cleanup(void)
{
    char path[128];

    rig_stop();
    uv_loop_close(&rig.loop);
    snprintf(path, sizeof path, "%s/brain.json", rig.state_dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/brain.lock", rig.state_dir);
    unlink(path);
    rmdir(rig.state_dir);
}

void
rig_init(const char *name)
{
    mcos_log_set_spec("off");
    snprintf(rig.state_dir, sizeof rig.state_dir, "/tmp/%s.XXXXXX", name);
    if (!mkdtemp(rig.state_dir)) {
        abort();
    }
    uv_loop_init(&rig.loop);
    mcos_fake_clock_init(&rig.clk, 1000000);
    atexit(cleanup);
}
