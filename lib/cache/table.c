/* Per-shard index maintenance under the shard lock: insert, replace and remove with
 * per-bucket overflow counts (entries never move under readers), and rebuilds to grow. */
#include "cache/table.h"

#include "core/alloc.h"

/* Fill at most this share of the slots (in 1/100): bucketized probing stays in the home
 * bucket for almost every key at this load. */
#define MC__TABLE_LOAD_PCT 85

uint32_t mc__table_buckets_for(size_t n)
{
    size_t slots = n * 100 / MC__TABLE_LOAD_PCT + 1;
    size_t nb = (slots + MC__BUCKET_SLOTS - 1) / MC__BUCKET_SLOTS + 1;
    return nb > UINT32_MAX / 16 ? UINT32_MAX / 16 : (uint32_t)nb;
}

static size_t mc__table_alloc_size(uint32_t nbuckets)
{
    /* Header, then room to align the buckets to a cache line. */
    return sizeof(mc__table) + 64 + (size_t)nbuckets * sizeof(mc__bucket);
}

mc__table *mc__table_new(uint32_t nbuckets)
{
    if (nbuckets < 1)
        nbuckets = 1;
    /* Use all of the allocator's size class (up to 25% more for large tables): the memory
     * is spent anyway, and more buckets mean fewer overflows. */
    size_t cls = mc__alloc_class(mc__table_alloc_size(nbuckets));
    size_t fit = (cls - sizeof(mc__table) - 64) / sizeof(mc__bucket);
    if (fit > nbuckets && fit <= UINT32_MAX / 16)
        nbuckets = (uint32_t)fit;
    mc__table *t = mc__zalloc(mc__table_alloc_size(nbuckets));
    if (!t)
        return NULL;
    t->nbuckets = nbuckets;
    t->buckets = (mc__bucket *)(((uintptr_t)(t + 1) + 63) & ~(uintptr_t)63);
    return t;
}

void mc__table_free(mc__table *t)
{
    if (t)
        mc__free(t, mc__table_alloc_size(t->nbuckets));
}

size_t mc__table_bytes(const mc__table *t) { return mc__alloc_class(mc__table_alloc_size(t->nbuckets)); }

static inline uint32_t mc__next(const mc__table *t, uint32_t b) { return b + 1 == t->nbuckets ? 0 : b + 1; }

static inline uintptr_t mc__load(const mc__bucket *bk, int i)
{
    /* Relaxed: the shard lock orders writers; readers never write slots. */
    return atomic_load_explicit(&bk->slots[i], memory_order_relaxed);
}

static inline uint32_t mc__overflow(const mc__bucket *bk)
{
    return atomic_load_explicit(&bk->overflow, memory_order_relaxed);
}

int64_t mc__table_find_slot(const mc__table *t, uint32_t hash, const void *key, size_t klen)
{
    uintptr_t tag = mc__slot_tag(hash);
    uint32_t b = mc__table_home(hash, t->nbuckets);
    for (uint32_t n = 0; n < t->nbuckets; n++, b = mc__next(t, b)) {
        const mc__bucket *bk = &t->buckets[b];
        for (int i = 0; i < MC__BUCKET_SLOTS; i++) {
            uintptr_t s = mc__load(bk, i);
            if (s != MC__SLOT_EMPTY && (s & ~MC__SLOT_PTR_MASK) == tag) {
                mc__entry *e = mc__slot_entry(s);
                if (e->hash == hash && mc__entry_key_eq(e, key, klen))
                    return (int64_t)b * 8 + i;
            }
        }
        if (mc__overflow(bk) == 0)
            return -1;
    }
    return -1;
}

int64_t mc__table_slot_of(const mc__table *t, const mc__entry *e)
{
    uint32_t b = mc__table_home(e->hash, t->nbuckets);
    for (uint32_t n = 0; n < t->nbuckets; n++, b = mc__next(t, b)) {
        const mc__bucket *bk = &t->buckets[b];
        for (int i = 0; i < MC__BUCKET_SLOTS; i++) {
            uintptr_t s = mc__load(bk, i);
            if (s != MC__SLOT_EMPTY && mc__slot_entry(s) == e)
                return (int64_t)b * 8 + i;
        }
        if (mc__overflow(bk) == 0)
            return -1;
    }
    return -1;
}

mc__entry *mc__table_at(const mc__table *t, int64_t pos)
{
    return mc__slot_entry(mc__load(&t->buckets[pos >> 3], (int)(pos & 7)));
}

mc__entry *mc__table_find_hash(const mc__table *t, uint32_t hash)
{
    uintptr_t tag = mc__slot_tag(hash);
    uint32_t b = mc__table_home(hash, t->nbuckets);
    for (uint32_t n = 0; n < t->nbuckets; n++, b = mc__next(t, b)) {
        const mc__bucket *bk = &t->buckets[b];
        for (int i = 0; i < MC__BUCKET_SLOTS; i++) {
            uintptr_t s = mc__load(bk, i);
            if (s != MC__SLOT_EMPTY && (s & ~MC__SLOT_PTR_MASK) == tag && mc__slot_entry(s)->hash == hash)
                return mc__slot_entry(s);
        }
        if (mc__overflow(bk) == 0)
            return NULL;
    }
    return NULL;
}

bool mc__table_has_room(const mc__table *t)
{
    return (uint64_t)(t->live + 1) * 100 <= (uint64_t)t->nbuckets * MC__BUCKET_SLOTS * MC__TABLE_LOAD_PCT;
}

/* Add d to the overflow count of every bucket from `from` up to, not including, `to`. */
static void mc__overflow_add(mc__table *t, uint32_t from, uint32_t to, int32_t d)
{
    for (uint32_t b = from; b != to; b = mc__next(t, b)) {
        _Atomic uint32_t *o = &t->buckets[b].overflow;
        /* Release on the way up: a reader that sees the count sees the state before the new
         * slot is published; on the way down the slot is already empty. */
        atomic_store_explicit(o, atomic_load_explicit(o, memory_order_relaxed) + (uint32_t)d,
                              memory_order_release);
    }
}

void mc__table_insert(mc__table *t, mc__entry *e)
{
    uint32_t home = mc__table_home(e->hash, t->nbuckets);
    uint32_t b = home;
    /* The table is below its load limit, so an empty slot exists. */
    for (;;) {
        mc__bucket *bk = &t->buckets[b];
        for (int i = 0; i < MC__BUCKET_SLOTS; i++) {
            if (mc__load(bk, i) == MC__SLOT_EMPTY) {
                /* Counts first, so a reader never stops short of a published entry. */
                mc__overflow_add(t, home, b, 1);
                t->live++;
                /* Release: the entry's fields are complete before a reader can find it. */
                atomic_store_explicit(&bk->slots[i], (uintptr_t)e | mc__slot_tag(e->hash),
                                      memory_order_release);
                return;
            }
        }
        b = mc__next(t, b);
    }
}

void mc__table_replace(mc__table *t, int64_t pos, mc__entry *e)
{
    atomic_store_explicit(&t->buckets[pos >> 3].slots[pos & 7], (uintptr_t)e | mc__slot_tag(e->hash),
                          memory_order_release);
}

void mc__table_remove(mc__table *t, int64_t pos)
{
    uint32_t b = (uint32_t)(pos >> 3);
    mc__entry *e = mc__table_at(t, pos);
    atomic_store_explicit(&t->buckets[b].slots[pos & 7], MC__SLOT_EMPTY, memory_order_relaxed);
    /* Other displaced entries keep their own counts along their paths, so lowering this
     * entry's counts can only stop lookups for keys that are absent. */
    mc__overflow_add(t, mc__table_home(e->hash, t->nbuckets), b, -1);
    t->live--;
}

mc__table *mc__table_rebuild(const mc__table *t, size_t min_entries)
{
    size_t want = (size_t)t->live + 1;
    if (want < min_entries)
        want = min_entries;
    mc__table *n = mc__table_new(mc__table_buckets_for(want));
    if (!n)
        return NULL;
    for (uint32_t b = 0; b < t->nbuckets; b++)
        for (int i = 0; i < MC__BUCKET_SLOTS; i++) {
            uintptr_t s = mc__load(&t->buckets[b], i);
            if (s != MC__SLOT_EMPTY)
                mc__table_insert(n, mc__slot_entry(s));
        }
    return n;
}

int mc__table_check(const mc__table *t)
{
    /* Recount every bucket's overflow from the entries' positions. */
    uint32_t *want = mc__zalloc((size_t)t->nbuckets * sizeof *want);
    if (!want)
        return 0; /* cannot check without memory; not a fault of the table */
    uint32_t live = 0;
    int rc = 0;
    for (uint32_t b = 0; b < t->nbuckets; b++)
        for (int i = 0; i < MC__BUCKET_SLOTS; i++) {
            uintptr_t s = mc__load(&t->buckets[b], i);
            if (s == MC__SLOT_EMPTY)
                continue;
            live++;
            mc__entry *e = mc__slot_entry(s);
            if ((s & ~MC__SLOT_PTR_MASK) != mc__slot_tag(e->hash))
                rc = -1;
            for (uint32_t h = mc__table_home(e->hash, t->nbuckets); h != b; h = mc__next(t, h))
                want[h]++;
        }
    for (uint32_t b = 0; b < t->nbuckets; b++)
        if (want[b] != mc__overflow(&t->buckets[b]))
            rc = -2;
    if (live != t->live)
        rc = -3;
    mc__free(want, (size_t)t->nbuckets * sizeof *want);
    return rc;
}
