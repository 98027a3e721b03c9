/* Index maintenance under the shard lock: linear probing over 3-cell buckets with exact
 * overflow counts, and backward moves on removal so that entries stay near their home. */
#include "cache/table.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "core/alloc.h"

static size_t mc__table_alloc_size(uint32_t nbuckets, uint32_t nlists)
{
    return sizeof(mc__table) + 64 + (size_t)nbuckets * sizeof(mc__bucket) +
           ((size_t)nbuckets * MC__SLOTS + nlists) * sizeof(mc__link32);
}

mc__table *mc__table_new(size_t entries, uint32_t nlists)
{
    size_t cells = entries * MC__TABLE_LOAD_DEN / MC__TABLE_LOAD_NUM + MC__SLOTS;
    size_t nb = (cells + MC__SLOTS - 1) / MC__SLOTS;
    if (nb < 2)
        nb = 2;
    if (nb > (UINT32_MAX - 64) / MC__SLOTS)
        return NULL;
    size_t size = mc__table_alloc_size((uint32_t)nb, nlists);
    mc__table *t = mc__zalloc(size);
    if (!t)
        return NULL;
    t->nbuckets = (uint32_t)nb;
    t->ncells = (uint32_t)nb * MC__SLOTS;
    t->nlists = nlists;
    t->buckets = (mc__bucket *)(((uintptr_t)(t + 1) + 63) & ~(uintptr_t)63);
    t->links = (mc__link32 *)(t->buckets + nb);
    t->bytes = mc__alloc_class(size);
    for (uint32_t i = 0; i < nlists; i++)
        t->links[t->ncells + i].prev = t->links[t->ncells + i].next = t->ncells + i;
    return t;
}

void mc__table_free(mc__table *t)
{
    if (t)
        mc__free(t, mc__table_alloc_size(t->nbuckets, t->nlists));
}

int64_t mc__table_find(const mc__table *t, uint64_t h, const void *key, size_t klen)
{
    uint8_t tag = mc__tag_of(h);
    uint32_t b = mc__home_of(h, t->nbuckets);
    for (uint32_t n = 0; n < t->nbuckets; n++) {
        const mc__bucket *bk = &t->buckets[b];
        uint64_t w0 = atomic_load_explicit(&bk->w[0], memory_order_relaxed);
        unsigned m = mc__w0_match(w0, tag);
        if (m) {
            mc__snap s;
            mc__bucket_get(bk, &s);
            for (; m; m &= m - 1) {
                unsigned i = mc__match_slot(m);
                if (mc__slot_is(&s, i, h, key, klen))
                    return (int64_t)b * MC__SLOTS + i;
            }
        }
        if (mc__w0_ovf(w0) == 0)
            return -1;
        b = mc__next_bucket(b, t->nbuckets);
    }
    return -1;
}

/* Add d to the overflow count of bucket b (writer). The count shares word 0 with the
 * version, so one atomic store changes both: a reader sees the old word or the new one, and
 * one that copied the bucket around it sees the version change and copies it again. */
static inline uint64_t mc__w0_with_ovf(uint64_t w, int d)
{
    uint64_t ovf = (uint8_t)((w >> (8 * MC__OFF_OVF)) + (uint64_t)d);
    return (w & ~((uint64_t)0xff << (8 * MC__OFF_OVF))) | ovf << (8 * MC__OFF_OVF);
}

static void mc__ovf_add(mc__table *t, uint32_t b, int d)
{
    _Atomic uint64_t *w0 = &t->buckets[b].w[0];
    uint64_t w = mc__w0_with_ovf(atomic_load_explicit(w0, memory_order_relaxed), d);
    w = (w & ~(uint64_t)0xffffffffu) | (uint32_t)(w + 2);
    atomic_store_explicit(w0, w, memory_order_release);
}

/* Store word 0 of a bucket with the next version (one atomic store: tags, overflow and
 * version change together). Release: the words stored before it are visible with it. */
static inline void mc__w0_store(mc__bucket *bk, uint64_t w)
{
    w = (w & ~(uint64_t)0xffffffffu) | (uint32_t)(w + 2);
    atomic_store_explicit(&bk->w[0], w, memory_order_release);
}

static inline uint64_t mc__w0_with_tag(uint64_t w, unsigned i, uint8_t tag)
{
    unsigned sh = 8 * (MC__OFF_TAG + i);
    return (w & ~((uint64_t)0xff << sh)) | (uint64_t)tag << sh;
}

/* Empty slot i: only its tag changes (the other bytes are left for the next fill). */
static void mc__slot_clear(mc__bucket *bk, unsigned i)
{
    mc__w0_store(bk, mc__w0_with_tag(atomic_load_explicit(&bk->w[0], memory_order_relaxed), i, 0));
}

/* Fill empty slot i: its bytes first (readers skip a slot whose tag is 0, so they never use
 * these bytes half-written), then the tag, with the version and the bucket's overflow count
 * changed by ovf_d, in one store. Only the words holding the slot's bytes are stored: words
 * 1-2 (recency, distance, lengths) and the cell's own (20 + 14 i .. 33 + 14 i). */
static void mc__slot_fill_ovf(mc__bucket *bk, unsigned i, uint8_t tag, uint8_t disp, uint8_t kl,
                              uint8_t vl, uint8_t rec, const unsigned char *cell, int ovf_d)
{
    mc__snap s;
    mc__bucket_get(bk, &s);
    /* The slot's bytes must not become visible before a clear of the slot that came just
     * before (its word-0 store is a release, which orders only what precedes it): with this
     * fence, a reader whose copy saw any of the stores below sees, at its version check, a
     * version past that clear's (the pattern of mc__bucket_lock). Free on x86. */
    atomic_thread_fence(memory_order_release);
    s.b[MC__OFF_DISP + i] = disp;
    s.b[MC__OFF_KL + i] = kl;
    s.b[MC__OFF_VL + i] = vl;
    s.b[MC__OFF_REC + i] = rec;
    memcpy(mc__snap_cell(&s, i), cell, MC__CELL);
    unsigned lo = (MC__OFF_CELL + MC__CELL * i) / 8, hi = (MC__OFF_CELL + MC__CELL * i + MC__CELL - 1) / 8;
    atomic_store_explicit(&bk->w[1], s.w[1], memory_order_relaxed);
    atomic_store_explicit(&bk->w[2], s.w[2], memory_order_relaxed);
    for (unsigned k = lo > 2 ? lo : 3; k <= hi; k++)
        atomic_store_explicit(&bk->w[k], s.w[k], memory_order_relaxed);
    mc__w0_store(bk, mc__w0_with_ovf(mc__w0_with_tag(s.w[0], i, tag), ovf_d));
}

static inline void mc__slot_fill(mc__bucket *bk, unsigned i, uint8_t tag, uint8_t disp, uint8_t kl,
                                 uint8_t vl, uint8_t rec, const unsigned char *cell)
{
    mc__slot_fill_ovf(bk, i, tag, disp, kl, vl, rec, cell, 0);
}

static inline uint8_t mc__disp_byte(uint32_t d) { return (uint8_t)(d < MC__DISP_FAR ? d : MC__DISP_FAR); }

/* Distance from the home of the entry in (b, i) to b. */
static uint32_t mc__disp(const mc__table *t, const mc__snap *s, uint32_t b, unsigned i, uint64_t seed);
static void mc__links_moved(mc__table *t, uint32_t from, uint32_t to);

#define MC__CHAIN_MAX 64

bool mc__table_claim_fits(const mc__table *t, uint64_t h)
{
    uint32_t b = mc__home_of(h, t->nbuckets);
    for (uint32_t n = 0; n < t->nbuckets; n++) {
        uint64_t w0 = atomic_load_explicit(&t->buckets[b].w[0], memory_order_relaxed);
        if (mc__w0_match(w0, 0))
            return true; /* a free slot (a zero tag): the claim ends here at the latest */
        if (mc__w0_ovf(w0) >= MC__OVF_MAX)
            return false;
        b = mc__next_bucket(b, t->nbuckets);
    }
    return false;
}

uint32_t mc__table_claim(mc__table *t, uint64_t h, uint8_t *disp, uint64_t seed)
{
    /* Robin Hood placement: walking the run, the key takes the slot of any resident nearer
     * its own home than the key is to its home, and that resident walks on in turn. Every
     * entry then stays about equally near home, whatever the order of insertion (a cache
     * preloaded cold-first would otherwise leave its hottest keys furthest away).
     * First the chain of moves is planned: chain[j] is the cell mover j ends in (mover 0 is
     * the new key, mover j > 0 the resident of chain[j-1]) and its distance from home. */
    struct {
        uint32_t cell, dist;
    } chain[MC__CHAIN_MAX];
    unsigned m = 0;
    uint32_t home = mc__home_of(h, t->nbuckets), b = home, d = 0;
    for (;;) {
        mc__snap s;
        mc__bucket_get(&t->buckets[b], &s);
        unsigned freei = MC__SLOTS, rich = MC__SLOTS;
        uint32_t rich_d = UINT32_MAX;
        for (unsigned i = 0; i < MC__SLOTS; i++) {
            if (!s.b[MC__OFF_TAG + i]) {
                if (freei == MC__SLOTS)
                    freei = i;
                continue;
            }
            uint32_t r = mc__disp(t, &s, b, i, seed);
            if (r < rich_d) {
                rich_d = r;
                rich = i;
            }
        }
        if (freei != MC__SLOTS) {
            chain[m].cell = b * MC__SLOTS + freei;
            chain[m].dist = d;
            m++;
            break;
        }
        if (rich_d < d && m + 1 < MC__CHAIN_MAX) {
            chain[m].cell = b * MC__SLOTS + rich;
            chain[m].dist = d;
            m++;
            d = rich_d;
        }
        b = mc__next_bucket(b, t->nbuckets);
        d++;
    }
    /* Raise the overflow counts of every bucket a mover newly passes, before any mover
     * appears further on: a reader must always be able to walk to where an entry is. */
    for (unsigned j = 0; j < m; j++) {
        uint32_t from = j == 0 ? home : chain[j - 1].cell / MC__SLOTS;
        for (uint32_t p = from; p != chain[j].cell / MC__SLOTS; p = mc__next_bucket(p, t->nbuckets))
            mc__ovf_add(t, p, 1);
    }
    /* Then move the residents, last first: each is stored in its new cell before its old
     * cell is overwritten, so a reader walking forward finds it in one of the two. */
    for (unsigned j = m - 1; j >= 1; j--) {
        uint32_t src = chain[j - 1].cell, dst = chain[j].cell;
        mc__snap ss;
        mc__table_cell(t, src, &ss);
        mc__bucket *db = &t->buckets[dst / MC__SLOTS];
        unsigned si = src % MC__SLOTS, di = dst % MC__SLOTS;
        if (j < m - 1)
            mc__slot_clear(db, di); /* its resident moved on in the step before */
        mc__slot_fill(db, di, ss.b[MC__OFF_TAG + si], mc__disp_byte(chain[j].dist), ss.b[MC__OFF_KL + si],
                      ss.b[MC__OFF_VL + si], ss.b[MC__OFF_REC + si], mc__snap_cell(&ss, si));
        mc__links_moved(t, src, dst);
    }
    *disp = (uint8_t)(chain[0].dist < MC__DISP_FAR ? chain[0].dist : MC__DISP_FAR);
    t->live++;
    return chain[0].cell;
}

void mc__table_store(mc__table *t, uint32_t cell, uint8_t tag, uint8_t disp, uint8_t kl,
                     uint8_t vl, uint8_t rec, const unsigned char bytes[MC__CELL])
{
    uint32_t b = cell / MC__SLOTS, i = cell % MC__SLOTS;
    mc__bucket *bk = &t->buckets[b];
    if (tag) {
        /* A new key: the claimed cell is empty, or still shows the resident that moved on. */
        if ((uint8_t)(atomic_load_explicit(&bk->w[0], memory_order_relaxed) >> (8 * (MC__OFF_TAG + i))))
            mc__slot_clear(bk, i);
        mc__slot_fill(bk, i, tag, disp, kl, vl, rec, bytes);
        return;
    }
    /* A new value for a live key: the seqlock's odd phase, so that no reader mixes the two. */
    mc__snap s;
    mc__bucket_get(bk, &s);
    uint32_t ver = mc__bucket_lock(bk);
    s.b[MC__OFF_KL + i] = kl;
    s.b[MC__OFF_VL + i] = vl;
    s.b[MC__OFF_REC + i] = rec;
    memcpy(mc__snap_cell(&s, i), bytes, MC__CELL);
    mc__bucket_publish(bk, &s, ver);
}

void mc__table_cell(const mc__table *t, uint32_t cell, mc__snap *s)
{
    mc__bucket_get(&t->buckets[cell / MC__SLOTS], s);
}

uint64_t mc__table_cell_hash(const mc__table *t, uint32_t cell, uint64_t seed)
{
    mc__snap s;
    mc__table_cell(t, cell, &s);
    size_t klen;
    const unsigned char *key = mc__snap_key(&s, cell % MC__SLOTS, &klen);
    return XXH3_64bits_withSeed(key, klen, seed);
}

static uint32_t mc__disp(const mc__table *t, const mc__snap *s, uint32_t b, unsigned i, uint64_t seed)
{
    uint8_t d = s->b[MC__OFF_DISP + i];
    if (d != MC__DISP_FAR)
        return d;
    uint32_t home = mc__home_of(mc__table_cell_hash(t, b * MC__SLOTS + i, seed), t->nbuckets);
    return b >= home ? b - home : b + t->nbuckets - home;
}

/* Point the neighbours of a cell's list node at its new id. */
static void mc__links_moved(mc__table *t, uint32_t from, uint32_t to)
{
    mc__link32 l = t->links[from];
    if (l.prev == from) {
        /* In no list (a replacement in progress holds it out): stays out. */
        t->links[to].prev = t->links[to].next = to;
        return;
    }
    t->links[to] = l;
    t->links[l.prev].next = to;
    t->links[l.next].prev = to;
}

void mc__table_remove(mc__table *t, uint32_t cell, uint64_t seed, uint32_t *watch)
{
    uint32_t hb = cell / MC__SLOTS;
    unsigned hi = cell % MC__SLOTS;
    t->live--;
    {
        /* The removed entry no longer passes the buckets between its home and its place. */
        mc__snap s;
        mc__bucket_get(&t->buckets[hb], &s);
        uint32_t d = mc__disp(t, &s, hb, hi, seed);
        uint32_t p = hb >= d ? hb - d : hb + t->nbuckets - d;
        for (; p != hb; p = mc__next_bucket(p, t->nbuckets))
            mc__ovf_add(t, p, -1);
    }
    for (;;) {
        /* Empty the hole. */
        mc__bucket *bk = &t->buckets[hb];
        mc__slot_clear(bk, hi);
        if ((uint8_t)(atomic_load_explicit(&bk->w[0], memory_order_relaxed) >> (8 * MC__OFF_OVF)) == 0)
            return;
        /* Some entry passed this bucket: find the first one (the nearest bucket on), move it
         * into the hole and continue with the hole it leaves. Readers probing meanwhile see
         * it in the old place or the new one; one that copied the new place before the
         * move and the old one after sees both empty, which get_* rule out by rechecking
         * the versions of the buckets they passed before reporting a miss. */
        /* Only the next bucket is looked at (backward-shift deletion): if none of its
         * entries passed the hole, the ones that did are further on and keep passing it,
         * which the overflow counts already say. */
        uint32_t x = mc__next_bucket(hb, t->nbuckets);
        const uint32_t dx = 1;
        {
            mc__snap xs;
            mc__bucket_get(&t->buckets[x], &xs);
            unsigned found = MC__SLOTS;
            uint32_t best = 0;
            for (unsigned i = 0; i < MC__SLOTS; i++) {
                if (!xs.b[MC__OFF_TAG + i])
                    continue;
                uint32_t di = mc__disp(t, &xs, x, i, seed);
                if (di >= dx && di > best) {
                    best = di;
                    found = i; /* the furthest from home moves back first */
                }
            }
            if (found == MC__SLOTS)
                return;
            uint32_t d = mc__disp(t, &xs, x, found, seed) - dx;
            /* Copy into the hole, lowering in the same store the count of the bucket it no
             * longer passes (the hole's, the only one between: x is the next bucket), then
             * empty the old place (next round). */
            mc__slot_fill_ovf(bk, hi, xs.b[MC__OFF_TAG + found], mc__disp_byte(d), xs.b[MC__OFF_KL + found],
                              xs.b[MC__OFF_VL + found], xs.b[MC__OFF_REC + found], mc__snap_cell(&xs, found),
                              -1);
            mc__links_moved(t, x * MC__SLOTS + found, hb * MC__SLOTS + hi);
            if (watch && *watch == x * MC__SLOTS + found)
                *watch = hb * MC__SLOTS + hi;
            hb = x;
            hi = found;
        }
    }
}

void mc__table_retire(mc__table *t)
{
    for (uint32_t b = 0; b < t->nbuckets; b++)
        atomic_fetch_or_explicit(&t->buckets[b].w[0], 1u, memory_order_release);
}

int mc__table_check(const mc__table *t, uint64_t seed)
{
    uint32_t live = 0;
    uint32_t *ovf = mc__zalloc((size_t)t->nbuckets * sizeof *ovf);
    if (!ovf)
        return 0; /* cannot check without memory: not an inconsistency */
    int rc = 0;
    for (uint32_t b = 0; b < t->nbuckets && rc == 0; b++) {
        mc__snap s;
        mc__bucket_get(&t->buckets[b], &s);
        if (s.w[0] & 1u)
            rc = -4; /* left odd */
        for (unsigned i = 0; i < MC__SLOTS && rc == 0; i++) {
            if (!s.b[MC__OFF_TAG + i])
                continue;
            live++;
            uint64_t h = mc__table_cell_hash(t, b * MC__SLOTS + i, seed);
            if (mc__tag_of(h) != s.b[MC__OFF_TAG + i]) {
                rc = -1;
                break;
            }
            uint32_t home = mc__home_of(h, t->nbuckets);
            uint32_t dist = b >= home ? b - home : b + t->nbuckets - home;
            uint8_t d = s.b[MC__OFF_DISP + i];
            if (d != (dist < MC__DISP_FAR ? dist : MC__DISP_FAR))
                rc = -5;
            for (uint32_t p = home; p != b; p = mc__next_bucket(p, t->nbuckets))
                ovf[p]++;
        }
    }
    for (uint32_t b = 0; b < t->nbuckets && rc == 0; b++) {
        mc__snap s;
        mc__bucket_get(&t->buckets[b], &s);
        if (s.b[MC__OFF_OVF] != ovf[b])
            rc = -2;
    }
    if (rc == 0 && live != t->live)
        rc = -3;
    mc__free(ovf, (size_t)t->nbuckets * sizeof *ovf);
    return rc;
}
