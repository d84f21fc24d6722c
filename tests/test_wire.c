/* Tests for common/wire: round trips and every kind of bad input. */
#include <errno.h>
#include <stdint.h>

#include "testutil.h"
#include "wire.h"

static char err[MCOS_WIRE_ERR_LEN];

static void
encode_hello(uint8_t **buf, size_t *len)
{
    Mcos__Hello h = MCOS__HELLO__INIT;
    Mcos__Labels labels = MCOS__LABELS__INIT;
    Mcos__TierInfo t = MCOS__TIER_INFO__INIT, *tp = &t;
    Mcos__Endpoint ep = MCOS__ENDPOINT__INIT, *epp = &ep;

    labels.rack = "r1";
    labels.zone = "z1";
    t.kind = MCOS__TIER_KIND__TIER_DRAM;
    t.capacity_bytes = 1ULL << 30;
    t.available = true;
    ep.transport = MCOS__TRANSPORT__TRANSPORT_TCP;
    ep.address = "10.0.0.1";
    ep.port = 7653;
    h.node = "n1";
    h.boot_id = 0x1234;
    h.labels = &labels;
    h.n_tiers = 1;
    h.tiers = &tp;
    h.n_endpoints = 1;
    h.endpoints = &epp;
    h.applied_gen = 7;
    ck_assert_int_eq(
        mcos_wire_encode(MCOS__MSG_TYPE__MSG_HELLO, &h.base, buf, len), 0);
}

START_TEST(test_hello_round_trip)
{
    struct mcos_wire_msg m;
    uint8_t *buf;
    size_t len;
    Mcos__Hello *h;

    encode_hello(&buf, &len);
    ck_assert_int_eq(mcos_wire_decode(buf, len, &m, err, sizeof err), 0);
    ck_assert_int_eq(m.type, MCOS__MSG_TYPE__MSG_HELLO);
    ck_assert_uint_eq(m.minor, MCOS_PROTO_MINOR);
    h = mcos_wire_hello(&m);
    ck_assert_ptr_nonnull(h);
    ck_assert_ptr_null(mcos_wire_report(&m));
    ck_assert_str_eq(h->node, "n1");
    ck_assert_uint_eq(h->boot_id, 0x1234);
    ck_assert_str_eq(h->labels->rack, "r1");
    ck_assert_uint_eq(h->n_tiers, 1);
    ck_assert_uint_eq(h->tiers[0]->capacity_bytes, 1ULL << 30);
    ck_assert_str_eq(h->endpoints[0]->address, "10.0.0.1");
    ck_assert_uint_eq(h->applied_gen, 7);
    mcos_wire_msg_free(&m);
    free(buf);
}
END_TEST

START_TEST(test_report_and_reply_round_trip)
{
    Mcos__Report r = MCOS__REPORT__INIT;
    Mcos__ObjectEvent e = MCOS__OBJECT_EVENT__INIT, *ep = &e;
    Mcos__Reply rep = MCOS__REPLY__INIT;
    Mcos__TableUpdate u = MCOS__TABLE_UPDATE__INIT;
    Mcos__Rule rule = MCOS__RULE__INIT, *rp = &rule;
    Mcos__ParamRule p = MCOS__PARAM_RULE__INIT;
    struct mcos_wire_msg m;
    uint8_t *buf;
    size_t len;

    e.kind = MCOS__EVENT_KIND__EVENT_STORED;
    e.object_id = 0xfeedfacecafebeefULL;
    e.class_ = MCOS__OBJECT_CLASS__CLASS_KV_BLOCK;
    r.node = "n2";
    r.seq = 9;
    r.n_events = 1;
    r.events = &ep;
    ck_assert_int_eq(
        mcos_wire_encode(MCOS__MSG_TYPE__MSG_REPORT, &r.base, &buf, &len), 0);
    ck_assert_int_eq(mcos_wire_decode(buf, len, &m, err, sizeof err), 0);
    ck_assert_uint_eq(mcos_wire_report(&m)->events[0]->object_id,
                      0xfeedfacecafebeefULL);
    ck_assert_int_eq(mcos_wire_report(&m)->events[0]->class_,
                     MCOS__OBJECT_CLASS__CLASS_KV_BLOCK);
    mcos_wire_msg_free(&m);
    free(buf);

    p.name = "report_interval_ms";
    p.value = 500;
    rule.key = "param/report_interval_ms";
    rule.rule_case = MCOS__RULE__RULE_PARAM;
    rule.param = &p;
    u.format_version = MCOS_TABLE_FORMAT;
    u.gen = 3;
    u.node = "n2";
    u.n_upserts = 1;
    u.upserts = &rp;
    rep.status = -ENOENT;
    rep.error = "nope";
    rep.table = &u;
    ck_assert_int_eq(
        mcos_wire_encode(MCOS__MSG_TYPE__MSG_REPLY, &rep.base, &buf, &len), 0);
    ck_assert_int_eq(mcos_wire_decode(buf, len, &m, err, sizeof err), 0);
    ck_assert_int_eq(mcos_wire_reply(&m)->status, -ENOENT);
    ck_assert_uint_eq(mcos_wire_reply(&m)->table->upserts[0]->param->value,
                      500);
    mcos_wire_msg_free(&m);
    free(buf);
}
END_TEST

START_TEST(test_encode_mismatch)
{
    Mcos__Watch w = MCOS__WATCH__INIT;
    uint8_t *buf;
    size_t len;

    /* A body whose type does not match the declared one. */
    ck_assert_int_eq(
        mcos_wire_encode(MCOS__MSG_TYPE__MSG_HELLO, &w.base, &buf, &len),
        -EINVAL);
    ck_assert_int_eq(
        mcos_wire_encode(MCOS__MSG_TYPE__MSG_UNKNOWN, &w.base, &buf, &len),
        -EINVAL);
}
END_TEST

START_TEST(test_empty_and_oversize)
{
    struct mcos_wire_msg m;
    static uint8_t big[1];

    ck_assert_err(mcos_wire_decode(big, 0, &m, err, sizeof err), -EBADMSG, err,
                  "empty message");
    ck_assert_err(
        mcos_wire_decode(big, MCOS_WIRE_MAX_MSG + 1, &m, err, sizeof err),
        -EMSGSIZE, err,
        "message of 16777217 bytes exceeds the 16777216 byte "
        "limit");
}
END_TEST

START_TEST(test_truncated)
{
    struct mcos_wire_msg m;
    uint8_t *buf;
    size_t len;

    encode_hello(&buf, &len);
    /* Every strict prefix must fail cleanly (or, for prefixes that happen
     * to be valid protobuf, decode to something without crashing). */
    for (size_t cut = 1; cut < len; cut++) {
        int rc = mcos_wire_decode(buf, cut, &m, err, sizeof err);

        if (rc == 0) {
            mcos_wire_msg_free(&m);
        } else {
            ck_assert(rc == -EBADMSG || rc == -EPROTONOSUPPORT ||
                      rc == -EPROTO);
        }
    }
    ck_assert_err(mcos_wire_decode(buf, len - 3, &m, err, sizeof err),
                  -EBADMSG, err, "malformed");
    free(buf);
}
END_TEST

START_TEST(test_garbage)
{
    struct mcos_wire_msg m;
    uint8_t junk[256];
    uint32_t x = 2463534242u;

    /* A deterministic xorshift stream of junk: never a crash. */
    for (int round = 0; round < 2000; round++) {
        size_t len = 1 + round % sizeof junk;

        for (size_t i = 0; i < len; i++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            junk[i] = (uint8_t)x;
        }
        if (mcos_wire_decode(junk, len, &m, err, sizeof err) == 0) {
            mcos_wire_msg_free(&m);
        }
    }
    ck_assert_err(mcos_wire_decode("\xff\xff\xff", 3, &m, err, sizeof err),
                  -EBADMSG, err, "malformed envelope (3 bytes)");
}
END_TEST

START_TEST(test_versions)
{
    Mcos__Watch w = MCOS__WATCH__INIT;
    struct mcos_wire_msg m;
    uint8_t *buf;
    size_t len;

    w.node = "n1";
    /* A newer minor version decodes. */
    ck_assert_int_eq(mcos_wire_encode_version(MCOS__MSG_TYPE__MSG_WATCH, 1, 9,
                                              &w.base, &buf, &len),
                     0);
    ck_assert_int_eq(mcos_wire_decode(buf, len, &m, err, sizeof err), 0);
    ck_assert_uint_eq(m.minor, 9);
    mcos_wire_msg_free(&m);
    free(buf);
    /* Another major version is refused, by name. */
    ck_assert_int_eq(mcos_wire_encode_version(MCOS__MSG_TYPE__MSG_WATCH, 2, 0,
                                              &w.base, &buf, &len),
                     0);
    ck_assert_err(mcos_wire_decode(buf, len, &m, err, sizeof err),
                  -EPROTONOSUPPORT, err,
                  "protocol version 2.0 is not supported (this side speaks "
                  "1.x)");
    free(buf);
}
END_TEST

/* Wraps raw body bytes in an envelope of the given type. */
static void
wrap(uint32_t type, const uint8_t *body, size_t body_len, uint8_t **buf,
     size_t *len)
{
    Mcos__Envelope env = MCOS__ENVELOPE__INIT;

    env.major = MCOS_PROTO_MAJOR;
    env.type = type;
    env.body.data = (uint8_t *)body;
    env.body.len = body_len;
    *len = mcos__envelope__get_packed_size(&env);
    *buf = malloc(*len + 8);
    mcos__envelope__pack(&env, *buf);
}

START_TEST(test_unknown_fields_and_types)
{
    Mcos__Watch w = MCOS__WATCH__INIT;
    struct mcos_wire_msg m;
    uint8_t body[64], *buf;
    size_t blen, len;

    w.node = "n1";
    w.applied_gen = 5;
    blen = mcos__watch__pack(&w, body);
    /* Field 99, varint 5: a field from a future minor version. */
    body[blen++] = 0x98;
    body[blen++] = 0x06;
    body[blen++] = 0x05;
    wrap(MCOS__MSG_TYPE__MSG_WATCH, body, blen, &buf, &len);
    /* And an unknown field 15 in the envelope itself. */
    buf[len++] = 0x78;
    buf[len++] = 0x01;
    ck_assert_int_eq(mcos_wire_decode(buf, len, &m, err, sizeof err), 0);
    ck_assert_uint_eq(mcos_wire_watch(&m)->applied_gen, 5);
    mcos_wire_msg_free(&m);
    free(buf);

    wrap(17, body, blen, &buf, &len);
    ck_assert_err(mcos_wire_decode(buf, len, &m, err, sizeof err), -EPROTO,
                  err, "unknown message type 17");
    free(buf);

    /* A body that does not decode as its declared type. */
    body[0] = 0xff;
    wrap(MCOS__MSG_TYPE__MSG_HELLO, body, 4, &buf, &len);
    ck_assert_err(mcos_wire_decode(buf, len, &m, err, sizeof err), -EBADMSG,
                  err, "malformed hello body (4 bytes)");
    free(buf);
}
END_TEST

START_TEST(test_names)
{
    ck_assert_str_eq(mcos_tier_name(MCOS__TIER_KIND__TIER_HBM), "hbm");
    ck_assert_str_eq(mcos_tier_name(42), "unknown");
    ck_assert_str_eq(mcos_tier_name(-1), "unknown");
    ck_assert_int_eq(mcos_tier_parse("nvme"), MCOS__TIER_KIND__TIER_NVME);
    ck_assert_int_eq(mcos_tier_parse("tape"), -EINVAL);
    ck_assert_str_eq(mcos_event_name(MCOS__EVENT_KIND__EVENT_PREFETCH_LATE),
                     "prefetch_late");
    ck_assert_str_eq(mcos_class_name(MCOS__OBJECT_CLASS__CLASS_KV_BLOCK),
                     "kv_block");
    ck_assert_str_eq(mcos_transport_name(MCOS__TRANSPORT__TRANSPORT_VERBS),
                     "verbs");
    ck_assert_str_eq(mcos_wire_type_name(MCOS__MSG_TYPE__MSG_WATCH), "watch");
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("wire");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_hello_round_trip);
    tcase_add_test(tc, test_report_and_reply_round_trip);
    tcase_add_test(tc, test_encode_mismatch);
    tcase_add_test(tc, test_empty_and_oversize);
    tcase_add_test(tc, test_truncated);
    tcase_add_test(tc, test_garbage);
    tcase_add_test(tc, test_versions);
    tcase_add_test(tc, test_unknown_fields_and_types);
    tcase_add_test(tc, test_names);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
