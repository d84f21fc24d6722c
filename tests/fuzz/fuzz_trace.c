/*
 * Fuzz target: the trace reader (eval/trace.c) on arbitrary bytes, as a
 * trace file from anyone.  Both error modes and two block sizes; in skip
 * mode the stats must add up.  Whatever the bytes: no crash, no leak, no
 * undefined behaviour, and every accepted request within the documented
 * limits.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(const struct trace *t)
{
    for (size_t i = 0; i < t->n; i++) {
        const struct trace_request *r = &t->req[i];

        if (r->input_tokens == 0 || r->n_blocks > TRACE_MAX_BLOCKS ||
            (i > 0 && r->arrival_us < t->req[i - 1].arrival_us)) {
            abort();
        }
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct trace_options opts[] = {
        {.on_error = TRACE_REFUSE},
        {.on_error = TRACE_SKIP},
        {.on_error = TRACE_SKIP, .block_tokens = 16, .max_requests = 3},
    };

    static char empty[1];
    static bool quiet;

    if (!quiet) {
        mcos_log_set_spec("err"); /* skipped lines warn */
        quiet = true;
    }

    for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++) {
        /* fmemopen() needs a size of at least 1: an empty input is a
         * one-byte buffer already read. */
        FILE *f =
            size ? fmemopen((void *)data, size, "r") : fmemopen(empty, 1, "r");
        struct trace *t = NULL;
        char err[256];

        if (!f) {
            return 0;
        }
        if (size == 0) {
            fgetc(f);
        }
        if (trace_load_stream(f, "fuzz", &opts[k], &t, err, sizeof err) == 0) {
            check(t);
            if (opts[k].on_error == TRACE_SKIP &&
                t->stats.requests + t->stats.skipped + t->stats.blank >
                    t->stats.lines) {
                abort();
            }
            trace_destroy(t);
        }
        fclose(f);
    }
    return 0;
}
