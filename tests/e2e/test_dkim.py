"""DKIM signing (docs/dkim.md; KumoMTA's kumo.dkim.rsa_sha256_signer,
kumo.dkim.ed25519_signer, msg:dkim_sign): kumod signs mail it relays to a
sink, and dkimpy (Debian's python3-dkim, an independent implementation)
verifies every message it receives, its DNS lookups answered from this
test's key records; OpenDKIM (`opendkim -t`) checks the dual-signed
bodies and every canonicalization as a second verifier. RSA + Ed25519 on one message, two domains, every
canonicalization, awkward bodies, the RFC 8058 headers in h=, a tampered
copy failing, over-signing, the signer cache, HTTP injection, and the
errors: named at --validate, or a 4xx at run time with the reason logged."""
import base64
import json
import re
import smtplib
import subprocess
import urllib.request

import dkim
import pytest

import kumod_harness as H

# -- Fixture / helpers ---------------------------------------------------------


def openssl(*args, data=None):
    return subprocess.run(["openssl", *args], input=data, capture_output=True,
                          check=True, timeout=60).stdout


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Fresh keys: {'rsa': path, 'ed': path, 'records': {dns name: TXT}}.
    The TXT records are what docs/dkim.md tells users to publish."""
    d = tmp_path_factory.mktemp("dkim-keys")
    rsa, ed, rsa2 = d / "rsa.pem", d / "ed.pem", d / "other-rsa.pem"
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
            "-out", str(rsa))
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024",
            "-out", str(rsa2))
    openssl("genpkey", "-algorithm", "ed25519", "-out", str(ed))

    def spki(path):
        return openssl("pkey", "-in", str(path), "-pubout", "-outform", "DER")

    rsa_p = base64.b64encode(spki(rsa)).decode()
    rsa2_p = base64.b64encode(spki(rsa2)).decode()
    # RFC 8463 4.2: p= is the bare 32-byte Ed25519 key, not an SPKI.
    ed_p = base64.b64encode(spki(ed)[-32:]).decode()
    records = {
        "rsa1._domainkey.example.test.": f"v=DKIM1; k=rsa; p={rsa_p}",
        "ed1._domainkey.example.test.": f"v=DKIM1; k=ed25519; p={ed_p}",
        "other._domainkey.other.test.": f"v=DKIM1; k=rsa; p={rsa2_p}",
    }
    return {"rsa": rsa, "ed": ed, "rsa2": rsa2, "records": records, "dir": d}


def dnsfunc_for(records):
    def dnsfunc(name, timeout=5):
        return records.get(name.decode("ascii") if isinstance(name, bytes) else name,
                           "").encode() or None
    return dnsfunc


def signatures(data):
    """The DKIM-Signature fields of a message, unfolded, top first."""
    return [v for n, v in H.unfold_headers(data) if n.lower() == "dkim-signature"]


def tags(sig):
    out = {}
    for part in sig.split(";"):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = re.sub(r"\s+", "", v)
    return out


def verify_all(data, records, n):
    """Assert the message has n signatures and dkimpy verifies each one."""
    sigs = signatures(data)
    assert len(sigs) == n, f"expected {n} DKIM-Signature fields, got {sigs}"
    d = dkim.DKIM(data)
    for i in range(n):
        assert d.verify(idx=i, dnsfunc=dnsfunc_for(records)), \
            f"signature {i} does not verify: {sigs[i]}\n{data[:2000]!r}"
    return sigs


def opendkim_results(data, records, tmp):
    """Debian's OpenDKIM (a second independent verifier, `opendkim -t`
    in test mode with the key records from a file): its verdict per
    signature, {selector: 'pass' | 'fail'}."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "keys.txt").write_text(
        "".join(f"{n.rstrip('.')} {v}\n" for n, v in records.items()))
    (tmp / "msg.eml").write_bytes(data)
    (tmp / "opendkim.conf").write_text(
        f"Syslog no\nMode v\nTestPublicKeys {tmp / 'keys.txt'}\nAlwaysAddARHeader yes\n")
    r = subprocess.run(["/usr/sbin/opendkim", "-x", str(tmp / "opendkim.conf"), "-vvv",
                        "-t", str(tmp / "msg.eml")], capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    # its Authentication-Results: "dkim=pass (...) header.d=... header.s=ed1 ..."
    return {sel: verdict for verdict, sel in
            re.findall(r"dkim=(\w+)[^;]*?header\.s=([\w.-]+)", out)}


def verifies(data, records, idx=0):
    return dkim.DKIM(data).verify(idx=idx, dnsfunc=dnsfunc_for(records))


def lua_path(p):
    return H.lua_str(str(p))


HEADERS = ("{'From', 'To', 'Subject', 'Date', 'Message-ID', 'List-Unsubscribe', "
           "'List-Unsubscribe-Post'}")


def signing_policy(keys, sink, event="smtp_server_message_received", body="", http=None):
    """A delivery policy whose `event` handler runs `body` (Lua, with
    RSA_KEY, ED_KEY, OTHER_KEY and HEADERS defined) for each message."""
    pol = H.delivery_policy(path=H.sink_path(sink.port), extra=f"""
local RSA_KEY = {lua_path(keys['rsa'])}
local ED_KEY = {lua_path(keys['ed'])}
local OTHER_KEY = {lua_path(keys['rsa2'])}
local HEADERS = {HEADERS}
kumo.on('{event}', function(msg)
{body}
end)
""")
    if http is not None:
        pol["init_extra"] += f"  kumo.start_http_listener {{ listen = '127.0.0.1:{http}' }}\n"
    return pol


DUAL = """
  local user = msg:recipient().user
  local hc, bc = user:match('^c%-(%a+)%-(%a+)$')
  msg:dkim_sign(kumo.dkim.rsa_sha256_signer {
    domain = 'example.test', selector = 'rsa1', headers = HEADERS, key = RSA_KEY,
    header_canonicalization = hc or 'Relaxed', body_canonicalization = bc or 'Relaxed',
  })
  msg:dkim_sign(kumo.dkim.ed25519_signer {
    domain = 'example.test', selector = 'ed1', headers = HEADERS, key = ED_KEY,
    header_canonicalization = hc or 'Relaxed', body_canonicalization = bc or 'Relaxed',
  })
"""

RFC8058 = ("List-Unsubscribe: <https://example.test/u/123>,\r\n <mailto:u@example.test>\r\n"
           "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")


def metric(k, port, name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def send_raw(k, rcpt, data, smtputf8=False):
    s = smtplib.SMTP("127.0.0.1", k.port, timeout=30)
    s.ehlo("client.test")
    opts = ["BODY=8BITMIME"] + (["SMTPUTF8"] if smtputf8 else [])
    s.sendmail("alice@client.test", [rcpt], data, mail_options=opts)
    s.quit()


# -- Tests ---------------------------------------------------------------------

BODIES = {
    "plain": "hello\r\n",
    "trailing-blank-lines": "hello\r\n\r\n\r\n\r\n",
    "empty": "",
    "long-lines": ("x" * 990 + "\r\n") * 5 + "words   with \t spaces   \r\n",
    "dot-stuffed": ".leading dot\r\n..two dots\r\n.\r\nend\r\n",
    "utf8": "Gr\u00fc\u00dfe, caf\u00e9, \u65e5\u672c\r\n",
}


def test_rsa_and_ed25519_on_one_message_verify_for_every_body(make_kumod, fakedns, sink, keys,
                                                              tmp_path):
    H_port = H.free_port()
    fakedns.add_mx("dest.test", "mx1.dest.test")
    fakedns.add_a("mx1.dest.test", "127.0.0.1")
    k = make_kumod(**signing_policy(keys, sink, body=DUAL, http=H_port))
    for name, body in BODIES.items():
        msg = H.make_message(subject=f"dkim {name}", body=body, extra_headers=RFC8058)
        send_raw(k, "bob@dest.test", msg.encode("utf-8"))
    txs = sink.wait_transactions(len(BODIES))
    for t in txs:
        sigs = verify_all(t.data, keys["records"], 2)
        top, second = tags(sigs[0]), tags(sigs[1])
        # dkim_sign order: RSA first, so the Ed25519 one is on top
        assert (top["a"], second["a"]) == ("ed25519-sha256", "rsa-sha256")
        for tg in (top, second):
            assert tg["d"] == "example.test" and tg["c"] == "relaxed/relaxed"
            h = tg["h"].lower().split(":")
            assert "list-unsubscribe" in h and "list-unsubscribe-post" in h, tg
            assert "l" not in tg
        # OpenDKIM agrees.
        odk = tmp_path / f"odk{t.conn_id}"
        assert opendkim_results(t.data, keys["records"], odk) == \
            {"ed1": "pass", "rsa1": "pass"}, t.data[:300]
        # A tampered copy fails both, at both verifiers.
        bad = t.data.replace(b"Subject: dkim", b"Subject: DKIM", 1)
        assert bad != t.data
        assert not verifies(bad, keys["records"], 0)
        assert not verifies(bad, keys["records"], 1)
        assert opendkim_results(bad, keys["records"], odk) == \
            {"ed1": "fail", "rsa1": "fail"}
        bad = t.data.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
                             b"List-Unsubscribe-Post: List-Unsubscribe=Two-Click", 1)
        assert not verifies(bad, keys["records"], 0)
    dot = next(t for t in txs if b"dkim dot-stuffed" in t.data)
    assert b"\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n" in dot.data
    # A signer built per message is made (and its PEM parsed) once: two
    # signer configurations, len(BODIES) messages each.
    assert metric(k, H_port, "dkim_signer_cache_miss") == 2
    assert metric(k, H_port, "dkim_key_cache_miss") == 2
    assert metric(k, H_port, "dkim_signer_cache_hit") == 2 * (len(BODIES) - 1)
    assert metric(k, H_port, 'dkim_signatures_made{algorithm="rsa-sha256"}') == len(BODIES)
    assert metric(k, H_port, 'dkim_signatures_made{algorithm="ed25519-sha256"}') == len(BODIES)
    assert metric(k, H_port, "dkim_signer_sign_count") == len(BODIES)
    assert metric(k, H_port, "dkim_signer_sign_sum") > 0


@pytest.mark.parametrize("hc,bc", [("Simple", "Simple"), ("Simple", "Relaxed"),
                                   ("Relaxed", "Simple")])
def test_every_canonicalization_verifies(make_kumod, fakedns, sink, keys, hc, bc, tmp_path):
    fakedns.add_mx("dest.test", "mx1.dest.test")
    fakedns.add_a("mx1.dest.test", "127.0.0.1")
    k = make_kumod(**signing_policy(keys, sink, body=DUAL))
    body = "a  line \t with  space\r\n\r\n.dot\r\n" + "y" * 900 + "\r\n\r\n\r\n"
    msg = H.make_message(subject="folded\r\n   subject  line", body=body,
                         extra_headers=RFC8058)
    send_raw(k, f"c-{hc}-{bc}@dest.test", msg.encode())
    (t,) = sink.wait_transactions(1)
    sigs = verify_all(t.data, keys["records"], 2)
    assert tags(sigs[0])["c"] == f"{hc.lower()}/{bc.lower()}"
    assert opendkim_results(t.data, keys["records"], tmp_path / "odk") == \
        {"ed1": "pass", "rsa1": "pass"}


def test_smtputf8_message_verifies(make_kumod, fakedns, sink, keys):
    fakedns.add_mx("dest.test", "mx1.dest.test")
    fakedns.add_a("mx1.dest.test", "127.0.0.1")
    k = make_kumod(**signing_policy(keys, sink, body=DUAL))
    msg = ("From: J\u00fcrgen <j\u00fcrgen@example.test>\r\nTo: bob@dest.test\r\n"
           "Subject: \u00e9t\u00e9\r\nMessage-ID: <u8@example.test>\r\n\r\n"
           "\u00fcber alles\r\n")
    send_raw(k, "bob@dest.test", msg.encode("utf-8"), smtputf8=True)
    (t,) = sink.wait_transactions(1)
    verify_all(t.data, keys["records"], 2)


def test_two_domains_sign_one_message(make_kumod, fakedns, sink, keys):
    fakedns.add_mx("dest.test", "mx1.dest.test")
    fakedns.add_a("mx1.dest.test", "127.0.0.1")
    body = """
  msg:dkim_sign(kumo.dkim.rsa_sha256_signer {
    domain = 'example.test', selector = 'rsa1', headers = { 'From', 'Subject' }, key = RSA_KEY,
  })
  msg:dkim_sign(kumo.dkim.rsa_sha256_signer {
    domain = 'other.test', selector = 'other', headers = { 'From', 'To' },
    key = { key_data = io.open(OTHER_KEY):read('a') }, expiration = 3600,
  })
"""
    k = make_kumod(**signing_policy(keys, sink, body=body))
    k.send(rcpts=("bob@dest.test",))
    (t,) = sink.wait_transactions(1)
    sigs = [tags(s) for s in verify_all(t.data, keys["records"], 2)]
    assert [s["d"] for s in sigs] == ["other.test", "example.test"]
    assert int(sigs[0]["x"]) == int(sigs[0]["t"]) + 3600


def test_over_sign_makes_an_added_header_break_the_signature(make_kumod, fakedns, sink, keys):
    fakedns.add_mx("dest.test", "mx1.dest.test")
    fakedns.add_a("mx1.dest.test", "127.0.0.1")
    body = """
  msg:dkim_sign(kumo.dkim.ed25519_signer {
    domain = 'example.test', selector = 'ed1', headers = { 'From', 'Subject' }, key = ED_KEY,
    over_sign = msg:recipient().user == 'over',
  })
"""
    k = make_kumod(**signing_policy(keys, sink, body=body))
    k.send(rcpts=("plain@dest.test",))
    k.send(rcpts=("over@dest.test",))
    txs = sink.wait_transactions(2)
    by_rcpt = {t.rcpt_tos[0].split("@")[0]: t.data for t in txs}
    for who, data in by_rcpt.items():
        verify_all(data, keys["records"], 1)
        # A replayer adds a second Subject (and From) above the signed ones.
        forged = data.replace(b"From: alice", b"Subject: FREE MONEY\r\nFrom: alice", 1)
        assert forged != data
        if who == "over":
            assert tags(signatures(data)[0])["h"] == "From:From:Subject:Subject"
            assert not verifies(forged, keys["records"])
        else:
            # Without over-signing the bottom-up selection still finds the
            # original: the forgery passes. This is why over_sign exists.
            assert verifies(forged, keys["records"])


def test_http_injected_message_is_signed(make_kumod, fakedns, sink, keys):
    fakedns.add_mx("dest.test", "mx1.dest.test")
    fakedns.add_a("mx1.dest.test", "127.0.0.1")
    port = H.free_port()
    k = make_kumod(**signing_policy(keys, sink, event="http_message_generated", body=DUAL,
                                    http=port))
    H.wait_for(lambda: urllib.request.urlopen(
        f"http://127.0.0.1:{port}/api/check-liveness/v1", timeout=5).status == 200,
        timeout=20, what="liveness")
    body = {"envelope_sender": "alice@example.test",
            "content": "From: alice@example.test\r\nSubject: via http\r\n\r\nhi\r\n",
            "recipients": [{"email": "bob@dest.test"}]}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/inject/v1",
                                 data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    assert urllib.request.urlopen(req, timeout=30).status == 200
    # Bare LF line ends: kumod signs (and sends) the CRLF form.
    body["content"] = "From: alice@example.test\nSubject: bare LF\n\nline\n.dot\n"
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/inject/v1",
                                 data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    assert urllib.request.urlopen(req, timeout=30).status == 200
    for t in sink.wait_transactions(2):
        verify_all(t.data, keys["records"], 2)
        assert b"\n" not in t.data.replace(b"\r\n", b"")


def validate(fakedns, tmp_path, extra):
    lst = H.default_listener(H.free_port())
    pol = tmp_path / "policy.lua"
    pol.write_text(H.render_policy(tmp_path, fakedns.port, lst, extra=extra))
    r = H.run_kumod(["--policy", str(pol), "--validate", *H.user_args()])
    return r.returncode, r.stdout + r.stderr


@pytest.mark.parametrize("params,needle", [
    ("key = '/nonexistent/dkim.pem'", "key file '/nonexistent/dkim.pem'"),
    ("key = ED_KEY", "needs an RSA key"),
    ("key = { key_data = 'junk' }", "key key_data: is not an RSA private key"),
    ("key = { vault_mount = 'secret', vault_path = 'dkim' }",
     "kumod does not read keys from HashiCorp Vault"),
    ("key = RSA_KEY, body_length = true", "parameter 'body_length': not supported"),
    ("key = RSA_KEY, selectr = 'x'", "unknown parameter 'selectr'"),
    ("key = RSA_KEY, header_canonicalization = 'Loose'",
     "parameter 'header_canonicalization' must be \"Relaxed\" or \"Simple\""),
    ("key = RSA_KEY, agent_user_identifier = 'a@elsewhere.test'",
     "parameter 'agent_user_identifier'"),
    ("key = RSA_KEY, headers = { 'From', string.rep('X', 200) }",
     "parameter 'headers[2]' must have 1 to 128 characters"),
    ("key = RSA_KEY, expiration = -5", "parameter 'expiration' must be a number"),
    ("key = RSA_KEY, ttl = 'soon'", "parameter 'ttl' must be a number of seconds"),
    ("key = RSA_KEY, atpsh = 'sha256'", "parameter 'atpsh' needs 'atps'"),
])
def test_validate_names_the_bad_key_file_or_parameter(fakedns, tmp_path, keys, params, needle):
    extra = f"""
local RSA_KEY = {lua_path(keys['rsa'])}
local ED_KEY = {lua_path(keys['ed'])}
local SIGNER = kumo.dkim.rsa_sha256_signer {{
  domain = 'example.test', selector = 'rsa1', headers = {{ 'From' }}, {params}
}}
"""
    rc, out = validate(fakedns, tmp_path, extra)
    assert rc != 0, out
    assert needle in out, out
    assert "policy.lua:" in out, out


def test_validate_refuses_bad_selector_and_headers_without_from(fakedns, tmp_path, keys):
    for params, needle in [
            ("selector = 'bad selector', headers = { 'From' }",
             "parameter 'selector': 'bad selector' is not a valid selector"),
            ("selector = 's', headers = { 'To' }", "must include 'From'"),
            ("headers = { 'From' }", "parameter 'selector' is required")]:
        extra = f"""
kumo.dkim.ed25519_signer {{ domain = 'example.test', key = {lua_path(keys['ed'])}, {params} }}
"""
        rc, out = validate(fakedns, tmp_path, extra)
        assert rc != 0 and needle in out, out


def test_validate_accepts_a_good_signer(fakedns, tmp_path, keys):
    extra = f"""
local S = kumo.dkim.ed25519_signer {{ domain = 'example.test', selector = 'ed1',
  headers = {{ 'From', 'To' }}, key = {lua_path(keys['ed'])}, ttl = '10 min',
  atps = 'sender.test', reporting = true, agent_user_identifier = '@mail.example.test' }}
assert(tostring(S) == 'DkimSigner(ed25519-sha256)')
"""
    rc, out = validate(fakedns, tmp_path, extra)
    assert rc == 0, out


def test_key_missing_at_run_time_gives_4xx_and_logs_why(make_kumod, fakedns, sink, keys, tmp_path):
    fakedns.add_mx("dest.test", "mx1.dest.test")
    fakedns.add_a("mx1.dest.test", "127.0.0.1")
    missing = tmp_path / "gone.pem"
    body = f"""
  msg:dkim_sign(kumo.dkim.rsa_sha256_signer {{
    domain = 'example.test', selector = 'rsa1', headers = {{ 'From' }},
    key = {lua_path(missing)} }})
"""
    port = H.free_port()
    k = make_kumod(**signing_policy(keys, sink, body=body, http=port))
    s = smtplib.SMTP("127.0.0.1", k.port, timeout=30)
    s.ehlo("client.test")
    with pytest.raises(smtplib.SMTPDataError) as e:
        s.sendmail("alice@client.test", ["bob@dest.test"], H.make_message())
    assert 400 <= e.value.smtp_code < 500, e.value
    s.quit()
    k.wait_log(re.escape(f"key file '{missing}'"))
    # Nothing was accepted, so nothing is sent unsigned.
    assert k.records("Reception") == []
    assert sink.transactions() == []
    assert metric(k, port, "dkim_signer_creation_failed") == 1


def test_a_slow_signature_does_not_stall_other_sessions(make_kumod, fakedns, sink, keys):
    """Signing runs on the thread pool: while a large message is being
    signed, another session's NOOPs are answered at once."""
    import threading
    import time
    fakedns.add_mx("dest.test", "mx1.dest.test")
    fakedns.add_a("mx1.dest.test", "127.0.0.1")
    port = H.free_port()
    pol = signing_policy(keys, sink, body=DUAL, http=port)
    k = make_kumod(listener={"max_message_size": "128MiB", "data_processing_timeout": "5 min"},
                   **pol)
    line = "w  o  r  d  s " * 5 + "\r\n"
    big = H.make_message(subject="big", body=line * (40_000_000 // len(line)))
    other = smtplib.SMTP("127.0.0.1", k.port, timeout=60)
    other.ehlo("other.test")
    done = threading.Event()
    lat = []

    def probe():
        while not done.is_set():
            t0 = time.monotonic()
            assert other.noop()[0] == 250
            lat.append(time.monotonic() - t0)
            time.sleep(0.01)

    th = threading.Thread(target=probe)
    th.start()
    try:
        t0 = time.monotonic()
        send_raw(k, "bob@dest.test", big.encode())
        total = time.monotonic() - t0
    finally:
        done.set()
        th.join()
        other.quit()
    sign = metric(k, port, "dkim_signer_sign_sum")
    print(f"sign={sign:.3f}s send={total:.3f}s noops={len(lat)} max_noop={max(lat):.3f}s")
    assert sign > 0.3, f"signing took only {sign:.3f}s: the test proves nothing"
    # On the loop, some NOOP would wait for the whole signature (and the
    # on-loop work around it: measured 1.66 s for 1.42 s of signing);
    # on the pool only for the loop's own handling of a 40 MB message.
    assert max(lat) < 0.75 * sign, (sign, sorted(lat)[-5:])
    (t,) = sink.wait_transactions(1, timeout=120)
    verify_all(t.data, keys["records"], 2)


def test_dkim_sign_outside_the_reception_events_is_an_error(make_kumod, fakedns, sink, keys):
    """A signature asked for after the message was accepted would never
    be made; kumod refuses it instead of sending the message unsigned."""
    extra = f"""
kumo.on('spool_message_enumerated', function(msg)
  msg:dkim_sign(kumo.dkim.ed25519_signer {{ domain = 'example.test', selector = 'ed1',
    headers = {{ 'From' }}, key = {lua_path(keys['ed'])} }})
end)
"""
    pol = H.delivery_policy(path=H.sink_path(sink.port), extra=extra)
    k = make_kumod(**pol)
    # No MX and no A for nowhere.test: the message stays in the spool.
    (mid,) = k.send(rcpts=("bob@nowhere.test",))
    k.wait_for_records("TransientFailure", id=mid)
    k.stop()
    with pytest.raises(H.KumodStartError):
        k.start()
    assert ("msg:dkim_sign: only in smtp_server_message_received or "
            "http_message_generated") in k.log_text(), k.log_tail()
    assert "'spool_message_enumerated'" in k.log_text()


def test_shipped_dkim_example_signs_by_from_domain(make_kumod, fakedns, sink, keys, tmp_path):
    """policy/examples/dkim-signing.lua, pointed at this test's ports, dirs
    and keys: mail From example.test is dual-signed and over-signed; mail
    From a domain without keys is refused."""
    import shutil
    fakedns.add_mx("dest.test", "mx1.dest.test")
    fakedns.add_a("mx1.dest.test", "127.0.0.1")
    kdir = tmp_path / "dkim" / "example.test"
    kdir.mkdir(parents=True)
    shutil.copy(keys["rsa"], kdir / "rsa1.pem")
    shutil.copy(keys["ed"], kdir / "ed1.pem")
    port, http = H.free_port(), H.free_port()
    text = (H.REPO_ROOT / "policy" / "examples" / "dkim-signing.lua").read_text()
    for old, new in [
            ("['example.com'] = { rsa = 's2026', ed25519 = 'e2026' }",
             "['example.test'] = { rsa = 'rsa1', ed25519 = 'ed1' }"),
            ("'127.0.0.1:25'", f"'127.0.0.1:{port}'"),
            ("'127.0.0.1:8000'", f"'127.0.0.1:{http}'"),
            ("/var/spool/kumod", str(tmp_path / "spool")),
            ("/var/log/kumod", str(tmp_path / "logs")),
            ("/etc/kumod/dkim/", str(tmp_path / "dkim") + "/"),
            ("kumo.on('init', function()",
             "kumo.on('init', function()\n  kumo.dns.configure_resolver "
             f"{{ name_servers = {{ '127.0.0.1:{fakedns.port}' }} }}\n  delivery_check()")]:
        assert old in text, old
        text = text.replace(old, new)
    pol = H.delivery_policy(path=H.sink_path(sink.port))
    prelude = ("local TEST_DIR = " + H.lua_str(str(tmp_path)) + "\n"
               "local function append(name, line) end\n")
    text = text.replace("local kumo = require 'kumo'\n",
                        "local kumo = require 'kumo'\n" + prelude + pol["extra"] + "\n", 1)
    k = H.Kumod(fakedns.port, policy_text=text, tmp_root=tmp_path)
    k.port = port
    try:
        k.start()
        msg = H.make_message(sender="news@example.test", extra_headers=RFC8058)
        send_raw(k, "bob@dest.test", msg.encode())
        (t,) = sink.wait_transactions(1)
        sigs = [tags(s) for s in verify_all(t.data, keys["records"], 2)]
        assert [s["a"] for s in sigs] == ["ed25519-sha256", "rsa-sha256"]
        h = sigs[0]["h"].lower().split(":")
        assert h.count("list-unsubscribe-post") == 2 and h.count("from") == 2, h
        s = smtplib.SMTP("127.0.0.1", port, timeout=30)
        s.ehlo("client.test")
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail("x@nokeys.test", ["bob@dest.test"],
                       H.make_message(sender="x@nokeys.test"))
        assert e.value.smtp_code == 550, e.value
        s.quit()
    finally:
        k.cleanup()
    assert not k.sanitizer_reports(), k.sanitizer_reports()
