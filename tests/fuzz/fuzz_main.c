/*
 * A main() for the fuzz targets without libFuzzer: runs every file named
 * on the command line (every regular file of a named directory, in name
 * order) through LLVMFuzzerTestOneInput once.  CTest runs each target
 * this way over its committed corpus (tests/fuzz/corpus/<target>/) under
 * the build's sanitizers, so every input a fuzzing run kept, crashers
 * included once fixed, stays a regression test on every build.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long len;

    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    if (fseek(f, 0, SEEK_END) || (len = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET)) {
        fprintf(stderr, "%s: cannot size it\n", path);
        fclose(f);
        return -1;
    }
    /* At least one byte, so that an empty input is a valid pointer. */
    buf = malloc((size_t)len + 1);
    if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len) {
        fprintf(stderr, "%s: cannot read it\n", path);
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, (size_t)len);
    free(buf);
    return 0;
}

static int
by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

int
main(int argc, char **argv)
{
    int runs = 0, bad = 0;

    for (int i = 1; i < argc; i++) {
        struct dirent **ents;
        struct stat st;
        int n;

        if (stat(argv[i], &st) || !S_ISDIR(st.st_mode)) {
            bad += run_file(argv[i]) != 0;
            runs++;
            continue;
        }
        n = scandir(argv[i], &ents, NULL, by_name);
        if (n < 0) {
            fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        for (int k = 0; k < n; k++) {
            char path[4096];

            snprintf(path, sizeof path, "%s/%s", argv[i], ents[k]->d_name);
            if (!stat(path, &st) && S_ISREG(st.st_mode)) {
                bad += run_file(path) != 0;
                runs++;
            }
            free(ents[k]);
        }
        free(ents);
    }
    printf("%d input(s) run%s\n", runs, bad ? ", some unreadable" : "");
    return bad || runs == 0;
}
