#!/usr/bin/env bash
#
# integration/test_systemd.sh: the daemons as systemd services.
#
#   - the generated units pass `systemd-analyze verify` (with ExecStart
#     pointed at this build's binaries);
#   - the sample configurations validate (--check-config), and a broken
#     one is refused with exit 2;
#   - Type=notify: with $NOTIFY_SOCKET and $WATCHDOG_USEC set, each daemon
#     sends READY=1 and a STATUS=, pings WATCHDOG=1, and says STOPPING=1
#     on SIGTERM (captured from a real datagram socket);
#   - `cmake --install` into a DESTDIR lays out binaries, units, sample
#     configs, and keeps an operator's existing config.

set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

test_init systemd
command -v systemd-analyze >/dev/null || skip "systemd-analyze not installed"
command -v socat >/dev/null || skip "socat not installed"
BUILD=${MCOS_BUILD_DIR:?}

step "units pass systemd-analyze verify"
for u in mcos-brain mcos-agent; do
    sed "s#@BINDIR@#$MCOS_BIN#g; s#^Documentation=.*##" \
        "$MCOS_ROOT/deploy/systemd/$u.service.in" >"$TEST_DIR/$u.service"
    systemd-analyze verify "$TEST_DIR/$u.service" >"$TEST_DIR/verify.out" 2>&1 ||
        fail "$u.service: $(cat "$TEST_DIR/verify.out")"
    ok "$u.service verifies"
done

step "sample configs validate"
out=$("$MCOS_BIN/mcos-brain" --config "$MCOS_ROOT/deploy/config/brain.json" \
    --state-dir "$TEST_DIR/state" --check-config)
[[ $out == "mcos-brain: configuration OK" ]] || fail "brain.json: $out"
out=$("$MCOS_BIN/mcos-agent" --config "$MCOS_ROOT/deploy/config/agent.json" \
    --node n1 --dram-bytes 64MiB --check-config)
[[ $out == "mcos-agent: configuration OK" ]] || fail "agent.json: $out"
ok "brain.json and agent.json"
echo '{"listen": "tcp://0.0.0.0:7650", "liveness": {"fail_after_ms": 10}}' \
    >"$TEST_DIR/bad.json"
expect_fail 2 "mcos-brain: config file $TEST_DIR/bad.json: key 'liveness.fail_after_ms': 10 is out of range (20 to 86400000)" \
    "$MCOS_BIN/mcos-brain" --config "$TEST_DIR/bad.json" --check-config

step "Type=notify: READY, STATUS, WATCHDOG, STOPPING"
# Datagrams arrive back to back (socat adds no separators): match the
# assignments anywhere in the capture.
notify_run() {
    local name=$1 sock=$TEST_DIR/$1.notify out=$TEST_DIR/$1.notified
    shift
    socat -u "UNIX-RECV:$sock" - >"$out" &
    PIDS[socat-$name]=$!
    wait_for 5 test -S "$sock" || fail "socat did not bind $sock"
    NOTIFY_SOCKET=$sock WATCHDOG_USEC=400000 "$@" \
        >"$TEST_DIR/$name.log" 2>&1 &
    PIDS[$name]=$!
    wait_for 10 grep -q 'READY=1' "$out" ||
        fail "$name: no READY=1 ($(head -c 300 "$out"))"
    wait_for 10 grep -q 'WATCHDOG=1' "$out" ||
        fail "$name: no WATCHDOG=1 pings"
    grep -q 'STATUS=.' "$out" || fail "$name: no STATUS="
    kill -TERM "${PIDS[$name]}"
    wait "${PIDS[$name]}" || fail "$name: exit status $?"
    unset "PIDS[$name]"
    wait_for 5 grep -q 'STOPPING=1' "$out" || fail "$name: no STOPPING=1"
    kill "${PIDS[socat-$name]}" 2>/dev/null || true
    unset "PIDS[socat-$name]"
    ok "$name: $(grep -o 'STATUS=[^=]*' "$out" | head -1 |
        sed 's/WATCHDOG$//; s/STOPPING$//')"
}
alloc_ports p1 p2 p3
notify_run brain "$MCOS_BIN/mcos-brain" --listen "tcp://127.0.0.1:$p1" \
    --http "http://127.0.0.1:$p2" --state-dir "$TEST_DIR/nstate"
notify_run agent "$MCOS_BIN/mcos-agent" --node n1 --brain "tcp://127.0.0.1:$p1" \
    --http "" --api "ipc://$TEST_DIR/a.sock" --shm-name "/mcos-it$$-sd" \
    --dram-bytes 64MiB --data-port "$p3"

step "cmake --install into a DESTDIR"
root=$TEST_DIR/root
mkdir -p "$root/etc/mcos"
echo '{"log_level": "debug"}' >"$root/etc/mcos/brain.json"
DESTDIR=$root cmake --install "$BUILD" >"$TEST_DIR/install.out" 2>&1 ||
    fail "install: $(tail -5 "$TEST_DIR/install.out")"
prefix=$(awk -F= '/^CMAKE_INSTALL_PREFIX:/ {print $2}' "$BUILD/CMakeCache.txt")
for f in bin/mcos-brain bin/mcos-agent bin/mcos-admin lib/libmcos.so.1 \
    include/mcos/mcos.h lib/systemd/system/mcos-brain.service \
    lib/systemd/system/mcos-agent.service; do
    [[ -e $root$prefix/$f ]] || fail "not installed: $prefix/$f"
done
grep -q "^ExecStart=$prefix/bin/mcos-agent " \
    "$root$prefix/lib/systemd/system/mcos-agent.service" ||
    fail "the agent unit does not run the installed binary"
[[ $(cat "$root/etc/mcos/brain.json") == '{"log_level": "debug"}' ]] ||
    fail "install overwrote an existing /etc/mcos/brain.json"
[[ -f $root/etc/mcos/agent.json ]] || fail "no sample /etc/mcos/agent.json"
ok "binaries, library, header, units and configs under $prefix and /etc/mcos"

finish
