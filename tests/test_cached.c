/* Tests of memoized functions: hits and misses, single-flight, errors, "no value", key
 * arguments, invalidation against in-flight loads, prefill, async and batch calls, callbacks. */
#include <pthread.h>
#include <sched.h>
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

/* ---- a loader over a fake "database": value = "<key>:<version>" ---- */

typedef struct {
    atomic_int calls;
    atomic_int version;
    int fail_with;          /* non-zero: return this error */
    int none_for;           /* return "no value" for this integer key */
    useconds_t delay_us;    /* make loads slow so that callers pile up */
    mc_cached *invalidate_during; /* invalidate the key from inside the loader */
    mc_cached *join_fn;     /* if set, hold the load until join_target calls have joined it */
    uint64_t join_target;
    size_t last_nargs;
    int64_t last_extra;     /* the first argument beyond the key, if any */
} db_t;

static int db_loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    db_t *db = self;
    atomic_fetch_add(&db->calls, 1);
    db->last_nargs = nargs;
    if (nargs > 1 && args[1].type == MC_ARG_INT)
        db->last_extra = args[1].v.i;
    if (db->delay_us)
        usleep(db->delay_us);
    /* Hold the load until every other caller waits for it, however slowly threads start. */
    for (int i = 0; db->join_fn && i < 20000; i++) {
        mc_cached_stats st;
        mc_cached_stats_get(db->join_fn, &st);
        if (st.joined >= db->join_target)
            break;
        usleep(1000);
    }
    if (db->fail_with)
        return db->fail_with;
    if (nargs >= 1 && args[0].type == MC_ARG_INT && args[0].v.i == db->none_for)
        return mc_load_set_none(load);
    if (db->invalidate_during) {
        mc_cached_invalidate(db->invalidate_during, args, 1);
    }
    char buf[64];
    int n = snprintf(buf, sizeof buf, "%lld:%d", nargs ? (long long)args[0].v.i : -1,
                     atomic_load(&db->version));
    return mc_load_set_copy(load, buf, (size_t)n);
}

static mc_cached *make_fn(db_t *db, size_t max_entries)
{
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = "test.db";
    o.max_entries = max_entries;
    mc_cached *fn = NULL;
    assert_int_equal(mc_cached_create(&o, db_loader, db, &fn), 0);
    return fn;
}

static int call_int(mc_cached *fn, int64_t k, char *out, size_t cap)
{
    mc_arg a[] = {MC_ARG_I(k)};
    mc_value *v = NULL;
    int rc = mc_cached_call(fn, a, 1, &v);
    if (rc != 0)
        return rc;
    if (out) {
        size_t n = mc_value_size(v) < cap - 1 ? mc_value_size(v) : cap - 1;
        memcpy(out, mc_value_data(v), n);
        out[n] = 0;
    }
    mc_value_release(v);
    return 0;
}

/* ---- basics ---- */

static void test_create_validation(void **state)
{
    (void)state;
    db_t db = {0};
    mc_cached_options o;
    mc_cached_options_init(&o);
    mc_cached *fn;
    assert_int_equal(mc_cached_create(NULL, db_loader, &db, &fn), MC_EINVAL);
    assert_int_equal(mc_cached_create(&o, db_loader, &db, &fn), MC_EINVAL); /* max_entries 0 */
    o.max_entries = 10;
    assert_int_equal(mc_cached_create(&o, NULL, &db, &fn), MC_EINVAL);     /* no loader */
    size_t bad[] = {3};
    o.num_args = 2;
    o.uncached_args = bad;
    o.n_uncached_args = 1;
    assert_int_equal(mc_cached_create(&o, db_loader, &db, &fn), MC_EINVAL); /* index >= num_args */
    o.uncached_args = NULL;
    o.n_uncached_args = 0;
    assert_int_equal(mc_cached_create(&o, db_loader, &db, &fn), 0);
    assert_string_equal(mc_cached_name(fn), "");
    mc_cached_destroy(fn);
    mc_cached_destroy(NULL);
}

/* The copy-out call: hits and misses give the loaded bytes, a short buffer gets the size,
 * "no value" is MC_ENOENT, and a hit pins nothing (the cache's stats count it). */
static void test_call_copy(void **state)
{
    (void)state;
    db_t db = {0};
    db.none_for = 99;
    mc_cached *fn = make_fn(&db, 100);
    char out[64];
    size_t n = 0;
    mc_arg a = mc_arg_int(7);
    assert_int_equal(mc_cached_call_copy(fn, &a, 1, out, sizeof out, &n), 0); /* a load */
    assert_int_equal(n, 3);
    assert_memory_equal(out, "7:0", 3);
    atomic_store(&db.version, 1);
    memset(out, 0, sizeof out);
    assert_int_equal(mc_cached_call_copy(fn, &a, 1, out, sizeof out, &n), 0); /* a hit */
    assert_memory_equal(out, "7:0", 3);
    assert_int_equal(atomic_load(&db.calls), 1);
    assert_int_equal(mc_cached_call_copy(fn, &a, 1, out, 2, &n), MC_ERANGE);
    assert_int_equal(n, 3);
    assert_int_equal(mc_cached_call_copy(fn, &a, 1, NULL, 0, &n), MC_ERANGE);
    mc_arg none = mc_arg_int(99);
    assert_int_equal(mc_cached_call_copy(fn, &none, 1, out, sizeof out, &n), MC_ENOENT); /* loaded */
    assert_int_equal(mc_cached_call_copy(fn, &none, 1, out, sizeof out, &n), MC_ENOENT); /* cached */
    assert_int_equal(atomic_load(&db.calls), 2);
    /* Invalidation reaches the copy-out call like any other. */
    assert_int_equal(mc_cached_invalidate(fn, &a, 1), 0);
    assert_int_equal(mc_cached_call_copy(fn, &a, 1, out, sizeof out, &n), 0);
    assert_memory_equal(out, "7:1", 3);
    assert_int_equal(atomic_load(&db.calls), 3);
    assert_int_equal(mc_cached_call_copy(NULL, &a, 1, out, sizeof out, &n), MC_EINVAL);
    assert_int_equal(mc_cached_call_copy(fn, &a, 1, NULL, 4, &n), MC_EINVAL);
    assert_int_equal(mc_cached_call_copy(fn, &a, 1, out, sizeof out, NULL), MC_EINVAL);
    mc_cached_destroy(fn);
}

/* mc_cached_call_borrow: only inside a read section; a miss loads (its pin kept until the
 * section ends), a hit borrows, "no value" is MC_ENOENT, and what was borrowed stays intact
 * while the entry is invalidated and reloaded inside the section. */
static void test_call_borrow(void **state)
{
    (void)state;
    db_t db = {.none_for = 99};
    mc_cached *fn = make_fn(&db, 100);
    mc_arg a = mc_arg_int(7), none = mc_arg_int(99);
    const void *p = NULL, *q = NULL;
    size_t n = 0, m = 0;
    assert_int_equal(mc_cached_call_borrow(fn, &a, 1, &p, &n), MC_EINVAL); /* no section */
    assert_int_equal(atomic_load(&db.calls), 0);
    mc_read_begin();
    assert_int_equal(mc_cached_call_borrow(fn, &a, 1, &p, &n), 0); /* a load */
    assert_int_equal(n, 3);
    assert_memory_equal(p, "7:0", 3);
    atomic_store(&db.version, 1);
    assert_int_equal(mc_cached_call_borrow(fn, &a, 1, &q, &m), 0); /* a hit */
    assert_memory_equal(q, "7:0", 3);
    assert_int_equal(atomic_load(&db.calls), 1);
    assert_int_equal(mc_cached_call_borrow(fn, &none, 1, &q, &m), MC_ENOENT);
    assert_int_equal(mc_cached_call_borrow(fn, &none, 1, &q, &m), MC_ENOENT);
    assert_int_equal(atomic_load(&db.calls), 2);
    /* Invalidated and reloaded while borrowed: the old bytes stay readable, the new call
     * sees the new value. */
    assert_int_equal(mc_cached_invalidate(fn, &a, 1), 0);
    assert_int_equal(mc_cached_call_borrow(fn, &a, 1, &q, &m), 0);
    assert_memory_equal(q, "7:1", 3);
    assert_memory_equal(p, "7:0", 3);
    assert_int_equal(mc_cached_call_borrow(NULL, &a, 1, &q, &m), MC_EINVAL);
    assert_int_equal(mc_cached_call_borrow(fn, &a, 1, NULL, &m), MC_EINVAL);
    mc_read_end();
    mc_cached_destroy(fn);
}

static void test_hit_and_miss(void **state)
{
    (void)state;
    db_t db = {0};
    mc_cached *fn = make_fn(&db, 100);
    char out[64];
    assert_int_equal(call_int(fn, 7, out, sizeof out), 0);
    assert_string_equal(out, "7:0");
    assert_int_equal(atomic_load(&db.calls), 1);
    atomic_store(&db.version, 1);
    assert_int_equal(call_int(fn, 7, out, sizeof out), 0);
    assert_string_equal(out, "7:0"); /* memoized */
    assert_int_equal(atomic_load(&db.calls), 1);
    assert_int_equal(call_int(fn, 8, out, sizeof out), 0);
    assert_string_equal(out, "8:1");
    mc_cached_stats st;
    mc_cached_stats_get(fn, &st);
    assert_int_equal(st.loads, 2);
    assert_int_equal(st.cache.hits, 1);
    assert_int_equal(st.cache.entries, 2);
    /* Bad calls. */
    mc_value *v;
    assert_int_equal(mc_cached_call(fn, NULL, 1, &v), MC_EINVAL);
    assert_int_equal(mc_cached_call(NULL, NULL, 0, &v), MC_EINVAL);
    mc_cached_destroy(fn);
}

static void test_errors_not_cached(void **state)
{
    (void)state;
    db_t db = {.fail_with = MC_EIO};
    mc_cached *fn = make_fn(&db, 100);
    assert_int_equal(call_int(fn, 1, NULL, 0), MC_EIO);
    assert_int_equal(call_int(fn, 1, NULL, 0), MC_EIO);
    assert_int_equal(atomic_load(&db.calls), 2); /* retried: the error was not cached */
    db.fail_with = -12345;                       /* any negative value reaches the caller */
    assert_int_equal(call_int(fn, 1, NULL, 0), -12345);
    db.fail_with = 0;
    char out[32];
    assert_int_equal(call_int(fn, 1, out, sizeof out), 0);
    assert_string_equal(out, "1:0");
    mc_cached_stats st;
    mc_cached_stats_get(fn, &st);
    assert_int_equal(st.load_errors, 3);
    assert_int_equal(st.cache.entries, 1);
    mc_cached_destroy(fn);
}

static void test_no_value_is_cached(void **state)
{
    (void)state;
    db_t db = {.none_for = 404};
    mc_cached *fn = make_fn(&db, 100);
    mc_arg a[] = {MC_ARG_I(404)};
    mc_value *v;
    assert_int_equal(mc_cached_call(fn, a, 1, &v), 0);
    assert_true(mc_value_is_none(v));
    assert_int_equal(mc_value_size(v), 0);
    mc_value_release(v);
    assert_int_equal(mc_cached_call(fn, a, 1, &v), 0);
    assert_true(mc_value_is_none(v));
    mc_value_release(v);
    assert_int_equal(atomic_load(&db.calls), 1);
    mc_cached_destroy(fn);
}

static int silent_loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)args;
    (void)nargs;
    (void)load;
    atomic_fetch_add((atomic_int *)self, 1);
    return 0; /* no result set: "no value" */
}

static void test_unset_result_is_none(void **state)
{
    (void)state;
    atomic_int calls = 0;
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.max_entries = 4;
    mc_cached *fn;
    assert_int_equal(mc_cached_create(&o, silent_loader, &calls, &fn), 0);
    mc_arg a[] = {MC_ARG_S("x")};
    mc_value *v;
    assert_int_equal(mc_cached_call(fn, a, 1, &v), 0);
    assert_true(mc_value_is_none(v));
    mc_value_release(v);
    mc_cached_destroy(fn);
}

static void test_key_arguments(void **state)
{
    (void)state;
    db_t db = {0};
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.max_entries = 100;
    o.num_args = 1; /* the second argument is passed through, not part of the key */
    mc_cached *fn;
    assert_int_equal(mc_cached_create(&o, db_loader, &db, &fn), 0);
    mc_arg a1[] = {MC_ARG_I(5), MC_ARG_I(111)};
    mc_arg a2[] = {MC_ARG_I(5), MC_ARG_I(222)};
    mc_value *v;
    assert_int_equal(mc_cached_call(fn, a1, 2, &v), 0);
    mc_value_release(v);
    assert_int_equal(db.last_nargs, 2);
    assert_int_equal(db.last_extra, 111); /* the loader sees every argument */
    assert_int_equal(mc_cached_call(fn, a2, 2, &v), 0);
    mc_value_release(v);
    assert_int_equal(atomic_load(&db.calls), 1); /* same key */
    assert_int_equal(mc_cached_call(fn, a1, 0, &v), MC_EINVAL); /* fewer args than the key */
    /* The entry's key is the key tuple alone: invalidate with it. */
    mc_arg k[] = {MC_ARG_I(5)};
    assert_int_equal(mc_cached_invalidate(fn, k, 1), 0);
    mc_cached_destroy(fn);

    /* uncached_args: argument 1 of 3 left out of the key. */
    size_t skip[] = {1};
    mc_cached_options_init(&o);
    o.max_entries = 100;
    o.num_args = 3;
    o.uncached_args = skip;
    o.n_uncached_args = 1;
    memset(&db, 0, sizeof db);
    assert_int_equal(mc_cached_create(&o, db_loader, &db, &fn), 0);
    mc_arg b1[] = {MC_ARG_I(9), MC_ARG_I(1), MC_ARG_S("x")};
    mc_arg b2[] = {MC_ARG_I(9), MC_ARG_I(2), MC_ARG_S("x")};
    mc_arg b3[] = {MC_ARG_I(9), MC_ARG_I(2), MC_ARG_S("y")};
    assert_int_equal(mc_cached_call(fn, b1, 3, &v), 0);
    mc_value_release(v);
    assert_int_equal(mc_cached_call(fn, b2, 3, &v), 0);
    mc_value_release(v);
    assert_int_equal(atomic_load(&db.calls), 1);
    assert_int_equal(mc_cached_call(fn, b3, 3, &v), 0);
    mc_value_release(v);
    assert_int_equal(atomic_load(&db.calls), 2);
    mc_arg key[] = {MC_ARG_I(9), MC_ARG_S("x")};
    assert_int_equal(mc_cached_invalidate(fn, key, 2), 0);
    assert_int_equal(mc_cached_invalidate(fn, key, 2), MC_ENOENT);
    mc_cached_destroy(fn);
}

/* ---- single-flight ---- */

typedef struct {
    mc_cached *fn;
    int64_t key;
    int rc;
    char out[64];
} caller_t;

static void *caller_main(void *arg)
{
    caller_t *c = arg;
    c->rc = call_int(c->fn, c->key, c->out, sizeof c->out);
    return NULL;
}

static void run_callers(mc_cached *fn, int64_t key, caller_t *callers, int n)
{
    pthread_t th[64];
    for (int i = 0; i < n; i++) {
        callers[i] = (caller_t){.fn = fn, .key = key};
        assert_int_equal(pthread_create(&th[i], NULL, caller_main, &callers[i]), 0);
    }
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
}

static void test_single_flight(void **state)
{
    (void)state;
    db_t db = {0};
    mc_cached *fn = make_fn(&db, 100);
    db.join_fn = fn;
    db.join_target = 63;
    static caller_t callers[64];
    run_callers(fn, 42, callers, 64);
    assert_int_equal(atomic_load(&db.calls), 1);
    for (int i = 0; i < 64; i++) {
        assert_int_equal(callers[i].rc, 0);
        assert_string_equal(callers[i].out, "42:0");
    }
    mc_cached_stats st;
    mc_cached_stats_get(fn, &st);
    assert_int_equal(st.loads, 1);
    assert_int_equal(st.joined, 63); /* the loader waited for all of them */

    /* A failing load: every waiter gets the error, the next call retries. */
    db.fail_with = MC_ETIMEDOUT;
    db.join_target = 126;
    run_callers(fn, 43, callers, 64);
    assert_int_equal(atomic_load(&db.calls), 2);
    for (int i = 0; i < 64; i++)
        assert_int_equal(callers[i].rc, MC_ETIMEDOUT);
    db.fail_with = 0;
    db.join_fn = NULL;
    char out[32];
    assert_int_equal(call_int(fn, 43, out, sizeof out), 0);
    assert_int_equal(atomic_load(&db.calls), 3);
    mc_cached_destroy(fn);
}

/* ---- invalidation against in-flight loads ---- */

static void test_invalidate_inside_load(void **state)
{
    (void)state;
    /* Deterministic: the invalidation happens between loader start and loader end. */
    db_t db = {0};
    mc_cached *fn = make_fn(&db, 100);
    db.invalidate_during = fn;
    char out[32];
    assert_int_equal(call_int(fn, 1, out, sizeof out), 0);
    assert_string_equal(out, "1:0"); /* the caller still gets the result */
    mc_cached_stats st;
    mc_cached_stats_get(fn, &st);
    assert_int_equal(st.cache.entries, 0); /* but it was not stored */
    assert_int_equal(st.cancelled_fills, 1);
    db.invalidate_during = NULL;
    atomic_store(&db.version, 1);
    assert_int_equal(call_int(fn, 1, out, sizeof out), 0);
    assert_string_equal(out, "1:1");
    assert_int_equal(atomic_load(&db.calls), 2);
    assert_int_equal(call_int(fn, 1, out, sizeof out), 0);
    assert_int_equal(atomic_load(&db.calls), 2); /* this one was stored */
    mc_cached_destroy(fn);
}

static mc_cached *hook_fn;
static int hook_mode; /* 1: invalidate key, 2: invalidate all, 3: prefix, 4: prefill */

static void store_hook(mc_cached *fn, int point, mc_load *load)
{
    (void)load;
    if (fn != hook_fn || point != MC__HOOK_BEFORE_STORE)
        return;
    mc_arg k[] = {MC_ARG_I(1)};
    if (hook_mode == 1)
        mc_cached_invalidate(fn, k, 1);
    else if (hook_mode == 2)
        mc_cached_invalidate_all(fn);
    else if (hook_mode == 3)
        mc_cached_invalidate_prefix(fn, NULL, 0, NULL);
    else if (hook_mode == 4)
        mc_cached_prefill(fn, k, 1, "prefilled", 9);
}

static void test_invalidate_after_loader_before_store(void **state)
{
    (void)state;
    /* The narrowest window: the loader has returned, the result is about to be stored. */
    for (hook_mode = 1; hook_mode <= 4; hook_mode++) {
        db_t db = {0};
        mc_cached_options o;
        mc_cached_options_init(&o);
        o.max_entries = 100;
        o.tree = true;
        mc_cached *fn;
        assert_int_equal(mc_cached_create(&o, db_loader, &db, &fn), 0);
        hook_fn = fn;
        mc__cached_test_hook = store_hook;
        char out[32];
        assert_int_equal(call_int(fn, 1, out, sizeof out), 0);
        assert_string_equal(out, "1:0");
        mc__cached_test_hook = NULL;
        if (hook_mode == 4) {
            /* The prefilled value stays; the older load did not overwrite it. */
            assert_int_equal(call_int(fn, 1, out, sizeof out), 0);
            assert_string_equal(out, "prefilled");
            assert_int_equal(atomic_load(&db.calls), 1);
        } else {
            mc_cached_stats st;
            mc_cached_stats_get(fn, &st);
            assert_int_equal(st.cache.entries, 0);
            assert_int_equal(st.cancelled_fills, 1);
            assert_int_equal(call_int(fn, 1, out, sizeof out), 0);
            assert_int_equal(atomic_load(&db.calls), 2);
        }
        mc_cached_destroy(fn);
    }
}

static void test_prefix_and_all(void **state)
{
    (void)state;
    db_t db = {0};
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.max_entries = 100;
    mc_cached *plain;
    assert_int_equal(mc_cached_create(&o, db_loader, &db, &plain), 0);
    mc_arg p[] = {MC_ARG_I(1)};
    assert_int_equal(mc_cached_invalidate_prefix(plain, p, 1, NULL), MC_ENOTSUP);
    mc_cached_destroy(plain);

    o.tree = true;
    mc_cached *fn;
    assert_int_equal(mc_cached_create(&o, db_loader, &db, &fn), 0);
    mc_value *v;
    for (int64_t u = 0; u < 3; u++)
        for (int64_t r = 0; r < 4; r++) {
            mc_arg a[] = {MC_ARG_I(u), MC_ARG_I(r)};
            assert_int_equal(mc_cached_call(fn, a, 2, &v), 0);
            mc_value_release(v);
        }
    size_t removed = 0;
    assert_int_equal(mc_cached_invalidate_prefix(fn, p, 1, &removed), 0);
    assert_int_equal(removed, 4);
    {
        /* A declared key length: a prefix longer than it is refused and removes nothing. */
        mc_cached_options t = o;
        t.num_args = 2;
        mc_cached *two;
        assert_int_equal(mc_cached_create(&t, db_loader, &db, &two), 0);
        mc_arg a[] = {MC_ARG_I(1), MC_ARG_I(2)}, three[] = {MC_ARG_I(1), MC_ARG_I(2), MC_ARG_I(3)};
        assert_int_equal(mc_cached_call(two, a, 2, &v), 0);
        mc_value_release(v);
        removed = 99;
        assert_int_equal(mc_cached_invalidate_prefix(two, three, 3, &removed), MC_EINVAL);
        assert_int_equal(removed, 0);
        assert_int_equal(mc_cache_size(mc_cached_cache(two)), 1);
        assert_int_equal(mc_cached_invalidate_prefix(two, a, 2, &removed), 0); /* a whole key */
        assert_int_equal(removed, 1);
        mc_cached_destroy(two);
    }
    assert_int_equal(mc_cache_size(mc_cached_cache(fn)), 8);
    mc_arg still[] = {MC_ARG_I(2), MC_ARG_I(3)};
    int before = atomic_load(&db.calls);
    assert_int_equal(mc_cached_call(fn, still, 2, &v), 0);
    mc_value_release(v);
    assert_int_equal(atomic_load(&db.calls), before);
    mc_arg gone[] = {MC_ARG_I(1), MC_ARG_I(0)};
    assert_int_equal(mc_cached_call(fn, gone, 2, &v), 0);
    mc_value_release(v);
    assert_int_equal(atomic_load(&db.calls), before + 1);
    mc_cached_invalidate_all(fn);
    assert_int_equal(mc_cache_size(mc_cached_cache(fn)), 0);
    mc_error err;
    assert_int_equal(mc_cached_invalidate_json(fn, "[1, 0]", 6, &err), 0);
    assert_int_equal(mc_cached_invalidate_json(fn, "[1, ", 4, &err), MC_EPARSE);
    assert_non_null(strstr(err.message, "offset"));
    mc_cached_destroy(fn);
}

static void test_prefill(void **state)
{
    (void)state;
    db_t db = {0};
    mc_cached *fn = make_fn(&db, 100);
    mc_arg k[] = {MC_ARG_I(3)};
    assert_int_equal(mc_cached_prefill(fn, k, 1, "pre", 3), 0);
    char out[32];
    assert_int_equal(call_int(fn, 3, out, sizeof out), 0);
    assert_string_equal(out, "pre");
    assert_int_equal(atomic_load(&db.calls), 0);
    assert_int_equal(mc_cached_prefill(fn, k, 1, "again", 5), 0); /* replaces */
    assert_int_equal(call_int(fn, 3, out, sizeof out), 0);
    assert_string_equal(out, "again");
    mc_cached_destroy(fn);
}

/* ---- async ---- */

typedef struct {
    atomic_int done;
    int rc;
    char out[64];
} async_result;

static void on_done(void *ud, int rc, mc_value *v)
{
    async_result *r = ud;
    r->rc = rc;
    if (rc == 0) {
        snprintf(r->out, sizeof r->out, "%.*s", (int)mc_value_size(v), (const char *)mc_value_data(v));
        mc_value_release(v);
    }
    atomic_fetch_add(&r->done, 1);
}

static mc_load *pending_load;
static atomic_int pending_calls;

static int pending_loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)self;
    (void)args;
    (void)nargs;
    atomic_fetch_add(&pending_calls, 1);
    pending_load = load;
    return MC_LOAD_PENDING;
}

static void *complete_later(void *arg)
{
    (void)arg;
    usleep(50000);
    mc_load_set_copy(pending_load, "late", 4);
    mc_load_complete(pending_load, 0);
    return NULL;
}

static void *blocking_caller(void *arg)
{
    caller_t *c = arg;
    c->rc = call_int(c->fn, c->key, c->out, sizeof c->out);
    return NULL;
}

static void test_async(void **state)
{
    (void)state;
    atomic_store(&pending_calls, 0);
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.max_entries = 10;
    mc_cached *fn;
    assert_int_equal(mc_cached_create(&o, pending_loader, NULL, &fn), 0);
    mc_arg k[] = {MC_ARG_I(1)};
    async_result r1 = {0}, r2 = {0};
    assert_int_equal(mc_cached_call_async(fn, k, 1, on_done, &r1), 0);
    assert_int_equal(atomic_load(&r1.done), 0); /* pending */
    assert_int_equal(mc_cached_call_async(fn, k, 1, on_done, &r2), 0);
    /* A blocking caller joins the same load. */
    caller_t bc = {.fn = fn, .key = 1};
    pthread_t b, c;
    pthread_create(&b, NULL, blocking_caller, &bc);
    pthread_create(&c, NULL, complete_later, NULL);
    pthread_join(c, NULL);
    pthread_join(b, NULL);
    assert_int_equal(atomic_load(&pending_calls), 1);
    assert_int_equal(atomic_load(&r1.done), 1);
    assert_int_equal(atomic_load(&r2.done), 1);
    assert_string_equal(r1.out, "late");
    assert_string_equal(r2.out, "late");
    assert_int_equal(bc.rc, 0);
    assert_string_equal(bc.out, "late");
    /* A hit completes before the call returns. */
    async_result r3 = {0};
    assert_int_equal(mc_cached_call_async(fn, k, 1, on_done, &r3), 0);
    assert_int_equal(atomic_load(&r3.done), 1);
    assert_string_equal(r3.out, "late");
    /* An asynchronous error reaches every waiter. */
    mc_arg k2[] = {MC_ARG_I(2)};
    async_result r4 = {0};
    assert_int_equal(mc_cached_call_async(fn, k2, 1, on_done, &r4), 0);
    mc_load_complete(pending_load, MC_EIO);
    assert_int_equal(atomic_load(&r4.done), 1);
    assert_int_equal(r4.rc, MC_EIO);
    assert_int_equal(mc_cached_call_async(fn, k2, 1, NULL, NULL), MC_EINVAL);
    mc_cached_destroy(fn);
}

/* ---- batch ---- */

typedef struct {
    atomic_int batches;
    atomic_int keys_loaded;
    int fail;
} batch_db;

static int batch_loader(void *self, const mc_arg *keys, size_t nkeys, size_t nargs, mc_load *load)
{
    batch_db *db = self;
    atomic_fetch_add(&db->batches, 1);
    atomic_fetch_add(&db->keys_loaded, (int)nkeys);
    if (db->fail)
        return MC_EIO;
    for (size_t i = 0; i < nkeys; i++) {
        int64_t k = keys[i * nargs].v.i;
        if (k % 10 == 9)
            continue; /* absent: cached as "no value" */
        char buf[32];
        int n = snprintf(buf, sizeof buf, "b%lld", (long long)k);
        mc_load_set_copy(mc_load_item(load, i), buf, (size_t)n);
    }
    return 0;
}

static void test_batch(void **state)
{
    (void)state;
    batch_db db = {0};
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.max_entries = 100;
    o.batch_loader = batch_loader;
    mc_cached *fn;
    assert_int_equal(mc_cached_create(&o, NULL, &db, &fn), 0);
    mc_value *single;
    mc_arg one[] = {MC_ARG_I(1)};
    assert_int_equal(mc_cached_call(fn, one, 1, &single), MC_ENOTSUP); /* no single loader */

    mc_arg keys[] = {MC_ARG_I(1), MC_ARG_I(2), MC_ARG_I(9), MC_ARG_I(2)};
    mc_value *vals[4];
    int rcs[4];
    assert_int_equal(mc_cached_call_many(fn, keys, 4, 1, vals, rcs), 0);
    assert_int_equal(atomic_load(&db.batches), 1);
    assert_int_equal(atomic_load(&db.keys_loaded), 3); /* the duplicate joined its twin */
    for (int i = 0; i < 4; i++)
        assert_int_equal(rcs[i], 0);
    assert_memory_equal(mc_value_data(vals[0]), "b1", 2);
    assert_memory_equal(mc_value_data(vals[1]), "b2", 2);
    assert_true(mc_value_is_none(vals[2]));
    assert_memory_equal(mc_value_data(vals[3]), "b2", 2);
    for (int i = 0; i < 4; i++)
        mc_value_release(vals[i]);

    /* Hits are served, only the rest is loaded. */
    mc_arg more[] = {MC_ARG_I(1), MC_ARG_I(3), MC_ARG_I(9)};
    assert_int_equal(mc_cached_call_many(fn, more, 3, 1, vals, rcs), 0);
    assert_int_equal(atomic_load(&db.batches), 2);
    assert_int_equal(atomic_load(&db.keys_loaded), 4);
    for (int i = 0; i < 3; i++)
        mc_value_release(vals[i]);

    /* An error fails the batch's keys and stores nothing; hits in the same call still work. */
    db.fail = 1;
    mc_arg bad[] = {MC_ARG_I(1), MC_ARG_I(4), MC_ARG_I(5)};
    assert_int_equal(mc_cached_call_many(fn, bad, 3, 1, vals, rcs), 0);
    assert_int_equal(rcs[0], 0);
    assert_int_equal(rcs[1], MC_EIO);
    assert_int_equal(rcs[2], MC_EIO);
    assert_null(vals[1]);
    mc_value_release(vals[0]);
    db.fail = 0;
    assert_int_equal(mc_cached_call_many(fn, bad + 1, 2, 1, vals, rcs), 0);
    assert_int_equal(rcs[0], 0);
    assert_int_equal(atomic_load(&db.keys_loaded), 8); /* 4 and 5 again */
    mc_value_release(vals[0]);
    mc_value_release(vals[1]);
    assert_int_equal(mc_cached_call_many(fn, NULL, 1, 1, vals, rcs), MC_EINVAL);
    mc_cached_destroy(fn);
}

/* Keys already loading are joined, not loaded again by the batch. */
static atomic_int joined_release;
static atomic_int single_calls;

static int slow_loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)nargs;
    (void)self;
    atomic_fetch_add(&single_calls, 1);
    while (!atomic_load(&joined_release))
        usleep(1000);
    char buf[16];
    int n = snprintf(buf, sizeof buf, "s%lld", (long long)args[0].v.i);
    return mc_load_set_copy(load, buf, (size_t)n);
}

static void *slow_call(void *arg)
{
    caller_t *c = arg;
    c->rc = call_int(c->fn, c->key, c->out, sizeof c->out);
    return NULL;
}

/* Let the single load finish only once the batch has joined it (or after 20 s). */
static void *release_later(void *arg)
{
    mc_cached *fn = arg;
    for (int i = 0; i < 20000; i++) {
        mc_cached_stats st;
        mc_cached_stats_get(fn, &st);
        if (st.joined >= 1)
            break;
        usleep(1000);
    }
    atomic_store(&joined_release, 1);
    return NULL;
}

static void test_batch_joins_inflight(void **state)
{
    (void)state;
    atomic_store(&single_calls, 0);
    batch_db db = {0};
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.max_entries = 100;
    o.batch_loader = batch_loader;
    mc_cached *fn;
    assert_int_equal(mc_cached_create(&o, slow_loader, &db, &fn), 0);
    atomic_store(&joined_release, 0);
    caller_t c = {.fn = fn, .key = 7};
    pthread_t t;
    pthread_create(&t, NULL, slow_call, &c);
    while (atomic_load(&single_calls) == 0)
        usleep(1000);
    /* Key 7 is in flight in the single loader: the batch must wait for it, not load it. */
    pthread_t rel;
    pthread_create(&rel, NULL, release_later, fn);
    mc_arg keys[] = {MC_ARG_I(7), MC_ARG_I(8)};
    mc_value *vals[2];
    int rcs[2];
    assert_int_equal(mc_cached_call_many(fn, keys, 2, 1, vals, rcs), 0);
    pthread_join(rel, NULL);
    pthread_join(t, NULL);
    mc_cached_stats cst;
    mc_cached_stats_get(fn, &cst);
    assert_int_equal(cst.joined, 1);
    assert_int_equal(rcs[0], 0);
    assert_int_equal(rcs[1], 0);
    assert_memory_equal(mc_value_data(vals[0]), "s7", 2);
    assert_memory_equal(mc_value_data(vals[1]), "b8", 2);
    assert_int_equal(atomic_load(&db.keys_loaded), 1);
    assert_int_equal(atomic_load(&single_calls), 1);
    mc_value_release(vals[0]);
    mc_value_release(vals[1]);
    mc_cached_destroy(fn);
}

/* ---- invalidation callbacks ---- */

static void count_cb(void *ud) { atomic_fetch_add((atomic_int *)ud, 1); }

static void test_invalidation_callbacks(void **state)
{
    (void)state;
    db_t db = {0};
    mc_cached *fn = make_fn(&db, 3);
    mc_arg k[] = {MC_ARG_I(1)};
    atomic_int n1 = 0, n2 = 0, n3 = 0, n4 = 0;
    mc_value *v;
    assert_int_equal(mc_cached_call_ex(fn, k, 1, count_cb, &n1, &v), 0); /* miss */
    mc_value_release(v);
    assert_int_equal(mc_cached_call_ex(fn, k, 1, count_cb, &n2, &v), 0); /* hit */
    mc_value_release(v);
    assert_int_equal(atomic_load(&n1), 0);
    assert_int_equal(mc_cached_invalidate(fn, k, 1), 0);
    assert_int_equal(atomic_load(&n1), 1);
    assert_int_equal(atomic_load(&n2), 1);
    assert_int_equal(mc_cached_invalidate(fn, k, 1), MC_ENOENT);
    assert_int_equal(atomic_load(&n1), 1); /* exactly once */

    /* Eviction by size runs it too. */
    assert_int_equal(mc_cached_call_ex(fn, k, 1, count_cb, &n3, &v), 0);
    mc_value_release(v);
    for (int64_t i = 10; i < 14; i++)
        assert_int_equal(call_int(fn, i, NULL, 0), 0);
    assert_int_equal(atomic_load(&n3), 1);

    /* Replacement (prefill) and clear. */
    assert_int_equal(mc_cached_call_ex(fn, k, 1, count_cb, &n4, &v), 0);
    mc_value_release(v);
    mc_cached_prefill(fn, k, 1, "x", 1);
    assert_int_equal(atomic_load(&n4), 1);
    atomic_int n5 = 0;
    assert_int_equal(mc_cached_call_ex(fn, k, 1, count_cb, &n5, &v), 0);
    mc_value_release(v);
    mc_cached_invalidate_all(fn);
    assert_int_equal(atomic_load(&n5), 1);

    /* A result that was never stored: the callback runs at once. */
    db.invalidate_during = fn;
    atomic_int n6 = 0;
    assert_int_equal(mc_cached_call_ex(fn, k, 1, count_cb, &n6, &v), 0);
    mc_value_release(v);
    assert_int_equal(atomic_load(&n6), 1);
    db.invalidate_during = NULL;
    mc_cached_destroy(fn);
}

/* A cache built on another: B's entry is invalidated with the A entry it was computed from. */
typedef struct {
    mc_cached *a, *b;
    atomic_int b_loads;
} chain_t;

typedef struct {
    mc_cached *b;
    int64_t key;
} inval_ctx;

static void invalidate_b(void *ud)
{
    inval_ctx *ctx = ud;
    mc_arg k[] = {MC_ARG_I(ctx->key)};
    mc_cached_invalidate(ctx->b, k, 1);
    free(ctx);
}

static int b_loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)nargs;
    chain_t *ch = self;
    atomic_fetch_add(&ch->b_loads, 1);
    inval_ctx *ctx = malloc(sizeof *ctx);
    ctx->b = ch->b;
    ctx->key = args[0].v.i;
    mc_value *av;
    int rc = mc_cached_call_ex(ch->a, args, 1, invalidate_b, ctx, &av);
    if (rc != 0)
        return rc;
    char buf[80];
    int n = snprintf(buf, sizeof buf, "B(%.*s)", (int)mc_value_size(av), (const char *)mc_value_data(av));
    mc_value_release(av);
    return mc_load_set_copy(load, buf, (size_t)n);
}

static void test_dependent_caches(void **state)
{
    (void)state;
    db_t db = {0};
    chain_t ch = {0};
    ch.a = make_fn(&db, 100);
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.max_entries = 100;
    assert_int_equal(mc_cached_create(&o, b_loader, &ch, &ch.b), 0);
    char out[64];
    assert_int_equal(call_int(ch.b, 5, out, sizeof out), 0);
    assert_string_equal(out, "B(5:0)");
    assert_int_equal(call_int(ch.b, 5, out, sizeof out), 0);
    assert_int_equal(atomic_load(&ch.b_loads), 1);
    atomic_store(&db.version, 1);
    mc_arg k[] = {MC_ARG_I(5)};
    mc_cached_invalidate(ch.a, k, 1); /* invalidates B's entry through the callback */
    assert_int_equal(call_int(ch.b, 5, out, sizeof out), 0);
    assert_string_equal(out, "B(5:1)");
    assert_int_equal(atomic_load(&ch.b_loads), 2);
    /* A's remaining callbacks invalidate B when A goes: destroy A while B still exists. */
    mc_cached_destroy(ch.a);
    mc_cached_destroy(ch.b);
}

/* ---- iterable ---- */

static int list_loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)self;
    (void)nargs;
    int64_t n = args[0].v.i; /* a "list" of n elements */
    mc_load_set_weight(load, (uint64_t)n);
    return mc_load_set_copy(load, "list", 4);
}

static void test_iterable(void **state)
{
    (void)state;
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.max_entries = 10; /* elements, not entries */
    o.iterable = true;
    mc_cached *fn;
    assert_int_equal(mc_cached_create(&o, list_loader, NULL, &fn), 0);
    for (int64_t n = 1; n <= 4; n++)
        assert_int_equal(call_int(fn, n, NULL, 0), 0); /* 1+2+3+4 = 10 elements: all fit */
    mc_cache_stats st;
    mc_cache_stats_get(mc_cached_cache(fn), &st);
    assert_int_equal(st.entries, 4);
    assert_int_equal(st.weight, 10);
    assert_int_equal(call_int(fn, 5, NULL, 0), 0); /* 5 more: the oldest lists go */
    mc_cache_stats_get(mc_cached_cache(fn), &st);
    assert_true(st.weight <= 10);
    assert_true(st.entries < 5);
    mc_cached_destroy(fn);
}

/* An `iterable` function is bounded by weight alone: a read must still count for its LRU
 * order. n entries of weight 1 under a bound of n, read the first, load one more: the second
 * goes, not the first, at a small size (exact order) and a large one. */
static int unit_list_loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)self;
    (void)nargs;
    mc_load_set_weight(load, 1);
    return mc_load_set_copy(load, &args[0].v.i, sizeof args[0].v.i);
}

static bool cached_has(mc_cached *fn, int64_t k)
{
    unsigned char kb[MC_KEY_MAX];
    size_t kl;
    mc_arg a[] = {MC_ARG_I(k)};
    assert_int_equal(mc_key_encode(a, 1, kb, sizeof kb, &kl), 0);
    mc_value *v = NULL;
    bool has = mc_cache_get(mc_cached_cache(fn), kb, kl, &v) == 0;
    if (has)
        mc_value_release(v);
    return has;
}

static void test_iterable_records_reads(void **state)
{
    (void)state;
    const size_t sizes[] = {3, 3000};
    for (size_t s = 0; s < 2; s++) {
        int64_t n = (int64_t)sizes[s];
        mc_cached *fn;
        assert_int_equal(mc_cached_create(&MC_CACHED_OPTS(NULL, sizes[s], .iterable = true), unit_list_loader,
                                          NULL, &fn),
                         0);
        for (int64_t k = 0; k < n; k++)
            assert_int_equal(call_int(fn, k, NULL, 0), 0);
        assert_int_equal(call_int(fn, 0, NULL, 0), 0); /* a hit on the oldest */
        assert_int_equal(call_int(fn, n, NULL, 0), 0); /* one more: one must go */
        assert_true(cached_has(fn, 0));
        assert_false(cached_has(fn, 1));
        mc_cached_destroy(fn);
    }
}

/* ---- load timeouts ---- */

/* A loader that hangs until the test opens its gate; each load remembers the version current
 * when it started, so a late result can be told from a fresh one. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;
    int entered;
    int version;
    int batches;
    pthread_t loader_thread; /* the thread the last load ran on */
} gate_t;

#define GATE_INIT {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0, 0, 0, 0}

static int gate_pass(gate_t *g)
{
    pthread_mutex_lock(&g->mu);
    int version = g->version;
    g->entered++;
    g->loader_thread = pthread_self();
    pthread_cond_broadcast(&g->cv);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    return version;
}

static void gate_open(gate_t *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* Wait (60 s at most) until `n` loader calls reached the gate. */
static void gate_wait_entered(gate_t *g, int n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 60;
    pthread_mutex_lock(&g->mu);
    while (g->entered < n)
        if (pthread_cond_timedwait(&g->cv, &g->mu, &ts) != 0)
            break;
    int entered = g->entered;
    pthread_mutex_unlock(&g->mu);
    assert_int_equal(entered, n);
}

static int gated_loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)nargs;
    int version = gate_pass(self);
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%lld:%d", (long long)args[0].v.i, version);
    return mc_load_set_copy(load, buf, (size_t)n);
}

static int gated_batch_loader(void *self, const mc_arg *keys, size_t nkeys, size_t nargs,
                              mc_load *load)
{
    gate_t *g = self;
    int version = gate_pass(g);
    pthread_mutex_lock(&g->mu);
    g->batches++;
    pthread_mutex_unlock(&g->mu);
    for (size_t i = 0; i < nkeys; i++) {
        char buf[32];
        int n = snprintf(buf, sizeof buf, "b%lld:%d", (long long)keys[i * nargs].v.i, version);
        mc_load_set_copy(mc_load_item(load, i), buf, (size_t)n);
    }
    return 0;
}

/* Loads that are over, seen through the test hook, so the test can wait for a late result to
 * be stored or dropped. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    mc_cached *fn;
    int finished;
} fin = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0};

static void finish_hook(mc_cached *fn, int point, mc_load *load)
{
    (void)load;
    if (point != MC__HOOK_FINISHED || fn != fin.fn)
        return;
    pthread_mutex_lock(&fin.mu);
    fin.finished++;
    pthread_cond_broadcast(&fin.cv);
    pthread_mutex_unlock(&fin.mu);
}

static void fin_watch(mc_cached *fn)
{
    pthread_mutex_lock(&fin.mu);
    fin.fn = fn;
    fin.finished = 0;
    pthread_mutex_unlock(&fin.mu);
    mc__cached_test_hook = finish_hook;
}

static void fin_wait(int n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 60;
    pthread_mutex_lock(&fin.mu);
    while (fin.finished < n)
        if (pthread_cond_timedwait(&fin.cv, &fin.mu, &ts) != 0)
            break;
    int finished = fin.finished;
    pthread_mutex_unlock(&fin.mu);
    assert_int_equal(finished, n);
}

/* An async result the test can wait for. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls;
    int rc;
    char out[64];
} async_wait_t;

static void on_done_wait(void *ud, int rc, mc_value *v)
{
    async_wait_t *r = ud;
    pthread_mutex_lock(&r->mu);
    r->rc = rc;
    if (rc == 0) {
        snprintf(r->out, sizeof r->out, "%.*s", (int)mc_value_size(v), (const char *)mc_value_data(v));
        mc_value_release(v);
    }
    r->calls++;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void async_wait(async_wait_t *r)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 60;
    pthread_mutex_lock(&r->mu);
    while (r->calls == 0)
        if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) != 0)
            break;
    pthread_mutex_unlock(&r->mu);
    assert_int_equal(r->calls, 1);
}

#define TIMEOUT_NS 50000000ull /* 50 ms: waits end on the deadline, never on a guess */

static mc_cached *make_gated_fn(gate_t *g, uint64_t timeout_ns, bool batch)
{
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = "test.gated";
    o.max_entries = 100;
    o.load_timeout_ns = timeout_ns;
    if (batch)
        o.batch_loader = gated_batch_loader;
    mc_cached *fn = NULL;
    assert_int_equal(mc_cached_create(&o, gated_loader, g, &fn), 0);
    return fn;
}

static void test_load_timeout_waiters(void **state)
{
    (void)state;
    gate_t g = GATE_INIT;
    mc_cached *fn = make_gated_fn(&g, TIMEOUT_NS, false);
    fin_watch(fn);
    /* The caller that starts the load gives up too: the loader runs on a thread of its own. */
    assert_int_equal(call_int(fn, 1, NULL, 0), MC_ETIMEDOUT);
    gate_wait_entered(&g, 1);
    assert_false(pthread_equal(g.loader_thread, pthread_self()));
    /* Callers arriving while it hangs join it and give up at their own deadlines. */
    caller_t callers[4];
    run_callers(fn, 1, callers, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(callers[i].rc, MC_ETIMEDOUT);
    /* An async caller hears of its timeout through its callback. */
    async_wait_t r = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, {0}};
    mc_arg k[] = {MC_ARG_I(1)};
    assert_int_equal(mc_cached_call_async(fn, k, 1, on_done_wait, &r), 0);
    async_wait(&r);
    assert_int_equal(r.rc, MC_ETIMEDOUT);
    mc_cached_stats st;
    mc_cached_stats_get(fn, &st);
    assert_int_equal(st.loads, 1); /* one load for the key, however many retries */
    assert_int_equal(st.joined, 5);
    assert_int_equal(st.timeouts, 6);
    assert_int_equal(st.cache.entries, 0);
    assert_int_equal(g.entered, 1);

    /* The late result is kept: nothing invalidated the key meanwhile. */
    gate_open(&g);
    fin_wait(1);
    mc_cached_stats_get(fn, &st);
    assert_int_equal(st.cache.entries, 1);
    assert_int_equal(st.cancelled_fills, 0);
    assert_int_equal(st.load_errors, 0);
    char out[32];
    assert_int_equal(call_int(fn, 1, out, sizeof out), 0);
    assert_string_equal(out, "1:0");
    /* And the callback of a later async call runs once, with the value, not a timeout. */
    async_wait_t r2 = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, {0}};
    assert_int_equal(mc_cached_call_async(fn, k, 1, on_done_wait, &r2), 0);
    async_wait(&r2);
    assert_int_equal(r2.rc, 0);
    assert_string_equal(r2.out, "1:0");
    mc_cached_stats_get(fn, &st);
    assert_int_equal(st.loads, 1);
    assert_int_equal(st.timeouts, 6);
    mc__cached_test_hook = NULL;
    mc_cached_destroy(fn);
}

static void test_load_timeout_late_result_dropped(void **state)
{
    (void)state;
    gate_t g = GATE_INIT;
    mc_cached *fn = make_gated_fn(&g, TIMEOUT_NS, false);
    fin_watch(fn);
    assert_int_equal(call_int(fn, 2, NULL, 0), MC_ETIMEDOUT);
    gate_wait_entered(&g, 1);
    /* The data changes and the key is invalidated while the first load still hangs. */
    pthread_mutex_lock(&g.mu);
    g.version = 1;
    pthread_mutex_unlock(&g.mu);
    mc_arg k[] = {MC_ARG_I(2)};
    assert_int_equal(mc_cached_invalidate(fn, k, 1), MC_ENOENT); /* no entry, the load marked */
    /* A call after the invalidation starts a fresh load instead of joining the stale one. */
    assert_int_equal(call_int(fn, 2, NULL, 0), MC_ETIMEDOUT);
    gate_wait_entered(&g, 2);
    mc_cached_stats st;
    mc_cached_stats_get(fn, &st);
    assert_int_equal(st.loads, 2);
    assert_int_equal(st.joined, 0);
    gate_open(&g);
    fin_wait(2);
    mc_cached_stats_get(fn, &st);
    assert_int_equal(st.cancelled_fills, 1); /* the first load's result was dropped */
    assert_int_equal(st.cache.entries, 1);
    char out[32];
    assert_int_equal(call_int(fn, 2, out, sizeof out), 0);
    assert_string_equal(out, "2:1"); /* whichever load finished last, the stale one never stored */
    mc_cached_stats_get(fn, &st);
    assert_int_equal(st.loads, 2);
    mc__cached_test_hook = NULL;
    mc_cached_destroy(fn);
}

static void test_load_timeout_batch(void **state)
{
    (void)state;
    gate_t g = GATE_INIT;
    mc_cached *fn = make_gated_fn(&g, TIMEOUT_NS, true);
    fin_watch(fn);
    mc_arg keys[] = {MC_ARG_I(1), MC_ARG_I(2)};
    mc_value *vals[2];
    int rcs[2];
    assert_int_equal(mc_cached_call_many(fn, keys, 2, 1, vals, rcs), 0);
    assert_int_equal(rcs[0], MC_ETIMEDOUT);
    assert_int_equal(rcs[1], MC_ETIMEDOUT);
    assert_null(vals[0]);
    assert_null(vals[1]);
    gate_open(&g);
    fin_wait(2); /* both keys of the batch stored late */
    assert_int_equal(mc_cached_call_many(fn, keys, 2, 1, vals, rcs), 0);
    assert_int_equal(rcs[0], 0);
    assert_int_equal(rcs[1], 0);
    assert_memory_equal(mc_value_data(vals[0]), "b1:0", 4);
    assert_memory_equal(mc_value_data(vals[1]), "b2:0", 4);
    mc_value_release(vals[0]);
    mc_value_release(vals[1]);
    mc_cached_stats st;
    mc_cached_stats_get(fn, &st);
    assert_int_equal(g.batches, 1);
    assert_int_equal(st.timeouts, 2);
    mc__cached_test_hook = NULL;
    mc_cached_destroy(fn);
}

static void test_load_timeout_defaults(void **state)
{
    (void)state;
    /* The registry's default comes from the caches block of the configuration. */
    const char *yaml = "caches:\n  load_timeout: 250ms\n";
    mc_config *doc;
    mc_error err;
    assert_int_equal(mc_config_load_string(yaml, strlen(yaml), "t.yaml", &doc, &err), 0);
    mc_cache_config cc;
    mc_cache_factor *factors;
    assert_int_equal(mc_config_read_caches(mc_config_get(mc_config_root(doc), "caches"), &cc,
                                           &factors, &err), 0);
    assert_int_equal(cc.load_timeout_ns, 250000000ull);
    mc_registry *reg;
    assert_int_equal(mc_registry_create(&cc, &reg), 0);
    free(factors);
    mc_config_free(doc);

    gate_t g = GATE_INIT;
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.max_entries = 10;
    o.registry = reg;
    mc_cached *inherit, *own, *never, *alone;
    o.name = "t.inherit";
    assert_int_equal(mc_cached_create(&o, gated_loader, &g, &inherit), 0);
    o.name = "t.own";
    o.load_timeout_ns = 5000000;
    assert_int_equal(mc_cached_create(&o, gated_loader, &g, &own), 0);
    o.name = "t.never";
    o.load_timeout_ns = MC_TIMEOUT_NEVER;
    assert_int_equal(mc_cached_create(&o, gated_loader, &g, &never), 0);
    o.registry = NULL;
    o.name = "t.alone";
    o.load_timeout_ns = 0;
    assert_int_equal(mc_cached_create(&o, gated_loader, &g, &alone), 0);
    assert_int_equal(inherit->load_timeout_ns, 250000000ull);
    assert_int_equal(own->load_timeout_ns, 5000000ull);
    assert_int_equal(never->load_timeout_ns, 0);
    assert_int_equal(alone->load_timeout_ns, 0);
    /* The inherited timeout is in force. */
    assert_int_equal(call_int(inherit, 1, NULL, 0), MC_ETIMEDOUT);
    gate_open(&g);
    mc_cached_destroy(inherit); /* waits for the load still running */
    mc_cached_destroy(own);
    mc_cached_destroy(never);
    mc_cached_destroy(alone);
    mc_registry_destroy(reg);
}

/* ---- a loader failing at random under many threads ---- */

#define RND_THREADS 8
#define RND_CALLS 1500
#define RND_KEYS 32

static struct {
    atomic_ulong seq;
    atomic_int loader_calls, loader_errors;
    atomic_int version;
    atomic_bool stop;
} rnd;

static uint64_t rnd_next(void)
{
    uint64_t x = atomic_fetch_add(&rnd.seq, 1) + 1;
    x *= 0x9e3779b97f4a7c15ull;
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ull;
    return x ^ (x >> 29);
}

static int random_loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)self;
    (void)nargs;
    atomic_fetch_add(&rnd.loader_calls, 1);
    uint64_t r = rnd_next();
    if (r % 8 == 0)
        sched_yield(); /* now and then let other callers pile up on this load */
    if (r % 4 == 1) {
        atomic_fetch_add(&rnd.loader_errors, 1);
        return MC_EIO;
    }
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%lld:%d", (long long)args[0].v.i, atomic_load(&rnd.version));
    return mc_load_set_copy(load, buf, (size_t)n);
}

typedef struct {
    mc_cached *fn;
    unsigned seed;
    int ok, eio, other, wrong;
} rnd_caller_t;

static void *rnd_caller(void *arg)
{
    rnd_caller_t *c = arg;
    for (int i = 0; i < RND_CALLS; i++) {
        c->seed = c->seed * 1103515245u + 12345u;
        int64_t key = (int64_t)((c->seed >> 16) % RND_KEYS);
        mc_arg a[] = {MC_ARG_I(key)};
        mc_value *v = NULL;
        int rc = mc_cached_call(c->fn, a, 1, &v);
        if (rc == 0) {
            char want[24];
            int n = snprintf(want, sizeof want, "%lld:", (long long)key);
            if (mc_value_size(v) < (size_t)n || memcmp(mc_value_data(v), want, (size_t)n) != 0)
                c->wrong++;
            mc_value_release(v);
            c->ok++;
        } else if (rc == MC_EIO) {
            c->eio++;
        } else {
            c->other++;
        }
    }
    return NULL;
}

static void *rnd_invalidator(void *arg)
{
    mc_cached *fn = arg;
    unsigned seed = 7;
    while (!atomic_load(&rnd.stop)) {
        seed = seed * 1103515245u + 12345u;
        mc_arg a[] = {MC_ARG_I((int64_t)((seed >> 16) % RND_KEYS))};
        atomic_fetch_add(&rnd.version, 1);
        mc_cached_invalidate(fn, a, 1);
        sched_yield();
    }
    return NULL;
}

static void run_random_errors(uint64_t timeout_ns)
{
    atomic_store(&rnd.loader_calls, 0);
    atomic_store(&rnd.loader_errors, 0);
    atomic_store(&rnd.stop, false);
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.max_entries = RND_KEYS / 2; /* evictions too */
    o.load_timeout_ns = timeout_ns;
    mc_cached *fn;
    assert_int_equal(mc_cached_create(&o, random_loader, NULL, &fn), 0);
    rnd_caller_t callers[RND_THREADS];
    pthread_t th[RND_THREADS], inv;
    for (int i = 0; i < RND_THREADS; i++) {
        callers[i] = (rnd_caller_t){.fn = fn, .seed = (unsigned)i * 7919u + 1};
        assert_int_equal(pthread_create(&th[i], NULL, rnd_caller, &callers[i]), 0);
    }
    assert_int_equal(pthread_create(&inv, NULL, rnd_invalidator, fn), 0);
    for (int i = 0; i < RND_THREADS; i++)
        pthread_join(th[i], NULL);
    atomic_store(&rnd.stop, true);
    pthread_join(inv, NULL);

    int ok = 0, eio = 0;
    for (int i = 0; i < RND_THREADS; i++) {
        assert_int_equal(callers[i].other, 0); /* the value or the loader's error, nothing else */
        assert_int_equal(callers[i].wrong, 0);
        ok += callers[i].ok;
        eio += callers[i].eio;
    }
    const int total = RND_THREADS * RND_CALLS;
    assert_int_equal(ok + eio, total);
    mc_cached_stats st;
    mc_cached_stats_get(fn, &st);
    assert_int_equal(st.loads, (uint64_t)atomic_load(&rnd.loader_calls));
    assert_int_equal(st.load_errors, (uint64_t)atomic_load(&rnd.loader_errors));
    assert_int_equal(st.timeouts, 0);
    /* Every call made one counted lookup; every miss loaded, joined, or found the value on
     * its second look. */
    assert_int_equal(st.cache.hits + st.cache.misses, (uint64_t)total);
    assert_true(st.cache.misses >= st.loads + st.joined);
    /* Each failed load failed the call that started it, and at most the calls that joined. */
    assert_true((uint64_t)eio >= st.load_errors);
    assert_true((uint64_t)eio <= st.load_errors + st.joined);
    assert_true(st.load_errors > 0);
    assert_true(st.cache.entries <= RND_KEYS / 2);
    mc_cached_destroy(fn);
}

static void test_random_loader_errors(void **state)
{
    (void)state;
    run_random_errors(0);
    run_random_errors(60ull * 1000000000ull); /* loads on their own threads; none times out */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_validation),
        cmocka_unit_test(test_call_borrow),
        cmocka_unit_test(test_hit_and_miss),
        cmocka_unit_test(test_call_copy),
        cmocka_unit_test(test_errors_not_cached),
        cmocka_unit_test(test_no_value_is_cached),
        cmocka_unit_test(test_unset_result_is_none),
        cmocka_unit_test(test_key_arguments),
        cmocka_unit_test(test_single_flight),
        cmocka_unit_test(test_invalidate_inside_load),
        cmocka_unit_test(test_invalidate_after_loader_before_store),
        cmocka_unit_test(test_prefix_and_all),
        cmocka_unit_test(test_prefill),
        cmocka_unit_test(test_async),
        cmocka_unit_test(test_batch),
        cmocka_unit_test(test_batch_joins_inflight),
        cmocka_unit_test(test_invalidation_callbacks),
        cmocka_unit_test(test_dependent_caches),
        cmocka_unit_test(test_iterable),
        cmocka_unit_test(test_iterable_records_reads),
        cmocka_unit_test(test_load_timeout_waiters),
        cmocka_unit_test(test_load_timeout_late_result_dropped),
        cmocka_unit_test(test_load_timeout_batch),
        cmocka_unit_test(test_load_timeout_defaults),
        cmocka_unit_test(test_random_loader_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
