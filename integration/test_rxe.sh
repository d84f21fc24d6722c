#!/bin/bash
#
# integration/test_rxe.sh: the RDMA verbs tests on soft-RoCE (rdma_rxe).
#
# Runs integration/rxe/inside.sh -- the verbs transport's unit test in a
# soft-RoCE host, then every integration/rxe/scenario_*.sh -- wherever
# soft-RoCE can be had, in this order of preference:
#
#   a. this kernel: when `modprobe rdma_rxe` works (as root) and the
#      kernel is 6.12 or newer (older rdma_rxe cannot send from a network
#      namespace), integration/rxe/native.sh builds two namespace hosts
#      with their own rxe devices here;
#   b. a throw-away VM: tools/rxe-vm (../shared/tools/rxe-vm beside the
#      repository), which boots a kernel with rdma_rxe under QEMU on this
#      machine's own root filesystem;
#   c. neither: SKIP (exit 77) with the reason.
#
# The build directory comes from $MCOS_BUILD_DIR (CTest sets it), else
# build/asan, else build.  The VM sees the host's root filesystem
# read-only except /tmp, /run, /var/tmp and /var/log, plus one shared
# directory at the same path: the repository when the build is inside it,
# else the build directory (the repository is then read through the root
# filesystem), else their common parent.
#
# Under QEMU without KVM everything is emulated (~10 s to boot, ~15 MB/s
# RDMA), so these are functional tests only.

set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RXE_VM=$REPO/../shared/tools/rxe-vm

skip() {
    echo "SKIP: $*"
    exit 77
}
fail() {
    echo "FAIL: $*"
    exit 1
}

if [[ -n ${MCOS_BUILD_DIR:-} ]]; then
    BUILD=$MCOS_BUILD_DIR
elif [[ -d $REPO/build/asan/bin ]]; then
    BUILD=$REPO/build/asan
else
    BUILD=$REPO/build
fi
BUILD=$(realpath "$BUILD") || fail "no build directory $BUILD"
[[ -x $BUILD/bin/test_transport_verbs ]] ||
    fail "$BUILD/bin/test_transport_verbs is not built"

# kernel_at_least MAJOR MINOR
kernel_at_least() {
    local v maj min
    v=$(uname -r)
    maj=${v%%.*}
    v=${v#*.}
    min=${v%%[!0-9]*}
    ((maj > $1 || (maj == $1 && min >= $2)))
}

# a. soft-RoCE on this kernel
why_not_native=""
if ((EUID != 0)); then
    why_not_native="not root"
elif ! command -v rdma >/dev/null; then
    why_not_native="no rdma tool (iproute2)"
elif ! out=$(modprobe rdma_rxe 2>&1); then
    why_not_native="modprobe rdma_rxe failed: ${out:-no output}"
elif ! kernel_at_least 6 12; then
    why_not_native="kernel $(uname -r) has rdma_rxe without network namespace support (6.12+)"
fi
if [[ -z $why_not_native ]]; then
    echo "rxe: soft-RoCE on this kernel ($(uname -r))"
    exec bash "$REPO/integration/rxe/native.sh" "$BUILD"
fi
echo "rxe: not on this kernel: $why_not_native"

# b. soft-RoCE in a VM
[[ -x $RXE_VM ]] ||
    skip "no soft-RoCE here ($why_not_native) and no rxe-vm at $RXE_VM"
command -v qemu-system-x86_64 >/dev/null ||
    skip "no soft-RoCE here ($why_not_native) and qemu-system-x86_64 is not installed for rxe-vm"

# Paths the guest hides behind its own tmpfs mounts.
hidden() {
    case $1/ in
    /tmp/* | /run/* | /var/tmp/* | /var/log/* | /proc/* | /sys/* | /dev/*)
        return 0 ;;
    esac
    return 1
}
case $BUILD/ in
"$REPO"/*)
    SHARE=$REPO ;;
*)
    if ! hidden "$REPO"; then
        SHARE=$BUILD
    else
        SHARE=$REPO
        while [[ $SHARE != / ]]; do
            SHARE=$(dirname "$SHARE")
            case $BUILD/ in "$SHARE"/*) break ;; esac
        done
        [[ $SHARE != / && $SHARE != /tmp ]] ||
            skip "cannot show both $REPO and $BUILD to the VM (they share no directory but ${SHARE})"
    fi
    ;;
esac

LOG=$(mktemp "${TMPDIR:-/tmp}/mcos-rxe-vm.XXXXXX")
trap 'rm -f "$LOG"' EXIT
envs=()
for e in MCOS_BIN MCOS_FAKE_CUDART ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS CK_VERBOSITY; do
    [[ -n ${!e+x} ]] && envs+=(-e "$e")
done
echo "rxe: booting the soft-RoCE VM ($RXE_VM, share $SHARE)"
start=${EPOCHREALTIME/./}
(cd "$SHARE" && "$RXE_VM" -n 2 --no-install --share "$SHARE" --timeout 540 \
    "${envs[@]}" -- bash "$REPO/integration/rxe/inside.sh" "$BUILD") 2>&1 |
    tee "$LOG"
rc=${PIPESTATUS[0]}
secs=$(((${EPOCHREALTIME/./} - start) / 1000000))
case $rc in
0)
    echo "PASS: integration_rxe (rxe-vm, ${secs} s)"
    exit 0 ;;
124)
    fail "the rxe VM timed out after ${secs} s" ;;
125)
    # The guest never ran the tests: a machine that cannot provide the VM
    # (packages, kernel download) skips; a guest that broke fails.
    if grep -qE 'missing packages|apt-get (download|install)|cannot find a Debian mirror|cannot get busybox' "$LOG"; then
        skip "rxe-vm cannot prepare its guest here: $(grep -m1 -E 'rxe-vm: ' "$LOG")"
    fi
    fail "the rxe VM failed before running the tests (exit 125)" ;;
*)
    fail "RDMA tests failed in the rxe VM (exit $rc, ${secs} s)" ;;
esac
