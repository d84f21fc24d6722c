/*
 * Request traces in the Mooncake JSONL format, for the trace-driven
 * evaluation harness (mcos-bench).
 *
 * One JSON object a line:
 *
 *     {"timestamp": 27482, "input_length": 6955, "output_length": 52,
 *      "hash_ids": [46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59]}
 *
 * `timestamp` is the arrival in milliseconds from the start of the trace
 * (an integer, or a number with a fraction), `input_length` and
 * `output_length` count tokens, and `hash_ids` names the prompt's blocks
 * of `block_tokens` tokens (512 in the Mooncake traces), prefix-chained:
 * a block's id stands for the whole prompt up to and including it, so two
 * requests that share the id at position i share the first i+1 blocks.
 * Other members are ignored, so traces with extra fields load.
 *
 * Validation, per line, with the line number in every message:
 *   - the line is one JSON object (blank lines are ignored);
 *   - timestamp: a non-negative number, at most TRACE_MAX_TIMESTAMP_MS;
 *   - input_length: an integer in 1..TRACE_MAX_TOKENS;
 *   - output_length: an integer in 0..TRACE_MAX_TOKENS;
 *   - hash_ids: an array of at most TRACE_MAX_BLOCKS non-negative
 *     integers (at most 2^63 - 1, JSON's integer range in jansson);
 *   - consistency: the number of ids n must be within one of the blocks
 *     the prompt needs, |n - ceil(input_length / block_tokens)| <= 1.
 *     The slack of one tolerates tokenisers that count a BOS token or
 *     drop a trailing partial block; anything further off almost always
 *     means a wrong --block-tokens, which this catches.
 * Block i covers tokens [i * B, min((i + 1) * B, input_length)) for block
 * size B; tokens past n * B (when the ids are one short) are never
 * reusable.
 *
 * Malformed lines either refuse the whole file (TRACE_REFUSE: the first
 * one is the error) or are skipped and counted (TRACE_SKIP: the first
 * TRACE_REPORT_BAD are logged with their line numbers, and the first is
 * kept in the stats).  A file with no request at all -- empty, only blank
 * lines, or every line skipped -- is an error either way.
 *
 * Arrivals should not decrease; where they do, trace_load() sorts the
 * requests by timestamp, keeping file order among equal ones, and says so
 * in its stats.
 *
 * This module owns jansson's error reporting for trace files.
 *
 * Thread-safety: none needed; a reader or a loaded trace belongs to one
 * thread.  A loaded trace is read-only and may then be shared.
 */
#ifndef MCOS_EVAL_TRACE_H
#define MCOS_EVAL_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define TRACE_DEFAULT_BLOCK_TOKENS 512
#define TRACE_MAX_TOKENS           (1u << 28)
#define TRACE_MAX_BLOCKS           (1u << 20)
#define TRACE_MAX_TIMESTAMP_MS     1e12
#define TRACE_MAX_LINE             (64u << 20)
#define TRACE_REPORT_BAD           10

/* What to do with a malformed line. */
enum trace_on_error {
    TRACE_REFUSE = 0, /* the first malformed line fails the whole read */
    TRACE_SKIP = 1,   /* malformed lines are skipped and counted */
};

/* Reading options; a zeroed struct gives the defaults. */
struct trace_options {
    uint32_t block_tokens;        /* tokens per hash id; 0 = 512 */
    enum trace_on_error on_error; /* refuse the file or skip bad lines */
    uint64_t max_requests;        /* stop after this many; 0 = all */
};

/* One request.  `blocks` belongs to the reader (valid until its next
 * call) or to the trace that holds the request. */
struct trace_request {
    uint64_t arrival_us;    /* timestamp, converted to microseconds */
    uint32_t input_tokens;  /* prompt length in tokens */
    uint32_t output_tokens; /* generated tokens */
    uint32_t n_blocks;      /* number of block ids */
    uint32_t line;          /* line of the trace file it came from */
    const uint64_t *blocks; /* prefix-chained block ids, n_blocks long */
};

/* What a read saw. */
struct trace_stats {
    uint64_t lines;          /* lines read, blank ones included */
    uint64_t blank;          /* blank lines ignored */
    uint64_t requests;       /* requests accepted */
    uint64_t skipped;        /* malformed lines skipped (TRACE_SKIP) */
    uint64_t first_bad_line; /* first malformed line, 0 = none */
    char first_bad[256];     /* its message */
    uint64_t input_tokens;   /* sum over accepted requests */
    uint64_t output_tokens;  /* sum over accepted requests */
    uint64_t blocks;         /* block ids over accepted requests */
    bool reordered;          /* timestamps decreased somewhere; sorted */
};

struct trace_reader;

/* Opens `path` for streaming.  -ENOENT (and others from open) with a
 * message naming the file. */
int trace_reader_open(const char *path, const struct trace_options *,
                      struct trace_reader **out, char *err, size_t errlen);
/* Reads from an open stream instead; `name` labels messages.  The reader
 * does not close `f`. */
int trace_reader_open_stream(FILE *f, const char *name,
                             const struct trace_options *,
                             struct trace_reader **out, char *err,
                             size_t errlen);
/* The next good request: 1 and *out filled, 0 at the end, or -EINVAL for
 * a malformed line in TRACE_REFUSE mode (err names file, line and what
 * was wrong), -EIO for a read error, -ENOMEM. */
int trace_reader_next(struct trace_reader *, struct trace_request *out,
                      char *err, size_t errlen);
/* What has been read so far. */
const struct trace_stats *trace_reader_stats(const struct trace_reader *);
/* Closes the reader (and the file it opened); NULL is a no-op. */
void trace_reader_close(struct trace_reader *);

/* A whole trace in memory, sorted by arrival. */
struct trace {
    char *name;                /* file name, for reports */
    size_t n;                  /* requests */
    struct trace_request *req; /* the requests, by arrival */
    uint64_t *ids;             /* storage behind every req[i].blocks */
    uint32_t block_tokens;     /* tokens per block id */
    struct trace_stats stats;  /* what the read saw */
};

/* Reads a whole file.  Errors as trace_reader_next(); additionally
 * -EINVAL when the file holds no request. */
int trace_load(const char *path, const struct trace_options *,
               struct trace **out, char *err, size_t errlen);
/* The same from a stream. */
int trace_load_stream(FILE *f, const char *name, const struct trace_options *,
                      struct trace **out, char *err, size_t errlen);
/* Frees a trace; NULL is a no-op. */
void trace_destroy(struct trace *);

/* Tokens of block i of a request (see the header comment). */
static inline uint32_t
trace_block_tokens(const struct trace_request *r, uint32_t i, uint32_t bt)
{
    uint64_t lo = (uint64_t)i * bt;

    if (lo >= r->input_tokens) {
        return 0;
    }
    return r->input_tokens - lo < bt ? (uint32_t)(r->input_tokens - lo) : bt;
}

/* Tokens covered by the first k blocks of a request. */
static inline uint64_t
trace_prefix_tokens(const struct trace_request *r, uint32_t k, uint32_t bt)
{
    uint64_t t = (uint64_t)k * bt;

    return t < r->input_tokens ? t : r->input_tokens;
}

#endif /* MCOS_EVAL_TRACE_H */
