"""The policy runtime library in a real kumod (docs/policy.md, Runtime
library): a policy in KumoMTA's dialect routes with a TOML file loaded
through kumo.toml_load under kumo.memoize into a kumo.domain_map (exact
and wildcard domains), tags messages from a kumo.regex match on the
recipient, signs them with kumo.digest.hmac_sha256 keyed by
kumo.secrets.load, and delivers to an aiosmtpd sink; and kumod --validate
refuses an unknown event name by name and line."""
import hashlib
import hmac

import kumod_harness as H

ROUTING = r"""
local ROUTES_FILE = TEST_DIR .. '/routes.toml'
local SIGNING_KEY = kumo.secrets.load(TEST_DIR .. '/signing.key')

-- The route table: read and built at most once per 5 minutes.
local load_routes = kumo.memoize(function(path)
  append('route-loads.txt', path)
  local data = kumo.toml_load(path)
  local routes = kumo.domain_map.new()
  for domain, route in pairs(data.route) do
    routes[domain] = route
  end
  return routes
end, { name = 'routes', ttl = '5 minutes', capacity = 4 })

-- user+tag@domain: the tag travels in a header
local TAGGED = kumo.regex.compile '^(?<user>[a-z0-9.]+)\\+(?<tag>[a-z0-9-]+)$'

kumo.on('smtp_server_message_received', function(msg)
  local rcpt = msg:recipient()
  local route = load_routes(ROUTES_FILE)[rcpt.domain]
  if not route then
    kumo.reject(550, '5.7.1 no route for ' .. rcpt.domain)
  end
  msg:set_meta('tenant', route.tenant)
  local cap = TAGGED:captures(rcpt.user)
  if cap then
    msg:append_header('X-Route-Tag', cap.tag)
  end
  local sig = kumo.digest.hmac_sha256({ key_data = SIGNING_KEY }, rcpt.email)
  msg:append_header('X-Route-Sig', sig.hex)
end)

kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  local route = load_routes(ROUTES_FILE)[domain]
  append('queue-configs.txt', domain .. ' ' .. tostring(tenant))
  return kumo.make_queue_config {
    retry_interval = '1s',
    protocol = { smtp = { mx_list = route.mx_list } },
  }
end)

kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path { prohibited_hosts = {}, enable_tls = 'Disabled' }
end)
"""

ROUTES_TOML = """\
# which sink each recipient domain goes to
[route."*.corp.test"]
tenant = "corp"
mx_list = ["127.0.0.1:{port}"]

[route."direct.test"]
tenant = "direct"
mx_list = ["127.0.0.1:{port}"]
"""

KEY = b"route-signing-key\n"


def header(data, name):
    for n, v in H.unfold_headers(data):
        if n.lower() == name.lower():
            return v.strip()
    return None


def test_policy_routes_with_toml_memoize_domain_map_regex_and_secrets(make_kumod, fakedns, sink):
    k = make_kumod(extra=ROUTING, start=False)
    (k.dir / "routes.toml").write_text(ROUTES_TOML.format(port=sink.port))
    (k.dir / "signing.key").write_bytes(KEY)
    k.start()

    rcpts = ["ann+spring-sale@mail.corp.test", "bob@direct.test"]
    ids = []
    for r in rcpts:
        ids += k.send(rcpts=(r,), msg=H.make_message(to=r))
    txns = sink.wait_transactions(2)
    by_rcpt = {t.rcpt_tos[0]: t for t in txns}
    assert sorted(by_rcpt) == sorted(rcpts), by_rcpt

    tagged = by_rcpt["ann+spring-sale@mail.corp.test"].data
    assert header(tagged, "X-Route-Tag") == "spring-sale"
    assert header(by_rcpt["bob@direct.test"].data, "X-Route-Tag") is None
    for r in rcpts:
        want = hmac.new(KEY, r.encode(), hashlib.sha256).hexdigest()
        assert header(by_rcpt[r].data, "X-Route-Sig") == want, r

    for mid in ids:
        k.wait_for_records("Delivery", id=mid)
    # one TOML read for two messages and their two queues: memoize hit
    loads = (k.dir / "route-loads.txt").read_text().splitlines()
    assert len(loads) == 1, loads
    queues = (k.dir / "queue-configs.txt").read_text().splitlines()
    assert sorted(queues) == ["direct.test direct", "mail.corp.test corp"], queues


def test_policy_rejects_a_domain_without_route(make_kumod, fakedns, sink):
    k = make_kumod(extra=ROUTING, start=False)
    (k.dir / "routes.toml").write_text(ROUTES_TOML.format(port=sink.port))
    (k.dir / "signing.key").write_bytes(KEY)
    k.start()
    s = k.smtp()
    code, text = H.send_message(s, rcpts=("eve@corp.test",))
    assert code == 550, (code, text)
    assert "no route for corp.test" in text, text  # *.corp.test is below only
    assert sink.transactions() == []


def test_validate_refuses_an_unknown_event_by_name_and_line(fakedns, tmp_path):
    lst = H.default_listener(H.free_port())
    extra = "kumo.on('smtp_server_mail_frm', function(sender) end) -- TYPO\n"
    pol = tmp_path / "policy.lua"
    pol.write_text(H.render_policy(tmp_path, fakedns.port, lst, extra))
    line = next(n for n, s in enumerate(pol.read_text().splitlines(), 1) if "-- TYPO" in s)
    r = H.run_kumod(["--policy", str(pol), "--validate", *H.user_args()])
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert f"policy.lua:{line}: kumo.on: unknown event 'smtp_server_mail_frm'" in out, out


def test_validate_refuses_another_daemons_event_with_a_pointer(fakedns, tmp_path):
    lst = H.default_listener(H.free_port())
    pol = tmp_path / "policy.lua"
    pol.write_text(H.render_policy(tmp_path, fakedns.port, lst,
                                   "kumo.on('tsa_init', function() end)\n"))
    r = H.run_kumod(["--policy", str(pol), "--validate", *H.user_args()])
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "event 'tsa_init' belongs to KumoMTA's tsa-daemon" in out, out
