/*
 * random: each request to a node drawn uniformly at random from the
 * policy's own seeded generator, so runs repeat exactly.
 */
#include <errno.h>
#include <stdlib.h>

#include "error.h"
#include "policy.h"
#include "rng.h"

static int
rnd_create(const struct sim_policy_env *env, void **state, uint64_t *tick_ns,
           char *err, size_t errlen)
{
    struct rng *r = malloc(sizeof *r);

    if (!r) {
        mcos_seterr(err, errlen, "random: out of memory");
        return -ENOMEM;
    }
    rng_seed(r, env->seed);
    *state = r;
    return 0;
}

static void
rnd_destroy(void *state)
{
    free(state);
}

static int
rnd_route(void *state, struct sim *sim, uint32_t id,
          const struct trace_request *req, uint32_t *node)
{
    *node = (uint32_t)rng_below(state, sim_nodes(sim));
    return 0;
}

const struct sim_policy_ops policy_random = {
    .name = "random",
    .create = rnd_create,
    .destroy = rnd_destroy,
    .route = rnd_route,
};
