/* km_map.c - string-keyed hash map with open addressing (linear probing)
 * and deleted markers, so removal never moves an entry and iterators stay
 * valid. Rehashing (on growth) drops the markers. FNV-1a hashing: keys
 * are local names and ids, not attacker-chosen in bulk. See km_map.h. */
#include "km_map.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "km.h"

#define KM_MAP_MIN_CAP 16

/* A slot is empty (key NULL, !deleted), used, or deleted (key NULL,
 * deleted): probing continues past deleted slots. */
struct km_map_slot {
    char *key;
    void *value;
    uint64_t hash;
    bool deleted;
};

struct km_map {
    struct km_map_slot *slots;
    size_t cap; /* power of two */
    size_t count;
    size_t deleted;
};

static uint64_t
km_map_hash(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;

    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ULL;
    }
    /* Mix the high bits down: the mask keeps only the low ones. */
    h ^= h >> 29;
    return h;
}

struct km_map *
km_map_new(void)
{
    struct km_map *m = km_calloc(1, sizeof(*m));

    m->cap = KM_MAP_MIN_CAP;
    m->slots = km_calloc(m->cap, sizeof(*m->slots));
    return m;
}

void
km_map_clear(struct km_map *m)
{
    for (size_t i = 0; i < m->cap; i++) {
        free(m->slots[i].key);
        m->slots[i].key = NULL;
        m->slots[i].deleted = false;
    }
    m->count = 0;
    m->deleted = 0;
}

void
km_map_free(struct km_map *m)
{
    if (m == NULL) {
        return;
    }
    km_map_clear(m);
    free(m->slots);
    free(m);
}

/* Index of the slot holding (p, n), or SIZE_MAX. */
static size_t
km_map_find(const struct km_map *m, const char *p, size_t n, uint64_t h)
{
    size_t mask = m->cap - 1;

    for (size_t i = h & mask, probes = 0; probes < m->cap;
         i = (i + 1) & mask, probes++) {
        const struct km_map_slot *s = &m->slots[i];
        if (s->key == NULL) {
            if (!s->deleted) {
                return SIZE_MAX;
            }
            continue;
        }
        if (s->hash == h && strncmp(s->key, p, n) == 0 && s->key[n] == '\0') {
            return i;
        }
    }
    return SIZE_MAX;
}

static void
km_map_rehash(struct km_map *m, size_t cap)
{
    struct km_map_slot *old = m->slots;
    size_t old_cap = m->cap;

    m->slots = km_calloc(cap, sizeof(*m->slots));
    m->cap = cap;
    m->deleted = 0;
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].key == NULL) {
            continue;
        }
        size_t j = old[i].hash & (cap - 1);
        while (m->slots[j].key != NULL) {
            j = (j + 1) & (cap - 1);
        }
        m->slots[j] = old[i];
    }
    free(old);
}

bool
km_map_put(struct km_map *m, const char *key, void *value, void **old)
{
    size_t n = strlen(key);
    uint64_t h = km_map_hash(key, n);
    size_t i = km_map_find(m, key, n, h);

    if (i != SIZE_MAX) {
        if (old != NULL) {
            *old = m->slots[i].value;
        }
        m->slots[i].value = value;
        return true;
    }
    if (old != NULL) {
        *old = NULL;
    }
    if ((m->count + m->deleted + 1) * 4 > m->cap * 3) {
        /* Grow only if live entries need it; otherwise just drop the
         * deleted markers at the same size. */
        size_t cap = m->cap;
        while ((m->count + 1) * 2 > cap) {
            cap *= 2;
        }
        km_map_rehash(m, cap);
    }
    size_t mask = m->cap - 1;
    i = h & mask;
    while (m->slots[i].key != NULL) {
        i = (i + 1) & mask;
    }
    if (m->slots[i].deleted) {
        m->deleted--;
    }
    m->slots[i].key = km_memdup(key, n + 1);
    m->slots[i].value = value;
    m->slots[i].hash = h;
    m->slots[i].deleted = false;
    m->count++;
    return false;
}

void *
km_map_getn(const struct km_map *m, const char *p, size_t n)
{
    size_t i = km_map_find(m, p, n, km_map_hash(p, n));

    return i == SIZE_MAX ? NULL : m->slots[i].value;
}

void *
km_map_get(const struct km_map *m, const char *key)
{
    return km_map_getn(m, key, strlen(key));
}

bool
km_map_has(const struct km_map *m, const char *key)
{
    size_t n = strlen(key);

    return km_map_find(m, key, n, km_map_hash(key, n)) != SIZE_MAX;
}

bool
km_map_remove(struct km_map *m, const char *key, void **value)
{
    size_t n = strlen(key);
    size_t i = km_map_find(m, key, n, km_map_hash(key, n));

    if (i == SIZE_MAX) {
        return false;
    }
    if (value != NULL) {
        *value = m->slots[i].value;
    }
    free(m->slots[i].key);
    m->slots[i].key = NULL;
    m->slots[i].value = NULL;
    m->slots[i].deleted = true;
    m->count--;
    m->deleted++;
    return true;
}

size_t
km_map_count(const struct km_map *m)
{
    return m->count;
}

void
km_map_iter_init(struct km_map_iter *it, const struct km_map *m)
{
    it->map = m;
    it->pos = 0;
}

bool
km_map_iter_next(struct km_map_iter *it, const char **key, void **value)
{
    const struct km_map *m = it->map;

    while (it->pos < m->cap) {
        const struct km_map_slot *s = &m->slots[it->pos++];
        if (s->key != NULL) {
            if (key != NULL) {
                *key = s->key;
            }
            if (value != NULL) {
                *value = s->value;
            }
            return true;
        }
    }
    return false;
}
