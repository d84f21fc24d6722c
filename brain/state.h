/*
 * The brain's local state directory, for the embedded default (no etcd).
 *
 * Holds what must survive a brain restart: the table generation counter,
 * so generations never go backward.  The directory is locked (flock) for
 * the brain's lifetime, so two brains cannot share it by mistake.  Writes
 * are atomic: a temp file, fsync, rename, fsync of the directory.
 *
 * Thread-safety: loop thread only.
 */
#ifndef BRAIN_STATE_H
#define BRAIN_STATE_H

#include <stddef.h>
#include <stdint.h>

struct brain_state;

/* Creates the directory if needed, locks it and reads the counter (0 when
 * the directory is new).  A corrupt state file is an error, not a reset. */
int brain_state_open(const char *dir, struct brain_state **out, char *err,
                     size_t errlen);
void brain_state_close(struct brain_state *);

uint64_t brain_state_gen(const struct brain_state *);
int brain_state_set_gen(struct brain_state *, uint64_t gen, char *err,
                        size_t errlen);

#endif /* BRAIN_STATE_H */
