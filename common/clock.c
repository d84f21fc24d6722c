#include "clock.h"

#include <time.h>

static uint64_t
monotonic_now(const struct mcos_clock *c)
{
    struct timespec ts;

    (void)c;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

const struct mcos_clock mcos_clock_monotonic = {monotonic_now};

static uint64_t
fake_now(const struct mcos_clock *c)
{
    const struct mcos_fake_clock *f = (const struct mcos_fake_clock *)c;

    return f->now;
}

void
mcos_fake_clock_init(struct mcos_fake_clock *f, uint64_t start_us)
{
    f->base.now_us = fake_now;
    f->now = start_us;
}

void
mcos_fake_clock_advance(struct mcos_fake_clock *f, uint64_t us)
{
    f->now += us;
}

uint64_t
mcos_wall_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}
