#include "liveness.h"

enum brain_liveness
brain_liveness_next(enum brain_liveness cur, enum brain_liveness_event ev,
                    uint64_t last_heard_us, uint64_t now_us,
                    const struct brain_liveness_cfg *cfg)
{
    uint64_t silent;

    switch (ev) {
    case BRAIN_EV_HEARD:
        return BRAIN_ALIVE;
    case BRAIN_EV_LEASE_LOST:
        return BRAIN_FAILED;
    case BRAIN_EV_TICK:
        break;
    }
    /* A clock that went backward (or a message stamped ahead of a tick)
     * counts as no silence at all. */
    silent = now_us > last_heard_us ? now_us - last_heard_us : 0;
    if (cur == BRAIN_FAILED) {
        return BRAIN_FAILED; /* only a message brings it back */
    }
    if (silent >= cfg->fail_after_us) {
        return BRAIN_FAILED;
    }
    if (silent >= cfg->suspect_after_us) {
        return BRAIN_SUSPECT;
    }
    return cur;
}

uint64_t
brain_liveness_deadline(enum brain_liveness cur, uint64_t last_heard_us,
                        const struct brain_liveness_cfg *cfg)
{
    switch (cur) {
    case BRAIN_ALIVE:
        return last_heard_us + cfg->suspect_after_us;
    case BRAIN_SUSPECT:
        return last_heard_us + cfg->fail_after_us;
    case BRAIN_FAILED:
        break;
    }
    return UINT64_MAX;
}

const char *
brain_liveness_name(enum brain_liveness s)
{
    switch (s) {
    case BRAIN_ALIVE:
        return "alive";
    case BRAIN_SUSPECT:
        return "suspect";
    case BRAIN_FAILED:
        return "failed";
    }
    return "unknown";
}
