/* A tour of the cache API: tuple keys, copies and pinned values, an eviction listener, TTL,
 * stats. Build target `example_cache_basics`; it exits non-zero if anything misbehaves. */
#include <modcache.h>
#include <stdio.h>
#include <string.h>

static void on_evict(void *ud, const void *key, size_t klen, const void *value, size_t vlen,
                     mc_evict_reason reason)
{
    (void)ud;
    char json[256];
    size_t jl;
    if (mc_key_to_json(key, klen, json, sizeof json, &jl) != 0)
        strcpy(json, "(unprintable)");
    printf("  evicted %s = %.*s (%s)\n", json, (int)vlen, (const char *)value,
           mc_evict_reason_name(reason));
}

/* Encode (user_id, room) as a key. */
static size_t user_room_key(const char *user, int64_t room, unsigned char *buf)
{
    mc_arg args[] = {mc_arg_str(user), mc_arg_int(room)};
    size_t len = 0;
    int rc = mc_key_encode(args, 2, buf, MC_KEY_MAX, &len);
    if (rc != 0) {
        fprintf(stderr, "mc_key_encode: %s\n", mc_strerror(rc));
        return 0;
    }
    return len;
}

int main(void)
{
    printf("modcache %s\n", mc_version());
    mc_cache_options opts;
    mc_cache_options_init(&opts);
    opts.max_entries = 3;
    opts.on_evict = on_evict;
    mc_cache *cache;
    int rc = mc_cache_create(&opts, &cache);
    if (rc != 0) {
        fprintf(stderr, "mc_cache_create: %s\n", mc_strerror(rc));
        return 1;
    }

    unsigned char key[MC_KEY_MAX];
    size_t klen = user_room_key("@alice:example.com", 1, key);
    mc_cache_put(cache, key, klen, "moderator", 9);

    /* A copy out: the caller's buffer, no handle to release. */
    char role[32];
    size_t rlen;
    if (mc_cache_get_copy(cache, key, klen, role, sizeof role, &rlen) != 0)
        return 2;
    printf("copy:   %.*s\n", (int)rlen, role);

    /* A pinned value: valid until released, even if the entry is replaced meanwhile. */
    mc_value *v;
    if (mc_cache_get(cache, key, klen, &v) != 0)
        return 3;
    mc_cache_put(cache, key, klen, "admin", 5); /* replaces: the listener says so */
    printf("pinned: %.*s (still the old value)\n", (int)mc_value_size(v), (const char *)mc_value_data(v));
    mc_value_release(v);

    /* Fill past the bound: the least recently used entry goes. */
    for (int64_t room = 2; room <= 4; room++) {
        klen = user_room_key("@bob:example.com", room, key);
        mc_cache_put(cache, key, klen, "member", 6);
    }

    /* Keys in their JSON text form, as admin tools write them. */
    mc_error err;
    const char *text = "[\"@bob:example.com\", 4]";
    if (mc_key_from_json(text, strlen(text), key, sizeof key, &klen, &err) != 0) {
        fprintf(stderr, "%s\n", err.message);
        return 4;
    }
    printf("contains [\"@bob:example.com\", 4]: %s\n", mc_cache_contains(cache, key, klen) ? "yes" : "no");
    text = "[\"@bob\", 4";
    if (mc_key_from_json(text, strlen(text), key, sizeof key, &klen, &err) == MC_EPARSE)
        printf("bad key refused: %s\n", err.message);

    mc_cache_stats st;
    mc_cache_stats_get(cache, &st);
    printf("entries %llu, hits %llu, misses %llu, evicted for size %llu, replaced %llu\n",
           (unsigned long long)st.entries, (unsigned long long)st.hits, (unsigned long long)st.misses,
           (unsigned long long)st.evictions[MC_EVICT_SIZE], (unsigned long long)st.evictions[MC_EVICT_REPLACED]);
    int ok = st.entries == 3 && st.evictions[MC_EVICT_SIZE] == 1 && st.evictions[MC_EVICT_REPLACED] == 1;
    mc_cache_destroy(cache);
    return ok ? 0 : 5;
}
