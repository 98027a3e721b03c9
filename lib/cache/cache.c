/* mc_cache: shards, seqlock lookups that write nothing, writers under one lock per shard,
 * bounds, TTL, stats. Small entries live in the index; the rest are reclaimed through RCU. */
#include "cache/cache_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
/* Keys are short: inlining XXH3 avoids a call and lets the compiler specialise small sizes. */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "core/alloc.h"
#include "core/epoch.h"
#include "modcache/key.h"

/* Auto sharding: one shard per MC__ENTRIES_PER_SHARD entries, raised to 4 per hardware thread
 * (so that writers on different cores rarely meet on a shard lock) while each shard keeps at
 * least MC__MIN_SHARD_ENTRIES, at most MC__AUTO_SHARDS_MAX. The minimum bounds what the hash's
 * uneven split of keys between shards costs in eviction accuracy (docs/cache.md). */
#define MC__ENTRIES_PER_SHARD 16384
#define MC__MIN_SHARD_ENTRIES 8192
#define MC__AUTO_SHARDS_MAX 256
#define MC__BYTES_PER_SHARD ((size_t)1 << 20)
#define MC__SHARDS_MAX 256
/* Shards bounded to fewer entries than this record every hit exactly (a try-lock on the
 * hit, which never waits); byte-bounded shards do while they hold fewer. */
#define MC__EXACT_BELOW 64
/* A hit restamps an entry only when its stamp is this many generations old or more (the
 * slack of the LRU order that docs/cache.md states and test_cache_lru_model checks). */
#define MC__FRESH_GENS 2
/* Readers report restamps to the shard in batches of this many. */
#define MC__RESTAMP_BATCH 16
/* The index is sized up front for at most this many entries per shard and grows beyond. */
#define MC__TABLE_PRESIZE_MAX 65536
/* Removals whose listener calls wait for the lock's release, per lock hold. */
#define MC__GONE_MAX 64

#define MC__TLS __attribute__((tls_model("initial-exec")))

static _Thread_local MC__TLS unsigned mc__restamp_pending;

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

/* The default clock: the coarse monotonic clock (the kernel's last tick, a few
 * milliseconds' resolution) costs a few nanoseconds where the precise one costs tens on a
 * virtual machine, and TTLs and idle times are far longer than a tick. */
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

static inline uint64_t mc__hash(const mc_cache *c, const void *key, size_t klen)
{
    return XXH3_64bits_withSeed(key, klen, c->seed);
}

static inline mc__shard *mc__shard_of(mc_cache *c, uint64_t h)
{
    return &c->shards[(h >> 56) & c->shard_mask];
}

static inline bool mc__key_ok(const void *key, size_t klen)
{
    return (key || klen == 0) && klen <= MC_KEY_MAX;
}

/* n <= 16 bytes without a libc call. */
static inline void mc__copy_small(unsigned char *dst, const unsigned char *src, size_t n)
{
    if (n >= 8) {
        uint64_t a, b;
        memcpy(&a, src, 8);
        memcpy(&b, src + n - 8, 8);
        memcpy(dst, &a, 8);
        memcpy(dst + n - 8, &b, 8);
    } else if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, src, 4);
        memcpy(&b, src + n - 4, 4);
        memcpy(dst, &a, 4);
        memcpy(dst + n - 4, &b, 4);
    } else {
        for (size_t i = 0; i < n; i++)
            dst[i] = src[i];
    }
}

/* ---------------------------------------------------------------- out-of-line entries */

static void mc__entry_free(mc__entry *e)
{
    size_t size = mc__entry_alloc_size(e->flags, e->klen, e->vlen);
    if (e->flags & MC__E_OWNED) {
        struct mc__owned *o = mc__entry_owned(e);
        if (o->free_fn)
            o->free_fn(o->value);
    }
    mc__free(e, size);
}

static void mc__entry_reclaim(mc__retire_node *p)
{
    MC__EPOCH_RECLAIM();
    mc__entry_free((mc__entry *)p); /* the node is the entry's first member */
}

void mc__entry_unref(mc__entry *e)
{
    /* acq_rel: the last holder sees every other holder's accesses before reclaiming. */
    if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (e->flags & MC__E_PRIVATE)
        mc__entry_free(e); /* no grace period: nothing found it without a reference */
    else
        mc__epoch_retire(&e->rcu, mc__entry_reclaim);
}

/* Pin an entry found by a lookup (inside the read section). Fails once the cache dropped it
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

static mc__entry *mc__entry_make(bool track, uint32_t hash, const mc__put_args *a, uint64_t now,
                                 bool wstamp)
{
    unsigned flags = (a->owned ? MC__E_OWNED : 0) | (track ? MC__E_TTL : 0) |
                     (a->none ? MC__E_NONE : 0) | (a->weight && !a->owned ? MC__E_WEIGHT : 0) |
                     (wstamp ? MC__E_WTIME : 0);
    size_t vlen = a->none ? 0 : a->vlen;
    mc__entry *e = mc__alloc(mc__entry_alloc_size(flags, a->klen, vlen));
    if (!e)
        return NULL;
    memset(&e->rcu, 0, sizeof e->rcu);
    e->hash = hash;
    atomic_init(&e->refs, 1);
    e->vlen = (uint32_t)vlen;
    e->klen = (uint16_t)a->klen;
    e->spare = 0;
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
    if (flags & MC__E_WTIME)
        atomic_init(mc__entry_wtime(e), now & ~MC__WTIME_CLAIM);
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
    mc__entry *e = mc__entry_make(false, 0, a, 0, false);
    if (e)
        e->flags |= MC__E_PRIVATE;
    return (mc_value *)e;
}

/* A pinned handle for an inline entry: a detached copy (the cell can be reused at once). */
static mc__entry *mc__inline_value(const mc__snap *s, unsigned i)
{
    uint8_t kl = s->b[MC__OFF_KL + i], vl = s->b[MC__OFF_VL + i];
    const unsigned char *cell = &s->b[MC__OFF_CELL + MC__CELL * i];
    mc__put_args a = {.key = cell, .klen = kl, .value = cell + kl, .vlen = vl & MC__VL_LEN,
                      .none = (vl & MC__VL_NONE) != 0};
    mc__entry *e = mc__entry_make(false, 0, &a, 0, false);
    if (e)
        e->flags |= MC__E_PRIVATE;
    return e;
}

static inline size_t mc__entry_footprint(const mc__entry *e)
{
    return mc__alloc_class(mc__entry_alloc_size(e->flags, e->klen, e->vlen));
}

/* ---------------------------------------------------------------- time */

static inline uint64_t mc__now(const mc_cache *c) { return c->clocked ? c->clock(c->clock_ud) : 0; }

/* Past its write-age lifetime (expire_after_write, or the shorter one of "no value"). */
static inline bool mc__write_expired(const mc_cache *c, const mc__entry *e, uint64_t now)
{
    uint64_t life = c->w_life[(e->flags & MC__E_NONE) != 0];
    if (!life)
        return false;
    uint64_t wt = atomic_load_explicit(mc__entry_wtime(e), memory_order_relaxed) & ~MC__WTIME_CLAIM;
    return now > wt && now - wt >= life;
}

/* Not read for the TTL. */
static inline bool mc__idle_expired(const mc_cache *c, const mc__entry *e, uint64_t now)
{
    if (!c->ttl)
        return false;
    uint64_t at = atomic_load_explicit(mc__entry_atime(e), memory_order_relaxed);
    /* Another thread may have stamped a later time than our `now`: not expired. */
    return now > at && now - at >= c->ttl;
}

static inline bool mc__expired(const mc_cache *c, const mc__entry *e, uint64_t now)
{
    return ((e->flags & MC__E_WTIME) && mc__write_expired(c, e, now)) || mc__idle_expired(c, e, now);
}

/* ---------------------------------------------------------------- removal lists */

/* Entries out of the cache whose listener call (and, out of line, reference drop) wait until
 * the shard lock is released. Inline entries are copied here, since their cell is reused. */
struct mc__gone_item {
    mc__entry *e; /* out of line, or NULL */
    uint8_t reason, kl, vl;
    unsigned char bytes[MC__CELL];
};

typedef struct mc__gone {
    unsigned n, cap;
    struct mc__gone_item *it; /* `local` until it outgrows it */
    struct mc__gone_item local[MC__GONE_MAX];
} mc__gone;

static inline void mc__gone_init(mc__gone *g)
{
    g->n = 0;
    g->cap = MC__GONE_MAX;
    g->it = g->local;
}

/* True when no further removal can be recorded: the list is full and cannot grow (out of
 * memory). Callers then release the lock, flush the list and carry on after it. */
static bool mc__gone_full(mc__gone *g)
{
    if (g->n < g->cap)
        return false;
    if (g->cap > UINT32_MAX / 4)
        return true;
    struct mc__gone_item *n = mc__malloc((size_t)g->cap * 2 * sizeof *n);
    if (!n)
        return true;
    memcpy(n, g->it, (size_t)g->n * sizeof *n);
    if (g->it != g->local)
        free(g->it);
    g->it = n;
    g->cap *= 2;
    return false;
}

static void mc__gone_add(mc__gone *g, mc__snap *s, unsigned i, mc_evict_reason reason)
{
    struct mc__gone_item *it = &g->it[g->n++];
    it->reason = (uint8_t)reason;
    it->kl = s->b[MC__OFF_KL + i];
    it->vl = s->b[MC__OFF_VL + i];
    if (it->kl == MC__KL_OUT) {
        it->e = mc__cell_entry(mc__snap_cell(s, i));
    } else {
        it->e = NULL;
        memcpy(it->bytes, mc__snap_cell(s, i), MC__CELL);
    }
}

static void mc__gone_finish(mc_cache *c, mc__gone *g)
{
    for (unsigned k = 0; k < g->n; k++) {
        struct mc__gone_item *it = &g->it[k];
        mc_evict_reason reason = (mc_evict_reason)it->reason;
        if (it->e) {
            mc__entry *e = it->e;
            if (c->on_evict)
                c->on_evict(c->on_evict_ud, mc__entry_key(e), e->klen, mc__entry_value(e), e->vlen,
                            reason);
            mc__entry_unref(e);
        } else if (c->on_evict) {
            c->on_evict(c->on_evict_ud, it->bytes, it->kl, it->bytes + it->kl, it->vl & MC__VL_LEN,
                        reason);
        }
    }
    g->n = 0;
    if (g->it != g->local) {
        free(g->it);
        g->it = g->local;
        g->cap = MC__GONE_MAX;
    }
}

/* ---------------------------------------------------------------- shard bookkeeping */

static inline void mc__stat_add(_Atomic uint64_t *v, int64_t d)
{
    /* Written only under the shard lock; atomics because stats readers take no lock. */
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + (uint64_t)d,
                          memory_order_relaxed);
}

static inline mc__table *mc__shard_table(mc__shard *sh)
{
    return atomic_load_explicit(&sh->table, memory_order_relaxed);
}

static inline bool mc__entry_bounded(const mc__shard *sh) { return sh->max_entries != SIZE_MAX; }

/* Exact mode follows the shard's bound, or (bounded by bytes only) its size. */
static void mc__shard_update_mode(mc__shard *sh)
{
    bool exact;
    if (mc__entry_bounded(sh))
        exact = sh->max_entries < MC__EXACT_BELOW;
    else
        exact = atomic_load_explicit(&sh->count, memory_order_relaxed) < MC__EXACT_BELOW;
    if (sh->policy.kind != MC_POLICY_LRU)
        exact = false;
    if (atomic_load_explicit(&sh->exact, memory_order_relaxed) != exact)
        atomic_store_explicit(&sh->exact, exact, memory_order_relaxed);
}

/* One LRU stamp (an insert or an exact promotion), plus the restamps readers reported:
 * advance the generation once per gen_len of them. */
static void mc__gen_tick(mc__shard *sh, mc__table *t)
{
    mc__policy *p = &sh->policy;
    if (p->kind != MC_POLICY_LRU)
        return;
    uint64_t rs = atomic_load_explicit(&sh->restamps, memory_order_relaxed);
    p->gen_ticks += 1 + (uint32_t)(rs - p->restamps_seen);
    p->restamps_seen = rs;
    uint32_t len;
    if (atomic_load_explicit(&sh->exact, memory_order_relaxed))
        len = 1;
    else if (mc__entry_bounded(sh))
        len = (uint32_t)(sh->max_entries / MC__NGENS);
    else
        len = (uint32_t)(atomic_load_explicit(&sh->count, memory_order_relaxed) / MC__NGENS);
    if (len == 0)
        len = 1;
    p->gen_len = len;
    if (p->gen_ticks < len)
        return;
    p->gen_ticks = 0;
    uint8_t g = (uint8_t)(atomic_load_explicit(&sh->gen, memory_order_relaxed) + 1);
    /* The list of generation g-16 becomes generation g's: its cells join the next oldest. */
    mc__list_splice_oldest(t, g & (MC__NGENS - 1), (uint8_t)(g + 1) & (MC__NGENS - 1));
    atomic_store_explicit(&sh->gen, g, memory_order_relaxed);
}

/* Remove the entry in `cell` (unlinked from its list when `unlink`): accounting, the removal
 * list, the index. *watch (if not NULL) follows a cell that the removal moves. */
static void mc__shard_drop(mc_cache *c, mc__shard *sh, mc__table *t, uint32_t cell,
                           mc_evict_reason reason, mc__gone *g, bool unlink, uint32_t *watch)
{
    mc__snap s;
    mc__table_cell(t, cell, &s);
    unsigned i = cell % MC__SLOTS;
    uint64_t w = mc__snap_weight(&s, i);
    if (unlink)
        mc__list_unlink(t, cell);
    if (sh->policy.kind == MC_POLICY_S3FIFO) {
        if (s.b[MC__OFF_VL + i] & MC__VL_MAIN) {
            sh->policy.main_count--;
        } else {
            sh->policy.small_count--;
            sh->policy.small_weight -= w;
        }
    }
    mc__stat_add(&sh->count, -1);
    mc__stat_add(&sh->weight, -(int64_t)w);
    if (s.b[MC__OFF_KL + i] == MC__KL_OUT)
        mc__stat_add(&sh->memory, -(int64_t)mc__entry_footprint(mc__cell_entry(mc__snap_cell(&s, i))));
    mc__stat_add(&sh->evictions[reason], 1);
    mc__gone_add(g, &s, i, reason);
    if (watch && *watch == cell)
        *watch = MC__NONE_CELL;
    mc__table_remove(t, cell, c->seed, watch);
    if (!mc__entry_bounded(sh))
        mc__shard_update_mode(sh);
}

/* Evict until `extra` more entries of `extra_weight` fit (0, 0: until within bounds), so that
 * a shard is never over its bounds, even for an instant. Returns false if the removal list
 * filled first (the caller flushes it and starts again). */
static bool mc__shard_make_room(mc_cache *c, mc__shard *sh, size_t extra, uint64_t extra_weight,
                                mc__gone *g)
{
    size_t me = mc__entry_bounded(sh) ? sh->max_entries : 0;
    uint64_t mw = sh->max_weight == UINT64_MAX ? 0 : sh->max_weight;
    mc__table *t = mc__shard_table(sh);
    for (;;) {
        uint64_t n = atomic_load_explicit(&sh->count, memory_order_relaxed);
        uint64_t w = atomic_load_explicit(&sh->weight, memory_order_relaxed);
        if (n + extra <= sh->max_entries && w + extra_weight <= sh->max_weight)
            return true;
        if (mc__gone_full(g))
            return false;
        uint8_t gen = atomic_load_explicit(&sh->gen, memory_order_relaxed);
        uint32_t v = mc__policy_victim(&sh->policy, t, gen, me, mw, c->seed);
        if (v == MC__NONE_CELL)
            return true;
        mc__shard_drop(c, sh, t, v, MC_EVICT_SIZE, g, false, NULL);
    }
}

/* Which entries a sweep removes: slot i of *s (a copy of its bucket). */
typedef bool mc__sweep_fn(const mc_cache *c, mc__snap *s, unsigned i, const void *arg);

/* Remove every entry of the shard that `match` accepts (lock held), in bucket order. A
 * removal can move a later entry into the cell just emptied, so the cell is looked at again.
 * Returns false if the removal list filled first: the caller releases the lock, flushes the
 * list and sweeps the shard again from the start (other writers may have moved entries
 * meanwhile). *removed (if not NULL) counts what went. */
static bool mc__shard_sweep(mc_cache *c, mc__shard *sh, mc__sweep_fn *match, const void *arg,
                            mc_evict_reason reason, mc__gone *g, size_t *removed)
{
    mc__table *t = mc__shard_table(sh);
    for (uint32_t cell = 0; cell < t->ncells;) {
        mc__snap s;
        mc__table_cell(t, cell, &s);
        unsigned i = cell % MC__SLOTS;
        if (!s.b[MC__OFF_TAG + i] || (match && !match(c, &s, i, arg))) {
            cell++;
            continue;
        }
        if (mc__gone_full(g))
            return false;
        mc__shard_drop(c, sh, t, cell, reason, g, true, NULL);
        if (removed)
            ++*removed;
    }
    return true;
}

static bool mc__match_expired(const mc_cache *c, mc__snap *s, unsigned i, const void *now)
{
    return s->b[MC__OFF_KL + i] == MC__KL_OUT &&
           mc__expired(c, mc__cell_entry(mc__snap_cell(s, i)), *(const uint64_t *)now);
}

/* Remove expired entries: from the old ends of the lists (a few per call), or every one when
 * `full` (cleanup). Only out-of-line entries carry an access time. Returns false as
 * mc__shard_sweep does. Entries past their write-age lifetime go only with a full cleanup
 * (the maintenance pass): until then a call that reads one finds it expired, which the
 * memoized layer counts (mc__expiry_claim), rather than a plain miss. */
static bool mc__shard_expire(mc_cache *c, mc__shard *sh, uint64_t now, bool full, mc__gone *g)
{
    if (full && (c->ttl || c->w_life[0] || c->w_life[1]))
        return mc__shard_sweep(c, sh, mc__match_expired, &now, MC_EVICT_TIME, g, NULL);
    if (!c->ttl)
        return true;
    mc__table *t = mc__shard_table(sh);
    for (uint32_t list = 0; list < MC__NLISTS; list++) {
        for (int k = 0; k < 4; k++) {
            uint32_t cell = mc__list_oldest(t, list);
            if (cell == MC__NONE_CELL || mc__gone_full(g))
                break;
            mc__snap s;
            mc__table_cell(t, cell, &s);
            unsigned i = cell % MC__SLOTS;
            if (s.b[MC__OFF_KL + i] != MC__KL_OUT || !mc__idle_expired(c, mc__cell_entry(mc__snap_cell(&s, i)), now))
                break;
            mc__shard_drop(c, sh, t, cell, MC_EVICT_TIME, g, true, NULL);
        }
    }
    return true;
}

static void mc__shard_lock(mc_cache *c, mc__shard *sh, uint64_t now, mc__gone *g)
{
    mc__lock_acquire(&sh->lock);
    if (c->ttl) /* what a partial pass removes: idle entries */
        mc__shard_expire(c, sh, now, false, g);
}

static void mc__shard_set_bounds(mc_cache *c, mc__shard *sh, unsigned i, size_t max_entries,
                                 size_t max_bytes)
{
    size_t n = c->nshards;
    sh->max_entries = max_entries ? max_entries / n + (i < max_entries % n) : SIZE_MAX;
    sh->max_weight = max_bytes ? max_bytes / n + (i < max_bytes % n) : UINT64_MAX;
    mc__shard_update_mode(sh);
}

static size_t mc__ghost_window(const mc__shard *sh)
{
    /* The ghost remembers about as many keys as the main queue holds (90%). */
    return mc__entry_bounded(sh) ? sh->max_entries - sh->max_entries / 10 : 0;
}

static size_t mc__presize(const mc__shard *sh)
{
    return sh->max_entries < MC__TABLE_PRESIZE_MAX ? sh->max_entries : MC__TABLE_PRESIZE_MAX;
}

/* Replace the shard's index by one for at least `entries` entries, keeping every entry in
 * its list order. The old index stays allocated (readers may still be probing it) until the
 * cache is destroyed; its buckets turn odd so that probes move to the new one. */
static int mc__shard_grow(mc_cache *c, mc__shard *sh, size_t entries)
{
    mc__table *old = mc__shard_table(sh);
    size_t want = mc__table_capacity(old) * 2;
    if (want < entries)
        want = entries;
    mc__table *n = mc__table_new(want, MC__NLISTS);
    if (!n)
        return MC_ENOMEM;
    for (uint32_t list = 0; list < MC__NLISTS; list++) {
        for (uint32_t cell = mc__list_oldest(old, list); cell != MC__NONE_CELL;
             cell = mc__list_newer(old, cell)) {
            mc__snap s;
            mc__table_cell(old, cell, &s);
            unsigned i = cell % MC__SLOTS;
            uint64_t h = mc__table_cell_hash(old, cell, c->seed);
            if (!mc__table_claim_fits(n, h)) {
                mc__table_free(n);
                return MC_E2BIG; /* a run the larger index cannot count either */
            }
            uint8_t disp;
            uint32_t nc = mc__table_claim(n, h, &disp, c->seed);
            mc__table_store(n, nc, mc__tag_of(h), disp, s.b[MC__OFF_KL + i], s.b[MC__OFF_VL + i],
                            s.b[MC__OFF_REC + i], mc__snap_cell(&s, i));
            mc__list_push(n, list, nc);
        }
    }
    n->retired = old;
    mc__stat_add(&sh->memory, (int64_t)n->bytes);
    /* Release: a reader that loads the new table sees its buckets filled. */
    atomic_store_explicit(&sh->table, n, memory_order_release);
    mc__table_retire(old);
    return 0;
}

/* ---------------------------------------------------------------- create / destroy */

unsigned mc__auto_shards(size_t max_entries, size_t max_bytes)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned floor = 1;
    if (cpus > 1)
        while (floor < MC__AUTO_SHARDS_MAX && floor < 4u * (unsigned)cpus)
            floor *= 2;
    unsigned n = 1;
    if (max_entries == 0) {
        /* Bounded by bytes only: one shard per MC__BYTES_PER_SHARD, so that each shard's share
         * still holds large values. */
        while (n < 64 && (size_t)n * 2 * MC__BYTES_PER_SHARD <= max_bytes)
            n *= 2;
        return n;
    }
    while (n < MC__AUTO_SHARDS_MAX && (size_t)n * 2 * MC__ENTRIES_PER_SHARD <= max_entries)
        n *= 2;
    /* Many cores: more shards, as long as each still holds MC__MIN_SHARD_ENTRIES (smaller
     * shards cost eviction accuracy and split small bounds unevenly). */
    while (n < floor && max_entries / ((size_t)n * 2) >= MC__MIN_SHARD_ENTRIES)
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
    c->clocked = c->track;
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
        sh->policy.kind = c->policy;
        mc__shard_set_bounds(c, sh, i, opts->max_entries, opts->max_bytes);
        mc__table *t = mc__table_new(mc__presize(sh), MC__NLISTS);
        if (!t)
            goto nomem;
        atomic_init(&sh->table, t);
        atomic_init(&sh->memory, t->bytes);
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
            mc__table *t = mc__shard_table(sh);
            if (t) {
                for (uint32_t cell = 0; cell < t->ncells; cell++) {
                    mc__snap s;
                    mc__table_cell(t, cell, &s);
                    unsigned k = cell % MC__SLOTS;
                    if (s.b[MC__OFF_TAG + k] && s.b[MC__OFF_KL + k] == MC__KL_OUT)
                        mc__entry_unref(mc__cell_entry(mc__snap_cell(&s, k)));
                }
            }
            while (t) {
                mc__table *older = t->retired;
                mc__table_free(t);
                t = older;
            }
            mc__policy_destroy(&sh->policy);
        }
        mc__free(c->shards, sizeof(mc__shard) * c->nshards);
    }
    bool had_out_of_line = atomic_load_explicit(&c->had_out_of_line, memory_order_relaxed);
    pthread_mutex_destroy(&c->resize_lock);
    mc__free(c, sizeof *c);
    /* The entries retired above and before are freed now, not at some later grace period
     * (which may never come for a process that is about to exit). A cache that only ever held
     * inline entries retired nothing, and skips the wait (a grace period, milliseconds). */
    if (had_out_of_line)
        mc__epoch_barrier();
}

/* ---------------------------------------------------------------- lookups */

/* Where a probe found its key: the bucket, the copy it validated, the slot. */
typedef struct mc__found {
    mc__bucket *bk;
    mc__snap s;
    unsigned slot;
} mc__found;

#define MC__PROBE_TRACK 16

static inline void mc__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Find key without writing anything. Returns true with *f filled, or false on a miss.
 * Enters the read section (and sets *section) only when an out-of-line candidate must be
 * looked at; the caller leaves it. A miss is reported only after the versions of the buckets
 * passed are seen unchanged: a removal's backward move can otherwise slip an entry past. */
static inline __attribute__((always_inline)) bool mc__probe(mc__shard *sh, uint64_t h, const void *key, size_t klen, mc__found *f,
                             bool *section)
{
    uint8_t tag = mc__tag_of(h);
retry:;
    mc__table *t = atomic_load_explicit(&sh->table, memory_order_acquire);
    uint32_t b = mc__home_of(h, t->nbuckets);
    uint32_t seen_b[MC__PROBE_TRACK], seen_v[MC__PROBE_TRACK];
    unsigned nseen = 0;
    bool ended = false; /* the walk reached a bucket that no entry passed */
    for (uint32_t n = 0; n < t->nbuckets; n++) {
        mc__bucket *bk = &t->buckets[b];
        uint64_t w0;
        unsigned m;
    reread:
        /* Word 0 alone (version, tags, overflow) decides most buckets: the rest of the line
         * is copied and validated only when a tag matches. */
        w0 = atomic_load_explicit(&bk->w[0], memory_order_acquire);
        while (w0 & 1u) {
            if (atomic_load_explicit(&sh->table, memory_order_acquire) != t)
                goto retry; /* the table was replaced */
            mc__cpu_relax();
            w0 = atomic_load_explicit(&bk->w[0], memory_order_acquire);
        }
        m = mc__w0_match(w0, tag);
        if (m) {
            if (!mc__bucket_read(bk, &f->s)) {
                if (atomic_load_explicit(&sh->table, memory_order_acquire) != t)
                    goto retry;
                /* A writer was inside: this bucket again. Not a step of the walk: steps
                 * spent on copies a writer spoiled would end the walk early, in a small
                 * table before the key's bucket was ever read. */
                goto reread;
            }
            w0 = f->s.w[0];
            m = mc__w0_match(w0, tag);
        }
        for (; m; m &= m - 1) {
            unsigned i = mc__match_slot(m);
            unsigned char *cell = mc__snap_cell(&f->s, i);
            uint8_t kl = f->s.b[MC__OFF_KL + i];
            if (kl != MC__KL_OUT) {
                if (kl == klen && mc__bytes_eq(cell, key, klen)) {
                    f->bk = bk;
                    f->slot = i;
                    return true;
                }
                continue;
            }
            if (mc__cell_klen(cell) != klen || mc__cell_hash(cell) != (uint32_t)h)
                continue;
            if (!*section) {
                mc__epoch_enter();
                *section = true;
                /* Entered, then the same version: the entry was still in the table after the
                 * section began, so it cannot be freed before the section ends. */
                if (!mc__bucket_same(bk, &f->s))
                    goto retry;
            }
            if (mc__bytes_eq(mc__entry_key(mc__cell_entry(cell)), key, klen)) {
                f->bk = bk;
                f->slot = i;
                return true;
            }
        }
        if (nseen < MC__PROBE_TRACK) {
            seen_b[nseen] = b;
            seen_v[nseen] = (uint32_t)w0;
        }
        nseen++;
        if (mc__w0_ovf(w0) == 0) {
            ended = true;
            break;
        }
        b = mc__next_bucket(b, t->nbuckets);
    }
    if (!ended || nseen > MC__PROBE_TRACK) {
        /* A run this long is rare at the target load (and one through every bucket without
         * an end can only be a table changing under the walk): confirm the miss under the
         * lock. */
        mc__lock_acquire(&sh->lock);
        bool there = mc__table_find(mc__shard_table(sh), h, key, klen) >= 0;
        mc__lock_release(&sh->lock);
        if (there)
            goto retry;
        return false;
    }
    atomic_thread_fence(memory_order_acquire);
    for (unsigned k = 0; k < nseen; k++)
        if ((uint32_t)atomic_load_explicit(&t->buckets[seen_b[k]].w[0], memory_order_relaxed) != seen_v[k])
            goto retry;
    return false;
}

static inline void mc__count(_Atomic uint64_t *ctr)
{
    /* The stripe is (almost always) this thread's own line: a plain load/store pair keeps the
     * increment cheap; two threads sharing a stripe may lose a count, never corrupt one. */
    atomic_store_explicit(ctr, atomic_load_explicit(ctr, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static inline void mc__count_lookup(mc_cache *c, bool hit)
{
    struct mc__stripe *st = &c->stripes[mc__thread_id() & (MC__NSTRIPES - 1)];
    mc__count(hit ? &st->hits : &st->misses);
}

/* Small shards: promote under the lock, if it is free (a reader never waits). */
static void mc__touch_exact(mc__shard *sh, uint64_t h, const void *key, size_t klen)
{
    if (!mc__lock_try(&sh->lock))
        return;
    mc__table *t = mc__shard_table(sh);
    int64_t pos = mc__table_find(t, h, key, klen);
    if (pos >= 0) {
        uint32_t cell = (uint32_t)pos;
        uint8_t g = atomic_load_explicit(&sh->gen, memory_order_relaxed);
        mc__list_unlink(t, cell);
        mc__list_push(t, g & (MC__NGENS - 1), cell);
        mc__cell_set(t, cell, MC__OFF_REC, g);
        mc__gen_tick(sh, t);
    }
    mc__lock_release(&sh->lock);
}

/* Record a hit. Writes nothing unless the recency byte must change. */
static inline void mc__record_hit(mc_cache *c, mc__shard *sh, const mc__found *f, uint64_t h,
                                  const void *key, size_t klen)
{
    /* The byte sits in the bucket's line; a writer rewriting the line may overwrite it (a
     * lost update, never a torn one: the store is a single byte). */
    uint8_t rec = f->s.b[MC__OFF_REC + f->slot];
    if (c->policy == MC_POLICY_S3FIFO) {
        if ((rec & 3u) < 3)
            mc__slot_set(f->bk, f->slot, MC__OFF_REC, (uint8_t)(rec + 1));
        return;
    }
    if (atomic_load_explicit(&sh->exact, memory_order_relaxed)) {
        mc__touch_exact(sh, h, key, klen);
        return;
    }
    uint8_t g = atomic_load_explicit(&sh->gen, memory_order_relaxed);
    if ((uint8_t)(g - rec) < MC__FRESH_GENS)
        return; /* among the newest generations already */
    mc__slot_set(f->bk, f->slot, MC__OFF_REC, g);
    if (++mc__restamp_pending >= MC__RESTAMP_BATCH) {
        mc__restamp_pending = 0;
        atomic_fetch_add_explicit(&sh->restamps, MC__RESTAMP_BATCH, memory_order_relaxed);
    }
}

/* Access time of an out-of-line entry on a hit: rewritten only when it moved by a step. */
static inline void mc__touch_atime(const mc_cache *c, mc__entry *e, uint64_t now)
{
    _Atomic uint64_t *at = mc__entry_atime(e);
    if (now > atomic_load_explicit(at, memory_order_relaxed) + c->atime_step)
        atomic_store_explicit(at, now, memory_order_relaxed);
}

int mc_cache_get_copy(mc_cache *c, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen)
{
    bool none;
    return mc__cache_get_copy_ex(c, key, klen, buf, cap, vlen, &none);
}

/* A live hit's value: bytes in the probe's copy of the bucket (inline) or in an out-of-line
 * entry (valid for the read section). */
typedef struct mc__hitval {
    const unsigned char *data;
    size_t n;
    bool none;
    bool in_line;
} mc__hitval;

/* Probe for key and check that what it found has not expired (out-of-line entries carry the
 * access time, refreshed here). True with *hv set on a live hit; the caller records it. */
/* A hit on an entry past the refresh age: the first such hit claims its refresh (the write
 * time's high bit), so that one reload is started per entry however many hits see it. */
static inline unsigned mc__refresh_claim(const mc_cache *c, mc__entry *e, uint64_t now)
{
    if (!c->w_refresh)
        return 0;
    _Atomic uint64_t *wp = mc__entry_wtime(e);
    uint64_t wt = atomic_load_explicit(wp, memory_order_relaxed);
    /* A claimed time has its high bit set, so it reads as "in the future": no claim. */
    if (now <= wt || now - wt < c->w_refresh)
        return 0;
    /* Relaxed: the claim orders nothing else (the reload takes the locks it needs). */
    uint64_t old = atomic_fetch_or_explicit(wp, MC__WTIME_CLAIM, memory_order_relaxed);
    return (old & MC__WTIME_CLAIM) ? 0 : MC__AGE_REFRESH;
}

/* A miss on an entry past its write-age lifetime: the first such miss claims it, so that the
 * expiry is told once per entry (the claimed entry stays expired whatever happens). */
static inline unsigned mc__expiry_claim(const mc_cache *c, mc__entry *e, uint64_t now)
{
    if (!mc__write_expired(c, e, now))
        return 0;
    uint64_t old = atomic_fetch_or_explicit(mc__entry_wtime(e), MC__WTIME_CLAIM, memory_order_relaxed);
    return (old & MC__WTIME_CLAIM) ? 0 : MC__AGE_EXPIRED;
}

/* An entry with a write time, found by a lookup: true if it is past its lifetime (a miss,
 * the expiry claimed into *age); otherwise false, with its refresh claimed into *age when
 * due. Out of line: hits on entries without write-age rules never come here. */
static __attribute__((noinline)) bool mc__write_age(const mc_cache *c, mc__entry *e, uint64_t now,
                                                    unsigned *age)
{
    unsigned a = mc__expiry_claim(c, e, now);
    if (a || mc__write_expired(c, e, now)) {
        *age |= a;
        return true;
    }
    *age |= mc__refresh_claim(c, e, now);
    return false;
}

static inline __attribute__((always_inline)) bool
mc__find_live(mc_cache *c, mc__shard *sh, uint64_t h, const void *key, size_t klen, mc__found *f,
              bool *section, mc__hitval *hv, unsigned *age)
{
    if (!mc__probe(sh, h, key, klen, f, section))
        return false;
    unsigned char *cell = mc__snap_cell(&f->s, f->slot);
    uint8_t kl = f->s.b[MC__OFF_KL + f->slot];
    if (kl != MC__KL_OUT) {
        uint8_t vl = f->s.b[MC__OFF_VL + f->slot];
        hv->data = cell + kl;
        hv->n = vl & MC__VL_LEN;
        hv->none = (vl & MC__VL_NONE) != 0;
        hv->in_line = true;
        return true;
    }
    mc__entry *e = mc__cell_entry(cell);
    uint64_t now = mc__now(c);
    if ((e->flags & MC__E_WTIME) && mc__write_age(c, e, now, age))
        return false;
    if (mc__idle_expired(c, e, now))
        return false;
    hv->data = mc__entry_value(e);
    hv->n = e->vlen;
    hv->none = (e->flags & MC__E_NONE) != 0;
    hv->in_line = false;
    if (c->track)
        mc__touch_atime(c, e, now);
    return true;
}

/* The copy lookup, inlined into both entry points below. */
static inline __attribute__((always_inline)) int
mc__get_copy(mc_cache *c, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen, bool *none,
             unsigned *age)
{
    *none = false;
    *age = 0;
    if (!c || !vlen || !mc__key_ok(key, klen) || (!buf && cap))
        return MC_EINVAL;
    uint64_t h = mc__hash(c, key, klen);
    mc__shard *sh = mc__shard_of(c, h);
    /* Inside a held section (mc_read_begin) the lookup needs no section of its own. */
    bool held = mc__in_read(), section = held;
    mc__found f;
    mc__hitval hv;
    int rc = MC_ENOENT;
    if (mc__find_live(c, sh, h, key, klen, &f, &section, &hv, age)) {
        *none = hv.none;
        *vlen = hv.n;
        if (hv.n > cap) {
            rc = MC_ERANGE;
        } else {
            if (hv.in_line || hv.n <= 16)
                mc__copy_small(buf, hv.data, hv.n); /* most values are a few words */
            else
                memcpy(buf, hv.data, hv.n);
            rc = 0;
        }
        mc__record_hit(c, sh, &f, h, key, klen);
    }
    if (section && !held)
        mc__epoch_exit();
    mc__count_lookup(c, rc != MC_ENOENT);
    return rc;
}

int mc__cache_get_copy_ex(mc_cache *c, const void *key, size_t klen, void *buf, size_t cap,
                          size_t *vlen, bool *none)
{
    unsigned age;
    return mc__get_copy(c, key, klen, buf, cap, vlen, none, &age);
}

int mc__cache_get_copy_aged(mc_cache *c, const void *key, size_t klen, void *buf, size_t cap,
                            size_t *vlen, bool *none, unsigned *age)
{
    return mc__get_copy(c, key, klen, buf, cap, vlen, none, age);
}

/* The borrowing lookup, inlined into both entry points below. */
static inline __attribute__((always_inline)) int
mc__get_borrow(mc_cache *c, const void *key, size_t klen, const void **data, size_t *vlen, bool *none,
               unsigned *age)
{
    *none = false;
    *age = 0;
    if (!c || !data || !vlen || !mc__key_ok(key, klen) || !mc__in_read())
        return MC_EINVAL;
    *data = NULL;
    *vlen = 0;
    uint64_t h = mc__hash(c, key, klen);
    mc__shard *sh = mc__shard_of(c, h);
    bool section = true; /* the caller's */
    mc__found f;
    mc__hitval hv;
    int rc = MC_ENOENT;
    if (mc__find_live(c, sh, h, key, klen, &f, &section, &hv, age)) {
        rc = 0;
        if (hv.in_line) {
            /* An inline value has no bytes that outlive the probe's copy: it goes to the
             * section's scratch, released with the section. */
            unsigned char *p = mc__read_scratch(hv.n ? hv.n : 1);
            if (p)
                mc__copy_small(p, hv.data, hv.n);
            else
                rc = MC_ENOMEM;
            hv.data = p;
        }
        if (rc == 0) {
            *data = hv.data;
            *vlen = hv.n;
            *none = hv.none;
            mc__record_hit(c, sh, &f, h, key, klen);
        }
    }
    if (rc != MC_ENOMEM)
        mc__count_lookup(c, rc == 0);
    return rc;
}

int mc__cache_get_borrow_ex(mc_cache *c, const void *key, size_t klen, const void **data,
                            size_t *vlen, bool *none)
{
    unsigned age;
    return mc__get_borrow(c, key, klen, data, vlen, none, &age);
}

int mc__cache_get_borrow_aged(mc_cache *c, const void *key, size_t klen, const void **data,
                              size_t *vlen, bool *none, unsigned *age)
{
    return mc__get_borrow(c, key, klen, data, vlen, none, age);
}

int mc_cache_get_borrow(mc_cache *c, const void *key, size_t klen, const void **data, size_t *vlen)
{
    bool none;
    return mc__cache_get_borrow_ex(c, key, klen, data, vlen, &none);
}

void mc_read_begin(void) { mc__read_enter(); }

void mc_read_end(void) { mc__read_exit(); }

/* Inlined into each entry point, so that the constant `count` and `age` of each fold away. */
static inline __attribute__((always_inline)) int mc__get(mc_cache *c, const void *key, size_t klen,
                                                         mc_value **out, bool count, unsigned *age)
{
    if (!c || !out || !mc__key_ok(key, klen))
        return MC_EINVAL;
    *out = NULL;
    uint64_t h = mc__hash(c, key, klen);
    mc__shard *sh = mc__shard_of(c, h);
    mc__entry *e = NULL;
    int rc = MC_ENOENT;
    bool held = mc__in_read();
    for (;;) {
        bool section = held;
        mc__found f;
        bool retry = false;
        if (mc__probe(sh, h, key, klen, &f, &section)) {
            unsigned char *cell = mc__snap_cell(&f.s, f.slot);
            if (f.s.b[MC__OFF_KL + f.slot] != MC__KL_OUT) {
                e = mc__inline_value(&f.s, f.slot);
                rc = e ? 0 : MC_ENOMEM;
            } else {
                mc__entry *x = mc__cell_entry(cell);
                uint64_t now = mc__now(c);
                /* Quiet lookups (age NULL) claim nothing: a claim is a duty to reload. */
                bool dead = (x->flags & MC__E_WTIME) &&
                            (age ? mc__write_age(c, x, now, age) : mc__write_expired(c, x, now));
                if (!dead && !mc__idle_expired(c, x, now)) {
                    /* A failed pin means the entry was just removed: look again. */
                    if (mc__entry_pin(x)) {
                        e = x;
                        rc = 0;
                        if (c->track)
                            mc__touch_atime(c, x, now);
                    } else {
                        retry = true;
                    }
                }
            }
            if (rc == 0)
                mc__record_hit(c, sh, &f, h, key, klen);
        }
        if (section && !held)
            mc__epoch_exit();
        if (!retry)
            break;
    }
    if (count && rc != MC_ENOMEM)
        mc__count_lookup(c, rc == 0);
    if (rc != 0)
        return rc;
    *out = (mc_value *)e;
    return 0;
}

int mc_cache_get(mc_cache *c, const void *key, size_t klen, mc_value **out)
{
    return mc__get(c, key, klen, out, true, NULL);
}

int mc__cache_get_quiet(mc_cache *c, const void *key, size_t klen, mc_value **out)
{
    return mc__get(c, key, klen, out, false, NULL);
}

int mc__cache_get_aged(mc_cache *c, const void *key, size_t klen, mc_value **out, unsigned *age)
{
    *age = 0;
    return mc__get(c, key, klen, out, true, age);
}

int mc__cache_set_write_rules(mc_cache *c, uint64_t refresh_ns, uint64_t expire_ns, uint64_t none_ns)
{
    if (!c)
        return MC_EINVAL;
    c->w_refresh = refresh_ns;
    c->w_life[0] = expire_ns;
    /* "No value" lives the shorter of its own lifetime and every entry's. */
    c->w_life[1] = none_ns && (!expire_ns || none_ns < expire_ns) ? none_ns : expire_ns;
    c->wstamp = refresh_ns || expire_ns || none_ns;
    c->clocked = c->track || c->wstamp;
    return 0;
}

void mc__value_refresh_unclaim(mc_value *v)
{
    mc__entry *e = (mc__entry *)v;
    /* Relaxed, as the claim: the next hit past the refresh age claims it again. */
    if (e && (e->flags & MC__E_WTIME))
        atomic_fetch_and_explicit(mc__entry_wtime(e), ~MC__WTIME_CLAIM, memory_order_relaxed);
}

uint64_t mc__cache_now(mc_cache *c) { return c ? c->clock(c->clock_ud) : 0; }

bool mc_cache_contains(mc_cache *c, const void *key, size_t klen)
{
    if (!c || !mc__key_ok(key, klen))
        return false;
    uint64_t h = mc__hash(c, key, klen);
    mc__shard *sh = mc__shard_of(c, h);
    bool held = mc__in_read(), section = held;
    mc__found f;
    bool found = mc__probe(sh, h, key, klen, &f, &section);
    if (found && f.s.b[MC__OFF_KL + f.slot] == MC__KL_OUT)
        found = !mc__expired(c, mc__cell_entry(mc__snap_cell(&f.s, f.slot)), mc__now(c));
    if (section && !held)
        mc__epoch_exit();
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

/* What a put stores in its cell. */
typedef struct mc__newcell {
    mc__entry *e; /* out of line, or NULL */
    uint8_t kl, vl;
    unsigned char bytes[MC__CELL];
    uint64_t weight;
} mc__newcell;

static bool mc__fits_inline(const mc_cache *c, const mc__put_args *a)
{
    size_t vlen = a->none ? 0 : a->vlen;
    return !a->owned && !a->out_of_line && !c->track && !c->wstamp && a->weight == 0 &&
           a->klen + vlen <= MC__INLINE_MAX;
}

/* A memoized store of the value already cached (shard lock held, slot i of *s at `cell`):
 * when the entry there is out of line and holds a's bytes, "no value" flag and weight w, it
 * stays: refreshed as a write would (recency, access time) and pinned for a->pinned. */
static bool mc__keep_identical(mc_cache *c, mc__shard *sh, mc__table *t, uint32_t cell, mc__snap *s,
                               const mc__put_args *a, uint64_t w, uint64_t now)
{
    unsigned i = cell % MC__SLOTS;
    if (s->b[MC__OFF_KL + i] != MC__KL_OUT)
        return false;
    mc__entry *e = mc__cell_entry(mc__snap_cell(s, i));
    bool none = (e->flags & MC__E_NONE) != 0;
    if (none != a->none || mc__entry_weight(e) != w)
        return false;
    if (!none && (e->vlen != a->vlen ||
                  (a->vlen && memcmp(mc__entry_value(e), a->value, a->vlen) != 0)))
        return false;
    uint8_t rec = s->b[MC__OFF_REC + i];
    if (c->policy == MC_POLICY_LRU) {
        uint8_t g = atomic_load_explicit(&sh->gen, memory_order_relaxed);
        mc__list_unlink(t, cell);
        mc__list_push(t, g & (MC__NGENS - 1), cell);
        mc__cell_set(t, cell, MC__OFF_REC, g);
        mc__gen_tick(sh, t);
    } else if ((rec & 3u) < 3) {
        mc__cell_set(t, cell, MC__OFF_REC, (uint8_t)(rec + 1)); /* as a hit would */
    }
    if (e->flags & MC__E_TTL)
        atomic_store_explicit(mc__entry_atime(e), now, memory_order_relaxed);
    if (e->flags & MC__E_WTIME)
        /* Stored again, as a write: its write age starts over and a claimed refresh is done
         * (a refresh that reloaded the same bytes must neither expire the entry nor stop
         * later refreshes). */
        atomic_store_explicit(mc__entry_wtime(e), now & ~MC__WTIME_CLAIM, memory_order_relaxed);
    if (a->pinned) {
        /* Pinned under the lock, as a new entry is. */
        atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
        *a->pinned = (mc_value *)e;
    }
    return true;
}

int mc__cache_put_ex(mc_cache *c, const mc__put_args *a)
{
    if (a->pinned)
        *a->pinned = NULL;
    if (a->kept)
        *a->kept = false;
    if (!c || (!a->key && a->klen) || (!a->value && a->vlen && !a->none) ||
        (a->flags & ~MC_PUT_IF_ABSENT))
        return MC_EINVAL;
    if (a->klen > MC_KEY_MAX || (!a->none && a->vlen > UINT32_MAX))
        return MC_E2BIG;
    const void *key = a->key;
    size_t klen = a->klen;
    uint64_t h = mc__hash(c, key, klen);
    mc__shard *sh = mc__shard_of(c, h);
    uint64_t now = mc__now(c);

    /* Built outside the lock: allocation and copying never stall other writers. */
    mc__newcell nc;
    memset(&nc, 0, sizeof nc);
    if (mc__fits_inline(c, a)) {
        size_t vlen = a->none ? 0 : a->vlen;
        nc.kl = (uint8_t)klen;
        nc.vl = (uint8_t)(vlen | (a->none ? MC__VL_NONE : 0));
        if (klen)
            memcpy(nc.bytes, key, klen);
        if (vlen)
            memcpy(nc.bytes + klen, a->value, vlen);
        nc.weight = klen + vlen;
    } else {
        nc.e = mc__entry_make(c->track, (uint32_t)h, a, now - (a->age_ns < now ? a->age_ns : now), c->wstamp);
        if (nc.e && a->restored && (nc.e->flags & MC__E_WTIME)) {
            /* A restored entry's write time: its saved write age back from now, or, when the
             * snapshot had none (written without write-age rules), due for refresh at once
             * (the restore refuses such entries under a write-age lifetime). */
            uint64_t back = a->has_write_age ? a->write_age_ns : c->w_refresh;
            atomic_store_explicit(mc__entry_wtime(nc.e), now > back ? now - back : 0, memory_order_relaxed);
        }
        if (!nc.e)
            return MC_ENOMEM;
        if (!atomic_load_explicit(&c->had_out_of_line, memory_order_relaxed))
            atomic_store_explicit(&c->had_out_of_line, true, memory_order_relaxed);
        nc.kl = MC__KL_OUT;
        uintptr_t p = (uintptr_t)nc.e;
        uint16_t k16 = (uint16_t)klen;
        uint32_t h32 = (uint32_t)h;
        memcpy(nc.bytes, &p, 8);
        memcpy(nc.bytes + 8, &k16, 2);
        memcpy(nc.bytes + 10, &h32, 4);
        nc.weight = mc__entry_weight(nc.e);
    }
    uint64_t w = nc.weight;
    mc__gone gone;
    mc__gone_init(&gone);
    int rc = 0;

again:
    mc__shard_lock(c, sh, now, &gone);
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
    mc__table *t = mc__shard_table(sh);
    int64_t pos = mc__table_find(t, h, key, klen);
    uint8_t gen = atomic_load_explicit(&sh->gen, memory_order_relaxed);
    if (pos >= 0) {
        uint32_t cell = (uint32_t)pos;
        unsigned i = cell % MC__SLOTS;
        mc__snap s;
        mc__table_cell(t, cell, &s);
        bool stale = s.b[MC__OFF_KL + i] == MC__KL_OUT &&
                     mc__expired(c, mc__cell_entry(mc__snap_cell(&s, i)), now);
        if ((a->flags & MC_PUT_IF_ABSENT) && !stale) {
            rc = MC_EEXIST;
            goto out;
        }
        if (a->keep_identical && !stale && mc__keep_identical(c, sh, t, cell, &s, a, w, now)) {
            if (a->kept)
                *a->kept = true;
            mc__lock_release(&sh->lock);
            if (nc.e)
                mc__entry_discard(nc.e); /* never published; an owned value stays with the caller */
            mc__gone_finish(c, &gone);
            return 0;
        }
        uint64_t old_w = mc__snap_weight(&s, i);
        /* Room for the change of weight, with this key out of the lists so that it cannot
         * be its own victim. */
        mc__list_unlink(t, cell);
        uint64_t cur = atomic_load_explicit(&sh->weight, memory_order_relaxed);
        bool roomy = true;
        if (w > old_w && cur - old_w + w > sh->max_weight) {
            /* The entry is counted but unlinked: exclude it from both dimensions. */
            mc__stat_add(&sh->weight, -(int64_t)old_w);
            mc__stat_add(&sh->count, -1);
            roomy = mc__shard_make_room(c, sh, 1, w, &gone);
            mc__stat_add(&sh->weight, (int64_t)old_w);
            mc__stat_add(&sh->count, 1);
            /* The removals may have moved this key's cell. */
            pos = mc__table_find(t, h, key, klen);
            cell = (uint32_t)pos;
            i = cell % MC__SLOTS;
            mc__table_cell(t, cell, &s);
        }
        uint8_t vl = s.b[MC__OFF_VL + i];
        uint8_t rec = c->policy == MC_POLICY_LRU ? gen : s.b[MC__OFF_REC + i];
        uint32_t list = c->policy == MC_POLICY_LRU ? (gen & (MC__NGENS - 1))
                                                   : ((vl & MC__VL_MAIN) ? MC__Q_MAIN : MC__Q_SMALL);
        if (!roomy || mc__gone_full(&gone)) {
            /* Flush the removal list and start again, the key back in its list. */
            mc__list_push(t, list, cell);
            mc__lock_release(&sh->lock);
            mc__gone_finish(c, &gone);
            goto again;
        }
        mc__gone_add(&gone, &s, i, stale ? MC_EVICT_TIME : MC_EVICT_REPLACED);
        mc__stat_add(&sh->evictions[stale ? MC_EVICT_TIME : MC_EVICT_REPLACED], 1);
        if (s.b[MC__OFF_KL + i] == MC__KL_OUT)
            mc__stat_add(&sh->memory, -(int64_t)mc__entry_footprint(mc__cell_entry(mc__snap_cell(&s, i))));
        /* One bucket version: readers see the old value or the new one, never a gap. */
        mc__table_store(t, cell, 0, 0, nc.kl, (uint8_t)(nc.vl | (vl & MC__VL_MAIN)), rec, nc.bytes);
        mc__list_push(t, list, cell);
        if (c->policy == MC_POLICY_S3FIFO && !(vl & MC__VL_MAIN))
            sh->policy.small_weight += w - old_w;
        mc__stat_add(&sh->weight, (int64_t)w - (int64_t)old_w);
    } else {
        /* Index room first: a failure must leave the cache as it was, evictions included. */
        size_t count = (size_t)atomic_load_explicit(&sh->count, memory_order_relaxed);
        if (t->live + 1 > mc__table_capacity(t) && count + 1 > (size_t)t->live) {
            rc = mc__shard_grow(c, sh, count + 1);
            if (rc)
                goto out;
            t = mc__shard_table(sh);
        }
        if (!mc__table_claim_fits(t, h)) {
            rc = MC_E2BIG; /* refused before any eviction: the cache is as it was */
            goto out;
        }
        if (!mc__shard_make_room(c, sh, 1, w, &gone)) {
            mc__lock_release(&sh->lock);
            mc__gone_finish(c, &gone);
            goto again;
        }
        gen = atomic_load_explicit(&sh->gen, memory_order_relaxed);
        uint8_t disp;
        uint32_t cell = mc__table_claim(t, h, &disp, c->seed);
        uint8_t vl = nc.vl, rec = 0;
        uint32_t list;
        if (c->policy == MC_POLICY_LRU) {
            rec = gen;
            list = gen & (MC__NGENS - 1);
        } else if (mc__policy_ghost_has(&sh->policy, (uint32_t)h) ||
                   mc__policy_fill_main(&sh->policy, mc__entry_bounded(sh) ? sh->max_entries : 0,
                                        sh->max_weight == UINT64_MAX ? 0 : sh->max_weight)) {
            vl |= MC__VL_MAIN;
            list = MC__Q_MAIN;
            sh->policy.main_count++;
        } else {
            list = MC__Q_SMALL;
            sh->policy.small_count++;
            sh->policy.small_weight += w;
        }
        mc__table_store(t, cell, mc__tag_of(h), disp, nc.kl, vl, rec, nc.bytes);
        mc__list_push(t, list, cell);
        mc__stat_add(&sh->count, 1);
        mc__stat_add(&sh->weight, (int64_t)w);
        if (!mc__entry_bounded(sh))
            mc__shard_update_mode(sh);
        mc__gen_tick(sh, t);
    }
    if (nc.e) {
        mc__stat_add(&sh->memory, (int64_t)mc__entry_footprint(nc.e));
        if (a->pinned) {
            /* Pinned before the lock is released: nothing can drop it in between. */
            atomic_fetch_add_explicit(&nc.e->refs, 1, memory_order_relaxed);
            *a->pinned = (mc_value *)nc.e;
        }
    }
out:
    mc__lock_release(&sh->lock);
    if (rc && nc.e)
        mc__entry_discard(nc.e);
    if (rc == 0 && !nc.e && a->pinned) {
        /* An inline entry is handed out as a detached copy of what was stored. */
        mc__put_args d = *a;
        d.out_of_line = true;
        *a->pinned = mc__value_detached(&d);
    }
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
    uint64_t h = mc__hash(c, key, klen);
    mc__shard *sh = mc__shard_of(c, h);
    uint64_t now = mc__now(c);
    mc__gone gone;
    mc__gone_init(&gone);
    int rc = MC_ENOENT;

    mc__shard_lock(c, sh, now, &gone);
    mc__table *t = mc__shard_table(sh);
    int64_t pos = mc__table_find(t, h, key, klen);
    if (pos >= 0 && !mc__gone_full(&gone)) {
        mc__shard_drop(c, sh, t, (uint32_t)pos, MC_EVICT_INVALIDATION, &gone, true, NULL);
        rc = 0;
    } else if (pos >= 0) {
        /* The expiry sweep filled the removal list: flush and remove after it. */
        mc__lock_release(&sh->lock);
        mc__gone_finish(c, &gone);
        return mc_cache_remove(c, key, klen);
    }
    mc__lock_release(&sh->lock);
    mc__gone_finish(c, &gone);
    return rc;
}

/* Remove, in every shard, the entries `match` accepts (all when match is NULL). */
static size_t mc__remove_where(mc_cache *c, mc__sweep_fn *match, const void *arg)
{
    size_t removed = 0;
    uint64_t now = mc__now(c);
    for (unsigned si = 0; si < c->nshards; si++) {
        mc__shard *sh = &c->shards[si];
        bool done = false;
        while (!done) {
            mc__gone gone;
            mc__gone_init(&gone);
            mc__shard_lock(c, sh, now, &gone);
            done = mc__shard_sweep(c, sh, match, arg, MC_EVICT_INVALIDATION, &gone, &removed);
            mc__lock_release(&sh->lock);
            mc__gone_finish(c, &gone);
        }
    }
    return removed;
}

struct mc__prefix {
    const void *bytes;
    size_t len;
};

static bool mc__match_prefix(const mc_cache *c, mc__snap *s, unsigned i, const void *arg)
{
    (void)c;
    const struct mc__prefix *p = arg;
    size_t klen;
    const unsigned char *key = mc__snap_key(s, i, &klen);
    return mc_key_has_prefix(key, klen, p->bytes, p->len);
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
    /* Inline entries are gone at once; out-of-line ones are freed after a grace period, on
     * liburcu's thread: waiting for it here would cost every clear about 10 ms. */
    mc__remove_where(c, NULL, NULL);
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
        bool done = false;
        bool first = true;
        while (!done) {
            mc__gone gone;
            mc__gone_init(&gone);
            mc__shard_lock(c, sh, now, &gone);
            if (first) {
                mc__shard_set_bounds(c, sh, i, max_entries, max_bytes);
                size_t before = mc__policy_bytes(&sh->policy);
                mc__policy_set_window(&sh->policy, mc__ghost_window(sh));
                mc__stat_add(&sh->memory, (int64_t)mc__policy_bytes(&sh->policy) - (int64_t)before);
                first = false;
            }
            done = mc__shard_make_room(c, sh, 0, 0, &gone);
            mc__lock_release(&sh->lock);
            mc__gone_finish(c, &gone);
        }
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
    for (unsigned si = 0; si < c->nshards && done < max; si++) {
        mc__shard *sh = &c->shards[si];
        mc__gone gone;
        mc__gone_init(&gone);
        size_t n = 0;
        mc__shard_lock(c, sh, now, &gone);
        mc__table *t = mc__shard_table(sh);
        /* List order only approximates access order, so recently read entries are stepped
         * over, within a scan budget that keeps the lock hold short. */
        size_t budget = quota * 4 + 64;
        for (uint32_t k = 0; k < MC__NLISTS && n < quota && done + n < max; k++) {
            /* Oldest lists first: for LRU, the generation after the current one. */
            uint32_t list = c->policy == MC_POLICY_LRU
                                ? (uint8_t)(atomic_load_explicit(&sh->gen, memory_order_relaxed) + 1 + k) &
                                      (MC__NGENS - 1)
                                : k;
            uint32_t cell = mc__list_oldest(t, list);
            while (cell != MC__NONE_CELL && n < quota && done + n < max && budget > 0 &&
                   !mc__gone_full(&gone)) {
                budget--;
                uint32_t newer = mc__list_newer(t, cell);
                mc__snap s;
                mc__table_cell(t, cell, &s);
                unsigned i = cell % MC__SLOTS;
                bool idle = true;
                if (min_idle_ns) {
                    mc__entry *e = mc__cell_entry(mc__snap_cell(&s, i)); /* tracked: out of line */
                    uint64_t at = atomic_load_explicit(mc__entry_atime(e), memory_order_relaxed);
                    idle = now > at && now - at >= min_idle_ns;
                }
                if (idle) {
                    mc__shard_drop(c, sh, t, cell, MC_EVICT_MEMORY, &gone, true, &newer);
                    n++;
                }
                cell = newer;
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
        bool done = false;
        while (!done) {
            mc__gone gone;
            mc__gone_init(&gone);
            mc__shard_lock(c, sh, now, &gone);
            done = mc__shard_expire(c, sh, now, true, &gone);
            mc__lock_release(&sh->lock);
            mc__gone_finish(c, &gone);
        }
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

unsigned mc__cache_shards(const mc_cache *c) { return c ? c->nshards : 0; }

uint64_t mc__cache_ttl(const mc_cache *c) { return c ? c->ttl : 0; }

unsigned mc__cache_shard_index(const mc_cache *c, const void *key, size_t klen)
{
    return (unsigned)((mc__hash(c, key, klen) >> 56) & c->shard_mask);
}

int mc__cache_visit_shard(mc_cache *c, unsigned shard, int (*visit)(void *ud, const mc__entry_view *e),
                          void *ud)
{
    if (!c || shard >= c->nshards || !visit)
        return MC_EINVAL;
    mc__shard *sh = &c->shards[shard];
    uint64_t now = mc__now(c);
    int rc = 0;
    /* The plain lock, not mc__shard_lock: a visit changes nothing, not even expiry. */
    mc__lock_acquire(&sh->lock);
    mc__table *t = mc__shard_table(sh);
    for (uint32_t b = 0; b < t->nbuckets && rc == 0; b++) {
        mc__snap s;
        mc__bucket_get(&t->buckets[b], &s);
        for (unsigned i = 0; i < MC__SLOTS && rc == 0; i++) {
            if (!s.b[MC__OFF_TAG + i])
                continue;
            mc__entry_view v;
            uint8_t kl = s.b[MC__OFF_KL + i], vl = s.b[MC__OFF_VL + i];
            unsigned char *cell = mc__snap_cell(&s, i);
            if (kl != MC__KL_OUT) {
                v = (mc__entry_view){.key = cell, .klen = kl, .value = cell + kl, .vlen = vl & MC__VL_LEN,
                                     .none = (vl & MC__VL_NONE) != 0, .weight = (uint64_t)kl + (vl & MC__VL_LEN)};
            } else {
                const mc__entry *e = mc__cell_entry(cell);
                if (mc__expired(c, e, now))
                    continue;
                v = (mc__entry_view){.key = mc__entry_key(e), .klen = e->klen, .value = mc__entry_value(e),
                                     .vlen = e->vlen, .none = (e->flags & MC__E_NONE) != 0,
                                     .owned = (e->flags & MC__E_OWNED) != 0, .weight = mc__entry_weight(e)};
                if (e->flags & MC__E_TTL) {
                    uint64_t at = atomic_load_explicit(mc__entry_atime(e), memory_order_relaxed);
                    v.idle_ns = now > at ? now - at : 0;
                }
                if (e->flags & MC__E_WTIME) {
                    uint64_t wt = atomic_load_explicit(mc__entry_wtime(e), memory_order_relaxed) & ~MC__WTIME_CLAIM;
                    v.has_write_age = true;
                    v.write_age_ns = now > wt ? now - wt : 0;
                }
            }
            rc = visit(ud, &v);
        }
    }
    mc__lock_release(&sh->lock);
    return rc;
}

/* ---------------------------------------------------------------- verification (tests) */

int mc__cache_verify(mc_cache *c, char *msg, size_t msglen)
{
#define MC__FAIL(...)                                                                              \
    do {                                                                                           \
        snprintf(msg, msglen, __VA_ARGS__);                                                        \
        free(seen);                                                                                \
        mc__lock_release(&sh->lock);                                                               \
        return -1;                                                                                 \
    } while (0)
    for (unsigned si = 0; si < c->nshards; si++) {
        mc__shard *sh = &c->shards[si];
        mc__lock_acquire(&sh->lock);
        mc__table *t = mc__shard_table(sh);
        unsigned char *seen = calloc(t->ncells, 1);
        if (!seen) {
            mc__lock_release(&sh->lock);
            continue;
        }
        size_t n = 0, small = 0, main = 0;
        uint64_t w = 0, small_w = 0;
        for (uint32_t list = 0; list < MC__NLISTS; list++) {
            uint32_t prev = t->ncells + list;
            for (uint32_t cell = mc__list_oldest(t, list); cell != MC__NONE_CELL;
                 prev = cell, cell = mc__list_newer(t, cell)) {
                if (cell >= t->ncells)
                    MC__FAIL("shard %u: list %u links to %u", si, list, cell);
                if (t->links[cell].prev != prev)
                    MC__FAIL("shard %u: list %u broken at %u", si, list, cell);
                if (seen[cell]++)
                    MC__FAIL("shard %u: cell %u listed twice", si, cell);
                mc__snap s;
                mc__table_cell(t, cell, &s);
                unsigned i = cell % MC__SLOTS;
                if (!s.b[MC__OFF_TAG + i])
                    MC__FAIL("shard %u: listed cell %u is empty", si, cell);
                n++;
                uint64_t cw = mc__snap_weight(&s, i);
                w += cw;
                size_t klen;
                const unsigned char *key = mc__snap_key(&s, i, &klen);
                if (s.b[MC__OFF_KL + i] == MC__KL_OUT &&
                    atomic_load_explicit(&mc__cell_entry(mc__snap_cell(&s, i))->refs, memory_order_relaxed) == 0)
                    MC__FAIL("shard %u: entry has no reference", si);
                uint64_t h = mc__hash(c, key, klen);
                if ((size_t)(mc__shard_of(c, h) - c->shards) != si)
                    MC__FAIL("shard %u: entry in the wrong shard", si);
                if (mc__table_find(t, h, key, klen) != (int64_t)cell)
                    MC__FAIL("shard %u: key not found at its cell (or stored twice)", si);
                if (c->policy == MC_POLICY_S3FIFO) {
                    bool in_main = (s.b[MC__OFF_VL + i] & MC__VL_MAIN) != 0;
                    if (in_main != (list == MC__Q_MAIN))
                        MC__FAIL("shard %u: queue flag disagrees with the list", si);
                    if (in_main) {
                        main++;
                    } else {
                        small++;
                        small_w += cw;
                    }
                }
            }
        }
        if (n != t->live)
            MC__FAIL("shard %u: %zu listed entries, %u indexed", si, n, t->live);
        int trc = mc__table_check(t, c->seed);
        if (trc != 0)
            MC__FAIL("shard %u: index inconsistent (%d)", si, trc);
        if (n != atomic_load_explicit(&sh->count, memory_order_relaxed))
            MC__FAIL("shard %u: count %zu, counter says %llu", si, n,
                     (unsigned long long)atomic_load_explicit(&sh->count, memory_order_relaxed));
        if (w != atomic_load_explicit(&sh->weight, memory_order_relaxed))
            MC__FAIL("shard %u: weight mismatch", si);
        if (c->policy == MC_POLICY_S3FIFO &&
            (small != sh->policy.small_count || main != sh->policy.main_count ||
             small_w != sh->policy.small_weight))
            MC__FAIL("shard %u: queue sizes disagree", si);
        if (n > sh->max_entries || w > sh->max_weight)
            MC__FAIL("shard %u: over its bounds (%zu entries, %llu weight)", si, n, (unsigned long long)w);
        free(seen);
        mc__lock_release(&sh->lock);
    }
    return 0;
#undef MC__FAIL
}

void mc__reclaim_now(void) { mc__epoch_barrier(); }
