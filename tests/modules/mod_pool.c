/* A test module for the load pool: a blocking job (mc_api_run_in_pool) and looping calls
 * (mc_api_looping_call), and a fini that reports whether all of it was over before it ran.
 * The job also tries every way to register after init, and to take control of the module's
 * scope through its registry handle; it logs "late control ..." when done. */
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
    /* The same thread's tries at the scope itself through the handle: reopening it, then
     * creating under the handle (late_reopen); a scope of its own from the handle
     * (late_scope), then opening it and creating under it (late_nested, MC_OK when no
     * scope was made); clearing and destroying the handle. kept_after: the function
     * registered during init is still listed and the module's after all of it. */
    atomic_int late_reopen, late_scope, late_nested, kept_after;
    mc_cached *kept;        /* registered during init, through the handle */
    mc_registry *nested;    /* a scope the handle should never have made, or NULL */
    mc_cached *nested_fn;   /* created under it, or NULL */
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

/* Every way a module could take its scope's control into its own hands, from another thread
 * after init: each must be refused, and leave its registrations as they are. */
static void control_late(pool_state *s)
{
    mc_registry *reg = mc_api_registry(s->api);
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.max_entries = 1;
    /* (1) Reopen the handle's scope, then create under the handle. */
    mc_registry_scope_open(reg, true);
    o.name = "mod_pool.reopened";
    o.registry = reg;
    mc_cached *fn = NULL;
    atomic_store(&s->late_reopen, mc_cached_create(&o, late_loader, NULL, &fn));
    mc_cached_destroy(fn);
    /* (2) A scope of its own from the handle, which the host would never close or clear: its
     * function is kept until fini, so that the test would see it listed. */
    atomic_store(&s->late_scope, mc_registry_scope_create(reg, &s->nested));
    int nested = MC_OK;
    if (s->nested) {
        mc_registry_scope_open(s->nested, true);
        o.name = "mod_pool.nested";
        o.registry = s->nested;
        nested = mc_cached_create(&o, late_loader, NULL, &s->nested_fn);
    }
    atomic_store(&s->late_nested, nested);
    /* (3) Clear the scope, destroy it, destroy the handle as a registry: the handle must still
     * be usable afterwards (AddressSanitizer would see a freed one) and the function
     * registered during init still the module's. */
    mc_registry_scope_clear(reg);
    mc_registry_scope_destroy(reg);
    mc_registry_destroy(reg);
    atomic_store(&s->kept_after,
                 mc_registry_find(reg, "mod_pool.kept") == s->kept && mc_registry_scope_owns(reg, s->kept));
    mc_api_log(s->api, MC_LOG_INFO, "late control reopen=%s scope=%s nested=%s kept=%d",
               mc_err_name(atomic_load(&s->late_reopen)), mc_err_name(atomic_load(&s->late_scope)),
               mc_err_name(atomic_load(&s->late_nested)), atomic_load(&s->kept_after));
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
    control_late(s);
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
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = "mod_pool.kept";
    o.max_entries = 1;
    o.registry = mc_api_registry(api);
    int rc = mc_cached_create(&o, late_loader, NULL, &s->kept);
    if (rc == 0)
        rc = mc_api_looping_call(api, tick, s, 2000000, NULL);
    if (rc == 0)
        rc = mc_api_looping_call(api, self_stopping, s, 1000000, &s->self_stop);
    if (rc == 0)
        rc = mc_api_looping_call(api, never, s, 50000000, &s->stopped);
    if (rc == 0)
        rc = mc_api_run_in_pool(api, job, s);
    mc_api_log(api, MC_LOG_INFO, "init rc=%s bad-interval=%s", mc_err_name(rc),
               mc_err_name(mc_api_looping_call(api, tick, s, 0, NULL)));
    mc_api_looping_call_stop(s->stopped);
    if (rc != 0) {
        mc_cached_destroy(s->kept); /* the host frees nothing of a failed init's but its work */
        s->kept = NULL;
    }
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
               "late-job=%s late-loop=%s late-create=%s late-register=%s late-add=%s kept-listed=%d",
               atomic_load(&s->job_done), atomic_load(&s->job_other_thread), ticks >= 3, in_tick, later,
               atomic_load(&s->self_stop_ticks), atomic_load(&s->stopped_ticks),
               mc_err_name(mc_api_run_in_pool(s->api, job, s)),
               mc_err_name(mc_api_looping_call(s->api, tick, s, 1000000, NULL)),
               mc_err_name(atomic_load(&s->late_create)), mc_err_name(atomic_load(&s->late_register)),
               mc_err_name(atomic_load(&s->late_add)), mc_registry_find(mc_api_registry(s->api), "mod_pool.kept") != NULL);
    mc_cached_destroy(s->nested_fn);
    mc_registry_scope_destroy(s->nested);
    mc_cached_destroy(s->kept);
    free(s);
}

MC_MODULE("mod_pool", NULL, init, fini, NULL);
