#!/bin/bash
#
# integration/rxe/native.sh BUILD_DIR: soft-RoCE on this machine's own
# kernel, for hosts that can load rdma_rxe.  Builds what tools/rxe-vm
# builds inside its guest -- hosts h1 and h2, each a network namespace
# with eth0 on a shared bridge and its own rxe device -- then runs
# inside.sh there and removes everything again.  Started by
# integration/test_rxe.sh after it checked that `modprobe rdma_rxe` works
# and that the kernel is new enough (rxe follows its netdev's namespace
# only since Linux 6.12).
#
# Devices: the rdma subsystem's default "shared" namespace mode shows every
# device in every namespace, so each host's device is named in
# MCOS_SELF_RXE and MCOS_TEST_RDMA_DEVICE for the programs that pick one.

set -uo pipefail

BUILD=${1:?usage: native.sh BUILD_DIR}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR/..
# shellcheck source=netns.sh
. "$HERE/../netns.sh"

CTL=$(mktemp -d "${TMPDIR:-/tmp}/mcos-rxe.XXXXXX")
DEVS=()
SLEEPERS=()

cleanup() {
    local d p
    for p in "${SLEEPERS[@]}"; do
        kill "$p" 2>/dev/null
    done
    for d in "${DEVS[@]}"; do
        rdma link delete "$d" 2>/dev/null
    done
    netns_teardown
    rm -rf "$CTL"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# gid_index DEV IP: the GID index of IP's RoCE v2 GID (it appears a moment
# after the device).
gid_index() {
    local dev=$1 ip=$2 g f n v t try
    # shellcheck disable=SC2086
    printf -v g '0000:0000:0000:0000:0000:ffff:%02x%02x:%02x%02x' ${ip//./ }
    for ((try = 0; try < 100; try++)); do
        for f in /sys/class/infiniband/"$dev"/ports/1/gids/*; do
            n=${f##*/}
            read -r v <"$f" 2>/dev/null || continue
            [[ $v == "$g" ]] || continue
            read -r t <"/sys/class/infiniband/$dev/ports/1/gid_attrs/types/$n" 2>/dev/null
            [[ $t == "RoCE v2" ]] && echo "$n" && return 0
        done
        sleep 0.1
    done
    return 1
}

netns_setup
mkdir -p "$CTL/bin"
: >"$CTL/hosts"
HOSTS=() IPS=()
for i in 1 2; do
    h=h$i
    netns_add_host "$h" "$i"
    ns=$(netns_name "$h")
    ip=$(netns_ip "$h")
    dev=mrxe$$h$i
    ip netns exec "$ns" rdma link add "$dev" type rxe netdev eth0 ||
        { echo "FAIL: rdma link add $dev in $ns"; exit 1; }
    DEVS+=("$dev")
    gid=$(gid_index "$dev" "$ip") ||
        { echo "FAIL: no RoCE v2 GID for $ip on $dev"; exit 1; }
    ip netns exec "$ns" sleep 100000 </dev/null >/dev/null 2>&1 &
    SLEEPERS+=($!)
    echo "$h $ip $dev $gid $! $ns" >>"$CTL/hosts"
    HOSTS+=("$h") IPS+=("$ip")
    export "MCOS_IP_$h=$ip" "MCOS_RXE_$h=$dev" "MCOS_GID_$h=$gid"
done

# `on HOST CMD...` and `wait-tcp HOST PORT [SEC]`, as rxe-vm has them.
cat >"$CTL/bin/on" <<'ON'
#!/bin/bash
[ $# -ge 2 ] || { echo "usage: on HOST CMD [ARGS...]" >&2; exit 2; }
h=$1; shift
while read -r name ip dev gid _ ns; do [ "$name" = "$h" ] && break; done <"$RXE_VM_HOSTS_FILE"
[ "$name" = "$h" ] || { echo "on: no such host $h" >&2; exit 2; }
export MCOS_SELF="$h" MCOS_SELF_IP="$ip" MCOS_SELF_RXE="$dev" MCOS_SELF_GID="$gid"
export MCOS_TEST_RDMA_DEVICE="$dev"
exec ip netns exec "$ns" "$@"
ON
cat >"$CTL/bin/wait-tcp" <<'WAIT'
#!/bin/bash
h=$1 port=$2 t=${3:-30} pid=
while read -r name _ _ _ p _; do [ "$name" = "$h" ] && pid=$p && break; done <"$RXE_VM_HOSTS_FILE"
[ -n "$pid" ] || { echo "wait-tcp: no such host $h" >&2; exit 2; }
printf -v hex ':%04X' "$port"
for ((n = 0; n < t * 10; n++)); do
  for f in /proc/$pid/net/tcp /proc/$pid/net/tcp6; do
    while read -r _ local _ st _; do
      [ "$st" = 0A ] && [ "${local%"$hex"}" != "$local" ] && exit 0
    done <"$f"
  done
  sleep 0.1
done
echo "wait-tcp: nothing listens on $h:$port after ${t}s" >&2; exit 1
WAIT
chmod 755 "$CTL/bin/on" "$CTL/bin/wait-tcp"

export PATH=$CTL/bin:$PATH RXE_VM_HOSTS_FILE=$CTL/hosts
export MCOS_HOSTS="${HOSTS[*]}" MCOS_HOST_IPS="${IPS[*]}" MCOS_NETDEV=eth0
bash "$HERE/inside.sh" "$BUILD"
