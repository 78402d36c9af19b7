#!/usr/bin/env bash
# tests/bench/run.sh -- injection benchmark: how fast kumod accepts mail into
# its durable spool, against Postfix on the same machine in the same run.
#
# Postfix's smtp-source sends N messages of SIZE bytes over SESSIONS parallel
# sessions (one connection per message) to kumod on 127.0.0.1:PORT, through
# ../shared/bench/relay-throughput.sh with EXPECT=0 (kumod does not deliver
# yet, so only the accept rate counts). Then ../shared/bench/postfix-baseline.sh
# measures a stock Postfix the same way. The last line is the summary:
#   BENCH injection n=.. size=.. sessions=.. kumod_accept_mps=.. postfix_accept_mps=.. ratio=..
#
# Environment: SHARED_BENCH (default ../shared/bench), KUMOD_BIN (default build-release/bin/kumod), N=20000,
# SIZE=4096, SESSIONS=20, PORT=2525, SINK_PORT=30025, POSTFIX=1 (0 skips
# the baseline; it needs root), KEEP=0 (1 keeps the run dir under var/).
# Loopback only; everything it starts is stopped on exit.
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
export PATH=$PATH:/usr/sbin:/sbin

[ -x "$KUMOD_BIN" ] || { echo "bench: no kumod at $KUMOD_BIN (make release)" >&2; exit 1; }
port_listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
for p in "$PORT" "$SINK_PORT"; do
  port_listening "$p" && { echo "bench: port $p is busy" >&2; exit 1; }
done

mkdir -p "$repo/var"
RUN=$(mktemp -d "$repo/var/bench.XXXXXX")
KPID=""
stop_kumod() {
  [ -n "$KPID" ] || return 0
  if kill -0 "$KPID" 2>/dev/null; then
    kill -TERM "$KPID" 2>/dev/null
    for _ in $(seq 300); do kill -0 "$KPID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$KPID" 2>/dev/null && { echo "bench: kumod ignored SIGTERM, killing" >&2; kill -KILL "$KPID"; }
  fi
  wait "$KPID" 2>/dev/null; KRC=$?
  KPID=""
  return 0
}
cleanup() {
  stop_kumod
  if [ "${KEEP:-0}" = 1 ]; then echo "bench: kept $RUN" >&2; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- kumod --------------------------------------------------------------------
sed -e "s|@DIR@|$RUN|g" -e "s|@PORT@|$PORT|g" "$here/bench-policy.lua" >"$RUN/policy.lua"
USER_ARGS=(); [ "$(id -u)" = 0 ] && USER_ARGS=(--user root)
echo "# kumod: $KUMOD_BIN ($("$KUMOD_BIN" --version 2>&1 | head -n 1)) run dir $RUN"
(cd "$RUN" && exec "$KUMOD_BIN" --policy "$RUN/policy.lua" "${USER_ARGS[@]}") >"$RUN/kumod.log" 2>&1 &
KPID=$!
for _ in $(seq 600); do
  grep -q 'initialization complete' "$RUN/kumod.log" && break
  kill -0 "$KPID" 2>/dev/null || break
  sleep 0.1
done
if ! grep -q 'initialization complete' "$RUN/kumod.log"; then
  echo "bench: kumod did not start:" >&2; tail -n 20 "$RUN/kumod.log" >&2; exit 1
fi

EXPECT=0 "$shared/relay-throughput.sh" "$PORT" "$SINK_PORT" "$N" "$SIZE" "$SESSIONS" | tee "$RUN/kumod.out"
RC=${PIPESTATUS[0]}
KMPS=$(sed -n 's/^RESULT .* accept_mps=\([0-9]*\).*/\1/p' "$RUN/kumod.out" | tail -n 1)
[ "$RC" = 0 ] || { echo "bench: kumod run failed (rc=$RC)" >&2; KMPS=""; }

KRC=""
stop_kumod
[ "$KRC" = 0 ] || echo "bench: kumod exited $KRC on SIGTERM" >&2
# sanity: every accepted message has its Reception record
RECEIVED=$(find "$RUN/logs" -type f ! -perm /222 2>/dev/null | sort | xargs -r zstdcat 2>/dev/null \
           | grep -c '"type": *"Reception"')
echo "# kumod logged $RECEIVED Reception records for $N messages"
[ "$RECEIVED" = "$N" ] || echo "bench: WARNING: $RECEIVED Reception records, expected $N" >&2

# --- postfix ------------------------------------------------------------------
PMPS=""
if [ "$POSTFIX" = 1 ]; then
  if [ "$(id -u)" = 0 ]; then
    PF_PORT=$PORT SINK_PORT=$SINK_PORT "$shared/postfix-baseline.sh" default "$N" "$SIZE" "$SESSIONS" 1 \
      | tee "$RUN/postfix.out"
    PMPS=$(sed -n 's/^RESULT .* accept_mps=\([0-9]*\).*/\1/p' "$RUN/postfix.out" | tail -n 1)
  else
    echo "bench: the Postfix baseline needs root; skipped" >&2
  fi
fi

RATIO=$(awk -v k="${KMPS:-0}" -v p="${PMPS:-0}" 'BEGIN{ if (k > 0 && p > 0) printf "%.2f", k/p; else print "n/a" }')
echo "BENCH injection n=$N size=$SIZE sessions=$SESSIONS kumod_accept_mps=${KMPS:-n/a} postfix_accept_mps=${PMPS:-n/a} ratio=$RATIO"
[ -n "$KMPS" ]
