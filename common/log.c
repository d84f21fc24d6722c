#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_OVERRIDES 32

/* The parsed spec.  Readers take the mutex only when their cached level is
 * out of date, which happens once per module per spec change. */
static pthread_mutex_t spec_mutex = PTHREAD_MUTEX_INITIALIZER;
static unsigned spec_gen = 1;
static enum mcos_log_level default_level = MCOS_LOG_INFO;
static struct {
    char name[32];             /* module name */
    enum mcos_log_level level; /* its level */
} overrides[MAX_OVERRIDES];
static size_t n_overrides;

static const char *const level_names[] = {"OFF", "ERR", "WARN", "INFO",
                                          "DEBUG"};

int
mcos_log_parse_level(const char *s, enum mcos_log_level *out)
{
    static const struct {
        const char *name;
        enum mcos_log_level level;
    } names[] = {
        {"off", MCOS_LOG_OFF},      {"err", MCOS_LOG_ERR},
        {"error", MCOS_LOG_ERR},    {"warn", MCOS_LOG_WARN},
        {"warning", MCOS_LOG_WARN}, {"info", MCOS_LOG_INFO},
        {"debug", MCOS_LOG_DEBUG},  {"dbg", MCOS_LOG_DEBUG},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!strcasecmp(s, names[i].name)) {
            *out = names[i].level;
            return 0;
        }
    }
    return -EINVAL;
}

int
mcos_log_set_spec(const char *spec)
{
    enum mcos_log_level def = default_level;
    size_t n = 0;
    char names[MAX_OVERRIDES][32];
    enum mcos_log_level levels[MAX_OVERRIDES];
    char *copy = strdup(spec);
    char *save = NULL;
    int err = 0;

    if (!copy) {
        return -ENOMEM;
    }
    for (char *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        enum mcos_log_level lvl;

        if (!eq) {
            if (mcos_log_parse_level(tok, &def)) {
                err = -EINVAL;
                break;
            }
            continue;
        }
        *eq = '\0';
        if (n == MAX_OVERRIDES || !*tok || strlen(tok) >= sizeof names[0] ||
            mcos_log_parse_level(eq + 1, &lvl)) {
            err = -EINVAL;
            break;
        }
        snprintf(names[n], sizeof names[n], "%s", tok);
        levels[n++] = lvl;
    }
    free(copy);
    if (err) {
        return err;
    }

    pthread_mutex_lock(&spec_mutex);
    default_level = def;
    for (size_t i = 0; i < n; i++) {
        memcpy(overrides[i].name, names[i], sizeof overrides[i].name);
        overrides[i].level = levels[i];
    }
    n_overrides = n;
    __atomic_add_fetch(&spec_gen, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&spec_mutex);
    return 0;
}

static int
effective_level(struct mcos_log_module *m)
{
    unsigned gen = __atomic_load_n(&spec_gen, __ATOMIC_ACQUIRE);
    int level;

    if (__atomic_load_n(&m->spec_gen, __ATOMIC_ACQUIRE) == gen) {
        return __atomic_load_n(&m->level, __ATOMIC_RELAXED);
    }
    pthread_mutex_lock(&spec_mutex);
    level = default_level;
    for (size_t i = 0; i < n_overrides; i++) {
        if (!strcmp(overrides[i].name, m->name)) {
            level = overrides[i].level;
        }
    }
    __atomic_store_n(&m->level, level, __ATOMIC_RELAXED);
    __atomic_store_n(&m->spec_gen, spec_gen, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&spec_mutex);
    return level;
}

bool
mcos_log_enabled(struct mcos_log_module *m, enum mcos_log_level level)
{
    return (int)level <= effective_level(m);
}

void
mcos_log(struct mcos_log_module *m, enum mcos_log_level level, const char *fmt,
         ...)
{
    char msg[1024];
    char stamp[32];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    int saved_errno = errno;

    if (!mcos_log_enabled(m, level)) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    /* One fprintf per line keeps lines whole when threads interleave. */
    fprintf(stderr, "%s.%03ldZ|%s|%s|%s\n", stamp, ts.tv_nsec / 1000000,
            m->name, level_names[level], msg);
    errno = saved_errno;
}

bool
mcos_ratelimit_allow(struct mcos_ratelimit *rl, uint32_t *suppressed)
{
    struct timespec ts;
    uint64_t now_ms;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    now_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    if (now_ms - rl->window_start >= rl->window_ms) {
        rl->window_start = now_ms;
        rl->count = 0;
    }
    if (rl->count < rl->burst) {
        rl->count++;
        *suppressed = rl->suppressed;
        rl->suppressed = 0;
        return true;
    }
    rl->suppressed++;
    return false;
}
