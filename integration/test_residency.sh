#!/usr/bin/env bash
#
# integration/test_residency.sh: the brain's residency prediction carried
# out by a real agent (loopback, no namespaces needed).
#
#   - requests routed through POST /v1/route teach the brain: a turn with
#     an 8-token answer (class 0) that is continued, three turns with
#     600-token answers (class 6) that are not;
#   - n1's table (mcos-admin tables n1, and the agent's own) carries the
#     residency rule (class 6, the commonest, is the default) and reuse
#     rules for the class-0 turn's last blocks;
#   - n1 stores that conversation's chain first, then enough other KV
#     blocks to push DRAM over its high watermark: plain LRU would demote
#     the conversation first (it is the oldest); the agent demotes the
#     class-6 blocks instead, and the conversation stays in DRAM.

set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

test_init residency

step "a brain and one agent (1 MiB of DRAM, NVMe below it)"
start_brain
mkdir -p "$TEST_DIR/n1-nvme"
start_agent n1 --dram-bytes 1MiB --nvme-dir "$TEST_DIR/n1-nvme" \
    --nvme-bytes 64MiB --data-transports off
wait_for 15 nodes_alive 1 || fail "the brain does not see n1"
ok "n1 alive"

route() {
    local code
    code=$(run_on "$BRAIN_HOST" curl -sS --max-time 3 -X POST \
        -o "$TEST_DIR/route.json" -w '%{http_code}' "$BRAIN_HTTP/v1/route" \
        -d "$1")
    [[ $code == 200 ]] || fail "route $1: HTTP $code $(cat "$TEST_DIR/route.json")"
}

# ---------------------------------------------------------------------------
step "routed requests teach the brain which prefixes come back"
route '{"ns":"m","blocks":["a1","a2"],"output_len":8}'
route '{"ns":"m","blocks":["a1","a2","a3"],"output_len":8}'
for x in b c d; do
    route "{\"ns\":\"m\",\"blocks\":[\"${x}1\",\"${x}2\"],\"output_len\":600}"
done
# Class 0: 2 turns, 1 continued within 10 s: (1 + 1/2) / (2 + 1) = 0.5
# (32768) in age bucket 0, then 0.5 / 2 (16384).  Class 6: 3 turns, none
# continued: 0.5 / 4 (8192).
wait_for 10 table_has n1 "reuse/00000000000000a3" ||
    fail "no reuse rule: $(admin tables n1)"
out=$(admin tables n1)
grep -q "^residency unit=10000ms default=c6 c0=32768,16384,16384," <<<"$out" ||
    fail "residency rule: $(grep '^residency' <<<"$out")"
grep -q "c6=8192,8192," <<<"$out" || fail "class 6: $out"
[[ $(grep -c '^reuse/' <<<"$out") == 2 ]] || fail "reuse rules: $out"
grep -q "^reuse/00000000000000a2 class=c0$" <<<"$out" || fail "a2: $out"
ok "mcos-admin tables n1: $(grep '^reuse/' <<<"$out" | tr '\n' ' ')"
wait_for 10 agent_table_has n1 "reuse/00000000000000a3" ||
    fail "n1 does not run the rule"
wait_for 10 agent_table_has n1 "residency " || fail "n1 has no residency rule"
ok "n1 runs the residency and reuse rules"

# ---------------------------------------------------------------------------
step "DRAM pressure demotes what the brain expects back least"
worker n1 kv m a1,a2,a3 || fail "store a1..a3"
fillers=$(printf 'f%03x,' $(seq 1 120))
worker n1 kv m "${fillers%,}" || fail "store the other blocks"
# Blocks of 8 KiB in 1 MiB (128): the 116th crosses the 90% mark and
# demotion runs down to 75% (96 blocks): 20 go to NVMe; the last 7 stay
# under the mark.
demoted() { (($(agent_metric n1 mcos_agent_demotions_total) >= 20)); }
wait_for 10 demoted ||
    fail "demotions: $(agent_metric n1 mcos_agent_demotions_total)"
for b in a1 a2 a3; do
    [[ $(worker n1 stat $b) == "tier=3 state=2" ]] ||
        fail "$b left dram: $(worker n1 stat $b)"
done
in_nvme=0
for i in $(seq 1 120); do
    [[ $(worker n1 stat "$(printf 'f%03x' "$i")") == "tier=4 state=2" ]] &&
        in_nvme=$((in_nvme + 1))
done
((in_nvme == 20)) || fail "$in_nvme of the other blocks went to nvme, not 20"
v=$(agent_metric n1 mcos_agent_residency_demotions_total)
((v >= in_nvme)) || fail "residency demotions: $v"
worker n1 check a1 8192 0xa1 || fail "a1 changed"
ok "a1..a3 (the oldest, class 0) stay in dram; $in_nvme class-6 blocks went to nvme"

finish
