"""cluster_lib.py - helpers for the multi-node kumod end-to-end tests.

Cluster      N kumod processes forming one Raft group through
             kumo.configure_cluster (raft + NNG link on loopback), each
             relaying every `.test` domain to one SmtpSink through FakeDNS MX
             records; status(), leader(), wait_leader(), kill9(), restart().
Injector     threads that send messages round-robin over the nodes, each
             message carrying a unique X-Token header; it records which
             tokens got a 250 (only those count as accepted).
check()      the Jepsen-style checker: accepted vs. tokens the sink received:
             lost (accepted, never delivered; must be 0) and duplicated
             (delivered more than once; counted, reported).
Standard library + the e2e harness (kumod_harness, sinks) only.
"""
import http.client
import json
import re
import smtplib
import socket
import threading
import time
import uuid

import kumod_harness as H

TOKEN_HEADER = "X-Token"
TOKEN_RE = re.compile(rb"^X-Token:\s*([0-9a-f]{32})\s*$", re.M | re.I)
MX_HOST = "mx.sink.test"

# The fast failure-detection settings of the failover tests (CLUSTER.md
# §4.6: node_down_after >= self_fence_after + 2 x election_timeout).
FAST_SETTINGS = {
    "node_down_after": "4s",
    "self_fence_after": "2s",
    "ping_interval": "500ms",
    "failover_grace": "2s",
    "rebalance_after": "5s",
    "accept_timeout": "10s",
}


# -- Policy --------------------------------------------------------------------

def domains(n=20):
    """The destination domains the tests spread their mail over."""
    return [f"d{i:02d}.test" for i in range(n)]


def route_domains_to_sink(fakedns, names):
    """MX of every domain in names -> MX_HOST -> 127.0.0.1 (the sink's port
    comes from the egress path, H.sink_path)."""
    fakedns.add_a(MX_HOST, "127.0.0.1")
    for d in names:
        fakedns.add_mx(d, MX_HOST)


def cluster_lua(node_id, raft_ports, link_ports, cluster_id, settings=None,
                election_timeout="1s", bootstrap=True):
    """The kumo.configure_cluster{...} call of node `node_id` (1-based)."""
    peers = [{"id": i + 1, "raft": f"127.0.0.1:{raft_ports[i]}",
              "link": f"tcp://127.0.0.1:{link_ports[i]}"}
             for i in range(len(raft_ports))]
    conf = {
        "node_id": node_id,
        "cluster_id": cluster_id,
        "raft_listen": f"127.0.0.1:{raft_ports[node_id - 1]}",
        "link_listen": f"tcp://127.0.0.1:{link_ports[node_id - 1]}",
        "peers": peers,
        "bootstrap": bootstrap,
        "election_timeout": election_timeout,
    }
    if settings:
        conf["settings"] = settings
    return f"  kumo.configure_cluster {H.lua_value(conf)}\n"


# -- Status --------------------------------------------------------------------

def http_status(port, timeout=2):
    """GET /api/admin/cluster/status/v1 on 127.0.0.1:port, or None."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            c.request("GET", "/api/admin/cluster/status/v1")
            r = c.getresponse()
            body = r.read()
            if r.status != 200:
                return None
            return json.loads(body)
        finally:
            c.close()
    except (OSError, ValueError, http.client.HTTPException):
        return None


def self_member(st):
    """This node's own row of a status document (or {})."""
    for m in (st or {}).get("members", []):
        if m.get("id") == st.get("raft_node_id"):
            return m
    return {}


# -- The cluster ---------------------------------------------------------------

class Cluster:
    """n kumod nodes of one Raft group, started through make_kumod.

    nodes[i] is node id i+1; each has .http_port, .node_id. sink is the
    SmtpSink every node delivers to."""

    def __init__(self, make_kumod, fakedns, sink, n=3, cluster_id="e2e",
                 settings=None, names=None, queue=None, election_timeout="1s",
                 path=None):
        self.make_kumod = make_kumod
        self.fakedns = fakedns
        self.sink = sink
        self.n = n
        self.cluster_id = cluster_id
        self.settings = dict(FAST_SETTINGS if settings is None else settings)
        self.election_timeout = election_timeout
        self.names = names or domains()
        self.queue = queue or {"retry_interval": "1s", "max_retry_interval": "2s"}
        self.path = path or {}  # extra make_egress_path params for the sink
        self.raft_ports = [H.free_port() for _ in range(n)]
        self.link_ports = [H.free_port() for _ in range(n)]
        self.nodes = []
        route_domains_to_sink(fakedns, self.names)

    def make_node(self, node_id, cluster_id=None):
        """A (not started) Kumod for node_id with this cluster's peers."""
        hp = H.free_port()
        lua = cluster_lua(node_id, self.raft_ports, self.link_ports,
                          cluster_id or self.cluster_id, self.settings,
                          self.election_timeout)
        lua += f"  kumo.start_http_listener {{listen='127.0.0.1:{hp}'}}\n"
        kw = H.delivery_policy(queue=self.queue,
                               path=H.sink_path(self.sink.port, **self.path),
                               init_extra=lua)
        k = self.make_kumod(start=False, **kw)
        k.http_port = hp
        k.node_id = node_id
        return k

    def start(self, ids=None, timeout=45):
        """Create and start nodes (all by default) together, wait until each
        logs `initialization complete` (it needs a leader for that)."""
        ids = ids or list(range(1, self.n + 1))
        new = []
        for i in ids:
            k = self.make_node(i)
            self.nodes.append(k)
            new.append(k)
        self.nodes.sort(key=lambda k: k.node_id)
        for k in new:
            k.start(wait=False)
        for k in new:
            k.wait_ready(timeout=timeout)
        return self

    def node(self, node_id):
        return next(k for k in self.nodes if k.node_id == node_id)

    def alive(self):
        return [k for k in self.nodes if k.running()]

    def status(self, k):
        return http_status(k.http_port)

    def leader(self, among=None):
        """The leader id all of `among` (default: the running nodes) agree
        on, with exactly one of them saying it leads; else None."""
        among = among if among is not None else self.alive()
        sts = [self.status(k) for k in among]
        if not sts or any(s is None for s in sts):
            return None
        leaders = [s["raft_node_id"] for s in sts if s.get("role") == "leader"]
        ids = {s.get("leader_id") for s in sts}
        if len(leaders) == 1 and ids == {leaders[0]}:
            return leaders[0]
        return None

    def wait_leader(self, timeout=20, among=None, not_id=None):
        def ok():
            lid = self.leader(among)
            return lid if lid and lid != not_id else None
        return H.wait_for(ok, timeout=timeout, interval=0.2,
                          what="one leader every running node agrees on")

    def wait_accepting(self, timeout=20):
        """Until every running node answers 250 to one message (the leader's
        barrier and the followers' catch-up are done)."""
        for k in self.alive():
            H.wait_for(lambda: send_one(k, self.names[0]) is not None,
                       timeout=timeout, interval=0.3,
                       what=f"a 250 from node {k.node_id}")

    def kill9(self, node_id):
        return self.node(node_id).kill9()

    def restart(self, node_id, timeout=45):
        k = self.node(node_id)
        k.start(wait=False)
        k.wait_ready(timeout=timeout)
        return k


# -- Injection -----------------------------------------------------------------

def token_message(token, rcpt, subject="cluster e2e"):
    return H.make_message(subject=subject, to=rcpt,
                          extra_headers=f"{TOKEN_HEADER}: {token}\r\n",
                          body=f"token {token}\r\n")


def send_one(k, domain, token=None, timeout=20):
    """One message to node k in its own session; the token if it got 250,
    else None (any error counts as not accepted)."""
    token = token or uuid.uuid4().hex
    rcpt = f"user@{domain}"
    try:
        s = smtplib.SMTP("127.0.0.1", k.port, timeout=timeout)
        try:
            s.ehlo("injector.test")
            code, _ = s.mail("alice@client.test")
            if code != 250:
                return None
            code, _ = s.rcpt(rcpt)
            if code != 250:
                return None
            code, _ = s.data(token_message(token, rcpt))
            return token if code == 250 else None
        finally:
            try:
                s.quit()
            except (smtplib.SMTPException, OSError):
                s.close()
    except (smtplib.SMTPException, OSError):
        return None


class Injector:
    """Send `total` messages from `threads` threads. Message i goes to node
    nodes[i % len(nodes)] and to domain names[i % len(names)]; each thread
    keeps one session per node and reconnects after any error.

    accepted: {token: (node_id, domain)} of every 250; refused / errors
    count the rest. sent counts attempts. The threads start with start()
    and run until done or stop()."""

    def __init__(self, nodes, names, total, threads=6, timeout=20, pace=0.0):
        self.nodes = list(nodes)
        self.names = list(names)
        self.total = total
        self.nthreads = threads
        self.timeout = timeout
        self.pace = pace
        self.lock = threading.Lock()
        self.accepted = {}
        self.refused = 0
        self.errors = 0
        self.sent = 0
        self.codes = {}
        self._stop = threading.Event()
        self._threads = []

    def start(self):
        for t in range(self.nthreads):
            th = threading.Thread(target=self._run, args=(t,), daemon=True)
            th.start()
            self._threads.append(th)
        return self

    def stop(self):
        self._stop.set()

    def join(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        for th in self._threads:
            th.join(None if deadline is None else max(0.1, deadline - time.monotonic()))
        return not any(th.is_alive() for th in self._threads)

    def done(self):
        return not any(th.is_alive() for th in self._threads)

    @property
    def n_accepted(self):
        with self.lock:
            return len(self.accepted)

    def _session(self, sessions, k):
        s = sessions.get(k.node_id)
        if s is None:
            s = smtplib.SMTP("127.0.0.1", k.port, timeout=self.timeout)
            s.ehlo("injector.test")
            sessions[k.node_id] = s
        return s

    def _drop(self, sessions, k):
        s = sessions.pop(k.node_id, None)
        if s is not None:
            try:
                s.close()
            except OSError:
                pass

    def _run(self, t):
        sessions = {}
        for i in range(t, self.total, self.nthreads):
            if self._stop.is_set():
                break
            k = self.nodes[i % len(self.nodes)]
            domain = self.names[i % len(self.names)]
            rcpt = f"user{i}@{domain}"
            token = uuid.uuid4().hex
            code = None
            try:
                s = self._session(sessions, k)
                c, _ = s.mail("alice@client.test")
                if c == 250:
                    c, _ = s.rcpt(rcpt)
                if c == 250:
                    c, _ = s.data(token_message(token, rcpt))
                else:
                    s.rset()
                code = c
            except (smtplib.SMTPException, OSError):
                self._drop(sessions, k)
            with self.lock:
                self.sent += 1
                if code == 250:
                    self.accepted[token] = (k.node_id, domain)
                elif code is None:
                    self.errors += 1
                else:
                    self.refused += 1
                self.codes[code] = self.codes.get(code, 0) + 1
            if code is not None and code >= 400:
                self._drop(sessions, k)  # a 421 closes; start clean anyway
            if self.pace:
                time.sleep(self.pace)
        for nid in list(sessions):
            s = sessions.pop(nid)
            try:
                s.quit()
            except (smtplib.SMTPException, OSError):
                s.close()


# -- Checker -------------------------------------------------------------------

def metric(k, name, label=None):
    """The value of metric `name` on node k's /metrics: unlabelled, or the
    series whose labels contain `label` (e.g. 'spool="data"'); None if it
    is not there or k does not answer."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", k.http_port, timeout=2)
        try:
            c.request("GET", "/metrics")
            text = c.getresponse().read().decode()
        finally:
            c.close()
    except (OSError, http.client.HTTPException):
        return None
    for line in text.splitlines():
        if label is None and line.startswith(name + " ") or (
                label is not None and line.startswith(name + "{") and label in line):
            return float(line.rsplit(" ", 1)[1])
    return None


def send_until_accepted(k, domain, timeout=20):
    """send_one() to node k, again every 0.3 s until a 250 (a 451 while
    the group settles is normal); the token. Fails the test after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        tok = send_one(k, domain)
        if tok is not None:
            return tok
        assert time.monotonic() < deadline, k.log_tail()
        time.sleep(0.3)


def delivered_tokens(sink):
    """{token: times delivered} over every transaction the sink received."""
    seen = {}
    for t in sink.transactions():
        for m in TOKEN_RE.finditer(t.data or b""):
            tok = m.group(1).decode()
            seen[tok] = seen.get(tok, 0) + 1
    return seen


class Check:
    def __init__(self, accepted, seen):
        acc = set(accepted)
        self.accepted = len(acc)
        self.delivered = len(acc & set(seen))
        self.lost = sorted(acc - set(seen))
        self.dup = sum(n - 1 for tok, n in seen.items() if n > 1)
        # delivered although the client never saw a 250 (in doubt: allowed)
        self.unacked = len(set(seen) - acc)

    def line(self):
        return (f"accepted={self.accepted} delivered={self.delivered} "
                f"lost={len(self.lost)} dup={self.dup} unacked_delivered={self.unacked}")


def check(accepted, sink):
    return Check(accepted, delivered_tokens(sink))


def wait_delivered(accepted, sink, timeout=120, stall=30):
    """Wait until the sink has every accepted token, or the deadline, or the
    delivered count has not moved for `stall` seconds; return the Check."""
    timeout *= H.WAIT_SCALE
    deadline = time.monotonic() + timeout
    last, last_move = -1, time.monotonic()
    while True:
        c = check(accepted, sink)
        if not c.lost:
            return c
        now = time.monotonic()
        if c.delivered != last:
            last, last_move = c.delivered, now
        if now >= deadline or now - last_move >= stall:
            return c
        time.sleep(0.5)


def lost_by_node(accepted, lost):
    """{accepting node id: lost count} to explain a failure."""
    out = {}
    for tok in lost:
        nid = accepted[tok][0]
        out[nid] = out.get(nid, 0) + 1
    return out


def free_port_pair():
    """Two distinct free loopback ports (raft, link) for a spare node."""
    a = H.free_port()
    while True:
        b = H.free_port()
        if b != a:
            return a, b


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
