/* Tests for common/table: build, validate, diff, apply, dump. */
#include <errno.h>

#include "residency_table.h"
#include "table.h"
#include "testutil.h"
#include "wire.h"

static char err[MCOS_TABLE_ERR_LEN];

/* Rule storage for building tables by hand. */
struct rb {
    Mcos__Rule rules[16];
    Mcos__Rule *ptrs[16];
    Mcos__TierRule tiers[16];
    Mcos__DemotionRule dems[16];
    Mcos__PeerRule peers[16];
    Mcos__ParamRule params[16];
    Mcos__DropRule drops[16];
    Mcos__PrefetchRule prefetches[16];
    Mcos__ResidencyRule residencies[16];
    Mcos__ReuseRule reuses[16];
    Mcos__Endpoint eps[16];
    Mcos__Endpoint *ep_ptrs[16];
    size_t n;
};

static Mcos__Rule *
next_rule(struct rb *b, const char *key)
{
    Mcos__Rule *r = &b->rules[b->n];

    mcos__rule__init(r);
    r->key = (char *)key;
    b->ptrs[b->n] = r;
    return r;
}

static void
add_tier(struct rb *b, const char *key, int tier, uint32_t hi, uint32_t lo)
{
    Mcos__Rule *r = next_rule(b, key);
    Mcos__TierRule *t = &b->tiers[b->n];

    mcos__tier_rule__init(t);
    t->tier = tier;
    t->high_watermark_pct = hi;
    t->low_watermark_pct = lo;
    t->admit_min_hotness_milli = 250;
    r->rule_case = MCOS__RULE__RULE_TIER;
    r->tier = t;
    b->n++;
}

static void
add_dem(struct rb *b, const char *key, int from, int to)
{
    Mcos__Rule *r = next_rule(b, key);
    Mcos__DemotionRule *d = &b->dems[b->n];

    mcos__demotion_rule__init(d);
    d->from = from;
    d->to = to;
    r->rule_case = MCOS__RULE__RULE_DEMOTION;
    r->demotion = d;
    b->n++;
}

static void
add_peer(struct rb *b, const char *key, const char *node, const char *addr,
         uint32_t port)
{
    Mcos__Rule *r = next_rule(b, key);
    Mcos__PeerRule *p = &b->peers[b->n];
    Mcos__Endpoint *ep = &b->eps[b->n];

    mcos__peer_rule__init(p);
    mcos__endpoint__init(ep);
    ep->transport = MCOS__TRANSPORT__TRANSPORT_TCP;
    ep->address = (char *)addr;
    ep->port = port;
    b->ep_ptrs[b->n] = ep;
    p->node = (char *)node;
    p->n_endpoints = 1;
    p->endpoints = &b->ep_ptrs[b->n];
    r->rule_case = MCOS__RULE__RULE_PEER;
    r->peer = p;
    b->n++;
}

static void
add_param(struct rb *b, const char *key, const char *name, uint64_t v)
{
    Mcos__Rule *r = next_rule(b, key);
    Mcos__ParamRule *p = &b->params[b->n];

    mcos__param_rule__init(p);
    p->name = (char *)name;
    p->value = v;
    r->rule_case = MCOS__RULE__RULE_PARAM;
    r->param = p;
    b->n++;
}

static void
add_drop(struct rb *b, const char *key, uint64_t object)
{
    Mcos__Rule *r = next_rule(b, key);
    Mcos__DropRule *d = &b->drops[b->n];

    mcos__drop_rule__init(d);
    d->object_id = object;
    r->rule_case = MCOS__RULE__RULE_DROP;
    r->drop = d;
    b->n++;
}

/* A prefetch rule over `objects` (n of them), into `tier`. */
static void
add_prefetch(struct rb *b, const char *key, uint64_t trigger,
             uint64_t *objects, size_t n, int tier, uint32_t deadline_ms)
{
    Mcos__Rule *r = next_rule(b, key);
    Mcos__PrefetchRule *p = &b->prefetches[b->n];

    mcos__prefetch_rule__init(p);
    p->trigger = trigger;
    p->objects = objects;
    p->n_objects = n;
    p->tier = tier;
    p->deadline_ms = deadline_ms;
    r->rule_case = MCOS__RULE__RULE_PREFETCH;
    r->prefetch = p;
    b->n++;
}

/* A residency rule over n scores. */
static void
add_residency(struct rb *b, const char *key, uint32_t unit_ms,
              uint32_t *scores, size_t n, uint32_t default_class)
{
    Mcos__Rule *r = next_rule(b, key);
    Mcos__ResidencyRule *p = &b->residencies[b->n];

    mcos__residency_rule__init(p);
    p->age_unit_ms = unit_ms;
    p->scores = scores;
    p->n_scores = n;
    p->default_class = default_class;
    r->rule_case = MCOS__RULE__RULE_RESIDENCY;
    r->residency = p;
    b->n++;
}

static void
add_reuse(struct rb *b, const char *key, uint64_t object, uint32_t cls)
{
    Mcos__Rule *r = next_rule(b, key);
    Mcos__ReuseRule *p = &b->reuses[b->n];

    mcos__reuse_rule__init(p);
    p->object_id = object;
    p->reuse_class = cls;
    r->rule_case = MCOS__RULE__RULE_REUSE;
    r->reuse = p;
    b->n++;
}

static struct mcos_table *
build(struct rb *b, const char *node, uint64_t gen)
{
    struct mcos_table *t = NULL;

    ck_assert_msg(mcos_table_build(node, gen,
                                   (const Mcos__Rule *const *)b->ptrs, b->n,
                                   &t, err, sizeof err) == 0,
                  "%s", err);
    return t;
}

/* The standard small table. */
static struct mcos_table *
sample(uint64_t gen, bool with_peer)
{
    struct rb b = {0};

    add_tier(&b, "tier/dram", MCOS__TIER_KIND__TIER_DRAM, 90, 75);
    add_tier(&b, "tier/hbm", MCOS__TIER_KIND__TIER_HBM, 95, 80);
    add_dem(&b, "demotion/hbm", MCOS__TIER_KIND__TIER_HBM,
            MCOS__TIER_KIND__TIER_DRAM);
    add_dem(&b, "demotion/dram", MCOS__TIER_KIND__TIER_DRAM, 0);
    if (with_peer) {
        add_peer(&b, "peer/n2", "n2", "10.0.0.2", 7653);
    }
    add_param(&b, "param/report_interval_ms", "report_interval_ms", 500);
    return build(&b, "n1", gen);
}

START_TEST(test_build_and_dump)
{
    struct mcos_table *t = sample(4, true);
    char *dump;

    ck_assert_str_eq(mcos_table_node(t), "n1");
    ck_assert_uint_eq(mcos_table_gen(t), 4);
    ck_assert_uint_eq(mcos_table_n_rules(t), 6);
    ck_assert_int_eq(mcos_table_dump(t, true, &dump), 0);
    ck_assert_str_eq(dump, "# table node=n1 gen=4 format=1 rules=6\n"
                           "demotion/dram dram -> (end)\n"
                           "demotion/hbm hbm -> dram\n"
                           "param/report_interval_ms 500\n"
                           "peer/n2 rack=- zone=- tcp:10.0.0.2:7653\n"
                           "tier/dram high=90% low=75% admit>=0.250\n"
                           "tier/hbm high=95% low=80% admit>=0.250\n");
    free(dump);
    /* Hot-path accessors. */
    ck_assert_uint_eq(
        mcos_table_tier_rule(t, MCOS__TIER_KIND__TIER_HBM)->high_watermark_pct,
        95);
    ck_assert_ptr_null(mcos_table_tier_rule(t, MCOS__TIER_KIND__TIER_NVME));
    ck_assert_ptr_null(mcos_table_tier_rule(t, 99));
    ck_assert_int_eq(mcos_table_demotion_next(t, MCOS__TIER_KIND__TIER_HBM),
                     MCOS__TIER_KIND__TIER_DRAM);
    ck_assert_int_eq(mcos_table_demotion_next(t, MCOS__TIER_KIND__TIER_DRAM),
                     0);
    ck_assert_uint_eq(mcos_table_param(t, "report_interval_ms", 1), 500);
    ck_assert_uint_eq(mcos_table_param(t, "absent", 77), 77);
    ck_assert_ptr_nonnull(mcos_table_find(t, "peer/n2"));
    ck_assert_ptr_null(mcos_table_find(t, "peer/n3"));
    mcos_table_free(t);

    /* A chain that ends in peers' memory. */
    {
        struct rb b = {0};

        add_dem(&b, "demotion/dram", MCOS__TIER_KIND__TIER_DRAM,
                MCOS__TIER_KIND__TIER_REMOTE);
        t = build(&b, "n1", 5);
        ck_assert_int_eq(
            mcos_table_demotion_next(t, MCOS__TIER_KIND__TIER_DRAM),
            MCOS__TIER_KIND__TIER_REMOTE);
        ck_assert_int_eq(mcos_table_dump(t, true, &dump), 0);
        ck_assert_str_eq(dump, "# table node=n1 gen=5 format=1 rules=1\n"
                               "demotion/dram dram -> remote\n");
        free(dump);
        mcos_table_free(t);
    }
    mcos_table_free(NULL);
}
END_TEST

/* A peer's regions: the HBM one is marked in the dump; a region over
 * another tier is refused. */
START_TEST(test_peer_regions)
{
    struct rb b;
    struct mcos_table *t = NULL;
    Mcos__Region g[2], *gs[2] = {&g[0], &g[1]};
    char *dump;

    memset(&b, 0, sizeof b);
    add_peer(&b, "peer/n2", "n2", "10.0.0.2", 7653);
    for (int i = 0; i < 2; i++) {
        mcos__region__init(&g[i]);
        g[i].transport = MCOS__TRANSPORT__TRANSPORT_VERBS;
        g[i].id = (uint32_t)i + 1;
        g[i].length = (uint64_t)(i + 1) << 20;
    }
    g[0].tier = MCOS__TIER_KIND__TIER_HBM;
    b.peers[0].n_regions = 2;
    b.peers[0].regions = gs;
    ck_assert_int_eq(mcos_table_build("n1", 1,
                                      (const Mcos__Rule *const *)b.ptrs, b.n,
                                      &t, err, sizeof err),
                     0);
    ck_assert_int_eq(mcos_table_dump(t, false, &dump), 0);
    ck_assert_str_eq(dump, "peer/n2 rack=- zone=- tcp:10.0.0.2:7653 "
                           "region=verbs:1:1048576:hbm "
                           "region=verbs:2:2097152\n");
    free(dump);
    mcos_table_free(t);
    g[1].tier = MCOS__TIER_KIND__TIER_NVME;
    ck_assert_int_eq(mcos_table_build("n1", 1,
                                      (const Mcos__Rule *const *)b.ptrs, b.n,
                                      &t, err, sizeof err),
                     -EINVAL);
    ck_assert_str_eq(err, "rule peer/n2: region 1 covers tier nvme; regions "
                          "cover dram or hbm");
}
END_TEST

/* Invalid rules: each is refused by build with this message. */
START_TEST(test_invalid_rules)
{
    struct rb b;
    struct mcos_table *t = NULL;
    uint64_t objs[] = {0xa2}, self[] = {0xa2, 0xa1};

#define BAD(SETUP, RC, MSG)                                                   \
    do {                                                                      \
        memset(&b, 0, sizeof b);                                              \
        SETUP;                                                                \
        ck_assert_err(mcos_table_build("n1", 1,                               \
                                       (const Mcos__Rule *const *)b.ptrs,     \
                                       b.n, &t, err, sizeof err),             \
                      RC, err, MSG);                                          \
    } while (0)

    BAD(add_tier(&b, "tier/dram", MCOS__TIER_KIND__TIER_DRAM, 50, 60), -EINVAL,
        "rule tier/dram: watermarks must satisfy low <= high <= 100 "
        "(low 60, high 50)");
    BAD(add_tier(&b, "tier/dram", MCOS__TIER_KIND__TIER_DRAM, 150, 60),
        -EINVAL, "watermarks must satisfy");
    BAD(add_tier(&b, "tier/x", 9, 90, 60), -EINVAL,
        "rule tier/x: unknown tier 9");
    BAD(add_tier(&b, "tier/hbm", MCOS__TIER_KIND__TIER_DRAM, 90, 60), -EINVAL,
        "rule tier/hbm: key must be tier/dram");
    BAD(add_dem(&b, "demotion/dram", MCOS__TIER_KIND__TIER_DRAM,
                MCOS__TIER_KIND__TIER_DRAM),
        -EINVAL, "rule demotion/dram: bad demotion 3 -> 3");
    /* A chain may end in peers' memory, but not start there. */
    BAD(add_dem(&b, "demotion/remote", MCOS__TIER_KIND__TIER_REMOTE, 0),
        -EINVAL, "rule demotion/remote: bad demotion 5 -> 0");
    BAD(add_dem(&b, "demotion/dram", MCOS__TIER_KIND__TIER_DRAM, 6), -EINVAL,
        "rule demotion/dram: bad demotion 3 -> 6");
    BAD(add_peer(&b, "peer/n2", "n2", "10.0.0.2", 0), -EINVAL,
        "rule peer/n2: bad endpoint 0");
    BAD(add_peer(&b, "peer/bad name", "bad name", "10.0.0.2", 1), -EINVAL,
        "rule key 'peer/bad name' is empty, too long or has spaces");
    BAD(add_param(&b, "param/x", "y", 1), -EINVAL,
        "rule param/x: key must be param/NAME");
    BAD(add_drop(&b, "drop/00000000000000ab", 0xac), -EINVAL,
        "rule drop/00000000000000ab: a drop needs an object and the key "
        "drop/<object as 16 hex digits>");
    BAD(add_drop(&b, "drop/0000000000000000", 0), -EINVAL,
        "a drop needs an object");
    BAD(add_prefetch(&b, "prefetch/00000000000000a1", 0xa2, objs, 1, 3, 50),
        -EINVAL,
        "rule prefetch/00000000000000a1: a prefetch needs a trigger and the "
        "key prefetch/<trigger as 16 hex digits>");
    BAD(add_prefetch(&b, "prefetch/00000000000000a1", 0xa1, objs, 0, 3, 50),
        -EINVAL,
        "rule prefetch/00000000000000a1: a prefetch needs 1 to 64 objects, "
        "a tier (hbm or dram) and a deadline");
    BAD(add_prefetch(&b, "prefetch/00000000000000a1", 0xa1, objs, 1, 4, 50),
        -EINVAL, "a tier (hbm or dram)");
    BAD(add_prefetch(&b, "prefetch/00000000000000a1", 0xa1, objs, 1, 3, 0),
        -EINVAL, "and a deadline");
    BAD(add_prefetch(&b, "prefetch/00000000000000a1", 0xa1, self, 2, 3, 50),
        -EINVAL,
        "rule prefetch/00000000000000a1: object 1 is 0 or the "
        "trigger");
    BAD(next_rule(&b, "empty/rule");
        b.n++, -EINVAL, "rule empty/rule: no rule body");
    BAD(add_tier(&b, "tier/dram", MCOS__TIER_KIND__TIER_DRAM, 90, 60);
        add_tier(&b, "tier/dram", MCOS__TIER_KIND__TIER_DRAM, 80, 60), -EEXIST,
        "duplicate rule key tier/dram");
#undef BAD
    memset(&b, 0, sizeof b);
    ck_assert_err(
        mcos_table_build("bad name", 1, NULL, 0, &t, err, sizeof err), -EINVAL,
        err, "bad node name 'bad name'");
}
END_TEST

/* Drop and prefetch rules dump canonically; a restamped table shares the
 * rules, carries the new generation and outlives the original. */
START_TEST(test_decided_rules_and_restamp)
{
    struct rb b = {0};
    uint64_t objs[] = {0xa2, 0xa3};
    struct mcos_table *t, *r;
    char *dump;

    add_drop(&b, "drop/00000000000000b1", 0xb1);
    add_prefetch(&b, "prefetch/00000000000000a1", 0xa1, objs, 2,
                 MCOS__TIER_KIND__TIER_DRAM, 50);
    t = build(&b, "n1", 0);
    ck_assert_int_eq(mcos_table_restamp(t, 9, &r), 0);
    mcos_table_free(t);
    ck_assert_uint_eq(mcos_table_gen(r), 9);
    ck_assert_int_eq(mcos_table_dump(r, true, &dump), 0);
    ck_assert_str_eq(dump, "# table node=n1 gen=9 format=1 rules=2\n"
                           "drop/00000000000000b1 drop\n"
                           "prefetch/00000000000000a1 -> 00000000000000a2 "
                           "00000000000000a3 into dram within 50ms\n");
    free(dump);
    mcos_table_free(r);
}
END_TEST

/* Residency and reuse rules: the canonical dump, the unpacked table, and
 * every refusal with its message. */
START_TEST(test_residency_rules)
{
    enum { N = MCOS_RESIDENCY_CLASSES * MCOS_RESIDENCY_AGES };
    uint32_t scores[N + 1];
    struct mcos_residency_table rt;
    struct mcos_table *t = NULL;
    unsigned def = 99;
    struct rb b = {0};
    char *dump;

    for (int i = 0; i < N; i++) {
        scores[i] = (uint32_t)i;
    }
    add_residency(&b, "residency", 10000, scores, N, 5);
    add_reuse(&b, "reuse/00000000000000c1", 0xc1, 1);
    t = build(&b, "n1", 3);
    ck_assert_int_eq(mcos_table_residency(t, &rt, &def), 0);
    ck_assert_uint_eq(rt.age_unit_ns, 10000000000ULL);
    ck_assert_uint_eq(def, 5);
    ck_assert_uint_eq(rt.score[0][0], 0);
    ck_assert_uint_eq(rt.score[1][0], 24);
    ck_assert_uint_eq(rt.score[7][23], 191);
    ck_assert_int_eq(mcos_table_dump(t, false, &dump), 0);
    ck_assert_ptr_nonnull(strstr(dump,
                                 "residency unit=10000ms default=c5 "
                                 "c0=0,1,2,3,4,5,6,7,8,9,10,11,12,13,"
                                 "14,15,16,17,18,19,20,21,22,23 c1=24,"));
    ck_assert_ptr_nonnull(strstr(dump, ",190,191\n"
                                       "reuse/00000000000000c1 class=c1\n"));
    free(dump);
    mcos_table_free(t);
    /* No residency rule: LRU. */
    memset(&b, 0, sizeof b);
    add_param(&b, "param/x", "x", 1);
    t = build(&b, "n1", 3);
    ck_assert_int_eq(mcos_table_residency(t, &rt, &def), -ENOENT);
    mcos_table_free(t);
    ck_assert_int_eq(mcos_table_residency(NULL, &rt, &def), -ENOENT);

#define BAD(SETUP, RC, MSG)                                                   \
    do {                                                                      \
        memset(&b, 0, sizeof b);                                              \
        SETUP;                                                                \
        ck_assert_err(mcos_table_build("n1", 1,                               \
                                       (const Mcos__Rule *const *)b.ptrs,     \
                                       b.n, &t, err, sizeof err),             \
                      RC, err, MSG);                                          \
        ck_assert_str_eq(err, MSG);                                           \
    } while (0)

    BAD(add_residency(&b, "residency/x", 10000, scores, N, 0), -EINVAL,
        "rule residency/x: key must be residency");
    BAD(add_residency(&b, "residency", 0, scores, N, 0), -EINVAL,
        "rule residency: age_unit_ms must be 1 to 86400000 (got 0)");
    BAD(add_residency(&b, "residency", 86400001, scores, N, 0), -EINVAL,
        "rule residency: age_unit_ms must be 1 to 86400000 (got 86400001)");
    BAD(add_residency(&b, "residency", 10000, scores, N - 1, 0), -EINVAL,
        "rule residency: needs 192 scores (8 classes x 24 ages), got 191");
    BAD(add_residency(&b, "residency", 10000, scores, N + 1, 0), -EINVAL,
        "rule residency: needs 192 scores (8 classes x 24 ages), got 193");
    BAD(scores[7] = 65536; add_residency(&b, "residency", 10000, scores, N, 0),
                           -EINVAL,
                           "rule residency: score 7 is 65536, above 65535");
    scores[7] = 7;
    BAD(add_residency(&b, "residency", 10000, scores, N, 8), -EINVAL,
        "rule residency: default_class must be below 8 (got 8)");
    BAD(add_reuse(&b, "reuse/00000000000000c2", 0xc1, 1), -EINVAL,
        "rule reuse/00000000000000c2: a reuse class needs an object and "
        "the key reuse/<object as 16 hex digits>");
    BAD(add_reuse(&b, "reuse/0000000000000000", 0, 1), -EINVAL,
        "rule reuse/0000000000000000: a reuse class needs an object and "
        "the key reuse/<object as 16 hex digits>");
    BAD(add_reuse(&b, "reuse/00000000000000c1", 0xc1, 8), -EINVAL,
        "rule reuse/00000000000000c1: reuse_class must be below 8 (got 8)");
#undef BAD

    /* At most MCOS_TABLE_MAX_REUSE reuse rules a table. */
    {
        size_t n = MCOS_TABLE_MAX_REUSE + 1;
        Mcos__Rule *rules = calloc(n, sizeof *rules);
        Mcos__Rule **ptrs = calloc(n, sizeof *ptrs);
        Mcos__ReuseRule *ru = calloc(n, sizeof *ru);
        char(*keys)[32] = calloc(n, sizeof *keys);

        for (size_t i = 0; i < n; i++) {
            mcos__rule__init(&rules[i]);
            mcos__reuse_rule__init(&ru[i]);
            ru[i].object_id = i + 1;
            snprintf(keys[i], sizeof keys[i], "reuse/%016zx", i + 1);
            rules[i].key = keys[i];
            rules[i].rule_case = MCOS__RULE__RULE_REUSE;
            rules[i].reuse = &ru[i];
            ptrs[i] = &rules[i];
        }
        ck_assert_int_eq(mcos_table_build("n1", 1,
                                          (const Mcos__Rule *const *)ptrs,
                                          n - 1, &t, err, sizeof err),
                         0);
        mcos_table_free(t);
        ck_assert_err(mcos_table_build("n1", 1,
                                       (const Mcos__Rule *const *)ptrs, n, &t,
                                       err, sizeof err),
                      -ENOSPC, err, "257 reuse rules, at most 256 a table");
        ck_assert_str_eq(err, "257 reuse rules, at most 256 a table");
        free(rules);
        free(ptrs);
        free(ru);
        free(keys);
    }
}
END_TEST

/* Diff then apply reproduces the target exactly, from any base. */
START_TEST(test_diff_apply)
{
    struct mcos_table *a = sample(4, true), *b = sample(5, false);
    struct mcos_table *out = NULL, *full = NULL;
    Mcos__TableUpdate *u;
    char *da, *db;

    ck_assert_int_eq(mcos_table_diff(a, b, &u), 0);
    ck_assert_uint_eq(u->base_gen, 4);
    ck_assert_uint_eq(u->gen, 5);
    ck_assert_uint_eq(u->n_upserts, 0);
    ck_assert_uint_eq(u->n_removed, 1);
    ck_assert_str_eq(u->removed[0], "peer/n2");
    ck_assert_int_eq(mcos_table_apply(a, u, "n1", &out, err, sizeof err), 0);
    ck_assert(mcos_table_same_rules(out, b));
    ck_assert_uint_eq(mcos_table_gen(out), 5);
    /* Applying it again is a no-op. */
    ck_assert_int_eq(mcos_table_apply(out, u, "n1", &full, err, sizeof err),
                     1);
    ck_assert_ptr_null(full);
    mcos_table_update_free(u);

    /* The reverse direction adds the peer back. */
    struct mcos_table *c = sample(6, true);

    ck_assert_int_eq(mcos_table_diff(out, c, &u), 0);
    ck_assert_uint_eq(u->n_upserts, 1);
    ck_assert_str_eq(u->upserts[0]->key, "peer/n2");
    mcos_table_free(full);
    ck_assert_int_eq(mcos_table_apply(out, u, "n1", &full, err, sizeof err),
                     0);
    ck_assert(mcos_table_same_rules(full, c));
    mcos_table_update_free(u);
    mcos_table_free(full);

    /* A full snapshot applies to anything older, or to nothing. */
    ck_assert_int_eq(mcos_table_diff(NULL, c, &u), 0);
    ck_assert_uint_eq(u->base_gen, 0);
    ck_assert_int_eq(mcos_table_apply(NULL, u, "n1", &full, err, sizeof err),
                     0);
    mcos_table_dump(full, true, &da);
    mcos_table_dump(c, true, &db);
    ck_assert_str_eq(da, db);
    free(da);
    free(db);
    mcos_table_free(full);
    ck_assert_int_eq(mcos_table_apply(a, u, "n1", &full, err, sizeof err), 0);
    ck_assert(mcos_table_same_rules(full, c));
    mcos_table_free(full);
    mcos_table_update_free(u);
    mcos_table_free(a);
    mcos_table_free(b);
    mcos_table_free(c);
    mcos_table_free(out);
}
END_TEST

START_TEST(test_apply_refusals)
{
    struct mcos_table *a = sample(4, true), *b = sample(5, false);
    struct mcos_table *out = NULL, *old = sample(2, true);
    Mcos__TableUpdate *u;

    ck_assert_int_eq(mcos_table_diff(a, b, &u), 0);
    ck_assert_err(mcos_table_apply(a, u, "n9", &out, err, sizeof err), -EINVAL,
                  err, "table is for node 'n1', not 'n9'");
    ck_assert_err(mcos_table_apply(old, u, "n1", &out, err, sizeof err),
                  -ESTALE, err,
                  "delta from generation 4 does not apply to generation 2");
    ck_assert_err(mcos_table_apply(NULL, u, "n1", &out, err, sizeof err),
                  -ESTALE, err,
                  "delta from generation 4 does not apply to generation 0");
    u->format_version = 2;
    ck_assert_err(mcos_table_apply(a, u, "n1", &out, err, sizeof err),
                  -EPROTONOSUPPORT, err,
                  "table format version 2 is not supported (this agent "
                  "applies 1)");
    u->format_version = MCOS_TABLE_FORMAT;
    u->removed[0] = "peer/n7";
    ck_assert_err(mcos_table_apply(a, u, "n1", &out, err, sizeof err), -ENOENT,
                  err,
                  "update removes rule 'peer/n7' which the table does not "
                  "have");
    u->removed[0] = "peer/n2";
    u->gen = 4;
    ck_assert_int_eq(mcos_table_apply(a, u, "n1", &out, err, sizeof err), 1);
    u->gen = 3;
    ck_assert_err(mcos_table_apply(a, u, "n1", &out, err, sizeof err), -ESTALE,
                  err, "generation 3 does not move forward");
    mcos_table_update_free(u);

    /* A full snapshot older than what we run is refused too. */
    ck_assert_int_eq(mcos_table_diff(NULL, old, &u), 0);
    ck_assert_err(mcos_table_apply(a, u, "n1", &out, err, sizeof err), -ESTALE,
                  err, "generation 2 does not move forward from 4");
    mcos_table_update_free(u);
    ck_assert_ptr_null(out);
    mcos_table_free(a);
    mcos_table_free(b);
    mcos_table_free(old);
}
END_TEST

START_TEST(test_apply_bad_rule)
{
    struct mcos_table *a = sample(4, true), *out = NULL;
    struct rb b = {0};
    Mcos__TableUpdate u = MCOS__TABLE_UPDATE__INIT;

    add_tier(&b, "tier/nvme", MCOS__TIER_KIND__TIER_NVME, 10, 20);
    u.format_version = MCOS_TABLE_FORMAT;
    u.gen = 5;
    u.base_gen = 4;
    u.node = "n1";
    u.n_upserts = 1;
    u.upserts = b.ptrs;
    ck_assert_err(mcos_table_apply(a, &u, "n1", &out, err, sizeof err),
                  -EINVAL, err, "rule tier/nvme: watermarks must satisfy");
    ck_assert_ptr_null(out);
    /* The current table is untouched. */
    ck_assert_uint_eq(mcos_table_n_rules(a), 6);
    mcos_table_free(a);
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("table");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_build_and_dump);
    tcase_add_test(tc, test_invalid_rules);
    tcase_add_test(tc, test_decided_rules_and_restamp);
    tcase_add_test(tc, test_residency_rules);
    tcase_add_test(tc, test_diff_apply);
    tcase_add_test(tc, test_apply_refusals);
    tcase_add_test(tc, test_peer_regions);
    tcase_add_test(tc, test_apply_bad_rule);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
