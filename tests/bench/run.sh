#!/usr/bin/env bash
# tests/bench/run.sh -- kumod's benchmarks against Postfix on the same machine
# in the same run (loopback only; everything it starts is stopped on exit).
#
#   injection  smtp-source -> kumod, N messages of SIZE bytes over SESSIONS
#              sessions (one connection per message), via
#              ../shared/bench/relay-throughput.sh with EXPECT=0: bench.test
#              has no route (bench-policy.lua), so only the accept rate counts.
#   relay      smtp-source -> kumod -> smtp-sink on SINK_PORT
#              (bench-relay-policy.lua), accept and end-to-end rates.
#   postfix    ../shared/bench/postfix-baseline.sh default N SIZE SESSIONS 1:
#              a stock Postfix relaying the same traffic to the same sink; its
#              accept rate is the injection baseline, both rates the relay one.
#   memory     (MEM=1) VmRSS of kumod after injecting MEM_N messages of
#              MEM_SIZE bytes for the unroutable bench.test.
#   cluster    (BENCHES=cluster) tests/bench/cluster.sh: relay throughput of
#              a 3-node cluster against a single node, same tools; its own
#              summary line `BENCH cluster ...` (CLUSTER_N messages, default 6000).
#   dkim       (BENCHES=dkim) tests/bench/dkim.sh: the relay benchmark unsigned,
#              RSA-2048 signed and Ed25519 signed in one run; its own summary
#              line `BENCH dkim ...` (DKIM_N messages, default N).
# Summary lines (last):
#   BENCH injection n=.. size=.. sessions=.. kumod_accept_mps=.. postfix_accept_mps=.. ratio=..
#   BENCH relay n=.. size=.. sessions=.. kumod_accept_mps=.. kumod_e2e_mps=.. postfix_accept_mps=.. postfix_e2e_mps=.. accept_ratio=.. e2e_ratio=..
#   BENCH memory queued=.. size=.. rss_kib=..
#
# Environment: SHARED_BENCH (default ../shared/bench), KUMOD_BIN (default
# build-release/bin/kumod), N=20000, SIZE=4096, SESSIONS=20, PORT=2525,
# SINK_PORT=30025, BENCHES="injection relay" (any of injection, relay, cluster), POSTFIX=1 (0
# skips the baseline; it needs root), MEM=0 (1 adds the memory benchmark),
# MEM_N=100000, MEM_SIZE=1024, KEEP=0 (1 keeps the run dirs under var/).
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# ../shared beside the repo; from a git worktree, beside the main checkout
shared=""
common=$(git -C "$repo" rev-parse --path-format=absolute --git-common-dir 2>/dev/null)
for d in ${SHARED_BENCH:-} "$repo/../shared/bench" ${common:+"$common/../../shared/bench"}; do
  [ -x "$d/relay-throughput.sh" ] && { shared=$(cd "$d" && pwd); break; }
done
[ -n "$shared" ] || { echo "bench: $repo/../shared/bench not found (set SHARED_BENCH)" >&2; exit 1; }
KUMOD_BIN=${KUMOD_BIN:-$repo/build-release/bin/kumod}
N=${N:-20000} SIZE=${SIZE:-4096} SESSIONS=${SESSIONS:-20}
PORT=${PORT:-2525} SINK_PORT=${SINK_PORT:-30025} POSTFIX=${POSTFIX:-1}
BENCHES=${BENCHES:-injection relay}
MEM=${MEM:-0} MEM_N=${MEM_N:-100000} MEM_SIZE=${MEM_SIZE:-1024}
export PATH=$PATH:/usr/sbin:/sbin

[ -x "$KUMOD_BIN" ] || { echo "bench: no kumod at $KUMOD_BIN (make release)" >&2; exit 1; }
port_listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
for p in "$PORT" "$SINK_PORT"; do
  port_listening "$p" && { echo "bench: port $p is busy" >&2; exit 1; }
done
want() { case " $BENCHES " in *" $1 "*) return 0;; *) return 1;; esac; }

mkdir -p "$repo/var"
RUNS=()
KPID="" KRC=""
stop_kumod() {
  [ -n "$KPID" ] || return 0
  if kill -0 "$KPID" 2>/dev/null; then
    kill -TERM "$KPID" 2>/dev/null
    for _ in $(seq 600); do kill -0 "$KPID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$KPID" 2>/dev/null && { echo "bench: kumod ignored SIGTERM, killing" >&2; kill -KILL "$KPID"; }
  fi
  wait "$KPID" 2>/dev/null; KRC=$?
  KPID=""
  return 0
}
cleanup() {
  stop_kumod
  for r in "${RUNS[@]}"; do
    if [ "${KEEP:-0}" = 1 ]; then echo "bench: kept $r" >&2; else rm -rf "$r"; fi
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_kumod POLICY_FILE: a fresh run dir in $RUN, kumod in $KPID
start_kumod() {
  RUN=$(mktemp -d "$repo/var/bench.XXXXXX")
  RUNS+=("$RUN")
  sed -e "s|@DIR@|$RUN|g" -e "s|@PORT@|$PORT|g" -e "s|@SINK_PORT@|$SINK_PORT|g" \
    "$here/$1" >"$RUN/policy.lua"
  local user_args=(); [ "$(id -u)" = 0 ] && user_args=(--user root)
  echo "# kumod: $KUMOD_BIN ($("$KUMOD_BIN" --version 2>&1 | head -n 1)) policy $1 run dir $RUN"
  (cd "$RUN" && exec "$KUMOD_BIN" --policy "$RUN/policy.lua" "${user_args[@]}") >"$RUN/kumod.log" 2>&1 &
  KPID=$!
  for _ in $(seq 600); do
    grep -q 'initialization complete' "$RUN/kumod.log" && break
    kill -0 "$KPID" 2>/dev/null || break
    sleep 0.1
  done
  if ! grep -q 'initialization complete' "$RUN/kumod.log"; then
    echo "bench: kumod did not start:" >&2; tail -n 20 "$RUN/kumod.log" >&2; exit 1
  fi
}

# count_records TYPE: records of that type in the closed segments of $RUN
count_records() {
  find "$RUN/logs" -type f ! -perm /222 2>/dev/null | sort | xargs -r zstdcat 2>/dev/null \
    | grep -c "\"type\": *\"$1\""
}

# stop_and_check TYPE EXPECTED: stop kumod, compare the count of TYPE records
stop_and_check() {
  KRC=""
  stop_kumod
  [ "$KRC" = 0 ] || echo "bench: kumod exited $KRC on SIGTERM" >&2
  local got; got=$(count_records "$1")
  echo "# kumod logged $got $1 records for $2 messages"
  [ "$got" = "$2" ] || echo "bench: WARNING: $got $1 records, expected $2" >&2
}

result() { sed -n "s/^RESULT .* $2=\([0-9]*\).*/\1/p" "$1" | tail -n 1; }
ratio() { awk -v k="${1:-0}" -v p="${2:-0}" 'BEGIN{ if (k > 0 && p > 0) printf "%.2f", k/p; else print "n/a" }'; }

# --- kumod: injection -----------------------------------------------------------
KI_ACC=""
if want injection; then
  start_kumod bench-policy.lua
  EXPECT=0 "$shared/relay-throughput.sh" "$PORT" "$SINK_PORT" "$N" "$SIZE" "$SESSIONS" | tee "$RUN/kumod.out"
  RC=${PIPESTATUS[0]}
  KI_ACC=$(result "$RUN/kumod.out" accept_mps)
  [ "$RC" = 0 ] || { echo "bench: kumod injection run failed (rc=$RC)" >&2; KI_ACC=""; }
  stop_and_check Reception "$N"
fi

# --- kumod: relay -----------------------------------------------------------------
KR_ACC="" KR_E2E=""
if want relay; then
  start_kumod bench-relay-policy.lua
  "$shared/relay-throughput.sh" "$PORT" "$SINK_PORT" "$N" "$SIZE" "$SESSIONS" | tee "$RUN/kumod.out"
  RC=${PIPESTATUS[0]}
  KR_ACC=$(result "$RUN/kumod.out" accept_mps)
  KR_E2E=$(result "$RUN/kumod.out" e2e_mps)
  # rc 3: the generator finished but the sink never counted N (keep accept)
  case $RC in
    0) ;;
    3) echo "bench: kumod relay delivered fewer than $N" >&2; KR_E2E="" ;;
    *) echo "bench: kumod relay run failed (rc=$RC)" >&2; KR_ACC=""; KR_E2E="" ;;
  esac
  stop_and_check Delivery "$N"
fi

# --- postfix ------------------------------------------------------------------------
P_ACC="" P_E2E=""
if [ "$POSTFIX" = 1 ] && { want injection || want relay; }; then
  if [ "$(id -u)" = 0 ]; then
    PF_OUT=$(mktemp "$repo/var/bench-postfix.XXXXXX"); RUNS+=("$PF_OUT")
    PF_PORT=$PORT SINK_PORT=$SINK_PORT "$shared/postfix-baseline.sh" default "$N" "$SIZE" "$SESSIONS" 1 \
      | tee "$PF_OUT"
    P_ACC=$(result "$PF_OUT" accept_mps)
    P_E2E=$(result "$PF_OUT" e2e_mps)
  else
    echo "bench: the Postfix baseline needs root; skipped" >&2
  fi
fi

# --- kumod: memory with MEM_N queued messages ------------------------------------------
RSS=""
if [ "$MEM" = 1 ]; then
  start_kumod bench-policy.lua
  REUSE=1 EXPECT=0 "$shared/relay-throughput.sh" "$PORT" "$SINK_PORT" "$MEM_N" "$MEM_SIZE" "$SESSIONS" \
    | tee "$RUN/kumod.out"
  RC=${PIPESTATUS[0]}
  sleep 3  # let the spool writes and the first (failing) MX lookups settle
  if [ "$RC" = 0 ] && kill -0 "$KPID" 2>/dev/null; then
    RSS=$(awk '/^VmRSS:/ {print $2}' "/proc/$KPID/status")
  else
    echo "bench: kumod memory run failed (rc=$RC)" >&2
  fi
  stop_and_check Reception "$MEM_N"
fi

# --- kumod: 3-node cluster against one node --------------------------------------------
CL_OK=1
if want cluster; then
  stop_kumod
  N=${CLUSTER_N:-6000} PORT=$PORT SINK_PORT=$SINK_PORT KUMOD_BIN=$KUMOD_BIN "$here/cluster.sh" || CL_OK=0
fi

# --- kumod: relay with DKIM signing against unsigned -----------------------------------
DK_OK=1
if want dkim; then
  stop_kumod
  N=${DKIM_N:-$N} SIZE=$SIZE SESSIONS=$SESSIONS PORT=$PORT SINK_PORT=$SINK_PORT \
    KUMOD_BIN=$KUMOD_BIN "$here/dkim.sh" || DK_OK=0
fi

# --- summary --------------------------------------------------------------------------
if want injection; then
  echo "BENCH injection n=$N size=$SIZE sessions=$SESSIONS kumod_accept_mps=${KI_ACC:-n/a}" \
       "postfix_accept_mps=${P_ACC:-n/a} ratio=$(ratio "$KI_ACC" "$P_ACC")"
fi
if want relay; then
  echo "BENCH relay n=$N size=$SIZE sessions=$SESSIONS kumod_accept_mps=${KR_ACC:-n/a}" \
       "kumod_e2e_mps=${KR_E2E:-n/a} postfix_accept_mps=${P_ACC:-n/a} postfix_e2e_mps=${P_E2E:-n/a}" \
       "accept_ratio=$(ratio "$KR_ACC" "$P_ACC") e2e_ratio=$(ratio "$KR_E2E" "$P_E2E")"
fi
if [ "$MEM" = 1 ]; then
  echo "BENCH memory queued=$MEM_N size=$MEM_SIZE rss_kib=${RSS:-n/a}"
fi
ok=1
want injection && [ -z "$KI_ACC" ] && ok=0
want relay && [ -z "$KR_E2E" ] && ok=0
[ "$MEM" = 1 ] && [ -z "$RSS" ] && ok=0
[ "$CL_OK" = 1 ] || ok=0
[ "$DK_OK" = 1 ] || ok=0
[ "$ok" = 1 ]
