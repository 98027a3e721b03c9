/* Internal layout of mc_cache and its shards, shared by cache.c, the memoized-function layer
 * and the white-box tests. Nothing here is part of the public API. */
#ifndef MC_CACHE_INTERNAL_H
#define MC_CACHE_INTERNAL_H

#include <pthread.h>

#include "core/lock.h"

#include "cache/cache_cached.h"
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
    /* Write-age rules (mc__cache_set_write_rules, before the first put): entries carry their
     * write time; a hit older than w_refresh hands out one refresh; an entry older than
     * w_life[none] is expired (0: never). `clocked`: lookups read the clock (track or these). */
    bool wstamp, clocked;
    uint64_t w_refresh, w_life[2];
    mc_clock_fn clock;
    void *clock_ud;
    mc_evict_fn on_evict;
    void *on_evict_ud;
    _Atomic size_t max_entries, max_bytes;
    pthread_mutex_t resize_lock;
    /* An out-of-line entry was ever stored: only then can mc_cache_destroy have anything to
     * wait for (entries retired to liburcu). Set once, by the first such put. */
    _Atomic bool had_out_of_line;
    struct mc__stripe stripes[MC__NSTRIPES];
};

/* Check every structural invariant (index vs lists vs counters, bounds, no duplicate key,
 * right shard). Takes each shard lock in turn. Returns 0, or -1 with a message. */
int mc__cache_verify(mc_cache *c, char *msg, size_t msglen);

#endif
