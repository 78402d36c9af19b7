#!/usr/bin/python3
"""drills.py - kumod's cluster failure drills (CLUSTER.md section 6).

Usage: /usr/bin/python3 tests/drills/drills.py D1 [D2 ...]   (or --list)

Each drill starts its own cluster (drill_lib.Drill), runs the injector,
breaks something, heals it, waits for the sink to settle and prints one
summary line. Exit status: 0 when every drill given passed, 1 otherwise
(lost mail or a failed expectation), 2 on a usage or setup error.
The timers come from drill_lib.DRILL_SETTINGS (node_down_after 4s,
failover_grace 3s, self_fence_after 2s, ping 500ms, election 1s).
Environment: KUMOD_BIN, DRILL_RATE (msg/s, 25), DRILL_THREADS (6),
DRILL_SETTLE (s, 60), DRILL_KEEP=1 (keep the temp dirs), KUMO_DRILL_TMP.
"""
import os
import random
import shutil
import sys
import threading
import time
from pathlib import Path

import drill_lib as L
from drill_lib import log

FENCE_MARGIN = 4.0  # self_fence_after (2s) + ping/propagation slack
DOWN_WAIT = 9.0  # node_down_after (4s) + failover_grace (3s) + slack


def _not_250(codes):
    return all(c != 250 for c in codes)


def _watch_unowned(dr, leader, t0, secs):
    """Sample the leader's `unowned_messages` (queued messages whose shard's
    owner cannot deliver them) until t0 + secs: it must be 0 again by
    node_down_after + failover_grace (7 s) + 2 s after t0."""
    peak, last_nonzero, seen = 0, None, False
    while time.monotonic() < t0 + secs:
        st = leader.status() or {}
        if "unowned_messages" in st:
            seen = True
            n = st["unowned_messages"]
            peak = max(peak, n)
            if n > 0:
                last_nonzero = time.monotonic() - t0
        time.sleep(0.25)
    if not seen:
        dr.notes.append("the leader's status has no unowned_messages")
        return
    dr.notes.append(f"unowned messages on the leader: peak {peak}" +
                    (f", last seen {last_nonzero:.1f}s after the fault" if last_nonzero else ""))
    if last_nonzero is not None:
        dr.expect(last_nonzero <= 9.0,
                  f"messages without an able owner {last_nonzero:.1f}s after the fault")


# -- D1 ------------------------------------------------------------------------

def d1(dr):
    """Leader kill -9, restart, catch-up."""
    c = dr.cluster
    inj = dr.injector().start()
    time.sleep(5)
    old = c.wait_leader()
    t = time.monotonic()
    c.node(old).kill9()
    new = c.wait_leader(exclude=(old,), timeout=10)
    if dr.expect(new, "no new leader within 10s of the leader kill"):
        dr.notes.append(f"new leader n{new} after {time.monotonic() - t:.1f}s")
    time.sleep(DOWN_WAIT)
    c.node(old).start()
    dr.expect(L.wait_for(c.node(old).ready, 30, what="restart ready"),
              "the killed leader did not come back ready within 30s")
    dr.expect(c.caught_up(c.node(old)), "the restarted node did not catch up")
    time.sleep(4)
    inj.stop()


# -- D2 ------------------------------------------------------------------------

def d2(dr):
    """Follower kill -9: no election, its shards fail over, it rejoins."""
    c = dr.cluster
    inj = dr.injector().start()
    time.sleep(5)
    lid = c.wait_leader()
    term0 = c.node(lid).status()["term"]
    victim = next(nd for nd in c.nodes if nd.i != lid)
    victim.kill9()
    _watch_unowned(dr, c.node(lid), time.monotonic(), DOWN_WAIT)
    st = c.node(lid).status() or {}
    dr.expect(st.get("role") == "leader" and st.get("term") == term0,
              f"leader or term changed after a follower kill (term {term0} -> {st.get('term')})")
    victim.start()
    dr.expect(L.wait_for(victim.ready, 30, what="restart ready"),
              "the killed follower did not come back ready within 30s")
    dr.expect(c.caught_up(victim), "the restarted follower did not catch up")
    time.sleep(4)
    inj.stop()


# -- D3 ------------------------------------------------------------------------

def d3(dr):
    """Partition: one node cut off the switch, then healed."""
    c, net = dr.cluster, dr.net
    inj = dr.injector().start()
    time.sleep(4)
    lid = c.wait_leader()
    term0 = c.node(lid).status()["term"]
    victim = next(nd for nd in c.nodes if nd.i != lid)
    majority = [nd for nd in c.nodes if nd is not victim]
    net.isolate(victim.i)
    log(f"n{victim.i} isolated")
    time.sleep(FENCE_MARGIN)
    codes = [L.probe(dr, victim, f"p3-{k}") for k in range(3)]
    dr.notes.append(f"probe codes of the isolated node: {codes}")
    dr.expect(_not_250(codes), f"the isolated node accepted mail after it should have fenced "
                               f"(probe codes {codes})")
    vs = victim.status() or {}
    dr.expect(vs.get("role") != "leader", "the isolated node claims to be leader")
    dr.expect(c.wait_leader(nodes=majority, timeout=10), "the majority has no leader")
    time.sleep(DOWN_WAIT)
    net.heal(victim.i)
    log(f"n{victim.i} healed")
    lid2 = c.wait_leader(timeout=15)
    dr.expect(lid2, "no agreed leader after the heal")
    if lid2:
        term1 = c.node(lid2).status()["term"]
        dr.expect(term1 == term0, f"the term moved across the partition ({term0} -> {term1}): "
                                  f"pre-vote should keep it")
    dr.expect(c.caught_up(victim), "the healed node did not catch up")
    time.sleep(4)
    inj.stop()


# -- D4 ------------------------------------------------------------------------

def d4(dr):
    """Leader in the minority of a 2 + 3 split of five nodes."""
    c, net = dr.cluster, dr.net
    inj = dr.injector().start()
    time.sleep(4)
    lid = c.wait_leader()
    other = random.choice([nd.i for nd in c.nodes if nd.i != lid])
    minority = [c.node(lid), c.node(other)]
    majority = [nd for nd in c.nodes if nd not in minority]
    net.split([lid, other])
    t = time.monotonic()
    log(f"split: minority n{lid} (leader), n{other}")
    stepped = L.wait_for(lambda: (c.node(lid).status() or {}).get("role") != "leader", 5,
                         what="the old leader to step down")
    if dr.expect(stepped, "the old leader did not step down within 5s"):
        dr.notes.append(f"old leader stepped down after {time.monotonic() - t:.1f}s")
    new = c.wait_leader(nodes=majority, timeout=10)
    dr.expect(new and new not in (lid, other), "the majority did not elect a leader in 10s")
    time.sleep(max(0.0, FENCE_MARGIN - (time.monotonic() - t)))
    codes = [L.probe(dr, nd, f"p4-{nd.i}-{k}") for nd in minority for k in range(2)]
    dr.notes.append(f"probe codes of the minority: {codes}")
    dr.expect(_not_250(codes), f"the minority accepted mail after the split (codes {codes})")
    time.sleep(DOWN_WAIT)
    for i in (lid, other):
        net.heal(i)
    log("healed")
    dr.expect(c.wait_leader(timeout=15), "no agreed leader after the heal")
    for nd in minority:
        dr.expect(c.caught_up(nd), f"n{nd.i} did not catch up after the heal")
    time.sleep(4)
    inj.stop()


# -- D5 ------------------------------------------------------------------------

def d5(dr):
    """One-way partition: the leader stops hearing its peers (they still hear it)."""
    c, net = dr.cluster, dr.net
    if not shutil.which("nft"):
        raise RuntimeError("nft not found (apt-get install nftables)")
    inj = dr.injector().start()
    time.sleep(4)
    lid = c.wait_leader()
    if not dr.expect(lid, "no leader before the partition"):
        inj.stop()
        return
    victim = c.node(lid)
    peers = [nd for nd in c.nodes if nd is not victim]
    net.one_way(victim.i, [nd.i for nd in peers])
    t = time.monotonic()
    log(f"n{victim.i} (leader) hears nothing from {[nd.i for nd in peers]}")
    stepped = L.wait_for(lambda: (victim.status() or {}).get("role") != "leader", 10,
                         what="the deaf leader to step down")
    if dr.expect(stepped, "the deaf leader did not step down within 10s"):
        dr.notes.append(f"the deaf leader stepped down after {time.monotonic() - t:.1f}s")
    new = c.wait_leader(nodes=peers, timeout=15)
    dr.expect(new and new != victim.i, "its peers did not elect a leader within 15s")
    time.sleep(max(0.0, FENCE_MARGIN - (time.monotonic() - t)))
    codes = [L.probe(dr, victim, f"p5-{k}") for k in range(3)]
    dr.notes.append(f"probe codes of the deaf node: {codes}")
    dr.expect(_not_250(codes), f"the deaf node accepted mail (probe codes {codes})")
    time.sleep(DOWN_WAIT)
    net.heal_one_way(victim.i)
    log(f"n{victim.i} hears again")
    dr.expect(c.wait_leader(timeout=15), "no agreed leader after the heal")
    dr.expect(c.caught_up(victim), "the healed node did not catch up")
    time.sleep(4)
    inj.stop()


# -- D6 ------------------------------------------------------------------------

def d6(dr):
    """Disk full on the leader (every node dir is a size-limited tmpfs)."""
    c = dr.cluster
    inj = dr.injector().start()
    time.sleep(4)
    lid = c.wait_leader()
    victim = c.node(lid)
    fill = victim.dir / "filler"
    st = os.statvfs(victim.dir)
    free = st.f_bavail * st.f_frsize
    r = L.run(["fallocate", "-l", str(free), str(fill)], check=False)
    st = os.statvfs(victim.dir)
    dr.notes.append(f"fallocate exit {r.returncode}; free after fill: "
                    f"{st.f_bavail * st.f_frsize} bytes")
    t_full = time.time()
    log(f"n{lid} (leader) disk filled ({free >> 20} MiB)")
    moved = c.wait_leader(nodes=[nd for nd in c.nodes if nd is not victim], exclude=(lid,),
                          timeout=10)
    dr.expect(moved, "leadership did not move off the full node within 10s")
    time.sleep(3)
    if victim.running():
        code = L.probe(dr, victim, "p6-full")
        dr.expect(code != 250, f"the full node still said 250 (code {code})")
    time.sleep(6)
    t_free = time.time()
    acc = [e for e in dr.ledger.accepted().values() if t_full + 3 <= e["t"] <= t_free]
    dr.expect(acc, "the cluster accepted nothing while one node's disk was full")
    fill.unlink()
    log(f"n{lid} disk freed")
    if victim.running():
        victim.kill9()
    dr.notes.append(f"full node exit codes: {victim.proc.returncode}")
    victim.start()
    dr.expect(L.wait_for(victim.ready, 30, what="restart ready"),
              "the node did not come back after freeing space")
    dr.expect(c.caught_up(victim), "the node did not catch up after freeing space")
    time.sleep(4)
    inj.stop()


# -- D8 ------------------------------------------------------------------------

SKEW = os.environ.get("DRILL_SKEW", "+300s")


def d8(dr):
    """Clock skew: one node's wall clock off by DRILL_SKEW (monotonic untouched)."""
    c = dr.cluster
    libs = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    if not libs:
        raise RuntimeError("libfaketime not found (apt-get install faketime)")
    inj = dr.injector().start()
    time.sleep(3)
    lid = c.wait_leader()
    if not dr.expect(lid, "no leader before the skew"):
        inj.stop()
        return
    skewed = c.node(random.choice([nd.i for nd in c.nodes if nd.i != lid]))
    # restart one follower with a skewed wall clock; leases, pings and
    # election timers run on CLOCK_MONOTONIC, which faketime leaves alone
    skewed.kill9()
    # preloaded directly (not the faketime wrapper, which forks): the drill
    # must hold kumod's own PID to kill it
    asan = os.environ.get("ASAN_OPTIONS", "")
    skewed.env_extra = {"LD_PRELOAD": str(libs[0]), "FAKETIME": SKEW,
                        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                        "ASAN_OPTIONS": (asan + ":" if asan else "") +
                        "verify_asan_link_order=0"}
    skewed.start()
    dr.expect(L.wait_for(skewed.ready, 30, what="the skewed node ready"),
              "the skewed node did not get ready")
    dr.expect(c.caught_up(skewed), "the skewed node did not catch up")
    log(f"n{skewed.i} runs {SKEW} off")
    time.sleep(DOWN_WAIT)
    codes = [L.probe(dr, skewed, f"p8-{k}") for k in range(3)]
    dr.notes.append(f"probe codes of the skewed node: {codes}")
    dr.expect(all(x == 250 for x in codes), f"the skewed node did not accept mail ({codes})")
    st = skewed.status() or {}
    me = next((m for m in st.get("members", []) if m.get("self")), None) or {}
    dr.expect(me.get("lease", "ok") == "ok", f"the skewed node has no lease ({me.get('lease')})")
    # leadership may now land on the skewed node: its clock stamps the FSM
    c.node(lid).kill9()
    log(f"killed leader n{lid}")
    new = c.wait_leader(exclude=(lid,), nodes=[nd for nd in c.nodes if nd.i != lid],
                        timeout=10)
    dr.expect(new, "no new leader after the kill")
    if new:
        dr.notes.append("the skewed node became leader" if new == skewed.i
                        else f"n{new} became leader")
    time.sleep(DOWN_WAIT)
    c.node(lid).start()
    dr.expect(L.wait_for(c.node(lid).ready, 30, what=f"n{lid} ready"), f"n{lid} did not restart")
    dr.expect(c.caught_up(c.node(lid)), f"n{lid} did not catch up")
    time.sleep(4)
    inj.stop()


# -- D9 ------------------------------------------------------------------------

def _replace_dir(dst, src):
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, symlinks=True)


def d9(dr):
    """Restart with stale bodies (reconciled, no loss), then with a stale
    raft dir (must be refused), then wipe and rejoin as a new member."""
    c = dr.cluster
    inj = dr.injector().start()
    time.sleep(4)
    lid = c.wait_leader()
    victim = next(nd for nd in c.nodes if nd.i != lid)
    victim.kill9()
    stale = dr.tmp / "stale"
    shutil.copytree(victim.dir / "data", stale / "data", symlinks=True)
    shutil.copytree(victim.dir / "cluster" / "raft", stale / "raft", symlinks=True)
    victim.start()
    dr.expect(L.wait_for(victim.ready, 30, what="ready"), "restart after the copy failed")
    time.sleep(6)
    # (a) old bodies
    victim.kill9()
    _replace_dir(victim.dir / "data", stale / "data")
    victim.start()
    dr.expect(L.wait_for(lambda: victim.ready() or victim.exited(), 30, what="ready")
              and victim.ready(), "the node with stale bodies did not start")
    dr.expect(victim.running() and c.caught_up(victim), "the node with stale bodies did not "
                                                        "catch up")
    time.sleep(4)
    # (b) old raft dir: refused
    victim.kill9()
    _replace_dir(victim.dir / "cluster" / "raft", stale / "raft")
    victim.start()
    L.wait_for(lambda: victim.exited() or victim.ready(), 30, what="refusal or ready")
    refused = victim.exited() and victim.proc.returncode != 0
    dr.expect(refused and "stale raft state" in victim.log_text(),
              "a stale raft dir was not refused with 'stale raft state'")
    victim.kill9()
    # wipe and rejoin as a new member (never reuse the id)
    lid = c.wait_leader(nodes=[nd for nd in c.nodes if nd is not victim])
    leader = c.node(lid) if lid else None
    if dr.expect(leader, "no leader to rejoin through"):
        r = c.kcli(leader, "cluster", "remove-node", str(victim.i))
        dr.expect(r.returncode == 0, f"cluster remove-node {victim.i} failed")
        shutil.rmtree(victim.dir / "cluster", ignore_errors=True)
        members = [nd.i for nd in c.nodes if nd is not victim]
        fresh = c.add_member(members)
        net = dr.net
        r = c.kcli(leader, "cluster", "add-node", str(fresh.i),
                   f"{net.host(fresh.i)}:{net.port(fresh.i, 'raft')}",
                   f"tcp://{net.host(fresh.i)}:{net.port(fresh.i, 'link')}")
        if dr.expect(r.returncode == 0, f"cluster add-node {fresh.i} failed"):
            fresh.start()
            dr.expect(L.wait_for(fresh.ready, 30, what="new member ready"),
                      "the wiped node did not rejoin as a new member")
    time.sleep(3)
    inj.stop()


# -- D11 -----------------------------------------------------------------------

def d11(dr):
    """Leader churn: kill the new leader every 3-5 s."""
    c = dr.cluster
    rounds = int(os.environ.get("DRILL_CHURN_ROUNDS", "6"))
    inj = dr.injector().start()
    time.sleep(3)
    for r in range(rounds):
        lid = c.wait_leader(timeout=15)
        if not dr.expect(lid, f"round {r + 1}: no agreed leader"):
            break
        c.node(lid).kill9()
        new = c.wait_leader(exclude=(lid,), timeout=10)
        dr.expect(new, f"round {r + 1}: no new leader within 10s")
        c.node(lid).start()
        L.wait_for(c.node(lid).ready, 30, what=f"n{lid} ready")
        time.sleep(random.uniform(3, 5))
    dr.expect(c.wait_leader(timeout=15), "no agreed leader after the churn")
    for nd in c.nodes:
        s = nd.status() or {}
        dr.expect(nd.running() and s.get("role") in ("leader", "follower"),
                  f"n{nd.i} ends in role {s.get('role')!r}")
    time.sleep(3)
    inj.stop()


# -- D12 -----------------------------------------------------------------------

def _member(status, node_id):
    for m in (status or {}).get("members", []):
        if m.get("id") == node_id:
            return m
    return None


def d12(dr):
    """Membership under load: add a 4th node, let it own shards, then
    remove it while the leader is killed in the middle of the change."""
    c, net = dr.cluster, dr.net
    inj = dr.injector().start()
    time.sleep(4)
    lid = c.wait_leader()
    if not dr.expect(lid, "no leader before the change"):
        inj.stop()
        return
    members = [nd.i for nd in c.nodes]
    fresh = c.add_member(members)
    r = c.kcli(c.node(lid), "cluster", "add-node", str(fresh.i),
               f"{net.host(fresh.i)}:{net.port(fresh.i, 'raft')}",
               f"tcp://{net.host(fresh.i)}:{net.port(fresh.i, 'link')}")
    if not dr.expect(r.returncode == 0, f"cluster add-node {fresh.i} failed"):
        inj.stop()
        return
    fresh.start()
    dr.expect(L.wait_for(fresh.ready, 30, what="new member ready"),
              "the new member did not get ready")

    def voter():
        lid = c.agreed_leader([nd for nd in c.nodes if nd is not fresh])
        m = _member(c.node(lid).status(), fresh.i) if lid else None
        return bool(m and m.get("voter"))
    dr.expect(L.wait_for(voter, 30, what=f"n{fresh.i} promoted to voter"),
              f"n{fresh.i} was not promoted to voter")
    dr.expect(c.caught_up(fresh), f"n{fresh.i} did not catch up")
    # let it become up and own shards (rebalance_after) under load
    time.sleep(12)
    owned = ((fresh.status() or {}).get("shards_owned")
             or (_member(fresh.status(), fresh.i) or {}).get("shards_owned"))
    dr.notes.append(f"n{fresh.i} owned {owned} shard(s) before its removal")

    # remove it through a follower, and kill the leader while it drains
    lid = c.wait_leader()
    via = next(nd for nd in c.nodes if nd.i not in (lid, fresh.i))
    result = {}

    def remove():
        result["r"] = c.kcli(via, "cluster", "remove-node", str(fresh.i))
    t = threading.Thread(target=remove, daemon=True)
    t.start()
    # the change takes a fraction of a second here: kill early in it
    time.sleep(random.uniform(0.0, 0.3))
    done_before = not t.is_alive()
    c.node(lid).kill9()
    dr.notes.append("the leader was killed " + ("after remove-node returned" if done_before
                                                else "while remove-node was running"))
    log(f"killed leader n{lid} during remove-node {fresh.i}")
    # the survivors agree on a leader other than the killed one; it may be
    # the node being removed (still a voter if its removal had not
    # committed), which a removed node, no longer told, would never agree on
    def agreed(killed=lid):
        sts = [nd.status() for nd in c.nodes
               if nd.i not in (killed, fresh.i) and nd.running()]
        ids = {s.get("leader_id") if s else None for s in sts}
        if len(ids) != 1:
            return None
        x = ids.pop()
        if not x or x == killed:
            return None
        ls = c.node(x).status() if any(nd.i == x for nd in c.nodes) else None
        return x if ls and ls.get("role") == "leader" else None
    new = L.wait_for(agreed, 15, interval=0.25, what="an agreed leader")
    dr.expect(new, "no new leader after the kill")
    if new == fresh.i:
        dr.notes.append(f"the node being removed (n{fresh.i}) won the election")
    c.node(lid).start()
    L.wait_for(c.node(lid).ready, 30, what=f"n{lid} ready")
    t.join(timeout=90)
    r = result.get("r")
    deadline = time.monotonic() + 30
    while (r is None or r.returncode != 0) and time.monotonic() < deadline:
        # the change was cut short by the kill: ask again, as an operator
        # would
        lid2 = L.wait_for(lambda: agreed(killed=None), 15, interval=0.25,
                          what="an agreed leader")
        if not lid2:
            break
        via2 = next((nd for nd in c.nodes if nd.i not in (lid2, fresh.i) and nd.running()),
                    c.node(lid2))
        r = c.kcli(via2, "cluster", "remove-node", str(fresh.i))
        if r.returncode != 0 and "transfer leadership first" in (r.stdout + r.stderr):
            # the node being removed won the election: do as the error says
            t = c.kcli(via2, "cluster", "transfer-leader")
            dr.notes.append(f"n{fresh.i} led after the kill; transfer-leader: exit "
                            f"{t.returncode}")
        if r.returncode != 0:
            time.sleep(1)
    dr.expect(r is not None and r.returncode == 0, f"cluster remove-node {fresh.i} failed")

    def gone():
        lid = c.agreed_leader([nd for nd in c.nodes if nd is not fresh])
        return bool(lid) and _member(c.node(lid).status(), fresh.i) is None
    dr.expect(L.wait_for(gone, 30, what=f"n{fresh.i} out of the configuration"),
              f"n{fresh.i} is still a member")
    fresh.cleanup()  # SIGTERM: a removed node is stopped by its operator
    for nd in c.nodes:
        if nd is not fresh:
            dr.expect(c.caught_up(nd), f"n{nd.i} did not catch up after the change")
    time.sleep(4)
    inj.stop()


# -- D13 -----------------------------------------------------------------------

def _owner(c):
    """The node owning the most shards if the status reports it, else the
    leader (today's build: only the leader delivers)."""
    lid = c.wait_leader()
    st = c.node(lid).status() or {}
    best = max(st.get("members", []), key=lambda m: m.get("shards_owned", -1), default={})
    if best.get("shards_owned", -1) > 0:
        return c.node(best["id"])
    return c.node(lid)


def d13(dr):
    """SIGSTOP the owner for 20 s, then SIGCONT."""
    c = dr.cluster
    inj = dr.injector().start()
    time.sleep(4)
    victim = _owner(c)
    pause = float(os.environ.get("DRILL_PAUSE", "20"))
    victim.pause()
    t0 = time.monotonic()
    others = [nd for nd in c.nodes if nd is not victim]
    lid = c.wait_leader(nodes=others, timeout=10)
    dr.expect(lid, "no leader among the others during the pause")
    if lid and pause >= 12:
        _watch_unowned(dr, c.node(lid), t0, 11.0)
    time.sleep(max(0.0, pause - (time.monotonic() - t0)))
    victim.resume()
    dr.expect(c.wait_leader(timeout=15), "no agreed leader after SIGCONT")
    dr.expect(c.caught_up(victim), "the paused node did not catch up")
    time.sleep(4)
    inj.stop()


# -- D14 -----------------------------------------------------------------------

def d14(dr):
    """Lost quorum: kill 2 of 3; all answer 451; restart one; resume."""
    c = dr.cluster
    inj = dr.injector().start()
    time.sleep(4)
    lid = c.wait_leader()
    survivor = c.node(lid)  # the old leader must notice it lost its quorum
    dead = [nd for nd in c.nodes if nd is not survivor]
    for nd in dead:
        nd.kill9()
    t_kill = time.time()
    time.sleep(FENCE_MARGIN + 1)
    t_fenced = time.time()
    codes = [L.probe(dr, survivor, f"p14-{k}") for k in range(3)]
    dr.notes.append(f"probe codes of the survivor: {codes}")
    dr.expect(_not_250(codes), f"the survivor accepted mail without quorum (codes {codes})")
    time.sleep(3)
    t_restart = time.time()
    late_acc = [t for t, e in dr.ledger.accepted().items() if t_fenced <= e["t"] <= t_restart]
    dr.expect(not late_acc, f"{len(late_acc)} messages got 250 without quorum")
    arrivals = [t for t, v in dr.sink.snapshot().items()
                if any(t_fenced <= x <= t_restart for x in v)]
    dr.notes.append(f"deliveries between fence and restart: {len(arrivals)} "
                    f"(kill at {t_kill:.0f})")
    dr.expect(not arrivals, f"{len(arrivals)} deliveries while quorum was lost")
    dead[0].start()
    dr.expect(L.wait_for(dead[0].ready, 30, what="restart ready"), "restart did not get ready")
    dr.expect(c.wait_leader(timeout=20), "no leader after restarting one node")

    def resumed():
        return L.probe(dr, survivor, f"p14-r{time.monotonic():.0f}") == 250
    dr.expect(L.wait_for(resumed, 20, interval=1, what="250 again"),
              "service did not resume after restarting one node")
    time.sleep(4)
    inj.stop()


DRILLS = {
    "D1": ("leader-kill", d1, {}),
    "D2": ("follower-kill", d2, {}),
    "D3": ("partition", d3, {"netns": True}),
    "D4": ("leader-minority", d4, {"netns": True, "n": 5}),
    "D5": ("one-way", d5, {"netns": True}),
    "D6": ("disk-full", d6, {"tmpfs": "256m"}),
    "D8": ("clock-skew", d8, {}),
    "D9": ("stale-data", d9, {}),
    "D11": ("leader-churn", d11, {}),
    "D12": ("membership", d12, {}),
    "D13": ("pause", d13, {}),
    "D14": ("lost-quorum", d14, {}),
}


def run_drill(did):
    name, fn, kw = DRILLS[did]
    if (kw.get("netns") or kw.get("tmpfs")) and os.geteuid() != 0:
        print(f"{did} {name}: SKIP (needs root)", flush=True)
        return 0
    try:
        with L.Drill(did, name, **kw) as dr:
            fn(dr)
            dr.settle()
            return dr.check()
    except KeyboardInterrupt:
        print(f"{did} {name}: INTERRUPTED", flush=True)
        return 130
    except Exception as e:  # setup errors: one line, non-zero
        log(f"{did}: {type(e).__name__}: {e}")
        print(f"{did} {name}: ERROR ({type(e).__name__}: {str(e).splitlines()[0][:160]})",
              flush=True)
        return 2


def main(argv):
    if "--list" in argv:
        for k, (name, fn, _) in DRILLS.items():
            print(f"{k:4} {name:16} {fn.__doc__.splitlines()[0]}")
        return 0
    ids = [a.upper() for a in argv] or list(DRILLS)
    bad = [a for a in ids if a not in DRILLS]
    if bad:
        print(f"unknown drill(s): {' '.join(bad)}; known: {' '.join(DRILLS)}", file=sys.stderr)
        return 2
    seed = os.environ.get("DRILL_SEED")
    if seed:
        # make soak varies the kill timing and which node a drill hits by
        # seed; the same seed (and DRILL_RATE, DRILL_THREADS) replays a run
        random.seed(int(seed))
        log(f"seed {seed}")
    rc = 0
    for did in ids:
        rc = max(rc, run_drill(did))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
