/*
 * A small seeded random number generator for the evaluation harness
 * (xoshiro256** seeded through splitmix64).  Written out here rather than
 * taken from libc so that a seed gives the same stream on every machine
 * and libc, which the harness's "same seed, same report" promise needs.
 *
 * Thread-safety: a generator belongs to one user.
 */
#ifndef MCOS_EVAL_RNG_H
#define MCOS_EVAL_RNG_H

#include <math.h>
#include <stdint.h>

struct rng {
    uint64_t s[4]; /* xoshiro256** state, never all zero */
};

static inline uint64_t
rng_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline void
rng_seed(struct rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        r->s[i] = rng_splitmix64(&seed);
    }
}

static inline uint64_t
rng_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t
rng_next(struct rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rng_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rng_rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1) with 53 random bits. */
static inline double
rng_uniform(struct rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

/* Uniform integer in [0, n), n > 0 (Lemire's multiply-shift, with the
 * rejection step, so it is exactly uniform). */
static inline uint64_t
rng_below(struct rng *r, uint64_t n)
{
    uint64_t x = rng_next(r);
    __uint128_t m = (__uint128_t)x * n;
    uint64_t lo = (uint64_t)m;

    if (lo < n) {
        uint64_t t = -n % n;

        while (lo < t) {
            x = rng_next(r);
            m = (__uint128_t)x * n;
            lo = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

/* Uniform integer in [lo, hi], lo <= hi. */
static inline uint64_t
rng_range(struct rng *r, uint64_t lo, uint64_t hi)
{
    return lo + rng_below(r, hi - lo + 1);
}

/* Exponentially distributed with the given mean. */
static inline double
rng_exp(struct rng *r, double mean)
{
    return -mean * log1p(-rng_uniform(r));
}

#endif /* MCOS_EVAL_RNG_H */
