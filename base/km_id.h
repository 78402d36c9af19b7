/* km_id.h - spool ids: UUID version 1 as KumoMTA uses, printed as 32
 * lowercase hex digits. The 60-bit timestamp strictly increases within a
 * process (a counter absorbs same-tick calls), and the 48-bit node field
 * comes from the node id, so ids are unique per node. Loop thread only. */
#ifndef KUMO_KM_ID_H
#define KUMO_KM_ID_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KM_ID_HEX_LEN 32
#define KM_ID_BYTES   16

struct km_idgen {
    uint64_t last_ts; /* 100 ns ticks since 1582-10-15 */
    uint16_t clock_seq;
    uint8_t node[6];
};

/* Initialise with a 48-bit node value (e.g. from the node id). */
void km_idgen_init(struct km_idgen *g, const uint8_t node[6]);
/* Write a new id as 32 hex digits plus NUL into out[33]. */
void km_idgen_next(struct km_idgen *g, char out[KM_ID_HEX_LEN + 1]);
/* Hex <-> bytes. km_id_parse returns false on anything but 32 hex digits. */
bool km_id_parse(const char *hex, size_t n, uint8_t out[KM_ID_BYTES]);
void km_id_format(const uint8_t id[KM_ID_BYTES], char out[KM_ID_HEX_LEN + 1]);
/* The creation time encoded in a UUIDv1 id, in unix milliseconds, or -1. */
int64_t km_id_time_ms(const char *hex);
#endif /* KUMO_KM_ID_H */
