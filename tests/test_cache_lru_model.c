/* The `lru` policy checked against a reference exact-LRU model on random operation sequences:
 * every get's hit/miss and value must match, and every evicted key must be the model's oldest
 * (small shards, exact mode) or among its oldest 2 * (gen_len + 16) (large shards, where hits
 * on entries stamped in the newest two generations are not restamped). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cache/cache_internal.h"
#include "modcache.h"

#define MAX_KEYS 1024

/* One shard of the model: keys in recency order, most recent last. */
typedef struct {
    int keys[MAX_KEYS];
    uint64_t vals[MAX_KEYS];
    int n, cap;
    int slack; /* allowed recency rank of a victim: 0 = exact LRU */
} model_shard;

typedef struct {
    model_shard shards[16];
    unsigned nshards;
    uint64_t seed;
} model;

static int model_find(const model_shard *s, int key)
{
    for (int i = 0; i < s->n; i++)
        if (s->keys[i] == key)
            return i;
    return -1;
}

static void model_del(model_shard *s, int i)
{
    memmove(&s->keys[i], &s->keys[i + 1], (size_t)(s->n - i - 1) * sizeof s->keys[0]);
    memmove(&s->vals[i], &s->vals[i + 1], (size_t)(s->n - i - 1) * sizeof s->vals[0]);
    s->n--;
}

static void model_push(model_shard *s, int key, uint64_t v)
{
    s->keys[s->n] = key;
    s->vals[s->n] = v;
    s->n++;
}

/* Evicted keys reported by the cache, in order. */
static int evicted[MAX_KEYS * 4];
static int nevicted;

static size_t encode(int key, unsigned char *buf)
{
    mc_arg a[] = {MC_ARG_I(key)};
    size_t len;
    assert_int_equal(mc_key_encode(a, 1, buf, MC_KEY_MAX, &len), 0);
    return len;
}

static void on_evict(void *ud, const void *key, size_t klen, const void *value, size_t vlen,
                     mc_evict_reason reason)
{
    (void)ud;
    (void)value;
    (void)vlen;
    if (reason != MC_EVICT_SIZE)
        return;
    size_t pos = 0;
    mc_arg a;
    assert_int_equal(mc_key_next(key, klen, &pos, &a), 1);
    evicted[nevicted++] = (int)a.v.i;
}

static model_shard *shard_for(model *m, const unsigned char *kb, size_t kl)
{
    /* White box: the cache picks a shard from the top byte of the seeded key hash. */
    uint64_t h = mc_key_hash(kb, kl, m->seed);
    return &m->shards[(h >> 56) & (m->nshards - 1)];
}

static void run_model(unsigned nshards, int capacity, int nkeys, int ops, unsigned rng_seed,
                      bool expect_exact)
{
    int max_rank = 0;
    mc_cache_options o;
    mc_cache_options_init(&o);
    o.max_entries = (size_t)capacity;
    o.shards = nshards;
    o.seed = 0xabcdef12345ull + rng_seed;
    o.on_evict = on_evict;
    mc_cache *c;
    assert_int_equal(mc_cache_create(&o, &c), 0);

    static model m;
    memset(&m, 0, sizeof m);
    m.nshards = nshards;
    m.seed = o.seed;
    for (unsigned i = 0; i < nshards; i++) {
        m.shards[i].cap = capacity / (int)nshards + ((int)i < capacity % (int)nshards);
        /* White box: small shards are exact; larger ones skip hits within the newest two
         * generations of max_entries / 16 stamps each, and readers report restamps in batches
         * of 16, so a victim may be as recent as two generations plus two batches. */
        int gen_len = m.shards[i].cap / 16 > 0 ? m.shards[i].cap / 16 : 1;
        m.shards[i].slack = atomic_load(&c->shards[i].exact) ? 0 : 2 * (gen_len + 16);
        assert_true(expect_exact == (m.shards[i].slack == 0));
    }

    srand(rng_seed);
    unsigned char kb[MC_KEY_MAX];
    uint64_t hits = 0, evictions = 0;
    for (int op = 0; op < ops; op++) {
        /* A skewed key choice so that hits, evictions and reorders all happen. */
        int key = rand() % 3 ? rand() % (nkeys / 4) : rand() % nkeys;
        size_t kl = encode(key, kb);
        model_shard *s = shard_for(&m, kb, kl);
        int at = model_find(s, key);
        int kind = rand() % 100;
        nevicted = 0;
        if (kind < 55) { /* get */
            uint64_t v = 0;
            size_t vl = 0;
            int rc = mc_cache_get_copy(c, kb, kl, &v, sizeof v, &vl);
            if (at < 0) {
                assert_int_equal(rc, MC_ENOENT);
            } else {
                assert_int_equal(rc, 0);
                assert_int_equal(v, s->vals[at]);
                uint64_t mv = s->vals[at];
                model_del(s, at);
                model_push(s, key, mv);
                hits++;
            }
        } else if (kind < 85 || kind >= 95) { /* put, or put-if-absent */
            bool if_absent = kind >= 95;
            uint64_t v = ((uint64_t)key << 32) | (uint64_t)op;
            int rc = if_absent ? mc_cache_put_if_absent(c, kb, kl, &v, sizeof v)
                               : mc_cache_put(c, kb, kl, &v, sizeof v);
            if (if_absent && at >= 0) {
                assert_int_equal(rc, MC_EEXIST);
            } else {
                assert_int_equal(rc, 0);
                if (at >= 0)
                    model_del(s, at);
                model_push(s, key, v);
                int expect = 0;
                while (s->n > s->cap) {
                    /* The cache's victim must be the model's oldest entry, or in exact-enough
                     * order: within the slack the promotion generations allow. */
                    assert_true(expect < nevicted);
                    int rank = model_find(s, evicted[expect]);
                    assert_true(rank >= 0);
                    if (rank > s->slack)
                        fail_msg("evicted key %d has recency rank %d, allowed %d", evicted[expect],
                                 rank, s->slack);
                    max_rank = rank > max_rank ? rank : max_rank;
                    model_del(s, rank);
                    expect++;
                    evictions++;
                }
                assert_int_equal(nevicted, expect);
            }
        } else { /* remove */
            int rc = mc_cache_remove(c, kb, kl);
            if (at < 0) {
                assert_int_equal(rc, MC_ENOENT);
            } else {
                assert_int_equal(rc, 0);
                model_del(s, at);
            }
        }
        if (op % 5000 == 0) {
            char msg[256];
            if (mc__cache_verify(c, msg, sizeof msg))
                fail_msg("%s", msg);
        }
    }
    size_t total = 0;
    for (unsigned i = 0; i < nshards; i++)
        total += (size_t)m.shards[i].n;
    assert_int_equal(mc_cache_size(c), total);
    /* The sequences must have exercised the interesting paths. */
    assert_true(hits > (uint64_t)ops / 10);
    assert_true(evictions > (uint64_t)ops / 100);
    if (expect_exact)
        assert_int_equal(max_rank, 0);
    else
        print_message("capacity %d in %u shards: worst victim recency rank %d\n", capacity, nshards,
                      max_rank);
    mc_cache_destroy(c);
}

static void test_model_one_shard(void **state)
{
    (void)state;
    run_model(1, 6, 60, 200000, 1, true);
    run_model(1, 7, 40, 50000, 2, true);
    run_model(1, 200, 1000, 200000, 5, false);
}

static void test_model_sharded(void **state)
{
    (void)state;
    run_model(4, 28, 200, 200000, 3, true);
    run_model(16, 100, 500, 200000, 4, true);
    run_model(4, 400, 1000, 200000, 6, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_one_shard),
        cmocka_unit_test(test_model_sharded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
