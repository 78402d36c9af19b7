#!/bin/bash
# run.sh - run kumod's failure drills and print one summary line per drill.
#   $> tests/drills/run.sh            all drills (D1 D2 D3 D4 D5 D6 D8 D9 D11 D12 D13 D14)
#   $> tests/drills/run.sh D1 D3      just these
# Each drill runs in its own python process (its own cluster, namespaces and
# temp dirs, all released on exit or Ctrl-C); progress goes to
# $DRILL_LOG_DIR/<id>.log (default: a new temp dir). D3, D4, D5 (namespaces) and
# D6 (tmpfs) need root and print SKIP without it. Exit status: 0 if every
# drill passed, else 1. KUMOD_BIN picks the binary (default build/bin/kumod).
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
export KUMOD_BIN="${KUMOD_BIN:-$REPO/build/bin/kumod}"
PY="${PYTHON:-/usr/bin/python3}"
LOG_DIR="${DRILL_LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/kumo-drills-XXXXXX")}"
mkdir -p "$LOG_DIR"
ALL=(D1 D2 D3 D4 D5 D6 D8 D9 D11 D12 D13 D14)
[ $# -gt 0 ] && DRILLS=("$@") || DRILLS=("${ALL[@]}")
child=""
trap '[ -n "$child" ] && kill -TERM "$child" 2>/dev/null; wait "$child" 2>/dev/null; exit 130' INT TERM

rc=0
lines=()
for d in "${DRILLS[@]}"; do
    d="${d^^}"
    echo "== $d (log: $LOG_DIR/$d.log)" >&2
    "$PY" "$HERE/drills.py" "$d" > "$LOG_DIR/$d.out" 2> "$LOG_DIR/$d.log" &
    child=$!
    wait "$child"
    r=$?
    child=""
    line="$(tail -n 1 "$LOG_DIR/$d.out")"
    [ -n "$line" ] || line="$d: ERROR (no summary; exit $r, see $LOG_DIR/$d.log)"
    echo "$line"
    lines+=("$line")
    [ "$r" -ne 0 ] && rc=1
done
echo "---- summary (logs in $LOG_DIR)"
printf '%s\n' "${lines[@]}"
exit "$rc"
