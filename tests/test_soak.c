/* Memory-bound soak: two writers insert at least ten times max_bytes worth of values, for a
 * fixed time, into a cache bounded by max_bytes, while a third thread samples the cache's byte
 * count; then the cache is cleared and jemalloc's allocated bytes must be back at the baseline. */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include <jemalloc/jemalloc.h>

#include "cache/cache_internal.h"
#include "core/alloc.h"
#include "modcache.h"

#define MAX_BYTES ((size_t)4 << 20)
#define SHARDS 4
#define SOAK_NS (3ull * 1000000000ull)
#define WRITERS 2
#define VALUE_MAX 4096
/* After clear and reclamation, jemalloc's allocated bytes may differ from the baseline by
 * what threads leave behind on purpose: one ck_epoch record per new thread (kept for reuse,
 * a few hundred bytes) and glibc's per-thread TLS vectors of cached thread stacks (a few
 * hundred bytes each); measured about 1.5 KiB. 32 KiB bounds that with room to spare, yet
 * leaking one entry in a thousand of the 40 MiB written at the least would exceed it. */
#define ALLOCATED_TOLERANCE ((size_t)32 << 10)

static struct {
    mc_cache *cache;
    atomic_bool stop_sampler;
    atomic_ullong inserted; /* value bytes successfully put, all writers */
    atomic_ullong puts;
    atomic_int put_errors, bad_reads;
    atomic_int owned_made, owned_freed;
    uint64_t start_ns;
    /* Sampler results. */
    uint64_t samples, max_weight, max_memory, over_bound;
} g;

/* Every value is a prefix of this (filled before the threads start). */
static unsigned char pattern[VALUE_MAX];

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void owned_free(void *p)
{
    atomic_fetch_add(&g.owned_freed, 1);
    free(p);
}

static void *writer_main(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    unsigned seed = id * 2654435761u + 1;
    for (uint64_t seq = 0;; seq++) {
        /* A fixed time, but never less than ten times the bound: the claim is about churn. */
        if ((seq & 63) == 0 && now_ns() - g.start_ns >= SOAK_NS &&
            atomic_load(&g.inserted) >= 10 * (unsigned long long)MAX_BYTES)
            break;
        seed = seed * 1103515245u + 12345u;
        size_t vlen = 64 + (seed >> 8) % (VALUE_MAX - 64);
        mc_arg args[] = {MC_ARG_I(id), MC_ARG_I((int64_t)seq)};
        unsigned char key[MC_KEY_MAX];
        size_t klen;
        if (mc_key_encode(args, 2, key, sizeof key, &klen) != 0)
            abort();
        int rc;
        if (seq % 8 == 7) {
            /* Some values handed over, so their destructors run as entries leave. */
            void *v = malloc(vlen);
            if (!v)
                abort();
            memcpy(v, pattern, vlen);
            atomic_fetch_add(&g.owned_made, 1);
            rc = mc_cache_put_owned(g.cache, key, klen, v, vlen, owned_free, 0, 0);
            if (rc != 0)
                owned_free(v);
        } else {
            rc = mc_cache_put(g.cache, key, klen, pattern, vlen);
        }
        if (rc != 0) {
            atomic_fetch_add(&g.put_errors, 1);
            continue;
        }
        atomic_fetch_add(&g.inserted, vlen);
        atomic_fetch_add(&g.puts, 1);
        if (seq % 4 == 0) {
            /* Read back what was just written: present (nothing else writes this key) and
             * intact, or already evicted by the other writer. */
            mc_value *v;
            if (mc_cache_get(g.cache, key, klen, &v) == 0) {
                if (mc_value_size(v) != vlen || memcmp(mc_value_data(v), pattern, vlen) != 0)
                    atomic_fetch_add(&g.bad_reads, 1);
                mc_value_release(v);
            }
        }
    }
    return NULL;
}

static void *sampler_main(void *arg)
{
    (void)arg;
    const uint64_t limit = MAX_BYTES + MAX_BYTES / SHARDS;
    while (!atomic_load(&g.stop_sampler)) {
        mc_cache_stats st;
        mc_cache_stats_get(g.cache, &st);
        g.samples++;
        if (st.weight > g.max_weight)
            g.max_weight = st.weight;
        if (st.memory > g.max_memory)
            g.max_memory = st.memory;
        if (st.weight > limit)
            g.over_bound++;
        sched_yield();
    }
    return NULL;
}

/* jemalloc's allocated bytes with this thread's cache of freed blocks flushed first (blocks
 * parked there still count as allocated). */
static size_t allocated_now(void)
{
    mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
    return mc__allocated_bytes();
}

static void test_soak_bounded_by_bytes(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof pattern; i++)
        pattern[i] = (unsigned char)(i * 31 + 7);
    mc_cache_options o;
    mc_cache_options_init(&o);
    o.max_bytes = MAX_BYTES;
    o.shards = SHARDS;
    assert_int_equal(mc_cache_create(&o, &g.cache), 0);
    /* This thread's epoch record exists before the baseline, as it will after. */
    assert_int_equal(mc_cache_put(g.cache, "warm", 4, "up", 2), 0);
    assert_int_equal(mc_cache_remove(g.cache, "warm", 4), 0);
    mc__reclaim_now();
    size_t baseline = allocated_now();

    g.start_ns = now_ns();
    pthread_t w[WRITERS], s;
    assert_int_equal(pthread_create(&s, NULL, sampler_main, NULL), 0);
    for (unsigned i = 0; i < WRITERS; i++)
        assert_int_equal(pthread_create(&w[i], NULL, writer_main, (void *)(uintptr_t)i), 0);
    for (unsigned i = 0; i < WRITERS; i++)
        pthread_join(w[i], NULL);
    atomic_store(&g.stop_sampler, true);
    pthread_join(s, NULL);
    double secs = (double)(now_ns() - g.start_ns) / 1e9;

    mc_cache_stats st;
    mc_cache_stats_get(g.cache, &st);
    size_t full = allocated_now();
    char msg[200];
    if (mc__cache_verify(g.cache, msg, sizeof msg) != 0)
        fail_msg("%s", msg);
    mc_cache_clear(g.cache);
    mc__reclaim_now();
    mc_cache_stats st_clear;
    mc_cache_stats_get(g.cache, &st_clear);
    size_t after = allocated_now();

    printf("soak: %.1f s, %llu puts, %.1f MiB of values into a %zu MiB bound (%.1fx); "
           "%llu samples, peak weight %llu (%.3f of the bound), peak entry memory %.2f MiB; "
           "jemalloc allocated: baseline %zu, full %+lld, after clear %+lld bytes\n",
           secs, (unsigned long long)atomic_load(&g.puts),
           (double)atomic_load(&g.inserted) / (1 << 20), MAX_BYTES >> 20,
           (double)atomic_load(&g.inserted) / MAX_BYTES, (unsigned long long)g.samples,
           (unsigned long long)g.max_weight, (double)g.max_weight / MAX_BYTES,
           (double)g.max_memory / (1 << 20), baseline, (long long)full - (long long)baseline,
           (long long)after - (long long)baseline);

    assert_int_equal(atomic_load(&g.put_errors), 0);
    assert_int_equal(atomic_load(&g.bad_reads), 0);
    assert_true(atomic_load(&g.inserted) >= 10 * (unsigned long long)MAX_BYTES);
    assert_true(g.samples > 0);
    /* The cache's own byte count never went past the bound by more than one shard's share
     * (the design promises it never goes past at all). */
    assert_int_equal(g.over_bound, 0);
    assert_true(st.weight <= MAX_BYTES);
    assert_true(st.evictions[MC_EVICT_SIZE] > 0);
    assert_int_equal(st_clear.entries, 0);
    assert_int_equal(st_clear.weight, 0);
    /* Every value handed over was freed once its entry left. */
    assert_int_equal(atomic_load(&g.owned_made), atomic_load(&g.owned_freed));

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    printf("soak: sanitizer build, jemalloc does not serve these allocations: baseline not checked\n");
#else
    if (full < baseline + MAX_BYTES / 2) {
        /* The entries did not show in jemalloc's statistics (another malloc serves them). */
        printf("soak: jemalloc does not see the entries here: baseline not checked\n");
    } else {
        long long delta = (long long)after - (long long)baseline;
        if (delta > (long long)ALLOCATED_TOLERANCE || delta < -(long long)ALLOCATED_TOLERANCE)
            fail_msg("allocated bytes %+lld from the baseline after clear (tolerance %zu)", delta,
                     ALLOCATED_TOLERANCE);
    }
#endif
    mc_cache_destroy(g.cache);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_soak_bounded_by_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
