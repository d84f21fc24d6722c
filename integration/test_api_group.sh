#!/usr/bin/env bash
#
# integration/test_api_group.sh: applications that do not run as the
# agent's user.  With --api-group G the agent makes its local API socket
# and its DRAM arena mode 0660 in group G, so a client process of another
# user in G connects, stores, reads and drops objects, and one outside G
# is refused.  A group that does not exist, the root group and a bad
# number are configuration errors (exit 2, one exact line).
#
# Needs root (to run the client as another user, with setpriv).

set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

test_init api_group
((EUID == 0)) || skip "needs root to run a client as another user"
command -v setpriv >/dev/null || skip "setpriv not installed (Debian: util-linux)"

G=4242           # a group number no entry in /etc/group needs to have
NOBODY=65534     # the client's user and primary group

step "bad groups: exit 2, one exact line"
A=("$MCOS_BIN/mcos-agent" --node n9 --brain tcp://127.0.0.1:1)
expect_fail 2 "mcos-agent: api_group: no group named 'no-such-group' (give a name from /etc/group or a number)" \
    "${A[@]}" --api-group no-such-group
expect_fail 2 "mcos-agent: api_group: not the root group; name the group the applications run in" \
    "${A[@]}" --api-group root
expect_fail 2 "mcos-agent: api_group: bad group number '12x'" \
    "${A[@]}" --api-group 12x

step "an agent with --api-group $G"
# The client runs as nobody: let it reach the socket in the test dir.
chmod 0711 "$TEST_DIR"
start_brain
start_agent n1 --api-group "$G"
wait_for 15 nodes_alive 1 || fail "n1 never alive"
sock=$TEST_DIR/n1.api.sock
[[ $(stat -c '%a %g' "$sock") == "660 $G" ]] ||
    fail "the API socket is $(stat -c '%a %g' "$sock"), want 660 $G"
arena=/dev/shm/mcos-it$$-n1
[[ $(stat -c '%a %g' "$arena") == "660 $G" ]] ||
    fail "the arena is $(stat -c '%a %g' "$arena"), want 660 $G"
ok "socket and arena: mode 660, group $G"

step "a client of another user in the group works; one outside it is refused"
setpriv --reuid="$NOBODY" --regid="$NOBODY" --groups="$G" \
    "$MCOS_BIN/libmcos_worker" "ipc://$sock" many 0 ||
    fail "nobody in group $G could not store and read objects"
ok "nobody in group $G stored, read back and dropped 50 objects"
rc=0
setpriv --reuid="$NOBODY" --regid="$NOBODY" --clear-groups \
    "$MCOS_BIN/libmcos_worker" "ipc://$sock" many 1 2>/dev/null || rc=$?
((rc == 2)) || fail "nobody outside group $G: exit $rc, want 2 (cannot connect)"
ok "nobody outside group $G cannot connect"

finish
