/* mcos-agent: command line, signals, and the loop. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "agent.h"
#include "bus.h"
#include "log.h"

MCOS_LOG_MODULE(main);

struct daemon {
    struct agent *agent; /* the agent */
    uv_signal_t sigint;  /* stop on ^C */
    uv_signal_t sigterm; /* stop on SIGTERM */
};

static void
on_signal(uv_signal_t *s, int signum)
{
    struct daemon *d = s->data;

    LOG_INFO("%s: shutting down", strsignal(signum));
    agent_close(d->agent);
    d->agent = NULL;
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
}

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: mcos-agent [--config FILE] [OPTIONS]\n"
            "\n"
            "The MCOS node agent: describes this node's memory tiers to the\n"
            "brain, reports telemetry, and applies the policy tables the\n"
            "brain compiles for it.  It keeps running on its last table when\n"
            "the brain is unreachable.\n"
            "\n"
            "Options (each also a key in the JSON config file):\n");
    mcos_cfg_print_help(agent_config_opts, agent_n_config_opts, f);
    fprintf(f, "\nExit status: 0 after a clean shutdown, 1 on a runtime "
               "error, 2 on a bad\nargument or configuration.\n");
}

int
main(int argc, char **argv)
{
    struct agent_config cfg = {0};
    struct daemon d = {0};
    char err[512];
    bool help, version;
    uv_loop_t loop;
    int r;

    signal(SIGPIPE, SIG_IGN);
    if (mcos_cfg_defaults(agent_config_opts, agent_n_config_opts, &cfg, err,
                          sizeof err) ||
        mcos_cfg_parse_args(agent_config_opts, agent_n_config_opts, &cfg, argc,
                            argv, &help, &version, err, sizeof err)) {
        fprintf(stderr, "mcos-agent: %s\n", err);
        mcos_cfg_free(agent_config_opts, agent_n_config_opts, &cfg);
        return 2;
    }
    if (help || version) {
        if (help) {
            usage(stdout);
        } else {
            printf("mcos-agent %s\n", MCOS_VERSION);
        }
        mcos_cfg_free(agent_config_opts, agent_n_config_opts, &cfg);
        return 0;
    }
    if (!cfg.node) {
        char host[256];

        if (gethostname(host, sizeof host)) {
            strcpy(host, "localhost");
        }
        host[strcspn(host, ".")] = '\0';
        cfg.node = strdup(host);
    }
    if (mcos_log_set_spec(cfg.log_level)) {
        fprintf(stderr,
                "mcos-agent: option --log-level: bad spec '%s' "
                "(want LEVEL[,MODULE=LEVEL...], levels off, err, warn, "
                "info, debug)\n",
                cfg.log_level);
        mcos_cfg_free(agent_config_opts, agent_n_config_opts, &cfg);
        return 2;
    }
    if (agent_config_check(&cfg, err, sizeof err)) {
        fprintf(stderr, "mcos-agent: %s\n", err);
        mcos_cfg_free(agent_config_opts, agent_n_config_opts, &cfg);
        return 2;
    }

    agent_tables_register_thread();
    uv_loop_init(&loop);
    r = agent_create(&loop, &cfg, &mcos_clock_monotonic, &d.agent, err,
                     sizeof err);
    mcos_cfg_free(agent_config_opts, agent_n_config_opts, &cfg);
    if (r) {
        fprintf(stderr, "mcos-agent: %s\n", err);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        agent_tables_unregister_thread();
        return 1;
    }
    uv_signal_init(&loop, &d.sigint);
    uv_signal_init(&loop, &d.sigterm);
    d.sigint.data = d.sigterm.data = &d;
    uv_signal_start(&d.sigint, on_signal, SIGINT);
    uv_signal_start(&d.sigterm, on_signal, SIGTERM);

    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    agent_tables_unregister_thread();
    mcos_bus_shutdown();
    LOG_INFO("stopped");
    return 0;
}
