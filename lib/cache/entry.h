/* An out-of-line cache entry (and every pinned mc_value): a 32-byte header followed by
 * optional fields, the key and the value, in one allocation. Entries that fit a cell live in
 * the index itself (table.h); this form holds the rest: long keys or values, owned values,
 * explicit weights and entries with access times. Immutable once published but for refs,
 * freq and the access time. */
#ifndef MC_CACHE_ENTRY_H
#define MC_CACHE_ENTRY_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "core/epoch.h"
#include "modcache/cache.h"


enum {
    MC__E_OWNED = 1, /* value handed over: pointer, free function and weight stored inline */
    MC__E_TTL = 2,   /* access time stored inline */
    MC__E_NONE = 4,  /* "no value": a cached absence (memoized functions) */
    MC__E_WEIGHT = 8, /* an explicit weight stored inline (copied values) */
    MC__E_PRIVATE = 0x80, /* never in the index (a detached copy): no reader can reach it
                           * without a reference, so the last release frees it at once */
    MC__E_WTIME = 16, /* write time stored inline (write-age rules: mc__cache_set_write_rules) */
};

/* The high bit of the write time: a refresh of this entry was handed out (one per entry). */
#define MC__WTIME_CLAIM (1ull << 63)


typedef struct mc__entry {
    mc__retire_node rcu;     /* once out of the cache and unpinned: awaiting reclamation */
    uint32_t hash;           /* low 32 bits of the key hash */
    _Atomic uint32_t refs;   /* 1 while in the cache + 1 per pin; 0 = being reclaimed */
    uint32_t vlen;
    uint16_t klen;
    uint8_t spare;
    uint8_t flags;           /* MC__E_*, set before publication, read-only afterwards */
    unsigned char data[];    /* [atime u64 if TTL][owned value if OWNED] key, pad to 8, value */
} mc__entry;

/* Optional fields start 8-aligned right after the header. */
#define MC__ENTRY_HDR 32u

struct mc__owned {
    void *value;
    mc_free_fn free_fn;
    uint64_t weight;
};

static inline size_t mc__align8(size_t n) { return (n + 7u) & ~(size_t)7u; }

/* Optional fields, in this order: access time, explicit weight, owned value. (The write time
 * goes last, after the value: see mc__entry_wtime.) */
static inline size_t mc__entry_opt_size(unsigned flags)
{
    return ((flags & MC__E_TTL) ? 8u : 0u) + ((flags & MC__E_WEIGHT) ? 8u : 0u) +
           ((flags & MC__E_OWNED) ? sizeof(struct mc__owned) : 0u);
}

static inline unsigned char *mc__entry_key(const mc__entry *e)
{
    return (unsigned char *)e + MC__ENTRY_HDR + mc__entry_opt_size(e->flags);
}

static inline _Atomic uint64_t *mc__entry_atime(const mc__entry *e)
{
    return (_Atomic uint64_t *)((unsigned char *)e + MC__ENTRY_HDR);
}

static inline uint64_t *mc__entry_weight_field(const mc__entry *e)
{
    return (uint64_t *)((unsigned char *)e + MC__ENTRY_HDR + ((e->flags & MC__E_TTL) ? 8u : 0u));
}

static inline struct mc__owned *mc__entry_owned(const mc__entry *e)
{
    return (struct mc__owned *)((unsigned char *)e + MC__ENTRY_HDR +
                                ((e->flags & MC__E_TTL) ? 8u : 0u) +
                                ((e->flags & MC__E_WEIGHT) ? 8u : 0u));
}

/* Copied values start 8-aligned so a pinned value can be read in place as a struct. */
static inline size_t mc__entry_value_offset(unsigned flags, size_t klen)
{
    return mc__align8(MC__ENTRY_HDR + mc__entry_opt_size(flags) + klen);
}

static inline const void *mc__entry_value(const mc__entry *e)
{
    if (e->flags & MC__E_OWNED)
        return mc__entry_owned(e)->value;
    return (const unsigned char *)e + mc__entry_value_offset(e->flags, e->klen);
}

/* Where the entry's own bytes end (header, optional fields, key, copied value). */
static inline size_t mc__entry_body_size(unsigned flags, size_t klen, size_t vlen)
{
    if (flags & MC__E_OWNED)
        return MC__ENTRY_HDR + mc__entry_opt_size(flags) + klen;
    return mc__entry_value_offset(flags, klen) + vlen;
}

static inline size_t mc__entry_alloc_size(unsigned flags, size_t klen, size_t vlen)
{
    size_t n = mc__entry_body_size(flags, klen, vlen);
    return (flags & MC__E_WTIME) ? mc__align8(n) + 8u : n;
}

/* The write time (MC__E_WTIME): when the entry was stored, by the cache's clock, with
 * MC__WTIME_CLAIM set once a lookup claimed its refresh or expiry. Last in the allocation,
 * 8-aligned, so that no other field's offset depends on it (hits on entries without it pay
 * nothing). Atomic for the claim only. */
static inline _Atomic uint64_t *mc__entry_wtime(const mc__entry *e)
{
    return (_Atomic uint64_t *)((unsigned char *)e + mc__align8(mc__entry_body_size(e->flags, e->klen, e->vlen)));
}

static inline uint64_t mc__entry_weight(const mc__entry *e)
{
    if (e->flags & MC__E_WEIGHT)
        return *mc__entry_weight_field(e);
    if (e->flags & MC__E_OWNED)
        return mc__entry_owned(e)->weight;
    return (uint64_t)e->klen + e->vlen;
}

/* Equality of short byte strings without a call: most keys are a few bytes to a few dozen. */
static inline bool mc__bytes_eq(const unsigned char *a, const unsigned char *b, size_t n)
{
    if (n >= 8 && n <= 16) {
        uint64_t a0, a1, b0, b1;
        memcpy(&a0, a, 8);
        memcpy(&b0, b, 8);
        memcpy(&a1, a + n - 8, 8);
        memcpy(&b1, b + n - 8, 8);
        return ((a0 ^ b0) | (a1 ^ b1)) == 0;
    }
    if (n >= 4 && n < 8) {
        uint32_t a0, a1, b0, b1;
        memcpy(&a0, a, 4);
        memcpy(&b0, b, 4);
        memcpy(&a1, a + n - 4, 4);
        memcpy(&b1, b + n - 4, 4);
        return ((a0 ^ b0) | (a1 ^ b1)) == 0;
    }
    if (n >= 2 && n < 4) {
        uint16_t a0, a1, b0, b1;
        memcpy(&a0, a, 2);
        memcpy(&b0, b, 2);
        memcpy(&a1, a + n - 2, 2);
        memcpy(&b1, b + n - 2, 2);
        return ((a0 ^ b0) | (a1 ^ b1)) == 0;
    }
    if (n < 2)
        return n == 0 || a[0] == b[0];
    if (n <= 32) {
        /* Memoized keys (a name and a number or two) are mostly 17 to 32 bytes: the first
         * two and the last two words, overlapping as needed. */
        uint64_t a0, a1, a2, a3, b0, b1, b2, b3;
        memcpy(&a0, a, 8);
        memcpy(&b0, b, 8);
        memcpy(&a1, a + 8, 8);
        memcpy(&b1, b + 8, 8);
        memcpy(&a2, a + n - 16, 8);
        memcpy(&b2, b + n - 16, 8);
        memcpy(&a3, a + n - 8, 8);
        memcpy(&b3, b + n - 8, 8);
        return ((a0 ^ b0) | (a1 ^ b1) | (a2 ^ b2) | (a3 ^ b3)) == 0;
    }
    return memcmp(a, b, n) == 0;
}

static inline bool mc__entry_key_eq(const mc__entry *e, const void *key, size_t klen)
{
    return e->klen == klen && mc__bytes_eq(mc__entry_key(e), key, klen);
}

_Static_assert(sizeof(mc__entry) == MC__ENTRY_HDR, "entry header is 32 bytes");

/* Drop one reference; the last one retires the entry through the epoch. */
void mc__entry_unref(mc__entry *e);

#endif
