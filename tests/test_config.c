/* Tests for common/config: parsers, files, flags and their errors. */
#include <errno.h>
#include <stddef.h>

#include "config.h"
#include "testutil.h"

struct cfg {
    char *name;
    uint64_t count;
    uint64_t size;
    uint64_t interval;
    bool flag;
    char *nested;
};

#define OPT(KEY, FLAG, TYPE, FIELD, MIN, MAX, DEF)                            \
    {                                                                         \
        KEY, FLAG, TYPE, offsetof(struct cfg, FIELD), MIN, MAX, DEF, "help"   \
    }

static const struct mcos_cfg_opt opts[] = {
    OPT("name", "name", MCOS_CFG_STRING, name, 0, 0, "default-name"),
    OPT("count", "count", MCOS_CFG_UINT, count, 1, 100, "10"),
    OPT("tiers.dram.bytes", "dram-bytes", MCOS_CFG_BYTES, size, 0, 0, "1GiB"),
    OPT("interval_ms", "interval-ms", MCOS_CFG_MS, interval, 10, 0, "1s"),
    OPT("flag", "flag", MCOS_CFG_BOOL, flag, 0, 0, "false"),
    OPT("a.b.c", NULL, MCOS_CFG_STRING, nested, 0, 0, ""),
};
#define N (sizeof opts / sizeof opts[0])

static struct cfg c;
static char err[MCOS_CFG_ERR_LEN];

static void
setup(void)
{
    memset(&c, 0, sizeof c);
    err[0] = '\0';
    ck_assert_int_eq(mcos_cfg_defaults(opts, N, &c, err, sizeof err), 0);
}

static void
teardown(void)
{
    mcos_cfg_free(opts, N, &c);
}

START_TEST(test_parsers)
{
    static const struct {
        const char *text;
        int rc;
        uint64_t v;
    } bytes[] = {
        {"0", 0, 0},
        {"4096", 0, 4096},
        {"4KiB", 0, 4096},
        {"4k", 0, 4096},
        {"1.5GiB", 0, 1610612736ULL},
        {"2 MiB", 0, 2097152},
        {"1T", 0, 1ULL << 40},
        {"lots", -EINVAL, 0},
        {"-1", -EINVAL, 0},
        {"1.5", -EINVAL, 0},
        {"1 parsec", -EINVAL, 0},
        {"99999999999999999999", -EINVAL, 0},
        {"", -EINVAL, 0},
    };
    static const struct {
        const char *text;
        int rc;
        uint64_t v;
    } ms[] = {
        {"250", 0, 250},       {"1.5s", 0, 1500}, {"2m", 0, 120000},
        {"1h", 0, 3600000},    {"10ms", 0, 10},   {"soon", -EINVAL, 0},
        {"0.5ms", -EINVAL, 0},
    };
    uint64_t v;
    bool b;

    for (size_t i = 0; i < sizeof bytes / sizeof bytes[0]; i++) {
        v = 12345;
        ck_assert_msg(mcos_parse_bytes(bytes[i].text, &v) == bytes[i].rc,
                      "bytes case '%s'", bytes[i].text);
        if (bytes[i].rc == 0) {
            ck_assert_uint_eq(v, bytes[i].v);
        }
    }
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
        ck_assert_msg(mcos_parse_ms(ms[i].text, &v) == ms[i].rc,
                      "ms case '%s'", ms[i].text);
        if (ms[i].rc == 0) {
            ck_assert_uint_eq(v, ms[i].v);
        }
    }
    ck_assert_int_eq(mcos_parse_uint("12x", &v), -EINVAL);
    ck_assert_int_eq(mcos_parse_uint("+1", &v), -EINVAL);
    ck_assert_int_eq(mcos_parse_bool("yes", &b), 0);
    ck_assert(b);
    ck_assert_int_eq(mcos_parse_bool("off", &b), 0);
    ck_assert(!b);
    ck_assert_int_eq(mcos_parse_bool("maybe", &b), -EINVAL);
}
END_TEST

START_TEST(test_defaults)
{
    ck_assert_str_eq(c.name, "default-name");
    ck_assert_uint_eq(c.count, 10);
    ck_assert_uint_eq(c.size, 1ULL << 30);
    ck_assert_uint_eq(c.interval, 1000);
    ck_assert(!c.flag);
}
END_TEST

START_TEST(test_load_string_good)
{
    const char *doc = "{\"name\": \"n7\", \"count\": 42, "
                      "\"tiers\": {\"dram\": {\"bytes\": \"2GiB\"}}, "
                      "\"interval_ms\": \"250ms\", \"flag\": true, "
                      "\"a\": {\"b\": {\"c\": \"deep\"}}}";

    ck_assert_int_eq(
        mcos_cfg_load_string(opts, N, &c, doc, "test", err, sizeof err), 0);
    ck_assert_str_eq(c.name, "n7");
    ck_assert_uint_eq(c.count, 42);
    ck_assert_uint_eq(c.size, 2ULL << 30);
    ck_assert_uint_eq(c.interval, 250);
    ck_assert(c.flag);
    ck_assert_str_eq(c.nested, "deep");
}
END_TEST

/* Each bad document fails with this exact message and changes nothing. */
static const struct {
    const char *doc;
    const char *msg;
} bad_docs[] = {
    {"{\"colour\": 1}", "test: unknown key 'colour'"},
    {"{\"tiers\": {\"hbm\": {\"bytes\": 1}}}",
     "test: unknown key 'tiers.hbm'"},
    {"{\"count\": \"ten\"}",
     "test: key 'count': expected a non-negative integer"},
    {"{\"count\": 1000}",
     "test: key 'count': 1000 is out of range (1 to 100)"},
    {"{\"count\": 0}", "test: key 'count': 0 is out of range (1 to 100)"},
    {"{\"count\": -5}", "test: key 'count': must not be negative"},
    {"{\"interval_ms\": 5}",
     "test: key 'interval_ms': 5 is below the minimum 10"},
    {"{\"tiers\": {\"dram\": {\"bytes\": \"lots\"}}}",
     "test: key 'tiers.dram.bytes': expected a size such as 4GiB or "
     "1048576, got \"lots\""},
    {"{\"flag\": \"sure\"}", "test: key 'flag': expected true or false"},
    {"{\"name\": 7}", "test: key 'name': expected a string"},
    {"[1, 2]", "test: the top level must be a JSON object"},
    {"{\"name\": \"x\",}", "test: line 1 column 14: string or '}' expected"},
    {"{\"name\": \"a\", \"name\": \"b\"}", "test: line 1 column"},
    /* A good key before a bad one: the good one must not be stored. */
    {"{\"name\": \"partial\", \"count\": \"x\"}",
     "test: key 'count': expected a non-negative integer"},
};

START_TEST(test_load_string_bad)
{
    int rc = mcos_cfg_load_string(opts, N, &c, bad_docs[_i].doc, "test", err,
                                  sizeof err);

    ck_assert_err(rc, -EINVAL, err, bad_docs[_i].msg);
    ck_assert_str_eq(c.name, "default-name");
    ck_assert_uint_eq(c.count, 10);
    ck_assert_uint_eq(c.size, 1ULL << 30);
}
END_TEST

START_TEST(test_file)
{
    char *dir = test_tmpdir();
    char path[512];
    FILE *f;

    snprintf(path, sizeof path, "%s/c.json", dir);
    ck_assert_int_eq(mcos_cfg_load_file(opts, N, &c, path, err, sizeof err),
                     -ENOENT);
    ck_assert_msg(strstr(err, "No such file or directory"), "%s", err);
    f = fopen(path, "w");
    fputs("{\n  \"count\": 5,\n  \"name\": oops\n}\n", f);
    fclose(f);
    ck_assert_int_eq(mcos_cfg_load_file(opts, N, &c, path, err, sizeof err),
                     -EINVAL);
    ck_assert_msg(strstr(err, "line 3 column"), "%s", err);
    ck_assert_msg(strstr(err, path), "%s", err);
    ck_assert_uint_eq(c.count, 10);
    f = fopen(path, "w");
    fputs("{\"count\": 5}", f);
    fclose(f);
    ck_assert_int_eq(mcos_cfg_load_file(opts, N, &c, path, err, sizeof err),
                     0);
    ck_assert_uint_eq(c.count, 5);
    test_rmrf(dir);
    free(dir);
}
END_TEST

START_TEST(test_args)
{
    char *dir = test_tmpdir();
    char path[512], cfgarg[600];
    bool help, version;
    FILE *f;

    snprintf(path, sizeof path, "%s/c.json", dir);
    f = fopen(path, "w");
    fputs("{\"count\": 5, \"name\": \"from-file\"}", f);
    fclose(f);
    snprintf(cfgarg, sizeof cfgarg, "--config=%s", path);

    /* Flags override the file wherever --config stands. */
    char *argv1[] = {
        "prog", "--count", "7", cfgarg, "--flag", "--dram-bytes=512MiB", NULL};
    ck_assert_int_eq(mcos_cfg_parse_args(opts, N, &c, 6, argv1, &help,
                                         &version, err, sizeof err),
                     0);
    ck_assert_uint_eq(c.count, 7);
    ck_assert_str_eq(c.name, "from-file");
    ck_assert(c.flag);
    ck_assert_uint_eq(c.size, 512ULL << 20);

    char *argv2[] = {"prog", "--colour", "red", NULL};
    ck_assert_err(mcos_cfg_parse_args(opts, N, &c, 3, argv2, &help, &version,
                                      err, sizeof err),
                  -EINVAL, err, "unknown option '--colour' (see --help)");
    char *argv3[] = {"prog", "--count", NULL};
    ck_assert_err(mcos_cfg_parse_args(opts, N, &c, 2, argv3, &help, &version,
                                      err, sizeof err),
                  -EINVAL, err, "option '--count' needs a value");
    char *argv4[] = {"prog", "stray", NULL};
    ck_assert_err(mcos_cfg_parse_args(opts, N, &c, 2, argv4, &help, &version,
                                      err, sizeof err),
                  -EINVAL, err, "unexpected argument 'stray' (see --help)");
    char *argv5[] = {"prog", "--count", "abc", NULL};
    ck_assert_err(mcos_cfg_parse_args(opts, N, &c, 3, argv5, &help, &version,
                                      err, sizeof err),
                  -EINVAL, err,
                  "option --count: key 'count': expected a non-negative "
                  "integer, got \"abc\"");
    char *argv6[] = {"prog", "--version", NULL};
    ck_assert_int_eq(mcos_cfg_parse_args(opts, N, &c, 2, argv6, &help,
                                         &version, err, sizeof err),
                     0);
    ck_assert(version);
    /* Not a flag: keys without one are file-only. */
    char *argv7[] = {"prog", "--a.b.c", "x", NULL};
    ck_assert_err(mcos_cfg_parse_args(opts, N, &c, 3, argv7, &help, &version,
                                      err, sizeof err),
                  -EINVAL, err, "unknown option '--a.b.c'");
    test_rmrf(dir);
    free(dir);
}
END_TEST

START_TEST(test_set)
{
    ck_assert_int_eq(
        mcos_cfg_set(opts, N, &c, "count", "3", "api", err, sizeof err), 0);
    ck_assert_uint_eq(c.count, 3);
    ck_assert_int_eq(mcos_cfg_set(opts, N, &c, "dram-bytes", "1MiB", "api",
                                  err, sizeof err),
                     0);
    ck_assert_uint_eq(c.size, 1 << 20);
    ck_assert_err(
        mcos_cfg_set(opts, N, &c, "nope", "1", "api", err, sizeof err),
        -ENOENT, err, "api: unknown key 'nope'");
}
END_TEST

START_TEST(test_urls)
{
    static const char *const bus[] = {"tcp", "ipc", NULL};
    static const char *const http[] = {"http", NULL};
    static const struct {
        const char *url;
        const char *const *schemes;
        int rc;
    } cases[] = {
        {"tcp://0.0.0.0:7650", bus, 0},
        {"tcp://[::1]:7650", bus, 0},
        {"ipc:///run/mcos/brain.sock", bus, 0},
        {"http://127.0.0.1:7651", http, 0},
        {"tcp://host", bus, -EINVAL},
        {"tcp://host:0", bus, -EINVAL},
        {"tcp://host:65536", bus, -EINVAL},
        {"tcp://:7650", bus, -EINVAL},
        {"ipc://", bus, -EINVAL},
        {"http://x:80", bus, -EINVAL},
        {"tcp://x:80", http, -EINVAL},
        {"nothing", bus, -EINVAL},
        {"", bus, -EINVAL},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_msg(mcos_check_url("listen", cases[i].url, cases[i].schemes,
                                     err, sizeof err) == cases[i].rc,
                      "case '%s'", cases[i].url);
    }
    mcos_check_url("listen", "foo://x", bus, err, sizeof err);
    ck_assert_str_eq(err, "listen: 'foo://x' is not a valid address (want "
                          "tcp://HOST:PORT or ipc:///PATH)");
    mcos_check_url("http_listen", "https://x:1", http, err, sizeof err);
    ck_assert_str_eq(err, "http_listen: 'https://x:1' is not a valid "
                          "address (want http://HOST:PORT)");
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_parsers);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_load_string_good);
    tcase_add_loop_test(tc, test_load_string_bad, 0,
                        sizeof bad_docs / sizeof bad_docs[0]);
    tcase_add_test(tc, test_file);
    tcase_add_test(tc, test_args);
    tcase_add_test(tc, test_set);
    tcase_add_test(tc, test_urls);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
