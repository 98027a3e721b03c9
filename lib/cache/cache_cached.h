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

/* The default shard count for these bounds (mc_cache_options.shards = 0). */
unsigned mc__auto_shards(size_t max_entries, size_t max_bytes);

/* Wait for a grace period and free what was retired. */
void mc__reclaim_now(void);

#endif
