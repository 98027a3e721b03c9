/* The registry of memoized functions by name: cache factors (config and environment), TTL,
 * invalidation by name with JSON keys, and the maintenance thread (expiry, memory autotuning). */
#include "cached/cached_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/cache_cached.h"
#include "core/alloc.h"
#include "core/error.h"

#define MC__DEFAULT_INTERVAL_NS 1000000000ull

struct mc__factor {
    char *name;
    double factor;
    bool runtime; /* set by mc_registry_set_factor: beats the environment */
};

struct mc__subscriber {
    mc_invalidation_subscriber fn;
    void *ud;
};

struct mc_registry {
    /* A scope (mc_registry_scope_create) has `root` set and uses nothing else below but
     * `open`: every call on it goes to its root. A view (mc__registry_view_create) has `root`
     * and `viewed` set and uses nothing else: it registers for the scope it views, under that
     * scope's open state, and controls nothing (see mc__registry_view_create). */
    mc_registry *root;
    mc_registry *viewed;
    _Atomic bool open;
    pthread_rwlock_t lock;
    mc_cached **fns; /* sorted by name */
    size_t n, cap;
    mc_cache_config cfg;        /* per_cache_factors points to `factors` */
    struct mc__factor *factors; /* config's, then set_factor's */
    size_t nfactors;
    double global; /* in effect: env, then config, then 1.0 */
    pthread_mutex_t apply_lock; /* serializes factor application (fn->factor, resizes) */
    /* Maintenance thread. ctl serializes start and stop (held across the join); mlock and
     * mcond are what the thread sleeps on. */
    pthread_mutex_t ctl;
    pthread_mutex_t mlock;
    pthread_cond_t mcond;
    pthread_t thread;
    bool running, stop;
    /* Subscribers, read-locked while one is called: unsubscribing (write lock) waits for the
     * calls in progress. */
    pthread_rwlock_t sublock;
    struct mc__subscriber *subs;
    size_t nsubs;
    /* Bounded staleness: every function bypasses its cache (write lock to change, so that a
     * function added meanwhile gets the state in force). */
    bool bypass;
    pthread_mutex_t bypass_lock; /* serializes mc_registry_set_bypass */
    /* The load pool of the functions created under it (threads start on first use), and the
     * per-function write-age settings (copied, names owned). Fixed after creation. */
    mc__workpool *pool;
    mc_cache_timing *timings;
    size_t ntimings;
};

mc_registry *mc__registry_root(mc_registry *reg) { return reg && reg->root ? reg->root : reg; }

/* The scope that registrations through a scope or a view belong to (NULL for a registry). */
static mc_registry *mc__owner_scope(mc_registry *reg)
{
    return reg->viewed ? reg->viewed : reg->root ? reg : NULL;
}

void mc_cache_config_init(mc_cache_config *cfg)
{
    if (cfg) {
        memset(cfg, 0, sizeof *cfg);
        cfg->global_factor = 1.0;
    }
}

/* MODCACHE_CACHE_FACTOR_<NAME>: upper case, anything but A-Z 0-9 as '_'. */
static bool mc__env_factor(const char *name, double *out)
{
    char var[sizeof "MODCACHE_CACHE_FACTOR_" + MC__NAME_MAX];
    if (name) {
        size_t n = strlen("MODCACHE_CACHE_FACTOR_");
        memcpy(var, "MODCACHE_CACHE_FACTOR_", n);
        for (const char *p = name; *p && n < sizeof var - 1; p++)
            var[n++] = isalnum((unsigned char)*p) ? (char)toupper((unsigned char)*p) : '_';
        var[n] = 0;
    } else {
        strcpy(var, "MODCACHE_CACHE_FACTOR");
    }
    const char *v = getenv(var);
    if (!v || !*v)
        return false;
    char *end;
    errno = 0;
    double f = strtod(v, &end);
    if (errno || *end || !(f > 0) || !isfinite(f))
        return false; /* a malformed override is ignored rather than taking a cache to 0 */
    *out = f;
    return true;
}

static double mc__factor_for(const mc_registry *reg, const char *name)
{
    const struct mc__factor *named = NULL;
    for (size_t i = 0; i < reg->nfactors; i++)
        if (strcmp(reg->factors[i].name, name) == 0)
            named = &reg->factors[i];
    if (named && named->runtime)
        return named->factor;
    double f;
    if (mc__env_factor(name, &f))
        return f;
    return named ? named->factor : reg->global;
}

static int mc__set_named_factor(mc_registry *reg, const char *name, double factor, bool runtime)
{
    for (size_t i = 0; i < reg->nfactors; i++)
        if (strcmp(reg->factors[i].name, name) == 0) {
            reg->factors[i].factor = factor;
            reg->factors[i].runtime = runtime;
            return 0;
        }
    struct mc__factor *nf = mc__realloc(reg->factors, (reg->nfactors + 1) * sizeof *nf);
    if (!nf)
        return MC_ENOMEM;
    reg->factors = nf;
    char *copy = mc__strdup(name);
    if (!copy)
        return MC_ENOMEM;
    reg->factors[reg->nfactors].name = copy;
    reg->factors[reg->nfactors].factor = factor;
    reg->factors[reg->nfactors].runtime = runtime;
    reg->nfactors++;
    return 0;
}

int mc_registry_create(const mc_cache_config *cfg, mc_registry **out)
{
    if (!out)
        return MC_EINVAL;
    *out = NULL;
    mc_cache_config c;
    if (cfg)
        c = *cfg;
    else
        mc_cache_config_init(&c);
    if (c.global_factor == 0)
        c.global_factor = 1.0;
    if (!(c.global_factor > 0) || !isfinite(c.global_factor) ||
        (c.n_per_cache_factors && !c.per_cache_factors))
        return MC_EINVAL;
    if (c.max_cache_memory_usage && c.target_cache_memory_usage > c.max_cache_memory_usage)
        return MC_EINVAL;
    for (size_t i = 0; i < c.n_per_cache_factors; i++)
        if (!c.per_cache_factors[i].name || !(c.per_cache_factors[i].factor > 0) ||
            !isfinite(c.per_cache_factors[i].factor))
            return MC_EINVAL;
    if (c.n_timings && !c.timings)
        return MC_EINVAL;
    for (size_t i = 0; i < c.n_timings; i++)
        if (!c.timings[i].name)
            return MC_EINVAL;
    mc_registry *reg = mc__calloc(1, sizeof *reg);
    if (!reg)
        return MC_ENOMEM;
    reg->cfg = c;
    reg->cfg.per_cache_factors = NULL;
    reg->cfg.n_per_cache_factors = 0;
    if (reg->cfg.max_cache_memory_usage && !reg->cfg.target_cache_memory_usage)
        reg->cfg.target_cache_memory_usage = reg->cfg.max_cache_memory_usage;
    pthread_rwlock_init(&reg->lock, NULL);
    pthread_rwlock_init(&reg->sublock, NULL);
    pthread_mutex_init(&reg->bypass_lock, NULL);
    pthread_mutex_init(&reg->apply_lock, NULL);
    pthread_mutex_init(&reg->ctl, NULL);
    pthread_mutex_init(&reg->mlock, NULL);
    mc__cond_init_monotonic(&reg->mcond); /* the maintenance period: monotonic */
    for (size_t i = 0; i < c.n_per_cache_factors; i++)
        if (mc__set_named_factor(reg, c.per_cache_factors[i].name, c.per_cache_factors[i].factor, false) != 0) {
            mc_registry_destroy(reg);
            return MC_ENOMEM;
        }
    reg->cfg.timings = NULL;
    reg->cfg.n_timings = 0;
    if (c.n_timings && !(reg->timings = mc__calloc(c.n_timings, sizeof *reg->timings))) {
        mc_registry_destroy(reg);
        return MC_ENOMEM;
    }
    for (size_t i = 0; i < c.n_timings; i++, reg->ntimings++) {
        reg->timings[i] = c.timings[i];
        if (!(reg->timings[i].name = mc__strdup(c.timings[i].name))) {
            mc_registry_destroy(reg);
            return MC_ENOMEM;
        }
    }
    if (mc__workpool_create(c.load_pool_threads, &reg->pool) != 0) {
        mc_registry_destroy(reg);
        return MC_ENOMEM;
    }
    double env;
    reg->global = mc__env_factor(NULL, &env) ? env : c.global_factor;
    *out = reg;
    return 0;
}

void mc__registry_timing(const mc_registry *reg, const char *name, uint64_t *refresh_ns, uint64_t *expire_ns,
                         uint64_t *none_ns)
{
    if (reg->root)
        reg = reg->root;
    /* The last entry of a name wins, as a YAML map's would. */
    for (size_t i = 0; i < reg->ntimings; i++) {
        const mc_cache_timing *t = &reg->timings[i];
        if (strcmp(t->name, name) != 0)
            continue;
        if (t->refresh_after_ns)
            *refresh_ns = t->refresh_after_ns;
        if (t->expire_after_write_ns)
            *expire_ns = t->expire_after_write_ns;
        if (t->none_ttl_ns)
            *none_ns = t->none_ttl_ns;
    }
}

mc__workpool *mc__registry_pool(mc_registry *reg)
{
    reg = mc__registry_root(reg);
    mc__workpool_retain(reg->pool);
    return reg->pool;
}

mc__workpool *mc__registry_workpool(mc_registry *reg) { return reg ? mc__registry_pool(reg) : NULL; }

static mc__workpool *mc__process_pool;
static pthread_once_t mc__process_pool_once = PTHREAD_ONCE_INIT;

static void mc__process_pool_create(void)
{
    /* Never released: it serves every registry-less function until the process exits. */
    if (mc__workpool_create(0, &mc__process_pool) != 0)
        mc__process_pool = NULL;
}

mc__workpool *mc__default_pool(void)
{
    pthread_once(&mc__process_pool_once, mc__process_pool_create);
    mc__workpool_retain(mc__process_pool);
    return mc__process_pool;
}

void mc_registry_destroy(mc_registry *reg)
{
    if (!reg || reg->viewed) /* a view destroys nothing: a module's handle */
        return;
    if (reg->root) {
        mc_registry_scope_destroy(reg);
        return;
    }
    mc_registry_stop(reg);
    pthread_rwlock_wrlock(&reg->lock);
    for (size_t i = 0; i < reg->n; i++) {
        reg->fns[i]->owner = NULL;
        reg->fns[i]->registry = NULL; /* last: see mc_registry_scope_clear */
    }
    pthread_rwlock_unlock(&reg->lock);
    /* Functions still alive keep the pool (each holds a reference): it stops with the last. */
    mc__workpool_release(reg->pool);
    for (size_t i = 0; i < reg->ntimings; i++)
        free((char *)reg->timings[i].name);
    free(reg->timings);
    free(reg->subs);
    pthread_rwlock_destroy(&reg->sublock);
    pthread_mutex_destroy(&reg->bypass_lock);
    for (size_t i = 0; i < reg->nfactors; i++)
        free(reg->factors[i].name);
    free(reg->factors);
    free(reg->fns);
    pthread_rwlock_destroy(&reg->lock);
    pthread_mutex_destroy(&reg->apply_lock);
    pthread_mutex_destroy(&reg->ctl);
    pthread_mutex_destroy(&reg->mlock);
    pthread_cond_destroy(&reg->mcond);
    free(reg);
}

void mc__registry_defaults(const mc_registry *reg, const char *name, double *factor, uint64_t *ttl_ns,
                           uint64_t *load_timeout_ns)
{
    if (reg->root)
        reg = reg->root;
    pthread_rwlock_rdlock((pthread_rwlock_t *)&reg->lock);
    *factor = mc__factor_for(reg, name);
    pthread_rwlock_unlock((pthread_rwlock_t *)&reg->lock);
    *ttl_ns = reg->cfg.expire_caches ? reg->cfg.cache_entry_ttl_ns : 0;
    *load_timeout_ns = reg->cfg.load_timeout_ns;
}

/* Position of name in the sorted array (where it is, or would go). */
static size_t mc__find_pos(const mc_registry *reg, const char *name, bool *found)
{
    size_t lo = 0, hi = reg->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(reg->fns[mid]->name, name);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

int mc_registry_add(mc_registry *reg, mc_cached *fn)
{
    if (!reg || !fn || !fn->name[0])
        return MC_EINVAL;
    /* Through a scope or a view: the function is the scope's. */
    mc_registry *owner = mc__owner_scope(reg);
    reg = mc__registry_root(reg);
    if (fn->registry && fn->registry != reg)
        return MC_EINVAL;
    pthread_rwlock_wrlock(&reg->lock);
    /* Only while the scope is open, read under the write lock: mc_registry_scope_clear takes
     * it after its owner closed the scope, so an add that finds the scope open is in the
     * registry before the clear looks, and one that comes later finds it closed. Checked
     * before the lock only, an add could pass the check, then land after the clear and stay
     * listed under a scope that is gone. */
    if (owner && !atomic_load_explicit(&owner->open, memory_order_acquire)) {
        pthread_rwlock_unlock(&reg->lock);
        return MC_EBUSY;
    }
    bool found;
    size_t pos = mc__find_pos(reg, fn->name, &found);
    if (found) {
        pthread_rwlock_unlock(&reg->lock);
        return MC_EEXIST;
    }
    if (reg->n == reg->cap) {
        size_t cap = reg->cap ? reg->cap * 2 : 16;
        mc_cached **a = mc__realloc(reg->fns, cap * sizeof *a);
        if (!a) {
            pthread_rwlock_unlock(&reg->lock);
            return MC_ENOMEM;
        }
        reg->fns = a;
        reg->cap = cap;
    }
    memmove(&reg->fns[pos + 1], &reg->fns[pos], (reg->n - pos) * sizeof *reg->fns);
    reg->fns[pos] = fn;
    reg->n++;
    fn->registry = reg;
    fn->owner = owner;
    atomic_store_explicit(&fn->bypass, reg->bypass, memory_order_release);
    pthread_rwlock_unlock(&reg->lock);
    /* The factor is read again under the apply lock, so that a concurrent set_factor (which
     * applies under the same locks, in the same order) cannot be undone by a stale value. */
    pthread_rwlock_rdlock(&reg->lock);
    pthread_mutex_lock(&reg->apply_lock);
    if (fn->registry == reg) {
        double f = mc__factor_for(reg, fn->name);
        if (f != fn->factor)
            mc__cached_apply_factor(fn, f);
    }
    pthread_mutex_unlock(&reg->apply_lock);
    pthread_rwlock_unlock(&reg->lock);
    return 0;
}

int mc_registry_remove(mc_registry *reg, mc_cached *fn)
{
    /* Through a scope or a view: only the scope's own functions (a module cannot unregister
     * another's). */
    mc_registry *scope = reg ? mc__owner_scope(reg) : NULL;
    reg = mc__registry_root(reg);
    if (!reg || !fn)
        return MC_EINVAL;
    pthread_rwlock_wrlock(&reg->lock);
    bool found;
    size_t pos = mc__find_pos(reg, fn->name, &found);
    if (!found || reg->fns[pos] != fn || (scope && fn->owner != scope)) {
        pthread_rwlock_unlock(&reg->lock);
        return MC_ENOENT;
    }
    memmove(&reg->fns[pos], &reg->fns[pos + 1], (reg->n - pos - 1) * sizeof *reg->fns);
    reg->n--;
    fn->owner = NULL;
    atomic_store_explicit(&fn->bypass, false, memory_order_release);
    fn->registry = NULL; /* last: see mc_registry_scope_clear */
    pthread_rwlock_unlock(&reg->lock);
    return 0;
}

void mc_registry_set_bypass(mc_registry *reg, bool on)
{
    if (reg && reg->viewed)
        return; /* a module's handle controls nothing registry-wide */
    reg = mc__registry_root(reg);
    if (!reg)
        return;
    pthread_mutex_lock(&reg->bypass_lock);
    if (on) {
        pthread_rwlock_wrlock(&reg->lock);
        reg->bypass = true;
        for (size_t i = 0; i < reg->n; i++)
            atomic_store_explicit(&reg->fns[i]->bypass, true, memory_order_release);
        pthread_rwlock_unlock(&reg->lock);
    } else if (reg->bypass) {
        /* Flushed before the caches are trusted again: whatever they held from before may
         * have been invalidated meanwhile. Read lock only: eviction callbacks may use the
         * registry; the flag is cleared per function after its flush. */
        pthread_rwlock_rdlock(&reg->lock);
        for (size_t i = 0; i < reg->n; i++) {
            mc_cached_invalidate_all(reg->fns[i]);
            atomic_store_explicit(&reg->fns[i]->bypass, false, memory_order_release);
        }
        pthread_rwlock_unlock(&reg->lock);
        pthread_rwlock_wrlock(&reg->lock);
        reg->bypass = false;
        for (size_t i = 0; i < reg->n; i++) /* added during the flush: they hold nothing old */
            atomic_store_explicit(&reg->fns[i]->bypass, false, memory_order_release);
        pthread_rwlock_unlock(&reg->lock);
    }
    pthread_mutex_unlock(&reg->bypass_lock);
}

bool mc_registry_bypassing(mc_registry *reg)
{
    reg = mc__registry_root(reg);
    if (!reg)
        return false;
    pthread_rwlock_rdlock(&reg->lock);
    bool on = reg->bypass;
    pthread_rwlock_unlock(&reg->lock);
    return on;
}

mc_cached *mc_registry_find(mc_registry *reg, const char *name)
{
    reg = mc__registry_root(reg);
    if (!reg || !name)
        return NULL;
    pthread_rwlock_rdlock(&reg->lock);
    bool found;
    size_t pos = mc__find_pos(reg, name, &found);
    mc_cached *fn = found ? reg->fns[pos] : NULL;
    pthread_rwlock_unlock(&reg->lock);
    return fn;
}

int mc_registry_acquire(mc_registry *reg, const char *name, mc_cached **out)
{
    reg = mc__registry_root(reg);
    if (out)
        *out = NULL;
    if (!reg || !name || !out)
        return MC_EINVAL;
    pthread_rwlock_rdlock(&reg->lock);
    bool found;
    size_t pos = mc__find_pos(reg, name, &found);
    mc_cached *fn = found ? reg->fns[pos] : NULL;
    if (fn) {
        /* Taken under the registry lock: destroy unregisters (write lock) before it waits for
         * the count, so it cannot miss this reference. */
        pthread_mutex_lock(&fn->reflock);
        fn->refs++;
        pthread_mutex_unlock(&fn->reflock);
    }
    pthread_rwlock_unlock(&reg->lock);
    *out = fn;
    return fn ? 0 : MC_ENOENT;
}

void mc_registry_release(mc_cached *fn)
{
    if (!fn)
        return;
    pthread_mutex_lock(&fn->reflock);
    if (fn->refs && --fn->refs == 0)
        pthread_cond_broadcast(&fn->refcond);
    pthread_mutex_unlock(&fn->reflock);
}

/* ------------------------------------------------------------------ scopes */

int mc_registry_scope_create(mc_registry *reg, mc_registry **scope)
{
    if (scope)
        *scope = NULL;
    if (!reg || !scope)
        return MC_EINVAL;
    /* Only a registry creates scopes: a scope made from a module's handle would be one that
     * its host never closes or clears. */
    if (reg->root)
        return MC_EBUSY;
    mc_registry *s = mc__calloc(1, sizeof *s);
    if (!s)
        return MC_ENOMEM;
    s->root = reg;
    atomic_init(&s->open, false);
    *scope = s;
    return 0;
}

int mc__registry_view_create(mc_registry *scope, mc_registry **view)
{
    if (view)
        *view = NULL;
    if (!scope || !scope->root || scope->viewed || !view)
        return MC_EINVAL;
    mc_registry *v = mc__calloc(1, sizeof *v);
    if (!v)
        return MC_ENOMEM;
    v->root = scope->root;
    v->viewed = scope;
    atomic_init(&v->open, false); /* never read: the viewed scope's is */
    *view = v;
    return 0;
}

void mc__registry_view_destroy(mc_registry *view)
{
    if (view && view->viewed)
        free(view);
}

void mc_registry_scope_open(mc_registry *scope, bool open)
{
    if (scope && scope->root && !scope->viewed)
        atomic_store_explicit(&scope->open, open, memory_order_release);
}

bool mc_registry_scope_owns(mc_registry *scope, const mc_cached *fn)
{
    if (!scope || !scope->root || !fn)
        return false;
    scope = mc__owner_scope(scope);
    mc_registry *reg = scope->root;
    pthread_rwlock_rdlock(&reg->lock);
    bool owns = false;
    for (size_t i = 0; i < reg->n && !owns; i++)
        owns = reg->fns[i] == fn && fn->owner == scope;
    pthread_rwlock_unlock(&reg->lock);
    return owns;
}

void mc_registry_scope_clear(mc_registry *scope)
{
    if (!scope || !scope->root || scope->viewed)
        return;
    mc_registry *reg = scope->root;
    /* Registered functions are alive (destroy unregisters first, under this lock): their
     * owner tag may be read. Destroyed ones are simply not found. */
    pthread_rwlock_wrlock(&reg->lock);
    size_t keep = 0;
    for (size_t i = 0; i < reg->n; i++) {
        mc_cached *fn = reg->fns[i];
        if (fn->owner == scope) {
            /* The registry pointer is cleared last: a destroy on another thread that reads it
             * as NULL skips unregistering and frees fn, so nothing here may touch fn after. */
            fn->owner = NULL;
            fn->registry = NULL;
        } else {
            reg->fns[keep++] = fn;
        }
    }
    reg->n = keep;
    pthread_rwlock_unlock(&reg->lock);
}

void mc_registry_scope_destroy(mc_registry *scope)
{
    if (!scope || !scope->root || scope->viewed)
        return;
    atomic_store_explicit(&scope->open, false, memory_order_release);
    mc_registry_scope_clear(scope);
    free(scope);
}

/* ------------------------------------------------------------------ invalidation */

int mc_registry_subscribe(mc_registry *reg, mc_invalidation_subscriber fn, void *ud)
{
    reg = mc__registry_root(reg);
    if (!reg || !fn)
        return MC_EINVAL;
    pthread_rwlock_wrlock(&reg->sublock);
    struct mc__subscriber *s = mc__realloc(reg->subs, (reg->nsubs + 1) * sizeof *s);
    int rc = s ? 0 : MC_ENOMEM;
    if (s) {
        reg->subs = s;
        reg->subs[reg->nsubs++] = (struct mc__subscriber){fn, ud};
    }
    pthread_rwlock_unlock(&reg->sublock);
    return rc;
}

int mc_registry_unsubscribe(mc_registry *reg, mc_invalidation_subscriber fn, void *ud)
{
    reg = mc__registry_root(reg);
    if (!reg || !fn)
        return MC_EINVAL;
    pthread_rwlock_wrlock(&reg->sublock);
    int rc = MC_ENOENT;
    for (size_t i = 0; i < reg->nsubs; i++)
        if (reg->subs[i].fn == fn && reg->subs[i].ud == ud) {
            memmove(&reg->subs[i], &reg->subs[i + 1], (reg->nsubs - i - 1) * sizeof *reg->subs);
            reg->nsubs--;
            rc = 0;
            break;
        }
    pthread_rwlock_unlock(&reg->sublock);
    return rc;
}

int mc_registry_apply(mc_registry *reg, mc_cached *fn, const mc_invalidation *inv,
                      mc_invalidation_result *res, mc_error *err)
{
    mc_invalidation_result local;
    if (!res)
        res = &local;
    memset(res, 0, sizeof *res);
    reg = mc__registry_root(reg);
    if (!reg || !inv || (!fn && !inv->name))
        return MC_EINVAL;
    mc_cached *held = NULL;
    if (!fn) {
        if (mc_registry_acquire(reg, inv->name, &held) != 0)
            return mc__error_set(err, MC_ENOENT, "no cached function named '%s'", inv->name);
        fn = held;
    }
    /* No registry lock is held from here: invalidation callbacks and subscribers may call the
     * registry freely. The reference keeps fn alive. */
    int rc = mc_cached_apply(fn, inv, res, err);
    if (rc == 0) {
        mc_invalidation named = *inv;
        if (!named.name || !*named.name)
            named.name = fn->name;
        pthread_rwlock_rdlock(&reg->sublock);
        for (size_t i = 0; i < reg->nsubs; i++) {
            int src = reg->subs[i].fn(reg->subs[i].ud, &named, res);
            if (src == 0)
                res->subscribers++;
            else if (rc == 0)
                rc = mc__error_set(err, src, "applied here; handing it on failed: %s", mc_strerror(src));
        }
        pthread_rwlock_unlock(&reg->sublock);
    }
    mc_registry_release(held);
    return rc;
}

void mc_registry_list(mc_registry *reg, mc_registry_visit_fn visit, void *ud)
{
    reg = mc__registry_root(reg);
    if (!reg || !visit)
        return;
    pthread_rwlock_rdlock(&reg->lock);
    for (size_t i = 0; i < reg->n; i++) {
        mc_cached_stats st;
        mc_cached_stats_get(reg->fns[i], &st);
        visit(ud, reg->fns[i], &st);
    }
    pthread_rwlock_unlock(&reg->lock);
}

int mc_registry_invalidate(mc_registry *reg, const char *name, const char *const *json_keys,
                           size_t nkeys, mc_error *err)
{
    reg = mc__registry_root(reg);
    if (!reg || !name || (!json_keys && nkeys))
        return MC_EINVAL;
    mc_invalidation inv = {.name = name, .all = json_keys == NULL};
    mc_invalidation_key *keys = NULL;
    unsigned char *buf = NULL;
    int rc = 0;
    if (!inv.all && nkeys) {
        /* The JSON edge: every key parsed before anything is applied. */
        keys = mc__calloc(nkeys, sizeof *keys);
        unsigned char *one = mc__malloc(MC_KEY_MAX);
        size_t used = 0, cap = 64;
        buf = mc__malloc(cap); /* never NULL below: empty keys point into it too */
        rc = keys && one && buf ? 0 : MC_ENOMEM;
        for (size_t i = 0; i < nkeys && rc == 0; i++) {
            mc_error kerr = {0};
            size_t len = 0;
            if (!json_keys[i])
                rc = mc__error_set(err, MC_EINVAL, "key %zu: NULL", i);
            else if ((rc = mc_key_from_json(json_keys[i], strlen(json_keys[i]), one, MC_KEY_MAX, &len, &kerr)))
                rc = mc__error_set(err, rc, "key %zu: %s", i, kerr.message[0] ? kerr.message : mc_strerror(rc));
            if (rc == 0 && used + len > cap) {
                size_t ncap = (used + len) * 2 + 64;
                unsigned char *nb = mc__realloc(buf, ncap);
                if (!nb)
                    rc = MC_ENOMEM;
                else {
                    buf = nb;
                    cap = ncap;
                }
            }
            if (rc == 0) {
                if (len)
                    memcpy(buf + used, one, len);
                keys[i].key = (const void *)(uintptr_t)used; /* an offset until buf stops moving */
                keys[i].len = len;
                used += len;
            }
        }
        free(one);
        for (size_t i = 0; i < nkeys && rc == 0; i++)
            keys[i].key = buf + (uintptr_t)keys[i].key;
        inv.keys = keys;
        inv.nkeys = nkeys;
    }
    if (rc == 0)
        rc = mc_registry_apply(reg, NULL, &inv, NULL, err);
    free(keys);
    free(buf);
    return rc;
}

/* Resize every function whose factor changed. Under the read lock only: the evictions run
 * invalidation callbacks, which may call back into the registry (invalidate by name, list). */
static void mc__apply_factors(mc_registry *reg)
{
    pthread_rwlock_rdlock(&reg->lock);
    pthread_mutex_lock(&reg->apply_lock);
    for (size_t i = 0; i < reg->n; i++) {
        double f = mc__factor_for(reg, reg->fns[i]->name);
        if (f != reg->fns[i]->factor)
            mc__cached_apply_factor(reg->fns[i], f);
    }
    pthread_mutex_unlock(&reg->apply_lock);
    pthread_rwlock_unlock(&reg->lock);
}

int mc_registry_reload_factors(mc_registry *reg, const mc_cache_config *cfg)
{
    if (reg && reg->viewed)
        return MC_EBUSY;
    reg = mc__registry_root(reg);
    if (!reg || !cfg || (cfg->n_per_cache_factors && !cfg->per_cache_factors))
        return MC_EINVAL;
    double global = cfg->global_factor == 0 ? 1.0 : cfg->global_factor;
    if (!(global > 0) || !isfinite(global))
        return MC_EINVAL;
    for (size_t i = 0; i < cfg->n_per_cache_factors; i++)
        if (!cfg->per_cache_factors[i].name || !(cfg->per_cache_factors[i].factor > 0) ||
            !isfinite(cfg->per_cache_factors[i].factor))
            return MC_EINVAL;
    /* The new list is built aside, so that a failed allocation changes nothing. */
    struct mc__factor *nf = mc__calloc(cfg->n_per_cache_factors ? cfg->n_per_cache_factors : 1, sizeof *nf);
    if (!nf)
        return MC_ENOMEM;
    for (size_t i = 0; i < cfg->n_per_cache_factors; i++) {
        nf[i].factor = cfg->per_cache_factors[i].factor;
        if (!(nf[i].name = mc__strdup(cfg->per_cache_factors[i].name))) {
            for (size_t j = 0; j < i; j++)
                free(nf[j].name);
            free(nf);
            return MC_ENOMEM;
        }
    }
    pthread_rwlock_wrlock(&reg->lock);
    double env;
    reg->global = mc__env_factor(NULL, &env) ? env : global;
    for (size_t i = 0; i < reg->nfactors; i++)
        free(reg->factors[i].name);
    free(reg->factors);
    reg->factors = nf;
    reg->nfactors = cfg->n_per_cache_factors;
    pthread_rwlock_unlock(&reg->lock);
    mc__apply_factors(reg);
    return 0;
}

int mc_registry_set_factor(mc_registry *reg, const char *name, double factor)
{
    if (reg && reg->viewed)
        return MC_EBUSY; /* the host's configuration sizes caches, not a module */
    reg = mc__registry_root(reg);
    if (!reg || !(factor > 0) || !isfinite(factor))
        return MC_EINVAL;
    pthread_rwlock_wrlock(&reg->lock);
    int rc = 0;
    if (name) {
        bool found;
        mc__find_pos(reg, name, &found);
        rc = found ? mc__set_named_factor(reg, name, factor, true) : MC_ENOENT;
    } else {
        reg->global = factor;
    }
    pthread_rwlock_unlock(&reg->lock);
    if (rc != 0)
        return rc;
    mc__apply_factors(reg);
    return 0;
}

/* ------------------------------------------------------------------ maintenance */

static size_t mc__usage(const mc_registry *reg)
{
    return reg->cfg.memory_usage ? reg->cfg.memory_usage(reg->cfg.memory_usage_ud)
                                 : mc__allocated_bytes();
}

void mc_registry_maintain(mc_registry *reg, size_t *evicted)
{
    reg = mc__registry_root(reg);
    if (evicted)
        *evicted = 0;
    if (!reg)
        return;
    size_t total = 0;
    pthread_rwlock_rdlock(&reg->lock);
    for (size_t i = 0; i < reg->n; i++)
        mc_cache_cleanup(reg->fns[i]->cache);
    if (reg->cfg.max_cache_memory_usage && mc__usage(reg) > reg->cfg.max_cache_memory_usage) {
        /* Rounds over every function, each giving up a slice of its least recently used
         * idle entries, until memory is at the target or nothing more may go. */
        for (int round = 0; round < 1000; round++) {
            size_t this_round = 0;
            for (size_t i = 0; i < reg->n; i++) {
                mc_cached *fn = reg->fns[i];
                if (fn->keep_unread)
                    continue;
                size_t size = mc_cache_size(fn->cache);
                size_t quota = size / 32 > 64 ? size / 32 : 64;
                size_t n = 0;
                mc_cache_evict_idle(fn->cache, reg->cfg.min_cache_ttl_ns, quota, &n);
                this_round += n;
            }
            total += this_round;
            /* Entries this thread evicted are freed after a grace period: wait for it, so
             * that the memory reading reflects them. */
            mc__reclaim_now();
            if (this_round == 0 || mc__usage(reg) <= reg->cfg.target_cache_memory_usage)
                break;
        }
    }
    pthread_rwlock_unlock(&reg->lock);
    if (evicted)
        *evicted = total;
}

static void *mc__maintenance_main(void *arg)
{
    mc_registry *reg = arg;
    uint64_t interval = reg->cfg.maintenance_interval_ns ? reg->cfg.maintenance_interval_ns
                                                         : MC__DEFAULT_INTERVAL_NS;
    pthread_mutex_lock(&reg->mlock);
    while (!reg->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + interval;
        ts.tv_sec += (time_t)(ns / 1000000000u);
        ts.tv_nsec = (long)(ns % 1000000000u);
        pthread_cond_timedwait(&reg->mcond, &reg->mlock, &ts);
        if (reg->stop)
            break;
        pthread_mutex_unlock(&reg->mlock);
        mc_registry_maintain(reg, NULL);
        pthread_mutex_lock(&reg->mlock);
    }
    pthread_mutex_unlock(&reg->mlock);
    return NULL;
}

int mc_registry_start(mc_registry *reg)
{
    if (reg && reg->viewed)
        return MC_EBUSY;
    reg = mc__registry_root(reg);
    if (!reg)
        return MC_EINVAL;
    pthread_mutex_lock(&reg->ctl);
    int rc = 0;
    if (!reg->running) {
        pthread_mutex_lock(&reg->mlock);
        reg->stop = false;
        pthread_mutex_unlock(&reg->mlock);
        rc = pthread_create(&reg->thread, NULL, mc__maintenance_main, reg);
        reg->running = rc == 0;
    }
    pthread_mutex_unlock(&reg->ctl);
    return rc == 0 ? 0 : MC_ENOMEM;
}

void mc_registry_stop(mc_registry *reg)
{
    if (reg && reg->viewed)
        return;
    reg = mc__registry_root(reg);
    if (!reg)
        return;
    pthread_mutex_lock(&reg->ctl);
    if (reg->running) {
        pthread_mutex_lock(&reg->mlock);
        reg->stop = true;
        pthread_cond_signal(&reg->mcond);
        pthread_mutex_unlock(&reg->mlock);
        pthread_join(reg->thread, NULL);
        reg->running = false;
    }
    pthread_mutex_unlock(&reg->ctl);
}
