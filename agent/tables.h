/*
 * The agent's current policy table, readable without locks.
 *
 * The loop thread applies each update from the brain by building a new
 * immutable snapshot (mcos_table_apply) and publishing it with an atomic
 * pointer swap (liburcu's rcu_xchg_pointer); the old snapshot is freed by
 * call_rcu once every reader that might hold it has left its read-side
 * critical section.  Readers -- the dataplane in the hot path, the API --
 * bracket their use with agent_tables_read_lock/unlock, which cost a few
 * nanoseconds and never block or wait for the writer.
 *
 * A failed apply leaves the current snapshot in place: the agent keeps
 * executing its last good table.
 *
 * Where it sits: step 5 (push -> apply).  Thread-safety: one writer (the
 * loop thread); any number of readers on threads registered with
 * agent_tables_register_thread.
 */
#ifndef AGENT_TABLES_H
#define AGENT_TABLES_H

#include <stddef.h>
#include <stdint.h>

#include "mcos.pb-c.h"
#include "table.h"

struct agent_tables;

int agent_tables_create(const char *node, struct agent_tables **out);

/* Waits for deferred frees, then frees everything. */
void agent_tables_destroy(struct agent_tables *);

/* Every thread that reads must register first (and unregister). */
void agent_tables_register_thread(void);
void agent_tables_unregister_thread(void);

/* Applies an update.  0: applied; 1: already at that generation;
 * negative errno: refused (see mcos_table_apply), nothing changed. */
int agent_tables_apply(struct agent_tables *, const Mcos__TableUpdate *,
                       char *err, size_t errlen);

/* The generation in force (0 before the first table). */
uint64_t agent_tables_gen(const struct agent_tables *);

/* Read side.  The table (NULL before the first) stays valid until unlock. */
const struct mcos_table *agent_tables_read_lock(struct agent_tables *);
void agent_tables_read_unlock(struct agent_tables *);

#endif /* AGENT_TABLES_H */
