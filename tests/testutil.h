/*
 * Shared helpers for the Check unit tests: a main() that runs one suite,
 * temporary directories, and assertions on error codes and messages.
 */
#ifndef MCOS_TESTUTIL_H
#define MCOS_TESTUTIL_H

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MCOS_TEST_MAIN(SUITE_FN)                                              \
    int main(void)                                                            \
    {                                                                         \
        SRunner *sr = srunner_create(SUITE_FN());                             \
        int failed;                                                           \
                                                                              \
        srunner_run_all(sr, CK_NORMAL);                                       \
        failed = srunner_ntests_failed(sr);                                   \
        srunner_free(sr);                                                     \
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;                          \
    }

/* Asserts an error code and that the message contains `needle`. */
#define ck_assert_err(RC, WANT, MSG, NEEDLE)                                  \
    do {                                                                      \
        ck_assert_int_eq((RC), (WANT));                                       \
        ck_assert_msg(strstr((MSG), (NEEDLE)) != NULL,                        \
                      "message '%s' lacks '%s'", (MSG), (NEEDLE));            \
    } while (0)

/* A fresh directory under $TMPDIR (or /tmp); caller frees the string. */
static inline char *
test_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char *path;

    if (asprintf(&path, "%s/mcos-test-XXXXXX", base ? base : "/tmp") < 0) {
        return NULL;
    }
    if (!mkdtemp(path)) {
        free(path);
        return NULL;
    }
    return path;
}

static inline void
test_rmrf(const char *path)
{
    char *cmd;

    if (path && asprintf(&cmd, "rm -rf '%s'", path) >= 0) {
        if (system(cmd)) {
            /* Leftovers in /tmp are harmless. */
        }
        free(cmd);
    }
}

/* A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks
 * it), for tests that need a fixed address. */
static inline int
test_free_port(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof sin;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port = -1;

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0 &&
        getsockname(fd, (struct sockaddr *)&sin, &len) == 0) {
        port = ntohs(sin.sin_port);
    }
    if (fd >= 0) {
        close(fd);
    }
    return port;
}

#endif /* MCOS_TESTUTIL_H */
