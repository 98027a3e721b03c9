/* mc_cache: shards, lock-free lookups, writers under a per-shard mutex, bounds, TTL, stats.
 * Lookups run inside an epoch section; removed entries are reclaimed after a grace period. */
#include "cache/cache_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
/* Keys are short: inlining XXH3 avoids a call and lets the compiler specialise small sizes. */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "core/alloc.h"
#include "core/epoch.h"
#include "modcache/key.h"

/* Auto sharding: one shard per this many entries, up to MC__AUTO_SHARDS_MAX. Few shards keep
 * a small cache's eviction order close to one exact LRU; more shards spread writers. */
#define MC__ENTRIES_PER_SHARD 8192
#define MC__AUTO_SHARDS_MAX 64
#define MC__BYTES_PER_SHARD ((size_t)1 << 20)
#define MC__SHARDS_MAX 256
/* LRU promotions are skipped within the newest 1/MC__GENS_PER_SHARD of a shard's capacity
 * (measured: well within 0.01 of exact LRU's miss ratio); without an entry bound the span
 * assumes this many entries. */
#define MC__GENS_PER_SHARD 4
#define MC__GEN_UNBOUNDED_SPAN 4096
/* The index is sized for at most this many entries up front and grows beyond. */
#define MC__TABLE_PRESIZE_MAX 65536

const char *mc_evict_reason_name(mc_evict_reason reason)
{
    static const char *const names[MC_EVICT_NREASONS] = {"size", "memory", "time", "invalidation",
                                                         "replaced"};
    return (unsigned)reason < MC_EVICT_NREASONS ? names[reason] : "unknown";
}

void mc_cache_options_init(mc_cache_options *opts)
{
    if (opts)
        memset(opts, 0, sizeof *opts);
}

/* The default clock, read on every hit when access is tracked: the coarse monotonic clock
 * (the kernel's last tick, a few milliseconds' resolution) costs a few nanoseconds where the
 * precise one costs tens on a virtual machine, and TTLs and idle times are far longer than a
 * tick. */
static uint64_t mc__monotonic_ns(void *ud)
{
    (void)ud;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t mc__random_seed(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    static atomic_uint_fast64_t counter;
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^
                 (atomic_fetch_add(&counter, 1) * 0x9e3779b97f4a7c15u) ^ (uintptr_t)&ts;
    return XXH3_64bits(&x, sizeof x) | 1u;
}

/* ---------------------------------------------------------------- entries */

static void mc__entry_reclaim(ck_epoch_entry_t *p)
{
    MC__EPOCH_RECLAIM();
    mc__entry *e = (mc__entry *)p; /* the epoch node is the entry's first member */
    size_t size = mc__entry_alloc_size(e->flags, e->klen, e->vlen);
    if (e->flags & MC__E_OWNED) {
        struct mc__owned *o = mc__entry_owned(e);
        if (o->free_fn)
            o->free_fn(o->value);
    }
    mc__free(e, size);
}

void mc__entry_unref(mc__entry *e)
{
    /* acq_rel: the last holder sees every other holder's accesses before reclaiming. */
    if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
        mc__epoch_retire(&e->u.epoch, mc__entry_reclaim);
}

/* Pin an entry found by a lookup (inside the epoch section). Fails once the cache dropped it
 * and no pin remains: the entry is then on its way to reclamation and must not be revived. */
static bool mc__entry_pin(mc__entry *e)
{
    uint32_t r = atomic_load_explicit(&e->refs, memory_order_relaxed);
    while (r != 0)
        if (atomic_compare_exchange_weak_explicit(&e->refs, &r, r + 1, memory_order_acquire,
                                                  memory_order_relaxed))
            return true;
    return false;
}

/* An entry that was never published is freed at once, without the owned value (which the
 * caller still owns on error). */
static void mc__entry_discard(mc__entry *e)
{
    mc__free(e, mc__entry_alloc_size(e->flags, e->klen, e->vlen));
}

static mc__entry *mc__entry_make(bool track, uint32_t hash, const mc__put_args *a, uint64_t now)
{
    unsigned flags = (a->owned ? MC__E_OWNED : 0) | (track ? MC__E_TTL : 0) |
                     (a->none ? MC__E_NONE : 0) | (a->weight && !a->owned ? MC__E_WEIGHT : 0);
    size_t vlen = a->none ? 0 : a->vlen;
    mc__entry *e = mc__alloc(mc__entry_alloc_size(flags, a->klen, vlen));
    if (!e)
        return NULL;
    e->u.link.prev = e->u.link.next = NULL;
    e->hash = hash;
    atomic_init(&e->refs, 1);
    e->vlen = (uint32_t)vlen;
    e->klen = (uint16_t)a->klen;
    atomic_init(&e->freq, 0);
    e->flags = (uint8_t)flags;
    if (flags & MC__E_TTL)
        atomic_init(mc__entry_atime(e), now);
    if (flags & MC__E_WEIGHT)
        *mc__entry_weight_field(e) = a->weight;
    if (a->owned) {
        struct mc__owned *o = mc__entry_owned(e);
        o->value = (void *)a->value;
        o->free_fn = a->free_fn;
        o->weight = a->weight ? a->weight : (uint64_t)a->klen + vlen;
    }
    if (a->klen)
        memcpy(mc__entry_key(e), a->key, a->klen);
    if (!a->owned && vlen)
        memcpy((unsigned char *)e + mc__entry_value_offset(flags, a->klen), a->value, vlen);
    return e;
}

mc_value *mc__value_detached(const mc__put_args *a)
{
    if (a->klen > MC_KEY_MAX || (!a->none && a->vlen > UINT32_MAX))
        return NULL;
    return (mc_value *)mc__entry_make(false, 0, a, 0);
}

/* Bytes an entry really occupies, from its size class: no allocator lookup under the lock. */
static inline size_t mc__entry_footprint(const mc__entry *e)
{
    return mc__alloc_class(mc__entry_alloc_size(e->flags, e->klen, e->vlen));
}

/* ---------------------------------------------------------------- time */

static inline uint64_t mc__now(const mc_cache *c) { return c->track ? c->clock(c->clock_ud) : 0; }

static inline bool mc__expired(const mc_cache *c, const mc__entry *e, uint64_t now)
{
    if (!c->ttl)
        return false;
    uint64_t at = atomic_load_explicit(mc__entry_atime(e), memory_order_relaxed);
    /* Another thread may have stamped a later time than our `now`: not expired. */
    return now > at && now - at >= c->ttl;
}

/* ---------------------------------------------------------------- recency records */

/* Claim a slot and store the hash. Returns true when the ring is due for a drain. A lost
 * record (ring full, or a claim race) costs one recency update, never correctness. */
static bool mc__ring_push(struct mc__ring *r, uint32_t hash)
{
    uint32_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint32_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    if (head - tail >= MC__RING_SIZE)
        return true;
    if (!atomic_compare_exchange_strong_explicit(&r->head, &head, head + 1, memory_order_relaxed,
                                                 memory_order_relaxed))
        return false;
    /* Release: the drainer's acquire load sees the hash once it sees the slot non-zero. */
    atomic_store_explicit(&r->slots[head & (MC__RING_SIZE - 1)], hash, memory_order_release);
    return head + 1 - tail >= MC__RING_DRAIN_AT;
}

/* Stamp an entry (shard lock held) with the current generation and advance it once per
 * gen_len stamps. */
static void mc__lru_stamp(mc__shard *sh, mc__entry *e)
{
    if (sh->gen_len == 0)
        return; /* exact mode: entries keep stamp 0, the shard's generation stays 0xff */
    uint8_t gen = atomic_load_explicit(&sh->gen, memory_order_relaxed);
    atomic_store_explicit(&e->freq, gen, memory_order_relaxed);
    if (++sh->gen_ticks >= sh->gen_len) {
        sh->gen_ticks = 0;
        atomic_store_explicit(&sh->gen, (uint8_t)(gen + 1), memory_order_relaxed);
    }
}

static void mc__lru_promote(mc__shard *sh, mc__entry *e)
{
    mc__policy_touch(&sh->policy, e);
    mc__lru_stamp(sh, e);
}

/* Apply every published record of the shard in order (shard lock held). */
static void mc__shard_drain(mc__shard *sh)
{
    if (sh->policy.kind != MC_POLICY_LRU)
        return;
    mc__table *t = atomic_load_explicit(&sh->table, memory_order_relaxed);
    for (unsigned i = 0; i < MC__NRINGS; i++) {
        struct mc__ring *r = &sh->rings[i];
        uint32_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
        uint32_t head = atomic_load_explicit(&r->head, memory_order_acquire);
        for (; tail != head; tail++) {
            _Atomic uint32_t *slot = &r->slots[tail & (MC__RING_SIZE - 1)];
            uint32_t h = atomic_load_explicit(slot, memory_order_acquire);
            if (h == 0)
                break; /* claimed but not yet stored: resume here next time */
            /* Only the drainer clears a slot, and no reader can claim it again before the
             * tail store below: a plain store suffices (no locked instruction per record). */
            atomic_store_explicit(slot, 0, memory_order_relaxed);
            mc__entry *e = mc__table_find_hash(t, h);
            if (e)
                mc__lru_promote(sh, e);
        }
        /* Release: a reader that sees the new tail may reuse the drained slots. */
        atomic_store_explicit(&r->tail, tail, memory_order_release);
    }
}

/* ---------------------------------------------------------------- removal lists */

/* Entries out of the cache whose listener call and reference drop wait until the shard lock
 * is released. Linked through u.link.next; the reason rides in u.link.prev (unused now). */
typedef struct mc__gone {
    mc__entry *first, *last;
} mc__gone;

static void mc__gone_add(mc__gone *g, mc__entry *e, mc_evict_reason reason)
{
    e->u.link.prev = (struct mc__link *)(uintptr_t)reason;
    e->u.link.next = NULL;
    if (g->last)
        g->last->u.link.next = &e->u.link;
    else
        g->first = e;
    g->last = e;
}

static void mc__gone_finish(mc_cache *c, mc__gone *g)
{
    mc__entry *e = g->first;
    while (e) {
        mc__entry *next = (mc__entry *)e->u.link.next;
        mc_evict_reason reason = (mc_evict_reason)(uintptr_t)e->u.link.prev;
        if (c->on_evict)
            c->on_evict(c->on_evict_ud, mc__entry_key(e), e->klen, mc__entry_value(e), e->vlen,
                        reason);
        mc__entry_unref(e);
        e = next;
    }
    g->first = g->last = NULL;
}

/* ---------------------------------------------------------------- shard bookkeeping */

static inline void mc__stat_add(_Atomic uint64_t *v, int64_t d)
{
    /* Written only under the shard lock; atomics because stats readers take no lock. */
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + (uint64_t)d,
                          memory_order_relaxed);
}

/* Account for an entry leaving shard structures already (index slot and queue removed). */
static void mc__shard_forget(mc__shard *sh, mc__entry *e, mc_evict_reason reason, mc__gone *g)
{
    mc__stat_add(&sh->count, -1);
    mc__stat_add(&sh->weight, -(int64_t)mc__entry_weight(e));
    mc__stat_add(&sh->memory, -(int64_t)mc__entry_footprint(e));
    mc__stat_add(&sh->evictions[reason], 1);
    mc__gone_add(g, e, reason);
}

/* Remove an entry that is in the shard (index and queue). */
static void mc__shard_remove(mc__shard *sh, mc__entry *e, mc_evict_reason reason, mc__gone *g)
{
    mc__table *t = atomic_load_explicit(&sh->table, memory_order_relaxed);
    int64_t slot = mc__table_slot_of(t, e);
    if (slot >= 0)
        mc__table_remove(t, slot);
    mc__policy_unlink(&sh->policy, e);
    mc__shard_forget(sh, e, reason, g);
}

/* Evict until `extra` more entries of `extra_weight` fit (0, 0: until within bounds). Making
 * room before inserting means a shard is never seen over its bounds, even for an instant. */
static void mc__shard_make_room(mc__shard *sh, size_t extra, uint64_t extra_weight, mc__gone *g)
{
    size_t me = sh->max_entries == SIZE_MAX ? 0 : sh->max_entries;
    uint64_t mw = sh->max_weight == UINT64_MAX ? 0 : sh->max_weight;
    mc__table *t = atomic_load_explicit(&sh->table, memory_order_relaxed);
    for (;;) {
        uint64_t n = atomic_load_explicit(&sh->count, memory_order_relaxed);
        uint64_t w = atomic_load_explicit(&sh->weight, memory_order_relaxed);
        if (n + extra <= sh->max_entries && w + extra_weight <= sh->max_weight)
            return;
        mc__entry *v = mc__policy_evict(&sh->policy, me, mw);
        if (!v)
            return;
        int64_t slot = mc__table_slot_of(t, v);
        if (slot >= 0)
            mc__table_remove(t, slot);
        mc__shard_forget(sh, v, MC_EVICT_SIZE, g);
    }
}

/* Remove expired entries. LRU keeps its queue in access order, so they are its oldest; for
 * S3-FIFO the queues are in insertion order: `full` scans everything (cleanup), otherwise
 * only the oldest end is checked. */
static void mc__shard_expire(mc_cache *c, mc__shard *sh, uint64_t now, bool full, mc__gone *g)
{
    if (!c->ttl)
        return;
    int nq = sh->policy.kind == MC_POLICY_S3FIFO ? 2 : 1;
    for (int q = 0; q < nq; q++) {
        mc__entry *e = mc__policy_oldest(&sh->policy, q);
        while (e) {
            mc__entry *newer = mc__policy_newer(&sh->policy, q, e);
            if (mc__expired(c, e, now))
                mc__shard_remove(sh, e, MC_EVICT_TIME, g);
            else if (!full)
                break;
            e = newer;
        }
    }
}

static void mc__shard_lock(mc_cache *c, mc__shard *sh, uint64_t now, mc__gone *g)
{
    mc__lock_acquire(&sh->lock);
    /* Apply recorded reads first, so evictions see the true access order. */
    mc__shard_drain(sh);
    mc__shard_expire(c, sh, now, false, g);
}

static void mc__shard_set_bounds(mc_cache *c, mc__shard *sh, unsigned i, size_t max_entries,
                                 size_t max_bytes)
{
    size_t n = c->nshards;
    sh->max_entries = max_entries ? max_entries / n + (i < max_entries % n) : SIZE_MAX;
    sh->max_weight = max_bytes ? max_bytes / n + (i < max_bytes % n) : UINT64_MAX;
    size_t span = sh->max_entries != SIZE_MAX ? sh->max_entries : MC__GEN_UNBOUNDED_SPAN;
    /* Small shards (under 2 * MC__GENS_PER_SHARD entries) keep every promotion: exact LRU. */
    sh->gen_len = (uint32_t)(span / MC__GENS_PER_SHARD >= 2 ? span / MC__GENS_PER_SHARD : 0);
    if (sh->gen_len == 0)
        atomic_store_explicit(&sh->gen, 0xff, memory_order_relaxed);
}

static size_t mc__ghost_window(const mc__shard *sh)
{
    /* The ghost remembers about as many keys as the main queue holds (90%). */
    return sh->max_entries == SIZE_MAX ? 0 : sh->max_entries - sh->max_entries / 10;
}

/* ---------------------------------------------------------------- create / destroy */

unsigned mc__auto_shards(size_t max_entries, size_t max_bytes)
{
    if (max_entries == 0) {
        /* Bounded by bytes only: one shard per MC__BYTES_PER_SHARD, so that each shard's share
         * still holds large values. */
        unsigned n = 1;
        while (n < MC__AUTO_SHARDS_MAX && (size_t)n * 2 * MC__BYTES_PER_SHARD <= max_bytes)
            n *= 2;
        return n;
    }
    unsigned n = 1;
    while (n < MC__AUTO_SHARDS_MAX && (size_t)n * 2 * MC__ENTRIES_PER_SHARD <= max_entries)
        n *= 2;
    return n;
}

int mc_cache_create(const mc_cache_options *opts, mc_cache **out)
{
    if (!opts || !out)
        return MC_EINVAL;
    *out = NULL;
    if (opts->max_entries == 0 && opts->max_bytes == 0)
        return MC_EINVAL;
    if (opts->policy != MC_POLICY_LRU && opts->policy != MC_POLICY_S3FIFO)
        return MC_EINVAL;
    unsigned n = opts->shards ? opts->shards : mc__auto_shards(opts->max_entries, opts->max_bytes);
    if (n > MC__SHARDS_MAX || (n & (n - 1)) != 0)
        return MC_EINVAL;

    mc_cache *c = mc__zalloc(sizeof *c);
    if (!c)
        return MC_ENOMEM;
    c->nshards = n;
    c->shard_mask = n - 1;
    c->seed = opts->seed ? opts->seed : mc__random_seed();
    c->policy = opts->policy;
    c->ttl = opts->ttl_ns;
    c->track = c->ttl != 0 || opts->track_access;
    c->atime_step = c->ttl && c->ttl / 16 < 1000000000u ? c->ttl / 16 : 1000000000u;
    c->clock = opts->clock ? opts->clock : mc__monotonic_ns;
    c->clock_ud = opts->clock ? opts->clock_ud : NULL;
    c->on_evict = opts->on_evict;
    c->on_evict_ud = opts->on_evict_ud;
    c->max_entries = opts->max_entries;
    c->max_bytes = opts->max_bytes;
    pthread_mutex_init(&c->resize_lock, NULL);

    c->shards = mc__zalloc(sizeof(mc__shard) * n);
    if (!c->shards)
        goto nomem;
    for (unsigned i = 0; i < n; i++) {
        mc__shard *sh = &c->shards[i];
        mc__shard_set_bounds(c, sh, i, opts->max_entries, opts->max_bytes);
        size_t presize = sh->max_entries < MC__TABLE_PRESIZE_MAX ? sh->max_entries : MC__TABLE_PRESIZE_MAX;
        mc__table *t = mc__table_new(mc__table_buckets_for(presize));
        if (!t)
            goto nomem;
        atomic_init(&sh->table, t);
        atomic_init(&sh->memory, mc__table_bytes(t));
        if (mc__policy_init(&sh->policy, c->policy, mc__ghost_window(sh)) != 0)
            goto nomem;
        mc__stat_add(&sh->memory, (int64_t)mc__policy_bytes(&sh->policy));
    }
    *out = c;
    return 0;
nomem:
    mc_cache_destroy(c);
    return MC_ENOMEM;
}

void mc_cache_destroy(mc_cache *c)
{
    if (!c)
        return;
    if (c->shards) {
        for (unsigned i = 0; i < c->nshards; i++) {
            mc__shard *sh = &c->shards[i];
            for (int q = 0; q < 2; q++) {
                mc__entry *e;
                while (sh->policy.q[0].head.next && (e = mc__policy_oldest(&sh->policy, q))) {
                    mc__policy_unlink(&sh->policy, e);
                    mc__entry_unref(e);
                }
            }
            mc__policy_destroy(&sh->policy);
            mc__table_free(atomic_load_explicit(&sh->table, memory_order_relaxed));
        }
        mc__free(c->shards, sizeof(mc__shard) * c->nshards);
    }
    pthread_mutex_destroy(&c->resize_lock);
    mc__free(c, sizeof *c);
    /* The entries and indexes retired above are freed now, not at this thread's next
     * retirements or its exit (which never comes for a process's main thread). */
    mc__epoch_barrier();
}

/* ---------------------------------------------------------------- lookups */

static inline bool mc__key_ok(const void *key, size_t klen)
{
    return (key || klen == 0) && klen <= MC_KEY_MAX;
}

static inline mc__shard *mc__shard_of(mc_cache *c, uint64_t h)
{
    return &c->shards[(h >> 56) & c->shard_mask];
}

static inline struct mc__stripe *mc__my_stripe(mc_cache *c)
{
    return &c->stripes[mc__thread_id() & (MC__NSTRIPES - 1)];
}

static inline void mc__count(_Atomic uint64_t *ctr)
{
    /* The stripe is (almost always) this thread's own line: a plain load/store pair keeps the
     * increment cheap; two threads sharing a stripe may lose a count, never corrupt one. */
    atomic_store_explicit(ctr, atomic_load_explicit(ctr, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* Record a hit (inside the epoch section). Returns true when a drain is due. */
static inline bool mc__record_hit(mc_cache *c, mc__shard *sh, mc__entry *e, uint64_t now)
{
    if (c->track) {
        _Atomic uint64_t *at = mc__entry_atime(e);
        /* Rewrite the access time only when it moved by a step: hot keys stay read-only. */
        if (now > atomic_load_explicit(at, memory_order_relaxed) + c->atime_step)
            atomic_store_explicit(at, now, memory_order_relaxed);
    }
    if (c->policy == MC_POLICY_S3FIFO) {
        uint8_t f = atomic_load_explicit(&e->freq, memory_order_relaxed);
        if ((f & MC__FREQ_MASK) < 3)
            atomic_compare_exchange_strong_explicit(&e->freq, &f, (uint8_t)(f + 1),
                                                    memory_order_relaxed, memory_order_relaxed);
        return false;
    }
    /* Promoted within the current generation: already among the newest ~1/4 of the shard. */
    if (atomic_load_explicit(&e->freq, memory_order_relaxed) ==
        atomic_load_explicit(&sh->gen, memory_order_relaxed))
        return false;
    if (e->hash == 0)
        return false; /* 0 marks an empty ring slot; one hash in 2^32 goes unrecorded */
    return mc__ring_push(&sh->rings[mc__thread_id() & (MC__NRINGS - 1)], e->hash);
}

static void mc__maybe_drain(mc__shard *sh)
{
    /* Only if nobody holds the lock: a writer will drain anyway, readers never wait. */
    if (mc__lock_try(&sh->lock)) {
        mc__shard_drain(sh);
        mc__lock_release(&sh->lock);
    }
}

/* The entry for key, if present and not expired (inside an epoch section). */
static inline mc__entry *mc__lookup(mc_cache *c, mc__shard *sh, uint32_t h, const void *key,
                                    size_t klen, uint64_t now)
{
    mc__table *t = atomic_load_explicit(&sh->table, memory_order_acquire);
    mc__entry *e = mc__table_find(t, h, key, klen);
    return e && !mc__expired(c, e, now) ? e : NULL;
}

static inline void mc__count_lookup(mc_cache *c, bool hit)
{
    struct mc__stripe *st = mc__my_stripe(c);
    mc__count(hit ? &st->hits : &st->misses);
}

int mc_cache_get_copy(mc_cache *c, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen)
{
    if (!c || !vlen || !mc__key_ok(key, klen) || (!buf && cap))
        return MC_EINVAL;
    uint64_t h = XXH3_64bits_withSeed(key, klen, c->seed);
    mc__shard *sh = mc__shard_of(c, h);
    uint64_t now = mc__now(c);
    int rc;
    bool drain = false;

    ck_epoch_record_t *rec = mc__epoch_enter();
    mc__entry *e = mc__lookup(c, sh, (uint32_t)h, key, klen, now);
    if (e) {
        size_t n = e->vlen;
        *vlen = n;
        if (n > cap) {
            rc = MC_ERANGE;
        } else {
            if (n)
                memcpy(buf, mc__entry_value(e), n);
            rc = 0;
        }
        drain = mc__record_hit(c, sh, e, now);
    } else {
        rc = MC_ENOENT;
    }
    mc__epoch_exit(rec);

    mc__count_lookup(c, rc != MC_ENOENT);
    if (drain)
        mc__maybe_drain(sh);
    return rc;
}

static int mc__get(mc_cache *c, const void *key, size_t klen, mc_value **out, bool count);

int mc_cache_get(mc_cache *c, const void *key, size_t klen, mc_value **out)
{
    return mc__get(c, key, klen, out, true);
}

int mc__cache_get_quiet(mc_cache *c, const void *key, size_t klen, mc_value **out)
{
    return mc__get(c, key, klen, out, false);
}

static int mc__get(mc_cache *c, const void *key, size_t klen, mc_value **out, bool count)
{
    if (!c || !out || !mc__key_ok(key, klen))
        return MC_EINVAL;
    *out = NULL;
    uint64_t h = XXH3_64bits_withSeed(key, klen, c->seed);
    mc__shard *sh = mc__shard_of(c, h);
    uint64_t now = mc__now(c);
    mc__entry *e;
    bool drain = false;

    ck_epoch_record_t *rec = mc__epoch_enter();
    /* A failed pin means the entry was just removed: look again for its replacement. */
    do
        e = mc__lookup(c, sh, (uint32_t)h, key, klen, now);
    while (e && !mc__entry_pin(e));
    if (e)
        drain = mc__record_hit(c, sh, e, now);
    mc__epoch_exit(rec);

    if (count)
        mc__count_lookup(c, e != NULL);
    if (drain)
        mc__maybe_drain(sh);
    if (!e)
        return MC_ENOENT;
    *out = (mc_value *)e;
    return 0;
}

bool mc_cache_contains(mc_cache *c, const void *key, size_t klen)
{
    if (!c || !mc__key_ok(key, klen))
        return false;
    uint64_t h = XXH3_64bits_withSeed(key, klen, c->seed);
    mc__shard *sh = mc__shard_of(c, h);
    uint64_t now = mc__now(c);
    ck_epoch_record_t *rec = mc__epoch_enter();
    bool found = mc__lookup(c, sh, (uint32_t)h, key, klen, now) != NULL;
    mc__epoch_exit(rec);
    return found;
}

const void *mc_value_data(const mc_value *v) { return mc__entry_value((const mc__entry *)v); }

size_t mc_value_size(const mc_value *v) { return ((const mc__entry *)v)->vlen; }

bool mc_value_is_none(const mc_value *v) { return (((const mc__entry *)v)->flags & MC__E_NONE) != 0; }

const void *mc_value_key(const mc_value *v, size_t *klen)
{
    const mc__entry *e = (const mc__entry *)v;
    if (klen)
        *klen = e->klen;
    return mc__entry_key(e);
}

void mc_value_retain(mc_value *v)
{
    atomic_fetch_add_explicit(&((mc__entry *)v)->refs, 1, memory_order_relaxed);
}

void mc_value_release(mc_value *v)
{
    if (v)
        mc__entry_unref((mc__entry *)v);
}

/* ---------------------------------------------------------------- writes */

static void mc__table_retire_cb(ck_epoch_entry_t *p)
{
    MC__EPOCH_RECLAIM();
    mc__table_free((mc__table *)p);
}

/* Make room for one more entry in the shard's index, rebuilding it if needed. */
static int mc__shard_reserve(mc__shard *sh)
{
    mc__table *t = atomic_load_explicit(&sh->table, memory_order_relaxed);
    if (mc__table_has_room(t))
        return 0;
    size_t want = sh->max_entries < MC__TABLE_PRESIZE_MAX ? sh->max_entries : MC__TABLE_PRESIZE_MAX;
    mc__table *n = mc__table_rebuild(t, want);
    if (!n)
        return MC_ENOMEM;
    mc__stat_add(&sh->memory, (int64_t)mc__table_bytes(n) - (int64_t)mc__table_bytes(t));
    /* Release: readers that load the new table see its slots filled. Readers still probing
     * the old one see a consistent snapshot; it is freed after they leave. */
    atomic_store_explicit(&sh->table, n, memory_order_release);
    mc__epoch_retire(&t->epoch, mc__table_retire_cb);
    return 0;
}

int mc__cache_put_ex(mc_cache *c, const mc__put_args *a)
{
    if (a->pinned)
        *a->pinned = NULL;
    if (!c || (!a->key && a->klen) || (!a->value && a->vlen && !a->none) ||
        (a->flags & ~MC_PUT_IF_ABSENT))
        return MC_EINVAL;
    if (a->klen > MC_KEY_MAX || (!a->none && a->vlen > UINT32_MAX))
        return MC_E2BIG;
    const void *key = a->key;
    size_t klen = a->klen;
    unsigned flags = a->flags;
    uint64_t h = XXH3_64bits_withSeed(key, klen, c->seed);
    mc__shard *sh = mc__shard_of(c, h);
    uint64_t now = mc__now(c);

    /* Built outside the lock: allocation and copying never stall other writers. */
    mc__entry *e = mc__entry_make(c->track, (uint32_t)h, a, now);
    if (!e)
        return MC_ENOMEM;
    mc__gone gone = {0};
    int rc = 0;

    mc__shard_lock(c, sh, now, &gone);
    uint64_t w = mc__entry_weight(e);
    if (w > sh->max_weight || sh->max_entries == 0) {
        rc = MC_E2BIG;
        goto out;
    }
    /* A memoized load checks, under the lock that orders it with removals of this key, that
     * no invalidation came since it started. */
    if (a->guard && !a->guard(a->guard_ud)) {
        rc = MC_ECANCELED;
        goto out;
    }
    mc__table *t = atomic_load_explicit(&sh->table, memory_order_relaxed);
    int64_t slot = mc__table_find_slot(t, (uint32_t)h, key, klen);
    mc__entry *old = NULL;
    if (slot >= 0) {
        old = mc__table_at(t, slot);
        bool stale = mc__expired(c, old, now);
        if ((flags & MC_PUT_IF_ABSENT) && !stale) {
            rc = MC_EEXIST;
            goto out;
        }
        /* One atomic swap: readers see the old value or the new one, never a gap. */
        mc__table_replace(t, slot, e);
        mc__policy_unlink(&sh->policy, old);
        mc__shard_forget(sh, old, stale ? MC_EVICT_TIME : MC_EVICT_REPLACED, &gone);
        if (stale)
            old = NULL;
        mc__shard_make_room(sh, 1, w, &gone);
    } else {
        /* Index room first: a failure must leave the cache as it was, evictions included. */
        rc = mc__shard_reserve(sh);
        if (rc)
            goto out;
        mc__shard_make_room(sh, 1, w, &gone);
        mc__table_insert(atomic_load_explicit(&sh->table, memory_order_relaxed), e);
    }
    /* The old entry is off every list but still referenced: its standing can be copied. */
    mc__policy_insert(&sh->policy, e, old);
    if (sh->policy.kind == MC_POLICY_LRU)
        mc__lru_stamp(sh, e);
    mc__stat_add(&sh->count, 1);
    mc__stat_add(&sh->weight, (int64_t)w);
    mc__stat_add(&sh->memory, (int64_t)mc__entry_footprint(e));
    if (a->pinned) {
        /* Pinned before the lock is released: nothing can drop it in between. */
        atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
        *a->pinned = (mc_value *)e;
    }
out:
    mc__lock_release(&sh->lock);
    if (rc)
        mc__entry_discard(e);
    mc__gone_finish(c, &gone);
    return rc;
}

int mc_cache_put(mc_cache *c, const void *key, size_t klen, const void *value, size_t vlen)
{
    mc__put_args a = {.key = key, .klen = klen, .value = value, .vlen = vlen};
    return mc__cache_put_ex(c, &a);
}

int mc_cache_put_if_absent(mc_cache *c, const void *key, size_t klen, const void *value, size_t vlen)
{
    mc__put_args a = {.key = key, .klen = klen, .value = value, .vlen = vlen, .flags = MC_PUT_IF_ABSENT};
    return mc__cache_put_ex(c, &a);
}

int mc_cache_put_owned(mc_cache *c, const void *key, size_t klen, void *value, size_t vlen,
                       mc_free_fn free_fn, size_t weight, unsigned flags)
{
    mc__put_args a = {.key = key, .klen = klen, .value = value, .vlen = vlen, .free_fn = free_fn,
                      .owned = true, .weight = weight, .flags = flags};
    return mc__cache_put_ex(c, &a);
}

int mc_cache_remove(mc_cache *c, const void *key, size_t klen)
{
    if (!c || !mc__key_ok(key, klen))
        return MC_EINVAL;
    uint64_t h = XXH3_64bits_withSeed(key, klen, c->seed);
    mc__shard *sh = mc__shard_of(c, h);
    uint64_t now = mc__now(c);
    mc__gone gone = {0};
    int rc = MC_ENOENT;

    mc__shard_lock(c, sh, now, &gone);
    mc__table *t = atomic_load_explicit(&sh->table, memory_order_relaxed);
    int64_t slot = mc__table_find_slot(t, (uint32_t)h, key, klen);
    if (slot >= 0) {
        mc__entry *e = mc__table_at(t, slot);
        mc__table_remove(t, slot);
        mc__policy_unlink(&sh->policy, e);
        mc__shard_forget(sh, e, MC_EVICT_INVALIDATION, &gone);
        rc = 0;
    }
    mc__lock_release(&sh->lock);
    mc__gone_finish(c, &gone);
    return rc;
}

/* Remove, in every shard, the entries `match` accepts (all when match is NULL). */
static size_t mc__remove_where(mc_cache *c, bool (*match)(const mc__entry *, const void *),
                               const void *arg)
{
    size_t removed = 0;
    uint64_t now = mc__now(c);
    for (unsigned i = 0; i < c->nshards; i++) {
        mc__shard *sh = &c->shards[i];
        mc__gone gone = {0};
        mc__shard_lock(c, sh, now, &gone);
        for (int q = 0; q < 2; q++) {
            mc__entry *e = mc__policy_oldest(&sh->policy, q);
            while (e) {
                mc__entry *newer = mc__policy_newer(&sh->policy, q, e);
                if (!match || match(e, arg)) {
                    mc__shard_remove(sh, e, MC_EVICT_INVALIDATION, &gone);
                    removed++;
                }
                e = newer;
            }
        }
        mc__lock_release(&sh->lock);
        mc__gone_finish(c, &gone);
    }
    return removed;
}

struct mc__prefix {
    const void *bytes;
    size_t len;
};

static bool mc__match_prefix(const mc__entry *e, const void *arg)
{
    const struct mc__prefix *p = arg;
    return mc_key_has_prefix(mc__entry_key(e), e->klen, p->bytes, p->len);
}

int mc_cache_remove_prefix(mc_cache *c, const void *prefix, size_t plen, size_t *removed)
{
    if (!c || !mc__key_ok(prefix, plen))
        return MC_EINVAL;
    struct mc__prefix p = {prefix, plen};
    size_t n = mc__remove_where(c, mc__match_prefix, &p);
    if (removed)
        *removed = n;
    return 0;
}

void mc_cache_clear(mc_cache *c)
{
    if (!c)
        return;
    mc__remove_where(c, NULL, NULL);
    /* Give the memory back now rather than at this thread's next retirements. */
    mc__epoch_barrier();
}

int mc_cache_resize(mc_cache *c, size_t max_entries, size_t max_bytes)
{
    if (!c || (max_entries == 0 && max_bytes == 0))
        return MC_EINVAL;
    pthread_mutex_lock(&c->resize_lock);
    atomic_store_explicit(&c->max_entries, max_entries, memory_order_relaxed);
    atomic_store_explicit(&c->max_bytes, max_bytes, memory_order_relaxed);
    uint64_t now = mc__now(c);
    for (unsigned i = 0; i < c->nshards; i++) {
        mc__shard *sh = &c->shards[i];
        mc__gone gone = {0};
        mc__shard_lock(c, sh, now, &gone);
        mc__shard_set_bounds(c, sh, i, max_entries, max_bytes);
        size_t before = mc__policy_bytes(&sh->policy);
        mc__policy_set_window(&sh->policy, mc__ghost_window(sh));
        mc__stat_add(&sh->memory, (int64_t)mc__policy_bytes(&sh->policy) - (int64_t)before);
        mc__shard_make_room(sh, 0, 0, &gone);
        mc__lock_release(&sh->lock);
        mc__gone_finish(c, &gone);
    }
    pthread_mutex_unlock(&c->resize_lock);
    return 0;
}

int mc_cache_evict_idle(mc_cache *c, uint64_t min_idle_ns, size_t max, size_t *evicted)
{
    if (evicted)
        *evicted = 0;
    if (!c)
        return MC_EINVAL;
    if (min_idle_ns && !c->track)
        return MC_ENOTSUP;
    uint64_t now = mc__now(c);
    size_t done = 0;
    size_t quota = max / c->nshards + 1;
    for (unsigned i = 0; i < c->nshards && done < max; i++) {
        mc__shard *sh = &c->shards[i];
        mc__gone gone = {0};
        size_t n = 0;
        mc__shard_lock(c, sh, now, &gone);
        /* Queue order only approximates access order (S3-FIFO queues by insertion, LRU skips
         * promotions of recently promoted entries), so recently read entries are stepped over,
         * within a scan budget that keeps the lock hold short. */
        size_t budget = quota * 4 + 64;
        for (int q = 0; q < 2 && n < quota && done + n < max; q++) {
            mc__entry *e = mc__policy_oldest(&sh->policy, q);
            while (e && n < quota && done + n < max && budget > 0) {
                budget--;
                mc__entry *newer = mc__policy_newer(&sh->policy, q, e);
                uint64_t at = c->track ? atomic_load_explicit(mc__entry_atime(e), memory_order_relaxed) : 0;
                if (min_idle_ns && !(now > at && now - at >= min_idle_ns)) {
                    /* read recently: keep */
                } else {
                    mc__shard_remove(sh, e, MC_EVICT_MEMORY, &gone);
                    n++;
                }
                e = newer;
            }
        }
        mc__lock_release(&sh->lock);
        mc__gone_finish(c, &gone);
        done += n;
    }
    if (evicted)
        *evicted = done;
    return 0;
}

void mc_cache_cleanup(mc_cache *c)
{
    if (!c)
        return;
    uint64_t now = mc__now(c);
    for (unsigned i = 0; i < c->nshards; i++) {
        mc__shard *sh = &c->shards[i];
        mc__gone gone = {0};
        mc__shard_lock(c, sh, now, &gone);
        mc__shard_expire(c, sh, now, true, &gone);
        mc__lock_release(&sh->lock);
        mc__gone_finish(c, &gone);
    }
}

/* ---------------------------------------------------------------- stats */

void mc_cache_stats_get(mc_cache *c, mc_cache_stats *out)
{
    if (!c || !out)
        return;
    memset(out, 0, sizeof *out);
    for (unsigned i = 0; i < MC__NSTRIPES; i++) {
        out->hits += atomic_load_explicit(&c->stripes[i].hits, memory_order_relaxed);
        out->misses += atomic_load_explicit(&c->stripes[i].misses, memory_order_relaxed);
    }
    out->memory = mc__alloc_usable(c) + mc__alloc_usable(c->shards);
    for (unsigned i = 0; i < c->nshards; i++) {
        mc__shard *sh = &c->shards[i];
        out->entries += atomic_load_explicit(&sh->count, memory_order_relaxed);
        out->weight += atomic_load_explicit(&sh->weight, memory_order_relaxed);
        out->memory += atomic_load_explicit(&sh->memory, memory_order_relaxed);
        for (int r = 0; r < MC_EVICT_NREASONS; r++)
            out->evictions[r] += atomic_load_explicit(&sh->evictions[r], memory_order_relaxed);
    }
    out->max_entries = atomic_load_explicit(&c->max_entries, memory_order_relaxed);
    out->max_bytes = atomic_load_explicit(&c->max_bytes, memory_order_relaxed);
}

size_t mc_cache_size(mc_cache *c)
{
    if (!c)
        return 0;
    size_t n = 0;
    for (unsigned i = 0; i < c->nshards; i++)
        n += atomic_load_explicit(&c->shards[i].count, memory_order_relaxed);
    return n;
}

uint64_t mc_cache_seed(const mc_cache *c) { return c ? c->seed : 0; }

/* ---------------------------------------------------------------- verification (tests) */

int mc__cache_verify(mc_cache *c, char *msg, size_t msglen)
{
#define MC__FAIL(...)                                                                              \
    do {                                                                                           \
        snprintf(msg, msglen, __VA_ARGS__);                                                        \
        mc__lock_release(&sh->lock);                                                           \
        return -1;                                                                                 \
    } while (0)
    for (unsigned i = 0; i < c->nshards; i++) {
        mc__shard *sh = &c->shards[i];
        mc__lock_acquire(&sh->lock);
        mc__table *t = atomic_load_explicit(&sh->table, memory_order_relaxed);
        size_t n = 0;
        uint64_t w = 0;
        for (int q = 0; q < 2; q++) {
            for (mc__entry *e = mc__policy_oldest(&sh->policy, q); e; e = mc__policy_newer(&sh->policy, q, e)) {
                n++;
                w += mc__entry_weight(e);
                int64_t slot = mc__table_slot_of(t, e);
                if (slot < 0)
                    MC__FAIL("shard %u: queued entry missing from the index", i);
                if (mc__table_find_slot(t, e->hash, mc__entry_key(e), e->klen) != slot)
                    MC__FAIL("shard %u: key stored twice in the index", i);
                if (atomic_load_explicit(&e->refs, memory_order_relaxed) == 0)
                    MC__FAIL("shard %u: queued entry has no reference", i);
                if ((size_t)(mc__shard_of(c, XXH3_64bits_withSeed(mc__entry_key(e), e->klen, c->seed)) - c->shards) != i)
                    MC__FAIL("shard %u: entry in the wrong shard", i);
            }
        }
        if (n != t->live)
            MC__FAIL("shard %u: %zu queued entries, %u indexed", i, n, t->live);
        int trc = mc__table_check(t);
        if (trc != 0)
            MC__FAIL("shard %u: index inconsistent (%d)", i, trc);
        if (n != atomic_load_explicit(&sh->count, memory_order_relaxed))
            MC__FAIL("shard %u: count %zu, counter says %llu", i, n,
                     (unsigned long long)atomic_load_explicit(&sh->count, memory_order_relaxed));
        if (w != atomic_load_explicit(&sh->weight, memory_order_relaxed))
            MC__FAIL("shard %u: weight mismatch", i);
        if (n > sh->max_entries || w > sh->max_weight)
            MC__FAIL("shard %u: over its bounds (%zu entries, %llu weight)", i, n, (unsigned long long)w);
        mc__lock_release(&sh->lock);
    }
    return 0;
#undef MC__FAIL
}

void mc__reclaim_now(void) { mc__epoch_barrier(); }
