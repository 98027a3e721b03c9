/* Tests of the invalidation callback contract of memoized functions (cached.h): exactly once in
 * every path, duplicates collapsed, identical values no replacement; the callback forms of
 * async, batch and prefill calls; dependencies recorded through the load (mc_load_call). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "cached/cached_internal.h"
#include "modcache.h"

/* ---- closures that count and free themselves ---- */

/* Every closure made and every callback run: a closure freed twice or never is caught by
 * AddressSanitizer, and made == ran by the counters. */
static atomic_int made, ran;

typedef struct {
    atomic_int *runs; /* optional: this closure's own count */
    int tag;
} closure;

static closure *closure_new(atomic_int *runs)
{
    closure *c = malloc(sizeof *c);
    assert_non_null(c);
    c->runs = runs;
    c->tag = 0;
    atomic_fetch_add(&made, 1);
    return c;
}

static void closure_cb(void *ud)
{
    closure *c = ud;
    if (c->runs)
        atomic_fetch_add(c->runs, 1);
    atomic_fetch_add(&ran, 1);
    free(c);
}

/* A callback with user data that is not freed (for duplicates). */
static void count_cb(void *ud) { atomic_fetch_add((atomic_int *)ud, 1); }

static void all_ran(void) { assert_int_equal(atomic_load(&made), atomic_load(&ran)); }

/* ---- a loader: "<key>:<version>", or an error, or "no value" ---- */

typedef struct {
    atomic_int loads;
    atomic_int version;
    int fail_with;
    int none_for;
    /* Hold loads until `open` (timeouts). */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool hold, open;
} db_t;

#define DB_INIT {0, 0, 0, -1, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false}

static int db_loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    db_t *db = self;
    (void)nargs;
    atomic_fetch_add(&db->loads, 1);
    pthread_mutex_lock(&db->mu);
    while (db->hold && !db->open)
        pthread_cond_wait(&db->cv, &db->mu);
    pthread_mutex_unlock(&db->mu);
    if (db->fail_with)
        return db->fail_with;
    if (args[0].type == MC_ARG_INT && args[0].v.i == db->none_for)
        return mc_load_set_none(load);
    char buf[64];
    int n = snprintf(buf, sizeof buf, "%lld:%d", (long long)args[0].v.i, atomic_load(&db->version));
    return mc_load_set_copy(load, buf, (size_t)n);
}

static int db_batch(void *self, const mc_arg *keys, size_t nkeys, size_t nargs, mc_load *load)
{
    db_t *db = self;
    for (size_t i = 0; i < nkeys; i++) {
        atomic_fetch_add(&db->loads, 1);
        char buf[64];
        int n = snprintf(buf, sizeof buf, "%lld:%d", (long long)keys[i * nargs].v.i, atomic_load(&db->version));
        int rc = mc_load_set_copy(mc_load_item(load, i), buf, (size_t)n);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static mc_cached *make_fn(db_t *db, size_t max_entries, bool tree)
{
    mc_cached *fn = NULL;
    assert_int_equal(mc_cached_create(&MC_CACHED_OPTS(NULL, max_entries, .tree = tree, .batch_loader = db_batch),
                                      db_loader, db, &fn),
                     0);
    return fn;
}

static bool has(mc_cached *fn, const mc_arg *key, size_t n)
{
    unsigned char kb[MC_KEY_MAX];
    size_t kl;
    assert_int_equal(mc_key_encode(key, n, kb, sizeof kb, &kl), 0);
    mc_value *v = NULL;
    bool found = mc_cache_get(mc_cached_cache(fn), kb, kl, &v) == 0;
    if (found)
        mc_value_release(v);
    return found;
}

static bool has_i(mc_cached *fn, int64_t k) { return has(fn, (const mc_arg[]){MC_ARG_I(k)}, 1); }

static void call_ex_ok(mc_cached *fn, int64_t k, mc_invalidate_fn cb, void *ud)
{
    mc_value *v = NULL;
    assert_int_equal(mc_cached_call_ex(fn, (const mc_arg[]){MC_ARG_I(k)}, 1, cb, ud, &v), 0);
    mc_value_release(v);
}

static uint64_t replaced_of(mc_cached *fn)
{
    mc_cache_stats st;
    mc_cache_stats_get(mc_cached_cache(fn), &st);
    return st.evictions[MC_EVICT_REPLACED];
}

/* ---- exactly once, whatever happens ---- */

static void test_runs_once_on_errors(void **state)
{
    (void)state;
    db_t db = DB_INIT;
    mc_cached *fn = make_fn(&db, 10, false);
    atomic_int n = 0;
    mc_value *v = (mc_value *)&n;

    /* The load fails: the callback runs before the call returns, *out NULL. */
    db.fail_with = MC_EIO;
    assert_int_equal(mc_cached_call_ex(fn, (const mc_arg[]){MC_ARG_I(1)}, 1, closure_cb, closure_new(&n), &v),
                     MC_EIO);
    assert_null(v);
    assert_int_equal(atomic_load(&n), 1);
    db.fail_with = 0;

    /* Refused arguments: too few for the key, a key over MC_KEY_MAX, no function. */
    mc_cached *keyed;
    assert_int_equal(mc_cached_create(&MC_CACHED_OPTS(NULL, 10, .num_args = 2), db_loader, &db, &keyed), 0);
    assert_int_equal(mc_cached_call_ex(keyed, (const mc_arg[]){MC_ARG_I(1)}, 1, closure_cb, closure_new(&n), &v),
                     MC_EINVAL);
    static char big[MC_KEY_MAX + 10];
    memset(big, 'x', sizeof big - 1);
    assert_int_equal(mc_cached_call_ex(fn, (const mc_arg[]){MC_ARG_S(big)}, 1, closure_cb, closure_new(&n), &v),
                     MC_E2BIG);
    assert_int_equal(mc_cached_call_ex(NULL, (const mc_arg[]){MC_ARG_I(1)}, 1, closure_cb, closure_new(&n), &v),
                     MC_EINVAL);
    assert_int_equal(atomic_load(&n), 4);
    assert_int_equal(atomic_load(&db.loads), 1);

    /* "No value" is stored like a value: attached, runs when it goes. */
    db.none_for = 3;
    call_ex_ok(fn, 3, closure_cb, closure_new(&n));
    assert_int_equal(atomic_load(&n), 4);
    assert_int_equal(mc_cached_invalidate(fn, (const mc_arg[]){MC_ARG_I(3)}, 1), 0);
    assert_int_equal(atomic_load(&n), 5);
    mc_cached_destroy(keyed);
    mc_cached_destroy(fn);
    all_ran();
}

static void test_runs_once_on_timeout(void **state)
{
    (void)state;
    db_t db = DB_INIT;
    db.hold = true;
    mc_cached *fn;
    assert_int_equal(mc_cached_create(&MC_CACHED_OPTS(NULL, 10, .load_timeout_ns = 20 * 1000000ull), db_loader,
                                      &db, &fn),
                     0);
    atomic_int n = 0;
    mc_value *v;
    assert_int_equal(mc_cached_call_ex(fn, (const mc_arg[]){MC_ARG_I(1)}, 1, closure_cb, closure_new(&n), &v),
                     MC_ETIMEDOUT);
    assert_int_equal(atomic_load(&n), 1); /* ran before the call returned */
    pthread_mutex_lock(&db.mu);
    db.open = true;
    pthread_cond_broadcast(&db.cv);
    pthread_mutex_unlock(&db.mu);
    mc_cached_destroy(fn); /* waits for the load; nothing else runs */
    assert_int_equal(atomic_load(&n), 1);
    all_ran();
}

/* Every way an entry leaves: key, prefix, all, eviction, replacement, the registry by name,
 * destruction. Each callback runs once, when its entry goes and not before. */
static void test_runs_once_when_entry_goes(void **state)
{
    (void)state;
    db_t db = DB_INIT;
    mc_registry *reg;
    assert_int_equal(mc_registry_create(NULL, &reg), 0);
    mc_cached *fn;
    assert_int_equal(mc_cached_create(&MC_CACHED_OPTS("cb.tree", 4, .tree = true, .registry = reg), db_loader,
                                      &db, &fn),
                     0);
    atomic_int n[8] = {0};
    mc_value *v;
    mc_arg k12[] = {MC_ARG_I(1), MC_ARG_I(2)}, k13[] = {MC_ARG_I(1), MC_ARG_I(3)}, k4[] = {MC_ARG_I(4), MC_ARG_I(0)};
    assert_int_equal(mc_cached_call_ex(fn, k12, 2, closure_cb, closure_new(&n[0]), &v), 0);
    mc_value_release(v);
    assert_int_equal(mc_cached_call_ex(fn, k13, 2, closure_cb, closure_new(&n[1]), &v), 0);
    mc_value_release(v);
    assert_int_equal(mc_cached_call_ex(fn, k4, 2, closure_cb, closure_new(&n[2]), &v), 0);
    mc_value_release(v);
    assert_int_equal(atomic_load(&n[0]) + atomic_load(&n[1]) + atomic_load(&n[2]), 0);
    assert_int_equal(mc_cached_invalidate_prefix(fn, k12, 1, NULL), 0); /* (1, *) */
    assert_int_equal(atomic_load(&n[0]), 1);
    assert_int_equal(atomic_load(&n[1]), 1);
    assert_int_equal(atomic_load(&n[2]), 0);
    /* By name through the registry, keys in JSON (the admin API's and the bus's path). */
    const char *json[] = {"[4, 0]"};
    assert_int_equal(mc_registry_invalidate(reg, "cb.tree", json, 1, NULL), 0);
    assert_int_equal(atomic_load(&n[2]), 1);
    /* Replaced by a different value. */
    assert_int_equal(mc_cached_call_ex(fn, k12, 2, closure_cb, closure_new(&n[3]), &v), 0);
    mc_value_release(v);
    assert_int_equal(mc_cached_prefill(fn, k12, 2, "other", 5), 0);
    assert_int_equal(atomic_load(&n[3]), 1);
    /* Evicted by size (4 entries). */
    assert_int_equal(mc_cached_call_ex(fn, k13, 2, closure_cb, closure_new(&n[4]), &v), 0);
    mc_value_release(v);
    for (int64_t i = 10; i < 16; i++) {
        assert_int_equal(MC_CACHED_CALL(fn, &v, MC_ARG_I(i), MC_ARG_I(0)), 0);
        mc_value_release(v);
    }
    assert_int_equal(atomic_load(&n[4]), 1);
    /* All, then destruction. */
    assert_int_equal(mc_cached_call_ex(fn, k13, 2, closure_cb, closure_new(&n[5]), &v), 0);
    mc_value_release(v);
    mc_cached_invalidate_all(fn);
    assert_int_equal(atomic_load(&n[5]), 1);
    assert_int_equal(mc_cached_call_ex(fn, k13, 2, closure_cb, closure_new(&n[6]), &v), 0);
    mc_value_release(v);
    mc_cached_destroy(fn);
    assert_int_equal(atomic_load(&n[6]), 1);
    mc_registry_destroy(reg);
    for (int i = 0; i < 7; i++)
        assert_int_equal(atomic_load(&n[i]), 1);
    all_ran();
}

/* ---- duplicates collapse ---- */

static void test_duplicates_collapse(void **state)
{
    (void)state;
    db_t db = DB_INIT;
    mc_cached *fn = make_fn(&db, 10, false);
    atomic_int same = 0, other = 0, two_keys = 0;
    call_ex_ok(fn, 1, count_cb, &same); /* the miss */
    call_ex_ok(fn, 1, count_cb, &same); /* hits: the same pair on the same entry */
    call_ex_ok(fn, 1, count_cb, &same);
    call_ex_ok(fn, 1, count_cb, &other); /* other user data: its own attachment */
    call_ex_ok(fn, 1, closure_cb, closure_new(NULL)); /* another function: its own */
    call_ex_ok(fn, 2, count_cb, &two_keys);
    call_ex_ok(fn, 3, count_cb, &two_keys); /* another entry: its own */
    assert_int_equal(atomic_load(&fn->n_attached), 5);
    assert_int_equal(mc_cached_invalidate(fn, (const mc_arg[]){MC_ARG_I(1)}, 1), 0);
    assert_int_equal(atomic_load(&same), 1);
    assert_int_equal(atomic_load(&other), 1);
    /* A new entry of the key is a new attachment for the same pair. */
    call_ex_ok(fn, 1, count_cb, &same);
    mc_cached_invalidate_all(fn);
    assert_int_equal(atomic_load(&same), 2);
    assert_int_equal(atomic_load(&two_keys), 2);
    /* A batch naming a key twice with the same user data: one attachment. */
    atomic_int batch = 0;
    mc_arg keys[] = {MC_ARG_I(5), MC_ARG_I(5), MC_ARG_I(6)};
    void *uds[] = {&batch, &batch, &batch};
    mc_value *vals[3];
    int rcs[3];
    assert_int_equal(mc_cached_call_many_ex(fn, keys, 3, 1, count_cb, uds, vals, rcs), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(rcs[i], 0);
        mc_value_release(vals[i]);
    }
    mc_cached_invalidate_all(fn);
    assert_int_equal(atomic_load(&batch), 2); /* keys 5 and 6 */
    mc_cached_destroy(fn);
    all_ran();
}

/* ---- an identical value is not a replacement ---- */

static void test_identical_prefill_keeps_entry(void **state)
{
    (void)state;
    db_t db = DB_INIT;
    mc_cached *fn = make_fn(&db, 10, false);
    atomic_int n = 0;
    mc_arg k[] = {MC_ARG_I(1)};
    call_ex_ok(fn, 1, count_cb, &n); /* "1:0" */
    assert_int_equal(mc_cached_prefill(fn, k, 1, "1:0", 3), 0);
    assert_int_equal(atomic_load(&n), 0);
    assert_int_equal(replaced_of(fn), 0);
    mc_prefill_options po;
    mc_prefill_options_init(&po);
    po.on_invalidate = count_cb;
    po.ud = &n; /* the same pair again, through prefill: collapses */
    assert_int_equal(mc_cached_prefill_ex(fn, k, 1, "1:0", 3, &po), 0);
    assert_int_equal(atomic_load(&fn->n_attached), 1);
    /* A different value replaces, and fires. */
    assert_int_equal(mc_cached_prefill(fn, k, 1, "1:1", 3), 0);
    assert_int_equal(atomic_load(&n), 1);
    assert_int_equal(replaced_of(fn), 1);
    /* "No value" and an empty value differ. */
    call_ex_ok(fn, 2, count_cb, &n);
    po.on_invalidate = NULL;
    po.none = true;
    assert_int_equal(mc_cached_prefill_ex(fn, (const mc_arg[]){MC_ARG_I(2)}, 1, NULL, 0, &po), 0);
    assert_int_equal(atomic_load(&n), 2);
    assert_int_equal(mc_cached_prefill(fn, (const mc_arg[]){MC_ARG_I(2)}, 1, NULL, 0), 0);
    assert_int_equal(replaced_of(fn), 3);
    mc_cached_destroy(fn);
}

/* A load whose result is identical to the entry stored meanwhile (by another writer, here
 * the test hook between the loader and the store) keeps that entry and its callbacks. */
static mc_cached *hook_fn;
static const char *hook_value;
static atomic_int hook_runs;

static void store_hook(mc_cached *fn, int point, mc_load *load)
{
    (void)load;
    if (fn != hook_fn || point != MC__HOOK_BEFORE_STORE || !hook_value)
        return;
    unsigned char kb[MC_KEY_MAX];
    size_t kl;
    assert_int_equal(mc_key_encode((const mc_arg[]){MC_ARG_I(7)}, 1, kb, sizeof kb, &kl), 0);
    assert_int_equal(mc_cache_put(mc_cached_cache(fn), kb, kl, hook_value, strlen(hook_value)), 0);
    call_ex_ok(fn, 7, count_cb, &hook_runs); /* a hit on that entry */
}

static void test_identical_load_keeps_entry(void **state)
{
    (void)state;
    db_t db = DB_INIT;
    mc_cached *fn = make_fn(&db, 10, false);
    hook_fn = fn;
    mc__cached_test_hook = store_hook;
    mc_value *v;
    hook_value = "7:0"; /* what the loader returns */
    assert_int_equal(MC_CACHED_CALL(fn, &v, MC_ARG_I(7)), 0);
    assert_memory_equal(mc_value_data(v), "7:0", 3);
    assert_int_equal(atomic_load(&hook_runs), 0);
    assert_int_equal(replaced_of(fn), 0);
    /* The caller got the entry that stayed, so its callbacks are the ones attached. */
    size_t kl;
    const void *key = mc_value_key(v, &kl);
    mc_value *now;
    assert_int_equal(mc_cache_get(mc_cached_cache(fn), key, kl, &now), 0);
    assert_ptr_equal(now, v);
    mc_value_release(now);
    mc_value_release(v);
    /* A different value stored meanwhile is replaced by the load: its callback runs. */
    mc_cached_invalidate_all(fn);
    assert_int_equal(atomic_load(&hook_runs), 1);
    hook_value = "7:old";
    assert_int_equal(MC_CACHED_CALL(fn, &v, MC_ARG_I(7)), 0);
    mc_value_release(v);
    assert_int_equal(atomic_load(&hook_runs), 2);
    mc__cached_test_hook = NULL;
    hook_value = NULL;
    mc_cached_destroy(fn);
}

/* ---- async, batch, prefill ---- */

typedef struct {
    atomic_int *cb_runs;
    int cb_runs_at_done; /* the callback count when done ran */
    int rc;
    atomic_int done;
} async_result;

static void on_done(void *ud, int rc, mc_value *v)
{
    async_result *r = ud;
    r->cb_runs_at_done = atomic_load(r->cb_runs);
    r->rc = rc;
    if (v)
        mc_value_release(v);
    atomic_store(&r->done, 1);
}

static void test_async_ex(void **state)
{
    (void)state;
    db_t db = DB_INIT;
    mc_cached *fn = make_fn(&db, 10, false);
    atomic_int n = 0;
    async_result r = {&n, -1, -1, 0};
    /* A miss (loaded on this thread), then a hit: both attached. */
    assert_int_equal(mc_cached_call_async_ex(fn, (const mc_arg[]){MC_ARG_I(1)}, 1, on_done, &r, closure_cb,
                                             closure_new(&n)),
                     0);
    assert_int_equal(atomic_load(&r.done), 1);
    assert_int_equal(r.rc, 0);
    async_result r2 = {&n, -1, -1, 0};
    assert_int_equal(mc_cached_call_async_ex(fn, (const mc_arg[]){MC_ARG_I(1)}, 1, on_done, &r2, closure_cb,
                                             closure_new(&n)),
                     0);
    assert_int_equal(r2.rc, 0);
    assert_int_equal(atomic_load(&n), 0);
    assert_int_equal(mc_cached_invalidate(fn, (const mc_arg[]){MC_ARG_I(1)}, 1), 0);
    assert_int_equal(atomic_load(&n), 2);
    /* A failed load: the callback runs before done. */
    db.fail_with = MC_EIO;
    async_result r3 = {&n, -1, -1, 0};
    assert_int_equal(mc_cached_call_async_ex(fn, (const mc_arg[]){MC_ARG_I(2)}, 1, on_done, &r3, closure_cb,
                                             closure_new(&n)),
                     0);
    assert_int_equal(r3.rc, MC_EIO);
    assert_int_equal(r3.cb_runs_at_done, 3);
    /* Refused (done not called): the callback runs before the call returns. */
    assert_int_equal(mc_cached_call_async_ex(fn, (const mc_arg[]){MC_ARG_I(2)}, 1, NULL, NULL, closure_cb,
                                             closure_new(&n)),
                     MC_EINVAL);
    assert_int_equal(atomic_load(&n), 4);
    mc_cached_destroy(fn);
    all_ran();
}

static void test_async_ex_timeout(void **state)
{
    (void)state;
    db_t db = DB_INIT;
    db.hold = true;
    mc_cached *fn;
    assert_int_equal(mc_cached_create(&MC_CACHED_OPTS(NULL, 10, .load_timeout_ns = 20 * 1000000ull), db_loader,
                                      &db, &fn),
                     0);
    atomic_int n = 0;
    async_result r = {&n, -1, -1, 0};
    assert_int_equal(mc_cached_call_async_ex(fn, (const mc_arg[]){MC_ARG_I(1)}, 1, on_done, &r, closure_cb,
                                             closure_new(&n)),
                     0);
    while (!atomic_load(&r.done))
        usleep(1000);
    assert_int_equal(r.rc, MC_ETIMEDOUT);
    assert_int_equal(r.cb_runs_at_done, 1);
    pthread_mutex_lock(&db.mu);
    db.open = true;
    pthread_cond_broadcast(&db.cv);
    pthread_mutex_unlock(&db.mu);
    mc_cached_destroy(fn);
    assert_int_equal(atomic_load(&n), 1);
    all_ran();
}

static void test_many_ex(void **state)
{
    (void)state;
    db_t db = DB_INIT;
    mc_cached *fn = make_fn(&db, 10, false);
    static char big[MC_KEY_MAX + 10];
    memset(big, 'x', sizeof big - 1);
    atomic_int n[4] = {0};
    mc_arg keys[] = {MC_ARG_I(1), MC_ARG_S(big), MC_ARG_I(2), MC_ARG_I(3)};
    void *uds[4];
    for (int i = 0; i < 4; i++)
        uds[i] = closure_new(&n[i]);
    mc_value *vals[4];
    int rcs[4];
    assert_int_equal(mc_cached_prefill(fn, (const mc_arg[]){MC_ARG_I(3)}, 1, "pre", 3), 0); /* a hit */
    assert_int_equal(mc_cached_call_many_ex(fn, keys, 4, 1, closure_cb, uds, vals, rcs), 0);
    assert_int_equal(rcs[1], MC_E2BIG);
    assert_null(vals[1]);
    assert_int_equal(atomic_load(&n[1]), 1); /* its key failed: ran before the return */
    for (int i = 0; i < 4; i++)
        if (i != 1) {
            assert_int_equal(rcs[i], 0);
            assert_int_equal(atomic_load(&n[i]), 0);
            mc_value_release(vals[i]);
        }
    assert_int_equal(mc_cached_invalidate(fn, (const mc_arg[]){MC_ARG_I(2)}, 1), 0);
    assert_int_equal(atomic_load(&n[2]), 1);
    mc_cached_invalidate_all(fn);
    for (int i = 0; i < 4; i++)
        assert_int_equal(atomic_load(&n[i]), 1);
    /* The whole call refused: every callback runs. */
    for (int i = 0; i < 4; i++)
        uds[i] = closure_new(NULL);
    assert_int_equal(mc_cached_call_many_ex(fn, keys, 4, 1, closure_cb, uds, NULL, rcs), MC_EINVAL);
    mc_cached_destroy(fn);
    all_ran();
}

static void test_prefill_ex(void **state)
{
    (void)state;
    mc_cached *fn;
    db_t db = DB_INIT;
    assert_int_equal(mc_cached_create(&MC_CACHED_OPTS(NULL, 10, .iterable = true), db_loader, &db, &fn), 0);
    mc_prefill_options po;
    mc_prefill_options_init(&po);
    atomic_int n = 0;
    po.weight = 4;
    assert_int_equal(mc_cached_prefill_ex(fn, (const mc_arg[]){MC_ARG_I(1)}, 1, "four", 4, &po), 0);
    po.weight = 5;
    po.on_invalidate = closure_cb;
    po.ud = closure_new(&n);
    assert_int_equal(mc_cached_prefill_ex(fn, (const mc_arg[]){MC_ARG_I(2)}, 1, "five", 4, &po), 0);
    mc_cache_stats st;
    mc_cache_stats_get(mc_cached_cache(fn), &st);
    assert_int_equal(st.weight, 9);
    po.weight = 2; /* 11 > 10: the oldest (1) goes */
    po.on_invalidate = NULL;
    assert_int_equal(mc_cached_prefill_ex(fn, (const mc_arg[]){MC_ARG_I(3)}, 1, "two", 3, &po), 0);
    mc_cache_stats_get(mc_cached_cache(fn), &st);
    assert_int_equal(st.weight, 7);
    assert_false(has_i(fn, 1));
    assert_true(has_i(fn, 2));
    /* Heavier than the whole bound: refused, and a callback given runs at once. */
    po.weight = 11;
    po.on_invalidate = closure_cb;
    po.ud = closure_new(&n);
    assert_int_equal(mc_cached_prefill_ex(fn, (const mc_arg[]){MC_ARG_I(4)}, 1, "big", 3, &po), MC_E2BIG);
    assert_int_equal(atomic_load(&n), 1);
    /* The prefilled entry serves calls; its callback runs when it goes. */
    mc_value *v;
    assert_int_equal(MC_CACHED_CALL(fn, &v, MC_ARG_I(2)), 0);
    assert_memory_equal(mc_value_data(v), "five", 4);
    mc_value_release(v);
    assert_int_equal(atomic_load(&db.loads), 0);
    assert_int_equal(mc_cached_invalidate(fn, (const mc_arg[]){MC_ARG_I(2)}, 1), 0);
    assert_int_equal(atomic_load(&n), 2);
    mc_cached_destroy(fn);
    /* A weight on a function that is not iterable is refused. */
    fn = make_fn(&db, 10, false);
    po.weight = 3;
    po.ud = closure_new(&n);
    assert_int_equal(mc_cached_prefill_ex(fn, (const mc_arg[]){MC_ARG_I(1)}, 1, "x", 1, &po), MC_EINVAL);
    assert_int_equal(atomic_load(&n), 3);
    assert_int_equal(mc_cached_prefill_ex(fn, (const mc_arg[]){MC_ARG_I(1)}, 1, "x", 1, NULL), 0);
    mc_cached_destroy(fn);
    all_ran();
}

/* ---- dependencies ---- */

/* F(k) = "F[" G(k) "," G(k + 100) "]", reading G through the load. */
typedef struct {
    mc_cached *g;
    atomic_int loads;
    bool batch_form;          /* read G with mc_load_call_many */
    mc_cached *invalidate_g;  /* invalidate G(k) inside the loader, after the read */
} f_state;

static int f_loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)nargs;
    f_state *f = self;
    atomic_fetch_add(&f->loads, 1);
    int64_t k = args[0].v.i;
    mc_arg keys[] = {MC_ARG_I(k), MC_ARG_I(k + 100)};
    mc_value *v[2] = {NULL, NULL};
    int rc;
    if (f->batch_form) {
        int rcs[2];
        rc = mc_load_call_many(load, f->g, keys, 2, 1, v, rcs);
        if (rc == 0 && (rcs[0] || rcs[1]))
            rc = rcs[0] ? rcs[0] : rcs[1];
    } else {
        rc = mc_load_call(load, f->g, &keys[0], 1, &v[0]);
        if (rc == 0)
            rc = mc_load_call(load, f->g, &keys[1], 1, &v[1]);
    }
    if (rc == 0 && f->invalidate_g)
        mc_cached_invalidate(f->invalidate_g, &keys[0], 1);
    char buf[128];
    int n = 0;
    if (rc == 0)
        n = snprintf(buf, sizeof buf, "F[%.*s,%.*s]", (int)mc_value_size(v[0]), (const char *)mc_value_data(v[0]),
                     (int)mc_value_size(v[1]), (const char *)mc_value_data(v[1]));
    for (int i = 0; i < 2; i++)
        if (v[i])
            mc_value_release(v[i]);
    return rc ? rc : mc_load_set_copy(load, buf, (size_t)n);
}

static void call_f(mc_cached *f, int64_t k, char *out, size_t cap)
{
    mc_value *v;
    assert_int_equal(MC_CACHED_CALL(f, &v, MC_ARG_I(k)), 0);
    snprintf(out, cap, "%.*s", (int)mc_value_size(v), (const char *)mc_value_data(v));
    mc_value_release(v);
}

static void dependency_paths(bool batch_form)
{
    db_t db = DB_INIT;
    mc_registry *reg;
    assert_int_equal(mc_registry_create(NULL, &reg), 0);
    mc_cached *g;
    assert_int_equal(mc_cached_create(&MC_CACHED_OPTS("dep.g", 1000, .tree = true, .batch_loader = db_batch,
                                                      .registry = reg),
                                      db_loader, &db, &g),
                     0);
    f_state fs = {.g = g, .batch_form = batch_form};
    mc_cached *f;
    assert_int_equal(mc_cached_create(&MC_CACHED_OPTS("dep.f", 1000), f_loader, &fs, &f), 0);
    char out[128];
    call_f(f, 1, out, sizeof out);
    assert_string_equal(out, "F[1:0,101:0]");
    call_f(f, 1, out, sizeof out);
    assert_int_equal(atomic_load(&fs.loads), 1);

    /* Each path that drops G's entry drops F's: by key (either dependency), ... */
    atomic_store(&db.version, 1);
    assert_int_equal(mc_cached_invalidate(g, (const mc_arg[]){MC_ARG_I(101)}, 1), 0);
    assert_false(has_i(f, 1));
    call_f(f, 1, out, sizeof out);
    assert_string_equal(out, "F[1:0,101:1]");
    /* ... by prefix (a subtree of the tree function), ... */
    size_t removed;
    assert_int_equal(mc_cached_invalidate_prefix(g, (const mc_arg[]){MC_ARG_I(1)}, 1, &removed), 0);
    assert_false(has_i(f, 1));
    call_f(f, 1, out, sizeof out);
    assert_string_equal(out, "F[1:1,101:1]");
    /* ... all of G, ... */
    atomic_store(&db.version, 2);
    mc_cached_invalidate_all(g);
    assert_false(has_i(f, 1));
    call_f(f, 1, out, sizeof out);
    assert_string_equal(out, "F[1:2,101:2]");
    /* ... by name through the registry (the admin API's and the bus's path), ... */
    const char *json[] = {"[1]"};
    assert_int_equal(mc_registry_invalidate(reg, "dep.g", json, 1, NULL), 0);
    assert_false(has_i(f, 1));
    call_f(f, 1, out, sizeof out);
    mc_invalidation inv = {.name = "dep.g", .all = true, .origin = MC_INVALIDATION_REMOTE};
    assert_int_equal(mc_registry_apply(reg, NULL, &inv, NULL, NULL), 0);
    assert_false(has_i(f, 1));
    call_f(f, 1, out, sizeof out);
    /* ... a different value replacing it (an identical one does not), ... */
    assert_int_equal(mc_cached_prefill(g, (const mc_arg[]){MC_ARG_I(1)}, 1, "1:2", 3), 0);
    assert_true(has_i(f, 1));
    assert_int_equal(mc_cached_prefill(g, (const mc_arg[]){MC_ARG_I(1)}, 1, "1:9", 3), 0);
    assert_false(has_i(f, 1));
    call_f(f, 1, out, sizeof out);
    assert_string_equal(out, "F[1:9,101:2]");
    /* ... and a reload of F reading the same entries records nothing new. */
    size_t attached = atomic_load(&g->n_attached);
    assert_int_equal(attached, 2);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(mc_cached_invalidate(f, (const mc_arg[]){MC_ARG_I(1)}, 1), 0);
        call_f(f, 1, out, sizeof out);
    }
    assert_int_equal(atomic_load(&g->n_attached), attached);
    int loads = atomic_load(&fs.loads);

    /* G's entry invalidated after it was read, before F's load stores: not stored, but its
     * caller gets it, and the next call loads afresh. */
    mc_cached_stats st0, st1;
    mc_cached_stats_get(f, &st0);
    fs.invalidate_g = g;
    call_f(f, 2, out, sizeof out);
    fs.invalidate_g = NULL;
    assert_string_equal(out, "F[2:2,102:2]");
    assert_false(has_i(f, 2));
    mc_cached_stats_get(f, &st1);
    assert_int_equal(st1.cancelled_fills, st0.cancelled_fills + 1);
    call_f(f, 2, out, sizeof out);
    assert_true(has_i(f, 2));
    assert_int_equal(atomic_load(&fs.loads), loads + 2);

    /* Refused: a batch shell, the load's own key (it would wait for itself), NULLs. */
    mc_value *v;
    assert_int_equal(mc_load_call(NULL, g, (const mc_arg[]){MC_ARG_I(1)}, 1, &v), MC_EINVAL);
    assert_null(v);
    assert_int_equal(mc_load_depends_on(NULL, g, NULL), MC_EINVAL);

    /* G destroyed first: F's dependent entries go with it. */
    assert_true(has_i(f, 1));
    mc_cached_destroy(g);
    assert_false(has_i(f, 1));
    assert_false(has_i(f, 2));
    mc_cached_destroy(f);
    mc_registry_destroy(reg);
}

static void test_dependencies(void **state)
{
    (void)state;
    dependency_paths(false);
    dependency_paths(true);
}

/* F destroyed first: the records left on G's entries do nothing when they fire (G's
 * invalidation, eviction, destruction), and are freed (AddressSanitizer checks both). */
static void test_dependency_outlives_function(void **state)
{
    (void)state;
    db_t db = DB_INIT;
    mc_cached *g = make_fn(&db, 4, false);
    f_state fs = {.g = g};
    mc_cached *f;
    assert_int_equal(mc_cached_create(&MC_CACHED_OPTS(NULL, 100), f_loader, &fs, &f), 0);
    char out[128];
    for (int64_t k = 0; k < 2; k++)
        call_f(f, k, out, sizeof out);
    assert_int_equal(atomic_load(&g->n_attached), 4);
    mc_cached_destroy(f);
    assert_int_equal(mc_cached_invalidate(g, (const mc_arg[]){MC_ARG_I(0)}, 1), 0);
    mc_value *v;
    for (int64_t k = 10; k < 13; k++) { /* evicts */
        assert_int_equal(MC_CACHED_CALL(g, &v, MC_ARG_I(k)), 0);
        mc_value_release(v);
    }
    mc_cached_destroy(g);
}

/* A batch loader records per item. */
typedef struct {
    mc_cached *g;
} fb_state;

static int fb_loader(void *self, const mc_arg *keys, size_t nkeys, size_t nargs, mc_load *load)
{
    fb_state *fb = self;
    for (size_t i = 0; i < nkeys; i++) {
        mc_load *item = mc_load_item(load, i);
        mc_value *v;
        assert_int_equal(mc_load_call(load, fb->g, &keys[i * nargs], 1, &v), MC_EINVAL); /* the shell */
        int rc = mc_load_call(item, fb->g, &keys[i * nargs], 1, &v);
        if (rc != 0)
            return rc;
        rc = mc_load_set_copy(item, mc_value_data(v), mc_value_size(v));
        mc_value_release(v);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void test_dependency_batch_items(void **state)
{
    (void)state;
    db_t db = DB_INIT;
    mc_cached *g = make_fn(&db, 100, false);
    fb_state fb = {g};
    mc_cached *f;
    assert_int_equal(mc_cached_create(&MC_CACHED_OPTS(NULL, 100, .batch_loader = fb_loader), NULL, &fb, &f), 0);
    mc_arg keys[] = {MC_ARG_I(1), MC_ARG_I(2), MC_ARG_I(3)};
    mc_value *vals[3];
    int rcs[3];
    assert_int_equal(mc_cached_call_many(f, keys, 3, 1, vals, rcs), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(rcs[i], 0);
        mc_value_release(vals[i]);
    }
    assert_true(has_i(f, 2));
    assert_int_equal(mc_cached_invalidate(g, (const mc_arg[]){MC_ARG_I(2)}, 1), 0);
    assert_false(has_i(f, 2));
    assert_true(has_i(f, 1));
    assert_true(has_i(f, 3));
    mc_cached_destroy(f);
    mc_cached_destroy(g);
}

/* mc_load_depends_on: a value read before, and a value that was never stored. */
typedef struct {
    mc_cached *g;
    bool g_detached; /* read G(k) from a load G invalidated meanwhile: never stored */
} fd_state;

static int fd_loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)nargs;
    fd_state *fd = self;
    mc_value *v;
    int rc = mc_cached_call(fd->g, args, 1, &v);
    if (rc != 0)
        return rc;
    rc = mc_load_depends_on(load, fd->g, v);
    assert_int_equal(mc_load_depends_on(load, fd->g, v), 0); /* again: nothing new */
    if (rc == 0)
        rc = mc_load_set_copy(load, mc_value_data(v), mc_value_size(v));
    mc_value_release(v);
    return rc;
}

static int g_self_invalidating(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)nargs;
    mc_cached **g = self;
    mc_cached_invalidate(*g, args, 1); /* this load's result is not stored */
    return mc_load_set_copy(load, "g", 1);
}

static void test_depends_on_value(void **state)
{
    (void)state;
    db_t db = DB_INIT;
    fd_state fd = {make_fn(&db, 100, false), false};
    mc_cached *f;
    assert_int_equal(mc_cached_create(&MC_CACHED_OPTS(NULL, 100), fd_loader, &fd, &f), 0);
    mc_value *v;
    assert_int_equal(MC_CACHED_CALL(f, &v, MC_ARG_I(1)), 0);
    mc_value_release(v);
    assert_true(has_i(f, 1));
    assert_int_equal(atomic_load(&fd.g->n_attached), 1);
    assert_int_equal(mc_cached_invalidate(fd.g, (const mc_arg[]){MC_ARG_I(1)}, 1), 0);
    assert_false(has_i(f, 1));
    mc_cached_destroy(f);
    mc_cached_destroy(fd.g);

    /* G's value was never stored: F's is not either. */
    mc_cached *g;
    assert_int_equal(mc_cached_create(&MC_CACHED_OPTS(NULL, 100), g_self_invalidating, &g, &g), 0);
    fd.g = g;
    assert_int_equal(mc_cached_create(&MC_CACHED_OPTS(NULL, 100), fd_loader, &fd, &f), 0);
    assert_int_equal(MC_CACHED_CALL(f, &v, MC_ARG_I(1)), 0);
    assert_memory_equal(mc_value_data(v), "g", 1);
    mc_value_release(v);
    assert_false(has_i(f, 1));
    assert_int_equal(atomic_load(&g->n_attached), 0);
    mc_cached_destroy(f);
    mc_cached_destroy(g);
}

/* The read of G races G's invalidation: G(k) is loading for F's loader when it is invalidated
 * (no entry to remove yet). A call of F made after that invalidation returned must not join
 * F's load, which is built on the old G: it loads afresh and gets the new version. */
typedef struct {
    mc_cached *g, *f;
    atomic_int version;
    atomic_bool race; /* one-shot: G's next load invalidates its key and calls F meanwhile */
    atomic_bool later_done;
    int later_got;
    bool joined_old;
    pthread_t later;
} race_state;

static int race_f_loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)nargs;
    race_state *rs = self;
    mc_value *v;
    int rc = mc_load_call(load, rs->g, args, 1, &v);
    if (rc != 0)
        return rc;
    rc = mc_load_set_copy(load, mc_value_data(v), sizeof(int));
    mc_value_release(v);
    return rc;
}

static void *race_later_call(void *p)
{
    race_state *rs = p;
    mc_value *v;
    assert_int_equal(MC_CACHED_CALL(rs->f, &v, MC_ARG_I(1)), 0);
    memcpy(&rs->later_got, mc_value_data(v), sizeof rs->later_got);
    mc_value_release(v);
    atomic_store(&rs->later_done, true);
    return NULL;
}

static int race_g_loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)nargs;
    race_state *rs = self;
    int ver = atomic_load(&rs->version);
    if (atomic_exchange(&rs->race, false)) {
        atomic_fetch_add(&rs->version, 1);
        mc_cached_invalidate(rs->g, args, 1); /* returns before the later call starts */
        mc_cached_stats st0, st;
        mc_cached_stats_get(rs->f, &st0);
        assert_int_equal(pthread_create(&rs->later, NULL, race_later_call, rs), 0);
        for (int i = 0; i < 2000 && !atomic_load(&rs->later_done); i++) {
            mc_cached_stats_get(rs->f, &st);
            if (st.joined > st0.joined) {
                rs->joined_old = true; /* it waits for this load: stop waiting for it */
                break;
            }
            usleep(1000);
        }
    }
    return mc_load_set_copy(load, &ver, sizeof ver);
}

static void test_dependency_read_races_invalidation(void **state)
{
    (void)state;
    race_state rs = {0};
    assert_int_equal(mc_cached_create(&MC_CACHED_OPTS(NULL, 100), race_g_loader, &rs, &rs.g), 0);
    assert_int_equal(mc_cached_create(&MC_CACHED_OPTS(NULL, 100), race_f_loader, &rs, &rs.f), 0);
    atomic_store(&rs.race, true);
    mc_value *v;
    assert_int_equal(MC_CACHED_CALL(rs.f, &v, MC_ARG_I(1)), 0);
    int got;
    memcpy(&got, mc_value_data(v), sizeof got);
    mc_value_release(v);
    assert_int_equal(got, 0); /* the first call gets what its load read */
    pthread_join(rs.later, NULL);
    assert_false(rs.joined_old);
    assert_true(atomic_load(&rs.later_done));
    assert_int_equal(rs.later_got, 1);
    /* And what is cached is the new one. */
    assert_int_equal(MC_CACHED_CALL(rs.f, &v, MC_ARG_I(1)), 0);
    memcpy(&got, mc_value_data(v), sizeof got);
    mc_value_release(v);
    assert_int_equal(got, 1);
    mc_cached_destroy(rs.f);
    mc_cached_destroy(rs.g);
}

/* ---- under threads ---- */

/* Callers attach self-freeing closures to random keys while others invalidate, prefill
 * (identical and different values) and evict; every closure runs exactly once by the end. */
typedef struct {
    mc_cached *fn;
    unsigned seed;
    atomic_bool *stop;
} worker;

static void *attacher(void *p)
{
    worker *w = p;
    for (int i = 0; i < 3000; i++) {
        int64_t k = rand_r(&w->seed) % 64;
        mc_value *v;
        mc_arg a[] = {MC_ARG_I(k)};
        switch (i % 3) {
        case 0:
            if (mc_cached_call_ex(w->fn, a, 1, closure_cb, closure_new(NULL), &v) == 0)
                mc_value_release(v);
            break;
        case 1: {
            mc_arg keys[] = {MC_ARG_I(k), MC_ARG_I((k + 1) % 64)};
            void *uds[] = {closure_new(NULL), closure_new(NULL)};
            mc_value *vals[2];
            int rcs[2];
            mc_cached_call_many_ex(w->fn, keys, 2, 1, closure_cb, uds, vals, rcs);
            for (int j = 0; j < 2; j++)
                if (rcs[j] == 0)
                    mc_value_release(vals[j]);
            break;
        }
        default: {
            mc_prefill_options po;
            mc_prefill_options_init(&po);
            po.on_invalidate = closure_cb;
            po.ud = closure_new(NULL);
            char val[16];
            int n = snprintf(val, sizeof val, "%lld:0", (long long)k); /* what the loader makes */
            mc_cached_prefill_ex(w->fn, a, 1, val, (size_t)n, &po);
            break;
        }
        }
    }
    return NULL;
}

static void *churner(void *p)
{
    worker *w = p;
    while (!atomic_load(w->stop)) {
        int64_t k = rand_r(&w->seed) % 80;
        int op = rand_r(&w->seed) % 10;
        if (op < 5) {
            mc_cached_invalidate(w->fn, (const mc_arg[]){MC_ARG_I(k)}, 1);
        } else if (op < 7) {
            mc_cached_prefill(w->fn, (const mc_arg[]){MC_ARG_I(k)}, 1, "different", 9);
        } else if (op < 9) {
            mc_value *v;
            if (MC_CACHED_CALL(w->fn, &v, MC_ARG_I(k + 1000)) == 0) /* evicts */
                mc_value_release(v);
        } else {
            mc_cached_invalidate_all(w->fn);
        }
    }
    return NULL;
}

static void test_callbacks_under_threads(void **state)
{
    (void)state;
    db_t db = DB_INIT;
    mc_cached *fn;
    assert_int_equal(mc_cached_create(&MC_CACHED_OPTS(NULL, 48, .batch_loader = db_batch), db_loader, &db, &fn), 0);
    atomic_bool stop = false;
    worker ws[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        ws[i] = (worker){fn, 17u + (unsigned)i, &stop};
        assert_int_equal(pthread_create(&th[i], NULL, i < 3 ? attacher : churner, &ws[i]), 0);
    }
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    atomic_store(&stop, true);
    pthread_join(th[3], NULL);
    mc_cached_destroy(fn);
    all_ran();
}

/* F depends on G under threads: G's versions only grow; a call of F that starts after an
 * invalidation of G's key returned never gets a value built from an older version of it. */
typedef struct {
    mc_cached *g;
    atomic_int version[8];
} versioned_g;

static int vg_loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)nargs;
    versioned_g *vg = self;
    int ver = atomic_load(&vg->version[args[0].v.i]);
    return mc_load_set_copy(load, &ver, sizeof ver);
}

static int vf_loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)nargs;
    versioned_g *vg = self;
    mc_value *v;
    int rc = mc_load_call(load, vg->g, args, 1, &v);
    if (rc != 0)
        return rc;
    rc = mc_load_set_copy(load, mc_value_data(v), sizeof(int));
    mc_value_release(v);
    return rc;
}

typedef struct {
    versioned_g *vg;
    mc_cached *f;
    unsigned seed;
    atomic_int *stale;
    atomic_bool *stop;
} dep_worker;

/* Plain calls on every key: loads of F that race the writer's invalidations. */
static void *dep_reader(void *p)
{
    dep_worker *w = p;
    for (int i = 0; i < 20000; i++) {
        mc_value *v;
        if (MC_CACHED_CALL(w->f, &v, MC_ARG_I(rand_r(&w->seed) % 8)) == 0)
            mc_value_release(v);
    }
    return NULL;
}

static atomic_int confirmed[8]; /* versions whose invalidation of G returned */

static void *dep_checker(void *p)
{
    dep_worker *w = p;
    for (int i = 0; i < 20000; i++) {
        int64_t k = rand_r(&w->seed) % 8;
        int floor = atomic_load(&confirmed[k]);
        mc_value *v;
        if (MC_CACHED_CALL(w->f, &v, MC_ARG_I(k)) != 0)
            continue;
        int got;
        memcpy(&got, mc_value_data(v), sizeof got);
        mc_value_release(v);
        if (got < floor)
            atomic_fetch_add(w->stale, 1);
    }
    return NULL;
}

static void *dep_writer(void *p)
{
    dep_worker *w = p;
    while (!atomic_load(w->stop)) {
        int64_t k = rand_r(&w->seed) % 8;
        int ver = atomic_fetch_add(&w->vg->version[k], 1) + 1;
        mc_cached_invalidate(w->vg->g, (const mc_arg[]){MC_ARG_I(k)}, 1);
        atomic_store(&confirmed[k], ver); /* one writer: versions are confirmed in order */
    }
    return NULL;
}

static void test_dependencies_under_threads(void **state)
{
    (void)state;
    versioned_g vg = {0};
    assert_int_equal(mc_cached_create(&MC_CACHED_OPTS(NULL, 100), vg_loader, &vg, &vg.g), 0);
    mc_cached *f;
    assert_int_equal(mc_cached_create(&MC_CACHED_OPTS(NULL, 100), vf_loader, &vg, &f), 0);
    atomic_int stale = 0;
    atomic_bool stop = false;
    dep_worker ws[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        ws[i] = (dep_worker){&vg, f, 5u + (unsigned)i, &stale, &stop};
        void *(*body)(void *) = i == 0 ? dep_writer : i == 1 ? dep_reader : dep_checker;
        assert_int_equal(pthread_create(&th[i], NULL, body, &ws[i]), 0);
    }
    for (int i = 1; i < 4; i++)
        pthread_join(th[i], NULL);
    atomic_store(&stop, true);
    pthread_join(th[0], NULL);
    assert_int_equal(atomic_load(&stale), 0);
    mc_cached_destroy(f);
    mc_cached_destroy(vg.g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runs_once_on_errors),
        cmocka_unit_test(test_runs_once_on_timeout),
        cmocka_unit_test(test_runs_once_when_entry_goes),
        cmocka_unit_test(test_duplicates_collapse),
        cmocka_unit_test(test_identical_prefill_keeps_entry),
        cmocka_unit_test(test_identical_load_keeps_entry),
        cmocka_unit_test(test_async_ex),
        cmocka_unit_test(test_async_ex_timeout),
        cmocka_unit_test(test_many_ex),
        cmocka_unit_test(test_prefill_ex),
        cmocka_unit_test(test_dependencies),
        cmocka_unit_test(test_dependency_outlives_function),
        cmocka_unit_test(test_dependency_batch_items),
        cmocka_unit_test(test_depends_on_value),
        cmocka_unit_test(test_dependency_read_races_invalidation),
        cmocka_unit_test(test_callbacks_under_threads),
        cmocka_unit_test(test_dependencies_under_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
