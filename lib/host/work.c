/* Modules' work on the load pool: mc_api_run_in_pool (one job) and mc_api_looping_call
 * (periodic), counted per module so that all of it is over before the module's fini. */
#include <pthread.h>
#include <stdlib.h>

#include "cached/cached_host.h"
#include "core/error.h"
#include "core/workpool.h"
#include "host/host_internal.h"

struct mc_looping_call {
    struct mc__api_work *w;
    mc_api_work_fn fn;
    void *ud;
    uint64_t interval_ns, due; /* due: the current call's start + interval (timer side only) */
    mc__worktimer timer;
    struct mc_looping_call *next; /* the module's list (w->lock) */
};

struct mc__api_work {
    mc__workpool *pool; /* retained */
    pthread_mutex_t lock;
    pthread_cond_t idle;     /* pending reached 0 */
    unsigned pending;        /* jobs queued or running */
    bool closed;             /* fini is coming: nothing new */
    mc_looping_call *loops;  /* running, and (once closed) stopped ones awaiting free */
};

struct mc__api_job {
    struct mc__api_work *w;
    mc_api_work_fn fn;
    void *ud;
};

int mc__api_work_init(mc_api *api)
{
    struct mc__api_work *w = calloc(1, sizeof *w);
    if (!w)
        return MC_ENOMEM;
    w->pool = mc__registry_workpool(api->host->registry);
    if (!w->pool) {
        free(w);
        return MC_ENOMEM;
    }
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->idle, NULL);
    api->work = w;
    return 0;
}

static void mc__api_job_done(struct mc__api_work *w)
{
    pthread_mutex_lock(&w->lock);
    if (--w->pending == 0)
        pthread_cond_broadcast(&w->idle);
    pthread_mutex_unlock(&w->lock);
}

static void mc__api_job_run(void *arg)
{
    struct mc__api_job *j = arg;
    struct mc__api_work *w = j->w;
    j->fn(j->ud);
    free(j);
    mc__api_job_done(w); /* last: fini may follow at once */
}

int mc_api_run_in_pool(mc_api *api, mc_api_work_fn fn, void *ud)
{
    if (!api || !api->work || !fn)
        return MC_EINVAL;
    struct mc__api_work *w = api->work;
    struct mc__api_job *j = malloc(sizeof *j);
    if (!j)
        return MC_ENOMEM;
    *j = (struct mc__api_job){w, fn, ud};
    pthread_mutex_lock(&w->lock);
    if (w->closed) {
        pthread_mutex_unlock(&w->lock);
        free(j);
        return MC_EBUSY;
    }
    w->pending++;
    pthread_mutex_unlock(&w->lock);
    int rc = mc__workpool_submit(w->pool, mc__api_job_run, j, w, NULL);
    if (rc != 0) {
        free(j);
        mc__api_job_done(w);
    }
    return rc;
}

/* A looping call's timer fired (as a job on a worker): call, then arm for the next one. */
static void mc__loop_fire(void *arg)
{
    mc_looping_call *lc = arg;
    uint64_t start = mc__mono_now();
    lc->fn(lc->ud);
    uint64_t due = start + lc->interval_ns, now = mc__mono_now();
    /* MC_ECANCELED once stopped: then it simply is not armed again. */
    mc__worktimer_arm(lc->w->pool, &lc->timer, due > now ? due : now);
}

int mc_api_looping_call(mc_api *api, mc_api_work_fn fn, void *ud, uint64_t interval_ns, mc_looping_call **out)
{
    if (out)
        *out = NULL;
    if (!api || !api->work || !fn || !interval_ns)
        return MC_EINVAL;
    struct mc__api_work *w = api->work;
    mc_looping_call *lc = calloc(1, sizeof *lc);
    if (!lc)
        return MC_ENOMEM;
    lc->w = w;
    lc->fn = fn;
    lc->ud = ud;
    lc->interval_ns = interval_ns;
    mc__worktimer_init(&lc->timer, mc__loop_fire, lc, false);
    pthread_mutex_lock(&w->lock);
    if (w->closed) {
        pthread_mutex_unlock(&w->lock);
        free(lc);
        return MC_EBUSY;
    }
    lc->next = w->loops;
    w->loops = lc;
    /* Armed under the lock: a stop cannot come between listing and arming. */
    uint64_t now = mc__mono_now();
    int rc = mc__worktimer_arm(w->pool, &lc->timer, interval_ns > UINT64_MAX - now ? UINT64_MAX : now + interval_ns);
    if (rc != 0)
        w->loops = lc->next;
    pthread_mutex_unlock(&w->lock);
    if (rc != 0) {
        free(lc);
        return rc;
    }
    if (out)
        *out = lc;
    return 0;
}

void mc_api_looping_call_stop(mc_looping_call *lc)
{
    if (!lc)
        return;
    struct mc__api_work *w = lc->w;
    mc__worktimer_cancel(w->pool, &lc->timer);
    pthread_mutex_lock(&w->lock);
    bool closed = w->closed;
    if (!closed)
        for (mc_looping_call **pp = &w->loops; *pp; pp = &(*pp)->next)
            if (*pp == lc) {
                *pp = lc->next;
                break;
            }
    pthread_mutex_unlock(&w->lock);
    /* Once closed the host owns the list and frees it after fini. Stopping from inside fn
     * itself leaves the fire to end after we return: freed by the host then, not here. */
    if (!closed && !mc__workpool_on_thread(w->pool))
        free(lc);
    else if (!closed) {
        pthread_mutex_lock(&w->lock);
        lc->next = w->loops; /* kept for the host to free; its timer is cancelled */
        w->loops = lc;
        pthread_mutex_unlock(&w->lock);
    }
}

void mc__api_work_stop(mc_api *api)
{
    struct mc__api_work *w = api->work;
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->closed = true;
    mc_looping_call *loops = w->loops;
    pthread_mutex_unlock(&w->lock);
    /* Jobs first (looping calls keep running meanwhile, in case a job waits for them), then
     * the looping calls. Closed, the list no longer changes: stops leave it to us. */
    pthread_mutex_lock(&w->lock);
    while (w->pending)
        pthread_cond_wait(&w->idle, &w->lock);
    pthread_mutex_unlock(&w->lock);
    for (mc_looping_call *lc = loops; lc; lc = lc->next)
        mc__worktimer_cancel(w->pool, &lc->timer);
}

void mc__api_work_free(mc_api *api)
{
    struct mc__api_work *w = api->work;
    if (!w)
        return;
    while (w->loops) {
        mc_looping_call *next = w->loops->next;
        free(w->loops);
        w->loops = next;
    }
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->idle);
    mc__workpool_release(w->pool);
    free(w);
    api->work = NULL;
}
