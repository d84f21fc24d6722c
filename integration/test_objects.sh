#!/usr/bin/env bash
#
# integration/test_objects.sh: objects stored through libmcos are visible
# to the operator.  A brain and two agents; a client process stores,
# reads and drops objects on n1; then
#
#   - mcos-admin objects --node n1 lists what n1 holds (and --json agrees
#     with the agent's own /v1/objects);
#   - mcos-admin object ID finds an object on n1 and nowhere else, and
#     says so clearly for an id no node holds;
#   - n1's tier usage reaches the brain (reports) and both /metrics;
#   - bad arguments exit 2 with one line.

set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

test_init objects

step "brain + 2 agents"
start_brain
mkdir -p "$TEST_DIR/nvme-n1"
start_agent n1 --emulate-hbm 16MiB --nvme-dir "$TEST_DIR/nvme-n1" \
    --nvme-bytes 256MiB
start_agent n2
wait_for 15 nodes_alive 2 || fail "two nodes never alive"

step "a client stores 50 objects on n1, keeps 33"
"$MCOS_BIN/libmcos_worker" "ipc://$TEST_DIR/n1.api.sock" many 0 ||
    fail "libmcos_worker failed"
ok "client done"

step "mcos-admin objects --node n1"
admin objects --node n1 >"$TEST_DIR/objects.out"
grep -q '^node n1: 33 objects$' "$TEST_DIR/objects.out" ||
    fail "objects: $(head -1 "$TEST_DIR/objects.out")"
n=$(grep -c '^0000000100000' "$TEST_DIR/objects.out")
((n == 33)) || fail "objects listed $n rows, want 33"
ok "33 objects listed"
admin --json objects --node n1 --limit 5 >"$TEST_DIR/objects.json"
jq -e '.total == 33 and (.objects | length) == 5' "$TEST_DIR/objects.json" \
    >/dev/null || fail "--json --limit 5: $(cat "$TEST_DIR/objects.json")"
agent_get n1 /v1/objects | jq -e '.total == 33' >/dev/null ||
    fail "the agent's /v1/objects disagrees"
ok "--json and --limit agree with the agent"

step "mcos-admin object ID"
admin object 100000001 >"$TEST_DIR/object.out"
grep -q '^n1 .*0000000100000001 .* resident ' "$TEST_DIR/object.out" ||
    fail "object: $(cat "$TEST_DIR/object.out")"
(($(grep -c '^n' "$TEST_DIR/object.out") == 1)) ||
    fail "object found on more than one node"
ok "$(tail -1 "$TEST_DIR/object.out")"
# expect_fail runs a program, not a shell function.
ADM=("$MCOS_BIN/mcos-admin" --brain "$BRAIN_HTTP")
expect_fail 1 "mcos-admin: object 000000010000ffff is not on any live node" \
    "${ADM[@]}" object 10000ffff
expect_fail 2 "mcos-admin: object: bad id 'xyz' (want up to 16 hex digits, not 0)" \
    "${ADM[@]}" object xyz
expect_fail 2 "mcos-admin: objects: --node NODE is required" "${ADM[@]}" objects
expect_fail 2 "mcos-admin: objects: --limit takes a positive number, got '0'" \
    "${ADM[@]}" objects --node n1 --limit 0
expect_fail 1 "mcos-admin: no node named 'nope' (HTTP 404)" \
    "${ADM[@]}" objects --node nope

step "tier usage reaches the brain and /metrics"
_used_reported() {
    brain_check '[.tiers[] | select(.tier == "dram")][0].used > 0' /v1/nodes/n1
}
wait_for 10 _used_reported || fail "n1's DRAM usage never reached the brain"
[[ $(agent_metric n1 mcos_agent_objects) == 33 ]] ||
    fail "mcos_agent_objects is not 33"
brain_check '[.tiers[] | select(.tier == "hbm")][0].emulated' /v1/nodes/n1 ||
    fail "n1's HBM is not marked emulated at the brain"
ok "usage reported; HBM marked emulated"

finish
