/*
 * least_loaded: the node with the fewest requests in flight (routed and
 * not finished: waiting, prefilling or decoding), the "least outstanding
 * requests" rule of load balancers; ties go to the node with the fewest
 * prompt tokens still to prefill, then to a seeded random choice.  It
 * ignores the cache entirely.
 */
#include <errno.h>
#include <stdlib.h>

#include "error.h"
#include "policy.h"
#include "rng.h"

static int
ll_create(const struct sim_policy_env *env, void **state, uint64_t *tick_ns,
          char *err, size_t errlen)
{
    struct rng *r = malloc(sizeof *r);

    if (!r) {
        mcos_seterr(err, errlen, "least_loaded: out of memory");
        return -ENOMEM;
    }
    rng_seed(r, env->seed);
    *state = r;
    return 0;
}

static void
ll_destroy(void *state)
{
    free(state);
}

static int
ll_route(void *state, struct sim *sim, uint32_t id,
         const struct trace_request *req, uint32_t *node)
{
    uint32_t best = 0, ties = 0, best_req = UINT32_MAX;
    uint64_t best_tok = UINT64_MAX;

    for (uint32_t n = 0; n < sim_nodes(sim); n++) {
        struct sim_load l;

        sim_load(sim, n, &l);
        if (l.inflight < best_req ||
            (l.inflight == best_req && l.prefill_tokens < best_tok)) {
            best = n;
            best_req = l.inflight;
            best_tok = l.prefill_tokens;
            ties = 1;
        } else if (l.inflight == best_req && l.prefill_tokens == best_tok &&
                   rng_below(state, ++ties) == 0) {
            /* Reservoir sampling: each tied node equally likely. */
            best = n;
        }
    }
    *node = best;
    return 0;
}

const struct sim_policy_ops policy_least_loaded = {
    .name = "least_loaded",
    .create = ll_create,
    .destroy = ll_destroy,
    .route = ll_route,
};
