#include "ids.h"

#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>
#include <xxhash.h>

bool
mcos_node_name_valid(const char *name)
{
    size_t len = name ? strlen(name) : 0;

    if (len == 0 || len > MCOS_NODE_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                     (c >= '0' && c <= '9');

        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-'))) {
            return false;
        }
    }
    return true;
}

struct mcos_boot_id
mcos_boot_id_new(void)
{
    uint64_t v = 0;

    while (v == 0) {
        if (getrandom(&v, sizeof v, 0) != sizeof v) {
            /* getrandom on Linux >= 3.17 does not fail for 8 bytes once
             * the pool is ready; fall back to something unique anyway. */
            v = (uint64_t)(uintptr_t)&v ^
                ((uint64_t)getpid() << 32 ^ (uint64_t)time(NULL));
        }
    }
    return mcos_boot_id(v);
}

struct mcos_object_id
mcos_object_id_from_name(const char *name, size_t len)
{
    uint64_t v = XXH3_64bits(name, len);

    return mcos_object_id(v ? v : 1);
}
