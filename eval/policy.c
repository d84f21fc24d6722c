/*
 * policy: the table of policies and the knobs of the built-in ones.
 */
#include "policy.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "error.h"

const struct policy_entry policy_table[] = {
    {"mcos", &policy_mcos,
     "MCOS brain: global prefix index, routing, fetch, replication"},
    {"round_robin", &policy_round_robin, "nodes in turn"},
    {"random", &policy_random, "uniformly random node"},
    {"least_loaded", &policy_least_loaded, "fewest requests in flight"},
    {"kv_overlap", &policy_kv_overlap,
     "Dynamo KV router: min w*prefill_blocks + decode_blocks"},
    {"cache_aware", &policy_cache_aware,
     "SGLang router: longest prefix match, shortest queue if imbalanced"},
};
const size_t policy_count = sizeof policy_table / sizeof policy_table[0];

const struct policy_entry *
policy_find(const char *name)
{
    for (size_t i = 0; i < policy_count; i++) {
        if (!strcmp(policy_table[i].name, name)) {
            return &policy_table[i];
        }
    }
    return NULL;
}

void
policy_knobs_default(struct policy_knobs *k)
{
    memset(k, 0, sizeof *k);
    k->kv_overlap_weight = 1.0;
    k->sg_cache_threshold = 0.5;
    k->sg_balance_abs = 32;
    k->sg_balance_rel = 1.0001;
    k->sg_max_tree_blocks = 0;
    k->sg_eviction_ns = 60ULL * 1000000000ULL;
    k->mcos_dram_fetch = 0.05;
    k->mcos_nvme_fetch = 0.25;
    k->mcos_peer_fetch = 0.1;
    k->mcos_load_weight = 4.0;
    k->mcos_queue_block_weight = 1.0;
    k->mcos_bound_eps = 0.25;
    k->mcos_rack_penalty = 2.0;
    k->mcos_load = POLICY_MCOS_LOAD_BRAIN;
    k->mcos_fetch = true;
    k->mcos_migrate = true;
    k->mcos_hot = 4.0;
    k->mcos_drop_partial = true;
    k->mcos_promote = true;
    k->mcos_residency = true;
    k->mcos_pending = true;
    k->mcos_replicate_bw = 0;
    k->mcos_tick_ns = 1000000000ULL;
}

int
policy_knobs_validate(const struct policy_knobs *k, char *err, size_t errlen)
{
    if (!(k->kv_overlap_weight >= 0) || !isfinite(k->kv_overlap_weight)) {
        mcos_seterr(err, errlen,
                    "kv_overlap weight must be a non-negative "
                    "number");
        return -EINVAL;
    }
    if (!(k->sg_cache_threshold >= 0 && k->sg_cache_threshold <= 1)) {
        mcos_seterr(err, errlen, "cache_aware threshold must be in 0..1");
        return -EINVAL;
    }
    if (!(k->sg_balance_rel >= 0) || !isfinite(k->sg_balance_rel)) {
        mcos_seterr(err, errlen,
                    "cache_aware balance_rel must be a "
                    "non-negative number");
        return -EINVAL;
    }
    if (k->sg_eviction_ns < 1000000ULL) {
        mcos_seterr(err, errlen,
                    "cache_aware eviction interval must be at "
                    "least 1 ms");
        return -EINVAL;
    }
    {
        const double w[] = {k->mcos_dram_fetch,         k->mcos_nvme_fetch,
                            k->mcos_peer_fetch,         k->mcos_load_weight,
                            k->mcos_queue_block_weight, k->mcos_bound_eps,
                            k->mcos_rack_penalty,       k->mcos_hot};

        for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
            if (!(w[i] >= 0) || !isfinite(w[i])) {
                mcos_seterr(err, errlen,
                            "mcos weights and hotness must be non-negative "
                            "numbers");
                return -EINVAL;
            }
        }
    }
    if (k->mcos_load < POLICY_MCOS_LOAD_QUEUE ||
        k->mcos_load > POLICY_MCOS_LOAD_BRAIN) {
        mcos_seterr(err, errlen,
                    "mcos load must be queue, inflight, blocks or brain");
        return -EINVAL;
    }
    if (k->mcos_replicate_bw && k->mcos_tick_ns < 1000000ULL) {
        mcos_seterr(err, errlen, "mcos tick must be at least 1 ms");
        return -EINVAL;
    }
    return 0;
}
