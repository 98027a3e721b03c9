/* Thread registration with liburcu (memb flavour) and the library's use of call_rcu.
 * Registration is lazy, on a thread's first read section or retirement. */
/* liburcu's read-side fast paths, inlined from its header (_LGPL_SOURCE: it states that these
 * few-line functions may be used by code under any licence) instead of two library calls per
 * section that each resolve the reader's TLS block through __tls_get_addr. Not under
 * ThreadSanitizer, which would see the grace-period futex's volatile accesses in instrumented
 * code and report them: there the library's own (uninstrumented) calls are used. */
#define MC__URCU_INLINE 1
#if defined(__SANITIZE_THREAD__)
#undef MC__URCU_INLINE
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#undef MC__URCU_INLINE
#endif
#endif
#ifdef MC__URCU_INLINE
#define _LGPL_SOURCE
#endif
#include "core/epoch.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#ifdef MC__TSAN
char mc__tsan_epoch_sync;
#endif

#define MC__TLS __attribute__((tls_model("initial-exec")))

/* The reader record lives in liburcu-memb.so, a dependency loaded with this library, so its TLS
 * is in the static block like this library's own: initial-exec, one %fs-relative access. */
#ifdef MC__URCU_INLINE
extern __thread struct urcu_reader urcu_memb_reader MC__TLS;
#endif

static pthread_once_t mc__epoch_once = PTHREAD_ONCE_INIT;
static pthread_key_t mc__epoch_key;
static atomic_uint mc__next_thread_id;

static _Thread_local MC__TLS unsigned char mc__registered;
_Thread_local MC__TLS unsigned mc__tid_plus1;
_Thread_local MC__TLS unsigned mc__read_depth;

/* Scratch bytes and deferred calls of the calling thread's held section. The oldest chunk
 * is kept between sections (most sections need no more), the others freed at the end. */
typedef struct mc__scratch_chunk {
    struct mc__scratch_chunk *next; /* older chunk */
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} mc__scratch_chunk;

typedef struct mc__deferred {
    void (*fn)(void *);
    void *arg;
    struct mc__deferred *next;
} mc__deferred;

#define MC__SCRATCH_CHUNK 4096

static _Thread_local MC__TLS mc__scratch_chunk *mc__scratch;
static _Thread_local MC__TLS mc__deferred *mc__defer_head, *mc__defer_tail;

static void mc__scratch_free_all(void)
{
    for (mc__scratch_chunk *c = mc__scratch; c;) {
        mc__scratch_chunk *older = c->next;
        free(c);
        c = older;
    }
    mc__scratch = NULL;
}

static void mc__epoch_thread_exit(void *arg)
{
    (void)arg;
    mc__scratch_free_all();
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
    if (mc__read_depth)
        return; /* the section would hold back the grace period being waited for */
    mc__epoch_register();
    urcu_memb_barrier();
}

void mc__read_enter(void)
{
    if (mc__read_depth++ == 0)
        mc__epoch_enter();
}

void mc__read_exit(void)
{
    if (mc__read_depth == 0 || --mc__read_depth != 0)
        return;
    mc__epoch_exit();
    /* The deferred calls run outside the section, and may hold sections of their own (a
     * release that runs a listener that reads): this section's chunks, which hold the
     * queue, are set aside first so that those sections use fresh ones. */
    mc__deferred *d = mc__defer_head;
    mc__scratch_chunk *chunks = mc__scratch;
    mc__defer_head = mc__defer_tail = NULL;
    mc__scratch = NULL;
    while (d) {
        d->fn(d->arg);
        d = d->next;
    }
    while (chunks && chunks->next) {
        mc__scratch_chunk *c = chunks;
        chunks = chunks->next;
        free(c);
    }
    if (chunks && !mc__scratch) {
        chunks->used = 0;
        mc__scratch = chunks; /* kept for the next section */
    } else {
        free(chunks);
    }
}

void *mc__read_scratch(size_t n)
{
    n = (n + 15) & ~(size_t)15;
    mc__scratch_chunk *c = mc__scratch;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > MC__SCRATCH_CHUNK ? n : MC__SCRATCH_CHUNK;
        mc__scratch_chunk *nc = malloc(sizeof *nc + cap);
        if (!nc)
            return NULL;
        nc->next = c;
        nc->used = 0;
        nc->cap = cap;
        mc__scratch = c = nc;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

bool mc__read_defer(void (*fn)(void *), void *arg)
{
    mc__deferred *d = mc__read_scratch(sizeof *d);
    if (!d)
        return false;
    d->fn = fn;
    d->arg = arg;
    d->next = NULL;
    if (mc__defer_tail)
        mc__defer_tail->next = d;
    else
        mc__defer_head = d;
    mc__defer_tail = d;
    return true;
}

unsigned mc__thread_id_slow(void)
{
    mc__tid_plus1 = atomic_fetch_add_explicit(&mc__next_thread_id, 1, memory_order_relaxed) + 1;
    return mc__tid_plus1 - 1;
}
