/* The load pool: a fixed set of worker threads running queued jobs, plus one timer thread for
 * deadlines and periodic work. Memoized functions run timed loads, refresh reloads and
 * async deadlines on it; the host runs modules' blocking and periodic work on it. */
#ifndef MC_CORE_WORKPOOL_H
#define MC_CORE_WORKPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/clock.h"
#include "core/internal_api.h"

typedef struct mc__workpool mc__workpool;
typedef void (*mc__work_fn)(void *arg);

/* A timer: fires fn(arg) once at the deadline it is armed for, on the pool's timer thread
 * (`inline_fire`: for short work such as answering waiters) or as a job on a worker. Embedded
 * in its owner's memory; every field is the pool's (under its lock). */
typedef struct mc__worktimer {
    mc__work_fn fn;
    void *arg;
    bool inline_fire;
    /* Pool state. */
    uint64_t when;           /* 0: not armed */
    bool cancelled;          /* arms are refused once set */
    unsigned running;        /* a fire in progress (inline or its job queued/running) */
    struct mc__worktimer *next;
} mc__worktimer;

/* Threads used when 0 is asked for. */
#define MC__WORKPOOL_DEFAULT_THREADS 4u

/* A pool of `n` workers (0: the default) and a timer thread, started on first use (so an
 * unused pool costs no thread). Returns 0 or MC_ENOMEM. The pool is reference counted: the
 * creator holds one reference. */
MC_INTERNAL int mc__workpool_create(unsigned n, mc__workpool **out);
MC_INTERNAL void mc__workpool_retain(mc__workpool *p);
/* Drop a reference; the last one stops the pool (queued jobs still run, armed timers are
 * dropped) and joins its threads. Not from one of its own threads for the last reference
 * (that pool is then left running). NULL is a no-op. */
MC_INTERNAL void mc__workpool_release(mc__workpool *p);

/* Queue fn(arg) for a worker. `owner` tags the job for mc__workpool_cancel (may be NULL);
 * `cancel` (may be NULL) is what cancelling calls instead of fn. Any thread. Returns 0,
 * MC_ENOMEM, MC_EIO (no thread could start) or MC_EBUSY (the pool is stopping). */
MC_INTERNAL int mc__workpool_submit(mc__workpool *p, mc__work_fn fn, void *arg, const void *owner,
                                    mc__work_fn cancel);
/* Take every queued (not yet started) job of `owner` off the queue and call its cancel
 * function (if any) on this thread, outside the pool's lock. Returns how many. */
MC_INTERNAL size_t mc__workpool_cancel(mc__workpool *p, const void *owner);

/* Prepare a timer (before its first arm). */
MC_INTERNAL void mc__worktimer_init(mc__worktimer *t, mc__work_fn fn, void *arg, bool inline_fire);
/* Arm t to fire at `when` (monotonic ns, mc__mono_now), or keep an earlier deadline it is
 * armed for already. Returns 0, MC_ECANCELED (t was cancelled), MC_EBUSY, MC_EIO. */
MC_INTERNAL int mc__worktimer_arm(mc__workpool *p, mc__worktimer *t, uint64_t when);
/* Disarm t for good and wait for a fire in progress to end (unless called from that fire,
 * which then just ends without re-arming). After this returns, fn never runs again. */
MC_INTERNAL void mc__worktimer_cancel(mc__workpool *p, mc__worktimer *t);

/* Whether a fire of t is in progress (running, or queued as a job). For tests. */
MC_INTERNAL bool mc__worktimer_firing(mc__workpool *p, const mc__worktimer *t);

/* Whether the calling thread is one of p's threads. */
MC_INTERNAL bool mc__workpool_on_thread(const mc__workpool *p);
/* Worker threads configured / started so far (started also counts the timer thread). */
MC_INTERNAL unsigned mc__workpool_size(const mc__workpool *p);
MC_INTERNAL unsigned mc__workpool_started(mc__workpool *p);


#endif
