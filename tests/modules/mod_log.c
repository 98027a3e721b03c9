/* A test module that logs one line at each level in init, so that a test can see which levels
 * the host's logger lets through (server.log_level, mchost --log-level). */
#include <modcache/module.h>

static int init(mc_api *api, void *parsed, void **state, mc_error *err)
{
    (void)parsed;
    (void)err;
    *state = NULL;
    mc_api_log(api, MC_LOG_DEBUG, "level-probe debug");
    mc_api_log(api, MC_LOG_INFO, "level-probe info");
    mc_api_log(api, MC_LOG_WARN, "level-probe warn");
    mc_api_log(api, MC_LOG_ERROR, "level-probe error");
    return 0;
}

MC_MODULE("mod_log", NULL, init, NULL, NULL);
