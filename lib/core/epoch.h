/* Process-wide epoch-based reclamation on Concurrency Kit's ck_epoch: one domain, one
 * record per thread (taken on first use, returned at thread exit). */
#ifndef MC_CORE_EPOCH_H
#define MC_CORE_EPOCH_H

#include <ck_epoch.h>

/* Readers bracket every access to shared cache memory with enter/exit. Sections may nest
 * but must never span user code (a loader, a listener): a long section delays every
 * reclamation in the process. */
ck_epoch_record_t *mc__epoch_enter(void);
void mc__epoch_exit(ck_epoch_record_t *rec);

/* Run cb(entry) after a grace period, on this thread (during a later retire, barrier, or at
 * thread exit). The callback must start with MC__EPOCH_RECLAIM() and must not touch any
 * object that can be destroyed before it runs (a cache, a shard). */
void mc__epoch_retire(ck_epoch_entry_t *entry, ck_epoch_cb_t *cb);

/* Wait for a grace period and run every callback this thread has retired. Must not be called
 * inside a section. */
void mc__epoch_barrier(void);

/* A small dense id for the calling thread (0, 1, 2... in order of first use), for picking
 * stripes of per-thread counters and buffers. */
unsigned mc__thread_id(void);

/* ThreadSanitizer cannot see ck_epoch's synchronisation (it is inline assembly), so sanitized
 * builds add an explicit happens-before edge from every section exit to every reclamation:
 * correct because a callback only runs after every section that could see its object ended. */
#if defined(__SANITIZE_THREAD__)
#define MC__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MC__TSAN 1
#endif
#endif

#ifdef MC__TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
extern char mc__tsan_epoch_sync;
#define MC__EPOCH_RECLAIM() __tsan_acquire(&mc__tsan_epoch_sync)
#else
#define MC__EPOCH_RECLAIM() ((void)0)
#endif

#endif
