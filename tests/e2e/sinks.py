"""sinks.py - SMTP sinks on loopback for kumod's delivery tests.

SmtpSink is an aiosmtpd server in its own thread that records every
connection and transaction in memory and answers each recipient by its
local part:

    tempfail...      451 4.3.0 (every time)
    tempfailN-...    451 4.3.0 for the first N RCPTs of that address, then 250
    permfail...      550 5.1.1
    slowS-...        250 at RCPT, but the DATA reply waits S seconds (float;
                     `slow-...` waits 1 s)
    anything else    250

Options: hostname (greeting/EHLO name), host (bind address: any 127/8
address, e.g. 127.0.0.2 for a second MX host on the same port), port,
tls=(cert, key) to offer STARTTLS, banner_421 (greet with 421 and close),
pipelining (advertise PIPELINING, default on), data_delay (seconds before
every DATA reply).

PostfixSink runs Debian's /usr/sbin/smtp-sink for tests that only count
messages. Standard library + python3-aiosmtpd (1.4.x) only.
"""
import asyncio
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

TEMPFAIL_N_RE = re.compile(r"tempfail(\d+)-", re.I)
SLOW_RE = re.compile(r"slow(\d+(?:\.\d+)?)?-", re.I)

TEMPFAIL_REPLY = "451 4.3.0 sink: temporary failure, try again later"
PERMFAIL_REPLY = "550 5.1.1 sink: no such user here"
BANNER_421 = "421 4.3.2 sink: too busy, go away"
WAIT_SCALE = float(os.environ.get("KUMOD_WAIT_SCALE", "1"))  # as kumod_harness


def free_port_on(*hosts):
    """A TCP port free on every one of hosts (127/8 addresses) right now."""
    hosts = hosts or ("127.0.0.1",)
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((hosts[0], 0))
        port = s.getsockname()[1]
        ok = True
        others = []
        for h in hosts[1:]:
            o = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                o.bind((h, port))
            except OSError:
                ok = False
            others.append(o)
        for o in others:
            o.close()
        s.close()
        if ok:
            return port
    raise RuntimeError(f"no port free on all of {hosts}")


def make_cert(directory, cn="sink.test"):
    """A self-signed EC certificate for cn in directory; returns (cert, key)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    cert, key = d / f"{cn}.crt", d / f"{cn}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", f"/CN={cn}", "-addext", f"subjectAltName=DNS:{cn}",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


# --------------------------------------------------------------------------
# What the sink saw


@dataclass
class Connection:
    id: int
    peer: tuple
    opened: float
    closed: Optional[float] = None
    ehlo: Optional[str] = None
    tls: bool = False
    transactions: int = 0


@dataclass
class Transaction:
    conn_id: int
    peer: tuple
    ehlo: Optional[str]
    tls: bool
    mail_from: str
    rcpt_tos: List[str]
    data: bytes
    time: float
    reply: str = ""


@dataclass
class RcptAnswer:
    conn_id: int
    address: str
    code: int
    time: float


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_conn: int = 1
    connections: list = field(default_factory=list)
    active: int = 0
    max_concurrent: int = 0
    transactions: list = field(default_factory=list)
    rcpts: list = field(default_factory=list)
    attempts: dict = field(default_factory=dict)  # address -> RCPTs seen


# --------------------------------------------------------------------------
# aiosmtpd plumbing


class _Handler:
    def __init__(self, sink):
        self.sink = sink

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        server.kumo_conn.ehlo = hostname
        if self.sink.pipelining:
            responses.insert(-1, "250-PIPELINING")
        responses.insert(-1, "250-ENHANCEDSTATUSCODES")
        return responses

    async def handle_HELO(self, server, session, envelope, hostname):
        session.host_name = hostname
        server.kumo_conn.ehlo = hostname
        return f"250 {server.hostname}"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.sink.answer_rcpt(address)
        code = int(reply[:3])
        with self.sink.state.lock:
            self.sink.state.rcpts.append(
                RcptAnswer(server.kumo_conn.id, address, code, time.time()))
        if code == 250:
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        return reply

    async def handle_DATA(self, server, session, envelope):
        delay = self.sink.data_delay
        for r in envelope.rcpt_tos:
            m = SLOW_RE.match(r.split("@", 1)[0])
            if m:
                delay = max(delay, float(m.group(1) or 1.0))
        if delay > 0:
            await asyncio.sleep(delay)
        conn = server.kumo_conn
        st = self.sink.state
        with st.lock:
            n = len(st.transactions) + 1
            reply = f"250 2.0.0 OK queued as {n}"
            st.transactions.append(Transaction(
                conn.id, session.peer, conn.ehlo, session.ssl is not None,
                envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content),
                time.time(), reply))
            conn.transactions += 1
        return reply


class _SinkSMTP(SMTP):
    """aiosmtpd's SMTP with connection accounting and a 421 banner mode."""

    def __init__(self, sink, *args, **kw):
        super().__init__(*args, **kw)
        self.sink = sink
        self.kumo_conn = None

    def connection_made(self, transport):
        first = self.kumo_conn is None
        super().connection_made(transport)
        st = self.sink.state
        if first:
            with st.lock:
                self.kumo_conn = Connection(st.next_conn, transport.get_extra_info("peername"),
                                            time.time())
                st.next_conn += 1
                st.connections.append(self.kumo_conn)
                st.active += 1
                st.max_concurrent = max(st.max_concurrent, st.active)
        else:  # the TLS transport after STARTTLS
            self.kumo_conn.tls = True

    def connection_lost(self, error):
        if self.kumo_conn is not None and self.kumo_conn.closed is None:
            with self.sink.state.lock:
                self.kumo_conn.closed = time.time()
                self.sink.state.active -= 1
        super().connection_lost(error)

    async def _handle_client(self):
        if self.sink.banner_421:
            await self.push(BANNER_421)
            self.transport.close()
            return
        await super()._handle_client()


class _Controller(Controller):
    def __init__(self, sink, *args, **kw):
        super().__init__(*args, **kw)
        self.sink = sink

    def factory(self):
        return _SinkSMTP(self.sink, self.handler, **self.SMTP_kwargs)


# --------------------------------------------------------------------------
# The sink


class SmtpSink:
    """An aiosmtpd sink on host:port (see the module doc for the answers).

    Read (thread-safe copies): transactions(), connections(), rcpt_answers(),
    max_concurrent, total_connections, per_connection_counts(),
    attempts(address). Wait: wait_transactions(n), wait_rcpts(pred).
    """

    def __init__(self, host="127.0.0.1", port=None, hostname="sink.test", tls=None,
                 banner_421=False, pipelining=True, data_delay=0.0, timeout=60):
        self.host = host
        self.port = port or free_port_on(host)
        self.hostname = hostname
        self.tls = tls
        self.banner_421 = banner_421
        self.pipelining = pipelining
        self.data_delay = data_delay
        self.state = _State()
        self._timeout = timeout
        self._controller = None

    # -- lifecycle --------------------------------------------------------

    def start(self):
        kw = {"server_hostname": self.hostname, "ident": "sink", "timeout": self._timeout,
              "data_size_limit": 64 * 1024 * 1024}
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
            kw["tls_context"] = ctx
        self._controller = _Controller(self, _Handler(self), hostname=self.host,
                                       port=self.port, **kw)
        self._controller.start()
        # Controller.start() opens one connection of its own to check the
        # server: wait for it to end, then forget it.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with self.state.lock:
                if self.state.active == 0 and self.state.connections:
                    break
            time.sleep(0.01)
        self.reset()
        return self

    def stop(self):
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def reset(self):
        """Forget everything seen so far (attempt counters too). Connections
        still open keep counting towards `active`."""
        st = self.state
        with st.lock:
            st.connections = [c for c in st.connections if c.closed is None]
            st.max_concurrent = st.active
            st.transactions = []
            st.rcpts = []
            st.attempts = {}

    @property
    def addr(self):
        return f"{self.host}:{self.port}"

    # -- answers ----------------------------------------------------------

    def answer_rcpt(self, address):
        """The reply for one RCPT TO (counts an attempt for address)."""
        key = address.lower()
        with self.state.lock:
            n = self.state.attempts.get(key, 0) + 1
            self.state.attempts[key] = n
        local = key.split("@", 1)[0]
        m = TEMPFAIL_N_RE.match(local)
        if m:
            return TEMPFAIL_REPLY if n <= int(m.group(1)) else "250 2.1.5 OK"
        if local.startswith("tempfail"):
            return TEMPFAIL_REPLY
        if local.startswith("permfail"):
            return PERMFAIL_REPLY
        return "250 2.1.5 OK"

    # -- observations -----------------------------------------------------

    def transactions(self):
        with self.state.lock:
            return list(self.state.transactions)

    def connections(self):
        with self.state.lock:
            return list(self.state.connections)

    def rcpt_answers(self, address=None):
        with self.state.lock:
            out = list(self.state.rcpts)
        if address is not None:
            out = [r for r in out if r.address.lower() == address.lower()]
        return out

    def attempts(self, address):
        with self.state.lock:
            return self.state.attempts.get(address.lower(), 0)

    @property
    def max_concurrent(self):
        with self.state.lock:
            return self.state.max_concurrent

    @property
    def active(self):
        with self.state.lock:
            return self.state.active

    @property
    def total_connections(self):
        with self.state.lock:
            return len(self.state.connections)

    def per_connection_counts(self):
        """{connection id: transactions} for every connection seen."""
        with self.state.lock:
            return {c.id: c.transactions for c in self.state.connections}

    def messages_to(self, address):
        return [t for t in self.transactions()
                if address.lower() in (r.lower() for r in t.rcpt_tos)]

    def wait_transactions(self, n, timeout=30):
        """Wait until at least n transactions arrived; return them all."""
        timeout *= WAIT_SCALE
        deadline = time.monotonic() + timeout
        while True:
            t = self.transactions()
            if len(t) >= n:
                return t
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"sink {self.addr}: {len(t)} of {n} transactions after {timeout:.0f}s "
                    f"({self.total_connections} connections, rcpts: "
                    f"{[(r.address, r.code) for r in self.rcpt_answers()][:20]})")
            time.sleep(0.05)

    def wait_rcpts(self, predicate, timeout=30, what="RCPT answers"):
        timeout *= WAIT_SCALE
        deadline = time.monotonic() + timeout
        while True:
            v = predicate(self.rcpt_answers())
            if v:
                return v
            if time.monotonic() >= deadline:
                raise AssertionError(f"sink {self.addr}: timed out after {timeout:.0f}s "
                                     f"waiting for {what}")
            time.sleep(0.05)


# --------------------------------------------------------------------------
# Postfix's smtp-sink


def smtp_sink_bin():
    return shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"


class PostfixSink:
    """/usr/sbin/smtp-sink -c on host:port: accepts everything, counts.
    count() is the number of messages it has taken (mesg=)."""

    MESG_RE = re.compile(rb"mesg=(\d+)")

    def __init__(self, host="127.0.0.1", port=None, backlog=256, max_sessions=1024):
        self.host = host
        self.port = port or free_port_on(host)
        self.backlog = backlog
        self.max_sessions = max_sessions
        self.proc = None
        self._dir = None

    def start(self, timeout=10):
        self._dir = Path(tempfile.mkdtemp(prefix="smtp-sink-"))
        argv = [smtp_sink_bin(), "-c", "-m", str(self.max_sessions)]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]  # smtp-sink refuses root without -u
        argv += [f"{self.host}:{self.port}", str(self.backlog)]
        self._out = open(self._dir / "out", "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() >= deadline:
                    self.stop()
                    raise AssertionError(f"smtp-sink did not start on {self.host}:{self.port}")
                time.sleep(0.05)
        # that probe is one session without a message: counts stay at mesg=0
        return self

    def count(self):
        try:
            data = (self._dir / "out").read_bytes()
        except OSError:
            return 0
        found = self.MESG_RE.findall(data[-512:])
        return int(found[-1]) if found else 0

    def wait_count(self, n, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            c = self.count()
            if c >= n:
                return c
            if time.monotonic() >= deadline:
                raise AssertionError(f"smtp-sink counted {c} of {n} after {timeout:.0f}s")
            time.sleep(0.05)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None
        if self._dir is not None:
            self._out.close()
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
