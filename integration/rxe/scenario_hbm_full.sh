#!/bin/bash
#
# integration/rxe/scenario_hbm_full.sh BUILD_DIR: a demotion to a peer
# from HBM when every peer that could take it straight from the HBM region
# is full (run by inside.sh).  A brain on the bridge; in h1 an agent with
# both transports and an emulated HBM tier; in h2 two agents: h2 on verbs
# only, with 4 MiB of DRAM nearly all taken by an object of its own, and
# h2t on TCP only (8 MiB of DRAM):
#   - evict demote_to_remote of a 1 MiB object in h1's HBM first tries the
#     peers whose transport has h1's HBM region registered (h2, over
#     verbs), which has no room ("alloc refused by h2: no room in h2's
#     DRAM for 1048576 bytes");
#   - h1 then copies the object into a verified DRAM staging copy, logs
#     why, and sends the copy to a peer that takes it (h2t, over TCP);
#   - the object lives on h2t, counted as staged (not from HBM), h1's HBM
#     and the staging copy are freed, and a get brings its bytes back.

set -euo pipefail

BUILD=${1:?usage: scenario_hbm_full.sh BUILD_DIR}
SCENARIO=hbm_full
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# start_agent HOST NAME HTTP_PORT DATA_PORT ARGS...: agent NAME in HOST.
start_agent() {
    local h=$1 name=$2 hp=$3 dp=$4 ipvar="MCOS_IP_$1"
    local ip=${!ipvar}
    shift 4
    on "$h" "$BIN/mcos-agent" --node "$name" --brain "tcp://$BRAIN_IP:$BP" \
        --http "http://$ip:$hp" --report-interval-ms 200 \
        --stale-after-ms 2000 --data-address "$ip" --data-port "$dp" \
        --api "ipc://$DIR/$name.api.sock" --shm-name "/mcos-rxe-$name" "$@" \
        >>"$DIR/$name.log" 2>&1 &
    PID[$name]=$!
}
# value HOST HTTP_PORT METRIC NODE: METRIC{node="NODE"} on the /metrics of the
# agent at HOST:HTTP_PORT.
value() {
    local ipvar="MCOS_IP_$1"
    curl -fsS "http://${!ipvar}:$2/metrics" |
        awk -v m="$3{node=\"$4\"}" '$1 == m { print $2 }'
}
alive3() { brain_get /v1/status | jq -e '.nodes.alive == 3 and .converged'; }
tier_is() { [[ $(worker h1 stat "$1") == "tier=$2 state=2" ]]; }
peers_known() {
    admin tables h1 | grep -q '^peer/h2 ' && admin tables h1 | grep -q '^peer/h2t '
}

start_brain
start_agent h1 h1 7660 7653 --data-transports auto --dram-bytes 32MiB \
    --emulate-hbm 16MiB
start_agent h2 h2 7660 7653 --data-transports verbs --dram-bytes 4MiB
start_agent h2 h2t 7661 7655 --data-transports tcp --dram-bytes 8MiB
wait_until 60 alive3 || fail "the brain does not see h1, h2 and h2t converged"
wait_until 30 peers_known || fail "h1's table lacks its peers: $(admin tables h1)"
[[ $(series h1 "mcos_agent_fabric_hbm_registered{node=\"h1\",transport=\"verbs\",via=\"host-memory\"}") == 1 ]] ||
    fail "h1 did not register its HBM region with verbs"
log "ok: h1 (verbs + tcp, HBM), h2 (verbs, 4 MiB), h2t (tcp) up"

# h2's DRAM: 3.5 of its 4 MiB held by an object of its own.
worker h2 put f1f1 3670016 21 || fail "put on h2"
E=e7e7
worker h1 put "$E" 1048576 17 || fail "put $E"
worker h1 move "$E" 2 || fail "move $E to hbm"
tier_is "$E" 2 || fail "$E is not in h1's HBM"
worker h1 evict "$E" 3 || fail "evict $E demote_to_remote: $(tail -5 "$DIR/h1.log")"
tier_is "$E" 5 || fail "$E is not in the remote tier: $(worker h1 stat "$E")"
grep -qE "\|store\|INFO\|object 000000000000e7e7: alloc refused by h2: no room in h2's DRAM for 1048576 bytes; trying the peers without our HBM region through a dram staging copy$" \
    "$DIR/h1.log" || fail "h1 did not log why it staged $E"
[[ $(value h1 7660 mcos_agent_remote_demotions_staged_total h1) == 1 ]] ||
    fail "$E was not counted as staged"
[[ $(value h1 7660 mcos_agent_remote_demotions_from_hbm_total h1) == 0 ]] ||
    fail "$E was counted as sent from HBM"
[[ $(value h2 7661 mcos_agent_fabric_hosted_objects h2t) == 1 ]] ||
    fail "h2t does not host $E"
[[ $(value h2 7660 mcos_agent_fabric_hosted_objects h2) == 0 ]] ||
    fail "h2 hosts something"
[[ $(value h2 7661 mcos_agent_fabric_checksum_failures_total h2t) == 0 ]] ||
    fail "h2t saw a checksum mismatch"
log "ok: h2 full, $E sent from h1's HBM through a staging copy to h2t (tcp)"

worker h1 check "$E" 1048576 17 || fail "the get of $E brought other bytes"
tier_is "$E" 3 || fail "$E did not come back to h1's DRAM"
log "ok: $E read back from h2t with its bytes"
log "PASS"
