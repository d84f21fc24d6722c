/*
 * Fuzz target: the agent's local API (agent/local_api.c) on arbitrary
 * bytes, as requests an application sends.  The input is up to 16
 * requests separated by SEP; each goes, as is, over a real nng ipc socket
 * (an in-process client on the agent's own loop) to the real request
 * handling -- decode, validation, the store -- of an agent_local_api in
 * front of a real agent_store: 512 KiB DRAM arena, emulated HBM, NVMe in
 * a temp dir, the executor thread, and a table with a demotion chain.
 * Object ids, sizes, tiers, offsets, deadlines, namespaces, parent ids:
 * all come from the input.
 *
 * Oracles: every request is answered (an unanswered one aborts after
 * 20 s), with an ApiReply whose status is 0 or a negative errno and
 * which, when it fails, says why; a place or get answers an extent inside
 * the arena.  The harness writes a pattern derived from the object id
 * into every extent a place returns, the way a client writes its bytes
 * before commit, and a get must show that pattern whatever tiers the
 * object went through.  After each input the store ticks, moves settle,
 * and no tier holds more than its capacity.
 *
 * The agent (store, api, client) is recreated every RECREATE inputs: the
 * client's connection closing releases its views and gives back what it
 * placed without committing (agent_store_peer_gone).
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
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "bus.h"
#include "clock.h"
#include "local_api.h"
#include "log.h"
#include "store.h"
#include "table.h"
#include "tables.h"
#include "tier.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NODE         "t1"
#define SEP          "\n--MCOS--\n"
#define MAX_REQS     16
#define RECREATE     200
#define KiB          1024ULL
#define WAIT_LIMIT_S 20

struct rig {
    bool up;
    uv_loop_t loop;
    struct agent_tables *tables;
    struct agent_store *s;
    struct agent_local_api *api;
    struct mcos_bus_client *client;
    uint8_t *arena; /* the DRAM arena, as a client maps it */
    uint64_t arena_len;
    char dir[64];
    char shm[64];
    char url[128];
    unsigned inputs;
};

static struct rig R;

/* A reply, as the client got it. */
struct answer {
    bool done;
    int status;
    Mcos__ApiReply *rep; /* decoded; NULL if the call failed */
    struct mcos_wire_msg m;
};

static void
on_reply(int status, const void *data, size_t len, void *arg)
{
    struct answer *a = arg;
    char err[MCOS_WIRE_ERR_LEN];

    a->done = true;
    a->status = status;
    if (status) {
        return;
    }
    if (mcos_wire_decode(data, len, &a->m, err, sizeof err)) {
        fprintf(stderr, "the agent answered an undecodable reply: %s\n", err);
        abort();
    }
    a->rep = mcos_wire_api_reply(&a->m);
    if (!a->rep) {
        fprintf(stderr, "the agent answered a %s\n",
                mcos_wire_type_name(a->m.type));
        abort();
    }
}

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Runs the loop until *done, or aborts after WAIT_LIMIT_S. */
static void
run_until(const bool *done, const char *what)
{
    double until = now_s() + WAIT_LIMIT_S;

    while (!*done) {
        uv_run(&R.loop, UV_RUN_NOWAIT);
        if (*done) {
            break;
        }
        if (now_s() > until) {
            fprintf(stderr, "%s: no answer in %d s\n", what, WAIT_LIMIT_S);
            abort();
        }
        usleep(20);
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
    double until = now_s() + WAIT_LIMIT_S;

    for (;;) {
        uv_run(&R.loop, UV_RUN_NOWAIT);
        if (!agent_store_foreach(R.s, is_moving, NULL)) {
            return;
        }
        if (now_s() > until) {
            fprintf(stderr, "moves never finished\n");
            abort();
        }
        usleep(50);
    }
}

static uint8_t
pattern(uint64_t id, uint64_t i)
{
    return (uint8_t)(id * 0x9e3779b97f4a7c15ULL >> 56) ^ (uint8_t)(i * 131);
}

/* The table: demotion hbm -> dram -> nvme, DRAM demoted above 75%. */
static void
apply_table(void)
{
    Mcos__TierRule tr = MCOS__TIER_RULE__INIT;
    Mcos__DemotionRule d1 = MCOS__DEMOTION_RULE__INIT;
    Mcos__DemotionRule d2 = MCOS__DEMOTION_RULE__INIT;
    Mcos__Rule r[3] = {MCOS__RULE__INIT, MCOS__RULE__INIT, MCOS__RULE__INIT};
    const Mcos__Rule *p[3] = {&r[0], &r[1], &r[2]};
    struct mcos_table *t;
    Mcos__TableUpdate *u;
    char err[MCOS_TABLE_ERR_LEN];

    tr.tier = MCOS__TIER_KIND__TIER_DRAM;
    tr.high_watermark_pct = 75;
    tr.low_watermark_pct = 50;
    r[0].key = "tier/dram";
    r[0].rule_case = MCOS__RULE__RULE_TIER;
    r[0].tier = &tr;
    d1.from = MCOS__TIER_KIND__TIER_HBM;
    d1.to = MCOS__TIER_KIND__TIER_DRAM;
    r[1].key = "demotion/hbm";
    r[1].rule_case = MCOS__RULE__RULE_DEMOTION;
    r[1].demotion = &d1;
    d2.from = MCOS__TIER_KIND__TIER_DRAM;
    d2.to = MCOS__TIER_KIND__TIER_NVME;
    r[2].key = "demotion/dram";
    r[2].rule_case = MCOS__RULE__RULE_DEMOTION;
    r[2].demotion = &d2;
    if (mcos_table_build(NODE, 1, p, 3, &t, err, sizeof err) ||
        mcos_table_diff(NULL, t, &u)) {
        abort();
    }
    if (agent_tables_apply(R.tables, u, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        abort();
    }
    mcos_table_update_free(u);
    mcos_table_free(t);
}

static void
rig_up(void)
{
    struct agent_store_config c = {0};
    char nvme[96], err[256];
    void *base;

    memset(&R, 0, sizeof R);
    if (uv_loop_init(&R.loop)) {
        abort();
    }
    snprintf(R.dir, sizeof R.dir, "/dev/shm/fuzz_local_api.XXXXXX");
    if (!mkdtemp(R.dir)) {
        abort();
    }
    snprintf(nvme, sizeof nvme, "%s/nvme", R.dir);
    mkdir(nvme, 0755);
    snprintf(R.shm, sizeof R.shm, "/mcos-fuzz-api-%d", getpid());
    snprintf(R.url, sizeof R.url, "ipc://%s/api.sock", R.dir);
    c.node = NODE;
    c.dram_bytes = 512 * KiB;
    c.shm_name = R.shm;
    c.shm_gid = -1;
    c.hbm_bytes = 256 * KiB;
    c.hbm_emulated = true;
    c.nvme_dir = nvme;
    c.nvme_bytes = 2048 * KiB;
    if (agent_tables_create(NODE, &R.tables)) {
        abort();
    }
    apply_table();
    if (agent_store_create(&R.loop, &mcos_clock_monotonic, &c, R.tables, NULL,
                           &R.s, err, sizeof err) ||
        agent_local_api_create(&R.loop, &mcos_clock_monotonic, R.url, R.s,
                               &R.api, err, sizeof err) ||
        mcos_bus_client_create(&R.loop, R.url, &R.client, err, sizeof err)) {
        fprintf(stderr, "cannot set up the agent: %s\n", err);
        abort();
    }
    if (agent_tier_dram_region(
            agent_store_tier(R.s, MCOS__TIER_KIND__TIER_DRAM), &base,
            &R.arena_len)) {
        abort();
    }
    R.arena = base;
    if (agent_store_shm_size(R.s) != R.arena_len) {
        abort();
    }
    R.up = true;
}

static void
rig_down(void)
{
    char cmd[128];

    if (!R.up) {
        return;
    }
    /* The client goes first: the agent learns it is gone. */
    mcos_bus_client_close(R.client);
    for (int i = 0; i < 50; i++) {
        uv_run(&R.loop, UV_RUN_NOWAIT);
        usleep(100);
    }
    agent_store_close(R.s);
    agent_local_api_close(R.api);
    for (int i = 0; i < 100; i++) {
        uv_run(&R.loop, UV_RUN_NOWAIT);
    }
    agent_tables_destroy(R.tables);
    if (uv_loop_close(&R.loop)) {
        /* a handle left open: run once more */
        uv_run(&R.loop, UV_RUN_DEFAULT);
        uv_loop_close(&R.loop);
    }
    shm_unlink(R.shm);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", R.dir);
    if (system(cmd)) {
        /* best effort */
    }
    R.up = false;
}

/* Checks the answer to `q` (NULL: the bytes were no ApiRequest). */
static void
check(const Mcos__ApiRequest *q, const Mcos__ApiReply *rep)
{
    if (rep->status > 0) {
        abort();
    }
    if (rep->status < 0) {
        if (!rep->error || !*rep->error) {
            fprintf(stderr, "status %d without a reason\n", rep->status);
            abort();
        }
        return;
    }
    if (!q) {
        abort(); /* undecodable, yet accepted */
    }
    if (q->op == MCOS__API_OP__API_PLACE || q->op == MCOS__API_OP__API_GET) {
        if (rep->offset > R.arena_len ||
            rep->length > R.arena_len - rep->offset) {
            fprintf(stderr,
                    "op %d: extent %" PRIu64 "+%" PRIu64
                    " outside the %" PRIu64 "-byte arena\n",
                    q->op, rep->offset, rep->length, R.arena_len);
            abort();
        }
    }
    if (q->op == MCOS__API_OP__API_PLACE) {
        if (rep->length != q->size) {
            abort();
        }
        for (uint64_t i = 0; i < rep->length; i++) {
            R.arena[rep->offset + i] = pattern(q->object_id, i);
        }
    } else if (q->op == MCOS__API_OP__API_GET) {
        for (uint64_t i = 0; i < rep->length; i++) {
            if (R.arena[rep->offset + i] != pattern(q->object_id, i)) {
                fprintf(stderr,
                        "get %016" PRIx64 ": byte %" PRIu64 " is not what "
                        "was written\n",
                        q->object_id, i);
                abort();
            }
        }
    }
}

static void
call(const uint8_t *p, size_t len)
{
    struct answer a = {0};
    struct mcos_wire_msg qm;
    const Mcos__ApiRequest *q = NULL;
    char err[MCOS_WIRE_ERR_LEN];
    bool have_q = mcos_wire_decode(p, len, &qm, err, sizeof err) == 0;

    if (have_q) {
        q = mcos_wire_api_request(&qm);
    }
    if (mcos_bus_call(R.client, p, len, 0, on_reply, &a, NULL)) {
        abort();
    }
    run_until(&a.done, "request");
    if (a.status) {
        fprintf(stderr, "call failed: %d\n", a.status);
        abort();
    }
    check(q, a.rep);
    mcos_wire_msg_free(&a.m);
    if (have_q) {
        mcos_wire_msg_free(&qm);
    }
}

static void
check_tiers(void)
{
    for (int k = MCOS__TIER_KIND__TIER_SRAM; k <= MCOS__TIER_KIND__TIER_REMOTE;
         k++) {
        struct agent_store_tier t;

        agent_store_tier_usage(R.s, k, &t);
        if (t.present && t.used > t.capacity) {
            fprintf(stderr, "tier %d: %" PRIu64 " bytes used of %" PRIu64 "\n",
                    k, t.used, t.capacity);
            abort();
        }
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool once;
    const uint8_t *p = data, *end = data + size;
    struct agent_local_api_counters k;
    struct agent_engine_load load;

    if (!once) {
        mcos_log_set_spec("off");
        agent_tables_register_thread();
        atexit(rig_down); /* the arena and temp dir go with the process */
        once = true;
    }
    if (!R.up) {
        rig_up();
    }
    for (int n = 0; n < MAX_REQS; n++) {
        const uint8_t *q = memmem(p, (size_t)(end - p), SEP, strlen(SEP));
        size_t len = (size_t)((q ? q : end) - p);

        call(p, len);
        if (!q) {
            break;
        }
        p = q + strlen(SEP);
    }
    agent_store_tick(R.s);
    settle();
    check_tiers();
    agent_local_api_counters(R.api, &k);
    agent_local_api_load(R.api, mcos_clock_now(&mcos_clock_monotonic), &load);
    if (k.errors > k.requests + k.malformed || load.engines > 1) {
        abort();
    }
    if (++R.inputs >= RECREATE) {
        rig_down();
    }
    return 0;
}
