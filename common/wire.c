#include "wire.h"
#include "error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const ProtobufCMessageDescriptor *
body_descriptor(Mcos__MsgType type)
{
    switch (type) {
    case MCOS__MSG_TYPE__MSG_HELLO:
        return &mcos__hello__descriptor;
    case MCOS__MSG_TYPE__MSG_REPORT:
        return &mcos__report__descriptor;
    case MCOS__MSG_TYPE__MSG_WATCH:
        return &mcos__watch__descriptor;
    case MCOS__MSG_TYPE__MSG_REPLY:
        return &mcos__reply__descriptor;
    case MCOS__MSG_TYPE__MSG_API_REQUEST:
        return &mcos__api_request__descriptor;
    case MCOS__MSG_TYPE__MSG_API_REPLY:
        return &mcos__api_reply__descriptor;
    case MCOS__MSG_TYPE__MSG_ROUTE_REQUEST:
        return &mcos__route_request__descriptor;
    case MCOS__MSG_TYPE__MSG_ROUTE_REPLY:
        return &mcos__route_reply__descriptor;
    case MCOS__MSG_TYPE__MSG_PEER_REQUEST:
        return &mcos__peer_request__descriptor;
    case MCOS__MSG_TYPE__MSG_PEER_REPLY:
        return &mcos__peer_reply__descriptor;
    default:
        return NULL;
    }
}

const char *
mcos_wire_type_name(Mcos__MsgType type)
{
    switch (type) {
    case MCOS__MSG_TYPE__MSG_HELLO:
        return "hello";
    case MCOS__MSG_TYPE__MSG_REPORT:
        return "report";
    case MCOS__MSG_TYPE__MSG_WATCH:
        return "watch";
    case MCOS__MSG_TYPE__MSG_REPLY:
        return "reply";
    case MCOS__MSG_TYPE__MSG_API_REQUEST:
        return "api request";
    case MCOS__MSG_TYPE__MSG_API_REPLY:
        return "api reply";
    case MCOS__MSG_TYPE__MSG_ROUTE_REQUEST:
        return "route request";
    case MCOS__MSG_TYPE__MSG_ROUTE_REPLY:
        return "route reply";
    case MCOS__MSG_TYPE__MSG_PEER_REQUEST:
        return "peer request";
    case MCOS__MSG_TYPE__MSG_PEER_REPLY:
        return "peer reply";
    default:
        return "unknown";
    }
}

int
mcos_wire_encode_version(Mcos__MsgType type, uint32_t major, uint32_t minor,
                         const ProtobufCMessage *body, uint8_t **buf,
                         size_t *len)
{
    Mcos__Envelope env = MCOS__ENVELOPE__INIT;
    const ProtobufCMessageDescriptor *d = body_descriptor(type);
    size_t body_len, env_len;
    uint8_t *body_buf;
    uint8_t *out;

    if (!d || !body || body->descriptor != d) {
        return -EINVAL;
    }
    body_len = protobuf_c_message_get_packed_size(body);
    body_buf = malloc(body_len ? body_len : 1);
    if (!body_buf) {
        return -ENOMEM;
    }
    protobuf_c_message_pack(body, body_buf);

    env.major = major;
    env.minor = minor;
    env.type = type;
    env.body.data = body_buf;
    env.body.len = body_len;
    env_len = mcos__envelope__get_packed_size(&env);
    if (env_len > MCOS_WIRE_MAX_MSG) {
        free(body_buf);
        return -EMSGSIZE;
    }
    out = malloc(env_len ? env_len : 1);
    if (!out) {
        free(body_buf);
        return -ENOMEM;
    }
    mcos__envelope__pack(&env, out);
    free(body_buf);
    *buf = out;
    *len = env_len;
    return 0;
}

int
mcos_wire_encode(Mcos__MsgType type, const ProtobufCMessage *body,
                 uint8_t **buf, size_t *len)
{
    return mcos_wire_encode_version(type, MCOS_PROTO_MAJOR, MCOS_PROTO_MINOR,
                                    body, buf, len);
}

int
mcos_wire_decode(const void *buf, size_t len, struct mcos_wire_msg *out,
                 char *err, size_t errlen)
{
    const ProtobufCMessageDescriptor *d;
    Mcos__Envelope *env;
    ProtobufCMessage *body;
    int r;

    if (len > MCOS_WIRE_MAX_MSG) {
        mcos_seterr(err, errlen,
                    "message of %zu bytes exceeds the %u byte limit", len,
                    MCOS_WIRE_MAX_MSG);
        return -EMSGSIZE;
    }
    if (len == 0 || !buf) {
        mcos_seterr(err, errlen, "empty message");
        return -EBADMSG;
    }
    env = mcos__envelope__unpack(NULL, len, buf);
    if (!env) {
        mcos_seterr(err, errlen, "malformed envelope (%zu bytes)", len);
        return -EBADMSG;
    }
    if (env->major != MCOS_PROTO_MAJOR) {
        mcos_seterr(
            err, errlen,
            "protocol version %u.%u is not supported (this side speaks "
            "%u.x)",
            env->major, env->minor, MCOS_PROTO_MAJOR);
        r = -EPROTONOSUPPORT;
        goto fail;
    }
    d = body_descriptor(env->type);
    if (!d) {
        mcos_seterr(err, errlen, "unknown message type %d", (int)env->type);
        r = -EPROTO;
        goto fail;
    }
    body = protobuf_c_message_unpack(d, NULL, env->body.len, env->body.data);
    if (!body) {
        mcos_seterr(err, errlen, "malformed %s body (%zu bytes)",
                    mcos_wire_type_name(env->type), env->body.len);
        r = -EBADMSG;
        goto fail;
    }
    out->type = env->type;
    out->minor = env->minor;
    out->body = body;
    mcos__envelope__free_unpacked(env, NULL);
    return 0;

fail:
    mcos__envelope__free_unpacked(env, NULL);
    return r;
}

void
mcos_wire_msg_free(struct mcos_wire_msg *m)
{
    if (m && m->body) {
        protobuf_c_message_free_unpacked(m->body, NULL);
        m->body = NULL;
    }
}

Mcos__Hello *
mcos_wire_hello(const struct mcos_wire_msg *m)
{
    return m->type == MCOS__MSG_TYPE__MSG_HELLO ? (Mcos__Hello *)m->body
                                                : NULL;
}

Mcos__Report *
mcos_wire_report(const struct mcos_wire_msg *m)
{
    return m->type == MCOS__MSG_TYPE__MSG_REPORT ? (Mcos__Report *)m->body
                                                 : NULL;
}

Mcos__Watch *
mcos_wire_watch(const struct mcos_wire_msg *m)
{
    return m->type == MCOS__MSG_TYPE__MSG_WATCH ? (Mcos__Watch *)m->body
                                                : NULL;
}

Mcos__Reply *
mcos_wire_reply(const struct mcos_wire_msg *m)
{
    return m->type == MCOS__MSG_TYPE__MSG_REPLY ? (Mcos__Reply *)m->body
                                                : NULL;
}

Mcos__ApiRequest *
mcos_wire_api_request(const struct mcos_wire_msg *m)
{
    return m->type == MCOS__MSG_TYPE__MSG_API_REQUEST
               ? (Mcos__ApiRequest *)m->body
               : NULL;
}

Mcos__ApiReply *
mcos_wire_api_reply(const struct mcos_wire_msg *m)
{
    return m->type == MCOS__MSG_TYPE__MSG_API_REPLY ? (Mcos__ApiReply *)m->body
                                                    : NULL;
}

int
mcos_wire_rule_pack(const Mcos__Rule *rule, uint8_t **buf, size_t *len)
{
    size_t n = mcos__rule__get_packed_size(rule);
    uint8_t *out = malloc(n ? n : 1);

    if (!out) {
        return -ENOMEM;
    }
    mcos__rule__pack(rule, out);
    *buf = out;
    *len = n;
    return 0;
}

int
mcos_wire_rule_unpack(const uint8_t *buf, size_t len, Mcos__Rule **out)
{
    Mcos__Rule *r = mcos__rule__unpack(NULL, len, buf);

    if (!r) {
        return -EBADMSG;
    }
    *out = r;
    return 0;
}

void
mcos_wire_rule_free(Mcos__Rule *r)
{
    if (r) {
        mcos__rule__free_unpacked(r, NULL);
    }
}

static const char *const tier_names[] = {
    [MCOS__TIER_KIND__TIER_SRAM] = "sram",
    [MCOS__TIER_KIND__TIER_HBM] = "hbm",
    [MCOS__TIER_KIND__TIER_DRAM] = "dram",
    [MCOS__TIER_KIND__TIER_NVME] = "nvme",
    [MCOS__TIER_KIND__TIER_REMOTE] = "remote",
};

bool
mcos_region_tier_ok(int tier)
{
    return tier == MCOS__TIER_KIND__TIER_UNKNOWN ||
           tier == MCOS__TIER_KIND__TIER_DRAM ||
           tier == MCOS__TIER_KIND__TIER_HBM;
}

const char *
mcos_tier_name(int kind)
{
    if (kind > 0 && (size_t)kind < sizeof tier_names / sizeof tier_names[0]) {
        return tier_names[kind];
    }
    return "unknown";
}

int
mcos_tier_parse(const char *name)
{
    for (size_t i = 1; i < sizeof tier_names / sizeof tier_names[0]; i++) {
        if (tier_names[i] && !strcmp(tier_names[i], name)) {
            return (int)i;
        }
    }
    return -EINVAL;
}

const char *
mcos_transport_name(int transport)
{
    switch (transport) {
    case MCOS__TRANSPORT__TRANSPORT_TCP:
        return "tcp";
    case MCOS__TRANSPORT__TRANSPORT_VERBS:
        return "verbs";
    case MCOS__TRANSPORT__TRANSPORT_CONTROL:
        return "control";
    default:
        return "unknown";
    }
}

const char *
mcos_event_name(int kind)
{
    static const char *const names[] = {
        "unknown",      "stored",        "removed",
        "accessed",     "promoted",      "demoted",
        "prefetch_hit", "prefetch_late", "prefetch_wasted",
    };

    if (kind > 0 && (size_t)kind < sizeof names / sizeof names[0]) {
        return names[kind];
    }
    return "unknown";
}

const char *
mcos_class_name(int cls)
{
    static const char *const names[] = {
        "other", "kv_block", "weight_tile", "activation", "prompt_chunk",
    };

    if (cls >= 0 && (size_t)cls < sizeof names / sizeof names[0]) {
        return names[cls];
    }
    return "unknown";
}

Mcos__RouteRequest *
mcos_wire_route_request(const struct mcos_wire_msg *m)
{
    return m->type == MCOS__MSG_TYPE__MSG_ROUTE_REQUEST
               ? (Mcos__RouteRequest *)m->body
               : NULL;
}

Mcos__RouteReply *
mcos_wire_route_reply(const struct mcos_wire_msg *m)
{
    return m->type == MCOS__MSG_TYPE__MSG_ROUTE_REPLY
               ? (Mcos__RouteReply *)m->body
               : NULL;
}

Mcos__PeerRequest *
mcos_wire_peer_request(const struct mcos_wire_msg *m)
{
    return m->type == MCOS__MSG_TYPE__MSG_PEER_REQUEST
               ? (Mcos__PeerRequest *)m->body
               : NULL;
}

Mcos__PeerReply *
mcos_wire_peer_reply(const struct mcos_wire_msg *m)
{
    return m->type == MCOS__MSG_TYPE__MSG_PEER_REPLY
               ? (Mcos__PeerReply *)m->body
               : NULL;
}
