/* Tests of the registry of memoized functions: validation and defaults, registration by name,
 * listing, invalidation by name, cache factors and their overrides, TTL, autotuning, the thread. */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "modcache.h"
#include "cached/cached_host.h"

#define SEC 1000000000ull
#define MSEC 1000000ull

/* ---- helpers ---- */

/* A clock the test moves by hand. Atomic because the maintenance thread reads it. */
typedef struct {
    _Atomic uint64_t now;
} test_clock;

static uint64_t clock_read(void *ud) { return atomic_load(&((test_clock *)ud)->now); }

static void clock_advance(test_clock *c, uint64_t ns) { atomic_fetch_add(&c->now, ns); }

/* Loader calls are what tells a hit from a reload. */
typedef struct {
    atomic_int calls;
} counter;

/* Value: the first argument as text, so that a wrong entry would show in the bytes. */
static int text_loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    counter *c = self;
    atomic_fetch_add(&c->calls, 1);
    char buf[64];
    int n;
    if (nargs >= 1 && args[0].type == MC_ARG_STR)
        n = snprintf(buf, sizeof buf, "s:%.*s", (int)args[0].v.s.len, (const char *)args[0].v.s.ptr);
    else if (nargs >= 1 && args[0].type == MC_ARG_INT)
        n = snprintf(buf, sizeof buf, "i:%lld", (long long)args[0].v.i);
    else
        n = snprintf(buf, sizeof buf, "other");
    return mc_load_set_copy(load, buf, (size_t)n);
}

static mc_cached *make_fn_ex(mc_registry *reg, const char *name, size_t max_entries, bool keep_unread,
                             test_clock *clk, counter *ctr)
{
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = name;
    o.max_entries = max_entries;
    o.keep_unread_entries = keep_unread;
    o.registry = reg;
    if (clk) {
        o.clock = clock_read;
        o.clock_ud = clk;
    }
    mc_cached *fn = NULL;
    int rc = mc_cached_create(&o, text_loader, ctr, &fn);
    if (rc != 0)
        fail_msg("mc_cached_create(%s): %s", name ? name : "(null)", mc_err_name(rc));
    assert_non_null(fn);
    return fn;
}

static mc_cached *make_fn(mc_registry *reg, const char *name, size_t max_entries, counter *ctr)
{
    return make_fn_ex(reg, name, max_entries, false, NULL, ctr);
}

static mc_registry *make_reg(const mc_cache_config *cfg)
{
    mc_registry *reg = NULL;
    int rc = mc_registry_create(cfg, &reg);
    if (rc != 0)
        fail_msg("mc_registry_create: %s", mc_err_name(rc));
    assert_non_null(reg);
    return reg;
}

static int call_int(mc_cached *fn, int64_t k)
{
    mc_arg a[] = {MC_ARG_I(k)};
    mc_value *v = NULL;
    int rc = mc_cached_call(fn, a, 1, &v);
    if (rc == 0) {
        char want[32];
        int n = snprintf(want, sizeof want, "i:%lld", (long long)k);
        assert_int_equal(mc_value_size(v), (size_t)n);
        assert_memory_equal(mc_value_data(v), want, (size_t)n);
        mc_value_release(v);
    }
    return rc;
}

static void fill(mc_cached *fn, int64_t from, int64_t n)
{
    for (int64_t k = from; k < from + n; k++)
        assert_int_equal(call_int(fn, k), 0);
}

/* Presence without touching recency or the hit counters. */
static bool present(mc_cached *fn, int64_t k)
{
    mc_arg a[] = {MC_ARG_I(k)};
    unsigned char key[MC_KEY_MAX];
    size_t klen;
    assert_int_equal(mc_key_encode(a, 1, key, sizeof key, &klen), 0);
    return mc_cache_contains(mc_cached_cache(fn), key, klen);
}

static mc_cache_stats cstats(mc_cached *fn)
{
    mc_cache_stats st;
    mc_cache_stats_get(mc_cached_cache(fn), &st);
    return st;
}

static uint64_t bound_of(mc_cached *fn) { return cstats(fn).max_entries; }

static uint64_t entries_of(mc_cached *fn) { return cstats(fn).entries; }

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

extern char **environ;

/* Every factor override is cleared before each test, so that neither one test's variables nor
 * the caller's shell can change another test's bounds. */
static int clear_env(void **state)
{
    (void)state;
    static const char prefix[] = "MODCACHE_CACHE_FACTOR";
    bool again = true;
    while (again) {
        /* unsetenv reshuffles environ: find one, remove it, scan again. */
        again = false;
        for (char **e = environ; *e; e++) {
            if (strncmp(*e, prefix, sizeof prefix - 1) != 0)
                continue;
            char name[256];
            size_t n = strcspn(*e, "=");
            if (n >= sizeof name)
                continue;
            memcpy(name, *e, n);
            name[n] = 0;
            unsetenv(name);
            again = true;
            break;
        }
    }
    return 0;
}

/* ---- creation ---- */

static void test_create_validation(void **state)
{
    (void)state;
    mc_cache_config cfg;
    mc_registry *reg = (mc_registry *)1;
    assert_int_equal(mc_registry_create(NULL, NULL), MC_EINVAL);

    mc_cache_config_init(&cfg);
    cfg.global_factor = -1.0;
    assert_int_equal(mc_registry_create(&cfg, &reg), MC_EINVAL);
    assert_null(reg); /* never left dangling on failure */
    cfg.global_factor = NAN;
    assert_int_equal(mc_registry_create(&cfg, &reg), MC_EINVAL);

    mc_cache_config_init(&cfg);
    mc_cache_factor zero[] = {{"a.fn", 0.0}};
    cfg.per_cache_factors = zero;
    cfg.n_per_cache_factors = 1;
    assert_int_equal(mc_registry_create(&cfg, &reg), MC_EINVAL);
    mc_cache_factor negative[] = {{"a.fn", 2.0}, {"b.fn", -0.5}};
    cfg.per_cache_factors = negative;
    cfg.n_per_cache_factors = 2;
    assert_int_equal(mc_registry_create(&cfg, &reg), MC_EINVAL);
    mc_cache_factor unnamed[] = {{"a.fn", 2.0}, {NULL, 2.0}};
    cfg.per_cache_factors = unnamed;
    assert_int_equal(mc_registry_create(&cfg, &reg), MC_EINVAL);
    cfg.per_cache_factors = NULL; /* a count without an array */
    cfg.n_per_cache_factors = 1;
    assert_int_equal(mc_registry_create(&cfg, &reg), MC_EINVAL);

    mc_cache_config_init(&cfg);
    cfg.max_cache_memory_usage = 1000;
    cfg.target_cache_memory_usage = 1001;
    assert_int_equal(mc_registry_create(&cfg, &reg), MC_EINVAL);
    assert_null(reg);
    cfg.target_cache_memory_usage = 1000; /* equal is fine */
    reg = make_reg(&cfg);
    mc_registry_destroy(reg);
    cfg.target_cache_memory_usage = 0; /* 0: the maximum itself */
    reg = make_reg(&cfg);
    mc_registry_destroy(reg);

    /* A global factor of 0 means "unset": the default 1.0, not an error. */
    mc_cache_config_init(&cfg);
    cfg.global_factor = 0.0;
    reg = make_reg(&cfg);
    counter ctr = {0};
    mc_cached *fn = make_fn(reg, "zero.global", 40, &ctr);
    assert_int_equal(bound_of(fn), 40);
    mc_cached_destroy(fn);
    mc_registry_destroy(reg);

    /* Per-cache factors are copied: the caller's array may go away. */
    mc_cache_config_init(&cfg);
    mc_cache_factor *heap = malloc(sizeof *heap);
    char *hname = strdup("copied.fn");
    assert_non_null(heap);
    assert_non_null(hname);
    heap->name = hname;
    heap->factor = 3.0;
    cfg.per_cache_factors = heap;
    cfg.n_per_cache_factors = 1;
    reg = make_reg(&cfg);
    memset(hname, 'x', strlen(hname));
    free(hname);
    free(heap);
    fn = make_fn(reg, "copied.fn", 10, &ctr);
    assert_int_equal(bound_of(fn), 30);
    mc_cached_destroy(fn);
    mc_registry_destroy(reg);

    mc_registry_destroy(NULL);
    mc_cache_config_init(NULL);
}

static void test_defaults(void **state)
{
    (void)state;
    mc_cache_config cfg;
    memset(&cfg, 0x5a, sizeof cfg);
    mc_cache_config_init(&cfg);
    assert_true(cfg.global_factor == 1.0);
    assert_null(cfg.per_cache_factors);
    assert_int_equal(cfg.n_per_cache_factors, 0);
    assert_false(cfg.expire_caches);
    assert_int_equal(cfg.cache_entry_ttl_ns, 0);
    assert_int_equal(cfg.max_cache_memory_usage, 0);
    assert_int_equal(cfg.target_cache_memory_usage, 0);
    assert_int_equal(cfg.min_cache_ttl_ns, 0);
    assert_null(cfg.memory_usage);
    assert_int_equal(cfg.maintenance_interval_ns, 0);

    /* NULL config: factor 1, no expiry, no autotuning. */
    mc_registry *reg = make_reg(NULL);
    test_clock clk = {100 * SEC};
    counter ctr = {0};
    mc_cached *fn = make_fn_ex(reg, "defaults.fn", 25, false, &clk, &ctr);
    assert_int_equal(bound_of(fn), 25);
    fill(fn, 0, 10);
    clock_advance(&clk, 1000000 * SEC);
    size_t evicted = 12345;
    mc_registry_maintain(reg, &evicted);
    assert_int_equal(evicted, 0);
    fill(fn, 0, 10); /* all hits, however long it sat */
    assert_int_equal(atomic_load(&ctr.calls), 10);
    assert_int_equal(entries_of(fn), 10);

    mc_registry_maintain(reg, NULL);
    evicted = 7;
    mc_registry_maintain(NULL, &evicted);
    assert_int_equal(evicted, 0);
    mc_cached_destroy(fn);
    mc_registry_destroy(reg);
}

/* ---- registration ---- */

static void test_register_by_name(void **state)
{
    (void)state;
    mc_registry *reg = make_reg(NULL);
    counter c1 = {0}, c2 = {0};

    mc_cached *a = make_fn(reg, "users.get_user", 10, &c1);
    assert_ptr_equal(mc_registry_find(reg, "users.get_user"), a);
    assert_string_equal(mc_cached_name(a), "users.get_user");
    assert_null(mc_registry_find(reg, "users.get_use"));
    assert_null(mc_registry_find(reg, "users.get_user2"));
    assert_null(mc_registry_find(reg, NULL));
    assert_null(mc_registry_find(NULL, "users.get_user"));

    /* A second function under a taken name is refused and not created. */
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = "users.get_user";
    o.max_entries = 10;
    o.registry = reg;
    mc_cached *dup = (mc_cached *)1;
    assert_int_equal(mc_cached_create(&o, text_loader, &c2, &dup), MC_EEXIST);
    assert_null(dup);
    assert_ptr_equal(mc_registry_find(reg, "users.get_user"), a);
    assert_int_equal(call_int(a, 1), 0);
    assert_int_equal(atomic_load(&c1.calls), 1);
    assert_int_equal(atomic_load(&c2.calls), 0);

    /* Registration needs a name. */
    o.name = NULL;
    assert_int_equal(mc_cached_create(&o, text_loader, &c2, &dup), MC_EINVAL);
    o.name = "";
    assert_int_equal(mc_cached_create(&o, text_loader, &c2, &dup), MC_EINVAL);
    mc_cached *unnamed = make_fn(NULL, NULL, 10, &c2);
    assert_int_equal(mc_registry_add(reg, unnamed), MC_EINVAL);
    assert_int_equal(mc_registry_add(reg, NULL), MC_EINVAL);
    assert_int_equal(mc_registry_add(NULL, a), MC_EINVAL);
    mc_cached_destroy(unnamed);

    /* Functions created without a registry join and leave by add/remove. */
    mc_cached *b = make_fn(NULL, "users.get_profile", 10, &c2);
    assert_null(mc_registry_find(reg, "users.get_profile"));
    assert_int_equal(mc_registry_add(reg, b), 0);
    assert_ptr_equal(mc_registry_find(reg, "users.get_profile"), b);
    assert_int_equal(mc_registry_add(reg, b), MC_EEXIST);
    mc_registry *other = make_reg(NULL);
    assert_int_equal(mc_registry_add(other, b), MC_EINVAL); /* registered elsewhere */
    assert_null(mc_registry_find(other, "users.get_profile"));
    assert_int_equal(mc_registry_remove(reg, b), 0);
    assert_null(mc_registry_find(reg, "users.get_profile"));
    assert_int_equal(mc_registry_remove(reg, b), MC_ENOENT);
    assert_int_equal(mc_registry_remove(NULL, b), MC_EINVAL);
    assert_ptr_equal(mc_registry_find(reg, "users.get_user"), a); /* untouched by the removal */
    /* Removed, it may join another registry. */
    assert_int_equal(mc_registry_add(other, b), 0);
    assert_ptr_equal(mc_registry_find(other, "users.get_profile"), b);

    /* Same name in two registries: removing one's function leaves the other's alone. */
    mc_cached *a2 = make_fn(other, "users.get_user", 10, &c2);
    assert_int_equal(mc_registry_remove(reg, a2), MC_ENOENT);
    assert_ptr_equal(mc_registry_find(reg, "users.get_user"), a);
    assert_ptr_equal(mc_registry_find(other, "users.get_user"), a2);

    /* Destroying a function unregisters it; the name is free again. */
    mc_cached_destroy(a);
    assert_null(mc_registry_find(reg, "users.get_user"));
    a = make_fn(reg, "users.get_user", 10, &c1);
    assert_ptr_equal(mc_registry_find(reg, "users.get_user"), a);

    /* Destroying a registry unregisters its functions without destroying them. */
    mc_registry_destroy(other);
    assert_int_equal(call_int(b, 5), 0);
    assert_int_equal(call_int(a2, 5), 0);
    assert_int_equal(mc_registry_add(reg, b), 0);
    mc_cached_destroy(b);
    assert_null(mc_registry_find(reg, "users.get_profile"));
    mc_cached_destroy(a2);
    mc_cached_destroy(a);
    mc_registry_destroy(reg);
}

/* ---- listing ---- */

typedef struct {
    int n;
    const mc_cached *fn[8];
    char name[8][64];
    uint64_t loads[8], hits[8], entries[8];
} visit_log;

static void record_visit(void *ud, mc_cached *fn, const mc_cached_stats *st)
{
    visit_log *log = ud;
    if (log->n >= 8)
        return;
    int i = log->n++;
    log->fn[i] = fn;
    snprintf(log->name[i], sizeof log->name[i], "%s", mc_cached_name(fn));
    log->loads[i] = st->loads;
    log->hits[i] = st->cache.hits;
    log->entries[i] = st->cache.entries;
}

static void test_list_in_name_order(void **state)
{
    (void)state;
    mc_registry *reg = make_reg(NULL);
    counter ctr = {0};
    visit_log log = {0};
    mc_registry_list(reg, record_visit, &log);
    assert_int_equal(log.n, 0);

    /* Created out of order; "b.x" < "b.xy" < "c" byte-wise. */
    mc_cached *c = make_fn(reg, "c", 10, &ctr);
    mc_cached *bxy = make_fn(reg, "b.xy", 10, &ctr);
    mc_cached *a = make_fn(reg, "a.fn", 10, &ctr);
    mc_cached *bx = make_fn(reg, "b.x", 10, &ctr);

    fill(a, 0, 3);  /* 3 loads */
    fill(a, 0, 2);  /* 2 hits */
    fill(bx, 0, 1); /* 1 load */
    fill(c, 0, 5);
    fill(c, 0, 5);
    fill(c, 4, 1); /* 5 loads, 6 hits */

    mc_registry_list(reg, record_visit, &log);
    assert_int_equal(log.n, 4);
    const char *names[] = {"a.fn", "b.x", "b.xy", "c"};
    const mc_cached *fns[] = {a, bx, bxy, c};
    const uint64_t loads[] = {3, 1, 0, 5}, hits[] = {2, 0, 0, 6}, entries[] = {3, 1, 0, 5};
    for (int i = 0; i < 4; i++) {
        assert_string_equal(log.name[i], names[i]);
        assert_ptr_equal(log.fn[i], fns[i]);
        assert_int_equal(log.loads[i], loads[i]);
        assert_int_equal(log.hits[i], hits[i]);
        assert_int_equal(log.entries[i], entries[i]);
    }

    /* Unregistered functions drop out of the walk. */
    mc_cached_destroy(bx);
    memset(&log, 0, sizeof log);
    mc_registry_list(reg, record_visit, &log);
    assert_int_equal(log.n, 3);
    assert_string_equal(log.name[1], "b.xy");

    mc_registry_list(reg, NULL, NULL);
    mc_registry_list(NULL, record_visit, &log);
    mc_cached_destroy(a);
    mc_cached_destroy(bxy);
    mc_cached_destroy(c);
    mc_registry_destroy(reg);
}

/* ---- invalidation by name ---- */

static int call_user(mc_cached *fn, const char *user, int64_t n)
{
    mc_arg a[] = {MC_ARG_S(user), MC_ARG_I(n)};
    mc_value *v = NULL;
    int rc = mc_cached_call(fn, a, 2, &v);
    if (rc == 0) {
        char want[64];
        int len = snprintf(want, sizeof want, "s:%s", user);
        assert_int_equal(mc_value_size(v), (size_t)len);
        assert_memory_equal(mc_value_data(v), want, (size_t)len);
        mc_value_release(v);
    }
    return rc;
}

static void test_invalidate_by_name(void **state)
{
    (void)state;
    mc_registry *reg = make_reg(NULL);
    counter ctr = {0}, other_ctr = {0};
    mc_cached *fn = make_fn(reg, "rooms.get_member", 100, &ctr);
    mc_cached *other = make_fn(reg, "rooms.get_state", 100, &other_ctr);
    assert_int_equal(call_user(fn, "@alice:example.com", 1), 0);
    assert_int_equal(call_user(fn, "@bob:example.com", 2), 0);
    assert_int_equal(call_user(fn, "@carol:example.com", 3), 0);
    assert_int_equal(call_user(other, "@alice:example.com", 1), 0);
    assert_int_equal(atomic_load(&ctr.calls), 3);

    const char *two[] = {"[\"@alice:example.com\", 1]", " [ \"@bob:example.com\" ,2 ] "};
    mc_error err;
    memset(&err, 0, sizeof err);
    assert_int_equal(mc_registry_invalidate(reg, "rooms.get_member", two, 2, &err), 0);
    assert_int_equal(err.code, 0); /* untouched on success */
    assert_int_equal(entries_of(fn), 1);
    assert_int_equal(entries_of(other), 1); /* only the named function */
    assert_int_equal(call_user(fn, "@carol:example.com", 3), 0);
    assert_int_equal(atomic_load(&ctr.calls), 3); /* still cached */
    assert_int_equal(call_user(fn, "@alice:example.com", 1), 0);
    assert_int_equal(call_user(fn, "@bob:example.com", 2), 0);
    assert_int_equal(atomic_load(&ctr.calls), 5); /* both reloaded */
    mc_cached_stats st;
    mc_cached_stats_get(fn, &st);
    assert_int_equal(st.cache.evictions[MC_EVICT_INVALIDATION], 2);

    /* A key that is not cached, or of another shape, is not an error. */
    const char *absent[] = {"[\"@dave:example.com\", 4]", "[\"@alice:example.com\"]"};
    assert_int_equal(mc_registry_invalidate(reg, "rooms.get_member", absent, 2, NULL), 0);
    assert_int_equal(entries_of(fn), 3);

    /* NULL keys: everything. */
    assert_int_equal(mc_registry_invalidate(reg, "rooms.get_member", NULL, 0, NULL), 0);
    assert_int_equal(entries_of(fn), 0);
    assert_int_equal(entries_of(other), 1);
    assert_int_equal(call_user(fn, "@carol:example.com", 3), 0);
    assert_int_equal(atomic_load(&ctr.calls), 6);

    /* Unknown name. */
    memset(&err, 0, sizeof err);
    assert_int_equal(mc_registry_invalidate(reg, "rooms.no_such_fn", two, 2, &err), MC_ENOENT);
    assert_int_equal(err.code, MC_ENOENT);
    assert_non_null(strstr(err.message, "rooms.no_such_fn"));
    assert_int_equal(mc_registry_invalidate(reg, "rooms.no_such_fn", NULL, 0, NULL), MC_ENOENT);

    /* Malformed JSON: nothing is invalidated, the error names the key and the offset. */
    assert_int_equal(call_user(fn, "@alice:example.com", 1), 0);
    assert_int_equal(call_user(fn, "@bob:example.com", 2), 0);
    assert_int_equal(entries_of(fn), 3);
    const char *bad[] = {"[\"@alice:example.com\", 1]", "[\"@bob:example.com\" 2]",
                         "[\"@carol:example.com\", 3]"};
    memset(&err, 0, sizeof err);
    assert_int_equal(mc_registry_invalidate(reg, "rooms.get_member", bad, 3, &err), MC_EPARSE);
    assert_int_equal(err.code, MC_EPARSE);
    /* The missing comma: byte 20 of the second key is where ',' or ']' was expected. */
    assert_non_null(strstr(err.message, "offset 20"));
    assert_non_null(strstr(err.message, "key 1: "));
    int before = atomic_load(&ctr.calls);
    assert_int_equal(call_user(fn, "@bob:example.com", 2), 0);
    assert_int_equal(call_user(fn, "@carol:example.com", 3), 0);
    assert_int_equal(call_user(fn, "@alice:example.com", 1), 0); /* before the bad key: kept too */
    assert_int_equal(atomic_load(&ctr.calls), before);

    const char *empty[] = {""};
    assert_int_equal(mc_registry_invalidate(reg, "rooms.get_member", empty, 1, &err), MC_EPARSE);
    assert_non_null(strstr(err.message, "offset 0"));

    assert_int_equal(mc_registry_invalidate(reg, "rooms.get_member", NULL, 2, NULL), MC_EINVAL);
    assert_int_equal(mc_registry_invalidate(reg, NULL, NULL, 0, NULL), MC_EINVAL);
    assert_int_equal(mc_registry_invalidate(NULL, "rooms.get_member", NULL, 0, NULL), MC_EINVAL);
    mc_cached_destroy(fn);
    mc_cached_destroy(other);
    mc_registry_destroy(reg);
}

/* ---- factors ---- */

static void test_factors_from_config(void **state)
{
    (void)state;
    mc_cache_config cfg;
    mc_cache_config_init(&cfg);
    cfg.global_factor = 2.0;
    mc_cache_factor f[] = {{"f.half", 0.5}, {"f.tiny", 0.001}, {"f.unused", 9.0}};
    cfg.per_cache_factors = f;
    cfg.n_per_cache_factors = 3;
    mc_registry *reg = make_reg(&cfg);
    counter ctr = {0};
    mc_cached *plain = make_fn(reg, "f.plain", 100, &ctr);
    mc_cached *half = make_fn(reg, "f.half", 100, &ctr);
    mc_cached *tiny = make_fn(reg, "f.tiny", 100, &ctr);
    mc_cached *outside = make_fn(NULL, "f.half2", 100, &ctr);
    assert_int_equal(bound_of(plain), 200);
    assert_int_equal(bound_of(half), 50);
    assert_int_equal(bound_of(tiny), 1); /* never scaled below one entry */
    assert_int_equal(bound_of(outside), 100); /* no registry: no factor */

    /* The bound is real: filling past it keeps the cache at the scaled size. */
    fill(half, 0, 80);
    assert_int_equal(entries_of(half), 50);
    assert_int_equal(cstats(half).evictions[MC_EVICT_SIZE], 30);
    fill(plain, 0, 150);
    assert_int_equal(entries_of(plain), 150);

    /* Adding a function applies the registry's factor to it at once. */
    fill(outside, 0, 100);
    mc_cached_destroy(half);
    assert_null(mc_registry_find(reg, "f.half"));
    mc_cached *renamed = make_fn(NULL, "f.half", 100, &ctr);
    fill(renamed, 0, 100);
    assert_int_equal(mc_registry_add(reg, renamed), 0);
    assert_int_equal(bound_of(renamed), 50);
    assert_int_equal(entries_of(renamed), 50);
    assert_int_equal(mc_registry_add(reg, outside), 0);
    assert_int_equal(bound_of(outside), 200);

    mc_cached_destroy(plain);
    mc_cached_destroy(tiny);
    mc_cached_destroy(outside);
    mc_cached_destroy(renamed);
    mc_registry_destroy(reg);
}

static void test_factor_env_global(void **state)
{
    (void)state;
    mc_cache_config cfg;
    mc_cache_config_init(&cfg);
    cfg.global_factor = 2.0;
    counter ctr = {0};

    /* Read when the registry is created, not later. */
    setenv("MODCACHE_CACHE_FACTOR", "3", 1);
    mc_registry *reg = make_reg(&cfg);
    unsetenv("MODCACHE_CACHE_FACTOR");
    mc_cached *a = make_fn(reg, "g.a", 100, &ctr);
    assert_int_equal(bound_of(a), 300);
    setenv("MODCACHE_CACHE_FACTOR", "7", 1);
    mc_cached *b = make_fn(reg, "g.b", 100, &ctr);
    assert_int_equal(bound_of(b), 300);
    unsetenv("MODCACHE_CACHE_FACTOR");
    mc_cached_destroy(a);
    mc_cached_destroy(b);
    mc_registry_destroy(reg);

    /* Fractions and exponents are numbers like any other. */
    setenv("MODCACHE_CACHE_FACTOR", "0.25", 1);
    reg = make_reg(&cfg);
    a = make_fn(reg, "g.a", 100, &ctr);
    assert_int_equal(bound_of(a), 25);
    mc_cached_destroy(a);
    mc_registry_destroy(reg);
    setenv("MODCACHE_CACHE_FACTOR", "1.5e1", 1);
    reg = make_reg(&cfg);
    a = make_fn(reg, "g.a", 10, &ctr);
    assert_int_equal(bound_of(a), 150);
    mc_cached_destroy(a);
    mc_registry_destroy(reg);

    /* Malformed or non-positive: ignored, the config's global factor stands. */
    const char *bad[] = {"", "abc", "2x", "x2", "0", "-1", "-0.5", "nan", " ", "1,5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv("MODCACHE_CACHE_FACTOR", bad[i], 1);
        reg = make_reg(&cfg);
        a = make_fn(reg, "g.a", 100, &ctr);
        if (bound_of(a) != 200)
            fail_msg("MODCACHE_CACHE_FACTOR='%s' gave a bound of %llu, want 200", bad[i],
                     (unsigned long long)bound_of(a));
        mc_cached_destroy(a);
        mc_registry_destroy(reg);
    }
    unsetenv("MODCACHE_CACHE_FACTOR");
}

static void test_factor_env_per_name(void **state)
{
    (void)state;
    counter ctr = {0};
    mc_cache_config cfg;
    mc_cache_config_init(&cfg);
    cfg.global_factor = 2.0;
    mc_cache_factor f[] = {{"app.Get-user", 0.5}, {"p.named", 0.5}};
    cfg.per_cache_factors = f;
    cfg.n_per_cache_factors = 2;
    /* The global override is in place throughout, to show where it ranks. */
    setenv("MODCACHE_CACHE_FACTOR", "3", 1);
    mc_registry *reg = make_reg(&cfg);

    /* The name's variable: upper case, '.' and '-' as '_', digits kept. It beats the
     * name's configured factor, which beats the global override, which beats global_factor. */
    setenv("MODCACHE_CACHE_FACTOR_APP_GET_USER", "4", 1);
    setenv("MODCACHE_CACHE_FACTOR_SVC2_LOOKUP", "6", 1);
    mc_cached *user = make_fn(reg, "app.Get-user", 100, &ctr);
    mc_cached *svc = make_fn(reg, "svc2.lookup", 100, &ctr);
    mc_cached *named = make_fn(reg, "p.named", 100, &ctr);
    mc_cached *plain = make_fn(reg, "p.plain", 100, &ctr);
    assert_int_equal(bound_of(user), 400);  /* per-name env over per-name factor 0.5 */
    assert_int_equal(bound_of(svc), 600);   /* per-name env over global env 3 */
    assert_int_equal(bound_of(named), 50);  /* per-name factor over global env 3 */
    assert_int_equal(bound_of(plain), 300); /* global env over global_factor 2 */
    mc_cached_destroy(user);
    mc_cached_destroy(svc);

    /* Read when the function is added: a later change applies to functions added later. */
    setenv("MODCACHE_CACHE_FACTOR_APP_GET_USER", "0.1", 1);
    user = make_fn(reg, "app.Get-user", 100, &ctr);
    assert_int_equal(bound_of(user), 10);
    mc_cached_destroy(user);
    unsetenv("MODCACHE_CACHE_FACTOR_APP_GET_USER");
    user = make_fn(reg, "app.Get-user", 100, &ctr);
    assert_int_equal(bound_of(user), 50); /* back to its configured factor */
    mc_cached_destroy(user);

    /* ... including through mc_registry_add. */
    mc_cached *late = make_fn(NULL, "late.added", 100, &ctr);
    fill(late, 0, 100);
    setenv("MODCACHE_CACHE_FACTOR_LATE_ADDED", "0.2", 1);
    assert_int_equal(mc_registry_add(reg, late), 0);
    assert_int_equal(bound_of(late), 20);
    assert_int_equal(entries_of(late), 20);
    assert_int_equal(cstats(late).evictions[MC_EVICT_SIZE], 80);
    mc_cached_destroy(late);

    /* Malformed per-name values are ignored: the next rule applies. */
    const char *bad[] = {"", "abc", "5x", "0", "-2", "nan"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv("MODCACHE_CACHE_FACTOR_BAD_ENV", bad[i], 1);
        mc_cached *b = make_fn(reg, "bad.env", 100, &ctr);
        if (bound_of(b) != 300)
            fail_msg("MODCACHE_CACHE_FACTOR_BAD_ENV='%s' gave a bound of %llu, want 300", bad[i],
                     (unsigned long long)bound_of(b));
        mc_cached_destroy(b);
    }
    mc_cached_destroy(named);
    mc_cached_destroy(plain);
    mc_registry_destroy(reg);
}

/* A configuration reload (SIGHUP) replaces the file's factors with the same precedence as at
 * creation: the environment still wins, and run-time overrides are forgotten. */
static void test_reload_factors(void **state)
{
    (void)state;
    counter ctr = {0};
    mc_cache_config cfg;
    mc_cache_config_init(&cfg);
    cfg.global_factor = 2.0;
    mc_cache_factor f[] = {{"r.env", 3.0}, {"r.file", 3.0}};
    cfg.per_cache_factors = f;
    cfg.n_per_cache_factors = 2;
    setenv("MODCACHE_CACHE_FACTOR_R_ENV", "5", 1);
    mc_registry *reg = make_reg(&cfg);
    mc_cached *env = make_fn(reg, "r.env", 10, &ctr);
    mc_cached *file = make_fn(reg, "r.file", 10, &ctr);
    mc_cached *plain = make_fn(reg, "r.plain", 10, &ctr);
    assert_int_equal(bound_of(env), 50);
    assert_int_equal(bound_of(file), 30);
    assert_int_equal(bound_of(plain), 20);
    assert_int_equal(mc_registry_set_factor(reg, "r.plain", 9.0), 0);
    assert_int_equal(bound_of(plain), 90);

    mc_cache_factor g[] = {{"r.env", 7.0}, {"r.plain", 1.5}};
    cfg.global_factor = 4.0;
    cfg.per_cache_factors = g;
    assert_int_equal(mc_registry_reload_factors(reg, &cfg), 0);
    assert_int_equal(bound_of(env), 50);   /* the environment still wins over the file */
    assert_int_equal(bound_of(file), 40);  /* no longer named in the file: the new global */
    assert_int_equal(bound_of(plain), 15); /* the run-time 9.0 is forgotten */

    setenv("MODCACHE_CACHE_FACTOR", "6", 1);
    assert_int_equal(mc_registry_reload_factors(reg, &cfg), 0);
    assert_int_equal(bound_of(file), 60); /* the global environment override over global_factor */
    unsetenv("MODCACHE_CACHE_FACTOR");
    unsetenv("MODCACHE_CACHE_FACTOR_R_ENV");

    /* Refused as a whole: nothing changes. */
    mc_cache_factor bad[] = {{"r.file", 2.0}, {"r.plain", -1.0}};
    cfg.per_cache_factors = bad;
    assert_int_equal(mc_registry_reload_factors(reg, &cfg), MC_EINVAL);
    assert_int_equal(bound_of(plain), 15);
    assert_int_equal(mc_registry_reload_factors(NULL, &cfg), MC_EINVAL);
    mc_cached_destroy(env);
    mc_cached_destroy(file);
    mc_cached_destroy(plain);
    mc_registry_destroy(reg);
}

/* A factor that is well-formed and positive but scales a bound past what a size_t holds
 * must not make function creation fail: the bound saturates (or the value is ignored). */
static void test_factor_overflow(void **state)
{
    (void)state;
    counter ctr = {0};
    const char *huge[] = {"1e300", "inf"};
    char failures[256] = "";
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        setenv("MODCACHE_CACHE_FACTOR", huge[i], 1);
        mc_registry *reg = make_reg(NULL);
        mc_cached_options o;
        mc_cached_options_init(&o);
        o.name = "huge.factor";
        o.max_entries = 100;
        o.registry = reg;
        mc_cached *fn = NULL;
        int rc = mc_cached_create(&o, text_loader, &ctr, &fn);
        uint64_t bound = fn ? bound_of(fn) : 0;
        /* Released before judging, so that a failure does not also report leaks. */
        mc_cached_destroy(fn);
        mc_registry_destroy(reg);
        unsetenv("MODCACHE_CACHE_FACTOR");
        if (rc != 0 || bound < 100) {
            size_t used = strlen(failures);
            snprintf(failures + used, sizeof failures - used, " [%s: create %s, bound %llu]", huge[i],
                     mc_err_name(rc), (unsigned long long)bound);
        }
    }
    if (failures[0])
        fail_msg("MODCACHE_CACHE_FACTOR overflowing the bound:%s", failures);

    /* The same through mc_registry_set_factor: the bound must not fall. */
    mc_registry *reg = make_reg(NULL);
    mc_cached *fn = make_fn(reg, "huge.factor", 100, &ctr);
    int rc = mc_registry_set_factor(reg, "huge.factor", 1e300);
    uint64_t bound = bound_of(fn);
    mc_cached_destroy(fn);
    mc_registry_destroy(reg);
    assert_int_equal(rc, 0);
    assert_true(bound >= 100);
}

static void test_set_factor_resizes(void **state)
{
    (void)state;
    mc_registry *reg = make_reg(NULL);
    counter ctr = {0};
    mc_cached *a = make_fn(reg, "s.a", 1000, &ctr);
    mc_cached *b = make_fn(reg, "s.b", 1000, &ctr);
    fill(a, 0, 1000);
    fill(b, 0, 1000);
    assert_int_equal(entries_of(a), 1000);

    /* One function: smaller at once, the excess evicted for size. */
    assert_int_equal(mc_registry_set_factor(reg, "s.a", 0.25), 0);
    mc_cache_stats st = cstats(a);
    assert_int_equal(st.max_entries, 250);
    assert_int_equal(st.entries, 250);
    assert_int_equal(st.evictions[MC_EVICT_SIZE], 750);
    assert_int_equal(entries_of(b), 1000);
    assert_int_equal(bound_of(b), 1000);
    /* The most recently used survived. */
    assert_true(present(a, 999));
    assert_true(present(a, 750));
    assert_false(present(a, 749));

    /* Global: every function without a factor of its own. */
    assert_int_equal(mc_registry_set_factor(reg, NULL, 0.5), 0);
    st = cstats(b);
    assert_int_equal(st.max_entries, 500);
    assert_int_equal(st.entries, 500);
    assert_int_equal(st.evictions[MC_EVICT_SIZE], 500);
    assert_int_equal(bound_of(a), 250);
    assert_int_equal(entries_of(a), 250);
    /* Functions created afterwards get the new global factor too. */
    mc_cached *c = make_fn(reg, "s.c", 1000, &ctr);
    assert_int_equal(bound_of(c), 500);

    /* Growing makes room without dropping anything. */
    assert_int_equal(mc_registry_set_factor(reg, "s.a", 2.0), 0);
    st = cstats(a);
    assert_int_equal(st.max_entries, 2000);
    assert_int_equal(st.entries, 250);
    assert_int_equal(st.evictions[MC_EVICT_SIZE], 750);
    fill(a, 1000, 1500);
    assert_int_equal(entries_of(a), 1750);

    assert_int_equal(mc_registry_set_factor(reg, "s.nope", 2.0), MC_ENOENT);
    assert_int_equal(mc_registry_set_factor(reg, "s.a", 0.0), MC_EINVAL);
    assert_int_equal(mc_registry_set_factor(reg, NULL, -1.0), MC_EINVAL);
    assert_int_equal(mc_registry_set_factor(reg, NULL, NAN), MC_EINVAL);
    assert_int_equal(mc_registry_set_factor(NULL, NULL, 1.0), MC_EINVAL);
    assert_int_equal(bound_of(a), 2000);
    assert_int_equal(bound_of(b), 500);
    mc_cached_destroy(a);
    mc_cached_destroy(b);
    mc_cached_destroy(c);
    mc_registry_destroy(reg);
}

/* ---- expiry ---- */

static void test_ttl_expiry(void **state)
{
    (void)state;
    mc_cache_config cfg;
    mc_cache_config_init(&cfg);
    cfg.expire_caches = true;
    cfg.cache_entry_ttl_ns = 10 * SEC;
    mc_registry *reg = make_reg(&cfg);
    test_clock clk = {1000 * SEC};
    counter ce = {0}, ck = {0};
    mc_cached *exp = make_fn_ex(reg, "ttl.expiring", 100, false, &clk, &ce);
    mc_cached *keep = make_fn_ex(reg, "ttl.kept", 100, true, &clk, &ck);
    fill(exp, 0, 3);
    fill(keep, 0, 3);

    /* Reads keep an entry alive: expiry is after access, not after write. */
    clock_advance(&clk, 6 * SEC);
    fill(exp, 0, 1);
    clock_advance(&clk, 6 * SEC);
    fill(exp, 0, 1); /* 6 s since its last read */
    assert_int_equal(atomic_load(&ce.calls), 3);
    fill(exp, 1, 1); /* 12 s unread: gone, reloaded */
    assert_int_equal(atomic_load(&ce.calls), 4);

    /* keep_unread_entries functions never expire. */
    clock_advance(&clk, 1000 * SEC);
    fill(keep, 0, 3);
    assert_int_equal(atomic_load(&ck.calls), 3);
    assert_int_equal(cstats(keep).evictions[MC_EVICT_TIME], 0);

    /* Maintenance removes expired entries with nobody calling (a write may already have
     * swept some of them: count what is left). */
    mc_cache_stats before = cstats(exp);
    assert_true(before.entries > 0);
    size_t evicted = 99;
    mc_registry_maintain(reg, &evicted);
    assert_int_equal(evicted, 0); /* that count is autotuning's, and it is off */
    mc_cache_stats st = cstats(exp);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.evictions[MC_EVICT_TIME], before.evictions[MC_EVICT_TIME] + before.entries);
    assert_int_equal(entries_of(keep), 3);
    fill(exp, 0, 3);
    assert_int_equal(atomic_load(&ce.calls), 7);
    mc_cached_destroy(exp);
    mc_cached_destroy(keep);
    mc_registry_destroy(reg);

    /* A TTL without expire_caches does nothing. */
    cfg.expire_caches = false;
    reg = make_reg(&cfg);
    exp = make_fn_ex(reg, "ttl.off", 100, false, &clk, &ce);
    fill(exp, 0, 3);
    clock_advance(&clk, 1000 * SEC);
    mc_registry_maintain(reg, NULL);
    fill(exp, 0, 3);
    assert_int_equal(atomic_load(&ce.calls), 10);
    mc_cached_destroy(exp);
    mc_registry_destroy(reg);
}

/* ---- memory autotuning ---- */

/* The memory reading the registry sees: what the test's functions hold, plus `extra`. */
typedef struct {
    mc_cached *fns[4];
    int n;
    size_t extra;
    int reads;
} mem_probe;

static size_t held_by(const mem_probe *p)
{
    size_t sum = 0;
    for (int i = 0; i < p->n; i++)
        sum += cstats(p->fns[i]).memory;
    return sum;
}

static size_t probe_usage(void *ud)
{
    mem_probe *p = ud;
    p->reads++;
    return held_by(p) + p->extra;
}

static uint64_t memory_evictions(mc_cached *fn) { return cstats(fn).evictions[MC_EVICT_MEMORY]; }

static void test_memory_autotuning(void **state)
{
    (void)state;
    /* Fixed thresholds high above what the caches hold; `extra` moves the reading across. */
    const size_t max = (size_t)1 << 30;
    const size_t slack = 16 * 1024; /* what has to be freed below the maximum */
    mem_probe probe = {0};
    mc_cache_config cfg;
    mc_cache_config_init(&cfg);
    cfg.max_cache_memory_usage = max;
    cfg.target_cache_memory_usage = max - slack;
    cfg.min_cache_ttl_ns = 10 * SEC;
    cfg.memory_usage = probe_usage;
    cfg.memory_usage_ud = &probe;
    mc_registry *reg = make_reg(&cfg);
    test_clock clk = {100 * SEC};
    counter ca = {0}, cb = {0}, ck = {0};
    mc_cached *a = make_fn_ex(reg, "mem.a", 1000, false, &clk, &ca);
    mc_cached *b = make_fn_ex(reg, "mem.b", 1000, false, &clk, &cb);
    mc_cached *k = make_fn_ex(reg, "mem.keep", 1000, true, &clk, &ck);
    probe.fns[0] = a;
    probe.fns[1] = b;
    probe.fns[2] = k;
    probe.n = 3;
    fill(a, 0, 1000);
    fill(b, 0, 1000);
    fill(k, 0, 200);

    /* At or under the maximum nothing goes, however idle. */
    clock_advance(&clk, 60 * SEC);
    size_t evicted = 99;
    mc_registry_maintain(reg, &evicted);
    assert_int_equal(evicted, 0);
    probe.extra = max - held_by(&probe);
    mc_registry_maintain(reg, &evicted);
    assert_int_equal(evicted, 0);
    assert_true(probe.reads > 0); /* the reading came from the configured function */
    assert_int_equal(entries_of(a), 1000);
    assert_int_equal(entries_of(b), 1000);
    assert_int_equal(memory_evictions(a) + memory_evictions(b), 0);

    /* Keys read now are fresh at the pass below (5 s < min_cache_ttl_ns); the rest have
     * been idle for 65 s. */
    fill(a, 0, 20);
    assert_int_equal(atomic_load(&ca.calls), 1000);
    clock_advance(&clk, 5 * SEC);

    /* One byte over: evict down to the target, which means some entries, not all. */
    probe.extra = max - held_by(&probe) + 1;
    mc_registry_maintain(reg, &evicted);
    assert_true(evicted > 0);
    assert_true(held_by(&probe) + probe.extra <= cfg.target_cache_memory_usage);
    assert_int_equal(memory_evictions(a) + memory_evictions(b), evicted);
    assert_true(entries_of(a) + entries_of(b) == 2000 - evicted);
    assert_true(entries_of(a) + entries_of(b) > 1000);
    assert_int_equal(entries_of(k), 200);
    assert_int_equal(memory_evictions(k), 0);
    for (int64_t i = 0; i < 20; i++)
        assert_true(present(a, i));
    /* The least recently used went first: in `a` those after the re-read keys. */
    if (memory_evictions(a) > 0) {
        assert_false(present(a, 20));
        assert_true(present(a, 999));
    }

    /* Over the maximum with a target out of reach: every idle entry goes, nothing else. */
    probe.extra = max;
    size_t evicted2 = 0;
    mc_registry_maintain(reg, &evicted2);
    assert_int_equal(evicted + evicted2, 1980);
    assert_int_equal(entries_of(a), 20);
    assert_int_equal(entries_of(b), 0);
    assert_int_equal(entries_of(k), 200);
    assert_int_equal(memory_evictions(a), 980);
    assert_int_equal(memory_evictions(b), 1000);
    assert_int_equal(memory_evictions(k), 0);
    fill(a, 0, 20);
    fill(k, 0, 200);
    assert_int_equal(atomic_load(&ca.calls), 1000);
    assert_int_equal(atomic_load(&ck.calls), 200);
    /* Evicted keys load again. */
    fill(b, 0, 1);
    assert_int_equal(atomic_load(&cb.calls), 1001);

    /* Once the fresh keys have sat for min_cache_ttl_ns they may go too. */
    clock_advance(&clk, 10 * SEC);
    mc_registry_maintain(reg, &evicted2);
    assert_int_equal(entries_of(a), 0);
    assert_int_equal(entries_of(k), 200);

    mc_cached_destroy(a);
    mc_cached_destroy(b);
    mc_cached_destroy(k);
    mc_registry_destroy(reg);
}

/* Without a target, autotuning stops as soon as usage is back at the maximum. */
static void test_memory_target_defaults_to_max(void **state)
{
    (void)state;
    const size_t max = (size_t)1 << 30;
    mem_probe probe = {0};
    mc_cache_config cfg;
    mc_cache_config_init(&cfg);
    cfg.max_cache_memory_usage = max;
    cfg.memory_usage = probe_usage;
    cfg.memory_usage_ud = &probe;
    mc_registry *reg = make_reg(&cfg);
    counter ctr = {0};
    mc_cached *fn = make_fn(reg, "mem.one", 1000, &ctr);
    probe.fns[0] = fn;
    probe.n = 1;
    fill(fn, 0, 1000);
    probe.extra = max - held_by(&probe) + 1;
    size_t evicted = 0;
    mc_registry_maintain(reg, &evicted);
    assert_true(evicted > 0);
    assert_true(evicted < 500);
    assert_true(held_by(&probe) + probe.extra <= max);
    assert_int_equal(memory_evictions(fn), evicted);
    mc_cached_destroy(fn);
    mc_registry_destroy(reg);
}

/* A function that joined with mc_registry_add is one of "all functions" autotuning may
 * evict from: only keep_unread_entries functions are exempt. */
static void test_memory_autotuning_added_function(void **state)
{
    (void)state;
    const size_t max = (size_t)1 << 30;
    mem_probe probe = {0};
    mc_cache_config cfg;
    mc_cache_config_init(&cfg);
    cfg.max_cache_memory_usage = max;
    cfg.target_cache_memory_usage = max / 2; /* out of reach: everything idle goes */
    cfg.min_cache_ttl_ns = 10 * SEC;
    cfg.memory_usage = probe_usage;
    cfg.memory_usage_ud = &probe;
    mc_registry *reg = make_reg(&cfg);
    test_clock clk = {100 * SEC};
    counter ctr = {0};
    mc_cached *fn = make_fn_ex(NULL, "mem.added", 100, false, &clk, &ctr);
    assert_int_equal(mc_registry_add(reg, fn), 0);
    probe.fns[0] = fn;
    probe.n = 1;
    fill(fn, 0, 100);
    clock_advance(&clk, 60 * SEC);
    probe.extra = max;
    size_t evicted = 0;
    mc_registry_maintain(reg, &evicted);
    uint64_t left = entries_of(fn);
    /* Released before judging, so that a failure does not also report leaks. */
    mc_cached_destroy(fn);
    mc_registry_destroy(reg);
    assert_int_equal(evicted, 100);
    assert_int_equal(left, 0);
}

/* ---- registry calls from other threads and from callbacks ---- */

/* A thread flipping the global factor between 1 and 2 until told to stop, parking on request
 * so that the main thread can check bounds while nothing changes. */
typedef struct {
    mc_registry *reg;
    atomic_bool stop, pause;
    atomic_int paused;
    atomic_int bad_rc;
} flipper;

static void *flip_factor(void *p)
{
    flipper *f = p;
    double factor = 1.0;
    while (!atomic_load(&f->stop)) {
        if (atomic_load(&f->pause)) {
            atomic_fetch_add(&f->paused, 1);
            while (atomic_load(&f->pause) && !atomic_load(&f->stop))
                sched_yield();
            atomic_fetch_sub(&f->paused, 1);
            continue;
        }
        factor = factor == 1.0 ? 2.0 : 1.0;
        int rc = mc_registry_set_factor(f->reg, NULL, factor);
        if (rc != 0)
            atomic_store(&f->bad_rc, rc);
    }
    return NULL;
}

/* Functions created while the global factor changes all end up with the factor in effect:
 * a creation must not apply a factor it computed before a concurrent change. Small batches
 * keep set_factor quick (it visits every function), so that it races with creations often.
 * The window is narrow: a broken library fails this only now and then. */
/* While the registry bypasses caches (bounded staleness), every kind of call loads: pinned,
 * copied out and borrowed; none is answered from the entry stored before. */
static void test_bypass_reaches_every_call(void **state)
{
    (void)state;
    mc_registry *reg = make_reg(NULL);
    counter ctr = {0};
    mc_cached *fn = make_fn(reg, "bypass.fn", 10, &ctr);
    assert_int_equal(call_int(fn, 7), 0); /* stored */
    assert_int_equal(atomic_load(&ctr.calls), 1);
    mc_registry_set_bypass(reg, true);
    mc_arg a[] = {MC_ARG_I(7)};
    mc_value *v = NULL;
    assert_int_equal(mc_cached_call(fn, a, 1, &v), 0);
    mc_value_release(v);
    char buf[64];
    size_t n;
    assert_int_equal(mc_cached_call_copy(fn, a, 1, buf, sizeof buf, &n), 0);
    mc_read_begin();
    const void *p;
    assert_int_equal(mc_cached_call_borrow(fn, a, 1, &p, &n), 0);
    mc_read_end();
    assert_int_equal(atomic_load(&ctr.calls), 4); /* each of the three loaded */
    assert_int_equal(mc_cached_bypassed_calls(fn), 3);
    mc_registry_set_bypass(reg, false);
    mc_cached_destroy(fn);
    mc_registry_destroy(reg);
}

/* A loader that holds every load until the test opens the gate. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool open;
    atomic_int calls;
} gate;

static int gated_loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)args;
    (void)nargs;
    gate *g = self;
    atomic_fetch_add(&g->calls, 1);
    pthread_mutex_lock(&g->lock);
    while (!g->open)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
    return mc_load_set_copy(load, "v", 1);
}

typedef struct {
    mc_cached *fn;
    int rc;
    size_t size;
} gated_call;

static void *gated_call_main(void *arg)
{
    gated_call *c = arg;
    mc_arg a[] = {MC_ARG_I(7)};
    mc_value *v = NULL;
    c->rc = mc_cached_call(c->fn, a, 1, &v);
    if (c->rc == 0) {
        c->size = mc_value_size(v);
        mc_value_release(v);
    }
    return NULL;
}

/* During a bypass, concurrent calls of one key still share one load (single flight), and its
 * result is not stored; after the bypass the key is loaded once more and cached again. */
static void test_bypass_shares_one_load(void **state)
{
    (void)state;
    enum { CALLERS = 4 };
    mc_registry *reg = make_reg(NULL);
    gate g = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = "bypass.shared";
    o.max_entries = 10;
    o.registry = reg;
    mc_cached *fn = NULL;
    assert_int_equal(mc_cached_create(&o, gated_loader, &g, &fn), 0);
    mc_registry_set_bypass(reg, true);
    assert_true(mc_cached_bypassing(fn));

    pthread_t t[CALLERS];
    gated_call calls[CALLERS];
    for (int i = 0; i < CALLERS; i++) {
        calls[i] = (gated_call){.fn = fn, .rc = -1};
        assert_int_equal(pthread_create(&t[i], NULL, gated_call_main, &calls[i]), 0);
    }
    /* Every caller but the first joins the one load held at the gate. */
    mc_cached_stats st;
    for (int i = 0; i < 5000; i++) {
        mc_cached_stats_get(fn, &st);
        if (st.joined >= CALLERS - 1)
            break;
        sleep_ms(1);
    }
    mc_cached_stats_get(fn, &st);
    assert_int_equal(st.joined, CALLERS - 1);
    assert_int_equal(st.loads, 1);
    pthread_mutex_lock(&g.lock);
    g.open = true;
    pthread_cond_broadcast(&g.cond);
    pthread_mutex_unlock(&g.lock);
    for (int i = 0; i < CALLERS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(calls[i].rc, 0);
        assert_int_equal(calls[i].size, 1);
    }
    assert_int_equal(atomic_load(&g.calls), 1);
    assert_int_equal(mc_cached_bypassed_calls(fn), CALLERS);
    assert_int_equal(entries_of(fn), 0); /* nothing stored while the cache is not trusted */

    mc_registry_set_bypass(reg, false);
    assert_false(mc_cached_bypassing(fn));
    gated_call after = {.fn = fn, .rc = -1};
    gated_call_main(&after);
    assert_int_equal(after.rc, 0);
    assert_int_equal(atomic_load(&g.calls), 2);
    assert_int_equal(entries_of(fn), 1); /* cached again */
    gated_call_main(&after);
    assert_int_equal(atomic_load(&g.calls), 2); /* a hit */
    mc_cached_destroy(fn);
    mc_registry_destroy(reg);
}

static void test_concurrent_create_and_set_factor(void **state)
{
    (void)state;
    enum { BATCHES = 400, BATCH = 25, FLIPPERS = 1 };
    flipper f = {0};
    f.reg = make_reg(NULL);
    pthread_t th[FLIPPERS];
    for (int i = 0; i < FLIPPERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, flip_factor, &f), 0);
    counter ctr = {0};
    int wrong = 0;
    char first[128] = "";
    for (int b = 0; b < BATCHES; b++) {
        mc_cached *fns[BATCH];
        for (int i = 0; i < BATCH; i++) {
            char name[32];
            snprintf(name, sizeof name, "conc.fn%02d", i);
            fns[i] = make_fn(f.reg, name, 10, &ctr);
        }
        atomic_store(&f.pause, true);
        while (atomic_load(&f.paused) < FLIPPERS)
            sched_yield();
        /* With nothing running, a new function gets the factor in effect. */
        mc_cached *probe = make_fn(f.reg, "conc.probe", 10, &ctr);
        uint64_t want = bound_of(probe);
        mc_cached_destroy(probe);
        for (int i = 0; i < BATCH; i++) {
            uint64_t got = bound_of(fns[i]);
            if (got != want && wrong++ == 0)
                snprintf(first, sizeof first, "batch %d conc.fn%02d: bound %llu, want %llu", b, i,
                         (unsigned long long)got, (unsigned long long)want);
            mc_cached_destroy(fns[i]);
        }
        atomic_store(&f.pause, false);
        while (atomic_load(&f.paused) > 0)
            sched_yield();
    }
    atomic_store(&f.stop, true);
    for (int i = 0; i < FLIPPERS; i++)
        pthread_join(th[i], NULL);
    mc_registry_destroy(f.reg);
    assert_int_equal(atomic_load(&f.bad_rc), 0);
    if (wrong)
        fail_msg("%d of %d functions kept a stale factor (first: %s)", wrong, BATCHES * BATCH, first);
}

/* Dependent caches by name: an invalidation callback of one function invalidates another
 * through the registry. Callbacks run "outside every lock", so this must work whatever
 * made the entry leave, a factor change included, and leave the registry usable. */
typedef struct {
    mc_registry *reg;
    mc_cached *a, *b;
    atomic_int callbacks;
    atomic_int bad_rc;
    int rc;
} dep_state;

static void invalidate_dependent(void *ud)
{
    dep_state *d = ud;
    atomic_fetch_add(&d->callbacks, 1);
    /* Both ways a dependant reaches a function by name: invalidate by name, find it. */
    int rc = mc_registry_invalidate(d->reg, "dep.a", NULL, 0, NULL);
    if (rc != 0)
        atomic_store(&d->bad_rc, rc);
    if (mc_registry_find(d->reg, "dep.a") != d->a)
        atomic_store(&d->bad_rc, MC_ENOENT);
}

static void dep_shrink(dep_state *d) { d->rc = mc_registry_set_factor(d->reg, "dep.b", 0.1); }

/* Write-locked calls from another thread: the lock must have been released properly. */
static void dep_relock(dep_state *d)
{
    d->rc = mc_registry_remove(d->reg, d->a);
    if (d->rc == 0)
        d->rc = mc_registry_add(d->reg, d->a);
}

typedef struct {
    void (*step)(dep_state *);
    dep_state *d;
    atomic_bool done;
} watched_step;

/* Kept reachable if a step hangs, so that the stuck objects are not reported as leaks. */
static watched_step *stuck_step;

static void *run_step(void *p)
{
    watched_step *w = p;
    w->step(w->d);
    atomic_store(&w->done, true);
    return NULL;
}

/* Run a step on a helper thread: a deadlock fails the test (after 5 s) instead of hanging. */
static bool run_watched(void (*step)(dep_state *), dep_state *d)
{
    watched_step *w = calloc(1, sizeof *w);
    assert_non_null(w);
    w->step = step;
    w->d = d;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, run_step, w), 0);
    for (int i = 0; i < 1000 && !atomic_load(&w->done); i++)
        sleep_ms(5);
    if (!atomic_load(&w->done)) {
        stuck_step = w;
        pthread_detach(th);
        return false;
    }
    pthread_join(th, NULL);
    free(w);
    return true;
}

static void test_callback_uses_registry(void **state)
{
    (void)state;
    dep_state *d = calloc(1, sizeof *d);
    assert_non_null(d);
    d->reg = make_reg(NULL);
    counter ca = {0}, cb = {0};
    d->a = make_fn(d->reg, "dep.a", 10, &ca);
    d->b = make_fn(d->reg, "dep.b", 10, &cb);
    fill(d->a, 0, 3);
    for (int64_t i = 0; i < 5; i++) {
        mc_arg k[] = {MC_ARG_I(i)};
        mc_value *v = NULL;
        assert_int_equal(mc_cached_call_ex(d->b, k, 1, invalidate_dependent, d, &v), 0);
        mc_value_release(v);
    }

    /* Shrinking dep.b to one entry evicts four, whose callbacks reach dep.a by name. */
    if (!run_watched(dep_shrink, d))
        fail_msg("mc_registry_set_factor hung: an invalidation callback called the registry");
    assert_int_equal(d->rc, 0);
    assert_int_equal(atomic_load(&d->callbacks), 4);
    assert_int_equal(atomic_load(&d->bad_rc), 0);
    assert_int_equal(entries_of(d->a), 0);
    assert_int_equal(entries_of(d->b), 1);
    if (!run_watched(dep_relock, d))
        fail_msg("mc_registry_remove hung after a factor change whose callbacks called the "
                 "registry: the registry lock was left in a broken state");
    assert_int_equal(d->rc, 0);
    mc_cached_destroy(d->a);
    mc_cached_destroy(d->b); /* runs the last entry's callback: dep.a is gone, MC_ENOENT */
    mc_registry_destroy(d->reg);
    free(d);
}

/* ---- the maintenance thread ---- */

static void count_invalidation(void *ud) { atomic_fetch_add((atomic_int *)ud, 1); }

/* Wait (up to 10 s of real time) for a function's entry count to reach `want`. */
static bool wait_entries(mc_cached *fn, uint64_t want)
{
    for (int i = 0; i < 2000; i++) {
        if (entries_of(fn) == want)
            return true;
        sleep_ms(5);
    }
    return entries_of(fn) == want;
}

static void test_maintenance_thread(void **state)
{
    (void)state;
    mc_cache_config cfg;
    mc_cache_config_init(&cfg);
    cfg.expire_caches = true;
    cfg.cache_entry_ttl_ns = 1 * SEC;
    cfg.maintenance_interval_ns = 5 * MSEC;
    mc_registry *reg = make_reg(&cfg);
    test_clock clk = {100 * SEC};
    counter ctr = {0};
    mc_cached *fn = make_fn_ex(reg, "bg.fn", 100, false, &clk, &ctr);
    atomic_int gone = 0;
    mc_arg k1[] = {MC_ARG_I(1)};
    mc_value *v = NULL;
    assert_int_equal(mc_cached_call_ex(fn, k1, 1, count_invalidation, &gone, &v), 0);
    mc_value_release(v);
    fill(fn, 2, 1);

    assert_int_equal(mc_registry_start(reg), 0);
    assert_int_equal(mc_registry_start(reg), 0); /* already running: no second thread */
    sleep_ms(30);
    assert_int_equal(entries_of(fn), 2); /* nothing expired yet */

    /* Expire both entries: the thread removes them, and runs the attached callback. */
    clock_advance(&clk, 2 * SEC);
    assert_true(wait_entries(fn, 0));
    /* The callback runs just after the entry is counted out: give it that moment. */
    for (int i = 0; i < 2000 && atomic_load(&gone) == 0; i++)
        sleep_ms(5);
    mc_cache_stats st = cstats(fn);
    assert_int_equal(st.evictions[MC_EVICT_TIME], 2);
    assert_int_equal(atomic_load(&gone), 1);
    assert_int_equal(atomic_load(&ctr.calls), 2); /* no call was needed */

    /* Stopped, it no longer runs. */
    mc_registry_stop(reg);
    mc_registry_stop(reg);
    fill(fn, 3, 1);
    clock_advance(&clk, 2 * SEC);
    sleep_ms(50);
    assert_int_equal(entries_of(fn), 1);

    /* It can be started again, and destroying the registry stops it. */
    assert_int_equal(mc_registry_start(reg), 0);
    assert_true(wait_entries(fn, 0));
    fill(fn, 4, 1);
    mc_registry_destroy(reg);
    clock_advance(&clk, 2 * SEC);
    sleep_ms(50);
    assert_int_equal(entries_of(fn), 1);
    mc_cached_destroy(fn);

    assert_int_equal(mc_registry_start(NULL), MC_EINVAL);
    mc_registry_stop(NULL);
}

/* Destroying a registered function while the thread runs passes after every pass. */
static void test_maintenance_thread_with_churn(void **state)
{
    (void)state;
    mc_cache_config cfg;
    mc_cache_config_init(&cfg);
    cfg.expire_caches = true;
    cfg.cache_entry_ttl_ns = 1 * MSEC;
    cfg.maintenance_interval_ns = 1 * MSEC;
    mc_registry *reg = make_reg(&cfg);
    assert_int_equal(mc_registry_start(reg), 0);
    counter ctr = {0};
    for (int round = 0; round < 50; round++) {
        mc_cached *fn = make_fn(reg, "churn.fn", 100, &ctr);
        fill(fn, 0, 20);
        if (round % 10 == 0)
            sleep_ms(2);
        mc_cached_destroy(fn);
    }
    assert_null(mc_registry_find(reg, "churn.fn"));
    mc_registry_stop(reg);
    mc_registry_destroy(reg);
}

/* ---- one invalidation path: values, lengths, subtrees, subscribers, references, scopes ---- */

static int tree_loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)self;
    (void)args;
    (void)nargs;
    return mc_load_set_copy(load, "v", 1);
}

static mc_cached *make_tree(mc_registry *reg, const char *name, bool tree, size_t num_args)
{
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = name;
    o.max_entries = 1000;
    o.num_args = num_args;
    o.tree = tree;
    o.registry = reg;
    mc_cached *fn = NULL;
    assert_int_equal(mc_cached_create(&o, tree_loader, NULL, &fn), 0);
    return fn;
}

static void call_ss(mc_cached *fn, const char *a, const char *b)
{
    mc_arg args[] = {MC_ARG_S(a), MC_ARG_S(b)};
    mc_value *v;
    assert_int_equal(mc_cached_call(fn, args, 2, &v), 0);
    mc_value_release(v);
}

typedef struct {
    _Atomic int calls, remote;
    size_t last_removed, last_prefixes, last_nkeys;
    bool last_all;
} sub_log;

static int record_sub(void *ud, const mc_invalidation *inv, const mc_invalidation_result *res)
{
    sub_log *l = ud;
    atomic_fetch_add(&l->calls, 1);
    if (inv->origin == MC_INVALIDATION_REMOTE)
        atomic_fetch_add(&l->remote, 1);
    l->last_removed = res->removed;
    l->last_prefixes = res->prefixes;
    l->last_nkeys = inv->nkeys;
    l->last_all = inv->all;
    return 0;
}

static void test_lengths_and_subtrees(void **state)
{
    (void)state;
    mc_registry *reg = make_reg(NULL);
    mc_cached *tree = make_tree(reg, "profile.get_field", true, 2);
    mc_cached *flat = make_tree(reg, "profile.get_pair", false, 2);
    mc_cached *loose = make_tree(reg, "profile.any", true, 0);
    assert_int_equal(mc_cached_key_length(tree), 2);
    assert_int_equal(mc_cached_key_length(loose), 0);
    sub_log log = {0};
    assert_int_equal(mc_registry_subscribe(reg, record_sub, &log), 0);
    call_ss(tree, "u1", "name");
    call_ss(tree, "u1", "mail");
    call_ss(tree, "u2", "name");
    call_ss(flat, "u1", "name");

    /* mc_cached_invalidate: a shorter tuple drops the subtree; wrong lengths are refused. */
    mc_arg u1[] = {MC_ARG_S("u1")}, three[] = {MC_ARG_S("u1"), MC_ARG_S("name"), MC_ARG_S("x")};
    assert_int_equal(mc_cached_invalidate(tree, three, 3), MC_EINVAL);
    assert_int_equal(mc_cached_invalidate(tree, NULL, 0), MC_EINVAL);
    assert_int_equal(mc_cached_invalidate(flat, u1, 1), MC_EINVAL);
    assert_int_equal(entries_of(tree), 3);
    assert_int_equal(entries_of(flat), 1);
    assert_int_equal(mc_cached_invalidate(tree, u1, 1), 0);
    assert_int_equal(entries_of(tree), 1);
    assert_int_equal(mc_cached_invalidate(tree, u1, 1), MC_ENOENT); /* nothing left under it */
    assert_int_equal(atomic_load(&log.calls), 0); /* mc_cached_* is local: no subscriber */

    /* Through the registry (the JSON edge): applied, then handed on with the counts. */
    call_ss(tree, "u1", "name");
    call_ss(tree, "u1", "mail");
    mc_error err = {0};
    const char *sub[] = {"[\"u1\"]", "[\"u2\", \"name\"]"};
    assert_int_equal(mc_registry_invalidate(reg, "profile.get_field", sub, 2, &err), 0);
    assert_int_equal(entries_of(tree), 0);
    assert_int_equal(atomic_load(&log.calls), 1);
    assert_int_equal(log.last_removed, 3);
    assert_int_equal(log.last_prefixes, 1);
    assert_int_equal(log.last_nkeys, 2);

    /* Refusals name the key, apply nothing and hand nothing on. */
    call_ss(tree, "u1", "name");
    const char *bad[] = {"[\"u1\"]", "[\"u1\", \"name\", \"x\"]"};
    memset(&err, 0, sizeof err);
    assert_int_equal(mc_registry_invalidate(reg, "profile.get_field", bad, 2, &err), MC_EINVAL);
    assert_string_equal(err.message, "key 1 has 3 fields; profile.get_field takes 2 (or fewer, for a subtree)");
    const char *empty[] = {"[]"};
    assert_int_equal(mc_registry_invalidate(reg, "profile.get_field", empty, 1, &err), MC_EINVAL);
    assert_non_null(strstr(err.message, "key 0 is empty"));
    const char *short_flat[] = {"[\"u1\"]"};
    assert_int_equal(mc_registry_invalidate(reg, "profile.get_pair", short_flat, 1, &err), MC_EINVAL);
    assert_string_equal(err.message, "key 0 has 1 field; profile.get_pair takes 2");
    assert_int_equal(entries_of(tree), 1);
    assert_int_equal(entries_of(flat), 1);
    assert_int_equal(atomic_load(&log.calls), 1);

    /* Without num_args: any non-empty tuple is a prefix on a tree function. */
    call_ss(loose, "u1", "name");
    call_ss(loose, "u2", "name");
    mc_arg args1[] = {MC_ARG_S("u1")};
    assert_int_equal(mc_cached_invalidate(loose, args1, 1), 0);
    assert_int_equal(entries_of(loose), 1);

    /* A value built in C, remote origin (the bus reader's), and "all". */
    unsigned char k[64];
    size_t kl;
    assert_int_equal(mc_key_encode(u1, 1, k, sizeof k, &kl), 0);
    mc_invalidation_key key = {k, kl};
    mc_invalidation inv = {.name = "profile.get_field", .keys = &key, .nkeys = 1, .origin = MC_INVALIDATION_REMOTE};
    mc_invalidation_result res;
    assert_int_equal(mc_registry_apply(reg, NULL, &inv, &res, NULL), 0);
    assert_int_equal(res.removed, 1);
    assert_int_equal(res.prefixes, 1);
    assert_int_equal(res.subscribers, 1);
    assert_int_equal(atomic_load(&log.remote), 1);
    call_ss(tree, "u3", "a");
    call_ss(tree, "u4", "b");
    mc_invalidation all = {.name = "profile.get_field", .all = true};
    assert_int_equal(mc_registry_apply(reg, NULL, &all, &res, NULL), 0);
    assert_int_equal(res.removed, 2);
    assert_true(log.last_all);
    inv.name = "no.such";
    assert_int_equal(mc_registry_apply(reg, NULL, &inv, &res, &err), MC_ENOENT);

    assert_int_equal(mc_registry_unsubscribe(reg, record_sub, &log), 0);
    assert_int_equal(mc_registry_unsubscribe(reg, record_sub, &log), MC_ENOENT);
    mc_cached_destroy(tree);
    mc_cached_destroy(flat);
    mc_cached_destroy(loose);
    mc_registry_destroy(reg);
}

struct destroyer {
    mc_cached *fn;
    _Atomic bool done;
};

static void *destroy_main(void *arg)
{
    struct destroyer *d = arg;
    mc_cached_destroy(d->fn);
    atomic_store(&d->done, true);
    return NULL;
}

/* A counted reference keeps the function alive: destroy unregisters at once and waits. */
static void test_acquire_pins(void **state)
{
    (void)state;
    mc_registry *reg = make_reg(NULL);
    mc_cached *fn = make_tree(reg, "pin.fn", false, 1);
    mc_cached *held = NULL;
    assert_int_equal(mc_registry_acquire(reg, "pin.fn", &held), 0);
    assert_ptr_equal(held, fn);
    mc_cached *none = (mc_cached *)1;
    assert_int_equal(mc_registry_acquire(reg, "pin.other", &none), MC_ENOENT);
    assert_null(none);
    struct destroyer d = {fn, false};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, destroy_main, &d), 0);
    for (int i = 0; i < 5000 && mc_registry_find(reg, "pin.fn"); i++)
        sleep_ms(1);
    assert_null(mc_registry_find(reg, "pin.fn")); /* unregistered at once */
    sleep_ms(50);
    assert_false(atomic_load(&d.done)); /* ... but not freed while held */
    mc_arg a[] = {MC_ARG_S("k")};
    mc_value *v;
    assert_int_equal(mc_cached_call(held, a, 1, &v), 0); /* still usable */
    mc_value_release(v);
    mc_registry_release(held);
    pthread_join(t, NULL);
    assert_true(atomic_load(&d.done));
    mc_registry_destroy(reg);
}

/* Scopes: registration only while open; clearing by owner leaves the others alone and never
 * touches a function its owner destroyed. */
static void test_scopes(void **state)
{
    (void)state;
    mc_registry *reg = make_reg(NULL);
    mc_registry *a, *b;
    assert_int_equal(mc_registry_scope_create(reg, &a), 0);
    assert_int_equal(mc_registry_scope_create(reg, &b), 0);
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = "a.one";
    o.max_entries = 10;
    o.registry = a;
    mc_cached *fn = (mc_cached *)1;
    assert_int_equal(mc_cached_create(&o, tree_loader, NULL, &fn), MC_EBUSY); /* closed */
    assert_null(fn);
    assert_null(mc_registry_find(reg, "a.one"));
    mc_registry_scope_open(a, true);
    mc_registry_scope_open(b, true);
    mc_cached *one = make_tree(a, "a.one", false, 1), *two = make_tree(a, "a.two", false, 1);
    mc_cached *three = make_tree(b, "b.three", false, 1);
    mc_cached *loose = make_tree(NULL, "a.loose", false, 1);
    mc_registry_scope_open(a, false);
    assert_int_equal(mc_registry_add(a, loose), MC_EBUSY);
    assert_true(mc_registry_scope_owns(a, one));
    assert_false(mc_registry_scope_owns(b, one));
    assert_ptr_equal(mc_registry_find(a, "b.three"), three); /* a scope reads its registry */
    mc_cached_destroy(two); /* its owner destroyed it first */
    mc_registry_scope_destroy(a);
    assert_null(mc_registry_find(reg, "a.one"));
    assert_ptr_equal(mc_registry_find(reg, "b.three"), three);
    mc_cached_destroy(one); /* unregistered, still the owner's */
    mc_registry_scope_destroy(b);
    assert_null(mc_registry_find(reg, "b.three"));
    mc_cached_destroy(three);
    mc_cached_destroy(loose);
    mc_registry_destroy(reg);
}

/* Names of the registered functions, one per line, through whatever handle is listed. */
static void names_visit(void *ud, mc_cached *fn, const mc_cached_stats *st)
{
    (void)st;
    char *buf = ud;
    size_t used = strlen(buf);
    snprintf(buf + used, 256 - used, "%s\n", mc_cached_name(fn));
}

/* A view of a scope (the handle a module gets): registrations through it are the scope's and
 * obey the scope's open state; reads act on the registry; every control of the scope through
 * it (open, create a scope, clear, destroy) is refused and changes nothing. Only a registry
 * creates scopes. */
static void test_scope_views(void **state)
{
    (void)state;
    mc_registry *reg = make_reg(NULL);
    mc_registry *scope, *view, *other;
    assert_int_equal(mc_registry_scope_create(reg, &scope), 0);
    assert_int_equal(mc__registry_view_create(reg, &view), MC_EINVAL); /* not a scope */
    assert_null(view);
    assert_int_equal(mc__registry_view_create(scope, &view), 0);
    assert_int_equal(mc__registry_view_create(view, &other), MC_EINVAL); /* a view is not a scope */
    assert_null(other);
    mc_cached *outside = make_tree(reg, "host.fn", false, 1);
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = "m.one";
    o.max_entries = 10;
    o.registry = view;
    mc_cached *fn = (mc_cached *)1;
    /* The scope is closed, and opening it through the view does nothing. */
    assert_int_equal(mc_cached_create(&o, tree_loader, NULL, &fn), MC_EBUSY);
    assert_null(fn);
    mc_registry_scope_open(view, true);
    assert_int_equal(mc_cached_create(&o, tree_loader, NULL, &fn), MC_EBUSY);
    assert_null(fn);
    assert_null(mc_registry_find(reg, "m.one"));
    /* Open (by the scope's holder): the view registers as the scope. */
    mc_registry_scope_open(scope, true);
    mc_cached *one = make_tree(view, "m.one", false, 1);
    mc_cached *loose = make_tree(NULL, "m.loose", false, 1);
    assert_int_equal(mc_registry_add(view, loose), 0);
    assert_true(mc_registry_scope_owns(scope, one));
    assert_true(mc_registry_scope_owns(scope, loose));
    assert_true(mc_registry_scope_owns(view, one)); /* asks about the scope it views */
    assert_false(mc_registry_scope_owns(scope, outside));
    assert_false(mc_registry_scope_owns(view, outside));
    /* Reads act on the registry. */
    assert_ptr_equal(mc_registry_find(view, "host.fn"), outside);
    mc_cached *held;
    assert_int_equal(mc_registry_acquire(view, "m.one", &held), 0);
    assert_ptr_equal(held, one);
    mc_registry_release(held);
    char names[256] = "";
    mc_registry_list(view, names_visit, names);
    assert_string_equal(names, "host.fn\nm.loose\nm.one\n");
    mc_error err = {0};
    assert_int_equal(mc_registry_invalidate(view, "host.fn", NULL, 0, &err), 0);
    /* No scope from a view or from a scope: only a registry makes them. */
    other = (mc_registry *)1;
    assert_int_equal(mc_registry_scope_create(view, &other), MC_EBUSY);
    assert_null(other);
    other = (mc_registry *)1;
    assert_int_equal(mc_registry_scope_create(scope, &other), MC_EBUSY);
    assert_null(other);
    /* Clearing, destroying the view as a scope or as a registry: refused, nothing unregistered,
     * and the view still works (AddressSanitizer would see a freed one). */
    mc_registry_scope_clear(view);
    mc_registry_scope_destroy(view);
    mc_registry_destroy(view);
    assert_ptr_equal(mc_registry_find(view, "m.one"), one);
    assert_true(mc_registry_scope_owns(view, loose));
    names[0] = 0;
    mc_registry_list(reg, names_visit, names);
    assert_string_equal(names, "host.fn\nm.loose\nm.one\n");
    /* Unregistering through the view (or the scope) reaches only the scope's own functions. */
    assert_int_equal(mc_registry_remove(view, outside), MC_ENOENT);
    assert_int_equal(mc_registry_remove(scope, outside), MC_ENOENT);
    assert_ptr_equal(mc_registry_find(reg, "host.fn"), outside);
    assert_int_equal(mc_registry_remove(view, loose), 0);
    assert_null(mc_registry_find(reg, "m.loose"));
    assert_int_equal(mc_registry_add(view, loose), 0);
    /* The registry's own controls are not the module's. */
    mc_registry_set_bypass(view, true);
    assert_false(mc_registry_bypassing(reg));
    assert_int_equal(mc_registry_set_factor(view, "m.one", 2.0), MC_EBUSY);
    mc_cache_config rc_cfg;
    mc_cache_config_init(&rc_cfg);
    assert_int_equal(mc_registry_reload_factors(view, &rc_cfg), MC_EBUSY);
    assert_int_equal(mc_registry_start(view), MC_EBUSY);
    mc_registry_stop(view);
    assert_int_equal(mc_registry_set_factor(reg, "m.one", 2.0), 0); /* the host's handle does */
    /* Closing it, through the view, does nothing either; the scope's holder closes it. */
    mc_registry_scope_open(view, false);
    mc_cached *late = make_tree(view, "m.late", false, 1);
    mc_cached_destroy(late);
    mc_registry_scope_open(scope, false);
    o.name = "m.two";
    fn = (mc_cached *)1;
    assert_int_equal(mc_cached_create(&o, tree_loader, NULL, &fn), MC_EBUSY);
    assert_null(fn);
    late = make_tree(NULL, "m.late", false, 1);
    assert_int_equal(mc_registry_add(view, late), MC_EBUSY);
    assert_null(mc_registry_find(reg, "m.late"));
    /* The holder clears the scope: the view's registrations go, the registry's stay. */
    mc_registry_scope_clear(scope);
    names[0] = 0;
    mc_registry_list(reg, names_visit, names);
    assert_string_equal(names, "host.fn\n");
    /* A view destroy frees the view only; anything else is not a view and is left alone. */
    mc__registry_view_destroy(scope);
    mc__registry_view_destroy(reg);
    mc__registry_view_destroy(NULL);
    mc__registry_view_destroy(view);
    mc_registry_scope_open(scope, true);
    mc_cached *again = make_tree(scope, "m.again", false, 1);
    assert_true(mc_registry_scope_owns(scope, again));
    mc_registry_scope_destroy(scope);
    assert_null(mc_registry_find(reg, "m.again"));
    assert_ptr_equal(mc_registry_find(reg, "host.fn"), outside);
    mc_cached_destroy(again);
    mc_cached_destroy(late);
    mc_cached_destroy(loose);
    mc_cached_destroy(one);
    mc_cached_destroy(outside);
    mc_registry_destroy(reg);
}

/* A module's thread registers through its view while the host closes and clears the scope:
 * a registration either lands before the clear (and is cleared) or is refused, so nothing of
 * the scope's is left listed once the clear returns. Run under TSan. */
struct view_adder {
    mc_registry *view;
    mc_cached *fns[64];
    int n;
    _Atomic bool started;
};

static void *view_adder_main(void *arg)
{
    struct view_adder *a = arg;
    atomic_store(&a->started, true);
    while (a->n < 64) {
        char name[32];
        snprintf(name, sizeof name, "race.v%d", a->n);
        mc_cached_options o;
        mc_cached_options_init(&o);
        o.name = name;
        o.max_entries = 4;
        o.registry = a->view;
        mc_cached *fn = NULL;
        if (mc_cached_create(&o, tree_loader, NULL, &fn) != 0)
            break;
        a->fns[a->n++] = fn;
    }
    return NULL;
}

static void test_view_registers_while_scope_cleared(void **state)
{
    (void)state;
    mc_registry *reg = make_reg(NULL);
    for (int round = 0; round < 200; round++) {
        mc_registry *scope, *view;
        assert_int_equal(mc_registry_scope_create(reg, &scope), 0);
        assert_int_equal(mc__registry_view_create(scope, &view), 0);
        mc_registry_scope_open(scope, true);
        struct view_adder a = {.view = view};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, view_adder_main, &a), 0);
        while (!atomic_load(&a.started))
            sched_yield();
        if (round % 2)
            sched_yield();
        mc_registry_scope_open(scope, false);
        mc_registry_scope_clear(scope);
        char names[256] = "";
        mc_registry_list(reg, names_visit, names);
        assert_string_equal(names, "");
        pthread_join(t, NULL);
        names[0] = 0;
        mc_registry_list(reg, names_visit, names);
        assert_string_equal(names, ""); /* nothing landed after the clear either */
        mc__registry_view_destroy(view);
        mc_registry_scope_destroy(scope);
        for (int i = 0; i < a.n; i++)
            mc_cached_destroy(a.fns[i]);
    }
    mc_registry_destroy(reg);
}

/* Stress: admin-style (JSON, by name) and bus-style (remote values) invalidations and pinned
 * lookups by name on three threads, while a fourth keeps creating and destroying "modules"
 * (a scope and its functions, destroyed in either order). Run under ASan and TSan. */
struct churn {
    mc_registry *reg;
    _Atomic bool stop;
    _Atomic long applied, absent, calls;
};

static const char *const churn_names[] = {"m0.fa", "m0.fb", "m1.fa", "m1.fb"};

static void *churn_invalidate_json(void *arg)
{
    struct churn *c = arg;
    const char *keys[] = {"[\"u1\"]", "[\"u2\", \"x\"]"};
    for (unsigned i = 0; !atomic_load(&c->stop); i++) {
        int rc = mc_registry_invalidate(c->reg, churn_names[i % 4], i % 5 ? keys : NULL, i % 5 ? 2 : 0, NULL);
        assert_true(rc == 0 || rc == MC_ENOENT);
        atomic_fetch_add(rc == 0 ? &c->applied : &c->absent, 1);
        if (rc == MC_ENOENT)
            sched_yield(); /* between modules: let the churn thread make the next */
    }
    return NULL;
}

static void *churn_invalidate_remote(void *arg)
{
    struct churn *c = arg;
    mc_arg u[] = {MC_ARG_S("u2")};
    unsigned char k[32];
    size_t kl;
    assert_int_equal(mc_key_encode(u, 1, k, sizeof k, &kl), 0);
    mc_invalidation_key key = {k, kl};
    for (unsigned i = 0; !atomic_load(&c->stop); i++) {
        mc_invalidation inv = {.name = churn_names[(i + 1) % 4], .keys = &key, .nkeys = 1,
                               .origin = MC_INVALIDATION_REMOTE};
        int rc = mc_registry_apply(c->reg, NULL, &inv, NULL, NULL);
        assert_true(rc == 0 || rc == MC_ENOENT);
        atomic_fetch_add(rc == 0 ? &c->applied : &c->absent, 1);
        if (rc == MC_ENOENT)
            sched_yield(); /* between modules: let the churn thread make the next */
    }
    return NULL;
}

static void *churn_call_pinned(void *arg)
{
    struct churn *c = arg;
    for (unsigned i = 0; !atomic_load(&c->stop); i++) {
        mc_cached *fn;
        if (mc_registry_acquire(c->reg, churn_names[(i + 2) % 4], &fn) != 0)
            continue;
        call_ss(fn, i % 2 ? "u1" : "u2", "x");
        mc_cached_stats st;
        mc_cached_stats_get(fn, &st);
        mc_registry_release(fn);
        atomic_fetch_add(&c->calls, 1);
    }
    return NULL;
}

struct pair_destroyer {
    mc_cached *a, *b;
};

static void *destroy_pair_main(void *arg)
{
    struct pair_destroyer *d = arg;
    mc_cached_destroy(d->a);
    mc_cached_destroy(d->b);
    return NULL;
}

/* A module's own thread (its pool work, say) destroys its functions while the host clears and
 * destroys the module's scope: each function is unregistered exactly once, by whichever comes
 * first, and nothing of it is left registered. Run under TSan. */
static void test_scope_cleared_while_functions_destroyed(void **state)
{
    (void)state;
    mc_registry *reg = make_reg(NULL);
    for (int round = 0; round < 300; round++) {
        mc_registry *scope;
        assert_int_equal(mc_registry_scope_create(reg, &scope), 0);
        mc_registry_scope_open(scope, true);
        struct pair_destroyer d = {make_tree(scope, "race.a", false, 1), make_tree(scope, "race.b", false, 1)};
        mc_registry_scope_open(scope, false);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, destroy_pair_main, &d), 0);
        if (round % 2)
            sched_yield();
        mc_registry_scope_destroy(scope);
        pthread_join(t, NULL);
        assert_null(mc_registry_find(reg, "race.a"));
        assert_null(mc_registry_find(reg, "race.b"));
    }
    mc_registry_destroy(reg);
}

static int count_sub(void *ud, const mc_invalidation *inv, const mc_invalidation_result *res)
{
    (void)inv;
    (void)res;
    atomic_fetch_add((_Atomic int *)ud, 1);
    return 0;
}

static void test_invalidation_while_modules_churn(void **state)
{
    (void)state;
    struct churn c = {.reg = make_reg(NULL)};
    struct {
        _Atomic int calls;
    } log = {0};
    assert_int_equal(mc_registry_subscribe(c.reg, count_sub, &log.calls), 0);
    pthread_t t[3];
    assert_int_equal(pthread_create(&t[0], NULL, churn_invalidate_json, &c), 0);
    assert_int_equal(pthread_create(&t[1], NULL, churn_invalidate_remote, &c), 0);
    assert_int_equal(pthread_create(&t[2], NULL, churn_call_pinned, &c), 0);
    for (int round = 0; round < 300; round++) {
        int m = round % 2;
        mc_registry *scope;
        assert_int_equal(mc_registry_scope_create(c.reg, &scope), 0);
        mc_registry_scope_open(scope, true);
        mc_cached *fa = make_tree(scope, churn_names[2 * m], true, 2);
        mc_cached *fb = make_tree(scope, churn_names[2 * m + 1], true, 2);
        mc_registry_scope_open(scope, false);
        call_ss(fa, "u1", "x");
        call_ss(fb, "u2", "x");
        if (round % 3 == 0)
            sched_yield();
        if (round % 2) {
            mc_cached_destroy(fa); /* the module destroys one itself, then is unloaded */
            mc_registry_scope_destroy(scope);
            mc_cached_destroy(fb);
        } else {
            mc_registry_scope_destroy(scope); /* unloaded first (fini destroys after) */
            mc_cached_destroy(fa);
            mc_cached_destroy(fb);
        }
    }
    atomic_store(&c.stop, true);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    print_message("churn: %ld applied, %ld absent, %ld pinned calls, %d handed to the subscriber\n",
                  atomic_load(&c.applied), atomic_load(&c.absent), atomic_load(&c.calls), atomic_load(&log.calls));
    assert_true(atomic_load(&c.applied) > 0);
    assert_int_equal(atomic_load(&log.calls), (int)atomic_load(&c.applied));
    for (int i = 0; i < 4; i++)
        assert_null(mc_registry_find(c.reg, churn_names[i]));
    mc_registry_destroy(c.reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_create_validation, clear_env),
        cmocka_unit_test_setup(test_defaults, clear_env),
        cmocka_unit_test_setup(test_register_by_name, clear_env),
        cmocka_unit_test_setup(test_list_in_name_order, clear_env),
        cmocka_unit_test_setup(test_invalidate_by_name, clear_env),
        cmocka_unit_test_setup(test_lengths_and_subtrees, clear_env),
        cmocka_unit_test_setup(test_acquire_pins, clear_env),
        cmocka_unit_test_setup(test_scopes, clear_env),
        cmocka_unit_test_setup(test_scope_views, clear_env),
        cmocka_unit_test_setup(test_view_registers_while_scope_cleared, clear_env),
        cmocka_unit_test_setup(test_invalidation_while_modules_churn, clear_env),
        cmocka_unit_test_setup(test_scope_cleared_while_functions_destroyed, clear_env),
        cmocka_unit_test_setup(test_factors_from_config, clear_env),
        cmocka_unit_test_setup(test_factor_env_global, clear_env),
        cmocka_unit_test_setup(test_factor_env_per_name, clear_env),
        cmocka_unit_test_setup(test_reload_factors, clear_env),
        cmocka_unit_test_setup(test_factor_overflow, clear_env),
        cmocka_unit_test_setup(test_set_factor_resizes, clear_env),
        cmocka_unit_test_setup(test_ttl_expiry, clear_env),
        cmocka_unit_test_setup(test_memory_autotuning, clear_env),
        cmocka_unit_test_setup(test_memory_target_defaults_to_max, clear_env),
        cmocka_unit_test_setup(test_memory_autotuning_added_function, clear_env),
        cmocka_unit_test_setup(test_bypass_reaches_every_call, clear_env),
        cmocka_unit_test_setup(test_bypass_shares_one_load, clear_env),
        cmocka_unit_test_setup(test_concurrent_create_and_set_factor, clear_env),
        cmocka_unit_test_setup(test_maintenance_thread, clear_env),
        cmocka_unit_test_setup(test_maintenance_thread_with_churn, clear_env),
        /* Last: if it deadlocks, the stuck thread holds a registry no other test uses. */
        cmocka_unit_test_setup(test_callback_uses_registry, clear_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
