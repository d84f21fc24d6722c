#!/usr/bin/env bash
#
# integration/test_fabric.sh: objects move node to node over the TCP data
# transport, each agent in its own network namespace (netns.sh).
#
#   - every agent announces a control endpoint, a TCP transport endpoint
#     and its DRAM arena as a region; the brain relays them to peers;
#   - evict demote_to_remote puts an object in a peer's memory, the owner's
#     copy goes only after the peer verified the bytes, and a get brings
#     it back intact (the peer's copy is then freed);
#   - `mcos-admin replicate` makes n1 copy an object to n2's DRAM; the
#     brain drops the task once n2 reports the object; its bytes match;
#   - evict demote_to_remote of an object in n1's (emulated) HBM and of
#     one on its NVMe: TCP reaches neither, so each is staged through a
#     DRAM copy (mcos_agent_remote_demotions_staged_total), verified by
#     the peer, and read back intact;
#   - an object on n1's NVMe tier is replicated too: staged into DRAM,
#     sent, n1's copy stays on NVMe;
#   - a route for a prefix n1 holds while n1's engine is busy goes to
#     another node, and the brain orders the blocks copied there;
#   - a peer killed mid-transfer (its link slowed with tbf so the kill
#     lands during the WRITE): the transfer fails, nothing is counted,
#     the source is intact, and the task is retried until the restarted
#     peer holds a verified copy;
#   - bad input on the control endpoint (a node the brain never admitted,
#     a wrong boot id, garbage bytes, an unknown op, an oversize alloc)
#     is refused with a clear error;
#   - a peer killed while the DRAM staging copy of an HBM object is written
#     to it: the evict fails with why, the object stays in HBM, intact,
#     and the staging copy is freed.
#
# Needs root and namespaces; without them it prints SKIP and exits 77.

set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/netns.sh"

test_init fabric
netns_require

NODES=(n1 n2 n3)
step "network: brain and three agents in their own namespaces"
netns_setup
netns_add_host brain 254
for i in 1 2 3; do
    netns_add_host "n$i" "$i"
done
declare -A IP=()
for h in brain "${NODES[@]}"; do
    IP[$h]=$(netns_ip "$h")
done
start_brain --host brain --ip "${IP[brain]}"
for i in 1 2 3; do
    nvme=()
    if ((i == 1)); then
        nvme=(--nvme-dir "$TEST_DIR/n1-nvme" --nvme-bytes 32MiB
            --emulate-hbm 16MiB)
        mkdir -p "$TEST_DIR/n1-nvme"
    fi
    start_agent "n$i" --host "n$i" --ip "${IP[n$i]}" --data-transports tcp \
        "${nvme[@]}"
done
wait_for 15 nodes_alive 3 || fail "the brain does not see 3 alive nodes"
G=$(brain_generation)
admin wait --gen "$G" --timeout 15 >/dev/null 2>&1 ||
    fail "the cluster did not converge on generation $G"
ok "3 agents alive, generation $G applied everywhere"


# ---------------------------------------------------------------------------
step "each agent announces control and tcp endpoints and its region"
for n in "${NODES[@]}"; do
    dp=${AGENT_DATA_PORT[$n]}
    eps=$(brain_jq '[.endpoints[] | "\(.transport):\(.address):\(.port)"] |
        join(" ")' "/v1/nodes/$n")
    [[ $eps == "control:${IP[$n]}:$dp tcp:${IP[$n]}:$((dp + 1))" ]] ||
        fail "$n announces '$eps'"
    ok "$n: $eps"
done
admin tables n1 >"$TEST_DIR/t1.txt"
grep -q "^peer/n2 .*control:${IP[n2]}:${AGENT_DATA_PORT[n2]} tcp:" \
    "$TEST_DIR/t1.txt" || fail "n1's table lacks n2's endpoints:
$(cat "$TEST_DIR/t1.txt")"
grep -q "^peer/n2 .* region=tcp:1:" "$TEST_DIR/t1.txt" ||
    fail "n1's table lacks n2's region: $(cat "$TEST_DIR/t1.txt")"
ok "n1's table: $(grep '^peer/n2 ' "$TEST_DIR/t1.txt")"

# ---------------------------------------------------------------------------
step "evict demote_to_remote: the object lives on a peer, and comes back"
A=a11ce
SIZE_A=$((3 * 1024 * 1024 + 7))
worker n1 put "$A" "$SIZE_A" 1 || fail "put $A on n1"
worker n1 evict "$A" 3 || fail "evict $A demote_to_remote"
st=$(worker n1 stat "$A")
[[ $st == "tier=5 state=2" ]] || fail "after demotion: $st, want tier=5"
hosted() {
    local sum=0 v
    for n in n2 n3; do
        v=$(agent_metric "$n" mcos_agent_fabric_hosted_objects) || v=0
        sum=$((sum + v))
    done
    echo "$sum"
}
[[ $(hosted) == 1 ]] || fail "peers host $(hosted) objects, want 1"
ok "object $A ($SIZE_A bytes) is in the remote tier; one peer hosts it"
worker n1 check "$A" "$SIZE_A" 1 || fail "get of the demoted object"
st=$(worker n1 stat "$A")
[[ $st == "tier=3 state=2" ]] || fail "after the get: $st, want tier=3"
wait_for 5 eval '[[ $(hosted) == 0 ]]' ||
    fail "the peer still hosts the object after it came back"
ok "a get brought it back to n1's dram with the same bytes; peer copy freed"
v=$(agent_metric n1 mcos_agent_remote_demotions_total)
[[ $v == 1 ]] || fail "remote demotions: $v"
v=$(agent_metric n1 mcos_agent_remote_fetches_total)
[[ $v == 1 ]] || fail "remote fetches: $v"
ok "n1 counted 1 remote demotion and 1 remote fetch"

# ---------------------------------------------------------------------------
step "evict demote_to_remote from HBM and NVMe: staged through DRAM over tcp"
SIZE_H=$((2 * 1024 * 1024 + 3))
seed=21
for t in 2 4; do
    H=4b0$t
    worker n1 put "$H" "$SIZE_H" $seed || fail "put $H on n1"
    worker n1 move "$H" $t || fail "move $H to tier $t on n1"
    worker n1 evict "$H" 3 || fail "evict $H demote_to_remote from tier $t"
    st=$(worker n1 stat "$H")
    [[ $st == "tier=5 state=2" ]] || fail "after demoting $H: $st"
    [[ $(hosted) == 1 ]] || fail "peers host $(hosted) objects, want 1"
    worker n1 check "$H" "$SIZE_H" $seed || fail "get of $H brought other bytes"
    wait_for 5 eval '[[ $(hosted) == 0 ]]' || fail "a peer still hosts $H"
    seed=$((seed + 1))
done
v=$(agent_metric n1 mcos_agent_remote_demotions_staged_total)
[[ $v == 2 ]] || fail "remote demotions staged: $v"
v=$(agent_metric n1 mcos_agent_remote_demotions_from_hbm_total)
[[ $v == 0 ]] || fail "remote demotions from hbm over tcp: $v"
v=$(agent_metric n1 mcos_agent_remote_demotions_total)
[[ $v == 3 ]] || fail "remote demotions: $v"
v=$(agent_metric n1 mcos_agent_move_failures_total)
[[ $v == 0 ]] || fail "move failures: $v"
ok "an HBM and an NVMe object went to a peer through a staging copy and came back"

# ---------------------------------------------------------------------------
step "mcos-admin replicate: n1 copies an object to n2, verified"
B=b0b0
SIZE_B=$((5 * 1024 * 1024))
worker n1 put "$B" "$SIZE_B" 2 || fail "put $B on n1"
out=$(admin replicate n1 "$B" n2 --tier dram) || fail "replicate: $out"
ok "$out"
n2_has_b() { worker n2 stat "$B" >/dev/null 2>&1; }
wait_for 15 n2_has_b || fail "n2 never got $B"
worker n2 check "$B" "$SIZE_B" 2 || fail "n2's replica differs"
worker n1 check "$B" "$SIZE_B" 2 || fail "n1's copy differs"
no_task() { ! table_has n1 "replica/"; }
wait_for 10 no_task || fail "the brain kept the replica task:
$(admin tables n1)"
ok "n2 holds a verified replica; the brain dropped the task"
v=$(agent_metric n1 mcos_agent_replicas_sent_total)
[[ $v == 1 ]] || fail "replicas sent: $v"
v=$(agent_metric n2 mcos_agent_replicas_adopted_total)
[[ $v == 1 ]] || fail "replicas adopted on n2: $v"
out=$(admin replicate n1 "$B" n1 2>&1) &&
    fail "replicating to itself was accepted"
[[ $out == *"cannot replicate to itself"* ]] || fail "self: $out"
out=$(admin replicate n1 "$B" nosuch 2>&1) &&
    fail "an unknown peer was accepted"
[[ $out == *"unknown peer 'nosuch'"* ]] || fail "unknown peer: $out"
out=$(admin replicate n1 "$B" n2 --tier tape 2>&1) &&
    fail "an unknown tier was accepted"
[[ $out == *"unknown tier 'tape'"* ]] || fail "bad tier: $out"
ok "bad replicate requests refused: self, unknown peer, unknown tier"

step "replicating an object that lives on NVMe: staged through DRAM"
D=d00d
SIZE_D=$((3 * 1024 * 1024 + 77))
worker n1 put "$D" "$SIZE_D" 4 || fail "put $D on n1"
worker n1 move "$D" 4 || fail "move $D to nvme on n1"
st=$(worker n1 stat "$D")
[[ $st == "tier=4 state=2" ]] || fail "before: $st, want tier=4 (nvme)"
admin replicate n1 "$D" n2 >/dev/null || fail "replicate $D to n2"
n2_has_d() { worker n2 stat "$D" >/dev/null 2>&1; }
wait_for 15 n2_has_d || fail "n2 never got $D"
worker n2 check "$D" "$SIZE_D" 4 || fail "n2's replica of $D differs"
st=$(worker n1 stat "$D")
[[ $st == "tier=4 state=2" ]] || fail "after: $st, want n1's copy on nvme"
worker n1 check "$D" "$SIZE_D" 4 || fail "n1's copy of $D differs"
v=$(agent_metric n1 mcos_agent_replicas_staged_total)
[[ $v == 1 ]] || fail "replicas staged: $v"
v=$(agent_metric n1 mcos_agent_replicas_sent_total)
[[ $v == 2 ]] || fail "replicas sent: $v"
ok "n2 holds a verified replica of an NVMe object; n1's stays on NVMe"

# ---------------------------------------------------------------------------
step "n3 killed mid-transfer: nothing counted, source intact, retried"
C=c0ffee
SIZE_C=$((24 * 1024 * 1024))
worker n1 put "$C" "$SIZE_C" 3 || fail "put $C on n1"
# 40 Mbit/s towards n3 (the switch's port to it, p4: brain, n1, n2, n3
# were added in that order): the 24 MiB WRITE takes about 5 s.
ip netns exec "$NETNS_SWITCH" tc qdisc add dev p4 root tbf rate 40mbit \
    burst 64kbit latency 200ms || fail "tbf towards n3"
# served_by NAME: the bytes NAME's fabric has taken in or served so far.
served_by() {
    agent_get "$1" /metrics | awk '/^mcos_agent_fabric_bytes_served/ { print $2 }'
}
base=$(served_by n3)
admin replicate n1 "$C" n3 >/dev/null || fail "replicate $C to n3"
writing() { local s; s=$(served_by n3) && ((s > base + 1048576)); }
wait_for 10 writing || fail "the transfer to n3 never started"
got=$(($(served_by n3) - base))
daemon_kill9 n3
((got < SIZE_C)) || fail "the transfer finished before the kill ($got bytes)"
ok "n3 killed after it had received $got of $SIZE_C bytes"
failed_attempt() {
    local v
    v=$(agent_metric n1 mcos_agent_replica_failures_total) && ((v >= 1))
}
wait_for 15 failed_attempt || fail "the transfer did not fail"
v=$(agent_metric n1 mcos_agent_replicas_sent_total)
[[ $v == 2 ]] || fail "replicas sent changed to $v"
worker n1 check "$C" "$SIZE_C" 3 || fail "the source changed"
ok "the transfer failed, counted as a failure only; the source is intact"
ip netns exec "$NETNS_SWITCH" tc qdisc del dev p4 root 2>/dev/null || true
start_agent n3 --host n3 --ip "${IP[n3]}" --data-transports tcp
n3_has_c() { worker n3 check "$C" "$SIZE_C" 3 >/dev/null 2>&1; }
wait_for 40 n3_has_c || fail "the retry never delivered $C to the new n3"
wait_for 10 eval '! table_has n1 "replica/"' || fail "task not dropped"
ok "retried after backoff: the restarted n3 holds a verified copy"

# ---------------------------------------------------------------------------
step "a route that copies: a busy node's prefix goes to the node chosen"
worker n1 kv llama e1,e2,e3,e4 || fail "kv blocks on n1"
indexed() { brain_get /metrics | grep '^mcos_brain_index_blocks 4$' >/dev/null; }
wait_for 10 indexed || fail "the index never held n1's 4 blocks"
# n1's engine has 100 blocks of prefill queued: computing the last block
# elsewhere and copying 4 (0.1 each) beats waiting there.
worker n1 load 1 1 100 5 &
eng=$!
n1_busy() {
    brain_get /v1/nodes/n1 | jq -e '.load.queued_prefill_blocks == 100' \
        >/dev/null
}
wait_for 10 n1_busy || fail "the brain never saw n1's engine load"
run_on brain curl -sS --max-time 3 -o "$TEST_DIR/route.json" \
    -X POST "$BRAIN_HTTP/v1/route" \
    -d '{"ns":"llama","blocks":["e1","e2","e3","e4","e5"]}' ||
    fail "route failed"
to=$(jq -r .node "$TEST_DIR/route.json")
[[ $to == n2 || $to == n3 ]] || fail "route: $(cat "$TEST_DIR/route.json")"
want="ordered 4 of 4 block(s) copied from n1 to $to (dram): cheaper than computing them"
[[ $(jq -r .replication "$TEST_DIR/route.json") == "$want" ]] ||
    fail "route: $(cat "$TEST_DIR/route.json")"
ok "$(jq -r .explain "$TEST_DIR/route.json")"
has_all() { for b in e1 e2 e3 e4; do worker "$to" stat "$b" >/dev/null 2>&1 || return 1; done; }
wait_for 15 has_all || fail "$to never got the 4 blocks"
for b in e1 e2 e3 e4; do
    worker "$to" check "$b" 8192 $((16#$b)) || fail "$to's copy of $b differs"
done
no_tasks() { ! table_has n1 "replica/"; }
wait_for 10 no_tasks || fail "the brain kept the copy tasks:
$(admin tables n1)"
wait "$eng" || fail "the load worker failed"
ok "$to holds the 4 blocks, verified; the brain dropped the tasks"

step "bad input on the control endpoint is refused with a clear error"
CTL="tcp://${IP[n2]}:${AGENT_DATA_PORT[n2]}"
probe() { run_on n1 "$MCOS_BIN/fabric_probe" "$CTL" "$@"; }
boot1=$(brain_jq '.boot_id' /v1/nodes/n1)
expect_probe() {
    local want=$1
    shift
    local got
    got=$(probe "$@") || fail "fabric_probe $*: no answer"
    [[ $got == *"$want"* ]] || fail "fabric_probe $*: '$got', want '$want'"
    ok "$* -> $got"
}
expect_probe "status=-13 error=node intruder is not an admitted peer of n2" \
    intruder 1 alloc 4096
expect_probe "is not the one the brain admitted" n1 1 alloc 4096
expect_probe "status=-74" - - garbage
expect_probe "status=-22 error=unknown peer op 77" n1 "$boot1" badop
expect_probe "exceed n2's DRAM arena" n1 "$boot1" alloc $((1 << 40))
expect_probe "no open reservation 999 for n1" n1 "$boot1" commit 999
v=$(agent_metric n2 mcos_agent_fabric_refused_total)
((v >= 6)) || fail "n2 counted $v refusals"
worker n2 check "$B" "$SIZE_B" 2 || fail "n2's replica changed"
ok "n2 counted $v refusals; what it holds is intact"


# ---------------------------------------------------------------------------
step "a peer killed while an HBM object's staging copy is written to it"
# evict demote_to_remote picks its peer: both links are slowed (40 Mbit/s:
# a 12 MiB WRITE takes about 2.5 s) and whichever peer receives is killed.
D=d0d0
SIZE_D=$((12 * 1024 * 1024))
worker n1 put "$D" "$SIZE_D" 5 || fail "put $D on n1"
worker n1 move "$D" 2 || fail "move $D to n1's hbm"
for port in p3 p4; do # n2, n3
    ip netns exec "$NETNS_SWITCH" tc qdisc add dev $port root tbf rate 40mbit \
        burst 64kbit latency 200ms || fail "tbf on $port"
done
dram_used() {
    agent_get n1 /metrics |
        awk '/^mcos_agent_tier_used_bytes\{node="n1",tier="dram"/ { print $2 }'
}
declare -A served0=([n2]=$(served_by n2) [n3]=$(served_by n3))
fails=$(agent_metric n1 mcos_agent_move_failures_total)
staged=$(agent_metric n1 mcos_agent_remote_demotions_staged_total)
dram_before=$(dram_used)
worker n1 evict "$D" 3 >"$TEST_DIR/evict.out" 2>&1 &
epid=$!
victim=""
_receiving() {
    local n s
    for n in n2 n3; do
        s=$(served_by "$n") || return 1
        if ((s > ${served0[$n]} + 1048576)); then
            victim=$n
            return 0
        fi
    done
    return 1
}
# Not through wait_for: its command runs in a subshell, and victim must
# come back.
deadline=$(($(now_ms) + 15000))
until _receiving; do
    (($(now_ms) < deadline)) || fail "the staged copy of $D never reached a peer"
    sleep 0.05
done
daemon_kill9 "$victim"
if wait "$epid"; then
    fail "the evict of $D succeeded although $victim was killed: $(cat "$TEST_DIR/evict.out")"
fi
st=$(worker n1 stat "$D")
[[ $st == "tier=2 state=2" ]] || fail "after the failed demotion $D is $st, want tier=2 state=2"
grep -Eq "\|store\|WARN\|object 000000000000d0d0: .+; the object stays in hbm$" \
    "$TEST_DIR/n1.log" || fail "n1 did not log why the demotion of $D failed"
v=$(agent_metric n1 mcos_agent_move_failures_total)
((v == fails + 1)) || fail "move failures went from $fails to $v"
v=$(agent_metric n1 mcos_agent_remote_demotions_staged_total)
((v == staged)) || fail "a staged demotion was counted: $staged -> $v"
v=$(dram_used)
((v == dram_before)) || fail "n1's DRAM holds $v bytes, $dram_before before: the staging copy was not freed"
worker n1 check "$D" "$SIZE_D" 5 || fail "$D's bytes changed"
ok "$victim killed mid-WRITE: the evict failed, $D stays in n1's hbm intact, staging copy freed"
for port in p3 p4; do
    ip netns exec "$NETNS_SWITCH" tc qdisc del dev $port root 2>/dev/null || true
done
start_agent "$victim" --host "$victim" --ip "${IP[$victim]}" --data-transports tcp
wait_for 15 nodes_alive 3 || fail "$victim did not come back"
G=$(brain_generation)
admin wait --gen "$G" --timeout 15 >/dev/null 2>&1 ||
    fail "the cluster did not converge on generation $G after $victim came back"
ok "$victim restarted; the cluster converged on generation $G"

finish
