"""test_disk_guard.py - the free-space soft mark of the data spool
(define_spool min_free_space; CLUSTER.md §4.5): below it, new mail is
refused with 452 4.3.1 at RCPT TO and nothing is spooled; a bad mark is a
policy error that names the parameter."""
import http.client
import json

import kumod_harness as H


DATA_SPOOL = "path = TEST_DIR .. '/data', kind = 'RocksDB' }"


def spool_template(mark):
    assert DATA_SPOOL in H.POLICY_TEMPLATE
    return H.POLICY_TEMPLATE.replace(
        DATA_SPOOL, "path = TEST_DIR .. '/data', kind = 'RocksDB', "
        f"min_free_space = '{mark}' }}", 1)


def with_mark(make_kumod, mark, init_extra=""):
    k = make_kumod(start=False)
    k.policy_path.write_text(H.render_policy(k.dir, k.fakedns_port, k.listener,
                                             init_extra=init_extra,
                                             template=spool_template(mark)))
    return k.start()


def test_below_the_soft_mark_rcpt_gets_452(make_kumod):
    # no test machine has 99.99 % of its disk free: always below the mark
    k = with_mark(make_kumod, "99.99%")
    s = k.smtp(ehlo="client.test")
    code, _ = s.mail("alice@client.test")
    assert code == 250
    code, text = s.rcpt("bob@dest.test")
    assert code == 452, text
    assert b"4.3.1" in text
    s.quit()
    assert "below the soft mark" in k.log_text()


def test_above_the_soft_mark_mail_is_accepted(make_kumod):
    k = with_mark(make_kumod, "1KB")
    s = k.smtp(ehlo="client.test")
    code, text = H.send_message(s)
    assert code == 250, text
    s.quit()


def test_bad_mark_is_a_policy_error(fakedns, tmp_path):
    pol = tmp_path / "policy.lua"
    pol.write_text(H.render_policy(tmp_path, fakedns.port,
                                   H.default_listener(H.free_port()),
                                   template=spool_template("lots")))
    r = H.run_kumod(["--policy", str(pol), "--validate", *H.user_args()])
    assert r.returncode != 0
    assert "min_free_space" in (r.stdout or "") + (r.stderr or "")


def test_below_the_soft_mark_http_injection_gets_503(make_kumod):
    port = H.free_port()
    k = with_mark(make_kumod, "99.99%",
                  init_extra=f"  kumo.start_http_listener {{ listen = '127.0.0.1:{port}' }}")
    body = json.dumps({"envelope_sender": "alice@client.test",
                       "recipients": [{"email": "bob@dest.test"}],
                       "content": "Subject: hi\r\n\r\nhello\r\n"})

    def post():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            c.request("POST", "/api/inject/v1", body,
                      {"Content-Type": "application/json"})
            r = c.getresponse()
            return r.status, r.read().decode()
        except OSError:
            return None, ""
        finally:
            c.close()
    status, text = H.wait_for(lambda: (lambda r: r if r[0] else None)(post()),
                              timeout=20, what="an HTTP answer")
    assert status == 503, text
    assert "min_free_space" in text
