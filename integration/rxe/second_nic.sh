#!/bin/bash
#
# integration/rxe/second_nic.sh: sourced by inside.sh.  Gives every
# soft-RoCE host a second NIC, so that the verbs transport can stripe
# over two RDMA devices:
#
#   - a bridge br-nic2 (10.79.0.254/24) in the initial network namespace,
#     a second "switch";
#   - in host hN: eth1, a veth whose peer is on br-nic2, with 10.79.0.N/24,
#     and an rxe device "<its first device>b" bound to eth1 (created in
#     the host's namespace, as rxe-vm creates the first);
#   - where rxe-vm hides devices per host (/etc/netns/hN/rdma-dev), the new
#     device's uverbs node is added to its host's view (and to the
#     initial namespace's /etc/rdma-dev);
#   - h1's eth1 also gets 10.79.0.101, a second address on the same device
#     (for the "two addresses on one device" error).
#
# second_nic_setup exports MCOS_IP2_<h> and MCOS_RXE2_<h> and returns 0,
# or prints the exact error and returns 1.  second_nic_cleanup removes
# what it made (native.sh runs on the host's own kernel).

NIC2_SUBNET=10.79.0
NIC2_BRIDGE=br-nic2
NIC2_MADE=()

# nic2_ns HOST: the host's network namespace (6th field in native.sh's
# hosts file, else the host's name).
nic2_ns() {
    local name ns
    local _ip _dev _gid _pid
    while read -r name _ip _dev _gid _pid ns; do
        if [[ $name == "$1" ]]; then
            echo "${ns:-$name}"
            return 0
        fi
    done <"$RXE_VM_HOSTS_FILE"
    return 1
}

# nic2_gid DEV IP: waits (5 s) for DEV's RoCE v2 GID of IP.
nic2_gid() {
    local dev=$1 ip=$2 g f n v t try
    # shellcheck disable=SC2086
    printf -v g '0000:0000:0000:0000:0000:ffff:%02x%02x:%02x%02x' ${ip//./ }
    for ((try = 0; try < 50; try++)); do
        for f in "/sys/class/infiniband/$dev/ports/1/gids"/*; do
            n=${f##*/}
            read -r v <"$f" 2>/dev/null || continue
            [[ $v == "$g" ]] || continue
            read -r t <"/sys/class/infiniband/$dev/ports/1/gid_attrs/types/$n" \
                2>/dev/null
            [[ $t == "RoCE v2" ]] && return 0
        done
        sleep 0.1
    done
    echo "no RoCE v2 GID for $ip on $dev after 5 s"
    return 1
}

# nic2_show DEV NS: adds DEV's uverbs node to the views rxe-vm made.
nic2_show() {
    local dev=$1 ns=$2 u ib mm
    [[ -d /etc/netns/$ns/rdma-dev ]] || return 0
    for u in /sys/class/infiniband_verbs/uverbs*; do
        read -r ib <"$u/ibdev"
        [[ $ib == "$dev" ]] || continue
        read -r mm <"$u/dev"
        for d in /etc/netns/$ns/rdma-dev /etc/rdma-dev; do
            [[ -e $d/${u##*/} ]] ||
                mknod "$d/${u##*/}" c "${mm%:*}" "${mm#*:}" || return 1
        done
        return 0
    done
    echo "no uverbs node for $dev"
    return 1
}

second_nic_setup() {
    local h ns i ip dev devvar out
    out=$(ip link add "$NIC2_BRIDGE" type bridge 2>&1 &&
        ip addr add "$NIC2_SUBNET.254/24" dev "$NIC2_BRIDGE" 2>&1 &&
        ip link set "$NIC2_BRIDGE" up 2>&1) ||
        { echo "second NIC: bridge $NIC2_BRIDGE: $out"; return 1; }
    NIC2_MADE+=("link:$NIC2_BRIDGE")
    for h in $MCOS_HOSTS; do
        ns=$(nic2_ns "$h") || { echo "second NIC: no host $h"; return 1; }
        devvar="MCOS_RXE_$h"
        dev=${!devvar}b
        ipvar="MCOS_IP_$h"
        i=${!ipvar##*.}
        ip=$NIC2_SUBNET.$i
        out=$(ip link add "v2-$h" type veth peer name eth1 netns "$ns" 2>&1 &&
            ip link set "v2-$h" master "$NIC2_BRIDGE" up 2>&1 &&
            ip -n "$ns" addr add "$ip/24" dev eth1 2>&1 &&
            ip -n "$ns" link set eth1 up 2>&1) ||
            { echo "second NIC: eth1 in $h: $out"; return 1; }
        NIC2_MADE+=("link:v2-$h")
        if [[ $h == h1 ]]; then
            ip -n "$ns" addr add "$NIC2_SUBNET.101/24" dev eth1 ||
                { echo "second NIC: second address in h1"; return 1; }
        fi
        out=$(ip netns exec "$ns" rdma link add "$dev" type rxe netdev eth1 2>&1) ||
            { echo "second NIC: rdma link add $dev type rxe netdev eth1 in $h: $out"; return 1; }
        NIC2_MADE+=("rdma:$dev")
        out=$(nic2_gid "$dev" "$ip") || { echo "second NIC: $out"; return 1; }
        out=$(nic2_show "$dev" "$ns" 2>&1) ||
            { echo "second NIC: cannot show $dev in $h: $out"; return 1; }
        export "MCOS_IP2_$h=$ip" "MCOS_RXE2_$h=$dev"
    done
    echo "second NIC: $(for h in $MCOS_HOSTS; do v=MCOS_IP2_$h r=MCOS_RXE2_$h; printf '%s %s %s; ' "$h" "${!v}" "${!r}"; done)"
    return 0
}

second_nic_cleanup() {
    local m
    for m in "${NIC2_MADE[@]}"; do
        case $m in
        rdma:*) rdma link delete "${m#rdma:}" 2>/dev/null ;;
        link:*) ip link delete "${m#link:}" 2>/dev/null ;;
        esac
    done
    NIC2_MADE=()
}
