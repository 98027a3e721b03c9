/* What do callers of a memoized function see while its entries keep being renewed? Latency
 * percentiles of mc_cached_call_copy over a "database" that takes 1 ms per query, with every
 * entry renewed each period: by refresh-ahead (refresh_after_ns: served old, reloaded on the
 * load pool) or by expiry (expire_after_write_ns: the caller that finds it expired waits for
 * the load), against all hits (nothing renewed). Target: refresh-ahead's p99 within 2x the
 * hits' p99. */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <modcache.h>

#include "bench_time.h"

/* Latencies in a log-linear histogram: 64 steps per power of two (1.6% resolution). */
#define SUB 64
#define NBUCKETS (SUB * 60)

static unsigned bucket_of(uint64_t v)
{
    if (v < SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);
    return (e - 5) * SUB + (unsigned)((v >> (e - 6)) - SUB);
}

static uint64_t bucket_value(unsigned i)
{
    if (i < SUB)
        return i;
    unsigned e = i / SUB + 5;
    return (uint64_t)(i % SUB + SUB) << (e - 6);
}

typedef struct {
    uint64_t counts[NBUCKETS];
    uint64_t n, max;
} histogram;

static uint64_t percentile(const histogram *h, double p)
{
    uint64_t want = (uint64_t)(p * (double)h->n), seen = 0;
    for (unsigned i = 0; i < NBUCKETS; i++) {
        seen += h->counts[i];
        if (seen > want)
            return bucket_value(i);
    }
    return h->max;
}

/* ---- the database: 1 ms per query ---- */

static atomic_ulong queries;

static int slow_query(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)self;
    (void)nargs;
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
    atomic_fetch_add_explicit(&queries, 1, memory_order_relaxed);
    char buf[32];
    int n = snprintf(buf, sizeof buf, "row-%" PRId64, args[0].v.i);
    return mc_load_set_copy(load, buf, (size_t)n);
}

/* ---- callers ---- */

typedef struct {
    mc_cached *fn;
    size_t keys;
    uint64_t until;
    uint64_t seed;
    histogram h;
} caller;

static void *run_caller(void *arg)
{
    caller *c = arg;
    uint64_t x = c->seed;
    char buf[64];
    for (uint64_t i = 0;; i++) {
        if ((i & 1023) == 0 && now_ns() >= c->until)
            break;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        mc_arg a[] = {MC_ARG_I((int64_t)(x % c->keys))};
        size_t n;
        uint64_t t0 = now_ns();
        int rc = mc_cached_call_copy(c->fn, a, 1, buf, sizeof buf, &n);
        uint64_t d = now_ns() - t0;
        if (rc != 0 || n < 5 || memcmp(buf, "row-", 4) != 0) {
            fprintf(stderr, "bench_refresh: call failed: %s\n", mc_strerror(rc));
            exit(1);
        }
        c->h.counts[bucket_of(d)]++;
        c->h.n++;
        if (d > c->h.max)
            c->h.max = d;
    }
    return NULL;
}

typedef struct {
    const char *name;
    uint64_t refresh_ns, expire_ns;
} mode;

static void run_mode(const mode *m, mc_registry *reg, size_t keys, unsigned threads, double seconds,
                     histogram *out)
{
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = m->name;
    o.max_entries = keys * 2;
    o.registry = reg;
    o.refresh_after_ns = m->refresh_ns;
    o.expire_after_write_ns = m->expire_ns;
    mc_cached *fn;
    if (mc_cached_create(&o, slow_query, NULL, &fn) != 0) {
        fprintf(stderr, "bench_refresh: cannot create %s\n", m->name);
        exit(1);
    }
    /* Warm: every key stored now, so that renewals start one period from here. */
    for (size_t k = 0; k < keys; k++) {
        char buf[32];
        int n = snprintf(buf, sizeof buf, "row-%zu", k);
        mc_arg a[] = {MC_ARG_I((int64_t)k)};
        mc_cached_prefill(fn, a, 1, buf, (size_t)n);
    }
    atomic_store(&queries, 0);
    caller *cs = calloc(threads, sizeof *cs);
    pthread_t *ts = calloc(threads, sizeof *ts);
    uint64_t until = now_ns() + (uint64_t)(seconds * 1e9);
    for (unsigned i = 0; i < threads; i++) {
        cs[i] = (caller){.fn = fn, .keys = keys, .until = until, .seed = 0x9e3779b97f4a7c15ull * (i + 1)};
        pthread_create(&ts[i], NULL, run_caller, &cs[i]);
    }
    memset(out, 0, sizeof *out);
    for (unsigned i = 0; i < threads; i++) {
        pthread_join(ts[i], NULL);
        for (unsigned b = 0; b < NBUCKETS; b++)
            out->counts[b] += cs[i].h.counts[b];
        out->n += cs[i].h.n;
        if (cs[i].h.max > out->max)
            out->max = cs[i].h.max;
    }
    mc_cached_stats st;
    mc_cached_stats_get(fn, &st);
    uint64_t slow = 0;
    for (unsigned b = bucket_of(100000); b < NBUCKETS; b++)
        slow += out->counts[b];
    printf("%-16s calls %10" PRIu64 "  p50 %6" PRIu64 " ns  p99 %6" PRIu64 " ns  p99.9 %8" PRIu64
           " ns  p99.99 %8" PRIu64 " ns  max %9" PRIu64 " ns  >100us %6" PRIu64
           "  queries %6lu  loads %6" PRIu64 "  refreshes %6" PRIu64 "  expiries %6" PRIu64 "\n",
           m->name, out->n, percentile(out, 0.50), percentile(out, 0.99), percentile(out, 0.999),
           percentile(out, 0.9999), out->max, slow, atomic_load(&queries), st.loads, st.refreshes, st.expiries);
    fflush(stdout);
    free(cs);
    free(ts);
    mc_cached_destroy(fn);
}

int main(int argc, char **argv)
{
    size_t keys = 1000;
    unsigned threads = 2, pool = 8;
    double seconds = 4, period_ms = 1000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            seconds = 1;
        else if (!strcmp(argv[i], "--keys") && i + 1 < argc)
            keys = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = strtod(argv[++i], NULL);
        else if (!strcmp(argv[i], "--period-ms") && i + 1 < argc)
            period_ms = strtod(argv[++i], NULL);
        else {
            fprintf(stderr,
                    "usage: bench_refresh [--quick] [--keys N] [--threads N] [--seconds S] [--period-ms MS]\n");
            return 2;
        }
    }
    if (!keys || !threads || seconds <= 0 || period_ms <= 0)
        return 2;
    uint64_t period = (uint64_t)(period_ms * 1e6);
    mc_cache_config cfg;
    mc_cache_config_init(&cfg);
    cfg.load_pool_threads = pool;
    mc_registry *reg;
    if (mc_registry_create(&cfg, &reg) != 0)
        return 1;
    printf("bench_refresh: %zu keys, uniform; %u callers; 1 ms per query; every entry renewed each %.0f ms; "
           "%.1f s per mode; load pool of %u\n",
           keys, threads, period_ms, seconds, pool);
    const mode modes[] = {
        {"hits", 0, 0},
        /* Refresh-ahead, bounded by an expiry far enough that a read entry never reaches it. */
        {"refresh-ahead", period, 10 * period},
        /* The same freshness by expiry alone: the caller that finds an entry expired loads it. */
        {"expire-only", 0, period},
    };
    histogram *h = malloc(sizeof *h * 3);
    for (int i = 0; i < 3; i++)
        run_mode(&modes[i], reg, keys, threads, seconds, &h[i]);
    double ratio = (double)percentile(&h[1], 0.99) / (double)percentile(&h[0], 0.99);
    printf("refresh-ahead p99 / hits p99 = %.2f (target <= 2): %s\n", ratio, ratio <= 2.0 ? "met" : "missed");
    printf("expire-only p99 / hits p99 = %.2f, p99.9 / hits p99.9 = %.2f\n",
           (double)percentile(&h[2], 0.99) / (double)percentile(&h[0], 0.99),
           (double)percentile(&h[2], 0.999) / (double)percentile(&h[0], 0.999));
    free(h);
    mc_registry_destroy(reg);
    return 0;
}
