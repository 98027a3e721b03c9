/* A module built against the installed package with pkg-config (modcache-host), loaded by the
 * installed mchost: it registers a memoized function and a web resource that calls it. */
#include <modcache/module.h>
#include <string.h>

static mc_cached *fn;

static int load(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)self;
    (void)args;
    (void)nargs;
    return mc_load_set_copy(load, "installed", 9);
}

static void hello(void *ud, const mc_http_request *req, mc_http_response *resp)
{
    (void)ud;
    (void)req;
    mc_value *v;
    if (MC_CACHED_CALL(fn, &v, MC_ARG_I(1)) != 0) {
        mc_http_set_status(resp, 500);
        return;
    }
    mc_http_set_body(resp, mc_value_data(v), mc_value_size(v));
    mc_value_release(v);
}

static int init(mc_api *api, void *parsed, void **state, mc_error *err)
{
    (void)parsed;
    (void)err;
    *state = NULL;
    int rc = mc_cached_create(&MC_CACHED_OPTS("installed.lookup", 8), load, NULL, &fn);
    if (rc == 0)
        rc = mc_api_register_cached_function(api, fn);
    if (rc == 0)
        rc = mc_api_register_web_resource(api, "/_modcache/client/installed", hello, NULL);
    return rc;
}

static void fini(void *state)
{
    (void)state;
    mc_cached_destroy(fn);
}

MC_MODULE("installed", NULL, init, fini, NULL);
