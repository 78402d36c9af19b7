"""test_cluster_group.py - three kumod processes form one Raft group through
kumo.configure_cluster: one leader, failover of leadership after kill -9, the
killed node rejoins as a follower, and a data dir of another cluster is
refused (cluster_id mismatch)."""
import http.client
import json
import time

import kumod_harness as H

CLUSTER_ID = "t1"


# -- Helpers -------------------------------------------------------------------

def cluster_init(node_id, raft_ports, http_port, cluster_id=CLUSTER_ID,
                 link_ports=None):
    def peer(i, p):
        link = (f", link='tcp://127.0.0.1:{link_ports[i]}'"
                if link_ports else "")
        return f"{{id={i + 1}, raft='127.0.0.1:{p}'{link}}}"
    peers = ", ".join(peer(i, p) for i, p in enumerate(raft_ports))
    link_listen = (f"link_listen='tcp://127.0.0.1:{link_ports[node_id - 1]}', "
                   if link_ports else "")
    return (f"  kumo.configure_cluster {{node_id={node_id}, "
            f"cluster_id='{cluster_id}', "
            f"raft_listen='127.0.0.1:{raft_ports[node_id - 1]}', "
            f"{link_listen}"
            f"peers={{{peers}}}, bootstrap=true}}\n"
            f"  kumo.start_http_listener {{listen='127.0.0.1:{http_port}'}}\n")


def status(k):
    """The node's cluster status, or None if it does not answer."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", k.http_port, timeout=2)
        try:
            c.request("GET", "/api/admin/cluster/status/v1")
            r = c.getresponse()
            if r.status != 200:
                return None
            return json.loads(r.read())
        finally:
            c.close()
    except OSError:
        return None


def agreed_leader(nodes):
    """The leader id every node reports, if exactly one of them says it is
    the leader and all agree on its id; else None."""
    sts = [status(k) for k in nodes]
    if any(s is None for s in sts):
        return None
    leaders = [s["raft_node_id"] for s in sts if s["role"] == "leader"]
    ids = {s["leader_id"] for s in sts}
    if len(leaders) == 1 and ids == {leaders[0]}:
        return leaders[0]
    return None


def start_group(make_kumod, links=False):
    raft_ports = [H.free_port() for _ in range(3)]
    link_ports = [H.free_port() for _ in range(3)] if links else None
    nodes = []
    for i in range(3):
        hp = H.free_port()
        k = make_kumod(init_extra=cluster_init(i + 1, raft_ports, hp,
                                               link_ports=link_ports),
                       start=False)
        k.http_port = hp
        k.raft_ports = raft_ports
        nodes.append(k)
    for k in nodes:
        k.start(wait=False)
    for k in nodes:
        k.wait_ready(timeout=30)
    return nodes


# -- Tests ---------------------------------------------------------------------

def test_three_nodes_elect_one_leader_and_fail_over(make_kumod):
    nodes = start_group(make_kumod)
    H.wait_for(lambda: agreed_leader(nodes) is not None, timeout=15,
               what="one agreed leader")
    leader = agreed_leader(nodes)
    assert leader is not None
    st = status(nodes[0])
    assert st["cluster_id"] == CLUSTER_ID
    assert sorted(m["id"] for m in st["members"]) == [1, 2, 3]
    assert all(m["raft_addr"].startswith("127.0.0.1:") for m in st["members"])

    # without link_listen a follower cannot forward: it says 451
    # (the leader's barrier may still be in flight just after the election)
    def leader_accepts():
        s = nodes[leader - 1].smtp(ehlo="client.test")
        code, _ = H.send_message(s, rcpts=("bob@dest.test",))
        s.quit()
        return code == 250
    H.wait_for(leader_accepts, timeout=10, interval=0.2, what="a 250 from the leader")
    follower = nodes[leader % 3]
    s = follower.smtp(ehlo="client.test")
    code, text = H.send_message(s, rcpts=("bob@dest.test",))
    assert code == 451, text
    s.quit()

    # kill -9 the leader: the other two elect a new one
    nodes[leader - 1].kill9()
    rest = [k for i, k in enumerate(nodes) if i != leader - 1]
    t0 = time.monotonic()
    H.wait_for(lambda: (agreed_leader(rest) or 0) not in (0, leader),
               timeout=15, what="a new leader among the other two")
    assert time.monotonic() - t0 < 15

    # the killed node rejoins as a follower of the same cluster
    old = nodes[leader - 1]
    old.start(wait=True)
    new_leader = agreed_leader(rest)
    H.wait_for(lambda: (status(old) or {}).get("leader_id") == new_leader
               and status(old)["role"] == "follower",
               timeout=15, what="the old leader follows the new one")
    assert status(old)["cluster_id"] == CLUSTER_ID
    ids = list(old.dir.rglob("cluster_id"))
    assert len(ids) == 1 and ids[0].read_text() == CLUSTER_ID + "\n"


def test_follower_forwards_its_records_to_the_leader(make_kumod):
    nodes = start_group(make_kumod, links=True)
    H.wait_for(lambda: agreed_leader(nodes) is not None, timeout=15,
               what="one agreed leader")
    leader = agreed_leader(nodes)

    def accepts(k):
        s = k.smtp(ehlo="client.test")
        code, _ = H.send_message(s, rcpts=("bob@dest.test",))
        s.quit()
        return code == 250
    for k in nodes:
        H.wait_for(lambda: accepts(k), timeout=10, interval=0.2,
                   what="a 250 from every node")
    # every node's FSM holds all three messages (a follower's 250 waits
    # until its own FSM has applied the leader's entry)
    before = {i + 1: status(k)["commit_index"] for i, k in enumerate(nodes)}
    assert all(v > 0 for v in before.values())
    follower = nodes[leader % 3]
    s = follower.smtp(ehlo="client.test")
    code, text = H.send_message(s, rcpts=("bob@dest.test",))
    s.quit()
    assert code == 250, text


def test_data_dir_of_another_cluster_is_refused(make_kumod):
    raft_ports = [H.free_port()]
    hp = H.free_port()
    k = make_kumod(init_extra=cluster_init(1, raft_ports, hp))
    k.http_port = hp
    assert k.stop() == 0
    text = k.policy_path.read_text().replace("cluster_id='t1'", "cluster_id='t2'")
    k.policy_path.write_text(text)
    k.start(wait=False)
    rc = k.wait_exit(20)
    assert rc != 0
    assert "cluster_id mismatch" in k.log_text()
    assert "belongs to cluster t1, the policy says t2" in k.log_text()


def validate(fakedns, tmp_path, cluster_lua):
    pol = tmp_path / "policy.lua"
    pol.write_text(H.render_policy(tmp_path, fakedns.port,
                                   H.default_listener(H.free_port()),
                                   init_extra=f"  kumo.configure_cluster {cluster_lua}\n"))
    r = H.run_kumod(["--policy", str(pol), "--validate", *H.user_args()])
    return r.returncode, (r.stdout or "") + (r.stderr or "")


def test_validate_names_the_bad_configure_cluster_key(fakedns, tmp_path):
    good = "node_id=1, cluster_id='t1', raft_listen='127.0.0.1:7001'"
    rc, out = validate(fakedns, tmp_path, "{" + good + ", peers={{id=2, raft='127.0.0.1:7002'}}}")
    assert rc == 0, out
    assert not list(tmp_path.rglob("cluster_id"))
    cases = [
        ("{cluster_id='t1', raft_listen='127.0.0.1:7001'}", "node_id"),
        ("{node_id=1, raft_listen='127.0.0.1:7001'}", "cluster_id"),
        ("{node_id=1, cluster_id='t1', raft_listen='localhost:7001'}", "raft_listen"),
        ("{node_id=1, cluster_id='t1', raft_listen='127.0.0.1'}", "raft_listen"),
        ("{" + good + ", peers={{id=2, raft='127.0.0.1:7002'}, {id=2, raft='127.0.0.1:7003'}}}",
         "peers[2].id"),
        ("{" + good + ", peers={{id=2, raft='[::1]:7002'}}}", "peers[1].raft"),
        ("{" + good + ", peers={{id=1, raft='127.0.0.1:7009'}}}", "peers[1].raft"),
        ("{" + good + ", link_listen='127.0.0.1:7101'}", "link_listen"),
        ("{" + good + ", link_listen='tcp://127.0.0.1:7101', "
         "peers={{id=2, raft='127.0.0.1:7002'}}}", "peers[1].link"),
        ("{" + good + ", link_listen='tcp://127.0.0.1:7101', "
         "peers={{id=2, raft='127.0.0.1:7002', link='tcp://localhost:1'}}}",
         "peers[1].link"),
        ("{" + good + ", settings={min_replicas=3, replication_factor=2}}",
         "settings.min_replicas"),
        ("{" + good + ", settings={node_down_after='2s', self_fence_after='5s'}}",
         "settings.node_down_after"),
        ("{" + good + ", settings={shards=0}}", "settings.shards"),
        ("{" + good + ", settings={bogus=1}}", "bogus"),
        ("{" + good + ", tls={ca='x'}}", "tls"),
    ]
    for lua, key in cases:
        rc, out = validate(fakedns, tmp_path, lua)
        assert rc != 0, lua
        assert key in out, (lua, out)
