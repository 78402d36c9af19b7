"""Listener limits (KUMOMTA-API.md §2.2-2.3, scenarios 7-8):
max_message_size, max_recipients_per_message, line_length_hard_limit,
client_timeout, invalid_line_endings, non-UTF-8 commands."""
import re
import time

import kumod_harness as H

SAVE_DATA = """
kumo.on('smtp_server_message_received', function(msg, conn_meta)
  write('msg-' .. msg:id() .. '.eml', msg:get_data())
end)
"""


# -- Helpers -------------------------------------------------------------------

def session(k):
    s = k.raw()
    assert s.reply().code == 220
    assert s.cmd("EHLO client.test").code == 250
    return s


def envelope(s, rcpts=("b@dest.test",)):
    assert s.cmd("MAIL FROM:<a@client.test>").code == 250
    for r in rcpts:
        rep = s.cmd(f"RCPT TO:<{r}>")
        assert rep.code == 250, rep
    rep = s.cmd("DATA")
    assert rep.code == 354, rep


def send_data(s, data):
    s.send(data)
    return s.reply()


# -- Tests ---------------------------------------------------------------------

def test_message_over_max_message_size_gets_552_and_session_continues(make_kumod):
    k = make_kumod(listener={"max_message_size": 4096})
    s = session(k)
    envelope(s)
    big = b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 200 + b".\r\n"  # ~14 KB
    r = send_data(s, big)
    assert (r.code, r.text) == (552, "5.3.4 message too big"), r
    envelope(s)
    r = send_data(s, b"Subject: small\r\n\r\nsmall\r\n.\r\n")
    assert r.code == 250 and len(H.parse_ids(r.text)) == 1, r
    s.cmd("QUIT")
    assert k.stop() == 0
    assert any(x["response"]["code"] == 552 for x in k.records("Rejection")), k.records()


def test_too_many_recipients_get_452_and_the_rest_are_kept(make_kumod):
    k = make_kumod(listener={"max_recipients_per_message": 3})
    s = session(k)
    assert s.cmd("MAIL FROM:<a@client.test>").code == 250
    for i in range(3):
        assert s.cmd(f"RCPT TO:<r{i}@dest.test>").code == 250
    r = s.cmd("RCPT TO:<r3@dest.test>")
    assert (r.code, r.text) == (452, "4.5.3 too many recipients"), r
    assert s.cmd("DATA").code == 354
    r = send_data(s, b"Subject: three\r\n\r\nhi\r\n.\r\n")
    assert r.code == 250 and len(H.parse_ids(r.text)) == 3, r
    s.cmd("QUIT")


def test_command_line_over_998_bytes_gets_500_and_session_continues(kumod):
    s = session(kumod)
    r = s.cmd("NOOP " + "x" * 1100)
    assert (r.code, r.text) == (500, "5.2.3 line too long"), r
    assert s.cmd("NOOP").code == 250
    s.close()


def test_data_line_over_line_length_hard_limit_is_refused(make_kumod):
    k = make_kumod(listener={"line_length_hard_limit": 200})
    s = session(k)
    envelope(s)
    r = send_data(s, b"Subject: long\r\n\r\n" + b"y" * 300 + b"\r\n.\r\n")
    assert r.code == 500 and r.text.startswith("5.2.3 line too long"), r
    assert s.cmd("NOOP").code == 250
    s.close()


def test_idle_client_gets_421_after_client_timeout(make_kumod):
    k = make_kumod(listener={"client_timeout": "2s"})
    s = session(k)
    t0 = time.monotonic()
    s.sock.settimeout(15)
    r = s.reply()
    waited = time.monotonic() - t0
    assert (r.code, r.text) == (421, "4.3.2 mx.example.test idle too long"), r
    assert 1.5 <= waited <= 10, f"timed out after {waited:.1f}s, want ~2s"
    assert s.closed()


def test_bare_lf_is_rejected_under_default_deny(make_kumod):
    k = make_kumod(extra=SAVE_DATA)
    s = session(k)
    envelope(s)
    r = send_data(s, b"Subject: lf\nFrom: a@client.test\n\nline one\nline two\r\n.\r\n")
    assert 500 <= r.code < 600, r
    # the session survives and a clean message still goes through
    envelope(s)
    r = send_data(s, b"Subject: crlf\r\n\r\nok\r\n.\r\n")
    assert r.code == 250, r
    s.cmd("QUIT")
    assert k.stop() == 0
    assert len(k.records("Reception")) == 1


def test_bare_lf_is_fixed_to_crlf_under_fix(make_kumod):
    k = make_kumod(listener={"invalid_line_endings": "Fix"}, extra=SAVE_DATA)
    s = session(k)
    envelope(s)
    r = send_data(s, b"Subject: lf\nFrom: a@client.test\n\nline one\nline two\r\n.\r\n")
    assert r.code == 250, r
    (mid,) = H.parse_ids(r.text)
    s.cmd("QUIT")
    data = H.wait_for(lambda: k.path(f"msg-{mid}.eml").exists()
                      and k.path(f"msg-{mid}.eml").read_bytes(), 5, what="saved message")
    assert re.search(rb"(?<!\r)\n", data) is None, f"bare LF left in {data!r}"
    assert b"Subject: lf\r\nFrom: a@client.test\r\n\r\nline one\r\nline two\r\n" in data, data


def test_bare_lf_is_kept_under_allow(make_kumod):
    k = make_kumod(listener={"invalid_line_endings": "Allow"}, extra=SAVE_DATA)
    s = session(k)
    envelope(s)
    r = send_data(s, b"Subject: lf\nFrom: a@client.test\n\nline one\nline two\r\n.\r\n")
    assert r.code == 250, r
    (mid,) = H.parse_ids(r.text)
    data = H.wait_for(lambda: k.path(f"msg-{mid}.eml").exists()
                      and k.path(f"msg-{mid}.eml").read_bytes(), 5, what="saved message")
    assert b"line one\nline two" in data


def test_non_utf8_command_gets_501_and_session_continues(kumod):
    s = session(kumod)
    r = s.cmd(b"NOOP \xff\xfe\xc3(")
    assert r.code == 501 and r.text.startswith("5.5.2"), r
    assert s.cmd("NOOP").code == 250
    assert s.cmd("MAIL FROM:<a@client.test>").code == 250
    s.close()


def test_dot_stuffed_lines_are_unstuffed(make_kumod):
    k = make_kumod(extra=SAVE_DATA)
    s = session(k)
    envelope(s)
    r = send_data(s, b"Subject: dots\r\n\r\n..leading dot\r\n...\r\n.\r\n")
    assert r.code == 250, r
    (mid,) = H.parse_ids(r.text)
    data = H.wait_for(lambda: k.path(f"msg-{mid}.eml").exists()
                      and k.path(f"msg-{mid}.eml").read_bytes(), 5, what="saved message")
    assert data.endswith(b"\r\n.leading dot\r\n..\r\n"), data
