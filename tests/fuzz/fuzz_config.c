/*
 * Fuzz target: configuration from operators and from etcd.  The first
 * byte picks the entry point, the rest is its input:
 *
 *   0  an agent config file (JSON text): defaults, the file, then the
 *      agent's own checks (agent_config_check, the API group, the data
 *      addresses, the brain list), as mcos-agent does at start-up;
 *   1  a brain config file: defaults, the file, brain_config_check;
 *   2  `mcos-admin config set KEY VALUE` as the brain applies it
 *      (brain_config_live_set; KEY and VALUE split at the first NUL),
 *      then reading the key back;
 *   3  the shared value parsers and the URL check (one string);
 *   4  an agent command line (arguments split at NUL bytes; --config is
 *      dropped, so that no input names a file to read).
 *
 * Whatever the bytes: no crash, no leak, no undefined behaviour; a
 * refusal leaves a message.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "brain.h"
#include "config.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ARGS 32

static void
refused(int r, const char *err)
{
    if (r && !*err) {
        abort(); /* a refusal must say why */
    }
}

static void
agent_file(const char *text)
{
    struct agent_config c;
    char err[MCOS_CFG_ERR_LEN] = "";
    char addrs[4][AGENT_DATA_ADDR_LEN];
    char **brains;
    size_t n;
    int64_t gid;
    int r;

    memset(&c, 0, sizeof c);
    if (mcos_cfg_defaults(agent_config_opts, agent_n_config_opts, &c, err,
                          sizeof err)) {
        abort();
    }
    r = mcos_cfg_load_string(agent_config_opts, agent_n_config_opts, &c, text,
                             "fuzz", err, sizeof err);
    refused(r, err);
    if (r == 0) {
        err[0] = '\0';
        refused(agent_config_check(&c, err, sizeof err), err);
        err[0] = '\0';
        refused(agent_config_api_gid(&c, &gid, err, sizeof err), err);
        err[0] = '\0';
        r = agent_config_data_addresses(&c, addrs, 4, err, sizeof err);
        refused(r < 0 ? r : 0, err);
        err[0] = '\0';
        r = agent_brain_list(c.brain, &brains, &n, err, sizeof err);
        refused(r, err);
        if (r == 0) {
            agent_brain_list_free(brains, n);
        }
    }
    mcos_cfg_free(agent_config_opts, agent_n_config_opts, &c);
}

static void
brain_file(const char *text)
{
    struct brain_config c;
    char err[MCOS_CFG_ERR_LEN] = "";
    int r;

    memset(&c, 0, sizeof c);
    if (mcos_cfg_defaults(brain_config_opts, brain_n_config_opts, &c, err,
                          sizeof err)) {
        abort();
    }
    r = mcos_cfg_load_string(brain_config_opts, brain_n_config_opts, &c, text,
                             "fuzz", err, sizeof err);
    refused(r, err);
    if (r == 0) {
        err[0] = '\0';
        refused(brain_config_check(&c, err, sizeof err), err);
    }
    mcos_cfg_free(brain_config_opts, brain_n_config_opts, &c);
}

static void
brain_live(const char *key, const char *value)
{
    struct brain_config c;
    char err[MCOS_CFG_ERR_LEN] = "", canon[256], buf[256];
    int r;

    memset(&c, 0, sizeof c);
    if (mcos_cfg_defaults(brain_config_opts, brain_n_config_opts, &c, err,
                          sizeof err)) {
        abort();
    }
    r = brain_config_live_set(&c, key, value, "fuzz", canon, sizeof canon, err,
                              sizeof err);
    refused(r, err);
    if (r == 0) {
        err[0] = '\0';
        if (brain_config_live_get(&c, key, buf, sizeof buf, err, sizeof err)) {
            abort(); /* a key it just set */
        }
    }
    mcos_cfg_free(brain_config_opts, brain_n_config_opts, &c);
}

static void
values(const char *s)
{
    static const char *const schemes[] = {"tcp", "ipc", "http", NULL};
    char err[MCOS_CFG_ERR_LEN] = "";
    uint64_t v;
    bool b;

    (void)mcos_parse_uint(s, &v);
    (void)mcos_parse_bytes(s, &v);
    (void)mcos_parse_ms(s, &v);
    (void)mcos_parse_bool(s, &b);
    refused(mcos_check_url("url", s, schemes, err, sizeof err), err);
}

static void
agent_args(char *text, size_t len)
{
    struct agent_config c;
    char *argv[MAX_ARGS + 2], err[MCOS_CFG_ERR_LEN] = "";
    int argc = 0;
    bool help, version;
    size_t i = 0;

    argv[argc++] = (char *)"mcos-agent";
    while (i < len && argc <= MAX_ARGS) {
        char *a = text + i;

        i += strlen(a) + 1;
        if (strncmp(a, "--config", 8) == 0 ||
            (argc > 1 && strcmp(argv[argc - 1], "--config") == 0)) {
            continue;
        }
        argv[argc++] = a;
    }
    argv[argc] = NULL;
    memset(&c, 0, sizeof c);
    if (mcos_cfg_defaults(agent_config_opts, agent_n_config_opts, &c, err,
                          sizeof err)) {
        abort();
    }
    refused(mcos_cfg_parse_args(agent_config_opts, agent_n_config_opts, &c,
                                argc, argv, &help, &version, err, sizeof err),
            err);
    mcos_cfg_free(agent_config_opts, agent_n_config_opts, &c);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool quiet;
    char *text;
    size_t len;

    if (!quiet) {
        mcos_log_set_spec("off");
        quiet = true;
    }
    if (size == 0) {
        return 0;
    }
    /* The input as a NUL-terminated string (it may hold NULs itself). */
    len = size - 1;
    text = malloc(len + 1);
    if (!text) {
        return 0;
    }
    memcpy(text, data + 1, len);
    text[len] = '\0';
    switch (data[0] % 5) {
    case 0:
        agent_file(text);
        break;
    case 1:
        brain_file(text);
        break;
    case 2: {
        size_t k = strlen(text);

        brain_live(text, k < len ? text + k + 1 : "");
        break;
    }
    case 3:
        values(text);
        break;
    default:
        agent_args(text, len);
        break;
    }
    free(text);
    return 0;
}
