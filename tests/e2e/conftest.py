"""conftest.py - fixtures of the kumod end-to-end suite.

fakedns      (session) a FakeDNS on loopback; tests add records, cleared per test
tmp_root     (session) parent of every temp dir; removed at the end unless
             KUMOD_KEEP=1 or a test failed
make_kumod   factory: make_kumod(listener={...}, extra=LUA, init_extra=LUA,
             start=True) -> a started Kumod; every one is stopped at teardown,
             and teardown fails if a sanitizer reported anything
kumod        a started kumod on the default policy
tls_cert     (session) (cert_path, key_path): self-signed for mx.example.test
make_sink    factory: make_sink(**SmtpSink kwargs) -> a started sinks.SmtpSink,
             stopped at teardown
sink         a started SmtpSink on 127.0.0.1:<free port>
sink_cert    (session) (cert_path, key_path): self-signed for sink.test
"""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fakedns import FakeDNS  # noqa: E402
from kumod_harness import Kumod  # noqa: E402
from sinks import SmtpSink, make_cert  # noqa: E402

_failed = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    if rep.failed:
        _failed.append(item.nodeid)


@pytest.fixture(scope="session")
def tmp_root():
    base = os.environ.get("KUMO_TEST_TMP")
    if base:
        os.makedirs(base, exist_ok=True)
    d = tempfile.mkdtemp(prefix="kumod-e2e-", dir=base)
    yield Path(d)
    if os.environ.get("KUMOD_KEEP") == "1" or _failed:
        print(f"\nkumod e2e: kept {d}", file=sys.stderr)
    else:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def _fakedns_server():
    dns = FakeDNS().start()
    yield dns
    dns.stop()


@pytest.fixture
def fakedns(_fakedns_server):
    _fakedns_server.clear()
    yield _fakedns_server
    _fakedns_server.clear()


@pytest.fixture
def make_kumod(request, fakedns, tmp_root):
    started = []

    def factory(listener=None, extra="", init_extra="", start=True, **kw):
        k = Kumod(fakedns.port, listener=listener, extra=extra, init_extra=init_extra,
                  tmp_root=tmp_root, **kw)
        started.append(k)
        if start:
            k.start()
        return k

    yield factory

    problems = []
    for k in started:
        k.cleanup()
        reports = k.sanitizer_reports()
        if reports:
            problems.append(f"{k.dir}: sanitizer reports:\n" + "\n".join(reports[:20]))
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for k in started:
            print(f"\n----- kumod log {k.dir} -----\n{k.log_tail(60, run=None)}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def kumod(make_kumod):
    return make_kumod()


@pytest.fixture(scope="session")
def tls_cert(tmp_root):
    d = tmp_root / "tls"
    d.mkdir()
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=mx.example.test",
                    "-addext", "subjectAltName=DNS:mx.example.test",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture
def make_sink():
    started = []

    def factory(**kw):
        s = SmtpSink(**kw).start()
        started.append(s)
        return s

    yield factory
    for s in started:
        s.stop()


@pytest.fixture
def sink(make_sink):
    return make_sink()


@pytest.fixture(scope="session")
def sink_cert(tmp_root):
    return make_cert(tmp_root / "sink-tls", "sink.test")
