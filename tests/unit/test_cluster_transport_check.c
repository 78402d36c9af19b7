/* test_cluster_transport_check.c - the raft stream validator: valid
 * traffic passes byte for byte (however it is split), and each of the
 * probe's frames (PROBE-2026-12 R1-R5) is refused before any byte of it
 * is handed on: an entry of type 0, term 2^64-1, a 256 MiB declared
 * header, an unterminated or huge handshake address, a TimeoutNow or
 * RequestVote from an id that is not a voter, a vote asked for another
 * candidate, a payload above the configured maximum. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/buf.h"
#include "base/km.h"
#include "cluster_transport_check.h"

/* Fixture */

struct ck_test {
    struct cluster_tcheck k;
    struct buf out;
    struct buf frame; /* what a test sends */
    size_t handshake_len;
};

/* Members: 1-3 are voters at 127.0.0.1:700<id>, 4 is a standby. */
static bool
ck_member(void *ctx, uint64_t id, const char *address, bool *voter)
{
    char want[32];

    (void)ctx;
    if (id < 1 || id > 4) {
        return false;
    }
    snprintf(want, sizeof(want), "127.0.0.1:700%u", (unsigned)id);
    *voter = id != 4;
    return strcmp(address, want) == 0;
}

static int
ck_setup(void **state)
{
    struct ck_test *ct = calloc(1, sizeof(*ct));
    struct cluster_tcheck_limits lim = {.max_append_bytes = 1 << 20};

    cluster_tcheck_init(&ct->k, &lim, ck_member, NULL);
    buf_init(&ct->out);
    buf_init(&ct->frame);
    *state = ct;
    return 0;
}

static int
ck_teardown(void **state)
{
    struct ck_test *ct = *state;

    cluster_tcheck_fini(&ct->k);
    buf_fini(&ct->out);
    buf_fini(&ct->frame);
    free(ct);
    return 0;
}

/* Helpers */

static void
ck_put64(struct buf *b, uint64_t v)
{
    uint8_t p[8];

    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
    buf_append(b, p, 8);
}

static void
ck_handshake(struct ck_test *ct, uint64_t id, const char *address)
{
    size_t alen = (strlen(address) + 1 + 7) & ~(size_t)7;
    char pad[CLUSTER_TCHECK_MAX_ADDRESS] = {0};

    ck_put64(&ct->frame, 1);
    ck_put64(&ct->frame, id);
    ck_put64(&ct->frame, alen);
    memcpy(pad, address, strlen(address));
    buf_append(&ct->frame, pad, alen);
    ct->handshake_len = ct->frame.len;
}

/* An AppendEntries with n entries of `len` bytes each, of `type`. */
static void
ck_append_entries(struct buf *b, uint64_t term, unsigned n, uint8_t type,
                  uint32_t len)
{
    ck_put64(b, 1);
    ck_put64(b, 40 + 16 * (uint64_t)n);
    ck_put64(b, term);
    ck_put64(b, 5); /* prev_log_index */
    ck_put64(b, 2); /* prev_log_term */
    ck_put64(b, 5); /* leader_commit */
    ck_put64(b, n);
    for (unsigned i = 0; i < n; i++) {
        uint8_t e[8] = {type,
                        0,
                        0,
                        0,
                        (uint8_t)len,
                        (uint8_t)(len >> 8),
                        (uint8_t)(len >> 16),
                        (uint8_t)(len >> 24)};
        ck_put64(b, term);
        buf_append(b, e, 8);
    }
    for (unsigned i = 0; i < n; i++) {
        for (uint32_t j = 0; j < len; j++) {
            buf_append_char(b, (char)('a' + j % 26));
        }
    }
}

static void
ck_request_vote(struct buf *b, uint64_t term, uint64_t candidate)
{
    ck_put64(b, 3);
    ck_put64(b, 40);
    ck_put64(b, term);
    ck_put64(b, candidate);
    ck_put64(b, 5); /* last_log_index */
    ck_put64(b, 2); /* last_log_term */
    ck_put64(b, 1); /* disrupt_leader */
}

static void
ck_timeout_now(struct buf *b, uint64_t term)
{
    ck_put64(b, 6);
    ck_put64(b, 24);
    ck_put64(b, term);
    ck_put64(b, 5);
    ck_put64(b, 2);
}

static int
ck_feed_all(struct ck_test *ct)
{
    return cluster_tcheck_feed(&ct->k, ct->frame.data, ct->frame.len, &ct->out);
}

/* Tests */

static void
valid_stream_passes_byte_for_byte_without_the_handshake(void **state)
{
    struct ck_test *ct = *state;

    ck_handshake(ct, 2, "127.0.0.1:7002");
    ck_append_entries(&ct->frame, 3, 0, 1, 0); /* a heartbeat */
    ck_append_entries(&ct->frame, 3, 2, 1, 24);
    ck_request_vote(&ct->frame, 4, 2);
    ck_timeout_now(&ct->frame, 4);
    assert_int_equal(ck_feed_all(ct), 0);
    assert_true(ct->k.handshake_done);
    assert_int_equal(ct->k.peer_id, 2);
    assert_string_equal(ct->k.peer_addr, "127.0.0.1:7002");
    assert_int_equal(ct->k.messages, 4);
    assert_int_equal(ct->out.len, ct->frame.len - ct->handshake_len);
    assert_memory_equal(ct->out.data, ct->frame.data + ct->handshake_len,
                        ct->out.len);
}

static void
valid_stream_split_into_single_bytes_passes_the_same(void **state)
{
    struct ck_test *ct = *state;

    ck_handshake(ct, 1, "127.0.0.1:7001");
    ck_append_entries(&ct->frame, 3, 3, 2, 8);
    for (size_t i = 0; i < ct->frame.len; i++) {
        assert_int_equal(
            cluster_tcheck_feed(&ct->k, ct->frame.data + i, 1, &ct->out), 0);
    }
    assert_int_equal(ct->k.messages, 1);
    assert_int_equal(ct->out.len, ct->frame.len - ct->handshake_len);
    assert_memory_equal(ct->out.data, ct->frame.data + ct->handshake_len,
                        ct->out.len);
}

static void
entry_of_type_0_is_refused_before_any_byte_of_it_passes(void **state)
{
    struct ck_test *ct = *state;

    ck_handshake(ct, 2, "127.0.0.1:7002");
    ck_append_entries(&ct->frame, 3, 0, 1, 0);
    size_t good = ct->frame.len - ct->handshake_len;
    ck_append_entries(&ct->frame, 3, 1, 0, 8);
    assert_int_equal(ck_feed_all(ct), KM_EPROTO);
    assert_non_null(strstr(ct->k.why, "entry 0: type 0"));
    assert_int_equal(ct->out.len, good); /* the heartbeat before it only */
    /* Nothing more is taken after a refusal. */
    assert_int_equal(ck_feed_all(ct), KM_EPROTO);
    assert_int_equal(ct->out.len, good);
}

static void
request_vote_with_term_2_64_minus_1_is_refused(void **state)
{
    struct ck_test *ct = *state;

    ck_handshake(ct, 2, "127.0.0.1:7002");
    ck_request_vote(&ct->frame, UINT64_MAX, 2);
    assert_int_equal(ck_feed_all(ct), KM_EPROTO);
    assert_non_null(strstr(ct->k.why, "RequestVote: term"));
    assert_int_equal(ct->out.len, 0);
}

static void
entry_term_out_of_range_is_refused(void **state)
{
    struct ck_test *ct = *state;

    ck_handshake(ct, 2, "127.0.0.1:7002");
    ck_append_entries(&ct->frame, (1ull << 48), 1, 1, 8);
    assert_int_equal(ck_feed_all(ct), KM_EPROTO);
    assert_int_equal(ct->out.len, 0);
}

static void
declared_header_of_256_mib_is_refused_at_its_preamble(void **state)
{
    struct ck_test *ct = *state;

    ck_handshake(ct, 2, "127.0.0.1:7002");
    ck_put64(&ct->frame, 1);
    ck_put64(&ct->frame, 256u << 20);
    assert_int_equal(ck_feed_all(ct), KM_EPROTO);
    assert_non_null(strstr(ct->k.why, "header length 268435456"));
    /* Refused on the 16 bytes of the preamble: nothing was allocated for
     * the declared length. */
    assert_true(ct->k.in.cap < 4096);
    assert_int_equal(ct->out.len, 0);
}

static void
payload_above_the_configured_maximum_is_refused(void **state)
{
    struct ck_test *ct = *state;

    ck_handshake(ct, 2, "127.0.0.1:7002");
    /* Two entries declaring 1 MiB each against a maximum of 1 MiB; the
     * header alone is sent. */
    ck_put64(&ct->frame, 1);
    ck_put64(&ct->frame, 40 + 32);
    for (int i = 0; i < 4; i++) {
        ck_put64(&ct->frame, 1);
    }
    ck_put64(&ct->frame, 2);
    for (int i = 0; i < 2; i++) {
        uint8_t e[8] = {1, 0, 0, 0, 0, 0, 0x10, 0}; /* 1 MiB */
        ck_put64(&ct->frame, 1);
        buf_append(&ct->frame, e, 8);
    }
    assert_int_equal(ck_feed_all(ct), KM_EPROTO);
    assert_non_null(strstr(ct->k.why, "payload 2097152 bytes"));
    assert_int_equal(ct->out.len, 0);
}

static void
unpadded_entry_length_is_refused(void **state)
{
    struct ck_test *ct = *state;

    ck_handshake(ct, 2, "127.0.0.1:7002");
    ck_append_entries(&ct->frame, 3, 2, 1, 5);
    assert_int_equal(ck_feed_all(ct), KM_EPROTO);
    assert_non_null(strstr(ct->k.why, "not a multiple of 8"));
}

static void
unterminated_handshake_address_is_refused(void **state)
{
    struct ck_test *ct = *state;

    ck_put64(&ct->frame, 1);
    ck_put64(&ct->frame, 2);
    ck_put64(&ct->frame, 16);
    buf_append(&ct->frame, "127.0.0.1:70021x", 16);
    assert_int_equal(ck_feed_all(ct), KM_EPROTO);
    assert_non_null(strstr(ct->k.why, "not terminated"));
    assert_false(ct->k.handshake_done);
}

static void
handshake_address_length_2_40_is_refused(void **state)
{
    struct ck_test *ct = *state;

    ck_put64(&ct->frame, 1);
    ck_put64(&ct->frame, 2);
    ck_put64(&ct->frame, 1ull << 40);
    assert_int_equal(ck_feed_all(ct), KM_EPROTO);
    assert_non_null(strstr(ct->k.why, "address length"));
}

static void
handshake_of_another_protocol_is_refused(void **state)
{
    struct ck_test *ct = *state;

    ck_put64(&ct->frame, 2);
    ck_put64(&ct->frame, 2);
    ck_put64(&ct->frame, 16);
    assert_int_equal(ck_feed_all(ct), KM_EPROTO);
    assert_non_null(strstr(ct->k.why, "protocol 2"));
}

static void
id_that_is_not_a_member_is_refused_at_the_handshake(void **state)
{
    struct ck_test *ct = *state;

    ck_handshake(ct, 99, "127.0.0.1:7099");
    ck_request_vote(&ct->frame, 4, 99);
    assert_int_equal(ck_feed_all(ct), KM_EPROTO);
    assert_non_null(strstr(ct->k.why, "id 99 at 127.0.0.1:7099: not a member"));
    assert_false(ct->k.handshake_done);
    assert_int_equal(ct->out.len, 0);
}

static void
member_id_at_another_address_is_refused(void **state)
{
    struct ck_test *ct = *state;

    ck_handshake(ct, 2, "127.0.0.1:9999");
    assert_int_equal(ck_feed_all(ct), KM_EPROTO);
    assert_non_null(strstr(ct->k.why, "not a member"));
}

static void
timeout_now_from_a_non_voter_is_refused(void **state)
{
    struct ck_test *ct = *state;

    ck_handshake(ct, 4, "127.0.0.1:7004");
    ck_timeout_now(&ct->frame, 4);
    assert_int_equal(ck_feed_all(ct), KM_EPROTO);
    assert_non_null(strstr(ct->k.why, "TimeoutNow from id 4, not a voter"));
    assert_int_equal(ct->out.len, 0);
}

static void
request_vote_from_a_non_voter_is_refused(void **state)
{
    struct ck_test *ct = *state;

    ck_handshake(ct, 4, "127.0.0.1:7004");
    ck_request_vote(&ct->frame, 4, 4);
    assert_int_equal(ck_feed_all(ct), KM_EPROTO);
    assert_non_null(strstr(ct->k.why, "RequestVote from id 4, not a voter"));
}

static void
request_vote_for_another_candidate_is_refused(void **state)
{
    struct ck_test *ct = *state;

    ck_handshake(ct, 2, "127.0.0.1:7002");
    ck_request_vote(&ct->frame, 4, 3);
    assert_int_equal(ck_feed_all(ct), KM_EPROTO);
    assert_non_null(strstr(ct->k.why, "candidate 3 on the connection of id 2"));
}

static void
unknown_message_type_is_refused(void **state)
{
    struct ck_test *ct = *state;

    ck_handshake(ct, 2, "127.0.0.1:7002");
    ck_put64(&ct->frame, 9);
    ck_put64(&ct->frame, 24);
    assert_int_equal(ck_feed_all(ct), KM_EPROTO);
    assert_non_null(strstr(ct->k.why, "message type 9"));
}

/* An InstallSnapshot as libraft 0.15 encodes it: five words, then the
 * configuration (u8 format 1, u64 count, per server u64 id, the address
 * with its NUL, u8 role; padded to 8), then the data length. */
static void
ck_install_snapshot(struct buf *b, uint64_t data_len, uint8_t role)
{
    struct buf conf;
    uint8_t one = 1;

    buf_init(&conf);
    buf_append(&conf, &one, 1);
    ck_put64(&conf, 1);
    ck_put64(&conf, 2);
    buf_append(&conf, "127.0.0.1:7002", 15);
    buf_append(&conf, &role, 1);
    while (conf.len % 8 != 0) {
        buf_append_char(&conf, '\0');
    }
    ck_put64(b, 5);
    ck_put64(b, 40 + conf.len + 8);
    ck_put64(b, 3);  /* term */
    ck_put64(b, 90); /* last_index */
    ck_put64(b, 2);  /* last_term */
    ck_put64(b, 80); /* conf_index */
    ck_put64(b, conf.len);
    buf_append(b, conf.data, conf.len);
    ck_put64(b, data_len);
    for (uint64_t i = 0; i < data_len; i++) {
        buf_append_char(b, 's');
    }
    buf_fini(&conf);
}

static void
install_snapshot_passes_with_its_data(void **state)
{
    struct ck_test *ct = *state;

    ck_handshake(ct, 2, "127.0.0.1:7002");
    ck_install_snapshot(&ct->frame, 100, 1);
    ck_timeout_now(&ct->frame, 4);
    assert_int_equal(ck_feed_all(ct), 0);
    assert_int_equal(ct->k.messages, 2);
    assert_int_equal(ct->out.len, ct->frame.len - ct->handshake_len);
}

static void
install_snapshot_with_a_bad_configuration_is_refused(void **state)
{
    struct ck_test *ct = *state;

    ck_handshake(ct, 2, "127.0.0.1:7002");
    ck_install_snapshot(&ct->frame, 8, 7); /* role 7 */
    assert_int_equal(ck_feed_all(ct), KM_EPROTO);
    assert_non_null(strstr(ct->k.why, "server role 7"));
    assert_int_equal(ct->out.len, 0);
}

static void
results_from_a_standby_pass(void **state)
{
    struct ck_test *ct = *state;

    ck_handshake(ct, 4, "127.0.0.1:7004");
    ck_put64(&ct->frame, 2); /* AppendEntriesResult */
    ck_put64(&ct->frame, 24);
    ck_put64(&ct->frame, 3);
    ck_put64(&ct->frame, 0);
    ck_put64(&ct->frame, 6);
    assert_int_equal(ck_feed_all(ct), 0);
    assert_int_equal(ct->k.messages, 1);
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, ck_setup, ck_teardown)
    const struct CMUnitTest tests[] = {
        T(valid_stream_passes_byte_for_byte_without_the_handshake),
        T(valid_stream_split_into_single_bytes_passes_the_same),
        T(entry_of_type_0_is_refused_before_any_byte_of_it_passes),
        T(request_vote_with_term_2_64_minus_1_is_refused),
        T(entry_term_out_of_range_is_refused),
        T(declared_header_of_256_mib_is_refused_at_its_preamble),
        T(payload_above_the_configured_maximum_is_refused),
        T(unpadded_entry_length_is_refused),
        T(unterminated_handshake_address_is_refused),
        T(handshake_address_length_2_40_is_refused),
        T(handshake_of_another_protocol_is_refused),
        T(id_that_is_not_a_member_is_refused_at_the_handshake),
        T(member_id_at_another_address_is_refused),
        T(timeout_now_from_a_non_voter_is_refused),
        T(request_vote_from_a_non_voter_is_refused),
        T(request_vote_for_another_candidate_is_refused),
        T(unknown_message_type_is_refused),
        T(results_from_a_standby_pass),
        T(install_snapshot_passes_with_its_data),
        T(install_snapshot_with_a_bad_configuration_is_refused),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
