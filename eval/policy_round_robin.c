/*
 * round_robin: request i goes to node i mod N, whatever the cache or the
 * load.  The classic stateless baseline (Dynamo's and SGLang's routers
 * both offer it as their simplest mode).
 */
#include <errno.h>
#include <stdlib.h>

#include "error.h"
#include "policy.h"

struct rr {
    uint32_t next; /* node for the next request */
};

static int
rr_create(const struct sim_policy_env *env, void **state, uint64_t *tick_ns,
          char *err, size_t errlen)
{
    struct rr *rr = calloc(1, sizeof *rr);

    if (!rr) {
        mcos_seterr(err, errlen, "round_robin: out of memory");
        return -ENOMEM;
    }
    *state = rr;
    return 0;
}

static void
rr_destroy(void *state)
{
    free(state);
}

static int
rr_route(void *state, struct sim *sim, uint32_t id,
         const struct trace_request *req, uint32_t *node)
{
    struct rr *rr = state;

    *node = rr->next;
    rr->next = (rr->next + 1) % sim_nodes(sim);
    return 0;
}

const struct sim_policy_ops policy_round_robin = {
    .name = "round_robin",
    .create = rr_create,
    .destroy = rr_destroy,
    .route = rr_route,
};
