/* The HTTP server's handler pool (pool.h): a mutex-protected FIFO of jobs and a condition
 * variable; jobs are few per second to a few hundred thousand, far from where a lock-free queue
 * would matter next to a module's handler. */
#include "host/pool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "core/error.h"

typedef struct mc__job {
    struct mc__job *next;
    mc__job_fn fn;
    void *arg;
} mc__job;

struct mc__pool {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    mc__job *head, *tail; /* under lock */
    bool stopping;        /* under lock: no new jobs; threads exit once the queue is empty */
    pthread_t *threads;
    unsigned n;
    bool joined;          /* stop's caller only */
};

static void *mc__pool_main(void *arg)
{
    mc__pool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->head && !p->stopping)
            pthread_cond_wait(&p->wake, &p->lock);
        mc__job *j = p->head;
        if (!j)
            break; /* stopping, and nothing left to run */
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

int mc__pool_create(unsigned n, mc__pool **out)
{
    *out = NULL;
    mc__pool *p = calloc(1, sizeof *p);
    if (!p || !(p->threads = calloc(n ? n : 1, sizeof *p->threads))) {
        free(p);
        return MC_ENOMEM;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    for (unsigned i = 0; i < (n ? n : 1); i++) {
        if (pthread_create(&p->threads[i], NULL, mc__pool_main, p) != 0)
            break;
        p->n++;
    }
    if (p->n == 0) {
        mc__pool_destroy(p);
        return MC_EIO;
    }
    *out = p;
    return 0;
}

int mc__pool_submit(mc__pool *p, mc__job_fn fn, void *arg)
{
    mc__job *j = malloc(sizeof *j);
    if (!j)
        return MC_ENOMEM;
    j->next = NULL;
    j->fn = fn;
    j->arg = arg;
    pthread_mutex_lock(&p->lock);
    if (p->stopping) {
        pthread_mutex_unlock(&p->lock);
        free(j);
        return MC_EBUSY;
    }
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

void mc__pool_stop(mc__pool *p)
{
    if (!p || p->joined)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->n; i++)
        pthread_join(p->threads[i], NULL);
    p->joined = true;
}

void mc__pool_destroy(mc__pool *p)
{
    if (!p)
        return;
    mc__pool_stop(p);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    free(p->threads);
    free(p);
}

unsigned mc__pool_size(const mc__pool *p) { return p ? p->n : 0; }
