"""Self-tests of the delivery sinks (sinks.py) with smtplib: per-recipient
answers, TLS, connection and concurrency accounting, the 421 banner, a
second loopback address, Postfix's smtp-sink. None of them needs kumod."""
import smtplib
import socket
import threading
import time

import pytest

import kumod_harness as H
from sinks import PostfixSink, SmtpSink, free_port_on


# -- Fixture / helpers ---------------------------------------------------------

def client(sink, ehlo="kumod.test"):
    c = smtplib.SMTP(sink.host, sink.port, timeout=10)
    c.ehlo(ehlo)
    return c


def one_message(c, rcpt, sender="a@client.test", body="Subject: x\r\n\r\nbody\r\n"):
    assert c.mail(sender)[0] == 250
    code, text = c.rcpt(rcpt)
    if code != 250:
        c.rset()
        return code, text
    return c.data(body)


# -- Tests ---------------------------------------------------------------------

def test_sink_answers_each_recipient_by_its_local_part(sink):
    c = client(sink)
    assert c.has_extn("pipelining") and c.has_extn("enhancedstatuscodes")
    assert not c.has_extn("starttls")
    assert c.mail("a@client.test")[0] == 250
    assert c.rcpt("ok@dest.test")[0] == 250
    code, text = c.rcpt("tempfail-x@dest.test")
    assert (code, text[:5]) == (451, b"4.3.0")
    code, text = c.rcpt("permfail-x@dest.test")
    assert (code, text[:5]) == (550, b"5.1.1")
    assert c.rcpt("other@dest.test")[0] == 250
    code, text = c.data("Subject: hi\r\n\r\n.leading dot\r\nend\r\n")
    assert code == 250 and text.startswith(b"2.0.0 OK queued as 1"), text
    c.quit()
    (t,) = sink.wait_transactions(1)
    assert t.rcpt_tos == ["ok@dest.test", "other@dest.test"]
    assert t.mail_from == "a@client.test"
    assert t.ehlo == "kumod.test" and not t.tls
    assert t.data == b"Subject: hi\r\n\r\n.leading dot\r\nend\r\n"  # dots unstuffed
    assert [(r.address, r.code) for r in sink.rcpt_answers()] == [
        ("ok@dest.test", 250), ("tempfail-x@dest.test", 451),
        ("permfail-x@dest.test", 550), ("other@dest.test", 250)]


def test_tempfail_n_fails_n_times_then_accepts(sink):
    c = client(sink)
    codes = []
    for _ in range(4):
        assert c.mail("a@client.test")[0] == 250
        codes.append(c.rcpt("tempfail2-bob@dest.test")[0])
        c.rset()
    assert codes == [451, 451, 250, 250]
    assert sink.attempts("TempFail2-Bob@dest.test") == 4
    c.quit()


def test_slow_recipient_delays_the_data_reply(sink):
    c = client(sink)
    t0 = time.monotonic()
    code, _ = one_message(c, "slow0.4-x@dest.test")
    assert code == 250 and time.monotonic() - t0 >= 0.4
    c.quit()


def test_connections_and_transactions_per_connection_are_counted(sink):
    a, b = client(sink, "one.test"), client(sink, "two.test")
    H.wait_for(lambda: sink.active == 2, 5, what="2 active connections")
    for _ in range(3):
        assert one_message(a, "x@dest.test")[0] == 250
    assert one_message(b, "y@dest.test")[0] == 250
    a.quit()
    b.quit()
    H.wait_for(lambda: sink.active == 0, 5, what="connections closed")
    assert sink.total_connections == 2 and sink.max_concurrent == 2
    assert sorted(sink.per_connection_counts().values()) == [1, 3]
    by_ehlo = {c.ehlo: c.transactions for c in sink.connections()}
    assert by_ehlo == {"one.test": 3, "two.test": 1}
    assert len(sink.messages_to("x@dest.test")) == 3


def test_max_concurrent_tracks_simultaneous_sessions(sink):
    sink.data_delay = 0.3
    results = []

    def run(i):
        c = client(sink)
        results.append(one_message(c, f"u{i}@dest.test")[0])
        c.quit()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results == [250] * 4
    assert sink.max_concurrent == 4 and sink.total_connections == 4
    # QUIT returns on the client before the sink has seen the close.
    H.wait_for(lambda: sink.active == 0, timeout=10, what="sessions closed")
    sink.reset()
    assert sink.max_concurrent == 0 and sink.transactions() == []


def test_starttls_sink_records_tls_transactions(sink_cert):
    with SmtpSink(tls=sink_cert) as s:
        c = client(s)
        assert c.has_extn("starttls")
        c.starttls(context=H.noverify_context())
        c.ehlo("after-tls.test")
        assert one_message(c, "x@dest.test")[0] == 250
        c.quit()
        (t,) = s.wait_transactions(1)
        assert t.tls and t.ehlo == "after-tls.test"
        assert s.connections()[0].tls
        assert s.total_connections == 1


def test_banner_421_mode_greets_with_421_and_closes():
    with SmtpSink(banner_421=True) as s:
        raw = H.RawSmtp(s.host, s.port)
        r = raw.reply()
        assert r.code == 421 and r.text.startswith("4.3.2"), r
        assert raw.closed()
        raw.close()
        assert s.total_connections == 1 and s.transactions() == []


def test_sinks_on_two_loopback_addresses_share_a_port():
    port = free_port_on("127.0.0.1", "127.0.0.2")
    with SmtpSink("127.0.0.1", port, hostname="one.test") as a, \
            SmtpSink("127.0.0.2", port, hostname="two.test") as b:
        for s in (a, b):
            c = smtplib.SMTP(s.host, port, timeout=10)
            code, text = c.ehlo("x.test")
            assert text.splitlines()[0].decode() == s.hostname
            c.quit()
        assert a.total_connections == 1 and b.total_connections == 1
    # nothing listens on 127.0.0.3 at that port: connection refused
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.3", port), timeout=2)


def test_postfix_smtp_sink_counts_messages():
    with PostfixSink() as s:
        c = smtplib.SMTP(s.host, s.port, timeout=10)
        c.ehlo("x.test")
        for i in range(3):
            c.sendmail("a@client.test", [f"b{i}@dest.test"], "Subject: x\r\n\r\nbody\r\n")
        c.quit()
        assert s.wait_count(3, timeout=10) == 3
