/* examples/guard/guard.c: the example_guard module: a request check (category "http", callback
 * "check_request") that refuses requests for denied user ids (403) and enforces a global rate
 * limit (429 with Retry-After), before any module's web resource runs.
 *
 * Config: deny_users: [user ids], requests_per_second: <number>, burst: <requests>. The check
 * runs on many server threads at once: the deny list is immutable after init and the rate
 * limit is one atomic word updated by compare-and-swap, so no request waits for a lock. */
#include <modcache/module.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Everything the module holds: built by parse_config, used by the check, freed by free_config. */
typedef struct guard {
    char **deny; /* sorted, for bsearch */
    size_t ndeny;
    /* Rate limit as GCRA (the token bucket expressed in time): a request costs interval_ns of
     * credit and at most burst_ns may be owed at once, i.e. `burst` requests back to back, then
     * one per interval. 0: no limit. */
    uint64_t interval_ns;
    uint64_t burst_ns;
    /* The theoretical arrival time: when the bucket would be full again, on CLOCK_MONOTONIC. */
    _Atomic uint64_t tat;
    _Atomic uint64_t denied, limited; /* for the log line at shutdown */
    mc_api *api;
} guard;

static int guard_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void guard_free(void *p)
{
    guard *g = p;
    if (!g)
        return;
    for (size_t i = 0; i < g->ndeny; i++)
        free(g->deny[i]);
    free(g->deny);
    free(g);
}

static int guard_parse_deny(guard *g, const mc_config_node *list, mc_error *err)
{
    if (mc_config_kind_of(list) != MC_CONFIG_LIST)
        return mc_config_fail(list, err, MC_EINVAL, "expected a list of user ids");
    size_t n = mc_config_count(list);
    if (n && !(g->deny = calloc(n, sizeof *g->deny)))
        return MC_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const char *s;
        int rc = mc_config_string(mc_config_at(list, i), &s, err);
        if (rc == 0 && (!*s || strchr(s, '/')))
            rc = mc_config_fail(mc_config_at(list, i), err, MC_EINVAL, "expected a user id (not empty, no '/')");
        if (rc != 0)
            return rc;
        if (!(g->deny[g->ndeny++] = strdup(s)))
            return MC_ENOMEM;
    }
    qsort(g->deny, g->ndeny, sizeof *g->deny, guard_cmp);
    return 0;
}

static int guard_parse(const mc_config_node *cfg, void **parsed, mc_error *err)
{
    static const char *const keys[] = {"deny_users", "requests_per_second", "burst", NULL};
    guard *g = calloc(1, sizeof *g);
    if (!g)
        return MC_ENOMEM;
    int rc = 0;
    const mc_config_node *n, *rps_node = NULL;
    /* No config at all is a guard that lets everything through. */
    if (!mc_config_is_null(cfg)) {
        rc = mc_config_allow_keys(cfg, keys, err);
        if (rc == 0 && (n = mc_config_get(cfg, "deny_users")))
            rc = guard_parse_deny(g, n, err);
        double rps = 0;
        if (rc == 0 && (rps_node = mc_config_get(cfg, "requests_per_second"))) {
            rc = mc_config_double(rps_node, &rps, err);
            if (rc == 0 && (rps < 0.001 || rps > 1e9))
                rc = mc_config_fail(rps_node, err, MC_EINVAL, "expected a number from 0.001 to 1e9");
        }
        int64_t burst = rps >= 1 ? (int64_t)ceil(rps) : 1;
        if (rc == 0 && (n = mc_config_get(cfg, "burst"))) {
            rc = mc_config_int(n, &burst, err);
            if (rc == 0 && (burst < 1 || burst > 1000000))
                rc = mc_config_fail(n, err, MC_EINVAL, "expected an integer from 1 to 1000000");
            if (rc == 0 && !rps_node)
                rc = mc_config_fail(n, err, MC_EINVAL, "burst needs requests_per_second");
        }
        if (rc == 0 && rps_node) {
            g->interval_ns = (uint64_t)(1e9 / rps);
            if (g->interval_ns == 0)
                g->interval_ns = 1;
            g->burst_ns = (uint64_t)burst * g->interval_ns;
        }
    }
    if (rc != 0) {
        guard_free(g);
        return rc;
    }
    *parsed = g;
    return 0;
}

static uint64_t guard_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Take one request's credit; 0 when allowed, else how long until it would be. */
static uint64_t guard_take(guard *g)
{
    uint64_t now = guard_now_ns();
    /* Relaxed is enough: tat publishes no other data, and the compare-and-swap alone makes
     * concurrent requests each pay their interval exactly once. */
    uint64_t tat = atomic_load_explicit(&g->tat, memory_order_relaxed), next;
    do {
        next = (tat > now ? tat : now) + g->interval_ns;
        if (next - now > g->burst_ns)
            return next - now - g->burst_ns;
    } while (!atomic_compare_exchange_weak_explicit(&g->tat, &tat, next, memory_order_relaxed,
                                                    memory_order_relaxed));
    return 0;
}

static void guard_refuse(mc_http_response *resp, const char *body)
{
    mc_http_add_header(resp, "Content-Type", "application/json");
    mc_http_set_body(resp, body, strlen(body));
}

static int guard_check(void *ud, const mc_http_request *req, mc_http_response *resp)
{
    guard *g = ud;
    if (g->ndeny) {
        /* The last path segment is the user id in the resources this guards
         * (/_modcache/client/dept/v1/users/<user_id>). */
        const char *slash = strrchr(req->path, '/');
        const char *last = slash ? slash + 1 : req->path;
        if (bsearch(&last, g->deny, g->ndeny, sizeof *g->deny, guard_cmp)) {
            atomic_fetch_add_explicit(&g->denied, 1, memory_order_relaxed);
            guard_refuse(resp, "{\"error\": \"this user is denied\"}");
            return 403;
        }
    }
    if (g->interval_ns) {
        uint64_t wait = guard_take(g);
        if (wait) {
            atomic_fetch_add_explicit(&g->limited, 1, memory_order_relaxed);
            char secs[32], body[96];
            /* Retry-After takes whole seconds: round up so a client that obeys it succeeds. */
            snprintf(secs, sizeof secs, "%llu", (unsigned long long)((wait + 999999999u) / 1000000000u));
            snprintf(body, sizeof body, "{\"error\": \"rate limited\", \"retry_after_ms\": %llu}",
                     (unsigned long long)((wait + 999999u) / 1000000u));
            mc_http_add_header(resp, "Retry-After", secs);
            guard_refuse(resp, body);
            return 429;
        }
    }
    return 0;
}

static int guard_init(mc_api *api, void *parsed, void **state, mc_error *err)
{
    guard *g = parsed;
    g->api = api;
    mc_callback_entry cb[] = {{MC_CALLBACK_CHECK_REQUEST, (mc_callback_fn)guard_check, g}};
    int rc = mc_api_register_callbacks(api, MC_CATEGORY_HTTP, cb, 1);
    if (rc != 0) {
        snprintf(err->message, sizeof err->message, "cannot register the request check: %s", mc_strerror(rc));
        return rc;
    }
    if (g->interval_ns)
        mc_api_log(api, MC_LOG_INFO, "%zu denied user(s), at most %.3f requests/s (burst %llu)", g->ndeny,
                   1e9 / (double)g->interval_ns, (unsigned long long)(g->burst_ns / g->interval_ns));
    else
        mc_api_log(api, MC_LOG_INFO, "%zu denied user(s), no rate limit", g->ndeny);
    *state = g;
    return 0;
}

static void guard_fini(void *state)
{
    guard *g = state;
    mc_api_log(g->api, MC_LOG_INFO, "refused %llu denied and %llu rate-limited request(s)",
               (unsigned long long)atomic_load(&g->denied), (unsigned long long)atomic_load(&g->limited));
}

MC_MODULE("example_guard", guard_parse, guard_init, guard_fini, guard_free);
