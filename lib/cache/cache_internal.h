/* Internal layout of mc_cache and its shards, shared by cache.c and the white-box tests.
 * Nothing here is part of the public API. */
#ifndef MC_CACHE_INTERNAL_H
#define MC_CACHE_INTERNAL_H

#include <pthread.h>

#include "core/lock.h"

#include "cache/entry.h"
#include "cache/policy.h"
#include "cache/table.h"
#include "modcache/cache.h"

/* Recency records (LRU): per shard, MC__NRINGS rings picked by thread id, each of
 * MC__RING_SIZE 32-bit hashes; a reader asks for a drain once MC__RING_DRAIN_AT are pending. */
#define MC__NRINGS 8
#define MC__RING_SIZE 64
#define MC__RING_DRAIN_AT 32
/* Hit/miss counter stripes per cache, picked by thread id. */
#define MC__NSTRIPES 16

struct mc__ring {
    _Alignas(64) _Atomic uint32_t head; /* next slot to claim (readers) */
    _Atomic uint32_t tail;              /* next slot to apply (shard lock) */
    _Atomic uint32_t slots[MC__RING_SIZE];
};

typedef struct mc__shard {
    /* Read by every lookup, written only by index rebuilds and generation steps: kept on a
     * line of its own so that writers taking the lock do not evict it from readers' caches. */
    _Alignas(64) _Atomic(mc__table *) table;
    /* LRU recency generation, read by every hit, advanced (under the lock) once per
     * `gen_len` promotions and inserts: an entry stamped with the current generation is
     * already among the newest and its hit is not recorded, so hot entries are never
     * written. */
    _Atomic uint8_t gen;

    /* Writers' state, under the lock. The lock, the counters and the LRU queue's head share
     * one cache line, so a put from a thread that did not write this shard last misses on
     * one line, not four. */
    _Alignas(64) mc__lock lock;
    uint32_t gen_ticks;
    /* Written under the lock, read without it by stats. */
    _Atomic uint64_t count, weight, memory;
    mc__policy policy;   /* q[0] ends the line above */
    uint32_t gen_len;    /* 0: exact mode, every hit recorded */
    size_t max_entries;  /* SIZE_MAX = unbounded */
    uint64_t max_weight; /* UINT64_MAX = unbounded */
    _Atomic uint64_t evictions[MC_EVICT_NREASONS];

    /* One ring per thread stripe, each on its own lines. */
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

/* mc_cache_get without counting a hit or miss (second looks of the same request). */
int mc__cache_get_quiet(mc_cache *c, const void *key, size_t klen, mc_value **out);

/* The default shard count for these bounds (mc_cache_options.shards = 0). */
unsigned mc__auto_shards(size_t max_entries, size_t max_bytes);

/* Check every structural invariant (index vs queues vs counters, bounds, no duplicate key,
 * right shard). Takes each shard lock in turn. Returns 0, or -1 with a message. */
int mc__cache_verify(mc_cache *c, char *msg, size_t msglen);
/* Wait for a grace period and free what this thread retired. */
void mc__reclaim_now(void);

#endif
