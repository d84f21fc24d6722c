# shellcheck shell=bash
#
# integration/etcd.sh: real etcd members for integration tests.
#
#   etcd_require                  SKIP (exit 77) unless `etcd` is installed
#   etcd_start NAME [HOST]        a one-member cluster named NAME, on
#                                 loopback or in netns.sh host HOST; waits
#                                 until it is healthy (has a leader)
#   etcd_cluster_start NAME[@HOST]...
#                                 one cluster of several members, started
#                                 together; waits until every one is healthy
#   etcd_restart NAME             start NAME again on its ports and data
#   etcd_endpoint NAME            its client URL, http://IP:PORT
#   etcd_endpoints [NAME...]      comma-separated URLs (default: all started)
#   etcd_healthy NAME             true while NAME answers /health as healthy
#   etcdctl_on NAME ARGS...       etcdctl (v3 API) against NAME
#   etcd_stop NAME                SIGTERM; require a clean exit (0 or 143:
#                                 etcd re-raises SIGTERM after cleaning up)
#   etcd_kill9 NAME               simulate a crash; the data stays for a
#                                 restart
#   etcd_stop_all                 etcd_stop every member still running
#
# Source lib.sh first (and netns.sh before using HOST).  Members are lib.sh
# daemons named NAME, so a failing test's EXIT trap kills them and dumps
# their logs ($TEST_DIR/NAME.log) with the others.  lib.sh's finish()
# insists on exit status 0, which etcd does not give on SIGTERM: call
# etcd_stop_all (or etcd_stop each) before finish.
#
# Data lives in $TEST_DIR/NAME.etcd; ports come from alloc_ports, so
# concurrent runs do not collide.  Elections are fast (heartbeat 50 ms,
# election timeout 500 ms; override with ETCD_HEARTBEAT_MS and
# ETCD_ELECTION_MS before starting) so failover tests take seconds.
# Tested with Debian 12's etcd-server 3.4.23.

ETCD_HEARTBEAT_MS=${ETCD_HEARTBEAT_MS:-50}
ETCD_ELECTION_MS=${ETCD_ELECTION_MS:-500}

declare -A ETCD_HOST=()         # member -> netns host ("" = root ns)
declare -A ETCD_IP=()           # member -> address it listens on
declare -A ETCD_CLIENT_PORT=()  # member -> client port
declare -A ETCD_PEER_PORT=()    # member -> raft peer port
declare -A ETCD_CLUSTER=()      # member -> its --initial-cluster string
ETCD_MEMBERS=()                 # every member started, in order

etcd_require() {
    command -v etcd >/dev/null ||
        skip "etcd not installed (Debian: apt-get install etcd-server)"
}

etcd_endpoint() {
    [[ -n ${ETCD_CLIENT_PORT[$1]:-} ]] || fail "etcd_endpoint: no member $1"
    echo "http://${ETCD_IP[$1]}:${ETCD_CLIENT_PORT[$1]}"
}

etcd_endpoints() {
    local names=("$@") name out=""
    ((${#names[@]})) || names=("${ETCD_MEMBERS[@]}")
    for name in "${names[@]}"; do
        out+="${out:+,}$(etcd_endpoint "$name")"
    done
    echo "$out"
}

# /health is "true" only when the member sees a leader and no alarm.
etcd_healthy() {
    run_on "${ETCD_HOST[$1]}" curl -sf -m 1 "$(etcd_endpoint "$1")/health" |
        grep -q '"health":"true"'
}

etcdctl_on() {
    local name=$1
    shift
    ETCDCTL_API=3 run_on "${ETCD_HOST[$name]}" etcdctl \
        --endpoints "$(etcd_endpoint "$name")" --dial-timeout 2s "$@"
}

# _etcd_prepare NAME HOST: address and ports for a new member.
_etcd_prepare() {
    local name=$1 host=$2
    [[ -z ${ETCD_CLIENT_PORT[$name]:-} ]] ||
        fail "etcd member $name already exists (use etcd_restart)"
    ETCD_HOST[$name]=$host
    if [[ -n $host ]]; then
        ETCD_IP[$name]=$(netns_ip "$host")
    else
        ETCD_IP[$name]=127.0.0.1
    fi
    local cport pport
    alloc_ports cport pport
    ETCD_CLIENT_PORT[$name]=$cport
    ETCD_PEER_PORT[$name]=$pport
    ETCD_MEMBERS+=("$name")
}

_etcd_peer_url() {
    echo "http://${ETCD_IP[$1]}:${ETCD_PEER_PORT[$1]}"
}

# _etcd_launch NAME: start the member's process.  On a restart the data
# directory exists and etcd ignores the --initial-* flags.
_etcd_launch() {
    local name=$1 client peer
    client=$(etcd_endpoint "$name")
    peer=$(_etcd_peer_url "$name")
    daemon_start "$name" "${ETCD_HOST[$name]}" etcd \
        --name "$name" \
        --data-dir "$TEST_DIR/$name.etcd" \
        --listen-client-urls "$client" \
        --advertise-client-urls "$client" \
        --listen-peer-urls "$peer" \
        --initial-advertise-peer-urls "$peer" \
        --initial-cluster "${ETCD_CLUSTER[$name]}" \
        --initial-cluster-state new \
        --initial-cluster-token "mcos-$TEST_NAME-$$" \
        --heartbeat-interval "$ETCD_HEARTBEAT_MS" \
        --election-timeout "$ETCD_ELECTION_MS"
}

# _etcd_wait NAME...: every member healthy within 20 s.
_etcd_wait() {
    local name
    for name in "$@"; do
        wait_for 20 etcd_healthy "$name" ||
            fail "etcd $name ($(etcd_endpoint "$name")) not healthy in 20 s"
    done
}

etcd_start() {
    local name=$1 host=${2:-}
    _etcd_prepare "$name" "$host"
    ETCD_CLUSTER[$name]="$name=$(_etcd_peer_url "$name")"
    _etcd_launch "$name"
    _etcd_wait "$name"
}

etcd_cluster_start() {
    local spec name host cluster="" names=()
    for spec in "$@"; do
        name=${spec%%@*}
        host=""
        [[ $spec == *@* ]] && host=${spec#*@}
        _etcd_prepare "$name" "$host"
        cluster+="${cluster:+,}$name=$(_etcd_peer_url "$name")"
        names+=("$name")
    done
    for name in "${names[@]}"; do
        ETCD_CLUSTER[$name]=$cluster
        _etcd_launch "$name"
    done
    _etcd_wait "${names[@]}"
}

etcd_restart() {
    local name=$1
    [[ -n ${ETCD_CLIENT_PORT[$name]:-} ]] ||
        fail "etcd_restart: no member $name"
    _etcd_launch "$name"
    _etcd_wait "$name"
}

etcd_stop() {
    local name=$1 pid=${PIDS[$1]:-}
    [[ -n $pid ]] || fail "etcd_stop: $name is not running"
    kill -TERM "$pid" 2>/dev/null || true
    _reap "$name" 15 || fail "etcd $name (pid $pid) ignored SIGTERM for 15 s"
    ((_EXIT_STATUS == 0 || _EXIT_STATUS == 143)) ||
        fail "etcd $name exited with status $_EXIT_STATUS after SIGTERM"
}

etcd_kill9() {
    daemon_kill9 "$1"
}

etcd_stop_all() {
    local name
    for name in "${ETCD_MEMBERS[@]}"; do
        [[ -z ${PIDS[$name]:-} ]] || etcd_stop "$name"
    done
}
