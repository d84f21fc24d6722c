#include "local_api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "clock.h"
#include "error.h"
#include "log.h"
#include "wire.h"

MCOS_LOG_MODULE(api);

#define LIST_DEFAULT 1000
#define LIST_MAX     100000
/* Bounds on an engine's load report: far above any real engine, so a
 * value past them is a bug or garbage, not a busy node. */
#define LOAD_REQUESTS_MAX 1000000
#define LOAD_BLOCKS_MAX   UINT32_MAX

/* A client's latest load report. */
struct engine {
    uint32_t peer;                  /* its bus connection */
    uint32_t queued_requests;       /* as reported */
    uint32_t running_requests;      /* as reported */
    uint64_t queued_prefill_blocks; /* as reported */
    uint64_t at_us;                 /* when (the agent's clock) */
};

struct agent_local_api {
    struct mcos_bus_server *bus;              /* the ipc socket */
    struct agent_store *store;                /* where intents go */
    const struct mcos_clock *clock;           /* stamps load reports */
    struct agent_local_api_counters counters; /* for /metrics */
    struct engine *engines;                   /* clients that report load */
    size_t n_engines, cap_engines;            /* ... count, room */
};

/* A request on its way through the store. */
struct call {
    struct agent_store_req req;   /* the intent; first, see done() */
    struct agent_local_api *api;  /* owner */
    struct mcos_bus_request *bus; /* where to answer */
};

static struct mcos_ratelimit bad_rl = MCOS_RATELIMIT_INIT(5000, 5);

void
agent_object_info(const struct agent_store *s, const struct agent_object *o,
                  uint64_t now, Mcos__ObjectInfo *i)
{
    mcos__object_info__init(i);
    i->id = o->id;
    i->size = o->size;
    i->class_ = (Mcos__ObjectClass)o->cls;
    i->state = (Mcos__ObjectState)o->state;
    i->tier = (Mcos__TierKind)o->tier;
    i->moving_to = (Mcos__TierKind)o->moving_to;
    i->hotness_milli = o->hotness_milli;
    i->expected_reuse = o->expected_reuse;
    i->pins = o->pins + o->views;
    i->checksum = o->checksum;
    i->hits = o->hits;
    i->misses = o->misses;
    i->prefetched = o->prefetched;
    i->emulated = agent_store_tier_emulated(s, o->tier);
    i->age_ms = now > o->created_us ? (now - o->created_us) / 1000 : 0;
    i->idle_ms =
        now > o->last_access_us ? (now - o->last_access_us) / 1000 : 0;
}

static void
reply(struct agent_local_api *api, struct mcos_bus_request *bus,
      Mcos__ApiReply *rep)
{
    uint8_t *buf;
    size_t len;
    int r;

    if (rep->status) {
        api->counters.errors++;
    }
    r = mcos_wire_encode(MCOS__MSG_TYPE__MSG_API_REPLY, &rep->base, &buf,
                         &len);
    if (r) {
        LOG_ERR("cannot encode a reply: %s", mcos_strerror(r));
        mcos_bus_request_drop(bus);
        return;
    }
    mcos_bus_reply(bus, buf, len);
    free(buf);
}

static void
refuse(struct agent_local_api *api, struct mcos_bus_request *bus, int status,
       const char *err)
{
    Mcos__ApiReply rep = MCOS__API_REPLY__INIT;

    api->counters.malformed++;
    LOG_WARN_RL(&bad_rl, "refused a client request: %s", err);
    rep.status = status;
    rep.error = (char *)err;
    reply(api, bus, &rep);
}

static void
done(struct agent_store_req *req, void *arg)
{
    struct call *c = arg;
    Mcos__ApiReply rep = MCOS__API_REPLY__INIT;
    Mcos__ObjectInfo info;

    rep.status = req->status;
    rep.error = req->error;
    if (req->have_obj) {
        agent_object_info(c->api->store, &req->obj,
                          mcos_clock_now(&mcos_clock_monotonic), &info);
        rep.object = &info;
    }
    rep.offset = req->offset;
    rep.length = req->length;
    rep.view_id = req->view_out;
    rep.late = req->late;
    reply(c->api, c->bus, &rep);
    free(c);
}

struct list_ctx {
    const struct agent_store *s; /* for the emulated flag */
    Mcos__ObjectInfo *infos;     /* storage */
    Mcos__ObjectInfo **ptrs;     /* what the reply points at */
    size_t n, max;               /* filled, wanted */
    uint64_t now;                /* for ages */
};

static int
list_one(struct agent_object *o, void *arg)
{
    struct list_ctx *l = arg;

    if (l->n == l->max) {
        return 1;
    }
    agent_object_info(l->s, o, l->now, &l->infos[l->n]);
    l->ptrs[l->n] = &l->infos[l->n];
    l->n++;
    return 0;
}

static void
do_list(struct agent_local_api *api, struct mcos_bus_request *bus,
        uint32_t max)
{
    Mcos__ApiReply rep = MCOS__API_REPLY__INIT;
    struct list_ctx l = {
        api->store, NULL, NULL, 0, 0, mcos_clock_now(&mcos_clock_monotonic)};

    l.max = max ? (max > LIST_MAX ? LIST_MAX : max) : LIST_DEFAULT;
    if (l.max > agent_store_count(api->store)) {
        l.max = agent_store_count(api->store);
    }
    l.infos = calloc(l.max ? l.max : 1, sizeof *l.infos);
    l.ptrs = calloc(l.max ? l.max : 1, sizeof *l.ptrs);
    if (!l.infos || !l.ptrs) {
        rep.status = -ENOMEM;
        rep.error = "out of memory";
    } else {
        agent_store_foreach(api->store, list_one, &l);
        rep.n_objects = l.n;
        rep.objects = l.ptrs;
    }
    reply(api, bus, &rep);
    free(l.infos);
    free(l.ptrs);
}

/* Records a client's load report (API_LOAD). */
static void
do_load(struct agent_local_api *api, struct mcos_bus_request *bus,
        const Mcos__ApiRequest *q)
{
    Mcos__ApiReply rep = MCOS__API_REPLY__INIT;
    uint32_t peer = mcos_bus_request_peer(bus);
    char err[160];
    struct engine *e = NULL;

    if (q->queued_requests > LOAD_REQUESTS_MAX ||
        q->running_requests > LOAD_REQUESTS_MAX) {
        snprintf(err, sizeof err,
                 "load: %u queued and %u running requests; each must be at "
                 "most %d",
                 q->queued_requests, q->running_requests, LOAD_REQUESTS_MAX);
        refuse(api, bus, -EINVAL, err);
        return;
    }
    if (q->queued_prefill_blocks > LOAD_BLOCKS_MAX) {
        snprintf(err, sizeof err,
                 "load: %llu queued prefill blocks; at most %llu",
                 (unsigned long long)q->queued_prefill_blocks,
                 (unsigned long long)LOAD_BLOCKS_MAX);
        refuse(api, bus, -EINVAL, err);
        return;
    }
    for (size_t i = 0; i < api->n_engines; i++) {
        if (api->engines[i].peer == peer) {
            e = &api->engines[i];
        }
    }
    if (!e) {
        if (api->n_engines == api->cap_engines) {
            size_t cap = api->cap_engines ? 2 * api->cap_engines : 8;
            struct engine *v = realloc(api->engines, cap * sizeof *v);

            if (!v) {
                refuse(api, bus, -ENOMEM, "out of memory");
                return;
            }
            api->engines = v;
            api->cap_engines = cap;
        }
        e = &api->engines[api->n_engines++];
        e->peer = peer;
    }
    e->queued_requests = q->queued_requests;
    e->running_requests = q->running_requests;
    e->queued_prefill_blocks = q->queued_prefill_blocks;
    e->at_us = mcos_clock_now(api->clock);
    reply(api, bus, &rep);
}

static uint32_t
sat_add32(uint32_t a, uint32_t b)
{
    return a > UINT32_MAX - b ? UINT32_MAX : a + b;
}

void
agent_local_api_load(const struct agent_local_api *api, uint64_t now_us,
                     struct agent_engine_load *out)
{
    uint64_t oldest = now_us;

    memset(out, 0, sizeof *out);
    if (!api) {
        return;
    }
    for (size_t i = 0; i < api->n_engines; i++) {
        const struct engine *e = &api->engines[i];

        out->engines++;
        out->queued_requests =
            sat_add32(out->queued_requests, e->queued_requests);
        out->running_requests =
            sat_add32(out->running_requests, e->running_requests);
        out->queued_prefill_blocks += e->queued_prefill_blocks;
        if (e->at_us < oldest) {
            oldest = e->at_us;
        }
    }
    out->sample_age_us = now_us - oldest;
}

static void
on_request(struct mcos_bus_request *bus, void *arg)
{
    struct agent_local_api *api = arg;
    struct mcos_wire_msg m;
    char err[MCOS_WIRE_ERR_LEN];
    Mcos__ApiRequest *q;
    const void *data;
    struct call *c;
    size_t len;
    int r;

    data = mcos_bus_request_data(bus, &len);
    r = mcos_wire_decode(data, len, &m, err, sizeof err);
    if (r) {
        refuse(api, bus, r, err);
        return;
    }
    q = mcos_wire_api_request(&m);
    if (!q) {
        snprintf(err, sizeof err, "unexpected %s message",
                 mcos_wire_type_name(m.type));
        refuse(api, bus, -EPROTO, err);
        mcos_wire_msg_free(&m);
        return;
    }
    api->counters.requests++;
    if (q->op == MCOS__API_OP__API_ATTACH) {
        Mcos__ApiReply rep = MCOS__API_REPLY__INIT;

        rep.shm_name = (char *)agent_store_shm_name(api->store);
        rep.shm_size = agent_store_shm_size(api->store);
        reply(api, bus, &rep);
    } else if (q->op == MCOS__API_OP__API_LIST) {
        do_list(api, bus, q->max_objects);
    } else if (q->op == MCOS__API_OP__API_LOAD) {
        do_load(api, bus, q);
    } else if (!(c = calloc(1, sizeof *c))) {
        refuse(api, bus, -ENOMEM, "out of memory");
    } else {
        c->api = api;
        c->bus = bus;
        c->req.op = q->op;
        c->req.id = q->object_id;
        c->req.size = q->size;
        c->req.cls = q->class_;
        c->req.hotness_milli = q->hotness_milli;
        c->req.expected_reuse = q->expected_reuse;
        snprintf(c->req.ns, sizeof c->req.ns, "%s", q->ns);
        if (strlen(q->ns) >= sizeof c->req.ns) {
            c->req.ns[0] = '!'; /* too long: refused by the store */
        }
        c->req.parent = q->parent_id;
        c->req.tier = q->tier;
        c->req.fallback_tier = q->fallback_tier;
        c->req.src_tier = q->src_tier;
        c->req.deadline_us = q->deadline_us;
        c->req.mode = q->mode;
        c->req.policy = q->policy;
        c->req.view_id = q->view_id;
        c->req.peer = mcos_bus_request_peer(bus);
        c->req.done = done;
        c->req.arg = c;
        agent_store_submit(api->store, &c->req);
    }
    mcos_wire_msg_free(&m);
}

static void
on_peer_gone(uint32_t peer, void *arg)
{
    struct agent_local_api *api = arg;

    for (size_t i = 0; i < api->n_engines; i++) {
        if (api->engines[i].peer == peer) {
            api->engines[i] = api->engines[--api->n_engines];
            break;
        }
    }
    agent_store_peer_gone(api->store, peer);
}

int
agent_local_api_create(uv_loop_t *loop, const struct mcos_clock *clock,
                       const char *url, struct agent_store *store,
                       struct agent_local_api **out, char *err, size_t errlen)
{
    struct agent_local_api *api = calloc(1, sizeof *api);
    int r;

    if (!api) {
        return -ENOMEM;
    }
    api->store = store;
    api->clock = clock;
    r = mcos_bus_server_create(loop, url, on_request, api, &api->bus, err,
                               errlen);
    if (r) {
        free(api);
        return r;
    }
    mcos_bus_server_on_peer_gone(api->bus, on_peer_gone, api);
    *out = api;
    return 0;
}

void
agent_local_api_close(struct agent_local_api *api)
{
    if (api) {
        mcos_bus_server_close(api->bus);
        free(api->engines);
        free(api);
    }
}

void
agent_local_api_counters(const struct agent_local_api *api,
                         struct agent_local_api_counters *out)
{
    *out = api->counters;
}
