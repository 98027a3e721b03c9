/* Invalidation latency across the bus: from invalidate in one "host" (a registry and bus in this
 * process) to the entry being gone in another, through a redis-server on loopback; then the rate
 * one host applies invalidations at. Starts and stops its own redis-server. */
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <modcache.h>

#include "proc.h"

#include "bench_time.h"

typedef struct {
    mc_registry *reg;
    mc_cached *fn;
    mc_bus *bus;
} node;

static int load(void *self, const mc_arg *args, size_t nargs, mc_load *l)
{
    (void)self;
    (void)nargs;
    return mc_load_set_copy(l, &args[0].v.i, sizeof args[0].v.i);
}

static void quiet(void *ud, int level, const char *msg)
{
    (void)ud;
    if (level >= 2)
        fprintf(stderr, "bus: %s\n", msg);
}

static int node_start(node *n, unsigned port, size_t entries)
{
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
    if (mc_registry_create(NULL, &n->reg) != 0)
        return -1;
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = "bench.value";
    o.max_entries = entries;
    o.registry = n->reg;
    if (mc_cached_create(&o, load, NULL, &n->fn) != 0)
        return -1;
    mc_bus_options bo;
    mc_bus_options_init(&bo);
    bo.address = addr;
    bo.stream = "bench:invalidations";
    bo.maxlen = 1000000;
    bo.registry = n->reg;
    bo.queue_limit = 1000000;
    bo.log = quiet;
    mc_error err = {0};
    return mc_bus_start(&bo, &n->bus, &err);
}

static void node_stop(node *n)
{
    mc_bus_stop(n->bus);
    mc_cached_destroy(n->fn);
    mc_registry_destroy(n->reg);
}

static bool cached(node *n, int64_t k)
{
    unsigned char key[16];
    size_t kl;
    mc_arg a = mc_arg_int(k);
    mc_key_encode(&a, 1, key, sizeof key, &kl);
    return mc_cache_contains(mc_cached_cache(n->fn), key, kl);
}

static void fill(node *n, int64_t k)
{
    mc_value *v;
    mc_arg a = mc_arg_int(k);
    if (mc_cached_call(n->fn, &a, 1, &v) == 0)
        mc_value_release(v);
}

int main(int argc, char **argv)
{
    int rounds = 10000, burst = 100000;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) {
            rounds = 1000;
            burst = 20000;
        } else if (!strcmp(argv[i], "--json")) {
            json = true;
        } else {
            fprintf(stderr, "usage: bench_bus [--quick] [--json]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    mct_redis redis = {0};
    if (mct_redis_start(&redis, 0) != 0) {
        fprintf(stderr, "bench_bus: cannot start redis-server\n");
        return 1;
    }
    node a = {0}, b = {0};
    if (node_start(&a, redis.port, (size_t)burst * 2) != 0 || node_start(&b, redis.port, (size_t)burst * 2) != 0) {
        fprintf(stderr, "bench_bus: cannot start the buses\n");
        return 1;
    }
    mc_bus_stats st;
    for (int i = 0; i < 1000; i++) {
        mc_bus_stats_get(b.bus, &st);
        mc_bus_stats sa;
        mc_bus_stats_get(a.bus, &sa);
        if (st.link_up && sa.link_up)
            break;
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    }

    /* Latency: one invalidation at a time, the next once the last is seen. */
    uint64_t *lat = malloc((size_t)rounds * sizeof *lat);
    for (int i = 0; i < rounds; i++) {
        fill(&b, i);
        mc_arg arg = mc_arg_int(i);
        uint64_t t0 = now_ns();
        mc_cached_invalidate(a.fn, &arg, 1);
        mc_bus_publish_args(a.bus, "bench.value", &arg, 1);
        while (cached(&b, i))
            sched_yield(); /* 2 cores: leave them to the bus threads and redis-server */
        lat[i] = now_ns() - t0;
        if (!json && i % 1000 == 999)
            fprintf(stderr, "\rlatency: %d/%d", i + 1, rounds);
    }
    qsort(lat, (size_t)rounds, sizeof *lat, cmp_u64);
    uint64_t p50 = lat[rounds / 2], p99 = lat[(size_t)rounds * 99 / 100], max = lat[rounds - 1];

    /* Rate: a burst of invalidations of cached keys, published as fast as the caller can. */
    for (int i = 0; i < burst; i++)
        fill(&b, 1000000 + i);
    mc_bus_stats_get(b.bus, &st);
    uint64_t applied0 = st.applied;
    uint64_t t0 = now_ns();
    for (int i = 0; i < burst; i++) {
        mc_arg arg = mc_arg_int(1000000 + i);
        mc_bus_publish_args(a.bus, "bench.value", &arg, 1);
    }
    uint64_t t_pub = now_ns();
    mc_bus_flush(a.bus, 60000);
    uint64_t t_sent = now_ns();
    do {
        mc_bus_stats_get(b.bus, &st);
    } while (st.applied - applied0 < (uint64_t)burst && now_ns() - t0 < 120000000000ull);
    uint64_t t_applied = now_ns();
    int left = 0;
    for (int i = 0; i < burst; i++)
        left += cached(&b, 1000000 + i);
    double secs = (double)(t_applied - t0) / 1e9;
    double rate = (double)(st.applied - applied0) / secs;

    if (json) {
        printf("[{\"system\": \"modcache-bus\", \"workload\": \"invalidation-latency\", \"threads\": 1, "
               "\"ops\": %d, \"p50_ns\": %" PRIu64 ", \"p99_ns\": %" PRIu64 ", \"max_ns\": %" PRIu64 "},\n"
               " {\"system\": \"modcache-bus\", \"workload\": \"invalidation-apply\", \"threads\": 1, "
               "\"ops\": %d, \"ops_per_sec\": %.0f, \"publish_ns\": %" PRIu64 ", \"sent_ns\": %" PRIu64 "}]\n",
               rounds, p50, p99, max, burst, rate, t_pub - t0, t_sent - t0);
    } else {
        fprintf(stderr, "\r");
        printf("Invalidation across the bus (redis-server on loopback, %d one at a time):\n", rounds);
        printf("  p50 %.1f us   p99 %.1f us   max %.1f us\n", (double)p50 / 1e3, (double)p99 / 1e3,
               (double)max / 1e3);
        printf("Burst of %d invalidations of cached keys:\n", burst);
        printf("  queued in %.1f ms, written to Redis in %.1f ms, applied by the other host in %.1f ms\n",
               (double)(t_pub - t0) / 1e6, (double)(t_sent - t0) / 1e6, secs * 1e3);
        printf("  apply rate %.0f invalidations/s; entries left cached: %d\n", rate, left);
    }
    free(lat);
    node_stop(&a);
    node_stop(&b);
    mct_redis_stop(&redis, true);
    mct_redis_cleanup(&redis);
    return left == 0 ? 0 : 1;
}
