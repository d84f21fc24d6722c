#include "daemon.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "log.h"

MCOS_LOG_MODULE(main);

static void
usage(const struct mcos_daemon_spec *spec, FILE *f)
{
    fprintf(f, "usage: %s [--config FILE] [OPTIONS]\n\n%s\n\n", spec->prog,
            spec->about);
    fprintf(f, "Options (each also a key in the JSON config file):\n");
    mcos_cfg_print_help(spec->opts, spec->n_opts, f);
    fprintf(f, "  %-28s %s\n", "--check-config",
            "validate the configuration and exit");
    fprintf(f, "\nExit status: 0 after a clean shutdown, 1 on a runtime "
               "error, 2 on a bad\nargument or configuration.\n");
}

int
mcos_daemon_configure(const struct mcos_daemon_spec *spec, void *cfg, int argc,
                      char **argv)
{
    const char *log_spec;
    bool help, version;
    char err[512];

    bool check_only = false;
    char *args[256];
    int n = 0;

    signal(SIGPIPE, SIG_IGN);
    /* --check-config is ours, not the table's. */
    for (int i = 0; i < argc && n < 255; i++) {
        if (i > 0 && !strcmp(argv[i], "--check-config")) {
            check_only = true;
        } else {
            args[n++] = argv[i];
        }
    }
    args[n] = NULL;
    if (mcos_cfg_defaults(spec->opts, spec->n_opts, cfg, err, sizeof err) ||
        mcos_cfg_parse_args(spec->opts, spec->n_opts, cfg, n, args, &help,
                            &version, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", spec->prog, err);
        goto fail;
    }
    if (help || version) {
        if (help) {
            usage(spec, stdout);
        } else {
            printf("%s %s\n", spec->prog, MCOS_VERSION);
        }
        mcos_cfg_free(spec->opts, spec->n_opts, cfg);
        return 0;
    }
    if (spec->fill) {
        spec->fill(cfg);
    }
    log_spec = *(const char **)((const char *)cfg + spec->log_level_offset);
    if (mcos_log_set_spec(log_spec ? log_spec : "info")) {
        fprintf(stderr,
                "%s: option --log-level: bad spec '%s' (want "
                "LEVEL[,MODULE=LEVEL...], levels off, err, warn, info, "
                "debug)\n",
                spec->prog, log_spec);
        goto fail;
    }
    if (spec->check && spec->check(cfg, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", spec->prog, err);
        goto fail;
    }
    if (check_only) {
        printf("%s: configuration OK\n", spec->prog);
        mcos_cfg_free(spec->opts, spec->n_opts, cfg);
        return 0;
    }
    return -1;

fail:
    mcos_cfg_free(spec->opts, spec->n_opts, cfg);
    return 2;
}

static void
on_signal(uv_signal_t *h, int signum)
{
    struct mcos_daemon_signals *s = h->data;

    LOG_INFO("%s: shutting down", strsignal(signum));
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    s->stop(s->arg);
}

void
mcos_daemon_signals_start(struct mcos_daemon_signals *s, uv_loop_t *loop,
                          void (*stop)(void *), void *arg)
{
    s->stop = stop;
    s->arg = arg;
    uv_signal_init(loop, &s->sigint);
    uv_signal_init(loop, &s->sigterm);
    s->sigint.data = s->sigterm.data = s;
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
}

/* ------------------------------------------------------------------------
 * systemd. */

#define STATUS_REFRESH_MS 5000

static void
send_status(struct mcos_daemon_notify *n, const char *prefix)
{
    char status[400];

    status[0] = '\0';
    if (n->status_fn) {
        n->status_fn(n->arg, status, sizeof status);
    }
    sd_notifyf(0, "%sSTATUS=%s", prefix, status);
}

static void
watchdog_cb(uv_timer_t *t)
{
    (void)t;
    sd_notify(0, "WATCHDOG=1");
}

static void
status_cb(uv_timer_t *t)
{
    send_status(t->data, "");
}

void
mcos_daemon_notify_ready(struct mcos_daemon_notify *n, uv_loop_t *loop,
                         void (*status_fn)(void *, char *, size_t), void *arg)
{
    uint64_t usec = 0;

    memset(n, 0, sizeof *n);
    n->status_fn = status_fn;
    n->arg = arg;
    if (!getenv("NOTIFY_SOCKET")) {
        return;
    }
    send_status(n, "READY=1\n");
    uv_timer_init(loop, &n->watchdog);
    uv_timer_init(loop, &n->status);
    n->status.data = n;
    uv_timer_start(&n->status, status_cb, STATUS_REFRESH_MS,
                   STATUS_REFRESH_MS);
    /* Ping at half the interval systemd gave us, so one late loop turn
     * does not get the service killed. */
    if (sd_watchdog_enabled(0, &usec) > 0 && usec >= 2000) {
        uv_timer_start(&n->watchdog, watchdog_cb, usec / 2000, usec / 2000);
        LOG_INFO("systemd watchdog: pinging every %llu ms",
                 (unsigned long long)(usec / 2000));
    }
    n->active = true;
}

void
mcos_daemon_notify_stopping(struct mcos_daemon_notify *n)
{
    if (!n->active) {
        return;
    }
    sd_notify(0, "STOPPING=1");
    uv_close((uv_handle_t *)&n->watchdog, NULL);
    uv_close((uv_handle_t *)&n->status, NULL);
    n->active = false;
}
