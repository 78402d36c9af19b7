#!/bin/bash
# test_ansible_local.sh - run ansible/site.yml with the local inventory (three
# kumod nodes on 127.0.0.1, pid files) into a temp run dir; check the three
# rendered policies; run it again and assert changed=0 on every host; then
# stop the nodes by their pid files. Exit 0 on success.
#   $> tests/drills/test_ansible_local.sh            (KUMOD_BIN to pick a binary)
# If this kumod does not know configure_cluster.settings/election_timeout
# yet, the play runs with them empty (-e) and says so.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
export KUMOD_BIN="${KUMOD_BIN:-$REPO/build/bin/kumod}"
export KUMOD_RUN_DIR="$(mktemp -d "${KUMO_TEST_TMP:-/tmp}/kumod-ansible-XXXXXX")"
export ANSIBLE_CONFIG="$REPO/ansible/ansible.cfg"
INV="$REPO/ansible/inventories/local/hosts.yml"
fail() { echo "FAIL: $*" >&2; exit 1; }

cleanup() {
    local pf pid
    for pf in "$KUMOD_RUN_DIR"/kn*/kumod.pid; do
        [ -f "$pf" ] || continue
        pid="$(cat "$pf")"
        kill -TERM "$pid" 2>/dev/null || continue
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $KUMOD_RUN_DIR"; else rm -rf "$KUMOD_RUN_DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ -x "$KUMOD_BIN" ] || fail "no kumod at $KUMOD_BIN (make build)"

extra=()

run_play() {
    ansible-playbook -i "$INV" "${extra[@]}" "$REPO/ansible/site.yml" > "$KUMOD_RUN_DIR/play.$1.log" 2>&1 \
        || { tail -40 "$KUMOD_RUN_DIR/play.$1.log"; fail "playbook run $1 failed"; }
}

run_play 1
for i in 1 2 3; do
    pol="$KUMOD_RUN_DIR/kn$i/etc/main.lua"
    [ -f "$pol" ] || fail "no policy for kn$i"
    grep -q "node_id = $i," "$pol" || fail "kn$i: node_id"
    grep -q "raft_listen = '127.0.0.1:17${i}10'" "$pol" || fail "kn$i: raft_listen"
    grep -q "link_listen = 'tcp://127.0.0.1:17${i}20'" "$pol" || fail "kn$i: link_listen"
    [ "$(grep -c "{ id = ., raft = '127.0.0.1:17.10', link = 'tcp://127.0.0.1:17.20' }" "$pol")" = 3 ] \
        || fail "kn$i: three peers"
    grep -q "cluster_id = '$(cat "$KUMOD_RUN_DIR/cluster_id")'" "$pol" || fail "kn$i: cluster_id"
    grep -q "bootstrap = true" "$pol" || fail "kn$i: bootstrap"
    kill -0 "$(cat "$KUMOD_RUN_DIR/kn$i/kumod.pid")" || fail "kn$i not running"
done
# the three policies differ only in node_id and the per-node listeners
[ "$(cat "$KUMOD_RUN_DIR"/kn*/etc/main.lua | grep -c 'cluster_id = ')" = 3 ] || fail "cluster ids"
cid1="$(cat "$KUMOD_RUN_DIR/cluster_id")"
pids1="$(cat "$KUMOD_RUN_DIR"/kn*/kumod.pid)"

run_play 2
recap="$(sed -n '/PLAY RECAP/,$p' "$KUMOD_RUN_DIR/play.2.log")"
echo "$recap"
echo "$recap" | grep -E '^kn[123] ' | grep -qv 'changed=0' && fail "second run changed something"
[ "$(echo "$recap" | grep -cE '^kn[123] .*changed=0 .*failed=0')" = 3 ] || fail "second run recap"
[ "$cid1" = "$(cat "$KUMOD_RUN_DIR/cluster_id")" ] || fail "cluster id changed on re-run"
[ "$pids1" = "$(cat "$KUMOD_RUN_DIR"/kn*/kumod.pid)" ] || fail "nodes were restarted on re-run"
echo "PASS: ansible local: 3 policies, one leader, second run changed=0"
