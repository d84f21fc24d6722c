/*
 * Benchmark of the brain's decide/compile graph (brain/graph.c) at scale:
 * --nodes simulated nodes (default 1,000) in 40 racks, and a prefix index
 * of --blocks KV blocks (default 10^7) in chains of 16, each chain held by
 * one node (every tenth by a second one), with a hot subset (the first
 * blocks of every 997th chain, on nodes all over the cluster) read again
 * and again, in chain order, which the prefetch learner sees as pairs.
 *
 * Phases, each timed (best of --reps) with the growth of the peak RSS
 * (getrusage ru_maxrss) beside it:
 *   first      the first pass: every table compiled, a replication round
 *   full       a forced full recompute: the baseline
 *   idle       an incremental pass with nothing changed
 *   tick       an incremental pass after a typical report interval: 1% of
 *              the nodes cross a usage step, one operator task
 *   round      an incremental pass with a replication round due (samples
 *              the hottest blocks: a scan of the index)
 *   publish    stamping every table with a new generation
 * Ratios are against `full` measured in the same run.  --csv PATH writes
 * the raw figures.  Nothing passes or fails on time.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "aggregate.h"
#include "graph.h"
#include "ids.h"
#include "kvindex.h"
#include "log.h"

#define CHAIN     16
#define RACKS     40
#define BATCH     65536
#define SEC       1000000ULL
#define MAX_PHASE 8

struct phase {
    const char *name;  /* row label */
    double best_s;     /* fastest of the reps */
    long rss_kib;      /* peak RSS growth over the phase */
    size_t changed;    /* tables the pass changed */
    uint64_t compiled; /* tables the pass compiled */
};

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long
maxrss_kib(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* A node's hello as the wire would deliver it (packed, then unpacked, so
 * the cluster can free it the usual way). */
static Mcos__Hello *
make_hello(const char *node, uint64_t boot, const char *rack, bool hbm)
{
    Mcos__Hello h = MCOS__HELLO__INIT;
    Mcos__Labels labels = MCOS__LABELS__INIT;
    Mcos__TierInfo t[3], *tp[3];
    Mcos__Endpoint ep = MCOS__ENDPOINT__INIT, *epp = &ep;
    int kinds[3] = {MCOS__TIER_KIND__TIER_DRAM, MCOS__TIER_KIND__TIER_NVME,
                    MCOS__TIER_KIND__TIER_HBM};
    char addr[32];
    uint8_t *buf;
    size_t len;
    Mcos__Hello *out;

    for (int i = 0; i < 3; i++) {
        mcos__tier_info__init(&t[i]);
        t[i].kind = kinds[i];
        t[i].capacity_bytes = 64ULL << 30;
        t[i].available = true;
        tp[i] = &t[i];
    }
    snprintf(addr, sizeof addr, "10.%u.%u.%u", (unsigned)(boot >> 16) & 255,
             (unsigned)(boot >> 8) & 255, (unsigned)boot & 255);
    labels.rack = (char *)rack;
    labels.zone = "z1";
    labels.host = (char *)node;
    ep.transport = MCOS__TRANSPORT__TRANSPORT_TCP;
    ep.address = addr;
    ep.port = 7653;
    h.node = (char *)node;
    h.boot_id = boot;
    h.labels = &labels;
    h.n_tiers = hbm ? 3 : 2;
    h.tiers = tp;
    h.n_endpoints = 1;
    h.endpoints = &epp;
    h.version = "bench";
    len = mcos__hello__get_packed_size(&h);
    buf = malloc(len);
    if (!buf) {
        return NULL;
    }
    mcos__hello__pack(&h, buf);
    out = mcos__hello__unpack(NULL, len, buf);
    free(buf);
    return out;
}

/* The simulated brain: what brain_graph_run reads, and the graph. */
struct world {
    struct brain_cluster c;          /* the nodes */
    struct brain_kv *kv;             /* the prefix index */
    struct brain_graph *g;           /* under test */
    struct brain_policy policy;      /* tier knobs */
    struct brain_repl_config repl;   /* replication knobs */
    struct brain_place_config place; /* placement/prefetch knobs */
    uint64_t now;                    /* simulated clock */
};

static int
join_all(struct world *w, size_t nodes)
{
    for (size_t i = 0; i < nodes; i++) {
        char name[32], rack[16], err[256];
        struct brain_agg_result res;
        Mcos__Hello *h;

        snprintf(name, sizeof name, "node%04zu", i);
        snprintf(rack, sizeof rack, "rack%02zu", i % RACKS);
        h = make_hello(name, i + 1, rack, i % 2 == 0);
        if (!h ||
            brain_aggregate_hello(&w->c, &h, w->now, &res, err, sizeof err)) {
            fprintf(stderr, "bench_compile: join %s: %s\n", name,
                    h ? err : "out of memory");
            return -1;
        }
    }
    return 0;
}

/* Sends one batch of events as node `idx`'s report into the index and
 * the graph's learners. */
static void
feed(struct world *w, uint16_t idx, Mcos__ObjectEvent **evp, size_t n)
{
    Mcos__Report rep = MCOS__REPORT__INIT;

    rep.n_events = n;
    rep.events = evp;
    brain_kv_report(w->kv, idx, &rep, w->now);
    brain_graph_report(w->g, idx, &rep);
}

/* Appends STORED events for chain k, and for a hot chain its reads. */
static size_t
chain_events(struct world *w, uint16_t node, size_t k, bool reads,
             Mcos__ObjectEvent *ev, Mcos__ObjectEvent **evp, size_t n)
{
    uint64_t parent = 0;

    for (size_t b = 0; b < CHAIN; b++) {
        uint64_t h = mcos_mix64(k * CHAIN + b + 1);

        if (n == BATCH) {
            feed(w, node, evp, n);
            n = 0;
        }
        ev[n].kind = MCOS__EVENT_KIND__EVENT_STORED;
        ev[n].tier = MCOS__TIER_KIND__TIER_DRAM;
        ev[n].object_id = h;
        ev[n++].parent_id = parent;
        parent = h;
    }
    for (int rd = 0; reads && rd < 5; rd++) {
        for (size_t b = 0; b < 4; b++) {
            if (n == BATCH) {
                feed(w, node, evp, n);
                n = 0;
            }
            ev[n].kind = MCOS__EVENT_KIND__EVENT_ACCESSED;
            ev[n++].object_id = mcos_mix64(k * CHAIN + b + 1);
        }
    }
    return n;
}

/* Fills the index: chains of CHAIN blocks, chain k held by node k % N,
 * every tenth chain also by node (k + N/2) % N; the first 4 blocks of
 * every 997th chain read 5 times in chain order on its first holder (hot,
 * and access pairs for the prefetch learner). */
static int
fill(struct world *w, size_t blocks, size_t nodes)
{
    Mcos__ObjectEvent *ev = calloc(BATCH, sizeof *ev);
    Mcos__ObjectEvent **evp = calloc(BATCH, sizeof *evp);
    size_t chains = blocks / CHAIN, half = nodes / 2;

    if (!ev || !evp) {
        free(ev);
        free(evp);
        return -ENOMEM;
    }
    for (size_t i = 0; i < BATCH; i++) {
        mcos__object_event__init(&ev[i]);
        ev[i].class_ = MCOS__OBJECT_CLASS__CLASS_KV_BLOCK;
        ev[i].ns = "model";
        evp[i] = &ev[i];
    }
    for (size_t node = 0; node < nodes; node++) {
        size_t n = 0;

        for (size_t k = node; k < chains; k += nodes) {
            n = chain_events(w, (uint16_t)node, k, k % 997 == 0, ev, evp, n);
        }
        /* The chains whose second holder this node is. */
        for (size_t k = (node + nodes - half) % nodes; k < chains;
             k += nodes) {
            if (k % 10 == 0) {
                n = chain_events(w, (uint16_t)node, k, false, ev, evp, n);
            }
        }
        if (n) {
            feed(w, (uint16_t)node, evp, n);
        }
    }
    free(ev);
    free(evp);
    return 0;
}

static uint64_t last_compiled; /* tables compiled by the last pass */

static int
run_pass(struct world *w, bool recompute, size_t *changed)
{
    uint64_t before = brain_graph_tables_compiled(w->g);
    struct brain_graph_ctx ctx = {&w->c,    &w->policy, w->kv,
                                  &w->repl, &w->place,  w->now};
    const struct brain_nodeset *cs;
    char err[256];
    int r = brain_graph_run(w->g, &ctx, recompute, err, sizeof err);

    if (r) {
        fprintf(stderr, "bench_compile: pass failed: %s\n", err);
        return r;
    }
    last_compiled = brain_graph_tables_compiled(w->g) - before;
    cs = brain_graph_tables_changed(w->g);
    *changed = 0;
    for (size_t i = 0; i < w->c.n; i++) {
        *changed += brain_nodeset_has(cs, w->c.nodes[i]->idx);
    }
    return 0;
}

/* Changes what a typical report interval changes: 1% of the nodes cross
 * a usage step in DRAM, one operator task. */
static void
tick_inputs(struct world *w, int rep)
{
    char err[256];

    for (size_t i = 0; i < w->c.n; i += 100) {
        struct brain_tier_usage *u =
            &w->c.nodes[i]->tiers[MCOS__TIER_KIND__TIER_DRAM];

        u->capacity = 1000;
        u->used = rep % 2 ? 800 : 880;
    }
    brain_replica_add(&w->c, w->c.nodes[0]->name, 0x1000 + (uint64_t)rep,
                      w->c.nodes[1]->name, MCOS__TIER_KIND__TIER_DRAM, err,
                      sizeof err);
}

static void
usage(void)
{
    printf("usage: bench_compile [--nodes N] [--blocks N] [--reps N] "
           "[--csv PATH] [--quick]\n"
           "  --nodes N   simulated nodes (default 1000, at most 4096)\n"
           "  --blocks N  KV blocks in the prefix index (default 10000000)\n"
           "  --reps N    repetitions per phase, best kept (default 3)\n"
           "  --csv PATH  also write the figures as CSV\n"
           "  --quick     small sizes: a smoke run, figures meaningless\n");
}

static bool
parse_num(const char *s, size_t max, size_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v == 0 || v > max) {
        return false;
    }
    *out = (size_t)v;
    return true;
}

int
main(int argc, char **argv)
{
    size_t nodes = 1000, blocks = 10000000, reps = 3, changed = 0;
    const char *csv = NULL;
    struct phase ph[MAX_PHASE];
    size_t nph = 0;
    struct world w;
    struct mcos_table **stamped;
    double t0;
    long rss0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;

        if (!strcmp(a, "--nodes") && has) {
            if (!parse_num(argv[++i], BRAIN_PREFIX_MAX_NODES, &nodes)) {
                fprintf(stderr, "bench_compile: --nodes: want 1..%d\n",
                        BRAIN_PREFIX_MAX_NODES);
                return 2;
            }
        } else if (!strcmp(a, "--blocks") && has) {
            if (!parse_num(argv[++i], (size_t)1 << 32, &blocks)) {
                fprintf(stderr, "bench_compile: --blocks: want 1..2^32\n");
                return 2;
            }
        } else if (!strcmp(a, "--reps") && has) {
            if (!parse_num(argv[++i], 1000, &reps)) {
                fprintf(stderr, "bench_compile: --reps: want 1..1000\n");
                return 2;
            }
        } else if (!strcmp(a, "--csv") && has) {
            csv = argv[++i];
        } else if (!strcmp(a, "--quick")) {
            nodes = 20;
            blocks = 20000;
            reps = 1;
        } else if (!strcmp(a, "--help")) {
            usage();
            return 0;
        } else {
            fprintf(stderr, "bench_compile: unknown argument '%s'\n", a);
            usage();
            return 2;
        }
    }
    if (nodes < 2) {
        fprintf(stderr, "bench_compile: --nodes: want at least 2\n");
        return 2;
    }
    mcos_log_set_spec("warn");
    memset(&w, 0, sizeof w);
    w.policy = (struct brain_policy){90, 75, 250, 1000, 0};
    w.repl = (struct brain_repl_config){
        .min_hotness_milli = 2000,
        .copies = 2,
        .budget = 64,
        .budget_bytes = 256 << 20,
        .candidates = 256,
        .interval_us = 5 * SEC,
        .drop_hits = 1,
        .drop_after_us = 60 * SEC,
    };
    w.place = (struct brain_place_config){1000, 3, 50, 256};
    w.now = 1000 * SEC;
    brain_cluster_init(&w.c);
    if (brain_kv_create(&w.kv) || brain_graph_create(&w.g) ||
        join_all(&w, nodes)) {
        return 1;
    }
    t0 = now_s();
    rss0 = maxrss_kib();
    if (fill(&w, blocks, nodes)) {
        fprintf(stderr, "bench_compile: out of memory filling the index\n");
        return 1;
    }
    {
        struct brain_kv_stats st;

        brain_kv_stats(w.kv, &st);
        printf("bench_compile: %zu nodes in %d racks, %" PRIu64
               " blocks indexed (%.0f MiB) in %.2f s, RSS +%ld MiB\n",
               nodes, RACKS, st.blocks, (double)st.memory_bytes / 1048576.0,
               now_s() - t0, (maxrss_kib() - rss0) / 1024);
    }

#define PHASE(NAME, SETUP, RECOMPUTE)                                         \
    do {                                                                      \
        struct phase *p = &ph[nph++];                                         \
        long r0 = maxrss_kib();                                               \
                                                                              \
        p->name = NAME;                                                       \
        p->best_s = 1e30;                                                     \
        for (size_t rep = 0; rep < reps; rep++) {                             \
            double s;                                                         \
                                                                              \
            SETUP;                                                            \
            s = now_s();                                                      \
            if (run_pass(&w, RECOMPUTE, &changed)) {                          \
                return 1;                                                     \
            }                                                                 \
            s = now_s() - s;                                                  \
            if (s < p->best_s) {                                              \
                p->best_s = s;                                                \
            }                                                                 \
            p->changed = changed;                                             \
            p->compiled = last_compiled;                                      \
        }                                                                     \
        p->rss_kib = maxrss_kib() - r0;                                       \
    } while (0)

    {
        struct phase *p = &ph[nph++];
        long r0 = maxrss_kib();
        double s = now_s();

        if (run_pass(&w, false, &changed)) {
            return 1;
        }
        p->name = "first";
        p->best_s = now_s() - s;
        p->rss_kib = maxrss_kib() - r0;
        p->changed = changed;
        p->compiled = last_compiled;
    }
    PHASE("full", (void)0, true);
    PHASE("idle", (void)0, false);
    PHASE("tick", tick_inputs(&w, (int)rep), false);
    PHASE("round", w.now += w.repl.interval_us, false);
#undef PHASE
    stamped = calloc(nodes, sizeof *stamped);
    if (!stamped) {
        return 1;
    }
    {
        struct phase *p = &ph[nph++];
        long r0 = maxrss_kib();
        double s = now_s();

        for (size_t i = 0; i < w.c.n; i++) {
            const struct mcos_table *t =
                brain_graph_table(w.g, w.c.nodes[i]->idx);

            if (t && mcos_table_restamp(t, 7, &stamped[i])) {
                return 1;
            }
        }
        p->name = "publish";
        p->best_s = now_s() - s;
        p->rss_kib = maxrss_kib() - r0;
        p->changed = w.c.n;
        for (size_t i = 0; i < nodes; i++) {
            mcos_table_free(stamped[i]);
        }
        free(stamped);
    }

    printf("\n%-8s %12s %14s %14s %9s %9s\n", "phase", "seconds", "vs full",
           "RSS growth", "compiled", "changed");
    for (size_t i = 0; i < nph; i++) {
        printf("%-8s %12.6f %13.4fx %10ld KiB %9" PRIu64 " %9zu\n", ph[i].name,
               ph[i].best_s, ph[i].best_s / ph[1].best_s, ph[i].rss_kib,
               ph[i].compiled, ph[i].changed);
    }
    printf("(full recompute is the baseline; tick = 1%% of nodes cross a "
           "usage step + 1 operator task; round = a replication round "
           "scanning the index; best of %zu)\n",
           reps);
    if (csv) {
        FILE *f = fopen(csv, "w");

        if (!f) {
            fprintf(stderr, "bench_compile: cannot write %s: %s\n", csv,
                    strerror(errno));
            return 1;
        }
        fprintf(
            f, "phase,nodes,blocks,seconds,ratio_vs_full,"
               "rss_growth_kib,tables_compiled,tables_changed,peak_rss_kib\n");
        for (size_t i = 0; i < nph; i++) {
            fprintf(f, "%s,%zu,%zu,%.9f,%.6f,%ld,%zu,%ld\n", ph[i].name, nodes,
                    blocks, ph[i].best_s, ph[i].best_s / ph[1].best_s,
                    ph[i].rss_kib, ph[i].changed, maxrss_kib());
        }
        fclose(f);
    }
    brain_graph_destroy(w.g);
    brain_kv_destroy(w.kv);
    brain_cluster_destroy(&w.c);
    return 0;
}
