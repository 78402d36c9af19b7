/* http_api_template_render.c - rendering a parsed template against its
 * variables: substitutions with their filters, conditions and loops,
 * within the nesting limit. Lexing and parsing are http_api_template.c.
 * Pure functions. */
#include "base/buf.h"
#include "base/km.h"
#include "http_api_int.h"
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rendering */

/* The operand's value: borrowed from vars or the template, or NULL for
 * undefined; *owned is set when the caller must decref it (filters). */
static json_t *
http_api_template_eval(const struct http_api_template_operand *o, json_t *vars,
                       json_t **owned)
{
    json_t *v = NULL;
    size_t i;
    json_t *key;

    *owned = NULL;
    if (o->path == NULL) {
        v = o->literal;
    } else {
        v = vars;
        json_array_foreach(o->path, i, key)
        {
            if (json_is_string(key)) {
                v = json_is_object(v)
                        ? json_object_get(v, json_string_value(key))
                        : NULL;
            } else {
                json_int_t ix = json_integer_value(key);
                v = json_is_array(v) && ix >= 0 ? json_array_get(v, (size_t)ix)
                                                : NULL;
            }
            if (v == NULL) {
                break;
            }
        }
    }
    for (i = 0; i < o->n_filters; i++) {
        const char *s;
        char *c;
        size_t n;

        switch (o->filters[i]) {
        case HTTP_API_TPL_F_DEFAULT:
            if (v == NULL) {
                v = o->filter_args[i] != NULL ? o->filter_args[i] : NULL;
                if (v == NULL) {
                    json_decref(*owned);
                    *owned = json_string("");
                    v = *owned;
                }
            }
            break;
        case HTTP_API_TPL_F_UPPER:
        case HTTP_API_TPL_F_LOWER:
        case HTTP_API_TPL_F_TRIM:
            if (!json_is_string(v)) {
                break;
            }
            s = json_string_value(v);
            n = json_string_length(v);
            if (o->filters[i] == HTTP_API_TPL_F_TRIM) {
                while (n > 0 && isspace((unsigned char)*s)) {
                    s++;
                    n--;
                }
                while (n > 0 && isspace((unsigned char)s[n - 1])) {
                    n--;
                }
            }
            c = km_strndup(s, n);
            for (size_t j = 0; j < n; j++) {
                if (o->filters[i] == HTTP_API_TPL_F_UPPER) {
                    c[j] = (char)toupper((unsigned char)c[j]);
                } else if (o->filters[i] == HTTP_API_TPL_F_LOWER) {
                    c[j] = (char)tolower((unsigned char)c[j]);
                }
            }
            json_decref(*owned);
            *owned = json_stringn(c, n);
            free(c);
            v = *owned;
            break;
        }
    }
    return v;
}

/* Jinja truthiness: undefined, none, false, 0, "" and empty containers
 * are false. */
static bool
http_api_template_truthy(json_t *v)
{
    if (v == NULL || json_is_null(v) || json_is_false(v)) {
        return false;
    }
    if (json_is_string(v)) {
        return json_string_length(v) > 0;
    }
    if (json_is_integer(v)) {
        return json_integer_value(v) != 0;
    }
    if (json_is_real(v)) {
        return json_real_value(v) != 0.0;
    }
    if (json_is_array(v)) {
        return json_array_size(v) > 0;
    }
    if (json_is_object(v)) {
        return json_object_size(v) > 0;
    }
    return true;
}

static bool
http_api_template_test(const struct http_api_template_expr *e, json_t *vars)
{
    json_t *own_l, *own_r;
    json_t *l = http_api_template_eval(&e->lhs, vars, &own_l);
    bool r;

    if (e->op == HTTP_API_TPL_OP_NONE) {
        r = http_api_template_truthy(l);
    } else {
        json_t *rv = http_api_template_eval(&e->rhs, vars, &own_r);
        bool eq = (l == NULL && rv == NULL) ||
                  (l != NULL && rv != NULL && json_equal(l, rv));

        r = e->op == HTTP_API_TPL_OP_EQ ? eq : !eq;
        json_decref(own_r);
    }
    json_decref(own_l);
    return e->negate ? !r : r;
}

static void
http_api_template_emit(json_t *v, struct buf *out)
{
    char *s;

    if (v == NULL) {
        return;
    }
    switch (json_typeof(v)) {
    case JSON_STRING:
        buf_append(out, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        buf_appendf(out, "%lld", (long long)json_integer_value(v));
        break;
    case JSON_REAL:
        buf_appendf(out, "%g", json_real_value(v));
        break;
    case JSON_TRUE:
        buf_append_str(out, "true");
        break;
    case JSON_FALSE:
        buf_append_str(out, "false");
        break;
    case JSON_NULL:
        buf_append_str(out, "none");
        break;
    default:
        s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (s != NULL) {
            buf_append_str(out, s);
            free(s);
        }
        break;
    }
}

/* Where rendering writes. In a message (raw content), a value substituted
 * into the header section has its line breaks made spaces, so that no
 * substitution can start a header of its own; the section ends at the
 * first empty line of the output. */
struct http_api_template_out {
    struct buf *out;
    bool message;
    bool in_body;
    size_t scanned;    /* output already searched for the empty line */
    size_t line_start; /* where the current output line starts */
};

static void
http_api_template_out_scan(struct http_api_template_out *o)
{
    const char *d = o->out->data;

    for (size_t i = o->scanned; i < o->out->len && !o->in_body; i++) {
        if (d[i] == '\n') {
            size_t n = i - o->line_start;

            o->in_body = n == 0 || (n == 1 && d[o->line_start] == '\r');
            o->line_start = i + 1;
        }
    }
    o->scanned = o->out->len;
}

static void
http_api_template_emit_to(struct http_api_template_out *o, json_t *v)
{
    size_t from = o->out->len;

    http_api_template_emit(v, o->out);
    if (!o->message || o->in_body) {
        return;
    }
    for (size_t i = from; i < o->out->len; i++) {
        if (o->out->data[i] == '\r' || o->out->data[i] == '\n') {
            o->out->data[i] = ' ';
        }
    }
    http_api_template_out_scan(o);
}

static void
http_api_template_render_nodes(const struct http_api_template_nodes *ns,
                               json_t *vars, struct http_api_template_out *o)
{
    for (size_t i = 0; i < ns->n; i++) {
        const struct http_api_template_node *n = &ns->v[i];
        json_t *owned, *v;
        bool taken = false;

        switch (n->kind) {
        case HTTP_API_TPL_TEXT:
            buf_append(o->out, buf_cstr(&n->text), n->text.len);
            if (o->message && !o->in_body) {
                http_api_template_out_scan(o);
            }
            break;
        case HTTP_API_TPL_VAR:
            v = http_api_template_eval(&n->expr.lhs, vars, &owned);
            http_api_template_emit_to(o, v);
            json_decref(owned);
            break;
        case HTTP_API_TPL_IF:
            for (size_t b = 0; b < n->n_branches && !taken; b++) {
                if (http_api_template_test(&n->branches[b].cond, vars)) {
                    http_api_template_render_nodes(&n->branches[b].body, vars,
                                                   o);
                    taken = true;
                }
            }
            if (!taken) {
                http_api_template_render_nodes(&n->else_body, vars, o);
            }
            break;
        }
    }
}

void
http_api_template_render(const struct http_api_template *t, json_t *vars,
                         struct buf *out)
{
    struct http_api_template_out o = {.out = out};

    http_api_template_render_nodes(&t->root, vars, &o);
}

void
http_api_template_render_message(const struct http_api_template *t,
                                 json_t *vars, struct buf *out)
{
    struct http_api_template_out o = {.out = out,
                                      .message = true,
                                      .scanned = out->len,
                                      .line_start = out->len};

    http_api_template_render_nodes(&t->root, vars, &o);
}
