/*
 * Fixtures for the brain's tests: hand-made hellos for small clusters.
 */
#ifndef MCOS_TEST_BRAINFIX_H
#define MCOS_TEST_BRAINFIX_H

#include "mcos.pb-c.h"
#include "testutil.h"

/* A heap-allocated hello as the wire module would produce: free with
 * mcos__hello__free_unpacked (it is packed and unpacked here). */
static inline Mcos__Hello *
fix_hello(const char *node, uint64_t boot, const char *rack, bool hbm,
          bool nvme, const char *addr, uint32_t port, uint64_t applied)
{
    Mcos__Hello h = MCOS__HELLO__INIT;
    Mcos__Labels labels = MCOS__LABELS__INIT;
    Mcos__TierInfo tiers[3], *tp[3];
    Mcos__Endpoint ep = MCOS__ENDPOINT__INIT, *epp = &ep;
    size_t n = 0, len;
    uint8_t *buf;
    Mcos__Hello *out;

    for (int i = 0; i < 3; i++) {
        mcos__tier_info__init(&tiers[i]);
        tp[i] = &tiers[i];
    }
    if (hbm) {
        tiers[n].kind = MCOS__TIER_KIND__TIER_HBM;
        tiers[n].capacity_bytes = 16ULL << 30;
        tiers[n++].available = true;
    }
    tiers[n].kind = MCOS__TIER_KIND__TIER_DRAM;
    tiers[n].capacity_bytes = 64ULL << 30;
    tiers[n++].available = true;
    if (nvme) {
        tiers[n].kind = MCOS__TIER_KIND__TIER_NVME;
        tiers[n].capacity_bytes = 1ULL << 40;
        tiers[n++].available = true;
    }
    labels.rack = (char *)rack;
    labels.zone = "z1";
    labels.host = (char *)node;
    ep.transport = MCOS__TRANSPORT__TRANSPORT_TCP;
    ep.address = (char *)addr;
    ep.port = port;
    h.node = (char *)node;
    h.boot_id = boot;
    h.labels = &labels;
    h.n_tiers = n;
    h.tiers = tp;
    h.n_endpoints = 1;
    h.endpoints = &epp;
    h.applied_gen = applied;
    h.version = "test";
    len = mcos__hello__get_packed_size(&h);
    buf = malloc(len);
    mcos__hello__pack(&h, buf);
    out = mcos__hello__unpack(NULL, len, buf);
    free(buf);
    return out;
}

/* Reads a golden file; with MCOS_UPDATE_GOLDEN=1, writes it instead. */
static inline void
check_golden(const char *name, const char *got)
{
    const char *dir = getenv("MCOS_TEST_DATA");
    char path[512];
    char *want = NULL;
    size_t len = 0;
    FILE *f;

    ck_assert_ptr_nonnull(dir);
    snprintf(path, sizeof path, "%s/golden/%s", dir, name);
    if (getenv("MCOS_UPDATE_GOLDEN")) {
        f = fopen(path, "w");
        ck_assert_ptr_nonnull(f);
        fputs(got, f);
        fclose(f);
        return;
    }
    f = fopen(path, "r");
    ck_assert_msg(f != NULL, "missing golden file %s", path);
    ck_assert_int_ne(getdelim(&want, &len, '\0', f), -1);
    fclose(f);
    ck_assert_msg(!strcmp(want, got), "%s differs:\n--- want\n%s--- got\n%s",
                  path, want, got);
    free(want);
}

#endif /* MCOS_TEST_BRAINFIX_H */
