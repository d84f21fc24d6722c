/* mcos-brain: command line, signals, and the loop. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "brain.h"
#include "bus.h"
#include "log.h"

MCOS_LOG_MODULE(main);

struct daemon {
    struct brain *brain; /* the brain */
    uv_signal_t sigint;  /* stop on ^C */
    uv_signal_t sigterm; /* stop on SIGTERM */
};

static void
on_signal(uv_signal_t *s, int signum)
{
    struct daemon *d = s->data;

    LOG_INFO("%s: shutting down", strsignal(signum));
    brain_close(d->brain);
    d->brain = NULL;
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
}

static void
usage(FILE *f)
{
    fprintf(f, "usage: mcos-brain [--config FILE] [OPTIONS]\n"
               "\n"
               "The MCOS policy brain: aggregates agent telemetry, compiles\n"
               "per-node policy tables and pushes them to agents.  Without\n"
               "etcd it runs alone on a local state directory.\n"
               "\n"
               "Options (each also a key in the JSON config file):\n");
    mcos_cfg_print_help(brain_config_opts, brain_n_config_opts, f);
    fprintf(f, "\nExit status: 0 after a clean shutdown, 1 on a runtime "
               "error, 2 on a bad\nargument or configuration.\n");
}

int
main(int argc, char **argv)
{
    struct brain_config cfg = {0};
    struct daemon d = {0};
    char err[512];
    bool help, version;
    uv_loop_t loop;
    int r;

    signal(SIGPIPE, SIG_IGN);
    if (mcos_cfg_defaults(brain_config_opts, brain_n_config_opts, &cfg, err,
                          sizeof err) ||
        mcos_cfg_parse_args(brain_config_opts, brain_n_config_opts, &cfg, argc,
                            argv, &help, &version, err, sizeof err)) {
        fprintf(stderr, "mcos-brain: %s\n", err);
        mcos_cfg_free(brain_config_opts, brain_n_config_opts, &cfg);
        return 2;
    }
    if (help || version) {
        if (help) {
            usage(stdout);
        } else {
            printf("mcos-brain %s\n", MCOS_VERSION);
        }
        mcos_cfg_free(brain_config_opts, brain_n_config_opts, &cfg);
        return 0;
    }
    if (mcos_log_set_spec(cfg.log_level)) {
        fprintf(stderr,
                "mcos-brain: option --log-level: bad spec '%s' "
                "(want LEVEL[,MODULE=LEVEL...], levels off, err, warn, "
                "info, debug)\n",
                cfg.log_level);
        mcos_cfg_free(brain_config_opts, brain_n_config_opts, &cfg);
        return 2;
    }
    if (brain_config_check(&cfg, err, sizeof err)) {
        fprintf(stderr, "mcos-brain: %s\n", err);
        mcos_cfg_free(brain_config_opts, brain_n_config_opts, &cfg);
        return 2;
    }

    uv_loop_init(&loop);
    r = brain_create(&loop, &cfg, &mcos_clock_monotonic, &d.brain, err,
                     sizeof err);
    mcos_cfg_free(brain_config_opts, brain_n_config_opts, &cfg);
    if (r) {
        fprintf(stderr, "mcos-brain: %s\n", err);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        return 1;
    }
    uv_signal_init(&loop, &d.sigint);
    uv_signal_init(&loop, &d.sigterm);
    d.sigint.data = d.sigterm.data = &d;
    uv_signal_start(&d.sigint, on_signal, SIGINT);
    uv_signal_start(&d.sigterm, on_signal, SIGTERM);

    uv_run(&loop, UV_RUN_DEFAULT);
    r = uv_loop_close(&loop);
    if (r) {
        LOG_WARN("loop closed with handles open: %s", uv_strerror(r));
    }
    mcos_bus_shutdown();
    LOG_INFO("stopped");
    return 0;
}
