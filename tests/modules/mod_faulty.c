/* Test modules that fail in one way each, chosen at build time: a foreign ABI version, a
 * refused config, a failing init (also one that destroys what it registered), or no descriptor. */
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

#ifdef FAULT_INIT_DESTROYS
static int loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)self;
    (void)args;
    (void)nargs;
    return mc_load_set_none(load);
}
#endif

static int init(mc_api *api, void *parsed, void **state, mc_error *err)
{
    (void)parsed;
    *state = NULL;
#ifdef FAULT_INIT
#ifdef FAULT_INIT_DESTROYS
    /* Registers a function, then fails and destroys it itself, as a careful module does. */
    mc_cached *fn = NULL;
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = "faulty.lookup";
    o.max_entries = 10;
    o.registry = mc_api_registry(api);
    if (mc_cached_create(&o, loader, NULL, &fn) == 0 && mc_api_register_cached_function(api, fn) == 0)
        mc_api_log(api, MC_LOG_INFO, "registered faulty.lookup");
    mc_cached_destroy(fn);
#endif
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
