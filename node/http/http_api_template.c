/* http_api_template.c - the Jinja subset used by HTTP injection:
 * `{{ expr }}`, `{% if %}/{% elif %}/{% else %}/{% endif %}`,
 * `{# comments #}` and `-` whitespace control. An expression is a variable
 * path (`a.b`, `a["b"]`, `a[0]`) or a literal, with filters default(x),
 * upper, lower, trim, and for conditions `not` and `==`/`!=`. Undefined
 * values render empty, like Jinja's default Undefined. Templates are
 * compiled once (syntax errors carry line and column) and rendered per
 * recipient. No loops, macros or autoescaping. Pure code, any thread. */
#include "http_api_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/km.h"

/* Nodes */

static void http_api_template_nodes_fini(struct http_api_template_nodes *ns);

static void
http_api_template_operand_fini(struct http_api_template_operand *o)
{
    json_decref(o->path);
    json_decref(o->literal);
    for (size_t i = 0; i < o->n_filters; i++) {
        json_decref(o->filter_args[i]);
    }
    free(o->filters);
    free(o->filter_args);
    memset(o, 0, sizeof(*o));
}

static void
http_api_template_expr_fini(struct http_api_template_expr *e)
{
    http_api_template_operand_fini(&e->lhs);
    http_api_template_operand_fini(&e->rhs);
}

static void
http_api_template_node_fini(struct http_api_template_node *n)
{
    buf_fini(&n->text);
    http_api_template_expr_fini(&n->expr);
    for (size_t i = 0; i < n->n_branches; i++) {
        http_api_template_expr_fini(&n->branches[i].cond);
        http_api_template_nodes_fini(&n->branches[i].body);
    }
    free(n->branches);
    http_api_template_nodes_fini(&n->else_body);
}

static void
http_api_template_nodes_fini(struct http_api_template_nodes *ns)
{
    for (size_t i = 0; i < ns->n; i++) {
        http_api_template_node_fini(&ns->v[i]);
    }
    free(ns->v);
    ns->v = NULL;
    ns->n = 0;
}

static struct http_api_template_node *
http_api_template_nodes_add(struct http_api_template_nodes *ns,
                            enum http_api_template_kind kind)
{
    struct http_api_template_node *n;

    /* Geometric growth: one node more per call was quadratic (and, under
     * ASan, whose realloc always copies, 60 s for 20,000 nodes). */
    if (ns->n == ns->cap) {
        ns->cap = ns->cap == 0 ? 8 : ns->cap * 2;
        ns->v = km_realloc(ns->v, ns->cap * sizeof(*ns->v));
    }
    n = &ns->v[ns->n++];
    memset(n, 0, sizeof(*n));
    n->kind = kind;
    return n;
}

void
http_api_template_free(struct http_api_template *t)
{
    if (t == NULL) {
        return;
    }
    http_api_template_nodes_fini(&t->root);
    free(t);
}

/* Errors */

static int
http_api_template_error_at(struct http_api_template_parser *p, size_t pos,
                           const char *what)
{
    size_t line = 1, col = 1;

    for (size_t i = 0; i < pos && i < p->len; i++) {
        if (p->src[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    snprintf(p->err, p->errlen,
             "template syntax error: line %zu column %zu: %s", line, col, what);
    return KM_EINVAL;
}

/* Lexer */

static int
http_api_template_lex(struct http_api_template_lexer *lx)
{
    const char *s = lx->p->src;
    char c;

    while (lx->pos < lx->end && isspace((unsigned char)s[lx->pos])) {
        lx->pos++;
    }
    buf_reset(&lx->val);
    lx->tok_start = lx->pos;
    if (lx->pos >= lx->end) {
        lx->tok = HTTP_API_TPL_T_END;
        return 0;
    }
    c = s[lx->pos];
    if (isalpha((unsigned char)c) || c == '_') {
        while (lx->pos < lx->end &&
               (isalnum((unsigned char)s[lx->pos]) || s[lx->pos] == '_')) {
            buf_append_char(&lx->val, s[lx->pos++]);
        }
        lx->tok = HTTP_API_TPL_T_IDENT;
        return 0;
    }
    if (isdigit((unsigned char)c) || (c == '-' && lx->pos + 1 < lx->end &&
                                      isdigit((unsigned char)s[lx->pos + 1]))) {
        buf_append_char(&lx->val, s[lx->pos++]);
        while (lx->pos < lx->end &&
               (isdigit((unsigned char)s[lx->pos]) || s[lx->pos] == '.')) {
            buf_append_char(&lx->val, s[lx->pos++]);
        }
        lx->tok = HTTP_API_TPL_T_NUMBER;
        return 0;
    }
    if (c == '"' || c == '\'') {
        lx->pos++;
        while (lx->pos < lx->end && s[lx->pos] != c) {
            if (s[lx->pos] == '\\' && lx->pos + 1 < lx->end) {
                char e = s[++lx->pos];
                buf_append_char(&lx->val, e == 'n'   ? '\n'
                                          : e == 't' ? '\t'
                                                     : e);
                lx->pos++;
                continue;
            }
            buf_append_char(&lx->val, s[lx->pos++]);
        }
        if (lx->pos >= lx->end) {
            return http_api_template_error_at(lx->p, lx->tok_start,
                                              "unterminated string");
        }
        lx->pos++;
        lx->tok = HTTP_API_TPL_T_STRING;
        return 0;
    }
    if ((c == '=' || c == '!') && lx->pos + 1 < lx->end &&
        s[lx->pos + 1] == '=') {
        buf_append(&lx->val, s + lx->pos, 2);
        lx->pos += 2;
        lx->tok = HTTP_API_TPL_T_PUNCT;
        return 0;
    }
    if (strchr(".[]()|,", c) != NULL) {
        buf_append_char(&lx->val, c);
        lx->pos++;
        lx->tok = HTTP_API_TPL_T_PUNCT;
        return 0;
    }
    return http_api_template_error_at(lx->p, lx->pos, "unexpected character");
}

static bool
http_api_template_is(const struct http_api_template_lexer *lx,
                     enum http_api_template_tok tok, const char *v)
{
    return lx->tok == tok && (v == NULL || strcmp(buf_cstr(&lx->val), v) == 0);
}

/* Expressions */

static int
http_api_template_literal(struct http_api_template_lexer *lx, json_t **out)
{
    const char *v = buf_cstr(&lx->val);

    if (lx->tok == HTTP_API_TPL_T_STRING) {
        *out =
            json_stringn(lx->val.data != NULL ? lx->val.data : "", lx->val.len);
    } else if (lx->tok == HTTP_API_TPL_T_NUMBER) {
        *out = strchr(v, '.') != NULL ? json_real(strtod(v, NULL))
                                      : json_integer(strtoll(v, NULL, 10));
    } else if (http_api_template_is(lx, HTTP_API_TPL_T_IDENT, "true") ||
               http_api_template_is(lx, HTTP_API_TPL_T_IDENT, "True")) {
        *out = json_true();
    } else if (http_api_template_is(lx, HTTP_API_TPL_T_IDENT, "false") ||
               http_api_template_is(lx, HTTP_API_TPL_T_IDENT, "False")) {
        *out = json_false();
    } else if (http_api_template_is(lx, HTTP_API_TPL_T_IDENT, "none") ||
               http_api_template_is(lx, HTTP_API_TPL_T_IDENT, "None")) {
        *out = json_null();
    } else {
        return KM_ENOENT;
    }
    return 0;
}

static int
http_api_template_filter(struct http_api_template_lexer *lx,
                         struct http_api_template_operand *o)
{
    enum http_api_template_filter f;
    json_t *arg = NULL;
    size_t at = lx->tok_start;
    int rv;

    if (lx->tok != HTTP_API_TPL_T_IDENT) {
        return http_api_template_error_at(lx->p, at, "expected a filter name");
    }
    if (http_api_template_is(lx, HTTP_API_TPL_T_IDENT, "default") ||
        http_api_template_is(lx, HTTP_API_TPL_T_IDENT, "d")) {
        f = HTTP_API_TPL_F_DEFAULT;
    } else if (http_api_template_is(lx, HTTP_API_TPL_T_IDENT, "upper")) {
        f = HTTP_API_TPL_F_UPPER;
    } else if (http_api_template_is(lx, HTTP_API_TPL_T_IDENT, "lower")) {
        f = HTTP_API_TPL_F_LOWER;
    } else if (http_api_template_is(lx, HTTP_API_TPL_T_IDENT, "trim")) {
        f = HTTP_API_TPL_F_TRIM;
    } else {
        return http_api_template_error_at(lx->p, at, "unknown filter");
    }
    if ((rv = http_api_template_lex(lx)) != 0) {
        return rv;
    }
    if (http_api_template_is(lx, HTTP_API_TPL_T_PUNCT, "(")) {
        if ((rv = http_api_template_lex(lx)) != 0) {
            return rv;
        }
        if (!http_api_template_is(lx, HTTP_API_TPL_T_PUNCT, ")")) {
            if (http_api_template_literal(lx, &arg) != 0) {
                return http_api_template_error_at(
                    lx->p, lx->tok_start, "filter arguments must be literals");
            }
            if ((rv = http_api_template_lex(lx)) != 0) {
                json_decref(arg);
                return rv;
            }
        }
        if (!http_api_template_is(lx, HTTP_API_TPL_T_PUNCT, ")")) {
            json_decref(arg);
            return http_api_template_error_at(lx->p, lx->tok_start,
                                              "expected ')'");
        }
        if ((rv = http_api_template_lex(lx)) != 0) {
            json_decref(arg);
            return rv;
        }
    }
    o->filters =
        km_realloc(o->filters, (o->n_filters + 1) * sizeof(*o->filters));
    o->filter_args =
        km_realloc(o->filter_args, (o->n_filters + 1) * sizeof(json_t *));
    o->filters[o->n_filters] = f;
    o->filter_args[o->n_filters] = arg;
    o->n_filters++;
    return 0;
}

/* operand := (literal | ident ('.' ident | '[' literal ']')*) ('|' filter)* */
int
http_api_template_operand(struct http_api_template_lexer *lx,
                          struct http_api_template_operand *o)
{
    int rv;

    if (http_api_template_literal(lx, &o->literal) == 0) {
        rv = http_api_template_lex(lx);
    } else if (lx->tok == HTTP_API_TPL_T_IDENT) {
        o->path = json_array();
        json_array_append_new(o->path, json_string(buf_cstr(&lx->val)));
        rv = http_api_template_lex(lx);
        while (rv == 0) {
            if (http_api_template_is(lx, HTTP_API_TPL_T_PUNCT, ".")) {
                if ((rv = http_api_template_lex(lx)) != 0) {
                    break;
                }
                if (lx->tok == HTTP_API_TPL_T_IDENT) {
                    json_array_append_new(o->path,
                                          json_string(buf_cstr(&lx->val)));
                } else if (lx->tok == HTTP_API_TPL_T_NUMBER) {
                    json_array_append_new(
                        o->path,
                        json_integer(strtoll(buf_cstr(&lx->val), NULL, 10)));
                } else {
                    return http_api_template_error_at(
                        lx->p, lx->tok_start, "expected a name after '.'");
                }
                rv = http_api_template_lex(lx);
            } else if (http_api_template_is(lx, HTTP_API_TPL_T_PUNCT, "[")) {
                json_t *key = NULL;

                if ((rv = http_api_template_lex(lx)) != 0) {
                    break;
                }
                if ((lx->tok != HTTP_API_TPL_T_STRING &&
                     lx->tok != HTTP_API_TPL_T_NUMBER) ||
                    http_api_template_literal(lx, &key) != 0) {
                    return http_api_template_error_at(
                        lx->p, lx->tok_start, "expected a key or an index");
                }
                json_array_append_new(o->path, key);
                if ((rv = http_api_template_lex(lx)) != 0) {
                    break;
                }
                if (!http_api_template_is(lx, HTTP_API_TPL_T_PUNCT, "]")) {
                    return http_api_template_error_at(lx->p, lx->tok_start,
                                                      "expected ']'");
                }
                rv = http_api_template_lex(lx);
            } else {
                break;
            }
        }
    } else if (lx->tok == HTTP_API_TPL_T_END) {
        return http_api_template_error_at(lx->p, lx->tok_start,
                                          "expected an expression");
    } else {
        return http_api_template_error_at(lx->p, lx->tok_start,
                                          "unexpected token");
    }
    while (rv == 0 && http_api_template_is(lx, HTTP_API_TPL_T_PUNCT, "|")) {
        if ((rv = http_api_template_lex(lx)) != 0) {
            break;
        }
        rv = http_api_template_filter(lx, o);
    }
    return rv;
}

/* expr := ['not'] operand [('==' | '!=') operand], then the end. */
int
http_api_template_expr(struct http_api_template_lexer *lx,
                       struct http_api_template_expr *e)
{
    int rv;

    if (http_api_template_is(lx, HTTP_API_TPL_T_IDENT, "not")) {
        e->negate = true;
        if ((rv = http_api_template_lex(lx)) != 0) {
            return rv;
        }
    }
    if ((rv = http_api_template_operand(lx, &e->lhs)) != 0) {
        return rv;
    }
    if (http_api_template_is(lx, HTTP_API_TPL_T_PUNCT, "==") ||
        http_api_template_is(lx, HTTP_API_TPL_T_PUNCT, "!=")) {
        e->op =
            lx->val.data[0] == '=' ? HTTP_API_TPL_OP_EQ : HTTP_API_TPL_OP_NE;
        if ((rv = http_api_template_lex(lx)) != 0) {
            return rv;
        }
        if ((rv = http_api_template_operand(lx, &e->rhs)) != 0) {
            return rv;
        }
    }
    if (lx->tok != HTTP_API_TPL_T_END) {
        return http_api_template_error_at(lx->p, lx->tok_start,
                                          "unexpected token after expression");
    }
    return 0;
}

/* Structure */

/* Find the closing delimiter of a tag opened at p->pos (after the 2-char
 * opener); *inner_end is where the content ends (before an optional '-'),
 * *after is past the closer. */
static int
http_api_template_tag_end(struct http_api_template_parser *p, size_t open_at,
                          size_t from, const char *closer, size_t *inner_end,
                          size_t *after, bool *rstrip)
{
    for (size_t i = from; i + 1 < p->len; i++) {
        if (p->src[i] == closer[0] && p->src[i + 1] == closer[1]) {
            *rstrip = i > from && p->src[i - 1] == '-';
            *inner_end = *rstrip ? i - 1 : i;
            *after = i + 2;
            return 0;
        }
    }
    return http_api_template_error_at(p, open_at, "unterminated tag");
}

static void
http_api_template_add_text(struct http_api_template_parser *p,
                           struct http_api_template_nodes *ns, const char *s,
                           size_t n)
{
    struct http_api_template_node *node;

    if (p->lstrip_next) {
        while (n > 0 && isspace((unsigned char)*s)) {
            s++;
            n--;
        }
        p->lstrip_next = false;
    }
    if (n == 0) {
        return;
    }
    node = http_api_template_nodes_add(ns, HTTP_API_TPL_TEXT);
    buf_append(&node->text, s, n);
}

/* "{{-" / "{%-": drop the whitespace before the tag. */
static void
http_api_template_rstrip_last(struct http_api_template_nodes *ns)
{
    struct http_api_template_node *last;

    if (ns->n == 0 || ns->v[ns->n - 1].kind != HTTP_API_TPL_TEXT) {
        return;
    }
    last = &ns->v[ns->n - 1];
    while (last->text.len > 0 &&
           isspace((unsigned char)last->text.data[last->text.len - 1])) {
        last->text.len--;
    }
    if (last->text.data != NULL) {
        last->text.data[last->text.len] = '\0';
    }
}

enum http_api_template_end {
    HTTP_API_TPL_END_EOF,
    HTTP_API_TPL_END_ELIF,
    HTTP_API_TPL_END_ELSE,
    HTTP_API_TPL_END_ENDIF,
};

static int http_api_template_parse_nodes(struct http_api_template_parser *p,
                                         struct http_api_template_nodes *ns,
                                         bool in_if,
                                         enum http_api_template_end *end,
                                         struct http_api_template_lexer *lx);

/* After "{% if": parse branches up to the matching endif. lx holds the
 * if's condition tokens, positioned at the first one. */
static int
http_api_template_parse_if(struct http_api_template_parser *p,
                           struct http_api_template_nodes *ns,
                           struct http_api_template_lexer *lx, size_t open_at)
{
    struct http_api_template_node *node;
    enum http_api_template_end end;
    struct http_api_template_nodes body = {NULL, 0, 0};
    struct http_api_template_expr cond;
    int rv;

    /* Parsing and rendering recurse once per level: bound it, or a deep
     * template overflows the stack (fuzz_http_template: 100,000 levels in
     * a 2 MB request killed kumod). */
    if (p->depth >= HTTP_API_TEMPLATE_MAX_DEPTH) {
        return http_api_template_error_at(p, open_at,
                                          "if blocks nested too deeply");
    }
    p->depth++;
    node = http_api_template_nodes_add(ns, HTTP_API_TPL_IF);
    for (;;) {
        memset(&cond, 0, sizeof(cond));
        if ((rv = http_api_template_expr(lx, &cond)) != 0) {
            http_api_template_expr_fini(&cond);
            return rv;
        }
        rv = http_api_template_parse_nodes(p, &body, true, &end, lx);
        /* Doubling at each power of two, as nodes_add grows. */
        if ((node->n_branches & (node->n_branches - 1)) == 0) {
            node->branches =
                km_realloc(node->branches,
                           (node->n_branches == 0 ? 1 : 2 * node->n_branches) *
                               sizeof(*node->branches));
        }
        node->branches[node->n_branches].cond = cond;
        node->branches[node->n_branches].body = body;
        node->n_branches++;
        body.v = NULL;
        body.n = 0;
        body.cap = 0;
        if (rv != 0) {
            return rv;
        }
        if (end == HTTP_API_TPL_END_ELIF) {
            continue;
        }
        break;
    }
    if (end == HTTP_API_TPL_END_ELSE) {
        rv = http_api_template_parse_nodes(p, &node->else_body, true, &end, lx);
        if (rv != 0) {
            return rv;
        }
        if (end != HTTP_API_TPL_END_ENDIF) {
            return http_api_template_error_at(p, p->pos,
                                              "expected endif after else");
        }
    }
    if (end != HTTP_API_TPL_END_ENDIF) {
        return http_api_template_error_at(p, open_at,
                                          "if without a matching endif");
    }
    p->depth--;
    return 0;
}

/* A "{% ... %}" statement; sets *end when it closes the current block. */
static int
http_api_template_statement(struct http_api_template_parser *p,
                            struct http_api_template_nodes *ns, bool in_if,
                            size_t open_at, size_t inner_start,
                            size_t inner_end, enum http_api_template_end *end,
                            bool *ended, struct http_api_template_lexer *lx)
{
    char kw[16];
    int rv;

    lx->pos = inner_start;
    lx->end = inner_end;
    if ((rv = http_api_template_lex(lx)) != 0) {
        return rv;
    }
    if (lx->tok != HTTP_API_TPL_T_IDENT || lx->val.len >= sizeof(kw)) {
        return http_api_template_error_at(p, lx->tok_start,
                                          "expected a statement");
    }
    snprintf(kw, sizeof(kw), "%s", buf_cstr(&lx->val));
    if ((rv = http_api_template_lex(lx)) != 0) {
        return rv;
    }
    if (strcmp(kw, "if") == 0) {
        return http_api_template_parse_if(p, ns, lx, open_at);
    }
    if (strcmp(kw, "elif") == 0 || strcmp(kw, "else") == 0 ||
        strcmp(kw, "endif") == 0) {
        if (!in_if) {
            return http_api_template_error_at(p, open_at,
                                              "unexpected statement outside "
                                              "an if block");
        }
        if (kw[1] == 'l' && kw[2] == 's') {
            *end = HTTP_API_TPL_END_ELSE;
        } else if (kw[1] == 'l') {
            *end = HTTP_API_TPL_END_ELIF;
            *ended = true;
            return 0; /* lx is left at the elif's condition */
        } else {
            *end = HTTP_API_TPL_END_ENDIF;
        }
        if (lx->tok != HTTP_API_TPL_T_END) {
            return http_api_template_error_at(p, lx->tok_start,
                                              "unexpected token");
        }
        *ended = true;
        return 0;
    }
    return http_api_template_error_at(p, open_at, "unknown statement");
}

static int
http_api_template_parse_nodes(struct http_api_template_parser *p,
                              struct http_api_template_nodes *ns, bool in_if,
                              enum http_api_template_end *end,
                              struct http_api_template_lexer *lx)
{
    int rv;

    while (p->pos < p->len) {
        size_t open = p->pos, inner_start, inner_end, after;
        bool rstrip, ended = false;
        const char *hit = NULL;
        char kind;

        /* Next opener. */
        for (size_t i = p->pos; i + 1 < p->len; i++) {
            if (p->src[i] == '{' &&
                (p->src[i + 1] == '{' || p->src[i + 1] == '%' ||
                 p->src[i + 1] == '#')) {
                hit = p->src + i;
                break;
            }
        }
        if (hit == NULL) {
            http_api_template_add_text(p, ns, p->src + p->pos, p->len - p->pos);
            p->pos = p->len;
            break;
        }
        open = (size_t)(hit - p->src);
        http_api_template_add_text(p, ns, p->src + p->pos, open - p->pos);
        kind = p->src[open + 1];
        inner_start = open + 2;
        if (inner_start < p->len && p->src[inner_start] == '-') {
            http_api_template_rstrip_last(ns);
            inner_start++;
        }
        rv = http_api_template_tag_end(p, open, inner_start,
                                       kind == '{'   ? "}}"
                                       : kind == '%' ? "%}"
                                                     : "#}",
                                       &inner_end, &after, &rstrip);
        if (rv != 0) {
            return rv;
        }
        p->pos = after;
        if (kind == '#') {
            p->lstrip_next = rstrip;
            continue;
        }
        if (kind == '{') {
            struct http_api_template_node *node =
                http_api_template_nodes_add(ns, HTTP_API_TPL_VAR);

            lx->pos = inner_start;
            lx->end = inner_end;
            if ((rv = http_api_template_lex(lx)) != 0 ||
                (rv = http_api_template_expr(lx, &node->expr)) != 0) {
                return rv;
            }
            p->lstrip_next = rstrip;
            continue;
        }
        p->lstrip_next = rstrip;
        rv = http_api_template_statement(p, ns, in_if, open, inner_start,
                                         inner_end, end, &ended, lx);
        if (rv != 0) {
            return rv;
        }
        if (ended) {
            return 0;
        }
    }
    if (in_if) {
        return http_api_template_error_at(p, p->len,
                                          "unexpected end of template "
                                          "(missing endif)");
    }
    *end = HTTP_API_TPL_END_EOF;
    return 0;
}

int
http_api_template_compile(const char *src, size_t len,
                          struct http_api_template **out, char *err,
                          size_t errlen)
{
    struct http_api_template_parser p = {
        .src = src, .len = len, .err = err, .errlen = errlen};
    struct http_api_template_lexer lx;
    struct http_api_template *t = km_calloc(1, sizeof(*t));
    enum http_api_template_end end;
    int rv;

    memset(&lx, 0, sizeof(lx));
    lx.p = &p;
    buf_init(&lx.val);
    rv = http_api_template_parse_nodes(&p, &t->root, false, &end, &lx);
    buf_fini(&lx.val);
    if (rv != 0) {
        http_api_template_free(t);
        return rv;
    }
    *out = t;
    return 0;
}
