"""--user: kumod binds as root, prepares its directories for the user, then
drops to it (KUMOMTA-API.md §1.2)."""
import os
import pwd

import pytest

import kumod_harness as H

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def test_user_nobody_owns_spool_and_logs_and_the_process(make_kumod):
    nobody = pwd.getpwnam("nobody")
    k = make_kumod(start=False)
    # The unprivileged user must be able to reach the test directory.
    os.chmod(k.dir.parent, 0o711)
    os.chmod(k.dir, 0o711)
    k.start(extra_args=("--user", "nobody"))

    with open(f"/proc/{k.proc.pid}/status") as f:
        uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
    assert all(int(u) == nobody.pw_uid for u in uids), uids
    assert "running as nobody" in k.log_text()

    s = k.smtp(ehlo="client.test")
    code, text = H.send_message(s, "a@client.test", ["b@dest.test"])
    assert code == 250, text
    s.quit()
    assert k.stop() == 0
    for sub in ("data", "meta", "logs", "raft"):
        assert (k.dir / sub).stat().st_uid == nobody.pw_uid, sub
    recs = k.records("Reception")
    assert [r["recipient"] for r in recs] == ["b@dest.test"]
