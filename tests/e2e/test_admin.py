"""Admin rules through the HTTP API and their effect on queued mail
(KUMOMTA-API.md §5, scenarios 23-26): suspend holds mail and its cancel
releases it, bounce removes queued mail with AdminBounce records, rules are
Raft records that survive a restart, suspend-ready-q holds one egress path,
rebind moves mail to another queue."""
import json

import kumod_harness as H
from test_http_api import request, request_json


def admin_kumod(make_kumod, sink, queue=None):
    """A kumod with an HTTP listener whose queues all go to the sink."""
    http_port = H.free_port()
    q = {"protocol": {"smtp": {"mx_list": [f"127.0.0.1:{sink.port}"]}}}
    q.update(queue or {})
    pol = H.delivery_policy(
        queue=q, path=H.sink_path(sink.port),
        init_extra=f"  kumo.start_http_listener {{ listen = '127.0.0.1:{http_port}' }}\n")
    k = make_kumod(**pol)
    k.http_port = http_port
    k.http_tls = False
    return k


def post(k, path, body):
    status, j = request_json(k, "POST", path, body)
    assert status == 200, (status, j)
    return j


def test_suspend_holds_mail_and_cancel_releases_it(make_kumod, sink):
    k = admin_kumod(make_kumod, sink)
    rule = post(k, "/api/admin/suspend/v1",
                {"domain": "dest.test", "reason": "maintenance", "duration": "10m"})
    [mid] = k.send(rcpts=["bob@dest.test"])
    [tf] = k.wait_for_records("TransientFailure", id=mid)
    assert "scheduled queue is suspended: maintenance" in tf["response"]["content"]
    assert tf["num_attempts"] == 0
    assert sink.transactions() == []
    status, listed = request_json(k, "GET", "/api/admin/suspend/v1")
    assert status == 200
    assert [r["id"] for r in listed] == [rule["id"]]
    status, _ = request_json(k, "DELETE", "/api/admin/suspend/v1", {"id": rule["id"]})
    assert status == 200
    # The cancel releases the held message at once (not after the hold).
    k.wait_for_records("Delivery", id=mid, timeout=15)
    assert len(sink.transactions()) == 1
    status, listed = request_json(k, "GET", "/api/admin/suspend/v1")
    assert listed == []


def test_bounce_removes_queued_mail_with_adminbounce_records(make_kumod, sink):
    k = admin_kumod(make_kumod, sink)
    post(k, "/api/admin/suspend/v1", {"domain": "dest.test", "reason": "hold"})
    ids = k.send(rcpts=["a@dest.test", "b@dest.test"])
    for mid in ids:
        k.wait_for_records("TransientFailure", id=mid)
    b = post(k, "/api/admin/bounce/v1", {"domain": "dest.test", "reason": "spam run"})
    assert b["id"]
    recs = k.wait_for_records("AdminBounce", n=2)
    assert sorted(r["id"] for r in recs) == sorted(ids)
    for r in recs:
        assert r["response"]["code"] == 551
        assert r["response"]["enhanced_code"] == {"class": 5, "subject": 7, "detail": 1}
        assert "Administrator bounced with reason: spam run" in r["response"]["content"]
    # A message arriving while the rule lasts is bounced too.
    [late] = k.send(rcpts=["c@dest.test"])
    k.wait_for_records("AdminBounce", id=late)
    assert sink.transactions() == []
    k.restart()
    assert k.recovered_count() == 0


def test_rules_survive_a_restart(make_kumod, sink):
    k = admin_kumod(make_kumod, sink)
    rule = post(k, "/api/admin/suspend/v1",
                {"domain": "dest.test", "reason": "kept", "duration": "1h"})
    k.restart()
    H.wait_for(lambda: request(k, "GET", "/api/check-liveness/v1")[0] == 200,
               timeout=20, what="liveness after restart")
    status, listed = request_json(k, "GET", "/api/admin/suspend/v1")
    assert [r["id"] for r in listed] == [rule["id"]]
    [mid] = k.send(rcpts=["bob@dest.test"])
    [tf] = k.wait_for_records("TransientFailure", id=mid)
    assert "suspended: kept" in tf["response"]["content"]
    assert sink.transactions() == []


def test_suspend_ready_q_holds_that_egress_path_only(make_kumod, sink):
    k = admin_kumod(make_kumod, sink)
    name = f"unspecified->mx_list:127.0.0.1:{sink.port}@smtp_client"
    post(k, "/api/admin/suspend-ready-q/v1", {"name": name, "reason": "slow down"})
    [mid] = k.send(rcpts=["bob@dest.test"])
    [tf] = k.wait_for_records("TransientFailure", id=mid)
    assert "ready queue is suspended: slow down" in tf["response"]["content"]
    assert tf["site"] == name
    status, listed = request_json(k, "GET", "/api/admin/suspend-ready-q/v1")
    assert [r["name"] for r in listed] == [name]
    assert sink.transactions() == []


def test_rebind_moves_held_mail_to_its_new_queue(make_kumod, sink):
    k = admin_kumod(make_kumod, sink)
    post(k, "/api/admin/suspend/v1",
         {"queue_names": ["dest.test"], "reason": "hold", "duration": "1h"})
    [mid] = k.send(rcpts=["bob@dest.test"])
    k.wait_for_records("TransientFailure", id=mid)
    post(k, "/api/admin/rebind/v1",
         {"domain": "dest.test", "reason": "reroute", "data": {"routing_domain": "alt.test"}})
    [rb] = k.wait_for_records("AdminRebind", id=mid)
    assert "dest.test!alt.test" in rb["response"]["content"]
    [d] = k.wait_for_records("Delivery", id=mid, timeout=15)
    assert d["queue"] == "dest.test!alt.test"
    assert len(sink.transactions()) == 1
