/* Multi-threaded stress of mc_cache: mixed get/put/remove/clear/resize from several threads,
 * checking values never mix up, bounds hold, every entry leaves exactly once, nothing leaks. */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "cache/cache_internal.h"
#include "modcache.h"

#define NTHREADS 4
#define NKEYS 4096
#define BIG_BOUND 1000
#define SMALL_BOUND 200
#define HELD 8

/* Operations per thread; sanitizer builds (5-15x slower) do fewer of them. */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define OPS_PER_THREAD 300000
#else
#define OPS_PER_THREAD 1000000
#endif

typedef struct {
    uint64_t key;
    uint64_t version;
    uint64_t check; /* key ^ version ^ constant: a torn or foreign value fails it */
} value_t;

#define CHECK_SALT 0x5bd1e9955bd1e995ull

static struct {
    mc_cache *cache;
    mc_policy policy;
    atomic_ulong inserted;      /* successful puts: each created one entry */
    atomic_ulong left;          /* listener calls: each entry leaving once */
    atomic_ulong owned_made, owned_freed;
    atomic_ulong hits, gets;
    atomic_int bound_violations;
} g;

static void on_evict(void *ud, const void *key, size_t klen, const void *value, size_t vlen,
                     mc_evict_reason reason)
{
    (void)ud;
    (void)key;
    (void)klen;
    (void)reason;
    /* The value must still be intact when the listener sees it. */
    const value_t *v = value;
    if (vlen != sizeof *v || v->check != (v->key ^ v->version ^ CHECK_SALT))
        abort();
    atomic_fetch_add(&g.left, 1);
}

static void owned_free(void *p)
{
    atomic_fetch_add(&g.owned_freed, 1);
    free(p);
}

static uint64_t next_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t encode(uint64_t key, unsigned char *buf)
{
    mc_arg a[] = {MC_ARG_U(key)};
    size_t len = 0;
    if (mc_key_encode(a, 1, buf, MC_KEY_MAX, &len) != 0)
        abort();
    return len;
}

static void check_value(const value_t *v, uint64_t key)
{
    if (v->key != key || v->check != (v->key ^ v->version ^ CHECK_SALT)) {
        fprintf(stderr, "value mix-up: asked %llu got key %llu\n", (unsigned long long)key,
                (unsigned long long)v->key);
        abort();
    }
}

static void *worker(void *arg)
{
    uint64_t rs = (uint64_t)(uintptr_t)arg * 7919 + 1;
    unsigned tid = (unsigned)(uintptr_t)arg;
    mc_cache *c = g.cache;
    unsigned char kb[MC_KEY_MAX];
    mc_value *held[HELD] = {0};
    uint64_t held_key[HELD];
    unsigned long inserted = 0, hits = 0, gets = 0;

    for (long op = 0; op < OPS_PER_THREAD; op++) {
        uint64_t r = next_rand(&rs);
        /* Skewed keys: a hot quarter gets most of the traffic. */
        uint64_t key = (r & 3) ? (r >> 8) % (NKEYS / 4) : (r >> 8) % NKEYS;
        size_t kl = encode(key, kb);
        unsigned kind = (unsigned)((r >> 40) % 10000);
        if (kind < 5000) {
            value_t v;
            size_t vl;
            int rc = mc_cache_get_copy(c, kb, kl, &v, sizeof v, &vl);
            gets++;
            if (rc == 0) {
                if (vl != sizeof v)
                    abort();
                check_value(&v, key);
                hits++;
            } else if (rc != MC_ENOENT) {
                abort();
            }
        } else if (kind < 6000) {
            unsigned slot = (unsigned)(r >> 20) % HELD;
            if (held[slot]) {
                check_value(mc_value_data(held[slot]), held_key[slot]);
                mc_value_release(held[slot]);
                held[slot] = NULL;
            }
            if (mc_cache_get(c, kb, kl, &held[slot]) == 0) {
                if (mc_value_size(held[slot]) != sizeof(value_t))
                    abort();
                held_key[slot] = key;
            }
        } else if (kind < 8500) {
            value_t v = {key, (uint64_t)op << 8 | tid, 0};
            v.check = v.key ^ v.version ^ CHECK_SALT;
            int rc = (kind < 8300) ? mc_cache_put(c, kb, kl, &v, sizeof v)
                                   : mc_cache_put_if_absent(c, kb, kl, &v, sizeof v);
            if (rc == 0)
                inserted++;
            else if (rc != MC_EEXIST && rc != MC_E2BIG)
                abort();
            size_t n = mc_cache_size(c);
            if (n > BIG_BOUND)
                atomic_fetch_add(&g.bound_violations, 1);
        } else if (kind < 8800) {
            value_t *v = malloc(sizeof *v);
            v->key = key;
            v->version = (uint64_t)op;
            v->check = v->key ^ v->version ^ CHECK_SALT;
            int rc = mc_cache_put_owned(c, kb, kl, v, sizeof *v, owned_free, 0, 0);
            if (rc == 0) {
                inserted++;
                atomic_fetch_add(&g.owned_made, 1);
            } else {
                free(v);
            }
        } else if (kind < 9990) {
            int rc = mc_cache_remove(c, kb, kl);
            if (rc != 0 && rc != MC_ENOENT)
                abort();
        } else if (kind < 9993) {
            mc_cache_clear(c);
        } else if (kind < 9996) {
            mc_cache_resize(c, (r >> 50) & 1 ? BIG_BOUND : SMALL_BOUND, 0);
        } else if (kind < 9998) {
            /* Keys of one field: a one-field prefix is the whole key. */
            mc_cache_remove_prefix(c, kb, kl, NULL);
        } else {
            char msg[256];
            if (mc__cache_verify(c, msg, sizeof msg) != 0) {
                fprintf(stderr, "invariant: %s\n", msg);
                abort();
            }
        }
    }
    for (unsigned i = 0; i < HELD; i++)
        if (held[i]) {
            check_value(mc_value_data(held[i]), held_key[i]);
            mc_value_release(held[i]);
        }
    atomic_fetch_add(&g.inserted, inserted);
    atomic_fetch_add(&g.hits, hits);
    atomic_fetch_add(&g.gets, gets);
    return NULL;
}

static void run_stress(mc_policy policy, unsigned shards, size_t ttl_ns)
{
    memset(&g, 0, sizeof g);
    mc_cache_options o;
    mc_cache_options_init(&o);
    o.max_entries = BIG_BOUND;
    o.policy = policy;
    o.shards = shards;
    o.ttl_ns = ttl_ns;
    o.on_evict = on_evict;
    assert_int_equal(mc_cache_create(&o, &g.cache), 0);

    pthread_t th[NTHREADS];
    for (uintptr_t i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, worker, (void *)i), 0);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);

    char msg[256];
    if (mc__cache_verify(g.cache, msg, sizeof msg) != 0)
        fail_msg("invariant after stress: %s", msg);
    assert_int_equal(atomic_load(&g.bound_violations), 0);
    /* Every entry ever inserted is either still present or was reported leaving, once. */
    size_t present = mc_cache_size(g.cache);
    assert_int_equal(atomic_load(&g.inserted), atomic_load(&g.left) + present);
    /* No key is present twice: removing each key once empties the cache. */
    unsigned char kb[MC_KEY_MAX];
    for (uint64_t k = 0; k < NKEYS; k++) {
        size_t kl = encode(k, kb);
        mc_cache_remove(g.cache, kb, kl);
        assert_false(mc_cache_contains(g.cache, kb, kl));
    }
    assert_int_equal(mc_cache_size(g.cache), 0);
    assert_int_equal(atomic_load(&g.inserted), atomic_load(&g.left));
    mc_cache_stats st;
    mc_cache_stats_get(g.cache, &st);
    assert_int_equal(st.weight, 0);
    /* The run must have exercised hits (fewer with a short TTL on a slow sanitized build). */
    assert_true(atomic_load(&g.hits) > atomic_load(&g.gets) / (ttl_ns ? 100 : 10));
    mc_cache_destroy(g.cache);
    /* Worker threads freed their retired entries at exit; this thread frees its own. */
    mc__reclaim_now();
    assert_int_equal(atomic_load(&g.owned_made), atomic_load(&g.owned_freed));
    print_message("policy %d shards %u: %lu puts, %lu gets (%.1f%% hits)\n", (int)policy, shards,
                  (unsigned long)atomic_load(&g.inserted), (unsigned long)atomic_load(&g.gets),
                  100.0 * (double)atomic_load(&g.hits) / (double)atomic_load(&g.gets));
}

static void test_stress_lru(void **state)
{
    (void)state;
    run_stress(MC_POLICY_LRU, 4, 0);
}

static void test_stress_lru_one_shard(void **state)
{
    (void)state;
    run_stress(MC_POLICY_LRU, 1, 0);
}

static void test_stress_s3fifo(void **state)
{
    (void)state;
    run_stress(MC_POLICY_S3FIFO, 4, 0);
}

static void test_stress_ttl(void **state)
{
    (void)state;
    run_stress(MC_POLICY_LRU, 2, 1000000); /* 1 ms: entries expire during the run */
}

/* ---- inline values replaced in place: a reader never sees bytes of two values ---- */

#define TEAR_KEYS 16
#define TEAR_ROUNDS (OPS_PER_THREAD / 4)

static struct {
    mc_cache *cache;
    atomic_int stop;
    atomic_ulong reads, torn;
} tear;

/* Values of 12 bytes (inline with a 2-byte key): every byte the same, so any mix of two
 * values shows. */
static void *tear_writer(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    for (int i = 0; i < TEAR_ROUNDS; i++) {
        unsigned char k[2] = {'t', (unsigned char)(rand_r(&seed) % TEAR_KEYS)};
        unsigned char v[12];
        memset(v, (int)(1 + rand_r(&seed) % 255), sizeof v);
        if (i % 64 == 63)
            mc_cache_remove(tear.cache, k, sizeof k);
        else
            assert_int_equal(mc_cache_put(tear.cache, k, sizeof k, v, sizeof v), 0);
    }
    return NULL;
}

static void *tear_reader(void *arg)
{
    (void)arg;
    unsigned long reads = 0, torn = 0;
    while (!atomic_load(&tear.stop)) {
        for (int key = 0; key < TEAR_KEYS; key++) {
            unsigned char k[2] = {'t', (unsigned char)key}, v[16];
            size_t vl = 0;
            if (mc_cache_get_copy(tear.cache, k, sizeof k, v, sizeof v, &vl) != 0)
                continue;
            reads++;
            if (vl != 12) {
                torn++;
                continue;
            }
            for (size_t i = 1; i < vl; i++)
                if (v[i] != v[0]) {
                    torn++;
                    break;
                }
        }
    }
    atomic_fetch_add(&tear.reads, reads);
    atomic_fetch_add(&tear.torn, torn);
    return NULL;
}

static void test_inline_values_never_tear(void **state)
{
    (void)state;
    mc_cache_options o;
    mc_cache_options_init(&o);
    o.max_entries = 1000;
    o.shards = 1; /* every key in one shard: writers and readers meet on the same buckets */
    assert_int_equal(mc_cache_create(&o, &tear.cache), 0);
    atomic_store(&tear.stop, 0);
    atomic_store(&tear.reads, 0);
    atomic_store(&tear.torn, 0);
    pthread_t w[2], r[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&r[i], NULL, tear_reader, NULL), 0);
        assert_int_equal(pthread_create(&w[i], NULL, tear_writer, (void *)(uintptr_t)(i + 1)), 0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(w[i], NULL);
    atomic_store(&tear.stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(r[i], NULL);
    print_message("%lu reads of inline values under replacement, %lu torn\n",
                  atomic_load(&tear.reads), atomic_load(&tear.torn));
    assert_true(atomic_load(&tear.reads) > 1000);
    assert_int_equal(atomic_load(&tear.torn), 0);
    char msg[256];
    if (mc__cache_verify(tear.cache, msg, sizeof msg) != 0)
        fail_msg("%s", msg);
    mc_cache_destroy(tear.cache);
}

/* A key that is in the cache and never written is found by every lookup, however often a
 * writer rewrites the bucket it shares: a reader whose copy of the bucket a writer spoils
 * reads it again, and that must not count as a step of its walk (in a two-bucket table, two
 * spoiled copies used to end the walk before the key's bucket was ever read: a miss). */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define PRESENT_READS 200000
#else
#define PRESENT_READS 2000000
#endif

static struct {
    mc_cache *cache;
    char a[8], b[8];
    size_t alen, blen;
    atomic_int stop;
} pres;

static void *present_writer(void *arg)
{
    (void)arg;
    for (uint64_t v = 0; !atomic_load_explicit(&pres.stop, memory_order_relaxed); v++)
        if (mc_cache_put(pres.cache, pres.b, pres.blen, &v, sizeof v) != 0) /* in place */
            abort();
    return NULL;
}

static void test_present_key_never_missed(void **state)
{
    (void)state;
    unsigned long total_misses = 0, total_reads = 0;
    for (uint64_t seed = 1; seed <= 8; seed++) {
        mc_cache_options o;
        mc_cache_options_init(&o);
        o.max_entries = 2; /* one shard of two buckets: every walk is short */
        o.shards = 1;
        o.seed = seed;
        assert_int_equal(mc_cache_create(&o, &pres.cache), 0);
        uint32_t nb = atomic_load(&pres.cache->shards[0].table)->nbuckets;
        assert_true(nb >= 2);
        pres.alen = (size_t)snprintf(pres.a, sizeof pres.a, "a");
        uint32_t home = mc__home_of(mc_key_hash(pres.a, pres.alen, seed), nb);
        /* B: a key of the same home bucket, so that the writer rewrites A's bucket. */
        int found = 0;
        for (int i = 0; i < 1000 && !found; i++) {
            pres.blen = (size_t)snprintf(pres.b, sizeof pres.b, "b%d", i);
            found = mc__home_of(mc_key_hash(pres.b, pres.blen, seed), nb) == home;
        }
        assert_true(found);
        uint64_t va = 42, vb = 0;
        assert_int_equal(mc_cache_put(pres.cache, pres.a, pres.alen, &va, sizeof va), 0);
        assert_int_equal(mc_cache_put(pres.cache, pres.b, pres.blen, &vb, sizeof vb), 0);
        atomic_store(&pres.stop, 0);
        pthread_t w;
        assert_int_equal(pthread_create(&w, NULL, present_writer, NULL), 0);
        unsigned long misses = 0;
        for (int i = 0; i < PRESENT_READS; i++) {
            uint64_t got = 0;
            size_t vl = 0;
            int rc = mc_cache_get_copy(pres.cache, pres.a, pres.alen, &got, sizeof got, &vl);
            if (rc != 0)
                misses++;
            else if (vl != sizeof got || got != 42)
                fail_msg("key a returned a wrong value (%zu bytes, %lu)", vl, (unsigned long)got);
        }
        atomic_store(&pres.stop, 1);
        pthread_join(w, NULL);
        total_misses += misses;
        total_reads += PRESENT_READS;
        mc_cache_destroy(pres.cache);
    }
    print_message("%lu lookups of a present key beside a writer, %lu misses\n", total_reads, total_misses);
    assert_int_equal(total_misses, 0);
}

/* A value borrowed in a read section on one thread stays intact while another thread
 * replaces and removes its entry, evicts the whole cache and clears it, and while liburcu's
 * reclamation thread has time to run. The borrowed value is owned by the cache and its
 * destructor scribbles over it before freeing it, so a reclamation that came too early
 * changes the bytes in every build (and AddressSanitizer reports the read). */
static struct {
    mc_cache *cache;
    atomic_int round; /* the round the writer should run, -1: stop */
    atomic_int done;  /* the last round the writer finished */
} brw;

#define BORROW_ROUNDS 200
#define BORROW_LEN 256

static void scribble_free(void *v)
{
    /* Volatile stores: a plain memset before free is a dead store the compiler may drop. */
    volatile unsigned char *b = v;
    for (size_t i = 0; i < BORROW_LEN; i++)
        b[i] = 0xdd;
    free(v);
}

static void *borrow_writer(void *arg)
{
    (void)arg; /* cmocka asserts only on the test's own thread: abort() here */
    unsigned char junk[BORROW_LEN];
    for (int seen = 0;;) {
        int r = atomic_load(&brw.round);
        if (r < 0)
            break;
        if (r == seen) {
            sched_yield();
            continue;
        }
        seen = r;
        memset(junk, 0xee, sizeof junk);
        if (mc_cache_put(brw.cache, "k", 1, junk, sizeof junk) != 0) /* replaced */
            abort();
        if (mc_cache_remove(brw.cache, "k", 1) != 0)
            abort();
        for (int i = 0; i < 600; i++) {
            char k[16];
            int kl = snprintf(k, sizeof k, "w%d", i);
            if (mc_cache_put(brw.cache, k, (size_t)kl, junk, 64 + (size_t)i % 64) != 0)
                abort();
        }
        mc_cache_clear(brw.cache);
        atomic_store(&brw.done, r);
    }
    return NULL;
}

static void test_borrow_outlives_removal(void **state)
{
    (void)state;
    mc_cache_options o;
    mc_cache_options_init(&o);
    o.max_entries = 200;
    assert_int_equal(mc_cache_create(&o, &brw.cache), 0);
    atomic_store(&brw.round, 0);
    atomic_store(&brw.done, 0);
    pthread_t w;
    assert_int_equal(pthread_create(&w, NULL, borrow_writer, NULL), 0);
    unsigned long intact = 0;
    for (int r = 1; r <= BORROW_ROUNDS; r++) {
        unsigned char *v = malloc(BORROW_LEN);
        assert_non_null(v);
        memset(v, (unsigned char)r, BORROW_LEN);
        assert_int_equal(mc_cache_put_owned(brw.cache, "k", 1, v, BORROW_LEN, scribble_free, 0, 0), 0);
        mc_read_begin();
        const void *p;
        size_t n;
        assert_int_equal(mc_cache_get_borrow(brw.cache, "k", 1, &p, &n), 0);
        assert_int_equal(n, BORROW_LEN);
        atomic_store(&brw.round, r);
        while (atomic_load(&brw.done) != r)
            sched_yield();
        if (r % 20 == 0)
            usleep(5000); /* time for the reclamation thread to (wrongly) free it */
        const unsigned char *b = p;
        for (size_t i = 0; i < n; i++)
            if (b[i] != (unsigned char)r)
                fail_msg("round %d: borrowed byte %zu changed to %u", r, i, b[i]);
        intact++;
        mc_read_end();
    }
    atomic_store(&brw.round, -1);
    pthread_join(w, NULL);
    assert_int_equal(intact, BORROW_ROUNDS);
    mc_cache_destroy(brw.cache);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stress_lru),
        cmocka_unit_test(test_stress_lru_one_shard),
        cmocka_unit_test(test_stress_s3fifo),
        cmocka_unit_test(test_stress_ttl),
        cmocka_unit_test(test_inline_values_never_tear),
        cmocka_unit_test(test_present_key_never_missed),
        cmocka_unit_test(test_borrow_outlives_removal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
