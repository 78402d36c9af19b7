/* km_map.h - a hash map from NUL-terminated string keys to void * values.
 * Open addressing with linear probing; the table doubles when it is 3/4
 * full (counting deleted slots). The map copies and owns its keys; values
 * are borrowed pointers the caller manages. Iteration tolerates removing
 * the entry just returned (removal never moves other entries); inserting
 * during an iteration is not allowed. Not thread-safe: one owner thread. */
#ifndef KUMO_KM_MAP_H
#define KUMO_KM_MAP_H
#include <stdbool.h>
#include <stddef.h>

struct km_map; /* opaque */

struct km_map_iter {
    const struct km_map *map;
    size_t pos;
};

/* A new empty map. The caller owns it and releases it with km_map_free(). */
struct km_map *km_map_new(void);

/* Free the map and its key copies (not the values). NULL does nothing. */
void km_map_free(struct km_map *m);

/* Insert or replace. The map stores a copy of key. If the key was present,
 * its previous value is stored in *old (when old is not NULL) and true is
 * returned; otherwise *old is set to NULL and false returned. */
bool km_map_put(struct km_map *m, const char *key, void *value, void **old);

/* The value stored under key, or NULL if absent. */
void *km_map_get(const struct km_map *m, const char *key);

/* Same as km_map_get for a key given as a view (p, n), no NUL needed. */
void *km_map_getn(const struct km_map *m, const char *p, size_t n);

/* True if key is present (values may be NULL). */
bool km_map_has(const struct km_map *m, const char *key);

/* Remove key. Returns true and its value in *value (when not NULL) if it
 * was present. Safe during an iteration. */
bool km_map_remove(struct km_map *m, const char *key, void **value);

/* Number of entries. */
size_t km_map_count(const struct km_map *m);

/* Remove every entry (keeps the table). */
void km_map_clear(struct km_map *m);

/* Start an iteration in table order (not key order). */
void km_map_iter_init(struct km_map_iter *it, const struct km_map *m);

/* Next entry: true and *key, *value (either may be NULL) set, or false at
 * the end. *key points into the map, valid until that entry is removed. */
bool km_map_iter_next(struct km_map_iter *it, const char **key, void **value);
#endif /* KUMO_KM_MAP_H */
