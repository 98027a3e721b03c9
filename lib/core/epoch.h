/* Process-wide deferred reclamation on userspace RCU's "memb" flavour (liburcu): readers mark
 * a section with plain stores, and the reclaimer makes them visible with membarrier(2), so a
 * read section costs no locked instruction. Threads register on first use and unregister at
 * exit. */
#ifndef MC_CORE_EPOCH_H
#define MC_CORE_EPOCH_H

#include <stdbool.h>
#include <stddef.h>

#include <urcu/urcu-memb.h>

/* The node a retired object embeds (16 bytes). */
typedef struct rcu_head mc__retire_node;
typedef void mc__retire_fn(mc__retire_node *node);

/* Readers bracket every access to shared memory that can be retired (out-of-line entries)
 * with enter/exit. Sections nest, but must never span user code (a loader, a listener): a
 * long section delays every reclamation in the process. */
void mc__epoch_enter(void);
void mc__epoch_exit(void);

/* Read sections that callers hold across calls (mc_read_begin/mc_read_end): the calling
 * thread's nesting depth, 0 outside. Lookups made inside one use it instead of entering
 * their own, and borrowed results stay valid until the outermost exit. */
extern _Thread_local unsigned mc__read_depth __attribute__((tls_model("initial-exec")));
static inline bool mc__in_read(void) { return mc__read_depth != 0; }
void mc__read_enter(void);
/* Leave one level; the outermost exit leaves the section, runs the deferred calls (in the
 * order they were queued) and frees the scratch bytes. A call outside a section does nothing. */
void mc__read_exit(void);
/* n bytes (16-byte aligned) valid until the outermost mc__read_exit; only inside a section.
 * NULL when out of memory. */
void *mc__read_scratch(size_t n);
/* Queue fn(arg) for the outermost mc__read_exit; only inside a section. false when out of
 * memory (nothing queued). */
bool mc__read_defer(void (*fn)(void *), void *arg);

/* Run cb(node) after a grace period (every section that could see the object has ended), on
 * liburcu's reclamation thread. The callback must start with MC__EPOCH_RECLAIM() and must
 * not touch any object that can be destroyed before it runs (a cache, a shard). */
void mc__epoch_retire(mc__retire_node *node, mc__retire_fn *cb);

/* Wait until every callback retired so far (by any thread) has run. Inside a section held
 * across calls (mc__in_read), where waiting could never end, it returns at once: the
 * callbacks then run after the section. Must not be called inside an internal section. */
void mc__epoch_barrier(void);

/* A small dense id for the calling thread (0, 1, 2... in order of first use), for picking
 * stripes of per-thread counters. Initial-exec TLS: one %fs-relative load. */
extern _Thread_local unsigned mc__tid_plus1 __attribute__((tls_model("initial-exec")));
unsigned mc__thread_id_slow(void);
static inline unsigned mc__thread_id(void)
{
    unsigned t = mc__tid_plus1;
    return __builtin_expect(t != 0, 1) ? t - 1 : mc__thread_id_slow();
}

/* ThreadSanitizer cannot see liburcu's grace periods (membarrier and an uninstrumented
 * library), so sanitized builds add an explicit happens-before edge from every section exit
 * to every reclamation: correct because a callback only runs after every section that could
 * see its object ended. */
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
