#!/usr/bin/env bash
#
# integration/test_netns.sh: brain and agents on separate hosts, each in
# its own network namespace on a private bridge (see netns.sh), so every
# address in the system is a real, distinct one:
#
#   - the three agents reach the brain from their own addresses (the
#     brain's established connections come from three distinct IPs) and
#     advertise their own --data-address;
#   - all converge, and the table compiled for n1 lists peers n2 and n3 at
#     their namespace addresses (in the brain and in the table n1 runs);
#   - kill -9 of n2 fails it, and n1's and n3's tables drop peer/n2.
#
# Needs root and kernel support for namespaces, bridges and veth pairs;
# without them it prints SKIP and exits 77.

set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/netns.sh"

test_init netns
netns_require

NODES=(n1 n2 n3)

# ---------------------------------------------------------------------------
step "network: a switch namespace, a brain host and three agent hosts"
netns_setup
netns_add_host brain 254
for i in 1 2 3; do
    netns_add_host "n$i" "$i"
done
declare -A IP=()
for h in brain "${NODES[@]}"; do
    IP[$h]=$(netns_ip "$h")
    log "   $h: namespace $(netns_name "$h"), address ${IP[$h]}"
done
# The root namespace must not be on the test subnet: traffic between hosts
# then necessarily crosses the bridge.
if ip -4 -o addr show | grep -q " $NETNS_SUBNET\."; then
    fail "the root namespace has an address in $NETNS_SUBNET.0/24"
fi
ok "subnet $NETNS_SUBNET.0/24 exists only inside this run's namespaces"

# ---------------------------------------------------------------------------
step "brain and agents start, each in its own namespace, and converge"
start_brain --host brain --ip "${IP[brain]}"
for i in 1 2 3; do
    start_agent "n$i" --host "n$i" --ip "${IP[n$i]}" --rack "r$i" --zone z1
done
wait_for 15 nodes_alive 3 || fail "the brain does not see 3 alive nodes"
G=$(brain_generation)
admin wait --gen "$G" --timeout 15 >"$TEST_DIR/wait.out" 2>&1 ||
    fail "mcos-admin wait --gen $G: $(cat "$TEST_DIR/wait.out")"
ok "all 3 nodes alive; mcos-admin wait --gen $G: $(cat "$TEST_DIR/wait.out")"

# ---------------------------------------------------------------------------
step "each agent reaches the brain from its own address"
# The brain's side of the control connections: one per agent, each from
# that agent's namespace address.
established_peers() {
    netns_exec brain ss -Htn state established "( sport = :$BRAIN_PORT )" |
        awk '{ sub(/:[0-9]+$/, "", $NF); print $NF }' | sort -u | paste -sd' '
}
want_peers=$(printf '%s\n' "${IP[n1]}" "${IP[n2]}" "${IP[n3]}" | sort -u |
    paste -sd' ')
peers_are_agents() {
    [[ $(established_peers) == "$want_peers" ]]
}
wait_for 5 peers_are_agents ||
    fail "brain's connections come from '$(established_peers)', want '$want_peers'"
ok "brain's connections on :$BRAIN_PORT come from $want_peers"

# What each node advertises for the data plane, as the brain records it.
for n in "${NODES[@]}"; do
    ep=$(brain_jq '.endpoints[0] | "\(.transport):\(.address):\(.port)"' \
        "/v1/nodes/$n")
    [[ $ep == "control:${IP[$n]}:${AGENT_DATA_PORT[$n]}" ]] ||
        fail "$n advertises $ep, want control:${IP[$n]}:${AGENT_DATA_PORT[$n]}"
    ok "$n: endpoint $ep"
done
addrs=$(brain_jq '[.nodes[].endpoints[0].address] | unique | length' /v1/nodes)
((addrs == 3)) || fail "want 3 distinct endpoint addresses, got $addrs"
ok "three distinct endpoint addresses in /v1/nodes"

# ---------------------------------------------------------------------------
step "n1's table lists n2 and n3 at their namespace addresses"
peer_line() {
    echo "peer/$1 rack=r${1#n} zone=z1 control:${IP[$1]}:${AGENT_DATA_PORT[$1]} tcp:${IP[$1]}:$((${AGENT_DATA_PORT[$1]} + 1))"
}
admin tables n1 >"$TEST_DIR/table-n1.txt" ||
    fail "mcos-admin tables n1 failed"
for n in n2 n3; do
    grep -qF "$(peer_line "$n") region=tcp:1:" "$TEST_DIR/table-n1.txt" ||
        fail "brain's table for n1 lacks '$(peer_line "$n")':
$(cat "$TEST_DIR/table-n1.txt")"
    ok "mcos-admin tables n1: $(peer_line "$n")"
done
grep -q '^peer/n1 ' "$TEST_DIR/table-n1.txt" &&
    fail "n1's table lists n1 itself as a peer"
# The table n1 runs (from its own namespace) says the same.
agent_get n1 /v1/table >"$TEST_DIR/agent-table-n1.txt"
for n in n2 n3; do
    grep -qF "$(peer_line "$n") region=tcp:1:" "$TEST_DIR/agent-table-n1.txt" ||
        fail "agent n1's table lacks '$(peer_line "$n")'"
done
ok "agent n1 runs a table with both peers"

# ---------------------------------------------------------------------------
step "kill -9 n2: failed, and the other tables drop peer/n2"
t0=$(now_ms)
daemon_kill9 n2
wait_for 10 node_state_is n2 failed || fail "n2 was never marked failed"
log "   n2 failed $(($(now_ms) - t0)) ms after SIGKILL (fail_after $FAIL_MS ms)"
wait_for 5 brain_check ".nodes.failed == 1 and .nodes.alive == 2 and .converged" \
    /v1/status || fail "status: want 1 failed, 2 alive, converged"
F=$(brain_generation)
admin wait --gen "$F" --timeout 15 >"$TEST_DIR/wait.out" 2>&1 ||
    fail "mcos-admin wait --gen $F: $(cat "$TEST_DIR/wait.out")"
ok "mcos-admin wait --gen $F: $(cat "$TEST_DIR/wait.out")"
no_peer_n2() {
    ! table_has "$1" "peer/n2 " && ! agent_table_has "$1" "peer/n2 "
}
for n in n1 n3; do
    wait_for 5 no_peer_n2 "$n" || fail "$n's table still lists peer/n2"
    table_has "$n" "peer/$([[ $n == n1 ]] && echo n3 || echo n1) " ||
        fail "$n's table lost its other peer"
    ok "$n: peer/n2 gone from the brain's table and the one the agent runs"
done

finish
