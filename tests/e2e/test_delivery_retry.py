"""Retries, bounces, expiry and restarts of deferred mail (KUMOMTA-API.md
§2.6, §3; scenarios 14-17): TransientFailure then Delivery with growing
num_attempts, retry_interval doubling capped by max_retry_interval, Bounce
on 5xx, Expiration past max_age, and a restart that keeps attempts and due
times without delivering anything twice."""
import time

import kumod_harness as H

ENUMERATED = """
kumo.on('spool_message_enumerated', function(msg)
  append('enumerated.txt', msg:id())
end)
"""

TICK_SLACK = 1.2  # timer granularity and an ASan build's slowness, seconds


# -- Helpers -------------------------------------------------------------------

def mx_to_sink(fakedns, domain="dest.test"):
    fakedns.add_mx(domain, f"mx1.{domain}")
    fakedns.add_a(f"mx1.{domain}", "127.0.0.1")
    return f"mx1.{domain}"


def rcpt_times(sink, address):
    return [r.time for r in sink.rcpt_answers(address)]


def gaps(times):
    return [b - a for a, b in zip(times, times[1:])]


def types_of(k, mid):
    return [r["type"] for r in k.records_for(mid)]


# -- Tests ---------------------------------------------------------------------

def test_tempfail_then_delivery_counts_attempts_and_waits_retry_interval(make_kumod, fakedns,
                                                                         sink):
    mx = mx_to_sink(fakedns)
    k = make_kumod(**H.delivery_policy(queue={"retry_interval": "2s",
                                              "max_retry_interval": "2s"},
                                       path=H.sink_path(sink.port)))
    rcpt = "tempfail1-bob@dest.test"
    (mid,) = k.send(rcpts=(rcpt,))
    dl = k.wait_for_records("Delivery", id=mid, timeout=40)[0]
    (tf,) = k.records_for(mid, "TransientFailure")
    assert types_of(k, mid) == ["Reception", "TransientFailure", "Delivery"]
    assert tf["response"]["code"] == 451, tf["response"]
    assert tf["response"]["enhanced_code"] == {"class": 4, "subject": 3, "detail": 0}, tf
    assert "temporary failure" in tf["response"]["content"], tf["response"]
    assert tf["site"] == dl["site"] == f"unspecified->{mx}@smtp_client"
    assert tf["peer_address"]["name"] == mx
    assert (tf["num_attempts"], dl["num_attempts"]) == (0, 1)
    t = rcpt_times(sink, rcpt)
    assert len(t) == 2, t
    assert t[1] - t[0] >= 2.0 - 0.1, f"second attempt only {t[1] - t[0]:.2f}s after the first"
    assert t[1] - t[0] <= 2.0 * 1.5 + 10, "second attempt far later than retry_interval"
    assert len(sink.messages_to(rcpt)) == 1
    k.restart()
    assert k.recovered_count() == 0


def test_retry_interval_doubles_after_each_failure(make_kumod, fakedns, sink):
    mx_to_sink(fakedns)
    k = make_kumod(**H.delivery_policy(queue={"retry_interval": "1s",
                                              "max_retry_interval": "1m"},
                                       path=H.sink_path(sink.port)))
    rcpt = "tempfail3-carol@dest.test"
    (mid,) = k.send(rcpts=(rcpt,))
    dl = k.wait_for_records("Delivery", id=mid, timeout=60)[0]
    assert dl["num_attempts"] == 3
    tfs = k.records_for(mid, "TransientFailure")
    assert [r["num_attempts"] for r in tfs] == [0, 1, 2]
    g = gaps(rcpt_times(sink, rcpt))
    assert len(g) == 3, g
    for i, gap in enumerate(g):
        base = 1.0 * 2 ** i
        assert gap >= base - 0.1, f"retry {i + 1} after {gap:.2f}s, before {base}s: {g}"
        assert gap <= base * 1.5 + TICK_SLACK + 1, f"retry {i + 1} after {gap:.2f}s: {g}"


def test_max_retry_interval_caps_the_backoff(make_kumod, fakedns, sink):
    mx_to_sink(fakedns)
    k = make_kumod(**H.delivery_policy(queue={"retry_interval": "1s",
                                              "max_retry_interval": "1s"},
                                       path=H.sink_path(sink.port)))
    rcpt = "tempfail3-dan@dest.test"
    (mid,) = k.send(rcpts=(rcpt,))
    k.wait_for_records("Delivery", id=mid, timeout=40)
    g = gaps(rcpt_times(sink, rcpt))
    assert len(g) == 3, g
    # uncapped, the third gap would be >= 4 s
    assert all(0.9 <= x <= 1.5 + TICK_SLACK for x in g), g


def test_permanent_failure_bounces_550_and_removes_the_message(make_kumod, fakedns, sink):
    mx = mx_to_sink(fakedns)
    k = make_kumod(**H.delivery_policy(path=H.sink_path(sink.port)))
    (mid,) = k.send(rcpts=("permfail-eve@dest.test",))
    b = k.wait_for_records("Bounce", id=mid)[0]
    assert b["response"]["code"] == 550, b["response"]
    assert b["response"]["enhanced_code"] == {"class": 5, "subject": 1, "detail": 1}, b
    assert "no such user" in b["response"]["content"], b["response"]
    assert b["recipient"] == "permfail-eve@dest.test" and b["queue"] == "dest.test"
    assert b["site"] == f"unspecified->{mx}@smtp_client"
    assert b["peer_address"]["name"] == mx
    assert b["num_attempts"] == 0
    assert b["delivery_protocol"] == "ESMTP"
    time.sleep(2)
    assert sink.attempts("permfail-eve@dest.test") == 1, "a 5xx must not be retried"
    assert types_of(k, mid) == ["Reception", "Bounce"]
    k.restart()
    assert k.recovered_count() == 0


def test_message_past_max_age_expires_551_and_is_removed(make_kumod, fakedns, sink):
    mx_to_sink(fakedns)
    k = make_kumod(**H.delivery_policy(queue={"retry_interval": "1s", "max_retry_interval": "1s",
                                              "max_age": "3s"},
                                       path=H.sink_path(sink.port)))
    rcpt = "tempfail-frank@dest.test"
    (mid,) = k.send(rcpts=(rcpt,))
    ex = k.wait_for_records("Expiration", id=mid, timeout=30)[0]
    tfs = k.records_for(mid, "TransientFailure")
    assert tfs, "expected at least one TransientFailure before the Expiration"
    assert ex["response"]["code"] == 551, ex["response"]
    assert ex["response"]["enhanced_code"] == {"class": 5, "subject": 4, "detail": 7}, ex
    assert ex["queue"] == "dest.test" and ex["recipient"] == rcpt
    assert ex["num_attempts"] >= len(tfs)
    assert 1 <= ex["timestamp"] - ex["created"] <= 3 + 10, ex
    assert not k.records_for(mid, "Delivery") and not k.records_for(mid, "Bounce")
    types = types_of(k, mid)
    assert types[0] == "Reception" and types[-1] == "Expiration", types
    n = sink.attempts(rcpt)
    time.sleep(2.5)
    assert sink.attempts(rcpt) == n, "attempts went on after the Expiration"
    k.restart()
    assert k.recovered_count() == 0


def test_restart_keeps_the_due_time_and_delivers_nothing_twice(make_kumod, fakedns, sink):
    mx_to_sink(fakedns)
    k = make_kumod(**H.delivery_policy(queue={"retry_interval": "30s",
                                              "max_retry_interval": "30s"},
                                       path=H.sink_path(sink.port), extra=ENUMERATED))
    (done,) = k.send(rcpts=("ok-before@dest.test",))
    (deferred,) = k.send(rcpts=("tempfail-gina@dest.test",))
    k.wait_for_records("Delivery", id=done)
    k.wait_for_records("TransientFailure", id=deferred)
    assert sink.attempts("tempfail-gina@dest.test") == 1

    assert k.stop() == 0, k.log_tail()
    k.start()
    t_restart = time.monotonic()
    assert k.recovered_count() == 1, k.log_tail()
    assert k.path("enumerated.txt").read_text().split() == [deferred]
    (after,) = k.send(rcpts=("ok-after@dest.test",))
    k.wait_for_records("Delivery", id=after)
    time.sleep(max(0.0, 5 - (time.monotonic() - t_restart)))
    assert sink.attempts("tempfail-gina@dest.test") == 1, \
        "the deferred message was retried at once after the restart (due time lost)"
    assert len(sink.messages_to("ok-before@dest.test")) == 1, "redelivered after restart"
    assert len(sink.messages_to("ok-after@dest.test")) == 1
    assert len(k.records_for(after, "Delivery")) == 1


def test_restart_keeps_num_attempts_of_a_deferred_message(make_kumod, fakedns, sink):
    mx_to_sink(fakedns)
    k = make_kumod(**H.delivery_policy(queue={"retry_interval": "4s",
                                              "max_retry_interval": "4s"},
                                       path=H.sink_path(sink.port)))
    rcpt = "tempfail1-hank@dest.test"
    (mid,) = k.send(rcpts=(rcpt,))
    k.wait_for_records("TransientFailure", id=mid)
    assert k.stop() == 0, k.log_tail()
    k.start()
    assert k.recovered_count() == 1
    dl = k.wait_for_records("Delivery", id=mid, timeout=40)[0]
    assert dl["num_attempts"] == 1, "num_attempts lost across the restart"
    t = rcpt_times(sink, rcpt)
    assert len(t) == 2, t
    assert t[1] - t[0] >= 4 - 0.1, f"retried {t[1] - t[0]:.2f}s after the failure, before due"
    assert len(sink.messages_to(rcpt)) == 1
