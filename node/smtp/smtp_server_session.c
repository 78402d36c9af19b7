/* smtp_server_session.c - the command state machine of one ESMTP session
 * with KumoMTA's replies (KUMOMTA-API.md §2.3): greeting, EHLO/HELO,
 * MAIL, RCPT (with the relay decision and the listener_domain lookups),
 * DATA, RSET, NOOP, QUIT, STARTTLS and AUTH PLAIN, each with its policy
 * hook. Commands are taken from the read buffer in order (pipelining);
 * processing pauses while a message waits for ingest_submit. Never logs
 * AUTH data or message bodies. Loop thread only. */
#include "smtp_server_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/km.h"
#include "base/log.h"
#include "policy.h"
#include "tls.h"

#define SMTP_SERVER_AUTH_LINE_LIMIT 16384

static const char *
smtp_server_host(const struct smtp_server_session *s)
{
    return s->srv != NULL ? s->srv->cfg.hostname : km_hostname();
}

/* Reply "<code> <enhanced> <hostname> <rest>", KumoMTA's form for texts
 * that name the host. */
static void
smtp_server_reply_host(struct smtp_server_session *s, int code,
                       const char *enhanced, const char *rest,
                       const char *command)
{
    char text[512];

    snprintf(text, sizeof(text), "%s %s %s", enhanced, smtp_server_host(s),
             rest);
    smtp_server_reply(s, code, text, command);
}

static void
smtp_server_close_with(struct smtp_server_session *s, int code,
                       const char *enhanced, const char *rest)
{
    smtp_server_reply_host(s, code, enhanced, rest, NULL);
    smtp_server_session_finish(s);
}

void
smtp_server_session_reset_txn(struct smtp_server_session *s)
{
    free(s->sender);
    s->sender = NULL;
    for (size_t i = 0; i < s->n_rcpts; i++) {
        free(s->rcpts[i]);
    }
    free(s->rcpts);
    s->rcpts = NULL;
    s->n_rcpts = 0;
    s->in_txn = false;
    s->smtputf8 = false;
    smtp_server_data_fini(&s->data);
}

void
smtp_server_session_fini_state(struct smtp_server_session *s)
{
    smtp_server_session_reset_txn(s);
    free(s->ehlo_domain);
    s->ehlo_domain = NULL;
    free(s->last_command);
    s->last_command = NULL;
    for (size_t i = 0; i < s->n_domains; i++) {
        free(s->domains[i].domain);
        json_decref(s->domains[i].value);
    }
    s->n_domains = 0;
}

int
smtp_server_session_call(struct smtp_server_session *s, const char *event,
                         const struct policy_arg *args, size_t nargs,
                         struct policy_result *res, const char *command)
{
    int rv;

    memset(res, 0, sizeof(*res));
    if (s->d.policy == NULL) {
        return 0;
    }
    rv = policy_call(s->d.policy, event, args, nargs, res, NULL, 0);
    if (rv == 0) {
        return 0;
    }
    if (rv == KM_EREJECT) {
        LOG_TRACE(TRACE_SMTP, "smtp_server: %s: %s rejected: %d", s->session_id,
                  event, res->reject.code);
        smtp_server_reply(s, res->reject.code, res->reject.text, command);
        if (res->reject.disconnect || res->reject.code == 421) {
            smtp_server_session_finish(s);
        }
        return KM_EREJECT;
    }
    /* The policy logged its traceback once (policy.h). */
    smtp_server_reply_host(s, 451, "4.3.0", "technical difficulties", command);
    return KM_EPOLICY;
}

void
smtp_server_session_greet(struct smtp_server_session *s)
{
    const struct smtp_server_config *cfg = smtp_server_session_cfg(s);
    struct policy_result res;
    struct policy_arg arg = {.kind = POLICY_ARG_CONN_META};
    char text[600];
    int rv;

    if (smtp_server_is_shutting_down(s)) {
        smtp_server_close_with(s, 421, "4.3.2", "shutting down");
        return;
    }
    if (!s->srv->ready) {
        smtp_server_close_with(s, 421, "4.3.2",
                               "waiting for spool startup. Try again soon!");
        return;
    }
    arg.u.json = s->conn_meta;
    memset(&res, 0, sizeof(res));
    if (s->d.policy != NULL) {
        rv = policy_call(s->d.policy, "smtp_server_connection_accepted", &arg,
                         1, &res, NULL, 0);
        if (rv == KM_EREJECT) {
            /* Any refusal here ends the connection. */
            smtp_server_reply(s, res.reject.code, res.reject.text, NULL);
            policy_result_fini(&res);
            smtp_server_session_finish(s);
            return;
        }
        policy_result_fini(&res);
        if (rv != 0) {
            smtp_server_close_with(s, 421, "4.3.0", "technical difficulties");
            return;
        }
    }
    snprintf(text, sizeof(text), "%s %s", cfg->hostname, cfg->banner);
    smtp_server_reply(s, 220, text, NULL);
    smtp_server_enter_state(s, SMTP_SERVER_ST_COMMAND);
    smtp_server_session_update_io(s);
}

/* ---- Relaying ---- */

/* The listener_domain object for domain (borrowed, may be NULL), through
 * the per-session cache. Returns 0, or an error after replying. */
static int
smtp_server_lookup_domain(struct smtp_server_session *s, const char *domain,
                          const char *command, json_t **out)
{
    struct policy_arg args[3];
    struct policy_result res;
    struct smtp_server_domain_entry *e;
    json_t *v;
    int rv;

    *out = NULL;
    for (size_t i = 0; i < s->n_domains; i++) {
        if (strcmp(s->domains[i].domain, domain) == 0) {
            *out = s->domains[i].value;
            return 0;
        }
    }
    args[0].kind = POLICY_ARG_STRING;
    args[0].u.str = domain;
    args[1].kind = POLICY_ARG_STRING;
    args[1].u.str = s->local_hostport;
    args[2].kind = POLICY_ARG_CONN_META;
    args[2].u.json = s->conn_meta;
    rv = smtp_server_session_call(s, "get_listener_domain", args, 3, &res,
                                  command);
    if (rv != 0) {
        policy_result_fini(&res);
        return rv;
    }
    v = res.value;
    if (!json_is_object(v) ||
        (json_object_get(v, "__kind") != NULL &&
         strcmp(json_string_value(json_object_get(v, "__kind")) != NULL
                    ? json_string_value(json_object_get(v, "__kind"))
                    : "",
                "listener_domain") != 0)) {
        v = NULL;
    }
    /* Bounded, so random domains cannot grow it (KumoMTA keeps 16). */
    if (s->n_domains == SMTP_SERVER_DOMAIN_CACHE) {
        free(s->domains[0].domain);
        json_decref(s->domains[0].value);
        memmove(&s->domains[0], &s->domains[1],
                (SMTP_SERVER_DOMAIN_CACHE - 1) * sizeof(s->domains[0]));
        s->n_domains--;
    }
    e = &s->domains[s->n_domains++];
    e->domain = km_strdup(domain);
    e->value = v != NULL ? json_incref(v) : NULL;
    policy_result_fini(&res);
    *out = e->value;
    return 0;
}

static bool
smtp_server_report_should_log(json_t *v)
{
    const char *str = json_string_value(v);

    if (json_is_true(v)) {
        return true;
    }
    return str != NULL && (strcmp(str, "LogThenDrop") == 0 ||
                           strcmp(str, "LogThenRelay") == 0);
}

static const char *
smtp_server_domain_of(const char *addr)
{
    const char *at = strrchr(addr, '@');
    return at != NULL ? at + 1 : "";
}

int
smtp_server_session_check_relay(struct smtp_server_session *s,
                                const char *sender, const char *recipient,
                                const char *command, bool *relay, bool *accept)
{
    const struct smtp_server_config *cfg = smtp_server_session_cfg(s);
    bool hosts_ok, from_ok = false, to_ok = false, reports = false;
    const char *sdom = smtp_server_domain_of(sender);
    const char *rdom = smtp_server_domain_of(recipient);
    json_t *dom;
    int rv;

    hosts_ok = km_cidr_list_contains_sa(&cfg->relay_hosts,
                                        (const struct sockaddr *)&s->peer_sa);
    if (sdom[0] != '\0') {
        rv = smtp_server_lookup_domain(s, sdom, command, &dom);
        if (rv != 0) {
            return rv;
        }
        if (dom != NULL && json_object_get(dom, "relay_from") != NULL) {
            struct km_cidr_list set;
            if (smtp_server_config_cidrs(json_object_get(dom, "relay_from"),
                                         &set, "relay_from", NULL, 0) == 0) {
                from_ok = km_cidr_list_contains_sa(
                    &set, (const struct sockaddr *)&s->peer_sa);
                km_cidr_list_fini(&set);
            }
        }
    }
    if (rdom[0] != '\0') {
        rv = smtp_server_lookup_domain(s, rdom, command, &dom);
        if (rv != 0) {
            return rv;
        }
        if (dom != NULL) {
            to_ok = json_is_true(json_object_get(dom, "relay_to"));
            reports =
                smtp_server_report_should_log(
                    json_object_get(dom, "log_oob")) ||
                smtp_server_report_should_log(json_object_get(dom, "log_arf"));
        }
    }
    *relay = hosts_ok || from_ok || to_ok;
    *accept = *relay || reports;
    LOG_TRACE(TRACE_SMTP,
              "smtp_server: %s: relay sender=%s recip=%s hosts=%d from=%d "
              "to=%d -> relay=%d",
              s->session_id, sdom, rdom, hosts_ok, from_ok, to_ok, *relay);
    return 0;
}

/* ---- Commands ---- */

static void
smtp_server_syntax_error(struct smtp_server_session *s, const char *why,
                         const char *line)
{
    char text[300];

    snprintf(text, sizeof(text), SMTP_SERVER_TXT_SYNTAX "%s", why);
    smtp_server_reply(s, 501, text, line);
}

/* The first word of args (the EHLO/HELO domain), or NULL if empty. */
static char *
smtp_server_first_word(const char *args)
{
    size_t n = strcspn(args, " ");
    return n > 0 ? km_strndup(args, n) : NULL;
}

static void
smtp_server_cmd_ehlo(struct smtp_server_session *s, const char *args,
                     const char *line, bool extended)
{
    struct policy_arg pa[3];
    struct policy_result res;
    json_t *ext;
    struct buf text = BUF_INIT;
    char *domain = smtp_server_first_word(args);
    size_t i;
    json_t *v;

    if (domain == NULL) {
        smtp_server_syntax_error(
            s, extended ? "EHLO requires a domain" : "HELO requires a domain",
            line);
        return;
    }
    ext = json_array();
    json_array_append_new(ext, json_string("PIPELINING"));
    json_array_append_new(ext, json_string("ENHANCEDSTATUSCODES"));
    json_array_append_new(ext, json_string("8BITMIME"));
    json_array_append_new(ext, json_string("SMTPUTF8"));
    if (!s->tls_active && s->srv->tls != NULL) {
        json_array_append_new(ext, json_string("STARTTLS"));
    } else if (s->tls_active) {
        json_array_append_new(ext, json_string("AUTH PLAIN"));
    }
    pa[0].kind = POLICY_ARG_STRING;
    pa[0].u.str = domain;
    pa[1].kind = POLICY_ARG_CONN_META;
    pa[1].u.json = s->conn_meta;
    pa[2].kind = POLICY_ARG_JSON;
    pa[2].u.json = ext;
    if (smtp_server_session_call(s, "smtp_server_ehlo", pa, extended ? 3 : 2,
                                 &res, line) != 0) {
        goto out;
    }
    if (extended && json_is_array(res.value)) {
        /* The hook returned a replacement extension list. */
        json_decref(ext);
        ext = json_array();
        json_array_foreach(res.value, i, v)
        {
            if (json_is_string(v)) {
                json_array_append(ext, v);
            }
        }
    }
    if (extended) {
        buf_appendf(&text, "%s Aloha %s", s->srv->cfg.hostname, domain);
        json_array_foreach(ext, i, v)
        {
            buf_appendf(&text, "\n%s", json_string_value(v));
        }
    } else {
        buf_appendf(&text, "Hello %s!", domain);
    }
    smtp_server_reply(s, 250, text.data, NULL);
    /* RFC 5321 4.1.4: EHLO/HELO also resets the transaction. */
    smtp_server_session_reset_txn(s);
    free(s->ehlo_domain);
    s->ehlo_domain = domain;
    domain = NULL;
    json_object_set_new(s->conn_meta, "ehlo_domain",
                        json_string(s->ehlo_domain));
out:
    policy_result_fini(&res);
    buf_fini(&text);
    json_decref(ext);
    free(domain);
}

static void
smtp_server_cmd_mail(struct smtp_server_session *s, const char *args,
                     const char *line)
{
    struct smtp_server_path path;
    struct policy_arg pa[2];
    struct policy_result res;
    const char *why = "syntax error";
    char text[1100];

    if (s->in_txn) {
        smtp_server_reply(s, 503, SMTP_SERVER_TXT_MAIL_TWICE, line);
        return;
    }
    if (smtp_server_parse_mail(args, strlen(args), &path, &why) != 0) {
        snprintf(text, sizeof(text), SMTP_SERVER_TXT_BAD_SENDER "%s", why);
        smtp_server_reply(s, 501, text, line);
        return;
    }
    pa[0].kind = POLICY_ARG_ADDRESS;
    pa[0].u.str = path.addr;
    pa[1].kind = POLICY_ARG_CONN_META;
    pa[1].u.json = s->conn_meta;
    if (smtp_server_session_call(s, "smtp_server_mail_from", pa, 2, &res,
                                 line) == 0) {
        s->in_txn = true;
        s->sender = km_strdup(path.addr);
        s->smtputf8 = path.smtputf8;
        snprintf(text, sizeof(text), "OK <%s>", path.addr);
        smtp_server_reply(s, 250, text, NULL);
    }
    policy_result_fini(&res);
    smtp_server_path_fini(&path);
}

static void
smtp_server_cmd_rcpt(struct smtp_server_session *s, const char *args,
                     const char *line)
{
    const struct smtp_server_config *cfg = smtp_server_session_cfg(s);
    struct smtp_server_path path;
    struct policy_arg pa[2];
    struct policy_result res;
    const char *why = "syntax error";
    bool relay, accept;
    char text[1100];

    if (!s->in_txn) {
        smtp_server_reply(s, 503, SMTP_SERVER_TXT_NEED_MAIL, line);
        return;
    }
    if (smtp_server_parse_rcpt(args, strlen(args), s->smtputf8, &path, &why) !=
        0) {
        snprintf(text, sizeof(text), SMTP_SERVER_TXT_BAD_RCPT "%s", why);
        smtp_server_reply(s, 501, text, line);
        return;
    }
    s->cur_rcpt = path.addr;
    if (smtp_server_session_check_relay(s, s->sender, path.addr, line, &relay,
                                        &accept) != 0) {
        goto out;
    }
    if (!accept) {
        snprintf(text, sizeof(text), "5.7.1 relaying not permitted for %s",
                 s->peer_hostport);
        smtp_server_reply(s, 550, text, line);
        goto out;
    }
    if (s->n_rcpts >= cfg->max_recipients_per_message) {
        smtp_server_reply(s, 452, SMTP_SERVER_TXT_TOO_MANY_RCPT, line);
        goto out;
    }
    if (s->srv != NULL && s->srv->disk_low) {
        /* CLUSTER.md §4.5: below the spool's free-space mark. */
        smtp_server_reply(s, 452, "4.3.1 insufficient system storage", line);
        goto out;
    }
    if (s->rcpt_count >= cfg->max_messages_per_connection) {
        if (s->n_rcpts == 0) {
            smtp_server_reply_host(s, 421, "4.5.3",
                                   "too many recipients on this connection",
                                   line);
            smtp_server_session_finish(s);
        } else {
            smtp_server_reply(s, 451, SMTP_SERVER_TXT_TOO_MANY_ON_CONN, line);
        }
        goto out;
    }
    s->rcpt_count++;
    pa[0].kind = POLICY_ARG_ADDRESS;
    pa[0].u.str = path.addr;
    pa[1].kind = POLICY_ARG_CONN_META;
    pa[1].u.json = s->conn_meta;
    if (smtp_server_session_call(s, "smtp_server_rcpt_to", pa, 2, &res, line) ==
        0) {
        snprintf(text, sizeof(text), "OK <%s>", path.addr);
        smtp_server_reply(s, 250, text, NULL);
        s->rcpts = km_realloc(s->rcpts, (s->n_rcpts + 1) * sizeof(char *));
        s->rcpts[s->n_rcpts++] = km_strdup(path.addr);
    }
    policy_result_fini(&res);
out:
    s->cur_rcpt = NULL;
    smtp_server_path_fini(&path);
}

static void
smtp_server_cmd_data(struct smtp_server_session *s, const char *line)
{
    const struct smtp_server_config *cfg = smtp_server_session_cfg(s);

    if (!s->in_txn) {
        smtp_server_reply(s, 503, SMTP_SERVER_TXT_NEED_MAIL, line);
        return;
    }
    if (s->n_rcpts == 0) {
        smtp_server_reply(s, 503, SMTP_SERVER_TXT_NEED_RCPT, line);
        return;
    }
    smtp_server_reply(s, 354, SMTP_SERVER_TXT_DATA_GO, NULL);
    smtp_server_data_init(&s->data, cfg->max_message_size,
                          cfg->line_length_hard_limit,
                          cfg->invalid_line_endings);
    smtp_server_enter_state(s, SMTP_SERVER_ST_DATA);
    s->data_started_ms = uv_now(s->tcp.loop);
    s->data_bytes = 0;
}

static void
smtp_server_cmd_starttls(struct smtp_server_session *s, const char *line)
{
    if (s->tls_active) {
        smtp_server_reply(s, 501, SMTP_SERVER_TXT_TLS_ACTIVE, line);
        return;
    }
    if (s->srv->tls == NULL) {
        smtp_server_reply(s, 454, "4.7.0 TLS not available", line);
        return;
    }
    smtp_server_reply(s, 220, SMTP_SERVER_TXT_TLS_READY, NULL);
    if (smtp_server_session_start_tls(s) != 0) {
        smtp_server_session_finish(s);
    }
}

/* Decode and check an AUTH PLAIN response (RFC 4616). */
static void
smtp_server_auth_plain(struct smtp_server_session *s, const char *resp)
{
    struct buf dec = BUF_INIT;
    const char *f[3];
    size_t flen[3];
    size_t nf = 0, start = 0;
    struct policy_arg pa[4];
    struct policy_result res;
    char *authz, *authc, *pass;
    const char *cmd = "AUTH PLAIN";

    if (strcmp(resp, "*") == 0) {
        smtp_server_reply(s, 501, SMTP_SERVER_TXT_AUTH_CANCELLED, cmd);
        return;
    }
    if (smtp_server_b64_decode(resp, strlen(resp), &dec) != 0) {
        smtp_server_reply(s, 501, SMTP_SERVER_TXT_AUTH_BAD_B64, cmd);
        goto out;
    }
    for (size_t i = 0; i <= dec.len; i++) {
        if (i == dec.len || dec.data[i] == '\0') {
            if (nf == 3) {
                nf = 4;
                break;
            }
            f[nf] = dec.data != NULL ? dec.data + start : "";
            flen[nf] = i - start;
            nf++;
            start = i + 1;
        }
    }
    if (nf != 3) {
        smtp_server_reply(s, 501, SMTP_SERVER_TXT_AUTH_BAD_PLAIN, cmd);
        goto out;
    }
    for (size_t k = 0; k < 3; k++) {
        if (!smtp_server_utf8_valid(f[k], flen[k])) {
            smtp_server_reply(s, 501, SMTP_SERVER_TXT_AUTH_BAD_UTF8, cmd);
            goto out;
        }
    }
    authc = km_strndup(f[1], flen[1]);
    /* No authorization id: the same as the authentication id. */
    authz = flen[0] > 0 ? km_strndup(f[0], flen[0]) : km_strdup(authc);
    pass = km_strndup(f[2], flen[2]);
    pa[0].kind = POLICY_ARG_STRING;
    pa[0].u.str = authz;
    pa[1].kind = POLICY_ARG_STRING;
    pa[1].u.str = authc;
    pa[2].kind = POLICY_ARG_STRING;
    pa[2].u.str = pass;
    pa[3].kind = POLICY_ARG_CONN_META;
    pa[3].u.json = s->conn_meta;
    if (smtp_server_session_call(s, "smtp_server_auth_plain", pa, 4, &res,
                                 cmd) == 0) {
        /* true, or an AuthInfo object, is success. */
        if (json_is_true(res.value) || json_is_object(res.value)) {
            s->authenticated = true;
            json_object_set_new(s->conn_meta, "authz_id", json_string(authz));
            json_object_set_new(s->conn_meta, "authn_id", json_string(authc));
            smtp_server_reply(s, 235, SMTP_SERVER_TXT_AUTH_OK, NULL);
        } else {
            smtp_server_reply(s, 535, SMTP_SERVER_TXT_AUTH_INVALID, cmd);
        }
    }
    policy_result_fini(&res);
    explicit_bzero(pass, strlen(pass));
    free(pass);
    free(authz);
    free(authc);
out:
    if (dec.data != NULL) {
        explicit_bzero(dec.data, dec.len);
    }
    buf_fini(&dec);
}

static void
smtp_server_cmd_auth(struct smtp_server_session *s, const char *args)
{
    size_t mlen = strcspn(args, " ");
    const char *initial = args + mlen;
    char text[300];

    while (*initial == ' ') {
        initial++;
    }
    if (s->authenticated) {
        smtp_server_reply(s, 503, SMTP_SERVER_TXT_AUTH_TWICE, "AUTH");
        return;
    }
    if (s->in_txn) {
        smtp_server_reply(s, 503, SMTP_SERVER_TXT_AUTH_IN_TXN, "AUTH");
        return;
    }
    if (!km_ascii_ieq(args, mlen, "PLAIN")) {
        snprintf(text, sizeof(text), "5.5.4 AUTH %.*s not supported",
                 (int)(mlen > 64 ? 64 : mlen), args);
        smtp_server_reply(s, 504, text, "AUTH");
        return;
    }
    if (!s->tls_active) {
        smtp_server_reply(s, 524,
                          "5.7.11 AUTH PLAIN requires an encrypted channel",
                          "AUTH PLAIN");
        return;
    }
    if (*initial != '\0') {
        smtp_server_auth_plain(s, initial);
        return;
    }
    smtp_server_reply(s, 334, "", NULL);
    smtp_server_enter_state(s, SMTP_SERVER_ST_AUTH);
}

static void
smtp_server_dispatch(struct smtp_server_session *s, char *line, size_t n)
{
    size_t off;
    enum smtp_server_verb verb = smtp_server_parse_verb(line, n, &off);
    const char *args = line + off;

    if (verb == SMTP_VERB_AUTH) {
        /* Never trace or log the credentials. */
        LOG_TRACE(TRACE_SMTP, "smtp_server: %s: <- AUTH %.*s", s->session_id,
                  (int)strcspn(args, " "), args);
    } else {
        LOG_TRACE(TRACE_SMTP, "smtp_server: %s: <- %s", s->session_id, line);
    }
    switch (verb) {
    case SMTP_VERB_EHLO:
        smtp_server_cmd_ehlo(s, args, line, true);
        break;
    case SMTP_VERB_HELO:
        smtp_server_cmd_ehlo(s, args, line, false);
        break;
    case SMTP_VERB_MAIL:
        smtp_server_cmd_mail(s, args, line);
        break;
    case SMTP_VERB_RCPT:
        smtp_server_cmd_rcpt(s, args, line);
        break;
    case SMTP_VERB_DATA:
        smtp_server_cmd_data(s, line);
        break;
    case SMTP_VERB_RSET:
        smtp_server_session_reset_txn(s);
        smtp_server_reply(s, 250, SMTP_SERVER_TXT_RSET, NULL);
        break;
    case SMTP_VERB_NOOP:
        smtp_server_reply(s, 250, SMTP_SERVER_TXT_NOOP, NULL);
        break;
    case SMTP_VERB_QUIT:
        smtp_server_reply(s, 221, SMTP_SERVER_TXT_BYE, NULL);
        smtp_server_session_finish(s);
        break;
    case SMTP_VERB_STARTTLS:
        smtp_server_cmd_starttls(s, line);
        break;
    case SMTP_VERB_AUTH:
        smtp_server_cmd_auth(s, args);
        break;
    case SMTP_VERB_VRFY:
    case SMTP_VERB_EXPN:
    case SMTP_VERB_HELP:
    case SMTP_VERB_LHLO:
    case SMTP_VERB_UNKNOWN:
        smtp_server_reply(s, 502, SMTP_SERVER_TXT_UNIMPLEMENTED, line);
        break;
    }
}

static void
smtp_server_handle_line(struct smtp_server_session *s, char *line, size_t n)
{
    if (s->state == SMTP_SERVER_ST_AUTH) {
        smtp_server_enter_state(s, SMTP_SERVER_ST_COMMAND);
        smtp_server_auth_plain(s, line);
        return;
    }
    if (smtp_server_is_shutting_down(s)) {
        smtp_server_close_with(s, 421, "4.3.2", "shutting down");
        return;
    }
    if (!smtp_server_utf8_valid(line, n) || memchr(line, '\0', n) != NULL) {
        smtp_server_reply(s, 501, SMTP_SERVER_TXT_BAD_UTF8, NULL);
        return;
    }
    /* RFC 5321 2.3.8: no bare CR or LF in a command. Neither, nor any
     * other control character, may reach the EHLO domain or an address
     * that later goes into Received: (probe 2026-12). */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)line[i];

        if (c == 0x7f || (c < 0x20 && c != '\t')) {
            smtp_server_syntax_error(s, "control character in command", NULL);
            return;
        }
    }
    smtp_server_dispatch(s, line, n);
}

/* Take one CRLF-terminated line from rbuf and act on it. Returns false
 * when more input is needed. */
static bool
smtp_server_process_line(struct smtp_server_session *s)
{
    size_t limit = s->state == SMTP_SERVER_ST_AUTH
                       ? SMTP_SERVER_AUTH_LINE_LIMIT
                       : smtp_server_session_cfg(s)->line_length_hard_limit;
    const char *crlf;
    size_t llen;
    char *line;

    if (s->rbuf.len == 0) {
        return false;
    }
    crlf = memmem(s->rbuf.data, s->rbuf.len, "\r\n", 2);
    if (crlf == NULL) {
        if (s->rbuf.len > limit) {
            /* Skip the line up to its CRLF, then answer 500 once. Keep a
             * trailing CR: it may start the CRLF. */
            bool cr = s->rbuf.data[s->rbuf.len - 1] == '\r';
            s->discarding = true;
            buf_consume(&s->rbuf, s->rbuf.len - (cr ? 1 : 0));
        }
        return false;
    }
    llen = (size_t)(crlf - s->rbuf.data);
    if (s->discarding || llen > limit) {
        bool auth = s->state == SMTP_SERVER_ST_AUTH;
        buf_consume(&s->rbuf, llen + 2);
        s->discarding = false;
        if (auth) {
            smtp_server_enter_state(s, SMTP_SERVER_ST_COMMAND);
        }
        smtp_server_reply(s, 500,
                          auth ? SMTP_SERVER_TXT_AUTH_TOO_LONG
                               : SMTP_SERVER_TXT_LINE_TOO_LONG,
                          NULL);
        return true;
    }
    line = km_strndup(s->rbuf.data, llen);
    buf_consume(&s->rbuf, llen + 2);
    smtp_server_handle_line(s, line, llen);
    if (line != NULL) {
        explicit_bzero(line, llen);
    }
    free(line);
    return true;
}

void
smtp_server_session_process(struct smtp_server_session *s)
{
    while (!s->closing) {
        switch (s->state) {
        case SMTP_SERVER_ST_COMMAND:
        case SMTP_SERVER_ST_AUTH:
            if (!smtp_server_process_line(s)) {
                return;
            }
            break;
        case SMTP_SERVER_ST_DATA: {
            size_t used;
            if (s->rbuf.len == 0) {
                return;
            }
            used = smtp_server_data_feed(&s->data, s->rbuf.data, s->rbuf.len);
            buf_consume(&s->rbuf, used);
            if (!s->data.done) {
                return;
            }
            smtp_server_txn_finish_data(s);
            break;
        }
        default:
            return;
        }
    }
}
