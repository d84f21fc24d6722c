/*
 * What every MCOS daemon does around its own work: parse the config table
 * from defaults, file and flags; answer --help and --version; apply the
 * log spec; validate; and stop cleanly on SIGINT/SIGTERM.
 *
 * Thread-safety: start-up code, loop thread only.
 */
#ifndef MCOS_DAEMON_H
#define MCOS_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <uv.h>

#include "config.h"

struct mcos_daemon_spec {
    const char *prog;                /* "mcos-brain" */
    const char *about;               /* paragraph for --help */
    const struct mcos_cfg_opt *opts; /* the option table */
    size_t n_opts;                   /* its length */
    size_t log_level_offset;         /* offsetof the log spec string */
    /* Fills values whose defaults depend on the machine; may be NULL. */
    void (*fill)(void *cfg);
    /* Cross-field and machine checks; may be NULL. */
    int (*check)(const void *cfg, char *err, size_t errlen);
};

/* Configures `cfg` from argv.  Returns -1 to go on, or an exit status to
 * return from main: 0 after --help/--version or --check-config (which
 * validates everything, prints "PROG: configuration OK" and stops), 2
 * after a bad argument or value (one line on stderr).  On a non-negative
 * return `cfg` is freed. */
int mcos_daemon_configure(const struct mcos_daemon_spec *, void *cfg, int argc,
                          char **argv);

/* Service manager integration (systemd Type=notify, via libsystemd's
 * sd_notify): READY=1 once the daemon serves, STATUS= lines as it runs,
 * WATCHDOG=1 pings at half the interval systemd asks for, STOPPING=1 on
 * shutdown.  Without $NOTIFY_SOCKET all of it is a no-op. */
struct mcos_daemon_notify {
    uv_timer_t watchdog; /* pings, when systemd wants them */
    uv_timer_t status;   /* refreshes STATUS= */
    void (*status_fn)(void *arg, char *buf, size_t len); /* builds it */
    void *arg;                                           /* its argument */
    bool active;                                         /* timers started */
};

/* Says READY=1 with a first STATUS=, starts the watchdog pings and a
 * STATUS= refresh every few seconds. */
void mcos_daemon_notify_ready(struct mcos_daemon_notify *, uv_loop_t *,
                              void (*status_fn)(void *, char *, size_t),
                              void *arg);

/* Says STOPPING=1 and closes the timers. */
void mcos_daemon_notify_stopping(struct mcos_daemon_notify *);

/* Calls `stop(arg)` once on the first SIGINT or SIGTERM, then closes its
 * own signal handles so the loop can end. */
struct mcos_daemon_signals {
    uv_signal_t sigint;      /* ^C */
    uv_signal_t sigterm;     /* kill, systemd stop */
    void (*stop)(void *arg); /* what to do */
    void *arg;               /* its argument */
};

void mcos_daemon_signals_start(struct mcos_daemon_signals *, uv_loop_t *,
                               void (*stop)(void *), void *arg);

#endif /* MCOS_DAEMON_H */
