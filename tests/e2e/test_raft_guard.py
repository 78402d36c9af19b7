"""test_raft_guard.py - data_dir/raft_guard (CLUSTER.md §4.9): raft state
restored from an older copy is refused at start-up with the operator's
remedy, and a wiped raft directory starts again as a new history."""
import shutil

import kumod_harness as H


def raft_dir(k):
    dirs = [p for p in k.dir.rglob("raft") if p.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_restored_raft_dir_is_refused_and_a_wiped_one_starts(make_kumod):
    k = make_kumod()
    rd = raft_dir(k)
    assert k.stop() == 0
    backup = rd.parent / "raft.backup"
    shutil.copytree(rd, backup)
    guard = rd.parent / "raft_guard"
    first, applied = (int(x) for x in guard.read_text().split())
    assert applied >= 1
    assert first >= 1
    # a one-voter group keeps its term across restarts (libraft 0.15), so
    # stand in for the later terms a group member would have seen: the
    # guard says term first+4, the restored raft/ is still at `first`
    k.start()
    assert k.stop() == 0
    assert int(guard.read_text().split()[0]) == first
    guard.write_text(f"{first + 4} {applied}\n")
    shutil.rmtree(rd)
    shutil.copytree(backup, rd)
    k.start(wait=False)
    assert k.wait_exit(20) != 0
    log = k.log_text()
    assert "stale raft state" in log
    assert "rejoin" in log
    assert f"this node has seen term {first + 4}" in log

    shutil.rmtree(rd)  # the remedy: wipe raft/ and start as a new member
    k.start()
    assert int(guard.read_text().split()[0]) >= 1
    assert k.stop() == 0


def test_raft_dir_missing_applied_entries_is_refused(make_kumod):
    """Within one term: a raft/ copy taken before entries this node
    applied (the log ends earlier) is stale too."""
    k = make_kumod()
    rd = raft_dir(k)
    assert k.stop() == 0
    guard = rd.parent / "raft_guard"
    term, applied = (int(x) for x in guard.read_text().split())
    guard.write_text(f"{term} {applied + 1000}\n")
    k.start(wait=False)
    assert k.wait_exit(20) != 0
    log = k.log_text()
    assert "stale raft state" in log
    assert f"applied index {applied + 1000}" in log
