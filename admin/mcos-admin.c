/*
 * mcos-admin: the operator's command-line tool.  Talks to the brain's
 * HTTP/JSON API; human tables by default, --json for scripts.
 *
 * Exit status: 0 success, 1 runtime error (brain unreachable, an error
 * from the brain), 2 bad usage, 3 timeout (wait).
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "http.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE   2
#define EXIT_TIMEOUT 3

struct opts {
    const char *brain;   /* base URL */
    bool json;           /* machine-readable output */
    unsigned timeout_ms; /* per HTTP request */
};

static void
usage(FILE *f)
{
    fprintf(
        f,
        "usage: mcos-admin [--brain URL] [--json] [--timeout S] COMMAND "
        "[ARGS]\n"
        "\n"
        "Query and steer an MCOS cluster through the brain's HTTP API.\n"
        "\n"
        "Commands:\n"
        "  nodes                   list nodes: state, applied generation, "
        "tiers\n"
        "  node NAME               one node in detail\n"
        "  status                  the brain: role, generation, node counts;\n"
        "                          with etcd: leader, standbys, endpoint "
        "health\n"
        "                          (a standby's status is shown too)\n"
        "  config get [KEY]        the live policy knobs (policy.*, "
        "routing.*)\n"
        "  config set KEY VALUE    validate and store one in etcd; every "
        "brain\n"
        "                          applies it in the next generation\n"
        "  wait --gen N [--timeout S]\n"
        "                          wait until every node that is not failed "
        "runs\n"
        "                          generation N or later (default timeout 30 "
        "s)\n"
        "  sync [--wait] [--recompute]\n"
        "                          compile and push a new generation; with\n"
        "                          --wait, wait for every node to apply it;\n"
        "                          --recompute runs every decide/compile "
        "step\n"
        "                          from scratch (must not change any table)\n"
        "  tables NODE             the node's compiled table (canonical "
        "dump)\n"
        "  replicate NODE OBJECT PEER [--tier hbm|dram|nvme]\n"
        "                          have NODE copy OBJECT (hex id) to PEER's "
        "tier\n"
        "                          (default dram), verified, before demand\n"
        "  replication             the copies of hot prefixes the brain "
        "made,\n"
        "                          their state and why\n"
        "\n"
        "Global options:\n"
        "  --brain URL    the brain's HTTP API [$MCOS_BRAIN, else\n"
        "                 http://127.0.0.1:7651]\n"
        "  --json         print JSON instead of tables\n"
        "  --timeout S    seconds to wait for each HTTP request [5]\n"
        "  --help, --version\n"
        "\n"
        "Exit status: 0 success; 1 the brain is unreachable or answered with "
        "an\n"
        "error; 2 bad usage; 3 a wait timed out.\n");
}

static void die(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

static void
die(int code, const char *fmt, ...)
{
    va_list ap;

    fputs("mcos-admin: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(code);
}

/* Performs a request; returns the parsed JSON body (or NULL for text, in
 * which case *text gets the body).  Exits on transport errors and on
 * error statuses, except a standby's 503 status when `standby_ok`. */
static json_t *
call_full(const struct opts *o, const char *method, const char *path,
          const char *payload, char **text, bool standby_ok)
{
    char url[1024], err[512];
    char *body = NULL;
    size_t len = 0;
    int status = 0;
    json_t *doc;
    json_error_t jerr;
    int r;

    snprintf(url, sizeof url, "%s%s", o->brain, path);
    if (!payload && !strcmp(method, "POST")) {
        payload = "{}";
    }
    r = mcos_http_fetch(method, url, payload, payload ? strlen(payload) : 0,
                        o->timeout_ms, &status, &body, &len, err, sizeof err);
    if (r) {
        die(EXIT_RUNTIME, "cannot reach the brain at %s: %s", o->brain, err);
    }
    if (status == 503 && standby_ok && !text) {
        doc = json_loads(body, 0, &jerr);
        if (doc && json_is_string(json_object_get(doc, "role"))) {
            free(body);
            return doc;
        }
        json_decref(doc);
    }
    if (status >= 400) {
        doc = json_loads(body, 0, &jerr);
        if (doc && json_is_string(json_object_get(doc, "error"))) {
            fprintf(stderr, "mcos-admin: %s (HTTP %d)\n",
                    json_string_value(json_object_get(doc, "error")), status);
        } else {
            fprintf(stderr, "mcos-admin: HTTP %d from %s\n", status, url);
        }
        exit(EXIT_RUNTIME);
    }
    if (text) {
        *text = body;
        return NULL;
    }
    doc = json_loads(body, 0, &jerr);
    if (!doc) {
        die(EXIT_RUNTIME, "the brain sent invalid JSON for %s: %s", path,
            jerr.text);
    }
    free(body);
    return doc;
}

static json_t *
call_with(const struct opts *o, const char *method, const char *path,
          const char *payload, char **text)
{
    return call_full(o, method, path, payload, text, false);
}

static json_t *
call(const struct opts *o, const char *method, const char *path, char **text)
{
    return call_with(o, method, path, NULL, text);
}

/* GETs an absolute URL (an agent's API); returns the HTTP status, the
 * parsed body in *doc (or NULL), or -1 with a message if unreachable. */
static int
get_url(const struct opts *o, const char *url, json_t **doc, char *err,
        size_t errlen)
{
    char *body = NULL;
    size_t len = 0;
    int status = 0;

    *doc = NULL;
    if (mcos_http_fetch("GET", url, NULL, 0, o->timeout_ms, &status, &body,
                        &len, err, errlen)) {
        return -1;
    }
    *doc = json_loads(body, 0, NULL);
    free(body);
    return status;
}

static void
print_json(json_t *doc)
{
    json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
    putchar('\n');
}

static void
human_bytes(uint64_t b, char *out, size_t len)
{
    static const char *const units[] = {"B",   "KiB", "MiB",
                                        "GiB", "TiB", "PiB"};
    double v = (double)b;
    size_t u = 0;

    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    if (u == 0) {
        snprintf(out, len, "%" PRIu64 "B", b);
    } else {
        snprintf(out, len, "%.1f%s", v, units[u]);
    }
}

/* One row per node; columns sized to their widest cell. */
#define N_COLS 7
static void
print_nodes_table(json_t *nodes)
{
    static const char *const head[N_COLS] = {
        "NODE", "STATE", "GEN", "RACK", "ZONE", "LAST-SEEN", "TIERS"};
    size_t n = json_array_size(nodes);
    char ***cells = calloc(n + 1, sizeof *cells);
    size_t width[N_COLS] = {0};

    for (size_t r = 0; r <= n; r++) {
        cells[r] = calloc(N_COLS, sizeof **cells);
    }
    for (int c = 0; c < N_COLS; c++) {
        cells[0][c] = strdup(head[c]);
    }
    for (size_t r = 0; r < n; r++) {
        json_t *node = json_array_get(nodes, r), *t;
        char buf[512] = "", tmp[64], seen[32];
        size_t i;
        const char *rack = json_string_value(json_object_get(node, "rack"));
        const char *zone = json_string_value(json_object_get(node, "zone"));

        json_array_foreach(json_object_get(node, "tiers"), i, t)
        {
            char cap[32];

            if (!json_is_true(json_object_get(t, "available"))) {
                continue;
            }
            human_bytes(
                (uint64_t)json_integer_value(json_object_get(t, "capacity")),
                cap, sizeof cap);
            snprintf(tmp, sizeof tmp, "%s%s:%s%s", *buf ? " " : "",
                     json_string_value(json_object_get(t, "tier")), cap,
                     json_is_true(json_object_get(t, "emulated"))
                         ? "(emulated)"
                         : "");
            strncat(buf, tmp, sizeof buf - strlen(buf) - 1);
        }
        snprintf(seen, sizeof seen, "%.1fs",
                 json_integer_value(json_object_get(node, "last_seen_ms")) /
                     1000.0);
        snprintf(tmp, sizeof tmp, "%" JSON_INTEGER_FORMAT "%s",
                 json_integer_value(json_object_get(node, "applied_gen")),
                 json_is_true(json_object_get(node, "stale")) ? " (stale)"
                                                              : "");
        cells[r + 1][0] =
            strdup(json_string_value(json_object_get(node, "name")));
        cells[r + 1][1] =
            strdup(json_string_value(json_object_get(node, "state")));
        cells[r + 1][2] = strdup(tmp);
        cells[r + 1][3] = strdup(rack && *rack ? rack : "-");
        cells[r + 1][4] = strdup(zone && *zone ? zone : "-");
        cells[r + 1][5] = strdup(seen);
        cells[r + 1][6] = strdup(*buf ? buf : "-");
    }
    for (size_t r = 0; r <= n; r++) {
        for (int c = 0; c < N_COLS; c++) {
            size_t w = strlen(cells[r][c]);

            width[c] = w > width[c] ? w : width[c];
        }
    }
    for (size_t r = 0; r <= n; r++) {
        for (int c = 0; c < N_COLS; c++) {
            if (c == N_COLS - 1) {
                printf("%s\n", cells[r][c]);
            } else {
                printf("%-*s  ", (int)width[c], cells[r][c]);
            }
            free(cells[r][c]);
        }
        free(cells[r]);
    }
    free(cells);
}

static int
cmd_nodes(const struct opts *o)
{
    json_t *doc = call(o, "GET", "/v1/nodes", NULL);

    if (o->json) {
        print_json(doc);
    } else {
        printf("generation %" JSON_INTEGER_FORMAT "\n",
               json_integer_value(json_object_get(doc, "generation")));
        print_nodes_table(json_object_get(doc, "nodes"));
    }
    json_decref(doc);
    return 0;
}

static int
cmd_node(const struct opts *o, const char *name)
{
    char path[256];
    json_t *doc;

    snprintf(path, sizeof path, "/v1/nodes/%s", name);
    doc = call(o, "GET", path, NULL);
    print_json(doc);
    json_decref(doc);
    return 0;
}

/* The leader and standbys, and each etcd endpoint's health (etcd mode). */
static void
print_ha(json_t *doc)
{
    json_t *leader = json_object_get(doc, "leader");
    json_t *etcd = json_object_get(doc, "etcd");
    json_t *v;
    size_t i;

    if (strcmp(json_string_value(json_object_get(doc, "mode")) ?: "",
               "etcd")) {
        return;
    }
    if (json_is_object(leader)) {
        printf("%-16s %s (bus %s, HTTP %s)\n",
               "leader:", json_string_value(json_object_get(leader, "name")),
               json_string_value(json_object_get(leader, "bus")),
               json_string_value(json_object_get(leader, "http")));
    } else {
        printf("%-16s none (election in progress, or etcd unreachable)\n",
               "leader:");
    }
    json_array_foreach(json_object_get(doc, "brains"), i, v)
    {
        if (!strcmp(json_string_value(json_object_get(v, "role")) ?: "",
                    "standby")) {
            printf("%-16s %s (bus %s, HTTP %s)\n",
                   "standby:", json_string_value(json_object_get(v, "name")),
                   json_string_value(json_object_get(v, "bus")) ?: "?",
                   json_string_value(json_object_get(v, "http")) ?: "?");
        }
    }
    json_array_foreach(json_object_get(etcd, "health"), i, v)
    {
        const char *ver = json_string_value(json_object_get(v, "version"));

        if (json_is_true(json_object_get(v, "healthy"))) {
            printf("%-16s %s healthy (etcd %s%s)\n", "etcd endpoint:",
                   json_string_value(json_object_get(v, "endpoint")),
                   ver ? ver : "?",
                   json_is_true(json_object_get(v, "is_leader"))
                       ? ", raft leader"
                       : "");
        } else {
            printf("%-16s %s unhealthy: %s\n", "etcd endpoint:",
                   json_string_value(json_object_get(v, "endpoint")),
                   json_string_value(json_object_get(v, "error")));
        }
    }
}

static int
cmd_status(const struct opts *o)
{
    json_t *doc = call_full(o, "GET", "/v1/status", NULL, NULL, true);
    json_t *nodes = json_object_get(doc, "nodes");
    json_t *etcd = json_object_get(doc, "etcd");
    char etcd_line[512];

    if (json_is_true(json_object_get(etcd, "configured"))) {
        snprintf(etcd_line, sizeof etcd_line, "%s (membership watch %s)",
                 json_string_value(json_object_get(etcd, "endpoints")),
                 json_is_true(json_object_get(etcd, "watching"))
                     ? "up"
                     : "down, retrying");
    } else {
        snprintf(etcd_line, sizeof etcd_line,
                 "not configured (embedded mode)");
    }
    if (o->json) {
        print_json(doc);
    } else {
        printf(
            "%-16s %s\n%-16s %s (%s)\n%-16s %" JSON_INTEGER_FORMAT
            "\n%-16s %s (lowest applied: %" JSON_INTEGER_FORMAT ")\n"
            "%-16s %" JSON_INTEGER_FORMAT " total, %" JSON_INTEGER_FORMAT
            " alive, %" JSON_INTEGER_FORMAT " suspect, %" JSON_INTEGER_FORMAT
            " failed\n%-16s %s\n%-16s %s\n%-16s %s\n",
            "brain:", o->brain,
            "role:", json_string_value(json_object_get(doc, "role")),
            json_string_value(json_object_get(doc, "mode")), "generation:",
            json_integer_value(json_object_get(doc, "generation")),
            "converged:",
            json_is_true(json_object_get(doc, "converged")) ? "yes" : "no",
            json_integer_value(json_object_get(doc, "min_applied_gen")),
            "nodes:", json_integer_value(json_object_get(nodes, "total")),
            json_integer_value(json_object_get(nodes, "alive")),
            json_integer_value(json_object_get(nodes, "suspect")),
            json_integer_value(json_object_get(nodes, "failed")),
            "state dir:", json_string_value(json_object_get(doc, "state_dir")),
            "etcd:", etcd_line,
            "version:", json_string_value(json_object_get(doc, "version")));
        print_ha(doc);
    }
    json_decref(doc);
    return 0;
}

/* config get [KEY] | config set KEY VALUE: the live policy knobs, kept
 * in etcd by the leader (docs/operations.md). */
static int
cmd_config(const struct opts *o, int argc, char **argv)
{
    char path[256], *payload;
    json_t *doc, *v;
    size_t i;

    if (argc >= 1 && !strcmp(argv[0], "get") && argc <= 2) {
        if (argc == 2 && (!*argv[1] || strlen(argv[1]) > 128 ||
                          strchr(argv[1], '/') || strchr(argv[1], '?'))) {
            die(EXIT_USAGE, "config get: bad key '%s'", argv[1]);
        }
        snprintf(path, sizeof path, "/v1/config%s%s", argc == 2 ? "/" : "",
                 argc == 2 ? argv[1] : "");
        doc = call(o, "GET", path, NULL);
        if (o->json) {
            print_json(doc);
        } else if (argc == 2) {
            printf("%s = %s (%s)\n",
                   json_string_value(json_object_get(doc, "key")),
                   json_string_value(json_object_get(doc, "value")),
                   json_string_value(json_object_get(doc, "source")));
        } else {
            json_array_foreach(json_object_get(doc, "keys"), i, v)
            {
                printf("%-32s %-12s %s\n",
                       json_string_value(json_object_get(v, "key")),
                       json_string_value(json_object_get(v, "value")),
                       json_string_value(json_object_get(v, "source")));
            }
        }
        json_decref(doc);
        return 0;
    }
    if (argc >= 1 && !strcmp(argv[0], "set") && argc == 3) {
        if (!*argv[1] || strlen(argv[1]) > 128 || strchr(argv[1], '/') ||
            strchr(argv[1], '?')) {
            die(EXIT_USAGE, "config set: bad key '%s'", argv[1]);
        }
        snprintf(path, sizeof path, "/v1/config/%s", argv[1]);
        v = json_pack("{s:s}", "value", argv[2]);
        payload = v ? json_dumps(v, JSON_COMPACT) : NULL;
        json_decref(v);
        if (!payload) {
            die(EXIT_RUNTIME, "out of memory");
        }
        doc = call_with(o, "PUT", path, payload, NULL);
        free(payload);
        if (o->json) {
            print_json(doc);
        } else {
            printf("%s = %s (stored in etcd; compiled into the next "
                   "generation)\n",
                   json_string_value(json_object_get(doc, "key")),
                   json_string_value(json_object_get(doc, "value")));
        }
        json_decref(doc);
        return 0;
    }
    die(EXIT_USAGE, "config: usage: config get [KEY] | config set KEY VALUE");
}

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Polls /v1/nodes until every node that is not failed runs >= gen. */
static int
wait_gen(const struct opts *o, uint64_t gen, double timeout_s)
{
    double deadline = now_s() + timeout_s;
    char behind[512];

    for (;;) {
        json_t *doc = call(o, "GET", "/v1/nodes", NULL);
        json_t *nodes = json_object_get(doc, "nodes"), *n;
        size_t i, live = 0, ready = 0;

        behind[0] = '\0';
        json_array_foreach(nodes, i, n)
        {
            const char *state = json_string_value(json_object_get(n, "state"));
            uint64_t applied = (uint64_t)json_integer_value(
                json_object_get(n, "applied_gen"));

            if (!strcmp(state, "failed")) {
                continue;
            }
            live++;
            if (applied >= gen) {
                ready++;
            } else if (strlen(behind) < sizeof behind - 80) {
                char tmp[100];

                snprintf(
                    tmp, sizeof tmp, "%s%s at %" PRIu64, *behind ? ", " : "",
                    json_string_value(json_object_get(n, "name")), applied);
                strcat(behind, tmp);
            }
        }
        json_decref(doc);
        if (ready == live) {
            if (o->json) {
                printf("{\"generation\": %" PRIu64 ", \"nodes\": %zu}\n", gen,
                       live);
            } else {
                printf("all %zu live nodes run generation >= %" PRIu64 "\n",
                       live, gen);
            }
            return 0;
        }
        if (now_s() >= deadline) {
            fprintf(stderr,
                    "mcos-admin: timed out after %gs: %zu of %zu live nodes "
                    "run generation >= %" PRIu64 " (%s)\n",
                    timeout_s, ready, live, gen, behind);
            return EXIT_TIMEOUT;
        }
        usleep(100000);
    }
}

static int
cmd_wait(const struct opts *o, int argc, char **argv)
{
    uint64_t gen = 0, timeout_ms = 30000;
    bool have_gen = false;

    for (int i = 0; i < argc; i++) {
        if ((!strcmp(argv[i], "--gen") || !strcmp(argv[i], "--timeout")) &&
            i + 1 == argc) {
            die(EXIT_USAGE, "wait: option '%s' needs a value", argv[i]);
        } else if (!strcmp(argv[i], "--gen")) {
            if (mcos_parse_uint(argv[++i], &gen)) {
                die(EXIT_USAGE,
                    "wait: --gen takes a generation number, "
                    "got '%s'",
                    argv[i]);
            }
            have_gen = true;
        } else if (!strcmp(argv[i], "--timeout")) {
            uint64_t s;

            if (mcos_parse_uint(argv[++i], &s) || s == 0 || s > 86400) {
                die(EXIT_USAGE,
                    "wait: --timeout takes seconds from 1 to "
                    "86400, got '%s'",
                    argv[i]);
            }
            timeout_ms = s * 1000;
        } else {
            die(EXIT_USAGE,
                "wait: unexpected argument '%s' (usage: wait "
                "--gen N [--timeout S])",
                argv[i]);
        }
    }
    if (!have_gen) {
        die(EXIT_USAGE, "wait: --gen N is required");
    }
    return wait_gen(o, gen, timeout_ms / 1000.0);
}

static int
cmd_sync(const struct opts *o, int argc, char **argv)
{
    bool wait = false, recompute = false;
    json_t *doc;
    uint64_t gen;

    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--wait")) {
            wait = true;
        } else if (!strcmp(argv[i], "--recompute")) {
            recompute = true;
        } else {
            die(EXIT_USAGE, "sync: unexpected argument '%s'", argv[i]);
        }
    }
    doc =
        call(o, "POST", recompute ? "/v1/sync?recompute=1" : "/v1/sync", NULL);
    gen = (uint64_t)json_integer_value(json_object_get(doc, "generation"));
    json_decref(doc);
    if (!o->json) {
        printf("generation %" PRIu64 " published\n", gen);
    } else if (!wait) {
        printf("{\"generation\": %" PRIu64 "}\n", gen);
    }
    return wait ? wait_gen(o, gen, 30) : 0;
}

/* replicate NODE OBJECT PEER [--tier T]: a replication task. */
static int
cmd_replicate(const struct opts *o, int argc, char **argv)
{
    const char *tier = "dram";
    json_t *body, *doc;
    char *text;

    if (argc != 3 && !(argc == 5 && !strcmp(argv[3], "--tier"))) {
        die(EXIT_USAGE, "replicate: usage: replicate NODE OBJECT PEER "
                        "[--tier hbm|dram|nvme]");
    }
    if (argc == 5) {
        tier = argv[4];
    }
    body = json_pack("{s:s, s:s, s:s, s:s}", "node", argv[0], "object",
                     argv[1], "peer", argv[2], "tier", tier);
    text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    doc = call_with(o, "POST", "/v1/replicate", text, NULL);
    free(text);
    if (o->json) {
        print_json(doc);
    } else {
        printf(
            "replicate %s from %s to %s (%s): in generation %" PRIu64 "\n",
            json_string_value(json_object_get(doc, "object")), argv[0],
            argv[2], json_string_value(json_object_get(doc, "tier")),
            (uint64_t)json_integer_value(json_object_get(doc, "generation")));
    }
    json_decref(doc);
    return 0;
}

/* replication: the brain's copies of hot prefixes. */
static int
cmd_replication(const struct opts *o)
{
    json_t *doc = call(o, "GET", "/v1/replication", NULL);
    json_t *list = json_object_get(doc, "replicas"), *r;
    size_t i;

    if (o->json) {
        print_json(doc);
        json_decref(doc);
        return 0;
    }
    printf("%-16s %-10s %-10s %-10s %-9s %5s  %s\n", "OBJECT", "NS", "FROM",
           "TO", "STATE", "HITS", "WHY");
    json_array_foreach(list, i, r)
    {
        printf("%-16s %-10s %-10s %-10s %-9s %5d  %s\n",
               json_string_value(json_object_get(r, "object")),
               json_string_value(json_object_get(r, "ns")),
               json_string_value(json_object_get(r, "source")),
               json_string_value(json_object_get(r, "target")),
               json_string_value(json_object_get(r, "state")),
               (int)json_integer_value(json_object_get(r, "hits")),
               json_string_value(json_object_get(r, "why")));
    }
    if (json_array_size(list) == 0) {
        printf("(no copies)\n");
    }
    json_decref(doc);
    return 0;
}

static int
cmd_tables(const struct opts *o, const char *node)
{
    char path[256];
    char *text = NULL;

    snprintf(path, sizeof path, "/v1/nodes/%s/table", node);
    call(o, "GET", path, &text);
    if (o->json) {
        json_t *doc = json_pack("{s:s, s:s}", "node", node, "table", text);

        print_json(doc);
        json_decref(doc);
    } else {
        fputs(text, stdout);
    }
    free(text);
    return 0;
}

static const char *
str(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));

    return v ? v : "-";
}

static json_int_t
num(json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

static void
print_objects(json_t *list, bool with_node)
{
    size_t i;
    json_t *ob;

    printf("%s%-16s  %-6s  %-8s  %10s  %-12s  %7s  %4s  %11s\n",
           with_node ? "NODE              " : "", "ID", "TIER", "STATE",
           "SIZE", "CLASS", "HOTNESS", "PINS", "HITS/MISSES");
    json_array_foreach(list, i, ob)
    {
        char size[32], tier[32], hm[40];

        human_bytes((uint64_t)num(ob, "size"), size, sizeof size);
        snprintf(tier, sizeof tier, "%s%s", str(ob, "tier"),
                 json_is_true(json_object_get(ob, "emulated")) ? "*" : "");
        snprintf(hm, sizeof hm,
                 "%" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT,
                 num(ob, "hits"), num(ob, "misses"));
        if (with_node) {
            printf("%-16s  ", str(ob, "node"));
        }
        printf("%-16s  %-6s  %-8s  %10s  %-12s  %7.3f  %4" JSON_INTEGER_FORMAT
               "  %11s\n",
               str(ob, "id"), tier, str(ob, "state"), size, str(ob, "class"),
               json_number_value(json_object_get(ob, "hotness")),
               num(ob, "pins"), hm);
    }
}

/* The node's agent API URL, from the brain. */
static char *
agent_url(const struct opts *o, const char *node)
{
    char path[256];
    json_t *doc;
    const char *u;
    char *url;

    snprintf(path, sizeof path, "/v1/nodes/%s", node);
    doc = call(o, "GET", path, NULL);
    u = json_string_value(json_object_get(doc, "http_url"));
    if (!u || !*u) {
        die(EXIT_RUNTIME,
            "node %s has no HTTP API (its agent runs with "
            "--http \"\")",
            node);
    }
    url = strdup(u);
    json_decref(doc);
    return url;
}

static int
cmd_objects(const struct opts *o, int argc, char **argv)
{
    const char *node = NULL;
    uint64_t limit = 1000;
    char *base, url[512], err[512];
    json_t *doc;
    int status;

    for (int i = 0; i < argc; i++) {
        if ((!strcmp(argv[i], "--node") || !strcmp(argv[i], "--limit")) &&
            i + 1 == argc) {
            die(EXIT_USAGE, "objects: option '%s' needs a value", argv[i]);
        } else if (!strcmp(argv[i], "--node")) {
            node = argv[++i];
        } else if (!strcmp(argv[i], "--limit")) {
            if (mcos_parse_uint(argv[++i], &limit) || limit == 0) {
                die(EXIT_USAGE,
                    "objects: --limit takes a positive number, "
                    "got '%s'",
                    argv[i]);
            }
        } else {
            die(EXIT_USAGE,
                "objects: unexpected argument '%s' (usage: "
                "objects --node NODE [--limit N])",
                argv[i]);
        }
    }
    if (!node) {
        die(EXIT_USAGE, "objects: --node NODE is required");
    }
    base = agent_url(o, node);
    snprintf(url, sizeof url, "%s/v1/objects?limit=%" PRIu64, base, limit);
    status = get_url(o, url, &doc, err, sizeof err);
    if (status != 200 || !doc) {
        die(EXIT_RUNTIME, "cannot list the objects of node %s at %s: %s", node,
            base, status < 0 ? err : "bad answer");
    }
    free(base);
    if (o->json) {
        print_json(doc);
    } else {
        printf("node %s: %" JSON_INTEGER_FORMAT " objects%s\n", node,
               num(doc, "total"),
               (size_t)num(doc, "total") >
                       json_array_size(json_object_get(doc, "objects"))
                   ? " (listing truncated, see --limit)"
                   : "");
        print_objects(json_object_get(doc, "objects"), false);
        printf("(* emulated tier)\n");
    }
    json_decref(doc);
    return 0;
}

static int
cmd_object(const struct opts *o, const char *idtext)
{
    json_t *nodes = call(o, "GET", "/v1/nodes", NULL), *n;
    json_t *found = json_array();
    char *end;
    uint64_t id;
    size_t i;

    errno = 0;
    id = strtoull(idtext, &end, 16);
    if (errno || *end || !*idtext || strlen(idtext) > 16 || id == 0) {
        die(EXIT_USAGE,
            "object: bad id '%s' (want up to 16 hex digits, "
            "not 0)",
            idtext);
    }
    json_array_foreach(json_object_get(nodes, "nodes"), i, n)
    {
        const char *base = json_string_value(json_object_get(n, "http_url"));
        char url[512], err[512];
        json_t *doc;
        int status;

        if (!strcmp(str(n, "state"), "failed") || !base || !*base) {
            continue;
        }
        snprintf(url, sizeof url, "%s/v1/objects/%016" PRIx64, base, id);
        status = get_url(o, url, &doc, err, sizeof err);
        if (status == 200 && doc) {
            json_array_append_new(found, doc);
        } else {
            if (status < 0) {
                fprintf(stderr, "mcos-admin: node %s not asked: %s\n",
                        str(n, "name"), err);
            }
            json_decref(doc);
        }
    }
    json_decref(nodes);
    if (json_array_size(found) == 0) {
        json_decref(found);
        die(EXIT_RUNTIME, "object %016" PRIx64 " is not on any live node", id);
    }
    if (o->json) {
        print_json(found);
    } else {
        print_objects(found, true);
    }
    json_decref(found);
    return 0;
}

static int
cmd_route(const struct opts *o, int argc, char **argv)
{
    const char *ns = NULL, *rack = NULL, *hashes = NULL;
    bool explain = false;
    json_t *body = json_object(), *blocks = json_array(), *doc, *r;
    char url[1024], err[512], *text, *resp = NULL, *copy, *save = NULL;
    int status = 0;
    size_t i;

    for (int k = 0; k < argc; k++) {
        if ((!strcmp(argv[k], "--ns") || !strcmp(argv[k], "--rack")) &&
            k + 1 == argc) {
            die(EXIT_USAGE, "route: option '%s' needs a value", argv[k]);
        } else if (!strcmp(argv[k], "--ns")) {
            ns = argv[++k];
        } else if (!strcmp(argv[k], "--rack")) {
            rack = argv[++k];
        } else if (!strcmp(argv[k], "--explain")) {
            explain = true;
        } else if (!hashes && strncmp(argv[k], "--", 2)) {
            hashes = argv[k];
        } else {
            die(EXIT_USAGE,
                "route: unexpected argument '%s' (usage: route "
                "[--explain] [--ns NS] [--rack R] HASH,HASH,...)",
                argv[k]);
        }
    }
    if (!hashes) {
        die(EXIT_USAGE, "route: a comma-separated list of block hashes is "
                        "required");
    }
    copy = strdup(hashes);
    for (char *t = strtok_r(copy, ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
        json_array_append_new(blocks, json_string(t));
    }
    free(copy);
    json_object_set_new(body, "blocks", blocks);
    if (ns) {
        json_object_set_new(body, "ns", json_string(ns));
    }
    if (rack) {
        json_object_set_new(body, "rack", json_string(rack));
    }
    text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    snprintf(url, sizeof url, "%s/v1/route", o->brain);
    if (mcos_http_fetch("POST", url, text, strlen(text), o->timeout_ms,
                        &status, &resp, NULL, err, sizeof err)) {
        die(EXIT_RUNTIME, "cannot reach the brain at %s: %s", o->brain, err);
    }
    free(text);
    doc = json_loads(resp, 0, NULL);
    free(resp);
    if (!doc) {
        die(EXIT_RUNTIME, "the brain sent invalid JSON for /v1/route");
    }
    if (status >= 400) {
        fprintf(stderr, "mcos-admin: %s (HTTP %d)\n", str(doc, "error"),
                status);
        json_decref(doc);
        return EXIT_RUNTIME;
    }
    if (o->json) {
        print_json(doc);
    } else if (!explain) {
        printf("%s\n", str(doc, "node"));
    } else {
        printf("route to %s\n  why: %s\n  replication: %s\n", str(doc, "node"),
               str(doc, "explain"), str(doc, "replication"));
        printf("  %-16s %8s %8s %8s %8s %8s %6s  %s\n", "NODE", "COST",
               "PREFILL", "FETCH", "LOAD", "RACK", "MATCH", "");
        json_array_foreach(json_object_get(doc, "ranked"), i, r)
        {
            json_t *m = json_object_get(r, "matched");

            printf(
                "  %-16s %8.2f %8.0f %8.2f %8.2f %8.2f %6" JSON_INTEGER_FORMAT
                "  %s\n",
                str(r, "node"), json_number_value(json_object_get(r, "cost")),
                json_number_value(json_object_get(r, "prefill_blocks")),
                json_number_value(json_object_get(r, "fetch")),
                json_number_value(json_object_get(r, "load_cost")),
                json_number_value(json_object_get(r, "topology")),
                num(m, "total"),
                json_is_true(json_object_get(r, "over_bound"))
                    ? "(over the load bound)"
                    : "");
        }
    }
    json_decref(doc);
    return 0;
}

int
main(int argc, char **argv)
{
    struct opts o = {NULL, false, 5000};
    const char *env = getenv("MCOS_BRAIN");
    int i;

    o.brain = env && *env ? env : "http://127.0.0.1:7651";
    for (i = 1; i < argc && !strncmp(argv[i], "--", 2); i++) {
        if (!strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--version")) {
            printf("mcos-admin %s\n", MCOS_VERSION);
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            o.json = true;
        } else if ((!strcmp(argv[i], "--brain") ||
                    !strcmp(argv[i], "--timeout")) &&
                   i + 1 == argc) {
            die(EXIT_USAGE, "option '%s' needs a value", argv[i]);
        } else if (!strcmp(argv[i], "--brain")) {
            o.brain = argv[++i];
        } else if (!strcmp(argv[i], "--timeout")) {
            uint64_t s;

            if (mcos_parse_uint(argv[++i], &s) || s == 0 || s > 3600) {
                die(EXIT_USAGE,
                    "--timeout takes seconds from 1 to 3600, "
                    "got '%s'",
                    argv[i]);
            }
            o.timeout_ms = (unsigned)(s * 1000);
        } else {
            die(EXIT_USAGE, "unknown option '%s' (see --help)", argv[i]);
        }
    }
    if (strncmp(o.brain, "http://", 7)) {
        die(EXIT_USAGE, "--brain must be an http:// URL, got '%s'", o.brain);
    }
    if (i == argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[i++];
    int rest = argc - i;
    char **args = argv + i;

    if (!strcmp(cmd, "nodes") && rest == 0) {
        return cmd_nodes(&o);
    } else if (!strcmp(cmd, "node") && rest == 1) {
        return cmd_node(&o, args[0]);
    } else if (!strcmp(cmd, "status") && rest == 0) {
        return cmd_status(&o);
    } else if (!strcmp(cmd, "wait")) {
        return cmd_wait(&o, rest, args);
    } else if (!strcmp(cmd, "sync")) {
        return cmd_sync(&o, rest, args);
    } else if (!strcmp(cmd, "replication") && rest == 0) {
        return cmd_replication(&o);
    } else if (!strcmp(cmd, "tables") && rest == 1) {
        return cmd_tables(&o, args[0]);
    } else if (!strcmp(cmd, "objects")) {
        return cmd_objects(&o, rest, args);
    } else if (!strcmp(cmd, "object") && rest == 1) {
        return cmd_object(&o, args[0]);
    } else if (!strcmp(cmd, "route")) {
        return cmd_route(&o, rest, args);
    } else if (!strcmp(cmd, "replicate")) {
        return cmd_replicate(&o, rest, args);
    } else if (!strcmp(cmd, "config")) {
        return cmd_config(&o, rest, args);
    }
    if (!strcmp(cmd, "nodes") || !strcmp(cmd, "status") ||
        !strcmp(cmd, "node") || !strcmp(cmd, "tables") ||
        !strcmp(cmd, "object") || !strcmp(cmd, "replication")) {
        die(EXIT_USAGE, "%s: wrong number of arguments (see --help)", cmd);
    }
    die(EXIT_USAGE, "unknown command '%s' (see --help)", cmd);
}
