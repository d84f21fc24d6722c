/*
 * Fuzz target: arbitrary bytes as a bus message from an agent or gateway,
 * handled by a real brain (brain/brain.c) exactly as its bus callback
 * handles a request: mcos_wire_decode, then hello, report, watch or route
 * request into aggregate (every field's validation), the prefix index, the
 * decide/compile graph and routing, then brain_run (compile, push held
 * watches).  Whatever the bytes: no crash, no leak, no undefined
 * behaviour, and every answer a message that decodes.
 *
 * No sockets: the brain is brain_rig.h's, whose bus server is replaced at
 * link time; a request holding the input goes to the brain's own request
 * callback, and its reply comes back there, is checked and freed.
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
#include "brain_rig.h"
#include "clock.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RESET_EVERY 500

static unsigned inputs;

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
        brain_cluster_find(&rig.brain->cluster, rig_node_names[i]);
    ProtobufCMessage *m = NULL;
    char **name = NULL, *was;

    switch (type) {
    case MCOS__MSG_TYPE__MSG_HELLO: {
        Mcos__Hello *h = mcos__hello__unpack(NULL, len, body);

        if (h) {
            name = &h->node;
            h->boot_id = n ? n->boot_id.v : rig_node_boots[i];
            m = &h->base;
        }
        break;
    }
    case MCOS__MSG_TYPE__MSG_REPORT: {
        Mcos__Report *r = mcos__report__unpack(NULL, len, body);

        if (r) {
            name = &r->node;
            r->boot_id = n ? n->boot_id.v : rig_node_boots[i];
            r->seq = n ? n->last_seq + 1 : 1;
            m = &r->base;
        }
        break;
    }
    case MCOS__MSG_TYPE__MSG_WATCH: {
        Mcos__Watch *w = mcos__watch__unpack(NULL, len, body);

        if (w) {
            name = &w->node;
            w->boot_id = n ? n->boot_id.v : rig_node_boots[i];
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
    *name = (char *)rig_node_names[i];
    rig_deliver_msg(type, m);
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

    mcos_fake_clock_advance(&rig.clk, advance_us[data[0] >> 6]);
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
    rig_deliver(buf, len);
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
        rig_init("fuzz_brain_msgs");
        started = true;
    }
    if (inputs++ % RESET_EVERY == 0) {
        rig_stop();
        rig_start("");
    }
    gen = rig.brain->gen;
    if (mcos_wire_decode(data, size, &m, err, sizeof err) == 0) {
        mcos_wire_msg_free(&m);
        mcos_fake_clock_advance(&rig.clk, 1000);
        rig_deliver(data, size);
    } else if (size > 0) {
        structured(data, size);
    } else {
        rig_deliver(data, size);
    }
    if (rig.brain->gen > gen + 1) {
        /* The generation jumped to one an agent claimed, and was saved:
         * a brain must be able to start again from what it saved. */
        rig_stop();
        rig_start("");
    }
    return 0;
}
