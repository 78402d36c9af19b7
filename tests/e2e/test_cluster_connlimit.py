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

N_MESSAGES = 24
LIMIT = 2


def run(make_kumod, fakedns, sink, limit):
    path = {"connection_limit": limit, "idle_timeout": "1s",
            "max_deliveries_per_connection": 4}
    cl = C.Cluster(make_kumod, fakedns, sink, path=path).start()
    cl.wait_leader(timeout=20)
    tokens = [C.send_until_accepted(cl.nodes[i % len(cl.nodes)], cl.names[i % len(cl.names)])
              for i in range(N_MESSAGES)]
    sink.wait_transactions(N_MESSAGES, timeout=90)
    return cl, tokens


def test_shared_connection_limit_caps_the_whole_cluster(make_kumod, fakedns, make_sink):
    sink = make_sink(data_delay=0.3)
    cl, tokens = run(make_kumod, fakedns, sink, LIMIT)
    assert sink.max_concurrent <= LIMIT, f"{sink.max_concurrent} connections at once"
    assert len(sink.transactions()) == N_MESSAGES
    res = C.check(tokens, sink)
    assert not res.lost and res.dup == 0, res.line()
    # the connections closed when idle and their slots went back: a second
    # batch (from every node) gets through too, still within the limit
    time.sleep(3)
    tokens += [C.send_until_accepted(cl.nodes[i % len(cl.nodes)],
                                     cl.names[(i * 7) % len(cl.names)])
               for i in range(6)]
    sink.wait_transactions(N_MESSAGES + 6, timeout=60)
    assert sink.max_concurrent <= LIMIT, f"{sink.max_concurrent} connections at once"
    assert not C.check(tokens, sink).lost

def test_local_connection_limit_is_per_owner(make_kumod, fakedns, make_sink):
    sink = make_sink(data_delay=0.3)
    run(make_kumod, fakedns, sink, f"local:{LIMIT}")
    assert sink.max_concurrent > LIMIT, f"only {sink.max_concurrent} connections at once"
