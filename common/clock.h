/*
 * An injectable clock.  Code that decides anything from time takes a
 * `const struct mcos_clock *` (or a `now` argument) instead of reading the
 * system clock, so tests can drive it with mcos_fake_clock.
 *
 * Thread-safety: the monotonic clock is thread-safe; a fake clock is as
 * safe as the test that advances it.
 */
#ifndef MCOS_CLOCK_H
#define MCOS_CLOCK_H

#include <stdint.h>

struct mcos_clock {
    uint64_t (*now_us)(const struct mcos_clock *); /* monotonic time, us */
};

/* Time from CLOCK_MONOTONIC. */
extern const struct mcos_clock mcos_clock_monotonic;

/* A clock that only moves when told to. */
struct mcos_fake_clock {
    struct mcos_clock base; /* pass &fake.base where a clock is wanted */
    uint64_t now;           /* current time, us */
};

void mcos_fake_clock_init(struct mcos_fake_clock *, uint64_t start_us);
void mcos_fake_clock_advance(struct mcos_fake_clock *, uint64_t us);

static inline uint64_t
mcos_clock_now(const struct mcos_clock *c)
{
    return c->now_us(c);
}

/* Wall-clock time in microseconds since the epoch (for event stamps that
 * travel between machines; never for deciding intervals). */
uint64_t mcos_wall_us(void);

#endif /* MCOS_CLOCK_H */
