/* test_dkim.c - DKIM signing: RFC 6376 canonicalization vectors, header
 * selection and over-signing, the RFC 8463 Ed25519 example reproduced
 * bit for bit, key errors, the signer cache, and signing a message on the
 * pool. Signatures are checked independently by dkimpy in
 * tests/e2e/test_dkim.py. */
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

#include "base/buf.h"
#include "base/km.h"
#include "dkim.h"
#include "dkim_canon.h"
#include "message.h"
#include "metrics.h"

/* Fixture */

/* RFC 6376 Appendix A's message, as dkimpy ships it (rfc6376.msg). */
static const char test_rfc_msg[] =
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

/* RFC 8463 A.2: the Ed25519 secret key (RFC 8032 7.1 test 1's seed). */
static const unsigned char test_ed_seed[32] = {
    0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a,
    0xf4, 0x92, 0xec, 0x2c, 0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32,
    0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
};

/* RFC 8410 10.3: an Ed25519 PKCS#8 v2 key with its public key. */
static const char test_v2_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MHICAQEwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n"
    "oB8wHQYKKoZIhvcNAQkJFDEPDA1DdXJkbGUgQ2hhaXJzgSEAGb9ECWmEzf6FQbrB\n"
    "Z9w7lshQhqowtrbLDFw4rXAxZuE=\n"
    "-----END PRIVATE KEY-----\n";

static const char *const test_rfc_names[] = {
    "from", "to", "subject", "date", "message-id", "from", "subject", "date",
};

struct test_fx {
    char dir[256];
    char rsa_pem[300];
    char ed_pem[300];
    struct metrics *metrics;
    struct dkim_ctx *ctx;
    uv_loop_t loop;
};

static void
test_write(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void
test_write_pem(const char *path, EVP_PKEY *pk)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
}

/* PKCS#8 v1 DER of an Ed25519 seed (RFC 8410 7). */
static void
test_ed_der(const unsigned char seed[32], unsigned char out[48])
{
    static const unsigned char prefix[16] = {
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06,
        0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    };
    memcpy(out, prefix, 16);
    memcpy(out + 16, seed, 32);
}

static int
setup(void **state)
{
    struct test_fx *fx = calloc(1, sizeof(*fx));
    const char *tmp = getenv("KUMO_TEST_TMP");
    EVP_PKEY *rsa, *ed;

    snprintf(fx->dir, sizeof(fx->dir), "%s/dkim-XXXXXX", tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->rsa_pem, sizeof(fx->rsa_pem), "%s/rsa.pem", fx->dir);
    snprintf(fx->ed_pem, sizeof(fx->ed_pem), "%s/ed.pem", fx->dir);
    rsa = EVP_RSA_gen(2048);
    assert_non_null(rsa);
    test_write_pem(fx->rsa_pem, rsa);
    EVP_PKEY_free(rsa);
    ed = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, test_ed_seed, 32);
    assert_non_null(ed);
    test_write_pem(fx->ed_pem, ed);
    EVP_PKEY_free(ed);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    assert_int_equal(metrics_new(&fx->metrics), 0);
    assert_int_equal(dkim_ctx_new(&fx->loop, fx->metrics, &fx->ctx), 0);
    *state = fx;
    return 0;
}

static int
teardown(void **state)
{
    struct test_fx *fx = *state;
    char cmd[300];

    dkim_ctx_free(fx->ctx);
    metrics_free(fx->metrics);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
    assert_int_equal(system(cmd), 0);
    free(fx);
    return 0;
}

/* Helpers */

static void
test_on_emit(void *arg, const char *p, size_t n)
{
    buf_append(arg, p, n);
}

static void
test_body(enum dkim_canon c, const char *in, const char *want)
{
    struct buf out = BUF_INIT;

    dkim_canon_body(c, in, strlen(in), test_on_emit, &out);
    assert_int_equal(out.len, strlen(want));
    assert_memory_equal(out.data != NULL ? out.data : "", want, strlen(want));
    buf_fini(&out);
}

static void
test_header(enum dkim_canon c, const char *in, const char *want)
{
    struct buf out = BUF_INIT;

    dkim_canon_header(c, in, strlen(in), true, &out);
    assert_string_equal(buf_cstr(&out), want);
    buf_fini(&out);
}

/* Params for a signer, as policy_dkim.c would make them. */
static json_t *
test_params(const char *alg, const char *key_file, bool over_sign)
{
    return json_pack("{s:s,s:s,s:s,s:[s,s,s],s:{s:s},s:s,s:s,s:b,s:b,s:i,s:i}",
                     "algorithm", alg, "domain", "example.test", "selector",
                     "s1", "headers", "From", "To", "Subject", "key", "file",
                     key_file, "header_canonicalization", "relaxed",
                     "body_canonicalization", "relaxed", "over_sign", over_sign,
                     "reporting", 0, "expiration", 0, "ttl", 300);
}

static struct dkim_signer *
test_signer(struct test_fx *fx, json_t *params)
{
    struct dkim_signer *s = NULL;
    char err[512];

    assert_int_equal(dkim_signer_get(fx->ctx, params, &s, err, sizeof(err)), 0);
    json_decref(params);
    return s;
}

static int
test_signer_err(struct test_fx *fx, json_t *params, char *err, size_t n)
{
    struct dkim_signer *s = NULL;
    int rv = dkim_signer_get(fx->ctx, params, &s, err, n);

    json_decref(params);
    assert_null(s);
    return rv;
}

/* The value of tag `t` ("h", "bh", "b") of a DKIM-Signature field, with
 * folding whitespace removed. */
static void
test_tag(const char *field, const char *t, struct buf *out)
{
    char pat[16];
    const char *p;

    snprintf(pat, sizeof(pat), " %s=", t);
    p = strstr(field, pat);
    if (p == NULL) {
        snprintf(pat, sizeof(pat), "\t%s=", t);
        p = strstr(field, pat);
    }
    assert_non_null(p);
    for (p += strlen(pat); *p && *p != ';'; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            buf_append_char(out, *p);
        }
    }
}

/* Tests */

static void
relaxed_and_simple_body_match_rfc6376_example(void **state)
{
    (void)state;
    /* RFC 6376 3.4.5. */
    const char *body = " C \r\nD \t E\r\n\r\n\r\n";
    test_body(DKIM_CANON_RELAXED, body, " C\r\nD E\r\n");
    test_body(DKIM_CANON_SIMPLE, body, " C \r\nD \t E\r\n");
}

static void
relaxed_and_simple_headers_match_rfc6376_example(void **state)
{
    (void)state;
    /* RFC 6376 3.4.5. */
    test_header(DKIM_CANON_RELAXED, "A: X\r\n", "a:X\r\n");
    test_header(DKIM_CANON_RELAXED, "B : Y\t\r\n\tZ  \r\n", "b:Y Z\r\n");
    test_header(DKIM_CANON_SIMPLE, "B : Y\t\r\n\tZ  \r\n",
                "B : Y\t\r\n\tZ  \r\n");
}

static void
empty_bodies_hash_to_the_rfc_values(void **state)
{
    char bh[45];

    (void)state;
    test_body(DKIM_CANON_SIMPLE, "", "\r\n");
    test_body(DKIM_CANON_RELAXED, "", "");
    test_body(DKIM_CANON_SIMPLE, "\r\n\r\n", "\r\n");
    test_body(DKIM_CANON_RELAXED, " \r\n\t\r\n", "");
    /* RFC 6376 3.4.3 and 3.4.4: SHA-256 of CRLF, and of nothing. */
    dkim_body_hash(DKIM_CANON_SIMPLE, "", 0, bh);
    assert_string_equal(bh, "frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY=");
    dkim_body_hash(DKIM_CANON_RELAXED, "", 0, bh);
    assert_string_equal(bh, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
}

static void
body_trailing_lines_missing_crlf_and_8bit_are_handled(void **state)
{
    (void)state;
    test_body(DKIM_CANON_SIMPLE, "a\r\n\r\n\r\n", "a\r\n");
    test_body(DKIM_CANON_RELAXED, "a  \r\n \r\n\r\n", "a\r\n");
    test_body(DKIM_CANON_SIMPLE, "a\r\nb", "a\r\nb\r\n");
    test_body(DKIM_CANON_RELAXED, "a\r\nb \t", "a\r\nb\r\n");
    /* Empty lines in the middle stay. */
    test_body(DKIM_CANON_SIMPLE, "a\r\n\r\nb\r\n", "a\r\n\r\nb\r\n");
    test_body(DKIM_CANON_RELAXED, "a\r\n \r\nb\r\n", "a\r\n\r\nb\r\n");
    /* 8-bit bytes (UTF-8) and a leading dot pass unchanged. */
    test_body(DKIM_CANON_RELAXED, "caf\xc3\xa9  ok\r\n.dot\r\n",
              "caf\xc3\xa9 ok\r\n.dot\r\n");
    /* A bare LF is part of the line, not a line end. */
    test_body(DKIM_CANON_SIMPLE, "a\nb\r\n", "a\nb\r\n");
}

static void
body_with_long_lines_is_streamed_whole(void **state)
{
    size_t n = 100000;
    char *in = malloc(n + 3);
    struct buf out = BUF_INIT;

    (void)state;
    for (size_t i = 0; i < n; i++) {
        in[i] = (i % 7 == 0) ? ' ' : 'x';
    }
    memcpy(in + n, "\r\n", 3);
    dkim_canon_body(DKIM_CANON_SIMPLE, in, n + 2, test_on_emit, &out);
    assert_int_equal(out.len, n + 2);
    assert_memory_equal(out.data, in, n + 2);
    buf_reset(&out);
    dkim_canon_body(DKIM_CANON_RELAXED, in, n + 2, test_on_emit, &out);
    /* The leading SP stays (one SP); the others are single already. */
    assert_int_equal(out.len, n + 2);
    buf_fini(&out);
    free(in);
}

static void
fields_split_keeps_folds_and_finds_the_body(void **state)
{
    const char *m = "A: 1\r\nB: 2\r\n\tcont\r\nA : 3\r\n\r\nbody\r\n";
    struct dkim_field *f;
    size_t off, n;

    (void)state;
    n = dkim_fields_split(m, strlen(m), &f, &off);
    assert_int_equal(n, 3);
    assert_int_equal(f[1].len, strlen("B: 2\r\n\tcont\r\n"));
    assert_int_equal(f[2].name_len, 1);
    assert_true(dkim_field_is(&f[2], "a"));
    assert_string_equal(m + off, "body\r\n");
    free(f);
}

static void
selection_takes_fields_from_the_bottom_and_absent_ones_are_null(void **state)
{
    const char *m = "A: 1\r\nB: 2\r\nA: 3\r\n\r\n";
    const char *names[] = {"a", "A", "a", "b"};
    const struct dkim_field *sel[4];
    struct dkim_field *f;
    size_t off, n;

    (void)state;
    n = dkim_fields_split(m, strlen(m), &f, &off);
    dkim_fields_select(f, n, names, 4, sel);
    /* RFC 6376 5.4.2: the last instance first. */
    assert_memory_equal(sel[0]->p, "A: 3", 4);
    assert_memory_equal(sel[1]->p, "A: 1", 4);
    assert_null(sel[2]);
    assert_memory_equal(sel[3]->p, "B: 2", 4);
    free(f);
}

static void
over_sign_lists_each_header_one_more_time_than_present(void **state)
{
    /* KumoMTA's example: one From, one To, no Subject. */
    const char *m = "From: a\r\nTo: b\r\n\r\n";
    const char *names[] = {"From", "To", "Subject", "from"};
    const char **out;
    struct dkim_field *f;
    size_t off, n, k;

    (void)state;
    n = dkim_fields_split(m, strlen(m), &f, &off);
    k = dkim_names_oversign(f, n, names, 4, &out);
    assert_int_equal(k, 5);
    assert_string_equal(out[0], "From");
    assert_string_equal(out[1], "From");
    assert_string_equal(out[2], "To");
    assert_string_equal(out[3], "To");
    assert_string_equal(out[4], "Subject");
    free(out);
    free(f);
}

static void
ed25519_reproduces_the_rfc8463_example(void **state)
{
    /* RFC 8463 Appendix A.3, relaxed/relaxed (verified against the
     * published key by dkimpy, too). */
    const char *relaxed =
        "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
        " d=football.example.com; i=@football.example.com;\r\n"
        " q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
        " subject : date : message-id : from : subject : date;\r\n"
        " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
        " b=";
    /* The draft's simple/simple version (dkimpy's rfc6376.signed.msg),
     * trailing spaces and all: simple hashes the bytes as they are. */
    const char *simple =
        "DKIM-Signature: v=1; a=ed25519-sha256; c=simple/simple; \r\n"
        " d=football.example.com; i=@football.example.com; \r\n"
        " q=dns/txt; s=brisbane; t=1518460054; h=from : to : \r\n"
        " subject : date : message-id : from : subject : date; \r\n"
        " bh=4bLNXImK9drULnmePzZNEBleUanJCX5PIsDIFoH4KTQ=; \r\n"
        " b=";
    unsigned char der[48];
    void *key = NULL;
    char err[256], bh[45];
    struct buf b = BUF_INIT;
    size_t off = strstr(test_rfc_msg, "\r\n\r\n") - test_rfc_msg + 4;

    (void)state;
    test_ed_der(test_ed_seed, der);
    assert_int_equal(dkim_key_parse((const char *)der, sizeof(der), true,
                                    "rfc8463", &key, err, sizeof(err)),
                     0);
    dkim_body_hash(DKIM_CANON_RELAXED, test_rfc_msg + off,
                   strlen(test_rfc_msg) - off, bh);
    assert_string_equal(bh, "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=");
    assert_int_equal(dkim_sign_fields(key, true, DKIM_CANON_RELAXED,
                                      test_rfc_msg, off, test_rfc_names, 8,
                                      relaxed, strlen(relaxed), &b, err,
                                      sizeof(err)),
                     0);
    assert_string_equal(buf_cstr(&b), "/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9O"
                                      "dqQehSwhEIug4D11BusFa3bT3FY5OsU7Zbn"
                                      "KELq+eXdp1Q1Dw==");
    buf_reset(&b);
    dkim_body_hash(DKIM_CANON_SIMPLE, test_rfc_msg + off,
                   strlen(test_rfc_msg) - off, bh);
    assert_string_equal(bh, "4bLNXImK9drULnmePzZNEBleUanJCX5PIsDIFoH4KTQ=");
    assert_int_equal(dkim_sign_fields(key, true, DKIM_CANON_SIMPLE,
                                      test_rfc_msg, off, test_rfc_names, 8,
                                      simple, strlen(simple), &b, err,
                                      sizeof(err)),
                     0);
    assert_string_equal(buf_cstr(&b), "9/dsDChY0YMTtD5Eyw3wx7x22BlSJP7M5ECbJ"
                                      "7GWrR45nXlTCGb8l0YBo0wBLR++X5LqmsxX"
                                      "aOYLLJe46l10AQ==");
    buf_fini(&b);
    dkim_key_free(key);
}

static void
signature_has_the_tags_and_covers_the_listed_headers(void **state)
{
    struct test_fx *fx = *state;
    json_t *p = test_params("rsa-sha256", fx->rsa_pem, false);
    struct dkim_signer *s;
    struct buf out = BUF_INIT, h = BUF_INIT, bh = BUF_INIT;
    char err[256], want_bh[45];
    size_t off = strstr(test_rfc_msg, "\r\n\r\n") - test_rfc_msg + 4;

    json_object_set_new(p, "expiration", json_integer(3600));
    json_object_set_new(p, "agent_user_identifier",
                        json_string("news@mail.example.test"));
    json_object_set_new(p, "reporting", json_true());
    s = test_signer(fx, p);
    assert_int_equal(dkim_sign_data(&s, 1, test_rfc_msg, strlen(test_rfc_msg),
                                    1700000000, &out, err, sizeof(err)),
                     0);
    assert_true(strncmp(out.data,
                        "DKIM-Signature: v=1; a=rsa-sha256; "
                        "c=relaxed/relaxed; d=example.test; s=s1;",
                        74) == 0);
    assert_non_null(strstr(out.data, "t=1700000000;"));
    assert_non_null(strstr(out.data, "x=1700003600;"));
    assert_non_null(strstr(out.data, "i=news@mail.example.test;"));
    assert_non_null(strstr(out.data, "r=y;"));
    assert_null(strstr(out.data, "l="));
    test_tag(out.data, "h", &h);
    assert_string_equal(buf_cstr(&h), "From:To:Subject");
    test_tag(out.data, "bh", &bh);
    dkim_body_hash(DKIM_CANON_RELAXED, test_rfc_msg + off,
                   strlen(test_rfc_msg) - off, want_bh);
    assert_string_equal(buf_cstr(&bh), want_bh);
    /* Folded: no line longer than 78 characters. */
    for (const char *l = out.data; *l;) {
        const char *e = strstr(l, "\r\n");
        assert_non_null(e);
        assert_true(e - l <= 78);
        l = e + 2;
    }
    buf_fini(&out);
    buf_fini(&h);
    buf_fini(&bh);
    dkim_signer_unref(s);
}

static void
over_signed_h_lists_present_headers_twice(void **state)
{
    struct test_fx *fx = *state;
    struct dkim_signer *s =
        test_signer(fx, test_params("ed25519-sha256", fx->ed_pem, true));
    struct buf out = BUF_INIT, h = BUF_INIT;
    char err[256];

    assert_int_equal(dkim_sign_data(&s, 1, test_rfc_msg, strlen(test_rfc_msg),
                                    1700000000, &out, err, sizeof(err)),
                     0);
    test_tag(out.data, "h", &h);
    assert_string_equal(buf_cstr(&h), "From:From:To:To:Subject:Subject");
    buf_fini(&out);
    buf_fini(&h);
    dkim_signer_unref(s);
}

static void
ed25519_signature_changes_when_a_signed_header_changes(void **state)
{
    struct test_fx *fx = *state;
    struct dkim_signer *s =
        test_signer(fx, test_params("ed25519-sha256", fx->ed_pem, false));
    struct buf a = BUF_INIT, b = BUF_INIT, sa = BUF_INIT, sb = BUF_INIT;
    char err[256];
    char *tampered = strdup(test_rfc_msg);

    /* Deterministic Ed25519: same input, same b=; a changed Subject or
     * an unsigned header added changes it or not, as it should. */
    tampered[strstr(tampered, "dinner") - tampered] = 'D';
    assert_int_equal(dkim_sign_data(&s, 1, test_rfc_msg, strlen(test_rfc_msg),
                                    1, &a, err, sizeof(err)),
                     0);
    assert_int_equal(
        dkim_sign_data(&s, 1, tampered, strlen(tampered), 1, &b, err, 256), 0);
    test_tag(a.data, "b", &sa);
    test_tag(b.data, "b", &sb);
    assert_string_not_equal(buf_cstr(&sa), buf_cstr(&sb));
    buf_reset(&b);
    buf_reset(&sb);
    free(tampered);
    tampered = km_asprintf("X-Unsigned: 1\r\n%s", test_rfc_msg);
    assert_int_equal(
        dkim_sign_data(&s, 1, tampered, strlen(tampered), 1, &b, err, 256), 0);
    test_tag(b.data, "b", &sb);
    assert_string_equal(buf_cstr(&sa), buf_cstr(&sb));
    free(tampered);
    buf_fini(&a);
    buf_fini(&b);
    buf_fini(&sa);
    buf_fini(&sb);
    dkim_signer_unref(s);
}

static void
key_errors_name_the_file_and_the_problem(void **state)
{
    struct test_fx *fx = *state;
    char err[512], path[300];
    EVP_PKEY *small;

    assert_int_equal(
        test_signer_err(fx,
                        test_params("rsa-sha256", "/nonexistent/k.pem", false),
                        err, sizeof(err)),
        KM_ENOENT);
    assert_non_null(strstr(err, "/nonexistent/k.pem"));
    /* An Ed25519 key for an RSA signer, and the other way round. */
    assert_int_equal(
        test_signer_err(fx, test_params("rsa-sha256", fx->ed_pem, false), err,
                        sizeof(err)),
        KM_EINVAL);
    assert_non_null(strstr(err, fx->ed_pem));
    assert_non_null(strstr(err, "needs an RSA key"));
    assert_int_equal(
        test_signer_err(fx, test_params("ed25519-sha256", fx->rsa_pem, false),
                        err, sizeof(err)),
        KM_EINVAL);
    assert_non_null(strstr(err, "needs an Ed25519 key"));
    /* Not a key at all. */
    snprintf(path, sizeof(path), "%s/garbage.pem", fx->dir);
    test_write(path, "hello\n", 6);
    assert_int_equal(test_signer_err(fx, test_params("rsa-sha256", path, false),
                                     err, sizeof(err)),
                     KM_EINVAL);
    assert_non_null(strstr(err, "is not an RSA private key"));
    /* RFC 8301: too small. */
    snprintf(path, sizeof(path), "%s/small.pem", fx->dir);
    small = EVP_RSA_gen(512);
    assert_non_null(small);
    test_write_pem(path, small);
    EVP_PKEY_free(small);
    assert_int_equal(test_signer_err(fx, test_params("rsa-sha256", path, false),
                                     err, sizeof(err)),
                     KM_EINVAL);
    assert_non_null(strstr(err, "512 bits"));
    /* Unreadable (a directory). */
    assert_int_equal(test_signer_err(fx,
                                     test_params("rsa-sha256", fx->dir, false),
                                     err, sizeof(err)),
                     KM_EIO);
    assert_non_null(strstr(err, fx->dir));
}

static void
key_data_and_der_keys_load(void **state)
{
    struct test_fx *fx = *state;
    unsigned char der[48];
    char path[300];
    json_t *p;
    struct dkim_signer *s;
    struct buf pem = BUF_INIT;
    char err[512];

    test_ed_der(test_ed_seed, der);
    snprintf(path, sizeof(path), "%s/ed.der", fx->dir);
    test_write(path, der, sizeof(der));
    s = test_signer(fx, test_params("ed25519-sha256", path, false));
    dkim_signer_unref(s);
    /* key = {key_data = PEM text}. */
    {
        FILE *f = fopen(fx->rsa_pem, "rb");
        char chunk[4096];
        size_t n;
        assert_non_null(f);
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
            buf_append(&pem, chunk, n);
        }
        fclose(f);
    }
    p = test_params("rsa-sha256", "unused", false);
    json_object_set_new(p, "key", json_pack("{s:s}", "data", pem.data));
    s = test_signer(fx, p);
    dkim_signer_unref(s);
    /* PKCS#8 v2 with the public key (RFC 8410 10.3), which OpenSSL 3.0
     * does not read itself; and one whose public key does not match. */
    p = test_params("ed25519-sha256", "unused", false);
    json_object_set_new(p, "key", json_pack("{s:s}", "data", test_v2_pem));
    s = test_signer(fx, p);
    dkim_signer_unref(s);
    {
        char *bad = strdup(test_v2_pem);
        char *z = strstr(bad, "rXAxZuE=");
        assert_non_null(z);
        z[3] = 'y';
        p = test_params("ed25519-sha256", "unused", false);
        json_object_set_new(p, "key", json_pack("{s:s}", "data", bad));
        assert_int_equal(test_signer_err(fx, p, err, sizeof(err)), KM_EINVAL);
        assert_non_null(strstr(err, "does not match"));
        free(bad);
    }
    p = test_params("rsa-sha256", "unused", false);
    json_object_set_new(p, "key", json_pack("{s:s}", "data", "not a key"));
    assert_int_equal(test_signer_err(fx, p, err, sizeof(err)), KM_EINVAL);
    assert_non_null(strstr(err, "key_data"));
    buf_fini(&pem);
}

static void
signer_cache_returns_the_same_signer_for_the_same_params(void **state)
{
    struct test_fx *fx = *state;
    struct dkim_signer *a, *b, *c;
    json_t *p;
    struct buf text = BUF_INIT;

    char moved[320];

    a = test_signer(fx, test_params("rsa-sha256", fx->rsa_pem, false));
    /* The key file goes away: the cached signer is still used... */
    snprintf(moved, sizeof(moved), "%s.moved", fx->rsa_pem);
    assert_int_equal(rename(fx->rsa_pem, moved), 0);
    b = test_signer(fx, test_params("rsa-sha256", fx->rsa_pem, false));
    assert_ptr_equal(a, b);
    /* ...and other params get another signer over the same parsed key,
     * from the key cache. */
    p = test_params("rsa-sha256", fx->rsa_pem, false);
    json_object_set_new(p, "selector", json_string("s2"));
    c = test_signer(fx, p);
    assert_ptr_not_equal(a, c);
    assert_int_equal(rename(moved, fx->rsa_pem), 0);
    metrics_render_text(fx->metrics, &text);
    assert_non_null(strstr(text.data, "dkim_signer_cache_hit 1\n"));
    assert_non_null(strstr(text.data, "dkim_signer_cache_miss 2\n"));
    assert_non_null(strstr(text.data, "dkim_key_cache_miss 1\n"));
    assert_non_null(strstr(text.data, "dkim_key_cache_hit 1\n"));
    /* ttl = 0: not cached. */
    p = test_params("rsa-sha256", fx->rsa_pem, false);
    json_object_set_new(p, "ttl", json_integer(0));
    dkim_signer_unref(test_signer(fx, json_incref(p)));
    dkim_signer_unref(test_signer(fx, p));
    buf_reset(&text);
    metrics_render_text(fx->metrics, &text);
    assert_non_null(strstr(text.data, "dkim_signer_cache_miss 4\n"));
    buf_fini(&text);
    dkim_signer_unref(a);
    dkim_signer_unref(b);
    dkim_signer_unref(c);
}

static void
test_on_signed(void *arg, int status)
{
    int *out = arg;
    *out = status;
}

static void
message_is_signed_on_the_pool_with_every_requested_signer(void **state)
{
    struct test_fx *fx = *state;
    struct dkim_signer *rsa =
        test_signer(fx, test_params("rsa-sha256", fx->rsa_pem, false));
    struct dkim_signer *ed =
        test_signer(fx, test_params("ed25519-sha256", fx->ed_pem, false));
    struct message *m;
    int status = 1;
    struct buf text = BUF_INIT;
    const char *d;

    assert_int_equal(message_new("0123456789abcdef0123456789abcdef",
                                 "a@example.test", "b@example.test", NULL, &m),
                     0);
    buf_append_str(message_data(m), test_rfc_msg);
    dkim_message_add_signer(m, rsa);
    dkim_message_add_signer(m, ed);
    dkim_signer_unref(rsa);
    dkim_signer_unref(ed);
    dkim_sign_message(fx->ctx, m, test_on_signed, &status);
    /* Not done inline: it runs on the pool. */
    assert_int_equal(status, 1);
    while (status == 1) {
        uv_run(&fx->loop, UV_RUN_ONCE);
    }
    assert_int_equal(status, 0);
    d = buf_cstr(message_data(m));
    /* The last signer's field on top, as successive prepends. */
    assert_true(strncmp(d, "DKIM-Signature: v=1; a=ed25519-sha256;", 38) == 0);
    assert_non_null(strstr(d + 10, "\r\nDKIM-Signature: v=1; a=rsa-sha256;"));
    assert_non_null(strstr(d, "\r\nFrom: Joe SixPack"));
    {
        struct dkim_signer *const *left;
        assert_int_equal(message_dkim_signers(m, &left), 0);
    }
    metrics_render_text(fx->metrics, &text);
    assert_non_null(
        strstr(text.data, "dkim_signatures_made{algorithm=\"rsa-sha256\"} 1"));
    assert_non_null(strstr(text.data,
                           "dkim_signatures_made{algorithm=\"ed25519-sha256\"} "
                           "1"));
    assert_non_null(strstr(text.data, "dkim_signer_sign_count 1"));
    assert_non_null(strstr(text.data, "dkim_signer_sign_sum "));
    buf_fini(&text);
    /* Bare line ends: signed, and kept, as CRLF. */
    buf_reset(message_data(m));
    buf_append_str(message_data(m), "From: a@example.test\nSubject: lf\n\n"
                                    "one\ntwo\r\nthree\r");
    ed = test_signer(fx, test_params("ed25519-sha256", fx->ed_pem, false));
    dkim_message_add_signer(m, ed);
    dkim_signer_unref(ed);
    status = 1;
    dkim_sign_message(fx->ctx, m, test_on_signed, &status);
    while (status == 1) {
        uv_run(&fx->loop, UV_RUN_ONCE);
    }
    assert_int_equal(status, 0);
    d = buf_cstr(message_data(m));
    assert_non_null(strstr(d, "\r\nFrom: a@example.test\r\nSubject: lf\r\n\r\n"
                              "one\r\ntwo\r\nthree\r\n"));
    for (const char *q = d; *q; q++) {
        if (*q == '\n') {
            assert_true(q > d && q[-1] == '\r');
        }
    }
    /* Nothing asked: cb at once, data unchanged. */
    status = 1;
    size_t len = message_data(m)->len;
    dkim_sign_message(fx->ctx, m, test_on_signed, &status);
    assert_int_equal(status, 0);
    assert_int_equal(message_data(m)->len, len);
    message_unref(m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(relaxed_and_simple_body_match_rfc6376_example),
        cmocka_unit_test(relaxed_and_simple_headers_match_rfc6376_example),
        cmocka_unit_test(empty_bodies_hash_to_the_rfc_values),
        cmocka_unit_test(body_trailing_lines_missing_crlf_and_8bit_are_handled),
        cmocka_unit_test(body_with_long_lines_is_streamed_whole),
        cmocka_unit_test(fields_split_keeps_folds_and_finds_the_body),
        cmocka_unit_test(
            selection_takes_fields_from_the_bottom_and_absent_ones_are_null),
        cmocka_unit_test(
            over_sign_lists_each_header_one_more_time_than_present),
        cmocka_unit_test(ed25519_reproduces_the_rfc8463_example),
        cmocka_unit_test_setup_teardown(
            signature_has_the_tags_and_covers_the_listed_headers, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            over_signed_h_lists_present_headers_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(
            ed25519_signature_changes_when_a_signed_header_changes, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            key_errors_name_the_file_and_the_problem, setup, teardown),
        cmocka_unit_test_setup_teardown(key_data_and_der_keys_load, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            signer_cache_returns_the_same_signer_for_the_same_params, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            message_is_signed_on_the_pool_with_every_requested_signer, setup,
            teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
