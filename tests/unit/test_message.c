/* test_message.c - the message object: KumoMTA queue names, the spool
 * record round trip, envelope checks, references. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/buf.h"
#include "base/km.h"
#include "base/km_id.h"
#include "message.h"

/* Fixture */

static const char *const test_id = "0123456789abcdef0123456789abcdef";

static struct message *
test_msg(const char *recipient)
{
    struct message *m;
    assert_int_equal(
        message_new(test_id, "sender@example.test", recipient, NULL, &m), 0);
    return m;
}

/* Helpers */

static void
test_set(struct message *m, const char *key, const char *value)
{
    json_object_set_new(message_meta(m), key, json_string(value));
}

/* Tests */

static void
queue_name_is_the_lowercased_recipient_domain_by_default(void **state)
{
    (void)state;
    struct message *m = test_msg("User@Example.TEST");
    assert_string_equal(message_queue_name(m), "example.test");
    message_unref(m);
}

static void
queue_name_follows_kumomta_campaign_tenant_routing_form(void **state)
{
    (void)state;
    struct message *m = test_msg("u@d.test");

    test_set(m, "tenant", "t1");
    assert_string_equal(message_queue_name(m), "t1@d.test");
    test_set(m, "campaign", "c1");
    assert_string_equal(message_queue_name(m), "c1:t1@d.test");
    test_set(m, "routing_domain", "r.test");
    assert_string_equal(message_queue_name(m), "c1:t1@d.test!r.test");
    json_object_del(message_meta(m), "tenant");
    assert_string_equal(message_queue_name(m), "c1:@d.test!r.test");
    test_set(m, "queue", "null");
    assert_string_equal(message_queue_name(m), "null");
    message_unref(m);
}

static void
spool_record_round_trip_keeps_envelope_meta_and_schedule(void **state)
{
    (void)state;
    struct message *m = test_msg("u@d.test");
    struct message *back;
    struct buf rec = BUF_INIT;

    test_set(m, "tenant", "t1");
    message_set_num_attempts(m, 3);
    message_set_due_ms(m, 1234567);
    buf_append_str(message_data(m), "Subject: hi\r\n\r\nbody\r\n");
    message_meta_record(m, &rec);
    assert_int_equal(
        message_from_spool(test_id, rec.data, rec.len, "DATA", 4, &back), 0);
    assert_string_equal(message_sender(back), "sender@example.test");
    assert_string_equal(message_recipient(back), "u@d.test");
    assert_string_equal(message_meta_str(back, "tenant"), "t1");
    assert_int_equal(message_num_attempts(back), 3);
    assert_int_equal(message_due_ms(back), 1234567);
    assert_int_equal(message_created_ms(back), message_created_ms(m));
    assert_memory_equal(message_data(back)->data, "DATA", 4);
    buf_fini(&rec);
    message_unref(back);
    message_unref(m);
}

static void
spool_record_that_does_not_parse_is_corrupt(void **state)
{
    (void)state;
    struct message *m = NULL;
    const char *bad[] = {"", "{", "[]", "{\"sender\":1}",
                         "{\"sender\":\"a@b\",\"recipient\":\"c@d\"}"};

    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        assert_int_equal(
            message_from_spool(test_id, bad[i], strlen(bad[i]), "", 0, &m),
            KM_ECORRUPT);
    }
}

static void
created_time_comes_from_the_uuidv1_id(void **state)
{
    (void)state;
    struct km_idgen g;
    uint8_t node[6] = {1, 2, 3, 4, 5, 6};
    char id[KM_ID_HEX_LEN + 1];
    struct message *m;

    km_idgen_init(&g, node);
    km_idgen_next(&g, id);
    assert_int_equal(message_new(id, "", "u@d.test", NULL, &m), 0);
    int64_t now = km_now_wall_ms();
    assert_true(message_created_ms(m) <= now);
    assert_true(message_created_ms(m) > now - 5000);
    message_unref(m);
}

static void
envelope_setters_refuse_broken_addresses(void **state)
{
    (void)state;
    struct message *m = test_msg("u@d.test");

    assert_int_equal(message_set_recipient(m, ""), KM_EINVAL);
    assert_int_equal(message_set_recipient(m, "no-at-sign"), KM_EINVAL);
    assert_int_equal(message_set_recipient(m, "a@b\r\nRCPT"), KM_EINVAL);
    assert_int_equal(message_set_sender(m, ""), 0); /* null sender is ok */
    assert_int_equal(message_set_recipient(m, "x@y.test"), 0);
    assert_string_equal(message_recipient(m), "x@y.test");
    message_unref(m);
}

static void
ids_are_unique_and_32_hex_digits(void **state)
{
    (void)state;
    struct km_idgen g;
    uint8_t node[6] = {0};
    char a[KM_ID_HEX_LEN + 1], b[KM_ID_HEX_LEN + 1];
    uint8_t raw[KM_ID_BYTES];

    km_idgen_init(&g, node);
    km_idgen_next(&g, a);
    for (int i = 0; i < 10000; i++) {
        km_idgen_next(&g, b);
        assert_string_not_equal(a, b);
        memcpy(a, b, sizeof(a));
    }
    assert_int_equal(strlen(a), 32);
    assert_true(km_id_parse(a, 32, raw));
    assert_false(km_id_parse("xyz", 3, raw));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            queue_name_is_the_lowercased_recipient_domain_by_default),
        cmocka_unit_test(
            queue_name_follows_kumomta_campaign_tenant_routing_form),
        cmocka_unit_test(
            spool_record_round_trip_keeps_envelope_meta_and_schedule),
        cmocka_unit_test(spool_record_that_does_not_parse_is_corrupt),
        cmocka_unit_test(created_time_comes_from_the_uuidv1_id),
        cmocka_unit_test(envelope_setters_refuse_broken_addresses),
        cmocka_unit_test(ids_are_unique_and_32_hex_digits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
