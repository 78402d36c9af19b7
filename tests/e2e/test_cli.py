"""kumod's command line: --version, --help, --user, --validate, and policy
errors reported with file and line (KUMOMTA-API.md §1.1-1.3)."""
import os
import re
import socket

import pytest

import kumod_harness as H

EXAMPLES = sorted((H.REPO_ROOT / "policy" / "examples").glob("*.lua"))


# -- Helpers -------------------------------------------------------------------

def policy_file(fakedns, tmp_path, listener=None, extra="", init_extra=""):
    lst = H.default_listener(H.free_port())
    lst.update(listener or {})
    text = H.render_policy(tmp_path, fakedns.port, lst, extra, init_extra)
    p = tmp_path / "policy.lua"
    p.write_text(text)
    return p, lst


def line_of(path, marker):
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if marker in line:
            return n
    raise AssertionError(f"{marker!r} not in {path}")


def output(r):
    return r.stdout + r.stderr


# -- Tests ---------------------------------------------------------------------

def test_version_prints_a_version_and_exits_0():
    r = H.run_kumod(["--version"])
    assert r.returncode == 0, output(r)
    assert re.search(r"kumod\S*\s+v?\d+\.\d+", output(r)), output(r)


def test_help_lists_the_options_and_exits_0():
    r = H.run_kumod(["--help"])
    assert r.returncode == 0, output(r)
    for opt in ("--policy", "--user", "--validate", "--version"):
        assert opt in output(r), f"{opt} missing from --help:\n{output(r)}"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_root_without_user_refuses_to_start_and_names_the_option(fakedns, tmp_path):
    pol, lst = policy_file(fakedns, tmp_path)
    r = H.run_kumod(["--policy", str(pol)], timeout=60)
    assert r.returncode != 0, output(r)
    assert "--user" in output(r)
    assert "initialization complete" not in output(r)
    assert not (tmp_path / "data").exists(), "spool opened before refusing root"


def test_validate_good_policy_exits_0_without_binding_or_opening_spools(fakedns, tmp_path):
    pol, lst = policy_file(fakedns, tmp_path)
    port = int(lst["listen"].rsplit(":", 1)[1])
    # Hold the listener's port: a kumod that tried to bind would fail.
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen()
    try:
        r = H.run_kumod(["--policy", str(pol), "--validate", *H.user_args()])
    finally:
        holder.close()
    assert r.returncode == 0, output(r)
    assert not (tmp_path / "data").exists()
    assert not (tmp_path / "meta").exists()
    assert "initialization complete" not in output(r)


def test_validate_reports_lua_runtime_error_with_file_and_line(fakedns, tmp_path):
    pol, _ = policy_file(fakedns, tmp_path, extra="local t = nil\nlocal x = t.field -- BOOM\n")
    line = line_of(pol, "-- BOOM")
    r = H.run_kumod(["--policy", str(pol), "--validate", *H.user_args()])
    assert r.returncode != 0, output(r)
    assert f"policy.lua:{line}" in output(r), output(r)


def test_error_in_init_stops_startup_with_file_and_line(make_kumod):
    k = make_kumod(init_extra="  error('init exploded') -- BOOM\n", start=False)
    line = line_of(k.policy_path, "-- BOOM")
    with pytest.raises(H.KumodStartError):
        k.start()
    assert k.exit_codes[-1] != 0
    assert f"policy.lua:{line}" in k.log_text() and "init exploded" in k.log_text()
    assert H.port_is_free(k.port)


def test_syntax_error_is_reported_with_file_and_line(fakedns, tmp_path):
    pol, _ = policy_file(fakedns, tmp_path, extra="local = 1 -- BOOM\n")
    line = line_of(pol, "-- BOOM")
    r = H.run_kumod(["--policy", str(pol), "--validate", *H.user_args()])
    assert r.returncode != 0
    assert f"policy.lua:{line}" in output(r), output(r)


def test_unknown_listener_parameter_is_an_error_naming_it(fakedns, tmp_path):
    pol, _ = policy_file(fakedns, tmp_path, listener={"bogus": 1})
    r = H.run_kumod(["--policy", str(pol), "--validate", *H.user_args()])
    assert r.returncode != 0, output(r)
    assert "bogus" in output(r)
    assert "policy.lua:" in output(r)


def test_unknown_kumo_function_is_an_error_naming_it(fakedns, tmp_path):
    pol, _ = policy_file(fakedns, tmp_path, init_extra="  kumo.no_such_function_xyz {}\n")
    r = H.run_kumod(["--policy", str(pol), "--validate", *H.user_args()])
    assert r.returncode != 0, output(r)
    assert "no_such_function_xyz" in output(r)


def test_missing_policy_file_is_an_error(tmp_path):
    r = H.run_kumod(["--policy", str(tmp_path / "nope.lua"), "--validate", *H.user_args()])
    assert r.returncode != 0
    assert "nope.lua" in output(r)


def test_examples_exist():
    assert EXAMPLES, "policy/examples/*.lua: no example policies"


@pytest.mark.parametrize("example", EXAMPLES + [H.REPO_ROOT / "policy" / "default.lua"],
                         ids=lambda p: p.name)
def test_shipped_policy_passes_validate(example, tmp_path):
    if not example.exists():
        pytest.fail(f"{example} is missing")
    r = H.run_kumod(["--policy", str(example), "--validate", *H.user_args()], cwd=tmp_path)
    assert r.returncode == 0, output(r)


def test_default_policy_writes_only_under_var_run(fakedns, tmp_root):
    """policy/default.lua started from a checkout's top folder (as a user
    would run build/bin/kumod) puts its spools, logs and maildir under
    var/run/ of that checkout, and nothing anywhere else."""
    smtp_port, http_port = H.free_port(), H.free_port()
    text = (H.REPO_ROOT / "policy" / "default.lua").read_text()
    assert "'127.0.0.1:2025'" in text and "'127.0.0.1:8000'" in text
    text = (text.replace("'127.0.0.1:2025'", f"'127.0.0.1:{smtp_port}'")
                .replace("'127.0.0.1:8000'", f"'127.0.0.1:{http_port}'")
                .replace("kumo.on('init', function()",
                         "kumo.on('init', function()\n  kumo.dns.configure_resolver "
                         f"{{ name_servers = {{ '127.0.0.1:{fakedns.port}' }} }}", 1))
    k = H.Kumod(fakedns.port, policy_text=text, tmp_root=tmp_root)
    try:
        checkout = k.dir
        (checkout / "policy.lua").unlink()
        (checkout / "policy").mkdir()
        k.policy_path = checkout / "policy" / "default.lua"
        k.policy_path.write_text(text)
        k.port = smtp_port
        k.start()
        with socket.create_connection(("127.0.0.1", smtp_port), timeout=20):
            pass
        import smtplib
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=20) as s:
            H.send_message(s, rcpts=("someone@example.test",))
        new = checkout / "var" / "run" / "maildir" / "new"
        H.wait_for(lambda: new.is_dir() and any(new.iterdir()), 30, what="a maildir delivery")
        assert k.stop() == 0, k.log_tail()
        left = sorted(p.name for p in checkout.iterdir() if not p.name.startswith("kumod."))
        assert left == ["policy", "var"], left
        run = sorted(p.name for p in (checkout / "var" / "run").iterdir())
        assert {"spool", "logs", "maildir"} <= set(run), run
    finally:
        k.cleanup()


def test_validate_runs_validate_config_handlers(fakedns, tmp_path):
    """--validate runs validate_config after init (KumoMTA's order); a
    handler calling kumo.validation_failed() fails the run, naming it."""
    marker = tmp_path / "validate_config_ran"
    ok, _ = policy_file(fakedns, tmp_path, extra=(
        "kumo.on('validate_config', function()\n"
        f"  local f = io.open({H.lua_str(str(marker))}, 'w'); f:write('yes'); f:close()\n"
        "end)\n"))
    r = H.run_kumod(["--policy", str(ok), "--validate", *H.user_args()])
    assert r.returncode == 0, output(r)
    assert marker.read_text() == "yes"

    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    bad, _ = policy_file(fakedns, bad_dir, extra=(
        "kumo.on('validate_config', function()\n"
        "  kumo.validation_failed()\n"
        "end)\n"))
    r = H.run_kumod(["--policy", str(bad), "--validate", *H.user_args()])
    assert r.returncode != 0, output(r)
    assert "validation" in output(r).lower(), output(r)
