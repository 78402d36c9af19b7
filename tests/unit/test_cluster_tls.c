/* test_cluster_tls.c - mutual TLS sessions on memory BIOs and the
 * certificate-to-node-id rule: two sessions pumped into each other
 * complete a handshake and carry bytes; the certificate names node-<id>
 * by SAN DNS (or CN without DNS names) and no other id; a certificate
 * from another CA, or none, fails the handshake with a reason; a bad file
 * is named; a file replaced on disk is reloaded. Certificates are made
 * with the openssl command in a temp directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/buf.h"
#include "base/km.h"
#include "cluster_tls.h"

/* Fixture */

struct tls_test {
    char dir[64];
    char path[8][160];
};

static void
tls_test_sh(const char *dir, const char *cmd)
{
    char line[2048];

    snprintf(line, sizeof(line), "cd %s && (%s) >/dev/null 2>&1", dir, cmd);
    assert_int_equal(system(line), 0);
}

/* A key and certificate for `cn` (with SAN DNS:cn if san) signed by ca. */
static void
tls_test_cert(const char *dir, const char *ca, const char *name, const char *cn,
              bool san, int days)
{
    char cmd[1024];

    snprintf(cmd, sizeof(cmd),
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-keyout %s.key -out %s.csr -subj /CN=%s && "
             "printf 'subjectAltName=DNS:%s\\n' > %s.ext && "
             "openssl x509 -req -in %s.csr -CA %s.crt -CAkey %s.key "
             "-CAcreateserial -out %s.crt -days %d %s",
             name, name, cn, cn, name, name, ca, ca, name, days,
             san ? "-extfile " : "");
    if (san) {
        strncat(cmd, name, sizeof(cmd) - strlen(cmd) - 1);
        strncat(cmd, ".ext", sizeof(cmd) - strlen(cmd) - 1);
    }
    tls_test_sh(dir, cmd);
}

static int
tls_test_setup(void **state)
{
    struct tls_test *tt = calloc(1, sizeof(*tt));

    snprintf(tt->dir, sizeof(tt->dir), "/tmp/test_cluster_tls.XXXXXX");
    assert_non_null(mkdtemp(tt->dir));
    tls_test_sh(tt->dir,
                "for ca in ca other; do openssl req -x509 -newkey ec -pkeyopt "
                "ec_paramgen_curve:P-256 -nodes -keyout $ca.key -out $ca.crt "
                "-days 30 -subj /CN=$ca; done");
    tls_test_cert(tt->dir, "ca", "n1", "node-1", true, 30);
    tls_test_cert(tt->dir, "ca", "n2", "node-2", true, 30);
    tls_test_cert(tt->dir, "ca", "cn3", "node-3", false, 30);
    tls_test_cert(tt->dir, "other", "rogue", "node-2", true, 30);
    *state = tt;
    return 0;
}

static int
tls_test_teardown(void **state)
{
    struct tls_test *tt = *state;
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf %s", tt->dir);
    assert_int_equal(system(cmd), 0);
    free(tt);
    return 0;
}

/* Helpers */

static struct cluster_tls *
tls_test_load(struct tls_test *tt, const char *ca, const char *name)
{
    char c[160], crt[160], key[160], err[256];
    struct cluster_tls *tls = NULL;
    struct cluster_tls_files f = {c, crt, key};

    snprintf(c, sizeof(c), "%s/%s.crt", tt->dir, ca);
    snprintf(crt, sizeof(crt), "%s/%s.crt", tt->dir, name);
    snprintf(key, sizeof(key), "%s/%s.key", tt->dir, name);
    assert_int_equal(cluster_tls_new(&f, &tls, err, sizeof(err)), 0);
    return tls;
}

/* Pump bytes between a client and a server session until neither has
 * anything to say; the first error of either, or 0. */
static int
tls_test_pump(struct cluster_tls_conn *cli, struct cluster_tls_conn *srv,
              struct buf *cli_plain, struct buf *srv_plain, const char **why)
{
    struct buf to_srv, to_cli;
    int rv = 0;

    buf_init(&to_srv);
    buf_init(&to_cli);
    rv = cluster_tls_conn_start(cli, &to_srv, why);
    for (int i = 0; i < 20 && rv == 0 && (to_srv.len > 0 || to_cli.len > 0);
         i++) {
        struct buf a, b;
        buf_init(&a);
        buf_init(&b);
        buf_move(&a, &to_srv);
        buf_move(&b, &to_cli);
        rv = cluster_tls_conn_feed(srv, a.data, a.len, srv_plain, &to_cli, why);
        if (rv == 0) {
            rv = cluster_tls_conn_feed(cli, b.data, b.len, cli_plain, &to_srv,
                                       why);
        }
        buf_fini(&a);
        buf_fini(&b);
    }
    buf_fini(&to_srv);
    buf_fini(&to_cli);
    return rv;
}

/* Tests */

static void
handshake_completes_and_certificates_name_their_node_only(void **state)
{
    struct tls_test *tt = *state;
    struct cluster_tls *t1 = tls_test_load(tt, "ca", "n1");
    struct cluster_tls *t2 = tls_test_load(tt, "ca", "n2");
    struct cluster_tls_conn *cli = cluster_tls_conn_new(t1, false);
    struct cluster_tls_conn *srv = cluster_tls_conn_new(t2, true);
    struct buf cp, sp, wire;
    const char *why = NULL;

    buf_init(&cp);
    buf_init(&sp);
    buf_init(&wire);
    assert_int_equal(tls_test_pump(cli, srv, &cp, &sp, &why), 0);
    assert_true(cluster_tls_conn_is_ready(cli));
    assert_true(cluster_tls_conn_is_ready(srv));
    /* Each side sees the other's id, and only that one. */
    assert_true(cluster_tls_conn_names_node(srv, 1));
    assert_false(cluster_tls_conn_names_node(srv, 2));
    assert_false(cluster_tls_conn_names_node(srv, 11));
    assert_true(cluster_tls_conn_names_node(cli, 2));
    assert_false(cluster_tls_conn_names_node(cli, 1));
    assert_true(cluster_tls_conn_peer_expiry(srv) > 0);
    /* Bytes go through. */
    assert_int_equal(cluster_tls_conn_write(cli, "raft", 4, &wire, &why), 0);
    assert_int_equal(
        cluster_tls_conn_feed(srv, wire.data, wire.len, &sp, &wire, &why), 0);
    assert_int_equal(sp.len, 4);
    assert_memory_equal(sp.data, "raft", 4);
    buf_fini(&cp);
    buf_fini(&sp);
    buf_fini(&wire);
    cluster_tls_conn_free(cli);
    cluster_tls_conn_free(srv);
    cluster_tls_free(t1);
    cluster_tls_free(t2);
}

static void
subject_cn_names_the_node_when_there_is_no_dns_name(void **state)
{
    struct tls_test *tt = *state;
    struct cluster_tls *t1 = tls_test_load(tt, "ca", "cn3");
    struct cluster_tls *t2 = tls_test_load(tt, "ca", "n2");
    struct cluster_tls_conn *cli = cluster_tls_conn_new(t1, false);
    struct cluster_tls_conn *srv = cluster_tls_conn_new(t2, true);
    struct buf cp, sp;
    const char *why = NULL;

    buf_init(&cp);
    buf_init(&sp);
    assert_int_equal(tls_test_pump(cli, srv, &cp, &sp, &why), 0);
    assert_true(cluster_tls_conn_names_node(srv, 3));
    assert_false(cluster_tls_conn_names_node(srv, 2));
    buf_fini(&cp);
    buf_fini(&sp);
    cluster_tls_conn_free(cli);
    cluster_tls_conn_free(srv);
    cluster_tls_free(t1);
    cluster_tls_free(t2);
}

static void
certificate_from_another_ca_fails_the_handshake(void **state)
{
    struct tls_test *tt = *state;
    struct cluster_tls *rogue = tls_test_load(tt, "other", "rogue");
    struct cluster_tls *t1 = tls_test_load(tt, "ca", "n1");
    struct cluster_tls_conn *cli = cluster_tls_conn_new(rogue, false);
    struct cluster_tls_conn *srv = cluster_tls_conn_new(t1, true);
    struct buf cp, sp;
    const char *why = NULL;

    buf_init(&cp);
    buf_init(&sp);
    assert_int_equal(tls_test_pump(cli, srv, &cp, &sp, &why), KM_EPROTO);
    assert_non_null(why);
    assert_non_null(strstr(why, "TLS"));
    assert_false(cluster_tls_conn_names_node(srv, 2));
    buf_fini(&cp);
    buf_fini(&sp);
    cluster_tls_conn_free(cli);
    cluster_tls_conn_free(srv);
    cluster_tls_free(rogue);
    cluster_tls_free(t1);
}

static void
bad_files_are_named(void **state)
{
    struct tls_test *tt = *state;
    char ca[160], crt[160], key[160], err[256];
    struct cluster_tls *tls = NULL;
    struct cluster_tls_files f = {ca, crt, key};

    snprintf(ca, sizeof(ca), "%s/ca.crt", tt->dir);
    snprintf(crt, sizeof(crt), "%s/n1.crt", tt->dir);
    snprintf(key, sizeof(key), "%s/n2.key", tt->dir);
    assert_int_equal(cluster_tls_new(&f, &tls, err, sizeof(err)), KM_ECONFIG);
    assert_non_null(strstr(err, "tls.key: "));
    assert_non_null(strstr(err, "n2.key"));
    snprintf(crt, sizeof(crt), "%s/missing.crt", tt->dir);
    assert_int_equal(cluster_tls_new(&f, &tls, err, sizeof(err)), KM_ECONFIG);
    assert_non_null(strstr(err, "tls.cert: "));
    assert_non_null(strstr(err, "missing.crt"));
    f.key = NULL;
    assert_int_equal(cluster_tls_new(&f, &tls, err, sizeof(err)), KM_ECONFIG);
    assert_string_equal(err, "tls: key is required");
}

static void
replaced_certificate_is_reloaded_and_a_bad_one_is_not(void **state)
{
    struct tls_test *tt = *state;
    struct cluster_tls *tls = tls_test_load(tt, "ca", "n1");
    int64_t before = cluster_tls_cert_expiry(tls);
    char err[256], cmd[256];

    assert_int_equal(cluster_tls_maybe_reload(tls, err, sizeof(err)), 0);
    /* Reissued in place for 3 days instead of 30. */
    tls_test_cert(tt->dir, "ca", "n1", "node-1", true, 3);
    assert_int_equal(cluster_tls_maybe_reload(tls, err, sizeof(err)), 1);
    assert_true(cluster_tls_cert_expiry(tls) < before - 20 * 86400);
    assert_int_equal(cluster_tls_reloads(tls), 1);
    /* A key that does not match: refused once, the old files stay. */
    snprintf(cmd, sizeof(cmd), "cp n2.key n1.key");
    tls_test_sh(tt->dir, cmd);
    assert_int_equal(cluster_tls_maybe_reload(tls, err, sizeof(err)),
                     KM_ECONFIG);
    assert_non_null(strstr(err, "tls.key: "));
    assert_int_equal(cluster_tls_maybe_reload(tls, err, sizeof(err)), 0);
    assert_int_equal(cluster_tls_reloads(tls), 1);
    cluster_tls_free(tls);
}

static void
link_proof_binds_sender_receiver_and_cluster(void **state)
{
    struct tls_test *tt = *state;
    struct cluster_tls *t1 = tls_test_load(tt, "ca", "n1");
    struct cluster_tls *t2 = tls_test_load(tt, "ca", "n2");
    struct cluster_tls *rogue = tls_test_load(tt, "other", "rogue");
    struct buf pr, again, bad;
    const char *why = NULL;

    buf_init(&pr);
    buf_init(&again);
    buf_init(&bad);
    assert_int_equal(cluster_tls_make_proof(t1, "c1", 1, 2, &pr), 0);
    /* Made once per receiver: the same bytes again. */
    assert_int_equal(cluster_tls_make_proof(t1, "c1", 1, 2, &again), 0);
    assert_int_equal(again.len, pr.len);
    assert_memory_equal(again.data, pr.data, pr.len);
    assert_true(cluster_tls_check_proof(t2, "c1", 1, 2, (uint8_t *)pr.data,
                                        pr.len, &why));
    /* Another claimed sender, receiver or cluster: refused. */
    assert_false(cluster_tls_check_proof(t2, "c1", 3, 2, (uint8_t *)pr.data,
                                         pr.len, &why));
    assert_string_equal(why,
                        "sender proof: certificate does not name the sender");
    assert_false(cluster_tls_check_proof(t2, "c1", 1, 3, (uint8_t *)pr.data,
                                         pr.len, &why));
    assert_string_equal(why, "sender proof: bad signature");
    assert_false(cluster_tls_check_proof(t2, "c2", 1, 2, (uint8_t *)pr.data,
                                         pr.len, &why));
    /* One bit changed in the signature; cut short; none. */
    buf_append(&bad, pr.data, pr.len);
    bad.data[bad.len - 5] ^= 1;
    assert_false(cluster_tls_check_proof(t2, "c1", 1, 2, (uint8_t *)bad.data,
                                         bad.len, &why));
    assert_false(
        cluster_tls_check_proof(t2, "c1", 1, 2, (uint8_t *)pr.data, 10, &why));
    assert_false(cluster_tls_check_proof(t2, "c1", 1, 2, NULL, 0, &why));
    assert_string_equal(why, "no sender proof");
    /* A certificate of another CA naming node-2. */
    buf_reset(&bad);
    assert_int_equal(cluster_tls_make_proof(rogue, "c1", 2, 1, &bad), 0);
    assert_false(cluster_tls_check_proof(t1, "c1", 2, 1, (uint8_t *)bad.data,
                                         bad.len, &why));
    assert_string_equal(why, "sender proof: certificate not of the cluster CA");
    buf_fini(&pr);
    buf_fini(&again);
    buf_fini(&bad);
    cluster_tls_free(t1);
    cluster_tls_free(t2);
    cluster_tls_free(rogue);
}

int
main(void)
{
#define T(f)                                                                   \
    cmocka_unit_test_setup_teardown(f, tls_test_setup, tls_test_teardown)
    const struct CMUnitTest tests[] = {
        T(handshake_completes_and_certificates_name_their_node_only),
        T(subject_cn_names_the_node_when_there_is_no_dns_name),
        T(certificate_from_another_ca_fails_the_handshake),
        T(bad_files_are_named),
        T(replaced_certificate_is_reloaded_and_a_bad_one_is_not),
        T(link_proof_binds_sender_receiver_and_cluster),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
