"""The SMTP client's choice of host and its TLS (KUMOMTA-API.md §2.7, §3;
scenarios 29, 30): the next MX on a refused connection and on a 421
greeting, STARTTLS with OpportunisticInsecure, Required TLS against a sink
without STARTTLS."""
import kumod_harness as H
from sinks import free_port_on


# -- Helpers -------------------------------------------------------------------

def two_mx(fakedns, domain, first_ip, second_ip):
    """domain: MX 10 mx-a.<domain> (first_ip), MX 20 mx-b.<domain>
    (second_ip); returns the two host names."""
    a, b = f"mx-a.{domain}", f"mx-b.{domain}"
    fakedns.add_mx(domain, a, 10)
    fakedns.add_mx(domain, b, 20)
    fakedns.add_a(a, first_ip)
    fakedns.add_a(b, second_ip)
    return a, b


# -- Tests ---------------------------------------------------------------------

def test_connection_refused_on_first_mx_delivers_via_the_second(make_kumod, fakedns,
                                                                 make_sink):
    port = free_port_on("127.0.0.1", "127.0.0.3")  # nothing listens on .3
    sink = make_sink(host="127.0.0.1", port=port)
    _, second = two_mx(fakedns, "nextmx.test", "127.0.0.3", "127.0.0.1")
    k = make_kumod(**H.delivery_policy(path=H.sink_path(port)))
    (mid,) = k.send(rcpts=("ida@nextmx.test",))
    (t,) = sink.wait_transactions(1)
    assert t.rcpt_tos == ["ida@nextmx.test"]
    dl = k.wait_for_records("Delivery", id=mid)[0]
    assert dl["peer_address"]["name"] == second, dl["peer_address"]
    assert dl["peer_address"]["addr"].startswith("127.0.0.1"), dl["peer_address"]
    assert dl["num_attempts"] == 0, "the next MX is part of the same attempt"
    assert not k.records_for(mid, "TransientFailure")


def test_421_greeting_on_first_mx_delivers_via_the_second(make_kumod, fakedns, make_sink):
    port = free_port_on("127.0.0.1", "127.0.0.2")
    busy = make_sink(host="127.0.0.2", port=port, banner_421=True, hostname="busy.test")
    sink = make_sink(host="127.0.0.1", port=port)
    _, second = two_mx(fakedns, "busymx.test", "127.0.0.2", "127.0.0.1")
    k = make_kumod(**H.delivery_policy(path=H.sink_path(port)))
    (mid,) = k.send(rcpts=("jack@busymx.test",))
    sink.wait_transactions(1)
    dl = k.wait_for_records("Delivery", id=mid)[0]
    assert dl["peer_address"]["name"] == second, dl["peer_address"]
    assert busy.total_connections >= 1, "the first MX was never tried"
    assert busy.transactions() == []


def test_opportunistic_insecure_tls_uses_starttls(make_kumod, fakedns, make_sink, sink_cert):
    sink = make_sink(tls=sink_cert)
    fakedns.add_mx("tls.test", "mx1.tls.test")
    fakedns.add_a("mx1.tls.test", "127.0.0.1")
    k = make_kumod(**H.delivery_policy(
        path=H.sink_path(sink.port, enable_tls="OpportunisticInsecure")))
    (mid,) = k.send(rcpts=("kim@tls.test",))
    (t,) = sink.wait_transactions(1)
    assert t.tls, "the message was sent in clear text although the sink offers STARTTLS"
    dl = k.wait_for_records("Delivery", id=mid)[0]
    assert dl["response"]["code"] == 250


def test_disabled_tls_sends_in_clear_text_even_if_offered(make_kumod, fakedns, make_sink,
                                                          sink_cert):
    sink = make_sink(tls=sink_cert)
    fakedns.add_mx("notls.test", "mx1.notls.test")
    fakedns.add_a("mx1.notls.test", "127.0.0.1")
    k = make_kumod(**H.delivery_policy(path=H.sink_path(sink.port, enable_tls="Disabled")))
    (mid,) = k.send(rcpts=("lee@notls.test",))
    (t,) = sink.wait_transactions(1)
    assert not t.tls
    k.wait_for_records("Delivery", id=mid)


def test_required_tls_to_a_sink_without_starttls_is_a_transient_failure(make_kumod, fakedns,
                                                                        sink):
    fakedns.add_mx("reqtls.test", "mx1.reqtls.test")
    fakedns.add_a("mx1.reqtls.test", "127.0.0.1")
    k = make_kumod(**H.delivery_policy(
        queue={"retry_interval": "1h", "max_retry_interval": "1h"},
        path=H.sink_path(sink.port, enable_tls="Required")))
    (mid,) = k.send(rcpts=("mia@reqtls.test",))
    tf = k.wait_for_records("TransientFailure", id=mid)[0]
    assert 400 <= tf["response"]["code"] < 500, tf["response"]
    assert sink.transactions() == [], "mail was sent without TLS"
    assert not k.records_for(mid, "Delivery") and not k.records_for(mid, "Bounce")
