/* Thread registration with liburcu (memb flavour) and the library's use of call_rcu.
 * Registration is lazy, on a thread's first read section or retirement. */
#include "core/epoch.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#ifdef MC__TSAN
char mc__tsan_epoch_sync;
#endif

#define MC__TLS __attribute__((tls_model("initial-exec")))

static pthread_once_t mc__epoch_once = PTHREAD_ONCE_INIT;
static pthread_key_t mc__epoch_key;
static atomic_uint mc__next_thread_id;

static _Thread_local MC__TLS unsigned char mc__registered;
_Thread_local MC__TLS unsigned mc__tid_plus1;

static void mc__epoch_thread_exit(void *arg)
{
    (void)arg;
    /* liburcu keeps a list of registered readers: a thread that exits registered would leave
     * a dangling record that the next grace period reads. */
    if (mc__registered) {
        urcu_memb_unregister_thread();
        mc__registered = 0;
    }
}

static void mc__epoch_init(void)
{
    if (pthread_key_create(&mc__epoch_key, mc__epoch_thread_exit) != 0)
        abort(); /* only when the process is out of TLS keys: nothing sensible remains */
}

/* Register the calling thread with liburcu on its first use of it. */
static inline void mc__epoch_register(void)
{
    if (__builtin_expect(mc__registered, 1))
        return;
    pthread_once(&mc__epoch_once, mc__epoch_init);
    urcu_memb_register_thread();
    /* Any non-NULL value makes the key's destructor run at thread exit. */
    pthread_setspecific(mc__epoch_key, (void *)1);
    mc__registered = 1;
}

void mc__epoch_enter(void)
{
    mc__epoch_register();
    urcu_memb_read_lock();
}

void mc__epoch_exit(void)
{
#ifdef MC__TSAN
    __tsan_release(&mc__tsan_epoch_sync);
#endif
    urcu_memb_read_unlock();
}

void mc__epoch_retire(mc__retire_node *node, mc__retire_fn *cb)
{
    mc__epoch_register();
#ifdef MC__TSAN
    /* The hand-over to the reclamation thread goes through liburcu's queue, unseen. */
    __tsan_release(&mc__tsan_epoch_sync);
#endif
    urcu_memb_call_rcu(node, cb);
}

void mc__epoch_barrier(void)
{
    mc__epoch_register();
    urcu_memb_barrier();
}

unsigned mc__thread_id_slow(void)
{
    mc__tid_plus1 = atomic_fetch_add_explicit(&mc__next_thread_id, 1, memory_order_relaxed) + 1;
    return mc__tid_plus1 - 1;
}
