"""fakedns.py - a tiny authoritative DNS server on loopback for the e2e tests.

kumod's resolver is pointed at it (kumo.dns.configure_resolver{name_servers=
{'127.0.0.1:PORT'}}), so no test ever asks a real name server. It answers
only the records a test added, for names under .test; everything else is
NXDOMAIN. A name that exists but lacks the asked type gets NOERROR with no
answer (NODATA), as a real server would. UDP and TCP on the same port.
Standard library + Debian's python3-dnslib only.
"""
import socket
import threading

from dnslib import AAAA, MX, QTYPE, RCODE, RR, A, DNSLabel
from dnslib.server import BaseResolver, DNSLogger, DNSServer


def _free_udp_tcp_port():
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            u.close()
            t.close()
        return port
    raise RuntimeError("no port free for both UDP and TCP")


class _Resolver(BaseResolver):
    def __init__(self, zone):
        self.zone = zone

    def resolve(self, request, handler):
        reply = request.reply()
        reply.header.aa = 1
        qname = request.q.qname
        qtype = QTYPE[request.q.qtype]
        name = str(qname).rstrip(".").lower()
        self.zone.queries.append((name, qtype))
        with self.zone.lock:
            rrs = list(self.zone.records.get(name, ()))
        if not name.endswith(".test") or not rrs:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for rtype, ttl, rdata in rrs:
            if rtype == qtype or qtype == "ANY":
                reply.add_answer(RR(qname, getattr(QTYPE, rtype), ttl=ttl, rdata=rdata))
        return reply


class FakeDNS:
    """Authoritative answers for *.test on 127.0.0.1:<port> (UDP and TCP).

    add_a(name, ip), add_aaaa(name, ip), add_mx(name, host, pref=10),
    add_null_mx(name), remove(name), clear(). `queries` lists every
    (name, type) asked, in order.
    """

    def __init__(self):
        self.records = {}
        self.queries = []
        self.lock = threading.Lock()
        self.port = None
        self._servers = []

    def start(self):
        last = None
        for _ in range(5):
            port = _free_udp_tcp_port()
            logger = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data",
                               logf=lambda s: None)
            try:
                udp = DNSServer(_Resolver(self), address="127.0.0.1", port=port, logger=logger)
                tcp = DNSServer(_Resolver(self), address="127.0.0.1", port=port, tcp=True,
                                logger=logger)
            except OSError as e:  # lost a race for the port: try another
                last = e
                continue
            udp.start_thread()
            tcp.start_thread()
            self._servers = [udp, tcp]
            self.port = port
            return self
        raise RuntimeError(f"fake DNS could not bind: {last}")

    def stop(self):
        for s in self._servers:
            s.stop()
            s.server.server_close()
        self._servers = []

    def _add(self, name, rtype, rdata, ttl=60):
        name = name.rstrip(".").lower()
        if not name.endswith(".test"):
            raise ValueError(f"fake DNS serves only .test names, not {name!r}")
        with self.lock:
            self.records.setdefault(name, []).append((rtype, ttl, rdata))

    def add_a(self, name, ip="127.0.0.1", ttl=60):
        self._add(name, "A", A(ip), ttl)

    def add_aaaa(self, name, ip="::1", ttl=60):
        self._add(name, "AAAA", AAAA(ip), ttl)

    def add_mx(self, name, host, pref=10, ttl=60):
        self._add(name, "MX", MX(DNSLabel(host), pref), ttl)

    def add_null_mx(self, name, ttl=60):
        """RFC 7505: `MX 0 .`"""
        self._add(name, "MX", MX(DNSLabel("."), 0), ttl)

    def remove(self, name):
        with self.lock:
            self.records.pop(name.rstrip(".").lower(), None)

    def clear(self):
        with self.lock:
            self.records.clear()
        self.queries.clear()
