"""kumod_harness.py - start real kumod processes for the end-to-end tests.

A Kumod owns one temp directory (policy, spools, logs, diagnostic log) and
one process at a time; it renders the policy from POLICY_TEMPLATE, starts
kumod, waits for `initialization complete`, and stops it by its own PID.
RawSmtp is a byte-exact SMTP client for replies smtplib would hide.
Standard library only (plus the zstd command for the log segments).
"""
import json
import os
import random
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
HOSTNAME = "mx.example.test"
READY_LINE = "initialization complete"
START_TIMEOUT = float(os.environ.get("KUMOD_START_TIMEOUT", "30"))  # ASan is slow
STOP_TIMEOUT = float(os.environ.get("KUMOD_STOP_TIMEOUT", "30"))
# multiplies every wait_for() deadline (e.g. 0.2 for a quick look at failures)
WAIT_SCALE = float(os.environ.get("KUMOD_WAIT_SCALE", "1"))
ID_RE = re.compile(r"[0-9a-f]{32}")
OK_IDS_RE = re.compile(r"OK ids=([0-9a-f]{32}(?:\s+[0-9a-f]{32})*)")
RECOVERED_RE = re.compile(r"recovered (\d+) messages")
SANITIZER_RE = re.compile(r"ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error: ")


def kumod_bin():
    """The kumod under test: $KUMOD_BIN, else build/bin/kumod in the repo."""
    path = os.environ.get("KUMOD_BIN") or str(REPO_ROOT / "build" / "bin" / "kumod")
    if not os.access(path, os.X_OK):
        raise AssertionError(f"kumod binary not found at {path}: run `make build` "
                             f"or set KUMOD_BIN")
    return path


def user_args():
    """kumod refuses to run as root without --user: be explicit in tests."""
    return ["--user", "root"] if os.geteuid() == 0 else []


# Ports handed out by free_port() in this process: never twice.
_GIVEN_PORTS = set()


def _ephemeral_range():
    try:
        lo, hi = open("/proc/sys/net/ipv4/ip_local_port_range").read().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def free_port():
    """A TCP port on 127.0.0.1 that nobody listens on right now, below the
    kernel's ephemeral range: a node that is restarted finds its port
    still free, never taken by some outgoing connection (or by a peer's
    redial connecting to itself while nobody listened)."""
    lo, _ = _ephemeral_range()
    top = min(lo, 65536) - 1
    base = 20000 if top > 24000 else 1024
    for _ in range(1000):
        port = random.randint(base, top)
        if port in _GIVEN_PORTS:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        _GIVEN_PORTS.add(port)
        return port
    raise RuntimeError(f"no free port in {base}-{top}")


def port_is_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_for(predicate, timeout=10.0, interval=0.05, what="condition"):
    """Poll predicate() until it returns something truthy; return that value.
    Raise AssertionError naming `what` at the deadline."""
    timeout *= WAIT_SCALE
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------
# Policy rendering


def lua_str(s):
    """A Lua string literal for s (str or bytes)."""
    if isinstance(s, str):
        s = s.encode()
    out = []
    for b in s:
        c = chr(b)
        if c in "\\'":
            out.append("\\" + c)
        elif 32 <= b < 127:
            out.append(c)
        else:
            out.append(f"\\{b:03d}")
    return "'" + "".join(out) + "'"


_LUA_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def lua_value(v):
    """Render a Python value (None, bool, int, float, str, list, dict) as Lua.
    Wrap a str in LuaExpr to insert raw Lua code."""
    if isinstance(v, LuaExpr):
        return str(v)
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (str, bytes)):
        return lua_str(v)
    if isinstance(v, (list, tuple)):
        return "{ " + ", ".join(lua_value(x) for x in v) + " }"
    if isinstance(v, dict):
        parts = []
        for k, x in v.items():
            key = k if _LUA_IDENT.match(k) else f"[{lua_str(k)}]"
            parts.append(f"{key} = {lua_value(x)}")
        return "{ " + ", ".join(parts) + " }"
    raise TypeError(f"cannot render {type(v).__name__} as Lua")


class LuaExpr(str):
    """Raw Lua code for lua_value(), e.g. LuaExpr("TEST_DIR .. '/cert.pem'")."""


POLICY_TEMPLATE = """\
-- kumod e2e test policy (rendered by tests/e2e/kumod_harness.py)
local kumo = require 'kumo'
local TEST_DIR = @TEST_DIR@
local FAKEDNS_PORT = @FAKEDNS_PORT@

-- append(name, line): add one line to TEST_DIR/name (handlers report here)
local function append(name, line)
  local f = assert(io.open(TEST_DIR .. '/' .. name, 'a'))
  f:write(line, '\\n')
  f:close()
end
-- write(name, bytes): replace TEST_DIR/name
local function write(name, bytes)
  local f = assert(io.open(TEST_DIR .. '/' .. name, 'wb'))
  f:write(bytes)
  f:close()
end

kumo.on('init', function()
  kumo.dns.configure_resolver { name_servers = { '127.0.0.1:' .. FAKEDNS_PORT } }
  kumo.define_spool { name = 'data', path = TEST_DIR .. '/data', kind = 'RocksDB' }
  kumo.define_spool { name = 'meta', path = TEST_DIR .. '/meta', kind = 'RocksDB' }
  kumo.configure_local_logs { log_dir = TEST_DIR .. '/logs', max_segment_duration = '1s' }
  kumo.start_esmtp_listener @LISTENER@
  -- init_extra
@INIT_EXTRA@
end)

-- extra
@EXTRA@
"""


def default_listener(port):
    return {"listen": f"127.0.0.1:{port}", "hostname": HOSTNAME,
            "relay_hosts": ["127.0.0.1"]}


def render_policy(test_dir, fakedns_port, listener, extra="", init_extra="",
                  template=POLICY_TEMPLATE):
    """The policy text. `listener` is a dict of start_esmtp_listener params
    (already merged with the defaults); `extra` is top-level Lua (handlers),
    `init_extra` runs at the end of init. Both can use TEST_DIR, FAKEDNS_PORT,
    append(name, line) and write(name, bytes)."""
    subst = {
        "@TEST_DIR@": lua_str(str(test_dir)),
        "@FAKEDNS_PORT@": str(int(fakedns_port)),
        "@LISTENER@": lua_value(listener),
        "@INIT_EXTRA@": init_extra,
        "@EXTRA@": extra,
    }
    # one pass, so text inside extra is never substituted again
    return re.sub("|".join(re.escape(k) for k in subst), lambda m: subst[m.group(0)], template)


# --------------------------------------------------------------------------
# Log segments


def read_segment(path):
    """Records of one complete segment, or None if zstd cannot read all of it
    (the open segment, or one cut short by kill -9)."""
    r = subprocess.run(["zstd", "-dc", "-q", str(path)], capture_output=True, timeout=30)
    if r.returncode != 0:
        return None
    out = []
    for line in r.stdout.decode("utf-8", "replace").splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def segment_files(log_dir):
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        return []
    return sorted(p for p in log_dir.rglob("*") if p.is_file())


def read_records(log_dir):
    recs = []
    for p in segment_files(log_dir):
        seg = read_segment(p)
        if seg is not None:
            recs.extend(seg)
    return recs


# --------------------------------------------------------------------------
# The daemon


class KumodStartError(AssertionError):
    pass


class Kumod:
    """One kumod under test, in its own temp directory.

    Attributes: dir (Path), port, policy_path, proc, runs (list of diag log
    paths, one per start), hostname.
    """

    def __init__(self, fakedns_port, listener=None, extra="", init_extra="",
                 policy_text=None, tmp_root=None, env=None, name="kumod"):
        self.dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=tmp_root))
        self.port = free_port()
        self.fakedns_port = fakedns_port
        lst = default_listener(self.port)
        lst.update(listener or {})
        self.listener = lst
        self.hostname = lst.get("hostname", HOSTNAME)
        self.policy_path = self.dir / "policy.lua"
        if policy_text is None:
            policy_text = render_policy(self.dir, fakedns_port, lst, extra, init_extra)
        self.policy_path.write_text(policy_text)
        self.log_dir = self.dir / "logs"
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.proc = None
        self.runs = []
        self.exit_codes = []
        self.clients = []  # closed by cleanup() so no session delays the stop

    # -- lifecycle --------------------------------------------------------

    def start(self, wait=True, extra_args=()):
        """Start kumod; with wait, block until it logs `initialization
        complete` (return self) or exits (raise KumodStartError with the log
        tail)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log_path = self.dir / f"kumod.{len(self.runs)}.log"
        self.runs.append(log_path)
        argv = [kumod_bin(), "--policy", str(self.policy_path), *user_args(), *extra_args]
        with open(log_path, "wb") as logf:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, cwd=self.dir, env=self.env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            if READY_LINE in self.log_text():
                return self
            rc = self.proc.poll()
            if rc is not None:
                self.exit_codes.append(rc)
                raise KumodStartError(
                    f"kumod exited with {rc} before '{READY_LINE}':\n{self.log_tail()}")
            if time.monotonic() >= deadline:
                raise KumodStartError(
                    f"kumod did not log '{READY_LINE}' within {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.running():
            os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout=STOP_TIMEOUT):
        """Wait for the process to end; return its exit code (negative =
        killed by that signal). Raise AssertionError at the deadline."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"kumod (pid {self.proc.pid}) still running after "
                                 f"{timeout:.0f}s:\n{self.log_tail()}")
        self.exit_codes.append(rc)
        return rc

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, wait, return the exit code (None if it was not running)."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return self.proc.returncode
        os.kill(self.proc.pid, signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill9(self):
        """SIGKILL and reap; returns the exit code (-9)."""
        if self.running():
            os.kill(self.proc.pid, signal.SIGKILL)
        return self.wait_exit(10)

    def restart(self, wait=True):
        """Stop (SIGTERM) if running, then start on the same dirs and port."""
        if self.running():
            rc = self.stop()
            assert rc == 0, f"kumod exited {rc} on SIGTERM:\n{self.log_tail()}"
        return self.start(wait=wait)

    def cleanup(self):
        """Finalizer: close our clients, make sure our process is gone
        (SIGTERM, then SIGKILL)."""
        for c in self.clients:
            try:
                c.close()
            except OSError:
                pass
        self.clients = []
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    # -- diagnostics ------------------------------------------------------

    def log_text(self, run=-1):
        """Diagnostic log (stdout+stderr) of one start (default: the last);
        run=None for all of them."""
        paths = self.runs if run is None else [self.runs[run]] if self.runs else []
        return "".join(p.read_bytes().decode("utf-8", "replace") for p in paths if p.exists())

    def log_tail(self, lines=40, run=-1):
        return "\n".join(self.log_text(run).splitlines()[-lines:])

    def sanitizer_reports(self):
        """Each sanitizer report: its first line and up to 40 lines of the
        stacks after it, so a CI log says where it happened."""
        lines = self.log_text(None).splitlines()
        out = []
        for i, ln in enumerate(lines):
            if SANITIZER_RE.search(ln):
                out.append("\n".join(lines[i:i + 40]))
        return out

    def wait_log(self, pattern, timeout=10, run=-1):
        """Wait for a regex in the diagnostic log; return the match."""
        rx = re.compile(pattern)
        return wait_for(lambda: rx.search(self.log_text(run)), timeout,
                        what=f"/{pattern}/ in the kumod log (tail:\n{self.log_tail()})")

    def recovered_count(self, timeout=10, run=-1):
        """N from `recovered N messages` in a start's log."""
        return int(self.wait_log(RECOVERED_RE.pattern, timeout, run).group(1))

    # -- log records ------------------------------------------------------

    def segments(self):
        return segment_files(self.log_dir)

    def records(self, type=None):
        """All records from the readable (closed) segments, oldest first."""
        recs = read_records(self.log_dir)
        return [r for r in recs if type is None or r.get("type") == type]

    def wait_records(self, predicate, timeout=10, what="log records"):
        """Wait until predicate(records()) is truthy; return its value."""
        return wait_for(lambda: predicate(self.records()), timeout, interval=0.2, what=what)

    # -- clients ----------------------------------------------------------

    def smtp(self, timeout=10, ehlo=None):
        """smtplib.SMTP connected to the listener; the greeting is in
        .greeting = (code, bytes). With ehlo, EHLO is sent too."""
        s = smtplib.SMTP(timeout=timeout)
        self.clients.append(s)
        s.greeting = s.connect("127.0.0.1", self.port)
        # connect() leaves _host unset, and starttls() uses it as the TLS
        # server name: name the listener's host as SMTP(host) would.
        s._host = "mx.example.test"
        if ehlo:
            s.ehlo(ehlo)
        return s

    def raw(self, timeout=10):
        c = RawSmtp("127.0.0.1", self.port, timeout)
        self.clients.append(c)
        return c

    def path(self, name):
        return self.dir / name

    # -- delivery helpers -------------------------------------------------

    def send(self, rcpts=("bob@dest.test",), sender="alice@client.test", msg=None, n=1):
        """Inject n messages (one transaction each) over one session; return
        the ids (one per recipient per message) in order."""
        s = self.smtp(ehlo="client.test")
        ids = []
        for _ in range(n):
            code, text = send_message(s, sender=sender, rcpts=tuple(rcpts), msg=msg)
            assert code == 250, f"DATA: {code} {text}"
            ids += parse_ids(text)
        s.quit()
        return ids

    def wait_for_records(self, type, n=1, timeout=30, **match):
        """Wait until at least n records of `type` have every field in match
        equal (e.g. id=...); return those records, oldest first."""
        def pick(recs):
            got = [r for r in recs if r.get("type") == type
                   and all(r.get(k) == v for k, v in match.items())]
            return got if len(got) >= n else None
        try:
            return self.wait_records(pick, timeout, what=f"{n} {type} record(s) with {match}")
        except AssertionError as e:
            summary = [(r.get("type"), r.get("id"), r.get("recipient"),
                        (r.get("response") or {}).get("code"),
                        (r.get("response") or {}).get("content"))
                       for r in self.records()]
            raise AssertionError(f"{e}\nrecords so far: {summary}\nlog tail:\n"
                                 f"{self.log_tail()}") from None

    def records_for(self, mid, type=None):
        """Records of one message id (optionally of one type), oldest first."""
        return [r for r in self.records(type) if r.get("id") == mid]


# --------------------------------------------------------------------------
# Clients


class SmtpReply:
    def __init__(self, code, lines):
        self.code = code
        self.lines = lines  # texts after "NNN-" / "NNN "

    @property
    def text(self):
        return "\n".join(self.lines)

    def __str__(self):
        return "\n".join(f"{self.code} {ln}" for ln in self.lines)

    __repr__ = __str__


class RawSmtp:
    """A byte-level SMTP client: send exactly what a test says, read replies
    one at a time."""

    def __init__(self, host, port, timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _readline(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed (pending {self.buf!r})")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def reply(self):
        """Read one (possibly multi-line) reply."""
        lines = []
        while True:
            line = self._readline()
            if len(line) < 3 or not line[:3].isdigit() or (len(line) > 3 and line[3] not in " -"):
                raise AssertionError(f"malformed reply line {line!r}")
            lines.append(line[4:])
            if len(line) == 3 or line[3] == " ":
                return SmtpReply(int(line[:3]), lines)

    def try_reply(self, timeout):
        """A reply if one arrives within timeout seconds, else None (a
        partial line stays buffered)."""
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            return self.reply()
        except socket.timeout:
            return None
        finally:
            self.sock.settimeout(old)

    def cmd(self, line):
        """Send one command line (CRLF added) and read its reply."""
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b"\r\n")
        return self.reply()

    def closed(self, timeout=5):
        """True when the server has closed the connection (EOF)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


def noverify_context():
    """TLS client context that accepts the self-signed test certificates."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def make_message(subject="e2e test", body="hello from the e2e tests\r\n",
                 sender="alice@client.test", to="bob@dest.test", extra_headers=""):
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{time.time_ns()}@client.test>\r\n{extra_headers}\r\n{body}")


def send_message(s, sender="alice@client.test", rcpts=("bob@dest.test",), msg=None):
    """One transaction over an smtplib.SMTP; returns the final (code, text).
    Asserts MAIL and every RCPT got 250."""
    if msg is None:
        msg = make_message(sender=sender, to=", ".join(rcpts))
    code, text = s.mail(sender)
    assert code == 250, f"MAIL FROM: {code} {text!r}"
    for r in rcpts:
        code, text = s.rcpt(r)
        assert code == 250, f"RCPT TO:<{r}>: {code} {text!r}"
    code, text = s.data(msg)
    return code, text.decode("utf-8", "replace") if isinstance(text, bytes) else text


def parse_ids(text):
    """The ids of a `250 OK ids=...` text; AssertionError if it is not one."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    m = OK_IDS_RE.fullmatch(text.strip())
    assert m, f"not an 'OK ids=<32 hex>...' reply: {text!r}"
    return m.group(1).split()


def unfold_headers(data):
    """Header block of an RFC 5322 message as [(name, unfolded value)]."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    head = re.split(r"\r?\n\r?\n", data, 1)[0]
    head = re.sub(r"\r?\n[ \t]+", " ", head)
    out = []
    for line in re.split(r"\r?\n", head):
        if ":" in line:
            n, v = line.split(":", 1)
            out.append((n.strip(), v.strip()))
    return out


def swaks(port, *args, timeout=60):
    """Run swaks against the listener; returns CompletedProcess (text)."""
    argv = ["swaks", "--server", "127.0.0.1", "--port", str(port), "--helo", "swaks.test",
            "--timeout", "20", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def run_kumod(args, timeout=60, cwd=None):
    """Run kumod to completion (for --version, --validate, ...)."""
    return subprocess.run([kumod_bin(), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL)


# --------------------------------------------------------------------------
# Delivery policy

DELIVERY_LUA = """
-- delivery configuration (rendered by kumod_harness.delivery_policy)
local DELIVERY = @DELIVERY@

local function merged(base, over)
  local t = {}
  for k, v in pairs(base or {}) do t[k] = v end
  for k, v in pairs(over or {}) do t[k] = v end
  return t
end

local function delivery_queue_config(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config(merged(DELIVERY.queue, DELIVERY.queues[domain]))
end
local function delivery_path_config(routing_domain, egress_source, site_name)
  return kumo.make_egress_path(merged(DELIVERY.path, DELIVERY.paths[routing_domain]))
end

kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  append('get_queue_config.txt', table.concat({ tostring(domain), tostring(tenant),
    tostring(campaign), tostring(routing_domain) }, ' '))
  return delivery_queue_config(domain, tenant, campaign, routing_domain)
end)

kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  append('get_egress_path_config.txt', table.concat({ tostring(routing_domain),
    tostring(egress_source), tostring(site_name) }, ' '))
  return delivery_path_config(routing_domain, egress_source, site_name)
end)

if DELIVERY.sources then
  kumo.on('get_egress_source', function(name)
    return kumo.make_egress_source(merged({ name = name }, DELIVERY.sources[name]))
  end)
end
if DELIVERY.pools then
  kumo.on('get_egress_pool', function(name)
    local p = DELIVERY.pools[name]
    if p then
      return kumo.make_egress_pool { name = name, entries = p }
    end
    return kumo.make_egress_pool { name = name, entries = { { name = 'unspecified' } } }
  end)
end

-- build every configured object once at startup: a schema error stops
-- kumod at init with the policy line, not later inside delivery
function delivery_check()
  delivery_queue_config('startup.check.test')
  for domain in pairs(DELIVERY.queues) do delivery_queue_config(domain) end
  delivery_path_config('startup.check.test', 'unspecified', 'startup')
  for domain in pairs(DELIVERY.paths) do delivery_path_config(domain, 'unspecified', 'startup') end
  for name, s in pairs(DELIVERY.sources or {}) do
    kumo.make_egress_source(merged({ name = name }, s))
  end
  for name, p in pairs(DELIVERY.pools or {}) do
    kumo.make_egress_pool { name = name, entries = p }
  end
end
"""

DEFAULT_QUEUE = {"retry_interval": "1s", "max_retry_interval": "2s"}


def sink_path(port, **kw):
    """Egress path settings that let kumod reach a sink on loopback: no
    prohibited hosts, no TLS, the sink's port."""
    p = {"prohibited_hosts": [], "enable_tls": "Disabled", "smtp_port": int(port)}
    p.update(kw)
    return p


def delivery_policy(queue=None, queues=None, path=None, paths=None, sources=None,
                    pools=None, extra="", init_extra=""):
    """Keyword arguments for make_kumod()/Kumod() with the delivery events:

    queue   make_queue_config params for every queue (merged over
            DEFAULT_QUEUE: retry_interval 1s, max_retry_interval 2s)
    queues  {domain: params} merged over `queue` for that domain
    path    make_egress_path params for every path (use sink_path(port))
    paths   {routing_domain: params} merged over `path`
    sources {name: make_egress_source params} (defines get_egress_source)
    pools   {name: [{"name": source, "weight": w}, ...]} (get_egress_pool)

    Values are Python (lua_value); LuaExpr for raw Lua such as
    LuaExpr("TEST_DIR .. '/maildir'"). Every call of get_queue_config and
    get_egress_path_config appends its arguments to
    get_queue_config.txt / get_egress_path_config.txt in the test dir."""
    q = dict(DEFAULT_QUEUE)
    q.update(queue or {})
    conf = {"queue": q, "queues": queues or {}, "path": path or {}, "paths": paths or {}}
    if sources is not None:
        conf["sources"] = sources
    if pools is not None:
        conf["pools"] = pools
    lua = DELIVERY_LUA.replace("@DELIVERY@", lua_value(conf))
    return {"extra": lua + "\n" + extra,
            "init_extra": "  delivery_check()\n" + init_extra}
