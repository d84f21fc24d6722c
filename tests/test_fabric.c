/*
 * Tests for agent/fabric: how a peer rule's verbs endpoints and region
 * keys are read (one key per NIC), the HBM region beside the arena
 * (Region.tier, and rules from peers that predate it), what a malformed
 * rule gets; and a real fabric on loopback with an emulated HBM tier over
 * TCP, which cannot reach GPU memory: the region stays out, with its log
 * line, and HBM objects are not sent directly.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "fabric.h"
#include "log.h"
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
    Mcos__Region hreg;                                 /* verbs HBM one */
    Mcos__Region *regs[2];                             /* pointers */
    uint64_t keys[AGENT_TRANSPORT_MAX_NICS + 2];       /* its keys */
    uint64_t hkeys[AGENT_TRANSPORT_MAX_NICS + 2];      /* the HBM keys */
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

/* Adds an HBM verbs region (id 2, keys 0x200.., nkeys as for the arena)
 * before the arena's, the order agents announce them in. */
static void
rule_add_hbm(struct rule *r, size_t nkeys)
{
    mcos__region__init(&r->hreg);
    r->hreg.id = 2;
    r->hreg.transport = MCOS__TRANSPORT__TRANSPORT_VERBS;
    r->hreg.tier = MCOS__TIER_KIND__TIER_HBM;
    r->hreg.address = 0x7e0000000000;
    r->hreg.length = 4 << 20;
    r->hreg.key = 0x200;
    for (size_t i = 0; i < nkeys; i++) {
        r->hkeys[i] = 0x200 + i;
    }
    r->hreg.n_keys = nkeys;
    r->hreg.keys = r->hkeys;
    r->reg.tier = MCOS__TIER_KIND__TIER_DRAM;
    r->regs[0] = &r->hreg;
    r->regs[1] = &r->reg;
    r->pr.n_regions = 2;
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
    /* A peer from before Region.tier: its one region is the arena. */
    ck_assert_uint_eq(v.hbm.id, 0);
}
END_TEST

START_TEST(test_hbm_region)
{
    struct agent_fabric_peer_verbs v;
    struct rule r;

    rule_init(&r, 2, 2);
    rule_add_hbm(&r, 2);
    ck_assert_int_eq(agent_fabric_peer_verbs(&r.pr, &v, err, sizeof err), 0);
    ck_assert_uint_eq(v.n, 2);
    ck_assert_uint_eq(v.region.id, 1);
    ck_assert_uint_eq(v.region.key, 0x100);
    ck_assert_uint_eq(v.hbm.id, 2);
    ck_assert_uint_eq(v.hbm.addr, 0x7e0000000000);
    ck_assert_uint_eq(v.hbm.len, 4 << 20);
    ck_assert_uint_eq(v.hbm.nkeys, 2);
    ck_assert_uint_eq(v.hbm.keys[1], 0x201);
    /* The order does not matter to an agent that reads the tier. */
    r.regs[0] = &r.reg;
    r.regs[1] = &r.hreg;
    ck_assert_int_eq(agent_fabric_peer_verbs(&r.pr, &v, err, sizeof err), 0);
    ck_assert_uint_eq(v.region.id, 1);
    ck_assert_uint_eq(v.hbm.id, 2);
    /* The arena announced with tier 0 (unset) is still the arena. */
    r.reg.tier = MCOS__TIER_KIND__TIER_UNKNOWN;
    ck_assert_int_eq(agent_fabric_peer_verbs(&r.pr, &v, err, sizeof err), 0);
    ck_assert_uint_eq(v.region.id, 1);
    ck_assert_uint_eq(v.hbm.id, 2);
    /* An HBM region alone does not make a verbs peer. */
    rule_init(&r, 1, 0);
    rule_add_hbm(&r, 0);
    r.pr.n_regions = 1;
    ck_assert_int_eq(agent_fabric_peer_verbs(&r.pr, &v, err, sizeof err), 0);
    ck_assert_uint_eq(v.n, 0);
    ck_assert_uint_eq(v.hbm.id, 0);
}
END_TEST

START_TEST(test_hbm_region_bad)
{
    struct agent_fabric_peer_verbs v;
    struct rule r;

    rule_init(&r, 2, 2);
    rule_add_hbm(&r, 3);
    ck_assert_int_eq(agent_fabric_peer_verbs(&r.pr, &v, err, sizeof err),
                     -EINVAL);
    ck_assert_str_eq(err, "peer n2: verbs region 2 carries 3 keys for 2 "
                          "verbs endpoints");
    ck_assert_uint_eq(v.n, 0);
    ck_assert_uint_eq(v.region.id, 0);
    rule_init(&r, 1, 0);
    rule_add_hbm(&r, 0);
    r.hreg.tier = MCOS__TIER_KIND__TIER_NVME;
    ck_assert_int_eq(agent_fabric_peer_verbs(&r.pr, &v, err, sizeof err),
                     -EINVAL);
    ck_assert_str_eq(err, "peer n2: verbs region 2 covers tier nvme; regions "
                          "cover dram or hbm");
    rule_init(&r, 1, 0);
    rule_add_hbm(&r, 0);
    r.hreg.tier = MCOS__TIER_KIND__TIER_DRAM;
    ck_assert_int_eq(agent_fabric_peer_verbs(&r.pr, &v, err, sizeof err),
                     -EINVAL);
    ck_assert_str_eq(err, "peer n2: verbs regions 2 and 1 both cover dram");
    rule_init(&r, 1, 0);
    rule_add_hbm(&r, 0);
    r.reg.tier = MCOS__TIER_KIND__TIER_HBM;
    ck_assert_int_eq(agent_fabric_peer_verbs(&r.pr, &v, err, sizeof err),
                     -EINVAL);
    ck_assert_str_eq(err, "peer n2: verbs regions 2 and 1 both cover hbm");
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

/* --- A real fabric over TCP with an emulated HBM tier ------------------
 */

static int
adopt_never(void *arg, const Mcos__PeerRequest *a, int tier,
            const struct agent_tier_extent *e, uint64_t sum, char *why,
            size_t whylen)
{
    (void)arg, (void)a, (void)tier, (void)e, (void)sum, (void)why;
    (void)whylen;
    ck_abort_msg("no peer sends anything in this test");
    return -EIO;
}

/* Reads what was written to fd from its start. */
static char *
slurp(int fd)
{
    static char buf[16384];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);

    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

START_TEST(test_hbm_over_tcp)
{
    struct agent_tier_config dc = {.capacity = 1 << 20};
    struct agent_tier_config hc = {.capacity = 1 << 20, .emulate = true};
    struct agent_fabric_hooks hooks = {.adopt = adopt_never};
    struct agent_fabric_config fc = {.node = "n1",
                                     .boot_id = 0x11,
                                     .address = "127.0.0.1",
                                     .transports = "tcp"};
    struct agent_tier *dram, *hbm;
    struct agent_tables *tables;
    struct agent_fabric *f = NULL;
    struct agent_fabric_hbm hb[2];
    struct agent_tier_extent e;
    Mcos__Region rs[4];
    uv_loop_t loop;
    char logname[] = "/tmp/test_fabric_log.XXXXXX";
    int logfd = mkstemp(logname), saved = dup(2), r = -EADDRINUSE;

    ck_assert_int_ge(logfd, 0);
    unlink(logname);
    ck_assert_int_eq(mcos_log_set_spec("info"), 0);
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    ck_assert_int_eq(agent_tables_create("n1", &tables), 0);
    ck_assert_int_eq(agent_tier_create(AGENT_TIER_DRAM, &dc, &dram), 0);
    ck_assert_int_eq(agent_tier_create(AGENT_TIER_HBM, &hc, &hbm), 0);
    fc.hbm = hbm;
    /* Ports shared with whatever else runs here: 100 pairs from 24653,
     * below the integration tests' 27000-29999 (integration/lib.sh),
     * starting at one the process id picks so that two runs at once do
     * not meet (nor take a port the other just closed). */
    dup2(logfd, 2);
    for (int i = 0; r == -EADDRINUSE && i < 100; i++) {
        fc.port = (uint16_t)(24653 + 2 * ((getpid() % 50 * 2 + i) % 100));
        r = agent_fabric_create(&loop, &mcos_clock_monotonic, &fc, tables,
                                dram, &hooks, &f, err, sizeof err);
    }
    dup2(saved, 2);
    close(saved);
    ck_assert_msg(r == 0, "%d %s", r, err);
    ck_assert_msg(strstr(slurp(logfd),
                         "|fabric|INFO|HBM region not registered with tcp: "
                         "tcp moves bytes with the CPU, which cannot reach "
                         "GPU memory; HBM objects it carries are staged "
                         "through DRAM\n"),
                  "log: %s", slurp(logfd));
    close(logfd);

    ck_assert_uint_eq(agent_fabric_hbm(f, hb, 2), 1);
    ck_assert_int_eq(hb[0].transport, AGENT_TRANSPORT_TCP);
    ck_assert_uint_eq(hb[0].region.id, 0);
    ck_assert_ptr_null(hb[0].via);
    ck_assert_str_eq(hb[0].note, "tcp moves bytes with the CPU, which cannot "
                                 "reach GPU memory");
    /* Only the arena is announced, and it says so. */
    ck_assert_uint_eq(agent_fabric_regions(f, rs, 4), 1);
    ck_assert_int_eq(rs[0].transport, MCOS__TRANSPORT__TRANSPORT_TCP);
    ck_assert_int_eq(rs[0].tier, MCOS__TIER_KIND__TIER_DRAM);

    /* With a TCP peer in the table: DRAM goes directly, HBM does not. */
    {
        Mcos__Endpoint ep[2], *eps[2] = {&ep[0], &ep[1]};
        Mcos__Region g = MCOS__REGION__INIT, *gs[1] = {&g};
        Mcos__PeerRule pr = MCOS__PEER_RULE__INIT;
        Mcos__Rule rule = MCOS__RULE__INIT, *rules[1] = {&rule};
        Mcos__TableUpdate u = MCOS__TABLE_UPDATE__INIT;

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
        pr.node = "n2";
        pr.boot_id = 0x22;
        pr.n_endpoints = 2;
        pr.endpoints = eps;
        pr.n_regions = 1;
        pr.regions = gs;
        rule.key = "peer/n2";
        rule.rule_case = MCOS__RULE__RULE_PEER;
        rule.peer = &pr;
        u.format_version = 1;
        u.gen = 1;
        u.node = "n1";
        u.n_upserts = 1;
        u.upserts = rules;
        agent_tables_register_thread();
        ck_assert_int_eq(agent_tables_apply(tables, &u, err, sizeof err), 0);
        agent_fabric_tables_changed(f);
    }
    ck_assert_int_eq(agent_tier_alloc(hbm, 4096, &e), 0);
    ck_assert(agent_fabric_has_peer(f, "n2"));
    ck_assert(agent_fabric_direct(f, "n2", MCOS__TIER_KIND__TIER_DRAM, &e));
    ck_assert(!agent_fabric_direct(f, "n2", MCOS__TIER_KIND__TIER_HBM, &e));
    ck_assert(!agent_fabric_direct(f, "n9", MCOS__TIER_KIND__TIER_DRAM, &e));
    /* Any peer (a put that picks one): the same answers. */
    ck_assert(agent_fabric_direct(f, NULL, MCOS__TIER_KIND__TIER_DRAM, &e));
    ck_assert(!agent_fabric_direct(f, NULL, MCOS__TIER_KIND__TIER_HBM, &e));
    /* A picked put from HBM tries only peers that reach the region: none
     * here, and nothing is sent. */
    ck_assert_int_eq(
        agent_fabric_put_from(f, NULL, MCOS__PEER_PURPOSE__PURPOSE_HOSTED, 0,
                              NULL, MCOS__TIER_KIND__TIER_HBM, &e, 4096, 0,
                              NULL, NULL, err, sizeof err),
        -EHOSTUNREACH);
    ck_assert_str_eq(err, "no peer to send to from hbm: the brain has "
                          "admitted none reached by a transport with our "
                          "HBM region");
    ck_assert_int_eq(
        agent_fabric_put_from(f, "n2", MCOS__PEER_PURPOSE__PURPOSE_REPLICA,
                              MCOS__TIER_KIND__TIER_HBM, NULL,
                              MCOS__TIER_KIND__TIER_NVME, &e, 4096, 0, NULL,
                              NULL, err, sizeof err),
        -EINVAL);
    ck_assert_str_eq(err, "cannot send from nvme: no region of it here");
    agent_tier_free(hbm, &e);

    agent_fabric_close(f);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    agent_tables_unregister_thread();
    agent_tables_destroy(tables);
    agent_tier_destroy(hbm);
    agent_tier_destroy(dram);
}
END_TEST

START_TEST(test_dmabuf_needs_nic)
{
    struct agent_transport_config cfg = {.node = "c1", .boot_id = 1};
    struct agent_transport_region g;
    struct agent_transport *t = NULL;
    static char mem[4096];

    ck_assert_int_eq(
        agent_transport_create(AGENT_TRANSPORT_TCP, &cfg, &t, err, sizeof err),
        0);
    ck_assert(!agent_transport_device_memory(t));
    ck_assert_int_eq(agent_transport_register_dmabuf(t, mem, sizeof mem, 0, 0,
                                                     &g, err, sizeof err),
                     -EOPNOTSUPP);
    ck_assert_str_eq(err, "transport tcp cannot register GPU memory through "
                          "dma-buf");
    ck_assert_int_eq(agent_transport_register_dmabuf(t, mem, sizeof mem, -1, 0,
                                                     &g, err, sizeof err),
                     -EBADF);
    ck_assert_str_eq(err, "transport: dma-buf fd -1 is not open");
    /* Nothing was taken: every slot is still free for plain memory. */
    for (int i = 0; i < AGENT_TRANSPORT_MAX_REGIONS; i++) {
        ck_assert_int_eq(
            agent_transport_register(t, mem, sizeof mem, &g, err, sizeof err),
            0);
    }
    agent_transport_destroy(t);
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
    tcase_add_test(tc, test_hbm_region);
    tcase_add_test(tc, test_hbm_region_bad);
    suite_add_tcase(s, tc);
    tc = tcase_create("hbm");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_hbm_over_tcp);
    tcase_add_test(tc, test_dmabuf_needs_nic);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
