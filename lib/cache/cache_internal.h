/* Internal layout of mc_cache and its shards, shared by cache.c and the white-box tests.
 * Nothing here is part of the public API. */
#ifndef MC_CACHE_INTERNAL_H
#define MC_CACHE_INTERNAL_H

#include <pthread.h>

#include "cache/entry.h"
#include "cache/policy.h"
#include "cache/table.h"
#include "modcache/cache.h"

/* Recency records (LRU): per shard, MC__NRINGS rings picked by thread id, each of
 * MC__RING_SIZE 32-bit hashes; a reader asks for a drain once MC__RING_DRAIN_AT are pending. */
#define MC__NRINGS 8
#define MC__RING_SIZE 32
#define MC__RING_DRAIN_AT 16
/* Hit/miss counter stripes per cache, picked by thread id. */
#define MC__NSTRIPES 16

struct mc__ring {
    _Alignas(64) _Atomic uint32_t head; /* next slot to claim (readers) */
    _Atomic uint32_t tail;              /* next slot to apply (shard lock) */
    _Atomic uint32_t slots[MC__RING_SIZE];
};

typedef struct mc__shard {
    pthread_mutex_t lock;
    _Atomic(mc__table *) table; /* replaced (by rebuilds) under the lock, read lock-free */
    mc__policy policy;          /* lock */
    size_t max_entries;         /* lock; SIZE_MAX = unbounded */
    uint64_t max_weight;        /* lock; UINT64_MAX = unbounded */
    /* Written under the lock, read without it by stats. */
    _Atomic uint64_t count, weight, memory;
    _Atomic uint64_t evictions[MC_EVICT_NREASONS];
    struct mc__ring rings[MC__NRINGS];
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
    mc_clock_fn clock;
    void *clock_ud;
    mc_evict_fn on_evict;
    void *on_evict_ud;
    _Atomic size_t max_entries, max_bytes;
    pthread_mutex_t resize_lock;
    struct mc__stripe stripes[MC__NSTRIPES];
};

/* Check every structural invariant (index vs queues vs counters, bounds, no duplicate key,
 * right shard). Takes each shard lock in turn. Returns 0, or -1 with a message. */
int mc__cache_verify(mc_cache *c, char *msg, size_t msglen);
/* Wait for a grace period and free what this thread retired. */
void mc__reclaim_now(void);

#endif
