/*
 * Tests for common/etcd: the etcd v3 JSON gateway client on a libuv loop.
 *
 * Most cases run against a real etcd (Debian's etcd-server) that main()
 * starts on loopback with a temporary data directory and free ports; the
 * restart case starts its own.  Without an `etcd` binary the whole test
 * prints "SKIP: etcd not installed" and exits 77.  Cases that need answers
 * etcd never gives (malformed JSON, a proxy's 404, a hung server, a stream
 * dripped a few bytes at a time) use a small fake HTTP server on a thread.
 *
 * Everything is driven by the loop and waits on conditions with a
 * deadline; the only deliberate waits let a lease's TTL pass.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <uv.h>

#include "etcd.h"
#include "log.h"
#include "testutil.h"

/* ------------------------------------------------------------------------
 * Driving the loop. */

struct waiter {
    uv_loop_t *loop;   /* the loop to run */
    uv_timer_t timer;  /* ticks until the deadline */
    uint64_t deadline; /* loop ms */
    bool expired;      /* it passed */
};

/* The waiter ticks rather than firing once at its deadline: with
 * UV_RUN_ONCE, libuv runs timers before it polls, so a result delivered
 * from curl's timer (a reused connection answering at once) would leave
 * uv_run blocked in the poll until the next event, the deadline. */
static void
on_tick(uv_timer_t *t)
{
    struct waiter *w = t->data;

    if (uv_now(w->loop) >= w->deadline) {
        w->expired = true;
    }
}

static void
waiter_start(struct waiter *w, uv_loop_t *loop, uint64_t ms)
{
    w->loop = loop;
    w->expired = false;
    uv_update_time(loop);
    w->deadline = uv_now(loop) + ms;
    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    uv_timer_start(&w->timer, on_tick, 5, 5);
}

static void
waiter_stop(struct waiter *w)
{
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, NULL);
    /* Let the close complete so the handle never outlives its frame. */
    uv_run(w->loop, UV_RUN_NOWAIT);
}

/* Runs the loop until COND holds, failing after MS milliseconds. */
#define RUN_UNTIL(LOOP, COND, MS)                                             \
    do {                                                                      \
        struct waiter w_;                                                     \
        waiter_start(&w_, (LOOP), (MS));                                      \
        while (!(COND) && !w_.expired) {                                      \
            uv_run((LOOP), UV_RUN_ONCE);                                      \
        }                                                                     \
        waiter_stop(&w_);                                                     \
        ck_assert_msg((COND), "timed out after %d ms waiting for %s",         \
                      (int)(MS), #COND);                                      \
    } while (0)

/* Lets MS milliseconds pass with the loop running (only where time passing
 * is what is tested: a lease outliving its TTL). */
static void
run_for(uv_loop_t *loop, uint64_t ms)
{
    struct waiter w;

    waiter_start(&w, loop, ms);
    while (!w.expired) {
        uv_run(loop, UV_RUN_ONCE);
    }
    waiter_stop(&w);
}

static uint64_t
now_ms(void)
{
    return uv_hrtime() / 1000000;
}

/* ------------------------------------------------------------------------
 * Copies of results (they are valid only during the callback). */

#define MAXKV 16

struct kvcopy {
    char *key;               /* malloc'd, NUL-terminated */
    size_t key_len;          /* its length */
    char *value;             /* malloc'd, NUL-terminated */
    size_t value_len;        /* its length */
    int64_t create_revision; /* as received */
    int64_t mod_revision;    /* as received */
    int64_t version;         /* as received */
    int64_t lease;           /* as received */
};

struct got {
    int calls;                /* callbacks run */
    int status;               /* last status */
    char error[1024];         /* last message */
    char endpoint[160];       /* last endpoint */
    int64_t revision;         /* header revision */
    int64_t count;            /* range count */
    bool more;                /* range more */
    int64_t deleted;          /* delete count */
    bool succeeded;           /* txn */
    int64_t lease_id;         /* lease */
    int64_t ttl;              /* lease */
    size_t n_kvs;             /* pairs copied */
    struct kvcopy kvs[MAXKV]; /* the pairs */
    size_t n_ops;             /* txn branch size */
    struct {
        int type;          /* op type */
        size_t n_kvs;      /* RANGE pairs */
        int64_t count;     /* RANGE count / DELETE deleted */
        struct kvcopy kv0; /* the first pair */
    } ops[4];
    size_t n_members; /* status */
    struct {
        int status;       /* endpoint's status */
        char version[32]; /* etcd's version */
        bool is_leader;   /* it leads */
        char error[512];  /* its message */
    } members[4];
};

static void
kv_copy(struct kvcopy *d, const struct mcos_etcd_kv *s)
{
    d->key = malloc(s->key_len + 1);
    memcpy(d->key, s->key, s->key_len + 1);
    d->key_len = s->key_len;
    d->value = malloc(s->value_len + 1);
    memcpy(d->value, s->value, s->value_len + 1);
    d->value_len = s->value_len;
    d->create_revision = s->create_revision;
    d->mod_revision = s->mod_revision;
    d->version = s->version;
    d->lease = s->lease;
}

static void
kv_free(struct kvcopy *k)
{
    free(k->key);
    free(k->value);
    memset(k, 0, sizeof *k);
}

static void
got_reset(struct got *g)
{
    for (size_t i = 0; i < MAXKV; i++) {
        kv_free(&g->kvs[i]);
    }
    for (size_t i = 0; i < 4; i++) {
        kv_free(&g->ops[i].kv0);
    }
    memset(g, 0, sizeof *g);
}

static void
on_result(const struct mcos_etcd_result *res, void *arg)
{
    struct got *g = arg;
    int calls = g->calls;

    got_reset(g);
    g->calls = calls + 1;
    g->status = res->status;
    ck_assert_ptr_nonnull(res->error);
    snprintf(g->error, sizeof g->error, "%s", res->error);
    snprintf(g->endpoint, sizeof g->endpoint, "%s",
             res->endpoint ? res->endpoint : "");
    /* A success says nothing; a failure always says something. */
    ck_assert_int_eq(res->status == 0, res->error[0] == '\0');
    g->revision = res->revision;
    g->count = res->count;
    g->more = res->more;
    g->deleted = res->deleted;
    g->succeeded = res->succeeded;
    g->lease_id = res->lease_id;
    g->ttl = res->ttl;
    g->n_kvs = res->n_kvs;
    for (size_t i = 0; i < res->n_kvs && i < MAXKV; i++) {
        kv_copy(&g->kvs[i], &res->kvs[i]);
    }
    g->n_ops = res->n_ops;
    for (size_t i = 0; i < res->n_ops && i < 4; i++) {
        g->ops[i].type = res->ops[i].type;
        g->ops[i].n_kvs = res->ops[i].n_kvs;
        g->ops[i].count = res->ops[i].count;
        if (res->ops[i].n_kvs) {
            kv_copy(&g->ops[i].kv0, &res->ops[i].kvs[0]);
        }
    }
    g->n_members = res->n_members;
    for (size_t i = 0; i < res->n_members && i < 4; i++) {
        const struct mcos_etcd_member *m = &res->members[i];

        g->members[i].status = m->status;
        g->members[i].is_leader = m->is_leader;
        snprintf(g->members[i].version, sizeof g->members[i].version, "%s",
                 m->version);
        snprintf(g->members[i].error, sizeof g->members[i].error, "%s",
                 m->error);
    }
}

/* Watch events, collected across callbacks. */
#define MAXEV 64

struct evcopy {
    int type;           /* PUT or DELETE */
    struct kvcopy kv;   /* after */
    bool has_prev;      /* prev_kv given */
    struct kvcopy prev; /* before */
};

struct evlog {
    int calls;                 /* callbacks run */
    int created;               /* created notifications */
    int finals;                /* final callbacks (status < 0) */
    int final_status;          /* its status */
    char final_error[1024];    /* its message */
    int64_t final_revision;    /* its revision */
    int64_t compact_revision;  /* its compact revision */
    size_t n;                  /* events */
    struct evcopy ev[MAXEV];   /* the events */
    struct mcos_etcd_watch *w; /* the handle, cleared by the final */
};

static void
on_watch(const struct mcos_etcd_result *res, void *arg)
{
    struct evlog *l = arg;

    l->calls++;
    ck_assert_int_eq(l->finals, 0);
    if (res->status < 0) {
        l->finals++;
        l->final_status = res->status;
        snprintf(l->final_error, sizeof l->final_error, "%s", res->error);
        l->final_revision = res->revision;
        l->compact_revision = res->compact_revision;
        l->w = NULL;
        return;
    }
    ck_assert_int_eq(res->status, 0);
    if (res->created) {
        l->created++;
    }
    for (size_t i = 0; i < res->n_events && l->n < MAXEV; i++) {
        struct evcopy *c = &l->ev[l->n++];

        c->type = res->events[i].type;
        kv_copy(&c->kv, &res->events[i].kv);
        c->has_prev = res->events[i].has_prev;
        if (c->has_prev) {
            kv_copy(&c->prev, &res->events[i].prev_kv);
        }
    }
}

static void
evlog_free(struct evlog *l)
{
    for (size_t i = 0; i < l->n; i++) {
        kv_free(&l->ev[i].kv);
        kv_free(&l->ev[i].prev);
    }
    memset(l, 0, sizeof *l);
}

/* ------------------------------------------------------------------------
 * A client on its own loop, and synchronous wrappers for test steps. */

struct t {
    uv_loop_t loop;      /* the test's loop */
    struct mcos_etcd *e; /* the client */
    struct got g;        /* the last result */
};

static void
t_open(struct t *t, const char *endpoints, const struct mcos_etcd_options *opt)
{
    char err[MCOS_ETCD_ERR_LEN];

    memset(t, 0, sizeof *t);
    ck_assert_int_eq(uv_loop_init(&t->loop), 0);
    ck_assert_msg(mcos_etcd_create(&t->loop, endpoints, opt, &t->e, err,
                                   sizeof err) == 0,
                  "create: %s", err);
}

static void
t_close(struct t *t)
{
    mcos_etcd_close(t->e);
    uv_run(&t->loop, UV_RUN_DEFAULT);
    /* Every handle was closed and freed. */
    ck_assert_int_eq(uv_loop_close(&t->loop), 0);
    got_reset(&t->g);
}

/* Waits for the callback of a request just started (rc is its return). */
#define T_WAIT(T, RC)                                                         \
    do {                                                                      \
        int rc_ = (RC);                                                       \
        ck_assert_msg(rc_ == 0, "%s: %d %s", #RC, rc_,                        \
                      mcos_etcd_last_error((T)->e));                          \
        RUN_UNTIL(&(T)->loop, (T)->g.calls == 1, 15000);                      \
    } while (0)

static struct got *
t_put(struct t *t, const char *key, size_t klen, const void *v, size_t vlen,
      int64_t lease)
{
    got_reset(&t->g);
    T_WAIT(t,
           mcos_etcd_put(t->e, key, klen, v, vlen, lease, on_result, &t->g));
    return &t->g;
}

static struct got *
t_puts(struct t *t, const char *key, const char *v)
{
    return t_put(t, key, strlen(key), v, strlen(v), 0);
}

static struct got *
t_get(struct t *t, const char *key, bool prefix)
{
    got_reset(&t->g);
    T_WAIT(t, mcos_etcd_get(t->e, key, strlen(key), prefix, on_result, &t->g));
    return &t->g;
}

static struct got *
t_range(struct t *t, const struct mcos_etcd_range *q)
{
    got_reset(&t->g);
    T_WAIT(t, mcos_etcd_range(t->e, q, on_result, &t->g));
    return &t->g;
}

static struct got *
t_delete(struct t *t, const char *key, size_t klen, bool prefix)
{
    got_reset(&t->g);
    T_WAIT(t, mcos_etcd_delete(t->e, key, klen, prefix, on_result, &t->g));
    return &t->g;
}

static struct got *
t_txn(struct t *t, const struct mcos_etcd_txn *txn)
{
    got_reset(&t->g);
    T_WAIT(t, mcos_etcd_txn(t->e, txn, on_result, &t->g));
    return &t->g;
}

static struct got *
t_grant(struct t *t, int64_t ttl)
{
    got_reset(&t->g);
    T_WAIT(t, mcos_etcd_lease_grant(t->e, ttl, on_result, &t->g));
    ck_assert_msg(t->g.status == 0, "grant: %s", t->g.error);
    return &t->g;
}

static struct got *
t_status(struct t *t)
{
    got_reset(&t->g);
    T_WAIT(t, mcos_etcd_status(t->e, on_result, &t->g));
    return &t->g;
}

#define ck_ok(G)                                                              \
    ck_assert_msg((G)->status == 0, "status %d: %s", (G)->status, (G)->error)

/* ------------------------------------------------------------------------
 * Real etcd processes. */

struct etcd_proc {
    pid_t pid;         /* the running etcd, 0 when stopped */
    int client_port;   /* where clients connect */
    int peer_port;     /* raft, unused but must be free */
    char *dir;         /* data and log */
    char endpoint[64]; /* http://127.0.0.1:client_port */
};

static struct etcd_proc shared_etcd; /* started by main() for most cases */

/* Whether `etcd` is on the PATH. */
static bool
etcd_installed(void)
{
    const char *path = getenv("PATH");
    char *copy, *save = NULL;
    bool found = false;

    if (!path) {
        path = "/usr/local/bin:/usr/bin:/bin";
    }
    copy = strdup(path);
    for (char *d = strtok_r(copy, ":", &save); d && !found;
         d = strtok_r(NULL, ":", &save)) {
        char *p;

        if (asprintf(&p, "%s/etcd", d) >= 0) {
            found = access(p, X_OK) == 0;
            free(p);
        }
    }
    free(copy);
    return found;
}

static void
etcd_spawn(struct etcd_proc *p)
{
    char data[512], log[512], client[64], peer[64], cluster[96];
    pid_t parent = getpid();
    pid_t pid;

    snprintf(data, sizeof data, "%s/data", p->dir);
    snprintf(log, sizeof log, "%s/etcd.log", p->dir);
    snprintf(client, sizeof client, "http://127.0.0.1:%d", p->client_port);
    snprintf(peer, sizeof peer, "http://127.0.0.1:%d", p->peer_port);
    snprintf(cluster, sizeof cluster, "t=%s", peer);
    snprintf(p->endpoint, sizeof p->endpoint, "%s", client);
    pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);

        /* Never outlive the test, whatever happens to it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(1);
        }
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        /* Fast elections: a single member is ready in ~100 ms. */
        execlp("etcd", "etcd", "--name", "t", "--data-dir", data,
               "--listen-client-urls", client, "--advertise-client-urls",
               client, "--listen-peer-urls", peer,
               "--initial-advertise-peer-urls", peer, "--initial-cluster",
               cluster, "--heartbeat-interval", "10", "--election-timeout",
               "100", (char *)NULL);
        _exit(127);
    }
    p->pid = pid > 0 ? pid : 0;
}

static void
etcd_kill(struct etcd_proc *p, int sig)
{
    if (p->pid > 0) {
        kill(p->pid, sig);
        waitpid(p->pid, NULL, 0);
        p->pid = 0;
    }
}

struct ready {
    int calls;       /* status callbacks */
    bool leader;     /* the member said it leads */
    char error[512]; /* why not, for the failure message */
};

/* No ck_assert here: Check's asserts (even passing ones) only work inside
 * a test, and this runs in main() too. */
static void
on_ready(const struct mcos_etcd_result *res, void *arg)
{
    struct ready *r = arg;

    r->calls++;
    r->leader =
        res->status == 0 && res->n_members == 1 && res->members[0].is_leader;
    snprintf(r->error, sizeof r->error, "%s",
             res->status ? res->error : "no leader yet");
}

/* Waits until the member answers a status with itself as leader, or
 * shows its log and returns false after `ms`.  Runs in main() too, outside
 * any test, so it reports with fprintf rather than ck_assert. */
static bool
etcd_wait_ready(struct etcd_proc *p, uint64_t ms)
{
    struct mcos_etcd_options opt = {.request_timeout_ms = 500,
                                    .connect_timeout_ms = 200};
    uint64_t deadline = now_ms() + ms;
    char err[MCOS_ETCD_ERR_LEN];
    struct mcos_etcd *e = NULL;
    bool ready = false;
    struct ready g = {0};
    uv_loop_t loop;

    uv_loop_init(&loop);
    if (mcos_etcd_create(&loop, p->endpoint, &opt, &e, err, sizeof err)) {
        fprintf(stderr, "etcd client: %s\n", err);
        uv_loop_close(&loop);
        return false;
    }
    while (!ready && now_ms() < deadline) {
        if (waitpid(p->pid, NULL, WNOHANG) == p->pid) {
            p->pid = 0;
            break;
        }
        memset(&g, 0, sizeof g);
        if (mcos_etcd_status(e, on_ready, &g)) {
            break;
        }
        while (g.calls == 0) {
            uv_run(&loop, UV_RUN_ONCE);
        }
        ready = g.leader;
        if (!ready) {
            run_for(&loop, 20); /* poll interval, not synchronisation */
        }
    }
    mcos_etcd_close(e);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    if (!ready) {
        char *cmd;

        fprintf(stderr,
                "etcd at %s did not become ready (last: %s); its log:\n",
                p->endpoint, g.error);
        if (asprintf(&cmd, "tail -n 30 '%s/etcd.log' >&2", p->dir) >= 0) {
            if (system(cmd)) {
                /* Nothing more to show. */
            }
            free(cmd);
        }
    }
    return ready;
}

static bool
etcd_start(struct etcd_proc *p)
{
    memset(p, 0, sizeof *p);
    p->dir = test_tmpdir();
    p->client_port = test_free_port();
    do {
        p->peer_port = test_free_port();
    } while (p->peer_port == p->client_port);
    if (!p->dir || p->client_port < 0 || p->peer_port < 0) {
        return false;
    }
    etcd_spawn(p);
    return etcd_wait_ready(p, 15000);
}

static void
etcd_destroy(struct etcd_proc *p)
{
    etcd_kill(p, SIGKILL);
    test_rmrf(p->dir);
    free(p->dir);
    p->dir = NULL;
}

/* An address where nothing listens. */
static void
dead_endpoint(char *out, size_t len)
{
    snprintf(out, len, "http://127.0.0.1:%d", test_free_port());
}

/* ------------------------------------------------------------------------
 * A fake HTTP server on a thread, for answers etcd never gives.  Each
 * accepted connection takes the next step; connections beyond the script
 * are held open without an answer. */

enum fake_mode {
    FAKE_RESPOND, /* send `data` at once */
    FAKE_DRIP,    /* send `data` a few bytes per write */
    FAKE_HANG,    /* read the request, never answer */
};

struct fake_step {
    enum fake_mode mode; /* what to do */
    const char *data;    /* the whole HTTP response */
    size_t len;          /* its length, 0: strlen(data) */
    bool keep_open;      /* do not close after sending */
};

struct fake {
    int lfd;                       /* listening socket */
    int port;                      /* its port */
    pthread_t thread;              /* the server */
    const struct fake_step *steps; /* the script */
    size_t n_steps;                /* its length */
    int stop;                      /* set to end the thread */
    int held[64];                  /* connections kept open */
    int n_held;                    /* how many */
    int served;                    /* connections accepted */
    char endpoint[64];             /* http://127.0.0.1:port */
};

/* Reads one request (headers and Content-Length body); false on EOF or
 * when asked to stop. */
static bool
fake_read_request(struct fake *f, int fd)
{
    char buf[8192];
    size_t len = 0;
    long body = -1;
    char *end = NULL;

    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        ssize_t n;

        if (__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE)) {
            return false;
        }
        if (poll(&pfd, 1, 50) <= 0) {
            continue;
        }
        n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n <= 0) {
            return false;
        }
        len += (size_t)n;
        buf[len] = '\0';
        if (!end && (end = strstr(buf, "\r\n\r\n"))) {
            char *cl = strcasestr(buf, "Content-Length:");

            body = cl ? strtol(cl + 15, NULL, 10) : 0;
        }
        if (end && (long)(len - (size_t)(end + 4 - buf)) >= body) {
            return true;
        }
        if (len == sizeof buf - 1) {
            /* Big bodies: keep only what tells us where we are. */
            return true;
        }
    }
}

static void
fake_write(int fd, const char *p, size_t len, size_t per_write)
{
    while (len > 0) {
        size_t n = len < per_write ? len : per_write;
        ssize_t w = write(fd, p, n);

        if (w <= 0) {
            return;
        }
        p += w;
        len -= (size_t)w;
        if (per_write < 64) {
            usleep(1000);
        }
    }
}

static void *
fake_main(void *arg)
{
    struct fake *f = arg;

    while (!__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE)) {
        struct pollfd pfd = {.fd = f->lfd, .events = POLLIN};
        const struct fake_step *s;
        int one = 1;
        int fd;

        if (poll(&pfd, 1, 50) <= 0) {
            continue;
        }
        fd = accept(f->lfd, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        s = f->served < (int)f->n_steps ? &f->steps[f->served] : NULL;
        __atomic_add_fetch(&f->served, 1, __ATOMIC_RELEASE);
        if (!fake_read_request(f, fd)) {
            close(fd);
            continue;
        }
        if (!s || s->mode == FAKE_HANG) {
            f->held[f->n_held++ % 64] = fd;
            continue;
        }
        fake_write(fd, s->data, s->len ? s->len : strlen(s->data),
                   s->mode == FAKE_DRIP ? 5 : SIZE_MAX);
        if (s->keep_open) {
            f->held[f->n_held++ % 64] = fd;
        } else {
            close(fd);
        }
    }
    for (int i = 0; i < f->n_held && i < 64; i++) {
        close(f->held[i]);
    }
    close(f->lfd);
    return NULL;
}

static void
fake_start(struct fake *f, const struct fake_step *steps, size_t n)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t slen = sizeof sin;

    memset(f, 0, sizeof *f);
    f->steps = steps;
    f->n_steps = n;
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(f->lfd, 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(f->lfd, (struct sockaddr *)&sin, sizeof sin), 0);
    ck_assert_int_eq(listen(f->lfd, 64), 0);
    getsockname(f->lfd, (struct sockaddr *)&sin, &slen);
    f->port = ntohs(sin.sin_port);
    snprintf(f->endpoint, sizeof f->endpoint, "http://127.0.0.1:%d", f->port);
    ck_assert_int_eq(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void
fake_stop(struct fake *f)
{
    __atomic_store_n(&f->stop, 1, __ATOMIC_RELEASE);
    pthread_join(f->thread, NULL);
}

/* An HTTP response with a body. */
static char *
http_response(const char *status, const char *ctype, const char *body)
{
    char *s;

    ck_assert_int_ge(asprintf(&s,
                              "HTTP/1.1 %s\r\nContent-Type: %s\r\n"
                              "Content-Length: %zu\r\nConnection: close\r\n"
                              "\r\n%s",
                              status, ctype, strlen(body), body),
                     0);
    return s;
}

/* A 200 streaming response: `body` in chunks of `chunk` bytes, ended
 * with the last chunk unless `open`. */
static char *
http_stream(const char *body, size_t chunk, bool open)
{
    size_t len = strlen(body);
    size_t cap = 256 + len * 2 + (len / chunk + 1) * 16;
    char *s = malloc(cap);
    size_t o;

    o = (size_t)snprintf(s, cap,
                         "HTTP/1.1 200 OK\r\nContent-Type: application/json"
                         "\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (size_t i = 0; i < len; i += chunk) {
        size_t n = len - i < chunk ? len - i : chunk;

        o += (size_t)snprintf(s + o, cap - o, "%zx\r\n%.*s\r\n", n, (int)n,
                              body + i);
    }
    if (!open) {
        o += (size_t)snprintf(s + o, cap - o, "0\r\n\r\n");
    }
    return s;
}

/* ------------------------------------------------------------------------
 * Cases. */

START_TEST(test_prefix_end)
{
    char out[8];

    ck_assert_uint_eq(mcos_etcd_prefix_end("a", 1, out), 1);
    ck_assert_int_eq(out[0], 'b');
    ck_assert_uint_eq(mcos_etcd_prefix_end("a\xff", 2, out), 1);
    ck_assert_int_eq(out[0], 'b');
    ck_assert_uint_eq(mcos_etcd_prefix_end("/x/", 3, out), 3);
    ck_assert(!memcmp(out, "/x0", 3));
    /* Nothing to increment: every key from the prefix on. */
    ck_assert_uint_eq(mcos_etcd_prefix_end("\xff\xff", 2, out), 1);
    ck_assert_int_eq(out[0], '\0');
}
END_TEST

START_TEST(test_create_errors)
{
    static const struct {
        const char *endpoints; /* given */
        const char *needle;    /* in the message */
    } cases[] = {
        {"", "no etcd endpoints"},
        {" , ,", "no etcd endpoints"},
        {"ftp://127.0.0.1:1", "scheme 'ftp' is not http or https"},
        {"http://127.0.0.1:1/v3", "has a path or query"},
        {"http://127.0.0.1:1?x=1", "has a path or query"},
        {"127.0.0.1:2379", "is not a URL"},
        {"http://", "is not a URL"},
    };
    char many[2048] = "";
    char err[MCOS_ETCD_ERR_LEN];
    struct mcos_etcd *e = NULL;
    uv_loop_t loop;

    uv_loop_init(&loop);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        ck_assert_err(mcos_etcd_create(&loop, cases[i].endpoints, NULL, &e,
                                       err, sizeof err),
                      -EINVAL, err, cases[i].needle);
    }
    for (int i = 0; i <= MCOS_ETCD_MAX_ENDPOINTS; i++) {
        strcat(many, "http://127.0.0.1:1,");
    }
    ck_assert_err(mcos_etcd_create(&loop, many, NULL, &e, err, sizeof err),
                  -EINVAL, err, "more than 16 etcd endpoints");
    ck_assert_err(mcos_etcd_create(&loop, NULL, NULL, &e, err, sizeof err),
                  -EINVAL, err, "no loop, endpoints or handle");
    /* Spaces and a trailing slash are fine. */
    ck_assert_int_eq(mcos_etcd_create(&loop,
                                      " http://127.0.0.1:1/ , "
                                      "http://localhost:2",
                                      NULL, &e, err, sizeof err),
                     0);
    mcos_etcd_close(e);
    mcos_etcd_close(NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

/* TLS files: checked at create (and by the config check), exact messages;
 * empty strings mean "not set". */
START_TEST(test_tls_options)
{
    char *dir = test_tmpdir(), ca[512], cert[512], key[512], want[1024];
    char err[MCOS_ETCD_ERR_LEN];
    struct mcos_etcd_options o;
    struct mcos_etcd *e = NULL;
    uv_loop_t loop;
    FILE *f;

    snprintf(ca, sizeof ca, "%s/ca.pem", dir);
    snprintf(cert, sizeof cert, "%s/client.pem", dir);
    snprintf(key, sizeof key, "%s/client-key.pem", dir);
    for (int i = 0; i < 3; i++) {
        f = fopen(i == 0 ? ca : i == 1 ? cert : key, "w");
        ck_assert_ptr_nonnull(f);
        fputs("-----BEGIN CERTIFICATE-----\n", f);
        fclose(f);
    }
    uv_loop_init(&loop);

    o = mcos_etcd_tls_options("/nonexistent/ca.pem", NULL, NULL);
    ck_assert_int_eq(mcos_etcd_create(&loop, "https://127.0.0.1:1", &o, &e,
                                      err, sizeof err),
                     -EINVAL);
    ck_assert_str_eq(err, "etcd TLS CA file '/nonexistent/ca.pem': No such "
                          "file or directory");
    o = mcos_etcd_tls_options(dir, NULL, NULL);
    ck_assert_int_eq(
        mcos_etcd_check("https://127.0.0.1:1", &o, err, sizeof err), -EINVAL);
    snprintf(want, sizeof want, "etcd TLS CA file '%s': not a regular file",
             dir);
    ck_assert_str_eq(err, want);
    o = mcos_etcd_tls_options(NULL, cert, "");
    ck_assert_int_eq(
        mcos_etcd_check("https://127.0.0.1:1", &o, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "etcd TLS: a client certificate needs its key and "
                          "a key its certificate (got only the certificate)");
    o = mcos_etcd_tls_options("", NULL, key);
    ck_assert_int_eq(
        mcos_etcd_check("https://127.0.0.1:1", &o, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "etcd TLS: a client certificate needs its key and "
                          "a key its certificate (got only the key)");
    o = mcos_etcd_tls_options(NULL, cert, "/nonexistent/key.pem");
    ck_assert_int_eq(
        mcos_etcd_check("https://127.0.0.1:1", &o, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "etcd TLS client key '/nonexistent/key.pem': No "
                          "such file or directory");
    o = mcos_etcd_tls_options(ca, NULL, NULL);
    ck_assert_int_eq(
        mcos_etcd_create(&loop, "http://127.0.0.1:1", &o, &e, err, sizeof err),
        -EINVAL);
    ck_assert_str_eq(err, "etcd TLS files are set but no etcd endpoint is "
                          "https://");
    ck_assert_int_eq(mcos_etcd_config_check("", ca, "", "", err, sizeof err),
                     -EINVAL);
    ck_assert_str_eq(err, "etcd TLS files are set but etcd.endpoints is "
                          "empty");
    /* Fine: nothing set; unset strings; all three with an https endpoint
     * among http ones; the config check of a daemon without etcd. */
    ck_assert_int_eq(mcos_etcd_config_check("", "", "", NULL, err, sizeof err),
                     0);
    ck_assert_int_eq(mcos_etcd_config_check("http://127.0.0.1:1", "", "", "",
                                            err, sizeof err),
                     0);
    o = mcos_etcd_tls_options(ca, cert, key);
    ck_assert_int_eq(mcos_etcd_create(&loop,
                                      "http://127.0.0.1:1,https://127.0.0.1:2",
                                      &o, &e, err, sizeof err),
                     0);
    mcos_etcd_close(e);
    /* The client keeps its own copies of the paths. */
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    unlink(ca);
    unlink(cert);
    unlink(key);
    rmdir(dir);
    free(dir);
}
END_TEST

START_TEST(test_bad_input)
{
    char ep[64];
    struct t t;
    struct mcos_etcd_watch *w;
    struct mcos_etcd_keepalive *ka;
    size_t big = MCOS_ETCD_MAX_REQUEST_BYTES;
    char *v = calloc(1, big + 1);
    struct mcos_etcd_op bigop = {.type = MCOS_ETCD_OP_PUT,
                                 .key = "k",
                                 .key_len = 1,
                                 .value = v,
                                 .value_len = big};
    struct mcos_etcd_compare nokey = {.key = "", .key_len = 0};
    struct mcos_etcd_compare okcmp = {.key = "k", .key_len = 1};
    struct mcos_etcd_txn bigtxn = {
        .compare = &okcmp, .n_compare = 1, .success = &bigop, .n_success = 1};
    struct mcos_etcd_txn nokeytxn = {.compare = &nokey, .n_compare = 1};
    struct mcos_etcd_range norange = {.key = "", .key_len = 0};
    struct mcos_etcd_options small = {.max_request_bytes = 1000};
    int n = 0;

    dead_endpoint(ep, sizeof ep);
    t_open(&t, ep, NULL);
#define BAD(CALL, ERR, NEEDLE)                                                \
    do {                                                                      \
        ck_assert_err((CALL), (ERR), mcos_etcd_last_error(t.e), (NEEDLE));    \
        n++;                                                                  \
    } while (0)
    BAD(mcos_etcd_put(t.e, "", 0, "v", 1, 0, on_result, &t.g), -EINVAL,
        "put: empty key");
    BAD(mcos_etcd_put(t.e, NULL, 3, "v", 1, 0, on_result, &t.g), -EINVAL,
        "key is NULL");
    BAD(mcos_etcd_put(t.e, "k", 1, v, big, 0, on_result, &t.g), -EMSGSIZE,
        "over the 1572864-byte request limit");
    BAD(mcos_etcd_put(t.e, "k", 1, "v", 1, -5, on_result, &t.g), -EINVAL,
        "negative lease");
    BAD(mcos_etcd_get(t.e, "", 0, false, on_result, &t.g), -EINVAL,
        "range: empty key");
    BAD(mcos_etcd_range(t.e, &norange, on_result, &t.g), -EINVAL,
        "range: empty key");
    BAD(mcos_etcd_range(t.e, NULL, on_result, &t.g), -EINVAL, "no request");
    BAD(mcos_etcd_delete(t.e, "", 0, false, on_result, &t.g), -EINVAL,
        "delete: empty key");
    BAD(mcos_etcd_txn(t.e, &nokeytxn, on_result, &t.g), -EINVAL,
        "compare 0: empty key");
    BAD(mcos_etcd_txn(t.e, &bigtxn, on_result, &t.g), -EMSGSIZE,
        "request limit");
    BAD(mcos_etcd_lease_grant(t.e, 0, on_result, &t.g), -EINVAL,
        "TTL must be positive");
    BAD(mcos_etcd_lease_revoke(t.e, 0, on_result, &t.g), -EINVAL,
        "lease ids are positive");
    BAD(mcos_etcd_lease_ttl(t.e, -1, on_result, &t.g), -EINVAL,
        "lease ids are positive");
    BAD(mcos_etcd_compact(t.e, 0, on_result, &t.g), -EINVAL,
        "revisions are positive");
    BAD(mcos_etcd_keepalive_start(t.e, 7, 0, 0, on_result, &t.g, &ka), -EINVAL,
        "bad lease id, TTL or handle");
    BAD(mcos_etcd_keepalive_start(t.e, 7, 1, 1000, on_result, &t.g, &ka),
        -EINVAL, "not shorter than the TTL");
    BAD(mcos_etcd_watch(t.e, "k", 1, false, 0, NULL, NULL, &w), -EINVAL,
        "needs a callback");
    BAD(mcos_etcd_watch(t.e, "k", 1, false, -1, on_result, &t.g, &w), -EINVAL,
        "start revision >= 0");
    BAD(mcos_etcd_watch(t.e, "", 0, false, 0, on_result, &t.g, &w), -EINVAL,
        "watch: empty key");
    ck_assert_int_eq(n, 19);
    /* Nothing was sent, so nothing calls back. */
    uv_run(&t.loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(t.g.calls, 0);
    t_close(&t);

    /* The limit is an option (for servers started with another one). */
    t_open(&t, ep, &small);
    BAD(mcos_etcd_put(t.e, "k", 1, v, 1000, 0, on_result, &t.g), -EMSGSIZE,
        "over the 1000-byte request limit");
    t_close(&t);
#undef BAD
    free(v);
}
END_TEST

START_TEST(test_unreachable)
{
    char ep1[64], ep2[64], both[140];
    struct mcos_etcd_stats st;
    struct evlog l = {0};
    uint64_t t0;
    struct t t;

    dead_endpoint(ep1, sizeof ep1);
    t_open(&t, ep1, NULL);
    t0 = now_ms();
    t_puts(&t, "k", "v");
    ck_assert_err(t.g.status, -ECONNREFUSED, t.g.error, ep1);
    ck_assert_msg(strstr(t.g.error, "put \"k\""), "%s", t.g.error);
    ck_assert_msg(strstr(t.g.error, "Connection refused"), "%s", t.g.error);
    ck_assert_msg(now_ms() - t0 < 1000, "took %" PRIu64 " ms", now_ms() - t0);
    /* A watch that cannot connect ends at once, never created. */
    ck_assert_int_eq(
        mcos_etcd_watch(t.e, "k", 1, false, 0, on_watch, &l, &l.w), 0);
    RUN_UNTIL(&t.loop, l.finals == 1, 5000);
    ck_assert_err(l.final_status, -ECONNREFUSED, l.final_error, ep1);
    ck_assert_msg(strstr(l.final_error, "cannot open the watch stream"), "%s",
                  l.final_error);
    ck_assert_int_eq(l.created, 0);
    mcos_etcd_get_stats(t.e, &st);
    ck_assert_uint_eq(st.requests, 1);
    ck_assert_uint_eq(st.failed, 1);
    t_close(&t);

    /* A name (resolved by curl's own resolver thread, off the loop). */
    snprintf(both, sizeof both, "http://localhost:%d",
             atoi(strrchr(ep1, ':') + 1));
    t_open(&t, both, NULL);
    t_puts(&t, "k", "v");
    ck_assert_err(t.g.status, -ECONNREFUSED, t.g.error, both);
    t_close(&t);

    /* Two dead endpoints: both named, one failover. */
    dead_endpoint(ep2, sizeof ep2);
    snprintf(both, sizeof both, "%s,%s", ep1, ep2);
    t_open(&t, both, NULL);
    t_puts(&t, "k", "v");
    ck_assert_err(t.g.status, -ECONNREFUSED, t.g.error,
                  "no endpoint answered");
    ck_assert_msg(strstr(t.g.error, ep1) && strstr(t.g.error, ep2), "%s",
                  t.g.error);
    mcos_etcd_get_stats(t.e, &st);
    ck_assert_uint_eq(st.failovers, 1);
    t_close(&t);
}
END_TEST

START_TEST(test_failover)
{
    char dead[64], eps[160];
    struct mcos_etcd_stats st;
    struct t t;

    dead_endpoint(dead, sizeof dead);
    snprintf(eps, sizeof eps, "%s,%s", dead, shared_etcd.endpoint);
    t_open(&t, eps, NULL);
    ck_ok(t_puts(&t, "/t/fo/k", "v1"));
    ck_assert_str_eq(t.g.endpoint, shared_etcd.endpoint);
    mcos_etcd_get_stats(t.e, &st);
    ck_assert_uint_eq(st.failovers, 1);
    /* The endpoint that answered is now tried first. */
    ck_ok(t_puts(&t, "/t/fo/k", "v2"));
    mcos_etcd_get_stats(t.e, &st);
    ck_assert_uint_eq(st.failovers, 1);
    ck_ok(t_get(&t, "/t/fo/k", false));
    ck_assert_str_eq(t.g.kvs[0].value, "v2");

    /* Status asks each endpoint. */
    t_status(&t);
    ck_ok(&t.g);
    ck_assert_uint_eq(t.g.n_members, 2);
    ck_assert_err(t.g.members[0].status, -ECONNREFUSED, t.g.members[0].error,
                  dead);
    ck_assert_int_eq(t.g.members[1].status, 0);
    ck_assert_str_eq(t.g.members[1].version, "3.4.23");
    ck_assert(t.g.members[1].is_leader);
    t_close(&t);
}
END_TEST

START_TEST(test_kv)
{
    static const char bin[] = {'x', 0, 'y', 0, (char)0xff};
    static const char nulkey[] = {'/', 't', '/', 'k', 'v', '/', 0, 'k'};
    struct mcos_etcd_range q = {.key = "/t/kv/", .key_len = 6, .prefix = 1};
    int64_t rev_a;
    struct t t;

    t_open(&t, shared_etcd.endpoint, NULL);
    ck_ok(t_puts(&t, "/t/kv/a", "1"));
    rev_a = t.g.revision;
    ck_assert_int_gt(rev_a, 0);
    ck_ok(t_put(&t, "/t/kv/b", 7, bin, sizeof bin, 0));
    ck_ok(t_puts(&t, "/t/kv/c", ""));
    ck_ok(t_put(&t, nulkey, sizeof nulkey, "nul", 3, 0));
    ck_ok(t_puts(&t, "/t/kvz", "outside"));

    ck_ok(t_get(&t, "/t/kv/a", false));
    ck_assert_uint_eq(t.g.n_kvs, 1);
    ck_assert_str_eq(t.g.kvs[0].key, "/t/kv/a");
    ck_assert_str_eq(t.g.kvs[0].value, "1");
    ck_assert_int_eq(t.g.kvs[0].version, 1);
    ck_assert_int_eq(t.g.kvs[0].create_revision, rev_a);
    ck_assert_int_eq(t.g.kvs[0].mod_revision, rev_a);
    ck_assert_int_eq(t.g.kvs[0].lease, 0);

    /* Binary values and keys come back byte for byte. */
    ck_ok(t_get(&t, "/t/kv/b", false));
    ck_assert_uint_eq(t.g.kvs[0].value_len, sizeof bin);
    ck_assert(!memcmp(t.g.kvs[0].value, bin, sizeof bin));
    ck_ok(t_get(&t, "/t/kv/c", false));
    ck_assert_uint_eq(t.g.n_kvs, 1);
    ck_assert_uint_eq(t.g.kvs[0].value_len, 0);

    /* A prefix, in key order; "/t/kvz" is outside it. */
    ck_ok(t_range(&t, &q));
    ck_assert_uint_eq(t.g.n_kvs, 4);
    ck_assert_int_eq(t.g.count, 4);
    ck_assert_uint_eq(t.g.kvs[0].key_len, sizeof nulkey);
    ck_assert(!memcmp(t.g.kvs[0].key, nulkey, sizeof nulkey));
    ck_assert_str_eq(t.g.kvs[1].key, "/t/kv/a");
    ck_assert_str_eq(t.g.kvs[3].key, "/t/kv/c");
    q.limit = 2;
    ck_ok(t_range(&t, &q));
    ck_assert_uint_eq(t.g.n_kvs, 2);
    ck_assert(t.g.more);
    ck_assert_int_eq(t.g.count, 4);
    q.limit = 0;
    q.keys_only = true;
    ck_ok(t_range(&t, &q));
    ck_assert_uint_eq(t.g.n_kvs, 4);
    ck_assert_uint_eq(t.g.kvs[1].value_len, 0);
    q.keys_only = false;
    q.count_only = true;
    ck_ok(t_range(&t, &q));
    ck_assert_uint_eq(t.g.n_kvs, 0);
    ck_assert_int_eq(t.g.count, 4);
    /* An explicit [key, range_end). */
    q = (struct mcos_etcd_range){.key = "/t/kv/a",
                                 .key_len = 7,
                                 .range_end = "/t/kv/c",
                                 .range_end_len = 7};
    ck_ok(t_range(&t, &q));
    ck_assert_uint_eq(t.g.n_kvs, 2);

    /* An empty prefix is every key. */
    q = (struct mcos_etcd_range){.prefix = true, .count_only = true};
    ck_ok(t_range(&t, &q));
    ck_assert_int_ge(t.g.count, 5);

    /* Missing keys are not errors. */
    ck_ok(t_get(&t, "/t/kv/missing", false));
    ck_assert_uint_eq(t.g.n_kvs, 0);

    /* Versions, and reads at an old revision. */
    ck_ok(t_puts(&t, "/t/kv/a", "2"));
    ck_ok(t_get(&t, "/t/kv/a", false));
    ck_assert_int_eq(t.g.kvs[0].version, 2);
    ck_assert_str_eq(t.g.kvs[0].value, "2");
    q = (struct mcos_etcd_range){
        .key = "/t/kv/a", .key_len = 7, .revision = rev_a};
    ck_ok(t_range(&t, &q));
    ck_assert_str_eq(t.g.kvs[0].value, "1");

    /* Deletes. */
    ck_ok(t_delete(&t, "/t/kv/a", 7, false));
    ck_assert_int_eq(t.g.deleted, 1);
    ck_ok(t_delete(&t, "/t/kv/a", 7, false));
    ck_assert_int_eq(t.g.deleted, 0);
    ck_ok(t_delete(&t, "/t/kv/", 6, true));
    ck_assert_int_eq(t.g.deleted, 3);
    ck_ok(t_get(&t, "/t/kv/", true));
    ck_assert_uint_eq(t.g.n_kvs, 0);
    ck_ok(t_get(&t, "/t/kvz", false));
    ck_assert_str_eq(t.g.kvs[0].value, "outside");
    t_close(&t);
}
END_TEST

START_TEST(test_txn)
{
    struct t t;
    int64_t lease, mod;
    struct mcos_etcd_compare absent = {.key = "/t/txn/leader",
                                       .key_len = 13,
                                       .target = MCOS_ETCD_CMP_CREATE,
                                       .result = MCOS_ETCD_CMP_EQUAL,
                                       .number = 0};
    struct mcos_etcd_op claim = {.type = MCOS_ETCD_OP_PUT,
                                 .key = "/t/txn/leader",
                                 .key_len = 13,
                                 .value = "node1",
                                 .value_len = 5};
    struct mcos_etcd_op read = {
        .type = MCOS_ETCD_OP_RANGE, .key = "/t/txn/leader", .key_len = 13};
    struct mcos_etcd_txn elect = {.compare = &absent,
                                  .n_compare = 1,
                                  .success = &claim,
                                  .n_success = 1,
                                  .failure = &read,
                                  .n_failure = 1};
    struct mcos_etcd_compare cmp;
    struct mcos_etcd_op ops[2];

    t_open(&t, shared_etcd.endpoint, NULL);
    lease = t_grant(&t, 10)->lease_id;
    claim.lease = lease;

    /* The election: create_revision == 0, then put with the lease. */
    ck_ok(t_txn(&t, &elect));
    ck_assert(t.g.succeeded);
    ck_assert_uint_eq(t.g.n_ops, 1);
    ck_assert_int_eq(t.g.ops[0].type, MCOS_ETCD_OP_PUT);
    /* A second candidate loses and learns who won. */
    claim.value = "node2";
    ck_ok(t_txn(&t, &elect));
    ck_assert(!t.g.succeeded);
    ck_assert_int_eq(t.g.ops[0].type, MCOS_ETCD_OP_RANGE);
    ck_assert_uint_eq(t.g.ops[0].n_kvs, 1);
    ck_assert_str_eq(t.g.ops[0].kv0.value, "node1");
    ck_assert_int_eq(t.g.ops[0].kv0.lease, lease);
    mod = t.g.ops[0].kv0.mod_revision;

    /* Compare-and-swap on the value. */
    cmp = (struct mcos_etcd_compare){.key = "/t/txn/leader",
                                     .key_len = 13,
                                     .target = MCOS_ETCD_CMP_VALUE,
                                     .result = MCOS_ETCD_CMP_EQUAL,
                                     .value = "wrong",
                                     .value_len = 5};
    ops[0] = (struct mcos_etcd_op){.type = MCOS_ETCD_OP_PUT,
                                   .key = "/t/txn/leader",
                                   .key_len = 13,
                                   .value = "node1b",
                                   .value_len = 6,
                                   .lease = lease};
    ops[1] = read;
    elect = (struct mcos_etcd_txn){
        .compare = &cmp, .n_compare = 1, .success = ops, .n_success = 2};
    ck_ok(t_txn(&t, &elect));
    ck_assert(!t.g.succeeded);
    ck_assert_uint_eq(t.g.n_ops, 0);
    cmp.value = "node1";
    ck_ok(t_txn(&t, &elect));
    ck_assert(t.g.succeeded);
    ck_assert_uint_eq(t.g.n_ops, 2);
    ck_assert_str_eq(t.g.ops[1].kv0.value, "node1b");

    /* The other targets. */
    cmp = (struct mcos_etcd_compare){.key = "/t/txn/leader",
                                     .key_len = 13,
                                     .target = MCOS_ETCD_CMP_MOD,
                                     .result = MCOS_ETCD_CMP_GREATER,
                                     .number = mod};
    elect = (struct mcos_etcd_txn){.compare = &cmp, .n_compare = 1};
    ck_ok(t_txn(&t, &elect));
    ck_assert(t.g.succeeded);
    cmp.target = MCOS_ETCD_CMP_VERSION;
    cmp.result = MCOS_ETCD_CMP_EQUAL;
    cmp.number = 2;
    ck_ok(t_txn(&t, &elect));
    ck_assert(t.g.succeeded);
    cmp.target = MCOS_ETCD_CMP_LEASE;
    cmp.number = lease;
    ck_ok(t_txn(&t, &elect));
    ck_assert(t.g.succeeded);
    cmp.result = MCOS_ETCD_CMP_NOT_EQUAL;
    ck_ok(t_txn(&t, &elect));
    ck_assert(!t.g.succeeded);
    cmp.result = MCOS_ETCD_CMP_LESS;
    cmp.target = MCOS_ETCD_CMP_CREATE;
    cmp.number = mod;
    ck_ok(t_txn(&t, &elect));
    ck_assert(!t.g.succeeded);

    /* Delete in a transaction; then revoking the lease drops the key. */
    ops[0] = (struct mcos_etcd_op){
        .type = MCOS_ETCD_OP_DELETE, .key = "/t/txn/none", .key_len = 11};
    elect = (struct mcos_etcd_txn){.success = ops, .n_success = 1};
    ck_ok(t_txn(&t, &elect));
    ck_assert(t.g.succeeded);
    ck_assert_int_eq(t.g.ops[0].type, MCOS_ETCD_OP_DELETE);
    ck_assert_int_eq(t.g.ops[0].count, 0);
    got_reset(&t.g);
    T_WAIT(&t, mcos_etcd_lease_revoke(t.e, lease, on_result, &t.g));
    ck_ok(&t.g);
    ck_ok(t_get(&t, "/t/txn/leader", false));
    ck_assert_uint_eq(t.g.n_kvs, 0);
    t_close(&t);
}
END_TEST

struct lost {
    int calls;        /* lost callbacks */
    int status;       /* the last status */
    int64_t lease_id; /* its lease */
    char error[1024]; /* its message */
};

static void
on_lost(const struct mcos_etcd_result *res, void *arg)
{
    struct lost *l = arg;

    l->calls++;
    l->status = res->status;
    l->lease_id = res->lease_id;
    snprintf(l->error, sizeof l->error, "%s", res->error);
}

START_TEST(test_lease)
{
    struct mcos_etcd_keepalive *ka, *ka2;
    struct mcos_etcd_stats st;
    struct lost lost = {0}, lost2 = {0};
    int64_t lease, lease2;
    uint64_t t0;
    struct t t;

    t_open(&t, shared_etcd.endpoint, NULL);
    /* Unknown leases. */
    got_reset(&t.g);
    T_WAIT(&t, mcos_etcd_lease_ttl(t.e, 12345, on_result, &t.g));
    ck_assert_err(t.g.status, -ENOENT, t.g.error, "lease 12345 not found");
    got_reset(&t.g);
    T_WAIT(&t, mcos_etcd_lease_revoke(t.e, 12345, on_result, &t.g));
    ck_assert_err(t.g.status, -ENOENT, t.g.error,
                  "etcdserver: requested lease not found (gRPC code 5, "
                  "HTTP 404)");
    ck_assert_msg(strstr(t.g.error, shared_etcd.endpoint), "%s", t.g.error);

    /* A 2 s lease kept alive outlives its TTL with its key. */
    lease = t_grant(&t, 2)->lease_id;
    ck_assert_int_eq(t.g.ttl, 2);
    ck_ok(t_put(&t, "/t/lease/k", 10, "v", 1, lease));
    ck_assert_int_eq(
        mcos_etcd_keepalive_start(t.e, lease, 2, 0, on_lost, &lost, &ka), 0);
    run_for(&t.loop, 3500);
    ck_ok(t_get(&t, "/t/lease/k", false));
    ck_assert_uint_eq(t.g.n_kvs, 1);
    ck_assert_int_eq(t.g.kvs[0].lease, lease);
    got_reset(&t.g);
    T_WAIT(&t, mcos_etcd_lease_ttl(t.e, lease, on_result, &t.g));
    ck_ok(&t.g);
    ck_assert_int_gt(t.g.ttl, 0);
    mcos_etcd_get_stats(t.e, &st);
    ck_assert_uint_ge(st.keepalives, 3);
    ck_assert_int_eq(lost.calls, 0);

    /* Stopped: the key goes with the lease (no callback). */
    mcos_etcd_keepalive_stop(ka);
    t0 = now_ms();
    for (;;) {
        ck_ok(t_get(&t, "/t/lease/k", false));
        if (t.g.n_kvs == 0) {
            break;
        }
        ck_assert_msg(now_ms() - t0 < 6000, "key outlived its lease");
        run_for(&t.loop, 100); /* poll interval */
    }
    ck_assert_int_eq(lost.calls, 0);

    /* Revoked under a running keepalive: the lost callback says so. */
    lease2 = t_grant(&t, 5)->lease_id;
    ck_assert_int_eq(
        mcos_etcd_keepalive_start(t.e, lease2, 5, 200, on_lost, &lost, &ka),
        0);
    got_reset(&t.g);
    T_WAIT(&t, mcos_etcd_lease_revoke(t.e, lease2, on_result, &t.g));
    ck_ok(&t.g);
    RUN_UNTIL(&t.loop, lost.calls == 1, 5000);
    ck_assert_int_eq(lost.status, -ENOENT);
    ck_assert_int_eq(lost.lease_id, lease2);
    ck_assert_msg(strstr(lost.error, "has expired or was revoked"), "%s",
                  lost.error);
    /* A keepalive of a lease that never existed ends the same way. */
    ck_assert_int_eq(
        mcos_etcd_keepalive_start(t.e, 424242, 5, 0, on_lost, &lost2, &ka2),
        0);
    RUN_UNTIL(&t.loop, lost2.calls == 1, 5000);
    ck_assert_int_eq(lost2.status, -ENOENT);
    mcos_etcd_get_stats(t.e, &st);
    ck_assert_uint_eq(st.leases_lost, 2);
    t_close(&t);
    ck_assert_int_eq(lost.calls, 1);
}
END_TEST

START_TEST(test_keepalive_unreachable)
{
    struct mcos_etcd_options opt = {.request_timeout_ms = 300};
    struct mcos_etcd_keepalive *ka;
    struct mcos_etcd_stats st;
    struct lost lost = {0};
    char ep[64];
    uint64_t t0;
    struct t t;

    /* Nobody renews a 1 s lease: lost with -ETIMEDOUT after ~1 s, with
     * the reason of the last failure. */
    dead_endpoint(ep, sizeof ep);
    t_open(&t, ep, &opt);
    t0 = now_ms();
    ck_assert_int_eq(
        mcos_etcd_keepalive_start(t.e, 99, 1, 0, on_lost, &lost, &ka), 0);
    RUN_UNTIL(&t.loop, lost.calls == 1, 5000);
    ck_assert_err(lost.status, -ETIMEDOUT, lost.error,
                  "not renewed within its TTL of 1 s");
    ck_assert_msg(strstr(lost.error, "Connection refused"), "%s", lost.error);
    ck_assert_uint_ge(now_ms() - t0, 900);
    ck_assert_uint_lt(now_ms() - t0, 3000);
    mcos_etcd_get_stats(t.e, &st);
    ck_assert_uint_ge(st.keepalive_errors, 2);
    t_close(&t);
}
END_TEST

START_TEST(test_watch)
{
    static const size_t bigsz = 300000;
    char *big = malloc(bigsz);
    struct evlog l = {0}, r = {0}, k = {0};
    struct mcos_etcd_stats st;
    int64_t first;
    int calls;
    struct t t;

    for (size_t i = 0; i < bigsz; i++) {
        big[i] = (char)(i % 7 == 0 ? 0 : i * 31);
    }
    t_open(&t, shared_etcd.endpoint, NULL);
    ck_assert_int_eq(
        mcos_etcd_watch(t.e, "/t/w/", 5, true, 0, on_watch, &l, &l.w), 0);
    ck_assert_int_eq(
        mcos_etcd_watch(t.e, "/t/w/b", 6, false, 0, on_watch, &k, &k.w), 0);
    RUN_UNTIL(&t.loop, l.created == 1 && k.created == 1, 5000);

    ck_ok(t_puts(&t, "/t/w/a", "1"));
    first = t.g.revision;
    /* A value much larger than curl's buffer: its line spans many
     * chunks. */
    ck_ok(t_put(&t, "/t/w/b", 6, big, bigsz, 0));
    ck_ok(t_delete(&t, "/t/w/a", 6, false));
    RUN_UNTIL(&t.loop, l.n == 3 && k.n == 1, 5000);

    ck_assert_int_eq(l.ev[0].type, MCOS_ETCD_EVENT_PUT);
    ck_assert_str_eq(l.ev[0].kv.key, "/t/w/a");
    ck_assert_str_eq(l.ev[0].kv.value, "1");
    ck_assert_int_eq(l.ev[0].kv.mod_revision, first);
    ck_assert_int_eq(l.ev[1].type, MCOS_ETCD_EVENT_PUT);
    ck_assert_uint_eq(l.ev[1].kv.value_len, bigsz);
    ck_assert(!memcmp(l.ev[1].kv.value, big, bigsz));
    ck_assert_int_eq(l.ev[1].kv.mod_revision, first + 1);
    ck_assert_int_eq(l.ev[2].type, MCOS_ETCD_EVENT_DELETE);
    ck_assert_str_eq(l.ev[2].kv.key, "/t/w/a");
    ck_assert_int_eq(l.ev[2].kv.mod_revision, first + 2);
    ck_assert(l.ev[2].has_prev);
    ck_assert_str_eq(l.ev[2].prev.value, "1");
    /* The single-key watch saw only its key. */
    ck_assert_str_eq(k.ev[0].kv.key, "/t/w/b");

    /* Replay from the first revision: the same events, in order. */
    ck_assert_int_eq(
        mcos_etcd_watch(t.e, "/t/w/", 5, true, first, on_watch, &r, &r.w), 0);
    RUN_UNTIL(&t.loop, r.n == 3, 5000);
    for (size_t i = 0; i < 3; i++) {
        ck_assert_int_eq(r.ev[i].type, l.ev[i].type);
        ck_assert_int_eq(r.ev[i].kv.mod_revision, l.ev[i].kv.mod_revision);
        ck_assert_uint_eq(r.ev[i].kv.value_len, l.ev[i].kv.value_len);
    }
    mcos_etcd_get_stats(t.e, &st);
    ck_assert_uint_eq(st.watch_events, 7);

    /* Cancelled watches say nothing more. */
    mcos_etcd_watch_cancel(l.w);
    mcos_etcd_watch_cancel(k.w);
    mcos_etcd_watch_cancel(r.w);
    calls = l.calls + k.calls + r.calls;
    ck_ok(t_puts(&t, "/t/w/b", "after"));
    run_for(&t.loop, 100);
    ck_assert_int_eq(l.calls + k.calls + r.calls, calls);
    ck_ok(t_delete(&t, "/t/w/", 5, true));
    t_close(&t);
    ck_assert_int_eq(l.finals + k.finals + r.finals, 0);
    evlog_free(&l);
    evlog_free(&r);
    evlog_free(&k);
    free(big);
}
END_TEST

START_TEST(test_watch_compacted)
{
    struct mcos_etcd_range q = {.key = "/t/c/k", .key_len = 6};
    struct evlog l = {0};
    int64_t r1, r3;
    struct t t;

    t_open(&t, shared_etcd.endpoint, NULL);
    r1 = t_puts(&t, "/t/c/k", "1")->revision;
    t_puts(&t, "/t/c/k", "2");
    r3 = t_puts(&t, "/t/c/k", "3")->revision;
    got_reset(&t.g);
    T_WAIT(&t, mcos_etcd_compact(t.e, r3, on_result, &t.g));
    ck_ok(&t.g);

    ck_assert_int_eq(
        mcos_etcd_watch(t.e, "/t/c/k", 6, false, r1, on_watch, &l, &l.w), 0);
    RUN_UNTIL(&t.loop, l.finals == 1, 5000);
    ck_assert_err(l.final_status, -ESTALE, l.final_error,
                  "history compacted up to revision");
    ck_assert_int_eq(l.compact_revision, r3);
    ck_assert_msg(strstr(l.final_error, shared_etcd.endpoint), "%s",
                  l.final_error);

    q.revision = r1;
    t_range(&t, &q);
    ck_assert_err(t.g.status, -ESTALE, t.g.error,
                  "required revision has been compacted");
    ck_ok(t_delete(&t, "/t/c/", 5, true));
    t_close(&t);
    evlog_free(&l);
}
END_TEST

START_TEST(test_restart)
{
    struct mcos_etcd_options opt = {.request_timeout_ms = 2000,
                                    .connect_timeout_ms = 500};
    struct etcd_proc p;
    struct mcos_etcd_keepalive *ka;
    struct lost lost = {0};
    struct evlog l = {0}, l2 = {0};
    int64_t lease, last;
    uint64_t t0;
    struct t t;

    ck_assert(etcd_start(&p));
    t_open(&t, p.endpoint, &opt);
    lease = t_grant(&t, 4)->lease_id;
    ck_assert_int_eq(
        mcos_etcd_keepalive_start(t.e, lease, 4, 0, on_lost, &lost, &ka), 0);
    ck_assert_int_eq(
        mcos_etcd_watch(t.e, "/r/", 3, true, 0, on_watch, &l, &l.w), 0);
    RUN_UNTIL(&t.loop, l.created == 1, 5000);
    ck_ok(t_puts(&t, "/r/a", "1"));
    last = t.g.revision;
    RUN_UNTIL(&t.loop, l.n == 1, 5000);

    /* Hung (SIGSTOP): the kernel still holds the connection open, but a
     * watch with a short idle time probes and gives up on it. */
    {
        struct mcos_etcd_options fast = {.request_timeout_ms = 400,
                                         .watch_idle_ms = 300};
        char err[MCOS_ETCD_ERR_LEN];
        struct mcos_etcd *e2;
        struct evlog h = {0};

        ck_assert_int_eq(
            mcos_etcd_create(&t.loop, p.endpoint, &fast, &e2, err, sizeof err),
            0);
        ck_assert_int_eq(
            mcos_etcd_watch(e2, "/r/", 3, true, 0, on_watch, &h, &h.w), 0);
        RUN_UNTIL(&t.loop, h.created == 1, 5000);
        kill(p.pid, SIGSTOP);
        RUN_UNTIL(&t.loop, h.finals == 1, 5000);
        kill(p.pid, SIGCONT);
        ck_assert_err(h.final_status, -ETIMEDOUT, h.final_error,
                      "watch stream silent for 300 ms");
        ck_assert_msg(strstr(h.final_error, "no answer within 400 ms"), "%s",
                      h.final_error);
        mcos_etcd_close(e2);
        evlog_free(&h);
    }

    /* Killed: the watch reports its broken stream, requests fail fast. */
    etcd_kill(&p, SIGKILL);
    RUN_UNTIL(&t.loop, l.finals == 1, 5000);
    ck_assert_err(l.final_status, -ECONNRESET, l.final_error,
                  "watch stream broken");
    ck_assert_msg(strstr(l.final_error, p.endpoint), "%s", l.final_error);
    ck_assert_int_eq(l.final_revision, last);
    t0 = now_ms();
    t_puts(&t, "/r/b", "2");
    ck_assert_err(t.g.status, -ECONNREFUSED, t.g.error, p.endpoint);
    ck_assert_uint_lt(now_ms() - t0, 1000);

    /* Restarted on the same data: the same client works again. */
    etcd_spawn(&p);
    t0 = now_ms();
    for (;;) {
        t_puts(&t, "/r/b", "2");
        if (t.g.status == 0) {
            break;
        }
        ck_assert_msg(t.g.status == -ECONNREFUSED ||
                          t.g.status == -ETIMEDOUT || t.g.status == -EAGAIN,
                      "%d %s", t.g.status, t.g.error);
        ck_assert_msg(now_ms() - t0 < 10000, "etcd did not come back");
        run_for(&t.loop, 50); /* poll interval */
    }
    /* The watch resumes where it stopped. */
    ck_assert_int_eq(
        mcos_etcd_watch(t.e, "/r/", 3, true, last + 1, on_watch, &l2, &l2.w),
        0);
    RUN_UNTIL(&t.loop, l2.n == 1, 5000);
    ck_assert_str_eq(l2.ev[0].kv.key, "/r/b");
    /* The lease survived the restart under its keepalive. */
    ck_ok(t_put(&t, "/r/lease", 8, "x", 1, lease));
    ck_assert_int_eq(lost.calls, 0);
    t_close(&t);
    ck_assert_int_eq(lost.calls, 1);
    ck_assert_int_eq(lost.status, -ECANCELED);
    ck_assert_int_eq(l2.finals, 1);
    ck_assert_int_eq(l2.final_status, -ECANCELED);
    etcd_destroy(&p);
    evlog_free(&l);
    evlog_free(&l2);
}
END_TEST

START_TEST(test_fake_answers)
{
    char *bigbody = calloc(1, 2001);
    char *r[8];
    struct fake_step steps[8];
    struct mcos_etcd_options opt = {.request_timeout_ms = 300,
                                    .max_response_bytes = 1000};
    struct fake f;
    struct t t;

    memset(bigbody, 'x', 2000);
    r[0] = http_response("200 OK", "application/json", "not json!");
    r[1] = http_response("404 Not Found", "text/plain", "Not Found\n");
    r[2] = http_response("500 Internal Server Error", "text/html",
                         "<html>oops</html>");
    r[3] = http_response("200 OK", "application/json",
                         "{\"header\":{\"revision\":\"abc\"}}");
    r[4] = http_response("200 OK", "application/json",
                         "{\"kvs\":[{\"key\":\"!!!\"}],\"count\":\"1\"}");
    r[5] = http_response("503 Service Unavailable", "application/json",
                         "{\"error\":\"etcdserver: no leader\",\"message\":"
                         "\"etcdserver: no leader\",\"code\":14}");
    r[6] = http_response("200 OK", "application/json", bigbody);
    for (int i = 0; i < 7; i++) {
        steps[i] = (struct fake_step){.mode = FAKE_RESPOND, .data = r[i]};
    }
    steps[7] = (struct fake_step){.mode = FAKE_HANG};
    fake_start(&f, steps, 8);
    t_open(&t, f.endpoint, &opt);

    t_puts(&t, "k", "v");
    ck_assert_err(t.g.status, -EBADMSG, t.g.error, "malformed answer");
    ck_assert_msg(strstr(t.g.error, f.endpoint), "%s", t.g.error);
    t_puts(&t, "k", "v");
    ck_assert_err(t.g.status, -EPROTONOSUPPORT, t.g.error, "HTTP 404");
    t_puts(&t, "k", "v");
    ck_assert_err(t.g.status, -EIO, t.g.error, "HTTP 500: <html>oops");
    t_puts(&t, "k", "v");
    ck_assert_err(t.g.status, -EBADMSG, t.g.error,
                  "field 'revision' is not an int64");
    t_get(&t, "k", false);
    ck_assert_err(t.g.status, -EBADMSG, t.g.error,
                  "field 'key' is not base64");
    t_puts(&t, "k", "v");
    ck_assert_err(t.g.status, -EAGAIN, t.g.error,
                  "etcdserver: no leader (gRPC code 14, HTTP 503)");
    t_puts(&t, "k", "v");
    ck_assert_err(t.g.status, -EMSGSIZE, t.g.error, "answer over 1000 bytes");
    t_puts(&t, "k", "v");
    ck_assert_err(t.g.status, -ETIMEDOUT, t.g.error,
                  "no answer within 300 ms");
    t_close(&t);
    fake_stop(&f);
    for (int i = 0; i < 7; i++) {
        free(r[i]);
    }
    free(bigbody);
}
END_TEST

/* A stream written a few bytes at a time, its lines cut across HTTP
 * chunks and TCP segments. */
START_TEST(test_fake_watch_drip)
{
    static const char body[] =
        "{\"result\":{\"header\":{\"revision\":\"10\"},\"created\":true}}\n"
        "{\"result\":{\"header\":{\"revision\":\"11\"},\"events\":[{\"kv\":"
        "{\"key\":\"L3cvYQ==\",\"create_revision\":\"11\",\"mod_revision\":"
        "\"11\",\"version\":\"1\",\"value\":\"dgB4\"}}]}}\n"
        "{\"result\":{\"header\":{\"revision\":\"13\"},\"events\":[{\"kv\":"
        "{\"key\":\"L3cvYg==\",\"create_revision\":\"12\",\"mod_revision\":"
        "\"12\",\"version\":\"1\",\"value\":\"YmI=\",\"lease\":\"77\"}},"
        "{\"type\":\"DELETE\",\"kv\":{\"key\":\"L3cvYQ==\",\"mod_revision\":"
        "\"13\"},\"prev_kv\":{\"key\":\"L3cvYQ==\",\"create_revision\":\"11\","
        "\"mod_revision\":\"11\",\"version\":\"1\",\"value\":\"dgB4\"}}]}}\n"
        "\n"
        "{\"result\":{\"header\":{\"revision\":\"14\"}}}\n";
    char *resp = http_stream(body, 7, false);
    struct fake_step step = {.mode = FAKE_DRIP, .data = resp};
    struct evlog l = {0};
    struct fake f;
    struct t t;

    fake_start(&f, &step, 1);
    t_open(&t, f.endpoint, NULL);
    ck_assert_int_eq(
        mcos_etcd_watch(t.e, "/w/", 3, true, 0, on_watch, &l, &l.w), 0);
    RUN_UNTIL(&t.loop, l.finals == 1, 10000);
    ck_assert_int_eq(l.created, 1);
    ck_assert_uint_eq(l.n, 3);
    ck_assert_int_eq(l.calls, 4); /* created, 1 event, 2 events, final */
    ck_assert_int_eq(l.ev[0].type, MCOS_ETCD_EVENT_PUT);
    ck_assert_str_eq(l.ev[0].kv.key, "/w/a");
    ck_assert_uint_eq(l.ev[0].kv.value_len, 3);
    ck_assert(!memcmp(l.ev[0].kv.value, "v\0x", 3));
    ck_assert_str_eq(l.ev[1].kv.key, "/w/b");
    ck_assert_str_eq(l.ev[1].kv.value, "bb");
    ck_assert_int_eq(l.ev[1].kv.lease, 77);
    ck_assert_int_eq(l.ev[2].type, MCOS_ETCD_EVENT_DELETE);
    ck_assert_int_eq(l.ev[2].kv.mod_revision, 13);
    ck_assert(l.ev[2].has_prev);
    ck_assert_uint_eq(l.ev[2].prev.value_len, 3);
    /* The server ended the stream after a progress notification at 14. */
    ck_assert_err(l.final_status, -ECONNRESET, l.final_error,
                  "watch stream ended by the server");
    ck_assert_int_eq(l.final_revision, 14);
    t_close(&t);
    fake_stop(&f);
    free(resp);
    evlog_free(&l);
}
END_TEST

START_TEST(test_fake_watch_errors)
{
    static const char created[] =
        "{\"result\":{\"header\":{\"revision\":\"5\"},\"created\":true}}\n";
    static const struct {
        const char *line;   /* after the created line */
        int status;         /* the final status */
        const char *needle; /* in its message */
    } cases[] = {
        {"{bad json\n", -EBADMSG, "malformed stream line"},
        {"[1]\n", -EBADMSG, "no 'result' object"},
        {"{\"result\":{\"events\":[{\"type\":\"EXPLODE\"}]}}\n", -EBADMSG,
         "unknown event type 'EXPLODE'"},
        {"{\"error\":{\"grpc_code\":11,\"http_code\":400,\"message\":"
         "\"etcdserver: mvcc: required revision has been compacted\"}}\n",
         -ESTALE, "compacted (gRPC code 11, HTTP 400)"},
        {"{\"result\":{\"canceled\":true,\"cancel_reason\":\"permission "
         "denied\"}}\n",
         -EACCES, "watch cancelled by the server: permission denied"},
    };
    size_t n = sizeof cases / sizeof cases[0];
    struct fake_step steps[8];
    char *resp[8];
    char line[512];
    struct fake f;
    struct t t;

    for (size_t i = 0; i < n; i++) {
        snprintf(line, sizeof line, "%s%s", created, cases[i].line);
        resp[i] = http_stream(line, 64, true);
        steps[i] = (struct fake_step){
            .mode = FAKE_RESPOND, .data = resp[i], .keep_open = true};
    }
    /* An HTTP error instead of a stream. */
    resp[n] = http_response(
        "400 Bad Request", "application/json",
        "{\"error\":\"etcdserver: mvcc: required revision has been "
        "compacted\",\"message\":\"etcdserver: mvcc: required revision has "
        "been compacted\",\"code\":11}");
    steps[n] = (struct fake_step){.mode = FAKE_RESPOND, .data = resp[n]};
    fake_start(&f, steps, n + 1);
    t_open(&t, f.endpoint, NULL);
    for (size_t i = 0; i <= n; i++) {
        struct evlog l = {0};

        ck_assert_int_eq(
            mcos_etcd_watch(t.e, "k", 1, false, 0, on_watch, &l, &l.w), 0);
        RUN_UNTIL(&t.loop, l.finals == 1, 5000);
        if (i < n) {
            ck_assert_int_eq(l.created, 1);
            ck_assert_err(l.final_status, cases[i].status, l.final_error,
                          cases[i].needle);
            ck_assert_int_eq(l.final_revision, 5);
        } else {
            ck_assert_err(l.final_status, -ESTALE, l.final_error, "HTTP 400");
        }
        evlog_free(&l);
    }
    t_close(&t);
    fake_stop(&f);
    for (size_t i = 0; i <= n; i++) {
        free(resp[i]);
    }
}
END_TEST

/* A stream that goes silent on a server that stopped answering. */
START_TEST(test_fake_watch_idle)
{
    static const char created[] =
        "{\"result\":{\"header\":{\"revision\":\"5\"},\"created\":true}}\n";
    char *resp = http_stream(created, 64, true);
    struct fake_step step = {
        .mode = FAKE_RESPOND, .data = resp, .keep_open = true};
    struct mcos_etcd_options opt = {.request_timeout_ms = 300,
                                    .watch_idle_ms = 200};
    struct evlog l = {0};
    uint64_t t0;
    struct fake f;
    struct t t;

    fake_start(&f, &step, 1);
    t_open(&t, f.endpoint, &opt);
    ck_assert_int_eq(
        mcos_etcd_watch(t.e, "k", 1, false, 0, on_watch, &l, &l.w), 0);
    RUN_UNTIL(&t.loop, l.created == 1, 5000);
    t0 = now_ms();
    RUN_UNTIL(&t.loop, l.finals == 1, 5000);
    ck_assert_err(l.final_status, -ETIMEDOUT, l.final_error,
                  "watch stream silent for 200 ms and its endpoint does not "
                  "answer");
    ck_assert_msg(strstr(l.final_error, "no answer within 300 ms"), "%s",
                  l.final_error);
    ck_assert_uint_ge(now_ms() - t0, 400);
    ck_assert_int_eq(l.final_revision, 5);
    t_close(&t);
    fake_stop(&f);
    free(resp);
}
END_TEST

struct closing {
    struct t *t;   /* the client's test */
    int calls;     /* callbacks */
    int cancelled; /* with -ECANCELED */
    int shutdown;  /* calls refused with -ESHUTDOWN inside them */
};

static void
on_closing(const struct mcos_etcd_result *res, void *arg)
{
    struct closing *c = arg;

    c->calls++;
    if (res->status == -ECANCELED && strstr(res->error, "client closed")) {
        c->cancelled++;
    }
    if (mcos_etcd_put(c->t->e, "k", 1, "v", 1, 0, on_closing, c) ==
        -ESHUTDOWN) {
        c->shutdown++;
    }
}

/* Closing cancels everything: each operation gets one -ECANCELED. */
START_TEST(test_close_cancels)
{
    struct mcos_etcd_options opt = {.request_timeout_ms = 60000};
    struct mcos_etcd_keepalive *ka, *ka2;
    struct mcos_etcd_watch *w, *w2;
    struct closing c = {0};
    struct fake f;
    struct t t;

    fake_start(&f, NULL, 0);
    t_open(&t, f.endpoint, &opt);
    c.t = &t;
    ck_assert_int_eq(mcos_etcd_put(t.e, "k", 1, "v", 1, 0, on_closing, &c), 0);
    ck_assert_int_eq(mcos_etcd_get(t.e, "k", 1, true, on_closing, &c), 0);
    ck_assert_int_eq(mcos_etcd_status(t.e, on_closing, &c), 0);
    ck_assert_int_eq(mcos_etcd_put(t.e, "k", 1, "v", 1, 0, NULL, NULL), 0);
    ck_assert_int_eq(
        mcos_etcd_watch(t.e, "k", 1, false, 0, on_closing, &c, &w), 0);
    ck_assert_int_eq(
        mcos_etcd_watch(t.e, "k", 1, false, 0, on_closing, &c, &w2), 0);
    ck_assert_int_eq(
        mcos_etcd_keepalive_start(t.e, 5, 60, 0, on_closing, &c, &ka), 0);
    ck_assert_int_eq(
        mcos_etcd_keepalive_start(t.e, 6, 60, 0, on_closing, &c, &ka2), 0);
    /* Everything is on the wire (the fake holds 7 connections). */
    RUN_UNTIL(&t.loop, __atomic_load_n(&f.served, __ATOMIC_ACQUIRE) >= 7,
              5000);
    /* Ended by the caller: no callback. */
    mcos_etcd_watch_cancel(w2);
    mcos_etcd_keepalive_stop(ka2);
    mcos_etcd_close(t.e);
    /* Not from inside close. */
    ck_assert_int_eq(c.calls, 0);
    ck_assert_int_eq(mcos_etcd_get(t.e, "k", 1, false, on_closing, &c),
                     -ESHUTDOWN);
    ck_assert_str_eq(mcos_etcd_last_error(t.e), "etcd: the client is closing");
    uv_run(&t.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&t.loop), 0);
    /* put, get, status, watch, keepalive. */
    ck_assert_int_eq(c.calls, 5);
    ck_assert_int_eq(c.cancelled, 5);
    ck_assert_int_eq(c.shutdown, 5);
    fake_stop(&f);
}
END_TEST

/* A callback that closes the client while other results are queued. */
static void
on_close_from_cb(const struct mcos_etcd_result *res, void *arg)
{
    struct closing *c = arg;

    c->calls++;
    if (res->status == -ECANCELED) {
        c->cancelled++;
    } else {
        mcos_etcd_close(c->t->e);
    }
}

START_TEST(test_close_from_callback)
{
    struct closing c = {0};
    struct evlog l = {0};
    struct t t;

    t_open(&t, shared_etcd.endpoint, NULL);
    c.t = &t;
    ck_assert_int_eq(
        mcos_etcd_watch(t.e, "/t/cb/", 6, true, 0, on_watch, &l, &l.w), 0);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(
            mcos_etcd_put(t.e, "/t/cb/k", 7, "v", 1, 0, on_close_from_cb, &c),
            0);
    }
    uv_run(&t.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&t.loop), 0);
    /* One answered and closed; the rest were cancelled, as was the
     * watch. */
    ck_assert_int_eq(c.calls, 5);
    ck_assert_int_eq(c.cancelled, 4);
    ck_assert_int_eq(l.finals, 1);
    ck_assert_int_eq(l.final_status, -ECANCELED);
    evlog_free(&l);
}
END_TEST

static Suite *
etcd_suite(void)
{
    Suite *s = suite_create("etcd");
    TCase *unit = tcase_create("unit");
    TCase *live = tcase_create("live");
    TCase *fake = tcase_create("fake");

    tcase_set_timeout(unit, 30);
    tcase_add_test(unit, test_prefix_end);
    tcase_add_test(unit, test_create_errors);
    tcase_add_test(unit, test_tls_options);
    tcase_add_test(unit, test_bad_input);
    tcase_add_test(unit, test_unreachable);
    tcase_add_test(unit, test_keepalive_unreachable);
    suite_add_tcase(s, unit);

    tcase_set_timeout(live, 60);
    tcase_add_test(live, test_failover);
    tcase_add_test(live, test_kv);
    tcase_add_test(live, test_txn);
    tcase_add_test(live, test_lease);
    tcase_add_test(live, test_watch);
    tcase_add_test(live, test_watch_compacted);
    tcase_add_test(live, test_restart);
    tcase_add_test(live, test_close_from_callback);
    suite_add_tcase(s, live);

    tcase_set_timeout(fake, 30);
    tcase_add_test(fake, test_fake_answers);
    tcase_add_test(fake, test_fake_watch_drip);
    tcase_add_test(fake, test_fake_watch_errors);
    tcase_add_test(fake, test_fake_watch_idle);
    tcase_add_test(fake, test_close_cancels);
    suite_add_tcase(s, fake);
    return s;
}

int
main(void)
{
    SRunner *sr;
    int failed;

    if (!etcd_installed()) {
        printf("SKIP: etcd not installed (Debian: apt-get install "
               "etcd-server)\n");
        return 77;
    }
    /* MCOS_LOG=etcd=debug traces every request, socket and timer. */
    if (getenv("MCOS_LOG") && mcos_log_set_spec(getenv("MCOS_LOG"))) {
        fprintf(stderr, "bad MCOS_LOG\n");
        return EXIT_FAILURE;
    }
    /* Check runs each case in a child; a crash there must not leave a
     * broken pipe behind for etcd's output. */
    signal(SIGPIPE, SIG_IGN);
    if (!etcd_start(&shared_etcd)) {
        etcd_destroy(&shared_etcd);
        return EXIT_FAILURE;
    }
    sr = srunner_create(etcd_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    etcd_destroy(&shared_etcd);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
