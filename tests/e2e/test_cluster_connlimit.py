"""test_cluster_connlimit.py - cluster-wide connection_limit (CLUSTER.md
§4.7, KumoMTA scenario 39).

Three kumod nodes relay mail for 20 domains (owned by different nodes) to
one slow sink through the same MX, so every owner uses the same egress
path and wants connections at the same time. With connection_limit=2 (no
`local:`) the owners share two connection slots, held in the FSM (a
ThrottleGrant per opened connection, a ThrottleReturn when it closes): the
sink never sees more than 2 connections at once, and every message
arrives. With 'local:2' each owner may hold 2: more than 2 at once.
"""
import time

import cluster_lib as C
import kumod_harness as H

N_MESSAGES = 24
LIMIT = 2


class LimitedCluster(C.Cluster):
    """A Cluster whose egress path carries connection_limit=limit."""

    def __init__(self, *a, limit, **kw):
        super().__init__(*a, **kw)
        self.limit = limit

    def make_node(self, node_id, cluster_id=None):
        hp = H.free_port()
        lua = C.cluster_lua(node_id, self.raft_ports, self.link_ports,
                            cluster_id or self.cluster_id, self.settings,
                            self.election_timeout)
        lua += f"  kumo.start_http_listener {{listen='127.0.0.1:{hp}'}}\n"
        path = H.sink_path(self.sink.port, connection_limit=self.limit,
                           idle_timeout="1s", max_deliveries_per_connection=4)
        kw = H.delivery_policy(queue=self.queue, path=path, init_extra=lua)
        k = self.make_kumod(start=False, **kw)
        k.http_port = hp
        k.node_id = node_id
        return k


def send(k, dom):
    """One message through node k; its token (a 451 is retried)."""
    tok = None
    deadline = time.monotonic() + 20
    while tok is None and time.monotonic() < deadline:
        tok = C.send_one(k, dom)
        if tok is None:
            time.sleep(0.3)
    assert tok is not None, k.log_tail()
    return tok


def run(make_kumod, fakedns, sink, limit):
    cl = LimitedCluster(make_kumod, fakedns, sink, limit=limit).start()
    cl.wait_leader(timeout=20)
    tokens = [send(cl.nodes[i % len(cl.nodes)], cl.names[i % len(cl.names)])
              for i in range(N_MESSAGES)]
    sink.wait_transactions(N_MESSAGES, timeout=90)
    return cl, tokens


def test_shared_connection_limit_caps_the_whole_cluster(make_kumod, fakedns, make_sink):
    sink = make_sink(data_delay=0.3)
    cl, tokens = run(make_kumod, fakedns, sink, LIMIT)
    assert sink.max_concurrent <= LIMIT, f"{sink.max_concurrent} connections at once"
    assert len(sink.transactions()) == N_MESSAGES
    # the connections closed when idle and their slots went back: a second
    # batch (from every node) gets through too, still within the limit
    time.sleep(3)
    for i in range(6):
        k = cl.nodes[i % len(cl.nodes)]
        send(k, cl.names[(i * 7) % len(cl.names)])
    sink.wait_transactions(N_MESSAGES + 6, timeout=60)
    assert sink.max_concurrent <= LIMIT, f"{sink.max_concurrent} connections at once"

def test_local_connection_limit_is_per_owner(make_kumod, fakedns, make_sink):
    sink = make_sink(data_delay=0.3)
    run(make_kumod, fakedns, sink, f"local:{LIMIT}")
    assert sink.max_concurrent > LIMIT, f"only {sink.max_concurrent} connections at once"
