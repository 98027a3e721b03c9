/* The monotonic clock, and condition variables timed on it: every deadline and period of the
 * library (load timeouts, timers, maintenance, snapshots, the HTTP sweeper) waits on these, so
 * that wall-clock steps neither stretch nor cut them. */
#ifndef MC_CORE_CLOCK_H
#define MC_CORE_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* Nanoseconds of CLOCK_MONOTONIC (precise, not coarse: deadlines). */
static inline uint64_t mc__mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Initialise *c so that its timed waits take CLOCK_MONOTONIC deadlines. */
static inline void mc__cond_init_monotonic(pthread_cond_t *c)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(c, &ca);
    pthread_condattr_destroy(&ca);
}

#endif
