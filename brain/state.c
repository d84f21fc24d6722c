#include "state.h"
#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct brain_state {
    char *dir;    /* the directory */
    int lock_fd;  /* holds the flock */
    uint64_t gen; /* last generation saved */
};

static int
mkdir_p(const char *dir)
{
    char buf[4096];
    size_t len = strlen(dir);

    if (len == 0 || len >= sizeof buf) {
        return -ENAMETOOLONG;
    }
    memcpy(buf, dir, len + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0755) && errno != EEXIST) {
                return -errno;
            }
            *p = '/';
        }
    }
    if (mkdir(buf, 0755) && errno != EEXIST) {
        return -errno;
    }
    return 0;
}

static int
read_gen(struct brain_state *st, char *err, size_t errlen)
{
    char path[4200];
    json_error_t jerr;
    json_t *root, *gen;

    snprintf(path, sizeof path, "%s/brain.json", st->dir);
    if (access(path, F_OK)) {
        st->gen = 0;
        return 0;
    }
    root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        mcos_seterr(err, errlen,
                    "state file %s is corrupt (line %d: %s); "
                    "move it away to start over",
                    path, jerr.line, jerr.text);
        return -EINVAL;
    }
    gen = json_object_get(root, "gen");
    if (!json_is_integer(gen) || json_integer_value(gen) < 0) {
        mcos_seterr(err, errlen,
                    "state file %s is corrupt: 'gen' must be a "
                    "non-negative integer; move it away to start over",
                    path);
        json_decref(root);
        return -EINVAL;
    }
    st->gen = (uint64_t)json_integer_value(gen);
    json_decref(root);
    return 0;
}

int
brain_state_open(const char *dir, struct brain_state **out, char *err,
                 size_t errlen)
{
    struct brain_state *st = calloc(1, sizeof *st);
    char path[4200];
    int r;

    if (!st) {
        return -ENOMEM;
    }
    st->lock_fd = -1;
    st->dir = strdup(dir);
    if (!st->dir) {
        r = -ENOMEM;
        goto fail;
    }
    r = mkdir_p(dir);
    if (r) {
        mcos_seterr(err, errlen, "cannot create state directory %s: %s", dir,
                    strerror(-r));
        goto fail;
    }
    snprintf(path, sizeof path, "%s/brain.lock", dir);
    st->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (st->lock_fd < 0) {
        r = -errno;
        mcos_seterr(err, errlen, "cannot open %s: %s", path, strerror(-r));
        goto fail;
    }
    if (flock(st->lock_fd, LOCK_EX | LOCK_NB)) {
        r = errno == EWOULDBLOCK ? -EBUSY : -errno;
        mcos_seterr(err, errlen,
                    "state directory %s is in use by another brain", dir);
        goto fail;
    }
    r = read_gen(st, err, errlen);
    if (r) {
        goto fail;
    }
    *out = st;
    return 0;

fail:
    brain_state_close(st);
    return r;
}

void
brain_state_close(struct brain_state *st)
{
    if (!st) {
        return;
    }
    if (st->lock_fd >= 0) {
        close(st->lock_fd);
    }
    free(st->dir);
    free(st);
}

uint64_t
brain_state_gen(const struct brain_state *st)
{
    return st->gen;
}

int
brain_state_set_gen(struct brain_state *st, uint64_t gen, char *err,
                    size_t errlen)
{
    char tmp[4200], path[4200];
    int fd, dfd, r = 0;
    FILE *f;

    snprintf(tmp, sizeof tmp, "%s/brain.json.tmp", st->dir);
    snprintf(path, sizeof path, "%s/brain.json", st->dir);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        r = -errno;
        goto fail;
    }
    f = fdopen(fd, "w");
    if (!f) {
        r = -errno;
        close(fd);
        goto fail;
    }
    fprintf(f, "{\"gen\": %" PRIu64 "}\n", gen);
    if (fflush(f) || fdatasync(fd)) {
        r = -errno;
        fclose(f);
        goto fail;
    }
    if (fclose(f) || rename(tmp, path)) {
        r = -errno;
        goto fail;
    }
    dfd = open(st->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    st->gen = gen;
    return 0;

fail:
    mcos_seterr(err, errlen, "cannot save state to %s: %s", path,
                strerror(-r));
    return r;
}
