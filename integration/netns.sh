# shellcheck shell=bash
#
# integration/netns.sh: a small virtual network of hosts, one network
# namespace each, for tests where addresses matter.
#
#   netns_require                  SKIP (exit 77) unless we can build one
#   netns_setup                    the switch: a bridge in its own namespace
#   netns_add_host NAME OCTET      a host namespace with eth0 = SUBNET.OCTET
#   netns_ip NAME                  the host's address
#   netns_name NAME                the host's namespace name
#   netns_exec NAME CMD...         run CMD inside the host's namespace
#   netns_teardown                 remove everything (idempotent; lib.sh's
#                                  EXIT trap calls it)
#
# Layout: every host namespace holds one end of a veth pair (eth0, with the
# host's address); the other end is a port of a Linux bridge that lives in
# a dedicated "switch" namespace.  The root namespace gets no interface or
# address in the test subnet, so tests cannot accidentally pass through the
# host's own stack, and nothing leaks into its routing table.
#
# Addresses come from one private /24, 10.213.K.0/24.  K defaults to a
# value derived from the pid, skipping any K the root namespace already
# uses; the subnet lives only inside this run's namespaces, so concurrent
# runs may even share it.  Namespace names carry the pid and a random
# suffix ("mcos-12345-a1b2-n1"), so parallel or leftover runs never
# collide.  Set NETNS_SUBNET_K to force K.
#
# Source lib.sh first when using skip/fail from it; netns.sh also works on
# its own (it then prints SKIP and exits 77 itself).

NETNS_ID=""
NETNS_SUBNET=""
NETNS_SWITCH=""
# Namespaces created by this run, in creation order (teardown reverses it).
NETNS_CREATED=()
declare -A NETNS_HOST_NS=()  # host name -> namespace name
declare -A NETNS_HOST_IP=()  # host name -> IPv4 address
NETNS_PORTS=0                # bridge ports made so far (names p1, p2, ...)

_netns_skip() {
    if declare -F skip >/dev/null; then
        skip "$@"
    fi
    echo "SKIP: $*"
    exit 77
}

_netns_fail() {
    if declare -F fail >/dev/null; then
        fail "$@"
    fi
    echo "FAIL: $*" >&2
    exit 1
}

# netns_require: check for root, iproute2, and the kernel features we use
# (namespaces, bridge, veth) by building and removing a probe namespace.
# Anything missing is a SKIP with the reason, never a silent pass.
netns_require() {
    if ((EUID != 0)); then
        _netns_skip "network namespaces need root (running as uid $EUID)"
    fi
    command -v ip >/dev/null || _netns_skip "ip (iproute2) is not installed"
    local probe="mcos-probe-$$-$RANDOM" err
    if ! err=$(ip netns add "$probe" 2>&1); then
        _netns_skip "cannot create a network namespace: $err"
    fi
    if ! err=$(ip -n "$probe" link add br0 type bridge 2>&1); then
        ip netns del "$probe" 2>/dev/null
        _netns_skip "cannot create a Linux bridge in a namespace: $err"
    fi
    if ! err=$(ip -n "$probe" link add va type veth peer name vb 2>&1); then
        ip netns del "$probe" 2>/dev/null
        _netns_skip "cannot create a veth pair in a namespace: $err"
    fi
    ip netns del "$probe"
}

# _netns_k_in_use K: the root namespace has an address or route in
# 10.213.K.0/24 (then we pick another K, to keep any debugging output
# unambiguous).
_netns_k_in_use() {
    { ip -4 -o addr show; ip -4 route show; } 2>/dev/null |
        grep -q "10\.213\.$1\."
}

# netns_setup: create the switch namespace with its bridge and choose the
# subnet.  Hosts are added with netns_add_host.
netns_setup() {
    [[ -z $NETNS_ID ]] || _netns_fail "netns_setup called twice"
    NETNS_ID=$(printf 'mcos-%d-%04x' $$ $((RANDOM % 65536)))
    local k=${NETNS_SUBNET_K:-}
    if [[ -z $k ]]; then
        local tries=0
        k=$((20 + $$ % 200))
        while _netns_k_in_use "$k" && ((tries < 200)); do
            k=$((20 + (k - 20 + 1) % 200))
            tries=$((tries + 1))
        done
    fi
    NETNS_SUBNET=10.213.$k
    NETNS_SWITCH=$NETNS_ID-switch
    _netns_add "$NETNS_SWITCH"
    ip -n "$NETNS_SWITCH" link add br0 type bridge ||
        _netns_fail "cannot create the bridge in $NETNS_SWITCH"
    ip -n "$NETNS_SWITCH" link set br0 up
}

# _netns_add NS: create namespace NS (recorded for teardown), loopback up.
_netns_add() {
    ip netns add "$1" || _netns_fail "ip netns add $1 failed"
    NETNS_CREATED+=("$1")
    ip -n "$1" link set lo up
}

# netns_add_host NAME OCTET: a host namespace whose eth0 has address
# SUBNET.OCTET/24 and is wired to the switch.
netns_add_host() {
    local name=$1 octet=$2
    [[ -n $NETNS_ID ]] || _netns_fail "netns_add_host before netns_setup"
    [[ -z ${NETNS_HOST_NS[$name]:-} ]] ||
        _netns_fail "netns host $name exists already"
    local ns=$NETNS_ID-$name ip=$NETNS_SUBNET.$octet
    _netns_add "$ns"
    NETNS_PORTS=$((NETNS_PORTS + 1))
    local port=p$NETNS_PORTS
    # Create the pair inside the switch namespace and move the peer
    # straight into the host namespace: the root namespace never sees
    # either end, and interface names need only be unique per namespace.
    ip -n "$NETNS_SWITCH" link add "$port" type veth peer name eth0 netns "$ns" ||
        _netns_fail "cannot create the veth pair for $name"
    ip -n "$NETNS_SWITCH" link set "$port" master br0 up
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$ns" link set eth0 up
    NETNS_HOST_NS[$name]=$ns
    NETNS_HOST_IP[$name]=$ip
    # The link is usable once the carrier is up on both ends.
    local i
    for ((i = 0; i < 100; i++)); do
        if ip -n "$ns" link show eth0 | grep -q LOWER_UP; then
            return 0
        fi
        sleep 0.02
    done
    _netns_fail "eth0 of $name never came up"
}

netns_ip() {
    [[ -n ${NETNS_HOST_IP[$1]:-} ]] || _netns_fail "no netns host $1"
    echo "${NETNS_HOST_IP[$1]}"
}

netns_name() {
    [[ -n ${NETNS_HOST_NS[$1]:-} ]] || _netns_fail "no netns host $1"
    echo "${NETNS_HOST_NS[$1]}"
}

# netns_exec NAME CMD...: run CMD in host NAME's namespace.  `ip netns
# exec` execs CMD in place, so `netns_exec h1 daemon &` style callers that
# need the daemon's own pid should call ip directly (lib.sh does).
netns_exec() {
    local ns=${NETNS_HOST_NS[$1]:-}
    [[ -n $ns ]] || _netns_fail "no netns host $1"
    shift
    ip netns exec "$ns" "$@"
}

# netns_teardown: kill anything still running inside this run's
# namespaces (only processes this test started can be in them) and delete
# the namespaces; deleting a namespace removes its veth ends and bridge.
netns_teardown() {
    local i ns pid
    for ((i = ${#NETNS_CREATED[@]} - 1; i >= 0; i--)); do
        ns=${NETNS_CREATED[i]}
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -9 "$pid" 2>/dev/null || true
        done
        ip netns del "$ns" 2>/dev/null || true
    done
    NETNS_CREATED=()
    NETNS_HOST_NS=()
    NETNS_HOST_IP=()
}
