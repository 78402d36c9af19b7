/* test_tls.c - TLS over memory buffers: a self-signed server and a
 * non-verifying client complete a handshake and exchange data both ways; a
 * verifying client refuses the self-signed certificate; loading missing
 * certificate files fails with OpenSSL's reason. No sockets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/buf.h"
#include "base/km.h"
#include "tls.h"

/* ---- Fixture ---- */

struct fixture {
    struct tls_ctx *server_ctx;
    struct tls_ctx *client_ctx;
    struct tls_conn *server;
    struct tls_conn *client;
};

static int
setup(void **state)
{
    struct fixture *f = test_calloc(1, sizeof(*f));
    char err[256];

    assert_int_equal(tls_ctx_new_server(NULL, NULL, "mx.test", &f->server_ctx,
                                        err, sizeof(err)),
                     0);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;

    tls_conn_free(f->server);
    tls_conn_free(f->client);
    tls_ctx_free(f->client_ctx);
    tls_ctx_free(f->server_ctx);
    test_free(f);
    return 0;
}

/* ---- Helpers ---- */

/* Run both handshakes, moving bytes between them, until both are done
 * (returns 1) or one fails (returns KM_EPROTO). */
static int
pump_handshake(struct fixture *f)
{
    struct buf c2s = BUF_INIT;
    struct buf s2c = BUF_INIT;
    int rc = 0, rs = 0;

    for (int round = 0; round < 20; round++) {
        if (rc != 1) {
            rc = tls_conn_handshake(f->client, &c2s);
        }
        if (rc < 0) {
            break;
        }
        tls_conn_feed(f->server, c2s.data, c2s.len);
        buf_reset(&c2s);
        if (rs != 1) {
            rs = tls_conn_handshake(f->server, &s2c);
        }
        if (rs < 0) {
            break;
        }
        tls_conn_feed(f->client, s2c.data, s2c.len);
        buf_reset(&s2c);
        if (rc == 1 && rs == 1) {
            break;
        }
    }
    buf_fini(&c2s);
    buf_fini(&s2c);
    if (rc < 0 || rs < 0) {
        return KM_EPROTO;
    }
    return rc == 1 && rs == 1 ? 1 : 0;
}

/* Send plaintext from one side and read it on the other. */
static void
send_and_check(struct tls_conn *from, struct tls_conn *to, const char *msg)
{
    struct buf wire = BUF_INIT;
    struct buf plain = BUF_INIT;

    assert_int_equal(tls_conn_write(from, msg, strlen(msg), &wire), 0);
    assert_true(wire.len > strlen(msg)); /* encrypted, with overhead */
    tls_conn_feed(to, wire.data, wire.len);
    assert_int_equal(tls_conn_read(to, &plain), 0);
    assert_string_equal(buf_cstr(&plain), msg);
    buf_fini(&wire);
    buf_fini(&plain);
}

/* ---- Tests ---- */

static void
tls_handshake_and_data_both_ways(void **state)
{
    struct fixture *f = *state;
    struct buf wire = BUF_INIT;
    struct buf plain = BUF_INIT;

    assert_int_equal(tls_ctx_new_client(false, &f->client_ctx), 0);
    assert_int_equal(tls_conn_new(f->server_ctx, NULL, &f->server), 0);
    assert_int_equal(tls_conn_new(f->client_ctx, "mx.test", &f->client), 0);
    assert_int_equal(pump_handshake(f), 1);
    assert_true(strncmp(tls_conn_version(f->server), "TLSv1.", 6) == 0);
    assert_string_equal(tls_conn_version(f->server),
                        tls_conn_version(f->client));
    assert_string_equal(tls_conn_cipher(f->server), tls_conn_cipher(f->client));
    assert_false(tls_conn_peer_verified(f->client));

    send_and_check(f->client, f->server, "EHLO client.test\r\n");
    send_and_check(f->server, f->client, "250-mx.test Aloha\r\n");

    /* close_notify reads as KM_ENOENT. */
    tls_conn_shutdown(f->client, &wire);
    assert_true(wire.len > 0);
    tls_conn_feed(f->server, wire.data, wire.len);
    assert_int_equal(tls_conn_read(f->server, &plain), KM_ENOENT);
    buf_fini(&wire);
    buf_fini(&plain);
}

static void
tls_read_waits_for_a_whole_record(void **state)
{
    struct fixture *f = *state;
    struct buf wire = BUF_INIT;
    struct buf plain = BUF_INIT;

    assert_int_equal(tls_ctx_new_client(false, &f->client_ctx), 0);
    assert_int_equal(tls_conn_new(f->server_ctx, NULL, &f->server), 0);
    assert_int_equal(tls_conn_new(f->client_ctx, NULL, &f->client), 0);
    assert_int_equal(pump_handshake(f), 1);
    assert_int_equal(tls_conn_write(f->client, "hello", 5, &wire), 0);
    tls_conn_feed(f->server, wire.data, 3);
    assert_int_equal(tls_conn_read(f->server, &plain), 0);
    assert_int_equal(plain.len, 0);
    tls_conn_feed(f->server, wire.data + 3, wire.len - 3);
    assert_int_equal(tls_conn_read(f->server, &plain), 0);
    assert_string_equal(buf_cstr(&plain), "hello");
    buf_fini(&wire);
    buf_fini(&plain);
}

static void
tls_verifying_client_rejects_self_signed(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(tls_ctx_new_client(true, &f->client_ctx), 0);
    assert_int_equal(tls_conn_new(f->server_ctx, NULL, &f->server), 0);
    assert_int_equal(tls_conn_new(f->client_ctx, "mx.test", &f->client), 0);
    assert_int_equal(pump_handshake(f), KM_EPROTO);
    assert_non_null(strstr(tls_conn_error(f->client), "verif"));
    assert_false(tls_conn_peer_verified(f->client));
}

static void
tls_missing_certificate_files_fail_with_reason(void **state)
{
    struct tls_ctx *ctx = NULL;
    char err[256] = "";

    (void)state;
    assert_int_equal(tls_ctx_new_server("/nonexistent/cert.pem",
                                        "/nonexistent/key.pem", "mx.test", &ctx,
                                        err, sizeof(err)),
                     KM_ECONFIG);
    assert_null(ctx);
    assert_non_null(strstr(err, "/nonexistent/cert.pem"));
    assert_true(strlen(err) >
                strlen("tls_certificate /nonexistent/cert.pem: "));
}

static void
tls_garbage_input_fails_handshake(void **state)
{
    struct fixture *f = *state;
    struct buf out = BUF_INIT;
    const char junk[] = "EHLO this is not TLS\r\n";

    assert_int_equal(tls_conn_new(f->server_ctx, NULL, &f->server), 0);
    tls_conn_feed(f->server, junk, sizeof(junk) - 1);
    assert_int_equal(tls_conn_handshake(f->server, &out), KM_EPROTO);
    assert_string_not_equal(tls_conn_error(f->server), "no error");
    buf_fini(&out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(tls_handshake_and_data_both_ways, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(tls_read_waits_for_a_whole_record,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            tls_verifying_client_rejects_self_signed, setup, teardown),
        cmocka_unit_test(tls_missing_certificate_files_fail_with_reason),
        cmocka_unit_test_setup_teardown(tls_garbage_input_fails_handshake,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
