/*
 * Policy tables: one node's compiled rules at one generation.
 *
 * A table is an immutable snapshot: (node, gen, format_version, rules sorted
 * by key).  The brain builds one per node per generation (compile step) and
 * sends the difference from what the node acknowledged (push step); the
 * agent applies that difference to its current table, producing a new
 * snapshot it swaps in atomically (apply step).  Because snapshots never
 * change, readers in the hot path use them without locks.
 *
 * Rules are keyed by kind and subject ("tier/dram", "demotion/hbm",
 * "peer/n2", "param/report_interval_ms", "replica/<obj>/<peer>",
 * "drop/<obj>", "prefetch/<trigger>", "residency", "reuse/<obj>").  A
 * delta names rules to insert or replace and keys to remove, and applies
 * only to a table at exactly its base generation; anything else is
 * refused with a clear error and the current table stays as it was.
 * Applying the same update twice is a no-op that succeeds.
 *
 * The canonical text dump (one line per rule, sorted by key) is what
 * `mcos-admin` shows and what golden tests compare.
 *
 * Thread-safety: a built table may be read from any number of threads.
 */
#ifndef MCOS_TABLE_H
#define MCOS_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcos.pb-c.h"

struct mcos_table;

#define MCOS_TABLE_ERR_LEN 200
/* Most rules one table may hold: bounds memory for a hostile update. */
#define MCOS_TABLE_MAX_RULES 100000
#define MCOS_TABLE_MAX_KEY   128
/* Most objects one prefetch rule may name. */
#define MCOS_TABLE_MAX_PREFETCH 64
/* Most reuse rules (reuse/<object>) one table may hold. */
#define MCOS_TABLE_MAX_REUSE 256

/* Builds a table from rules (copied; the caller keeps its own).  Fails
 * with -EINVAL on an invalid rule and -EEXIST on a duplicate key. */
int mcos_table_build(const char *node, uint64_t gen,
                     const Mcos__Rule *const *rules, size_t n,
                     struct mcos_table **out, char *err, size_t errlen);

void mcos_table_free(struct mcos_table *);

/* The same rules at another generation, sharing `t`'s rule storage (which
 * lives until the last table using it is freed), so stamping an unchanged
 * table with a new generation costs one small allocation. */
int mcos_table_restamp(const struct mcos_table *t, uint64_t gen,
                       struct mcos_table **out);

const char *mcos_table_node(const struct mcos_table *);
uint64_t mcos_table_gen(const struct mcos_table *);
size_t mcos_table_n_rules(const struct mcos_table *);
const Mcos__Rule *mcos_table_rule(const struct mcos_table *, size_t i);
const Mcos__Rule *mcos_table_find(const struct mcos_table *, const char *key);

/* True when both hold the same rules (generations aside). */
bool mcos_table_same_rules(const struct mcos_table *,
                           const struct mcos_table *);

/* The update that turns `base` (NULL: nothing, a full snapshot) into `to`.
 * The update points into both tables' rules: free it with
 * mcos_table_update_free before freeing either table. */
int mcos_table_diff(const struct mcos_table *base, const struct mcos_table *to,
                    Mcos__TableUpdate **out);
void mcos_table_update_free(Mcos__TableUpdate *);

/* Applies an update received for `node` to `cur` (NULL: none yet).
 * Returns 0 with a new table in *out, or 1 when `cur` is already at the
 * update's generation (idempotent: nothing to do, *out untouched).  `cur`
 * is never changed.  Errors:
 * -EPROTONOSUPPORT (format version), -EINVAL (wrong node, bad rule),
 * -ESTALE (base generation is not cur's, or gen does not move forward),
 * -ENOENT (removing a key that is not there), -ENOSPC (too many rules). */
int mcos_table_apply(const struct mcos_table *cur,
                     const Mcos__TableUpdate *update, const char *node,
                     struct mcos_table **out, char *err, size_t errlen);

/* Validates one rule; used by build and apply. */
int mcos_table_rule_check(const Mcos__Rule *, char *err, size_t errlen);

/* The canonical dump, malloc'd.  With `header`, a first line names the
 * node, generation and format. */
int mcos_table_dump(const struct mcos_table *, bool header, char **out);

/* Hot-path accessors, O(1), precomputed at build. */
const Mcos__TierRule *mcos_table_tier_rule(const struct mcos_table *,
                                           int tier);
/* The next tier down the demotion chain from `tier`, or 0 for none. */
int mcos_table_demotion_next(const struct mcos_table *, int tier);
/* A numeric parameter, or `def` when the table has none. */
uint64_t mcos_table_param(const struct mcos_table *, const char *name,
                          uint64_t def);

struct mcos_residency_table;
/* The table's residency rule, unpacked into *out with its default class:
 * 0, or -ENOENT when the table has none (demotion is then plain LRU). */
int mcos_table_residency(const struct mcos_table *,
                         struct mcos_residency_table *out,
                         unsigned *default_class);

#endif /* MCOS_TABLE_H */
