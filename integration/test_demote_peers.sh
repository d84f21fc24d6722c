#!/usr/bin/env bash
#
# integration/test_demote_peers.sh: policy.demote_to_peers, carried out by
# real agents over the TCP data transport (loopback).
#
#   - with the knob on, the brain ends each node's demotion chain in its
#     peers' memory (`demotion/dram dram -> remote` in the tables);
#   - n1 (4 MiB of DRAM, no NVMe) is filled past its high watermark: its
#     coldest objects go to n2 over the fabric, verified there, until DRAM
#     is back at the low watermark; n1 keeps taking new objects;
#   - every object reads back intact through libmcos, wherever it lives
#     (a get brings a demoted one back into n1's DRAM);
#   - with n2 gone, n1 has no peer with room: demotion fails, nothing is
#     lost, and n1 backs off instead of retrying in a loop;
#   - a brain started without the knob compiles chains that end locally.

set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

test_init demote_peers

step "a brain with --demote-to-peers and two agents with the tcp transport"
start_brain --demote-to-peers
start_agent n1 --dram-bytes 4MiB --data-transports tcp
start_agent n2 --dram-bytes 64MiB --data-transports tcp
wait_for 15 nodes_alive 2 || fail "the brain does not see n1 and n2"
G=$(brain_generation)
admin wait --gen "$G" --timeout 15 >/dev/null 2>&1 ||
    fail "the cluster did not converge on generation $G"
admin tables n1 >"$TEST_DIR/t1.txt"
grep -qx "demotion/dram dram -> remote" "$TEST_DIR/t1.txt" ||
    fail "n1's chain does not end in its peers: $(cat "$TEST_DIR/t1.txt")"
ok "n1's table: $(grep '^demotion/' "$TEST_DIR/t1.txt")"

# ---------------------------------------------------------------------------
step "n1 past its high watermark: its coldest objects go to n2"
# 24 objects of 256 KiB (6 MiB) into 4 MiB of DRAM (90 % high, 75 % low).
N=24
SIZE=$((256 * 1024))
for i in $(seq 1 "$N"); do
    worker n1 put "$(printf 'd%04x' "$i")" "$SIZE" "$i" ||
        fail "put $i on n1 (DRAM full, and no demotion to n2?)"
done
demoted() { agent_metric n1 mcos_agent_remote_demotions_total; }
dram_used() {
    agent_get n1 /metrics |
        awk '$1 ~ /^mcos_agent_tier_used_bytes.*tier="dram"/ { print $2 }'
}
# Passes start above 90 % (past 14 objects) and stop at 75 % (12), so at
# least 10 of the 24 leave, and DRAM ends at or below its high watermark.
_settled() {
    (($(demoted) >= N - 14 && $(dram_used) <= 4 * 1024 * 1024 * 90 / 100))
}
wait_for 10 _settled ||
    fail "n1 demoted $(demoted) objects to peers and holds $(dram_used) bytes"
hosted=$(agent_metric n2 mcos_agent_fabric_hosted_objects)
((hosted == $(demoted))) || fail "n2 hosts $hosted objects, n1 demoted $(demoted)"
ok "n1 demoted $(demoted) of $N objects to n2 (its DRAM: $(dram_used) bytes); n2 hosts $hosted"
# The oldest went first: object 1 lives on n2 now.
[[ $(worker n1 stat d0001) == "tier=5 state=2" ]] ||
    fail "the oldest object is not remote: $(worker n1 stat d0001)"
ok "the oldest object lives in n2's memory"

# ---------------------------------------------------------------------------
step "every object reads back intact, wherever it lives"
for i in $(seq 1 "$N"); do
    worker n1 check "$(printf 'd%04x' "$i")" "$SIZE" "$i" ||
        fail "object $i did not read back intact"
done
v=$(agent_metric n1 mcos_agent_remote_fetches_total)
((v >= 1)) || fail "no object came back from n2 ($v fetches)"
ok "all $N objects read back with their bytes ($v came back from n2)"

# ---------------------------------------------------------------------------
step "n2 gone: nothing to demote to, nothing lost, n1 backs off"
daemon_stop n2
wait_for 15 eval '[[ $(node_state n2) != alive ]]' ||
    fail "the brain still sees n2 alive"
before=$(demoted)
stored=0
for i in $(seq 101 112); do
    worker n1 put "$(printf 'd%04x' "$i")" "$SIZE" "$i" 2>/dev/null || break
    stored=$((stored + 1))
done
((stored >= 1)) || fail "n1 took no object at all"
backoffs() { agent_metric n1 mcos_agent_remote_demotion_backoffs_total; }
wait_for 10 eval '(($(backoffs) >= 1))' ||
    fail "n1 never backed off demoting to a peer ($(backoffs))"
sleep 1
b1=$(backoffs)
sleep 1
b2=$(backoffs)
((b2 - b1 <= 1)) || fail "n1 retries in a loop: $b1 then $b2 backoffs in 1 s"
[[ $(demoted) == "$before" ]] || fail "demotions counted with no peer: $(demoted)"
for i in $(seq 101 $((100 + stored))); do
    worker n1 check "$(printf 'd%04x' "$i")" "$SIZE" "$i" ||
        fail "object $i lost with no peer to demote to"
done
ok "n1 took $stored more, backed off ($b2 so far), counted no demotion, kept them"

# ---------------------------------------------------------------------------
step "without the knob, chains end at the slowest local tier"
daemon_stop brain
start_brain
wait_for 15 nodes_alive 1 || fail "n1 did not join the new brain"
wait_for 10 table_has n1 "demotion/dram dram -> (end)$" ||
    fail "n1's chain: $(admin tables n1 | grep '^demotion/')"
ok "n1's table: $(admin tables n1 | grep '^demotion/')"

finish
