#!/bin/bash
#
# integration/rxe/lib.sh: sourced by the rxe scenarios (scenario_*.sh) after they
# set SCENARIO (their name, for log lines) and BUILD.  Gives them BIN, DIR
# (a fresh temp dir), the brain's address inside rxe-vm (BRAIN_IP, BP,
# BH), PID (daemons killed at exit) and the helpers below.

BIN=${MCOS_BIN:-$BUILD/bin}
DIR=$(mktemp -d "/tmp/mcos-rxe-$SCENARIO.XXXXXX")
BRAIN_IP=10.77.0.254
BP=7650
BH=7651
declare -A PID=()

log() { echo "$SCENARIO: $*"; }
# fail MESSAGE: prints it and the tail of every daemon's log, exits 1.
fail() {
    echo "$SCENARIO: FAIL: $*"
    for f in "$DIR"/*.log; do
        echo "----- $f"
        tail -40 "$f"
    done
    exit 1
}
cleanup() {
    for p in "${PID[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# wait_until SECONDS CMD...: until CMD succeeds, or fails after SECONDS.
wait_until() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

brain_get() { curl -fsS "http://$BRAIN_IP:$BH$1"; }
admin() { "$BIN/mcos-admin" --brain "http://$BRAIN_IP:$BH" "$@"; }
# worker HOST ARGS...: libmcos_worker against HOST's agent.
worker() {
    local h=$1
    shift
    on "$h" "$BIN/libmcos_worker" "ipc://$DIR/$h.api.sock" "$@"
}
# series HOST 'NAME{LABELS}': HOST's /metrics value of exactly that series
# (label values without spaces).
series() {
    local ipvar="MCOS_IP_$1"
    curl -fsS "http://${!ipvar}:7660/metrics" |
        awk -v m="$2" '$1 == m { print $2 }'
}
# metric HOST NAME: HOST's /metrics value of NAME{node="HOST"}.
metric() { series "$1" "$2{node=\"$1\"}"; }
# start_brain: the brain on the bridge, fast failure detection.
start_brain() {
    "$BIN/mcos-brain" --listen "tcp://$BRAIN_IP:$BP" \
        --http "http://$BRAIN_IP:$BH" --state-dir "$DIR/brain" \
        --report-interval-ms 200 --suspect-after-ms 1000 \
        --fail-after-ms 2000 >>"$DIR/brain.log" 2>&1 &
    PID[brain]=$!
}
alive2() { brain_get /v1/status | jq -e '.nodes.alive == 2 and .converged'; }
