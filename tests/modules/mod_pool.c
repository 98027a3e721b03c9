/* A test module for the load pool: a blocking job (mc_api_run_in_pool) and looping calls
 * (mc_api_looping_call), and a fini that reports whether all of it was over before it ran. */
#define _DEFAULT_SOURCE /* usleep */
#include <modcache/module.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct {
    mc_api *api;
    pthread_t init_thread;
    atomic_int job_done, job_other_thread;
    atomic_int ticks, in_tick, self_stop_ticks, stopped_ticks;
    /* Registration tried from the pool's thread once init is over: each must be MC_EBUSY. */
    atomic_int late_create, late_register, late_add;
    mc_looping_call *self_stop, *stopped;
} pool_state;

static int late_loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)self;
    (void)args;
    (void)nargs;
    return mc_load_set_none(load);
}

/* Every way a module could register a function, tried from another thread after init. */
static void register_late(pool_state *s)
{
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = "mod_pool.late";
    o.max_entries = 1;
    o.registry = mc_api_registry(s->api);
    mc_cached *fn = NULL;
    atomic_store(&s->late_create, mc_cached_create(&o, late_loader, NULL, &fn));
    mc_cached_destroy(fn);
    o.registry = NULL;
    fn = NULL;
    if (mc_cached_create(&o, late_loader, NULL, &fn) == 0) {
        atomic_store(&s->late_register, mc_api_register_cached_function(s->api, fn));
        atomic_store(&s->late_add, mc_registry_add(mc_api_registry(s->api), fn));
        mc_cached_destroy(fn);
    }
}

/* Blocks until the looping call ran a few times, so that fini (which waits for this job)
 * comes after the loop has been running. */
static void job(void *ud)
{
    pool_state *s = ud;
    s->job_other_thread = !pthread_equal(pthread_self(), s->init_thread);
    for (int i = 0; i < 10000 && atomic_load(&s->ticks) < 3; i++)
        usleep(1000);
    usleep(20000);
    register_late(s); /* init returned well before: the loop ran three times since it began */
    atomic_store(&s->job_done, 1);
}

static void tick(void *ud)
{
    pool_state *s = ud;
    atomic_store(&s->in_tick, 1);
    atomic_fetch_add(&s->ticks, 1);
    usleep(1000); /* long enough for a stop to have to wait for it */
    atomic_store(&s->in_tick, 0);
}

static void self_stopping(void *ud)
{
    pool_state *s = ud;
    if (atomic_fetch_add(&s->self_stop_ticks, 1) + 1 == 3)
        mc_api_looping_call_stop(s->self_stop);
}

static void never(void *ud)
{
    pool_state *s = ud;
    atomic_fetch_add(&s->stopped_ticks, 1);
}

static int init(mc_api *api, void *parsed, void **state, mc_error *err)
{
    (void)parsed;
    (void)err;
    pool_state *s = calloc(1, sizeof *s);
    if (!s)
        return MC_ENOMEM;
    s->api = api;
    s->init_thread = pthread_self();
    int rc = mc_api_looping_call(api, tick, s, 2000000, NULL);
    if (rc == 0)
        rc = mc_api_looping_call(api, self_stopping, s, 1000000, &s->self_stop);
    if (rc == 0)
        rc = mc_api_looping_call(api, never, s, 50000000, &s->stopped);
    if (rc == 0)
        rc = mc_api_run_in_pool(api, job, s);
    mc_api_log(api, MC_LOG_INFO, "init rc=%s bad-interval=%s", mc_err_name(rc),
               mc_err_name(mc_api_looping_call(api, tick, s, 0, NULL)));
    mc_api_looping_call_stop(s->stopped);
    *state = s;
    return rc;
}

static void fini(void *state)
{
    pool_state *s = state;
    int in_tick = atomic_load(&s->in_tick), ticks = atomic_load(&s->ticks);
    usleep(10000);
    int later = atomic_load(&s->ticks) - ticks;
    mc_api_log(s->api, MC_LOG_INFO,
               "fini job_done=%d other_thread=%d ticked=%d in_tick=%d ticks_after=%d self_stop=%d stopped=%d "
               "late-job=%s late-loop=%s late-create=%s late-register=%s late-add=%s",
               atomic_load(&s->job_done), atomic_load(&s->job_other_thread), ticks >= 3, in_tick, later,
               atomic_load(&s->self_stop_ticks), atomic_load(&s->stopped_ticks),
               mc_err_name(mc_api_run_in_pool(s->api, job, s)),
               mc_err_name(mc_api_looping_call(s->api, tick, s, 1000000, NULL)),
               mc_err_name(atomic_load(&s->late_create)), mc_err_name(atomic_load(&s->late_register)),
               mc_err_name(atomic_load(&s->late_add)));
    free(s);
}

MC_MODULE("mod_pool", NULL, init, fini, NULL);
