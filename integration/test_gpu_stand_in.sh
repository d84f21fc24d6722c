#!/usr/bin/env bash
#
# integration/test_gpu_stand_in.sh: the agent's GPU path end to end, on a
# machine without a GPU, through tests/fake_cudart.c -- a stand-in CUDA
# runtime loaded with --cuda-lib exactly as the real libcudart would be.
# It reports two devices, the first with 4 MiB of persisting L2.
#
#   - the agent finds the GPUs and builds a real (not emulated) HBM tier
#     through the CUDA backend (one device region, pinned staging);
#   - the brain sees HBM available and not emulated, and SRAM (the L2
#     residency hint) available;
#   - a hot object placed with preferred tier HBM lands there, is read
#     back intact through libmcos, and holds the L2 persisting window;
#   - the fabric (TCP here: no RDMA device) leaves the HBM region out,
#     says why in one log line, and announces only the arena
#     (mcos-admin node: regions; /metrics); verbs registration of the HBM
#     region is tested in integration/rxe/scenario_hbm.sh.
#
# What a real GPU adds (PCIe, HBM speed, the hint's effect) is not tested
# here: test_tier_hbm's real-runtime case SKIPs without a GPU.

set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

test_init gpu_stand_in
FAKE=${MCOS_FAKE_CUDART:?}

step "brain + an agent with the stand-in CUDA runtime"
start_brain
start_agent g1 --cuda-lib "$FAKE" --hbm-bytes 16MiB
wait_for 15 nodes_alive 1 || fail "g1 never alive"
brain_check '[.tiers[] | select(.tier == "hbm")][0] |
    .available and (.emulated | not) and .capacity == 16777216' /v1/nodes/g1 ||
    fail "HBM tier: $(brain_get /v1/nodes/g1 | jq -c .tiers)"
brain_check '[.tiers[] | select(.tier == "sram")][0].available' /v1/nodes/g1 ||
    fail "SRAM tier: $(brain_get /v1/nodes/g1 | jq -c .tiers)"
brain_check '(.gpus | length) == 2 and .gpus[0].name == "Fake H100"' \
    /v1/nodes/g1 || fail "GPUs: $(brain_get /v1/nodes/g1 | jq -c .gpus)"
ok "2 GPUs; HBM 16 MiB (real backend), SRAM/L2 available"

step "a hot object goes to HBM and holds the L2 window"
"$MCOS_BIN/libmcos_worker" "ipc://$TEST_DIR/g1.api.sock" hot abc123 ||
    fail "worker"
_in_hbm() {
    agent_get g1 /v1/objects/0000000000abc123 |
        jq -e '.tier == "hbm" and .state == "resident" and
               (.emulated | not)' >/dev/null
}
wait_for 10 _in_hbm || fail "object never resident in HBM: $(agent_get g1 /v1/objects/0000000000abc123)"
agent_jq g1 '.l2' >"$TEST_DIR/l2.json"
jq -e '.available and .object == "0000000000abc123" and
       .window_bytes > 0 and .persist_max_bytes == 4194304' \
    "$TEST_DIR/l2.json" >/dev/null || fail "L2: $(cat "$TEST_DIR/l2.json")"
ok "resident in hbm; L2 window $(jq .window_bytes "$TEST_DIR/l2.json") bytes"
"$MCOS_BIN/libmcos_worker" "ipc://$TEST_DIR/g1.api.sock" many 5 ||
    fail "reads through the agent failed"

step "the fabric over TCP leaves the GPU memory out"
brain_check '[.regions[] | {transport, tier}] == [{"transport": "tcp",
    "tier": "dram"}]' /v1/nodes/g1 ||
    fail "regions: $(brain_get /v1/nodes/g1 | jq -c .regions)"
admin node g1 | jq -e '.regions[0].length > 0' >/dev/null ||
    fail "mcos-admin node g1 shows no region"
agent_get g1 /metrics | grep -x >/dev/null \
    'mcos_agent_fabric_hbm_registered{node="g1",transport="tcp",via=""} 0' ||
    fail "metrics: $(agent_get g1 /metrics | grep hbm_registered)"
[[ $(grep -c "|fabric|INFO|HBM region not registered with tcp: tcp moves bytes with the CPU, which cannot reach GPU memory; HBM objects it carries are staged through DRAM$" \
    "$TEST_DIR/g1.log") == 1 ]] || fail "g1 did not log once why HBM is not on tcp"
ok "only the arena on tcp; HBM left out, logged once"

finish
