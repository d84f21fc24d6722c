/* Tests for brain/engine and the decide/compile graph (brain/graph.c and
 * the en_*.c nodes): golden table dumps for small hand-made clusters, only
 * the nodes whose inputs changed recompile, and after every scenario a
 * forced full recompute gives the same tables byte for byte. */
#include <errno.h>
#include <inttypes.h>

#include "aggregate.h"
#include "brainfix.h"
#include "engine.h"
#include "graph.h"
#include "kvindex.h"

#define SEC 1000000ULL

/* A hand-made cluster and the graph under test. */
struct fix {
    struct brain_cluster c;          /* n1..n4 */
    struct brain_kv *kv;             /* their KV blocks */
    struct brain_graph *g;           /* under test */
    struct brain_policy policy;      /* tier knobs */
    struct brain_repl_config repl;   /* replication knobs */
    struct brain_place_config place; /* placement/prefetch knobs */
    uint64_t now;                    /* fake clock */
    uint64_t seq[8];                 /* report numbers, by node idx */
};

static void
fix_join(struct fix *f, const char *name, uint64_t boot, const char *rack,
         bool hbm)
{
    Mcos__Hello *h =
        fix_hello(name, boot, rack, hbm, true, "10.0.0.9", 7653, 0);
    struct brain_agg_result res;
    char err[256];

    ck_assert_int_eq(
        brain_aggregate_hello(&f->c, &h, f->now, &res, err, sizeof err), 0);
}

/* n1 (r1, hbm), n2 (r2), n3 (r1, hbm), n4 (r3): two racks besides n1's. */
static void
fix_init(struct fix *f)
{
    memset(f, 0, sizeof *f);
    f->policy = (struct brain_policy){90, 75, 250, 1000, 0};
    f->repl = (struct brain_repl_config){
        .min_hotness_milli = 2000,
        .copies = 2,
        .budget = 8,
        .budget_bytes = 256 << 20,
        .candidates = 64,
        .interval_us = 5 * SEC,
        .drop_hits = 1,
        .drop_after_us = 60 * SEC,
    };
    f->place = (struct brain_place_config){1000, 3, 50, 256};
    f->now = 1000 * SEC;
    brain_cluster_init(&f->c);
    ck_assert_int_eq(brain_kv_create(&f->kv), 0);
    ck_assert_int_eq(brain_graph_create(&f->g), 0);
    fix_join(f, "n1", 11, "r1", true);
    fix_join(f, "n2", 12, "r2", false);
    fix_join(f, "n3", 13, "r1", true);
    fix_join(f, "n4", 14, "r3", false);
}

static void
fix_fini(struct fix *f)
{
    brain_graph_destroy(f->g);
    brain_kv_destroy(f->kv);
    brain_cluster_destroy(&f->c);
}

static struct brain_graph_ctx
ctx_of(struct fix *f)
{
    struct brain_graph_ctx ctx = {&f->c,    &f->policy, f->kv,
                                  &f->repl, &f->place,  f->now};

    return ctx;
}

/* Every node's table, concatenated (canonical dumps, no header). */
static char *
dump_all(struct fix *f)
{
    char *all = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&all, &len);

    for (size_t i = 0; i < f->c.n; i++) {
        const struct mcos_table *t =
            brain_graph_table(f->g, f->c.nodes[i]->idx);
        char *d;

        fprintf(m, "== %s\n", f->c.nodes[i]->name);
        if (t) {
            ck_assert_int_eq(mcos_table_dump(t, false, &d), 0);
            fputs(d, m);
            free(d);
        }
    }
    fclose(m);
    return all;
}

static char *
dump_node(struct fix *f, const char *name)
{
    const struct mcos_table *t =
        brain_graph_table(f->g, brain_cluster_find(&f->c, name)->idx);
    char *d;

    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(mcos_table_dump(t, false, &d), 0);
    return d;
}

/* One incremental pass. */
static void
pass(struct fix *f)
{
    struct brain_graph_ctx ctx = ctx_of(f);
    char err[256];

    ck_assert_msg(brain_graph_run(f->g, &ctx, false, err, sizeof err) == 0,
                  "%s", err);
}

/* The check after every scenario: a full recompute changes nothing. */
static void
check_recompute(struct fix *f)
{
    struct brain_graph_ctx ctx = ctx_of(f);
    char *before = dump_all(f), *after, err[256];

    ck_assert_msg(brain_graph_run(f->g, &ctx, true, err, sizeof err) == 0,
                  "%s", err);
    ck_assert_msg(!brain_graph_tables_changed(f->g)->any,
                  "a full recompute changed tables");
    after = dump_all(f);
    ck_assert_str_eq(before, after);
    free(before);
    free(after);
}

/* Whether the last pass reported node `name`'s table changed. */
static bool
changed(struct fix *f, const char *name)
{
    return brain_nodeset_has(brain_graph_tables_changed(f->g),
                             brain_cluster_find(&f->c, name)->idx);
}

/* A report from `name` carrying kv_block events. */
static void
report(struct fix *f, const char *name, const Mcos__ObjectEvent *ev, size_t n)
{
    struct brain_node *node = brain_cluster_find(&f->c, name);
    Mcos__Report rep = MCOS__REPORT__INIT;
    Mcos__ObjectEvent **evp = calloc(n + 1, sizeof *evp);
    struct brain_agg_result res;
    char err[256];

    for (size_t i = 0; i < n; i++) {
        evp[i] = (Mcos__ObjectEvent *)&ev[i];
    }
    rep.node = (char *)name;
    rep.boot_id = node->boot_id.v;
    rep.seq = ++f->seq[node->idx];
    rep.applied_gen = node->applied_gen;
    rep.n_events = n;
    rep.events = evp;
    ck_assert_int_eq(
        brain_aggregate_report(&f->c, &rep, f->now, &res, err, sizeof err), 0);
    brain_kv_report(f->kv, node->idx, &rep, f->now);
    brain_graph_report(f->g, node->idx, &rep);
    free(evp);
}

static Mcos__ObjectEvent
kv_event(Mcos__EventKind kind, uint64_t id, int tier)
{
    Mcos__ObjectEvent e = MCOS__OBJECT_EVENT__INIT;

    e.kind = kind;
    e.object_id = id;
    e.class_ = MCOS__OBJECT_CLASS__CLASS_KV_BLOCK;
    e.tier = tier;
    e.ns = "m";
    e.size_bytes = 4096;
    return e;
}

/* ------------------------------------------------------------------------
 * The engine alone. */

static int
count_run(struct brain_engine_node *n, bool recompute, void *arg)
{
    int *runs = arg;

    (void)recompute;
    runs[n->name[0] - 'a']++;
    if (n->name[0] == 'a' && runs[3]) {
        brain_nodeset_add(&n->changed, 7);
    }
    return 0;
}

START_TEST(test_engine_order_and_skips)
{
    struct brain_engine e = {0};
    struct brain_engine_node a = {
        .name = "a", .run = count_run, .is_input = true};
    struct brain_engine_node b = {.name = "b", .run = count_run};
    struct brain_engine_node c = {.name = "c", .run = count_run};
    int runs[4] = {0};

    b.inputs[0] = &a;
    b.n_inputs = 1;
    c.inputs[0] = &b;
    c.n_inputs = 1;
    /* c before b: not in topological order. */
    ck_assert_int_eq(brain_engine_add(&e, &a), 0);
    ck_assert_int_eq(brain_engine_add(&e, &c), -EINVAL);
    ck_assert_int_eq(brain_engine_add(&e, &b), 0);
    ck_assert_int_eq(brain_engine_add(&e, &c), 0);
    ck_assert_ptr_eq(brain_engine_find(&e, "b"), &b);
    ck_assert_ptr_null(brain_engine_find(&e, "z"));

    /* Nothing changed: only the input runs. */
    ck_assert_int_eq(brain_engine_run(&e, false, runs), 0);
    ck_assert_int_eq(runs[0], 1);
    ck_assert_int_eq(runs[1], 0);
    /* The input changes: b runs; b reported nothing, so c does not. */
    runs[3] = 1;
    ck_assert_int_eq(brain_engine_run(&e, false, runs), 0);
    ck_assert_int_eq(runs[1], 1);
    ck_assert_int_eq(runs[2], 0);
    ck_assert(brain_nodeset_has(&a.changed, 7));
    ck_assert(!brain_nodeset_has(&a.changed, 8));
    /* A recompute runs everything. */
    runs[3] = 0;
    ck_assert_int_eq(brain_engine_run(&e, true, runs), 0);
    ck_assert_int_eq(runs[1], 2);
    ck_assert_int_eq(runs[2], 1);
    ck_assert_int_eq((int)c.recomputes, 1);
}
END_TEST

/* ------------------------------------------------------------------------
 * The graph. */

START_TEST(test_golden_and_recompute)
{
    struct fix f;
    char *d;

    fix_init(&f);
    pass(&f);
    for (int i = 1; i <= 4; i++) {
        char name[4];

        snprintf(name, sizeof name, "n%d", i);
        ck_assert(changed(&f, name));
    }
    d = dump_node(&f, "n1");
    check_golden("engine_n1_joined.txt", d);
    free(d);
    check_recompute(&f);

    /* Nothing new: nothing recompiles. */
    pass(&f);
    ck_assert(!brain_graph_tables_changed(f.g)->any);
    check_recompute(&f);
    fix_fini(&f);
}
END_TEST

START_TEST(test_only_changed_nodes_recompile)
{
    struct fix f;
    char err[256];
    const struct brain_engine_node *tables;
    uint64_t runs;

    fix_init(&f);
    pass(&f);
    ck_assert_uint_eq(brain_graph_tables_compiled(f.g), 4);
    /* An operator's task on n2: only n2's table is compiled again. */
    ck_assert_int_eq(brain_replica_add(&f.c, "n2", 0xabc, "n4",
                                       MCOS__TIER_KIND__TIER_DRAM, err,
                                       sizeof err),
                     0);
    pass(&f);
    ck_assert_uint_eq(brain_graph_tables_compiled(f.g), 5);
    ck_assert(changed(&f, "n2"));
    ck_assert(!changed(&f, "n1") && !changed(&f, "n3") && !changed(&f, "n4"));
    check_recompute(&f);

    /* n3 fails: every table loses a peer; n3 has none. */
    brain_cluster_find(&f.c, "n3")->live = BRAIN_FAILED;
    pass(&f);
    ck_assert(changed(&f, "n1") && changed(&f, "n3"));
    ck_assert_ptr_null(
        brain_graph_table(f.g, brain_cluster_find(&f.c, "n3")->idx));
    check_recompute(&f);

    /* The tables node did not even run for a pass with no input change. */
    tables = brain_engine_find(brain_graph_engine(f.g), "en_tables");
    runs = tables->runs;
    pass(&f);
    ck_assert_uint_eq(tables->runs, runs);
    fix_fini(&f);
}
END_TEST

START_TEST(test_placement)
{
    struct fix f;
    struct brain_node *n1;
    uint64_t compiled;
    char *d;

    fix_init(&f);
    pass(&f);
    /* n1's DRAM at 85%: 2/4 of the way from 75% to 90%, so admission rises
     * by half the pressure (0.250 + 0.500); NVMe, the end of its chain,
     * keeps the base. */
    n1 = brain_cluster_find(&f.c, "n1");
    n1->tiers[MCOS__TIER_KIND__TIER_DRAM].capacity = 1000;
    n1->tiers[MCOS__TIER_KIND__TIER_DRAM].used = 850;
    n1->tiers[MCOS__TIER_KIND__TIER_NVME].capacity = 1000;
    n1->tiers[MCOS__TIER_KIND__TIER_NVME].used = 990;
    pass(&f);
    ck_assert(changed(&f, "n1"));
    ck_assert(!changed(&f, "n2"));
    d = dump_node(&f, "n1");
    ck_assert_ptr_nonnull(
        strstr(d, "tier/dram high=90% low=75% admit>=0.750"));
    ck_assert_ptr_nonnull(
        strstr(d, "tier/nvme high=90% low=75% admit>=0.250"));
    ck_assert_ptr_nonnull(strstr(d, "tier/hbm high=90% low=75% admit>=0.250"));
    free(d);
    check_recompute(&f);
    /* A small change within the same quarter recompiles nothing. */
    n1->tiers[MCOS__TIER_KIND__TIER_DRAM].used = 860;
    compiled = brain_graph_tables_compiled(f.g);
    pass(&f);
    ck_assert(!brain_graph_tables_changed(f.g)->any);
    ck_assert_uint_eq(brain_graph_tables_compiled(f.g), compiled);
    check_recompute(&f);
    fix_fini(&f);
}
END_TEST

START_TEST(test_prefetch_learned)
{
    struct fix f;
    Mcos__ObjectEvent ev[9];
    char *d;

    fix_init(&f);
    pass(&f);
    /* Layer-ordered tiles on n3: 0xa1 -> 0xa2 -> 0xa3, three times, with
     * one stray 0xa1 -> 0xff. */
    for (int round = 0; round < 3; round++) {
        ev[0] = kv_event(MCOS__EVENT_KIND__EVENT_ACCESSED, 0xa1, 3);
        ev[1] = kv_event(MCOS__EVENT_KIND__EVENT_ACCESSED, 0xa2, 3);
        ev[2] = kv_event(MCOS__EVENT_KIND__EVENT_ACCESSED, 0xa3, 3);
        report(&f, "n3", ev, 3);
    }
    ev[0] = kv_event(MCOS__EVENT_KIND__EVENT_ACCESSED, 0xa1, 3);
    ev[1] = kv_event(MCOS__EVENT_KIND__EVENT_ACCESSED, 0xff, 3);
    report(&f, "n3", ev, 2);
    pass(&f);
    ck_assert(changed(&f, "n3"));
    ck_assert(!changed(&f, "n1"));
    d = dump_node(&f, "n3");
    check_golden("engine_n3_prefetch.txt", d);
    free(d);
    check_recompute(&f);

    /* 9000 new pairs overflow n3's 8192: counts are halved (3 -> 1,
     * below the support of 3) and the old rules fade. */
    {
        Mcos__ObjectEvent *flood = calloc(9001, sizeof *flood);

        for (int i = 0; i < 9001; i++) {
            flood[i] = kv_event(MCOS__EVENT_KIND__EVENT_ACCESSED,
                                0x100000 + (uint64_t)i, 3);
        }
        report(&f, "n3", flood, 9001);
        free(flood);
    }
    pass(&f);
    ck_assert(changed(&f, "n3"));
    d = dump_node(&f, "n3");
    ck_assert_ptr_null(strstr(d, "prefetch/"));
    free(d);
    check_recompute(&f);
    fix_fini(&f);
}
END_TEST

/* A request of `n` blocks (ids a, a+1, ...) routed to `name`. */
static void
route(struct fix *f, const char *name, const uint64_t *chain, size_t n,
      uint64_t output_len)
{
    brain_graph_route(f->g, brain_cluster_find(&f->c, name)->idx, chain, n,
                      output_len, f->now);
}

/*
 * Residency (en_residency).  Before any route nothing is published.  Then:
 *   n2: [11, 12] with an 8-token answer (class 0); 100 s later
 *       [11, 12, 13] (class 0), which continues it after 100 s (age
 *       bucket 7: 80-120 s).
 *   n1, n3, n4: [21, 22], [31, 32], [41, 42] with 600-token answers
 *       (class 6).
 * Class 0: 2 turns, 1 continued in bucket 7: (1 + 0.5) / (2 + 1) = 0.5
 * (32768) up to bucket 7, then 0.5 / (1 + 1) = 0.25 (16384).  Class 6: 3
 * turns, none continued: 0.5 / 4 = 0.125 (8192).  Other classes: 0.5.
 * The default class is 6 (most turns), so only n2 gets reuse rules: its
 * two turns' last blocks, 12 and 13, class 0.
 */
START_TEST(test_residency)
{
    static const uint64_t a[] = {0x11, 0x12, 0x13}, b[] = {0x21, 0x22},
                          c[] = {0x31, 0x32}, d4[] = {0x41, 0x42},
                          e[] = {0x51, 0x52};
    struct fix f;
    char *d;

    fix_init(&f);
    pass(&f);
    d = dump_node(&f, "n2");
    ck_assert_ptr_null(strstr(d, "residency"));
    free(d);

    route(&f, "n2", a, 2, 8);
    route(&f, "n1", b, 2, 600);
    route(&f, "n3", c, 2, 600);
    route(&f, "n4", d4, 2, 600);
    f.now += 100 * SEC;
    route(&f, "n2", a, 3, 8);
    pass(&f);
    ck_assert(changed(&f, "n1"));
    ck_assert(changed(&f, "n2"));
    d = dump_node(&f, "n2");
    check_golden("engine_n2_residency.txt", d);
    free(d);
    d = dump_node(&f, "n1");
    ck_assert_ptr_nonnull(strstr(d, "residency unit=10000ms default=c6 "));
    ck_assert_ptr_null(strstr(d, "reuse/"));
    free(d);
    check_recompute(&f);

    /* One more class-6 turn, on n2: class 6 moves from 0.125 to 0.1
     * (8192 -> 6554), less than the 2048 that republishes, so only n2's
     * table (a new turn, in the default class: no new rule) is compiled,
     * and it comes out the same. */
    {
        uint64_t before = brain_graph_tables_compiled(f.g);

        route(&f, "n2", e, 2, 600);
        pass(&f);
        ck_assert_uint_eq(brain_graph_tables_compiled(f.g), before + 1);
        ck_assert(!changed(&f, "n1"));
        ck_assert(!changed(&f, "n2"));
    }
    check_recompute(&f);
    fix_fini(&f);
}
END_TEST

struct seen {
    char text[1024];
};

static void
note(const struct brain_repl_info *i, void *arg)
{
    struct seen *s = arg;
    size_t len = strlen(s->text);

    snprintf(s->text + len, sizeof s->text - len,
             "%016" PRIx64 " %u->%u %s hits=%u other_rack=%d\n", i->object,
             i->source, i->target, i->state, i->hits, i->other_rack);
}

/* The replication ledger as text, one copy a line. */
static const char *
ledger(struct fix *f, struct seen *s)
{
    s->text[0] = '\0';
    brain_graph_replicas(f->g, note, s);
    return s->text;
}

static size_t
count_lines(const char *text)
{
    size_t n = 0;

    for (const char *p = text; (p = strchr(p, '\n')); p++) {
        n++;
    }
    return n;
}

START_TEST(test_replication)
{
    struct fix f;
    Mcos__ObjectEvent ev[16];
    struct seen s = {{0}};
    char *d;

    fix_init(&f);
    /* n1 holds a two-block prefix in DRAM; the first block is hot (eight
     * accesses), the second cold (one). */
    ev[0] = kv_event(MCOS__EVENT_KIND__EVENT_STORED, 0xb1, 3);
    ev[1] = kv_event(MCOS__EVENT_KIND__EVENT_STORED, 0xb2, 3);
    ev[1].parent_id = 0xb1;
    for (int i = 2; i < 10; i++) {
        ev[i] = kv_event(MCOS__EVENT_KIND__EVENT_ACCESSED, 0xb1, 3);
    }
    ev[10] = kv_event(MCOS__EVENT_KIND__EVENT_ACCESSED, 0xb2, 3);
    report(&f, "n1", ev, 11);
    pass(&f);
    /* copies = 2: one new copy of 0xb1 from n1, into another rack (n2 in
     * r2 or n4 in r3, never n3 in n1's rack r1). */
    ck_assert(changed(&f, "n1"));
    d = dump_node(&f, "n1");
    check_golden("engine_n1_replicating.txt", d);
    free(d);
    ck_assert_str_eq(ledger(&f, &s), "00000000000000b1 0->3 copying hits=0 "
                                     "other_rack=1\n");
    check_recompute(&f);

    /* The target stores it; the next round sees it held and the task
     * leaves n1's table. */
    ev[0] = kv_event(MCOS__EVENT_KIND__EVENT_STORED, 0xb1, 3);
    report(&f, "n4", ev, 1);
    pass(&f);
    ck_assert(!changed(&f, "n1")); /* not a round yet */
    f.now += 5 * SEC;
    pass(&f);
    ck_assert(changed(&f, "n1"));
    d = dump_node(&f, "n1");
    ck_assert_ptr_null(strstr(d, "replica/"));
    free(d);
    ck_assert_str_eq(ledger(&f, &s), "00000000000000b1 0->3 held hits=0 "
                                     "other_rack=1\n");
    check_recompute(&f);

    /* A window with no hit on n4: the copy is dropped there (n1 still
     * holds the block). */
    f.now += 61 * SEC;
    pass(&f);
    ck_assert(changed(&f, "n4"));
    d = dump_node(&f, "n4");
    check_golden("engine_n4_drop.txt", d);
    free(d);
    check_recompute(&f);

    /* n4 drops it: the drop rule goes away with the ledger entry. */
    ev[0] = kv_event(MCOS__EVENT_KIND__EVENT_REMOVED, 0xb1, 3);
    report(&f, "n4", ev, 1);
    f.now += 5 * SEC;
    pass(&f);
    d = dump_node(&f, "n4");
    ck_assert_ptr_null(strstr(d, "drop/"));
    free(d);
    /* Remembered as dropped: the still-hot block is not copied again. */
    ck_assert_str_eq(ledger(&f, &s), "00000000000000b1 0->3 dropped hits=0 "
                                     "other_rack=1\n");
    d = dump_node(&f, "n1");
    ck_assert_ptr_null(strstr(d, "replica/"));
    free(d);
    check_recompute(&f);
    /* Two minutes later the block has cooled below the bar: forgotten. */
    f.now += 120 * SEC;
    pass(&f);
    ck_assert_str_eq(ledger(&f, &s), "");
    check_recompute(&f);
    fix_fini(&f);
}
END_TEST

START_TEST(test_replica_with_hits_stays)
{
    struct fix f;
    Mcos__ObjectEvent ev[12];
    struct seen s = {{0}};

    fix_init(&f);
    f.repl.copies = 3;
    ev[0] = kv_event(MCOS__EVENT_KIND__EVENT_STORED, 0xc1, 3);
    for (int i = 1; i < 6; i++) {
        ev[i] = kv_event(MCOS__EVENT_KIND__EVENT_ACCESSED, 0xc1, 3);
    }
    report(&f, "n1", ev, 6);
    pass(&f);
    /* Two copies, one per other rack. */
    ck_assert_str_eq(ledger(&f, &s), "00000000000000c1 0->1 copying hits=0 "
                                     "other_rack=1\n"
                                     "00000000000000c1 0->3 copying hits=0 "
                                     "other_rack=1\n");
    ev[0] = kv_event(MCOS__EVENT_KIND__EVENT_STORED, 0xc1, 3);
    report(&f, "n2", ev, 1);
    report(&f, "n4", ev, 1);
    f.now += 5 * SEC;
    pass(&f);
    /* n2 serves from its copy; n4 does not. */
    ev[0] = kv_event(MCOS__EVENT_KIND__EVENT_ACCESSED, 0xc1, 3);
    report(&f, "n2", ev, 1);
    f.now += 60 * SEC;
    pass(&f);
    ck_assert_str_eq(ledger(&f, &s), "00000000000000c1 0->1 held hits=0 "
                                     "other_rack=1\n"
                                     "00000000000000c1 0->3 dropping hits=0 "
                                     "other_rack=1\n");
    check_recompute(&f);
    fix_fini(&f);
}
END_TEST

START_TEST(test_replication_budget)
{
    struct fix f;
    Mcos__ObjectEvent ev[40];
    struct seen s = {{0}};

    fix_init(&f);
    f.repl.budget = 2;
    /* Four hot blocks on n2, budget 2: the two hottest get a copy. */
    for (int b = 0; b < 4; b++) {
        ev[b] = kv_event(MCOS__EVENT_KIND__EVENT_STORED, 0xd0 + b, 3);
    }
    size_t n = 4;
    for (int b = 0; b < 4; b++) {
        for (int k = 0; k < 3 + b; k++) {
            ev[n++] = kv_event(MCOS__EVENT_KIND__EVENT_ACCESSED, 0xd0 + b, 3);
        }
    }
    report(&f, "n2", ev, n);
    pass(&f);
    ck_assert_uint_eq(count_lines(ledger(&f, &s)), 2);
    ck_assert_ptr_nonnull(strstr(s.text, "00000000000000d3"));
    ck_assert_ptr_nonnull(strstr(s.text, "00000000000000d2"));
    check_recompute(&f);
    fix_fini(&f);

    /* The byte budget binds first: blocks are 4096 bytes, 3 fit. */
    fix_init(&f);
    f.repl.budget = 8;
    f.repl.budget_bytes = 3 * 4096 + 100;
    report(&f, "n2", ev, n);
    pass(&f);
    ck_assert_uint_eq(count_lines(ledger(&f, &s)), 3);
    check_recompute(&f);
    fix_fini(&f);
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("engine");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_engine_order_and_skips);
    tcase_add_test(tc, test_golden_and_recompute);
    tcase_add_test(tc, test_residency);
    tcase_add_test(tc, test_only_changed_nodes_recompile);
    tcase_add_test(tc, test_placement);
    tcase_add_test(tc, test_prefetch_learned);
    tcase_add_test(tc, test_replication);
    tcase_add_test(tc, test_replica_with_hits_stays);
    tcase_add_test(tc, test_replication_budget);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
