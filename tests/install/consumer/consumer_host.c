/* Uses the installed host library: a registry, a host, one memoized function registered by
 * name, its metrics line. Exits 0 only if each step works. */
#include <modcache.h>
#include <stdio.h>
#include <string.h>

static int load(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)self;
    (void)args;
    (void)nargs;
    return mc_load_set_copy(load, "v", 1);
}

int main(void)
{
    mc_registry *reg;
    if (mc_registry_create(NULL, &reg) != 0)
        return 1;
    mc_host_options ho;
    mc_host_options_init(&ho);
    ho.registry = reg;
    mc_host *host;
    if (mc_host_create(&ho, &host) != 0)
        return 2;
    mc_cached *fn;
    if (mc_cached_create(&MC_CACHED_OPTS("consumer.lookup", 8, .registry = reg), load, NULL, &fn) != 0)
        return 3;
    mc_value *v;
    if (MC_CACHED_CALL(fn, &v, MC_ARG_I(1)) != 0)
        return 4;
    mc_value_release(v);
    if (mc_registry_find(reg, "consumer.lookup") != fn)
        return 5;
    printf("modcache-host %s: %zu module(s), consumer.lookup registered\n", mc_version(), mc_host_module_count(host));
    mc_cached_destroy(fn);
    mc_host_destroy(host);
    mc_registry_destroy(reg);
    return 0;
}
