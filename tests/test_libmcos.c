/*
 * End-to-end tests of the intent API: a real mcos-agent process (no brain:
 * it runs on its default policy) driven through libmcos.  Every call with
 * good and bad input and its exact error code; data integrity across
 * DRAM, NVMe and emulated HBM; watermark demotion down the chain; several
 * client processes at once; and what survives an agent restart.
 */
#include <errno.h>
#include <stddef.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <xxhash.h>

#include "mcos/mcos.h"
#include "testutil.h"

#define MiB (1ULL << 20)

struct agent_proc {
    pid_t pid;     /* the agent */
    char *dir;     /* its temp dir */
    char url[512]; /* its API socket */
    char shm[64];  /* its arena name */
};

static struct agent_proc A;

/* Starts an agent: 8 MiB DRAM, 4 MiB emulated HBM, 64 MiB NVMe, and waits
 * until its API answers. */
static void
start_agent(struct agent_proc *a, const char *dram, bool fresh)
{
    char nvme[600], log[600];
    mcos_client_t *c = NULL;

    if (fresh) {
        a->dir = test_tmpdir();
        snprintf(a->shm, sizeof a->shm, "/mcos-test-%d", getpid());
    }
    snprintf(a->url, sizeof a->url, "ipc://%s/agent.sock", a->dir);
    snprintf(nvme, sizeof nvme, "%s/nvme", a->dir);
    snprintf(log, sizeof log, "%s/agent.log", a->dir);
    mkdir(nvme, 0755);
    a->pid = fork();
    ck_assert_int_ge(a->pid, 0);
    if (a->pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);

        dup2(fd, 2);
        dup2(fd, 1);
        execl(MCOS_AGENT_BIN, "mcos-agent", "--node", "t1", "--brain",
              "tcp://127.0.0.1:1", "--http", "", "--api", a->url, "--shm-name",
              a->shm, "--dram-bytes", dram, "--emulate-hbm", "4MiB",
              "--nvme-dir", nvme, "--nvme-bytes", "64MiB",
              "--report-interval-ms", "100", "--log-level", "warn",
              "--data-transports", "off", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        if (mcos_connect(a->url, &c) == 0) {
            mcos_close(c);
            return;
        }
        usleep(10000);
    }
    ck_abort_msg("agent did not start; see %s", log);
}

static void
stop_agent(struct agent_proc *a)
{
    int status;

    kill(a->pid, SIGTERM);
    waitpid(a->pid, &status, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "agent exit status %d", status);
}

static void
setup(void)
{
    start_agent(&A, "8MiB", true);
}

static void
teardown(void)
{
    stop_agent(&A);
    /* A clean stop unlinks the arena; make sure a failed test does not
     * leave it behind either. */
    shm_unlink(A.shm);
    test_rmrf(A.dir);
    free(A.dir);
}

static void
fill(uint8_t *buf, size_t len, uint32_t seed)
{
    for (size_t i = 0; i < len; i++) {
        seed = seed * 1103515245u + 12345u;
        buf[i] = (uint8_t)(seed >> 16);
    }
}

static struct mcos_stat
stat_of(mcos_client_t *c, mcos_id_t id)
{
    struct mcos_stat st = {.struct_size = sizeof st};

    ck_assert_int_eq(mcos_stat(c, id, &st), 0);
    return st;
}

/* Polls until the object is resident in `tier` (moves are async). */
static void
wait_tier(mcos_client_t *c, mcos_id_t id, enum mcos_tier tier)
{
    for (int i = 0; i < 1000; i++) {
        struct mcos_stat st = stat_of(c, id);

        if (st.state == MCOS_STATE_RESIDENT && st.tier == tier) {
            return;
        }
        usleep(5000);
    }
    ck_abort_msg("object %016llx never reached tier %d",
                 (unsigned long long)id, tier);
}

START_TEST(test_put_get_round_trip)
{
    mcos_client_t *c;
    uint8_t data[5000], out[5000];
    struct mcos_view v;
    struct mcos_stat st;
    size_t len;
    mcos_id_t id = mcos_id_from_name("layer0/tile0");

    ck_assert_int_eq(mcos_connect(A.url, &c), 0);
    fill(data, sizeof data, 1);
    ck_assert_int_eq(mcos_put(c, id, data, sizeof data, NULL), 0);
    ck_assert_int_eq(mcos_get(c, id, &v), 0);
    ck_assert_uint_eq(v.len, sizeof data);
    ck_assert_int_eq(memcmp(v.data, data, sizeof data), 0);
    st = stat_of(c, id);
    ck_assert_int_eq(st.state, MCOS_STATE_RESIDENT);
    ck_assert_int_eq(st.tier, MCOS_TIER_DRAM);
    ck_assert_uint_eq(st.pins, 1); /* the open view */
    ck_assert_uint_eq(st.checksum, XXH3_64bits(data, sizeof data));
    ck_assert_uint_eq(st.hits, 1);
    ck_assert_int_eq(mcos_release(c, &v), 0);
    ck_assert_uint_eq(stat_of(c, id).pins, 0);
    ck_assert_int_eq(mcos_get_copy(c, id, out, sizeof out, &len), 0);
    ck_assert_uint_eq(len, sizeof data);
    ck_assert_int_eq(memcmp(out, data, len), 0);
    ck_assert_int_eq(mcos_get_copy(c, id, out, 10, &len), -ERANGE);
    mcos_close(c);
}
END_TEST

START_TEST(test_bad_input)
{
    mcos_client_t *c;
    uint8_t data[64] = {1};
    struct mcos_view v;
    struct mcos_stat st = {.struct_size = sizeof st};
    struct mcos_place_opts o = {.struct_size = sizeof o};
    mcos_id_t id = 42;
    void *buf;

    ck_assert_int_eq(mcos_connect(A.url, &c), 0);
    /* id 0, size 0, NULLs. */
    ck_assert_int_eq(mcos_put(c, 0, data, sizeof data, NULL), -EINVAL);
    ck_assert_int_eq(mcos_put(c, id, data, 0, NULL), -EINVAL);
    ck_assert_int_eq(mcos_put(c, id, NULL, 8, NULL), -EINVAL);
    ck_assert_int_eq(mcos_get(c, id, NULL), -EINVAL);
    /* Unknown ids. */
    ck_assert_int_eq(mcos_get(c, id, &v), -ENOENT);
    ck_assert_int_eq(mcos_stat(c, id, &st), -ENOENT);
    ck_assert_int_eq(mcos_evict(c, id, MCOS_EVICT_DROP), -ENOENT);
    ck_assert_int_eq(mcos_pin(c, id), -ENOENT);
    ck_assert_int_eq(
        mcos_move(c, id, MCOS_TIER_ANY, MCOS_TIER_NVME, MCOS_MOVE_WAIT),
        -ENOENT);
    /* Unknown tiers, classes, policies, modes. */
    o.preferred_tier = (enum mcos_tier)9;
    ck_assert_int_eq(mcos_put(c, id, data, sizeof data, &o), -EINVAL);
    o.preferred_tier = MCOS_TIER_SRAM;
    ck_assert_int_eq(mcos_put(c, id, data, sizeof data, &o), -EINVAL);
    o.preferred_tier = MCOS_TIER_REMOTE;
    ck_assert_int_eq(mcos_put(c, id, data, sizeof data, &o), -ENOTSUP);
    o.preferred_tier = MCOS_TIER_DRAM;
    o.cls = (enum mcos_class)77;
    ck_assert_int_eq(mcos_put(c, id, data, sizeof data, &o), -EINVAL);
    o.cls = MCOS_CLASS_WEIGHT_TILE;
    o.struct_size = 3;
    ck_assert_int_eq(mcos_put(c, id, data, sizeof data, &o), -EINVAL);
    o.struct_size = sizeof o;
    /* KV blocks' namespace: a safe alphabet, at most 63 characters. */
    o.ns = "llama 70b";
    ck_assert_int_eq(mcos_put(c, id, data, sizeof data, &o), -EINVAL);
    o.ns = "meta/llama-3.1-70b";
    o.parent = 41;
    ck_assert_int_eq(mcos_put(c, 4242, data, sizeof data, &o), 0);
    /* Callers built against the first header pass the smaller size. */
    o.struct_size = offsetof(struct mcos_place_opts, ns);
    ck_assert_int_eq(mcos_put(c, 4243, data, sizeof data, &o), 0);
    o.struct_size = sizeof o;
    o.ns = NULL;
    o.parent = 0;
    /* Size over capacity: bigger than the whole arena, or than what is
     * free. */
    ck_assert_int_eq(mcos_place(c, id, 9 * MiB, NULL, &buf), -EFBIG);
    /* A good put, then a duplicate. */
    ck_assert_int_eq(mcos_put(c, id, data, sizeof data, &o), 0);
    ck_assert_int_eq(mcos_put(c, id, data, sizeof data, &o), -EEXIST);
    ck_assert_int_eq(stat_of(c, id).cls, MCOS_CLASS_WEIGHT_TILE);
    /* Deadlines already past; bad targets. */
    ck_assert_int_eq(mcos_prefetch(c, id, MCOS_TIER_HBM, 0), -ETIME);
    ck_assert_int_eq(mcos_prefetch(c, id, MCOS_TIER_ANY, 1000), -EINVAL);
    ck_assert_int_eq(
        mcos_move(c, id, MCOS_TIER_ANY, (enum mcos_tier)9, MCOS_MOVE_WAIT),
        -EINVAL);
    ck_assert_int_eq(
        mcos_move(c, id, MCOS_TIER_NVME, MCOS_TIER_HBM, MCOS_MOVE_WAIT),
        -EINVAL); /* it is in DRAM, not NVMe */
    ck_assert_int_eq(mcos_move(c, id, MCOS_TIER_ANY, MCOS_TIER_NVME,
                               (enum mcos_move_mode)7),
                     -EINVAL);
    ck_assert_int_eq(mcos_evict(c, id, (enum mcos_evict_policy)9), -EINVAL);
    ck_assert_int_eq(mcos_evict(c, id, MCOS_EVICT_DEMOTE_TO_REMOTE), -ENOTSUP);
    ck_assert_int_eq(mcos_unpin(c, id), -EINVAL); /* not pinned */
    /* Pinned: no move, no drop. */
    ck_assert_int_eq(mcos_pin(c, id), 0);
    ck_assert_int_eq(
        mcos_move(c, id, MCOS_TIER_ANY, MCOS_TIER_NVME, MCOS_MOVE_WAIT),
        -EBUSY);
    ck_assert_int_eq(mcos_evict(c, id, MCOS_EVICT_DROP), -EBUSY);
    ck_assert_int_eq(mcos_unpin(c, id), 0);
    /* Releasing a view twice. */
    ck_assert_int_eq(mcos_get(c, id, &v), 0);
    {
        struct mcos_view copy = v;

        ck_assert_int_eq(mcos_release(c, &v), 0);
        ck_assert_int_eq(mcos_release(c, &copy), -ENOENT);
    }
    /* After all that, the object is intact. */
    ck_assert_uint_eq(stat_of(c, id).checksum, XXH3_64bits(data, sizeof data));
    /* Get of an evicted object. */
    ck_assert_int_eq(mcos_evict(c, id, MCOS_EVICT_DROP), 0);
    ck_assert_int_eq(mcos_get(c, id, &v), -ENOENT);
    /* Placed but not committed: invisible, and abort gives it back. */
    ck_assert_int_eq(mcos_place(c, 77, 100, NULL, &buf), 0);
    ck_assert_int_eq(mcos_get(c, 77, &v), -ENOENT);
    ck_assert_int_eq(mcos_commit(c, 78), -ENOENT);
    ck_assert_int_eq(mcos_abort(c, 77), 0);
    ck_assert_int_eq(mcos_stat(c, 77, &st), -ENOENT);
    mcos_close(c);
    /* No agent. */
    ck_assert_int_eq(mcos_connect("ipc:///nonexistent/agent.sock", &c),
                     -ECONNREFUSED);
}
END_TEST

/* Random objects through every tier and back, checksummed each time. */
START_TEST(test_integrity_across_tiers)
{
    static const enum mcos_tier path[] = {
        MCOS_TIER_NVME, MCOS_TIER_DRAM, MCOS_TIER_HBM,
        MCOS_TIER_NVME, MCOS_TIER_HBM,  MCOS_TIER_DRAM,
    };
    mcos_client_t *c;
    uint8_t *data[6];
    size_t sizes[6] = {1, 4095, 4096, 70000, 300000, 1000000};

    ck_assert_int_eq(mcos_connect(A.url, &c), 0);
    for (int i = 0; i < 6; i++) {
        data[i] = malloc(sizes[i]);
        fill(data[i], sizes[i], (uint32_t)i + 7);
        ck_assert_int_eq(mcos_put(c, 1000 + i, data[i], sizes[i], NULL), 0);
    }
    for (size_t step = 0; step < sizeof path / sizeof path[0]; step++) {
        for (int i = 0; i < 6; i++) {
            struct mcos_stat st;

            ck_assert_int_eq(mcos_move(c, 1000 + i, MCOS_TIER_ANY, path[step],
                                       MCOS_MOVE_WAIT),
                             0);
            st = stat_of(c, 1000 + i);
            ck_assert_int_eq(st.tier, path[step]);
            ck_assert_int_eq(st.emulated, path[step] == MCOS_TIER_HBM);
            ck_assert_uint_eq(st.checksum, XXH3_64bits(data[i], sizes[i]));
        }
    }
    /* Read back from wherever they are (a get fetches into DRAM). */
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(mcos_move(c, 1000 + i, MCOS_TIER_ANY, MCOS_TIER_NVME,
                                   MCOS_MOVE_WAIT),
                         0);
    }
    for (int i = 0; i < 6; i++) {
        struct mcos_view v;

        ck_assert_int_eq(mcos_get(c, 1000 + i, &v), 0);
        ck_assert_uint_eq(v.len, sizes[i]);
        ck_assert_int_eq(memcmp(v.data, data[i], sizes[i]), 0);
        ck_assert_uint_eq(stat_of(c, 1000 + i).misses, 1);
        ck_assert_int_eq(mcos_release(c, &v), 0);
        free(data[i]);
    }
    mcos_close(c);
}
END_TEST

START_TEST(test_full_tier)
{
    mcos_client_t *c;
    uint8_t *big = calloc(1, 3 * MiB);
    struct mcos_place_opts o = {.struct_size = sizeof o};
    struct mcos_stat st;

    ck_assert_int_eq(mcos_connect(A.url, &c), 0);
    /* HBM holds 4 MiB: the second 3 MiB object does not fit there. */
    ck_assert_int_eq(mcos_put(c, 1, big, 3 * MiB, NULL), 0);
    ck_assert_int_eq(
        mcos_move(c, 1, MCOS_TIER_DRAM, MCOS_TIER_HBM, MCOS_MOVE_WAIT), 0);
    ck_assert_int_eq(mcos_put(c, 2, big, 3 * MiB, NULL), 0);
    ck_assert_int_eq(
        mcos_move(c, 2, MCOS_TIER_DRAM, MCOS_TIER_HBM, MCOS_MOVE_WAIT),
        -ENOSPC);
    /* Nothing changed for either. */
    st = stat_of(c, 2);
    ck_assert_int_eq(st.tier, MCOS_TIER_DRAM);
    ck_assert_int_eq(st.state, MCOS_STATE_RESIDENT);
    ck_assert_int_eq(stat_of(c, 1).tier, MCOS_TIER_HBM);
    /* Preferring a full tier with a fallback lands in the fallback. */
    o.preferred_tier = MCOS_TIER_HBM;
    o.fallback_tier = MCOS_TIER_NVME;
    ck_assert_int_eq(mcos_put(c, 3, big, 2 * MiB, &o), 0);
    wait_tier(c, 3, MCOS_TIER_NVME);
    free(big);
    mcos_close(c);
}
END_TEST

/* Filling DRAM past its high watermark demotes the coldest objects down
 * the chain (dram -> nvme), never dropping any. */
START_TEST(test_watermark_demotion)
{
    mcos_client_t *c;
    uint8_t blk[512 * 1024];
    int in_nvme = 0, in_dram = 0;

    ck_assert_int_eq(mcos_connect(A.url, &c), 0);
    for (int i = 0; i < 15; i++) {
        fill(blk, sizeof blk, (uint32_t)i);
        ck_assert_int_eq(mcos_put(c, 500 + i, blk, sizeof blk, NULL), 0);
    }
    /* 15 x 512 KiB = 7.5 MiB of an 8 MiB arena: over 90%, so demotion
     * runs down to 75%. */
    for (int tries = 0; tries < 1000; tries++) {
        in_nvme = in_dram = 0;
        for (int i = 0; i < 15; i++) {
            struct mcos_stat st = stat_of(c, 500 + i);

            in_nvme +=
                st.tier == MCOS_TIER_NVME && st.state == MCOS_STATE_RESIDENT;
            in_dram += st.tier == MCOS_TIER_DRAM;
        }
        if (in_nvme >= 3 && in_dram + in_nvme == 15) {
            break;
        }
        usleep(5000);
    }
    ck_assert_int_eq(in_dram + in_nvme, 15);
    ck_assert_int_ge(in_nvme, 3);
    /* The coldest (first stored) went first. */
    ck_assert_int_eq(stat_of(c, 500).tier, MCOS_TIER_NVME);
    ck_assert_int_eq(stat_of(c, 514).tier, MCOS_TIER_DRAM);
    /* And every byte survived. */
    for (int i = 0; i < 15; i++) {
        fill(blk, sizeof blk, (uint32_t)i);
        ck_assert_uint_eq(stat_of(c, 500 + i).checksum,
                          XXH3_64bits(blk, sizeof blk));
    }
    mcos_close(c);
}
END_TEST

START_TEST(test_prefetch_and_demote)
{
    mcos_client_t *c;
    uint8_t data[10000];
    struct mcos_view v;
    struct mcos_stat st;

    ck_assert_int_eq(mcos_connect(A.url, &c), 0);
    fill(data, sizeof data, 3);
    ck_assert_int_eq(mcos_put(c, 9, data, sizeof data, NULL), 0);
    ck_assert_int_eq(mcos_evict(c, 9, MCOS_EVICT_DEMOTE), 0);
    ck_assert_int_eq(stat_of(c, 9).tier, MCOS_TIER_NVME);
    /* NVMe is the end of the chain: demote refuses to drop the copy. */
    ck_assert_int_eq(mcos_evict(c, 9, MCOS_EVICT_DEMOTE), -ENOSPC);
    ck_assert_int_eq(mcos_prefetch(c, 9, MCOS_TIER_DRAM, 5000000), 0);
    wait_tier(c, 9, MCOS_TIER_DRAM);
    st = stat_of(c, 9);
    ck_assert(st.prefetched);
    /* Using it counts as a prefetch hit and a hit, not a miss. */
    ck_assert_int_eq(mcos_get(c, 9, &v), 0);
    ck_assert_int_eq(memcmp(v.data, data, sizeof data), 0);
    ck_assert_int_eq(mcos_release(c, &v), 0);
    st = stat_of(c, 9);
    ck_assert(!st.prefetched);
    ck_assert_uint_eq(st.hits, 1);
    ck_assert_uint_eq(st.misses, 0);
    mcos_close(c);
}
END_TEST

/* Runs the worker program as a separate client process.  (A forked
 * child cannot use nng once its parent has: each client is its own
 * process, as applications are.) */
static pid_t
spawn_worker(const char *mode, const char *arg)
{
    pid_t pid = fork();

    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        execl(MCOS_WORKER_BIN, "libmcos_worker", A.url, mode, arg,
              (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Several processes at once, each with its own objects and handle. */
START_TEST(test_many_clients)
{
    pid_t kids[4];
    int status;

    for (int k = 0; k < 4; k++) {
        char arg[8];

        snprintf(arg, sizeof arg, "%d", k);
        kids[k] = spawn_worker("many", arg);
    }
    for (int k = 0; k < 4; k++) {
        waitpid(kids[k], &status, 0);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "client %d failed (%d)", k, status);
    }
}
END_TEST

/* A client that dies holding a view and a placement leaves nothing
 * pinned or reserved behind. */
START_TEST(test_client_crash)
{
    mcos_client_t *c;
    struct mcos_stat st = {.struct_size = sizeof st};
    int status;

    ck_assert_int_eq(mcos_connect(A.url, &c), 0);
    ck_assert_int_eq(mcos_put(c, 31, "abc", 3, NULL), 0);
    waitpid(spawn_worker("crash", NULL), &status, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "worker failed (%d)", status);
    for (int i = 0; i < 500 && stat_of(c, 31).pins; i++) {
        usleep(5000);
    }
    ck_assert_uint_eq(stat_of(c, 31).pins, 0);
    for (int i = 0; i < 500 && mcos_stat(c, 32, &st) == 0; i++) {
        usleep(5000);
    }
    ck_assert_int_eq(mcos_stat(c, 32, &st), -ENOENT);
    mcos_close(c);
}
END_TEST

/* What the NVMe tier held is found again after a restart (with the same
 * bytes); what DRAM and HBM held is gone, as documented. */
START_TEST(test_restart_recovers_nvme)
{
    mcos_client_t *c;
    uint8_t data[30000];
    struct mcos_view v;
    struct mcos_stat st = {.struct_size = sizeof st};

    ck_assert_int_eq(mcos_connect(A.url, &c), 0);
    fill(data, sizeof data, 11);
    ck_assert_int_eq(mcos_put(c, 71, data, sizeof data, NULL), 0);
    ck_assert_int_eq(
        mcos_move(c, 71, MCOS_TIER_DRAM, MCOS_TIER_NVME, MCOS_MOVE_WAIT), 0);
    ck_assert_int_eq(mcos_put(c, 72, data, 100, NULL), 0);
    mcos_close(c);
    stop_agent(&A);
    start_agent(&A, "8MiB", false);
    ck_assert_int_eq(mcos_connect(A.url, &c), 0);
    ck_assert_int_eq(stat_of(c, 71).tier, MCOS_TIER_NVME);
    ck_assert_int_eq(mcos_stat(c, 72, &st), -ENOENT);
    ck_assert_int_eq(mcos_get(c, 71, &v), 0);
    ck_assert_int_eq(memcmp(v.data, data, sizeof data), 0);
    ck_assert_int_eq(mcos_release(c, &v), 0);
    mcos_close(c);
}
END_TEST

START_TEST(test_strerror)
{
    ck_assert_str_eq(mcos_strerror(-ENOENT), "No such file or directory");
    ck_assert_str_eq(mcos_strerror(0), "success");
    ck_assert_uint_ne(mcos_id_from_name("x"), 0);
    ck_assert_uint_eq(mcos_id_from_name("x"), mcos_id_from_name("x"));
    ck_assert_uint_eq(mcos_id_from_name(NULL), 0);
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("libmcos");
    TCase *tc = tcase_create("agent");

    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_put_get_round_trip);
    tcase_add_test(tc, test_bad_input);
    tcase_add_test(tc, test_integrity_across_tiers);
    tcase_add_test(tc, test_full_tier);
    tcase_add_test(tc, test_watermark_demotion);
    tcase_add_test(tc, test_prefetch_and_demote);
    tcase_add_test(tc, test_many_clients);
    tcase_add_test(tc, test_client_crash);
    tcase_add_test(tc, test_restart_recovers_nvme);
    tcase_add_test(tc, test_strerror);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
