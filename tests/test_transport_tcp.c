/*
 * Unit tests for the TCP transport (agent/transport_tcp.c): round trips
 * striped over several sockets, batches, every refusal the server makes,
 * handshakes checked against a raw socket, a peer that dies mid-transfer
 * and comes back on the same port, and synchronous disconnect.
 *
 * Everything runs on 127.0.0.1 with ephemeral ports.  Completions arrive
 * on the backends' threads; the test waits for them on a condition
 * variable, and for counters by polling them against a deadline.
 */
#include "transport.h"
#include "testutil.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <time.h>

#define SRV_NODE "n2"
#define SRV_BOOT UINT64_C(0x42)
#define CLI_NODE "c1"
#define CLI_BOOT UINT64_C(0x7)
#define KIB      (UINT64_C(1) << 10)
#define MIB      (UINT64_C(1) << 20)
#define WAIT_S   20

/* --- Helpers ------------------------------------------------------------
 */

/* Counts completions; callbacks run on the backend's thread. */
struct waiter {
    pthread_mutex_t m; /* guards done */
    pthread_cond_t cv; /* signalled on each completion */
    int done;          /* callbacks run */
};

static struct waiter W = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
                          0};

static void
on_done(struct agent_transport_op *op, void *arg)
{
    struct waiter *w = arg;

    (void)op;
    pthread_mutex_lock(&w->m);
    w->done++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->m);
}

static int
done_count(void)
{
    int n;

    pthread_mutex_lock(&W.m);
    n = W.done;
    pthread_mutex_unlock(&W.m);
    return n;
}

/* Waits until n completions in all have been counted. */
static void
wait_done(int n)
{
    struct timespec ts;
    int got;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WAIT_S;
    pthread_mutex_lock(&W.m);
    while (W.done < n) {
        if (pthread_cond_timedwait(&W.cv, &W.m, &ts) == ETIMEDOUT) {
            break;
        }
    }
    got = W.done;
    pthread_mutex_unlock(&W.m);
    ck_assert_msg(got >= n, "only %d of %d ops completed", got, n);
}

static uint64_t
stat_at(struct agent_transport *t, size_t off)
{
    struct agent_transport_stats st;
    uint64_t v;

    agent_transport_stats(t, &st);
    memcpy(&v, (char *)&st + off, sizeof v);
    return v;
}

/* Waits until a counter reaches want (counters only grow). */
static uint64_t
wait_stat_at(struct agent_transport *t, size_t off, uint64_t want,
             const char *name)
{
    struct timespec nap = {0, 1000000};
    uint64_t v = 0;

    for (int i = 0; i < WAIT_S * 1000; i++) {
        v = stat_at(t, off);
        if (v >= want) {
            return v;
        }
        nanosleep(&nap, NULL);
    }
    ck_abort_msg("%s stayed at %llu, want %llu", name, (unsigned long long)v,
                 (unsigned long long)want);
    return v;
}

#define STAT(t, m) stat_at((t), offsetof(struct agent_transport_stats, m))
#define WAIT_STAT(t, m, want)                                                 \
    wait_stat_at((t), offsetof(struct agent_transport_stats, m), (want), #m)

static uint64_t
xorshift(uint64_t *s)
{
    uint64_t x = *s;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void
fill(uint8_t *p, uint64_t len, uint64_t seed)
{
    uint64_t s = seed | 1, i = 0, v;

    for (; i + 8 <= len; i += 8) {
        v = xorshift(&s);
        memcpy(p + i, &v, 8);
    }
    v = xorshift(&s);
    for (; i < len; i++, v >>= 8) {
        p[i] = (uint8_t)v;
    }
}

/* FNV-1a over 64-bit words, then the tail bytes. */
static uint64_t
checksum(const uint8_t *p, uint64_t len)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325), i = 0, v;

    for (; i + 8 <= len; i += 8) {
        memcpy(&v, p + i, 8);
        h = (h ^ v) * UINT64_C(0x100000001b3);
    }
    for (; i < len; i++) {
        h = (h ^ p[i]) * UINT64_C(0x100000001b3);
    }
    return h;
}

static uint8_t *
mem_new(uint64_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    ck_assert_ptr_ne(p, MAP_FAILED);
    return p;
}

static void
mem_free(uint8_t *p, uint64_t len)
{
    if (p) {
        munmap(p, len);
    }
}

/* --- Admission ---------------------------------------------------------- */

/* The server's admit callback state.  `block` parks the server's thread
 * inside the callback until `release`, to hold transfers in flight. */
struct admit_ctl {
    pthread_mutex_t m; /* guards the rest */
    pthread_cond_t cv; /* signalled on every change */
    bool block;        /* park the next call */
    bool blocked;      /* a call is parked */
    bool release;      /* let it go */
    int calls;         /* calls so far */
};

static struct admit_ctl A = {.m = PTHREAD_MUTEX_INITIALIZER,
                             .cv = PTHREAD_COND_INITIALIZER};

static const char *const admitted[] = {CLI_NODE, "c2", NULL};

static bool
admit_cb(void *arg, const char *node, uint64_t boot_id, char *why,
         size_t whylen)
{
    struct admit_ctl *a = arg;

    (void)boot_id;
    pthread_mutex_lock(&a->m);
    a->calls++;
    if (a->block) {
        a->block = false;
        a->blocked = true;
        pthread_cond_broadcast(&a->cv);
        while (!a->release) {
            pthread_cond_wait(&a->cv, &a->m);
        }
        pthread_mutex_unlock(&a->m);
        snprintf(why, whylen, "node %s came while the server stopped", node);
        return false;
    }
    pthread_mutex_unlock(&a->m);
    for (int i = 0; admitted[i]; i++) {
        if (strcmp(node, admitted[i]) == 0) {
            return true;
        }
    }
    snprintf(why, whylen, "node %s is not in the admitted list", node);
    return false;
}

/* --- Fixture ------------------------------------------------------------
 */

/* A server n2 with one region, a client with one region, connected. */
struct fix {
    struct agent_transport *srv, *cli;
    uint8_t *smem, *cmem;                     /* registered memory */
    uint64_t slen, clen;                      /* its bytes */
    struct agent_transport_region sreg, creg; /* descriptors */
    struct agent_transport_conn *conn;        /* client -> server */
    uint16_t port;                            /* server's port */
};

static struct fix F;

static struct agent_transport *
make_server(const char *node, uint64_t boot, uint16_t port)
{
    struct agent_transport_config cfg = {
        .node = node,
        .boot_id = boot,
        .address = "127.0.0.1",
        .port = port,
        .admit = admit_cb,
        .admit_arg = &A,
    };
    struct agent_transport *t = NULL;
    char err[256] = "";
    int r;

    r = agent_transport_create(AGENT_TRANSPORT_TCP, &cfg, &t, err, sizeof err);
    ck_assert_msg(r == 0, "server: %d %s", r, err);
    ck_assert_uint_ne(agent_transport_port(t), 0);
    return t;
}

static struct agent_transport *
make_client(const char *node, unsigned conns, uint64_t slice)
{
    struct agent_transport_config cfg = {
        .node = node, .boot_id = CLI_BOOT, .conns = conns, .slice = slice};
    struct agent_transport *t = NULL;
    char err[256] = "";
    int r;

    r = agent_transport_create(AGENT_TRANSPORT_TCP, &cfg, &t, err, sizeof err);
    ck_assert_msg(r == 0, "client: %d %s", r, err);
    ck_assert_uint_eq(agent_transport_port(t), 0);
    return t;
}

static void
reg(struct agent_transport *t, void *p, uint64_t len,
    struct agent_transport_region *out)
{
    char err[256] = "";

    ck_assert_msg(agent_transport_register(t, p, len, out, err, sizeof err) ==
                      0,
                  "register: %s", err);
}

static struct agent_transport_conn *
connect_to(struct agent_transport *t, const char *node, uint64_t boot,
           uint16_t port)
{
    struct agent_transport_peer peer = {
        .node = node, .boot_id = boot, .address = "127.0.0.1", .port = port};
    struct agent_transport_conn *c = NULL;
    char err[256] = "";

    ck_assert_msg(agent_transport_connect(t, &peer, &c, err, sizeof err) == 0,
                  "connect: %s", err);
    ck_assert_ptr_nonnull(c);
    return c;
}

static void
fix_up(const char *cli_node, unsigned conns, uint64_t slice, uint64_t slen,
       uint64_t clen)
{
    memset(&F, 0, sizeof F);
    pthread_mutex_lock(&W.m);
    W.done = 0;
    pthread_mutex_unlock(&W.m);
    pthread_mutex_lock(&A.m);
    A.block = A.blocked = A.release = false;
    A.calls = 0;
    pthread_mutex_unlock(&A.m);
    F.srv = make_server(SRV_NODE, SRV_BOOT, 0);
    F.port = agent_transport_port(F.srv);
    F.cli = make_client(cli_node, conns, slice);
    F.slen = slen;
    F.clen = clen;
    F.smem = mem_new(slen);
    F.cmem = mem_new(clen);
    reg(F.srv, F.smem, slen, &F.sreg);
    reg(F.cli, F.cmem, clen, &F.creg);
    F.conn = connect_to(F.cli, SRV_NODE, SRV_BOOT, F.port);
}

static void
fix_down(void)
{
    if (F.conn) {
        agent_transport_disconnect(F.cli, F.conn);
    }
    agent_transport_destroy(F.cli);
    agent_transport_destroy(F.srv);
    mem_free(F.smem, F.slen);
    mem_free(F.cmem, F.clen);
    memset(&F, 0, sizeof F);
}

static void
op_set(struct agent_transport_op *op, int opcode, void *local, uint64_t len,
       const struct agent_transport_region *remote, uint64_t remote_off)
{
    memset(op, 0, sizeof *op);
    op->opcode = opcode;
    op->local = local;
    op->len = len;
    op->remote = *remote;
    op->remote_off = remote_off;
    op->done = on_done;
    op->arg = &W;
}

/* Posts n ops and waits for all of them. */
static void
run(struct agent_transport *t, struct agent_transport_conn *c,
    struct agent_transport_op **ops, size_t n)
{
    int base = done_count();

    ck_assert_int_eq(agent_transport_post(t, c, ops, n), 0);
    wait_done(base + (int)n);
}

/* Writes len bytes to the server at off, reads them back, checks. */
static void
roundtrip(struct agent_transport *cli, struct agent_transport_conn *c,
          uint8_t *src, uint8_t *dst, uint8_t *remote_mem,
          const struct agent_transport_region *remote, uint64_t off,
          uint64_t len, uint64_t seed)
{
    struct agent_transport_op op, *p = &op;

    fill(src, len, seed);
    memset(dst, 0, len);
    op_set(&op, AGENT_TRANSPORT_WRITE, src, len, remote, off);
    run(cli, c, &p, 1);
    ck_assert_msg(op.status == 0, "write %llu: %d %s", (unsigned long long)len,
                  op.status, op.error);
    ck_assert_uint_eq(checksum(remote_mem + off, len), checksum(src, len));
    op_set(&op, AGENT_TRANSPORT_READ, dst, len, remote, off);
    run(cli, c, &p, 1);
    ck_assert_msg(op.status == 0, "read %llu: %d %s", (unsigned long long)len,
                  op.status, op.error);
    ck_assert_uint_eq(checksum(dst, len), checksum(src, len));
}

/* --- Raw sockets -------------------------------------------------------- */

static int
raw_connect(uint16_t port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    struct timeval tv = {.tv_sec = 10};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    ck_assert_int_ge(fd, 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    return fd;
}

static void
raw_send(int fd, const void *p, size_t n)
{
    ck_assert_int_eq(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Reads n bytes; returns what it got before end of stream. */
static size_t
raw_recv(int fd, void *p, size_t n)
{
    size_t got = 0;

    while (got < n) {
        ssize_t r = recv(fd, (char *)p + got, n - got, 0);

        if (r <= 0) {
            ck_assert_msg(r == 0, "recv: %s", strerror(errno));
            break;
        }
        got += (size_t)r;
    }
    return got;
}

static void
le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void
le32(uint8_t *p, uint32_t v)
{
    le16(p, (uint16_t)v);
    le16(p + 2, (uint16_t)(v >> 16));
}

static void
le64(uint8_t *p, uint64_t v)
{
    le32(p, (uint32_t)v);
    le32(p + 4, (uint32_t)(v >> 32));
}

static unsigned
rd16(const uint8_t *p)
{
    return p[0] | (unsigned)p[1] << 8;
}

/* A client hello; the lengths are sent as given, the names only when
 * they are real. */
static size_t
hello(uint8_t *b, const char *magic, unsigned version, unsigned nlen,
      unsigned elen, const char *name, const char *expect)
{
    size_t n = 20;

    memcpy(b, magic, 6);
    le16(b + 6, (uint16_t)version);
    le16(b + 8, (uint16_t)nlen);
    le16(b + 10, (uint16_t)elen);
    le64(b + 12, CLI_BOOT);
    if (name && expect) {
        memcpy(b + n, name, nlen);
        n += nlen;
        memcpy(b + n, expect, elen);
        n += elen;
    }
    return n;
}

/* Reads a server hello: returns its status, fills its text. */
static unsigned
read_welcome(int fd, char *text, size_t textlen)
{
    uint8_t b[24 + 63 + 159];
    unsigned nlen, tlen;

    ck_assert_uint_eq(raw_recv(fd, b, 24), 24);
    ck_assert_mem_eq(b, "MCOSXP", 6);
    nlen = rd16(b + 10);
    tlen = rd16(b + 12);
    ck_assert_uint_le(nlen, 63);
    ck_assert_uint_le(tlen, 159);
    ck_assert_uint_eq(raw_recv(fd, b + 24, nlen + tlen), nlen + tlen);
    ck_assert_mem_eq(b + 24, SRV_NODE, nlen);
    snprintf(text, textlen, "%.*s", (int)tlen, (char *)b + 24 + nlen);
    return rd16(b + 8);
}

/* --- Generic layer ------------------------------------------------------
 */

START_TEST(test_available)
{
    char why[128] = "";

    ck_assert(agent_transport_available(AGENT_TRANSPORT_TCP, why, sizeof why));
    ck_assert_str_eq(agent_transport_kind_name(AGENT_TRANSPORT_TCP), "tcp");
}
END_TEST

static const struct {
    const char *name;    /* what the case shows */
    const char *address; /* listen address */
    bool same_port;      /* reuse a live listener's port */
    int want;            /* create's result */
    const char *text;    /* in its error */
} create_cases[] = {
    {"port in use", "127.0.0.1", true, -EADDRINUSE, "already in use"},
    {"not an address", "no.such.host", false, -EINVAL,
     "not an IPv4 or IPv6 address"},
};

START_TEST(test_create_errors)
{
    struct agent_transport *live = make_server(SRV_NODE, SRV_BOOT, 0);
    struct agent_transport_config cfg = {
        .node = "n5",
        .address = create_cases[_i].address,
        .port = create_cases[_i].same_port ? agent_transport_port(live) : 0,
        .admit = admit_cb,
        .admit_arg = &A,
    };
    struct agent_transport *t = NULL;
    char err[256] = "";
    int r;

    r = agent_transport_create(AGENT_TRANSPORT_TCP, &cfg, &t, err, sizeof err);
    ck_assert_err(r, create_cases[_i].want, err, create_cases[_i].text);
    ck_assert_ptr_null(t);
    agent_transport_destroy(live);
}
END_TEST

/* --- Data movement ------------------------------------------------------ */

static const struct {
    uint64_t len; /* op length */
    uint64_t off; /* offset in the server's region */
} rt_cases[] = {
    {1, 7},
    {4 * KIB, 4 * KIB},
    {MIB + 1, 12345},
    {16 * MIB, 0},
};

/* Four sockets and 256 KiB slices, so the big cases stripe. */
START_TEST(test_roundtrip)
{
    uint64_t len = rt_cases[_i].len, off = rt_cases[_i].off;
    struct agent_transport_stats cs, ss;

    fix_up(CLI_NODE, 4, 256 * KIB, len + off, 2 * len);
    roundtrip(F.cli, F.conn, F.cmem, F.cmem + len, F.smem, &F.sreg, off, len,
              1000 + _i);

    WAIT_STAT(F.srv, connects, 4);
    WAIT_STAT(F.cli, connects, 4);
    /* The server counts a READ once its write completes, which may be
     * after the client has the bytes. */
    WAIT_STAT(F.srv, bytes_served, 2 * len);
    agent_transport_stats(F.cli, &cs);
    agent_transport_stats(F.srv, &ss);
    ck_assert_uint_eq(cs.ops, 2);
    ck_assert_uint_eq(cs.op_errors, 0);
    ck_assert_uint_eq(cs.bytes_written, len);
    ck_assert_uint_eq(cs.bytes_read, len);
    ck_assert_uint_eq(cs.bytes_served, 0);
    ck_assert_uint_eq(cs.connects, 4);
    ck_assert_uint_eq(cs.connect_errors, 0);
    ck_assert_uint_eq(cs.cpu_copy_bytes, 0);
    ck_assert_uint_eq(ss.bytes_served, 2 * len);
    ck_assert_uint_eq(ss.refused, 0);
    ck_assert_uint_eq(ss.ops, 0);
    ck_assert_uint_eq(ss.connects, 4);
    ck_assert_uint_eq(ss.cpu_copy_bytes, 0);
    fix_down();
}
END_TEST

/* 64 ops of assorted sizes in one post, then 64 reads in another. */
START_TEST(test_batch)
{
    enum { N = 64, STRIDE = 16 * 1024 };
    struct agent_transport_op ops[N], *p[N];
    uint8_t *src, *dst;

    fix_up(CLI_NODE, 4, 0, N * STRIDE, 2 * N * STRIDE);
    src = F.cmem;
    dst = F.cmem + N * STRIDE;
    fill(src, N * STRIDE, 77);
    for (int i = 0; i < N; i++) {
        uint64_t len = (uint64_t)(i * 211 % STRIDE) + 1;

        op_set(&ops[i], AGENT_TRANSPORT_WRITE, src + i * STRIDE, len, &F.sreg,
               (uint64_t)i * STRIDE);
        p[i] = &ops[i];
    }
    run(F.cli, F.conn, p, N);
    for (int i = 0; i < N; i++) {
        ck_assert_msg(ops[i].status == 0, "write %d: %s", i, ops[i].error);
        op_set(&ops[i], AGENT_TRANSPORT_READ, dst + i * STRIDE, ops[i].len,
               &F.sreg, (uint64_t)i * STRIDE);
    }
    run(F.cli, F.conn, p, N);
    for (int i = 0; i < N; i++) {
        ck_assert_msg(ops[i].status == 0, "read %d: %s", i, ops[i].error);
        ck_assert_mem_eq(dst + i * STRIDE, src + i * STRIDE, ops[i].len);
    }
    ck_assert_uint_eq(STAT(F.cli, ops), 2 * N);
    ck_assert_uint_eq(STAT(F.cli, cpu_copy_bytes), 0);
    ck_assert_uint_eq(STAT(F.srv, cpu_copy_bytes), 0);
    fix_down();
}
END_TEST

/* One socket, one post: answers come back several to a read, with
 * refusals' texts and READ payloads between them.  Each op must get its
 * own answer, and every READ its own bytes. */
START_TEST(test_mixed_batch)
{
    enum { N = 60, STRIDE = 8 * 1024 };
    struct agent_transport_op ops[N], *p[N];
    struct agent_transport_region bad;
    uint8_t *src;

    fix_up(CLI_NODE, 1, 0, 2 * N * STRIDE, 2 * N * STRIDE);
    src = F.cmem;
    bad = F.sreg;
    bad.key ^= 1;
    fill(src, N * STRIDE, 31);
    fill(F.smem + N * STRIDE, N * STRIDE, 47);
    for (int i = 0; i < N; i++) {
        uint64_t len = (uint64_t)(i * 397 % STRIDE) + 1;
        bool read = i % 4 == 1 || i % 4 == 3;

        op_set(&ops[i], read ? AGENT_TRANSPORT_READ : AGENT_TRANSPORT_WRITE,
               read ? F.cmem + N * STRIDE + i * STRIDE : src + i * STRIDE, len,
               i % 4 >= 2 ? &bad : &F.sreg,
               (uint64_t)(read ? N + i : i) * STRIDE);
        p[i] = &ops[i];
    }
    run(F.cli, F.conn, p, N);
    for (int i = 0; i < N; i++) {
        uint64_t off = (uint64_t)i * STRIDE;

        switch (i % 4) {
        case 0:
            ck_assert_msg(ops[i].status == 0, "write %d: %s", i, ops[i].error);
            ck_assert_mem_eq(F.smem + off, src + off, ops[i].len);
            break;
        case 1:
            ck_assert_msg(ops[i].status == 0, "read %d: %s", i, ops[i].error);
            ck_assert_mem_eq(F.cmem + N * STRIDE + off,
                             F.smem + N * STRIDE + off, ops[i].len);
            break;
        default:
            ck_assert_err(ops[i].status, -EACCES, ops[i].error,
                          "region 1: wrong key");
            break;
        }
    }
    ck_assert_uint_eq(STAT(F.srv, refused), N / 2);
    ck_assert_uint_eq(STAT(F.cli, op_errors), N / 2);
    ck_assert_int_eq(agent_transport_conn_status(F.cli, F.conn, NULL, 0), 0);
    fix_down();
}
END_TEST

/* --- Refusals by the server --------------------------------------------- */

enum forge {
    FORGE_KEY,   /* a wrong key */
    FORGE_RANGE, /* a descriptor claiming more bytes than registered */
    FORGE_DEREG, /* a region deregistered since */
};

static const struct {
    const char *name; /* what the case shows */
    int opcode;       /* READ or WRITE */
    enum forge how;   /* what is wrong */
    int want;         /* the op's status */
    const char *text; /* in its error */
} refuse_cases[] = {
    {"write, wrong key", AGENT_TRANSPORT_WRITE, FORGE_KEY, -EACCES,
     "region 1: wrong key"},
    {"read, wrong key", AGENT_TRANSPORT_READ, FORGE_KEY, -EACCES,
     "region 1: wrong key"},
    {"write beyond the region", AGENT_TRANSPORT_WRITE, FORGE_RANGE, -ERANGE,
     "is outside region 1"},
    {"read beyond the region", AGENT_TRANSPORT_READ, FORGE_RANGE, -ERANGE,
     "is outside region 1"},
    {"write, deregistered", AGENT_TRANSPORT_WRITE, FORGE_DEREG, -ENOENT,
     "region 2 is not registered"},
    {"read, deregistered", AGENT_TRANSPORT_READ, FORGE_DEREG, -ENOENT,
     "region 2 is not registered"},
};

/* One socket, so the good op after the refusal rides the same stream:
 * a refused WRITE's payload must have been skipped exactly. */
START_TEST(test_refused)
{
    const uint64_t len = 300 * KIB;
    struct agent_transport_region remote;
    struct agent_transport_op op, *p = &op;
    uint8_t *other = mem_new(MIB);
    uint64_t off = 0;

    fix_up(CLI_NODE, 1, 0, 2 * MIB, 4 * MIB);
    remote = F.sreg;
    switch (refuse_cases[_i].how) {
    case FORGE_KEY:
        remote.key ^= 1;
        break;
    case FORGE_RANGE:
        remote.len = 2 * F.slen;
        off = F.slen - 100;
        break;
    case FORGE_DEREG:
        reg(F.srv, other, MIB, &remote);
        ck_assert_uint_eq(remote.id, 2);
        ck_assert_int_eq(agent_transport_deregister(F.srv, remote.id), 0);
        break;
    }
    fill(F.cmem, len, 5);
    op_set(&op, refuse_cases[_i].opcode, F.cmem, len, &remote, off);
    run(F.cli, F.conn, &p, 1);
    ck_assert_err(op.status, refuse_cases[_i].want, op.error,
                  refuse_cases[_i].text);
    ck_assert_ptr_nonnull(strstr(op.error, SRV_NODE));
    ck_assert_uint_eq(STAT(F.srv, refused), 1);
    ck_assert_uint_eq(STAT(F.cli, op_errors), 1);
    ck_assert_uint_eq(STAT(F.srv, bytes_served), 0);
    for (uint64_t i = 0; i < F.slen; i += 4096) {
        ck_assert_uint_eq(F.smem[i], 0);
    }
    ck_assert_int_eq(agent_transport_conn_status(F.cli, F.conn, NULL, 0), 0);

    roundtrip(F.cli, F.conn, F.cmem, F.cmem + MIB, F.smem, &F.sreg, 64, len,
              6);
    ck_assert_uint_eq(STAT(F.srv, refused), 1);
    fix_down();
    mem_free(other, MIB);
}
END_TEST

/* The generic layer refuses what the descriptor itself rules out. */
START_TEST(test_generic_range)
{
    struct agent_transport_op op, *p = &op;

    fix_up(CLI_NODE, 0, 0, MIB, MIB);
    op_set(&op, AGENT_TRANSPORT_READ, F.cmem, 4096, &F.sreg, MIB - 100);
    ck_assert_int_eq(agent_transport_post(F.cli, F.conn, &p, 1), -ERANGE);
    ck_assert_ptr_nonnull(strstr(op.error, "beyond remote region 1"));
    ck_assert_int_eq(done_count(), 0);
    fix_down();
}
END_TEST

/* --- Connection failures ------------------------------------------------ */

static void
assert_conn_fails(struct agent_transport *cli, struct agent_transport_conn *c,
                  int want, const char *text)
{
    struct agent_transport_op op, *p = &op;
    char err[AGENT_TRANSPORT_ERR_LEN] = "";

    op_set(&op, AGENT_TRANSPORT_READ, F.cmem, 4096, &F.sreg, 0);
    run(cli, c, &p, 1);
    ck_assert_err(op.status, want, op.error, text);
    ck_assert_err(agent_transport_conn_status(cli, c, err, sizeof err), want,
                  err, text);
    /* Later ops fail the same way, at once. */
    op_set(&op, AGENT_TRANSPORT_WRITE, F.cmem, 4096, &F.sreg, 0);
    run(cli, c, &p, 1);
    ck_assert_err(op.status, want, op.error, text);
}

START_TEST(test_not_admitted)
{
    fix_up("c9", 2, 0, MIB, MIB);
    assert_conn_fails(F.cli, F.conn, -EACCES,
                      "node c9 is not in the admitted list");
    assert_conn_fails(F.cli, F.conn, -EACCES, "refused us");
    ck_assert_uint_ge(WAIT_STAT(F.srv, refused, 1), 1);
    ck_assert_uint_ge(STAT(F.cli, connect_errors), 1);
    ck_assert_uint_eq(STAT(F.srv, connects), 0);
    ck_assert_uint_eq(STAT(F.cli, op_errors), 4);
    fix_down();
}
END_TEST

static const struct {
    const char *name; /* what the case shows */
    const char *node; /* the node we expect */
    uint64_t boot;    /* its boot id */
    bool no_listener; /* connect to a port nobody listens on */
    int want;         /* conn status */
    const char *text; /* in its error */
} peer_cases[] = {
    {"other node", "n3", 0, false, -EPROTO,
     "peer answered as n2 (boot 0x42), expected n3"},
    {"other boot", SRV_NODE, 0x43, false, -EPROTO, "expected n2 (boot 0x43)"},
    {"nobody listening", SRV_NODE, 0, true, -ECONNREFUSED,
     "cannot connect to n2"},
};

START_TEST(test_wrong_peer)
{
    struct agent_transport_conn *c;
    uint16_t port;

    fix_up(CLI_NODE, 4, 0, MIB, MIB);
    port = peer_cases[_i].no_listener ? (uint16_t)test_free_port() : F.port;
    c = connect_to(F.cli, peer_cases[_i].node, peer_cases[_i].boot, port);
    assert_conn_fails(F.cli, c, peer_cases[_i].want, peer_cases[_i].text);
    ck_assert_uint_ge(STAT(F.cli, connect_errors), 1);
    agent_transport_disconnect(F.cli, c);
    /* The good connection is unaffected. */
    roundtrip(F.cli, F.conn, F.cmem, F.cmem + 4096, F.smem, &F.sreg, 0, 4096,
              9);
    fix_down();
}
END_TEST

/* --- Handshakes from a raw socket --------------------------------------- */

enum raw_kind {
    RAW_REPLY,   /* a bad hello: the server answers, then closes */
    RAW_SILENT,  /* a cut hello: the server just closes */
    RAW_REQUEST, /* a good hello, then a request with a bad opcode */
};

static const struct {
    const char *name; /* what the case shows */
    enum raw_kind kind;
    const char *magic; /* hello fields */
    unsigned version;
    unsigned nlen, elen;
    const char *node, *expect; /* names sent, or NULL */
    size_t cut;                /* RAW_SILENT: bytes sent before closing */
    unsigned status;           /* the answer's status */
    const char *text;          /* in its text */
} raw_cases[] = {
    {"bad magic", RAW_REPLY, "MCOSXQ", 1, 2, 2, CLI_NODE, SRV_NODE, 0, 2,
     "malformed handshake: bad magic"},
    {"node name of 300 bytes", RAW_REPLY, "MCOSXP", 1, 300, 2, NULL, NULL, 0,
     2, "malformed handshake: node name of 300 bytes"},
    {"empty expected name", RAW_REPLY, "MCOSXP", 1, 2, 0, NULL, NULL, 0, 2,
     "malformed handshake: expected node name of 0 bytes"},
    {"version 9", RAW_REPLY, "MCOSXP", 9, 2, 2, CLI_NODE, SRV_NODE, 0, 4,
     "unsupported protocol version 9"},
    {"control byte", RAW_REPLY, "MCOSXP", 1, 2, 2, "c\001", SRV_NODE, 0, 2,
     "not printable"},
    {"someone else's hello", RAW_REPLY, "MCOSXP", 1, 2, 2, CLI_NODE, "n7", 0,
     3, "this is node n2, not n7"},
    {"truncated, then closed", RAW_SILENT, "MCOSXP", 1, 2, 2, CLI_NODE,
     SRV_NODE, 21, 0, NULL},
    {"bad opcode", RAW_REQUEST, "MCOSXP", 1, 2, 2, CLI_NODE, SRV_NODE, 0, 9,
     "unknown opcode 7"},
};

START_TEST(test_raw_handshake)
{
    uint8_t b[512], resp[16 + 159];
    char text[256];
    size_t n;
    int fd;

    fix_up(CLI_NODE, 2, 0, MIB, 2 * MIB);
    fd = raw_connect(F.port);
    n = hello(b, raw_cases[_i].magic, raw_cases[_i].version,
              raw_cases[_i].nlen, raw_cases[_i].elen, raw_cases[_i].node,
              raw_cases[_i].expect);
    switch (raw_cases[_i].kind) {
    case RAW_REPLY:
        raw_send(fd, b, n);
        ck_assert_uint_eq(read_welcome(fd, text, sizeof text),
                          raw_cases[_i].status);
        ck_assert_msg(strstr(text, raw_cases[_i].text), "'%s' lacks '%s'",
                      text, raw_cases[_i].text);
        break;
    case RAW_SILENT:
        raw_send(fd, b, raw_cases[_i].cut);
        shutdown(fd, SHUT_WR);
        break;
    case RAW_REQUEST:
        raw_send(fd, b, n);
        ck_assert_uint_eq(read_welcome(fd, text, sizeof text), 0);
        memset(b, 0, 40);
        le32(b, 7);
        le32(b + 4, 1);
        le64(b + 16, 4096);
        le64(b + 32, 99);
        raw_send(fd, b, 40);
        ck_assert_uint_eq(raw_recv(fd, resp, 16), 16);
        ck_assert_uint_eq(resp[0], 99);
        ck_assert_uint_eq(resp[8], raw_cases[_i].status);
        n = resp[12];
        ck_assert_uint_eq(raw_recv(fd, resp + 16, n), n);
        snprintf(text, sizeof text, "%.*s", (int)n, (char *)resp + 16);
        ck_assert_msg(strstr(text, raw_cases[_i].text), "'%s' lacks '%s'",
                      text, raw_cases[_i].text);
        break;
    }
    /* Then the server closes: end of stream. */
    ck_assert_uint_eq(raw_recv(fd, b, sizeof b), 0);
    close(fd);
    WAIT_STAT(F.srv, refused, 1);

    /* A good client is still served. */
    roundtrip(F.cli, F.conn, F.cmem, F.cmem + MIB, F.smem, &F.sreg, 0, MIB, 3);
    ck_assert_uint_eq(STAT(F.srv, refused), 1);
    fix_down();
}
END_TEST

/* A socket that says nothing is closed after 5 s. */
START_TEST(test_hello_timeout)
{
    struct timespec t0, t1;
    uint8_t b[16];
    int fd;

    fix_up(CLI_NODE, 1, 0, MIB, MIB);
    fd = raw_connect(F.port);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_uint_eq(raw_recv(fd, b, sizeof b), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ck_assert_int_ge(t1.tv_sec - t0.tv_sec, 4);
    close(fd);
    WAIT_STAT(F.srv, refused, 1);
    fix_down();
}
END_TEST

/* --- A peer that dies, and comes back ----------------------------------- */

/* Destroys a transport on its own thread. */
struct killer {
    struct agent_transport *victim; /* what to destroy */
    pthread_mutex_t m;              /* guards started */
    pthread_cond_t cv;              /* signalled when started */
    bool started;                   /* about to destroy */
};

static void *
killer_main(void *arg)
{
    struct killer *k = arg;

    pthread_mutex_lock(&k->m);
    k->started = true;
    pthread_cond_broadcast(&k->cv);
    pthread_mutex_unlock(&k->m);
    agent_transport_destroy(k->victim);
    return NULL;
}

START_TEST(test_peer_dies)
{
    const uint64_t big = 64 * MIB;
    struct agent_transport_op op, *p = &op;
    struct agent_transport_conn *late, *again;
    struct killer k = {.m = PTHREAD_MUTEX_INITIALIZER,
                       .cv = PTHREAD_COND_INITIALIZER};
    char err[AGENT_TRANSPORT_ERR_LEN] = "";
    pthread_t thread;
    int r;

    fix_up(CLI_NODE, 4, 0, big, big);
    roundtrip(F.cli, F.conn, F.cmem, F.cmem + MIB, F.smem, &F.sreg, 0, MIB,
              11);
    /* Every socket admitted, so the parked admission is the new one. */
    WAIT_STAT(F.srv, connects, 4);

    /* Park the server's thread in its admit callback, so that nothing
     * of the big write can be acknowledged before the server dies. */
    pthread_mutex_lock(&A.m);
    A.block = true;
    pthread_mutex_unlock(&A.m);
    late = connect_to(F.cli, SRV_NODE, SRV_BOOT, F.port);
    pthread_mutex_lock(&A.m);
    while (!A.blocked) {
        pthread_cond_wait(&A.cv, &A.m);
    }
    pthread_mutex_unlock(&A.m);

    fill(F.cmem, big, 12);
    op_set(&op, AGENT_TRANSPORT_WRITE, F.cmem, big, &F.sreg, 0);
    ck_assert_int_eq(agent_transport_post(F.cli, F.conn, &p, 1), 0);

    k.victim = F.srv;
    F.srv = NULL;
    ck_assert_int_eq(pthread_create(&thread, NULL, killer_main, &k), 0);
    pthread_mutex_lock(&k.m);
    while (!k.started) {
        pthread_cond_wait(&k.cv, &k.m);
    }
    pthread_mutex_unlock(&k.m);
    pthread_mutex_lock(&A.m);
    A.release = true;
    pthread_cond_broadcast(&A.cv);
    pthread_mutex_unlock(&A.m);
    wait_done(3);
    pthread_join(thread, NULL);

    ck_assert_err(op.status, -ECONNRESET, op.error,
                  "connection to n2 at 127.0.0.1");
    r = agent_transport_conn_status(F.cli, F.conn, err, sizeof err);
    ck_assert_err(r, -ECONNRESET, err, "n2");
    /* The parked connection fails too, one way or another. */
    op_set(&op, AGENT_TRANSPORT_READ, F.cmem, 4096, &F.sreg, 0);
    run(F.cli, late, &p, 1);
    ck_assert_int_lt(op.status, 0);
    ck_assert_int_lt(agent_transport_conn_status(F.cli, late, NULL, 0), 0);
    ck_assert_uint_lt(STAT(F.cli, bytes_written), big + MIB);
    agent_transport_disconnect(F.cli, late);
    agent_transport_disconnect(F.cli, F.conn);
    F.conn = NULL;

    /* The peer restarts on the same port (a new boot); reconnecting is
     * the caller's move. */
    F.srv = make_server(SRV_NODE, SRV_BOOT + 1, F.port);
    ck_assert_uint_eq(agent_transport_port(F.srv), F.port);
    memset(F.smem, 0, MIB);
    reg(F.srv, F.smem, F.slen, &F.sreg);
    again = connect_to(F.cli, SRV_NODE, SRV_BOOT + 1, F.port);
    roundtrip(F.cli, again, F.cmem, F.cmem + 2 * MIB, F.smem, &F.sreg, 0,
              2 * MIB, 13);
    ck_assert_int_eq(agent_transport_conn_status(F.cli, again, NULL, 0), 0);
    F.conn = again;
    fix_down();
}
END_TEST

/* --- Deregistration under load ----------------------------------------- */

static const struct {
    const char *name; /* what the case shows */
    int opcode;       /* the op in flight */
    int want;         /* its status */
    const char *text; /* in its error */
} dereg_cases[] = {
    {"write", AGENT_TRANSPORT_WRITE, -ENOENT,
     "region 2 was deregistered during the write"},
    {"read", AGENT_TRANSPORT_READ, -ECONNRESET, "connection to n2"},
};

/* A region deregistered while a peer moves 64 MiB through it in one
 * request: once deregister returns nothing touches the memory (it is
 * unmapped at once), and the op fails. */
START_TEST(test_dereg_in_flight)
{
    const uint64_t big = 64 * MIB;
    volatile uint8_t *seen;
    struct agent_transport_region r2;
    struct agent_transport_op op, *p = &op;
    struct agent_transport_conn *c;
    uint8_t *mem = mem_new(big);

    fix_up(CLI_NODE, 1, big, MIB, big);
    roundtrip(F.cli, F.conn, F.cmem, F.cmem + 4096, F.smem, &F.sreg, 0, 4096,
              31);
    reg(F.srv, mem, big, &r2);
    ck_assert_uint_eq(r2.id, 2);
    memset(F.cmem, 0, big);
    if (dereg_cases[_i].opcode == AGENT_TRANSPORT_WRITE) {
        fill(F.cmem, big, 32);
        seen = mem;
    } else {
        fill(mem, big, 32);
        seen = F.cmem;
    }
    op_set(&op, dereg_cases[_i].opcode, F.cmem, big, &r2, 0);
    ck_assert_int_eq(agent_transport_post(F.cli, F.conn, &p, 1), 0);
    /* Wait for the first bytes to land: the transfer is under way. */
    while (seen[0] == 0 && seen[1] == 0 && seen[2] == 0) {
    }
    ck_assert_int_eq(agent_transport_deregister(F.srv, r2.id), 0);
    mem_free(mem, big);
    wait_done(3);
    ck_assert_err(op.status, dereg_cases[_i].want, op.error,
                  dereg_cases[_i].text);

    /* The server is still healthy. */
    c = connect_to(F.cli, SRV_NODE, SRV_BOOT, F.port);
    roundtrip(F.cli, c, F.cmem, F.cmem + 4096, F.smem, &F.sreg, 0, 4096, 33);
    agent_transport_disconnect(F.cli, c);
    fix_down();
}
END_TEST

/* --- Disconnect --------------------------------------------------------- */

/* Ops waiting for a handshake that never comes are cancelled, and their
 * callbacks have all run when disconnect returns. */
START_TEST(test_disconnect_queued)
{
    enum { N = 8 };
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t slen = sizeof sin;
    struct agent_transport_op ops[N], *p[N];
    struct agent_transport_conn *c;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    fix_up(CLI_NODE, 2, 0, MIB, MIB);
    /* A listener that never answers: the kernel completes connects. */
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    ck_assert_int_eq(listen(fd, 8), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &slen), 0);
    c = connect_to(F.cli, SRV_NODE, 0, ntohs(sin.sin_port));
    for (int i = 0; i < N; i++) {
        op_set(&ops[i], i % 2 ? AGENT_TRANSPORT_READ : AGENT_TRANSPORT_WRITE,
               F.cmem + i * 4096, 4096, &F.sreg, 0);
        p[i] = &ops[i];
    }
    ck_assert_int_eq(agent_transport_post(F.cli, c, p, N), 0);
    ck_assert_int_eq(agent_transport_conn_status(F.cli, c, NULL, 0), 0);
    agent_transport_disconnect(F.cli, c);
    ck_assert_int_eq(done_count(), N);
    for (int i = 0; i < N; i++) {
        ck_assert_err(ops[i].status, -ECANCELED, ops[i].error,
                      "disconnected from n2");
    }
    close(fd);
    fix_down();
}
END_TEST

/* Ops in flight complete (done or cancelled) before disconnect returns. */
START_TEST(test_disconnect_in_flight)
{
    struct agent_transport_op ops[2], *p[2] = {&ops[0], &ops[1]};

    fix_up(CLI_NODE, 4, 256 * KIB, 16 * MIB, 32 * MIB);
    roundtrip(F.cli, F.conn, F.cmem, F.cmem + 4096, F.smem, &F.sreg, 0, 4096,
              21);
    op_set(&ops[0], AGENT_TRANSPORT_WRITE, F.cmem, 16 * MIB, &F.sreg, 0);
    op_set(&ops[1], AGENT_TRANSPORT_READ, F.cmem + 16 * MIB, 16 * MIB, &F.sreg,
           0);
    ck_assert_int_eq(agent_transport_post(F.cli, F.conn, p, 2), 0);
    agent_transport_disconnect(F.cli, F.conn);
    F.conn = NULL;
    ck_assert_int_eq(done_count(), 4);
    for (int i = 0; i < 2; i++) {
        ck_assert_msg(ops[i].status == 0 || ops[i].status == -ECANCELED,
                      "op %d: %d %s", i, ops[i].status, ops[i].error);
    }
    fix_down();
}
END_TEST

static Suite *
transport_tcp_suite(void)
{
    Suite *s = suite_create("transport_tcp");
    TCase *tc = tcase_create("tcp");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_available);
    tcase_add_loop_test(tc, test_create_errors, 0,
                        sizeof create_cases / sizeof create_cases[0]);
    tcase_add_loop_test(tc, test_roundtrip, 0,
                        sizeof rt_cases / sizeof rt_cases[0]);
    tcase_add_test(tc, test_batch);
    tcase_add_test(tc, test_mixed_batch);
    tcase_add_loop_test(tc, test_refused, 0,
                        sizeof refuse_cases / sizeof refuse_cases[0]);
    tcase_add_test(tc, test_generic_range);
    tcase_add_test(tc, test_not_admitted);
    tcase_add_loop_test(tc, test_wrong_peer, 0,
                        sizeof peer_cases / sizeof peer_cases[0]);
    tcase_add_loop_test(tc, test_raw_handshake, 0,
                        sizeof raw_cases / sizeof raw_cases[0]);
    tcase_add_test(tc, test_hello_timeout);
    tcase_add_test(tc, test_peer_dies);
    tcase_add_loop_test(tc, test_dereg_in_flight, 0,
                        sizeof dereg_cases / sizeof dereg_cases[0]);
    tcase_add_test(tc, test_disconnect_queued);
    tcase_add_test(tc, test_disconnect_in_flight);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(transport_tcp_suite)
