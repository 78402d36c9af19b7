/* policy_toml.h - TOML text to and from JSON values, for kumo.toml_* and
 * kumo.serde.toml_* (policy_serde.c). A small C++17 unit over toml++
 * (Debian's libtomlplusplus-dev) behind a C interface; no Lua here, so no
 * Lua error ever unwinds through C++ frames, and no C++ exception leaves
 * it. TOML dates and times become their TOML text form (strings). Pure
 * functions, any thread. */
#ifndef KUMO_POLICY_TOML_H
#define KUMO_POLICY_TOML_H
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Parse TOML `text` (len bytes; `source` names it in errors). Returns 0
 * with *out, a JSON object the caller owns, or KM_EINVAL with
 * "source:line:column: what" in err. */
int policy_toml_parse(const char *text, size_t len, const char *source,
                      json_t **out, char *err, size_t errlen);

/* Encode the JSON object `obj` (borrowed) as TOML text. Returns 0 with
 * *out, a NUL-terminated string the caller frees with free(), or
 * KM_EINVAL with the reason in err (not an object, a null anywhere, a
 * non-finite number). Keys come out sorted (toml++ tables are ordered).
 * POLICY_TOML_PRETTY indents nested tables and long arrays;
 * POLICY_TOML_INLINE_EMPTY writes an empty table as `key = {}` instead of
 * a `[key]` section. */
#define POLICY_TOML_PRETTY       1u
#define POLICY_TOML_INLINE_EMPTY 2u
int policy_toml_encode(const json_t *obj, unsigned flags, char **out, char *err,
                       size_t errlen);

#ifdef __cplusplus
}
#endif
#endif /* KUMO_POLICY_TOML_H */
