#!/usr/bin/env bash
#
# integration/test_engine.sh: the brain's decide/compile engine with real
# agents, each in its own network namespace (netns.sh).
#
#   - a KV block read again and again on n1 (rack r1) is hot: the brain
#     copies it, unasked, to n2 (the only node in another rack; n3 shares
#     n1's rack), and `mcos-admin replication` says so and why;
#   - nobody reads the copy on n2 for a whole window: the brain sends n2 a
#     drop/ rule, n2 drops its copy, and n1's original is intact;
#   - objects read one after the other on n3 become a prefetch/ rule; once
#     it is in force, reading the trigger brings the follower up from NVMe
#     to DRAM before it is asked for, and its next read is a prefetch hit;
#   - `mcos-admin sync --recompute` recomputes every decide/compile step
#     and publishes tables identical to the incremental ones.
#
# Needs root and namespaces; without them it prints SKIP and exits 77.

set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/netns.sh"

test_init engine
netns_require

step "network: brain and three agents in their own namespaces"
netns_setup
netns_add_host brain 254
for i in 1 2 3; do
    netns_add_host "n$i" "$i"
done
declare -A IP=() RACK=([n1]=r1 [n2]=r2 [n3]=r1)
for h in brain n1 n2 n3; do
    IP[$h]=$(netns_ip "$h")
done
# Short rounds and windows so the scenario takes seconds.
start_brain --host brain --ip "${IP[brain]}" --repl-interval-ms 300 \
    --repl-drop-after-ms 3000 --repl-min-hotness-milli 2500 \
    --prefetch-min-support 2
mkdir -p "$TEST_DIR/n3-nvme"
for n in n1 n2 n3; do
    extra=()
    [[ $n == n3 ]] && extra=(--nvme-dir "$TEST_DIR/n3-nvme" --nvme-bytes 64MiB)
    start_agent "$n" --host "$n" --ip "${IP[$n]}" --data-transports tcp \
        --rack "${RACK[$n]}" "${extra[@]}"
done
wait_for 15 nodes_alive 3 || fail "the brain does not see 3 alive nodes"
G=$(brain_generation)
admin wait --gen "$G" --timeout 15 >/dev/null 2>&1 ||
    fail "the cluster did not converge on generation $G"
ok "3 agents alive (n1 r1, n2 r2, n3 r1), generation $G applied"

repl_state() {
    brain_jq ".replicas[] | select(.object == \"$1\") | .state" \
        /v1/replication
}

# ---------------------------------------------------------------------------
step "a hot KV block on n1 is copied to another rack before demand"
B=00000000000000b1
worker n1 kv m b1 || fail "store kv block b1 on n1"
for _ in 1 2 3 4; do
    worker n1 check b1 8192 0xb1 || fail "read b1 on n1"
done
n2_holds() { [[ $(worker n2 stat b1 2>/dev/null) == "tier=3 state=2" ]]; }
wait_for 15 n2_holds || fail "n2 never received a copy of b1:
$(admin replication)"
ok "n2 holds b1 in dram ($(worker n2 stat b1))"
out=$(admin replication)
grep -q "^$B m  *n1  *n2 .*copied into a rack no holder was in" <<<"$out" ||
    fail "mcos-admin replication does not explain the copy: $out"
ok "mcos-admin replication: $(grep "^$B" <<<"$out")"
[[ $(repl_state "$B" | head -1) =~ ^(copying|held)$ ]] ||
    fail "state of the copy: $(repl_state "$B")"
v=$(agent_metric n1 mcos_agent_replicas_sent_total)
[[ $v == 1 ]] || fail "n1 sent $v replicas"
ok "n1 sent 1 replica, verified by n2"

# ---------------------------------------------------------------------------
step "a copy nobody reads is dropped after its window; the original stays"
wait_for 15 eval '[[ $(repl_state $B) =~ ^(dropping|dropped)$ ]]' ||
    fail "the unused copy was not dropped: $(admin replication)"
wait_for 10 eval '! n2_holds' || fail "n2 still holds b1"
v=$(agent_metric n2 mcos_agent_rule_drops_total)
[[ $v == 1 ]] || fail "n2 counted $v rule drops"
worker n1 check b1 8192 0xb1 || fail "n1's b1 changed"
wait_for 10 eval '[[ $(repl_state $B) == dropped ]]' ||
    fail "not remembered as dropped: $(repl_state "$B")"
! table_has n2 "drop/" || fail "n2's table still has a drop rule"
ok "n2 dropped its unused copy (1 rule drop); n1 intact; remembered as dropped"

# ---------------------------------------------------------------------------
step "access pairs become a prefetch rule that n3 executes"
worker n3 put a1 65536 1 || fail "put a1"
worker n3 put a2 65536 2 || fail "put a2"
for _ in 1 2 3; do
    worker n3 evict a2 2 || fail "demote a2 to nvme"
    worker n3 check a1 65536 1 || fail "read a1"
    worker n3 check a2 65536 2 || fail "read a2"
done
P=prefetch/00000000000000a1
wait_for 10 table_has n3 "$P" || fail "no prefetch rule: $(admin tables n3)"
rule=$(admin tables n3 | grep "^$P")
[[ $rule == "$P -> 00000000000000a2 into dram within 50ms" ]] ||
    fail "rule: $rule"
ok "brain learned: $rule"
wait_for 10 agent_table_has n3 "$P" || fail "n3 does not run the rule"
worker n3 evict a2 2 || fail "demote a2"
[[ $(worker n3 stat a2) == "tier=4 state=2" ]] || fail "a2 is not on nvme"
hits0=$(agent_metric n3 mcos_agent_prefetch_hits_total)
worker n3 check a1 65536 1 || fail "read a1"
wait_for 5 eval '[[ $(worker n3 stat a2) == "tier=3 state=2" ]]' ||
    fail "a2 was not prefetched: $(worker n3 stat a2)"
v=$(agent_metric n3 mcos_agent_rule_prefetches_total)
((v >= 1)) || fail "n3 counted $v rule prefetches"
worker n3 check a2 65536 2 || fail "read a2"
v=$(agent_metric n3 mcos_agent_prefetch_hits_total)
((v == hits0 + 1)) || fail "prefetch hits $hits0 -> $v"
ok "reading a1 brought a2 from nvme to dram; its read was a prefetch hit"

# ---------------------------------------------------------------------------
step "sync --recompute: every step from scratch, the same tables"
for n in n1 n2 n3; do
    admin tables "$n" | grep -v '^#' >"$TEST_DIR/before-$n.txt"
done
out=$(admin sync --recompute --wait) || fail "sync --recompute: $out"
for n in n1 n2 n3; do
    admin tables "$n" | grep -v '^#' >"$TEST_DIR/after-$n.txt"
    diff -u "$TEST_DIR/before-$n.txt" "$TEST_DIR/after-$n.txt" ||
        fail "$n's table changed in a full recompute"
done
v=$(brain_get /metrics | awk '$1 == "mcos_brain_recomputes_total" { print $2 }')
[[ $v == 1 ]] || fail "recomputes: $v"
code=$(run_on brain curl -s -o "$TEST_DIR/bad.json" -w '%{http_code}' \
    -X POST "$BRAIN_HTTP/v1/sync?recompute=yes")
[[ $code == 400 ]] || fail "bad query: HTTP $code"
grep -q "sync: unknown query 'recompute=yes' (want recompute=1 or nothing)" \
    "$TEST_DIR/bad.json" || fail "bad query: $(cat "$TEST_DIR/bad.json")"
ok "identical tables after a full recompute; a bad query is refused"

finish
