/* The host's YAML file checked section by section (server, caches, invalidation, modules) into
 * an mc_host_config, refusing unknown sections and keys before anything starts. */
#include <stdlib.h>
#include <string.h>

#include "modcache/host.h"

static int mc__read_server(const mc_config_node *n, mc_host_config *out, mc_error *err)
{
    static const char *const keys[] = {"listen", "admin_token_file", NULL};
    int rc = mc_config_allow_keys(n, keys, err);
    const mc_config_node *v;
    if (rc == 0 && (v = mc_config_get(n, "listen"))) {
        rc = mc_config_string(v, &out->listen, err);
        if (rc == 0 && !strchr(out->listen, ':'))
            rc = mc_config_fail(v, err, MC_EINVAL, "expected host:port");
    }
    if (rc == 0 && (v = mc_config_get(n, "admin_token_file")))
        rc = mc_config_string(v, &out->admin_token_file, err);
    return rc;
}

/* A reconnection delay: a duration from 1 ms to 1 h. */
static int mc__read_backoff(const mc_config_node *v, uint64_t *out, mc_error *err)
{
    uint64_t ns;
    int rc = mc_config_duration(v, &ns, err);
    if (rc == 0 && (ns < 1000000 || ns > 3600000000000ull))
        rc = mc_config_fail(v, err, MC_EINVAL, "expected a duration from 1ms to 1h");
    if (rc == 0)
        *out = ns;
    return rc;
}

static int mc__read_redis(const mc_config_node *r, mc_host_config *out, mc_error *err)
{
    static const char *const keys[] = {"address",     "stream",        "maxlen",       "queue_limit",
                                       "reconnect_min", "reconnect_max", NULL};
    int rc = mc_config_allow_keys(r, keys, err);
    const mc_config_node *v;
    if (rc == 0 && (v = mc_config_get(r, "address")))
        rc = mc_config_string(v, &out->redis_address, err);
    if (rc == 0 && (v = mc_config_get(r, "stream")))
        rc = mc_config_string(v, &out->redis_stream, err);
    int64_t n = 0;
    if (rc == 0 && (v = mc_config_get(r, "maxlen"))) {
        rc = mc_config_int(v, &n, err);
        if (rc == 0 && n < 1)
            rc = mc_config_fail(v, err, MC_EINVAL, "expected a positive stream length");
        if (rc == 0)
            out->redis_maxlen = (uint64_t)n;
    }
    if (rc == 0 && (v = mc_config_get(r, "queue_limit"))) {
        rc = mc_config_int(v, &n, err);
        if (rc == 0 && n < 1)
            rc = mc_config_fail(v, err, MC_EINVAL, "expected a positive number of messages");
        if (rc == 0)
            out->redis_queue_limit = (size_t)n;
    }
    const mc_config_node *rmin = mc_config_get(r, "reconnect_min");
    if (rc == 0 && rmin)
        rc = mc__read_backoff(rmin, &out->redis_reconnect_min_ns, err);
    if (rc == 0 && (v = mc_config_get(r, "reconnect_max")))
        rc = mc__read_backoff(v, &out->redis_reconnect_max_ns, err);
    if (rc == 0 && out->redis_reconnect_min_ns > out->redis_reconnect_max_ns)
        rc = mc_config_fail(rmin ? rmin : r, err, MC_EINVAL, "reconnect_min is above reconnect_max");
    return rc;
}

static int mc__read_invalidation(const mc_config_node *n, mc_host_config *out, mc_error *err)
{
    static const char *const keys[] = {"backend", "instance_name", "redis", NULL};
    int rc = mc_config_allow_keys(n, keys, err);
    const mc_config_node *v;
    if (rc == 0 && (v = mc_config_get(n, "backend"))) {
        const char *b;
        rc = mc_config_string(v, &b, err);
        if (rc == 0 && !strcmp(b, "redis"))
            out->backend = MC_BUS_REDIS;
        else if (rc == 0 && strcmp(b, "local") != 0)
            rc = mc_config_fail(v, err, MC_EINVAL, "expected local or redis");
    }
    if (rc == 0 && (v = mc_config_get(n, "instance_name")))
        rc = mc_config_string(v, &out->instance_name, err);
    if (rc == 0 && (v = mc_config_get(n, "redis")))
        rc = mc__read_redis(v, out, err);
    return rc;
}

int mc_host_config_read(const mc_config *doc, mc_host_config *out, mc_error *err)
{
    static const char *const sections[] = {"server", "caches", "invalidation", "modules", NULL};
    if (!doc || !out)
        return MC_EINVAL;
    memset(out, 0, sizeof *out);
    out->listen = "127.0.0.1:8008";
    out->instance_name = "modcache";
    out->redis_address = "127.0.0.1:6379";
    out->redis_stream = "modcache:invalidations";
    out->redis_maxlen = 100000;
    out->redis_queue_limit = 10000;
    out->redis_reconnect_min_ns = 100000000;
    out->redis_reconnect_max_ns = 5000000000;
    const mc_config_node *root = mc_config_root(doc);
    int rc = mc_config_allow_keys(root, sections, err);
    const mc_config_node *n;
    if (rc == 0 && (n = mc_config_get(root, "server")))
        rc = mc__read_server(n, out, err);
    if (rc == 0)
        rc = mc_config_read_caches(mc_config_get(root, "caches"), &out->caches, &out->factors, err);
    if (rc == 0 && (n = mc_config_get(root, "invalidation")))
        rc = mc__read_invalidation(n, out, err);
    if (rc == 0 && (n = mc_config_get(root, "modules")) && !mc_config_is_null(n)) {
        if (mc_config_kind_of(n) != MC_CONFIG_LIST)
            rc = mc_config_fail(n, err, MC_EINVAL, "expected a list of modules");
        else
            out->modules = n;
    }
    if (rc != 0) {
        free(out->factors);
        out->factors = NULL;
    }
    return rc;
}
