"""test_cluster_throttle.py - cluster-wide max_message_rate (CLUSTER.md §4.7).

Three kumod nodes relay mail for 20 domains (owned by different nodes) to
one sink through the same MX, so every owner uses the same egress path.
With max_message_rate='6/m' (no `local:`) the owners share one budget,
enforced by token grants in the FSM: in one window (a wall-clock minute,
windows are aligned on FSM time) the sink gets at most 6 messages. With
'local:6/m' every owner has its own budget: more than 6 arrive at once.
"""
import time

import cluster_lib as C
import kumod_harness as H

N_MESSAGES = 30
LIMIT = 6


# -- Helpers -------------------------------------------------------------------

def start_cluster(make_kumod, fakedns, sink, rate):
    cl = C.Cluster(make_kumod, fakedns, sink, path={"max_message_rate": rate}).start()
    cl.wait_leader(timeout=20)
    return cl


def inject(cl, n):
    """n messages, round-robin over the nodes and the domains; the tokens
    that got a 250."""
    return [C.send_until_accepted(cl.nodes[i % len(cl.nodes)], cl.names[i % len(cl.names)])
            for i in range(n)]

def second_of_minute():
    return time.time() % 60


def wait_window_start(earliest=1.0, latest=20.0):
    """Sleep until the wall clock is between `earliest` and `latest` seconds
    into a minute, so a test run fits in one throttle window."""
    s = second_of_minute()
    if s < earliest:
        time.sleep(earliest - s)
    elif s > latest:
        time.sleep(60 - s + earliest)


# -- Tests ---------------------------------------------------------------------

def test_shared_rate_caps_the_whole_cluster_per_window(make_kumod, fakedns, sink):
    cl = start_cluster(make_kumod, fakedns, sink, f"{LIMIT}/m")
    wait_window_start()
    minute = int(time.time() // 60)
    accepted = inject(cl, N_MESSAGES)
    assert len(accepted) == N_MESSAGES

    # the budget of this window is spent quickly...
    H.wait_for(lambda: len(sink.transactions()) >= 1, timeout=20,
               what="a first delivery")
    # ...and nothing more arrives until the window ends (stop looking 3 s
    # before it does)
    end = (minute + 1) * 60 - 3
    while time.time() < end:
        assert len(sink.transactions()) <= LIMIT, [
            k.log_tail() for k in cl.nodes]
        time.sleep(0.5)
    n = len(sink.transactions())
    assert 1 <= n <= LIMIT, n
    assert int(time.time() // 60) == minute  # still the same window

    # a new window brings a new budget: more arrives, still capped
    H.wait_for(lambda: len(sink.transactions()) > n, timeout=30,
               what="deliveries in the next window")
    assert len(sink.transactions()) <= n + LIMIT


def test_local_rate_is_per_owner(make_kumod, fakedns, sink):
    cl = start_cluster(make_kumod, fakedns, sink, f"local:{LIMIT}/m")
    wait_window_start()
    accepted = inject(cl, N_MESSAGES)
    assert len(accepted) == N_MESSAGES
    # every owner sends its own 6 at once: together more than 6
    H.wait_for(lambda: len(sink.transactions()) > LIMIT, timeout=20,
               what=f"more than {LIMIT} deliveries from several owners")
    time.sleep(2)
    assert len(sink.transactions()) <= LIMIT * len(cl.nodes)
