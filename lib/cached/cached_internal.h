/* Internal layout of memoized functions and loads, shared by cached.c, registry.c and the
 * white-box tests. Nothing here is part of the public API. */
#ifndef MC_CACHED_INTERNAL_H
#define MC_CACHED_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "cached/cached_host.h"
#include "core/workpool.h"
#include "modcache/cached.h"

#define MC__CACHED_STRIPES 16
#define MC__CACHED_BUCKETS 64
#define MC__NAME_MAX 200

/* A caller waiting through mc_cached_call_async. All links are under the stripe lock of its
 * load; whoever unlinks it from its load (the completion or the timer) calls done and frees it. */
struct mc__waiter {
    mc_done_fn done;
    void *ud;
    struct mc__waiter *next; /* the load's waiters */
    /* With a load timeout: the monotonic deadline (0: none), the load waited for, and the
     * links of the stripe's deadline list. */
    uint64_t deadline;
    struct mc_load *load;
    struct mc__waiter *tprev, *tnext;
};

/* One load, or one batch, handed to the load pool (a timed load, or a refresh reload). */
struct mc__pooljob {
    mc_cached *fn;
    struct mc_load *load; /* a single load or a batch */
    mc_arg *flat;         /* a batch's keys, owned */
    size_t nkeys, nargs;
};

/* An invalidation callback attached to a key, for the entry `entry` (the pinned value the
 * caller held: compared to tell duplicates, never dereferenced). Popped, and run, by whoever
 * removes it: the listener of the key's next removal, the attacher (entry already gone), or
 * mc_cached_destroy. */
struct mc__attach {
    struct mc__attach *next;
    mc_invalidate_fn cb;
    void *ud;
    const void *entry;
    /* A dependency listed before its entry is read (mc_load_call) is also held by its loader
     * until bound: `held` (stripe lock while listed; fixed once popped) and, while held, two
     * references, the list's and the loader's (the last one frees it). */
    bool held;
    atomic_uint refs;
    size_t klen;
    unsigned char key[];
};

/* What dependencies (mc_load_call, mc_load_depends_on) of a function's entries hold on to:
 * the function while it lives. Records in other functions' attachment lists outlive it;
 * mc_cached_destroy sets fn to NULL (waiting for invalidations into it to finish), and the
 * last reference (the function's, one per record) frees the hub. */
struct mc__dep_hub {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    mc_cached *fn; /* lock; NULL once the function is destroyed */
    unsigned busy; /* lock; invalidations into fn running now */
    atomic_uint refs;
};

/* One dependency: the key of the hub's function to invalidate when the entry it is attached
 * to (another function's) goes. Immutable once attached; freed by mc__dep_fire. */
struct mc__dep {
    struct mc__dep_hub *hub;
    size_t klen;
    unsigned char key[];
};

enum { MC__RES_UNSET, MC__RES_COPY, MC__RES_OWNED, MC__RES_NONE };

struct mc_load {
    mc_cached *fn;
    struct mc_load *next; /* in-flight chain of its stripe bucket */
    uint64_t khash;
    uint64_t start_ns;    /* monotonic, when the load was created (its duration's start) */
    unsigned refs;        /* stripe lock: 1 for the in-flight table + 1 per blocking waiter */
    bool done;            /* stripe lock */
    bool batch;           /* a batch: items below, no key of its own */
    bool refresh;         /* a refresh reload (refresh_after_ns): counted as one */
    int rc;
    _Atomic bool invalidated;
    mc_value *value;      /* the result, pinned for the waiters (rc == 0) */
    struct mc__waiter *waiters; /* async callers (stripe lock) */
    /* Result being set by the loader. */
    int res_kind;
    void *res_data;
    size_t res_len;
    mc_free_fn res_free;
    uint64_t res_weight;
    /* The call's arguments, owned: encoded in argbuf, decoded into args. */
    mc_arg *args;
    size_t nargs;
    unsigned char *argbuf;
    /* Batch loads. */
    struct mc_load **items;
    size_t nitems;
    size_t klen;
    unsigned char key[];
};

struct mc__stripe_c {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* on CLOCK_MONOTONIC, for timed waits */
    struct mc_load *inflight[MC__CACHED_BUCKETS];
    struct mc__attach *attached[MC__CACHED_BUCKETS];
    /* Async waiters with a deadline, earliest first. */
    struct mc__waiter *timed_first, *timed_last;
};

struct mc_cached {
    char name[MC__NAME_MAX + 1];
    mc_cache *cache;
    /* Set by the registry while the process cannot confirm it is current (bounded staleness):
     * calls skip the cache (loads still single-flight, results not stored). Read with acquire
     * on every call, beside `cache`: it orders nothing else, it only has to be seen soon. */
    _Atomic bool bypass;
    _Atomic uint64_t bypassed;
    mc_loader_fn loader;
    mc_batch_loader_fn batch_loader;
    void *self;
    size_t num_args;
    bool key_arg[64]; /* which of the first num_args arguments form the key (up to 64) */
    size_t key_mask_len;
    bool tree, iterable, keep_unread;
    bool persist; /* entries go into snapshots (snapshot.c) */
    /* A load recorded a dependency on another function (mc_load_call, mc_load_depends_on):
     * its entries cannot go into snapshots, which do not keep those records. */
    _Atomic bool has_deps;
    size_t base_max_entries;
    size_t key_len;        /* fields of a key (num_args minus uncached ones); 0: not declared */
    /* Set while registered (the registry, never a scope), under its lock. Atomic: destroy reads
     * it without that lock (it needs the pointer to find the lock) while a scope's clear or the
     * registry's destroy may unregister the function on another thread. */
    mc_registry *_Atomic registry;
    const mc_registry *owner; /* the scope it was registered through, or NULL; registry lock */
    /* Counted references of mc_registry_acquire: destroy waits for them to go. */
    pthread_mutex_t reflock;
    pthread_cond_t refcond;
    unsigned refs;
    double factor;         /* the factor in effect */
    atomic_size_t n_attached;
    _Atomic uint64_t loads, load_errors, joined, invalidations, cancelled, timeouts;
    _Atomic uint64_t inv_by_source[MC_INVALIDATION_NSOURCES];
    /* Finished loads per duration bucket (not cumulative here; mc_cached_stats_get sums). */
    _Atomic uint64_t load_hist[MC_LOAD_BUCKETS];
    _Atomic uint64_t load_sum_ns;
    uint64_t load_timeout_ns; /* 0: callers wait as long as the load takes */
    /* The load pool (retained): timed loads, refresh reloads and the async-deadline timer run
     * there. jobs counts this function's jobs queued or running (under jlock; destroy waits
     * for 0 on jcond). */
    mc__workpool *pool;
    pthread_mutex_t jlock;
    pthread_cond_t jcond;
    unsigned jobs;
    mc__worktimer timer; /* async waiters' deadlines (fires inline on the pool's timer thread) */
    /* Write-age rules (0: off) and their counters. */
    uint64_t refresh_after_ns, expire_after_write_ns, none_ttl_ns;
    _Atomic uint64_t refreshes, refresh_errors, expiries;
    struct mc__stripe_c stripes[MC__CACHED_STRIPES];
    /* Created by the first dependency one of its loads records (mc_load_depends_on). */
    _Atomic(struct mc__dep_hub *) deps;
};

/* Test hook: called after a loader returned a result and before it is stored (point 1), and
 * once a load is over (stored, dropped or failed) and its async waiters were answered
 * (point 2; l->rc holds the outcome). */
#define MC__HOOK_BEFORE_STORE 1
#define MC__HOOK_FINISHED 2
extern void (*mc__cached_test_hook)(mc_cached *fn, int point, mc_load *load);
/* Tests: called by a snapshot write after it copied shard `shard` of fn (NULL: not called). */
extern void (*mc__snapshot_test_hook)(mc_cached *fn, unsigned shard);

/* The registry a handle stands for: itself, or a scope's registry. */
mc_registry *mc__registry_root(mc_registry *reg);

/* Apply a factor (resizing the cache at once). Used by the registry. */
void mc__cached_apply_factor(mc_cached *fn, double factor);

/* Registry side of creation: config values a new function inherits. */
void mc__registry_defaults(const mc_registry *reg, const char *name, double *factor,
                           uint64_t *ttl_ns, uint64_t *load_timeout_ns);

/* Per-function write-age settings of the registry's config for `name` (left alone when it
 * has none), and the registry's load pool (retained for the caller). */
void mc__registry_timing(const mc_registry *reg, const char *name, uint64_t *refresh_ns,
                         uint64_t *expire_ns, uint64_t *none_ns);
mc__workpool *mc__registry_pool(mc_registry *reg);

/* The pool of functions created without a registry: one per process, started on first use
 * (retained for the caller), or NULL when it cannot be created. */
mc__workpool *mc__default_pool(void);

#endif
