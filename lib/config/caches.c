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

int mc_config_read_caches(const mc_config_node *caches, mc_cache_config *out, mc_cache_factor **factors,
                          mc_error *err)
{
    static const char *const keys[] = {"global_factor", "per_cache_factors", "expire_caches",
                                       "cache_entry_ttl", "cache_autotuning", "maintenance_interval",
                                       "load_timeout", "snapshot", NULL};
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
    if ((n = mc_config_get(caches, "per_cache_factors"))) {
        if (mc_config_kind_of(n) != MC_CONFIG_MAP)
            return mc_config_fail(n, err, MC_EINVAL, "expected a map of cache names to factors");
        size_t count = mc_config_count(n);
        mc_cache_factor *f = mc__calloc(count ? count : 1, sizeof *f);
        if (!f)
            return mc__error_set(err, MC_ENOMEM, "out of memory");
        for (size_t i = 0; i < count; i++) {
            f[i].name = mc_config_key_at(n, i);
            if ((rc = mc__positive_factor(mc_config_at(n, i), &f[i].factor, err))) {
                free(f);
                return rc;
            }
        }
        out->per_cache_factors = f;
        out->n_per_cache_factors = count;
        *factors = f;
    }
    return 0;
}
