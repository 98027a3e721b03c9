/* The load pool (workpool.h): one mutex over a FIFO of jobs and a deadline-ordered list of
 * timers. Jobs are loads (a millisecond or more each) and timers a few per function, far from
 * where a lock-free queue would matter; the timer thread is separate so that workers stuck in
 * stalled loads never delay a deadline. */
#include "core/workpool.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "core/error.h"

typedef struct mc__wjob {
    struct mc__wjob *next;
    mc__work_fn fn, cancel;
    void *arg;
    const void *owner;
} mc__wjob;

struct mc__workpool {
    pthread_mutex_t lock;
    pthread_cond_t wake;   /* workers: a job was queued, or stop */
    pthread_cond_t twake;  /* the timer thread: an earlier deadline, or stop (monotonic) */
    pthread_cond_t tdone;  /* a timer's fire ended (cancel waits for it) */
    mc__wjob *head, *tail; /* under lock */
    mc__worktimer *timers; /* armed, earliest first; under lock */
    bool stopping, started;
    unsigned n;            /* workers configured */
    unsigned nthreads;     /* threads started (workers + timer) */
    pthread_t *threads;    /* n + 1: the workers, then the timer thread */
    bool timer_started;
    _Atomic unsigned refs;
};

/* The pool whose thread this is (for mc__workpool_on_thread), and the timer being fired. */
static _Thread_local const mc__workpool *mc__wp_self;
static _Thread_local const mc__worktimer *mc__wp_firing;

static void *mc__wp_worker(void *arg)
{
    mc__workpool *p = arg;
    mc__wp_self = p;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->head && !p->stopping)
            pthread_cond_wait(&p->wake, &p->lock);
        mc__wjob *j = p->head;
        if (!j)
            break; /* stopping, nothing left */
        p->head = j->next;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->lock);
        j->fn(j->arg);
        free(j);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* A timer fired as a job: its fire ends when the job returns. */
static void mc__wp_timer_job(void *arg)
{
    mc__worktimer *t = arg;
    mc__wp_firing = t;
    t->fn(t->arg);
    mc__wp_firing = NULL;
    /* The pool is reachable through the thread's own pointer (this runs on a worker). */
    mc__workpool *p = (mc__workpool *)mc__wp_self;
    pthread_mutex_lock(&p->lock);
    t->running--;
    pthread_cond_broadcast(&p->tdone);
    pthread_mutex_unlock(&p->lock);
}

static int mc__wp_queue_locked(mc__workpool *p, mc__wjob *j);

static void *mc__wp_timer_main(void *arg)
{
    mc__workpool *p = arg;
    mc__wp_self = p;
    pthread_mutex_lock(&p->lock);
    while (!p->stopping) {
        mc__worktimer *t = p->timers;
        if (!t) {
            pthread_cond_wait(&p->twake, &p->lock);
            continue;
        }
        uint64_t now = mc__mono_now();
        if (t->when > now) {
            struct timespec ts = {.tv_sec = (time_t)(t->when / 1000000000u),
                                  .tv_nsec = (long)(t->when % 1000000000u)};
            pthread_cond_timedwait(&p->twake, &p->lock, &ts);
            continue; /* re-read: an earlier timer, a cancel or a stop may have come */
        }
        p->timers = t->next;
        t->next = NULL;
        t->when = 0;
        t->running++;
        if (!t->inline_fire) {
            mc__wjob *j = malloc(sizeof *j);
            if (j) {
                *j = (mc__wjob){.fn = mc__wp_timer_job, .arg = t};
                if (mc__wp_queue_locked(p, j) == 0)
                    continue;
                free(j);
            }
            /* No job could be had: fire here rather than never. */
        }
        pthread_mutex_unlock(&p->lock);
        mc__wp_firing = t;
        t->fn(t->arg);
        mc__wp_firing = NULL;
        pthread_mutex_lock(&p->lock);
        t->running--;
        pthread_cond_broadcast(&p->tdone);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Start the threads on first use (lock held). 0, or MC_EIO when none could start. */
static int mc__wp_start_locked(mc__workpool *p, bool timer)
{
    if (!p->started) {
        p->started = true;
        for (unsigned i = 0; i < p->n; i++)
            if (pthread_create(&p->threads[p->nthreads], NULL, mc__wp_worker, p) == 0)
                p->nthreads++;
    }
    if (timer && !p->timer_started) {
        if (pthread_create(&p->threads[p->nthreads], NULL, mc__wp_timer_main, p) != 0)
            return MC_EIO;
        p->nthreads++;
        p->timer_started = true;
    }
    return p->nthreads ? 0 : MC_EIO;
}

static int mc__wp_queue_locked(mc__workpool *p, mc__wjob *j)
{
    if (p->stopping)
        return MC_EBUSY;
    int rc = mc__wp_start_locked(p, false);
    if (rc)
        return rc;
    j->next = NULL;
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    pthread_cond_signal(&p->wake);
    return 0;
}

int mc__workpool_create(unsigned n, mc__workpool **out)
{
    *out = NULL;
    if (!n)
        n = MC__WORKPOOL_DEFAULT_THREADS;
    mc__workpool *p = calloc(1, sizeof *p);
    if (!p || !(p->threads = calloc(n + 1, sizeof *p->threads))) {
        free(p);
        return MC_ENOMEM;
    }
    p->n = n;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->tdone, NULL);
    mc__cond_init_monotonic(&p->twake);
    atomic_init(&p->refs, 1);
    *out = p;
    return 0;
}

void mc__workpool_retain(mc__workpool *p)
{
    if (p)
        atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
}

void mc__workpool_release(mc__workpool *p)
{
    /* Acq_rel: the last holder sees every use the others made before letting go. */
    if (!p || atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (mc__wp_self == p)
        return; /* cannot join itself: left running (documented) */
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->wake);
    pthread_cond_broadcast(&p->twake);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->twake);
    pthread_cond_destroy(&p->tdone);
    free(p->threads);
    free(p);
}

int mc__workpool_submit(mc__workpool *p, mc__work_fn fn, void *arg, const void *owner, mc__work_fn cancel)
{
    mc__wjob *j = malloc(sizeof *j);
    if (!j)
        return MC_ENOMEM;
    *j = (mc__wjob){.fn = fn, .cancel = cancel, .arg = arg, .owner = owner};
    pthread_mutex_lock(&p->lock);
    int rc = mc__wp_queue_locked(p, j);
    pthread_mutex_unlock(&p->lock);
    if (rc)
        free(j);
    return rc;
}

size_t mc__workpool_cancel(mc__workpool *p, const void *owner)
{
    mc__wjob *taken = NULL, **tailp = &taken;
    pthread_mutex_lock(&p->lock);
    mc__wjob **pp = &p->head;
    p->tail = NULL;
    while (*pp) {
        mc__wjob *j = *pp;
        if (owner && j->owner == owner) {
            *pp = j->next;
            j->next = NULL;
            *tailp = j;
            tailp = &j->next;
        } else {
            p->tail = j;
            pp = &j->next;
        }
    }
    pthread_mutex_unlock(&p->lock);
    size_t n = 0;
    while (taken) {
        mc__wjob *next = taken->next;
        if (taken->cancel)
            taken->cancel(taken->arg);
        free(taken);
        taken = next;
        n++;
    }
    return n;
}

void mc__worktimer_init(mc__worktimer *t, mc__work_fn fn, void *arg, bool inline_fire)
{
    *t = (mc__worktimer){.fn = fn, .arg = arg, .inline_fire = inline_fire};
}

static void mc__wp_unlink_locked(mc__workpool *p, mc__worktimer *t)
{
    for (mc__worktimer **pp = &p->timers; *pp; pp = &(*pp)->next)
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    t->next = NULL;
    t->when = 0;
}

int mc__worktimer_arm(mc__workpool *p, mc__worktimer *t, uint64_t when)
{
    if (!when)
        when = 1;
    pthread_mutex_lock(&p->lock);
    int rc = t->cancelled ? MC_ECANCELED : p->stopping ? MC_EBUSY : mc__wp_start_locked(p, true);
    if (rc == 0 && (!t->when || when < t->when)) {
        if (t->when)
            mc__wp_unlink_locked(p, t);
        t->when = when;
        mc__worktimer **pp = &p->timers;
        while (*pp && (*pp)->when <= when)
            pp = &(*pp)->next;
        t->next = *pp;
        *pp = t;
        if (p->timers == t)
            pthread_cond_signal(&p->twake);
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

void mc__worktimer_cancel(mc__workpool *p, mc__worktimer *t)
{
    pthread_mutex_lock(&p->lock);
    t->cancelled = true;
    if (t->when)
        mc__wp_unlink_locked(p, t);
    /* A fire queued as a job and not started yet is taken back: waiting for it could mean
     * waiting for this very thread's worker slot. */
    mc__wjob *taken = NULL;
    for (mc__wjob **pp = &p->head, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->next)
        if ((*pp)->fn == mc__wp_timer_job && (*pp)->arg == t) {
            taken = *pp;
            *pp = taken->next;
            if (p->tail == taken)
                p->tail = prev;
            t->running--;
            break;
        }
    /* From inside its own fire, waiting would never end: the fire ends after we return. */
    while (t->running && mc__wp_firing != t)
        pthread_cond_wait(&p->tdone, &p->lock);
    pthread_mutex_unlock(&p->lock);
    free(taken);
}

bool mc__worktimer_firing(mc__workpool *p, const mc__worktimer *t)
{
    pthread_mutex_lock(&p->lock);
    bool firing = t->running > 0;
    pthread_mutex_unlock(&p->lock);
    return firing;
}

bool mc__workpool_on_thread(const mc__workpool *p) { return p && mc__wp_self == p; }

unsigned mc__workpool_size(const mc__workpool *p) { return p ? p->n : 0; }

unsigned mc__workpool_started(mc__workpool *p)
{
    if (!p)
        return 0;
    pthread_mutex_lock(&p->lock);
    unsigned n = p->nthreads;
    pthread_mutex_unlock(&p->lock);
    return n;
}
