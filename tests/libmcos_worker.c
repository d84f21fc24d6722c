/*
 * A separate client process for test_libmcos: `libmcos_worker URL many K`
 * stores, reads back and drops objects of its own; `... crash` opens a
 * view and a placement and exits without releasing either; `... kv NS
 * H1,H2,...` stores KV blocks of a prefix chain (hex hashes) in namespace
 * NS, each with its parent; `... load Q R B SECS` reports an engine's
 * queue and holds it for SECS.  Exit status 0 when everything checked
 * out.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mcos/mcos.h"

static void
fill(unsigned char *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        seed = seed * 1103515245u + 12345u;
        buf[i] = (unsigned char)(seed >> 16);
    }
}

int
main(int argc, char **argv)
{
    mcos_client_t *c;
    int bad = 0;

    if (argc < 3 || mcos_connect(argv[1], &c)) {
        return 2;
    }
    if (!strcmp(argv[2], "many") && argc == 4) {
        int k = atoi(argv[3]);
        static unsigned char data[20000], out[20000];

        for (int i = 0; i < 50; i++) {
            mcos_id_t id = (mcos_id_t)(k + 1) << 32 | (mcos_id_t)i;
            size_t len = 0, want = 1000 + (size_t)i * 300;

            fill(data, sizeof data, (unsigned)(k * 1000 + i));
            bad |= mcos_put(c, id, data, want, NULL) != 0;
            bad |= mcos_get_copy(c, id, out, sizeof out, &len) != 0;
            bad |= len != want || memcmp(out, data, len) != 0;
            if (i % 3 == 0) {
                bad |= mcos_evict(c, id, MCOS_EVICT_DROP) != 0;
            }
        }
        mcos_close(c);
        return bad;
    }
    if (!strcmp(argv[2], "kv") && argc == 5) {
        struct mcos_place_opts o = {.struct_size = sizeof o};
        static unsigned char block[8192];
        char *list = strdup(argv[4]), *save = NULL;
        mcos_id_t parent = 0;

        o.cls = MCOS_CLASS_KV_BLOCK;
        o.ns = argv[3];
        o.hotness = 0.5;
        for (char *t = strtok_r(list, ",", &save); t;
             t = strtok_r(NULL, ",", &save)) {
            mcos_id_t id = strtoull(t, NULL, 16);

            o.parent = parent;
            fill(block, sizeof block, (unsigned)id);
            bad |= mcos_put(c, id, block, sizeof block, &o) != 0;
            parent = id;
        }
        free(list);
        mcos_close(c);
        return bad;
    }
    if (!strcmp(argv[2], "hot") && argc == 4) {
        /* One hot object that asks for HBM: what gets the L2 window. */
        struct mcos_place_opts o = {.struct_size = sizeof o};
        static unsigned char data[256 << 10];

        o.hotness = 1.0;
        o.preferred_tier = MCOS_TIER_HBM;
        fill(data, sizeof data, 99);
        bad |= mcos_put(c, strtoull(argv[3], NULL, 16), data, sizeof data,
                        &o) != 0;
        mcos_close(c);
        return bad;
    }
    /* put ID SIZE SEED / check ID SIZE SEED: one object with bytes from
     * SEED, stored or read back and compared.  evict ID POLICY (1 drop,
     * 2 demote, 3 to a peer) prints the agent's error on failure; stat ID
     * prints "tier=N state=N". */
    if (!strcmp(argv[2], "put") && argc == 6) {
        size_t len = strtoull(argv[4], NULL, 0);
        unsigned char *data = malloc(len ? len : 1);
        int r;

        fill(data, len, (unsigned)strtoul(argv[5], NULL, 0));
        r = mcos_put(c, strtoull(argv[3], NULL, 16), data, len, NULL);
        if (r) {
            fprintf(stderr, "put: %s\n", mcos_strerror(r));
        }
        free(data);
        mcos_close(c);
        return r != 0;
    }
    if (!strcmp(argv[2], "check") && argc == 6) {
        size_t len = strtoull(argv[4], NULL, 0), got = 0;
        unsigned char *data = malloc(len ? len : 1), *out = malloc(len + 1);
        int r;

        fill(data, len, (unsigned)strtoul(argv[5], NULL, 0));
        r = mcos_get_copy(c, strtoull(argv[3], NULL, 16), out, len + 1, &got);
        if (r) {
            fprintf(stderr, "get: %s\n", mcos_strerror(r));
        } else if (got != len || memcmp(out, data, len)) {
            fprintf(stderr, "get: %zu bytes that differ from what was put\n",
                    got);
            r = -1;
        }
        free(data);
        free(out);
        mcos_close(c);
        return r != 0;
    }
    if (!strcmp(argv[2], "evict") && argc == 5) {
        int r = mcos_evict(c, strtoull(argv[3], NULL, 16),
                           (enum mcos_evict_policy)atoi(argv[4]));

        if (r) {
            fprintf(stderr, "evict: %s\n", mcos_strerror(r));
        }
        mcos_close(c);
        return r != 0;
    }
    if (!strcmp(argv[2], "load") && argc == 7) {
        /* An engine's queue: report it, hold the connection (the report
         * counts while the client is connected), then leave. */
        struct mcos_load l = {
            .struct_size = sizeof l,
            .queued_requests = (uint32_t)strtoul(argv[3], NULL, 0),
            .running_requests = (uint32_t)strtoul(argv[4], NULL, 0),
            .queued_prefill_blocks = strtoull(argv[5], NULL, 0),
        };
        int r = mcos_report_load(c, &l);

        if (r) {
            fprintf(stderr, "load: %s\n", mcos_strerror(r));
        } else {
            usleep((useconds_t)(strtod(argv[6], NULL) * 1e6));
        }
        mcos_close(c);
        return r != 0;
    }
    if (!strcmp(argv[2], "move") && argc == 5) {
        int r = mcos_move(c, strtoull(argv[3], NULL, 16), MCOS_TIER_ANY,
                          (enum mcos_tier)atoi(argv[4]), MCOS_MOVE_WAIT);

        if (r) {
            fprintf(stderr, "move: %s\n", mcos_strerror(r));
        }
        mcos_close(c);
        return r != 0;
    }
    if (!strcmp(argv[2], "stat") && argc == 4) {
        struct mcos_stat st = {.struct_size = sizeof st};
        int r = mcos_stat(c, strtoull(argv[3], NULL, 16), &st);

        if (r) {
            fprintf(stderr, "stat: %s\n", mcos_strerror(r));
        } else {
            printf("tier=%d state=%d\n", (int)st.tier, (int)st.state);
        }
        mcos_close(c);
        return r != 0;
    }
    if (!strcmp(argv[2], "crash")) {
        struct mcos_view v;
        void *buf;

        bad |= mcos_get(c, 31, &v) != 0;
        bad |= mcos_place(c, 32, 4096, NULL, &buf) != 0;
        /* Exit holding both: the agent must clean up after us. */
        _Exit(bad);
    }
    return 2;
}
