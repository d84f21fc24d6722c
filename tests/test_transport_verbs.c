/*
 * Unit tests for the RDMA verbs transport (agent/transport_verbs.c),
 * against a real RDMA device: a server transport and a client transport
 * in this process, on the same device and address, with the client
 * reaching the server through the device's loopback.
 *
 * Needs an RDMA device and the address it owns, from MCOS_SELF_IP (set by
 * tools/rxe-vm's `on hN`) or MCOS_TEST_RDMA_ADDR; MCOS_TEST_RDMA_DEVICE
 * optionally names the device for the client transport.  Without either it
 * prints SKIP and exits 77, which CTest reports as skipped.  On machines
 * without RDMA it runs inside a soft-RoCE VM: integration/test_rxe.sh.
 *
 * The "two_nics" cases need a second RDMA device in this host and its
 * address in MCOS_TEST_RDMA_ADDR2 (integration/rxe/second_nic.sh gives
 * each soft-RoCE host one, with a second address on the same device in
 * MCOS_TEST_RDMA_ADDR2_ALIAS); without it they are left out with a SKIP
 * line.  Server and client then each use both devices, and a connection
 * has two paths, each through its device's loopback.
 */
#include "transport.h"

#include <check.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <rdma/rdma_cma.h>

#define MIB        (UINT64_C(1) << 20)
#define SRV_LEN    (16 * MIB)
#define CLI_LEN    (32 * MIB)
#define CLI_DST    (16 * MIB) /* client buffer: source below, copies above */
#define TEST_SLICE (256 * 1024)
#define WAIT_S     60

static const char *rdma_addr;
static const char *rdma_addr2;       /* a second device's address */
static const char *rdma_addr2_alias; /* another address on that device */

/* --- Helpers ------------------------------------------------------------
 */

static uint64_t
fnv(const void *p, size_t len)
{
    const uint8_t *b = p;
    uint64_t h = UINT64_C(14695981039346656037);

    for (size_t i = 0; i < len; i++) {
        h = (h ^ b[i]) * UINT64_C(1099511628211);
    }
    return h;
}

static void
fill(void *p, size_t len, uint64_t seed)
{
    uint8_t *b = p;
    uint64_t x = seed | 1;

    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b[i] = (uint8_t)x;
    }
}

/* Prints an error text under CK_VERBOSITY=verbose, to review them. */
static void
note(const char *what, int status, const char *text)
{
    const char *v = getenv("CK_VERBOSITY");

    if (v && strcmp(v, "verbose") == 0) {
        printf("  %s: %d %s\n", what, status, text);
    }
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

/* An op and how many times its callback ran. */
struct top {
    struct agent_transport_op op; /* what is posted */
    int calls;                    /* callbacks so far */
};

static void
on_done(struct agent_transport_op *op, void *arg)
{
    struct top *t = arg;

    ck_assert_ptr_eq(op, &t->op);
    pthread_mutex_lock(&mu);
    t->calls++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static int
calls_of(struct top *t)
{
    int n;

    pthread_mutex_lock(&mu);
    n = t->calls;
    pthread_mutex_unlock(&mu);
    return n;
}

/* Waits until each of n ops has completed; fails the test after
 * WAIT_S seconds. */
static void
wait_ops(struct top *t, size_t n)
{
    struct timespec dl;

    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += WAIT_S;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < n; i++) {
        while (t[i].calls == 0) {
            if (pthread_cond_timedwait(&cv, &mu, &dl) == ETIMEDOUT) {
                pthread_mutex_unlock(&mu);
                ck_abort_msg("op %zu did not complete in %d s", i, WAIT_S);
            }
        }
    }
    pthread_mutex_unlock(&mu);
}

static void
op_init(struct top *t, int opcode, void *local, uint64_t len,
        struct agent_transport_region remote, uint64_t off)
{
    memset(t, 0, sizeof *t);
    t->op.opcode = opcode;
    t->op.local = local;
    t->op.len = len;
    t->op.remote = remote;
    t->op.remote_off = off;
    t->op.done = on_done;
    t->op.arg = t;
}

/* Admission as the brain would answer: everyone but "intruder". */
static int admit_calls;

static bool
test_admit(void *arg, const char *node, uint64_t boot_id, char *why,
           size_t whylen)
{
    __atomic_add_fetch(&admit_calls, 1, __ATOMIC_SEQ_CST);
    if (strcmp(node, "intruder") == 0) {
        snprintf(why, whylen, "node %s is not admitted by the brain", node);
        return false;
    }
    return true;
}

#define SRV_NODE "n2"
#define SRV_BOOT UINT64_C(0x2222)

/* A server transport, a client transport, their memory and a conn. */
struct pair {
    struct agent_transport *srv;        /* listens on rdma_addr */
    struct agent_transport *cli;        /* client only */
    uint8_t *sbuf;                      /* server's region */
    uint8_t *cbuf;                      /* client's region */
    struct agent_transport_region sreg; /* as the client is told */
    struct agent_transport_region creg; /* the client's own */
    struct agent_transport_conn *conn;  /* client -> server */
    uint16_t port;                      /* server's port */
};

static void *
big_alloc(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    ck_assert_ptr_ne(p, MAP_FAILED);
    return p;
}

static int
server_start(struct pair *p, uint16_t port, char *err, size_t errlen)
{
    struct agent_transport_config cfg = {
        .node = SRV_NODE,
        .boot_id = SRV_BOOT,
        .address = rdma_addr,
        .port = port,
        .slice = TEST_SLICE,
        .admit = test_admit,
    };
    int r;

    r = agent_transport_create(AGENT_TRANSPORT_VERBS, &cfg, &p->srv, err,
                               errlen);
    if (r < 0) {
        return r;
    }
    if (!p->sbuf) {
        p->sbuf = big_alloc(SRV_LEN);
    }
    r = agent_transport_register(p->srv, p->sbuf, SRV_LEN, &p->sreg, err,
                                 errlen);
    ck_assert_msg(r == 0, "server register: %s", err);
    ck_assert_uint_eq(p->sreg.addr, (uintptr_t)p->sbuf);
    ck_assert_uint_eq(p->sreg.len, SRV_LEN);
    ck_assert_uint_le(p->sreg.key, UINT32_MAX);
    p->port = agent_transport_port(p->srv);
    ck_assert_uint_ne(p->port, 0);
    return 0;
}

static void
client_start(struct pair *p, const char *node)
{
    /* Without a device the client takes the first one, which is the
     * right one where each host sees only its own (rxe-vm); native.sh
     * names it, since there every namespace sees every device. */
    struct agent_transport_config cfg = {
        .node = node,
        .boot_id = 0x1111,
        .device = getenv("MCOS_TEST_RDMA_DEVICE"),
        .slice = TEST_SLICE,
    };
    char err[256];
    int r;

    r = agent_transport_create(AGENT_TRANSPORT_VERBS, &cfg, &p->cli, err,
                               sizeof err);
    ck_assert_msg(r == 0, "client create: %d %s", r, err);
    p->cbuf = big_alloc(CLI_LEN);
    r = agent_transport_register(p->cli, p->cbuf, CLI_LEN, &p->creg, err,
                                 sizeof err);
    ck_assert_msg(r == 0, "client register: %s", err);
}

static void
connect_as(struct pair *p, const char *expect, uint64_t boot)
{
    struct agent_transport_peer peer = {
        .node = expect,
        .boot_id = boot,
        .address = rdma_addr,
        .port = p->port,
    };
    char err[256];
    int r;

    r = agent_transport_connect(p->cli, &peer, &p->conn, err, sizeof err);
    ck_assert_msg(r == 0, "connect: %d %s", r, err);
}

static void
pair_up(struct pair *p, const char *client_node)
{
    char err[256];
    int r;

    memset(p, 0, sizeof *p);
    r = server_start(p, 0, err, sizeof err);
    ck_assert_msg(r == 0, "server create on %s: %d %s", rdma_addr, r, err);
    client_start(p, client_node);
    connect_as(p, SRV_NODE, SRV_BOOT);
}

static void
pair_down(struct pair *p)
{
    if (p->conn) {
        agent_transport_disconnect(p->cli, p->conn);
    }
    agent_transport_destroy(p->cli);
    agent_transport_destroy(p->srv);
    munmap(p->sbuf, SRV_LEN);
    munmap(p->cbuf, CLI_LEN);
}

/* Posts one op and waits for it; returns its status. */
static int
run_op(struct pair *p, struct top *t)
{
    struct agent_transport_op *op = &t->op;
    int r = agent_transport_post(p->cli, p->conn, &op, 1);

    ck_assert_msg(r == 0, "post: %d %s", r, t->op.error);
    wait_ops(t, 1);
    ck_assert_int_eq(calls_of(t), 1);
    return t->op.status;
}

/* Writes len bytes at off and reads them back, checking both copies. */
static void
round_trip(struct pair *p, uint64_t len, uint64_t off)
{
    uint8_t *src = p->cbuf, *dst = p->cbuf + CLI_DST;
    struct top t;

    fill(src, len, len + off);
    op_init(&t, AGENT_TRANSPORT_WRITE, src, len, p->sreg, off);
    ck_assert_msg(run_op(p, &t) == 0, "write %llu: %s",
                  (unsigned long long)len, t.op.error);
    ck_assert_msg(fnv(p->sbuf + off, len) == fnv(src, len),
                  "the server's copy of %llu bytes differs",
                  (unsigned long long)len);
    memset(dst, 0, len);
    op_init(&t, AGENT_TRANSPORT_READ, dst, len, p->sreg, off);
    ck_assert_msg(run_op(p, &t) == 0, "read %llu: %s", (unsigned long long)len,
                  t.op.error);
    ck_assert_msg(fnv(dst, len) == fnv(src, len),
                  "the copy read back of %llu bytes differs",
                  (unsigned long long)len);
}

static void
wait_status(struct pair *p, int want, const char *needle)
{
    char err[AGENT_TRANSPORT_ERR_LEN] = "";
    int r = 0;

    for (int i = 0; i < WAIT_S * 100; i++) {
        r = agent_transport_conn_status(p->cli, p->conn, err, sizeof err);
        if (r != 0) {
            break;
        }
        usleep(10000);
    }
    ck_assert_msg(r == want, "conn status %d (%s), want %d", r, err, want);
    ck_assert_msg(strstr(err, needle), "'%s' lacks '%s'", err, needle);
}

static struct agent_transport_stats
stats_of(struct agent_transport *t)
{
    struct agent_transport_stats s;

    agent_transport_stats(t, &s);
    return s;
}

/* --- Data path ---------------------------------------------------------
 */

static const uint64_t sizes[] = {1, 4096, MIB + 1, 4 * MIB};

/* A dma-buf the NIC cannot use (a memfd is no dma-buf; rxe may not take
 * dma-bufs at all): refused with the device named, nothing registered.
 * The fabric falls back to plain registration on this error. */
START_TEST(test_dmabuf_refused)
{
    struct agent_transport_region g;
    char err[300] = "", want[128];
    struct pair p;
    int fd, r;

    pair_up(&p, "n1");
    ck_assert(agent_transport_device_memory(p.srv));
    fd = memfd_create("not-a-dmabuf", MFD_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, 4096), 0);
    r = agent_transport_register_dmabuf(p.srv, p.sbuf, 4096, fd, 0, &g, err,
                                        sizeof err);
    close(fd);
    ck_assert_int_lt(r, 0);
    ck_assert_msg(!strncmp(err, "verbs: cannot register 4096 bytes at ", 37),
                  "%s", err);
    snprintf(want, sizeof want,
             " (dma-buf) with %s: ", stats_of(p.srv).nic[0].name);
    ck_assert_msg(strstr(err, want), "'%s' lacks '%s'", err, want);
    /* The arena's registration still works for transfers. */
    round_trip(&p, 4096, 0);
    pair_down(&p);
}
END_TEST

START_TEST(test_round_trip)
{
    struct agent_transport_stats sc, ss;
    struct pair p;
    uint64_t len = sizes[_i];

    pair_up(&p, "n1");
    round_trip(&p, len, 12345);
    sc = stats_of(p.cli);
    ss = stats_of(p.srv);
    ck_assert_uint_eq(sc.ops, 2);
    ck_assert_uint_eq(sc.op_errors, 0);
    ck_assert_uint_eq(sc.bytes_written, len);
    ck_assert_uint_eq(sc.bytes_read, len);
    ck_assert_uint_eq(sc.connects, 1);
    ck_assert_uint_eq(sc.cpu_copy_bytes, 0);
    ck_assert_uint_eq(ss.connects, 1);
    ck_assert_uint_eq(ss.refused, 0);
    ck_assert_uint_eq(ss.cpu_copy_bytes, 0);
    pair_down(&p);
}
END_TEST

START_TEST(test_batch)
{
    struct agent_transport_op *pt[16];
    struct top t[16];
    uint8_t *src = NULL, *dst = NULL;
    struct pair p;
    uint64_t len;

    pair_up(&p, "n1");
    src = p.cbuf;
    dst = p.cbuf + CLI_DST;
    for (int i = 0; i < 16; i++) {
        len = 64 * 1024 + (uint64_t)i * 1000;
        fill(src + (uint64_t)i * MIB, len, (uint64_t)i + 7);
        op_init(&t[i], AGENT_TRANSPORT_WRITE, src + (uint64_t)i * MIB, len,
                p.sreg, (uint64_t)i * MIB + 3);
        pt[i] = &t[i].op;
    }
    ck_assert_int_eq(agent_transport_post(p.cli, p.conn, pt, 16), 0);
    wait_ops(t, 16);
    for (int i = 0; i < 16; i++) {
        ck_assert_msg(t[i].op.status == 0, "write %d: %s", i, t[i].op.error);
        ck_assert_int_eq(calls_of(&t[i]), 1);
    }
    memset(dst, 0, 16 * MIB);
    for (int i = 0; i < 16; i++) {
        len = 64 * 1024 + (uint64_t)i * 1000;
        op_init(&t[i], AGENT_TRANSPORT_READ, dst + (uint64_t)i * MIB, len,
                p.sreg, (uint64_t)i * MIB + 3);
    }
    ck_assert_int_eq(agent_transport_post(p.cli, p.conn, pt, 16), 0);
    wait_ops(t, 16);
    for (int i = 0; i < 16; i++) {
        len = 64 * 1024 + (uint64_t)i * 1000;
        ck_assert_msg(t[i].op.status == 0, "read %d: %s", i, t[i].op.error);
        ck_assert_msg(fnv(dst + (uint64_t)i * MIB, len) ==
                          fnv(src + (uint64_t)i * MIB, len),
                      "op %d read back different bytes", i);
    }
    ck_assert_uint_eq(stats_of(p.cli).ops, 32);
    pair_down(&p);
}
END_TEST

/* --- Access errors -------------------------------------------------------
 */

START_TEST(test_wrong_key)
{
    struct agent_transport_region bad;
    struct pair p;
    struct top t;

    pair_up(&p, "n1");
    round_trip(&p, 4096, 0);
    bad = p.sreg;
    bad.key ^= 0x5a5a00;
    op_init(&t, AGENT_TRANSPORT_WRITE, p.cbuf, 4096, bad, 0);
    ck_assert_int_eq(run_op(&p, &t), -EACCES);
    note("wrong key", t.op.status, t.op.error);
    ck_assert_msg(strstr(t.op.error, "remote access error"), "%s", t.op.error);
    wait_status(&p, -EACCES, "wrong key");
    /* A broken connection fails later ops with its error. */
    op_init(&t, AGENT_TRANSPORT_READ, p.cbuf, 16, p.sreg, 0);
    ck_assert_int_eq(run_op(&p, &t), -EACCES);
    ck_assert_uint_eq(stats_of(p.cli).op_errors, 2);
    pair_down(&p);
}
END_TEST

/* The peer's NIC, not the generic check, refuses a range beyond its MR:
 * the region descriptor is forged larger than what was registered. */
START_TEST(test_target_range)
{
    struct agent_transport_region forged;
    struct pair p;
    struct top t;

    pair_up(&p, "n1");
    round_trip(&p, 1, 0);
    forged = p.sreg;
    forged.len = 2 * SRV_LEN;
    op_init(&t, _i ? AGENT_TRANSPORT_READ : AGENT_TRANSPORT_WRITE, p.cbuf,
            65536, forged, SRV_LEN + 4096);
    ck_assert_int_eq(run_op(&p, &t), -EACCES);
    note("target range", t.op.status, t.op.error);
    ck_assert_msg(strstr(t.op.error, "outside the peer's region"), "%s",
                  t.op.error);
    wait_status(&p, -EACCES, "remote access error");
    pair_down(&p);
}
END_TEST

START_TEST(test_generic_range)
{
    struct top t;
    struct agent_transport_op *pt = &t.op;
    struct pair p;

    pair_up(&p, "n1");
    op_init(&t, AGENT_TRANSPORT_WRITE, p.cbuf, 100, p.sreg, SRV_LEN - 10);
    ck_assert_int_eq(agent_transport_post(p.cli, p.conn, &pt, 1), -ERANGE);
    ck_assert_msg(strstr(t.op.error, "beyond remote region"), "%s",
                  t.op.error);
    /* A verbs rkey is 32 bits; a TCP-style 64-bit key is refused. */
    op_init(&t, AGENT_TRANSPORT_WRITE, p.cbuf, 100, p.sreg, 0);
    t.op.remote.key |= UINT64_C(1) << 40;
    ck_assert_int_eq(agent_transport_post(p.cli, p.conn, &pt, 1), -EINVAL);
    ck_assert_msg(strstr(t.op.error, "not an RDMA rkey"), "%s", t.op.error);
    usleep(100000);
    ck_assert_int_eq(calls_of(&t), 0);
    round_trip(&p, 4096, 0);
    pair_down(&p);
}
END_TEST

/* A withdrawn registration refuses the peer's later accesses. */
START_TEST(test_dereg_refuses)
{
    struct pair p;
    struct top t;

    pair_up(&p, "n1");
    round_trip(&p, 4096, 0);
    ck_assert_int_eq(agent_transport_deregister(p.srv, p.sreg.id), 0);
    op_init(&t, AGENT_TRANSPORT_READ, p.cbuf + CLI_DST, 4096, p.sreg, 0);
    ck_assert_int_eq(run_op(&p, &t), -EACCES);
    note("after deregister", t.op.status, t.op.error);
    pair_down(&p);
}
END_TEST

/* Completion callbacks may post: each one here posts the next op. */
#define CHAIN 20

static struct pair *chain_pair;
static struct top chain[CHAIN];

static void
chain_done(struct agent_transport_op *op, void *arg)
{
    struct top *t = arg;
    struct agent_transport_op *next;
    size_t i = (size_t)(t - chain);

    if (op->status == 0 && i + 1 < CHAIN) {
        next = &chain[i + 1].op;
        ck_assert_int_eq(
            agent_transport_post(chain_pair->cli, chain_pair->conn, &next, 1),
            0);
    }
    on_done(op, arg);
}

START_TEST(test_post_from_callback)
{
    struct agent_transport_op *first = &chain[0].op;
    struct pair p;

    pair_up(&p, "n1");
    chain_pair = &p;
    fill(p.cbuf, CHAIN * 4096, 5);
    for (int i = 0; i < CHAIN; i++) {
        op_init(&chain[i], AGENT_TRANSPORT_WRITE, p.cbuf + i * 4096, 4096,
                p.sreg, (uint64_t)i * 4096);
        chain[i].op.done = chain_done;
    }
    ck_assert_int_eq(agent_transport_post(p.cli, p.conn, &first, 1), 0);
    wait_ops(chain, CHAIN);
    for (int i = 0; i < CHAIN; i++) {
        ck_assert_msg(chain[i].op.status == 0, "op %d: %s", i,
                      chain[i].op.error);
    }
    ck_assert_int_eq(memcmp(p.sbuf, p.cbuf, CHAIN * 4096), 0);
    pair_down(&p);
}
END_TEST

/* Four threads post at once, two on each of two connections. */
#define POSTERS     4
#define POSTER_OPS  64
#define POSTER_SIZE 4096

struct poster {
    struct pair *p;                    /* the transports */
    struct agent_transport_conn *conn; /* this poster's connection */
    int index;                         /* 0..POSTERS-1 */
    struct top t[POSTER_OPS];          /* its ops */
};

static void *
poster_main(void *arg)
{
    struct poster *ps = arg;
    struct agent_transport_op *op;

    for (int i = 0; i < POSTER_OPS; i++) {
        uint64_t off = ((uint64_t)ps->index * POSTER_OPS + i) * POSTER_SIZE;

        op_init(&ps->t[i], AGENT_TRANSPORT_WRITE, ps->p->cbuf + off,
                POSTER_SIZE, ps->p->sreg, off);
        op = &ps->t[i].op;
        ck_assert_int_eq(agent_transport_post(ps->p->cli, ps->conn, &op, 1),
                         0);
    }
    return NULL;
}

START_TEST(test_concurrent_posters)
{
    static struct poster ps[POSTERS];
    struct agent_transport_conn *second;
    struct agent_transport_peer peer = {.node = SRV_NODE};
    pthread_t th[POSTERS];
    uint64_t total = (uint64_t)POSTERS * POSTER_OPS * POSTER_SIZE;
    char err[256];
    struct pair p;

    pair_up(&p, "n1");
    peer.address = rdma_addr;
    peer.port = p.port;
    ck_assert_int_eq(
        agent_transport_connect(p.cli, &peer, &second, err, sizeof err), 0);
    fill(p.cbuf, total, 9);
    for (int i = 0; i < POSTERS; i++) {
        ps[i].p = &p;
        ps[i].conn = i % 2 ? second : p.conn;
        ps[i].index = i;
        ck_assert_int_eq(pthread_create(&th[i], NULL, poster_main, &ps[i]), 0);
    }
    for (int i = 0; i < POSTERS; i++) {
        pthread_join(th[i], NULL);
        wait_ops(ps[i].t, POSTER_OPS);
        for (int j = 0; j < POSTER_OPS; j++) {
            ck_assert_msg(ps[i].t[j].op.status == 0, "%d/%d: %s", i, j,
                          ps[i].t[j].op.error);
            ck_assert_int_eq(calls_of(&ps[i].t[j]), 1);
        }
    }
    ck_assert_int_eq(memcmp(p.sbuf, p.cbuf, total), 0);
    ck_assert_uint_eq(stats_of(p.srv).connects, 2);
    ck_assert_uint_eq(stats_of(p.cli).bytes_written, total);
    agent_transport_disconnect(p.cli, second);
    pair_down(&p);
}
END_TEST

/* --- Handshake -----------------------------------------------------------
 */

START_TEST(test_not_admitted)
{
    struct pair p;
    struct top t;

    pair_up(&p, "intruder");
    /* Posted while connecting: it waits, then fails with the refusal. */
    op_init(&t, AGENT_TRANSPORT_WRITE, p.cbuf, 4096, p.sreg, 0);
    ck_assert_int_eq(run_op(&p, &t), -EACCES);
    note("not admitted", t.op.status, t.op.error);
    ck_assert_msg(strstr(t.op.error, "node intruder is not admitted by "
                                     "the brain"),
                  "%s", t.op.error);
    wait_status(&p, -EACCES, "not admitted by the brain");
    ck_assert_uint_eq(stats_of(p.srv).refused, 1);
    ck_assert_uint_eq(stats_of(p.srv).connects, 0);
    ck_assert_uint_eq(stats_of(p.cli).connect_errors, 1);
    ck_assert_uint_eq(stats_of(p.cli).connects, 0);
    pair_down(&p);
}
END_TEST

START_TEST(test_wrong_identity)
{
    struct pair p;
    struct top t;
    char err[256];

    pair_up(&p, "n1");
    agent_transport_disconnect(p.cli, p.conn);
    connect_as(&p, "n3", SRV_BOOT);
    op_init(&t, AGENT_TRANSPORT_READ, p.cbuf, 4096, p.sreg, 0);
    ck_assert_int_eq(run_op(&p, &t), -EPROTO);
    ck_assert_msg(strstr(t.op.error, "peer answered as n2, expected n3"), "%s",
                  t.op.error);
    ck_assert_int_eq(
        agent_transport_conn_status(p.cli, p.conn, err, sizeof err), -EPROTO);
    agent_transport_disconnect(p.cli, p.conn);

    /* The right node after a restart: a new boot id. */
    connect_as(&p, SRV_NODE, SRV_BOOT + 1);
    op_init(&t, AGENT_TRANSPORT_READ, p.cbuf, 4096, p.sreg, 0);
    ck_assert_int_eq(run_op(&p, &t), -EPROTO);
    note("restarted peer", t.op.status, t.op.error);
    ck_assert_msg(strstr(t.op.error, "boot id"), "%s", t.op.error);
    agent_transport_disconnect(p.cli, p.conn);

    /* Boot id 0 accepts any. */
    connect_as(&p, SRV_NODE, 0);
    round_trip(&p, 4096, 0);
    pair_down(&p);
}
END_TEST

/* Connects with librdmacm directly, sending pdata as the handshake, and
 * returns the reject's reason text ("" if accepted). */
static void
raw_connect(const char *port_s, const void *pdata, uint8_t len, char *why,
            size_t whylen)
{
    struct rdma_event_channel *ec = rdma_create_event_channel();
    struct rdma_conn_param param = {0};
    struct ibv_qp_init_attr qa = {0};
    struct rdma_cm_event *ev;
    struct rdma_cm_id *id;
    struct addrinfo *ai;
    struct pollfd pfd;
    enum rdma_cm_event_type want[] = {RDMA_CM_EVENT_ADDR_RESOLVED,
                                      RDMA_CM_EVENT_ROUTE_RESOLVED,
                                      RDMA_CM_EVENT_REJECTED};

    ck_assert_ptr_nonnull(ec);
    ck_assert_int_eq(rdma_create_id(ec, &id, NULL, RDMA_PS_TCP), 0);
    ck_assert_int_eq(getaddrinfo(rdma_addr, port_s, NULL, &ai), 0);
    ck_assert_int_eq(rdma_resolve_addr(id, NULL, ai->ai_addr, 2000), 0);
    freeaddrinfo(ai);
    for (int step = 0; step < 3; step++) {
        pfd = (struct pollfd){.fd = ec->fd, .events = POLLIN};
        ck_assert_msg(poll(&pfd, 1, WAIT_S * 1000) == 1,
                      "no rdma_cm event at step %d", step);
        ck_assert_int_eq(rdma_get_cm_event(ec, &ev), 0);
        ck_assert_msg(ev->event == want[step], "got %s, want %s",
                      rdma_event_str(ev->event), rdma_event_str(want[step]));
        if (step == 2) {
            const uint8_t *d = ev->param.conn.private_data;
            uint8_t n;

            /* magic "MCOV", version, errno, reason length, reserved */
            ck_assert_uint_ge(ev->param.conn.private_data_len, 8);
            ck_assert_int_eq(memcmp(d, "MCOV", 4), 0);
            n = d[6];
            snprintf(why, whylen, "%.*s", (int)n, (const char *)d + 8);
        }
        rdma_ack_cm_event(ev);
        if (step == 0) {
            ck_assert_int_eq(rdma_resolve_route(id, 2000), 0);
        } else if (step == 1) {
            qa.qp_type = IBV_QPT_RC;
            qa.cap.max_send_wr = qa.cap.max_recv_wr = 1;
            qa.cap.max_send_sge = qa.cap.max_recv_sge = 1;
            ck_assert_int_eq(rdma_create_qp(id, NULL, &qa), 0);
            param.private_data = pdata;
            param.private_data_len = len;
            ck_assert_int_eq(rdma_connect(id, &param), 0);
        }
    }
    rdma_destroy_qp(id);
    rdma_destroy_id(id);
    rdma_destroy_event_channel(ec);
}

START_TEST(test_malformed_handshake)
{
    uint8_t garbage[56], bad_version[56] = {'M', 'C', 'O', 'V', 99, 2};
    uint8_t bad_name[56] = {'M', 'C', 'O', 'V', 1, 200};
    char port_s[8], why[160];
    struct pair p;
    int admitted;

    pair_up(&p, "n1");
    round_trip(&p, 1, 0);
    admitted = __atomic_load_n(&admit_calls, __ATOMIC_SEQ_CST);
    snprintf(port_s, sizeof port_s, "%u", p.port);
    memset(garbage, 0xa5, sizeof garbage);
    raw_connect(port_s, garbage, sizeof garbage, why, sizeof why);
    ck_assert_msg(strstr(why, "bad handshake magic"), "%s", why);
    raw_connect(port_s, bad_version, sizeof bad_version, why, sizeof why);
    ck_assert_msg(strstr(why, "version 99"), "%s", why);
    raw_connect(port_s, bad_name, sizeof bad_name, why, sizeof why);
    ck_assert_msg(strstr(why, "name length 200"), "%s", why);
    note("bad name length", 0, why);
    raw_connect(port_s, "MC", 2, why, sizeof why);
    ck_assert_msg(strstr(why, "bad handshake magic"), "%s", why);
    ck_assert_uint_eq(stats_of(p.srv).refused, 4);
    /* Malformed requests never reach admission. */
    ck_assert_int_eq(__atomic_load_n(&admit_calls, __ATOMIC_SEQ_CST),
                     admitted);
    /* The listener still serves a good client, old and new. */
    round_trip(&p, 4096, 100);
    agent_transport_disconnect(p.cli, p.conn);
    connect_as(&p, SRV_NODE, SRV_BOOT);
    round_trip(&p, 4096, 200);
    ck_assert_uint_eq(stats_of(p.srv).connects, 2);
    pair_down(&p);
}
END_TEST

START_TEST(test_name_limits)
{
    char name40[41], name41[42], err[256];
    struct agent_transport_conn *c = NULL;
    struct agent_transport_peer peer = {.node = SRV_NODE};
    struct pair p;

    memset(name40, 'a', 40);
    name40[40] = '\0';
    memset(name41, 'b', 41);
    name41[41] = '\0';
    /* 40 bytes fit the RoCE request. */
    pair_up(&p, name40);
    round_trip(&p, 1, 0);
    agent_transport_destroy(p.cli);
    munmap(p.cbuf, CLI_LEN);
    p.conn = NULL;
    /* 41 do not. */
    client_start(&p, name41);
    peer.address = rdma_addr;
    peer.port = p.port;
    ck_assert_int_eq(
        agent_transport_connect(p.cli, &peer, &c, err, sizeof err),
        -ENAMETOOLONG);
    ck_assert_msg(strstr(err, "TCP transport carries any length"), "%s", err);
    ck_assert_ptr_null(c);
    pair_down(&p);
}
END_TEST

/* --- Failures --------------------------------------------------------------
 */

#define KILL_OPS 64

/* The server goes away with writes in flight and queued: every op
 * completes, the last with an error; a new server on the same port and a
 * fresh connection work. */
START_TEST(test_peer_killed)
{
    static struct top t[KILL_OPS];
    struct agent_transport_op *pt[KILL_OPS];
    char err[256];
    struct pair p;
    int r;

    pair_up(&p, "n1");
    round_trip(&p, 4096, 0);
    for (int i = 0; i < KILL_OPS; i++) {
        op_init(&t[i], AGENT_TRANSPORT_WRITE, p.cbuf, 16 * MIB, p.sreg, 0);
        pt[i] = &t[i].op;
    }
    ck_assert_int_eq(agent_transport_post(p.cli, p.conn, pt, KILL_OPS), 0);
    agent_transport_destroy(p.srv);
    p.srv = NULL;
    wait_ops(t, KILL_OPS);
    for (int i = 0; i < KILL_OPS; i++) {
        ck_assert_int_eq(calls_of(&t[i]), 1);
    }
    ck_assert_msg(t[KILL_OPS - 1].op.status < 0, "the last write: %d",
                  t[KILL_OPS - 1].op.status);
    note("peer killed, first op", t[0].op.status, t[0].op.error);
    note("peer killed, last op", t[KILL_OPS - 1].op.status,
         t[KILL_OPS - 1].op.error);
    ck_assert_int_lt(
        agent_transport_conn_status(p.cli, p.conn, err, sizeof err), 0);

    /* The peer restarts on the same port; the caller reconnects. */
    r = server_start(&p, p.port, err, sizeof err);
    ck_assert_msg(r == 0, "restart on port %u: %d %s", p.port, r, err);
    agent_transport_disconnect(p.cli, p.conn);
    connect_as(&p, SRV_NODE, SRV_BOOT);
    round_trip(&p, MIB + 1, 77);
    pair_down(&p);
}
END_TEST

#define QUEUED_OPS 64

START_TEST(test_disconnect_queued)
{
    static struct top t[QUEUED_OPS];
    struct agent_transport_op *pt[QUEUED_OPS];
    struct pair p;
    int cancelled = 0;

    pair_up(&p, "n1");
    if (_i == 1) {
        /* Established, with more slices than the send queue holds. */
        round_trip(&p, 4096, 0);
    }
    for (int i = 0; i < QUEUED_OPS; i++) {
        op_init(&t[i], AGENT_TRANSPORT_WRITE, p.cbuf, MIB, p.sreg, 0);
        pt[i] = &t[i].op;
    }
    ck_assert_int_eq(agent_transport_post(p.cli, p.conn, pt, QUEUED_OPS), 0);
    agent_transport_disconnect(p.cli, p.conn);
    p.conn = NULL;
    /* Every op completed before disconnect returned. */
    for (int i = 0; i < QUEUED_OPS; i++) {
        ck_assert_int_eq(calls_of(&t[i]), 1);
        ck_assert_msg(t[i].op.status == 0 || t[i].op.status == -ECANCELED,
                      "op %d: %d %s", i, t[i].op.status, t[i].op.error);
        cancelled += t[i].op.status == -ECANCELED;
    }
    ck_assert_int_eq(t[QUEUED_OPS - 1].op.status, -ECANCELED);
    ck_assert_int_gt(cancelled, 0);
    pair_down(&p);
}
END_TEST

START_TEST(test_no_listener)
{
    struct pair p;
    struct top t;
    uint16_t port;

    pair_up(&p, "n1");
    round_trip(&p, 1, 0);
    port = p.port;
    agent_transport_disconnect(p.cli, p.conn);
    agent_transport_destroy(p.srv);
    p.srv = NULL;
    p.port = port;
    connect_as(&p, SRV_NODE, 0);
    op_init(&t, AGENT_TRANSPORT_WRITE, p.cbuf, 1, p.sreg, 0);
    ck_assert_int_eq(run_op(&p, &t), -ECONNREFUSED);
    note("no listener", t.op.status, t.op.error);
    wait_status(&p, -ECONNREFUSED, "nothing listens");
    ck_assert_uint_eq(stats_of(p.cli).connect_errors, 1);
    pair_down(&p);
}
END_TEST

START_TEST(test_create_errors)
{
    struct agent_transport_config cfg = {.node = "n1", .device = "nosuch0"};
    struct agent_transport *t = NULL;
    char err[256];
    struct pair p;
    int r;

    r = agent_transport_create(AGENT_TRANSPORT_VERBS, &cfg, &t, err,
                               sizeof err);
    ck_assert_int_eq(r, -ENODEV);
    ck_assert_msg(strstr(err, "no RDMA device named nosuch0"), "%s", err);
    ck_assert_ptr_null(t);

    memset(&p, 0, sizeof p);
    ck_assert_int_eq(server_start(&p, 0, err, sizeof err), 0);
    cfg = (struct agent_transport_config){
        .node = "n9",
        .address = rdma_addr,
        .port = p.port,
        .admit = test_admit,
    };
    r = agent_transport_create(AGENT_TRANSPORT_VERBS, &cfg, &t, err,
                               sizeof err);
    ck_assert_int_eq(r, -EADDRINUSE);
    ck_assert_msg(strstr(err, "in use"), "%s", err);
    cfg.device = "nosuch0";
    cfg.port = 0;
    r = agent_transport_create(AGENT_TRANSPORT_VERBS, &cfg, &t, err,
                               sizeof err);
    ck_assert_int_eq(r, -EINVAL);
    ck_assert_msg(strstr(err, "not the configured nosuch0"), "%s", err);
    agent_transport_destroy(p.srv);
    munmap(p.sbuf, SRV_LEN);
}
END_TEST

/* --- Two NICs ----------------------------------------------------------
 */

/* A transport on both devices: listens on rdma_addr and rdma_addr2. */
static int
two_nic_create(const char *node, uint64_t boot, uint16_t port,
               struct agent_transport **out, char *err, size_t errlen)
{
    const char *more[1] = {rdma_addr2};
    struct agent_transport_config cfg = {
        .node = node,
        .boot_id = boot,
        .address = rdma_addr,
        .more_addresses = more,
        .n_more_addresses = 1,
        .port = port,
        .slice = TEST_SLICE,
        .admit = test_admit,
    };

    return agent_transport_create(AGENT_TRANSPORT_VERBS, &cfg, out, err,
                                  errlen);
}

/* Server and client each on both devices, connected over two paths;
 * cli_nics 1 gives the client just the first device. */
static void
two_nic_up(struct pair *p, unsigned cli_nics)
{
    struct agent_transport_peer peer = {
        .node = SRV_NODE,
        .boot_id = SRV_BOOT,
        .address = rdma_addr,
        .n_more = 1,
    };
    char err[256];
    int r;

    memset(p, 0, sizeof *p);
    r = two_nic_create(SRV_NODE, SRV_BOOT, 0, &p->srv, err, sizeof err);
    ck_assert_msg(r == 0, "server on %s and %s: %d %s", rdma_addr, rdma_addr2,
                  r, err);
    p->sbuf = big_alloc(SRV_LEN);
    r = agent_transport_register(p->srv, p->sbuf, SRV_LEN, &p->sreg, err,
                                 sizeof err);
    ck_assert_msg(r == 0, "server register: %s", err);
    /* One MR per device, one key per NIC; the first is `key`. */
    ck_assert_uint_eq(p->sreg.nkeys, 2);
    ck_assert_uint_eq(p->sreg.keys[0], p->sreg.key);
    p->port = agent_transport_port(p->srv);
    if (cli_nics == 2) {
        r = two_nic_create("n1", 0x1111, 0, &p->cli, err, sizeof err);
        ck_assert_msg(r == 0, "client: %d %s", r, err);
        p->cbuf = big_alloc(CLI_LEN);
        r = agent_transport_register(p->cli, p->cbuf, CLI_LEN, &p->creg, err,
                                     sizeof err);
        ck_assert_msg(r == 0, "client register: %s", err);
    } else {
        client_start(p, "n1");
    }
    peer.port = p->port;
    peer.more[0].address = rdma_addr2;
    peer.more[0].port = p->port;
    r = agent_transport_connect(p->cli, &peer, &p->conn, err, sizeof err);
    ck_assert_msg(r == 0, "connect: %d %s", r, err);
}

/* A 4 MiB write and read (16 slices each way) use both NICs. */
START_TEST(test_two_nic_stripe)
{
    struct agent_transport_stats sc;
    uint64_t len = 4 * MIB + (_i ? 1 : 0);
    uint64_t slices = 2 * ((len + TEST_SLICE - 1) / TEST_SLICE);
    struct pair p;

    two_nic_up(&p, 2);
    round_trip(&p, len, 4096);
    sc = stats_of(p.cli);
    ck_assert_uint_eq(sc.ops, 2);
    ck_assert_uint_eq(sc.op_errors, 0);
    ck_assert_uint_eq(sc.connects, 2); /* one QP per path */
    ck_assert_uint_eq(sc.n_nics, 2);
    ck_assert_str_ne(sc.nic[0].name, sc.nic[1].name);
    note("nic 0", (int)sc.nic[0].slices, sc.nic[0].name);
    note("nic 1", (int)sc.nic[1].slices, sc.nic[1].name);
    ck_assert_uint_gt(sc.nic[0].slices, 0);
    ck_assert_uint_gt(sc.nic[1].slices, 0);
    ck_assert_uint_eq(sc.nic[0].slices + sc.nic[1].slices, slices);
    ck_assert_uint_eq(sc.nic[0].bytes + sc.nic[1].bytes, 2 * len);
    ck_assert_uint_eq(stats_of(p.srv).connects, 2);
    pair_down(&p);
}
END_TEST

/* A region with just `key` (a peer with one NIC, or an old one): every
 * slice goes over the first path. */
START_TEST(test_two_nic_one_key)
{
    struct agent_transport_stats sc;
    struct pair p;

    two_nic_up(&p, 2);
    p.sreg.nkeys = 0;
    round_trip(&p, 2 * MIB, 0);
    sc = stats_of(p.cli);
    ck_assert_uint_eq(sc.nic[0].slices, 2 * (2 * MIB / TEST_SLICE));
    ck_assert_uint_eq(sc.nic[1].slices, 0);
    pair_down(&p);
}
END_TEST

/* A client with one NIC reaches a server with two over one path. */
START_TEST(test_two_nic_server_only)
{
    struct agent_transport_stats sc;
    struct pair p;

    two_nic_up(&p, 1);
    round_trip(&p, MIB + 1, 3);
    sc = stats_of(p.cli);
    ck_assert_uint_eq(sc.n_nics, 1);
    ck_assert_uint_eq(sc.connects, 1);
    ck_assert_uint_eq(sc.nic[0].bytes, 2 * (MIB + 1));
    pair_down(&p);
}
END_TEST

/* The second NIC's path fails (its key is wrong): the slices it had are
 * posted again on the first path, the op succeeds with the right bytes,
 * and the connection goes on over the first path. */
START_TEST(test_two_nic_path_fails)
{
    struct agent_transport_region bad;
    struct agent_transport_stats sc;
    char err[AGENT_TRANSPORT_ERR_LEN];
    struct pair p;
    struct top t;

    two_nic_up(&p, 2);
    bad = p.sreg;
    bad.keys[1] ^= 0x5a5a00;
    fill(p.cbuf, 2 * MIB, 9);
    op_init(&t, AGENT_TRANSPORT_WRITE, p.cbuf, 2 * MIB, bad, 0);
    ck_assert_msg(run_op(&p, &t) == 0, "write: %d %s", t.op.status,
                  t.op.error);
    ck_assert_msg(fnv(p.sbuf, 2 * MIB) == fnv(p.cbuf, 2 * MIB),
                  "the server's copy differs");
    sc = stats_of(p.cli);
    ck_assert_uint_ge(sc.nic[1].slice_errors, 1);
    ck_assert_uint_ge(sc.slice_retries, 1);
    ck_assert_uint_eq(sc.op_errors, 0);
    ck_assert_uint_eq(sc.nic[0].bytes + sc.nic[1].bytes, 2 * MIB);
    /* Still connected: the first path carries what follows. */
    ck_assert_int_eq(
        agent_transport_conn_status(p.cli, p.conn, err, sizeof err), 0);
    round_trip(&p, 2 * MIB, 0);
    ck_assert_uint_eq(stats_of(p.cli).nic[1].slices, sc.nic[1].slices);
    pair_down(&p);
}
END_TEST

/* Both paths fail (every key is wrong): the op fails with the access
 * error of the path that failed last, naming its device, and so does
 * the connection. */
START_TEST(test_two_nic_all_paths_fail)
{
    struct agent_transport_region bad;
    char err[AGENT_TRANSPORT_ERR_LEN];
    struct pair p;
    struct top t;

    two_nic_up(&p, 2);
    bad = p.sreg;
    bad.key = bad.keys[0] ^= 0x5a5a00;
    bad.keys[1] ^= 0x5a5a00;
    op_init(&t, AGENT_TRANSPORT_WRITE, p.cbuf, 2 * MIB, bad, 0);
    ck_assert_int_eq(run_op(&p, &t), -EACCES);
    note("every path fails", t.op.status, t.op.error);
    ck_assert_msg(strstr(t.op.error, "remote access error: wrong key or "
                                     "address outside the peer's region") &&
                      strstr(t.op.error, " via "),
                  "%s", t.op.error);
    ck_assert_int_eq(
        agent_transport_conn_status(p.cli, p.conn, err, sizeof err), -EACCES);
    ck_assert_msg(strstr(err, "remote access error"), "%s", err);
    ck_assert_uint_eq(stats_of(p.cli).op_errors, 1);
    pair_down(&p);
}
END_TEST

START_TEST(test_two_nic_create_errors)
{
    const char *more[4] = {rdma_addr2_alias, "127.0.0.1", rdma_addr2,
                           rdma_addr2};
    struct agent_transport_config cfg = {
        .node = "n1",
        .address = rdma_addr2,
        .more_addresses = more,
        .n_more_addresses = 1,
        .admit = test_admit,
    };
    struct agent_transport_peer peer = {
        .node = "n2", .address = rdma_addr, .port = 1, .n_more = 4};
    struct agent_transport *t = NULL;
    struct agent_transport_conn *c = NULL;
    char err[256], want[200];
    struct pair p;
    struct top op;
    int r;

    /* Two addresses on one device. */
    if (rdma_addr2_alias) {
        r = agent_transport_create(AGENT_TRANSPORT_VERBS, &cfg, &t, err,
                                   sizeof err);
        ck_assert_int_eq(r, -EINVAL);
        snprintf(want, sizeof want, "verbs: addresses %s and %s are both on",
                 rdma_addr2, rdma_addr2_alias);
        ck_assert_msg(strstr(err, want) &&
                          strstr(err, "; give one address per NIC"),
                      "%s", err);
        ck_assert_ptr_null(t);
    } else {
        printf("SKIP: two addresses on one device: "
               "MCOS_TEST_RDMA_ADDR2_ALIAS is unset\n");
    }
    /* An address on no RDMA device. */
    more[0] = "127.0.0.1";
    r = agent_transport_create(AGENT_TRANSPORT_VERBS, &cfg, &t, err,
                               sizeof err);
    ck_assert_int_lt(r, 0);
    ck_assert_msg(
        strstr(err, "verbs: address 127.0.0.1 is not on an RDMA device"), "%s",
        err);
    /* The generic checks. */
    cfg.n_more_addresses = 4;
    r = agent_transport_create(AGENT_TRANSPORT_VERBS, &cfg, &t, err,
                               sizeof err);
    ck_assert_int_eq(r, -EINVAL);
    ck_assert_str_eq(err, "transport: 5 NIC addresses; at most 4");
    cfg.n_more_addresses = 1;
    cfg.address = NULL;
    r = agent_transport_create(AGENT_TRANSPORT_VERBS, &cfg, &t, err,
                               sizeof err);
    ck_assert_int_eq(r, -EINVAL);
    ck_assert_str_eq(err,
                     "transport: further NIC addresses need a first address");

    two_nic_up(&p, 2);
    r = agent_transport_connect(p.cli, &peer, &c, err, sizeof err);
    ck_assert_int_eq(r, -EINVAL);
    ck_assert_str_eq(err, "transport: peer n2 has 5 NICs; at most 4");
    peer.n_more = 1;
    peer.more[0].address = "";
    r = agent_transport_connect(p.cli, &peer, &c, err, sizeof err);
    ck_assert_int_eq(r, -EINVAL);
    ck_assert_str_eq(err, "transport: peer n2: NIC 2 has no address and port");
    op_init(&op, AGENT_TRANSPORT_WRITE, p.cbuf, 1, p.sreg, 0);
    op.op.remote.nkeys = 5;
    r = agent_transport_post(p.cli, p.conn,
                             (struct agent_transport_op *[]){&op.op}, 1);
    ck_assert_int_eq(r, -EINVAL);
    ck_assert_str_eq(op.op.error, "remote region 1 carries 5 keys; at most 4");
    op.op.remote.nkeys = 2;
    op.op.remote.keys[1] = UINT64_C(1) << 40;
    r = agent_transport_post(p.cli, p.conn,
                             (struct agent_transport_op *[]){&op.op}, 1);
    ck_assert_int_eq(r, -EINVAL);
    ck_assert_str_eq(op.op.error,
                     "remote key 0x10000000000 of region 1 is not an RDMA "
                     "rkey");
    ck_assert_int_eq(calls_of(&op), 0);
    pair_down(&p);
}
END_TEST

static Suite *
transport_verbs_suite(void)
{
    Suite *s = suite_create("transport_verbs");
    TCase *tc = tcase_create("verbs");

    tcase_add_loop_test(tc, test_round_trip, 0,
                        sizeof sizes / sizeof sizes[0]);
    tcase_add_test(tc, test_batch);
    tcase_add_test(tc, test_dmabuf_refused);
    tcase_add_test(tc, test_wrong_key);
    tcase_add_loop_test(tc, test_target_range, 0, 2);
    tcase_add_test(tc, test_generic_range);
    tcase_add_test(tc, test_dereg_refuses);
    tcase_add_test(tc, test_post_from_callback);
    tcase_add_test(tc, test_concurrent_posters);
    tcase_add_test(tc, test_not_admitted);
    tcase_add_test(tc, test_wrong_identity);
    tcase_add_test(tc, test_malformed_handshake);
    tcase_add_test(tc, test_name_limits);
    tcase_add_test(tc, test_peer_killed);
    tcase_add_loop_test(tc, test_disconnect_queued, 0, 2);
    tcase_add_test(tc, test_no_listener);
    tcase_add_test(tc, test_create_errors);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    if (rdma_addr2) {
        tc = tcase_create("two_nics");
        tcase_add_loop_test(tc, test_two_nic_stripe, 0, 2);
        tcase_add_test(tc, test_two_nic_one_key);
        tcase_add_test(tc, test_two_nic_server_only);
        tcase_add_test(tc, test_two_nic_path_fails);
        tcase_add_test(tc, test_two_nic_all_paths_fail);
        tcase_add_test(tc, test_two_nic_create_errors);
        tcase_set_timeout(tc, 120);
        suite_add_tcase(s, tc);
    } else {
        printf("SKIP: the two-NIC cases: MCOS_TEST_RDMA_ADDR2 names no "
               "second RDMA device's address\n");
    }
    return s;
}

int
main(void)
{
    char why[256];
    SRunner *sr;
    int failed;

    if (!agent_transport_available(AGENT_TRANSPORT_VERBS, why, sizeof why)) {
        printf("SKIP: %s\n", why);
        return 77;
    }
    rdma_addr = getenv("MCOS_SELF_IP");
    if (!rdma_addr || !*rdma_addr) {
        rdma_addr = getenv("MCOS_TEST_RDMA_ADDR");
    }
    if (!rdma_addr || !*rdma_addr) {
        printf("SKIP: an RDMA device exists but neither MCOS_SELF_IP nor "
               "MCOS_TEST_RDMA_ADDR names the address it owns\n");
        return 77;
    }
    rdma_addr2 = getenv("MCOS_TEST_RDMA_ADDR2");
    if (rdma_addr2 && !*rdma_addr2) {
        rdma_addr2 = NULL;
    }
    rdma_addr2_alias = getenv("MCOS_TEST_RDMA_ADDR2_ALIAS");
    if (rdma_addr2_alias && !*rdma_addr2_alias) {
        rdma_addr2_alias = NULL;
    }
    sr = srunner_create(transport_verbs_suite());
    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
