#!/bin/sh
# run.sh BINDIR [SECONDS] - the bounded fuzz pass of `make test`
# (docs/fuzzing.md): every harness replays its regression inputs
# (tests/fuzz/regressions/<harness>/, each a past finding), then fuzzes
# for SECONDS (default 3) from a scratch copy of its committed seed corpus
# (tests/fuzz/corpus/<harness>/, never written to). One summary line per
# harness; exits non-zero on the first crash, leak or failed invariant.
set -eu
BIN=$(cd "${1:?usage: run.sh BINDIR [SECONDS]}" && pwd)
SECS=${2:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kumo-fuzz.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM
status=0
for dir in "$HERE"/corpus/*/; do
    name=$(basename "$dir")
    exe="$BIN/$name"
    [ -x "$exe" ] || { echo "fuzz: $name: not built ($exe)"; status=1; continue; }
    if [ -d "$HERE/regressions/$name" ]; then
        if ! "$exe" -runs=0 -timeout=10 "$HERE/regressions/$name" \
                >"$WORK/$name.reg.log" 2>&1; then
            echo "fuzz: $name: a regression input fails again:"
            tail -n 30 "$WORK/$name.reg.log"
            status=1
            continue
        fi
    fi
    mkdir -p "$WORK/$name"
    cp "$dir"/* "$WORK/$name/"
    if ! (cd "$WORK" && "$exe" -max_total_time="$SECS" -timeout=10 \
            -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
            "$WORK/$name" "$dir") >"$WORK/$name.log" 2>&1; then
        echo "fuzz: $name: FAILED:"
        tail -n 40 "$WORK/$name.log"
        for f in "$WORK"/crash-* "$WORK"/leak-* "$WORK"/timeout-* "$WORK"/oom-*; do
            [ -e "$f" ] && cp "$f" "${TMPDIR:-/tmp}/$name.$(basename "$f")" &&
                echo "fuzz: $name: input saved as ${TMPDIR:-/tmp}/$name.$(basename "$f")"
        done
        status=1
        continue
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$WORK/$name.log")
    cov=$(grep -o 'cov: [0-9]*' "$WORK/$name.log" | tail -n 1)
    echo "fuzz: $name: ok, $execs runs in ${SECS}s, $cov"
done
exit $status
