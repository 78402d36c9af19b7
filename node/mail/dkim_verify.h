/* dkim_verify.h - the core of DKIM verification (RFC 6376 6, RFC 8463):
 * parse a message's DKIM-Signature fields and key records, and check one
 * signature against the key record its d= and s= name. Pure: it does no
 * DNS (the caller fetches "<s>._domainkey.<d>" TXT) and is not yet
 * reachable from the policy (msg:dkim_verify() needs TXT lookups through
 * the resolver and a policy call that can wait for them: #12). Safe on
 * any thread. */
#ifndef KUMO_DKIM_VERIFY_H
#define KUMO_DKIM_VERIFY_H
#include <stddef.h>
#include <stdint.h>

enum dkim_verdict {
    DKIM_PASS,
    DKIM_FAIL,      /* body hash or signature mismatch, expired, revoked */
    DKIM_PERMERROR, /* unusable signature or key record */
};

struct dkim_verify_result {
    enum dkim_verdict verdict;
    char reason[160]; /* why, when not a pass */
    char d[254];      /* the signature's d= and s= ("" if unparsed) */
    char s[64];
    char a[16];
};

/* How many DKIM-Signature fields the message has (top first). */
size_t dkim_verify_count(const char *data, size_t len);

/* The d= and s= of signature idx, into res (verdict PERMERROR with the
 * reason if it does not parse): what the caller looks up. */
void dkim_verify_names(const char *data, size_t len, size_t idx,
                       struct dkim_verify_result *res);

/* Check signature idx of `data` (header block and body, CRLF) with the
 * TXT record `rec` found at <s>._domainkey.<d>, at time `now` (Unix
 * seconds, for x=). Fills res; never fails otherwise. */
void dkim_verify_one(const char *data, size_t len, size_t idx, const char *rec,
                     size_t rec_len, int64_t now,
                     struct dkim_verify_result *res);
#endif /* KUMO_DKIM_VERIFY_H */
