"""kcli against a fake kumod HTTP API (KUMOMTA-API.md §5-6): one-shot
subcommands send the right method, path and JSON body and print tables;
server errors become one line on stderr with exit 1; an unreachable
endpoint exits 1; --json prints the raw answer; and the interactive `kumo>`
shell, driven through a pseudo-terminal, shows its prompt, lists commands,
runs one, recalls history with the up arrow and leaves on `quit`.

The fake server is Python's http.server on 127.0.0.1 with canned answers,
so these tests do not depend on kumod's own HTTP server."""
import json
import os
import pty
import select
import subprocess
import termios
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import kumod_harness as H

BOUNCES = [
    {"id": "b-1", "reason": "spam trap", "duration": "4m 59s 10ms",
     "domain": "a.test", "total_bounced": 3, "bounced": {}},
    {"id": "b-2", "reason": "purge", "duration": "1h", "total_bounced": 0,
     "bounced": {}},
]
METRICS = (
    "# TYPE ready_count gauge\n"
    'ready_count{service="smtp_client:src->mx.a.test@smtp_client"} 7\n'
    'total_messages_delivered{service="smtp_client:src->mx.a.test@smtp_client"} 12\n'
    'total_messages_delivered{service="smtp_client"} 12\n'
    'scheduled_count{queue="a.test"} 2\n'
)
CLUSTER = {
    "cluster_id": "c-1", "term": 4, "leader": "n1", "commit_index": 50,
    "members": [
        {"id": "n1", "raft_address": "127.0.0.1:7001", "role": "leader",
         "applied_index": 50, "last_ping_age_ms": 0, "queued": 3,
         "version": "0.1.0", "state": "up"},
        {"id": "n2", "raft_address": "127.0.0.1:7002", "role": "follower",
         "applied_index": 40, "last_ping_age_ms": 30000, "queued": 0,
         "version": "0.1.0", "unreachable": True},
    ],
}


# -- Helpers -------------------------------------------------------------------

def kcli_bin():
    """The kcli under test: $KCLI_BIN, else build/bin/kcli in the repo."""
    path = os.environ.get("KCLI_BIN") or str(H.REPO_ROOT / "build" / "bin" / "kcli")
    if not os.access(path, os.X_OK):
        raise AssertionError(f"kcli binary not found at {path}: build the "
                             f"`kcli` target or set KCLI_BIN")
    return path


class FakeApi:
    """An HTTP server on 127.0.0.1 answering from `routes`
    ({(method, path): (status, body, content_type)}) and recording every
    request as {"method", "path", "body"} (body parsed as JSON if any)."""

    def __init__(self):
        self.routes = {}
        self.requests = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                api.requests.append({
                    "method": self.command, "path": self.path,
                    "content_type": self.headers.get("Content-Type"),
                    "body": json.loads(raw) if raw else None,
                })
                status, body, ctype = api.routes.get(
                    (self.command, self.path),
                    (404, json.dumps({"error": "no route"}), "application/json"))
                data = body.encode() if isinstance(body, str) else body
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _serve

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def route(self, method, path, status=200, body="", ctype="application/json"):
        if not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        self.routes[(method, path)] = (status, body, ctype)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api():
    a = FakeApi()
    yield a
    a.close()


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy",
                                "no_proxy", "kumo_kcli_endpoint")}
    env.update(extra)
    return env


def kcli(api, *args, env=None, endpoint=True):
    argv = [kcli_bin()]
    if endpoint:
        argv += ["--endpoint", api.url]
    argv += list(args)
    return subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          env=env or clean_env(), stdin=subprocess.DEVNULL)


def assert_clean(r):
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr


class Pty:
    """kcli running on a pseudo-terminal; read() collects its output."""

    def __init__(self, argv, env):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave,
                                     stderr=slave, env=env, close_fds=True,
                                     start_new_session=True)
        os.close(slave)
        self.out = b""

    def send(self, data):
        os.write(self.master, data.encode())

    def expect(self, needle, timeout=15.0, start=0):
        """Wait until `needle` appears in the output after offset `start`;
        return the offset just past it."""
        deadline = time.monotonic() + timeout
        while True:
            i = self.out.find(needle.encode(), start)
            if i >= 0:
                return i + len(needle)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {needle!r} in kcli output:\n"
                                     f"{self.out.decode(errors='replace')}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError("kcli closed its terminal before "
                                         f"{needle!r}:\n{self.out.decode(errors='replace')}")
                self.out += chunk

    def wait_line_editing(self, timeout=10.0):
        """Wait until libedit has put the terminal in non-canonical mode:
        keys typed before that (a TAB) reach the line discipline, not the
        editor, and completion would not run."""
        deadline = time.monotonic() + timeout
        while termios.tcgetattr(self.master)[3] & termios.ICANON:
            if time.monotonic() > deadline:
                raise AssertionError("kcli never switched to line editing")
            time.sleep(0.01)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


# -- One-shot commands ---------------------------------------------------------

def test_version_and_help_need_no_server(api):
    r = kcli(api, "--version")
    assert r.returncode == 0 and r.stdout.startswith("kcli ")
    r = kcli(api, "--help")
    assert r.returncode == 0
    for name in ("queue-summary", "bounce-list", "suspend-ready-q", "cluster"):
        assert name in r.stdout
    r = kcli(api, "rebind", "--help")
    assert r.returncode == 0 and "usage: kcli rebind --reason R" in r.stdout
    assert api.requests == []


def test_bounce_posts_body_and_prints_id(api):
    api.route("POST", "/api/admin/bounce/v1",
              body={"id": "b-123", "bounced": {}, "total_bounced": 0})
    r = kcli(api, "bounce", "--domain", "a.test", "--queue", "q1", "--queue",
             "q2", "--reason", "bye now", "--duration", "10m",
             "--suppress-logging")
    assert_clean(r)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "b-123\n"
    assert "asynchronous" in r.stderr
    [req] = api.requests
    assert req["method"] == "POST" and req["path"] == "/api/admin/bounce/v1"
    assert req["content_type"] == "application/json"
    assert req["body"] == {"domain": "a.test", "queue_names": ["q1", "q2"],
                           "reason": "bye now", "duration": "10m",
                           "suppress_logging": True}


def test_bounce_list_prints_a_table(api):
    api.route("GET", "/api/admin/bounce/v1", body=BOUNCES)
    r = kcli(api, "bounce-list")
    assert_clean(r)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["ID", "REASON", "REMAIN", "BOUNCED", "CRITERIA"]
    assert lines[1].split() == ["b-1", "spam", "trap", "4m", "59s", "3",
                                "domain=a.test"]
    assert lines[2].split() == ["b-2", "purge", "1h", "0", "(everything)"]
    # Columns line up: every row has "REASON" column at the same offset.
    assert lines[1].index("spam") == lines[0].index("REASON")


def test_json_prints_the_raw_answer(api):
    raw = json.dumps(BOUNCES)
    api.route("GET", "/api/admin/bounce/v1", body=raw)
    for args in (["--json", "bounce-list"], ["bounce-list", "--json"]):
        r = kcli(api, *args)
        assert r.returncode == 0, r.stderr
        assert r.stdout == raw + "\n"


def test_suspend_family_round_trip(api):
    api.route("POST", "/api/admin/suspend/v1", body={"id": "s-1"})
    api.route("GET", "/api/admin/suspend/v1",
              body=[{"id": "s-1", "reason": "slow", "duration": "5m",
                     "tenant": "acme"}])
    api.route("DELETE", "/api/admin/suspend/v1", body="")
    api.route("POST", "/api/admin/suspend-ready-q/v1", body={"id": "r-1"})
    api.route("GET", "/api/admin/suspend-ready-q/v1",
              body=[{"id": "r-1", "name": "src->mx@smtp_client",
                     "reason": "ts04", "duration": 300}])
    api.route("DELETE", "/api/admin/suspend-ready-q/v1", body="")

    r = kcli(api, "suspend", "--tenant", "acme", "--reason", "slow")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"id": "s-1"}
    r = kcli(api, "suspend-list")
    assert r.stdout.splitlines()[1].split() == ["s-1", "slow", "5m", "tenant=acme"]
    r = kcli(api, "suspend-cancel", "--id", "s-1")
    assert r.returncode == 0 and "s-1 cancelled" in r.stdout
    r = kcli(api, "suspend-ready-q", "--name", "src->mx@smtp_client",
             "--reason", "ts04", "--duration", "2h")
    assert json.loads(r.stdout) == {"id": "r-1"}
    r = kcli(api, "suspend-ready-q-list")
    assert r.stdout.splitlines()[1].split() == ["r-1", "src->mx@smtp_client",
                                                "ts04", "5m0s"]
    r = kcli(api, "suspend-ready-q-cancel", "--id", "r-1")
    assert r.returncode == 0

    sent = [(q["method"], q["path"], q["body"]) for q in api.requests]
    assert sent == [
        ("POST", "/api/admin/suspend/v1", {"tenant": "acme", "reason": "slow"}),
        ("GET", "/api/admin/suspend/v1", None),
        ("DELETE", "/api/admin/suspend/v1", {"id": "s-1"}),
        ("POST", "/api/admin/suspend-ready-q/v1",
         {"name": "src->mx@smtp_client", "reason": "ts04", "duration": "2h"}),
        ("GET", "/api/admin/suspend-ready-q/v1", None),
        ("DELETE", "/api/admin/suspend-ready-q/v1", {"id": "r-1"}),
    ]


def test_bounce_cancel_rebind_inspect_and_log_filter(api):
    api.route("DELETE", "/api/admin/bounce/v1", body="")
    api.route("POST", "/api/admin/rebind/v1", body="{}")
    api.route("GET", "/api/admin/inspect-message/v1?id=abc123&want_body=true",
              body={"id": "abc123", "message": {"sender": "a@b.test"}})
    api.route("POST", "/api/admin/set_diagnostic_log_filter/v1", body="")

    assert kcli(api, "bounce-cancel", "--id", "b-1").returncode == 0
    r = kcli(api, "rebind", "--domain", "a.test", "--reason", "move",
             "--set", "routing_domain=b.test", "--always-flush")
    assert r.returncode == 0, r.stderr
    r = kcli(api, "inspect-message", "--want-body", "abc123")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["message"]["sender"] == "a@b.test"
    r = kcli(api, "set-log-filter", "kumod=debug")
    assert r.returncode == 0 and r.stdout == ""

    sent = [(q["method"], q["path"], q["body"]) for q in api.requests]
    assert sent == [
        ("DELETE", "/api/admin/bounce/v1", {"id": "b-1"}),
        ("POST", "/api/admin/rebind/v1",
         {"domain": "a.test", "reason": "move",
          "data": {"routing_domain": "b.test"}, "always_flush": True}),
        ("GET", "/api/admin/inspect-message/v1?id=abc123&want_body=true", None),
        ("POST", "/api/admin/set_diagnostic_log_filter/v1",
         {"filter": "kumod=debug"}),
    ]


def test_queue_summary_prints_ready_and_scheduled_tables(api):
    api.route("GET", "/api/admin/queue-summary/v1",
              body={"scheduled": [{"queue": "a.test", "count": 2},
                                  {"queue": "t@b.test", "count": 5}],
                    "total": 7})
    api.route("GET", "/metrics", body=METRICS,
              ctype="text/plain; version=0.0.4")
    r = kcli(api, "queue-summary")
    assert_clean(r)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["SITE", "SOURCE", "PROTO", "D", "T", "C", "Q"]
    assert lines[1].split() == ["mx.a.test", "src", "smtp_client", "12", "0",
                                "0", "7"]
    assert lines[2] == ""
    assert lines[3].split() == ["SCHEDULED", "QUEUE", "COUNT"]
    assert lines[4].split() == ["t@b.test", "5"]
    assert lines[5].split() == ["a.test", "2"]
    assert [q["path"] for q in api.requests] == ["/api/admin/queue-summary/v1",
                                                 "/metrics"]


def test_cluster_status_shows_members_and_unreachable(api):
    api.route("GET", "/api/admin/cluster/status/v1", body=CLUSTER)
    r = kcli(api, "cluster", "status")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "CLUSTER  c-1" in out and "LEADER   n1" in out
    assert "TERM     4" in out and "COMMIT   50" in out
    rows = {line.split()[0]: line for line in out.splitlines()
            if line.startswith("n")}
    assert rows["n1"].split()[-1] == "up"
    assert rows["n2"].split()[-1] == "unreachable"
    assert rows["n2"].split()[4] == "10"  # lag: commit 50 - applied 40


# -- Errors --------------------------------------------------------------------

def test_server_error_is_one_line_and_exit_1(api):
    api.route("POST", "/api/admin/bounce/v1", status=503,
              body={"error": "no quorum"})
    api.route("GET", "/api/admin/suspend/v1", status=500,
              body="Internal trouble\nwith details\n", ctype="text/plain")
    r = kcli(api, "bounce", "--everything", "--reason", "x")
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr == "kcli: POST /api/admin/bounce/v1: 503 no quorum\n"
    r = kcli(api, "suspend-list")
    assert r.returncode == 1
    assert r.stderr == "kcli: GET /api/admin/suspend/v1: 500 Internal trouble\n"


def test_unreachable_endpoint_exits_1():
    port = H.free_port()
    r = subprocess.run([kcli_bin(), "bounce-list"], capture_output=True,
                       text=True, timeout=60, stdin=subprocess.DEVNULL,
                       env=clean_env(KUMO_KCLI_ENDPOINT=f"http://127.0.0.1:{port}"))
    assert r.returncode == 1
    assert r.stderr.startswith(f"kcli: cannot reach http://127.0.0.1:{port}: ")
    assert len(r.stderr.splitlines()) == 1


def test_usage_errors_exit_2_without_request(api):
    for args in (["bounce", "--domain", "a.test"], ["frobnicate"],
                 ["--bogus"], ["inspect-message"]):
        r = kcli(api, *args)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.startswith("kcli: ")
    r = kcli(api, "bounce", "--domain", "a.test")
    assert "--reason is required" in r.stderr and "usage: kcli bounce" in r.stderr
    # No subcommand and no terminal: usage, exit 2.
    r = kcli(api)
    assert r.returncode == 2 and "usage: kcli" in r.stderr
    assert api.requests == []


# -- The kumo> shell -----------------------------------------------------------

def test_shell_prompt_help_command_history_and_quit(api, tmp_path):
    api.route("GET", "/api/admin/bounce/v1", body=BOUNCES)
    env = clean_env(TERM="xterm", HOME=str(tmp_path))
    sh = Pty([kcli_bin(), "--endpoint", api.url], env)
    try:
        pos = sh.expect("kumo> ")
        sh.send("help\r")
        pos = sh.expect("suspend-ready-q-cancel", start=pos)
        pos = sh.expect("kumo> ", start=pos)
        assert b"quit" in sh.out

        sh.send("bounce-list\r")
        pos = sh.expect("spam trap", start=pos)
        pos = sh.expect("kumo> ", start=pos)
        assert len(api.requests) == 1

        # An error is printed and the shell carries on.
        sh.send("bounce --reason 'unterminated\r")
        pos = sh.expect("unterminated single quote", start=pos)
        pos = sh.expect("kumo> ", start=pos)

        # Up twice: past the failed line back to bounce-list.
        sh.send("\x1b[A\x1b[A\r")
        pos = sh.expect("spam trap", start=pos)
        pos = sh.expect("kumo> ", start=pos)
        assert [q["path"] for q in api.requests] == ["/api/admin/bounce/v1"] * 2

        sh.send("quit\r")
        assert sh.proc.wait(timeout=15) == 0
    finally:
        sh.close()
    hist = (tmp_path / ".kcli_history").read_text()
    assert "bounce-list" in hist


def test_shell_completes_command_names(api, tmp_path):
    env = clean_env(TERM="xterm", HOME=str(tmp_path))
    sh = Pty([kcli_bin(), "--endpoint", api.url], env)
    try:
        pos = sh.expect("kumo> ")
        sh.wait_line_editing()
        # "bounce-l" + TAB completes to "bounce-list".
        sh.send("bounce-l\t")
        pos = sh.expect("ist", start=pos)
        api.route("GET", "/api/admin/bounce/v1", body="[]")
        sh.send("\r")
        pos = sh.expect("ID  REASON", start=pos)
        pos = sh.expect("kumo> ", start=pos)
        sh.send("\x04")  # EOF leaves too
        assert sh.proc.wait(timeout=15) == 0
    finally:
        sh.close()
