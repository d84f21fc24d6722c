/*
 * The wire module: encoding and decoding of every MCOS message, and the
 * only module that calls protobuf-c's pack/unpack.
 *
 * Every message is an Envelope {major, minor, type, body}.  Decoding checks,
 * in order: the size limit (-EMSGSIZE), that the envelope decodes
 * (-EBADMSG), the major version (-EPROTONOSUPPORT; any minor is accepted and
 * unknown fields are skipped), that the type is one we know (-EPROTO), and
 * that the body decodes as that type (-EBADMSG).  Each failure comes with a
 * one-line message naming what was wrong; none crashes, whatever the bytes.
 *
 * Where it sits: under the bus, on both ends of every control message
 * (telemetry up, tables down).
 *
 * Thread-safety: all functions are reentrant; a decoded message belongs to
 * the caller.
 */
#ifndef MCOS_WIRE_H
#define MCOS_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcos.pb-c.h"

#define MCOS_PROTO_MAJOR 1
#define MCOS_PROTO_MINOR 2

/* The policy table format the compiler emits and the agent applies. */
#define MCOS_TABLE_FORMAT 1

/* Largest control message either side accepts. */
#define MCOS_WIRE_MAX_MSG (16u << 20)

#define MCOS_WIRE_ERR_LEN 200

struct mcos_wire_msg {
    Mcos__MsgType type;     /* which body this is */
    uint32_t minor;         /* sender's minor version */
    ProtobufCMessage *body; /* decoded body; cast by type, e.g. hello() */
};

/* Encodes `body` of `type` in an envelope into a malloc'd buffer. */
int mcos_wire_encode(Mcos__MsgType type, const ProtobufCMessage *body,
                     uint8_t **buf, size_t *len);

/* Encodes with an explicit version: for tests of version handling. */
int mcos_wire_encode_version(Mcos__MsgType type, uint32_t major,
                             uint32_t minor, const ProtobufCMessage *body,
                             uint8_t **buf, size_t *len);

/* Decodes a message.  On failure `out` is untouched and `err` says why. */
int mcos_wire_decode(const void *buf, size_t len, struct mcos_wire_msg *out,
                     char *err, size_t errlen);

/* Frees a decoded message's body. */
void mcos_wire_msg_free(struct mcos_wire_msg *);

const char *mcos_wire_type_name(Mcos__MsgType type);

/* Typed views of a decoded body; NULL if the type differs. */
Mcos__Hello *mcos_wire_hello(const struct mcos_wire_msg *);
Mcos__Report *mcos_wire_report(const struct mcos_wire_msg *);
Mcos__Watch *mcos_wire_watch(const struct mcos_wire_msg *);
Mcos__Reply *mcos_wire_reply(const struct mcos_wire_msg *);
Mcos__ApiRequest *mcos_wire_api_request(const struct mcos_wire_msg *);
Mcos__ApiReply *mcos_wire_api_reply(const struct mcos_wire_msg *);
Mcos__RouteRequest *mcos_wire_route_request(const struct mcos_wire_msg *);
Mcos__RouteReply *mcos_wire_route_reply(const struct mcos_wire_msg *);
Mcos__PeerRequest *mcos_wire_peer_request(const struct mcos_wire_msg *);
Mcos__PeerReply *mcos_wire_peer_reply(const struct mcos_wire_msg *);

/* A single rule, packed and unpacked on its own: the table module keeps
 * rules in packed form to compare and copy them. */
int mcos_wire_rule_pack(const Mcos__Rule *, uint8_t **buf, size_t *len);
int mcos_wire_rule_unpack(const uint8_t *buf, size_t len, Mcos__Rule **out);
void mcos_wire_rule_free(Mcos__Rule *);

/* Names of enum values, for dumps and JSON ("dram", "kv_block", ...);
 * "unknown" for values this version does not know. */
const char *mcos_tier_name(int kind);
int mcos_tier_parse(const char *name); /* -EINVAL if unknown */
/* True for a tier a Region may cover: dram, hbm, or 0 (a sender from
 * before Region.tier, whose regions cover the DRAM arena). */
bool mcos_region_tier_ok(int tier);
const char *mcos_transport_name(int transport);
const char *mcos_event_name(int kind);
const char *mcos_class_name(int cls);

#endif /* MCOS_WIRE_H */
