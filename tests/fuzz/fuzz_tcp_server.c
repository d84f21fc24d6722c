/*
 * Fuzz target: the TCP transport's server side (agent/transport_tcp.c) on
 * arbitrary bytes from a remote peer: the hello (magic, version, names,
 * admission) and then request headers (READ and WRITE with region id,
 * address, length, key, tag) and WRITE payload.
 *
 * One transport listens on 127.0.0.1, an ephemeral port, with one 64 KiB
 * region registered (malloc'd to the byte, so that ASan sees any access
 * past it) and one admitted peer ("peer", boot 7).  Each input is one
 * connection over loopback: the bytes are written, our side is shut
 * down, and whatever the server answers is read until it closes the
 * socket.  The server must end every connection on its own once the
 * peer's stream ends: a socket still open 10 s later is a hang (abort).
 *
 * The first byte picks how the rest is sent:
 *   0  as is: the hello is fuzzed too
 *   1  after a valid hello from the admitted peer
 *   2  after a valid hello, as requests whose address is an offset into
 *      the region and whose key is XORed with the region's key (so 0 is
 *      the right one); a WRITE takes its payload from what follows
 *   3  the same after a hello the admit callback refuses (wrong boot id)
 * With bit 2 set, our side is shut down only once the server has gone
 * quiet for QUIET_MS: a server reads the end of the stream as the peer
 * leaving and drops answers not yet sent, so this is what makes it send
 * READ payload and write batches.  With bit 3 set, the region is
 * deregistered (and registered again) once everything is sent, while
 * the server may still be receiving a WRITE into it or sending a READ
 * from it.
 * The transport is reused across inputs and recreated every 4096.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "transport.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SRV_NODE   "fuzzsrv"
#define PEER_NODE  "peer"
#define PEER_BOOT  UINT64_C(7)
#define REGION_LEN (64 * 1024)
#define RECREATE   4096
#define HANG_MS    10000
#define QUIET_MS   2
#define REQ_LEN    40
#define OP_WRITE   2

static struct agent_transport *T;
static struct agent_transport_region R;
static uint8_t *mem;
static unsigned uses;

static bool
admit(void *arg, const char *node, uint64_t boot_id, char *why, size_t whylen)
{
    (void)arg;
    if (strcmp(node, PEER_NODE) != 0) {
        return false; /* the transport says why */
    }
    if (boot_id != PEER_BOOT) {
        snprintf(why, whylen, "node %s: boot %llu is not the admitted one",
                 node, (unsigned long long)boot_id);
        return false;
    }
    return true;
}

static void
setup(void)
{
    struct agent_transport_config cfg = {.node = SRV_NODE,
                                         .boot_id = 0x42,
                                         .address = "127.0.0.1",
                                         .port = 0,
                                         .admit = admit};
    char err[256];

    if (T && ++uses < RECREATE) {
        return;
    }
    if (T) {
        agent_transport_destroy(T);
        free(mem);
    } else {
        mcos_log_set_spec("off");
    }
    uses = 0;
    mem = calloc(1, REGION_LEN);
    if (!mem ||
        agent_transport_create(AGENT_TRANSPORT_TCP, &cfg, &T, err,
                               sizeof err) != 0 ||
        agent_transport_register(T, mem, REGION_LEN, &R, err, sizeof err) !=
            0) {
        fprintf(stderr, "fuzz_tcp_server: setup: %s\n", err);
        abort();
    }
}

static void
le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void
le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint64_t
get64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--) {
        v = v << 8 | p[i];
    }
    return v;
}

/* A client hello, as the transport's client writes it. */
static size_t
hello(uint8_t *b, const char *node, uint64_t boot, const char *expect)
{
    size_t nlen = strlen(node), elen = strlen(expect);

    memcpy(b, "MCOSXP", 6);
    le16(b + 6, 1);
    le16(b + 8, (uint16_t)nlen);
    le16(b + 10, (uint16_t)elen);
    le64(b + 12, boot);
    memcpy(b + 20, node, nlen);
    memcpy(b + 20 + nlen, expect, elen);
    return 20 + nlen + elen;
}

/* Rewrites requests in place: address relative to the region, key XORed
 * with its key; WRITE payload is skipped, as the server frames it. */
static void
patch(uint8_t *p, size_t n)
{
    size_t off = 0;

    while (n - off >= REQ_LEN) {
        uint8_t *h = p + off;
        uint32_t opcode =
            (uint32_t)(h[0] | h[1] << 8 | h[2] << 16 | (uint32_t)h[3] << 24);
        uint64_t len = get64(h + 16);

        le64(h + 8, R.addr + get64(h + 8));
        le64(h + 24, R.key ^ get64(h + 24));
        off += REQ_LEN;
        if (opcode == OP_WRITE) {
            off += len < n - off ? (size_t)len : n - off;
        }
    }
}

/* Withdraws the region while transfers may touch it, then offers it
 * again (under a new key). */
static void
withdraw_region(void)
{
    char err[256];

    if (agent_transport_deregister(T, R.id) != 0 ||
        agent_transport_register(T, mem, REGION_LEN, &R, err, sizeof err) !=
            0) {
        fprintf(stderr, "fuzz_tcp_server: cannot register again\n");
        abort();
    }
}

static int64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sends msg, shuts our side down (once the server is quiet for QUIET_MS
 * when `linger`), and reads until the server closes. */
static void
exchange(const uint8_t *msg, size_t len, bool linger, bool dereg)
{
    static uint8_t sink[256 * 1024];
    struct sockaddr_in sa = {.sin_family = AF_INET};
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    int64_t deadline = now_ms() + HANG_MS;
    int64_t quiet = 0;
    size_t sent = 0;
    bool shut = false;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    sa.sin_port = htons(agent_transport_port(T));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        fprintf(stderr, "fuzz_tcp_server: connect: %s\n", strerror(errno));
        abort();
    }
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int64_t left = deadline - now_ms(), wait = left;
        ssize_t n;

        if (!shut && sent == len && (!linger || now_ms() >= quiet)) {
            if (dereg) {
                withdraw_region();
            }
            shutdown(fd, SHUT_WR);
            shut = true;
        }
        if (!shut && sent < len) {
            pfd.events |= POLLOUT;
        } else if (!shut) {
            wait = quiet - now_ms() > 0 ? quiet - now_ms() : 0;
        }
        if (left <= 0) {
            fprintf(stderr,
                    "fuzz_tcp_server: the server kept the connection "
                    "open for %d ms\n",
                    HANG_MS);
            abort();
        }
        if (poll(&pfd, 1, (int)(wait < left ? wait : left)) < 0) {
            if (errno == EINTR) {
                continue;
            }
            abort();
        }
        if (pfd.revents & POLLOUT) {
            n = send(fd, msg + sent, len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) {
                sent += (size_t)n;
                quiet = now_ms() + QUIET_MS;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                sent = len; /* the server is gone: stop writing */
            }
        }
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            n = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                break; /* closed (or reset) by the server */
            }
            quiet = now_ms() + QUIET_MS;
        }
    }
    /* A reset rather than TIME_WAIT: thousands of connections a second
     * would run out of ports. */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *msg;
    size_t n = 0;
    int mode;

    if (size == 0) {
        return 0;
    }
    setup();
    mode = data[0] & 3;
    data++;
    size--;
    msg = malloc(size + 256);
    if (!msg) {
        return 0;
    }
    if (mode == 1 || mode == 2) {
        n = hello(msg, PEER_NODE, PEER_BOOT, SRV_NODE);
    } else if (mode == 3) {
        n = hello(msg, PEER_NODE, PEER_BOOT + 1, SRV_NODE);
    }
    memcpy(msg + n, data, size);
    if (mode >= 2) {
        patch(msg + n, size);
    }
    exchange(msg, n + size, data[-1] & 4, data[-1] & 8);
    free(msg);
    return 0;
}
