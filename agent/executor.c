#include "executor.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

MCOS_LOG_MODULE(executor);

/* Burst a token bucket may hold: a tenth of a second of its rate, and at
 * least one large object, so one object never waits for itself. */
#define BUCKET_BURST_DIV 10
#define BUCKET_MIN_BURST (16u << 20)

struct bucket {
    uint64_t rate; /* bytes per second, 0: unlimited */
    double tokens; /* bytes available now (may go negative: debt) */
    uint64_t last; /* when refilled, us */
};

struct agent_executor {
    uv_async_t async;                 /* wakes the loop for completions */
    const struct mcos_clock *clock;   /* time */
    pthread_t thread;                 /* the dataplane */
    pthread_mutex_t mutex;            /* guards everything below */
    pthread_cond_t cond;              /* work arrived, or stop */
    struct agent_exec_job **heap;     /* min-heap by (deadline, seq) */
    size_t n, cap;                    /* heap size and capacity */
    uint64_t seq;                     /* next submission number */
    bool stop;                        /* thread should exit */
    struct agent_exec_job *done_head; /* completed, for the loop */
    struct agent_exec_job **done_tail;
    struct bucket buckets[AGENT_EXEC_N_TIERS]; /* per tier budgets */
    struct agent_exec_stats stats;             /* counters */
};

static bool
before(const struct agent_exec_job *a, const struct agent_exec_job *b)
{
    return a->deadline_us < b->deadline_us ||
           (a->deadline_us == b->deadline_us && a->seq < b->seq);
}

static void
heap_push(struct agent_executor *x, struct agent_exec_job *j)
{
    size_t i = x->n++;

    while (i > 0) {
        size_t p = (i - 1) / 2;

        if (!before(j, x->heap[p])) {
            break;
        }
        x->heap[i] = x->heap[p];
        i = p;
    }
    x->heap[i] = j;
}

static struct agent_exec_job *
heap_pop(struct agent_executor *x)
{
    struct agent_exec_job *top = x->heap[0], *last = x->heap[--x->n];
    size_t i = 0;

    for (;;) {
        size_t c = 2 * i + 1;

        if (c >= x->n) {
            break;
        }
        if (c + 1 < x->n && before(x->heap[c + 1], x->heap[c])) {
            c++;
        }
        if (!before(x->heap[c], last)) {
            break;
        }
        x->heap[i] = x->heap[c];
        i = c;
    }
    if (x->n) {
        x->heap[i] = last;
    }
    return top;
}

static void
refill(struct bucket *b, uint64_t now)
{
    double burst;

    if (!b->rate) {
        return;
    }
    burst = (double)b->rate / BUCKET_BURST_DIV;
    if (burst < BUCKET_MIN_BURST) {
        burst = BUCKET_MIN_BURST;
    }
    b->tokens += (double)(now - b->last) * (double)b->rate / 1e6;
    if (b->tokens > burst) {
        b->tokens = burst;
    }
    b->last = now;
}

/* Microseconds until both tiers' buckets are out of debt, 0 if now.  A
 * job may start whenever its buckets are not in debt, and is then charged
 * its full length, possibly going into debt: the average rate holds and a
 * job larger than the burst is never refused. */
static uint64_t
budget_wait(struct agent_executor *x, const struct agent_exec_job *j,
            uint64_t now)
{
    const int kinds[2] = {j->src_kind, j->dst_kind};
    uint64_t wait = 0;

    for (int k = 0; k < 2; k++) {
        struct bucket *b;
        uint64_t w;

        if (kinds[k] <= 0 || kinds[k] >= AGENT_EXEC_N_TIERS) {
            continue;
        }
        b = &x->buckets[kinds[k]];
        if (!b->rate) {
            continue;
        }
        refill(b, now);
        if (b->tokens >= 0) {
            continue;
        }
        w = (uint64_t)(-b->tokens * 1e6 / (double)b->rate) + 1;
        wait = w > wait ? w : wait;
    }
    return wait;
}

static void
charge(struct agent_executor *x, const struct agent_exec_job *j)
{
    if (j->src_kind > 0 && j->src_kind < AGENT_EXEC_N_TIERS &&
        x->buckets[j->src_kind].rate) {
        x->buckets[j->src_kind].tokens -= (double)j->len;
    }
    if (j->dst_kind > 0 && j->dst_kind < AGENT_EXEC_N_TIERS &&
        j->dst_kind != j->src_kind && x->buckets[j->dst_kind].rate) {
        x->buckets[j->dst_kind].tokens -= (double)j->len;
    }
}

static void
complete(struct agent_executor *x, struct agent_exec_job *j)
{
    /* Called with the mutex held. */
    j->next = NULL;
    *x->done_tail = j;
    x->done_tail = &j->next;
    x->stats.jobs++;
    x->stats.failed += j->status != 0;
    x->stats.late += j->late;
    if (j->status == 0 && j->src_kind > 0 &&
        j->src_kind < AGENT_EXEC_N_TIERS) {
        x->stats.bytes[j->src_kind] += j->len;
    }
    uv_async_send(&x->async);
}

static void
timed_wait(struct agent_executor *x, uint64_t us)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(us / 1000000);
    ts.tv_nsec += (long)(us % 1000000) * 1000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&x->cond, &x->mutex, &ts);
}

static void *
dataplane(void *arg)
{
    struct agent_executor *x = arg;

    pthread_mutex_lock(&x->mutex);
    for (;;) {
        struct agent_exec_job *j;
        uint64_t wait;
        int rc;

        while (!x->stop && x->n == 0) {
            pthread_cond_wait(&x->cond, &x->mutex);
        }
        if (x->stop) {
            break;
        }
        /* Budgets are checked for the most urgent job; a later, more
         * urgent arrival is seen after the wait. */
        wait = budget_wait(x, x->heap[0], mcos_clock_now(x->clock));
        if (wait) {
            timed_wait(x, wait);
            continue;
        }
        j = heap_pop(x);
        charge(x, j);
        x->stats.queued = x->n;
        pthread_mutex_unlock(&x->mutex);

        j->start_us = mcos_clock_now(x->clock);
        rc = agent_tier_copy(j->src, &j->se, j->dst, &j->de, j->len);
        if (rc == 0) {
            rc = agent_tier_checksum(j->dst, &j->de, j->len, &j->checksum);
        }
        j->status = rc < 0 ? rc : 0;
        j->end_us = mcos_clock_now(x->clock);
        j->late = j->deadline_us != UINT64_MAX && j->end_us > j->deadline_us;

        pthread_mutex_lock(&x->mutex);
        complete(x, j);
    }
    pthread_mutex_unlock(&x->mutex);
    return NULL;
}

static void
async_cb(uv_async_t *h)
{
    struct agent_executor *x = h->data;
    struct agent_exec_job *list;

    pthread_mutex_lock(&x->mutex);
    list = x->done_head;
    x->done_head = NULL;
    x->done_tail = &x->done_head;
    pthread_mutex_unlock(&x->mutex);
    while (list) {
        struct agent_exec_job *next = list->next;

        list->done(list, list->arg);
        list = next;
    }
}

int
agent_exec_create(uv_loop_t *loop, const struct mcos_clock *clock,
                  const uint64_t budgets[AGENT_EXEC_N_TIERS],
                  struct agent_executor **out)
{
    struct agent_executor *x = calloc(1, sizeof *x);
    uint64_t now = mcos_clock_now(clock);
    int r;

    if (!x) {
        return -ENOMEM;
    }
    x->clock = clock;
    x->cap = 64;
    x->heap = calloc(x->cap, sizeof *x->heap);
    if (!x->heap) {
        free(x);
        return -ENOMEM;
    }
    x->done_tail = &x->done_head;
    for (int k = 0; k < AGENT_EXEC_N_TIERS; k++) {
        x->buckets[k].rate = budgets ? budgets[k] : 0;
        x->buckets[k].last = now;
    }
    pthread_mutex_init(&x->mutex, NULL);
    pthread_cond_init(&x->cond, NULL);
    r = uv_async_init(loop, &x->async, async_cb);
    if (r) {
        goto fail;
    }
    x->async.data = x;
    r = -pthread_create(&x->thread, NULL, dataplane, x);
    if (r) {
        uv_close((uv_handle_t *)&x->async, NULL);
        goto fail;
    }
    *out = x;
    return 0;

fail:
    pthread_cond_destroy(&x->cond);
    pthread_mutex_destroy(&x->mutex);
    free(x->heap);
    free(x);
    return r;
}

int
agent_exec_submit(struct agent_executor *x, struct agent_exec_job *j)
{
    int r = 0;

    if (!j->len || !j->src || !j->dst || !j->done) {
        return -EINVAL;
    }
    pthread_mutex_lock(&x->mutex);
    if (x->stop) {
        r = -ECANCELED;
    } else if (x->n == x->cap) {
        size_t cap = x->cap * 2;
        struct agent_exec_job **grown = realloc(x->heap, cap * sizeof *grown);

        if (!grown) {
            r = -ENOMEM;
        } else {
            x->heap = grown;
            x->cap = cap;
        }
    }
    if (r == 0) {
        j->seq = x->seq++;
        j->queued_us = mcos_clock_now(x->clock);
        j->status = 0;
        j->late = false;
        heap_push(x, j);
        x->stats.queued = x->n;
        pthread_cond_signal(&x->cond);
    }
    pthread_mutex_unlock(&x->mutex);
    return r;
}

static void
closed_cb(uv_handle_t *h)
{
    struct agent_executor *x = h->data;

    pthread_cond_destroy(&x->cond);
    pthread_mutex_destroy(&x->mutex);
    free(x->heap);
    free(x);
}

void
agent_exec_close(struct agent_executor *x)
{
    if (!x) {
        return;
    }
    pthread_mutex_lock(&x->mutex);
    x->stop = true;
    pthread_cond_signal(&x->cond);
    pthread_mutex_unlock(&x->mutex);
    pthread_join(x->thread, NULL);

    /* Queued jobs never ran: cancel them, then deliver everything. */
    pthread_mutex_lock(&x->mutex);
    while (x->n) {
        struct agent_exec_job *j = heap_pop(x);

        j->status = -ECANCELED;
        j->next = NULL;
        *x->done_tail = j;
        x->done_tail = &j->next;
    }
    pthread_mutex_unlock(&x->mutex);
    async_cb(&x->async);
    uv_close((uv_handle_t *)&x->async, closed_cb);
}

void
agent_exec_stats(struct agent_executor *x, struct agent_exec_stats *out)
{
    pthread_mutex_lock(&x->mutex);
    *out = x->stats;
    out->queued = x->n;
    pthread_mutex_unlock(&x->mutex);
}
