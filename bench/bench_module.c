/* The module bench_http_load serves from mchost: one web resource with a small fixed answer,
 * so that what is measured is the server (connections, parsing, dispatch), not a back end. */
#include <modcache/module.h>

static void item(void *ud, const mc_http_request *req, mc_http_response *resp)
{
    (void)ud;
    (void)req;
    mc_http_add_header(resp, "Content-Type", "text/plain");
    mc_http_set_body(resp, "department: engineering\n", 24);
}

static int init(mc_api *api, void *parsed, void **state, mc_error *err)
{
    (void)parsed;
    (void)err;
    *state = NULL;
    return mc_api_register_web_resource(api, "/_modcache/client/bench/v1", item, NULL);
}

MC_MODULE("bench", NULL, init, NULL, NULL);
