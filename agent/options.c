/* mcos-agent's settings: one table for the config file and the flags. */
#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "agent.h"
#include "etcd.h"
#include "transport.h"

#define OPT(KEY, FLAG, TYPE, FIELD, MIN, MAX, DEF, HELP)                      \
    {                                                                         \
        KEY, FLAG, TYPE, offsetof(struct agent_config, FIELD), MIN, MAX, DEF, \
            HELP                                                              \
    }

const struct mcos_cfg_opt agent_config_opts[] = {
    OPT("node", "node", MCOS_CFG_STRING, node, 0, 0, NULL,
        "node name (default: the host name)"),
    OPT("brain", "brain", MCOS_CFG_STRING, brain, 0, 0, "tcp://127.0.0.1:7650",
        "the brain's address (nng URL); several brains: comma-separated"),
    OPT("http_listen", "http", MCOS_CFG_STRING, http_listen, 0, 0,
        "http://127.0.0.1:7652", "/metrics and status API (\"\" disables)"),
    OPT("labels.rack", "rack", MCOS_CFG_STRING, rack, 0, 0, "",
        "rack label (topology)"),
    OPT("labels.zone", "zone", MCOS_CFG_STRING, zone, 0, 0, "",
        "zone label (topology)"),
    OPT("report_interval_ms", "report-interval-ms", MCOS_CFG_MS,
        report_interval_ms, 10, 3600000, "1000",
        "report interval until the brain sets one"),
    OPT("stale_after_ms", "stale-after-ms", MCOS_CFG_MS, stale_after_ms, 10,
        86400000, "10000", "time without the brain before marking stale"),
    OPT("tiers.dram.bytes", "dram-bytes", MCOS_CFG_BYTES, dram_bytes, 1, 0,
        "1GiB", "DRAM tier capacity"),
    OPT("tiers.nvme.dir", "nvme-dir", MCOS_CFG_STRING, nvme_dir, 0, 0, "",
        "NVMe tier directory (\"\": no NVMe tier)"),
    OPT("tiers.nvme.bytes", "nvme-bytes", MCOS_CFG_BYTES, nvme_bytes, 0, 0,
        "0", "NVMe tier capacity"),
    OPT("tiers.hbm.bytes", "hbm-bytes", MCOS_CFG_BYTES, hbm_bytes, 0, 0,
        "1GiB",
        "GPU memory the HBM tier may use, when a GPU is found "
        "(the inference engine needs the rest)"),
    OPT("tiers.hbm.emulate_bytes", "emulate-hbm", MCOS_CFG_BYTES,
        emulate_hbm_bytes, 0, 0, "0",
        "DRAM-backed HBM tier for tests (reported as emulated)"),
    OPT("data.address", "data-address", MCOS_CFG_STRING, data_address, 0, 0,
        "",
        "data-plane address peers dial (default: first NIC, else "
        "127.0.0.1)"),
    OPT("data.addresses", "data-addresses", MCOS_CFG_STRING, data_addresses, 0,
        0, "",
        "verbs: addresses of the NICs to stripe transfers over, "
        "comma-separated, one per RDMA device, the first being "
        "data.address (default: just data.address)"),
    OPT("data.port", "data-port", MCOS_CFG_UINT, data_port, 1, 65534, "7653",
        "fabric control port (nng); the data transports listen on the "
        "next port"),
    OPT("data.transports", "data-transports", MCOS_CFG_STRING, data_transports,
        0, 0, "auto",
        "data transports to peers: auto (verbs where an RDMA device is, "
        "and tcp), tcp, verbs, or off (no fabric)"),
    OPT("data.conns", "data-conns", MCOS_CFG_UINT, data_conns, 1, 64, "4",
        "TCP transport: sockets per peer"),
    OPT("cuda_lib", "cuda-lib", MCOS_CFG_STRING, cuda_lib, 0, 0, "",
        "CUDA runtime library to dlopen (default: libcudart.so ...)"),
    OPT("api_listen", "api", MCOS_CFG_STRING, api_listen, 0, 0,
        "ipc:///run/mcos/agent.sock",
        "local intent API for libmcos clients (nng ipc URL)"),
    OPT("api_group", "api-group", MCOS_CFG_STRING, api_group, 0, 0, "",
        "group (name or number) whose members may use the local API: the "
        "ipc socket and the DRAM arena become mode 0660 in that group "
        "(\"\": 0600, the agent's user only)"),
    OPT("tiers.dram.shm_name", "shm-name", MCOS_CFG_STRING, shm_name, 0, 0, "",
        "shared-memory name of the DRAM arena (default "
        "/mcos-NODE-dram)"),
    OPT("tiers.hbm.bandwidth", "hbm-bandwidth", MCOS_CFG_BYTES, bw_hbm, 0, 0,
        "0",
        "bytes/s the executor may move in or out of HBM (0: no "
        "limit)"),
    OPT("tiers.dram.bandwidth", "dram-bandwidth", MCOS_CFG_BYTES, bw_dram, 0,
        0, "0", "bytes/s for DRAM (0: no limit)"),
    OPT("tiers.nvme.bandwidth", "nvme-bandwidth", MCOS_CFG_BYTES, bw_nvme, 0,
        0, "0", "bytes/s for NVMe (0: no limit)"),
    OPT("etcd.endpoints", "etcd", MCOS_CFG_STRING, etcd_endpoints, 0, 0, "",
        "etcd client URLs, comma-separated: register this node under a "
        "lease (\"\" disables)"),
    OPT("etcd.lease_ttl_s", "etcd-lease-ttl-s", MCOS_CFG_UINT,
        etcd_lease_ttl_s, 2, 3600, "10",
        "seconds without a renewal before etcd drops this node"),
    MCOS_ETCD_TLS_CONFIG_OPTS(OPT),
    OPT("log_level", "log-level", MCOS_CFG_STRING, log_level, 0, 0, "info",
        "log levels, e.g. info or info,bus=debug"),
};

const size_t agent_n_config_opts =
    sizeof agent_config_opts / sizeof agent_config_opts[0];

static bool
label_ok(const char *s)
{
    for (; *s; s++) {
        if (*s <= ' ' || *s > '~' || *s == '"' || *s == '\\') {
            return false;
        }
    }
    return true;
}

int
agent_config_api_gid(const struct agent_config *c, int64_t *gid, char *err,
                     size_t errlen)
{
    const char *g = c->api_group;
    struct group gr, *res = NULL;
    char buf[4096], *end;
    unsigned long long v;

    *gid = -1;
    if (!g || !*g) {
        return 0;
    }
    if (*g >= '0' && *g <= '9') {
        errno = 0;
        v = strtoull(g, &end, 10);
        if (*end || errno || v >= (gid_t)-1) {
            snprintf(err, errlen, "api_group: bad group number '%s'", g);
            return -EINVAL;
        }
        *gid = (int64_t)v;
    } else if (getgrnam_r(g, &gr, buf, sizeof buf, &res) || !res) {
        snprintf(err, errlen,
                 "api_group: no group named '%s' (give a name from "
                 "/etc/group or a number)",
                 g);
        return -EINVAL;
    } else {
        *gid = (int64_t)res->gr_gid;
    }
    if (*gid == 0) {
        snprintf(err, errlen,
                 "api_group: not the root group; name the group the "
                 "applications run in");
        *gid = -1;
        return -EINVAL;
    }
    return 0;
}

int
agent_config_check(const struct agent_config *c, char *err, size_t errlen)
{
    uint64_t phys =
        (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);

    if (!c->node || !mcos_node_name_valid(c->node)) {
        snprintf(err, errlen,
                 "node: bad name '%s' (1-63 of [A-Za-z0-9._-], starting "
                 "with a letter or digit)",
                 c->node ? c->node : "");
        return -EINVAL;
    }
    static const char *const bus_schemes[] = {"tcp", "ipc", NULL};
    static const char *const http_schemes[] = {"http", NULL};

    {
        char **list;
        size_t n;

        if (agent_brain_list(c->brain, &list, &n, err, errlen)) {
            return -EINVAL;
        }
        agent_brain_list_free(list, n);
    }
    if (mcos_check_url("api_listen", c->api_listen, bus_schemes, err,
                       errlen)) {
        return -EINVAL;
    }
    if (*c->shm_name &&
        (c->shm_name[0] != '/' || strchr(c->shm_name + 1, '/') ||
         strlen(c->shm_name) > 200)) {
        snprintf(err, errlen,
                 "tiers.dram.shm_name: '%s' must be /NAME "
                 "without further slashes",
                 c->shm_name);
        return -EINVAL;
    }
    if (*c->http_listen && mcos_check_url("http_listen", c->http_listen,
                                          http_schemes, err, errlen)) {
        return -EINVAL;
    }
    if (strlen(c->rack) > 63 || strlen(c->zone) > 63 || !label_ok(c->rack) ||
        !label_ok(c->zone)) {
        snprintf(err, errlen,
                 "labels: rack and zone must be at most 63 "
                 "printable characters without spaces or quotes");
        return -EINVAL;
    }
    if (c->stale_after_ms < c->report_interval_ms) {
        snprintf(err, errlen,
                 "stale_after_ms (%" PRIu64 ") must be at "
                 "least report_interval_ms (%" PRIu64 ")",
                 c->stale_after_ms, c->report_interval_ms);
        return -EINVAL;
    }
    if (phys && c->dram_bytes + c->emulate_hbm_bytes > phys) {
        snprintf(err, errlen,
                 "tiers.dram.bytes + tiers.hbm.emulate_bytes "
                 "(%" PRIu64 ") exceed this machine's memory (%" PRIu64 ")",
                 c->dram_bytes + c->emulate_hbm_bytes, phys);
        return -EINVAL;
    }
    if (*c->nvme_dir) {
        struct statvfs st;

        if (access(c->nvme_dir, W_OK) || statvfs(c->nvme_dir, &st)) {
            snprintf(err, errlen, "tiers.nvme.dir: %s: %s", c->nvme_dir,
                     strerror(errno));
            return -EINVAL;
        }
        if (c->nvme_bytes == 0) {
            snprintf(err, errlen,
                     "tiers.nvme.bytes must be set when "
                     "tiers.nvme.dir is");
            return -EINVAL;
        }
        if (c->nvme_bytes > (uint64_t)st.f_bavail * st.f_frsize) {
            snprintf(err, errlen,
                     "tiers.nvme.bytes (%" PRIu64 ") exceeds "
                     "the free space in %s (%" PRIu64 ")",
                     c->nvme_bytes, c->nvme_dir,
                     (uint64_t)st.f_bavail * st.f_frsize);
            return -EINVAL;
        }
    } else if (c->nvme_bytes) {
        snprintf(err, errlen,
                 "tiers.nvme.bytes is set but tiers.nvme.dir "
                 "is not");
        return -EINVAL;
    }
    if (strcmp(c->data_transports, "auto") &&
        strcmp(c->data_transports, "tcp") &&
        strcmp(c->data_transports, "verbs") &&
        strcmp(c->data_transports, "off")) {
        snprintf(err, errlen,
                 "data.transports: '%s' is not auto, tcp, verbs or off",
                 c->data_transports);
        return -EINVAL;
    }
    if (strlen(c->data_address) > 255 || !label_ok(c->data_address)) {
        snprintf(err, errlen, "data.address: bad address '%s'",
                 c->data_address);
        return -EINVAL;
    }
    {
        char addrs[AGENT_TRANSPORT_MAX_NICS][AGENT_DATA_ADDR_LEN];

        if (agent_config_data_addresses(c, addrs, AGENT_TRANSPORT_MAX_NICS,
                                        err, errlen) < 0) {
            return -EINVAL;
        }
    }
    {
        int64_t gid;

        if (agent_config_api_gid(c, &gid, err, errlen)) {
            return -EINVAL;
        }
    }
    return mcos_etcd_config_check(c->etcd_endpoints, c->etcd_cacert,
                                  c->etcd_cert, c->etcd_key, err, errlen);
}

void
agent_brain_list_free(char **list, size_t n)
{
    for (size_t i = 0; list && i < n; i++) {
        free(list[i]);
    }
    free(list);
}

int
agent_brain_list(const char *text, char ***out, size_t *n, char *err,
                 size_t errlen)
{
    static const char *const bus_schemes[] = {"tcp", "ipc", NULL};
    char *copy = strdup(text ? text : ""), *save = NULL, *tok;
    char **list = NULL, **grown;
    size_t k = 0;
    int r = 0;

    if (!copy) {
        return -ENOMEM;
    }
    for (tok = strtok_r(copy, ",", &save); tok && r == 0;
         tok = strtok_r(NULL, ",", &save)) {
        if (k == 16) {
            snprintf(err, errlen, "brain: more than 16 brains listed");
            r = -EINVAL;
        } else if (mcos_check_url("brain", tok, bus_schemes, err, errlen)) {
            r = -EINVAL;
        } else if (!(grown = realloc(list, (k + 1) * sizeof *list)) ||
                   !((list = grown)[k] = strdup(tok))) {
            r = -ENOMEM;
        } else {
            k++;
        }
    }
    free(copy);
    if (r == 0 && k == 0) {
        snprintf(err, errlen, "brain: no brain URL given");
        r = -EINVAL;
    }
    if (r) {
        agent_brain_list_free(list, k);
        return r;
    }
    *out = list;
    *n = k;
    return 0;
}

static bool
numeric_ip(const char *s)
{
    unsigned char buf[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

int
agent_config_data_addresses(const struct agent_config *c,
                            char (*out)[AGENT_DATA_ADDR_LEN], size_t max,
                            char *err, size_t errlen)
{
    const char *p = c->data_addresses ? c->data_addresses : "";
    size_t n = 0;

    if (!*p) {
        return 0;
    }
    for (;;) {
        size_t len = strcspn(p, ",");

        if (len == 0) {
            snprintf(err, errlen, "data.addresses: empty entry in '%s'",
                     c->data_addresses);
            return -EINVAL;
        }
        if (n == max) {
            snprintf(err, errlen,
                     "data.addresses: more than %zu addresses in '%s'", max,
                     c->data_addresses);
            return -EINVAL;
        }
        if (len >= AGENT_DATA_ADDR_LEN) {
            snprintf(err, errlen, "data.addresses: entry %zu is too long",
                     n + 1);
            return -EINVAL;
        }
        memcpy(out[n], p, len);
        out[n][len] = '\0';
        if (!numeric_ip(out[n])) {
            snprintf(err, errlen,
                     "data.addresses: '%s' is not a numeric IP address",
                     out[n]);
            return -EINVAL;
        }
        for (size_t i = 0; i < n; i++) {
            if (!strcmp(out[i], out[n])) {
                snprintf(err, errlen, "data.addresses: %s is listed twice",
                         out[n]);
                return -EINVAL;
            }
        }
        n++;
        p += len;
        if (!*p) {
            break;
        }
        p++;
    }
    if (*c->data_address && strcmp(c->data_address, out[0])) {
        snprintf(err, errlen,
                 "data.addresses: the first address must be data.address "
                 "(%s), not %s",
                 c->data_address, out[0]);
        return -EINVAL;
    }
    if (n > 1 && strcmp(c->data_transports, "auto") &&
        strcmp(c->data_transports, "verbs")) {
        snprintf(err, errlen,
                 "data.addresses: %zu NICs need the verbs transport, but "
                 "data.transports is %s",
                 n, c->data_transports);
        return -EINVAL;
    }
    return (int)n;
}
