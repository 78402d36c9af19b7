"""Policy decisions at reception (KUMOMTA-API.md §2.1, scenarios 5, 6, 11,
12): relay_hosts, get_listener_domain, kumo.reject() in every SMTP event
and its Rejection record, the null queue."""
import pytest

import kumod_harness as H

LISTENER_DOMAIN = """
kumo.on('get_listener_domain', function(domain, listener, conn_meta)
  if domain == 'inbound.test' then
    return kumo.make_listener_domain { relay_to = true }
  end
  return nil
end)
"""

ENUMERATED = """
kumo.on('spool_message_enumerated', function(msg)
  append('enumerated.txt', msg:id())
end)
"""


# -- Helpers -------------------------------------------------------------------

def rejections(k, code):
    return [r for r in k.records("Rejection") if r["response"]["code"] == code]


# -- Tests ---------------------------------------------------------------------

def test_relay_allowed_for_a_client_in_relay_hosts(kumod):
    s = kumod.smtp(ehlo="client.test")
    code, text = H.send_message(s, rcpts=("anyone@far-away.test",))
    assert code == 250 and H.parse_ids(text)
    s.quit()


def test_relay_denied_outside_relay_hosts_with_550_and_rejection_record(make_kumod):
    k = make_kumod(listener={"relay_hosts": ["10.99.0.0/16"]})
    s = k.raw()
    s.reply()
    s.cmd("EHLO client.test")
    assert s.cmd("MAIL FROM:<a@client.test>").code == 250
    r = s.cmd("RCPT TO:<bob@dest.test>")
    assert r.code == 550, r
    assert r.text.startswith("5.7.1 relaying not permitted"), r
    assert "127.0.0.1" in r.text, r
    # the session goes on; DATA without a recipient is refused
    assert s.cmd("DATA").code == 503
    assert s.cmd("QUIT").code == 221
    assert k.stop() == 0
    recs = rejections(k, 550)
    assert recs, k.records()
    rec = recs[0]
    assert rec["response"]["enhanced_code"] == {"class": 5, "subject": 7, "detail": 1}
    assert rec["response"]["content"].startswith("relaying not permitted")
    assert rec["recipient"] == "bob@dest.test"
    assert rec["sender"] == "a@client.test"
    assert rec["id"] == ""
    assert rec["peer_address"]["name"] == "client.test"


def test_relay_hosts_accept_cidr_blocks(make_kumod):
    k = make_kumod(listener={"relay_hosts": ["10.0.0.0/8", "127.0.0.0/8"]})
    s = k.smtp(ehlo="client.test")
    code, text = H.send_message(s)
    assert code == 250, text
    s.quit()


def test_get_listener_domain_relay_to_lets_inbound_domain_through(make_kumod):
    k = make_kumod(listener={"relay_hosts": ["10.99.0.0/16"]}, extra=LISTENER_DOMAIN)
    s = k.smtp(ehlo="client.test")
    assert s.mail("a@client.test")[0] == 250
    code, text = s.rcpt("other@elsewhere.test")
    assert code == 550 and text.startswith(b"5.7.1"), text
    assert s.rcpt("bob@inbound.test")[0] == 250
    code, text = s.data(H.make_message(to="bob@inbound.test"))
    assert code == 250, text
    (mid,) = H.parse_ids(text)
    s.quit()
    assert k.stop() == 0
    (rec,) = [r for r in k.records("Reception") if r["id"] == mid]
    assert rec["recipient"] == "bob@inbound.test"


# (event, code, text, how the client meets it)
REJECT_CASES = [
    ("smtp_server_connection_accepted", "conn_meta", 421, "go away now", "greeting"),
    ("smtp_server_ehlo", "domain, conn_meta", 550, "ehlo refused by policy", "ehlo"),
    ("smtp_server_mail_from", "sender, conn_meta", 550, "no", "mail"),
    ("smtp_server_rcpt_to", "recipient, conn_meta", 451, "rcpt deferred by policy", "rcpt"),
    ("smtp_server_message_received", "msg, conn_meta", 550, "message refused by policy", "dot"),
]


@pytest.mark.parametrize("event,args,code,text,stage", REJECT_CASES, ids=[c[0] for c in REJECT_CASES])
def test_kumo_reject_in_event_reaches_client_and_logs_rejection(make_kumod, event, args,
                                                                  code, text, stage):
    extra = f"""
kumo.on('{event}', function({args})
  kumo.reject({code}, {H.lua_str(text)})
end)
"""
    k = make_kumod(extra=extra)
    s = k.raw()
    greeting = s.reply()
    if stage == "greeting":
        assert (greeting.code, greeting.text) == (code, text), greeting
        assert s.closed(), "connection must close after a 421 greeting"
    else:
        assert greeting.code == 220
        r = s.cmd("EHLO client.test")
        if stage == "ehlo":
            assert (r.code, r.text) == (code, text), r
        else:
            assert r.code == 250
            r = s.cmd("MAIL FROM:<a@client.test>")
            if stage == "mail":
                assert str(r) == "550 no"
            else:
                assert r.code == 250
                r = s.cmd("RCPT TO:<b@dest.test>")
                if stage == "rcpt":
                    assert (r.code, r.text) == (code, text), r
                else:
                    assert r.code == 250
                    assert s.cmd("DATA").code == 354
                    s.send("Subject: x\r\n\r\nbody\r\n.\r\n")
                    r = s.reply()
                    assert (r.code, r.text) == (code, text), r
        s.cmd("QUIT")
    s.close()
    assert k.stop() == 0
    recs = [r for r in rejections(k, code) if r["response"]["content"] == text]
    assert len(recs) == 1, f"want one Rejection {code} {text!r}, got {k.records()}"
    assert recs[0]["response"]["enhanced_code"] is None
    assert not k.records("Reception"), "a rejected message must not be received"


def test_null_queue_is_accepted_logged_and_not_recovered(make_kumod):
    extra = """
kumo.on('smtp_server_message_received', function(msg, conn_meta)
  msg:set_meta('queue', 'null')
end)
""" + ENUMERATED
    k = make_kumod(extra=extra)
    s = k.smtp(ehlo="client.test")
    code, text = H.send_message(s, rcpts=("bob@dest.test", "carol@dest.test"))
    assert code == 250, text
    ids = H.parse_ids(text)
    assert len(ids) == 2
    s.quit()
    assert k.stop() == 0
    recs = {r["id"]: r for r in k.records("Reception")}
    for mid in ids:
        assert mid in recs, f"no Reception for {mid}: {k.records()}"
        assert recs[mid]["queue"] == "null"
    k.restart()
    assert k.recovered_count() == 0
    assert not k.path("enumerated.txt").exists()
