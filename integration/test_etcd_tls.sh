#!/usr/bin/env bash
#
# integration/test_etcd_tls.sh: brains and agents against an etcd that
# serves clients over TLS and requires client certificates
# (--client-cert-auth), as production etcd clusters usually do
# (docs/etcd.md, "TLS").
#
#   - bad TLS settings are configuration errors: exit 2 with one exact
#     line, before anything is contacted (a missing file, a certificate
#     without its key, TLS files with no https:// endpoint or no etcd);
#   - a brain that trusts another CA, or that has no client certificate,
#     cannot reach etcd: exit 1, naming the endpoint and TLS's reason;
#   - with the right files, a brain leads (its status shows the endpoint
#     healthy), `mcos-admin config set` lands in etcd, and an agent
#     registers its lease there and joins.

set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/etcd.sh"

test_init etcd_tls
etcd_require

REPORT_MS=200
SUSPECT_MS=1000
FAIL_MS=3000
STALE_MS=1500

etcd_tls_init
T=$ETCD_TLS_DIR

step "bad TLS settings: exit 2, one exact line, nothing contacted"
alloc_ports BP
B=("$MCOS_BIN/mcos-brain" --listen "tcp://127.0.0.1:$BP" --http ""
    --state-dir "$TEST_DIR/bad-state")
EP=https://127.0.0.1:1
expect_fail 2 "mcos-brain: etcd TLS CA file '$T/nope.pem': No such file or directory" \
    "${B[@]}" --etcd "$EP" --etcd-cacert "$T/nope.pem"
expect_fail 2 "mcos-brain: etcd TLS CA file '$T': not a regular file" \
    "${B[@]}" --etcd "$EP" --etcd-cacert "$T"
expect_fail 2 "mcos-brain: etcd TLS: a client certificate needs its key and a key its certificate (got only the certificate)" \
    "${B[@]}" --etcd "$EP" --etcd-cert "$T/client.pem"
expect_fail 2 "mcos-brain: etcd TLS files are set but no etcd endpoint is https://" \
    "${B[@]}" --etcd http://127.0.0.1:1 --etcd-cacert "$T/ca.pem"
expect_fail 2 "mcos-brain: etcd TLS files are set but etcd.endpoints is empty" \
    "${B[@]}" --etcd-cacert "$T/ca.pem"
expect_fail 2 "mcos-agent: etcd TLS client key '$T/nope-key.pem': No such file or directory" \
    "$MCOS_BIN/mcos-agent" --node n9 --brain "tcp://127.0.0.1:$BP" \
    --etcd "$EP" --etcd-cert "$T/client.pem" --etcd-key "$T/nope-key.pem"
[[ ! -e $TEST_DIR/bad-state ]] || fail "a refused config created its state dir"

etcd_start e1
E1=$(etcd_endpoint e1)
[[ $E1 == https://* ]] || fail "etcd e1 does not serve https: $E1"
ok "etcd e1 serves $E1 and requires client certificates"

# brain_refused WHY FLAGS...: the brain exits 1 at start, naming the
# endpoint, what it asked, and TLS's reason (libcurl's words, stable for
# Debian 12's curl and OpenSSL).
brain_refused() {
    local why=$1 err want
    shift
    capture "${B[@]}" --etcd "$E1" "$@"
    err=$(sed -E 's/after [0-9]+ ms/after N ms/' "$TEST_DIR/err")
    want="mcos-brain: etcd.endpoints: cannot reach etcd: etcd $E1: range \"/mcos/leader\": $why (set etcd.required to false to run embedded without it)"
    ((CAPTURED_RC == 1)) || fail "exit $CAPTURED_RC, want 1: $err"
    [[ $err == "$want" ]] || fail "stderr differs
   want: $want
    got: $err"
    ok "exit 1: $err"
}

step "the wrong CA, or no client certificate: exit 1 with TLS's reason"
brain_refused 'Permission denied (SSL certificate problem: unable to get local issuer certificate)' \
    --etcd-cacert "$T/other-ca.pem" --etcd-cert "$T/client.pem" \
    --etcd-key "$T/client-key.pem"
capture "${B[@]}" --etcd "$E1" --etcd-cacert "$T/ca.pem"
((CAPTURED_RC == 1)) || fail "no client certificate: exit $CAPTURED_RC, want 1"
grep -q "^mcos-brain: etcd.endpoints: cannot reach etcd: etcd $E1: range \"/mcos/leader\": .*(set etcd.required to false to run embedded without it)$" \
    "$TEST_DIR/err" || fail "no client certificate: $(cat "$TEST_DIR/err")"
ok "exit 1 without a client certificate: $(cat "$TEST_DIR/err")"

step "the right files: the brain leads over TLS"
TLS=(--etcd "$E1" --etcd-cacert "$T/ca.pem" --etcd-cert "$T/client.pem"
    --etcd-key "$T/client-key.pem")
start_brain "${TLS[@]}" --etcd-lease-ttl-s 2
wait_for 10 brain_check '.role == "leader"' /v1/status ||
    fail "the brain does not lead: $(brain_get /v1/status || true)"
wait_for 10 brain_check "[.etcd.health[] | select(.endpoint == \"$E1\" and .healthy)] | length == 1" /v1/status ||
    fail "status does not show $E1 healthy: $(brain_jq .etcd /v1/status)"
etcdctl_on e1 get /mcos/leader --print-value-only | grep -q . ||
    fail "no /mcos/leader in etcd"
ok "leader; /v1/status shows $E1 healthy; /mcos/leader is in etcd"

admin config set routing.queue_block_milli 1500 >/dev/null
[[ $(etcdctl_on e1 get /mcos/config/routing.queue_block_milli --print-value-only) == 1500 ]] ||
    fail "config set did not land in etcd"
ok "mcos-admin config set is stored in etcd over TLS"

step "an agent registers its lease over TLS and joins"
start_agent n1 "${TLS[@]}"
wait_for 10 nodes_alive 1 || fail "n1 did not join"
wait_for 10 eval 'etcdctl_on e1 get /mcos/nodes/n1 --print-value-only | grep -q "\"node\":\"n1\""' ||
    fail "n1 is not registered in etcd"
ok "n1 alive, /mcos/nodes/n1 in etcd"

daemon_stop n1
daemon_stop brain
etcd_stop_all
finish
