/*
 * Tests for agent/fabric: how a peer rule's verbs endpoints and region
 * keys are read (one key per NIC), and what a malformed rule gets.
 */
#include <errno.h>

#include "fabric.h"
#include "testutil.h"

static char err[512];

/* A peer rule with n verbs endpoints (10.7x.0.2:7654) and a verbs region
 * carrying nkeys keys (0: just key). */
struct rule {
    Mcos__PeerRule pr;                                 /* the rule */
    Mcos__Endpoint ep[AGENT_TRANSPORT_MAX_NICS + 2];   /* its endpoints */
    Mcos__Endpoint *eps[AGENT_TRANSPORT_MAX_NICS + 2]; /* pointers */
    char addr[AGENT_TRANSPORT_MAX_NICS + 2][32];       /* addresses */
    Mcos__Region reg;                                  /* verbs region */
    Mcos__Region *regs[1];                             /* pointer */
    uint64_t keys[AGENT_TRANSPORT_MAX_NICS + 2];       /* its keys */
};

static void
rule_init(struct rule *r, size_t n, size_t nkeys)
{
    memset(r, 0, sizeof *r);
    mcos__peer_rule__init(&r->pr);
    r->pr.node = "n2";
    r->pr.boot_id = 0x22;
    mcos__endpoint__init(&r->ep[0]);
    r->ep[0].transport = MCOS__TRANSPORT__TRANSPORT_CONTROL;
    r->ep[0].address = "10.77.0.2";
    r->ep[0].port = 7653;
    r->eps[0] = &r->ep[0];
    for (size_t i = 1; i <= n; i++) {
        mcos__endpoint__init(&r->ep[i]);
        snprintf(r->addr[i], sizeof r->addr[i], "10.%zu.0.2", 76 + i);
        r->ep[i].transport = MCOS__TRANSPORT__TRANSPORT_VERBS;
        r->ep[i].address = r->addr[i];
        r->ep[i].port = 7654;
        r->eps[i] = &r->ep[i];
    }
    r->pr.n_endpoints = n + 1;
    r->pr.endpoints = r->eps;
    mcos__region__init(&r->reg);
    r->reg.id = 1;
    r->reg.transport = MCOS__TRANSPORT__TRANSPORT_VERBS;
    r->reg.address = 0x7f0000000000;
    r->reg.length = 1 << 20;
    r->reg.key = 0x100;
    for (size_t i = 0; i < nkeys; i++) {
        r->keys[i] = 0x100 + i;
    }
    r->reg.n_keys = nkeys;
    r->reg.keys = r->keys;
    r->regs[0] = &r->reg;
    r->pr.n_regions = 1;
    r->pr.regions = r->regs;
}

START_TEST(test_one_nic)
{
    struct agent_fabric_peer_verbs v;
    struct rule r;

    rule_init(&r, 1, 0);
    ck_assert_int_eq(agent_fabric_peer_verbs(&r.pr, &v, err, sizeof err), 0);
    ck_assert_uint_eq(v.n, 1);
    ck_assert_str_eq(v.ep[0].address, "10.77.0.2");
    ck_assert_uint_eq(v.ep[0].port, 7654);
    ck_assert_uint_eq(v.region.id, 1);
    ck_assert_uint_eq(v.region.key, 0x100);
    ck_assert_uint_eq(v.region.nkeys, 0);
}
END_TEST

START_TEST(test_two_nics)
{
    struct agent_fabric_peer_verbs v;
    struct rule r;

    rule_init(&r, 2, 2);
    ck_assert_int_eq(agent_fabric_peer_verbs(&r.pr, &v, err, sizeof err), 0);
    ck_assert_uint_eq(v.n, 2);
    ck_assert_str_eq(v.ep[1].address, "10.78.0.2");
    ck_assert_uint_eq(v.region.nkeys, 2);
    ck_assert_uint_eq(v.region.keys[0], 0x100);
    ck_assert_uint_eq(v.region.keys[1], 0x101);
}
END_TEST

START_TEST(test_no_verbs)
{
    struct agent_fabric_peer_verbs v;
    struct rule r;

    /* Endpoints without a region, or a region without endpoints: the
     * peer is not reached over verbs, and that is no error. */
    rule_init(&r, 2, 2);
    r.pr.n_regions = 0;
    ck_assert_int_eq(agent_fabric_peer_verbs(&r.pr, &v, err, sizeof err), 0);
    ck_assert_uint_eq(v.n, 0);
    rule_init(&r, 0, 0);
    ck_assert_int_eq(agent_fabric_peer_verbs(&r.pr, &v, err, sizeof err), 0);
    ck_assert_uint_eq(v.n, 0);
    ck_assert_uint_eq(v.region.id, 0);
}
END_TEST

START_TEST(test_mismatch)
{
    struct agent_fabric_peer_verbs v;
    struct rule r;

    rule_init(&r, 2, 3);
    ck_assert_err(agent_fabric_peer_verbs(&r.pr, &v, err, sizeof err), -EINVAL,
                  err,
                  "peer n2: verbs region 1 carries 3 keys for 2 verbs "
                  "endpoints");
    ck_assert_uint_eq(v.n, 0);
    rule_init(&r, 1, 2);
    ck_assert_err(agent_fabric_peer_verbs(&r.pr, &v, err, sizeof err), -EINVAL,
                  err,
                  "peer n2: verbs region 1 carries 2 keys for 1 verbs "
                  "endpoints");
    rule_init(&r, 2, 0);
    ck_assert_err(agent_fabric_peer_verbs(&r.pr, &v, err, sizeof err), -EINVAL,
                  err,
                  "peer n2: verbs region 1 carries one key for 2 verbs "
                  "endpoints");
    rule_init(&r, 2, 2);
    r.keys[0] = 0x999;
    ck_assert_err(agent_fabric_peer_verbs(&r.pr, &v, err, sizeof err), -EINVAL,
                  err,
                  "peer n2: verbs region 1: its first key differs from its "
                  "key");
    rule_init(&r, AGENT_TRANSPORT_MAX_NICS + 1, 0);
    ck_assert_err(agent_fabric_peer_verbs(&r.pr, &v, err, sizeof err), -EINVAL,
                  err, "peer n2 announces more than 4 verbs endpoints");
    rule_init(&r, 2, 2);
    r.ep[2].port = 0;
    ck_assert_err(agent_fabric_peer_verbs(&r.pr, &v, err, sizeof err), -EINVAL,
                  err, "peer n2: verbs endpoint 2 is malformed");
    rule_init(&r, 2, 2);
    r.ep[1].address = "";
    ck_assert_err(agent_fabric_peer_verbs(&r.pr, &v, err, sizeof err), -EINVAL,
                  err, "peer n2: verbs endpoint 1 is malformed");
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("fabric");
    TCase *tc = tcase_create("peer_verbs");

    tcase_add_test(tc, test_one_nic);
    tcase_add_test(tc, test_two_nics);
    tcase_add_test(tc, test_no_verbs);
    tcase_add_test(tc, test_mismatch);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
