/* Randomized concurrency test of memoized functions: readers, writers that change the
 * "database" then invalidate, prefills and batch calls, checking no stale value is ever served. */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "modcache.h"

#define NKEYS 64
#define READERS 3
#define WRITERS 1

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define READER_OPS 30000
#else
#define READER_OPS 200000
#endif

/* The database: a version per key. Writers raise it, then invalidate; `floor` is the version
 * that any call starting after the invalidation returned must see at least. */
static atomic_long db[NKEYS];
static atomic_long floor_[NKEYS];
static atomic_long loader_calls;
static atomic_int stop_writers;
static atomic_int stale_reads;
static mc_cached *fn;

static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)self;
    (void)nargs;
    atomic_fetch_add(&loader_calls, 1);
    long v = atomic_load(&db[args[0].v.i]);
    /* Widen the window between reading the database and storing the result. */
    for (int i = 0; i < 3; i++)
        sched_yield();
    return mc_load_set_copy(load, &v, sizeof v);
}

static int batch_loader(void *self, const mc_arg *keys, size_t nkeys, size_t nargs, mc_load *load)
{
    (void)self;
    for (size_t i = 0; i < nkeys; i++) {
        atomic_fetch_add(&loader_calls, 1);
        long v = atomic_load(&db[keys[i * nargs].v.i]);
        mc_load_set_copy(mc_load_item(load, i), &v, sizeof v);
    }
    sched_yield();
    return 0;
}

static void check(int64_t key, long floor_before, mc_value *v)
{
    long got;
    memcpy(&got, mc_value_data(v), sizeof got);
    if (got < floor_before) {
        fprintf(stderr, "stale: key %lld served version %ld after invalidation of %ld\n",
                (long long)key, got, floor_before);
        atomic_fetch_add(&stale_reads, 1);
    }
}

static void *reader(void *arg)
{
    uint64_t s = (uintptr_t)arg * 977 + 3;
    for (int op = 0; op < READER_OPS; op++) {
        uint64_t r = rnd(&s);
        int64_t key = (int64_t)(r % NKEYS);
        long floor_before = atomic_load(&floor_[key]);
        if ((r >> 20) % 16 == 0) {
            /* A batch of three keys. */
            mc_arg keys[3] = {MC_ARG_I(key), MC_ARG_I((key + 1) % NKEYS), MC_ARG_I((key + 7) % NKEYS)};
            long floors[3] = {floor_before, atomic_load(&floor_[(key + 1) % NKEYS]),
                              atomic_load(&floor_[(key + 7) % NKEYS])};
            mc_value *vals[3];
            int rcs[3];
            if (mc_cached_call_many(fn, keys, 3, 1, vals, rcs) != 0)
                abort();
            for (int i = 0; i < 3; i++) {
                if (rcs[i] != 0)
                    abort();
                check(keys[i].v.i, floors[i], vals[i]);
                mc_value_release(vals[i]);
            }
            continue;
        }
        mc_arg a[] = {MC_ARG_I(key)};
        mc_value *v;
        if (mc_cached_call(fn, a, 1, &v) != 0)
            abort();
        check(key, floor_before, v);
        mc_value_release(v);
    }
    return NULL;
}

static void *writer(void *arg)
{
    uint64_t s = (uintptr_t)arg * 31 + 7;
    while (!atomic_load(&stop_writers)) {
        uint64_t r = rnd(&s);
        int64_t key = (int64_t)(r % NKEYS);
        long v = atomic_fetch_add(&db[key], 1) + 1;
        mc_arg a[] = {MC_ARG_I(key)};
        if ((r >> 32) % 64 == 0) {
            mc_cached_invalidate_all(fn);
        } else if ((r >> 32) % 64 == 1) {
            /* A prefill with the new value is as good as an invalidation. */
            mc_cached_prefill(fn, a, 1, &v, sizeof v);
        } else {
            mc_cached_invalidate(fn, a, 1);
        }
        /* From now on no call may return anything older than v. */
        atomic_store(&floor_[key], v);
        sched_yield();
    }
    return NULL;
}

static void test_no_stale_reads(void **state)
{
    (void)state;
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.max_entries = NKEYS / 2; /* evictions too */
    o.batch_loader = batch_loader;
    assert_int_equal(mc_cached_create(&o, loader, NULL, &fn), 0);
    pthread_t r[READERS], w[WRITERS];
    for (uintptr_t i = 0; i < READERS; i++)
        pthread_create(&r[i], NULL, reader, (void *)i);
    for (uintptr_t i = 0; i < WRITERS; i++)
        pthread_create(&w[i], NULL, writer, (void *)i);
    for (int i = 0; i < READERS; i++)
        pthread_join(r[i], NULL);
    atomic_store(&stop_writers, 1);
    for (int i = 0; i < WRITERS; i++)
        pthread_join(w[i], NULL);
    assert_int_equal(atomic_load(&stale_reads), 0);
    mc_cached_stats st;
    mc_cached_stats_get(fn, &st);
    print_message("loads %llu, joined %llu, cancelled fills %llu, hits %llu, invalidations %llu\n",
                  (unsigned long long)st.loads, (unsigned long long)st.joined,
                  (unsigned long long)st.cancelled_fills, (unsigned long long)st.cache.hits,
                  (unsigned long long)st.invalidations);
    /* The run exercised the interesting paths. */
    assert_true(st.cache.hits > 0);
    assert_true(st.invalidations > 100);
    mc_cached_destroy(fn);
}

/* 2 threads x the same 1,000 missing keys at once: exactly 1,000 loads. */
#define SF_KEYS 1000
static atomic_int sf_go;

static int sf_loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)self;
    (void)nargs;
    atomic_fetch_add(&loader_calls, 1);
    sched_yield();
    return mc_load_set_copy(load, &args[0].v.i, sizeof args[0].v.i);
}

static void *sf_caller(void *arg)
{
    (void)arg;
    while (!atomic_load(&sf_go))
        sched_yield();
    for (int64_t k = 0; k < SF_KEYS; k++) {
        mc_arg a[] = {MC_ARG_I(k)};
        mc_value *v;
        if (mc_cached_call(fn, a, 1, &v) != 0)
            abort();
        int64_t got;
        memcpy(&got, mc_value_data(v), sizeof got);
        if (got != k)
            abort();
        mc_value_release(v);
    }
    return NULL;
}

static void test_single_flight_many_keys(void **state)
{
    (void)state;
    atomic_store(&loader_calls, 0);
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.max_entries = 2 * SF_KEYS;
    assert_int_equal(mc_cached_create(&o, sf_loader, NULL, &fn), 0);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, sf_caller, NULL);
    atomic_store(&sf_go, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&loader_calls), SF_KEYS);
    mc_cached_destroy(fn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_stale_reads),
        cmocka_unit_test(test_single_flight_many_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
