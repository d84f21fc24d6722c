/*
 * mcos-chat-demo: a multi-turn chat workload driven through a running MCOS
 * cluster, the way an inference gateway and engines would use it.
 *
 * Each session has a system prompt shared by all sessions of its "app" and
 * a conversation that grows by one turn per request.  A request's prompt
 * is a prefix chain of 512-token KV blocks (hash i covers every block
 * before it).  For each request the demo asks the brain where to run it
 * (POST /v1/route), then on that node's agent (libmcos) reads the blocks
 * it already holds -- prefix hits -- and "prefills" the rest: stores them
 * as KV blocks of the chain.  It prints the prefix hit ratio, the bound an
 * infinite shared cache would reach, and the spread of requests over
 * nodes.
 *
 * Usage: mcos-chat-demo BRAIN_HTTP NODE=AGENT_URL... [--sessions N]
 *        [--turns N] [--apps N] [--seed N]
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "mcos/mcos.h"

#define MAX_NODES     16
#define BLOCK_BYTES   4096 /* a token-sized stand-in for a KV block */
#define SYSTEM_BLOCKS 4
#define TURN_BLOCKS   2

struct node {
    const char *name;  /* node name */
    mcos_client_t *c;  /* its agent */
    unsigned requests; /* routed here */
};

static uint64_t
mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x ? x : 1;
}

/* Blocks seen so far, for the bound: an open-addressing set. */
#define SEEN_SLOTS (1u << 16)
static uint64_t seen[SEEN_SLOTS];

/* True the first time `h` is seen. */
static bool
first_time(uint64_t h)
{
    for (uint32_t i = (uint32_t)h & (SEEN_SLOTS - 1);;
         i = (i + 1) & (SEEN_SLOTS - 1)) {
        if (seen[i] == h) {
            return false;
        }
        if (!seen[i]) {
            seen[i] = h;
            return true;
        }
    }
}

static int
route(const char *brain, const uint64_t *chain, size_t n, char *node,
      size_t len)
{
    json_t *body = json_pack("{s:s, s:[]}", "ns", "chat-demo", "blocks");
    json_t *blocks = json_object_get(body, "blocks"), *doc;
    char url[512], err[256], *text, *resp = NULL;
    int status = 0, rc;

    for (size_t i = 0; i < n; i++) {
        char hex[24];

        snprintf(hex, sizeof hex, "%016" PRIx64, chain[i]);
        json_array_append_new(blocks, json_string(hex));
    }
    text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    snprintf(url, sizeof url, "%s/v1/route", brain);
    rc = mcos_http_fetch("POST", url, text, strlen(text), 5000, &status, &resp,
                         NULL, err, sizeof err);
    free(text);
    if (rc || status != 200) {
        fprintf(stderr, "mcos-chat-demo: route: %s\n",
                rc     ? err
                : resp ? resp
                       : "?");
        free(resp);
        return -1;
    }
    doc = json_loads(resp, 0, NULL);
    free(resp);
    snprintf(node, len, "%s", json_string_value(json_object_get(doc, "node")));
    json_decref(doc);
    return 0;
}

int
main(int argc, char **argv)
{
    struct node nodes[MAX_NODES];
    size_t n_nodes = 0;
    unsigned sessions = 24, turns = 4, apps = 3;
    uint64_t seed = 1, hit_blocks = 0, total_blocks = 0, new_blocks = 0;
    const char *brain;
    static unsigned char block[BLOCK_BYTES];

    if (argc < 3) {
        fprintf(stderr, "usage: mcos-chat-demo BRAIN_HTTP NODE=AGENT_URL... "
                        "[--sessions N] [--turns N] [--apps N] [--seed N]\n");
        return 2;
    }
    brain = argv[1];
    for (int i = 2; i < argc; i++) {
        char *eq = strchr(argv[i], '=');

        if (!strncmp(argv[i], "--", 2) && i + 1 < argc) {
            unsigned long v = strtoul(argv[i + 1], NULL, 10);

            if (!strcmp(argv[i], "--sessions")) {
                sessions = (unsigned)v;
            } else if (!strcmp(argv[i], "--turns")) {
                turns = (unsigned)v;
            } else if (!strcmp(argv[i], "--apps")) {
                apps = (unsigned)v ? (unsigned)v : 1;
            } else if (!strcmp(argv[i], "--seed")) {
                seed = v;
            } else {
                fprintf(stderr, "mcos-chat-demo: unknown option %s\n",
                        argv[i]);
                return 2;
            }
            i++;
        } else if (eq && n_nodes < MAX_NODES) {
            *eq = '\0';
            nodes[n_nodes].name = argv[i];
            nodes[n_nodes].requests = 0;
            if (mcos_connect(eq + 1, &nodes[n_nodes].c)) {
                fprintf(stderr,
                        "mcos-chat-demo: cannot reach the agent of "
                        "%s at %s\n",
                        argv[i], eq + 1);
                return 1;
            }
            n_nodes++;
        } else {
            fprintf(stderr, "mcos-chat-demo: bad argument %s\n", argv[i]);
            return 2;
        }
    }

    /* Turn by turn, round-robin over sessions, as users take turns. */
    for (unsigned t = 0; t < turns; t++) {
        for (unsigned s = 0; s < sessions; s++) {
            size_t len = SYSTEM_BLOCKS + (size_t)(t + 1) * TURN_BLOCKS;
            uint64_t chain[SYSTEM_BLOCKS + 64 * TURN_BLOCKS];
            char where[64];
            struct node *nd = NULL;
            uint64_t h = mix(seed * 1000003 + s % apps);

            for (size_t b = 0; b < len && b < 64; b++) {
                /* The system prompt depends on the app only; the rest on
                 * the session: a prefix chain either way. */
                h = mix(h ^ (b < SYSTEM_BLOCKS ? b : b * 7919 + s + 1));
                chain[b] = h;
            }
            if (route(brain, chain, len, where, sizeof where)) {
                return 1;
            }
            for (size_t k = 0; k < n_nodes; k++) {
                if (!strcmp(nodes[k].name, where)) {
                    nd = &nodes[k];
                }
            }
            if (!nd) {
                fprintf(stderr,
                        "mcos-chat-demo: routed to %s, which was "
                        "not given on the command line\n",
                        where);
                return 1;
            }
            nd->requests++;
            /* The longest prefix the node holds is reused; the rest is
             * prefilled and stored. */
            for (size_t b = 0, reusing = 1; b < len; b++) {
                struct mcos_view v;

                if (reusing && mcos_get(nd->c, chain[b], &v) == 0) {
                    mcos_release(nd->c, &v);
                    hit_blocks++;
                } else {
                    struct mcos_place_opts o = {.struct_size = sizeof o};

                    reusing = 0;
                    o.cls = MCOS_CLASS_KV_BLOCK;
                    o.ns = "chat-demo";
                    o.parent = b ? chain[b - 1] : 0;
                    o.hotness = b < SYSTEM_BLOCKS ? 1.0 : 0.3;
                    memset(block, (int)(chain[b] & 0xff), sizeof block);
                    /* Another request may have stored it meanwhile. */
                    int rc =
                        mcos_put(nd->c, chain[b], block, sizeof block, &o);

                    if (rc && rc != -17 /* EEXIST */) {
                        fprintf(stderr, "mcos-chat-demo: put on %s: %s\n",
                                nd->name, mcos_strerror(rc));
                        return 1;
                    }
                }
                total_blocks++;
                new_blocks += first_time(chain[b]);
            }
        }
    }
    printf("requests: %u (%u sessions x %u turns, %u apps sharing system "
           "prompts)\n",
           sessions * turns, sessions, turns, apps);
    printf("prefix hit ratio: %.1f%% (%" PRIu64 " of %" PRIu64
           " prompt blocks reused)\n",
           total_blocks ? 100.0 * (double)hit_blocks / (double)total_blocks
                        : 0.0,
           hit_blocks, total_blocks);
    printf("bound: %.1f%% if every block ever stored were on every node\n",
           total_blocks ? 100.0 * (double)(total_blocks - new_blocks) /
                              (double)total_blocks
                        : 0.0);
    printf("requests per node:");
    for (size_t k = 0; k < n_nodes; k++) {
        printf(" %s=%u", nodes[k].name, nodes[k].requests);
        mcos_close(nodes[k].c);
    }
    printf("\n");
    return 0;
}
