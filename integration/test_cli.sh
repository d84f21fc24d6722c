#!/usr/bin/env bash
#
# integration/test_cli.sh: the command-line and configuration contract of
# the programs, and the HTTP API's error answers.
#
#   mcos-admin: brain unreachable (exit 1, one line naming the URL), bad
#   usage (exit 2, one line), `wait` timing out (exit 3), --help,
#   --version, --json output that parses.
#   mcos-brain / mcos-agent: --help, --version, and one exact stderr line
#   with exit 2 for every kind of bad configuration (bad values, unknown
#   flags, unknown or malformed JSON config, inconsistent liveness
#   timings, a missing NVMe directory); config file values overridden by
#   flags; a second brain on a state dir in use exits 1.
#   HTTP: unknown node 404 and bad node name 400, both JSON {"error": ...}.
#   mcos-bench: exit 2 with one exact line for bad flags, values and
#   config; exit 1 naming the file (and line) for a missing, empty or
#   malformed trace and an output directory it cannot create; --on-error
#   skip; gen's determinism and a replay of what it wrote.
#
# The exact error lines asserted here are the operator-facing contract:
# change them only on purpose, together with this test.

set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

test_init cli

BRAIN=$MCOS_BIN/mcos-brain
AGENT=$MCOS_BIN/mcos-agent
ADMIN=$MCOS_BIN/mcos-admin

# expect_ok CMD...: CMD exits 0 (its output is in $TEST_DIR/out).
expect_ok() {
    capture "$@"
    ((CAPTURED_RC == 0)) ||
        fail "$(_show "$@"): exit $CAPTURED_RC, want 0; stderr: $(cat "$TEST_DIR/err")"
}

# one_line_stderr: the last captured command wrote exactly one line on
# stderr (no usage dump, no stack of messages).
one_line_stderr() {
    local lines
    lines=$(wc -l <"$TEST_DIR/err")
    ((lines == 1)) ||
        fail "want exactly one line on stderr, got $lines: $(cat "$TEST_DIR/err")"
}

# ---------------------------------------------------------------------------
step "mcos-admin: brain unreachable -> exit 1, one line naming the URL"
alloc_ports DEAD_PORT
DEAD=http://127.0.0.1:$DEAD_PORT
for args in "nodes" "status" "sync" "node n1" "tables n1" "wait --gen 1"; do
    # shellcheck disable=SC2086 # args holds a command and its arguments
    capture "$ADMIN" --brain "$DEAD" $args
    ((CAPTURED_RC == 1)) ||
        fail "mcos-admin $args with no brain: exit $CAPTURED_RC, want 1"
    one_line_stderr
    grep -q "^mcos-admin: cannot reach the brain at $DEAD: " "$TEST_DIR/err" ||
        fail "mcos-admin $args: stderr does not name $DEAD: $(cat "$TEST_DIR/err")"
    ok "exit 1: mcos-admin $args: $(cat "$TEST_DIR/err")"
done
# $MCOS_BRAIN is the documented fallback for --brain.
MCOS_BRAIN=$DEAD capture "$ADMIN" nodes
if ((CAPTURED_RC != 1)) || ! grep -q "at $DEAD: " "$TEST_DIR/err"; then
    fail "MCOS_BRAIN=$DEAD mcos-admin nodes: exit $CAPTURED_RC: $(cat "$TEST_DIR/err")"
fi
ok "exit 1: MCOS_BRAIN=$DEAD mcos-admin nodes"
# An http:// URL with no host must be an error line, not a crash.
capture "$ADMIN" --brain http:// nodes
((CAPTURED_RC == 1 || CAPTURED_RC == 2)) ||
    fail "mcos-admin --brain http:// nodes: exit $CAPTURED_RC, want 1 or 2"
one_line_stderr
ok "exit $CAPTURED_RC: mcos-admin --brain http:// nodes: $(cat "$TEST_DIR/err")"

# ---------------------------------------------------------------------------
step "mcos-admin: bad usage -> exit 2, one exact line"
A=("$ADMIN" --brain "$DEAD")
expect_fail 2 "mcos-admin: unknown command 'frob' (see --help)" "${A[@]}" frob
expect_fail 2 "mcos-admin: wait: --gen N is required" "${A[@]}" wait
expect_fail 2 "mcos-admin: wait: --gen takes a generation number, got 'abc'" \
    "${A[@]}" wait --gen abc
expect_fail 2 "mcos-admin: wait: --gen takes a generation number, got '-1'" \
    "${A[@]}" wait --gen -1
expect_fail 2 "mcos-admin: wait: --timeout takes seconds from 1 to 86400, got '0'" \
    "${A[@]}" wait --gen 5 --timeout 0
expect_fail 2 "mcos-admin: --brain must be an http:// URL, got 'ftp://x'" \
    "$ADMIN" --brain ftp://x nodes
expect_fail 2 "mcos-admin: --timeout takes seconds from 1 to 3600, got '0'" \
    "${A[@]}" --timeout 0 nodes
expect_fail 2 "mcos-admin: unknown option '--bogus' (see --help)" \
    "$ADMIN" --bogus nodes
expect_fail 2 "mcos-admin: node: wrong number of arguments (see --help)" \
    "${A[@]}" node
expect_fail 2 "mcos-admin: tables: wrong number of arguments (see --help)" \
    "${A[@]}" tables
expect_fail 2 "mcos-admin: nodes: wrong number of arguments (see --help)" \
    "${A[@]}" nodes extra
expect_fail 2 "mcos-admin: sync: unexpected argument '--bogus'" \
    "${A[@]}" sync --bogus
# A flag missing its value: exit 2 with one line naming the flag.
expect_fail 2 "mcos-admin: option '--brain' needs a value" "$ADMIN" --brain
expect_fail 2 "mcos-admin: option '--timeout' needs a value" "$ADMIN" --timeout
expect_fail 2 "mcos-admin: wait: option '--gen' needs a value" "${A[@]}" wait --gen
ok "exit 2: mcos-admin --brain (no value): $(cat "$TEST_DIR/err")"
expect_fail 2 "mcos-admin: config: usage: config get [KEY] | config set KEY VALUE" \
    "${A[@]}" config
expect_fail 2 "mcos-admin: config: usage: config get [KEY] | config set KEY VALUE" \
    "${A[@]}" config set policy.low_watermark_pct
expect_fail 2 "mcos-admin: config: usage: config get [KEY] | config set KEY VALUE" \
    "${A[@]}" config frob
expect_fail 2 "mcos-admin: config: usage: config get [KEY] | config set KEY VALUE" \
    "${A[@]}" config get a b
expect_fail 2 "mcos-admin: config set: bad key 'a/b'" "${A[@]}" config set a/b 1
expect_fail 2 "mcos-admin: config get: bad key 'a?b'" "${A[@]}" config get 'a?b'
# No command at all: the usage text on stderr, exit 2.
capture "${A[@]}"
((CAPTURED_RC == 2)) || fail "mcos-admin with no command: exit $CAPTURED_RC, want 2"
grep -q '^usage: mcos-admin' "$TEST_DIR/err" ||
    fail "mcos-admin with no command: no usage on stderr"
ok "exit 2: mcos-admin with no command prints the usage"

# ---------------------------------------------------------------------------
step "--help and --version of every program"
expect_ok "$ADMIN" --help
for cmd in nodes "node NAME" status "wait --gen N" sync tables "config get" \
    "config set KEY VALUE"; do
    grep -q -- "^  $cmd" "$TEST_DIR/out" ||
        fail "mcos-admin --help does not describe '$cmd'"
done
ok "mcos-admin --help: exit 0, lists nodes, node, status, wait, sync, tables, config"
for prog in mcos-brain mcos-agent; do
    expect_ok "$MCOS_BIN/$prog" --help
    grep -q "^usage: $prog" "$TEST_DIR/out" || fail "$prog --help: no usage line"
    grep -q -- "--config FILE" "$TEST_DIR/out" || fail "$prog --help: no --config"
    ok "$prog --help: exit 0"
done
for prog in mcos-brain mcos-agent mcos-admin; do
    expect_ok "$MCOS_BIN/$prog" --version
    [[ $(cat "$TEST_DIR/out") == "$prog $MCOS_VERSION" ]] ||
        fail "$prog --version printed '$(cat "$TEST_DIR/out")', want '$prog $MCOS_VERSION'"
    ok "$prog --version: $prog $MCOS_VERSION"
done

# ---------------------------------------------------------------------------
step "mcos-brain: configuration errors -> exit 2, one exact line"
CFG=$TEST_DIR/cfg
mkdir -p "$CFG"
expect_fail 2 "mcos-brain: option --report-interval-ms: key 'report_interval_ms': expected a duration such as 1500 (ms) or 1.5s, got \"abc\"" \
    "$BRAIN" --report-interval-ms abc
expect_fail 2 "mcos-brain: option --report-interval-ms: key 'report_interval_ms': 0 is out of range (10 to 3600000)" \
    "$BRAIN" --report-interval-ms 0
expect_fail 2 "mcos-brain: option --suspect-after-ms: key 'liveness.suspect_after_ms': expected a duration such as 1500 (ms) or 1.5s, got \"-5\"" \
    "$BRAIN" --suspect-after-ms -5
expect_fail 2 "mcos-brain: option --high-watermark-pct: key 'policy.high_watermark_pct': 150 is out of range (1 to 100)" \
    "$BRAIN" --high-watermark-pct 150
expect_fail 2 "mcos-brain: option --log-level: bad spec 'bogus' (want LEVEL[,MODULE=LEVEL...], levels off, err, warn, info, debug)" \
    "$BRAIN" --log-level bogus
expect_fail 2 "mcos-brain: unknown option '--frobnicate' (see --help)" \
    "$BRAIN" --frobnicate 1
expect_fail 2 "mcos-brain: option '--listen' needs a value" "$BRAIN" --listen
expect_fail 2 "mcos-brain: unexpected argument 'extra' (see --help)" \
    "$BRAIN" extra
expect_fail 2 "mcos-brain: listen: '' is not a valid address (want tcp://HOST:PORT or ipc:///PATH)" \
    "$BRAIN" --listen ''
expect_fail 2 "mcos-brain: listen: 'foo://x' is not a valid address (want tcp://HOST:PORT or ipc:///PATH)" \
    "$BRAIN" --listen foo://x
expect_fail 2 "mcos-brain: http_listen: 'ftp://127.0.0.1:1' is not a valid address (want http://HOST:PORT)" \
    "$BRAIN" --http ftp://127.0.0.1:1
expect_fail 2 "mcos-agent: brain: 'http://x' is not a valid address (want tcp://HOST:PORT or ipc:///PATH)" \
    "$AGENT" --node n1 --brain http://x
expect_fail 2 "mcos-agent: brain: 'ftp://x:1' is not a valid address (want tcp://HOST:PORT or ipc:///PATH)" \
    "$AGENT" --node n1 --brain tcp://127.0.0.1:7650,ftp://x:1
expect_fail 2 "mcos-agent: brain: no brain URL given" \
    "$AGENT" --node n1 --brain ,
expect_fail 2 "mcos-brain: name: bad brain name 'b 1' (1-63 of [A-Za-z0-9._-], starting with a letter or digit)" \
    "$BRAIN" --name 'b 1'
expect_fail 2 "mcos-brain: advertise: 'http://x:1' is not a valid address (want tcp://HOST:PORT or ipc:///PATH)" \
    "$BRAIN" --advertise http://x:1
expect_fail 2 "mcos-brain: option --etcd-lease-ttl-s: key 'etcd.lease_ttl_s': 1 is out of range (2 to 3600)" \
    "$BRAIN" --etcd-lease-ttl-s 1
expect_fail 2 "mcos-brain: option --etcd-required: key 'etcd.required': expected true or false, got \"maybe\"" \
    "$BRAIN" --etcd-required=maybe
expect_fail 2 "mcos-brain: state_dir must not be empty" "$BRAIN" --state-dir ''
expect_fail 2 "mcos-brain: liveness.fail_after_ms (600) must be greater than liveness.suspect_after_ms (600)" \
    "$BRAIN" --suspect-after-ms 600 --fail-after-ms 600
expect_fail 2 "mcos-brain: liveness.fail_after_ms (1000) must be greater than liveness.suspect_after_ms (2000)" \
    "$BRAIN" --suspect-after-ms 2s --fail-after-ms 1s
expect_fail 2 "mcos-brain: liveness.suspect_after_ms (50) must be at least report_interval_ms (100), or every node is suspect between reports" \
    "$BRAIN" --report-interval-ms 100 --suspect-after-ms 50

echo '{"listen": "tcp://127.0.0.1:1", "bogus_key": 1}' >"$CFG/unknown.json"
expect_fail 2 "mcos-brain: config file $CFG/unknown.json: unknown key 'bogus_key'" \
    "$BRAIN" --config "$CFG/unknown.json"
echo '{"liveness": {"bogus": 1}}' >"$CFG/unknown-nested.json"
expect_fail 2 "mcos-brain: config file $CFG/unknown-nested.json: unknown key 'liveness.bogus'" \
    "$BRAIN" --config "$CFG/unknown-nested.json"
printf '{\n  "listen": "tcp://127.0.0.1:1",\n  "state_dir": \n}\n' >"$CFG/malformed.json"
expect_fail 2 "mcos-brain: config file $CFG/malformed.json: line 4 column 1: unexpected token near '}'" \
    "$BRAIN" --config "$CFG/malformed.json"
echo '[1, 2]' >"$CFG/array.json"
expect_fail 2 "mcos-brain: config file $CFG/array.json: the top level must be a JSON object" \
    "$BRAIN" --config "$CFG/array.json"
echo '{"report_interval_ms": "abc"}' >"$CFG/badvalue.json"
expect_fail 2 "mcos-brain: config file $CFG/badvalue.json: key 'report_interval_ms': expected a duration such as 1500 (ms) or 1.5s, got \"abc\"" \
    "$BRAIN" --config "$CFG/badvalue.json"
expect_fail 2 "mcos-brain: config file $CFG/missing.json: No such file or directory" \
    "$BRAIN" --config "$CFG/missing.json"
printf '{\n  "liveness": {"suspect_after_ms": 500, "fail_after_ms": 400}\n}\n' \
    >"$CFG/liveness.json"
expect_fail 2 "mcos-brain: liveness.fail_after_ms (400) must be greater than liveness.suspect_after_ms (500)" \
    "$BRAIN" --config "$CFG/liveness.json"

# ---------------------------------------------------------------------------
step "mcos-agent: configuration errors -> exit 2, one exact line"
expect_fail 2 "mcos-agent: unknown option '--frobnicate' (see --help)" \
    "$AGENT" --frobnicate
expect_fail 2 "mcos-agent: option --dram-bytes: key 'tiers.dram.bytes': expected a size such as 4GiB or 1048576, got \"lots\"" \
    "$AGENT" --dram-bytes lots
expect_fail 2 "mcos-agent: option --stale-after-ms: key 'stale_after_ms': expected a duration such as 1500 (ms) or 1.5s, got \"abc\"" \
    "$AGENT" --stale-after-ms abc
expect_fail 2 "mcos-agent: option --data-port: key 'data.port': 70000 is out of range (1 to 65534)" \
    "$AGENT" --data-port 70000
expect_fail 2 "mcos-agent: option '--config' needs a value" "$AGENT" --config
expect_fail 2 "mcos-agent: node: bad name 'bad!name' (1-63 of [A-Za-z0-9._-], starting with a letter or digit)" \
    "$AGENT" --node 'bad!name' --dram-bytes 64MiB
expect_fail 2 "mcos-agent: tiers.nvme.dir: $TEST_DIR/no-such-dir: No such file or directory" \
    "$AGENT" --node n1 --dram-bytes 64MiB --nvme-dir "$TEST_DIR/no-such-dir" \
    --nvme-bytes 1GiB
expect_fail 2 "mcos-agent: config file $CFG/unknown.json: unknown key 'listen'" \
    "$AGENT" --config "$CFG/unknown.json"
expect_fail 2 "mcos-agent: config file $CFG/malformed.json: line 4 column 1: unexpected token near '}'" \
    "$AGENT" --config "$CFG/malformed.json"
printf '{"tiers": {"dram": {"bytes": "x"}}}\n' >"$CFG/agent-badsize.json"
expect_fail 2 "mcos-agent: config file $CFG/agent-badsize.json: key 'tiers.dram.bytes': expected a size such as 4GiB or 1048576, got \"x\"" \
    "$AGENT" --config "$CFG/agent-badsize.json"

# ---------------------------------------------------------------------------
step "a running brain: config file + flag override, HTTP errors, wait timeout"
# The config file alone is invalid (fail_after 400 <= suspect_after 500);
# the flag overrides fail_after, so the brain must start.
start_brain --config "$CFG/liveness.json" --fail-after-ms "$FAIL_MS" \
    --suspect-after-ms "$SUSPECT_MS"
ok "brain started with --config and overriding flags"
start_agent n1
wait_for 10 nodes_alive 1 || fail "n1 did not join"

# A second brain on the same state dir must refuse to start and leave the
# first one serving.
alloc_ports P2 P3
expect_fail 1 "mcos-brain: state directory $BRAIN_STATE is in use by another brain" \
    "$BRAIN" --listen "tcp://127.0.0.1:$P2" --http "http://127.0.0.1:$P3" \
    --state-dir "$BRAIN_STATE"
require_running brain
brain_get /v1/status >/dev/null || fail "first brain stopped answering"
ok "the first brain still serves"

check_http_error() {
    local path=$1 want=$2 method=${3:-GET} code ctype
    code=$(run_on "$BRAIN_HOST" curl -s -X "$method" -o "$TEST_DIR/body" \
        -w '%{http_code} %{content_type}' "$BRAIN_HTTP$path")
    ctype=${code#* }
    code=${code%% *}
    [[ $code == "$want" ]] || fail "GET $path: HTTP $code, want $want"
    [[ $ctype == application/json* ]] ||
        fail "GET $path: Content-Type '$ctype', want application/json"
    jq -e '.error | type == "string" and length > 0' "$TEST_DIR/body" \
        >/dev/null || fail "GET $path: body is not {\"error\": ...}: $(cat "$TEST_DIR/body")"
    ok "GET $path -> $code $(jq -c . "$TEST_DIR/body")"
}
check_http_error /v1/nodes/nope 404
check_http_error '/v1/nodes/bad!name' 400
check_http_error /v1/nodes/nope/table 404
check_http_error '/v1/nodes/bad!name/table' 400
# Paths and methods no route claims answer in JSON too, not HTML.
check_http_error /v1/bogus 404
check_http_error /v1/status 405 POST
check_http_error /v1/sync 405 GET
check_http_error /v1/nodes 405 DELETE
# An error message that quotes the request stays JSON when it cuts a
# character in two ('%.64s' of a key whose 64th byte starts 'é'): the cut
# byte shows as '?' (it was 500 "out of memory": jansson refused the
# message, which was not UTF-8).
a63=$(printf 'a%.0s' {1..63})
code=$(run_on "$BRAIN_HOST" curl -s -X POST -o "$TEST_DIR/body" \
    -w '%{http_code}' "$BRAIN_HTTP/v1/route" -d "{\"${a63}é\": 1}")
[[ $code == 400 ]] ||
    fail "POST /v1/route, long key: HTTP $code, want 400: $(cat "$TEST_DIR/body")"
[[ $(jq -r .error "$TEST_DIR/body") == "unknown key '${a63}?'" ]] ||
    fail "POST /v1/route, long key: $(cat "$TEST_DIR/body")"
ok "POST /v1/route, long key -> 400 $(jq -c . "$TEST_DIR/body")"

expect_fail 1 "mcos-admin: no node named 'nope' (HTTP 404)" \
    "$ADMIN" --brain "$BRAIN_HTTP" node nope
expect_fail 1 "mcos-admin: bad node name 'bad!name' (HTTP 400)" \
    "$ADMIN" --brain "$BRAIN_HTTP" node 'bad!name'
expect_fail 1 "mcos-admin: no node named 'nope' (HTTP 404)" \
    "$ADMIN" --brain "$BRAIN_HTTP" tables nope

t0=$(now_ms)
capture "$ADMIN" --brain "$BRAIN_HTTP" wait --gen 999999 --timeout 1
elapsed=$(($(now_ms) - t0))
((CAPTURED_RC == 3)) ||
    fail "wait --gen 999999 --timeout 1: exit $CAPTURED_RC, want 3: $(cat "$TEST_DIR/err")"
one_line_stderr
grep -Eqx "mcos-admin: timed out after 1s: 0 of 1 live nodes run generation >= 999999 \(n1 at [0-9]+\)" \
    "$TEST_DIR/err" || fail "wait timeout line: $(cat "$TEST_DIR/err")"
((elapsed >= 900 && elapsed < 4000)) ||
    fail "wait --timeout 1 took $elapsed ms"
ok "exit 3 after $elapsed ms: $(cat "$TEST_DIR/err")"

expect_ok "$ADMIN" --brain "$BRAIN_HTTP" --json nodes
jq -e '(.generation | type == "number") and (.nodes | length == 1)
       and .nodes[0].name == "n1" and .nodes[0].state == "alive"' \
    "$TEST_DIR/out" >/dev/null ||
    fail "mcos-admin --json nodes: unexpected JSON: $(cat "$TEST_DIR/out")"
ok "mcos-admin --json nodes parses: $(jq -c '[.generation, [.nodes[].name]]' "$TEST_DIR/out")"
expect_ok "$ADMIN" --brain "$BRAIN_HTTP" --json status
jq -e '(.generation | type == "number") and .nodes.total == 1' \
    "$TEST_DIR/out" >/dev/null ||
    fail "mcos-admin --json status: unexpected JSON: $(cat "$TEST_DIR/out")"
ok "mcos-admin --json status parses"
expect_ok "$ADMIN" --brain "$BRAIN_HTTP" nodes
grep -Eq '^n1 +alive +[0-9]+ ' "$TEST_DIR/out" ||
    fail "mcos-admin nodes: no 'n1 alive' row: $(cat "$TEST_DIR/out")"
ok "mcos-admin nodes shows n1 alive"

# ---------------------------------------------------------------------------
step "mcos-bench: bad usage exits 2, a bad trace exits 1 naming file:line"
BENCH=$MCOS_BIN/mcos-bench
GOOD=$TEST_DIR/good.jsonl
BAD=$TEST_DIR/bad.jsonl
printf '{"timestamp": 0, "input_length": 1024, "output_length": 10, "hash_ids": [1, 2]}\n' >"$GOOD"
{
    cat "$GOOD"
    printf '{"timestamp": 5, "input_length": 1024, "output_length": 10, "hash_ids": [1, -3]}\n'
} >"$BAD"
: >"$TEST_DIR/empty.jsonl"
capture "$BENCH" frob
((CAPTURED_RC == 2)) || fail "mcos-bench frob: exit $CAPTURED_RC, want 2"
[[ $(head -1 "$TEST_DIR/err") == "mcos-bench: unknown command 'frob'" ]] ||
    fail "mcos-bench frob: $(head -1 "$TEST_DIR/err")"
ok "exit 2: mcos-bench frob: $(head -1 "$TEST_DIR/err")"
expect_fail 2 "mcos-bench replay: --trace FILE is required" "$BENCH" replay
expect_fail 2 "mcos-bench replay: unknown option '--frob' (see --help)" \
    "$BENCH" replay --trace "$GOOD" --frob
expect_fail 2 "mcos-bench replay: --mcos-load: expected queue, inflight, blocks or brain, got 'heavy'" \
    "$BENCH" replay --trace "$GOOD" --mcos-load heavy
expect_fail 2 "mcos-bench replay: --mcos-queue-block-weight: expected a number in 0..1e+09, got '-1'" \
    "$BENCH" replay --trace "$GOOD" --mcos-queue-block-weight -1
expect_fail 2 "mcos-bench replay: option --nodes: key 'nodes': 0 is out of range (1 to 4096)" \
    "$BENCH" replay --trace "$GOOD" --nodes 0
expect_fail 2 "mcos-bench replay: --policies: unknown policy 'nope' (known: mcos, round_robin, random, least_loaded, kv_overlap, cache_aware)" \
    "$BENCH" replay --trace "$GOOD" --policies nope
expect_fail 2 "mcos-bench replay: --on-error: expected refuse or skip, got 'maybe'" \
    "$BENCH" replay --trace "$GOOD" --on-error maybe
printf '{"nodes": "x"}\n' >"$TEST_DIR/bench.json"
expect_fail 2 "mcos-bench replay: config file $TEST_DIR/bench.json: key 'nodes': expected a non-negative integer" \
    "$BENCH" replay --config "$TEST_DIR/bench.json" --trace "$GOOD"
expect_fail 2 "mcos-bench gen: option --requests: key 'requests': 0 is out of range (1 to 100000000)" \
    "$BENCH" gen --requests 0 --out "$TEST_DIR/gen.jsonl"
expect_fail 1 "mcos-bench replay: trace $TEST_DIR/missing.jsonl: cannot open: No such file or directory" \
    "$BENCH" replay --trace "$TEST_DIR/missing.jsonl"
expect_fail 1 "mcos-bench replay: trace $TEST_DIR/empty.jsonl: no requests (the file is empty)" \
    "$BENCH" replay --trace "$TEST_DIR/empty.jsonl"
expect_fail 1 "mcos-bench replay: $BAD:2: field 'hash_ids': element 1: expected a non-negative integer, got -3 (use --on-error skip to skip malformed lines)" \
    "$BENCH" replay --trace "$BAD"
expect_fail 1 "mcos-bench report: cannot create $TEST_DIR/no/such/dir: No such file or directory" \
    "$BENCH" report --traces "$GOOD" --out "$TEST_DIR/no/such/dir"

expect_ok "$BENCH" replay --trace "$BAD" --on-error skip --policies round_robin --timing=false
grep -q "$BAD:2: skipped: field 'hash_ids'" "$TEST_DIR/err" ||
    fail "--on-error skip: no warning naming line 2: $(cat "$TEST_DIR/err")"
grep -q "^trace bad.jsonl: 1 requests, 1024 prompt tokens, 1 malformed lines skipped$" \
    "$TEST_DIR/out" || fail "--on-error skip: $(cat "$TEST_DIR/out")"
ok "--on-error skip: line 2 skipped and counted, line 1 replayed"

# The generator and the replay end to end: the same seed gives the same
# bytes, and every policy replays what it wrote.
expect_ok "$BENCH" gen --requests 60 --seed 3 --out "$TEST_DIR/gen1.jsonl"
expect_ok "$BENCH" gen --requests 60 --seed 3 --out "$TEST_DIR/gen2.jsonl"
cmp -s "$TEST_DIR/gen1.jsonl" "$TEST_DIR/gen2.jsonl" ||
    fail "mcos-bench gen: the same seed wrote different traces"
expect_ok "$BENCH" replay --trace "$TEST_DIR/gen1.jsonl" --timing=false
for pol in mcos round_robin random least_loaded kv_overlap cache_aware infinite; do
    grep -q "^$pol " "$TEST_DIR/out" || fail "replay: no row for $pol: $(cat "$TEST_DIR/out")"
done
ok "gen is deterministic (60 requests, seed 3); replay has a row per policy and the bound"

finish
