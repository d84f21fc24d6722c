/* mcos-agent: command line, signals, and the loop. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "agent.h"
#include "daemon.h"
#include "log.h"

MCOS_LOG_MODULE(main);

/* The node name defaults to the short host name. */
static void
fill(void *p)
{
    struct agent_config *cfg = p;
    char host[256];

    if (cfg->node) {
        return;
    }
    if (gethostname(host, sizeof host)) {
        strcpy(host, "localhost");
    }
    host[sizeof host - 1] = '\0';
    host[strcspn(host, ".")] = '\0';
    cfg->node = strdup(host);
}

static int
check(const void *cfg, char *err, size_t errlen)
{
    return agent_config_check(cfg, err, errlen);
}

struct daemon {
    struct agent *agent;              /* the agent */
    struct mcos_daemon_notify notify; /* systemd */
};

static void
status(void *arg, char *buf, size_t len)
{
    const struct agent *a = ((struct daemon *)arg)->agent;

    snprintf(buf, len, "generation %llu; brain %s; %zu objects",
             (unsigned long long)agent_tables_gen(a->tables),
             a->stale       ? "unreachable (stale)"
             : a->connected ? "connected"
                            : "unreachable",
             agent_store_count(a->store));
}

static void
stop(void *arg)
{
    struct daemon *d = arg;

    mcos_daemon_notify_stopping(&d->notify);
    agent_close(d->agent);
}

int
main(int argc, char **argv)
{
    const struct mcos_daemon_spec spec = {
        .prog = "mcos-agent",
        .about = "The MCOS node agent: describes this node's memory tiers "
                 "to the brain, reports\ntelemetry, and applies the policy "
                 "tables the brain compiles for it.  It keeps\nrunning on "
                 "its last table when the brain is unreachable.",
        .opts = agent_config_opts,
        .n_opts = agent_n_config_opts,
        .log_level_offset = offsetof(struct agent_config, log_level),
        .fill = fill,
        .check = check,
    };
    struct agent_config cfg = {0};
    struct mcos_daemon_signals sig;
    struct daemon d = {0};
    char err[512];
    uv_loop_t loop;
    int r;

    r = mcos_daemon_configure(&spec, &cfg, argc, argv);
    if (r >= 0) {
        return r;
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
    mcos_daemon_signals_start(&sig, &loop, stop, &d);
    mcos_daemon_notify_ready(&d.notify, &loop, status, &d);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    agent_tables_unregister_thread();
    LOG_INFO("stopped");
    return 0;
}
