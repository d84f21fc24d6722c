/*
 * Tests for eval/trace (the Mooncake JSONL reader) and eval/gen (the
 * synthetic workload generator): good, malformed and empty input, both
 * error modes, line numbers in messages, sorting, block sizes, and the
 * generator's determinism and prefix chaining.  Data files are in
 * tests/data/traces (README.md there explains each one).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>

#include "gen.h"
#include "testutil.h"
#include "trace.h"
#include "u64map.h"

static char err[512];

/* Path of a data file. */
static const char *
data(const char *name)
{
    static char path[1024];
    const char *dir = getenv("MCOS_TEST_DATA");

    snprintf(path, sizeof path, "%s/traces/%s", dir ? dir : "tests/data",
             name);
    return path;
}

/* Loads JSONL text from memory. */
static int
load_text(const char *text, const struct trace_options *o, struct trace **t)
{
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    int rc;

    ck_assert_ptr_nonnull(f);
    rc = trace_load_stream(f, "mem.jsonl", o, t, err, sizeof err);
    fclose(f);
    return rc;
}

START_TEST(test_good)
{
    struct trace *t;

    /* good.jsonl: 4 lines, line 2 blank; 1000 + 1024 + 1025 = 3049 prompt
     * tokens, 10 + 0 + 7 = 17 answer tokens, 2 + 2 + 3 = 7 blocks. */
    ck_assert_int_eq(trace_load(data("good.jsonl"), NULL, &t, err, sizeof err),
                     0);
    ck_assert_uint_eq(t->n, 3);
    ck_assert_uint_eq(t->block_tokens, 512);
    ck_assert_uint_eq(t->stats.lines, 4);
    ck_assert_uint_eq(t->stats.blank, 1);
    ck_assert_uint_eq(t->stats.requests, 3);
    ck_assert_uint_eq(t->stats.skipped, 0);
    ck_assert_uint_eq(t->stats.input_tokens, 3049);
    ck_assert_uint_eq(t->stats.output_tokens, 17);
    ck_assert_uint_eq(t->stats.blocks, 7);
    ck_assert(!t->stats.reordered);

    ck_assert_uint_eq(t->req[0].arrival_us, 0);
    ck_assert_uint_eq(t->req[0].input_tokens, 1000);
    ck_assert_uint_eq(t->req[0].line, 1);
    /* 2.5 ms, fields in any order, an extra field ignored. */
    ck_assert_uint_eq(t->req[1].arrival_us, 2500);
    ck_assert_uint_eq(t->req[1].line, 3);
    ck_assert_uint_eq(t->req[2].arrival_us, 10000);
    ck_assert_uint_eq(t->req[2].n_blocks, 3);
    ck_assert_uint_eq(t->req[2].blocks[2], 3);
    ck_assert_uint_eq(t->req[2].output_tokens, 7);
    /* The last block of 1025 tokens holds 1 token. */
    ck_assert_uint_eq(trace_block_tokens(&t->req[2], 2, 512), 1);
    ck_assert_uint_eq(trace_prefix_tokens(&t->req[2], 3, 512), 1025);
    ck_assert_uint_eq(trace_prefix_tokens(&t->req[2], 1, 512), 512);
    trace_destroy(t);
    trace_destroy(NULL);
}
END_TEST

/* One malformed line each: the message must name line 1 and the field. */
static const struct {
    const char *line;
    const char *msg;
} bad_lines[] = {
    {"not json", "mem.jsonl:1: not valid JSON"},
    {"[1, 2]", "mem.jsonl:1: expected a JSON object, got an array"},
    {"{\"timestamp\": 0, \"input_length\": 512, \"output_length\": 1}",
     "missing field 'hash_ids'"},
    {"{\"input_length\": 512, \"output_length\": 1, \"hash_ids\": [0]}",
     "missing field 'timestamp'"},
    {"{\"timestamp\": -1, \"input_length\": 512, \"output_length\": 1, "
     "\"hash_ids\": [0]}",
     "field 'timestamp'"},
    {"{\"timestamp\": \"0\", \"input_length\": 512, \"output_length\": 1, "
     "\"hash_ids\": [0]}",
     "field 'timestamp'"},
    {"{\"timestamp\": 0, \"input_length\": 0, \"output_length\": 1, "
     "\"hash_ids\": []}",
     "field 'input_length': expected an integer in 1..268435456, got 0"},
    {"{\"timestamp\": 0, \"input_length\": -5, \"output_length\": 1, "
     "\"hash_ids\": [0]}",
     "field 'input_length'"},
    {"{\"timestamp\": 0, \"input_length\": 5.5, \"output_length\": 1, "
     "\"hash_ids\": [0]}",
     "field 'input_length'"},
    {"{\"timestamp\": 0, \"input_length\": 512, \"output_length\": true, "
     "\"hash_ids\": [0]}",
     "field 'output_length'"},
    {"{\"timestamp\": 0, \"input_length\": 512, \"output_length\": 1, "
     "\"hash_ids\": {}}",
     "field 'hash_ids': expected an array, got an object"},
    {"{\"timestamp\": 0, \"input_length\": 512, \"output_length\": 1, "
     "\"hash_ids\": [-1]}",
     "element 0: expected a non-negative integer, got -1"},
    {"{\"timestamp\": 0, \"input_length\": 1024, \"output_length\": 1, "
     "\"hash_ids\": [0, 1.5]}",
     "element 1: expected a non-negative integer, got 1.5"},
    {"{\"timestamp\": 0, \"input_length\": 512, \"output_length\": 1, "
     "\"hash_ids\": [\"a\"]}",
     "element 0"},
    {"{\"timestamp\": 0, \"input_length\": 512, \"output_length\": 1, "
     "\"hash_ids\": [99999999999999999999]}",
     "not valid JSON"},
    {"{\"timestamp\": 0, \"input_length\": 5120, \"output_length\": 1, "
     "\"hash_ids\": [0]}",
     "1 ids, but input_length 5120 needs 10 blocks of 512 tokens"},
    {"{\"timestamp\": 0, \"input_length\": 512, \"output_length\": 1, "
     "\"hash_ids\": [0, 1, 2]}",
     "3 ids, but input_length 512 needs 1 blocks"},
    {"{\"timestamp\": 0, \"timestamp\": 1, \"input_length\": 512, "
     "\"output_length\": 1, \"hash_ids\": [0]}",
     "duplicate"},
    {"{\"timestamp\": 0, \"input_length\": 512, \"output_length\": 1, "
     "\"hash_ids\": [0]} trailing",
     "not valid JSON"},
};

START_TEST(test_bad_line)
{
    struct trace *t = (struct trace *)1;
    int rc = load_text(bad_lines[_i].line, NULL, &t);

    ck_assert_err(rc, -EINVAL, err, bad_lines[_i].msg);
    ck_assert_msg(strstr(err, "mem.jsonl:1:"), "no line number: %s", err);
    ck_assert_ptr_null(t);
}
END_TEST

START_TEST(test_tolerances)
{
    struct trace *t;

    /* One id short (a trailing partial block not hashed) and one over
     * (a BOS token counted) are both accepted. */
    ck_assert_int_eq(load_text("{\"timestamp\": 0, \"input_length\": 1000, "
                               "\"output_length\": 0, \"hash_ids\": [7]}\n"
                               "{\"timestamp\": 0, \"input_length\": 512, "
                               "\"output_length\": 0, \"hash_ids\": [7, 8]}\n",
                               NULL, &t),
                     0);
    ck_assert_uint_eq(t->n, 2);
    /* Tokens past the hashed blocks are never reusable. */
    ck_assert_uint_eq(trace_prefix_tokens(&t->req[0], 1, 512), 512);
    ck_assert_uint_eq(trace_block_tokens(&t->req[1], 1, 512), 0);
    trace_destroy(t);
    /* A prompt shorter than a block may come with no ids at all (one
     * short of its one block); as the only request, its copy of no ids
     * read from no buffer (UBSan's memcpy(NULL) until fixed; found by
     * tests/fuzz/fuzz_trace.c). */
    ck_assert_int_eq(load_text("{\"timestamp\": 9, \"input_length\": 4, "
                               "\"output_length\": 9, \"hash_ids\": []}\n",
                               NULL, &t),
                     0);
    ck_assert_uint_eq(t->n, 1);
    ck_assert_uint_eq(t->req[0].n_blocks, 0);
    ck_assert_uint_eq(trace_prefix_tokens(&t->req[0], 0, 512), 0);
    trace_destroy(t);
}
END_TEST

START_TEST(test_refuse_names_line)
{
    struct trace *t;
    int rc = trace_load(data("malformed.jsonl"), NULL, &t, err, sizeof err);

    /* Line 1 is good; line 2 has a negative id. */
    ck_assert_err(rc, -EINVAL, err, "malformed.jsonl:2: field 'hash_ids'");
    ck_assert_msg(strstr(err, "--on-error skip"), "%s", err);
}
END_TEST

START_TEST(test_skip)
{
    struct trace_options o = {.on_error = TRACE_SKIP};
    struct trace *t;

    /* malformed.jsonl: lines 1, 4 and 7 are good; 2 (negative id), 3 (not
     * JSON), 5 (no hash_ids) and 6 (10 blocks' worth of tokens, one id)
     * are skipped. */
    ck_assert_int_eq(
        trace_load(data("malformed.jsonl"), &o, &t, err, sizeof err), 0);
    ck_assert_uint_eq(t->n, 3);
    ck_assert_uint_eq(t->stats.skipped, 4);
    ck_assert_uint_eq(t->stats.first_bad_line, 2);
    ck_assert_ptr_nonnull(strstr(t->stats.first_bad, "malformed.jsonl:2:"));
    ck_assert_uint_eq(t->req[0].line, 1);
    ck_assert_uint_eq(t->req[1].line, 4);
    ck_assert_uint_eq(t->req[2].line, 7);
    trace_destroy(t);
}
END_TEST

START_TEST(test_empty)
{
    struct trace_options skip = {.on_error = TRACE_SKIP};
    struct trace *t;
    int rc;

    rc = trace_load(data("empty.jsonl"), NULL, &t, err, sizeof err);
    ck_assert_err(rc, -EINVAL, err, "no requests (the file is empty)");
    rc = trace_load(data("blank.jsonl"), NULL, &t, err, sizeof err);
    ck_assert_err(rc, -EINVAL, err, "no requests");
    rc = load_text("garbage\n{}\n", &skip, &t);
    ck_assert_err(rc, -EINVAL, err, "all 2 non-blank lines were malformed");
    rc = trace_load(data("no-such-file.jsonl"), NULL, &t, err, sizeof err);
    ck_assert_err(rc, -ENOENT, err, "cannot open");
    rc = trace_load("", NULL, &t, err, sizeof err);
    ck_assert_err(rc, -EINVAL, err, "no file name");
}
END_TEST

START_TEST(test_sorted)
{
    struct trace *t;

    /* Arrivals 20, 10, 20, 5 ms: sorted to 5 (line 4), 10 (line 2),
     * 20 (line 1), 20 (line 3) -- file order kept among equals. */
    ck_assert_int_eq(
        trace_load(data("unsorted.jsonl"), NULL, &t, err, sizeof err), 0);
    ck_assert(t->stats.reordered);
    ck_assert_uint_eq(t->req[0].line, 4);
    ck_assert_uint_eq(t->req[1].line, 2);
    ck_assert_uint_eq(t->req[2].line, 1);
    ck_assert_uint_eq(t->req[3].line, 3);
    ck_assert_uint_eq(t->req[3].blocks[0], 3);
    trace_destroy(t);
}
END_TEST

START_TEST(test_block_size)
{
    struct trace_options o = {.block_tokens = 16};
    struct trace *t;
    int rc;

    /* 64 and 50 tokens are 4 blocks of 16 each, but 1 block of 512. */
    rc = trace_load(data("small_blocks.jsonl"), NULL, &t, err, sizeof err);
    ck_assert_err(rc, -EINVAL, err, "check --block-tokens");
    ck_assert_int_eq(
        trace_load(data("small_blocks.jsonl"), &o, &t, err, sizeof err), 0);
    ck_assert_uint_eq(t->n, 2);
    ck_assert_uint_eq(t->block_tokens, 16);
    ck_assert_uint_eq(trace_block_tokens(&t->req[1], 3, 16), 2);
    trace_destroy(t);
}
END_TEST

START_TEST(test_stream_and_limit)
{
    struct trace_options o = {.max_requests = 2};
    struct trace_reader *r;
    struct trace_request q;
    struct trace *t;

    ck_assert_int_eq(
        trace_reader_open(data("good.jsonl"), NULL, &r, err, sizeof err), 0);
    ck_assert_int_eq(trace_reader_next(r, &q, err, sizeof err), 1);
    ck_assert_uint_eq(q.n_blocks, 2);
    ck_assert_int_eq(trace_reader_next(r, &q, err, sizeof err), 1);
    ck_assert_int_eq(trace_reader_next(r, &q, err, sizeof err), 1);
    ck_assert_int_eq(trace_reader_next(r, &q, err, sizeof err), 0);
    ck_assert_int_eq(trace_reader_next(r, &q, err, sizeof err), 0);
    ck_assert_uint_eq(trace_reader_stats(r)->requests, 3);
    trace_reader_close(r);
    trace_reader_close(NULL);

    ck_assert_int_eq(trace_load(data("good.jsonl"), &o, &t, err, sizeof err),
                     0);
    ck_assert_uint_eq(t->n, 2);
    trace_destroy(t);

    o.on_error = 7;
    ck_assert_int_eq(trace_load(data("good.jsonl"), &o, &t, err, sizeof err),
                     -EINVAL);
}
END_TEST

/* Generates a trace into memory. */
static char *
gen_text(const struct gen_params *p, size_t *len)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    uint64_t n;

    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(gen_write(p, f, &n, err, sizeof err), 0);
    ck_assert_uint_eq(n, p->requests);
    fclose(f);
    return buf;
}

START_TEST(test_gen_deterministic)
{
    struct gen_params p;
    char *a, *b, *c;
    size_t la, lb, lc;

    gen_params_default(&p);
    p.requests = 500;
    a = gen_text(&p, &la);
    b = gen_text(&p, &lb);
    ck_assert_uint_eq(la, lb);
    ck_assert_int_eq(memcmp(a, b, la), 0);
    p.seed = 2;
    c = gen_text(&p, &lc);
    ck_assert(la != lc || memcmp(a, c, la) != 0);
    free(a);
    free(b);
    free(c);
}
END_TEST

START_TEST(test_gen_chained)
{
    struct gen_params p;
    struct u64map pos, parent;
    struct trace *t;
    uint64_t shared = 0, prev_ts = 0;
    size_t len;
    char *text;

    gen_params_default(&p);
    p.requests = 2000;
    p.block_tokens = 64;
    p.max_input = 64 * 16 + 4096 + 20000;
    text = gen_text(&p, &len);
    {
        struct trace_options o = {.block_tokens = 64};
        FILE *f = fmemopen(text, len, "r");

        ck_assert_int_eq(trace_load_stream(f, "gen", &o, &t, err, sizeof err),
                         0);
        fclose(f);
    }
    ck_assert_uint_eq(t->n, 2000);
    ck_assert(!t->stats.reordered);
    ck_assert_int_eq(u64map_init(&pos, 1024), 0);
    ck_assert_int_eq(u64map_init(&parent, 1024), 0);
    /* Prefix chaining: an id always sits at the same position after the
     * same parent; and the workload does share prefixes. */
    for (size_t i = 0; i < t->n; i++) {
        const struct trace_request *r = &t->req[i];

        /* Check's asserts mark a point through a pipe each (fork mode):
         * in these loops over ~10^6 blocks they cost seconds, and timed
         * the test out under load.  Plain ifs, a message on failure. */
        if (r->arrival_us < prev_ts || r->input_tokens > p.max_input) {
            ck_abort_msg("request %zu: arrival %" PRIu64 " after %" PRIu64
                         ", %u input tokens (max %u)",
                         i, r->arrival_us, prev_ts, r->input_tokens,
                         p.max_input);
        }
        prev_ts = r->arrival_us;
        for (uint32_t j = 0; j < r->n_blocks; j++) {
            uint32_t v;
            uint64_t par = j ? r->blocks[j - 1] : UINT64_MAX;

            if (u64map_get(&pos, r->blocks[j], &v)) {
                if (v != j) {
                    ck_abort_msg("request %zu: block %u was at %u before", i,
                                 j, v);
                }
                shared++;
            } else if (u64map_put(&pos, r->blocks[j], j)) {
                ck_abort_msg("u64map_put failed");
            }
            /* Parents fit in 32 bits here; UINT64_MAX marks the root. */
            if (u64map_get(&parent, r->blocks[j], &v)) {
                if (v != (uint32_t)par) {
                    ck_abort_msg("request %zu: block %u has another parent "
                                 "than before",
                                 i, j);
                }
            } else if (u64map_put(&parent, r->blocks[j], (uint32_t)par)) {
                ck_abort_msg("u64map_put failed");
            }
        }
    }
    ck_assert_uint_gt(shared, t->stats.blocks / 4);
    u64map_free(&pos);
    u64map_free(&parent);
    trace_destroy(t);
    free(text);
}
END_TEST

START_TEST(test_gen_bad_params)
{
    struct gen_params p;

    gen_params_default(&p);
    ck_assert_int_eq(gen_params_validate(&p, err, sizeof err), 0);
    p.user_min = 10;
    p.user_max = 5;
    ck_assert_err(gen_params_validate(&p, err, sizeof err), -EINVAL, err,
                  "user tokens");
    gen_params_default(&p);
    p.session_rate = 0;
    ck_assert_err(gen_params_validate(&p, err, sizeof err), -EINVAL, err,
                  "session_rate");
    gen_params_default(&p);
    p.max_input = 100;
    ck_assert_err(gen_write(&p, stdout, NULL, err, sizeof err), -EINVAL, err,
                  "max_input");
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("trace");
    TCase *tc = tcase_create("core");

    /* The generator cases take 0.5 s under ASan; Check's default 4 s
     * timed one out on a 2-core machine at load 9. */
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_good);
    tcase_add_loop_test(tc, test_bad_line, 0,
                        sizeof bad_lines / sizeof bad_lines[0]);
    tcase_add_test(tc, test_tolerances);
    tcase_add_test(tc, test_refuse_names_line);
    tcase_add_test(tc, test_skip);
    tcase_add_test(tc, test_empty);
    tcase_add_test(tc, test_sorted);
    tcase_add_test(tc, test_block_size);
    tcase_add_test(tc, test_stream_and_limit);
    tcase_add_test(tc, test_gen_deterministic);
    tcase_add_test(tc, test_gen_chained);
    tcase_add_test(tc, test_gen_bad_params);
    suite_add_tcase(s, tc);
    return s;
}

MCOS_TEST_MAIN(suite)
