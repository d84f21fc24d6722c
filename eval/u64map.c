/*
 * u64map: open addressing with linear probing and backward-shift deletion.
 */
#include "u64map.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The finaliser of splitmix64: a bijection that spreads consecutive ids
 * over the whole table. */
static inline size_t
mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return (size_t)x;
}

static int
alloc_slots(struct u64map *m, size_t nslots)
{
    struct u64map_slot *s = calloc(nslots, sizeof *s);

    if (!s) {
        return -ENOMEM;
    }
    m->slots = s;
    m->mask = nslots - 1;
    m->count = 0;
    return 0;
}

int
u64map_init(struct u64map *m, size_t expected)
{
    size_t n = 16;

    /* Keep the load factor at or below one half. */
    while (n < expected * 2) {
        n <<= 1;
    }
    return alloc_slots(m, n);
}

void
u64map_free(struct u64map *m)
{
    free(m->slots);
    m->slots = NULL;
    m->mask = 0;
    m->count = 0;
}

void
u64map_clear(struct u64map *m)
{
    if (m->slots) {
        memset(m->slots, 0, (m->mask + 1) * sizeof *m->slots);
    }
    m->count = 0;
}

bool
u64map_get(const struct u64map *m, uint64_t key, uint32_t *value)
{
    size_t i = mix(key) & m->mask;

    while (m->slots[i].used) {
        if (m->slots[i].key == key) {
            if (value) {
                *value = m->slots[i].value;
            }
            return true;
        }
        i = (i + 1) & m->mask;
    }
    return false;
}

static int
grow(struct u64map *m)
{
    struct u64map old = *m;
    int r = alloc_slots(m, (old.mask + 1) * 2);

    if (r) {
        *m = old;
        return r;
    }
    for (size_t i = 0; i <= old.mask; i++) {
        if (old.slots[i].used) {
            size_t j = mix(old.slots[i].key) & m->mask;

            while (m->slots[j].used) {
                j = (j + 1) & m->mask;
            }
            m->slots[j] = old.slots[i];
            m->count++;
        }
    }
    free(old.slots);
    return 0;
}

int
u64map_put(struct u64map *m, uint64_t key, uint32_t value)
{
    size_t i;

    if ((m->count + 1) * 2 > m->mask + 1) {
        int r = grow(m);

        if (r) {
            return r;
        }
    }
    i = mix(key) & m->mask;
    while (m->slots[i].used) {
        if (m->slots[i].key == key) {
            m->slots[i].value = value;
            return 0;
        }
        i = (i + 1) & m->mask;
    }
    m->slots[i].key = key;
    m->slots[i].value = value;
    m->slots[i].used = 1;
    m->count++;
    return 0;
}

bool
u64map_del(struct u64map *m, uint64_t key)
{
    size_t i = mix(key) & m->mask;

    while (m->slots[i].used) {
        if (m->slots[i].key == key) {
            break;
        }
        i = (i + 1) & m->mask;
    }
    if (!m->slots[i].used) {
        return false;
    }
    /* Backward shift: pull later members of the probe run into the hole
     * when their home slot does not lie cyclically in (hole, j]. */
    for (size_t j = (i + 1) & m->mask; m->slots[j].used;
         j = (j + 1) & m->mask) {
        size_t home = mix(m->slots[j].key) & m->mask;

        if (((j - home) & m->mask) >= ((j - i) & m->mask)) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i].used = 0;
    m->count--;
    return true;
}
