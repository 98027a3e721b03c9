/* Test modules that fail in one way each, chosen at build time: a foreign ABI version, a
 * refused config, a failing init, or no descriptor at all. */
#include <modcache/module.h>
#include <stdio.h>

static int parse(const mc_config_node *config, void **parsed, mc_error *err)
{
    *parsed = NULL;
#ifdef FAULT_PARSE
    const mc_config_node *db = mc_config_get(config, "database");
    const char *s;
    return mc_config_string(db ? db : config, &s, err);
#else
    (void)config;
    (void)err;
    return 0;
#endif
}

static int init(mc_api *api, void *parsed, void **state, mc_error *err)
{
    (void)parsed;
    *state = NULL;
#ifdef FAULT_INIT
    mc_api_log(api, MC_LOG_ERROR, "init refusing");
    snprintf(err->message, sizeof err->message, "database unreachable");
    return MC_EIO;
#else
    (void)err;
    mc_api_log(api, MC_LOG_INFO, "init");
    return 0;
#endif
}

#ifdef FAULT_ABI
__attribute__((visibility("default"))) const mc_module_descriptor mc_module = {
    MC_MODULE_ABI_VERSION + 41, (uint32_t)sizeof(mc_module_descriptor), "faulty", parse, init, NULL,
    NULL};
#elif defined(FAULT_NONE)
__attribute__((visibility("default"))) int not_a_module = 1;
#else
MC_MODULE("faulty", parse, init, NULL, NULL);
#endif
