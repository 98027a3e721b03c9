/* The per-shard index: 64-byte buckets that hold small entries inline (three 14-byte cells),
 * read by seqlock without any write, plus a writer-only side array of 32-bit policy links.
 * Lookups are lock-free; every change holds the shard lock. */
#ifndef MC_CACHE_TABLE_H
#define MC_CACHE_TABLE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "cache/entry.h"

/* ---- bucket layout (bytes of one 64-byte line) ----
 *  0-3   version: even = stable, odd = being written (shard lock held) or retired table
 *  4-6   tag[3]: 8 hash bits per slot, 0 = empty slot
 *  7     overflow: entries whose probe run passed this bucket and live further on (exact)
 *  8-10  rec[3]: recency (LRU generation stamp) or S3-FIFO frequency; readers store a byte
 *        only when it must change, writers copy it with the slot
 * 11-13  disp[3]: buckets between the slot's home and this bucket (255 = that or more)
 * 14-16  kl[3]: inline key length 0..14, or MC__KL_OUT for an out-of-line entry
 * 17-19  vl[3]: inline value length (bits 0-3), MC__VL_NONE, MC__VL_MAIN
 * 20-61  three cells of 14 bytes: inline key bytes then value bytes, or (out of line) the
 *        entry pointer, the key length (u16) and the low 32 hash bits
 * 62-63  unused */
#define MC__SLOTS 3
#define MC__CELL 14
#define MC__INLINE_MAX 14
#define MC__KL_OUT 0xffu
#define MC__VL_LEN 0x0fu
#define MC__VL_NONE 0x10u /* a cached "no value" */
#define MC__VL_MAIN 0x20u /* S3-FIFO: in the main queue */
#define MC__OFF_TAG 4
#define MC__OFF_OVF 7
#define MC__OFF_REC 8
#define MC__OFF_DISP 11
#define MC__OFF_KL 14
#define MC__OFF_VL 17
#define MC__OFF_CELL 20
#define MC__DISP_FAR 255u

typedef struct mc__bucket {
    /* Words, not bytes: readers copy the line with eight relaxed loads and validate the
     * version; writers store whole words. Every access is atomic, so concurrent copies are
     * well defined (and ThreadSanitizer-clean); the fences below order them. */
    _Alignas(64) _Atomic uint64_t w[8];
} mc__bucket;

/* A reader's (or writer's) private copy of a bucket. */
typedef union mc__snap {
    uint64_t w[8];
    unsigned char b[64];
} mc__snap;

static inline uint32_t mc__snap_ver(const mc__snap *s) { return (uint32_t)s->w[0]; }
static inline unsigned char *mc__snap_cell(mc__snap *s, unsigned i)
{
    return &s->b[MC__OFF_CELL + MC__CELL * i];
}

/* Policy links of one cell (writer-only): previous and next cell id in its list. Ids from
 * `ncells` on are the lists' sentinels. */
typedef struct mc__link32 {
    uint32_t prev, next;
} mc__link32;

typedef struct mc__table {
    uint32_t nbuckets;  /* any count >= 2; home = multiply-shift of the hash */
    uint32_t ncells;    /* nbuckets * MC__SLOTS */
    uint32_t nlists;    /* sentinel cells after the last real one */
    uint32_t live;      /* entries (shard lock) */
    mc__bucket *buckets;  /* 64-byte aligned */
    mc__link32 *links;    /* ncells + nlists */
    size_t bytes;         /* what the allocations occupy */
    struct mc__table *retired; /* older tables of this shard, freed by mc_cache_destroy */
} mc__table;

/* The 64-bit key hash split: shard from bits 56-63 (cache.c), tag from bits 48-55, home
 * bucket from the low 32 bits, and out-of-line cells keep the low 32 bits as a filter. */
static inline uint8_t mc__tag_of(uint64_t h)
{
    uint8_t t = (uint8_t)(h >> 48);
    return t ? t : 1;
}

static inline uint32_t mc__home_of(uint64_t h, uint32_t nbuckets)
{
    return (uint32_t)(((uint64_t)(uint32_t)h * nbuckets) >> 32);
}

static inline uint32_t mc__next_bucket(uint32_t b, uint32_t nbuckets)
{
    return b + 1 == nbuckets ? 0 : b + 1;
}

/* Copy bucket b into *s. Returns false when the copy is not a stable version (a writer is
 * inside, or the table was retired): the caller retries. */
static inline bool mc__bucket_read(const mc__bucket *b, mc__snap *s)
{
    /* Acquire: the cell words loaded below are at least as new as this version. */
    s->w[0] = atomic_load_explicit(&b->w[0], memory_order_acquire);
    if (s->w[0] & 1u)
        return false;
    /* Unrolled: eight plain moves on x86. */
    s->w[1] = atomic_load_explicit(&b->w[1], memory_order_relaxed);
    s->w[2] = atomic_load_explicit(&b->w[2], memory_order_relaxed);
    s->w[3] = atomic_load_explicit(&b->w[3], memory_order_relaxed);
    s->w[4] = atomic_load_explicit(&b->w[4], memory_order_relaxed);
    s->w[5] = atomic_load_explicit(&b->w[5], memory_order_relaxed);
    s->w[6] = atomic_load_explicit(&b->w[6], memory_order_relaxed);
    s->w[7] = atomic_load_explicit(&b->w[7], memory_order_relaxed);
    /* Acquire fence: the cell loads above complete before the version is loaded again, so
     * an unchanged version proves that no writer stored into the line in between. */
    atomic_thread_fence(memory_order_acquire);
    return (uint32_t)atomic_load_explicit(&b->w[0], memory_order_relaxed) == mc__snap_ver(s);
}

/* Still the version that *s was copied at (the lazy read-section check of out-of-line
 * entries: entering the section, then seeing the same version, proves the entry was in the
 * table after the section began). */
static inline bool mc__bucket_same(const mc__bucket *b, const mc__snap *s)
{
    atomic_thread_fence(memory_order_acquire);
    return (uint32_t)atomic_load_explicit(&b->w[0], memory_order_relaxed) == mc__snap_ver(s);
}

/* Slots whose tag is `tag`, from word 0 alone: bit 8 * i + 7 is set for each matching slot i
 * (walk the mask with mc__match_slot). The zero-byte test is exact (no carry crosses a
 * byte), and the overflow byte is forced non-zero so that it never matches. */
static inline unsigned mc__w0_match(uint64_t w0, uint8_t tag)
{
    uint32_t x = ((uint32_t)(w0 >> (8 * MC__OFF_TAG)) ^ (0x010101u * tag)) | 0xff000000u;
    return ~(((x & 0x7f7f7f7fu) + 0x7f7f7f7fu) | x | 0x7f7f7f7fu);
}

/* The slot of the lowest bit of a mc__w0_match mask. */
static inline unsigned mc__match_slot(unsigned m) { return (unsigned)__builtin_ctz(m) >> 3; }

static inline unsigned mc__w0_ovf(uint64_t w0) { return (uint8_t)(w0 >> (8 * MC__OFF_OVF)); }

/* One byte of a cell's slot in the index (rec, kl, vl...: `off` is its MC__OFF_*), read or
 * written alone: the recency byte and the queue flag are not covered by the version (readers
 * never act on the flag, and a stale recency byte costs one recency update), so a single
 * relaxed byte access is all they need. */
static inline uint8_t *mc__slot_byte(const mc__bucket *b, unsigned slot, unsigned off)
{
    return (uint8_t *)b + off + slot;
}
static inline uint8_t mc__slot_get(const mc__bucket *b, unsigned slot, unsigned off)
{
    return __atomic_load_n(mc__slot_byte(b, slot, off), __ATOMIC_RELAXED);
}
static inline void mc__slot_set(mc__bucket *b, unsigned slot, unsigned off, uint8_t v)
{
    __atomic_store_n(mc__slot_byte(b, slot, off), v, __ATOMIC_RELAXED);
}
static inline uint8_t mc__cell_get(const mc__table *t, uint32_t cell, unsigned off)
{
    return mc__slot_get(&t->buckets[cell / MC__SLOTS], cell % MC__SLOTS, off);
}
static inline void mc__cell_set(mc__table *t, uint32_t cell, unsigned off, uint8_t v)
{
    mc__slot_set(&t->buckets[cell / MC__SLOTS], cell % MC__SLOTS, off, v);
}

/* Out-of-line cell fields. */
static inline mc__entry *mc__cell_entry(const unsigned char *cell)
{
    uintptr_t p;
    memcpy(&p, cell, sizeof p);
    return (mc__entry *)p;
}
static inline uint16_t mc__cell_klen(const unsigned char *cell)
{
    uint16_t k;
    memcpy(&k, cell + 8, 2);
    return k;
}
static inline uint32_t mc__cell_hash(const unsigned char *cell)
{
    uint32_t h;
    memcpy(&h, cell + 10, 4);
    return h;
}

/* The key stored in slot i of *s (in the copy, or in its out-of-line entry). */
static inline const unsigned char *mc__snap_key(mc__snap *s, unsigned i, size_t *klen)
{
    unsigned char *cell = mc__snap_cell(s, i);
    uint8_t kl = s->b[MC__OFF_KL + i];
    if (kl != MC__KL_OUT) {
        *klen = kl;
        return cell;
    }
    const mc__entry *e = mc__cell_entry(cell);
    *klen = e->klen;
    return mc__entry_key(e);
}

/* Does slot i of *s hold `key`? Out-of-line slots are compared through their entry, which
 * the caller must protect (read section) unless it holds the shard lock. */
static inline bool mc__slot_is(mc__snap *s, unsigned i, uint64_t h, const void *key, size_t klen)
{
    unsigned char *cell = mc__snap_cell(s, i);
    uint8_t kl = s->b[MC__OFF_KL + i];
    if (kl != MC__KL_OUT)
        return kl == klen && mc__bytes_eq(cell, key, klen);
    if (mc__cell_klen(cell) != klen || mc__cell_hash(cell) != (uint32_t)h)
        return false;
    return mc__bytes_eq(mc__entry_key(mc__cell_entry(cell)), key, klen);
}

/* ---- writer side (shard lock held) ---- */

/* The weight (what max_bytes bounds) of the entry in a cell. */
static inline uint64_t mc__snap_weight(mc__snap *s, unsigned i)
{
    uint8_t kl = s->b[MC__OFF_KL + i];
    if (kl == MC__KL_OUT)
        return mc__entry_weight(mc__cell_entry(mc__snap_cell(s, i)));
    return (uint64_t)kl + (s->b[MC__OFF_VL + i] & MC__VL_LEN);
}

/* Begin a write of bucket b: readers that copy it from now on retry. Returns the stable
 * version it had. */
static inline uint32_t mc__bucket_lock(mc__bucket *b)
{
    uint64_t w0 = atomic_load_explicit(&b->w[0], memory_order_relaxed);
    atomic_store_explicit(&b->w[0], w0 + 1, memory_order_relaxed);
    /* Release fence: the odd version is visible before any cell word stored after it. */
    atomic_thread_fence(memory_order_release);
    return (uint32_t)w0;
}

/* Store the changed words of *s (word 0 last, with the next even version). */
static inline void mc__bucket_publish(mc__bucket *b, mc__snap *s, uint32_t ver)
{
#pragma GCC unroll 8
    for (int i = 1; i < 8; i++)
        atomic_store_explicit(&b->w[i], s->w[i], memory_order_relaxed);
    s->w[0] = (s->w[0] & ~(uint64_t)0xffffffffu) | (uint32_t)(ver + 2);
    /* Release: a reader that sees the new version sees every word above. */
    atomic_store_explicit(&b->w[0], s->w[0], memory_order_release);
}

/* A writer's view of a bucket (no concurrent writer exists, so a plain copy is stable). */
static inline void mc__bucket_get(const mc__bucket *b, mc__snap *s)
{
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        s->w[i] = atomic_load_explicit(&b->w[i], memory_order_relaxed);
}

/* Cells per table at the target load, and back. */
#define MC__TABLE_LOAD_NUM 3 /* 3/4 of the cells */
#define MC__TABLE_LOAD_DEN 4
static inline size_t mc__table_capacity(const mc__table *t)
{
    return (size_t)t->ncells * MC__TABLE_LOAD_NUM / MC__TABLE_LOAD_DEN;
}

/* A table for at least `entries` entries at the target load, with `nlists` list sentinels.
 * NULL on allocation failure. */
mc__table *mc__table_new(size_t entries, uint32_t nlists);
void mc__table_free(mc__table *t);

/* Position of key (bucket * MC__SLOTS + slot), or -1. */
int64_t mc__table_find(const mc__table *t, uint64_t h, const void *key, size_t klen);
/* A cell for a new key with hash h (known absent; live < capacity), made free by moving
 * residents further along the run (Robin Hood, fixing their policy links), with the overflow
 * counts on the way raised and *disp set. The key is not visible until the caller publishes
 * the cell with mc__table_store and its tag (and links it into a list). */
/* The most entries that may pass one bucket: its overflow count is one byte. */
#define MC__OVF_MAX 254u
/* Whether a claim for hash h keeps every overflow count within MC__OVF_MAX: false when the
 * buckets from h's home to the first one with a free slot include one that MC__OVF_MAX
 * entries pass already (a flood of keys of one home, crafted by someone who knows the seed).
 * Removals before the claim can only shorten that walk and lower the counts. */
bool mc__table_claim_fits(const mc__table *t, uint64_t h);
uint32_t mc__table_claim(mc__table *t, uint64_t h, uint8_t *disp, uint64_t seed);
/* Publish a cell's contents in one bucket version: kl, vl, rec and the 14 cell bytes, and,
 * when tag is not 0, the tag and displacement (a new entry; 0 keeps them: a replacement). */
void mc__table_store(mc__table *t, uint32_t cell, uint8_t tag, uint8_t disp, uint8_t kl,
                     uint8_t vl, uint8_t rec, const unsigned char bytes[MC__CELL]);
/* Empty a cell, then move later entries of its probe run back into the hole (fixing their
 * policy links), so that runs stay short under churn. `seed` rehashes inline keys whose
 * displacement is not stored exactly. *watch (if not NULL) follows a cell that moves. */
void mc__table_remove(mc__table *t, uint32_t cell, uint64_t seed, uint32_t *watch);
/* Read a writer's copy of one cell's fields. */
void mc__table_cell(const mc__table *t, uint32_t cell, mc__snap *s);
static inline uint64_t mc__table_cell_weight(const mc__table *t, uint32_t cell)
{
    mc__snap s;
    mc__bucket_get(&t->buckets[cell / MC__SLOTS], &s);
    return mc__snap_weight(&s, cell % MC__SLOTS);
}
/* The full hash of the key stored in a cell (rehashes inline keys). */
uint64_t mc__table_cell_hash(const mc__table *t, uint32_t cell, uint64_t seed);
/* Mark every bucket of a replaced table odd, forever: readers still probing it go back to
 * the shard for the new one. */
void mc__table_retire(mc__table *t);
/* Check tags, overflow counts, displacements and the live count (tests): 0, or a negative
 * code naming the first inconsistency. */
int mc__table_check(const mc__table *t, uint64_t seed);

#endif
