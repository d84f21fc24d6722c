/* mcos-brain: command line, signals, and the loop. */
#include <stddef.h>
#include <stdio.h>
#include <uv.h>

#include "brain.h"
#include "daemon.h"
#include "log.h"

MCOS_LOG_MODULE(main);

static int
check(const void *cfg, char *err, size_t errlen)
{
    return brain_config_check(cfg, err, errlen);
}

struct daemon {
    struct brain *brain;              /* the brain */
    struct mcos_daemon_notify notify; /* systemd */
};

static void
status(void *arg, char *buf, size_t len)
{
    const struct brain *b = ((struct daemon *)arg)->brain;

    snprintf(buf, len,
             "%s; generation %llu; nodes: %zu alive, %zu suspect, "
             "%zu failed",
             !brain_leading(b) ? "standby"
             : b->election     ? "leader"
                               : "embedded",
             (unsigned long long)b->gen,
             brain_cluster_count(&b->cluster, BRAIN_ALIVE),
             brain_cluster_count(&b->cluster, BRAIN_SUSPECT),
             brain_cluster_count(&b->cluster, BRAIN_FAILED));
}

static void
stop(void *arg)
{
    struct daemon *d = arg;

    mcos_daemon_notify_stopping(&d->notify);
    brain_close(d->brain);
}

int
main(int argc, char **argv)
{
    const struct mcos_daemon_spec spec = {
        .prog = "mcos-brain",
        .about = "The MCOS policy brain: aggregates agent telemetry, "
                 "compiles per-node policy\ntables and pushes them to "
                 "agents.  Without etcd it runs alone on a local\nstate "
                 "directory.  With etcd (--etcd) several brains elect one "
                 "leader;\nthe others stand by and take over when it "
                 "dies.",
        .opts = brain_config_opts,
        .n_opts = brain_n_config_opts,
        .log_level_offset = offsetof(struct brain_config, log_level),
        .check = check,
    };
    struct brain_config cfg = {0};
    struct mcos_daemon_signals sig;
    struct daemon d = {0};
    char err[512];
    uv_loop_t loop;
    int r;

    r = mcos_daemon_configure(&spec, &cfg, argc, argv);
    if (r >= 0) {
        return r;
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
    mcos_daemon_signals_start(&sig, &loop, stop, &d);
    mcos_daemon_notify_ready(&d.notify, &loop, status, &d);
    uv_run(&loop, UV_RUN_DEFAULT);
    r = uv_loop_close(&loop);
    if (r) {
        LOG_WARN("loop closed with handles open: %s", uv_strerror(r));
    }
    LOG_INFO("stopped");
    return 0;
}
