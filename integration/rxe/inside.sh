#!/bin/bash
#
# integration/rxe/inside.sh BUILD_DIR: the RDMA tests, run where soft-RoCE
# hosts exist (inside tools/rxe-vm, or on a kernel with rdma_rxe set up by
# native.sh).  Started by integration/test_rxe.sh; not meant to be run
# directly.
#
# What it expects, as rxe-vm provides it: hosts h1..hN, each a network
# namespace with its own rxe device; `on HOST CMD...` runs CMD in HOST with
# MCOS_SELF, MCOS_SELF_IP and MCOS_SELF_RXE set; `wait-tcp HOST PORT [SEC]`
# waits for a TCP listener; MCOS_HOSTS, MCOS_HOST_IPS, MCOS_IP_<h>,
# MCOS_RXE_<h> describe the hosts.
#
# It runs, in order, and reports each with its time:
#   0. second_nic: gives every host a second NIC and rxe device
#      (second_nic.sh: eth1 on 10.79.0.0/24, MCOS_IP2_<h>, MCOS_RXE2_<h>);
#   1. tests/test_transport_verbs in h1 (server and client transports on
#      rxe1, through the device's loopback; the two-NIC cases on rxe1 and
#      the second device, MCOS_TEST_RDMA_ADDR2);
#   2. every integration/rxe/scenario_*.sh, sorted by name, as
#      `bash SCENARIO BUILD_DIR`, from the repository root, with
#      MCOS_BUILD_DIR and MCOS_BIN exported.  Exit 0 passes, 77 skips
#      (printed, not counted as a pass), anything else fails.
# The exit status is 0 only when nothing failed.  A SKIP of the unit test
# here is a failure: these hosts do have RDMA devices.

set -uo pipefail

BUILD=${1:?usage: inside.sh BUILD_DIR}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
export MCOS_BUILD_DIR=$BUILD
export MCOS_BIN=${MCOS_BIN:-$BUILD/bin}

echo "rxe: kernel $(uname -r), hosts: ${MCOS_HOSTS:-none} (${MCOS_HOST_IPS:-})"
if [[ -z ${MCOS_HOSTS:-} ]] || ! command -v on >/dev/null; then
    echo "rxe: FAIL: no soft-RoCE hosts here (MCOS_HOSTS unset or no 'on')"
    exit 1
fi

failed=()
passed=0
skipped=0

# run NAME CMD...: runs one step, prints its verdict and duration.
run() {
    local name=$1 rc t0=${EPOCHREALTIME/./} t1 ms dur
    shift
    echo
    echo "rxe: == $name"
    "$@"
    rc=$?
    t1=${EPOCHREALTIME/./}
    ms=$(((t1 - t0) / 1000))
    printf -v dur '%d.%01d s' $((ms / 1000)) $((ms % 1000 / 100))
    case $rc in
    0)
        echo "rxe: PASS $name ($dur)"
        passed=$((passed + 1))
        ;;
    77)
        echo "rxe: SKIP $name ($dur)"
        skipped=$((skipped + 1))
        ;;
    *)
        echo "rxe: FAIL $name, exit $rc ($dur)"
        failed+=("$name")
        ;;
    esac
    return 0
}

# shellcheck disable=SC2317 # called through run
unit() {
    local bin=$BUILD/bin/test_transport_verbs rc
    if [[ ! -x $bin ]]; then
        echo "$bin is not built"
        return 1
    fi
    on h1 env MCOS_TEST_RDMA_ADDR2="${MCOS_IP2_h1:-}" \
        MCOS_TEST_RDMA_ADDR2_ALIAS="${MCOS_IP2_h1:+${NIC2_SUBNET}.101}" "$bin"
    rc=$?
    if ((rc == 77)); then
        echo "the verbs unit test skipped inside the soft-RoCE hosts"
        return 1
    fi
    return "$rc"
}

# rxe-vm brings lo up in each host but not in the initial namespace, where
# scenarios run the brain (on the bridge, 10.77.0.254): without lo, nothing
# there can connect to its own addresses.
ip link set lo up 2>/dev/null || true

# shellcheck source=second_nic.sh
. "$HERE/second_nic.sh"
trap second_nic_cleanup EXIT

cd "$REPO" || exit 1
run second_nic second_nic_setup
run unit_transport_verbs unit
for s in "$HERE"/scenario_*.sh; do
    [[ -e $s ]] || continue
    run "$(basename "$s" .sh)" bash "$s" "$BUILD"
done

echo
if ((${#failed[@]})); then
    echo "rxe: FAIL: ${failed[*]} ($passed passed, $skipped skipped)"
    exit 1
fi
echo "rxe: PASS ($passed passed, $skipped skipped)"
exit 0
