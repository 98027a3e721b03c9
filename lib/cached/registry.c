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

struct mc_registry {
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
};

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
    mc_registry *reg = mc__calloc(1, sizeof *reg);
    if (!reg)
        return MC_ENOMEM;
    reg->cfg = c;
    reg->cfg.per_cache_factors = NULL;
    reg->cfg.n_per_cache_factors = 0;
    if (reg->cfg.max_cache_memory_usage && !reg->cfg.target_cache_memory_usage)
        reg->cfg.target_cache_memory_usage = reg->cfg.max_cache_memory_usage;
    pthread_rwlock_init(&reg->lock, NULL);
    pthread_mutex_init(&reg->apply_lock, NULL);
    pthread_mutex_init(&reg->ctl, NULL);
    pthread_mutex_init(&reg->mlock, NULL);
    mc__cond_init_monotonic(&reg->mcond); /* the maintenance period: monotonic */
    for (size_t i = 0; i < c.n_per_cache_factors; i++)
        if (mc__set_named_factor(reg, c.per_cache_factors[i].name, c.per_cache_factors[i].factor, false) != 0) {
            mc_registry_destroy(reg);
            return MC_ENOMEM;
        }
    double env;
    reg->global = mc__env_factor(NULL, &env) ? env : c.global_factor;
    *out = reg;
    return 0;
}

void mc_registry_destroy(mc_registry *reg)
{
    if (!reg)
        return;
    mc_registry_stop(reg);
    pthread_rwlock_wrlock(&reg->lock);
    for (size_t i = 0; i < reg->n; i++)
        reg->fns[i]->registry = NULL;
    pthread_rwlock_unlock(&reg->lock);
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
    if (!reg || !fn || !fn->name[0] || (fn->registry && fn->registry != reg))
        return MC_EINVAL;
    pthread_rwlock_wrlock(&reg->lock);
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
    if (!reg || !fn)
        return MC_EINVAL;
    pthread_rwlock_wrlock(&reg->lock);
    bool found;
    size_t pos = mc__find_pos(reg, fn->name, &found);
    if (!found || reg->fns[pos] != fn) {
        pthread_rwlock_unlock(&reg->lock);
        return MC_ENOENT;
    }
    memmove(&reg->fns[pos], &reg->fns[pos + 1], (reg->n - pos - 1) * sizeof *reg->fns);
    reg->n--;
    fn->registry = NULL;
    pthread_rwlock_unlock(&reg->lock);
    return 0;
}

void mc__registry_forget(mc_registry *reg, const mc_cached *fn)
{
    pthread_rwlock_wrlock(&reg->lock);
    for (size_t i = 0; i < reg->n; i++)
        if (reg->fns[i] == fn) {
            /* Still registered, hence still alive: it may be touched. */
            reg->fns[i]->registry = NULL;
            memmove(&reg->fns[i], &reg->fns[i + 1], (reg->n - i - 1) * sizeof *reg->fns);
            reg->n--;
            break;
        }
    pthread_rwlock_unlock(&reg->lock);
}

mc_cached *mc_registry_find(mc_registry *reg, const char *name)
{
    if (!reg || !name)
        return NULL;
    pthread_rwlock_rdlock(&reg->lock);
    bool found;
    size_t pos = mc__find_pos(reg, name, &found);
    mc_cached *fn = found ? reg->fns[pos] : NULL;
    pthread_rwlock_unlock(&reg->lock);
    return fn;
}

void mc_registry_list(mc_registry *reg, mc_registry_visit_fn visit, void *ud)
{
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
    if (!reg || !name || (!json_keys && nkeys))
        return MC_EINVAL;
    pthread_rwlock_rdlock(&reg->lock);
    bool found;
    size_t pos = mc__find_pos(reg, name, &found);
    if (!found) {
        pthread_rwlock_unlock(&reg->lock);
        return mc__error_set(err, MC_ENOENT, "no cached function named '%s'", name);
    }
    mc_cached *fn = reg->fns[pos];
    int rc = 0;
    if (!json_keys) {
        mc_cached_invalidate_all(fn);
    } else {
        for (size_t i = 0; i < nkeys && rc == 0; i++)
            rc = mc_cached_invalidate_json(fn, json_keys[i], strlen(json_keys[i]), err);
    }
    pthread_rwlock_unlock(&reg->lock);
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
