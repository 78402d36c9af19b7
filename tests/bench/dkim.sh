#!/usr/bin/env bash
# tests/bench/dkim.sh -- the cost of DKIM signing on the relay path, in one
# run: smtp-source -> kumod -> smtp-sink (../shared/bench/relay-throughput.sh,
# bench-relay-policy.lua) three times on the same machine: unsigned, every
# message signed with RSA-2048, every message signed with Ed25519 (a signer
# built per message, as policies usually do; the signer cache makes that
# cheap). Loopback only; every kumod it starts is stopped by its PID.
# Then, as root (POSTFIX=1, the default), the peer: a stock Postfix signing
# the same traffic with the same RSA key through the OpenDKIM milter
# (tests/bench/postfix-opendkim.sh).
# Summary line (last):
#   BENCH dkim n=.. size=.. sessions=.. unsigned_e2e_mps=.. rsa2048_e2e_mps=..
#     ed25519_e2e_mps=.. rsa2048_vs_unsigned=.. ed25519_vs_unsigned=..
#     rsa2048_sign_ms=.. ed25519_sign_ms=.. postfix_opendkim_e2e_mps=..
#     rsa2048_vs_postfix_opendkim=..
# (*_sign_ms: mean signing time per message on the pool, from /metrics.)
#
# Environment: SHARED_BENCH, KUMOD_BIN (default build-release/bin/kumod),
# N=20000, SIZE=4096, SESSIONS=20, PORT=2525, SINK_PORT=30025,
# HTTP_PORT=30080, MODES="unsigned rsa2048 ed25519", POSTFIX=1, KEEP=0.
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
shared=""
common=$(git -C "$repo" rev-parse --path-format=absolute --git-common-dir 2>/dev/null)
for d in ${SHARED_BENCH:-} "$repo/../shared/bench" ${common:+"$common/../../shared/bench"}; do
  [ -x "$d/relay-throughput.sh" ] && { shared=$(cd "$d" && pwd); break; }
done
[ -n "$shared" ] || { echo "bench: ../shared/bench not found (set SHARED_BENCH)" >&2; exit 1; }
KUMOD_BIN=${KUMOD_BIN:-$repo/build-release/bin/kumod}
N=${N:-20000} SIZE=${SIZE:-4096} SESSIONS=${SESSIONS:-20}
PORT=${PORT:-2525} SINK_PORT=${SINK_PORT:-30025} HTTP_PORT=${HTTP_PORT:-30080}
MODES=${MODES:-unsigned rsa2048 ed25519}
export PATH=$PATH:/usr/sbin:/sbin
[ -x "$KUMOD_BIN" ] || { echo "bench: no kumod at $KUMOD_BIN (make release)" >&2; exit 1; }

mkdir -p "$repo/var"
KEYS=$(mktemp -d "$repo/var/bench-dkim-keys.XXXXXX")
RUNS=("$KEYS")
KPID=""
stop_kumod() {
  [ -n "$KPID" ] || return 0
  kill -TERM "$KPID" 2>/dev/null
  for _ in $(seq 600); do kill -0 "$KPID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$KPID" 2>/dev/null && kill -KILL "$KPID"
  wait "$KPID" 2>/dev/null
  KPID=""
}
cleanup() {
  stop_kumod
  for r in "${RUNS[@]}"; do
    if [ "${KEEP:-0}" = 1 ]; then echo "bench: kept $r" >&2; else rm -rf "$r"; fi
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$KEYS/rsa.pem" 2>/dev/null
openssl genpkey -algorithm ed25519 -out "$KEYS/ed.pem" 2>/dev/null

# signing_lua MODE: the policy lines that sign (none for unsigned)
signing_lua() {
  local fn key sign="msg:dkim_sign(s)"
  case $1 in
    rsa2048) fn=rsa_sha256_signer key=$KEYS/rsa.pem ;;
    ed25519) fn=ed25519_signer key=$KEYS/ed.pem ;;
    # (diagnostic) the policy's part alone: the signer built, not used
    build_only) fn=ed25519_signer key=$KEYS/ed.pem sign="" ;;
    *) return 0 ;;
  esac
  cat <<EOF
kumo.on('smtp_server_message_received', function(msg)
  local s = kumo.dkim.$fn {
    domain = 'bench.test', selector = 's1', key = '$key',
    headers = { 'From', 'To', 'Subject', 'Date', 'Message-ID' },
  }
  $sign
end)
EOF
}

metric() { curl -s "http://127.0.0.1:$HTTP_PORT/metrics" | awk -v n="$1" '$1 == n {print $2}'; }
result() { sed -n "s/^RESULT .* $2=\([0-9.]*\).*/\1/p" "$1" | tail -n 1; }
ratio() { awk -v k="${1:-0}" -v p="${2:-0}" 'BEGIN{ if (k > 0 && p > 0) printf "%.2f", k/p; else print "n/a" }'; }

declare -A E2E ACC SIGN_MS
for mode in $MODES; do
  RUN=$(mktemp -d "$repo/var/bench-dkim.XXXXXX")
  RUNS+=("$RUN")
  {
    # the relay policy, plus an HTTP listener (for /metrics) in its init
    sed -e "s|@DIR@|$RUN|g" -e "s|@PORT@|$PORT|g" -e "s|@SINK_PORT@|$SINK_PORT|g" \
      "$here/bench-relay-policy.lua" \
      | awk -v hp="$HTTP_PORT" '!d && /^end\)$/ {
          print "  kumo.start_http_listener { listen = \"127.0.0.1:" hp "\" }"; d = 1 } {print}'
    signing_lua "$mode"
  } >"$RUN/policy.lua"
  user_args=(); [ "$(id -u)" = 0 ] && user_args=(--user root)
  echo "# dkim bench: mode $mode, run dir $RUN"
  (cd "$RUN" && exec "$KUMOD_BIN" --policy "$RUN/policy.lua" "${user_args[@]}") >"$RUN/kumod.log" 2>&1 &
  KPID=$!
  for _ in $(seq 600); do
    grep -q 'initialization complete' "$RUN/kumod.log" && break
    kill -0 "$KPID" 2>/dev/null || break
    sleep 0.1
  done
  grep -q 'initialization complete' "$RUN/kumod.log" \
    || { echo "bench: kumod did not start:" >&2; tail -n 20 "$RUN/kumod.log" >&2; exit 1; }
  "$shared/relay-throughput.sh" "$PORT" "$SINK_PORT" "$N" "$SIZE" "$SESSIONS" | tee "$RUN/out"
  RC=${PIPESTATUS[0]}
  [ "$RC" = 0 ] || echo "bench: $mode run failed (rc=$RC)" >&2
  E2E[$mode]=$( [ "$RC" = 0 ] && result "$RUN/out" e2e_mps )
  ACC[$mode]=$(result "$RUN/out" accept_mps)
  if [ "$mode" = rsa2048 ] || [ "$mode" = ed25519 ]; then
    made=$(metric dkim_signer_sign_count) sum=$(metric dkim_signer_sign_sum)
    SIGN_MS[$mode]=$(awk -v c="${made:-0}" -v s="${sum:-0}" 'BEGIN{ if (c > 0) printf "%.3f", 1000*s/c; else print "n/a" }')
    echo "# $mode: $made messages signed, ${SIGN_MS[$mode]} ms each on the pool"
    [ "${made:-0}" = "$N" ] || echo "bench: WARNING: $made signed, expected $N" >&2
  fi
  stop_kumod
done

# --- the peer: Postfix + OpenDKIM signing the same traffic with the same key ---
PF_E2E=""
if [ "${POSTFIX:-1}" = 1 ] && [ "$(id -u)" = 0 ]; then
  PF_OUT="$KEYS/postfix.out"
  PF_PORT=$PORT SINK_PORT=$SINK_PORT "$here/postfix-opendkim.sh" "$KEYS/rsa.pem" "$N" "$SIZE" \
    "$SESSIONS" | tee "$PF_OUT"
  [ "${PIPESTATUS[0]}" = 0 ] && PF_E2E=$(result "$PF_OUT" e2e_mps)
elif [ "${POSTFIX:-1}" = 1 ]; then
  echo "bench: Postfix + OpenDKIM needs root; skipped" >&2
fi

echo "BENCH dkim n=$N size=$SIZE sessions=$SESSIONS unsigned_e2e_mps=${E2E[unsigned]:-n/a}" \
     "rsa2048_e2e_mps=${E2E[rsa2048]:-n/a} ed25519_e2e_mps=${E2E[ed25519]:-n/a}" \
     "rsa2048_vs_unsigned=$(ratio "${E2E[rsa2048]:-}" "${E2E[unsigned]:-}")" \
     "ed25519_vs_unsigned=$(ratio "${E2E[ed25519]:-}" "${E2E[unsigned]:-}")" \
     "rsa2048_sign_ms=${SIGN_MS[rsa2048]:-n/a} ed25519_sign_ms=${SIGN_MS[ed25519]:-n/a}" \
     "postfix_opendkim_e2e_mps=${PF_E2E:-n/a}" \
     "rsa2048_vs_postfix_opendkim=$(ratio "${E2E[rsa2048]:-}" "$PF_E2E")"
[ -n "${E2E[unsigned]:-}" ] && [ -n "${E2E[rsa2048]:-}" ] && [ -n "${E2E[ed25519]:-}" ]
