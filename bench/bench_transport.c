/*
 * bench_transport: the data transports (transport.h) measured across a
 * real link, against plain TCP measured in the same run.
 *
 * A transport is one-sided: a server registers memory and a client READs
 * from and WRITEs into it.  To measure that across a link (a veth pair
 * between two network namespaces, or an rxe link) the two sides run as
 * separate processes:
 *
 *   serve  registers --bytes of memory, writes the region's descriptor to
 *          --region-file and serves until SIGTERM or SIGINT; then prints
 *          its counters (bytes served, refusals, CPU-copied bytes).
 *   run    connects and, for each size, measures (a) bandwidth: --window
 *          operations kept outstanding for --seconds, and (b) latency: one
 *          operation at a time, timed from post to the completion callback
 *          (median and p99).  Before each size it WRITEs a pattern and
 *          READs it back, so a transport that moves the wrong bytes fails
 *          the run instead of producing a number.  It reads the client
 *          transport's counters around each point to report how many
 *          payload bytes it copied with the CPU per byte moved, and the
 *          Gbit moved per CPU-second that this process (and, with
 *          --server-pid, the serve process on this host) used during the
 *          bandwidth point.  The window's ops cover distinct memory,
 *          size x window up to the region, unless --footprint bounds the
 *          memory they cycle through (as iperf3 reuses one buffer).
 *
 * The latency baseline is built in: pingpong-serve / pingpong are plain
 * blocking TCP sockets where the client sends an 8-byte request and the
 * server answers with `size` bytes, the shape of a READ.  The bandwidth
 * baseline is iperf3; scripts/bench-transport runs all of them on the same
 * link and prints the ratios.
 *
 * --quick runs server and client transports in this process over
 * 127.0.0.1 with small sizes and short points: a smoke test that keeps the
 * benchmark building and running.  A transport that cannot run here gives
 * "SKIP: <why>" and exit status 77.
 *
 * Threading: completion callbacks run on the transport's I/O thread; they
 * only record the completion under a mutex and signal the main thread,
 * which does all posting.  The lock is never held across a post, because
 * a backend may complete an op from inside post.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <endian.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "transport.h"

#define PROG "bench_transport"
/* Exit status ctest reads as "skipped". */
#define EXIT_SKIP 77
/* Most sizes one --sizes list may name. */
#define MAX_SIZES 16
/* Largest size an operation or a ping-pong answer may have. */
#define MAX_SIZE (UINT64_C(1) << 30)
/* Latency points take at least this many samples, however slow. */
#define MIN_SAMPLES 5
/* ... and at most this many, however fast. */
#define MAX_SAMPLES 1000000
/* Node name the server answers as. */
#define SERVER_NODE "bench-server"
/* Node name the client connects as, and the server admits, by default. */
#define DEFAULT_NODE "bench-client"

/* --- Small helpers ---------------------------------------------------- */

static void die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

static void
die(const char *fmt, ...)
{
    va_list ap;

    fflush(stdout);
    fprintf(stderr, PROG ": ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static uint64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *
xalloc(uint64_t len)
{
    void *p;

    if (posix_memalign(&p, 4096, (size_t)len))
        die("cannot allocate %llu bytes", (unsigned long long)len);
    /* Touch every page now, not inside a timed point. */
    memset(p, 0, (size_t)len);
    return p;
}

/* "4K", "1M", "3G" when the size is a whole multiple, else bytes. */
static const char *
size_label(uint64_t v, char *buf, size_t len)
{
    static const char units[] = "GMK";

    for (int i = 0; i < 3; i++) {
        uint64_t m = UINT64_C(1) << (10 * (3 - i));

        if (v >= m && v % m == 0) {
            snprintf(buf, len, "%llu%c", (unsigned long long)(v / m),
                     units[i]);
            return buf;
        }
    }
    snprintf(buf, len, "%llu", (unsigned long long)v);
    return buf;
}

/* Decimal bytes with an optional K, M or G (powers of 1024) suffix. */
static int
parse_size(const char *s, uint64_t *out)
{
    unsigned long long v;
    unsigned shift = 0;
    char *end;

    if (!isdigit((unsigned char)s[0]))
        return -EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno)
        return -EINVAL;
    switch (toupper((unsigned char)*end)) {
    case 'K':
        shift = 10;
        break;
    case 'M':
        shift = 20;
        break;
    case 'G':
        shift = 30;
        break;
    case '\0':
        break;
    default:
        return -EINVAL;
    }
    if (shift)
        end++;
    if (*end || v == 0 || v > (UINT64_MAX >> shift))
        return -EINVAL;
    *out = (uint64_t)v << shift;
    return 0;
}

static int
parse_uint(const char *s, unsigned long lo, unsigned long hi,
           unsigned long *out)
{
    unsigned long v;
    char *end;

    if (!isdigit((unsigned char)s[0]))
        return -EINVAL;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -EINVAL;
    *out = v;
    return 0;
}

/* Resolves a name or address to a numeric IPv4/IPv6 string, because the
 * transports take addresses, not host names. */
static void
resolve(const char *what, const char *name, char *out, size_t len)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    int rc;

    rc = getaddrinfo(name, NULL, &hints, &ai);
    if (rc)
        die("%s: cannot resolve \"%s\": %s", what, name, gai_strerror(rc));
    rc = getnameinfo(ai->ai_addr, ai->ai_addrlen, out, (socklen_t)len, NULL, 0,
                     NI_NUMERICHOST);
    freeaddrinfo(ai);
    if (rc)
        die("%s: \"%s\": %s", what, name, gai_strerror(rc));
}

/* Writes text to path through a temporary file and a rename, so that a
 * script waiting for the file never reads half of it. */
static void
write_file_atomic(const char *path, const char *text)
{
    char tmp[4096];
    FILE *f;

    if (snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid()) >=
        (int)sizeof tmp)
        die("%s: path too long", path);
    f = fopen(tmp, "w");
    if (!f)
        die("%s: %s", tmp, strerror(errno));
    fputs(text, f);
    if (fclose(f) != 0)
        die("%s: %s", tmp, strerror(errno));
    if (rename(tmp, path) != 0)
        die("%s: %s", path, strerror(errno));
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted samples, in microseconds. */
static double
percentile_us(const uint64_t *sorted, size_t n, double p)
{
    size_t rank = (size_t)((p / 100.0) * (double)n + 0.999999);

    if (rank == 0)
        rank = 1;
    if (rank > n)
        rank = n;
    return (double)sorted[rank - 1] / 1000.0;
}

/* --- Options ---------------------------------------------------------- */

enum cmd {
    CMD_SERVE = 1 << 0,
    CMD_RUN = 1 << 1,
    CMD_PPSERVE = 1 << 2,
    CMD_PP = 1 << 3,
    CMD_PROBE = 1 << 4,
};

enum opt_id {
    O_TRANSPORT,
    O_LISTEN,
    O_PEER,
    O_PORT,
    O_BYTES,
    O_ADMIT,
    O_NODE,
    O_REGION_FILE,
    O_PORT_FILE,
    O_DEVICE,
    O_SIZES,
    O_OP,
    O_SECONDS,
    O_WINDOW,
    O_CONNS,
    O_SLICE,
    O_FOOTPRINT,
    O_SERVER_PID,
    O_LABEL,
    O_CSV,
    O_QUICK,
};

/* One command-line option and the commands that take it. */
struct optdef {
    const char *name; /* "--sizes" */
    enum opt_id id;   /* what it sets */
    unsigned cmds;    /* enum cmd bits */
    bool has_arg;     /* takes a value */
};

static const struct optdef optdefs[] = {
    {"--transport", O_TRANSPORT, CMD_SERVE | CMD_RUN | CMD_PROBE, true},
    {"--listen", O_LISTEN, CMD_SERVE | CMD_PPSERVE, true},
    {"--peer", O_PEER, CMD_RUN | CMD_PP, true},
    {"--port", O_PORT, CMD_SERVE | CMD_PPSERVE | CMD_PP, true},
    {"--bytes", O_BYTES, CMD_SERVE, true},
    {"--admit", O_ADMIT, CMD_SERVE, true},
    {"--node", O_NODE, CMD_RUN, true},
    {"--region-file", O_REGION_FILE, CMD_SERVE | CMD_RUN, true},
    {"--port-file", O_PORT_FILE, CMD_PPSERVE | CMD_PP, true},
    {"--device", O_DEVICE, CMD_SERVE | CMD_RUN, true},
    {"--sizes", O_SIZES, CMD_RUN | CMD_PP, true},
    {"--op", O_OP, CMD_RUN, true},
    {"--seconds", O_SECONDS, CMD_RUN | CMD_PP, true},
    {"--window", O_WINDOW, CMD_RUN, true},
    {"--conns", O_CONNS, CMD_RUN, true},
    {"--slice", O_SLICE, CMD_RUN, true},
    {"--footprint", O_FOOTPRINT, CMD_RUN, true},
    {"--server-pid", O_SERVER_PID, CMD_RUN, true},
    {"--label", O_LABEL, CMD_RUN, true},
    {"--csv", O_CSV, CMD_RUN | CMD_PP, true},
    {"--quick", O_QUICK, CMD_RUN, false},
};

#define N_OPTDEFS (sizeof(optdefs) / sizeof(optdefs[0]))

enum { OPS_WRITE = 1, OPS_READ = 2 };

/* Everything the command line says. */
struct opts {
    enum cmd cmd;                   /* what to do */
    const char *cmd_name;           /* as typed */
    enum agent_transport_kind kind; /* --transport */
    const char *listen;             /* --listen */
    const char *peer;               /* --peer */
    unsigned port;                  /* --port, 0: any / from a file */
    bool port_set;                  /* --port was given */
    uint64_t bytes;                 /* --bytes */
    const char *admit;              /* --admit */
    const char *node;               /* --node */
    const char *region_file;        /* --region-file */
    const char *port_file;          /* --port-file */
    const char *device;             /* --device */
    uint64_t sizes[MAX_SIZES];      /* --sizes */
    size_t nsizes;                  /* how many */
    bool sizes_set;                 /* --sizes was given */
    unsigned ops;                   /* --op, OPS_* bits */
    double seconds;                 /* --seconds per point */
    bool seconds_set;               /* --seconds was given */
    unsigned window;                /* --window */
    unsigned conns;                 /* --conns, 0: backend default */
    uint64_t slice;                 /* --slice, 0: backend default */
    uint64_t footprint;             /* --footprint, 0: all there is */
    unsigned long server_pid;       /* --server-pid, 0: none */
    const char *label;              /* --label, NULL: the transport's */
    const char *csv;                /* --csv */
    bool quick;                     /* --quick */
};

static void
usage(FILE *f)
{
    fprintf(
        f,
        "usage: " PROG " COMMAND [OPTIONS]\n"
        "       " PROG " --quick       (the same as: run --quick)\n"
        "\n"
        "serve: register memory and serve it until SIGTERM or SIGINT\n"
        "  --transport tcp|verbs  --listen ADDR  [--port P (0: any)]\n"
        "  --bytes N  --admit NAME  --region-file FILE  [--device DEV]\n"
        "\n"
        "run: measure WRITE and READ against a serve process\n"
        "  --transport tcp|verbs  --region-file FILE  [--peer ADDR (default:"
        "\n"
        "  the file's)]  [--node NAME (default " DEFAULT_NODE ")]\n"
        "  [--sizes LIST (default 4K,64K,1M,16M,64M)]  [--op write|read|both]"
        "\n"
        "  [--seconds S per point (default 2)]  [--window W outstanding ops"
        "\n"
        "  (default 16)]  [--conns C sockets (tcp; default: the backend's)]\n"
        "  [--slice N bytes per slice of a large op (4K..1G; default: the\n"
        "   backend's)]\n"
        "  [--footprint N bytes of memory each side's window cycles through\n"
        "   (default: size x window, up to the server's region)]\n"
        "  [--server-pid PID: the serve process on this host; its CPU time\n"
        "   joins ours in the Gbit per CPU-second figure]\n"
        "  [--label NAME for the CSV's transport column (default: the\n"
        "   transport's name)]\n"
        "  [--device DEV]  [--csv FILE (rows are appended)]\n"
        "  [--quick: both sides in this process on 127.0.0.1, sizes 4K,1M,\n"
        "   0.2 s per point; exit 77 with SKIP when the transport cannot "
        "run]\n"
        "\n"
        "pingpong-serve: the latency baseline's server (blocking TCP)\n"
        "  --listen ADDR  [--port P]  [--port-file FILE]\n"
        "pingpong: its client; 8-byte request, SIZE-byte answer\n"
        "  --peer ADDR  --port P | --port-file FILE  [--sizes LIST]\n"
        "  [--seconds S]  [--csv FILE]\n"
        "\n"
        "probe: exit 0 when the transport can run here, else print SKIP\n"
        "  and exit 77\n"
        "  --transport tcp|verbs\n"
        "\n"
        "Sizes are bytes with an optional K, M or G (powers of 1024).  CSV "
        "rows:\n"
        "transport,op,size,gbps,lat_p50_us,lat_p99_us,copies_per_byte,\n"
        "gbit_per_cpu_s (gbps: 10^9 bits/s; size: bytes; copies_per_byte:\n"
        "the client's CPU-copied payload bytes per byte moved;\n"
        "gbit_per_cpu_s: 10^9 bits moved per CPU-second this process, and\n"
        "the --server-pid process, used during the bandwidth point).\n");
}

static void
parse_sizes(struct opts *o, const char *list)
{
    char *copy = strdup(list), *save = NULL, *tok;

    if (!copy)
        die("out of memory");
    o->nsizes = 0;
    for (tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        uint64_t v;

        if (parse_size(tok, &v) < 0)
            die("--sizes: \"%s\" is not a size", tok);
        if (v > MAX_SIZE)
            die("--sizes: %s is more than 1G", tok);
        if (o->nsizes == MAX_SIZES)
            die("--sizes: more than %d sizes", MAX_SIZES);
        o->sizes[o->nsizes++] = v;
    }
    free(copy);
    if (o->nsizes == 0)
        die("--sizes: \"%s\" names no size", list);
}

static void
set_opt(struct opts *o, enum opt_id id, const char *name, const char *v)
{
    unsigned long u;
    char *end;

    switch (id) {
    case O_TRANSPORT:
        if (!strcmp(v, "tcp"))
            o->kind = AGENT_TRANSPORT_TCP;
        else if (!strcmp(v, "verbs"))
            o->kind = AGENT_TRANSPORT_VERBS;
        else
            die("%s: \"%s\" is not tcp or verbs", name, v);
        break;
    case O_LISTEN:
        o->listen = v;
        break;
    case O_PEER:
        o->peer = v;
        break;
    case O_PORT:
        if (parse_uint(v, 0, 65535, &u) < 0)
            die("%s: \"%s\" is not a port (0..65535)", name, v);
        o->port = (unsigned)u;
        o->port_set = true;
        break;
    case O_BYTES:
        if (parse_size(v, &o->bytes) < 0)
            die("%s: \"%s\" is not a size", name, v);
        break;
    case O_ADMIT:
    case O_NODE:
        if (!*v || strlen(v) >= AGENT_TRANSPORT_NODE_MAX)
            die("%s: a node name is 1 to %d bytes", name,
                AGENT_TRANSPORT_NODE_MAX - 1);
        if (id == O_ADMIT)
            o->admit = v;
        else
            o->node = v;
        break;
    case O_REGION_FILE:
        o->region_file = v;
        break;
    case O_PORT_FILE:
        o->port_file = v;
        break;
    case O_DEVICE:
        o->device = v;
        break;
    case O_SIZES:
        parse_sizes(o, v);
        o->sizes_set = true;
        break;
    case O_OP:
        if (!strcmp(v, "write"))
            o->ops = OPS_WRITE;
        else if (!strcmp(v, "read"))
            o->ops = OPS_READ;
        else if (!strcmp(v, "both"))
            o->ops = OPS_WRITE | OPS_READ;
        else
            die("%s: \"%s\" is not write, read or both", name, v);
        break;
    case O_SECONDS:
        errno = 0;
        o->seconds = strtod(v, &end);
        if (errno || end == v || *end || !(o->seconds > 0) ||
            o->seconds > 3600)
            die("%s: \"%s\" is not a number of seconds in (0, 3600]", name, v);
        o->seconds_set = true;
        break;
    case O_WINDOW:
        if (parse_uint(v, 1, 1024, &u) < 0)
            die("%s: \"%s\" is not a count from 1 to 1024", name, v);
        o->window = (unsigned)u;
        break;
    case O_CONNS:
        if (parse_uint(v, 1, 64, &u) < 0)
            die("%s: \"%s\" is not a count from 1 to 64", name, v);
        o->conns = (unsigned)u;
        break;
    case O_SLICE:
        if (parse_size(v, &o->slice) < 0 || o->slice < 4096 ||
            o->slice > MAX_SIZE)
            die("%s: \"%s\" is not a size from 4K to 1G", name, v);
        break;
    case O_FOOTPRINT:
        if (parse_size(v, &o->footprint) < 0 || o->footprint == 0)
            die("%s: \"%s\" is not a size of at least 1 byte", name, v);
        break;
    case O_SERVER_PID:
        if (parse_uint(v, 1, 4194304, &u) < 0)
            die("%s: \"%s\" is not a process id from 1 to 4194304", name, v);
        o->server_pid = u;
        break;
    case O_LABEL:
        if (!*v || strlen(v) > 32 ||
            strspn(v, "abcdefghijklmnopqrstuvwxyz"
                      "0123456789-") != strlen(v))
            die("%s: \"%s\" is not 1 to 32 of a-z, 0-9 and -", name, v);
        o->label = v;
        break;
    case O_CSV:
        o->csv = v;
        break;
    case O_QUICK:
        o->quick = true;
        break;
    }
}

static void
parse_args(int argc, char **argv, struct opts *o)
{
    static const struct {
        const char *name;
        enum cmd cmd;
    } cmds[] = {{"serve", CMD_SERVE},
                {"run", CMD_RUN},
                {"pingpong-serve", CMD_PPSERVE},
                {"pingpong", CMD_PP},
                {"probe", CMD_PROBE}};
    int a = 2;

    memset(o, 0, sizeof *o);
    o->kind = AGENT_TRANSPORT_TCP;
    o->node = DEFAULT_NODE;
    o->admit = NULL;
    o->ops = OPS_WRITE | OPS_READ;
    o->seconds = 2.0;
    o->window = 16;
    parse_sizes(o, "4K,64K,1M,16M,64M");

    if (argc < 2) {
        usage(stderr);
        exit(2);
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        exit(0);
    }
    if (!strcmp(argv[1], "--quick")) {
        o->cmd = CMD_RUN;
        o->cmd_name = "run";
        a = 1;
    } else {
        for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
            if (!strcmp(argv[1], cmds[i].name)) {
                o->cmd = cmds[i].cmd;
                o->cmd_name = cmds[i].name;
            }
        if (!o->cmd_name) {
            fprintf(stderr, PROG ": unknown command \"%s\"\n", argv[1]);
            usage(stderr);
            exit(2);
        }
    }
    for (; a < argc; a++) {
        const struct optdef *d = NULL;

        if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h")) {
            usage(stdout);
            exit(0);
        }
        for (size_t i = 0; i < N_OPTDEFS; i++)
            if (!strcmp(argv[a], optdefs[i].name))
                d = &optdefs[i];
        if (!d)
            die("unknown argument \"%s\" (see --help)", argv[a]);
        if (!(d->cmds & o->cmd))
            die("%s is not an option of %s (see --help)", d->name,
                o->cmd_name);
        if (d->has_arg && a + 1 >= argc)
            die("%s needs a value", d->name);
        set_opt(o, d->id, d->name, d->has_arg ? argv[++a] : NULL);
    }
}

/* Checks the options each command requires and that fit together. */
static void
check_args(struct opts *o)
{
    switch (o->cmd) {
    case CMD_SERVE:
        if (!o->listen || !*o->listen)
            die("serve: --listen ADDR is required");
        if (!o->bytes)
            die("serve: --bytes N is required");
        if (!o->admit)
            die("serve: --admit NAME is required");
        if (!o->region_file)
            die("serve: --region-file FILE is required");
        break;
    case CMD_RUN:
        if (o->quick) {
            if (o->peer || o->region_file)
                die("run --quick runs both sides in this process; drop "
                    "--peer and --region-file");
            if (!o->seconds_set)
                o->seconds = 0.2;
            if (!o->sizes_set)
                parse_sizes(o, "4K,1M");
            break;
        }
        if (!o->region_file)
            die("run: --region-file FILE is required (the one serve "
                "wrote)");
        break;
    case CMD_PPSERVE:
        if (!o->listen || !*o->listen)
            die("pingpong-serve: --listen ADDR is required");
        break;
    case CMD_PP:
        if (!o->peer || !*o->peer)
            die("pingpong: --peer ADDR is required");
        if (!o->port_set && !o->port_file)
            die("pingpong: --port P or --port-file FILE is required");
        if (o->port_set && o->port == 0)
            die("pingpong: --port 0 is not a port to connect to");
        break;
    case CMD_PROBE:
        break;
    }
}

/* --- The region file -------------------------------------------------- */

/* What serve tells run. */
struct region_info {
    enum agent_transport_kind kind;       /* transport serving it */
    char address[128];                    /* where it listens */
    unsigned port;                        /* its port */
    struct agent_transport_region region; /* the descriptor */
};

static void
write_region_file(const char *path, const struct region_info *ri)
{
    char text[1024];

    snprintf(text, sizeof text,
             "# " PROG " serve: the region a run may READ and WRITE\n"
             "transport %s\n"
             "node " SERVER_NODE "\n"
             "address %s\n"
             "port %u\n"
             "region %u 0x%llx %llu 0x%llx\n",
             agent_transport_kind_name(ri->kind), ri->address, ri->port,
             ri->region.id, (unsigned long long)ri->region.addr,
             (unsigned long long)ri->region.len,
             (unsigned long long)ri->region.key);
    write_file_atomic(path, text);
}

/* " ID ADDR LEN KEY\n": decimal or 0x-prefixed numbers.  strtoull, not
 * sscanf's %lli, because a key may use all 64 bits. */
static int
parse_region(const char *s, struct agent_transport_region *out)
{
    unsigned long long v[4];
    char *end;

    for (int i = 0; i < 4; i++) {
        while (*s == ' ' || *s == '\t')
            s++;
        if (!isdigit((unsigned char)*s))
            return -EINVAL;
        errno = 0;
        v[i] = strtoull(s, &end, 0);
        if (errno || end == s)
            return -EINVAL;
        s = end;
    }
    while (isspace((unsigned char)*s))
        s++;
    if (*s || v[0] == 0 || v[0] > UINT32_MAX || v[2] == 0)
        return -EINVAL;
    out->id = (uint32_t)v[0];
    out->addr = v[1];
    out->len = v[2];
    out->key = v[3];
    return 0;
}

static void
read_region_file(const char *path, struct region_info *ri)
{
    bool have_port = false, have_region = false, have_kind = false;
    char line[512], word[32], val[128];
    unsigned lineno = 0;
    FILE *f;

    memset(ri, 0, sizeof *ri);
    f = fopen(path, "r");
    if (!f)
        die("--region-file %s: %s", path, strerror(errno));
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (sscanf(line, "%31s %127s", word, val) != 2)
            die("%s:%u: expected \"KEY VALUE\"", path, lineno);
        if (!strcmp(word, "transport")) {
            if (!strcmp(val, "tcp"))
                ri->kind = AGENT_TRANSPORT_TCP;
            else if (!strcmp(val, "verbs"))
                ri->kind = AGENT_TRANSPORT_VERBS;
            else
                die("%s:%u: unknown transport \"%s\"", path, lineno, val);
            have_kind = true;
        } else if (!strcmp(word, "address")) {
            snprintf(ri->address, sizeof ri->address, "%s", val);
        } else if (!strcmp(word, "port")) {
            unsigned long p;

            if (parse_uint(val, 1, 65535, &p) < 0)
                die("%s:%u: \"%s\" is not a port", path, lineno, val);
            ri->port = (unsigned)p;
            have_port = true;
        } else if (!strcmp(word, "region")) {
            if (parse_region(line + strlen("region"), &ri->region) < 0)
                die("%s:%u: expected \"region ID ADDR LEN KEY\"", path,
                    lineno);
            have_region = true;
        }
        /* Other keys (node) are informative. */
    }
    fclose(f);
    if (!have_kind || !have_port || !have_region)
        die("%s: needs transport, port and region lines (was it written "
            "by " PROG " serve?)",
            path);
}

/* --- Serve ------------------------------------------------------------ */

static bool
admit_one(void *arg, const char *node, uint64_t boot_id, char *why,
          size_t whylen)
{
    const char *want = arg;

    (void)boot_id;
    if (!strcmp(node, want))
        return true;
    snprintf(why, whylen, "node \"%s\" is not admitted here (only \"%s\")",
             node, want);
    return false;
}

static uint64_t
boot_id_new(void)
{
    return now_ns() ^ ((uint64_t)getpid() << 40) ^ 0x6d636f73u;
}

/* Creates a transport, turning "cannot run here" into a SKIP. */
static struct agent_transport *
create_or_skip(enum agent_transport_kind kind,
               const struct agent_transport_config *cfg)
{
    struct agent_transport *t;
    char err[256];
    int rc;

    if (!agent_transport_available(kind, err, sizeof err)) {
        printf("SKIP: %s: %s\n", agent_transport_kind_name(kind), err);
        exit(EXIT_SKIP);
    }
    rc = agent_transport_create(kind, cfg, &t, err, sizeof err);
    if (rc == -EOPNOTSUPP) {
        printf("SKIP: %s: %s\n", agent_transport_kind_name(kind), err);
        exit(EXIT_SKIP);
    }
    if (rc < 0)
        die("creating the %s transport: %s (%s)",
            agent_transport_kind_name(kind), err, strerror(-rc));
    return t;
}

static void
print_stats(const char *who, const struct agent_transport_stats *st)
{
    uint64_t moved = st->bytes_read + st->bytes_written + st->bytes_served;

    printf("%s: ops %llu, op_errors %llu, bytes_read %llu, bytes_written "
           "%llu, bytes_served %llu, refused %llu, connects %llu, "
           "connect_errors %llu, cpu_copy_bytes %llu (%.3f per byte "
           "moved)\n",
           who, (unsigned long long)st->ops, (unsigned long long)st->op_errors,
           (unsigned long long)st->bytes_read,
           (unsigned long long)st->bytes_written,
           (unsigned long long)st->bytes_served,
           (unsigned long long)st->refused, (unsigned long long)st->connects,
           (unsigned long long)st->connect_errors,
           (unsigned long long)st->cpu_copy_bytes,
           moved ? (double)st->cpu_copy_bytes / (double)moved : 0.0);
}

static int
cmd_serve(const struct opts *o)
{
    struct agent_transport_config cfg = {0};
    struct agent_transport_stats st;
    struct agent_transport *t;
    struct region_info ri = {.kind = o->kind};
    char err[256], addr[128], lbl[32];
    sigset_t sigs;
    uint8_t *buf;
    int rc, sig;

    resolve("--listen", o->listen, addr, sizeof addr);
    /* Blocked before the transport starts its thread, so that thread
     * inherits the mask and sigwait below gets the signal. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    cfg.node = SERVER_NODE;
    cfg.boot_id = boot_id_new();
    cfg.address = addr;
    cfg.port = (uint16_t)o->port;
    cfg.device = o->device;
    cfg.admit = admit_one;
    cfg.admit_arg = (void *)o->admit;
    t = create_or_skip(o->kind, &cfg);

    buf = xalloc(o->bytes);
    rc = agent_transport_register(t, buf, o->bytes, &ri.region, err,
                                  sizeof err);
    if (rc < 0)
        die("registering %llu bytes: %s (%s)", (unsigned long long)o->bytes,
            err, strerror(-rc));
    snprintf(ri.address, sizeof ri.address, "%s", addr);
    ri.port = agent_transport_port(t);
    write_region_file(o->region_file, &ri);
    printf("serve: %s on %s port %u, region %u of %s, admitting \"%s\"; "
           "descriptor in %s\n",
           agent_transport_name(t), addr, ri.port, ri.region.id,
           size_label(o->bytes, lbl, sizeof lbl), o->admit, o->region_file);
    fflush(stdout);

    if (sigwait(&sigs, &sig) != 0)
        die("sigwait failed");
    agent_transport_stats(t, &st);
    print_stats("serve", &st);
    (void)unlink(o->region_file);
    agent_transport_destroy(t);
    free(buf);
    return 0;
}

/* --- Run: the measuring client ---------------------------------------- */

/* No completion for this long means the link or the server is gone. */
#define STALL_S 30

struct bench;

/* One operation the window reposts. */
struct slot {
    struct agent_transport_op op; /* the operation */
    struct bench *b;              /* for the callback */
    uint64_t posted_ns;           /* when it was last posted */
    uint64_t done_ns;             /* when its callback last ran */
};

/* A client connection being measured. */
struct bench {
    struct agent_transport *t;            /* client transport */
    struct agent_transport_conn *c;       /* to the server */
    struct agent_transport_region remote; /* the server's region */
    uint8_t *local;                       /* registered local buffer */
    uint64_t local_len;                   /* its bytes */
    uint64_t footprint;       /* bytes the window cycles through, 0: all */
    unsigned long server_pid; /* serve process whose CPU counts, 0: none */
    unsigned window;          /* ops outstanding for bw */
    struct slot *slots;       /* window of them */
    struct agent_transport_op **batch;   /* scratch for post */
    struct slot **got;                   /* scratch for collect */
    pthread_mutex_t lock;                /* guards what follows */
    pthread_cond_t cond;                 /* signalled per completion */
    struct slot **ready;                 /* completed, not collected */
    size_t nready;                       /* how many */
    unsigned outstanding;                /* posted, not completed */
    uint64_t bytes;                      /* payload completed fine */
    uint64_t last_done_ns;               /* latest completion */
    int status;                          /* first op error, or 0 */
    char error[AGENT_TRANSPORT_ERR_LEN]; /* its text */
};

static const char *
opcode_name(int opcode)
{
    return opcode == AGENT_TRANSPORT_READ ? "read" : "write";
}

/* Runs on the transport's thread: record, signal, return. */
static void
op_done(struct agent_transport_op *op, void *arg)
{
    struct slot *s = arg;
    struct bench *b = s->b;
    uint64_t t = now_ns();

    pthread_mutex_lock(&b->lock);
    s->done_ns = t;
    if (op->status < 0) {
        if (b->status == 0) {
            b->status = op->status;
            snprintf(b->error, sizeof b->error, "%s", op->error);
        }
    } else {
        b->bytes += op->len;
    }
    b->last_done_ns = t;
    b->outstanding--;
    b->ready[b->nready++] = s;
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

/* Points the window's slots at size-byte pieces of the local buffer and
 * of the remote region, spread over both as far as they reach. */
static void
prepare_slots(struct bench *b, uint64_t size, int opcode)
{
    uint64_t lspan = b->local_len, rspan = b->remote.len;
    uint64_t lslots, rslots;

    /* --footprint: the window reuses that much memory on each side, as
     * iperf3 reuses its one buffer per stream; at least one op's worth. */
    if (b->footprint && b->footprint < lspan)
        lspan = b->footprint;
    if (b->footprint && b->footprint < rspan)
        rspan = b->footprint;
    lslots = lspan / size ? lspan / size : 1;
    rslots = rspan / size ? rspan / size : 1;

    for (unsigned i = 0; i < b->window; i++) {
        struct agent_transport_op *op = &b->slots[i].op;

        memset(op, 0, sizeof *op);
        op->opcode = opcode;
        op->local = b->local + (i % lslots) * size;
        op->len = size;
        op->remote = b->remote;
        op->remote_off = (i % rslots) * size;
        op->done = op_done;
        op->arg = &b->slots[i];
        b->slots[i].b = b;
    }
}

static void
post_slots(struct bench *b, struct slot **list, size_t n)
{
    uint64_t t;
    int rc;

    for (size_t i = 0; i < n; i++)
        b->batch[i] = &list[i]->op;
    pthread_mutex_lock(&b->lock);
    b->outstanding += (unsigned)n;
    pthread_mutex_unlock(&b->lock);
    t = now_ns();
    for (size_t i = 0; i < n; i++)
        list[i]->posted_ns = t;
    rc = agent_transport_post(b->t, b->c, b->batch, n);
    if (rc < 0) {
        const char *why = "";

        for (size_t i = 0; i < n; i++)
            if (b->batch[i]->error[0])
                why = b->batch[i]->error;
        die("posting %s of %llu bytes: %s%s%s",
            opcode_name(list[0]->op.opcode),
            (unsigned long long)list[0]->op.len, strerror(-rc),
            *why ? ": " : "", why);
    }
}

/* Waits for completions and returns them in b->got; dies on an op error
 * or when nothing completes for STALL_S seconds. */
static size_t
collect(struct bench *b)
{
    struct timespec dl;
    size_t n;

    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += STALL_S;
    pthread_mutex_lock(&b->lock);
    while (b->nready == 0 && b->status == 0) {
        if (pthread_cond_timedwait(&b->cond, &b->lock, &dl) == ETIMEDOUT) {
            unsigned left = b->outstanding;

            pthread_mutex_unlock(&b->lock);
            die("no completion for %d s with %u op(s) outstanding; is the "
                "server still up?",
                STALL_S, left);
        }
    }
    if (b->status < 0) {
        int status = b->status;
        char why[AGENT_TRANSPORT_ERR_LEN];

        snprintf(why, sizeof why, "%s", b->error);
        pthread_mutex_unlock(&b->lock);
        die("an operation failed: %s (%s)", why, strerror(-status));
    }
    n = b->nready;
    memcpy(b->got, b->ready, n * sizeof *b->got);
    b->nready = 0;
    pthread_mutex_unlock(&b->lock);
    return n;
}

/* Posts slot 0 alone and waits for it: the only op in flight. */
static void
post_one(struct bench *b)
{
    struct slot *s = &b->slots[0];

    post_slots(b, &s, 1);
    if (collect(b) != 1 || b->got[0] != s)
        die("internal error: a completion for an op not in flight");
}

/* One op from slot 0, waited for. */
static void
one_op(struct bench *b, int opcode, void *local, uint64_t len)
{
    struct slot *s = &b->slots[0];

    prepare_slots(b, len, opcode);
    s->op.local = local;
    s->op.remote_off = 0;
    post_one(b);
}

/* WRITEs a pattern that depends on size into the remote region, READs it
 * back into the other half of the local buffer, and compares.  Untimed;
 * it also waits for the connection on the first call. */
static void
verify(struct bench *b, uint64_t size)
{
    uint64_t *w = (uint64_t *)b->local, n = size / 8;
    uint8_t *back = b->local + size;
    char lbl[32];

    for (uint64_t i = 0; i < n; i++)
        w[i] = (i + 1) * 0x9e3779b97f4a7c15ull ^ size;
    memset(b->local + n * 8, (int)(size & 0xff), (size_t)(size - n * 8));
    memset(back, 0, (size_t)size);
    one_op(b, AGENT_TRANSPORT_WRITE, b->local, size);
    one_op(b, AGENT_TRANSPORT_READ, back, size);
    if (memcmp(b->local, back, (size_t)size))
        die("%s: read back different bytes than were written",
            size_label(size, lbl, sizeof lbl));
}

/* CPU seconds this process has used, every thread. */
static double
self_cpu_s(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts))
        die("clock_gettime(CLOCK_PROCESS_CPUTIME_ID): %s", strerror(errno));
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds (user + system) process pid has used, from /proc, in
 * *out; 0, or -errno when that cannot be read (-EPROTO: not parsed). */
static int
pid_cpu_s(unsigned long pid, double *out)
{
    char path[64], buf[1024];
    unsigned long long ut, st;
    const char *p;
    size_t n;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%lu/stat", pid);
    f = fopen(path, "r");
    if (!f)
        return -errno;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* The command name may hold spaces and parentheses: skip past the
     * last ')'.  Then state, five ids, flags and four fault counts. */
    p = strrchr(buf, ')');
    if (!p ||
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
               &ut, &st) != 2)
        return -EPROTO;
    *out = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    return 0;
}

/* CPU seconds used so far by this process and, with --server-pid, by the
 * server; the server gone is fatal, as its figure would be wrong. */
static double
cpu_now(const struct bench *b)
{
    double c = self_cpu_s(), srv;
    int rc;

    if (!b->server_pid)
        return c;
    rc = pid_cpu_s(b->server_pid, &srv);
    if (rc < 0)
        die("--server-pid %lu: cannot read /proc/%lu/stat (%s)", b->server_pid,
            b->server_pid, strerror(-rc));
    return c + srv;
}

/* Keeps the window full for `seconds`, then drains it; GB/s including
 * the drain, and in *gbit_cpu the Gbit moved per CPU-second used (by this
 * process and the server, see cpu_now) over the same span. */
static double
measure_bw(struct bench *b, uint64_t size, int opcode, double seconds,
           double *gbit_cpu)
{
    struct slot **all = b->got;
    uint64_t t0, end, bytes, t1;
    double c0, c1;
    size_t n;

    prepare_slots(b, size, opcode);
    pthread_mutex_lock(&b->lock);
    b->bytes = 0;
    pthread_mutex_unlock(&b->lock);
    /* got doubles as the list of every slot for the first post. */
    for (unsigned i = 0; i < b->window; i++)
        all[i] = &b->slots[i];
    c0 = cpu_now(b);
    t0 = now_ns();
    end = t0 + (uint64_t)(seconds * 1e9);
    post_slots(b, all, b->window);
    for (;;) {
        unsigned left;

        n = collect(b);
        if (now_ns() < end) {
            post_slots(b, b->got, n);
            continue;
        }
        /* Completions that arrived since collect count as outstanding
         * here: they must be collected before a slot is reused. */
        pthread_mutex_lock(&b->lock);
        left = b->outstanding + (unsigned)b->nready;
        pthread_mutex_unlock(&b->lock);
        if (left == 0)
            break;
    }
    c1 = cpu_now(b);
    pthread_mutex_lock(&b->lock);
    bytes = b->bytes;
    t1 = b->last_done_ns;
    pthread_mutex_unlock(&b->lock);
    *gbit_cpu = c1 > c0 ? (double)bytes * 8 / 1e9 / (c1 - c0) : 0.0;
    return t1 > t0 ? (double)bytes / (double)(t1 - t0) : 0.0;
}

/* What one latency point found. */
struct lat {
    double p50_us; /* median */
    double p99_us; /* 99th percentile */
    size_t n;      /* samples */
};

static void
sort_samples(uint64_t *s, size_t n, struct lat *out)
{
    qsort(s, n, sizeof *s, cmp_u64);
    out->n = n;
    out->p50_us = percentile_us(s, n, 50);
    out->p99_us = percentile_us(s, n, 99);
}

/* Samples start with room for this many and grow. */
#define SAMPLES_INIT 4096

static uint64_t *
add_sample(uint64_t *s, size_t *n, size_t *cap, uint64_t v)
{
    if (*n == *cap) {
        *cap *= 2;
        s = realloc(s, *cap * sizeof *s);
        if (!s)
            die("out of memory for latency samples");
    }
    s[(*n)++] = v;
    return s;
}

/* One op at a time for `seconds` (at least MIN_SAMPLES), timed from post
 * to the completion callback. */
static void
measure_lat(struct bench *b, uint64_t size, int opcode, double seconds,
            struct lat *out)
{
    size_t n = 0, cap = SAMPLES_INIT;
    uint64_t *s = malloc(cap * sizeof *s), end;
    struct slot *one = &b->slots[0];

    if (!s)
        die("out of memory for latency samples");
    prepare_slots(b, size, opcode);
    end = now_ns() + (uint64_t)(seconds * 1e9);
    while ((n < MIN_SAMPLES || now_ns() < end) && n < MAX_SAMPLES) {
        post_one(b);
        s = add_sample(s, &n, &cap, one->done_ns - one->posted_ns);
    }
    sort_samples(s, n, out);
    free(s);
}

static FILE *
csv_open(const char *path)
{
    FILE *f;

    if (!path)
        return NULL;
    f = fopen(path, "a");
    if (!f)
        die("--csv %s: %s", path, strerror(errno));
    if (ftell(f) == 0)
        fprintf(f, "transport,op,size,gbps,lat_p50_us,lat_p99_us,"
                   "copies_per_byte,gbit_per_cpu_s\n");
    return f;
}

static void
csv_close(FILE *f, const char *path)
{
    if (f && fclose(f) != 0)
        die("--csv %s: %s", path, strerror(errno));
}

/* Connects, measures every (op, size) point, prints the table and the
 * CSV rows. */
static void
run_points(const struct opts *o, struct agent_transport *t,
           const struct agent_transport_peer *peer,
           const struct agent_transport_region *remote)
{
    static const int opcodes[] = {AGENT_TRANSPORT_WRITE, AGENT_TRANSPORT_READ};
    struct bench b = {.t = t,
                      .remote = *remote,
                      .window = o->window,
                      .footprint = o->footprint,
                      .server_pid = o->server_pid};
    struct agent_transport_region mine;
    uint64_t maxsize = 0;
    pthread_condattr_t ca;
    char err[256], lbl[32], lbl2[32], lbl3[32];
    FILE *csv;
    int rc;

    for (size_t i = 0; i < o->nsizes; i++) {
        if (o->sizes[i] > remote->len)
            die("size %s is larger than the server's region (%s); give "
                "serve a larger --bytes",
                size_label(o->sizes[i], lbl, sizeof lbl),
                size_label(remote->len, lbl2, sizeof lbl2));
        if (o->sizes[i] > maxsize)
            maxsize = o->sizes[i];
    }
    /* Room for the verify round trip (2 x size) and for the window to
     * use distinct memory where the remote region allows it. */
    b.local_len = maxsize * o->window;
    if (b.local_len > remote->len)
        b.local_len = remote->len;
    if (b.local_len < 2 * maxsize)
        b.local_len = 2 * maxsize;
    b.local = xalloc(b.local_len);
    rc = agent_transport_register(t, b.local, b.local_len, &mine, err,
                                  sizeof err);
    if (rc < 0)
        die("registering the local buffer: %s (%s)", err, strerror(-rc));
    b.slots = calloc(o->window, sizeof *b.slots);
    b.batch = calloc(o->window, sizeof *b.batch);
    b.got = calloc(o->window, sizeof *b.got);
    b.ready = calloc(o->window, sizeof *b.ready);
    if (!b.slots || !b.batch || !b.got || !b.ready)
        die("out of memory");
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b.cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&b.lock, NULL);

    rc = agent_transport_connect(t, peer, &b.c, err, sizeof err);
    if (rc < 0)
        die("connecting to %s port %u: %s (%s)", peer->address, peer->port,
            err, strerror(-rc));

    if (o->server_pid) {
        double ignored;

        rc = pid_cpu_s(o->server_pid, &ignored);
        if (rc < 0)
            die("--server-pid %lu: cannot read /proc/%lu/stat (%s)",
                o->server_pid, o->server_pid, strerror(-rc));
    }
    csv = csv_open(o->csv);
    printf("%s to %s port %u as \"%s\": window %u, %.2g s per point, "
           "conns %s, slice %s\n",
           agent_transport_name(t), peer->address, peer->port, o->node,
           o->window, o->seconds,
           o->conns ? (snprintf(lbl2, sizeof lbl2, "%u", o->conns), lbl2)
                    : "default",
           o->slice ? size_label(o->slice, lbl3, sizeof lbl3) : "default");
    printf(
        "CPU: this process%s\n",
        o->server_pid
            ? (snprintf(lbl2, sizeof lbl2, " + pid %lu", o->server_pid), lbl2)
            : " only (no --server-pid)");
    printf("%-6s %6s %9s %9s %10s %10s %8s %9s %9s\n", "op", "size", "GB/s",
           "Gbit/s", "p50 us", "p99 us", "samples", "copies/B", "Gb/cpu-s");
    fflush(stdout);
    for (size_t k = 0; k < 2; k++) {
        int opcode = opcodes[k];

        if (!(o->ops &
              (opcode == AGENT_TRANSPORT_WRITE ? OPS_WRITE : OPS_READ)))
            continue;
        for (size_t i = 0; i < o->nsizes; i++) {
            uint64_t size = o->sizes[i], moved;
            struct agent_transport_stats s0, s1;
            double gbs, copies, gbit_cpu;
            struct lat lat;

            verify(&b, size);
            agent_transport_stats(t, &s0);
            gbs = measure_bw(&b, size, opcode, o->seconds, &gbit_cpu);
            measure_lat(&b, size, opcode, o->seconds, &lat);
            agent_transport_stats(t, &s1);
            moved = (s1.bytes_read + s1.bytes_written) -
                    (s0.bytes_read + s0.bytes_written);
            copies = moved ? (double)(s1.cpu_copy_bytes - s0.cpu_copy_bytes) /
                                 (double)moved
                           : 0.0;
            printf("%-6s %6s %9.3f %9.3f %10.1f %10.1f %8zu %9.3f %9.2f\n",
                   opcode_name(opcode), size_label(size, lbl, sizeof lbl), gbs,
                   gbs * 8, lat.p50_us, lat.p99_us, lat.n, copies, gbit_cpu);
            fflush(stdout);
            if (csv)
                fprintf(csv, "%s,%s,%llu,%.4f,%.2f,%.2f,%.4f,%.3f\n",
                        o->label ? o->label : agent_transport_name(t),
                        opcode_name(opcode), (unsigned long long)size, gbs * 8,
                        lat.p50_us, lat.p99_us, copies, gbit_cpu);
        }
    }
    csv_close(csv, o->csv);
    {
        struct agent_transport_stats st;

        agent_transport_stats(t, &st);
        print_stats("client", &st);
    }
    agent_transport_disconnect(t, b.c);
    pthread_cond_destroy(&b.cond);
    pthread_mutex_destroy(&b.lock);
    free(b.slots);
    free(b.batch);
    free(b.got);
    free(b.ready);
    /* Withdrawn before it is freed, so no late access can touch it. */
    (void)agent_transport_deregister(t, mine.id);
    free(b.local);
}

static int
cmd_run(const struct opts *o)
{
    struct agent_transport_config cfg = {0};
    struct agent_transport_peer peer = {0};
    struct agent_transport *t;
    struct region_info ri;
    char addr[128];

    read_region_file(o->region_file, &ri);
    if (ri.kind != o->kind)
        die("--region-file %s is served over %s, but --transport is %s",
            o->region_file, agent_transport_kind_name(ri.kind),
            agent_transport_kind_name(o->kind));
    if (!o->peer && !ri.address[0])
        die("--region-file %s names no address; give --peer", o->region_file);
    resolve("--peer", o->peer ? o->peer : ri.address, addr, sizeof addr);

    cfg.node = o->node;
    cfg.boot_id = boot_id_new();
    cfg.device = o->device;
    cfg.conns = o->conns;
    cfg.slice = o->slice;
    t = create_or_skip(o->kind, &cfg);
    peer.node = SERVER_NODE;
    peer.address = addr;
    peer.port = (uint16_t)ri.port;
    run_points(o, t, &peer, &ri.region);
    agent_transport_destroy(t);
    return 0;
}

/* Both sides in this process over 127.0.0.1: the smoke test. */
static int
cmd_quick(struct opts *o)
{
    struct agent_transport_config scfg = {0}, ccfg = {0};
    struct agent_transport_peer peer = {0};
    struct agent_transport_region region;
    struct agent_transport *server, *client;
    struct agent_transport_stats st;
    uint64_t maxsize = 0, bytes;
    char err[256];
    uint8_t *buf;
    int rc;

    for (size_t i = 0; i < o->nsizes; i++)
        if (o->sizes[i] > maxsize)
            maxsize = o->sizes[i];
    bytes = 4 * maxsize;

    scfg.node = SERVER_NODE;
    scfg.boot_id = boot_id_new();
    scfg.address = "127.0.0.1";
    scfg.device = o->device;
    scfg.admit = admit_one;
    scfg.admit_arg = (void *)o->node;
    server = create_or_skip(o->kind, &scfg);
    buf = xalloc(bytes);
    rc =
        agent_transport_register(server, buf, bytes, &region, err, sizeof err);
    if (rc < 0)
        die("registering the server's region: %s (%s)", err, strerror(-rc));

    ccfg.node = o->node;
    ccfg.boot_id = boot_id_new();
    ccfg.device = o->device;
    ccfg.conns = o->conns;
    ccfg.slice = o->slice;
    client = create_or_skip(o->kind, &ccfg);
    peer.node = SERVER_NODE;
    peer.address = "127.0.0.1";
    peer.port = agent_transport_port(server);
    printf("quick: both sides in this process; figures are a smoke test, "
           "not a measurement\n");
    run_points(o, client, &peer, &region);
    agent_transport_destroy(client);

    agent_transport_stats(server, &st);
    print_stats("server", &st);
    agent_transport_destroy(server);
    free(buf);
    return 0;
}

/* --- Ping-pong: the latency baseline ---------------------------------- */

static volatile sig_atomic_t pp_stop;

static void
on_stop(int sig)
{
    (void)sig;
    pp_stop = 1;
}

/* Reads exactly len bytes: 1 done, 0 clean EOF before any byte, -1 error
 * or a stop signal. */
static int
read_full(int fd, void *p, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t r = recv(fd, (char *)p + got, len - got, 0);

        if (r > 0) {
            got += (size_t)r;
        } else if (r == 0) {
            return got == 0 ? 0 : -1;
        } else if (errno != EINTR || pp_stop) {
            return -1;
        }
    }
    return 1;
}

static int
write_full(int fd, const void *p, size_t len)
{
    size_t put = 0;

    while (put < len) {
        ssize_t r = send(fd, (const char *)p + put, len - put, MSG_NOSIGNAL);

        if (r > 0)
            put += (size_t)r;
        else if (r < 0 && (errno != EINTR || pp_stop))
            return -1;
    }
    return 0;
}

static void
set_nodelay(int fd)
{
    int one = 1;

    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* A socket for addr:port: listening when `listening`, else connected. */
static int
tcp_socket(const char *addr, unsigned port, bool listening)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV},
                    *ai;
    char portstr[8];
    int fd, rc, one = 1;

    snprintf(portstr, sizeof portstr, "%u", port);
    rc = getaddrinfo(addr, portstr, &hints, &ai);
    if (rc)
        die("%s: %s", addr, gai_strerror(rc));
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket: %s", strerror(errno));
    if (listening) {
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 8) < 0)
            die("listening on %s port %u: %s", addr, port, strerror(errno));
    } else if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        die("connecting to %s port %u: %s", addr, port, strerror(errno));
    }
    freeaddrinfo(ai);
    return fd;
}

/* Answers requests on one connection until it closes. */
static void
pp_serve_conn(int fd, uint8_t **buf, uint64_t *cap, uint64_t *reqs,
              uint64_t *bytes)
{
    uint64_t req, size;

    while (!pp_stop && read_full(fd, &req, sizeof req) == 1) {
        size = be64toh(req);
        if (size == 0 || size > MAX_SIZE) {
            fprintf(stderr,
                    PROG " pingpong-serve: request for %llu bytes is "
                         "outside 1..1G; closing the connection\n",
                    (unsigned long long)size);
            return;
        }
        if (size > *cap) {
            free(*buf);
            *buf = xalloc(size);
            *cap = size;
        }
        if (write_full(fd, *buf, (size_t)size) < 0)
            return;
        (*reqs)++;
        *bytes += size;
    }
}

static int
cmd_ppserve(const struct opts *o)
{
    struct sigaction sa = {.sa_handler = on_stop};
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    uint64_t cap = 0, reqs = 0, bytes = 0;
    uint8_t *buf = NULL;
    char addr[128], text[32];
    unsigned port;
    int fd;

    /* No SA_RESTART: accept and recv return EINTR on a stop signal. */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    resolve("--listen", o->listen, addr, sizeof addr);
    fd = tcp_socket(addr, o->port, true);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        die("getsockname: %s", strerror(errno));
    port = ntohs(ss.ss_family == AF_INET6
                     ? ((struct sockaddr_in6 *)&ss)->sin6_port
                     : ((struct sockaddr_in *)&ss)->sin_port);
    if (o->port_file) {
        snprintf(text, sizeof text, "%u\n", port);
        write_file_atomic(o->port_file, text);
    }
    printf("pingpong-serve: listening on %s port %u\n", addr, port);
    fflush(stdout);
    while (!pp_stop) {
        int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);

        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            die("accept: %s", strerror(errno));
        }
        set_nodelay(c);
        pp_serve_conn(c, &buf, &cap, &reqs, &bytes);
        close(c);
    }
    close(fd);
    free(buf);
    if (o->port_file)
        (void)unlink(o->port_file);
    printf("pingpong-serve: %llu requests, %llu bytes answered\n",
           (unsigned long long)reqs, (unsigned long long)bytes);
    return 0;
}

static unsigned
read_port_file(const char *path)
{
    char line[32];
    unsigned long p;
    FILE *f = fopen(path, "r");

    if (!f)
        die("--port-file %s: %s", path, strerror(errno));
    if (!fgets(line, sizeof line, f))
        line[0] = '\0';
    fclose(f);
    line[strcspn(line, "\n")] = '\0';
    if (parse_uint(line, 1, 65535, &p) < 0)
        die("--port-file %s: \"%s\" is not a port", path, line);
    return (unsigned)p;
}

/* One request and its whole answer. */
static void
pp_round_trip(int fd, uint8_t *buf, uint64_t size)
{
    uint64_t req = htobe64(size);

    if (write_full(fd, &req, sizeof req) < 0)
        die("pingpong: sending a request: %s", strerror(errno));
    if (read_full(fd, buf, (size_t)size) != 1)
        die("pingpong: the server closed the connection or failed: %s",
            errno ? strerror(errno) : "EOF");
}

static int
cmd_pp(const struct opts *o)
{
    uint64_t maxsize = 0;
    unsigned port = o->port_set ? o->port : read_port_file(o->port_file);
    char addr[128], lbl[32];
    uint8_t *buf;
    FILE *csv;
    int fd;

    for (size_t i = 0; i < o->nsizes; i++)
        if (o->sizes[i] > maxsize)
            maxsize = o->sizes[i];
    resolve("--peer", o->peer, addr, sizeof addr);
    fd = tcp_socket(addr, port, false);
    set_nodelay(fd);
    buf = xalloc(maxsize);
    csv = csv_open(o->csv);
    printf("pingpong (blocking TCP, 8-byte request, SIZE-byte answer) to "
           "%s port %u, %.2g s per point\n",
           addr, port, o->seconds);
    printf("%-6s %6s %9s %9s %10s %10s %8s\n", "op", "size", "GB/s", "Gbit/s",
           "p50 us", "p99 us", "samples");
    for (size_t i = 0; i < o->nsizes; i++) {
        uint64_t size = o->sizes[i], t0, t1, end, *s;
        size_t n = 0, cap = SAMPLES_INIT;
        struct lat lat;
        double gbs;

        s = malloc(cap * sizeof *s);
        if (!s)
            die("out of memory for latency samples");
        for (int w = 0; w < 3; w++)
            pp_round_trip(fd, buf, size);
        t0 = now_ns();
        end = t0 + (uint64_t)(o->seconds * 1e9);
        t1 = t0;
        while ((n < MIN_SAMPLES || t1 < end) && n < MAX_SAMPLES) {
            uint64_t t = t1;

            pp_round_trip(fd, buf, size);
            t1 = now_ns();
            s = add_sample(s, &n, &cap, t1 - t);
        }
        gbs = (double)(n * size) / (double)(t1 - t0);
        sort_samples(s, n, &lat);
        free(s);
        printf("%-6s %6s %9.3f %9.3f %10.1f %10.1f %8zu\n", "read",
               size_label(size, lbl, sizeof lbl), gbs, gbs * 8, lat.p50_us,
               lat.p99_us, lat.n);
        fflush(stdout);
        if (csv)
            fprintf(csv, "pingpong,read,%llu,%.4f,%.2f,%.2f,,\n",
                    (unsigned long long)size, gbs * 8, lat.p50_us, lat.p99_us);
    }
    csv_close(csv, o->csv);
    close(fd);
    free(buf);
    return 0;
}

/* --- Probe and main --------------------------------------------------- */

static int
cmd_probe(const struct opts *o)
{
    char why[256];

    if (!agent_transport_available(o->kind, why, sizeof why)) {
        printf("SKIP: %s: %s\n", agent_transport_kind_name(o->kind), why);
        return EXIT_SKIP;
    }
    printf("%s: available\n", agent_transport_kind_name(o->kind));
    return 0;
}

int
main(int argc, char **argv)
{
    struct opts o;

    /* A peer that goes away must give an error, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    parse_args(argc, argv, &o);
    check_args(&o);
    switch (o.cmd) {
    case CMD_SERVE:
        return cmd_serve(&o);
    case CMD_RUN:
        return o.quick ? cmd_quick(&o) : cmd_run(&o);
    case CMD_PPSERVE:
        return cmd_ppserve(&o);
    case CMD_PP:
        return cmd_pp(&o);
    case CMD_PROBE:
        return cmd_probe(&o);
    }
    return 2;
}
