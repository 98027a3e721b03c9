/* Uses the installed library end to end: a tuple key, a put, a get, the version.
 * Exits 0 only if the round trip works. */
#include <modcache.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    mc_cache_options o;
    mc_cache_options_init(&o);
    o.max_entries = 16;
    mc_cache *c;
    if (mc_cache_create(&o, &c) != 0)
        return 1;
    mc_arg args[] = {MC_ARG_S("@alice:example.com"), MC_ARG_I(42)};
    unsigned char key[MC_KEY_MAX];
    size_t klen, vlen;
    if (mc_key_encode(args, 2, key, sizeof key, &klen) != 0)
        return 2;
    if (mc_cache_put(c, key, klen, "engineering", 11) != 0)
        return 3;
    char buf[32];
    if (mc_cache_get_copy(c, key, klen, buf, sizeof buf, &vlen) != 0 || vlen != 11 ||
        memcmp(buf, "engineering", 11) != 0)
        return 4;
    char json[128];
    size_t jl;
    if (mc_key_to_json(key, klen, json, sizeof json, &jl) != 0)
        return 5;
    printf("modcache %s: %s -> %.*s\n", mc_version(), json, (int)vlen, buf);
    mc_cache_destroy(c);
    return 0;
}
