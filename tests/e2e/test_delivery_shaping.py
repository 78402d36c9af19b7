"""Shaping of the egress path and source selection (KUMOMTA-API.md §2.7,
§2.8; scenarios 27, 28, 32): connection_limit against a slow counting
sink, max_deliveries_per_connection, max_message_rate and
max_connection_rate, a 2:1 weighted egress pool."""
import collections
import time

import kumod_harness as H


# -- Helpers -------------------------------------------------------------------

def mx_to_sink(fakedns, domain="dest.test"):
    fakedns.add_mx(domain, f"mx1.{domain}")
    fakedns.add_a(f"mx1.{domain}", "127.0.0.1")


def send_many(k, n, domain="dest.test", prefix="u"):
    """n one-recipient messages over one session; returns the ids."""
    s = k.smtp(ehlo="client.test")
    ids = []
    for i in range(n):
        code, text = H.send_message(s, rcpts=(f"{prefix}{i}@{domain}",),
                                    msg=H.make_message(subject=f"shaping {i}"))
        assert code == 250, text
        ids += H.parse_ids(text)
    s.quit()
    return ids


# -- Tests ---------------------------------------------------------------------

def test_connection_limit_is_never_exceeded(make_kumod, fakedns, make_sink):
    sink = make_sink(data_delay=0.3)
    mx_to_sink(fakedns)
    k = make_kumod(**H.delivery_policy(path=H.sink_path(sink.port, connection_limit=2)))
    ids = send_many(k, 20)
    sink.wait_transactions(20, timeout=60)
    assert sink.max_concurrent <= 2, f"{sink.max_concurrent} concurrent connections"
    assert sink.max_concurrent >= 1
    got = sorted(r for t in sink.transactions() for r in t.rcpt_tos)
    assert got == sorted(f"u{i}@dest.test" for i in range(20)), "lost or duplicated messages"
    k.wait_for_records("Delivery", n=20, timeout=30)
    assert {r["id"] for r in k.records("Delivery")} == set(ids)


def test_max_deliveries_per_connection_opens_a_new_connection(make_kumod, fakedns, sink):
    mx_to_sink(fakedns)
    k = make_kumod(**H.delivery_policy(path=H.sink_path(
        sink.port, connection_limit=1, max_deliveries_per_connection=3, idle_timeout="10s")))
    send_many(k, 9)
    sink.wait_transactions(9, timeout=60)
    counts = [n for n in sink.per_connection_counts().values() if n]
    assert sum(counts) == 9
    assert max(counts) <= 3, f"transactions per connection: {counts}"
    assert max(counts) >= 2, f"no connection was reused: {counts}"
    assert len(counts) >= 3, counts
    assert sink.max_concurrent <= 1


def test_max_message_rate_spaces_deliveries(make_kumod, fakedns, sink):
    mx_to_sink(fakedns)
    k = make_kumod(**H.delivery_policy(path=H.sink_path(sink.port, max_message_rate="2/s")))
    send_many(k, 6)
    ts = sorted(t.time for t in sink.wait_transactions(6, timeout=60))
    # 6 messages at 2/s take >= 2.5 s (1.5 s even with a burst of 2)
    assert ts[-1] - ts[0] >= 1.4, f"6 messages in {ts[-1] - ts[0]:.2f}s at 2/s"


def test_max_connection_rate_spaces_connections(make_kumod, fakedns, sink):
    mx_to_sink(fakedns)
    k = make_kumod(**H.delivery_policy(path=H.sink_path(
        sink.port, max_connection_rate="2/s", max_deliveries_per_connection=1)))
    send_many(k, 6)
    sink.wait_transactions(6, timeout=60)
    opened = sorted(c.opened for c in sink.connections())
    assert len(opened) >= 6
    assert opened[-1] - opened[0] >= 1.4, f"{len(opened)} connections in " \
                                          f"{opened[-1] - opened[0]:.2f}s at 2/s"


def test_weighted_pool_splits_two_to_one_with_each_ehlo_domain(make_kumod, fakedns, sink):
    mx_to_sink(fakedns)
    k = make_kumod(**H.delivery_policy(
        queue={"egress_pool": "p"},
        path=H.sink_path(sink.port),
        sources={"a": {"source_address": "127.0.0.1", "ehlo_domain": "a.src.test"},
                 "b": {"source_address": "127.0.0.1", "ehlo_domain": "b.src.test"}},
        pools={"p": [{"name": "a", "weight": 2}, {"name": "b", "weight": 1}]}))
    ids = send_many(k, 30)
    txns = sink.wait_transactions(30, timeout=60)
    by_ehlo = collections.Counter(t.ehlo for t in txns)
    assert set(by_ehlo) == {"a.src.test", "b.src.test"}, by_ehlo
    assert 17 <= by_ehlo["a.src.test"] <= 23, by_ehlo
    assert 7 <= by_ehlo["b.src.test"] <= 13, by_ehlo
    recs = k.wait_for_records("Delivery", n=30, timeout=30)
    recs = [r for r in recs if r["id"] in set(ids)]
    assert {r["egress_pool"] for r in recs} == {"p"}
    by_source = collections.Counter(r["egress_source"] for r in recs)
    assert by_source == collections.Counter(
        {"a": by_ehlo["a.src.test"], "b": by_ehlo["b.src.test"]}), (by_source, by_ehlo)
    for r in recs:
        assert r["site"] == f"{r['egress_source']}->mx1.dest.test@smtp_client", r["site"]
    assert all(t.peer[0] == "127.0.0.1" for t in txns)


def test_message_rate_is_kept_across_config_refreshes(make_kumod, fakedns, sink):
    """A refresh of the egress path (every 200 ms here) must not hand the
    limiter a fresh burst: 4 messages arriving 0.5 s apart at 1/2s still
    leave about 2 s apart (without the fix they left 0.5 s apart)."""
    mx_to_sink(fakedns)
    k = make_kumod(**H.delivery_policy(path=H.sink_path(
        sink.port, max_message_rate="1/2s", refresh_interval="200ms")))
    for _ in range(4):
        k.send(rcpts=["bob@dest.test"])
        time.sleep(0.5)
    ts = sorted(t.time for t in sink.wait_transactions(4, timeout=60))
    assert ts[-1] - ts[0] >= 5.0, f"4 messages in {ts[-1] - ts[0]:.2f}s at 1/2s"


def test_a_throttle_spec_that_does_not_parse_is_a_transient_failure(make_kumod, fakedns, sink):
    # never "no limit": the message waits, and the record names the parameter
    mx_to_sink(fakedns)
    k = make_kumod(**H.delivery_policy(path=H.sink_path(sink.port, max_message_rate="lots/s")))
    ids = send_many(k, 1)
    recs = k.wait_for_records("TransientFailure", n=1, timeout=30)
    rec = [r for r in recs if r["id"] == ids[0]][0]
    assert "max_message_rate" in rec["response"]["content"], rec["response"]
    assert not k.records("Delivery")
    assert sink.transactions() == []
