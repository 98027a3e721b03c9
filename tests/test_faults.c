/* Allocation failure injection: a realistic sequence over caches, memoized functions, the
 * registry and config loading, run again and again with its K-th allocation failing (K = 1, 2,
 * ... until a run makes fewer than K allocations), then with every N-th one failing. Every call
 * must return its normal result or MC_ENOMEM when an allocation of its own failed (or the
 * consequence of an earlier failure, e.g. a miss for a key whose put failed); afterwards every
 * cache is consistent and usable, and every owned value and callback is accounted for. Leaks
 * are caught by LeakSanitizer (ASan build) and valgrind (memcheck label). libyaml's own
 * allocations inside the parser are out of reach of the switch. */
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

#include "cache/cache_internal.h"
#include "cached/cached_internal.h"
#include "core/alloc.h"
#include "modcache.h"

/* ---------------------------------------------------------------- step checking */

/* What one run of the sequence saw. */
typedef struct {
    uint64_t plan;         /* K, or N for every-N-th runs (messages only) */
    bool failed_earlier;   /* an injected failure happened in an earlier step */
    int enomem[3];         /* steps that returned MC_ENOMEM, by layer: cache, cached, config */
    int layer;
} run_t;

enum { L_CACHE, L_CACHED, L_CONFIG };

/* A positive sentinel: no alternative result allowed. */
#define NO_ALT 1
/* Returned by the checking helpers below when a value read back is wrong: never allowed. */
#define WRONG_VALUE (-1000)

static void step_check(run_t *r, int rc, int want, int alt, uint64_t before, const char *what,
                       int line)
{
    bool here = mc__fault_injected() > before;
    bool ok = rc == want || (here && rc == MC_ENOMEM) ||
              (alt != NO_ALT && rc == alt && (here || r->failed_earlier));
    if (!ok)
        fail_msg("plan %llu, line %d: %s returned %s (%d), expected %s%s%s", (unsigned long long)r->plan,
                 line, what, mc_err_name(rc), rc, mc_err_name(want),
                 alt != NO_ALT ? " or after a failure " : "", alt != NO_ALT ? mc_err_name(alt) : "");
    if (here && rc == MC_ENOMEM)
        r->enomem[r->layer]++;
    r->failed_earlier |= here;
}

/* Run `expr` (an int) and check it: `want`, MC_ENOMEM if an allocation failed during it, or
 * `alt` once any allocation failed in this run. */
#define STEP(r, expr, want, alt)                                                                   \
    do {                                                                                           \
        uint64_t before_ = mc__fault_injected();                                                   \
        int rc_ = (expr);                                                                          \
        step_check((r), rc_, (want), (alt), before_, #expr, __LINE__);                             \
    } while (0)

/* ---------------------------------------------------------------- shared accounting */

static atomic_int owned_made, owned_freed;
static atomic_int cb_handed, cb_ran; /* callbacks given to calls, callbacks run */

static void owned_free(void *p)
{
    atomic_fetch_add(&owned_freed, 1);
    free(p);
}

static void *owned_new(const char *text)
{
    char *p = malloc(strlen(text) + 1);
    assert_non_null(p);
    strcpy(p, text);
    atomic_fetch_add(&owned_made, 1);
    return p;
}

/* ud: a closure of the caller's (malloc'd) that the callback frees, so that a callback run
 * twice is a double free and one never run a leak, under AddressSanitizer. */
static void count_cb(void *ud)
{
    free(ud);
    atomic_fetch_add(&cb_ran, 1);
}

/* ---------------------------------------------------------------- cache steps */

static size_t key2(unsigned char *buf, int64_t a, int64_t b)
{
    mc_arg args[] = {MC_ARG_I(a), MC_ARG_I(b)};
    size_t n = 0;
    assert_int_equal(mc_key_encode(args, 2, buf, MC_KEY_MAX, &n), 0);
    return n;
}

static int put_kv(mc_cache *c, int64_t a, int64_t b, const char *v)
{
    unsigned char k[MC_KEY_MAX];
    size_t kl = key2(k, a, b);
    return mc_cache_put(c, k, kl, v, strlen(v));
}

/* Get a copy and compare it with `want`. */
static int get_is(mc_cache *c, int64_t a, int64_t b, const char *want)
{
    unsigned char k[MC_KEY_MAX];
    size_t kl = key2(k, a, b);
    char buf[64];
    size_t n;
    int rc = mc_cache_get_copy(c, k, kl, buf, sizeof buf, &n);
    if (rc != 0)
        return rc;
    return n == strlen(want) && memcmp(buf, want, n) == 0 ? 0 : WRONG_VALUE;
}

/* Get a pinned value and compare it with `want`. */
static int get_pinned_is(mc_cache *c, int64_t a, int64_t b, const char *want)
{
    unsigned char k[MC_KEY_MAX];
    size_t kl = key2(k, a, b);
    mc_value *v;
    int rc = mc_cache_get(c, k, kl, &v);
    if (rc != 0)
        return rc;
    rc = mc_value_size(v) == strlen(want) && memcmp(mc_value_data(v), want, strlen(want)) == 0
             ? 0
             : WRONG_VALUE;
    mc_value_release(v);
    return rc;
}

/* Replace a value and read it back: the new value, or after a failed put the old one (or
 * none, if its own put failed earlier): a failed put leaves the cache unchanged. */
static int replace_kv(mc_cache *c, int64_t a, int64_t b, const char *old, const char *v)
{
    int rc = put_kv(c, a, b, v);
    int got = get_is(c, a, b, rc == 0 ? v : old);
    if (got != 0 && !(rc != 0 && got == MC_ENOENT))
        return WRONG_VALUE;
    return rc;
}

static int put_owned_kv(mc_cache *c, int64_t a, int64_t b, const char *text)
{
    unsigned char k[MC_KEY_MAX];
    size_t kl = key2(k, a, b);
    void *v = owned_new(text);
    int rc = mc_cache_put_owned(c, k, kl, v, strlen(text), owned_free, 0, 0);
    if (rc != 0)
        owned_free(v); /* ownership stays with the caller on any error */
    return rc;
}

static int remove_kv(mc_cache *c, int64_t a, int64_t b)
{
    unsigned char k[MC_KEY_MAX];
    size_t kl = key2(k, a, b);
    return mc_cache_remove(c, k, kl);
}

static int remove_user(mc_cache *c, int64_t a)
{
    mc_arg args[] = {MC_ARG_I(a)};
    unsigned char p[MC_KEY_MAX];
    size_t pl;
    assert_int_equal(mc_key_encode(args, 1, p, sizeof p, &pl), 0);
    size_t removed = 0;
    int rc = mc_cache_remove_prefix(c, p, pl, &removed);
    for (int64_t b = 0; b < 128 && rc == 0; b++) {
        unsigned char k[MC_KEY_MAX];
        size_t kl = key2(k, a, b);
        if (mc_cache_contains(c, k, kl))
            return WRONG_VALUE;
    }
    return rc;
}

typedef struct {
    mc_cache *lru, *s3;
    mc_registry *reg;
    mc_cached *one, *batch, *slow, *owned;
    mc_config *doc;
    mc_registry *cfg_reg;
    mc_cache_factor *factors;
} objects_t;

static void cache_steps(run_t *r, objects_t *ob)
{
    r->layer = L_CACHE;
    mc_cache_options o;
    mc_cache_options_init(&o);
    o.max_entries = 8;
    o.shards = 2;
    o.seed = 42;
    o.track_access = true;
    STEP(r, mc_cache_create(&o, &ob->lru), 0, NO_ALT);
    mc_cache_options_init(&o);
    o.max_entries = 64;
    o.max_bytes = 2048;
    o.shards = 1;
    o.seed = 7;
    o.policy = MC_POLICY_S3FIFO;
    STEP(r, mc_cache_create(&o, &ob->s3), 0, NO_ALT);

    mc_cache *c = ob->lru;
    if (c) {
        char v[32];
        for (int i = 0; i < 20; i++) {
            snprintf(v, sizeof v, "v%d", i);
            STEP(r, put_kv(c, i % 4, i, v), 0, NO_ALT);
        }
        for (int i = 16; i < 20; i++) {
            snprintf(v, sizeof v, "v%d", i);
            STEP(r, get_is(c, i % 4, i, v), 0, MC_ENOENT);
        }
        STEP(r, get_pinned_is(c, 3, 19, "v19"), 0, MC_ENOENT);
        STEP(r, mc_cache_put_if_absent(c, "\x01", 1, "x", 1), 0, NO_ALT);
        STEP(r, mc_cache_put_if_absent(c, "\x01", 1, "y", 1), MC_EEXIST, 0);
        STEP(r, put_owned_kv(c, 0, 100, "owned"), 0, NO_ALT);
        STEP(r, get_pinned_is(c, 0, 100, "owned"), 0, MC_ENOENT);
        STEP(r, replace_kv(c, 3, 19, "v19", "replaced"), 0, NO_ALT);
        /* Growing the bound makes the index grow by rebuilds. */
        STEP(r, mc_cache_resize(c, 400, 0), 0, NO_ALT);
        for (int i = 20; i < 120; i++) {
            snprintf(v, sizeof v, "w%d", i);
            STEP(r, put_kv(c, i % 4, i, v), 0, NO_ALT);
        }
        STEP(r, get_is(c, 1, 101, "w101"), 0, MC_ENOENT);
        STEP(r, remove_user(c, 1), 0, NO_ALT);
        STEP(r, remove_kv(c, 2, 98), 0, MC_ENOENT);
        STEP(r, remove_kv(c, 2, 98), MC_ENOENT, NO_ALT);
        STEP(r, mc_cache_resize(c, 16, 0), 0, NO_ALT);
        size_t evicted = 0;
        STEP(r, mc_cache_evict_idle(c, 0, 4, &evicted), 0, NO_ALT);
        mc_cache_cleanup(c);
        mc_cache_clear(c);
        STEP(r, (int)mc_cache_size(c), 0, NO_ALT);
        STEP(r, put_kv(c, 5, 5, "after clear"), 0, NO_ALT);
    }
    c = ob->s3;
    if (c) {
        /* Enough churn for the ghost to rotate its filters, reads to promote, a resize to rebuild it. */
        char v[48];
        for (int i = 0; i < 300; i++) {
            snprintf(v, sizeof v, "s3 value %d", i);
            STEP(r, put_kv(c, 9, i, v), 0, NO_ALT);
            if (i % 3 == 0)
                STEP(r, get_is(c, 9, i, v), 0, MC_ENOENT);
        }
        STEP(r, mc_cache_resize(c, 200, 4096), 0, NO_ALT);
        for (int i = 0; i < 50; i++)
            STEP(r, put_owned_kv(c, 8, i, "owned s3"), 0, NO_ALT);
        STEP(r, remove_user(c, 8), 0, NO_ALT);
    }
}

/* ---------------------------------------------------------------- memoized-function steps */

static int copy_loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)self;
    char buf[48];
    int n = snprintf(buf, sizeof buf, "L%lld.%lld", (long long)args[0].v.i,
                     nargs > 1 ? (long long)args[1].v.i : -1LL);
    return mc_load_set_copy(load, buf, (size_t)n);
}

static int owned_loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)self;
    (void)nargs;
    char buf[48];
    snprintf(buf, sizeof buf, "O%lld", (long long)args[0].v.i);
    void *p = owned_new(buf);
    return mc_load_set_owned(load, p, strlen(buf), owned_free);
}

static int batch_loader(void *self, const mc_arg *keys, size_t nkeys, size_t nargs, mc_load *load)
{
    (void)self;
    for (size_t i = 0; i < nkeys; i++) {
        int64_t k = keys[i * nargs].v.i;
        if (k % 5 == 4)
            continue; /* "no value" */
        char buf[32];
        int n = snprintf(buf, sizeof buf, "B%lld", (long long)k);
        int rc = mc_load_set_copy(mc_load_item(load, i), buf, (size_t)n);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Call with (a, b) and check the value the loader makes for it (or `want` if not NULL). */
static int call_is(mc_cached *fn, int64_t a, int64_t b, int nargs, const char *want)
{
    mc_arg args[] = {MC_ARG_I(a), MC_ARG_I(b)};
    mc_value *v;
    int rc = mc_cached_call(fn, args, (size_t)nargs, &v);
    if (rc != 0)
        return rc;
    char expect[48];
    if (!want) {
        snprintf(expect, sizeof expect, "L%lld.%lld", (long long)a, nargs > 1 ? (long long)b : -1LL);
        want = expect;
    }
    rc = mc_value_size(v) == strlen(want) && memcmp(mc_value_data(v), want, strlen(want)) == 0
             ? 0
             : WRONG_VALUE;
    mc_value_release(v);
    return rc;
}

static int call_ex_counted(mc_cached *fn, int64_t a, int64_t b)
{
    mc_arg args[] = {MC_ARG_I(a), MC_ARG_I(b)};
    mc_value *v;
    /* Handed over whatever the call returns: it runs exactly once, on error too. */
    int *closure = malloc(sizeof *closure);
    assert_non_null(closure);
    atomic_fetch_add(&cb_handed, 1);
    int rc = mc_cached_call_ex(fn, args, 2, count_cb, closure, &v);
    if (rc == 0)
        mc_value_release(v);
    return rc;
}

/* Async results: counted, so the run can wait for every callback it expects. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int pending;
    int bad;
} async_state = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};

static void async_done(void *ud, int rc, mc_value *v)
{
    (void)ud;
    pthread_mutex_lock(&async_state.mu);
    if (rc == 0)
        mc_value_release(v);
    else if (rc != MC_ENOMEM)
        async_state.bad++;
    async_state.pending--;
    pthread_cond_broadcast(&async_state.cv);
    pthread_mutex_unlock(&async_state.mu);
}

static int call_async_counted(mc_cached *fn, int64_t a)
{
    mc_arg args[] = {MC_ARG_I(a), MC_ARG_I(0)};
    pthread_mutex_lock(&async_state.mu);
    async_state.pending++;
    pthread_mutex_unlock(&async_state.mu);
    int *closure = malloc(sizeof *closure);
    assert_non_null(closure);
    atomic_fetch_add(&cb_handed, 1);
    int rc = mc_cached_call_async_ex(fn, args, 2, async_done, NULL, count_cb, closure);
    if (rc != 0) {
        pthread_mutex_lock(&async_state.mu);
        async_state.pending--;
        pthread_mutex_unlock(&async_state.mu);
    }
    return rc;
}

static void async_wait_all(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 60;
    pthread_mutex_lock(&async_state.mu);
    while (async_state.pending > 0)
        if (pthread_cond_timedwait(&async_state.cv, &async_state.mu, &ts) != 0)
            break;
    int pending = async_state.pending, bad = async_state.bad;
    pthread_mutex_unlock(&async_state.mu);
    assert_int_equal(pending, 0);
    assert_int_equal(bad, 0);
}

/* A batch call: every key gets its value, "no value", or MC_ENOMEM. */
static int call_many_checked(mc_cached *fn)
{
    mc_arg keys[] = {MC_ARG_I(20), MC_ARG_I(21), MC_ARG_I(24), MC_ARG_I(21), MC_ARG_I(3)};
    mc_value *vals[5];
    int rcs[5];
    void *closures[5];
    for (int i = 0; i < 5; i++) {
        closures[i] = malloc(sizeof(int));
        assert_non_null(closures[i]);
        atomic_fetch_add(&cb_handed, 1);
    }
    int rc = mc_cached_call_many_ex(fn, keys, 5, 1, count_cb, closures, vals, rcs);
    for (int i = 0; i < 5; i++) {
        if (rcs[i] != 0) {
            if (rcs[i] != MC_ENOMEM || vals[i])
                rc = WRONG_VALUE;
            continue;
        }
        char want[16];
        snprintf(want, sizeof want, "B%lld", (long long)keys[i].v.i);
        bool none = keys[i].v.i % 5 == 4;
        if (none ? !mc_value_is_none(vals[i])
                 : mc_value_size(vals[i]) != strlen(want) ||
                       memcmp(mc_value_data(vals[i]), want, strlen(want)) != 0)
            rc = WRONG_VALUE;
        mc_value_release(vals[i]);
    }
    /* A per-key failure is reported as the whole call's MC_ENOMEM for checking. */
    for (int i = 0; i < 5 && rc == 0; i++)
        if (rcs[i] == MC_ENOMEM)
            rc = MC_ENOMEM;
    return rc;
}

static int invalidate2(mc_cached *fn, int64_t a, int64_t b)
{
    mc_arg args[] = {MC_ARG_I(a), MC_ARG_I(b)};
    return mc_cached_invalidate(fn, args, 2);
}

static int invalidate_user(mc_cached *fn, int64_t a)
{
    mc_arg args[] = {MC_ARG_I(a)};
    return mc_cached_invalidate_prefix(fn, args, 1, NULL);
}

static int prefill2(mc_cached *fn, int64_t a, int64_t b, const char *v)
{
    mc_arg args[] = {MC_ARG_I(a), MC_ARG_I(b)};
    mc_prefill_options po;
    mc_prefill_options_init(&po);
    po.on_invalidate = count_cb;
    po.ud = malloc(sizeof(int));
    assert_non_null(po.ud);
    atomic_fetch_add(&cb_handed, 1);
    return mc_cached_prefill_ex(fn, args, 2, v, strlen(v), &po);
}

/* Prefill, then call: the prefilled value when the prefill worked, the loader's otherwise. */
static int prefill_then_call(mc_cached *fn, int64_t a, int64_t b)
{
    int rc = prefill2(fn, a, b, "pre");
    if (rc != 0 && rc != MC_ENOMEM)
        return rc;
    int crc = call_is(fn, a, b, 2, rc == 0 ? "pre" : NULL);
    return crc != 0 ? crc : rc;
}

/* A call whose loader hands its value over (mc_load_set_owned). */
static int call_owned_is(mc_cached *fn, int64_t a)
{
    mc_value *v;
    int rc = mc_cached_call(fn, (const mc_arg[]){MC_ARG_I(a)}, 1, &v);
    if (rc != 0)
        return rc;
    char want[32];
    snprintf(want, sizeof want, "O%lld", (long long)a);
    rc = mc_value_size(v) == strlen(want) && memcmp(mc_value_data(v), want, strlen(want)) == 0
             ? 0
             : WRONG_VALUE;
    mc_value_release(v);
    return rc;
}

static int create_fn(mc_registry *reg, const char *name, mc_loader_fn loader, bool batch,
                     uint64_t timeout_ns, mc_cached **out)
{
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = name;
    o.max_entries = 16;
    o.tree = true;
    o.registry = reg;
    o.load_timeout_ns = timeout_ns;
    if (batch)
        o.batch_loader = batch_loader;
    return mc_cached_create(&o, loader, NULL, out);
}

static void count_fn(void *ud, mc_cached *fn, const mc_cached_stats *st)
{
    (void)fn;
    (void)st;
    (*(int *)ud)++;
}

static void cached_steps(run_t *r, objects_t *ob)
{
    r->layer = L_CACHED;
    mc_cache_config cfg;
    mc_cache_config_init(&cfg);
    const mc_cache_factor factors[] = {{"f.one", 2.0}, {"f.batch", 0.5}};
    cfg.per_cache_factors = factors;
    cfg.n_per_cache_factors = 2;
    STEP(r, mc_registry_create(&cfg, &ob->reg), 0, NO_ALT);
    if (!ob->reg)
        return;
    STEP(r, create_fn(ob->reg, "f.one", copy_loader, false, 0, &ob->one), 0, NO_ALT);
    STEP(r, create_fn(ob->reg, "f.batch", NULL, true, 0, &ob->batch), 0, NO_ALT);
    /* A load timeout far beyond any run: its loads run on threads of their own. */
    STEP(r, create_fn(NULL, "f.slow", copy_loader, true, 600ull * 1000000000u, &ob->slow), 0, NO_ALT);
    STEP(r, create_fn(ob->reg, "f.owned", owned_loader, false, 0, &ob->owned), 0, NO_ALT);

    /* The function with a timeout gets a shorter sequence: each of its loads is a thread. */
    mc_cached *fns[] = {ob->one, ob->slow};
    for (int f = 0; f < 2; f++) {
        mc_cached *fn = fns[f];
        if (!fn)
            continue;
        int n = fn == ob->slow ? 3 : 10;
        for (int i = 0; i < n; i++)
            STEP(r, call_is(fn, i / 3, i, 2, NULL), 0, NO_ALT);
        for (int i = 0; i < n; i += 2)
            STEP(r, call_is(fn, i / 3, i, 2, NULL), 0, NO_ALT); /* hits, or loads again */
        STEP(r, call_ex_counted(fn, 7, 70), 0, NO_ALT);
        STEP(r, call_ex_counted(fn, 7, 70), 0, NO_ALT);
        STEP(r, call_async_counted(fn, 11), 0, NO_ALT);
        STEP(r, call_async_counted(fn, 12), 0, NO_ALT);
        STEP(r, invalidate2(fn, 0, 1), 0, MC_ENOENT);
        STEP(r, invalidate_user(fn, 2), 0, NO_ALT);
        STEP(r, prefill_then_call(fn, 5, 5), 0, NO_ALT);
        STEP(r, mc_cached_invalidate_json(fn, "[7, 70]", 7, NULL), 0, NO_ALT);
    }
    async_wait_all();
    if (ob->slow)
        STEP(r, call_many_checked(ob->slow), 0, NO_ALT);
    if (ob->batch) {
        STEP(r, call_many_checked(ob->batch), 0, NO_ALT);
        STEP(r, call_many_checked(ob->batch), 0, NO_ALT);
        mc_cached_invalidate_all(ob->batch);
        STEP(r, call_many_checked(ob->batch), 0, NO_ALT);
    }
    if (ob->owned) {
        for (int i = 0; i < 20; i++)
            STEP(r, call_owned_is(ob->owned, i % 12), 0, NO_ALT);
    }
    if (ob->one) {
        const char *keys[] = {"[1, 4]", "[2, 6]"};
        STEP(r, mc_registry_invalidate(ob->reg, "f.one", keys, 2, NULL), 0, NO_ALT);
        STEP(r, mc_registry_set_factor(ob->reg, "f.one", 3.0), 0, NO_ALT);
    }
    STEP(r, mc_registry_set_factor(ob->reg, NULL, 0.5), 0, NO_ALT);
    STEP(r, mc_registry_set_factor(ob->reg, "f.none", 2.0), MC_ENOENT, NO_ALT);
    if (ob->slow) {
        STEP(r, mc_registry_add(ob->reg, ob->slow), 0, NO_ALT);
    }
    size_t evicted;
    mc_registry_maintain(ob->reg, &evicted);
    int listed = 0;
    mc_registry_list(ob->reg, count_fn, &listed);
    int expect = (ob->one != NULL) + (ob->batch != NULL) + (ob->owned != NULL) +
                 (ob->slow != NULL && mc_registry_find(ob->reg, "f.slow") == ob->slow);
    STEP(r, listed == expect ? 0 : WRONG_VALUE, 0, NO_ALT);
}

/* ---------------------------------------------------------------- config steps */

static const char yaml_doc[] =
    "server:\n"
    "  listen: 127.0.0.1:8008\n"
    "  admin_token_file: admin.token\n"
    "caches:\n"
    "  global_factor: 1.5\n"
    "  per_cache_factors:\n"
    "    example_dept.get_department_for_user: 2.0\n"
    "    f.one: 0.5\n"
    "    f.two: 4\n"
    "  expire_caches: true\n"
    "  cache_entry_ttl: 30m\n"
    "  load_timeout: 5s\n"
    "  cache_autotuning: {max_cache_memory_usage: 1G, target_cache_memory_usage: 768M,\n"
    "                     min_cache_ttl: 5m}\n"
    "modules:\n"
    "  - module: example_dept\n"
    "    config: {database: dept.sqlite, pool: [1, 2, 3], options: {a: 1, b: [x, y]}}\n"
    "  - module: second\n"
    "    config: {}\n"
    "  - module: third\n"
    "    config:\n"
    "      nested: {deeper: {deepest: [\"one\", \"two\", \"three\", \"four\", \"five\"]}}\n";

static char yaml_path[64];

static int load_and_read(objects_t *ob)
{
    mc_error err = {0};
    int rc = mc_config_load_string(yaml_doc, strlen(yaml_doc), "faults.yaml", &ob->doc, &err);
    if (rc != 0)
        return err.code == rc && err.message[0] ? rc : WRONG_VALUE;
    const mc_config_node *mods = mc_config_get(mc_config_root(ob->doc), "modules");
    if (mc_config_count(mods) != 3)
        return WRONG_VALUE;
    mc_cache_config cc;
    rc = mc_config_read_caches(mc_config_get(mc_config_root(ob->doc), "caches"), &cc, &ob->factors, &err);
    if (rc != 0)
        return err.code == rc ? rc : WRONG_VALUE;
    if (cc.n_per_cache_factors != 3 || cc.load_timeout_ns != 5000000000ull)
        return WRONG_VALUE;
    return mc_registry_create(&cc, &ob->cfg_reg);
}

static int load_file_once(void)
{
    mc_config *doc = NULL;
    mc_error err = {0};
    int rc = mc_config_load_file(yaml_path, &doc, &err);
    if (rc == 0) {
        const char *s;
        rc = mc_config_string(mc_config_get(mc_config_get(mc_config_root(doc), "server"), "listen"), &s, &err);
        if (rc == 0 && strcmp(s, "127.0.0.1:8008") != 0)
            rc = WRONG_VALUE;
    } else if (err.code != rc) {
        rc = WRONG_VALUE;
    }
    mc_config_free(doc);
    return rc;
}

static int load_refused(const char *text, const char *needle)
{
    mc_config *doc = NULL;
    mc_error err = {0};
    int rc = mc_config_load_string(text, strlen(text), "bad.yaml", &doc, &err);
    if (rc == 0) {
        mc_config_free(doc);
        return WRONG_VALUE;
    }
    if (err.code != rc || (rc == MC_EPARSE && !strstr(err.message, needle)))
        return WRONG_VALUE;
    return rc;
}

static void config_steps(run_t *r, objects_t *ob)
{
    r->layer = L_CONFIG;
    STEP(r, load_and_read(ob), 0, NO_ALT);
    STEP(r, load_file_once(), 0, NO_ALT);
    STEP(r, load_refused("a: 1\nb: [1, 2]\na: 2\n", "duplicate key"), MC_EPARSE, NO_ALT);
    char deep[200];
    memset(deep, '[', 70);
    memset(deep + 70, ']', 70);
    deep[140] = 0;
    STEP(r, load_refused(deep, "nested too deeply"), MC_EPARSE, NO_ALT);
}

/* ---------------------------------------------------------------- after the run */

/* With injection off: every cache consistent and usable, then everything destroyed. */
static void check_and_destroy(objects_t *ob)
{
    char msg[200];
    mc_cache *caches[] = {ob->lru, ob->s3};
    for (int i = 0; i < 2; i++) {
        if (!caches[i])
            continue;
        if (mc__cache_verify(caches[i], msg, sizeof msg) != 0)
            fail_msg("cache %d inconsistent: %s", i, msg);
        assert_int_equal(put_kv(caches[i], 77, 77, "usable"), 0);
        assert_int_equal(get_is(caches[i], 77, 77, "usable"), 0);
        mc_cache_destroy(caches[i]);
    }
    mc_cached *fns[] = {ob->one, ob->batch, ob->slow, ob->owned};
    for (int i = 0; i < 4; i++) {
        if (!fns[i])
            continue;
        if (mc__cache_verify(mc_cached_cache(fns[i]), msg, sizeof msg) != 0)
            fail_msg("function %s: cache inconsistent: %s", mc_cached_name(fns[i]), msg);
        mc_value *v;
        if (fns[i] == ob->batch) {
            int rc;
            mc_arg k[] = {MC_ARG_I(33)};
            assert_int_equal(mc_cached_call_many(fns[i], k, 1, 1, &v, &rc), 0);
            assert_int_equal(rc, 0);
        } else {
            mc_arg k[] = {MC_ARG_I(33), MC_ARG_I(1)};
            assert_int_equal(mc_cached_call(fns[i], k, 2, &v), 0);
        }
        mc_value_release(v);
        mc_cached_destroy(fns[i]);
    }
    mc_registry_destroy(ob->reg);
    mc_registry_destroy(ob->cfg_reg);
    free(ob->factors);
    mc_config_free(ob->doc);
    mc__reclaim_now();
    /* Every value handed over was freed once, every attached callback ran once. */
    assert_int_equal(atomic_load(&owned_made), atomic_load(&owned_freed));
    assert_int_equal(atomic_load(&cb_handed), atomic_load(&cb_ran));
}

/* One run under a plan; returns the number of failures injected. */
static uint64_t run_once(const mc__fault_plan *plan, uint64_t label, int enomem[3])
{
    run_t r = {.plan = label};
    objects_t ob = {0};
    mc__fault_arm(plan);
    cache_steps(&r, &ob);
    cached_steps(&r, &ob);
    config_steps(&r, &ob);
    uint64_t injected = mc__fault_injected();
    mc__fault_arm(NULL);
    check_and_destroy(&ob);
    for (int i = 0; i < 3; i++)
        enomem[i] += r.enomem[i];
    return injected;
}

static int setup(void **state)
{
    (void)state;
    snprintf(yaml_path, sizeof yaml_path, "/tmp/mc_faults_%d.yaml", (int)getpid());
    FILE *f = fopen(yaml_path, "w");
    if (!f)
        return -1;
    fputs(yaml_doc, f);
    fclose(f);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(yaml_path);
    return 0;
}

/* ---------------------------------------------------------------- tests */

static void test_switch(void **state)
{
    (void)state;
    /* The K-th allocation fails, and only it. */
    mc__fault_plan p = {.first = 3};
    mc__fault_arm(&p);
    void *a = mc__malloc(8), *b = mc__calloc(1, 8), *c = mc__strdup("x"), *d = mc__alloc(8);
    assert_non_null(a);
    assert_non_null(b);
    assert_null(c);
    assert_non_null(d);
    assert_int_equal(mc__fault_injected(), 1);
    assert_int_equal(mc__fault_counted(), 4);
    /* A failed realloc leaves the block as it was. */
    p = (mc__fault_plan){.first = 1};
    mc__fault_arm(&p);
    assert_null(mc__realloc(a, 64));
    mc__fault_arm(NULL);
    free(a);
    free(b);
    mc__free(d, 8);
    /* Every third from the second on. */
    p = (mc__fault_plan){.first = 2, .every = 3};
    mc__fault_arm(&p);
    int pattern = 0;
    for (int i = 1; i <= 9; i++) {
        void *x = mc__malloc(4);
        pattern |= (x == NULL) << i;
        free(x);
    }
    mc__fault_arm(NULL);
    assert_int_equal(pattern, (1 << 2) | (1 << 5) | (1 << 8));
    /* Disarmed: nothing fails, nothing is counted. */
    void *y = mc__malloc(4);
    assert_non_null(y);
    free(y);
    assert_int_equal(mc__fault_injected(), 3);
}

static void test_every_kth_allocation(void **state)
{
    (void)state;
    int enomem[3] = {0};
    uint64_t k = 1;
    for (;; k++) {
        mc__fault_plan p = {.first = k};
        if (run_once(&p, k, enomem) == 0)
            break; /* the run made fewer than k allocations: every one has failed once */
        if (k > 200000)
            fail_msg("the sequence never completes without an injected failure");
    }
    /* The failure-free run counted its allocations: each of them was failed once above. */
    mc__fault_plan p = {.first = UINT64_MAX};
    int unused[3] = {0};
    run_once(&p, 0, unused);
    uint64_t counted = mc__fault_counted();
    printf("sequence: %llu allocations seen by the switch, %llu runs; MC_ENOMEM returned by "
           "%d cache, %d memoized-function, %d config steps\n",
           (unsigned long long)counted, (unsigned long long)k, enomem[L_CACHE], enomem[L_CACHED],
           enomem[L_CONFIG]);
    assert_true(counted + 1 >= k);
    /* Each layer's allocations are reached, and their failures reported. */
    assert_true(enomem[L_CACHE] > 0);
    assert_true(enomem[L_CACHED] > 0);
    assert_true(enomem[L_CONFIG] > 0);
}

static void test_every_nth_allocation(void **state)
{
    (void)state;
    /* Many failures in one run, counted per thread (loads on their own threads too). */
    int enomem[3] = {0};
    for (uint64_t n = 2; n <= 13; n++) {
        mc__fault_plan p = {.first = n, .every = n, .per_thread = n % 2 == 1};
        assert_true(run_once(&p, n, enomem) > 0);
    }
    assert_true(enomem[L_CACHE] + enomem[L_CACHED] + enomem[L_CONFIG] > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_switch),
        cmocka_unit_test(test_every_kth_allocation),
        cmocka_unit_test(test_every_nth_allocation),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
