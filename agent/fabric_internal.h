/*
 * The fabric's internals that tests reach without the network: the
 * control endpoint's handling of one request (fabric.c), so that a test
 * or fuzz target can hand it bytes as a peer would send them.  Not for
 * the agent's other modules, which go through fabric.h.
 */
#ifndef AGENT_FABRIC_INTERNAL_H
#define AGENT_FABRIC_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

struct agent_fabric;

/* Serves one request as it arrived on the control endpoint (an encoded
 * PeerRequest, or anything a peer sent): checks the sender, carries out
 * ALLOC, COMMIT or FREE, and encodes the PeerReply, refusals included,
 * into *out (malloc'd, the caller frees it).  0, or the negative errno
 * of the reply's encoding, with nothing in *out. */
int agent_fabric_serve(struct agent_fabric *f, const void *data, size_t len,
                       uint8_t **out, size_t *out_len);

#endif /* AGENT_FABRIC_INTERNAL_H */
