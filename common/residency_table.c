/* Residency tables: see residency_table.h. */
#include "residency_table.h"

#include <errno.h>
#include <stdbool.h>

unsigned
mcos_residency_class(uint32_t answer_tokens)
{
    unsigned c = 0;
    uint64_t lim = MCOS_RESIDENCY_CLASS0_TOKENS;

    while (c < MCOS_RESIDENCY_CLASSES - 1 && answer_tokens >= lim) {
        c++;
        lim <<= 1;
    }
    return c;
}

unsigned
mcos_residency_age(uint64_t age_unit_ns, uint64_t idle_ns)
{
    unsigned b = 0;
    uint64_t lim = age_unit_ns;

    /* Half octaves: x 3/2 then x 4/3, so two steps double the bound. */
    while (b < MCOS_RESIDENCY_AGES - 1 && idle_ns >= lim) {
        b++;
        if (lim > UINT64_MAX / 2) {
            return MCOS_RESIDENCY_AGES - 1;
        }
        lim = b & 1 ? lim / 2 * 3 : lim / 3 * 4;
    }
    return b;
}

int
mcos_residency_pick(const struct mcos_residency_table *t,
                    const uint64_t idle_ns[MCOS_RESIDENCY_CLASSES],
                    uint32_t present)
{
    bool table = t && t->age_unit_ns;
    int best = -ENOENT;
    unsigned best_score = 0;

    for (int c = 0; c < MCOS_RESIDENCY_CLASSES; c++) {
        unsigned s;

        if (!(present & (1u << c))) {
            continue;
        }
        s = table ? t->score[c][mcos_residency_age(t->age_unit_ns, idle_ns[c])]
                  : 0;
        if (best < 0 || s < best_score ||
            (s == best_score && idle_ns[c] > idle_ns[best])) {
            best = c;
            best_score = s;
        }
    }
    return best;
}
