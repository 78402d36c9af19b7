#!/usr/bin/env bash
# tests/bench/cluster.sh -- relay throughput of a 3-node kumod cluster against a
# single kumod, on this machine, in the same run (loopback only; everything it
# starts is stopped on exit). `make bench BENCHES=cluster` runs it through
# run.sh; it also runs on its own.
#
# Both cases use the relay bench's tools (smtp-source in, one smtp-sink out)
# and its formulas (../shared/bench/relay-throughput.sh):
#   single   one kumod (no configure_cluster); G generators against it
#   cluster  three kumod nodes (configure_cluster, raft + NNG link on
#            loopback); G generators spread round-robin over the nodes
#   cluster_tls  the same three nodes with tls = { ca, cert, key } (mutual
#            TLS on raft and link; a CA and node certificates are made with
#            openssl in a run dir), unless TLS=0
# Generator g sends N/G messages to bench@bench<g>.test, so the traffic covers
# G routing domains (G shards, spread over owners); every *.test domain is
# relayed to the sink by mx_list. accept = N / time until the last generator
# quit; e2e = N / time until the sink counted N (both from the same t0).
# Summary line (last):
#   BENCH cluster n=.. size=.. sessions=.. single_accept_mps=.. single_e2e_mps=..
#         cluster_accept_mps=.. cluster_e2e_mps=.. cluster_delivered=.. accept_ratio=.. e2e_ratio=..
#         tls_accept_mps=.. tls_e2e_mps=.. tls_accept_ratio=.. tls_e2e_ratio=..
#   (tls_*_ratio: the TLS cluster over the plaintext cluster)
#
# Environment: KUMOD_BIN (default build-release/bin/kumod), N=6000, SIZE=4096,
# SESSIONS=21 (split over the generators), GENS=3, PORT=2525 (nodes: PORT,
# PORT+1, PORT+2), SINK_PORT=30025, RAFT_BASE=37110, LINK_BASE=37120,
# HTTP_BASE=38010, TLS=1, TIMEOUT=300, STALL=30 (stop waiting for the sink when its
# count has not moved for that long), KEEP=0 (1 keeps the run dirs).
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
KUMOD_BIN=${KUMOD_BIN:-$repo/build-release/bin/kumod}
N=${N:-6000} SIZE=${SIZE:-4096} SESSIONS=${SESSIONS:-21} GENS=${GENS:-3}
PORT=${PORT:-2525} SINK_PORT=${SINK_PORT:-30025}
RAFT_BASE=${RAFT_BASE:-37110} LINK_BASE=${LINK_BASE:-37120} HTTP_BASE=${HTTP_BASE:-38010}
TIMEOUT=${TIMEOUT:-300} STALL=${STALL:-30} TLS=${TLS:-1}
export PATH=$PATH:/usr/sbin:/sbin

[ -x "$KUMOD_BIN" ] || { echo "cluster bench: no kumod at $KUMOD_BIN (make release)" >&2; exit 1; }
for tool in smtp-sink smtp-source; do
  command -v "$tool" >/dev/null || { echo "cluster bench: $tool not found (postfix package)" >&2; exit 1; }
done
port_listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
for p in "$SINK_PORT" "$PORT" $((PORT + 1)) $((PORT + 2)) \
         $((RAFT_BASE)) $((RAFT_BASE + 1)) $((RAFT_BASE + 2)) \
         $((LINK_BASE)) $((LINK_BASE + 1)) $((LINK_BASE + 2)) \
         $((HTTP_BASE)) $((HTTP_BASE + 1)) $((HTTP_BASE + 2)); do
  port_listening "$p" && { echo "cluster bench: port $p is busy" >&2; exit 1; }
done

mkdir -p "$repo/var"
RUNS=() PIDS=() SINK_PID=""
stop_pid() {  # stop_pid PID: SIGTERM, wait up to 60 s, then SIGKILL
  local pid=$1
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { echo "cluster bench: pid $pid ignored SIGTERM, killing" >&2; kill -KILL "$pid"; }
  wait "$pid" 2>/dev/null
  return 0
}
stop_all() {
  local p
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  PIDS=()
  [ -n "$SINK_PID" ] && stop_pid "$SINK_PID"
  SINK_PID=""
}
cleanup() {
  stop_all
  for r in "${RUNS[@]}"; do
    if [ "${KEEP:-0}" = 1 ]; then echo "cluster bench: kept $r" >&2; else rm -rf "$r"; fi
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# policy DIR SMTP_PORT HTTP_PORT CLUSTER_LUA: a relay policy like
# bench-relay-policy.lua, for every *.test domain, plus CLUSTER_LUA in init
policy() {
  cat <<EOF
local kumo = require 'kumo'
kumo.on('init', function()
  kumo.dns.configure_resolver { name_servers = { '127.0.0.1:9' } }
  kumo.define_spool { name = 'data', path = '$1/data', kind = 'RocksDB' }
  kumo.define_spool { name = 'meta', path = '$1/meta', kind = 'RocksDB' }
  kumo.configure_local_logs { log_dir = '$1/logs', max_segment_duration = '10s' }
  kumo.start_esmtp_listener {
    listen = '127.0.0.1:$2', hostname = 'bench-kumod.test',
    relay_hosts = { '127.0.0.1' }, max_connections = 1024,
  }
  kumo.start_http_listener { listen = '127.0.0.1:$3' }
$4
end)
kumo.on('get_listener_domain', function(domain, listener, conn_meta)
  if domain:match('%.test\$') then
    return kumo.make_listener_domain { relay_to = true }
  end
end)
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {
    retry_interval = '10s', max_retry_interval = '1m',
    protocol = { smtp = { mx_list = { '127.0.0.1:$SINK_PORT' } } },
  }
end)
kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path {
    prohibited_hosts = {}, enable_tls = 'Disabled', connection_limit = 32,
    max_deliveries_per_connection = 1024, idle_timeout = '5s',
  }
end)
EOF
}

PKI=""
make_pki() {  # a CA and node-1..3 certificates in $PKI (docs/cluster.md)
  PKI=$(mktemp -d "$repo/var/bench-pki.XXXXXX"); RUNS+=("$PKI")
  (cd "$PKI" &&
   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
     -keyout ca.key -out ca.crt -days 2 -subj /CN=bench-ca &&
   for i in 1 2 3; do
     openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
       -keyout node-$i.key -out node-$i.csr -subj /CN=node-$i &&
     printf 'subjectAltName=DNS:node-%s\n' "$i" >node-$i.ext &&
     openssl x509 -req -in node-$i.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
       -days 2 -extfile node-$i.ext -out node-$i.crt || exit 1
   done) >/dev/null 2>&1 || { echo "cluster bench: openssl failed" >&2; exit 1; }
}

cluster_lua() {  # cluster_lua NODE_ID [tls]
  local peers="" i tls=""
  [ "${2:-}" = tls ] && tls="tls = { ca = '$PKI/ca.crt', cert = '$PKI/node-$1.crt', key = '$PKI/node-$1.key' },"
  for i in 0 1 2; do
    peers+="{ id = $((i + 1)), raft = '127.0.0.1:$((RAFT_BASE + i))', link = 'tcp://127.0.0.1:$((LINK_BASE + i))' }, "
  done
  cat <<EOF
  kumo.configure_cluster {
    node_id = $1, cluster_id = 'bench',
    raft_listen = '127.0.0.1:$((RAFT_BASE + $1 - 1))',
    link_listen = 'tcp://127.0.0.1:$((LINK_BASE + $1 - 1))',
    peers = { $peers},
    bootstrap = true, $tls
  }
EOF
}

# start_node NAME SMTP_PORT HTTP_PORT CLUSTER_LUA: kumod in a fresh run dir
start_node() {
  local run; run=$(mktemp -d "$repo/var/bench-$1.XXXXXX")
  RUNS+=("$run")
  policy "$run" "$2" "$3" "$4" >"$run/policy.lua"
  local user_args=(); [ "$(id -u)" = 0 ] && user_args=(--user root)
  (cd "$run" && exec "$KUMOD_BIN" --policy "$run/policy.lua" "${user_args[@]}") >"$run/kumod.log" 2>&1 &
  PIDS+=($!)
  LAST_RUN=$run
}

wait_ready() {  # wait_ready RUN_DIR...
  local r
  for r in "$@"; do
    for _ in $(seq 600); do grep -q 'initialization complete' "$r/kumod.log" && break; sleep 0.1; done
    grep -q 'initialization complete' "$r/kumod.log" \
      || { echo "cluster bench: kumod in $r did not start:" >&2; tail -n 20 "$r/kumod.log" >&2; exit 1; }
  done
}

WORK=""
start_sink() {
  WORK=$(mktemp -d "$repo/var/bench-sink.XXXXXX"); RUNS+=("$WORK")
  local args=(-c -m 1024); [ "$(id -u)" = 0 ] && args+=(-u nobody)
  smtp-sink "${args[@]}" "127.0.0.1:$SINK_PORT" 1024 >"$WORK/sink.out" 2>"$WORK/sink.err" &
  SINK_PID=$!
  for _ in $(seq 100); do port_listening "$SINK_PORT" && break; sleep 0.05; done
  port_listening "$SINK_PORT" || { echo "cluster bench: smtp-sink did not start" >&2; exit 1; }
}
sink_count() {
  local c
  c=$(tail -c 256 "$WORK/sink.out" 2>/dev/null | tr '\r' '\n' | grep -o 'mesg=[0-9]*' | tail -n 1)
  echo "${c#mesg=}" | sed 's/^$/0/'
}

# measure LABEL PORT...: GENS generators spread over the ports; prints the
# figures and sets ACC, E2E, GOT
now() { date +%s.%N; }
measure() {
  local label=$1; shift
  local ports=("$@") g pids=() per=$((N / GENS)) sess=$(( (SESSIONS + GENS - 1) / GENS ))
  local t0 t1 t2 rc=0
  t0=$(now)
  for g in $(seq 0 $((GENS - 1))); do
    local p=${ports[$((g % ${#ports[@]}))]}
    smtp-source -s "$sess" -m "$per" -l "$SIZE" -f sender@bench.test -t "bench@bench$g.test" \
      -M bench-gen.invalid "127.0.0.1:$p" >"$WORK/src$g.out" 2>"$WORK/src$g.err" &
    pids+=($!)
  done
  for g in "${pids[@]}"; do wait "$g" || rc=$?; done
  t1=$(now)
  [ "$rc" = 0 ] || echo "cluster bench: a generator exited $rc" >&2
  local total=$((per * GENS)) last=-1 moved deadline
  moved=$(date +%s); deadline=$(( $(date +%s) + TIMEOUT ))
  GOT=$(sink_count)
  while [ "$GOT" -lt "$total" ]; do
    [ "$(date +%s)" -ge "$deadline" ] && break
    if [ "$GOT" != "$last" ]; then last=$GOT; moved=$(date +%s)
    elif [ $(( $(date +%s) - moved )) -ge "$STALL" ]; then break; fi
    sleep 0.05
    GOT=$(sink_count)
  done
  t2=$(now)
  read -r ACC E2E < <(awk -v n="$total" -v got="$GOT" -v t0="$t0" -v t1="$t1" -v t2="$t2" \
    'BEGIN{ printf "%.0f %.0f\n", n/(t1-t0), (got>=n ? n/(t2-t0) : 0) }')
  [ "$rc" = 0 ] || ACC=""
  [ "$GOT" -ge "$total" ] || { echo "cluster bench: $label: the sink counted $GOT of $total" >&2; E2E=""; }
  echo "RESULT $label n=$total size=$SIZE sessions=$SESSIONS gens=$GENS accept_mps=${ACC:-n/a} e2e_mps=${E2E:-n/a} sink_count=$GOT"
}

ratio() { awk -v k="${1:-0}" -v p="${2:-0}" 'BEGIN{ if (k > 0 && p > 0) printf "%.2f", k/p; else print "n/a" }'; }

# --- single node ---------------------------------------------------------------
start_sink
start_node single "$PORT" "$HTTP_BASE" ""
wait_ready "$LAST_RUN"
echo "# single kumod: $KUMOD_BIN ($("$KUMOD_BIN" --version 2>&1 | head -n 1)) run dir $LAST_RUN"
measure single "$PORT"
S_ACC=$ACC S_E2E=$E2E
stop_all

# --- three nodes ----------------------------------------------------------------
run_cluster() {  # run_cluster LABEL [tls]
  start_sink
  local runs=() i
  for i in 1 2 3; do
    start_node "node$i" $((PORT + i - 1)) $((HTTP_BASE + i - 1)) "$(cluster_lua "$i" "${2:-}")"
    runs+=("$LAST_RUN")
  done
  wait_ready "${runs[@]}"
  echo "# $1: 3 nodes, run dirs ${runs[*]}"
  curl -s "http://127.0.0.1:$HTTP_BASE/api/admin/cluster/status/v1" | head -c 400; echo
  measure "$1" "$PORT" $((PORT + 1)) $((PORT + 2))
  stop_all
}
run_cluster cluster
C_ACC=$ACC C_E2E=$E2E C_GOT=$GOT
T_ACC="" T_E2E=""
if [ "$TLS" = 1 ]; then
  make_pki
  run_cluster cluster_tls tls
  T_ACC=$ACC T_E2E=$E2E
fi

echo "BENCH cluster n=$N size=$SIZE sessions=$SESSIONS single_accept_mps=${S_ACC:-n/a}" \
     "single_e2e_mps=${S_E2E:-n/a} cluster_accept_mps=${C_ACC:-n/a} cluster_e2e_mps=${C_E2E:-n/a}" \
     "cluster_delivered=$C_GOT accept_ratio=$(ratio "$C_ACC" "$S_ACC") e2e_ratio=$(ratio "$C_E2E" "$S_E2E")" \
     "tls_accept_mps=${T_ACC:-n/a} tls_e2e_mps=${T_E2E:-n/a}" \
     "tls_accept_ratio=$(ratio "$T_ACC" "$C_ACC") tls_e2e_ratio=$(ratio "$T_E2E" "$C_E2E")"
[ -n "$S_E2E" ] && [ -n "$C_E2E" ] && { [ "$TLS" != 1 ] || [ -n "$T_E2E" ]; }
