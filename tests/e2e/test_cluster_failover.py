"""test_cluster_failover.py - the cluster acceptance test (CLUSTER.md §3 G1/G9,
drills D1 and D2 of §6): three kumod nodes relay mail spread over 20
destination domains to one sink while a node is killed with SIGKILL; the
checker requires that every message that got a 250 reaches the sink (lost
== 0); duplicates are counted and printed, not failed (at-least-once).
A node that names another cluster_id is refused on the NNG link.

Sizes: KUMOD_CLUSTER_N (default 2000 messages in the leader drill),
KUMOD_CLUSTER_DEADLINE (default 120 s for the sink to get every accepted
message; the wait also ends when deliveries stall for 30 s).
"""
import os
import time

import cluster_lib as C
import kumod_harness as H

N_LEADER = int(os.environ.get("KUMOD_CLUSTER_N", "2000"))
N_FOLLOWER = int(os.environ.get("KUMOD_CLUSTER_N_SMALL", "150"))
DEADLINE = float(os.environ.get("KUMOD_CLUSTER_DEADLINE", "120"))
# restarted node: applied index within this many entries of the leader's
# commit index (pings and deferrals keep committing while we look)
CATCH_UP_SLACK = 20


# -- Helpers -------------------------------------------------------------------

def start_cluster(make_kumod, fakedns, sink, **kw):
    cl = C.Cluster(make_kumod, fakedns, sink, **kw).start()
    cl.wait_leader(timeout=20)
    cl.wait_accepting(timeout=20)
    return cl


def report(label, inj, chk, accepted):
    line = f"{label}: {chk.line()} sent={inj.sent} refused={inj.refused} errors={inj.errors}"
    print(line)
    if chk.lost:
        print(f"{label}: lost by accepting node: {C.lost_by_node(accepted, chk.lost)}")
    return line


def caught_up(cl, k, leader_k):
    """The restarted node's applied index is within CATCH_UP_SLACK of the
    leader's commit index."""
    st, lst = cl.status(k), cl.status(leader_k)
    if st is None or lst is None:
        return False
    applied = C.self_member(st).get("applied_index", 0)
    return applied > 0 and lst["commit_index"] - applied <= CATCH_UP_SLACK


# -- Tests ---------------------------------------------------------------------

def test_leader_kill9_under_load_loses_no_accepted_message(make_kumod, fakedns, sink):
    cl = start_cluster(make_kumod, fakedns, sink)
    leader = cl.leader()
    assert leader is not None

    inj = C.Injector(cl.nodes, cl.names, N_LEADER, threads=6).start()
    H.wait_for(lambda: inj.n_accepted >= N_LEADER // 4 or inj.done(),
               timeout=60, interval=0.05, what=f"{N_LEADER // 4} accepted messages")
    t_kill = time.monotonic()
    assert cl.kill9(leader) == -9
    new_leader = cl.wait_leader(timeout=20, not_id=leader)
    print(f"leader {leader} killed; node {new_leader} leads after "
          f"{time.monotonic() - t_kill:.1f}s")
    assert inj.join(timeout=90), "the injector did not finish within 90 s"
    accepted = dict(inj.accepted)
    assert len(accepted) >= N_LEADER // 2, (
        f"only {len(accepted)} of {N_LEADER} accepted (codes {inj.codes})")

    chk = C.wait_delivered(accepted, sink, timeout=DEADLINE)
    report("leader-kill", inj, chk, accepted)
    assert not chk.lost, f"{len(chk.lost)} accepted messages never delivered: {chk.line()}"

    # the killed node rejoins and catches up with the new leader's log
    k = cl.restart(leader)
    lk = cl.node(new_leader)
    H.wait_for(lambda: caught_up(cl, k, lk), timeout=30, interval=0.3,
               what=f"node {leader} applied close to the leader's commit index")
    st = cl.status(k)
    assert st["cluster_id"] == cl.cluster_id
    assert st["role"] == "follower" and st["leader_id"] == new_leader


def test_follower_kill9_moves_its_shards_and_loses_nothing(make_kumod, fakedns, sink):
    cl = start_cluster(make_kumod, fakedns, sink)
    leader = cl.leader()
    victim = next(k.node_id for k in cl.nodes if k.node_id != leader)

    inj = C.Injector(cl.nodes, cl.names, N_FOLLOWER, threads=3, pace=0.02).start()
    H.wait_for(lambda: inj.n_accepted >= N_FOLLOWER // 3, timeout=60, interval=0.05,
               what=f"{N_FOLLOWER // 3} accepted messages")
    assert cl.kill9(victim) == -9
    assert inj.join(timeout=60), "the injector did not finish within 60 s"
    # no election for a follower's death
    assert cl.leader() == leader
    accepted = dict(inj.accepted)
    assert accepted

    chk = C.wait_delivered(accepted, sink, timeout=DEADLINE / 2, stall=20)
    report("follower-kill", inj, chk, accepted)
    assert not chk.lost, f"{len(chk.lost)} accepted messages never delivered: {chk.line()}"

    # mail accepted after the death is delivered too (its shards have an owner)
    after = {}
    for i, d in enumerate(cl.names):
        k = cl.alive()[i % 2]
        tok = C.send_one(k, d)
        if tok:
            after[tok] = (k.node_id, d)
    assert len(after) == len(cl.names), "the survivors refused mail after the kill"
    chk = C.wait_delivered(after, sink, timeout=30, stall=15)
    report("follower-kill/after", inj, chk, after)
    assert not chk.lost, chk.line()


def test_node_of_another_cluster_is_refused_on_the_link(make_kumod, fakedns, sink):
    cl = C.Cluster(make_kumod, fakedns, sink, cluster_id="c1")
    cl.start(ids=[1, 2])
    leader = cl.wait_leader(timeout=20)
    lk = cl.node(leader)
    H.wait_for(lambda: C.send_one(lk, cl.names[0]) is not None, timeout=20,
               interval=0.3, what="a 250 from the leader")

    # node 3: the same peers and ports, a fresh data dir, cluster_id 'c2'.
    # Raft's own transport carries no cluster id (CLUSTER.md §1.4 item 8),
    # so it may follow the raft log; the NNG link refuses everything it sends.
    stranger = cl.make_node(3, cluster_id="c2")
    cl.nodes.append(stranger)
    stranger.start(wait=False)
    # It learns the group's cluster id from the committed settings and stops
    # (or, if it gets that far, the link refuses its envelopes).
    refusal = "refused request from node 3"

    def refused():
        if "cluster_id mismatch: the group's log belongs to cluster c1" in \
                stranger.log_text():
            return True
        return any(refusal in cl.node(i).log_text() for i in (1, 2))
    H.wait_for(refused, timeout=30, interval=0.3,
               what="node 3 stopping on the cluster_id mismatch or refused "
                    "on the link")
    assert stranger.wait_exit(20) != 0
    assert [p.read_text() for p in stranger.dir.rglob("cluster_id")] == ["c2\n"]

    # the real members keep accepting and delivering
    tok = C.send_one(lk, cl.names[1])
    assert tok is not None
    chk = C.wait_delivered({tok: (leader, cl.names[1])}, sink, timeout=30, stall=20)
    assert not chk.lost, chk.line()
