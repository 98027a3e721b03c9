/* The `lru` policy checked against a reference exact-LRU model on random operation sequences:
 * every get's hit/miss and value must match, and every evicted key must be the model's oldest
 * (small shards, exact mode) or among its oldest 2 * (gen_len + 16) (large shards, where hits
 * on entries stamped in the newest two generations are not restamped). Both kinds of bound:
 * max_entries, and max_bytes alone (entries of weight 1 to 3, as an `iterable` memoized
 * function stores them), where reads must count just the same. */
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
    int weights[MAX_KEYS];
    int n, cap;
    int weight; /* sum of weights (bounded by cap when the cache is bounded by weight) */
    int slack;  /* allowed recency rank of a victim: 0 = exact LRU */
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
    s->weight -= s->weights[i];
    memmove(&s->keys[i], &s->keys[i + 1], (size_t)(s->n - i - 1) * sizeof s->keys[0]);
    memmove(&s->vals[i], &s->vals[i + 1], (size_t)(s->n - i - 1) * sizeof s->vals[0]);
    memmove(&s->weights[i], &s->weights[i + 1], (size_t)(s->n - i - 1) * sizeof s->weights[0]);
    s->n--;
}

static void model_push(model_shard *s, int key, uint64_t v, int weight)
{
    s->keys[s->n] = key;
    s->vals[s->n] = v;
    s->weights[s->n] = weight;
    s->weight += weight;
    s->n++;
}

/* Over its bound: entries, or weights when the cache is bounded by weight alone. */
static bool model_over(const model_shard *s, bool by_weight)
{
    return by_weight ? s->weight > s->cap : s->n > s->cap;
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

static void run_model_ex(unsigned nshards, int capacity, int nkeys, int ops, unsigned rng_seed,
                         bool expect_exact, bool by_weight)
{
    int max_rank = 0;
    mc_cache_options o;
    mc_cache_options_init(&o);
    if (by_weight)
        o.max_bytes = (size_t)capacity;
    else
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
        if (by_weight) {
            /* Bounded by weight alone, a shard is exact while it holds fewer than 64 entries
             * (an empty one is); its generations span count / 16 <= cap / 16 stamps. */
            assert_true(atomic_load(&c->shards[i].exact));
            m.shards[i].slack = expect_exact ? 0 : 2 * (gen_len + 16);
        }
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
                int mw = s->weights[at];
                model_del(s, at);
                model_push(s, key, mv, mw);
                hits++;
            }
        } else if (kind < 85 || kind >= 95) { /* put, or put-if-absent */
            bool if_absent = kind >= 95;
            uint64_t v = ((uint64_t)key << 32) | (uint64_t)op;
            int weight = by_weight ? 1 + key % 3 : 1;
            int rc;
            if (by_weight) {
                uint64_t *owned = malloc(sizeof *owned);
                assert_non_null(owned);
                *owned = v;
                rc = mc_cache_put_owned(c, kb, kl, owned, sizeof *owned, free, (size_t)weight,
                                        if_absent ? MC_PUT_IF_ABSENT : 0);
                if (rc != 0)
                    free(owned);
            } else {
                rc = if_absent ? mc_cache_put_if_absent(c, kb, kl, &v, sizeof v)
                               : mc_cache_put(c, kb, kl, &v, sizeof v);
            }
            if (if_absent && at >= 0) {
                assert_int_equal(rc, MC_EEXIST);
            } else {
                assert_int_equal(rc, 0);
                if (at >= 0)
                    model_del(s, at);
                model_push(s, key, v, weight);
                int expect = 0;
                while (model_over(s, by_weight)) {
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

static void run_model(unsigned nshards, int capacity, int nkeys, int ops, unsigned rng_seed,
                      bool expect_exact)
{
    run_model_ex(nshards, capacity, nkeys, ops, rng_seed, expect_exact, false);
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

/* The case first: a, b, c under a bound of 3 by weight, read a, put d: b goes. */
static void test_weight_bound_records_reads(void **state)
{
    (void)state;
    mc_cache_options o;
    mc_cache_options_init(&o);
    o.max_bytes = 3;
    o.shards = 1;
    o.on_evict = on_evict;
    mc_cache *c;
    assert_int_equal(mc_cache_create(&o, &c), 0);
    unsigned char kb[MC_KEY_MAX];
    for (int k = 0; k < 4; k++) {
        if (k == 3) {
            mc_value *v;
            size_t kl = encode(0, kb);
            assert_int_equal(mc_cache_get(c, kb, kl, &v), 0);
            mc_value_release(v);
        }
        size_t kl = encode(k, kb);
        char *owned = malloc(1);
        assert_non_null(owned);
        *owned = (char)('a' + k);
        nevicted = 0;
        assert_int_equal(mc_cache_put_owned(c, kb, kl, owned, 1, free, 1, 0), 0);
    }
    assert_int_equal(nevicted, 1);
    assert_int_equal(evicted[0], 1); /* b, not a */
    mc_cache_destroy(c);
}

/* Bounded by weight only (every `iterable` memoized function is): exact while small, within
 * the generations' slack when large, in one shard and in several. */
static void test_model_weight_bounded(void **state)
{
    (void)state;
    run_model_ex(1, 6, 24, 200000, 11, true, true);
    run_model_ex(1, 40, 150, 100000, 12, true, true);
    run_model_ex(4, 28, 100, 200000, 13, true, true);
    run_model_ex(1, 400, 1000, 200000, 14, false, true);
    run_model_ex(4, 1600, 4000, 200000, 15, false, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_one_shard),
        cmocka_unit_test(test_model_sharded),
        cmocka_unit_test(test_weight_bound_records_reads),
        cmocka_unit_test(test_model_weight_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
