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
#   etcd_tls_init                 a test CA, a server certificate for
#                                 127.0.0.1 and a client certificate in
#                                 $ETCD_TLS_DIR (plus another CA that signed
#                                 nothing etcd trusts); members started
#                                 after it serve clients over https and
#                                 require a client certificate
#                                 (--client-cert-auth), on loopback only
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
declare -A ETCD_TLS=()          # member -> 1 when it serves https
ETCD_MEMBERS=()                 # every member started, in order
ETCD_TLS_DIR=""                 # set by etcd_tls_init

etcd_require() {
    command -v etcd >/dev/null ||
        skip "etcd not installed (Debian: apt-get install etcd-server)"
}

etcd_endpoint() {
    [[ -n ${ETCD_CLIENT_PORT[$1]:-} ]] || fail "etcd_endpoint: no member $1"
    local scheme=http
    [[ -z ${ETCD_TLS[$1]:-} ]] || scheme=https
    echo "$scheme://${ETCD_IP[$1]}:${ETCD_CLIENT_PORT[$1]}"
}

# _etcd_curl_tls NAME: the TLS flags curl and etcdctl need for NAME.
_etcd_curl_tls() {
    [[ -z ${ETCD_TLS[$1]:-} ]] ||
        echo "--cacert $ETCD_TLS_DIR/ca.pem --cert $ETCD_TLS_DIR/client.pem --key $ETCD_TLS_DIR/client-key.pem"
}

# etcd_tls_init: the certificates (see the top).  EC P-256, valid a day.
# The server's is also a client certificate: etcd's gRPC gateway dials
# the server with it.
etcd_tls_init() {
    command -v openssl >/dev/null ||
        skip "openssl not installed (Debian: apt-get install openssl)"
    ETCD_TLS_DIR=$TEST_DIR/tls
    mkdir -p "$ETCD_TLS_DIR"
    local d=$ETCD_TLS_DIR ca name
    for ca in ca other-ca; do
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
            -nodes -days 1 -subj "/CN=mcos-test-$ca" \
            -keyout "$d/$ca-key.pem" -out "$d/$ca.pem" 2>>"$d/openssl.log" ||
            fail "openssl could not make the test CA (see $d/openssl.log)"
    done
    for name in server client; do
        local ext="extendedKeyUsage=clientAuth"
        [[ $name == client ]] ||
            ext=$'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth'
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -subj "/CN=mcos-test-$name" -keyout "$d/$name-key.pem" \
            -out "$d/$name.csr" 2>>"$d/openssl.log" &&
            openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.pem" \
                -CAkey "$d/ca-key.pem" -CAcreateserial -days 1 \
                -extfile <(echo "$ext") -out "$d/$name.pem" \
                2>>"$d/openssl.log" ||
            fail "openssl could not make the $name certificate (see $d/openssl.log)"
    done
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
    # shellcheck disable=SC2046 # the TLS flags are separate words
    run_on "${ETCD_HOST[$1]}" curl -sf -m 1 $(_etcd_curl_tls "$1") \
        "$(etcd_endpoint "$1")/health" | grep '"health":"true"' >/dev/null
}

etcdctl_on() {
    local name=$1
    shift
    # shellcheck disable=SC2046 # the TLS flags are separate words
    ETCDCTL_API=3 run_on "${ETCD_HOST[$name]}" etcdctl \
        --endpoints "$(etcd_endpoint "$name")" --dial-timeout 2s \
        $(_etcd_curl_tls "$name") "$@"
}

# _etcd_prepare NAME HOST: address and ports for a new member.
_etcd_prepare() {
    local name=$1 host=$2
    [[ -z ${ETCD_CLIENT_PORT[$name]:-} ]] ||
        fail "etcd member $name already exists (use etcd_restart)"
    ETCD_HOST[$name]=$host
    if [[ -n $ETCD_TLS_DIR ]]; then
        [[ -z $host ]] || fail "etcd $name: TLS members run on loopback only"
        ETCD_TLS[$name]=1
    fi
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
    local tls=()
    if [[ -n ${ETCD_TLS[$name]:-} ]]; then
        tls=(--cert-file "$ETCD_TLS_DIR/server.pem"
            --key-file "$ETCD_TLS_DIR/server-key.pem"
            --client-cert-auth --trusted-ca-file "$ETCD_TLS_DIR/ca.pem")
    fi
    daemon_start "$name" "${ETCD_HOST[$name]}" etcd "${tls[@]}" \
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
