/* Per-shard index maintenance under the shard lock: insert, replace, remove with tombstones
 * (entries never move while readers probe), and rebuilds published by pointer swap. */
#include "cache/table.h"

#include "core/alloc.h"

uint32_t mc__table_cap_for(size_t n)
{
    /* n entries at load factor 3/4 (the most has_room allows), plus slack for small tables. */
    size_t cap = n + n / 3 + 8;
    return cap > UINT32_MAX / 2 ? UINT32_MAX / 2 : (uint32_t)cap;
}

static size_t mc__table_alloc_size(uint32_t cap)
{
    return sizeof(mc__table) + (size_t)cap * sizeof(uintptr_t);
}

mc__table *mc__table_new(uint32_t cap)
{
    if (cap < 8)
        cap = 8;
    /* Use all of the allocator's size class (up to 25% more for large tables): the memory
     * is spent anyway, and more slots mean shorter probes and rarer rebuilds. */
    size_t cls = mc__alloc_class(mc__table_alloc_size(cap));
    size_t fit = (cls - sizeof(mc__table)) / sizeof(uintptr_t);
    if (fit > cap && fit <= UINT32_MAX / 2)
        cap = (uint32_t)fit;
    mc__table *t = mc__zalloc(mc__table_alloc_size(cap));
    if (!t)
        return NULL;
    t->cap = cap;
    return t;
}

void mc__table_free(mc__table *t)
{
    if (t)
        mc__free(t, mc__table_alloc_size(t->cap));
}

size_t mc__table_bytes(const mc__table *t) { return mc__alloc_usable(t); }

static inline uint32_t mc__next(const mc__table *t, uint32_t i) { return i + 1 == t->cap ? 0 : i + 1; }

static inline uintptr_t mc__load(const mc__table *t, uint32_t i)
{
    /* Relaxed: the shard lock orders writers; readers never write slots. */
    return atomic_load_explicit(&t->slots[i], memory_order_relaxed);
}

int64_t mc__table_find_slot(const mc__table *t, uint32_t hash, const void *key, size_t klen)
{
    uintptr_t tag = mc__slot_tag(hash);
    uint32_t i = mc__table_home(hash, t->cap);
    for (uint32_t n = 0; n < t->cap; n++, i = mc__next(t, i)) {
        uintptr_t s = mc__load(t, i);
        if (s == MC__SLOT_EMPTY)
            return -1;
        if (s != MC__SLOT_TOMB && (s & ~MC__SLOT_PTR_MASK) == tag) {
            mc__entry *e = mc__slot_entry(s);
            if (e->hash == hash && mc__entry_key_eq(e, key, klen))
                return i;
        }
    }
    return -1;
}

int64_t mc__table_slot_of(const mc__table *t, const mc__entry *e)
{
    uint32_t i = mc__table_home(e->hash, t->cap);
    for (uint32_t n = 0; n < t->cap; n++, i = mc__next(t, i)) {
        uintptr_t s = mc__load(t, i);
        if (s == MC__SLOT_EMPTY)
            return -1;
        if (mc__slot_entry(s) == e && s != MC__SLOT_TOMB)
            return i;
    }
    return -1;
}

mc__entry *mc__table_find_hash(const mc__table *t, uint32_t hash)
{
    uintptr_t tag = mc__slot_tag(hash);
    uint32_t i = mc__table_home(hash, t->cap);
    for (uint32_t n = 0; n < t->cap; n++, i = mc__next(t, i)) {
        uintptr_t s = mc__load(t, i);
        if (s == MC__SLOT_EMPTY)
            return NULL;
        if (s != MC__SLOT_TOMB && (s & ~MC__SLOT_PTR_MASK) == tag && mc__slot_entry(s)->hash == hash)
            return mc__slot_entry(s);
    }
    return NULL;
}

bool mc__table_has_room(const mc__table *t)
{
    /* Live entries stay under 3/4 and live + tombstones under 7/8 of the slots, which bounds
     * the probe length of a miss (the expensive case) to a few cache lines. */
    return (uint64_t)(t->live + 1) * 4 <= (uint64_t)t->cap * 3 &&
           (uint64_t)(t->used + 1) * 8 <= (uint64_t)t->cap * 7;
}

void mc__table_insert(mc__table *t, mc__entry *e)
{
    uint32_t i = mc__table_home(e->hash, t->cap);
    /* The key is absent, so the first tombstone or empty slot of its chain is its place. */
    for (;;) {
        uintptr_t s = mc__load(t, i);
        if (s == MC__SLOT_EMPTY || s == MC__SLOT_TOMB) {
            if (s == MC__SLOT_EMPTY)
                t->used++;
            t->live++;
            /* Release: the entry's fields are complete before a reader can find it. */
            atomic_store_explicit(&t->slots[i], (uintptr_t)e | mc__slot_tag(e->hash),
                                  memory_order_release);
            return;
        }
        i = mc__next(t, i);
    }
}

void mc__table_replace(mc__table *t, int64_t slot, mc__entry *e)
{
    atomic_store_explicit(&t->slots[slot], (uintptr_t)e | mc__slot_tag(e->hash), memory_order_release);
}

void mc__table_remove(mc__table *t, int64_t slot)
{
    uint32_t i = (uint32_t)slot;
    t->live--;
    if (mc__load(t, mc__next(t, i)) != MC__SLOT_EMPTY) {
        atomic_store_explicit(&t->slots[i], MC__SLOT_TOMB, memory_order_relaxed);
        return;
    }
    /* No chain runs past an empty slot, so this slot and the tombstones just before it can
     * become empty: no live key's probe path crosses them. Readers racing with this may stop
     * early only for keys that are absent. */
    for (;;) {
        atomic_store_explicit(&t->slots[i], MC__SLOT_EMPTY, memory_order_relaxed);
        t->used--;
        i = i == 0 ? t->cap - 1 : i - 1;
        if (mc__load(t, i) != MC__SLOT_TOMB)
            break;
    }
}

mc__table *mc__table_rebuild(const mc__table *t, size_t min_entries)
{
    size_t want = (size_t)t->live + 1;
    if (want < min_entries)
        want = min_entries;
    mc__table *n = mc__table_new(mc__table_cap_for(want));
    if (!n)
        return NULL;
    for (uint32_t i = 0; i < t->cap; i++) {
        uintptr_t s = mc__load(t, i);
        if (s != MC__SLOT_EMPTY && s != MC__SLOT_TOMB)
            mc__table_insert(n, mc__slot_entry(s));
    }
    return n;
}
