/* modcache/cached.h: memoized functions (the seed's `cached()`): a loader behind an mc_cache,
 * with single-flight loads, batch lookups, invalidation that beats in-flight loads, and
 * invalidation callbacks and dependencies so that one cache's entries can depend on another's
 * (the contract is stated once, under "invalidation callbacks" below).
 *
 * A cached function is called with a tuple of arguments (modcache/key.h). The first
 * `num_args` of them, minus any listed in `uncached_args`, form the key; all of them reach the
 * loader. Results are values owned by the cache and handed out pinned (mc_value, released
 * with mc_value_release). A loader may also produce "no value" (mc_value_is_none), which is
 * cached like a value. Errors are never cached.
 *
 * Thread safety: every function may be called from any thread concurrently, except
 * mc_cached_destroy (no other call on the function may be running or follow). Loaders run
 * outside every lock and epoch section, on the thread of the first caller that missed (or
 * wherever an asynchronous loader completes); for a function with a load timeout, and for
 * refresh reloads, on a thread of the load pool (see "The load pool" below).
 *
 * The load pool: a fixed set of worker threads and one timer thread run timed loads, refresh
 * reloads and async deadlines; no thread is created per load or per function. A function
 * created under a registry uses the registry's pool (mc_cache_config.load_pool_threads
 * workers, default 4, started on first use); one created without a registry uses a single
 * process-wide pool of 4 workers, started on first use and kept until the process exits
 * (a function alone has no owner to size or stop a pool of its own, and a pool per function
 * would be the thread per function this avoids). Loads queue when every worker is busy:
 * their callers' timeouts still count from the start of each call, so a saturated pool shows
 * as MC_ETIMEDOUT rather than as a hang; size the pool for the loads that may stall at once.
 *
 * Refresh and write age: with refresh_after_ns, an entry carries its write time (8 bytes)
 * and a hit on one older than refresh_after_ns returns the old value at once; the first such
 * hit (one per entry) starts a reload on the pool, or leaves it to a load of that key already
 * running (single flight: calls that miss meanwhile join the reload). The reload replaces the
 * entry when it succeeds, unless an invalidation of the key came after it started (then it is
 * dropped, as any invalidated load); when it fails, or its result cannot be stored (heavier
 * than the bound), the old value stays and is served, the failure is counted
 * (mc_cached_stats.refresh_errors) and the next hit starts another reload. A function with
 * only a batch loader reloads through it, one key per batch.
 * With expire_after_write_ns, an entry older than that is never served: calls load as on a
 * miss (counted once per entry in mc_cached_stats.expiries). none_ttl_ns gives "no value"
 * results a shorter lifetime. Ages are measured with the cache's clock (the coarse monotonic
 * clock, or opts.clock), the one a hit reads anyway: a hit reads no clock of its own. Keep
 * refresh_after_ns below expire_after_write_ns, or entries expire before they refresh. */
#ifndef MODCACHE_CACHED_H
#define MODCACHE_CACHED_H

#include "cache.h"
#include "key.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A memoized function (opaque), owned by the caller of mc_cached_create (mc_cached_destroy). */
typedef struct mc_cached mc_cached;
/* One in-flight load (or a batch of them): what a loader fills in. */
typedef struct mc_load mc_load;
/* Memoized functions by name, with the cache configuration they are created under. */
typedef struct mc_registry mc_registry;
/* The cache configuration a registry applies (the seed's `caches:` block), defined below. */
typedef struct mc_cache_config mc_cache_config;

/* A loader returns this when it will finish later with mc_load_complete. */
#define MC_LOAD_PENDING 1

/* Load one key. `args` (all the call's arguments, including those outside the key) are owned
 * by the load and stay valid until it completes. Set the result with one of mc_load_set_*
 * and return 0; or return a negative MC_E* code (or any negative value) for an error, which
 * every waiter receives and which is not cached; or return MC_LOAD_PENDING and call
 * mc_load_complete later, from any thread. Returning 0 without setting a result stores
 * "no value". */
typedef int (*mc_loader_fn)(void *self, const mc_arg *args, size_t nargs, mc_load *load);

/* Load several keys in one call (the seed's cachedList). keys holds nkeys tuples of nargs
 * arguments each, flattened. Set each found key's result on mc_load_item(load, i); keys left
 * unset are cached as "no value". An error fails every key of this batch (nothing stored).
 * MC_LOAD_PENDING works as for single loads (complete the batch, not the items). */
typedef int (*mc_batch_loader_fn)(void *self, const mc_arg *keys, size_t nkeys, size_t nargs,
                                  mc_load *load);

/* Result setters (call at most one per load or item; a second call replaces the first).
 * Return 0, MC_EINVAL (load NULL, or data NULL with len > 0), MC_ENOMEM or MC_E2BIG. */
MC_API int mc_load_set_copy(mc_load *load, const void *data, size_t len);
/* Hand `data` over: the cache calls free_fn(data) once it is no longer used, even if the
 * result is never stored (an invalidated load) and even on error returns of this function. */
MC_API int mc_load_set_owned(mc_load *load, void *data, size_t len, mc_free_fn free_fn);
/* Set "no value": cached like a value, seen by callers as mc_value_is_none. */
MC_API int mc_load_set_none(mc_load *load);
/* For `iterable` functions: how many elements the result holds (its weight; default 1). */
MC_API void mc_load_set_weight(mc_load *load, uint64_t elements);
/* The i-th key of a batch load; NULL if i is out of range or the load is not a batch. */
MC_API mc_load *mc_load_item(mc_load *load, size_t i);
/* Finish a load whose loader returned MC_LOAD_PENDING: rc 0 (result set, or "no value") or a
 * negative error. Exactly once. Any thread, but not from inside the loader call itself. */
MC_API void mc_load_complete(mc_load *load, int rc);

/* Options of mc_cached_create (mc_cached_options_init, or MC_CACHED_OPTS in C). */
typedef struct mc_cached_options {
    /* Unique name, module-qualified ("example_dept.get_department_for_user"); copied.
     * Required when registering; NULL is allowed for an unregistered function. */
    const char *name;
    /* Entries before the cache factor is applied (the seed's max_entries). Required, >= 1.
     * For `iterable` functions this bounds the total element count instead. */
    size_t max_entries;
    /* Arguments forming the key: the first num_args of a call's arguments (0 = all).
     * The rest reach the loader only (the seed's num_args). */
    size_t num_args;
    /* Indices (< num_args) of arguments left out of the key (the seed's uncached_args). */
    const size_t *uncached_args;
    size_t n_uncached_args;
    /* Keys may be invalidated by prefix (mc_cached_invalidate_prefix) (the seed's tree). */
    bool tree;
    /* An entry weighs its element count (mc_load_set_weight) (the seed's iterable). */
    bool iterable;
    /* true: entries are exempt from TTL expiry and memory autotuning (the seed's
     * prune_unread_entries=False) and leave only by size, invalidation or replacement.
     * Default false. */
    bool keep_unread_entries;
    /* Eviction policy of the function's cache (default MC_POLICY_LRU). */
    mc_policy policy;
    /* Optional batch loader, for mc_cached_call_many. */
    mc_batch_loader_fn batch_loader;
    /* Optional: create under this registry (its cache config: factor, TTL, autotuning) and
     * register the function by name there. */
    mc_registry *registry;
    /* Optional clock for TTL (tests). */
    mc_clock_fn clock;
    void *clock_ud;
    /* How long a caller waits for a load before giving up with MC_ETIMEDOUT (see "Load
     * timeouts" below). 0: the registry's load_timeout_ns when created under a registry, no
     * timeout otherwise; MC_TIMEOUT_NEVER: no timeout, whatever the registry says. */
    uint64_t load_timeout_ns;
    /* Entries are written to snapshots and restored from them (warm restarts, see
     * modcache/snapshot.h): copied values and "no value" entries only, since a value handed
     * over (mc_load_set_owned) is a pointer that means nothing in another process; those are
     * left out. Only for functions whose values stay meaningful across processes, and whose
     * invalidations all go through the registry (so that the stream can replay them).
     * With write-age rules (refresh_after_ns, expire_after_write_ns, none_ttl_ns) entries keep
     * their write age across the restart; entries saved without one (the function had no such
     * rule then) are not restored under a write-age lifetime, and are refreshed at their first
     * hit under refresh_after_ns. A function whose loads record dependencies on other
     * functions (mc_load_call, mc_load_depends_on) writes no entries: the records that would
     * invalidate them do not survive the process. Default false. */
    bool persist;
    /* Refresh-ahead (see "Refresh and write age" below): a hit on an entry stored longer ago
     * than this returns it at once and starts one background reload on the load pool.
     * 0: off. A registry's per-function setting (mc_cache_config.timings) replaces it. */
    uint64_t refresh_after_ns;
    /* An entry stored longer ago than this is never served: the call loads (blocking), as on
     * a miss. 0: no limit (entries still leave by size, TTL or invalidation). */
    uint64_t expire_after_write_ns;
    /* The lifetime of a "no value" result (mc_load_set_none), when shorter than
     * expire_after_write_ns: a missing row is looked up again sooner. 0: as other entries. */
    uint64_t none_ttl_ns;
} mc_cached_options;

/* A load_timeout_ns meaning "wait as long as the load takes". */
#define MC_TIMEOUT_NEVER UINT64_MAX

/* Fill *opts with defaults: every field zero (then set name and max_entries). */
MC_API void mc_cached_options_init(mc_cached_options *opts);

#ifndef __cplusplus
/* One-line declarations for C module code:
 *   static mc_cached *dept;
 *   mc_cached_create(&MC_CACHED_OPTS("example_dept.get_department_for_user", 10000),
 *                    load_department, db, &dept);
 *   mc_value *v;
 *   int rc = MC_CACHED_CALL(dept, &v, MC_ARG_S(user_id));
 * Unnamed options keep their zero defaults. */
#define MC_CACHED_OPTS(name_, max_entries_, ...)                                                   \
    ((mc_cached_options){.name = (name_), .max_entries = (max_entries_), __VA_ARGS__})
#define MC_CACHED_CALL(fn, out, ...)                                                              \
    mc_cached_call((fn), (const mc_arg[]){__VA_ARGS__},                                            \
                   sizeof((const mc_arg[]){__VA_ARGS__}) / sizeof(mc_arg), (out))
#endif

/* Create a memoized function over `loader` (which may be NULL when only batch_loader is set)
 * with user data `self`. *out is owned by the caller. Returns 0; MC_EINVAL (bad options:
 * no loader of any kind, max_entries 0, an uncached index >= num_args, a name too long);
 * MC_EEXIST (the registry already has this name); MC_ENOMEM. */
MC_API int mc_cached_create(const mc_cached_options *opts, mc_loader_fn loader, void *self,
                            mc_cached **out);

/* Unregister (if registered) and destroy. No call on fn may be running; loads must have
 * completed, except loads on the load pool (timed loads whose callers timed out, refresh
 * reloads): those still queued end with MC_ECANCELED without running, and destroy waits for
 * the loaders already running to return. Invalidation callbacks still attached run now
 * (the entries are going), so a function other functions depend on is destroyed before them;
 * dependencies of its own entries on other functions (mc_load_call) stop reaching it (destroy
 * waits for an invalidation they started to finish). Values handed out stay valid until
 * released. NULL is a no-op. */
MC_API void mc_cached_destroy(mc_cached *fn);

/* Call the function: a hit returns the cached value pinned; a miss runs the loader (or joins
 * the load already running for this key) and returns its result. *out must be released.
 * Returns 0; the loader's error; MC_ETIMEDOUT (the load ran past the function's load timeout);
 * MC_ENOMEM; MC_EINVAL (bad arguments, nargs too small for the key, a key over MC_KEY_MAX:
 * MC_E2BIG). Blocks while a load runs, up to the load timeout if there is one.
 *
 * Load timeouts (load_timeout_ns): a blocking caller waits at most that long, counted from
 * the start of its call, and then returns MC_ETIMEDOUT without a value; this holds for the
 * caller that started the load too, because loads of a function with a timeout run on the
 * load pool rather than on the caller's thread (if the pool cannot take it, the load runs on
 * the caller's thread and that caller can only time out once the loader returned). An
 * asynchronous caller's done callback gets MC_ETIMEDOUT at its deadline, on the pool's timer
 * thread.
 * The load itself is not cancelled: when it finishes, its result is stored unless its key was
 * invalidated since it started (then it is dropped, as for any invalidated load), and the
 * callers still waiting get it. Calls made after a timeout while the load still runs join it,
 * each with a full timeout of its own, so a stalled backend sees one load per key rather than
 * one per retry; after an invalidation of the key they start a fresh load instead. Timeouts
 * are counted in mc_cached_stats.timeouts. */
MC_API int mc_cached_call(mc_cached *fn, const mc_arg *args, size_t nargs, mc_value **out);

/* mc_cached_call, copying the result into buf (capacity cap) instead of handing out a
 * pinned value, for results that are small or copied anyway. A hit takes no lock, writes no
 * reference count and no shared line (the fastest call: see docs/cache.md); a miss loads as
 * mc_cached_call does (single flight, timeouts) and copies the result. *vlen gets the
 * result's size. Returns 0; MC_ERANGE if cap is smaller (nothing copied, *vlen set);
 * MC_ENOENT if the loader found nothing (mc_load_set_none: a cached "no value"); otherwise as
 * mc_cached_call. buf may be NULL when cap is 0 (to ask for the size). Thread-safe. */
MC_API int mc_cached_call_copy(mc_cached *fn, const mc_arg *args, size_t nargs, void *buf,
                               size_t cap, size_t *vlen);

/* mc_cached_call, borrowing the result instead of pinning or copying it: *data points at its
 * *vlen bytes, valid until the calling thread's outermost mc_read_end (modcache/cache.h).
 * Only inside a read section. A hit takes no lock and writes no reference count or shared
 * line; a miss loads as mc_cached_call does (single flight, timeouts) inside the caller's
 * section, keeping the loaded value pinned until the section ends. Returns 0; MC_ENOENT if
 * the loader found nothing (a cached "no value"); MC_EINVAL outside a read section or for
 * NULL pointers; otherwise as mc_cached_call. The bytes must not be written. Thread-safe. */
MC_API int mc_cached_call_borrow(mc_cached *fn, const mc_arg *args, size_t nargs,
                                 const void **data, size_t *vlen);

/* ------------------------------------------------------------------ invalidation callbacks
 *
 * The callback contract, for every function that takes an mc_invalidate_fn (mc_cached_call_ex,
 * mc_cached_call_async_ex, mc_cached_call_many_ex, mc_cached_prefill_ex) and for the
 * dependencies of mc_load_call, mc_load_call_many and mc_load_depends_on:
 *
 * - Exactly once. A callback handed to a call runs once, whatever happens. Attached to the
 *   entry the call's result came from, it runs when that entry leaves the cache for any reason:
 *   invalidated (by key, prefix or all, on any path: a direct call, the registry, the module
 *   API, the admin API, the invalidation bus, a dependency), evicted, expired, replaced by a
 *   different value, cleared, or its function destroyed. When there is no entry to attach it
 *   to (the result was not stored: an invalidated load, a bypassed cache; the entry was gone
 *   by the time the call returned; the call failed, timed out or was refused; no memory to
 *   attach it), it runs before the call returns (for an asynchronous call, before its done
 *   callback). So a callback may free its user data: it never leaks and never runs twice.
 * - Duplicates collapse. Attaching a pair (callback, user data) already attached to the same
 *   entry adds nothing: the pair runs once, when that entry goes. Two user data, or two
 *   entries, are two attachments.
 * - An identical value is not a replacement. Storing a value byte-identical to the cached one
 *   (same bytes, same "no value", same weight), by a load or a prefill, keeps the entry and
 *   its callbacks, and runs nothing; a different value replaces the entry and runs them.
 * - Where: on the thread that made the entry leave (or the calling thread), outside every
 *   lock of the library. A callback may call the library, on any function, but must not
 *   destroy a memoized function. It may run early (when an older entry of the same key leaves
 *   just as the call attaches it), never late. */
typedef void (*mc_invalidate_fn)(void *ud);

/* mc_cached_call, and attach on_invalidate(ud) (if on_invalidate is not NULL) to the entry the
 * result came from, under the callback contract above: when this returns an error (the
 * call's, or MC_ENOMEM attaching the callback, *out NULL) or the result was not stored, the
 * callback has run once before this returns. */
MC_API int mc_cached_call_ex(mc_cached *fn, const mc_arg *args, size_t nargs,
                             mc_invalidate_fn on_invalidate, void *ud, mc_value **out);

/* Completion callback of mc_cached_call_async: rc 0 with a pinned value to release, or an
 * error with value NULL. */
typedef void (*mc_done_fn)(void *ud, int rc, mc_value *value);

/* Non-blocking call: on a hit, `done` runs before this returns; on a miss it runs when the
 * load completes (on the completing thread), or with MC_ETIMEDOUT at the load timeout (on the
 * load pool's timer thread; `done` must not destroy the function). Waiters of both forms share
 * one load. Without a load timeout, a miss that starts a load runs a synchronous loader on
 * this thread before returning. Returns 0 when `done` will run (or ran); an argument error,
 * MC_ENOTSUP or MC_ENOMEM otherwise (done not called). */
MC_API int mc_cached_call_async(mc_cached *fn, const mc_arg *args, size_t nargs, mc_done_fn done,
                                void *ud);

/* mc_cached_call_async, and attach on_invalidate(inv_ud) (if not NULL) to the entry the
 * result came from, under the callback contract above: before `done` runs, the callback is
 * attached, or has run (an error, MC_ETIMEDOUT included, or a result that was not stored; if
 * it cannot be attached for lack of memory, done gets MC_ENOMEM and no value). When this
 * returns an error (done not called), the callback has run before it returns. */
MC_API int mc_cached_call_async_ex(mc_cached *fn, const mc_arg *args, size_t nargs, mc_done_fn done,
                                   void *ud, mc_invalidate_fn on_invalidate, void *inv_ud);

/* Batch call: keys holds nkeys tuples of nargs arguments, flattened. Hits come from the cache,
 * keys already loading are joined, the rest go to one batch_loader call. values[i] gets a
 * pinned value (release each) and rcs[i] 0, or values[i] NULL and rcs[i] the error for that key
 * (MC_ETIMEDOUT for keys still loading at the load timeout, counted from the start of this
 * call). Returns 0 when every key was attempted (per-key errors in rcs), MC_EINVAL/MC_ENOTSUP
 * (no batch_loader), or MC_ENOMEM with every rcs[i] MC_ENOMEM and values[i] NULL. Blocks until
 * all keys are resolved or timed out. Every key is looked up inside one read section (the
 * lookups of out-of-line entries enter none of their own), before any load starts. */
MC_API int mc_cached_call_many(mc_cached *fn, const mc_arg *keys, size_t nkeys, size_t nargs,
                               mc_value **values, int *rcs);

/* mc_cached_call_many with a callback per key (the seed's cachedList with on_invalidate):
 * on_invalidate(uds[i]) (uds NULL: user data NULL for every key) is attached to key i's entry
 * under the callback contract above, so each of the nkeys callbacks runs exactly once: when
 * its entry goes, or before this returns for a key whose rcs[i] is an error (MC_ENOMEM when it
 * could not be attached: values[i] NULL) or whose result was not stored, and for every key
 * when this returns an error. A key listed twice with the same user data is one attachment. */
MC_API int mc_cached_call_many_ex(mc_cached *fn, const mc_arg *keys, size_t nkeys, size_t nargs,
                                  mc_invalidate_fn on_invalidate, void *const *uds,
                                  mc_value **values, int *rcs);

/* Dependent entries (the seed's cache_context): while a loader of function F runs for a key k,
 * mc_load_call(load, G, args, nargs, &v) calls G as mc_cached_call does and records that F's
 * entry for k depends on G's entry that v came from. When that entry leaves G's cache, for any
 * reason of the callback contract above, F's key k is invalidated in this process as
 * mc_cached_invalidate does (the entry goes; a load of k running then is not stored, and calls
 * from then on load afresh rather than join it). The dependency is recorded on G's key before
 * G is read, so a removal of that key at any moment of the read counts: no call of F that
 * starts after an invalidation of G's entry returned gets a value computed from it. If G's
 * entry is gone by the time the read returns (v was not stored, or was replaced or invalidated
 * meanwhile), the load's result is not stored (its callers still get it). The library keeps
 * the records: the module writes no closure.
 *
 * Lifetimes: G destroyed first, its entries go, so F's dependent keys are invalidated then. F
 * destroyed first, the records left in G do nothing when they fire. A record lives until G's
 * entry goes, even if F's entry went earlier (it then invalidates a key already gone, or the
 * one loaded since, which is harmless); recording the same dependency again (a reload of k
 * reading the same entry of G) adds nothing. Dependencies are local: every other host applies
 * G's invalidation from the bus and drops its own dependent entries the same way.
 *
 * Only from the load's own loader, before it returns or completes the load (a batch loader
 * records per key, on mc_load_item(load, i)). Returns as mc_cached_call, and MC_EINVAL for a
 * NULL load, a batch (not an item) or a call of F's own key k. Running out of memory for the
 * record does not fail the call: the load's result is then not stored. */
MC_API int mc_load_call(mc_load *load, mc_cached *other, const mc_arg *args, size_t nargs,
                        mc_value **out);

/* mc_cached_call_many on `other` with a dependency on every key's entry, as mc_load_call
 * records one (keys whose rcs[i] is an error record none). Returns as mc_cached_call_many, and
 * MC_EINVAL (nothing called) for a NULL load, a batch, or a key that is the load's own. */
MC_API int mc_load_call_many(mc_load *load, mc_cached *other, const mc_arg *keys, size_t nkeys,
                             size_t nargs, mc_value **values, int *rcs);

/* For a value the loader obtained otherwise (mc_cached_call_async, mc_cached_call_copy cannot
 * say which entry): make the load's key depend on the entry of `other` that `value` came from.
 * value stays the caller's (still pinned). Recorded after the read, this can only check that
 * the entry is still cached: a caller joining the load between the read and this call may get
 * its result, which is then not stored; prefer mc_load_call. Returns 0; MC_EINVAL (NULL
 * arguments, a batch, a value of the load's own key); MC_ENOMEM (not recorded: the load's
 * result will not be stored). */
MC_API int mc_load_depends_on(mc_load *load, mc_cached *other, const mc_value *value);

/* Invalidate one key, or on a `tree` function every key under a shorter tuple. args is the
 * key tuple: the key arguments of a call, in order, without the uncached ones (for most
 * functions, simply the call's arguments). A load of an invalidated key already running still
 * answers the callers waiting for it but will not store its result, and calls made from now on
 * start a new load rather than join it.
 *
 * Key length: a function created with num_args has keys of num_args fields minus its uncached
 * ones. A tuple of that length names one key; on a `tree` function a shorter, non-empty tuple
 * names every key starting with it (the seed's TreeCache). Any other tuple (empty, longer than
 * the key, or shorter on a function that is not `tree`) is refused with MC_EINVAL and nothing
 * is invalidated. Without num_args the key length is not declared: an empty tuple is refused,
 * any other tuple names one key, or on a `tree` function every key starting with it.
 *
 * Returns 0, or MC_ENOENT if no entry was removed (in-flight loads are marked either way), or
 * an argument error (MC_EINVAL for a tuple of the wrong length). */
MC_API int mc_cached_invalidate(mc_cached *fn, const mc_arg *args, size_t nargs);
/* Invalidate every key starting with these key fields; `tree` functions only
 * (MC_ENOTSUP otherwise). No fields: every key. More fields than the function's declared key
 * length (num_args minus uncached ones) is refused with MC_EINVAL, nothing invalidated.
 * *removed, if not NULL, gets the number of entries removed. */
MC_API int mc_cached_invalidate_prefix(mc_cached *fn, const mc_arg *args, size_t nargs,
                                       size_t *removed);
/* Invalidate everything, in-flight loads included. */
MC_API void mc_cached_invalidate_all(mc_cached *fn);
/* Invalidate a key (or, on a `tree` function, a subtree) given in JSON text form
 * (["@alice:example.com", 42]), with the length rules of mc_cached_invalidate. Returns 0 (also
 * when nothing was cached), MC_EPARSE with err filled, or MC_EINVAL (wrong length, err says
 * why). */
MC_API int mc_cached_invalidate_json(mc_cached *fn, const char *json, size_t len, mc_error *err);
/* Store a value for a key (args: the key tuple, as for mc_cached_invalidate) without calling
 * the loader (the seed's prefill); it replaces any present value, unless that value is
 * byte-identical (then the entry stays, with its callbacks). A load of this key running now
 * will not overwrite it. On an `iterable` function the entry weighs 1 (mc_cached_prefill_ex
 * sets a weight). Returns 0, MC_EINVAL, MC_E2BIG (a key over MC_KEY_MAX, or heavier than the
 * cache's shard), MC_ENOMEM. */
MC_API int mc_cached_prefill(mc_cached *fn, const mc_arg *args, size_t nargs, const void *value,
                             size_t vlen);

/* Options of mc_cached_prefill_ex (mc_prefill_options_init: every field zero). */
typedef struct mc_prefill_options {
    /* `iterable` functions: how many elements the value holds (its weight, as
     * mc_load_set_weight; 0 means 1). Must be 0 on other functions (MC_EINVAL). */
    uint64_t weight;
    /* Store "no value" (value and vlen are ignored), as a loader's mc_load_set_none. */
    bool none;
    /* Optional: attached to the stored entry under the callback contract (see
     * mc_cached_call_ex); runs before mc_cached_prefill_ex returns if nothing was stored. */
    mc_invalidate_fn on_invalidate;
    void *ud;
} mc_prefill_options;

/* Fill *opts with defaults: every field zero. */
MC_API void mc_prefill_options_init(mc_prefill_options *opts);

/* mc_cached_prefill with options (NULL: as mc_cached_prefill): a weight, "no value", an
 * invalidation callback. Returns as mc_cached_prefill; MC_EINVAL also for a weight on a
 * function that is not iterable. */
MC_API int mc_cached_prefill_ex(mc_cached *fn, const mc_arg *args, size_t nargs, const void *value,
                                size_t vlen, const mc_prefill_options *opts);

/* Where an invalidation came from, as counted in mc_cached_stats.invalidations_by_source
 * and in /metrics (`modcache_cache_invalidations_total{source=...}`). */
typedef enum mc_invalidation_source {
    MC_INVALIDATION_DIRECT = 0, /* a program's or module's own mc_cached_invalidate* call */
    MC_INVALIDATION_MODULE = 1, /* a module through the host (mc_api_invalidate_cache/_all) */
    MC_INVALIDATION_ADMIN = 2,  /* the host's admin API (mcctl over HTTP) */
    MC_INVALIDATION_BUS = 3,    /* another host's invalidation, read from the Redis stream */
    MC_INVALIDATION_FLUSH = 4,  /* a full flush after the bus lost track of the stream */
    MC_INVALIDATION_NSOURCES = 5
} mc_invalidation_source;

/* The source's label value: "direct", "module", "admin", "bus", "flush" ("unknown" otherwise). */
MC_API const char *mc_invalidation_source_name(mc_invalidation_source source);

/* Attribute the invalidations the calling thread makes from now on (its mc_cached_invalidate*
 * calls, the registry's, and those of the invalidation callbacks they run on this thread) to
 * `source`; returns the previous source so that the caller can restore it. Each thread starts
 * with MC_INVALIDATION_DIRECT. Counting only: nothing else depends on it. */
MC_API mc_invalidation_source mc_cached_set_invalidation_source(mc_invalidation_source source);

/* Buckets of the load-duration histogram: loads that took at most
 * mc_cached_load_bucket_ns(i) nanoseconds are counted in bucket i and every later one
 * (Prometheus' cumulative buckets); the last bucket (index MC_LOAD_BUCKETS - 1) is +Inf. */
#define MC_LOAD_BUCKETS 19
/* The upper bound of bucket i in nanoseconds (1 us .. 10 s), UINT64_MAX for the last one. */
MC_API uint64_t mc_cached_load_bucket_ns(size_t i);
/* The number of fields of this function's keys (num_args minus its uncached arguments), or 0
 * when it was created without num_args (the key length is not declared). */
MC_API size_t mc_cached_key_length(const mc_cached *fn);
/* Whether the function was created with `persist` (its entries go into snapshots). */
MC_API bool mc_cached_persists(const mc_cached *fn);
/* Whether the function was created with `tree` (shorter tuples invalidate subtrees). */
MC_API bool mc_cached_is_tree(const mc_cached *fn);

/* Whether calls bypass the cache now (the registry's bounded staleness: see
 * mc_registry_set_bypass), and how many calls did since creation. */
MC_API bool mc_cached_bypassing(const mc_cached *fn);
MC_API uint64_t mc_cached_bypassed_calls(const mc_cached *fn);

/* ------------------------------------------------------------------ invalidations as values */

/* One encoded key tuple (mc_key_encode, mc_key_from_json): borrowed bytes. */
typedef struct mc_invalidation_key {
    const void *key;
    size_t len;
} mc_invalidation_key;

/* Where an invalidation comes from: made in this process (a module, the admin API), or
 * received from another host (the bus), which subscribers must not send on again. */
typedef enum mc_invalidation_origin {
    MC_INVALIDATION_LOCAL = 0,
    MC_INVALIDATION_REMOTE = 1,
} mc_invalidation_origin;

/* One invalidation of one function: every entry (`all`), or a list of key tuples, each a whole
 * key or, on a `tree` function, a shorter tuple naming a subtree (the length rules of
 * mc_cached_invalidate). Every pointer is borrowed for the duration of the call it is given
 * to. Built from C arguments or JSON at the edges (module API, admin API, bus reader); applied
 * with mc_cached_apply or mc_registry_apply. */
typedef struct mc_invalidation {
    const char *name;                 /* the registered name (mc_registry_apply's lookup) */
    bool all;                         /* every entry; keys are ignored */
    const mc_invalidation_key *keys;  /* nkeys encoded tuples (when not all) */
    size_t nkeys;
    mc_invalidation_origin origin;
} mc_invalidation;

/* What applying an invalidation did. */
typedef struct mc_invalidation_result {
    size_t removed;     /* entries removed from this process's cache */
    size_t prefixes;    /* tuples that were subtrees (shorter than the key, tree functions) */
    size_t bad_key;     /* on MC_EINVAL for a tuple: its index in keys */
    size_t subscribers; /* subscribers the invalidation was handed to (mc_registry_apply) */
} mc_invalidation_result;

/* Check every tuple of inv against fn's key length, then (only if all are acceptable) apply
 * it to fn in this process: nothing is handed to anyone (see mc_registry_apply). inv->name
 * is not used. res (may be NULL) gets the counts. Returns 0; MC_EINVAL (a tuple of the wrong
 * length or malformed bytes: nothing applied, res->bad_key and err say which and why);
 * MC_EINVAL for NULL arguments. Thread-safe. */
MC_API int mc_cached_apply(mc_cached *fn, const mc_invalidation *inv, mc_invalidation_result *res,
                           mc_error *err);

/* What mc_cached_stats_get reports: the cache's statistics and the function's counters. */
typedef struct mc_cached_stats {
    mc_cache_stats cache;
    uint64_t loads;        /* loader (or batch item) runs started */
    uint64_t load_errors;  /* loads that ended in an error */
    uint64_t joined;       /* calls that waited for a load another call started */
    uint64_t invalidations;
    uint64_t cancelled_fills; /* loads whose result was not stored due to invalidation */
    uint64_t timeouts;     /* calls (blocking, async or batch keys) that got MC_ETIMEDOUT */
    /* `invalidations` split by where they came from (mc_invalidation_source). */
    uint64_t invalidations_by_source[MC_INVALIDATION_NSOURCES];
    /* Loads finished (stored, dropped or failed; a batch counts each key) and how long each
     * took from its start to its result: cumulative counts per mc_cached_load_bucket_ns
     * bound, the last one being every finished load, and the sum of the durations. */
    uint64_t load_duration_buckets[MC_LOAD_BUCKETS];
    uint64_t load_duration_sum_ns;
    /* Refresh-ahead reloads started (also counted in loads), those that failed (the old value
     * kept), and entries found past expire_after_write_ns or none_ttl_ns by a call. */
    uint64_t refreshes;
    uint64_t refresh_errors;
    uint64_t expiries;
} mc_cached_stats;

/* Snapshot of a function's statistics, summed when read as in mc_cache_stats_get. */
MC_API void mc_cached_stats_get(mc_cached *fn, mc_cached_stats *out);
/* The name given at creation ("" if none). */
MC_API const char *mc_cached_name(const mc_cached *fn);
/* Whether the function was created `iterable` (its bound and weights count elements). */
MC_API bool mc_cached_is_iterable(const mc_cached *fn);
/* The underlying cache (for stats and sizing; do not put into it directly). */
MC_API mc_cache *mc_cached_cache(mc_cached *fn);

/* ------------------------------------------------------------------ registry and config */

/* One entry of per_cache_factors: a function's name and the factor of its max_entries. */
typedef struct mc_cache_factor {
    const char *name;
    double factor;
} mc_cache_factor;

/* One entry of a registry's per-function write-age settings (the YAML's per_cache_timings):
 * replaces the options' refresh_after_ns, expire_after_write_ns and none_ttl_ns of the
 * function of that name created under the registry (each 0: keep the option's). */
typedef struct mc_cache_timing {
    const char *name;
    uint64_t refresh_after_ns;
    uint64_t expire_after_write_ns;
    uint64_t none_ttl_ns;
} mc_cache_timing;

/* The seed's `caches:` block, as a registry applies it to the functions created under it. */
struct mc_cache_config {
    /* Multiplies every function's max_entries (default 1.0 when 0). */
    double global_factor;
    /* Per-function factors, replacing the global one for that name. Copied. */
    const mc_cache_factor *per_cache_factors;
    size_t n_per_cache_factors;
    /* Expire entries not read for cache_entry_ttl_ns (functions created after this). */
    bool expire_caches;
    uint64_t cache_entry_ttl_ns;
    /* Memory autotuning: when memory in use exceeds max_cache_memory_usage, evict least
     * recently used entries across all functions (never those read within min_cache_ttl_ns,
     * never keep_unread_entries functions) until it is at most target_cache_memory_usage.
     * 0 disables. */
    size_t max_cache_memory_usage;
    size_t target_cache_memory_usage;
    uint64_t min_cache_ttl_ns;
    /* Memory in use; NULL reads jemalloc's stats.allocated (after an epoch refresh). */
    size_t (*memory_usage)(void *ud);
    void *memory_usage_ud;
    /* Period of the maintenance thread (expiry and autotuning); 0 means 1 s. */
    uint64_t maintenance_interval_ns;
    /* Load timeout of functions created under the registry whose options leave
     * load_timeout_ns at 0 (see mc_cached_call); 0: none. */
    uint64_t load_timeout_ns;
    /* Worker threads of the registry's load pool (see "The load pool"); 0: 4. */
    unsigned load_pool_threads;
    /* Per-function write-age settings, by name. Copied (names included). */
    const mc_cache_timing *timings;
    size_t n_timings;
};

/* Fill *cfg with defaults: global_factor 1.0, everything else 0 (off). */
MC_API void mc_cache_config_init(mc_cache_config *cfg);

/* Create a registry with a config (NULL: defaults). Environment overrides:
 * MODCACHE_CACHE_FACTOR (read now) replaces global_factor; MODCACHE_CACHE_FACTOR_<NAME> (the
 * name upper-cased, every character other than A-Z and 0-9 as '_'; read whenever that
 * function's factor is computed) replaces its per-cache factor. Malformed or non-positive
 * values are ignored. Precedence: per-name env, per-name factor, global env, global_factor.
 * Returns 0, MC_EINVAL (a factor <= 0, a target above the maximum), MC_ENOMEM. */
MC_API int mc_registry_create(const mc_cache_config *cfg, mc_registry **out);
/* Stops the maintenance thread. Functions still registered are unregistered, not destroyed. */
MC_API void mc_registry_destroy(mc_registry *reg);

/* Register a function created without a registry under its name: MC_EEXIST if taken,
 * MC_EINVAL if it has no name or is registered elsewhere, MC_EBUSY if reg is a closed scope
 * (below). Its current factor applies. */
MC_API int mc_registry_add(mc_registry *reg, mc_cached *fn);
/* Unregister a function (it is not destroyed). MC_ENOENT if it is not registered here; through
 * a scope (or a module's handle), if it is not registered through that scope. */
MC_API int mc_registry_remove(mc_registry *reg, mc_cached *fn);
/* The function registered under `name`, or NULL. The pointer is not pinned: it is valid only
 * while the caller knows that the function is not destroyed (its owner's own code). Code that
 * cannot know (admin tools, other threads) uses mc_registry_acquire. */
MC_API mc_cached *mc_registry_find(mc_registry *reg, const char *name);
/* The function registered under `name` with a counted reference: *out stays valid (calls,
 * invalidations, stats) until mc_registry_release, even if it is unregistered meanwhile;
 * mc_cached_destroy waits for its references to be released (so a holder must not destroy it
 * or wait for its destruction). Returns 0 or MC_ENOENT (*out NULL), MC_EINVAL. Thread-safe. */
MC_API int mc_registry_acquire(mc_registry *reg, const char *name, mc_cached **out);
/* Release a reference of mc_registry_acquire. NULL is a no-op. */
MC_API void mc_registry_release(mc_cached *fn);

/* Scopes: a registry handle through which one owner (a module) registers, so that the owner's
 * registrations are found by owner rather than by remembered pointers. A scope is an
 * mc_registry: functions created with opts.registry = scope, or added with
 * mc_registry_add(scope, fn), are registered in the scope's registry and belong to the
 * scope; every other registry call on a scope acts on its registry. A scope accepts
 * registrations only while it is open (mc_registry_scope_open; new scopes are closed):
 * otherwise MC_EBUSY and nothing is registered; the open state is read under the registry's
 * lock, so a registration racing a close and a clear is either cleared or refused.
 * mc_registry_scope_clear unregisters every function that still belongs to the scope
 * (without destroying them: a function its owner destroyed already is simply not found);
 * mc_registry_scope_destroy clears and frees it (mc_registry_destroy of a scope does the
 * same). Only a registry creates scopes: mc_registry_scope_create on a scope (or on a
 * module's handle) returns MC_EBUSY and creates nothing. Thread-safe; destroy must be the
 * last call on the scope.
 *
 * A module's handle (mc_api_registry, modcache/module.h) is not its scope but a view of it,
 * which the host makes: registrations through it belong to the module's scope and obey that
 * scope's open state, and every read-only call acts on the registry as on a scope; but the
 * handle controls nothing: mc_registry_scope_create (MC_EBUSY), mc_registry_scope_open,
 * mc_registry_scope_clear, mc_registry_scope_destroy and mc_registry_destroy on it do
 * nothing, so a module cannot reopen its scope after init, make a scope of its own that the
 * host would never clear, or withdraw or free what the host holds. Nor does it reach the
 * registry's own controls: mc_registry_set_bypass and mc_registry_stop do nothing through it,
 * and mc_registry_set_factor, mc_registry_reload_factors and mc_registry_start return
 * MC_EBUSY; mc_registry_remove through it unregisters only the module's own functions.
 * mc_registry_scope_owns on the handle asks about the module's scope. */
MC_API int mc_registry_scope_create(mc_registry *reg, mc_registry **scope);
MC_API void mc_registry_scope_open(mc_registry *scope, bool open);
MC_API void mc_registry_scope_clear(mc_registry *scope);
MC_API void mc_registry_scope_destroy(mc_registry *scope);
/* Whether fn is registered through this scope. */
MC_API bool mc_registry_scope_owns(mc_registry *scope, const mc_cached *fn);

/* Bounded staleness (the invalidation bus drives it with invalidation.max_staleness): on,
 * every registered function (and any registered later) bypasses its cache: calls are not
 * served from it and loads are not stored, while concurrent calls of one key still share one
 * load. Off again, every function is flushed first (mc_cached_invalidate_all), then uses its
 * cache again, so nothing cached before or during the bypass is served afterwards. A function
 * unregistered meanwhile leaves the bypass. Thread-safe; not from an invalidation callback. */
MC_API void mc_registry_set_bypass(mc_registry *reg, bool on);
MC_API bool mc_registry_bypassing(mc_registry *reg);

/* Visitor of mc_registry_list: one registered function and its statistics. */
typedef void (*mc_registry_visit_fn)(void *ud, mc_cached *fn, const mc_cached_stats *stats);
/* Visit every function in name order, with its stats (registry read-locked during the walk). */
MC_API void mc_registry_list(mc_registry *reg, mc_registry_visit_fn visit, void *ud);

/* Invalidate by name: nkeys keys in JSON text form, or all entries when json_keys is NULL.
 * The keys are parsed and checked first, then applied as one invalidation with
 * mc_registry_apply (subscribers included). Returns 0; MC_ENOENT (no such function);
 * MC_EPARSE (a malformed key, err filled) or MC_EINVAL (a key of the wrong length): nothing
 * invalidated. */
MC_API int mc_registry_invalidate(mc_registry *reg, const char *name, const char *const *json_keys,
                                  size_t nkeys, mc_error *err);

/* A subscriber of a registry's invalidations (the invalidation bus is one): called once per
 * invalidation applied through mc_registry_apply, after it was applied here, on the applying
 * thread, with the function still pinned; res holds what applying did. Returns 0 or an
 * error (MC_ENOMEM: it could not keep it), which mc_registry_apply reports. */
typedef int (*mc_invalidation_subscriber)(void *ud, const mc_invalidation *inv,
                                          const mc_invalidation_result *res);
/* Add or remove a subscriber (identified by fn and ud). Unsubscribing waits for calls of it in
 * progress, so that ud may be freed after it returns. 0, MC_EINVAL, MC_ENOMEM, MC_ENOENT. */
MC_API int mc_registry_subscribe(mc_registry *reg, mc_invalidation_subscriber fn, void *ud);
MC_API int mc_registry_unsubscribe(mc_registry *reg, mc_invalidation_subscriber fn, void *ud);

/* The single entry point of invalidation: apply inv to fn (or, fn NULL, to the function
 * registered under inv->name, pinned for the call) as mc_cached_apply does, then hand it to
 * every subscriber. Wrong-length tuples are refused before anything is applied or handed on.
 * Returns 0; MC_ENOENT (no such function); MC_EINVAL (see mc_cached_apply); or the first
 * subscriber error (applied here; res->subscribers counts those that took it). */
MC_API int mc_registry_apply(mc_registry *reg, mc_cached *fn, const mc_invalidation *inv,
                             mc_invalidation_result *res, mc_error *err);

/* Change the global factor (name NULL) or one function's, resizing at once (entries over the
 * new bound are evicted before this returns). MC_EINVAL for factor <= 0, MC_ENOENT.
 * Registry locking: invalidation callbacks and listeners that run during registry calls
 * (set_factor, invalidate, maintain, list) may call the registry's read operations (find,
 * list, invalidate) but not add, remove, or destroy a registered function. */
MC_API int mc_registry_set_factor(mc_registry *reg, const char *name, double factor);

/* Replace the configured factors with cfg's global_factor and per_cache_factors (other fields
 * are ignored), as a configuration reload does: the environment overrides keep their
 * precedence over them, as at creation, and factors set with mc_registry_set_factor are
 * forgotten. Functions are resized at once. Returns 0, MC_EINVAL (a factor <= 0, a NULL name)
 * or MC_ENOMEM (nothing changed). Same locking rules as mc_registry_set_factor. */
MC_API int mc_registry_reload_factors(mc_registry *reg, const mc_cache_config *cfg);

/* Start / stop the maintenance thread (expiry cleanup and memory autotuning each interval). */
MC_API int mc_registry_start(mc_registry *reg);
MC_API void mc_registry_stop(mc_registry *reg);
/* One maintenance pass now, on the calling thread; *evicted gets autotuning's evictions. */
MC_API void mc_registry_maintain(mc_registry *reg, size_t *evicted);

#ifdef __cplusplus
}
#endif

#endif
