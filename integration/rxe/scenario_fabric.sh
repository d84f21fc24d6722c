#!/bin/bash
#
# integration/rxe/scenario_fabric.sh BUILD_DIR: the fabric end to end over
# RDMA verbs, inside the soft-RoCE hosts (run by inside.sh).  A brain in
# the initial namespace (on the bridge, 10.77.0.254) and agents in h1 and
# h2, each on its own rxe device, with --data-transports verbs:
#   - both announce a verbs endpoint and a verbs region (rkey);
#   - evict demote_to_remote: h1's object goes to h2 over RDMA WRITE and
#     comes back over RDMA READ with the same bytes;
#   - mcos-admin replicate: h1 copies an object into h2's DRAM, verified;
#   - h2 killed as soon as it logs the reservation, while the RDMA WRITE
#     or its own check of the 16 MiB runs (the guest kernel has no tbf,
#     and how fast the emulated link moves depends on the host's load, so
#     the test watches h2's debug log line rather than polling /metrics,
#     which once took longer than the whole transfer): the transfer
#     fails, nothing is counted, the source is intact, and the retry
#     reaches the restarted h2.
# The VM is emulated (~15 MB/s): sizes stay small.

set -euo pipefail

BUILD=${1:?usage: scenario_fabric.sh BUILD_DIR}
SCENARIO=fabric
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

start_agent() {
    local h=$1 ipvar="MCOS_IP_$1"
    local ip=${!ipvar}
    on "$h" "$BIN/mcos-agent" --node "$h" --brain "tcp://$BRAIN_IP:$BP" \
        --http "http://$ip:7660" --report-interval-ms 200 \
        --stale-after-ms 2000 --dram-bytes 32MiB --data-address "$ip" \
        --data-port 7653 --data-transports verbs \
        --api "ipc://$DIR/$h.api.sock" --shm-name "/mcos-rxe-$h" \
        --log-level info,fabric=debug >>"$DIR/$h.log" 2>&1 &
    PID[$h]=$!
}

start_brain
start_agent h1
start_agent h2
wait_until 60 alive2 || fail "the brain does not see h1 and h2 converged"
log "ok: brain, h1 and h2 up"

for h in h1 h2; do
    eps=$(brain_get "/v1/nodes/$h" |
        jq -r '[.endpoints[] | .transport] | join(" ")')
    [[ $eps == "control verbs" ]] || fail "$h announces '$eps'"
done
admin tables h1 | grep "^peer/h2 .*verbs:.* region=verbs:1:" >/dev/null ||
    fail "h1's table lacks h2's verbs endpoint and region: $(admin tables h1)"
log "ok: both announce verbs endpoints; h1's table has h2's verbs region"

A=a11ce
worker h1 put "$A" 300007 1 || fail "put on h1"
worker h1 evict "$A" 3 || fail "demote_to_remote over verbs"
[[ $(worker h1 stat "$A") == "tier=5 state=2" ]] || fail "not remote"
[[ $(metric h2 mcos_agent_fabric_hosted_objects) == 1 ]] ||
    fail "h2 does not host it"
worker h1 check "$A" 300007 1 || fail "the object came back different"
[[ $(worker h1 stat "$A") == "tier=3 state=2" ]] || fail "not back in dram"
log "ok: demoted to h2 over RDMA WRITE, back over RDMA READ, bytes equal"

B=b0b0
worker h1 put "$B" 1048576 2 || fail "put B"
admin replicate h1 "$B" h2 >/dev/null || fail "replicate"
wait_until 30 worker h2 check "$B" 1048576 2 || fail "no replica on h2"
log "ok: replica of $B verified on h2"

C=c0ffee
SIZE_C=$((16 * 1024 * 1024))
worker h1 put "$C" "$SIZE_C" 3 || fail "put C"
admin replicate h1 "$C" h2 >/dev/null || fail "replicate C"
deadline=$((SECONDS + 60))
until grep -q "fabric|DEBUG|reserved $SIZE_C bytes in dram for object 0000000000$C from h1" \
    "$DIR/h2.log"; do
    ((SECONDS < deadline)) || fail "h2 never granted the reservation"
done
kill -9 "${PID[h2]}"
unset "PID[h2]"
failed_once() { (($(metric h1 mcos_agent_replica_failures_total) >= 1)); }
wait_until 60 failed_once || fail "the transfer did not fail"
[[ $(metric h1 mcos_agent_replicas_sent_total) == 1 ]] ||
    fail "a failed transfer was counted"
# h2 comes back at once: the replica task's retries (1, 2, 4, 8 s) must
# still find it, and checking 16 MiB under TCG takes seconds.
start_agent h2
worker h1 check "$C" "$SIZE_C" 3 || fail "the source changed"
log "ok: h2 killed mid-transfer: failed, not counted, source intact"
wait_until 120 worker h2 check "$C" "$SIZE_C" 3 ||
    fail "the retry never reached the restarted h2"
log "ok: retried: the restarted h2 holds a verified copy"
