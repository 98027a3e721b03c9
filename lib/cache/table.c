/* Per-shard index maintenance under the shard lock: insert, replace and remove with tag
 * bytes and overflow counts in each bucket's control word, and rebuilds to grow. */
#include "cache/table.h"

#include "core/alloc.h"

/* Fill at most this share of the slots (in 1/100). */
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

static bool mc__is_prime(uint32_t n)
{
    if (n < 2)
        return false;
    for (uint32_t d = 2; (uint64_t)d * d <= n; d++)
        if (n % d == 0)
            return false;
    return true;
}

mc__table *mc__table_new(uint32_t nbuckets)
{
    if (nbuckets < 2)
        nbuckets = 2;
    /* Use all of the allocator's size class (up to 25% more for large tables): the memory
     * is spent anyway, and more buckets mean fewer overflows. The count is the largest
     * prime that fits, so that every probe step reaches every bucket. */
    size_t cls = mc__alloc_class(mc__table_alloc_size(nbuckets));
    size_t fit = (cls - sizeof(mc__table) - 64) / sizeof(mc__bucket);
    if (fit < nbuckets || fit > UINT32_MAX / 16)
        fit = nbuckets;
    uint32_t p = (uint32_t)fit;
    while (p > nbuckets && !mc__is_prime(p))
        p--;
    while (!mc__is_prime(p))
        p++; /* no prime in [nbuckets, fit]: the next one up, a few buckets more */
    mc__table *t = mc__zalloc(mc__table_alloc_size(p));
    if (!t)
        return NULL;
    t->nbuckets = p;
    t->buckets = (mc__bucket *)(((uintptr_t)(t + 1) + 63) & ~(uintptr_t)63);
    return t;
}

void mc__table_free(mc__table *t)
{
    if (t)
        mc__free(t, mc__table_alloc_size(t->nbuckets));
}

size_t mc__table_bytes(const mc__table *t) { return mc__alloc_class(mc__table_alloc_size(t->nbuckets)); }

/* The next bucket of hash's probe sequence; the step (a division) is computed only when a
 * probe first leaves the home bucket. */
static inline uint32_t mc__advance(const mc__table *t, uint32_t hash, uint32_t b, uint32_t *step)
{
    if (!*step)
        *step = mc__table_step(hash, t->nbuckets);
    return mc__table_advance(b, *step, t->nbuckets);
}

/* Relaxed loads and release stores: the shard lock orders writers; readers never write. */
static inline uint64_t mc__ctrl(const mc__table *t, uint32_t b)
{
    return atomic_load_explicit(&t->buckets[b].ctrl, memory_order_relaxed);
}

static inline mc__entry *mc__slot(const mc__table *t, uint32_t b, unsigned i)
{
    return atomic_load_explicit(&t->buckets[b].slots[i], memory_order_relaxed);
}

static inline void mc__set_ctrl(mc__table *t, uint32_t b, uint64_t ctrl)
{
    atomic_store_explicit(&t->buckets[b].ctrl, ctrl, memory_order_release);
}

int64_t mc__table_find_slot(const mc__table *t, uint32_t hash, const void *key, size_t klen)
{
    uint8_t tag = mc__tag(hash);
    uint32_t b = mc__table_home(hash, t->nbuckets), step = 0;
    for (uint32_t n = 0; n < t->nbuckets; n++, b = mc__advance(t, hash, b, &step)) {
        uint64_t ctrl = mc__ctrl(t, b);
        for (uint64_t m = mc__ctrl_match(ctrl, tag); m; m &= m - 1) {
            unsigned i = (unsigned)__builtin_ctzll(m) >> 3;
            mc__entry *e = mc__slot(t, b, i);
            if (e->hash == hash && mc__entry_key_eq(e, key, klen))
                return (int64_t)b * 8 + i;
        }
        if (mc__ctrl_overflow(ctrl) == 0)
            return -1;
    }
    return -1;
}

int64_t mc__table_slot_of(const mc__table *t, const mc__entry *e)
{
    uint8_t tag = mc__tag(e->hash);
    uint32_t b = mc__table_home(e->hash, t->nbuckets), step = 0;
    for (uint32_t n = 0; n < t->nbuckets; n++, b = mc__advance(t, e->hash, b, &step)) {
        uint64_t ctrl = mc__ctrl(t, b);
        for (uint64_t m = mc__ctrl_match(ctrl, tag); m; m &= m - 1) {
            unsigned i = (unsigned)__builtin_ctzll(m) >> 3;
            if (mc__slot(t, b, i) == e)
                return (int64_t)b * 8 + i;
        }
        if (mc__ctrl_overflow(ctrl) == 0)
            return -1;
    }
    return -1;
}

mc__entry *mc__table_at(const mc__table *t, int64_t pos)
{
    return mc__slot(t, (uint32_t)(pos >> 3), (unsigned)(pos & 7));
}

mc__entry *mc__table_find_hash(const mc__table *t, uint32_t hash)
{
    uint8_t tag = mc__tag(hash);
    uint32_t b = mc__table_home(hash, t->nbuckets), step = 0;
    for (uint32_t n = 0; n < t->nbuckets; n++, b = mc__advance(t, hash, b, &step)) {
        uint64_t ctrl = mc__ctrl(t, b);
        for (uint64_t m = mc__ctrl_match(ctrl, tag); m; m &= m - 1) {
            mc__entry *e = mc__slot(t, b, (unsigned)__builtin_ctzll(m) >> 3);
            if (e->hash == hash)
                return e;
        }
        if (mc__ctrl_overflow(ctrl) == 0)
            return NULL;
    }
    return NULL;
}

bool mc__table_has_room(const mc__table *t)
{
    return (uint64_t)(t->live + 1) * 100 <= (uint64_t)t->nbuckets * MC__BUCKET_SLOTS * MC__TABLE_LOAD_PCT;
}

/* Add d (+1 or -1) to the overflow count of every bucket of hash's probe sequence before
 * bucket `to`. A count that reached 255 stays there: lookups then always look further,
 * which costs time, never correctness. */
static void mc__overflow_add(mc__table *t, uint32_t hash, uint32_t to, int d)
{
    uint32_t step = 0;
    for (uint32_t b = mc__table_home(hash, t->nbuckets); b != to; b = mc__advance(t, hash, b, &step)) {
        uint64_t ctrl = mc__ctrl(t, b);
        uint32_t o = mc__ctrl_overflow(ctrl);
        if (o == 255)
            continue;
        o = d > 0 ? o + 1 : o - 1;
        mc__set_ctrl(t, b, (ctrl & ~(0xffull << 56)) | ((uint64_t)o << 56));
    }
}

void mc__table_insert(mc__table *t, mc__entry *e)
{
    uint32_t b = mc__table_home(e->hash, t->nbuckets), step = 0;
    /* Below the load limit an empty slot exists, and the probe sequence visits every bucket. */
    for (;;) {
        uint64_t ctrl = mc__ctrl(t, b);
        uint64_t empty = mc__ctrl_match(ctrl, 0);
        if (empty) {
            unsigned i = (unsigned)__builtin_ctzll(empty) >> 3;
            /* Counts first, so a reader never stops short of a published entry; then the
             * slot; then its tag (release), which makes the slot visible to readers. */
            mc__overflow_add(t, e->hash, b, 1);
            atomic_store_explicit(&t->buckets[b].slots[i], e, memory_order_release);
            ctrl = mc__ctrl(t, b);
            mc__set_ctrl(t, b, ctrl | ((uint64_t)mc__tag(e->hash) << (8 * i)));
            t->live++;
            return;
        }
        b = mc__advance(t, e->hash, b, &step);
    }
}

void mc__table_replace(mc__table *t, int64_t pos, mc__entry *e)
{
    /* Same key, same tag: one pointer store swaps the value for readers. */
    atomic_store_explicit(&t->buckets[pos >> 3].slots[pos & 7], e, memory_order_release);
}

void mc__table_remove(mc__table *t, int64_t pos)
{
    uint32_t b = (uint32_t)(pos >> 3);
    unsigned i = (unsigned)(pos & 7);
    mc__entry *e = mc__slot(t, b, i);
    /* Tag first: new lookups skip the slot; one that read the old tag still finds a valid
     * entry (or NULL) in it. */
    mc__set_ctrl(t, b, mc__ctrl(t, b) & ~(0xffull << (8 * i)));
    atomic_store_explicit(&t->buckets[b].slots[i], NULL, memory_order_relaxed);
    /* Other displaced entries keep their own counts along their paths, so lowering this
     * entry's counts can only stop lookups for keys that are absent. */
    mc__overflow_add(t, e->hash, b, -1);
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
        for (unsigned i = 0; i < MC__BUCKET_SLOTS; i++) {
            mc__entry *e = mc__slot(t, b, i);
            if (e)
                mc__table_insert(n, e);
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
        for (unsigned i = 0; i < MC__BUCKET_SLOTS; i++) {
            mc__entry *e = mc__slot(t, b, i);
            uint8_t tag = (uint8_t)(mc__ctrl(t, b) >> (8 * i));
            if ((e == NULL) != (tag == 0) || (e && tag != mc__tag(e->hash))) {
                rc = -1;
                continue;
            }
            if (!e)
                continue;
            live++;
            uint32_t step = 0;
            for (uint32_t h = mc__table_home(e->hash, t->nbuckets); h != b; h = mc__advance(t, e->hash, h, &step))
                want[h]++;
        }
    for (uint32_t b = 0; b < t->nbuckets && rc == 0; b++) {
        uint32_t have = mc__ctrl_overflow(mc__ctrl(t, b));
        if (have != 255 && have != want[b])
            rc = -2;
    }
    if (rc == 0 && live != t->live)
        rc = -3;
    mc__free(want, (size_t)t->nbuckets * sizeof *want);
    return rc;
}
