#!/usr/bin/env bash
#
# integration/test_membership.sh: etcd membership leases against a real
# etcd.
#
#   - agents register /mcos/nodes/<node> under a lease they keep alive;
#   - a hung agent (SIGSTOP) loses its lease within about one TTL, and the
#     brain marks it failed at once, long before its own silence timer
#     (set to a minute here) would have;
#   - when the agent runs again it registers under a new lease and the
#     brain sees it alive again;
#   - bad etcd settings are refused with a message that names them.

set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/etcd.sh"

test_init membership
etcd_require
# Silence alone would take a minute to fail a node: only the lease is fast.
SUSPECT_MS=30000
FAIL_MS=60000
TTL=2

step "bad etcd settings are refused, naming the problem"
if out=$("$MCOS_BIN/mcos-agent" --check-config --etcd-lease-ttl-s 1 2>&1); then
    fail "a 1 s lease TTL was accepted"
fi
grep -q 'etcd.lease_ttl_s' <<<"$out" || fail "TTL error: $out"
ok "agent: $out"
if out=$("$MCOS_BIN/mcos-brain" --state-dir "$TEST_DIR/bad-state" \
    --listen "tcp://127.0.0.1:1" --http "" --etcd "ftp://127.0.0.1:1" 2>&1); then
    fail "an ftp:// etcd endpoint was accepted"
fi
grep -q 'ftp://127.0.0.1:1' <<<"$out" || fail "endpoint error: $out"
ok "brain: $(tail -1 <<<"$out")"

step "etcd, a brain watching it, and two agents registered under leases"
etcd_start e1
EP=$(etcd_endpoints e1)
start_brain --etcd "$EP"
brain_check '.etcd.configured and .etcd.watching' /v1/status ||
    wait_for 10 brain_check '.etcd.watching' /v1/status ||
    fail "the brain is not watching etcd: $(brain_get /v1/status)"
admin status >"$TEST_DIR/status.out"
grep -q "^etcd: *$EP (membership watch up)$" "$TEST_DIR/status.out" ||
    fail "mcos-admin status: $(cat "$TEST_DIR/status.out")"
ok "mcos-admin status: $(grep '^etcd:' "$TEST_DIR/status.out")"
for n in n1 n2; do
    start_agent "$n" --etcd "$EP" --etcd-lease-ttl-s "$TTL"
done
wait_for 15 nodes_alive 2 || fail "two nodes never alive"
_registered() {
    [[ $(etcdctl_on e1 get --prefix /mcos/nodes/ --keys-only | grep -c .) == 2 ]]
}
wait_for 10 _registered || fail "registrations: $(etcdctl_on e1 get --prefix /mcos/nodes/)"
val=$(etcdctl_on e1 get /mcos/nodes/n1 --print-value-only)
jq -e '.node == "n1" and (.boot_id | length) == 16' <<<"$val" >/dev/null ||
    fail "n1's registration: $val"
ok "registered: $val"

step "a hung agent loses its lease and the brain fails it within ~TTL"
kill -STOP "${PIDS[n1]}"
t0=$(now_ms)
wait_for 15 node_state_is n1 failed || fail "n1 never failed"
took=$(($(now_ms) - t0))
((took < SUSPECT_MS)) || fail "n1 failed after $took ms: the silence timer, not the lease"
grep -q 'node n1: .* -> failed: its etcd membership lease ended' \
    "$TEST_DIR/brain.log" || fail "the brain log does not give the lease as the cause"
node_state_is n2 alive || fail "n2 is $(node_state n2)"
ok "n1 failed ${took} ms after it hung (lease TTL ${TTL} s, silence timer ${FAIL_MS} ms); n2 alive"

step "the agent runs again: a new lease, and the brain sees it alive"
kill -CONT "${PIDS[n1]}"
wait_for 15 node_state_is n1 alive || fail "n1 never came back"
wait_for 15 _registered || fail "n1 never registered again"
grep -q 'registering again' "$TEST_DIR/n1.log" ||
    fail "n1's log does not show it registering again"
ok "n1 alive and registered again"

etcd_stop_all
finish
