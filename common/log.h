/*
 * Logging: per-module names, levels, and rate limits for hot paths.
 *
 * Every module declares itself once with MCOS_LOG_MODULE(name) and then logs
 * with LOG_ERR/LOG_WARN/LOG_INFO/LOG_DBG.  Levels are set globally and per
 * module from a spec such as "info,bus=debug" (mcos_log_set_spec), which the
 * daemons take from their `log_level` config key.  Lines go to stderr as
 *
 *     2026-11-22T02:53:01.123Z|brain|INFO|message
 *
 * Warnings in hot paths use LOG_WARN_RL with a struct mcos_ratelimit, so a
 * flood of identical errors costs one line per window plus a count of what
 * was suppressed.
 *
 * Thread-safety: logging is safe from any thread; mcos_log_set_spec is meant
 * for start-up and takes effect for every module on its next log call.
 */
#ifndef MCOS_LOG_H
#define MCOS_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum mcos_log_level {
    MCOS_LOG_OFF = 0,   /* nothing at all */
    MCOS_LOG_ERR = 1,   /* something failed */
    MCOS_LOG_WARN = 2,  /* something is wrong but we carry on */
    MCOS_LOG_INFO = 3,  /* state changes an operator wants to see */
    MCOS_LOG_DEBUG = 4, /* detail for developers */
};

struct mcos_log_module {
    const char *name;  /* printed in every line */
    int level;         /* cached effective level */
    unsigned spec_gen; /* spec generation the cache was computed for */
};

#define MCOS_LOG_MODULE(NAME)                                                 \
    static struct mcos_log_module mcos_this_log_module                        \
        __attribute__((unused)) = {#NAME, 0, 0}

void mcos_log(struct mcos_log_module *, enum mcos_log_level, const char *fmt,
              ...) __attribute__((format(printf, 3, 4)));
bool mcos_log_enabled(struct mcos_log_module *, enum mcos_log_level);

/* Sets levels from a spec: "LEVEL[,MODULE=LEVEL...]", levels off, err,
 * warn, info, debug.  Returns 0 or -EINVAL (and changes nothing). */
int mcos_log_set_spec(const char *spec);
int mcos_log_parse_level(const char *s, enum mcos_log_level *out);

/* Rate limit: at most `burst` messages per `window_ms`. */
struct mcos_ratelimit {
    uint32_t window_ms;    /* length of a window */
    uint32_t burst;        /* messages allowed per window */
    uint64_t window_start; /* monotonic ms when this window began */
    uint32_t count;        /* messages let through in this window */
    uint32_t suppressed;   /* messages dropped since the last one shown */
};
#define MCOS_RATELIMIT_INIT(MS, BURST)                                        \
    {                                                                         \
        (MS), (BURST), 0, 0, 0                                                \
    }

/* Returns true if a message may be logged now; sets *suppressed to the count
 * dropped since the last message allowed (to be reported with it). */
bool mcos_ratelimit_allow(struct mcos_ratelimit *, uint32_t *suppressed);

#define LOG_AT(LVL, ...) mcos_log(&mcos_this_log_module, LVL, __VA_ARGS__)
#define LOG_ERR(...)     LOG_AT(MCOS_LOG_ERR, __VA_ARGS__)
#define LOG_WARN(...)    LOG_AT(MCOS_LOG_WARN, __VA_ARGS__)
#define LOG_INFO(...)    LOG_AT(MCOS_LOG_INFO, __VA_ARGS__)
#define LOG_DBG(...)                                                          \
    do {                                                                      \
        if (mcos_log_enabled(&mcos_this_log_module, MCOS_LOG_DEBUG)) {        \
            LOG_AT(MCOS_LOG_DEBUG, __VA_ARGS__);                              \
        }                                                                     \
    } while (0)
#define LOG_WARN_RL(RL, FMT, ...)                                             \
    do {                                                                      \
        uint32_t mcos_rl_supp_;                                               \
        if (mcos_ratelimit_allow((RL), &mcos_rl_supp_)) {                     \
            if (mcos_rl_supp_) {                                              \
                LOG_WARN(FMT " (%u similar messages suppressed)",             \
                         ##__VA_ARGS__, mcos_rl_supp_);                       \
            } else {                                                          \
                LOG_WARN(FMT, ##__VA_ARGS__);                                 \
            }                                                                 \
        }                                                                     \
    } while (0)

#endif /* MCOS_LOG_H */
