/* policy_yaml.c - kumo.serde.yaml_parse, yaml_load and yaml_encode over
 * libyaml (Debian's libyaml-dev), through JSON values like the TOML
 * functions. Plain scalars resolve as in YAML 1.2's core schema (null,
 * booleans, integers in decimal, 0x and 0o, floats); quoted scalars and
 * !!str stay strings. One document per text. Aliases are expanded, with a
 * budget of POLICY_YAML_MAX_NODES values so that nested aliases cannot
 * exhaust memory. Loop thread only; libyaml never sees a Lua error (no
 * longjmp crosses it). */
#include "policy_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lauxlib.h>
#include <yaml.h>

#include "base/buf.h"
#include "base/km.h"

#define POLICY_YAML_MAX_NODES 1000000

/* ---- YAML to JSON ---- */

struct policy_yaml_load {
    yaml_document_t *doc;
    const char *text; /* the source, to see explicit tags */
    size_t len;
    size_t budget; /* values left to convert */
    char *err;
    size_t errlen;
};

/* Is s an integer of the core schema: [-+]decimal, 0x hex or 0o octal? */
static bool
policy_yaml_int(const char *s, json_int_t *out)
{
    const char *digits = "0123456789";
    const char *p = s;
    int base = 10;
    long long v;
    char *end;

    if (p[0] == '0' && p[1] == 'x') {
        base = 16;
        digits = "0123456789abcdefABCDEF";
        p += 2;
    } else if (p[0] == '0' && p[1] == 'o') {
        base = 8;
        digits = "01234567";
        p += 2;
    } else if (*p == '-' || *p == '+') {
        p++;
    }
    if (*p == '\0' || strspn(p, digits) != strlen(p)) {
        return false;
    }
    errno = 0;
    v = strtoll(base == 10 ? s : p, &end, base);
    if (*end != '\0' || errno == ERANGE) {
        return false;
    }
    *out = (json_int_t)v;
    return true;
}

/* A plain scalar, resolved: NULL for a float that JSON cannot hold. */
static json_t *
policy_yaml_plain(const char *s, size_t n)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
    static const char *const trues[] = {"true", "True", "TRUE", NULL};
    static const char *const falses[] = {"false", "False", "FALSE", NULL};
    json_int_t iv;
    char *end;
    double d;

    if (strlen(s) != n) {
        return json_stringn(s, n); /* has a NUL: only a string */
    }
    for (size_t i = 0; nulls[i] != NULL; i++) {
        if (strcmp(s, nulls[i]) == 0) {
            return json_null();
        }
    }
    for (size_t i = 0; trues[i] != NULL; i++) {
        if (strcmp(s, trues[i]) == 0) {
            return json_true();
        }
        if (strcmp(s, falses[i]) == 0) {
            return json_false();
        }
    }
    if (policy_yaml_int(s, &iv)) {
        return json_integer(iv);
    }
    if (strpbrk(s, "0123456789") != NULL && strspn(s, "0123456789+-.eE") == n) {
        d = strtod(s, &end);
        if (*end == '\0' && isfinite(d)) {
            return json_real(d);
        }
    }
    if (strcasecmp(s, ".inf") == 0 || strcasecmp(s, "+.inf") == 0 ||
        strcasecmp(s, "-.inf") == 0 || strcasecmp(s, ".nan") == 0) {
        return NULL;
    }
    return json_stringn(s, n);
}

/* libyaml's loader gives every untagged scalar the !!str tag, so an
 * explicit "!!str" is seen in the source: the node's properties (an
 * optional &anchor, then the tag) start at its start mark. */
static bool
policy_yaml_explicit_str(const struct policy_yaml_load *ld,
                         const yaml_node_t *node)
{
    static const char *const forms[] = {"!!str", "!<tag:yaml.org,2002:str>",
                                        NULL};
    size_t i = node->start_mark.index;

    if (i < ld->len && ld->text[i] == '&') {
        while (i < ld->len && ld->text[i] != ' ' && ld->text[i] != '\t') {
            i++;
        }
        while (i < ld->len && (ld->text[i] == ' ' || ld->text[i] == '\t')) {
            i++;
        }
    }
    for (size_t f = 0; forms[f] != NULL; f++) {
        size_t n = strlen(forms[f]);
        if (i + n <= ld->len && memcmp(ld->text + i, forms[f], n) == 0) {
            return true;
        }
    }
    return false;
}

static json_t *
policy_yaml_node(struct policy_yaml_load *ld, yaml_node_t *node, int depth)
{
    if (node == NULL) {
        return json_null();
    }
    if (depth > POLICY_JSON_MAX_DEPTH) {
        snprintf(ld->err, ld->errlen, "nested deeper than %d levels",
                 POLICY_JSON_MAX_DEPTH);
        return NULL;
    }
    if (ld->budget == 0) {
        snprintf(ld->err, ld->errlen, "more than %d values (aliases expanded)",
                 POLICY_YAML_MAX_NODES);
        return NULL;
    }
    ld->budget--;
    switch (node->type) {
    case YAML_SCALAR_NODE: {
        const char *v = (const char *)node->data.scalar.value;
        size_t n = node->data.scalar.length;
        json_t *j;

        if (node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
            policy_yaml_explicit_str(ld, node)) {
            return json_stringn(v, n);
        }
        j = policy_yaml_plain(v, n);
        if (j == NULL) {
            snprintf(ld->err, ld->errlen,
                     "'%s' (infinity or NaN) has no JSON or Lua table form", v);
        }
        return j;
    }
    case YAML_SEQUENCE_NODE: {
        json_t *arr = json_array();
        for (yaml_node_item_t *it = node->data.sequence.items.start;
             it < node->data.sequence.items.top; it++) {
            json_t *v = policy_yaml_node(
                ld, yaml_document_get_node(ld->doc, *it), depth + 1);
            if (v == NULL) {
                json_decref(arr);
                return NULL;
            }
            json_array_append_new(arr, v);
        }
        return arr;
    }
    case YAML_MAPPING_NODE: {
        json_t *obj = json_object();
        for (yaml_node_pair_t *pr = node->data.mapping.pairs.start;
             pr < node->data.mapping.pairs.top; pr++) {
            yaml_node_t *k = yaml_document_get_node(ld->doc, pr->key);
            json_t *v;

            if (k == NULL || k->type != YAML_SCALAR_NODE) {
                snprintf(ld->err, ld->errlen,
                         "line %lu: only scalar mapping keys are supported",
                         k != NULL ? (unsigned long)k->start_mark.line + 1
                                   : 0UL);
                json_decref(obj);
                return NULL;
            }
            v = policy_yaml_node(ld, yaml_document_get_node(ld->doc, pr->value),
                                 depth + 1);
            if (v == NULL) {
                json_decref(obj);
                return NULL;
            }
            json_object_setn_new(obj, (const char *)k->data.scalar.value,
                                 k->data.scalar.length, v);
        }
        return obj;
    }
    case YAML_NO_NODE:
        break;
    }
    return json_null();
}

/* Parse one YAML document; 0 with *out, or KM_EINVAL with err. */
static int
policy_yaml_parse(const char *text, size_t len, const char *source,
                  json_t **out, char *err, size_t errlen)
{
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    struct policy_yaml_load ld = {&doc, text,  len, POLICY_YAML_MAX_NODES,
                                  err,  errlen};
    char why[256] = "";
    int rv = KM_EINVAL;

    if (!yaml_parser_initialize(&parser)) {
        snprintf(err, errlen, "%s: cannot start the YAML parser", source);
        return KM_ENOMEM;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, errlen, "%s:%lu:%lu: %s", source,
                 (unsigned long)parser.problem_mark.line + 1,
                 (unsigned long)parser.problem_mark.column + 1,
                 parser.problem != NULL ? parser.problem : "YAML error");
        yaml_parser_delete(&parser);
        return KM_EINVAL;
    }
    ld.err = why;
    ld.errlen = sizeof(why);
    *out = policy_yaml_node(&ld, yaml_document_get_root_node(&doc), 0);
    yaml_document_delete(&doc);
    if (*out == NULL) {
        snprintf(err, errlen, "%s: %s", source, why);
    } else if (yaml_parser_load(&parser, &extra)) {
        bool more = yaml_document_get_root_node(&extra) != NULL;
        yaml_document_delete(&extra);
        if (more) {
            snprintf(err, errlen, "%s: more than one YAML document", source);
            json_decref(*out);
            *out = NULL;
        } else {
            rv = 0;
        }
    } else {
        snprintf(err, errlen, "%s:%lu:%lu: %s", source,
                 (unsigned long)parser.problem_mark.line + 1,
                 (unsigned long)parser.problem_mark.column + 1,
                 parser.problem != NULL ? parser.problem : "YAML error");
        json_decref(*out);
        *out = NULL;
    }
    yaml_parser_delete(&parser);
    return rv;
}

/* ---- JSON to YAML ---- */

static int
policy_yaml_write(void *data, unsigned char *buffer, size_t size)
{
    buf_append(data, (const char *)buffer, size);
    return 1;
}

static bool
policy_yaml_emit_scalar(yaml_emitter_t *em, const char *tag, const char *s,
                        size_t n, bool quote)
{
    yaml_event_t ev;

    yaml_scalar_event_initialize(&ev, NULL, (yaml_char_t *)(uintptr_t)tag,
                                 (yaml_char_t *)(uintptr_t)s, (int)n, !quote, 1,
                                 quote ? YAML_SINGLE_QUOTED_SCALAR_STYLE
                                       : YAML_ANY_SCALAR_STYLE);
    return yaml_emitter_emit(em, &ev) != 0;
}

static bool
policy_yaml_emit(yaml_emitter_t *em, json_t *j)
{
    yaml_event_t ev;
    char num[64];

    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *v;

        yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
                                            YAML_ANY_MAPPING_STYLE);
        if (!yaml_emitter_emit(em, &ev)) {
            return false;
        }
        json_object_foreach(j, k, v)
        {
            json_t *probe = policy_yaml_plain(k, strlen(k));
            bool quote = probe == NULL || !json_is_string(probe);
            json_decref(probe);
            if (!policy_yaml_emit_scalar(em, YAML_STR_TAG, k, strlen(k),
                                         quote) ||
                !policy_yaml_emit(em, v)) {
                return false;
            }
        }
        yaml_mapping_end_event_initialize(&ev);
        return yaml_emitter_emit(em, &ev) != 0;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *v;

        yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                             YAML_ANY_SEQUENCE_STYLE);
        if (!yaml_emitter_emit(em, &ev)) {
            return false;
        }
        json_array_foreach(j, i, v)
        {
            if (!policy_yaml_emit(em, v)) {
                return false;
            }
        }
        yaml_sequence_end_event_initialize(&ev);
        return yaml_emitter_emit(em, &ev) != 0;
    }
    case JSON_STRING: {
        const char *s = json_string_value(j);
        size_t n = json_string_length(j);
        json_t *probe = policy_yaml_plain(s, n);
        /* Quote a string that would read back as another type. */
        bool quote = probe == NULL || !json_is_string(probe);

        json_decref(probe);
        return policy_yaml_emit_scalar(em, YAML_STR_TAG, s, n, quote);
    }
    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
                 json_integer_value(j));
        return policy_yaml_emit_scalar(em, YAML_INT_TAG, num, strlen(num),
                                       false);
    case JSON_REAL:
        snprintf(num, sizeof(num), "%.17g", json_real_value(j));
        if (strpbrk(num, ".e") == NULL) {
            strncat(num, ".0", sizeof(num) - strlen(num) - 1);
        }
        return policy_yaml_emit_scalar(em, YAML_FLOAT_TAG, num, strlen(num),
                                       false);
    case JSON_TRUE:
        return policy_yaml_emit_scalar(em, YAML_BOOL_TAG, "true", 4, false);
    case JSON_FALSE:
        return policy_yaml_emit_scalar(em, YAML_BOOL_TAG, "false", 5, false);
    case JSON_NULL:
        return policy_yaml_emit_scalar(em, YAML_NULL_TAG, "null", 4, false);
    }
    return false;
}

/* Encode j as one YAML document into out; 0 or KM_EINVAL with err. */
static int
policy_yaml_encode(json_t *j, struct buf *out, char *err, size_t errlen)
{
    yaml_emitter_t em;
    yaml_event_t ev;
    bool ok;

    if (!yaml_emitter_initialize(&em)) {
        snprintf(err, errlen, "cannot start the YAML emitter");
        return KM_ENOMEM;
    }
    yaml_emitter_set_output(&em, policy_yaml_write, out);
    yaml_emitter_set_unicode(&em, 1);
    yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
    ok = yaml_emitter_emit(&em, &ev) != 0;
    yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
    ok = ok && yaml_emitter_emit(&em, &ev) != 0;
    ok = ok && policy_yaml_emit(&em, j);
    yaml_document_end_event_initialize(&ev, 1);
    ok = ok && yaml_emitter_emit(&em, &ev) != 0;
    yaml_stream_end_event_initialize(&ev);
    ok = ok && yaml_emitter_emit(&em, &ev) != 0;
    if (!ok) {
        snprintf(err, errlen, "%s",
                 em.problem != NULL ? em.problem : "YAML emitter error");
    }
    yaml_emitter_delete(&em);
    return ok ? 0 : KM_EINVAL;
}

/* ---- Lua ---- */

/* [-0, +1] */
static int
policy_yaml_push(lua_State *L, const char *fn, const char *text, size_t len,
                 const char *source)
{
    char err[512];
    json_t *j;

    if (policy_yaml_parse(text, len, source, &j, err, sizeof(err)) != 0) {
        return luaL_error(L, "%s: %s", fn, err);
    }
    policy_json_box_push(L, j);
    policy_json_push(L, j);
    return 1;
}

/* kumo.serde.yaml_parse(text) */
static int
l_serde_yaml_parse(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);

    return policy_yaml_push(L, "kumo.serde.yaml_parse", s, len, "(yaml text)");
}

/* kumo.serde.yaml_load(path) */
static int
l_serde_yaml_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    char err[512];
    struct buf b;

    buf_init(&b);
    if (policy_read_file(path, &b, err, sizeof(err)) != 0) {
        buf_fini(&b);
        return luaL_error(L, "kumo.serde.yaml_load: %s", err);
    }
    lua_pushlstring(L, b.data, b.len);
    buf_fini(&b);
    return policy_yaml_push(L, "kumo.serde.yaml_load", lua_tostring(L, -1),
                            lua_rawlen(L, -1), path);
}

/* kumo.serde.yaml_encode(value) */
static int
l_serde_yaml_encode(lua_State *L)
{
    char err[256];
    struct buf b;
    json_t *j;
    int rv;

    luaL_checkany(L, 1);
    if (policy_json_from_lua(L, 1, &j, err, sizeof(err)) != 0) {
        return luaL_error(L, "kumo.serde.yaml_encode: %s", err);
    }
    buf_init(&b);
    rv = policy_yaml_encode(j, &b, err, sizeof(err));
    json_decref(j);
    if (rv == 0) {
        lua_pushlstring(L, b.data, b.len);
    }
    buf_fini(&b);
    if (rv != 0) {
        return luaL_error(L, "kumo.serde.yaml_encode: %s", err);
    }
    return 1;
}

void
policy_open_yaml(lua_State *L, int kumo)
{
    static const luaL_Reg funcs[] = {
        {"yaml_parse", l_serde_yaml_parse},
        {"yaml_load", l_serde_yaml_load},
        {"yaml_encode", l_serde_yaml_encode},
        {NULL, NULL},
    };

    POLICY_STACK_ENTER(L);
    kumo = lua_absindex(L, kumo);
    luaL_getsubtable(L, kumo, "serde");
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
    POLICY_STACK_LEAVE(L, 0);
}
