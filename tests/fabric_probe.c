/*
 * fabric_probe: sends one hand-made request to an agent's fabric control
 * endpoint and prints the answer, so integration tests can check how an
 * agent treats peers it did not admit and malformed input.
 *
 *   fabric_probe URL NODE BOOT_HEX alloc SIZE | commit HANDLE | free HANDLE
 *   fabric_probe URL - - garbage | badop
 *
 * Prints "status=N error=TEXT" and exits 0 when an answer came back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "wire.h"

int
main(int argc, char **argv)
{
    Mcos__PeerRequest q = MCOS__PEER_REQUEST__INIT;
    struct mcos_wire_msg m;
    const Mcos__PeerReply *rep;
    char err[256];
    uint8_t *buf = NULL;
    void *out = NULL;
    size_t len = 0, out_len = 0;
    int r;

    if (argc < 5) {
        fprintf(stderr, "usage: fabric_probe URL NODE BOOT_HEX OP [ARG]\n");
        return 2;
    }
    q.node = argv[2];
    q.boot_id = strtoull(argv[3], NULL, 16);
    q.object_id = 0x5eed;
    q.transport = MCOS__TRANSPORT__TRANSPORT_TCP;
    q.purpose = MCOS__PEER_PURPOSE__PURPOSE_HOSTED;
    if (!strcmp(argv[4], "alloc") && argc == 6) {
        q.op = MCOS__PEER_OP__PEER_ALLOC;
        q.size = strtoull(argv[5], NULL, 0);
    } else if (!strcmp(argv[4], "commit") && argc == 6) {
        q.op = MCOS__PEER_OP__PEER_COMMIT;
        q.handle = strtoull(argv[5], NULL, 0);
    } else if (!strcmp(argv[4], "free") && argc == 6) {
        q.op = MCOS__PEER_OP__PEER_FREE;
        q.handle = strtoull(argv[5], NULL, 0);
    } else if (!strcmp(argv[4], "badop")) {
        q.op = 77;
    } else if (!strcmp(argv[4], "garbage")) {
        static uint8_t junk[] = {0xde, 0xad, 0xbe, 0xef, 0x01, 0x02};

        buf = malloc(sizeof junk);
        memcpy(buf, junk, sizeof junk);
        len = sizeof junk;
    } else {
        fprintf(stderr, "fabric_probe: unknown op '%s'\n", argv[4]);
        return 2;
    }
    if (!buf && mcos_wire_encode(MCOS__MSG_TYPE__MSG_PEER_REQUEST, &q.base,
                                 &buf, &len)) {
        fprintf(stderr, "fabric_probe: cannot encode\n");
        return 1;
    }
    r = mcos_bus_call_sync(argv[1], buf, len, 5000, &out, &out_len, err,
                           sizeof err);
    free(buf);
    if (r) {
        fprintf(stderr, "fabric_probe: %s\n", err);
        return 1;
    }
    r = mcos_wire_decode(out, out_len, &m, err, sizeof err);
    free(out);
    if (r || !(rep = mcos_wire_peer_reply(&m))) {
        fprintf(stderr, "fabric_probe: bad reply: %s\n", r ? err : "type");
        return 1;
    }
    printf("status=%d error=%s\n", rep->status, rep->error);
    mcos_wire_msg_free(&m);
    return 0;
}
