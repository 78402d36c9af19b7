#!/usr/bin/python3
"""Write the seed corpora of tests/fuzz/corpus/<harness>/ (small, committed).
Protobuf seeds are encoded by hand from proto/*.proto (wire format: varint
keys, length-delimited sub-messages), so no protoc is needed. Run it again
after a schema change: python3 tests/fuzz/make_seeds.py"""
import hashlib
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def varint(n):
    out = b""
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def fv(num, n):        # varint field
    return varint(num << 3) + varint(n)


def fb(num, data):     # length-delimited field
    if isinstance(data, str):
        data = data.encode()
    return varint((num << 3) | 2) + varint(len(data)) + data


ID = "0123456789abcdef0123456789abcdef"


def enqueue():
    return (fb(1, bytes.fromhex(ID)) + fb(2, "dest.test") + fv(3, 7) + fv(4, 1)
            + fv(5, 1) + fv(5, 2) + fv(6, 1700000000000) + fv(7, 1700000000000)
            + fv(8, 1700086400000) + fv(10, 1234) + fb(11, b"\x11" * 32)
            + fb(12, "tenant") + fb(13, "camp") + fb(14, "pool") + fv(15, 1))


def commands():
    return [
        fb(1, enqueue()),
        fb(2, fb(1, bytes.fromhex(ID)) + fv(2, 1) + fv(3, 2) + fv(4, 1700000060000)
           + fb(5, "451 4.7.1 try later")),
        fb(3, fb(1, bytes.fromhex(ID)) + fv(2, 1) + fv(3, 1) + fv(4, 1700000001000)
           + fb(5, "250 ok")),
        fb(4, fv(1, 9) + fv(2, 1) + fb(3, fb(1, "dest.test")) + fb(4, "maintenance")
           + fv(5, 1800000000000)),
        fb(7, fv(1, 2) + fv(2, 2) + fv(3, 1) + fb(4, "127.0.0.1:7410")
           + fb(5, "tcp://127.0.0.1:7420") + fv(6, 100)),
        fb(8, fb(1, "mx:dest.test") + fv(2, 10) + fv(3, 60000) + fv(4, 1)),
        fb(6, fv(1, 1) + fb(2, fv(1, 0) + fv(2, 1) + fv(3, 1) + fv(3, 2))),
    ]


def raft_batch(cmds=None):
    """A Raft log entry: magic "KR\\1\\0", the batch length (4 bytes, big
    endian), the RaftBatch, zero padding to 8 bytes (cluster_msg.c)."""
    pb = fv(1, 1) + fv(2, 1700000000000) + fv(3, 5) + b"".join(
        fb(4, c) for c in (commands() if cmds is None else cmds))
    entry = b"KR\x01\x00" + struct.pack(">I", len(pb)) + pb
    return entry + b"\0" * (-len(entry) % 8)


def snapshot():
    chunk = (fv(1, 3) + fv(2, 1700000000000)
             + fb(4, fv(1, 1) + fv(2, 2) + fv(3, 1) + fb(4, "127.0.0.1:7410"))
             + fb(5, fv(1, 1) + fb(2, fv(1, 0) + fv(2, 1) + fv(3, 1)))
             + fb(7, fb(1, bytes.fromhex(ID)) + fv(2, 1700000000000)))
    return struct.pack(">I", len(chunk)) + chunk


def envelope(member, payload):
    return fv(1, 1) + fb(2, "test-cluster") + fv(3, 2) + fv(4, 77) + fb(member, payload)


def link_seeds():
    store = (fb(1, bytes.fromhex(ID)) + fv(2, 7) + fb(3, '{"sender":"a@b.test"}')
             + fb(4, "Subject: x\r\n\r\nhi\r\n")
             + fb(5, hashlib.sha256(b"x").digest()) + fv(6, 1700000000000))
    propose = b"".join(fb(1, c) for c in commands()) + fv(2, 5)
    return {
        "store_body": envelope(10, store),
        "fetch_body": envelope(12, fb(1, bytes.fromhex(ID)) + fv(2, 1 << 20)),
        "propose": envelope(16, propose),
        "propose_raw": propose,
        "propose_ack": envelope(17, fv(1, 1) + fv(2, 10) + fv(3, 1)
                                + fb(4, "tcp://127.0.0.1:7420")),
        "ping": envelope(18, fv(1, 2) + fv(2, 1) + fv(3, 9) + fv(4, 10)
                         + fb(5, fv(1, 3) + fv(2, 1)) + fb(7, "tcp://127.0.0.1:7421")),
        "status": envelope(22, fv(1, 1)),
        "status_report": envelope(23, fv(1, 2) + fb(2, "0.1.0") + fb(3, "follower")
                                  + fv(4, 3) + fv(5, 1)),
        "admin_add": envelope(24, fb(2, fv(1, 4) + fb(2, "127.0.0.1:7410")
                                     + fb(3, "tcp://127.0.0.1:7420"))),
        "admin_add_raw": fb(2, fv(1, 4) + fb(2, "127.0.0.1:7410")
                            + fb(3, "tcp://127.0.0.1:7420")),
        "admin_ack": envelope(25, fv(1, 0) + fb(2, "done") + fv(3, 12)),
        "admin_ack_raw": fv(1, 0) + fb(2, "done") + fv(3, 12),
    }


def inject_seeds():
    raw = {"envelope_sender": "noreply@example.test",
           "content": "Subject: hi {{ name }}\r\nTo: {{ to_header }}\r\n\r\n"
                      "Dear {{ name }}, {% if vip %}VIP {% endif %}{{ code|upper }}\r\n",
           "substitutions": {"code": "x1"},
           "recipients": [{"email": "ann@dest.test", "name": "Ann",
                           "substitutions": {"vip": True}},
                          {"email": "bob@dest.test", "name": "Bob \"B\" <x>"}]}
    builder = {"envelope_sender": "news@example.test",
               "content": {"from": {"email": "news@example.test", "name": "News {{ n }}"},
                           "reply_to": {"email": "r@example.test", "name": "R"},
                           "subject": "Hello {{ name }}",
                           "text_body": "text {{ email }}\nline 2",
                           "html_body": "<b>{{ name }}</b> caf\u00e9",
                           "headers": {"X-Campaign": "{{ campaign }}"},
                           "attachments": [{"data": "aGVsbG8=", "base64": True,
                                            "content_type": "text/plain",
                                            "file_name": "a \"b\".txt"},
                                           {"data": "inline", "content_id": "c1"}]},
               "substitutions": {"campaign": "c\r\n7", "n": 1},
               "recipients": [{"email": "ann@dest.test", "name": "Ann\r\nBcc: x@evil.test"},
                              {"email": "eve@dest.test", "name": "\u00c9ve"}]}
    return {"raw": json.dumps(raw), "builder": json.dumps(builder)}


SEEDS = {
    "fuzz_smtp_command": {
        "ehlo": "EHLO client.test", "mail": "MAIL FROM:<a@client.test> SIZE=100 BODY=8BITMIME",
        "mail_null": "MAIL FROM:<>", "rcpt": "RCPT TO:<@relay.test,@b.test:bob@dest.test>",
        "rcpt_utf8": "RCPT TO:<b\u00f6b@d\u00e9st.test>", "mail_utf8": "MAIL FROM:<\u00e4@x.test> SMTPUTF8",
        "literal": "RCPT TO:<bob@[192.0.2.1]>", "literal6": "RCPT TO:<bob@[IPv6:2001:db8::1]>",
        "quoted": "MAIL FROM:<\"a b\\\"c\"@x.test>", "auth": "AUTH PLAIN AGFsaWNlAHNlY3JldA==",
        "data": "DATA", "starttls": "STARTTLS",
    },
    "fuzz_smtp_data": {
        "plain": b"\x00\x00Subject: x\r\n\r\nhello\r\n.\r\n",
        "stuffed": b"\x01\x03\x05\x01\x07..leading dot\r\n.\r\nMAIL FROM:<a@b>\r\n",
        "bare_lf": b"\x02\x02\x01\x02line\nbare\rcr\r\n.\r\n",
        "long": b"\x00\x00" + b"x" * 100 + b"\r\n.\r\n",
        "split_end": b"\x00\x04\x01\x01\x01\x01a\r\n.\r\n",
    },
    "fuzz_headers": {
        "simple": "Subject: hi\r\nReceived: from a\r\n  by b\r\nTo: x@y\r\n\r\nbody\r\n",
        "folded": "X-A: one\r\n\ttwo\r\nreceived: r1\r\nReceived: r2\r\n\r\n",
        "nobody": "Subject: only headers\r\nFrom: a@b",
        "lf": "Subject: lf only\nTo: x\n\nbody\n",
    },
    "fuzz_smtp_client_reply": {
        "banner": b"\x05220 mx.dest.test ESMTP ready\r\n",
        "ehlo": b"\x10250-mx.dest.test hello\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n"
                b"250-8BITMIME\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250 SMTPUTF8\r\n",
        "enh": b"\x02550 5.1.1 <bob@dest.test>: user unknown\r\n",
        "multi": b"\x01451-4.7.1 first\r\n451-4.7.1 second\n451 4.7.1 third\r\n250 ok\r\n",
    },
    "fuzz_http_inject": inject_seeds(),
    "fuzz_http_template": {
        "vars": "Hi {{ name }} from {{ user.city }} #{{ user.tags[1] }} n={{ n }}",
        "if": "{% if vip %}VIP{% elif n > 2 %}many{% else %}none{% endif %}",
        "filters": "{{ name|upper }} {{ empty|default('x') }} {{ name | lower }}",
        "ws": "a {%- if vip -%} b {%- endif -%} c {# comment #}",
        "msg": "Subject: {{ name }}\r\nX-City: {{ user.city }}\r\n\r\n{{ name }}\r\n",
    },
    "fuzz_cluster_link": link_seeds(),
    "fuzz_cluster_raftlog": dict(
        {"batch": raft_batch(), "snapshot": snapshot(),
         "snapshot2": snapshot() + snapshot()},
        **{f"batch_cmd{i}": raft_batch([c]) for i, c in enumerate(commands())}),
}


def main():
    for harness, seeds in SEEDS.items():
        d = os.path.join(HERE, "corpus", harness)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds.items():
            if isinstance(data, str):
                data = data.encode()
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
