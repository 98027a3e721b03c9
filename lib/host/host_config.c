/* The host's YAML file checked section by section (server, caches, invalidation, modules) into
 * an mc_host_config, refusing unknown sections and keys before anything starts. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "core/addr.h"
#include "modcache/host.h"

/* server.listen: an IPv4 address and a port (0: any free port), as the server will bind it. */
static int mc__read_listen(const mc_config_node *v, mc_host_config *out, mc_error *err)
{
    int rc = mc_config_string(v, &out->listen, err);
    if (rc != 0)
        return rc;
    char host[64];
    unsigned port;
    const char *why;
    struct in_addr a;
    if (mc__hostport_split(out->listen, 0, true, host, sizeof host, &port, &why) != 0)
        return mc_config_fail(v, err, MC_EINVAL, "%s: %s", out->listen, why);
    if (inet_pton(AF_INET, host, &a) != 1)
        return mc_config_fail(v, err, MC_EINVAL, "%s: expected an IPv4 address such as 127.0.0.1 or 0.0.0.0, not a host name",
                              out->listen);
    out->listen_node = v;
    return 0;
}

/* A count from 1 to max. */
static int mc__read_count(const mc_config_node *v, unsigned max, unsigned *out, mc_error *err)
{
    int64_t n;
    int rc = mc_config_int(v, &n, err);
    if (rc == 0 && (n < 1 || (uint64_t)n > max))
        rc = mc_config_fail(v, err, MC_EINVAL, "expected an integer from 1 to %u", max);
    if (rc == 0)
        *out = (unsigned)n;
    return rc;
}

/* A timeout or reconnection delay: a duration from 1 ms to 1 h. */
static int mc__read_timeout(const mc_config_node *v, uint64_t *out, mc_error *err)
{
    uint64_t ns;
    int rc = mc_config_duration(v, &ns, err);
    if (rc == 0 && (ns < 1000000 || ns > 3600000000000ull))
        rc = mc_config_fail(v, err, MC_EINVAL, "expected a duration from 1ms to 1h");
    if (rc == 0)
        *out = ns;
    return rc;
}

static int mc__read_server(const mc_config_node *n, mc_host_config *out, mc_error *err)
{
    static const char *const keys[] = {"listen", "admin_token_file", "threads", "handler_threads", "max_connections",
                                       "max_connections_per_address", "request_header_timeout",
                                       "idle_timeout", "log_level", "log_format", NULL};
    int rc = mc_config_allow_keys(n, keys, err);
    const mc_config_node *v;
    if (rc == 0 && (v = mc_config_get(n, "listen")))
        rc = mc__read_listen(v, out, err);
    if (rc == 0 && (v = mc_config_get(n, "admin_token_file"))) {
        rc = mc_config_string(v, &out->admin_token_file, err);
        out->admin_token_node = v;
    }
    if (rc == 0 && (v = mc_config_get(n, "threads")))
        rc = mc__read_count(v, 1024, &out->server_threads, err);
    if (rc == 0 && (v = mc_config_get(n, "handler_threads"))) {
        int64_t k;
        rc = mc_config_int(v, &k, err); /* 0: handlers on the event threads */
        if (rc == 0 && (k < 0 || k > 4096))
            rc = mc_config_fail(v, err, MC_EINVAL, "expected an integer from 0 (no pool) to 4096");
        if (rc == 0)
            out->server_handler_threads = k ? (unsigned)k : MC_HTTP_INLINE_HANDLERS;
    }
    if (rc == 0 && (v = mc_config_get(n, "max_connections")))
        rc = mc__read_count(v, 1000000, &out->max_connections, err);
    if (rc == 0 && (v = mc_config_get(n, "max_connections_per_address"))) {
        int64_t k;
        rc = mc_config_int(v, &k, err); /* 0: off */
        if (rc == 0 && (k < 0 || k > 1000000))
            rc = mc_config_fail(v, err, MC_EINVAL, "expected an integer from 0 (no limit) to 1000000");
        if (rc == 0)
            out->max_connections_per_address = (unsigned)k;
    }
    if (rc == 0 && (v = mc_config_get(n, "request_header_timeout")))
        rc = mc__read_timeout(v, &out->request_header_timeout_ns, err);
    if (rc == 0 && (v = mc_config_get(n, "idle_timeout")))
        rc = mc__read_timeout(v, &out->idle_timeout_ns, err);
    const char *word;
    if (rc == 0 && (v = mc_config_get(n, "log_level")) && (rc = mc_config_string(v, &word, err)) == 0 &&
        mc_log_level_parse(word, &out->log_level) != 0)
        rc = mc_config_fail(v, err, MC_EINVAL, "%s: expected debug, info, warn or error", word);
    if (rc == 0 && (v = mc_config_get(n, "log_format")) && (rc = mc_config_string(v, &word, err)) == 0 &&
        mc_log_format_parse(word, &out->log_format) != 0)
        rc = mc_config_fail(v, err, MC_EINVAL, "%s: expected text or json", word);
    return rc;
}

static int mc__read_redis(const mc_config_node *r, mc_host_config *out, mc_error *err)
{
    static const char *const keys[] = {"address",     "stream",        "maxlen",       "queue_limit",
                                       "reconnect_min", "reconnect_max", "announce_interval", NULL};
    int rc = mc_config_allow_keys(r, keys, err);
    const mc_config_node *v;
    if (rc == 0 && (v = mc_config_get(r, "address"))) {
        rc = mc_config_string(v, &out->redis_address, err);
        char host[256];
        unsigned port;
        const char *why;
        /* A bare host means Redis's own default port, as redis-cli reads -h. */
        if (rc == 0 && mc__hostport_split(out->redis_address, 6379, false, host, sizeof host, &port, &why) != 0)
            rc = mc_config_fail(v, err, MC_EINVAL, "%s: %s (expected host:port, or a host for port 6379)",
                                out->redis_address, why);
    }
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
        rc = mc__read_timeout(rmin, &out->redis_reconnect_min_ns, err);
    if (rc == 0 && (v = mc_config_get(r, "reconnect_max")))
        rc = mc__read_timeout(v, &out->redis_reconnect_max_ns, err);
    if (rc == 0 && (v = mc_config_get(r, "announce_interval")))
        rc = mc__read_timeout(v, &out->redis_announce_interval_ns, err);
    if (rc == 0 && out->redis_reconnect_min_ns > out->redis_reconnect_max_ns)
        rc = mc_config_fail(rmin ? rmin : r, err, MC_EINVAL, "reconnect_min is above reconnect_max");
    return rc;
}

static int mc__read_invalidation(const mc_config_node *n, mc_host_config *out, mc_error *err)
{
    static const char *const keys[] = {"backend", "instance_name", "redis", "max_staleness", NULL};
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
    if (rc == 0 && (v = mc_config_get(n, "max_staleness"))) {
        uint64_t ns;
        rc = mc_config_duration(v, &ns, err);
        /* Under 200 ms the reads that confirm currency could not keep up; the bus counts in
         * milliseconds. */
        if (rc == 0 && (ns < 200000000ull || ns > 86400000000000ull))
            rc = mc_config_fail(v, err, MC_EINVAL, "expected a duration from 200ms to 1d");
        if (rc == 0)
            out->max_staleness_ns = ns;
    }
    if (rc == 0 && out->max_staleness_ns && out->backend != MC_BUS_REDIS)
        rc = mc_config_fail(mc_config_get(n, "max_staleness"), err, MC_EINVAL,
                            "needs backend: redis (a local host is always current)");
    return rc;
}

/* caches.snapshot (the rest of caches: is mc_config_read_caches'). */
static int mc__read_snapshot(const mc_config_node *n, mc_host_config *out, mc_error *err)
{
    static const char *const keys[] = {"path", "interval", "trust_without_bus", NULL};
    if (mc_config_kind_of(n) != MC_CONFIG_MAP)
        return mc_config_fail(n, err, MC_EINVAL, "expected a map: {path: FILE, interval: DURATION}");
    int rc = mc_config_allow_keys(n, keys, err);
    const mc_config_node *v = mc_config_get(n, "path");
    if (rc == 0 && !v)
        rc = mc_config_fail(n, err, MC_EINVAL, "path is required (the snapshot file)");
    if (rc == 0 && (rc = mc_config_string(v, &out->snapshot_path, err)) == 0 && !*out->snapshot_path)
        rc = mc_config_fail(v, err, MC_EINVAL, "expected a file name");
    if (rc == 0 && (v = mc_config_get(n, "interval"))) {
        rc = mc_config_duration(v, &out->snapshot_interval_ns, err);
        if (rc == 0 && (out->snapshot_interval_ns < 1000000000ull || out->snapshot_interval_ns > 604800000000000ull))
            rc = mc_config_fail(v, err, MC_EINVAL, "expected a duration from 1s to 1w");
    }
    if (rc == 0 && (v = mc_config_get(n, "trust_without_bus")))
        rc = mc_config_bool(v, &out->snapshot_trust_without_bus, err);
    return rc;
}

int mc_host_config_read(const mc_config *doc, mc_host_config *out, mc_error *err)
{
    static const char *const sections[] = {"server", "caches", "invalidation", "modules", NULL};
    if (!doc || !out)
        return MC_EINVAL;
    memset(out, 0, sizeof *out);
    out->listen = "127.0.0.1:8008";
    out->log_level = MC_LOG_INFO;
    out->log_format = MC_LOG_TEXT;
    out->instance_name = "modcache";
    out->redis_address = "127.0.0.1:6379";
    out->redis_stream = "modcache:invalidations";
    out->redis_maxlen = 100000;
    out->redis_queue_limit = 10000;
    out->redis_reconnect_min_ns = 100000000;
    out->redis_reconnect_max_ns = 5000000000;
    out->redis_announce_interval_ns = (uint64_t)MC_BUS_ANNOUNCE_DEFAULT_MS * 1000000;
    const mc_config_node *root = mc_config_root(doc);
    int rc = mc_config_allow_keys(root, sections, err);
    const mc_config_node *n;
    if (rc == 0 && (n = mc_config_get(root, "server")))
        rc = mc__read_server(n, out, err);
    if (rc == 0)
        rc = mc_config_read_caches(mc_config_get(root, "caches"), &out->caches, &out->factors, err);
    if (rc == 0 && (n = mc_config_get(root, "caches")) && (n = mc_config_get(n, "snapshot")) && !mc_config_is_null(n))
        rc = mc__read_snapshot(n, out, err);
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
