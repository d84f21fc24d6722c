#include "daemon.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

MCOS_LOG_MODULE(main);

static void
usage(const struct mcos_daemon_spec *spec, FILE *f)
{
    fprintf(f, "usage: %s [--config FILE] [OPTIONS]\n\n%s\n\n", spec->prog,
            spec->about);
    fprintf(f, "Options (each also a key in the JSON config file):\n");
    mcos_cfg_print_help(spec->opts, spec->n_opts, f);
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

    signal(SIGPIPE, SIG_IGN);
    if (mcos_cfg_defaults(spec->opts, spec->n_opts, cfg, err, sizeof err) ||
        mcos_cfg_parse_args(spec->opts, spec->n_opts, cfg, argc, argv, &help,
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
