/*
 * Cluster membership through etcd leases.
 *
 * An agent registers its node as /mcos/nodes/<node>, attached to a lease it
 * keeps alive.  When the agent dies, hangs, or loses its network, renewals
 * stop, etcd expires the lease and deletes the key; the brain, watching the
 * prefix, marks the node failed at once instead of waiting out its own
 * silence timer.  The lease TTL therefore bounds failure detection for
 * nodes the brain cannot hear from.
 *
 * Both halves retry on their own: a registration whose lease is lost (etcd
 * said it expired, or no renewal got through within the TTL) is made again
 * with a new lease, and a watch that breaks is resumed after the last
 * revision it delivered, so no deletion is missed across a reconnect
 * (unless etcd compacted it away, in which case the watch starts from now
 * and the brain's silence timer still catches the node).
 *
 * Where it sits: over common/etcd.c, under the agent's and the brain's
 * life cycles.  Thread-safety: none; the loop thread only.
 */
#ifndef MCOS_MEMBERSHIP_H
#define MCOS_MEMBERSHIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct mcos_etcd_options;

/* Every registration lives under this prefix. */
#define MCOS_MEMBERSHIP_PREFIX "/mcos/nodes/"

/* How long to wait before trying again after an etcd error. */
#define MCOS_MEMBERSHIP_RETRY_MS 1000

/* --- The agent's half ---------------------------------------------------
 */
struct mcos_member;

/* Starts registering `node` with `value` (a short JSON description) under
 * a lease of `ttl_s` seconds (2..3600), against `endpoints` with `opt`
 * (see mcos_etcd_create; NULL: defaults).  Returns 0, or -EINVAL with the
 * reason in err. */
int mcos_member_start(uv_loop_t *, const char *endpoints,
                      const struct mcos_etcd_options *opt, const char *node,
                      const char *value, int64_t ttl_s,
                      struct mcos_member **out, char *err, size_t errlen);

/* Stops renewing; the key goes when its lease expires.  The memory is
 * freed once the loop has run the last callbacks.  NULL is a no-op. */
void mcos_member_stop(struct mcos_member *);

/* --- The brain's half ---------------------------------------------------
 */
struct mcos_members_watch;

/* Runs for each registration that disappears (lease expired or revoked,
 * key deleted): `node` is the name after the prefix. */
typedef void (*mcos_member_gone_cb)(const char *node, void *arg);

/* Starts watching MCOS_MEMBERSHIP_PREFIX (etcd options as for
 * mcos_member_start).  Returns 0, or -EINVAL with the reason in err. */
int mcos_members_watch_start(uv_loop_t *, const char *endpoints,
                             const struct mcos_etcd_options *opt,
                             mcos_member_gone_cb cb, void *arg,
                             struct mcos_members_watch **out, char *err,
                             size_t errlen);

/* True while the watch stream is established. */
bool mcos_members_watching(const struct mcos_members_watch *);

/* Ends the watch; `cb` does not run again.  NULL is a no-op. */
void mcos_members_watch_stop(struct mcos_members_watch *);

#endif /* MCOS_MEMBERSHIP_H */
