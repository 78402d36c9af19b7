/* km_id.c - UUIDv1 spool ids. See km_id.h. */
#include "km_id.h"

#include <string.h>
#include <time.h>

#include <openssl/rand.h>

/* 100 ns intervals between 1582-10-15 and 1970-01-01. */
#define KM_ID_GREGORIAN_OFFSET 0x01B21DD213814000ULL

void
km_idgen_init(struct km_idgen *g, const uint8_t node[6])
{
    uint8_t r[2] = {0, 0};

    memset(g, 0, sizeof(*g));
    memcpy(g->node, node, 6);
    g->node[0] |= 0x01; /* multicast bit: not a real MAC (RFC 4122 4.5) */
    (void)RAND_bytes(r, sizeof(r));
    g->clock_seq = (uint16_t)(((r[0] << 8) | r[1]) & 0x3fff);
}

void
km_idgen_next(struct km_idgen *g, char out[KM_ID_HEX_LEN + 1])
{
    struct timespec ts;
    uint8_t b[KM_ID_BYTES];

    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t t = (uint64_t)ts.tv_sec * 10000000ULL +
                 (uint64_t)ts.tv_nsec / 100 + KM_ID_GREGORIAN_OFFSET;
    /* Strictly increasing timestamps keep ids unique even if the clock
     * stalls or steps back. */
    if (t <= g->last_ts) {
        t = g->last_ts + 1;
    }
    g->last_ts = t;

    uint32_t time_low = (uint32_t)(t & 0xffffffffu);
    uint16_t time_mid = (uint16_t)((t >> 32) & 0xffffu);
    uint16_t time_hi = (uint16_t)(((t >> 48) & 0x0fffu) | 0x1000u);
    uint16_t seq = (uint16_t)(g->clock_seq | 0x8000u);

    b[0] = (uint8_t)(time_low >> 24);
    b[1] = (uint8_t)(time_low >> 16);
    b[2] = (uint8_t)(time_low >> 8);
    b[3] = (uint8_t)time_low;
    b[4] = (uint8_t)(time_mid >> 8);
    b[5] = (uint8_t)time_mid;
    b[6] = (uint8_t)(time_hi >> 8);
    b[7] = (uint8_t)time_hi;
    b[8] = (uint8_t)(seq >> 8);
    b[9] = (uint8_t)seq;
    memcpy(b + 10, g->node, 6);
    km_id_format(b, out);
}

static int
km_id_hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

bool
km_id_parse(const char *hex, size_t n, uint8_t out[KM_ID_BYTES])
{
    if (n != KM_ID_HEX_LEN) {
        return false;
    }
    for (size_t i = 0; i < KM_ID_BYTES; i++) {
        int hi = km_id_hexval(hex[2 * i]);
        int lo = km_id_hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return false;
        }
        out[i] = (uint8_t)((hi << 4) | lo);
    }
    return true;
}

void
km_id_format(const uint8_t id[KM_ID_BYTES], char out[KM_ID_HEX_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < KM_ID_BYTES; i++) {
        out[2 * i] = digits[id[i] >> 4];
        out[2 * i + 1] = digits[id[i] & 15];
    }
    out[KM_ID_HEX_LEN] = '\0';
}

int64_t
km_id_time_ms(const char *hex)
{
    uint8_t b[KM_ID_BYTES];

    if (!km_id_parse(hex, strlen(hex), b) || (b[6] >> 4) != 1) {
        return -1;
    }
    uint64_t t = ((uint64_t)(b[6] & 0x0f) << 56) | ((uint64_t)b[7] << 48) |
                 ((uint64_t)b[4] << 40) | ((uint64_t)b[5] << 32) |
                 ((uint64_t)b[0] << 24) | ((uint64_t)b[1] << 16) |
                 ((uint64_t)b[2] << 8) | (uint64_t)b[3];
    if (t < KM_ID_GREGORIAN_OFFSET) {
        return -1;
    }
    return (int64_t)((t - KM_ID_GREGORIAN_OFFSET) / 10000);
}
