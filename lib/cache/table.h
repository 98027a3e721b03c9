/* The per-shard index: open addressing with linear probing over tagged entry pointers.
 * Lookups are lock-free (inside an epoch section); every change happens under the shard lock. */
#ifndef MC_CACHE_TABLE_H
#define MC_CACHE_TABLE_H

#include "cache/entry.h"

/* A slot is 0 (never used), 1 (tombstone: keeps probe chains intact), or an entry pointer
 * with a 16-bit hash tag in the top bits, so most mismatches never touch the entry.
 * x86-64 and AArch64 user pointers fit in 48 bits. */
#define MC__SLOT_EMPTY ((uintptr_t)0)
#define MC__SLOT_TOMB ((uintptr_t)1)
#define MC__SLOT_PTR_MASK (((uintptr_t)1 << 48) - 1)

typedef struct mc__table {
    ck_epoch_entry_t epoch; /* retirement after a rebuild */
    uint32_t cap;           /* slots, any size >= 8 (positions come from a multiply-shift) */
    uint32_t live;          /* entries (shard lock) */
    uint32_t used;          /* entries + tombstones (shard lock) */
    _Atomic uintptr_t slots[];
} mc__table;

static inline uint32_t mc__table_home(uint32_t hash, uint32_t cap)
{
    return (uint32_t)(((uint64_t)hash * cap) >> 32);
}

static inline uintptr_t mc__slot_tag(uint32_t hash)
{
    /* The low bits barely move the home position, so they make an independent tag. */
    return (uintptr_t)((hash ^ (hash >> 16)) & 0xffffu) << 48;
}

static inline mc__entry *mc__slot_entry(uintptr_t s) { return (mc__entry *)(s & MC__SLOT_PTR_MASK); }

/* Lock-free lookup; the caller is inside an epoch section. Returns the entry or NULL. */
static inline mc__entry *mc__table_find(const mc__table *t, uint32_t hash, const void *key,
                                        size_t klen)
{
    uintptr_t tag = mc__slot_tag(hash);
    uint32_t i = mc__table_home(hash, t->cap);
    for (uint32_t n = 0; n < t->cap; n++) {
        /* Acquire pairs with the release in publication: the entry's fields are visible. */
        uintptr_t s = atomic_load_explicit(&t->slots[i], memory_order_acquire);
        if (s == MC__SLOT_EMPTY)
            return NULL;
        if ((s & ~MC__SLOT_PTR_MASK) == tag && s != MC__SLOT_TOMB) {
            mc__entry *e = mc__slot_entry(s);
            if (e->hash == hash && mc__entry_key_eq(e, key, klen))
                return e;
        }
        if (++i == t->cap)
            i = 0;
    }
    return NULL;
}

/* Slots needed to hold n entries at load factor 3/4 (11 bytes of index per entry). */
uint32_t mc__table_cap_for(size_t n);
mc__table *mc__table_new(uint32_t cap);
void mc__table_free(mc__table *t);
size_t mc__table_bytes(const mc__table *t);

/* Shard-lock operations. find_slot returns the slot index of key, or -1. */
int64_t mc__table_find_slot(const mc__table *t, uint32_t hash, const void *key, size_t klen);
/* Slot index holding exactly entry e, or -1. */
int64_t mc__table_slot_of(const mc__table *t, const mc__entry *e);
/* Any entry whose 32-bit hash is `hash` (recency records carry only the hash). */
mc__entry *mc__table_find_hash(const mc__table *t, uint32_t hash);
/* True when one more entry fits without a rebuild. */
bool mc__table_has_room(const mc__table *t);
/* Insert e, known to be absent (caller checked has_room). Publishes with release. */
void mc__table_insert(mc__table *t, mc__entry *e);
/* Swap the entry at a slot for another with the same key (release). */
void mc__table_replace(mc__table *t, int64_t slot, mc__entry *e);
void mc__table_remove(mc__table *t, int64_t slot);
/* A new table with every live entry of t, sized for max(live + 1, min_entries).
 * NULL on allocation failure (t unchanged). */
mc__table *mc__table_rebuild(const mc__table *t, size_t min_entries);

#endif
