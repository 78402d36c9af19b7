// policy_toml.cpp - TOML <-> JSON through toml++ (see policy_toml.h). The
// only C++ in kumod: it converts between toml::node trees and jansson
// values and catches every exception at the C boundary.
#include "policy_toml.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <string_view>

#include <toml++/toml.h>

namespace
{

constexpr int kEinval = -EINVAL; // KM_EINVAL (base/km.h is C only)
constexpr int kMaxDepth = 64;    // POLICY_JSON_MAX_DEPTH

struct EncodeError {
    std::string what;
};

template <typename T>
std::string
policy_toml_text_of(const T &v)
{
    std::ostringstream os;
    os << v;
    return os.str();
}

json_t *
policy_toml_to_json(const toml::node &n, int depth)
{
    if (depth > kMaxDepth) {
        throw EncodeError{"nested too deeply"};
    }
    if (const toml::table *t = n.as_table()) {
        json_t *obj = json_object();
        for (const auto &[k, v] : *t) {
            json_t *jv = policy_toml_to_json(v, depth + 1);
            std::string key(k.str());
            json_object_setn_new(obj, key.data(), key.size(), jv);
        }
        return obj;
    }
    if (const toml::array *a = n.as_array()) {
        json_t *arr = json_array();
        for (const toml::node &v : *a) {
            json_array_append_new(arr, policy_toml_to_json(v, depth + 1));
        }
        return arr;
    }
    if (const auto *s = n.as_string()) {
        const std::string &str = s->get();
        return json_stringn(str.data(), str.size());
    }
    if (const auto *i = n.as_integer()) {
        return json_integer(static_cast<json_int_t>(i->get()));
    }
    if (const auto *f = n.as_floating_point()) {
        double d = f->get();
        if (!std::isfinite(d)) {
            throw EncodeError{"inf and nan have no JSON or Lua equivalent"};
        }
        return json_real(d);
    }
    if (const auto *b = n.as_boolean()) {
        return json_boolean(b->get());
    }
    if (const auto *d = n.as_date()) {
        return json_string(policy_toml_text_of(d->get()).c_str());
    }
    if (const auto *t = n.as_time()) {
        return json_string(policy_toml_text_of(t->get()).c_str());
    }
    if (const auto *dt = n.as_date_time()) {
        return json_string(policy_toml_text_of(dt->get()).c_str());
    }
    throw EncodeError{"unsupported TOML value"};
}

void policy_toml_fill_table(toml::table &t, const json_t *obj, int depth,
                            unsigned flags);

// toml++ 3.3.0 writes a key made of bare-key characters plus a quote, tab
// or line break without quotes, which no parser reads back. Such keys are
// refused rather than written wrong.
void
policy_toml_check_key(const std::string &key)
{
    bool special = false;

    for (char c : key) {
        if (c == '\'' || c == '\n' || c == '\t') {
            special = true;
        } else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                     (c >= '0' && c <= '9') || c == '_' || c == '-')) {
            return; // quoted anyway
        }
    }
    if (special) {
        throw EncodeError{"the key \"" + key +
                          "\" cannot be written: toml++ 3.3 leaves a key with "
                          "a quote, tab or line break unquoted"};
    }
}

void policy_toml_fill_array(toml::array &a, const json_t *arr, int depth,
                            unsigned flags);

// Append the JSON value j to whatever `put` inserts into.
template <typename Put>
void
policy_toml_put(const json_t *j, int depth, unsigned flags, Put put)
{
    if (depth > kMaxDepth) {
        throw EncodeError{"nested too deeply"};
    }
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        toml::table t;
        policy_toml_fill_table(t, j, depth + 1, flags);
        if (t.empty() && (flags & POLICY_TOML_INLINE_EMPTY) != 0) {
            t.is_inline(true);
        }
        put(std::move(t));
        break;
    }
    case JSON_ARRAY: {
        toml::array a;
        policy_toml_fill_array(a, j, depth + 1, flags);
        put(std::move(a));
        break;
    }
    case JSON_STRING:
        put(std::string(json_string_value(j), json_string_length(j)));
        break;
    case JSON_INTEGER:
        put(static_cast<int64_t>(json_integer_value(j)));
        break;
    case JSON_REAL:
        if (!std::isfinite(json_real_value(j))) {
            throw EncodeError{"a number that is not finite"};
        }
        put(json_real_value(j));
        break;
    case JSON_TRUE:
        put(true);
        break;
    case JSON_FALSE:
        put(false);
        break;
    case JSON_NULL:
        throw EncodeError{"TOML has no null (nil) value"};
    }
}

void
policy_toml_fill_table(toml::table &t, const json_t *obj, int depth,
                       unsigned flags)
{
    const char *k;
    json_t *v;

    json_object_foreach(const_cast<json_t *>(obj), k, v)
    {
        std::string key(k);
        policy_toml_check_key(key);
        policy_toml_put(v, depth, flags, [&](auto &&x) {
            t.insert_or_assign(key, std::forward<decltype(x)>(x));
        });
    }
}

void
policy_toml_fill_array(toml::array &a, const json_t *arr, int depth,
                       unsigned flags)
{
    size_t i;
    json_t *v;

    json_array_foreach(arr, i, v)
    {
        policy_toml_put(v, depth, flags, [&](auto &&x) {
            a.push_back(std::forward<decltype(x)>(x));
        });
    }
}

void
policy_toml_set_err(char *err, size_t errlen, const std::string &s)
{
    if (err != nullptr && errlen > 0) {
        std::snprintf(err, errlen, "%s", s.c_str());
    }
}

} // namespace

extern "C" int
policy_toml_parse(const char *text, size_t len, const char *source,
                  json_t **out, char *err, size_t errlen)
{
    try {
        toml::table t =
            toml::parse(std::string_view(text, len), std::string_view(source));
        *out = policy_toml_to_json(t, 0);
        return 0;
    } catch (const toml::parse_error &e) {
        const toml::source_region &r = e.source();
        std::string msg = std::string(source) + ":" +
                          std::to_string(r.begin.line) + ":" +
                          std::to_string(r.begin.column) + ": " +
                          std::string(e.description());
        policy_toml_set_err(err, errlen, msg);
    } catch (const EncodeError &e) {
        policy_toml_set_err(err, errlen, std::string(source) + ": " + e.what);
    } catch (const std::exception &e) {
        policy_toml_set_err(err, errlen, std::string(source) + ": " + e.what());
    } catch (...) {
        policy_toml_set_err(err, errlen, std::string(source) + ": TOML error");
    }
    return kEinval;
}

extern "C" int
policy_toml_encode(const json_t *obj, unsigned flags, char **out, char *err,
                   size_t errlen)
{
    if (!json_is_object(obj)) {
        policy_toml_set_err(err, errlen,
                            "the top level of a TOML document must be a table");
        return kEinval;
    }
    try {
        toml::table t;
        std::ostringstream os;
        policy_toml_fill_table(t, obj, 0, flags);
        if ((flags & POLICY_TOML_PRETTY) != 0) {
            os << toml::toml_formatter(
                t, toml::format_flags::indentation |
                       toml::format_flags::allow_multi_line_strings);
        } else {
            os << toml::toml_formatter(t, toml::format_flags::none);
        }
        std::string s = os.str();
        if (!s.empty() && s.back() != '\n') {
            s.push_back('\n');
        }
        *out = static_cast<char *>(std::malloc(s.size() + 1));
        if (*out == nullptr) {
            policy_toml_set_err(err, errlen, "out of memory");
            return -ENOMEM;
        }
        std::memcpy(*out, s.c_str(), s.size() + 1);
        return 0;
    } catch (const EncodeError &e) {
        policy_toml_set_err(err, errlen, e.what);
    } catch (const std::exception &e) {
        policy_toml_set_err(err, errlen, e.what());
    } catch (...) {
        policy_toml_set_err(err, errlen, "TOML error");
    }
    return kEinval;
}
