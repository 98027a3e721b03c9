/* The per-shard index: buckets of 7 tagged entry pointers (one cache line each), probed
 * bucket by bucket. Lookups are lock-free (inside an epoch section); changes hold the shard lock. */
#ifndef MC_CACHE_TABLE_H
#define MC_CACHE_TABLE_H

#include "cache/entry.h"

/* A slot is 0 (empty) or an entry pointer with a 16-bit hash tag in its top bits, so most
 * mismatches never touch the entry. x86-64 and AArch64 user pointers fit in 48 bits. */
#define MC__SLOT_EMPTY ((uintptr_t)0)
#define MC__SLOT_PTR_MASK (((uintptr_t)1 << 48) - 1)
#define MC__BUCKET_SLOTS 7

/* `overflow` counts the entries stored beyond this bucket whose probe path started at or
 * before it. A lookup that misses in a bucket with overflow 0 stops there, so a removal
 * simply empties its slot: no tombstones, entries never move, nothing to clean up. */
typedef struct mc__bucket {
    _Alignas(64) _Atomic uint32_t overflow;
    uint32_t unused;
    _Atomic uintptr_t slots[MC__BUCKET_SLOTS];
} mc__bucket;

typedef struct mc__table {
    ck_epoch_entry_t epoch; /* retirement after a rebuild */
    uint32_t nbuckets;
    uint32_t live; /* entries (shard lock) */
    mc__bucket *buckets; /* 64-byte aligned, inside the same allocation */
} mc__table;

static inline uint32_t mc__table_home(uint32_t hash, uint32_t nbuckets)
{
    return (uint32_t)(((uint64_t)hash * nbuckets) >> 32);
}

static inline uintptr_t mc__slot_tag(uint32_t hash)
{
    /* The low bits barely move the home bucket, so they make an independent tag. */
    return (uintptr_t)((hash ^ (hash >> 16)) & 0xffffu) << 48;
}

static inline mc__entry *mc__slot_entry(uintptr_t s) { return (mc__entry *)(s & MC__SLOT_PTR_MASK); }

/* Lock-free lookup; the caller is inside an epoch section. Returns the entry or NULL. */
static inline mc__entry *mc__table_find(const mc__table *t, uint32_t hash, const void *key,
                                        size_t klen)
{
    uintptr_t tag = mc__slot_tag(hash);
    uint32_t b = mc__table_home(hash, t->nbuckets);
    for (uint32_t n = 0; n < t->nbuckets; n++) {
        const mc__bucket *bk = &t->buckets[b];
        for (int i = 0; i < MC__BUCKET_SLOTS; i++) {
            /* Acquire pairs with the release in publication: the entry's fields are visible. */
            uintptr_t s = atomic_load_explicit(&bk->slots[i], memory_order_acquire);
            if ((s & ~MC__SLOT_PTR_MASK) == tag && s != MC__SLOT_EMPTY) {
                mc__entry *e = mc__slot_entry(s);
                if (e->hash == hash && mc__entry_key_eq(e, key, klen))
                    return e;
            }
        }
        if (atomic_load_explicit(&bk->overflow, memory_order_acquire) == 0)
            return NULL;
        if (++b == t->nbuckets)
            b = 0;
    }
    return NULL;
}

/* Buckets for n entries at the target load (85% of slots). */
uint32_t mc__table_buckets_for(size_t n);
/* NULL on allocation failure. */
mc__table *mc__table_new(uint32_t nbuckets);
void mc__table_free(mc__table *t);
size_t mc__table_bytes(const mc__table *t);

/* Shard-lock operations. Positions are bucket * 8 + slot; -1 means not found. */
int64_t mc__table_find_slot(const mc__table *t, uint32_t hash, const void *key, size_t klen);
/* Position holding exactly entry e, or -1. */
int64_t mc__table_slot_of(const mc__table *t, const mc__entry *e);
mc__entry *mc__table_at(const mc__table *t, int64_t pos);
/* Any entry whose 32-bit hash is `hash` (recency records carry only the hash). */
mc__entry *mc__table_find_hash(const mc__table *t, uint32_t hash);
/* True when one more entry fits without a rebuild. */
bool mc__table_has_room(const mc__table *t);
/* Insert e, known to be absent (caller checked has_room). Publishes with release. */
void mc__table_insert(mc__table *t, mc__entry *e);
/* Swap the entry at a position for another with the same key (release). */
void mc__table_replace(mc__table *t, int64_t pos, mc__entry *e);
void mc__table_remove(mc__table *t, int64_t pos);
/* A new table with every entry of t, sized for max(live + 1, min_entries).
 * NULL on allocation failure (t unchanged). */
mc__table *mc__table_rebuild(const mc__table *t, size_t min_entries);

/* Recount overflows, tags and entries (tests): 0, or -1 tag, -2 overflow, -3 count mismatch. */
int mc__table_check(const mc__table *t);

#endif
