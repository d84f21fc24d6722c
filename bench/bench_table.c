/*
 * bench_table: what the hot path pays for a policy decision.
 *
 * Compares, in the same run, (a) an agent looking up its policy table
 * (RCU read lock, tier rule and demotion chain lookups, unlock) with
 * (b) a request/reply round trip over the bus to a server on loopback
 * TCP -- what asking the brain per decision would cost at the very least.
 * Prints medians and the ratio.  Timings are per batch of lookups, since a
 * single lookup is shorter than the clock's resolution.
 *
 * Usage: bench_table [--quick]
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "bus.h"
#include "table.h"
#include "tables.h"
#include "wire.h"

#define BATCH 1000

static uint64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* A table shaped like the brain's: three tiers, a chain, 64 peers. */
static void
load_table(struct agent_tables *t)
{
    static Mcos__Rule rules[80], *ptrs[80];
    static Mcos__TierRule tiers[3];
    static Mcos__DemotionRule dems[3];
    static Mcos__PeerRule peers[64];
    static char keys[80][32], names[64][16];
    Mcos__TableUpdate u = MCOS__TABLE_UPDATE__INIT;
    const int kinds[3] = {MCOS__TIER_KIND__TIER_HBM,
                          MCOS__TIER_KIND__TIER_DRAM,
                          MCOS__TIER_KIND__TIER_NVME};
    char err[200];
    size_t n = 0;

    for (int i = 0; i < 3; i++) {
        mcos__rule__init(&rules[n]);
        mcos__tier_rule__init(&tiers[i]);
        tiers[i].tier = kinds[i];
        tiers[i].high_watermark_pct = 90;
        tiers[i].low_watermark_pct = 75;
        snprintf(keys[n], sizeof keys[n], "tier/%s", mcos_tier_name(kinds[i]));
        rules[n].key = keys[n];
        rules[n].rule_case = MCOS__RULE__RULE_TIER;
        rules[n].tier = &tiers[i];
        ptrs[n] = &rules[n];
        n++;
        mcos__rule__init(&rules[n]);
        mcos__demotion_rule__init(&dems[i]);
        dems[i].from = kinds[i];
        dems[i].to = i < 2 ? kinds[i + 1] : 0;
        snprintf(keys[n], sizeof keys[n], "demotion/%s",
                 mcos_tier_name(kinds[i]));
        rules[n].key = keys[n];
        rules[n].rule_case = MCOS__RULE__RULE_DEMOTION;
        rules[n].demotion = &dems[i];
        ptrs[n] = &rules[n];
        n++;
    }
    for (int i = 0; i < 64; i++) {
        mcos__rule__init(&rules[n]);
        mcos__peer_rule__init(&peers[i]);
        snprintf(names[i], sizeof names[i], "n%02d", i);
        snprintf(keys[n], sizeof keys[n], "peer/n%02d", i);
        peers[i].node = names[i];
        rules[n].key = keys[n];
        rules[n].rule_case = MCOS__RULE__RULE_PEER;
        rules[n].peer = &peers[i];
        ptrs[n] = &rules[n];
        n++;
    }
    u.format_version = MCOS_TABLE_FORMAT;
    u.gen = 1;
    u.node = "self";
    u.n_upserts = n;
    u.upserts = ptrs;
    if (agent_tables_apply(t, &u, err, sizeof err) != 0) {
        fprintf(stderr, "bench_table: %s\n", err);
        exit(1);
    }
}

/* One hot-path decision: where does an object in HBM go when HBM is over
 * its high watermark? */
static inline int
decide(struct agent_tables *t, uint32_t usage_pct)
{
    const struct mcos_table *tab = agent_tables_read_lock(t);
    const Mcos__TierRule *r =
        mcos_table_tier_rule(tab, MCOS__TIER_KIND__TIER_HBM);
    int dst = 0;

    if (r && usage_pct > r->high_watermark_pct) {
        dst = mcos_table_demotion_next(tab, MCOS__TIER_KIND__TIER_HBM);
    }
    agent_tables_read_unlock(t);
    return dst;
}

struct rtt {
    uv_loop_t loop;
    struct mcos_bus_client *cli;
    uint64_t sent_at;
    uint64_t *samples;
    size_t n, want;
};

static void
on_request(struct mcos_bus_request *req, void *arg)
{
    size_t len;
    const void *d = mcos_bus_request_data(req, &len);

    mcos_bus_reply(req, d, len);
}

static void send_one(struct rtt *r);

static void
on_reply(int status, const void *data, size_t len, void *arg)
{
    struct rtt *r = arg;

    if (status) {
        fprintf(stderr, "bench_table: round trip failed: %d\n", status);
        exit(1);
    }
    r->samples[r->n++] = now_ns() - r->sent_at;
    if (r->n < r->want) {
        send_one(r);
    }
}

static void
send_one(struct rtt *r)
{
    static const char msg[64] = "decide";

    r->sent_at = now_ns();
    mcos_bus_call(r->cli, msg, sizeof msg, 5000, on_reply, r, NULL);
}

/* A loopback port the kernel says is free. */
static int
free_port(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof sin;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && !bind(fd, (struct sockaddr *)&sin, sizeof sin) &&
        !getsockname(fd, (struct sockaddr *)&sin, &len)) {
        port = ntohs(sin.sin_port);
    }
    if (fd >= 0) {
        close(fd);
    }
    return port;
}

int
main(int argc, char **argv)
{
    bool quick = argc > 1 && !strcmp(argv[1], "--quick");
    size_t batches = quick ? 200 : 20000, trips = quick ? 200 : 5000;
    uint64_t *lk = calloc(batches, sizeof *lk);
    struct agent_tables *t;
    struct mcos_bus_server *srv;
    struct rtt r = {0};
    char err[256], url[64];
    volatile int sink = 0;
    double lookup_med, rtt_med, rtt_p99;

    agent_tables_register_thread();
    agent_tables_create("self", &t);
    load_table(t);
    for (size_t b = 0; b < batches; b++) {
        uint64_t t0 = now_ns();

        for (int i = 0; i < BATCH; i++) {
            sink += decide(t, 80 + (uint32_t)(i & 31));
        }
        lk[b] = now_ns() - t0;
    }
    qsort(lk, batches, sizeof *lk, cmp_u64);
    lookup_med = (double)lk[batches / 2] / BATCH;

    uv_loop_init(&r.loop);
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", free_port());
    if (mcos_bus_server_create(&r.loop, url, on_request, NULL, &srv, err,
                               sizeof err) ||
        mcos_bus_client_create(&r.loop, url, &r.cli, err, sizeof err)) {
        fprintf(stderr, "bench_table: %s\n", err);
        return 1;
    }
    r.samples = calloc(trips, sizeof *r.samples);
    r.want = trips;
    send_one(&r);
    while (r.n < r.want) {
        uv_run(&r.loop, UV_RUN_ONCE);
    }
    qsort(r.samples, trips, sizeof *r.samples, cmp_u64);
    /* The first trips include the TCP connection set-up: drop none, the
     * median is robust to them. */
    rtt_med = (double)r.samples[trips / 2];
    rtt_p99 = (double)r.samples[trips * 99 / 100];

    printf("bench_table%s: hot-path policy lookup vs a bus round trip\n",
           quick ? " (quick)" : "");
    printf("  %-40s %12s %12s\n", "", "median", "p99");
    printf("  %-40s %10.1f ns %12s\n", "table lookup (RCU lock, 2 lookups)",
           lookup_med, "-");
    printf("  %-40s %10.1f us %9.1f us\n", "nng REQ/REP round trip (loopback)",
           rtt_med / 1000, rtt_p99 / 1000);
    printf("  ratio: a round trip costs %.0fx a table lookup; target: "
           "lookup well under 100 ns -> %s\n",
           rtt_med / lookup_med, lookup_med < 100 ? "met" : "NOT met");

    mcos_bus_client_close(r.cli);
    mcos_bus_server_close(srv);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    uv_loop_close(&r.loop);
    agent_tables_destroy(t);
    agent_tables_unregister_thread();
    free(lk);
    free(r.samples);
    return sink == -1;
}
