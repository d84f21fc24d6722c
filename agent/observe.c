#include "observe.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <ifaddrs.h>
#include <inttypes.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"

/* A queued event with room for its namespace. */
struct queued {
    Mcos__ObjectEvent ev; /* the event; ev.ns is set when taken */
    char ns[64];          /* its namespace, "" for none */
};

struct agent_observe {
    struct agent_nic nics[AGENT_MAX_NICS]; /* NICs found at start */
    size_t n_nics;                         /* how many */
    uint64_t last_sample_us;               /* when NICs were sampled */
    pthread_mutex_t mutex;                 /* guards the event queue */
    struct queued *events;                 /* ring of queued events */
    size_t head;                           /* oldest queued */
    size_t count;                          /* queued */
    uint64_t dropped;                      /* lost since the last take */
};

/* Reads a one-line sysfs file into buf; "" when absent. */
static void
read_line(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");

    buf[0] = '\0';
    if (!f) {
        return;
    }
    if (fgets(buf, (int)len, f)) {
        buf[strcspn(buf, "\n")] = '\0';
    }
    fclose(f);
}

/* The RDMA device whose port 1 is bound to `ifname` (rxe, mlx5, ...). */
static void
find_rdma_device(const char *ifname, char *out, size_t len)
{
    DIR *d = opendir("/sys/class/infiniband");
    struct dirent *e;

    out[0] = '\0';
    if (!d) {
        return;
    }
    while ((e = readdir(d))) {
        char path[512], nd[64];

        if (e->d_name[0] == '.') {
            continue;
        }
        snprintf(path, sizeof path,
                 "/sys/class/infiniband/%s/ports/1/gid_attrs/ndevs/0",
                 e->d_name);
        read_line(path, nd, sizeof nd);
        if (!strcmp(nd, ifname)) {
            snprintf(out, len, "%.63s", e->d_name);
            break;
        }
    }
    closedir(d);
}

static void
find_nics(struct agent_observe *o)
{
    struct ifaddrs *ifa, *i;

    if (getifaddrs(&ifa)) {
        return;
    }
    for (i = ifa; i && o->n_nics < AGENT_MAX_NICS; i = i->ifa_next) {
        struct agent_nic *nic;
        char path[512], speed[32];
        const struct sockaddr_in *sin;

        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET ||
            (i->ifa_flags & IFF_LOOPBACK) || strlen(i->ifa_name) >= 32) {
            continue;
        }
        nic = &o->nics[o->n_nics++];
        snprintf(nic->name, sizeof nic->name, "%s", i->ifa_name);
        sin = (const struct sockaddr_in *)i->ifa_addr;
        inet_ntop(AF_INET, &sin->sin_addr, nic->address, sizeof nic->address);
        snprintf(path, sizeof path, "/sys/class/net/%s/speed", nic->name);
        read_line(path, speed, sizeof speed);
        nic->speed_mbps = (uint32_t)(atoi(speed) > 0 ? atoi(speed) : 0);
        find_rdma_device(nic->name, nic->rdma_device, sizeof nic->rdma_device);
    }
    freeifaddrs(ifa);
}

int
agent_observe_create(struct agent_observe **out)
{
    struct agent_observe *o = calloc(1, sizeof *o);

    if (!o) {
        return -ENOMEM;
    }
    o->events = calloc(AGENT_EVENT_QUEUE_MAX, sizeof *o->events);
    if (!o->events) {
        free(o);
        return -ENOMEM;
    }
    pthread_mutex_init(&o->mutex, NULL);
    find_nics(o);
    agent_observe_sample(o, mcos_clock_now(&mcos_clock_monotonic));
    *out = o;
    return 0;
}

void
agent_observe_destroy(struct agent_observe *o)
{
    if (o) {
        pthread_mutex_destroy(&o->mutex);
        free(o->events);
        free(o);
    }
}

size_t
agent_observe_nics(const struct agent_observe *o,
                   const struct agent_nic **nics)
{
    *nics = o->nics;
    return o->n_nics;
}

void
agent_observe_sample(struct agent_observe *o, uint64_t now_us)
{
    FILE *f = fopen("/proc/net/dev", "r");
    uint64_t dt = now_us - o->last_sample_us;
    char line[512];

    if (!f) {
        return;
    }
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        char *name = line;
        unsigned long long rx, tx, skip;

        if (!colon) {
            continue;
        }
        *colon = '\0';
        while (*name == ' ') {
            name++;
        }
        /* rx: bytes packets errs drop fifo frame compressed multicast;
         * then tx bytes. */
        if (sscanf(colon + 1, "%llu %llu %llu %llu %llu %llu %llu %llu %llu",
                   &rx, &skip, &skip, &skip, &skip, &skip, &skip, &skip,
                   &tx) != 9) {
            continue;
        }
        for (size_t i = 0; i < o->n_nics; i++) {
            struct agent_nic *n = &o->nics[i];

            if (strcmp(n->name, name)) {
                continue;
            }
            if (o->last_sample_us && dt > 0) {
                n->rx_bps = (rx - n->rx_bytes) * 1000000 / dt;
                n->tx_bps = (tx - n->tx_bytes) * 1000000 / dt;
            }
            n->rx_bytes = rx;
            n->tx_bytes = tx;
        }
    }
    fclose(f);
    o->last_sample_us = now_us;
}

uint32_t
agent_observe_load_milli(void)
{
    double load[1];

    if (getloadavg(load, 1) != 1) {
        return 0;
    }
    return (uint32_t)(load[0] * 1000.0);
}

void
agent_observe_event(struct agent_observe *o, Mcos__EventKind kind,
                    uint64_t object_id, Mcos__ObjectClass cls,
                    Mcos__TierKind tier, uint64_t size, const char *ns,
                    uint64_t parent)
{
    struct queued *q;
    Mcos__ObjectEvent *e;

    pthread_mutex_lock(&o->mutex);
    if (o->count == AGENT_EVENT_QUEUE_MAX) {
        o->dropped++;
        pthread_mutex_unlock(&o->mutex);
        return;
    }
    q = &o->events[(o->head + o->count++) % AGENT_EVENT_QUEUE_MAX];
    e = &q->ev;
    mcos__object_event__init(e);
    snprintf(q->ns, sizeof q->ns, "%s", ns ? ns : "");
    e->parent_id = parent;
    e->kind = kind;
    e->object_id = object_id;
    e->class_ = cls;
    e->tier = tier;
    e->size_bytes = size;
    e->time_us = mcos_wall_us();
    pthread_mutex_unlock(&o->mutex);
}

size_t
agent_observe_take_events(struct agent_observe *o, size_t max,
                          Mcos__ObjectEvent ***out, uint64_t *dropped)
{
    Mcos__ObjectEvent **v;
    size_t n;

    pthread_mutex_lock(&o->mutex);
    n = o->count < max ? o->count : max;
    v = calloc(n ? n : 1, sizeof *v);
    if (!v) {
        pthread_mutex_unlock(&o->mutex);
        *out = NULL;
        *dropped = 0;
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        const struct queued *q =
            &o->events[(o->head + i) % AGENT_EVENT_QUEUE_MAX];
        /* One allocation holds the event and its namespace. */
        struct queued *copy = malloc(sizeof *copy);

        if (!copy) {
            n = i;
            break;
        }
        *copy = *q;
        copy->ev.ns = copy->ns;
        v[i] = &copy->ev;
    }
    o->head = (o->head + n) % AGENT_EVENT_QUEUE_MAX;
    o->count -= n;
    *dropped = o->dropped;
    o->dropped = 0;
    pthread_mutex_unlock(&o->mutex);
    *out = v;
    return n;
}

void
agent_observe_events_free(Mcos__ObjectEvent **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i]);
    }
    free(v);
}
