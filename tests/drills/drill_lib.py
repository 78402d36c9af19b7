"""drill_lib.py - shared machinery for kumod's cluster failure drills.

A drill starts N kumod nodes with one policy file each (fresh temp dirs,
every node's resolver pointed at a fake DNS, `.test` domains whose MX is
one SMTP sink), injects mail over parallel SMTP sessions spread over all
nodes (each message carries a unique X-Drill-Token header), breaks
something, and finally checks which tokens got 250 against the tokens the
sink received: lost, duplicated, late. It prints ONE summary line:

  D1 leader-kill: accepted=1873 rejected=127 delivered=1873 lost=0 dup=2 max_latency=14.2s PASS

Two network modes:
  LoopbackNet   every node on 127.0.0.1 with its own ports (no root needed).
  NamespaceNet  one network namespace per node (10.77.0.i/24 on a bridge in
                a switch namespace, CLUSTER.md section 7); sink, DNS and the
                injector live in a control namespace on the same bridge.
                Python threads enter a namespace with setns(2), which moves
                only the calling thread, so one process drives all of them.

Everything a drill creates (processes by PID, namespaces with a per-run
suffix, tmpfs mounts, temp dirs) is released in Drill.__exit__, also on
failure, Ctrl-C or SIGTERM. Standard library + python3-dnslib only.
"""
import concurrent.futures
import ctypes
import http.client
import json
import os
import random
import re
import shutil
import signal
import smtplib
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "e2e"))

import fakedns  # noqa: E402  (tests/e2e)
import kumod_harness as H  # noqa: E402
from dnslib.server import DNSLogger, DNSServer  # noqa: E402

READY_LINE = H.READY_LINE
CLUSTER_ID_PREFIX = "drill"
TOKEN_HEADER = "X-Drill-Token"
TOKEN_RE = re.compile(rb"^X-Drill-Token:\s*(\S+)", re.M | re.I)

# Cluster-scoped settings for drills: short timers so each drill runs in
# well under a minute (CLUSTER_PLAN.md: read at first bootstrap only).
DRILL_SETTINGS = {
    "replication_factor": 2,
    "min_replicas": 2,
    "shards": 64,
    "ping_interval": "500ms",
    "self_fence_after": "2s",
    "node_down_after": "4s",
    "failover_grace": "3s",
    "accept_timeout": "10s",
    "rebalance_after": "10s",
}
DRILL_TIMERS = {"election_timeout": "1s", "heartbeat": "100ms"}
# seconds: how long after a 250 a message may take to reach the sink before
# it counts as late (failover: node_down_after + failover_grace + retries)
LATE_AFTER = float(os.environ.get("DRILL_LATE_AFTER", "30"))

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
T0 = time.monotonic()


def log(msg):
    """One progress line on stderr, with seconds since the drill started."""
    sys.stderr.write(f"[{time.monotonic() - T0:7.1f}s] {msg}\n")
    sys.stderr.flush()


def kumod_bin():
    return H.kumod_bin()


def wait_for(pred, timeout, interval=0.2, what="condition"):
    """pred() until truthy (returned) or the deadline (None, no exception:
    drills record a failed expectation and go on to clean up)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            log(f"timed out after {timeout:.0f}s waiting for {what}")
            return None
        time.sleep(interval)


def run(argv, check=True):
    r = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


# --------------------------------------------------------------------------
# Networks


def enter_netns(ns):
    """Move the calling thread into network namespace `ns` (None: stay)."""
    if ns is None:
        return
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({ns}): {os.strerror(err)}")
    finally:
        os.close(fd)


class LoopbackNet:
    """Every node on 127.0.0.1, four free ports each."""

    mode = "loopback"
    ctl_ns = None

    def __init__(self):
        self.ctl = concurrent.futures.ThreadPoolExecutor(max_workers=4)

    def setup(self, n):
        self.n = n
        self.ports = []
        for i in range(1, n + 1):
            self.add(i)

    def add(self, i):
        """Ports for node i (a node added later gets fresh ones)."""
        while len(self.ports) < i:
            self.ports.append({k: H.free_port() for k in ("raft", "link", "smtp", "http")})

    def host(self, i):
        return "127.0.0.1"

    def port(self, i, kind):
        return self.ports[i - 1][kind]

    def sink_host(self):
        return "127.0.0.1"

    def relay_hosts(self):
        return ["127.0.0.1"]

    def node_ns(self, i):
        return None

    def argv_prefix(self, i):
        return []

    def call_in(self, ns, fn, *args):
        return fn(*args)

    def teardown(self):
        self.ctl.shutdown(wait=False)


class NamespaceNet(LoopbackNet):
    """Namespaces kd<sfx>n1..nN + kd<sfx>sw (bridge br0, optional br1 for
    split brains) + kd<sfx>ctl (sink, DNS, injector at 10.77.0.100)."""

    mode = "netns"
    CTL_IP = "10.77.0.100"

    def __init__(self):
        if os.geteuid() != 0:
            raise RuntimeError("namespace drills need root (ip netns)")
        self.sfx = f"{os.getpid() % 100000:05d}"
        self.sw = f"kd{self.sfx}sw"
        self.ctl_ns = f"kd{self.sfx}ctl"
        self.created = []
        self.ctl = concurrent.futures.ThreadPoolExecutor(
            max_workers=4, initializer=enter_netns, initargs=(self.ctl_ns,))
        self._execs = {}

    def nsname(self, i):
        return f"kd{self.sfx}n{i}"

    def _sw(self, *args):
        run(["ip", "netns", "exec", self.sw, "ip", *args])

    def _attach(self, ns, swname, ip):
        run(["ip", "netns", "add", ns])
        self.created.append(ns)
        run(["ip", "link", "add", "name", "eth0", "netns", ns, "type", "veth",
             "peer", "name", swname, "netns", self.sw])
        self._sw("link", "set", swname, "master", "br0")
        self._sw("link", "set", swname, "up")
        for args in (["addr", "add", f"{ip}/24", "dev", "eth0"], ["link", "set", "eth0", "up"],
                     ["link", "set", "lo", "up"]):
            run(["ip", "netns", "exec", ns, "ip", *args])

    def setup(self, n):
        self.n = n
        run(["ip", "netns", "add", self.sw])
        self.created.append(self.sw)
        for br in ("br0", "br1"):
            self._sw("link", "add", br, "type", "bridge")
            self._sw("link", "set", br, "up")
        self._attach(self.ctl_ns, "swc", self.CTL_IP)
        for i in range(1, n + 1):
            self._attach(self.nsname(i), f"sw{i}", self.host(i))
        log(f"namespaces up: {' '.join(self.created)}")

    def host(self, i):
        return f"10.77.0.{i}"

    def port(self, i, kind):
        return {"raft": 7100, "link": 7200, "smtp": 2500, "http": 8000}[kind]

    def sink_host(self):
        return self.CTL_IP

    def relay_hosts(self):
        return ["127.0.0.1", "10.77.0.0/24"]

    def node_ns(self, i):
        return self.nsname(i)

    def argv_prefix(self, i):
        return ["ip", "netns", "exec", self.nsname(i)]

    def executor(self, ns):
        if ns == self.ctl_ns:
            return self.ctl
        if ns not in self._execs:
            self._execs[ns] = concurrent.futures.ThreadPoolExecutor(
                max_workers=2, initializer=enter_netns, initargs=(ns,))
        return self._execs[ns]

    def call_in(self, ns, fn, *args):
        return self.executor(ns).submit(fn, *args).result()

    # -- faults -----------------------------------------------------------

    def isolate(self, i):
        """Cut node i off the switch (ip link set swI down)."""
        self._sw("link", "set", f"sw{i}", "down")

    def heal(self, i):
        self._sw("link", "set", f"sw{i}", "master", "br0")
        self._sw("link", "set", f"sw{i}", "up")

    def split(self, minority):
        """Move the nodes in `minority` to bridge br1: they still reach each
        other, but not the majority, the sink or the injector."""
        for i in minority:
            self._sw("link", "set", f"sw{i}", "master", "br1")

    def one_way(self, i, peers):
        """Node i hears nothing from `peers` while they still hear it: an
        nftables input rule in its namespace drops every packet from their
        addresses (TCP then carries its segments to them, but never their
        acknowledgements back)."""
        ns = ["ip", "netns", "exec", self.nsname(i), "nft"]
        run([*ns, "add", "table", "inet", "kdrill"])
        run([*ns, "add", "chain", "inet", "kdrill", "in",
             "{ type filter hook input priority 0; policy accept; }"])
        for p in peers:
            run([*ns, "add", "rule", "inet", "kdrill", "in", "ip", "saddr",
                 self.host(p), "drop"])

    def heal_one_way(self, i):
        run(["ip", "netns", "exec", self.nsname(i), "nft", "delete", "table", "inet",
             "kdrill"], check=False)

    def teardown(self):
        for ex in [self.ctl, *self._execs.values()]:
            ex.shutdown(wait=False)
        for ns in reversed(self.created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.created = []


# --------------------------------------------------------------------------
# Sink and DNS


class _SinkHandler(socketserver.StreamRequestHandler):
    """A minimal ESMTP server: 250 to everything, records each message's
    token with the arrival time."""

    timeout = 60

    def _reply(self, line):
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self):
        sink = self.server.sink
        self._reply("220 sink.drill.test ESMTP drill sink")
        try:
            while True:
                line = self.rfile.readline(4096)
                if not line:
                    return
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    self._reply("250-sink.drill.test\r\n250-PIPELINING\r\n250 8BITMIME")
                elif verb == b"DATA":
                    self._reply("354 go ahead")
                    chunks = []
                    while True:
                        d = self.rfile.readline(1 << 20)
                        if not d or d in (b".\r\n", b".\n"):
                            break
                        chunks.append(d)
                    sink.record(b"".join(chunks))
                    self._reply("250 2.0.0 OK")
                elif verb == b"QUIT":
                    self._reply("221 bye")
                    return
                else:  # MAIL, RCPT, RSET, NOOP
                    self._reply("250 OK")
        except (OSError, ValueError):
            return


class _ThreadingServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class TokenSink:
    """The SMTP sink every node delivers to; arrivals: token -> [time, ...]."""

    def __init__(self, net):
        self.net = net
        self.lock = threading.Lock()
        self.arrivals = {}
        self.untokened = 0
        self.server = None

    def record(self, data):
        m = TOKEN_RE.search(data)
        now = time.time()
        with self.lock:
            if m:
                self.arrivals.setdefault(m.group(1).decode(), []).append(now)
            else:
                self.untokened += 1

    def start(self):
        def mk():
            srv = _ThreadingServer((self.net.sink_host(), 0), _SinkHandler)
            return srv
        self.server = self.net.call_in(self.net.ctl_ns, mk)
        self.server.sink = self
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def snapshot(self):
        with self.lock:
            return {k: list(v) for k, v in self.arrivals.items()}


class DrillDNS:
    """fakedns's authoritative resolver, bound where the nodes can reach it
    (127.0.0.1 or the control namespace's address)."""

    def __init__(self, net):
        self.net = net
        self.zone = fakedns.FakeDNS()
        self.servers = []

    def start(self):
        host = self.net.sink_host()

        def mk():
            for _ in range(20):
                port = random.randint(20000, 60000) if self.net.mode == "loopback" else 53
                logger = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data",
                                   logf=lambda s: None)
                try:
                    udp = DNSServer(fakedns._Resolver(self.zone), address=host, port=port,
                                    logger=logger)
                    tcp = DNSServer(fakedns._Resolver(self.zone), address=host, port=port,
                                    tcp=True, logger=logger)
                except OSError:
                    continue
                return port, [udp, tcp]
            raise RuntimeError("fake DNS could not bind")
        self.port, self.servers = self.net.call_in(self.net.ctl_ns, mk)
        for s in self.servers:
            s.start_thread()
        return self

    def stop(self):
        for s in self.servers:
            s.stop()
            s.server.server_close()
        self.servers = []


# --------------------------------------------------------------------------
# Policy


def lua(v):
    return H.lua_value(v)


POLICY = """\
-- kumod drill node {node_id} (rendered by tests/drills/drill_lib.py)
local kumo = require 'kumo'
local NODE_DIR = {node_dir}

kumo.on('init', function()
  kumo.configure_cluster {cluster}
  kumo.dns.configure_resolver {{ name_servers = {{ {resolver} }} }}
  kumo.define_spool {{ name = 'data', path = NODE_DIR .. '/data', kind = 'RocksDB' }}
  kumo.define_spool {{ name = 'meta', path = NODE_DIR .. '/meta', kind = 'RocksDB' }}
  kumo.configure_local_logs {{ log_dir = NODE_DIR .. '/logs', max_segment_duration = '1s' }}
  kumo.start_esmtp_listener {listener}
  kumo.start_http_listener {http}
end)

kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{ retry_interval = '1s', max_retry_interval = '2s' }}
end)

kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path {{
    prohibited_hosts = {{}}, enable_tls = 'Disabled', smtp_port = {sink_port},
  }}
end)
"""


# DRILL_TLS=1: every node gets tls = { ca, cert, key } (docs/cluster.md
# "Certificates"), made with openssl beside the node dirs.
DRILL_TLS = os.environ.get("DRILL_TLS") == "1"


def drill_tls_files(pki, i):
    """The CA (made once) and node i's certificate in pki; the tls table."""
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=pki, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pki.mkdir(exist_ok=True)
    if not (pki / "ca.crt").exists():
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
                "-subj", "/CN=drill-ca")
    name = f"node-{i}"
    if not (pki / f"{name}.crt").exists():
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        (pki / f"{name}.ext").write_text(f"subjectAltName=DNS:{name}\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext",
                "-out", f"{name}.crt")
    return {"ca": str(pki / "ca.crt"), "cert": str(pki / f"{name}.crt"),
            "key": str(pki / f"{name}.key")}


def cluster_block(net, n, i, cluster_id, data_dir, compat, members=None, bootstrap=True):
    members = members or range(1, n + 1)
    peers = [{"id": j, "raft": f"{net.host(j)}:{net.port(j, 'raft')}",
              "link": f"tcp://{net.host(j)}:{net.port(j, 'link')}"} for j in members]
    c = {"node_id": i, "cluster_id": cluster_id,
         "raft_listen": f"{net.host(i)}:{net.port(i, 'raft')}",
         "link_listen": f"tcp://{net.host(i)}:{net.port(i, 'link')}",
         "peers": peers, "data_dir": data_dir, "bootstrap": bootstrap}
    if not compat:
        if DRILL_TLS:
            c["tls"] = drill_tls_files(Path(data_dir).parent.parent / "pki", i)
        else:
            # The drills' namespaces are a private test network on
            # 10.77.0.0/24, not loopback: plaintext needs saying so.
            c["insecure_plaintext"] = True
        c["settings"] = dict(DRILL_SETTINGS)
        c.update(DRILL_TIMERS)
    return c


def render_policy(net, n, i, node_dir, cluster_id, dns_port, sink_port, compat, members=None,
                  bootstrap=True):
    return POLICY.format(
        node_id=i, node_dir=lua(str(node_dir)),
        cluster=lua(cluster_block(net, n, i, cluster_id, str(node_dir / "cluster"), compat,
                                  members, bootstrap)),
        resolver=lua(f"{net.sink_host()}:{dns_port}"),
        listener=lua({"listen": f"{net.host(i)}:{net.port(i, 'smtp')}",
                      "hostname": f"n{i}.drill.test", "relay_hosts": net.relay_hosts()}),
        http=lua({"listen": f"{net.host(i)}:{net.port(i, 'http')}",
                  "trusted_hosts": net.relay_hosts()}),
        sink_port=int(sink_port))


# --------------------------------------------------------------------------
# Nodes


class Node:
    """One kumod of the drill cluster; started and killed by its own PID."""

    def __init__(self, cluster, i, node_dir):
        self.cluster = cluster
        self.i = i
        self.dir = node_dir
        self.proc = None
        self.runs = []
        self.stopped = False  # SIGSTOPped
        # environment added at the next start(), e.g. libfaketime for D8
        self.env_extra = {}

    @property
    def net(self):
        return self.cluster.net

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self):
        assert not self.running(), f"n{self.i} already running"
        logp = self.dir / f"kumod.{len(self.runs)}.log"
        self.runs.append(logp)
        argv = [*self.net.argv_prefix(self.i), kumod_bin(), "--policy",
                str(self.dir / "policy.lua"), *H.user_args()]
        env = dict(os.environ)
        env.setdefault("UV_THREADPOOL_SIZE", "4")
        env.update(self.env_extra)
        with open(logp, "wb") as f:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f,
                                         stderr=subprocess.STDOUT, cwd=self.dir, env=env)
        log(f"n{self.i}: started pid {self.proc.pid}")
        return self

    def log_text(self):
        if not self.runs or not self.runs[-1].exists():
            return ""
        return self.runs[-1].read_bytes().decode("utf-8", "replace")

    def log_tail(self, n=15):
        return "\n".join(self.log_text().splitlines()[-n:])

    def ready(self):
        return READY_LINE in self.log_text()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def exited(self):
        return self.proc is not None and self.proc.poll() is not None

    def kill9(self):
        if self.running():
            if self.stopped:
                os.kill(self.proc.pid, signal.SIGCONT)
                self.stopped = False
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)
            log(f"n{self.i}: kill -9 pid {self.proc.pid}")

    def pause(self):
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.stopped = True
        log(f"n{self.i}: SIGSTOP pid {self.proc.pid}")

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)
        self.stopped = False
        log(f"n{self.i}: SIGCONT pid {self.proc.pid}")

    def cleanup(self):
        if not self.running():
            return
        if self.stopped:
            os.kill(self.proc.pid, signal.SIGCONT)
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    # -- HTTP -------------------------------------------------------------

    def status(self, timeout=2):
        """GET /api/admin/cluster/status/v1 as a dict, or None."""
        if not self.running() or self.stopped:
            return None

        def get():
            try:
                c = http.client.HTTPConnection(self.net.host(self.i),
                                               self.net.port(self.i, "http"), timeout=timeout)
                try:
                    c.request("GET", "/api/admin/cluster/status/v1")
                    r = c.getresponse()
                    body = r.read()
                    return json.loads(body) if r.status == 200 else None
                finally:
                    c.close()
            except (OSError, ValueError):
                return None
        # from the node's own namespace, so an isolated node still answers
        return self.net.call_in(self.net.node_ns(self.i), get)


class Cluster:
    """N nodes sharing one cluster_id, sink and DNS."""

    def __init__(self, drill, n):
        self.drill = drill
        self.net = drill.net
        self.n = n
        self.cluster_id = f"{CLUSTER_ID_PREFIX}-{os.getpid()}"
        self.nodes = []
        for i in range(1, n + 1):
            d = drill.tmp / f"n{i}"
            d.mkdir()
            self.nodes.append(Node(self, i, d))

    def node(self, i):
        return self.nodes[i - 1]

    def write_policies(self):
        compat = False
        for nd in self.nodes:
            (nd.dir / "policy.lua").write_text(render_policy(
                self.net, self.n, nd.i, nd.dir, self.cluster_id, self.drill.dns.port,
                self.drill.sink.port, compat))

    def add_member(self, members):
        """A new Node object with the next id, its policy rendered with
        bootstrap=false and the given member ids as peers (plus itself).
        Loopback mode only. The caller runs `cluster add-node` and start()."""
        i = len(self.nodes) + 1
        self.net.add(i)
        d = self.drill.tmp / f"n{i}"
        d.mkdir()
        nd = Node(self, i, d)
        self.nodes.append(nd)
        (d / "policy.lua").write_text(render_policy(
            self.net, i, i, d, self.cluster_id, self.drill.dns.port, self.drill.sink.port,
            False, members=[*members, i], bootstrap=False))
        return nd

    def kcli(self, via, *args):
        """Run kcli against node `via`'s HTTP listener; CompletedProcess."""
        kcli = os.environ.get("KCLI_BIN") or str(Path(kumod_bin()).with_name("kcli"))
        ep = f"http://{self.net.host(via.i)}:{self.net.port(via.i, 'http')}"
        argv = [*self.net.argv_prefix(via.i), kcli, "--endpoint", ep, *args]
        r = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                           timeout=60)
        log(f"kcli {' '.join(args)}: exit {r.returncode} {(r.stdout + r.stderr).strip()[:200]}")
        return r

    def start(self, timeout=60):
        self.write_policies()
        for nd in self.nodes:
            nd.start()
        ok = wait_for(lambda: all(nd.ready() or nd.exited() for nd in self.nodes), timeout,
                      what="every node ready")
        for nd in self.nodes:
            if not nd.ready():
                raise RuntimeError(f"n{nd.i} not ready:\n{nd.log_tail()}")
        if not ok:
            raise RuntimeError("cluster did not start")
        if not self.wait_leader(timeout=30):
            raise RuntimeError("no agreed leader after start")

    def statuses(self, nodes=None):
        nodes = self.nodes if nodes is None else nodes
        return {nd.i: nd.status() for nd in nodes}

    def agreed_leader(self, nodes=None):
        """The leader id all given (default: running) nodes agree on, else None."""
        nodes = [nd for nd in (nodes or self.nodes) if nd.running() and not nd.stopped]
        if not nodes:
            return None
        sts = [nd.status() for nd in nodes]
        if any(s is None for s in sts):
            return None
        leaders = [s["raft_node_id"] for s in sts if s.get("role") == "leader"]
        ids = {s.get("leader_id") for s in sts}
        if len(leaders) == 1 and ids == {leaders[0]}:
            return leaders[0]
        return None

    def wait_leader(self, nodes=None, exclude=(), timeout=15):
        """Wait for an agreed leader not in `exclude`; return its id or None."""
        def p():
            lid = self.agreed_leader(nodes)
            return lid if lid and lid not in exclude else None
        return wait_for(p, timeout, interval=0.25, what="an agreed leader")

    def live(self):
        return [nd for nd in self.nodes if nd.running() and not nd.stopped]

    def caught_up(self, nd, timeout=30):
        """Wait until nd follows the agreed leader with commit_index at
        least the leader's commit index seen now; True/False."""
        lid = self.wait_leader(timeout=timeout)
        if not lid:
            return False
        lst = self.node(lid).status() or {}
        target = lst.get("commit_index", 0)

        def p():
            s = nd.status()
            return bool(s and s.get("leader_id") == lid and s.get("commit_index", 0) >= target)
        return bool(wait_for(p, timeout, what=f"n{nd.i} caught up to index {target}"))

    def cleanup(self):
        for nd in self.nodes:
            try:
                nd.cleanup()
            except Exception as e:  # keep cleaning the others
                log(f"n{nd.i}: cleanup: {e}")


# --------------------------------------------------------------------------
# Injection


class Ledger:
    """What each token's SMTP transaction ended with (thread-safe)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.entries = {}  # token -> dict(node, t, code, text, wall)

    def put(self, token, **kw):
        with self.lock:
            self.entries[token] = kw

    def items(self):
        with self.lock:
            return dict(self.entries)

    def accepted(self):
        return {t: e for t, e in self.items().items() if e["code"] == 250}


def make_message(token, domain):
    return (f"From: drill@client.test\r\nTo: user@{domain}\r\nSubject: drill {token}\r\n"
            f"Message-ID: <{token}@client.test>\r\n{TOKEN_HEADER}: {token}\r\n\r\n"
            f"drill payload {token}\r\n" + ("x" * 70 + "\r\n") * 8)


def send_one(net, host, port, token, domain, ledger, node_i, timeout=40, session=None):
    """One transaction; records the outcome in the ledger. Returns the
    session to reuse, or None if it must be dropped."""
    t = time.time()
    stage = "connect"
    try:
        s = session
        if s is None:
            s = smtplib.SMTP(timeout=timeout, local_hostname="injector.client.test")
            s.sock = socket.create_connection((host, port), timeout=3)
            s.sock.settimeout(timeout)
            s.file = None
            code, msg = s.getreply()
            if code != 220:
                raise smtplib.SMTPConnectError(code, msg)
            s.ehlo()
        stage = "mail"
        code, msg = s.mail("drill@client.test")
        if code == 250:
            stage = "rcpt"
            code, msg = s.rcpt(f"user@{domain}")
        if code == 250:
            stage = "data"
            code, msg = s.data(make_message(token, domain))
        if code != 250 and stage != "data":
            s.rset()
        ledger.put(token, node=node_i, t=t, code=code, stage=stage,
                   text=msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg))
        return s
    except (OSError, smtplib.SMTPException) as e:
        # after DATA was sent the outcome is unknown: may be delivered
        ledger.put(token, node=node_i, t=t, code=0 if stage == "data" else -1, stage=stage,
                   text=f"{type(e).__name__}: {e}")
        try:
            if session is not None:
                session.close()
        except Exception:
            pass
        return None


class Injector:
    """`threads` parallel SMTP clients spreading messages over all nodes
    (round robin, one session per node per thread), `rate` messages/s in
    total, recipients spread over `domains` .test domains."""

    def __init__(self, drill, threads=None, rate=None, domains=8, prefix="m"):
        self.drill = drill
        self.net = drill.net
        self.threads = threads or int(os.environ.get("DRILL_THREADS", "6"))
        self.rate = rate or float(os.environ.get("DRILL_RATE", "25"))
        self.domains = drill.domains[:domains]
        self.prefix = prefix
        self.ledger = drill.ledger
        self.stop_ev = threading.Event()
        self.workers = []
        self.targets = list(drill.cluster.nodes)

    def start(self):
        for k in range(self.threads):
            th = threading.Thread(target=self._work, args=(k,), daemon=True)
            th.start()
            self.workers.append(th)
        log(f"injector: {self.threads} sessions, {self.rate:.0f} msg/s")
        return self

    def _work(self, k):
        enter_netns(self.net.ctl_ns)
        sessions = {}
        interval = self.threads / self.rate
        nxt = time.monotonic() + random.random() * interval
        seq = 0
        while not self.stop_ev.is_set():
            now = time.monotonic()
            if now < nxt:
                self.stop_ev.wait(nxt - now)
                continue
            nxt += interval
            nd = self.targets[(k + seq) % len(self.targets)]
            token = f"{self.prefix}{k}-{seq}"
            dom = self.domains[seq % len(self.domains)]
            seq += 1
            s = send_one(self.net, self.net.host(nd.i), self.net.port(nd.i, "smtp"), token,
                         dom, self.ledger, nd.i, session=sessions.get(nd.i))
            if s is None:
                sessions.pop(nd.i, None)
            else:
                sessions[nd.i] = s
        for s in sessions.values():
            try:
                s.quit()
            except Exception:
                pass

    def stop(self):
        self.stop_ev.set()
        for th in self.workers:
            th.join(timeout=60)
        log(f"injector stopped: {len(self.ledger.items())} transactions")


def probe(drill, nd, token, domain=None):
    """One message to node nd from inside nd's own namespace (so a node cut
    off the switch is still reachable). Returns the SMTP code (0/-1 for
    errors); the outcome goes into the drill's ledger like any other."""
    net = drill.net
    domain = domain or drill.domains[0]
    host, port = net.host(nd.i), net.port(nd.i, "smtp")
    s = net.call_in(net.node_ns(nd.i), send_one, net, host, port, token, domain, drill.ledger,
                    nd.i, 15)
    if s is not None:
        try:
            s.quit()
        except (OSError, smtplib.SMTPException):
            pass
    return drill.ledger.items()[token]["code"]


# --------------------------------------------------------------------------
# The drill


class Drill:
    """Context manager owning every resource of one drill run; collects
    failed expectations and prints the summary line."""

    def __init__(self, did, name, n=3, netns=False, tmpfs=None):
        self.did = did
        self.name = name
        self.n = n
        self.failures = []
        self.notes = []
        self.ledger = Ledger()
        self.mounts = []
        self.domains = [f"d{k}.drill.test" for k in range(16)]
        root = os.environ.get("KUMO_DRILL_TMP") or os.environ.get("KUMO_TEST_TMP")
        self.tmp = Path(tempfile.mkdtemp(prefix=f"drill-{did}-", dir=root))
        self.net = NamespaceNet() if netns else LoopbackNet()
        self.sink = self.dns = self.cluster = None
        self.injectors = []
        self.tmpfs_size = tmpfs  # e.g. '256m': every node dir on its own tmpfs

    def __enter__(self):
        signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            log(f"{self.did} {self.name}: tmp {self.tmp}, {self.n} nodes, {self.net.mode}")
            self.net.setup(self.n)
            self.sink = TokenSink(self.net).start()
            self.dns = DrillDNS(self.net).start()
            self.dns.zone.add_a("sink.drill.test", self.net.sink_host())
            for d in self.domains:
                self.dns.zone.add_mx(d, "sink.drill.test")
            self.cluster = Cluster(self, self.n)
            if self.tmpfs_size:
                for nd in self.cluster.nodes:
                    self.tmpfs(nd.dir, self.tmpfs_size)
            self.cluster.start()
            log(f"cluster up, leader n{self.cluster.agreed_leader()}")
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, et, ev, tb):
        for inj in self.injectors:
            inj.stop_ev.set()
        if self.cluster:
            self.cluster.cleanup()
        for d in reversed(self.mounts):
            subprocess.run(["umount", "-l", str(d)], capture_output=True)
        self.mounts = []
        for x in (self.sink, self.dns):
            try:
                x and x.stop()
            except Exception:
                pass
        self.net.teardown()
        keep = os.environ.get("DRILL_KEEP") == "1" or et is not None or self.failures
        if keep:
            log(f"kept {self.tmp} for inspection")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False

    def expect(self, cond, what):
        """Record a failed expectation (the drill goes on)."""
        if not cond:
            self.failures.append(what)
            log(f"EXPECTATION FAILED: {what}")
        return bool(cond)

    def injector(self, **kw):
        inj = Injector(self, **kw)
        self.injectors.append(inj)
        return inj

    def tmpfs(self, path, size):
        path.mkdir(parents=True, exist_ok=True)
        run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)])
        self.mounts.append(path)

    # -- the checker ------------------------------------------------------

    def settle(self, timeout=None):
        """Wait until every accepted token reached the sink (or timeout)."""
        timeout = timeout or float(os.environ.get("DRILL_SETTLE", "60"))
        acc = self.ledger.accepted()

        def done():
            got = self.sink.snapshot()
            return all(t in got for t in acc)
        wait_for(done, timeout, interval=0.5, what=f"{len(acc)} accepted tokens at the sink")

    def check(self):
        """Compare ledger and sink; print the summary line; return the exit
        code (0 PASS, 1 FAIL)."""
        entries = self.ledger.items()
        acc = {t: e for t, e in entries.items() if e["code"] == 250}
        unknown = sum(1 for e in entries.values() if e["code"] == 0)
        got = self.sink.snapshot()
        delivered = [t for t in acc if t in got]
        lost = len(acc) - len(delivered)
        dup = sum(len(v) - 1 for v in got.values() if len(v) > 1)
        extra = sum(1 for t in got if t not in acc)
        lat = [min(got[t]) - acc[t]["t"] for t in delivered]
        maxlat = max(lat) if lat else 0.0
        late = sum(1 for x in lat if x > LATE_AFTER)
        if lost:
            self.failures.insert(0, f"lost={lost}")
            sample = sorted(t for t in acc if t not in got)[:5]
            by_node = {}
            for t in acc:
                if t not in got:
                    by_node[acc[t]["node"]] = by_node.get(acc[t]["node"], 0) + 1
            log(f"lost tokens (first): {sample}; by accepting node: {by_node}")
        codes = {}
        for e in entries.values():
            if e["code"] != 250:
                k = f"{e['code']}@{e['stage']}"
                codes[k] = codes.get(k, 0) + 1
        log(f"details: unknown_outcome={unknown} delivered_not_accepted={extra} "
            f"late(>{LATE_AFTER:.0f}s)={late} untokened={self.sink.untokened} "
            f"non-250 by stage={codes}")
        for note in self.notes:
            log(f"note: {note}")
        verdict = "PASS" if not self.failures else "FAIL (" + "; ".join(self.failures) + ")"
        print(f"{self.did} {self.name}: accepted={len(acc)} rejected={len(entries) - len(acc)} "
              f"delivered={len(delivered)} lost={lost} dup={dup} max_latency={maxlat:.1f}s "
              f"{verdict}", flush=True)
        return 0 if not self.failures else 1


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")
