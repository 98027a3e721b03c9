/* The cache layer's narrow internal interface for the memoized-function layer: puts with
 * every option, detached values, quiet lookups, default shard counts, reclamation. The only
 * header of lib/cache/ the memoized-function layer sees. */
#ifndef MC_CACHE_CACHED_H
#define MC_CACHE_CACHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "modcache/cache.h"

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
    /* How long ago the entry was last read or written (a restored snapshot's saved age): its
     * access time is set that far back, so TTL and idle eviction count from then. 0: now. */
    uint64_t age_ns;
    /* Restored from a snapshot: the write time is set write_age_ns back when has_write_age
     * (the entry was saved with one), else the entry is due for refresh at its first hit. */
    bool restored, has_write_age;
    uint64_t write_age_ns;
    /* Memoized stores: when the key holds an unexpired out-of-line entry with the same bytes,
     * the same "no value" flag and the same weight, keep that entry (no replacement, no
     * listener call, its recency and access time refreshed as by a write) and pin it instead;
     * *kept (if not NULL) says so. An owned value then stays with the caller. */
    bool keep_identical;
    bool *kept;
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

/* One live entry as mc__cache_visit_shard shows it: borrowed for the visit's duration. */
typedef struct mc__entry_view {
    const void *key;
    size_t klen;
    const void *value; /* vlen bytes (nothing for "no value") */
    size_t vlen;
    bool none;         /* a cached "no value" */
    bool owned;        /* a value handed over (mc_cache_put_owned, mc_load_set_owned) */
    uint64_t weight;   /* what max_bytes counts */
    uint64_t idle_ns;  /* since its last read or write (0 when the cache keeps no access times) */
    bool has_write_age; /* the cache keeps write times (write-age rules): write_age_ns is set */
    uint64_t write_age_ns; /* since it was stored */
} mc__entry_view;

/* Visit every live (unexpired) entry of shard `shard` (< mc__cache_shards) under its lock, in
 * index order; a non-zero return of visit stops and is returned. visit must not call into
 * this cache and should be quick (it holds up the shard's writers, never its readers). */
int mc__cache_visit_shard(mc_cache *c, unsigned shard, int (*visit)(void *ud, const mc__entry_view *e),
                          void *ud);
unsigned mc__cache_shards(const mc_cache *c);
/* The shard (< mc__cache_shards) that holds `key`: puts of keys of different shards never
 * wait for each other (a restore spreads its puts over threads by shard). */
unsigned mc__cache_shard_index(const mc_cache *c, const void *key, size_t klen);
/* The cache's expire-after-access TTL (0: none). */
uint64_t mc__cache_ttl(const mc_cache *c);
/* Write-age rules (memoized functions' refresh_after, expire_after_write and "no value"
 * lifetime; 0 each: off). Entries stored from now on carry their write time; call once,
 * right after mc_cache_create and before any put. Lookups then tell, in *age:
 *   MC__AGE_REFRESH: a hit past refresh_ns whose refresh this caller claimed (one per entry:
 *                    the caller reloads it; mc__value_refresh_unclaim if that fails);
 *   MC__AGE_EXPIRED: a miss because the entry was past its lifetime (expire_ns, or for
 *                    "no value" the shorter of none_ns and expire_ns).
 * Lookups read no clock of their own for this: the one they read for access times. */
enum { MC__AGE_REFRESH = 1, MC__AGE_EXPIRED = 2 };
int mc__cache_set_write_rules(mc_cache *c, uint64_t refresh_ns, uint64_t expire_ns, uint64_t none_ns);
/* mc_cache_get, mc__cache_get_copy_ex and mc__cache_get_borrow_ex, telling *age. */
int mc__cache_get_aged(mc_cache *c, const void *key, size_t klen, mc_value **out, unsigned *age);
int mc__cache_get_copy_aged(mc_cache *c, const void *key, size_t klen, void *buf, size_t cap,
                            size_t *vlen, bool *none, unsigned *age);
int mc__cache_get_borrow_aged(mc_cache *c, const void *key, size_t klen, const void **data,
                              size_t *vlen, bool *none, unsigned *age);
/* Give back a refresh claim (a failed reload), so that a later hit tries again. */
void mc__value_refresh_unclaim(mc_value *v);
/* The cache's clock now (what write times are measured with). */
uint64_t mc__cache_now(mc_cache *c);

/* The default shard count for these bounds (mc_cache_options.shards = 0). */
unsigned mc__auto_shards(size_t max_entries, size_t max_bytes);

/* Wait for a grace period and free what was retired. */
void mc__reclaim_now(void);

#endif
