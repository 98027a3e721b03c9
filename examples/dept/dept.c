/* examples/dept/dept.c: the example_dept module: a memoized database lookup,
 * example_dept.get_department_for_user, served at /_modcache/client/dept/v1/users/<user_id>.
 *
 * GET answers from the cache (loading from the database on a miss; an unknown user is cached as
 * "no value" and answers 404); PUT writes the database, then invalidates that user's entry. The
 * handler runs on many server threads at once: the cached function is thread-safe and the
 * database is reached through a connection pool. */
#include <modcache/module.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dept_db.h"
#include "dept_json.h"

#define DEPT_FUNCTION "example_dept.get_department_for_user"
#define DEPT_ROOT "/_modcache/client/dept/v1"
#define DEPT_USERS DEPT_ROOT "/users/"

/* The module's config, owned by the module from parse_config until free_config. */
typedef struct dept_config {
    char *database; /* SQLite file, or NULL */
    char *postgres; /* libpq connection string, or NULL */
    int64_t seed_users; /* -1: do not seed */
    bool cache;         /* false: every GET queries the database (for comparisons) */
    int64_t max_entries;
    int64_t pool_size;
    uint64_t simulated_latency_ns; /* added to every query (demonstrations, tests) */
} dept_config;

/* What init builds and fini tears down; shared read-only by the server threads. */
typedef struct dept_state {
    mc_api *api;
    dept_db *db;
    mc_cached *fn; /* NULL when the config says cache: false */
} dept_state;

static void dept_free_config(void *p)
{
    dept_config *c = p;
    if (c) {
        free(c->database);
        free(c->postgres);
        free(c);
    }
}

/* An integer option in [lo, hi], or the default when absent. */
static int dept_int_option(const mc_config_node *cfg, const char *key, int64_t lo, int64_t hi, int64_t *out,
                           mc_error *err)
{
    const mc_config_node *n = mc_config_get(cfg, key);
    if (!n)
        return 0;
    int rc = mc_config_int(n, out, err);
    if (rc == 0 && (*out < lo || *out > hi))
        rc = mc_config_fail(n, err, MC_EINVAL, "expected an integer from %lld to %lld", (long long)lo,
                            (long long)hi);
    return rc;
}

static int dept_string_option(const mc_config_node *cfg, const char *key, char **out, mc_error *err)
{
    const mc_config_node *n = mc_config_get(cfg, key);
    const char *s;
    if (!n)
        return 0;
    int rc = mc_config_string(n, &s, err);
    if (rc == 0 && !*s)
        rc = mc_config_fail(n, err, MC_EINVAL, "expected a non-empty string");
    if (rc == 0 && !(*out = strdup(s)))
        rc = MC_ENOMEM;
    return rc;
}

static int dept_parse(const mc_config_node *cfg, void **parsed, mc_error *err)
{
    static const char *const keys[] = {"database", "postgres", "seed_users", "cache", "max_entries",
                                       "pool_size", "simulated_latency", NULL};
    if (mc_config_kind_of(cfg) != MC_CONFIG_MAP)
        return mc_config_fail(cfg, err, MC_EINVAL,
                              "expected a map with `database` (an SQLite file) or `postgres` (a libpq connection string)");
    int rc = mc_config_allow_keys(cfg, keys, err);
    if (rc != 0)
        return rc;
    dept_config *c = calloc(1, sizeof *c);
    if (!c)
        return MC_ENOMEM;
    c->seed_users = -1;
    c->cache = true;
    c->max_entries = 50000;
    c->pool_size = 8;
    const mc_config_node *n;
    rc = dept_string_option(cfg, "database", &c->database, err);
    if (rc == 0)
        rc = dept_string_option(cfg, "postgres", &c->postgres, err);
    if (rc == 0)
        rc = dept_int_option(cfg, "seed_users", 0, 100000000, &c->seed_users, err);
    if (rc == 0)
        rc = dept_int_option(cfg, "max_entries", 1, 1000000000, &c->max_entries, err);
    if (rc == 0)
        rc = dept_int_option(cfg, "pool_size", 1, 256, &c->pool_size, err);
    if (rc == 0 && (n = mc_config_get(cfg, "cache")))
        rc = mc_config_bool(n, &c->cache, err);
    if (rc == 0 && (n = mc_config_get(cfg, "simulated_latency"))) {
        rc = mc_config_duration(n, &c->simulated_latency_ns, err);
        if (rc == 0 && c->simulated_latency_ns > 10000000000ULL)
            rc = mc_config_fail(n, err, MC_EINVAL, "expected at most 10s");
    }
    if (rc == 0 && c->database && c->postgres)
        rc = mc_config_fail(mc_config_get(cfg, "postgres"), err, MC_EINVAL,
                            "give either `database` or `postgres`, not both");
    if (rc == 0 && !c->database && !c->postgres)
        rc = mc_config_fail(cfg, err, MC_EINVAL,
                            "missing `database` (an SQLite file) or `postgres` (a libpq connection string)");
    if (rc == 0 && c->postgres && !dept_db_has_postgres())
        rc = mc_config_fail(mc_config_get(cfg, "postgres"), err, MC_ENOTSUP,
                            "this build of the module has no PostgreSQL support (libpq was not found)");
    if (rc != 0) {
        dept_free_config(c);
        return rc;
    }
    *parsed = c;
    return 0;
}

/* The loader: one database query per miss (single-flight makes concurrent misses of one user
 * share it). A database error is returned, so it reaches the waiting callers and is not cached. */
static int dept_load_department(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    dept_state *st = self;
    (void)nargs;
    char dept[DEPT_NAME_MAX + 1];
    size_t len = 0;
    mc_error err = {0};
    int rc = dept_db_get(st->db, args[0].v.s.ptr, args[0].v.s.len, dept, sizeof dept, &len, &err);
    if (rc == MC_ENOENT)
        return mc_load_set_none(load);
    if (rc != 0) {
        mc_api_log(st->api, MC_LOG_WARN, "lookup of %.*s failed: %s", (int)args[0].v.s.len,
                   (const char *)args[0].v.s.ptr, err.message[0] ? err.message : mc_strerror(rc));
        return MC_EIO;
    }
    return mc_load_set_copy(load, dept, len);
}

/* Send a JSON body; dept_buf keeps the error of a failed allocation for us to report. */
static void dept_reply(mc_http_response *resp, unsigned status, dept_buf *b)
{
    mc_http_add_header(resp, "Content-Type", "application/json");
    if (b->failed) {
        static const char oom[] = "{\"error\": \"out of memory\"}";
        mc_http_set_status(resp, 500);
        mc_http_set_body(resp, oom, sizeof oom - 1);
    } else {
        mc_http_set_status(resp, status);
        mc_http_set_body(resp, b->s, b->len);
    }
    free(b->s);
}

static void dept_error(mc_http_response *resp, unsigned status, const char *message)
{
    dept_buf b = {0};
    dept_buf_adds(&b, "{\"error\": ");
    dept_buf_json_string(&b, message, strlen(message));
    dept_buf_adds(&b, "}");
    dept_reply(resp, status, &b);
}

static void dept_user_reply(mc_http_response *resp, const char *user, size_t ulen, const char *dept, size_t dlen)
{
    dept_buf b = {0};
    dept_buf_adds(&b, "{\"user_id\": ");
    dept_buf_json_string(&b, user, ulen);
    dept_buf_adds(&b, ", \"department\": ");
    dept_buf_json_string(&b, dept, dlen);
    dept_buf_adds(&b, "}");
    dept_reply(resp, 200, &b);
}

static void dept_get(dept_state *st, const char *user, size_t ulen, mc_http_response *resp)
{
    if (!st->fn) {
        char dept[DEPT_NAME_MAX + 1];
        size_t dlen = 0;
        mc_error err = {0};
        int rc = dept_db_get(st->db, user, ulen, dept, sizeof dept, &dlen, &err);
        if (rc == 0)
            dept_user_reply(resp, user, ulen, dept, dlen);
        else if (rc == MC_ENOENT)
            dept_error(resp, 404, "no such user");
        else {
            mc_api_log(st->api, MC_LOG_WARN, "lookup of %.*s failed: %s", (int)ulen, user,
                       err.message[0] ? err.message : mc_strerror(rc));
            dept_error(resp, 503, "the database is unavailable");
        }
        return;
    }
    mc_value *v = NULL;
    int rc = MC_CACHED_CALL(st->fn, &v, MC_ARG_SN(user, ulen));
    if (rc != 0) {
        dept_error(resp, 503, "the database is unavailable");
        return;
    }
    if (mc_value_is_none(v))
        dept_error(resp, 404, "no such user");
    else
        dept_user_reply(resp, user, ulen, mc_value_data(v), mc_value_size(v));
    mc_value_release(v);
}

static void dept_put(dept_state *st, const char *user, size_t ulen, const mc_http_request *req,
                     mc_http_response *resp)
{
    char dept[DEPT_NAME_MAX + 1];
    size_t dlen = 0;
    const char *why = NULL;
    if (!dept_json_department(req->body, req->body_len, dept, sizeof dept, &dlen, &why)) {
        dept_error(resp, 400, why);
        return;
    }
    mc_error err = {0};
    int rc = dept_db_set(st->db, user, ulen, dept, dlen, &err);
    if (rc == MC_ENOENT) {
        dept_error(resp, 404, "no such user");
        return;
    }
    if (rc != 0) {
        mc_api_log(st->api, MC_LOG_WARN, "update of %.*s failed: %s", (int)ulen, user,
                   err.message[0] ? err.message : mc_strerror(rc));
        dept_error(resp, 503, "the database is unavailable");
        return;
    }
    /* After the write: a load that read the old row before this point will not be stored,
     * and the next GET loads the new one (here and, with the bus, in every other host). */
    if (st->fn && (rc = mc_api_invalidate_cache(st->api, st->fn, (const mc_arg[]){MC_ARG_SN(user, ulen)}, 1)))
        /* The local entry is gone either way; other hosts may keep theirs until their TTL. */
        mc_api_log(st->api, MC_LOG_WARN, "invalidation of %.*s not passed on: %s", (int)ulen, user,
                   mc_strerror(rc));
    dept_user_reply(resp, user, ulen, dept, dlen);
}

static void dept_serve(void *ud, const mc_http_request *req, mc_http_response *resp)
{
    dept_state *st = ud;
    size_t plen = strlen(DEPT_USERS);
    if (strncmp(req->path, DEPT_USERS, plen) != 0 || !req->path[plen] || strchr(req->path + plen, '/')) {
        dept_error(resp, 404, "not found");
        return;
    }
    const char *user = req->path + plen;
    size_t ulen = strlen(user);
    bool get = strcmp(req->method, "GET") == 0, put = strcmp(req->method, "PUT") == 0;
    if (!get && !put) {
        mc_http_method_not_allowed(resp, "GET, PUT");
        dept_error(resp, 405, "use GET or PUT");
        return;
    }
    if (ulen > DEPT_USER_MAX || !dept_utf8_valid(user, ulen)) {
        dept_error(resp, 400, ulen > DEPT_USER_MAX ? "user id too long" : "user id is not valid UTF-8");
        return;
    }
    if (get)
        dept_get(st, user, ulen, resp);
    else
        dept_put(st, user, ulen, req, resp);
}

static void dept_fini(void *state)
{
    dept_state *st = state;
    if (!st)
        return;
    /* The host has withdrawn the web resource and unregistered the function: no request or
     * load can be running now. */
    mc_cached_destroy(st->fn);
    dept_db_close(st->db);
    free(st);
}

static int dept_init(mc_api *api, void *parsed, void **state, mc_error *err)
{
    dept_config *c = parsed;
    dept_state *st = calloc(1, sizeof *st);
    if (!st)
        return MC_ENOMEM;
    st->api = api;
    dept_db_options o = {c->database, c->postgres, c->seed_users, (unsigned)c->pool_size,
                         c->simulated_latency_ns};
    int rc = dept_db_open(&o, &st->db, err);
    if (rc == 0 && c->cache) {
        mc_cached_options co;
        mc_cached_options_init(&co);
        co.name = DEPT_FUNCTION;
        co.max_entries = (size_t)c->max_entries;
        co.num_args = 1; /* the user id: invalidations of another length are refused */
        co.registry = mc_api_registry(api); /* the host's factors, TTL and autotuning apply */
        /* Departments are copied bytes, and every write goes through invalidate_cache (so the
         * stream holds it): safe to keep across restarts (caches.snapshot in the host). */
        co.persist = true;
        rc = mc_cached_create(&co, dept_load_department, st, &st->fn);
        if (rc == 0)
            rc = mc_api_register_cached_function(api, st->fn);
        if (rc != 0)
            snprintf(err->message, sizeof err->message, "cannot register %s: %s", DEPT_FUNCTION, mc_strerror(rc));
    }
    if (rc == 0) {
        rc = mc_api_register_web_resource(api, DEPT_ROOT, dept_serve, st);
        if (rc != 0)
            snprintf(err->message, sizeof err->message, "cannot serve %s: %s", DEPT_ROOT, mc_strerror(rc));
    }
    if (rc != 0) {
        dept_fini(st);
        return rc;
    }
    mc_api_log(api, MC_LOG_INFO, "serving %s from %s %s%s, %s", DEPT_USERS "<user_id>",
               c->postgres ? "PostgreSQL" : "SQLite", c->postgres ? "(libpq)" : c->database,
               c->simulated_latency_ns ? " with a simulated latency" : "",
               c->cache ? "memoized as " DEPT_FUNCTION : "not memoized (cache: false)");
    *state = st;
    return 0;
}

MC_MODULE("example_dept", dept_parse, dept_init, dept_fini, dept_free_config);
