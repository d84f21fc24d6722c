/* Tests for agent/options: the agent's config checks. */
#include <errno.h>

#include "agent.h"
#include "testutil.h"
#include "transport.h"

static struct agent_config c;
static char err[512];

static void
setup(void)
{
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(mcos_cfg_defaults(agent_config_opts, agent_n_config_opts,
                                       &c, err, sizeof err),
                     0);
    c.node = strdup("n1");
}

static void
teardown(void)
{
    mcos_cfg_free(agent_config_opts, agent_n_config_opts, &c);
}

static void
set(const char *key, const char *value)
{
    ck_assert_msg(mcos_cfg_set(agent_config_opts, agent_n_config_opts, &c, key,
                               value, "test", err, sizeof err) == 0,
                  "%s", err);
}

START_TEST(test_good)
{
    ck_assert_msg(agent_config_check(&c, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(c.dram_bytes, 1ULL << 30);
    ck_assert_uint_eq(c.data_port, 7653);
    ck_assert_str_eq(c.brain, "tcp://127.0.0.1:7650");
}
END_TEST

START_TEST(test_errors)
{
    char *dir = test_tmpdir();

    set("node", "bad name");
    ck_assert_err(agent_config_check(&c, err, sizeof err), -EINVAL, err,
                  "node: bad name 'bad name' (1-63 of [A-Za-z0-9._-], "
                  "starting with a letter or digit)");
    set("node", "n1");
    set("rack", "r 1");
    ck_assert_err(agent_config_check(&c, err, sizeof err), -EINVAL, err,
                  "labels: rack and zone must be at most 63 printable "
                  "characters without spaces or quotes");
    set("rack", "r1");
    set("stale-after-ms", "500");
    ck_assert_err(agent_config_check(&c, err, sizeof err), -EINVAL, err,
                  "stale_after_ms (500) must be at least "
                  "report_interval_ms (1000)");
    set("stale-after-ms", "10s");
    set("dram-bytes", "1000TiB");
    ck_assert_err(agent_config_check(&c, err, sizeof err), -EINVAL, err,
                  "exceed this machine's memory");
    set("dram-bytes", "64MiB");
    set("nvme-dir", "/nonexistent/mcos");
    set("nvme-bytes", "1GiB");
    ck_assert_err(agent_config_check(&c, err, sizeof err), -EINVAL, err,
                  "tiers.nvme.dir: /nonexistent/mcos: No such file or "
                  "directory");
    set("nvme-dir", dir);
    set("nvme-bytes", "0");
    ck_assert_err(agent_config_check(&c, err, sizeof err), -EINVAL, err,
                  "tiers.nvme.bytes must be set when tiers.nvme.dir is");
    set("nvme-bytes", "1000000TiB");
    ck_assert_err(agent_config_check(&c, err, sizeof err), -EINVAL, err,
                  "exceeds the free space in");
    set("nvme-bytes", "1MiB");
    ck_assert_msg(agent_config_check(&c, err, sizeof err) == 0, "%s", err);
    set("nvme-dir", "");
    ck_assert_err(agent_config_check(&c, err, sizeof err), -EINVAL, err,
                  "tiers.nvme.bytes is set but tiers.nvme.dir is not");
    set("nvme-bytes", "0");
    set("data-address", "a b");
    ck_assert_err(agent_config_check(&c, err, sizeof err), -EINVAL, err,
                  "data.address: bad address 'a b'");
    ck_assert_int_eq(mcos_cfg_set(agent_config_opts, agent_n_config_opts, &c,
                                  "data-port", "70000", "test", err,
                                  sizeof err),
                     -EINVAL);
    ck_assert_str_eq(err, "test: key 'data.port': 70000 is out of range (1 "
                          "to 65534)");
    set("data-address", "127.0.0.1");
    set("data-transports", "carrier-pigeon");
    ck_assert_err(agent_config_check(&c, err, sizeof err), -EINVAL, err,
                  "data.transports: 'carrier-pigeon' is not auto, tcp, "
                  "verbs or off");
    test_rmrf(dir);
    free(dir);
}
END_TEST

/* --brain with several brains (high availability). */
START_TEST(test_brain_list)
{
    static const struct {
        const char *list;
        size_t n;        /* brains accepted, 0: refused */
        const char *msg; /* the refusal */
    } cases[] = {
        {"tcp://127.0.0.1:7650", 1, NULL},
        {"tcp://10.0.0.1:7650,tcp://10.0.0.2:7650,ipc:///run/b3", 3, NULL},
        {"tcp://10.0.0.1:7650,,tcp://10.0.0.2:7650", 2, NULL},
        {"", 0, "brain: no brain URL given"},
        {",", 0, "brain: no brain URL given"},
        {"tcp://10.0.0.1:7650,http://10.0.0.2:7650", 0,
         "brain: 'http://10.0.0.2:7650' is not a valid address"},
        {"tcp://10.0.0.1", 0,
         "brain: 'tcp://10.0.0.1' is not a valid "
         "address"},
        {"tcp://a:1,tcp://a:2,tcp://a:3,tcp://a:4,tcp://a:5,tcp://a:6,"
         "tcp://a:7,tcp://a:8,tcp://a:9,tcp://a:10,tcp://a:11,tcp://a:12,"
         "tcp://a:13,tcp://a:14,tcp://a:15,tcp://a:16,tcp://a:17",
         0, "brain: more than 16 brains listed"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char **list = NULL;
        size_t n = 0;
        int r;

        err[0] = '\0';
        r = agent_brain_list(cases[i].list, &list, &n, err, sizeof err);
        if (cases[i].n) {
            ck_assert_msg(r == 0, "case %zu: %s", i, err);
            ck_assert_uint_eq(n, cases[i].n);
            agent_brain_list_free(list, n);
        } else {
            ck_assert_msg(r == -EINVAL, "case %zu: %d", i, r);
            ck_assert_msg(strstr(err, cases[i].msg), "case %zu: '%s'", i, err);
        }
    }
    set("brain", "tcp://127.0.0.1:7650,ftp://x:1");
    ck_assert_err(agent_config_check(&c, err, sizeof err), -EINVAL, err,
                  "brain: 'ftp://x:1' is not a valid address");
}
END_TEST

/* data.addresses: the NICs verbs stripes over, each checked. */
START_TEST(test_data_addresses)
{
    char out[AGENT_TRANSPORT_MAX_NICS][AGENT_DATA_ADDR_LEN];

    ck_assert_int_eq(agent_config_data_addresses(&c, out, 4, err, sizeof err),
                     0);
    set("data-addresses", "10.0.0.1,10.1.0.1,fd00::1");
    ck_assert_msg(agent_config_check(&c, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(agent_config_data_addresses(&c, out, 4, err, sizeof err),
                     3);
    ck_assert_str_eq(out[0], "10.0.0.1");
    ck_assert_str_eq(out[1], "10.1.0.1");
    ck_assert_str_eq(out[2], "fd00::1");

    set("data-addresses", "10.0.0.1,,10.1.0.1");
    ck_assert_err(agent_config_check(&c, err, sizeof err), -EINVAL, err,
                  "data.addresses: empty entry in '10.0.0.1,,10.1.0.1'");
    set("data-addresses", "10.0.0.1,");
    ck_assert_err(agent_config_check(&c, err, sizeof err), -EINVAL, err,
                  "data.addresses: empty entry in '10.0.0.1,'");
    set("data-addresses", "10.0.0.1,mlx5_1");
    ck_assert_err(agent_config_check(&c, err, sizeof err), -EINVAL, err,
                  "data.addresses: 'mlx5_1' is not a numeric IP address");
    set("data-addresses", "10.0.0.1,10.1.0.1,10.0.0.1");
    ck_assert_err(agent_config_check(&c, err, sizeof err), -EINVAL, err,
                  "data.addresses: 10.0.0.1 is listed twice");
    set("data-addresses", "10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4,10.0.0.5");
    ck_assert_err(agent_config_check(&c, err, sizeof err), -EINVAL, err,
                  "data.addresses: more than 4 addresses in "
                  "'10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4,10.0.0.5'");
    set("data-addresses",
        "10.0.0.1,1234567890123456789012345678901234567890123456789012345678"
        "901234567890");
    ck_assert_err(agent_config_check(&c, err, sizeof err), -EINVAL, err,
                  "data.addresses: entry 2 is too long");
    set("data-addresses", "10.0.0.1,10.1.0.1");
    set("data-address", "10.1.0.1");
    ck_assert_err(agent_config_check(&c, err, sizeof err), -EINVAL, err,
                  "data.addresses: the first address must be data.address "
                  "(10.1.0.1), not 10.0.0.1");
    set("data-address", "10.0.0.1");
    ck_assert_msg(agent_config_check(&c, err, sizeof err) == 0, "%s", err);
    set("data-transports", "tcp");
    ck_assert_err(agent_config_check(&c, err, sizeof err), -EINVAL, err,
                  "data.addresses: 2 NICs need the verbs transport, but "
                  "data.transports is tcp");
    /* One address is just data.address, whatever the transport. */
    set("data-addresses", "10.0.0.1");
    ck_assert_msg(agent_config_check(&c, err, sizeof err) == 0, "%s", err);
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("agent_options");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_good);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_brain_list);
    tcase_add_test(tc, test_data_addresses);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
