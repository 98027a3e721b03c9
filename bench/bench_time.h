/* bench/bench_time.h: what the C benchmark programs share: a monotonic clock in nanoseconds
 * and the comparison for sorting latency samples. */
#ifndef MODCACHE_BENCH_TIME_H
#define MODCACHE_BENCH_TIME_H

#include <stdint.h>
#include <time.h>

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* qsort comparison of uint64_t samples, ascending. */
static inline int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

#endif
