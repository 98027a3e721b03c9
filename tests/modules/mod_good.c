/* A well-behaved test module: parses its config (a TTL such as "5d" into milliseconds),
 * registers a memoized function, logs each step so the test can check order and values. */
#include <modcache/module.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef MOD_NAME
#define MOD_NAME "mod_good"
#endif

typedef struct {
    uint64_t ttl_ms;
    const char *label;
} good_config;

typedef struct {
    mc_cached *fn;
    mc_api *api;
} good_state;

static int parse(const mc_config_node *config, void **parsed, mc_error *err)
{
    good_config *c = calloc(1, sizeof *c);
    if (!c)
        return MC_ENOMEM;
    c->label = "none";
    const mc_config_node *n;
    uint64_t ns;
    if ((n = mc_config_get(config, "ttl"))) {
        int rc = mc_config_duration(n, &ns, err);
        if (rc) {
            free(c);
            return rc;
        }
        c->ttl_ms = ns / 1000000;
    }
    if ((n = mc_config_get(config, "label")) && mc_config_string(n, &c->label, err)) {
        free(c);
        return MC_EINVAL;
    }
    *parsed = c;
    return 0;
}

static int loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)self;
    (void)args;
    (void)nargs;
    return mc_load_set_copy(load, "value", 5);
}

static int init(mc_api *api, void *parsed, void **state, mc_error *err)
{
    good_config *c = parsed;
    good_state *s = calloc(1, sizeof *s);
    if (!s)
        return MC_ENOMEM;
    mc_api_log(api, MC_LOG_INFO, "init ttl_ms=%llu label=%s", (unsigned long long)c->ttl_ms, c->label);
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = MOD_NAME ".lookup";
    o.max_entries = 10;
    o.num_args = 1; /* keys of one field: invalidations of another length are refused */
    int rc = mc_cached_create(&o, loader, NULL, &s->fn);
    if (rc == 0)
        rc = mc_api_register_cached_function(api, s->fn);
    if (rc != 0) {
        snprintf(err->message, sizeof err->message, "cannot register: %s", mc_strerror(rc));
        mc_cached_destroy(s->fn);
        free(s);
        return rc;
    }
    s->api = api;
    *state = s;
    return 0;
}

static void no_handler(void *ud, const mc_http_request *req, mc_http_response *resp)
{
    (void)ud;
    (void)req;
    (void)resp;
}
#define NULL_HANDLER no_handler

static void fini(void *state)
{
    good_state *s = state;
    /* Registration after init is refused; report what the API said. */
    mc_cached *late;
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = MOD_NAME ".late";
    o.max_entries = 1;
    mc_cached_create(&o, loader, NULL, &late);
    int rc = mc_api_register_cached_function(s->api, late);
    mc_api_log(s->api, MC_LOG_INFO, "fini late-register=%s", mc_err_name(rc));
    /* ... and so is creating one under the module's registry handle. */
    mc_cached *late2 = NULL;
    o.name = MOD_NAME ".late2";
    o.registry = mc_api_registry(s->api);
    rc = mc_cached_create(&o, loader, NULL, &late2);
    mc_api_log(s->api, MC_LOG_INFO, "fini late-create=%s registered=%s", mc_err_name(rc),
               late2 ? "yes" : "no");
    mc_cached_destroy(late2);
    mc_api_log(s->api, MC_LOG_INFO, "fini late-web=%s",
               mc_err_name(mc_api_register_web_resource(s->api, "/_modcache/client/late", NULL_HANDLER, NULL)));
    mc_cached_destroy(late);
    mc_cached_destroy(s->fn);
    free(s);
}

MC_MODULE(MOD_NAME, parse, init, fini, free);
