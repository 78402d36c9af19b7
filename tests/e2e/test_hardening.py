"""Client-facing hardening (issue 16 item 7, probe 2026-12): values from
outside never start a header of their own (HTTP injection: recipient
names, substitutions into raw content and builder headers)."""
import email
import email.header
import email.policy
import os
import re
import resource
import select
import socket
import time

import kumod_harness as H

import test_http_api as A

CAPTURE = """
kumo.on('http_message_generated', function(msg, auth)
  write(msg:recipient().user .. '.eml', msg:get_data())
end)
"""

EVIL = "Ann\r\nBcc: victim@evil.test\r\nX-Injected: yes"


def captured(k, user):
    with open(k.path(f"{user}.eml"), "rb") as f:
        return f.read()


def header_block(data):
    return data.split(b"\r\n\r\n", 1)[0]


def parsed(data):
    return email.message_from_bytes(data, policy=email.policy.compat32)


def decoded(value):
    return str(email.header.make_header(email.header.decode_header(value)))


# -- Header injection ----------------------------------------------------------

def test_recipient_name_with_crlf_cannot_add_headers(make_kumod):
    k = A.http_kumod(make_kumod, extra=CAPTURE)
    content = {"subject": "Hi {{ name }}", "text_body": "hello",
               "from": {"email": "news@example.test", "name": "{{ name }}"},
               "headers": {"X-Name": "{{ name }}"}}
    rcpts = [{"email": "built@dest.test", "name": EVIL},
             {"email": "ctl@dest.test", "name": "Eve\x1b[31m\x07red"}]
    status, reply = A.request_json(k, "POST", "/api/inject/v1",
                                   A.inject_body(rcpts, content=content))
    assert status == 200 and reply["success_count"] == 2, reply
    data = captured(k, "built")
    m = parsed(data)
    assert m.get_all("Bcc") is None and m.get_all("X-Injected") is None, data
    assert b"\r\nBcc:" not in header_block(data)
    assert "Ann" in decoded(m["To"]) and "built@dest.test" in m["To"]
    for name in ("To", "From", "Subject", "X-Name"):
        assert "Bcc: victim@evil.test" in decoded(m[name]).replace("\n", " ") \
            or "victim@evil.test" in decoded(m[name]), (name, m[name])
    data = captured(k, "ctl")
    hdrs = header_block(data)
    assert b"\x1b" not in hdrs and b"\x07" not in hdrs, hdrs
    # The bytes are kept, RFC 2047-encoded, not dropped.
    assert "\x1b[31m" in decoded(parsed(data)["To"])


def test_substitutions_into_raw_content_headers_cannot_add_headers(make_kumod):
    k = A.http_kumod(make_kumod, extra=CAPTURE)
    content = ("Subject: for {{ name }}\r\nTo: {{ to_header }}\r\n"
               "X-Code: {{ code }}\r\n\r\nDear {{ name }},\r\n{{ code }}\r\n")
    rcpts = [{"email": "raw@dest.test", "name": EVIL,
              "substitutions": {"code": "1\nBcc: other@evil.test"}}]
    status, reply = A.request_json(k, "POST", "/api/inject/v1",
                                   A.inject_body(rcpts, content=content))
    assert status == 200 and reply["success_count"] == 1, reply
    data = captured(k, "raw")
    m = parsed(data)
    assert m.get_all("Bcc") is None and m.get_all("X-Injected") is None, data
    assert m["X-Code"].startswith("1 Bcc: other@evil.test"), m["X-Code"]
    # In the body a substitution is copied as it is, line breaks included.
    assert data.split(b"\r\n\r\n", 1)[1] == (
        b"Dear " + EVIL.encode() + b",\r\n1\nBcc: other@evil.test\r\n")


def test_control_characters_in_addresses_and_header_names_are_refused(make_kumod):
    k = A.http_kumod(make_kumod)
    cases = [
        A.inject_body([{"email": "a\x01b@dest.test"}]),
        A.inject_body([{"email": "ok@dest.test"}],
                      content={"text_body": "x", "from": {"email": "n\tx@example.test"}}),
        A.inject_body([{"email": "ok@dest.test"}],
                      content={"text_body": "x", "from": {"email": "n@example.test"},
                               "headers": {"X-\x7fBad": "v"}}),
        A.inject_body([{"email": "ok@dest.test"}],
                      content={"text_body": "x", "from": {"email": "n@example.test"},
                               "reply_to": {"email": "r@example.test", "name": "R\x0bX"}}),
    ]
    cases[0]["envelope_sender"] = "noreply@example.test"
    for body in cases:
        status, reply = A.request_json(k, "POST", "/api/inject/v1", body)
        assert status == 400, (body, reply)


SMTP_CAPTURE = """
kumo.on('smtp_server_message_received', function(msg)
  write(msg:recipient().user .. '.eml', msg:get_data())
end)
"""


def test_smtp_commands_with_bare_lf_or_control_characters_get_501(make_kumod):
    k = make_kumod(extra=SMTP_CAPTURE)
    c = k.raw()
    assert c.reply().code == 220
    # A bare LF would otherwise reach Received: "from <EHLO domain>".
    assert c.cmd(b"EHLO a.test\nBcc: victim@evil.test").code == 501
    assert c.cmd(b"EHLO a\x1b.test").code == 501
    assert c.cmd(b"EHLO client.test").code == 250
    assert c.cmd(b"MAIL FROM:<a@client.test>\rX: y").code == 501
    assert c.cmd(b"MAIL FROM:<a@client.test>").code == 250
    assert c.cmd(b"RCPT TO:<bob@dest.test>").code == 250
    assert c.cmd(b"DATA").code == 354
    c.send(b"Subject: ok\r\n\r\nhi\r\n.\r\n")
    assert c.reply().code == 250
    hdrs = header_block(captured(k, "bob"))
    assert b"Bcc" not in hdrs and b"from client.test " in hdrs, hdrs


# -- DATA deadline (data_min_rate) ---------------------------------------------

def open_data(k):
    c = k.raw(timeout=30)
    assert c.reply().code == 220
    assert c.cmd("EHLO client.test").code == 250
    assert c.cmd("MAIL FROM:<a@client.test>").code == 250
    assert c.cmd("RCPT TO:<bob@dest.test>").code == 250
    assert c.cmd("DATA").code == 354
    return c


def test_data_trickled_below_min_rate_is_cut_after_client_timeout(make_kumod):
    k = make_kumod(listener={"client_timeout": "2s", "data_min_rate": 100})
    c = open_data(k)
    start = time.monotonic()
    reply = None
    # 2 bytes/s: each byte comes well within client_timeout, so the idle
    # timer alone would never fire.
    while time.monotonic() - start < 15 and reply is None:
        try:
            c.send(b"x")
        except OSError:
            break
        reply = c.try_reply(0.5)
    took = time.monotonic() - start
    if reply is None:
        assert c.closed(timeout=2), "the slow DATA was never cut"
        reply = H.SmtpReply(0, ["(closed)"])
    assert reply.code == 421 and "data transfer too slow" in reply.text, reply
    assert 2.0 <= took < 6.0, took
    assert c.closed(timeout=5)
    # A client at full speed in the same listener is served.
    big = "Subject: big\r\n\r\n" + ("y" * 70 + "\r\n") * 3000
    ids = k.send(msg=big)
    assert len(ids) == 1


def test_data_min_rate_zero_keeps_only_the_idle_timer(make_kumod):
    k = make_kumod(listener={"client_timeout": "2s", "data_min_rate": 0})
    c = open_data(k)
    start = time.monotonic()
    while time.monotonic() - start < 4:
        c.send(b"x")
        assert c.try_reply(0.5) is None
    c.send(b"\r\n.\r\n")
    assert c.reply().code == 250


def test_unknown_listener_parameter_is_still_refused(make_kumod):
    k = make_kumod(listener={"data_min_rat": 5}, start=False)
    try:
        k.start()
    except H.KumodStartError as e:
        assert "data_min_rat" in str(e)
    else:
        raise AssertionError("kumod started with a misspelt parameter")


# -- HTTP Basic: failed attempts are paced per peer ----------------------------

def basic_status(k, password, source="127.0.0.1"):
    import base64
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", k.http_port, timeout=60,
                                   source_address=(source, 0))
    auth = base64.b64encode(f"scott:{password}".encode()).decode()
    try:
        c.request("GET", "/metrics", headers={"Authorization": "Basic " + auth})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def test_failed_basic_attempts_are_delayed_per_peer(make_kumod):
    # 127.0.0.1 and 127.0.0.2 are both trusted, so right credentials get
    # 200 on /metrics; wrong ones get 401 from anyone.
    k = A.http_kumod(make_kumod, extra=A.AUTH_HANDLER,
                     trusted_hosts=["127.0.0.1", "127.0.0.2"])
    t0 = time.monotonic()
    for i in range(6):
        assert basic_status(k, f"wrong{i}") == 401
    slow = time.monotonic() - t0
    # Gaps of 0.1, 0.2, 0.4, 0.8, 1.6 s before attempts 2..6.
    assert slow >= 3.0, slow
    # Another peer is not slowed down by the guesser.
    t0 = time.monotonic()
    assert basic_status(k, "tiger", source="127.0.0.2") == 200
    assert basic_status(k, "wrong", source="127.0.0.2") == 401
    assert time.monotonic() - t0 < 1.5
    # The guessing peer's right password still works, after its turn,
    # and clears the delay.
    t0 = time.monotonic()
    assert basic_status(k, "tiger") == 200
    assert 2.5 <= time.monotonic() - t0 < 10
    t0 = time.monotonic()
    assert basic_status(k, "tiger") == 200
    assert time.monotonic() - t0 < 1.0


# -- Out of file descriptors ---------------------------------------------------

def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_low_fd_limit_refuses_connections_and_keeps_serving(make_kumod):
    k = A.http_kumod(make_kumod)
    pid = k.proc.pid
    base = open_fds(pid)
    limit = base + 100
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
    conns, greeted, refused = [], 0, 0
    try:
        for _ in range(250):
            try:
                c = socket.create_connection(("127.0.0.1", k.port), timeout=10)
            except OSError:
                refused += 1
                continue
            conns.append(c)
        # Connections refused while accepting pauses wait in the backlog:
        # read whatever comes within a few seconds, without blocking.
        replies = {}
        deadline = time.monotonic() + 5
        while len(replies) < len(conns) and time.monotonic() < deadline:
            ready, _, _ = select.select([c for c in conns if c not in replies],
                                        [], [], 0.2)
            for c in ready:
                try:
                    replies[c] = c.recv(200)
                except OSError:
                    replies[c] = b""
        for data in replies.values():
            if data.startswith(b"220"):
                greeted += 1
            else:
                assert data == b"" or data.startswith(b"421"), data
                refused += 1
        refused += len(conns) - len(replies)
        assert k.running(), k.log_tail()
        assert greeted > 20 and refused > 0, (greeted, refused)
        # The rest of the node keeps the reserve: it never got near the limit.
        assert open_fds(pid) < limit
    finally:
        for c in conns:
            c.close()
    H.wait_for(lambda: open_fds(pid) < base + 20, timeout=30, what="sessions closed")
    time.sleep(2.5)  # the episode ends after 2 s without a refusal
    # Still serving: SMTP, HTTP, and mail goes in.
    assert len(k.send()) == 1
    status, _, body = A.request(k, "GET", "/metrics")
    assert status == 200
    m = A.parse_prometheus(body.decode())
    assert m["kumod_connections_refused_fd_total"]["samples"]["esmtp_listener"] > 0
    log = k.log_text()
    assert log.count("refusing new connections until file descriptors are free") == 1, log
    assert "file descriptors free again: accepting" in log
    assert k.running() and k.stop() == 0


# -- The 250 for many recipients -----------------------------------------------

def test_250_for_1024_recipients_keeps_every_id_whole(make_kumod):
    k = make_kumod()
    c = k.raw(timeout=120)
    assert c.reply().code == 220
    assert c.cmd("EHLO client.test").code == 250
    cmds = [b"MAIL FROM:<a@client.test>\r\n"]
    cmds += [f"RCPT TO:<r{i}@dest.test>\r\n".encode() for i in range(1024)]
    c.send(b"".join(cmds))
    for _ in cmds:
        assert c.reply().code == 250
    assert c.cmd("DATA").code == 354
    c.send(b"Subject: many\r\n\r\nhi\r\n.\r\n")
    raw = b""
    while not re.search(rb"(^|\r\n)250 [^\r\n]*\r\n", raw):
        chunk = c.sock.recv(65536)
        assert chunk, raw[-200:]
        raw += chunk
    lines = raw.split(b"\r\n")[:-1]
    assert len(lines) > 1
    for i, line in enumerate(lines):
        assert len(line) + 2 <= 512, len(line)  # RFC 5321 4.5.3.1.5
        assert line[:4] == (b"250 " if i == len(lines) - 1 else b"250-"), line
    text = " ".join(line[4:].decode() for line in lines)
    assert text.startswith("OK ids=")
    ids = text[len("OK ids="):].split()
    assert len(ids) == 1024 and len(set(ids)) == 1024
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids), ids[:3]
    # smtplib's view (lines joined by \n) still parses.
    assert len(H.parse_ids("\n".join(line[4:].decode() for line in lines))) == 1024
    recs = k.wait_records(lambda r: [x for x in r if x.get("type") == "Reception"]
                          if len([x for x in r if x.get("type") == "Reception"]) >= 1024
                          else None, timeout=60, what="1024 Reception records")
    assert {r["id"] for r in recs} == set(ids)


# -- Templates found by fuzz_http_template -------------------------------------

def test_deeply_nested_template_gets_422_and_kumod_lives(make_kumod):
    k = A.http_kumod(make_kumod, request_body_limit=4 * 1024 * 1024)
    content = "Subject: x\r\n\r\n" + "{% if 1 %}" * 100000 + "x" + "{% endif %}" * 100000
    status, reply = A.request_json(k, "POST", "/api/inject/v1",
                                   A.inject_body([{"email": "a@dest.test"}], content=content))
    assert status == 422 and "nested too deeply" in reply["error"], reply
    assert k.running()
    status, _, _ = A.request(k, "GET", "/api/check-liveness/v1")
    assert status == 200
