#!/bin/bash
# MCOS_IP_<h>, MCOS_RXE_<h> come from rxe-vm, MCOS_IP2_<h>, MCOS_RXE2_<h>
# from second_nic.sh.
# shellcheck disable=SC2154
#
# integration/rxe/scenario_nics.sh BUILD_DIR: the fabric over two NICs per
# node, inside the soft-RoCE hosts (run by inside.sh after second_nic.sh
# gave every host eth1 and a second rxe device).  A brain in the initial
# namespace and agents in h1 and h2, each with
# --data-addresses "IP,IP2" --data-transports verbs:
#   - each announces two verbs endpoints (one per NIC), and h1's table
#     has both of h2's;
#   - an object of 4 MiB + 1 demoted from h1 to h2 and read back: both of
#     h1's NICs carried slices (mcos_agent_nic_slices_total), their bytes
#     add up to the object, and the bytes that came back are the same;
#   - h2's second NIC taken down under the connection: h1's slices on that
#     path fail and are posted again on the first; the demotion succeeds
#     with the same bytes;
#   - an agent given two addresses on one device refuses to start, with
#     the exact error.
# The VM is emulated (~15 MB/s): sizes stay small.

set -euo pipefail

BUILD=${1:?usage: scenario_nics.sh BUILD_DIR}
SCENARIO=nics
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ -n ${MCOS_IP2_h1:-} && -n ${MCOS_IP2_h2:-} ]] ||
    fail "the hosts have no second NIC (second_nic.sh did not run or failed)"

# agent_args HOST ADDRESSES: the flags of an agent in HOST.
agent_args() {
    local h=$1 ipvar="MCOS_IP_$1"
    echo --node "$h" --brain "tcp://$BRAIN_IP:$BP" \
        --http "http://${!ipvar}:7660" --report-interval-ms 200 \
        --stale-after-ms 2000 --dram-bytes 32MiB --data-address "${2%%,*}" \
        --data-addresses "$2" --data-port 7653 --data-transports verbs \
        --api "ipc://$DIR/$h.api.sock" --shm-name "/mcos-rxe-nics-$h"
}
start_agent() {
    local h=$1 ipvar="MCOS_IP_$1" ip2var="MCOS_IP2_$1"
    # shellcheck disable=SC2046
    on "$h" "$BIN/mcos-agent" $(agent_args "$h" "${!ipvar},${!ip2var}") \
        >>"$DIR/$h.log" 2>&1 &
    PID[$h]=$!
}
# nic_metric HOST NAME NIC: HOST's NAME{node="HOST",nic="NIC"}.
nic_metric() { series "$1" "$2{node=\"$1\",nic=\"$3\"}"; }

start_brain
start_agent h1
start_agent h2
wait_until 60 alive2 || fail "the brain does not see h1 and h2 converged"
log "ok: brain, h1 and h2 up, each on two NICs"

for h in h1 h2; do
    ipvar="MCOS_IP_$h" ip2var="MCOS_IP2_$h"
    eps=$(brain_get "/v1/nodes/$h" |
        jq -r '[.endpoints[] | "\(.transport):\(.address)"] | join(" ")')
    [[ $eps == "control:${!ipvar} verbs:${!ipvar} verbs:${!ip2var}" ]] ||
        fail "$h announces '$eps'"
done
line=$(admin tables h1 | grep "^peer/h2 ") || fail "h1 has no peer/h2 rule"
[[ $line == *" verbs:$MCOS_IP_h2:7654 verbs:$MCOS_IP2_h2:7654 "* &&
    $line == *" region=verbs:1:"* ]] ||
    fail "h1's rule for h2 lacks its two verbs endpoints: $line"
log "ok: two verbs endpoints each; h1's table: $line"

A=a2a2
SIZE=$((4 * 1024 * 1024 + 1))
worker h1 put "$A" "$SIZE" 7 || fail "put on h1"
worker h1 evict "$A" 3 || fail "demote_to_remote over two NICs"
[[ $(worker h1 stat "$A") == "tier=5 state=2" ]] || fail "not remote"
[[ $(metric h2 mcos_agent_fabric_hosted_objects) == 1 ]] ||
    fail "h2 does not host it"
s1=$(nic_metric h1 mcos_agent_nic_slices_total "$MCOS_RXE_h1")
s2=$(nic_metric h1 mcos_agent_nic_slices_total "$MCOS_RXE2_h1")
b1=$(nic_metric h1 mcos_agent_nic_bytes_total "$MCOS_RXE_h1")
b2=$(nic_metric h1 mcos_agent_nic_bytes_total "$MCOS_RXE2_h1")
log "write: $MCOS_RXE_h1 carried ${s1:-?} slices (${b1:-?} B), $MCOS_RXE2_h1 ${s2:-?} (${b2:-?} B)"
((${s1:-0} > 0 && ${s2:-0} > 0)) || fail "not both NICs carried slices"
((b1 + b2 == SIZE)) || fail "the NICs carried $((b1 + b2)) bytes, not $SIZE"
worker h1 check "$A" "$SIZE" 7 || fail "the object came back different"
[[ $(worker h1 stat "$A") == "tier=3 state=2" ]] || fail "not back in dram"
s1=$(nic_metric h1 mcos_agent_nic_slices_total "$MCOS_RXE_h1")
s2=$(nic_metric h1 mcos_agent_nic_slices_total "$MCOS_RXE2_h1")
b1=$(nic_metric h1 mcos_agent_nic_bytes_total "$MCOS_RXE_h1")
b2=$(nic_metric h1 mcos_agent_nic_bytes_total "$MCOS_RXE2_h1")
log "write + read: $MCOS_RXE_h1 $s1 slices ($b1 B), $MCOS_RXE2_h1 $s2 ($b2 B)"
((b1 + b2 == 2 * SIZE)) || fail "write + read moved $((b1 + b2)) bytes, not $((2 * SIZE))"
[[ $(nic_metric h1 mcos_agent_nic_slice_errors_total "$MCOS_RXE2_h1") == 0 ]] ||
    fail "slice errors on $MCOS_RXE2_h1"
log "ok: demoted to h2 and back, striped over both NICs, bytes equal"

# h2's second NIC goes down under an established two-path connection:
# h1's slices on that path time out (transport retries exhausted, some
# 7 s) and are posted again on the first path; the demotion still
# succeeds, and the bytes come back the same.
on h2 ip link set eth1 down || fail "cannot take h2's eth1 down"
B=b2b2
worker h1 put "$B" "$SIZE" 8 || fail "put B on h1"
t0=$SECONDS
out=$(worker h1 evict "$B" 3 2>&1) ||
    fail "demote_to_remote with h2's second NIC down: $out"
log "demoted in $((SECONDS - t0)) s with h2's eth1 down"
[[ $(worker h1 stat "$B") == "tier=5 state=2" ]] || fail "B not remote"
retries=$(metric h1 mcos_agent_fabric_slice_retries_total)
errs=$(nic_metric h1 mcos_agent_nic_slice_errors_total "$MCOS_RXE2_h1")
log "h2's eth1 down: ${errs:-?} slices failed on $MCOS_RXE2_h1, ${retries:-?} posted again"
((${retries:-0} > 0 && ${errs:-0} > 0)) ||
    fail "no slice failed over to the first NIC"
worker h1 check "$B" "$SIZE" 8 || fail "B came back different"
log "ok: a NIC lost mid-connection: its slices went over the other one"

# Two addresses on one device: a clear refusal at start-up.
alias=${MCOS_IP2_h1%.*}.101
# shellcheck disable=SC2046
if on h1 "$BIN/mcos-agent" $(agent_args h1 "$MCOS_IP2_h1,$alias") \
    --http "" --shm-name /mcos-rxe-nics-bad --data-port 7663 \
    >"$DIR/bad.log" 2>&1; then
    fail "an agent with two addresses on one device started"
fi
want="addresses $MCOS_IP2_h1 and $alias are both on RDMA device $MCOS_RXE2_h1; give one address per NIC"
grep -qF "$want" "$DIR/bad.log" || fail "no '$want' in: $(cat "$DIR/bad.log")"
log "ok: two addresses on one device refused: $(grep -F "$want" "$DIR/bad.log")"
