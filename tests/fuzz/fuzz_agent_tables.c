/*
 * Fuzz target: the policy table updates a brain pushes, on arbitrary
 * bytes.  The input is up to 8 messages separated by SEP; each is decoded
 * as the agent decodes a brain's answer (mcos_wire_decode, a Reply that
 * carries a TableUpdate) or, when the bytes are no envelope, unpacked
 * straight as a TableUpdate (structure-aware: the fuzzer reaches rule
 * parsing without the envelope).  Every update goes to agent_tables_apply
 * on the agent_tables of node "t1" that a real agent_store reads, so a
 * full table then deltas exercise the generation and base_gen checks and
 * rule validation.
 *
 * Each input starts from an empty table at a new generation G (a fresh
 * agent_tables per input would cost an RCU barrier, 10 ms, each); the
 * input's generations are counted from G (gen + G, base_gen + G unless 0,
 * unless that overflows), so an input means the same whatever ran before.
 *
 * After each update the table in force is read the way the agent reads it
 * (agent.c: param/report_interval_ms; store.c: tier rules, the demotion
 * chain by key, the residency rule, rules by key; a whole-table walk) and
 * dumped.  Oracles: an applied update moves the generation to its own; a
 * refused one changes nothing; the brain's diff from the previous table
 * to the new one, applied to the previous one, gives the same rules and
 * the same dump.  An applied update then runs what it starts in the agent
 * (agent_store_replicate: drop/ rules, replica tasks).
 *
 * The store -- DRAM arena, emulated HBM, NVMe in a temp dir on tmpfs, the
 * executor thread -- holds objects 1..8 (a chain 1 <- 2 <- 3); at the end
 * of an input every object is read (prefetch/ rules fire) and the store
 * ticks (watermark demotion by the table's tier, demotion and residency
 * rules).  Everything is recreated every RECREATE inputs.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "clock.h"
#include "log.h"
#include "residency_table.h"
#include "store.h"
#include "table.h"
#include "tables.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NODE     "t1"
#define SEP      "\n--MCOS--\n"
#define MAX_MSGS 8
#define RECREATE 256
#define N_OBJS   8
#define KiB      1024ULL

struct rig {
    bool up;
    uv_loop_t loop;
    struct mcos_fake_clock clock;
    struct agent_tables *tables; /* the store's */
    struct agent_store *s;
    char dir[64];
    char shm[64];
    unsigned inputs; /* since created */
};

static struct rig R;

static void
req_done(struct agent_store_req *req, void *arg)
{
    (void)req;
    *(bool *)arg = true;
}

/* Submits and runs the loop until the request is done. */
static void
submit(struct agent_store_req *req)
{
    bool done = false;

    req->done = req_done;
    req->arg = &done;
    agent_store_submit(R.s, req);
    for (int i = 0; i < 20000 && !done; i++) {
        uv_run(&R.loop, UV_RUN_NOWAIT);
        if (!done) {
            usleep(20);
        }
    }
    if (!done) {
        fprintf(stderr, "store request op %d never completed\n", req->op);
        abort();
    }
}

static int
is_moving(struct agent_object *o, void *arg)
{
    (void)arg;
    return o->state == AGENT_OBJ_MOVING;
}

static void
settle(void)
{
    for (int i = 0; i < 20000; i++) {
        uv_run(&R.loop, UV_RUN_NOWAIT);
        if (!agent_store_foreach(R.s, is_moving, NULL)) {
            return;
        }
        usleep(20);
    }
    fprintf(stderr, "moves never finished\n");
    abort();
}

/* Objects 1..N_OBJS, 48 KiB each, a chain 1 <- 2 <- 3 and the rest alone;
 * those a drop/ rule removed come back. */
static void
refill(void)
{
    for (uint64_t id = 1; id <= N_OBJS; id++) {
        struct agent_store_req req;

        if (agent_store_find(R.s, id)) {
            continue;
        }
        memset(&req, 0, sizeof req);
        req.op = MCOS__API_OP__API_PLACE;
        req.id = id;
        req.size = 48 * KiB;
        req.cls = MCOS__OBJECT_CLASS__CLASS_KV_BLOCK;
        req.parent = id > 1 && id <= 3 ? id - 1 : 0;
        snprintf(req.ns, sizeof req.ns, "m");
        req.tier = MCOS__TIER_KIND__TIER_DRAM;
        submit(&req);
        if (req.status) {
            continue;
        }
        memset(&req, 0, sizeof req);
        req.op = MCOS__API_OP__API_COMMIT;
        req.id = id;
        submit(&req);
    }
    settle();
}

static void
rig_down(void)
{
    if (!R.up) {
        return;
    }
    agent_store_close(R.s);
    for (int i = 0; i < 100; i++) {
        uv_run(&R.loop, UV_RUN_NOWAIT);
    }
    agent_tables_destroy(R.tables);
    uv_loop_close(&R.loop);
    shm_unlink(R.shm);
    {
        char cmd[128];

        snprintf(cmd, sizeof cmd, "rm -rf '%s'", R.dir);
        if (system(cmd)) {
            /* best effort */
        }
    }
    R.up = false;
}

static void
rig_up(void)
{
    struct agent_store_config c = {0};
    char nvme[96], err[256];

    memset(&R, 0, sizeof R);
    if (uv_loop_init(&R.loop)) {
        abort();
    }
    mcos_fake_clock_init(&R.clock, 1000000000ULL);
    snprintf(R.dir, sizeof R.dir, "/dev/shm/fuzz_agent_tables.XXXXXX");
    if (!mkdtemp(R.dir)) {
        abort();
    }
    snprintf(nvme, sizeof nvme, "%s/nvme", R.dir);
    mkdir(nvme, 0755);
    snprintf(R.shm, sizeof R.shm, "/mcos-fuzz-tables-%d", getpid());
    c.node = NODE;
    c.dram_bytes = 256 * KiB;
    c.shm_name = R.shm;
    c.shm_gid = -1;
    c.hbm_bytes = 128 * KiB;
    c.hbm_emulated = true;
    c.nvme_dir = nvme;
    c.nvme_bytes = 1024 * KiB;
    if (agent_tables_create(NODE, &R.tables) ||
        agent_store_create(&R.loop, &R.clock.base, &c, R.tables, NULL, &R.s,
                           err, sizeof err)) {
        fprintf(stderr, "cannot set up the store: %s\n", err);
        abort();
    }
    R.up = true;
}

/* Reads `t` as the agent and the store do; returns its dump. */
static char *
read_table(const struct mcos_table *t)
{
    struct mcos_residency_table rt;
    unsigned def;
    char *dump = NULL;
    char key[64];

    if (!t) {
        return NULL;
    }
    if (strcmp(mcos_table_node(t), NODE)) {
        abort();
    }
    (void)mcos_table_param(t, "report_interval_ms", 0);
    for (int k = -1; k <= MCOS__TIER_KIND__TIER_REMOTE + 1; k++) {
        const Mcos__TierRule *tr = mcos_table_tier_rule(t, k);
        const Mcos__Rule *r;
        int next = mcos_table_demotion_next(t, k);

        if (tr && ((int)tr->tier != k || tr->high_watermark_pct > 100 ||
                   tr->low_watermark_pct > tr->high_watermark_pct)) {
            abort();
        }
        if (k < MCOS__TIER_KIND__TIER_SRAM || k > MCOS__TIER_KIND__TIER_NVME) {
            continue;
        }
        snprintf(key, sizeof key, "demotion/%s", mcos_tier_name(k));
        r = mcos_table_find(t, key);
        if ((r && (r->rule_case != MCOS__RULE__RULE_DEMOTION ||
                   (int)r->demotion->to != next)) ||
            (!r && next)) {
            abort();
        }
    }
    if (mcos_table_residency(t, &rt, &def) == 0 &&
        def >= MCOS_RESIDENCY_CLASSES) {
        abort();
    }
    for (size_t i = 0; i < mcos_table_n_rules(t); i++) {
        const Mcos__Rule *r = mcos_table_rule(t, i);

        if (!r || mcos_table_find(t, r->key) != r ||
            (i > 0 && strcmp(mcos_table_rule(t, i - 1)->key, r->key) >= 0)) {
            abort();
        }
        switch (r->rule_case) {
        case MCOS__RULE__RULE_PREFETCH:
            snprintf(key, sizeof key, "prefetch/%016" PRIx64,
                     r->prefetch->trigger);
            if (mcos_table_find(t, key) != r ||
                r->prefetch->n_objects > MCOS_TABLE_MAX_PREFETCH) {
                abort();
            }
            break;
        case MCOS__RULE__RULE_DROP:
        case MCOS__RULE__RULE_REUSE:
        case MCOS__RULE__RULE_REPLICA:
        case MCOS__RULE__RULE_PEER:
        case MCOS__RULE__RULE_PARAM:
        case MCOS__RULE__RULE_TIER:
        case MCOS__RULE__RULE_DEMOTION:
        case MCOS__RULE__RULE_RESIDENCY:
            break;
        default:
            abort(); /* validation lets no other kind in */
        }
    }
    if (mcos_table_rule(t, mcos_table_n_rules(t))) {
        abort();
    }
    if (mcos_table_dump(t, true, &dump)) {
        return NULL;
    }
    return dump;
}

/* The brain's diff from `prev` to `cur`, applied to `prev`, must give
 * `cur`'s rules. */
static void
check_diff(const struct mcos_table *prev, const struct mcos_table *cur,
           const char *cur_dump)
{
    Mcos__TableUpdate *u;
    struct mcos_table *out = NULL;
    char err[MCOS_TABLE_ERR_LEN], *dump = NULL;
    int r;

    if (mcos_table_diff(prev, cur, &u)) {
        return;
    }
    r = mcos_table_apply(prev, u, NODE, &out, err, sizeof err);
    mcos_table_update_free(u);
    if (r != 0) {
        fprintf(stderr, "the diff does not apply: %s\n", err);
        abort();
    }
    if (!mcos_table_same_rules(out, cur) ||
        mcos_table_dump(out, true, &dump) ||
        (cur_dump && strcmp(dump, cur_dump))) {
        fprintf(stderr, "the diff applied gives other rules\n");
        abort();
    }
    free(dump);
    mcos_table_free(out);
}

static uint64_t rebase(uint64_t g, uint64_t G, bool keep_zero);

/* One update, its generations rebased on G, on the store's tables, and
 * what the agent does when one applies (agent.c: apply_table).  `prev` is
 * a copy of the table in force before (NULL: the empty one of the reset)
 * and is replaced with a copy of the one in force after. */
static void
apply_one(Mcos__TableUpdate *u, uint64_t G, struct mcos_table **prev)
{
    struct agent_tables *t = R.tables;
    char err[MCOS_TABLE_ERR_LEN];
    uint64_t before = agent_tables_gen(t);
    const struct mcos_table *cur;
    char *dump;
    int r;

    u->gen = rebase(u->gen, G, false);
    u->base_gen = rebase(u->base_gen, G, true);
    err[0] = '\0';
    r = agent_tables_apply(t, u, err, sizeof err);
    if (r < 0 && !err[0] && r != -ENOMEM) {
        fprintf(stderr, "refused (%d) without a reason\n", r);
        abort();
    }
    if ((r != 0 && agent_tables_gen(t) != before) ||
        (r == 0 && agent_tables_gen(t) != u->gen)) {
        abort();
    }
    cur = agent_tables_read_lock(t);
    if (r != 0 && *prev && (!cur || !mcos_table_same_rules(cur, *prev))) {
        abort(); /* refused or idempotent: nothing changed */
    }
    if (r != 0 && !*prev && (!cur || mcos_table_n_rules(cur))) {
        abort(); /* still the empty table of the reset */
    }
    dump = read_table(cur);
    if (r == 0) {
        if (*prev) {
            check_diff(*prev, cur, dump);
        }
        mcos_table_free(*prev);
        *prev = NULL;
        mcos_table_restamp(cur, mcos_table_gen(cur), prev);
    }
    agent_tables_read_unlock(t);
    free(dump);
    if (r == 0) {
        agent_store_replicate(R.s); /* drop/ rules, replica tasks */
    }
}

/* Starts an input: the table in force becomes an empty full snapshot at
 * the next generation, G; the input's generations count from there. */
static uint64_t
reset_table(void)
{
    struct mcos_table *next;
    Mcos__TableUpdate *u;
    char err[MCOS_TABLE_ERR_LEN];
    uint64_t gen = agent_tables_gen(R.tables) + 1;

    if (mcos_table_build(NODE, gen, NULL, 0, &next, err, sizeof err) ||
        mcos_table_diff(NULL, next, &u)) {
        abort();
    }
    if (agent_tables_apply(R.tables, u, err, sizeof err) != 0) {
        fprintf(stderr, "an empty table is refused: %s\n", err);
        abort();
    }
    mcos_table_update_free(u);
    mcos_table_free(next);
    return gen;
}

/* The input's generation g as seen from an agent at generation G (0 stays
 * 0 for base_gen: a full snapshot). */
static uint64_t
rebase(uint64_t g, uint64_t G, bool keep_zero)
{
    if (g == 0 && keep_zero) {
        return 0;
    }
    return g > UINT64_MAX - G ? g : g + G;
}

/* Reads every object (prefetch/ rules fire), ticks (watermark demotion
 * by the table's tier, demotion and residency rules), lets moves end. */
static void
drive_store(void)
{
    for (uint64_t id = 1; id <= N_OBJS; id++) {
        struct agent_store_req req;
        uint64_t view;

        if (!agent_store_find(R.s, id)) {
            continue;
        }
        memset(&req, 0, sizeof req);
        req.op = MCOS__API_OP__API_GET;
        req.id = id;
        req.peer = 1;
        submit(&req);
        view = req.view_out;
        if (req.status == 0) {
            memset(&req, 0, sizeof req);
            req.op = MCOS__API_OP__API_RELEASE;
            req.id = id;
            req.view_id = view;
            req.peer = 1;
            submit(&req);
        }
    }
    mcos_fake_clock_advance(&R.clock, 5000000);
    agent_store_tick(R.s);
    settle();
    agent_store_peer_gone(R.s, 1);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool once;
    struct mcos_table *prev = NULL;
    const uint8_t *p = data, *end = data + size;
    uint64_t G;
    int n = 0;

    if (!once) {
        mcos_log_set_spec("off");
        agent_tables_register_thread();
        atexit(rig_down); /* the arena and temp dir go with the process */
        once = true;
    }
    /* An input may leave a generation near the top (past what rebase
     * moves): start over rather than wrap. */
    if (R.up && agent_tables_gen(R.tables) >= UINT64_MAX / 2) {
        rig_down();
    }
    if (!R.up) {
        rig_up();
    }
    refill();
    G = reset_table();
    while (n++ < MAX_MSGS) {
        const uint8_t *q = memmem(p, (size_t)(end - p), SEP, strlen(SEP));
        size_t len = (size_t)((q ? q : end) - p);
        struct mcos_wire_msg m;
        char err[MCOS_WIRE_ERR_LEN];

        if (mcos_wire_decode(p, len, &m, err, sizeof err) == 0) {
            Mcos__Reply *rep = mcos_wire_reply(&m);

            if (rep && rep->table) {
                apply_one(rep->table, G, &prev);
            }
            mcos_wire_msg_free(&m);
        } else {
            Mcos__TableUpdate *u = mcos__table_update__unpack(NULL, len, p);

            if (u) {
                apply_one(u, G, &prev);
                mcos__table_update__free_unpacked(u, NULL);
            }
        }
        if (!q) {
            break;
        }
        p = q + strlen(SEP);
    }
    mcos_table_free(prev);
    drive_store();
    if (++R.inputs >= RECREATE) {
        rig_down();
    }
    return 0;
}
