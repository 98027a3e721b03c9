/* A fixed pool of threads running submitted jobs in order of submission: where the HTTP server
 * runs modules' handlers, so that a handler that blocks holds a pool thread, not an event thread
 * and the connections it serves. */
#ifndef MC_HOST_POOL_H
#define MC_HOST_POOL_H

#include <stddef.h>

typedef struct mc__pool mc__pool;
typedef void (*mc__job_fn)(void *arg);

/* Start `n` threads (n >= 1). Returns 0, MC_ENOMEM, or MC_EIO when no thread could start. */
int mc__pool_create(unsigned n, mc__pool **out);
/* Queue fn(arg) to run on a pool thread. Any thread. Returns 0, MC_ENOMEM, or MC_EBUSY once
 * mc__pool_stop has begun (not queued). */
int mc__pool_submit(mc__pool *p, mc__job_fn fn, void *arg);
/* Refuse new jobs, run every job already queued, then join the threads. The pool stays valid
 * (submit answers MC_EBUSY) until mc__pool_destroy. */
void mc__pool_stop(mc__pool *p);
/* mc__pool_stop if not done yet, then free the pool. NULL is a no-op. */
void mc__pool_destroy(mc__pool *p);
/* Number of threads. */
unsigned mc__pool_size(const mc__pool *p);

#endif
