"""Self-tests of the e2e harness: fake DNS, ports, policy rendering, the raw
SMTP client, segment reading and the process lifecycle (against a stand-in
script). None of them needs kumod, so they run before it exists."""
import os
import signal
import socket
import subprocess
import textwrap

import pytest
from aiosmtpd.controller import Controller
from dnslib import RCODE, DNSRecord

import kumod_harness as H


# -- Fixture / helpers ---------------------------------------------------------

def ask(dns, name, qtype, tcp=False):
    q = DNSRecord.question(name, qtype)
    return DNSRecord.parse(q.send("127.0.0.1", dns.port, tcp=tcp, timeout=5))


class _Sink:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 OK ids=" + "ab" * 16


@pytest.fixture
def aiosmtpd_server():
    handler = _Sink()
    c = Controller(handler, hostname="127.0.0.1", port=H.free_port())
    c.start()
    yield c, handler
    c.stop()


LUA_STUB = r"""
-- a stand-in `kumo` module that records the calls of a rendered policy
local calls, handlers = {}, {}
local function rec(name) return function(t) calls[#calls + 1] = { name = name, t = t } end end
package.preload['kumo'] = function()
  return {
    on = function(ev, fn) assert(type(fn) == 'function'); handlers[ev] = fn end,
    start_esmtp_listener = rec('start_esmtp_listener'),
    define_spool = rec('define_spool'),
    configure_local_logs = rec('configure_local_logs'),
    make_listener_domain = function(t) return t end,
    reject = function(c, t) error(c .. ' ' .. t) end,
    dns = { configure_resolver = rec('dns.configure_resolver') },
  }
end
local chunk = assert(loadfile(arg[1]))
chunk()
assert(handlers.init, 'no init handler')
handlers.init()
for _, c in ipairs(calls) do
  local t = c.t
  if c.name == 'start_esmtp_listener' then
    print('listener', t.listen, t.hostname, table.concat(t.relay_hosts, ','), tostring(t.max_message_size))
  elseif c.name == 'define_spool' then
    print('spool', t.name, t.path, t.kind)
  elseif c.name == 'configure_local_logs' then
    print('logs', t.log_dir, t.max_segment_duration)
  elseif c.name == 'dns.configure_resolver' then
    print('dns', t.name_servers[1])
  end
end
local ev = {}
for k in pairs(handlers) do ev[#ev + 1] = k end
table.sort(ev)
print('handlers', table.concat(ev, ','))
"""


# -- Tests ---------------------------------------------------------------------

@pytest.mark.parametrize("tcp", [False, True])
def test_fakedns_answers_configured_records_over_udp_and_tcp(fakedns, tcp):
    fakedns.add_a("mx1.dest.test", "127.0.0.1")
    fakedns.add_aaaa("mx1.dest.test", "::1")
    fakedns.add_mx("dest.test", "mx1.dest.test", 5)
    fakedns.add_null_mx("nullmx.test")

    a = ask(fakedns, "mx1.dest.test", "A", tcp)
    assert a.header.rcode == RCODE.NOERROR
    assert [str(r.rdata) for r in a.rr] == ["127.0.0.1"]
    aaaa = ask(fakedns, "mx1.dest.test", "AAAA", tcp)
    assert [str(r.rdata) for r in aaaa.rr] == ["::1"]
    mx = ask(fakedns, "dest.test", "MX", tcp)
    assert [(r.rdata.preference, str(r.rdata.label)) for r in mx.rr] == [(5, "mx1.dest.test.")]
    null = ask(fakedns, "nullmx.test", "MX", tcp)
    assert [(r.rdata.preference, str(r.rdata.label)) for r in null.rr] == [(0, ".")]
    assert ("dest.test", "MX") in fakedns.queries


def test_fakedns_is_nxdomain_for_unknown_and_non_test_names(fakedns):
    fakedns.add_a("known.test")
    assert ask(fakedns, "unknown.test", "A").header.rcode == RCODE.NXDOMAIN
    assert ask(fakedns, "example.com", "A").header.rcode == RCODE.NXDOMAIN
    nodata = ask(fakedns, "known.test", "MX")
    assert nodata.header.rcode == RCODE.NOERROR and not nodata.rr
    with pytest.raises(ValueError):
        fakedns.add_a("example.com")


def test_fakedns_clear_forgets_records(fakedns):
    fakedns.add_a("gone.test")
    fakedns.clear()
    assert ask(fakedns, "gone.test", "A").header.rcode == RCODE.NXDOMAIN


def test_free_port_is_bindable_and_not_reused_immediately():
    ports = {H.free_port() for _ in range(20)}
    assert len(ports) >= 15
    p = ports.pop()
    assert H.port_is_free(p)
    s = socket.socket()
    s.bind(("127.0.0.1", p))
    s.listen()
    try:
        assert not H.port_is_free(p)
    finally:
        s.close()


def test_lua_value_renders_nested_tables_and_escapes_strings(tmp_path):
    v = {"a": [1, 2, "x'y\\z\n"], "b": True, "c-d": {"e": None}, "f": H.LuaExpr("1 + 1")}
    script = tmp_path / "v.lua"
    script.write_text("local v = " + H.lua_value(v) + "\n"
                      "assert(v.a[3] == 'x\\'y\\\\z\\n')\n"
                      "assert(v.b == true and v['c-d'].e == nil and v.f == 2)\n"
                      "print(#v.a)\n")
    r = subprocess.run(["lua5.4", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "3"


def test_policy_template_compiles_and_makes_the_expected_calls(tmp_path):
    extra = textwrap.dedent("""
        kumo.on('smtp_server_mail_from', function(sender, conn_meta)
          kumo.reject(550, 'no')
        end)
        kumo.on('spool_message_enumerated', function(msg) append('enumerated.txt', msg:id()) end)
    """)
    text = H.render_policy(tmp_path, 5353, dict(H.default_listener(2600), max_message_size=4096),
                           extra=extra, init_extra="  -- nothing\n")
    pol = tmp_path / "policy.lua"
    pol.write_text(text)
    r = subprocess.run(["luac5.4", "-p", str(pol)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    stub = tmp_path / "stub.lua"
    stub.write_text(LUA_STUB)
    r = subprocess.run(["lua5.4", str(stub), str(pol)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "dns\t127.0.0.1:5353" in lines
    assert "listener\t127.0.0.1:2600\tmx.example.test\t127.0.0.1\t4096" in lines
    assert f"spool\tdata\t{tmp_path}/data\tRocksDB" in lines
    assert f"spool\tmeta\t{tmp_path}/meta\tRocksDB" in lines
    assert f"logs\t{tmp_path}/logs\t1s" in lines
    assert lines[-1] == "handlers\tinit,smtp_server_mail_from,spool_message_enumerated"


def test_raw_smtp_reads_multiline_replies_and_pipelined_batches(aiosmtpd_server):
    c, sink = aiosmtpd_server
    s = H.RawSmtp("127.0.0.1", c.port)
    assert s.reply().code == 220
    ehlo = s.cmd("EHLO client.test")
    assert ehlo.code == 250 and len(ehlo.lines) > 1
    s.send("MAIL FROM:<a@client.test>\r\nRCPT TO:<b@dest.test>\r\nDATA\r\n")
    assert [s.reply().code for _ in range(3)] == [250, 250, 354]
    s.send("Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    final = s.reply()
    assert final.code == 250 and len(H.parse_ids(final.text)) == 1
    assert s.reply().code == 221
    assert s.closed()
    assert sink.messages[0].rcpt_tos == ["b@dest.test"]


def test_smtplib_helpers_and_swaks_work_against_a_reference_server(aiosmtpd_server):
    c, sink = aiosmtpd_server

    class Fake:
        port = c.port
        clients = []
    s = H.Kumod.smtp(Fake(), ehlo="client.test")
    assert s.greeting[0] == 220
    code, text = H.send_message(s, rcpts=("b@dest.test",))
    assert code == 250 and H.parse_ids(text) == ["ab" * 16]
    s.quit()
    r = H.swaks(c.port, "--from", "a@client.test", "--to", "c@dest.test")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "250 OK ids=" in r.stdout
    assert len(sink.messages) == 2


def test_parse_ids_rejects_anything_but_ok_ids():
    assert H.parse_ids("OK ids=" + "0" * 32 + " " + "f" * 32) == ["0" * 32, "f" * 32]
    for bad in ("OK", "OK ids=", "OK ids=" + "g" * 32, "OK ids=" + "a" * 31, "Queued as x"):
        with pytest.raises(AssertionError):
            H.parse_ids(bad)


def test_read_records_skips_incomplete_segments(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    good = logs / "20260101-000000.000000"
    subprocess.run(["zstd", "-q", "-o", str(good), "-"], check=True,
                   input=b'{"type":"Reception","id":"1"}\n{"type":"Rejection","id":""}\n')
    cut = logs / "20260101-000001.000000"
    data = good.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    recs = H.read_records(logs)
    assert [r["type"] for r in recs] == ["Reception", "Rejection"]


STANDIN = """#!/bin/sh
# stand-in for kumod: checks its arguments, logs readiness, exits 0 on TERM
case "$*" in *--policy*) ;; *) echo "no --policy" >&2; exit 2;; esac
if [ -n "$STANDIN_FAIL" ]; then echo "policy.lua:3: boom" >&2; exit 1; fi
trap 'echo "shutting down" >&2; exit 0' TERM
echo "recovered 3 messages" >&2
echo "kumod: initialization complete" >&2
while :; do sleep 0.05; done
"""


@pytest.fixture
def standin(tmp_path, monkeypatch):
    exe = tmp_path / "kumod-standin"
    exe.write_text(STANDIN)
    exe.chmod(0o755)
    monkeypatch.setenv("KUMOD_BIN", str(exe))
    return exe


def test_kumod_lifecycle_start_stop_restart_kill9(standin, make_kumod):
    k = make_kumod()
    assert k.running()
    assert k.recovered_count() == 3
    assert k.stop() == 0
    assert not k.running()
    k.restart()
    assert len(k.runs) == 2 and k.running()
    pid = k.proc.pid
    assert k.kill9() == -signal.SIGKILL
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "initialization complete" in k.log_text(None)


def test_kumod_start_failure_shows_the_log_tail(standin, make_kumod):
    with pytest.raises(H.KumodStartError, match="(?s)exited with 1.*policy.lua:3: boom"):
        make_kumod(env={"STANDIN_FAIL": "1"})
