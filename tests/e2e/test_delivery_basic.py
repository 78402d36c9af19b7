"""Delivery by MX lookup and by configured route (KUMOMTA-API.md §2.6, §3,
§7.1-7.2; scenarios 3, 13, 30, 31, 33): the message reaches the sink once
and intact, Reception then Delivery records, A fallback, null MX, NXDOMAIN,
queue names from tenant/campaign/routing_domain, smarthost mx_list,
maildir, a shared site for domains with the same MX."""
import time

import kumod_harness as H

ENUMERATED = """
kumo.on('spool_message_enumerated', function(msg)
  append('enumerated.txt', msg:id())
end)
"""

TENANT_META = """
kumo.on('smtp_server_message_received', function(msg, conn_meta)
  local user = msg:recipient().user
  if user:sub(1, 3) == 'tc-' then
    msg:set_meta('tenant', 't1')
    msg:set_meta('campaign', 'c1')
  end
  if user:sub(1, 6) == 'tc-rd-' then
    msg:set_meta('routing_domain', 'route.test')
  end
end)
"""


# -- Helpers -------------------------------------------------------------------

def mx_to_sink(fakedns, domain, host=None, ip="127.0.0.1", pref=10):
    """domain MX pref host, host A ip; returns the host name."""
    host = host or f"mx1.{domain}"
    fakedns.add_mx(domain, host, pref)
    fakedns.add_a(host, ip)
    return host


def only(recs, what):
    assert len(recs) == 1, f"expected exactly one {what}, got {len(recs)}: {recs}"
    return recs[0]


def assert_gone_after_restart(k):
    """The spool no longer holds anything: a restart recovers 0 messages."""
    k.restart()
    assert k.recovered_count() == 0, k.log_tail()


# -- Tests ---------------------------------------------------------------------

def test_mx_lookup_delivers_once_intact_with_reception_then_delivery(make_kumod, fakedns, sink):
    mx = mx_to_sink(fakedns, "dest.test")
    k = make_kumod(**H.delivery_policy(path=H.sink_path(sink.port)))
    body = "line one\r\n.leading dot\r\n..two dots\r\n.\r\nlast\r\n"
    msg = H.make_message(subject="basic delivery", body=body, to="bob@dest.test")
    (mid,) = k.send(rcpts=("bob@dest.test",), msg=msg)

    (t,) = sink.wait_transactions(1)
    assert t.mail_from == "alice@client.test" and t.rcpt_tos == ["bob@dest.test"]
    # smtplib dot-stuffed on the way in, kumod must stuff again on the way
    # out, the sink unstuffs: the sink holds the original bytes
    assert t.data.endswith(msg.encode()), t.data
    added = H.unfold_headers(t.data[: len(t.data) - len(msg.encode())] + b"\r\n")
    assert any(n.lower() == "received" for n, _ in added), f"no Received header added: {added}"

    dl = only(k.wait_for_records("Delivery", id=mid), "Delivery")
    recs = k.records()
    types = [r["type"] for r in recs if r.get("id") == mid]
    assert types == ["Reception", "Delivery"], types
    assert dl["sender"] == "alice@client.test" and dl["recipient"] == "bob@dest.test"
    assert dl["queue"] == "dest.test"
    assert dl["site"] == f"unspecified->{mx}@smtp_client", dl["site"]
    assert dl["response"]["code"] == 250, dl["response"]
    assert "queued as" in dl["response"]["content"], dl["response"]
    assert dl["peer_address"]["name"] == mx, dl["peer_address"]
    assert dl["peer_address"]["addr"].startswith("127.0.0.1"), dl["peer_address"]
    assert dl["egress_source"] == "unspecified" and dl["egress_pool"] == "unspecified", dl
    assert dl["delivery_protocol"] == "ESMTP"
    assert dl["num_attempts"] == 0, "first attempt: no attempts before it"
    assert isinstance(dl["size"], int) and dl["size"] > len(msg)
    assert isinstance(dl["timestamp"], int) and isinstance(dl["created"], int)
    assert dl["created"] <= dl["timestamp"]
    # our sink was asked once, and the DNS was asked for the MX
    assert ("dest.test", "MX") in fakedns.queries
    time.sleep(1)
    assert len(sink.transactions()) == 1
    assert_gone_after_restart(k)
    time.sleep(1)
    assert len(sink.transactions()) == 1, "delivered again after the restart"


def test_domain_without_mx_is_delivered_to_its_a_record(make_kumod, fakedns, sink):
    fakedns.add_a("nomx.test", "127.0.0.1")
    k = make_kumod(**H.delivery_policy(path=H.sink_path(sink.port)))
    (mid,) = k.send(rcpts=("carol@nomx.test",))
    sink.wait_transactions(1)
    dl = only(k.wait_for_records("Delivery", id=mid), "Delivery")
    assert dl["peer_address"]["name"] == "nomx.test", dl["peer_address"]
    assert dl["site"] == "unspecified->nomx.test@smtp_client", dl["site"]
    assert ("nomx.test", "MX") in fakedns.queries


def test_null_mx_bounces_556_without_connecting(make_kumod, fakedns, sink):
    fakedns.add_null_mx("nullmx.test")
    fakedns.add_a("nullmx.test", "127.0.0.1")  # must not be used as implicit MX
    k = make_kumod(**H.delivery_policy(path=H.sink_path(sink.port)))
    (mid,) = k.send(rcpts=("dave@nullmx.test",))
    b = only(k.wait_for_records("Bounce", id=mid), "Bounce")
    assert b["response"]["code"] == 556, b["response"]
    assert b["response"]["enhanced_code"] == {"class": 5, "subject": 1, "detail": 10}, b
    assert "null MX" in b["response"]["content"], b["response"]
    assert not k.records_for(mid, "Delivery")
    assert sink.total_connections == 0
    assert_gone_after_restart(k)


def test_nxdomain_is_a_transient_failure_and_the_message_stays(make_kumod, fakedns, sink):
    k = make_kumod(**H.delivery_policy(queue={"retry_interval": "1h",
                                               "max_retry_interval": "1h"},
                                        path=H.sink_path(sink.port), extra=ENUMERATED))
    (mid,) = k.send(rcpts=("erin@nxdomain.test",))
    tf = only(k.wait_for_records("TransientFailure", id=mid), "TransientFailure")
    assert 400 <= tf["response"]["code"] < 500, tf["response"]
    assert tf["num_attempts"] == 0
    assert tf["queue"] == "nxdomain.test"
    assert not k.records_for(mid, "Bounce") and not k.records_for(mid, "Delivery")
    assert ("nxdomain.test", "MX") in fakedns.queries
    assert k.stop() == 0, k.log_tail()
    k.start()
    assert k.recovered_count() == 1, k.log_tail()
    assert k.path("enumerated.txt").read_text().split() == [mid]


def test_tenant_campaign_and_routing_domain_name_the_queue(make_kumod, fakedns, sink):
    mx_to_sink(fakedns, "dest.test")
    mx_to_sink(fakedns, "route.test")  # orig.test itself is NXDOMAIN
    k = make_kumod(**H.delivery_policy(path=H.sink_path(sink.port), extra=TENANT_META))
    (m1,) = k.send(rcpts=("tc-a@dest.test",))
    (m2,) = k.send(rcpts=("tc-rd-b@orig.test",))
    (m3,) = k.send(rcpts=("plain@dest.test",))
    sink.wait_transactions(3)
    d1 = only(k.wait_for_records("Delivery", id=m1), "Delivery")
    d2 = only(k.wait_for_records("Delivery", id=m2), "Delivery")
    d3 = only(k.wait_for_records("Delivery", id=m3), "Delivery")
    assert d1["queue"] == "c1:t1@dest.test"
    assert d2["queue"] == "c1:t1@orig.test!route.test"
    assert d3["queue"] == "dest.test"
    assert d2["recipient"] == "tc-rd-b@orig.test"
    assert d2["peer_address"]["name"] == "mx1.route.test", d2["peer_address"]
    assert sink.messages_to("tc-rd-b@orig.test"), "routed message not at the sink"
    calls = set(k.path("get_queue_config.txt").read_text().splitlines())
    assert "dest.test t1 c1 nil" in calls, calls
    assert "orig.test t1 c1 route.test" in calls, calls
    assert "dest.test nil nil nil" in calls, calls


def test_smarthost_mx_list_routes_without_dns(make_kumod, fakedns, sink):
    dead = H.free_port()
    k = make_kumod(**H.delivery_policy(
        queues={"smart.test": {"protocol": {"smtp": {"mx_list": [f"127.0.0.1:{sink.port}"]}}}},
        # smtp_port names a dead port: the mx_list port must win
        path=H.sink_path(dead)))
    (mid,) = k.send(rcpts=("frank@smart.test",))
    (t,) = sink.wait_transactions(1)
    assert t.rcpt_tos == ["frank@smart.test"]
    dl = only(k.wait_for_records("Delivery", id=mid), "Delivery")
    assert dl["site"].startswith("unspecified->mx_list:"), dl["site"]
    assert dl["site"].endswith("@smtp_client"), dl["site"]
    assert dl["queue"] == "smart.test"
    assert ("smart.test", "MX") not in fakedns.queries


def test_maildir_protocol_writes_one_file_per_message(make_kumod):
    maildir = H.LuaExpr("TEST_DIR .. '/maildir'")
    k = make_kumod(**H.delivery_policy(queues={"md.test": {"protocol": {"maildir_path": maildir}}}))
    ids = []
    for i in range(2):
        ids += k.send(rcpts=(f"u{i}@md.test",),
                      msg=H.make_message(subject=f"maildir {i}", body=f"maildir body {i}\r\n",
                                         to=f"u{i}@md.test"))
    new = k.path("maildir") / "new"
    files = H.wait_for(lambda: len(list(new.glob("*"))) == 2 and list(new.glob("*")), 30,
                       what=f"2 files in {new}")
    bodies = sorted(f.read_bytes() for f in files)
    for i, data in enumerate(bodies):
        assert f"Subject: maildir {i}".encode() in data, data
        assert data.endswith(f"maildir body {i}\r\n".encode()) or \
            data.endswith(f"maildir body {i}\n".encode()), data
    for mid in ids:
        dl = only(k.wait_for_records("Delivery", id=mid), "Delivery")
        assert dl["delivery_protocol"] == "Maildir", dl
        assert dl["queue"] == "md.test"


def test_two_domains_with_the_same_mx_share_one_site(make_kumod, fakedns, sink):
    fakedns.add_a("mx.shared.test", "127.0.0.1")
    fakedns.add_mx("one.test", "mx.shared.test")
    fakedns.add_mx("two.test", "mx.shared.test")
    k = make_kumod(**H.delivery_policy(path=H.sink_path(sink.port)))
    (a,) = k.send(rcpts=("x@one.test",))
    (b,) = k.send(rcpts=("y@two.test",))
    sink.wait_transactions(2)
    da = only(k.wait_for_records("Delivery", id=a), "Delivery")
    db = only(k.wait_for_records("Delivery", id=b), "Delivery")
    assert da["queue"] == "one.test" and db["queue"] == "two.test"
    assert da["site"] == db["site"] == "unspecified->mx.shared.test@smtp_client", (da, db)
