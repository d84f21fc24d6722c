#include "kvindex.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

MCOS_LOG_MODULE(kvindex);

#define MAX_NS 1024

struct brain_kv {
    struct brain_prefix_index *idx; /* the index */
    char *ns[MAX_NS];               /* interned names, by id */
    uint64_t block_bytes[MAX_NS];   /* largest block stored, by id */
    size_t n_ns;                    /* how many */
    uint64_t events;                /* events folded in */
};

int
brain_kv_create(struct brain_kv **out)
{
    struct brain_kv *kv = calloc(1, sizeof *kv);
    int r;

    if (!kv) {
        return -ENOMEM;
    }
    r = brain_prefix_index_create(NULL, &kv->idx);
    if (r) {
        free(kv);
        return r;
    }
    *out = kv;
    return 0;
}

void
brain_kv_destroy(struct brain_kv *kv)
{
    if (!kv) {
        return;
    }
    for (size_t i = 0; i < kv->n_ns; i++) {
        free(kv->ns[i]);
    }
    brain_prefix_index_destroy(kv->idx);
    free(kv);
}

static bool
ns_valid(const char *s)
{
    size_t len = strlen(s);

    if (len == 0 || len > 63) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '/' ||
              c == '-')) {
            return false;
        }
    }
    return true;
}

int
brain_kv_ns(struct brain_kv *kv, const char *name, bool create)
{
    if (!name || !*name) {
        name = "default";
    }
    if (!ns_valid(name)) {
        return -EINVAL;
    }
    for (size_t i = 0; i < kv->n_ns; i++) {
        if (!strcmp(kv->ns[i], name)) {
            return (int)i;
        }
    }
    if (!create) {
        return -ENOENT;
    }
    if (kv->n_ns == MAX_NS) {
        return -ENOSPC;
    }
    kv->ns[kv->n_ns] = strdup(name);
    if (!kv->ns[kv->n_ns]) {
        return -ENOMEM;
    }
    return (int)kv->n_ns++;
}

size_t
brain_kv_report(struct brain_kv *kv, uint16_t node, const Mcos__Report *rep,
                uint64_t now_us)
{
    static struct mcos_ratelimit rl = MCOS_RATELIMIT_INIT(10000, 3);
    size_t used = 0;

    for (size_t i = 0; i < rep->n_events; i++) {
        const Mcos__ObjectEvent *e = rep->events[i];
        int ns, tier = e->tier;

        if (e->class_ != MCOS__OBJECT_CLASS__CLASS_KV_BLOCK) {
            continue;
        }
        ns = brain_kv_ns(kv, e->ns, true);
        if (ns < 0) {
            LOG_WARN_RL(&rl,
                        "node %u: kv_block event with namespace "
                        "'%.64s' ignored: %s",
                        node, e->ns,
                        ns == -ENOSPC ? "too many namespaces"
                                      : "bad namespace");
            continue;
        }
        switch (e->kind) {
        case MCOS__EVENT_KIND__EVENT_STORED:
            if (e->size_bytes > kv->block_bytes[ns]) {
                kv->block_bytes[ns] = e->size_bytes;
            }
            if (tier >= 1 && tier <= BRAIN_PREFIX_TIER_MAX) {
                brain_prefix_index_store(kv->idx, (uint16_t)ns, node,
                                         (uint8_t)tier, e->object_id,
                                         e->parent_id);
            }
            break;
        case MCOS__EVENT_KIND__EVENT_REMOVED:
            if (tier >= 1 && tier <= BRAIN_PREFIX_TIER_MAX) {
                brain_prefix_index_remove(kv->idx, (uint16_t)ns, node,
                                          (uint8_t)tier, e->object_id);
            }
            break;
        case MCOS__EVENT_KIND__EVENT_PROMOTED:
        case MCOS__EVENT_KIND__EVENT_DEMOTED:
            /* The event names the new tier only: drop the node's other
             * holdings of the block, then record the new one. */
            if (tier < 1 || tier > BRAIN_PREFIX_TIER_MAX) {
                break;
            }
            for (int t = 1; t <= BRAIN_PREFIX_TIER_MAX; t++) {
                if (t != tier) {
                    brain_prefix_index_remove(kv->idx, (uint16_t)ns, node,
                                              (uint8_t)t, e->object_id);
                }
            }
            brain_prefix_index_store(kv->idx, (uint16_t)ns, node,
                                     (uint8_t)tier, e->object_id,
                                     e->parent_id);
            break;
        case MCOS__EVENT_KIND__EVENT_ACCESSED:
            brain_prefix_index_access(kv->idx, (uint16_t)ns, node,
                                      e->object_id, now_us);
            break;
        default:
            continue;
        }
        used++;
    }
    kv->events += used;
    return used;
}

void
brain_kv_node_gone(struct brain_kv *kv, uint16_t node)
{
    brain_prefix_index_remove_node(kv->idx, node);
}

int
brain_kv_match(struct brain_kv *kv, uint16_t ns, const uint64_t *chain,
               size_t n, struct brain_prefix_match *out, size_t cap)
{
    return brain_prefix_index_find_matches(kv->idx, ns, chain, n, out, cap);
}

void
brain_kv_tick(struct brain_kv *kv)
{
    brain_prefix_index_sweep(kv->idx, 1u << 16);
}

void
brain_kv_stats(const struct brain_kv *kv, struct brain_kv_stats *out)
{
    struct brain_prefix_index_stats st;

    brain_prefix_index_stats(kv->idx, &st);
    out->blocks = st.blocks;
    out->memory_bytes = st.memory_bytes;
    out->namespaces = kv->n_ns;
    out->events = kv->events;
}

struct brain_prefix_index *
brain_kv_index(struct brain_kv *kv)
{
    return kv->idx;
}

size_t
brain_kv_n_ns(const struct brain_kv *kv)
{
    return kv->n_ns;
}

const char *
brain_kv_ns_name(const struct brain_kv *kv, uint16_t ns)
{
    return ns < kv->n_ns ? kv->ns[ns] : NULL;
}

uint64_t
brain_kv_ns_block_bytes(const struct brain_kv *kv, uint16_t ns)
{
    return ns < kv->n_ns ? kv->block_bytes[ns] : 0;
}
