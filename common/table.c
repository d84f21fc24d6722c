#include "table.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "ids.h"
#include "residency_table.h"
#include "wire.h"

/* Tier kinds the tables index directly (SRAM..NVMe, REMOTE). */
#define N_TIER_SLOTS (MCOS__TIER_KIND__TIER_REMOTE + 1)

struct entry {
    Mcos__Rule *rule; /* unpacked copy, owned */
    uint8_t *packed;  /* packed copy, owned: compared byte for byte */
    size_t len;       /* packed length */
};

struct mcos_table {
    char node[MCOS_NODE_NAME_MAX + 1]; /* whose table */
    uint64_t gen;                      /* its generation */
    size_t n;                          /* number of rules */
    struct entry *e;                   /* rules sorted by key */
    unsigned *refs; /* tables sharing `e` (restamped copies), atomic */
    const Mcos__TierRule *tier[N_TIER_SLOTS]; /* tier rules by kind */
    int demote_next[N_TIER_SLOTS];            /* demotion chain by kind */
};

static bool
tier_valid(int t)
{
    return t >= MCOS__TIER_KIND__TIER_SRAM && t <= MCOS__TIER_KIND__TIER_NVME;
}

static bool
key_chars_ok(const char *k)
{
    size_t len = strlen(k);

    if (len == 0 || len > MCOS_TABLE_MAX_KEY) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (k[i] <= ' ' || k[i] > '~') {
            return false;
        }
    }
    return true;
}

static bool
key_is(const char *key, const char *prefix, const char *subject)
{
    size_t p = strlen(prefix);

    return !strncmp(key, prefix, p) && !strcmp(key + p, subject);
}

int
mcos_table_rule_check(const Mcos__Rule *r, char *err, size_t errlen)
{
    const char *key = r->key ? r->key : "";

    if (!key_chars_ok(key)) {
        mcos_seterr(err, errlen,
                    "rule key '%.40s' is empty, too long or has "
                    "spaces or control characters",
                    key);
        return -EINVAL;
    }
    switch (r->rule_case) {
    case MCOS__RULE__RULE_TIER: {
        const Mcos__TierRule *t = r->tier;

        if (!tier_valid(t->tier)) {
            mcos_seterr(err, errlen, "rule %s: unknown tier %d", key, t->tier);
            return -EINVAL;
        }
        if (!key_is(key, "tier/", mcos_tier_name(t->tier))) {
            mcos_seterr(err, errlen, "rule %s: key must be tier/%s", key,
                        mcos_tier_name(t->tier));
            return -EINVAL;
        }
        if (t->high_watermark_pct > 100 ||
            t->low_watermark_pct > t->high_watermark_pct) {
            mcos_seterr(err, errlen,
                        "rule %s: watermarks must satisfy low <= high <= 100 "
                        "(low %u, high %u)",
                        key, t->low_watermark_pct, t->high_watermark_pct);
            return -EINVAL;
        }
        return 0;
    }
    case MCOS__RULE__RULE_DEMOTION: {
        const Mcos__DemotionRule *d = r->demotion;

        if (!tier_valid(d->from) ||
            (d->to != 0 && d->to != MCOS__TIER_KIND__TIER_REMOTE &&
             (!tier_valid(d->to) || d->to == d->from))) {
            mcos_seterr(err, errlen, "rule %s: bad demotion %d -> %d", key,
                        d->from, d->to);
            return -EINVAL;
        }
        if (!key_is(key, "demotion/", mcos_tier_name(d->from))) {
            mcos_seterr(err, errlen, "rule %s: key must be demotion/%s", key,
                        mcos_tier_name(d->from));
            return -EINVAL;
        }
        return 0;
    }
    case MCOS__RULE__RULE_PEER: {
        const Mcos__PeerRule *p = r->peer;

        if (!mcos_node_name_valid(p->node) || !key_is(key, "peer/", p->node)) {
            mcos_seterr(err, errlen, "rule %s: bad peer node name", key);
            return -EINVAL;
        }
        for (size_t i = 0; i < p->n_endpoints; i++) {
            const Mcos__Endpoint *ep = p->endpoints[i];

            if ((ep->transport != MCOS__TRANSPORT__TRANSPORT_TCP &&
                 ep->transport != MCOS__TRANSPORT__TRANSPORT_VERBS &&
                 ep->transport != MCOS__TRANSPORT__TRANSPORT_CONTROL) ||
                !ep->address || !*ep->address || ep->port == 0 ||
                ep->port > 65535) {
                mcos_seterr(err, errlen, "rule %s: bad endpoint %zu", key, i);
                return -EINVAL;
            }
        }
        for (size_t i = 0; i < p->n_regions; i++) {
            const Mcos__Region *g = p->regions[i];

            if ((g->transport != MCOS__TRANSPORT__TRANSPORT_TCP &&
                 g->transport != MCOS__TRANSPORT__TRANSPORT_VERBS) ||
                g->id == 0 || g->length == 0) {
                mcos_seterr(err, errlen, "rule %s: bad region %zu", key, i);
                return -EINVAL;
            }
            if (!mcos_region_tier_ok(g->tier)) {
                mcos_seterr(err, errlen,
                            "rule %s: region %zu covers tier %s; regions "
                            "cover dram or hbm",
                            key, i, mcos_tier_name(g->tier));
                return -EINVAL;
            }
        }
        return 0;
    }
    case MCOS__RULE__RULE_REPLICA: {
        const Mcos__ReplicaRule *p = r->replica;
        char want[96];

        if (!mcos_node_name_valid(p->peer) || p->object_id == 0 ||
            (p->tier != MCOS__TIER_KIND__TIER_HBM &&
             p->tier != MCOS__TIER_KIND__TIER_DRAM &&
             p->tier != MCOS__TIER_KIND__TIER_NVME)) {
            mcos_seterr(err, errlen,
                        "rule %s: a replica needs an object, a peer and "
                        "a tier (hbm, dram or nvme)",
                        key);
            return -EINVAL;
        }
        snprintf(want, sizeof want, "replica/%016" PRIx64 "/%s", p->object_id,
                 p->peer);
        if (strcmp(key, want)) {
            mcos_seterr(err, errlen, "rule %s: key must be %s", key, want);
            return -EINVAL;
        }
        return 0;
    }
    case MCOS__RULE__RULE_DROP: {
        char want[48];

        snprintf(want, sizeof want, "drop/%016" PRIx64, r->drop->object_id);
        if (r->drop->object_id == 0 || strcmp(key, want)) {
            mcos_seterr(err, errlen,
                        "rule %s: a drop needs an object and the key "
                        "drop/<object as 16 hex digits>",
                        key);
            return -EINVAL;
        }
        return 0;
    }
    case MCOS__RULE__RULE_PREFETCH: {
        const Mcos__PrefetchRule *p = r->prefetch;
        char want[48];

        snprintf(want, sizeof want, "prefetch/%016" PRIx64, p->trigger);
        if (p->trigger == 0 || strcmp(key, want)) {
            mcos_seterr(err, errlen,
                        "rule %s: a prefetch needs a trigger and the key "
                        "prefetch/<trigger as 16 hex digits>",
                        key);
            return -EINVAL;
        }
        if (p->n_objects == 0 || p->n_objects > MCOS_TABLE_MAX_PREFETCH ||
            (p->tier != MCOS__TIER_KIND__TIER_HBM &&
             p->tier != MCOS__TIER_KIND__TIER_DRAM) ||
            p->deadline_ms == 0) {
            mcos_seterr(err, errlen,
                        "rule %s: a prefetch needs 1 to %d objects, a tier "
                        "(hbm or dram) and a deadline",
                        key, MCOS_TABLE_MAX_PREFETCH);
            return -EINVAL;
        }
        for (size_t i = 0; i < p->n_objects; i++) {
            if (p->objects[i] == 0 || p->objects[i] == p->trigger) {
                mcos_seterr(err, errlen,
                            "rule %s: object %zu is 0 or the trigger", key, i);
                return -EINVAL;
            }
        }
        return 0;
    }
    case MCOS__RULE__RULE_RESIDENCY: {
        const Mcos__ResidencyRule *p = r->residency;

        if (strcmp(key, "residency")) {
            mcos_seterr(err, errlen, "rule %s: key must be residency", key);
            return -EINVAL;
        }
        if (p->age_unit_ms == 0 || p->age_unit_ms > 86400000) {
            mcos_seterr(err, errlen,
                        "rule %s: age_unit_ms must be 1 to 86400000 (got %u)",
                        key, p->age_unit_ms);
            return -EINVAL;
        }
        if (p->n_scores != MCOS_RESIDENCY_CLASSES * MCOS_RESIDENCY_AGES) {
            mcos_seterr(err, errlen,
                        "rule %s: needs %d scores (%d classes x %d ages), "
                        "got %zu",
                        key, MCOS_RESIDENCY_CLASSES * MCOS_RESIDENCY_AGES,
                        MCOS_RESIDENCY_CLASSES, MCOS_RESIDENCY_AGES,
                        p->n_scores);
            return -EINVAL;
        }
        for (size_t i = 0; i < p->n_scores; i++) {
            if (p->scores[i] > 65535) {
                mcos_seterr(err, errlen,
                            "rule %s: score %zu is %u, above 65535", key, i,
                            p->scores[i]);
                return -EINVAL;
            }
        }
        if (p->default_class >= MCOS_RESIDENCY_CLASSES) {
            mcos_seterr(err, errlen,
                        "rule %s: default_class must be below %d (got %u)",
                        key, MCOS_RESIDENCY_CLASSES, p->default_class);
            return -EINVAL;
        }
        return 0;
    }
    case MCOS__RULE__RULE_REUSE: {
        char want[48];

        snprintf(want, sizeof want, "reuse/%016" PRIx64, r->reuse->object_id);
        if (r->reuse->object_id == 0 || strcmp(key, want)) {
            mcos_seterr(err, errlen,
                        "rule %s: a reuse class needs an object and the key "
                        "reuse/<object as 16 hex digits>",
                        key);
            return -EINVAL;
        }
        if (r->reuse->reuse_class >= MCOS_RESIDENCY_CLASSES) {
            mcos_seterr(err, errlen,
                        "rule %s: reuse_class must be below %d (got %u)", key,
                        MCOS_RESIDENCY_CLASSES, r->reuse->reuse_class);
            return -EINVAL;
        }
        return 0;
    }
    case MCOS__RULE__RULE_PARAM:
        if (!r->param->name || !key_is(key, "param/", r->param->name)) {
            mcos_seterr(err, errlen, "rule %s: key must be param/NAME", key);
            return -EINVAL;
        }
        return 0;
    default:
        mcos_seterr(err, errlen,
                    "rule %s: no rule body, or a kind this version "
                    "does not know",
                    key);
        return -EINVAL;
    }
}

static int
entry_cmp(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;

    return strcmp(x->rule->key, y->rule->key);
}

static void
entries_free(struct entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        mcos_wire_rule_free(e[i].rule);
        free(e[i].packed);
    }
    free(e);
}

static int
entry_init(struct entry *e, const Mcos__Rule *r)
{
    int rc = mcos_wire_rule_pack(r, &e->packed, &e->len);

    if (rc) {
        return rc;
    }
    rc = mcos_wire_rule_unpack(e->packed, e->len, &e->rule);
    if (rc) {
        free(e->packed);
        e->packed = NULL;
    }
    return rc;
}

/* Takes ownership of `e` (n entries): sorts, checks duplicates, indexes. */
static int
finish_table(const char *node, uint64_t gen, struct entry *e, size_t n,
             struct mcos_table **out, char *err, size_t errlen)
{
    struct mcos_table *t;
    size_t n_reuse = 0;

    qsort(e, n, sizeof *e, entry_cmp);
    for (size_t i = 1; i < n; i++) {
        if (!strcmp(e[i - 1].rule->key, e[i].rule->key)) {
            mcos_seterr(err, errlen, "duplicate rule key %s", e[i].rule->key);
            entries_free(e, n);
            return -EEXIST;
        }
    }
    for (size_t i = 0; i < n; i++) {
        n_reuse += e[i].rule->rule_case == MCOS__RULE__RULE_REUSE;
    }
    if (n_reuse > MCOS_TABLE_MAX_REUSE) {
        mcos_seterr(err, errlen, "%zu reuse rules, at most %d a table",
                    n_reuse, MCOS_TABLE_MAX_REUSE);
        entries_free(e, n);
        return -ENOSPC;
    }
    t = calloc(1, sizeof *t);
    if (t) {
        t->refs = malloc(sizeof *t->refs);
    }
    if (!t || !t->refs) {
        free(t);
        entries_free(e, n);
        return -ENOMEM;
    }
    *t->refs = 1;
    snprintf(t->node, sizeof t->node, "%s", node);
    t->gen = gen;
    t->n = n;
    t->e = e;
    for (size_t i = 0; i < n; i++) {
        const Mcos__Rule *r = e[i].rule;

        if (r->rule_case == MCOS__RULE__RULE_TIER) {
            t->tier[r->tier->tier] = r->tier;
        } else if (r->rule_case == MCOS__RULE__RULE_DEMOTION) {
            t->demote_next[r->demotion->from] = r->demotion->to;
        }
    }
    *out = t;
    return 0;
}

int
mcos_table_build(const char *node, uint64_t gen,
                 const Mcos__Rule *const *rules, size_t n,
                 struct mcos_table **out, char *err, size_t errlen)
{
    struct entry *e;
    int r;

    if (!mcos_node_name_valid(node)) {
        mcos_seterr(err, errlen, "bad node name '%s'", node ? node : "");
        return -EINVAL;
    }
    if (n > MCOS_TABLE_MAX_RULES) {
        mcos_seterr(err, errlen, "%zu rules exceed the limit of %d", n,
                    MCOS_TABLE_MAX_RULES);
        return -ENOSPC;
    }
    e = calloc(n ? n : 1, sizeof *e);
    if (!e) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        r = mcos_table_rule_check(rules[i], err, errlen);
        if (r == 0) {
            r = entry_init(&e[i], rules[i]);
        }
        if (r) {
            entries_free(e, i);
            return r;
        }
    }
    return finish_table(node, gen, e, n, out, err, errlen);
}

void
mcos_table_free(struct mcos_table *t)
{
    if (!t) {
        return;
    }
    if (__atomic_sub_fetch(t->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        entries_free(t->e, t->n);
        free(t->refs);
    }
    free(t);
}

int
mcos_table_restamp(const struct mcos_table *t, uint64_t gen,
                   struct mcos_table **out)
{
    struct mcos_table *c = malloc(sizeof *c);

    if (!c) {
        return -ENOMEM;
    }
    *c = *t;
    c->gen = gen;
    __atomic_add_fetch(c->refs, 1, __ATOMIC_ACQ_REL);
    *out = c;
    return 0;
}

const char *
mcos_table_node(const struct mcos_table *t)
{
    return t->node;
}

uint64_t
mcos_table_gen(const struct mcos_table *t)
{
    return t->gen;
}

size_t
mcos_table_n_rules(const struct mcos_table *t)
{
    return t->n;
}

const Mcos__Rule *
mcos_table_rule(const struct mcos_table *t, size_t i)
{
    return i < t->n ? t->e[i].rule : NULL;
}

static const struct entry *
find_entry(const struct mcos_table *t, const char *key)
{
    size_t lo = 0, hi = t ? t->n : 0;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(key, t->e[mid].rule->key);

        if (c == 0) {
            return &t->e[mid];
        }
        if (c < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return NULL;
}

const Mcos__Rule *
mcos_table_find(const struct mcos_table *t, const char *key)
{
    const struct entry *e = find_entry(t, key);

    return e ? e->rule : NULL;
}

static bool
entry_equal(const struct entry *a, const struct entry *b)
{
    return a->len == b->len && !memcmp(a->packed, b->packed, a->len);
}

bool
mcos_table_same_rules(const struct mcos_table *a, const struct mcos_table *b)
{
    if (a->n != b->n) {
        return false;
    }
    for (size_t i = 0; i < a->n; i++) {
        if (!entry_equal(&a->e[i], &b->e[i])) {
            return false;
        }
    }
    return true;
}

int
mcos_table_diff(const struct mcos_table *base, const struct mcos_table *to,
                Mcos__TableUpdate **out)
{
    Mcos__TableUpdate *u = calloc(1, sizeof *u);
    size_t n_base = base ? base->n : 0;
    size_t i = 0, j = 0;

    if (!u) {
        return -ENOMEM;
    }
    mcos__table_update__init(u);
    u->format_version = MCOS_TABLE_FORMAT;
    u->gen = to->gen;
    u->base_gen = base ? base->gen : 0;
    u->node = (char *)to->node;
    u->upserts = calloc(to->n ? to->n : 1, sizeof *u->upserts);
    u->removed = calloc(n_base ? n_base : 1, sizeof *u->removed);
    if (!u->upserts || !u->removed) {
        mcos_table_update_free(u);
        return -ENOMEM;
    }
    /* Both sides are sorted by key: one merge pass. */
    while (i < n_base || j < to->n) {
        int c;

        if (i == n_base) {
            c = 1;
        } else if (j == to->n) {
            c = -1;
        } else {
            c = strcmp(base->e[i].rule->key, to->e[j].rule->key);
        }
        if (c < 0) {
            u->removed[u->n_removed++] = base->e[i++].rule->key;
        } else if (c > 0) {
            u->upserts[u->n_upserts++] = to->e[j++].rule;
        } else {
            if (!entry_equal(&base->e[i], &to->e[j])) {
                u->upserts[u->n_upserts++] = to->e[j].rule;
            }
            i++;
            j++;
        }
    }
    *out = u;
    return 0;
}

void
mcos_table_update_free(Mcos__TableUpdate *u)
{
    if (u) {
        free(u->upserts);
        free(u->removed);
        free(u);
    }
}

static int
str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int
mcos_table_apply(const struct mcos_table *cur, const Mcos__TableUpdate *u,
                 const char *node, struct mcos_table **out, char *err,
                 size_t errlen)
{
    uint64_t cur_gen = cur ? cur->gen : 0;
    size_t n_cur = (cur && u->base_gen) ? cur->n : 0;
    size_t cap, n = 0, n_drop = 0;
    const char **drop;
    struct entry *e;
    int r;

    if (u->format_version != MCOS_TABLE_FORMAT) {
        mcos_seterr(err, errlen,
                    "table format version %u is not supported "
                    "(this agent applies %u)",
                    u->format_version, MCOS_TABLE_FORMAT);
        return -EPROTONOSUPPORT;
    }
    if (!u->node || strcmp(u->node, node)) {
        mcos_seterr(err, errlen, "table is for node '%s', not '%s'",
                    u->node ? u->node : "", node);
        return -EINVAL;
    }
    if (cur && u->gen == cur_gen) {
        return 1; /* already applied: idempotent */
    }
    if (u->base_gen != 0 && u->base_gen != cur_gen) {
        mcos_seterr(err, errlen,
                    "delta from generation %" PRIu64
                    " does not apply to generation %" PRIu64,
                    u->base_gen, cur_gen);
        return -ESTALE;
    }
    if (u->gen <= u->base_gen || (u->base_gen == 0 && u->gen < cur_gen)) {
        mcos_seterr(err, errlen,
                    "generation %" PRIu64 " does not move forward "
                    "from %" PRIu64,
                    u->gen, cur_gen);
        return -ESTALE;
    }
    if (u->n_upserts > MCOS_TABLE_MAX_RULES ||
        n_cur + u->n_upserts > MCOS_TABLE_MAX_RULES) {
        mcos_seterr(err, errlen, "update would exceed %d rules",
                    MCOS_TABLE_MAX_RULES);
        return -ENOSPC;
    }
    for (size_t i = 0; i < u->n_upserts; i++) {
        r = mcos_table_rule_check(u->upserts[i], err, errlen);
        if (r) {
            return r;
        }
    }
    for (size_t i = 0; i < u->n_removed; i++) {
        if (!u->base_gen || !find_entry(cur, u->removed[i])) {
            mcos_seterr(err, errlen,
                        "update removes rule '%.60s' which the "
                        "table does not have",
                        u->removed[i]);
            return -ENOENT;
        }
    }

    cap = n_cur + u->n_upserts;
    e = calloc(cap ? cap : 1, sizeof *e);
    drop = calloc(u->n_removed + u->n_upserts + 1, sizeof *drop);
    if (!e || !drop) {
        free(e);
        free(drop);
        return -ENOMEM;
    }
    /* Keys replaced or removed, sorted for lookups: O(n log n) overall. */
    for (size_t k = 0; k < u->n_removed; k++) {
        drop[n_drop++] = u->removed[k];
    }
    for (size_t k = 0; k < u->n_upserts; k++) {
        drop[n_drop++] = u->upserts[k]->key;
    }
    qsort(drop, n_drop, sizeof *drop, str_cmp);
    for (size_t i = 0; i < n_cur; i++) {
        const char *key = cur->e[i].rule->key;

        if (bsearch(&key, drop, n_drop, sizeof *drop, str_cmp)) {
            continue;
        }
        r = entry_init(&e[n], cur->e[i].rule);
        if (r) {
            free(drop);
            entries_free(e, n);
            return r;
        }
        n++;
    }
    free(drop);
    for (size_t k = 0; k < u->n_upserts; k++) {
        r = entry_init(&e[n], u->upserts[k]);
        if (r) {
            entries_free(e, n);
            return r;
        }
        n++;
    }
    return finish_table(node, u->gen, e, n, out, err, errlen);
}

static void
dump_rule(FILE *f, const Mcos__Rule *r)
{
    switch (r->rule_case) {
    case MCOS__RULE__RULE_TIER:
        fprintf(f, "%s high=%u%% low=%u%% admit>=%u.%03u\n", r->key,
                r->tier->high_watermark_pct, r->tier->low_watermark_pct,
                r->tier->admit_min_hotness_milli / 1000,
                r->tier->admit_min_hotness_milli % 1000);
        break;
    case MCOS__RULE__RULE_DEMOTION:
        fprintf(f, "%s %s -> %s\n", r->key, mcos_tier_name(r->demotion->from),
                r->demotion->to ? mcos_tier_name(r->demotion->to) : "(end)");
        break;
    case MCOS__RULE__RULE_PEER: {
        const Mcos__PeerRule *p = r->peer;

        fprintf(f, "%s rack=%s zone=%s", r->key,
                p->labels && *p->labels->rack ? p->labels->rack : "-",
                p->labels && *p->labels->zone ? p->labels->zone : "-");
        for (size_t i = 0; i < p->n_endpoints; i++) {
            fprintf(f, " %s:%s:%u",
                    mcos_transport_name(p->endpoints[i]->transport),
                    p->endpoints[i]->address, p->endpoints[i]->port);
        }
        for (size_t i = 0; i < p->n_regions; i++) {
            fprintf(f, " region=%s:%u:%" PRIu64 "%s",
                    mcos_transport_name(p->regions[i]->transport),
                    p->regions[i]->id, p->regions[i]->length,
                    p->regions[i]->tier == MCOS__TIER_KIND__TIER_HBM ? ":hbm"
                                                                     : "");
        }
        fputc('\n', f);
        break;
    }
    case MCOS__RULE__RULE_PARAM:
        fprintf(f, "%s %" PRIu64 "\n", r->key, r->param->value);
        break;
    case MCOS__RULE__RULE_REPLICA:
        fprintf(f, "%s -> %s:%s\n", r->key, r->replica->peer,
                mcos_tier_name(r->replica->tier));
        break;
    case MCOS__RULE__RULE_DROP:
        fprintf(f, "%s drop\n", r->key);
        break;
    case MCOS__RULE__RULE_RESIDENCY: {
        const Mcos__ResidencyRule *p = r->residency;

        fprintf(f, "%s unit=%ums default=c%u", r->key, p->age_unit_ms,
                p->default_class);
        for (size_t i = 0; i < p->n_scores; i++) {
            if (i % MCOS_RESIDENCY_AGES == 0) {
                fprintf(f, " c%zu=", i / MCOS_RESIDENCY_AGES);
            } else {
                fputc(',', f);
            }
            fprintf(f, "%u", p->scores[i]);
        }
        fputc('\n', f);
        break;
    }
    case MCOS__RULE__RULE_REUSE:
        fprintf(f, "%s class=c%u\n", r->key, r->reuse->reuse_class);
        break;
    case MCOS__RULE__RULE_PREFETCH:
        fprintf(f, "%s ->", r->key);
        for (size_t i = 0; i < r->prefetch->n_objects; i++) {
            fprintf(f, " %016" PRIx64, r->prefetch->objects[i]);
        }
        fprintf(f, " into %s within %ums\n", mcos_tier_name(r->prefetch->tier),
                r->prefetch->deadline_ms);
        break;
    default:
        fprintf(f, "%s ?\n", r->key);
        break;
    }
}

int
mcos_table_dump(const struct mcos_table *t, bool header, char **out)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    if (!f) {
        return -errno;
    }
    if (header) {
        fprintf(f, "# table node=%s gen=%" PRIu64 " format=%d rules=%zu\n",
                t->node, t->gen, MCOS_TABLE_FORMAT, t->n);
    }
    for (size_t i = 0; i < t->n; i++) {
        dump_rule(f, t->e[i].rule);
    }
    if (fclose(f)) {
        free(buf);
        return -ENOMEM;
    }
    *out = buf;
    return 0;
}

const Mcos__TierRule *
mcos_table_tier_rule(const struct mcos_table *t, int tier)
{
    if (!t || tier < 0 || tier >= N_TIER_SLOTS) {
        return NULL;
    }
    return t->tier[tier];
}

int
mcos_table_demotion_next(const struct mcos_table *t, int tier)
{
    if (!t || tier < 0 || tier >= N_TIER_SLOTS) {
        return 0;
    }
    return t->demote_next[tier];
}

uint64_t
mcos_table_param(const struct mcos_table *t, const char *name, uint64_t def)
{
    char key[MCOS_TABLE_MAX_KEY + 8];
    const struct entry *e;

    snprintf(key, sizeof key, "param/%s", name);
    e = find_entry(t, key);
    return e ? e->rule->param->value : def;
}

int
mcos_table_residency(const struct mcos_table *t,
                     struct mcos_residency_table *out, unsigned *default_class)
{
    const struct entry *e = t ? find_entry(t, "residency") : NULL;
    const Mcos__ResidencyRule *p;

    if (!e) {
        return -ENOENT;
    }
    p = e->rule->residency;
    out->age_unit_ns = (uint64_t)p->age_unit_ms * 1000000;
    for (size_t i = 0; i < p->n_scores; i++) {
        out->score[i / MCOS_RESIDENCY_AGES][i % MCOS_RESIDENCY_AGES] =
            (uint16_t)p->scores[i];
    }
    *default_class = p->default_class;
    return 0;
}
