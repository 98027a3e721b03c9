/* A 4-byte mutex (spin briefly, then sleep on a futex), small enough to share a cache line
 * with the state it protects. C11 atomics throughout, so ThreadSanitizer sees its ordering. */
#ifndef MC_CORE_LOCK_H
#define MC_CORE_LOCK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* state: 0 unlocked, 1 locked, 2 locked with sleepers possibly waiting. */
typedef struct mc__lock {
    _Atomic uint32_t state;
} mc__lock;

#define MC__LOCK_INIT {0}

void mc__lock_wait(mc__lock *l);
void mc__lock_wake(mc__lock *l);

static inline bool mc__lock_try(mc__lock *l)
{
    uint32_t expected = 0;
    /* Acquire: the holder sees everything the previous holder did before its release. */
    return atomic_compare_exchange_strong_explicit(&l->state, &expected, 1, memory_order_acquire,
                                                   memory_order_relaxed);
}

static inline void mc__lock_acquire(mc__lock *l)
{
    if (!mc__lock_try(l))
        mc__lock_wait(l);
}

static inline void mc__lock_release(mc__lock *l)
{
    /* Release pairs with the next holder's acquire. */
    if (atomic_exchange_explicit(&l->state, 0, memory_order_release) == 2)
        mc__lock_wake(l);
}

#endif
