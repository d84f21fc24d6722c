#!/usr/bin/env bash
#
# integration/test_route.sh: KV-aware routing over real processes.
#
#   - agents store KV blocks of prefix chains through libmcos; the events
#     reach the brain's global prefix index;
#   - POST /v1/route picks the node holding the longest prefix, and
#     mcos-admin route --explain says why;
#   - many requests for one hot prefix spread across nodes (herding);
#   - malformed bodies get HTTP 400 with a message, and the brain goes on;
#   - a failed node's blocks leave the index and routes avoid it.

set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

test_init route

step "brain + 3 agents; n2 holds a1..a5, n3 holds a1..a2"
# Copies from peers off (routing.peer_fetch_milli 1000): this test checks
# matching, load and herding against a fixed index; test_fabric checks the
# copies the brain orders.
start_brain --route-peer-fetch-milli 1000
for n in n1 n2 n3; do
    start_agent "$n"
done
wait_for 15 nodes_alive 3 || fail "three nodes never alive"
W=$MCOS_BIN/libmcos_worker
"$W" "ipc://$TEST_DIR/n2.api.sock" kv llama a1,a2,a3,a4,a5 || fail "worker n2"
"$W" "ipc://$TEST_DIR/n3.api.sock" kv llama a1,a2 || fail "worker n3"
# 7 STORED events (5 from n2, 2 from n3) over 5 distinct blocks.
_indexed() {
    brain_get /metrics | grep '^mcos_brain_index_blocks 5$' >/dev/null &&
        brain_get /metrics |
        awk '$1 == "mcos_brain_index_events_total" { v = $2 } END { exit !(v >= 7) }'
}
wait_for 10 _indexed || fail "the index never held both nodes' blocks"
ok "index holds the 5 blocks, from both nodes"

route() {
    run_on "$BRAIN_HOST" curl -sS --max-time 3 -X POST \
        -o "$TEST_DIR/route.json" -w '%{http_code}' "$BRAIN_HTTP/v1/route" \
        -d "$1"
}

step "the longest prefix wins, and the explanation says why"
[[ $(route '{"ns":"llama","blocks":["a1","a2","a3","a4","a5","a6"]}') == 200 ]] ||
    fail "route: $(cat "$TEST_DIR/route.json")"
jq -e '.node == "n2" and .ranked[0].matched.total == 5 and
       .ranked[1].node == "n3" and .replication ==
       "none: copying from peers is off (routing.peer_fetch_milli >= 1000)"' \
    "$TEST_DIR/route.json" >/dev/null ||
    fail "route: $(cat "$TEST_DIR/route.json")"
ok "$(jq -r .explain "$TEST_DIR/route.json")"
admin route --explain --ns llama a1,a2,a3 >"$TEST_DIR/explain.out"
grep -q '^route to n' "$TEST_DIR/explain.out" ||
    fail "admin route: $(cat "$TEST_DIR/explain.out")"
grep -q 'why: ' "$TEST_DIR/explain.out" || fail "admin route: no why"
ok "mcos-admin route --explain: $(head -1 "$TEST_DIR/explain.out")"

step "an engine's queued prefill work steers routes away, and leaves with it"
# n2 holds 5 of 6 blocks (1 to prefill), n3 2 (4 to prefill).  An engine
# on n2 reports 40 blocks of prefill queued: n2 now costs 1 + 40.
"$W" "ipc://$TEST_DIR/n2.api.sock" load 3 1 40 3 &
eng=$!
n2_loaded() {
    brain_get /v1/nodes | jq -e '.nodes[] | select(.name == "n2") |
        .load.queued_prefill_blocks == 40 and .load.engines == 1 and
        .load.queued == 3 and .load.running == 1' >/dev/null
}
wait_for 10 n2_loaded || fail "the brain never saw n2's engine load:
$(brain_get /v1/nodes)"
# The agent shows what it reports, and how old its engines' figures are
# (the engine reported once: the age grows).
engine_age() {
    agent_get n2 /metrics | awk '$1 ~ /^mcos_agent_engine_load_age_seconds/ { print $2 }'
}
agent_get n2 /metrics >"$TEST_DIR/n2.metrics"
for m in 'mcos_agent_engines{node="n2"} 1' \
    'mcos_agent_engine_queued_requests{node="n2"} 3' \
    'mcos_agent_engine_running_requests{node="n2"} 1' \
    'mcos_agent_engine_queued_prefill_blocks{node="n2"} 40'; do
    grep -qxF "$m" "$TEST_DIR/n2.metrics" || fail "n2 /metrics lacks '$m'"
done
age1=$(engine_age)
sleep 0.3
age2=$(engine_age)
awk -v a="$age1" -v b="$age2" 'BEGIN { exit !(b >= a + 0.25 && b < 3.5) }' ||
    fail "engine load age $age1 then $age2 s, 0.3 s apart"
[[ $(route '{"ns":"llama","blocks":["a1","a2","a3","a4","a5","a6"]}') == 200 ]] ||
    fail "route: $(cat "$TEST_DIR/route.json")"
# (n1 or n3: the routes made above still count as their load.)
jq -e '.node != "n2" and (.ranked[] | select(.node == "n2") |
       .queued_blocks == 40 and .over_bound)' "$TEST_DIR/route.json" >/dev/null ||
    fail "route with n2 busy: $(cat "$TEST_DIR/route.json")"
ok "n2 busy with 40 queued blocks: $(jq -r .explain "$TEST_DIR/route.json")"
wait "$eng" || fail "the load worker failed"
n2_idle() {
    brain_get /v1/nodes | jq -e '.nodes[] | select(.name == "n2") |
        .load.queued_prefill_blocks == 0 and .load.engines == 0' >/dev/null
}
wait_for 10 n2_idle || fail "n2's engine load outlived its client"
[[ $(route '{"ns":"llama","blocks":["a1","a2","a3","a4","a5","a6"]}') == 200 &&
    $(jq -r .node "$TEST_DIR/route.json") == n2 ]] ||
    fail "route after the engine left: $(cat "$TEST_DIR/route.json")"
"$W" "ipc://$TEST_DIR/n2.api.sock" load 2000000 0 0 0 2>"$TEST_DIR/load.err" &&
    fail "2000000 queued requests were accepted"
grep -q "load: Invalid argument" "$TEST_DIR/load.err" ||
    fail "bad load: $(cat "$TEST_DIR/load.err")"
grep -q "load: 2000000 queued and 0 running requests; each must be at most 1000000" \
    "$TEST_DIR/n2.log" || fail "the agent did not say why it refused the load"
"$W" "ipc://$TEST_DIR/n2.api.sock" load 0 0 5000000000 0 2>/dev/null &&
    fail "5000000000 queued blocks were accepted"
grep -q "load: 5000000000 queued prefill blocks; at most 4294967295" \
    "$TEST_DIR/n2.log" || fail "the agent did not say why it refused the blocks"
ok "the engine left: n2 again; bad load reports refused with the reason"

step "herding: 30 requests for the hot prefix do not all go to its holder"
# A burst: one curl sends the 30 requests over one connection.  Without
# engine load, what the brain routed to a node counts as its load for
# routing.route_hold_ms (5 s), whatever the agents report meanwhile.
declare -A got=()
args=()
for i in $(seq 30); do
    ((i == 1)) || args+=(--next)
    args+=(-sS --max-time 3 -X POST -d '{"ns":"llama","blocks":["a1","a2","a3","a4","a5"]}'
        "$BRAIN_HTTP/v1/route")
done
run_on "$BRAIN_HOST" curl "${args[@]}" >"$TEST_DIR/burst.json"
while read -r n; do
    got[$n]=$((${got[$n]:-0} + 1))
done < <(jq -r .node "$TEST_DIR/burst.json")
(($(jq -s length "$TEST_DIR/burst.json") == 30)) ||
    fail "the burst got $(jq -s length "$TEST_DIR/burst.json") answers, want 30"
# The load term alone must keep n2, which holds the whole prefix, from
# taking everything.
((${#got[@]} >= 2)) || fail "requests went to ${!got[*]} only"
((${got[n2]:-0} < 30)) || fail "n2 got all 30: herding"
# Every route of the burst counts until the end (no engine reports cover
# them), so the bounded-load rule holds across the whole burst: n2's load
# stays within (1 + 0.25) x (mean + 1), with the mean at most 35 / 3
# counting the earlier steps' routes.
((${got[n2]:-0} <= 15)) || fail "n2 got ${got[n2]} of 30, over the load bound"
# /v1/nodes shows those routes as each node's routed load.
brain_get /v1/nodes | jq -e --argjson n2 "${got[n2]:-0}" '.nodes[] |
    select(.name == "n2") | .load.routed >= $n2 and .load.routed_blocks >= 0' \
    >/dev/null || fail "n2's routed load: $(brain_get /v1/nodes/n2)"
ok "n1=${got[n1]:-0} n2=${got[n2]:-0} n3=${got[n3]:-0}"

step "malformed bodies: HTTP 400 with a message, the brain goes on"
check400() {
    local code
    code=$(route "$1")
    [[ $code == 400 ]] || fail "body $1: HTTP $code, want 400"
    [[ $(jq -r .error "$TEST_DIR/route.json") == "$2" ]] ||
        fail "body $1: error '$(jq -r .error "$TEST_DIR/route.json")', want '$2'"
    ok "400: $2"
}
check400 'nope' "body is not valid JSON: line 1 column 4: '[' or '{' expected near 'nope'"
check400 '[1]' "body must be a JSON object"
check400 '{"blocks":[]}' "'blocks' must be a non-empty array of at most 4096 block hashes"
check400 '{"blocks":["zz"]}' "blocks[0]: expected a block hash (a non-negative integer or up to 16 hex digits)"
check400 '{"blocks":[1],"ns":"bad ns"}' "bad namespace 'bad ns' (1-63 of [A-Za-z0-9._/-])"
check400 '{"blocks":[1],"x":1}' "unknown key 'x'"
check400 '{"blocks":[1],"output_len":-1}' "'output_len' must be a non-negative integer"
big=$(printf '"a",%.0s' $(seq 5000))
check400 "{\"blocks\":[${big%,}]}" "'blocks' must be a non-empty array of at most 4096 block hashes"
[[ $(route '{"blocks":[1]}') == 200 ]] || fail "the brain stopped routing"

step "a failed node leaves the index and the routes"
daemon_kill9 n2
wait_for 10 node_state_is n2 failed || fail "n2 never failed"
for _ in $(seq 10); do
    route '{"ns":"llama","blocks":["a1","a2","a3","a4","a5"]}' >/dev/null
    [[ $(jq -r .node "$TEST_DIR/route.json") != n2 ]] ||
        fail "routed to failed n2"
done
jq -e '[.ranked[].node] | index("n2") == null' "$TEST_DIR/route.json" \
    >/dev/null || fail "n2 still ranked"
jq -e '.ranked[] | select(.node == "n3") | .matched.total == 2' \
    "$TEST_DIR/route.json" >/dev/null || fail "n3's blocks lost"
ok "routes avoid n2; n3 still matches 2 blocks"

finish
