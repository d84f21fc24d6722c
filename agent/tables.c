#include "tables.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <urcu/urcu-memb.h>

#include "ids.h"

/* A published snapshot, with the rcu_head call_rcu needs. */
struct snapshot {
    struct rcu_head rcu;      /* for deferred free */
    struct mcos_table *table; /* the immutable table */
};

struct agent_tables {
    char node[MCOS_NODE_NAME_MAX + 1]; /* whose tables */
    struct snapshot *cur;              /* RCU-protected pointer */
    uint64_t gen;                      /* cur's generation, for the writer */
};

int
agent_tables_create(const char *node, struct agent_tables **out)
{
    struct agent_tables *t;

    if (!mcos_node_name_valid(node)) {
        return -EINVAL;
    }
    t = calloc(1, sizeof *t);
    if (!t) {
        return -ENOMEM;
    }
    strcpy(t->node, node);
    *out = t;
    return 0;
}

static void
snapshot_free_rcu(struct rcu_head *head)
{
    struct snapshot *s = caa_container_of(head, struct snapshot, rcu);

    mcos_table_free(s->table);
    free(s);
}

void
agent_tables_destroy(struct agent_tables *t)
{
    if (!t) {
        return;
    }
    /* Wait for queued frees; nobody reads any more. */
    urcu_memb_barrier();
    if (t->cur) {
        mcos_table_free(t->cur->table);
        free(t->cur);
    }
    free(t);
}

void
agent_tables_register_thread(void)
{
    urcu_memb_register_thread();
}

void
agent_tables_unregister_thread(void)
{
    urcu_memb_unregister_thread();
}

int
agent_tables_apply(struct agent_tables *t, const Mcos__TableUpdate *u,
                   char *err, size_t errlen)
{
    struct snapshot *s, *old;
    struct mcos_table *next = NULL;
    int r;

    /* The writer is the only one to change t->cur, so it may read it
     * without the read lock. */
    r = mcos_table_apply(t->cur ? t->cur->table : NULL, u, t->node, &next, err,
                         errlen);
    if (r != 0) {
        return r; /* refused, or 1: already there */
    }
    s = calloc(1, sizeof *s);
    if (!s) {
        mcos_table_free(next);
        return -ENOMEM;
    }
    s->table = next;
    old = rcu_xchg_pointer(&t->cur, s);
    t->gen = mcos_table_gen(next);
    if (old) {
        urcu_memb_call_rcu(&old->rcu, snapshot_free_rcu);
    }
    return 0;
}

uint64_t
agent_tables_gen(const struct agent_tables *t)
{
    return t->gen;
}

const struct mcos_table *
agent_tables_read_lock(struct agent_tables *t)
{
    struct snapshot *s;

    urcu_memb_read_lock();
    s = rcu_dereference(t->cur);
    return s ? s->table : NULL;
}

void
agent_tables_read_unlock(struct agent_tables *t)
{
    (void)t;
    urcu_memb_read_unlock();
}
