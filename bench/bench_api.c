/*
 * bench_api: the intent API's data path against plain memcpy.
 *
 * Starts a private mcos-agent (the one next to this binary), then for each
 * object size measures, in the same run:
 *   memcpy           copying the bytes once (the baseline)
 *   put              mcos_put: place, copy into the shared arena, commit
 *                    (the agent checksums the bytes: one more pass)
 *   get (view)       mcos_get + reading every byte + mcos_release
 *   get (copy)       mcos_get_copy into a private buffer
 * and prints GB/s and the ratio to memcpy, plus operations per second for
 * small objects, where the control round trip dominates.
 *
 * Usage: bench_api [--quick]
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mcos/mcos.h"

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static pid_t
start_agent(const char *dir, char *url, size_t urllen, char *shm,
            size_t shmlen)
{
    char self[PATH_MAX], agent[PATH_MAX + 16], log[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    pid_t pid;

    if (n < 0) {
        return -1;
    }
    self[n] = '\0';
    snprintf(agent, sizeof agent, "%s/mcos-agent", dirname(self));
    snprintf(url, urllen, "ipc://%s/agent.sock", dir);
    snprintf(shm, shmlen, "/mcos-bench-%d", getpid());
    snprintf(log, sizeof log, "%s/agent.log", dir);
    pid = fork();
    if (pid == 0) {
        freopen(log, "w", stderr);
        execl(agent, "mcos-agent", "--node", "bench", "--brain",
              "tcp://127.0.0.1:1", "--http", "", "--api", url, "--shm-name",
              shm, "--dram-bytes", "1GiB", "--log-level", "err",
              "--data-transports", "off", (char *)NULL);
        _exit(127);
    }
    return pid;
}

struct row {
    size_t size;     /* object size */
    int count;       /* objects per pass */
    double memcpy_s; /* seconds */
    double put_s;
    double view_s;
    double copy_s;
};

static void
run_size(mcos_client_t *c, struct row *r, int passes)
{
    size_t sz = r->size;
    uint8_t *src = malloc(sz), *dst = malloc(sz);
    volatile uint64_t sink = 0;
    double t;

    memset(src, 0x5a, sz);
    for (size_t i = 0; i < sz; i += 4096) {
        src[i] = (uint8_t)i;
    }
    /* memcpy baseline. */
    t = now_s();
    for (int p = 0; p < passes; p++) {
        for (int i = 0; i < r->count; i++) {
            memcpy(dst, src, sz);
            sink += dst[sz - 1];
        }
    }
    r->memcpy_s = now_s() - t;
    /* put. */
    t = now_s();
    for (int p = 0; p < passes; p++) {
        for (int i = 0; i < r->count; i++) {
            if (mcos_put(c, (mcos_id_t)(p * r->count + i + 1), src, sz,
                         NULL)) {
                fprintf(stderr, "bench_api: put failed\n");
                exit(1);
            }
        }
    }
    r->put_s = now_s() - t;
    /* get: zero-copy view, every byte read once (as a consumer would). */
    t = now_s();
    for (int p = 0; p < passes; p++) {
        for (int i = 0; i < r->count; i++) {
            struct mcos_view v;
            const uint64_t *w;

            if (mcos_get(c, (mcos_id_t)(p * r->count + i + 1), &v)) {
                fprintf(stderr, "bench_api: get failed\n");
                exit(1);
            }
            w = v.data;
            for (size_t k = 0; k < v.len / 8; k++) {
                sink += w[k];
            }
            mcos_release(c, &v);
        }
    }
    r->view_s = now_s() - t;
    /* get: copy out. */
    t = now_s();
    for (int p = 0; p < passes; p++) {
        for (int i = 0; i < r->count; i++) {
            size_t len;

            mcos_get_copy(c, (mcos_id_t)(p * r->count + i + 1), dst, sz, &len);
        }
    }
    r->copy_s = now_s() - t;
    for (int p = 0; p < passes; p++) {
        for (int i = 0; i < r->count; i++) {
            mcos_evict(c, (mcos_id_t)(p * r->count + i + 1), MCOS_EVICT_DROP);
        }
    }
    free(src);
    free(dst);
    (void)sink;
}

int
main(int argc, char **argv)
{
    bool quick = argc > 1 && !strcmp(argv[1], "--quick");
    struct row rows[] = {
        {4096, 2000, 0, 0, 0, 0},
        {64 << 10, 1000, 0, 0, 0, 0},
        {1 << 20, 200, 0, 0, 0, 0},
        {16 << 20, 12, 0, 0, 0, 0},
    };
    int passes = quick ? 1 : 3;
    char dir[] = "/tmp/mcos-bench-XXXXXX", url[600], shm[64];
    mcos_client_t *c = NULL;
    pid_t agent;
    int status;

    if (!mkdtemp(dir)) {
        perror("bench_api: mkdtemp");
        return 1;
    }
    agent = start_agent(dir, url, sizeof url, shm, sizeof shm);
    for (int i = 0; i < 500 && mcos_connect(url, &c); i++) {
        usleep(10000);
    }
    if (!c) {
        fprintf(stderr, "bench_api: agent did not start (see %s)\n", dir);
        kill(agent, SIGKILL);
        return 1;
    }
    printf("bench_api%s: the intent API's data path vs memcpy (same run)\n",
           quick ? " (quick)" : "");
    printf("  %10s %10s %10s %10s %10s   %s\n", "size", "memcpy", "put",
           "get view", "get copy", "ratio to memcpy (put / view / copy)");
    for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {
        struct row *r = &rows[k];
        double bytes;

        if (quick) {
            r->count = r->count / 20 + 1;
        }
        run_size(c, r, passes);
        bytes = (double)r->size * r->count * passes;
        printf("  %9zuK %7.2f GB/s %7.2f GB/s %7.2f GB/s %7.2f GB/s   "
               "%.2f / %.2f / %.2f\n",
               r->size >> 10, bytes / r->memcpy_s / 1e9,
               bytes / r->put_s / 1e9, bytes / r->view_s / 1e9,
               bytes / r->copy_s / 1e9, r->memcpy_s / r->put_s,
               r->memcpy_s / r->view_s, r->memcpy_s / r->copy_s);
        if (k == 0) {
            double ops = (double)r->count * passes;

            printf("  %10s %10s %7.0fk/s %7.0fk/s %7.0fk/s   "
                   "(4 KiB operations per second)\n",
                   "", "", ops / r->put_s / 1e3, ops / r->view_s / 1e3,
                   ops / r->copy_s / 1e3);
        }
    }
    mcos_close(c);
    kill(agent, SIGTERM);
    waitpid(agent, &status, 0);
    shm_unlink(shm);
    {
        char cmd[700];

        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd)) {
            fprintf(stderr, "bench_api: could not remove %s\n", dir);
        }
    }
    return 0;
}
