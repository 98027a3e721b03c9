/* Internal layout of mc_cache and its shards, shared by cache.c, the memoized-function layer
 * and the white-box tests. Nothing here is part of the public API. */
#ifndef MC_CACHE_INTERNAL_H
#define MC_CACHE_INTERNAL_H

#include <pthread.h>

#include "core/lock.h"

#include "cache/entry.h"
#include "cache/policy.h"
#include "cache/table.h"
#include "modcache/cache.h"

/* Hit/miss counter stripes per cache, picked by thread id: a thread's own line. */
#define MC__NSTRIPES 16

typedef struct mc__shard {
    /* Read by every lookup, written only by table swaps, generation steps and mode changes:
     * a line of its own, so that writers taking the lock do not evict it from readers. */
    _Alignas(64) _Atomic(mc__table *) table;
    /* LRU generation: a hit whose stamp is two or more generations old stores this one. */
    _Atomic uint8_t gen;
    /* Small shards record every hit exactly, under a try-lock (see cache.c). */
    _Atomic uint8_t exact;

    /* Readers' restamps, added in batches of MC__RESTAMP_BATCH by the thread that made them
     * (its own line: readers never write the writers' line below). */
    _Alignas(64) _Atomic uint64_t restamps;

    /* Writers' state, under the lock: the lock, the counters and the policy share lines. */
    _Alignas(64) mc__lock lock;
    _Atomic uint64_t count, weight, memory; /* written under the lock, read by stats */
    size_t max_entries;  /* SIZE_MAX = unbounded */
    uint64_t max_weight; /* UINT64_MAX = unbounded */
    mc__policy policy;
    _Atomic uint64_t evictions[MC_EVICT_NREASONS];
} mc__shard;

struct mc__stripe {
    _Alignas(64) _Atomic uint64_t hits;
    _Atomic uint64_t misses;
};

struct mc_cache {
    mc__shard *shards;
    unsigned nshards, shard_mask;
    uint64_t seed;
    mc_policy policy;
    uint64_t ttl, atime_step;
    bool track; /* entries carry an access time (TTL or track_access) */
    mc_clock_fn clock;
    void *clock_ud;
    mc_evict_fn on_evict;
    void *on_evict_ud;
    _Atomic size_t max_entries, max_bytes;
    pthread_mutex_t resize_lock;
    struct mc__stripe stripes[MC__NSTRIPES];
};

/* A put with every option: the public puts, and memoized loads (cached layer). */
typedef struct mc__put_args {
    const void *key;
    size_t klen;
    const void *value; /* copied, or handed over when `owned` */
    size_t vlen;
    mc_free_fn free_fn;
    bool owned;
    bool none;       /* store "no value" (value ignored) */
    bool out_of_line; /* store as an entry even if it fits a cell (stable mc_value identity) */
    uint64_t weight; /* 0: key + value length */
    unsigned flags;  /* MC_PUT_IF_ABSENT */
    /* Checked under the shard lock just before storing: false cancels (MC_ECANCELED). */
    bool (*guard)(void *ud);
    void *guard_ud;
    /* Receives a pin on the stored entry (NULL on failure), if not NULL. */
    mc_value **pinned;
} mc__put_args;

int mc__cache_put_ex(mc_cache *c, const mc__put_args *a);
/* A value outside any cache (a load result that is not stored), pinned once; NULL on failure. */
mc_value *mc__value_detached(const mc__put_args *a);

/* mc_cache_get_copy that also tells a cached "no value" (*none; nothing copied, *vlen 0). */
int mc__cache_get_copy_ex(mc_cache *c, const void *key, size_t klen, void *buf, size_t cap,
                          size_t *vlen, bool *none);

/* mc_cache_get_borrow that also tells a cached "no value" (*none; *vlen 0). */
int mc__cache_get_borrow_ex(mc_cache *c, const void *key, size_t klen, const void **data,
                            size_t *vlen, bool *none);

/* mc_cache_get without counting a hit or miss (second looks of the same request). */
int mc__cache_get_quiet(mc_cache *c, const void *key, size_t klen, mc_value **out);

/* The default shard count for these bounds (mc_cache_options.shards = 0). */
unsigned mc__auto_shards(size_t max_entries, size_t max_bytes);

/* Check every structural invariant (index vs lists vs counters, bounds, no duplicate key,
 * right shard). Takes each shard lock in turn. Returns 0, or -1 with a message. */
int mc__cache_verify(mc_cache *c, char *msg, size_t msglen);
/* Wait for a grace period and free what was retired. */
void mc__reclaim_now(void);

#endif
