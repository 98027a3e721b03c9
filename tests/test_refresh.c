/* Tests of the load pool and of write age: timed loads on a fixed pool (no thread per load),
 * refresh-ahead (old value at once, one reload, invalidation wins, a failed reload keeps the
 * old value), expire_after_write, the "no value" lifetime, and per-function settings from a
 * registry's config. Time is a fake clock, so nothing here depends on the machine's speed. */
#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "cached/cached_internal.h"
#include "modcache.h"

/* ---- a fake clock and a gated loader over a versioned "database" ---- */

static _Atomic uint64_t fake_now = 1000000000ull;

static uint64_t fake_clock(void *ud)
{
    (void)ud;
    return atomic_load(&fake_now);
}

typedef struct {
    atomic_int calls;
    atomic_int version;
    atomic_int fail_with; /* non-zero: loads fail with it */
    int none_for;         /* this key loads "no value" */
    /* A closed gate holds loads (after they read the version) until opened. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool closed;
    int held;             /* loads waiting at the gate */
    pthread_t last_thread;
} db_t;

static void db_init(db_t *db)
{
    memset(db, 0, sizeof *db);
    db->none_for = -1;
    pthread_mutex_init(&db->lock, NULL);
    pthread_cond_init(&db->cond, NULL);
}

static void db_gate(db_t *db, bool closed)
{
    pthread_mutex_lock(&db->lock);
    db->closed = closed;
    pthread_cond_broadcast(&db->cond);
    pthread_mutex_unlock(&db->lock);
}

/* Wait until n loads are held at the gate. */
static void db_wait_held(db_t *db, int n)
{
    pthread_mutex_lock(&db->lock);
    while (db->held < n)
        pthread_cond_wait(&db->cond, &db->lock);
    pthread_mutex_unlock(&db->lock);
}

static int db_loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    db_t *db = self;
    (void)nargs;
    atomic_fetch_add(&db->calls, 1);
    int version = atomic_load(&db->version);
    pthread_mutex_lock(&db->lock);
    db->last_thread = pthread_self();
    db->held++;
    pthread_cond_broadcast(&db->cond);
    while (db->closed)
        pthread_cond_wait(&db->cond, &db->lock);
    db->held--;
    pthread_mutex_unlock(&db->lock);
    int fail = atomic_load(&db->fail_with);
    if (fail)
        return fail;
    if (args[0].v.i == db->none_for)
        return mc_load_set_none(load);
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%lld:%d", (long long)args[0].v.i, version);
    return mc_load_set_copy(load, buf, (size_t)n);
}

static mc_cached *make_fn(db_t *db, uint64_t refresh, uint64_t expire, uint64_t none_ttl)
{
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = "test.refresh";
    o.max_entries = 100;
    o.clock = fake_clock;
    o.refresh_after_ns = refresh;
    o.expire_after_write_ns = expire;
    o.none_ttl_ns = none_ttl;
    mc_cached *fn = NULL;
    assert_int_equal(mc_cached_create(&o, db_loader, db, &fn), 0);
    return fn;
}

/* The value of key k as a string ("" for "no value"). */
static int call(mc_cached *fn, int64_t k, char *out)
{
    mc_arg a[] = {MC_ARG_I(k)};
    mc_value *v = NULL;
    int rc = mc_cached_call(fn, a, 1, &v);
    out[0] = 0;
    if (rc == 0) {
        memcpy(out, mc_value_data(v), mc_value_size(v));
        out[mc_value_size(v)] = 0;
        mc_value_release(v);
    }
    return rc;
}

static mc_cached_stats stats(mc_cached *fn)
{
    mc_cached_stats st;
    mc_cached_stats_get(fn, &st);
    return st;
}

/* Wait until n loads of fn have finished (stored, dropped or failed) and their waiters were
 * answered: the histogram's last bucket counts finished loads. */
static void wait_finished(mc_cached *fn, uint64_t n)
{
    for (int i = 0; i < 100000 && stats(fn).load_duration_buckets[MC_LOAD_BUCKETS - 1] < n; i++)
        usleep(100);
    assert_true(stats(fn).load_duration_buckets[MC_LOAD_BUCKETS - 1] >= n);
}

static int threads_now(void)
{
    DIR *d = opendir("/proc/self/task");
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* ---- the pool ---- */

/* Opens the gate a little later, so that the test thread is (most likely) already waiting
 * in a destroy; either way the outcome checked is the same. */
static void *open_gate_later(void *arg)
{
    db_t *db = arg;
    usleep(2000);
    db_gate(db, false);
    return NULL;
}

typedef struct {
    mc_cached *fn;
    int base;
} caller_arg;

static void *many_calls(void *arg)
{
    caller_arg *c = arg;
    char buf[32];
    for (int i = 0; i < 40; i++)
        assert_int_equal(call(c->fn, c->base + i, buf), 0);
    return NULL;
}

/* Timed loads run on the registry's pool, sized by its config: however many loads and
 * callers, the process gains the pool's workers (and its timer thread) and no more. */
static void test_pool_sizing_no_thread_per_load(void **state)
{
    (void)state;
    /* Reclamation's own thread (started by the first entry ever freed) is not the pool's:
     * have it started before counting. */
    db_t warm;
    db_init(&warm);
    mc_cached *w = make_fn(&warm, 0, 0, 0);
    char wbuf[32];
    assert_int_equal(call(w, 1, wbuf), 0);
    mc_cached_destroy(w);
    mc_cache_config cfg;
    mc_cache_config_init(&cfg);
    cfg.load_pool_threads = 3;
    cfg.load_timeout_ns = 60ull * 1000000000;
    mc_registry *reg;
    assert_int_equal(mc_registry_create(&cfg, &reg), 0);
    db_t db;
    db_init(&db);
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = "test.pooled";
    o.max_entries = 1000;
    o.registry = reg;
    mc_cached *fn;
    assert_int_equal(mc_cached_create(&o, db_loader, &db, &fn), 0);
    assert_int_equal(mc__workpool_size(fn->pool), 3);
    /* Nothing started before the first load. */
    assert_int_equal(mc__workpool_started(fn->pool), 0);
    int before = threads_now();
    char buf[32];
    assert_int_equal(call(fn, 1, buf), 0);
    assert_string_equal(buf, "1:0");
    /* The loader ran on a pool thread, not on the caller's. */
    assert_false(pthread_equal(db.last_thread, pthread_self()));
    assert_int_equal(threads_now(), before + 3);

    /* Four callers, 160 timed loads: the thread count is the callers' plus the pool's. */
    pthread_t t[4];
    caller_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (caller_arg){fn, 100 * (i + 1)};
        assert_int_equal(pthread_create(&t[i], NULL, many_calls, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(stats(fn).loads, 161);
    assert_int_equal(mc__workpool_started(fn->pool), 3);
    assert_int_equal(threads_now(), before + 3);

    /* A second function under the registry shares the pool. */
    o.name = "test.pooled2";
    mc_cached *fn2;
    assert_int_equal(mc_cached_create(&o, db_loader, &db, &fn2), 0);
    assert_ptr_equal(fn2->pool, fn->pool);
    assert_int_equal(call(fn2, 1, buf), 0);
    assert_int_equal(threads_now(), before + 3);
    mc_cached_destroy(fn2);
    mc_cached_destroy(fn);
    mc_registry_destroy(reg);
    /* The last function gone, the pool stopped and its threads were joined (a joined thread
     * may linger in /proc for a moment after its join returned). */
    for (int i = 0; i < 10000 && threads_now() != before; i++)
        usleep(100);
    assert_int_equal(threads_now(), before);
}

/* One call of key c->base; its return code replaces c->base. */
static void *timed_call(void *arg)
{
    caller_arg *c = arg;
    char buf[32];
    c->base = call(c->fn, c->base, buf);
    return NULL;
}

/* A timed load still queued when its function is destroyed ends with MC_ECANCELED and never
 * runs; one running is waited for. */
static void test_destroy_with_queued_loads(void **state)
{
    (void)state;
    mc_cache_config cfg;
    mc_cache_config_init(&cfg);
    cfg.load_pool_threads = 1;
    cfg.load_timeout_ns = 1000000; /* 1 ms: the callers give up long before the gate opens */
    mc_registry *reg;
    assert_int_equal(mc_registry_create(&cfg, &reg), 0);
    db_t db;
    db_init(&db);
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = "test.queued";
    o.max_entries = 10;
    o.registry = reg;
    mc_cached *fn;
    assert_int_equal(mc_cached_create(&o, db_loader, &db, &fn), 0);
    db_gate(&db, true);
    caller_arg a = {fn, 1}, b = {fn, 2};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, timed_call, &a), 0);
    db_wait_held(&db, 1); /* key 1 holds the only worker */
    assert_int_equal(pthread_create(&tb, NULL, timed_call, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(a.base, MC_ETIMEDOUT);
    assert_int_equal(b.base, MC_ETIMEDOUT);
    /* Destroy cancels key 2's queued load and waits for key 1's, released meanwhile. */
    pthread_t opener;
    assert_int_equal(pthread_create(&opener, NULL, open_gate_later, &db), 0);
    mc_cached_destroy(fn);
    pthread_join(opener, NULL);
    /* Key 2's load was queued behind key 1's and was cancelled: one loader call in all. */
    assert_int_equal(atomic_load(&db.calls), 1);
    mc_registry_destroy(reg);
}

/* A timer fire queued behind a busy worker is taken back by cancel, which then returns at
 * once (it used to wait for the worker, a deadlock when the canceller is that worker) and
 * the timer's function never runs. */
static atomic_int timer_ran;
static void timer_fn(void *arg)
{
    (void)arg;
    atomic_fetch_add(&timer_ran, 1);
}

static void gate_job(void *arg)
{
    db_t *db = arg;
    pthread_mutex_lock(&db->lock);
    db->held++;
    pthread_cond_broadcast(&db->cond);
    while (db->closed)
        pthread_cond_wait(&db->cond, &db->lock);
    db->held--;
    pthread_mutex_unlock(&db->lock);
}

static void test_cancel_queued_timer_fire(void **state)
{
    (void)state;
    mc__workpool *p;
    assert_int_equal(mc__workpool_create(1, &p), 0);
    db_t db;
    db_init(&db);
    db_gate(&db, true);
    assert_int_equal(mc__workpool_submit(p, gate_job, &db, NULL, NULL), 0);
    db_wait_held(&db, 1); /* the only worker is busy */
    mc__worktimer t;
    mc__worktimer_init(&t, timer_fn, NULL, false);
    assert_int_equal(mc__worktimer_arm(p, &t, mc__mono_now()), 0);
    /* The timer thread queues the fire as a job behind the gate; wait until it has. */
    for (int i = 0; i < 100000; i++) {
        if (mc__worktimer_firing(p, &t))
            break;
        usleep(100);
    }
    mc__worktimer_cancel(p, &t); /* returns with the worker still held */
    assert_int_equal(mc__worktimer_arm(p, &t, mc__mono_now()), MC_ECANCELED);
    db_gate(&db, false);
    mc__workpool_release(p); /* runs what is left and joins */
    assert_int_equal(atomic_load(&timer_ran), 0);
}

/* ---- refresh-ahead ---- */

/* A hit past refresh_after returns the old value at once (the reload is held at the gate) and
 * starts one reload however many hits follow; the reload then replaces the entry. */
static void test_refresh_serves_old_and_reloads_once(void **state)
{
    (void)state;
    db_t db;
    db_init(&db);
    mc_cached *fn = make_fn(&db, 100, 0, 0);
    char buf[32];
    assert_int_equal(call(fn, 1, buf), 0);
    assert_string_equal(buf, "1:0");
    atomic_fetch_add(&fake_now, 99);
    assert_int_equal(call(fn, 1, buf), 0);
    assert_int_equal(stats(fn).refreshes, 0); /* not old enough yet */
    atomic_fetch_add(&fake_now, 1);
    atomic_store(&db.version, 1);
    db_gate(&db, true);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(call(fn, 1, buf), 0);
        assert_string_equal(buf, "1:0"); /* at once: the reload is still held */
    }
    db_wait_held(&db, 1);
    mc_cached_stats st = stats(fn);
    assert_int_equal(st.refreshes, 1);
    assert_int_equal(st.loads, 2);
    assert_int_equal(atomic_load(&db.calls), 2);
    /* The reload runs on the pool, not on a caller's thread. */
    assert_false(pthread_equal(db.last_thread, pthread_self()));
    db_gate(&db, false);
    wait_finished(fn, 2);
    assert_int_equal(call(fn, 1, buf), 0);
    assert_string_equal(buf, "1:1");
    /* The new entry is young again: no refresh until it ages. */
    assert_int_equal(call(fn, 1, buf), 0);
    assert_int_equal(stats(fn).refreshes, 1);
    assert_int_equal(stats(fn).refresh_errors, 0);
    /* Copy and borrowed hits claim refreshes too. */
    atomic_fetch_add(&fake_now, 200);
    atomic_store(&db.version, 2);
    size_t n;
    mc_arg a[] = {MC_ARG_I(1)};
    assert_int_equal(mc_cached_call_copy(fn, a, 1, buf, sizeof buf, &n), 0);
    assert_memory_equal(buf, "1:1", 3);
    wait_finished(fn, 3);
    assert_int_equal(stats(fn).refreshes, 2);
    atomic_fetch_add(&fake_now, 200);
    mc_read_begin();
    const void *data;
    assert_int_equal(mc_cached_call_borrow(fn, a, 1, &data, &n), 0);
    assert_memory_equal(data, "1:2", 3);
    mc_read_end();
    wait_finished(fn, 4);
    assert_int_equal(stats(fn).refreshes, 3);
    mc_cached_destroy(fn);
}

/* A function with only a batch loader refreshes through it: the reload is a batch of the one
 * key (there is no single-key loader to call). */
static int db_batch_loader(void *self, const mc_arg *keys, size_t nkeys, size_t nargs, mc_load *batch)
{
    for (size_t i = 0; i < nkeys; i++) {
        int rc = db_loader(self, &keys[i * nargs], nargs, mc_load_item(batch, i));
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void test_refresh_batch_loader_only(void **state)
{
    (void)state;
    db_t db;
    db_init(&db);
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = "test.refresh.batch";
    o.max_entries = 100;
    o.clock = fake_clock;
    o.refresh_after_ns = 100;
    o.batch_loader = db_batch_loader;
    mc_cached *fn = NULL;
    assert_int_equal(mc_cached_create(&o, NULL, &db, &fn), 0);
    mc_arg k[] = {MC_ARG_I(7)};
    mc_value *v[1];
    int rcs[1];
    assert_int_equal(mc_cached_call_many(fn, k, 1, 1, v, rcs), 0);
    assert_int_equal(rcs[0], 0);
    assert_memory_equal(mc_value_data(v[0]), "7:0", 3);
    mc_value_release(v[0]);
    atomic_fetch_add(&fake_now, 100);
    atomic_store(&db.version, 1);
    assert_int_equal(mc_cached_call_many(fn, k, 1, 1, v, rcs), 0); /* claims the refresh */
    assert_int_equal(rcs[0], 0);
    assert_memory_equal(mc_value_data(v[0]), "7:0", 3); /* the old value, at once */
    mc_value_release(v[0]);
    wait_finished(fn, 2);
    assert_int_equal(stats(fn).refreshes, 1);
    assert_int_equal(stats(fn).refresh_errors, 0);
    assert_int_equal(mc_cached_call_many(fn, k, 1, 1, v, rcs), 0);
    assert_memory_equal(mc_value_data(v[0]), "7:1", 3); /* replaced by the batch reload */
    mc_value_release(v[0]);
    assert_int_equal(atomic_load(&db.calls), 2);
    mc_cached_destroy(fn);
}

/* A reload whose result the cache refuses (heavier than the bound) is a failed refresh: the
 * old value stays, the failure is counted, and the claim is given back, so that a later hit
 * starts another reload. */
static atomic_int heavy_from; /* versions from this one weigh more than the bound */

static int heavy_loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    db_t *db = self;
    int version = atomic_load(&db->version);
    int rc = db_loader(self, args, nargs, load);
    if (rc == 0 && version >= atomic_load(&heavy_from))
        mc_load_set_weight(load, 1000);
    return rc;
}

static void test_refresh_refused_gives_claim_back(void **state)
{
    (void)state;
    db_t db;
    db_init(&db);
    atomic_store(&heavy_from, 1);
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = "test.refresh.heavy";
    o.max_entries = 100; /* elements: a result of 1000 cannot be stored */
    o.iterable = true;
    o.clock = fake_clock;
    o.refresh_after_ns = 100;
    mc_cached *fn = NULL;
    assert_int_equal(mc_cached_create(&o, heavy_loader, &db, &fn), 0);
    char buf[32];
    assert_int_equal(call(fn, 1, buf), 0);
    assert_string_equal(buf, "1:0");
    atomic_fetch_add(&fake_now, 100);
    atomic_store(&db.version, 1);
    assert_int_equal(call(fn, 1, buf), 0); /* claims a refresh, whose result is too heavy */
    assert_string_equal(buf, "1:0");
    wait_finished(fn, 2);
    assert_int_equal(stats(fn).refreshes, 1);
    assert_int_equal(stats(fn).refresh_errors, 1);
    assert_int_equal(call(fn, 1, buf), 0); /* the old value still, and a new claim */
    assert_string_equal(buf, "1:0");
    wait_finished(fn, 3);
    assert_int_equal(stats(fn).refreshes, 2);
    assert_int_equal(stats(fn).refresh_errors, 2);
    atomic_store(&heavy_from, 99); /* light again: the next reload replaces the entry */
    assert_int_equal(call(fn, 1, buf), 0);
    wait_finished(fn, 4);
    assert_int_equal(stats(fn).refreshes, 3);
    assert_int_equal(call(fn, 1, buf), 0);
    assert_string_equal(buf, "1:1");
    mc_cached_destroy(fn);
}

/* Calls that miss while a refresh runs join it (single flight). */
static void test_refresh_single_flight(void **state)
{
    (void)state;
    db_t db;
    db_init(&db);
    mc_cached *fn = make_fn(&db, 50, 100, 0);
    char buf[32];
    assert_int_equal(call(fn, 1, buf), 0);
    atomic_fetch_add(&fake_now, 60);
    atomic_store(&db.version, 1);
    db_gate(&db, true);
    assert_int_equal(call(fn, 1, buf), 0); /* claims the refresh, served the old value */
    assert_string_equal(buf, "1:0");
    db_wait_held(&db, 1);
    /* The entry expires while the reload is held: a caller now misses and joins the reload
     * rather than starting a second load of the key. */
    atomic_fetch_add(&fake_now, 50);
    caller_arg c = {fn, 1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, timed_call, &c), 0);
    for (int i = 0; i < 100000 && stats(fn).joined < 1; i++)
        usleep(100);
    mc_cached_stats st = stats(fn);
    assert_int_equal(st.joined, 1);
    assert_int_equal(st.loads, 2);
    db_gate(&db, false);
    pthread_join(t, NULL);
    assert_int_equal(c.base, 0);
    assert_int_equal(call(fn, 1, buf), 0);
    assert_string_equal(buf, "1:1");
    st = stats(fn);
    assert_int_equal(st.refreshes, 1);
    assert_int_equal(st.loads, 2);
    assert_int_equal(atomic_load(&db.calls), 2);
    mc_cached_destroy(fn);
}

/* An invalidation during the reload wins: the reload's result is not stored, and the next
 * call loads afresh. */
static void test_refresh_invalidation_wins(void **state)
{
    (void)state;
    db_t db;
    db_init(&db);
    mc_cached *fn = make_fn(&db, 100, 0, 0);
    char buf[32];
    assert_int_equal(call(fn, 1, buf), 0);
    atomic_fetch_add(&fake_now, 150);
    atomic_store(&db.version, 1);
    db_gate(&db, true);
    assert_int_equal(call(fn, 1, buf), 0);
    assert_string_equal(buf, "1:0");
    db_wait_held(&db, 1); /* the reload read version 1 and is held */
    mc_arg a[] = {MC_ARG_I(1)};
    assert_int_equal(mc_cached_invalidate(fn, a, 1), 0);
    atomic_store(&db.version, 2);
    db_gate(&db, false);
    wait_finished(fn, 2);
    mc_cached_stats st = stats(fn);
    assert_int_equal(st.cancelled_fills, 1);
    assert_int_equal(st.cache.entries, 0);
    assert_int_equal(st.refresh_errors, 0);
    assert_int_equal(call(fn, 1, buf), 0);
    assert_string_equal(buf, "1:2");
    assert_int_equal(atomic_load(&db.calls), 3);
    mc_cached_destroy(fn);
}

/* A failed reload keeps the old value, is counted, and a later hit tries again. */
static void test_refresh_failure_keeps_old_value(void **state)
{
    (void)state;
    db_t db;
    db_init(&db);
    mc_cached *fn = make_fn(&db, 100, 0, 0);
    char buf[32];
    assert_int_equal(call(fn, 1, buf), 0);
    atomic_fetch_add(&fake_now, 150);
    atomic_store(&db.fail_with, MC_EIO);
    assert_int_equal(call(fn, 1, buf), 0);
    assert_string_equal(buf, "1:0");
    wait_finished(fn, 2);
    mc_cached_stats st = stats(fn);
    assert_int_equal(st.refreshes, 1);
    assert_int_equal(st.refresh_errors, 1);
    assert_int_equal(st.load_errors, 1);
    assert_int_equal(st.cache.entries, 1);
    /* Still served, and the next hit starts another reload, which succeeds. */
    atomic_store(&db.fail_with, 0);
    atomic_store(&db.version, 1);
    assert_int_equal(call(fn, 1, buf), 0);
    assert_string_equal(buf, "1:0");
    wait_finished(fn, 3);
    assert_int_equal(stats(fn).refreshes, 2);
    assert_int_equal(call(fn, 1, buf), 0);
    assert_string_equal(buf, "1:1");
    assert_int_equal(stats(fn).refresh_errors, 1);
    mc_cached_destroy(fn);
}

/* Destroying a function while its refresh runs waits for the reload. */

static void test_destroy_during_refresh(void **state)
{
    (void)state;
    db_t db;
    db_init(&db);
    mc_cached *fn = make_fn(&db, 100, 0, 0);
    char buf[32];
    assert_int_equal(call(fn, 1, buf), 0);
    atomic_fetch_add(&fake_now, 150);
    db_gate(&db, true);
    assert_int_equal(call(fn, 1, buf), 0);
    db_wait_held(&db, 1);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, open_gate_later, &db), 0);
    mc_cached_destroy(fn); /* returns once the reload is over */
    pthread_mutex_lock(&db.lock);
    assert_int_equal(db.held, 0);
    pthread_mutex_unlock(&db.lock);
    pthread_join(t, NULL);
}

/* ---- write age ---- */

/* An entry older than expire_after_write is never served: the call loads, blocking. */
/* A refresh whose reload brings back the same bytes keeps the entry (the callback contract's
 * identical-value rule) but restarts its write age: it does not expire at the old entry's
 * expire_after_write, and the next refresh comes refresh_after after the reload. */
static void test_identical_refresh_restarts_write_age(void **state)
{
    (void)state;
    db_t db;
    db_init(&db);
    mc_cached *fn = make_fn(&db, 100, 250, 0);
    char buf[32];
    assert_int_equal(call(fn, 1, buf), 0); /* stored at t0, version 0 */
    assert_string_equal(buf, "1:0");
    atomic_fetch_add(&fake_now, 150); /* past refresh_after: one reload, same bytes */
    assert_int_equal(call(fn, 1, buf), 0);
    wait_finished(fn, 2);
    assert_int_equal(stats(fn).refreshes, 1);
    atomic_fetch_add(&fake_now, 150); /* t0 + 300: past the first store's expiry, not the reload's */
    assert_int_equal(call(fn, 1, buf), 0);
    assert_string_equal(buf, "1:0");
    mc_cached_stats st = stats(fn);
    assert_int_equal(st.expiries, 0);
    assert_int_equal(st.refreshes, 2); /* the reload was 150 ago: refreshed again */
    wait_finished(fn, 3);
    assert_int_equal(atomic_load(&db.calls), 3);
    mc_cached_destroy(fn);
}

static void test_expire_after_write_blocks(void **state)
{
    (void)state;
    db_t db;
    db_init(&db);
    mc_cached *fn = make_fn(&db, 0, 100, 0);
    char buf[32];
    assert_int_equal(call(fn, 1, buf), 0);
    atomic_fetch_add(&fake_now, 99);
    atomic_store(&db.version, 1);
    assert_int_equal(call(fn, 1, buf), 0);
    assert_string_equal(buf, "1:0"); /* reads do not extend it, but it is not old yet */
    atomic_fetch_add(&fake_now, 1);
    assert_int_equal(call(fn, 1, buf), 0);
    assert_string_equal(buf, "1:1"); /* loaded on this call */
    mc_cached_stats st = stats(fn);
    assert_int_equal(st.expiries, 1);
    assert_int_equal(st.loads, 2);
    assert_int_equal(st.refreshes, 0);
    /* The loader ran on the caller's thread: a blocking load, not a background one. */
    assert_true(pthread_equal(db.last_thread, pthread_self()));
    /* Reading often does not keep an entry alive (write age, not idle time). */
    for (int i = 0; i < 10; i++) {
        atomic_fetch_add(&fake_now, 20);
        assert_int_equal(call(fn, 1, buf), 0);
    }
    assert_int_equal(stats(fn).loads, 4); /* expired at +100 and +200 */
    /* With refresh too: refreshed entries never reach the expiry while they are read. */
    mc_cached_destroy(fn);
    fn = make_fn(&db, 50, 100, 0);
    assert_int_equal(call(fn, 1, buf), 0);
    for (int i = 0; i < 20; i++) {
        atomic_fetch_add(&fake_now, 30);
        assert_int_equal(call(fn, 1, buf), 0);
        wait_finished(fn, stats(fn).loads);
    }
    assert_int_equal(stats(fn).expiries, 0);
    assert_true(stats(fn).refreshes >= 5);
    mc_cached_destroy(fn);
}

/* "No value" results live none_ttl: a missing row is looked up again sooner than a value. */
static void test_none_ttl(void **state)
{
    (void)state;
    db_t db;
    db_init(&db);
    db.none_for = 7;
    mc_cached *fn = make_fn(&db, 0, 1000, 50);
    char buf[32];
    mc_arg a[] = {MC_ARG_I(7)};
    mc_value *v;
    assert_int_equal(mc_cached_call(fn, a, 1, &v), 0);
    assert_true(mc_value_is_none(v));
    mc_value_release(v);
    assert_int_equal(call(fn, 1, buf), 0);
    atomic_fetch_add(&fake_now, 49);
    assert_int_equal(mc_cached_call(fn, a, 1, &v), 0);
    mc_value_release(v);
    assert_int_equal(stats(fn).loads, 2);
    atomic_fetch_add(&fake_now, 1);
    assert_int_equal(mc_cached_call(fn, a, 1, &v), 0); /* looked up again */
    mc_value_release(v);
    assert_int_equal(call(fn, 1, buf), 0); /* the value still lives */
    mc_cached_stats st = stats(fn);
    assert_int_equal(st.loads, 3);
    assert_int_equal(st.expiries, 1);
    /* Alone (no expire_after_write), none_ttl limits only "no value". */
    mc_cached_destroy(fn);
    fn = make_fn(&db, 0, 0, 50);
    assert_int_equal(call(fn, 1, buf), 0);
    assert_int_equal(mc_cached_call(fn, a, 1, &v), 0);
    mc_value_release(v);
    atomic_fetch_add(&fake_now, 10000);
    assert_int_equal(call(fn, 1, buf), 0);
    assert_int_equal(mc_cached_call(fn, a, 1, &v), 0);
    mc_value_release(v);
    assert_int_equal(stats(fn).loads, 3);
    mc_cached_destroy(fn);
}

/* A registry's per-function timings replace the options' for that name only. */
static void test_registry_timings(void **state)
{
    (void)state;
    mc_cache_timing t[] = {{.name = "test.timed", .expire_after_write_ns = 100}};
    mc_cache_config cfg;
    mc_cache_config_init(&cfg);
    cfg.timings = t;
    cfg.n_timings = 1;
    mc_registry *reg;
    assert_int_equal(mc_registry_create(&cfg, &reg), 0);
    t[0].name = "changed after create"; /* copied */
    db_t db;
    db_init(&db);
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.max_entries = 10;
    o.clock = fake_clock;
    o.registry = reg;
    o.name = "test.timed";
    o.expire_after_write_ns = 1000000; /* replaced by the config's 100 */
    mc_cached *timed, *plain;
    assert_int_equal(mc_cached_create(&o, db_loader, &db, &timed), 0);
    o.name = "test.plain";
    assert_int_equal(mc_cached_create(&o, db_loader, &db, &plain), 0);
    char buf[32];
    assert_int_equal(call(timed, 1, buf), 0);
    assert_int_equal(call(plain, 1, buf), 0);
    atomic_fetch_add(&fake_now, 100);
    assert_int_equal(call(timed, 1, buf), 0);
    assert_int_equal(call(plain, 1, buf), 0);
    assert_int_equal(stats(timed).expiries, 1);
    assert_int_equal(stats(plain).expiries, 0);
    mc_cached_destroy(timed);
    mc_cached_destroy(plain);
    mc_registry_destroy(reg);
    cfg.timings = NULL;
    assert_int_equal(mc_registry_create(&cfg, &reg), MC_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_sizing_no_thread_per_load),
        cmocka_unit_test(test_destroy_with_queued_loads),
        cmocka_unit_test(test_cancel_queued_timer_fire),
        cmocka_unit_test(test_refresh_serves_old_and_reloads_once),
        cmocka_unit_test(test_refresh_batch_loader_only),
        cmocka_unit_test(test_refresh_refused_gives_claim_back),
        cmocka_unit_test(test_refresh_single_flight),
        cmocka_unit_test(test_refresh_invalidation_wins),
        cmocka_unit_test(test_refresh_failure_keeps_old_value),
        cmocka_unit_test(test_destroy_during_refresh),
        cmocka_unit_test(test_identical_refresh_restarts_write_age),
        cmocka_unit_test(test_expire_after_write_blocks),
        cmocka_unit_test(test_none_ttl),
        cmocka_unit_test(test_registry_timings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
