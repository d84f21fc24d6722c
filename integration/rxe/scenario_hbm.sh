#!/bin/bash
#
# integration/rxe/scenario_hbm.sh BUILD_DIR: the HBM region registered with
# the verbs transport, inside the soft-RoCE hosts (run by inside.sh).  A
# brain on the bridge and agents in h1 and h2 with --data-transports verbs
# and an emulated HBM tier (host memory, the same tier code as a GPU's):
#   - both register their HBM region with verbs (ibv_reg_mr on the host
#     mapping: "host-memory") and announce it beside the arena
#     (region=verbs:ID:LEN:hbm in the tables, /metrics);
#   - an object in h1's HBM replicated to h2's DRAM is written straight
#     from h1's HBM region: no staged copy on h1
#     (mcos_agent_replicas_staged_total stays 0), verified by checksum on
#     h2 (COMMIT) and read back equal;
#   - an object in h1's HBM replicated into h2's HBM lands in h2's
#     registered HBM region directly and is adopted there (tier 2), with
#     no staging on either side;
#   - evict demote_to_remote of an object in h1's HBM is written straight
#     from the HBM region into h2's memory (0 staged, counted in
#     mcos_agent_remote_demotions_from_hbm_total), verified by h2, and a
#     get brings it back into h1's DRAM with its bytes;
#   - h1 restarted with the stand-in CUDA runtime (a "real" HBM tier) whose
#     driver exports a dma-buf the NIC refuses (FAKE_CUDART_DMABUF=memfd):
#     the dma-buf registration fails, the agent logs why once, falls back
#     to ibv_reg_mr on the device address ("peer-memory"), and a replica
#     from that HBM still goes unstaged;
#   - h1 once more on the stand-in, now with device addresses the CPU and
#     the NIC cannot touch (FAKE_CUDART_DEVICE_VA=1, like a GPU without
#     nvidia-peermem) and no dma-buf (the stand-in's driver answers 801):
#     both registrations fail, each logged once with why, the HBM region
#     is not announced, and a replica from h1's HBM takes the staging path
#     (mcos_agent_replicas_staged_total 1) and still lands, verified, in
#     h2's HBM region.
# A real GPU's dma-buf (nvidia driver, cuMemGetHandleForAddressRange) and
# nvidia-peermem are not here; only their fallbacks are exercised.

set -euo pipefail

BUILD=${1:?usage: scenario_hbm.sh BUILD_DIR}
SCENARIO=hbm
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FAKE=${MCOS_FAKE_CUDART:-$BUILD/lib/libfake_cudart.so}
[[ -f $FAKE ]] || fail "no stand-in CUDA runtime at $FAKE"

# start_agent HOST ARGS...: an agent on verbs only, extra ARGS for its HBM.
start_agent() {
    local h=$1 ipvar="MCOS_IP_$1"
    local ip=${!ipvar}
    shift
    on "$h" "$BIN/mcos-agent" --node "$h" --brain "tcp://$BRAIN_IP:$BP" \
        --http "http://$ip:7660" --report-interval-ms 200 \
        --stale-after-ms 2000 --dram-bytes 32MiB --data-address "$ip" \
        --data-port 7653 --data-transports verbs \
        --api "ipc://$DIR/$h.api.sock" --shm-name "/mcos-rxe-$h" "$@" \
        >>"$DIR/$h.log" 2>&1 &
    PID[$h]=$!
}
# [VAR=VALUE] restart_h1_on_stand_in: h1 stopped, its log emptied, and
# started again on the stand-in CUDA runtime (16 MiB of HBM); a variable
# set before the call reaches the agent's environment.
restart_h1_on_stand_in() {
    kill "${PID[h1]}"
    wait "${PID[h1]}" 2>/dev/null || true
    unset "PID[h1]"
    : >"$DIR/h1.log"
    start_agent h1 --cuda-lib "$FAKE" --hbm-bytes 16MiB
}
# put_in_hbm ID SIZE SEED: an object stored on h1 and moved into its HBM.
put_in_hbm() {
    worker h1 put "$1" "$2" "$3" || fail "put $1"
    worker h1 move "$1" 2 || fail "move $1 to hbm"
}
# into_h2_hbm ID SIZE SEED: put in h1's HBM, replicated into h2's HBM, and
# checked there.
into_h2_hbm() {
    put_in_hbm "$1" "$2" "$3"
    admin replicate h1 "$1" h2 --tier hbm >/dev/null || fail "replicate $1"
    wait_until 60 tier_is h2 "$1" 2 || fail "$1 is not in h2's HBM"
    worker h2 check "$1" "$2" "$3" || fail "h2's copy of $1 differs"
}
tier_is() { [[ $(worker "$1" stat "$2") == "tier=$3 state=2" ]]; }
sent() { (($(metric h1 mcos_agent_replicas_sent_total) >= $1)); }

start_brain
start_agent h1 --emulate-hbm 16MiB
start_agent h2 --emulate-hbm 16MiB
wait_until 60 alive2 || fail "the brain does not see h1 and h2 converged"
log "ok: brain, h1 and h2 up with emulated HBM"

for h in h1 h2; do
    v=$(series $h "mcos_agent_fabric_hbm_registered{node=\"$h\",transport=\"verbs\",via=\"host-memory\"}")
    [[ $v == 1 ]] || fail "$h did not register its HBM region with verbs"
    v=$(series $h "mcos_agent_fabric_region_bytes{node=\"$h\",transport=\"verbs\",tier=\"hbm\"}")
    [[ $v == 16777216 ]] || fail "$h announces an HBM region of '$v' bytes"
    grep -q "|fabric|INFO|HBM region (16777216 bytes, host-memory) registered with verbs$" \
        "$DIR/$h.log" || fail "$h did not log its HBM registration"
done
admin tables h1 |
    grep -qE "^peer/h2 .* region=verbs:[0-9]+:16777216:hbm region=verbs:[0-9]+:33554432( |$)" ||
    fail "h1's table lacks h2's HBM region before its arena: $(admin tables h1)"
admin node h1 |
    jq -e '[.regions[] | {transport, tier, length}] == [
        {"transport": "verbs", "tier": "hbm", "length": 16777216},
        {"transport": "verbs", "tier": "dram", "length": 33554432}]' \
        >/dev/null || fail "mcos-admin node h1: $(admin node h1 | jq -c .regions)"
log "ok: both register and announce their HBM region on verbs"

# An object in h1's HBM to h2's DRAM: written from the HBM region.
A=a1b1
put_in_hbm "$A" 1048576 11
tier_is h1 "$A" 2 || fail "A is not in h1's HBM"
admin replicate h1 "$A" h2 --tier dram >/dev/null || fail "replicate A"
wait_until 60 sent 1 || fail "the replica of A was never sent"
[[ $(metric h1 mcos_agent_replicas_staged_total) == 0 ]] ||
    fail "A was staged through DRAM"
[[ $(metric h1 mcos_agent_fabric_hbm_puts_total) == 1 ]] ||
    fail "A was not sent from the HBM region"
[[ $(metric h2 mcos_agent_fabric_checksum_failures_total) == 0 ]] ||
    fail "h2 saw a checksum mismatch"
wait_until 30 tier_is h2 "$A" 3 || fail "A is not in h2's DRAM"
worker h2 check "$A" 1048576 11 || fail "h2's copy of A differs"
tier_is h1 "$A" 2 || fail "A left h1's HBM"
log "ok: HBM -> peer DRAM straight from the HBM region, 0 staged, verified"

# An object in h1's HBM into h2's HBM: lands in h2's HBM region.
B=b2b2
put_in_hbm "$B" 2097152 12
admin replicate h1 "$B" h2 --tier hbm >/dev/null || fail "replicate B"
wait_until 60 sent 2 || fail "the replica of B was never sent"
wait_until 30 tier_is h2 "$B" 2 || fail "B is not in h2's HBM"
[[ $(metric h2 mcos_agent_fabric_hbm_landed_total) == 1 ]] ||
    fail "B did not land in h2's HBM region directly"
for h in h1 h2; do
    [[ $(metric $h mcos_agent_replicas_staged_total) == 0 ]] ||
        fail "$h staged a copy"
done
[[ $(metric h1 mcos_agent_fabric_hbm_puts_total) == 2 ]] ||
    fail "B was not sent from the HBM region"
worker h2 check "$B" 2097152 12 || fail "h2's copy of B differs"
log "ok: HBM -> peer HBM: landed in h2's HBM region, 0 staged, verified"

# evict demote_to_remote of an object in h1's HBM: written straight from
# the HBM region into h2's memory, verified there, h1's extent freed; a
# get brings it back (into h1's DRAM) with its bytes.
E=e5e5
put_in_hbm "$E" 1048576 15
worker h1 evict "$E" 3 || fail "evict $E demote_to_remote"
tier_is h1 "$E" 5 || fail "E is not in the remote tier: $(worker h1 stat "$E")"
[[ $(metric h1 mcos_agent_remote_demotions_total) == 1 ]] ||
    fail "h1 did not count the remote demotion of E"
[[ $(metric h1 mcos_agent_remote_demotions_from_hbm_total) == 1 ]] ||
    fail "E was not sent straight from the HBM region"
[[ $(metric h1 mcos_agent_remote_demotions_staged_total) == 0 ]] ||
    fail "E was staged through DRAM"
[[ $(metric h1 mcos_agent_fabric_hbm_puts_total) == 3 ]] ||
    fail "the fabric did not send E from the HBM region"
[[ $(metric h2 mcos_agent_fabric_hosted_objects) == 1 ]] ||
    fail "h2 does not host E"
[[ $(metric h2 mcos_agent_fabric_checksum_failures_total) == 0 ]] ||
    fail "h2 saw a checksum mismatch"
[[ $(metric h1 mcos_agent_replicas_staged_total) == 0 ]] ||
    fail "h1 staged a copy"
worker h1 check "$E" 1048576 15 || fail "the get of E brought other bytes"
tier_is h1 "$E" 3 || fail "E did not come back to h1's DRAM"
no_hosted() { [[ $(metric h2 mcos_agent_fabric_hosted_objects) == 0 ]]; }
wait_until 30 no_hosted || fail "h2 still hosts E after it came back"
log "ok: demote_to_remote from HBM: straight from the HBM region, 0 staged, verified, read back"

# h1 again, on the stand-in CUDA runtime: its dma-buf is refused by the
# NIC, and the device address is registered instead.
FAKE_CUDART_DMABUF=memfd restart_h1_on_stand_in
via_peer_memory() {
    [[ $(series h1 "mcos_agent_fabric_hbm_registered{node=\"h1\",transport=\"verbs\",via=\"peer-memory\"}") == 1 ]]
}
wait_until 60 via_peer_memory ||
    fail "h1 did not fall back to registering the device address"
wait_until 60 alive2 || fail "h1 did not come back"
grep -qE "\|fabric\|INFO\|HBM region: no dma-buf registration with verbs \(verbs: cannot register 16777216 bytes at 0x[0-9a-f]+ \(dma-buf\) with rxe[0-9]+: .+\); registering the device address \(needs nvidia-peermem\)$" \
    "$DIR/h1.log" || fail "h1 did not log why dma-buf failed"
[[ $(grep -c "HBM region: no dma-buf" "$DIR/h1.log") == 1 ]] ||
    fail "h1 logged the dma-buf failure more than once"
C=c3c3
into_h2_hbm "$C" 1048576 13
[[ $(metric h1 mcos_agent_replicas_staged_total) == 0 ]] ||
    fail "C was staged through DRAM"
[[ $(metric h1 mcos_agent_fabric_hbm_puts_total) == 1 ]] ||
    fail "C was not sent from the stand-in GPU's HBM region"
log "ok: dma-buf refused, logged once; the device address registered; C unstaged"

# h1 on a stand-in GPU whose memory no NIC can pin and without dma-buf.
FAKE_CUDART_DEVICE_VA=1 restart_h1_on_stand_in
not_registered() {
    [[ $(series h1 "mcos_agent_fabric_hbm_registered{node=\"h1\",transport=\"verbs\",via=\"\"}") == 0 ]]
}
wait_until 60 not_registered || fail "h1 reports its HBM region registered"
wait_until 60 alive2 || fail "h1 did not come back"
grep -qF "|fabric|INFO|HBM region: no dma-buf registration with verbs (cuMemGetHandleForAddressRange(DMA_BUF_FD) on GPU 0: operation not supported (CUresult 801)); registering the device address (needs nvidia-peermem)" \
    "$DIR/h1.log" || fail "h1 did not log why there is no dma-buf"
grep -qE "\|fabric\|WARN\|HBM region not registered with verbs: verbs: cannot register 16777216 bytes at 0x[0-9a-f]+ with rxe[0-9]+: Bad address; HBM objects are staged through DRAM$" \
    "$DIR/h1.log" || fail "h1 did not log why its HBM region is not registered"
[[ $(grep -c "HBM region not registered" "$DIR/h1.log") == 1 ]] ||
    fail "h1 logged the registration failure more than once"
[[ -z $(series h1 "mcos_agent_fabric_region_bytes{node=\"h1\",transport=\"verbs\",tier=\"hbm\"}") ]] ||
    fail "h1 announces an HBM region it could not register"
no_hbm_for_h1() { ! admin tables h2 | grep "^peer/h1 .*:hbm" >/dev/null; }
wait_until 60 no_hbm_for_h1 ||
    fail "h2's table shows an HBM region for h1: $(admin tables h2)"
D=d4d4
landed=$(metric h2 mcos_agent_fabric_hbm_landed_total)
into_h2_hbm "$D" 1048576 14
[[ $(metric h1 mcos_agent_replicas_staged_total) == 1 ]] ||
    fail "D was not staged through DRAM"
[[ $(metric h1 mcos_agent_fabric_hbm_puts_total) == 0 ]] ||
    fail "D claims to have gone from an unregistered HBM region"
[[ $(metric h2 mcos_agent_fabric_hbm_landed_total) == $((landed + 1)) ]] ||
    fail "D did not land in h2's HBM region"
log "ok: no registration possible: logged once, staged, still verified"
