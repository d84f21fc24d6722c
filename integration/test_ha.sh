#!/usr/bin/env bash
#
# integration/test_ha.sh: brain high availability and cluster configuration
# against a real etcd (docs/etcd.md, docs/operations.md).
#
#   - etcd unreachable when a brain starts: a clear error and exit 1, or the
#     embedded default with etcd.required false (where `config set` is
#     refused, naming --etcd);
#   - two brains: one leads (HTTP 200 on /v1/status), the other stands by
#     (503, naming the leader); mcos-admin status shows both, and the etcd
#     endpoints' health; agents given both URLs find the leader, and one
#     given only a dead brain's URL finds it in etcd (/mcos/leader);
#   - the leader killed with kill -9: the standby leads within the lease
#     TTL + one report interval (+ slack, below), the agents follow with
#     their tables and objects, and generations keep increasing (the
#     counter lives in etcd);
#   - mcos-admin config get/set: a change is stored in etcd, compiled into
#     the next generation and seen by the standby; bad keys and values are
#     refused with their exact messages and nothing is written (usage
#     errors, which need no brain, are in test_cli.sh);
#   - etcd killed and restarted under the running cluster: everything
#     recovers;
#   - the leader cut off from etcd (its etcd traffic goes through a socat
#     relay the test kills): it steps down before the other brain leads, so
#     no two brains ever push at once;
#   - a leader stopped with SIGTERM revokes its lease: the standby leads
#     well within the TTL; an agent whose list names only that brain (and
#     no etcd) goes to the leader the brain had sent it to earlier.

set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/etcd.sh"

test_init ha
etcd_require
command -v socat >/dev/null || skip "socat not installed (Debian: apt-get install socat)"

TTL=2          # the brains' lease TTL, s
REPORT_MS=200  # what the brains tell agents
SUSPECT_MS=1000
FAIL_MS=3000
STALE_MS=1500
# Beyond TTL + one report interval: etcd checks lease expiry every 500 ms,
# and the standby's watch and campaign add a few round trips; ASan on a
# shared 2-core machine adds the rest.
SLACK_MS=2000
BOUND_MS=$((TTL * 1000 + REPORT_MS + SLACK_MS))

declare -A HB_PORT=() HB_HTTP=()
AGENTS=(n1 n2 n3)

# start_ha_brain NAME ETCD_ENDPOINTS [FLAGS...]: start (or restart, on the
# same ports) brain NAME and wait until its API answers (200 or 503).
start_ha_brain() {
    local name=$1 ep=$2
    shift 2
    if [[ -z ${HB_PORT[$name]:-} ]]; then
        local p h
        alloc_ports p h
        HB_PORT[$name]=$p
        HB_HTTP[$name]=http://127.0.0.1:$h
    fi
    daemon_start "$name" "" "$MCOS_BIN/mcos-brain" --name "$name" \
        --listen "tcp://127.0.0.1:${HB_PORT[$name]}" \
        --http "${HB_HTTP[$name]}" --state-dir "$TEST_DIR/$name-state" \
        --etcd "$ep" --etcd-lease-ttl-s "$TTL" \
        --report-interval-ms "$REPORT_MS" --suspect-after-ms "$SUSPECT_MS" \
        --fail-after-ms "$FAIL_MS" "$@"
    wait_for 15 _answers "$name" || fail "brain $name does not answer"
    log "brain $name up (pid ${PIDS[$name]}): bus tcp://127.0.0.1:${HB_PORT[$name]}, HTTP ${HB_HTTP[$name]}"
}

bus_of() { echo "tcp://127.0.0.1:${HB_PORT[$1]}"; }

# log_ms FILE REGEX: the time (ms since the epoch) of the last log line
# matching REGEX; the daemons stamp lines with UTC to the millisecond.
log_ms() {
    local line
    line=$(grep -E "$2" "$1" | tail -1)
    [[ -n $line ]] || return 1
    date -u -d "${line%%|*}" +%s%3N
}

_answers() {
    require_running "$1"
    [[ $(http_code "$1") =~ ^(200|503)$ ]]
}

# http_code NAME: the HTTP status of NAME's /v1/status.
http_code() {
    curl -s -o /dev/null -m 2 -w '%{http_code}' "${HB_HTTP[$1]}/v1/status" ||
        true
}

# status_of NAME FILTER: jq -r FILTER over NAME's /v1/status (200 or 503).
status_of() {
    curl -s -m 2 "${HB_HTTP[$1]}/v1/status" | jq -r "$2"
}

leads() {
    [[ $(http_code "$1") == 200 ]] && [[ $(status_of "$1" .role) == leader ]]
}

stands_by_for() {
    [[ $(http_code "$1") == 503 ]] &&
        [[ $(status_of "$1" '.role + " " + (.leader.name // "none")') == "standby $2" ]]
}

# use_brain NAME: lib.sh's helpers (admin, nodes_alive, ...) talk to NAME.
use_brain() {
    BRAIN_HTTP=${HB_HTTP[$1]}
}

agent_gen() { agent_jq "$1" .applied_gen; }

# synced_on NAME OLD: the agents report to brain NAME, and a sync there
# publishes a generation above OLD, left in GEN.
synced_on() {
    use_brain "$1"
    wait_for 15 nodes_alive "${#AGENTS[@]}" ||
        fail "the agents did not follow $1; not alive there: $(not_alive "${AGENTS[@]}")"
    admin sync --wait >/dev/null
    GEN=$(brain_generation)
    ((GEN > $2)) || fail "generation went from $2 to $GEN on $1"
}

agents_run_at_least() {
    local n
    for n in "${AGENTS[@]}"; do
        (($(agent_gen "$n") >= $1)) || return 1
    done
}

# A relay for b1's etcd traffic that the test can cut.
start_relay() {
    daemon_start relay "" socat "TCP-LISTEN:$RELAY_PORT,bind=127.0.0.1,reuseaddr,fork" \
        "TCP:127.0.0.1:${ETCD_CLIENT_PORT[e1]}"
    wait_for 5 port_in_use "$RELAY_PORT" || fail "socat relay did not listen"
}

# cut_relay: kill the relay and every connection it carries (socat forks
# one child per connection).
cut_relay() {
    local pid=${PIDS[relay]} kids
    kids=$(ps -o pid= --ppid "$pid" || true)
    daemon_kill9 relay
    # shellcheck disable=SC2086 # one pid per word
    [[ -z $kids ]] || kill -9 $kids 2>/dev/null || true
}

step "etcd unreachable at start: a clear error, or the embedded default"
alloc_ports DEAD_PORT B0_PORT B0_HTTP
capture "$MCOS_BIN/mcos-brain" --name b0 --listen "tcp://127.0.0.1:$B0_PORT" \
    --http "" --state-dir "$TEST_DIR/b0-state" --etcd "http://127.0.0.1:$DEAD_PORT"
err=$(sed -E 's/after [0-9]+ ms/after N ms/' "$TEST_DIR/err")
want="mcos-brain: etcd.endpoints: cannot reach etcd: etcd http://127.0.0.1:$DEAD_PORT: range \"/mcos/leader\": Connection refused (Failed to connect to 127.0.0.1 port $DEAD_PORT after N ms: Couldn't connect to server) (set etcd.required to false to run embedded without it)"
((CAPTURED_RC == 1)) || fail "exit $CAPTURED_RC with etcd unreachable, want 1: $err"
[[ $err == "$want" ]] || fail "stderr differs
   want: $want
    got: $err"
ok "exit 1: $err"
HB_PORT[b0]=$B0_PORT
HB_HTTP[b0]=http://127.0.0.1:$B0_HTTP
start_ha_brain b0 "http://127.0.0.1:$DEAD_PORT" --etcd-required=false
[[ $(http_code b0) == 200 ]] || fail "embedded fallback answers $(http_code b0)"
[[ $(status_of b0 '.role + " " + .mode') == "leader embedded" ]] ||
    fail "fallback status: $(status_of b0 .)"
grep -q 'running embedded (etcd.required is false)' "$TEST_DIR/b0.log" ||
    fail "the fallback is not logged"
use_brain b0
expect_fail 1 "mcos-admin: config set needs etcd: this brain runs without etcd.endpoints (--etcd); change its config file instead (HTTP 409)" \
    "$MCOS_BIN/mcos-admin" --brain "${HB_HTTP[b0]}" config set policy.high_watermark_pct 80
daemon_stop b0
ok "etcd.required=false: the embedded default, role leader, HTTP 200"

step "etcd, two brains: one leads, the other stands by"
etcd_start e1
EP=$(etcd_endpoints e1)
alloc_ports RELAY_PORT
start_relay
RELAY_EP=http://127.0.0.1:$RELAY_PORT
start_ha_brain b1 "$RELAY_EP"
wait_for 10 leads b1 || fail "b1 never led: $(status_of b1 .)"
start_ha_brain b2 "$EP"
wait_for 10 stands_by_for b2 b1 || fail "b2: $(status_of b2 .)"
val=$(etcdctl_on e1 get /mcos/leader --print-value-only)
jq -e ".name == \"b1\" and .bus == \"$(bus_of b1)\"" <<<"$val" >/dev/null ||
    fail "/mcos/leader: $val"
ok "b1 leads (/mcos/leader = $val); b2 answers 503 as a standby"
_both_listed() {
    [[ $(status_of b2 '[.brains[].name] | sort | join(",")') == b1,b2 ]]
}
wait_for 5 _both_listed || fail "brains: $(status_of b2 .brains)"
_health_known() {
    [[ $(status_of b2 '.etcd.health | length') == 1 ]]
}
wait_for 5 _health_known || fail "no endpoint health: $(status_of b2 .etcd)"
"$MCOS_BIN/mcos-admin" --brain "${HB_HTTP[b2]}" status >"$TEST_DIR/status.out" ||
    fail "mcos-admin status on a standby failed: $(cat "$TEST_DIR/status.out")"
for re in "^role: +standby \(etcd\)$" \
    "^leader: +b1 \(bus $(bus_of b1), HTTP ${HB_HTTP[b1]}\)$" \
    "^standby: +b2 \(bus $(bus_of b2), HTTP ${HB_HTTP[b2]}\)$" \
    "^etcd endpoint: +$EP healthy \(etcd [0-9.]+, raft leader\)$"; do
    grep -Eq "$re" "$TEST_DIR/status.out" ||
        fail "mcos-admin status lacks /$re/: $(cat "$TEST_DIR/status.out")"
done
ok "mcos-admin status on the standby:"
sed 's/^/       /' "$TEST_DIR/status.out"

step "agents given both brains find the leader"
use_brain b1
start_agent n1 --brain "$(bus_of b1),$(bus_of b2)" --etcd "$EP" --etcd-lease-ttl-s 2
start_agent n2 --brain "$(bus_of b2),$(bus_of b1)"
# n3 knows only b2 (as behind a load balancer): it follows b1's own URL,
# and must find its way back when b1 dies.
start_agent n3 --brain "$(bus_of b2)"
wait_for 15 nodes_alive 3 ||
    fail "three nodes never alive on b1; not alive there: $(not_alive "${AGENTS[@]}")"
grep -q "hello: brain b2 is a standby; the leader is b1" "$TEST_DIR/n2.log" ||
    fail "n2 was not told who leads"
grep -q "following the brain at $(bus_of b1)" "$TEST_DIR/n2.log" ||
    fail "n2 did not follow b1"
grep -q "following the brain at $(bus_of b1)" "$TEST_DIR/n3.log" ||
    fail "n3 did not follow b1"
(($(agent_metric n2 mcos_agent_brain_switches_total) >= 1)) ||
    fail "n2's switch is not counted: $(agent_get n2 /metrics | grep switches)"
ok "n2 and n3 asked b2, were sent to b1"
"$MCOS_BIN/libmcos_worker" "ipc://$TEST_DIR/n1.api.sock" many 0 ||
    fail "libmcos_worker failed"
admin sync --wait >/dev/null
G1=$(brain_generation)
wait_for 10 agents_run_at_least "$G1" || fail "agents not at $G1"
[[ $(etcdctl_on e1 get /mcos/gen --print-value-only) == "$G1" ]] ||
    fail "/mcos/gen is $(etcdctl_on e1 get /mcos/gen --print-value-only), want $G1"
ok "the agents run generation $G1 (= /mcos/gen); n1 holds 33 objects"

step "an agent whose list names no live brain finds the leader in etcd"
alloc_ports DEAD_BUS
start_agent n4 --brain "tcp://127.0.0.1:$DEAD_BUS" --etcd "$EP" \
    --etcd-lease-ttl-s 2
wait_for 15 eval 'brain_check ".nodes[] | select(.name == \"n4\") | .state == \"alive\"" /v1/nodes' ||
    fail "n4 never joined b1: $(brain_get /v1/nodes | jq -c '[.nodes[] | {name, state}]')"
grep -q "etcd names the leading brain: $(bus_of b1)" "$TEST_DIR/n4.log" ||
    fail "n4 did not log what etcd said"
grep -q "following the brain at $(bus_of b1) (was tcp://127.0.0.1:$DEAD_BUS)" \
    "$TEST_DIR/n4.log" || fail "n4 did not follow b1"
ok "n4, given only a dead brain, read /mcos/leader and joined b1"
daemon_stop n4
# Its leaving compiles another generation: let it settle first.
wait_for 10 node_state_is n4 failed || fail "n4 is $(node_state n4) after it stopped"
admin sync --wait >/dev/null
G1=$(brain_generation)
wait_for 10 agents_run_at_least "$G1" || fail "agents not at $G1 after n4 left"

step "kill -9 the leader: the standby leads within TTL + report interval"
t0=$(now_ms)
daemon_kill9 b1
# Nobody leads now: the agents keep running what they had.
for n in "${AGENTS[@]}"; do
    [[ $(agent_gen "$n") == "$G1" ]] || fail "$n runs $(agent_gen "$n"), want $G1"
    agent_table_has "$n" "tier/dram high=90%" || fail "$n lost its table"
done
wait_for 15 leads b2 || fail "b2 never led: $(status_of b2 .)"
# From b2's log: the polls can lag on a loaded machine.
took=$(($(log_ms "$TEST_DIR/b2.log" 'elected leader') - t0))
((took <= BOUND_MS)) ||
    fail "takeover took $took ms, bound $BOUND_MS ms (TTL $TTL s + report $REPORT_MS ms + slack $SLACK_MS ms)"
ok "b2 leads ${took} ms after the kill (bound ${BOUND_MS} ms)"
synced_on b2 "$G1"
G2=$GEN
agents_run_at_least "$G2" || fail "agents not at $G2"
admin objects --node n1 | grep '^node n1: 33 objects$' >/dev/null ||
    fail "n1's objects after the failover: $(admin objects --node n1 | head -1)"
agent_table_has n1 "tier/dram high=90%" || fail "n1's table: $(agent_get n1 /v1/table)"
for n in "${AGENTS[@]}"; do
    grep -q "following the brain at $(bus_of b2)" "$TEST_DIR/$n.log" ||
        fail "$n did not log following b2"
done
ok "agents follow b2: generation $G1 -> $G2, n1 still holds 33 objects"

step "the old leader comes back as a standby"
start_ha_brain b1 "$RELAY_EP"
wait_for 10 stands_by_for b1 b2 || fail "b1: $(status_of b1 .)"
ok "b1 stands by for b2"

step "mcos-admin config: validated, stored in etcd, compiled, seen by all"
admin config set policy.high_watermark_pct 80 >"$TEST_DIR/out"
[[ $(cat "$TEST_DIR/out") == "policy.high_watermark_pct = 80 (stored in etcd; compiled into the next generation)" ]] ||
    fail "config set said: $(cat "$TEST_DIR/out")"
wait_for 10 agent_table_has n1 "tier/dram high=80%" ||
    fail "n1's table never got 80%: $(agent_get n1 /v1/table)"
((($(brain_generation)) > G2)) || fail "no new generation for the change"
_b1_sees() {
    [[ $("$MCOS_BIN/mcos-admin" --brain "${HB_HTTP[b1]}" config get policy.high_watermark_pct) == "policy.high_watermark_pct = 80 (etcd)" ]]
}
wait_for 5 _b1_sees || fail "the standby does not see the change"
admin config get | grep -Eq '^policy.low_watermark_pct +75 +local$' ||
    fail "config get: $(admin config get)"
ok "80% in etcd, in n1's table at generation $(brain_generation), and on the standby"
A=("$MCOS_BIN/mcos-admin" --brain "${HB_HTTP[b2]}")
expect_fail 1 "mcos-admin: config set: key 'policy.high_watermark_pct': 150 is out of range (1 to 100) (HTTP 400)" \
    "${A[@]}" config set policy.high_watermark_pct 150
expect_fail 1 "mcos-admin: config set: key 'policy.high_watermark_pct': expected a non-negative integer, got \"lots\" (HTTP 400)" \
    "${A[@]}" config set policy.high_watermark_pct lots
expect_fail 1 "mcos-admin: policy.low_watermark_pct (85) must not exceed policy.high_watermark_pct (80) (HTTP 400)" \
    "${A[@]}" config set policy.low_watermark_pct 85
expect_fail 1 "mcos-admin: config key 'listen' cannot be changed on a running cluster (set it in the brain's config file); live keys are policy.*, routing.*, replication.*, placement.* and prefetch.* (HTTP 400)" \
    "${A[@]}" config set listen tcp://127.0.0.1:1
expect_fail 1 "mcos-admin: unknown config key 'nope' (HTTP 404)" \
    "${A[@]}" config get nope
expect_fail 1 "mcos-admin: unknown config key 'nope' (HTTP 404)" \
    "${A[@]}" config set nope 1
expect_fail 1 "mcos-admin: brain b1 is a standby; the leader is b2 (bus $(bus_of b2), HTTP ${HB_HTTP[b2]}) (HTTP 503)" \
    "$MCOS_BIN/mcos-admin" --brain "${HB_HTTP[b1]}" config set policy.low_watermark_pct 10
keys=$(etcdctl_on e1 get --prefix /mcos/config/ --keys-only | grep -c . || true)
((keys == 1)) || fail "refused changes were written: $(etcdctl_on e1 get --prefix /mcos/config/)"
[[ $(admin config get policy.low_watermark_pct) == "policy.low_watermark_pct = 75 (local)" ]] ||
    fail "low watermark changed: $(admin config get policy.low_watermark_pct)"
ok "every refusal exact; only the good key is in etcd"
# A bad value written around the brains' validation is ignored, loudly.
etcdctl_on e1 put /mcos/config/policy.high_watermark_pct banana >/dev/null
_ignored() {
    grep -q "etcd /mcos/config/policy.high_watermark_pct: key 'policy.high_watermark_pct': expected a non-negative integer, got \"banana\": ignored" \
        "$TEST_DIR/b2.log"
}
wait_for 5 _ignored || fail "b2 did not log the bad etcd value"
[[ $(admin config get policy.high_watermark_pct) == "policy.high_watermark_pct = 80 (etcd)" ]] ||
    fail "a bad etcd value changed the config: $(admin config get policy.high_watermark_pct)"
admin config set policy.high_watermark_pct 80 >/dev/null
ok "a bad value put straight into etcd is logged and ignored"

step "etcd killed and restarted under the running cluster"
G3=$(brain_generation)
etcd_kill9 e1
etcd_restart e1
_someone_leads() {
    leads b1 || leads b2
}
wait_for 15 _someone_leads || fail "no brain leads after the etcd restart"
LEADER=b2
leads b2 || LEADER=b1
synced_on "$LEADER" "$G3"
G4=$GEN
admin objects --node n1 | grep '^node n1: 33 objects$' >/dev/null || fail "objects lost"
agent_table_has n1 "tier/dram high=80%" || fail "the config was lost"
ok "$LEADER leads, generation $G3 -> $G4, objects and config intact"

step "a leader cut off from etcd steps down before anyone else leads"
if [[ $LEADER == b2 ]]; then
    # b1 must lead: its etcd traffic is the one the relay can cut.
    daemon_kill9 b2
    wait_for 15 leads b1 || fail "b1 never took over"
    start_ha_brain b2 "$EP"
    wait_for 10 stands_by_for b2 b1 || fail "b2: $(status_of b2 .)"
fi
use_brain b1
wait_for 10 nodes_alive 3 ||
    fail "agents not on b1; not alive there: $(not_alive "${AGENTS[@]}")"
cut_relay
t0=$(now_ms)
t_down=0 t_up=0
while (($(now_ms) - t0 < 15000)); do
    c1=$(http_code b1) c2=$(http_code b2)
    now=$(($(now_ms) - t0))
    [[ $c1 == 200 && $c2 == 200 ]] && fail "both brains answer as leaders at +$now ms"
    ((t_down == 0)) && [[ $c1 != 200 ]] && t_down=$now
    ((t_up == 0)) && [[ $c2 == 200 ]] && t_up=$now
    ((t_down && t_up)) && break
    sleep 0.02
done
((t_down && t_up)) || fail "b1 down at $t_down ms, b2 up at $t_up ms (0: never)"
# The order, to the millisecond, from the brains' own logs (the polls
# above can be slow on a loaded machine).
down=$(log_ms "$TEST_DIR/b1.log" 'stepping down: lease [0-9a-f]* not renewed for longer than its TTL less 500 ms: presumed lost') ||
    fail "b1's log does not say why it stepped down"
up=$(log_ms "$TEST_DIR/b2.log" 'elected leader') || fail "b2 never logged its election"
((down < up)) || fail "b2 was elected $((down - up)) ms before b1 stepped down"
ok "b1 stepped down $((up - down)) ms before b2 was elected (+$((down - t0)) ms and +$((up - t0)) ms after the cut; lease TTL ${TTL} s)"
synced_on b2 "$G4"
G5=$GEN
start_relay
wait_for 10 stands_by_for b1 b2 || fail "b1 after the relay is back: $(status_of b1 .)"
ok "generation $G4 -> $G5 on b2; b1 back as a standby"

step "a leader stopped cleanly hands over at once: it revokes its lease"
t0=$(now_ms)
daemon_stop b2
wait_for 10 leads b1 || fail "b1 never led after b2 stopped"
took=$(($(now_ms) - t0))
((took < TTL * 1000)) || fail "b1 led $took ms after b2's SIGTERM: b2's lease was not revoked"
grep -q 'lease [0-9a-f]* revoked: the leader key is free' "$TEST_DIR/b2.log" ||
    fail "b2 did not log giving its lease back"
synced_on b1 "$G5"
ok "b1 leads ${took} ms after b2's SIGTERM (under the ${TTL} s TTL); generation $G5 -> $GEN"

step "an agent whose only brain is gone for good tries the leader it was sent to"
# n3 knows only b2 (no etcd), and b2 is gone; b2 sent it to b1 when the
# agents started, which n3 remembers.
use_brain b1
wait_for 15 nodes_alive 3 ||
    fail "agents not on b1 after b2 left; not alive there: $(not_alive "${AGENTS[@]}")"
grep -q "no brain of the list answers; trying $(bus_of b1), the leader a brain named last" \
    "$TEST_DIR/n3.log" || fail "n3 did not say why it tried b1"
ok "n3 joined b1 without b2: $(grep -c "following the brain at $(bus_of b1)" "$TEST_DIR/n3.log") switch(es) to b1 in its log"

step "shutdown"
for name in "${AGENTS[@]}" b1; do
    daemon_stop "$name"
done
cut_relay
etcd_stop_all
finish
