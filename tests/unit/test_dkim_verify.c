/* test_dkim_verify.c - the DKIM verification core: the RFC 8463 example,
 * a signature made by dkimpy, kumod's own signatures (RSA and Ed25519,
 * every canonicalization), tampering, over-signing, and the key-record
 * and signature errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "base/buf.h"
#include "base/km.h"
#include "dkim.h"
#include "dkim_verify.h"

/* Fixture */

/* RFC 8463 A.3 (relaxed/relaxed) over RFC 6376's example message. */
static const char test_rfc8463[] =
    "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
    " d=football.example.com; i=@football.example.com;\r\n"
    " q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
    " subject : date : message-id : from : subject : date;\r\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    " b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n"
    " Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n"
    "From: Joe SixPack <joe@football.example.com>\r\n"
    "To: Suzie Q <suzie@shopping.example.net>\r\n"
    "Subject: Is dinner ready?\r\n"
    "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
    "\r\n"
    "Hi.\r\n"
    "\r\n"
    "We lost the game.  Are you hungry yet?\r\n"
    "\r\n"
    "Joe.\r\n";

static const char test_rfc8463_key[] =
    "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

/* Signed by dkimpy 1.1.4 (relaxed/simple, RSA-1024), an independent
 * implementation, with the key below. */
static const char test_dkimpy[] =
    "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/simple; d=example.test;\r\n"
    " i=@example.test; q=dns/txt; s=py; t=1796702727; h=from : to : subject\r\n"
    " : date; bh=1LZrXsM8o5rFKAmhUvt0ItD3FS53HvbFtD82zq2TSCA=;\r\n"
    " b=h6WgaJDUv4iNKICcfT1NscRjp89u10wnKYTTATpEiECF2PUkzBBX/xI76Q58ku6R1/"
    "EaA\r\n"
    " 2Ob588W7WPyZ2HZcHEzLf1dJXsVUBiVGizAF8PWSTHudFkcSgp03JhqMqlR+"
    "RxZ0ZOVG9Hm\r\n"
    " rOLaLPorDBMQMbJN9jGQK1/hSsv5Gjo=\r\n"
    "From: Alice <alice@example.test>\r\n"
    "To: bob@dest.test\r\n"
    "Subject: made by  dkimpy\r\n"
    "Date: Tue, 08 Dec 2026 04:00:00 +0000\r\n"
    "\r\n"
    "Hello,  world \r\n"
    "\r\n"
    "\r\n";

static const char test_dkimpy_key[] =
    "v=DKIM1; k=rsa; "
    "p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCrMVytLtU9Z5qO+zTuG1HAdV022JNgsv+/"
    "ql9+4vAiu3b8Yt9WRMsyUdM4o02R0R5t1v1i12IqRjximcKtJwhsazPOoyAFmWWoMo0VAsiIA"
    "UPhz4wJlSQxm3Ine11e3x1srbWcZswPQIZKF60/pWdsaS1mUWqjqnjzP4IfjMZMrQIDAQAB";

static const char test_msg[] =
    "From: News <news@example.test>\r\n"
    "To: bob@dest.test\r\n"
    "Subject: Weekly  news\r\n"
    "List-Unsubscribe: <https://example.test/u/1>\r\n"
    "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    "\r\n"
    "Hello  there \r\n"
    ".dot\r\n"
    "\r\n\r\n";

/* Helpers */

static void
test_check(const char *msg, size_t idx, const char *rec, enum dkim_verdict v,
           const char *reason)
{
    struct dkim_verify_result r;

    dkim_verify_one(msg, strlen(msg), idx, rec, strlen(rec), 1700000000, &r);
    if (r.verdict != v) {
        fail_msg("verdict %d, want %d (%s)", r.verdict, v, r.reason);
    }
    if (reason != NULL) {
        assert_non_null(strstr(r.reason, reason));
    }
}

static char *
test_replace(const char *s, const char *from, const char *to)
{
    const char *p = strstr(s, from);

    assert_non_null(p);
    return km_asprintf("%.*s%s%s", (int)(p - s), s, to, p + strlen(from));
}

/* A key of the given kind, its DNS record, and a signed copy of test_msg. */
struct test_signed {
    char *data;
    char *rec;
};

static void
test_sign(bool ed25519, const char *hc, const char *bc, bool over_sign,
          struct test_signed *out)
{
    EVP_PKEY *pk =
        ed25519 ? EVP_PKEY_Q_keygen(NULL, NULL, "ED25519") : EVP_RSA_gen(2048);
    const char *tmp = getenv("KUMO_TEST_TMP");
    char path[300];
    int fd;

    snprintf(path, sizeof(path), "%s/dkim-verify-XXXXXX",
             tmp != NULL ? tmp : "/tmp");
    fd = mkstemp(path);
    FILE *f = fdopen(fd, "wb");
    unsigned char *der = NULL, raw[32];
    size_t rawlen = sizeof(raw);
    char b64[1024], err[256];
    int n;
    struct dkim_ctx *ctx;
    struct dkim_signer *s;
    struct buf sig = BUF_INIT;
    json_t *p;

    assert_non_null(pk);
    assert_int_equal(PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    if (ed25519) {
        assert_int_equal(EVP_PKEY_get_raw_public_key(pk, raw, &rawlen), 1);
        n = EVP_EncodeBlock((unsigned char *)b64, raw, (int)rawlen);
    } else {
        int len = i2d_PUBKEY(pk, &der);
        n = EVP_EncodeBlock((unsigned char *)b64, der, len);
        OPENSSL_free(der);
    }
    b64[n] = '\0';
    out->rec =
        km_asprintf("v=DKIM1; k=%s; p=%s", ed25519 ? "ed25519" : "rsa", b64);
    EVP_PKEY_free(pk);
    p = json_pack(
        "{s:s,s:s,s:s,s:[s,s,s,s,s],s:{s:s},s:s,s:s,s:b,s:i}", "algorithm",
        ed25519 ? "ed25519-sha256" : "rsa-sha256", "domain", "example.test",
        "selector", "k", "headers", "From", "To", "Subject", "List-Unsubscribe",
        "List-Unsubscribe-Post", "key", "file", path, "header_canonicalization",
        hc, "body_canonicalization", bc, "over_sign", over_sign, "ttl", 0);
    assert_int_equal(dkim_ctx_new(NULL, NULL, &ctx), 0);
    assert_int_equal(dkim_signer_get(ctx, p, &s, err, sizeof(err)), 0);
    json_decref(p);
    unlink(path);
    assert_int_equal(dkim_sign_data(&s, 1, test_msg, strlen(test_msg),
                                    1700000000, &sig, err, sizeof(err)),
                     0);
    buf_append_str(&sig, test_msg);
    out->data = km_strdup(buf_cstr(&sig));
    buf_fini(&sig);
    dkim_signer_unref(s);
    dkim_ctx_free(ctx);
}

static void
test_signed_fini(struct test_signed *t)
{
    free(t->data);
    free(t->rec);
}

/* Tests */

static void
rfc8463_example_verifies_and_tampering_fails(void **state)
{
    char *bad;

    (void)state;
    assert_int_equal(dkim_verify_count(test_rfc8463, strlen(test_rfc8463)), 1);
    test_check(test_rfc8463, 0, test_rfc8463_key, DKIM_PASS, NULL);
    bad = test_replace(test_rfc8463, "hungry", "Hungry");
    test_check(bad, 0, test_rfc8463_key, DKIM_FAIL, "body hash mismatch");
    free(bad);
    bad = test_replace(test_rfc8463, "Is dinner", "Is lunch");
    test_check(bad, 0, test_rfc8463_key, DKIM_FAIL, "signature mismatch");
    free(bad);
    /* Another key. */
    test_check(
        test_rfc8463, 0,
        "v=DKIM1; k=ed25519; p=yi50DjK5O9pqbFpNHklsv9lqaS0ArSYu02qp1S0DW1Y=",
        DKIM_FAIL, "signature mismatch");
}

static void
dkimpy_signature_verifies(void **state)
{
    struct dkim_verify_result r;
    char *bad;

    (void)state;
    dkim_verify_names(test_dkimpy, strlen(test_dkimpy), 0, &r);
    assert_string_equal(r.d, "example.test");
    assert_string_equal(r.s, "py");
    test_check(test_dkimpy, 0, test_dkimpy_key, DKIM_PASS, NULL);
    /* simple body: one more trailing space in a line breaks it. */
    bad = test_replace(test_dkimpy, "world \r\n", "world  \r\n");
    test_check(bad, 0, test_dkimpy_key, DKIM_FAIL, "body hash mismatch");
    free(bad);
    /* relaxed headers: white space changes in Subject do not. */
    bad = test_replace(test_dkimpy, "made by  dkimpy", "made   by dkimpy");
    test_check(bad, 0, test_dkimpy_key, DKIM_PASS, NULL);
    free(bad);
}

static void
kumod_signatures_verify_for_every_canonicalization(void **state)
{
    static const char *const canon[] = {"simple", "relaxed"};

    (void)state;
    for (int ed = 0; ed < 2; ed++) {
        for (int h = 0; h < 2; h++) {
            for (int b = 0; b < 2; b++) {
                struct test_signed t;
                test_sign(ed, canon[h], canon[b], false, &t);
                test_check(t.data, 0, t.rec, DKIM_PASS, NULL);
                char *bad = test_replace(t.data, "Weekly", "Daily");
                test_check(bad, 0, t.rec, DKIM_FAIL, "signature mismatch");
                free(bad);
                test_signed_fini(&t);
            }
        }
    }
}

static void
an_added_header_breaks_only_an_over_signed_signature(void **state)
{
    struct test_signed plain, over;
    char *forged;

    (void)state;
    test_sign(true, "relaxed", "relaxed", false, &plain);
    test_sign(true, "relaxed", "relaxed", true, &over);
    forged =
        test_replace(plain.data, "From: News", "Subject: FREE\r\nFrom: News");
    test_check(forged, 0, plain.rec, DKIM_PASS, NULL);
    free(forged);
    forged =
        test_replace(over.data, "From: News", "Subject: FREE\r\nFrom: News");
    test_check(forged, 0, over.rec, DKIM_FAIL, "signature mismatch");
    free(forged);
    forged = test_replace(over.data, "List-Unsubscribe-Post: List",
                          "List-Unsubscribe-Post: x\r\nList-Unsubscribe-Post: "
                          "List");
    test_check(forged, 0, over.rec, DKIM_FAIL, "signature mismatch");
    free(forged);
    test_signed_fini(&plain);
    test_signed_fini(&over);
}

static void
bad_records_and_signatures_are_errors(void **state)
{
    char *bad;

    (void)state;
    test_check(test_rfc8463, 0, "v=DKIM1; k=ed25519; p=", DKIM_FAIL, "revoked");
    test_check(test_rfc8463, 0, "v=DKIM1; k=rsa; p=AAAA", DKIM_PERMERROR,
               "k= does not match");
    test_check(test_rfc8463, 0, "v=DKIM2; k=ed25519; p=AAAA", DKIM_PERMERROR,
               "DKIM1");
    test_check(test_rfc8463, 0, "v=DKIM1; k=ed25519", DKIM_PERMERROR, "no p=");
    test_check(test_rfc8463, 1, test_rfc8463_key, DKIM_PERMERROR,
               "no such signature");
    bad = test_replace(test_rfc8463, "a=ed25519-sha256", "a=rsa-sha1");
    test_check(bad, 0, test_rfc8463_key, DKIM_PERMERROR, "rsa-sha1");
    free(bad);
    bad = test_replace(test_rfc8463, "t=1528637909;",
                       "t=1528637909; x=1528637999;");
    test_check(bad, 0, test_rfc8463_key, DKIM_FAIL, "expired");
    free(bad);
    bad = test_replace(test_rfc8463,
                       "h=from : to :\r\n subject : date : message-id : from : "
                       "subject : date;",
                       "h=to : subject;");
    test_check(bad, 0, test_rfc8463_key, DKIM_PERMERROR, "From");
    free(bad);
    bad = test_replace(test_rfc8463, "i=@football.example.com",
                       "i=@elsewhere.example");
    test_check(bad, 0, test_rfc8463_key, DKIM_PERMERROR, "i=");
    free(bad);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rfc8463_example_verifies_and_tampering_fails),
        cmocka_unit_test(dkimpy_signature_verifies),
        cmocka_unit_test(kumod_signatures_verify_for_every_canonicalization),
        cmocka_unit_test(an_added_header_breaks_only_an_over_signed_signature),
        cmocka_unit_test(bad_records_and_signatures_are_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
