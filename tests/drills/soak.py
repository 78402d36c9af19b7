#!/usr/bin/python3
"""soak.py - run every drill (or the ones named) SOAK_RUNS times and print
one summary line per drill with the totals across its runs, in the drill
summary format (docs/drills.md):

  D12 membership: accepted=14310 rejected=512 delivered=14310 lost=0 dup=9 max_latency=10.2s PASS (20 runs)

accepted, rejected, delivered, lost and dup are sums over the runs,
max_latency the worst run's. Each run gets its own seed (SOAK_SEED + run
number, passed as DRILL_SEED: it picks the kill timing and which node the
drill hits) and its own load (DRILL_RATE 15-40 msg/s, DRILL_THREADS 4-8,
drawn from the same seed). A run that loses a message fails the soak, as
does a run that fails any other expectation or cannot run; the verdict
names the runs and their seeds, so `DRILL_SEED=<seed> DRILL_RATE=...
DRILL_THREADS=... tests/drills/run.sh D12` replays one.

  $> SOAK_RUNS=20 tests/drills/soak.py            every drill
  $> SOAK_RUNS=10 tests/drills/soak.py D12 D1     just these

Per-run logs go to $DRILL_LOG_DIR/<id>-<run>.log (default: a new temp
dir). Exit status 0 if every run of every drill passed, else 1."""
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

LINE = re.compile(r"^(?P<id>D\d+) (?P<name>\S+): accepted=(?P<accepted>\d+) "
                  r"rejected=(?P<rejected>\d+) delivered=(?P<delivered>\d+) "
                  r"lost=(?P<lost>\d+) dup=(?P<dup>\d+) "
                  r"max_latency=(?P<lat>[0-9.]+)s (?P<verdict>.*)$")
SUMS = ("accepted", "rejected", "delivered", "lost", "dup")


def drill_ids():
    out = subprocess.run([sys.executable, str(HERE / "drills.py"), "--list"],
                         capture_output=True, text=True, check=True).stdout
    return [ln.split()[0] for ln in out.splitlines() if ln.strip()]


def load_for(seed):
    """The load of one run, drawn from its seed."""
    rng = random.Random(seed * 7919)
    return {"DRILL_RATE": str(rng.choice([15, 20, 25, 30, 40])),
            "DRILL_THREADS": str(rng.choice([4, 6, 8]))}


def one_run(did, run, seed, log_dir):
    env = dict(os.environ, DRILL_SEED=str(seed), **load_for(seed))
    logp = log_dir / f"{did}-{run}.log"
    t0 = time.monotonic()
    with open(logp, "wb") as errf:
        p = subprocess.run([sys.executable, str(HERE / "drills.py"), did],
                           stdout=subprocess.PIPE, stderr=errf, env=env)
    lines = p.stdout.decode(errors="replace").strip().splitlines()
    last = lines[-1] if lines else ""
    return last, p.returncode, time.monotonic() - t0, env, logp


def soak_drill(did, runs, base_seed, log_dir):
    tot = {k: 0 for k in SUMS}
    worst = 0.0
    name = None
    bad = []   # (run, seed, why)
    skipped = 0
    secs = 0.0
    for run in range(1, runs + 1):
        seed = base_seed + run
        last, rc, dt, env, logp = one_run(did, run, seed, log_dir)
        secs += dt
        print(f"  {did} run {run}/{runs} seed {seed} rate {env['DRILL_RATE']} "
              f"threads {env['DRILL_THREADS']} ({dt:.0f}s): {last or '(no summary)'}",
              file=sys.stderr, flush=True)
        if " SKIP " in f" {last} " or last.endswith("SKIP (needs root)"):
            skipped += 1
            name = name or last.split(":")[0].split(" ", 1)[-1]
            continue
        m = LINE.match(last)
        if not m:
            bad.append((run, seed, f"no summary, exit {rc}, see {logp}"))
            continue
        name = m["name"]
        for k in SUMS:
            tot[k] += int(m[k])
        worst = max(worst, float(m["lat"]))
        if int(m["lost"]) > 0:
            bad.append((run, seed, f"lost={m['lost']}"))
        elif rc != 0 or not m["verdict"].startswith("PASS"):
            why = m["verdict"][len("FAIL ("):-1] if m["verdict"].startswith("FAIL (") \
                else m["verdict"]
            bad.append((run, seed, why))
    done = runs - skipped
    if done == 0:
        return f"{did} {name or '?'}: SKIP (needs root)", True, secs
    verdict = f"PASS ({done} runs)"
    if bad:
        first = "; ".join(f"run {r} seed {s}: {w}" for r, s, w in bad[:3])
        more = f"; +{len(bad) - 3} more" if len(bad) > 3 else ""
        verdict = f"FAIL ({len(bad)} of {done} runs: {first}{more})"
    line = (f"{did} {name}: accepted={tot['accepted']} rejected={tot['rejected']} "
            f"delivered={tot['delivered']} lost={tot['lost']} dup={tot['dup']} "
            f"max_latency={worst:.1f}s {verdict}")
    return line, not bad, secs


def main(argv):
    runs = int(os.environ.get("SOAK_RUNS", "20"))
    base_seed = int(os.environ.get("SOAK_SEED", "1000"))
    known = drill_ids()
    ids = [a.upper() for a in argv] or known
    unknown = [d for d in ids if d not in known]
    if unknown or runs < 1:
        print(f"usage: SOAK_RUNS=N soak.py [drill...]; known: {' '.join(known)}",
              file=sys.stderr)
        return 2
    log_dir = Path(os.environ.get("DRILL_LOG_DIR") or
                   tempfile.mkdtemp(prefix="kumo-soak-", dir=os.environ.get("TMPDIR")))
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"soak: {runs} run(s) of {' '.join(ids)}, seeds {base_seed + 1}.."
          f"{base_seed + runs}, logs in {log_dir}", file=sys.stderr, flush=True)
    lines, ok = [], True
    for did in ids:
        line, good, secs = soak_drill(did, runs, base_seed, log_dir)
        print(f"== {line} [{secs / 60:.1f} min]", file=sys.stderr, flush=True)
        lines.append(line)
        ok = ok and good
    print(f"---- soak summary ({runs} run(s) per drill, logs in {log_dir})")
    for line in lines:
        print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
