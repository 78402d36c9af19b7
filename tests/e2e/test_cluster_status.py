"""test_cluster_status.py - the cluster status fan-out and membership admin
on three real kumod processes joined by the NNG link: status from any node
lists every member with the same leader and a small lag; a member killed
with -9 shows as unreachable; transfer-leader moves leadership to the named
node; kcli renders the table; /metrics carries the raft gauges."""
import http.client
import json
import os
import subprocess

import kumod_harness as H

CLUSTER_ID = "st1"


# -- Helpers (cluster_init, start_group: as in test_cluster_group.py) ----------

def cluster_init(node_id, raft_ports, link_ports, http_port):
    peers = ", ".join(
        f"{{id={i + 1}, raft='127.0.0.1:{p}', "
        f"link='tcp://127.0.0.1:{link_ports[i]}'}}"
        for i, p in enumerate(raft_ports))
    return (f"  kumo.configure_cluster {{node_id={node_id}, "
            f"cluster_id='{CLUSTER_ID}', "
            f"raft_listen='127.0.0.1:{raft_ports[node_id - 1]}', "
            f"link_listen='tcp://127.0.0.1:{link_ports[node_id - 1]}', "
            f"peers={{{peers}}}, bootstrap=true}}\n"
            f"  kumo.start_http_listener {{listen='127.0.0.1:{http_port}'}}\n")


def start_group(make_kumod):
    raft_ports = [H.free_port() for _ in range(3)]
    link_ports = [H.free_port() for _ in range(3)]
    nodes = []
    for i in range(3):
        hp = H.free_port()
        k = make_kumod(init_extra=cluster_init(i + 1, raft_ports, link_ports,
                                               hp),
                       start=False)
        k.http_port = hp
        nodes.append(k)
    for k in nodes:
        k.start(wait=False)
    for k in nodes:
        k.wait_ready(timeout=30)
    return nodes


def call(k, method, path, body=None, timeout=10):
    """(status, parsed JSON) of one request, or (None, None) if the node
    does not answer."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", k.http_port,
                                       timeout=timeout)
        try:
            data = json.dumps(body) if body is not None else None
            c.request(method, path, body=data,
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            raw = r.read()
            try:
                return r.status, json.loads(raw)
            except ValueError:
                return r.status, raw
        finally:
            c.close()
    except OSError:
        return None, None


def status(k):
    code, st = call(k, "GET", "/api/admin/cluster/status/v1", timeout=5)
    return st if code == 200 else None


def agreed_leader(nodes):
    """The leader every node reports, if exactly one says it leads."""
    sts = [status(k) for k in nodes]
    if any(s is None for s in sts):
        return None
    leaders = [s["raft_node_id"] for s in sts if s["role"] == "leader"]
    ids = {s["leader_id"] for s in sts}
    if len(leaders) == 1 and ids == {leaders[0]}:
        return leaders[0]
    return None


def members(st):
    return {m["id"]: m for m in st["members"]}


def kcli_bin():
    path = os.environ.get("KCLI_BIN") or str(H.REPO_ROOT / "build" / "bin" / "kcli")
    assert os.access(path, os.X_OK), f"kcli binary not found at {path}"
    return path


def kcli(k, *args):
    return subprocess.run([kcli_bin(), "--endpoint",
                           f"http://127.0.0.1:{k.http_port}", *args],
                          capture_output=True, text=True, timeout=60)


# -- Tests ---------------------------------------------------------------------

def test_status_from_any_node_lists_every_member(make_kumod):
    nodes = start_group(make_kumod)
    H.wait_for(lambda: agreed_leader(nodes) is not None, timeout=15,
               what="one agreed leader")
    leader = agreed_leader(nodes)

    def all_reachable(st):
        return (st is not None and len(st["members"]) == 3
                and all(m["reachable"] for m in st["members"]))
    def own_lease_ok(st):
        return (st is not None and
                members(st).get(st["raft_node_id"], {}).get("lease") == "ok")
    for k in nodes:
        H.wait_for(lambda: all_reachable(status(k)), timeout=10,
                   what="every member reachable")
        # a follower's lease comes with its first Pong (ping_interval)
        H.wait_for(lambda: own_lease_ok(status(k)), timeout=10,
                   what="this node's lease")
        st = status(k)
        assert st["cluster_id"] == CLUSTER_ID
        assert st["leader_id"] == leader
        assert st["reachable_count"] == 3
        rows = members(st)
        assert sorted(rows) == [1, 2, 3]
        assert [i for i, m in rows.items() if m["role"] == "leader"] == [leader]
        for i, m in rows.items():
            assert m["leader_id"] == leader
            assert m["raft_addr"].startswith("127.0.0.1:")
            assert m["link_url"].startswith("tcp://127.0.0.1:")
            assert m["lag"] <= 5, m
            assert m["version"], m
            assert m["free_bytes"] > 0, m
            # each node's own --policy file (they differ here: ports)
            assert len(m["policy_checksum"]) == 16, m
            int(m["policy_checksum"], 16)
            assert m["state"] == "up"
            assert m["self"] == (i == st["raft_node_id"])
        assert rows[st["raft_node_id"]]["lease"] == "ok"

    # kcli renders the header and one row per member
    r = kcli(nodes[0], "cluster", "status")
    assert r.returncode == 0, r.stderr
    assert f"CLUSTER  {CLUSTER_ID}" in r.stdout
    assert f"LEADER   {leader}" in r.stdout
    rows = [line.split() for line in r.stdout.splitlines()
            if line[:1].isdigit()]
    assert sorted(int(row[0]) for row in rows) == [1, 2, 3]
    assert all(row[-1] == "up" for row in rows)
    r = kcli(nodes[1], "--json", "cluster", "status")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["members"]) == 3

    # raft gauges on /metrics
    code, text = call(nodes[0], "GET", "/metrics")
    assert code == 200
    text = text.decode() if isinstance(text, bytes) else json.dumps(text)
    for name in ("kumod_raft_term", "kumod_raft_commit_index",
                 "kumod_raft_last_index", "kumod_raft_is_leader",
                 "kumod_cluster_members 3", "kumod_cluster_shards_owned",
                 "kumod_cluster_members_reachable 3"):
        assert name in text, name


def test_killed_follower_shows_unreachable(make_kumod):
    nodes = start_group(make_kumod)
    H.wait_for(lambda: agreed_leader(nodes) is not None, timeout=15,
               what="one agreed leader")
    leader = agreed_leader(nodes)
    victim = leader % 3 + 1
    nodes[victim - 1].kill9()
    asker = nodes[leader - 1]

    def victim_unreachable():
        st = status(asker)
        return st is not None and not members(st)[victim]["reachable"]
    H.wait_for(victim_unreachable, timeout=10, what="victim unreachable")
    st = status(asker)
    rows = members(st)
    assert rows[victim]["role"] == "unreachable"
    assert rows[victim]["unreachable"] is True
    assert st["reachable_count"] == 2
    assert all(rows[i]["reachable"] for i in rows if i != victim)

    r = kcli(asker, "cluster", "status")
    assert r.returncode == 0, r.stderr
    line = [ln for ln in r.stdout.splitlines() if ln.startswith(f"{victim} ")]
    assert line and line[0].split()[-1] == "unreachable"


def test_transfer_leader_moves_leadership_to_named_node(make_kumod):
    nodes = start_group(make_kumod)
    H.wait_for(lambda: agreed_leader(nodes) is not None, timeout=15,
               what="one agreed leader")
    leader = agreed_leader(nodes)
    target = leader % 3 + 1
    other = [i for i in (1, 2, 3) if i not in (leader, target)][0]

    # asked of a follower that is not the target: forwarded to the leader
    code, body = call(nodes[other - 1], "POST",
                      "/api/admin/cluster/transfer-leader/v1", {"id": target})
    assert code == 200, body
    assert body["status"] == "done"
    H.wait_for(lambda: agreed_leader(nodes) == target, timeout=10,
               what=f"node {target} leads")

    # and back with kcli, from the new leader
    r = kcli(nodes[target - 1], "cluster", "transfer-leader", str(leader))
    assert r.returncode == 0, r.stderr
    H.wait_for(lambda: agreed_leader(nodes) == leader, timeout=10,
               what=f"node {leader} leads again")

    # clear errors: unknown node, the leader removing itself
    code, body = call(nodes[0], "POST",
                      "/api/admin/cluster/transfer-leader/v1", {"id": 9})
    assert code == 404, body
    code, body = call(nodes[0], "POST", "/api/admin/cluster/remove-node/v1",
                      {"id": leader})
    assert code == 400 and "transfer leadership first" in body["error"], body
    code, body = call(nodes[0], "POST", "/api/admin/cluster/add-node/v1",
                      {"id": 2, "raft": "127.0.0.1:1"})
    assert code == 400 and "already a member" in body["error"], body


def test_add_then_remove_a_fourth_node(make_kumod):
    nodes = start_group(make_kumod)
    H.wait_for(lambda: agreed_leader(nodes) is not None, timeout=15,
               what="one agreed leader")
    leader = agreed_leader(nodes)
    lead = nodes[leader - 1]
    # the new node knows the group but does not bootstrap: it waits
    raft_ports = [int(m["raft_addr"].split(":")[1])
                  for m in sorted(status(lead)["members"],
                                  key=lambda m: m["id"])]
    link_ports = [int(m["link_url"].rsplit(":", 1)[1])
                  for m in sorted(status(lead)["members"],
                                  key=lambda m: m["id"])]
    raft_ports.append(H.free_port())
    link_ports.append(H.free_port())
    hp = H.free_port()
    init = cluster_init(4, raft_ports, link_ports, hp).replace(
        "bootstrap=true", "bootstrap=false")
    new = make_kumod(init_extra=init, start=False)
    new.http_port = hp
    new.start(wait=False)

    r = kcli(nodes[(leader % 3)], "cluster", "add-node", "4",
             f"127.0.0.1:{raft_ports[3]}", f"tcp://127.0.0.1:{link_ports[3]}")
    assert r.returncode == 0, r.stderr + r.stdout
    new.wait_ready(timeout=30)
    H.wait_for(lambda: agreed_leader(nodes + [new]) == leader, timeout=15,
               what="the new node follows the leader")

    def four_reachable():
        st = status(lead)
        return (st is not None and sorted(members(st)) == [1, 2, 3, 4]
                and members(st)[4]["reachable"]
                and members(st)[4]["role"] == "follower")
    H.wait_for(four_reachable, timeout=10, what="four members, 4 reachable")
    code, body = call(lead, "POST", "/api/admin/cluster/add-node/v1",
                      {"id": 4, "raft": f"127.0.0.1:{raft_ports[3]}"})
    assert code == 400 and "already a member" in body["error"], body

    r = kcli(lead, "cluster", "remove-node", "4")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "done" in r.stdout
    H.wait_for(lambda: sorted(members(status(lead) or {"members": []}))
               == [1, 2, 3], timeout=10, what="three members again")
    code, body = call(lead, "POST", "/api/admin/cluster/remove-node/v1",
                      {"id": 4})
    assert code == 404, body
