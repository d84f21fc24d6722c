#include "route.h"

#include <errno.h>
#include <string.h>

int
brain_route_decide(const struct brain_route_node *nodes, size_t n,
                   size_t chain_len, const char *rack,
                   const struct brain_route_weights *w,
                   struct brain_route_score *scores)
{
    double mean = 0, cap;
    size_t over = 0;
    int best = -1;

    if (n == 0) {
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        mean += nodes[i].load;
    }
    mean /= (double)n;
    cap = (1.0 + w->bound_eps) * (mean + 1.0);
    for (size_t i = 0; i < n; i++) {
        const struct brain_route_node *nd = &nodes[i];
        struct brain_route_score *s = &scores[i];
        uint32_t m =
            nd->matched < chain_len ? nd->matched : (uint32_t)chain_len;
        uint32_t m_dram = nd->matched_dram < m ? nd->matched_dram : m;
        uint32_t m_hbm = nd->matched_hbm < m_dram ? nd->matched_hbm : m_dram;
        uint32_t m_peer = nd->matched_peer < chain_len ? nd->matched_peer
                                                       : (uint32_t)chain_len;

        s->fetch = w->dram_fetch * (double)(m_dram - m_hbm) +
                   w->nvme_fetch * (double)(m - m_dram);
        /* Blocks only a peer holds are copied when that beats computing
         * them; the local match is used up to where it ends. */
        if (m_peer > m && w->peer_fetch < 1.0) {
            s->fetch += w->peer_fetch * (double)(m_peer - m);
            m = m_peer;
        }
        s->prefill = (double)(chain_len - m);
        s->load = w->load_weight * nd->load +
                  w->queue_block_weight * nd->queued_blocks;
        s->topology =
            rack && *rack && strcmp(rack, nd->rack) ? w->rack_penalty : 0.0;
        s->cost = s->prefill + s->fetch + s->load + s->topology;
        s->over_bound = nd->load + 1.0 > cap;
        over += s->over_bound;
    }
    for (size_t i = 0; i < n; i++) {
        /* If every node is over the bound, the bound says nothing. */
        if (scores[i].over_bound && over < n) {
            continue;
        }
        if (best < 0 || scores[i].cost < scores[best].cost ||
            (scores[i].cost == scores[best].cost &&
             strcmp(nodes[i].name, nodes[best].name) < 0)) {
            best = (int)i;
        }
    }
    return best;
}
