"""The ESMTP conversation (KUMOMTA-API.md §2.3): greeting, EHLO, accepted
messages and their ids, Reception records, RSET/NOOP/QUIT, unknown
commands, pipelining."""
import re

import kumod_harness as H

EXPECTED_EXTENSIONS = {"pipelining", "enhancedstatuscodes", "8bitmime", "smtputf8", "starttls"}


# -- Tests ---------------------------------------------------------------------

def test_greeting_is_hostname_and_banner(kumod):
    s = kumod.smtp()
    assert s.greeting == (220, b"mx.example.test KumoMTA")
    s.close()


def test_ehlo_lists_kumomta_extensions_before_tls(kumod):
    s = kumod.smtp()
    code, text = s.ehlo("client.test")
    assert code == 250
    assert text.decode().splitlines()[0] == "mx.example.test Aloha client.test"
    assert EXPECTED_EXTENSIONS <= set(s.esmtp_features), s.esmtp_features
    assert "auth" not in s.esmtp_features, "AUTH must only be offered after STARTTLS"
    assert "size" not in s.esmtp_features and "chunking" not in s.esmtp_features
    s.close()


def test_helo_reply(kumod):
    s = kumod.smtp()
    assert s.helo("client.test") == (250, b"Hello client.test!")
    s.close()


def test_mail_and_rcpt_replies_echo_the_address(kumod):
    s = kumod.smtp(ehlo="client.test")
    assert s.mail("alice@client.test") == (250, b"OK <alice@client.test>")
    assert s.rcpt("bob@dest.test") == (250, b"OK <bob@dest.test>")
    code, text = s.docmd("DATA")
    assert (code, text) == (354, b"Send body; end with CRLF.CRLF")
    s.close()


def test_message_gets_250_ok_with_one_32_hex_id(kumod):
    s = kumod.smtp(ehlo="client.test")
    code, text = H.send_message(s)
    assert code == 250, text
    ids = H.parse_ids(text)
    assert len(ids) == 1
    s.quit()


def test_two_recipients_get_two_distinct_ids(kumod):
    s = kumod.smtp(ehlo="client.test")
    code, text = H.send_message(s, rcpts=("bob@dest.test", "carol@dest.test"))
    assert code == 250, text
    ids = H.parse_ids(text)
    assert len(ids) == 2 and ids[0] != ids[1]
    # and a second transaction in the same session gets new ids
    code, text2 = H.send_message(s)
    assert code == 250 and not set(H.parse_ids(text2)) & set(ids)
    s.quit()


def test_swaks_plain_submission_is_accepted(kumod):
    r = H.swaks(kumod.port, "--from", "swaks@client.test", "--to", "bob@dest.test")
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"<-\s+250 OK ids=([0-9a-f]{32})\s*$", r.stdout, re.M)
    assert m, r.stdout


def test_reception_record_matches_the_accepted_message(kumod):
    s = kumod.smtp(ehlo="client.test")
    code, text = H.send_message(s, sender="alice@client.test", rcpts=("bob@dest.test",))
    assert code == 250, text
    (mid,) = H.parse_ids(text)
    s.quit()
    assert kumod.stop() == 0, kumod.log_tail()
    recs = [r for r in kumod.records("Reception") if r.get("id") == mid]
    assert len(recs) == 1, f"Reception for {mid}: {kumod.records()}"
    rec = recs[0]
    assert rec["sender"] == "alice@client.test"
    assert rec["recipient"] == "bob@dest.test"
    assert rec["queue"] == "dest.test"
    assert rec["site"] == ""
    assert isinstance(rec["size"], int) and rec["size"] > 0
    assert rec["peer_address"]["name"] == "client.test"
    assert rec["peer_address"]["addr"].startswith("127.0.0.1")
    assert isinstance(rec["timestamp"], int)
    assert rec.get("reception_protocol") == "ESMTP"


def test_two_recipients_give_two_reception_records(kumod):
    s = kumod.smtp(ehlo="client.test")
    code, text = H.send_message(s, rcpts=("bob@dest.test", "carol@other.test"))
    ids = H.parse_ids(text)
    s.quit()
    assert kumod.stop() == 0
    by_id = {r["id"]: r for r in kumod.records("Reception")}
    assert {by_id[i]["recipient"] for i in ids} == {"bob@dest.test", "carol@other.test"}


def test_rset_noop_quit_texts(kumod):
    s = kumod.smtp(ehlo="client.test")
    assert s.mail("alice@client.test")[0] == 250
    assert s.rset() == (250, b"Reset state")
    # RSET really reset: RCPT now needs a new MAIL
    code, _ = s.rcpt("bob@dest.test")
    assert code == 503
    assert s.noop() == (250, b"the goggles do nothing")
    assert s.quit() == (221, b"So long, and thanks for all the fish!")


def test_unimplemented_commands_get_502(kumod):
    s = kumod.raw()
    assert s.reply().code == 220
    for cmd in ("FOOBAR", "VRFY bob", "EXPN list", "HELP"):
        r = s.cmd(cmd)
        assert (r.code, r.text) == (502, "5.5.1 Command unimplemented"), f"{cmd}: {r}"
    assert s.cmd("NOOP").code == 250
    s.close()


def test_mail_twice_and_out_of_order_commands_get_503(kumod):
    s = kumod.raw()
    s.reply()
    s.cmd("EHLO client.test")
    r = s.cmd("RCPT TO:<bob@dest.test>")
    assert r.code == 503 and r.text.startswith("5.5.0"), r
    r = s.cmd("DATA")
    assert r.code == 503, r
    assert s.cmd("MAIL FROM:<a@client.test>").code == 250
    r = s.cmd("MAIL FROM:<a@client.test>")
    assert r.code == 503 and r.text.startswith("5.5.0"), r
    s.close()


def test_pipelined_transactions_get_every_reply_in_order(kumod):
    s = kumod.raw()
    assert s.reply().code == 220
    ehlo = s.cmd("EHLO client.test")
    assert "PIPELINING" in ehlo.lines
    s.send("MAIL FROM:<a@client.test>\r\nRCPT TO:<b@dest.test>\r\n"
           "RCPT TO:<c@dest.test>\r\nDATA\r\n")
    replies = [s.reply() for _ in range(4)]
    assert [r.code for r in replies] == [250, 250, 250, 354], replies
    assert replies[1].text == "OK <b@dest.test>" and replies[2].text == "OK <c@dest.test>"
    # end of the first message and the whole second envelope in one write
    s.send("Subject: one\r\n\r\nfirst\r\n.\r\n"
           "MAIL FROM:<d@client.test>\r\nRCPT TO:<e@dest.test>\r\nDATA\r\n")
    replies = [s.reply() for _ in range(4)]
    assert [r.code for r in replies] == [250, 250, 250, 354], replies
    first_ids = H.parse_ids(replies[0].text)
    assert len(first_ids) == 2
    assert replies[1].text == "OK <d@client.test>"
    s.send("Subject: two\r\n\r\nsecond\r\n.\r\nRSET\r\nNOOP\r\nQUIT\r\n")
    replies = [s.reply() for _ in range(4)]
    assert [r.code for r in replies] == [250, 250, 250, 221], replies
    second_ids = H.parse_ids(replies[0].text)
    assert len(second_ids) == 1 and second_ids[0] not in first_ids
    assert s.closed()
