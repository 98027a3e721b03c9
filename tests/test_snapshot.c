/* Snapshots of persistent memoized functions (modcache/snapshot.h), in one process: a round
 * trip into fresh functions, ages against TTL, bounds on restore, what is left out, and files
 * refused for each fault (foreign, other version, truncated, damaged, unreadable). */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "cache/cache_cached.h"
#include "cached/cached_internal.h"
#include "core/alloc.h"
#include "modcache.h"

static char dir[] = "/tmp/mc-snapshot-XXXXXX";
static char path[256];

/* A settable clock, shared by every function of a test (TTL and ages). */
static uint64_t clock_now = 1000000000000ull;
static uint64_t test_clock(void *ud)
{
    (void)ud;
    return clock_now;
}

/* Loader: "v:<key>" for keys not starting with "none", "no value" for those; counts runs. */
static int loads;
static int loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)self;
    (void)nargs;
    loads++;
    if (args[0].v.s.len >= 4 && !memcmp((const char *)args[0].v.s.ptr, "none", 4))
        return mc_load_set_none(load);
    char buf[64];
    int n = snprintf(buf, sizeof buf, "v:%.*s", (int)args[0].v.s.len, (const char *)args[0].v.s.ptr);
    return mc_load_set_copy(load, buf, (size_t)n);
}

static void free_owned(void *p) { free(p); }
static int owned_loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)self;
    (void)args;
    (void)nargs;
    loads++;
    char *p = strdup("owned");
    return mc_load_set_owned(load, p, 5, free_owned);
}

static mc_cached *make(mc_registry *reg, const char *name, size_t max, bool persist, mc_loader_fn fn)
{
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = name;
    o.max_entries = max;
    o.num_args = 1;
    o.registry = reg;
    o.persist = persist;
    o.clock = test_clock;
    mc_cached *f = NULL;
    assert_int_equal(mc_cached_create(&o, fn, NULL, &f), 0);
    return f;
}

static void call(mc_cached *fn, const char *key, char *out, size_t cap, bool *none)
{
    mc_value *v = NULL;
    assert_int_equal(MC_CACHED_CALL(fn, &v, MC_ARG_S(key)), 0);
    *none = mc_value_is_none(v);
    snprintf(out, cap, "%.*s", (int)mc_value_size(v), (const char *)mc_value_data(v));
    mc_value_release(v);
}

static mc_registry *registry_ttl(uint64_t ttl_ns)
{
    mc_cache_config cfg;
    mc_cache_config_init(&cfg);
    if (ttl_ns) {
        cfg.expire_caches = true;
        cfg.cache_entry_ttl_ns = ttl_ns;
    }
    mc_registry *reg = NULL;
    assert_int_equal(mc_registry_create(&cfg, &reg), 0);
    return reg;
}

static void test_round_trip(void **state)
{
    (void)state;
    mc_registry *reg = registry_ttl(0);
    mc_cached *p = make(reg, "t.persist", 1000, true, loader);
    mc_cached *q = make(reg, "t.plain", 1000, false, loader);
    mc_cached *o = make(reg, "t.owned", 1000, true, owned_loader);
    char buf[64];
    bool none;
    char key[32];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "k%d", i);
        call(p, key, buf, sizeof buf, &none);
        call(q, key, buf, sizeof buf, &none);
    }
    call(p, "none1", buf, sizeof buf, &none);
    assert_true(none);
    call(o, "x", buf, sizeof buf, &none);
    mc_snapshot_write_stats ws;
    mc_error err = {0};
    assert_int_equal(mc_snapshot_write(reg, "origin!", 7, path, &ws, &err), 0);
    assert_int_equal(ws.functions, 2); /* t.persist and t.owned */
    assert_int_equal(ws.entries, 101);
    assert_int_equal(ws.skipped, 1); /* the owned value */
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal((uint64_t)sb.st_size, ws.bytes);
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_not_equal(access(tmp, F_OK), 0);
    mc_cached_destroy(p);
    mc_cached_destroy(q);
    mc_cached_destroy(o);
    mc_registry_destroy(reg);

    /* A fresh process, as far as the functions know. */
    mc_snapshot *snap = NULL;
    mc_snapshot_fault fault;
    assert_int_equal(mc_snapshot_read(path, &snap, &fault, &err), 0);
    size_t olen;
    const void *origin = mc_snapshot_origin(snap, &olen);
    assert_int_equal(olen, 7);
    assert_memory_equal(origin, "origin!", 7);
    assert_int_equal(mc_snapshot_function_count(snap), 2);
    reg = registry_ttl(0);
    p = make(reg, "t.persist", 1000, true, loader);
    q = make(reg, "t.plain", 1000, true, loader); /* persistent now, but nothing was saved */
    mc_snapshot_restore_stats rs;
    assert_int_equal(mc_snapshot_restore(snap, reg, &rs), 0);
    assert_int_equal(rs.restored, 101);
    assert_int_equal(rs.functions, 1);
    assert_int_equal(rs.unknown, 1); /* t.owned is not registered now */
    mc_snapshot_free(snap);
    loads = 0;
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "k%d", i);
        call(p, key, buf, sizeof buf, &none);
        char want[64];
        snprintf(want, sizeof want, "v:%s", key);
        assert_string_equal(buf, want);
        assert_false(none);
    }
    call(p, "none1", buf, sizeof buf, &none);
    assert_true(none);
    assert_int_equal(loads, 0);
    call(q, "k1", buf, sizeof buf, &none);
    assert_int_equal(loads, 1);
    mc_cached_destroy(p);
    mc_cached_destroy(q);
    mc_registry_destroy(reg);
}

/* Ages come back: TTL (expire-after-access) counts from the saved last access. */
static void test_ages_and_ttl(void **state)
{
    (void)state;
    uint64_t s = 1000000000ull;
    mc_registry *reg = registry_ttl(100 * s);
    mc_cached *p = make(reg, "t.aged", 1000, true, loader);
    char buf[64];
    bool none;
    call(p, "old", buf, sizeof buf, &none);
    clock_now += 40 * s;
    call(p, "young", buf, sizeof buf, &none);
    clock_now += 20 * s; /* old: idle 60 s, young: 20 s */
    mc_error err = {0};
    assert_int_equal(mc_snapshot_write(reg, NULL, 0, path, NULL, &err), 0);
    mc_cached_destroy(p);
    mc_registry_destroy(reg);

    mc_snapshot *snap = NULL;
    assert_int_equal(mc_snapshot_read(path, &snap, NULL, &err), 0);
    /* A shorter TTL now: "old" (60 s) is past 50 s, "young" is not. */
    reg = registry_ttl(50 * s);
    p = make(reg, "t.aged", 1000, true, loader);
    mc_snapshot_restore_stats rs;
    assert_int_equal(mc_snapshot_restore(snap, reg, &rs), 0);
    assert_int_equal(rs.restored, 1);
    assert_int_equal(rs.expired, 1);
    loads = 0;
    call(p, "young", buf, sizeof buf, &none);
    assert_int_equal(loads, 0);
    /* The read refreshed it: 49 s later it is still there; then idle past 50 s, gone. */
    clock_now += 49 * s;
    call(p, "young", buf, sizeof buf, &none);
    assert_int_equal(loads, 0);
    mc_cached_destroy(p);
    mc_registry_destroy(reg);

    /* The same TTL: the restored entry expires when 50 s of its idle time have passed in all,
     * 20 s of them before the snapshot. */
    reg = registry_ttl(50 * s);
    p = make(reg, "t.aged", 1000, true, loader);
    assert_int_equal(mc_snapshot_restore(snap, reg, &rs), 0);
    assert_int_equal(rs.restored, 1);
    clock_now += 31 * s; /* 20 + 31 > 50 */
    loads = 0;
    call(p, "young", buf, sizeof buf, &none);
    assert_int_equal(loads, 1);
    mc_cached_destroy(p);
    mc_registry_destroy(reg);
    mc_snapshot_free(snap);
}

/* A smaller bound now: the bound holds and the most recently used entries are the ones kept. */
static void test_bounds_keep_recent(void **state)
{
    (void)state;
    mc_registry *reg = registry_ttl(0);
    mc_cached *p = make(reg, "t.bound", 1000, true, loader);
    char buf[64], key[32];
    bool none;
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "k%03d", i);
        call(p, key, buf, sizeof buf, &none);
        clock_now += 1000000; /* 1 ms apart: k199 the most recent */
    }
    mc_error err = {0};
    assert_int_equal(mc_snapshot_write(reg, NULL, 0, path, NULL, &err), 0);
    mc_cached_destroy(p);
    mc_registry_destroy(reg);

    mc_snapshot *snap = NULL;
    assert_int_equal(mc_snapshot_read(path, &snap, NULL, &err), 0);
    assert_int_equal(mc_snapshot_function_entries(snap, 0), 200);
    reg = registry_ttl(0);
    p = make(reg, "t.bound", 50, true, loader);
    mc_snapshot_restore_stats rs;
    assert_int_equal(mc_snapshot_restore(snap, reg, &rs), 0);
    mc_snapshot_free(snap);
    assert_true(mc_cache_size(mc_cached_cache(p)) <= 50);
    assert_true(mc_cache_size(mc_cached_cache(p)) >= 40);
    /* The newest ten are all there, the oldest ten none. */
    for (int i = 0; i < 10; i++) {
        unsigned char k[64];
        size_t klen;
        snprintf(key, sizeof key, "k%03d", 199 - i);
        assert_int_equal(mc_key_encode((const mc_arg[]){MC_ARG_S(key)}, 1, k, sizeof k, &klen), 0);
        assert_true(mc_cache_contains(mc_cached_cache(p), k, klen));
        snprintf(key, sizeof key, "k%03d", i);
        assert_int_equal(mc_key_encode((const mc_arg[]){MC_ARG_S(key)}, 1, k, sizeof k, &klen), 0);
        assert_false(mc_cache_contains(mc_cached_cache(p), k, klen));
    }
    mc_cached_destroy(p);
    mc_registry_destroy(reg);
}

/* A large restore (stored by two threads, by shard): everything comes back, and into a bound
 * half its size the most recently used are the ones kept. */
static void test_large_restore(void **state)
{
    (void)state;
    enum { N = 80000 };
    mc_registry *reg = registry_ttl(0);
    mc_cached *p = make(reg, "t.large", N * 2, true, loader);
    char key[32];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(mc_cached_prefill(p, (const mc_arg[]){MC_ARG_S(key)}, 1, key, strlen(key)), 0);
        clock_now += 1000; /* 1 us apart: k<N-1> the most recent */
    }
    mc_error err = {0};
    mc_snapshot_write_stats ws;
    assert_int_equal(mc_snapshot_write(reg, NULL, 0, path, &ws, &err), 0);
    uint64_t held = mc_cache_size(mc_cached_cache(p));
    assert_int_equal(ws.entries, held);
    mc_cached_destroy(p);
    mc_registry_destroy(reg);
    mc_snapshot *snap = NULL;
    assert_int_equal(mc_snapshot_read(path, &snap, NULL, &err), 0);

    reg = registry_ttl(0);
    p = make(reg, "t.large", N * 2, true, loader);
    mc_snapshot_restore_stats rs;
    assert_int_equal(mc_snapshot_restore(snap, reg, &rs), 0);
    assert_int_equal(rs.restored, held);
    assert_int_equal(mc_cache_size(mc_cached_cache(p)), held);
    mc_cached_destroy(p);
    mc_registry_destroy(reg);

    reg = registry_ttl(0);
    p = make(reg, "t.large", N / 2, true, loader);
    assert_int_equal(mc_snapshot_restore(snap, reg, &rs), 0);
    assert_true(mc_cache_size(mc_cached_cache(p)) <= N / 2);
    size_t newest = 0, oldest = 0;
    for (int i = 0; i < 1000; i++) {
        unsigned char k[64];
        size_t klen;
        snprintf(key, sizeof key, "k%d", N - 1 - i);
        assert_int_equal(mc_key_encode((const mc_arg[]){MC_ARG_S(key)}, 1, k, sizeof k, &klen), 0);
        newest += mc_cache_contains(mc_cached_cache(p), k, klen);
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(mc_key_encode((const mc_arg[]){MC_ARG_S(key)}, 1, k, sizeof k, &klen), 0);
        oldest += mc_cache_contains(mc_cached_cache(p), k, klen);
    }
    /* Sharded LRU is close to exact: the newest thousand stay, the oldest thousand went. */
    assert_true(newest >= 990);
    assert_true(oldest <= 10);
    mc_snapshot_free(snap);
    mc_cached_destroy(p);
    mc_registry_destroy(reg);
}

/* A key loaded since start is newer than the snapshot's: restore leaves it. */
static void test_present_key_kept(void **state)
{
    (void)state;
    mc_registry *reg = registry_ttl(0);
    mc_cached *p = make(reg, "t.present", 100, true, loader);
    char buf[64];
    bool none;
    call(p, "a", buf, sizeof buf, &none);
    mc_error err = {0};
    assert_int_equal(mc_snapshot_write(reg, NULL, 0, path, NULL, &err), 0);
    mc_cached_invalidate_all(p);
    assert_int_equal(mc_cached_prefill(p, (const mc_arg[]){MC_ARG_S("a")}, 1, "fresh", 5), 0);
    mc_snapshot *snap = NULL;
    assert_int_equal(mc_snapshot_read(path, &snap, NULL, &err), 0);
    mc_snapshot_restore_stats rs;
    assert_int_equal(mc_snapshot_restore(snap, reg, &rs), 0);
    assert_int_equal(rs.present, 1);
    assert_int_equal(rs.restored, 0);
    call(p, "a", buf, sizeof buf, &none);
    assert_string_equal(buf, "fresh");
    mc_snapshot_free(snap);
    mc_cached_destroy(p);
    mc_registry_destroy(reg);
}

/* The file's bytes, for the refusal tests. */
static unsigned char *slurp(size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void expect_refused(const unsigned char *b, size_t len, mc_snapshot_fault want, const char *word)
{
    mc_snapshot *snap = (mc_snapshot *)1;
    mc_snapshot_fault fault = MC_SNAPSHOT_OK;
    mc_error err = {0};
    assert_int_equal(mc_snapshot_parse(b, len, &snap, &fault, &err), MC_EPARSE);
    assert_null(snap);
    assert_int_equal(fault, want);
    assert_non_null(strstr(err.message, word));
}

static void test_refusals(void **state)
{
    (void)state;
    mc_registry *reg = registry_ttl(0);
    mc_cached *p = make(reg, "t.refuse", 100, true, loader);
    char buf[64];
    bool none;
    call(p, "a", buf, sizeof buf, &none);
    call(p, "b", buf, sizeof buf, &none);
    mc_error err = {0};
    assert_int_equal(mc_snapshot_write(reg, "pos", 3, path, NULL, &err), 0);
    size_t len;
    unsigned char *b = slurp(&len);
    mc_snapshot *snap = NULL;
    assert_int_equal(mc_snapshot_parse(b, len, &snap, NULL, &err), 0);
    mc_snapshot_free(snap);

    expect_refused((const unsigned char *)"{\"json\": true}\n", 15, MC_SNAPSHOT_FOREIGN, "foreign");
    expect_refused(b, 5, MC_SNAPSHOT_TRUNCATED, "truncated");
    expect_refused(b, len - 1, MC_SNAPSHOT_TRUNCATED, "truncated");
    expect_refused(b, len / 2, MC_SNAPSHOT_TRUNCATED, "truncated");
    unsigned char *c = malloc(len);
    memcpy(c, b, len);
    c[8] = 2; /* version 2 */
    expect_refused(c, len, MC_SNAPSHOT_WRONG_VERSION, "version 2");
    /* One flipped bit anywhere in header or body. */
    for (size_t i = 0; i < len - 24; i++) {
        if (i >= 8 && i < 12)
            continue; /* the version: refused as such */
        memcpy(c, b, len);
        c[i] ^= 0x10;
        expect_refused(c, len, i < 8 ? MC_SNAPSHOT_FOREIGN : MC_SNAPSHOT_DAMAGED, i < 8 ? "foreign" : "damaged");
    }
    /* The trailer's checksum itself. */
    memcpy(c, b, len);
    c[len - 16] ^= 1;
    expect_refused(c, len, MC_SNAPSHOT_DAMAGED, "checksum");
    free(c);

    /* Files: missing, not a regular file, damaged on disk. */
    mc_snapshot_fault fault;
    char other[300];
    snprintf(other, sizeof other, "%s/none", dir);
    assert_int_equal(mc_snapshot_read(other, &snap, &fault, &err), MC_ENOENT);
    assert_int_equal(fault, MC_SNAPSHOT_MISSING);
    assert_int_equal(mc_snapshot_read(dir, &snap, &fault, &err), MC_EIO);
    assert_int_equal(fault, MC_SNAPSHOT_UNREADABLE);
    b[len / 2] ^= 0xff;
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, len, f);
    fclose(f);
    assert_int_equal(mc_snapshot_read(path, &snap, &fault, &err), MC_EPARSE);
    assert_int_equal(fault, MC_SNAPSHOT_DAMAGED);
    assert_non_null(strstr(err.message, path));
    free(b);
    mc_cached_destroy(p);
    mc_registry_destroy(reg);
}

/* A write that cannot happen leaves the previous file and no temporary one. */
static void test_write_failure(void **state)
{
    (void)state;
    mc_registry *reg = registry_ttl(0);
    char bad[300];
    snprintf(bad, sizeof bad, "%s/missing-dir/snap", dir);
    mc_error err = {0};
    assert_int_equal(mc_snapshot_write(reg, NULL, 0, bad, NULL, &err), MC_EIO);
    assert_non_null(strstr(err.message, "missing-dir"));
    assert_int_equal(mc_snapshot_write(reg, NULL, 5000, path, NULL, &err), MC_EINVAL);
    assert_int_equal(mc_snapshot_write(NULL, NULL, 0, path, NULL, &err), MC_EINVAL);
    assert_string_equal(mc_snapshot_fault_name(MC_SNAPSHOT_DAMAGED), "damaged");
    mc_registry_destroy(reg);
}

/* A persistent function with no entries: written (empty shards), read, restored into. */
/* A function with write-age rules: snapshots keep no write time, so expire_after_write refuses
 * every saved entry, none_ttl the "no value" ones, and refresh_after restores them due for a
 * background refresh at their first hit. */
static mc_cached *make_aged(mc_registry *reg, uint64_t refresh, uint64_t expire, uint64_t none_ttl)
{
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = "t.aged";
    o.max_entries = 100;
    o.num_args = 1;
    o.registry = reg;
    o.persist = true;
    o.clock = test_clock;
    o.refresh_after_ns = refresh;
    o.expire_after_write_ns = expire;
    o.none_ttl_ns = none_ttl;
    mc_cached *f = NULL;
    assert_int_equal(mc_cached_create(&o, loader, NULL, &f), 0);
    return f;
}

static void test_write_age_rules(void **state)
{
    (void)state;
    mc_registry *reg = registry_ttl(0);
    mc_cached *p = make(reg, "t.aged", 100, true, loader);
    char buf[64];
    bool none;
    call(p, "k1", buf, sizeof buf, &none);
    call(p, "k2", buf, sizeof buf, &none);
    call(p, "none1", buf, sizeof buf, &none);
    mc_error err = {0};
    mc_snapshot_write_stats ws;
    assert_int_equal(mc_snapshot_write(reg, NULL, 0, path, &ws, &err), 0);
    assert_int_equal(ws.entries, 3);
    mc_cached_destroy(p);
    mc_registry_destroy(reg);
    mc_snapshot *snap = NULL;
    mc_snapshot_fault fault;
    assert_int_equal(mc_snapshot_read(path, &snap, &fault, &err), 0);
    const uint64_t s = 1000000000ull;

    /* expire_after_write: no saved entry can be proven young enough. */
    reg = registry_ttl(0);
    p = make_aged(reg, 0, 60 * s, 0);
    mc_snapshot_restore_stats rs;
    assert_int_equal(mc_snapshot_restore(snap, reg, &rs), 0);
    assert_int_equal(rs.restored, 0);
    assert_int_equal(rs.expired, 3);
    mc_cached_destroy(p);
    mc_registry_destroy(reg);

    /* none_ttl: the "no value" entry is left out, the values restored. */
    reg = registry_ttl(0);
    p = make_aged(reg, 0, 0, 5 * s);
    assert_int_equal(mc_snapshot_restore(snap, reg, &rs), 0);
    assert_int_equal(rs.restored, 2);
    assert_int_equal(rs.expired, 1);
    mc_cached_destroy(p);
    mc_registry_destroy(reg);

    /* refresh_after: restored, served at once, refreshed once in the background. */
    reg = registry_ttl(0);
    p = make_aged(reg, 60 * s, 0, 0);
    assert_int_equal(mc_snapshot_restore(snap, reg, &rs), 0);
    assert_int_equal(rs.restored, 3);
    mc_cached_stats st;
    mc_cached_stats_get(p, &st);
    uint64_t loads0 = st.loads;
    call(p, "k1", buf, sizeof buf, &none);
    assert_string_equal(buf, "v:k1");
    mc_cached_stats_get(p, &st);
    assert_int_equal(st.refreshes, 1);
    for (int i = 0; i < 500 && st.loads == loads0; i++) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
        mc_cached_stats_get(p, &st);
    }
    assert_int_equal(st.loads, loads0 + 1); /* the background reload ran */
    call(p, "k1", buf, sizeof buf, &none);
    call(p, "k2", buf, sizeof buf, &none); /* k2's own first hit: its refresh */
    mc_cached_stats_get(p, &st);
    assert_int_equal(st.refreshes, 2); /* k1's reload stored a fresh write time */
    mc_cached_destroy(p);
    mc_registry_destroy(reg);
    mc_snapshot_free(snap);
}

/* A function whose loads depend on another's entries (mc_load_call) writes none of them: the
 * dependency records that would invalidate them do not survive the process. */
static mc_cached *dep_target;
static int dependent_loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)self;
    (void)nargs;
    mc_value *v = NULL;
    int rc = mc_load_call(load, dep_target, args, 1, &v);
    if (rc != 0)
        return rc;
    char buf[80];
    int n = snprintf(buf, sizeof buf, "dep(%.*s)", (int)mc_value_size(v), (const char *)mc_value_data(v));
    mc_value_release(v);
    return mc_load_set_copy(load, buf, (size_t)n);
}

/* Entries of a function with write-age rules keep their write age across a restart:
 * expire_after_write and refresh_after count from the original store. */
static void test_write_ages_kept(void **state)
{
    (void)state;
    const uint64_t s = 1000000000ull;
    mc_registry *reg = registry_ttl(0);
    mc_cached *p = make_aged(reg, 0, 100 * s, 0);
    char buf[64];
    bool none;
    call(p, "k1", buf, sizeof buf, &none);
    clock_now += 50 * s;
    call(p, "k2", buf, sizeof buf, &none);
    clock_now += 10 * s; /* write ages: k1 60 s, k2 10 s */
    mc_error err = {0};
    mc_snapshot_write_stats ws;
    assert_int_equal(mc_snapshot_write(reg, NULL, 0, path, &ws, &err), 0);
    assert_int_equal(ws.entries, 2);
    mc_cached_destroy(p);
    mc_registry_destroy(reg);
    mc_snapshot *snap = NULL;
    mc_snapshot_fault fault;
    assert_int_equal(mc_snapshot_read(path, &snap, &fault, &err), 0);

    /* A 55 s lifetime: k1 is too old already, k2 is restored and expires at its own age. */
    reg = registry_ttl(0);
    p = make_aged(reg, 0, 55 * s, 0);
    mc_snapshot_restore_stats rs;
    assert_int_equal(mc_snapshot_restore(snap, reg, &rs), 0);
    assert_int_equal(rs.restored, 1);
    assert_int_equal(rs.expired, 1);
    mc_cached_stats st;
    mc_cached_stats_get(p, &st);
    uint64_t loads0 = st.loads;
    call(p, "k2", buf, sizeof buf, &none); /* 10 s old: served */
    mc_cached_stats_get(p, &st);
    assert_int_equal(st.loads, loads0);
    clock_now += 50 * s; /* 60 s since k2 was first stored: past 55 */
    call(p, "k2", buf, sizeof buf, &none);
    mc_cached_stats_get(p, &st);
    assert_int_equal(st.loads, loads0 + 1);
    assert_int_equal(st.expiries, 1);
    mc_cached_destroy(p);
    mc_registry_destroy(reg);

    /* refresh_after 30 s: k1 (60 s) is refreshed at its first hit, k2 (10 s) is not. */
    reg = registry_ttl(0);
    p = make_aged(reg, 30 * s, 0, 0);
    assert_int_equal(mc_snapshot_restore(snap, reg, &rs), 0);
    assert_int_equal(rs.restored, 2);
    call(p, "k2", buf, sizeof buf, &none);
    mc_cached_stats_get(p, &st);
    assert_int_equal(st.refreshes, 0);
    call(p, "k1", buf, sizeof buf, &none);
    mc_cached_stats_get(p, &st);
    assert_int_equal(st.refreshes, 1);
    mc_cached_destroy(p);
    mc_registry_destroy(reg);
    mc_snapshot_free(snap);
}

static void test_dependent_function_not_written(void **state)
{
    (void)state;
    mc_registry *reg = registry_ttl(0);
    dep_target = make(reg, "t.base", 100, true, loader);
    mc_cached *f = make(reg, "t.derived", 100, true, dependent_loader);
    char buf[64];
    bool none;
    call(f, "k1", buf, sizeof buf, &none);
    assert_string_equal(buf, "dep(v:k1)");
    call(f, "k2", buf, sizeof buf, &none);
    mc_error err = {0};
    mc_snapshot_write_stats ws;
    assert_int_equal(mc_snapshot_write(reg, NULL, 0, path, &ws, &err), 0);
    assert_int_equal(ws.functions, 1); /* t.base */
    assert_int_equal(ws.entries, 2);   /* its k1 and k2 */
    assert_int_equal(ws.skipped, 2);   /* t.derived's two */
    mc_cached_destroy(f);
    mc_cached_destroy(dep_target);
    mc_registry_destroy(reg);
}

/* A function that records its first dependency while a snapshot copies its shards: the
 * shards copied after that moment may hold the dependent entry, so they are left out; the
 * dependent entry is never restored (restored, it would outlive an invalidation of its base). */
static mc_cached *hook_derived;
static int hook_calls;

static void dep_during_copy(mc_cached *fn, unsigned shard)
{
    if (fn != hook_derived || shard != 0 || hook_calls++)
        return;
    char buf[64];
    bool none;
    call(hook_derived, "dep", buf, sizeof buf, &none); /* the function's first dependency */
    assert_string_equal(buf, "dep(v:dep)");
}

static void test_dependency_recorded_during_write(void **state)
{
    (void)state;
    mc_registry *reg = registry_ttl(0);
    dep_target = make(reg, "t.base", 100, true, loader);
    hook_derived = make(reg, "t.derived", 100000, true, dependent_loader);
    assert_true(mc__cache_shards(mc_cached_cache(hook_derived)) > 1);
    for (int i = 0; i < 64; i++) { /* entries of no dependency, in every shard */
        char k[16];
        snprintf(k, sizeof k, "p%d", i);
        mc_arg a[] = {MC_ARG_S(k)};
        assert_int_equal(mc_cached_prefill(hook_derived, a, 1, "x", 1), 0);
    }
    hook_calls = 0;
    mc__snapshot_test_hook = dep_during_copy;
    mc_error err = {0};
    mc_snapshot_write_stats ws;
    assert_int_equal(mc_snapshot_write(reg, NULL, 0, path, &ws, &err), 0);
    mc__snapshot_test_hook = NULL;
    assert_int_equal(hook_calls, 1);
    assert_true(ws.skipped >= 1);
    mc_cached_destroy(hook_derived);
    mc_cached_destroy(dep_target);
    mc_registry_destroy(reg);

    mc_snapshot *snap = NULL;
    assert_int_equal(mc_snapshot_read(path, &snap, NULL, &err), 0);
    reg = registry_ttl(0);
    dep_target = make(reg, "t.base", 100, true, loader);
    mc_cached *derived = make(reg, "t.derived", 100000, true, dependent_loader);
    mc_snapshot_restore_stats rs;
    assert_int_equal(mc_snapshot_restore(snap, reg, &rs), 0);
    mc_snapshot_free(snap);
    mc_cached_stats st;
    mc_cached_stats_get(derived, &st);
    uint64_t loads0 = st.loads;
    char buf[64];
    bool none;
    call(derived, "dep", buf, sizeof buf, &none);
    mc_cached_stats_get(derived, &st);
    assert_int_equal(st.loads, loads0 + 1); /* loaded again: it was not restored */
    mc_cached_destroy(derived);
    mc_cached_destroy(dep_target);
    mc_registry_destroy(reg);
}

static void test_empty_function(void **state)
{
    (void)state;
    mc_registry *reg = registry_ttl(0);
    mc_cached *p = make(reg, "t.empty", 100000, true, loader);
    mc_error err = {0};
    mc_snapshot_write_stats ws;
    assert_int_equal(mc_snapshot_write(reg, NULL, 0, path, &ws, &err), 0);
    assert_int_equal(ws.functions, 1);
    assert_int_equal(ws.entries, 0);
    mc_snapshot *snap = NULL;
    assert_int_equal(mc_snapshot_read(path, &snap, NULL, &err), 0);
    assert_int_equal(mc_snapshot_function_count(snap), 1);
    assert_string_equal(mc_snapshot_function_name(snap, 0), "t.empty");
    assert_int_equal(mc_snapshot_function_entries(snap, 0), 0);
    mc_snapshot_restore_stats rs;
    assert_int_equal(mc_snapshot_restore(snap, reg, &rs), 0);
    assert_int_equal(rs.functions, 1);
    assert_int_equal(rs.restored, 0);
    mc_snapshot_free(snap);
    mc_cached_destroy(p);
    mc_registry_destroy(reg);
}

/* Every allocation of a write, a read and a restore failed in turn: MC_ENOMEM or success,
 * never a crash or a leak, and a failed write leaves the previous file whole. */
static void test_allocation_failures(void **state)
{
    (void)state;
    mc_registry *reg = registry_ttl(0);
    mc_cached *p = make(reg, "t.faults", 1000, true, loader);
    char buf[64], key[32];
    bool none;
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof key, i % 7 ? "k%d" : "none%d", i);
        call(p, key, buf, sizeof buf, &none);
    }
    mc_error err = {0};
    assert_int_equal(mc_snapshot_write(reg, "o", 1, path, NULL, &err), 0);
    size_t writes = 0, reads = 0;
    for (uint64_t k = 1; k < 10000; k++) {
        mc__fault_arm(&(mc__fault_plan){.first = k});
        int rc = mc_snapshot_write(reg, "o", 1, path, NULL, &err);
        uint64_t injected = mc__fault_injected();
        mc__fault_arm(NULL);
        assert_true(rc == 0 || rc == MC_ENOMEM);
        mc_snapshot *snap = NULL;
        assert_int_equal(mc_snapshot_read(path, &snap, NULL, &err), 0); /* old or new, whole */
        assert_int_equal(mc_snapshot_function_entries(snap, 0), 300);
        mc_snapshot_free(snap);
        if (!injected)
            break;
        writes++;
    }
    mc_registry *reg2 = registry_ttl(0);
    mc_cached *q = make(reg2, "t.faults", 1000, true, loader);
    for (uint64_t k = 1; k < 10000; k++) {
        mc_cached_invalidate_all(q);
        mc__fault_arm(&(mc__fault_plan){.first = k});
        mc_snapshot *snap = NULL;
        int rc = mc_snapshot_read(path, &snap, NULL, &err);
        mc_snapshot_restore_stats rs = {0};
        if (rc == 0)
            assert_int_equal(mc_snapshot_restore(snap, reg2, &rs), 0);
        uint64_t injected = mc__fault_injected();
        mc__fault_arm(NULL);
        assert_true(rc == 0 || rc == MC_ENOMEM);
        if (rc == 0)
            assert_int_equal(rs.restored + rs.failed, 300);
        mc_snapshot_free(snap);
        if (!injected) {
            assert_int_equal(rs.restored, 300);
            break;
        }
        reads++;
    }
    assert_true(writes > 0 && reads > 0);
    mc_cached_destroy(q);
    mc_registry_destroy(reg2);
    mc_cached_destroy(p);
    mc_registry_destroy(reg);
}

int main(void)
{
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/snap", dir);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),       cmocka_unit_test(test_ages_and_ttl),
        cmocka_unit_test(test_bounds_keep_recent), cmocka_unit_test(test_present_key_kept),
        cmocka_unit_test(test_refusals),         cmocka_unit_test(test_write_failure),
        cmocka_unit_test(test_empty_function),   cmocka_unit_test(test_write_age_rules), cmocka_unit_test(test_dependent_function_not_written),
        cmocka_unit_test(test_dependency_recorded_during_write), cmocka_unit_test(test_write_ages_kept),   cmocka_unit_test(test_allocation_failures),
        cmocka_unit_test(test_large_restore),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(path);
    rmdir(dir);
    return rc;
}
