/*
 * kv_overlap: the cost rule of NVIDIA Dynamo's KV-aware router.  Its
 * documentation ("KV Router" / "Routing Concepts", docs.nvidia.com/dynamo)
 * gives, per worker,
 *
 *     cost = overlap_score_weight * prefill_blocks + decode_blocks
 *
 * where prefill_blocks is the number of prompt tokens the worker would
 * have to compute (prompt minus its cached overlap) divided by the block
 * size, and decode_blocks the KV blocks the worker would hold for active
 * requests with this one added; the lowest cost wins (router temperature
 * 0, the default: no sampling).  The weight defaults to 1.
 *
 * Here the overlap is the node's resident prefix in any tier (Dynamo
 * learns it from engine KV events; the simulator's view is exact, which
 * flatters the baseline a little), decode_blocks is the prompt blocks of
 * the node's in-flight requests (queued, prefilling or decoding) plus
 * this request's, and ties are broken at random (seeded).
 */
#include <errno.h>
#include <stdlib.h>

#include "error.h"
#include "policy.h"
#include "rng.h"

struct kvo {
    struct rng rng; /* tie-breaks */
    double weight;  /* overlap_score_weight */
};

static int
kvo_create(const struct sim_policy_env *env, void **state, uint64_t *tick_ns,
           char *err, size_t errlen)
{
    const struct policy_knobs *k = env->knobs;
    struct kvo *p = malloc(sizeof *p);

    if (!p) {
        mcos_seterr(err, errlen, "kv_overlap: out of memory");
        return -ENOMEM;
    }
    rng_seed(&p->rng, env->seed);
    p->weight = k ? k->kv_overlap_weight : 1.0;
    *state = p;
    return 0;
}

static void
kvo_destroy(void *state)
{
    free(state);
}

static int
kvo_route(void *state, struct sim *sim, uint32_t id,
          const struct trace_request *req, uint32_t *node)
{
    struct kvo *p = state;
    uint32_t bt = sim_params(sim)->block_tokens, best = 0, ties = 0;
    double best_cost = 0;

    for (uint32_t n = 0; n < sim_nodes(sim); n++) {
        uint32_t overlap = sim_match(sim, n, req->blocks, req->n_blocks, NULL);
        double prefill = (double)(req->input_tokens -
                                  trace_prefix_tokens(req, overlap, bt)) /
                         bt;
        struct sim_load l;
        double cost;

        sim_load(sim, n, &l);
        cost = p->weight * prefill + (double)(l.active_blocks + req->n_blocks);
        if (n == 0 || cost < best_cost) {
            best = n;
            best_cost = cost;
            ties = 1;
        } else if (cost == best_cost && rng_below(&p->rng, ++ties) == 0) {
            best = n;
        }
    }
    *node = best;
    return 0;
}

const struct sim_policy_ops policy_kv_overlap = {
    .name = "kv_overlap",
    .create = kvo_create,
    .destroy = kvo_destroy,
    .route = kvo_route,
};
