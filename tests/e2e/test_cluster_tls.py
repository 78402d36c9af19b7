"""test_cluster_tls.py - mutual TLS between cluster nodes (issue 16).

A small CA and one certificate per node are made with the `openssl`
command, as docs/cluster.md shows. Three nodes with `tls = {ca, cert, key}`
form a group, deliver, fail over when the leader is killed, and deliver
again. A stranger on the raft port (no certificate, a certificate from
another CA, a valid certificate naming another node id, plaintext frames)
changes nothing: the nodes log why they dropped it, and the term stays
the same. A certificate replaced on disk is picked up without a restart.
The defaults refuse plaintext across non-loopback addresses.
"""
import re
import socket
import ssl
import struct
import subprocess
import time

import pytest

import cluster_lib as C
import kumod_harness as H


# -- Certificates ----------------------------------------------------------------

def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_ca(d, name):
    d.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt",
            "-days", "30", "-subj", f"/CN={name}", cwd=d)
    return d / f"{name}.crt", d / f"{name}.key"


def make_node_cert(d, ca, name, days=30, file=None):
    """A certificate for `name` (CN and SAN DNS) signed by ca = (crt, key)."""
    file = file or name
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", f"{file}.key", "-out", f"{file}.csr",
            "-subj", f"/CN={name}", cwd=d)
    ext = d / f"{file}.ext"
    ext.write_text(f"subjectAltName=DNS:{name}\n")
    openssl("x509", "-req", "-in", f"{file}.csr", "-CA", str(ca[0]),
            "-CAkey", str(ca[1]), "-CAcreateserial", "-out", f"{file}.crt",
            "-days", str(days), "-extfile", str(ext), cwd=d)
    return d / f"{file}.crt", d / f"{file}.key"


@pytest.fixture
def pki(tmp_path):
    d = tmp_path / "pki"
    ca = make_ca(d, "cluster-ca")
    other = make_ca(d / "other", "other-ca")
    certs = {i: make_node_cert(d, ca, f"node-{i}") for i in (1, 2, 3)}
    return {
        "dir": d, "ca": ca, "certs": certs,
        "other_ca": make_node_cert(d / "other", other, "node-2"),
        "wrong_id": make_node_cert(d, ca, "node-9"),
    }


# -- A TLS cluster -------------------------------------------------------------------

class TlsCluster(C.Cluster):
    """C.Cluster whose nodes carry tls = {ca, cert, key}."""

    def __init__(self, *a, pki, **kw):
        self.pki = pki
        super().__init__(*a, **kw)

    def make_node(self, node_id, cluster_id=None):
        hp = H.free_port()
        lua = C.cluster_lua(node_id, self.raft_ports, self.link_ports,
                            cluster_id or self.cluster_id, self.settings,
                            self.election_timeout)
        crt, key = self.pki["certs"][node_id]
        tls = {"ca": str(self.pki["ca"][0]), "cert": str(crt), "key": str(key)}
        lua = lua.replace("kumo.configure_cluster {",
                          f"kumo.configure_cluster {{ tls = {H.lua_value(tls)},", 1)
        lua += f"  kumo.start_http_listener {{listen='127.0.0.1:{hp}'}}\n"
        kw = H.delivery_policy(queue=self.queue,
                               path=H.sink_path(self.sink.port, **self.path),
                               init_extra=lua)
        k = self.make_kumod(start=False, **kw)
        k.http_port = hp
        k.node_id = node_id
        return k


def start_tls_cluster(make_kumod, fakedns, sink, pki):
    cl = TlsCluster(make_kumod, fakedns, sink, pki=pki).start()
    cl.wait_leader(timeout=30)
    cl.wait_accepting(timeout=30)
    return cl


def raft_frames(claim_id, claim_addr, term):
    """raft_uv_tcp's handshake claiming claim_id, then a RequestVote for it
    with `term` (PROBE-2026-12 R4)."""
    a = claim_addr.encode() + b"\0"
    a += b"\0" * (-len(a) % 8)
    hs = struct.pack("<QQQ", 1, claim_id, len(a)) + a
    rv = struct.pack("<QQQQQQQ", 3, 40, term, claim_id, 1000, term, 1)
    return hs + rv


def attack_raft(port, frames, context=None):
    """Send frames to 127.0.0.1:port (in TLS with context); True if the
    node closed the connection or refused the handshake."""
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        return True
    try:
        s = raw
        if context is not None:
            s = context.wrap_socket(raw, server_hostname="node-1")
        s.sendall(frames)
        s.settimeout(5)
        return s.recv(1) == b""
    except (ssl.SSLError, OSError):
        return True
    finally:
        raw.close()


def client_context(pki, cert=None, tls13=True):
    """A client that trusts anything; the raft port speaks TLS 1.3 only,
    NNG's mbedTLS on the link port TLS 1.2 (tls13=False)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = (ssl.TLSVersion.TLSv1_3 if tls13
                           else ssl.TLSVersion.TLSv1_2)
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


def terms(cl):
    return [cl.status(k)["term"] for k in cl.nodes]


# -- Tests -----------------------------------------------------------------------------

def test_tls_cluster_forms_delivers_and_fails_over(make_kumod, fakedns, sink, pki):
    cl = start_tls_cluster(make_kumod, fakedns, sink, pki)
    for k in cl.nodes:
        assert re.search(r"cluster: mutual TLS between nodes", k.log_text())
    # cluster status on the leader (which has raft connections with every
    # member; two followers need not): every member is reached over TLS,
    # with the expiry of its certificate (30 days).
    def all_tls():
        rows = cl.status(cl.node(cl.wait_leader()))["members"]
        return all(m.get("tls") == "tls" and m.get("cert_expiry") for m in rows) and rows
    rows = H.wait_for(all_tls, timeout=20, what="TLS on every member row")
    for m in rows:
        assert 29 * 86400 < m["cert_expiry"] - time.time() <= 30 * 86400, m
    accepted = {}
    for i, k in enumerate(cl.nodes * 5):
        tok = C.send_until_accepted(k, cl.names[i % len(cl.names)])
        accepted[tok] = (k.node_id, None)
    leader = cl.leader()
    cl.kill9(leader)
    new = cl.wait_leader(timeout=30, among=cl.alive(), not_id=leader)
    assert new != leader
    for i, k in enumerate(cl.alive() * 5):
        tok = C.send_until_accepted(k, cl.names[i % len(cl.names)], timeout=40)
        accepted[tok] = (k.node_id, None)
    chk = C.wait_delivered(accepted, sink, timeout=90)
    print(f"tls failover: {chk.line()}")
    assert not chk.lost, chk.line()


def test_strangers_on_the_raft_port_change_nothing(make_kumod, fakedns, sink, pki):
    cl = start_tls_cluster(make_kumod, fakedns, sink, pki)
    target = cl.node(1)
    port = cl.raft_ports[0]
    before = terms(cl)
    claim = f"127.0.0.1:{cl.raft_ports[1]}"  # node 2's own address
    frames = raft_frames(2, claim, 2**64 - 1)
    cases = [
        ("plaintext", None, r"TLS: "),
        ("no certificate", client_context(pki), r"TLS: |closed during the TLS"),
        ("another CA", client_context(pki, pki["other_ca"]),
         r"TLS: peer certificate|TLS: "),
        ("another node id", client_context(pki, pki["wrong_id"]),
         r"certificate /CN=node-9 does not name node-2"),
    ]
    for what, ctx, pattern in cases:
        n0 = target.log_text().count("connection dropped")
        assert attack_raft(port, frames, ctx), what
        H.wait_for(lambda: target.log_text().count("connection dropped") > n0,
                   timeout=10, what=f"node 1 logs the {what} refusal")
        tail = "\n".join(l for l in target.log_text().splitlines()
                         if "connection dropped" in l)
        assert re.search(pattern, tail), (what, tail)
    time.sleep(1.5)
    assert terms(cl) == before
    assert cl.leader() is not None
    # The group still works.
    C.send_until_accepted(cl.node(2), cl.names[0])


def sp_ping_to_link(port, context):
    """An NNG REQ peer: the SP header (REQ0 = 0x30 talking to REP0 = 0x31),
    then one framed message, over TLS with context or plaintext; what came
    back (b"" if the node closed, None if TLS failed)."""
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        return b""
    try:
        s = raw
        if context is not None:
            s = context.wrap_socket(raw, server_hostname="node-1")
        s.sendall(b"\x00SP\x00\x00\x30\x00\x00")
        body = b"\x80\x00\x00\x01" + b"\x08\x01"  # request id, garbage
        s.sendall(struct.pack(">Q", len(body)) + body)
        s.settimeout(5)
        return s.recv(64)
    except ssl.SSLError:
        return None
    except OSError:
        return b""
    finally:
        raw.close()


def test_strangers_on_the_link_port_get_no_tls_session(make_kumod, fakedns, sink, pki):
    cl = start_tls_cluster(make_kumod, fakedns, sink, pki)
    port = cl.link_ports[0]
    before = terms(cl)
    # Plaintext SP: the TLS listener never answers with an SP header.
    got = sp_ping_to_link(port, None)
    assert not got or not got.startswith(b"\x00SP"), got
    for ctx in (client_context(pki, tls13=False),
                client_context(pki, pki["other_ca"], tls13=False)):
        got = sp_ping_to_link(port, ctx)
        assert not got, got
    # The same client with a certificate of the cluster CA does get an SP
    # answer: the refusals above are the certificate checks.
    got = sp_ping_to_link(port, client_context(pki, pki["wrong_id"], tls13=False))
    assert got and got.startswith(b"\x00SP"), got
    assert terms(cl) == before
    C.send_until_accepted(cl.node(1), cl.names[0])


def pb_varint(v):
    out = b""
    while True:
        b = v & 0x7F
        v >>= 7
        out += bytes([b | (0x80 if v else 0)])
        if not v:
            return out


def forged_ping(cluster_id, from_node):
    """A LinkEnvelope{version 1, cluster_id, from_node, req_id 7, Ping{seq
    1}} with no sender proof."""
    ping = b"\x08\x01"
    cid = cluster_id.encode()
    return (b"\x08\x01" + b"\x12" + pb_varint(len(cid)) + cid +
            b"\x18" + pb_varint(from_node) + b"\x20\x07" +
            pb_varint(18 << 3 | 2) + pb_varint(len(ping)) + ping)


def sp_request(port, context, body):
    """One REQ0 request over TLS; the reply body (without the request id)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s = context.wrap_socket(raw, server_hostname="node-1")
        s.sendall(b"\x00SP\x00\x00\x30\x00\x00")
        hdr = b""
        while len(hdr) < 8:
            hdr += s.recv(8 - len(hdr))
        assert hdr == b"\x00SP\x00\x00\x31\x00\x00", hdr
        msg = b"\x80\x00\x00\x01" + body
        s.sendall(struct.pack(">Q", len(msg)) + msg)
        data = b""
        while len(data) < 8:
            data += s.recv(8 - len(data))
        n = struct.unpack(">Q", data)[0]
        data = b""
        while len(data) < n:
            data += s.recv(n - len(data))
        return data[4:]
    finally:
        raw.close()


def test_member_certificate_cannot_speak_for_another_node_on_the_link(
        make_kumod, fakedns, sink, pki):
    """node-9's certificate is of the cluster CA, so NNG lets it in; it
    claims from_node 2 without node 2's proof and is refused."""
    cl = start_tls_cluster(make_kumod, fakedns, sink, pki)
    target = cl.node(1)
    before = terms(cl)
    reply = sp_request(cl.link_ports[0],
                       client_context(pki, pki["wrong_id"], tls13=False),
                       forged_ping("e2e", 2))
    # The refusal: an empty envelope with req_id 7 and no cluster id.
    assert reply == b"\x08\x01\x20\x07", reply
    target.wait_log(r"cluster_link: node 1: refused request from node 2: "
                    r"no sender proof", timeout=10)
    assert terms(cl) == before
    C.send_until_accepted(cl.node(2), cl.names[0])


def test_certificate_replaced_on_disk_is_picked_up(make_kumod, fakedns, sink, pki):
    cl = start_tls_cluster(make_kumod, fakedns, sink, pki)
    k = cl.node(3)
    crt, key = pki["certs"][3]
    # Reissue node 3's certificate for 7 days instead of 30, in place.
    make_node_cert(pki["dir"], pki["ca"], "node-3", days=7, file="node-3")
    k.wait_log(r"TLS files reloaded", timeout=20)
    assert crt.exists()
    # Connections made after the reload use it: kill another node to force
    # new ones (the leader, unless node 3 leads itself), and the group,
    # node 3 with its new certificate among the survivors, goes on.
    leader = cl.leader()
    victim = leader if leader != 3 else 1
    cl.kill9(victim)
    cl.wait_leader(timeout=30, among=cl.alive(),
                   not_id=victim if victim == leader else None)
    C.send_until_accepted(k, cl.names[1], timeout=40)


def test_plaintext_across_non_loopback_addresses_is_refused(make_kumod):
    conf = {
        "node_id": 1, "cluster_id": "e2e", "raft_listen": "127.0.0.1:7001",
        "peers": [{"id": 1, "raft": "127.0.0.1:7001"},
                  {"id": 2, "raft": "192.0.2.7:7001"}],
    }
    k = make_kumod(start=False,
                   init_extra=f"  kumo.configure_cluster {H.lua_value(conf)}\n")
    k.start(wait=False)
    H.wait_for(lambda: not k.running(), timeout=20, what="kumod refuses to start")
    assert "tls: required for a cluster whose nodes are not all on loopback " \
           "(192.0.2.7:7001)" in k.log_text()
    assert "insecure_plaintext = true" in k.log_text()


def test_insecure_plaintext_is_logged_at_start(make_kumod):
    # Loopback only: a test never dials an address off this machine.
    port = H.free_port()
    conf = {
        "node_id": 1, "cluster_id": "e2e", "raft_listen": f"127.0.0.1:{port}",
        "peers": [{"id": 1, "raft": f"127.0.0.1:{port}"}],
        "insecure_plaintext": True,
    }
    k = make_kumod(start=False,
                   init_extra=f"  kumo.configure_cluster {H.lua_value(conf)}\n")
    k.start(wait=False)
    k.wait_log(r"insecure_plaintext: raft and link traffic between nodes is "
               r"neither authenticated nor encrypted", timeout=20)


def test_bad_tls_file_is_refused_by_name(make_kumod, pki, tmp_path):
    conf = {
        "node_id": 1, "cluster_id": "e2e", "raft_listen": "127.0.0.1:7001",
        "tls": {"ca": str(pki["ca"][0]), "cert": str(tmp_path / "missing.crt"),
                "key": str(pki["certs"][1][1])},
    }
    k = make_kumod(start=False,
                   init_extra=f"  kumo.configure_cluster {H.lua_value(conf)}\n")
    k.start(wait=False)
    H.wait_for(lambda: not k.running(), timeout=20, what="kumod refuses to start")
    assert f"tls.cert: {tmp_path / 'missing.crt'}: No such file" in k.log_text()


# -- Below TLS: the probe's raft frames against a plaintext (loopback) group --

def ae_type0(claim_id, claim_addr):
    """Handshake, then an AppendEntries whose one entry has type 0
    (PROBE-2026-12 R5: a NULL read inside libraft)."""
    a = claim_addr.encode() + b"\0"
    a += b"\0" * (-len(a) % 8)
    hs = struct.pack("<QQQ", 1, claim_id, len(a)) + a
    hdr = struct.pack("<QQQQQQQ", 1, 56, 3, 1, 1, 1, 1) + struct.pack("<QBxxxI", 3, 0, 8)
    return hs + hdr + b"\0" * 8


def test_probe_frames_on_a_plaintext_group_change_nothing(make_kumod, fakedns, sink):
    cl = C.Cluster(make_kumod, fakedns, sink).start()
    cl.wait_leader(timeout=20)
    cl.wait_accepting(timeout=20)
    target = cl.node(1)
    port = cl.raft_ports[0]
    claim = f"127.0.0.1:{cl.raft_ports[1]}"
    before = terms(cl)
    frames = [
        ("entry of type 0", ae_type0(2, claim), r"entry 0: type 0"),
        ("term 2^64-1", raft_frames(2, claim, 2**64 - 1), r"RequestVote: term \d+ out of range"),
        ("256 MiB header", raft_frames(2, claim, 5)[:40] + struct.pack("<QQ", 1, 256 << 20),
         r"header length 268435456"),
        ("unterminated address", struct.pack("<QQQ", 1, 2, 16) + b"x" * 16,
         r"address not terminated"),
        ("not a member", raft_frames(99, "127.0.0.1:9", 5), r"id 99 at 127.0.0.1:9: not a member"),
    ]
    for what, data, pattern in frames:
        n0 = target.log_text().count("connection dropped")
        assert attack_raft(port, data), what
        H.wait_for(lambda: target.log_text().count("connection dropped") > n0,
                   timeout=10, what=f"node 1 logs the {what} refusal")
        assert re.search(pattern, target.log_text()), what
    time.sleep(1.5)
    assert all(k.running() for k in cl.nodes)
    assert terms(cl) == before
    C.send_until_accepted(cl.node(1), cl.names[0])
