/* The per-shard index: 64-byte buckets of 7 entry pointers with a control word of 7 tag
 * bytes and an overflow count. Lookups are lock-free (inside an epoch section); changes hold
 * the shard lock. */
#ifndef MC_CACHE_TABLE_H
#define MC_CACHE_TABLE_H

#include "cache/entry.h"

#define MC__BUCKET_SLOTS 7

/* ctrl bytes 0-6: the tag of each slot (0 = empty, else 1-255 from the key's hash), so a
 * lookup compares all tags at once and touches only matching entries. Byte 7: how many
 * entries passed this bucket on their probe sequence and are stored further on (saturating at
 * 255, then sticky). A lookup that misses in a bucket whose count is 0 stops there, so a
 * removal simply empties its slot: no tombstones, and entries never move under readers. */
typedef struct mc__bucket {
    _Alignas(64) _Atomic uint64_t ctrl;
    _Atomic(mc__entry *) slots[MC__BUCKET_SLOTS];
} mc__bucket;

typedef struct mc__table {
    /* Read by every lookup, never written after creation. */
    ck_epoch_entry_t epoch; /* retirement after a rebuild */
    uint32_t nbuckets;      /* prime, so every probe step visits every bucket */
    mc__bucket *buckets;    /* 64-byte aligned, inside the same allocation */
    /* Written by every insert and removal: on a line of its own, or each write would evict
     * the fields above from every reader's cache. */
    _Alignas(64) uint32_t live; /* entries (shard lock) */
} mc__table;

#define MC__BYTES_01 0x0101010101010101ull
#define MC__BYTES_7F 0x7f7f7f7f7f7f7f7full
#define MC__TAG_BYTES 0x0080808080808080ull /* the high bit of each tag byte (not byte 7) */

static inline uint32_t mc__table_home(uint32_t hash, uint32_t nbuckets)
{
    return (uint32_t)(((uint64_t)hash * nbuckets) >> 32);
}

/* The home bucket comes from the high bits, the tag from the low byte. */
static inline uint8_t mc__tag(uint32_t hash)
{
    uint8_t t = (uint8_t)hash;
    return t ? t : 1;
}

/* The high bit set in every tag byte of ctrl equal to `tag` (exact, no false positives). */
static inline uint64_t mc__ctrl_match(uint64_t ctrl, uint8_t tag)
{
    uint64_t x = ctrl ^ (MC__BYTES_01 * tag);
    uint64_t y = (x & MC__BYTES_7F) + MC__BYTES_7F;
    return ~(y | x | MC__BYTES_7F) & MC__TAG_BYTES;
}

static inline uint32_t mc__ctrl_overflow(uint64_t ctrl) { return (uint32_t)(ctrl >> 56); }

/* Keys leave a full home bucket by a step of their own (double hashing over a prime number
 * of buckets): keys sharing a home spread out instead of piling into the next bucket. */
static inline uint32_t mc__table_step(uint32_t hash, uint32_t nbuckets)
{
    return nbuckets > 1 ? 1 + ((hash ^ (hash >> 16)) & 0xffffu) % (nbuckets - 1) : 0;
}

static inline uint32_t mc__table_advance(uint32_t b, uint32_t step, uint32_t nbuckets)
{
    b += step;
    return b >= nbuckets ? b - nbuckets : b;
}

/* Lock-free lookup; the caller is inside an epoch section. Returns the entry or NULL. */
static inline mc__entry *mc__table_find(const mc__table *t, uint32_t hash, const void *key,
                                        size_t klen)
{
    uint8_t tag = mc__tag(hash);
    uint32_t b = mc__table_home(hash, t->nbuckets), step = 0;
    for (uint32_t n = 0; n < t->nbuckets; n++) {
        mc__bucket *bk = &t->buckets[b];
        /* Acquire pairs with the writer's release of ctrl after it stored the slot. */
        uint64_t ctrl = atomic_load_explicit(&bk->ctrl, memory_order_acquire);
        for (uint64_t m = mc__ctrl_match(ctrl, tag); m; m &= m - 1) {
            mc__entry *e = atomic_load_explicit(&bk->slots[__builtin_ctzll(m) >> 3], memory_order_acquire);
            if (e && e->hash == hash && mc__entry_key_eq(e, key, klen))
                return e;
        }
        if (mc__ctrl_overflow(ctrl) == 0)
            return NULL;
        if (!step)
            step = mc__table_step(hash, t->nbuckets);
        b = mc__table_advance(b, step, t->nbuckets);
    }
    return NULL;
}

/* Buckets for n entries at the target load (85% of slots). */
uint32_t mc__table_buckets_for(size_t n);
/* At least nbuckets buckets (a prime number of them). NULL on allocation failure. */
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
/* Recount tags, overflows and entries (tests): 0, or -1 tag, -2 overflow, -3 count mismatch. */
int mc__table_check(const mc__table *t);

#endif
