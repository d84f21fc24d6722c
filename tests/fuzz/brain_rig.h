/*
 * A real brain for fuzz targets, without sockets: the bus server's calls
 * are replaced at link time (-Wl,--wrap=mcos_bus_server_create,...; see
 * BRAIN_RIG_WRAP in CMakeLists.txt), so a message is delivered by calling
 * the brain's own request handler, and its answer is checked (it must
 * decode as a reply) and freed here.  The brain starts with three nodes
 * that said hello (n1 in rack r1 with HBM and NVMe, n2 in r1, n3 in r2
 * with NVMe) and four KV blocks of namespace "m" (ids 0xb10c0..0xb10c3,
 * chained) reported in n1's HBM, on a fake clock, with its wall-clock tick
 * stopped.
 */
#ifndef FUZZ_BRAIN_RIG_H
#define FUZZ_BRAIN_RIG_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "brain.h"
#include "clock.h"
#include "wire.h"

struct brain_rig {
    uv_loop_t loop;
    struct mcos_fake_clock clk;
    struct brain *brain; /* NULL while stopped */
    char state_dir[64];
};

extern struct brain_rig rig;
extern const char *const rig_node_names[3];
extern const uint64_t rig_node_boots[3];

/* Once per process: logs off, a state directory under /tmp named after
 * `name`, the loop and the clock; removed at exit. */
void rig_init(const char *name);
/* Starts a brain (HTTP API on `http_listen`: "" for none) with the
 * fixture above; aborts if the fixture is refused. */
void rig_start(const char *http_listen);
/* Closes the brain; aborts if a request it was given went unanswered. */
void rig_stop(void);
/* Delivers one message as the bus would, then runs what it scheduled. */
void rig_deliver(const void *data, size_t len);
void rig_deliver_msg(Mcos__MsgType type, const ProtobufCMessage *body);

#endif /* FUZZ_BRAIN_RIG_H */
