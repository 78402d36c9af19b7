"""STARTTLS and AUTH PLAIN (KUMOMTA-API.md §2.1-2.3, scenarios 9-10): the
default self-signed certificate, a configured one, the EHLO before/after TLS,
smtp_server_auth_plain, and the Received header's ESMTP/ESMTPS/ESMTPSA."""
import base64
import re
import ssl
import subprocess

import kumod_harness as H

AUTH_POLICY = """
kumo.on('smtp_server_auth_plain', function(authz, authc, password, conn_meta)
  append('auth.txt', tostring(authz) .. '|' .. tostring(authc))
  return authc == 'scott' and password == 'tiger'
end)
kumo.on('smtp_server_message_received', function(msg, conn_meta)
  write('msg-' .. msg:id() .. '.eml', msg:get_data())
  append('meta.txt', msg:id() .. ' ' .. tostring(msg:get_meta('authn_id')) .. ' '
         .. tostring(msg:get_meta('authz_id')))
end)
"""


# -- Helpers -------------------------------------------------------------------

def plain(authz, authc, password):
    return base64.b64encode(f"{authz}\0{authc}\0{password}".encode()).decode()


def tls_session(k):
    s = k.smtp(ehlo="client.test")
    code, text = s.starttls(context=H.noverify_context())
    assert code == 220, text
    assert text == b"Ready to Start TLS"
    s.ehlo("client.test")
    return s


def received_header(k, mid):
    data = H.wait_for(lambda: k.path(f"msg-{mid}.eml").exists()
                      and k.path(f"msg-{mid}.eml").read_bytes(), 5,
                      what=f"msg-{mid}.eml from smtp_server_message_received")
    recv = [v for n, v in H.unfold_headers(data) if n.lower() == "received"]
    assert recv, f"no Received header in:\n{data[:2000]!r}"
    return recv[0]


# -- Tests ---------------------------------------------------------------------

def test_swaks_starttls_with_default_self_signed_cert(kumod):
    r = H.swaks(kumod.port, "--tls", "--from", "a@client.test", "--to", "b@dest.test")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "220 Ready to Start TLS" in out
    assert re.search(r"<~\s+250 OK ids=[0-9a-f]{32}", out), out  # <~ = inside TLS


def test_smtplib_starttls_then_ehlo_offers_auth_plain_not_starttls(kumod):
    s = tls_session(kumod)
    assert "starttls" not in s.esmtp_features
    assert "PLAIN" in s.esmtp_features.get("auth", "").split(), s.esmtp_features
    for ext in ("pipelining", "enhancedstatuscodes", "8bitmime", "smtputf8"):
        assert ext in s.esmtp_features
    code, text = H.send_message(s)
    assert code == 250 and len(H.parse_ids(text)) == 1
    assert s.docmd("STARTTLS") == (501, b"Cannot STARTTLS as TLS is already active")
    s.quit()


def test_default_certificate_names_the_listener_hostname(kumod):
    s = tls_session(kumod)
    der = s.sock.getpeercert(binary_form=True)
    pem = ssl.DER_cert_to_PEM_cert(der)
    s.close()
    r = subprocess.run(["openssl", "x509", "-noout", "-subject", "-ext", "subjectAltName"],
                       input=pem, capture_output=True, text=True)
    assert "mx.example.test" in r.stdout, r.stdout + r.stderr


def test_configured_certificate_is_presented(make_kumod, tls_cert):
    cert, key = tls_cert
    k = make_kumod(listener={"tls_certificate": str(cert), "tls_private_key": str(key)})
    s = tls_session(k)
    der = s.sock.getpeercert(binary_form=True)
    s.quit()
    expected = ssl.PEM_cert_to_DER_cert(cert.read_text())
    assert der == expected


def test_swaks_starttls_with_configured_certificate(make_kumod, tls_cert):
    cert, key = tls_cert
    k = make_kumod(listener={"tls_certificate": str(cert), "tls_private_key": str(key)})
    r = H.swaks(k.port, "--tls", "--from", "a@client.test", "--to", "b@dest.test")
    assert r.returncode == 0, r.stdout + r.stderr


def test_auth_plain_good_credentials_get_235(make_kumod):
    k = make_kumod(extra=AUTH_POLICY)
    s = tls_session(k)
    code, text = s.docmd("AUTH", "PLAIN " + plain("", "scott", "tiger"))
    assert code == 235, text
    assert text.startswith(b"2.7.0")
    s.quit()
    # smtplib sends an empty authorization id; like KumoMTA, kumod then
    # passes the authentication id as authz too.
    assert k.path("auth.txt").read_text().splitlines() == ["scott|scott"]


def test_auth_plain_bad_credentials_get_535_and_a_rejection_record(make_kumod):
    k = make_kumod(extra=AUTH_POLICY)
    s = tls_session(k)
    code, text = s.docmd("AUTH", "PLAIN " + plain("", "scott", "wrong"))
    assert code == 535, text
    assert text.startswith(b"5.7.8")
    # the session goes on, and a retry with the right password works
    code, _ = s.docmd("AUTH", "PLAIN " + plain("", "scott", "tiger"))
    assert code == 235
    s.quit()
    assert k.stop() == 0
    assert any(r["response"]["code"] == 535 for r in k.records("Rejection")), k.records()


def test_auth_plain_with_continuation_line(make_kumod):
    k = make_kumod(extra=AUTH_POLICY)
    s = tls_session(k)
    code, text = s.docmd("AUTH", "PLAIN")
    assert code == 334, text
    code, text = s.docmd(plain("", "scott", "tiger"))
    assert code == 235, text
    s.quit()


def test_auth_before_starttls_is_refused(make_kumod):
    k = make_kumod(extra=AUTH_POLICY)
    s = k.smtp(ehlo="client.test")
    code, text = s.docmd("AUTH", "PLAIN " + plain("", "scott", "tiger"))
    assert 500 <= code < 600, (code, text)
    assert not k.path("auth.txt").exists(), "auth handler ran without TLS"
    assert s.noop()[0] == 250
    s.close()


def test_received_header_says_esmtp_without_tls(make_kumod):
    k = make_kumod(extra=AUTH_POLICY)
    s = k.smtp(ehlo="client.test")
    code, text = H.send_message(s)
    (mid,) = H.parse_ids(text)
    s.quit()
    recv = received_header(k, mid)
    assert re.match(r"from client\.test \(127\.0\.0\.1\) by mx\.example\.test "
                    r"\(KumoMTA 127\.0\.0\.1\) with ESMTP id " + mid, recv), recv
    assert "for <bob@dest.test>" in recv or "for bob@dest.test" in recv, recv


def test_received_header_says_esmtps_after_starttls(make_kumod):
    k = make_kumod(extra=AUTH_POLICY)
    s = tls_session(k)
    code, text = H.send_message(s)
    (mid,) = H.parse_ids(text)
    s.quit()
    recv = received_header(k, mid)
    assert re.search(r"with ESMTPS \(TLSv1\.[23]:[A-Za-z0-9_-]+\) id " + mid, recv), recv


def test_received_header_says_esmtpsa_and_meta_has_auth_ids_when_authenticated(make_kumod):
    k = make_kumod(extra=AUTH_POLICY)
    s = tls_session(k)
    assert s.docmd("AUTH", "PLAIN " + plain("boss", "scott", "tiger"))[0] == 235
    code, text = H.send_message(s)
    (mid,) = H.parse_ids(text)
    s.quit()
    recv = received_header(k, mid)
    assert re.search(r"with ESMTPSA \(TLSv1\.[23]:[A-Za-z0-9_-]+\) id " + mid, recv), recv
    assert f"{mid} scott boss" in k.path("meta.txt").read_text().splitlines()


def test_reception_record_has_tls_fields(make_kumod):
    k = make_kumod(extra=AUTH_POLICY)
    s = tls_session(k)
    code, text = H.send_message(s)
    (mid,) = H.parse_ids(text)
    s.quit()
    assert k.stop() == 0
    (rec,) = [r for r in k.records("Reception") if r["id"] == mid]
    assert rec.get("tls_protocol_version", "").startswith("TLSv1."), rec
    assert rec.get("tls_cipher"), rec
