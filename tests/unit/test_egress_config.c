/* test_egress_config.c - queue_config, egress_source, egress_pool and
 * egress_path objects: KumoMTA's code defaults, every field, the accepted
 * forms of connection_limit and mx_list entries, bad values named in the
 * error, the smooth weighted round-robin of pools, and prohibited/skip host
 * matching for IPv4 and IPv6. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "base/km.h"
#include "egress_config.h"

/* ---- Fixture ---- */

struct fixture {
    struct queue_config qc;
    struct egress_source src;
    struct egress_pool pool;
    struct egress_path_config path;
    char err[256];
};

static int
setup(void **state)
{
    *state = test_calloc(1, sizeof(struct fixture));
    return 0;
}

/* Every parse leaves its struct zeroed on failure, so fini is always safe. */
static int
teardown(void **state)
{
    struct fixture *f = *state;

    egress_queue_config_fini(&f->qc);
    egress_source_fini(&f->src);
    egress_pool_fini(&f->pool);
    egress_path_config_fini(&f->path);
    test_free(f);
    return 0;
}

/* ---- Helpers ---- */

/* JSON from text written with single quotes (turned into double quotes);
 * NULL text gives NULL. */
static json_t *
jload(const char *text)
{
    json_error_t jerr;
    char *s;
    json_t *j;

    if (text == NULL) {
        return NULL;
    }
    s = km_strdup(text);
    for (char *p = s; *p != '\0'; p++) {
        if (*p == '\'') {
            *p = '"';
        }
    }
    j = json_loads(s, 0, &jerr);
    free(s);
    if (j == NULL) {
        fail_msg("bad test JSON: %s: %s", text, jerr.text);
    }
    return j;
}

static int
parse_queue(struct fixture *f, const char *text)
{
    json_t *j = jload(text);
    int rv;

    egress_queue_config_fini(&f->qc);
    f->err[0] = '\0';
    rv = egress_queue_config_parse(j, &f->qc, f->err, sizeof(f->err));
    json_decref(j);
    return rv;
}

static int
parse_source(struct fixture *f, const char *text)
{
    json_t *j = jload(text);
    int rv;

    egress_source_fini(&f->src);
    f->err[0] = '\0';
    rv = egress_source_parse(j, &f->src, f->err, sizeof(f->err));
    json_decref(j);
    return rv;
}

static int
parse_pool(struct fixture *f, const char *text)
{
    json_t *j = jload(text);
    int rv;

    egress_pool_fini(&f->pool);
    f->err[0] = '\0';
    rv = egress_pool_parse(j, &f->pool, f->err, sizeof(f->err));
    json_decref(j);
    return rv;
}

static int
parse_path(struct fixture *f, const char *text)
{
    json_t *j = jload(text);
    int rv;

    egress_path_config_fini(&f->path);
    f->err[0] = '\0';
    rv = egress_path_config_parse(j, &f->path, f->err, sizeof(f->err));
    json_decref(j);
    return rv;
}

/* Parsing `text` as a path fails with KM_ECONFIG naming `key`. */
static void
assert_path_error(struct fixture *f, const char *text, const char *key)
{
    assert_int_equal(parse_path(f, text), KM_ECONFIG);
    if (strstr(f->err, key) == NULL) {
        fail_msg("error for %s does not name %s: %s", text, key, f->err);
    }
    assert_null(f->path.prohibited_hosts.v);
}

static void
assert_queue_error(struct fixture *f, const char *text, const char *key)
{
    assert_int_equal(parse_queue(f, text), KM_ECONFIG);
    if (strstr(f->err, key) == NULL) {
        fail_msg("error for %s does not name %s: %s", text, key, f->err);
    }
    assert_null(f->qc.egress_pool);
}

/* Whether the path refuses the IPv4 or IPv6 address text. */
static bool
prohibited(struct fixture *f, const char *ip)
{
    struct sockaddr_storage ss;

    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':') != NULL) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

        s6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

        s4->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
    }
    return egress_path_host_prohibited(&f->path, (struct sockaddr *)&ss);
}

/* egress_parse_mx_list_entry succeeds with the given results. */
static void
assert_mx(const char *s, const char *host, uint16_t port, bool literal)
{
    char *h = NULL;
    uint16_t p = 1234;
    bool lit = !literal;

    if (egress_parse_mx_list_entry(s, &h, &p, &lit) != 0) {
        fail_msg("mx entry '%s' refused", s);
    }
    assert_string_equal(h, host);
    assert_int_equal(p, port);
    assert_int_equal(lit, literal);
    free(h);
}

static void
assert_mx_bad(const char *s)
{
    char *h = NULL;
    uint16_t p = 0;
    bool lit = false;

    if (egress_parse_mx_list_entry(s, &h, &p, &lit) != KM_EINVAL) {
        fail_msg("mx entry '%s' accepted as '%s'", s, h);
    }
    assert_null(h);
}

/* ---- Tests: queue_config ---- */

static void
queue_config_null_and_empty_take_defaults(void **state)
{
    struct fixture *f = *state;
    const char *inputs[] = {NULL, "{}", "{'__kind':'queue_config'}"};

    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        assert_int_equal(parse_queue(f, inputs[i]), 0);
        assert_int_equal(f->qc.retry_interval_ms, 20 * 60 * 1000);
        assert_int_equal(f->qc.max_retry_interval_ms, 0);
        assert_int_equal(f->qc.max_age_ms, 7ull * 86400 * 1000);
        assert_string_equal(f->qc.egress_pool, "unspecified");
        assert_null(f->qc.max_message_rate);
        assert_int_equal(f->qc.protocol, EGRESS_PROTO_SMTP);
        assert_null(f->qc.mx_list);
        assert_int_equal(f->qc.n_mx_list, 0);
        assert_null(f->qc.maildir_path);
        assert_int_equal(f->qc.maildir_dir_mode, 0750);
        assert_int_equal(f->qc.maildir_file_mode, 0640);
        assert_int_equal(f->qc.refresh_interval_ms, 60 * 1000);
        assert_int_equal(f->qc.reap_interval_ms, 10 * 60 * 1000);
    }
}

static void
queue_config_every_field_parsed(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(
        parse_queue(f, "{'__kind':'queue_config','retry_interval':5000,"
                       "'max_retry_interval':60000,'max_age':3600000,"
                       "'egress_pool':'pool-a','max_message_rate':'100/s',"
                       "'refresh_interval':1000,'reap_interval':2000,"
                       "'strategy':'SkipList',"
                       "'protocol':{'smtp':{'mx_list':['mx.example.com']}}}"),
        0);
    assert_int_equal(f->qc.retry_interval_ms, 5000);
    assert_int_equal(f->qc.max_retry_interval_ms, 60000);
    assert_int_equal(f->qc.max_age_ms, 3600000);
    assert_string_equal(f->qc.egress_pool, "pool-a");
    assert_string_equal(f->qc.max_message_rate, "100/s");
    assert_int_equal(f->qc.refresh_interval_ms, 1000);
    assert_int_equal(f->qc.reap_interval_ms, 2000);
    assert_int_equal(f->qc.protocol, EGRESS_PROTO_SMTP_MX_LIST);
    assert_int_equal(f->qc.n_mx_list, 1);
    assert_string_equal(f->qc.mx_list[0].host, "mx.example.com");
}

static void
queue_config_mx_list_keeps_every_entry_form(void **state)
{
    struct fixture *f = *state;
    const struct egress_mx_entry *e;

    assert_int_equal(
        parse_queue(f, "{'protocol':{'smtp':{'mx_list':["
                       "'smart.host.local','relay.example:2525',"
                       "'[10.0.0.1]','[10.0.0.2]:587','[IPv6:2001:db8::1]',"
                       "{'name':'mx.example.com','addr':'10.0.0.3'}]}}}"),
        0);
    assert_int_equal(f->qc.protocol, EGRESS_PROTO_SMTP_MX_LIST);
    assert_int_equal(f->qc.n_mx_list, 6);
    e = f->qc.mx_list;
    assert_string_equal(e[0].host, "smart.host.local");
    assert_int_equal(e[0].port, 0);
    assert_false(e[0].is_literal);
    assert_null(e[0].name);
    assert_string_equal(e[1].host, "relay.example");
    assert_int_equal(e[1].port, 2525);
    assert_string_equal(e[2].host, "10.0.0.1");
    assert_true(e[2].is_literal);
    assert_string_equal(e[3].host, "10.0.0.2");
    assert_int_equal(e[3].port, 587);
    assert_string_equal(e[4].host, "2001:db8::1");
    assert_true(e[4].is_literal);
    assert_string_equal(e[5].host, "10.0.0.3");
    assert_string_equal(e[5].name, "mx.example.com");
    assert_true(e[5].is_literal);

    /* smtp without mx_list is plain MX routing. */
    assert_int_equal(parse_queue(f, "{'protocol':{'smtp':{}}}"), 0);
    assert_int_equal(f->qc.protocol, EGRESS_PROTO_SMTP);
}

static void
queue_config_maildir_protocol_keeps_template(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(
        parse_queue(f, "{'protocol':{'maildir_path':'/m/{{ domain_part }}'}}"),
        0);
    assert_int_equal(f->qc.protocol, EGRESS_PROTO_MAILDIR);
    assert_string_equal(f->qc.maildir_path, "/m/{{ domain_part }}");
    assert_int_equal(f->qc.maildir_dir_mode, 0750);

    assert_int_equal(parse_queue(f, "{'protocol':{'maildir_path':'/m',"
                                    "'dir_mode':509,'file_mode':436}}"),
                     0);
    assert_int_equal(f->qc.maildir_dir_mode, 0775);
    assert_int_equal(f->qc.maildir_file_mode, 0664);
}

static void
queue_config_bad_values_name_the_key(void **state)
{
    struct fixture *f = *state;

    assert_queue_error(f, "{'retry_interval':-1}", "retry_interval");
    assert_queue_error(f, "{'retry_interval':0}", "retry_interval");
    assert_queue_error(f, "{'max_age':'7d'}", "max_age");
    assert_queue_error(f, "{'egress_pool':''}", "egress_pool");
    assert_queue_error(f, "{'strategy':'Fifo'}", "strategy");
    assert_queue_error(f, "{'__kind':'egress_path'}", "queue_config");
    assert_queue_error(f, "{'protocol':{'smtp':{'mx_list':['ok','[1.2.3']}}}",
                       "mx_list[2]");
    assert_queue_error(f, "{'protocol':{'smtp':{'mx_list':[]}}}", "mx_list");
    assert_queue_error(
        f, "{'protocol':{'smtp':{'mx_list':[{'name':'a','addr':'host'}]}}}",
        "mx_list[1].addr");
    assert_queue_error(f, "{'protocol':{'smtp':{},'maildir_path':'/x'}}",
                       "protocol");
    assert_queue_error(f, "{'protocol':{'maildir_path':'/x','dir_mode':70000}}",
                       "dir_mode");
}

/* ---- Tests: mx_list entries ---- */

static void
mx_list_entry_accepts_hosts_ports_and_literals(void **state)
{
    (void)state;
    assert_mx("mx.example.com", "mx.example.com", 0, false);
    assert_mx("mx.example.com.", "mx.example.com.", 0, false);
    assert_mx("mx.example.com:2525", "mx.example.com", 2525, false);
    assert_mx("[192.0.2.1]", "192.0.2.1", 0, true);
    assert_mx("[192.0.2.1]:2525", "192.0.2.1", 2525, true);
    assert_mx("[IPv6:2001:db8::1]", "2001:db8::1", 0, true);
    assert_mx("[ipv6:2001:db8::1]:26", "2001:db8::1", 26, true);
    assert_mx("[::1]:25", "::1", 25, true);
    assert_mx("192.0.2.7", "192.0.2.7", 0, true);
    assert_mx("192.0.2.7:587", "192.0.2.7", 587, true);
    assert_mx("2001:db8::2", "2001:db8::2", 0, true);
}

static void
mx_list_entry_rejects_malformed_text(void **state)
{
    (void)state;
    assert_mx_bad("");
    assert_mx_bad("[192.0.2.1");
    assert_mx_bad("[not-an-ip]");
    assert_mx_bad("[]");
    assert_mx_bad("[IPv6:192.0.2.1]");
    assert_mx_bad("[192.0.2.1]x");
    assert_mx_bad("[192.0.2.1]:");
    assert_mx_bad("host:0");
    assert_mx_bad("host:65536");
    assert_mx_bad("host:25x");
    assert_mx_bad("host:");
    assert_mx_bad(":25");
    assert_mx_bad("a..b");
    assert_mx_bad(".a");
    assert_mx_bad("bad host");
    assert_mx_bad("host/x");
}

/* ---- Tests: egress_source ---- */

static void
egress_source_defaults_and_fields(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(parse_source(f, "{'__kind':'egress_source','name':'s1'}"),
                     0);
    assert_string_equal(f->src.name, "s1");
    assert_null(f->src.source_address);
    assert_null(f->src.ehlo_domain);
    assert_int_equal(f->src.remote_port, 0);
    assert_int_equal(f->src.ttl_ms, 60000);

    assert_int_equal(parse_source(f, "{'name':'s2','source_address':'::1',"
                                     "'ehlo_domain':'mta.example',"
                                     "'remote_port':2525,'ttl':5000}"),
                     0);
    assert_string_equal(f->src.source_address, "::1");
    assert_string_equal(f->src.ehlo_domain, "mta.example");
    assert_int_equal(f->src.remote_port, 2525);
    assert_int_equal(f->src.ttl_ms, 5000);

    egress_source_fini(&f->src);
    egress_source_init_unspecified(&f->src);
    assert_string_equal(f->src.name, "unspecified");
    assert_null(f->src.source_address);
}

static void
egress_source_bad_values_name_the_key(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(parse_source(f, NULL), KM_ECONFIG);
    assert_non_null(strstr(f->err, "name"));
    assert_int_equal(parse_source(f, "{'name':'s','source_address':'host'}"),
                     KM_ECONFIG);
    assert_non_null(strstr(f->err, "source_address"));
    assert_null(f->src.name);
    assert_int_equal(parse_source(f, "{'name':'s','remote_port':65536}"),
                     KM_ECONFIG);
    assert_non_null(strstr(f->err, "remote_port"));
}

/* ---- Tests: egress_pool ---- */

static void
egress_pool_entries_default_to_weight_one(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(parse_pool(f, "{'__kind':'egress_pool','name':'p',"
                                   "'entries':[{'name':'a'},"
                                   "{'name':'b','weight':0}],'ttl':1000}"),
                     0);
    assert_string_equal(f->pool.name, "p");
    assert_int_equal(f->pool.n_entries, 2);
    assert_string_equal(f->pool.entries[0].name, "a");
    assert_int_equal(f->pool.entries[0].weight, 1);
    assert_int_equal(f->pool.entries[1].weight, 0);
    assert_int_equal(f->pool.ttl_ms, 1000);

    assert_int_equal(parse_pool(f, "{'name':'p','entries':[{'weight':1}]}"),
                     KM_ECONFIG);
    assert_non_null(strstr(f->err, "entries[1].name"));
    assert_int_equal(parse_pool(f, "{'entries':[]}"), KM_ECONFIG);
    assert_non_null(strstr(f->err, "name"));
}

static void
egress_pool_two_to_one_is_exact_and_interleaved(void **state)
{
    struct fixture *f = *state;
    uint64_t st = 0;
    int na = 0, nb = 0;
    char seq[301];

    assert_int_equal(parse_pool(f, "{'name':'p','entries':["
                                   "{'name':'a','weight':2},"
                                   "{'name':'b','weight':1}]}"),
                     0);
    for (int i = 0; i < 300; i++) {
        const char *n = egress_pool_choose(&f->pool, &st);

        assert_non_null(n);
        seq[i] = n[0];
        na += n[0] == 'a';
        nb += n[0] == 'b';
    }
    seq[300] = '\0';
    assert_int_equal(na, 200);
    assert_int_equal(nb, 100);
    assert_int_equal(st, 300);
    /* Smooth: the round "aba" repeats, never "aa a" or "bb". */
    for (int i = 0; i < 300; i += 3) {
        assert_memory_equal(seq + i, "aba", 3);
    }
}

static void
egress_pool_replaced_pool_resumes_round(void **state)
{
    struct fixture *f = *state;
    const char *pool = "{'name':'p','entries':[{'name':'a','weight':3},"
                       "{'name':'b','weight':2}]}";
    char expect[11], got[11];
    uint64_t st = 0;

    assert_int_equal(parse_pool(f, pool), 0);
    for (int i = 0; i < 10; i++) {
        expect[i] = egress_pool_choose(&f->pool, &st)[0];
    }
    expect[10] = '\0';
    /* Same picks when the pool is re-parsed (a policy refresh) after each
     * pick, with the caller's counter carried over. */
    st = 0;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(parse_pool(f, pool), 0);
        got[i] = egress_pool_choose(&f->pool, &st)[0];
    }
    got[10] = '\0';
    assert_string_equal(got, expect);
    assert_string_equal(expect, "ababaababa");
}

static void
egress_pool_zero_weight_entry_never_chosen(void **state)
{
    struct fixture *f = *state;
    uint64_t st = 0;

    assert_int_equal(parse_pool(f, "{'name':'p','entries':["
                                   "{'name':'off','weight':0},"
                                   "{'name':'on','weight':1},"
                                   "{'name':'off2','weight':0}]}"),
                     0);
    for (int i = 0; i < 50; i++) {
        assert_string_equal(egress_pool_choose(&f->pool, &st), "on");
    }
}

static void
egress_pool_without_weight_returns_null(void **state)
{
    struct fixture *f = *state;
    uint64_t st = 7;

    assert_int_equal(parse_pool(f, "{'name':'empty'}"), 0);
    assert_int_equal(f->pool.n_entries, 0);
    assert_null(egress_pool_choose(&f->pool, &st));
    assert_int_equal(parse_pool(f, "{'name':'zero','entries':["
                                   "{'name':'a','weight':0}]}"),
                     0);
    assert_null(egress_pool_choose(&f->pool, &st));
    assert_int_equal(st, 7);
    assert_non_null(strstr(EGRESS_TXT_NO_SOURCES, "451 4.4.4 no non-zero"));
}

static void
egress_pool_unspecified_has_one_source(void **state)
{
    struct fixture *f = *state;
    uint64_t st = 0;

    egress_pool_init_unspecified(&f->pool);
    assert_string_equal(f->pool.name, "unspecified");
    assert_int_equal(f->pool.n_entries, 1);
    assert_string_equal(egress_pool_choose(&f->pool, &st), "unspecified");
    assert_string_equal(egress_pool_choose(&f->pool, &st), "unspecified");
}

/* ---- Tests: egress_path ---- */

static void
egress_path_null_and_empty_take_code_defaults(void **state)
{
    struct fixture *f = *state;
    const char *inputs[] = {NULL, "{}", "{'__kind':'egress_path'}"};

    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        const struct egress_path_config *c = &f->path;

        assert_int_equal(parse_path(f, inputs[i]), 0);
        assert_int_equal(c->connection_limit, 32);
        assert_false(c->connection_limit_local);
        assert_null(c->max_connection_rate);
        assert_int_equal(c->max_deliveries_per_connection, 1024);
        assert_null(c->max_message_rate);
        assert_int_equal(c->max_ready, 1024);
        assert_int_equal(c->enable_tls, EGRESS_TLS_OPPORTUNISTIC);
        assert_int_equal(c->smtp_port, 25);
        assert_int_equal(c->prohibited_hosts.n, 4);
        assert_string_equal(c->prohibited_hosts.text[0], "127.0.0.0/8");
        assert_string_equal(c->prohibited_hosts.text[1], "::1");
        assert_string_equal(c->prohibited_hosts.text[2], "0.0.0.0");
        assert_string_equal(c->prohibited_hosts.text[3], "::");
        assert_int_equal(c->skip_hosts.n, 0);
        assert_null(c->ehlo_domain);
        assert_true(c->enable_pipelining);
        assert_true(c->enable_rset);
        assert_null(c->smtp_auth_plain_username);
        assert_null(c->smtp_auth_plain_password);
        assert_int_equal(c->consecutive_connection_failures_before_delay, 100);
        assert_int_equal(c->connect_timeout_ms, 60000);
        assert_int_equal(c->banner_timeout_ms, 60000);
        assert_int_equal(c->ehlo_timeout_ms, 300000);
        assert_int_equal(c->mail_from_timeout_ms, 300000);
        assert_int_equal(c->rcpt_to_timeout_ms, 300000);
        /* KumoMTA's code, not its docs (30 s, 60 s, 60 s). */
        assert_int_equal(c->data_timeout_ms, 300000);
        assert_int_equal(c->data_dot_timeout_ms, 300000);
        assert_int_equal(c->idle_timeout_ms, 5000);
        assert_int_equal(c->rset_timeout_ms, 5000);
        assert_int_equal(c->starttls_timeout_ms, 5000);
        assert_int_equal(c->refresh_interval_ms, 60000);
    }
}

static void
egress_path_every_field_parsed(void **state)
{
    struct fixture *f = *state;
    const struct egress_path_config *c = &f->path;

    assert_int_equal(
        parse_path(f,
                   "{'connection_limit':7,'max_connection_rate':'10/s',"
                   "'max_deliveries_per_connection':3,'max_message_rate':'5/m',"
                   "'max_ready':9,'enable_tls':'Required','smtp_port':2525,"
                   "'prohibited_hosts':['192.0.2.0/24'],'skip_hosts':'::/0',"
                   "'ehlo_domain':'out.example','enable_pipelining':false,"
                   "'enable_rset':false,'smtp_auth_plain_username':'u',"
                   "'smtp_auth_plain_password':'p',"
                   "'consecutive_connection_failures_before_delay':4,"
                   "'connect_timeout':1,'banner_timeout':2,'ehlo_timeout':3,"
                   "'mail_from_timeout':4,'rcpt_to_timeout':5,'data_timeout':6,"
                   "'data_dot_timeout':7,'rset_timeout':8,'starttls_timeout':9,"
                   "'idle_timeout':0,'refresh_interval':11}"),
        0);
    assert_int_equal(c->connection_limit, 7);
    assert_string_equal(c->max_connection_rate, "10/s");
    assert_int_equal(c->max_deliveries_per_connection, 3);
    assert_string_equal(c->max_message_rate, "5/m");
    assert_int_equal(c->max_ready, 9);
    assert_int_equal(c->enable_tls, EGRESS_TLS_REQUIRED);
    assert_int_equal(c->smtp_port, 2525);
    assert_int_equal(c->prohibited_hosts.n, 1);
    assert_string_equal(c->prohibited_hosts.text[0], "192.0.2.0/24");
    assert_int_equal(c->skip_hosts.n, 1);
    assert_string_equal(c->skip_hosts.text[0], "::/0");
    assert_string_equal(c->ehlo_domain, "out.example");
    assert_false(c->enable_pipelining);
    assert_false(c->enable_rset);
    assert_string_equal(c->smtp_auth_plain_username, "u");
    assert_string_equal(c->smtp_auth_plain_password, "p");
    assert_int_equal(c->consecutive_connection_failures_before_delay, 4);
    assert_int_equal(c->connect_timeout_ms, 1);
    assert_int_equal(c->banner_timeout_ms, 2);
    assert_int_equal(c->ehlo_timeout_ms, 3);
    assert_int_equal(c->mail_from_timeout_ms, 4);
    assert_int_equal(c->rcpt_to_timeout_ms, 5);
    assert_int_equal(c->data_timeout_ms, 6);
    assert_int_equal(c->data_dot_timeout_ms, 7);
    assert_int_equal(c->rset_timeout_ms, 8);
    assert_int_equal(c->starttls_timeout_ms, 9);
    assert_int_equal(c->idle_timeout_ms, 0);
    assert_int_equal(c->refresh_interval_ms, 11);
}

static void
egress_path_connection_limit_forms(void **state)
{
    struct fixture *f = *state;

    const struct {
        const char *json;
        uint32_t limit;
        bool local;
    } ok[] = {
        {"{'connection_limit':10}", 10, false},
        {"{'connection_limit':'10'}", 10, false},
        {"{'connection_limit':'1,000'}", 1000, false},
        {"{'connection_limit':'10_000'}", 10000, false},
        {"{'connection_limit':'local:20'}", 20, true},
        {"{'connection_limit':'local:1,500'}", 1500, true},
    };

    const char *bad[] = {
        "{'connection_limit':0}",          "{'connection_limit':'0'}",
        "{'connection_limit':-1}",         "{'connection_limit':'1,,0'}",
        "{'connection_limit':',1'}",       "{'connection_limit':'1,'}",
        "{'connection_limit':'local:'}",   "{'connection_limit':'abc'}",
        "{'connection_limit':'remote:5'}", "{'connection_limit':'99999999999'}",
        "{'connection_limit':true}",
    };

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_int_equal(parse_path(f, ok[i].json), 0);
        assert_int_equal(f->path.connection_limit, ok[i].limit);
        assert_int_equal(f->path.connection_limit_local, ok[i].local);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_path_error(f, bad[i], "connection_limit");
    }
}

static void
egress_path_enable_tls_maps_every_mode(void **state)
{
    struct fixture *f = *state;

    const struct {
        const char *json;
        enum egress_tls mode;
    } ok[] = {
        {"{'enable_tls':'Disabled'}", EGRESS_TLS_DISABLED},
        {"{'enable_tls':'Opportunistic'}", EGRESS_TLS_OPPORTUNISTIC},
        {"{'enable_tls':'OpportunisticInsecure'}",
         EGRESS_TLS_OPPORTUNISTIC_INSECURE},
        {"{'enable_tls':'Required'}", EGRESS_TLS_REQUIRED},
        {"{'enable_tls':'RequiredInsecure'}", EGRESS_TLS_REQUIRED_INSECURE},
    };

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_int_equal(parse_path(f, ok[i].json), 0);
        assert_int_equal(f->path.enable_tls, ok[i].mode);
        assert_non_null(strstr(ok[i].json, egress_tls_name(ok[i].mode)));
    }
    assert_path_error(f, "{'enable_tls':'opportunistic'}", "enable_tls");
    assert_path_error(f, "{'enable_tls':true}", "enable_tls");
}

static void
egress_path_bad_values_name_the_key(void **state)
{
    struct fixture *f = *state;

    assert_path_error(f, "{'smtp_port':0}", "smtp_port");
    assert_path_error(f, "{'smtp_port':65536}", "smtp_port");
    assert_path_error(f, "{'connect_timeout':-5}", "connect_timeout");
    assert_path_error(f, "{'data_timeout':0}", "data_timeout");
    assert_path_error(f, "{'idle_timeout':'5s'}", "idle_timeout");
    assert_path_error(f, "{'prohibited_hosts':['127.0.0.1/8']}",
                      "prohibited_hosts[1]");
    assert_path_error(f, "{'skip_hosts':['10.0.0.0/8','300.1.1.1']}",
                      "skip_hosts[2]");
    assert_path_error(f, "{'skip_hosts':['::/129']}", "skip_hosts[1]");
    assert_path_error(f, "{'max_ready':0}", "max_ready");
    assert_path_error(f, "{'max_deliveries_per_connection':-1}",
                      "max_deliveries_per_connection");
    assert_path_error(f, "{'enable_pipelining':'yes'}", "enable_pipelining");
    assert_path_error(f, "{'ehlo_domain':''}", "ehlo_domain");
    assert_path_error(f, "{'__kind':'egress_source'}", "egress_path");
}

static void
egress_path_default_prohibits_loopback_and_unspecified(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(parse_path(f, NULL), 0);
    assert_true(prohibited(f, "127.0.0.1"));
    assert_true(prohibited(f, "127.255.255.254"));
    assert_true(prohibited(f, "0.0.0.0"));
    assert_true(prohibited(f, "::1"));
    assert_true(prohibited(f, "::"));
    assert_true(prohibited(f, "::ffff:127.0.0.1"));
    assert_false(prohibited(f, "128.0.0.1"));
    assert_false(prohibited(f, "0.0.0.1"));
    assert_false(prohibited(f, "192.0.2.1"));
    assert_false(prohibited(f, "::2"));
    assert_false(prohibited(f, "2001:db8::1"));
}

static void
egress_path_skip_hosts_match_v4_and_v6(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(parse_path(f,
                                "{'prohibited_hosts':[],"
                                "'skip_hosts':['10.0.0.0/8','2001:db8::/32']}"),
                     0);
    assert_false(prohibited(f, "127.0.0.1"));
    assert_false(prohibited(f, "::1"));
    assert_true(prohibited(f, "10.1.2.3"));
    assert_true(prohibited(f, "::ffff:10.9.9.9"));
    assert_false(prohibited(f, "11.0.0.1"));
    assert_true(prohibited(f, "2001:db8:ffff::1"));
    assert_false(prohibited(f, "2001:db9::1"));

    /* ::/0 skips every IPv6 host and no IPv4 one. */
    assert_int_equal(parse_path(f, "{'prohibited_hosts':[],"
                                   "'skip_hosts':['::/0']}"),
                     0);
    assert_true(prohibited(f, "2a00:1450::1"));
    assert_false(prohibited(f, "192.0.2.1"));
}

static void
cidr_parse_is_strict(void **state)
{
    struct km_cidr c;

    (void)state;
    assert_int_equal(km_cidr_parse("10.0.0.0/8", &c), 0);
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 8);
    assert_int_equal(km_cidr_parse("192.0.2.1", &c), 0);
    assert_int_equal(c.prefix, 32);
    assert_int_equal(km_cidr_parse("2001:db8::/32", &c), 0);
    assert_int_equal(c.family, AF_INET6);
    assert_int_equal(km_cidr_parse("10.0.0.1/8", &c), KM_EINVAL);
    assert_int_equal(km_cidr_parse("10.0.0.0/33", &c), KM_EINVAL);
    assert_int_equal(km_cidr_parse("10.0.0.0/", &c), KM_EINVAL);
    assert_int_equal(km_cidr_parse("10.0.0.0/x", &c), KM_EINVAL);
    assert_int_equal(km_cidr_parse("host", &c), KM_EINVAL);
    assert_int_equal(km_cidr_parse("", &c), KM_EINVAL);
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(queue_config_null_and_empty_take_defaults),
        T(queue_config_every_field_parsed),
        T(queue_config_mx_list_keeps_every_entry_form),
        T(queue_config_maildir_protocol_keeps_template),
        T(queue_config_bad_values_name_the_key),
        T(mx_list_entry_accepts_hosts_ports_and_literals),
        T(mx_list_entry_rejects_malformed_text),
        T(egress_source_defaults_and_fields),
        T(egress_source_bad_values_name_the_key),
        T(egress_pool_entries_default_to_weight_one),
        T(egress_pool_two_to_one_is_exact_and_interleaved),
        T(egress_pool_replaced_pool_resumes_round),
        T(egress_pool_zero_weight_entry_never_chosen),
        T(egress_pool_without_weight_returns_null),
        T(egress_pool_unspecified_has_one_source),
        T(egress_path_null_and_empty_take_code_defaults),
        T(egress_path_every_field_parsed),
        T(egress_path_connection_limit_forms),
        T(egress_path_enable_tls_maps_every_mode),
        T(egress_path_bad_values_name_the_key),
        T(egress_path_default_prohibits_loopback_and_unspecified),
        T(egress_path_skip_hosts_match_v4_and_v6),
        T(cidr_parse_is_strict),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
