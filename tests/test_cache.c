/* Tests of every mc_cache operation and bound, single-threaded: gets, puts, replace, owned
 * values, removal, clear, entry and byte bounds, TTL with an injected clock, handles, resize. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cache/cache_internal.h"
#include "modcache.h"

/* ---- helpers ---- */

typedef struct {
    int calls[MC_EVICT_NREASONS];
    char last_key[64];
    char last_value[64];
    mc_evict_reason last_reason;
} listener_log;

static void on_evict(void *ud, const void *key, size_t klen, const void *value, size_t vlen,
                     mc_evict_reason reason)
{
    listener_log *log = ud;
    log->calls[reason]++;
    log->last_reason = reason;
    snprintf(log->last_key, sizeof log->last_key, "%.*s", (int)klen, (const char *)key);
    snprintf(log->last_value, sizeof log->last_value, "%.*s", (int)vlen, (const char *)value);
}

static int total_calls(const listener_log *log)
{
    int n = 0;
    for (int i = 0; i < MC_EVICT_NREASONS; i++)
        n += log->calls[i];
    return n;
}

static mc_cache *make_cache(size_t max_entries, size_t max_bytes, mc_policy policy, unsigned shards,
                            listener_log *log)
{
    mc_cache_options o;
    mc_cache_options_init(&o);
    o.max_entries = max_entries;
    o.max_bytes = max_bytes;
    o.policy = policy;
    o.shards = shards;
    o.seed = 12345;
    if (log) {
        o.on_evict = on_evict;
        o.on_evict_ud = log;
    }
    mc_cache *c = NULL;
    assert_int_equal(mc_cache_create(&o, &c), 0);
    assert_non_null(c);
    return c;
}

static void verify(mc_cache *c)
{
    char msg[256];
    if (mc__cache_verify(c, msg, sizeof msg) != 0)
        fail_msg("invariant broken: %s", msg);
}

static int put_s(mc_cache *c, const char *k, const char *v)
{
    return mc_cache_put(c, k, strlen(k), v, strlen(v));
}

/* Returns the value as a static string, or NULL on a miss. */
static const char *get_s(mc_cache *c, const char *k)
{
    static char buf[256];
    size_t n = 0;
    int rc = mc_cache_get_copy(c, k, strlen(k), buf, sizeof buf - 1, &n);
    if (rc == MC_ENOENT)
        return NULL;
    assert_int_equal(rc, 0);
    buf[n] = 0;
    return buf;
}

/* ---- creation and bad input ---- */

static void test_create_validation(void **state)
{
    (void)state;
    mc_cache_options o;
    mc_cache *c = (mc_cache *)1;
    mc_cache_options_init(&o);
    assert_int_equal(mc_cache_create(NULL, &c), MC_EINVAL);
    assert_int_equal(mc_cache_create(&o, NULL), MC_EINVAL);
    assert_int_equal(mc_cache_create(&o, &c), MC_EINVAL); /* no bound at all */
    assert_null(c);
    o.max_entries = 10;
    o.policy = (mc_policy)7;
    assert_int_equal(mc_cache_create(&o, &c), MC_EINVAL);
    o.policy = MC_POLICY_LRU;
    o.shards = 3;
    assert_int_equal(mc_cache_create(&o, &c), MC_EINVAL);
    o.shards = 512;
    assert_int_equal(mc_cache_create(&o, &c), MC_EINVAL);
    o.shards = 4;
    assert_int_equal(mc_cache_create(&o, &c), 0);
    mc_cache_destroy(c);
    o.shards = 0;
    o.max_entries = 0;
    o.max_bytes = 4096; /* a byte bound alone is enough */
    assert_int_equal(mc_cache_create(&o, &c), 0);
    mc_cache_destroy(c);
    mc_cache_destroy(NULL);
}

/* A flood of keys of one home bucket (crafted with the seed): the one-byte overflow count of
 * that bucket must not wrap. Past 254 entries passing it, a put is refused (MC_E2BIG, nothing
 * evicted); every key stored stays findable and the index stays consistent. */
static void test_home_flood(void **state)
{
    (void)state;
    mc_cache_options o;
    mc_cache_options_init(&o);
    o.max_entries = 400;
    o.shards = 1;
    o.seed = 12345;
    mc_cache *c;
    assert_int_equal(mc_cache_create(&o, &c), 0);
    uint32_t nb = atomic_load(&c->shards[0].table)->nbuckets;
    uint32_t home = mc__home_of(mc_key_hash("k0", 2, o.seed), nb);
    char keys[300][16];
    size_t lens[300];
    int n = 0;
    for (unsigned i = 0; n < 300; i++) {
        lens[n] = (size_t)snprintf(keys[n], sizeof keys[n], "k%u", i);
        if (mc__home_of(mc_key_hash(keys[n], lens[n], o.seed), nb) == home)
            n++;
    }
    int stored = 0, refused = 0;
    for (int i = 0; i < n; i++) {
        uint64_t v = (uint64_t)i;
        int rc = mc_cache_put(c, keys[i], lens[i], &v, sizeof v);
        if (rc == 0)
            stored++;
        else if (rc == MC_E2BIG)
            refused++;
        else
            fail_msg("put %d: %d", i, rc);
    }
    print_message("%d keys of one home: %d stored, %d refused\n", n, stored, refused);
    assert_true(stored >= 250);
    assert_true(refused > 0);
    assert_int_equal(mc_cache_size(c), (size_t)stored);
    char msg[256];
    if (mc__cache_verify(c, msg, sizeof msg) != 0)
        fail_msg("%s", msg);
    int found = 0;
    for (int i = 0; i < n; i++) {
        uint64_t v = 0;
        size_t vl = 0;
        if (mc_cache_get_copy(c, keys[i], lens[i], &v, sizeof v, &vl) == 0) {
            assert_int_equal(v, (uint64_t)i);
            found++;
        }
    }
    assert_int_equal(found, stored);
    /* Stored again: replaced in place, never a second copy. */
    for (int i = 0; i < n; i++) {
        uint64_t v = (uint64_t)i + 1000;
        mc_cache_put(c, keys[i], lens[i], &v, sizeof v);
    }
    assert_int_equal(mc_cache_size(c), (size_t)stored);
    if (mc__cache_verify(c, msg, sizeof msg) != 0)
        fail_msg("%s", msg);
    mc_cache_destroy(c);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    mc_cache *c = make_cache(16, 0, MC_POLICY_LRU, 1, NULL);
    char big[MC_KEY_MAX + 1];
    memset(big, 'k', sizeof big);
    size_t n;
    mc_value *v;
    char buf[8];
    assert_int_equal(mc_cache_put(NULL, "k", 1, "v", 1), MC_EINVAL);
    assert_int_equal(mc_cache_put(c, NULL, 1, "v", 1), MC_EINVAL);
    assert_int_equal(mc_cache_put(c, "k", 1, NULL, 1), MC_EINVAL);
    assert_int_equal(mc_cache_put(c, big, sizeof big, "v", 1), MC_E2BIG);
    assert_int_equal(mc_cache_put(c, big, MC_KEY_MAX, "v", 1), 0); /* the maximum itself fits */
    assert_int_equal(mc_cache_put_owned(c, "k", 1, buf, 1, NULL, 0, 99), MC_EINVAL);
    assert_int_equal(mc_cache_get_copy(c, big, sizeof big, buf, sizeof buf, &n), MC_EINVAL);
    assert_int_equal(mc_cache_get_copy(c, "k", 1, NULL, 4, &n), MC_EINVAL);
    assert_int_equal(mc_cache_get_copy(c, "k", 1, buf, sizeof buf, NULL), MC_EINVAL);
    assert_int_equal(mc_cache_get(c, "k", 1, NULL), MC_EINVAL);
    assert_int_equal(mc_cache_get(NULL, "k", 1, &v), MC_EINVAL);
    assert_int_equal(mc_cache_remove(c, NULL, 3), MC_EINVAL);
    assert_int_equal(mc_cache_resize(c, 0, 0), MC_EINVAL);
    assert_int_equal(mc_cache_size(c), 1); /* only the valid put landed */
    /* The empty key is a valid key (the empty tuple). */
    assert_int_equal(mc_cache_put(c, "", 0, "e", 1), 0);
    assert_int_equal(mc_cache_get_copy(c, "", 0, buf, sizeof buf, &n), 0);
    assert_int_equal(n, 1);
    verify(c);
    mc_cache_destroy(c);
}

/* ---- basic operations ---- */

static void test_put_get(void **state)
{
    (void)state;
    mc_cache *c = make_cache(100, 0, MC_POLICY_LRU, 0, NULL);
    assert_null(get_s(c, "alice"));
    assert_int_equal(put_s(c, "alice", "engineering"), 0);
    assert_int_equal(put_s(c, "bob", "sales"), 0);
    assert_string_equal(get_s(c, "alice"), "engineering");
    assert_string_equal(get_s(c, "bob"), "sales");
    assert_null(get_s(c, "carol"));
    assert_true(mc_cache_contains(c, "bob", 3));
    assert_false(mc_cache_contains(c, "carol", 5));

    mc_value *v = NULL;
    assert_int_equal(mc_cache_get(c, "alice", 5, &v), 0);
    assert_int_equal(mc_value_size(v), 11);
    assert_memory_equal(mc_value_data(v), "engineering", 11);
    size_t kl = 0;
    assert_memory_equal(mc_value_key(v, &kl), "alice", 5);
    assert_int_equal(kl, 5);
    assert_int_equal((uintptr_t)mc_value_data(v) % 8, 0); /* copied values are 8-aligned */
    mc_value_release(v);
    assert_int_equal(mc_cache_get(c, "nobody", 6, &v), MC_ENOENT);
    assert_null(v);

    /* A buffer too small: MC_ERANGE, the size reported, nothing copied. */
    char small[4] = "xxx";
    size_t n = 0;
    assert_int_equal(mc_cache_get_copy(c, "alice", 5, small, sizeof small, &n), MC_ERANGE);
    assert_int_equal(n, 11);
    assert_string_equal(small, "xxx");

    /* Zero-length values are values. */
    assert_int_equal(mc_cache_put(c, "empty", 5, NULL, 0), 0);
    assert_int_equal(mc_cache_get_copy(c, "empty", 5, NULL, 0, &n), 0);
    assert_int_equal(n, 0);

    mc_cache_stats st;
    mc_cache_stats_get(c, &st);
    assert_int_equal(st.entries, 3);
    assert_int_equal(st.hits, 5);   /* alice, bob, pinned alice, ERANGE alice, empty */
    assert_int_equal(st.misses, 3); /* alice (before put), carol, nobody */
    assert_int_equal(st.weight, 5 + 11 + 3 + 5 + 5 + 0);
    assert_true(st.memory > 0);
    assert_int_equal(st.max_entries, 100);
    verify(c);
    mc_cache_destroy(c);
}

static void test_replace_and_if_absent(void **state)
{
    (void)state;
    listener_log log = {0};
    mc_cache *c = make_cache(100, 0, MC_POLICY_LRU, 1, &log);
    assert_int_equal(put_s(c, "k", "v1"), 0);
    mc_value *old = NULL;
    assert_int_equal(mc_cache_get(c, "k", 1, &old), 0);
    assert_int_equal(put_s(c, "k", "v2"), 0);
    assert_int_equal(log.calls[MC_EVICT_REPLACED], 1);
    assert_string_equal(log.last_value, "v1");
    assert_string_equal(get_s(c, "k"), "v2");
    /* The handle taken before the replace still reads the old value. */
    assert_memory_equal(mc_value_data(old), "v1", 2);
    mc_value_release(old);
    assert_int_equal(mc_cache_size(c), 1);

    assert_int_equal(mc_cache_put_if_absent(c, "k", 1, "v3", 2), MC_EEXIST);
    assert_string_equal(get_s(c, "k"), "v2");
    assert_int_equal(mc_cache_put_if_absent(c, "j", 1, "v3", 2), 0);
    assert_string_equal(get_s(c, "j"), "v3");
    assert_int_equal(total_calls(&log), 1);
    verify(c);
    mc_cache_destroy(c);
}

static int freed_count;
static void count_free(void *p)
{
    freed_count++;
    free(p);
}

static void test_owned_values(void **state)
{
    (void)state;
    freed_count = 0;
    mc_cache *c = make_cache(0, 1000, MC_POLICY_LRU, 1, NULL);
    char *a = strdup("owned-a");
    assert_int_equal(mc_cache_put_owned(c, "a", 1, a, 7, count_free, 300, 0), 0);
    mc_value *v = NULL;
    assert_int_equal(mc_cache_get(c, "a", 1, &v), 0);
    assert_ptr_equal(mc_value_data(v), a); /* handed over, not copied */
    mc_cache_stats st;
    mc_cache_stats_get(c, &st);
    assert_int_equal(st.weight, 300);

    /* put-if-absent refused: ownership stays with the caller, nothing is freed. */
    char *b = strdup("owned-b");
    assert_int_equal(mc_cache_put_owned(c, "a", 1, b, 7, count_free, 0, MC_PUT_IF_ABSENT), MC_EEXIST);
    assert_int_equal(freed_count, 0);
    free(b);

    /* Too heavy for the cache: refused, caller still owns it. */
    char *h = strdup("heavy");
    assert_int_equal(mc_cache_put_owned(c, "h", 1, h, 5, count_free, 5000, 0), MC_E2BIG);
    assert_int_equal(freed_count, 0);
    free(h);

    /* Removal while pinned: freed only at release (after a grace period). */
    assert_int_equal(mc_cache_remove(c, "a", 1), 0);
    mc__reclaim_now();
    assert_int_equal(freed_count, 0);
    assert_memory_equal(mc_value_data(v), "owned-a", 7);
    mc_value_release(v);
    mc__reclaim_now();
    assert_int_equal(freed_count, 1);

    /* Weight 0 means key + value length. */
    char *d = strdup("dd");
    assert_int_equal(mc_cache_put_owned(c, "d", 1, d, 2, count_free, 0, 0), 0);
    mc_cache_stats_get(c, &st);
    assert_int_equal(st.weight, 3);
    mc_cache_destroy(c);
    mc__reclaim_now();
    assert_int_equal(freed_count, 2);
}

static void test_remove_and_clear(void **state)
{
    (void)state;
    listener_log log = {0};
    mc_cache *c = make_cache(1000, 0, MC_POLICY_LRU, 4, &log);
    char k[32];
    for (int i = 0; i < 200; i++) {
        snprintf(k, sizeof k, "key%d", i);
        /* Half inline in the index, half out of line (too long for a cell): the memory check
         * below sees the out-of-line half given back. */
        assert_int_equal(put_s(c, k, i % 2 ? "v" : "a value too long for a cell"), 0);
    }
    assert_int_equal(mc_cache_remove(c, "key7", 4), 0);
    assert_int_equal(mc_cache_remove(c, "key7", 4), MC_ENOENT);
    assert_null(get_s(c, "key7"));
    assert_int_equal(log.calls[MC_EVICT_INVALIDATION], 1);
    assert_string_equal(log.last_key, "key7");
    assert_int_equal(mc_cache_size(c), 199);

    mc_cache_stats before;
    mc_cache_stats_get(c, &before);
    mc_cache_clear(c);
    assert_int_equal(mc_cache_size(c), 0);
    assert_int_equal(log.calls[MC_EVICT_INVALIDATION], 200);
    for (int i = 0; i < 200; i++) {
        snprintf(k, sizeof k, "key%d", i);
        assert_null(get_s(c, k));
    }
    mc_cache_stats after;
    mc_cache_stats_get(c, &after);
    assert_int_equal(after.weight, 0);
    assert_true(after.memory < before.memory);
    assert_int_equal(after.evictions[MC_EVICT_INVALIDATION], 200);
    /* Usable after a clear. */
    assert_int_equal(put_s(c, "again", "yes"), 0);
    assert_string_equal(get_s(c, "again"), "yes");
    verify(c);
    mc_cache_destroy(c);
}

static void test_remove_prefix(void **state)
{
    (void)state;
    mc_cache *c = make_cache(1000, 0, MC_POLICY_LRU, 4, NULL);
    unsigned char key[MC_KEY_MAX];
    size_t kl;
    const char *users[] = {"@alice:example.com", "@bob:example.com"};
    for (int u = 0; u < 2; u++)
        for (int room = 0; room < 10; room++) {
            mc_arg args[] = {MC_ARG_S(users[u]), MC_ARG_I(room)};
            assert_int_equal(mc_key_encode(args, 2, key, sizeof key, &kl), 0);
            assert_int_equal(mc_cache_put(c, key, kl, "x", 1), 0);
        }
    mc_arg prefix[] = {MC_ARG_S(users[0])};
    unsigned char p[MC_KEY_MAX];
    size_t pl;
    assert_int_equal(mc_key_encode(prefix, 1, p, sizeof p, &pl), 0);
    size_t removed = 0;
    assert_int_equal(mc_cache_remove_prefix(c, p, pl, &removed), 0);
    assert_int_equal(removed, 10);
    assert_int_equal(mc_cache_size(c), 10);
    for (int room = 0; room < 10; room++) {
        mc_arg a[] = {MC_ARG_S(users[0]), MC_ARG_I(room)};
        mc_arg b[] = {MC_ARG_S(users[1]), MC_ARG_I(room)};
        assert_int_equal(mc_key_encode(a, 2, key, sizeof key, &kl), 0);
        assert_false(mc_cache_contains(c, key, kl));
        assert_int_equal(mc_key_encode(b, 2, key, sizeof key, &kl), 0);
        assert_true(mc_cache_contains(c, key, kl));
    }
    /* The empty prefix matches everything. */
    assert_int_equal(mc_cache_remove_prefix(c, "", 0, &removed), 0);
    assert_int_equal(removed, 10);
    verify(c);
    mc_cache_destroy(c);
}

/* ---- bounds ---- */

static void test_entry_bound_lru_order(void **state)
{
    (void)state;
    listener_log log = {0};
    mc_cache *c = make_cache(3, 0, MC_POLICY_LRU, 1, &log);
    put_s(c, "a", "1");
    put_s(c, "b", "2");
    put_s(c, "c", "3");
    assert_non_null(get_s(c, "a")); /* a is now the most recent; b the oldest */
    put_s(c, "d", "4");
    assert_int_equal(log.calls[MC_EVICT_SIZE], 1);
    assert_string_equal(log.last_key, "b");
    assert_null(get_s(c, "b"));
    assert_non_null(get_s(c, "a"));
    assert_non_null(get_s(c, "c"));
    assert_non_null(get_s(c, "d"));
    put_s(c, "e", "5"); /* a, c, d were read in that order: a is the oldest */
    assert_string_equal(log.last_key, "a");
    assert_int_equal(mc_cache_size(c), 3);

    /* Bounds hold across shards too. */
    mc_cache *m = make_cache(1000, 0, MC_POLICY_LRU, 8, NULL);
    char k[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(put_s(m, k, "v"), 0);
        assert_true(mc_cache_size(m) <= 1000);
    }
    mc_cache_stats st;
    mc_cache_stats_get(m, &st);
    assert_true(st.entries >= 990); /* per-shard bounds: every shard is full */
    assert_int_equal(st.evictions[MC_EVICT_SIZE], 20000 - st.entries);
    verify(m);
    verify(c);
    mc_cache_destroy(m);
    mc_cache_destroy(c);
}

static void test_byte_bound(void **state)
{
    (void)state;
    listener_log log = {0};
    mc_cache *c = make_cache(0, 100, MC_POLICY_LRU, 1, &log);
    char v[64];
    memset(v, 'v', sizeof v);
    /* Each entry weighs 2 + 30 = 32: three fit in 100, the fourth evicts the first. */
    assert_int_equal(mc_cache_put(c, "k1", 2, v, 30), 0);
    assert_int_equal(mc_cache_put(c, "k2", 2, v, 30), 0);
    assert_int_equal(mc_cache_put(c, "k3", 2, v, 30), 0);
    assert_int_equal(total_calls(&log), 0);
    assert_int_equal(mc_cache_put(c, "k4", 2, v, 30), 0);
    assert_int_equal(log.calls[MC_EVICT_SIZE], 1);
    assert_string_equal(log.last_key, "k1");
    mc_cache_stats st;
    mc_cache_stats_get(c, &st);
    assert_int_equal(st.weight, 96);
    /* A value that cannot fit at all is refused and the cache is unchanged. */
    char huge[200];
    memset(huge, 'h', sizeof huge);
    assert_int_equal(mc_cache_put(c, "big", 3, huge, sizeof huge), MC_E2BIG);
    assert_int_equal(mc_cache_size(c), 3);
    assert_int_equal(total_calls(&log), 1);
    /* One heavy entry pushes out as many as needed. */
    assert_int_equal(mc_cache_put(c, "k5", 2, huge, 90), 0);
    assert_int_equal(mc_cache_size(c), 1);
    assert_int_equal(log.calls[MC_EVICT_SIZE], 4);
    verify(c);
    mc_cache_destroy(c);
}

/* Caches bounded by weight alone keep LRU order: reads are recorded (small shards exactly,
 * larger ones within the generations), checked against an exact model at two sizes. */
static void test_byte_bound_lru_order(void **state)
{
    (void)state;
    listener_log log = {0};
    /* Three entries of weight 2 + 30 fit under 100: read k1, add k4: k2 goes, not k1. */
    mc_cache *c = make_cache(0, 100, MC_POLICY_LRU, 1, &log);
    char v[64];
    memset(v, 'v', sizeof v);
    assert_int_equal(mc_cache_put(c, "k1", 2, v, 30), 0);
    assert_int_equal(mc_cache_put(c, "k2", 2, v, 30), 0);
    assert_int_equal(mc_cache_put(c, "k3", 2, v, 30), 0);
    char out[64];
    size_t n;
    assert_int_equal(mc_cache_get_copy(c, "k1", 2, out, sizeof out, &n), 0);
    assert_int_equal(mc_cache_put(c, "k4", 2, v, 30), 0);
    assert_int_equal(log.calls[MC_EVICT_SIZE], 1);
    assert_string_equal(log.last_key, "k2");
    assert_int_equal(mc_cache_get_copy(c, "k3", 2, out, sizeof out, &n), 0);
    assert_int_equal(mc_cache_put(c, "k5", 2, v, 30), 0); /* k1, k4, k3 read in that order */
    assert_string_equal(log.last_key, "k1");
    verify(c);
    mc_cache_destroy(c);

    /* Larger: 2000 entries of weight 10 under a 20,000-byte bound in one shard, a hot set of
     * 100 keys read between inserts of new keys: no hot key is ever evicted. */
    listener_log big = {0};
    mc_cache *b = make_cache(0, 20000, MC_POLICY_LRU, 1, &big);
    char k[16];
    for (int i = 0; i < 100; i++) {
        snprintf(k, sizeof k, "h%03d", i);
        assert_int_equal(mc_cache_put(b, k, strlen(k), v, 10 - strlen(k)), 0);
    }
    for (int i = 0; i < 20000; i++) {
        snprintf(k, sizeof k, "c%05d", i);
        assert_int_equal(mc_cache_put(b, k, strlen(k), v, 10 - strlen(k)), 0);
        if (i % 10 == 0)
            for (int j = 0; j < 100; j++) {
                snprintf(k, sizeof k, "h%03d", j);
                assert_int_equal(mc_cache_get_copy(b, k, strlen(k), out, sizeof out, &n), 0);
            }
        assert_true(big.last_key[0] != 'h');
    }
    assert_true(big.calls[MC_EVICT_SIZE] >= 18000);
    verify(b);
    mc_cache_destroy(b);
}

static void test_resize(void **state)
{
    (void)state;
    listener_log log = {0};
    mc_cache *c = make_cache(100, 0, MC_POLICY_LRU, 1, &log);
    char k[32];
    for (int i = 0; i < 100; i++) {
        snprintf(k, sizeof k, "k%d", i);
        put_s(c, k, "v");
    }
    assert_int_equal(mc_cache_size(c), 100);
    assert_int_equal(mc_cache_resize(c, 10, 0), 0);
    assert_int_equal(mc_cache_size(c), 10); /* evicted at once, not at the next write */
    assert_int_equal(log.calls[MC_EVICT_SIZE], 90);
    /* The survivors are the most recent. */
    int survivors_recent = 0;
    for (int i = 90; i < 100; i++) {
        snprintf(k, sizeof k, "k%d", i);
        survivors_recent += get_s(c, k) != NULL;
    }
    assert_int_equal(survivors_recent, 10);
    mc_cache_stats st;
    mc_cache_stats_get(c, &st);
    assert_int_equal(st.max_entries, 10);
    assert_int_equal(mc_cache_resize(c, 1000, 0), 0);
    for (int i = 0; i < 500; i++) {
        snprintf(k, sizeof k, "n%d", i);
        put_s(c, k, "v");
    }
    assert_int_equal(mc_cache_size(c), 510);
    assert_int_equal(mc_cache_resize(c, 0, 50), 0); /* switch to a byte bound */
    mc_cache_stats_get(c, &st);
    assert_true(st.weight <= 50);
    verify(c);
    mc_cache_destroy(c);
}

/* ---- TTL ---- */

static uint64_t fake_now;
static uint64_t fake_clock(void *ud)
{
    (void)ud;
    return fake_now;
}

static void test_ttl(void **state)
{
    (void)state;
    listener_log log = {0};
    mc_cache_options o;
    mc_cache_options_init(&o);
    o.max_entries = 100;
    o.shards = 1;
    o.ttl_ns = 1000;
    o.clock = fake_clock;
    o.on_evict = on_evict;
    o.on_evict_ud = &log;
    fake_now = 1000000;
    mc_cache *c;
    assert_int_equal(mc_cache_create(&o, &c), 0);
    put_s(c, "a", "1");
    put_s(c, "b", "2");
    fake_now += 999;
    assert_non_null(get_s(c, "a")); /* read just in time: refreshes a's access time */
    fake_now += 500;
    assert_non_null(get_s(c, "a"));
    assert_null(get_s(c, "b")); /* not read for 1499 ns > ttl: a miss */
    assert_false(mc_cache_contains(c, "b", 1));
    assert_int_equal(log.calls[MC_EVICT_TIME], 0); /* readers never remove */
    mc_cache_cleanup(c);
    assert_int_equal(log.calls[MC_EVICT_TIME], 1);
    assert_string_equal(log.last_key, "b");
    assert_int_equal(mc_cache_size(c), 1);
    /* put-if-absent treats an expired entry as absent. */
    fake_now += 5000;
    assert_int_equal(mc_cache_put_if_absent(c, "a", 1, "new", 3), 0);
    assert_string_equal(get_s(c, "a"), "new");
    assert_int_equal(log.calls[MC_EVICT_TIME], 2);
    /* A write path sweeps expired entries too. */
    fake_now += 5000;
    put_s(c, "z", "9");
    assert_int_equal(log.calls[MC_EVICT_TIME], 3);
    assert_int_equal(mc_cache_size(c), 1);
    verify(c);
    mc_cache_destroy(c);

    /* S3-FIFO with TTL: cleanup scans everything. */
    o.policy = MC_POLICY_S3FIFO;
    memset(&log, 0, sizeof log);
    assert_int_equal(mc_cache_create(&o, &c), 0);
    char k[16];
    for (int i = 0; i < 50; i++) {
        snprintf(k, sizeof k, "k%d", i);
        put_s(c, k, "v");
    }
    fake_now += 600;
    for (int i = 0; i < 50; i += 2) {
        snprintf(k, sizeof k, "k%d", i);
        assert_non_null(get_s(c, k));
    }
    fake_now += 600;
    mc_cache_cleanup(c);
    assert_int_equal(log.calls[MC_EVICT_TIME], 25);
    assert_int_equal(mc_cache_size(c), 25);
    verify(c);
    mc_cache_destroy(c);
}

/* ---- handles ---- */

static void test_handles_outlive(void **state)
{
    (void)state;
    mc_cache *c = make_cache(2, 0, MC_POLICY_LRU, 1, NULL);
    put_s(c, "a", "alpha");
    mc_value *va, *va2;
    assert_int_equal(mc_cache_get(c, "a", 1, &va), 0);
    mc_value_retain(va);
    va2 = va;
    put_s(c, "b", "beta");
    put_s(c, "c", "gamma"); /* evicts a */
    assert_null(get_s(c, "a"));
    assert_memory_equal(mc_value_data(va), "alpha", 5);
    mc_value *vb;
    assert_int_equal(mc_cache_get(c, "b", 1, &vb), 0);
    mc_cache_clear(c);
    assert_memory_equal(mc_value_data(vb), "beta", 4);
    put_s(c, "d", "delta");
    mc_value *vd;
    assert_int_equal(mc_cache_get(c, "d", 1, &vd), 0);
    mc_cache_destroy(c); /* handles survive the cache itself */
    mc__reclaim_now();
    assert_memory_equal(mc_value_data(vd), "delta", 5);
    assert_memory_equal(mc_value_data(vb), "beta", 4);
    assert_memory_equal(mc_value_data(va2), "alpha", 5);
    mc_value_release(va);
    assert_memory_equal(mc_value_data(va2), "alpha", 5); /* retained twice */
    mc_value_release(va2);
    mc_value_release(vb);
    mc_value_release(vd);
    mc_value_release(NULL);
    mc__reclaim_now();
}

/* ---- S3-FIFO ---- */

static void test_s3fifo_scan_resistance(void **state)
{
    (void)state;
    /* A hot set read repeatedly survives a long scan of one-time keys under S3-FIFO; under
     * LRU the same scan flushes it. */
    char k[32];
    int kept[2];
    for (int p = 0; p < 2; p++) {
        mc_cache *c = make_cache(1000, 0, p ? MC_POLICY_S3FIFO : MC_POLICY_LRU, 1, NULL);
        for (int round = 0; round < 3; round++)
            for (int i = 0; i < 500; i++) {
                snprintf(k, sizeof k, "hot%d", i);
                if (!get_s(c, k))
                    put_s(c, k, "h");
            }
        for (int i = 0; i < 5000; i++) {
            snprintf(k, sizeof k, "scan%d", i);
            if (!get_s(c, k))
                put_s(c, k, "s");
        }
        kept[p] = 0;
        for (int i = 0; i < 500; i++) {
            snprintf(k, sizeof k, "hot%d", i);
            kept[p] += mc_cache_contains(c, k, strlen(k));
        }
        assert_int_equal(mc_cache_size(c), 1000);
        verify(c);
        mc_cache_destroy(c);
    }
    assert_int_equal(kept[0], 0);
    assert_true(kept[1] >= 450);
}

static void test_s3fifo_ops(void **state)
{
    (void)state;
    listener_log log = {0};
    mc_cache *c = make_cache(50, 0, MC_POLICY_S3FIFO, 1, &log);
    char k[32];
    for (int i = 0; i < 2000; i++) {
        snprintf(k, sizeof k, "k%d", i % 300);
        if (!get_s(c, k))
            put_s(c, k, "v");
        if (i % 7 == 0)
            mc_cache_remove(c, k, strlen(k));
        if (i % 13 == 0)
            put_s(c, k, "replaced");
        assert_true(mc_cache_size(c) <= 50);
    }
    verify(c);
    mc_cache_stats st;
    mc_cache_stats_get(c, &st);
    assert_int_equal(st.evictions[MC_EVICT_SIZE], (uint64_t)log.calls[MC_EVICT_SIZE]);
    assert_true(st.evictions[MC_EVICT_SIZE] > 0);
    assert_true(st.evictions[MC_EVICT_REPLACED] > 0);
    assert_int_equal(mc_cache_resize(c, 5, 0), 0);
    assert_int_equal(mc_cache_size(c), 5);
    verify(c);
    mc_cache_destroy(c);
}

/* The reference S3-FIFO rules, in one 10-entry shard: until the first eviction, entries
 * beyond the small queue's share (one entry) go to main; a small-queue entry read once
 * (fewer than two times) is still evicted from it; one read twice moves to main. */
static void test_s3fifo_reference_rules(void **state)
{
    (void)state;
    mc_cache *c = make_cache(10, 0, MC_POLICY_S3FIFO, 1, NULL);
    char k[32];
    for (int i = 0; i < 10; i++) { /* k0 in small, k1..k9 in main */
        snprintf(k, sizeof k, "k%d", i);
        put_s(c, k, "v");
    }
    put_s(c, "k10", "v"); /* small holds its share: k0 goes, k10 is the small queue */
    put_s(c, "k11", "v"); /* k10 goes: the filled main was kept */
    assert_false(mc_cache_contains(c, "k0", 2));
    assert_false(mc_cache_contains(c, "k10", 3));
    for (int i = 1; i < 10; i++) {
        snprintf(k, sizeof k, "k%d", i);
        assert_true(mc_cache_contains(c, k, strlen(k)));
    }
    assert_true(get_s(c, "k11")); /* read once */
    put_s(c, "k12", "v");
    assert_false(mc_cache_contains(c, "k11", 3)); /* once is not enough */
    assert_true(get_s(c, "k12"));
    assert_true(get_s(c, "k12")); /* twice */
    put_s(c, "k13", "v");
    assert_true(mc_cache_contains(c, "k12", 3)); /* moved to main; a main entry went */
    assert_true(mc_cache_size(c) <= 10);
    verify(c);
    mc_cache_destroy(c);
}

static void test_evict_reason_names(void **state)
{
    (void)state;
    assert_string_equal(mc_evict_reason_name(MC_EVICT_SIZE), "size");
    assert_string_equal(mc_evict_reason_name(MC_EVICT_MEMORY), "memory");
    assert_string_equal(mc_evict_reason_name(MC_EVICT_TIME), "time");
    assert_string_equal(mc_evict_reason_name(MC_EVICT_INVALIDATION), "invalidation");
    assert_string_equal(mc_evict_reason_name(MC_EVICT_REPLACED), "replaced");
    assert_string_equal(mc_evict_reason_name((mc_evict_reason)42), "unknown");
}

/* A listener may call back into the cache: it runs outside every lock. */
static void reentrant_listener(void *ud, const void *key, size_t klen, const void *value,
                               size_t vlen, mc_evict_reason reason)
{
    mc_cache *c = *(mc_cache **)ud;
    if (reason == MC_EVICT_SIZE)
        assert_int_equal(mc_cache_put(c, "evicted-last", 12, key, klen), 0);
}

static void test_reentrant_listener(void **state)
{
    (void)state;
    mc_cache *c = NULL;
    mc_cache_options o;
    mc_cache_options_init(&o);
    o.max_entries = 4;
    o.shards = 1;
    o.on_evict = reentrant_listener;
    o.on_evict_ud = &c;
    assert_int_equal(mc_cache_create(&o, &c), 0);
    char k[16];
    for (int i = 0; i < 20; i++) {
        snprintf(k, sizeof k, "k%d", i);
        put_s(c, k, "v");
    }
    assert_true(mc_cache_size(c) <= 4);
    verify(c);
    mc_cache_destroy(c);
}

static void test_evict_idle(void **state)
{
    (void)state;
    listener_log log = {0};
    mc_cache_options o;
    mc_cache_options_init(&o);
    o.max_entries = 100;
    o.shards = 2;
    o.track_access = true; /* access times without a TTL */
    o.clock = fake_clock;
    o.on_evict = on_evict;
    o.on_evict_ud = &log;
    fake_now = 1000;
    mc_cache *c;
    assert_int_equal(mc_cache_create(&o, &c), 0);
    char k[16];
    for (int i = 0; i < 10; i++) {
        snprintf(k, sizeof k, "k%d", i);
        put_s(c, k, "v");
    }
    fake_now += 5000000000ull; /* 5 s later, well past the 1 s access-time step */
    for (int i = 0; i < 3; i++) {
        snprintf(k, sizeof k, "k%d", i);
        assert_non_null(get_s(c, k));
    }
    fake_now += 1000;
    size_t n = 0;
    /* Not read for 2 s: the seven untouched entries go, the three just read stay. */
    assert_int_equal(mc_cache_evict_idle(c, 2000000000ull, 100, &n), 0);
    assert_int_equal(n, 7);
    assert_int_equal(log.calls[MC_EVICT_MEMORY], 7);
    assert_int_equal(mc_cache_size(c), 3);
    for (int i = 0; i < 3; i++) {
        snprintf(k, sizeof k, "k%d", i);
        assert_true(mc_cache_contains(c, k, strlen(k)));
    }
    /* A limit on how many go. */
    assert_int_equal(mc_cache_evict_idle(c, 0, 1, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(mc_cache_size(c), 2);
    mc_cache_stats st;
    mc_cache_stats_get(c, &st);
    assert_int_equal(st.evictions[MC_EVICT_MEMORY], 8);
    verify(c);
    mc_cache_destroy(c);

    /* Without access times an idle bound cannot be judged. */
    mc_cache *plain = make_cache(10, 0, MC_POLICY_LRU, 1, NULL);
    put_s(plain, "a", "1");
    assert_int_equal(mc_cache_evict_idle(plain, 1, 10, &n), MC_ENOTSUP);
    assert_int_equal(mc_cache_evict_idle(plain, 0, 10, &n), 0);
    assert_int_equal(n, 1);
    mc_value *v;
    put_s(plain, "b", "2");
    assert_int_equal(mc_cache_get(plain, "b", 1, &v), 0);
    assert_false(mc_value_is_none(v)); /* only memoized loads store "no value" */
    mc_value_release(v);
    assert_int_equal(mc_cache_evict_idle(NULL, 0, 1, &n), MC_EINVAL);
    mc_cache_destroy(plain);
}

/* Borrowed values (mc_read_begin, mc_cache_get_borrow, mc_read_end): valid until the
 * outermost end whatever happens to their entries, inline ones included (however many);
 * lookups inside a section; a cache destroyed inside one does not wait for it. */
static void test_borrow(void **state)
{
    (void)state;
    mc_cache_options o;
    mc_cache_options_init(&o);
    o.max_entries = 64;
    mc_cache *c;
    assert_int_equal(mc_cache_create(&o, &c), 0);
    char big[300];
    memset(big, 'b', sizeof big);
    assert_int_equal(mc_cache_put(c, "big", 3, big, sizeof big), 0);
    assert_int_equal(mc_cache_put(c, "s", 1, "tiny", 4), 0);
    const void *pb = NULL, *ps = NULL;
    size_t nb = 0, ns = 0;
    assert_int_equal(mc_cache_get_borrow(c, "big", 3, &pb, &nb), MC_EINVAL); /* no section */
    mc_read_begin();
    assert_int_equal(mc_cache_get_borrow(c, "big", 3, &pb, &nb), 0);
    assert_int_equal(nb, sizeof big);
    assert_int_equal(mc_cache_get_borrow(c, "s", 1, &ps, &ns), 0);
    assert_int_equal(ns, 4);
    assert_memory_equal(ps, "tiny", 4);
    const void *px;
    size_t nx;
    assert_int_equal(mc_cache_get_borrow(c, "nope", 4, &px, &nx), MC_ENOENT);
    /* Nested: an inner end releases nothing. */
    mc_read_begin();
    char small[8];
    size_t vl;
    assert_int_equal(mc_cache_get_copy(c, "s", 1, small, sizeof small, &vl), 0);
    mc_read_end();
    /* Replace, remove, evict everything and clear: the borrowed bytes stay as they were. */
    char other[300];
    memset(other, 'o', sizeof other);
    assert_int_equal(mc_cache_put(c, "big", 3, other, sizeof other), 0);
    assert_int_equal(mc_cache_remove(c, "s", 1), 0);
    for (int i = 0; i < 500; i++) {
        char k[16];
        int kl = snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(mc_cache_put(c, k, (size_t)kl, big, 100), 0);
    }
    mc_cache_clear(c);
    for (size_t i = 0; i < sizeof big; i++)
        assert_int_equal(((const char *)pb)[i], 'b');
    assert_memory_equal(ps, "tiny", 4);
    /* Many inline borrows in one section: each keeps its own bytes. */
    enum { MANY = 5000 };
    static const void *many[MANY];
    for (int i = 0; i < MANY; i++) {
        uint32_t v = (uint32_t)i * 2654435761u;
        assert_int_equal(mc_cache_put(c, "m", 1, &v, sizeof v), 0);
        size_t n;
        assert_int_equal(mc_cache_get_borrow(c, "m", 1, &many[i], &n), 0);
        assert_int_equal(n, sizeof v);
    }
    for (int i = 0; i < MANY; i++) {
        uint32_t v = (uint32_t)i * 2654435761u;
        assert_memory_equal(many[i], &v, sizeof v);
    }
    /* A cache destroyed inside a section: returns without waiting for it. */
    mc_cache *d;
    assert_int_equal(mc_cache_create(&o, &d), 0);
    assert_int_equal(mc_cache_put(d, "big", 3, big, sizeof big), 0);
    assert_int_equal(mc_cache_get_borrow(d, "big", 3, &px, &nx), 0);
    mc_cache_destroy(d);
    mc_read_end();
    mc_read_end(); /* without a begin: nothing */
    mc_cache_stats st;
    mc_cache_stats_get(c, &st);
    assert_true(st.hits >= 2 + MANY);
    /* A new section after the last one works as the first did. */
    assert_int_equal(mc_cache_put(c, "big", 3, other, sizeof other), 0);
    mc_read_begin();
    assert_int_equal(mc_cache_get_borrow(c, "big", 3, &pb, &nb), 0);
    assert_int_equal(((const char *)pb)[0], 'o');
    mc_read_end();
    mc_cache_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_validation),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_home_flood),
        cmocka_unit_test(test_put_get),
        cmocka_unit_test(test_replace_and_if_absent),
        cmocka_unit_test(test_owned_values),
        cmocka_unit_test(test_remove_and_clear),
        cmocka_unit_test(test_remove_prefix),
        cmocka_unit_test(test_entry_bound_lru_order),
        cmocka_unit_test(test_byte_bound),
        cmocka_unit_test(test_byte_bound_lru_order),
        cmocka_unit_test(test_resize),
        cmocka_unit_test(test_ttl),
        cmocka_unit_test(test_handles_outlive),
        cmocka_unit_test(test_s3fifo_scan_resistance),
        cmocka_unit_test(test_s3fifo_ops),
        cmocka_unit_test(test_s3fifo_reference_rules),
        cmocka_unit_test(test_evict_reason_names),
        cmocka_unit_test(test_reentrant_listener),
        cmocka_unit_test(test_evict_idle),
        cmocka_unit_test(test_borrow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
