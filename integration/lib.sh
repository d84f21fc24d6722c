# shellcheck shell=bash
#
# integration/lib.sh: shared helpers for the integration tests.
#
# Each test script sources this file, calls test_init, starts real daemons
# (mcos-brain, mcos-agent) as children of the test shell, waits on
# conditions with wait_for (never on fixed sleeps), and ends with finish,
# which stops every daemon with SIGTERM, checks that each exited 0 and that
# no sanitizer report appeared in any log, and prints the PASS line.
#
# Every test runs in its own temporary directory (state, logs, captured
# command output).  The directory is removed after a pass and kept (and
# its logs printed) after a failure.  Cleanup runs from an EXIT trap, so a
# failing assertion, an unexpected error under `set -e`, Ctrl-C or SIGTERM
# all end with no daemon left running and, when netns.sh is in use, no
# namespace left behind.  (SIGKILL cannot be trapped; every wait here is
# bounded, so a test ends on its own long before CTest's 180 s timeout.)
#
# Binaries come from $MCOS_BIN (CTest sets it to the build's bin dir, the
# ASan build under `make test`), else build/bin of this checkout.
#
# A daemon runs either in the root namespace on loopback or, when netns.sh
# is sourced, inside a host namespace: functions that take a HOST argument
# accept "" for the root namespace.

set -euo pipefail

# fd 9 keeps the test's stderr for fail(), which may run where stderr is
# redirected (inside a wait_for condition).
exec 9>&2

MCOS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MCOS_BIN=${MCOS_BIN:-$MCOS_ROOT/build/bin}

# Sanitizer settings for the ASan+UBSan build (ignored by release binaries).
# abort_on_error/halt_on_error turn any report into a non-zero exit that
# the SIGTERM exit check sees even if nobody reads the log; detect_leaks
# makes a leak at a clean shutdown a failure too.  Callers may override.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:halt_on_error=1:strict_string_checks=1:check_initialization_order=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# tests/lsan.supp: what LeakSanitizer may ignore, each with its reason.
if [[ -z ${LSAN_OPTIONS:-} && -r $MCOS_ROOT/tests/lsan.supp ]]; then
    export LSAN_OPTIONS=suppressions=$MCOS_ROOT/tests/lsan.supp:print_suppressions=0
fi

# Text that only a sanitizer prints; UBSan's reports start with
# "file:line:col: runtime error:".
SANITIZER_PATTERN='ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|SUMMARY: (Address|UndefinedBehavior)Sanitizer'

# The version every binary must report, taken from the top-level project().
# shellcheck disable=SC2034 # used by the test scripts
MCOS_VERSION=$(sed -n 's/^project(mcos VERSION \([0-9.]*\).*/\1/p' \
    "$MCOS_ROOT/CMakeLists.txt")

TEST_NAME=""
TEST_DIR=""
TEST_START_MS=0
# Set once fail() has printed the logs, so the EXIT trap does not repeat.
_FAIL_REPORTED=0

# Daemon bookkeeping, keyed by a short name ("brain", "n1", ...).
# Logs are $TEST_DIR/NAME.log, appended to across restarts.
declare -A PIDS=() # pids of the daemons still running

# ---------------------------------------------------------------------------
# Time and output

# Milliseconds since the epoch, from bash's own clock (no fork).  The
# character class strips the decimal point whatever the locale prints.
now_ms() {
    local us=${EPOCHREALTIME//[!0-9]/}
    echo $((us / 1000))
}

# One progress line, prefixed with the seconds since test_init.
log() {
    local ms=$(($(now_ms) - TEST_START_MS))
    printf '[%3d.%03ds] %s\n' $((ms / 1000)) $((ms % 1000)) "$*"
}

# A heading for each scenario step, so a failure is easy to place.
step() {
    echo
    log "== $*"
}

ok() {
    log "   ok: $*"
}

# Print the tail of every daemon log (and any other *.log in the test dir)
# so a failure in CI can be diagnosed without the temp dir.
dump_logs() {
    local f why=${1:-} first=() rest=() name
    [[ -n $TEST_DIR && -d $TEST_DIR ]] || return 0
    # What CI shows of a failure can be cut short: the telling logs come
    # first (sanitizer reports, daemons that died, daemons the failure
    # names), each to its last 80 lines.
    for name in "${!PIDS[@]}"; do
        daemon_running "$name" || echo "----- $name (pid ${PIDS[$name]}) is not running -----" >&2
    done
    for f in "$TEST_DIR"/*.log; do
        [[ -e $f ]] || continue
        name=$(basename "$f" .log)
        if grep -Eq "$SANITIZER_PATTERN" "$f" ||
            { [[ -n ${PIDS[$name]:-} ]] && ! daemon_running "$name"; } ||
            [[ " $why " =~ [^[:alnum:]_-]${name}[^[:alnum:]_-] ]]; then
            first+=("$f")
        else
            rest+=("$f")
        fi
    done
    for f in "${first[@]}" "${rest[@]}"; do
        echo "----- $f (last 80 lines) -----" >&2
        tail -n 80 "$f" >&2 || true
    done
    echo "----- end of logs; test dir kept: $TEST_DIR -----" >&2
}

# Abort the test: say why, show the logs, exit 1 (the EXIT trap cleans up).
# It writes to fd 9, the test's original stderr, because fail may run
# inside a wait_for condition whose output is discarded.
fail() {
    {
        echo
        echo "FAIL: $TEST_NAME: $*"
        dump_logs "$*"
    } >&9 2>&9
    _FAIL_REPORTED=1
    exit 1
}

# Skip the test (CTest maps exit 77 to "Not Run" via SKIP_RETURN_CODE).
skip() {
    echo "SKIP: $*"
    _FAIL_REPORTED=1
    exit 77
}

# ---------------------------------------------------------------------------
# Setup and cleanup

# test_init NAME: make the temp dir, check the tools and binaries, and
# install the traps.  Call it first, before anything that can fail.
test_init() {
    TEST_NAME=$1
    TEST_START_MS=$(now_ms)
    TEST_DIR=$(mktemp -d "${TMPDIR:-/tmp}/mcos-$TEST_NAME.XXXXXX")
    trap _on_exit EXIT
    # Turn signals into a normal exit so the EXIT trap runs exactly once.
    trap 'exit 130' INT
    trap 'exit 143' TERM
    # Name the failing command when set -e stops the script somewhere a
    # fail() call did not anticipate.
    set -E
    trap '_on_err "$LINENO" "$BASH_COMMAND"' ERR

    local tool bin
    for tool in curl jq ss; do
        command -v "$tool" >/dev/null ||
            fail "$tool is not installed (run scripts/install-deps)"
    done
    for bin in mcos-brain mcos-agent mcos-admin; do
        [[ -x $MCOS_BIN/$bin ]] ||
            fail "$MCOS_BIN/$bin not found: build first or set MCOS_BIN"
    done
    log "$TEST_NAME: binaries from $MCOS_BIN, temp dir $TEST_DIR"
}

_on_err() {
    # Only report in the top-level shell: in a subshell or command
    # substitution the failure is handled (or reported) by the caller.
    if ((BASH_SUBSHELL == 0)); then
        echo "error: line $1: command failed: $2" >&2
    fi
}

# The EXIT trap: kill whatever still runs (SIGKILL: this is the error
# path, or finish already stopped everything cleanly), remove namespaces,
# then either report the failure or remove the temp dir.
_on_exit() {
    local rc=$?
    trap - ERR
    set +e
    local name
    for name in "${!PIDS[@]}"; do
        disown "${PIDS[$name]}" 2>/dev/null
        kill -9 "${PIDS[$name]}" 2>/dev/null
        wait_for 5 _pid_gone "${PIDS[$name]}"
        unset "PIDS[$name]"
    done
    if declare -F netns_teardown >/dev/null; then
        netns_teardown
    fi
    # Agents killed with -9 cannot unlink their DRAM arenas.
    rm -f /dev/shm/mcos-it$$-*
    if ((rc != 0 && rc != 77)); then
        if ((_FAIL_REPORTED == 0)); then
            echo "FAIL: $TEST_NAME: exit status $rc" >&9
            dump_logs 2>&9
        fi
    elif [[ -n $TEST_DIR && -d $TEST_DIR && -z ${MCOS_KEEP_TMP:-} ]]; then
        rm -rf "$TEST_DIR"
    fi
    exit "$rc"
}

# ---------------------------------------------------------------------------
# Polling

# wait_for TIMEOUT_S CMD...: run CMD every 50 ms until it succeeds (return
# 0) or TIMEOUT_S seconds (decimals allowed) pass (return 1).  CMD's output
# is discarded; use a function that returns the condition.
wait_for() {
    local timeout=$1
    shift
    local whole=${timeout%.*} frac=0
    [[ $timeout == *.* ]] && frac=${timeout#*.}
    frac=${frac}000
    local deadline=$(($(now_ms) + whole * 1000 + 10#${frac:0:3}))
    while true; do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        if (($(now_ms) >= deadline)); then
            return 1
        fi
        sleep 0.05
    done
}

# ---------------------------------------------------------------------------
# Ports

# The next port to try.  A random start in 27000-29999 (outside Linux's
# ephemeral range, 32768+) keeps two concurrent runs apart; port_in_use
# then skips anything already bound or lingering in TIME_WAIT.  Unit tests
# that need fixed ports stay below (unit_fabric 24653-24852, unit_store
# 25653-25852), since ctest runs them beside an integration test.
_NEXT_PORT=$((27000 + (RANDOM % 290) * 10))

port_in_use() {
    [[ -n $(ss -Htan "( sport = :$1 )" 2>/dev/null) ]]
}

# alloc_port: print a port that is free now and was not handed out before
# by this test.  Call it as VAR=$(alloc_port) only through alloc_ports,
# since a command substitution would lose the _NEXT_PORT update.
_alloc_port() {
    local tries=0
    while ((tries < 3000)); do
        local p=$_NEXT_PORT
        _NEXT_PORT=$((_NEXT_PORT + 1))
        ((_NEXT_PORT < 30000)) || _NEXT_PORT=27000
        tries=$((tries + 1))
        if ! port_in_use "$p"; then
            _PORT=$p
            return 0
        fi
    done
    fail "no free port in 27000-29999"
}

# alloc_ports VAR...: assign a distinct free port to each named variable.
alloc_ports() {
    local var
    for var in "$@"; do
        _alloc_port
        printf -v "$var" '%s' "$_PORT"
    done
}

# ---------------------------------------------------------------------------
# Running commands on a host (root namespace or a netns.sh host)

# run_on HOST CMD...: run CMD in HOST's namespace ("" = here).
run_on() {
    local host=$1
    shift
    if [[ -z $host ]]; then
        "$@"
    else
        netns_exec "$host" "$@"
    fi
}

# ---------------------------------------------------------------------------
# Daemons

# daemon_start NAME HOST CMD...: start CMD in the background with its
# output appended to NAME.log.  The recorded pid is the daemon's own: a
# simple command started with & is exec'd by the forked shell, and
# `ip netns exec` execs its command too, so signals reach the daemon.
daemon_start() {
    local name=$1 host=$2
    shift 2
    if [[ -n ${PIDS[$name]:-} ]]; then
        fail "daemon_start: $name is already running (pid ${PIDS[$name]})"
    fi
    local logf=$TEST_DIR/$name.log
    echo "=== $(date -u +%FT%T.%3NZ) start: $*" >>"$logf"
    if [[ -z $host ]]; then
        "$@" >>"$logf" 2>&1 </dev/null &
    else
        ip netns exec "$(netns_name "$host")" "$@" >>"$logf" 2>&1 </dev/null &
    fi
    PIDS[$name]=$!
}

daemon_running() {
    local pid=${PIDS[$1]:-}
    [[ -n $pid ]] && _pid_live "$pid"
}

# True while PID exists and has not exited (an exited child stays a zombie,
# state Z, until it is reaped by wait).
_pid_live() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

# _reap NAME TIMEOUT_S: wait for NAME to exit and store its status in
# _EXIT_STATUS; returns 1 if it is still running after TIMEOUT_S.
_reap() {
    local name=$1 timeout=$2 pid=${PIDS[$1]}
    if wait_for "$timeout" _pid_gone "$pid"; then
        _EXIT_STATUS=0
        wait "$pid" || _EXIT_STATUS=$?
        unset "PIDS[$name]"
        return 0
    fi
    return 1
}

_pid_gone() {
    ! _pid_live "$1"
}

# daemon_stop NAME: SIGTERM, wait up to 15 s, and require exit status 0
# (a clean shutdown; under ASan also no leak report at exit).
daemon_stop() {
    local name=$1 pid=${PIDS[$1]:-}
    [[ -n $pid ]] || fail "daemon_stop: $name is not running"
    kill -TERM "$pid" 2>/dev/null || true
    if ! _reap "$name" 15; then
        # Where it is stuck, for the log dump that follows.
        if command -v gdb >/dev/null; then
            gdb -p "$pid" -batch -ex 'thread apply all bt 20' \
                >>"$TEST_DIR/$name.log" 2>&1 || true
        fi
        fail "$name (pid $pid) did not exit within 15 s of SIGTERM"
    fi
    if ((_EXIT_STATUS != 0)); then
        fail "$name exited with status $_EXIT_STATUS after SIGTERM (want 0)"
    fi
}

# daemon_kill9 NAME: simulate a crash.  Exempt from the exit-status check.
# The job is disowned first so bash does not print "Killed" for it; bash
# still reaps it, which is all _pid_gone waits for.
daemon_kill9() {
    local name=$1 pid=${PIDS[$1]:-}
    [[ -n $pid ]] || fail "daemon_kill9: $name is not running"
    disown "$pid" 2>/dev/null || true
    kill -9 "$pid"
    wait_for 10 _pid_gone "$pid" || fail "$name (pid $pid) survived SIGKILL"
    unset "PIDS[$name]"
}

# require_running NAME...: fail early (with the logs) when a daemon died,
# rather than waiting for a condition that can no longer come true.
require_running() {
    local name
    for name in "$@"; do
        daemon_running "$name" || fail "$name is not running (crashed?)"
    done
}

# check_logs: no sanitizer report in any log of this test.
check_logs() {
    local f hits=""
    for f in "$TEST_DIR"/*.log; do
        [[ -e $f ]] || continue
        if grep -Eq "$SANITIZER_PATTERN" "$f"; then
            hits="$hits $(basename "$f")"
        fi
    done
    [[ -z $hits ]] || fail "sanitizer reports in:$hits"
}

# finish: stop the agents, then the brain, with SIGTERM (each must exit 0),
# check the logs, and print the PASS line.
finish() {
    local name
    step "shutdown: SIGTERM every daemon, expect exit 0 and clean logs"
    for name in "${!PIDS[@]}"; do
        [[ $name == brain ]] || daemon_stop "$name"
    done
    [[ -z ${PIDS[brain]:-} ]] || daemon_stop brain
    check_logs
    ok "all daemons exited 0; no sanitizer reports"
    local ms=$(($(now_ms) - TEST_START_MS))
    echo
    printf 'PASS: %s (%d.%03d s)\n' "$TEST_NAME" $((ms / 1000)) $((ms % 1000))
}

# ---------------------------------------------------------------------------
# The MCOS cluster

# Liveness and timing settings, short so a test takes seconds.  A test may
# change them before start_brain / start_agent.
REPORT_MS=100
SUSPECT_MS=600
FAIL_MS=1500
STALE_MS=800

BRAIN_HOST=""
BRAIN_IP=127.0.0.1
BRAIN_PORT=""
BRAIN_HTTP_PORT=""
BRAIN_HTTP=""
BRAIN_STATE=""

declare -A AGENT_HOST=() AGENT_IP=() AGENT_HTTP=() AGENT_DATA_PORT=()

# start_brain [--host HOST --ip IP] [EXTRA FLAGS...]: start (or restart,
# on the same ports and state dir) the brain and wait for its HTTP API.
# shellcheck disable=SC2120 # the arguments are optional
start_brain() {
    while (($#)); do
        case $1 in
        --host) BRAIN_HOST=$2; shift 2 ;;
        --ip) BRAIN_IP=$2; shift 2 ;;
        *) break ;;
        esac
    done
    if [[ -z $BRAIN_PORT ]]; then
        alloc_ports BRAIN_PORT BRAIN_HTTP_PORT
        BRAIN_STATE=$TEST_DIR/brain-state
    fi
    BRAIN_HTTP=http://$BRAIN_IP:$BRAIN_HTTP_PORT
    daemon_start brain "$BRAIN_HOST" "$MCOS_BIN/mcos-brain" \
        --listen "tcp://$BRAIN_IP:$BRAIN_PORT" --http "$BRAIN_HTTP" \
        --state-dir "$BRAIN_STATE" --report-interval-ms "$REPORT_MS" \
        --suspect-after-ms "$SUSPECT_MS" --fail-after-ms "$FAIL_MS" "$@"
    wait_for 15 _brain_up || fail "brain did not answer on $BRAIN_HTTP"
    log "brain up (pid ${PIDS[brain]}): nng tcp://$BRAIN_IP:$BRAIN_PORT, HTTP $BRAIN_HTTP"
}

_brain_up() {
    require_running brain
    brain_get /v1/status
}

# start_agent NAME [--host HOST --ip IP] [EXTRA FLAGS...]: start (or
# restart with the same ports) agent NAME and wait for its status API.
# It advertises --data-address IP so tables name a reachable address.
start_agent() {
    local name=$1
    shift
    if [[ -z ${AGENT_HTTP[$name]:-} ]]; then
        AGENT_HOST[$name]=""
        AGENT_IP[$name]=127.0.0.1
    fi
    while (($#)); do
        case $1 in
        --host) AGENT_HOST[$name]=$2; shift 2 ;;
        --ip) AGENT_IP[$name]=$2; shift 2 ;;
        *) break ;;
        esac
    done
    if [[ -z ${AGENT_HTTP[$name]:-} ]]; then
        local hp dp
        alloc_ports hp
        # The data port and the next one (the agent's transports).
        while :; do
            alloc_ports dp
            if ! port_in_use $((dp + 1)); then
                _NEXT_PORT=$((dp + 2))
                break
            fi
        done
        AGENT_HTTP[$name]=http://${AGENT_IP[$name]}:$hp
        AGENT_DATA_PORT[$name]=$dp
    fi
    daemon_start "$name" "${AGENT_HOST[$name]}" "$MCOS_BIN/mcos-agent" \
        --node "$name" --brain "tcp://$BRAIN_IP:$BRAIN_PORT" \
        --http "${AGENT_HTTP[$name]}" --report-interval-ms "$REPORT_MS" \
        --stale-after-ms "$STALE_MS" --dram-bytes 64MiB \
        --data-port "${AGENT_DATA_PORT[$name]}" \
        --data-address "${AGENT_IP[$name]}" \
        --api "ipc://$TEST_DIR/$name.api.sock" \
        --shm-name "/mcos-it$$-$name" "$@"
    wait_for 15 _agent_up "$name" ||
        fail "agent $name did not answer on ${AGENT_HTTP[$name]}"
    log "agent $name up (pid ${PIDS[$name]}): HTTP ${AGENT_HTTP[$name]}"
}

_agent_up() {
    require_running "$1"
    agent_get "$1" /v1/status
}

# With pipefail, a reader that stops early (grep -q, awk's exit) closes
# the pipe under curl, which then fails ("curl: (23) Failed writing body")
# and so does the pipeline, however the match went: read answers whole
# (grep PATTERN >/dev/null; awk with an END block).

# brain_get PATH: the brain's HTTP answer body; fails on HTTP errors.
brain_get() {
    run_on "$BRAIN_HOST" curl -sSf --max-time 3 "$BRAIN_HTTP$1"
}

# agent_get NAME PATH: the agent's HTTP answer body.
agent_get() {
    run_on "${AGENT_HOST[$1]}" curl -sSf --max-time 3 "${AGENT_HTTP[$1]}$2"
}

# api NAME: agent NAME's local API socket; worker NAME ARGS...: the test
# client (tests/libmcos_worker.c) against it, inside NAME's namespace.
api() { echo "ipc://$TEST_DIR/$1.api.sock"; }
worker() {
    local node=$1
    shift
    run_on "${AGENT_HOST[$node]-$node}" "$MCOS_BIN/libmcos_worker" \
        "$(api "$node")" "$@"
}

# admin ARGS...: mcos-admin against this test's brain.
admin() {
    run_on "$BRAIN_HOST" "$MCOS_BIN/mcos-admin" --brain "$BRAIN_HTTP" "$@"
}

# brain_jq FILTER PATH: jq -r FILTER over the brain's answer to PATH.
brain_jq() {
    brain_get "$2" | jq -r "$1"
}

# brain_check FILTER PATH: true when FILTER is true of the brain's answer.
brain_check() {
    brain_get "$2" | jq -e "$1" >/dev/null
}

# agent_jq NAME FILTER: jq -r FILTER over the agent's /v1/status.
agent_jq() {
    agent_get "$1" /v1/status | jq -r "$2"
}

# agent_metric NAME METRIC: the value of METRIC{node="NAME"} at /metrics.
agent_metric() {
    agent_get "$1" /metrics |
        awk -v m="$2{node=\"$1\"}" '$1 == m { print $2; found = 1 }
            END { exit !found }'
}

# node_state NAME: the brain's view of NAME (alive, suspect, failed).
node_state() {
    brain_jq '.state' "/v1/nodes/$1"
}

node_state_is() {
    [[ $(node_state "$1") == "$2" ]]
}

brain_generation() {
    brain_jq '.generation' /v1/status
}

# nodes_alive N: the brain sees exactly N alive nodes and no others.
nodes_alive() {
    brain_check ".nodes.alive == $1 and .nodes.total == $1" /v1/status
}

# not_alive NAME...: the names among NAME... that the brain does not list
# as alive (for failure messages, which put those agents' logs first).
not_alive() {
    local body alive n out=""
    body=$(brain_get /v1/nodes 2>&1) || {
        echo "(the brain does not answer: $body)"
        return 0
    }
    alive=$(jq -r '.nodes[] | select(.state == "alive") | .name' <<<"$body")
    for n in "$@"; do
        grep -qx "$n" <<<"$alive" || out+=" $n"
    done
    echo "${out# }"
}

# table_has NODE RULE: the brain's compiled table for NODE has a line
# starting with RULE (e.g. "peer/n2 ").
table_has() {
    admin tables "$1" | grep "^$2" >/dev/null
}

# agent_table_has NAME RULE: the table the agent itself runs has RULE.
agent_table_has() {
    agent_get "$1" /v1/table | grep "^$2" >/dev/null
}

# ---------------------------------------------------------------------------
# Expected command results (CLI contract checks)

# capture CMD...: run CMD; its stdout, stderr and exit status land in
# $TEST_DIR/out, $TEST_DIR/err and CAPTURED_RC.  A daemon started this way
# with a valid config would run forever, so a 10 s timeout guards it.
capture() {
    CAPTURED_RC=0
    timeout 10 "$@" >"$TEST_DIR/out" 2>"$TEST_DIR/err" </dev/null ||
        CAPTURED_RC=$?
}

# expect_fail RC 'EXACT STDERR LINE' CMD...: CMD exits RC and prints
# exactly that one line on stderr (these messages are the contract).
expect_fail() {
    local want_rc=$1 want_err=$2
    shift 2
    capture "$@"
    local err
    err=$(cat "$TEST_DIR/err")
    if ((CAPTURED_RC != want_rc)); then
        fail "$(_show "$@"): exit $CAPTURED_RC, want $want_rc; stderr: $err"
    fi
    if [[ $err != "$want_err" ]]; then
        fail "$(_show "$@"): stderr differs
   want: $want_err
    got: $err"
    fi
    ok "exit $want_rc: $(_show "$@")"
    log "       $want_err"
}

# A command line for messages, with the binary dir stripped for brevity.
_show() {
    local s="$*"
    echo "${s//$MCOS_BIN\//}"
}
