/*
 * The executor: the agent's dataplane thread.  It copies bytes between
 * tier extents, earliest deadline first, within per-tier bandwidth
 * budgets, and checksums the destination so the loop can verify a copy end
 * to end before the source may be freed.
 *
 * Jobs are submitted from the loop thread; the dataplane thread picks the
 * job with the earliest deadline (ties: submission order), waits until
 * the source and destination tiers' token buckets allow its bytes, copies
 * (agent_tier_copy), checksums the destination (agent_tier_checksum), and
 * hands the job back to the loop, where its `done` callback runs.  The
 * executor never touches objects or the registry: deciding what a finished
 * copy means is the store's job, on the loop thread.
 *
 * Where it sits: step 6 (execute).  Thread-safety: submit and close from
 * the loop thread; callbacks run on the loop thread.
 */
#ifndef AGENT_EXECUTOR_H
#define AGENT_EXECUTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "clock.h"
#include "tier.h"

#define AGENT_EXEC_N_TIERS 5

struct agent_exec_job;
typedef void (*agent_exec_done_cb)(struct agent_exec_job *, void *arg);

struct agent_exec_job {
    /* Filled by the submitter. */
    uint64_t deadline_us; /* monotonic; UINT64_MAX: background */
    int src_kind;         /* tier kinds, for the budgets */
    int dst_kind;
    struct agent_tier *src;      /* from */
    struct agent_tier_extent se; /* its extent */
    struct agent_tier *dst;      /* to */
    struct agent_tier_extent de; /* its extent */
    uint64_t len;                /* bytes */
    agent_exec_done_cb done;     /* on the loop when finished */
    void *arg;                   /* its argument */
    /* Filled by the executor. */
    int status;         /* 0 or a negative errno */
    uint64_t checksum;  /* XXH3-64 of the destination bytes */
    uint64_t queued_us; /* when submitted */
    uint64_t start_us;  /* when the copy began */
    uint64_t end_us;    /* when it finished */
    bool late;          /* end_us > deadline_us */
    /* Internal. */
    uint64_t seq;                /* submission order, for ties */
    struct agent_exec_job *next; /* completion list */
};

struct agent_exec_stats {
    uint64_t jobs;                      /* completed */
    uint64_t failed;                    /* completed with an error */
    uint64_t late;                      /* completed after their deadline */
    uint64_t bytes[AGENT_EXEC_N_TIERS]; /* moved out of each tier */
    uint64_t queued;                    /* waiting now */
};

struct agent_executor;

/* budgets[kind]: bytes per second a tier may move (read + written); 0 is
 * unlimited.  Starts the dataplane thread. */
int agent_exec_create(uv_loop_t *, const struct mcos_clock *,
                      const uint64_t budgets[AGENT_EXEC_N_TIERS],
                      struct agent_executor **out);

/* Queues a job (owned by the caller until its done callback ran). */
int agent_exec_submit(struct agent_executor *, struct agent_exec_job *);

/* Stops the thread after the job in progress; queued jobs complete with
 * -ECANCELED (their callbacks run before close returns).  Frees in the
 * loop's close callback. */
void agent_exec_close(struct agent_executor *);

void agent_exec_stats(struct agent_executor *, struct agent_exec_stats *);

#endif /* AGENT_EXECUTOR_H */
