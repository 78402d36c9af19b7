"""HTTP listener (KUMOMTA-API.md §2.4, §5, scenarios 20-22): liveness,
injection with substitutions, KumoMTA's access rule (trusted hosts, Basic
credentials validated by http_server_validate_auth_basic), body limit,
bad JSON and template errors, Prometheus metrics, and the admin rules
(suspend and bounce: create, list, cancel). Needs kumod with
kumo.start_http_listener wired in."""
import base64
import http.client
import json
import re

import pytest

import kumod_harness as H

AUTH_HANDLER = """
kumo.on('http_server_validate_auth_basic', function(user, password)
  append('auth.txt', user)
  return user == 'scott' and password == 'tiger'
end)
"""

GENERATED_HANDLER = """
kumo.on('http_message_generated', function(msg, auth)
  if msg:recipient().user == 'reject-me' then
    kumo.reject(550, '5.7.1 not this one')
  end
end)
"""


# -- Helpers -------------------------------------------------------------------

def http_kumod(make_kumod, extra="", **listener):
    """A kumod with an HTTP listener on a fresh port (k.http_port)."""
    port = H.free_port()
    params = {"listen": f"127.0.0.1:{port}"}
    params.update(listener)
    k = make_kumod(init_extra=f"  kumo.start_http_listener {H.lua_value(params)}",
                   extra=extra)
    k.http_port = port
    k.http_tls = bool(listener.get("use_tls"))
    H.wait_for(lambda: request(k, "GET", "/api/check-liveness/v1")[0] == 200,
               timeout=20, what="liveness 200")
    return k


def request(k, method, path, body=None, auth=None, headers=None):
    """(status, headers dict (lowercase names), body bytes)."""
    if getattr(k, "http_tls", False):
        c = http.client.HTTPSConnection("127.0.0.1", k.http_port, timeout=30,
                                        context=H.noverify_context())
    else:
        c = http.client.HTTPConnection("127.0.0.1", k.http_port, timeout=30)
    hdrs = dict(headers or {})
    if auth is not None:
        hdrs["Authorization"] = "Basic " + base64.b64encode(
            f"{auth[0]}:{auth[1]}".encode()).decode()
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        body = body.encode()
    try:
        c.request(method, path, body=body, headers=hdrs)
        r = c.getresponse()
        return r.status, {n.lower(): v for n, v in r.getheaders()}, r.read()
    finally:
        c.close()


def request_json(k, method, path, body=None, auth=None):
    status, hdrs, data = request(k, method, path, body, auth)
    return status, (json.loads(data) if data else None)


def inject_body(rcpts, content=None, subst=None):
    body = {"envelope_sender": "noreply@example.test",
            "recipients": rcpts,
            "content": content or "Subject: hi {{ name }}\r\nTo: {{ email }}\r\n\r\n"
                                  "Dear {{ name }}, your code is {{ code }}.\r\n"}
    if subst is not None:
        body["substitutions"] = subst
    return body


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\})?'
                     r' (\S+)$')


def parse_prometheus(text):
    """{name: {"type": t, "help": h, "samples": {label_value_or_None: float}}};
    AssertionError on any line that is not valid exposition format."""
    fams = {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            kind, rest = line[2:6], line[7:]
            name, _, val = rest.partition(" ")
            f = fams.setdefault(name, {"samples": {}})
            f["help" if kind == "HELP" else "type"] = val
            if kind == "TYPE":
                assert val in ("counter", "gauge"), line
            continue
        m = _SAMPLE.match(line)
        assert m, f"bad sample line {line!r}"
        name = m.group(1)
        assert name in fams and "type" in fams[name], f"sample before TYPE: {line!r}"
        fams[name]["samples"][m.group(4)] = float(m.group(5))
    return fams


# -- Tests ---------------------------------------------------------------------

def test_liveness_answers_ok(make_kumod):
    k = http_kumod(make_kumod)
    status, _, body = request(k, "GET", "/api/check-liveness/v1")
    assert status == 200 and body == b"OK"


def test_inject_with_substitutions_to_three_recipients(make_kumod):
    k = http_kumod(make_kumod)
    rcpts = [{"email": f"user{i}@dest.test", "name": f"User {i}",
              "substitutions": {"code": f"C{i}"}} for i in range(3)]
    status, reply = request_json(k, "POST", "/api/inject/v1",
                                 inject_body(rcpts, subst={"code": "global"}))
    assert status == 200, reply
    assert reply["success_count"] == 3 and reply["fail_count"] == 0, reply
    assert reply["failed_recipients"] == [] and reply["errors"] == []
    assert k.stop() == 0
    recs = [r for r in k.records("Reception") if r.get("reception_protocol") == "HTTP"]
    assert sorted(r["recipient"] for r in recs) == [f"user{i}@dest.test" for i in range(3)]
    for r in recs:
        assert r["sender"] == "noreply@example.test"
        assert r["meta"].get("http_auth") == "127.0.0.1" or "http_auth" not in r["meta"]


def test_inject_builder_content_and_policy_rejection(make_kumod):
    k = http_kumod(make_kumod, extra=GENERATED_HANDLER)
    content = {"subject": "Hello {{ name }}", "text_body": "text {{ email }}",
               "html_body": "<b>{{ name }}</b>",
               "from": {"email": "news@example.test", "name": "News"}}
    rcpts = [{"email": "ok@dest.test", "name": "Ok"},
             {"email": "reject-me@dest.test", "name": "No"}]
    status, reply = request_json(k, "POST", "/api/inject/v1",
                                 inject_body(rcpts, content=content))
    assert status == 200, reply
    assert reply["success_count"] == 1 and reply["fail_count"] == 1, reply
    assert reply["failed_recipients"] == ["reject-me@dest.test"]
    assert "550" in reply["errors"][0]


def test_untrusted_peer_needs_valid_basic_credentials(make_kumod):
    k = http_kumod(make_kumod, extra=AUTH_HANDLER, trusted_hosts=["10.9.9.9"])
    body = inject_body([{"email": "a@dest.test", "name": "A"}], subst={"code": "x"})
    status, hdrs, _ = request(k, "POST", "/api/inject/v1", body)
    assert status == 401
    assert hdrs.get("www-authenticate", "").startswith("Basic")
    status, _, data = request(k, "POST", "/api/inject/v1", body, auth=("scott", "tiger"))
    assert status == 200, data
    assert json.loads(data)["success_count"] == 1
    status, _, _ = request(k, "POST", "/api/inject/v1", body, auth=("scott", "wrong"))
    assert status == 401
    # authenticated but not trusted: the admin API and metrics stay closed
    status, _, _ = request(k, "GET", "/metrics", auth=("scott", "tiger"))
    assert status == 403
    status, _, _ = request(k, "GET", "/metrics")
    assert status == 401
    # malformed header
    status, _, _ = request(k, "GET", "/metrics", headers={"Authorization": "Basic !!!"})
    assert status == 400
    # liveness is open to anyone
    assert request(k, "GET", "/api/check-liveness/v1")[0] == 200


def test_invalid_credentials_are_refused_even_from_a_trusted_host(make_kumod):
    k = http_kumod(make_kumod, extra=AUTH_HANDLER)
    status, _, _ = request(k, "GET", "/metrics", auth=("scott", "wrong"))
    assert status == 401
    assert request(k, "GET", "/metrics", auth=("scott", "tiger"))[0] == 200


def test_body_over_request_body_limit_gets_413(make_kumod):
    k = http_kumod(make_kumod, request_body_limit=200)
    body = inject_body([{"email": f"u{i}@dest.test"} for i in range(20)])
    status, _, _ = request(k, "POST", "/api/inject/v1", body)
    assert status == 413
    small = inject_body([{"email": "u@dest.test"}], content="Subject: x\r\n\r\nx\r\n")
    assert request(k, "POST", "/api/inject/v1", small)[0] == 200


def test_bad_json_gets_400_and_template_error_gets_422(make_kumod):
    k = http_kumod(make_kumod)
    status, reply = request_json(k, "POST", "/api/inject/v1", "{not json")
    assert status == 400 and "invalid JSON" in reply["error"]
    status, reply = request_json(k, "POST", "/api/inject/v1",
                                 {"recipients": [{"email": "a@dest.test"}], "content": "x"})
    assert status == 400 and "envelope_sender" in reply["error"]
    status, reply = request_json(k, "POST", "/api/inject/v1",
                                 inject_body([{"email": "a@dest.test"}],
                                             content="Subject: {% if x %}\r\n\r\nbody"))
    assert status == 422 and "template syntax error" in reply["error"], reply


def test_metrics_are_prometheus_text_with_received_counts(make_kumod):
    k = http_kumod(make_kumod)
    body = inject_body([{"email": "m@dest.test"}], content="Subject: m\r\n\r\nm\r\n")
    assert request(k, "POST", "/api/inject/v1", body)[0] == 200
    status, hdrs, data = request(k, "GET", "/metrics")
    assert status == 200
    assert hdrs["content-type"].startswith("text/plain")
    fams = parse_prometheus(data.decode())
    assert "total_messages_received" in fams
    assert fams["total_messages_received"]["type"] == "counter"
    assert fams["total_messages_received"]["samples"].get("http_listener", 0) >= 1
    status, j = request_json(k, "GET", "/metrics.json")
    assert status == 200 and "total_messages_received" in j


def test_admin_suspend_then_list_then_cancel(make_kumod):
    k = http_kumod(make_kumod)
    status, reply = request_json(k, "POST", "/api/admin/suspend/v1",
                                 {"domain": "dest.test", "reason": "maintenance",
                                  "duration": "10m"})
    assert status == 200, reply
    rule_id = reply["id"]
    status, rules = request_json(k, "GET", "/api/admin/suspend/v1")
    assert status == 200
    mine = [r for r in rules if r["id"] == rule_id]
    assert mine and mine[0]["reason"] == "maintenance" and mine[0]["domain"] == "dest.test"
    assert re.fullmatch(r"(\d+m )?\d+s", mine[0]["duration"]), mine[0]
    status, _ = request_json(k, "DELETE", "/api/admin/suspend/v1", {"id": rule_id})
    assert status == 200
    status, rules = request_json(k, "GET", "/api/admin/suspend/v1")
    assert all(r["id"] != rule_id for r in rules)
    status, _ = request_json(k, "DELETE", "/api/admin/suspend/v1", {"id": rule_id})
    assert status == 404


def test_admin_bounce_create_list_cancel(make_kumod):
    k = http_kumod(make_kumod)
    status, reply = request_json(k, "POST", "/api/admin/bounce/v1",
                                 {"campaign": "spring", "reason": "bad list"})
    assert status == 200, reply
    assert reply["bounced"] == {} and reply["total_bounced"] == 0
    status, rules = request_json(k, "GET", "/api/admin/bounce/v1")
    mine = [r for r in rules if r["id"] == reply["id"]]
    assert mine and mine[0]["campaign"] == "spring" and "total_bounced" in mine[0]
    assert request_json(k, "DELETE", "/api/admin/bounce/v1", {"id": reply["id"]})[0] == 200
    status, reply = request_json(k, "POST", "/api/admin/bounce/v1", {"domain": "x.test"})
    assert status == 400 and "reason" in reply["error"]


def test_admin_endpoints_refuse_untrusted_peers(make_kumod):
    k = http_kumod(make_kumod, trusted_hosts=["10.9.9.9"])
    assert request(k, "GET", "/api/admin/bounce/v1")[0] == 401
    assert request(k, "GET", "/api/admin/queue-summary/v1")[0] == 401


def test_queue_summary_and_cluster_status(make_kumod):
    k = http_kumod(make_kumod)
    status, qs = request_json(k, "GET", "/api/admin/queue-summary/v1")
    assert status == 200 and "scheduled" in qs and "total" in qs
    status, cs = request_json(k, "GET", "/api/admin/cluster/status/v1")
    assert status == 200
    assert cs["members"] and cs["members"][0]["state"] == "up"
    assert request(k, "GET", "/api/nope")[0] == 404


def test_tls_listener_serves_https_and_sees_the_peer(make_kumod, tls_cert):
    cert, key = tls_cert
    k = http_kumod(make_kumod, use_tls=True, tls_certificate=str(cert),
                   tls_private_key=str(key))
    assert request(k, "GET", "/api/check-liveness/v1")[:1] == (200,)
    # /metrics is for trusted hosts: 200 proves the peer address was read
    assert request(k, "GET", "/metrics")[0] == 200


def test_use_tls_without_files_is_a_config_error(make_kumod):
    k = make_kumod(init_extra="  kumo.start_http_listener { listen = '127.0.0.1:0', "
                              "use_tls = true }", start=False)
    with pytest.raises(H.KumodStartError) as e:
        k.start()
    assert "use_tls needs tls_certificate and tls_private_key" in str(e.value)
