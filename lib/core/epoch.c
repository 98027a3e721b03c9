/* Per-thread ck_epoch records for the whole library, and deferred reclamation.
 * Records are recycled across threads; callbacks run on the thread that retired them. */
#include "core/epoch.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#ifdef MC__TSAN
char mc__tsan_epoch_sync;
#endif

/* Poll (try to advance the epoch and run ready callbacks) after this many retirements, so a
 * writer's backlog of unreclaimed entries stays small without scanning records every time. */
#define MC__EPOCH_POLL_EVERY 64

static ck_epoch_t mc__epoch;
static pthread_once_t mc__epoch_once = PTHREAD_ONCE_INIT;
static pthread_key_t mc__epoch_key;
static atomic_uint mc__next_thread_id;

static _Thread_local ck_epoch_record_t *mc__rec;
static _Thread_local unsigned mc__pending;
static _Thread_local unsigned mc__tid_plus1;

static void mc__epoch_thread_exit(void *arg)
{
    ck_epoch_record_t *rec = arg;
    /* Free what this thread retired before its record goes back to the pool. */
    ck_epoch_barrier(rec);
#ifdef MC__TSAN
    /* The next thread to recycle this record must see it as this thread left it; the hand-over
     * goes through ck's lock-free list, which TSan cannot see. */
    __tsan_release(rec);
#endif
    ck_epoch_unregister(rec);
    mc__rec = NULL;
}

static void mc__epoch_init(void)
{
    ck_epoch_init(&mc__epoch);
    if (pthread_key_create(&mc__epoch_key, mc__epoch_thread_exit) != 0)
        abort(); /* only when the process is out of TLS keys: nothing sensible remains */
}

static ck_epoch_record_t *mc__epoch_record(void)
{
    ck_epoch_record_t *rec = mc__rec;
    if (rec)
        return rec;
    pthread_once(&mc__epoch_once, mc__epoch_init);
    rec = ck_epoch_recycle(&mc__epoch, NULL);
#ifdef MC__TSAN
    if (rec)
        __tsan_acquire(rec);
#endif
    if (!rec) {
        /* Records are never freed: ck_epoch keeps them in its global list for reuse. */
        rec = malloc(sizeof *rec);
        if (!rec)
            abort(); /* a few hundred bytes once per thread; see docs/guarantees */
        ck_epoch_register(&mc__epoch, rec, NULL);
    }
    pthread_setspecific(mc__epoch_key, rec);
    mc__rec = rec;
    return rec;
}

ck_epoch_record_t *mc__epoch_enter(void)
{
    ck_epoch_record_t *rec = mc__epoch_record();
    ck_epoch_begin(rec, NULL);
    return rec;
}

void mc__epoch_exit(ck_epoch_record_t *rec)
{
#ifdef MC__TSAN
    __tsan_release(&mc__tsan_epoch_sync);
#endif
    ck_epoch_end(rec, NULL);
}

void mc__epoch_retire(ck_epoch_entry_t *entry, ck_epoch_cb_t *cb)
{
    ck_epoch_record_t *rec = mc__epoch_record();
    ck_epoch_call(rec, entry, cb);
    if (++mc__pending >= MC__EPOCH_POLL_EVERY) {
        mc__pending = 0;
        ck_epoch_poll(rec);
    }
}

void mc__epoch_barrier(void)
{
    ck_epoch_record_t *rec = mc__epoch_record();
    ck_epoch_barrier(rec);
    mc__pending = 0;
}

unsigned mc__thread_id(void)
{
    if (!mc__tid_plus1)
        mc__tid_plus1 = atomic_fetch_add_explicit(&mc__next_thread_id, 1, memory_order_relaxed) + 1;
    return mc__tid_plus1 - 1;
}
