"""A 250 survives kill -9, and SIGTERM shuts down cleanly (KUMOMTA-API.md
§1.5, §4, scenarios 17-18)."""
import errno
import socket
import time

import kumod_harness as H

ENUMERATED = """
kumo.on('spool_message_enumerated', function(msg)
  append('enumerated.txt', msg:id())
end)
"""


# -- Helpers -------------------------------------------------------------------

def listener_refuses(port):
    """True once the listener no longer takes sessions: connection refused,
    or a 421 greeting."""
    try:
        c = socket.create_connection(("127.0.0.1", port), timeout=2)
    except OSError as e:
        return e.errno == errno.ECONNREFUSED or isinstance(e, ConnectionRefusedError)
    try:
        c.settimeout(2)
        data = c.recv(512)
        return data == b"" or data.startswith(b"421")
    except OSError:
        return True
    finally:
        c.close()


# -- Tests ---------------------------------------------------------------------

def test_kill9_after_250_then_restart_recovers_every_accepted_message(make_kumod):
    # dest.test is NXDOMAIN in the fake DNS: nothing can leave the queue.
    k = make_kumod(extra=ENUMERATED)
    accepted = []
    s = k.smtp(ehlo="client.test")
    for i in range(20):
        code, text = H.send_message(s, rcpts=(f"user{i}@dest.test",),
                                    msg=H.make_message(subject=f"durable {i}"))
        assert code == 250, f"message {i}: {code} {text}"
        accepted += H.parse_ids(text)
    assert k.kill9() == -9
    s.close()
    assert len(set(accepted)) == 20
    assert not k.path("enumerated.txt").exists()
    k.start()
    assert k.recovered_count() == 20, k.log_tail()
    seen = k.path("enumerated.txt").read_text().split()
    assert sorted(seen) == sorted(accepted), "spool_message_enumerated ids differ from the 250s"
    # and the recovered messages are still there after a clean restart
    k.restart()
    assert k.recovered_count() == 20


def test_sigterm_mid_transaction_gets_421_exit_0_and_complete_segments(make_kumod):
    k = make_kumod()
    s = k.smtp(ehlo="client.test")
    code, text = H.send_message(s)
    assert code == 250, text
    (mid,) = H.parse_ids(text)
    s.close()

    raw = k.raw()
    assert raw.reply().code == 220
    assert raw.cmd("EHLO client.test").code == 250
    assert raw.cmd("MAIL FROM:<a@client.test>").code == 250
    k.signal(15)
    H.wait_for(lambda: listener_refuses(k.port), 10, what="listener to stop taking sessions")
    # KumoMTA says 421 at once; kumod at the next command. Read a reply
    # already sent before writing, so a reset cannot discard it.
    r = raw.try_reply(0.5)
    if r is None:
        raw.send("RCPT TO:<b@dest.test>\r\n")
        r = raw.reply()
    assert str(r) == "421 4.3.2 mx.example.test shutting down", r
    assert raw.closed()
    raw.close()

    assert k.wait_exit() == 0, k.log_tail()
    segs = k.segments()
    assert segs, "no log segment written"
    for seg in segs:
        assert H.read_segment(seg) is not None, f"{seg.name} is not a complete zstd segment"
        assert not seg.stat().st_mode & 0o222, f"{seg.name} still writable after shutdown"
    assert any(r["id"] == mid for r in k.records("Reception"))


def test_sigterm_with_idle_session_exits_0(make_kumod):
    k = make_kumod()
    raw = k.raw()
    assert raw.reply().code == 220
    t0 = time.monotonic()
    assert k.stop() == 0
    assert time.monotonic() - t0 < 20
    # the session is closed; if anything was said, it was the 421
    assert raw.closed(timeout=5)
    if raw.buf:
        assert raw.buf == b"421 4.3.2 mx.example.test shutting down\r\n", raw.buf


def test_new_connections_are_refused_after_shutdown(make_kumod):
    k = make_kumod()
    assert k.stop() == 0
    assert listener_refuses(k.port)
