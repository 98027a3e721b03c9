/* modcache/cache.h: mc_cache, a sharded concurrent cache of byte keys to byte values with
 * lock-free hits, bounded by entries and/or bytes, with expire-after-access TTL.
 *
 * Keys are encoded tuples (modcache/key.h) or any byte string up to MC_KEY_MAX bytes; the
 * full key bytes are stored and compared, the hash only picks the shard and slot.
 *
 * Thread safety: every function may be called from any thread concurrently, except
 * mc_cache_destroy, which must not overlap any other call on the same cache. Lookups never
 * take a lock; writers take one lock per shard. Values handed out are pinned handles
 * (mc_value) or copies; a handle stays valid after its entry is evicted, replaced or
 * removed, and even after the cache is destroyed, until mc_value_release.
 *
 * Storage: entries whose key and value fit in 14 bytes together live inside the index (one
 * cache line per hit, nothing allocated); the rest are allocated out of line.
 *
 * Memory reclamation: removed out-of-line entries are freed after a grace period of userspace
 * RCU (liburcu, memb flavour) once no handle pins them, on liburcu's reclamation thread; each
 * thread that looks at one registers with liburcu once and unregisters at thread exit. */
#ifndef MODCACHE_CACHE_H
#define MODCACHE_CACHE_H

#include <stdbool.h>
#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A cache (opaque), owned by the caller of mc_cache_create (mc_cache_destroy). */
typedef struct mc_cache mc_cache;
/* A pinned value. Read with mc_value_data/mc_value_size; release exactly once. */
typedef struct mc_value mc_value;

/* Eviction policy (mc_cache_options.policy). */
typedef enum mc_policy {
    /* Least recently used: exact in small shards, within two generations (1/8 of a
     * shard's bound) in large ones, where a hit stores one recency byte only when its entry
     * is older than that (docs/cache.md). The default. */
    MC_POLICY_LRU = 0,
    /* S3-FIFO (small FIFO, main FIFO with 2-bit frequency, ghost FIFO of evicted hashes):
     * scan-resistant, usually a lower miss ratio; a hit only sets bits on the entry. */
    MC_POLICY_S3FIFO = 1,
} mc_policy;

/* Why an entry left the cache, as told to the eviction listener. */
typedef enum mc_evict_reason {
    MC_EVICT_SIZE = 0,         /* entry or byte bound (including a resize) */
    MC_EVICT_MEMORY = 1,       /* global memory pressure (autotuning) */
    MC_EVICT_TIME = 2,         /* expired: not read for longer than the TTL */
    MC_EVICT_INVALIDATION = 3, /* mc_cache_remove, mc_cache_clear, or removal by predicate */
    MC_EVICT_REPLACED = 4,     /* a put stored a new value under the same key */
} mc_evict_reason;
/* Number of mc_evict_reason values (the length of mc_cache_stats.evictions). */
#define MC_EVICT_NREASONS 5

/* The short lower-case name of a reason ("size", "memory", "time", "invalidation", "replaced"). */
MC_API const char *mc_evict_reason_name(mc_evict_reason reason);

/* Eviction listener. Called after the entry left the cache, on the thread whose call made it
 * leave, outside every cache lock: it may call into the cache (even this one). key and value
 * are borrowed for the duration of the call. */
typedef void (*mc_evict_fn)(void *ud, const void *key, size_t klen, const void *value,
                            size_t vlen, mc_evict_reason reason);

/* Destructor for a value handed over with mc_cache_put_owned. */
typedef void (*mc_free_fn)(void *value);

/* Monotonic clock in nanoseconds. */
typedef uint64_t (*mc_clock_fn)(void *ud);

/* Options of mc_cache_create: mc_cache_options_init fills the defaults, then set a bound. */
typedef struct mc_cache_options {
    /* Bounds. At least one of max_entries and max_bytes must be non-zero; 0 means unbounded
     * in that dimension. Bounds are split evenly over shards. max_bytes counts entry weights:
     * key length + value length for copied values, or the weight given to put_owned. */
    size_t max_entries;
    size_t max_bytes;
    /* Expire-after-access: an entry not read or written for ttl_ns is a miss and is removed
     * (reason MC_EVICT_TIME). 0 disables expiry. */
    uint64_t ttl_ns;
    /* Eviction policy (default MC_POLICY_LRU). */
    mc_policy policy;
    /* Number of shards, a power of two up to 256; 0 picks one from max_entries (about one
     * shard per 16,384 entries, raised to four per hardware thread while shards keep 8192
     * entries, at most 256; or one per MiB of max_bytes without an entry bound, at most 64):
     * few shards keep a small cache's eviction order
     * close to a single exact LRU, many shards spread writers. */
    unsigned shards;
    /* Hash seed; 0 draws a random one. */
    uint64_t seed;
    /* Optional eviction listener and its user data. */
    mc_evict_fn on_evict;
    void *on_evict_ud;
    /* Optional clock for TTL and idle times (tests inject one); NULL uses CLOCK_MONOTONIC_COARSE,
     * read once per hit when access is tracked: expiry is exact to the kernel's tick (1-4 ms). */
    mc_clock_fn clock;
    void *clock_ud;
    /* Keep each entry's last access time even without a TTL (8 bytes per entry), so that
     * mc_cache_evict_idle can tell idle entries (memory autotuning). Implied by ttl_ns. */
    bool track_access;
} mc_cache_options;

/* Fill *opts with defaults: no bounds (set one), no TTL, LRU, auto shards, random seed. */
MC_API void mc_cache_options_init(mc_cache_options *opts);

/* Create a cache. *out receives the cache, owned by the caller (mc_cache_destroy).
 * Returns 0; MC_EINVAL for NULL pointers, both bounds zero, an unknown policy, or a shard
 * count that is not a power of two in 1..256; MC_ENOMEM. */
MC_API int mc_cache_create(const mc_cache_options *opts, mc_cache **out);

/* Destroy a cache: every entry is dropped (the eviction listener is not called) and its
 * memory freed before this returns (after an epoch grace period), except entries still pinned
 * by handles, which are freed after their release. Must not run concurrently with any other
 * call on this cache. NULL is a no-op. */
MC_API void mc_cache_destroy(mc_cache *cache);

/* Look up `key` and return a pinned handle in *out. Returns 0; MC_ENOENT on a miss (or an
 * expired entry); MC_EINVAL for NULL pointers or klen > MC_KEY_MAX; MC_ENOMEM if an entry
 * stored in the index could not be copied into a handle. Lock-free. A pinned get does one
 * atomic increment on an out-of-line entry, and allocates a detached copy of an entry stored
 * in the index; mc_cache_get_copy does neither. */
MC_API int mc_cache_get(mc_cache *cache, const void *key, size_t klen, mc_value **out);

/* Look up `key` and copy its value into buf (capacity cap), storing the value's size in
 * *vlen. Returns 0; MC_ENOENT on a miss; MC_ERANGE if cap < size (nothing copied, *vlen set,
 * counted as a hit); MC_EINVAL for bad arguments (buf may be NULL when cap is 0). Lock-free,
 * and writes no shared memory on a hit except the policy's recency record. */
MC_API int mc_cache_get_copy(mc_cache *cache, const void *key, size_t klen, void *buf,
                             size_t cap, size_t *vlen);

/* Read sections, for borrowed values and for lookups in bulk. Between mc_read_begin and
 * mc_read_end on the same thread, values borrowed with mc_cache_get_borrow (or
 * mc_cached_call_borrow) stay valid however their entries leave the cache meanwhile (evicted,
 * replaced, removed, cleared), and every lookup skips the read section it would otherwise
 * enter and leave on its own (cheaper for many lookups). Sections nest; only the outermost
 * mc_read_end releases what they borrowed (an mc_read_end without a begin does nothing).
 * A section delays the reclamation of every removed entry in the process while it lasts, so
 * keep it short: never block in one, and never call mc_cache_destroy, mc_cached_destroy or
 * a loader-running call that may wait long (a borrowed call's miss) where that matters.
 * Inside a section, mc_cache_destroy frees the cache's removed entries only after the
 * section ends. Costs plain stores (liburcu's memb flavour). */
MC_API void mc_read_begin(void);
MC_API void mc_read_end(void);

/* Look up `key` and borrow its value: *data points at its *vlen bytes, valid until the
 * calling thread's outermost mc_read_end, and writes nothing (no pin, no copy) for
 * out-of-line entries; an entry stored in the index has its few bytes copied into the
 * section's scratch memory. Only inside a read section. Returns 0; MC_ENOENT on a miss or
 * an expired entry; MC_EINVAL for NULL pointers, klen > MC_KEY_MAX or no read section;
 * MC_ENOMEM if scratch memory could not be had. The bytes must not be written. */
MC_API int mc_cache_get_borrow(mc_cache *cache, const void *key, size_t klen, const void **data,
                               size_t *vlen);

/* True if `key` is present and not expired. Does not count as a hit or a miss, does not touch
 * recency. */
MC_API bool mc_cache_contains(mc_cache *cache, const void *key, size_t klen);

/* The bytes of a pinned value; valid until mc_value_release. Never NULL (a zero-length value
 * gives a pointer to zero readable bytes). */
MC_API const void *mc_value_data(const mc_value *value);
MC_API size_t mc_value_size(const mc_value *value);
/* True for a cached "no value" (a memoized function's loader found nothing); its data is
 * empty. Values stored with mc_cache_put* are never "no value". */
MC_API bool mc_value_is_none(const mc_value *value);
/* The key the value was stored under (borrowed, valid until release). */
MC_API const void *mc_value_key(const mc_value *value, size_t *klen);
/* Add a pin to an already pinned value (for handing it to another owner). */
MC_API void mc_value_retain(mc_value *value);
/* Drop a pin. The value's memory is reclaimed once it is out of the cache and unpinned.
 * NULL is a no-op. Thread-safe; may be called after the cache was destroyed. */
MC_API void mc_value_release(mc_value *value);

/* Store a copy of value (vlen bytes; value may be NULL when vlen is 0) under a copy of key,
 * replacing any previous value (the listener sees MC_EVICT_REPLACED). May evict entries to
 * respect the bounds. Returns 0; MC_EINVAL for bad arguments; MC_E2BIG if klen > MC_KEY_MAX,
 * the entry's weight exceeds one shard's share of max_bytes, the key's shard has no room at
 * all (a max_entries smaller than the shard count), or 254 entries already crowd the index
 * near the key's hash (only a flood of keys crafted against a known seed does that; a seed of
 * 0 draws a secret one) (cache unchanged); MC_ENOMEM (cache
 * unchanged). The key's shard is chosen by hash: a cache holds up to max_entries in total, each
 * shard up to its even share. */
MC_API int mc_cache_put(mc_cache *cache, const void *key, size_t klen, const void *value,
                        size_t vlen);

/* As mc_cache_put, but only when `key` is absent (or expired): returns MC_EEXIST and leaves
 * the present value in place otherwise. */
MC_API int mc_cache_put_if_absent(mc_cache *cache, const void *key, size_t klen,
                                  const void *value, size_t vlen);

/* Flags for mc_cache_put_owned. */
#define MC_PUT_IF_ABSENT 1u

/* Hand a value over instead of copying it: on success the cache owns `value` and calls
 * free_fn(value) (if not NULL) once it is out of the cache and unpinned, possibly on another
 * thread and after mc_cache_destroy. `weight` counts toward max_bytes (0 means klen + vlen).
 * On any error, ownership stays with the caller and nothing was changed. flags: 0 or
 * MC_PUT_IF_ABSENT. Returns as mc_cache_put / mc_cache_put_if_absent. */
MC_API int mc_cache_put_owned(mc_cache *cache, const void *key, size_t klen, void *value,
                              size_t vlen, mc_free_fn free_fn, size_t weight, unsigned flags);

/* Remove `key` (listener reason MC_EVICT_INVALIDATION). Returns 0, or MC_ENOENT if absent. */
MC_API int mc_cache_remove(mc_cache *cache, const void *key, size_t klen);

/* Remove every entry whose key starts with the `plen` bytes of `prefix` (an encoded tuple
 * prefix, see mc_key_prefix_len). Visits every entry: O(size). Stores the number removed in
 * *removed if not NULL. Returns 0 or MC_EINVAL. */
MC_API int mc_cache_remove_prefix(mc_cache *cache, const void *prefix, size_t plen,
                                  size_t *removed);

/* Remove every entry (listener reason MC_EVICT_INVALIDATION). Entries stored in the index are
 * gone when this returns; out-of-line entries (long keys or values, owned values) are freed
 * after a grace period on the library's reclamation thread, and pinned ones after their
 * release. Does not wait for that: mc_cache_destroy does. */
MC_API void mc_cache_clear(mc_cache *cache);

/* Change the bounds at run time (same rules as at create). Entries over the new bounds are
 * evicted before the call returns (reason MC_EVICT_SIZE). Returns 0 or MC_EINVAL. */
MC_API int mc_cache_resize(mc_cache *cache, size_t max_entries, size_t max_bytes);

/* Evict up to `max` entries not read for at least min_idle_ns (reason MC_EVICT_MEMORY),
 * from the old end of each shard's queues (recently read entries are stepped over, within a
 * bounded scan per shard), spread over the shards; *evicted (if not NULL) gets the count.
 * Needs access times (ttl_ns or track_access) unless min_idle_ns is 0: MC_ENOTSUP otherwise.
 * Returns 0, MC_EINVAL or MC_ENOTSUP. Memory autotuning calls it across caches. */
MC_API int mc_cache_evict_idle(mc_cache *cache, uint64_t min_idle_ns, size_t max, size_t *evicted);

/* Apply pending recency records and remove expired entries in every shard now, instead of
 * at the next write. Hosts call it from a timer when a cache may sit idle. */
MC_API void mc_cache_cleanup(mc_cache *cache);

/* What mc_cache_stats_get reports: counters since creation, sizes and bounds now. */
typedef struct mc_cache_stats {
    uint64_t hits;
    uint64_t misses;
    uint64_t evictions[MC_EVICT_NREASONS]; /* by mc_evict_reason */
    uint64_t entries;      /* entries in the cache now */
    uint64_t weight;       /* sum of entry weights now (what max_bytes bounds) */
    uint64_t memory;       /* bytes allocated for entries, index and policy state now */
    uint64_t max_entries;  /* current bounds (0 = none) */
    uint64_t max_bytes;
} mc_cache_stats;

/* Snapshot of the counters. Counters are striped per thread and per shard and summed here,
 * so a snapshot taken during writes is not atomic across shards. */
MC_API void mc_cache_stats_get(mc_cache *cache, mc_cache_stats *out);

/* Number of entries now (the sum over shards). */
MC_API size_t mc_cache_size(mc_cache *cache);

/* The cache's hash seed (to hash keys the same way it does). */
MC_API uint64_t mc_cache_seed(const mc_cache *cache);

#ifdef __cplusplus
}
#endif

#endif
