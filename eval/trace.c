/*
 * trace: the Mooncake JSONL reader.  Each line is decoded by jansson and
 * checked field by field; messages read "FILE:LINE: what was wrong".
 */
#include "trace.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"

MCOS_LOG_MODULE(trace);

struct trace_reader {
    FILE *f;                   /* the stream */
    bool own;                  /* we opened it, so we close it */
    char *name;                /* file name for messages */
    struct trace_options opts; /* with defaults filled in */
    char *line;                /* getline() buffer */
    size_t line_cap;           /* its size */
    uint64_t *ids;             /* the current request's block ids */
    size_t ids_cap;            /* capacity of ids */
    struct trace_stats stats;  /* what has been read */
};

static void
fill_defaults(struct trace_options *o, const struct trace_options *in)
{
    memset(o, 0, sizeof *o);
    if (in) {
        *o = *in;
    }
    if (!o->block_tokens) {
        o->block_tokens = TRACE_DEFAULT_BLOCK_TOKENS;
    }
}

int
trace_reader_open_stream(FILE *f, const char *name,
                         const struct trace_options *opts,
                         struct trace_reader **out, char *err, size_t errlen)
{
    struct trace_reader *r;

    *out = NULL;
    if (!f || !name) {
        mcos_seterr(err, errlen, "trace: no stream to read");
        return -EINVAL;
    }
    if (opts && opts->on_error != TRACE_REFUSE &&
        opts->on_error != TRACE_SKIP) {
        mcos_seterr(err, errlen, "trace %s: bad on_error mode %d", name,
                    (int)opts->on_error);
        return -EINVAL;
    }
    r = calloc(1, sizeof *r);
    if (!r || !(r->name = strdup(name))) {
        free(r);
        mcos_seterr(err, errlen, "trace %s: out of memory", name);
        return -ENOMEM;
    }
    r->f = f;
    fill_defaults(&r->opts, opts);
    *out = r;
    return 0;
}

int
trace_reader_open(const char *path, const struct trace_options *opts,
                  struct trace_reader **out, char *err, size_t errlen)
{
    FILE *f;
    int rc;

    *out = NULL;
    if (!path || !*path) {
        mcos_seterr(err, errlen, "trace: no file name given");
        return -EINVAL;
    }
    f = fopen(path, "r");
    if (!f) {
        rc = -errno;
        mcos_seterr(err, errlen, "trace %s: cannot open: %s", path,
                    strerror(errno));
        return rc;
    }
    rc = trace_reader_open_stream(f, path, opts, out, err, errlen);
    if (rc) {
        fclose(f);
        return rc;
    }
    (*out)->own = true;
    return 0;
}

void
trace_reader_close(struct trace_reader *r)
{
    if (!r) {
        return;
    }
    if (r->own) {
        fclose(r->f);
    }
    free(r->name);
    free(r->line);
    free(r->ids);
    free(r);
}

const struct trace_stats *
trace_reader_stats(const struct trace_reader *r)
{
    return &r->stats;
}

/* A short rendering of a JSON value for messages ("-1", "\"abc\"",
 * "an array"). */
static void
describe(const json_t *v, char *buf, size_t len)
{
    switch (json_typeof(v)) {
    case JSON_INTEGER:
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL:
        snprintf(buf, len, "%g", json_real_value(v));
        break;
    case JSON_STRING:
        snprintf(buf, len, "\"%.40s\"", json_string_value(v));
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        snprintf(buf, len, "%s", json_is_true(v) ? "true" : "false");
        break;
    case JSON_NULL:
        snprintf(buf, len, "null");
        break;
    case JSON_ARRAY:
        snprintf(buf, len, "an array");
        break;
    case JSON_OBJECT:
        snprintf(buf, len, "an object");
        break;
    }
}

/* Reads an integer member in [min, max]. */
static int
get_uint(const json_t *obj, const char *key, uint64_t min, uint64_t max,
         uint64_t *out, char *msg, size_t len)
{
    const json_t *v = json_object_get(obj, key);
    char got[64];

    if (!v) {
        snprintf(msg, len, "missing field '%s'", key);
        return -EINVAL;
    }
    describe(v, got, sizeof got);
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        (uint64_t)json_integer_value(v) < min ||
        (uint64_t)json_integer_value(v) > max) {
        snprintf(msg, len,
                 "field '%s': expected an integer in %" PRIu64 "..%" PRIu64
                 ", got %s",
                 key, min, max, got);
        return -EINVAL;
    }
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* Decodes and checks one non-blank line into *out (ids into r->ids).
 * On error fills msg (without file and line) and returns -EINVAL. */
static int
parse_line(struct trace_reader *r, const char *line, size_t len,
           struct trace_request *out, char *msg, size_t msglen)
{
    json_error_t jerr;
    json_t *obj, *ts, *ids;
    uint64_t in_len, out_len, need;
    double ms;
    size_t n;
    char got[64];
    int rc = -EINVAL;

    obj = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!obj) {
        snprintf(msg, msglen, "not valid JSON: %s (column %d)", jerr.text,
                 jerr.column);
        return -EINVAL;
    }
    if (!json_is_object(obj)) {
        describe(obj, got, sizeof got);
        snprintf(msg, msglen, "expected a JSON object, got %s", got);
        goto out;
    }

    ts = json_object_get(obj, "timestamp");
    if (!ts) {
        snprintf(msg, msglen, "missing field 'timestamp'");
        goto out;
    }
    ms = json_is_integer(ts) ? (double)json_integer_value(ts)
         : json_is_real(ts)  ? json_real_value(ts)
                             : -1.0;
    if (!json_is_number(ts) || !isfinite(ms) || ms < 0 ||
        ms > TRACE_MAX_TIMESTAMP_MS) {
        describe(ts, got, sizeof got);
        snprintf(msg, msglen,
                 "field 'timestamp': expected milliseconds in 0..%.0f, "
                 "got %s",
                 TRACE_MAX_TIMESTAMP_MS, got);
        goto out;
    }
    if (get_uint(obj, "input_length", 1, TRACE_MAX_TOKENS, &in_len, msg,
                 msglen) ||
        get_uint(obj, "output_length", 0, TRACE_MAX_TOKENS, &out_len, msg,
                 msglen)) {
        goto out;
    }

    ids = json_object_get(obj, "hash_ids");
    if (!ids) {
        snprintf(msg, msglen, "missing field 'hash_ids'");
        goto out;
    }
    if (!json_is_array(ids)) {
        describe(ids, got, sizeof got);
        snprintf(msg, msglen, "field 'hash_ids': expected an array, got %s",
                 got);
        goto out;
    }
    n = json_array_size(ids);
    if (n > TRACE_MAX_BLOCKS) {
        snprintf(msg, msglen,
                 "field 'hash_ids': %zu ids, more than the limit of %u", n,
                 TRACE_MAX_BLOCKS);
        goto out;
    }
    need = (in_len + r->opts.block_tokens - 1) / r->opts.block_tokens;
    if (n + 1 < need || n > need + 1) {
        snprintf(msg, msglen,
                 "field 'hash_ids': %zu ids, but input_length %" PRIu64
                 " needs %" PRIu64 " blocks of %u tokens (check "
                 "--block-tokens)",
                 n, in_len, need, r->opts.block_tokens);
        goto out;
    }
    if (n > r->ids_cap) {
        size_t cap = r->ids_cap ? r->ids_cap : 64;
        uint64_t *p;

        while (cap < n) {
            cap *= 2;
        }
        p = realloc(r->ids, cap * sizeof *p);
        if (!p) {
            snprintf(msg, msglen, "out of memory");
            rc = -ENOMEM;
            goto out;
        }
        r->ids = p;
        r->ids_cap = cap;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(ids, i);

        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            describe(v, got, sizeof got);
            snprintf(msg, msglen,
                     "field 'hash_ids': element %zu: expected a "
                     "non-negative integer, got %s",
                     i, got);
            goto out;
        }
        r->ids[i] = (uint64_t)json_integer_value(v);
    }

    out->arrival_us = (uint64_t)llround(ms * 1000.0);
    out->input_tokens = (uint32_t)in_len;
    out->output_tokens = (uint32_t)out_len;
    out->n_blocks = (uint32_t)n;
    out->blocks = r->ids;
    rc = 0;
out:
    json_decref(obj);
    return rc;
}

static bool
blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') {
            return false;
        }
    }
    return true;
}

int
trace_reader_next(struct trace_reader *r, struct trace_request *out, char *err,
                  size_t errlen)
{
    struct trace_stats *st = &r->stats;

    if (r->opts.max_requests && st->requests >= r->opts.max_requests) {
        return 0;
    }
    for (;;) {
        char msg[200];
        ssize_t len;
        int rc;

        errno = 0;
        len = getline(&r->line, &r->line_cap, r->f);
        if (len < 0) {
            if (ferror(r->f)) {
                mcos_seterr(err, errlen,
                            "trace %s: read error after line "
                            "%" PRIu64 ": %s",
                            r->name, st->lines, strerror(errno ? errno : EIO));
                return -EIO;
            }
            return 0;
        }
        st->lines++;
        if (blank(r->line, (size_t)len)) {
            st->blank++;
            continue;
        }
        if ((size_t)len > TRACE_MAX_LINE) {
            snprintf(msg, sizeof msg, "line longer than %u bytes",
                     TRACE_MAX_LINE);
            rc = -EINVAL;
        } else if (memchr(r->line, '\0', (size_t)len)) {
            snprintf(msg, sizeof msg, "line contains a NUL byte");
            rc = -EINVAL;
        } else {
            rc = parse_line(r, r->line, (size_t)len, out, msg, sizeof msg);
        }
        if (rc == 0) {
            out->line =
                (uint32_t)(st->lines > UINT32_MAX ? UINT32_MAX : st->lines);
            st->requests++;
            st->input_tokens += out->input_tokens;
            st->output_tokens += out->output_tokens;
            st->blocks += out->n_blocks;
            return 1;
        }
        if (!st->first_bad_line) {
            st->first_bad_line = st->lines;
            snprintf(st->first_bad, sizeof st->first_bad, "%s:%" PRIu64 ": %s",
                     r->name, st->lines, msg);
        }
        if (rc != -EINVAL || r->opts.on_error == TRACE_REFUSE) {
            mcos_seterr(err, errlen, "%s:%" PRIu64 ": %s%s", r->name,
                        st->lines, msg,
                        rc == -EINVAL ? " (use --on-error skip to skip "
                                        "malformed lines)"
                                      : "");
            return rc;
        }
        st->skipped++;
        if (st->skipped <= TRACE_REPORT_BAD) {
            LOG_WARN("%s:%" PRIu64 ": skipped: %s", r->name, st->lines, msg);
        } else if (st->skipped == TRACE_REPORT_BAD + 1) {
            LOG_WARN("%s: more malformed lines; only the count is reported "
                     "from here on",
                     r->name);
        }
    }
}

/* Orders requests by arrival, then by line (a stable sort). */
static int
cmp_arrival(const void *a, const void *b)
{
    const struct trace_request *x = a, *y = b;

    if (x->arrival_us != y->arrival_us) {
        return x->arrival_us < y->arrival_us ? -1 : 1;
    }
    return (x->line > y->line) - (x->line < y->line);
}

static int
load(struct trace_reader *rd, struct trace **out, char *err, size_t errlen)
{
    struct trace *t = calloc(1, sizeof *t);
    size_t req_cap = 1024, ids_cap = 16384, ids_n = 0;
    struct trace_request q;
    uint64_t last = 0;
    int rc;

    if (!t || !(t->name = strdup(rd->name)) ||
        !(t->req = malloc(req_cap * sizeof *t->req)) ||
        !(t->ids = malloc(ids_cap * sizeof *t->ids))) {
        rc = -ENOMEM;
        mcos_seterr(err, errlen, "trace %s: out of memory", rd->name);
        goto fail;
    }
    t->block_tokens = rd->opts.block_tokens;
    while ((rc = trace_reader_next(rd, &q, err, errlen)) == 1) {
        if (t->n == req_cap) {
            struct trace_request *p = realloc(t->req, 2 * req_cap * sizeof *p);

            if (!p) {
                rc = -ENOMEM;
                break;
            }
            t->req = p;
            req_cap *= 2;
        }
        if (ids_n + q.n_blocks > ids_cap) {
            uint64_t *p;

            while (ids_n + q.n_blocks > ids_cap) {
                ids_cap *= 2;
            }
            p = realloc(t->ids, ids_cap * sizeof *p);
            if (!p) {
                rc = -ENOMEM;
                break;
            }
            t->ids = p;
        }
        if (q.n_blocks) {
            /* A prompt shorter than a block has no ids, and no buffer. */
            memcpy(t->ids + ids_n, q.blocks, q.n_blocks * sizeof *q.blocks);
        }
        /* Offsets for now; pointers once the pool stops moving. */
        q.blocks = (const uint64_t *)(uintptr_t)ids_n;
        ids_n += q.n_blocks;
        if (q.arrival_us < last) {
            rd->stats.reordered = true;
        }
        last = q.arrival_us;
        t->req[t->n++] = q;
    }
    if (rc == -ENOMEM) {
        mcos_seterr(err, errlen, "trace %s: out of memory", rd->name);
    }
    if (rc < 0) {
        goto fail;
    }
    if (t->n == 0) {
        if (rd->stats.skipped) {
            mcos_seterr(err, errlen,
                        "trace %s: no valid request: all %" PRIu64
                        " non-blank lines were malformed (first: %s)",
                        rd->name, rd->stats.skipped, rd->stats.first_bad);
        } else {
            mcos_seterr(err, errlen,
                        "trace %s: no requests (the file is "
                        "empty)",
                        rd->name);
        }
        rc = -EINVAL;
        goto fail;
    }
    for (size_t i = 0; i < t->n; i++) {
        t->req[i].blocks = t->ids + (uintptr_t)t->req[i].blocks;
    }
    if (rd->stats.reordered) {
        qsort(t->req, t->n, sizeof *t->req, cmp_arrival);
        LOG_WARN("%s: timestamps decrease in places; requests sorted by "
                 "arrival",
                 rd->name);
    }
    t->stats = rd->stats;
    *out = t;
    return 0;
fail:
    trace_destroy(t);
    return rc;
}

int
trace_load_stream(FILE *f, const char *name, const struct trace_options *opts,
                  struct trace **out, char *err, size_t errlen)
{
    struct trace_reader *rd;
    int rc;

    *out = NULL;
    rc = trace_reader_open_stream(f, name, opts, &rd, err, errlen);
    if (rc) {
        return rc;
    }
    rc = load(rd, out, err, errlen);
    trace_reader_close(rd);
    return rc;
}

int
trace_load(const char *path, const struct trace_options *opts,
           struct trace **out, char *err, size_t errlen)
{
    struct trace_reader *rd;
    int rc;

    *out = NULL;
    rc = trace_reader_open(path, opts, &rd, err, errlen);
    if (rc) {
        return rc;
    }
    rc = load(rd, out, err, errlen);
    trace_reader_close(rd);
    return rc;
}

void
trace_destroy(struct trace *t)
{
    if (!t) {
        return;
    }
    free(t->name);
    free(t->req);
    free(t->ids);
    free(t);
}
