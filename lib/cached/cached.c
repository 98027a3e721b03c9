/* Memoized functions: key building, single-flight loads (blocking, async, batch), storing
 * results unless invalidated meanwhile, load timeouts, invalidation, invalidation callbacks. */
#include "cached/cached_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/cache_cached.h"
#include "core/alloc.h"
#include "core/epoch.h"
#include "core/error.h"
#include "key/key_internal.h"

void (*mc__cached_test_hook)(mc_cached *fn, int point, mc_load *load);

void mc_cached_options_init(mc_cached_options *opts)
{
    if (opts)
        memset(opts, 0, sizeof *opts);
}

/* ------------------------------------------------------------------ keys */

static int mc__call_key_raw(const mc_cached *fn, const mc_arg *args, size_t nargs,
                            unsigned char *buf, size_t *klen);

/* Encode the key of a call (its key arguments) into buf (MC_KEY_MAX bytes). */
static int mc__call_key(const mc_cached *fn, const mc_arg *args, size_t nargs, unsigned char *buf,
                        size_t *klen)
{
    int rc = mc__call_key_raw(fn, args, nargs, buf, klen);
    return rc == MC_ERANGE ? MC_E2BIG : rc;
}

/* Encode a key tuple given directly (invalidation, prefill). */
static int mc__tuple_key(const mc_arg *args, size_t nargs, unsigned char *buf, size_t *klen)
{
    if (!args && nargs)
        return MC_EINVAL;
    int rc = mc_key_encode(args, nargs, buf, MC_KEY_MAX, klen);
    return rc == MC_ERANGE ? MC_E2BIG : rc;
}

static int mc__call_key_raw(const mc_cached *fn, const mc_arg *args, size_t nargs,
                            unsigned char *buf, size_t *klen)
{
    size_t nk = fn->num_args ? fn->num_args : nargs;
    if (!args && nargs)
        return MC_EINVAL;
    if (nargs < nk)
        return MC_EINVAL;
    if (nk == nargs && fn->key_mask_len == 0)
        return mc__key_encode_scratch(args, nargs, buf, klen);
    mc_arg kept[64];
    size_t n = 0;
    for (size_t i = 0; i < nk; i++) {
        if (i < fn->key_mask_len && !fn->key_arg[i])
            continue;
        if (n == 64)
            return MC_E2BIG;
        kept[n++] = args[i];
    }
    return mc__key_encode_scratch(kept, n, buf, klen);
}

static uint64_t mc__khash(const void *key, size_t klen) { return mc_key_hash(key, klen, 0x6d63636163686564ull); }

static struct mc__stripe_c *mc__stripe_of(mc_cached *fn, uint64_t h)
{
    return &fn->stripes[h & (MC__CACHED_STRIPES - 1)];
}

static size_t mc__bucket_of(uint64_t h) { return (h >> 8) & (MC__CACHED_BUCKETS - 1); }

/* ------------------------------------------------------------------ deadlines */


/* Upper bounds of the load-duration buckets (1-2.5-5 steps from 1 us to 10 s, then +Inf). */
static const uint64_t mc__load_bounds[MC_LOAD_BUCKETS] = {
    1000ull,       5000ull,       10000ull,      25000ull,       50000ull,       100000ull,    250000ull,
    500000ull,     1000000ull,    2500000ull,    5000000ull,     10000000ull,    25000000ull,  100000000ull,
    250000000ull,  1000000000ull, 2500000000ull, 10000000000ull, UINT64_MAX};

uint64_t mc_cached_load_bucket_ns(size_t i) { return i < MC_LOAD_BUCKETS ? mc__load_bounds[i] : UINT64_MAX; }

/* One finished load into the histogram: relaxed, these are statistics read as a snapshot. */
static void mc__observe_load(mc_cached *fn, const mc_load *l)
{
    uint64_t d = mc__mono_now() - l->start_ns;
    size_t b = 0;
    while (d > mc__load_bounds[b])
        b++;
    atomic_fetch_add_explicit(&fn->load_hist[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&fn->load_sum_ns, d, memory_order_relaxed);
}

/* ------------------------------------------------------------------ invalidation sources */

static _Thread_local mc_invalidation_source mc__inv_source = MC_INVALIDATION_DIRECT;

const char *mc_invalidation_source_name(mc_invalidation_source source)
{
    static const char *const names[MC_INVALIDATION_NSOURCES] = {"direct", "module", "admin", "bus", "flush"};
    return (unsigned)source < MC_INVALIDATION_NSOURCES ? names[source] : "unknown";
}

mc_invalidation_source mc_cached_set_invalidation_source(mc_invalidation_source source)
{
    mc_invalidation_source old = mc__inv_source;
    if ((unsigned)source < MC_INVALIDATION_NSOURCES)
        mc__inv_source = source;
    return old;
}

static void mc__count_invalidation(mc_cached *fn)
{
    atomic_fetch_add_explicit(&fn->invalidations, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&fn->inv_by_source[mc__inv_source], 1, memory_order_relaxed);
}

/* The deadline of a wait that starts now: 0 (none) without a load timeout. */
static uint64_t mc__deadline(const mc_cached *fn)
{
    if (!fn->load_timeout_ns)
        return 0;
    uint64_t now = mc__mono_now();
    return fn->load_timeout_ns > UINT64_MAX - now ? UINT64_MAX : now + fn->load_timeout_ns;
}

static struct timespec mc__abstime(uint64_t deadline)
{
    struct timespec ts;
    /* Far deadlines are clamped to a century: time_t arithmetic must not overflow. */
    const uint64_t century = 100ull * 365 * 86400 * 1000000000ull;
    uint64_t now = mc__mono_now();
    if (deadline > now + century)
        deadline = now + century;
    ts.tv_sec = (time_t)(deadline / 1000000000u);
    ts.tv_nsec = (long)(deadline % 1000000000u);
    return ts;
}


/* The stripe's deadline list, earliest first (stripe lock held). Deadlines mostly arrive in
 * order (one timeout per function), so insertion walks back from the tail a step or two. */
static void mc__timed_insert(struct mc__stripe_c *st, struct mc__waiter *w)
{
    struct mc__waiter *after = st->timed_last;
    while (after && after->deadline > w->deadline)
        after = after->tprev;
    w->tprev = after;
    w->tnext = after ? after->tnext : st->timed_first;
    if (w->tnext)
        w->tnext->tprev = w;
    else
        st->timed_last = w;
    if (after)
        after->tnext = w;
    else
        st->timed_first = w;
}

static void mc__timed_remove(struct mc__stripe_c *st, struct mc__waiter *w)
{
    if (w->tprev)
        w->tprev->tnext = w->tnext;
    else
        st->timed_first = w->tnext;
    if (w->tnext)
        w->tnext->tprev = w->tprev;
    else
        st->timed_last = w->tprev;
    w->tprev = w->tnext = NULL;
}

/* ------------------------------------------------------------------ loads */

static void mc__result_clear(mc_load *l)
{
    if (l->res_kind == MC__RES_OWNED && l->res_free)
        l->res_free(l->res_data);
    else if (l->res_kind == MC__RES_COPY)
        free(l->res_data);
    l->res_kind = MC__RES_UNSET;
    l->res_data = NULL;
    l->res_len = 0;
    l->res_free = NULL;
}

static void mc__load_free(mc_load *l)
{
    mc__result_clear(l);
    if (l->value)
        mc_value_release(l->value);
    free(l->args);
    free(l->argbuf);
    free(l->items);
    free(l);
}

/* A new in-flight load owning the key and a copy of the call's arguments. */
static mc_load *mc__load_new(mc_cached *fn, const unsigned char *key, size_t klen, uint64_t h,
                             const mc_arg *args, size_t nargs)
{
    mc_load *l = mc__calloc(1, sizeof *l + klen);
    if (!l)
        return NULL;
    l->fn = fn;
    l->khash = h;
    l->klen = klen;
    memcpy(l->key, key, klen);
    atomic_init(&l->invalidated, false);
    l->res_weight = 1;
    l->start_ns = mc__mono_now();
    if (nargs) {
        /* The arguments are re-encoded so that the load owns every string it hands the loader,
         * which may finish on another thread after the caller returned. */
        size_t len = 0;
        unsigned char probe;
        int rc = mc_key_encode(args, nargs, &probe, 0, &len);
        if (rc != MC_ERANGE && rc != 0)
            goto fail;
        l->argbuf = mc__malloc(len ? len : 1);
        l->args = mc__calloc(nargs, sizeof *l->args);
        if (!l->argbuf || !l->args || mc_key_encode(args, nargs, l->argbuf, len, &len) != 0)
            goto fail;
        size_t pos = 0;
        for (size_t i = 0; i < nargs; i++)
            if (mc_key_next(l->argbuf, len, &pos, &l->args[i]) != 1)
                goto fail;
        l->nargs = nargs;
    }
    return l;
fail:
    free(l->args);
    free(l->argbuf);
    free(l);
    return NULL;
}

static mc_load *mc__inflight_find(struct mc__stripe_c *st, const unsigned char *key, size_t klen,
                                  uint64_t h)
{
    for (mc_load *l = st->inflight[mc__bucket_of(h)]; l; l = l->next)
        if (l->khash == h && l->klen == klen && memcmp(l->key, key, klen) == 0)
            return l;
    return NULL;
}

static void mc__inflight_remove(struct mc__stripe_c *st, mc_load *l)
{
    mc_load **pp = &st->inflight[mc__bucket_of(l->khash)];
    while (*pp && *pp != l)
        pp = &(*pp)->next;
    if (*pp)
        *pp = l->next;
    l->next = NULL;
}

static bool mc__not_invalidated(void *ud)
{
    mc_load *l = ud;
    return !atomic_load_explicit(&l->invalidated, memory_order_acquire);
}

static void mc__refresh_failed(mc_cached *fn, const unsigned char *key, size_t klen);

/* Turn the loader's result into a pinned value: stored in the cache unless the load was
 * invalidated (checked under the shard lock), detached otherwise. Returns 0 or an error. */
static int mc__load_store(mc_load *l)
{
    mc_cached *fn = l->fn;
    bool kept = false;
    mc__put_args a = {
        .key = l->key,
        .klen = l->klen,
        .value = l->res_data,
        .vlen = l->res_len,
        .owned = l->res_kind == MC__RES_OWNED,
        .free_fn = l->res_free,
        .none = l->res_kind == MC__RES_NONE || l->res_kind == MC__RES_UNSET,
        .weight = fn->iterable ? (l->res_weight ? l->res_weight : 1) : 0,
        .guard = mc__not_invalidated,
        .guard_ud = l,
        .pinned = &l->value,
        /* Out of line, so that the pinned value is the stored entry itself: attached
         * callbacks compare it with what the cache holds later. */
        .out_of_line = true,
        /* A result byte-identical to the entry cached is no replacement: the entry stays,
         * with its callbacks, and the callers get it. */
        .keep_identical = true,
        .kept = &kept,
    };
    if (mc__cached_test_hook)
        mc__cached_test_hook(fn, MC__HOOK_BEFORE_STORE, l);
    int rc = mc__not_invalidated(l) ? mc__cache_put_ex(fn->cache, &a) : MC_ECANCELED;
    if (rc == 0) {
        /* The cache copied a copy result; it owns an owned one now, unless it kept the
         * identical entry it had (then the result is freed here). */
        if (l->res_kind == MC__RES_OWNED && !kept)
            l->res_kind = MC__RES_UNSET;
        mc__result_clear(l);
        return 0;
    }
    if (rc == MC_ECANCELED)
        atomic_fetch_add_explicit(&fn->cancelled, 1, memory_order_relaxed);
    /* Not stored (invalidated, or too heavy for the cache): the callers still get it. */
    l->value = mc__value_detached(&a);
    if (!l->value) {
        mc__result_clear(l);
        return MC_ENOMEM;
    }
    if (l->res_kind == MC__RES_OWNED)
        l->res_kind = MC__RES_UNSET; /* the detached value owns it */
    mc__result_clear(l);
    /* A refresh whose result the cache refused (too heavy, say) did not replace the entry:
     * it failed, and gives its claim back so that a later hit tries again. (An invalidated
     * one removed the entry it would have refreshed.) */
    if (l->refresh && rc != MC_ECANCELED)
        mc__refresh_failed(fn, l->key, l->klen);
    return 0;
}

static void mc__unref_locked(mc_load *l, mc_load **to_free)
{
    if (--l->refs == 0)
        *to_free = l;
}

/* Finish a single (non-batch) load: store or not, wake every waiter. */
static void mc__load_finish(mc_load *l, int rc)
{
    mc_cached *fn = l->fn;
    if (rc == 0)
        rc = mc__load_store(l);
    else
        mc__result_clear(l);
    if (rc != 0)
        atomic_fetch_add_explicit(&fn->load_errors, 1, memory_order_relaxed);
    if (rc != 0 && l->refresh)
        mc__refresh_failed(fn, l->key, l->klen);
    mc__observe_load(fn, l);

    struct mc__stripe_c *st = mc__stripe_of(fn, l->khash);
    mc_load *to_free = NULL;
    pthread_mutex_lock(&st->lock);
    mc__inflight_remove(st, l);
    l->rc = rc;
    l->done = true;
    struct mc__waiter *w = l->waiters;
    l->waiters = NULL;
    /* From here on the timer cannot reach these waiters: this completion answers them. */
    for (struct mc__waiter *x = w; x; x = x->next)
        if (x->deadline)
            mc__timed_remove(st, x);
    pthread_cond_broadcast(&st->cond);
    /* Async waiters are served before the table's reference goes. */
    l->refs++;
    pthread_mutex_unlock(&st->lock);

    while (w) {
        struct mc__waiter *next = w->next;
        if (rc == 0)
            mc_value_retain(l->value);
        w->done(w->ud, rc, rc == 0 ? l->value : NULL);
        free(w);
        w = next;
    }
    if (mc__cached_test_hook)
        mc__cached_test_hook(fn, MC__HOOK_FINISHED, l);
    pthread_mutex_lock(&st->lock);
    l->refs -= 2; /* the reference taken above and the in-flight table's */
    if (l->refs == 0)
        to_free = l;
    pthread_mutex_unlock(&st->lock);
    if (to_free)
        mc__load_free(to_free);
}

void mc_load_complete(mc_load *l, int rc)
{
    if (!l)
        return;
    if (rc > 0)
        rc = MC_EINVAL; /* MC_LOAD_PENDING again, or nonsense: an error, not a hang */
    if (!l->batch) {
        mc__load_finish(l, rc);
        return;
    }
    for (size_t i = 0; i < l->nitems; i++)
        mc__load_finish(l->items[i], rc);
    /* The batch shell is only the loader's handle; its items carry the results. */
    free(l->items);
    free(l);
}

/* Wait for a load to finish and take its result, or give up at `deadline` (monotonic ns;
 * 0: never) with MC_ETIMEDOUT; drops the caller's reference either way. */
static int mc__load_wait(mc_load *l, mc_value **out, uint64_t deadline)
{
    struct mc__stripe_c *st = mc__stripe_of(l->fn, l->khash);
    mc_load *to_free = NULL;
    struct timespec ts = deadline ? mc__abstime(deadline) : (struct timespec){0};
    pthread_mutex_lock(&st->lock);
    while (!l->done) {
        if (!deadline)
            pthread_cond_wait(&st->cond, &st->lock);
        else if (pthread_cond_timedwait(&st->cond, &st->lock, &ts) == ETIMEDOUT && !l->done)
            break;
    }
    int rc = l->done ? l->rc : MC_ETIMEDOUT;
    if (rc == 0) {
        mc_value_retain(l->value);
        *out = l->value;
    }
    if (!l->done)
        atomic_fetch_add_explicit(&l->fn->timeouts, 1, memory_order_relaxed);
    mc__unref_locked(l, &to_free);
    pthread_mutex_unlock(&st->lock);
    if (to_free)
        mc__load_free(to_free);
    return rc;
}

/* Find the load for a missing key or start one. Returns:
 *  1: a hit meanwhile (*hit set), 0: *load is someone else's (joined, a reference taken),
 *  2: *load is new and ours to run (one reference for us unless `async_waiter`), <0 error. */
static int mc__join_or_start(mc_cached *fn, const unsigned char *key, size_t klen, const mc_arg *args,
                             size_t nargs, struct mc__waiter *async_waiter, mc_load **load,
                             mc_value **hit)
{
    uint64_t h = mc__khash(key, klen);
    struct mc__stripe_c *st = mc__stripe_of(fn, h);
    bool bypass = atomic_load_explicit(&fn->bypass, memory_order_acquire);
    pthread_mutex_lock(&st->lock);
    mc_load *l = mc__inflight_find(st, key, klen, h);
    if (l) {
        if (async_waiter) {
            async_waiter->next = l->waiters;
            l->waiters = async_waiter;
            async_waiter->load = l;
            if (async_waiter->deadline)
                mc__timed_insert(st, async_waiter);
        } else {
            l->refs++;
        }
        atomic_fetch_add_explicit(&fn->joined, 1, memory_order_relaxed);
        pthread_mutex_unlock(&st->lock);
        *load = l;
        return 0;
    }
    /* A load that finished between our miss and this lock stored its result first: look
     * again, so that concurrent callers never load the same key twice. */
    if (!bypass && mc__cache_get_quiet(fn->cache, key, klen, hit) == 0) {
        pthread_mutex_unlock(&st->lock);
        return 1;
    }
    l = mc__load_new(fn, key, klen, h, args, nargs);
    if (!l) {
        pthread_mutex_unlock(&st->lock);
        return MC_ENOMEM;
    }
    if (bypass) /* shared by the callers of this key, never stored: the caches are not trusted */
        atomic_store_explicit(&l->invalidated, true, memory_order_relaxed);
    l->refs = async_waiter ? 1 : 2;
    l->waiters = async_waiter;
    if (async_waiter) {
        async_waiter->load = l;
        if (async_waiter->deadline)
            mc__timed_insert(st, async_waiter);
    }
    size_t b = mc__bucket_of(h);
    l->next = st->inflight[b];
    st->inflight[b] = l;
    pthread_mutex_unlock(&st->lock);
    atomic_fetch_add_explicit(&fn->loads, 1, memory_order_relaxed);
    *load = l;
    return 2;
}

static void mc__run_loader(mc_load *l)
{
    mc_cached *fn = l->fn;
    int rc = fn->loader(fn->self, l->args, l->nargs, l);
    if (rc != MC_LOAD_PENDING)
        mc__load_finish(l, rc > 0 ? MC_EINVAL : rc);
}

/* One batch-loader call for a batch shell; takes `flat` (the keys) and frees it. */
static void mc__run_batch(mc_load *batch, mc_arg *flat, size_t nkeys, size_t nargs)
{
    mc_cached *fn = batch->fn;
    int rc = fn->batch_loader(fn->self, flat, nkeys, nargs, batch);
    free(flat);
    if (rc != MC_LOAD_PENDING)
        mc_load_complete(batch, rc > 0 ? MC_EINVAL : rc);
}

/* ------------------------------------------------------------------ the load pool */

static void mc__job_done(mc_cached *fn)
{
    pthread_mutex_lock(&fn->jlock);
    if (--fn->jobs == 0)
        pthread_cond_broadcast(&fn->jcond);
    pthread_mutex_unlock(&fn->jlock);
}

static void mc__job_run(void *arg)
{
    struct mc__pooljob *j = arg;
    mc_cached *fn = j->fn;
    if (j->load->batch)
        mc__run_batch(j->load, j->flat, j->nkeys, j->nargs);
    else
        mc__run_loader(j->load);
    free(j);
    /* Last: destroy may free fn once this count reaches 0. */
    mc__job_done(fn);
}

/* A queued job taken back by mc_cached_destroy: its load ends with MC_ECANCELED. */
static void mc__job_cancel(void *arg)
{
    struct mc__pooljob *j = arg;
    mc_cached *fn = j->fn;
    if (j->load->batch) {
        free(j->flat);
        mc_load_complete(j->load, MC_ECANCELED);
    } else {
        mc__load_finish(j->load, MC_ECANCELED);
    }
    free(j);
    mc__job_done(fn);
}

/* Hand a load (or batch, with its keys `flat`, taken) to the pool. Returns 0, or an error with
 * nothing queued (the caller still owns the load and flat). */
static int mc__pool_submit_load(mc_cached *fn, mc_load *l, mc_arg *flat, size_t nkeys, size_t nargs)
{
    if (!fn->pool)
        return MC_ENOMEM;
    struct mc__pooljob *j = mc__malloc(sizeof *j);
    if (!j)
        return MC_ENOMEM;
    *j = (struct mc__pooljob){.fn = fn, .load = l, .flat = flat, .nkeys = nkeys, .nargs = nargs};
    pthread_mutex_lock(&fn->jlock);
    fn->jobs++;
    pthread_mutex_unlock(&fn->jlock);
    int rc = mc__workpool_submit(fn->pool, mc__job_run, j, fn, mc__job_cancel);
    if (rc != 0) {
        free(j);
        mc__job_done(fn);
    }
    return rc;
}

/* Run a new load (or batch, with its keys `flat`, taken): on the load pool when the function
 * has a load timeout, so that the caller can give up waiting; on this thread otherwise, or
 * when the pool refuses it (the caller's wait then starts after the loader). */
static void mc__start_load(mc_cached *fn, mc_load *l, mc_arg *flat, size_t nkeys, size_t nargs)
{
    if (fn->load_timeout_ns && mc__pool_submit_load(fn, l, flat, nkeys, nargs) == 0)
        return;
    if (l->batch)
        mc__run_batch(l, flat, nkeys, nargs);
    else
        mc__run_loader(l);
}

/* Destroy's side: take back this function's queued jobs, then wait for the running ones. */
static void mc__drain_jobs(mc_cached *fn)
{
    if (!fn->pool)
        return;
    mc__workpool_cancel(fn->pool, fn);
    pthread_mutex_lock(&fn->jlock);
    while (fn->jobs)
        pthread_cond_wait(&fn->jcond, &fn->jlock);
    pthread_mutex_unlock(&fn->jlock);
}

/* ------------------------------------------------------------------ the timer (async deadlines) */

/* Answer with MC_ETIMEDOUT every async waiter whose deadline passed. Returns the earliest
 * deadline still pending (UINT64_MAX if none). */
static uint64_t mc__fire_expired(mc_cached *fn)
{
    uint64_t now = mc__mono_now(), next = UINT64_MAX;
    struct mc__waiter *fire = NULL;
    for (unsigned s = 0; s < MC__CACHED_STRIPES; s++) {
        struct mc__stripe_c *st = &fn->stripes[s];
        pthread_mutex_lock(&st->lock);
        while (st->timed_first && st->timed_first->deadline <= now) {
            struct mc__waiter *w = st->timed_first;
            mc__timed_remove(st, w);
            /* Still on its load (a completion would have taken it off both lists). */
            for (struct mc__waiter **pp = &w->load->waiters; *pp; pp = &(*pp)->next)
                if (*pp == w) {
                    *pp = w->next;
                    break;
                }
            w->next = fire;
            fire = w;
        }
        if (st->timed_first && st->timed_first->deadline < next)
            next = st->timed_first->deadline;
        pthread_mutex_unlock(&st->lock);
    }
    while (fire) {
        struct mc__waiter *next_w = fire->next;
        atomic_fetch_add_explicit(&fn->timeouts, 1, memory_order_relaxed);
        fire->done(fire->ud, MC_ETIMEDOUT, NULL);
        free(fire);
        fire = next_w;
    }
    return next;
}

/* The function's timer fired (on the pool's timer thread): answer what is due, and arm again
 * for the earliest deadline left. A waiter listed meanwhile arms the timer itself, after it is
 * listed, so that none is missed between the scan and this. */
static int mc__timer_arm(mc_cached *fn, uint64_t deadline)
{
    return fn->pool ? mc__worktimer_arm(fn->pool, &fn->timer, deadline) : MC_ENOMEM;
}

static void mc__timer_fire(void *arg)
{
    mc_cached *fn = arg;
    uint64_t next = mc__fire_expired(fn);
    if (next != UINT64_MAX)
        mc__worktimer_arm(fn->pool, &fn->timer, next);
}

/* ------------------------------------------------------------------ refresh-ahead */

/* A hit claimed its entry's refresh (MC__AGE_REFRESH): start one reload of the key on the
 * pool, unless a load of it is running already (that one is the refresh: single flight).
 * The caller has its value already; it never waits for this. Nobody holds a reference but the
 * in-flight table's: callers that miss meanwhile join it as any load. */
/* A batch shell over `items` (the shell owns the array on success) and, in *flat, the
 * batch loader's keys copied from their arguments; NULL when out of memory (nothing taken). */
static mc_load *mc__batch_new(mc_cached *fn, mc_load **items, size_t nitems, size_t nargs, mc_arg **flat)
{
    mc_load *batch = mc__calloc(1, sizeof *batch);
    mc_arg *f = mc__malloc(nitems * (nargs ? nargs : 1) * sizeof *f);
    if (!batch || !f) {
        free(batch);
        free(f);
        return NULL;
    }
    *batch = (mc_load){.fn = fn, .batch = true, .items = items, .nitems = nitems};
    for (size_t j = 0; j < nitems && nargs; j++)
        memcpy(f + j * nargs, items[j]->args, nargs * sizeof *f);
    *flat = f;
    return batch;
}

static void mc__refresh_start(mc_cached *fn, const unsigned char *key, size_t klen, const mc_arg *args,
                              size_t nargs)
{
    uint64_t h = mc__khash(key, klen);
    struct mc__stripe_c *st = mc__stripe_of(fn, h);
    pthread_mutex_lock(&st->lock);
    if (mc__inflight_find(st, key, klen, h)) {
        /* Shared with the load running: it stores a fresher entry. */
        pthread_mutex_unlock(&st->lock);
        return;
    }
    mc_load *l = mc__load_new(fn, key, klen, h, args, nargs);
    if (!l) {
        pthread_mutex_unlock(&st->lock);
        mc__refresh_failed(fn, key, klen);
        return;
    }
    l->refresh = true;
    l->refs = 1; /* the in-flight table's */
    size_t b = mc__bucket_of(h);
    l->next = st->inflight[b];
    st->inflight[b] = l;
    pthread_mutex_unlock(&st->lock);
    atomic_fetch_add_explicit(&fn->loads, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&fn->refreshes, 1, memory_order_relaxed);
    if (!fn->loader) {
        /* Only a batch loader: the reload is a batch of this one key. */
        mc_load **items = mc__malloc(sizeof *items);
        mc_arg *flat = NULL;
        mc_load *shell = NULL;
        if (items) {
            items[0] = l;
            shell = mc__batch_new(fn, items, 1, l->nargs, &flat);
        }
        if (!shell) {
            free(items);
            mc__load_finish(l, MC_ENOMEM); /* counted as a failed refresh; the old value stays */
            return;
        }
        if (mc__pool_submit_load(fn, shell, flat, 1, l->nargs) != 0) {
            free(flat);
            mc_load_complete(shell, MC_ENOMEM); /* finishes l, frees the shell */
        }
        return;
    }
    if (mc__pool_submit_load(fn, l, NULL, 0, 0) != 0)
        mc__load_finish(l, MC_ENOMEM); /* counted as a failed refresh; the old value stays */
}

/* A refresh that did not replace the entry (the reload failed, or could not start): the old
 * value stays, and its claim is given back so that a later hit tries again. */
static void mc__refresh_failed(mc_cached *fn, const unsigned char *key, size_t klen)
{
    atomic_fetch_add_explicit(&fn->refresh_errors, 1, memory_order_relaxed);
    mc_value *old = NULL;
    if (mc__cache_get_quiet(fn->cache, key, klen, &old) == 0) {
        mc__value_refresh_unclaim(old);
        mc_value_release(old);
    }
}

/* ------------------------------------------------------------------ result setters */

int mc_load_set_copy(mc_load *l, const void *data, size_t len)
{
    if (!l || l->batch || (!data && len))
        return MC_EINVAL;
    if (len > UINT32_MAX)
        return MC_E2BIG;
    void *copy = mc__malloc(len ? len : 1);
    if (!copy)
        return MC_ENOMEM;
    if (len)
        memcpy(copy, data, len);
    mc__result_clear(l);
    l->res_kind = MC__RES_COPY;
    l->res_data = copy;
    l->res_len = len;
    return 0;
}

int mc_load_set_owned(mc_load *l, void *data, size_t len, mc_free_fn free_fn)
{
    if (!l || l->batch || (!data && len)) {
        if (free_fn && data)
            free_fn(data);
        return MC_EINVAL;
    }
    if (len > UINT32_MAX) {
        if (free_fn)
            free_fn(data);
        return MC_E2BIG;
    }
    mc__result_clear(l);
    l->res_kind = MC__RES_OWNED;
    l->res_data = data;
    l->res_len = len;
    l->res_free = free_fn;
    return 0;
}

int mc_load_set_none(mc_load *l)
{
    if (!l || l->batch)
        return MC_EINVAL;
    mc__result_clear(l);
    l->res_kind = MC__RES_NONE;
    return 0;
}

void mc_load_set_weight(mc_load *l, uint64_t elements)
{
    if (l && !l->batch)
        l->res_weight = elements;
}

mc_load *mc_load_item(mc_load *l, size_t i)
{
    if (!l || !l->batch || i >= l->nitems)
        return NULL;
    return l->items[i];
}

/* ------------------------------------------------------------------ calls */

/* Bounded staleness: true (and counted) when this call must not look at the cache. Every
 * call checks it before its lookup; a bypassing call takes the load path. */
static bool mc__call_bypasses(mc_cached *fn)
{
    if (!atomic_load_explicit(&fn->bypass, memory_order_acquire))
        return false;
    atomic_fetch_add_explicit(&fn->bypassed, 1, memory_order_relaxed);
    return true;
}

/* What a lookup learnt about its entry's age (rare: once per entry per refresh or expiry):
 * a hit that claimed the refresh starts it; a miss on an expired entry counts the expiry. */
static void mc__call_aged(mc_cached *fn, const unsigned char *key, size_t klen, const mc_arg *args,
                          size_t nargs, unsigned age)
{
    if (age & MC__AGE_REFRESH)
        mc__refresh_start(fn, key, klen, args, nargs);
    if (age & MC__AGE_EXPIRED)
        atomic_fetch_add_explicit(&fn->expiries, 1, memory_order_relaxed);
}

/* Every call's first step: encode the key into key (MC_KEY_MAX bytes) and look it up.
 * Returns 1 on a hit (*hit pinned), 0 on a miss, or an argument error. */
static int mc__call_lookup(mc_cached *fn, const mc_arg *args, size_t nargs, unsigned char *key,
                           size_t *klen, mc_value **hit)
{
    int rc = mc__call_key(fn, args, nargs, key, klen);
    if (rc != 0)
        return rc;
    if (mc__call_bypasses(fn))
        return 0; /* a miss: the load path, without the cache */
    unsigned age;
    bool found = mc__cache_get_aged(fn->cache, key, *klen, hit, &age) == 0;
    if (age)
        mc__call_aged(fn, key, *klen, args, nargs, age);
    return found;
}

/* After a miss on `key`: join the load in flight for it, or start one, and wait for its
 * value (or take the value a load stored meanwhile). */
static int mc__call_miss(mc_cached *fn, const unsigned char *key, size_t klen, const mc_arg *args,
                         size_t nargs, mc_value **out)
{
    /* Hits never read the clock; a miss's wait counts from here. */
    uint64_t deadline = mc__deadline(fn);
    mc_load *l;
    int rc = mc__join_or_start(fn, key, klen, args, nargs, NULL, &l, out);
    if (rc == 1)
        return 0;
    if (rc < 0)
        return rc;
    if (rc == 2)
        mc__start_load(fn, l, NULL, 0, 0);
    return mc__load_wait(l, out, deadline);
}

int mc_cached_call(mc_cached *fn, const mc_arg *args, size_t nargs, mc_value **out)
{
    if (!fn || !out)
        return MC_EINVAL;
    *out = NULL;
    if (!fn->loader)
        return MC_ENOTSUP;
    unsigned char key[MC_KEY_MAX];
    size_t klen;
    int rc = mc__call_lookup(fn, args, nargs, key, &klen, out);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    return mc__call_miss(fn, key, klen, args, nargs, out);
}

int mc_cached_call_copy(mc_cached *fn, const mc_arg *args, size_t nargs, void *buf, size_t cap,
                        size_t *vlen)
{
    if (!fn || !vlen || (!buf && cap))
        return MC_EINVAL;
    *vlen = 0;
    if (!fn->loader)
        return MC_ENOTSUP;
    unsigned char key[MC_KEY_MAX];
    size_t klen;
    int rc = mc__call_key(fn, args, nargs, key, &klen);
    if (rc != 0)
        return rc;
    bool none;
    if (!mc__call_bypasses(fn)) {
        /* A hit copies under the bucket's version and pins nothing. */
        unsigned age;
        rc = mc__cache_get_copy_aged(fn->cache, key, klen, buf, cap, vlen, &none, &age);
        if (age)
            mc__call_aged(fn, key, klen, args, nargs, age);
        if (rc == 0 || rc == MC_ERANGE)
            return none ? MC_ENOENT : rc;
        if (rc != MC_ENOENT)
            return rc;
    }
    /* A miss: the ordinary call (single flight, timeouts), then a copy of its result. */
    mc_value *v = NULL;
    rc = mc__call_miss(fn, key, klen, args, nargs, &v);
    if (rc != 0)
        return rc;
    size_t n = mc_value_size(v);
    *vlen = n;
    if (mc_value_is_none(v))
        rc = MC_ENOENT;
    else if (n > cap)
        rc = MC_ERANGE;
    else if (n)
        memcpy(buf, mc_value_data(v), n);
    mc_value_release(v);
    return rc;
}

static void mc__release_deferred(void *v) { mc_value_release(v); }

int mc_cached_call_borrow(mc_cached *fn, const mc_arg *args, size_t nargs, const void **data,
                          size_t *vlen)
{
    if (!fn || !data || !vlen || !mc__in_read())
        return MC_EINVAL;
    *data = NULL;
    *vlen = 0;
    if (!fn->loader)
        return MC_ENOTSUP;
    unsigned char key[MC_KEY_MAX];
    size_t klen;
    int rc = mc__call_key(fn, args, nargs, key, &klen);
    if (rc != 0)
        return rc;
    bool none;
    if (!mc__call_bypasses(fn)) {
        unsigned age;
        rc = mc__cache_get_borrow_aged(fn->cache, key, klen, data, vlen, &none, &age);
        if (age)
            mc__call_aged(fn, key, klen, args, nargs, age);
        if (rc == 0)
            return none ? MC_ENOENT : 0;
        if (rc != MC_ENOENT)
            return rc;
    }
    /* A miss: the ordinary call, its pin held until the section ends. */
    mc_value *v = NULL;
    rc = mc__call_miss(fn, key, klen, args, nargs, &v);
    if (rc != 0)
        return rc;
    if (mc_value_is_none(v)) {
        mc_value_release(v);
        return MC_ENOENT;
    }
    if (!mc__read_defer(mc__release_deferred, v)) {
        mc_value_release(v);
        return MC_ENOMEM;
    }
    *data = mc_value_data(v);
    *vlen = mc_value_size(v);
    return 0;
}

int mc_cached_call_async(mc_cached *fn, const mc_arg *args, size_t nargs, mc_done_fn done, void *ud)
{
    if (!fn || !done)
        return MC_EINVAL;
    if (!fn->loader)
        return MC_ENOTSUP;
    unsigned char key[MC_KEY_MAX];
    size_t klen;
    mc_value *v;
    int rc = mc__call_lookup(fn, args, nargs, key, &klen, &v);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        done(ud, 0, v);
        return 0;
    }
    /* Armed once before the waiter is listed, to learn that the pool can take it (nothing
     * fires early: a fire finds no deadline passed and re-arms for the next). */
    if (fn->load_timeout_ns && (rc = mc__timer_arm(fn, mc__deadline(fn))) != 0)
        return rc;
    struct mc__waiter *w = mc__calloc(1, sizeof *w);
    if (!w)
        return MC_ENOMEM;
    w->done = done;
    w->ud = ud;
    w->deadline = mc__deadline(fn);
    mc_load *l;
    uint64_t deadline = w->deadline; /* w may be answered and freed once it is listed */
    rc = mc__join_or_start(fn, key, klen, args, nargs, w, &l, &v);
    if (rc == 1) {
        free(w);
        done(ud, 0, v);
        return 0;
    }
    if (rc < 0) {
        free(w);
        return rc;
    }
    if (deadline)
        mc__timer_arm(fn, deadline);
    if (rc == 2)
        mc__start_load(fn, l, NULL, 0, 0);
    return 0;
}

int mc_cached_call_many(mc_cached *fn, const mc_arg *keys, size_t nkeys, size_t nargs,
                        mc_value **values, int *rcs)
{
    if (!fn || (!keys && nkeys) || (nkeys && (!values || !rcs)))
        return MC_EINVAL;
    if (!fn->batch_loader)
        return MC_ENOTSUP;
    uint64_t deadline = mc__deadline(fn);
    mc_load **waits = mc__calloc(nkeys ? nkeys : 1, sizeof *waits);
    mc_load **mine = mc__calloc(nkeys ? nkeys : 1, sizeof *mine);
    unsigned char *ages = mc__calloc(nkeys ? nkeys : 1, 1);
    if (!waits || !mine || !ages) {
        free(waits);
        free(mine);
        free(ages);
        for (size_t i = 0; i < nkeys; i++) {
            values[i] = NULL;
            rcs[i] = MC_ENOMEM;
        }
        return MC_ENOMEM;
    }
    /* Every key is looked up inside one read section (the lookups skip their own enter and
     * exit); what can run user code or wait (refreshes, loads) comes after it. rcs[i] is 1
     * for a key still to load. */
    bool bypass = mc__call_bypasses(fn);
    mc__read_enter();
    for (size_t i = 0; i < nkeys; i++) {
        values[i] = NULL;
        unsigned char key[MC_KEY_MAX];
        size_t klen;
        int rc = mc__call_key(fn, keys + i * nargs, nargs, key, &klen);
        if (rc != 0) {
            rcs[i] = rc;
            continue;
        }
        unsigned age = 0;
        bool found = !bypass && mc__cache_get_aged(fn->cache, key, klen, &values[i], &age) == 0;
        ages[i] = (unsigned char)age;
        rcs[i] = found ? 0 : 1;
    }
    mc__read_exit();
    size_t nmine = 0;
    for (size_t i = 0; i < nkeys; i++) {
        if (!ages[i] && rcs[i] != 1)
            continue;
        const mc_arg *a = keys + i * nargs;
        unsigned char key[MC_KEY_MAX];
        size_t klen;
        if (mc__call_key(fn, a, nargs, key, &klen) != 0)
            continue; /* encoded above: cannot fail now */
        if (ages[i])
            mc__call_aged(fn, key, klen, a, nargs, ages[i]);
        if (rcs[i] != 1)
            continue;
        int rc = mc__join_or_start(fn, key, klen, a, nargs, NULL, &waits[i], &values[i]);
        if (rc == 1) {
            rcs[i] = 0;
            waits[i] = NULL;
        } else if (rc < 0) {
            rcs[i] = rc;
            waits[i] = NULL;
        } else if (rc == 2) {
            mine[nmine++] = waits[i];
        }
    }
    if (nmine) {
        /* One batch-loader call for every key this call started. */
        mc_arg *flat = NULL;
        mc_load *batch = mc__batch_new(fn, mine, nmine, nargs, &flat);
        if (!batch) {
            for (size_t j = 0; j < nmine; j++)
                mc__load_finish(mine[j], MC_ENOMEM);
        } else {
            mine = NULL; /* the batch owns the array now */
            mc__start_load(fn, batch, flat, nmine, nargs);
        }
    }
    for (size_t i = 0; i < nkeys; i++)
        if (waits[i])
            rcs[i] = mc__load_wait(waits[i], &values[i], deadline);
    free(waits);
    free(mine);
    free(ages);
    return 0;
}

/* ------------------------------------------------------------------ invalidation */

/* Mark in-flight loads (all of them, or those whose key starts with prefix) so that their
 * results are not stored, and take them out of the in-flight table so that calls from now on
 * start a fresh load instead of joining a stale one (callers already waiting still get its
 * result). Runs before the entries are removed: see mc__load_store. */
static void mc__detach_inflight(mc_load **pp)
{
    mc_load *l = *pp;
    atomic_store_explicit(&l->invalidated, true, memory_order_release);
    *pp = l->next;
    l->next = NULL;
}

static void mc__mark_inflight(mc_cached *fn, const unsigned char *prefix, size_t plen, bool all)
{
    for (unsigned s = 0; s < MC__CACHED_STRIPES; s++) {
        struct mc__stripe_c *st = &fn->stripes[s];
        pthread_mutex_lock(&st->lock);
        for (unsigned b = 0; b < MC__CACHED_BUCKETS; b++) {
            mc_load **pp = &st->inflight[b];
            while (*pp) {
                if (all || mc_key_has_prefix((*pp)->key, (*pp)->klen, prefix, plen))
                    mc__detach_inflight(pp);
                else
                    pp = &(*pp)->next;
            }
        }
        pthread_mutex_unlock(&st->lock);
    }
}

/* Mark and detach the in-flight load of one key, if any. */
static void mc__mark_key(mc_cached *fn, const unsigned char *key, size_t klen)
{
    uint64_t h = mc__khash(key, klen);
    struct mc__stripe_c *st = mc__stripe_of(fn, h);
    pthread_mutex_lock(&st->lock);
    for (mc_load **pp = &st->inflight[mc__bucket_of(h)]; *pp; pp = &(*pp)->next) {
        mc_load *l = *pp;
        if (l->khash == h && l->klen == klen && memcmp(l->key, key, klen) == 0) {
            mc__detach_inflight(pp);
            break;
        }
    }
    pthread_mutex_unlock(&st->lock);
}

static void mc__attach_release(struct mc__attach *a);

/* After an invalidation removed the entries: run the callbacks still attached to the keys it
 * named (one key, or every key under a prefix; all: plen 0). The removals' listener ran those
 * of removed entries; what is left is a dependency recorded before its read (mc_load_call)
 * while the key was loading, which the invalidation must reach too, or an attachment whose
 * entry went already (its attacher would run it a moment later). */
static void mc__invalidate_attached(mc_cached *fn, const unsigned char *key, size_t klen, bool prefix)
{
    /* Acquire: pairs with the release of an attachment's count (see mc__on_evict). */
    if (atomic_load_explicit(&fn->n_attached, memory_order_acquire) == 0)
        return;
    struct mc__attach *run = NULL;
    uint64_t h = prefix ? 0 : mc__khash(key, klen);
    for (unsigned s = 0; s < MC__CACHED_STRIPES; s++) {
        struct mc__stripe_c *st = &fn->stripes[s];
        if (!prefix && st != mc__stripe_of(fn, h))
            continue;
        pthread_mutex_lock(&st->lock);
        for (unsigned b = 0; b < MC__CACHED_BUCKETS; b++) {
            if (!prefix && b != mc__bucket_of(h))
                continue;
            struct mc__attach **pp = &st->attached[b];
            while (*pp) {
                struct mc__attach *a = *pp;
                bool hit = prefix ? mc_key_has_prefix(a->key, a->klen, key, klen)
                                  : a->klen == klen && memcmp(a->key, key, klen) == 0;
                if (hit) {
                    *pp = a->next;
                    a->next = run;
                    run = a;
                } else {
                    pp = &a->next;
                }
            }
        }
        pthread_mutex_unlock(&st->lock);
    }
    while (run) {
        struct mc__attach *next = run->next;
        atomic_fetch_sub_explicit(&fn->n_attached, 1, memory_order_relaxed);
        run->cb(run->ud);
        mc__attach_release(run);
        run = next;
    }
}

static int mc__invalidate_key(mc_cached *fn, const unsigned char *key, size_t klen)
{
    mc__mark_key(fn, key, klen);
    mc__count_invalidation(fn);
    int rc = mc_cache_remove(fn->cache, key, klen);
    mc__invalidate_attached(fn, key, klen, false);
    return rc;
}

static size_t mc__invalidate_prefix(mc_cached *fn, const void *prefix, size_t plen)
{
    size_t removed = 0;
    mc__mark_inflight(fn, prefix, plen, false);
    mc__count_invalidation(fn);
    mc_cache_remove_prefix(fn->cache, prefix, plen, &removed);
    mc__invalidate_attached(fn, prefix, plen, true);
    return removed;
}

static size_t mc__invalidate_everything(mc_cached *fn)
{
    size_t removed = 0;
    mc__mark_inflight(fn, NULL, 0, true);
    mc__count_invalidation(fn);
    /* The empty prefix matches every key: a clear that counts what it removed. */
    mc_cache_remove_prefix(fn->cache, NULL, 0, &removed);
    mc__invalidate_attached(fn, NULL, 0, true);
    return removed;
}

/* How one tuple of `fields` fields applies to fn: 0 one key, 1 a subtree, or MC_EINVAL with
 * err saying why (index i in messages). */
static int mc__tuple_kind(const mc_cached *fn, int fields, size_t i, mc_error *err)
{
    if (fields < 0)
        return mc__error_set(err, MC_EINVAL, "key %zu: malformed key bytes", i);
    size_t n = (size_t)fields;
    if (n == 0)
        return mc__error_set(err, MC_EINVAL, "key %zu is empty; %s%s", i, fn->name[0] ? fn->name : "the function",
                             fn->key_len ? " takes keys of that many fields" : " needs at least one field");
    if (fn->key_len == 0)
        return fn->tree ? 1 : 0;
    if (n == fn->key_len)
        return 0;
    if (n < fn->key_len && fn->tree)
        return 1;
    return mc__error_set(err, MC_EINVAL, "key %zu has %zu field%s; %s takes %zu%s", i, n, n == 1 ? "" : "s",
                         fn->name[0] ? fn->name : "the function", fn->key_len,
                         fn->tree ? " (or fewer, for a subtree)" : "");
}

int mc_cached_apply(mc_cached *fn, const mc_invalidation *inv, mc_invalidation_result *res, mc_error *err)
{
    mc_invalidation_result local;
    if (!res)
        res = &local;
    memset(res, 0, sizeof *res);
    if (!fn || !inv || (!inv->all && inv->nkeys && !inv->keys))
        return MC_EINVAL;
    if (inv->all) {
        res->removed = mc__invalidate_everything(fn);
        return 0;
    }
    /* Every tuple is judged before anything is applied: a refusal changes nothing. */
    for (size_t i = 0; i < inv->nkeys; i++) {
        const mc_invalidation_key *k = &inv->keys[i];
        int kind = (!k->key && k->len) || k->len > MC_KEY_MAX
                       ? mc__error_set(err, MC_EINVAL, "key %zu: malformed key bytes", i)
                       : mc__tuple_kind(fn, mc_key_count(k->key, k->len), i, err);
        if (kind < 0) {
            res->bad_key = i;
            return kind;
        }
        if (kind == 1)
            res->prefixes++;
    }
    for (size_t i = 0; i < inv->nkeys; i++) {
        const mc_invalidation_key *k = &inv->keys[i];
        if (mc__tuple_kind(fn, mc_key_count(k->key, k->len), i, NULL) == 1)
            res->removed += mc__invalidate_prefix(fn, k->key, k->len);
        else if (mc__invalidate_key(fn, k->key, k->len) == 0)
            res->removed++;
    }
    return 0;
}

int mc_cached_invalidate(mc_cached *fn, const mc_arg *args, size_t nargs)
{
    if (!fn || (!args && nargs))
        return MC_EINVAL;
    unsigned char key[MC_KEY_MAX];
    size_t klen;
    int rc = mc__tuple_key(args, nargs, key, &klen);
    if (rc != 0)
        return rc;
    mc_invalidation_key k = {key, klen};
    mc_invalidation inv = {.keys = &k, .nkeys = 1};
    mc_invalidation_result res;
    rc = mc_cached_apply(fn, &inv, &res, NULL);
    if (rc != 0)
        return rc;
    return res.removed ? 0 : MC_ENOENT;
}

int mc_cached_invalidate_json(mc_cached *fn, const char *json, size_t len, mc_error *err)
{
    if (!fn || !json)
        return MC_EINVAL;
    unsigned char key[MC_KEY_MAX];
    size_t klen;
    int rc = mc_key_from_json(json, len, key, sizeof key, &klen, err);
    if (rc != 0)
        return rc;
    mc_invalidation_key k = {key, klen};
    mc_invalidation inv = {.keys = &k, .nkeys = 1};
    return mc_cached_apply(fn, &inv, NULL, err);
}

int mc_cached_invalidate_prefix(mc_cached *fn, const mc_arg *args, size_t nargs, size_t *removed)
{
    if (removed)
        *removed = 0;
    if (!fn || (!args && nargs))
        return MC_EINVAL;
    if (!fn->tree)
        return MC_ENOTSUP;
    if (fn->key_len && nargs > fn->key_len)
        return MC_EINVAL; /* longer than every key: it could only be a mistake */
    unsigned char prefix[MC_KEY_MAX];
    size_t plen;
    int rc = mc__tuple_key(args, nargs, prefix, &plen);
    if (rc != 0)
        return rc;
    size_t n = mc__invalidate_prefix(fn, prefix, plen);
    if (removed)
        *removed = n;
    return 0;
}

void mc_cached_invalidate_all(mc_cached *fn)
{
    if (!fn)
        return;
    mc__invalidate_everything(fn);
}

size_t mc_cached_key_length(const mc_cached *fn) { return fn ? fn->key_len : 0; }

bool mc_cached_bypassing(const mc_cached *fn)
{
    return fn && atomic_load_explicit(&((mc_cached *)fn)->bypass, memory_order_acquire);
}

uint64_t mc_cached_bypassed_calls(const mc_cached *fn)
{
    return fn ? atomic_load_explicit(&((mc_cached *)fn)->bypassed, memory_order_relaxed) : 0;
}

bool mc_cached_is_tree(const mc_cached *fn) { return fn && fn->tree; }

int mc_cached_prefill(mc_cached *fn, const mc_arg *args, size_t nargs, const void *value, size_t vlen)
{
    if (!fn || (!args && nargs) || (!value && vlen))
        return MC_EINVAL;
    unsigned char key[MC_KEY_MAX];
    size_t klen;
    int rc = mc__tuple_key(args, nargs, key, &klen);
    if (rc != 0)
        return rc;
    /* A load of this key that started earlier must not overwrite the prefilled value. */
    mc__mark_key(fn, key, klen);
    mc__put_args a = {.key = key, .klen = klen, .value = value, .vlen = vlen,
                      .weight = fn->iterable ? 1 : 0, .out_of_line = true, .keep_identical = true};
    return mc__cache_put_ex(fn->cache, &a);
}

/* ------------------------------------------------------------------ invalidation callbacks */

/* After running a popped attachment: free it, unless its loader still holds it. */
static void mc__attach_release(struct mc__attach *a)
{
    /* Acq_rel: whichever of the listener and the loader lets go last sees the other done. */
    if (!a->held || atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) == 1)
        free(a);
}

/* The cache's eviction listener: run the callbacks attached to the key that left. */
static void mc__on_evict(void *ud, const void *key, size_t klen, const void *value, size_t vlen,
                         mc_evict_reason reason)
{
    (void)value;
    (void)vlen;
    (void)reason;
    /* The same work as after an invalidation of that one key. */
    mc__invalidate_attached(ud, key, klen, false);
}

static void mc__dep_fire(void *ud);

/* Two attachments that are one: same key, same entry, same callback and user data (for
 * dependencies, the same key of the same function to invalidate). */
static bool mc__attach_same(const struct mc__attach *a, const struct mc__attach *b)
{
    if (a->cb != b->cb || a->entry != b->entry || a->klen != b->klen || memcmp(a->key, b->key, a->klen) != 0)
        return false;
    if (a->ud == b->ud)
        return true;
    if (a->cb != mc__dep_fire)
        return false;
    const struct mc__dep *x = a->ud, *y = b->ud;
    return x->hub == y->hub && x->klen == y->klen && memcmp(x->key, y->key, x->klen) == 0;
}

/* What mc__attach_value did with cb(ud). */
enum {
    MC__ATT_LISTED = 0, /* attached: runs once when the entry goes (or ran already, by then) */
    MC__ATT_DUP = 1,    /* the same attachment was listed: that one runs, for both */
    MC__ATT_GONE = 2,   /* the entry is no longer cached: not attached, not run */
};

/* An attachment of cb(ud) to key, not listed yet; NULL without memory. */
static struct mc__attach *mc__attach_new(mc_invalidate_fn cb, void *ud, const void *key, size_t klen)
{
    struct mc__attach *a = mc__malloc(sizeof *a + klen);
    if (!a)
        return NULL;
    a->cb = cb;
    a->ud = ud;
    a->entry = NULL;
    a->held = false;
    atomic_init(&a->refs, 1);
    a->klen = klen;
    memcpy(a->key, key, klen);
    return a;
}

static int mc__attach_insert(mc_cached *fn, struct mc__attach *a, const mc_value *v);

/* Attach cb(ud) to the entry `v` (pinned by the caller) came from, unless the same is
 * attached already. Never runs cb itself. Returns MC__ATT_* or MC_ENOMEM (not attached). */
static int mc__attach_value(mc_cached *fn, const mc_value *v, mc_invalidate_fn cb, void *ud)
{
    size_t klen;
    const void *key = mc_value_key(v, &klen);
    struct mc__attach *a = mc__attach_new(cb, ud, key, klen);
    return a ? mc__attach_insert(fn, a, v) : MC_ENOMEM;
}

/* List a (made by mc__attach_new for v's key; taken) for the entry v came from. */
/* The last step of attaching a (listed, held by the caller): if v is no longer the entry
 * cached under its key (never stored, or gone meanwhile), its listener may have run before a
 * was listed, so take a back (MC__ATT_GONE: unlisted, the caller's), unless a removal popped
 * it first (then that one runs it: MC__ATT_LISTED). Either way the caller lets go of a: the
 * hold keeps its address from being reused while it looks, so a node popped and freed is
 * never mistaken for a. */
static int mc__attach_settle(mc_cached *fn, struct mc__attach *a, uint64_t h, const mc_value *v)
{
    size_t klen;
    const void *key = mc_value_key(v, &klen); /* v's: a may be popped and run by now */
    mc_value *now = NULL;
    bool same = mc__cache_get_quiet(fn->cache, key, klen, &now) == 0 && now == v;
    if (now)
        mc_value_release(now);
    struct mc__stripe_c *st = mc__stripe_of(fn, h);
    bool found = false;
    pthread_mutex_lock(&st->lock);
    for (struct mc__attach **pp = &st->attached[mc__bucket_of(h)]; *pp; pp = &(*pp)->next)
        if (*pp == a) {
            found = true;
            if (!same)
                *pp = a->next;
            a->held = false; /* listed alone from now on, or the caller's alone */
            break;
        }
    pthread_mutex_unlock(&st->lock);
    if (!found) {
        mc__attach_release(a); /* popped: it ran (or runs) there */
        return MC__ATT_LISTED;
    }
    if (same)
        return MC__ATT_LISTED;
    atomic_fetch_sub_explicit(&fn->n_attached, 1, memory_order_relaxed);
    return MC__ATT_GONE;
}

static int mc__attach_insert(mc_cached *fn, struct mc__attach *a, const mc_value *v)
{
    uint64_t h = mc__khash(a->key, a->klen);
    a->entry = v;
    struct mc__stripe_c *st = mc__stripe_of(fn, h);
    size_t b = mc__bucket_of(h);
    bool dup = false;
    pthread_mutex_lock(&st->lock);
    for (struct mc__attach *x = st->attached[b]; x && !dup; x = x->next)
        dup = mc__attach_same(x, a);
    if (!dup) {
        a->held = true;
        atomic_init(&a->refs, 2); /* the list's and ours, until settled */
        a->next = st->attached[b];
        st->attached[b] = a;
        atomic_fetch_add_explicit(&fn->n_attached, 1, memory_order_release);
    }
    pthread_mutex_unlock(&st->lock);
    if (dup) {
        /* The one listed was attached for this very entry: whoever pops it (the entry's
         * listener, or its attacher if the entry was gone) runs it once for both. */
        free(a);
        return MC__ATT_DUP;
    }
    int r = mc__attach_settle(fn, a, h, v);
    if (r == MC__ATT_GONE)
        free(a);
    return r;
}

/* A caller's callback: attached, or run now (entry gone, or no memory to attach it). Returns
 * 0 or MC_ENOMEM. */
static int mc__attach_user(mc_cached *fn, const mc_value *v, mc_invalidate_fn cb, void *ud)
{
    int r = mc__attach_value(fn, v, cb, ud);
    if (r == MC__ATT_GONE || r < 0)
        cb(ud);
    return r < 0 ? r : 0;
}

int mc_cached_call_ex(mc_cached *fn, const mc_arg *args, size_t nargs, mc_invalidate_fn on_invalidate,
                      void *ud, mc_value **out)
{
    int rc = mc_cached_call(fn, args, nargs, out);
    if (!on_invalidate)
        return rc;
    if (rc != 0) {
        on_invalidate(ud); /* no entry to attach it to: it runs once, now */
        return rc;
    }
    rc = mc__attach_user(fn, *out, on_invalidate, ud);
    if (rc != 0) {
        mc_value_release(*out);
        *out = NULL;
    }
    return rc;
}

/* An asynchronous call with a callback: the caller's done, behind the attachment. */
struct mc__async_ex {
    mc_cached *fn;
    mc_done_fn done;
    void *ud;
    mc_invalidate_fn on_invalidate;
    void *inv_ud;
};

static void mc__async_ex_done(void *p, int rc, mc_value *v)
{
    struct mc__async_ex x = *(struct mc__async_ex *)p;
    free(p);
    if (rc == 0) {
        rc = mc__attach_user(x.fn, v, x.on_invalidate, x.inv_ud);
        if (rc != 0) {
            mc_value_release(v);
            v = NULL;
        }
    } else {
        x.on_invalidate(x.inv_ud);
    }
    x.done(x.ud, rc, v);
}

int mc_cached_call_async_ex(mc_cached *fn, const mc_arg *args, size_t nargs, mc_done_fn done, void *ud,
                            mc_invalidate_fn on_invalidate, void *inv_ud)
{
    if (!on_invalidate)
        return mc_cached_call_async(fn, args, nargs, done, ud);
    int rc = MC_EINVAL;
    struct mc__async_ex *x = fn && done ? mc__malloc(sizeof *x) : NULL;
    if (x) {
        *x = (struct mc__async_ex){fn, done, ud, on_invalidate, inv_ud};
        rc = mc_cached_call_async(fn, args, nargs, mc__async_ex_done, x);
        if (rc == 0)
            return 0; /* done runs (or ran): the callback is attached or ran before it */
        free(x);
    } else if (fn && done) {
        rc = MC_ENOMEM;
    }
    on_invalidate(inv_ud);
    return rc;
}

int mc_cached_call_many_ex(mc_cached *fn, const mc_arg *keys, size_t nkeys, size_t nargs,
                           mc_invalidate_fn on_invalidate, void *const *uds, mc_value **values, int *rcs)
{
    int rc = mc_cached_call_many(fn, keys, nkeys, nargs, values, rcs);
    if (!on_invalidate)
        return rc;
    for (size_t i = 0; i < nkeys; i++) {
        void *ud = uds ? uds[i] : NULL;
        if (rc != 0 || rcs[i] != 0) {
            on_invalidate(ud);
            continue;
        }
        int arc = mc__attach_user(fn, values[i], on_invalidate, ud);
        if (arc != 0) {
            mc_value_release(values[i]);
            values[i] = NULL;
            rcs[i] = arc;
        }
    }
    return rc;
}

void mc_prefill_options_init(mc_prefill_options *opts)
{
    if (opts)
        memset(opts, 0, sizeof *opts);
}

int mc_cached_prefill_ex(mc_cached *fn, const mc_arg *args, size_t nargs, const void *value, size_t vlen,
                         const mc_prefill_options *opts)
{
    mc_prefill_options none_set;
    if (!opts) {
        mc_prefill_options_init(&none_set);
        opts = &none_set;
    }
    unsigned char key[MC_KEY_MAX];
    size_t klen;
    int rc = MC_EINVAL;
    if (!fn || (!args && nargs) || (!value && vlen && !opts->none) || (opts->weight && !fn->iterable))
        goto fail;
    rc = mc__tuple_key(args, nargs, key, &klen);
    if (rc != 0)
        goto fail;
    /* The attachment first, so that running out of memory leaves nothing stored. */
    struct mc__attach *att = NULL;
    if (opts->on_invalidate && !(att = mc__attach_new(opts->on_invalidate, opts->ud, key, klen))) {
        rc = MC_ENOMEM;
        goto fail;
    }
    /* A load of this key that started earlier must not overwrite the prefilled value. */
    mc__mark_key(fn, key, klen);
    mc_value *v = NULL;
    mc__put_args a = {.key = key, .klen = klen, .value = value, .vlen = opts->none ? 0 : vlen,
                      .none = opts->none, .weight = fn->iterable ? (opts->weight ? opts->weight : 1) : 0,
                      .out_of_line = true, .keep_identical = true,
                      .pinned = opts->on_invalidate ? &v : NULL};
    rc = mc__cache_put_ex(fn->cache, &a);
    if (rc != 0) {
        free(att);
        goto fail;
    }
    if (att) {
        if (mc__attach_insert(fn, att, v) == MC__ATT_GONE)
            opts->on_invalidate(opts->ud); /* replaced or removed already */
        mc_value_release(v);
    }
    return 0;
fail:
    if (opts->on_invalidate)
        opts->on_invalidate(opts->ud); /* nothing stored: it runs once, now */
    return rc;
}

/* ------------------------------------------------------------------ dependencies */

static void mc__hub_unref(struct mc__dep_hub *hub)
{
    /* Acq_rel: the last holder sees every other holder's use of the hub finished. */
    if (atomic_fetch_sub_explicit(&hub->refs, 1, memory_order_acq_rel) != 1)
        return;
    pthread_mutex_destroy(&hub->lock);
    pthread_cond_destroy(&hub->cond);
    free(hub);
}

/* fn's hub, created on first use; NULL without memory. */
static struct mc__dep_hub *mc__hub_of(mc_cached *fn)
{
    /* Acquire: a hub another thread published is seen initialised. */
    struct mc__dep_hub *hub = atomic_load_explicit(&fn->deps, memory_order_acquire);
    if (hub)
        return hub;
    hub = mc__calloc(1, sizeof *hub);
    if (!hub)
        return NULL;
    pthread_mutex_init(&hub->lock, NULL);
    pthread_cond_init(&hub->cond, NULL);
    hub->fn = fn;
    atomic_init(&hub->refs, 1); /* the function's */
    struct mc__dep_hub *expect = NULL;
    /* Release on success publishes the initialised hub; acquire on failure reads the winner's. */
    if (atomic_compare_exchange_strong_explicit(&fn->deps, &expect, hub, memory_order_acq_rel,
                                                memory_order_acquire))
        return hub;
    mc__hub_unref(hub);
    return expect;
}

/* The entry a dependency was attached to is gone: invalidate the dependent key, unless its
 * function was destroyed. Runs exactly once per record (attachment rules). */
static void mc__dep_fire(void *ud)
{
    struct mc__dep *d = ud;
    struct mc__dep_hub *hub = d->hub;
    pthread_mutex_lock(&hub->lock);
    mc_cached *fn = hub->fn;
    if (fn)
        hub->busy++; /* mc_cached_destroy waits for this invalidation */
    pthread_mutex_unlock(&hub->lock);
    if (fn) {
        mc__invalidate_key(fn, d->key, d->klen);
        pthread_mutex_lock(&hub->lock);
        if (--hub->busy == 0)
            pthread_cond_broadcast(&hub->cond);
        pthread_mutex_unlock(&hub->lock);
    }
    mc__hub_unref(hub);
    free(d);
}

/* mc_cached_destroy: dependencies still attached elsewhere stop reaching fn. */
static void mc__deps_orphan(mc_cached *fn)
{
    struct mc__dep_hub *hub = atomic_load_explicit(&fn->deps, memory_order_acquire);
    if (!hub)
        return;
    pthread_mutex_lock(&hub->lock);
    hub->fn = NULL;
    while (hub->busy)
        pthread_cond_wait(&hub->cond, &hub->lock);
    pthread_mutex_unlock(&hub->lock);
    mc__hub_unref(hub);
}

/* A running load whose result must not be stored: marked, and taken out of the in-flight
 * table so that later calls start a fresh load rather than join it (as an invalidation of
 * its key would, without touching the entry cached now). */
static void mc__load_cancel(mc_load *l)
{
    struct mc__stripe_c *st = mc__stripe_of(l->fn, l->khash);
    pthread_mutex_lock(&st->lock);
    for (mc_load **pp = &st->inflight[mc__bucket_of(l->khash)]; *pp; pp = &(*pp)->next)
        if (*pp == l) {
            mc__detach_inflight(pp);
            break;
        }
    atomic_store_explicit(&l->invalidated, true, memory_order_release);
    pthread_mutex_unlock(&st->lock);
}

int mc_load_depends_on(mc_load *l, mc_cached *other, const mc_value *value)
{
    if (!l || l->batch || !other || !value)
        return MC_EINVAL;
    size_t vk;
    const void *vkey = mc_value_key(value, &vk);
    if (other == l->fn && vk == l->klen && memcmp(vkey, l->key, vk) == 0)
        return MC_EINVAL; /* its own key: the store would invalidate it */
    if (atomic_load_explicit(&l->invalidated, memory_order_acquire))
        return 0; /* not stored anyway */
    struct mc__dep_hub *hub = mc__hub_of(l->fn);
    struct mc__dep *d = hub ? mc__malloc(sizeof *d + l->klen) : NULL;
    if (!d) {
        mc__load_cancel(l); /* an untracked dependency: the result must not be cached */
        return MC_ENOMEM;
    }
    atomic_fetch_add_explicit(&hub->refs, 1, memory_order_relaxed); /* the record's */
    atomic_store_explicit(&l->fn->has_deps, true, memory_order_relaxed);
    d->hub = hub;
    d->klen = l->klen;
    memcpy(d->key, l->key, l->klen);
    int r = mc__attach_value(other, value, mc__dep_fire, d);
    if (r == MC__ATT_LISTED)
        return 0;
    mc__hub_unref(hub);
    free(d);
    if (r == MC__ATT_DUP)
        return 0; /* the same dependency is recorded already */
    /* Gone (the value read is no longer the one cached) or no memory: not stored. */
    mc__load_cancel(l);
    return r < 0 ? r : 0;
}

/* A dependency of l's key on other's key `key`, listed there before the entry is read (its
 * entry not known yet: it matches no duplicate), so that any removal of that key from now on
 * pops it and invalidates l's key, which takes l out of the in-flight table: no caller who
 * starts after such a removal joins l. NULL without memory (then l is cancelled). */
static struct mc__attach *mc__dep_pre(mc_load *l, mc_cached *other, const unsigned char *key, size_t klen)
{
    struct mc__dep_hub *hub = mc__hub_of(l->fn);
    struct mc__dep *d = hub ? mc__malloc(sizeof *d + l->klen) : NULL;
    struct mc__attach *a = d ? mc__attach_new(mc__dep_fire, d, key, klen) : NULL;
    if (!a) {
        free(d);
        mc__load_cancel(l); /* an untracked dependency: the result must not be cached */
        return NULL;
    }
    atomic_fetch_add_explicit(&hub->refs, 1, memory_order_relaxed); /* the record's */
    atomic_store_explicit(&l->fn->has_deps, true, memory_order_relaxed);
    d->hub = hub;
    d->klen = l->klen;
    memcpy(d->key, l->key, l->klen);
    a->held = true;
    atomic_init(&a->refs, 2); /* the list's and ours, until mc__dep_post */
    uint64_t h = mc__khash(key, klen);
    struct mc__stripe_c *st = mc__stripe_of(other, h);
    size_t b = mc__bucket_of(h);
    pthread_mutex_lock(&st->lock);
    a->next = st->attached[b];
    st->attached[b] = a;
    atomic_fetch_add_explicit(&other->n_attached, 1, memory_order_release);
    pthread_mutex_unlock(&st->lock);
    return a;
}

static void mc__dep_discard(struct mc__attach *a)
{
    struct mc__dep *d = a->ud;
    mc__hub_unref(d->hub);
    free(d);
    free(a);
}

/* After the read of a's key: bind a to the entry v came from (v NULL: the read failed, no
 * dependency), or drop it as a duplicate; if v is not the cached entry any more, l is not
 * stored. If a was popped meanwhile, it ran: l's key was invalidated already. Lets go of a. */
static void mc__dep_post(mc_load *l, mc_cached *other, struct mc__attach *a, const mc_value *v)
{
    uint64_t h = mc__khash(a->key, a->klen); /* a is held: still ours to read */
    struct mc__stripe_c *st = mc__stripe_of(other, h);
    bool found = false, keep = false;
    pthread_mutex_lock(&st->lock);
    for (struct mc__attach **pp = &st->attached[mc__bucket_of(h)]; *pp; pp = &(*pp)->next) {
        if (*pp != a)
            continue;
        found = true;
        keep = v != NULL;
        if (keep) {
            a->entry = v;
            for (struct mc__attach *x = st->attached[mc__bucket_of(h)]; x && keep; x = x->next)
                keep = x == a || !mc__attach_same(x, a);
        }
        if (!keep) {
            *pp = a->next;
            a->held = false; /* ours alone */
        }
        break;
    }
    pthread_mutex_unlock(&st->lock);
    if (!found) {
        mc__attach_release(a); /* popped: it ran (or runs) and frees its record */
        return;
    }
    if (!keep) {
        atomic_fetch_sub_explicit(&other->n_attached, 1, memory_order_relaxed);
        mc__dep_discard(a);
        return;
    }
    if (mc__attach_settle(other, a, h, v) == MC__ATT_GONE) {
        mc__dep_discard(a);
        mc__load_cancel(l); /* what was read is not cached any more */
    }
}

/* The checks of mc_load_call(_many) for one key of other: 0, or MC_EINVAL for the load's own. */
static int mc__dep_key_ok(const mc_load *l, const mc_cached *other, const unsigned char *key, size_t klen)
{
    return other == l->fn && klen == l->klen && memcmp(key, l->key, klen) == 0 ? MC_EINVAL : 0;
}

int mc_load_call(mc_load *l, mc_cached *other, const mc_arg *args, size_t nargs, mc_value **out)
{
    if (!out)
        return MC_EINVAL;
    *out = NULL;
    if (!l || l->batch || !other)
        return MC_EINVAL;
    unsigned char key[MC_KEY_MAX];
    size_t klen;
    int rc = mc__call_key(other, args, nargs, key, &klen);
    if (rc == 0)
        rc = mc__dep_key_ok(l, other, key, klen); /* a load waiting for itself */
    if (rc != 0)
        return rc;
    struct mc__attach *a = NULL;
    if (!atomic_load_explicit(&l->invalidated, memory_order_acquire))
        a = mc__dep_pre(l, other, key, klen);
    rc = mc_cached_call(other, args, nargs, out);
    if (a)
        mc__dep_post(l, other, a, rc == 0 ? *out : NULL);
    return rc;
}

int mc_load_call_many(mc_load *l, mc_cached *other, const mc_arg *keys, size_t nkeys, size_t nargs,
                      mc_value **values, int *rcs)
{
    if (!l || l->batch || !other || (!keys && nkeys) || (nkeys && (!values || !rcs)))
        return MC_EINVAL;
    struct mc__attach **pre = mc__calloc(nkeys ? nkeys : 1, sizeof *pre);
    if (!pre)
        mc__load_cancel(l);
    for (size_t i = 0; i < nkeys; i++) {
        unsigned char key[MC_KEY_MAX];
        size_t klen;
        if (mc__call_key(other, keys + i * nargs, nargs, key, &klen) != 0)
            continue; /* the call reports it */
        if (mc__dep_key_ok(l, other, key, klen) != 0) {
            for (size_t j = 0; pre && j < i; j++)
                if (pre[j])
                    mc__dep_post(l, other, pre[j], NULL);
            free(pre);
            return MC_EINVAL;
        }
        if (pre && !atomic_load_explicit(&l->invalidated, memory_order_acquire))
            pre[i] = mc__dep_pre(l, other, key, klen);
    }
    int rc = mc_cached_call_many(other, keys, nkeys, nargs, values, rcs);
    for (size_t i = 0; pre && i < nkeys; i++)
        if (pre[i])
            mc__dep_post(l, other, pre[i], rc == 0 && rcs[i] == 0 ? values[i] : NULL);
    free(pre);
    return rc;
}

/* ------------------------------------------------------------------ lifecycle */

/* max_entries times a factor, at least 1 and saturated far below overflow. */
static size_t mc__scaled_bound(size_t base, double factor)
{
    const double cap = (double)(SIZE_MAX / 4);
    double scaled = (double)base * factor;
    if (!(scaled < cap))
        return SIZE_MAX / 4;
    return scaled < 1.0 ? 1 : (size_t)(scaled + 0.5);
}

int mc_cached_create(const mc_cached_options *o, mc_loader_fn loader, void *self, mc_cached **out)
{
    if (!o || !out)
        return MC_EINVAL;
    *out = NULL;
    if ((!loader && !o->batch_loader) || o->max_entries == 0 || (o->uncached_args == NULL && o->n_uncached_args))
        return MC_EINVAL;
    if (o->name && strlen(o->name) > MC__NAME_MAX)
        return MC_EINVAL;
    if (o->registry && (!o->name || !*o->name))
        return MC_EINVAL;
    for (size_t i = 0; i < o->n_uncached_args; i++)
        if (o->uncached_args[i] >= 64 || (o->num_args && o->uncached_args[i] >= o->num_args))
            return MC_EINVAL;

    mc_cached *fn = mc__calloc(1, sizeof *fn);
    if (!fn)
        return MC_ENOMEM;
    if (o->name)
        strcpy(fn->name, o->name);
    fn->loader = loader;
    fn->batch_loader = o->batch_loader;
    fn->self = self;
    fn->num_args = o->num_args;
    fn->tree = o->tree;
    fn->iterable = o->iterable;
    fn->keep_unread = o->keep_unread_entries;
    fn->persist = o->persist;
    fn->base_max_entries = o->max_entries;
    fn->key_len = o->num_args;
    for (size_t i = 0; i < o->n_uncached_args && o->num_args; i++) {
        bool dup = false; /* an index listed twice leaves one field out, not two */
        for (size_t j = 0; j < i; j++)
            dup |= o->uncached_args[j] == o->uncached_args[i];
        if (!dup)
            fn->key_len--;
    }
    pthread_mutex_init(&fn->reflock, NULL);
    pthread_cond_init(&fn->refcond, NULL);
    if (o->n_uncached_args) {
        size_t n = o->num_args ? o->num_args : 64;
        for (size_t i = 0; i < n; i++)
            fn->key_arg[i] = true;
        for (size_t i = 0; i < o->n_uncached_args; i++)
            fn->key_arg[o->uncached_args[i]] = false;
        fn->key_mask_len = n;
    }
    for (unsigned s = 0; s < MC__CACHED_STRIPES; s++) {
        pthread_mutex_init(&fn->stripes[s].lock, NULL);
        mc__cond_init_monotonic(&fn->stripes[s].cond);
    }
    pthread_mutex_init(&fn->jlock, NULL);
    pthread_cond_init(&fn->jcond, NULL);
    mc__worktimer_init(&fn->timer, mc__timer_fire, fn, true);

    double factor = 1.0;
    uint64_t ttl = 0, timeout = 0;
    fn->refresh_after_ns = o->refresh_after_ns;
    fn->expire_after_write_ns = o->expire_after_write_ns;
    fn->none_ttl_ns = o->none_ttl_ns;
    if (o->registry) {
        mc__registry_defaults(o->registry, fn->name, &factor, &ttl, &timeout);
        /* The config's per-function settings replace the options' (operators tune them). */
        mc__registry_timing(o->registry, fn->name, &fn->refresh_after_ns, &fn->expire_after_write_ns,
                            &fn->none_ttl_ns);
        fn->pool = mc__registry_pool(o->registry);
    } else {
        fn->pool = mc__default_pool();
    }
    if (o->load_timeout_ns)
        timeout = o->load_timeout_ns;
    fn->load_timeout_ns = timeout == MC_TIMEOUT_NEVER ? 0 : timeout;
    fn->factor = factor;
    size_t bound = mc__scaled_bound(o->max_entries, factor);

    mc_cache_options co;
    mc_cache_options_init(&co);
    if (fn->iterable) {
        /* Weights are element counts: shard as if they were entries. */
        co.max_bytes = bound;
        co.shards = mc__auto_shards(bound, 0);
    } else {
        co.max_entries = bound;
    }
    co.policy = o->policy;
    co.ttl_ns = fn->keep_unread ? 0 : ttl;
    /* Access times (8 bytes per entry) let memory autotuning spare recently read entries;
     * kept always, since a function may join an autotuning registry after creation. */
    co.track_access = !fn->keep_unread;
    co.clock = o->clock;
    co.clock_ud = o->clock_ud;
    co.on_evict = mc__on_evict;
    co.on_evict_ud = fn;
    int rc = mc_cache_create(&co, &fn->cache);
    if (rc == 0)
        rc = mc__cache_set_write_rules(fn->cache, fn->refresh_after_ns, fn->expire_after_write_ns,
                                       fn->none_ttl_ns);
    if (rc != 0) {
        mc_cached_destroy(fn);
        return rc;
    }
    if (o->registry) {
        rc = mc_registry_add(o->registry, fn);
        if (rc != 0) {
            mc_cached_destroy(fn);
            return rc;
        }
    }
    *out = fn;
    return 0;
}

void mc_cached_destroy(mc_cached *fn)
{
    if (!fn)
        return;
    mc_registry *reg = fn->registry; /* one read: another thread may unregister it meanwhile */
    if (reg)
        mc_registry_remove(reg, fn); /* MC_ENOENT if it did: nothing left to do */
    /* Unregistered, so no new reference can be taken: wait for the holders to let go. */
    pthread_mutex_lock(&fn->reflock);
    while (fn->refs)
        pthread_cond_wait(&fn->refcond, &fn->reflock);
    pthread_mutex_unlock(&fn->reflock);
    /* Loads still running for callers that timed out finish first: they store into the
     * cache and run its listener. */
    mc__drain_jobs(fn);
    if (fn->pool) {
        mc__worktimer_cancel(fn->pool, &fn->timer);
        mc__workpool_release(fn->pool);
    }
    /* Dependencies recorded elsewhere stop reaching this function (no load runs now). */
    mc__deps_orphan(fn);
    mc_cache_destroy(fn->cache);
    for (unsigned s = 0; s < MC__CACHED_STRIPES; s++) {
        struct mc__stripe_c *st = &fn->stripes[s];
        for (unsigned b = 0; b < MC__CACHED_BUCKETS; b++) {
            /* The entries go with the function: their callbacks run, once, as for a clear. */
            struct mc__attach *a = st->attached[b];
            while (a) {
                struct mc__attach *next = a->next;
                a->cb(a->ud);
                mc__attach_release(a);
                a = next;
            }
        }
        pthread_mutex_destroy(&st->lock);
        pthread_cond_destroy(&st->cond);
    }
    pthread_mutex_destroy(&fn->jlock);
    pthread_cond_destroy(&fn->jcond);
    pthread_mutex_destroy(&fn->reflock);
    pthread_cond_destroy(&fn->refcond);
    free(fn);
}

void mc__cached_apply_factor(mc_cached *fn, double factor)
{
    fn->factor = factor;
    size_t bound = mc__scaled_bound(fn->base_max_entries, factor);
    if (fn->iterable)
        mc_cache_resize(fn->cache, 0, bound);
    else
        mc_cache_resize(fn->cache, bound, 0);
}

void mc_cached_stats_get(mc_cached *fn, mc_cached_stats *out)
{
    if (!fn || !out)
        return;
    memset(out, 0, sizeof *out);
    mc_cache_stats_get(fn->cache, &out->cache);
    out->loads = atomic_load_explicit(&fn->loads, memory_order_relaxed);
    out->load_errors = atomic_load_explicit(&fn->load_errors, memory_order_relaxed);
    out->joined = atomic_load_explicit(&fn->joined, memory_order_relaxed);
    out->invalidations = atomic_load_explicit(&fn->invalidations, memory_order_relaxed);
    out->cancelled_fills = atomic_load_explicit(&fn->cancelled, memory_order_relaxed);
    out->timeouts = atomic_load_explicit(&fn->timeouts, memory_order_relaxed);
    for (int i = 0; i < MC_INVALIDATION_NSOURCES; i++)
        out->invalidations_by_source[i] = atomic_load_explicit(&fn->inv_by_source[i], memory_order_relaxed);
    uint64_t cum = 0;
    for (int i = 0; i < MC_LOAD_BUCKETS; i++) {
        cum += atomic_load_explicit(&fn->load_hist[i], memory_order_relaxed);
        out->load_duration_buckets[i] = cum;
    }
    out->load_duration_sum_ns = atomic_load_explicit(&fn->load_sum_ns, memory_order_relaxed);
    out->refreshes = atomic_load_explicit(&fn->refreshes, memory_order_relaxed);
    out->refresh_errors = atomic_load_explicit(&fn->refresh_errors, memory_order_relaxed);
    out->expiries = atomic_load_explicit(&fn->expiries, memory_order_relaxed);
}

const char *mc_cached_name(const mc_cached *fn) { return fn ? fn->name : ""; }

mc_cache *mc_cached_cache(mc_cached *fn) { return fn ? fn->cache : NULL; }

bool mc_cached_is_iterable(const mc_cached *fn) { return fn && fn->iterable; }
