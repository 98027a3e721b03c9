/* The `caches:` block of the host's YAML file read into an mc_cache_config: factors, TTL,
 * memory autotuning, each fault reported with its YAML path and position. */
#include <stdlib.h>

#include "core/alloc.h"
#include "core/error.h"
#include "modcache/cached.h"
#include "modcache/config.h"

#define MC__DEFAULT_ENTRY_TTL_NS (30ull * 60 * 1000000000ull)

static int mc__positive_factor(const mc_config_node *n, double *out, mc_error *err)
{
    int rc = mc_config_double(n, out, err);
    if (rc == 0 && !(*out > 0))
        rc = mc_config_fail(n, err, MC_EINVAL, "expected a factor above 0");
    return rc;
}

static int mc__read_autotuning(const mc_config_node *at, mc_cache_config *out, mc_error *err)
{
    static const char *const keys[] = {"max_cache_memory_usage", "target_cache_memory_usage",
                                       "min_cache_ttl", NULL};
    int rc = mc_config_allow_keys(at, keys, err);
    if (rc)
        return rc;
    const mc_config_node *n;
    uint64_t v;
    if ((n = mc_config_get(at, "max_cache_memory_usage"))) {
        if ((rc = mc_config_size(n, &v, err)))
            return rc;
        out->max_cache_memory_usage = (size_t)v;
    }
    if ((n = mc_config_get(at, "target_cache_memory_usage"))) {
        if ((rc = mc_config_size(n, &v, err)))
            return rc;
        out->target_cache_memory_usage = (size_t)v;
        if (out->max_cache_memory_usage && v > out->max_cache_memory_usage)
            return mc_config_fail(n, err, MC_EINVAL,
                                  "target_cache_memory_usage is above max_cache_memory_usage");
    }
    if ((n = mc_config_get(at, "min_cache_ttl")) && (rc = mc_config_duration(n, &out->min_cache_ttl_ns, err)))
        return rc;
    return 0;
}

/* One function's write-age settings: {refresh_after, expire_after_write, none_ttl}. */
static int mc__read_timing(const mc_config_node *n, mc_cache_timing *t, mc_error *err)
{
    static const char *const keys[] = {"refresh_after", "expire_after_write", "none_ttl", NULL};
    int rc = mc_config_allow_keys(n, keys, err);
    if (rc)
        return rc;
    const mc_config_node *v;
    if ((v = mc_config_get(n, "refresh_after")) && (rc = mc_config_duration(v, &t->refresh_after_ns, err)))
        return rc;
    if ((v = mc_config_get(n, "expire_after_write")) &&
        (rc = mc_config_duration(v, &t->expire_after_write_ns, err)))
        return rc;
    if ((v = mc_config_get(n, "none_ttl")) && (rc = mc_config_duration(v, &t->none_ttl_ns, err)))
        return rc;
    if (t->refresh_after_ns && t->expire_after_write_ns && t->refresh_after_ns >= t->expire_after_write_ns)
        return mc_config_fail(mc_config_get(n, "refresh_after"), err, MC_EINVAL,
                              "refresh_after must be shorter than expire_after_write");
    return 0;
}

int mc_config_read_caches(const mc_config_node *caches, mc_cache_config *out, mc_cache_factor **factors,
                          mc_error *err)
{
    static const char *const keys[] = {"global_factor", "per_cache_factors", "expire_caches",
                                       "cache_entry_ttl", "cache_autotuning", "maintenance_interval",
                                       "load_timeout", "load_pool_threads", "per_cache_timings", "snapshot", NULL};
    if (!out || !factors)
        return MC_EINVAL;
    mc_cache_config_init(out);
    *factors = NULL;
    if (!caches)
        return 0;
    int rc = mc_config_allow_keys(caches, keys, err);
    if (rc)
        return rc;
    const mc_config_node *n;
    if ((n = mc_config_get(caches, "global_factor")) && (rc = mc__positive_factor(n, &out->global_factor, err)))
        return rc;
    if ((n = mc_config_get(caches, "expire_caches")) && (rc = mc_config_bool(n, &out->expire_caches, err)))
        return rc;
    out->cache_entry_ttl_ns = MC__DEFAULT_ENTRY_TTL_NS;
    if ((n = mc_config_get(caches, "cache_entry_ttl")) && (rc = mc_config_duration(n, &out->cache_entry_ttl_ns, err)))
        return rc;
    if ((n = mc_config_get(caches, "maintenance_interval")) &&
        (rc = mc_config_duration(n, &out->maintenance_interval_ns, err)))
        return rc;
    if ((n = mc_config_get(caches, "load_timeout")) && (rc = mc_config_duration(n, &out->load_timeout_ns, err)))
        return rc;
    if ((n = mc_config_get(caches, "cache_autotuning")) && (rc = mc__read_autotuning(n, out, err)))
        return rc;
    if ((n = mc_config_get(caches, "load_pool_threads"))) {
        int64_t t;
        if ((rc = mc_config_int(n, &t, err)))
            return rc;
        if (t < 1 || t > 1024)
            return mc_config_fail(n, err, MC_EINVAL, "expected a thread count from 1 to 1024");
        out->load_pool_threads = (unsigned)t;
    }
    const mc_config_node *pf = mc_config_get(caches, "per_cache_factors");
    const mc_config_node *pt = mc_config_get(caches, "per_cache_timings");
    if (pf && mc_config_kind_of(pf) != MC_CONFIG_MAP)
        return mc_config_fail(pf, err, MC_EINVAL, "expected a map of cache names to factors");
    if (pt && mc_config_kind_of(pt) != MC_CONFIG_MAP)
        return mc_config_fail(pt, err, MC_EINVAL, "expected a map of cache names to timings");
    size_t nf = pf ? mc_config_count(pf) : 0, nt = pt ? mc_config_count(pt) : 0;
    if (!pf && !pt)
        return 0;
    /* One block, factors then timings, so that the caller frees one pointer (*factors). */
    mc_cache_factor *f = mc__calloc(1, nf * sizeof *f + nt * sizeof(mc_cache_timing) + 1);
    if (!f)
        return mc__error_set(err, MC_ENOMEM, "out of memory");
    mc_cache_timing *t = (mc_cache_timing *)(void *)(f + nf);
    for (size_t i = 0; i < nf; i++) {
        f[i].name = mc_config_key_at(pf, i);
        if ((rc = mc__positive_factor(mc_config_at(pf, i), &f[i].factor, err))) {
            free(f);
            return rc;
        }
    }
    for (size_t i = 0; i < nt; i++) {
        t[i].name = mc_config_key_at(pt, i);
        if ((rc = mc__read_timing(mc_config_at(pt, i), &t[i], err))) {
            free(f);
            return rc;
        }
    }
    if (nf) {
        out->per_cache_factors = f;
        out->n_per_cache_factors = nf;
    }
    if (nt) {
        out->timings = t;
        out->n_timings = nt;
    }
    *factors = f;
    return 0;
}
