/*
 * A generator of synthetic request traces, written in the Mooncake JSONL
 * format that trace.h reads, for when no real trace is at hand and for
 * workloads the real traces do not cover.
 *
 * The workload: sessions arrive as a Poisson process whose rate is
 * multiplied by `burst_factor` for `burst_ms` out of every
 * `burst_every_ms` (bursts).  Each session picks one of `system_prompts`
 * shared system prompts with Zipf popularity (exponent `zipf_s`: prompt k,
 * counting from 1, is chosen with probability proportional to 1/k^s),
 * then runs a geometric number of turns (mean `turns_mean`) separated by
 * exponential think times (mean `think_ms`).  Turn t's prompt is the
 * system prompt, then the whole conversation so far (every earlier user
 * message and answer), then a new user message of uniform length in
 * [user_min, user_max]; its answer has uniform length in
 * [output_min, output_max].  A system prompt has a whole number of
 * blocks, uniform in [system_blocks_min, system_blocks_max].
 *
 * Block ids are prefix-chained the way Mooncake's are: a block that is
 * full and unchanged since the previous turn keeps its id, the system
 * prompt's blocks are shared by every session that uses it, and every
 * other block gets a fresh id.  So the same id always sits at the same
 * position after the same parent, which the bounds rely on.
 *
 * Output is fully determined by the parameters (the seed included):
 * same parameters, same bytes.
 *
 * Thread-safety: none needed; one call writes one trace.
 */
#ifndef MCOS_EVAL_GEN_H
#define MCOS_EVAL_GEN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct gen_params {
    uint64_t seed;              /* random seed */
    uint64_t requests;          /* requests to write */
    uint32_t block_tokens;      /* tokens per block id */
    double session_rate;        /* new sessions per second, outside bursts */
    double turns_mean;          /* mean turns per session (>= 1) */
    double think_ms;            /* mean gap between turns, ms */
    uint32_t system_prompts;    /* distinct shared system prompts */
    double zipf_s;              /* Zipf exponent of their popularity */
    uint32_t system_blocks_min; /* system prompt length, blocks */
    uint32_t system_blocks_max; /* ... */
    uint32_t user_min;          /* new user tokens per turn */
    uint32_t user_max;          /* ... */
    uint32_t output_min;        /* answer tokens per turn */
    uint32_t output_max;        /* ... */
    uint32_t max_input;         /* a session ends before its prompt would
                                   exceed this many tokens */
    uint64_t burst_every_ms;    /* burst period; 0 = no bursts */
    uint64_t burst_ms;          /* burst length within each period */
    double burst_factor;        /* session rate multiplier in a burst */
};

/* The defaults (documented in docs/evaluation.md). */
void gen_params_default(struct gen_params *);
/* Checks every parameter; -EINVAL with a message naming it. */
int gen_params_validate(const struct gen_params *, char *err, size_t errlen);

/* Writes the trace to `out` and sets *written (may be NULL) to the number
 * of requests written.  Returns 0, -EINVAL for bad parameters, -EIO on a
 * write error, or -ENOMEM. */
int gen_write(const struct gen_params *, FILE *out, uint64_t *written,
              char *err, size_t errlen);

#endif /* MCOS_EVAL_GEN_H */
