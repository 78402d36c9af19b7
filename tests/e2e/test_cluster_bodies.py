"""test_cluster_bodies.py - body replication in a three-node group
(CLUSTER.md §4.3-4.6): a message accepted by a follower is durable on at
least min_replicas nodes before its 250, the shard's owner (whichever node
that is) delivers it exactly once, and after the delivery no node keeps its
body."""
import re
import time

import cluster_lib as C
import kumod_harness as H
from test_cluster_group import agreed_leader, cluster_init

MIN_REPLICAS = 2


# -- Helpers -------------------------------------------------------------------



def data_puts(k):
    return C.metric(k, "kumod_spool_puts_total", 'spool="data"') or 0.0


def start_group(make_kumod, sink_port, settings=None):
    raft_ports = [H.free_port() for _ in range(3)]
    link_ports = [H.free_port() for _ in range(3)]
    nodes = []
    for i in range(3):
        hp = H.free_port()
        init = cluster_init(i + 1, raft_ports, hp, link_ports=link_ports)
        if settings:
            init = init.replace("bootstrap=true",
                                f"bootstrap=true, settings={settings}")
        pol = H.delivery_policy(path=H.sink_path(sink_port), init_extra=init)
        k = make_kumod(start=False, **pol)
        k.http_port = hp
        nodes.append(k)
    for k in nodes:
        k.start(wait=False)
    for k in nodes:
        k.wait_ready(timeout=30)
    return nodes


def send_one(k, rcpt):
    """One message to rcpt through k; its id, or None on a non-250."""
    s = k.smtp(ehlo="client.test")
    code, text = H.send_message(s, rcpts=(rcpt,))
    s.quit()
    return H.parse_ids(text)[0] if code == 250 else None


def spool_bodies(k):
    """What the last start reported about the spool: the body count."""
    m = re.findall(r"the spool holds (\d+) message body", k.log_text())
    return int(m[-1]) if m else None


# -- Tests ---------------------------------------------------------------------

def test_follower_message_is_replicated_delivered_once_then_gone(
        make_kumod, fakedns, sink):
    fakedns.add_mx("dest.test", "mx1.dest.test", 10)
    fakedns.add_a("mx1.dest.test", "127.0.0.1")
    nodes = start_group(make_kumod, sink.port)
    H.wait_for(lambda: agreed_leader(nodes) is not None, timeout=15,
               what="one agreed leader")
    leader = agreed_leader(nodes)
    follower = nodes[leader % 3]

    ids = []
    for i in range(3):
        before = [data_puts(k) for k in nodes]
        mid = None
        deadline = time.monotonic() + 15
        while mid is None and time.monotonic() < deadline:
            mid = send_one(follower, f"bob{i}@dest.test")
            if mid is None:
                time.sleep(0.2)
        assert mid is not None, follower.log_tail()
        ids.append(mid)
        # the 250 came after min_replicas durable copies: the follower's
        # own and at least one StoreBody elsewhere
        after = [data_puts(k) for k in nodes]
        grew = sum(1 for b, a in zip(before, after) if a > b)
        assert grew >= MIN_REPLICAS, (before, after)

    # exactly once, by whichever node owns the shard
    sink.wait_transactions(len(ids), timeout=30)
    deliveries = []
    for mid in ids:
        H.wait_for(lambda: any(k.records_for(mid, "Delivery") for k in nodes),
                   timeout=15, what=f"a Delivery record for {mid}")
        deliveries.append(sum(len(k.records_for(mid, "Delivery"))
                              for k in nodes))
    assert deliveries == [1] * len(ids)
    time.sleep(1.5)  # a duplicate attempt would show up by now
    assert len(sink.transactions()) == len(ids)

    # Done reached every node: no node keeps a body (the orphan sweep
    # would keep an unlisted one for an hour, so a restart shows it)
    for k in nodes:
        assert k.stop() == 0, k.log_tail()
    for k in nodes:
        k.start(wait=False)
    for k in nodes:
        k.wait_ready(timeout=30)
    for k in nodes:
        H.wait_for(lambda: spool_bodies(k) is not None, timeout=15,
                   what="the spool count at start-up")
        assert spool_bodies(k) == 0, k.log_tail()
        assert k.recovered_count() == 0


def test_too_few_replicas_is_451_and_the_local_copy_is_removed(
        make_kumod, fakedns, sink):
    fakedns.add_mx("dest.test", "mx1.dest.test", 10)
    fakedns.add_a("mx1.dest.test", "127.0.0.1")
    nodes = start_group(make_kumod, sink.port,
                        settings="{replication_factor=3, min_replicas=3}")
    H.wait_for(lambda: agreed_leader(nodes) is not None, timeout=15,
               what="one agreed leader")
    leader = agreed_leader(nodes)
    acceptor = nodes[leader - 1]
    H.wait_for(lambda: send_one(acceptor, "bob@dest.test") is not None,
               timeout=15, interval=0.2, what="a 250 with three copies")
    sink.wait_transactions(1, timeout=30)

    # one node down: two nodes keep a quorum but only two copies exist
    down = nodes[leader % 3]
    down.kill9()
    before = data_puts(acceptor)
    s = acceptor.smtp(ehlo="client.test")
    code, text = H.send_message(s, rcpts=("carol@dest.test",))
    s.quit()
    assert code == 451, text
    assert data_puts(acceptor) > before  # it was stored, then removed
    time.sleep(1)
    assert len(sink.transactions()) == 1
    assert acceptor.stop() == 0, acceptor.log_tail()
    acceptor.start(wait=True)
    H.wait_for(lambda: spool_bodies(acceptor) is not None, timeout=15,
               what="the spool count at start-up")
    assert spool_bodies(acceptor) == 0, acceptor.log_tail()
