/* The slow paths of mc__lock: a bounded spin (critical sections are a few hundred ns), then
 * a futex sleep; the classic three-state design, so an uncontended unlock makes no syscall. */
#include "core/lock.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MC__LOCK_SPINS 200

static inline void mc__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

void mc__lock_wait(mc__lock *l)
{
    for (int i = 0; i < MC__LOCK_SPINS; i++) {
        if (atomic_load_explicit(&l->state, memory_order_relaxed) == 0 && mc__lock_try(l))
            return;
        mc__cpu_relax();
    }
    /* Mark the lock contended before sleeping, so the holder's unlock wakes someone. */
    while (atomic_exchange_explicit(&l->state, 2, memory_order_acquire) != 0)
        syscall(SYS_futex, &l->state, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
}

void mc__lock_wake(mc__lock *l)
{
    syscall(SYS_futex, &l->state, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}
