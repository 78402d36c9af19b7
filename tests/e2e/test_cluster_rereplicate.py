"""test_cluster_rereplicate.py - restoring R after a failover (CLUSTER.md
§4.6 "Bodies after failover", §5 ReplicaUpdate). Three nodes, R = 2,
min_replicas = 2; delivery is held back (the sink answers 451) so messages
stay queued. Node A is killed with SIGKILL: its messages have one live copy
left until the owners copy them to the other survivor and commit
ReplicaUpdate (/metrics kumod_cluster_under_replicated drops to 0). Then
node B is killed too and A comes back with empty spools: every body now
exists only on the third node, so without re-replication some accepted
messages would be lost. Delivery resumes and every accepted message must
reach the sink."""
import shutil
import time

import cluster_lib as C
import kumod_harness as H

N = 30
SETTINGS = dict(C.FAST_SETTINGS, replication_factor=2, min_replicas=2)


# -- Helpers -------------------------------------------------------------------



def hold_delivery(sink):
    """Every RCPT gets a 451 until release_delivery."""
    sink.answer_rcpt = lambda address: "451 4.3.0 held by the test"


def release_delivery(sink):
    del sink.answer_rcpt


# -- Tests ---------------------------------------------------------------------

def test_owners_restore_two_copies_after_a_node_dies(make_kumod, fakedns, sink):
    cl = C.Cluster(make_kumod, fakedns, sink, settings=SETTINGS).start()
    cl.wait_leader(timeout=20)
    cl.wait_accepting(timeout=20)
    hold_delivery(sink)

    inj = C.Injector(cl.nodes, cl.names, N, threads=3).start()
    assert inj.join(timeout=120), "injector did not finish"
    accepted = dict(inj.accepted)
    assert len(accepted) >= N - 2, (inj.codes, inj.errors)
    shards = C.metric(cl.nodes[0], "kumod_cluster_shards")
    assert shards and shards > 0

    # A: a follower, so no election slows the failover down
    leader = cl.leader()
    a = next(k for k in cl.nodes if k.node_id != leader)
    b, c = [k for k in cl.nodes if k is not a]
    a.kill9()

    # the leader marks A down: the survivors own every shard between them
    def owned():
        vals = [C.metric(k, "kumod_cluster_shards_owned") for k in (b, c)]
        return None not in vals and sum(vals) == shards
    H.wait_for(owned, timeout=30, interval=0.3,
               what="the survivors owning every shard")
    time.sleep(2.5)  # one round (2 s) has seen the new node states

    def restored():
        vals = [C.metric(k, "kumod_cluster_under_replicated") for k in (b, c)]
        return vals == [0.0, 0.0]
    H.wait_for(restored, timeout=60, interval=0.5,
               what="no under-replicated message on the survivors")
    assert C.check(accepted, sink).delivered == 0  # still held

    # B dies too and A returns without its bodies: C holds the only copy
    # of each message, and must have one for every message.
    b.kill9()
    shutil.rmtree(a.dir / "data")
    shutil.rmtree(a.dir / "meta")
    cl.restart(a.node_id, timeout=60)
    release_delivery(sink)

    chk = C.wait_delivered(accepted, sink, timeout=120, stall=40)
    print(f"rereplicate: {chk.line()}")
    assert not chk.lost, (chk.line(), C.lost_by_node(accepted, chk.lost),
                          c.log_tail(), a.log_tail())
